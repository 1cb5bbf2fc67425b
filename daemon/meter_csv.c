/*
 * meter_csv.c: the meter import format (meter_csv.h): CSV splitting in
 * place, the header's column map and the checks of one record, moved out
 * of ctl_meter.c so that they run, and are fuzzed, without a database.
 * Every field is checked for what it may hold before a row is built; the
 * messages name the field and the value.
 */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "meter_csv.h"

const char *const meter_csv_col_names[MC_NCOLS] = {
    "serial",       "type",           "transport",    "host",           "port",
    "hdlc",         "client_addr",    "server_addr",  "security",       "ek",
    "ak",           "password",       "system_title", "profile_period", "gateway",
    "primary_addr", "secondary_addr",
};

/* ---- validation ------------------------------------------------------------------ */

static bool
meter_is(const char *s, size_t n, const char *lit)
{
	return strlen(lit) == n && memcmp(s, lit, n) == 0;
}

/* One of the allowed words, returned as the static literal; NULL if none. */
static const char *
meter_word(const char *s, size_t n, const char *const *words)
{
	for (; *words != NULL; words++)
		if (meter_is(s, n, *words))
			return *words;
	return NULL;
}

/* Decimal integer in [lo, hi]; no sign, no spaces. */
static bool
meter_int(const char *s, size_t n, long lo, long hi, int *out)
{
	long v = 0;

	if (n == 0 || n > 9)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (s[i] - '0');
	}
	if (v < lo || v > hi)
		return false;
	*out = (int)v;
	return true;
}

static int
meter_hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = (char)tolower((unsigned char)c);
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* Hex string of exactly one of the byte lengths la or lb into out. */
static bool
meter_hex(const char *s, size_t n, size_t la, size_t lb, uint8_t *out, size_t *outlen)
{
	if (n != 2 * la && n != 2 * lb)
		return false;
	for (size_t i = 0; i < n / 2; i++) {
		int hi = meter_hexval(s[2 * i]), lo = meter_hexval(s[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return false;
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	*outlen = n / 2;
	return true;
}

/* Host names and addresses: printable, no spaces or separators. */
static bool
meter_hostname(const char *s, size_t n)
{
	if (n == 0 || n > 253)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (!(isalnum(c) || c == '.' || c == '-' || c == '_' || c == ':' || c == '[' ||
		      c == ']'))
			return false;
	}
	return true;
}

int
meter_csv_row_check(const struct meter_fields *f, struct meter_row *r, char *err, size_t errlen)
{
	static const char *const types[] = {"162", "282", "382M", "other", NULL};
	static const char *const transports[] = {"tcpip", "gprs", "mbus", "modbus", NULL};
	static const char *const policies[] = {"none", "lls", "hls-gmac", NULL};
	const char *v;
	size_t n;
	int x;

#define FIELD(c) (v = f->v[c], n = f->v[c] != NULL ? f->n[c] : 0)
#define BAD(...)                                                                                   \
	do {                                                                                       \
		snprintf(err, errlen, __VA_ARGS__);                                                \
		return -1;                                                                         \
	} while (0)

	memset(r, 0, sizeof(*r));
	r->primary = -1;

	FIELD(MC_SERIAL);
	if (n == 0)
		BAD("serial is empty");
	if (n > 32)
		BAD("serial longer than 32 characters");
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)v[i]) && v[i] != '.' && v[i] != '_' && v[i] != '-')
			BAD("serial '%.*s': only letters, digits, '.', '_' and '-' allowed", (int)n,
			    v);
	r->serial = v;
	r->serial_len = n;

	FIELD(MC_TYPE);
	r->type = n == 0 ? "other" : meter_word(v, n, types);
	if (r->type == NULL)
		BAD("type '%.*s': expected 162, 282, 382M or other", (int)n, v);

	FIELD(MC_TRANSPORT);
	if (n == 0)
		BAD("transport is empty (tcpip, gprs, mbus or modbus)");
	if ((r->transport = meter_word(v, n, transports)) == NULL)
		BAD("transport '%.*s': expected tcpip, gprs, mbus or modbus", (int)n, v);

	FIELD(MC_HOST);
	if (n > 0) {
		if (!meter_hostname(v, n))
			BAD("host '%.*s' is not a host name or address", (int)n, v);
		r->host = v;
		r->host_len = n;
	}
	FIELD(MC_PORT);
	if (n > 0 && !meter_int(v, n, 1, 65535, &r->port))
		BAD("port '%.*s': expected 1..65535", (int)n, v);

	FIELD(MC_HDLC);
	if (n == 0 || meter_is(v, n, "0") || meter_is(v, n, "false") || meter_is(v, n, "no"))
		r->hdlc = false;
	else if (meter_is(v, n, "1") || meter_is(v, n, "true") || meter_is(v, n, "yes"))
		r->hdlc = true;
	else
		BAD("hdlc '%.*s': expected 1/0, true/false or yes/no", (int)n, v);

	FIELD(MC_CLIENT);
	r->client_addr = 16;
	if (n > 0 && !meter_int(v, n, 0, 127, &r->client_addr))
		BAD("client_addr '%.*s': expected 0..127", (int)n, v);
	FIELD(MC_SERVER);
	r->server_addr = 1;
	if (n > 0 && !meter_int(v, n, 0, 16383, &r->server_addr))
		BAD("server_addr '%.*s': expected 0..16383", (int)n, v);

	FIELD(MC_SECURITY);
	r->security = n == 0 ? "none" : meter_word(v, n, policies);
	if (r->security == NULL)
		BAD("security '%.*s': expected none, lls or hls-gmac", (int)n, v);

	FIELD(MC_EK);
	if (n > 0 && !meter_hex(v, n, 16, 32, r->ek, &r->ek_len))
		BAD("ek: expected 32 or 64 hex digits");
	FIELD(MC_AK);
	if (n > 0 && !meter_hex(v, n, 16, 32, r->ak, &r->ak_len))
		BAD("ak: expected 32 or 64 hex digits");
	FIELD(MC_PASSWORD);
	if (n > 0) {
		if (n > 255)
			BAD("password longer than 255 bytes");
		r->password = v;
		r->password_len = n;
	}
	FIELD(MC_SYSTITLE);
	if (n > 0) {
		size_t l;
		if (!meter_hex(v, n, 8, 8, r->st, &l))
			BAD("system_title: expected 16 hex digits");
		r->has_st = true;
	}
	if (strcmp(r->security, "hls-gmac") == 0 && (r->ek_len == 0 || r->ak_len == 0))
		BAD("security hls-gmac needs both ek and ak");
	if (strcmp(r->security, "lls") == 0 && r->password == NULL)
		BAD("security lls needs a password");

	FIELD(MC_PERIOD);
	r->period = 900;
	if (n > 0 && (!meter_int(v, n, 1, 86400, &x) ||
	              (x != 60 && x != 300 && x != 600 && x != 900 && x != 1800 && x != 3600)))
		BAD("profile_period '%.*s': expected 60, 300, 600, 900, 1800 or 3600", (int)n, v);
	if (n > 0)
		r->period = x;

	FIELD(MC_GATEWAY);
	if (n > 0) {
		const char *colon = NULL;
		for (size_t i = 0; i < n; i++)
			if (v[i] == ':')
				colon = v + i;
		if (colon == NULL || colon == v || !meter_hostname(v, (size_t)(colon - v)) ||
		    !meter_int(colon + 1, n - (size_t)(colon - v) - 1, 1, 65535, &r->gw_port))
			BAD("gateway '%.*s': expected host:port", (int)n, v);
		r->gw = v;
		r->gw_len = n;
		r->gw_host_len = (size_t)(colon - v);
	}
	FIELD(MC_PRIMARY);
	if (n > 0 && !meter_int(v, n, 0, 250, &r->primary))
		BAD("primary_addr '%.*s': expected 0..250", (int)n, v);
	FIELD(MC_SECONDARY);
	if (n > 0) {
		uint8_t tmp[8];
		size_t l;
		if (!meter_hex(v, n, 8, 8, tmp, &l))
			BAD("secondary_addr '%.*s': expected 16 hex digits", (int)n, v);
		r->secondary = v;
	}

	/* What each transport needs to be reachable at all. */
	if (strcmp(r->transport, "tcpip") == 0) {
		if (r->host == NULL)
			BAD("transport tcpip needs a host");
		if (r->port == 0)
			r->port = 4059;
	}
	if (strcmp(r->transport, "mbus") == 0 || strcmp(r->transport, "modbus") == 0) {
		if (r->gw == NULL)
			BAD("transport %s needs a gateway (host:port)", r->transport);
		if (strcmp(r->transport, "mbus") == 0 && r->primary < 0 && r->secondary == NULL)
			BAD("transport mbus needs primary_addr or secondary_addr");
		if (strcmp(r->transport, "modbus") == 0 && r->primary < 1)
			BAD("transport modbus needs primary_addr (the unit id, 1..247)");
	} else if (r->gw != NULL || r->primary >= 0 || r->secondary != NULL) {
		BAD("gateway, primary_addr and secondary_addr are for mbus and modbus meters only");
	}
	return 0;
#undef FIELD
#undef BAD
}

/* ---- CSV ----------------------------------------------------------------------------- */

int
meter_csv_split(char *line, char **fv, size_t *fn, int max, char *err, size_t errlen)
{
	char *p = line, *w;
	int nf = 0;

	for (;;) {
		if (nf == max) {
			snprintf(err, errlen, "more than %d fields", max);
			return -1;
		}
		fv[nf] = w = p;
		if (*p == '"') {
			p++;
			for (;;) {
				if (*p == '\0') {
					snprintf(err, errlen, "unterminated quoted field %d",
					         nf + 1);
					return -1;
				}
				if (*p == '"') {
					if (p[1] == '"') {
						*w++ = '"';
						p += 2;
						continue;
					}
					p++;
					break;
				}
				*w++ = *p++;
			}
			if (*p != ',' && *p != '\0') {
				snprintf(err, errlen, "text after the closing quote of field %d",
				         nf + 1);
				return -1;
			}
		} else {
			while (*p != ',' && *p != '\0') {
				if (*p == '"') {
					snprintf(err, errlen, "quote inside unquoted field %d",
					         nf + 1);
					return -1;
				}
				*w++ = *p++;
			}
		}
		fn[nf] = (size_t)(w - fv[nf]);
		nf++;
		if (*p == '\0')
			return nf;
		p++; /* the comma */
	}
}

bool
meter_csv_skip(char *line, ssize_t *len)
{
	while (*len > 0 && (line[*len - 1] == '\n' || line[*len - 1] == '\r'))
		line[--*len] = '\0';
	return *len == 0 || line[0] == '#';
}

int
meter_csv_col_index(const char *s, size_t n)
{
	for (int i = 0; i < MC_NCOLS; i++)
		if (meter_is(s, n, meter_csv_col_names[i]))
			return i;
	return -1;
}

int
meter_csv_header(char *line, struct meter_csv_header *h, char *err, size_t errlen)
{
	char *fv[MC_NCOLS];
	size_t fn[MC_NCOLS];
	bool have[MC_NCOLS] = {false};
	int nkeys = 0;

	memset(h, 0, sizeof(*h));
	if ((h->ncols = meter_csv_split(line, fv, fn, MC_NCOLS, err, errlen)) < 0)
		return -1;
	for (int i = 0; i < h->ncols; i++) {
		h->map[i] = meter_csv_col_index(fv[i], fn[i]);
		if (h->map[i] < 0 || have[h->map[i]]) {
			snprintf(err, errlen, "%s column '%.*s'",
			         h->map[i] < 0 ? "unknown" : "repeated", (int)fn[i], fv[i]);
			return -1;
		}
		have[h->map[i]] = true;
		nkeys += h->map[i] == MC_EK || h->map[i] == MC_AK || h->map[i] == MC_PASSWORD ||
		         h->map[i] == MC_SYSTITLE;
	}
	if (!have[MC_SERIAL] || !have[MC_TRANSPORT]) {
		snprintf(err, errlen, "serial and transport columns are required");
		return -1;
	}
	h->keys = nkeys > 0;
	if (h->keys && nkeys != 4) {
		snprintf(err, errlen,
		         "ek, ak, password and system_title go together (all or none)");
		return -1;
	}
	return 0;
}

int
meter_csv_record(char *line, size_t len, const struct meter_csv_header *h, struct meter_fields *f,
                 char *err, size_t errlen)
{
	char *fv[MC_NCOLS + 1];
	size_t fn[MC_NCOLS + 1];
	int nf;

	if (len != strlen(line)) {
		snprintf(err, errlen, "NUL byte in line");
		return -1;
	}
	nf = meter_csv_split(line, fv, fn, MC_NCOLS + 1, err, errlen);
	if (nf < 0)
		return -1;
	if (nf != h->ncols) {
		snprintf(err, errlen, "%d fields, the header has %d", nf, h->ncols);
		return -1;
	}
	memset(f, 0, sizeof(*f));
	for (int i = 0; i < h->ncols; i++) {
		f->v[h->map[i]] = fv[i];
		f->n[h->map[i]] = fn[i];
	}
	return 0;
}
