/*
 * publish.h: the MQTT publisher.  It drains the database outbox to the
 * broker, at least once: rows are read in id order over a libpq connection
 * of its own (LISTEN ammd_outbox, plus a periodic poll in case a
 * notification is missed), published with the row's QoS, and deleted only
 * once the broker has acknowledged them (PUBACK).  A broker outage or a
 * restart therefore delays messages but loses none; a row may be published
 * twice, never zero times.  Both libmosquitto and libpq run on the daemon's
 * event loop, non-blocking, with reconnects and backoff.
 *
 * Only one publisher drains a database at a time: it holds a session
 * advisory lock while it does, so several ammd instances sharing a database
 * do not publish each row several times.  The others poll for the lock.
 *
 * Inbound: when a command handler is registered, the publisher subscribes
 * to <prefix>/command/request/+ (each client's own request topic, whose
 * last level names the publisher when the broker's ACL lets every client
 * write only its own: see the README) and, unless [mqtt] shared_requests
 * is off, to the shared <prefix>/command/request, and hands every decoded
 * CommandRequest to the handler.
 */
#ifndef AMM_PUBLISH_H
#define AMM_PUBLISH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct config;
struct event_base;
struct metrics;
struct message_command_request;
struct publish;

/*
 * Creates the publisher (nothing connects yet).  The config is copied;
 * metrics may be NULL.  Returns NULL when memory or libmosquitto fail.
 */
struct publish *publish_new(struct event_base *base, const struct config *cfg,
                            struct metrics *metrics);

/* Connects to the database and the broker and starts draining.  0 or -1
 * (logged) when the password file cannot be read. */
int publish_start(struct publish *p);

/* Applies a new config: a changed [mqtt] or [database] section reconnects. */
void publish_reload(struct publish *p, const struct config *cfg);

/* Stops taking rows from the outbox; what is in flight still completes. */
void publish_drain(struct publish *p);
/* True once nothing is in flight or awaits deletion, or when the broker or
 * the database is away (the rows then wait in the outbox). */
bool publish_drained(const struct publish *p);

/* Disconnects cleanly and frees everything.  NULL is fine. */
void publish_free(struct publish *p);

/*
 * Tuning for tests and benchmarks: at most `window` rows published and not
 * yet deleted (1..20000, default 1000), `chunk` rows per read (default
 * 500), the fallback poll every `poll_ms` (default 2000).  0 keeps a value.
 */
void publish_tune(struct publish *p, size_t window, size_t chunk, int poll_ms);

/*
 * The handler for inbound command requests.  It runs inside the
 * publisher's network callback: req is valid only during the call, and the
 * handler must not free the publisher.  Registering one (re)subscribes; NULL unsubscribes.
 */
typedef void (*publish_command_fn)(const struct message_command_request *req, void *arg);
void publish_set_command_handler(struct publish *p, publish_command_fn fn, void *arg);

/*
 * Inside the handler: the client level of the topic the request came on
 * (<prefix>/command/request/<client>; one level without ':'), or NULL when
 * it came on the shared topic, which names nobody.  NULL outside a call.
 */
const char *publish_command_client(const struct publish *p);

struct publish_stats {
	uint64_t published;    /* PUBLISH packets handed to libmosquitto */
	uint64_t acknowledged; /* PUBACKs (or QoS 0 sends) */
	uint64_t deleted;      /* outbox rows deleted after acknowledgement */
	uint64_t commands;     /* command requests received */
	int64_t depth;         /* outbox rows at the last count, -1 unknown */
	size_t window;         /* rows published and not yet deleted */
	bool broker_up;
	bool db_up;
	bool draining_db; /* holds the outbox lock */
};
void publish_get_stats(const struct publish *p, struct publish_stats *s);

/* The module for ammd.c's table: starts when [mqtt] enabled is on. */
struct ammd_module;
extern const struct ammd_module publish_module;

#endif
