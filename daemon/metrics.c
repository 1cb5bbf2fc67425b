/*
 * metrics.c: the metrics registry and its Prometheus text rendering (see
 * metrics.h).  Families and series are kept in registration order in plain
 * linked lists: a head-end has tens of families and a handful of label
 * values each, and the order makes the output stable for people and tests.
 */
#include <ctype.h>
#include <dirent.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "metrics.h"

#define METRIC_MAX_LABELS 8
#define METRIC_MAX_COLLECTORS 32

enum metric_kind { METRIC_COUNTER, METRIC_GAUGE, METRIC_HISTOGRAM };

struct series {
	struct series *next;
	char **values; /* nlabels strings */
	double value;  /* counter, gauge; histogram sum */
	uint64_t count;
	uint64_t *buckets; /* per bound, not cumulative; +Inf is count */
};

struct metric {
	struct metric *next;
	enum metric_kind kind;
	char *name;
	char *help;
	size_t nlabels;
	char **labels;
	double *bounds;
	size_t nbounds;
	struct series *series;
	struct series **series_tail;
};

struct collector {
	void (*fn)(struct metrics *, void *);
	void *arg;
};

struct metrics {
	struct metric *head;
	struct metric **tail;
	struct collector collectors[METRIC_MAX_COLLECTORS];
	size_t ncollectors;
};

struct metrics *
metrics_new(void)
{
	struct metrics *reg = calloc(1, sizeof(*reg));
	if (reg == NULL)
		return NULL;
	reg->tail = &reg->head;
	return reg;
}

static void
strv_free(char **v, size_t n)
{
	if (v == NULL)
		return;
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

static void
metric_free(struct metric *m)
{
	struct series *s, *next;

	for (s = m->series; s != NULL; s = next) {
		next = s->next;
		strv_free(s->values, m->nlabels);
		free(s->buckets);
		free(s);
	}
	strv_free(m->labels, m->nlabels);
	free(m->bounds);
	free(m->name);
	free(m->help);
	free(m);
}

void
metrics_free(struct metrics *reg)
{
	struct metric *m, *next;

	if (reg == NULL)
		return;
	for (m = reg->head; m != NULL; m = next) {
		next = m->next;
		metric_free(m);
	}
	free(reg);
}

static bool
name_valid(const char *s, bool colon)
{
	if (s == NULL || *s == '\0')
		return false;
	if (!(isalpha((unsigned char)*s) || *s == '_' || (colon && *s == ':')))
		return false;
	for (s++; *s != '\0'; s++)
		if (!(isalnum((unsigned char)*s) || *s == '_' || (colon && *s == ':')))
			return false;
	return true;
}

/* Split "a,b,c" into label names; returns the count or -1 if invalid. */
static int
labels_split(const char *labels, char ***out)
{
	char *copy, *tok, *save = NULL;
	char **v;
	int n = 0;

	*out = NULL;
	if (labels == NULL || *labels == '\0')
		return 0;
	if ((copy = strdup(labels)) == NULL)
		return -1;
	if ((v = calloc(METRIC_MAX_LABELS, sizeof(*v))) == NULL) {
		free(copy);
		return -1;
	}
	for (tok = strtok_r(copy, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
		while (*tok == ' ')
			tok++;
		if (n == METRIC_MAX_LABELS || !name_valid(tok, false) ||
		    strcmp(tok, "le") == 0 || strncmp(tok, "__", 2) == 0)
			goto fail;
		for (int i = 0; i < n; i++)
			if (strcmp(v[i], tok) == 0)
				goto fail;
		if ((v[n] = strdup(tok)) == NULL)
			goto fail;
		n++;
	}
	free(copy);
	*out = v;
	return n;
fail:
	strv_free(v, (size_t)n);
	free(copy);
	return -1;
}

static struct metric *
metrics_register(struct metrics *reg, enum metric_kind kind, const char *name, const char *help,
    const char *labels, const double *bounds, size_t nbounds)
{
	struct metric *m, *old;
	char **lv = NULL;
	int n;

	if (reg == NULL || !name_valid(name, true))
		return NULL;
	if ((n = labels_split(labels, &lv)) < 0)
		return NULL;
	for (size_t i = 0; i < nbounds; i++)
		if (!isfinite(bounds[i]) || (i > 0 && bounds[i] <= bounds[i - 1]))
			goto fail;

	for (old = reg->head; old != NULL; old = old->next) {
		if (strcmp(old->name, name) != 0)
			continue;
		bool same = old->kind == kind && old->nlabels == (size_t)n &&
		    old->nbounds == nbounds;
		for (size_t i = 0; same && i < (size_t)n; i++)
			same = strcmp(old->labels[i], lv[i]) == 0;
		for (size_t i = 0; same && i < nbounds; i++)
			same = old->bounds[i] == bounds[i];
		strv_free(lv, (size_t)n);
		return same ? old : NULL;
	}

	if ((m = calloc(1, sizeof(*m))) == NULL)
		goto fail;
	m->kind = kind;
	m->nlabels = (size_t)n;
	m->labels = lv;
	m->series_tail = &m->series;
	m->name = strdup(name);
	m->help = strdup(help != NULL ? help : "");
	if (nbounds > 0) {
		m->bounds = calloc(nbounds, sizeof(*m->bounds));
		if (m->bounds != NULL)
			memcpy(m->bounds, bounds, nbounds * sizeof(*bounds));
	}
	m->nbounds = nbounds;
	if (m->name == NULL || m->help == NULL || (nbounds > 0 && m->bounds == NULL)) {
		metric_free(m);
		return NULL;
	}
	*reg->tail = m;
	reg->tail = &m->next;
	return m;
fail:
	strv_free(lv, n > 0 ? (size_t)n : 0);
	return NULL;
}

struct metric *
metrics_counter(struct metrics *reg, const char *name, const char *help, const char *labels)
{
	return metrics_register(reg, METRIC_COUNTER, name, help, labels, NULL, 0);
}

struct metric *
metrics_gauge(struct metrics *reg, const char *name, const char *help, const char *labels)
{
	return metrics_register(reg, METRIC_GAUGE, name, help, labels, NULL, 0);
}

struct metric *
metrics_histogram(struct metrics *reg, const char *name, const char *help, const char *labels,
    const double *bounds, size_t nbounds)
{
	if (bounds == NULL && nbounds > 0)
		return NULL;
	return metrics_register(reg, METRIC_HISTOGRAM, name, help, labels, bounds, nbounds);
}

/*
 * Find the series for the label values in ap, creating it when create is
 * set.  Returns NULL when it does not exist (or memory ran out: a metric
 * lost is better than a daemon stopped).
 */
static struct series *
series_get(struct metric *m, bool create, va_list ap)
{
	const char *vals[METRIC_MAX_LABELS];
	struct series *s;

	for (size_t i = 0; i < m->nlabels; i++) {
		vals[i] = va_arg(ap, const char *);
		if (vals[i] == NULL)
			vals[i] = "";
	}
	for (s = m->series; s != NULL; s = s->next) {
		size_t i;
		for (i = 0; i < m->nlabels; i++)
			if (strcmp(s->values[i], vals[i]) != 0)
				break;
		if (i == m->nlabels)
			return s;
	}
	if (!create || (s = calloc(1, sizeof(*s))) == NULL)
		return NULL;
	if (m->nlabels > 0 && (s->values = calloc(m->nlabels, sizeof(*s->values))) == NULL)
		goto fail;
	for (size_t i = 0; i < m->nlabels; i++)
		if ((s->values[i] = strdup(vals[i])) == NULL)
			goto fail;
	if (m->nbounds > 0 && (s->buckets = calloc(m->nbounds, sizeof(*s->buckets))) == NULL)
		goto fail;
	*m->series_tail = s;
	m->series_tail = &s->next;
	return s;
fail:
	strv_free(s->values, m->nlabels);
	free(s);
	return NULL;
}

void
metric_inc(struct metric *m, ...)
{
	struct series *s;
	va_list ap;

	if (m == NULL || m->kind != METRIC_COUNTER)
		return;
	va_start(ap, m);
	if ((s = series_get(m, true, ap)) != NULL)
		s->value += 1;
	va_end(ap);
}

void
metric_add(struct metric *m, double v, ...)
{
	struct series *s;
	va_list ap;

	if (m == NULL || m->kind != METRIC_COUNTER || !(v >= 0))
		return;
	va_start(ap, v);
	if ((s = series_get(m, true, ap)) != NULL)
		s->value += v;
	va_end(ap);
}

void
metric_set(struct metric *m, double v, ...)
{
	struct series *s;
	va_list ap;

	if (m == NULL || m->kind == METRIC_HISTOGRAM)
		return;
	va_start(ap, v);
	if ((s = series_get(m, true, ap)) != NULL)
		s->value = v;
	va_end(ap);
}

void
metric_gauge_add(struct metric *m, double v, ...)
{
	struct series *s;
	va_list ap;

	if (m == NULL || m->kind != METRIC_GAUGE)
		return;
	va_start(ap, v);
	if ((s = series_get(m, true, ap)) != NULL)
		s->value += v;
	va_end(ap);
}

void
metric_observe(struct metric *m, double v, ...)
{
	struct series *s;
	va_list ap;

	if (m == NULL || m->kind != METRIC_HISTOGRAM || isnan(v))
		return;
	va_start(ap, v);
	if ((s = series_get(m, true, ap)) != NULL) {
		s->value += v;
		s->count++;
		/* Buckets hold their own share; rendering accumulates. */
		for (size_t i = 0; i < m->nbounds; i++)
			if (v <= m->bounds[i]) {
				s->buckets[i]++;
				break;
			}
	}
	va_end(ap);
}

double
metric_value(struct metric *m, ...)
{
	struct series *s;
	double v = 0;
	va_list ap;

	if (m == NULL)
		return 0;
	va_start(ap, m);
	if ((s = series_get(m, false, ap)) != NULL)
		v = m->kind == METRIC_HISTOGRAM ? (double)s->count : s->value;
	va_end(ap);
	return v;
}

void
metrics_collector_add(struct metrics *reg, void (*fn)(struct metrics *, void *), void *arg)
{
	if (reg == NULL || reg->ncollectors == METRIC_MAX_COLLECTORS)
		return;
	reg->collectors[reg->ncollectors].fn = fn;
	reg->collectors[reg->ncollectors].arg = arg;
	reg->ncollectors++;
}

/* Numbers as Prometheus reads them: integers without an exponent, other
 * values in the shortest form that reads back exactly. */
static void
put_number(FILE *f, double v)
{
	char buf[40];

	if (isnan(v)) {
		fputs("NaN", f);
		return;
	}
	if (isinf(v)) {
		fputs(v > 0 ? "+Inf" : "-Inf", f);
		return;
	}
	if (v == floor(v) && fabs(v) < 1e15) {
		fprintf(f, "%.0f", v);
		return;
	}
	snprintf(buf, sizeof(buf), "%.15g", v);
	if (strtod(buf, NULL) != v)
		snprintf(buf, sizeof(buf), "%.17g", v);
	fputs(buf, f);
}

/* Label values escape backslash, double quote and newline; HELP text
 * escapes only backslash and newline. */
static void
put_escaped(FILE *f, const char *s, bool quote)
{
	for (; *s != '\0'; s++) {
		if (*s == '\\')
			fputs("\\\\", f);
		else if (*s == '\n')
			fputs("\\n", f);
		else if (quote && *s == '"')
			fputs("\\\"", f);
		else
			fputc(*s, f);
	}
}

/* "{a="x",b="y"}" with an optional extra le label; nothing when empty. */
static void
put_labels(FILE *f, const struct metric *m, const struct series *s, const double *le)
{
	bool first = true;

	if (m->nlabels == 0 && le == NULL)
		return;
	fputc('{', f);
	for (size_t i = 0; i < m->nlabels; i++) {
		fprintf(f, "%s%s=\"", first ? "" : ",", m->labels[i]);
		put_escaped(f, s != NULL ? s->values[i] : "", true);
		fputc('"', f);
		first = false;
	}
	if (le != NULL) {
		fprintf(f, "%sle=\"", first ? "" : ",");
		put_number(f, *le);
		fputc('"', f);
	}
	fputc('}', f);
}

static void
render_histogram(FILE *f, const struct metric *m, const struct series *s)
{
	static const double inf = INFINITY;
	uint64_t cum = 0;

	for (size_t i = 0; i < m->nbounds; i++) {
		cum += s != NULL ? s->buckets[i] : 0;
		fprintf(f, "%s_bucket", m->name);
		put_labels(f, m, s, &m->bounds[i]);
		fprintf(f, " %llu\n", (unsigned long long)cum);
	}
	fprintf(f, "%s_bucket", m->name);
	put_labels(f, m, s, &inf);
	fprintf(f, " %llu\n", (unsigned long long)(s != NULL ? s->count : 0));
	fprintf(f, "%s_sum", m->name);
	put_labels(f, m, s, NULL);
	fputc(' ', f);
	put_number(f, s != NULL ? s->value : 0);
	fprintf(f, "\n%s_count", m->name);
	put_labels(f, m, s, NULL);
	fprintf(f, " %llu\n", (unsigned long long)(s != NULL ? s->count : 0));
}

int
metrics_render(struct metrics *reg, FILE *f)
{
	static const char *const types[] = {"counter", "gauge", "histogram"};

	for (size_t i = 0; i < reg->ncollectors; i++)
		reg->collectors[i].fn(reg, reg->collectors[i].arg);

	for (const struct metric *m = reg->head; m != NULL; m = m->next) {
		fprintf(f, "# HELP %s ", m->name);
		put_escaped(f, m->help, false);
		fprintf(f, "\n# TYPE %s %s\n", m->name, types[m->kind]);
		/* A family without labels always has its one series, at zero
		 * until first touched, so that rate() sees the start. */
		if (m->series == NULL && m->nlabels == 0) {
			if (m->kind == METRIC_HISTOGRAM)
				render_histogram(f, m, NULL);
			else
				fprintf(f, "%s 0\n", m->name);
			continue;
		}
		for (const struct series *s = m->series; s != NULL; s = s->next) {
			if (m->kind == METRIC_HISTOGRAM) {
				render_histogram(f, m, s);
				continue;
			}
			fputs(m->name, f);
			put_labels(f, m, s, NULL);
			fputc(' ', f);
			put_number(f, s->value);
			fputc('\n', f);
		}
	}
	return ferror(f) ? -1 : 0;
}

/* ---- process metrics --------------------------------------------------- */

struct process_metrics {
	struct metric *cpu;
	struct metric *rss;
	struct metric *vsz;
	struct metric *fds;
	struct metric *max_fds;
	struct metric *start;
};

static void
process_collect(struct metrics *reg, void *arg)
{
	struct process_metrics *pm = arg;
	struct rusage ru;
	struct rlimit rl;
	struct dirent *de;
	unsigned long vsize = 0;
	long rss = 0;
	DIR *d;
	FILE *f;
	int nfd = 0;

	(void)reg;
	if (getrusage(RUSAGE_SELF, &ru) == 0)
		metric_set(pm->cpu, (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
		    (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6);
	if ((f = fopen("/proc/self/statm", "r")) != NULL) {
		unsigned long pages = 0, res = 0;
		if (fscanf(f, "%lu %lu", &pages, &res) == 2) {
			vsize = pages;
			rss = (long)res;
		}
		fclose(f);
		long pg = sysconf(_SC_PAGESIZE);
		metric_set(pm->rss, (double)rss * (double)pg);
		metric_set(pm->vsz, (double)vsize * (double)pg);
	}
	if ((d = opendir("/proc/self/fd")) != NULL) {
		while ((de = readdir(d)) != NULL)
			if (de->d_name[0] != '.')
				nfd++;
		closedir(d);
		metric_set(pm->fds, nfd - 1); /* not counting the directory's own fd */
	}
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
		metric_set(pm->max_fds, rl.rlim_cur == RLIM_INFINITY ? INFINITY : (double)rl.rlim_cur);
}

void
metrics_process_register(struct metrics *reg)
{
	static struct process_metrics pm; /* one process, one set */
	struct timespec now;

	pm.cpu = metrics_counter(reg, "process_cpu_seconds_total",
	    "Total user and system CPU time spent in seconds.", NULL);
	pm.rss = metrics_gauge(reg, "process_resident_memory_bytes",
	    "Resident memory size in bytes.", NULL);
	pm.vsz = metrics_gauge(reg, "process_virtual_memory_bytes",
	    "Virtual memory size in bytes.", NULL);
	pm.fds = metrics_gauge(reg, "process_open_fds", "Number of open file descriptors.", NULL);
	pm.max_fds = metrics_gauge(reg, "process_max_fds",
	    "Maximum number of open file descriptors.", NULL);
	pm.start = metrics_gauge(reg, "process_start_time_seconds",
	    "Start time of the process since unix epoch in seconds.", NULL);
	clock_gettime(CLOCK_REALTIME, &now);
	metric_set(pm.start, (double)now.tv_sec);
	metrics_collector_add(reg, process_collect, &pm);
}
