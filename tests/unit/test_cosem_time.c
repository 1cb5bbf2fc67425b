/*
 * test_cosem_time.c: COSEM date-time fields against every `datetime` row
 * of the DLMS corpus (each field, re-encoding, and the UTC instant where
 * the source gives an offset), the EU summer-time changes of 2024 walked
 * in 15-minute steps in both directions, and the civil-date arithmetic
 * against gmtime_r across leap years and centuries.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cosem_time.h"
#include "meter_error.h"
#include "vectors.h"

/* A meaning field as a number: "12", "-120", "0x80", "unspecified(0xff)",
 * "last_day(0xfe)". */
static long
field(const char *meaning, const char *key)
{
	char buf[64], *paren;

	cr_assert_not_null(meaning_get(meaning, key, buf, sizeof buf), "no %s= in %s", key,
			   meaning);
	paren = strchr(buf, '(');
	if (paren)
		return strtol(paren + 1, NULL, 0);
	return strtol(buf, NULL, 0);
}

/* UTC seconds of "YYYY-MM-DDThh:mm:ss" read independently of the code
 * under test (timegm), or -1 when s does not start that way. */
static int
iso_local(const char *s, time_t *t, const char **rest)
{
	struct tm tm = {0};
	int n = 0;

	if (sscanf(s, "%d-%d-%dT%d:%d:%d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
		   &tm.tm_min, &tm.tm_sec, &n) != 6)
		return -1;
	tm.tm_year -= 1900;
	tm.tm_mon -= 1;
	*t = timegm(&tm);
	*rest = s + n;
	return 0;
}

/* The UTC offset in seconds the source states, if it states one. */
static bool
stated_offset(const char *rest, long *off)
{
	int h, m;
	const char *p;

	if (rest[0] == '.')
		rest += strspn(rest + 1, "0123456789") + 1;
	if (rest[0] == 'Z') {
		*off = 0;
		return true;
	}
	if ((rest[0] == '+' || rest[0] == '-') && sscanf(rest + 1, "%d:%d", &h, &m) == 2) {
		*off = (rest[0] == '-' ? -1 : 1) * (h * 3600L + m * 60L);
		return true;
	}
	if ((p = strstr(rest, "offset=")) != NULL) {
		*off = strtol(p + 7, NULL, 10);
		return true;
	}
	return false;
}

Test(cosem_time, corpus_rows)
{
	size_t nv, rows = 0, utc_checked = 0;
	const struct dlms_vector *v = dlms_vectors(&nv);
	char type[32], interp[256];

	cr_assert_not_null(v);
	for (size_t i = 0; i < nv; i++) {
		if (strcmp(v[i].layer, "datetime") != 0)
			continue;
		const char *m = v[i].meaning;
		size_t len;
		uint8_t *p = hex_tail(v[i].hex, &len), out[12];
		cr_assert_eq((long)len, field(m, "length"), "%s", v[i].id);
		meaning_type(m, type, sizeof type);
		if (strcmp(type, "Date") == 0) {
			struct cosem_date d;
			cr_assert_eq(cosem_date_decode(p, &d), 0, "%s", v[i].id);
			cr_assert_eq(d.year, field(m, "year"), "%s", v[i].id);
			cr_assert_eq(d.month, field(m, "month"), "%s", v[i].id);
			cr_assert_eq(d.day, field(m, "day"), "%s", v[i].id);
			cr_assert_eq(d.dow, field(m, "dow"), "%s", v[i].id);
			cosem_date_encode(&d, out);
		} else if (strcmp(type, "Time") == 0) {
			struct cosem_time t;
			cr_assert_eq(cosem_time_decode(p, &t), 0, "%s", v[i].id);
			cr_assert_eq(t.hour, field(m, "hour"), "%s", v[i].id);
			cr_assert_eq(t.minute, field(m, "minute"), "%s", v[i].id);
			cr_assert_eq(t.second, field(m, "second"), "%s", v[i].id);
			cr_assert_eq(t.hundredths, field(m, "hundredths"), "%s", v[i].id);
			cosem_time_encode(&t, out);
		} else {
			struct cosem_datetime dt;
			cr_assert_str_eq(type, "DateTime");
			cr_assert_eq(cosem_datetime_decode(p, &dt), 0, "%s", v[i].id);
			cr_assert_eq(dt.year, field(m, "year"), "%s", v[i].id);
			cr_assert_eq(dt.month, field(m, "month"), "%s", v[i].id);
			cr_assert_eq(dt.day, field(m, "day"), "%s", v[i].id);
			cr_assert_eq(dt.dow, field(m, "dow"), "%s", v[i].id);
			cr_assert_eq(dt.hour, field(m, "hour"), "%s", v[i].id);
			cr_assert_eq(dt.minute, field(m, "minute"), "%s", v[i].id);
			cr_assert_eq(dt.second, field(m, "second"), "%s", v[i].id);
			cr_assert_eq(dt.hundredths, field(m, "hundredths"), "%s", v[i].id);
			long dev = field(m, "deviation");
			cr_assert_eq(dt.deviation, dev == 0x8000 ? COSEM_DEVIATION_UNSPEC : dev, "%s",
				     v[i].id);
			cr_assert_eq(dt.status, field(m, "clock_status"), "%s", v[i].id);
			cosem_datetime_encode(&dt, out);

			/* Where the source gives the offset, the UTC instant must
			 * agree with the one computed from its own text. */
			time_t local;
			const char *rest;
			long off;
			if (meaning_get(m, "src_interp", interp, sizeof interp) &&
			    iso_local(interp, &local, &rest) == 0 && stated_offset(rest, &off)) {
				int64_t utc;
				cr_assert_eq(cosem_datetime_to_utc(&dt, NULL, &utc), 0, "%s", v[i].id);
				cr_assert_eq(utc, (int64_t)local - off, "%s: %lld vs %s", v[i].id,
					     (long long)utc, interp);
				/* and the text form says the same */
				char txt[64];
				cosem_datetime_format(&dt, txt, sizeof txt);
				time_t l2;
				const char *r2;
				long o2;
				cr_assert_eq(iso_local(txt, &l2, &r2), 0, "%s: %s", v[i].id, txt);
				cr_assert(stated_offset(r2, &o2), "%s: %s", v[i].id, txt);
				cr_assert_eq(l2, local, "%s", v[i].id);
				cr_assert_eq(o2, off, "%s: %s", v[i].id, txt);
				utc_checked++;
			}
		}
		cr_assert_eq(memcmp(out, p, len), 0, "%s: re-encode", v[i].id);
		tail_free(p);
		rows++;
	}
	cr_assert_eq(rows, 21);
	cr_assert_geq(utc_checked, 7, "rows with a UTC check: %zu", utc_checked);
}

/* Rows whose source names Europe/Madrid (CET/CEST like Copenhagen) give
 * the same instant when the deviation is left to the time-zone rule. */
Test(cosem_time, corpus_madrid_rows_follow_eu_rule)
{
	static const char *ids[] = {"dt-madrid-winter", "dt-madrid-summer-dst"};
	struct cosem_tz cph = COSEM_TZ_CPH;

	for (size_t i = 0; i < 2; i++) {
		const struct dlms_vector *v = dlms_vector(ids[i]);
		struct cosem_datetime dt, back;
		int64_t exact, ruled;
		size_t len;
		cr_assert_not_null(v);
		uint8_t *p = hex_tail(v->hex, &len);
		cr_assert_eq(cosem_datetime_decode(p, &dt), 0);
		tail_free(p);
		cr_assert_eq(cosem_datetime_to_utc(&dt, NULL, &exact), 0);
		struct cosem_datetime naive = dt;
		naive.deviation = COSEM_DEVIATION_UNSPEC;
		cr_assert_eq(cosem_datetime_to_utc(&naive, &cph, &ruled), 0);
		cr_assert_eq(ruled, exact, "%s", ids[i]);
		cosem_datetime_from_utc(exact, &cph, &back);
		cr_assert_eq(back.deviation, dt.deviation, "%s", ids[i]);
		cr_assert_eq(back.status, dt.status, "%s", ids[i]);
		cr_assert_eq(back.dow, dt.dow, "%s", ids[i]);
		cr_assert_eq(back.hour, dt.hour, "%s", ids[i]);
	}
}

Test(cosem_time, range_checks)
{
	static const struct {
		int off;
		uint8_t val;
		int want;
	} cases[] = {
		{2, 0, METER_ERANGE},	 {2, 13, METER_ERANGE},	 {2, 0xfd, 0}, {2, 0xfe, 0},
		{2, 0xff, 0},		 {2, 0xfc, METER_ERANGE}, {3, 0, METER_ERANGE},
		{3, 32, METER_ERANGE},	 {3, 0xfd, 0},		 {3, 0xfe, 0}, {3, 31, 0},
		{4, 0, METER_ERANGE},	 {4, 8, METER_ERANGE},	 {4, 7, 0},    {5, 24, METER_ERANGE},
		{5, 23, 0},		 {6, 60, METER_ERANGE},	 {7, 60, METER_ERANGE},
		{8, 100, METER_ERANGE}, {8, 99, 0},		 {11, 0xff, 0},
	};
	uint8_t base[12] = {0x07, 0xe8, 3, 31, 7, 2, 30, 0, 0, 0xff, 0x88, 0x80};
	struct cosem_datetime dt;

	cr_assert_eq(cosem_datetime_decode(base, &dt), 0);
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		uint8_t p[12];
		memcpy(p, base, 12);
		p[cases[i].off] = cases[i].val;
		cr_assert_eq(cosem_datetime_decode(p, &dt), cases[i].want, "byte %d = 0x%02x",
			     cases[i].off, cases[i].val);
	}
	/* deviation: +-840 minutes, or 0x8000 */
	uint8_t p[12];
	memcpy(p, base, 12);
	p[9] = 0x03;
	p[10] = 0x84; /* 900 */
	cr_assert_eq(cosem_datetime_decode(p, &dt), METER_ERANGE);
	p[9] = 0x80;
	p[10] = 0x00;
	cr_assert_eq(cosem_datetime_decode(p, &dt), 0);
	cr_assert_eq(dt.deviation, COSEM_DEVIATION_UNSPEC);

	/* impossible or unspecified fields cannot be placed in time */
	int64_t utc;
	cr_assert_eq(cosem_datetime_decode(base, &dt), 0);
	dt.month = 2;
	dt.day = 30;
	cr_assert_eq(cosem_datetime_to_utc(&dt, NULL, &utc), METER_ERANGE);
	dt.day = 29; /* 2024 is a leap year */
	cr_assert_eq(cosem_datetime_to_utc(&dt, NULL, &utc), 0);
	dt.year = 2023;
	cr_assert_eq(cosem_datetime_to_utc(&dt, NULL, &utc), METER_ERANGE);
	dt.year = COSEM_YEAR_UNSPEC;
	cr_assert_eq(cosem_datetime_to_utc(&dt, NULL, &utc), METER_ERANGE);
	dt.year = 2024;
	dt.hour = COSEM_UNSPEC;
	cr_assert_eq(cosem_datetime_to_utc(&dt, NULL, &utc), METER_ERANGE);
	dt.hour = 1;
	dt.month = COSEM_MONTH_DST_BEGIN;
	cr_assert_eq(cosem_datetime_to_utc(&dt, NULL, &utc), METER_ERANGE);
}

static int64_t
utc_of(int y, unsigned mo, unsigned d, unsigned h, unsigned mi)
{
	return cosem_days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60;
}

Test(cosem_time, eu_rule_boundaries_2024)
{
	struct cosem_tz cph = COSEM_TZ_CPH;
	int64_t spring = utc_of(2024, 3, 31, 1, 0), autumn = utc_of(2024, 10, 27, 1, 0);

	cr_assert(!cosem_tz_is_dst(&cph, spring - 1));
	cr_assert(cosem_tz_is_dst(&cph, spring));
	cr_assert(cosem_tz_is_dst(&cph, autumn - 1));
	cr_assert(!cosem_tz_is_dst(&cph, autumn));
	cr_assert_eq(cosem_tz_offset(&cph, spring), 120);
	cr_assert_eq(cosem_tz_offset(&cph, autumn), 60);
	struct cosem_tz utc = COSEM_TZ_UTC;
	cr_assert(!cosem_tz_is_dst(&utc, spring));
	cr_assert_eq(cosem_tz_offset(NULL, spring), 0);
	/* last Sundays of other years: 2023-03-26, 2025-10-26, 2021-03-28 */
	cr_assert(cosem_tz_is_dst(&cph, utc_of(2023, 3, 26, 1, 0)));
	cr_assert(!cosem_tz_is_dst(&cph, utc_of(2023, 3, 26, 0, 59)));
	cr_assert(!cosem_tz_is_dst(&cph, utc_of(2025, 10, 26, 1, 0)));
	cr_assert(cosem_tz_is_dst(&cph, utc_of(2025, 10, 26, 0, 59)));
	cr_assert(cosem_tz_is_dst(&cph, utc_of(2021, 3, 28, 1, 0)));
}

/* How a Kamstrup 382 in Copenhagen stamps summer and winter. */
Test(cosem_time, kamstrup_convention)
{
	struct cosem_tz cph = COSEM_TZ_CPH;
	struct cosem_datetime dt;

	cosem_datetime_from_utc(utc_of(2024, 7, 1, 10, 0), &cph, &dt);
	cr_assert_eq(dt.deviation, -120);
	cr_assert_eq(dt.status, COSEM_STATUS_DST);
	cr_assert_eq(dt.hour, 12);
	cr_assert_eq(dt.dow, 1, "2024-07-01 is a Monday");
	cosem_datetime_from_utc(utc_of(2024, 1, 15, 10, 0), &cph, &dt);
	cr_assert_eq(dt.deviation, -60);
	cr_assert_eq(dt.status, 0);
	cr_assert_eq(dt.hour, 11);
	cr_assert_eq(dt.hundredths, 0);
	char txt[64];
	cosem_datetime_format(&dt, txt, sizeof txt);
	cr_assert_str_eq(txt, "2024-01-15T11:00:00+01:00");
}

/*
 * Local time in 15-minute steps over both 2024 changes: every step maps
 * to exactly one UTC instant (two in the repeated hour, told apart by the
 * DST bit; none in the spring gap), and the instants form an unbroken
 * 15-minute sequence.  The other way, every UTC step maps back.
 */
static void
walk_day(int y, unsigned m, unsigned d, int expect_gap, int expect_dups)
{
	struct cosem_tz cph = COSEM_TZ_CPH;
	int64_t got[200];
	size_t n = 0;
	int gap = 0, dups = 0;

	for (unsigned h = 0; h < 24; h++) {
		for (unsigned mi = 0; mi < 60; mi += 15) {
			struct cosem_datetime dt = {.year = (uint16_t)y, .month = (uint8_t)m,
						    .day = (uint8_t)d, .dow = COSEM_UNSPEC,
						    .hour = (uint8_t)h, .minute = (uint8_t)mi,
						    .deviation = COSEM_DEVIATION_UNSPEC};
			int64_t summer, winter;
			dt.status = COSEM_STATUS_DST;
			int e1 = cosem_datetime_to_utc(&dt, &cph, &summer);
			dt.status = 0;
			int e2 = cosem_datetime_to_utc(&dt, &cph, &winter);
			cr_assert_eq(e1, e2);
			if (e1 == METER_ERANGE) {
				cr_assert_eq(h, 2, "gap only at 02:xx, got %02u:%02u", h, mi);
				gap++;
				continue;
			}
			cr_assert_eq(e1, 0);
			got[n++] = summer;
			if (summer != winter) {
				cr_assert_eq(h, 2, "repeat only at 02:xx, got %02u:%02u", h, mi);
				cr_assert_eq(winter - summer, 3600);
				got[n++] = winter;
				dups++;
			}
		}
	}
	cr_assert_eq(gap, expect_gap);
	cr_assert_eq(dups, expect_dups);
	/* sort (the repeated hour's winter pass is out of order) */
	for (size_t i = 1; i < n; i++)
		for (size_t j = i; j > 0 && got[j - 1] > got[j]; j--) {
			int64_t t = got[j];
			got[j] = got[j - 1];
			got[j - 1] = t;
		}
	for (size_t i = 1; i < n; i++)
		cr_assert_eq(got[i] - got[i - 1], 900, "hole or duplicate at %zu", i);
	cr_assert_eq(n, 96 - (size_t)expect_gap + (size_t)expect_dups);

	/* UTC -> local -> UTC, with and without the deviation */
	for (int64_t t = got[0]; t <= got[n - 1]; t += 900) {
		struct cosem_datetime dt;
		int64_t back;
		cosem_datetime_from_utc(t, &cph, &dt);
		cr_assert_eq(cosem_datetime_to_utc(&dt, NULL, &back), 0);
		cr_assert_eq(back, t);
		bool dst = cosem_tz_is_dst(&cph, t);
		cr_assert_eq(dt.deviation, dst ? -120 : -60);
		cr_assert_eq(dt.status, dst ? COSEM_STATUS_DST : 0);
		dt.deviation = COSEM_DEVIATION_UNSPEC;
		cr_assert_eq(cosem_datetime_to_utc(&dt, &cph, &back), 0);
		cr_assert_eq(back, t, "via rule + DST bit at %lld", (long long)t);
	}
}

Test(cosem_time, dst_spring_2024_every_quarter_hour)
{
	walk_day(2024, 3, 31, 4, 0);
}

Test(cosem_time, dst_autumn_2024_every_quarter_hour)
{
	walk_day(2024, 10, 27, 0, 4);
}

Test(cosem_time, ordinary_day_has_no_gap_or_repeat)
{
	walk_day(2024, 6, 15, 0, 0);
	walk_day(2024, 12, 31, 0, 0);
}

Test(cosem_time, civil_days_match_gmtime)
{
	/* every day from 1600 to 2400: leap years, century rules */
	int64_t first = cosem_days_from_civil(1600, 1, 1), last = cosem_days_from_civil(2400, 12, 31);
	struct tm tm;

	cr_assert_eq(cosem_days_from_civil(1970, 1, 1), 0);
	cr_assert_eq(cosem_days_from_civil(2000, 3, 1) - cosem_days_from_civil(2000, 2, 28), 2);
	cr_assert_eq(cosem_days_from_civil(1900, 3, 1) - cosem_days_from_civil(1900, 2, 28), 1);
	cr_assert_eq(cosem_days_from_civil(2100, 3, 1) - cosem_days_from_civil(2100, 2, 28), 1);
	for (int64_t z = first; z <= last; z++) {
		time_t t = (time_t)(z * 86400);
		int y;
		unsigned m, d;
		cr_assert_not_null(gmtime_r(&t, &tm));
		cosem_civil_from_days(z, &y, &m, &d);
		if (y != tm.tm_year + 1900 || m != (unsigned)tm.tm_mon + 1 ||
		    d != (unsigned)tm.tm_mday)
			cr_assert_fail("day %lld: %d-%u-%u vs gmtime %d-%d-%d", (long long)z, y, m,
				       d, tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday);
		if (cosem_days_from_civil(y, m, d) != z)
			cr_assert_fail("day %lld does not round-trip", (long long)z);
	}
	cr_assert_eq(last - first + 1, 801 * 365 + 195, "days in 1600..2400");
}

Test(cosem_time, from_utc_matches_gmtime)
{
	uint64_t s = 88172645463325252ULL;
	struct tm tm;

	for (int i = 0; i < 200000; i++) {
		s ^= s << 13;
		s ^= s >> 7;
		s ^= s << 17;
		/* years 1000 .. 9999 */
		int64_t t = (int64_t)(s % 283824000000ULL) - 30610224000LL;
		time_t tt = (time_t)t;
		struct cosem_datetime dt;
		cr_assert_not_null(gmtime_r(&tt, &tm));
		cosem_datetime_from_utc(t, NULL, &dt);
		if (dt.year != tm.tm_year + 1900 || dt.month != tm.tm_mon + 1 ||
		    dt.day != tm.tm_mday || dt.hour != tm.tm_hour || dt.minute != tm.tm_min ||
		    dt.second != tm.tm_sec || dt.dow != (tm.tm_wday == 0 ? 7 : tm.tm_wday))
			cr_assert_fail("t=%lld differs from gmtime", (long long)t);
		cr_assert_eq(dt.deviation, 0);
		int64_t back;
		cr_assert_eq(cosem_datetime_to_utc(&dt, NULL, &back), 0);
		cr_assert_eq(back, t);
	}
}

Test(cosem_time, format_unspecified_fields)
{
	struct cosem_datetime dt = {.year = COSEM_YEAR_UNSPEC, .month = 3, .day = COSEM_DAY_LAST,
				    .dow = 7, .hour = 2, .minute = 0, .second = 0,
				    .hundredths = COSEM_UNSPEC,
				    .deviation = COSEM_DEVIATION_UNSPEC, .status = 0};
	char txt[64];

	cr_assert_eq(cosem_datetime_format(&dt, txt, sizeof txt), 19);
	cr_assert_str_eq(txt, "???" "?-03-??T02:00:00"); /* split: no trigraph */
	dt.year = 2024;
	dt.day = 31;
	dt.hundredths = 5;
	dt.deviation = 60;
	cosem_datetime_format(&dt, txt, sizeof txt);
	cr_assert_str_eq(txt, "2024-03-31T02:00:00.05-01:00");
	char small[8];
	cr_assert_eq(cosem_datetime_format(&dt, small, sizeof small), 28);
	cr_assert_str_eq(small, "2024-03");
}
