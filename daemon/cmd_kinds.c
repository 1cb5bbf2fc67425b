/*
 * cmd_kinds.c: the command kinds — parameter checks and the DLMS plan of
 * each (read before, act, read back, verify) as a step machine over a
 * dlms_client.  No I/O and no database here: the session feeds engine
 * events in, the command queue (command.c) stores what comes out.
 *
 * Exactly-once credit_add.  A Kamstrup prepayment meter counts credit down
 * in kWh: every Wh the A+ register gains is a Wh the credit loses, so
 * S = credit + A+ stays constant except when credit is added or set.  The
 * plan therefore reads credit and A+ in one GET-with-list (one instant on
 * the meter), and before sending update_amount it hands the baseline S0
 * to the queue as a checkpoint that must be committed first.  Then, when
 * ammd dies anywhere in the command:
 *   - before the checkpoint is committed: nothing was sent; the retry has
 *     no baseline and starts afresh;
 *   - after the commit, before or after the ACTION reached the meter: the
 *     retry has S0, reads S1 and knows the credit was applied iff
 *     S1 - S0 is near the amount (it is near 0 otherwise); it sends the
 *     ACTION only in the second case and verifies against S0 either way.
 * The decision needs the amount to stand clear of the register's
 * resolution (CMDK_CREDIT_MIN_ADD, and 4x the resolution at run time), and
 * it assumes that no other credit change happens on the meter between the
 * attempts: the queue runs one command per meter at a time, oldest first,
 * and a 382M has no keypad.  A second command with the same transaction id
 * is refused by the database (unique idempotency key), so operators'
 * retries cannot credit twice either.
 */
#include "cmd_kinds.h"

#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "axdr.h"
#include "axdr_json.h"
#include "config.h"
#include "cosem_time.h"
#include "json.h"
#include "meter_error.h"
#include "xdlms.h"

/* ---- kinds -------------------------------------------------------------------- */

static const char *const kind_names[CMDK_NKINDS] = {
    "disconnect",   "reconnect",    "credit_add", "credit_set", "payment_mode", "tariff_calendar",
    "tariff_force", "special_days", "limiter",    "clock_sync", "read_now",
};

static const char *const kind_groups[CMDK_NKINDS] = {
    "disconnect", "reconnect", "credit",  "credit",     "payment_mode", "tariff",
    "tariff",     "tariff",    "limiter", "clock_sync", "read_now",
};

const char *
cmdk_name(int kind)
{
	return kind >= 0 && kind < CMDK_NKINDS ? kind_names[kind] : NULL;
}

int
cmdk_by_name(const char *name)
{
	for (int i = 0; name != NULL && i < CMDK_NKINDS; i++)
		if (strcmp(name, kind_names[i]) == 0)
			return i;
	return -1;
}

const char *
cmdk_cap_group(int kind)
{
	return kind >= 0 && kind < CMDK_NKINDS ? kind_groups[kind] : NULL;
}

int
cmdk_cap_per_minute(const struct config *cfg, int kind)
{
	switch (kind) {
	case CMDK_DISCONNECT:
		return cfg->commands.disconnect_per_minute;
	case CMDK_RECONNECT:
		return cfg->commands.reconnect_per_minute;
	case CMDK_CREDIT_ADD:
	case CMDK_CREDIT_SET:
		return cfg->commands.credit_per_minute;
	case CMDK_PAYMENT_MODE:
		return cfg->commands.payment_mode_per_minute;
	case CMDK_TARIFF_CALENDAR:
	case CMDK_TARIFF_FORCE:
	case CMDK_SPECIAL_DAYS:
		return cfg->commands.tariff_per_minute;
	case CMDK_LIMITER:
		return cfg->commands.limiter_per_minute;
	case CMDK_CLOCK_SYNC:
		return cfg->commands.clock_sync_per_minute;
	case CMDK_READ_NOW:
		return cfg->commands.read_now_per_minute;
	}
	return 0;
}

/* ---- JSON reader ---------------------------------------------------------------- */

struct cjp {
	const char *p;
	struct cj *nodes;
	size_t cap, used;
	int depth;
};

static void
cj_ws(struct cjp *c)
{
	while (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r')
		c->p++;
}

static int cj_value(struct cjp *c);

static int
cj_string(struct cjp *c)
{
	if (c->used >= c->cap)
		return METER_ELIMIT;
	struct cj *n = &c->nodes[c->used++];
	memset(n, 0, sizeof(*n));
	n->type = CJ_STR;
	n->span = 1;
	const char *s = ++c->p;
	while (*c->p != '"') {
		if ((unsigned char)*c->p < 0x20)
			return METER_EMALFORMED; /* NUL (end) or a raw control character */
		if (*c->p == '\\') {
			c->p++;
			if (*c->p == 'u') {
				for (int i = 1; i <= 4; i++)
					if (!isxdigit((unsigned char)c->p[i]))
						return METER_EMALFORMED;
				c->p += 4;
			} else if (strchr("\"\\/bfnrt", *c->p) == NULL || *c->p == '\0') {
				return METER_EMALFORMED;
			}
		}
		c->p++;
	}
	n->s = s;
	n->n = (uint32_t)(c->p - s);
	c->p++;
	return 0;
}

static int
cj_value(struct cjp *c)
{
	cj_ws(c);
	if (*c->p == '"')
		return cj_string(c);
	if (c->used >= c->cap)
		return METER_ELIMIT;
	size_t me = c->used++;
	struct cj *n = &c->nodes[me];
	memset(n, 0, sizeof(*n));
	n->span = 1;
	if (*c->p == '{' || *c->p == '[') {
		bool obj = *c->p == '{';
		char close = obj ? '}' : ']';
		if (++c->depth > 32)
			return METER_ELIMIT;
		n->type = obj ? CJ_OBJ : CJ_ARR;
		c->p++;
		cj_ws(c);
		uint32_t count = 0;
		if (*c->p == close) {
			c->p++;
		} else {
			for (;;) {
				int rc;
				if (obj) {
					cj_ws(c);
					if (*c->p != '"')
						return METER_EMALFORMED;
					if ((rc = cj_string(c)) < 0)
						return rc;
					cj_ws(c);
					if (*c->p++ != ':')
						return METER_EMALFORMED;
				}
				if ((rc = cj_value(c)) < 0)
					return rc;
				count++;
				cj_ws(c);
				if (*c->p == ',') {
					c->p++;
					continue;
				}
				if (*c->p != close)
					return METER_EMALFORMED;
				c->p++;
				break;
			}
		}
		c->depth--;
		c->nodes[me].n = count;
		c->nodes[me].span = (uint32_t)(c->used - me);
		return 0;
	}
	if (strncmp(c->p, "true", 4) == 0 || strncmp(c->p, "false", 5) == 0) {
		n->type = CJ_BOOL;
		n->b = c->p[0] == 't';
		c->p += n->b ? 4 : 5;
		return 0;
	}
	if (strncmp(c->p, "null", 4) == 0) {
		n->type = CJ_NULL;
		c->p += 4;
		return 0;
	}
	if (*c->p == '-' || isdigit((unsigned char)*c->p)) {
		char *end;
		n->type = CJ_NUM;
		n->s = c->p;
		n->num = strtod(c->p, &end);
		if (end == c->p || !isfinite(n->num))
			return METER_EMALFORMED;
		n->n = (uint32_t)(end - c->p);
		c->p = end;
		return 0;
	}
	return METER_EMALFORMED;
}

int
cj_parse(const char *text, struct cj *nodes, size_t cap)
{
	struct cjp c = {.p = text, .nodes = nodes, .cap = cap};
	int rc = cj_value(&c);
	if (rc < 0)
		return rc;
	cj_ws(&c);
	if (*c.p != '\0')
		return METER_EMALFORMED;
	return (int)c.used;
}

const struct cj *
cj_at(const struct cj *a, uint32_t i)
{
	if (a == NULL || (a->type != CJ_ARR && a->type != CJ_OBJ) || i >= a->n)
		return NULL;
	const struct cj *n = a + 1;
	for (uint32_t k = 0; k < i; k++) {
		if (a->type == CJ_OBJ)
			n += n->span; /* the key */
		n += n->span;
	}
	if (a->type == CJ_OBJ)
		n += n->span;
	return n;
}

static bool
cj_key_is(const struct cj *k, const char *key)
{
	return k->n == strlen(key) && memcmp(k->s, key, k->n) == 0;
}

const struct cj *
cj_get(const struct cj *obj, const char *key)
{
	if (obj == NULL || obj->type != CJ_OBJ)
		return NULL;
	const struct cj *n = obj + 1;
	for (uint32_t k = 0; k < obj->n; k++) {
		const struct cj *v = n + n->span;
		if (cj_key_is(n, key))
			return v;
		n = v + v->span;
	}
	return NULL;
}

static void
put_utf8(char **o, unsigned cp)
{
	if (cp < 0x80) {
		*(*o)++ = (char)cp;
	} else if (cp < 0x800) {
		*(*o)++ = (char)(0xc0 | cp >> 6);
		*(*o)++ = (char)(0x80 | (cp & 0x3f));
	} else {
		*(*o)++ = (char)(0xe0 | cp >> 12);
		*(*o)++ = (char)(0x80 | ((cp >> 6) & 0x3f));
		*(*o)++ = (char)(0x80 | (cp & 0x3f));
	}
}

bool
cj_str(const struct cj *n, char *out, size_t outlen)
{
	if (n == NULL || n->type != CJ_STR || outlen == 0)
		return false;
	char *o = out, *end = out + outlen - 1;
	for (uint32_t i = 0; i < n->n; i++) {
		if (end - o < 3)
			return false;
		char ch = n->s[i];
		if (ch != '\\') {
			*o++ = ch;
			continue;
		}
		ch = n->s[++i];
		switch (ch) {
		case 'b':
			*o++ = '\b';
			break;
		case 'f':
			*o++ = '\f';
			break;
		case 'n':
			*o++ = '\n';
			break;
		case 'r':
			*o++ = '\r';
			break;
		case 't':
			*o++ = '\t';
			break;
		case 'u': {
			char hex[5] = {n->s[i + 1], n->s[i + 2], n->s[i + 3], n->s[i + 4], 0};
			unsigned cp = (unsigned)strtoul(hex, NULL, 16);
			if (cp == 0)
				return false;
			put_utf8(&o, cp);
			i += 4;
			break;
		}
		default:
			*o++ = ch;
		}
	}
	*o = '\0';
	return true;
}

/* ---- parameter checks ------------------------------------------------------------- */

#define CMDK_NODES 4096

struct chk {
	const char *kind;
	char *err;
	size_t errlen;
	bool bad;
};

static int chk_fail(struct chk *k, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int
chk_fail(struct chk *k, const char *fmt, ...)
{
	if (!k->bad) {
		va_list ap;
		int n = snprintf(k->err, k->errlen, "%s: ", k->kind);
		va_start(ap, fmt);
		if (n >= 0 && (size_t)n < k->errlen)
			vsnprintf(k->err + n, k->errlen - (size_t)n, fmt, ap);
		va_end(ap);
	}
	k->bad = true;
	return METER_EINVAL;
}

/* Every member of obj must be one of the allowed keys (NULL-terminated). */
static int
chk_keys(struct chk *k, const struct cj *obj, const char *where, const char *const *allowed)
{
	if (obj->type != CJ_OBJ)
		return chk_fail(k, "%s must be a JSON object", where);
	const struct cj *n = obj + 1;
	for (uint32_t i = 0; i < obj->n; i++) {
		const struct cj *v = n + n->span;
		bool found = false;
		for (const char *const *a = allowed; *a != NULL; a++)
			found |= cj_key_is(n, *a);
		if (!found) {
			char name[64];
			if (!cj_str(n, name, sizeof(name)))
				snprintf(name, sizeof(name), "(long key)");
			char list[256] = "";
			for (const char *const *a = allowed; *a != NULL; a++) {
				strncat(list, a == allowed ? "" : ", ",
				        sizeof(list) - strlen(list) - 1);
				strncat(list, *a, sizeof(list) - strlen(list) - 1);
			}
			return chk_fail(k, "%sunknown parameter '%s' (allowed: %s)", where, name,
			                *list ? list : "none");
		}
		n = v + v->span;
	}
	return 0;
}

/* An integer member in [lo, hi]; absent: *out = dflt (required when dflt
 * is INT64_MIN). */
static int
chk_int(struct chk *k, const struct cj *obj, const char *key, const char *where, int64_t lo,
        int64_t hi, int64_t dflt, int64_t *out)
{
	const struct cj *v = cj_get(obj, key);
	if (v == NULL) {
		if (dflt == INT64_MIN)
			return chk_fail(k, "%s%s is required", where, key);
		*out = dflt;
		return 0;
	}
	if (v->type != CJ_NUM || v->num != floor(v->num))
		return chk_fail(k, "%s%s must be an integer", where, key);
	if (v->num < (double)lo || v->num > (double)hi) {
		if (lo == 0 && v->num < 0)
			return chk_fail(k, "%s%s must not be negative (got %.0f)", where, key,
			                v->num);
		return chk_fail(k, "%s%s %.0f out of range %lld..%lld", where, key, v->num,
		                (long long)lo, (long long)hi);
	}
	*out = (int64_t)v->num;
	return 0;
}

static int
chk_str(struct chk *k, const struct cj *obj, const char *key, const char *where, char *out,
        size_t outlen, bool required)
{
	const struct cj *v = cj_get(obj, key);
	if (v == NULL) {
		if (required)
			return chk_fail(k, "%s%s is required", where, key);
		out[0] = '\0';
		return 0;
	}
	if (v->type != CJ_STR)
		return chk_fail(k, "%s%s must be a string", where, key);
	if (!cj_str(v, out, outlen))
		return chk_fail(k, "%s%s is longer than %zu characters", where, key, outlen - 1);
	return 0;
}

/* "YYYY-MM-DDTHH:MM[:SS]Z" (UTC, or with +HH:MM/-HH:MM) to UTC seconds. */
static bool
parse_iso(const char *s, int64_t *out)
{
	int y, mo, d, h, mi, sec = 0, n = 0;
	if (sscanf(s, "%4d-%2d-%2d%*1[T ]%2d:%2d%n", &y, &mo, &d, &h, &mi, &n) != 5)
		return false;
	s += n;
	if (*s == ':') {
		if (sscanf(s, ":%2d%n", &sec, &n) != 1)
			return false;
		s += n;
	}
	int off = 0;
	if (*s == 'Z') {
		s++;
	} else if (*s == '+' || *s == '-') {
		int oh, om;
		if (sscanf(s + 1, "%2d:%2d%n", &oh, &om, &n) != 2)
			return false;
		off = (oh * 60 + om) * (*s == '-' ? -1 : 1);
		s += 1 + n;
	} else {
		return false;
	}
	if (*s != '\0' || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 59 ||
	    y < 2000 || y > 2099)
		return false;
	*out = cosem_days_from_civil(y, (unsigned)mo, (unsigned)d) * 86400 + h * 3600 + mi * 60 +
	       sec - off * 60;
	return true;
}

static const uint8_t days_in_month[13] = {0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};

static int
parse_reconnect(struct chk *k, const struct cj *o, struct cmdk_params *p)
{
	static const char *const keys[] = {"mode", "control_mode", NULL};
	char mode[16];
	int64_t cm;
	if (chk_keys(k, o, "", keys) || chk_str(k, o, "mode", "", mode, sizeof(mode), false) ||
	    chk_int(k, o, "control_mode", "", 1, 6, -1, &cm))
		return METER_EINVAL;
	if (mode[0] == '\0' || strcmp(mode, "remote") == 0)
		p->u.reconnect.mode = CMDK_RECONNECT_REMOTE;
	else if (strcmp(mode, "release") == 0)
		p->u.reconnect.mode = CMDK_RECONNECT_RELEASE;
	else
		return chk_fail(k, "mode '%s' is neither 'remote' nor 'release'", mode);
	/* Control modes with transition d reconnect directly (1, 3, 5, 6);
	 * 2 and 4 have a instead: reconnection by the consumer's button. */
	if (cm > 0) {
		bool direct = cm != 2 && cm != 4;
		if (direct != (p->u.reconnect.mode == CMDK_RECONNECT_REMOTE))
			return chk_fail(k, "control_mode %lld does not %s; use %s", (long long)cm,
			                direct ? "release for the button" : "reconnect remotely",
			                direct ? "2 or 4" : "1, 3, 5 or 6");
	}
	p->u.reconnect.control_mode = (int)cm;
	return 0;
}

static int
parse_credit(struct chk *k, const struct cj *o, struct cmdk_params *p, bool add)
{
	static const char *const add_keys[] = {"amount_wh", "transaction_id", NULL};
	static const char *const set_keys[] = {"amount_wh", NULL};
	if (chk_keys(k, o, "", add ? add_keys : set_keys) ||
	    chk_int(k, o, "amount_wh", "", add ? CMDK_CREDIT_MIN_ADD : 0, CMDK_CREDIT_MAX_WH,
	            INT64_MIN, &p->u.credit.amount_wh))
		return METER_EINVAL;
	if (!add)
		return 0;
	if (chk_str(k, o, "transaction_id", "", p->u.credit.txid, sizeof(p->u.credit.txid), true))
		return METER_EINVAL;
	if (p->u.credit.txid[0] == '\0')
		return chk_fail(k, "transaction_id must not be empty");
	for (const char *s = p->u.credit.txid; *s; s++)
		if (!isgraph((unsigned char)*s))
			return chk_fail(k, "transaction_id may hold printable characters only");
	return 0;
}

static int
parse_payment(struct chk *k, const struct cj *o, struct cmdk_params *p)
{
	static const char *const keys[] = {"mode", NULL};
	char mode[16];
	if (chk_keys(k, o, "", keys) || chk_str(k, o, "mode", "", mode, sizeof(mode), true))
		return METER_EINVAL;
	if (strcmp(mode, "credit") == 0)
		p->u.payment.mode = 1;
	else if (strcmp(mode, "prepayment") == 0)
		p->u.payment.mode = 2;
	else
		return chk_fail(k, "mode '%s' is neither 'credit' nor 'prepayment'", mode);
	return 0;
}

static int
parse_mmdd(const char *s, uint8_t *m, uint8_t *d)
{
	int mm, dd, n = 0;
	if (sscanf(s, "%2d-%2d%n", &mm, &dd, &n) != 2 || s[n] != '\0' || mm < 1 || mm > 12 ||
	    dd < 1 || dd > days_in_month[mm])
		return -1;
	*m = (uint8_t)mm;
	*d = (uint8_t)dd;
	return 0;
}

static int
parse_calendar(struct chk *k, const struct cj *o, int64_t now, struct cmdk_params *p)
{
	static const char *const keys[] = {"name", "seasons", "weeks", "days", "activate_at", NULL};
	static const char *const skeys[] = {"name", "start", "week", NULL};
	static const char *const wkeys[] = {"name", "days", NULL};
	static const char *const dkeys[] = {"id", "actions", NULL};
	static const char *const akeys[] = {"at", "tariff", NULL};
	const struct cj *seasons = cj_get(o, "seasons"), *weeks = cj_get(o, "weeks"),
	                *days = cj_get(o, "days");
	char w[48], buf[32];
	int64_t v;
	typeof(p->u.calendar) *c = &p->u.calendar;

	if (chk_keys(k, o, "", keys) || chk_str(k, o, "name", "", c->name, sizeof(c->name), true))
		return METER_EINVAL;
	if (days == NULL || days->type != CJ_ARR || days->n == 0)
		return chk_fail(k, "days must be a non-empty array of day profiles");
	if (days->n > CMDK_MAX_DAYS)
		return chk_fail(k, "%u day profiles, at most %d", days->n, CMDK_MAX_DAYS);
	for (uint32_t i = 0; i < days->n; i++) {
		const struct cj *d = cj_at(days, i), *acts = cj_get(d, "actions");
		snprintf(w, sizeof(w), "days[%u].", i);
		if (chk_keys(k, d, w, dkeys) || chk_int(k, d, "id", w, 0, 255, INT64_MIN, &v))
			return METER_EINVAL;
		c->day[i].id = (uint8_t)v;
		for (uint32_t j = 0; j < i; j++)
			if (c->day[j].id == c->day[i].id)
				return chk_fail(k, "%sid %u used twice", w, c->day[i].id);
		if (acts == NULL || acts->type != CJ_ARR || acts->n == 0)
			return chk_fail(k, "%sactions must be a non-empty array", w);
		if (acts->n > CMDK_MAX_ACTIONS)
			return chk_fail(k, "%s%u switching times, at most %d", w, acts->n,
			                CMDK_MAX_ACTIONS);
		c->day[i].n = (uint8_t)acts->n;
		for (uint32_t j = 0; j < acts->n; j++) {
			const struct cj *a = cj_at(acts, j);
			char wa[80];
			int hh, mm, n = 0;
			snprintf(wa, sizeof(wa), "%sactions[%u].", w, j);
			if (chk_keys(k, a, wa, akeys) ||
			    chk_str(k, a, "at", wa, buf, sizeof(buf), true))
				return METER_EINVAL;
			if (sscanf(buf, "%2d:%2d%n", &hh, &mm, &n) != 2 || buf[n] != '\0' ||
			    hh < 0 || hh > 23 || mm < 0 || mm > 59)
				return chk_fail(k, "%sat '%s' is not a time HH:MM", wa, buf);
			const struct cj *t = cj_get(a, "tariff");
			if (t != NULL && t->type == CJ_NUM && t->num == floor(t->num) &&
			    (t->num < 1 || t->num > CMDK_MAX_TARIFFS))
				return chk_fail(
				    k,
				    "%stariff %.0f out of 1..%d (a meter has at most %d tariffs)",
				    wa, t->num, CMDK_MAX_TARIFFS, CMDK_MAX_TARIFFS);
			if (chk_int(k, a, "tariff", wa, 1, CMDK_MAX_TARIFFS, INT64_MIN, &v))
				return METER_EINVAL;
			struct cmdk_action *ac = &c->day[i].a[j];
			ac->hour = (uint8_t)hh;
			ac->minute = (uint8_t)mm;
			ac->tariff = (uint8_t)v;
			if (j > 0 && hh * 60 + mm <= ac[-1].hour * 60 + ac[-1].minute)
				return chk_fail(
				    k, "%sat %s is not after the previous switching time", wa, buf);
		}
	}
	c->n_days = (uint8_t)days->n;
	if (weeks == NULL || weeks->type != CJ_ARR || weeks->n == 0)
		return chk_fail(k, "weeks must be a non-empty array of week profiles");
	if (weeks->n > CMDK_MAX_WEEKS)
		return chk_fail(k, "%u week profiles, at most %d", weeks->n, CMDK_MAX_WEEKS);
	for (uint32_t i = 0; i < weeks->n; i++) {
		const struct cj *wk = cj_at(weeks, i), *wd = cj_get(wk, "days");
		snprintf(w, sizeof(w), "weeks[%u].", i);
		if (chk_keys(k, wk, w, wkeys) ||
		    chk_str(k, wk, "name", w, c->week[i].name, sizeof(c->week[i].name), true))
			return METER_EINVAL;
		if (wd == NULL || wd->type != CJ_ARR || wd->n != 7)
			return chk_fail(k, "%sdays must list 7 day ids, Monday first", w);
		for (uint32_t j = 0; j < 7; j++) {
			const struct cj *id = cj_at(wd, j);
			bool found = false;
			for (unsigned d = 0; id && id->type == CJ_NUM && d < c->n_days; d++)
				found |= c->day[d].id == id->num;
			if (!found)
				return chk_fail(k, "%sdays[%u] names no day profile", w, j);
			c->week[i].day[j] = (uint8_t)id->num;
		}
		for (uint32_t j = 0; j < i; j++)
			if (strcmp(c->week[j].name, c->week[i].name) == 0)
				return chk_fail(k, "%sname '%s' used twice", w, c->week[i].name);
	}
	c->n_weeks = (uint8_t)weeks->n;
	if (seasons == NULL || seasons->type != CJ_ARR || seasons->n == 0)
		return chk_fail(k, "seasons must be a non-empty array");
	if (seasons->n > CMDK_MAX_SEASONS)
		return chk_fail(k, "%u seasons, at most %d", seasons->n, CMDK_MAX_SEASONS);
	for (uint32_t i = 0; i < seasons->n; i++) {
		const struct cj *s = cj_at(seasons, i);
		char wn[9];
		snprintf(w, sizeof(w), "seasons[%u].", i);
		if (chk_keys(k, s, w, skeys) ||
		    chk_str(k, s, "name", w, c->season[i].name, sizeof(c->season[i].name), true) ||
		    chk_str(k, s, "start", w, buf, sizeof(buf), true) ||
		    chk_str(k, s, "week", w, wn, sizeof(wn), true))
			return METER_EINVAL;
		if (parse_mmdd(buf, &c->season[i].month, &c->season[i].day) < 0)
			return chk_fail(k, "%sstart '%s' is not a date MM-DD", w, buf);
		if (i > 0 && c->season[i].month * 32 + c->season[i].day <=
		                 c->season[i - 1].month * 32 + c->season[i - 1].day)
			return chk_fail(k, "%sstart %s is not after the previous season's", w, buf);
		unsigned j;
		for (j = 0; j < c->n_weeks && strcmp(c->week[j].name, wn) != 0; j++)
			;
		if (j == c->n_weeks)
			return chk_fail(k, "%sweek '%s' names no week profile", w, wn);
		c->season[i].week = (uint8_t)j;
	}
	c->n_seasons = (uint8_t)seasons->n;
	c->activate_at = 0;
	if (chk_str(k, o, "activate_at", "", buf, sizeof(buf), false))
		return METER_EINVAL;
	if (buf[0] != '\0' && strcmp(buf, "now") != 0) {
		if (!parse_iso(buf, &c->activate_at))
			return chk_fail(
			    k, "activate_at '%s' is not a UTC time YYYY-MM-DDTHH:MM:SSZ", buf);
		if (c->activate_at <= now)
			return chk_fail(
			    k, "activate_at %s is in the past (leave it out to activate at once)",
			    buf);
	}
	return 0;
}

static int
parse_special(struct chk *k, const struct cj *o, struct cmdk_params *p)
{
	static const char *const keys[] = {"days", NULL};
	static const char *const dkeys[] = {"date", "day_id", NULL};
	const struct cj *days = cj_get(o, "days");
	char w[32], buf[32];
	int64_t v;

	if (chk_keys(k, o, "", keys))
		return METER_EINVAL;
	if (days == NULL || days->type != CJ_ARR)
		return chk_fail(k, "days must be an array (empty clears the table)");
	if (days->n > CMDK_MAX_SPECIAL)
		return chk_fail(k, "%u special days, at most %d", days->n, CMDK_MAX_SPECIAL);
	for (uint32_t i = 0; i < days->n; i++) {
		const struct cj *d = cj_at(days, i);
		struct cmdk_special *s = &p->u.special.d[i];
		int y, m, dd, n = 0;
		snprintf(w, sizeof(w), "days[%u].", i);
		if (chk_keys(k, d, w, dkeys) || chk_str(k, d, "date", w, buf, sizeof(buf), true) ||
		    chk_int(k, d, "day_id", w, 0, 255, INT64_MIN, &v))
			return METER_EINVAL;
		if (buf[0] == '*' && sscanf(buf, "*-%2d-%2d%n", &m, &dd, &n) == 2 && buf[n] == '\0')
			y = 0xffff;
		else if (sscanf(buf, "%4d-%2d-%2d%n", &y, &m, &dd, &n) != 3 || buf[n] != '\0' ||
		         y < 2000 || y > 2099)
			return chk_fail(k, "%sdate '%s' is neither YYYY-MM-DD nor *-MM-DD", w, buf);
		if (m < 1 || m > 12 || dd < 1 || dd > days_in_month[m])
			return chk_fail(k, "%sdate '%s' does not exist", w, buf);
		s->year = (uint16_t)y;
		s->month = (uint8_t)m;
		s->day = (uint8_t)dd;
		s->day_id = (uint8_t)v;
		for (uint32_t j = 0; j < i; j++)
			if (p->u.special.d[j].year == s->year &&
			    p->u.special.d[j].month == s->month && p->u.special.d[j].day == s->day)
				return chk_fail(k, "%sdate %s listed twice", w, buf);
	}
	p->u.special.n = (uint8_t)days->n;
	return 0;
}

static int
parse_limiter(struct chk *k, const struct cj *o, struct cmdk_params *p)
{
	static const char *const keys[] = {"threshold_normal_w", "threshold_emergency_w",
	                                   "min_over_s", "min_under_s", NULL};
	typeof(p->u.limiter) *l = &p->u.limiter;
	if (chk_keys(k, o, "", keys) ||
	    chk_int(k, o, "threshold_normal_w", "", 0, CMDK_LIMIT_MAX_W, -1, &l->normal_w) ||
	    chk_int(k, o, "threshold_emergency_w", "", 0, CMDK_LIMIT_MAX_W, -1, &l->emergency_w) ||
	    chk_int(k, o, "min_over_s", "", 0, CMDK_DURATION_MAX_S, -1, &l->min_over_s) ||
	    chk_int(k, o, "min_under_s", "", 0, CMDK_DURATION_MAX_S, -1, &l->min_under_s))
		return METER_EINVAL;
	if (l->normal_w < 0 && l->emergency_w < 0 && l->min_over_s < 0 && l->min_under_s < 0)
		return chk_fail(k,
		                "nothing to set: give threshold_normal_w, threshold_emergency_w, "
		                "min_over_s or min_under_s");
	if (l->normal_w > 0 && l->emergency_w > l->normal_w)
		return chk_fail(k, "threshold_emergency_w %lld is above threshold_normal_w %lld",
		                (long long)l->emergency_w, (long long)l->normal_w);
	return 0;
}

static int
parse_read(struct chk *k, const struct cj *o, struct cmdk_params *p)
{
	static const char *const keys[] = {"registers", "profile", "events", NULL};
	static const char *const pkeys[] = {"obis", "from", "to", NULL};
	typeof(p->u.read) *r = &p->u.read;
	const struct cj *regs = cj_get(o, "registers"), *prof = cj_get(o, "profile"),
	                *ev = cj_get(o, "events");
	char buf[40];

	if (chk_keys(k, o, "", keys))
		return METER_EINVAL;
	if (regs != NULL) {
		if (regs->type != CJ_ARR || regs->n == 0)
			return chk_fail(k, "registers must be a non-empty array of OBIS codes");
		if (regs->n > CMDK_MAX_REGISTERS)
			return chk_fail(k, "%u registers, at most %d", regs->n, CMDK_MAX_REGISTERS);
		for (uint32_t i = 0; i < regs->n; i++) {
			if (!cj_str(cj_at(regs, i), buf, sizeof(buf)) ||
			    obis_parse(buf, &r->registers[i]) != 0)
				return chk_fail(k, "registers[%u] is not an OBIS code A-B:C.D.E.F",
				                i);
		}
		r->n_registers = (uint8_t)regs->n;
	}
	if (prof != NULL) {
		if (chk_keys(k, prof, "profile.", pkeys) ||
		    chk_str(k, prof, "obis", "profile.", buf, sizeof(buf), false))
			return METER_EINVAL;
		r->profile_obis = OBIS(1, 0, 99, 1, 0, 255);
		if (buf[0] && obis_parse(buf, &r->profile_obis) != 0)
			return chk_fail(k, "profile.obis '%s' is not an OBIS code", buf);
		if (chk_str(k, prof, "from", "profile.", buf, sizeof(buf), true))
			return METER_EINVAL;
		if (!parse_iso(buf, &r->from))
			return chk_fail(k, "profile.from '%s' is not a UTC time", buf);
		if (chk_str(k, prof, "to", "profile.", buf, sizeof(buf), true))
			return METER_EINVAL;
		if (!parse_iso(buf, &r->to))
			return chk_fail(k, "profile.to '%s' is not a UTC time", buf);
		if (r->to <= r->from)
			return chk_fail(k, "profile.to is not after profile.from");
		if (r->to - r->from > 31 * 86400)
			return chk_fail(k, "profile range longer than 31 days");
		r->profile = true;
	}
	if (ev != NULL) {
		static const uint8_t logs[] = {0, 1, 2, 4, 7};
		if (ev->type != CJ_ARR || ev->n == 0 || ev->n > CMDK_MAX_LOGS)
			return chk_fail(k, "events must be an array of 1..%d logs (0, 1, 2, 4, 7)",
			                CMDK_MAX_LOGS);
		for (uint32_t i = 0; i < ev->n; i++) {
			const struct cj *e = cj_at(ev, i);
			bool ok = false;
			for (size_t j = 0; e && e->type == CJ_NUM && j < sizeof(logs); j++)
				ok |= e->num == logs[j];
			if (!ok)
				return chk_fail(k,
				                "events[%u] is no event log (0 standard, 1 fraud, "
				                "2 disconnector, 4 voltage quality, 7 clock)",
				                i);
			r->logs[i] = (uint8_t)e->num;
		}
		r->n_logs = (uint8_t)ev->n;
	}
	if (r->n_registers == 0 && !r->profile && r->n_logs == 0)
		return chk_fail(k, "nothing to read: give registers, profile or events");
	return 0;
}

int
cmdk_parse(int kind, const char *json, int64_t now, struct cmdk_params *p, char *err, size_t errlen)
{
	static const char *const none[] = {NULL};
	struct chk k = {.kind = cmdk_name(kind), .err = err, .errlen = errlen};
	struct cj *nodes;
	int n, rc = 0;
	int64_t v = 0;

	memset(p, 0, sizeof(*p));
	p->kind = kind;
	if (k.kind == NULL) {
		snprintf(err, errlen, "unknown command kind");
		return METER_EINVAL;
	}
	if (json == NULL || *json == '\0')
		json = "{}";
	if ((nodes = calloc(CMDK_NODES, sizeof(*nodes))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return METER_ENOSPC;
	}
	if ((n = cj_parse(json, nodes, CMDK_NODES)) < 0) {
		rc = chk_fail(&k, "parameters are not valid JSON%s",
		              n == METER_ELIMIT ? " (too large or too deep)" : "");
		goto done;
	}
	if (nodes[0].type != CJ_OBJ) {
		rc = chk_fail(&k, "parameters must be a JSON object");
		goto done;
	}
	switch (kind) {
	case CMDK_DISCONNECT:
		rc = chk_keys(&k, nodes, "", none);
		break;
	case CMDK_RECONNECT:
		rc = parse_reconnect(&k, nodes, p);
		break;
	case CMDK_CREDIT_ADD:
		rc = parse_credit(&k, nodes, p, true);
		break;
	case CMDK_CREDIT_SET:
		rc = parse_credit(&k, nodes, p, false);
		break;
	case CMDK_PAYMENT_MODE:
		rc = parse_payment(&k, nodes, p);
		break;
	case CMDK_TARIFF_CALENDAR:
		rc = parse_calendar(&k, nodes, now, p);
		break;
	case CMDK_TARIFF_FORCE: {
		static const char *const keys[] = {"tariff", NULL};
		rc = chk_keys(&k, nodes, "", keys);
		if (!rc)
			rc = chk_int(&k, nodes, "tariff", "", 1, CMDK_MAX_TARIFFS, INT64_MIN, &v);
		p->u.force.tariff = (uint8_t)v;
		break;
	}
	case CMDK_SPECIAL_DAYS:
		rc = parse_special(&k, nodes, p);
		break;
	case CMDK_LIMITER:
		rc = parse_limiter(&k, nodes, p);
		break;
	case CMDK_CLOCK_SYNC: {
		static const char *const keys[] = {"max_step_s", NULL};
		rc = chk_keys(&k, nodes, "", keys);
		if (!rc)
			rc = chk_int(&k, nodes, "max_step_s", "", 1, 366 * 86400, 0,
			             &p->u.clock.max_step_s);
		break;
	}
	case CMDK_READ_NOW:
		rc = parse_read(&k, nodes, p);
		break;
	}
done:
	free(nodes);
	return rc ? METER_EINVAL : 0;
}

const char *
cmdk_idempotency_key(const struct cmdk_params *p)
{
	return p->kind == CMDK_CREDIT_ADD ? p->u.credit.txid : NULL;
}

/* ---- plans ---------------------------------------------------------------------------- */

enum {
	PH_BEFORE, /* issue the first read */
	PH_BEFORE_WAIT,
	PH_DECIDE,
	PH_ACT,
	PH_ACT_WAIT,
	PH_AFTER,
	PH_AFTER_WAIT,
	PH_VERIFY,
	PH_DONE,
};

#define O_DISC     OBIS(0, 0, 96, 3, 10, 255)
#define O_LIMITER  OBIS(0, 0, 17, 0, 0, 255)
#define O_ACCOUNT  OBIS(0, 0, 19, 0, 0, 255)
#define O_CREDIT   OBIS(0, 0, 19, 10, 0, 255)
#define O_APLUS    OBIS(1, 0, 1, 8, 0, 255)
#define O_CALENDAR OBIS(0, 0, 13, 0, 0, 255)
#define O_SPECIAL  OBIS(0, 0, 11, 0, 0, 255)
#define O_SCRIPT   OBIS(0, 0, 10, 0, 100, 255)
#define O_TARIFF   OBIS(0, 0, 96, 14, 0, 255)
#define O_CLOCK    OBIS(0, 0, 1, 0, 0, 255)

static void
add_read(struct cmdk_run *r, const char *name, uint16_t cls, struct obis o, int8_t attr)
{
	if (r->n_reads >= CMDK_MAX_READS)
		return;
	struct cmdk_read *rd = &r->reads[r->n_reads];
	rd->name = name;
	rd->item.desc = (struct xdlms_desc){.class_id = cls, .obis = o, .id = attr};
	r->items[r->n_reads] = rd->item;
	r->n_reads++;
}

/* Adds an act whose value the caller then writes into the returned mbuf
 * (backed by a buffer of cap bytes); cap 0: no parameters. */
static struct cmdk_act *
add_act(struct cmdk_run *r, const char *name, int op, uint16_t cls, struct obis o, int8_t id)
{
	if (r->n_acts >= CMDK_MAX_ACTS)
		return NULL;
	struct cmdk_act *a = &r->acts[r->n_acts++];
	a->name = name;
	a->op = op;
	a->desc = (struct xdlms_desc){.class_id = cls, .obis = o, .id = id};
	return a;
}

/* Encode into a fresh buffer owned by the act. */
static int
act_value(struct cmdk_act *a, void (*enc)(struct mbuf *b, const void *arg), const void *arg)
{
	size_t cap = 256;
	for (;;) {
		uint8_t *p = malloc(cap);
		struct mbuf b;
		if (p == NULL)
			return METER_ENOSPC;
		mbuf_init(&b, p, cap);
		enc(&b, arg);
		if (!b.err) {
			a->value = p;
			a->len = b.len;
			return 0;
		}
		free(p);
		if (cap > (1u << 20))
			return METER_ENOSPC;
		cap *= 4;
	}
}

static void
enc_int0(struct mbuf *b, const void *arg)
{
	(void)arg;
	axdr_put_integer(b, 0);
}

static void
enc_dlong(struct mbuf *b, const void *arg)
{
	axdr_put_double_long(b, (int32_t) * (const int64_t *)arg);
}

static void
enc_dlong_u(struct mbuf *b, const void *arg)
{
	axdr_put_double_long_unsigned(b, (uint32_t) * (const int64_t *)arg);
}

static void
enc_enum(struct mbuf *b, const void *arg)
{
	axdr_put_enum(b, (uint8_t) * (const int *)arg);
}

static void
enc_account(struct mbuf *b, const void *arg)
{
	axdr_put_structure(b, 2);
	axdr_put_enum(b, (uint8_t) * (const int *)arg);
	axdr_put_enum(b, 2); /* account_status: active */
}

static void
enc_lu(struct mbuf *b, const void *arg)
{
	axdr_put_long_unsigned(b, *(const uint8_t *)arg);
}

static void
enc_cal_name(struct mbuf *b, const void *arg)
{
	const char *s = arg;
	axdr_put_octet_string(b, s, (uint32_t)strlen(s));
}

static void
put_datetime_utc(struct mbuf *b, int64_t t)
{
	struct cosem_datetime dt;
	cosem_datetime_from_utc(t, NULL, &dt);
	axdr_put_datetime_octets(b, &dt);
}

static void
enc_seasons(struct mbuf *b, const void *arg)
{
	const struct cmdk_params *p = arg;
	axdr_put_array(b, p->u.calendar.n_seasons);
	for (unsigned i = 0; i < p->u.calendar.n_seasons; i++) {
		const struct cmdk_season *s = &p->u.calendar.season[i];
		/* A start repeating every year: year, weekday, hundredths and
		 * deviation unspecified (Blue Book class 20). */
		struct cosem_datetime dt = {.year = 0xffff,
		                            .month = s->month,
		                            .day = s->day,
		                            .dow = 0xff,
		                            .hundredths = 0xff,
		                            .deviation = COSEM_DEVIATION_UNSPEC,
		                            .status = 0xff};
		const char *wn = p->u.calendar.week[s->week].name;
		axdr_put_structure(b, 3);
		axdr_put_octet_string(b, s->name, (uint32_t)strlen(s->name));
		axdr_put_datetime_octets(b, &dt);
		axdr_put_octet_string(b, wn, (uint32_t)strlen(wn));
	}
}

static void
enc_weeks(struct mbuf *b, const void *arg)
{
	const struct cmdk_params *p = arg;
	axdr_put_array(b, p->u.calendar.n_weeks);
	for (unsigned i = 0; i < p->u.calendar.n_weeks; i++) {
		const struct cmdk_week *w = &p->u.calendar.week[i];
		axdr_put_structure(b, 8);
		axdr_put_octet_string(b, w->name, (uint32_t)strlen(w->name));
		for (int d = 0; d < 7; d++)
			axdr_put_unsigned(b, w->day[d]);
	}
}

static void
enc_days(struct mbuf *b, const void *arg)
{
	const struct cmdk_params *p = arg;
	const struct obis script = O_SCRIPT;
	axdr_put_array(b, p->u.calendar.n_days);
	for (unsigned i = 0; i < p->u.calendar.n_days; i++) {
		const struct cmdk_day *d = &p->u.calendar.day[i];
		axdr_put_structure(b, 2);
		axdr_put_unsigned(b, d->id);
		axdr_put_array(b, d->n);
		for (unsigned j = 0; j < d->n; j++) {
			uint8_t t[4] = {d->a[j].hour, d->a[j].minute, 0, 0};
			axdr_put_structure(b, 3);
			axdr_put_octet_string(b, t, 4);
			axdr_put_octet_string(b, script.v, 6);
			axdr_put_long_unsigned(b, d->a[j].tariff);
		}
	}
}

static void
enc_activation(struct mbuf *b, const void *arg)
{
	put_datetime_utc(b, *(const int64_t *)arg);
}

static void
enc_special(struct mbuf *b, const void *arg)
{
	const struct cmdk_params *p = arg;
	axdr_put_array(b, p->u.special.n);
	for (unsigned i = 0; i < p->u.special.n; i++) {
		const struct cmdk_special *s = &p->u.special.d[i];
		struct cosem_date d = {
		    .year = s->year, .month = s->month, .day = s->day, .dow = 0xff};
		uint8_t raw[5];
		cosem_date_encode(&d, raw);
		axdr_put_structure(b, 3);
		axdr_put_long_unsigned(b, (uint16_t)i);
		axdr_put_octet_string(b, raw, 5);
		axdr_put_unsigned(b, s->day_id);
	}
}

static int
plan(struct cmdk_run *r)
{
	const struct cmdk_params *p = &r->p;
	struct cmdk_act *a;
	int rc = 0;

	switch (p->kind) {
	case CMDK_DISCONNECT:
	case CMDK_RECONNECT:
		add_read(r, "output_state", 70, O_DISC, 2);
		add_read(r, "control_state", 70, O_DISC, 3);
		add_read(r, "control_mode", 70, O_DISC, 4);
		if (p->kind == CMDK_RECONNECT && p->u.reconnect.control_mode > 0) {
			a = add_act(r, "set control_mode", DLMS_OP_SET, 70, O_DISC, 4);
			rc |= act_value(a, enc_enum, &p->u.reconnect.control_mode);
		}
		a = add_act(r,
		            p->kind == CMDK_DISCONNECT ? "remote_disconnect" : "remote_reconnect",
		            DLMS_OP_ACTION, 70, O_DISC, p->kind == CMDK_DISCONNECT ? 1 : 2);
		rc |= act_value(a, enc_int0, NULL);
		break;
	case CMDK_CREDIT_ADD:
	case CMDK_CREDIT_SET:
		add_read(r, "credit_wh", 112, O_CREDIT, 2);
		add_read(r, "active_energy_import", 3, O_APLUS, 2);
		add_read(r, "active_energy_import_scaler_unit", 3, O_APLUS, 3);
		add_read(r, "account", 111, O_ACCOUNT, 2);
		a = add_act(r, p->kind == CMDK_CREDIT_ADD ? "update_amount" : "set_amount_to_value",
		            DLMS_OP_ACTION, 112, O_CREDIT, p->kind == CMDK_CREDIT_ADD ? 1 : 2);
		rc |= act_value(a, enc_dlong, &p->u.credit.amount_wh);
		break;
	case CMDK_PAYMENT_MODE:
		add_read(r, "account", 111, O_ACCOUNT, 2);
		add_read(r, "credit_wh", 112, O_CREDIT, 2);
		a = add_act(r, "set account_mode_and_status", DLMS_OP_SET, 111, O_ACCOUNT, 2);
		rc |= act_value(a, enc_account, &p->u.payment.mode);
		break;
	case CMDK_TARIFF_CALENDAR:
		add_read(r, "calendar_name_active", 20, O_CALENDAR, 2);
		add_read(r, "calendar_name_passive", 20, O_CALENDAR, 6);
		add_read(r, "season_profile_passive", 20, O_CALENDAR, 7);
		add_read(r, "week_profile_table_passive", 20, O_CALENDAR, 8);
		add_read(r, "day_profile_table_passive", 20, O_CALENDAR, 9);
		add_read(r, "activate_passive_calendar_time", 20, O_CALENDAR, 10);
		a = add_act(r, "calendar_name_passive", DLMS_OP_SET, 20, O_CALENDAR, 6);
		rc |= act_value(a, enc_cal_name, p->u.calendar.name);
		a = add_act(r, "season_profile_passive", DLMS_OP_SET, 20, O_CALENDAR, 7);
		rc |= act_value(a, enc_seasons, p);
		a = add_act(r, "week_profile_table_passive", DLMS_OP_SET, 20, O_CALENDAR, 8);
		rc |= act_value(a, enc_weeks, p);
		a = add_act(r, "day_profile_table_passive", DLMS_OP_SET, 20, O_CALENDAR, 9);
		rc |= act_value(a, enc_days, p);
		if (p->u.calendar.activate_at) {
			/* The activation time last: the meter switches only to a
			 * passive calendar that is complete. */
			a = add_act(r, "activate_passive_calendar_time", DLMS_OP_SET, 20,
			            O_CALENDAR, 10);
			rc |= act_value(a, enc_activation, &p->u.calendar.activate_at);
		} else {
			a = add_act(r, "activate_passive_calendar", DLMS_OP_ACTION, 20, O_CALENDAR,
			            1);
			rc |= act_value(a, enc_int0, NULL);
		}
		break;
	case CMDK_TARIFF_FORCE:
		add_read(r, "current_tariff", 1, O_TARIFF, 2);
		a = add_act(r, "execute", DLMS_OP_ACTION, 9, O_SCRIPT, 1);
		rc |= act_value(a, enc_lu, &p->u.force.tariff);
		break;
	case CMDK_SPECIAL_DAYS:
		add_read(r, "entries", 11, O_SPECIAL, 2);
		a = add_act(r, "set entries", DLMS_OP_SET, 11, O_SPECIAL, 2);
		rc |= act_value(a, enc_special, p);
		break;
	case CMDK_LIMITER: {
		static const char *const names[4] = {"threshold_normal", "threshold_emergency",
		                                     "min_over_threshold_duration",
		                                     "min_under_threshold_duration"};
		const int64_t *v[4] = {&p->u.limiter.normal_w, &p->u.limiter.emergency_w,
		                       &p->u.limiter.min_over_s, &p->u.limiter.min_under_s};
		for (int i = 0; i < 4; i++)
			add_read(r, names[i], 71, O_LIMITER, (int8_t)(4 + i));
		for (int i = 0; i < 4; i++) {
			if (*v[i] < 0)
				continue;
			a = add_act(r, names[i], DLMS_OP_SET, 71, O_LIMITER, (int8_t)(4 + i));
			rc |= act_value(a, enc_dlong_u, v[i]);
		}
		break;
	}
	case CMDK_CLOCK_SYNC:
		add_read(r, "clock", 8, O_CLOCK, 2);
		/* The value is written when the act is sent (now). */
		add_act(r, "set time", DLMS_OP_SET, 8, O_CLOCK, 2);
		break;
	case CMDK_READ_NOW: {
		for (unsigned i = 0; i < p->u.read.n_registers; i++) {
			struct obis o = p->u.read.registers[i];
			uint16_t cls = obis_class(&o);
			add_read(r, NULL, cls ? cls : 3, o, 2);
			/* the scaler_unit too, right after its value: a value is
			 * stored as a reading only with it (cmdk_run_reading()) */
			if ((cls ? cls : 3) == 3 || cls == 4) {
				add_read(r, NULL, cls ? cls : 3, o, 3);
				r->reads[r->n_reads - 1].aux = true;
			}
		}
		if (p->u.read.profile) {
			struct mbuf b;
			const struct obis clock = O_CLOCK;
			mbuf_init(&b, r->range_buf, sizeof(r->range_buf));
			axdr_put_structure(&b, 4);
			axdr_put_structure(&b, 4);
			axdr_put_long_unsigned(&b, 8);
			axdr_put_octet_string(&b, clock.v, 6);
			axdr_put_integer(&b, 2);
			axdr_put_long_unsigned(&b, 0);
			put_datetime_utc(&b, p->u.read.from);
			put_datetime_utc(&b, p->u.read.to);
			axdr_put_array(&b, 0);
			if (b.err)
				return METER_ENOSPC;
			r->range.present = true;
			r->range.selector = XDLMS_ACCESS_RANGE;
			r->range.params.raw = r->range_buf;
			r->range.params.len = (uint32_t)b.len;
			add_read(r, "profile", 7, p->u.read.profile_obis, 2);
			r->items[r->n_reads - 1].access = &r->range;
		}
		for (unsigned i = 0; i < p->u.read.n_logs; i++)
			add_read(r, NULL, 7, OBIS(0, 0, 99, 98, p->u.read.logs[i], 255), 2);
		break;
	}
	}
	return rc ? METER_ENOSPC : 0;
}

int
cmdk_run_init(struct cmdk_run *r, const struct cmdk_params *p, const char *progress)
{
	memset(r, 0, sizeof(*r));
	r->p = *p;
	r->phase = PH_BEFORE;
	if (progress != NULL && *progress != '\0') {
		struct cj nodes[16];
		r->retry_seen = true;
		if (cj_parse(progress, nodes, 16) > 0) {
			const struct cj *c = cj_get(nodes, "pre_credit_wh"),
			                *e = cj_get(nodes, "pre_energy_wh");
			if (c && e && c->type == CJ_NUM && e->type == CJ_NUM) {
				r->pre_credit = c->num;
				r->pre_energy = e->num;
				r->have_pre = true;
			}
		}
	}
	return plan(r);
}

/* ---- reading decoded values --------------------------------------------------------- */

#define VAL_NODES 64

/* Integer (or scaled number) of read i, before or after. */
static bool
read_num(const struct cmdk_run *r, unsigned i, bool after, double *out)
{
	struct axdr_node n[VAL_NODES];
	size_t nn;
	const uint8_t *p = after ? r->reads[i].after : r->reads[i].before;
	size_t len = after ? r->reads[i].after_len : r->reads[i].before_len;
	if (p == NULL || axdr_decode(p, len, n, VAL_NODES, &nn) < 0)
		return false;
	return axdr_to_double(&n[0], out) == 0;
}

/* Element k of a structure read (the scaler of scaler_unit, the mode of
 * account_mode_and_status). */
static bool
read_elem(const struct cmdk_run *r, unsigned i, bool after, uint32_t k, double *out)
{
	struct axdr_node n[VAL_NODES];
	size_t nn;
	const uint8_t *p = after ? r->reads[i].after : r->reads[i].before;
	size_t len = after ? r->reads[i].after_len : r->reads[i].before_len;
	if (p == NULL || axdr_decode(p, len, n, VAL_NODES, &nn) < 0 || n[0].tag != AXDR_STRUCTURE)
		return false;
	const struct axdr_node *c = axdr_child(&n[0], k);
	return c != NULL && axdr_to_double(c, out) == 0;
}

static int
read_index(const struct cmdk_run *r, const char *name)
{
	for (unsigned i = 0; i < r->n_reads; i++)
		if (r->reads[i].name && strcmp(r->reads[i].name, name) == 0)
			return (int)i;
	return -1;
}

static bool
num(const struct cmdk_run *r, const char *name, bool after, double *out)
{
	int i = read_index(r, name);
	return i >= 0 && read_num(r, (unsigned)i, after, out);
}

static void run_fail(struct cmdk_run *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
run_fail(struct cmdk_run *r, const char *fmt, ...)
{
	va_list ap;
	if (r->failed)
		return;
	r->failed = true;
	va_start(ap, fmt);
	vsnprintf(r->error, sizeof(r->error), fmt, ap);
	va_end(ap);
}

/* credit + A+ in Wh, from one reading; false when unreadable. */
static bool
credit_sum(const struct cmdk_run *r, bool after, double *credit, double *energy, double *res)
{
	double scaler = 0;
	if (!num(r, "credit_wh", after, credit) || !num(r, "active_energy_import", after, energy))
		return false;
	int i = read_index(r, "active_energy_import_scaler_unit");
	if (i >= 0 && read_elem(r, (unsigned)i, false, 0, &scaler)) {
		*energy *= pow(10, scaler);
		*res = pow(10, scaler);
	} else {
		*res = 1;
	}
	if (*res < 1)
		*res = 1;
	return true;
}

static void
decide(struct cmdk_run *r)
{
	const struct cmdk_params *p = &r->p;
	double v, mode;

	switch (p->kind) {
	case CMDK_DISCONNECT:
		if (!num(r, "control_state", false, &v) || !num(r, "control_mode", false, &mode)) {
			run_fail(r, "cannot read the disconnect control (0-0:96.3.10.255)");
			return;
		}
		if (v == 0) {
			r->already = true; /* disconnecting twice = disconnected */
			snprintf(r->note, sizeof(r->note), "already disconnected");
		} else if (mode == 0) {
			run_fail(
			    r, "control mode 0: this meter's breaker cannot be operated remotely");
		}
		return;
	case CMDK_RECONNECT: {
		if (!num(r, "control_state", false, &v) || !num(r, "control_mode", false, &mode)) {
			run_fail(r, "cannot read the disconnect control (0-0:96.3.10.255)");
			return;
		}
		if (p->u.reconnect.control_mode > 0)
			mode = p->u.reconnect.control_mode;
		bool release = p->u.reconnect.mode == CMDK_RECONNECT_RELEASE;
		if (v == 1) {
			r->already = true;
			snprintf(r->note, sizeof(r->note), "already connected");
		} else if (v == 2) {
			r->already = true;
			snprintf(r->note, sizeof(r->note),
			         "already released: waiting for the consumer's button");
			if (!release)
				run_fail(r,
				         "the breaker is ready for reconnection: only the "
				         "consumer's button closes it (control mode %.0f)",
				         mode);
		} else if (mode == 0) {
			run_fail(
			    r, "control mode 0: this meter's breaker cannot be operated remotely");
		} else if (release && mode != 2 && mode != 4) {
			run_fail(r,
			         "control mode %.0f reconnects remotely without the button; give "
			         "control_mode 2 or 4 to release for the button",
			         mode);
		} else if (!release && (mode == 2 || mode == 4)) {
			run_fail(r,
			         "control mode %.0f only releases for the consumer's button; use "
			         "mode release, or control_mode 1, 3, 5 or 6",
			         mode);
		}
		if (r->already)
			r->acts[0].skip = true; /* not even the control mode */
		return;
	}
	case CMDK_CREDIT_SET:
	case CMDK_CREDIT_ADD: {
		double c, e, res;
		int acc = read_index(r, "account");
		if (acc >= 0 && read_elem(r, (unsigned)acc, false, 0, &v) && v != 2) {
			run_fail(r,
			         "the meter is in credit mode: credit applies in prepayment mode "
			         "only (payment_mode first)");
			return;
		}
		if (p->kind == CMDK_CREDIT_SET)
			return;
		if (!credit_sum(r, false, &c, &e, &res)) {
			run_fail(r, "cannot read credit (0-0:19.10.0.255) and A+ (1-0:1.8.0.255)");
			return;
		}
		if (p->u.credit.amount_wh < 4 * res) {
			run_fail(r,
			         "amount %lld Wh is too small against the register's resolution "
			         "(%.0f Wh) to be verified",
			         (long long)p->u.credit.amount_wh, res);
			return;
		}
		if (r->have_pre) {
			double delta = (c + e) - (r->pre_credit + r->pre_energy);
			if (delta > (double)p->u.credit.amount_wh / 2) {
				/* An earlier attempt's update_amount reached the meter. */
				r->applied_earlier = true;
				r->already = true;
				snprintf(
				    r->note, sizeof(r->note),
				    "applied by an earlier attempt (credit + A+ grew by %.0f Wh)",
				    delta);
			}
			return; /* baseline stored already: no new checkpoint */
		}
		r->pre_credit = c;
		r->pre_energy = e;
		r->have_pre = true;
		/* The transaction id is the command's idempotency key and
		 * needs no place here; the baseline is what a retry needs. */
		free(r->progress);
		if (asprintf(&r->progress, "{\"pre_credit_wh\":%.17g,\"pre_energy_wh\":%.17g}", c,
		             e) < 0)
			r->progress = NULL;
		return;
	}
	case CMDK_PAYMENT_MODE:
		if (read_elem(r, 0, false, 0, &v) && v == p->u.payment.mode) {
			r->already = true;
			snprintf(r->note, sizeof(r->note), "already in %s mode",
			         v == 1 ? "credit" : "prepayment");
		}
		return;
	case CMDK_TARIFF_FORCE:
		return;
	case CMDK_CLOCK_SYNC: {
		int i = read_index(r, "clock");
		struct axdr_node n[4];
		size_t nn;
		struct cosem_datetime dt;
		const struct cmdk_read *rd = &r->reads[i];
		if (rd->before && axdr_decode(rd->before, rd->before_len, n, 4, &nn) > 0 &&
		    n[0].tag == AXDR_OCTET_STRING && n[0].len == 12 &&
		    cosem_datetime_decode(n[0].ptr, &dt) == 0)
			(void)cosem_datetime_to_utc(&dt, NULL, &r->clock_before);
		return;
	}
	default:
		return;
	}
}

static bool
bytes_eq(const uint8_t *a, size_t al, const uint8_t *b, size_t bl)
{
	return a != NULL && b != NULL && al == bl && memcmp(a, b, al) == 0;
}

static void
verify(struct cmdk_run *r)
{
	const struct cmdk_params *p = &r->p;
	double v, out;

	switch (p->kind) {
	case CMDK_DISCONNECT:
		if (!num(r, "control_state", true, &v) || !num(r, "output_state", true, &out))
			run_fail(r, "cannot read the breaker back");
		else if (v != 0 || out != 0)
			run_fail(r,
			         "the breaker did not open: control_state %.0f, output_state %.0f",
			         v, out);
		return;
	case CMDK_RECONNECT: {
		bool release = p->u.reconnect.mode == CMDK_RECONNECT_RELEASE;
		if (!num(r, "control_state", true, &v) || !num(r, "output_state", true, &out))
			run_fail(r, "cannot read the breaker back");
		else if (!release && (v != 1 || out != 1))
			run_fail(r,
			         "the breaker did not close: control_state %.0f, output_state %.0f",
			         v, out);
		else if (release && v != 2 && v != 1)
			run_fail(r, "the breaker was not released: control_state %.0f", v);
		return;
	}
	case CMDK_CREDIT_ADD: {
		double c, e, res;
		if (!credit_sum(r, true, &c, &e, &res)) {
			run_fail(r, "cannot read the credit back");
			return;
		}
		double delta = (c + e) - (r->pre_credit + r->pre_energy);
		if (fabs(delta - (double)p->u.credit.amount_wh) > 2 * res)
			run_fail(r, "credit + A+ grew by %.0f Wh, expected %lld", delta,
			         (long long)p->u.credit.amount_wh);
		return;
	}
	case CMDK_CREDIT_SET: {
		double c0, e0, c, e, res;
		if (!credit_sum(r, false, &c0, &e0, &res) || !credit_sum(r, true, &c, &e, &res)) {
			run_fail(r, "cannot read the credit back");
			return;
		}
		/* Consumption between the set and the read-back lowers credit
		 * by what A+ gained at most. */
		double want = (double)p->u.credit.amount_wh;
		if (c > want + res || c + (e - e0) < want - 2 * res)
			run_fail(r, "credit reads %.0f Wh after setting %.0f Wh", c, want);
		return;
	}
	case CMDK_PAYMENT_MODE:
		if (!read_elem(r, 0, true, 0, &v) || v != p->u.payment.mode)
			run_fail(r, "payment mode reads back as %.0f, not %d", v,
			         p->u.payment.mode);
		return;
	case CMDK_TARIFF_CALENDAR:
		for (unsigned i = 0; i < r->n_acts; i++) {
			int k = i < 4 ? (int)i + 1 : 5; /* acts 0..3 are reads 1..4 */
			if (r->acts[i].op != DLMS_OP_SET)
				continue;
			if (!bytes_eq(r->reads[k].after, r->reads[k].after_len, r->acts[i].value,
			              r->acts[i].len)) {
				/* A meter may normalise the unspecified fields of
				 * the activation time: only its presence counts. */
				if (k == 5 && r->reads[k].after != NULL)
					continue;
				run_fail(r, "%s reads back different from what was written",
				         r->acts[i].name);
			}
		}
		if (p->u.calendar.activate_at == 0) {
			/* Activated now: the active name is the new one. */
			int k = read_index(r, "calendar_name_active");
			uint8_t want[16];
			struct mbuf b;
			mbuf_init(&b, want, sizeof(want));
			axdr_put_octet_string(&b, p->u.calendar.name,
			                      (uint32_t)strlen(p->u.calendar.name));
			if (!bytes_eq(r->reads[k].after, r->reads[k].after_len, want, b.len))
				run_fail(r, "the active calendar is not '%s' after activation",
				         p->u.calendar.name);
		}
		return;
	case CMDK_TARIFF_FORCE:
		if (!num(r, "current_tariff", true, &v) || v != p->u.force.tariff)
			run_fail(r, "current tariff reads %.0f, not %u", v, p->u.force.tariff);
		return;
	case CMDK_SPECIAL_DAYS:
		if (!bytes_eq(r->reads[0].after, r->reads[0].after_len, r->acts[0].value,
		              r->acts[0].len))
			run_fail(
			    r, "the special days table reads back different from what was written");
		return;
	case CMDK_LIMITER:
		for (unsigned i = 0; i < r->n_acts; i++) {
			int k = r->acts[i].desc.id - 4;
			if (!bytes_eq(r->reads[k].after, r->reads[k].after_len, r->acts[i].value,
			              r->acts[i].len))
				run_fail(r, "%s reads back different from what was written",
				         r->acts[i].name);
		}
		return;
	case CMDK_CLOCK_SYNC: {
		struct axdr_node n[4];
		size_t nn;
		struct cosem_datetime dt;
		int64_t t;
		const struct cmdk_read *rd = &r->reads[0];
		if (rd->after == NULL || axdr_decode(rd->after, rd->after_len, n, 4, &nn) < 0 ||
		    n[0].tag != AXDR_OCTET_STRING || n[0].len != 12 ||
		    cosem_datetime_decode(n[0].ptr, &dt) != 0 ||
		    cosem_datetime_to_utc(&dt, NULL, &t) != 0)
			run_fail(r, "cannot read the clock back");
		else if (llabs(t - r->clock_now) > 5)
			run_fail(r, "the clock reads %+lld s from the time written",
			         (long long)(t - r->clock_now));
		return;
	}
	default:
		return;
	}
}

/* ---- the machine -------------------------------------------------------------- */

static void
write_reads(struct json *j, const struct cmdk_run *r, bool after)
{
	struct axdr_node *n = malloc(sizeof(*n) * 8192);
	json_obj_begin(j, r->p.kind == CMDK_READ_NOW ? "values" : after ? "after" : "before");
	for (unsigned i = 0; i < r->n_reads; i++) {
		const struct cmdk_read *rd = &r->reads[i];
		const uint8_t *p = after ? rd->after : rd->before;
		size_t len = after ? rd->after_len : rd->before_len, nn;
		if (rd->aux)
			continue;
		char key[OBIS_STRLEN + 8];
		const char *name = rd->name;
		if (name == NULL) {
			obis_format(&rd->item.desc.obis, key);
			name = key;
		}
		if (p == NULL) {
			if (rd->dar && !after) {
				json_obj_begin(j, name);
				json_int(j, "data_access_result", rd->dar);
				json_obj_end(j);
			} else {
				json_null(j, name);
			}
		} else if (n != NULL && axdr_decode(p, len, n, 8192, &nn) > 0) {
			axdr_json_write(j, name, n);
		} else {
			json_hex(j, name, p, len);
		}
	}
	json_obj_end(j);
	free(n);
}

static void
finish(struct cmdk_run *r)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	struct json j;

	r->phase = PH_DONE;
	if (f == NULL)
		return;
	json_init(&j, f, false);
	json_obj_begin(&j, NULL);
	json_str(&j, "kind", cmdk_name(r->p.kind));
	write_reads(&j, r, false);
	if (r->p.kind != CMDK_READ_NOW)
		write_reads(&j, r, true);
	json_bool(&j, "applied", !r->failed && !r->already && r->p.kind != CMDK_READ_NOW);
	if (r->applied_earlier)
		json_bool(&j, "applied_earlier", true);
	if (r->p.kind == CMDK_CREDIT_ADD && r->have_pre) {
		json_double(&j, "pre_credit_wh", r->pre_credit);
		json_double(&j, "pre_energy_wh", r->pre_energy);
	}
	if (r->p.kind == CMDK_CLOCK_SYNC && r->clock_before)
		json_int(&j, "drift_s", r->clock_before - r->clock_now);
	if (r->note[0])
		json_str(&j, "note", r->note);
	if (r->failed)
		json_str(&j, "error", r->error);
	json_obj_end(&j);
	fclose(f);
	/* json_end adds a newline we do not want in a column */
	while (len > 0 && buf[len - 1] == '\n')
		buf[--len] = '\0';
	free(r->result);
	r->result = buf;
}

static int
start_reads(struct cmdk_run *r, struct dlms_client *c, struct mbuf *out)
{
	r->req_err = 0;
	for (unsigned i = 0; i < r->n_reads; i++)
		r->reads[i].dar = 0;
	int rc = dlms_client_get(c, out, r->items, r->n_reads);
	if (rc != 0)
		run_fail(r, "cannot send the read: %s", meter_strerror(rc));
	return rc;
}

int
cmdk_run_next(struct cmdk_run *r, struct dlms_client *c, struct mbuf *out, int64_t now_ms)
{
	for (;;) {
		if (r->failed && r->phase != PH_DONE && r->phase != PH_AFTER &&
		    r->phase != PH_VERIFY) {
			finish(r);
			return CMDK_FINISHED;
		}
		switch (r->phase) {
		case PH_BEFORE:
			if (start_reads(r, c, out) != 0)
				continue;
			r->phase = PH_BEFORE_WAIT;
			return CMDK_SENT;
		case PH_BEFORE_WAIT:
		case PH_ACT_WAIT:
		case PH_AFTER_WAIT:
			/* next() before DONE: the caller broke the protocol */
			run_fail(r, "internal: next step asked before the request was done");
			continue;
		case PH_DECIDE:
			if (r->p.kind == CMDK_READ_NOW) {
				finish(r);
				return CMDK_FINISHED;
			}
			decide(r);
			if (r->failed)
				continue;
			r->phase = PH_ACT;
			r->cur_act = 0;
			continue;
		case PH_ACT: {
			while (r->cur_act < r->n_acts && (r->already || r->acts[r->cur_act].skip))
				r->cur_act++;
			if (r->cur_act >= r->n_acts) {
				r->phase = PH_AFTER;
				continue;
			}
			struct cmdk_act *a = &r->acts[r->cur_act];
			int rc;
			r->req_err = 0;
			r->req_dar = 0;
			if (r->p.kind == CMDK_CLOCK_SYNC) {
				struct mbuf b;
				free(a->value);
				a->value = malloc(16);
				if (a->value == NULL) {
					run_fail(r, "out of memory");
					continue;
				}
				mbuf_init(&b, a->value, 16);
				r->clock_now = (now_ms + 500) / 1000;
				if (r->p.u.clock.max_step_s && r->clock_before &&
				    llabs(r->clock_now - r->clock_before) >
				        r->p.u.clock.max_step_s) {
					run_fail(r,
					         "the meter's clock is %+lld s off, more than "
					         "max_step_s %lld",
					         (long long)(r->clock_before - r->clock_now),
					         (long long)r->p.u.clock.max_step_s);
					continue;
				}
				put_datetime_utc(&b, r->clock_now);
				a->len = b.len;
			}
			if (!r->gated) {
				/* One checkpoint per run, just before the first
				 * step that changes the meter: the caller stores
				 * the progress (credit_add's baseline) and takes
				 * the kind's rate-cap slot, then calls us again
				 * (the clock value above is computed afresh). */
				r->gated = true;
				return CMDK_CHECKPOINT;
			}
			if (a->op == DLMS_OP_SET)
				rc = dlms_client_set(c, out, &a->desc, NULL, a->value, a->len);
			else
				rc = dlms_client_action(c, out, &a->desc, a->value, a->len);
			if (rc != 0) {
				run_fail(r, "cannot send %s: %s", a->name, meter_strerror(rc));
				continue;
			}
			r->phase = PH_ACT_WAIT;
			return CMDK_SENT;
		}
		case PH_AFTER:
			if (start_reads(r, c, out) != 0)
				continue;
			r->phase = PH_AFTER_WAIT;
			return CMDK_SENT;
		case PH_VERIFY:
			if (!r->failed)
				verify(r);
			finish(r);
			return CMDK_FINISHED;
		case PH_DONE:
			return CMDK_FINISHED;
		}
	}
}

static void
store_read(struct cmdk_run *r, const struct dlms_client_event *ev, bool after)
{
	if (ev->index >= r->n_reads)
		return;
	struct cmdk_read *rd = &r->reads[ev->index];
	uint8_t **slot = after ? &rd->after : &rd->before;
	size_t *slot_len = after ? &rd->after_len : &rd->before_len;
	free(*slot);
	*slot = NULL;
	*slot_len = 0;
	if (ev->err != 0) {
		rd->dar = ev->dar;
		if (ev->err != METER_EACCESS)
			r->req_err = ev->err;
		return;
	}
	if (ev->data == NULL || ev->data_len == 0)
		return;
	if ((*slot = malloc(ev->data_len)) == NULL) {
		r->req_err = METER_ENOSPC;
		return;
	}
	memcpy(*slot, ev->data, ev->data_len);
	*slot_len = ev->data_len;
}

void
cmdk_run_event(struct cmdk_run *r, const struct dlms_client_event *ev)
{
	if (ev->type == DLMS_CEV_RESULT) {
		if (r->phase == PH_BEFORE_WAIT)
			store_read(r, ev, false);
		else if (r->phase == PH_AFTER_WAIT)
			store_read(r, ev, true);
		else if (r->phase == PH_ACT_WAIT) {
			if (ev->err == METER_EACCESS)
				r->req_dar = ev->dar ? ev->dar : 250;
			else if (ev->err)
				r->req_err = ev->err;
		}
		return;
	}
	if (ev->type != DLMS_CEV_DONE)
		return;
	int err = ev->err ? ev->err : r->req_err;
	switch (r->phase) {
	case PH_BEFORE_WAIT:
		if (err)
			run_fail(r, "reading the state before failed: %s", meter_strerror(err));
		else
			for (unsigned i = 0; i < r->n_reads; i++)
				if (r->reads[i].before == NULL && r->p.kind != CMDK_READ_NOW &&
				    !r->reads[i].aux) {
					char o[OBIS_STRLEN];
					run_fail(r,
					         "the meter refused to read %s (%s attribute %d): "
					         "data-access-result %u",
					         r->reads[i].name ? r->reads[i].name : "",
					         obis_format(&r->reads[i].item.desc.obis, o),
					         r->reads[i].item.desc.id, r->reads[i].dar);
					break;
				}
		r->phase = PH_DECIDE;
		break;
	case PH_ACT_WAIT: {
		const struct cmdk_act *a = &r->acts[r->cur_act];
		if (err)
			run_fail(r, "%s failed: %s", a->name, meter_strerror(err));
		else if (r->req_dar)
			run_fail(r, "the meter refused %s: %s %u", a->name,
			         a->op == DLMS_OP_SET ? "data-access-result" : "action-result",
			         r->req_dar == 250 ? 250 : r->req_dar);
		r->cur_act++;
		/* After a failed act the state is still read back, for the
		 * record, but nothing more is sent. */
		r->phase = r->failed ? PH_AFTER : PH_ACT;
		break;
	}
	case PH_AFTER_WAIT:
		if (err)
			run_fail(r, "reading the state back failed: %s", meter_strerror(err));
		if (r->failed)
			finish(r);
		else
			r->phase = PH_VERIFY;
		break;
	default:
		break;
	}
}

void
cmdk_run_abort(struct cmdk_run *r, const char *why)
{
	run_fail(r, "%s", why);
	if (r->phase != PH_DONE)
		finish(r);
}

bool
cmdk_run_ok(const struct cmdk_run *r)
{
	return r->phase == PH_DONE && !r->failed;
}

const char *
cmdk_run_result(const struct cmdk_run *r)
{
	return r->result ? r->result : "{}";
}

const char *
cmdk_run_error(const struct cmdk_run *r)
{
	return r->failed ? r->error : "";
}

const char *
cmdk_run_progress(const struct cmdk_run *r)
{
	return r->progress;
}

void
cmdk_run_free(struct cmdk_run *r)
{
	for (unsigned i = 0; i < r->n_reads; i++) {
		free(r->reads[i].before);
		free(r->reads[i].after);
	}
	for (unsigned i = 0; i < r->n_acts; i++)
		free(r->acts[i].value);
	free(r->progress);
	free(r->result);
	memset(r, 0, sizeof(*r));
}

bool
cmdk_run_reading(const struct cmdk_run *r, unsigned i, struct cmdk_reading *out)
{
	unsigned k = 0;

	if (r->p.kind != CMDK_READ_NOW || r->phase != PH_DONE)
		return false;
	for (unsigned j = 0; j < r->n_reads; j++) {
		const struct cmdk_read *rd = &r->reads[j];
		if (rd->aux)
			continue;
		if (k++ != i)
			continue;
		memset(out, 0, sizeof(*out));
		out->obis = rd->item.desc.obis;
		out->class_id = rd->item.desc.class_id;
		out->value = rd->before;
		out->value_len = rd->before_len;
		if (rd->item.desc.class_id != 7) {
			out->what = CMDK_RD_REGISTER;
			if (j + 1 < r->n_reads && r->reads[j + 1].aux) {
				out->scaler_unit = r->reads[j + 1].before;
				out->scaler_unit_len = r->reads[j + 1].before_len;
			}
		} else {
			out->what = r->items[j].access != NULL ? CMDK_RD_PROFILE : CMDK_RD_EVENTS;
		}
		return true;
	}
	return false;
}
