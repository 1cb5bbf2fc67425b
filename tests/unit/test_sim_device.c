/*
 * test_sim_device.c: the simulated meter's device behaviour — limiter trip
 * exactly when the over-threshold duration has run out, prepayment cut-off
 * at zero credit on working days only, the control modes' reconnection
 * paths (ready_for_reconnection + button), and the passive calendar taking
 * over at its activation time; special-day insert/delete acting on the
 * tariffs and the prepayment cut-off; the clock's preset time; each state
 * change is checked in its log, and registers stay exact integrals of the
 * profile across breaker operations.  `expect` of a commanded meter
 * prints what the commands did.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "../sim/expect.h"
#include "../sim/model.h"
#include "meter_error.h"

#define DAY 86400

static const struct cosem_tz cph = COSEM_TZ_CPH;

static int64_t
local(int y, unsigned mo, unsigned d, int h, int mi)
{
	return tariff_local_to_utc(&cph, cosem_days_from_civil(y, mo, d), h * 3600 + mi * 60);
}

static struct sim_fleet *
fleet(uint64_t seed)
{
	struct sim_fleet_cfg cfg = {seed, 20, 900, cosem_days_from_civil(2024, 1, 1) * DAY, COSEM_TZ_CPH};
	struct sim_fleet *f = sim_fleet_new(&cfg);
	cr_assert_not_null(f);
	return f;
}

/* Is (t, code) in log `log` as the meter shows it at `at`? */
static bool
logged(const struct sim_meter *m, uint8_t log, int64_t t, uint16_t code, int64_t at)
{
	struct sim_evbuf b = {0};
	cr_assert_eq(events_log(m, log, at, &b), 0);
	bool found = false;
	for (size_t i = 0; i < b.n; i++)
		if (b.v[i].t == t && b.v[i].code == code) {
			cr_assert_eq(b.v[i].log, log);
			found = true;
		}
	events_free(&b);
	return found;
}

struct sum {
	int64_t e;
	long zero_after, n;
	int64_t off_from, off_to;
	bool bad_off;
};

static void
sum_cb(void *arg, const struct sim_interval *iv)
{
	struct sum *s = arg;
	s->e += iv->e[SIM_AP];
	s->n++;
	if (iv->end - 900 >= s->off_from && iv->end <= s->off_to && iv->e[SIM_AP] != 0)
		s->bad_off = true;
}

/* First limiter trip over [t0, t0 + 2 days) by the rule "power over thr
 * for min_over seconds", evaluated on the model's 5-minute power. */
static int64_t
expected_trip(const struct sim_meter *m, int64_t t0, uint32_t thr, uint32_t min_over)
{
	int64_t over = -1;
	for (int64_t s = t0; s < t0 + 2 * DAY; s += SIM_GRID) {
		if (sim_model_power(m, s) > thr) {
			if (over < 0)
				over = s;
			if (over + min_over <= s + SIM_GRID)
				return over + min_over > s ? over + min_over : s;
		} else {
			over = -1;
		}
	}
	return -1;
}

static void
limiter_case(uint8_t mode)
{
	struct sim_fleet *f = fleet(5);
	struct sim_meter m;
	sim_meter_load(f, 1, &m);
	int64_t t0 = local(2024, 2, 7, 12, 0);
	const uint32_t min_over = 900, min_under = 600;
	uint32_t thr = 0;
	int64_t trip = -1;
	/* a threshold the evening peak crosses for long enough, but not at once */
	for (double k = 1.6; k > 0.7 && (trip < 0 || trip == t0 + min_over); k -= 0.05) {
		thr = (uint32_t)(m.mean_w * k);
		trip = expected_trip(&m, t0, thr, min_over);
	}
	cr_assert_gt(trip, t0 + min_over, "no usable threshold found");
	cr_assert_eq(dev_set_control_mode(&m, t0, mode), 0);
	cr_assert_eq(dev_set_limiter(&m, t0, thr, thr / 2, min_over, min_under), 0);
	cr_assert(logged(&m, SIM_LOG_DISCONNECTOR, t0, EV_LIMITER_CHANGED, t0));
	cr_assert(dev_output(&m, trip - 1), "no trip before the duration has run out");
	cr_assert(!dev_output(&m, trip), "trip when it has");
	cr_assert_eq(m.st->dev.control, DEV_READY);
	cr_assert(logged(&m, SIM_LOG_DISCONNECTOR, trip, EV_LIMITER_EXCEEDED, trip));
	cr_assert(logged(&m, SIM_LOG_DISCONNECTOR, trip, EV_LOCAL_DISCONNECT, trip));
	if (mode == 5) {
		/* local reconnection after the under-threshold duration */
		cr_assert(!dev_output(&m, trip + min_under - 1));
		cr_assert(dev_output(&m, trip + min_under));
		cr_assert(logged(&m, SIM_LOG_DISCONNECTOR, trip + min_under, EV_LOCAL_CONNECT,
				 trip + min_under));
	} else {
		cr_assert(!dev_output(&m, trip + 3600), "mode 1 waits for the button");
		cr_assert_eq(sim_energy(&m, SIM_AP, trip + 3600), sim_energy(&m, SIM_AP, trip),
			     "no energy flows through an open breaker");
		cr_assert_eq(dev_set_limiter(&m, trip + 3600, 0, 0, min_over, min_under), 0);
		cr_assert_eq(dev_button(&m, trip + 3601), 0);
		cr_assert(dev_output(&m, trip + 3601));
		cr_assert(logged(&m, SIM_LOG_DISCONNECTOR, trip + 3601, EV_MANUAL_CONNECT, trip + 3601));
	}
	sim_fleet_free(f);
}

Test(sim_device, limiter_trips_after_min_over_duration_mode1)
{
	limiter_case(1);
}

Test(sim_device, limiter_trips_and_recovers_locally_mode5)
{
	limiter_case(5);
}

Test(sim_device, limiter_in_mode0_never_opens)
{
	struct sim_fleet *f = fleet(5);
	struct sim_meter m;
	sim_meter_load(f, 1, &m);
	int64_t t0 = local(2024, 2, 7, 12, 0);
	cr_assert_eq(dev_set_control_mode(&m, t0, 0), 0);
	cr_assert_eq(dev_set_limiter(&m, t0, 1, 1, 0, 0), 0);
	cr_assert(dev_output(&m, t0 + DAY));
	cr_assert_eq(dev_remote_disconnect(&m, t0 + DAY), METER_ESTATE);
	sim_fleet_free(f);
}

/* First second at which the meter has used `credit` Wh since t0. */
static int64_t
exhaustion(const struct sim_meter *m, int64_t t0, int64_t credit)
{
	int64_t e0 = sim_energy(m, SIM_AP, t0), lo = t0, hi = t0 + 7 * DAY;
	while (hi - lo > 1) {
		int64_t mid = lo + (hi - lo) / 2;
		if (sim_energy(m, SIM_AP, mid) - e0 >= credit)
			hi = mid;
		else
			lo = mid;
	}
	return hi;
}

Test(sim_device, prepayment_cuts_off_on_working_days_only)
{
	static const struct {
		const char *what;
		int y;
		unsigned mo, d;   /* start, 08:00 local */
		int cy;
		unsigned cmo, cd; /* cut-off day, 0: the moment credit runs out */
		bool special;	  /* declare the start day special first */
	} cases[] = {
		{"Wednesday", 2024, 3, 6, 0, 0, 0, false},
		{"Saturday", 2024, 3, 9, 2024, 3, 11, false},
		{"Sunday", 2024, 3, 10, 2024, 3, 11, false},
		{"Ascension Day", 2024, 5, 9, 2024, 5, 10, false},
		{"a special day written by the head-end", 2024, 3, 13, 2024, 3, 14, true},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct sim_fleet *f = fleet(9);
		struct sim_meter m;
		sim_meter_load(f, 2, &m);
		int64_t t0 = local(cases[i].y, cases[i].mo, cases[i].d, 8, 0);
		cr_assert_eq(dev_set_control_mode(&m, t0, 1), 0);
		if (cases[i].special) {
			struct tariff_special sp = *tariff_default_special();
			sp.d[sp.n++] = (struct tariff_special_day){2024, cases[i].mo, cases[i].d, 2, 99};
			cr_assert_eq(dev_special_days(&m, t0, &sp), 0);
			cr_assert(logged(&m, SIM_LOG_STANDARD, t0, EV_SPECIAL_DAYS_CHANGED, t0));
		}
		/* three hours' worth of credit: it runs out the same day */
		int64_t credit = sim_energy(&m, SIM_AP, t0 + 3 * 3600) - sim_energy(&m, SIM_AP, t0);
		int64_t z = exhaustion(&m, t0, credit);
		cr_assert_leq(z, t0 + 3 * 3600);
		cr_assert_eq(dev_set_payment_mode(&m, t0, DEV_PAY_PREPAID), 0);
		cr_assert_eq(dev_credit_set(&m, t0, credit), 0);
		cr_assert(logged(&m, SIM_LOG_STANDARD, t0, EV_PAYMENT_MODE_CHANGED, t0));
		cr_assert(logged(&m, SIM_LOG_STANDARD, t0, EV_CREDIT_UPDATED, t0));
		int64_t cut = z;
		if (cases[i].cy) {
			cut = local(cases[i].cy, cases[i].cmo, cases[i].cd, DEV_PREPAY_CUT_HOUR, 0);
			cr_assert(dev_output(&m, z + 3600), "%s: no cut-off", cases[i].what);
			cr_assert_lt(dev_credit(&m, z + 3600), 0, "%s: the meter runs on", cases[i].what);
		}
		cr_assert(dev_output(&m, cut - 1), "%s: connected until the cut-off", cases[i].what);
		cr_assert(!dev_output(&m, cut), "%s: cut off at %lld", cases[i].what, (long long)cut);
		cr_assert(tariff_working_day(dev_calendar_at(m.st->dev.j, cut).sp, &cph, cut));
		cr_assert(logged(&m, SIM_LOG_DISCONNECTOR, cut, EV_CREDIT_EXHAUSTED, cut + 1));
		cr_assert(logged(&m, SIM_LOG_DISCONNECTOR, cut, EV_LOCAL_DISCONNECT, cut + 1));
		/* prepayment runs on one tariff: everything since t0 went to T1 */
		struct sim_registers r0, r1;
		sim_registers(&m, t0, &r0);
		sim_registers(&m, cut + DAY, &r1);
		cr_assert_eq(r1.tariff[SIM_AP][0] - r0.tariff[SIM_AP][0], r1.total[SIM_AP] - r0.total[SIM_AP]);
		/* topping up and pressing the button gets the power back */
		cr_assert_eq(dev_credit_add(&m, cut + DAY, 10000), 0);
		cr_assert(!dev_output(&m, cut + DAY), "mode 1 has no local reconnection");
		cr_assert_eq(dev_button(&m, cut + DAY + 60), 0);
		cr_assert(dev_output(&m, cut + DAY + 60));
		sim_fleet_free(f);
	}
}

Test(sim_device, reconnection_paths_per_control_mode)
{
	static const struct {
		uint8_t mode;
		uint8_t after_reconnect; /* control state after remote_reconnect */
		uint16_t reconnect_event;
	} cases[] = {
		{1, DEV_CONNECTED, EV_REMOTE_CONNECT},
		{2, DEV_READY, EV_READY_FOR_RECONNECT},
		{3, DEV_CONNECTED, EV_REMOTE_CONNECT},
		{4, DEV_READY, EV_READY_FOR_RECONNECT},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct sim_fleet *f = fleet(13);
		struct sim_meter m;
		sim_meter_load(f, 4, &m);
		int64_t t0 = local(2024, 4, 3, 9, 7);
		cr_assert_eq(dev_set_control_mode(&m, t0, cases[i].mode), 0);
		cr_assert_eq(dev_remote_disconnect(&m, t0), 0);
		cr_assert_eq(m.st->dev.control, DEV_DISCONNECTED);
		cr_assert_eq(dev_remote_disconnect(&m, t0 + 10), 0, "idempotent");
		cr_assert(logged(&m, SIM_LOG_DISCONNECTOR, t0, EV_REMOTE_DISCONNECT, t0));
		int64_t t1 = t0 + 2 * 3600 + 13;
		cr_assert_eq(dev_remote_reconnect(&m, t1), 0);
		cr_assert_eq(m.st->dev.control, cases[i].after_reconnect, "mode %u", cases[i].mode);
		cr_assert(logged(&m, SIM_LOG_DISCONNECTOR, t1, cases[i].reconnect_event, t1));
		int64_t on = t1;
		if (cases[i].after_reconnect == DEV_READY) {
			cr_assert(!dev_output(&m, t1 + 3600), "ready is still open");
			on = t1 + 3600 + 5;
			cr_assert_eq(dev_button(&m, on), 0);
			cr_assert(logged(&m, SIM_LOG_DISCONNECTOR, on, EV_MANUAL_CONNECT, on));
		}
		cr_assert(dev_output(&m, on));
		/* the open period carries no energy and registers stay exact */
		struct sum s = {.off_from = t0, .off_to = on};
		int64_t a = t0 / 900 * 900 - DAY, b = a + 2 * DAY;
		sim_intervals(&m, a, b, sum_cb, &s);
		cr_assert_eq(s.e, sim_energy(&m, SIM_AP, b) - sim_energy(&m, SIM_AP, a));
		cr_assert(!s.bad_off, "energy recorded while open");
		cr_assert_eq(sim_energy(&m, SIM_AP, on), sim_energy(&m, SIM_AP, t0));
		struct sim_registers r;
		sim_registers(&m, b, &r);
		int64_t tsum = 0;
		for (unsigned t = 0; t < TARIFF_MAX; t++)
			tsum += r.tariff[SIM_AP][t];
		cr_assert_eq(tsum, r.total[SIM_AP]);
		sim_fleet_free(f);
	}
}

Test(sim_device, button_leaves_ready_only)
{
	struct sim_fleet *f = fleet(13);
	struct sim_meter m;
	sim_meter_load(f, 4, &m);
	int64_t t0 = local(2024, 4, 3, 9, 0);
	cr_assert_eq(dev_set_control_mode(&m, t0, 4), 0);
	cr_assert_eq(dev_button(&m, t0 + 1), METER_ESTATE, "mode 4 has no manual disconnection");
	cr_assert_eq(dev_remote_disconnect(&m, t0 + 2), 0);
	cr_assert_eq(dev_button(&m, t0 + 3), METER_ESTATE, "disconnected needs the head-end first");
	cr_assert_eq(dev_set_control_mode(&m, t0 + 4, 9), METER_ERANGE);
	sim_fleet_free(f);
}

Test(sim_device, passive_calendar_takes_over_at_activation_time)
{
	struct sim_fleet *f = fleet(17);
	struct sim_meter m;
	sim_meter_load(f, 6, &m);
	struct tariff_calendar cal = {
		.name = "T5",
		.n_seasons = 0,
		.n_weeks = 1,
		.n_days = 1,
		.week = {{0, 0, 0, 0, 0, 0, 0}},
		.day = {{1, {{0, 5}}}},
	};
	int64_t tw = local(2024, 2, 5, 10, 0), ta = local(2024, 2, 7, 12, 0);
	cr_assert_eq(dev_calendar_passive(&m, tw, &cal, ta), 0);
	cr_assert(logged(&m, SIM_LOG_STANDARD, tw, EV_TOU_PROGRAMMED, tw));
	cal.day[0].a[0].tariff = 9;
	cr_assert_eq(dev_calendar_passive(&m, tw, &cal, ta), METER_ERANGE);
	struct sim_registers r;
	sim_registers(&m, ta - 1, &r);
	cr_assert_eq(r.active_tariff, 2, "the default calendar until the activation time");
	dev_advance(&m, ta + 2 * DAY);
	cr_assert(logged(&m, SIM_LOG_STANDARD, ta, EV_TOU_ACTIVATED, ta + 2 * DAY));
	struct sim_registers ra, rb;
	sim_registers(&m, ta, &ra);
	sim_registers(&m, ta + 2 * DAY, &rb);
	cr_assert_eq(ra.active_tariff, 5);
	cr_assert_eq(ra.tariff[SIM_AP][4], 0, "nothing on T5 before activation");
	cr_assert_eq(rb.tariff[SIM_AP][4], rb.total[SIM_AP] - ra.total[SIM_AP]);
	for (unsigned t = 0; t < TARIFF_MAX; t++)
		if (t != 4)
			cr_assert_eq(rb.tariff[SIM_AP][t], ra.tariff[SIM_AP][t]);
	cr_assert_eq(dev_calendar_activate(&m, ta + 2 * DAY), METER_ESTATE, "nothing passive left");
	sim_fleet_free(f);
}

/* ---- special days table methods ------------------------------------------------ */

static const struct tariff_special_day *
special_at(const struct sim_meter *m, int64_t t, uint16_t index)
{
	const struct tariff_special *sp = dev_calendar_at(m->st->dev.j, t).sp;
	for (unsigned i = 0; sp && i < sp->n; i++)
		if (sp->d[i].index == index)
			return &sp->d[i];
	return NULL;
}

Test(sim_device, special_day_insert_and_delete_switch_the_tariff)
{
	struct sim_fleet *f = fleet(5);
	struct sim_meter m;
	sim_meter_load(f, 3, &m);
	/* Monday 4 March 2024, a winter working day: T3 from 17:00 to 21:00 */
	int64_t t0 = local(2024, 3, 4, 8, 0), eve = local(2024, 3, 4, 18, 0);
	int64_t next = local(2024, 3, 11, 18, 0);
	cr_assert_eq(tariff_at(dev_calendar_at(NULL, eve).cal, dev_calendar_at(NULL, eve).sp, &cph, eve), 3);
	struct tariff_special_day e = {2024, 3, 4, 2, 40};
	cr_assert_eq(dev_special_insert(&m, t0, &e), 0);
	cr_assert(logged(&m, SIM_LOG_STANDARD, t0, EV_SPECIAL_DAYS_CHANGED, t0));
	struct dev_calendar_change c = dev_calendar_at(m.st->dev.j, eve);
	cr_assert_eq(c.sp->n, 33);
	cr_assert_eq(c.sp->d[32].index, 40, "kept in index order");
	cr_assert_eq(tariff_at(c.cal, c.sp, &cph, eve), 1, "the special day runs the weekend profile");
	cr_assert(!tariff_working_day(c.sp, &cph, eve));
	/* the T3 register does not move that evening; the totals do */
	struct sim_registers r0, r1;
	sim_registers(&m, local(2024, 3, 4, 17, 0), &r0);
	sim_registers(&m, local(2024, 3, 4, 21, 0), &r1);
	cr_assert_eq(r1.tariff[SIM_AP][2], r0.tariff[SIM_AP][2]);
	cr_assert_gt(r1.tariff[SIM_AP][0], r0.tariff[SIM_AP][0]);
	cr_assert_eq(r1.tariff[SIM_AP][0] - r0.tariff[SIM_AP][0], r1.total[SIM_AP] - r0.total[SIM_AP]);
	/* same index: overwritten (now the next Monday); same date: replaced */
	struct tariff_special_day e2 = {2024, 3, 11, 2, 40};
	cr_assert_eq(dev_special_insert(&m, t0 + 60, &e2), 0);
	c = dev_calendar_at(m.st->dev.j, eve);
	cr_assert_eq(c.sp->n, 33);
	cr_assert_eq(special_at(&m, eve, 40)->day, 11);
	cr_assert_eq(tariff_at(c.cal, c.sp, &cph, eve), 3, "4 March is a working day again");
	cr_assert_eq(tariff_at(c.cal, c.sp, &cph, next), 1);
	struct tariff_special_day e3 = {2024, 3, 11, 2, 41};
	cr_assert_eq(dev_special_insert(&m, t0 + 120, &e3), 0);
	cr_assert_eq(dev_calendar_at(m.st->dev.j, eve).sp->n, 33);
	cr_assert_null(special_at(&m, eve, 40));
	cr_assert_not_null(special_at(&m, eve, 41));
	/* delete by index; a missing index is refused and changes nothing */
	cr_assert_eq(dev_special_delete(&m, t0 + 180, 41), 0);
	c = dev_calendar_at(m.st->dev.j, next);
	cr_assert_eq(c.sp->n, 32);
	cr_assert_eq(tariff_at(c.cal, c.sp, &cph, next), 3);
	cr_assert_eq(dev_special_delete(&m, t0 + 240, 41), METER_ENOTFOUND);
	cr_assert_eq(dev_special_delete(&m, t0 + 240, 0), 0, "1 January (index 0) goes");
	c = dev_calendar_at(m.st->dev.j, t0 + 240);
	cr_assert_eq(c.sp->n, 31);
	cr_assert(!tariff_is_special(c.sp, 2025, 1, 1));
	cr_assert(tariff_is_special(c.sp, 2025, 12, 25));
	struct sim_evbuf ev = {0};
	cr_assert_eq(events_range(&m, t0 - 1, t0 + 240, &ev), 0);
	unsigned n22 = 0;
	for (size_t i = 0; i < ev.n; i++)
		n22 += ev.v[i].code == EV_SPECIAL_DAYS_CHANGED;
	events_free(&ev);
	cr_assert_eq(n22, 5, "one special_days_changed per successful change");
	/* bad entries and a full table are refused */
	struct tariff_special_day bad = {2024, 13, 1, 2, 50};
	cr_assert_eq(dev_special_insert(&m, t0 + 300, &bad), METER_ERANGE);
	for (uint16_t i = 0; i < 69; i++) {
		struct tariff_special_day d = {2030, 1 + i / 28, 1 + i % 28, 2, (uint16_t)(100 + i)};
		cr_assert_eq(dev_special_insert(&m, t0 + 400 + i, &d), 0);
	}
	cr_assert_eq(dev_calendar_at(m.st->dev.j, t0 + 500).sp->n, 100);
	struct tariff_special_day more = {2031, 1, 1, 2, 500};
	cr_assert_eq(dev_special_insert(&m, t0 + 500, &more), METER_ERANGE);
	sim_fleet_free(f);
}

Test(sim_device, inserted_special_day_defers_the_prepayment_cut_off)
{
	struct sim_fleet *f = fleet(9);
	struct sim_meter m;
	sim_meter_load(f, 2, &m);
	/* Wednesday 13 March 2024, made special by insert: cut on Thursday 08:00 */
	int64_t t0 = local(2024, 3, 13, 8, 0);
	cr_assert_eq(dev_set_control_mode(&m, t0, 1), 0);
	struct tariff_special_day e = {2024, 3, 13, 2, 77};
	cr_assert_eq(dev_special_insert(&m, t0, &e), 0);
	int64_t credit = sim_energy(&m, SIM_AP, t0 + 3 * 3600) - sim_energy(&m, SIM_AP, t0);
	cr_assert_eq(dev_set_payment_mode(&m, t0, DEV_PAY_PREPAID), 0);
	cr_assert_eq(dev_credit_set(&m, t0, credit), 0);
	int64_t cut = local(2024, 3, 14, DEV_PREPAY_CUT_HOUR, 0);
	cr_assert(dev_output(&m, cut - 1), "no cut-off on the inserted special day");
	cr_assert_lt(dev_credit(&m, cut - 1), 0);
	cr_assert(!dev_output(&m, cut));
	cr_assert(logged(&m, SIM_LOG_DISCONNECTOR, cut, EV_CREDIT_EXHAUSTED, cut + 1));
	sim_fleet_free(f);
}

/* ---- clock preset --------------------------------------------------------------- */

Test(sim_device, clock_preset_applies_inside_its_validity_interval_once)
{
	struct sim_fleet *f = fleet(5);
	struct sim_meter m;
	sim_meter_load(f, 4, &m);
	int64_t t = local(2024, 3, 1, 13, 0);
	int64_t clk = sim_clock_ms(&m, t);
	cr_assert_eq(dev_clock_adjust_preset(&m, t), METER_ESTATE, "no preset yet");
	int64_t preset = (t + 1800) * 1000;
	cr_assert_eq(dev_clock_preset(&m, t, preset, (t + 60) * 1000, t * 1000), METER_ERANGE);
	/* a validity interval the clock is not in: refused, the clock stays */
	cr_assert_eq(dev_clock_preset(&m, t, preset, clk + 60000, clk + 120000), 0);
	cr_assert_eq(dev_clock_adjust_preset(&m, t + 10), METER_ESTATE);
	cr_assert_lt(llabs(sim_clock_ms(&m, t + 10) - (clk + 10000)), 5, "no adjustment");
	/* inside: the clock reads the preset from then on */
	cr_assert_eq(dev_clock_preset(&m, t + 20, preset, clk - 60000, clk + 60000), 0);
	cr_assert_eq(dev_clock_adjust_preset(&m, t + 30), 0);
	cr_assert_eq(sim_clock_ms(&m, t + 30), preset);
	cr_assert_lt(llabs(sim_clock_ms(&m, t + 3630) - (preset + 3600000)), 100, "runs on (drift)");
	cr_assert(logged(&m, SIM_LOG_RTC, t + 30, EV_CLOCK_OLD, t + 30));
	cr_assert(logged(&m, SIM_LOG_RTC, t + 30, EV_CLOCK_NEW, t + 30));
	cr_assert(!logged(&m, SIM_LOG_RTC, t + 10, EV_CLOCK_NEW, t + 30), "the refused one logs nothing");
	cr_assert_eq(dev_clock_adjust_preset(&m, t + 40), METER_ESTATE, "a preset is used once");
	sim_fleet_free(f);
}

/* ---- expect of a commanded meter ---------------------------------------------- */

static char *
expect_csv(const struct sim_meter *m, int64_t from, int64_t to, unsigned what)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	cr_assert_not_null(f);
	struct expect_req rq = {from, to, what, true};
	cr_assert_eq(expect_write(f, m, &rq), 0);
	cr_assert_eq(fclose(f), 0);
	return buf;
}

Test(sim_device, expect_of_a_commanded_meter_shows_the_commands)
{
	struct sim_fleet *f = fleet(5), *pure = fleet(5);
	struct sim_meter m, p;
	sim_meter_load(f, 6, &m);
	sim_meter_load(pure, 6, &p);
	int64_t t0 = local(2024, 3, 4, 12, 0); /* 11:00 UTC */
	int64_t from = t0 - 3600, to = t0 + 3600;
	unsigned what = EXPECT_REGISTERS | EXPECT_INTERVALS | EXPECT_EVENTS | EXPECT_ANALYSIS;
	char *a = expect_csv(&m, from, to, what), *b = expect_csv(&p, from, to, what);
	cr_assert_str_eq(a, b, "uncommanded: the same as a fresh fleet");
	free(a);
	free(b);
	cr_assert_eq(dev_set_control_mode(&m, t0, 1), 0);
	cr_assert_eq(dev_remote_disconnect(&m, t0 + 60), 0);
	struct tariff_special_day e = {2024, 3, 4, 2, 40};
	cr_assert_eq(dev_special_insert(&m, t0 + 120, &e), 0);
	cr_assert_eq(dev_clock_preset(&m, t0 + 180, (t0 + 7200) * 1000, 0, INT64_MAX), 0);
	cr_assert_eq(dev_clock_adjust_preset(&m, t0 + 180), 0);
	dev_advance(&m, to);
	a = expect_csv(&m, from, to, what);
	static const char *want[] = {
	    "event,2024-03-04T11:00:00Z,2024-03-04T12:00:00+01:00,disconnector,0-0:99.98.2.255,69,"
	    "control_mode_changed\n",
	    "event,2024-03-04T11:01:00Z,2024-03-04T12:01:00+01:00,disconnector,0-0:99.98.2.255,61,"
	    "remote_disconnect\n",
	    "event,2024-03-04T11:02:00Z,2024-03-04T12:02:00+01:00,standard,0-0:99.98.0.255,22,"
	    "special_days_changed\n",
	    "event,2024-03-04T11:03:00Z,2024-03-04T12:03:00+01:00,rtc,0-0:99.98.7.255,4,"
	    "clock_adjusted_old\n",
	    "event,2024-03-04T11:03:00Z,2024-03-04T12:03:00+01:00,rtc,0-0:99.98.7.255,5,"
	    "clock_adjusted_new\n",
	    /* no energy with the breaker open; the clock-adjusted bit (0x20) */
	    "interval,2024-03-04T11:15:00Z,2024-03-04T12:15:00+01:00,",
	    "interval,2024-03-04T11:30:00Z,2024-03-04T12:30:00+01:00,0,0,0,0,0\n",
	    "analysis,2024-03-04T11:20:00Z,2024-03-04T12:20:00+01:00,",
	};
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
		cr_assert_not_null(strstr(a, want[i]), "%s not in\n%s", want[i], a);
	char line[128];
	const char *iv = strstr(a, want[5]) + strlen(want[5]);
	snprintf(line, sizeof(line), "%.*s", (int)strcspn(iv, "\n"), iv);
	cr_assert_eq(atoi(strrchr(line, ',') + 1) & 0x20, 0x20, "status of %s", line);
	const char *an = strstr(a, want[7]) + strlen(want[7]);
	cr_assert_not_null(strstr(an, ",0,0\n"), "no import or export power while open");
	struct sim_registers r;
	sim_registers(&m, to, &r);
	char reg[96];
	snprintf(reg, sizeof(reg), "register,2024-03-04T12:00:00Z,1-0:1.8.0.255,%lld,Wh\n",
	         (long long)r.total[SIM_AP]);
	cr_assert_not_null(strstr(a, reg), "%s not in\n%s", reg, a);
	cr_assert_lt(r.total[SIM_AP], sim_energy(&p, SIM_AP, to), "less energy than uncommanded");
	b = expect_csv(&p, from, to, what);
	cr_assert_str_neq(a, b);
	cr_assert_null(strstr(b, "remote_disconnect"));
	free(a);
	free(b);
	sim_fleet_free(f);
	sim_fleet_free(pure);
}

/* ---- analysis logger configuration ------------------------------------------- */

Test(sim_device, analysis_logger_reconfigured_clears_and_captures_the_new_channels)
{
	struct sim_fleet *f = fleet(5);
	struct sim_meter m;
	uint32_t i;
	for (i = 0; i < 20; i++) {
		sim_meter_load(f, i, &m);
		if (m.type == SIM_TYPE_162)
			break;
	}
	cr_assert_lt(i, 20, "a 162 in the fleet");
	cr_assert_eq(sim_analysis_all(&m), SIM_ACH_U1 | SIM_ACH_I1 | SIM_ACH_P1 | SIM_ACH_PIMP |
	                                       SIM_ACH_PEXP);
	int64_t t0 = local(2024, 3, 4, 12, 0);
	cr_assert_eq(sim_analysis(&m, t0 - 3600, t0, NULL, NULL), 6);
	/* L2 is not measured on a 162; 700 s does not divide a day */
	cr_assert_eq(dev_set_analysis(&m, t0, SIM_ACH_U1 << 1, 300), METER_ERANGE);
	cr_assert_eq(dev_set_analysis(&m, t0, SIM_ACH_U1, 700), METER_ERANGE);
	cr_assert_eq(dev_set_analysis(&m, t0, 0, 300), METER_ERANGE);
	cr_assert_eq(sim_analysis_period(&m), 600, "refused: nothing changed");
	cr_assert_eq(dev_set_analysis(&m, t0 + 30, SIM_ACH_U1 | SIM_ACH_PIMP, 300), 0);
	cr_assert_eq(sim_analysis_period(&m), 300);
	cr_assert_eq(sim_analysis_chans(&m), SIM_ACH_U1 | SIM_ACH_PIMP);
	cr_assert_eq(sim_analysis(&m, t0 - 3600, t0 + 3600, NULL, NULL), 12,
	             "the buffer starts again at the change, every 5 minutes");
	struct sim_instant in;
	sim_instant(&m, t0 + 600 - 1, &in);
	char *csv = expect_csv(&m, t0, t0 + 600, EXPECT_ANALYSIS);
	char want[160];
	snprintf(want, sizeof(want),
	         "\nanalysis,2024-03-04T11:10:00Z,2024-03-04T12:10:00+01:00,%u,,,,,,,,,%d,\n", in.u[0],
	         in.p_import);
	cr_assert_not_null(strstr(csv, want), "%s not in\n%s", want, csv);
	cr_assert_not_null(strstr(csv, "\nanalysis,2024-03-04T11:05:00Z,"));
	free(csv);
	sim_fleet_free(f);
}
