/*
 * device.h: what a simulated meter does besides measuring — the breaker
 * (disconnect control, class 70, control modes 0..6 of the Blue Book), the
 * limiter (class 71), prepayment (classes 111/112: kWh countdown that opens
 * the breaker at zero credit on working days only) and the activity
 * calendar's passive/active switch.  These are state machines driven by
 * (state, time, command); time-driven transitions (a limiter trip, credit
 * running out, a passive calendar's activation time) happen in
 * dev_advance(), which every command calls first, so callers never see a
 * state that is stale for its timestamp.
 *
 * Commands break the "pure function of (seed, meter, time)" property, so
 * a commanded meter keeps a journal: the periods its breaker was open (no
 * energy flows then), the calendars in force since when, and the events
 * the device logged.  The model reads the journal, which keeps registers,
 * profile and logs exact for commanded meters too.  An uncommanded meter
 * has no journal (journal == NULL) and costs nothing.
 */
#ifndef SIM_DEVICE_H
#define SIM_DEVICE_H

#include <stdbool.h>
#include <stdint.h>

#include "events.h"
#include "tariff.h"

/* control_state of class 70 */
enum dev_control { DEV_DISCONNECTED = 0, DEV_CONNECTED = 1, DEV_READY = 2 };
/* payment_mode of class 111 */
enum dev_payment { DEV_PAY_CREDIT = 1, DEV_PAY_PREPAID = 2 };

/* Hour (local) at which a prepayment cut-off deferred over a weekend or a
 * special day happens on the next working day. */
#define DEV_PREPAY_CUT_HOUR 8

struct dev_off {
	int64_t from, to; /* breaker open [from, to); to = INT64_MAX while open */
};

/* From `at` on, tariffs follow cal (NULL: single tariff, as prepayment
 * meters have) with special days sp. */
struct dev_calendar_change {
	int64_t at;
	const struct tariff_calendar *cal;
	const struct tariff_special *sp;
};

/* From `at` on, the meter's clock reads true time + offset_ms + its drift
 * since `at` (a client set, adjusted or shifted it). */
struct dev_clock_set {
	int64_t at;
	int64_t offset_ms;
};

struct dev_journal {
	struct dev_off *off;
	uint32_t n_off, cap_off;
	struct dev_clock_set *clk; /* in time order */
	uint32_t n_clk, cap_clk;
	struct dev_calendar_change *cal;
	uint32_t n_cal, cap_cal;
	struct sim_evbuf ev;			/* device events, in time order */
	void **owned; /* calendars and special-day tables clients wrote */
	uint32_t n_owned, cap_owned;
	const struct tariff_calendar *passive; /* written, not yet active */
	int64_t passive_at;		       /* activation time, 0: on command */
	const struct tariff_calendar *tou;     /* the TOU calendar (outside prepayment) */
	/* clock preset_adjusting_time: the time adjust_to_preset_time sets
	 * while the meter's clock is in [from, to] (UTC ms, meter's view) */
	int64_t preset_ms, preset_from_ms, preset_to_ms;
	uint8_t have_preset;
	/* analysis logger as a client configured it (0: the defaults), and
	 * when its buffer was last cleared */
	uint16_t ana_chans;
	uint32_t ana_period;
	int64_t ana_from;
};

/* The per-meter mutable device state (in struct sim_state). */
struct dev_state {
	uint8_t control;    /* enum dev_control */
	uint8_t mode;	    /* control_mode 0..6 */
	uint8_t payment;    /* enum dev_payment */
	uint8_t emergency;  /* limiter's emergency profile active */
	uint8_t tripped;    /* last local disconnect was the limiter's */
	uint8_t warned;	    /* credit warning given since last top-up */
	uint32_t thr_normal, thr_emergency; /* W; 0 disables */
	uint32_t min_over, min_under;	    /* s */
	uint32_t credit_warn;		    /* Wh */
	int64_t over_since;		    /* -1: power not over the threshold */
	int64_t credit_ref_t;		    /* credit = ref_wh - (A+(t) - A+(ref_t)) */
	int64_t credit_ref_wh;
	int64_t cut_at;	     /* deferred prepayment cut-off, -1 none */
	int64_t reconnect_at; /* limiter local reconnection (modes 5, 6), -1 */
	int64_t now;	     /* time the state is valid for */
	struct dev_journal *j;
};

struct sim_meter;

/* Initial state of an uncommanded meter at its installation time. */
void dev_init(struct dev_state *d, const struct sim_meter *m);
void dev_free(struct dev_state *d);

/* Bring time-driven behaviour up to t (t before the state's time: no-op). */
void dev_advance(struct sim_meter *m, int64_t t);

/*
 * Commands at time t.  Each advances to t first, then applies the command.
 * Returns 0, METER_ESTATE (transition not allowed in this control mode or
 * state), METER_ERANGE (bad value) or METER_ENOSPC (out of memory).
 */
int dev_remote_disconnect(struct sim_meter *m, int64_t t);
int dev_remote_reconnect(struct sim_meter *m, int64_t t);
/* The consumer presses the button: reconnects from ready_for_reconnection
 * (transition e), or disconnects a connected meter where the mode allows
 * manual disconnection (f). */
int dev_button(struct sim_meter *m, int64_t t);
int dev_set_control_mode(struct sim_meter *m, int64_t t, uint8_t mode);
int dev_set_limiter(struct sim_meter *m, int64_t t, uint32_t thr_normal, uint32_t thr_emergency,
		    uint32_t min_over, uint32_t min_under);
int dev_set_emergency(struct sim_meter *m, int64_t t, bool on);
int dev_set_payment_mode(struct sim_meter *m, int64_t t, uint8_t mode);
int dev_credit_add(struct sim_meter *m, int64_t t, int64_t wh);
int dev_credit_set(struct sim_meter *m, int64_t t, int64_t wh);
/* Write the passive calendar (copied); activation_at 0 waits for
 * dev_calendar_activate(). */
int dev_calendar_passive(struct sim_meter *m, int64_t t, const struct tariff_calendar *cal,
			 int64_t activation_at);
int dev_calendar_activate(struct sim_meter *m, int64_t t);
int dev_special_days(struct sim_meter *m, int64_t t, const struct tariff_special *sp);
/* Special days table methods (class 11): insert writes entry e over the
 * entry with the same index or the same date, or adds it (METER_ERANGE
 * for a full table or a bad date or day id); delete removes the entry
 * with that index (METER_ENOTFOUND if there is none).  Like a write of
 * the whole table, both act on tariffs and the working-day test from t
 * on and log special_days_changed (22). */
int dev_special_insert(struct sim_meter *m, int64_t t, const struct tariff_special_day *e);
int dev_special_delete(struct sim_meter *m, int64_t t, uint16_t index);
/* A client sets the meter's clock at true time t to clock_ms (UTC ms, the
 * meter's view): the offset is journalled and "clock adjusted" (old time,
 * new time) go to the RTC log.  Returns 0 or METER_ENOSPC. */
int dev_clock_set(struct sim_meter *m, int64_t t, int64_t clock_ms);
/* Clock methods 5 preset_adjusting_time and 4 adjust_to_preset_time
 * (IEC 62056-6-2 class 8): the preset is kept (METER_ERANGE if from_ms >
 * to_ms); adjusting sets the clock to it (as dev_clock_set, so the RTC
 * log gets old/new time) if the meter's clock is inside the validity
 * interval, and uses the preset up.  METER_ESTATE: no preset, or the
 * clock outside the interval (nothing changes). */
int dev_clock_preset(struct sim_meter *m, int64_t t, int64_t preset_ms, int64_t from_ms,
		     int64_t to_ms);
int dev_clock_adjust_preset(struct sim_meter *m, int64_t t);

/* A client writes the analysis logger's capture objects (chans, SIM_ACH_*
 * bits, a subset of what the type measures) or capture period (60 s to a
 * day, dividing a day): the buffer is cleared at t.  METER_ERANGE for a
 * channel the meter cannot capture or a bad period. */
int dev_set_analysis(struct sim_meter *m, int64_t t, uint16_t chans, uint32_t period);

/* Read-outs (advance to t first). */
int64_t dev_credit(struct sim_meter *m, int64_t t);
bool dev_output(struct sim_meter *m, int64_t t);

/* The calendar in force at t (j may be NULL: the fleet's default). */
struct dev_calendar_change dev_calendar_at(const struct dev_journal *j, int64_t t);

#endif
