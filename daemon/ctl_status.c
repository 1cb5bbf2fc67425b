/*
 * ctl_status.c: `ammctl status`, the operator's one-screen view of the
 * head-end, read from the database alone (so it works from any host that
 * may read the schema, whether or not ammd runs there).
 *
 *   ammctl status [--dsn DSN] [-f|--config FILE] [--json] [--meter SERIAL]
 *                 [--days N]
 *
 * It shows the fleet (meters by reachability, enabled, transport), the
 * current collection round with a progress bar, failed sessions of the
 * round by cause, load-profile completeness per UTC day for the fleet and
 * its least complete meters (or, with --meter, one meter in detail), the
 * depth of the command queue, and the M-Bus and Modbus gateways.
 *
 * A round is one collection window: it starts at [collection]
 * window_start, in the meters' local time as the scheduler counts it
 * (session_tz), on the latest day where that moment has passed, and lasts
 * window_length.  The window comes from ammd's configuration file (-f,
 * else /etc/ammd/ammd.conf when it exists and is readable, else ammd's
 * defaults).  Every enabled meter is due once per round; it counts as
 * read when it has a session with outcome "ok" that started in the round,
 * as failed when it has sessions in the round and none succeeded, and as
 * waiting otherwise.  Failures by cause count the round's sessions whose
 * outcome is not "ok", by outcome.
 *
 * Completeness comes from the schema's ammd_completeness(days): stored
 * against expected load-profile intervals per meter and UTC day, today
 * counting only the intervals that have ended.  A meter's stored count is
 * capped at its expected count when summed, so a meter with a surplus (a
 * clock far off) cannot hide another's hole.
 *
 * Gateways: per gateway its enabled meters, how many of them were read in
 * the round (a session with outcome "ok"), the round's failed sessions
 * behind it, and whether it is reachable: yes when its latest session of
 * the round got a connection (any outcome but "refused"), no when the
 * gateway refused or could not be reached, unknown before its first
 * session of the round.
 */
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "cosem_time.h"
#include "ctl.h"
#include "db.h"
#include "json.h"
#include "scheduler.h"
#include "session.h"

#define STATUS_MAX_DAYS      366
#define STATUS_WORST_METERS  10
#define STATUS_BAR_WIDTH     50
#define STATUS_LAST_SESSIONS 5
#define STATUS_GATEWAYS_TEXT 20

struct status_opts {
	const char *dsn;
	const char *config;
	const char *meter;
	int days;
	bool json;
};

/* ---- what is gathered, then printed as text or JSON ---------------------- */

struct status_count {
	char name[64];
	long long n, enabled;
};

struct status_failure {
	char outcome[64];
	long long sessions, meters;
	char last_error[256];
};

struct status_day {
	char day[16];
	long long meters, expected, stored;
};

struct status_worst {
	char serial[40];
	long long expected, stored;
};

struct status_kind {
	char kind[32];
	long long queued, running;
};

struct status_session {
	char started[40], outcome[64], error[256];
	long long bytes_in, bytes_out, duration_ms;
};

struct status_gateway {
	char name[128], kind[16], last_outcome[64], last_error[256];
	bool enabled;
	long long concurrency, meters, read, errors;
};

struct status_meter {
	bool found;
	char serial[40], type[16], transport[16], address[80], reachability[16];
	char last_contact[40], next_due[40], last_error[256], leased_by[64];
	bool enabled, leased;
	long long failures, queued_commands;
	struct status_session sess[STATUS_LAST_SESSIONS];
	int nsess;
};

struct status {
	int64_t now;
	/* fleet */
	long long meters, enabled, reachable, unreachable, unknown;
	struct status_count *transports;
	int ntransports;
	/* round */
	int64_t round_start, round_end;
	bool in_window;
	const char *window_source; /* the config file, or "defaults" */
	long long due, read, failed, waiting, in_progress, sessions;
	int64_t first_session, last_session; /* 0: none */
	/* failures */
	struct status_failure *failures;
	int nfailures;
	/* completeness */
	struct status_day *days;
	int ndays;
	long long incomplete_meters, complete_meters;
	struct status_worst *worst;
	int nworst;
	/* commands */
	long long queued, running, oldest_queued_s; /* -1: none queued */
	struct status_kind *kinds;
	int nkinds;
	/* gateways */
	struct status_gateway *gateways;
	int ngateways;
	/* --meter */
	struct status_meter meter;
};

static void
status_usage(FILE *f)
{
	fprintf(f, "usage: ammctl status [--dsn DSN] [-f|--config FILE] [--json] [--meter SERIAL]"
	           " [--days N]\n"
	           "  -f FILE        ammd's configuration, for the collection window"
	           " (default " CONFIG_DEFAULT_PATH " when readable)\n"
	           "  --meter SERIAL one meter in detail\n"
	           "  --days N       completeness for the last N UTC days, today included (7)\n"
	           "DSN defaults to $" DB_ENV ", then to libpq's defaults.\n");
}

static int
status_parse(int argc, char **argv, struct status_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->days = 7;
	for (int i = 0; i < argc; i++) {
		const char *a = argv[i], *v = NULL;
		const char **dst = NULL;

		if (strcmp(a, "--json") == 0) {
			o->json = true;
			continue;
		}
		if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
			status_usage(stdout);
			return -1;
		}
		if (strcmp(a, "--dsn") == 0 || strncmp(a, "--dsn=", 6) == 0)
			dst = &o->dsn;
		else if (strcmp(a, "-f") == 0 || strcmp(a, "--config") == 0 ||
		         strncmp(a, "--config=", 9) == 0)
			dst = &o->config;
		else if (strcmp(a, "--meter") == 0 || strncmp(a, "--meter=", 8) == 0)
			dst = &o->meter;
		else if (strcmp(a, "--days") == 0 || strncmp(a, "--days=", 7) == 0)
			dst = &v;
		else {
			fprintf(stderr, "ammctl status: unexpected argument '%s'\n", a);
			status_usage(stderr);
			return 2;
		}
		if (a[1] == '-' && strchr(a, '=') != NULL) {
			*dst = strchr(a, '=') + 1;
		} else if (i + 1 < argc) {
			*dst = argv[++i];
		} else {
			fprintf(stderr, "ammctl status: %s needs a value\n", a);
			return 2;
		}
		if (dst == &v) {
			char *end;
			errno = 0;
			long d = strtol(v, &end, 10);
			if (errno != 0 || *v == '\0' || *end != '\0' || d < 1 ||
			    d > STATUS_MAX_DAYS) {
				fprintf(stderr, "ammctl status: --days wants 1..%d, not '%s'\n",
				        STATUS_MAX_DAYS, v);
				return 2;
			}
			o->days = (int)d;
		}
	}
	return 0;
}

/* ---- the collection window ------------------------------------------------------- */

/*
 * The latest start of the collection window at or before now: the window
 * opens at window_start_min after local midnight (session_tz), so try
 * today's local date and then the days before, each day's start as the
 * scheduler computes it (scheduler_window_open()).
 */
static int64_t
status_window_start(int64_t now, int window_start_min)
{
	struct cosem_datetime dt;

	cosem_datetime_from_utc(now, &session_tz, &dt);
	for (int k = 0; k > -3; k--) {
		int64_t days = cosem_days_from_civil(dt.year, dt.month, dt.day) + k;
		int64_t t = scheduler_window_open(days, window_start_min);
		if (t <= now)
			return t;
	}
	return now - 86400;
}

/* Loads the window from the config file; -1 after a message when a file
 * named with -f cannot be used. */
static int
status_window(const struct status_opts *o, struct status *st)
{
	struct config *cfg = NULL;
	struct config_diag *diag;
	const char *path = o->config;
	int start_min, len_s;

	if ((diag = calloc(1, sizeof(*diag))) == NULL)
		return -1;
	if (path == NULL && access(CONFIG_DEFAULT_PATH, R_OK) == 0)
		path = CONFIG_DEFAULT_PATH;
	if (path != NULL && (cfg = config_load(path, diag)) == NULL) {
		if (o->config != NULL) {
			fprintf(stderr, "ammctl status: cannot use %s:\n", path);
			for (size_t i = 0; i < diag->n; i++)
				fprintf(stderr, "  line %d: %s\n", diag->err[i].line,
				        diag->err[i].msg);
			free(diag);
			return -1;
		}
		path = NULL; /* the default file is broken: say so in window_source */
	}
	free(diag);
	if (cfg != NULL) {
		start_min = cfg->collection.window_start;
		len_s = cfg->collection.window_length;
		config_free(cfg);
		st->window_source = path;
	} else {
		struct config def;
		config_defaults(&def);
		start_min = def.collection.window_start;
		len_s = def.collection.window_length;
		st->window_source = "defaults";
	}
	st->round_start = status_window_start(st->now, start_min);
	st->round_end = st->round_start + len_s;
	st->in_window = st->now < st->round_end;
	return 0;
}

/* ---- queries ------------------------------------------------------------------------ */

static long long
status_ll(const PGresult *r, int row, int col)
{
	return PQgetisnull(r, row, col) ? 0 : strtoll(PQgetvalue(r, row, col), NULL, 10);
}

static void
status_cp(char *dst, size_t n, const PGresult *r, int row, int col)
{
	snprintf(dst, n, "%s", PQgetisnull(r, row, col) ? "" : PQgetvalue(r, row, col));
}

static const char status_fleet_sql[] =
    "SELECT count(*), count(*) FILTER (WHERE enabled),"
    " count(*) FILTER (WHERE enabled AND reachability = 'reachable'),"
    " count(*) FILTER (WHERE enabled AND reachability = 'unreachable'),"
    " count(*) FILTER (WHERE enabled AND reachability = 'unknown')"
    " FROM meter";

static const char status_transport_sql[] =
    "SELECT transport, count(*), count(*) FILTER (WHERE enabled) FROM meter"
    " GROUP BY transport ORDER BY transport";

/* $1: round start (epoch s).  One row per enabled meter is folded into the
 * counts; the session log is read through its started_at index. */
static const char status_round_sql[] =
    "WITH s AS (SELECT meter_id, bool_or(outcome = 'ok') AS ok, count(*) AS n,"
    "  min(started_at) AS first, max(started_at) AS last"
    "  FROM session_log WHERE started_at >= to_timestamp($1) GROUP BY meter_id)"
    " SELECT count(*), count(*) FILTER (WHERE s.ok),"
    " count(*) FILTER (WHERE NOT s.ok),"
    " count(*) FILTER (WHERE s.meter_id IS NULL),"
    " count(*) FILTER (WHERE s.ok IS NOT TRUE AND m.leased_by IS NOT NULL"
    "   AND m.lease_until > now()),"
    " coalesce(sum(s.n), 0),"
    " floor(extract(epoch FROM min(s.first)))::int8,"
    " floor(extract(epoch FROM max(s.last)))::int8"
    " FROM meter m LEFT JOIN s ON s.meter_id = m.id WHERE m.enabled";

static const char status_failures_sql[] =
    "SELECT outcome, count(*), count(DISTINCT meter_id),"
    " (array_agg(error ORDER BY started_at DESC) FILTER (WHERE error IS NOT NULL))[1]"
    " FROM session_log WHERE started_at >= to_timestamp($1) AND outcome <> 'ok'"
    " GROUP BY outcome ORDER BY 2 DESC, 1";

/*
 * Completeness, $1: days, $2: how many least complete meters.  Rows of
 * kind 1 (per UTC day), 2 (how many meters are complete / incomplete over
 * the period) and 3 (the least complete meters), in that order, from the
 * per meter and day rows of CTE c that the two heads below provide.
 */
#define STATUS_COMPLETENESS_TAIL                                                                   \
	" pm AS (SELECT serial, sum(expected)::int8 AS e, sum(stored)::int8 AS s FROM c"           \
	"  GROUP BY serial),"                                                                      \
	" worst AS (SELECT serial, e, s FROM pm WHERE s < e"                                       \
	"  ORDER BY s::float8 / e, serial LIMIT $2::int)"                                          \
	" SELECT * FROM ("                                                                         \
	" SELECT 1 AS k, 0::float8 AS o, day::text AS key, count(*)::int8,"                        \
	"  sum(expected)::int8, sum(stored)::int8 FROM c GROUP BY day"                             \
	" UNION ALL"                                                                               \
	" SELECT 2, 0, NULL, count(*) FILTER (WHERE s >= e), count(*) FILTER (WHERE s < e),"       \
	"  NULL FROM pm"                                                                           \
	" UNION ALL"                                                                               \
	" SELECT 3, s::float8 / e, serial, NULL, e, s FROM worst) x"                               \
	" ORDER BY k, o, key"

/* The fleet: every enabled meter through the schema's ammd_completeness(). */
static const char status_completeness_sql[] =
    "WITH c AS MATERIALIZED (SELECT serial, day, expected, LEAST(stored, expected) AS stored"
    "  FROM ammd_completeness($1::int))," STATUS_COMPLETENESS_TAIL;

/*
 * One meter ($3: its serial).  ammd_completeness() computes the whole
 * fleet before any filter applies (a SECURITY DEFINER function is never
 * inlined): seconds for 100,000 meters.  So the days and the expected
 * counts are made here the way that function makes them, and the stored
 * counts come from the completeness_daily view, restricted to this meter
 * by a meter id the planner knows before the scan (an initplan), so that
 * the restriction reaches the interval_reading index inside the view's
 * aggregate; a join on m.id would aggregate every meter first.  The view,
 * like the function, is readable by operators without rights on the
 * readings.
 */
static const char status_completeness_meter_sql[] =
    "WITH c AS MATERIALIZED (SELECT m.serial, d.day::date AS day, e.expected,"
    "  LEAST(coalesce(cd.stored, 0), e.expected) AS stored"
    "  FROM meter m"
    "  CROSS JOIN generate_series((now() AT TIME ZONE 'UTC')::date - ($1::int - 1),"
    "   (now() AT TIME ZONE 'UTC')::date, interval '1 day') AS d(day)"
    "  CROSS JOIN LATERAL (SELECT CASE WHEN d.day::date < (now() AT TIME ZONE 'UTC')::date"
    "   THEN 86400 / m.profile_period"
    "   ELSE extract(epoch FROM now() - (d.day AT TIME ZONE 'UTC'))::integer / m.profile_period"
    "   END AS expected) e"
    "  LEFT JOIN (SELECT x.day, x.stored FROM completeness_daily x"
    "   WHERE x.meter_id = (SELECT id FROM meter WHERE serial = $3::text)) cd"
    "   ON cd.day = d.day::date"
    "  WHERE m.serial = $3::text)," STATUS_COMPLETENESS_TAIL;

static const char status_commands_sql[] =
    "SELECT kind, count(*) FILTER (WHERE state = 'queued'),"
    " count(*) FILTER (WHERE state = 'running'),"
    " floor(extract(epoch FROM now() - min(created_at) FILTER (WHERE state = 'queued')))::int8"
    " FROM command WHERE state IN ('queued', 'running') GROUP BY kind ORDER BY kind";

/* $1: round start (epoch s).  Gateway sessions of the round, through the
 * session log's started_at index, folded per gateway. */
static const char status_gateways_sql[] =
    "WITH s AS (SELECT l.id, l.meter_id, l.outcome, l.error, l.started_at FROM session_log l"
    "  WHERE l.started_at >= to_timestamp($1) AND l.transport IN ('mbus', 'modbus'))"
    " SELECT g.name, g.kind, g.concurrency, g.enabled,"
    " count(DISTINCT m.id) FILTER (WHERE m.enabled),"
    " count(DISTINCT s.meter_id) FILTER (WHERE s.outcome = 'ok'),"
    " count(s.id) FILTER (WHERE s.outcome <> 'ok'),"
    " (array_agg(s.outcome ORDER BY s.started_at DESC, s.id DESC)"
    "   FILTER (WHERE s.id IS NOT NULL))[1],"
    " (array_agg(s.error ORDER BY s.started_at DESC, s.id DESC)"
    "   FILTER (WHERE s.error IS NOT NULL))[1]"
    " FROM gateway g LEFT JOIN meter m ON m.gateway_id = g.id"
    " LEFT JOIN s ON s.meter_id = m.id GROUP BY g.id ORDER BY g.name";

static const char status_meter_sql[] =
    "SELECT serial, type, transport,"
    " coalesce(host || ':' || coalesce(port::text, ''), '') ||"
    "  coalesce(' M-Bus ' || primary_addr::text, '') || coalesce(' ' || secondary_addr, ''),"
    " enabled, reachability::text,"
    " to_char(last_contact_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),"
    " to_char(next_due_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),"
    " last_error, failures, leased_by, coalesce(lease_until > now(), false),"
    " (SELECT count(*) FROM command c WHERE c.meter_id = m.id"
    "   AND c.state IN ('queued', 'running')),"
    " id FROM meter m WHERE serial = $1";

static const char status_sessions_sql[] =
    "SELECT to_char(started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), outcome,"
    " error, bytes_in, bytes_out, duration_ms FROM session_log WHERE meter_id = $1::int"
    " ORDER BY started_at DESC, id DESC LIMIT $2::int";

static PGresult *
status_q(PGconn *c, const char *sql, int n, const char *const *p)
{
	char err[DB_ERR_MAX];
	PGresult *r = db_query(c, sql, n, p, err, sizeof(err));

	if (r == NULL)
		fprintf(stderr, "ammctl status: %s\n", err);
	return r;
}

static int
status_gather(PGconn *c, const struct status_opts *o, struct status *st)
{
	char start[32], days[16], worst[16];
	const char *p[3];
	PGresult *r;

	snprintf(start, sizeof(start), "%lld", (long long)st->round_start);
	snprintf(days, sizeof(days), "%d", o->days);
	snprintf(worst, sizeof(worst), "%d", STATUS_WORST_METERS);

	if ((r = status_q(c, status_fleet_sql, 0, NULL)) == NULL)
		return -1;
	st->meters = status_ll(r, 0, 0);
	st->enabled = status_ll(r, 0, 1);
	st->reachable = status_ll(r, 0, 2);
	st->unreachable = status_ll(r, 0, 3);
	st->unknown = status_ll(r, 0, 4);
	PQclear(r);

	if ((r = status_q(c, status_transport_sql, 0, NULL)) == NULL)
		return -1;
	st->ntransports = PQntuples(r);
	st->transports = calloc((size_t)st->ntransports + 1, sizeof(*st->transports));
	if (st->transports == NULL)
		goto oom;
	for (int i = 0; i < st->ntransports; i++) {
		status_cp(st->transports[i].name, sizeof(st->transports[i].name), r, i, 0);
		st->transports[i].n = status_ll(r, i, 1);
		st->transports[i].enabled = status_ll(r, i, 2);
	}
	PQclear(r);

	p[0] = start;
	if ((r = status_q(c, status_round_sql, 1, p)) == NULL)
		return -1;
	st->due = status_ll(r, 0, 0);
	st->read = status_ll(r, 0, 1);
	st->failed = status_ll(r, 0, 2);
	st->waiting = status_ll(r, 0, 3);
	st->in_progress = status_ll(r, 0, 4);
	st->sessions = status_ll(r, 0, 5);
	st->first_session = status_ll(r, 0, 6);
	st->last_session = status_ll(r, 0, 7);
	PQclear(r);

	if ((r = status_q(c, status_failures_sql, 1, p)) == NULL)
		return -1;
	st->nfailures = PQntuples(r);
	st->failures = calloc((size_t)st->nfailures + 1, sizeof(*st->failures));
	if (st->failures == NULL)
		goto oom;
	for (int i = 0; i < st->nfailures; i++) {
		struct status_failure *f = &st->failures[i];
		status_cp(f->outcome, sizeof(f->outcome), r, i, 0);
		f->sessions = status_ll(r, i, 1);
		f->meters = status_ll(r, i, 2);
		status_cp(f->last_error, sizeof(f->last_error), r, i, 3);
	}
	PQclear(r);

	p[0] = days;
	p[1] = worst;
	p[2] = o->meter;
	r = o->meter != NULL ? status_q(c, status_completeness_meter_sql, 3, p)
	                     : status_q(c, status_completeness_sql, 2, p);
	if (r == NULL)
		return -1;
	st->days = calloc((size_t)PQntuples(r) + 1, sizeof(*st->days));
	st->worst = calloc((size_t)PQntuples(r) + 1, sizeof(*st->worst));
	if (st->days == NULL || st->worst == NULL)
		goto oom;
	for (int i = 0; i < PQntuples(r); i++) {
		switch (status_ll(r, i, 0)) {
		case 1: {
			struct status_day *d = &st->days[st->ndays++];
			status_cp(d->day, sizeof(d->day), r, i, 2);
			d->meters = status_ll(r, i, 3);
			d->expected = status_ll(r, i, 4);
			d->stored = status_ll(r, i, 5);
			break;
		}
		case 2:
			st->complete_meters = status_ll(r, i, 3);
			st->incomplete_meters = status_ll(r, i, 4);
			break;
		case 3: {
			struct status_worst *w = &st->worst[st->nworst++];
			status_cp(w->serial, sizeof(w->serial), r, i, 2);
			w->expected = status_ll(r, i, 4);
			w->stored = status_ll(r, i, 5);
			break;
		}
		}
	}
	PQclear(r);

	if ((r = status_q(c, status_commands_sql, 0, NULL)) == NULL)
		return -1;
	st->nkinds = PQntuples(r);
	st->kinds = calloc((size_t)st->nkinds + 1, sizeof(*st->kinds));
	if (st->kinds == NULL)
		goto oom;
	st->oldest_queued_s = -1;
	for (int i = 0; i < st->nkinds; i++) {
		struct status_kind *k = &st->kinds[i];
		status_cp(k->kind, sizeof(k->kind), r, i, 0);
		k->queued = status_ll(r, i, 1);
		k->running = status_ll(r, i, 2);
		st->queued += k->queued;
		st->running += k->running;
		if (!PQgetisnull(r, i, 3) && status_ll(r, i, 3) > st->oldest_queued_s)
			st->oldest_queued_s = status_ll(r, i, 3);
	}
	PQclear(r);

	p[0] = start;
	if ((r = status_q(c, status_gateways_sql, 1, p)) == NULL)
		return -1;
	st->ngateways = PQntuples(r);
	st->gateways = calloc((size_t)st->ngateways + 1, sizeof(*st->gateways));
	if (st->gateways == NULL)
		goto oom;
	for (int i = 0; i < st->ngateways; i++) {
		struct status_gateway *g = &st->gateways[i];
		status_cp(g->name, sizeof(g->name), r, i, 0);
		status_cp(g->kind, sizeof(g->kind), r, i, 1);
		g->concurrency = status_ll(r, i, 2);
		g->enabled = strcmp(PQgetvalue(r, i, 3), "t") == 0;
		g->meters = status_ll(r, i, 4);
		g->read = status_ll(r, i, 5);
		g->errors = status_ll(r, i, 6);
		status_cp(g->last_outcome, sizeof(g->last_outcome), r, i, 7);
		status_cp(g->last_error, sizeof(g->last_error), r, i, 8);
	}
	PQclear(r);

	if (o->meter != NULL) {
		struct status_meter *m = &st->meter;
		char id[32];

		p[0] = o->meter;
		if ((r = status_q(c, status_meter_sql, 1, p)) == NULL)
			return -1;
		if (PQntuples(r) == 0) {
			PQclear(r);
			return 0;
		}
		m->found = true;
		status_cp(m->serial, sizeof(m->serial), r, 0, 0);
		status_cp(m->type, sizeof(m->type), r, 0, 1);
		status_cp(m->transport, sizeof(m->transport), r, 0, 2);
		status_cp(m->address, sizeof(m->address), r, 0, 3);
		m->enabled = strcmp(PQgetvalue(r, 0, 4), "t") == 0;
		status_cp(m->reachability, sizeof(m->reachability), r, 0, 5);
		status_cp(m->last_contact, sizeof(m->last_contact), r, 0, 6);
		status_cp(m->next_due, sizeof(m->next_due), r, 0, 7);
		status_cp(m->last_error, sizeof(m->last_error), r, 0, 8);
		m->failures = status_ll(r, 0, 9);
		status_cp(m->leased_by, sizeof(m->leased_by), r, 0, 10);
		m->leased = strcmp(PQgetvalue(r, 0, 11), "t") == 0;
		m->queued_commands = status_ll(r, 0, 12);
		status_cp(id, sizeof(id), r, 0, 13);
		PQclear(r);

		snprintf(worst, sizeof(worst), "%d", STATUS_LAST_SESSIONS);
		p[0] = id;
		p[1] = worst;
		if ((r = status_q(c, status_sessions_sql, 2, p)) == NULL)
			return -1;
		for (int i = 0; i < PQntuples(r) && i < STATUS_LAST_SESSIONS; i++) {
			struct status_session *s = &m->sess[m->nsess++];
			status_cp(s->started, sizeof(s->started), r, i, 0);
			status_cp(s->outcome, sizeof(s->outcome), r, i, 1);
			status_cp(s->error, sizeof(s->error), r, i, 2);
			s->bytes_in = status_ll(r, i, 3);
			s->bytes_out = status_ll(r, i, 4);
			s->duration_ms = PQgetisnull(r, i, 5) ? -1 : status_ll(r, i, 5);
		}
		PQclear(r);
	}
	return 0;
oom:
	PQclear(r);
	fprintf(stderr, "ammctl status: out of memory\n");
	return -1;
}

static void
status_free(struct status *st)
{
	free(st->transports);
	free(st->failures);
	free(st->days);
	free(st->worst);
	free(st->kinds);
	free(st->gateways);
}

/* 1 reachable, 0 not, -1 not known yet (no session in the round). */
static int
status_gw_reachable(const struct status_gateway *g)
{
	if (g->last_outcome[0] == '\0')
		return -1;
	return strcmp(g->last_outcome, "refused") != 0;
}

static void
status_text_gateways(FILE *f, const struct status *st)
{
	long long up = 0, down = 0, shown = 0, mbus = 0;
	bool all = st->ngateways <= STATUS_GATEWAYS_TEXT;

	if (st->ngateways == 0)
		return;
	for (int i = 0; i < st->ngateways; i++) {
		int rch = status_gw_reachable(&st->gateways[i]);
		up += rch == 1;
		down += rch == 0;
		mbus += strcmp(st->gateways[i].kind, "mbus") == 0;
	}
	fprintf(f,
	        "\ngateways     %d (M-Bus %lld, Modbus %lld): reachable %lld, unreachable %lld, "
	        "no session this round %lld\n",
	        st->ngateways, mbus, st->ngateways - mbus, up, down, st->ngateways - up - down);
	/* many gateways: only those that need a look */
	for (int i = 0; i < st->ngateways && shown < STATUS_GATEWAYS_TEXT; i++) {
		const struct status_gateway *g = &st->gateways[i];
		int rch = status_gw_reachable(g);
		if (!all && rch != 0 && g->errors == 0)
			continue;
		shown++;
		fprintf(f, "             %-24s %-6s %5lld / %-5lld read %5lld errors  %s%s",
		        g->name, g->kind, g->read, g->meters, g->errors,
		        rch == 1   ? "reachable"
		        : rch == 0 ? "unreachable"
		                   : "-",
		        g->enabled ? "" : " (disabled)");
		if (g->errors > 0 && g->last_error[0])
			fprintf(f, "  last: %.100s", g->last_error);
		fputc('\n', f);
	}
	if (!all)
		fprintf(f,
		        "             (%lld with errors or unreachable shown; --json lists all)\n",
		        shown);
}

/* ---- derived figures ------------------------------------------------------------------ */

static double
status_pct(long long part, long long whole)
{
	return whole > 0 ? 100.0 * (double)part / (double)whole : 0.0;
}

/* Meters read per second in this round, and the seconds until every due
 * meter is read at that pace; both -1 when there is nothing to tell. */
static void
status_pace(const struct status *st, double *rate, long long *eta)
{
	int64_t span = st->now - st->first_session;

	*rate = -1;
	*eta = -1;
	if (st->first_session == 0 || st->read == 0 || span <= 0)
		return;
	*rate = (double)st->read / (double)span;
	if (st->read < st->due)
		*eta = (long long)ceil((double)(st->due - st->read) / *rate);
	else
		*eta = 0;
}

static char *
status_iso(int64_t t, char buf[32])
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (gmtime_r(&tt, &tm) == NULL || strftime(buf, 32, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		snprintf(buf, 32, "%lld", (long long)t);
	return buf;
}

/* "HH:MM" in the meters' local time, with the zone's abbreviation. */
static char *
status_local(int64_t t, char buf[32])
{
	struct cosem_datetime dt;

	cosem_datetime_from_utc(t, &session_tz, &dt);
	snprintf(buf, 32, "%04u-%02u-%02u %02u:%02u %s", dt.year, dt.month, dt.day, dt.hour,
	         dt.minute, cosem_tz_is_dst(&session_tz, t) ? "CEST" : "CET");
	return buf;
}

static char *
status_dur(long long s, char buf[32])
{
	if (s < 120)
		snprintf(buf, 32, "%lld s", s);
	else if (s < 7200)
		snprintf(buf, 32, "%lld min", (s + 30) / 60);
	else if (s < 2 * 86400)
		snprintf(buf, 32, "%.1f h", (double)s / 3600.0);
	else
		snprintf(buf, 32, "%.1f d", (double)s / 86400.0);
	return buf;
}

/* ---- text ---------------------------------------------------------------------------------- */

static void
status_bar(FILE *f, long long done, long long failed, long long whole)
{
	int n = whole > 0 ? (int)(STATUS_BAR_WIDTH * done / whole) : 0;
	int x = whole > 0 ? (int)(STATUS_BAR_WIDTH * failed / whole) : 0;

	if (x == 0 && failed > 0)
		x = 1;
	if (n + x > STATUS_BAR_WIDTH)
		x = STATUS_BAR_WIDTH - n;
	fputc('[', f);
	for (int i = 0; i < STATUS_BAR_WIDTH; i++)
		fputc(i < n ? '#' : i < n + x ? 'x' : '.', f);
	fputc(']', f);
}

static void
status_text_meter(FILE *f, const struct status *st)
{
	const struct status_meter *m = &st->meter;

	fprintf(f, "\nmeter %s: %s, %s %s, %s\n", m->serial, m->type, m->transport, m->address,
	        m->enabled ? "enabled" : "disabled");
	fprintf(f, "  reachability %s, last contact %s, consecutive failures %lld\n",
	        m->reachability, m->last_contact[0] ? m->last_contact : "never", m->failures);
	if (m->last_error[0])
		fprintf(f, "  last error: %s\n", m->last_error);
	fprintf(f, "  next due %s%s%s, %lld command(s) queued or running\n",
	        m->next_due[0] ? m->next_due : "now", m->leased ? ", claimed by instance " : "",
	        m->leased ? m->leased_by : "", m->queued_commands);
	if (m->nsess == 0) {
		fprintf(f, "  no session yet\n");
		return;
	}
	fprintf(f, "  last sessions:\n");
	for (int i = 0; i < m->nsess; i++) {
		const struct status_session *s = &m->sess[i];
		fprintf(f, "    %s  %-9s %6lld B in %6lld B out", s->started, s->outcome,
		        s->bytes_in, s->bytes_out);
		if (s->duration_ms >= 0)
			fprintf(f, " %6lld ms", s->duration_ms);
		if (s->error[0])
			fprintf(f, "  %s", s->error);
		fputc('\n', f);
	}
}

static void
status_text(FILE *f, const struct status *st, const struct status_opts *o)
{
	char a[32], b[32], c[32];
	double rate;
	long long eta;

	fprintf(f, "ammd status at %s\n\n", status_iso(st->now, a));

	fprintf(f, "fleet        %lld meters, %lld enabled, %lld disabled\n", st->meters,
	        st->enabled, st->meters - st->enabled);
	fprintf(f, "             reachable %lld, unreachable %lld, not yet contacted %lld\n",
	        st->reachable, st->unreachable, st->unknown);
	fprintf(f, "             by transport:");
	for (int i = 0; i < st->ntransports; i++)
		fprintf(f, "%s %s %lld", i ? "," : "", st->transports[i].name, st->transports[i].n);
	fprintf(f, "%s\n", st->ntransports ? "" : " none");

	fprintf(f, "\nround        window from %s (%s) for %s, %s\n",
	        status_local(st->round_start, a), status_iso(st->round_start, b),
	        status_dur(st->round_end - st->round_start, c), st->in_window ? "open" : "closed");
	if (strcmp(st->window_source, "defaults") == 0)
		fprintf(f, "             (ammd's default window: no readable " CONFIG_DEFAULT_PATH
		           ", -f names the config)\n");
	fprintf(f, "             ");
	status_bar(f, st->read, st->failed, st->due);
	fprintf(f, " %5.1f%%  %lld of %lld read\n", status_pct(st->read, st->due), st->read,
	        st->due);
	fprintf(f,
	        "             %lld failed (retried later), %lld waiting (%lld claimed by ammd), "
	        "%lld sessions\n",
	        st->failed, st->waiting, st->in_progress, st->sessions);
	status_pace(st, &rate, &eta);
	if (rate >= 0) {
		fprintf(f, "             %.1f meters/s since the round's first session", rate);
		if (eta > 0)
			fprintf(f, "; all read in about %s at this pace", status_dur(eta, a));
		else
			fprintf(f, "; every due meter read");
		fputc('\n', f);
	}

	fprintf(f, "\nfailures     by cause, sessions since the round started:");
	if (st->nfailures == 0)
		fprintf(f, " none\n");
	else
		fputc('\n', f);
	for (int i = 0; i < st->nfailures; i++) {
		const struct status_failure *x = &st->failures[i];
		fprintf(f, "             %-10s %6lld sessions %6lld meters", x->outcome,
		        x->sessions, x->meters);
		if (x->last_error[0])
			fprintf(f, "  last: %.120s", x->last_error);
		fputc('\n', f);
	}

	fprintf(f, "\ncompleteness load-profile intervals stored / expected, per UTC day%s%s:\n",
	        o->meter ? ", meter " : " (fleet)", o->meter ? o->meter : "");
	for (int i = 0; i < st->ndays; i++) {
		const struct status_day *d = &st->days[i];
		fprintf(f, "             %s  %6.2f%%  %lld / %lld\n", d->day,
		        status_pct(d->stored, d->expected), d->stored, d->expected);
	}
	if (o->meter == NULL) {
		fprintf(f, "             %lld meters complete over %d day(s), %lld incomplete\n",
		        st->complete_meters, o->days, st->incomplete_meters);
		if (st->nworst > 0) {
			fprintf(f, "             least complete:");
			for (int i = 0; i < st->nworst; i++)
				fprintf(f, "%s %s %.1f%%", i ? "," : "", st->worst[i].serial,
				        status_pct(st->worst[i].stored, st->worst[i].expected));
			fputc('\n', f);
		}
	}

	fprintf(f, "\ncommands     %lld queued, %lld running", st->queued, st->running);
	if (st->oldest_queued_s >= 0)
		fprintf(f, "; oldest queued %s ago", status_dur(st->oldest_queued_s, a));
	fputc('\n', f);
	for (int i = 0; i < st->nkinds; i++)
		fprintf(f, "             %-16s %lld queued, %lld running\n", st->kinds[i].kind,
		        st->kinds[i].queued, st->kinds[i].running);

	status_text_gateways(f, st);

	if (o->meter != NULL)
		status_text_meter(f, st);
}

/* ---- JSON -------------------------------------------------------------------------------- */

static void
status_json_opt_str(struct json *j, const char *key, const char *s)
{
	if (s[0])
		json_str(j, key, s);
	else
		json_null(j, key);
}

static void
status_json(FILE *f, const struct status *st, const struct status_opts *o)
{
	struct json j;
	char a[32];
	double rate;
	long long eta;

	json_init(&j, f, true);
	json_obj_begin(&j, NULL);
	json_str(&j, "now", status_iso(st->now, a));

	json_obj_begin(&j, "fleet");
	json_int(&j, "meters", st->meters);
	json_int(&j, "enabled", st->enabled);
	json_int(&j, "disabled", st->meters - st->enabled);
	json_obj_begin(&j, "reachability");
	json_int(&j, "reachable", st->reachable);
	json_int(&j, "unreachable", st->unreachable);
	json_int(&j, "unknown", st->unknown);
	json_obj_end(&j);
	json_obj_begin(&j, "transport");
	for (int i = 0; i < st->ntransports; i++) {
		json_obj_begin(&j, st->transports[i].name);
		json_int(&j, "meters", st->transports[i].n);
		json_int(&j, "enabled", st->transports[i].enabled);
		json_obj_end(&j);
	}
	json_obj_end(&j);
	json_obj_end(&j);

	json_obj_begin(&j, "round");
	json_str(&j, "window_start", status_iso(st->round_start, a));
	json_str(&j, "window_end", status_iso(st->round_end, a));
	json_str(&j, "window_source", st->window_source);
	json_bool(&j, "in_window", st->in_window);
	json_int(&j, "due", st->due);
	json_int(&j, "read", st->read);
	json_int(&j, "failed", st->failed);
	json_int(&j, "waiting", st->waiting);
	json_int(&j, "in_progress", st->in_progress);
	json_int(&j, "sessions", st->sessions);
	json_double(&j, "percent", round(status_pct(st->read, st->due) * 100.0) / 100.0);
	if (st->first_session != 0) {
		json_str(&j, "first_session_at", status_iso(st->first_session, a));
		json_str(&j, "last_session_at", status_iso(st->last_session, a));
	} else {
		json_null(&j, "first_session_at");
		json_null(&j, "last_session_at");
	}
	status_pace(st, &rate, &eta);
	if (rate >= 0)
		json_double(&j, "meters_per_s", round(rate * 100.0) / 100.0);
	else
		json_null(&j, "meters_per_s");
	if (eta >= 0)
		json_int(&j, "eta_s", eta);
	else
		json_null(&j, "eta_s");
	json_obj_end(&j);

	json_arr_begin(&j, "failures");
	for (int i = 0; i < st->nfailures; i++) {
		json_obj_begin(&j, NULL);
		json_str(&j, "outcome", st->failures[i].outcome);
		json_int(&j, "sessions", st->failures[i].sessions);
		json_int(&j, "meters", st->failures[i].meters);
		status_json_opt_str(&j, "last_error", st->failures[i].last_error);
		json_obj_end(&j);
	}
	json_arr_end(&j);

	json_obj_begin(&j, "completeness");
	json_int(&j, "days", o->days);
	if (o->meter != NULL)
		json_str(&j, "meter", o->meter);
	json_arr_begin(&j, "per_day");
	for (int i = 0; i < st->ndays; i++) {
		const struct status_day *d = &st->days[i];
		json_obj_begin(&j, NULL);
		json_str(&j, "day", d->day);
		json_int(&j, "meters", d->meters);
		json_int(&j, "expected", d->expected);
		json_int(&j, "stored", d->stored);
		json_double(&j, "percent",
		            round(status_pct(d->stored, d->expected) * 100.0) / 100.0);
		json_obj_end(&j);
	}
	json_arr_end(&j);
	json_int(&j, "complete_meters", st->complete_meters);
	json_int(&j, "incomplete_meters", st->incomplete_meters);
	json_arr_begin(&j, "least_complete");
	for (int i = 0; i < st->nworst; i++) {
		const struct status_worst *w = &st->worst[i];
		json_obj_begin(&j, NULL);
		json_str(&j, "serial", w->serial);
		json_int(&j, "expected", w->expected);
		json_int(&j, "stored", w->stored);
		json_double(&j, "percent",
		            round(status_pct(w->stored, w->expected) * 100.0) / 100.0);
		json_obj_end(&j);
	}
	json_arr_end(&j);
	json_obj_end(&j);

	json_obj_begin(&j, "commands");
	json_int(&j, "queued", st->queued);
	json_int(&j, "running", st->running);
	if (st->oldest_queued_s >= 0)
		json_int(&j, "oldest_queued_s", st->oldest_queued_s);
	else
		json_null(&j, "oldest_queued_s");
	json_obj_begin(&j, "by_kind");
	for (int i = 0; i < st->nkinds; i++) {
		json_obj_begin(&j, st->kinds[i].kind);
		json_int(&j, "queued", st->kinds[i].queued);
		json_int(&j, "running", st->kinds[i].running);
		json_obj_end(&j);
	}
	json_obj_end(&j);
	json_obj_end(&j);

	json_arr_begin(&j, "gateways");
	for (int i = 0; i < st->ngateways; i++) {
		const struct status_gateway *g = &st->gateways[i];
		int rch = status_gw_reachable(g);
		json_obj_begin(&j, NULL);
		json_str(&j, "name", g->name);
		json_str(&j, "kind", g->kind);
		json_bool(&j, "enabled", g->enabled);
		json_int(&j, "concurrency", g->concurrency);
		json_int(&j, "meters", g->meters);
		json_int(&j, "read", g->read);
		json_int(&j, "errors", g->errors);
		if (rch < 0)
			json_null(&j, "reachable");
		else
			json_bool(&j, "reachable", rch == 1);
		status_json_opt_str(&j, "last_error", g->last_error);
		json_obj_end(&j);
	}
	json_arr_end(&j);

	if (o->meter != NULL) {
		const struct status_meter *m = &st->meter;
		json_obj_begin(&j, "meter");
		json_str(&j, "serial", m->serial);
		json_str(&j, "type", m->type);
		json_str(&j, "transport", m->transport);
		json_str(&j, "address", m->address);
		json_bool(&j, "enabled", m->enabled);
		json_str(&j, "reachability", m->reachability);
		status_json_opt_str(&j, "last_contact_at", m->last_contact);
		status_json_opt_str(&j, "next_due_at", m->next_due);
		status_json_opt_str(&j, "last_error", m->last_error);
		json_int(&j, "failures", m->failures);
		if (m->leased)
			json_str(&j, "claimed_by", m->leased_by);
		else
			json_null(&j, "claimed_by");
		json_int(&j, "commands_pending", m->queued_commands);
		json_arr_begin(&j, "sessions");
		for (int i = 0; i < m->nsess; i++) {
			const struct status_session *s = &m->sess[i];
			json_obj_begin(&j, NULL);
			json_str(&j, "started_at", s->started);
			json_str(&j, "outcome", s->outcome);
			status_json_opt_str(&j, "error", s->error);
			json_int(&j, "bytes_in", s->bytes_in);
			json_int(&j, "bytes_out", s->bytes_out);
			if (s->duration_ms >= 0)
				json_int(&j, "duration_ms", s->duration_ms);
			else
				json_null(&j, "duration_ms");
			json_obj_end(&j);
		}
		json_arr_end(&j);
		json_obj_end(&j);
	}
	json_obj_end(&j);
	json_end(&j);
}

/* ---- entry point ---------------------------------------------------------------------------- */

int
ctl_status(int argc, char **argv)
{
	struct status_opts o;
	struct status st;
	char err[DB_ERR_MAX];
	PGconn *c;
	int rc;

	if ((rc = status_parse(argc, argv, &o)) != 0)
		return rc < 0 ? 0 : rc;
	memset(&st, 0, sizeof(st));
	st.now = (int64_t)time(NULL);
	if (status_window(&o, &st) != 0)
		return 1;
	if ((c = db_connect(o.dsn, "ammctl status", err, sizeof(err))) == NULL) {
		fprintf(stderr, "ammctl status: %s\n", err);
		return 1;
	}
	/* One snapshot: every figure is from the same instant of the database. */
	if (db_exec(c, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", err, sizeof(err)) != 0) {
		fprintf(stderr, "ammctl status: %s\n", err);
		PQfinish(c);
		return 1;
	}
	rc = status_gather(c, &o, &st);
	PQfinish(c);
	if (rc == 0 && o.meter != NULL && !st.meter.found) {
		fprintf(stderr, "ammctl status: no meter '%s'\n", o.meter);
		rc = -1;
	}
	if (rc == 0) {
		if (o.json)
			status_json(stdout, &st, &o);
		else
			status_text(stdout, &st, &o);
		if (fflush(stdout) != 0 || ferror(stdout))
			rc = -1;
	}
	status_free(&st);
	return rc == 0 ? 0 : 1;
}
