/*
 * metrics.h: a small registry of counters, gauges and histograms with
 * labels, rendered in the Prometheus text exposition format (version 0.0.4)
 * for GET /metrics.  Modules register their families once at start and then
 * update series by label values; a series springs into existence on first
 * use.  Single-threaded: everything runs on the event loop.
 *
 * Label values are passed as a variadic list of const char *, exactly as
 * many as the family has label names, e.g.
 *
 *	struct metric *m = metrics_counter(reg, "ammd_sessions_total",
 *	    "Meter sessions by outcome.", "transport,outcome");
 *	metric_inc(m, "tcpip", "ok");
 *
 * Every update function accepts a NULL family and does nothing, so a module
 * need not check the result of registration at each use.
 */
#ifndef AMM_METRICS_H
#define AMM_METRICS_H

#include <stddef.h>
#include <stdio.h>

struct metrics;
struct metric;

struct metrics *metrics_new(void);
void metrics_free(struct metrics *reg);

/*
 * Register a family.  name must match [a-zA-Z_:][a-zA-Z0-9_:]*, labels is a
 * comma-separated list of label names ([a-zA-Z_][a-zA-Z0-9_]*, not "le",
 * not starting with "__") or NULL for none.  Registering the same name again
 * with the same kind and labels returns the existing family (so a module may
 * register again after a reload); anything else invalid returns NULL.
 * Histogram bounds must be strictly increasing and finite; +Inf is implied.
 * The strings are copied.
 */
struct metric *metrics_counter(struct metrics *reg, const char *name, const char *help,
    const char *labels);
struct metric *metrics_gauge(struct metrics *reg, const char *name, const char *help,
    const char *labels);
struct metric *metrics_histogram(struct metrics *reg, const char *name, const char *help,
    const char *labels, const double *bounds, size_t nbounds);

/* Counters: add only non-negative amounts (negative ones are ignored). */
void metric_inc(struct metric *m, ...);
void metric_add(struct metric *m, double v, ...);
/* Gauges; metric_set also serves counters that a collector copies from a
 * monotonic source kept elsewhere (the kernel's CPU time, say). */
void metric_set(struct metric *m, double v, ...);
void metric_gauge_add(struct metric *m, double v, ...);
/* Histograms. */
void metric_observe(struct metric *m, double v, ...);

/* Current value of a counter or gauge series (0 if it does not exist);
 * for histograms the observation count.  For tests and health checks. */
double metric_value(struct metric *m, ...);

/*
 * A collector runs just before each rendering, to refresh gauges whose
 * values are cheaper to read than to track (queue depths, process figures).
 */
void metrics_collector_add(struct metrics *reg, void (*fn)(struct metrics *reg, void *arg),
    void *arg);

/* Write every family, in registration order.  Returns 0, or -1 if the
 * stream reported an error. */
int metrics_render(struct metrics *reg, FILE *f);

/* Register process_* families (CPU seconds, resident memory, open fds,
 * start time, limits) with a collector that reads them from /proc. */
void metrics_process_register(struct metrics *reg);

#endif
