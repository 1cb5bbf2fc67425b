/*
 * notify.c: sd_notify for ammd (see notify.h).  The watchdog is fed from a
 * timer on the same event loop that does the work, never from a thread, so
 * a loop that blocks is a loop that gets restarted.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>
#include <systemd/sd-daemon.h>

#include "log.h"
#include "notify.h"

#define NOTIFY_MAX_PARTS 32

struct notify_part {
	char name[48];
	bool ready;
};

struct notify {
	struct event *watchdog;
	uint64_t watchdog_usec;
	struct notify_part parts[NOTIFY_MAX_PARTS];
	size_t nparts;
	bool started; /* notify_startup_done() was called */
	bool ready;   /* READY=1 went out */
};

static void
notify_send(const char *msg)
{
	int r = sd_notify(0, msg);
	if (r < 0)
		log_debug("sd_notify(%s): %s", msg, strerror(-r));
}

static void
notify_watchdog(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	notify_send("WATCHDOG=1");
}

struct notify *
notify_new(struct event_base *base)
{
	struct notify *n;
	uint64_t usec = 0;
	int r;

	if ((n = calloc(1, sizeof(*n))) == NULL)
		return NULL;
	/* unset_environment = 0: a restart of ammd by itself (there is none
	 * today) would still see the watchdog. */
	r = sd_watchdog_enabled(0, &usec);
	if (r > 0 && usec > 0) {
		struct timeval tv;
		uint64_t half = usec / 2;
		tv.tv_sec = (time_t)(half / 1000000);
		tv.tv_usec = (suseconds_t)(half % 1000000);
		if ((n->watchdog = event_new(base, -1, EV_PERSIST, notify_watchdog, n)) == NULL) {
			free(n);
			return NULL;
		}
		event_add(n->watchdog, &tv);
		n->watchdog_usec = usec;
		log_info("systemd watchdog every %llu ms, pinging every %llu ms",
		    (unsigned long long)(usec / 1000), (unsigned long long)(half / 1000));
		notify_send("WATCHDOG=1");
	} else if (r < 0)
		log_warnx("systemd watchdog settings unusable: %s", strerror(-r));
	return n;
}

void
notify_free(struct notify *n)
{
	if (n == NULL)
		return;
	if (n->watchdog != NULL)
		event_free(n->watchdog);
	free(n);
}

static void
notify_maybe_ready(struct notify *n)
{
	if (n->ready || !n->started)
		return;
	for (size_t i = 0; i < n->nparts; i++)
		if (!n->parts[i].ready)
			return;
	n->ready = true;
	notify_send("READY=1\nSTATUS=running");
	log_info("ready");
}

int
notify_part_expect(struct notify *n, const char *part)
{
	if (n == NULL)
		return -1;
	for (size_t i = 0; i < n->nparts; i++)
		if (strcmp(n->parts[i].name, part) == 0)
			return 0;
	if (n->nparts == NOTIFY_MAX_PARTS)
		return -1;
	snprintf(n->parts[n->nparts].name, sizeof(n->parts[0].name), "%s", part);
	n->parts[n->nparts].ready = false;
	n->nparts++;
	return 0;
}

void
notify_part_ready(struct notify *n, const char *part)
{
	if (n == NULL)
		return;
	for (size_t i = 0; i < n->nparts; i++)
		if (strcmp(n->parts[i].name, part) == 0 && !n->parts[i].ready) {
			n->parts[i].ready = true;
			log_debug("startup: %s is up", part);
		}
	notify_maybe_ready(n);
}

void
notify_startup_done(struct notify *n)
{
	if (n == NULL)
		return;
	n->started = true;
	notify_maybe_ready(n);
	if (!n->ready) {
		char waiting[512] = "";
		size_t len = 0;
		for (size_t i = 0; i < n->nparts && len < sizeof(waiting); i++)
			if (!n->parts[i].ready)
				len += (size_t)snprintf(waiting + len, sizeof(waiting) - len, "%s%s",
				    len > 0 ? ", " : "", n->parts[i].name);
		notify_status(n, "starting: waiting for %s", waiting);
	}
}

bool
notify_is_ready(const struct notify *n)
{
	return n != NULL && n->ready;
}

void
notify_status(struct notify *n, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	int len;

	(void)n;
	len = snprintf(msg, sizeof(msg), "STATUS=");
	va_start(ap, fmt);
	vsnprintf(msg + len, sizeof(msg) - (size_t)len, fmt, ap);
	va_end(ap);
	msg[strcspn(msg, "\n")] = '\0'; /* one line: a newline would start a new field */
	notify_send(msg);
}

void
notify_reloading(struct notify *n)
{
	(void)n;
	notify_send("RELOADING=1\nSTATUS=reloading configuration");
}

void
notify_reloaded(struct notify *n)
{
	if (n != NULL && n->ready)
		notify_send("READY=1\nSTATUS=running");
}

void
notify_stopping(struct notify *n)
{
	(void)n;
	notify_send("STOPPING=1\nSTATUS=draining");
}

uint64_t
notify_watchdog_usec(const struct notify *n)
{
	return n != NULL ? n->watchdog_usec : 0;
}
