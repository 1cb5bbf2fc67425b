/*
 * ctl_cmd.c: `ammctl cmd ...`, the operator's side of the command queue
 * (DESIGN §6, issue 7).
 *
 *   ammctl cmd KIND SERIAL... [key=value...] [--params JSON|@FILE]
 *              [--expires DURATION] [--wait [--timeout S]] [--json] [--confirm] [--dsn DSN]
 *   ammctl cmd list [--state STATE] [--meter SERIAL] [--limit N] [--json] [--dsn DSN]
 *   ammctl cmd show ID [--json] [--dsn DSN]
 *   ammctl cmd cancel ID... [--dsn DSN]
 *
 * Parameters are checked here with the daemon's own rules (cmd_kinds.c)
 * before anything is written, so a calendar with nine tariffs never
 * reaches the queue.  key=value arguments build the JSON object: a value
 * that reads as JSON (a number, true, an object ...) is taken as such,
 * anything else as a string, and @FILE reads the value from a file.
 * Commands are queued through ammd_command_submit() (sql/0003), which
 * merges a command identical to one still pending; more than one meter
 * needs --confirm, so a slip of the shell cannot switch off a street.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cmd_kinds.h"
#include "ctl.h"
#include "db.h"
#include "json.h"

#define CMD_MAX_METERS 100000

struct cmd_opts {
	const char *dsn;
	const char *params;
	const char *expires;
	const char *state;
	const char *meter;
	int limit;
	int timeout;
	bool json, wait, confirm;
	int npos;
	char **pos;
};

static void
cmd_usage(FILE *f)
{
	fprintf(
	    f,
	    "usage: ammctl cmd KIND SERIAL... [key=value...] [--params JSON|@FILE]\n"
	    "                  [--expires DURATION] [--wait [--timeout S]] [--json] [--confirm]\n"
	    "       ammctl cmd list [--state STATE] [--meter SERIAL] [--limit N] [--json]\n"
	    "       ammctl cmd show ID [--json]\n"
	    "       ammctl cmd cancel ID...\n"
	    "every form takes --dsn DSN (default $" DB_ENV ")\n"
	    "kinds:");
	for (int k = 0; k < CMDK_NKINDS; k++)
		fprintf(f, " %s", cmdk_name(k));
	fprintf(f, "\nDURATION: seconds, or a number with s, m, h or d.  More than one meter "
	           "needs --confirm.\n");
}

static int
cmd_opts_parse(int argc, char **argv, struct cmd_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->limit = 50;
	o->timeout = 120;
	o->pos = calloc((size_t)argc + 1, sizeof(*o->pos));
	if (o->pos == NULL)
		return 1;
	for (int i = 0; i < argc; i++) {
		const char *a = argv[i];
		const char **val = NULL;
		int *ival = NULL;
		if (strcmp(a, "--json") == 0)
			o->json = true;
		else if (strcmp(a, "--wait") == 0)
			o->wait = true;
		else if (strcmp(a, "--confirm") == 0)
			o->confirm = true;
		else if (strcmp(a, "--dsn") == 0)
			val = &o->dsn;
		else if (strcmp(a, "--params") == 0)
			val = &o->params;
		else if (strcmp(a, "--expires") == 0)
			val = &o->expires;
		else if (strcmp(a, "--state") == 0)
			val = &o->state;
		else if (strcmp(a, "--meter") == 0)
			val = &o->meter;
		else if (strcmp(a, "--limit") == 0)
			ival = &o->limit;
		else if (strcmp(a, "--timeout") == 0)
			ival = &o->timeout;
		else if (a[0] == '-' && a[1] == '-') {
			fprintf(stderr, "ammctl cmd: unknown option '%s'\n", a);
			return 2;
		} else
			o->pos[o->npos++] = argv[i];
		if (val != NULL || ival != NULL) {
			if (i + 1 >= argc) {
				fprintf(stderr, "ammctl cmd: %s needs a value\n", a);
				return 2;
			}
			if (val)
				*val = argv[++i];
			else {
				char *end;
				long v = strtol(argv[++i], &end, 10);
				if (*end != '\0' || v < 1 || v > 1000000) {
					fprintf(stderr, "ammctl cmd: %s: bad number '%s'\n", a,
					        argv[i]);
					return 2;
				}
				*ival = (int)v;
			}
		}
	}
	return 0;
}

static PGconn *
cmd_connect(const struct cmd_opts *o)
{
	char err[DB_ERR_MAX];
	PGconn *c = db_connect(o->dsn, "ammctl", err, sizeof(err));
	if (c == NULL)
		fprintf(stderr, "ammctl cmd: %s\n", err);
	return c;
}

/* ---- building the parameters ------------------------------------------------------- */

struct sbuf {
	char *p;
	size_t len, cap;
	bool oom;
};

static void
sb_add(struct sbuf *b, const char *s, size_t n)
{
	if (b->oom)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = (b->cap ? b->cap * 2 : 256) + n;
		char *p = realloc(b->p, cap);
		if (p == NULL) {
			b->oom = true;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void
sb_str(struct sbuf *b, const char *s)
{
	sb_add(b, s, strlen(s));
}

static void
sb_json_string(struct sbuf *b, const char *s)
{
	sb_add(b, "\"", 1);
	for (; *s; s++) {
		char esc[8];
		unsigned char ch = (unsigned char)*s;
		if (ch == '"' || ch == '\\') {
			esc[0] = '\\';
			esc[1] = (char)ch;
			sb_add(b, esc, 2);
		} else if (ch < 0x20) {
			snprintf(esc, sizeof(esc), "\\u%04x", ch);
			sb_add(b, esc, 6);
		} else {
			sb_add(b, s, 1);
		}
	}
	sb_add(b, "\"", 1);
}

/* The whole file, NUL-terminated; NULL with errno. */
static char *
slurp(const char *path)
{
	FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
	struct sbuf b = {0};
	char buf[4096];
	size_t n;
	if (f == NULL)
		return NULL;
	while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
		sb_add(&b, buf, n);
	if (f != stdin)
		fclose(f);
	if (b.oom || b.p == NULL) {
		free(b.p);
		return b.oom ? NULL : strdup("");
	}
	return b.p;
}

static bool
is_json_value(const char *s)
{
	struct cj *nodes = calloc(4096, sizeof(*nodes));
	bool ok = nodes != NULL && cj_parse(s, nodes, 4096) > 0;
	free(nodes);
	return ok;
}

/* key=value arguments (and --params) into one JSON object; NULL on error
 * (reported). */
static char *
cmd_build_params(const struct cmd_opts *o, char **kv, int nkv)
{
	struct sbuf b = {0};
	char *base = NULL;

	if (o->params != NULL) {
		base = o->params[0] == '@' ? slurp(o->params + 1) : strdup(o->params);
		if (base == NULL) {
			fprintf(stderr, "ammctl cmd: --params %s: %s\n", o->params,
			        strerror(errno));
			return NULL;
		}
		if (nkv == 0)
			return base;
		/* Merge: the object's members, then the key=value ones. */
		char *end = strrchr(base, '}');
		const char *start = strchr(base, '{');
		if (start == NULL || end == NULL || end < start) {
			fprintf(stderr, "ammctl cmd: --params is not a JSON object\n");
			free(base);
			return NULL;
		}
		*end = '\0';
		sb_str(&b, start);
		bool empty = true;
		for (const char *p = start + 1; *p; p++)
			if (*p != ' ' && *p != '\n' && *p != '\t' && *p != '\r')
				empty = false;
		if (!empty)
			sb_str(&b, ",");
		free(base);
	} else {
		sb_str(&b, "{");
	}
	for (int i = 0; i < nkv; i++) {
		char *eq = strchr(kv[i], '=');
		char *val = eq + 1, *file = NULL;
		sb_add(&b, "", 0);
		if (i > 0)
			sb_str(&b, ",");
		*eq = '\0';
		sb_json_string(&b, kv[i]);
		*eq = '=';
		sb_str(&b, ":");
		if (val[0] == '@') {
			if ((file = slurp(val + 1)) == NULL) {
				fprintf(stderr, "ammctl cmd: %s: %s\n", val + 1, strerror(errno));
				free(b.p);
				return NULL;
			}
			val = file;
		}
		if (is_json_value(val))
			sb_str(&b, val);
		else
			sb_json_string(&b, val);
		free(file);
	}
	sb_str(&b, "}");
	if (b.oom) {
		free(b.p);
		fprintf(stderr, "ammctl cmd: out of memory\n");
		return NULL;
	}
	return b.p;
}

/* "90", "90s", "15m", "2h", "1d" to seconds; -1 if bad. */
static long
cmd_duration(const char *s)
{
	char *end;
	long v = strtol(s, &end, 10);
	long mul = 1;
	if (end == s || v <= 0)
		return -1;
	if (*end == 's')
		end++;
	else if (*end == 'm')
		mul = 60, end++;
	else if (*end == 'h')
		mul = 3600, end++;
	else if (*end == 'd')
		mul = 86400, end++;
	if (*end != '\0' || v > 366L * 86400 / mul)
		return -1;
	return v * mul;
}

/* ---- queue ---------------------------------------------------------------------------------- */

static bool
cmd_terminal(const char *state)
{
	return strcmp(state, "queued") != 0 && strcmp(state, "running") != 0;
}

static int
cmd_wait(PGconn *c, const struct cmd_opts *o, const char *ids)
{
	char err[DB_ERR_MAX];
	const char *params[1] = {ids};
	time_t deadline = time(NULL) + o->timeout;
	for (;;) {
		PGresult *r = db_query(
		    c,
		    "SELECT c.id, m.serial, c.state, coalesce(c.result::text, ''), "
		    "coalesce(c.error, '') FROM command c JOIN meter m ON m.id = c.meter_id "
		    "WHERE c.id = ANY ($1::bigint[]) ORDER BY c.id",
		    1, params, err, sizeof(err));
		if (r == NULL) {
			fprintf(stderr, "ammctl cmd: %s\n", err);
			return 1;
		}
		int n = PQntuples(r), done = 0, ok = 0;
		for (int i = 0; i < n; i++) {
			done += cmd_terminal(PQgetvalue(r, i, 2));
			ok += strcmp(PQgetvalue(r, i, 2), "succeeded") == 0;
		}
		if (done == n || time(NULL) >= deadline) {
			struct json j;
			if (o->json) {
				json_init(&j, stdout, false);
				json_arr_begin(&j, NULL);
			}
			for (int i = 0; i < n; i++) {
				if (o->json) {
					json_obj_begin(&j, NULL);
					json_int(&j, "id", strtoll(PQgetvalue(r, i, 0), NULL, 10));
					json_str(&j, "meter", PQgetvalue(r, i, 1));
					json_str(&j, "state", PQgetvalue(r, i, 2));
					if (*PQgetvalue(r, i, 4))
						json_str(&j, "error", PQgetvalue(r, i, 4));
					json_obj_end(&j);
				} else {
					printf("command %s meter %s: %s%s%s\n", PQgetvalue(r, i, 0),
					       PQgetvalue(r, i, 1), PQgetvalue(r, i, 2),
					       *PQgetvalue(r, i, 4) ? ": " : "",
					       PQgetvalue(r, i, 4));
					if (*PQgetvalue(r, i, 3))
						printf("  %s\n", PQgetvalue(r, i, 3));
				}
			}
			if (o->json) {
				json_arr_end(&j);
				json_end(&j);
			}
			if (done < n)
				fprintf(stderr,
				        "ammctl cmd: %d of %d commands still pending after %d s\n",
				        n - done, n, o->timeout);
			PQclear(r);
			return ok == n ? 0 : 1;
		}
		PQclear(r);
		usleep(200 * 1000);
	}
}

static int
cmd_submit(int kind, const struct cmd_opts *o)
{
	char err[1024];
	char **meters = calloc((size_t)o->npos + 1, sizeof(char *));
	char **kv = calloc((size_t)o->npos + 1, sizeof(char *));
	int nmeters = 0, nkv = 0, rc = 1;
	char *params = NULL;
	struct sbuf arr = {0}, ids = {0};
	struct cmdk_params p;
	PGconn *c = NULL;
	PGresult *r = NULL;

	if (meters == NULL || kv == NULL)
		goto out;
	for (int i = 1; i < o->npos; i++) {
		if (strchr(o->pos[i], '=') != NULL)
			kv[nkv++] = o->pos[i];
		else
			meters[nmeters++] = o->pos[i];
	}
	for (int i = 0; i < nmeters; i++) {
		if (strspn(meters[i],
		           "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") !=
		        strlen(meters[i]) ||
		    strlen(meters[i]) > 32) {
			fprintf(stderr, "ammctl cmd %s: '%s' is not a meter serial\n",
			        cmdk_name(kind), meters[i]);
			rc = 2;
			goto out;
		}
	}
	if (nmeters == 0) {
		fprintf(stderr, "ammctl cmd %s: no meter given\n", cmdk_name(kind));
		rc = 2;
		goto out;
	}
	if (nmeters > 1 && !o->confirm) {
		fprintf(stderr,
		        "ammctl cmd %s: %d meters: a command over several meters needs --confirm\n",
		        cmdk_name(kind), nmeters);
		rc = 2;
		goto out;
	}
	long expires = -1;
	if (o->expires != NULL && (expires = cmd_duration(o->expires)) < 0) {
		fprintf(stderr, "ammctl cmd: --expires '%s' is not a duration (90s, 15m, 2h, 1d)\n",
		        o->expires);
		rc = 2;
		goto out;
	}
	if ((params = cmd_build_params(o, kv, nkv)) == NULL)
		goto out;
	if (cmdk_parse(kind, params, (int64_t)time(NULL), &p, err, sizeof(err)) != 0) {
		fprintf(stderr, "ammctl cmd: %s\n", err);
		goto out;
	}
	sb_str(&arr, "{");
	for (int i = 0; i < nmeters; i++) {
		if (i)
			sb_str(&arr, ",");
		sb_json_string(&arr, meters[i]); /* array element quoting is JSON-like */
	}
	sb_str(&arr, "}");
	char exp[32];
	snprintf(exp, sizeof(exp), "%ld seconds", expires);
	const char *key = cmdk_idempotency_key(&p);
	const char *qp[5] = {arr.p, cmdk_name(kind), params, expires > 0 ? exp : NULL, key};
	if ((c = cmd_connect(o)) == NULL)
		goto out;
	r = db_query(
	    c,
	    "SELECT command_id, serial, merged FROM ammd_command_submit($1::text[], $2, "
	    "$3::jsonb, CASE WHEN $4::text IS NULL THEN NULL ELSE now() + $4::interval END, $5)",
	    5, qp, err, sizeof(err));
	if (r == NULL) {
		fprintf(stderr, "ammctl cmd %s: %s\n", cmdk_name(kind), err);
		goto out;
	}
	struct json j;
	if (o->json && !o->wait) {
		json_init(&j, stdout, false);
		json_arr_begin(&j, NULL);
	}
	sb_str(&ids, "{");
	for (int i = 0; i < PQntuples(r); i++) {
		bool merged = strcmp(PQgetvalue(r, i, 2), "t") == 0;
		if (i)
			sb_str(&ids, ",");
		sb_str(&ids, PQgetvalue(r, i, 0));
		if (o->wait)
			continue;
		if (o->json) {
			json_obj_begin(&j, NULL);
			json_int(&j, "id", strtoll(PQgetvalue(r, i, 0), NULL, 10));
			json_str(&j, "meter", PQgetvalue(r, i, 1));
			json_str(&j, "kind", cmdk_name(kind));
			json_bool(&j, "merged", merged);
			json_obj_end(&j);
		} else {
			printf("command %s %s for meter %s%s\n", PQgetvalue(r, i, 0),
			       merged ? "merged" : "queued", PQgetvalue(r, i, 1),
			       merged ? " (an identical command is already pending)" : "");
		}
	}
	sb_str(&ids, "}");
	if (o->json && !o->wait) {
		json_arr_end(&j);
		json_end(&j);
	}
	rc = o->wait ? cmd_wait(c, o, ids.p) : 0;
out:
	if (r)
		PQclear(r);
	if (c)
		PQfinish(c);
	free(params);
	free(arr.p);
	free(ids.p);
	free(meters);
	free(kv);
	return rc;
}

/* ---- list, show, cancel ---------------------------------------------------------- */

static const char *const cmd_cols[] = {
    "id", "meter", "kind", "state", "attempts", "created_by", "created_at", "finished_at", "error"};

static int
cmd_list(const struct cmd_opts *o)
{
	char err[DB_ERR_MAX], lim[16];
	snprintf(lim, sizeof(lim), "%d", o->limit);
	const char *qp[3] = {o->state, o->meter, lim};
	PGconn *c = cmd_connect(o);
	if (c == NULL)
		return 1;
	PGresult *r =
	    db_query(c,
	             "SELECT c.id, m.serial, c.kind, c.state, c.attempts, c.created_by, "
	             "to_char(c.created_at, 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), "
	             "coalesce(to_char(c.finished_at, 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), ''), "
	             "coalesce(c.error, '') FROM command c JOIN meter m ON m.id = c.meter_id "
	             "WHERE ($1::text IS NULL OR c.state::text = $1) AND ($2::text IS NULL OR "
	             "m.serial = $2) "
	             "ORDER BY c.id DESC LIMIT $3::integer",
	             3, qp, err, sizeof(err));
	if (r == NULL) {
		fprintf(stderr, "ammctl cmd list: %s\n", err);
		PQfinish(c);
		return 1;
	}
	struct json j;
	if (o->json) {
		json_init(&j, stdout, false);
		json_arr_begin(&j, NULL);
	} else {
		printf("%-8s %-16s %-16s %-10s %-3s %-14s %-20s %s\n", "ID", "METER", "KIND",
		       "STATE", "TRY", "BY", "CREATED", "ERROR");
	}
	for (int i = 0; i < PQntuples(r); i++) {
		if (o->json) {
			json_obj_begin(&j, NULL);
			for (int k = 0; k < 9; k++) {
				const char *v = PQgetvalue(r, i, k);
				if (k == 0 || k == 4)
					json_int(&j, cmd_cols[k], strtoll(v, NULL, 10));
				else if (*v || k < 7)
					json_str(&j, cmd_cols[k], v);
			}
			json_obj_end(&j);
		} else {
			printf("%-8s %-16s %-16s %-10s %-3s %-14s %-20s %s\n", PQgetvalue(r, i, 0),
			       PQgetvalue(r, i, 1), PQgetvalue(r, i, 2), PQgetvalue(r, i, 3),
			       PQgetvalue(r, i, 4), PQgetvalue(r, i, 5), PQgetvalue(r, i, 6),
			       PQgetvalue(r, i, 8));
		}
	}
	if (o->json) {
		json_arr_end(&j);
		json_end(&j);
	}
	PQclear(r);
	PQfinish(c);
	return 0;
}

static int
cmd_show(const struct cmd_opts *o)
{
	char err[DB_ERR_MAX];
	if (o->npos != 2) {
		cmd_usage(stderr);
		return 2;
	}
	const char *qp[1] = {o->pos[1]};
	PGconn *c = cmd_connect(o);
	if (c == NULL)
		return 1;
	PGresult *r = db_query(
	    c,
	    "SELECT json_build_object('id', c.id, 'meter', m.serial, 'kind', c.kind, 'params', "
	    "c.params, 'state', c.state, 'attempts', c.attempts, 'created_by', c.created_by, "
	    "'created_at', c.created_at, 'not_before', c.not_before, 'expires_at', c.expires_at, "
	    "'claimed_by', c.claimed_by, 'started_at', c.started_at, 'finished_at', c.finished_at, "
	    "'idempotency_key', c.idempotency_key, 'result', c.result, 'error', c.error, "
	    "'audit', (SELECT json_agg(json_build_object('at', a.at, 'actor', a.actor, 'from', "
	    "a.old_state, 'to', a.new_state, 'note', a.note) ORDER BY a.id) FROM command_audit a "
	    "WHERE a.command_id = c.id))::text "
	    "FROM command c JOIN meter m ON m.id = c.meter_id WHERE c.id = $1::bigint",
	    1, qp, err, sizeof(err));
	PQfinish(c);
	if (r == NULL) {
		fprintf(stderr, "ammctl cmd show: %s\n", err);
		return 1;
	}
	if (PQntuples(r) == 0) {
		fprintf(stderr, "ammctl cmd show: no command %s\n", o->pos[1]);
		PQclear(r);
		return 1;
	}
	printf("%s\n", PQgetvalue(r, 0, 0));
	PQclear(r);
	return 0;
}

static int
cmd_cancel(const struct cmd_opts *o)
{
	char err[DB_ERR_MAX];
	int rc = 0;
	if (o->npos < 2) {
		cmd_usage(stderr);
		return 2;
	}
	PGconn *c = cmd_connect(o);
	if (c == NULL)
		return 1;
	for (int i = 1; i < o->npos; i++) {
		const char *qp[1] = {o->pos[i]};
		PGresult *r = db_query(c,
		                       "SELECT coalesce(ammd_command_cancel($1::bigint), false), "
		                       "(SELECT state::text FROM command WHERE id = $1::bigint)",
		                       1, qp, err, sizeof(err));
		if (r == NULL) {
			fprintf(stderr, "ammctl cmd cancel %s: %s\n", o->pos[i], err);
			rc = 1;
			continue;
		}
		if (PQgetisnull(r, 0, 1)) {
			fprintf(stderr, "ammctl cmd cancel: no command %s\n", o->pos[i]);
			rc = 1;
		} else if (strcmp(PQgetvalue(r, 0, 0), "t") == 0) {
			printf("command %s cancelled\n", o->pos[i]);
		} else {
			fprintf(stderr,
			        "ammctl cmd cancel: command %s is %s: only a queued command "
			        "can be cancelled\n",
			        o->pos[i], PQgetvalue(r, 0, 1));
			rc = 1;
		}
		PQclear(r);
	}
	PQfinish(c);
	return rc;
}

int
ctl_cmd(int argc, char **argv)
{
	struct cmd_opts o;
	int rc;

	if (argc < 1) {
		cmd_usage(stderr);
		return 2;
	}
	if (strcmp(argv[0], "-h") == 0 || strcmp(argv[0], "--help") == 0) {
		cmd_usage(stdout);
		return 0;
	}
	if ((rc = cmd_opts_parse(argc, argv, &o)) != 0) {
		free(o.pos);
		return rc;
	}
	const char *sub = o.npos > 0 ? o.pos[0] : "";
	int kind = cmdk_by_name(sub);
	if (kind >= 0)
		rc = cmd_submit(kind, &o);
	else if (strcmp(sub, "list") == 0)
		rc = cmd_list(&o);
	else if (strcmp(sub, "show") == 0)
		rc = cmd_show(&o);
	else if (strcmp(sub, "cancel") == 0)
		rc = cmd_cancel(&o);
	else {
		fprintf(stderr, "ammctl cmd: unknown kind or subcommand '%s'\n", sub);
		cmd_usage(stderr);
		rc = 2;
	}
	free(o.pos);
	return rc;
}
