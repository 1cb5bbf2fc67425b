/*
 * test_sim_model.c: the simulator's ground truth is self-consistent —
 * registers are exact integrals of the load profile at every period,
 * tariff registers add up to the totals, per-phase values fit the meter
 * type, DST days have 23 and 25 hours of intervals, everything is a
 * deterministic function of the seed, and event logs enumerate stably and
 * wrap at 200 entries; the analysis logger holds the instantaneous values
 * of the second before each capture, and `expect` prints it as its own
 * record kind only when asked.
 */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <stdlib.h>
#include <string.h>

#include "../sim/expect.h"
#include "../sim/model.h"
#include "meter_error.h"

#define DAY 86400

static int64_t
utc(int y, unsigned m, unsigned d, int h)
{
	return cosem_days_from_civil(y, m, d) * DAY + h * 3600;
}

static struct sim_fleet *
fleet(uint64_t seed, uint32_t count, uint16_t period)
{
	struct sim_fleet_cfg cfg = {seed, count, period, utc(2024, 1, 1, 0), COSEM_TZ_CPH};
	struct sim_fleet *f = sim_fleet_new(&cfg);
	cr_assert_not_null(f);
	return f;
}

/* Indices of the first meters with each type, and the first exporter. */
static unsigned
pick_meters(struct sim_fleet *f, uint32_t idx[8])
{
	unsigned n = 0;
	bool type_seen[3] = {0}, exp_seen = false;
	for (uint32_t i = 0; i < f->cfg.count && n < 8; i++) {
		struct sim_meter m;
		sim_meter_load(f, i, &m);
		if (!type_seen[m.type] || (m.exporter && !exp_seen) || n < 2) {
			type_seen[m.type] = true;
			exp_seen |= m.exporter;
			idx[n++] = i;
		}
	}
	cr_assert(type_seen[0] && type_seen[1] && type_seen[2] && exp_seen,
		  "the sample must cover every type and an exporter");
	return n;
}

struct sum {
	int64_t e[SIM_NQ];
	long n;
	bool negative;
	int64_t last_end;
	uint16_t period;
	bool misaligned;
};

static void
sum_cb(void *arg, const struct sim_interval *iv)
{
	struct sum *s = arg;
	for (unsigned q = 0; q < SIM_NQ; q++) {
		if (iv->e[q] > 100000000u)
			s->negative = true; /* a negative difference wrapped */
		s->e[q] += iv->e[q];
	}
	if (iv->end % s->period || (s->last_end && iv->end != s->last_end + s->period))
		s->misaligned = true;
	s->last_end = iv->end;
	s->n++;
}

Test(sim_model, registers_are_exact_integrals_of_the_profile)
{
	static const uint16_t periods[] = {300, 900, 1800, 3600};
	static const uint64_t seeds[] = {1, 4242};
	int64_t t1 = utc(2024, 3, 1, 0), t2 = t1 + 60 * DAY;
	for (unsigned s = 0; s < 2; s++) {
		for (unsigned p = 0; p < 4; p++) {
			struct sim_fleet *f = fleet(seeds[s], 200, periods[p]);
			uint32_t idx[8];
			unsigned n = pick_meters(f, idx);
			for (unsigned k = 0; k < n; k++) {
				struct sim_meter m;
				sim_meter_load(f, idx[k], &m);
				struct sum sm = {.period = periods[p]};
				long got = sim_intervals(&m, t1, t2, sum_cb, &sm);
				cr_assert_eq(got, 60L * DAY / periods[p]);
				cr_assert_eq(sm.n, got);
				cr_assert(!sm.negative, "negative interval energy, meter %u", m.serial);
				cr_assert(!sm.misaligned);
				struct sim_registers r1, r2;
				sim_registers(&m, t1, &r1);
				sim_registers(&m, t2, &r2);
				for (unsigned q = 0; q < SIM_NQ; q++) {
					cr_assert_eq(r2.total[q] - r1.total[q], sm.e[q],
						     "seed %llu period %u meter %u %s: %lld != %lld",
						     (unsigned long long)seeds[s], periods[p], m.serial,
						     sim_q_name((uint8_t)q), (long long)(r2.total[q] - r1.total[q]),
						     (long long)sm.e[q]);
					int64_t tsum = 0;
					for (unsigned t = 0; t < TARIFF_MAX; t++) {
						cr_assert_geq(r2.tariff[q][t], r1.tariff[q][t]);
						tsum += r2.tariff[q][t];
					}
					cr_assert_eq(tsum, r2.total[q], "tariffs must add up to the total");
				}
				cr_assert_gt(sm.e[SIM_AP], 0);
				if (m.exporter)
					cr_assert_gt(sm.e[SIM_AM], 0, "an exporter exports in spring");
				else
					cr_assert_eq(sm.e[SIM_AM], 0);
			}
			sim_fleet_free(f);
		}
	}
}

Test(sim_model, consumption_has_daily_and_seasonal_shape)
{
	struct sim_fleet *f = fleet(7, 50, 3600);
	struct sim_meter m;
	sim_meter_load(f, 3, &m);
	/* winter uses more than summer; the evening more than the small hours */
	int64_t jan = sim_energy(&m, SIM_AP, utc(2024, 2, 1, 0)) - sim_energy(&m, SIM_AP, utc(2024, 1, 1, 0));
	int64_t jul = sim_energy(&m, SIM_AP, utc(2024, 8, 1, 0)) - sim_energy(&m, SIM_AP, utc(2024, 7, 1, 0));
	cr_assert_gt(jan, jul);
	int64_t eve = 0, night = 0;
	for (int d = 0; d < 28; d++) {
		int64_t day = utc(2024, 2, 1, 0) + d * DAY;
		eve += sim_energy(&m, SIM_AP, day + 18 * 3600) - sim_energy(&m, SIM_AP, day + 16 * 3600);
		night += sim_energy(&m, SIM_AP, day + 3 * 3600) - sim_energy(&m, SIM_AP, day + 1 * 3600);
	}
	cr_assert_gt(eve, night);
	/* the mean matches the meter's scale within the shape's swing */
	double mean = (double)jan / (31 * 24);
	cr_assert(mean > m.mean_w * 0.8 && mean < m.mean_w * 1.5, "mean %f vs %f", mean, m.mean_w);
	sim_fleet_free(f);
}

Test(sim_model, per_phase_values_fit_the_type)
{
	struct sim_fleet *f = fleet(3, 200, 900);
	uint32_t idx[8];
	unsigned n = pick_meters(f, idx);
	for (unsigned k = 0; k < n; k++) {
		struct sim_meter m;
		sim_meter_load(f, idx[k], &m);
		for (int64_t t = utc(2024, 6, 1, 0); t < utc(2024, 6, 2, 0); t += 1234) {
			struct sim_instant in;
			sim_instant(&m, t, &in);
			int64_t s = t / SIM_GRID * SIM_GRID;
			int64_t e = sim_energy(&m, SIM_AP, s + SIM_GRID) - sim_energy(&m, SIM_AP, s);
			cr_assert_eq(in.p_import, e * 3600 / SIM_GRID, "power = the interval's energy");
			cr_assert_eq(in.p[0] + in.p[1] + in.p[2], in.p_import);
			cr_assert_eq(in.phases, m.phases);
			for (int ph = 0; ph < 3; ph++) {
				bool measured = m.type == SIM_TYPE_382M || ph == 0 ||
						(m.type == SIM_TYPE_282 && ph == 2);
				if (!measured) {
					cr_assert_eq(in.u[ph], 0);
					cr_assert_eq(in.p[ph], 0);
					cr_assert_eq(in.i[ph], 0);
					continue;
				}
				double nominal = m.type == SIM_TYPE_282 ? 4000 : 2300;
				cr_assert(in.u[ph] > nominal * 0.95 && in.u[ph] < nominal * 1.05,
					  "voltage %u on %s", in.u[ph], sim_type_name(m.type));
				cr_assert_geq(in.p[ph], 0);
				/* |S| >= P: current at least P / U */
				cr_assert_geq((double)in.i[ph] + 1, in.p[ph] * 1000.0 / (in.u[ph] / 10.0));
			}
		}
	}
	sim_fleet_free(f);
}

static void
count_cb(void *arg, const struct sim_interval *iv)
{
	long *n = arg;
	(void)iv;
	(*n)++;
}

Test(sim_model, dst_days_have_23_and_25_hours_of_intervals)
{
	static const struct {
		int y;
		unsigned m, d;
		uint16_t period;
		long want;
	} cases[] = {
		{2024, 3, 31, 900, 92}, {2024, 10, 27, 900, 100}, {2024, 3, 30, 900, 96},
		{2024, 3, 31, 3600, 23}, {2024, 10, 27, 3600, 25}, {2024, 10, 27, 300, 300},
	};
	struct cosem_tz tz = COSEM_TZ_CPH;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct sim_fleet *f = fleet(1, 10, cases[i].period);
		struct sim_meter m;
		sim_meter_load(f, 0, &m);
		int64_t day = cosem_days_from_civil(cases[i].y, cases[i].m, cases[i].d);
		int64_t a = tariff_local_to_utc(&tz, day, 0), b = tariff_local_to_utc(&tz, day + 1, 0);
		long n = 0;
		cr_assert_eq(sim_intervals(&m, a, b, count_cb, &n), cases[i].want);
		cr_assert_eq(n, cases[i].want, "%d-%02u-%02u at %u s", cases[i].y, cases[i].m,
			     cases[i].d, cases[i].period);
		sim_fleet_free(f);
	}
}

Test(sim_model, dst_status_bit_and_change_event)
{
	struct sim_fleet *f = fleet(1, 10, 900);
	struct sim_meter m;
	sim_meter_load(f, 0, &m);
	/* summer time starts at 01:00 UTC on 2024-03-31 */
	int64_t t = utc(2024, 3, 31, 1);
	struct sim_evbuf ev = {0};
	cr_assert_eq(events_range(&m, t - 3600, t + 3600, &ev), 0);
	bool found = false;
	for (size_t i = 0; i < ev.n; i++)
		if (ev.v[i].code == EV_DST_CHANGE) {
			cr_assert_eq(ev.v[i].t, t);
			cr_assert_eq(ev.v[i].log, SIM_LOG_RTC);
			found = true;
		}
	cr_assert(found);
	events_free(&ev);
	sim_fleet_free(f);
}

struct collect {
	struct sim_interval v[256];
	long n;
};

static void
collect_cb(void *arg, const struct sim_interval *iv)
{
	struct collect *c = arg;
	if (c->n < 256)
		c->v[c->n++] = *iv;
}

Test(sim_model, dst_status_bit_follows_interval_end)
{
	struct sim_fleet *f = fleet(1, 10, 900);
	struct sim_meter m;
	sim_meter_load(f, 0, &m);
	struct collect c = {0};
	int64_t t = utc(2024, 3, 31, 1);
	sim_intervals(&m, t - 1800, t + 1800, collect_cb, &c);
	cr_assert_eq(c.n, 4);
	cr_assert_eq(c.v[0].status & SIM_ST_DST, 0);
	cr_assert_eq(c.v[1].end, t);
	cr_assert_eq(c.v[1].status & SIM_ST_DST, SIM_ST_DST);
	cr_assert_eq(c.v[3].status & SIM_ST_DST, SIM_ST_DST);
	sim_fleet_free(f);
}

Test(sim_model, deterministic_per_seed)
{
	int64_t t1 = utc(2024, 5, 1, 0), t2 = t1 + 2 * DAY;
	struct sim_fleet *a = fleet(99, 1000, 900), *b = fleet(99, 1000, 900), *c = fleet(100, 1000, 900);
	int differ = 0;
	for (uint32_t i = 0; i < 1000; i += 97) {
		struct sim_meter ma, mb, mc;
		sim_meter_load(a, i, &ma);
		sim_meter_load(b, i, &mb);
		sim_meter_load(c, i, &mc);
		cr_assert_eq(ma.serial, mb.serial);
		cr_assert_eq(memcmp(ma.ek, mb.ek, 16), 0);
		cr_assert_eq(memcmp(ma.base, mb.base, sizeof(ma.base)), 0);
		struct collect *ca = calloc(1, sizeof(*ca)), *cb = calloc(1, sizeof(*cb)),
			       *cc = calloc(1, sizeof(*cc));
		sim_intervals(&ma, t1, t2, collect_cb, ca);
		sim_intervals(&mb, t1, t2, collect_cb, cb);
		sim_intervals(&mc, t1, t2, collect_cb, cc);
		cr_assert_eq(ca->n, 192);
		cr_assert_eq(memcmp(ca, cb, sizeof(*ca)), 0, "same seed, same bytes");
		differ += ma.serial != mc.serial;
		differ += memcmp(ca->v, cc->v, sizeof(ca->v)) != 0;
		free(ca);
		free(cb);
		free(cc);
	}
	cr_assert_eq(differ, 2 * 11, "a different seed gives a different fleet");
	sim_fleet_free(a);
	sim_fleet_free(b);
	sim_fleet_free(c);
}

static int
cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

Test(sim_model, serials_are_unique_8_digit_and_reversible)
{
	struct sim_fleet *f = fleet(5, 100000, 900);
	uint32_t *s = malloc(100000 * sizeof(*s));
	for (uint32_t i = 0; i < 100000; i++) {
		s[i] = sim_fleet_serial(f, i);
		cr_assert(s[i] >= 10000000 && s[i] <= 99999999);
		if (i % 101 == 0)
			cr_assert_eq(sim_fleet_find(f, s[i]), i);
	}
	qsort(s, 100000, sizeof(*s), cmp_u32);
	for (uint32_t i = 1; i < 100000; i++)
		cr_assert_neq(s[i], s[i - 1]);
	free(s);
	cr_assert_lt(sim_fleet_find(f, 123), 0);
	sim_fleet_free(f);
}

Test(sim_model, default_calendar_tariffs)
{
	static const struct {
		int y;
		unsigned m, d;
		int hour; /* local */
		uint8_t want;
	} cases[] = {
		{2024, 1, 10, 18, 3}, /* winter weekday evening: peak */
		{2024, 1, 10, 10, 2}, /* winter weekday day */
		{2024, 1, 10, 3, 1},  /* night */
		{2024, 1, 13, 18, 1}, /* Saturday */
		{2024, 6, 12, 18, 2}, /* summer weekday: no peak */
		{2024, 12, 25, 18, 1}, /* Christmas: special day */
		{2024, 5, 9, 10, 1},  /* Ascension 2024 */
		{2025, 5, 9, 10, 2},  /* an ordinary Friday a year later */
	};
	struct cosem_tz tz = COSEM_TZ_CPH;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int64_t day = cosem_days_from_civil(cases[i].y, cases[i].m, cases[i].d);
		int64_t t = tariff_local_to_utc(&tz, day, cases[i].hour * 3600);
		cr_assert_eq(tariff_at(tariff_default_calendar(), tariff_default_special(), &tz, t),
			     cases[i].want, "case %zu", i);
	}
	cr_assert_eq(tariff_at(NULL, NULL, &tz, utc(2024, 1, 10, 17)), 1);
	cr_assert_eq(tariff_calendar_check(tariff_default_calendar()), 0);
	cr_assert_eq(tariff_special_check(tariff_default_special()), 0);
}

Test(sim_model, local_time_conversion_in_gap_and_overlap)
{
	struct cosem_tz tz = COSEM_TZ_CPH;
	int64_t d = cosem_days_from_civil(2024, 3, 31);
	/* 02:30 does not exist: the instant after the gap */
	cr_assert_eq(tariff_local_to_utc(&tz, d, 2 * 3600 + 1800), utc(2024, 3, 31, 1) + 1800);
	d = cosem_days_from_civil(2024, 10, 27);
	/* 02:30 happens twice: the first (summer time) */
	cr_assert_eq(tariff_local_to_utc(&tz, d, 2 * 3600 + 1800), utc(2024, 10, 27, 0) + 1800);
	cr_assert_eq(tariff_local_day(&tz, utc(2024, 10, 26, 22) + 1), d);
}

static bool
ev_same(const struct sim_event *a, const struct sim_event *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (a[i].t != b[i].t || a[i].code != b[i].code || a[i].log != b[i].log)
			return false;
	return true;
}

Test(sim_model, events_enumerate_identically_and_in_range)
{
	struct sim_fleet *f = fleet(11, 100, 900);
	int64_t t1 = utc(2024, 2, 1, 0), t2 = utc(2024, 6, 1, 0);
	size_t total = 0;
	for (uint32_t i = 0; i < 100; i += 9) {
		struct sim_meter m;
		sim_meter_load(f, i, &m);
		struct sim_evbuf a = {0}, b = {0}, s1 = {0}, s2 = {0};
		cr_assert_eq(events_range(&m, t1, t2, &a), 0);
		cr_assert_eq(events_range(&m, t1, t2, &b), 0);
		cr_assert_eq(a.n, b.n);
		cr_assert(ev_same(a.v, b.v, a.n));
		for (size_t k = 0; k < a.n; k++) {
			cr_assert(a.v[k].t > t1 && a.v[k].t <= t2);
			if (k)
				cr_assert_geq(a.v[k].t, a.v[k - 1].t);
			cr_assert_eq(a.v[k].log, events_code_log(a.v[k].code));
			cr_assert_str_neq(events_code_name(a.v[k].code), "unknown");
		}
		/* a split range gives the same events */
		int64_t mid = utc(2024, 3, 17, 5) + 77;
		events_range(&m, t1, mid, &s1);
		events_range(&m, mid, t2, &s2);
		cr_assert_eq(s1.n + s2.n, a.n);
		cr_assert(ev_same(s1.v, a.v, s1.n));
		cr_assert(ev_same(s2.v, a.v + s1.n, s2.n));
		total += a.n;
		events_free(&a);
		events_free(&b);
		events_free(&s1);
		events_free(&s2);
	}
	cr_assert_gt(total, 50, "the process produces events");
	sim_fleet_free(f);
}

Test(sim_model, logs_hold_200_entries_and_wrap)
{
	struct sim_fleet *f = fleet(2, 100, 900);
	struct sim_meter m;
	uint32_t i;
	for (i = 0; i < 100; i++) {
		sim_meter_load(f, i, &m);
		if (m.type == SIM_TYPE_382M)
			break;
	}
	cr_assert_lt(i, 100);
	int64_t at = m.installed + 2 * 365 * DAY;
	struct sim_evbuf all = {0}, log = {0};
	cr_assert_eq(events_range(&m, m.installed, at, &all), 0);
	size_t n_vq = 0;
	for (size_t k = 0; k < all.n; k++)
		n_vq += all.v[k].log == SIM_LOG_VQ;
	cr_assert_gt(n_vq, SIM_LOG_DEPTH, "two years of voltage quality overflow the log");
	cr_assert_eq(events_log(&m, SIM_LOG_VQ, at, &log), 0);
	cr_assert_eq(log.n, SIM_LOG_DEPTH);
	/* the newest 200 of the log, oldest first */
	size_t seen = 0, k = all.n;
	while (k-- > 0 && seen < SIM_LOG_DEPTH)
		if (all.v[k].log == SIM_LOG_VQ) {
			seen++;
			cr_assert(ev_same(&all.v[k], &log.v[SIM_LOG_DEPTH - seen], 1));
		}
	events_free(&log);
	/* a young log holds everything */
	int64_t young = m.installed + 20 * DAY;
	size_t n_young = 0;
	for (size_t k2 = 0; k2 < all.n && all.v[k2].t <= young; k2++)
		n_young += all.v[k2].log == SIM_LOG_VQ;
	cr_assert_eq(events_log(&m, SIM_LOG_VQ, young, &log), 0);
	cr_assert_eq(log.n, n_young);
	events_free(&log);
	events_free(&all);
	sim_fleet_free(f);
}

struct maxcb {
	uint32_t max;
	int64_t at;
};

static void
max_cb(void *arg, const struct sim_interval *iv)
{
	struct maxcb *c = arg;
	if (iv->e[SIM_AP] > c->max) {
		c->max = iv->e[SIM_AP];
		c->at = iv->end;
	}
}

Test(sim_model, billing_values_and_peak_demand)
{
	struct sim_fleet *f = fleet(8, 20, 900);
	for (uint32_t i = 0; i < 20; i += 4) {
		struct sim_meter m;
		sim_meter_load(f, i, &m);
		int64_t b = sim_month_next(&m, utc(2024, 4, 10, 0));
		cr_assert_eq(b, utc(2024, 4, 30, 22), "1 May 00:00 CEST");
		struct sim_billing bill;
		sim_billing(&m, b, &bill);
		struct sim_registers r;
		sim_registers(&m, b, &r);
		cr_assert_eq(memcmp(&bill.r, &r, sizeof(r)), 0);
		/* the peak is the largest 15-minute interval of April, in W */
		struct maxcb mx = {0};
		sim_intervals(&m, sim_month_start(&m, b - 1), b, max_cb, &mx);
		cr_assert_eq(bill.d.total.w, mx.max * 4);
		cr_assert_eq(bill.d.total.at, mx.at);
		uint32_t tmax = 0;
		for (unsigned t = 0; t < TARIFF_MAX; t++)
			if (bill.d.tariff[t].w > tmax)
				tmax = bill.d.tariff[t].w;
		cr_assert_eq(tmax, bill.d.total.w);
	}
	sim_fleet_free(f);
}

Test(sim_model, memory_per_meter)
{
	size_t per = sizeof(struct sim_state);
	cr_log_info("per-meter state: %zu bytes (budget 2048)", per);
	cr_assert_leq(per, 2048);
	cr_assert_leq(per, 256, "idle meters should cost far below the budget");
}

Test(sim_model, changing_the_period_clears_the_profile)
{
	struct sim_fleet *f = fleet(1, 10, 900);
	struct sim_meter m;
	sim_meter_load(f, 0, &m);
	int64_t t = utc(2024, 4, 2, 10);
	long n = 0;
	cr_assert_eq(sim_set_period(&m, t, 1000), METER_ERANGE);
	cr_assert_eq(sim_set_period(&m, t, 3600), 0);
	cr_assert_eq(sim_intervals(&m, t - DAY, t + 2 * 3600, count_cb, &n), 2);
	cr_assert_eq(n, 2, "only hourly entries after the change");
	sim_fleet_free(f);
}

Test(sim_model, exporters_export_in_daylight_only)
{
	struct sim_fleet *f = fleet(21, 200, 3600);
	unsigned seen = 0;
	for (uint32_t i = 0; i < 200 && seen < 3; i++) {
		struct sim_meter m;
		sim_meter_load(f, i, &m);
		if (!m.exporter)
			continue;
		seen++;
		struct collect c = {0};
		/* 2024-06-10 local day: 24 hourly intervals */
		struct cosem_tz tz = COSEM_TZ_CPH;
		int64_t d = cosem_days_from_civil(2024, 6, 10);
		sim_intervals(&m, tariff_local_to_utc(&tz, d, 0), tariff_local_to_utc(&tz, d + 1, 0),
			      collect_cb, &c);
		cr_assert_eq(c.n, 24);
		for (long k = 0; k < c.n; k++) {
			int hour_end = (int)k + 1; /* local */
			if (hour_end <= 7 || hour_end >= 21)
				cr_assert_eq(c.v[k].e[SIM_AM], 0, "export at night, hour %d", hour_end);
		}
		cr_assert_gt(c.v[13].e[SIM_AM], c.v[8].e[SIM_AM], "more at 13-14 than at 08-09");
		/* summer produces more than winter */
		int64_t jun = sim_energy(&m, SIM_AM, utc(2024, 7, 1, 0)) - sim_energy(&m, SIM_AM, utc(2024, 6, 1, 0));
		int64_t dec = sim_energy(&m, SIM_AM, utc(2025, 1, 1, 0)) - sim_energy(&m, SIM_AM, utc(2024, 12, 1, 0));
		cr_assert_gt(jun, 2 * dec);
	}
	cr_assert_eq(seen, 3);
	sim_fleet_free(f);
}

Test(sim_model, no_jump_at_dst_changes)
{
	/* The daily shape follows local time yet stays continuous: the hour
	 * across each switch is within the range of its neighbours' swing. */
	struct sim_fleet *f = fleet(4, 30, 900);
	for (uint32_t i = 0; i < 30; i += 3) {
		struct sim_meter m;
		sim_meter_load(f, i, &m);
		int64_t sw[2] = {utc(2024, 3, 31, 1), utc(2024, 10, 27, 1)};
		for (int k = 0; k < 2; k++) {
			struct collect c = {0};
			sim_intervals(&m, sw[k] - 2 * 3600, sw[k] + 2 * 3600, collect_cb, &c);
			cr_assert_eq(c.n, 16);
			for (long j = 1; j < c.n; j++) {
				double a = c.v[j - 1].e[SIM_AP], b = c.v[j].e[SIM_AP];
				cr_assert(b < 2.5 * a + 5 && a < 2.5 * b + 5, "jump %f -> %f", a, b);
			}
		}
	}
	sim_fleet_free(f);
}

/* ---- analysis logger ------------------------------------------------------ */

struct ana_acc {
	const struct sim_meter *m;
	long n;
	int64_t first, last;
	bool bad;
};

static void
ana_cb(void *arg, const struct sim_analysis *a)
{
	struct ana_acc *x = arg;
	struct sim_instant in;
	sim_instant(x->m, a->t - 1, &in);
	if (a->t % SIM_ANALYSIS_PERIOD || memcmp(&in, &a->in, sizeof(in)) ||
	    (x->n && a->t != x->last + SIM_ANALYSIS_PERIOD))
		x->bad = true;
	if (!x->n)
		x->first = a->t;
	x->last = a->t;
	x->n++;
}

Test(sim_model, analysis_logger_captures_the_instantaneous_values)
{
	struct sim_fleet *f = fleet(3, 200, 900);
	uint32_t idx[8];
	unsigned n = pick_meters(f, idx);
	int64_t d0 = utc(2024, 2, 10, 0);
	for (unsigned k = 0; k < n; k++) {
		struct sim_meter m;
		sim_meter_load(f, idx[k], &m);
		struct ana_acc x = {.m = &m};
		cr_assert_eq(sim_analysis(&m, d0, d0 + DAY, ana_cb, &x), 144);
		cr_assert_eq(x.n, 144);
		cr_assert(!x.bad, "aligned, consecutive, equal to sim_instant of the second before");
		cr_assert_eq(x.first, d0 + 600);
		cr_assert_eq(x.last, d0 + DAY);
		/* a capture's import power is the energy of the grid step that ended then */
		struct sim_instant in;
		sim_instant(&m, d0 + 36000 - 1, &in);
		int64_t e = sim_energy(&m, SIM_AP, d0 + 36000) - sim_energy(&m, SIM_AP, d0 + 36000 - 300);
		cr_assert_eq(in.p_import, e * 12);
		cr_assert_gt(in.u[0], 2000);
		/* nothing before installation */
		struct ana_acc y = {.m = &m};
		cr_assert_eq(sim_analysis(&m, m.installed - DAY, m.installed + 3600, ana_cb, &y), 6);
		cr_assert_eq(y.first, (m.installed / 600 + 1) * 600);
	}
	sim_fleet_free(f);
}

Test(sim_model, analysis_entries_do_not_change_after_capture)
{
	struct sim_fleet *f = fleet(3, 20, 900);
	struct sim_meter m;
	sim_meter_load(f, 2, &m);
	int64_t c = utc(2024, 2, 10, 12);
	struct sim_analysis before = {0}, after = {0};
	struct sim_instant open;
	cr_assert_eq(sim_analysis(&m, c - 600, c, NULL, NULL), 1);
	sim_instant(&m, c - 1, &before.in);
	cr_assert_gt(before.in.p_import, 0);
	cr_assert_eq(dev_remote_disconnect(&m, c + 100), 0);
	sim_instant(&m, c - 1, &after.in);
	cr_assert_eq(memcmp(&before.in, &after.in, sizeof(before.in)), 0,
		     "a disconnect after the capture leaves it");
	sim_instant(&m, c + 1200 - 1, &open);
	cr_assert_eq(open.p_import, 0, "no power through the open breaker");
	cr_assert_eq(open.p[0], 0);
	sim_fleet_free(f);
}

static char *
expect_text(const struct sim_meter *m, int64_t from, int64_t to, unsigned what, bool csv)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	cr_assert_not_null(f);
	struct expect_req rq = {from, to, what, csv};
	cr_assert_eq(expect_write(f, m, &rq), 0);
	cr_assert_eq(fclose(f), 0);
	return buf;
}

Test(sim_model, expect_prints_analysis_records_on_request_only)
{
	struct sim_fleet *f = fleet(3, 200, 900);
	uint32_t idx[8];
	unsigned n = pick_meters(f, idx);
	int64_t t0 = utc(2024, 2, 10, 0);
	for (unsigned k = 0; k < n; k++) {
		struct sim_meter m;
		sim_meter_load(f, idx[k], &m);
		char *all = expect_text(&m, t0, t0 + 3600, EXPECT_DEFAULT, true);
		cr_assert_null(strstr(all, "analysis"), "not in the default output");
		cr_assert_not_null(strstr(all, "\ninterval,2024-02-10T00:15:00Z,"));
		free(all);
		char *csv = expect_text(&m, t0, t0 + 3600, EXPECT_ANALYSIS, true);
		cr_assert_eq(strncmp(csv, "#analysis,t,local,u1_dV,", 24), 0);
		/* the row captured at 00:30 UTC, field by field */
		struct sim_instant in;
		sim_instant(&m, t0 + 1800 - 1, &in);
		char want[256];
		char u2[8] = "", u3[8] = "", i2[12] = "", i3[12] = "", p2[12] = "", p3[12] = "";
		if (m.phases == 3) {
			snprintf(u2, sizeof(u2), "%u", in.u[1]);
			snprintf(i2, sizeof(i2), "%u", in.i[1]);
			snprintf(p2, sizeof(p2), "%d", in.p[1]);
		}
		if (m.phases >= 2) {
			snprintf(u3, sizeof(u3), "%u", in.u[2]);
			snprintf(i3, sizeof(i3), "%u", in.i[2]);
			snprintf(p3, sizeof(p3), "%d", in.p[2]);
		}
		snprintf(want, sizeof(want),
		         "\nanalysis,2024-02-10T00:30:00Z,2024-02-10T01:30:00+01:00,%u,%s,%s,%u,%s,%s,%d,%s,"
		         "%s,%d,%d\n",
		         in.u[0], u2, u3, in.i[0], i2, i3, in.p[0], p2, p3, in.p_import, in.p_export);
		cr_assert_not_null(strstr(csv, want), "%s not in\n%s", want, csv);
		int rows = 0;
		for (char *p = csv; (p = strstr(p, "\nanalysis,")); p++)
			rows++;
		cr_assert_eq(rows, 6);
		free(csv);
		char *json = expect_text(&m, t0, t0 + 3600, EXPECT_ANALYSIS, false);
		cr_assert_not_null(strstr(json, "\"analysis\""));
		cr_assert_null(strstr(json, "\"intervals\""));
		snprintf(want, sizeof(want), "\"p_import_w\": %d", in.p_import);
		cr_assert_not_null(strstr(json, want), "%s in %s", want, json);
		free(json);
	}
	unsigned w = 0;
	cr_assert_eq(expect_parse_what("intervals,analysis", &w), 0);
	cr_assert_eq(w, EXPECT_INTERVALS | EXPECT_ANALYSIS);
	cr_assert_eq(expect_parse_what("intervals,analyses", &w), METER_EMALFORMED);
	sim_fleet_free(f);
}
