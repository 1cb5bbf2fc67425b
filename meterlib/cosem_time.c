/*
 * cosem_time.c: COSEM date-time, date and time fields, and their mapping
 * to and from UTC.
 *
 * Everything here is integer arithmetic on the proleptic Gregorian
 * calendar (days from 1970-01-01), so it is the same on every host, needs
 * no TZ environment and costs a few dozen instructions per value: profile
 * buffers carry one date-time per row, and mktime() would dominate their
 * decoding.  The only time-zone rule we know is the European one, which is
 * all the Kamstrup fleet uses; it is expressed in UTC instants, so the
 * local-to-UTC direction has to look for the one (or two, in the repeated
 * autumn hour, or none, in the spring gap) UTC instants that show a given
 * local time.
 */
#include <stdio.h>

#include "bytes.h"
#include "cosem_time.h"
#include "meter_error.h"

/* The Blue Book allows -720..720; UTC+13/+14 zones exist, so be lenient. */
#define DEVIATION_MAX 840

static int64_t
floor_div(int64_t a, int64_t b)
{
	int64_t q = a / b;
	if ((a % b != 0) && ((a < 0) != (b < 0)))
		q--;
	return q;
}

int64_t
cosem_days_from_civil(int y, unsigned m, unsigned d)
{
	/* Count years from March so that the leap day ends the year. */
	int64_t yy = (int64_t)y - (m <= 2);
	int64_t era = floor_div(yy, 400);
	int64_t yoe = yy - era * 400;					/* 0..399 */
	int64_t doy = (153 * (int64_t)(m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1; /* 0..365 */
	int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;		/* 0..146096 */
	return era * 146097 + doe - 719468;
}

void
cosem_civil_from_days(int64_t z, int *y, unsigned *m, unsigned *d)
{
	int64_t era, doe, yoe, doy, mp, yy;

	z += 719468;
	era = floor_div(z, 146097);
	doe = z - era * 146097;
	yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	yy = yoe + era * 400;
	doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	mp = (5 * doy + 2) / 153;
	*d = (unsigned)(doy - (153 * mp + 2) / 5 + 1);
	*m = (unsigned)(mp < 10 ? mp + 3 : mp - 9);
	*y = (int)(yy + (*m <= 2));
}

static bool
is_leap(int y)
{
	return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static unsigned
days_in_month(int y, unsigned m)
{
	static const uint8_t dim[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	return m == 2 && is_leap(y) ? 29 : dim[m - 1];
}

static bool
month_ok(uint8_t m)
{
	return (m >= 1 && m <= 12) || m == COSEM_MONTH_DST_END || m == COSEM_MONTH_DST_BEGIN ||
	       m == COSEM_UNSPEC;
}

static bool
day_ok(uint8_t d)
{
	return (d >= 1 && d <= 31) || d == COSEM_DAY_SECOND_LAST || d == COSEM_DAY_LAST ||
	       d == COSEM_UNSPEC;
}

static bool
dow_ok(uint8_t w)
{
	return (w >= 1 && w <= 7) || w == COSEM_UNSPEC;
}

static bool
below_or_unspec(uint8_t v, uint8_t limit)
{
	return v < limit || v == COSEM_UNSPEC;
}

int
cosem_date_decode(const uint8_t p[5], struct cosem_date *d)
{
	d->year = be16(p);
	d->month = p[2];
	d->day = p[3];
	d->dow = p[4];
	if (!month_ok(d->month) || !day_ok(d->day) || !dow_ok(d->dow))
		return METER_ERANGE;
	return 0;
}

void
cosem_date_encode(const struct cosem_date *d, uint8_t p[5])
{
	p[0] = d->year >> 8;
	p[1] = d->year;
	p[2] = d->month;
	p[3] = d->day;
	p[4] = d->dow;
}

int
cosem_time_decode(const uint8_t p[4], struct cosem_time *t)
{
	t->hour = p[0];
	t->minute = p[1];
	t->second = p[2];
	t->hundredths = p[3];
	if (!below_or_unspec(t->hour, 24) || !below_or_unspec(t->minute, 60) ||
	    !below_or_unspec(t->second, 60) || !below_or_unspec(t->hundredths, 100))
		return METER_ERANGE;
	return 0;
}

void
cosem_time_encode(const struct cosem_time *t, uint8_t p[4])
{
	p[0] = t->hour;
	p[1] = t->minute;
	p[2] = t->second;
	p[3] = t->hundredths;
}

int
cosem_datetime_decode(const uint8_t p[12], struct cosem_datetime *dt)
{
	struct cosem_date d;
	struct cosem_time t;
	int e1, e2;

	e1 = cosem_date_decode(p, &d);
	e2 = cosem_time_decode(p + 5, &t);
	dt->year = d.year;
	dt->month = d.month;
	dt->day = d.day;
	dt->dow = d.dow;
	dt->hour = t.hour;
	dt->minute = t.minute;
	dt->second = t.second;
	dt->hundredths = t.hundredths;
	dt->deviation = (int16_t)be16(p + 9);
	dt->status = p[11];
	if (e1 || e2)
		return METER_ERANGE;
	if (dt->deviation != COSEM_DEVIATION_UNSPEC &&
	    (dt->deviation < -DEVIATION_MAX || dt->deviation > DEVIATION_MAX))
		return METER_ERANGE;
	return 0;
}

void
cosem_datetime_encode(const struct cosem_datetime *dt, uint8_t p[12])
{
	uint16_t dev = (uint16_t)dt->deviation;

	p[0] = dt->year >> 8;
	p[1] = dt->year;
	p[2] = dt->month;
	p[3] = dt->day;
	p[4] = dt->dow;
	p[5] = dt->hour;
	p[6] = dt->minute;
	p[7] = dt->second;
	p[8] = dt->hundredths;
	p[9] = dev >> 8;
	p[10] = dev;
	p[11] = dt->status;
}

/* Days since the epoch of the last Sunday of month m in year y. */
static int64_t
last_sunday(int y, unsigned m)
{
	int64_t days = cosem_days_from_civil(y, m, days_in_month(y, m));
	/* 1970-01-01 was a Thursday: weekday 4 with Sunday = 0. */
	int64_t wd = ((days % 7) + 7 + 4) % 7;
	return days - wd;
}

bool
cosem_tz_is_dst(const struct cosem_tz *tz, int64_t utc)
{
	int64_t days, start, end;
	unsigned m, d;
	int y;

	if (!tz || tz->dst_rule != COSEM_DST_EU)
		return false;
	days = floor_div(utc, 86400);
	cosem_civil_from_days(days, &y, &m, &d);
	if (m < 3 || m > 10)
		return false;
	start = last_sunday(y, 3) * 86400 + 3600;
	end = last_sunday(y, 10) * 86400 + 3600;
	return utc >= start && utc < end;
}

int
cosem_tz_offset(const struct cosem_tz *tz, int64_t utc)
{
	if (!tz)
		return 0;
	return tz->std_offset + (cosem_tz_is_dst(tz, utc) ? 60 : 0);
}

int
cosem_datetime_to_utc(const struct cosem_datetime *dt, const struct cosem_tz *tz, int64_t *utc)
{
	int64_t local, winter, summer;
	bool winter_ok, summer_ok;

	if (dt->year == COSEM_YEAR_UNSPEC || dt->month < 1 || dt->month > 12 || dt->day < 1 ||
	    dt->day > days_in_month((int)dt->year, dt->month) || dt->hour > 23 ||
	    dt->minute > 59 || dt->second > 59)
		return METER_ERANGE;
	local = cosem_days_from_civil(dt->year, dt->month, dt->day) * 86400 + dt->hour * 3600 +
		dt->minute * 60 + dt->second;
	if (dt->deviation != COSEM_DEVIATION_UNSPEC) {
		if (dt->deviation < -DEVIATION_MAX || dt->deviation > DEVIATION_MAX)
			return METER_ERANGE;
		*utc = local + (int64_t)dt->deviation * 60;
		return 0;
	}
	if (!tz || tz->dst_rule != COSEM_DST_EU) {
		*utc = local - (int64_t)(tz ? tz->std_offset : 0) * 60;
		return 0;
	}
	/* Try both offsets and keep those that the rule confirms. */
	winter = local - (int64_t)tz->std_offset * 60;
	summer = local - ((int64_t)tz->std_offset + 60) * 60;
	winter_ok = !cosem_tz_is_dst(tz, winter);
	summer_ok = cosem_tz_is_dst(tz, summer);
	if (winter_ok && summer_ok) {
		/* The repeated autumn hour: the DST bit says which pass this
		 * is.  An unspecified status (0xff) reads as summer, the first. */
		*utc = (dt->status & COSEM_STATUS_DST) ? summer : winter;
		return 0;
	}
	if (winter_ok) {
		*utc = winter;
		return 0;
	}
	if (summer_ok) {
		*utc = summer;
		return 0;
	}
	return METER_ERANGE; /* inside the spring-forward gap */
}

void
cosem_datetime_from_utc(int64_t utc, const struct cosem_tz *tz, struct cosem_datetime *dt)
{
	int off = cosem_tz_offset(tz, utc);
	int64_t local = utc + (int64_t)off * 60;
	int64_t days = floor_div(local, 86400);
	int64_t sec = local - days * 86400;
	unsigned m, d;
	int y;

	cosem_civil_from_days(days, &y, &m, &d);
	dt->year = (uint16_t)y;
	dt->month = (uint8_t)m;
	dt->day = (uint8_t)d;
	/* Thursday 1970-01-01 is 4 with Monday = 1. */
	dt->dow = (uint8_t)(((days % 7) + 7 + 3) % 7 + 1);
	dt->hour = (uint8_t)(sec / 3600);
	dt->minute = (uint8_t)(sec / 60 % 60);
	dt->second = (uint8_t)(sec % 60);
	dt->hundredths = 0;
	dt->deviation = (int16_t)-off;
	dt->status = cosem_tz_is_dst(tz, utc) ? COSEM_STATUS_DST : 0;
}

/* One numeric field, or '?'s of the same width when unspecified. */
static int
fmt_field(char *out, unsigned long n, unsigned v, unsigned width, bool spec)
{
	if (spec)
		return snprintf(out, n, "%0*u", (int)width, v);
	return snprintf(out, n, "%.*s", (int)width, "????");
}

int
cosem_datetime_format(const struct cosem_datetime *dt, char *out, unsigned long n)
{
	char y[8], mo[4], d[4], h[4], mi[4], s[4], frac[8], zone[8];
	int off, a;

	fmt_field(y, sizeof y, dt->year, 4, dt->year != COSEM_YEAR_UNSPEC);
	fmt_field(mo, sizeof mo, dt->month, 2, dt->month >= 1 && dt->month <= 12);
	fmt_field(d, sizeof d, dt->day, 2, dt->day >= 1 && dt->day <= 31);
	fmt_field(h, sizeof h, dt->hour, 2, dt->hour <= 23);
	fmt_field(mi, sizeof mi, dt->minute, 2, dt->minute <= 59);
	fmt_field(s, sizeof s, dt->second, 2, dt->second <= 59);
	frac[0] = '\0';
	if (dt->hundredths != 0 && dt->hundredths <= 99)
		snprintf(frac, sizeof frac, ".%02u", dt->hundredths);
	zone[0] = '\0';
	if (dt->deviation == 0) {
		snprintf(zone, sizeof zone, "Z");
	} else if (dt->deviation != COSEM_DEVIATION_UNSPEC) {
		/* deviation is the negated UTC offset */
		off = -dt->deviation;
		a = off < 0 ? -off : off;
		snprintf(zone, sizeof zone, "%c%02d:%02d", off < 0 ? '-' : '+', a / 60 % 100,
			 a % 60);
	}
	return snprintf(out, n, "%s-%s-%sT%s:%s:%s%s%s", y, mo, d, h, mi, s, frac, zone);
}
