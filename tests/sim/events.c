/*
 * events.c: the seeded event process and the log views.  Each UTC day of
 * each meter draws, from hashes of (seed, meter, category, day), whether a
 * category of event happens that day and when; an event with a duration
 * (power down/up, cover open/closed) has its closing entry at most a few
 * hours later, so enumerating a range only needs the day before it too.
 * Nothing is stored: the same range always gives the same events.
 */
#include "events.h"

#include <stdlib.h>
#include <string.h>

#include "meter_error.h"
#include "model.h"

#define DAY 86400
#define H_EV 1000 /* hash tags 1000.. are the event categories */

struct code_info {
	uint16_t code;
	uint8_t log;
	const char *name;
};

static const struct code_info codes[] = {
	{EV_POWER_DOWN, SIM_LOG_STANDARD, "power_down"},
	{EV_POWER_UP, SIM_LOG_STANDARD, "power_up"},
	{EV_DST_CHANGE, SIM_LOG_RTC, "dst_change"},
	{EV_CLOCK_OLD, SIM_LOG_RTC, "clock_adjusted_old"},
	{EV_CLOCK_NEW, SIM_LOG_RTC, "clock_adjusted_new"},
	{EV_TOU_ACTIVATED, SIM_LOG_STANDARD, "tou_activated"},
	{EV_TOU_PROGRAMMED, SIM_LOG_STANDARD, "tou_programmed"},
	{EV_SPECIAL_DAYS_CHANGED, SIM_LOG_STANDARD, "special_days_changed"},
	{EV_MAGNETIC_ON, SIM_LOG_FRAUD, "magnetic_field"},
	{EV_MAGNETIC_OFF, SIM_LOG_FRAUD, "magnetic_field_gone"},
	{EV_COVER_OPEN, SIM_LOG_FRAUD, "cover_open"},
	{EV_COVER_CLOSED, SIM_LOG_FRAUD, "cover_closed"},
	{EV_MANUAL_DISCONNECT, SIM_LOG_DISCONNECTOR, "manual_disconnect"},
	{EV_MANUAL_CONNECT, SIM_LOG_DISCONNECTOR, "manual_connect"},
	{EV_REMOTE_DISCONNECT, SIM_LOG_DISCONNECTOR, "remote_disconnect"},
	{EV_REMOTE_CONNECT, SIM_LOG_DISCONNECTOR, "remote_connect"},
	{EV_LOCAL_DISCONNECT, SIM_LOG_DISCONNECTOR, "local_disconnect"},
	{EV_LIMITER_EXCEEDED, SIM_LOG_DISCONNECTOR, "limiter_exceeded"},
	{EV_LIMITER_OK, SIM_LOG_DISCONNECTOR, "limiter_ok"},
	{EV_LIMITER_CHANGED, SIM_LOG_DISCONNECTOR, "limiter_changed"},
	{EV_READY_FOR_RECONNECT, SIM_LOG_DISCONNECTOR, "ready_for_reconnection"},
	{EV_LOCAL_CONNECT, SIM_LOG_DISCONNECTOR, "local_connect"},
	{EV_CONTROL_MODE_CHANGED, SIM_LOG_DISCONNECTOR, "control_mode_changed"},
	{EV_UNDERVOLT_L1, SIM_LOG_VQ, "sag_l1"},
	{EV_UNDERVOLT_L1 + 1, SIM_LOG_VQ, "sag_l2"},
	{EV_UNDERVOLT_L1 + 2, SIM_LOG_VQ, "sag_l3"},
	{EV_OVERVOLT_L1, SIM_LOG_VQ, "swell_l1"},
	{EV_OVERVOLT_L1 + 1, SIM_LOG_VQ, "swell_l2"},
	{EV_OVERVOLT_L1 + 2, SIM_LOG_VQ, "swell_l3"},
	{EV_MISSING_VOLT_L1, SIM_LOG_VQ, "outage_l1"},
	{EV_MISSING_VOLT_L1 + 1, SIM_LOG_VQ, "outage_l2"},
	{EV_MISSING_VOLT_L1 + 2, SIM_LOG_VQ, "outage_l3"},
	{EV_VOLT_NORMAL_L1, SIM_LOG_VQ, "restored_l1"},
	{EV_VOLT_NORMAL_L1 + 1, SIM_LOG_VQ, "restored_l2"},
	{EV_VOLT_NORMAL_L1 + 2, SIM_LOG_VQ, "restored_l3"},
	{EV_MISSING_NEUTRAL, SIM_LOG_VQ, "missing_neutral"},
	{EV_CREDIT_WARNING, SIM_LOG_STANDARD, "credit_warning"},
	{EV_CREDIT_EXHAUSTED, SIM_LOG_DISCONNECTOR, "credit_exhausted"},
	{EV_CREDIT_UPDATED, SIM_LOG_STANDARD, "credit_updated"},
	{EV_PAYMENT_MODE_CHANGED, SIM_LOG_STANDARD, "payment_mode_changed"},
};

static const struct code_info *
code_find(uint16_t code)
{
	for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++)
		if (codes[i].code == code)
			return &codes[i];
	return NULL;
}

uint8_t
events_code_log(uint16_t code)
{
	const struct code_info *c = code_find(code);
	return c ? c->log : SIM_LOG_STANDARD;
}

const char *
events_code_name(uint16_t code)
{
	const struct code_info *c = code_find(code);
	return c ? c->name : "unknown";
}

const char *
events_log_name(uint8_t log)
{
	static const char *n[SIM_NLOG] = {"standard", "fraud", "disconnector", "voltage_quality",
					  "rtc"};
	return log < SIM_NLOG ? n[log] : "?";
}

struct obis
events_log_obis(uint8_t log)
{
	static const uint8_t e[SIM_NLOG] = {0, 1, 2, 4, 7};
	return OBIS(0, 0, 99, 98, log < SIM_NLOG ? e[log] : 0, 255);
}

int
events_push(struct sim_evbuf *b, int64_t t, uint16_t code)
{
	if (b->n == b->cap) {
		size_t cap = b->cap ? 2 * b->cap : 32;
		struct sim_event *v = realloc(b->v, cap * sizeof(*v));
		if (!v)
			return METER_ENOSPC;
		b->v = v;
		b->cap = cap;
	}
	b->v[b->n++] = (struct sim_event){t, code, events_code_log(code)};
	return 0;
}

static int
ev_cmp(const void *pa, const void *pb)
{
	const struct sim_event *a = pa, *b = pb;
	if (a->t != b->t)
		return a->t < b->t ? -1 : 1;
	if (a->log != b->log)
		return a->log < b->log ? -1 : 1;
	return (int)a->code - (int)b->code;
}

void
events_sort(struct sim_evbuf *b)
{
	if (b->n > 1)
		qsort(b->v, b->n, sizeof(*b->v), ev_cmp);
}

void
events_free(struct sim_evbuf *b)
{
	free(b->v);
	memset(b, 0, sizeof(*b));
}

/* ---- the seeded process -------------------------------------------------- */

enum ev_cat {
	C_POWER, C_OUTAGE, C_SAG, C_SWELL, C_NEUTRAL, C_COVER, C_MAGNET, C_CLOCK, C_NCAT
};

/* Mean days between events of each category (per phase for the phase ones). */
static const double cat_days[C_NCAT] = {30, 40, 12, 18, 200, 400, 500, 45};

static uint64_t
eh(const struct sim_meter *m, unsigned cat, unsigned sub, int64_t day)
{
	return sim_hash(m->fleet->cfg.seed, m->index, H_EV + cat * 8 + sub, (uint64_t)day);
}

static bool
happens(const struct sim_meter *m, unsigned cat, unsigned sub, int64_t day)
{
	return sim_u01(eh(m, cat, sub, day)) < 1.0 / cat_days[cat];
}

/* Seconds into the day, from an independent stream of the same hash. */
static int64_t
when(const struct sim_meter *m, unsigned cat, unsigned sub, int64_t day)
{
	return (int64_t)(sim_hash(eh(m, cat, sub, day), 1, 0, 0) % DAY);
}

static int64_t
duration(const struct sim_meter *m, unsigned cat, unsigned sub, int64_t day, int64_t max)
{
	double u = sim_u01(sim_hash(eh(m, cat, sub, day), 2, 0, 0));
	return 5 + (int64_t)(u * u * u * (double)max);
}

/* Which of L1..L3 the meter measures (282: L1 and L3, Aron connection). */
static bool
has_phase(const struct sim_meter *m, unsigned ph)
{
	return m->type == SIM_TYPE_382M || (m->type == SIM_TYPE_282 && ph != 1) || ph == 0;
}

static int
gen_day(const struct sim_meter *m, int64_t day, struct sim_evbuf *b)
{
	int64_t t0 = day * DAY;
	int rc = 0;
	if (happens(m, C_POWER, 0, day)) {
		int64_t t = t0 + when(m, C_POWER, 0, day);
		rc |= events_push(b, t, EV_POWER_DOWN);
		rc |= events_push(b, t + duration(m, C_POWER, 0, day, 3 * 3600), EV_POWER_UP);
	}
	for (unsigned ph = 0; ph < 3; ph++) {
		if (!has_phase(m, ph))
			continue;
		if (m->phases > 1 && happens(m, C_OUTAGE, ph, day)) {
			int64_t t = t0 + when(m, C_OUTAGE, ph, day);
			rc |= events_push(b, t, (uint16_t)(EV_MISSING_VOLT_L1 + ph));
			rc |= events_push(b, t + duration(m, C_OUTAGE, ph, day, 3600),
					  (uint16_t)(EV_VOLT_NORMAL_L1 + ph));
		}
		if (happens(m, C_SAG, ph, day))
			rc |= events_push(b, t0 + when(m, C_SAG, ph, day), (uint16_t)(EV_UNDERVOLT_L1 + ph));
		if (happens(m, C_SWELL, ph, day))
			rc |= events_push(b, t0 + when(m, C_SWELL, ph, day), (uint16_t)(EV_OVERVOLT_L1 + ph));
	}
	if (m->type == SIM_TYPE_382M && happens(m, C_NEUTRAL, 0, day))
		rc |= events_push(b, t0 + when(m, C_NEUTRAL, 0, day), EV_MISSING_NEUTRAL);
	if (happens(m, C_COVER, 0, day)) {
		int64_t t = t0 + when(m, C_COVER, 0, day);
		rc |= events_push(b, t, EV_COVER_OPEN);
		rc |= events_push(b, t + duration(m, C_COVER, 0, day, 1800), EV_COVER_CLOSED);
	}
	if (happens(m, C_MAGNET, 0, day)) {
		int64_t t = t0 + when(m, C_MAGNET, 0, day);
		rc |= events_push(b, t, EV_MAGNETIC_ON);
		rc |= events_push(b, t + duration(m, C_MAGNET, 0, day, 600), EV_MAGNETIC_OFF);
	}
	if (happens(m, C_CLOCK, 0, day)) {
		/* Both entries carry the instant of the adjustment. */
		int64_t t = t0 + when(m, C_CLOCK, 0, day);
		rc |= events_push(b, t, EV_CLOCK_OLD);
		rc |= events_push(b, t, EV_CLOCK_NEW);
	}
	/* The EU rule switches at 01:00 UTC. */
	const struct cosem_tz *tz = &m->fleet->cfg.tz;
	if (cosem_tz_is_dst(tz, t0) != cosem_tz_is_dst(tz, t0 + DAY - 1)) {
		int64_t lo = t0, hi = t0 + DAY - 1; /* first second of the new state */
		bool s0 = cosem_tz_is_dst(tz, t0);
		while (lo < hi) {
			int64_t mid = lo + (hi - lo) / 2;
			if (cosem_tz_is_dst(tz, mid) != s0)
				hi = mid;
			else
				lo = mid + 1;
		}
		rc |= events_push(b, lo, EV_DST_CHANGE);
	}
	return rc ? METER_ENOSPC : 0;
}

static int64_t
day_of(int64_t t)
{
	return t >= 0 ? t / DAY : -((-t + DAY - 1) / DAY);
}

int
events_range(const struct sim_meter *m, int64_t from, int64_t to, struct sim_evbuf *out)
{
	if (from < m->installed)
		from = m->installed;
	if (to <= from)
		return 0;
	struct sim_evbuf day = {0};
	size_t first = out->n;
	int rc = 0;
	for (int64_t d = day_of(from) - 1; d <= day_of(to) && !rc; d++) {
		day.n = 0;
		rc = gen_day(m, d, &day);
		for (size_t i = 0; i < day.n && !rc; i++)
			if (day.v[i].t > from && day.v[i].t <= to)
				rc = events_push(out, day.v[i].t, day.v[i].code);
	}
	events_free(&day);
	const struct dev_journal *j = m->st->dev.j;
	if (j)
		for (size_t i = 0; i < j->ev.n && !rc; i++)
			if (j->ev.v[i].t > from && j->ev.v[i].t <= to)
				rc = events_push(out, j->ev.v[i].t, j->ev.v[i].code);
	if (rc)
		return rc;
	struct sim_evbuf tail = {out->v + first, out->n - first, out->n - first};
	events_sort(&tail);
	return 0;
}

int
events_log(const struct sim_meter *m, uint8_t log, int64_t at, struct sim_evbuf *out)
{
	struct sim_evbuf all = {0};
	int64_t span = 64 * DAY;
	size_t n;
	for (;;) {
		all.n = 0;
		int rc = events_range(m, at - span, at, &all);
		if (rc) {
			events_free(&all);
			return rc;
		}
		n = 0;
		for (size_t i = 0; i < all.n; i++)
			n += all.v[i].log == log;
		if (n >= SIM_LOG_DEPTH || at - span <= m->installed)
			break;
		span *= 2;
	}
	size_t skip = n > SIM_LOG_DEPTH ? n - SIM_LOG_DEPTH : 0;
	int rc = 0;
	for (size_t i = 0; i < all.n && !rc; i++) {
		if (all.v[i].log != log)
			continue;
		if (skip) {
			skip--;
			continue;
		}
		rc = events_push(out, all.v[i].t, all.v[i].code);
	}
	events_free(&all);
	return rc;
}

int64_t
events_last_clock_set(const struct sim_meter *m, int64_t t)
{
	int64_t stop = day_of(m->installed);
	for (int64_t d = day_of(t); d >= stop && d > day_of(t) - 400; d--) {
		if (!happens(m, C_CLOCK, 0, d))
			continue;
		int64_t at = d * DAY + when(m, C_CLOCK, 0, d);
		if (at <= t && at >= m->installed)
			return at;
	}
	return m->installed;
}
