/*
 * log.c: logging for the daemon (see log.h).  One line per call, written with
 * a single write so that lines from a busy loop never interleave, prefixed
 * with the syslog priority that journald parses from a service's stderr.
 * Messages are truncated rather than allocated: logging must work when
 * memory is short.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "log.h"

#define LOG_LINE_MAX 2048

static bool log_syslog;
static int log_level = LOG_INFO;

static const char *const level_names[] = {
	[LOG_EMERG] = "emerg", [LOG_ALERT] = "alert",	[LOG_CRIT] = "crit",
	[LOG_ERR] = "err",     [LOG_WARNING] = "warning", [LOG_NOTICE] = "notice",
	[LOG_INFO] = "info",   [LOG_DEBUG] = "debug",
};

void
log_init(bool to_syslog, int level)
{
	log_syslog = to_syslog;
	log_setlevel(level);
	if (log_syslog)
		openlog("ammd", LOG_PID | LOG_NDELAY, LOG_DAEMON);
}

void
log_setlevel(int level)
{
	if (level < LOG_ERR)
		level = LOG_ERR;
	if (level > LOG_DEBUG)
		level = LOG_DEBUG;
	log_level = level;
}

int
log_getlevel(void)
{
	return log_level;
}

int
log_level_parse(const char *name)
{
	/* Only the levels an operator would choose; "error" and "warn" are
	 * accepted because everyone types them. */
	if (strcasecmp(name, "error") == 0)
		return LOG_ERR;
	if (strcasecmp(name, "warn") == 0)
		return LOG_WARNING;
	for (int i = LOG_ERR; i <= LOG_DEBUG; i++)
		if (strcasecmp(name, level_names[i]) == 0)
			return i;
	return -1;
}

const char *
log_level_name(int level)
{
	if (level < 0 || level > LOG_DEBUG)
		return "unknown";
	return level_names[level];
}

/* Format "<pri>prefix message suffix\n" and write it in one piece. */
static void
log_emit(int pri, const char *prefix, const char *suffix, const char *fmt, va_list ap)
{
	char line[LOG_LINE_MAX];
	size_t n = 0;
	int r;

	if (pri > log_level)
		return;
	if (!log_syslog) {
		r = snprintf(line, sizeof(line), "<%d>", pri);
		n = r > 0 ? (size_t)r : 0;
	}
	if (prefix != NULL && n < sizeof(line)) {
		r = snprintf(line + n, sizeof(line) - n, "%s", prefix);
		n += r > 0 ? (size_t)r : 0;
	}
	if (n < sizeof(line)) {
		r = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
		n += r > 0 ? (size_t)r : 0;
	}
	if (suffix != NULL && n < sizeof(line)) {
		r = snprintf(line + n, sizeof(line) - n, ": %s", suffix);
		n += r > 0 ? (size_t)r : 0;
	}
	if (n > sizeof(line) - 2)
		n = sizeof(line) - 2; /* truncated: keep room for the newline */
	/* A message with an embedded newline would forge a second journal
	 * entry with our priority; flatten it. */
	for (size_t i = 0; i < n; i++)
		if (line[i] == '\n' || line[i] == '\r')
			line[i] = ' ';
	if (log_syslog) {
		line[n] = '\0';
		syslog(pri, "%s", line);
		return;
	}
	line[n++] = '\n';
	(void)!write(STDERR_FILENO, line, n);
}

void
vlog(int pri, const char *fmt, va_list ap)
{
	int saved = errno;
	log_emit(pri, NULL, NULL, fmt, ap);
	errno = saved;
}

void
logit(int pri, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vlog(pri, fmt, ap);
	va_end(ap);
}

void
log_warn(const char *fmt, ...)
{
	int saved = errno;
	va_list ap;
	va_start(ap, fmt);
	log_emit(LOG_WARNING, NULL, strerror(saved), fmt, ap);
	va_end(ap);
	errno = saved;
}

void
log_warnx(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vlog(LOG_WARNING, fmt, ap);
	va_end(ap);
}

void
log_notice(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vlog(LOG_NOTICE, fmt, ap);
	va_end(ap);
}

void
log_info(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vlog(LOG_INFO, fmt, ap);
	va_end(ap);
}

void
log_debug(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vlog(LOG_DEBUG, fmt, ap);
	va_end(ap);
}

void
log_meter(int pri, const char *serial, const char *fmt, ...)
{
	char prefix[96];
	va_list ap;
	int saved = errno;

	snprintf(prefix, sizeof(prefix), "meter %s: ",
	    serial != NULL && serial[0] != '\0' ? serial : "?");
	va_start(ap, fmt);
	log_emit(pri, prefix, NULL, fmt, ap);
	va_end(ap);
	errno = saved;
}

void
fatal(const char *fmt, ...)
{
	int saved = errno;
	va_list ap;
	va_start(ap, fmt);
	log_emit(LOG_CRIT, "fatal: ", strerror(saved), fmt, ap);
	va_end(ap);
	exit(1);
}

void
fatalx(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	log_emit(LOG_CRIT, "fatal: ", NULL, fmt, ap);
	va_end(ap);
	exit(1);
}
