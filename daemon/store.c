/*
 * store.c: batches from the sessions into PostgreSQL over one non-blocking
 * libpq connection on the event loop (see store.h for the contract).
 *
 * A flush takes waiting batches up to batch_rows (or everything when
 * draining), orders them by meter, and walks one transaction:
 *
 *	BEGIN
 *	COPY s_<table> FROM STDIN (binary)	for each table with rows
 *	INSERT INTO <table> SELECT ... FROM s_<table> ON CONFLICT DO NOTHING;
 *	... read pointers (GREATEST), meter state, session log, outbox;
 *	NOTIFY ammd_outbox; COMMIT		one multi-statement query
 *
 * The staging tables are TEMP ... ON COMMIT DELETE ROWS, made once per
 * connection.  The connection is driven like pgqd's pgsocket.c: every libpq
 * call is non-blocking, the loop waits for the socket to become readable
 * (results) or writable (a COPY that filled libpq's buffer).
 *
 * Failures: when the connection breaks (or the server shuts down, or a
 * serialization conflict) the flush's batches go back to the head of the
 * queue and are tried once more on a fresh connection; a second failure is
 * reported to their callbacks.  When the server refuses the data itself, a
 * merged flush is split and each batch retried alone, so one session's bad
 * row fails only that session.  A COMMIT whose answer was lost may have
 * committed: the retry is then a no-op for readings and pointers (keys,
 * GREATEST) and at most repeats an outbox message (MQTT is at-least-once)
 * and a session_log row.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <time.h>

#include <event2/event.h>
#include <libpq-fe.h>

#include "ammd.h"
#include "config.h"
#include "db.h"
#include "http.h"
#include "log.h"
#include "metrics.h"
#include "notify.h"
#include "store.h"
#include "store_copy.h"

enum store_table {
	T_REGISTER,
	T_INTERVAL,
	T_EVENT,
	T_BILLING,
	T_SESSION,
	T_POINTER,
	T_METER,
	T_OUTBOX,
	T_COUNT
};

struct table_def {
	const char *name;   /* metric label */
	const char *create; /* the staging table, NULL: always direct */
	const char *copy;   /* into staging, without the format option */
	const char *merge;  /* staging into the real table */
	const char *direct; /* COPY straight into the real table, or NULL */
};

/* Pointers and meter state are merged after the facts, so a failure of the
 * facts leaves them untouched (one transaction anyway). */
static const struct table_def tables[T_COUNT] = {
    [T_REGISTER] =
        {"register_reading",
         "CREATE TEMP TABLE s_register (meter_id int4, obis text, captured_at timestamptz,"
         " value numeric, scaler int2, unit int2, read_at timestamptz) ON COMMIT DELETE ROWS",
         "COPY s_register FROM STDIN",
         "INSERT INTO register_reading (meter_id, obis, captured_at, value, scaler, unit, read_at)"
         " SELECT meter_id, obis, captured_at, value, scaler, unit, coalesce(read_at, now())"
         " FROM s_register ON CONFLICT DO NOTHING"},
    [T_INTERVAL] =
        {"interval_reading",
         "CREATE TEMP TABLE s_interval (meter_id int4, ts timestamptz, a_plus numeric,"
         " a_minus numeric, r_plus numeric, r_minus numeric, status int4) ON COMMIT DELETE ROWS",
         "COPY s_interval FROM STDIN",
         "INSERT INTO interval_reading (meter_id, ts, a_plus, a_minus, r_plus, r_minus, status)"
         " SELECT * FROM s_interval ON CONFLICT DO NOTHING",
         "COPY interval_reading (meter_id, ts, a_plus, a_minus, r_plus, r_minus, status)"
         " FROM STDIN"},
    [T_EVENT] = {"event",
                 "CREATE TEMP TABLE s_event (meter_id int4, log int2, ts timestamptz, code int4,"
                 " data jsonb, read_at timestamptz) ON COMMIT DELETE ROWS",
                 "COPY s_event FROM STDIN",
                 "INSERT INTO event (meter_id, log, ts, code, data, read_at)"
                 " SELECT meter_id, log, ts, code, data, coalesce(read_at, now())"
                 " FROM s_event ON CONFLICT DO NOTHING"},
    [T_BILLING] =
        {"billing_value",
         "CREATE TEMP TABLE s_billing (meter_id int4, period_end timestamptz, obis text,"
         " value numeric, captured_at timestamptz, scaler int2, unit int2, read_at timestamptz)"
         " ON COMMIT DELETE ROWS",
         "COPY s_billing FROM STDIN",
         "INSERT INTO billing_value (meter_id, period_end, obis, value, captured_at, scaler, unit,"
         " read_at) SELECT meter_id, period_end, obis, value, captured_at, scaler, unit,"
         " coalesce(read_at, now()) FROM s_billing ON CONFLICT DO NOTHING"},
    /* No natural key, nothing to absorb: straight in. */
    [T_SESSION] =
        {"session_log", NULL, NULL, NULL,
         "COPY session_log (meter_id, instance, transport, started_at, finished_at, outcome,"
         " bytes_in, bytes_out, duration_ms, error) FROM STDIN"},
    /* Several batches of one flush may move the same pointer: fold them
     * first, since ON CONFLICT DO UPDATE may touch a row only once. */
    [T_POINTER] =
        {"read_pointer",
         "CREATE TEMP TABLE s_pointer (meter_id int4, what text, last_ts timestamptz,"
         " last_entry int8) ON COMMIT DELETE ROWS",
         "COPY s_pointer FROM STDIN",
         "INSERT INTO read_pointer AS p (meter_id, what, last_ts, last_entry)"
         " SELECT meter_id, what, max(last_ts), max(last_entry) FROM s_pointer GROUP BY 1, 2"
         " ON CONFLICT (meter_id, what) DO UPDATE SET"
         " last_ts = greatest(p.last_ts, EXCLUDED.last_ts),"
         " last_entry = greatest(p.last_entry, EXCLUDED.last_entry), updated_at = now()"
         " WHERE p.last_ts IS DISTINCT FROM greatest(p.last_ts, EXCLUDED.last_ts)"
         " OR p.last_entry IS DISTINCT FROM greatest(p.last_entry, EXCLUDED.last_entry)"},
    [T_METER] =
        {"meter",
         "CREATE TEMP TABLE s_meter (seq int8, meter_id int4, last_contact_at timestamptz,"
         " reachability text, last_error text, failures int4) ON COMMIT DELETE ROWS",
         "COPY s_meter FROM STDIN",
         "UPDATE meter m SET last_contact_at = greatest(m.last_contact_at, u.last_contact_at),"
         " reachability = coalesce(u.reachability::meter_reachability, m.reachability),"
         " last_error = u.last_error, failures = coalesce(u.failures, m.failures),"
         " updated_at = now()"
         " FROM (SELECT DISTINCT ON (meter_id) * FROM s_meter ORDER BY meter_id, seq DESC) u"
         " WHERE m.id = u.meter_id"},
    [T_OUTBOX] = {"outbox", NULL, NULL, NULL,
                  "COPY outbox (topic, payload, qos, retain) FROM STDIN"},
};

struct store_batch {
	struct store *s;
	TAILQ_ENTRY(store_batch) entry;
	struct store_copy t[T_COUNT];
	size_t rows;
	int32_t first_meter;
	uint64_t seq; /* submission order, ties in the meter sort */
	uint64_t queued_ms;
	int attempts; /* flushes that failed on the connection */
	bool solo;    /* after a data error: flush alone */
	bool bad;     /* a row could not be encoded */
	store_done_fn done;
	void *arg;
};

TAILQ_HEAD(batchq, store_batch);

enum conn_state { C_DOWN, C_CONNECTING, C_READY };

enum op {
	OP_NONE,
	OP_SETUP,
	OP_MAINT,
	OP_BEGIN,
	OP_COPY,
	OP_MERGE,
	OP_ROLLBACK,
};

struct flush {
	struct store_batch **b;
	size_t n, cap;
	size_t rows;
	uint64_t start_ms;
	int table;                    /* the table being copied */
	size_t bi;                    /* copy cursor: batch index ... */
	size_t off;                   /* ... and offset in its buffer */
	int copy_phase;               /* -1 awaiting COPY_IN, 0 header, 1 rows, 2 trailer,
	                               * 3 end, 4 sent: awaiting the result */
	bool direct[T_COUNT];         /* this flush copies the table straight in */
	int merge_table[T_COUNT + 2]; /* table of each merge result, -1 none */
	int nmerge, merge_idx;
	long long inserted[T_COUNT];
};

struct store {
	struct event_base *base;
	struct store_params p;
	char *conninfo;
	char *appname;
	struct metrics *reg;

	PGconn *conn;
	enum conn_state state;
	enum op op;
	struct event *ev_conn;  /* PQconnectPoll's wait (socket may change) */
	struct event *ev_read;  /* persistent, while C_READY */
	struct event *ev_write; /* one-shot, when libpq's output is stuck */
	struct event *ev_retry; /* reconnect backoff */
	struct event *ev_timer; /* batch_ms */
	struct event *ev_kick;  /* run the engine outside the caller's stack */
	struct event *ev_maint; /* daily partition maintenance */
	int backoff_ms;
	uint64_t down_since_ms;
	bool ever_connected;
	bool reconnect_wanted; /* conninfo changed */
	bool maint_due;
	bool draining;
	bool warned_down;         /* the outage has been logged */
	int direct_skip[T_COUNT]; /* flushes to stage before trying direct again */
	char err[DB_ERR_MAX];     /* the first error of the current operation */
	bool op_failed;
	bool op_transient;

	struct batchq queue;    /* submitted, waiting */
	struct batchq finished; /* callbacks to run from the kick */
	size_t queue_rows;
	size_t queue_batches; /* waiting + in the flush */
	uint64_t seq;
	struct flush fl;
	bool flushing;

	struct metric *m_queue_batches, *m_queue_rows, *m_connected, *m_flush_seconds;
	struct metric *m_rows, *m_dups, *m_batches, *m_failures;
};

#define FLUSH_CHUNK       (256 * 1024)
#define CONNECT_TIMEOUT_S 10
#define MAINT_INTERVAL_S  86400

static void store_kick(struct store *s);
static void conn_start(struct store *s);
static void conn_lost(struct store *s, const char *why);
static void op_next(struct store *s);
static void flush_copy_send(struct store *s);

static uint64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void
store_gauges(struct store *s)
{
	metric_set(s->m_queue_batches, (double)s->queue_batches);
	metric_set(s->m_queue_rows, (double)s->queue_rows);
	metric_set(s->m_connected, s->state == C_READY ? 1 : 0);
}

static void
set_err(struct store *s, const PGresult *res)
{
	if (s->op_failed)
		return; /* keep the first, it names the cause */
	db_error(s->conn, res, s->err, sizeof(s->err));
	s->op_failed = true;
	/* Connection trouble, shutdown, conflicts and resource limits pass;
	 * anything else is about the data. */
	const char *st = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	s->op_transient = PQstatus(s->conn) != CONNECTION_OK || st == NULL ||
	                  strncmp(st, "08", 2) == 0 || strncmp(st, "57", 2) == 0 ||
	                  strncmp(st, "40", 2) == 0 || strncmp(st, "53", 2) == 0;
}

/* ---- batches -------------------------------------------------------------- */

struct store_batch *
store_batch_new(struct store *s)
{
	struct store_batch *b = calloc(1, sizeof(*b));

	if (b == NULL)
		return NULL;
	b->s = s;
	b->first_meter = INT32_MAX;
	for (int i = 0; i < T_COUNT; i++)
		store_copy_init(&b->t[i], !s->p.text);
	return b;
}

void
store_batch_free(struct store_batch *b)
{
	if (b == NULL)
		return;
	for (int i = 0; i < T_COUNT; i++)
		store_copy_free(&b->t[i]);
	free(b);
}

size_t
store_batch_rows(const struct store_batch *b)
{
	return b->rows;
}

/* Closes a row: counts it, or spoils the batch when it could not be kept. */
static int
row_end(struct store_batch *b, struct store_copy *c, int32_t meter)
{
	store_copy_endrow(c);
	if (c->bad) {
		b->bad = true;
		return -1;
	}
	b->rows++;
	if (meter < b->first_meter)
		b->first_meter = meter;
	return 0;
}

static void
opt_ts(struct store_copy *c, int64_t t)
{
	if (t == STORE_NULL)
		store_copy_null(c);
	else
		store_copy_ts(c, t);
}

static void
opt_text(struct store_copy *c, const char *s)
{
	if (s == NULL)
		store_copy_null(c);
	else
		store_copy_text(c, s, strlen(s));
}

static bool
small_int(int v)
{
	return v >= INT16_MIN && v <= INT16_MAX;
}

static int
spoil(struct store_batch *b)
{
	b->bad = true;
	return -1;
}

int
store_add_register(struct store_batch *b, int32_t meter, const char *obis, int64_t captured_at,
                   int64_t value, int scaler, int unit, int64_t read_at)
{
	struct store_copy *c = &b->t[T_REGISTER];

	if (obis == NULL || captured_at == STORE_NULL || !small_int(scaler) || !small_int(unit))
		return spoil(b);
	store_copy_row(c, 7);
	store_copy_int4(c, meter);
	store_copy_text(c, obis, strlen(obis));
	store_copy_ts(c, captured_at);
	store_copy_numeric(c, value, scaler);
	store_copy_int2(c, (int16_t)scaler);
	store_copy_int2(c, (int16_t)unit);
	opt_ts(c, read_at);
	return row_end(b, c, meter);
}

int
store_add_interval(struct store_batch *b, int32_t meter, int64_t ts, const int64_t v[4], int scaler,
                   int64_t status)
{
	struct store_copy *c = &b->t[T_INTERVAL];

	if (ts == STORE_NULL ||
	    (status != STORE_NULL && (status < INT32_MIN || status > INT32_MAX)))
		return spoil(b);
	store_copy_row(c, 7);
	store_copy_int4(c, meter);
	store_copy_ts(c, ts);
	for (int i = 0; i < 4; i++) {
		if (v[i] == STORE_NULL)
			store_copy_null(c);
		else
			store_copy_numeric(c, v[i], scaler);
	}
	if (status == STORE_NULL)
		store_copy_null(c);
	else
		store_copy_int4(c, (int32_t)status);
	return row_end(b, c, meter);
}

int
store_add_event(struct store_batch *b, int32_t meter, int log, int64_t ts, int32_t code,
                const char *data, int64_t read_at)
{
	struct store_copy *c = &b->t[T_EVENT];

	if (ts == STORE_NULL || !small_int(log))
		return spoil(b);
	store_copy_row(c, 6);
	store_copy_int4(c, meter);
	store_copy_int2(c, (int16_t)log);
	store_copy_ts(c, ts);
	store_copy_int4(c, code);
	if (data == NULL)
		store_copy_null(c);
	else
		store_copy_jsonb(c, data, strlen(data));
	opt_ts(c, read_at);
	return row_end(b, c, meter);
}

int
store_add_billing(struct store_batch *b, int32_t meter, int64_t period_end, const char *obis,
                  int64_t value, int scaler, int unit, int64_t captured_at, int64_t read_at)
{
	struct store_copy *c = &b->t[T_BILLING];

	if (obis == NULL || period_end == STORE_NULL || !small_int(scaler) || !small_int(unit))
		return spoil(b);
	store_copy_row(c, 8);
	store_copy_int4(c, meter);
	store_copy_ts(c, period_end);
	store_copy_text(c, obis, strlen(obis));
	store_copy_numeric(c, value, scaler);
	opt_ts(c, captured_at);
	store_copy_int2(c, (int16_t)scaler);
	store_copy_int2(c, (int16_t)unit);
	opt_ts(c, read_at);
	return row_end(b, c, meter);
}

int
store_add_session(struct store_batch *b, const struct store_session *ss)
{
	struct store_copy *c = &b->t[T_SESSION];

	if (ss->outcome == NULL || ss->started_at == STORE_NULL)
		return spoil(b);
	store_copy_row(c, 10);
	store_copy_int4(c, ss->meter);
	opt_text(c, ss->instance);
	opt_text(c, ss->transport);
	store_copy_ts(c, ss->started_at);
	opt_ts(c, ss->finished_at);
	store_copy_text(c, ss->outcome, strlen(ss->outcome));
	store_copy_int8(c, ss->bytes_in);
	store_copy_int8(c, ss->bytes_out);
	if (ss->duration_ms < 0)
		store_copy_null(c);
	else
		store_copy_int4(c, ss->duration_ms);
	opt_text(c, ss->error);
	return row_end(b, c, ss->meter);
}

int
store_add_pointer(struct store_batch *b, int32_t meter, const char *what, int64_t last_ts,
                  int64_t last_entry)
{
	struct store_copy *c = &b->t[T_POINTER];

	if (what == NULL)
		return spoil(b);
	store_copy_row(c, 4);
	store_copy_int4(c, meter);
	store_copy_text(c, what, strlen(what));
	opt_ts(c, last_ts);
	if (last_entry == STORE_NULL)
		store_copy_null(c);
	else
		store_copy_int8(c, last_entry);
	return row_end(b, c, meter);
}

int
store_add_meter_state(struct store_batch *b, int32_t meter, int64_t last_contact_at,
                      enum store_reach reach, const char *last_error, int failures)
{
	struct store_copy *c = &b->t[T_METER];

	store_copy_row(c, 6);
	store_copy_int8(c, (int64_t)++b->s->seq);
	store_copy_int4(c, meter);
	opt_ts(c, last_contact_at);
	switch (reach) {
	case STORE_REACH_REACHABLE:
		store_copy_text(c, "reachable", 9);
		break;
	case STORE_REACH_UNREACHABLE:
		store_copy_text(c, "unreachable", 11);
		break;
	default:
		store_copy_null(c);
	}
	opt_text(c, last_error);
	if (failures < 0)
		store_copy_null(c);
	else
		store_copy_int4(c, failures);
	return row_end(b, c, meter);
}

int
store_add_outbox(struct store_batch *b, const char *topic, const void *payload, size_t len, int qos,
                 bool retain)
{
	struct store_copy *c = &b->t[T_OUTBOX];

	if (topic == NULL || (payload == NULL && len > 0) || qos < 0 || qos > 2)
		return spoil(b);
	store_copy_row(c, 4);
	store_copy_text(c, topic, strlen(topic));
	store_copy_bytea(c, payload, len);
	store_copy_int2(c, (int16_t)qos);
	store_copy_bool(c, retain);
	return row_end(b, c, INT32_MAX);
}

/* ---- completion ------------------------------------------------------------- */

/* Queues the batch's callback for the kick, which runs it on a clean stack. */
static void
batch_finish(struct store *s, struct store_batch *b, int status, const char *why)
{
	s->queue_batches--;
	metric_inc(s->m_batches, status == 0 ? "ok" : "failed");
	if (status != 0) {
		log_warnx("store: a batch of %zu rows was not written: %s", b->rows, why);
		b->attempts = -1; /* marks failure for the kick */
	} else
		b->attempts = 0;
	TAILQ_INSERT_TAIL(&s->finished, b, entry);
	event_active(s->ev_kick, EV_TIMEOUT, 0);
}

static void
run_finished(struct store *s)
{
	struct store_batch *b;

	while ((b = TAILQ_FIRST(&s->finished)) != NULL) {
		TAILQ_REMOVE(&s->finished, b, entry);
		int ok = b->attempts == 0 ? 0 : -1;
		store_done_fn done = b->done;
		void *arg = b->arg;
		store_batch_free(b);
		if (done != NULL)
			done(ok, ok == 0 ? NULL : "not written (see the log)", arg);
	}
}

void
store_submit(struct store *s, struct store_batch *b, store_done_fn done, void *arg)
{
	b->done = done;
	b->arg = arg;
	b->seq = ++s->seq;
	b->queued_ms = now_ms();
	s->queue_batches++;
	if (b->bad) {
		batch_finish(s, b, -1, "a row could not be encoded");
		return;
	}
	if (b->rows == 0) {
		batch_finish(s, b, 0, NULL);
		return;
	}
	TAILQ_INSERT_TAIL(&s->queue, b, entry);
	s->queue_rows += b->rows;
	store_gauges(s);
	if (s->queue_rows >= (size_t)s->p.batch_rows || s->draining)
		event_active(s->ev_kick, EV_TIMEOUT, 0);
	else if (!evtimer_pending(s->ev_timer, NULL)) {
		struct timeval tv = {s->p.batch_ms / 1000, (s->p.batch_ms % 1000) * 1000};
		evtimer_add(s->ev_timer, &tv);
	}
}

/* ---- the flush ---------------------------------------------------------------- */

static int
batch_cmp(const void *a, const void *b)
{
	const struct store_batch *x = *(struct store_batch *const *)a;
	const struct store_batch *y = *(struct store_batch *const *)b;

	if (x->first_meter != y->first_meter)
		return x->first_meter < y->first_meter ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Whether a flush should start now (the thresholds, or draining). */
static bool
flush_due(struct store *s)
{
	struct store_batch *b = TAILQ_FIRST(&s->queue);

	if (b == NULL)
		return false;
	return s->draining || b->solo || s->queue_rows >= (size_t)s->p.batch_rows ||
	       now_ms() - b->queued_ms >= (uint64_t)s->p.batch_ms;
}

static int
flush_take(struct store *s)
{
	struct flush *f = &s->fl;
	struct store_batch *b;

	f->n = f->rows = 0;
	while ((b = TAILQ_FIRST(&s->queue)) != NULL) {
		if (f->n > 0 && (b->solo || f->rows >= (size_t)s->p.batch_rows))
			break;
		if (f->n == f->cap) {
			size_t ncap = f->cap ? f->cap * 2 : 64;
			struct store_batch **nb = realloc(f->b, ncap * sizeof(*nb));
			if (nb == NULL)
				break;
			f->b = nb;
			f->cap = ncap;
		}
		if (f->n == f->cap)
			break;
		TAILQ_REMOVE(&s->queue, b, entry);
		s->queue_rows -= b->rows;
		f->b[f->n++] = b;
		f->rows += b->rows;
		if (b->solo)
			break;
	}
	if (f->n == 0)
		return -1;
	qsort(f->b, f->n, sizeof(*f->b), batch_cmp);
	for (int t = 0; t < T_COUNT; t++)
		if (s->direct_skip[t] > 0)
			s->direct_skip[t]--;
	f->start_ms = now_ms();
	f->table = -1;
	memset(f->inserted, 0, sizeof(f->inserted));
	memset(f->direct, 0, sizeof(f->direct));
	s->flushing = true;
	return 0;
}

static bool
table_has_rows(const struct flush *f, int t)
{
	for (size_t i = 0; i < f->n; i++)
		if (f->b[i]->t[t].len > 0)
			return true;
	return false;
}

/* Sends a query; output that does not fit yet goes when the socket is writable. */
static int
send_query(struct store *s, const char *sql, enum op op)
{
	s->op = op;
	s->op_failed = s->op_transient = false;
	s->err[0] = '\0';
	if (!PQsendQuery(s->conn, sql)) {
		set_err(s, NULL);
		return -1;
	}
	if (PQflush(s->conn) == 1)
		event_add(s->ev_write, NULL);
	return 0;
}

static void
flush_fail(struct store *s)
{
	struct flush *f = &s->fl;
	bool transient = s->op_transient;

	metric_inc(s->m_failures, "flush");
	if (transient) {
		/* Back to the head of the queue, in their order, for one more try
		 * on a fresh connection. */
		for (size_t i = f->n; i-- > 0;) {
			struct store_batch *b = f->b[i];
			if (++b->attempts > 1) {
				batch_finish(s, b, -1, s->err);
				continue;
			}
			TAILQ_INSERT_HEAD(&s->queue, b, entry);
			s->queue_rows += b->rows;
		}
		log_warnx("store: flush of %zu batches (%zu rows) failed: %s", f->n, f->rows,
		          s->err);
	} else if (f->n > 1) {
		log_warnx("store: flush of %zu batches refused (%s); writing them one by one", f->n,
		          s->err);
		for (size_t i = f->n; i-- > 0;) {
			f->b[i]->solo = true;
			TAILQ_INSERT_HEAD(&s->queue, f->b[i], entry);
			s->queue_rows += f->b[i]->rows;
		}
	} else
		batch_finish(s, f->b[0], -1, s->err);
	f->n = 0;
	s->flushing = false;
	store_gauges(s);
}

static void
flush_done(struct store *s)
{
	struct flush *f = &s->fl;

	metric_observe(s->m_flush_seconds, (double)(now_ms() - f->start_ms) / 1000.0);
	for (int t = 0; t < T_COUNT; t++) {
		long long sent = 0;
		for (size_t i = 0; i < f->n; i++)
			sent += (long long)f->b[i]->t[t].rows;
		if (sent == 0)
			continue;
		metric_add(s->m_rows, (double)f->inserted[t], tables[t].name);
		/* Pointers and meter rows are folded, not duplicates. */
		if (t != T_POINTER && t != T_METER && sent > f->inserted[t])
			metric_add(s->m_dups, (double)(sent - f->inserted[t]), tables[t].name);
	}
	log_debug("store: committed %zu batches, %zu rows in %llu ms", f->n, f->rows,
	          (unsigned long long)(now_ms() - f->start_ms));
	for (size_t i = 0; i < f->n; i++)
		batch_finish(s, f->b[i], 0, NULL);
	f->n = 0;
	s->flushing = false;
	store_gauges(s);
}

/*
 * Starts the COPY of table t.  Tables with a key go through staging, except
 * that interval rows are first tried straight into their table inside a
 * savepoint: new readings (the usual case, a session reading on from its
 * pointer) then cost one COPY instead of COPY + INSERT ... SELECT, about
 * twice as fast (DESIGN §9); when the meter sent a row that is already
 * stored, the savepoint is rolled back and the same rows go through staging
 * (copy_restage), and the next flushes stage at once for a while.
 */
static void
copy_start(struct store *s, int t, bool direct, const char *prefix)
{
	struct flush *f = &s->fl;
	char sql[512];

	f->table = t;
	f->direct[t] = direct;
	f->bi = f->off = 0;
	f->copy_phase = -1;
	snprintf(sql, sizeof(sql), "%s%s%s", prefix, direct ? tables[t].direct : tables[t].copy,
	         s->p.text ? "" : " (FORMAT binary)");
	if (send_query(s, sql, OP_COPY) < 0)
		conn_lost(s, s->err);
}

#define RESTAGE_FLUSHES 32

static bool
copy_restage(struct store *s)
{
	struct flush *f = &s->fl;
	int t = f->table;

	if (!f->direct[t] || tables[t].create == NULL || s->op_transient)
		return false;
	log_debug("store: %s rows already stored; staging them (%s)", tables[t].name, s->err);
	s->direct_skip[t] = RESTAGE_FLUSHES;
	copy_start(s, t, false, "ROLLBACK TO SAVEPOINT direct; ");
	return true;
}

/* The next COPY, or the merge when every table is copied. */
static void
flush_next_table(struct store *s)
{
	struct flush *f = &s->fl;

	for (int t = f->table + 1; t < T_COUNT; t++) {
		if (!table_has_rows(f, t))
			continue;
		if (tables[t].create == NULL)
			copy_start(s, t, true, "");
		else if (tables[t].direct != NULL && s->direct_skip[t] == 0)
			copy_start(s, t, true, "SAVEPOINT direct; ");
		else
			copy_start(s, t, false, "");
		return;
	}

	/* One query: every merge, NOTIFY, COMMIT. */
	char *q;
	size_t qlen = 64;
	for (int t = 0; t < T_COUNT; t++)
		if (tables[t].merge != NULL)
			qlen += strlen(tables[t].merge) + 2;
	if ((q = malloc(qlen)) == NULL) {
		snprintf(s->err, sizeof(s->err), "out of memory");
		s->op_failed = true;
		s->op_transient = true;
		conn_lost(s, s->err);
		return;
	}
	q[0] = '\0';
	f->nmerge = 0;
	for (int t = 0; t < T_COUNT; t++) {
		if (!table_has_rows(f, t) || f->direct[t])
			continue;
		strcat(q, tables[t].merge);
		strcat(q, ";");
		f->merge_table[f->nmerge++] = t;
	}
	if (table_has_rows(f, T_OUTBOX)) {
		/* The publisher LISTENs; it hears this only once we commit. */
		strcat(q, "NOTIFY ammd_outbox;");
		f->merge_table[f->nmerge++] = -1;
	}
	strcat(q, "COMMIT");
	f->merge_table[f->nmerge++] = -1;
	f->merge_idx = 0;
	if (send_query(s, q, OP_MERGE) < 0)
		conn_lost(s, s->err);
	free(q);
}

/* Feeds the current COPY until libpq's buffer is full or all is sent. */
static void
flush_copy_send(struct store *s)
{
	struct flush *f = &s->fl;
	int t = f->table, r;

	for (;;) {
		const unsigned char *p;
		size_t len;

		if (f->copy_phase == 0) {
			p = store_copy_bin_header(&len);
		} else if (f->copy_phase == 1) {
			while (f->bi < f->n && f->off >= f->b[f->bi]->t[t].len) {
				f->bi++;
				f->off = 0;
			}
			if (f->bi == f->n) {
				f->copy_phase = s->p.text ? 3 : 2;
				continue;
			}
			p = f->b[f->bi]->t[t].p + f->off;
			len = f->b[f->bi]->t[t].len - f->off;
			if (len > FLUSH_CHUNK)
				len = FLUSH_CHUNK;
		} else if (f->copy_phase == 2) {
			p = store_copy_bin_trailer(&len);
		} else {
			r = PQputCopyEnd(s->conn, NULL);
			if (r < 0)
				goto fail;
			if (r == 0) {
				event_add(s->ev_write, NULL);
				return;
			}
			f->copy_phase = 4; /* results come on the read side */
			if (PQflush(s->conn) == 1)
				event_add(s->ev_write, NULL);
			/* An early error may already sit in libpq's input buffer,
			 * read while we were sending: no readiness would announce
			 * it, so look at once. */
			event_active(s->ev_read, EV_READ, 0);
			return;
		}
		r = PQputCopyData(s->conn, (const char *)p, (int)len);
		if (r < 0)
			goto fail;
		if (r == 0) {
			event_add(s->ev_write, NULL);
			return;
		}
		if (f->copy_phase == 1)
			f->off += len;
		else
			f->copy_phase++;
		r = PQflush(s->conn);
		if (r < 0)
			goto fail;
		if (r == 1) {
			event_add(s->ev_write, NULL);
			return;
		}
	}
fail:
	set_err(s, NULL);
	conn_lost(s, s->err);
}

/* ---- the connection ------------------------------------------------------------ */

static void
conn_close(struct store *s)
{
	/* event_free() of NULL is not allowed in libevent 2.1. */
	if (s->ev_read)
		event_free(s->ev_read);
	if (s->ev_write)
		event_free(s->ev_write);
	s->ev_read = s->ev_write = NULL;
	if (s->ev_conn)
		event_del(s->ev_conn);
	if (s->conn)
		PQfinish(s->conn);
	s->conn = NULL;
	s->op = OP_NONE;
	s->state = C_DOWN;
}

static void
schedule_reconnect(struct store *s)
{
	struct timeval tv = {s->backoff_ms / 1000, (s->backoff_ms % 1000) * 1000};

	evtimer_add(s->ev_retry, &tv);
	s->backoff_ms *= 2;
	if (s->backoff_ms > s->p.reconnect_max_ms)
		s->backoff_ms = s->p.reconnect_max_ms;
}

static void
conn_lost(struct store *s, const char *why)
{
	bool was_ready = s->state == C_READY;

	if (s->flushing) {
		s->op_transient = true;
		if (!s->op_failed) {
			snprintf(s->err, sizeof(s->err), "%s", why);
			s->op_failed = true;
		}
		flush_fail(s);
	}
	if (was_ready) {
		s->warned_down = true;
		log_warnx("store: lost the database connection: %s", why);
		s->down_since_ms = now_ms();
	} else if (!s->warned_down) {
		log_warnx("store: cannot connect to the database (retrying): %s", why);
		s->warned_down = true;
	} else
		log_debug("store: cannot connect: %s", why);
	metric_inc(s->m_failures, was_ready ? "connection" : "connect");
	conn_close(s);
	store_gauges(s);
	schedule_reconnect(s);
}

static void
op_result(struct store *s, PGresult *res)
{
	ExecStatusType st = PQresultStatus(res);

	switch (st) {
	case PGRES_COMMAND_OK:
	case PGRES_TUPLES_OK:
		if (s->op == OP_COPY && s->fl.copy_phase == 4 && s->fl.direct[s->fl.table])
			s->fl.inserted[s->fl.table] = atoll(PQcmdTuples(res));
		if (s->op == OP_MERGE && s->fl.merge_idx < s->fl.nmerge) {
			int t = s->fl.merge_table[s->fl.merge_idx++];
			if (t >= 0)
				s->fl.inserted[t] = atoll(PQcmdTuples(res));
		}
		break;
	case PGRES_COPY_IN:
		if (s->op == OP_COPY && s->fl.copy_phase == -1) {
			s->fl.copy_phase = s->p.text ? 1 : 0;
			flush_copy_send(s);
			return;
		}
		/* Not ours to feed: end it. */
		PQputCopyEnd(s->conn, "unexpected COPY");
		break;
	default:
		set_err(s, res);
		break;
	}
}

/* The current operation has ended (all its results read): the next step. */
static void
op_end(struct store *s)
{
	enum op op = s->op;

	s->op = OP_NONE;
	switch (op) {
	case OP_SETUP:
		if (s->op_failed) {
			conn_lost(s, s->err);
			return;
		}
		s->state = C_READY;
		s->warned_down = false;
		s->backoff_ms = s->p.reconnect_min_ms;
		if (s->ever_connected)
			log_notice("store: database connection restored after %llu ms",
			           (unsigned long long)(now_ms() - s->down_since_ms));
		else
			log_info("store: connected to the database (COPY %s)",
			         s->p.text ? "text" : "binary");
		s->ever_connected = true;
		notify_part_ready(s->p.notify, "database");
		store_gauges(s);
		break;
	case OP_MAINT:
		if (s->op_failed) {
			metric_inc(s->m_failures, "maintenance");
			log_warnx("store: partition maintenance failed: %s", s->err);
		}
		break;
	case OP_BEGIN:
	case OP_COPY:
		if (s->op_failed && op == OP_COPY && copy_restage(s))
			return;
		if (s->op_failed) {
			flush_fail(s);
			if (send_query(s, "ROLLBACK", OP_ROLLBACK) < 0)
				conn_lost(s, s->err);
			return;
		}
		flush_next_table(s);
		return;
	case OP_MERGE:
		if (s->op_failed) {
			flush_fail(s);
			if (send_query(s, "ROLLBACK", OP_ROLLBACK) < 0)
				conn_lost(s, s->err);
			return;
		}
		flush_done(s);
		break;
	case OP_ROLLBACK:
		if (s->op_failed) {
			conn_lost(s, s->err);
			return;
		}
		break;
	case OP_NONE:
		break;
	}
	op_next(s);
}

/* Idle: partition maintenance when due, a reconnect when asked, a flush. */
static void
op_next(struct store *s)
{
	if (s->state != C_READY || s->op != OP_NONE)
		return;
	if (s->reconnect_wanted) {
		s->reconnect_wanted = false;
		conn_close(s);
		s->backoff_ms = s->p.reconnect_min_ms;
		conn_start(s);
		return;
	}
	if (s->maint_due && s->p.partition_months >= 0) {
		char sql[96];

		s->maint_due = false;
		snprintf(sql, sizeof(sql), "SELECT ammd_ensure_partitions(now(), %d)",
		         s->p.partition_months);
		if (send_query(s, sql, OP_MAINT) < 0)
			conn_lost(s, s->err);
		return;
	}
	if (flush_due(s) && flush_take(s) == 0) {
		if (send_query(s, "BEGIN", OP_BEGIN) < 0)
			conn_lost(s, s->err);
		return;
	}
	/* Not due yet: wake up when the oldest batch has waited batch_ms. */
	struct store_batch *b = TAILQ_FIRST(&s->queue);
	if (b != NULL && !evtimer_pending(s->ev_timer, NULL)) {
		uint64_t age = now_ms() - b->queued_ms;
		uint64_t left = age >= (uint64_t)s->p.batch_ms ? 0 : (uint64_t)s->p.batch_ms - age;
		struct timeval tv = {(time_t)(left / 1000), (suseconds_t)(left % 1000) * 1000};
		evtimer_add(s->ev_timer, &tv);
	}
}

static void
on_read(evutil_socket_t fd, short what, void *arg)
{
	struct store *s = arg;
	PGresult *res;

	(void)fd;
	(void)what;
	if (!PQconsumeInput(s->conn)) {
		set_err(s, NULL);
		conn_lost(s, s->err);
		return;
	}
	/* Notifications (LISTEN is the publisher's) are not ours: drop them. */
	PGnotify *n;
	while ((n = PQnotifies(s->conn)) != NULL)
		PQfreemem(n);
	while (s->conn != NULL && s->op != OP_NONE && !PQisBusy(s->conn)) {
		if (s->op == OP_COPY && s->fl.copy_phase >= 0 && s->fl.copy_phase < 4)
			return; /* still sending; the server has nothing to say yet */
		if ((res = PQgetResult(s->conn)) == NULL) {
			op_end(s);
			continue;
		}
		op_result(s, res);
		PQclear(res);
	}
	if (s->conn != NULL && PQstatus(s->conn) == CONNECTION_BAD)
		conn_lost(s, "connection closed by the server");
}

static void
on_write(evutil_socket_t fd, short what, void *arg)
{
	struct store *s = arg;
	int r;

	(void)fd;
	(void)what;
	if (s->op == OP_COPY && s->fl.copy_phase >= 0 && s->fl.copy_phase < 4) {
		flush_copy_send(s);
		return;
	}
	if ((r = PQflush(s->conn)) < 0) {
		set_err(s, NULL);
		conn_lost(s, s->err);
	} else if (r == 1)
		event_add(s->ev_write, NULL);
}

static void conn_poll(struct store *s);

static void
on_conn(evutil_socket_t fd, short what, void *arg)
{
	struct store *s = arg;

	(void)fd;
	if (what & EV_TIMEOUT) {
		conn_lost(s, "connection attempt timed out");
		return;
	}
	conn_poll(s);
}

static void
conn_ready(struct store *s)
{
	char setup[4096];
	size_t k;

	if (PQsetnonblocking(s->conn, 1) != 0) {
		set_err(s, NULL);
		conn_lost(s, s->err);
		return;
	}
	s->ev_read = event_new(s->base, PQsocket(s->conn), EV_READ | EV_PERSIST, on_read, s);
	s->ev_write = event_new(s->base, PQsocket(s->conn), EV_WRITE, on_write, s);
	if (s->ev_read == NULL || s->ev_write == NULL) {
		conn_lost(s, "cannot create events");
		return;
	}
	event_add(s->ev_read, NULL);
	k = (size_t)snprintf(setup, sizeof(setup),
	                     "SET TimeZone = 'UTC'; SET client_min_messages = warning;");
	for (int t = 0; t < T_COUNT && k < sizeof(setup); t++)
		if (tables[t].create != NULL)
			k +=
			    (size_t)snprintf(setup + k, sizeof(setup) - k, "%s;", tables[t].create);
	s->state = C_CONNECTING; /* until the setup has run */
	if (send_query(s, setup, OP_SETUP) < 0)
		conn_lost(s, s->err);
}

static void
conn_poll(struct store *s)
{
	struct timeval tv = {CONNECT_TIMEOUT_S, 0};
	short ev;

	switch (PQconnectPoll(s->conn)) {
	case PGRES_POLLING_OK:
		event_del(s->ev_conn);
		conn_ready(s);
		return;
	case PGRES_POLLING_READING:
		ev = EV_READ;
		break;
	case PGRES_POLLING_WRITING:
		ev = EV_WRITE;
		break;
	default:
		set_err(s, NULL);
		conn_lost(s, s->err);
		return;
	}
	/* The socket may differ from one poll to the next. */
	event_del(s->ev_conn);
	event_assign(s->ev_conn, s->base, PQsocket(s->conn), ev, on_conn, s);
	event_add(s->ev_conn, &tv);
}

/* Server notices would go to stderr without a priority: log them. */
static void
on_notice(void *arg, const char *msg)
{
	char line[512];
	size_t n;

	(void)arg;
	snprintf(line, sizeof(line), "%s", msg);
	n = strlen(line);
	while (n > 0 && line[n - 1] == '\n')
		line[--n] = '\0';
	log_info("store: server says: %s", line);
}

static void
conn_start(struct store *s)
{
	const char *keys[] = {"application_name", "client_encoding", "dbname", NULL};
	const char *vals[] = {s->appname, "UTF8", s->conninfo, NULL};

	s->state = C_CONNECTING;
	s->op_failed = false;
	s->reconnect_wanted = false; /* this attempt uses the current conninfo */
	s->conn = PQconnectStartParams(keys, vals, 1);
	if (s->conn == NULL || PQstatus(s->conn) == CONNECTION_BAD) {
		if (s->conn != NULL)
			set_err(s, NULL);
		else
			snprintf(s->err, sizeof(s->err), "out of memory");
		conn_lost(s, s->err);
		return;
	}
	PQsetNoticeProcessor(s->conn, on_notice, s);
	conn_poll(s);
}

static void
on_retry(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	conn_start(arg);
}

static void
on_timer(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	store_kick(arg);
}

static void
on_kick(evutil_socket_t fd, short what, void *arg)
{
	struct store *s = arg;

	(void)fd;
	(void)what;
	run_finished(s);
	op_next(s);
}

static void
on_maint(evutil_socket_t fd, short what, void *arg)
{
	struct store *s = arg;

	(void)fd;
	(void)what;
	s->maint_due = true;
	op_next(s);
}

static void
store_kick(struct store *s)
{
	event_active(s->ev_kick, EV_TIMEOUT, 0);
}

/* ---- life ----------------------------------------------------------------------- */

static void
params_fix(struct store_params *p)
{
	if (p->batch_rows <= 0)
		p->batch_rows = 5000;
	if (p->batch_ms <= 0)
		p->batch_ms = 200;
	if (p->max_queue_rows == 0)
		p->max_queue_rows = 20 * (size_t)p->batch_rows;
	if (p->reconnect_min_ms <= 0)
		p->reconnect_min_ms = 200;
	if (p->reconnect_max_ms < p->reconnect_min_ms)
		p->reconnect_max_ms = p->reconnect_min_ms > 3000 ? p->reconnect_min_ms : 3000;
	if (p->partition_months == 0)
		p->partition_months = 3;
}

struct store *
store_new(struct event_base *base, const struct store_params *p, struct metrics *reg)
{
	static const double bounds[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
	struct store *s = calloc(1, sizeof(*s));
	struct timeval day = {MAINT_INTERVAL_S, 0};

	if (s == NULL)
		return NULL;
	s->base = base;
	s->p = *p;
	params_fix(&s->p);
	s->conninfo = strdup(db_conninfo(p->conninfo));
	s->appname = strdup(p->appname ? p->appname : "ammd");
	TAILQ_INIT(&s->queue);
	TAILQ_INIT(&s->finished);
	s->ev_conn = event_new(base, -1, 0, on_conn, s);
	s->ev_retry = evtimer_new(base, on_retry, s);
	s->ev_timer = evtimer_new(base, on_timer, s);
	s->ev_kick = event_new(base, -1, 0, on_kick, s);
	s->ev_maint = event_new(base, -1, EV_PERSIST, on_maint, s);
	if (s->conninfo == NULL || s->appname == NULL || s->ev_conn == NULL ||
	    s->ev_retry == NULL || s->ev_timer == NULL || s->ev_kick == NULL ||
	    s->ev_maint == NULL) {
		store_free(s);
		return NULL;
	}
	s->reg = reg;
	if (reg != NULL) {
		s->m_queue_batches =
		    metrics_gauge(reg, "ammd_store_queue_batches",
		                  "Batches submitted to the store and not yet committed.", NULL);
		s->m_queue_rows = metrics_gauge(reg, "ammd_store_queue_rows",
		                                "Rows waiting in the store's queue.", NULL);
		s->m_connected =
		    metrics_gauge(reg, "ammd_store_connected",
		                  "1 while the store's database connection is up.", NULL);
		s->m_flush_seconds = metrics_histogram(
		    reg, "ammd_store_flush_seconds", "Time from BEGIN to COMMIT of a store flush.",
		    NULL, bounds, sizeof(bounds) / sizeof(bounds[0]));
		s->m_rows =
		    metrics_counter(reg, "ammd_store_rows_written_total",
		                    "Rows inserted or updated by the store, by table.", "table");
		s->m_dups = metrics_counter(
		    reg, "ammd_store_rows_duplicate_total",
		    "Rows the store sent that were already stored, by table.", "table");
		s->m_batches =
		    metrics_counter(reg, "ammd_store_batches_total",
		                    "Batches completed by the store, by result.", "result");
		s->m_failures = metrics_counter(
		    reg, "ammd_store_failures_total",
		    "Store failures by kind (connect, connection, flush, maintenance).", "kind");
		metric_add(s->m_batches, 0, "ok");
		metric_add(s->m_batches, 0, "failed");
	}
	s->backoff_ms = s->p.reconnect_min_ms;
	s->down_since_ms = now_ms();
	s->maint_due = s->p.partition_months >= 0;
	event_add(s->ev_maint, &day);
	store_gauges(s);
	conn_start(s);
	return s;
}

void
store_reconfigure(struct store *s, const struct store_params *p)
{
	const char *ci = db_conninfo(p->conninfo);
	struct notify *n = s->p.notify;

	if (strcmp(ci, s->conninfo) != 0) {
		char *c = strdup(ci);
		if (c != NULL) {
			free(s->conninfo);
			s->conninfo = c;
			s->reconnect_wanted = true;
		}
	}
	bool text = s->p.text; /* batches already encoded keep the format */
	s->p = *p;
	s->p.text = text;
	s->p.notify = n;
	params_fix(&s->p);
	if (s->state == C_READY)
		store_kick(s);
}

void
store_free(struct store *s)
{
	struct store_batch *b;
	size_t n = 0, rows = 0;

	if (s == NULL)
		return;
	for (size_t i = 0; i < s->fl.n; i++) {
		n++;
		rows += s->fl.b[i]->rows;
		store_batch_free(s->fl.b[i]);
	}
	while ((b = TAILQ_FIRST(&s->queue)) != NULL) {
		TAILQ_REMOVE(&s->queue, b, entry);
		n++;
		rows += b->rows;
		store_batch_free(b);
	}
	while ((b = TAILQ_FIRST(&s->finished)) != NULL) {
		TAILQ_REMOVE(&s->finished, b, entry);
		store_batch_free(b);
	}
	if (n > 0)
		log_warnx("store: %zu batches (%zu rows) were not written; their read pointers did "
		          "not advance, so the meters will be read again",
		          n, rows);
	conn_close(s);
	free(s->fl.b);
	if (s->ev_conn)
		event_free(s->ev_conn);
	if (s->ev_retry)
		event_free(s->ev_retry);
	if (s->ev_timer)
		event_free(s->ev_timer);
	if (s->ev_kick)
		event_free(s->ev_kick);
	if (s->ev_maint)
		event_free(s->ev_maint);
	free(s->conninfo);
	free(s->appname);
	free(s);
}

bool
store_is_behind(const struct store *s)
{
	return s->queue_rows > s->p.max_queue_rows;
}

bool
store_is_connected(const struct store *s)
{
	return s->state == C_READY;
}

size_t
store_queue_batches(const struct store *s)
{
	return s->queue_batches;
}

size_t
store_queue_rows(const struct store *s)
{
	return s->queue_rows + (s->flushing ? s->fl.rows : 0);
}

void
store_drain(struct store *s)
{
	s->draining = true;
	store_kick(s);
}

bool
store_drained(const struct store *s)
{
	return s->queue_batches == 0 && TAILQ_EMPTY(&s->finished);
}

int
store_health(void *arg, char *detail, size_t len)
{
	struct store *s = arg;

	if (s->state != C_READY) {
		snprintf(detail, len, "database not connected for %llu s, %zu batches waiting",
		         (unsigned long long)((now_ms() - s->down_since_ms) / 1000),
		         s->queue_batches);
		return -1;
	}
	if (store_is_behind(s))
		snprintf(detail, len, "behind: %zu rows waiting", store_queue_rows(s));
	return 0;
}

/* ---- the daemon module ------------------------------------------------------------ */

static void
module_params(const struct ammd *d, const struct config *cfg, struct store_params *p)
{
	memset(p, 0, sizeof(*p));
	p->conninfo = cfg->database.dsn;
	p->appname = "ammd";
	p->batch_rows = cfg->database.batch_rows;
	p->batch_ms = cfg->database.batch_ms;
	p->notify = d->notify;
}

static int
store_migrate(const struct config *cfg)
{
	char err[DB_ERR_MAX], dirbuf[CONFIG_PATH_MAX];
	const char *dir;
	PGconn *c;
	int n;

	/* Synchronous: the loop is not turning yet and nothing can run without
	 * the schema. */
	if ((dir = db_sql_dir(NULL, dirbuf, sizeof(dirbuf), err, sizeof(err))) == NULL ||
	    (c = db_connect(cfg->database.dsn, "ammd-migrate", err, sizeof(err))) == NULL) {
		log_warnx("store: migrate_on_start: %s", err);
		return -1;
	}
	n = db_migrate(c, dir, NULL, NULL, err, sizeof(err));
	PQfinish(c);
	if (n < 0) {
		log_warnx("store: migrate_on_start: %s", err);
		return -1;
	}
	if (n > 0)
		log_notice("store: applied %d schema migrations from %s", n, dir);
	return 0;
}

static int
store_module_start(struct ammd *d)
{
	struct store_params p;

	if (d->cfg->database.migrate_on_start && store_migrate(d->cfg) < 0)
		return -1;
	module_params(d, d->cfg, &p);
	if (notify_part_expect(d->notify, "database") < 0)
		log_warnx("store: READY will not wait for the database");
	if ((d->store = store_new(d->base, &p, d->metrics)) == NULL) {
		log_warnx("store: out of memory");
		return -1;
	}
	if (d->http != NULL)
		http_health_add(d->http, "database", store_health, d->store);
	return 0;
}

static void
store_module_reload(struct ammd *d, const struct config *old, const struct config *cfg)
{
	struct store_params p;

	(void)old;
	module_params(d, cfg, &p);
	store_reconfigure(d->store, &p);
}

static void
store_module_drain(struct ammd *d)
{
	if (store_queue_batches(d->store) > 0)
		log_info("store: writing %zu waiting batches before exit",
		         store_queue_batches(d->store));
	store_drain(d->store);
}

static bool
store_module_drained(struct ammd *d)
{
	return store_drained(d->store);
}

static void
store_module_stop(struct ammd *d)
{
	if (d->http != NULL)
		http_health_remove(d->http, "database");
	store_free(d->store);
	d->store = NULL;
}

const struct ammd_module store_module = {
    .name = "store",
    .start = store_module_start,
    .reload = store_module_reload,
    .drain = store_module_drain,
    .drained = store_module_drained,
    .stop = store_module_stop,
};
