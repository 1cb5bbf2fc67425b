/*
 * model.h: the simulated fleet and what each meter measures, as pure
 * functions of (seed, meter, time) plus the small per-meter state that
 * commands change (struct sim_state; the device journal of device.h keeps
 * the results exact for commanded meters).  Identity (serial, type, keys,
 * addresses) is derived on demand into a struct sim_meter, which is a
 * scratch value on the caller's stack, never stored per meter.
 *
 * Commanded behaviour (breaker, limiter, prepayment, calendars) lives in
 * device.h; a caller simulating it calls dev_advance(m, t) before reading
 * values at t, so time-driven changes up to t are in the journal.
 *
 * Units: energies in Wh / varh (scaler 0), power in W, voltage in 0.1 V,
 * current in mA.  Times are UTC seconds since the epoch; local time is
 * the fleet's rule (Europe/Copenhagen by default) through cosem_time.h.
 */
#ifndef SIM_MODEL_H
#define SIM_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cosem_time.h"
#include "device.h"
#include "events.h"
#include "tariff.h"

#define SIM_GRID 300		/* s: finest profile period; energy is defined on it */
#define SIM_DEMAND_PERIOD 900	/* s: demand (peak power) integration period */
#define SIM_MAX_METERS 90000000u /* 8-digit serials */

enum sim_type { SIM_TYPE_162 = 0, SIM_TYPE_282, SIM_TYPE_382M };
enum sim_sec { SIM_SEC_NONE = 0, SIM_SEC_LLS, SIM_SEC_HLS };
enum sim_q { SIM_AP = 0, SIM_AM, SIM_RP, SIM_RM, SIM_NQ }; /* A+ A- R+ R- */
enum sim_transport { SIM_TR_TCPIP = 0, SIM_TR_HDLC, SIM_TR_GPRS, SIM_TR_MBUS, SIM_TR_MODBUS };

/* IDIS load-profile status bits */
#define SIM_ST_PDN 0x80 /* power down during the interval */
#define SIM_ST_CAD 0x20 /* clock adjusted during the interval */
#define SIM_ST_DST 0x08 /* summer time at the interval end */

struct sim_fleet_cfg {
	uint64_t seed;
	uint32_t count;	   /* meters, at most SIM_MAX_METERS */
	uint16_t period;   /* default load-profile period, s: 300/900/1800/3600 */
	int64_t origin;	   /* meters were installed in the 90 days before */
	struct cosem_tz tz; /* local time of every meter */
};

/* Everything stored per meter. */
struct sim_state {
	struct dev_state dev;
	int64_t profile_from; /* profile holds intervals ending after this */
	uint16_t period;      /* load-profile period, s */
	uint32_t invocation_counter;
};

struct sim_fleet {
	struct sim_fleet_cfg cfg;
	uint64_t mul, inv, add; /* index <-> serial bijection */
	struct sim_state *st;	/* cfg.count entries */
};

/* One consumption-shaped channel, cumulative in closed form (model.c). */
struct sim_chan {
	double rho;	   /* mean rate, Wh/s */
	double a1, h1;	   /* daily harmonic: amplitude, peak (s of local day) */
	double a2, h2;	   /* half-day harmonic */
	double as, ts;	   /* seasonal: amplitude, peak (UTC s) */
	double w;	   /* hashed wiggle, fraction of a grid step's energy */
	double cdst;	   /* continuity constant added during summer time */
	uint32_t tag;	   /* hash stream */
};

/* A meter's identity and parameters, derived by sim_meter_load(). */
struct sim_meter {
	struct sim_fleet *fleet;
	struct sim_state *st;
	uint32_t index, serial;
	uint8_t type, phases, exporter, security;
	uint16_t client_addr, server_addr;
	int64_t installed;
	int64_t base[SIM_NQ][TARIFF_MAX]; /* registers at installation */
	int64_t e0[SIM_NQ];		  /* register = e0 + model cumulative */
	double mean_w, pv_peak_w, drift_ppm;
	double share[3]; /* of the active power per phase */
	struct sim_chan ch[SIM_NQ]; /* A- of exporters uses the solar formula */
	uint8_t ek[16], ak[16], system_title[8];
	char password[9];
	char firmware[16];
};

struct sim_registers {
	int64_t t;
	int64_t total[SIM_NQ];
	int64_t tariff[SIM_NQ][TARIFF_MAX];
	uint8_t active_tariff;
};

struct sim_interval {
	int64_t end; /* UTC, a multiple of the period */
	uint32_t e[SIM_NQ];
	uint8_t status;
};

struct sim_instant {
	uint8_t phases;	 /* measuring elements: 1 (162), 2 (282: L1, L3), 3 */
	uint16_t u[3];	 /* 0.1 V; 0 where not measured */
	uint32_t i[3];	 /* mA */
	int32_t p[3];	 /* W, import */
	int32_t p_import, p_export; /* W, totals */
};

struct sim_peak {
	uint32_t w; /* mean power over the demand period, W */
	int64_t at; /* end of that period, UTC; 0 if none yet */
};

struct sim_demand {
	int64_t from, to; /* the billing period (so far) */
	struct sim_peak total, tariff[TARIFF_MAX];
};

struct sim_billing {
	int64_t t; /* period end: 1st of the month 00:00 local */
	struct sim_registers r;
	struct sim_demand d; /* of the month that ended at t */
};

/* Fleet.  sim_fleet_new returns NULL for a bad cfg or out of memory. */
struct sim_fleet *sim_fleet_new(const struct sim_fleet_cfg *cfg);
void sim_fleet_free(struct sim_fleet *f);
/* Index of a serial, or METER_ENOTFOUND. */
int64_t sim_fleet_find(const struct sim_fleet *f, uint32_t serial);
uint32_t sim_fleet_serial(const struct sim_fleet *f, uint32_t index);
/* Derive meter `index` (< count) into *m. */
void sim_meter_load(struct sim_fleet *f, uint32_t index, struct sim_meter *m);

const char *sim_type_name(uint8_t type);
const char *sim_sec_name(uint8_t sec);
const char *sim_q_name(uint8_t q);

/* Cumulative register of quadrant q at t (Wh or varh), breaker periods
 * from the journal taken out.  O(1 + breaker operations). */
int64_t sim_energy(const struct sim_meter *m, unsigned q, int64_t t);
/* Every register at t: totals and per tariff; O(local days installed). */
void sim_registers(const struct sim_meter *m, int64_t t, struct sim_registers *r);

/*
 * Load-profile entries with from < end <= to at the meter's period, what
 * the meter holds (nothing before installation or a profile clear).  Calls
 * fn per entry; returns the number of entries or METER_ENOSPC.
 */
typedef void (*sim_interval_fn)(void *arg, const struct sim_interval *iv);
long sim_intervals(const struct sim_meter *m, int64_t from, int64_t to, sim_interval_fn fn,
		   void *arg);

/* A client changes the load-profile period at t: the profile is cleared
 * (Kamstrup) and holds only intervals ending after t.  Returns 0 or
 * METER_ERANGE (not 300/900/1800/3600). */
int sim_set_period(struct sim_meter *m, int64_t t, uint16_t period);

/* Instantaneous values at t (the grid step containing t). */
void sim_instant(const struct sim_meter *m, int64_t t, struct sim_instant *out);

/*
 * Analysis logger (1-0:99.2.0.255): every capture period (default
 * SIM_ANALYSIS_PERIOD) the meter captures its instantaneous values; the
 * entry stamped c holds what the instantaneous registers read in the
 * second before c (sim_instant at c - 1, in the grid step that ends at c
 * or earlier), so an entry never changes once captured.  The channels
 * are a mask of SIM_ACH_* bits: by default U, I and P of each measured
 * phase and both totals.  SIM_ANALYSIS_DAYS of history, nothing before
 * installation or the last reconfiguration (dev_set_analysis), which
 * clears the buffer.
 */
#define SIM_ANALYSIS_PERIOD 600
#define SIM_ANALYSIS_DAYS   40
enum {
	SIM_ACH_U1 = 1 << 0, /* U L1..L3: bits 0..2 */
	SIM_ACH_I1 = 1 << 3, /* I L1..L3: bits 3..5 */
	SIM_ACH_P1 = 1 << 6, /* P L1..L3: bits 6..8 */
	SIM_ACH_PIMP = 1 << 9,
	SIM_ACH_PEXP = 1 << 10,
};
struct sim_analysis {
	int64_t t;	/* capture time, UTC, a multiple of the period */
	uint16_t chans; /* SIM_ACH_* captured */
	struct sim_instant in;
};
/* The channels the meter's type can capture (and captures by default),
 * and those it captures now; its capture period now. */
uint16_t sim_analysis_all(const struct sim_meter *m);
uint16_t sim_analysis_chans(const struct sim_meter *m);
uint32_t sim_analysis_period(const struct sim_meter *m);
typedef void (*sim_analysis_fn)(void *arg, const struct sim_analysis *a);
/* Entries with from < t <= to (and after installation or the last
 * reconfiguration); returns their number. */
long sim_analysis(const struct sim_meter *m, int64_t from, int64_t to, sim_analysis_fn fn,
		  void *arg);
/* Import power (W) the model draws in the grid step containing t if the
 * breaker is closed. */
uint32_t sim_model_power(const struct sim_meter *m, int64_t t);
/* Peak demand over [from, to) in total and per tariff. */
void sim_demand(const struct sim_meter *m, int64_t from, int64_t to, struct sim_demand *d);
/* Start of the billing period (1st of the month, 00:00 local) containing
 * t, and the next one after t. */
int64_t sim_month_start(const struct sim_meter *m, int64_t t);
int64_t sim_month_next(const struct sim_meter *m, int64_t t);
/* Billing entry for the period ending at month start b. */
void sim_billing(const struct sim_meter *m, int64_t b, struct sim_billing *out);

/* The meter's clock at true time t, in UTC milliseconds: drifts from the
 * last clock adjustment, seeded (to true time) or by a client (to what it
 * wrote: dev_clock_set). */
int64_t sim_clock_ms(const struct sim_meter *m, int64_t t);

/* Transport address: a per-meter loopback address 127.x.y.z (port 4059)
 * when base_port is 0 (unique for the first 15.8 million meters), else
 * 127.0.0.1 and base_port + index. */
void sim_meter_addr(const struct sim_meter *m, uint16_t base_port, char host[16], uint16_t *port);
/* The inverse for the loopback scheme: the meter index whose address is
 * the IPv4 address addr (host byte order), or METER_ENOTFOUND for an
 * address the scheme never gives (127.0.0.1, other networks).  Lets one
 * listener on INADDR_ANY serve the whole fleet: the local address of an
 * accepted connection names the meter the client dialled. */
int64_t sim_addr_index(uint32_t addr);

/* splitmix64-based hash of the seed and three words; public so the event
 * process and device use the same streams. */
uint64_t sim_hash(uint64_t seed, uint64_t a, uint64_t b, uint64_t c);
double sim_u01(uint64_t h);

#endif
