/*
 * log.h: the daemon's logging, in the manner of OpenBSD's log.c.  Lines go
 * to stderr with a syslog priority prefix ("<3>" .. "<7>") that journald
 * turns into the entry's priority; a daemon started outside systemd without
 * -d logs through syslog(3) instead.  Every line about a meter goes through
 * log_meter() so that it names the meter's serial in one fixed form
 * ("meter SERIAL: ...") that operators can grep for.
 */
#ifndef AMM_LOG_H
#define AMM_LOG_H

#include <stdarg.h>
#include <stdbool.h>
#include <syslog.h>

#define LOG_PRINTF(a, b) __attribute__((format(printf, a, b)))

/*
 * to_syslog: send lines to syslog(3) (ident "ammd") rather than stderr.
 * level: the least important priority still logged (LOG_ERR .. LOG_DEBUG).
 */
void log_init(bool to_syslog, int level);
void log_setlevel(int level);
int log_getlevel(void);

/* "err", "warning", "notice", "info", "debug" <-> LOG_ERR .. LOG_DEBUG;
 * log_level_parse returns -1 for an unknown name. */
int log_level_parse(const char *name);
const char *log_level_name(int level);

/* log_warn and fatal append ": strerror(errno)"; the x variants do not. */
void log_warn(const char *fmt, ...) LOG_PRINTF(1, 2);
void log_warnx(const char *fmt, ...) LOG_PRINTF(1, 2);
void log_notice(const char *fmt, ...) LOG_PRINTF(1, 2);
void log_info(const char *fmt, ...) LOG_PRINTF(1, 2);
void log_debug(const char *fmt, ...) LOG_PRINTF(1, 2);
void logit(int pri, const char *fmt, ...) LOG_PRINTF(2, 3);
void vlog(int pri, const char *fmt, va_list ap) LOG_PRINTF(2, 0);

/* A line about one meter: "meter SERIAL: message".  A NULL or empty serial
 * (a connection not yet identified) is written as "meter ?". */
void log_meter(int pri, const char *serial, const char *fmt, ...) LOG_PRINTF(3, 4);

/* Log at LOG_CRIT and exit(1).  Only at start-up or on a broken invariant. */
__attribute__((noreturn)) void fatal(const char *fmt, ...) LOG_PRINTF(1, 2);
__attribute__((noreturn)) void fatalx(const char *fmt, ...) LOG_PRINTF(1, 2);

#endif
