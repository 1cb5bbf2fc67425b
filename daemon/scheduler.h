/*
 * scheduler.h: who is read when (issue 5, "Scheduling and sessions").
 *
 * The scheduler leases due meters from PostgreSQL in batches with
 * ammd_claim_meters() (several ammd instances share one fleet; a lease
 * that is not renewed runs out and another instance takes the meters
 * over), starts one session per meter under a global concurrency limit,
 * and after each session's batch is committed sets the meter's next due
 * time and gives its lease back:
 *
 *   success      the next collection window ([collection] window_start,
 *                window_length) plus a per-meter jitter, so a fleet is
 *                spread evenly over the window and the same meter keeps
 *                its place in it from day to day;
 *   failure      retry_base_s doubled per consecutive failure, capped at
 *                retry_max_s; after SCHEDULER_UNREACHABLE_AFTER failures
 *                in a row the meter is unreachable and retried every
 *                unreachable_retry_s.
 *
 * Priorities: commands > on-demand (ammctl meter discover, NOTIFY
 * ammd_ondemand) > schedule.  The command queue's hook is
 * scheduler_command_hook below, empty until the command executor exists.
 *
 * Backpressure: while store_is_behind() nothing new starts and nothing is
 * claimed.  The store is the store module's (d->store); the scheduler
 * starts after it and drains before it, so the last session's batch is
 * committed before the store flushes and stops.
 *
 * Its own database connection (leases, due times, discovery rows) runs in
 * non-blocking mode on the event loop, one statement at a time.
 */
#ifndef AMM_SCHEDULER_H
#define AMM_SCHEDULER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ammd;
struct config;
struct scheduler;
struct store;

#define SCHEDULER_UNREACHABLE_AFTER 5
/* Invocation counters reserved (persisted) per ciphered session. */
#define SCHEDULER_IC_WINDOW 4096

extern const struct ammd_module scheduler_module;

/* The running scheduler (NULL before start and after stop). */
struct scheduler *scheduler_get(void);

/* Sessions running, meters waiting (leased, not started), by priority. */
size_t scheduler_active(const struct scheduler *sc);
size_t scheduler_waiting(const struct scheduler *sc, int prio);

enum scheduler_prio {
	SCHED_PRIO_COMMAND = 0,
	SCHED_PRIO_ONDEMAND,
	SCHED_PRIO_SCHEDULE,
	SCHED_NPRIO
};

/*
 * The command queue's hook: called whenever a session slot is free,
 * before on-demand and scheduled meters; returns true when it started
 * something in that slot.  NULL (today): no commands.
 */
extern bool (*scheduler_command_hook)(struct scheduler *sc);

/*
 * Gateway meters (transport mbus or modbus; issue 6).  The claim hands
 * each leased gateway meter to this hook (daemon/mbus_collect.c) instead
 * of starting a DLMS session; the hook reads it on its gateway's own queue
 * (gateway meters take no session slot: a bus has its own limit of one
 * transaction at a time) and calls scheduler_gateway_done() once the
 * meter's batch is committed or refused.  Returns false when it did not
 * take the meter (it stays leased until the lease runs out).  NULL: such
 * meters are skipped with a warning.
 */
struct scheduler_gateway_meter {
	int32_t id;
	const char *serial, *type, *transport; /* valid during the call */
	int failures;
	bool ondemand;
	int32_t gateway_id;
	const char *gw_kind, *gw_host, *gw_name;
	uint16_t gw_port;
	int gw_baud; /* 0: not set */
	int gw_concurrency;         /* gateway.concurrency, 1..64 */
	int primary_addr;           /* -1: not set */
	const char *secondary_addr; /* NULL: not set */
};
extern bool (*scheduler_gateway_hook)(struct scheduler *sc,
                                      const struct scheduler_gateway_meter *m);

/* A gateway meter's read is over: its next due time follows the same rules
 * as a session's (next window on success, backoff after failures). */
void scheduler_gateway_done(struct scheduler *sc, int32_t meter, bool committed, bool ok,
                            int failures);

/*
 * GPRS meters that connect in (daemon/gprs_inbound.c).  The listener has
 * read the meter's claimed identity; scheduler_lease_serial() leases that
 * meter now when it is enabled, transport gprs, due and not leased, and
 * loads it as a claim does (invocation counters reserved).  cb gets the
 * meter (valid during the call) or NULL and why ("unknown", "not due",
 * "busy", "disabled", ...).  scheduler_start_session() then runs the
 * session over the meter's own connection as one of the scheduler's (slot,
 * done, due time, drain), with the body of a push the meter sent first
 * (NULL: none; session_add_push()); false when it could not be set up.
 */
struct session_meter;
struct transport_ops;
typedef void (*scheduler_lease_fn)(struct scheduler *sc, const struct session_meter *m,
                                   const char *why, void *arg);
void scheduler_lease_serial(struct scheduler *sc, const char *serial, scheduler_lease_fn cb,
                            void *arg);
/* A GPRS meter held idle pushed (an alarm): make it due now, so that its
 * next connection reads it with its own security. */
void scheduler_due_now(struct scheduler *sc, const char *serial);
bool scheduler_start_session(struct scheduler *sc, const struct session_meter *m,
                             const struct transport_ops *tr, const uint8_t *push,
                             size_t push_len);

/* ---- pure helpers (unit-tested) ----------------------------------------- */

/* Per-meter jitter in [0, span): the same meter always lands on the same
 * offset, neighbouring ids far apart. */
int64_t scheduler_jitter(int32_t meter, int64_t span);

/* Delay before the next attempt after `failures` consecutive failures
 * (>= 1): base × 2^(failures-1), capped; unreachable_s once failures
 * reaches SCHEDULER_UNREACHABLE_AFTER. */
int64_t scheduler_backoff(int failures, int base_s, int max_s, int unreachable_s);

/* When the collection window opens on local day `days` (days since
 * 1970-01-01 in session_tz): window_start_min after local midnight, or an
 * hour earlier when that falls into the spring-forward gap. */
int64_t scheduler_window_open(int64_t days, int window_start_min);

/* The next collection slot after `now` for a meter: the start of the
 * window (minutes after local midnight, session_tz) of the first day whose
 * window slot lies after now + min_gap_s, plus the meter's jitter. */
int64_t scheduler_next_slot(int64_t now, int32_t meter, int window_start_min, int window_len_s,
                            int64_t min_gap_s);

/* Parse the claim query's pointer text "what=epoch,..." and gaps text
 * "from-to,..." into a session_meter; 0 or -1. */
struct session_meter;
int scheduler_parse_pointers(const char *text, struct session_meter *m);
int scheduler_parse_gaps(const char *text, struct session_meter *m);

#endif
