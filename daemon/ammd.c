/*
 * ammd.c: the daemon's main: flags, configuration, the one event_base,
 * signals, and the life of the modules listed in modules[] (see ammd.h for
 * the order of start, reload, drain and stop).  Everything the daemon does
 * lives in a module; main only sequences them, so adding the store or a
 * driver is one line in the table below, not new code here.
 *
 * Signals: SIGHUP reloads the configuration (a broken file is logged and
 * the running configuration kept); SIGTERM or SIGINT drains, within
 * [daemon] shutdown_timeout, and exits 0; a second one exits at once (3).
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "ammd.h"
#include "config.h"
#include "http.h"
#include "log.h"
#include "metrics.h"
#include "notify.h"
#include "scheduler.h"
#include "command.h"
#include "mbus_collect.h"

extern const struct ammd_module gprs_module; /* gprs_inbound.c */

/* Start order; reload follows it, drain and stop run backwards. */
static const struct ammd_module *const modules[] = {
	&http_module,
	&store_module,
	&publish_module,
	&scheduler_module,
	&command_module,
	&gateway_module, /* mbus_collect.c: M-Bus and Modbus gateway meters */
	&gprs_module,    /* gprs_inbound.c: GPRS meters that connect in */
	/* store, publisher, scheduler and drivers are added here */
};

#define NMODULES (sizeof(modules) / sizeof(modules[0]))

enum ammd_exit {
	AMMD_EXIT_OK = 0,     /* clean stop, including a drain that timed out */
	AMMD_EXIT_CONFIG = 1, /* bad configuration or failed start */
	AMMD_EXIT_USAGE = 2,
	AMMD_EXIT_FORCED = 3, /* second SIGTERM/SIGINT during the drain */
};

#define DRAIN_POLL_MS 100

struct main_state {
	struct ammd d;
	struct event *ev_hup;
	struct event *ev_term;
	struct event *ev_int;
	struct event *drain_poll;
	struct event *drain_deadline;
	size_t drain_idx; /* modules[drain_idx] is the one draining */
	size_t nstarted;
	struct metric *m_reloads;
	struct metric *m_draining;
};

static void
usage(void)
{
	fprintf(stderr, "usage: ammd [-dnV] [-f file]\n");
	exit(AMMD_EXIT_USAGE);
}

static void
diag_to_stderr(const char *line, void *arg)
{
	(void)arg;
	fprintf(stderr, "%s\n", line);
}

static void
diag_to_log(const char *line, void *arg)
{
	logit(*(int *)arg, "%s", line);
}

/* ---- reload ------------------------------------------------------------- */

static void
ammd_reload(struct main_state *st)
{
	struct ammd *d = &st->d;
	struct config_diag *diag;
	struct config *cfg, *old;
	int pri = LOG_ERR;

	if (d->draining) {
		log_info("reload ignored: draining");
		return;
	}
	log_info("reloading configuration from %s", d->config_path);
	notify_reloading(d->notify);
	/* The diagnostics are large; keep them off the stack of a callback. */
	if ((diag = malloc(sizeof(*diag))) == NULL) {
		log_warn("reload");
		notify_reloaded(d->notify);
		return;
	}
	if ((cfg = config_load(d->config_path, diag)) == NULL) {
		config_diag_print(diag, diag_to_log, &pri);
		log_warnx("reload failed: keeping the running configuration");
		metric_inc(st->m_reloads, "failed");
		free(diag);
		notify_reloaded(d->notify);
		return;
	}
	free(diag);
	old = d->cfg;
	for (size_t i = 0; i < st->nstarted; i++)
		if (modules[i]->reload != NULL)
			modules[i]->reload(d, old, cfg);
	d->cfg = cfg;
	config_free(old);
	if (!d->debug)
		log_setlevel(cfg->daemon.log_level);
	metric_inc(st->m_reloads, "ok");
	log_info("configuration reloaded");
	notify_reloaded(d->notify);
}

/* ---- drain -------------------------------------------------------------- */

static void
drain_next(struct main_state *st)
{
	struct ammd *d = &st->d;

	while (st->drain_idx > 0) {
		const struct ammd_module *m = modules[st->drain_idx - 1];
		if (m->drained != NULL && !m->drained(d)) {
			struct timeval tv = {0, DRAIN_POLL_MS * 1000};
			log_debug("drain: waiting for %s", m->name);
			event_add(st->drain_poll, &tv);
			return;
		}
		log_debug("drain: %s done", m->name);
		st->drain_idx--;
		if (st->drain_idx > 0 && modules[st->drain_idx - 1]->drain != NULL)
			modules[st->drain_idx - 1]->drain(d);
	}
	log_info("drained; stopping");
	event_base_loopexit(d->base, NULL);
}

static void
drain_poll_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	drain_next(arg);
}

static void
drain_deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	struct main_state *st = arg;

	(void)fd;
	(void)what;
	log_warnx("shutdown_timeout of %d s reached while %s was still draining; stopping anyway",
	    st->d.cfg->daemon.shutdown_timeout,
	    st->drain_idx > 0 ? modules[st->drain_idx - 1]->name : "nothing");
	event_base_loopexit(st->d.base, NULL);
}

static void
ammd_drain(struct main_state *st, const char *why)
{
	struct ammd *d = &st->d;
	struct timeval tv = {d->cfg->daemon.shutdown_timeout, 0};

	if (d->draining) {
		log_warnx("%s again: exiting now without finishing the drain", why);
		exit(AMMD_EXIT_FORCED);
	}
	d->draining = true;
	metric_set(st->m_draining, 1);
	log_notice("%s: draining (at most %d s)", why, d->cfg->daemon.shutdown_timeout);
	notify_stopping(d->notify);
	event_add(st->drain_deadline, &tv);
	st->drain_idx = st->nstarted;
	if (st->drain_idx > 0 && modules[st->drain_idx - 1]->drain != NULL)
		modules[st->drain_idx - 1]->drain(d);
	drain_next(st);
}

static void
signal_cb(evutil_socket_t sig, short what, void *arg)
{
	struct main_state *st = arg;

	(void)what;
	switch (sig) {
	case SIGHUP:
		ammd_reload(st);
		break;
	case SIGTERM:
		ammd_drain(st, "SIGTERM");
		break;
	case SIGINT:
		ammd_drain(st, "SIGINT");
		break;
	}
}

/* ---- start and stop -------------------------------------------------- */

static void
stop_modules(struct main_state *st)
{
	while (st->nstarted > 0) {
		const struct ammd_module *m = modules[--st->nstarted];
		if (m->stop != NULL)
			m->stop(&st->d);
	}
}

static int
start_modules(struct main_state *st)
{
	for (size_t i = 0; i < NMODULES; i++) {
		log_debug("starting %s", modules[i]->name);
		if (modules[i]->start != NULL && modules[i]->start(&st->d) != 0) {
			log_warnx("%s failed to start", modules[i]->name);
			return -1;
		}
		st->nstarted = i + 1;
	}
	return 0;
}

static int
check_config(const char *path)
{
	struct config_diag *diag = malloc(sizeof(*diag));
	struct config *cfg;

	if (diag == NULL) {
		perror("ammd");
		return AMMD_EXIT_CONFIG;
	}
	if ((cfg = config_load(path, diag)) == NULL) {
		config_diag_print(diag, diag_to_stderr, NULL);
		free(diag);
		return AMMD_EXIT_CONFIG;
	}
	printf("%s: configuration OK\n", path);
	config_free(cfg);
	free(diag);
	return AMMD_EXIT_OK;
}

/* Under systemd (or when asked with -d) we stay in the foreground and log
 * to stderr; started by hand without -d we become a classic daemon. */
static bool
under_systemd(void)
{
	return getenv("NOTIFY_SOCKET") != NULL || getenv("JOURNAL_STREAM") != NULL ||
	    getenv("INVOCATION_ID") != NULL;
}

int
main(int argc, char **argv)
{
	static struct main_state st;
	struct ammd *d = &st.d;
	struct config_diag *diag;
	const char *path = CONFIG_DEFAULT_PATH;
	char *abspath = NULL;
	bool checkonly = false, detach;
	int ch, pri = LOG_ERR;

	while ((ch = getopt(argc, argv, "df:nV")) != -1) {
		switch (ch) {
		case 'd':
			d->debug = true;
			break;
		case 'f':
			path = optarg;
			break;
		case 'n':
			checkonly = true;
			break;
		case 'V':
			printf("ammd %s\n", AMMD_VERSION);
			return AMMD_EXIT_OK;
		default:
			usage();
		}
	}
	if (optind != argc)
		usage();
	if (checkonly)
		return check_config(path);

	detach = !d->debug && !under_systemd();
	log_init(detach, d->debug ? LOG_DEBUG : LOG_INFO);
	/* daemon() moves to "/": a reload must still find a relative path. */
	if (detach && (abspath = realpath(path, NULL)) != NULL)
		path = abspath;
	d->config_path = path;

	if ((diag = malloc(sizeof(*diag))) == NULL)
		fatal("malloc");
	if ((d->cfg = config_load(path, diag)) == NULL) {
		config_diag_print(diag, diag_to_log, &pri);
		log_warnx("not starting: the configuration has errors");
		free(diag);
		return AMMD_EXIT_CONFIG;
	}
	free(diag);
	if (!d->debug)
		log_setlevel(d->cfg->daemon.log_level);
	if (detach && daemon(0, 0) != 0)
		fatal("daemon");
	signal(SIGPIPE, SIG_IGN);

	if ((d->base = event_base_new()) == NULL)
		fatalx("event_base_new failed");
	if ((d->metrics = metrics_new()) == NULL)
		fatal("metrics_new");
	metrics_process_register(d->metrics);
	metric_set(metrics_gauge(d->metrics, "ammd_build_info", "ammd version, always 1.",
	    "version"), 1, AMMD_VERSION);
	st.m_reloads = metrics_counter(d->metrics, "ammd_config_reloads_total",
	    "Configuration reloads (SIGHUP) by result.", "result");
	metric_add(st.m_reloads, 0, "ok");
	metric_add(st.m_reloads, 0, "failed");
	st.m_draining = metrics_gauge(d->metrics, "ammd_draining",
	    "1 while the daemon drains before exiting.", NULL);
	if ((d->notify = notify_new(d->base)) == NULL)
		fatal("notify_new");
	if ((d->http = http_new(d)) == NULL)
		fatalx("cannot set up the HTTP endpoint");

	st.ev_hup = evsignal_new(d->base, SIGHUP, signal_cb, &st);
	st.ev_term = evsignal_new(d->base, SIGTERM, signal_cb, &st);
	st.ev_int = evsignal_new(d->base, SIGINT, signal_cb, &st);
	st.drain_poll = evtimer_new(d->base, drain_poll_cb, &st);
	st.drain_deadline = evtimer_new(d->base, drain_deadline_cb, &st);
	if (st.ev_hup == NULL || st.ev_term == NULL || st.ev_int == NULL ||
	    st.drain_poll == NULL || st.drain_deadline == NULL)
		fatalx("cannot create the signal and timer events");
	evsignal_add(st.ev_hup, NULL);
	evsignal_add(st.ev_term, NULL);
	evsignal_add(st.ev_int, NULL);

	log_info("ammd %s starting (instance %s, config %s, libevent %s with %s)", AMMD_VERSION,
	    d->cfg->daemon.instance_id, path, event_get_version(), event_base_get_method(d->base));
	if (start_modules(&st) != 0) {
		stop_modules(&st);
		return AMMD_EXIT_CONFIG;
	}
	notify_startup_done(d->notify);

	if (event_base_dispatch(d->base) < 0)
		log_warnx("event loop failed");

	stop_modules(&st);
	event_free(st.ev_hup);
	event_free(st.ev_term);
	event_free(st.ev_int);
	event_free(st.drain_poll);
	event_free(st.drain_deadline);
	http_free(d->http);
	notify_free(d->notify);
	metrics_free(d->metrics);
	config_free(d->cfg);
	event_base_free(d->base);
	log_info("exiting");
	free(abspath);
	return AMMD_EXIT_OK;
}
