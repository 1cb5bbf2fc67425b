/*
 * ammd.h: what the daemon's modules share.  main() in ammd.c owns one
 * struct ammd and walks a fixed table of modules (store, publisher,
 * scheduler, drivers, the HTTP endpoint) through their life:
 *
 *	start    in table order, once the config is loaded and the loop exists;
 *	         a module that needs time to come up (a database connection, a
 *	         listener) calls notify_part_expect() here and notify_part_ready()
 *	         later, and systemd hears READY=1 only when every part is ready.
 *	reload   on SIGHUP, in table order, with the running and the new config;
 *	         the new one is already checked and becomes d->cfg right after.
 *	         A module that cannot apply a change logs it and keeps going.
 *	drain    on SIGTERM, in reverse table order, one module at a time: stop
 *	         taking new work and finish what is under way.  drained() is
 *	         polled until it says so or shutdown_timeout runs out, then the
 *	         next module drains (sessions finish before the store flushes,
 *	         the store before the publisher).
 *	stop     once the loop has ended, in reverse order: free everything.
 *
 * Every callback may be NULL.  Modules never call back into ammd.c, so they
 * link into the unit tests without main.
 */
#ifndef AMM_AMMD_H
#define AMM_AMMD_H

#include <stdbool.h>

#ifndef AMMD_VERSION
#define AMMD_VERSION "0.1.0"
#endif

struct event_base;
struct config;
struct metrics;
struct http;
struct notify;
struct publish;
struct store;

struct ammd {
	struct event_base *base;
	struct config *cfg; /* the running config; replaced on reload */
	const char *config_path;
	struct metrics *metrics;
	struct http *http;
	struct notify *notify;
	struct store *store; /* store.c: set by store_module's start */
	struct publish *publish; /* publish.c: NULL unless [mqtt] enabled */
	bool debug;    /* -d: log level pinned to debug */
	bool draining; /* SIGTERM seen */
};

struct ammd_module {
	const char *name;
	/* 0, or -1 after logging why: the daemon then stops and exits 1. */
	int (*start)(struct ammd *d);
	void (*reload)(struct ammd *d, const struct config *old, const struct config *cfg);
	void (*drain)(struct ammd *d);
	bool (*drained)(struct ammd *d);
	void (*stop)(struct ammd *d);
};

/* Modules defined elsewhere, listed in ammd.c's table. */
extern const struct ammd_module http_module; /* http.c */
extern const struct ammd_module publish_module; /* publish.c */
extern const struct ammd_module store_module; /* store.c */

#endif
