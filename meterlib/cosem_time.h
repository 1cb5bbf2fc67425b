/*
 * cosem_time.h: COSEM date-time, date and time (IEC 62056-6-2 4.1.6.1),
 * and their conversion to and from UTC.
 *
 * Deviation convention: the value on the wire is minutes to *add to local
 * time to get UTC*, i.e. the negated UTC offset (Copenhagen in summer,
 * UTC+02:00, sends -120).  This is how the public DLMS stacks and the
 * Kamstrup meters read it.  0x8000 means "not specified"; then the caller's
 * time-zone rule and the clock-status DST bit decide.
 *
 * Conversions are pure arithmetic (no mktime, no TZ, no global state).
 */
#ifndef METER_COSEM_TIME_H
#define METER_COSEM_TIME_H

#include <stdbool.h>
#include <stdint.h>

#define COSEM_YEAR_UNSPEC	0xffff
#define COSEM_UNSPEC		0xff
#define COSEM_DEVIATION_UNSPEC	INT16_MIN /* 0x8000 on the wire */
#define COSEM_MONTH_DST_END	0xfd
#define COSEM_MONTH_DST_BEGIN	0xfe
#define COSEM_DAY_LAST		0xfe
#define COSEM_DAY_SECOND_LAST	0xfd

/* clock_status bits */
#define COSEM_STATUS_INVALID	   0x01
#define COSEM_STATUS_DOUBTFUL	   0x02
#define COSEM_STATUS_DIFF_BASE	   0x04
#define COSEM_STATUS_INVALID_CLOCK 0x08
#define COSEM_STATUS_DST	   0x80
#define COSEM_STATUS_UNSPEC	   0xff

struct cosem_datetime {
	uint16_t year;	   /* 0xffff: not specified */
	uint8_t month;	   /* 1..12, 0xfd, 0xfe, 0xff */
	uint8_t day;	   /* 1..31, 0xfd, 0xfe, 0xff */
	uint8_t dow;	   /* 1 = Monday .. 7 = Sunday, 0xff */
	uint8_t hour;	   /* 0..23, 0xff */
	uint8_t minute;	   /* 0..59, 0xff */
	uint8_t second;	   /* 0..59, 0xff */
	uint8_t hundredths; /* 0..99, 0xff */
	int16_t deviation; /* minutes, UTC = local + deviation; COSEM_DEVIATION_UNSPEC */
	uint8_t status;	   /* clock status bits, 0xff: not specified */
};

struct cosem_date {
	uint16_t year;
	uint8_t month, day, dow;
};

struct cosem_time {
	uint8_t hour, minute, second, hundredths;
};

/* Raw forms (no tag, no length).  Decoders check ranges of the fields
 * that are specified and return 0 or METER_ERANGE. */
int cosem_datetime_decode(const uint8_t p[12], struct cosem_datetime *dt);
void cosem_datetime_encode(const struct cosem_datetime *dt, uint8_t p[12]);
int cosem_date_decode(const uint8_t p[5], struct cosem_date *d);
void cosem_date_encode(const struct cosem_date *d, uint8_t p[5]);
int cosem_time_decode(const uint8_t p[4], struct cosem_time *t);
void cosem_time_encode(const struct cosem_time *t, uint8_t p[4]);

/*
 * A local-time rule: standard offset from UTC and whether European summer
 * time applies (last Sunday of March 01:00 UTC to last Sunday of October
 * 01:00 UTC, +60 minutes).  Offsets are minutes east of UTC (CET: +60).
 */
enum cosem_dst_rule { COSEM_DST_NONE = 0, COSEM_DST_EU = 1 };
struct cosem_tz {
	int16_t std_offset; /* minutes east of UTC */
	uint8_t dst_rule;   /* enum cosem_dst_rule */
};
#define COSEM_TZ_UTC	    ((struct cosem_tz){0, COSEM_DST_NONE})
#define COSEM_TZ_CPH	    ((struct cosem_tz){60, COSEM_DST_EU}) /* Europe/Copenhagen */

/* Is summer time in force at this UTC instant under tz? */
bool cosem_tz_is_dst(const struct cosem_tz *tz, int64_t utc);
/* Offset east of UTC in minutes at this UTC instant. */
int cosem_tz_offset(const struct cosem_tz *tz, int64_t utc);

/*
 * Date-time to UTC seconds since the epoch.  Needs year..second specified
 * (hundredths are dropped).  With a specified deviation it is exact.
 * Without, tz (may be NULL: treat as UTC) gives the offset; in the repeated
 * autumn hour the status DST bit picks summer (set) or winter time (an
 * unspecified status, 0xff, has the bit set and so reads as summer).
 * Errors: METER_ERANGE (unspecified or impossible fields, a deviation
 * beyond +-840 minutes, or a local time in the spring-forward gap).
 */
int cosem_datetime_to_utc(const struct cosem_datetime *dt, const struct cosem_tz *tz,
			  int64_t *utc);

/* UTC seconds to local date-time under tz, with deviation, day of week and
 * the DST status bit filled in; hundredths 0. */
void cosem_datetime_from_utc(int64_t utc, const struct cosem_tz *tz, struct cosem_datetime *dt);

/* Civil-date helpers (proleptic Gregorian, no time zones). */
int64_t cosem_days_from_civil(int y, unsigned m, unsigned d);
void cosem_civil_from_days(int64_t z, int *y, unsigned *m, unsigned *d);

/* "2024-03-31T02:00:00+02:00" style text (ISO 8601 with the offset from
 * the deviation, or no offset when unspecified; '?' for unspecified
 * fields).  Returns chars written, as snprintf. */
int cosem_datetime_format(const struct cosem_datetime *dt, char *out, unsigned long n);

#endif
