/*
 * test_sim_device.c: the simulated meter's device behaviour — limiter trip
 * exactly when the over-threshold duration has run out, prepayment cut-off
 * at zero credit on working days only, the control modes' reconnection
 * paths (ready_for_reconnection + button), and the passive calendar taking
 * over at its activation time; each state change is checked in its log,
 * and registers stay exact integrals of the profile across breaker
 * operations.
 */
#include <criterion/criterion.h>
#include <string.h>

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
			sp.d[sp.n++] = (struct tariff_special_day){2024, cases[i].mo, cases[i].d, 2};
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
