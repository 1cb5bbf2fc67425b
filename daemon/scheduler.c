/*
 * scheduler.c: leases, queues and session slots (see scheduler.h).
 *
 * One tick every SCHED_TICK_MS does the bookkeeping: claim more meters when
 * the queues run low, start sessions into free slots, flush due-time
 * updates, renew leases.  Database work goes through a small queue of
 * statements on the scheduler's own non-blocking libpq connection; a
 * statement's callback gets its result (or NULL when the connection was
 * lost, in which case the meters stay leased until the lease runs out and
 * are then read again: nothing is lost, only delayed).
 *
 * Sessions finish through their done callback; they are freed later from
 * the reap event, never inside their own callback.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>
#include <libpq-fe.h>

#include "acse.h"
#include "ammd.h"
#include "command.h"
#include "config.h"
#include "cosem_time.h"
#include "db.h"
#include "discovery.h"
#include "gprs/gprs.h"
#include "http.h"
#include "log.h"
#include "metrics.h"
#include "obis.h"
#include "scheduler.h"
#include "session.h"
#include "store.h"
#include "transport.h"

#define SCHED_TICK_MS       20
#define SCHED_IDLE_CLAIM_MS 2000 /* poll for due meters when none came */
#define SCHED_MAX_PARAMS    6
#define SCHED_DUE_FLUSH     256
#define SCHED_CMD_RETRY     256 /* command meters leased elsewhere, asked again */
#define SCHED_CMD_RESERVE   8   /* slots beyond concurrency for command sessions, at least */

bool (*scheduler_command_hook)(struct scheduler *sc) = NULL;
bool (*scheduler_gateway_hook)(struct scheduler *sc,
                               const struct scheduler_gateway_meter *m) = NULL;

struct pgq {
	struct pgq *next;
	const char *sql;
	int n;
	char *params[SCHED_MAX_PARAMS];
	void (*cb)(struct scheduler *sc, PGresult *res, void *arg);
	void *arg;
};

struct job {
	struct job *next;
	struct session_meter m;
	const struct transport_ops *tr;
};

struct live {
	struct live *next;
	struct session *s;
	int prio;
	bool cmd_only; /* a command-priority session (no collection) */
};

struct due {
	int32_t id;
	int64_t at;
};

struct scheduler {
	struct ammd *d;
	struct store *store;
	char instance[CONFIG_STR_MAX];

	PGconn *pg;
	struct event *ev_pg;
	struct pgq *q_head, *q_tail;
	bool q_busy;
	PGresult *q_res;
	int64_t pg_retry_at;
	bool stale_released; /* leases of a previous run given back */

	struct event *ev_tick;
	struct event *ev_reap;
	struct job *jobs[SCHED_NPRIO], *jobs_tail[SCHED_NPRIO];
	size_t njobs[SCHED_NPRIO];
	struct live *live, *dead;
	size_t nlive;
	bool claiming;
	int64_t next_claim_ms;
	int64_t next_renew;
	bool ondemand_wake;
	bool draining;

	struct due *due;
	size_t ndue, cdue;
	bool due_busy;

	/* the command executor (command.h) */
	bool exec_set;
	int32_t cmd_leasing[SCHED_CMD_RETRY]; /* lease statements under way */
	size_t ncmd_leasing;
	int32_t cmd_retry[SCHED_CMD_RETRY]; /* leased by another instance */
	size_t ncmd_retry;
	int64_t cmd_retry_at;
	bool gprs_cmd_busy; /* the GPRS command poll is under way */
	int64_t gprs_cmd_at;

	uint64_t started, finished;
	struct metric *m_queue, *m_active, *m_claimed, *m_backpressure;
};

static struct scheduler *the_scheduler;

/* ---- pure helpers --------------------------------------------------------- */

int64_t
scheduler_jitter(int32_t meter, int64_t span)
{
	uint64_t x = (uint64_t)(uint32_t)meter * 0x9e3779b97f4a7c15ULL;
	x ^= x >> 31;
	x *= 0xbf58476d1ce4e5b9ULL;
	x ^= x >> 27;
	return span > 0 ? (int64_t)(x % (uint64_t)span) : 0;
}

int64_t
scheduler_backoff(int failures, int base_s, int max_s, int unreachable_s)
{
	int64_t d = base_s;

	if (failures >= SCHEDULER_UNREACHABLE_AFTER)
		return unreachable_s;
	for (int i = 1; i < failures && d < max_s; i++)
		d *= 2;
	return d < max_s ? d : max_s;
}

int64_t
scheduler_window_open(int64_t days, int window_start_min)
{
	struct cosem_datetime w;
	unsigned mo, d;
	int64_t t;
	int y;

	cosem_civil_from_days(days, &y, &mo, &d);
	memset(&w, 0, sizeof(w));
	w.year = (uint16_t)y;
	w.month = (uint8_t)mo;
	w.day = (uint8_t)d;
	w.dow = COSEM_UNSPEC;
	w.hour = (uint8_t)(window_start_min / 60);
	w.minute = (uint8_t)(window_start_min % 60);
	w.deviation = COSEM_DEVIATION_UNSPEC;
	w.status = 0;
	if (cosem_datetime_to_utc(&w, &session_tz, &t) != 0)
		t = days * 86400 + window_start_min * 60 - 3600; /* in a DST gap */
	return t;
}

int64_t
scheduler_next_slot(int64_t now, int32_t meter, int window_start_min, int window_len_s,
                    int64_t min_gap_s)
{
	struct cosem_datetime dt;

	/* local midnight of today, then walk forward day by day */
	cosem_datetime_from_utc(now, &session_tz, &dt);
	for (int k = -1; k < 3; k++) {
		int64_t days = cosem_days_from_civil(dt.year, dt.month, dt.day) + k;
		int64_t slot = scheduler_window_open(days, window_start_min) +
		               scheduler_jitter(meter, window_len_s);
		if (slot > now + min_gap_s)
			return slot;
	}
	return now + 86400;
}

int
scheduler_parse_pointers(const char *text, struct session_meter *m)
{
	const char *p = text;

	m->ptr_profile = m->ptr_billing = STORE_NULL;
	for (int i = 0; i < SESSION_NLOGS; i++)
		m->ptr_events[i] = STORE_NULL;
	while (p != NULL && *p) {
		char what[32];
		long long v;
		int n = 0;
		if (sscanf(p, "%31[^=]=%n", what, &n) != 1 || n == 0)
			return -1;
		p += n;
		if (sscanf(p, "%lld", &v) == 1) {
			if (strcmp(what, "profile") == 0)
				m->ptr_profile = v;
			else if (strcmp(what, "billing") == 0)
				m->ptr_billing = v;
			else if (strncmp(what, "events:", 7) == 0)
				for (int i = 0; i < SESSION_NLOGS; i++)
					if (atoi(what + 7) == session_log_e[i])
						m->ptr_events[i] = v;
		}
		p = strchr(p, ',');
		if (p)
			p++;
	}
	return 0;
}

int
scheduler_parse_gaps(const char *text, struct session_meter *m)
{
	const char *p = text;

	m->ngaps = 0;
	while (p != NULL && *p && m->ngaps < SESSION_MAX_GAPS) {
		long long a, b;
		if (sscanf(p, "%lld-%lld", &a, &b) != 2 || b <= a)
			return -1;
		m->gaps[m->ngaps].from = a;
		m->gaps[m->ngaps].to = b;
		m->ngaps++;
		p = strchr(p, ',');
		if (p)
			p++;
	}
	return 0;
}

/* ---- the statement queue ------------------------------------------------- */

static void pg_send_next(struct scheduler *sc);

static void
pgq_free(struct pgq *q)
{
	for (int i = 0; i < q->n; i++)
		free(q->params[i]);
	free(q);
}

static void
pg_lost(struct scheduler *sc, const char *why)
{
	log_warnx("scheduler: database connection lost: %s", why);
	if (sc->ev_pg != NULL) {
		event_free(sc->ev_pg);
		sc->ev_pg = NULL;
	}
	if (sc->pg != NULL) {
		PQfinish(sc->pg);
		sc->pg = NULL;
	}
	if (sc->q_res != NULL) {
		PQclear(sc->q_res);
		sc->q_res = NULL;
	}
	/* every waiting statement fails: its callback sees NULL */
	while (sc->q_head != NULL) {
		struct pgq *q = sc->q_head;
		sc->q_head = q->next;
		if (q->cb)
			q->cb(sc, NULL, q->arg);
		pgq_free(q);
	}
	sc->q_tail = NULL;
	sc->q_busy = false;
	sc->pg_retry_at = (int64_t)time(NULL) + 2;
}

static void
pg_readcb(evutil_socket_t fd, short what, void *arg)
{
	struct scheduler *sc = arg;
	PGnotify *nt;
	(void)fd;

	if (what & EV_WRITE) {
		int f = PQflush(sc->pg);
		if (f < 0) {
			pg_lost(sc, PQerrorMessage(sc->pg));
			return;
		}
		if (f == 0) {
			/* all sent: back to waiting for the answer */
			event_del(sc->ev_pg);
			event_assign(sc->ev_pg, sc->d->base, PQsocket(sc->pg), EV_READ | EV_PERSIST,
			             pg_readcb, sc);
			event_add(sc->ev_pg, NULL);
		}
		return;
	}
	if (!PQconsumeInput(sc->pg)) {
		pg_lost(sc, PQerrorMessage(sc->pg));
		return;
	}
	while ((nt = PQnotifies(sc->pg)) != NULL) {
		sc->ondemand_wake = true;
		PQfreemem(nt);
	}
	while (sc->q_busy && !PQisBusy(sc->pg)) {
		PGresult *r = PQgetResult(sc->pg);
		if (r != NULL) {
			if (sc->q_res == NULL)
				sc->q_res = r;
			else
				PQclear(r);
			continue;
		}
		struct pgq *q = sc->q_head;
		sc->q_head = q->next;
		if (sc->q_head == NULL)
			sc->q_tail = NULL;
		sc->q_busy = false;
		PGresult *res = sc->q_res;
		sc->q_res = NULL;
		ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
		if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
			log_warnx("scheduler: statement failed: %s",
			          res ? PQresultErrorMessage(res) : PQerrorMessage(sc->pg));
			if (q->cb)
				q->cb(sc, NULL, q->arg);
		} else if (q->cb) {
			q->cb(sc, res, q->arg);
		}
		PQclear(res);
		pgq_free(q);
		pg_send_next(sc);
	}
}

static void
pg_send_next(struct scheduler *sc)
{
	struct pgq *q = sc->q_head;

	if (sc->q_busy || q == NULL || sc->pg == NULL)
		return;
	if (!PQsendQueryParams(sc->pg, q->sql, q->n, NULL, (const char *const *)q->params, NULL,
	                       NULL, 0)) {
		pg_lost(sc, PQerrorMessage(sc->pg));
		return;
	}
	sc->q_busy = true;
	if (PQflush(sc->pg) == 1) {
		event_del(sc->ev_pg);
		event_assign(sc->ev_pg, sc->d->base, PQsocket(sc->pg), EV_WRITE | EV_PERSIST,
		             pg_readcb, sc);
		event_add(sc->ev_pg, NULL);
	}
}

/* Queue a statement; params are copied (NULL entries are SQL NULL). */
static void
pg_query(struct scheduler *sc, const char *sql, int n, const char *const *params,
         void (*cb)(struct scheduler *, PGresult *, void *), void *arg)
{
	struct pgq *q;

	if (sc->pg == NULL || (q = calloc(1, sizeof(*q))) == NULL) {
		if (cb)
			cb(sc, NULL, arg);
		return;
	}
	q->sql = sql;
	q->n = n;
	for (int i = 0; i < n; i++)
		q->params[i] = params[i] ? strdup(params[i]) : NULL;
	q->cb = cb;
	q->arg = arg;
	if (sc->q_tail)
		sc->q_tail->next = q;
	else
		sc->q_head = q;
	sc->q_tail = q;
	pg_send_next(sc);
}

/* Connecting blocks for at most connect_timeout; it happens at start and
 * after a lost connection, never per session. */
static int
pg_connect(struct scheduler *sc)
{
	char err[DB_ERR_MAX];
	PGresult *r;

	sc->pg = db_connect(sc->d->cfg->database.dsn, "ammd-scheduler", err, sizeof(err));
	if (sc->pg == NULL) {
		log_warnx("scheduler: database: %s", err);
		sc->pg_retry_at = (int64_t)time(NULL) + 5;
		return -1;
	}
	r = PQexec(sc->pg, "LISTEN ammd_ondemand");
	PQclear(r);
	/* Leases in our name before we claimed anything are a previous run's
	 * that was killed (SIGKILL, OOM, power): nobody else holds our
	 * instance id, so take them back now rather than leave those meters
	 * unread for lease_seconds.  Only on the first connection: after a
	 * reconnect the leases are our own live sessions'. */
	if (!sc->stale_released) {
		const char *p[1] = {sc->instance};
		r = PQexecParams(sc->pg,
		                 "UPDATE meter SET leased_by = NULL, lease_until = NULL "
		                 "WHERE leased_by = $1",
		                 1, NULL, p, NULL, NULL, 0);
		if (PQresultStatus(r) == PGRES_COMMAND_OK) {
			sc->stale_released = true;
			if (atoi(PQcmdTuples(r)) > 0)
				log_warnx("scheduler: %s leases of a previous run of instance %s "
				          "taken back (it did not exit cleanly)",
				          PQcmdTuples(r), sc->instance);
		}
		PQclear(r);
	}
	PQsetnonblocking(sc->pg, 1);
	sc->ev_pg = event_new(sc->d->base, PQsocket(sc->pg), EV_READ | EV_PERSIST, pg_readcb, sc);
	if (sc->ev_pg == NULL || event_add(sc->ev_pg, NULL) != 0) {
		PQfinish(sc->pg);
		sc->pg = NULL;
		return -1;
	}
	return 0;
}

/* ---- claims --------------------------------------------------------------- */

/*
 * A claim is two statements.  The first leases the meters and reserves
 * their invocation counters.  ammd_claim_meters() is a volatile function:
 * it sees rows committed after its calling statement began, so reading
 * the meters' pointers and holes in that same statement could use an
 * older snapshot than the lease; the second statement, begun after the
 * first has ended, sees everything committed before the lease.
 */
static const char claim_sql[] =
    "WITH c AS (SELECT ammd_claim_meters($1, $2::int, make_interval(secs => $3::int)) AS id), "
    "k AS (UPDATE meter_key mk SET tx_counter = mk.tx_counter + $4::bigint FROM c "
    "  WHERE mk.meter_id = c.id AND mk.ek IS NOT NULL "
    "  AND mk.tx_counter + $4::bigint <= 4294967295 "
    "  RETURNING mk.meter_id, mk.tx_counter - $4::bigint AS tx0, mk.tx_counter AS tx1) "
    "SELECT coalesce(array_agg(c.id ORDER BY c.id), '{}'), "
    "  coalesce(array_agg(k.tx0 ORDER BY c.id), '{}'), coalesce(array_agg(k.tx1 ORDER BY c.id), "
    "'{}') "
    "FROM c LEFT JOIN k ON k.meter_id = c.id";

static const char load_sql[] =
    "SELECT m.id, m.serial, m.transport, m.host, coalesce(m.port, 0), m.hdlc, m.client_addr, "
    "  m.server_addr, m.logical_addr, m.security, m.profile_period, m.failures, "
    "  (m.collect ? 'discover')::int, encode(mk.ek, 'hex'), encode(mk.ak, 'hex'), mk.password, "
    "  encode(mk.system_title, 'hex'), u.tx0, u.tx1, mk.rx_counter, "
    "  (SELECT string_agg(p.what || '=' || coalesce(extract(epoch FROM p.last_ts)::bigint::text, "
    "''), ',') "
    "     FROM read_pointer p WHERE p.meter_id = m.id), "
    "  (SELECT string_agg(format('%s,%s,%s,%s,%s,%s,%s,%s', l.profile_obis, l.col, l.class_id, "
    "     l.obis, l.attr, l.data_index, coalesce(l.scaler, 0), coalesce(l.unit, 255)), ';' "
    "     ORDER BY l.profile_obis, l.col) FROM meter_profile_layout l WHERE l.meter_id = m.id), "
    "  (SELECT string_agg(extract(epoch FROM g.prev)::bigint || '-' || "
    "     extract(epoch FROM g.ts)::bigint, ',' ORDER BY g.ts) "
    "   FROM (SELECT i.ts, lag(i.ts) OVER (ORDER BY i.ts) AS prev FROM interval_reading i "
    "         WHERE i.meter_id = m.id AND i.ts >= (SELECT p.last_ts FROM read_pointer p "
    "           WHERE p.meter_id = m.id AND p.what = 'profile') - make_interval(days => $4::int)) "
    "g "
    "   WHERE g.ts - g.prev > make_interval(secs => m.profile_period)), "
    /* 23..: gateway meters (scheduler_gateway_hook) */
    "  m.type, m.gateway_id, gw.kind, gw.host, gw.port, coalesce(gw.baud_rate, 0), "
    "  gw.concurrency, coalesce(m.primary_addr, -1), m.secondary_addr, gw.name "
    "FROM unnest($1::int[], $2::bigint[], $3::bigint[]) AS u(id, tx0, tx1) "
    "JOIN meter m ON m.id = u.id LEFT JOIN meter_key mk ON mk.meter_id = m.id "
    "LEFT JOIN gateway gw ON gw.id = m.gateway_id "
    "ORDER BY m.id";

static int
hex_to(const char *h, uint8_t *out, size_t n)
{
	if (h == NULL || strlen(h) != 2 * n)
		return -1;
	for (size_t i = 0; i < n; i++) {
		unsigned v;
		if (sscanf(h + 2 * i, "%2x", &v) != 1)
			return -1;
		out[i] = (uint8_t)v;
	}
	return 0;
}

static void
job_push(struct scheduler *sc, struct job *j, int prio)
{
	j->next = NULL;
	if (sc->jobs_tail[prio])
		sc->jobs_tail[prio]->next = j;
	else
		sc->jobs[prio] = j;
	sc->jobs_tail[prio] = j;
	sc->njobs[prio]++;
}

static struct job *
job_pop(struct scheduler *sc, int prio)
{
	struct job *j = sc->jobs[prio];
	if (j == NULL)
		return NULL;
	sc->jobs[prio] = j->next;
	if (sc->jobs[prio] == NULL)
		sc->jobs_tail[prio] = NULL;
	sc->njobs[prio]--;
	return j;
}

static const char *
val(PGresult *r, int row, int col)
{
	return PQgetisnull(r, row, col) ? NULL : PQgetvalue(r, row, col);
}

static int
row_to_meter(PGresult *r, int i, struct session_meter *m, bool *ondemand)
{
	const char *v;
	static const struct obis lp = {{1, 0, 99, 1, 0, 255}};

	memset(m, 0, sizeof(*m));
	m->id = atoi(PQgetvalue(r, i, 0));
	snprintf(m->serial, sizeof(m->serial), "%s", PQgetvalue(r, i, 1));
	if (strcmp(PQgetvalue(r, i, 2), "tcpip") != 0 && strcmp(PQgetvalue(r, i, 2), "gprs") != 0) {
		log_meter(LOG_WARNING, m->serial, "transport %s not handled here",
		          PQgetvalue(r, i, 2));
		return -1;
	}
	snprintf(m->host, sizeof(m->host), "%s", (v = val(r, i, 3)) ? v : "");
	m->port = (uint16_t)atoi(PQgetvalue(r, i, 4));
	m->hdlc = PQgetvalue(r, i, 5)[0] == 't';
	m->client_addr = (uint16_t)atoi(PQgetvalue(r, i, 6));
	m->server_addr = (uint16_t)atoi(PQgetvalue(r, i, 7));
	m->logical_addr = (uint16_t)atoi(PQgetvalue(r, i, 8));
	const char *sec = PQgetvalue(r, i, 9);
	m->profile_period = (uint32_t)atoi(PQgetvalue(r, i, 10));
	m->failures = atoi(PQgetvalue(r, i, 11));
	m->discover = atoi(PQgetvalue(r, i, 12)) != 0;
	*ondemand = m->discover;
	if (strcmp(sec, "lls") == 0) {
		m->mechanism = ACSE_MECH_LLS;
		snprintf(m->password, sizeof(m->password), "%s", (v = val(r, i, 15)) ? v : "");
	} else if (strcmp(sec, "hls-gmac") == 0) {
		m->mechanism = ACSE_MECH_HLS_GMAC;
		m->ciphering = true;
		if (hex_to(val(r, i, 13), m->ek, 16) != 0 ||
		    hex_to(val(r, i, 14), m->ak, 16) != 0) {
			log_meter(LOG_WARNING, m->serial, "hls-gmac without keys: not read");
			return -1;
		}
		if (val(r, i, 17) == NULL) {
			log_meter(LOG_WARNING, m->serial,
			          "invocation counter exhausted: the meter needs new keys");
			return -1;
		}
		m->have_keys = true;
		hex_to(val(r, i, 16), m->server_title, 8);
		m->tx_first = (uint32_t)strtoul(PQgetvalue(r, i, 17), NULL, 10);
		m->tx_limit = (uint32_t)strtoul(PQgetvalue(r, i, 18), NULL, 10);
		if ((v = val(r, i, 19)) != NULL) {
			m->rx_counter = (uint32_t)strtoul(v, NULL, 10);
			m->rx_seen = m->rx_counter > 0;
		}
	} else {
		m->mechanism = ACSE_MECH_NONE;
	}
	if (scheduler_parse_pointers(val(r, i, 20), m) != 0)
		log_meter(LOG_WARNING, m->serial, "unreadable read pointers");
	v = val(r, i, 21);
	int n = v ? discovery_layout_parse(v, &lp, m->lp_cols, PROFILE_MAX_COLUMNS) : 0;
	m->n_lp_cols = n > 0 ? (size_t)n : 0;
	if (scheduler_parse_gaps(val(r, i, 22), m) != 0)
		m->ngaps = 0;
	if (m->ngaps > 0)
		log_meter(LOG_INFO, m->serial, "%zu holes in the stored profile: asking again",
		          m->ngaps);
	return 0;
}

static void due_add(struct scheduler *sc, int32_t id, int64_t at);

/* Row i of the claim is a gateway meter the hook takes. */
static bool
take_gateway_meter(struct scheduler *sc, PGresult *r, int i)
{
	const char *tr = PQgetvalue(r, i, 2);
	struct scheduler_gateway_meter gm;

	if (strcmp(tr, "mbus") != 0 && strcmp(tr, "modbus") != 0)
		return false;
	if (PQnfields(r) < 33 || PQgetisnull(r, i, 24))
		return false;
	memset(&gm, 0, sizeof(gm));
	gm.id = atoi(PQgetvalue(r, i, 0));
	gm.serial = PQgetvalue(r, i, 1);
	gm.transport = tr;
	gm.failures = atoi(PQgetvalue(r, i, 11));
	gm.ondemand = atoi(PQgetvalue(r, i, 12)) != 0;
	gm.type = PQgetvalue(r, i, 23);
	gm.gateway_id = atoi(PQgetvalue(r, i, 24));
	gm.gw_kind = PQgetvalue(r, i, 25);
	gm.gw_host = PQgetvalue(r, i, 26);
	gm.gw_port = (uint16_t)atoi(PQgetvalue(r, i, 27));
	gm.gw_baud = atoi(PQgetvalue(r, i, 28));
	gm.gw_concurrency = atoi(PQgetvalue(r, i, 29));
	gm.primary_addr = atoi(PQgetvalue(r, i, 30));
	gm.secondary_addr = val(r, i, 31);
	gm.gw_name = PQgetvalue(r, i, 32);
	return scheduler_gateway_hook(sc, &gm);
}

void
scheduler_gateway_done(struct scheduler *sc, int32_t meter, bool committed, bool ok, int failures)
{
	const struct config *cfg = sc->d->cfg;
	int64_t now = (int64_t)time(NULL), at;

	sc->finished++;
	if (!committed)
		at = now + cfg->collection.retry_base_s;
	else if (ok)
		at = scheduler_next_slot(now, meter, cfg->collection.window_start,
		                         cfg->collection.window_length, 3600);
	else
		at = now +
		     scheduler_backoff(failures, cfg->collection.retry_base_s,
		                       cfg->collection.retry_max_s,
		                       cfg->collection.unreachable_retry_s) +
		     scheduler_jitter(meter, cfg->collection.retry_base_s / 4 + 1);
	due_add(sc, meter, at);
}

static void
load_done(struct scheduler *sc, PGresult *r, void *arg)
{
	int n;
	(void)arg;

	sc->claiming = false;
	if (r == NULL)
		return; /* the leases run out and the meters are claimed again */
	n = PQntuples(r);
	for (int i = 0; i < n; i++) {
		struct job *j = malloc(sizeof(*j));
		bool ondemand = false;
		if (j == NULL)
			break;
		if (scheduler_gateway_hook != NULL && take_gateway_meter(sc, r, i)) {
			free(j);
			continue;
		}
		if (row_to_meter(r, i, &j->m, &ondemand) != 0) {
			free(j);
			continue;
		}
		j->tr = &tcpip_transport;
		if (strcmp(PQgetvalue(r, i, 2), "gprs") == 0) {
			/* a GPRS meter without an APN address only connects in
			 * (gprs_inbound.c); it is read when it does */
			if (j->m.host[0] == '\0') {
				free(j);
				continue;
			}
			j->tr = &gprs_transport;
		}
		job_push(sc, j, ondemand ? SCHED_PRIO_ONDEMAND : SCHED_PRIO_SCHEDULE);
	}
}

static int64_t
mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
claim_done(struct scheduler *sc, PGresult *r, void *arg)
{
	const char *ids, *p[4];
	char days[16];
	(void)arg;

	if (r == NULL || PQntuples(r) != 1) {
		sc->claiming = false;
		return;
	}
	ids = PQgetvalue(r, 0, 0);
	if (strcmp(ids, "{}") == 0) {
		/* nothing due: look again a little later (or on NOTIFY) */
		sc->claiming = false;
		sc->next_claim_ms = mono_ms() + SCHED_IDLE_CLAIM_MS;
		return;
	}
	int n = 1;
	for (const char *c = ids; *c; c++)
		n += *c == ',';
	metric_add(sc->m_claimed, n);
	log_debug("scheduler: leased %d meters", n);
	sc->next_claim_ms = mono_ms();
	snprintf(days, sizeof(days), "%d", sc->d->cfg->collection.profile_backfill_days);
	p[0] = ids;
	p[1] = PQgetvalue(r, 0, 1);
	p[2] = PQgetvalue(r, 0, 2);
	p[3] = days;
	pg_query(sc, load_sql, 4, p, load_done, NULL);
}

static void
claim(struct scheduler *sc)
{
	const struct config *cfg = sc->d->cfg;
	char n[16], lease[16], win[16];
	const char *p[4] = {sc->instance, n, lease, win};

	snprintf(n, sizeof(n), "%d", cfg->collection.lease_batch);
	snprintf(lease, sizeof(lease), "%d", cfg->collection.lease_seconds);
	snprintf(win, sizeof(win), "%d", SCHEDULER_IC_WINDOW);
	sc->claiming = true;
	pg_query(sc, claim_sql, 4, p, claim_done, NULL);
}

/* ---- due times and leases ----------------------------------------------- */

static const char due_sql[] =
    "UPDATE meter m SET next_due_at = to_timestamp(u.due), leased_by = NULL, lease_until = NULL, "
    "updated_at = now() "
    "FROM unnest($1::int[], $2::float8[]) AS u(id, due) WHERE m.id = u.id AND m.leased_by = $3";

static void
due_done(struct scheduler *sc, PGresult *r, void *arg)
{
	(void)r;
	(void)arg;
	sc->due_busy = false;
}

static void
due_flush(struct scheduler *sc)
{
	char *ids, *dues;
	size_t li = 0, ld = 0;

	if (sc->ndue == 0 || sc->due_busy || sc->pg == NULL)
		return;
	ids = malloc(sc->ndue * 12 + 3);
	dues = malloc(sc->ndue * 22 + 3);
	if (ids == NULL || dues == NULL) {
		free(ids);
		free(dues);
		return;
	}
	ids[li++] = '{';
	dues[ld++] = '{';
	for (size_t i = 0; i < sc->ndue; i++) {
		li += (size_t)sprintf(ids + li, "%s%d", i ? "," : "", sc->due[i].id);
		ld += (size_t)sprintf(dues + ld, "%s%" PRId64, i ? "," : "", sc->due[i].at);
	}
	strcpy(ids + li, "}");
	strcpy(dues + ld, "}");
	const char *p[3] = {ids, dues, sc->instance};
	sc->due_busy = true;
	pg_query(sc, due_sql, 3, p, due_done, NULL);
	free(ids);
	free(dues);
	sc->ndue = 0;
}

static void
due_add(struct scheduler *sc, int32_t id, int64_t at)
{
	if (sc->ndue == sc->cdue) {
		size_t nc = sc->cdue ? 2 * sc->cdue : 256;
		void *p = realloc(sc->due, nc * sizeof(*sc->due));
		if (p == NULL)
			return; /* the lease runs out and the meter is read again */
		sc->due = p;
		sc->cdue = nc;
	}
	sc->due[sc->ndue++] = (struct due){id, at};
}

/* The meter's counter only moves forward (the guard trigger refuses
 * going back; GREATEST keeps an older session from trying). */
static const char rx_counter_sql[] =
    "UPDATE meter_key SET rx_counter = GREATEST(rx_counter, $2::bigint) WHERE meter_id = $1::int";

static const char renew_sql[] = "SELECT ammd_renew_leases($1, make_interval(secs => $2::int))";

static const char release_sql[] =
    "UPDATE meter SET leased_by = NULL, lease_until = NULL WHERE leased_by = $1";

/* ---- the command executor ---------------------------------------------------- */

/*
 * command.c calls sched_command_exec() for each meter it has claimed
 * commands for.  A session of ours that is connecting or in its tasks
 * takes them at its next task boundary; a meter of ours waiting for a
 * slot moves to command priority; any other meter is leased (unless
 * another instance holds it, then it is asked again every second) and
 * gets a command-only session at command priority, which on the next free
 * slot, normally at once, connects and runs the commands first.
 */
static const char cmd_lease_sql[] =
    "WITH c AS (UPDATE meter m SET leased_by = $1, lease_until = now() + make_interval(secs => "
    "  $3::int) WHERE m.id = $2::int "
    "  AND (m.lease_until IS NULL OR m.lease_until < now() OR m.leased_by = $1) RETURNING m.id), "
    "k AS (UPDATE meter_key mk SET tx_counter = mk.tx_counter + $4::bigint FROM c "
    "  WHERE mk.meter_id = c.id AND mk.ek IS NOT NULL "
    "  AND mk.tx_counter + $4::bigint <= 4294967295 "
    "  RETURNING mk.meter_id, mk.tx_counter - $4::bigint AS tx0, mk.tx_counter AS tx1) "
    "SELECT coalesce(array_agg(c.id), '{}'), coalesce(array_agg(k.tx0), '{}'), "
    "  coalesce(array_agg(k.tx1), '{}') FROM c LEFT JOIN k ON k.meter_id = c.id";

/* A command-only session leaves the meter's collection due time alone. */
static const char cmd_unlease_sql[] =
    "UPDATE meter SET leased_by = NULL, lease_until = NULL WHERE id = $1::int AND leased_by = $2";

static void sched_command_exec(int32_t meter_id, const char *serial, void *arg);

static bool
id_in(const int32_t *a, size_t n, int32_t id)
{
	for (size_t i = 0; i < n; i++)
		if (a[i] == id)
			return true;
	return false;
}

static void
id_del(int32_t *a, size_t *n, int32_t id)
{
	for (size_t i = 0; i < *n; i++)
		if (a[i] == id) {
			a[i] = a[--*n];
			return;
		}
}

/* The meter's waiting jobs cannot run here: postponed (not reached) or
 * failed (no DLMS session possible). */
static void
cmd_drop_jobs(int32_t meter, const char *why, int postpone_s)
{
	struct command_queue *q = command_get();
	struct command_job *j;

	while (q != NULL && command_take(q, meter, &j, 1) == 1) {
		if (postpone_s >= 0)
			command_postpone(q, j, why, postpone_s);
		else
			command_finish(q, j, false, NULL, why);
	}
}

static void
cmd_unlease(struct scheduler *sc, int32_t meter)
{
	char id[16];
	snprintf(id, sizeof(id), "%d", meter);
	const char *p[2] = {id, sc->instance};
	pg_query(sc, cmd_unlease_sql, 2, p, NULL, NULL);
}

static void
cmd_load_done(struct scheduler *sc, PGresult *r, void *arg)
{
	int32_t meter = (int32_t)(intptr_t)arg;
	struct job *j;
	bool ondemand;

	id_del(sc->cmd_leasing, &sc->ncmd_leasing, meter);
	if (r == NULL || PQntuples(r) != 1 || (j = calloc(1, sizeof(*j))) == NULL) {
		/* the lease runs out; the commands' own leases too, and they
		 * are claimed again */
		cmd_drop_jobs(meter, "cannot load the meter", sc->d->cfg->collection.retry_base_s);
		return;
	}
	if (row_to_meter(r, 0, &j->m, &ondemand) != 0) {
		char why[96];
		snprintf(why, sizeof(why), "commands need a DLMS session; the meter's transport is %s",
		         PQgetvalue(r, 0, 2));
		cmd_drop_jobs(meter, why, -1);
		cmd_unlease(sc, meter);
		free(j);
		return;
	}
	j->tr = &tcpip_transport;
	if (strcmp(PQgetvalue(r, 0, 2), "gprs") == 0) {
		if (j->m.host[0] == '\0') {
			/* it only connects in: on the connection it holds idle
			 * (gprs_inbound.c), else at its next connection */
			if (gprs_inbound_take(j->m.serial, j->m.host) != 0) {
				cmd_drop_jobs(meter, "the GPRS meter is not connected", 0);
				cmd_unlease(sc, meter);
				free(j);
				return;
			}
			j->m.port = 0;
			j->tr = &gprs_inbound_transport;
		} else {
			j->tr = &gprs_transport;
		}
	}
	j->m.commands_only = true;
	job_push(sc, j, SCHED_PRIO_COMMAND);
}

static void
cmd_lease_done(struct scheduler *sc, PGresult *r, void *arg)
{
	int32_t meter = (int32_t)(intptr_t)arg;
	char days[16];
	const char *p[4];

	if (r == NULL || PQntuples(r) != 1 || strcmp(PQgetvalue(r, 0, 0), "{}") == 0) {
		/* another instance reads the meter now: ask again shortly */
		id_del(sc->cmd_leasing, &sc->ncmd_leasing, meter);
		if (sc->ncmd_retry < SCHED_CMD_RETRY && !id_in(sc->cmd_retry, sc->ncmd_retry, meter))
			sc->cmd_retry[sc->ncmd_retry++] = meter;
		return;
	}
	snprintf(days, sizeof(days), "%d", sc->d->cfg->collection.profile_backfill_days);
	p[0] = PQgetvalue(r, 0, 0);
	p[1] = PQgetvalue(r, 0, 1);
	p[2] = PQgetvalue(r, 0, 2);
	p[3] = days;
	pg_query(sc, load_sql, 4, p, cmd_load_done, (void *)(intptr_t)meter);
}

/*
 * GPRS meters are not claimed by the command module's own claim, which
 * takes the always-on transports only: a meter that connects in cannot be
 * reached until it does, and GPRS airtime is dear.  Once a second the
 * scheduler looks for queued commands of the GPRS meters it can reach now
 * -- those with an APN address (an outbound call with [gprs] timing) and
 * those whose connection the listener holds idle -- and has their
 * commands claimed (command_claim_meter()), which ends in
 * sched_command_exec() as for any meter.  A meter with a command running
 * is left alone (one command per meter at a time); a command postponed
 * after a failed call waits out its not_before.
 */
static const char gprs_cmd_sql[] =
    "SELECT DISTINCT c.meter_id FROM command c JOIN meter m ON m.id = c.meter_id "
    "WHERE c.state = 'queued' AND c.not_before <= now() AND c.expires_at > now() "
    "  AND m.transport = 'gprs' AND m.enabled "
    "  AND (m.host IS NOT NULL OR m.serial = ANY ($1::text[])) "
    "  AND NOT EXISTS (SELECT FROM command o WHERE o.meter_id = c.meter_id "
    "    AND o.state = 'running') "
    "LIMIT 64";

static void
gprs_cmd_done(struct scheduler *sc, PGresult *r, void *arg)
{
	struct command_queue *cq = command_get();
	(void)arg;

	sc->gprs_cmd_busy = false;
	if (r == NULL || cq == NULL || sc->draining)
		return;
	for (int i = 0; i < PQntuples(r); i++) {
		int32_t meter = (int32_t)strtol(PQgetvalue(r, i, 0), NULL, 10);
		if (!command_pending(cq, meter))
			command_claim_meter(cq, meter);
	}
}

static void
gprs_cmd_poll(struct scheduler *sc)
{
	char *idle = gprs_inbound_idle_serials();
	const char *p[1] = {idle != NULL ? idle : "{}"};

	sc->gprs_cmd_busy = true;
	pg_query(sc, gprs_cmd_sql, 1, p, gprs_cmd_done, NULL);
	free(idle);
}

static void
sched_command_exec(int32_t meter_id, const char *serial, void *arg)
{
	struct scheduler *sc = arg;
	char id[16], lease[16], win[16];
	(void)serial;

	if (sc->draining)
		return; /* command.c gives the jobs back */
	for (struct live *l = sc->live; l != NULL; l = l->next)
		if (session_meter_id(l->s) == meter_id) {
			/* before its release it takes them; after, its done
			 * callback sees them waiting and starts another */
			return;
		}
	for (int p = 0; p < SCHED_NPRIO; p++)
		for (struct job **pp = &sc->jobs[p], *prev = NULL; *pp != NULL;
		     prev = *pp, pp = &(*pp)->next) {
			struct job *j = *pp;
			if (j->m.id != meter_id)
				continue;
			if (p != SCHED_PRIO_COMMAND) {
				*pp = j->next;
				if (sc->jobs_tail[p] == j)
					sc->jobs_tail[p] = prev;
				sc->njobs[p]--;
				job_push(sc, j, SCHED_PRIO_COMMAND);
			}
			return;
		}
	if (id_in(sc->cmd_leasing, sc->ncmd_leasing, meter_id) ||
	    sc->ncmd_leasing == SCHED_CMD_RETRY)
		return;
	id_del(sc->cmd_retry, &sc->ncmd_retry, meter_id);
	sc->cmd_leasing[sc->ncmd_leasing++] = meter_id;
	snprintf(id, sizeof(id), "%d", meter_id);
	snprintf(lease, sizeof(lease), "%d", sc->d->cfg->collection.lease_seconds);
	snprintf(win, sizeof(win), "%d", SCHEDULER_IC_WINDOW);
	const char *p[4] = {sc->instance, id, lease, win};
	pg_query(sc, cmd_lease_sql, 4, p, cmd_lease_done, (void *)(intptr_t)meter_id);
}

/* ---- sessions --------------------------------------------------------------- */

static void
session_done(struct session *s, void *arg)
{
	struct scheduler *sc = arg;
	const struct config *cfg = sc->d->cfg;
	int64_t now = (int64_t)time(NULL), at;
	struct live **pp, *l = NULL;
	char id[16];

	for (pp = &sc->live; *pp != NULL; pp = &(*pp)->next)
		if ((*pp)->s == s) {
			l = *pp;
			*pp = l->next;
			break;
		}
	sc->nlive--;
	sc->finished++;
	if (l != NULL) {
		l->next = sc->dead;
		sc->dead = l;
		event_active(sc->ev_reap, EV_TIMEOUT, 0);
	}

	if (session_was_shut_down(s)) {
		at = now; /* cut short by our own stop: first in line next time */
	} else if (!session_committed(s)) {
		at = now + cfg->collection.retry_base_s; /* nothing stored: soon */
	} else if (session_ok(s)) {
		at = scheduler_next_slot(now, session_meter_id(s), cfg->collection.window_start,
		                         cfg->collection.window_length, 3600);
	} else {
		/* the failures counter was stored with the batch; the same
		 * rule gives the delay */
		at = now +
		     scheduler_backoff(session_failures(s), cfg->collection.retry_base_s,
		                       cfg->collection.retry_max_s,
		                       cfg->collection.unreachable_retry_s) +
		     scheduler_jitter(session_meter_id(s), cfg->collection.retry_base_s / 4 + 1);
	}
	if (l != NULL && l->cmd_only)
		cmd_unlease(sc, session_meter_id(s));
	else
		due_add(sc, session_meter_id(s), at);

	/* Commands claimed for the meter that this session did not take:
	 * a meter not reached makes them wait (they expire with its error
	 * if it stays so), otherwise another session runs them. */
	struct command_queue *cq = command_get();
	if (cq != NULL && command_pending(cq, session_meter_id(s))) {
		if (!session_reached(s) && !session_was_shut_down(s)) {
			char why[300];
			snprintf(why, sizeof(why), "meter not reached: %s",
			         session_error(s)[0] ? session_error(s) : session_outcome(s));
			cmd_drop_jobs(session_meter_id(s), why, cfg->collection.retry_base_s);
		} else {
			due_flush(sc); /* give the lease back before taking it again */
			sched_command_exec(session_meter_id(s), session_serial(s), sc);
		}
	}

	uint32_t ic;
	if (session_rx_counter(s, &ic)) {
		char icv[16];
		snprintf(id, sizeof(id), "%d", session_meter_id(s));
		snprintf(icv, sizeof(icv), "%u", ic);
		const char *p[2] = {id, icv};
		pg_query(sc, rx_counter_sql, 2, p, NULL, NULL);
	}
	if (session_discovered_objects(s) != NULL) {
		snprintf(id, sizeof(id), "%d", session_meter_id(s));
		const char *p[2] = {id, session_discovered_objects(s)};
		pg_query(sc, discovery_save_objects_sql, 2, p, NULL, NULL);
	}
	if (session_discovered_layout(s) != NULL) {
		snprintf(id, sizeof(id), "%d", session_meter_id(s));
		const char *p[2] = {id, session_discovered_layout(s)};
		pg_query(sc, discovery_save_layout_sql, 2, p, NULL, NULL);
	}
}

static void
reapcb(evutil_socket_t fd, short what, void *arg)
{
	struct scheduler *sc = arg;
	(void)fd;
	(void)what;

	while (sc->dead != NULL) {
		struct live *l = sc->dead;
		sc->dead = l->next;
		session_free(l->s);
		free(l);
	}
}

/* Puts a new session on the live list and starts it. */
static void
live_start(struct scheduler *sc, struct live *l, struct session *s, int prio)
{
	l->s = s;
	l->prio = prio;
	l->next = sc->live;
	sc->live = l;
	sc->nlive++;
	sc->started++;
	session_start(s);
}

static bool
start_one(struct scheduler *sc)
{
	struct job *j = NULL;
	int prio;

	if (scheduler_command_hook != NULL && scheduler_command_hook(sc))
		return true;
	for (prio = SCHED_PRIO_COMMAND; prio < SCHED_NPRIO && j == NULL; prio++)
		j = job_pop(sc, prio);
	if (j == NULL)
		return false;
	prio--;
	struct live *l = calloc(1, sizeof(*l));
	struct session *s = l ? session_new(sc->d->base, sc->d->cfg, sc->store, sc->d->metrics,
	                                    j->tr, &j->m, sc->instance, session_done, sc)
	                      : NULL;
	if (s == NULL) {
		/* the meter's row cannot make a session (or no memory):
		 * try again later rather than hold the lease */
		log_meter(LOG_WARNING, j->m.serial, "cannot set up a session: retrying in %d s",
		          sc->d->cfg->collection.retry_max_s);
		if (j->m.commands_only) {
			cmd_drop_jobs(j->m.id, "cannot set up a session",
			              sc->d->cfg->collection.retry_base_s);
			cmd_unlease(sc, j->m.id);
		} else {
			due_add(sc, j->m.id,
			        (int64_t)time(NULL) + sc->d->cfg->collection.retry_max_s);
		}
		free(l);
		free(j);
		return true;
	}
	l->cmd_only = j->m.commands_only;
	free(j);
	live_start(sc, l, s, prio);
	return true;
}

/* ---- GPRS meters that connect in (gprs_inbound.c) ------------------------ */

/* Lease one GPRS meter by serial when it is due and nobody holds it, with
 * its invocation counters reserved as a claim does; the second column says
 * why not when no id comes back (the subquery sees the row as it was). */
static const char lease_serial_sql[] =
    "WITH c AS (UPDATE meter m SET leased_by = $1, lease_until = now() + make_interval(secs => "
    "  $3::int) WHERE m.serial = $2 AND m.enabled AND m.transport = 'gprs' "
    "  AND (m.next_due_at IS NULL OR m.next_due_at <= now()) "
    "  AND (m.lease_until IS NULL OR m.lease_until < now()) RETURNING m.id), "
    "k AS (UPDATE meter_key mk SET tx_counter = mk.tx_counter + $4::bigint FROM c "
    "  WHERE mk.meter_id = c.id AND mk.ek IS NOT NULL "
    "  AND mk.tx_counter + $4::bigint <= 4294967295 "
    "  RETURNING mk.meter_id, mk.tx_counter - $4::bigint AS tx0, mk.tx_counter AS tx1) "
    "SELECT coalesce(array_agg(c.id), '{}'), coalesce(array_agg(k.tx0), '{}'), "
    "  coalesce(array_agg(k.tx1), '{}'), "
    "  coalesce((SELECT CASE WHEN NOT m.enabled THEN 'disabled' "
    "     WHEN m.transport <> 'gprs' THEN 'not a gprs meter' "
    "     WHEN m.lease_until >= now() THEN 'busy' ELSE 'not due' END "
    "   FROM meter m WHERE m.serial = $2), 'unknown') "
    "FROM c LEFT JOIN k ON k.meter_id = c.id";

struct lease_req {
	scheduler_lease_fn cb;
	void *arg;
};

static void
lease_load_done(struct scheduler *sc, PGresult *r, void *arg)
{
	struct lease_req *q = arg;
	struct session_meter m;
	bool ondemand;

	if (r != NULL && PQntuples(r) == 1 && row_to_meter(r, 0, &m, &ondemand) == 0)
		q->cb(sc, &m, NULL, q->arg);
	else
		q->cb(sc, NULL, "cannot load the meter", q->arg);
	free(q);
}

static void
lease_serial_done(struct scheduler *sc, PGresult *r, void *arg)
{
	struct lease_req *q = arg;
	char days[16];
	const char *p[4];

	if (r == NULL || PQntuples(r) != 1) {
		q->cb(sc, NULL, "database", q->arg);
		free(q);
		return;
	}
	if (strcmp(PQgetvalue(r, 0, 0), "{}") == 0) {
		q->cb(sc, NULL, PQgetvalue(r, 0, 3), q->arg);
		free(q);
		return;
	}
	snprintf(days, sizeof(days), "%d", sc->d->cfg->collection.profile_backfill_days);
	p[0] = PQgetvalue(r, 0, 0);
	p[1] = PQgetvalue(r, 0, 1);
	p[2] = PQgetvalue(r, 0, 2);
	p[3] = days;
	pg_query(sc, load_sql, 4, p, lease_load_done, q);
}

void
scheduler_lease_serial(struct scheduler *sc, const char *serial, scheduler_lease_fn cb, void *arg)
{
	struct lease_req *q;
	char lease[16], win[16];
	const char *p[4] = {sc->instance, serial, lease, win};

	if (sc->draining || (q = malloc(sizeof(*q))) == NULL) {
		cb(sc, NULL, sc->draining ? "stopping" : "no memory", arg);
		return;
	}
	q->cb = cb;
	q->arg = arg;
	snprintf(lease, sizeof(lease), "%d", sc->d->cfg->collection.lease_seconds);
	snprintf(win, sizeof(win), "%d", SCHEDULER_IC_WINDOW);
	pg_query(sc, lease_serial_sql, 4, p, lease_serial_done, q);
}

/* Only a GPRS meter that is not leased: its next connection reads it. */
static const char due_now_sql[] =
    "UPDATE meter SET next_due_at = now() WHERE serial = $1 AND transport = 'gprs' AND enabled "
    "AND (next_due_at IS NULL OR next_due_at > now()) "
    "AND (lease_until IS NULL OR lease_until < now())";

void
scheduler_due_now(struct scheduler *sc, const char *serial)
{
	const char *p[1] = {serial};

	if (!sc->draining)
		pg_query(sc, due_now_sql, 1, p, NULL, NULL);
}

bool
scheduler_start_session(struct scheduler *sc, const struct session_meter *m,
                        const struct transport_ops *tr, const uint8_t *push, size_t push_len)
{
	struct live *l = calloc(1, sizeof(*l));
	struct session *s = l ? session_new(sc->d->base, sc->d->cfg, sc->store, sc->d->metrics, tr,
	                                    m, sc->instance, session_done, sc)
	                      : NULL;

	if (s == NULL) {
		free(l);
		due_add(sc, m->id, (int64_t)time(NULL) + sc->d->cfg->collection.retry_base_s);
		return false;
	}
	if (push != NULL)
		(void)session_add_push(s, push, push_len);
	live_start(sc, l, s, SCHED_PRIO_ONDEMAND);
	return true;
}

static void
tickcb(evutil_socket_t fd, short what, void *arg)
{
	struct scheduler *sc = arg;
	const struct config *cfg = sc->d->cfg;
	struct timespec ts;
	int64_t now_ms, now;
	size_t waiting = 0;
	(void)fd;
	(void)what;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	now_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
	now = (int64_t)time(NULL);
	if (sc->pg == NULL && !sc->draining && now >= sc->pg_retry_at)
		pg_connect(sc);

	/* The command module starts after us: offer it our sessions once it
	 * runs, and ask again for meters another instance held. */
	struct command_queue *cq = command_get();
	if (cq != NULL && !sc->exec_set) {
		command_set_executor(cq, sched_command_exec, sc);
		sc->exec_set = true;
	}
	if (cq != NULL && sc->ncmd_retry > 0 && now_ms >= sc->cmd_retry_at && !sc->draining) {
		int32_t retry[SCHED_CMD_RETRY];
		size_t n = sc->ncmd_retry;
		memcpy(retry, sc->cmd_retry, n * sizeof(retry[0]));
		sc->ncmd_retry = 0;
		sc->cmd_retry_at = now_ms + 1000;
		for (size_t i = 0; i < n; i++)
			if (command_pending(cq, retry[i]))
				sched_command_exec(retry[i], "", sc);
	}

	if (cq != NULL && sc->exec_set && !sc->draining && sc->pg != NULL && !sc->gprs_cmd_busy &&
	    now_ms >= sc->gprs_cmd_at) {
		sc->gprs_cmd_at = now_ms + 1000;
		gprs_cmd_poll(sc);
	}

	bool behind = store_is_behind(sc->store);
	metric_set(sc->m_backpressure, behind ? 1 : 0);
	if (!sc->draining && !behind) {
		/* a slot is a meter connection: a session whose batch only
		 * waits for the store's commit no longer holds one */
		size_t busy = 0;
		for (struct live *l = sc->live; l != NULL; l = l->next)
			if (session_state(l->s) < SESSION_STORE)
				busy++;
		while (busy < (size_t)cfg->collection.concurrency && start_one(sc))
			busy++;
		/* Commands do not wait for a collection round to free a slot:
		 * they have a reserve of their own on top (start_one takes
		 * command priority first). */
		size_t reserve = (size_t)cfg->collection.concurrency / 2;
		if (reserve < SCHED_CMD_RESERVE)
			reserve = SCHED_CMD_RESERVE;
		while (sc->njobs[SCHED_PRIO_COMMAND] > 0 &&
		       busy < (size_t)cfg->collection.concurrency + reserve && start_one(sc))
			busy++;
	}
	for (int p = 0; p < SCHED_NPRIO; p++)
		waiting += sc->njobs[p];
	if (!sc->draining && !behind && !sc->claiming && sc->pg != NULL &&
	    waiting < (size_t)cfg->collection.lease_batch / 2 + 1 &&
	    (sc->ondemand_wake || now_ms >= sc->next_claim_ms)) {
		sc->ondemand_wake = false;
		claim(sc);
	}
	if (sc->ndue >= SCHED_DUE_FLUSH || (sc->ndue > 0 && !sc->q_busy))
		due_flush(sc);
	if (now >= sc->next_renew && sc->pg != NULL) {
		char secs[16];
		snprintf(secs, sizeof(secs), "%d", cfg->collection.lease_seconds);
		const char *p[2] = {sc->instance, secs};
		pg_query(sc, renew_sql, 2, p, NULL, NULL);
		sc->next_renew = now + cfg->collection.lease_seconds / 3;
	}
}

/* ---- metrics and health ------------------------------------------------------ */

static void
collect(struct metrics *reg, void *arg)
{
	struct scheduler *sc = arg;
	static const char *const names[SCHED_NPRIO] = {"command", "ondemand", "schedule"};
	(void)reg;

	for (int p = 0; p < SCHED_NPRIO; p++)
		metric_set(sc->m_queue, (double)sc->njobs[p], names[p]);
	metric_set(sc->m_active, (double)sc->nlive);
}

static int
health(void *arg, char *detail, size_t len)
{
	struct scheduler *sc = arg;
	if (sc->pg == NULL) {
		snprintf(detail, len, "scheduler: no database connection");
		return -1;
	}
	snprintf(detail, len, "%zu sessions, %" PRIu64 " done", sc->nlive, sc->finished);
	return 0;
}

/* ---- module ----------------------------------------------------------------- */

struct scheduler *
scheduler_get(void)
{
	return the_scheduler;
}

size_t
scheduler_active(const struct scheduler *sc)
{
	return sc->nlive;
}

size_t
scheduler_waiting(const struct scheduler *sc, int prio)
{
	return prio >= 0 && prio < SCHED_NPRIO ? sc->njobs[prio] : 0;
}

static int
sched_start(struct ammd *d)
{
	struct scheduler *sc;
	struct timeval tv = {0, SCHED_TICK_MS * 1000};

	if ((sc = calloc(1, sizeof(*sc))) == NULL) {
		log_warn("scheduler");
		return -1;
	}
	sc->d = d;
	snprintf(sc->instance, sizeof(sc->instance), "%s", d->cfg->daemon.instance_id);
	if ((sc->store = d->store) == NULL) {
		log_warnx("scheduler: the store module must start first");
		free(sc);
		return -1;
	}
	sc->ev_tick = event_new(d->base, -1, EV_PERSIST, tickcb, sc);
	sc->ev_reap = event_new(d->base, -1, 0, reapcb, sc);
	if (sc->ev_tick == NULL || sc->ev_reap == NULL || event_add(sc->ev_tick, &tv) != 0) {
		log_warnx("scheduler: event setup failed");
		return -1;
	}
	pg_connect(sc);
	sc->m_queue =
	    metrics_gauge(d->metrics, "ammd_scheduler_queue",
	                  "Leased meters waiting for a session slot, by priority.", "priority");
	sc->m_active = metrics_gauge(d->metrics, "ammd_sessions_active", "Sessions running.", NULL);
	sc->m_claimed = metrics_counter(d->metrics, "ammd_meters_leased_total",
	                                "Meters leased from the database.", NULL);
	sc->m_backpressure =
	    metrics_gauge(d->metrics, "ammd_scheduler_backpressure",
	                  "1 while the store is behind and no session starts.", NULL);
	metrics_collector_add(d->metrics, collect, sc);
	if (d->http != NULL)
		http_health_add(d->http, "scheduler", health, sc);
	the_scheduler = sc;
	log_info("scheduler: instance %s, concurrency %d, leases of %d meters", sc->instance,
	         d->cfg->collection.concurrency, d->cfg->collection.lease_batch);
	return 0;
}

static void
sched_reload(struct ammd *d, const struct config *old, const struct config *cfg)
{
	struct scheduler *sc = the_scheduler;
	(void)d;
	(void)old;

	if (sc == NULL)
		return;
	for (struct live *l = sc->live; l != NULL; l = l->next)
		session_set_config(l->s, cfg);
}

static void
sched_drain(struct ammd *d)
{
	struct scheduler *sc = the_scheduler;
	(void)d;

	if (sc == NULL)
		return;
	sc->draining = true;
	log_info("scheduler: draining: %zu sessions to finish, %zu leased meters left for "
	         "the next start",
	         sc->nlive, sc->njobs[0] + sc->njobs[1] + sc->njobs[2]);
	/* sessions end their tasks after the request under way */
	for (struct live *l = sc->live; l != NULL; l = l->next)
		session_shutdown(l->s);
}

static bool
sched_drained(struct ammd *d)
{
	struct scheduler *sc = the_scheduler;
	(void)d;

	if (sc == NULL)
		return true;
	/* a session is over once its batch is committed, so the store has
	 * nothing of ours left when the last one is */
	if (sc->nlive > 0)
		return false;
	if (sc->ndue > 0 && !sc->due_busy)
		due_flush(sc);
	return sc->q_head == NULL || sc->pg == NULL;
}

static void
sched_stop(struct ammd *d)
{
	struct scheduler *sc = the_scheduler;
	(void)d;

	if (sc == NULL)
		return;
	/* The loop has ended: finish on a blocking connection.  Due times
	 * first, then give back every lease still held, so that the next
	 * start (ours or another instance's) reads those meters at once. */
	if (sc->pg != NULL) {
		PGresult *r;
		PQsetnonblocking(sc->pg, 0);
		while ((r = PQgetResult(sc->pg)) != NULL)
			PQclear(r);
		sc->due_busy = false;
		if (sc->ndue > 0) {
			sc->q_busy = true; /* keep due_flush from sending through the queue */
			char *ids = malloc(sc->ndue * 12 + 3), *dues = malloc(sc->ndue * 22 + 3);
			if (ids && dues) {
				size_t li = 0, ld = 0;
				ids[li++] = '{';
				dues[ld++] = '{';
				for (size_t i = 0; i < sc->ndue; i++) {
					li += (size_t)sprintf(ids + li, "%s%d", i ? "," : "",
					                      sc->due[i].id);
					ld += (size_t)sprintf(dues + ld, "%s%" PRId64, i ? "," : "",
					                      sc->due[i].at);
				}
				strcpy(ids + li, "}");
				strcpy(dues + ld, "}");
				const char *p[3] = {ids, dues, sc->instance};
				PQclear(PQexecParams(sc->pg, due_sql, 3, NULL, p, NULL, NULL, 0));
			}
			free(ids);
			free(dues);
		}
		const char *p[1] = {sc->instance};
		r = PQexecParams(sc->pg, release_sql, 1, NULL, p, NULL, NULL, 0);
		if (PQresultStatus(r) == PGRES_COMMAND_OK)
			log_info("scheduler: %s leases given back", PQcmdTuples(r));
		PQclear(r);
	}
	if (d->http != NULL)
		http_health_remove(d->http, "scheduler");
	for (struct live *l = sc->live, *n; l != NULL; l = n) {
		n = l->next;
		session_free(l->s);
		free(l);
	}
	reapcb(-1, 0, sc);
	for (int p = 0; p < SCHED_NPRIO; p++) {
		struct job *j;
		while ((j = job_pop(sc, p)) != NULL)
			free(j);
	}
	while (sc->q_head != NULL) {
		struct pgq *q = sc->q_head;
		sc->q_head = q->next;
		pgq_free(q);
	}
	if (sc->ev_pg)
		event_free(sc->ev_pg);
	if (sc->pg)
		PQfinish(sc->pg);
	event_free(sc->ev_tick);
	event_free(sc->ev_reap);
	free(sc->due);
	log_info("scheduler: %" PRIu64 " sessions run", sc->finished);
	free(sc);
	the_scheduler = NULL;
}

const struct ammd_module scheduler_module = {
    .name = "scheduler",
    .start = sched_start,
    .reload = sched_reload,
    .drain = sched_drain,
    .drained = sched_drained,
    .stop = sched_stop,
};
