/*
 * ctl_db.c: `ammctl db migrate` and `ammctl db status`, the schema's
 * life cycle from the command line.  The work is in db.c, which ammd
 * shares; this file parses arguments and prints.
 *
 *   ammctl db migrate [--dsn DSN] [--sql-dir DIR]
 *   ammctl db status  [--dsn DSN] [--sql-dir DIR] [--json]
 *
 * The DSN is a libpq conninfo string or URI; without --dsn, $AMMD_DB, and
 * without that, libpq's defaults (PGHOST, PGDATABASE, ...).
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "db.h"
#include "json.h"

#define DB_DIR_MAX 4096 /* the SQL directory's path */

struct db_opts {
	const char *dsn;
	const char *sql_dir;
	bool json;
};

static void
db_usage(FILE *f)
{
	fprintf(f, "usage: ammctl db migrate [--dsn DSN] [--sql-dir DIR]\n"
	           "       ammctl db status  [--dsn DSN] [--sql-dir DIR] [--json]\n"
	           "DSN defaults to $" DB_ENV ", then to libpq's defaults.\n");
}

/* Returns 0, or 2 after a usage message. */
static int
db_parse(int argc, char **argv, struct db_opts *o, bool allow_json)
{
	memset(o, 0, sizeof(*o));
	for (int i = 0; i < argc; i++) {
		const char **dst = NULL;
		const char *a = argv[i];

		if (strcmp(a, "--dsn") == 0 || strncmp(a, "--dsn=", 6) == 0)
			dst = &o->dsn;
		else if (strcmp(a, "--sql-dir") == 0 || strncmp(a, "--sql-dir=", 10) == 0)
			dst = &o->sql_dir;
		else if (allow_json && strcmp(a, "--json") == 0) {
			o->json = true;
			continue;
		} else {
			fprintf(stderr, "ammctl db: unexpected argument '%s'\n", a);
			db_usage(stderr);
			return 2;
		}
		if (strchr(a, '=') != NULL) {
			*dst = strchr(a, '=') + 1;
		} else if (i + 1 < argc) {
			*dst = argv[++i];
		} else {
			fprintf(stderr, "ammctl db: %s needs a value\n", a);
			return 2;
		}
	}
	return 0;
}

/*
 * The start of both subcommands: options, the SQL directory (into dirbuf,
 * of DB_DIR_MAX bytes), then the database.  Returns 0 with *c connected,
 * or the exit code (1, 2) after saying why.
 */
static int
db_open(int argc, char **argv, const char *cmd, bool allow_json, struct db_opts *o, char *dirbuf,
        const char **dir, PGconn **c)
{
	char err[DB_ERR_MAX];
	int rc;

	if ((rc = db_parse(argc, argv, o, allow_json)) != 0)
		return rc;
	if ((*dir = db_sql_dir(o->sql_dir, dirbuf, DB_DIR_MAX, err, sizeof(err))) == NULL) {
		fprintf(stderr, "ammctl db %s: %s\n", cmd, err);
		return 1;
	}
	if ((*c = db_connect(o->dsn, "ammctl", err, sizeof(err))) == NULL) {
		fprintf(stderr, "ammctl db %s: cannot connect: %s\n", cmd, err);
		return 1;
	}
	return 0;
}

static void
db_report(const struct db_migration *m, double ms, void *arg)
{
	(void)arg;
	printf("applied %s (%.0f ms)\n", m->name, ms);
	fflush(stdout);
}

static int
db_cmd_migrate(int argc, char **argv)
{
	struct db_opts o;
	char err[DB_ERR_MAX], dirbuf[DB_DIR_MAX];
	const char *dir;
	PGconn *c;
	int rc;

	if ((rc = db_open(argc, argv, "migrate", false, &o, dirbuf, &dir, &c)) != 0)
		return rc;
	rc = db_migrate(c, dir, db_report, NULL, err, sizeof(err));
	PQfinish(c);
	if (rc < 0) {
		fprintf(stderr, "ammctl db migrate: %s\n", err);
		return 1;
	}
	if (rc == 0)
		printf("database is up to date\n");
	else
		printf("%d migration%s applied\n", rc, rc == 1 ? "" : "s");
	return 0;
}

static int
db_cmd_status(int argc, char **argv)
{
	struct db_opts o;
	struct db_migration *v = NULL;
	char err[DB_ERR_MAX], dirbuf[DB_DIR_MAX];
	const char *dir;
	PGconn *c;
	int n, rc, pending = 0, changed = 0;

	if ((rc = db_open(argc, argv, "status", true, &o, dirbuf, &dir, &c)) != 0)
		return rc;
	n = db_migrations(c, dir, &v, err, sizeof(err));
	if (n < 0) {
		fprintf(stderr, "ammctl db status: %s\n", err);
		PQfinish(c);
		return 1;
	}
	for (int i = 0; i < n; i++) {
		pending += !v[i].applied;
		changed += v[i].changed;
	}
	if (o.json) {
		struct json j;
		json_init(&j, stdout, true);
		json_obj_begin(&j, NULL);
		json_str(&j, "database", PQdb(c));
		json_str(&j, "sql_dir", dir);
		json_int(&j, "pending", pending);
		json_int(&j, "changed", changed);
		json_arr_begin(&j, "migrations");
		for (int i = 0; i < n; i++) {
			json_obj_begin(&j, NULL);
			json_int(&j, "version", v[i].version);
			json_str(&j, "name", v[i].name);
			json_bool(&j, "applied", v[i].applied);
			if (v[i].applied)
				json_str(&j, "applied_at", v[i].applied_at);
			else
				json_null(&j, "applied_at");
			json_bool(&j, "changed", v[i].changed);
			json_bool(&j, "file", v[i].sha256[0] != '\0');
			json_obj_end(&j);
		}
		json_arr_end(&j);
		json_obj_end(&j);
		json_end(&j);
	} else {
		printf("database %s, migrations from %s\n", PQdb(c), dir);
		for (int i = 0; i < n; i++) {
			const char *state = !v[i].applied  ? "pending"
			                    : v[i].changed ? "CHANGED since applied"
			                    : v[i].sha256[0] == '\0'
			                        ? "applied (no file here: newer schema)"
			                        : "applied";
			printf("  %-28s %-22s %s\n", v[i].name, v[i].applied_at, state);
		}
		if (pending == 0 && changed == 0)
			printf("up to date\n");
		else
			printf("%d pending, %d changed\n", pending, changed);
	}
	free(v);
	PQfinish(c);
	return 0;
}

int
ctl_db(int argc, char **argv)
{
	if (argc < 1) {
		db_usage(stderr);
		return 2;
	}
	if (strcmp(argv[0], "migrate") == 0)
		return db_cmd_migrate(argc - 1, argv + 1);
	if (strcmp(argv[0], "status") == 0)
		return db_cmd_status(argc - 1, argv + 1);
	if (strcmp(argv[0], "-h") == 0 || strcmp(argv[0], "--help") == 0) {
		db_usage(stdout);
		return 0;
	}
	fprintf(stderr, "ammctl db: unknown subcommand '%s'\n", argv[0]);
	db_usage(stderr);
	return 2;
}
