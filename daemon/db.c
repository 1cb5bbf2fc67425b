/*
 * db.c: libpq helpers for ammctl and ammd (see db.h): connection set-up,
 * the migration runner over sql/NNNN_name.sql, and a COPY text writer.
 *
 * Migrations: each file runs in its own transaction with the row that
 * records it in schema_migrations, so a failing file leaves no trace and
 * the next run starts again from it.  A transaction-scoped advisory lock
 * serialises concurrent runners (several ammd starting together); the
 * second one then finds the migration recorded and skips it.  The SHA-256
 * of each file is recorded too, so that a shipped migration edited after
 * the fact is noticed instead of silently diverging between databases.
 */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "db.h"

#ifndef AMMD_SQLDIR
#define AMMD_SQLDIR "/usr/local/share/ammd/sql"
#endif

/* "ammd_mig" as a number: the advisory lock of the migration runner. */
#define DB_MIGRATE_LOCK "7020093409436936551"

static void
db_seterr(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* Drops the trailing newline libpq puts on its messages. */
static void
db_chomp(char *s)
{
	size_t n = strlen(s);

	while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == ' '))
		s[--n] = '\0';
}

const char *
db_conninfo(const char *arg)
{
	const char *env;

	if (arg != NULL && arg[0] != '\0')
		return arg;
	env = getenv(DB_ENV);
	if (env != NULL && env[0] != '\0')
		return env;
	return "";
}

void
db_error(PGconn *c, const PGresult *res, char *err, size_t errlen)
{
	const char *msg = NULL, *detail = NULL, *hint = NULL;

	if (res != NULL) {
		msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
		detail = PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL);
		hint = PQresultErrorField(res, PG_DIAG_MESSAGE_HINT);
		if (msg == NULL)
			msg = PQresultErrorMessage(res);
	}
	if (msg == NULL || msg[0] == '\0')
		msg = c != NULL ? PQerrorMessage(c) : "no connection";
	if (msg == NULL || msg[0] == '\0')
		msg = "unknown database error";
	db_seterr(err, errlen, "%s%s%s%s%s%s", msg, detail ? " (" : "", detail ? detail : "",
	          detail ? ")" : "", hint ? "; hint: " : "", hint ? hint : "");
	if (err != NULL && errlen > 0)
		db_chomp(err);
}

PGconn *
db_connect(const char *conninfo, const char *appname, char *err, size_t errlen)
{
	/* The conninfo goes in last as an expandable "dbname" so that whatever
	 * it sets itself (application_name ...) wins over these defaults. */
	const char *keys[] = {"application_name", "client_encoding", "dbname", NULL};
	const char *vals[] = {appname ? appname : "ammd", "UTF8", db_conninfo(conninfo), NULL};
	PGconn *c;

	c = PQconnectdbParams(keys, vals, 1);
	if (c == NULL) {
		db_seterr(err, errlen, "out of memory");
		return NULL;
	}
	if (PQstatus(c) != CONNECTION_OK) {
		db_error(c, NULL, err, errlen);
		PQfinish(c);
		return NULL;
	}
	/* All of ammd reads and writes instants in UTC. */
	if (db_exec(c, "SET TimeZone = 'UTC'", err, errlen) < 0) {
		PQfinish(c);
		return NULL;
	}
	return c;
}

int
db_exec(PGconn *c, const char *sql, char *err, size_t errlen)
{
	PGresult *res = PQexec(c, sql);
	ExecStatusType st = PQresultStatus(res);

	if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
		db_error(c, res, err, errlen);
		PQclear(res);
		return -1;
	}
	PQclear(res);
	return 0;
}

PGresult *
db_query(PGconn *c, const char *sql, int nparams, const char *const *params, char *err,
         size_t errlen)
{
	PGresult *res = PQexecParams(c, sql, nparams, NULL, params, NULL, NULL, 0);
	ExecStatusType st = PQresultStatus(res);

	if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
		db_error(c, res, err, errlen);
		PQclear(res);
		return NULL;
	}
	return res;
}

/* ---- migrations --------------------------------------------------------------- */

static bool
db_has_init(const char *dir)
{
	char path[PATH_MAX];
	struct stat st;

	if (snprintf(path, sizeof(path), "%s/0001_init.sql", dir) >= (int)sizeof(path))
		return false;
	return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

const char *
db_sql_dir(const char *arg, char *buf, size_t buflen, char *err, size_t errlen)
{
	char exe[PATH_MAX], *slash;
	const char *env = getenv(DB_SQL_ENV);
	const char *rel[] = {"/../sql", "/../share/ammd/sql"};
	ssize_t n;

	if (arg != NULL || (env != NULL && env[0] != '\0')) {
		const char *d = arg != NULL ? arg : env;
		if (!db_has_init(d)) {
			db_seterr(err, errlen, "%s: no 0001_init.sql there", d);
			return NULL;
		}
		snprintf(buf, buflen, "%s", d);
		return buf;
	}
	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n > 0) {
		exe[n] = '\0';
		if ((slash = strrchr(exe, '/')) != NULL)
			*slash = '\0';
		for (size_t i = 0; i < sizeof(rel) / sizeof(rel[0]); i++) {
			char cand[PATH_MAX], real[PATH_MAX];
			if (snprintf(cand, sizeof(cand), "%s%s", exe, rel[i]) >= (int)sizeof(cand))
				continue;
			if (db_has_init(cand) && realpath(cand, real) != NULL &&
			    snprintf(buf, buflen, "%s", real) < (int)buflen)
				return buf;
		}
	}
	if (db_has_init(AMMD_SQLDIR)) {
		snprintf(buf, buflen, "%s", AMMD_SQLDIR);
		return buf;
	}
	db_seterr(err, errlen,
	          "no migrations found (looked next to the program and in %s; "
	          "set %s or pass --sql-dir)",
	          AMMD_SQLDIR, DB_SQL_ENV);
	return NULL;
}

/* NNNN_name.sql -> version, or -1 when the name does not follow the pattern. */
static int
db_migration_version(const char *fname)
{
	size_t n = strlen(fname);
	int v = 0;

	if (n < 10 || strcmp(fname + n - 4, ".sql") != 0 || fname[4] != '_')
		return -1;
	for (int i = 0; i < 4; i++) {
		if (fname[i] < '0' || fname[i] > '9')
			return -1;
		v = v * 10 + (fname[i] - '0');
	}
	return v > 0 ? v : -1;
}

/* Reads a whole migration file, NUL-terminated; caller frees. */
static char *
db_read_file(const char *path, size_t *len, char *err, size_t errlen)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	long sz;

	if (f == NULL) {
		db_seterr(err, errlen, "%s: %s", path, strerror(errno));
		return NULL;
	}
	if (fseek(f, 0, SEEK_END) != 0 || (sz = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0 ||
	    sz > 64L * 1024 * 1024) {
		db_seterr(err, errlen, "%s: cannot size the file", path);
		goto fail;
	}
	if ((buf = malloc((size_t)sz + 1)) == NULL) {
		db_seterr(err, errlen, "out of memory");
		goto fail;
	}
	if (fread(buf, 1, (size_t)sz, f) != (size_t)sz) {
		db_seterr(err, errlen, "%s: read error", path);
		goto fail;
	}
	buf[sz] = '\0';
	if (memchr(buf, '\0', (size_t)sz) != NULL) {
		db_seterr(err, errlen, "%s: contains a NUL byte", path);
		goto fail;
	}
	fclose(f);
	*len = (size_t)sz;
	return buf;
fail:
	free(buf);
	fclose(f);
	return NULL;
}

static int
db_sha256_hex(const char *data, size_t len, char out[65])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;

	if (EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen != 32)
		return -1;
	for (unsigned int i = 0; i < mdlen; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
	return 0;
}

static int
db_migration_cmp(const void *a, const void *b)
{
	const struct db_migration *x = a, *y = b;

	return (x->version > y->version) - (x->version < y->version);
}

/* Files of dir, sorted, with their checksums.  Returns the count or -1. */
static int
db_migration_files(const char *dir, struct db_migration **out, char *err, size_t errlen)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	struct db_migration *v = NULL, *nv;
	size_t n = 0, cap = 0;

	if (d == NULL) {
		db_seterr(err, errlen, "%s: %s", dir, strerror(errno));
		return -1;
	}
	while ((e = readdir(d)) != NULL) {
		char path[PATH_MAX];
		char *text;
		size_t len;
		int ver = db_migration_version(e->d_name);

		if (ver < 0)
			continue;
		if (n == cap) {
			cap = cap ? 2 * cap : 16;
			if ((nv = realloc(v, cap * sizeof(*v))) == NULL) {
				db_seterr(err, errlen, "out of memory");
				goto fail;
			}
			v = nv;
		}
		memset(&v[n], 0, sizeof(v[n]));
		v[n].version = ver;
		snprintf(v[n].name, sizeof(v[n].name), "%.*s", (int)(strlen(e->d_name) - 4),
		         e->d_name);
		if (snprintf(path, sizeof(path), "%s/%s", dir, e->d_name) >= (int)sizeof(path)) {
			db_seterr(err, errlen, "%s: path too long", e->d_name);
			goto fail;
		}
		if ((text = db_read_file(path, &len, err, errlen)) == NULL)
			goto fail;
		if (db_sha256_hex(text, len, v[n].sha256) < 0) {
			free(text);
			db_seterr(err, errlen, "%s: cannot compute SHA-256", path);
			goto fail;
		}
		free(text);
		n++;
	}
	closedir(d);
	d = NULL;
	qsort(v, n, sizeof(*v), db_migration_cmp);
	for (size_t i = 1; i < n; i++) {
		if (v[i].version == v[i - 1].version) {
			db_seterr(err, errlen, "%s and %s have the same version", v[i - 1].name,
			          v[i].name);
			goto fail;
		}
	}
	*out = v;
	return (int)n;
fail:
	if (d != NULL)
		closedir(d);
	free(v);
	return -1;
}

int
db_migrations(PGconn *c, const char *dir, struct db_migration **out, char *err, size_t errlen)
{
	struct db_migration *v = NULL, *nv;
	PGresult *res = NULL;
	int n;

	if ((n = db_migration_files(dir, &v, err, errlen)) < 0)
		return -1;
	if (c == NULL)
		goto done;
	res = db_query(c, "SELECT to_regclass('schema_migrations') IS NOT NULL", 0, NULL, err,
	               errlen);
	if (res == NULL)
		goto fail;
	if (strcmp(PQgetvalue(res, 0, 0), "t") != 0)
		goto done;
	PQclear(res);
	res = db_query(c,
	               "SELECT version, name, sha256, "
	               "to_char(applied_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') "
	               "FROM schema_migrations ORDER BY version",
	               0, NULL, err, errlen);
	if (res == NULL)
		goto fail;
	for (int r = 0; r < PQntuples(res); r++) {
		int ver = atoi(PQgetvalue(res, r, 0));
		struct db_migration *m = NULL;

		for (int i = 0; i < n; i++)
			if (v[i].version == ver)
				m = &v[i];
		if (m == NULL) {
			/* Applied by a newer ammctl: show it, without a file. */
			if ((nv = realloc(v, (size_t)(n + 1) * sizeof(*v))) == NULL) {
				db_seterr(err, errlen, "out of memory");
				goto fail;
			}
			v = nv;
			m = &v[n++];
			memset(m, 0, sizeof(*m));
			m->version = ver;
			snprintf(m->name, sizeof(m->name), "%s", PQgetvalue(res, r, 1));
		} else {
			m->changed = strcmp(m->sha256, PQgetvalue(res, r, 2)) != 0;
		}
		m->applied = true;
		snprintf(m->applied_at, sizeof(m->applied_at), "%s", PQgetvalue(res, r, 3));
	}
	qsort(v, (size_t)n, sizeof(*v), db_migration_cmp);
done:
	PQclear(res);
	*out = v;
	return n;
fail:
	PQclear(res);
	free(v);
	return -1;
}

static double
db_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Applies migration m (already known not to be recorded) or skips it when
 * another runner recorded it meanwhile.  Returns 1 applied, 0 skipped, -1. */
static int
db_apply(PGconn *c, const char *dir, const struct db_migration *m, char *err, size_t errlen)
{
	char path[PATH_MAX], ver[16];
	char *text = NULL;
	size_t len;
	const char *params[3];
	PGresult *res = NULL;
	int rc = -1;

	if (db_exec(c,
	            "BEGIN; SET LOCAL client_min_messages = warning; "
	            "SELECT pg_advisory_xact_lock(" DB_MIGRATE_LOCK "); "
	            "CREATE TABLE IF NOT EXISTS schema_migrations ("
	            " version integer PRIMARY KEY, name text NOT NULL, sha256 text NOT NULL,"
	            " applied_at timestamptz NOT NULL DEFAULT now(),"
	            " applied_by text NOT NULL DEFAULT current_user)",
	            err, errlen) < 0)
		goto fail;
	snprintf(ver, sizeof(ver), "%d", m->version);
	params[0] = ver;
	if ((res = db_query(c, "SELECT sha256 FROM schema_migrations WHERE version = $1", 1, params,
	                    err, errlen)) == NULL)
		goto fail;
	if (PQntuples(res) > 0) {
		if (strcmp(PQgetvalue(res, 0, 0), m->sha256) != 0) {
			db_seterr(err, errlen, "%s was changed after it was applied", m->name);
			goto fail;
		}
		PQclear(res);
		res = NULL;
		if (db_exec(c, "COMMIT", err, errlen) < 0)
			goto fail;
		return 0;
	}
	PQclear(res);
	res = NULL;
	snprintf(path, sizeof(path), "%s/%s.sql", dir, m->name);
	if ((text = db_read_file(path, &len, err, errlen)) == NULL)
		goto fail;
	{
		char sha[65];
		/* The file must still be what was listed and checksummed. */
		if (db_sha256_hex(text, len, sha) < 0 || strcmp(sha, m->sha256) != 0) {
			db_seterr(err, errlen, "%s changed while migrating", m->name);
			goto fail;
		}
	}
	if (db_exec(c, text, err, errlen) < 0) {
		char inner[DB_ERR_MAX];
		snprintf(inner, sizeof(inner), "%s", err);
		db_seterr(err, errlen, "%s: %s", m->name, inner);
		goto fail;
	}
	params[1] = m->name;
	params[2] = m->sha256;
	if ((res = db_query(c,
	                    "INSERT INTO schema_migrations (version, name, sha256) "
	                    "VALUES ($1, $2, $3)",
	                    3, params, err, errlen)) == NULL)
		goto fail;
	PQclear(res);
	res = NULL;
	if (db_exec(c, "COMMIT", err, errlen) < 0)
		goto fail;
	free(text);
	return 1;
fail:
	PQclear(res);
	free(text);
	/* Leaves the connection usable; the error that matters is in err. */
	PQclear(PQexec(c, "ROLLBACK"));
	return rc;
}

int
db_migrate(PGconn *c, const char *dir,
           void (*report)(const struct db_migration *m, double ms, void *arg), void *arg, char *err,
           size_t errlen)
{
	struct db_migration *v = NULL;
	int n, applied = 0;

	if ((n = db_migrations(c, dir, &v, err, errlen)) < 0)
		return -1;
	for (int i = 0; i < n; i++) {
		if (v[i].applied && v[i].changed) {
			db_seterr(err, errlen,
			          "%s was changed after it was applied "
			          "(add a new migration instead of editing a shipped one)",
			          v[i].name);
			goto fail;
		}
	}
	for (int i = 0; i < n; i++) {
		double t0;
		int r;

		if (v[i].applied)
			continue;
		t0 = db_now_ms();
		if ((r = db_apply(c, dir, &v[i], err, errlen)) < 0)
			goto fail;
		if (r == 1) {
			applied++;
			if (report != NULL)
				report(&v[i], db_now_ms() - t0, arg);
		}
	}
	free(v);
	return applied;
fail:
	free(v);
	return -1;
}

/* ---- COPY ------------------------------------------------------------------------ */

static bool
db_copy_reserve(struct db_copybuf *b, size_t more)
{
	char *np;
	size_t ncap;

	if (b->oom)
		return false;
	if (more > SIZE_MAX / 2 - b->len) {
		b->oom = true;
		return false;
	}
	if (b->len + more <= b->cap)
		return true;
	ncap = b->cap ? b->cap : 64 * 1024;
	while (ncap < b->len + more)
		ncap *= 2;
	if ((np = realloc(b->p, ncap)) == NULL) {
		b->oom = true;
		return false;
	}
	b->p = np;
	b->cap = ncap;
	return true;
}

static void
db_copy_sep(struct db_copybuf *b)
{
	if (b->row_started)
		b->p[b->len++] = '\t';
	b->row_started = true;
}

void
db_copy_field(struct db_copybuf *b, const char *s, size_t n)
{
	/* Worst case every byte doubles, plus the separator. */
	if (n > SIZE_MAX / 2 - 4 || !db_copy_reserve(b, 2 * n + 4))
		return;
	db_copy_sep(b);
	if (s == NULL) {
		b->p[b->len++] = '\\';
		b->p[b->len++] = 'N';
		return;
	}
	for (size_t i = 0; i < n; i++) {
		char ch = s[i];
		switch (ch) {
		case '\\':
			b->p[b->len++] = '\\';
			b->p[b->len++] = '\\';
			break;
		case '\t':
			b->p[b->len++] = '\\';
			b->p[b->len++] = 't';
			break;
		case '\n':
			b->p[b->len++] = '\\';
			b->p[b->len++] = 'n';
			break;
		case '\r':
			b->p[b->len++] = '\\';
			b->p[b->len++] = 'r';
			break;
		default:
			b->p[b->len++] = ch;
		}
	}
}

void
db_copy_bytea(struct db_copybuf *b, const unsigned char *p, size_t n)
{
	static const char hex[] = "0123456789abcdef";

	if (p == NULL) {
		db_copy_field(b, NULL, 0);
		return;
	}
	/* bytea's "\x..." with its backslash escaped for COPY: "\\x...". */
	if (n > SIZE_MAX / 2 - 8 || !db_copy_reserve(b, 2 * n + 8))
		return;
	db_copy_sep(b);
	b->p[b->len++] = '\\';
	b->p[b->len++] = '\\';
	b->p[b->len++] = 'x';
	for (size_t i = 0; i < n; i++) {
		b->p[b->len++] = hex[p[i] >> 4];
		b->p[b->len++] = hex[p[i] & 15];
	}
}

void
db_copy_endrow(struct db_copybuf *b)
{
	if (!db_copy_reserve(b, 1))
		return;
	b->p[b->len++] = '\n';
	b->row_started = false;
}

void
db_copybuf_free(struct db_copybuf *b)
{
	free(b->p);
	memset(b, 0, sizeof(*b));
}

int
db_copy_begin(PGconn *c, const char *copy_sql, char *err, size_t errlen)
{
	PGresult *res = PQexec(c, copy_sql);

	if (PQresultStatus(res) != PGRES_COPY_IN) {
		db_error(c, res, err, errlen);
		PQclear(res);
		return -1;
	}
	PQclear(res);
	return 0;
}

int
db_copy_flush(PGconn *c, struct db_copybuf *b, size_t min, char *err, size_t errlen)
{
	if (b->oom) {
		db_seterr(err, errlen, "out of memory building COPY data");
		return -1;
	}
	if (b->len == 0 || b->len < min)
		return 0;
	if (b->len > INT_MAX || PQputCopyData(c, b->p, (int)b->len) != 1) {
		db_error(c, NULL, err, errlen);
		return -1;
	}
	b->len = 0;
	return 0;
}

int
db_copy_end(PGconn *c, const char *abort_msg, long long *rows, char *err, size_t errlen)
{
	PGresult *res;
	int rc = 0;

	if (PQputCopyEnd(c, abort_msg) != 1) {
		db_error(c, NULL, err, errlen);
		rc = -1;
	}
	while ((res = PQgetResult(c)) != NULL) {
		if (PQresultStatus(res) == PGRES_COMMAND_OK) {
			if (rows != NULL)
				*rows = strtoll(PQcmdTuples(res), NULL, 10);
		} else if (abort_msg == NULL && rc == 0) {
			db_error(c, res, err, errlen);
			rc = -1;
		}
		PQclear(res);
	}
	if (abort_msg != NULL && rc == 0) {
		db_seterr(err, errlen, "%s", abort_msg);
		rc = -1;
	}
	return rc;
}
