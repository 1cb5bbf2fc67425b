/*
 * bench_store.c: the store (daemon/store.c) under load, on a libevent loop,
 * against a real PostgreSQL.  Two modes:
 *
 *   bench_store [--dsn DSN] [--meters N] [--runs R] [--text]
 *	the benchmark: a collection round of N meters (one day of 15-minute
 *	profile, registers, events, billing, pointers, meter state, session
 *	log, outbox) through the store as fast as its backpressure allows,
 *	then the same rows by one plain COPY per table into the same tables;
 *	rows/s of both and their ratio, median of R runs.  Without a DSN (and
 *	without $AMMD_DB) it runs tests/bench/bench_store.sh, which starts a
 *	private PostgreSQL and calls it back with one.
 *
 *   bench_store --check --dsn DSN [--meters N] [--intervals K] [--rate S]
 *	the integration driver of tests/integration/t_store.sh: sessions
 *	submitted at S per second (0: as fast as backpressure allows); a
 *	failed batch is submitted again, as a session would read the meter
 *	again; then the same data again (no new rows), a pointer moved back
 *	(refused) and forward, a batch the server refuses merged with good
 *	ones (only it fails); finally counts and sums checked exactly in the
 *	database.  Prints "  ok N - ..." per check and exits 1 on the first
 *	failure.  The database is expected to be stopped and restarted by the
 *	caller while round 1 runs ("round 1 started" is printed when it
 *	begins).
 *
 * The meters' ids are 1..N; missing meter rows are created.  --check wants a
 * database without readings; the benchmark empties the tables (TRUNCATE).
 */
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <libpq-fe.h>

#include "db.h"
#include "log.h"
#include "metrics.h"
#include "store.h"
#include "store_copy.h"

struct drv {
	struct event_base *base;
	struct store *s;
	struct metrics *reg;
	const char *dsn;
	int meters, intervals, rate;
	bool text;
	int64_t t0;
	int round; /* 1: first write, 2: the same again */
	int next;  /* next meter to submit in this round */
	int acked; /* meters committed in this round */
	long submitted, fired, failed, twice;
	bool extras; /* session log and outbox rows too */
	struct event *tick;
};

struct sub {
	struct drv *d;
	int meter;
	int round;
	bool fired;
	int expect; /* -1 any, 0 must succeed, 1 must fail */
	int *result;
};

static const char *reg_obis[4] = {"1-0:1.8.0.255", "1-0:2.8.0.255", "1-0:32.7.0.255",
                                  "1-0:1.8.1.255"};
static const int reg_scaler[4] = {0, -1, -1, 3};
static const int reg_unit[4] = {30, 30, 35, 30};

static int64_t
reg_value(int m, int k)
{
	switch (k) {
	case 0:
		return (int64_t)m * 1000 + 7;
	case 1:
		return m;
	case 2:
		return 2300 + m % 50;
	default:
		return (int64_t)m * 3;
	}
}

/* Interval values in the meter's units; scaler -1 for odd meters. */
static int
iv_scaler(int m)
{
	return m % 2 ? -1 : 0;
}

static void
iv_values(int m, int i, int64_t v[4])
{
	v[0] = (int64_t)m * 7 + i * 3;
	v[1] = (m + i) % 5;
	v[2] = i;
	v[3] = i % 10 == 0 ? STORE_NULL : m % 3;
}

static int64_t
profile_end(const struct drv *d)
{
	return d->t0 + (int64_t)d->intervals * 900;
}

static struct store_batch *
build(struct drv *d, int m, bool extras)
{
	struct store_batch *b = store_batch_new(d->s);
	int64_t end = profile_end(d);
	char topic[64], data[32];
	unsigned char payload[16];
	int rc = 0;

	if (b == NULL)
		return NULL;
	for (int i = 1; i <= d->intervals; i++) {
		int64_t v[4];
		iv_values(m, i, v);
		rc |= store_add_interval(b, m, d->t0 + (int64_t)i * 900, v, iv_scaler(m),
		                         i % 4 == 0 ? 8 : 0);
	}
	for (int k = 0; k < 4; k++)
		rc |= store_add_register(b, m, reg_obis[k], end, reg_value(m, k), reg_scaler[k],
		                         reg_unit[k], STORE_NULL);
	snprintf(data, sizeof(data), "{\"m\": %d}", m);
	rc |= store_add_event(b, m, 0, d->t0 + 100, 1, NULL, STORE_NULL);
	rc |= store_add_event(b, m, 1, d->t0 + 200, 40 + m % 3, data, STORE_NULL);
	rc |= store_add_billing(b, m, d->t0, "1-0:1.8.0.255", (int64_t)m * 1000, 0, 30, d->t0 - 60,
	                        STORE_NULL);
	rc |= store_add_pointer(b, m, "profile", end, STORE_NULL);
	rc |= store_add_pointer(b, m, "events:0", d->t0 + 100, 2);
	rc |= store_add_meter_state(b, m, end + 30, STORE_REACH_REACHABLE, NULL, 0);
	if (extras) {
		struct store_session ss = {.meter = m,
		                           .instance = "bench",
		                           .transport = "tcpip",
		                           .started_at = end + 10,
		                           .finished_at = end + 30,
		                           .outcome = "ok",
		                           .bytes_in = 4000 + m,
		                           .bytes_out = 300,
		                           .duration_ms = 20000,
		                           .error = NULL};
		rc |= store_add_session(b, &ss);
		snprintf(topic, sizeof(topic), "ammd/v1/meter/SB%d/profile", m);
		for (size_t j = 0; j < sizeof(payload); j++)
			payload[j] =
			    (unsigned char)((m >> (8 * (j % 4))) ^ (j * 37) ^ (j == 0 ? '\t' : 0));
		payload[1] = '\\'; /* bytes the text format must escape */
		rc |= store_add_outbox(b, topic, payload, sizeof(payload), 1, false);
	}
	if (rc != 0)
		fprintf(stderr, "bench_store: building meter %d's batch failed\n", m);
	return b;
}

static void submit(struct drv *d, int m);

static void
done_cb(int status, const char *err, void *arg)
{
	struct sub *u = arg;
	struct drv *d = u->d;

	if (u->fired) {
		d->twice++;
		return;
	}
	u->fired = true;
	d->fired++;
	if (u->result != NULL) {
		*u->result = status;
		free(u);
		return;
	}
	if (status == 0) {
		if (u->round == d->round)
			d->acked++;
	} else {
		/* As a session would: the pointer did not move, read again. */
		d->failed++;
		if (d->failed <= 5)
			fprintf(stderr, "bench_store: meter %d not written (%s); again\n", u->meter,
			        err ? err : "?");
		submit(d, u->meter);
	}
	free(u);
}

static void
submit(struct drv *d, int m)
{
	struct sub *u = calloc(1, sizeof(*u));
	struct store_batch *b = build(d, m, d->extras);

	if (u == NULL || b == NULL) {
		fprintf(stderr, "bench_store: out of memory\n");
		exit(1);
	}
	u->d = d;
	u->meter = m;
	u->round = d->round;
	d->submitted++;
	store_submit(d->s, b, done_cb, u);
}

static void
tick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct drv *d = arg;
	int quota = d->rate > 0 ? (d->rate + 99) / 100 : INT_MAX;

	(void)fd;
	(void)what;
	while (quota-- > 0 && d->next <= d->meters && !store_is_behind(d->s)) {
		submit(d, d->next++);
	}
}

/* One round over every meter; returns the wall time in seconds. */
static double
run_round(struct drv *d, int round, bool extras)
{
	struct timespec a, b;
	struct timeval tv = {0, 10000};

	d->round = round;
	d->next = 1;
	d->acked = 0;
	d->extras = extras;
	clock_gettime(CLOCK_MONOTONIC, &a);
	d->tick = event_new(d->base, -1, EV_PERSIST, tick_cb, d);
	event_add(d->tick, &tv);
	while (d->acked < d->meters)
		event_base_loop(d->base, EVLOOP_ONCE);
	event_free(d->tick);
	d->tick = NULL;
	while (!store_drained(d->s))
		event_base_loop(d->base, EVLOOP_ONCE);
	clock_gettime(CLOCK_MONOTONIC, &b);
	return (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
}

static long
rows_per_meter(const struct drv *d, bool extras)
{
	return d->intervals + 4 + 2 + 1 + 2 + 1 + (extras ? 2 : 0);
}

/* ---- synchronous helpers -------------------------------------------------- */

static PGconn *
sync_connect(const char *dsn)
{
	char err[DB_ERR_MAX];
	PGconn *c = db_connect(dsn, "bench_store", err, sizeof(err));

	if (c == NULL) {
		fprintf(stderr, "bench_store: %s\n", err);
		exit(1);
	}
	return c;
}

static void
sync_exec(PGconn *c, const char *sql)
{
	char err[DB_ERR_MAX];

	if (db_exec(c, sql, err, sizeof(err)) < 0) {
		fprintf(stderr, "bench_store: %s: %s\n", sql, err);
		exit(1);
	}
}

static char *
sync_value(PGconn *c, const char *sql, char *out, size_t outlen)
{
	char err[DB_ERR_MAX];
	PGresult *r = db_query(c, sql, 0, NULL, err, sizeof(err));

	if (r == NULL || PQntuples(r) != 1) {
		fprintf(stderr, "bench_store: %s: %s\n", sql, r ? "not one row" : err);
		exit(1);
	}
	snprintf(out, outlen, "%s", PQgetisnull(r, 0, 0) ? "NULL" : PQgetvalue(r, 0, 0));
	PQclear(r);
	return out;
}

/* Starts each measurement from clean buffers when the role may (pg_checkpoint). */
static void
checkpoint(PGconn *c)
{
	char err[DB_ERR_MAX];

	(void)db_exec(c, "CHECKPOINT", err, sizeof(err));
}

static void
make_meters(PGconn *c, int n)
{
	char sql[512];

	snprintf(sql, sizeof(sql),
	         "INSERT INTO meter (id, serial, transport, host) SELECT g, 'SB' || g, 'tcpip', "
	         "'127.0.0.1' FROM generate_series(1, %d) g ON CONFLICT DO NOTHING",
	         n);
	sync_exec(c, sql);
}

static void
truncate_all(PGconn *c)
{
	sync_exec(c, "TRUNCATE interval_reading, register_reading, event, billing_value, "
	             "session_log, outbox, read_pointer");
	sync_exec(c, "UPDATE meter SET last_contact_at = NULL, reachability = 'unknown'");
}

/* ---- check mode ------------------------------------------------------------- */

static int nchecks;

static void
check(bool cond, const char *what, const char *got, const char *want)
{
	nchecks++;
	if (!cond) {
		printf("  FAILED: %s: got %s, expected %s\n", what, got, want);
		exit(1);
	}
	printf("  ok %d - %s\n", nchecks, what);
	fflush(stdout);
}

static void
check_eq(PGconn *c, const char *what, const char *sql, const char *want)
{
	char got[256];

	sync_value(c, sql, got, sizeof(got));
	check(strcmp(got, want) == 0, what, got, want);
}

static void
check_num(PGconn *c, const char *what, const char *sql, long long want)
{
	char w[32];

	snprintf(w, sizeof(w), "%lld", want);
	check_eq(c, what, sql, w);
}

/* sum = mantissa × 10^exp, compared as numeric */
static void
check_sum(PGconn *c, const char *what, const char *expr, long long mant, int exp)
{
	char want[64], sql[512], got[256];

	store_copy_numeric_text(mant, exp, want, sizeof(want));
	snprintf(sql, sizeof(sql), "SELECT coalesce((%s)::text, 'NULL') || ' ' || ((%s) = %s)",
	         expr, expr, want);
	sync_value(c, sql, got, sizeof(got));
	char w2[80];
	snprintf(w2, sizeof(w2), "%s true", want);
	/* Compare numerically: "123.0 true" matches "123 true". */
	const char *sp = strrchr(got, ' ');
	check(sp != NULL && strcmp(sp, " true") == 0, what, got, w2);
}

static void
check_database(struct drv *d, PGconn *c)
{
	long long n = d->meters, k = d->intervals;
	long long a_plus = 0, a_minus = 0, r_plus = 0, r_minus = 0, r_minus_n = 0, status = 0;
	long long regsum[4] = {0}, codes = 0, bill = 0;
	char sql[512];

	/* Sums in tenths, since odd meters have scaler -1. */
	for (int m = 1; m <= d->meters; m++) {
		long long f = iv_scaler(m) == 0 ? 10 : 1;
		for (int i = 1; i <= d->intervals; i++) {
			int64_t v[4];
			iv_values(m, i, v);
			a_plus += v[0] * f;
			a_minus += v[1] * f;
			r_plus += v[2] * f;
			if (v[3] != STORE_NULL) {
				r_minus += v[3] * f;
				r_minus_n++;
			}
			status += i % 4 == 0 ? 8 : 0;
		}
		for (int j = 0; j < 4; j++)
			regsum[j] += reg_value(m, j);
		codes += 1 + 40 + m % 3;
		bill += (long long)m * 1000;
	}
	check_num(c, "interval rows: meters x intervals, each once",
	          "SELECT count(*) FROM interval_reading", n * k);
	check_num(c, "interval keys distinct",
	          "SELECT count(DISTINCT (meter_id, ts)) FROM interval_reading", n * k);
	check_sum(c, "sum(a_plus) exact", "SELECT sum(a_plus) FROM interval_reading", a_plus, -1);
	check_sum(c, "sum(a_minus) exact", "SELECT sum(a_minus) FROM interval_reading", a_minus,
	          -1);
	check_sum(c, "sum(r_plus) exact", "SELECT sum(r_plus) FROM interval_reading", r_plus, -1);
	check_sum(c, "sum(r_minus) exact", "SELECT sum(r_minus) FROM interval_reading", r_minus,
	          -1);
	check_num(c, "NULL r_minus kept as NULL", "SELECT count(r_minus) FROM interval_reading",
	          r_minus_n);
	check_num(c, "sum(status)", "SELECT sum(status) FROM interval_reading", status);
	snprintf(sql, sizeof(sql),
	         "SELECT count(*) FROM interval_reading WHERE ts <= to_timestamp(%lld) "
	         "OR ts > to_timestamp(%lld) OR extract(epoch FROM ts)::bigint %% 900 <> 0",
	         (long long)d->t0, (long long)profile_end(d));
	check_num(c, "interval instants in UTC on the 15-minute grid", sql, 0);
	check_num(c, "register rows", "SELECT count(*) FROM register_reading", 4 * n);
	for (int j = 0; j < 4; j++) {
		char what[96], expr[160];
		snprintf(what, sizeof(what), "sum of %s with scaler %d exact", reg_obis[j],
		         reg_scaler[j]);
		snprintf(
		    expr, sizeof(expr),
		    "SELECT sum(value) FROM register_reading WHERE obis = '%s' AND scaler = %d",
		    reg_obis[j], reg_scaler[j]);
		check_sum(c, what, expr, regsum[j], reg_scaler[j]);
	}
	check_num(c, "event rows", "SELECT count(*) FROM event", 2 * n);
	check_num(c, "sum(event.code)", "SELECT sum(code) FROM event", codes);
	check_num(c, "event data as jsonb",
	          "SELECT count(*) FROM event WHERE (data->>'m')::int = meter_id", n);
	check_num(c, "billing rows", "SELECT count(*) FROM billing_value", n);
	check_sum(c, "sum(billing value)", "SELECT sum(value) FROM billing_value", bill, 0);
	check_num(c, "read pointers", "SELECT count(*) FROM read_pointer", 2 * n);
	snprintf(sql, sizeof(sql),
	         "SELECT count(*) FROM read_pointer WHERE what = 'profile' AND last_ts = "
	         "to_timestamp(%lld)",
	         (long long)profile_end(d));
	check_num(c, "profile pointers at the last stored interval", sql, n);
	snprintf(sql, sizeof(sql),
	         "SELECT count(*) FROM meter WHERE id <= %lld AND reachability = 'reachable' "
	         "AND last_contact_at = to_timestamp(%lld)",
	         n, (long long)profile_end(d) + 30);
	check_num(c, "meter state: reachable, last contact", sql, n);
}

static int
run_check(struct drv *d)
{
	PGconn *c = sync_connect(d->dsn);
	char buf[256], sql[512];
	double secs;
	struct metric *mf;

	/* A fresh database is expected: nothing to clear, and the daemon's role
	 * (group ammd) may run this without owning the tables. */
	make_meters(c, d->meters);
	mf = metrics_counter(d->reg, "ammd_store_failures_total",
	                     "Store failures by kind (connect, connection, flush, maintenance).",
	                     "kind");

	printf("round 1 started: %d meters x %d intervals at %d sessions/s\n", d->meters,
	       d->intervals, d->rate);
	fflush(stdout);
	/* The caller may restart the server during round 1: reconnect after it. */
	PQfinish(c);
	secs = run_round(d, 1, true);
	c = sync_connect(d->dsn);
	printf("round 1: %.1f s, %ld submissions, %ld failed and resubmitted, "
	       "connection losses %.0f, connect failures %.0f\n",
	       secs, d->submitted, d->failed, metric_value(mf, "connection"),
	       metric_value(mf, "connect"));
	fflush(stdout);
	check(d->twice == 0, "no callback fired twice", "twice", "never");
	snprintf(buf, sizeof(buf), "%ld", d->fired);
	check(d->fired == d->submitted, "every submission's callback fired", buf, "all");
	check_database(d, c);
	check_num(c, "session_log: one row per committed session",
	          "SELECT count(DISTINCT meter_id) FROM session_log", d->meters);
	check_num(c, "outbox: every meter's message committed with its data",
	          "SELECT count(DISTINCT payload) FROM outbox", d->meters);
	check_num(
	    c, "outbox payload bytes intact",
	    "SELECT count(*) FROM outbox WHERE get_byte(payload, 1) = 92 AND length(payload) = 16",
	    atol(sync_value(c, "SELECT count(*) FROM outbox", buf, sizeof(buf))));

	/* Round 2: the same readings again add nothing. */
	d->rate = 0;
	secs = run_round(d, 2, false);
	printf("round 2 (same data again): %.1f s\n", secs);
	check_database(d, c);

	/* A pointer never moves back, and moves forward. */
	struct store_batch *b = store_batch_new(d->s);
	int r1 = 9, r2 = 9, r3 = 9, r4 = 9;
	store_add_pointer(b, 1, "profile", d->t0, STORE_NULL);
	store_add_pointer(b, 1, "events:0", STORE_NULL, 1);
	struct sub *u = calloc(1, sizeof(*u));
	u->d = d;
	u->result = &r1;
	store_submit(d->s, b, done_cb, u);
	while (r1 == 9)
		event_base_loop(d->base, EVLOOP_ONCE);
	check(r1 == 0, "older pointer batch committed", r1 ? "failed" : "ok", "ok");
	snprintf(sql, sizeof(sql),
	         "SELECT (SELECT last_ts = to_timestamp(%lld) FROM read_pointer WHERE meter_id = 1 "
	         "AND what "
	         "= 'profile')::text || (SELECT last_entry FROM read_pointer WHERE meter_id = 1 "
	         "AND what = "
	         "'events:0')",
	         (long long)profile_end(d));
	check_eq(c, "read pointer did not move back", sql, "true2");
	b = store_batch_new(d->s);
	store_add_pointer(b, 1, "profile", profile_end(d) + 900, STORE_NULL);
	u = calloc(1, sizeof(*u));
	u->d = d;
	u->result = &r1;
	r1 = 9;
	store_submit(d->s, b, done_cb, u);
	while (r1 == 9)
		event_base_loop(d->base, EVLOOP_ONCE);
	snprintf(
	    sql, sizeof(sql),
	    "SELECT (last_ts = to_timestamp(%lld))::text FROM read_pointer WHERE meter_id = 1 AND "
	    "what = 'profile'",
	    (long long)profile_end(d) + 900);
	check_eq(c, "read pointer moved forward", sql, "true");

	/* A batch the server refuses (unknown meter: the pointer's foreign
	 * key) merged with good ones fails alone, and stores nothing. */
	int bad = d->meters + 1000;
	int *res[3] = {&r2, &r3, &r4};
	int who[3] = {2, bad, 3};
	for (int i = 0; i < 3; i++) {
		struct store_batch *x = store_batch_new(d->s);
		int64_t v[4] = {1, 2, 3, 4};
		store_add_interval(x, who[i], profile_end(d) + 900, v, 0, 0);
		store_add_pointer(x, who[i], "profile", profile_end(d) + 900, STORE_NULL);
		u = calloc(1, sizeof(*u));
		u->d = d;
		u->result = res[i];
		store_submit(d->s, x, done_cb, u);
	}
	while (r2 == 9 || r3 == 9 || r4 == 9)
		event_base_loop(d->base, EVLOOP_ONCE);
	snprintf(buf, sizeof(buf), "%d %d %d", r2, r3, r4);
	check(r2 == 0 && r3 != 0 && r4 == 0, "a refused batch fails alone, its neighbours commit",
	      buf, "0 -1 0");
	snprintf(sql, sizeof(sql), "SELECT count(*) FROM interval_reading WHERE meter_id = %d",
	         bad);
	check_num(c, "nothing of the refused batch stored", sql, 0);
	snprintf(sql, sizeof(sql),
	         "SELECT count(*) FROM interval_reading WHERE ts = to_timestamp(%lld)",
	         (long long)profile_end(d) + 900);
	check_num(c, "the neighbours' rows stored", sql, 2);

	/* Metrics saw the work. */
	struct metric *mr =
	    metrics_counter(d->reg, "ammd_store_rows_written_total",
	                    "Rows inserted or updated by the store, by table.", "table");
	snprintf(buf, sizeof(buf), "%.0f", metric_value(mr, "interval_reading"));
	check(metric_value(mr, "interval_reading") == (double)d->meters * d->intervals + 2,
	      "rows_written_total{interval_reading} counts inserted rows", buf,
	      "meters x intervals + 2");
	printf("%d checks passed\n", nchecks);
	PQfinish(c);
	return 0;
}

/* ---- bench mode ------------------------------------------------------------------ */

static void
raw_copy(PGconn *c, const char *sql, struct store_copy *buf)
{
	char err[DB_ERR_MAX];
	size_t hl, tl;
	const unsigned char *h = store_copy_bin_header(&hl), *t = store_copy_bin_trailer(&tl);

	if (db_copy_begin(c, sql, err, sizeof(err)) < 0 ||
	    PQputCopyData(c, (const char *)h, (int)hl) != 1) {
		fprintf(stderr, "bench_store: %s: %s\n", sql, err);
		exit(1);
	}
	for (size_t off = 0; off < buf->len; off += 1 << 20) {
		size_t n = buf->len - off < (1 << 20) ? buf->len - off : (1 << 20);
		if (PQputCopyData(c, (const char *)buf->p + off, (int)n) != 1) {
			fprintf(stderr, "bench_store: COPY data failed\n");
			exit(1);
		}
	}
	if (PQputCopyData(c, (const char *)t, (int)tl) != 1 ||
	    db_copy_end(c, NULL, NULL, err, sizeof(err)) < 0) {
		fprintf(stderr, "bench_store: %s: %s\n", sql, err);
		exit(1);
	}
}

/* The same rows by a plain binary COPY per table, one transaction. */
static double
run_raw(struct drv *d, PGconn *c, long *rows)
{
	struct store_copy t[7];
	struct timespec a, b;
	int64_t end = profile_end(d);

	clock_gettime(CLOCK_MONOTONIC, &a);
	for (int i = 0; i < 7; i++)
		store_copy_init(&t[i], true);
	for (int m = 1; m <= d->meters; m++) {
		for (int i = 1; i <= d->intervals; i++) {
			int64_t v[4];
			iv_values(m, i, v);
			store_copy_row(&t[0], 7);
			store_copy_int4(&t[0], m);
			store_copy_ts(&t[0], d->t0 + (int64_t)i * 900);
			for (int j = 0; j < 4; j++) {
				if (v[j] == STORE_NULL)
					store_copy_null(&t[0]);
				else
					store_copy_numeric(&t[0], v[j], iv_scaler(m));
			}
			store_copy_int4(&t[0], i % 4 == 0 ? 8 : 0);
			store_copy_endrow(&t[0]);
		}
		for (int k = 0; k < 4; k++) {
			store_copy_row(&t[1], 7);
			store_copy_int4(&t[1], m);
			store_copy_text(&t[1], reg_obis[k], strlen(reg_obis[k]));
			store_copy_ts(&t[1], end);
			store_copy_numeric(&t[1], reg_value(m, k), reg_scaler[k]);
			store_copy_int2(&t[1], (int16_t)reg_scaler[k]);
			store_copy_int2(&t[1], (int16_t)reg_unit[k]);
			store_copy_ts(&t[1], end + 20);
			store_copy_endrow(&t[1]);
		}
		for (int e = 0; e < 2; e++) {
			char data[32];
			snprintf(data, sizeof(data), "{\"m\": %d}", m);
			store_copy_row(&t[2], 6);
			store_copy_int4(&t[2], m);
			store_copy_int2(&t[2], (int16_t)e);
			store_copy_ts(&t[2], d->t0 + 100 * (e + 1));
			store_copy_int4(&t[2], e == 0 ? 1 : 40 + m % 3);
			if (e == 0)
				store_copy_null(&t[2]);
			else
				store_copy_jsonb(&t[2], data, strlen(data));
			store_copy_ts(&t[2], end + 20);
			store_copy_endrow(&t[2]);
		}
		store_copy_row(&t[3], 8);
		store_copy_int4(&t[3], m);
		store_copy_ts(&t[3], d->t0);
		store_copy_text(&t[3], "1-0:1.8.0.255", 13);
		store_copy_numeric(&t[3], (int64_t)m * 1000, 0);
		store_copy_ts(&t[3], d->t0 - 60);
		store_copy_int2(&t[3], 0);
		store_copy_int2(&t[3], 30);
		store_copy_ts(&t[3], end + 20);
		store_copy_endrow(&t[3]);
		for (int p = 0; p < 2; p++) {
			store_copy_row(&t[4], 4);
			store_copy_int4(&t[4], m);
			store_copy_text(&t[4], p ? "events:0" : "profile", p ? 8 : 7);
			store_copy_ts(&t[4], p ? d->t0 + 100 : end);
			if (p)
				store_copy_int8(&t[4], 2);
			else
				store_copy_null(&t[4]);
			store_copy_endrow(&t[4]);
		}
		store_copy_row(&t[5], 10);
		store_copy_int4(&t[5], m);
		store_copy_text(&t[5], "bench", 5);
		store_copy_text(&t[5], "tcpip", 5);
		store_copy_ts(&t[5], end + 10);
		store_copy_ts(&t[5], end + 30);
		store_copy_text(&t[5], "ok", 2);
		store_copy_int8(&t[5], 4000 + m);
		store_copy_int8(&t[5], 300);
		store_copy_int4(&t[5], 20000);
		store_copy_null(&t[5]);
		store_copy_endrow(&t[5]);
		unsigned char payload[16] = {0};
		char topic[64];
		snprintf(topic, sizeof(topic), "ammd/v1/meter/SB%d/profile", m);
		store_copy_row(&t[6], 4);
		store_copy_text(&t[6], topic, strlen(topic));
		store_copy_bytea(&t[6], payload, sizeof(payload));
		store_copy_int2(&t[6], 1);
		store_copy_bool(&t[6], false);
		store_copy_endrow(&t[6]);
	}
	sync_exec(c, "BEGIN");
	raw_copy(c,
	         "COPY interval_reading (meter_id, ts, a_plus, a_minus, r_plus, r_minus, status) "
	         "FROM STDIN (FORMAT binary)",
	         &t[0]);
	raw_copy(c,
	         "COPY register_reading (meter_id, obis, captured_at, value, scaler, unit, "
	         "read_at) FROM STDIN (FORMAT binary)",
	         &t[1]);
	raw_copy(c,
	         "COPY event (meter_id, log, ts, code, data, read_at) FROM STDIN (FORMAT binary)",
	         &t[2]);
	raw_copy(c,
	         "COPY billing_value (meter_id, period_end, obis, value, captured_at, scaler, "
	         "unit, read_at) FROM STDIN (FORMAT binary)",
	         &t[3]);
	raw_copy(c,
	         "COPY read_pointer (meter_id, what, last_ts, last_entry) FROM STDIN "
	         "(FORMAT binary)",
	         &t[4]);
	raw_copy(c,
	         "COPY session_log (meter_id, instance, transport, started_at, finished_at, "
	         "outcome, bytes_in, bytes_out, duration_ms, error) FROM STDIN (FORMAT binary)",
	         &t[5]);
	raw_copy(c, "COPY outbox (topic, payload, qos, retain) FROM STDIN (FORMAT binary)", &t[6]);
	sync_exec(c, "COMMIT");
	clock_gettime(CLOCK_MONOTONIC, &b);
	*rows = 0;
	for (int i = 0; i < 7; i++) {
		*rows += (long)t[i].rows;
		store_copy_free(&t[i]);
	}
	return (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
}

static int
dcmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static int
run_bench(struct drv *d, int runs)
{
	PGconn *c = sync_connect(d->dsn);
	double st[16], raw[16], ratio[16];
	long rows = (long)d->meters * rows_per_meter(d, true), rawrows = 0;

	if (runs > 16)
		runs = 16;
	make_meters(c, d->meters);
	sync_exec(c, "SET client_min_messages = warning");
	printf("store vs raw COPY: %d meters x (%d intervals + 4 registers + 2 events + 1 billing "
	       "+ 2 pointers + meter state + session + outbox) = %ld rows, COPY %s, batch_rows "
	       "5000\n",
	       d->meters, d->intervals, rows, d->text ? "text" : "binary");
	for (int r = 0; r < runs; r++) {
		truncate_all(c);
		checkpoint(c);
		double secs = run_round(d, 1 + r * 2, true);
		st[r] = (double)rows / secs;
		truncate_all(c);
		checkpoint(c);
		double rs = run_raw(d, c, &rawrows);
		raw[r] = (double)rawrows / rs;
		ratio[r] = st[r] / raw[r];
		printf("  run %d: store %.0f rows/s (%.2f s), raw COPY %.0f rows/s (%.2f s), ratio "
		       "%.2f\n",
		       r + 1, st[r], secs, raw[r], rs, ratio[r]);
		fflush(stdout);
	}
	qsort(st, (size_t)runs, sizeof(double), dcmp);
	qsort(raw, (size_t)runs, sizeof(double), dcmp);
	qsort(ratio, (size_t)runs, sizeof(double), dcmp);
	printf("store: %.0f rows/s, raw COPY: %.0f rows/s, ratio %.2f (median of %d)\n",
	       st[runs / 2], raw[runs / 2], ratio[runs / 2], runs);
	PQfinish(c);
	return 0;
}

/* ---- main ---------------------------------------------------------------------------- */

static void
usage(void)
{
	fprintf(stderr, "usage: bench_store [--check] [--dsn DSN] [--meters N] [--intervals K] "
	                "[--rate S] [--runs R] [--text] [--batch-rows N] [--batch-ms MS]\n");
	exit(2);
}

/* No database given: the wrapper script starts one and calls us back. */
static int
exec_wrapper(char **argv)
{
	char exe[PATH_MAX], script[PATH_MAX + 64];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	char *slash;

	if (n <= 0)
		return -1;
	exe[n] = '\0';
	if ((slash = strrchr(exe, '/')) == NULL)
		return -1;
	*slash = '\0';
	snprintf(script, sizeof(script), "%s/../tests/bench/bench_store.sh", exe);
	if (access(script, R_OK) != 0)
		return -1;
	*slash = '/';
	setenv("BENCH_STORE", exe, 1);
	/* The same arguments, after the script's name. */
	int argc = 0;
	while (argv[argc] != NULL)
		argc++;
	char **av = calloc((size_t)argc + 3, sizeof(*av));
	if (av == NULL)
		return -1;
	av[0] = "bash";
	av[1] = script;
	for (int i = 1; i < argc; i++)
		av[i + 1] = argv[i];
	execv("/bin/bash", av);
	free(av);
	return -1;
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {{"check", no_argument, NULL, 'c'},
	                                     {"dsn", required_argument, NULL, 'd'},
	                                     {"meters", required_argument, NULL, 'm'},
	                                     {"intervals", required_argument, NULL, 'i'},
	                                     {"rate", required_argument, NULL, 'r'},
	                                     {"runs", required_argument, NULL, 'R'},
	                                     {"text", no_argument, NULL, 't'},
	                                     {"batch-rows", required_argument, NULL, 'b'},
	                                     {"batch-ms", required_argument, NULL, 'B'},
	                                     {NULL, 0, NULL, 0}};
	struct drv d = {.meters = 10000, .intervals = 96, .rate = 500};
	struct store_params p = {
	    .appname = "bench_store", .batch_rows = 5000, .batch_ms = 50, .partition_months = 3};
	bool checkmode = false;
	int runs = 3, ch;

	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			checkmode = true;
			break;
		case 'd':
			d.dsn = optarg;
			break;
		case 'm':
			d.meters = atoi(optarg);
			break;
		case 'i':
			d.intervals = atoi(optarg);
			break;
		case 'r':
			d.rate = atoi(optarg);
			break;
		case 'R':
			runs = atoi(optarg);
			break;
		case 't':
			d.text = true;
			break;
		case 'b':
			p.batch_rows = atoi(optarg);
			break;
		case 'B':
			p.batch_ms = atoi(optarg);
			break;
		default:
			usage();
		}
	}
	if (d.meters <= 0 || d.intervals <= 0 || d.intervals > 2880 || runs <= 0)
		usage();
	if (d.dsn == NULL)
		d.dsn = getenv(DB_ENV);
	if (d.dsn == NULL) {
		if (checkmode) {
			fprintf(stderr, "bench_store: --check needs --dsn\n");
			return 2;
		}
		exec_wrapper(argv);
		fprintf(stderr, "bench_store: no database (--dsn, $AMMD_DB) and no "
		                "tests/bench/bench_store.sh to start one\n");
		return 1;
	}
	log_init(false, getenv("BENCH_STORE_DEBUG") ? LOG_DEBUG : LOG_NOTICE);
	/* Yesterday, midnight UTC: inside the partitions made ahead. */
	d.t0 = ((int64_t)time(NULL) / 86400 - 1) * 86400;
	d.base = event_base_new();
	d.reg = metrics_new();
	p.conninfo = d.dsn;
	p.text = d.text;
	if (!checkmode)
		d.rate = 0;
	if ((d.s = store_new(d.base, &p, d.reg)) == NULL) {
		fprintf(stderr, "bench_store: store_new failed\n");
		return 1;
	}
	int rc = checkmode ? run_check(&d) : run_bench(&d, runs);
	store_drain(d.s);
	store_free(d.s);
	metrics_free(d.reg);
	event_base_free(d.base);
	return rc;
}
