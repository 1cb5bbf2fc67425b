/*
 * bench_profile.c: decoding a 30-day load profile as the daemon does.
 *
 * The input is one GET-Response-Normal carrying a 2,880-row (30 days x
 * 15 min) x 6-column buffer: clock (octet-string date-time in local time
 * with an unspecified deviation, Europe/Copenhagen, across the October DST
 * change), status (unsigned) and A+, A-, R+, R- (double-long-unsigned),
 * built with the A-XDR writers.  The decode is xdlms_decode() of the APDU
 * and profile.c's cursor to typed rows with scaled values and UTC times.
 *
 * Beside it, in the same run, the naive way a general-purpose stack goes:
 * per row a malloc'd node array and a malloc'd record, values through
 * axdr_to_double() and pow(), and the local time through mktime() with TZ
 * set.  Both must produce the same sums, so the ratio compares equal work.
 *
 * Heap allocations are counted by interposing malloc/calloc/realloc/free
 * in this program (forwarding to glibc's __libc_* entry points), so no
 * link flag is needed.  Figures are medians of RUNS runs.
 */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "axdr.h"
#include "cosem_time.h"
#include "meter_error.h"
#include "profile.h"
#include "xdlms.h"

#define ROWS   2880
#define COLS   6
#define PERIOD 900
#define RUNS   7
#define MIN_SECONDS 0.3

/* ---- allocation counting ------------------------------------------------ */

extern void *__libc_malloc(size_t n);
extern void *__libc_calloc(size_t n, size_t m);
extern void *__libc_realloc(void *p, size_t n);
extern void __libc_free(void *p);

static volatile bool counting;
static unsigned long n_allocs;

void *
malloc(size_t n)
{
	if (counting)
		n_allocs++;
	return __libc_malloc(n);
}

void *
calloc(size_t n, size_t m)
{
	if (counting)
		n_allocs++;
	return __libc_calloc(n, m);
}

void *
realloc(void *p, size_t n)
{
	if (counting)
		n_allocs++;
	return __libc_realloc(p, n);
}

void
free(void *p)
{
	__libc_free(p);
}

/* ---- the input ------------------------------------------------------------ */

static uint8_t buffer[ROWS * 40 + 16];
static uint8_t apdu[sizeof buffer + 16];
static size_t apdu_len;
static struct profile_column cols[COLS];

static const struct {
	uint16_t cls;
	struct obis o;
} capture[COLS] = {
	{8, OBIS(0, 0, 1, 0, 0, 255)},	  {1, OBIS(0, 0, 96, 10, 1, 255)},
	{3, OBIS(1, 0, 1, 8, 0, 255)},	  {3, OBIS(1, 0, 2, 8, 0, 255)},
	{3, OBIS(1, 0, 3, 8, 0, 255)},	  {3, OBIS(1, 0, 4, 8, 0, 255)},
};

static int
build(void)
{
	struct cosem_tz tz = COSEM_TZ_CPH;
	struct mbuf b, a;
	struct cosem_datetime dt;
	/* 2024-10-01 00:00 local (+02:00): the profile crosses 27 October. */
	int64_t t = cosem_days_from_civil(2024, 10, 1) * 86400 - 2 * 3600;
	uint32_t ap = 12345600, am = 1000, rp = 777000, rm = 4000;

	mbuf_init(&b, buffer, sizeof buffer);
	axdr_put_array(&b, ROWS);
	for (int r = 0; r < ROWS; r++, t += PERIOD) {
		cosem_datetime_from_utc(t, &tz, &dt);
		dt.deviation = COSEM_DEVIATION_UNSPEC; /* local time, as many meters send */
		axdr_put_structure(&b, COLS);
		axdr_put_datetime_octets(&b, &dt);
		axdr_put_unsigned(&b, r % 97 == 0 ? 0x08 : 0);
		axdr_put_double_long_unsigned(&b, ap += 37 + r % 11);
		axdr_put_double_long_unsigned(&b, am += r % 3);
		axdr_put_double_long_unsigned(&b, rp += 5 + r % 7);
		axdr_put_double_long_unsigned(&b, rm += r % 2);
	}
	if (b.err)
		return -1;
	mbuf_init(&a, apdu, sizeof apdu);
	struct xdlms_data d = xdlms_data_raw(buffer, (uint32_t)b.len);
	if (xdlms_put_get_response_data(&a, 0xc1, &d) < 0)
		return -1;
	apdu_len = a.len;

	for (int k = 0; k < COLS; k++) {
		cols[k] = (struct profile_column){.class_id = capture[k].cls, .obis = capture[k].o,
						  .attribute = 2, .unit = PROFILE_UNIT_COUNT};
		if (capture[k].cls == 3) {
			cols[k].scaler = 1; /* 10 Wh resolution */
			cols[k].unit = k < 4 ? PROFILE_UNIT_WH : PROFILE_UNIT_VARH;
			cols[k].has_scaler_unit = true;
		}
	}
	return 0;
}

/* ---- the two decoders ---------------------------------------------------- */

struct sums {
	int64_t time;
	double value;
	long rows;
};

/* As the daemon: xdlms decode, then typed rows straight from the bytes. */
static int
decode_fast(struct sums *s)
{
	static struct xdlms_apdu a;
	static struct profile_row row;
	struct profile_cursor c;
	struct profile_options opt = {.tz = COSEM_TZ_CPH, .period = PERIOD};
	int rc;

	if (xdlms_decode(apdu, apdu_len, &a, NULL, 0) < 0 || a.type != XDLMS_GET_RESPONSE_NORMAL ||
	    !a.get.is_data)
		return -1;
	if (profile_cursor_init(&c, cols, COLS, a.get.data.raw, a.get.data.len, &opt) < 0)
		return -1;
	while ((rc = profile_next(&c, &row)) == 1) {
		s->time += row.time;
		for (int k = 1; k < COLS; k++)
			s->value += row.cells[k].value;
		s->rows++;
	}
	return rc;
}

struct naive_row {
	int64_t time;
	double v[COLS];
};

/* The naive way: per row a node array and a record on the heap, local
 * time through mktime() under TZ. */
static int
decode_naive(struct sums *s)
{
	static struct xdlms_apdu a;
	uint32_t count;
	ssize_t rc;
	size_t off, used;

	if (xdlms_decode(apdu, apdu_len, &a, NULL, 0) < 0 || !a.get.is_data)
		return -1;
	const uint8_t *p = a.get.data.raw;
	size_t len = a.get.data.len;
	if ((rc = axdr_decode_header(p, len, AXDR_ARRAY, &count)) < 0)
		return -1;
	off = (size_t)rc;
	for (uint32_t r = 0; r < count; r++) {
		struct axdr_node *nodes = malloc(16 * sizeof *nodes);
		struct naive_row *out = malloc(sizeof *out);
		struct cosem_datetime dt;
		struct tm tm;
		if (!nodes || !out)
			return -1;
		rc = axdr_decode(p + off, len - off, nodes, 16, &used);
		if (rc < 0 || nodes[0].len != COLS)
			return -1;
		off += (size_t)rc;
		const struct axdr_node *clk = axdr_child(&nodes[0], 0);
		if (cosem_datetime_decode(clk->ptr, &dt) < 0)
			return -1;
		memset(&tm, 0, sizeof tm);
		tm.tm_year = dt.year - 1900;
		tm.tm_mon = dt.month - 1;
		tm.tm_mday = dt.day;
		tm.tm_hour = dt.hour;
		tm.tm_min = dt.minute;
		tm.tm_sec = dt.second;
		tm.tm_isdst = dt.status & COSEM_STATUS_DST ? 1 : 0;
		out->time = mktime(&tm);
		for (int k = 1; k < COLS; k++) {
			double v;
			if (axdr_to_double(axdr_child(&nodes[0], (uint32_t)k), &v) < 0)
				return -1;
			out->v[k] = v * pow(10.0, cols[k].scaler);
			s->value += out->v[k];
		}
		s->time += out->time;
		s->rows++;
		free(nodes);
		free(out);
	}
	return off == len ? 0 : -1;
}

/* ---- measuring ------------------------------------------------------------ */

static double
now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int
cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

struct result {
	double rate[RUNS];
	double rows_s, mb_s, allocs_row;
	unsigned long allocs;
	long rows;
	struct sums check;
};

/* One timed run of fn (repeated for at least MIN_SECONDS). */
static int
run_once(int (*fn)(struct sums *), struct result *res, int run)
{
	struct sums s = {0};
	long reps = 0;
	double t0 = now(), t1;

	n_allocs = 0;
	counting = true;
	do {
		if (fn(&s) < 0)
			return -1;
		reps++;
		t1 = now();
	} while (t1 - t0 < MIN_SECONDS);
	counting = false;
	res->allocs += n_allocs;
	res->rows += s.rows;
	res->rate[run] = (double)reps / (t1 - t0);
	return 0;
}

/*
 * The two decoders take turns, run by run, so that load from other work on
 * a shared machine falls on both alike and the ratio stays meaningful.
 */
static int
measure(int (*fast_fn)(struct sums *), struct result *fast, int (*naive_fn)(struct sums *),
	struct result *naive)
{
	struct result *res[2] = {fast, naive};
	int (*fn[2])(struct sums *) = {fast_fn, naive_fn};

	for (int k = 0; k < 2; k++) {
		memset(res[k], 0, sizeof *res[k]);
		if (fn[k](&res[k]->check) < 0 || res[k]->check.rows != ROWS)
			return -1;
	}
	for (int run = 0; run < RUNS; run++)
		for (int k = 0; k < 2; k++)
			if (run_once(fn[k], res[k], run) < 0)
				return -1;
	for (int k = 0; k < 2; k++) {
		qsort(res[k]->rate, RUNS, sizeof res[k]->rate[0], cmp);
		res[k]->rows_s = res[k]->rate[RUNS / 2] * ROWS;
		res[k]->mb_s = res[k]->rate[RUNS / 2] * (double)apdu_len / 1e6;
		res[k]->allocs_row = (double)res[k]->allocs / (double)res[k]->rows;
	}
	return 0;
}

int
main(void)
{
	struct result fast, naive;

	/* The naive decoder's local time: mktime() under TZ, loaded once. */
	setenv("TZ", "Europe/Copenhagen", 1);
	tzset();
	if (build() < 0) {
		fprintf(stderr, "bench_profile: building the response failed\n");
		return 1;
	}
	if (measure(decode_fast, &fast, decode_naive, &naive) < 0) {
		fprintf(stderr, "bench_profile: decoding failed\n");
		return 1;
	}
	if (fast.check.time != naive.check.time || fast.check.value != naive.check.value) {
		fprintf(stderr, "bench_profile: the two decoders disagree (time %lld vs %lld)\n",
			(long long)fast.check.time, (long long)naive.check.time);
		return 1;
	}
	printf("profile decode: GET response of %zu bytes, %d rows x %d columns, median of %d runs\n",
	       apdu_len, ROWS, COLS, RUNS);
	printf("  profile.c:  %6.2f M rows/s  %7.1f MB/s  %.3f heap allocations/row\n",
	       fast.rows_s / 1e6, fast.mb_s, fast.allocs_row);
	printf("  naive:      %6.2f M rows/s  %7.1f MB/s  %.3f heap allocations/row "
	       "(malloc'd nodes, mktime with TZ)\n",
	       naive.rows_s / 1e6, naive.mb_s, naive.allocs_row);
	printf("  ratio %.1fx; DESIGN §9's established C library: about 1 M rows/s, "
	       "14 allocations/row\n",
	       fast.rows_s / naive.rows_s);
	return fast.allocs_row == 0 ? 0 : 1;
}
