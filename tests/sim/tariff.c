/*
 * tariff.c: activity calendar evaluation for the simulator.  Everything is
 * computed from the calendar tables and the time-zone rule; nothing is
 * cached, so a calendar written by a client takes effect by pointer swap.
 * The day profile in force at 00:00 carries over the previous day's last
 * tariff when its first switching time is after midnight, as a meter does.
 */
#include "tariff.h"

#include <stddef.h>

#include "meter_error.h"

static const struct tariff_calendar default_calendar = {
	.name = "DK-TOU",
	.n_seasons = 3,
	.n_weeks = 2,
	.n_days = 3,
	.season = {{1, 1, 0}, {4, 1, 1}, {10, 1, 0}},
	/* week 0 winter: weekdays with peak; week 1 summer: weekdays without */
	.week = {{0, 0, 0, 0, 0, 2, 2}, {1, 1, 1, 1, 1, 2, 2}},
	.day = {
		{4, {{0, 1}, {6 * 60, 2}, {17 * 60, 3}, {21 * 60, 1}}},
		{3, {{0, 1}, {6 * 60, 2}, {21 * 60, 1}}},
		{1, {{0, 1}}},
	},
};

#define SP(i, y, m, d) {(y), (m), (d), 2, (i)}
static const struct tariff_special default_special = {
	.n = 32,
	.d = {
		SP(0, TARIFF_ANY_YEAR, 1, 1), SP(1, TARIFF_ANY_YEAR, 6, 5),
		SP(2, TARIFF_ANY_YEAR, 12, 24), SP(3, TARIFF_ANY_YEAR, 12, 25),
		SP(4, TARIFF_ANY_YEAR, 12, 26), SP(5, TARIFF_ANY_YEAR, 12, 31),
		SP(6, 2024, 3, 28), SP(7, 2024, 3, 29),
		SP(8, 2024, 3, 31), SP(9, 2024, 4, 1), SP(10, 2024, 5, 9), SP(11, 2024, 5, 19),
		SP(12, 2024, 5, 20), SP(13, 2025, 4, 17), SP(14, 2025, 4, 18), SP(15, 2025, 4, 20),
		SP(16, 2025, 4, 21), SP(17, 2025, 5, 29), SP(18, 2025, 6, 8), SP(19, 2025, 6, 9),
		SP(20, 2026, 4, 2), SP(21, 2026, 4, 3), SP(22, 2026, 4, 5), SP(23, 2026, 4, 6),
		SP(24, 2026, 5, 14), SP(25, 2026, 5, 24), SP(26, 2026, 5, 25), SP(27, 2027, 3, 25),
		SP(28, 2027, 3, 26), SP(29, 2027, 3, 29), SP(30, 2027, 5, 6), SP(31, 2027, 5, 17),
	},
};

const struct tariff_calendar *
tariff_default_calendar(void)
{
	return &default_calendar;
}

const struct tariff_special *
tariff_default_special(void)
{
	return &default_special;
}

int
tariff_calendar_check(const struct tariff_calendar *c)
{
	if (c->n_seasons > TARIFF_MAX_SEASONS || c->n_weeks < 1 || c->n_weeks > TARIFF_MAX_WEEKS ||
	    c->n_days < 1 || c->n_days > TARIFF_MAX_DAYS)
		return METER_ERANGE;
	for (unsigned i = 0; i < c->n_seasons; i++) {
		const struct tariff_season *s = &c->season[i];
		if (s->month < 1 || s->month > 12 || s->day < 1 || s->day > 31 || s->week >= c->n_weeks)
			return METER_ERANGE;
		if (i && s->month * 32 + s->day <= c->season[i - 1].month * 32 + c->season[i - 1].day)
			return METER_ERANGE;
	}
	for (unsigned w = 0; w < c->n_weeks; w++)
		for (unsigned d = 0; d < 7; d++)
			if (c->week[w][d] >= c->n_days)
				return METER_ERANGE;
	for (unsigned d = 0; d < c->n_days; d++) {
		const struct tariff_day *p = &c->day[d];
		if (p->n < 1 || p->n > TARIFF_MAX_ACTIONS)
			return METER_ERANGE;
		for (unsigned i = 0; i < p->n; i++) {
			if (p->a[i].minute >= 1440 || p->a[i].tariff < 1 || p->a[i].tariff > TARIFF_MAX)
				return METER_ERANGE;
			if (i && p->a[i].minute <= p->a[i - 1].minute)
				return METER_ERANGE;
		}
	}
	return 0;
}

int
tariff_special_check(const struct tariff_special *s)
{
	if (s->n > TARIFF_MAX_SPECIAL)
		return METER_ERANGE;
	for (unsigned i = 0; i < s->n; i++)
		if (s->d[i].month < 1 || s->d[i].month > 12 || s->d[i].day < 1 || s->d[i].day > 31 ||
		    s->d[i].day_id >= TARIFF_MAX_DAYS)
			return METER_ERANGE;
	return 0;
}

static const struct tariff_special_day *
special_find(const struct tariff_special *sp, int y, unsigned m, unsigned d)
{
	if (!sp)
		return NULL;
	for (unsigned i = 0; i < sp->n; i++) {
		const struct tariff_special_day *s = &sp->d[i];
		if (s->month == m && s->day == d && (s->year == TARIFF_ANY_YEAR || s->year == y))
			return s;
	}
	return NULL;
}

bool
tariff_is_special(const struct tariff_special *sp, int y, unsigned m, unsigned d)
{
	return special_find(sp, y, m, d) != NULL;
}

int64_t
tariff_local_day(const struct cosem_tz *tz, int64_t utc)
{
	int64_t local = utc + 60 * (int64_t)cosem_tz_offset(tz, utc);
	return local >= 0 ? local / 86400 : -((-local + 86399) / 86400);
}

int64_t
tariff_local_to_utc(const struct cosem_tz *tz, int64_t local_day, int32_t sec_of_day)
{
	int64_t local = local_day * 86400 + sec_of_day;
	int64_t std = local - 60 * (int64_t)tz->std_offset;
	int64_t summer = std - 3600;

	/* The earlier reading wins in the repeated hour; in the spring gap
	 * neither is consistent and the standard-time reading lands after it. */
	if (tz->dst_rule == COSEM_DST_EU && cosem_tz_offset(tz, summer) == tz->std_offset + 60)
		return summer;
	return std;
}

/* Monday = 0 .. Sunday = 6 of a day number (1970-01-01 was a Thursday). */
static unsigned
weekday(int64_t day)
{
	int64_t w = (day + 3) % 7;
	return (unsigned)(w < 0 ? w + 7 : w);
}

static const struct tariff_day *
day_profile(const struct tariff_calendar *cal, const struct tariff_special *sp, int64_t day)
{
	int y;
	unsigned m, d;
	cosem_civil_from_days(day, &y, &m, &d);
	const struct tariff_special_day *s = special_find(sp, y, m, d);
	if (s && s->day_id < cal->n_days)
		return &cal->day[s->day_id];
	unsigned week = 0;
	if (cal->n_seasons) {
		week = cal->season[cal->n_seasons - 1].week;
		for (unsigned i = 0; i < cal->n_seasons; i++)
			if ((unsigned)cal->season[i].month * 32 + cal->season[i].day <= m * 32 + d)
				week = cal->season[i].week;
	}
	return &cal->day[cal->week[week][weekday(day)]];
}

bool
tariff_working_day(const struct tariff_special *sp, const struct cosem_tz *tz, int64_t utc)
{
	int64_t day = tariff_local_day(tz, utc);
	if (weekday(day) >= 5)
		return false;
	int y;
	unsigned m, d;
	cosem_civil_from_days(day, &y, &m, &d);
	return !tariff_is_special(sp, y, m, d);
}

/* Tariff at 00:00 of a day: its first action if at midnight, else the
 * previous day's last. */
static uint8_t
tariff_at_midnight(const struct tariff_calendar *cal, const struct tariff_special *sp,
		   int64_t day, const struct tariff_day *p)
{
	if (p->n && p->a[0].minute == 0)
		return p->a[0].tariff;
	const struct tariff_day *prev = day_profile(cal, sp, day - 1);
	return prev->n ? prev->a[prev->n - 1].tariff : 1;
}

uint8_t
tariff_at(const struct tariff_calendar *cal, const struct tariff_special *sp,
	  const struct cosem_tz *tz, int64_t utc)
{
	if (!cal)
		return 1;
	int64_t day = tariff_local_day(tz, utc);
	const struct tariff_day *p = day_profile(cal, sp, day);
	uint8_t t = tariff_at_midnight(cal, sp, day, p);
	for (unsigned i = 0; i < p->n; i++) {
		if (tariff_local_to_utc(tz, day, p->a[i].minute * 60) > utc)
			break;
		t = p->a[i].tariff;
	}
	return t;
}

struct seg_acc {
	tariff_seg_fn fn;
	void *arg;
	int64_t from, to;
	int64_t start; /* of the stretch being built */
	uint8_t tariff;
};

/* A switch to tariff t at UTC instant at. */
static void
seg_switch(struct seg_acc *s, int64_t at, uint8_t t)
{
	if (at <= s->from) {
		s->tariff = t;
		return;
	}
	if (at >= s->to || t == s->tariff)
		return;
	s->fn(s->arg, s->start, at, s->tariff);
	s->start = at;
	s->tariff = t;
}

void
tariff_segments(const struct tariff_calendar *cal, const struct tariff_special *sp,
		const struct cosem_tz *tz, int64_t from, int64_t to, tariff_seg_fn fn, void *arg)
{
	if (from >= to)
		return;
	if (!cal) {
		fn(arg, from, to, 1);
		return;
	}
	struct seg_acc s = {fn, arg, from, to, from, 0};
	int64_t d0 = tariff_local_day(tz, from), d1 = tariff_local_day(tz, to - 1);
	for (int64_t day = d0; day <= d1; day++) {
		const struct tariff_day *p = day_profile(cal, sp, day);
		seg_switch(&s, tariff_local_to_utc(tz, day, 0), tariff_at_midnight(cal, sp, day, p));
		for (unsigned i = 0; i < p->n; i++)
			seg_switch(&s, tariff_local_to_utc(tz, day, p->a[i].minute * 60), p->a[i].tariff);
	}
	fn(arg, s.start, to, s.tariff);
}
