/*
 * ctl_meter.c: `ammctl meter ...`, the meter inventory from the command
 * line.
 *
 *   ammctl meter import [--dsn DSN] FILE|-
 *   ammctl meter add    [--dsn DSN] SERIAL key=value...
 *   ammctl meter list   [--dsn DSN] [--json]
 *   ammctl meter show   [--dsn DSN] [--json] SERIAL
 *   ammctl meter disable|enable [--dsn DSN] SERIAL
 *
 * The import format is CSV (RFC 4180 quoting; '#' lines and empty lines are
 * skipped) whose first line names the columns, in any order:
 *
 *   serial          required; 1..32 of [A-Za-z0-9._-]
 *   type            162 | 282 | 382M | other                     (other)
 *   transport       required; tcpip | gprs | mbus | modbus
 *   host, port      the meter's module: tcpip needs host (port 4059);
 *                   gprs: the APN address if the head-end dials out
 *   hdlc            1/0, true/false, yes/no: HDLC instead of the wrapper (0)
 *   client_addr     0..127                                          (16)
 *   server_addr     0..16383                                        (1)
 *   security        none | lls | hls-gmac                           (none)
 *   ek, ak          hex, 16 or 32 bytes (hls-gmac needs both)
 *   password        LLS secret (lls needs it)
 *   system_title    hex, 8 bytes: the meter's system title
 *   profile_period  seconds: 60, 300, 600, 900, 1800, 3600          (900)
 *   gateway         mbus/modbus: the gateway as host:port
 *   primary_addr    M-Bus primary address 0..250, or the Modbus unit id
 *   secondary_addr  M-Bus secondary address, 16 hex digits
 *
 * An empty field takes the default.  ek, ak, password and system_title come
 * as a group: when the header names any of them it must name all, because
 * the file then says the whole truth about each meter's keys.  Every line
 * is checked before anything is written; a file with any bad line imports
 * nothing and each bad line is reported with its number.  Importing a file
 * again updates the meters it names (by serial) and leaves the rest alone;
 * `enabled` and the collection state are never touched by an import.
 *
 * Rows are streamed with COPY into a temporary table and merged with one
 * INSERT ... ON CONFLICT, in a single transaction.
 */
#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "db.h"
#include "json.h"
#include "meter_csv.h"

#define METER_MAX_ERRORS 20 /* bad lines reported in full */
#define METER_FLUSH      (256 * 1024)

/* The temporary table the COPY fills; columns in meter_row_emit() order. */
static const char meter_tmp_sql[] =
    "CREATE TEMP TABLE meter_import ("
    " line integer NOT NULL, serial text NOT NULL, type text NOT NULL, transport text NOT NULL,"
    " host text, port integer, hdlc boolean NOT NULL, client_addr integer NOT NULL,"
    " server_addr integer NOT NULL, security text NOT NULL, ek bytea, ak bytea, password text,"
    " system_title bytea, profile_period integer NOT NULL, gw_name text, gw_host text,"
    " gw_port integer, primary_addr integer, secondary_addr text) ON COMMIT DROP";

struct meter_opts {
	const char *dsn;
	bool json;
	int npos;
	char **pos;
};

static void
meter_usage(FILE *f)
{
	fprintf(f, "usage: ammctl meter import [--dsn DSN] FILE|-\n"
	           "       ammctl meter add [--dsn DSN] SERIAL key=value...\n"
	           "       ammctl meter list [--dsn DSN] [--json]\n"
	           "       ammctl meter show [--dsn DSN] [--json] SERIAL\n"
	           "       ammctl meter disable|enable [--dsn DSN] SERIAL\n"
	           "keys (and CSV columns):");
	for (int i = 0; i < MC_NCOLS; i++)
		fprintf(f, " %s", meter_csv_col_names[i]);
	fprintf(f, "\nDSN defaults to $" DB_ENV ", then to libpq's defaults.\n");
}

/*
 * Splits options from positional arguments and checks that there are
 * min_pos to max_pos of the latter; returns 0, 1 (out of memory) or 2 (a
 * usage error, reported).  o->pos is the caller's to free in every case.
 */
static int
meter_parse_opts(int argc, char **argv, struct meter_opts *o, bool allow_json, int min_pos,
                 int max_pos)
{
	memset(o, 0, sizeof(*o));
	o->pos = calloc((size_t)argc + 1, sizeof(*o->pos));
	if (o->pos == NULL)
		return 1;
	for (int i = 0; i < argc; i++) {
		const char *a = argv[i];
		if (strcmp(a, "--dsn") == 0) {
			if (i + 1 >= argc) {
				fprintf(stderr, "ammctl meter: --dsn needs a value\n");
				return 2;
			}
			o->dsn = argv[++i];
		} else if (strncmp(a, "--dsn=", 6) == 0) {
			o->dsn = a + 6;
		} else if (allow_json && strcmp(a, "--json") == 0) {
			o->json = true;
		} else if (a[0] == '-' && a[1] == '-') {
			fprintf(stderr, "ammctl meter: unknown option '%s'\n", a);
			meter_usage(stderr);
			return 2;
		} else {
			o->pos[o->npos++] = argv[i];
		}
	}
	if (o->npos < min_pos || o->npos > max_pos) {
		meter_usage(stderr);
		return 2;
	}
	return 0;
}

/* Connects for subcommand cmd; NULL after saying why. */
static PGconn *
meter_connect(const struct meter_opts *o, const char *cmd)
{
	char err[DB_ERR_MAX];
	PGconn *c = db_connect(o->dsn, "ammctl", err, sizeof(err));

	if (c == NULL)
		fprintf(stderr, "ammctl meter %s: cannot connect: %s\n", cmd, err);
	return c;
}

/* Frees what meter_parse_opts() took and ends the connection, if any. */
static void
meter_close(struct meter_opts *o, PGconn *c)
{
	free(o->pos);
	if (c != NULL)
		PQfinish(c);
}

/* Runs one statement for subcommand cmd; NULL after saying why. */
static PGresult *
meter_query(PGconn *c, const char *cmd, const char *sql, int nparams, const char *const *params)
{
	char err[DB_ERR_MAX];
	PGresult *res = db_query(c, sql, nparams, params, err, sizeof(err));

	if (res == NULL)
		fprintf(stderr, "ammctl meter %s: %s\n", cmd, err);
	return res;
}

static void
meter_copy_int(struct db_copybuf *b, long v, bool null)
{
	char t[24];
	int k;

	if (null) {
		db_copy_field(b, NULL, 0);
		return;
	}
	k = snprintf(t, sizeof(t), "%ld", v);
	db_copy_field(b, t, (size_t)k);
}

static void
meter_copy_str(struct db_copybuf *b, const char *s, size_t n)
{
	db_copy_field(b, s, s != NULL ? n : 0);
}

static void
meter_row_emit(const struct meter_row *r, long line, struct db_copybuf *b)
{
	meter_copy_int(b, line, false);
	meter_copy_str(b, r->serial, r->serial_len);
	meter_copy_str(b, r->type, strlen(r->type));
	meter_copy_str(b, r->transport, strlen(r->transport));
	meter_copy_str(b, r->host, r->host_len);
	meter_copy_int(b, r->port, r->port == 0);
	meter_copy_str(b, r->hdlc ? "t" : "f", 1);
	meter_copy_int(b, r->client_addr, false);
	meter_copy_int(b, r->server_addr, false);
	meter_copy_str(b, r->security, strlen(r->security));
	db_copy_bytea(b, r->ek_len ? r->ek : NULL, r->ek_len);
	db_copy_bytea(b, r->ak_len ? r->ak : NULL, r->ak_len);
	meter_copy_str(b, r->password, r->password_len);
	db_copy_bytea(b, r->has_st ? r->st : NULL, sizeof(r->st));
	meter_copy_int(b, r->period, false);
	meter_copy_str(b, r->gw, r->gw_len);
	meter_copy_str(b, r->gw, r->gw_host_len);
	meter_copy_int(b, r->gw_port, r->gw == NULL);
	meter_copy_int(b, r->primary, r->primary < 0);
	meter_copy_str(b, r->secondary, 16);
	db_copy_endrow(b);
}

/* ---- loading ------------------------------------------------------------------------- */

struct meter_load {
	PGconn *c;
	struct db_copybuf buf;
	long nrows;
	int nerr;
	bool keys;     /* the input says the truth about keys */
	bool add_only; /* `meter add`: refuse existing serials */
	char err[DB_ERR_MAX];
};

static void
meter_bad(struct meter_load *l, long line, const char *msg)
{
	if (l->nerr < METER_MAX_ERRORS) {
		if (line > 0)
			fprintf(stderr, "line %ld: %s\n", line, msg);
		else
			fprintf(stderr, "%s\n", msg);
	}
	l->nerr++;
}

/* Starts the transaction and the COPY. */
static int
meter_load_begin(struct meter_load *l)
{
	if (db_exec(l->c, "BEGIN", l->err, sizeof(l->err)) < 0 ||
	    db_exec(l->c, meter_tmp_sql, l->err, sizeof(l->err)) < 0 ||
	    db_copy_begin(l->c, "COPY meter_import FROM STDIN", l->err, sizeof(l->err)) < 0)
		return -1;
	return 0;
}

static int
meter_load_row(struct meter_load *l, const struct meter_fields *f, long line)
{
	struct meter_row r;
	char why[512];

	if (meter_csv_row_check(f, &r, why, sizeof(why)) < 0) {
		meter_bad(l, line, why);
		return 0;
	}
	if (l->nerr > 0)
		return 0; /* nothing will be written: stop sending */
	meter_row_emit(&r, line, &l->buf);
	l->nrows++;
	return db_copy_flush(l->c, &l->buf, METER_FLUSH, l->err, sizeof(l->err));
}

/* Prints the rows of a check query (line, message) as errors. */
static int
meter_load_check(struct meter_load *l, const char *sql)
{
	PGresult *res = db_query(l->c, sql, 0, NULL, l->err, sizeof(l->err));

	if (res == NULL)
		return -1;
	for (int i = 0; i < PQntuples(res); i++)
		meter_bad(l, atol(PQgetvalue(res, i, 0)), PQgetvalue(res, i, 1));
	PQclear(res);
	return 0;
}

/*
 * Ends the COPY and merges: gateways, meters, keys.  Returns 0 (committed;
 * counts printed), 1 (bad input, rolled back) or -1 (database error).
 */
static int
meter_load_finish(struct meter_load *l, bool quiet)
{
	PGresult *res = NULL;
	long long copied = 0;

	if (db_copy_flush(l->c, &l->buf, 0, l->err, sizeof(l->err)) < 0)
		return -1;
	if (l->nerr > 0) {
		db_copy_end(l->c, "bad input", NULL, l->err, sizeof(l->err));
		return 1;
	}
	if (db_copy_end(l->c, NULL, &copied, l->err, sizeof(l->err)) < 0 ||
	    db_exec(l->c, "ANALYZE meter_import", l->err, sizeof(l->err)) < 0)
		return -1;

	/* Checks that need the whole input, or the database. */
	if (meter_load_check(l, "SELECT min(line), format('serial %s appears on lines %s', serial,"
	                        " string_agg(line::text, ', ' ORDER BY line))"
	                        " FROM meter_import GROUP BY serial HAVING count(*) > 1"
	                        " ORDER BY min(line) LIMIT 20") < 0)
		return -1;
	if (l->add_only &&
	    meter_load_check(l, "SELECT 0, format('meter %s exists already (import updates it)',"
	                        " i.serial) FROM meter_import i JOIN meter m USING (serial)") < 0)
		return -1;
	if (l->nerr > 0)
		return 1;
	if (db_exec(l->c,
	            "INSERT INTO gateway (name, kind, host, port)"
	            " SELECT DISTINCT ON (gw_name) gw_name, transport, gw_host, gw_port"
	            " FROM meter_import WHERE gw_name IS NOT NULL ORDER BY gw_name, line"
	            " ON CONFLICT (name) DO NOTHING",
	            l->err, sizeof(l->err)) < 0)
		return -1;
	if (meter_load_check(
	        l, "SELECT i.line, format('gateway %s is a %s gateway, not %s', g.name, g.kind,"
	           " i.transport) FROM meter_import i JOIN gateway g ON g.name = i.gw_name"
	           " WHERE g.kind <> i.transport ORDER BY i.line LIMIT 20") < 0)
		return -1;
	if (l->nerr > 0)
		return 1;

	res = db_query(
	    l->c,
	    "WITH up AS ("
	    " INSERT INTO meter AS m (serial, type, transport, host, port, hdlc, client_addr,"
	    "  server_addr, security, profile_period, gateway_id, primary_addr, secondary_addr)"
	    " SELECT i.serial, i.type, i.transport, i.host, i.port, i.hdlc, i.client_addr,"
	    "  i.server_addr, i.security, i.profile_period, g.id, i.primary_addr, i.secondary_addr"
	    " FROM meter_import i LEFT JOIN gateway g ON g.name = i.gw_name ORDER BY i.line"
	    " ON CONFLICT (serial) DO UPDATE SET type = EXCLUDED.type,"
	    "  transport = EXCLUDED.transport, host = EXCLUDED.host, port = EXCLUDED.port,"
	    "  hdlc = EXCLUDED.hdlc, client_addr = EXCLUDED.client_addr,"
	    "  server_addr = EXCLUDED.server_addr, security = EXCLUDED.security,"
	    "  profile_period = EXCLUDED.profile_period, gateway_id = EXCLUDED.gateway_id,"
	    "  primary_addr = EXCLUDED.primary_addr, secondary_addr = EXCLUDED.secondary_addr,"
	    "  updated_at = now()"
	    " WHERE (m.type, m.transport, m.host, m.port, m.hdlc, m.client_addr, m.server_addr,"
	    "  m.security, m.profile_period, m.gateway_id, m.primary_addr, m.secondary_addr)"
	    "  IS DISTINCT FROM (EXCLUDED.type, EXCLUDED.transport, EXCLUDED.host, EXCLUDED.port,"
	    "  EXCLUDED.hdlc, EXCLUDED.client_addr, EXCLUDED.server_addr, EXCLUDED.security,"
	    "  EXCLUDED.profile_period, EXCLUDED.gateway_id, EXCLUDED.primary_addr,"
	    "  EXCLUDED.secondary_addr)"
	    " RETURNING (xmax = 0) AS inserted)"
	    " SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM "
	    "up",
	    0, NULL, l->err, sizeof(l->err));
	if (res == NULL)
		return -1;
	long long added = atoll(PQgetvalue(res, 0, 0)), changed = atoll(PQgetvalue(res, 0, 1));
	PQclear(res);
	long long keyed = 0;
	if (l->keys) {
		/* Meters whose keys are cleared need their old row visited too. */
		res = db_query(
		    l->c,
		    "SELECT coalesce(ammd_set_meter_keys(array_agg(m.id), array_agg(i.ek),"
		    " array_agg(i.ak), array_agg(i.password), array_agg(i.system_title)), 0)"
		    " FROM meter_import i JOIN meter m USING (serial)"
		    " WHERE i.ek IS NOT NULL OR i.ak IS NOT NULL OR i.password IS NOT NULL"
		    "  OR i.system_title IS NOT NULL"
		    "  OR EXISTS (SELECT 1 FROM meter_key k WHERE k.meter_id = m.id)",
		    0, NULL, l->err, sizeof(l->err));
		if (res == NULL)
			return -1;
		keyed = atoll(PQgetvalue(res, 0, 0));
		PQclear(res);
	}
	if (db_exec(l->c, "COMMIT", l->err, sizeof(l->err)) < 0)
		return -1;
	if (!quiet)
		printf("%lld meters read: %lld added, %lld updated, %lld unchanged; keys set for "
		       "%lld\n",
		       copied, added, changed, copied - added - changed, keyed);
	return 0;
}

/* Maps a finish/begin result to an exit code, printing database errors. */
static int
meter_load_exit(struct meter_load *l, const char *cmd, int r)
{
	if (r < 0) {
		fprintf(stderr, "ammctl meter %s: %s\n", cmd, l->err);
		PQclear(PQexec(l->c, "ROLLBACK"));
		return 1;
	}
	if (r > 0) {
		if (l->nerr > METER_MAX_ERRORS)
			fprintf(stderr, "... and %d more\n", l->nerr - METER_MAX_ERRORS);
		fprintf(stderr, "ammctl meter %s: %d bad line%s, nothing imported\n", cmd, l->nerr,
		        l->nerr == 1 ? "" : "s");
		PQclear(PQexec(l->c, "ROLLBACK"));
		return 1;
	}
	return 0;
}

static int
meter_cmd_import(int argc, char **argv)
{
	struct meter_opts o;
	struct meter_load l = {0};
	FILE *in = NULL;
	struct meter_csv_header h;
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;
	long lineno = 0;
	int rc = 1, r = 0;

	if ((rc = meter_parse_opts(argc, argv, &o, false, 1, 1)) != 0)
		goto out;
	rc = 1;
	if (strcmp(o.pos[0], "-") == 0)
		in = stdin;
	else if ((in = fopen(o.pos[0], "r")) == NULL) {
		fprintf(stderr, "ammctl meter import: %s: %s\n", o.pos[0], strerror(errno));
		goto out;
	}

	/* The header. */
	while ((len = getline(&line, &cap, in)) >= 0) {
		lineno++;
		if (!meter_csv_skip(line, &len))
			break;
	}
	if (len < 0) {
		fprintf(stderr, "ammctl meter import: %s: no header line\n", o.pos[0]);
		goto out;
	}
	if (meter_csv_header(line, &h, l.err, sizeof(l.err)) < 0) {
		fprintf(stderr, "ammctl meter import: line %ld (header): %s\n", lineno, l.err);
		goto out;
	}
	l.keys = h.keys;

	if ((l.c = meter_connect(&o, "import")) == NULL)
		goto out;
	if (meter_load_begin(&l) < 0) {
		rc = meter_load_exit(&l, "import", -1);
		goto out;
	}
	while ((len = getline(&line, &cap, in)) >= 0) {
		struct meter_fields f;
		char why[256];

		lineno++;
		if (meter_csv_skip(line, &len))
			continue;
		if (meter_csv_record(line, (size_t)len, &h, &f, why, sizeof(why)) < 0) {
			meter_bad(&l, lineno, why);
			continue;
		}
		if (meter_load_row(&l, &f, lineno) < 0) {
			r = -1;
			break;
		}
	}
	if (r == 0 && ferror(in)) {
		snprintf(l.err, sizeof(l.err), "%s: read error", o.pos[0]);
		r = -1;
	}
	if (r == 0)
		r = meter_load_finish(&l, false);
	rc = meter_load_exit(&l, "import", r);
out:
	if (in != NULL && in != stdin)
		fclose(in);
	free(line);
	db_copybuf_free(&l.buf);
	meter_close(&o, l.c);
	return rc;
}

static int
meter_cmd_add(int argc, char **argv)
{
	struct meter_opts o;
	struct meter_load l = {0};
	struct meter_fields f = {0};
	int rc, r, nkeys = 0;

	if ((rc = meter_parse_opts(argc, argv, &o, false, 1, argc)) != 0)
		goto out;
	rc = 2;
	f.v[MC_SERIAL] = o.pos[0];
	f.n[MC_SERIAL] = strlen(o.pos[0]);
	for (int i = 1; i < o.npos; i++) {
		const char *eq = strchr(o.pos[i], '=');
		int col = eq ? meter_csv_col_index(o.pos[i], (size_t)(eq - o.pos[i])) : -1;
		if (col < 0 || col == MC_SERIAL || f.v[col] != NULL) {
			fprintf(stderr, "ammctl meter add: bad or repeated key=value '%s'\n",
			        o.pos[i]);
			meter_usage(stderr);
			goto out;
		}
		f.v[col] = eq + 1;
		f.n[col] = strlen(eq + 1);
		nkeys += col == MC_EK || col == MC_AK || col == MC_PASSWORD || col == MC_SYSTITLE;
	}
	l.add_only = true;
	l.keys = nkeys > 0; /* a new meter: absent keys are simply none */
	rc = 1;
	if ((l.c = meter_connect(&o, "add")) == NULL)
		goto out;
	r = meter_load_begin(&l);
	if (r == 0)
		r = meter_load_row(&l, &f, 0);
	if (r == 0)
		r = meter_load_finish(&l, true);
	if (l.nerr > 0 && r == 1) {
		fprintf(stderr, "ammctl meter add: meter %s not added\n", o.pos[0]);
		PQclear(PQexec(l.c, "ROLLBACK"));
		rc = 1;
		goto out;
	}
	if ((rc = meter_load_exit(&l, "add", r)) == 0)
		printf("meter %s added\n", o.pos[0]);
out:
	db_copybuf_free(&l.buf);
	meter_close(&o, l.c);
	return rc;
}

/* ---- list, show, enable/disable ----------------------------------------------------------- */

/* Column kinds for printing query results as JSON. */
struct meter_outcol {
	const char *name;
	char kind; /* 's' string, 'i' integer, 'b' boolean */
};

static void
meter_json_field(struct json *j, const PGresult *res, int row, int col,
                 const struct meter_outcol *oc)
{
	const char *v;

	if (PQgetisnull(res, row, col)) {
		json_null(j, oc->name);
		return;
	}
	v = PQgetvalue(res, row, col);
	switch (oc->kind) {
	case 'i':
		json_int(j, oc->name, strtoll(v, NULL, 10));
		break;
	case 'b':
		json_bool(j, oc->name, v[0] == 't');
		break;
	default:
		json_str(j, oc->name, v);
		break;
	}
}

/* One row's columns as members of the object being written. */
static void
meter_json_fields(struct json *j, const PGresult *res, int row, const struct meter_outcol *oc,
                  int ncol)
{
	for (int k = 0; k < ncol; k++)
		meter_json_field(j, res, row, k, &oc[k]);
}

/* Every row as an object in an array (named, or NULL at the top). */
static void
meter_json_rows(struct json *j, const char *name, const PGresult *res,
                const struct meter_outcol *oc, int ncol)
{
	json_arr_begin(j, name);
	for (int r = 0; r < PQntuples(res); r++) {
		json_obj_begin(j, NULL);
		meter_json_fields(j, res, r, oc, ncol);
		json_obj_end(j);
	}
	json_arr_end(j);
}

/*
 * The start of list, show, enable and disable: options with exactly npos
 * positional arguments, then the database.  Returns 0 with *c connected,
 * or the exit code (1, 2) after saying why; meter_close() in every case.
 */
static int
meter_open(int argc, char **argv, const char *cmd, bool allow_json, int npos, struct meter_opts *o,
           PGconn **c)
{
	int rc = meter_parse_opts(argc, argv, o, allow_json, npos, npos);

	if (rc != 0)
		return rc;
	*c = meter_connect(o, cmd);
	return *c != NULL ? 0 : 1;
}

#define METER_NCOLS(a) ((int)(sizeof(a) / sizeof((a)[0])))

/* clang-format mangles strings joined around METER_TS(), so the SQL below is laid out by hand. */
#define METER_TS(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"

static const struct meter_outcol meter_list_cols[] = {
    {"serial", 's'},  {"type", 's'},         {"transport", 's'},
    {"address", 's'}, {"security", 's'},     {"profile_period", 'i'},
    {"enabled", 'b'}, {"reachability", 's'}, {"last_contact", 's'},
};

/* clang-format off */
static const char meter_list_sql[] =
    "SELECT m.serial, m.type, m.transport,"
    " CASE WHEN g.id IS NOT NULL THEN g.name || '/' ||"
    "   coalesce(m.secondary_addr, m.primary_addr::text, '')"
    "  WHEN m.host IS NOT NULL THEN m.host || coalesce(':' || m.port, '')"
    "  ELSE '' END,"
    " m.security, m.profile_period, m.enabled, m.reachability::text, "
    METER_TS("m.last_contact_at")
    " FROM meter m LEFT JOIN gateway g ON g.id = m.gateway_id ORDER BY m.serial";
/* clang-format on */

static int
meter_cmd_list(int argc, char **argv)
{
	struct meter_opts o;
	PGconn *c = NULL;
	PGresult *res = NULL;
	int rc;

	if ((rc = meter_open(argc, argv, "list", true, 0, &o, &c)) != 0)
		goto out;
	rc = 1;
	if ((res = meter_query(c, "list", meter_list_sql, 0, NULL)) == NULL)
		goto out;
	if (o.json) {
		struct json j;
		json_init(&j, stdout, false);
		meter_json_rows(&j, NULL, res, meter_list_cols, METER_NCOLS(meter_list_cols));
		json_end(&j);
	} else {
		printf("%-16s %-5s %-9s %-28s %-8s %6s %-7s %-11s %s\n", "SERIAL", "TYPE",
		       "TRANSPORT", "ADDRESS", "SECURITY", "PERIOD", "ENABLED", "REACHABLE",
		       "LAST CONTACT");
		for (int r = 0; r < PQntuples(res); r++)
			printf("%-16s %-5s %-9s %-28s %-8s %6s %-7s %-11s %s\n",
			       PQgetvalue(res, r, 0), PQgetvalue(res, r, 1), PQgetvalue(res, r, 2),
			       PQgetvalue(res, r, 3), PQgetvalue(res, r, 4), PQgetvalue(res, r, 5),
			       PQgetvalue(res, r, 6)[0] == 't' ? "yes" : "no",
			       PQgetvalue(res, r, 7),
			       PQgetisnull(res, r, 8) ? "never" : PQgetvalue(res, r, 8));
		printf("%d meter%s\n", PQntuples(res), PQntuples(res) == 1 ? "" : "s");
	}
	rc = 0;
out:
	PQclear(res);
	meter_close(&o, c);
	return rc;
}

static const struct meter_outcol meter_show_cols[] = {
    {"serial", 's'},      {"id", 'i'},           {"type", 's'},         {"transport", 's'},
    {"host", 's'},        {"port", 'i'},         {"hdlc", 'b'},         {"client_addr", 'i'},
    {"server_addr", 'i'}, {"logical_addr", 'i'}, {"security", 's'},     {"profile_period", 'i'},
    {"gateway", 's'},     {"gateway_kind", 's'}, {"primary_addr", 'i'}, {"secondary_addr", 's'},
    {"enabled", 'b'},     {"reachability", 's'}, {"last_contact", 's'}, {"last_error", 's'},
    {"failures", 'i'},    {"next_due", 's'},     {"firmware", 's'},     {"leased_by", 's'},
    {"lease_until", 's'}, {"keys_set", 'b'},     {"system_title", 's'}, {"collect", 's'},
    {"created", 's'},     {"updated", 's'},
};

/* clang-format off */
static const char meter_show_sql[] =
    "SELECT m.serial, m.id, m.type, m.transport, m.host, m.port, m.hdlc, m.client_addr,"
    " m.server_addr, m.logical_addr, m.security, m.profile_period, g.name, g.kind,"
    " m.primary_addr, m.secondary_addr, m.enabled, m.reachability::text, "
    METER_TS("m.last_contact_at") ", m.last_error, m.failures, "
    METER_TS("m.next_due_at") ", m.firmware, m.leased_by, "
    METER_TS("m.lease_until") ", coalesce(k.key_set, false), encode(k.system_title, 'hex'),"
    " m.collect::text, " METER_TS("m.created_at") ", " METER_TS("m.updated_at")
    " FROM meter m LEFT JOIN gateway g ON g.id = m.gateway_id"
    " LEFT JOIN meter_key k ON k.meter_id = m.id WHERE m.serial = $1";

static const char meter_rp_sql[] =
    "SELECT p.what, " METER_TS("p.last_ts") ", p.last_entry FROM read_pointer p"
    " JOIN meter m ON m.id = p.meter_id WHERE m.serial = $1 ORDER BY p.what";
/* clang-format on */

static const struct meter_outcol meter_rp_cols[] = {
    {"what", 's'}, {"last_ts", 's'}, {"last_entry", 'i'}};

static int
meter_cmd_show(int argc, char **argv)
{
	struct meter_opts o;
	PGconn *c = NULL;
	PGresult *res = NULL, *rp = NULL;
	const char *params[1];
	int rc, ncol = METER_NCOLS(meter_show_cols);

	if ((rc = meter_open(argc, argv, "show", true, 1, &o, &c)) != 0)
		goto out;
	rc = 1;
	params[0] = o.pos[0];
	if ((res = meter_query(c, "show", meter_show_sql, 1, params)) == NULL)
		goto out;
	if (PQntuples(res) != 1) {
		fprintf(stderr, "ammctl meter show: no meter %s\n", o.pos[0]);
		goto out;
	}
	if ((rp = meter_query(c, "show", meter_rp_sql, 1, params)) == NULL)
		goto out;
	if (o.json) {
		struct json j;
		json_init(&j, stdout, true);
		json_obj_begin(&j, NULL);
		/* collect is jsonb, printed as its JSON text in a string. */
		meter_json_fields(&j, res, 0, meter_show_cols, ncol);
		meter_json_rows(&j, "read_pointers", rp, meter_rp_cols, METER_NCOLS(meter_rp_cols));
		json_obj_end(&j);
		json_end(&j);
	} else {
		for (int k = 0; k < ncol; k++) {
			const char *v = PQgetisnull(res, 0, k) ? "-" : PQgetvalue(res, 0, k);
			if (meter_show_cols[k].kind == 'b' && !PQgetisnull(res, 0, k))
				v = v[0] == 't' ? "yes" : "no";
			printf("%-15s %s\n", meter_show_cols[k].name, v);
		}
		for (int r = 0; r < PQntuples(rp); r++)
			printf("%-15s %s %s entry %s\n", "read_pointer", PQgetvalue(rp, r, 0),
			       PQgetisnull(rp, r, 1) ? "-" : PQgetvalue(rp, r, 1),
			       PQgetisnull(rp, r, 2) ? "-" : PQgetvalue(rp, r, 2));
	}
	rc = 0;
out:
	PQclear(res);
	PQclear(rp);
	meter_close(&o, c);
	return rc;
}

static int
meter_cmd_enable(int argc, char **argv, bool enable)
{
	struct meter_opts o;
	PGconn *c = NULL;
	PGresult *res = NULL;
	const char *params[2];
	const char *cmd = enable ? "enable" : "disable";
	int rc;

	if ((rc = meter_open(argc, argv, cmd, false, 1, &o, &c)) != 0)
		goto out;
	rc = 1;
	params[0] = o.pos[0];
	params[1] = enable ? "t" : "f";
	/* A disabled meter also gives up its lease, so no instance keeps it. */
	if ((res = meter_query(c, cmd,
	                       "UPDATE meter SET enabled = $2, updated_at = now(),"
	                       " leased_by = CASE WHEN $2 THEN leased_by END,"
	                       " lease_until = CASE WHEN $2 THEN lease_until END"
	                       " WHERE serial = $1",
	                       2, params)) == NULL)
		goto out;
	if (strcmp(PQcmdTuples(res), "1") != 0) {
		fprintf(stderr, "ammctl meter %s: no meter %s\n", cmd, o.pos[0]);
		goto out;
	}
	printf("meter %s %sd\n", o.pos[0], cmd);
	rc = 0;
out:
	PQclear(res);
	meter_close(&o, c);
	return rc;
}

int
ctl_meter(int argc, char **argv)
{
	if (argc < 1) {
		meter_usage(stderr);
		return 2;
	}
	if (strcmp(argv[0], "import") == 0)
		return meter_cmd_import(argc - 1, argv + 1);
	if (strcmp(argv[0], "add") == 0)
		return meter_cmd_add(argc - 1, argv + 1);
	if (strcmp(argv[0], "list") == 0)
		return meter_cmd_list(argc - 1, argv + 1);
	if (strcmp(argv[0], "show") == 0)
		return meter_cmd_show(argc - 1, argv + 1);
	if (strcmp(argv[0], "disable") == 0)
		return meter_cmd_enable(argc - 1, argv + 1, false);
	if (strcmp(argv[0], "enable") == 0)
		return meter_cmd_enable(argc - 1, argv + 1, true);
	if (strcmp(argv[0], "-h") == 0 || strcmp(argv[0], "--help") == 0) {
		meter_usage(stdout);
		return 0;
	}
	fprintf(stderr, "ammctl meter: unknown subcommand '%s'\n", argv[0]);
	meter_usage(stderr);
	return 2;
}
