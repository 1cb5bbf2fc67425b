/*
 * test_store.c: what of the store can be checked without a server: the
 * COPY encoders (daemon/store_copy.c) against PostgreSQL's binary send
 * formats and COPY's text rules, and the batch API's bookkeeping on an
 * event loop whose database is unreachable (bad rows spoil a batch, every
 * callback fires once and never inside store_submit, backpressure, drain).
 * The writes themselves are shown by tests/integration/t_store.sh.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "log.h"
#include "metrics.h"
#include "store.h"
#include "store_copy.h"

static unsigned
be16(const unsigned char *p)
{
	return (unsigned)p[0] << 8 | p[1];
}

static uint32_t
be32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Expected values worked out from the definition of numeric_send: base
 * 10000 digits aligned on the decimal point, no leading or trailing zero
 * digits, weight = power of 10000 of the first digit. */
static const struct {
	int64_t m;
	int exp;
	int ndigits, weight;
	unsigned sign;
	int dscale;
	unsigned digits[6];
} numeric_cases[] = {
    {0, 0, 0, 0, 0, 0, {0}},
    {0, -2, 0, 0, 0, 2, {0}},
    {1, 0, 1, 0, 0, 0, {1}},
    {12345, 0, 2, 1, 0, 0, {1, 2345}},
    {123456, -1, 3, 1, 0, 1, {1, 2345, 6000}},
    {-5, -6, 1, -2, 0x4000, 6, {500}},
    {7, 3, 1, 0, 0, 0, {7000}},
    {7, 4, 1, 1, 0, 0, {7}},
    {10000, 0, 1, 1, 0, 0, {1}},
    {INT64_MAX, 0, 5, 4, 0, 0, {922, 3372, 368, 5477, 5807}},
    {INT64_MIN, 0, 5, 4, 0x4000, 0, {922, 3372, 368, 5477, 5808}},
    {-1250, -2, 2, 0, 0x4000, 2, {12, 5000}},
    {1, -64, 1, -16, 0, 64, {1}},
    {987654321, -3, 3, 1, 0, 3, {98, 7654, 3210}},
};

Test(store, numeric_binary_matches_numeric_send)
{
	for (size_t i = 0; i < sizeof(numeric_cases) / sizeof(numeric_cases[0]); i++) {
		unsigned char out[STORE_COPY_NUMERIC_MAX];
		int n = store_copy_numeric_bin(numeric_cases[i].m, numeric_cases[i].exp, out);
		int nd = numeric_cases[i].ndigits;

		cr_assert_eq(n, 8 + 2 * nd, "case %zu: length %d", i, n);
		cr_assert_eq(be16(out), (unsigned)nd, "case %zu: ndigits", i);
		cr_assert_eq((int16_t)be16(out + 2), numeric_cases[i].weight, "case %zu: weight %d",
		             i, (int16_t)be16(out + 2));
		cr_assert_eq(be16(out + 4), numeric_cases[i].sign, "case %zu: sign", i);
		cr_assert_eq(be16(out + 6), (unsigned)numeric_cases[i].dscale, "case %zu: dscale",
		             i);
		for (int k = 0; k < nd; k++)
			cr_assert_eq(be16(out + 8 + 2 * k), numeric_cases[i].digits[k],
			             "case %zu: digit %d is %u", i, k, be16(out + 8 + 2 * k));
	}
}

Test(store, numeric_exponent_out_of_range)
{
	unsigned char out[STORE_COPY_NUMERIC_MAX];
	char txt[256];
	struct store_copy c;

	cr_assert_eq(store_copy_numeric_bin(1, STORE_COPY_MAX_EXP + 1, out), -1);
	cr_assert_eq(store_copy_numeric_bin(1, -STORE_COPY_MAX_EXP - 1, out), -1);
	cr_assert_eq(store_copy_numeric_text(1, STORE_COPY_MAX_EXP + 1, txt, sizeof(txt)), -1);
	store_copy_init(&c, true);
	store_copy_row(&c, 1);
	store_copy_numeric(&c, 1, 100);
	store_copy_endrow(&c);
	cr_assert(c.bad, "an exponent out of range spoils the buffer");
	store_copy_free(&c);
}

static const struct {
	int64_t m;
	int exp;
	const char *text;
} numeric_text_cases[] = {
    {1250, -2, "12.50"},
    {-1250, -2, "-12.50"},
    {5, -6, "0.000005"},
    {-5, -1, "-0.5"},
    {7, 3, "7000"},
    {0, -2, "0.00"},
    {0, 3, "0"},
    {42, 0, "42"},
    {INT64_MIN, 0, "-9223372036854775808"},
    {INT64_MAX, -19, "0.9223372036854775807"},
};

Test(store, numeric_text_as_postgresql_prints_it)
{
	for (size_t i = 0; i < sizeof(numeric_text_cases) / sizeof(numeric_text_cases[0]); i++) {
		char out[64];
		int n = store_copy_numeric_text(numeric_text_cases[i].m, numeric_text_cases[i].exp,
		                                out, sizeof(out));
		cr_assert_eq(n, (int)strlen(numeric_text_cases[i].text), "case %zu", i);
		cr_assert_str_eq(out, numeric_text_cases[i].text);
	}
	char small[4];
	cr_assert_eq(store_copy_numeric_text(12345, 0, small, sizeof(small)), -1,
	             "a result that does not fit is refused");
}

Test(store, binary_row_layout)
{
	struct store_copy c;
	size_t hl, tl;
	const unsigned char *h = store_copy_bin_header(&hl), *t = store_copy_bin_trailer(&tl);

	cr_assert_eq(hl, 19);
	cr_assert(memcmp(h, "PGCOPY\n\377\r\n\0", 11) == 0);
	cr_assert_eq(be32(h + 11), 0, "flags");
	cr_assert_eq(be32(h + 15), 0, "header extension");
	cr_assert_eq(tl, 2);
	cr_assert_eq(be16(t), 0xffff);

	store_copy_init(&c, true);
	store_copy_row(&c, 8);
	store_copy_int4(&c, 42);
	store_copy_null(&c);
	store_copy_text(&c, "ab", 2);
	store_copy_int2(&c, -2);
	store_copy_int8(&c, -1);
	store_copy_ts(&c, 946684801); /* one second after PostgreSQL's epoch */
	store_copy_bool(&c, true);
	store_copy_jsonb(&c, "{}", 2);
	store_copy_endrow(&c);
	cr_assert(!c.bad);
	cr_assert_eq(c.rows, 1);

	const unsigned char *p = c.p;
	size_t want = 2 + (4 + 4) + 4 + (4 + 2) + (4 + 2) + (4 + 8) + (4 + 8) + (4 + 1) + (4 + 3);
	cr_assert_eq(c.len, want, "row length %zu", c.len);
	cr_assert_eq(be16(p), 8, "field count");
	p += 2;
	cr_assert_eq(be32(p), 4);
	cr_assert_eq(be32(p + 4), 42);
	p += 8;
	cr_assert_eq(be32(p), 0xffffffffu, "NULL is length -1");
	p += 4;
	cr_assert_eq(be32(p), 2);
	cr_assert(memcmp(p + 4, "ab", 2) == 0);
	p += 6;
	cr_assert_eq(be32(p), 2);
	cr_assert_eq(be16(p + 4), 0xfffe);
	p += 6;
	cr_assert_eq(be32(p), 8);
	cr_assert_eq(be32(p + 4), 0xffffffffu);
	cr_assert_eq(be32(p + 8), 0xffffffffu);
	p += 12;
	cr_assert_eq(be32(p), 8);
	cr_assert_eq(be32(p + 4), 0);
	cr_assert_eq(be32(p + 8), 1000000, "microseconds since 2000-01-01");
	p += 12;
	cr_assert_eq(be32(p), 1);
	cr_assert_eq(p[4], 1);
	p += 5;
	cr_assert_eq(be32(p), 3);
	cr_assert_eq(p[4], 1, "jsonb version byte");
	cr_assert(memcmp(p + 5, "{}", 2) == 0);
	store_copy_free(&c);
}

Test(store, text_row_escapes_and_formats)
{
	struct store_copy c;
	const unsigned char bytes[] = {0x00, 0xff, 0x5c};
	const char *want = "42\t\\N\ta\\tb\\\\c\\nd\\re\t1970-01-01 00:00:00+00\t"
	                   "2000-01-01 00:00:01+00\t-12.50\t\\\\x00ff5c\tf\t-32768\n";

	store_copy_init(&c, false);
	store_copy_row(&c, 9);
	store_copy_int4(&c, 42);
	store_copy_null(&c);
	store_copy_text(&c, "a\tb\\c\nd\re", 9);
	store_copy_ts(&c, 0);
	store_copy_ts(&c, 946684801);
	store_copy_numeric(&c, -1250, -2);
	store_copy_bytea(&c, bytes, sizeof(bytes));
	store_copy_bool(&c, false);
	store_copy_int2(&c, INT16_MIN);
	store_copy_endrow(&c);
	cr_assert(!c.bad);
	cr_assert_eq(c.len, strlen(want), "length %zu, want %zu", c.len, strlen(want));
	cr_assert(memcmp(c.p, want, c.len) == 0, "got %.*s", (int)c.len, (const char *)c.p);
	store_copy_free(&c);
}

Test(store, binary_bytea_is_raw_and_empty_ok)
{
	struct store_copy c;
	const unsigned char bytes[] = {0x00, 0xff};

	store_copy_init(&c, true);
	store_copy_row(&c, 2);
	store_copy_bytea(&c, bytes, 2);
	store_copy_bytea(&c, NULL, 0);
	store_copy_endrow(&c);
	cr_assert_eq(c.len, 2 + 4 + 2 + 4);
	cr_assert_eq(be32(c.p + 2), 2);
	cr_assert_eq(c.p[6], 0x00);
	cr_assert_eq(c.p[7], 0xff);
	cr_assert_eq(be32(c.p + 8), 0, "empty, not NULL");
	store_copy_free(&c);
}

Test(store, buffer_grows_over_many_rows)
{
	struct store_copy c;

	store_copy_init(&c, true);
	for (int i = 0; i < 10000; i++) {
		store_copy_row(&c, 2);
		store_copy_int4(&c, i);
		store_copy_numeric(&c, i, -1);
		store_copy_endrow(&c);
	}
	cr_assert(!c.bad);
	cr_assert_eq(c.rows, 10000);
	/* The last row: count, int4 9999, numeric 999.9 = digits {999, 9000}. */
	const unsigned char *last = c.p + c.len - (2 + 8 + 4 + 12);
	cr_assert_eq(be16(last), 2);
	cr_assert_eq(be32(last + 2), 4);
	cr_assert_eq(be32(last + 6), 9999);
	cr_assert_eq(be32(last + 10), 12);
	cr_assert_eq(be16(last + 14), 2, "ndigits");
	cr_assert_eq(be16(last + 22), 999);
	cr_assert_eq(be16(last + 24), 9000);
	store_copy_free(&c);
}

/* ---- the batch API without a server --------------------------------------------- */

struct done_rec {
	int calls;
	int status;
	bool in_submit;
	bool during_submit; /* fired while store_submit was running */
};

static void
on_done(int status, const char *err, void *arg)
{
	struct done_rec *r = arg;

	(void)err;
	r->calls++;
	r->status = status;
	if (r->in_submit)
		r->during_submit = true;
}

static struct store *
offline_store(struct event_base *base, struct metrics *reg, size_t bound)
{
	/* A socket directory that does not exist: every attempt fails at once. */
	struct store_params p = {.conninfo = "host=/nonexistent/amm-test port=1 dbname=x",
	                         .batch_rows = 100,
	                         .batch_ms = 10,
	                         .max_queue_rows = bound,
	                         .reconnect_min_ms = 1000,
	                         .partition_months = -1};

	return store_new(base, &p, reg);
}

Test(store, batch_callbacks_fire_once_outside_submit)
{
	struct event_base *base = event_base_new();
	struct metrics *reg = metrics_new();
	struct store *s;
	struct done_rec empty = {0}, bad = {0}, good = {0};
	int64_t v[4] = {1, 2, STORE_NULL, 4};

	log_init(false, LOG_CRIT);
	s = offline_store(base, reg, 0);
	cr_assert_not_null(s);
	cr_assert(!store_is_connected(s));

	struct store_batch *b = store_batch_new(s);
	empty.in_submit = true;
	store_submit(s, b, on_done, &empty);
	empty.in_submit = false;

	b = store_batch_new(s);
	cr_assert_eq(store_add_interval(b, 1, 1700000000, v, 0, 0), 0);
	cr_assert_eq(store_add_interval(b, 1, 1700000900, v, 0, (int64_t)INT32_MAX + 1), -1,
	             "a status beyond int4 is refused");
	cr_assert_eq(store_add_register(b, 1, NULL, 1700000000, 1, 0, 30, STORE_NULL), -1,
	             "a register needs its OBIS code");
	cr_assert_eq(store_add_outbox(b, "t", "x", 1, 3, false), -1, "qos 3 refused");
	cr_assert_eq(store_batch_rows(b), 1);
	bad.in_submit = true;
	store_submit(s, b, on_done, &bad);
	bad.in_submit = false;

	b = store_batch_new(s);
	cr_assert_eq(
	    store_add_register(b, 7, "1-0:1.8.0.255", 1700000000, 12345, -1, 30, STORE_NULL), 0);
	cr_assert_eq(store_add_outbox(b, "t", "x", 1, 1, false), 0);
	good.in_submit = true;
	store_submit(s, b, on_done, &good);
	good.in_submit = false;

	cr_assert_eq(empty.calls + bad.calls + good.calls, 0, "nothing fires inside store_submit");
	for (int i = 0; i < 5; i++)
		event_base_loop(base, EVLOOP_NONBLOCK);
	cr_assert_eq(empty.calls, 1);
	cr_assert_eq(empty.status, 0, "an empty batch completes at once");
	cr_assert_eq(bad.calls, 1);
	cr_assert_eq(bad.status, -1, "a spoilt batch fails");
	cr_assert(!empty.during_submit && !bad.during_submit);
	cr_assert_eq(good.calls, 0, "a good batch waits for the database");
	cr_assert_eq(store_queue_batches(s), 1);
	cr_assert(!store_drained(s));
	cr_assert_eq(
	    metric_value(metrics_counter(reg, "ammd_store_batches_total", "x", "result"), "failed"),
	    1);

	char detail[128] = "";
	cr_assert_eq(store_health(s, detail, sizeof(detail)), -1, "unhealthy while disconnected");
	cr_assert(strstr(detail, "not connected") != NULL, "detail: %s", detail);

	/* Dropped without its callback at free (logged). */
	store_free(s);
	cr_assert_eq(good.calls, 0);
	metrics_free(reg);
	event_base_free(base);
}

Test(store, backpressure_over_the_bound)
{
	struct event_base *base = event_base_new();
	struct store *s;
	struct done_rec r[3] = {{0}};
	int64_t v[4] = {1, 1, 1, 1};

	log_init(false, LOG_CRIT);
	s = offline_store(base, NULL, 150);
	for (int k = 0; k < 3; k++) {
		struct store_batch *b = store_batch_new(s);
		for (int i = 0; i < 60; i++)
			store_add_interval(b, k + 1, 1700000000 + 900 * i, v, 0, STORE_NULL);
		store_submit(s, b, on_done, &r[k]);
		cr_assert_eq(store_is_behind(s), k == 2, "after %d batches of 60 rows, bound 150",
		             k + 1);
	}
	cr_assert_eq(store_queue_rows(s), 180);
	store_drain(s);
	event_base_loop(base, EVLOOP_NONBLOCK);
	cr_assert(!store_drained(s), "nothing can be written without the database");
	store_free(s);
	for (int k = 0; k < 3; k++)
		cr_assert_eq(r[k].calls, 0);
	event_base_free(base);
}
