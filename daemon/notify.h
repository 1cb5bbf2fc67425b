/*
 * notify.h: talking to systemd (sd_notify).  READY=1 is sent once main has
 * started every module *and* every part a module announced with
 * notify_part_expect() has reported notify_part_ready(), so that a unit
 * ordered After=ammd.service starts only when the database connection and
 * the listeners are really there.  While the service has a watchdog
 * (WatchdogSec=), a timer on the event loop sends WATCHDOG=1 at half the
 * interval: if the loop stops turning, systemd restarts the daemon.
 * Outside systemd every call is a harmless no-op.
 */
#ifndef AMM_NOTIFY_H
#define AMM_NOTIFY_H

#include <stdbool.h>
#include <stdint.h>

struct event_base;
struct notify;

/* Creates the watchdog timer when systemd asked for one. */
struct notify *notify_new(struct event_base *base);
void notify_free(struct notify *n);

/* A part (e.g. "database", "gprs-listener") READY must wait for.  The name
 * is copied.  Returns 0, or -1 when the table is full. */
int notify_part_expect(struct notify *n, const char *part);
/* That part is up.  Unknown names are ignored; repeats are harmless. */
void notify_part_ready(struct notify *n, const char *part);
/* main: every module has started; READY=1 goes out now or when the last
 * expected part is ready. */
void notify_startup_done(struct notify *n);
bool notify_is_ready(const struct notify *n);

/* STATUS=... (one line, shown by systemctl status). */
void notify_status(struct notify *n, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* RELOADING=1 at the start of a reload, READY=1 at its end. */
void notify_reloading(struct notify *n);
void notify_reloaded(struct notify *n);
void notify_stopping(struct notify *n);

/* The watchdog interval systemd gave us in microseconds, 0 if none. */
uint64_t notify_watchdog_usec(const struct notify *n);

#endif
