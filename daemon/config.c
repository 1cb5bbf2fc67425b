/*
 * config.c: reading and checking ammd.conf (see config.h).
 *
 * Every option is one row of opts[]: section, key, type, where it lives in
 * struct config, its range and its default as text.  Defaults go through the
 * same parser as the file, so a default can never be a value the file would
 * refuse.  libinih does the tokenising; we feed it lines through our own
 * reader so that we know the line number of everything it hands back (the
 * Debian build has no INI_HANDLER_LINENO), and so that we see section
 * headers, overlong lines and syntax errors ourselves and can report all of
 * them, not just the first.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include <ini.h>

#include "config.h"
#include "log.h"
#include "obis.h"

enum opt_type {
	OPT_BOOL,
	OPT_INT,
	OPT_STR,
	OPT_ADDR,     /* host:port; min 0 allows empty (= off) */
	OPT_LOGLEVEL,
	OPT_FORMAT,
	OPT_HHMM,     /* HH:MM -> minutes */
	OPT_DURATION, /* 90, 90s, 15m, 6h, 1d -> seconds */
	OPT_OBISLIST,
};

struct opt {
	const char *section;
	const char *key;
	enum opt_type type;
	size_t off;
	size_t size;
	long min, max;
	const char *def;
};

#define FIELD(f)	  offsetof(struct config, f), sizeof(((struct config *)0)->f)
#define O(s, k, t, f, lo, hi, d) {s, k, t, FIELD(f), lo, hi, d}

#define DEFAULT_REGISTERS                                                                      \
	"1-0:1.8.0.255 1-0:2.8.0.255 1-0:3.8.0.255 1-0:4.8.0.255 "                             \
	"1-0:1.7.0.255 1-0:21.7.0.255 1-0:41.7.0.255 1-0:61.7.0.255 "                          \
	"1-0:32.7.0.255 1-0:52.7.0.255 1-0:72.7.0.255 "                                        \
	"1-0:31.7.0.255 1-0:51.7.0.255 1-0:71.7.0.255"

static const struct opt opts[] = {
	O("daemon", "log_level", OPT_LOGLEVEL, daemon.log_level, 0, 0, "info"),
	O("daemon", "http_listen", OPT_ADDR, daemon.http_listen, 0, 0, "127.0.0.1:9477"),
	O("daemon", "shutdown_timeout", OPT_DURATION, daemon.shutdown_timeout, 1, 3600, "30"),
	O("daemon", "instance_id", OPT_STR, daemon.instance_id, 0, 63, ""),

	O("database", "dsn", OPT_STR, database.dsn, 0, CONFIG_PATH_MAX - 1, "dbname=ammd"),
	O("database", "migrate_on_start", OPT_BOOL, database.migrate_on_start, 0, 0, "no"),
	O("database", "batch_rows", OPT_INT, database.batch_rows, 1, 1000000, "5000"),
	O("database", "batch_ms", OPT_INT, database.batch_ms, 1, 60000, "200"),

	O("mqtt", "enabled", OPT_BOOL, mqtt.enabled, 0, 0, "no"),
	O("mqtt", "host", OPT_STR, mqtt.host, 0, CONFIG_STR_MAX - 1, "localhost"),
	O("mqtt", "port", OPT_INT, mqtt.port, 1, 65535, "1883"),
	O("mqtt", "client_id", OPT_STR, mqtt.client_id, 0, CONFIG_STR_MAX - 1, ""),
	O("mqtt", "username", OPT_STR, mqtt.username, 0, CONFIG_STR_MAX - 1, ""),
	O("mqtt", "password", OPT_STR, mqtt.password, 0, CONFIG_STR_MAX - 1, ""),
	O("mqtt", "password_file", OPT_STR, mqtt.password_file, 0, CONFIG_PATH_MAX - 1, ""),
	O("mqtt", "tls_ca", OPT_STR, mqtt.tls_ca, 0, CONFIG_PATH_MAX - 1, ""),
	O("mqtt", "tls_cert", OPT_STR, mqtt.tls_cert, 0, CONFIG_PATH_MAX - 1, ""),
	O("mqtt", "tls_key", OPT_STR, mqtt.tls_key, 0, CONFIG_PATH_MAX - 1, ""),
	O("mqtt", "prefix", OPT_STR, mqtt.prefix, 1, CONFIG_STR_MAX - 1, "ammd/v1"),
	O("mqtt", "qos", OPT_INT, mqtt.qos, 0, 2, "1"),
	O("mqtt", "format", OPT_FORMAT, mqtt.format, 0, 0, "protobuf"),
	O("mqtt", "ha_discovery", OPT_BOOL, mqtt.ha_discovery, 0, 0, "no"),
	O("mqtt", "ha_prefix", OPT_STR, mqtt.ha_prefix, 1, CONFIG_STR_MAX - 1, "homeassistant"),
	O("mqtt", "shared_requests", OPT_BOOL, mqtt.shared_requests, 0, 0, "yes"),

	O("collection", "window_start", OPT_HHMM, collection.window_start, 0, 0, "00:15"),
	O("collection", "window_length", OPT_DURATION, collection.window_length, 60, 86400, "20h"),
	O("collection", "concurrency", OPT_INT, collection.concurrency, 1, 100000, "200"),
	O("collection", "registers", OPT_OBISLIST, collection.registers, 0, 0, DEFAULT_REGISTERS),
	O("collection", "profile_backfill_days", OPT_INT, collection.profile_backfill_days, 0, 3650, "10"),
	O("collection", "clock_drift_threshold_s", OPT_INT, collection.clock_drift_threshold_s, 1, 86400, "10"),
	O("collection", "retry_base_s", OPT_INT, collection.retry_base_s, 1, 86400, "60"),
	O("collection", "retry_max_s", OPT_INT, collection.retry_max_s, 1, 604800, "3600"),
	O("collection", "unreachable_retry_s", OPT_INT, collection.unreachable_retry_s, 60, 604800, "21600"),
	O("collection", "lease_batch", OPT_INT, collection.lease_batch, 1, 100000, "500"),
	O("collection", "lease_seconds", OPT_INT, collection.lease_seconds, 10, 86400, "600"),

	O("tcpip", "connect_timeout_ms", OPT_INT, tcpip.connect_timeout_ms, 100, 600000, "5000"),
	O("tcpip", "response_timeout_ms", OPT_INT, tcpip.response_timeout_ms, 100, 600000, "10000"),
	O("tcpip", "inactivity_timeout_s", OPT_INT, tcpip.inactivity_timeout_s, 1, 86400, "60"),
	O("tcpip", "default_port", OPT_INT, tcpip.default_port, 1, 65535, "4059"),

	O("gprs", "listen", OPT_ADDR, gprs.listen, 0, 0, ""),
	O("gprs", "max_unidentified", OPT_INT, gprs.max_unidentified, 1, 1000000, "1000"),
	O("gprs", "handshake_timeout_s", OPT_INT, gprs.handshake_timeout_s, 1, 3600, "60"),
	O("gprs", "idle_timeout_s", OPT_INT, gprs.idle_timeout_s, 1, 86400, "120"),
	O("gprs", "connect_timeout_ms", OPT_INT, gprs.connect_timeout_ms, 100, 600000, "60000"),
	O("gprs", "response_timeout_ms", OPT_INT, gprs.response_timeout_ms, 100, 600000, "30000"),
	O("gprs", "wakeup_command", OPT_STR, gprs.wakeup_command, 0, CONFIG_PATH_MAX - 1, ""),

	O("mbus", "connect_timeout_ms", OPT_INT, mbus.connect_timeout_ms, 100, 600000, "5000"),
	O("mbus", "response_timeout_ms", OPT_INT, mbus.response_timeout_ms, 10, 600000, "3000"),
	O("mbus", "retries", OPT_INT, mbus.retries, 0, 10, "2"),

	O("modbus", "connect_timeout_ms", OPT_INT, modbus.connect_timeout_ms, 100, 600000, "3000"),
	O("modbus", "response_timeout_ms", OPT_INT, modbus.response_timeout_ms, 10, 600000, "1000"),
	O("modbus", "retries", OPT_INT, modbus.retries, 0, 10, "2"),

	O("commands", "disconnect_per_minute", OPT_INT, commands.disconnect_per_minute, 0, 100000, "10"),
	O("commands", "reconnect_per_minute", OPT_INT, commands.reconnect_per_minute, 0, 100000, "60"),
	O("commands", "credit_per_minute", OPT_INT, commands.credit_per_minute, 0, 100000, "600"),
	O("commands", "payment_mode_per_minute", OPT_INT, commands.payment_mode_per_minute, 0, 100000, "10"),
	O("commands", "tariff_per_minute", OPT_INT, commands.tariff_per_minute, 0, 100000, "60"),
	O("commands", "limiter_per_minute", OPT_INT, commands.limiter_per_minute, 0, 100000, "10"),
	O("commands", "clock_sync_per_minute", OPT_INT, commands.clock_sync_per_minute, 0, 100000, "600"),
	O("commands", "read_now_per_minute", OPT_INT, commands.read_now_per_minute, 0, 100000, "600"),
	O("commands", "default_expiry_s", OPT_DURATION, commands.default_expiry_s, 60, 2592000, "86400"),
	O("commands", "lease_seconds", OPT_DURATION, commands.lease_seconds, 15, 3600, "60"),
};

#define NOPTS (sizeof(opts) / sizeof(opts[0]))

static const char *const sections[] = {
	"daemon", "database", "mqtt", "collection", "tcpip", "gprs", "mbus", "modbus", "commands",
};

struct parse {
	struct config *c;
	struct config_diag *d;
	FILE *f;
	char *line;     /* getline buffer */
	size_t cap;
	int lineno;     /* line the reader handed out last */
	bool cont;      /* that line continues the previous key's value */
	bool have_key;  /* a key = value line was seen in this section */
	bool bad_section;
	int set_line[NOPTS];
};

static void
diag_add(struct config_diag *d, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void
diag_add(struct config_diag *d, int line, const char *fmt, ...)
{
	va_list ap;

	d->total++;
	if (d->n == CONFIG_MAX_ERRORS)
		return;
	d->err[d->n].line = line;
	va_start(ap, fmt);
	vsnprintf(d->err[d->n].msg, sizeof(d->err[d->n].msg), fmt, ap);
	va_end(ap);
	d->n++;
}

static bool
diag_has_line(const struct config_diag *d, int line)
{
	for (size_t i = 0; i < d->n; i++)
		if (d->err[i].line == line)
			return true;
	return false;
}

static const struct opt *
opt_find(const char *section, const char *key, size_t *idx)
{
	for (size_t i = 0; i < NOPTS; i++)
		if (strcmp(opts[i].section, section) == 0 && strcmp(opts[i].key, key) == 0) {
			*idx = i;
			return &opts[i];
		}
	return NULL;
}

static bool
section_known(const char *name)
{
	for (size_t i = 0; i < sizeof(sections) / sizeof(sections[0]); i++)
		if (strcmp(sections[i], name) == 0)
			return true;
	return false;
}

/* ---- value parsers: 0 or -1 with a reason in why ------------------------ */

static int
parse_long(const char *v, long min, long max, long *out, char *why, size_t wlen)
{
	char *end;
	long n;

	errno = 0;
	n = strtol(v, &end, 10);
	if (*v == '\0' || *end != '\0' || errno != 0 || n < min || n > max) {
		snprintf(why, wlen, "must be an integer from %ld to %ld", min, max);
		return -1;
	}
	*out = n;
	return 0;
}

static int
parse_bool(const char *v, bool *out, char *why, size_t wlen)
{
	static const char *const yes[] = {"yes", "true", "on", "1"};
	static const char *const no[] = {"no", "false", "off", "0"};

	for (size_t i = 0; i < 4; i++) {
		if (strcasecmp(v, yes[i]) == 0) {
			*out = true;
			return 0;
		}
		if (strcasecmp(v, no[i]) == 0) {
			*out = false;
			return 0;
		}
	}
	snprintf(why, wlen, "must be yes or no");
	return -1;
}

static int
parse_duration(const char *v, long min, long max, long *out, char *why, size_t wlen)
{
	char *end;
	long n, mul = 1;

	errno = 0;
	n = strtol(v, &end, 10);
	if (end != v && *end != '\0' && end[1] == '\0') {
		switch (*end) {
		case 's': mul = 1; end++; break;
		case 'm': mul = 60; end++; break;
		case 'h': mul = 3600; end++; break;
		case 'd': mul = 86400; end++; break;
		}
	}
	if (*v == '\0' || !isdigit((unsigned char)*v) || *end != '\0' || errno != 0 ||
	    n > LONG_MAX / mul || n * mul < min || n * mul > max) {
		snprintf(why, wlen, "must be a duration from %lds to %lds (N, Ns, Nm, Nh or Nd)", min,
		    max);
		return -1;
	}
	*out = n * mul;
	return 0;
}

static int
parse_hhmm(const char *v, int *out, char *why, size_t wlen)
{
	int h, m, n = 0;

	if (sscanf(v, "%2d:%2d%n", &h, &m, &n) != 2 || v[n] != '\0' || h < 0 || h > 23 || m < 0 ||
	    m > 59 || !isdigit((unsigned char)v[0])) {
		snprintf(why, wlen, "must be a time of day HH:MM (00:00 to 23:59)");
		return -1;
	}
	*out = h * 60 + m;
	return 0;
}

static int
parse_addr(const char *v, bool optional, struct config_addr *a, char *why, size_t wlen)
{
	const char *colon, *host = v;
	size_t hlen;
	long port;

	memset(a, 0, sizeof(*a));
	if (*v == '\0') {
		if (optional)
			return 0;
		goto bad;
	}
	if (*v == '[') {
		const char *close = strchr(v, ']');
		if (close == NULL || close[1] != ':')
			goto bad;
		host = v + 1;
		hlen = (size_t)(close - host);
		colon = close + 1;
	} else {
		colon = strrchr(v, ':');
		if (colon == NULL || memchr(v, ':', (size_t)(colon - v)) != NULL)
			goto bad; /* IPv6 addresses need brackets */
		hlen = (size_t)(colon - v);
	}
	if (hlen == 0 || hlen >= sizeof(a->host))
		goto bad;
	{
		char tmp[16];
		if (parse_long(colon + 1, 1, 65535, &port, tmp, sizeof(tmp)) != 0)
			goto bad;
	}
	memcpy(a->host, host, hlen);
	a->host[hlen] = '\0';
	a->port = (uint16_t)port;
	return 0;
bad:
	snprintf(why, wlen, "must be HOST:PORT or [IPv6]:PORT with a port from 1 to 65535%s",
	    optional ? ", or empty" : "");
	return -1;
}

/* Append the OBIS codes in v (separated by blanks or commas) to the list. */
static int
parse_obislist(const char *v, struct config *c, bool append, char *why, size_t wlen)
{
	char buf[CONFIG_PATH_MAX];
	char *tok, *save = NULL;

	if (!append)
		c->collection.nregisters = 0;
	if (strlen(v) >= sizeof(buf)) {
		snprintf(why, wlen, "value too long");
		return -1;
	}
	strcpy(buf, v);
	for (tok = strtok_r(buf, " \t,", &save); tok != NULL; tok = strtok_r(NULL, " \t,", &save)) {
		struct obis o;
		if (obis_parse(tok, &o) != 0) {
			snprintf(why, wlen, "\"%.40s\" is not an OBIS code A-B:C.D.E[.F]", tok);
			return -1;
		}
		for (size_t i = 0; i < c->collection.nregisters; i++)
			if (memcmp(&c->collection.registers[i], &o, sizeof(o)) == 0) {
				snprintf(why, wlen, "%.40s is listed twice", tok);
				return -1;
			}
		if (c->collection.nregisters == CONFIG_MAX_REGISTERS) {
			snprintf(why, wlen, "more than %d registers", CONFIG_MAX_REGISTERS);
			return -1;
		}
		c->collection.registers[c->collection.nregisters++] = o;
	}
	return 0;
}

/* Store value v for option o in c.  append: a continuation line. */
static int
opt_set(const struct opt *o, struct config *c, const char *v, bool append, char *why, size_t wlen)
{
	char *field = (char *)c + o->off;
	char unq[CONFIG_PATH_MAX];
	size_t len = strlen(v);
	long n;
	int r;

	/* A value may be written in double quotes; the quotes are not part
	 * of it.  (inih keeps them.) */
	if (len >= 2 && v[0] == '"' && v[len - 1] == '"' && len - 2 < sizeof(unq)) {
		memcpy(unq, v + 1, len - 2);
		unq[len - 2] = '\0';
		v = unq;
		len -= 2;
	}

	switch (o->type) {
	case OPT_BOOL:
		return parse_bool(v, (bool *)field, why, wlen);
	case OPT_INT:
		if (parse_long(v, o->min, o->max, &n, why, wlen) != 0)
			return -1;
		*(int *)field = (int)n;
		return 0;
	case OPT_DURATION:
		if (parse_duration(v, o->min, o->max, &n, why, wlen) != 0)
			return -1;
		*(int *)field = (int)n;
		return 0;
	case OPT_STR:
		if (len > (size_t)o->max) {
			snprintf(why, wlen, "is longer than %ld characters", o->max);
			return -1;
		}
		if (len < (size_t)o->min) {
			snprintf(why, wlen, "must not be empty");
			return -1;
		}
		for (size_t i = 0; i < len; i++)
			if (iscntrl((unsigned char)v[i])) {
				snprintf(why, wlen, "contains a control character");
				return -1;
			}
		memcpy(field, v, len + 1);
		return 0;
	case OPT_ADDR:
		return parse_addr(v, o->min == 0, (struct config_addr *)field, why, wlen);
	case OPT_LOGLEVEL:
		if ((r = log_level_parse(v)) < 0) {
			snprintf(why, wlen, "must be one of err, warning, notice, info, debug");
			return -1;
		}
		*(int *)field = r;
		return 0;
	case OPT_FORMAT:
		if (strcmp(v, "protobuf") == 0)
			*(enum config_format *)field = CONFIG_FORMAT_PROTOBUF;
		else if (strcmp(v, "json") == 0)
			*(enum config_format *)field = CONFIG_FORMAT_JSON;
		else {
			snprintf(why, wlen, "must be protobuf or json");
			return -1;
		}
		return 0;
	case OPT_HHMM:
		return parse_hhmm(v, (int *)field, why, wlen);
	case OPT_OBISLIST:
		return parse_obislist(v, c, append, why, wlen);
	}
	return -1;
}

/* ---- reading the file ----------------------------------------------- */

static char *
skip_blank(char *s)
{
	while (*s == ' ' || *s == '\t')
		s++;
	return s;
}

/*
 * inih's reader: hand out one whole line at a time, noting its number and
 * checking what inih would otherwise accept quietly (a section we do not
 * know, a line longer than its buffer) or report only once (syntax).
 */
static char *
conf_reader(char *str, int num, void *stream)
{
	struct parse *p = stream;
	ssize_t len;
	char *s;

	if ((len = getline(&p->line, &p->cap, p->f)) < 0)
		return NULL;
	p->lineno++;
	while (len > 0 && (p->line[len - 1] == '\n' || p->line[len - 1] == '\r'))
		p->line[--len] = '\0';
	if (len >= num - 1) {
		diag_add(p->d, p->lineno, "line is longer than %d characters; "
		    "continue a long value on indented lines", num - 2);
		/* Give inih a harmless comment instead of half a line. */
		snprintf(str, (size_t)num, "; overlong line");
		p->cont = false;
		return str;
	}
	memcpy(str, p->line, (size_t)len + 1);

	s = skip_blank(p->line);
	p->cont = false;
	if (*s == '\0' || *s == ';' || *s == '#')
		return str;
	if (s != p->line && p->have_key) {
		p->cont = true; /* inih's multi-line value */
		return str;
	}
	if (*s == '[') {
		char *close = strchr(s, ']');
		p->have_key = false;
		if (close == NULL) {
			diag_add(p->d, p->lineno, "section header without closing ']'");
			p->bad_section = true;
			return str;
		}
		*close = '\0';
		p->bad_section = !section_known(s + 1);
		if (p->bad_section)
			diag_add(p->d, p->lineno, "unknown section [%s]", s + 1);
		return str;
	}
	if (strpbrk(s, "=:") == NULL)
		diag_add(p->d, p->lineno, "expected \"key = value\" or \"[section]\"");
	else
		p->have_key = true;
	return str;
}

static int
conf_handler(void *user, const char *section, const char *name, const char *value)
{
	struct parse *p = user;
	const struct opt *o;
	char why[200];
	size_t idx;

	if (p->bad_section)
		return 1; /* already reported with the section header */
	if (*section == '\0') {
		diag_add(p->d, p->lineno, "\"%s\" is outside any section", name);
		return 1;
	}
	if ((o = opt_find(section, name, &idx)) == NULL) {
		diag_add(p->d, p->lineno, "[%s] %s: unknown key", section, name);
		return 1;
	}
	if (p->cont && o->type != OPT_OBISLIST) {
		diag_add(p->d, p->lineno, "[%s] %s: only lists may continue on the next line",
		    section, name);
		return 1;
	}
	if (!p->cont && p->set_line[idx] != 0) {
		diag_add(p->d, p->lineno, "[%s] %s: set twice (first on line %d)", section, name,
		    p->set_line[idx]);
		return 1;
	}
	if (opt_set(o, p->c, value, p->cont, why, sizeof(why)) != 0) {
		/* Never echo what may be a secret into a log. */
		if (strcmp(name, "dsn") == 0 || strstr(name, "password") != NULL)
			diag_add(p->d, p->lineno, "[%s] %s: %s", section, name, why);
		else
			diag_add(p->d, p->lineno, "[%s] %s: %s, not \"%.60s\"", section, name, why,
			    value);
		return 1;
	}
	if (!p->cont)
		p->set_line[idx] = p->lineno;
	return 1;
}

static int
line_of(const struct parse *p, const char *section, const char *key)
{
	size_t idx;
	return opt_find(section, key, &idx) != NULL ? p->set_line[idx] : 0;
}

/* Checks that involve more than one option, and the derived defaults. */
static void
config_check(struct parse *p)
{
	struct config *c = p->c;
	const char *s;

	if (c->collection.retry_base_s > c->collection.retry_max_s)
		diag_add(p->d, line_of(p, "collection", "retry_max_s"),
		    "[collection] retry_max_s (%d) is smaller than retry_base_s (%d)",
		    c->collection.retry_max_s, c->collection.retry_base_s);
	if ((c->mqtt.tls_cert[0] == '\0') != (c->mqtt.tls_key[0] == '\0'))
		diag_add(p->d, line_of(p, "mqtt", c->mqtt.tls_cert[0] ? "tls_cert" : "tls_key"),
		    "[mqtt] tls_cert and tls_key go together");
	if (c->mqtt.password[0] != '\0' && c->mqtt.password_file[0] != '\0')
		diag_add(p->d, line_of(p, "mqtt", "password"),
		    "[mqtt] password and password_file are exclusive");
	if ((c->mqtt.password[0] != '\0' || c->mqtt.password_file[0] != '\0') &&
	    c->mqtt.username[0] == '\0')
		diag_add(p->d, c->mqtt.password[0] != '\0' ? line_of(p, "mqtt", "password")
							  : line_of(p, "mqtt", "password_file"),
		    "[mqtt] a password needs a username");
	if (c->mqtt.enabled && c->mqtt.host[0] == '\0')
		diag_add(p->d, line_of(p, "mqtt", "host"), "[mqtt] host must be set when enabled");
	s = c->mqtt.prefix;
	if (strpbrk(s, "+#") != NULL || s[0] == '/' || s[strlen(s) - 1] == '/')
		diag_add(p->d, line_of(p, "mqtt", "prefix"),
		    "[mqtt] prefix must not contain + or # nor begin or end with /");
	for (s = c->daemon.instance_id; *s != '\0'; s++)
		if (!isalnum((unsigned char)*s) && *s != '-' && *s != '_' && *s != '.') {
			diag_add(p->d, line_of(p, "daemon", "instance_id"),
			    "[daemon] instance_id may hold only letters, digits, '-', '_' and '.'");
			break;
		}
	if (c->collection.nregisters == 0)
		diag_add(p->d, line_of(p, "collection", "registers"),
		    "[collection] registers must name at least one register");

	if (c->daemon.instance_id[0] == '\0') {
		char host[256] = "ammd";
		if (gethostname(host, sizeof(host) - 1) != 0 || host[0] == '\0')
			strcpy(host, "ammd");
		host[sizeof(host) - 1] = '\0';
		host[63] = '\0';
		/* A dot would only clutter client ids; the short name is enough. */
		host[strcspn(host, ".")] = '\0';
		snprintf(c->daemon.instance_id, sizeof(c->daemon.instance_id), "%s", host);
	}
	if (c->mqtt.client_id[0] == '\0')
		snprintf(c->mqtt.client_id, sizeof(c->mqtt.client_id), "ammd-%.200s",
		    c->daemon.instance_id);
}

void
config_defaults(struct config *c)
{
	char why[200];

	memset(c, 0, sizeof(*c));
	for (size_t i = 0; i < NOPTS; i++)
		if (opt_set(&opts[i], c, opts[i].def, false, why, sizeof(why)) != 0)
			fatalx("config: default of [%s] %s: %s", opts[i].section, opts[i].key, why);
}

static struct config *
config_parse_file(FILE *f, const char *name, struct config_diag *diag, struct parse *p)
{
	int r;

	memset(diag, 0, sizeof(*diag));
	snprintf(diag->file, sizeof(diag->file), "%s", name);
	memset(p, 0, sizeof(*p));
	if ((p->c = malloc(sizeof(*p->c))) == NULL) {
		diag_add(diag, 0, "out of memory");
		return NULL;
	}
	config_defaults(p->c);
	p->d = diag;
	p->f = f;
	r = ini_parse_stream(conf_reader, p, conf_handler, p);
	free(p->line);
	p->line = NULL;
	if (r > 0 && !diag_has_line(diag, r))
		diag_add(diag, r, "syntax error");
	else if (r < 0)
		diag_add(diag, 0, "cannot parse (out of memory)");
	if (diag->total == 0)
		config_check(p);
	if (diag->total > 0) {
		free(p->c);
		return NULL;
	}
	return p->c;
}

struct config *
config_parse_string(const char *text, const char *name, struct config_diag *diag)
{
	struct parse p;
	struct config *c;
	FILE *f;

	if ((f = fmemopen((void *)text, strlen(text), "r")) == NULL) {
		memset(diag, 0, sizeof(*diag));
		snprintf(diag->file, sizeof(diag->file), "%s", name);
		diag_add(diag, 0, "cannot read: %s", strerror(errno));
		return NULL;
	}
	c = config_parse_file(f, name, diag, &p);
	fclose(f);
	return c;
}

bool
config_dsn_has_password(const char *dsn)
{
	const char *p, *at, *slash;

	if (strncmp(dsn, "postgresql://", 13) == 0 || strncmp(dsn, "postgres://", 11) == 0) {
		p = strstr(dsn, "://") + 3;
		at = strchr(p, '@');
		slash = strchr(p, '/');
		if (at != NULL && (slash == NULL || at < slash) &&
		    memchr(p, ':', (size_t)(at - p)) != NULL)
			return true;
		return strstr(dsn, "password=") != NULL;
	}
	/* key = value form: look for a "password" keyword at a word start. */
	for (p = dsn; (p = strstr(p, "password")) != NULL; p += 8) {
		const char *q = p + 8;
		if (p != dsn && !isspace((unsigned char)p[-1]))
			continue;
		while (isspace((unsigned char)*q))
			q++;
		if (*q == '=')
			return true;
	}
	return false;
}

static void
secret_file_check(struct parse *p, struct config_diag *diag, const char *key, const char *name)
{
	char path[CONFIG_PATH_MAX + 256];
	struct stat st;

	if (name[0] == '\0' || config_credential_path(name, path, sizeof(path)) == NULL ||
	    stat(path, &st) != 0)
		return;
	if (st.st_mode & S_IROTH)
		diag_add(diag, line_of(p, "mqtt", key),
		    "[mqtt] %s %s is readable by everyone (mode %04o): chmod o-r it", key, path,
		    (unsigned)(st.st_mode & 07777));
}

struct config *
config_load(const char *path, struct config_diag *diag)
{
	struct parse p;
	struct config *c;
	struct stat st;
	FILE *f;

	if ((f = fopen(path, "re")) == NULL || fstat(fileno(f), &st) != 0) {
		int e = errno;
		memset(diag, 0, sizeof(*diag));
		snprintf(diag->file, sizeof(diag->file), "%s", path);
		diag_add(diag, 0, "cannot open: %s", strerror(e));
		if (f != NULL)
			fclose(f);
		return NULL;
	}
	if (!S_ISREG(st.st_mode)) {
		memset(diag, 0, sizeof(*diag));
		snprintf(diag->file, sizeof(diag->file), "%s", path);
		diag_add(diag, 0, "not a regular file");
		fclose(f);
		return NULL;
	}
	c = config_parse_file(f, path, diag, &p);
	fclose(f);
	if (c == NULL)
		return NULL;

	/* Anyone on the machine could read a secret written here. */
	if (st.st_mode & S_IROTH) {
		if (config_dsn_has_password(c->database.dsn))
			diag_add(diag, line_of(&p, "database", "dsn"),
			    "[database] dsn holds a password but the file is readable by everyone "
			    "(mode %04o): chmod o-r it, or keep the password in a passfile",
			    (unsigned)(st.st_mode & 07777));
		if (c->mqtt.password[0] != '\0')
			diag_add(diag, line_of(&p, "mqtt", "password"),
			    "[mqtt] password is set but the file is readable by everyone "
			    "(mode %04o): chmod o-r it, or use password_file",
			    (unsigned)(st.st_mode & 07777));
	}
	/* The files that hold secrets themselves: a password or a private key
	 * anyone on the machine can read is no secret.  A file that is missing
	 * is left to its user, who reports it with its purpose. */
	secret_file_check(&p, diag, "password_file", c->mqtt.password_file);
	secret_file_check(&p, diag, "tls_key", c->mqtt.tls_key);
	if (diag->total > 0) {
		free(c);
		return NULL;
	}
	return c;
}

void
config_free(struct config *c)
{
	free(c);
}

int
config_reload(struct config **cur, const char *path, struct config_diag *diag)
{
	struct config *c = config_load(path, diag);

	if (c == NULL)
		return -1;
	config_free(*cur);
	*cur = c;
	return 0;
}

void
config_diag_print(const struct config_diag *diag, void (*out)(const char *, void *), void *arg)
{
	char line[CONFIG_PATH_MAX + 400];

	for (size_t i = 0; i < diag->n; i++) {
		if (diag->err[i].line > 0)
			snprintf(line, sizeof(line), "%s:%d: %s", diag->file, diag->err[i].line,
			    diag->err[i].msg);
		else
			snprintf(line, sizeof(line), "%s: %s", diag->file, diag->err[i].msg);
		out(line, arg);
	}
	if (diag->total > diag->n) {
		snprintf(line, sizeof(line), "%s: %zu more errors", diag->file,
		    diag->total - diag->n);
		out(line, arg);
	}
}

char *
config_credential_path(const char *name, char *out, size_t outlen)
{
	const char *dir = getenv("CREDENTIALS_DIRECTORY");
	int n;

	if (name[0] != '/' && dir != NULL && dir[0] != '\0')
		n = snprintf(out, outlen, "%s/%s", dir, name);
	else
		n = snprintf(out, outlen, "%s", name);
	return n >= 0 && (size_t)n < outlen ? out : NULL;
}

const char *
config_addr_format(const struct config_addr *a, char *out, size_t outlen)
{
	if (a->host[0] == '\0')
		snprintf(out, outlen, "(off)");
	else if (strchr(a->host, ':') != NULL)
		snprintf(out, outlen, "[%s]:%u", a->host, a->port);
	else
		snprintf(out, outlen, "%s:%u", a->host, a->port);
	return out;
}
