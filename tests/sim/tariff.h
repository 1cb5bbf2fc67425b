/*
 * tariff.h: the simulated meter's activity calendar (COSEM class 20) and
 * special days table (class 11), and the answer to "which tariff is active
 * at this instant": seasons pick a week profile, the week profile picks a
 * day profile per weekday, special days override the weekday, and the day
 * profile's switching times (local wall-clock) pick the tariff.  Also the
 * UTC segments of constant tariff over a time range, which the per-tariff
 * registers are summed over, and the working-day test prepayment needs.
 */
#ifndef SIM_TARIFF_H
#define SIM_TARIFF_H

#include <stdbool.h>
#include <stdint.h>

#include "cosem_time.h"

#define TARIFF_MAX 8		/* tariffs T1..T8 */
#define TARIFF_MAX_SEASONS 4
#define TARIFF_MAX_WEEKS 4
#define TARIFF_MAX_DAYS 8
#define TARIFF_MAX_ACTIONS 8
#define TARIFF_MAX_SPECIAL 100
#define TARIFF_ANY_YEAR 0xffff

struct tariff_action {
	uint16_t minute; /* of the local day, 0..1439 */
	uint8_t tariff;	 /* 1..TARIFF_MAX */
};

struct tariff_day {
	uint8_t n; /* actions, sorted by minute */
	struct tariff_action a[TARIFF_MAX_ACTIONS];
};

struct tariff_season {
	uint8_t month, day; /* starts at 00:00 local on this date every year */
	uint8_t week;	    /* week profile index */
};

struct tariff_calendar {
	char name[8];
	uint8_t n_seasons, n_weeks, n_days;
	struct tariff_season season[TARIFF_MAX_SEASONS]; /* sorted by date */
	uint8_t week[TARIFF_MAX_WEEKS][7];		  /* day profile, Monday first */
	struct tariff_day day[TARIFF_MAX_DAYS];
};

struct tariff_special_day {
	uint16_t year; /* TARIFF_ANY_YEAR: every year */
	uint8_t month, day;
	uint8_t day_id; /* day profile used on that date */
	uint16_t index; /* the entry's index (class 11 spec_day_entry) */
};

struct tariff_special {
	uint8_t n;
	struct tariff_special_day d[TARIFF_MAX_SPECIAL];
};

/* The fleet's calendar: T1 night/weekend, T2 day, T3 winter weekday peak;
 * and Danish public holidays 2024-2027 as special days (weekend profile). */
const struct tariff_calendar *tariff_default_calendar(void);
const struct tariff_special *tariff_default_special(void);

/* Ranges and ordering of a calendar or special-day table a client wrote.
 * Returns 0 or METER_ERANGE. */
int tariff_calendar_check(const struct tariff_calendar *c);
int tariff_special_check(const struct tariff_special *s);

/* Is the local date a special day (sp may be NULL)? */
bool tariff_is_special(const struct tariff_special *sp, int y, unsigned m, unsigned d);

/* Monday..Friday and not a special day, at this UTC instant in tz. */
bool tariff_working_day(const struct tariff_special *sp, const struct cosem_tz *tz, int64_t utc);

/* The active tariff (1..8) at a UTC instant.  cal NULL means a single
 * tariff, T1 (prepayment meters, which Kamstrup does not let use tariffs). */
uint8_t tariff_at(const struct tariff_calendar *cal, const struct tariff_special *sp,
		  const struct cosem_tz *tz, int64_t utc);

/*
 * Call fn once per maximal stretch [a, b) of constant tariff inside
 * [from, to), in time order.  Cost is O(local days in the range).
 */
typedef void (*tariff_seg_fn)(void *arg, int64_t a, int64_t b, uint8_t tariff);
void tariff_segments(const struct tariff_calendar *cal, const struct tariff_special *sp,
		     const struct cosem_tz *tz, int64_t from, int64_t to, tariff_seg_fn fn,
		     void *arg);

/* Local day number (days since 1970-01-01 on the local calendar) of a UTC
 * instant, and the UTC instant of a local wall-clock time: in the spring
 * gap the time after the gap, in the repeated autumn hour the first. */
int64_t tariff_local_day(const struct cosem_tz *tz, int64_t utc);
int64_t tariff_local_to_utc(const struct cosem_tz *tz, int64_t local_day, int32_t sec_of_day);

#endif
