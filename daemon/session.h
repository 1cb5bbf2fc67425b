/*
 * session.h: one meter connection, from dialling to the committed batch.
 *
 * A session owns its bufferevent (from a transport, drivers/transport.h),
 * its timers, a dlms_client engine and that engine's buffers, and walks an
 * explicit state machine:
 *
 *	connect → link → associate → tasks → release → close → store → done
 *
 * Every transition is logged (debug) by session_enter_state() with the
 * meter's serial.  In `tasks` it carries every task that is due in one
 * association: the clock and the configured registers (GET with-list when
 * the meter's conformance allows it), discovery of the object list and the
 * load-profile layout when the meter has none stored, the load profile by
 * range from the read pointer (the first read backfills
 * profile_backfill_days) and the holes the scheduler found, the event logs
 * incrementally by range, billing values once a period has ended, and a
 * clock sync when the drift exceeds the threshold.
 *
 * Operator commands (command.h, cmd_kinds.h) come first and between tasks:
 * at every task boundary the session takes the jobs the command queue has
 * claimed for its meter and runs each one's step machine to the end
 * (checkpoints committed before going on), so a command for a meter whose
 * session is running waits at most for the request under way.  A session
 * that loses the meter gives its job back (command_release()).
 *
 * Everything read goes into one store batch together with the read
 * pointers, the session_log row, the meter state and the MQTT outbox rows;
 * the batch is submitted once the connection is closed, so a session that
 * dies midway commits what it had, with pointers that cover exactly that,
 * and the next session reads the rest.
 *
 * Ownership: the session copies the struct session_meter it is given.  The
 * done callback runs from the session's own deferred event once the batch
 * has been committed or refused; the session is then inert and the caller
 * frees it with session_free() later, never from inside done.
 */
#ifndef AMM_SESSION_H
#define AMM_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cosem_time.h"
#include "profile.h"

struct config;
struct event_base;
struct metrics;
struct store;
struct session;
struct transport_ops;

#define SESSION_MAX_GAPS 16
#define SESSION_NLOGS    5 /* event logs 0-0:99.98.{0,1,2,4,7}.255 */

/* E of the event log objects, in the order of the pointers below. */
extern const uint8_t session_log_e[SESSION_NLOGS];

/* What the scheduler knows of a meter when it starts a session. */
struct session_meter {
	int32_t id;
	char serial[40];
	char host[256];
	uint16_t port;
	bool hdlc;
	uint16_t client_addr, server_addr, logical_addr;
	int mechanism;  /* ACSE_MECH_NONE, _LLS, _HLS_GMAC */
	bool ciphering; /* hls-gmac meters: LN with ciphering */
	char password[64];
	bool have_keys;
	uint8_t ek[16], ak[16], server_title[8];
	/* Invocation counters we may use: [tx_first, tx_limit), reserved
	 * (persisted) by the scheduler before the session starts. */
	uint32_t tx_first, tx_limit;
	uint32_t rx_counter;
	bool rx_seen;
	uint32_t profile_period; /* s */
	int failures;            /* consecutive failed sessions so far */
	/* Read pointers (STORE_NULL: never read). */
	int64_t ptr_profile;
	int64_t ptr_events[SESSION_NLOGS];
	int64_t ptr_billing;
	/* Holes in the stored profile: intervals ending in (from, to) are missing. */
	struct {
		int64_t from, to;
	} gaps[SESSION_MAX_GAPS];
	size_t ngaps;
	/* Load-profile layout from discovery; n_lp_cols 0: discover first. */
	struct profile_column lp_cols[PROFILE_MAX_COLUMNS];
	size_t n_lp_cols;
	bool discover; /* operator asked for discovery again */
	/* A command-priority session (scheduler's executor): run the meter's
	 * claimed commands (command.h) and release, without collection. */
	bool commands_only;
};

enum session_state {
	SESSION_NEW = 0,
	SESSION_CONNECT,
	SESSION_LINK,
	SESSION_ASSOCIATE,
	SESSION_TASKS,
	SESSION_RELEASE,
	SESSION_CLOSE,
	SESSION_STORE,
	SESSION_DONE,
};

const char *session_state_name(int state);

/* The local time of the meters (unspecified deviations; clock sync). */
extern const struct cosem_tz session_tz;

typedef void (*session_done_fn)(struct session *s, void *arg);

/*
 * A session for meter m over transport tr; nothing happens until
 * session_start().  cfg must stay valid until session_set_config() names
 * its successor.  reg may be NULL.  Returns NULL when out of memory.
 */
struct session *session_new(struct event_base *base, const struct config *cfg, struct store *st,
                            struct metrics *reg, const struct transport_ops *tr,
                            const struct session_meter *m, const char *instance,
                            session_done_fn done, void *arg);

/* Start dialling.  The done callback fires exactly once, later. */
void session_start(struct session *s);

/* Ask a running session to end: release if associated, else close.
 * What it read so far is still stored. */
void session_abort(struct session *s, const char *why);

/* The daemon is stopping: end like session_abort(), and record the
 * session as "aborted" without counting a failure against the meter, so
 * that the next start reads it at once. */
void session_shutdown(struct session *s);
/* Ended by session_shutdown() before finishing its tasks. */
bool session_was_shut_down(const struct session *s);

/*
 * A DataNotification body (tagged A-XDR) the meter pushed before the
 * session (GPRS inbound, daemon/gprs_inbound.c); copied.  It is stored
 * with the session's registers only when the association with the
 * meter's own security comes up, its elements mapped through the push
 * setup's object list (0-0:25.9.0.255 attribute 2).  Before
 * session_start(); 0, or -1 (too large, one already, no memory).
 */
#define SESSION_PUSH_MAX 1024
int session_add_push(struct session *s, const uint8_t *body, size_t len);

/* After a reload: the config to use from now on. */
void session_set_config(struct session *s, const struct config *cfg);

/* Only from outside the session's callbacks (the scheduler reaps later). */
void session_free(struct session *s);

/* ---- results, valid once done has been called ------------------------- */

int32_t session_meter_id(const struct session *s);
const char *session_serial(const struct session *s);
int session_state(const struct session *s);
/* "ok", "partial", "timeout", "refused", "rejected", "auth", "protocol",
 * "aborted", "error". */
const char *session_outcome(const struct session *s);
/* Associated and every task done (outcome "ok"). */
bool session_ok(const struct session *s);
/* The meter answered at all (association up). */
bool session_reached(const struct session *s);
/* The batch was committed. */
bool session_committed(const struct session *s);
const char *session_error(const struct session *s);
uint64_t session_bytes_in(const struct session *s);
uint64_t session_bytes_out(const struct session *s);
double session_duration(const struct session *s); /* s */
/* Consecutive failed sessions including this one (0 after success). */
int session_failures(const struct session *s);
/* Rows the session put in its batch. */
size_t session_rows(const struct session *s);
/* Next tx invocation counter (to persist when it is beyond the window). */
uint32_t session_tx_counter(const struct session *s);
/* The meter's last invocation counter we accepted, when the session was
 * ciphered and accepted one: true and *ic set.  Persisted so a replayed
 * frame is refused in later sessions too. */
bool session_rx_counter(const struct session *s, uint32_t *ic);

/*
 * Discovery results (when the session discovered the meter): the
 * meter_object and meter_profile_layout rows as the text parameters of
 * discovery_save_sql() (discovery.h); NULL when nothing was discovered.
 */
const char *session_discovered_objects(const struct session *s);
const char *session_discovered_layout(const struct session *s);

#endif
