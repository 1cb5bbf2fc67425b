/*
 * db.h: libpq helpers shared by ammctl and ammd: opening a connection,
 * running the numbered schema migrations of sql/, and a COPY text writer.
 *
 * Everything here is synchronous (ammctl, and ammd at start-up before its
 * event loop runs).  Errors are returned as -1 / NULL with the server's
 * message copied into the caller's err buffer; nothing is printed.
 */
#ifndef AMM_DB_H
#define AMM_DB_H

#include <stdbool.h>
#include <stddef.h>

#include <libpq-fe.h>

#define DB_ERR_MAX 1024
#define DB_ENV     "AMMD_DB"      /* conninfo when none is given */
#define DB_SQL_ENV "AMMD_SQL_DIR" /* migrations directory override */

/*
 * The conninfo to use: `arg` when given, else $AMMD_DB, else "" (libpq's
 * own defaults: PGHOST, PGDATABASE, the local socket ...).  Never NULL.
 */
const char *db_conninfo(const char *arg);

/*
 * Connects with db_conninfo(conninfo) and sets the session up the way all
 * of ammd expects it: TimeZone UTC, client_encoding UTF8, application_name
 * `appname`.  Returns the connection (caller PQfinish()es) or NULL.
 */
PGconn *db_connect(const char *conninfo, const char *appname, char *err, size_t errlen);

/* Runs one statement (or several, simple protocol) without parameters.
 * Returns 0 or -1 with the server's message. */
int db_exec(PGconn *c, const char *sql, char *err, size_t errlen);

/*
 * Runs one parameterised statement (text parameters, NULL for SQL NULL).
 * Returns the result (caller PQclear()s) when it is COMMAND_OK or
 * TUPLES_OK, else NULL with the message.
 */
PGresult *db_query(PGconn *c, const char *sql, int nparams, const char *const *params, char *err,
                   size_t errlen);

/* Copies "message (DETAIL ...)" of a failed result, or the connection's
 * message when res is NULL, into err. */
void db_error(PGconn *c, const PGresult *res, char *err, size_t errlen);

/* ---- migrations ------------------------------------------------------------ */

struct db_migration {
	int version;     /* from the file name: 0001_init.sql -> 1 */
	char name[128];  /* file name without ".sql" */
	char sha256[65]; /* of the file as it is now */
	bool applied;
	bool changed;        /* applied, but the file differs from what ran */
	char applied_at[64]; /* text form, empty when pending */
};

/*
 * The directory holding the migrations: `arg` when given, else
 * $AMMD_SQL_DIR, else the first of <exe>/../sql (build tree),
 * <exe>/../share/ammd/sql (installed) and AMMD_SQLDIR (compile-time, default
 * /usr/local/share/ammd/sql) that holds 0001_init.sql.  Writes into buf.
 * Returns buf, or NULL with a message when none is found.
 */
const char *db_sql_dir(const char *arg, char *buf, size_t buflen, char *err, size_t errlen);

/*
 * Lists the migrations NNNN_name.sql of `dir` in version order and, when c
 * is not NULL, marks which ones the database has applied (table
 * schema_migrations; a database without it has applied none).  Returns the
 * count with *out malloc'd (caller frees), or -1.
 */
int db_migrations(PGconn *c, const char *dir, struct db_migration **out, char *err, size_t errlen);

/*
 * Applies every pending migration of `dir` in order, each in its own
 * transaction together with its schema_migrations row, under an advisory
 * lock so that several ammctl/ammd started at once apply each exactly once.
 * Refuses (-1) when an applied migration's file has changed since.  When
 * `report` is not NULL it is called after each applied migration.  Returns
 * how many were applied (0: up to date), or -1.
 */
int db_migrate(PGconn *c, const char *dir,
               void (*report)(const struct db_migration *m, double ms, void *arg), void *arg,
               char *err, size_t errlen);

/* ---- COPY (text format) ------------------------------------------------------ */

/* A growing buffer of COPY text rows; flushed by db_copy_flush(). */
struct db_copybuf {
	char *p;
	size_t len, cap;
	bool oom;         /* latched: an allocation failed */
	bool row_started; /* a field was written in the current row */
};

/* Appends a field, escaped for COPY text; s == NULL writes \N (NULL).
 * n is the length of s. */
void db_copy_field(struct db_copybuf *b, const char *s, size_t n);
/* Appends a field of bytes as a bytea literal (\\x...); NULL p writes \N. */
void db_copy_bytea(struct db_copybuf *b, const unsigned char *p, size_t n);
/* Ends the current row. */
void db_copy_endrow(struct db_copybuf *b);
void db_copybuf_free(struct db_copybuf *b);

/* Starts `COPY ... FROM STDIN` (the statement is the caller's). */
int db_copy_begin(PGconn *c, const char *copy_sql, char *err, size_t errlen);
/* Sends and empties the buffer (when it holds at least `min` bytes). */
int db_copy_flush(PGconn *c, struct db_copybuf *b, size_t min, char *err, size_t errlen);
/*
 * Ends the COPY: with abort_msg NULL the rows are committed to the
 * statement and *rows (when not NULL) gets their count; otherwise the COPY
 * fails with that message.  Returns 0 or -1.
 */
int db_copy_end(PGconn *c, const char *abort_msg, long long *rows, char *err, size_t errlen);

#endif
