/*
 * store.h: the daemon's writer into PostgreSQL (DESIGN §2, §5).  Sessions
 * collect what they read into a struct store_batch and submit it; the store
 * merges the batches of many sessions and writes them in one transaction
 * per flush: COPY into per-connection TEMP staging tables, INSERT ... SELECT
 * ... ON CONFLICT DO NOTHING into the fact tables (a second write of the
 * same reading is a no-op), read pointers advanced with GREATEST (never
 * backwards), meter state, session log and MQTT outbox rows, NOTIFY
 * ammd_outbox, COMMIT.  A batch's callback fires once, after that COMMIT,
 * or with an error when its rows could not be written; in that case nothing
 * of it was stored, its read pointers did not move, and the next session
 * simply reads the meter again from the old pointer.
 *
 * libpq runs in non-blocking mode on the caller's event_base; the store
 * never blocks the loop.  When the database is away it reconnects with
 * exponential backoff while batches wait in memory; past a bound
 * store_is_behind() tells the scheduler to start no new sessions.
 *
 * Times are seconds since the Unix epoch, UTC.  Decimal values are exact:
 * mantissa × 10^exp (a register's raw value and its scaler).  STORE_NULL
 * stands for SQL NULL in optional integer and time arguments.
 */
#ifndef AMM_STORE_H
#define AMM_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct metrics;
struct notify;
struct store;
struct store_batch;

#define STORE_NULL INT64_MIN

struct store_params {
	const char *conninfo;  /* libpq conninfo (copied); "" for libpq's defaults */
	const char *appname;   /* application_name; "ammd" when NULL */
	int batch_rows;        /* flush once this many rows wait ... */
	int batch_ms;          /* ... or the oldest batch waited this long */
	size_t max_queue_rows; /* store_is_behind() above this; 0: 20 × batch_rows */
	bool text;             /* COPY text instead of binary (for comparison) */
	int reconnect_min_ms;  /* backoff after a failed connection; 0: 200 */
	int reconnect_max_ms;  /* its cap; 0: 3000 */
	int partition_months;  /* partitions kept ahead; 0: 3; -1: no maintenance */
	struct notify *notify; /* "database" part made ready on first connection */
};

/* Returns a store that starts connecting at once, or NULL (out of memory).
 * reg may be NULL (no metrics).  The base must outlive the store. */
struct store *store_new(struct event_base *base, const struct store_params *p, struct metrics *reg);

/*
 * Closes the connection and frees everything.  Batches still waiting are
 * dropped without their callbacks (the daemon stops them last, when no
 * session is left to hear); their count is logged.  Not from a callback.
 */
void store_free(struct store *s);

/* New flush thresholds and bound; a changed conninfo reconnects once the
 * flush under way has ended. */
void store_reconfigure(struct store *s, const struct store_params *p);

/* ---- batches ----------------------------------------------------------- */

/*
 * status 0: the batch's rows are committed; -1: nothing of it was written,
 * err says why.  err is valid only during the call.  The callback may
 * submit new batches but must not free the store.
 */
typedef void (*store_done_fn)(int status, const char *err, void *arg);

enum store_reach { STORE_REACH_KEEP, STORE_REACH_REACHABLE, STORE_REACH_UNREACHABLE };

struct store_session {
	int32_t meter;
	const char *instance;  /* NULL allowed */
	const char *transport; /* NULL allowed */
	int64_t started_at;
	int64_t finished_at; /* STORE_NULL allowed */
	const char *outcome; /* "ok", "timeout", ... */
	int64_t bytes_in, bytes_out;
	int32_t duration_ms; /* < 0: NULL */
	const char *error;   /* NULL allowed */
};

/* An empty batch for s (the COPY format is the store's).  NULL: no memory. */
struct store_batch *store_batch_new(struct store *s);
/* Only for a batch never submitted. */
void store_batch_free(struct store_batch *b);
/* Rows added so far. */
size_t store_batch_rows(const struct store_batch *b);

/*
 * The add functions return 0, or -1 when the row cannot be kept (out of
 * memory, a value out of range, a missing required string); the batch is
 * then spoilt and its submission reports the failure.  Strings are copied.
 * Rows of one meter in time order load fastest (DESIGN §9).
 */
int store_add_register(struct store_batch *b, int32_t meter, const char *obis, int64_t captured_at,
                       int64_t value, int scaler, int unit, int64_t read_at);
/* v[0..3]: A+, A-, R+, R- (STORE_NULL each allowed) × 10^scaler; status
 * STORE_NULL allowed. */
int store_add_interval(struct store_batch *b, int32_t meter, int64_t ts, const int64_t v[4],
                       int scaler, int64_t status);
/* data: JSON text or NULL. */
int store_add_event(struct store_batch *b, int32_t meter, int log, int64_t ts, int32_t code,
                    const char *data, int64_t read_at);
/* captured_at STORE_NULL allowed. */
int store_add_billing(struct store_batch *b, int32_t meter, int64_t period_end, const char *obis,
                      int64_t value, int scaler, int unit, int64_t captured_at, int64_t read_at);
int store_add_session(struct store_batch *b, const struct store_session *ss);
/* Moves meter's pointer `what` ("profile", "events:0", "billing" ...) to
 * at least last_ts / last_entry (either STORE_NULL). */
int store_add_pointer(struct store_batch *b, int32_t meter, const char *what, int64_t last_ts,
                      int64_t last_entry);
/* last_contact_at (STORE_NULL: keep) never goes back; last_error NULL
 * clears it; failures < 0 keeps the counter.  The last update submitted for
 * a meter wins. */
int store_add_meter_state(struct store_batch *b, int32_t meter, int64_t last_contact_at,
                          enum store_reach reach, const char *last_error, int failures);
/* An MQTT message for the publisher, committed with the data. */
int store_add_outbox(struct store_batch *b, const char *topic, const void *payload, size_t len,
                     int qos, bool retain);

/*
 * Hands the batch over (the store frees it).  done fires exactly once, never
 * from inside store_submit.  An empty batch completes at once.
 */
void store_submit(struct store *s, struct store_batch *b, store_done_fn done, void *arg);

/* ---- state --------------------------------------------------------------- */

/* More rows wait than the bound allows: start no new sessions. */
bool store_is_behind(const struct store *s);
bool store_is_connected(const struct store *s);
/* Batches submitted and not yet completed, and their rows. */
size_t store_queue_batches(const struct store *s);
size_t store_queue_rows(const struct store *s);

/* Flush everything waiting now, whatever the thresholds, and keep doing so. */
void store_drain(struct store *s);
/* Nothing waits and nothing is being written. */
bool store_drained(const struct store *s);

/* For GET /healthz (http_health_fn): connected to the database. */
int store_health(void *arg, char *detail, size_t len);

#endif
