/*
 * command.c: the command queue module of ammd (see command.h for what it
 * does and how the scheduler and sessions call it).  It owns one
 * non-blocking libpq connection, LISTENs for new commands, claims them
 * under the fleet-wide caps, hands claimed jobs to the executor, and writes
 * every outcome together with its MQTT result message in one statement,
 * so a crash can neither lose a result nor publish one that was not
 * stored.
 */
#include "command.h"

#include <errno.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

#include <event2/event.h>
#include <libpq-fe.h>

#include "ammd.h"
#include "config.h"
#include "db.h"
#include "log.h"
#include "message.h"
#include "meter_error.h"
#include "metrics.h"
#include "publish.h"

#define CQ_TICK_MS      1000
#define CQ_MAX_PARAMS   9
#define CQ_CLAIM_BATCH  64
#define CQ_SLOT_WAIT_S  20 /* longest an association waits for an action slot */
#define CQ_SLOT_RETRY_S 5  /* then the command is queued again after this */
#define CQ_MAX_WOKEN    4096
#define CQ_ALWAYS_ON    "{tcpip,mbus,modbus}"

extern char **environ;

struct cq_stmt {
	struct cq_stmt *next;
	const char *sql;
	int n;
	char *params[CQ_MAX_PARAMS];
	void (*cb)(struct command_queue *q, PGresult *res, void *arg);
	void *arg;
};

/* A checkpoint waiting for its command's action slot. */
struct cq_ckpt {
	struct command_queue *q;
	struct command_job *job;
	char *progress;  /* NULL: keep the stored one */
	int64_t give_up; /* s: then the job goes back to the queue */
	bool waited;
	struct event *ev; /* asks again a second later */
	void (*done)(void *arg, bool ok);
	void *arg;
};

struct command_queue {
	struct ammd *d;
	char instance[CONFIG_STR_MAX];
	PGconn *pg;
	struct event *ev_pg;
	struct event *ev_tick;
	/* An immediate pass (a NOTIFY, a full claim batch) runs through
	 * ev_now: activating the persistent ev_tick by hand would push its
	 * next timeout a period on, so the once-a-second work (expiry, caps,
	 * the wake-up pass) would skip seconds under a stream of NOTIFYs. */
	struct event *ev_now;
	int64_t next_wake; /* when the GPRS wake-up pass runs next */
	struct cq_stmt *head, *tail;
	bool busy;
	PGresult *res;
	int64_t retry_at;

	bool claim_wanted, claiming, expiring;
	command_executor_fn exec;
	void *exec_arg;
	struct command_job *waiting, *waiting_tail;
	size_t nwaiting;
	int64_t woken[CQ_MAX_WOKEN]; /* GPRS commands whose wake-up ran */
	size_t nwoken;
	bool draining;
	bool stale_done;    /* a killed previous run's commands taken back */
	int64_t last_slow;  /* second of the last expiry/renew pass */
	int64_t last_renew; /* second of the last lease renewal */

	struct metric *m_done, *m_latency, *m_claimed;
};

static struct command_queue *the_queue;

/* [commands] lease_seconds: how long a running command stays ours
 * without a renewal; renewed every third of it. */
static int
cq_lease_s(const struct command_queue *q)
{
	int s = q->d->cfg->commands.lease_seconds;
	return s >= 3 ? s : 60;
}

struct command_queue *
command_get(void)
{
	return the_queue;
}

static int64_t
now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- the statement queue ------------------------------------------------------ */

static void cq_send_next(struct command_queue *q);

static void
stmt_free(struct cq_stmt *s)
{
	for (int i = 0; i < s->n; i++)
		free(s->params[i]);
	free(s);
}

static void
cq_lost(struct command_queue *q, const char *why)
{
	log_warnx("commands: database connection lost: %s", why);
	if (q->ev_pg) {
		event_free(q->ev_pg);
		q->ev_pg = NULL;
	}
	if (q->pg) {
		PQfinish(q->pg);
		q->pg = NULL;
	}
	if (q->res) {
		PQclear(q->res);
		q->res = NULL;
	}
	while (q->head) {
		struct cq_stmt *s = q->head;
		q->head = s->next;
		if (s->cb)
			s->cb(q, NULL, s->arg);
		stmt_free(s);
	}
	q->tail = NULL;
	q->busy = false;
	q->retry_at = (int64_t)time(NULL) + 2;
}

static void
cq_pgcb(evutil_socket_t fd, short what, void *arg)
{
	struct command_queue *q = arg;
	PGnotify *nt;
	(void)fd;

	if (what & EV_WRITE) {
		int f = PQflush(q->pg);
		if (f < 0) {
			cq_lost(q, PQerrorMessage(q->pg));
			return;
		}
		if (f == 0) {
			event_del(q->ev_pg);
			event_assign(q->ev_pg, q->d->base, PQsocket(q->pg), EV_READ | EV_PERSIST,
			             cq_pgcb, q);
			event_add(q->ev_pg, NULL);
		}
		return;
	}
	if (!PQconsumeInput(q->pg)) {
		cq_lost(q, PQerrorMessage(q->pg));
		return;
	}
	while ((nt = PQnotifies(q->pg)) != NULL) {
		/* A new command: claim at once (TCP meters start within one
		 * round trip), the payload is only a hint. */
		q->claim_wanted = true;
		PQfreemem(nt);
	}
	while (q->busy && !PQisBusy(q->pg)) {
		PGresult *r = PQgetResult(q->pg);
		if (r != NULL) {
			if (q->res == NULL)
				q->res = r;
			else
				PQclear(r);
			continue;
		}
		struct cq_stmt *s = q->head;
		q->head = s->next;
		if (q->head == NULL)
			q->tail = NULL;
		q->busy = false;
		PGresult *res = q->res;
		q->res = NULL;
		ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
		if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
			log_warnx("commands: statement failed: %s",
			          res ? PQresultErrorMessage(res) : PQerrorMessage(q->pg));
			if (s->cb)
				s->cb(q, NULL, s->arg);
		} else if (s->cb) {
			s->cb(q, res, s->arg);
		}
		PQclear(res);
		stmt_free(s);
		cq_send_next(q);
	}
	if (q->claim_wanted && !q->claiming && !q->busy && q->pg)
		event_active(q->ev_now, EV_TIMEOUT, 0);
}

static void
cq_send_next(struct command_queue *q)
{
	struct cq_stmt *s = q->head;

	if (q->busy || s == NULL || q->pg == NULL)
		return;
	if (!PQsendQueryParams(q->pg, s->sql, s->n, NULL, (const char *const *)s->params, NULL,
	                       NULL, 0)) {
		cq_lost(q, PQerrorMessage(q->pg));
		return;
	}
	q->busy = true;
	if (PQflush(q->pg) == 1) {
		event_del(q->ev_pg);
		event_assign(q->ev_pg, q->d->base, PQsocket(q->pg), EV_WRITE | EV_PERSIST, cq_pgcb,
		             q);
		event_add(q->ev_pg, NULL);
	}
}

/* Queue a statement; params are copied (NULL entries are SQL NULL). */
static void
cq_query(struct command_queue *q, const char *sql, int n, const char *const *params,
         void (*cb)(struct command_queue *, PGresult *, void *), void *arg)
{
	struct cq_stmt *s;

	if (q->pg == NULL || n > CQ_MAX_PARAMS || (s = calloc(1, sizeof(*s))) == NULL) {
		if (cb)
			cb(q, NULL, arg);
		return;
	}
	s->sql = sql;
	s->n = n;
	for (int i = 0; i < n; i++)
		s->params[i] = params[i] ? strdup(params[i]) : NULL;
	s->cb = cb;
	s->arg = arg;
	if (q->tail)
		q->tail->next = s;
	else
		q->head = s;
	q->tail = s;
	cq_send_next(q);
}

static int
cq_connect(struct command_queue *q)
{
	char err[DB_ERR_MAX];
	PGresult *r;

	q->pg = db_connect(q->d->cfg->database.dsn, "ammd-commands", err, sizeof(err));
	if (q->pg == NULL) {
		log_warnx("commands: database: %s", err);
		q->retry_at = (int64_t)time(NULL) + 5;
		return -1;
	}
	r = PQexec(q->pg, "LISTEN ammd_command");
	PQclear(r);
	if (!q->stale_done) {
		/* Commands running in our name before we claimed anything are a
		 * previous run's that was killed: nobody else uses our instance
		 * id, so end their leases now instead of waiting for them
		 * ([commands] lease_seconds).
		 * The claim queues them again (their checkpoint kept), the
		 * expiry pass fails those with no attempt left. */
		const char *p[1] = {q->instance};
		r = PQexecParams(q->pg,
		                 "UPDATE command SET lease_until = now() - interval '1 second' "
		                 "WHERE state = 'running' AND claimed_by = $1",
		                 1, NULL, p, NULL, NULL, 0);
		if (PQresultStatus(r) == PGRES_COMMAND_OK) {
			q->stale_done = true;
			if (atoi(PQcmdTuples(r)) > 0)
				log_warnx("commands: %s commands of a previous run of instance %s "
				          "taken back",
				          PQcmdTuples(r), q->instance);
		}
		PQclear(r);
	}
	PQsetnonblocking(q->pg, 1);
	q->ev_pg = event_new(q->d->base, PQsocket(q->pg), EV_READ | EV_PERSIST, cq_pgcb, q);
	if (q->ev_pg == NULL || event_add(q->ev_pg, NULL) != 0) {
		PQfinish(q->pg);
		q->pg = NULL;
		return -1;
	}
	q->claim_wanted = true; /* whatever was queued while we were away */
	return 0;
}

/* ---- outcomes with their MQTT message ----------------------------------------------- */

/* Updates the command (only from `from_state`, and for running ones only
 * ours) and writes the outbox row in one statement. */
static const char finish_sql[] =
    "WITH u AS (UPDATE command SET state = $2::command_state, result = $3::jsonb, "
    "  error = NULLIF($4, ''), finished_at = now(), lease_until = NULL "
    "  WHERE id = $1::bigint AND state = $5::command_state "
    "    AND ($5 <> 'running' OR claimed_by = $6 OR lease_until < now()) RETURNING id) "
    "INSERT INTO outbox (topic, payload, qos, retain) "
    "SELECT $7, decode($8, 'hex'), $9::smallint, false FROM u";

static enum message_command_status
status_of(const char *state)
{
	static const char *const names[] = {"",       "queued",  "running",  "succeeded",
	                                    "failed", "expired", "cancelled"};
	for (int i = 1; i < 7; i++)
		if (strcmp(state, names[i]) == 0)
			return (enum message_command_status)i;
	return MESSAGE_CMD_UNKNOWN;
}

static void
finish_done(struct command_queue *q, PGresult *res, void *arg)
{
	(void)q;
	(void)arg;
	(void)res; /* failures are logged by the statement queue */
}

/* Build the result message and queue the update. */
static void
cq_outcome(struct command_queue *q, int64_t id, const char *serial, const char *kind,
           const char *from, const char *to, const char *result, const char *error,
           const char *request_id)
{
	struct message msg = {0};
	struct message_command_result mr = {
	    .id = id,
	    .meter = serial,
	    .kind = kind,
	    .status = status_of(to),
	    .result_json = result,
	    .error = error,
	    .finished_at = now_ms(),
	    .request_id = request_id,
	};
	char sid[24], qos[8], *hex = NULL;

	if (message_command_result(q->d->cfg, &mr, &msg) != 0) {
		log_meter(LOG_WARNING, serial, "command %lld: no result message (bad serial?)",
		          (long long)id);
		snprintf(msg.topic, sizeof(msg.topic), "ammd/v1/command/%lld/result",
		         (long long)id);
	}
	if ((hex = malloc(msg.len * 2 + 1)) == NULL) {
		message_clear(&msg);
		return;
	}
	for (size_t i = 0; i < msg.len; i++)
		snprintf(hex + 2 * i, 3, "%02x", msg.payload[i]);
	hex[msg.len * 2] = '\0';
	snprintf(sid, sizeof(sid), "%lld", (long long)id);
	snprintf(qos, sizeof(qos), "%d", msg.qos);
	const char *p[9] = {sid,
	                    to,
	                    result && *result ? result : NULL,
	                    error ? error : "",
	                    from,
	                    q->instance,
	                    msg.topic,
	                    hex,
	                    qos};
	cq_query(q, finish_sql, 9, p, finish_done, NULL);
	free(hex);
	message_clear(&msg);
}

static void
job_free(struct command_job *j)
{
	if (j) {
		free(j->progress);
		free(j);
	}
}

void
command_finish(struct command_queue *q, struct command_job *job, bool ok, const char *result_json,
               const char *error)
{
	const char *kind = cmdk_name(job->kind);
	log_meter(ok ? LOG_INFO : LOG_NOTICE, job->serial, "command %lld %s %s%s%s",
	          (long long)job->id, kind, ok ? "succeeded" : "failed", ok ? "" : ": ",
	          ok ? "" : error);
	metric_inc(q->m_done, kind, ok ? "succeeded" : "failed");
	metric_observe(q->m_latency, (double)(now_ms() - job->created_ms) / 1000.0, kind);
	cq_outcome(q, job->id, job->serial, kind, "running", ok ? "succeeded" : "failed",
	           result_json, ok ? "" : error, job->request_id);
	job_free(job);
}

static const char release_sql[] =
    "UPDATE command SET state = 'queued', claimed_by = NULL, lease_until = NULL, error = $3 "
    "WHERE id = $1::bigint AND state = 'running' AND claimed_by = $2";

static const char postpone_sql[] =
    "UPDATE command SET state = 'queued', claimed_by = NULL, lease_until = NULL, error = $3, "
    "  attempts = greatest(attempts - 1, 0), "
    "  not_before = least(now() + make_interval(secs => $4::int), "
    "    expires_at - interval '1 microsecond') "
    "WHERE id = $1::bigint AND state = 'running' AND claimed_by = $2";

void
command_release(struct command_queue *q, struct command_job *job, const char *why)
{
	char sid[24];
	snprintf(sid, sizeof(sid), "%lld", (long long)job->id);
	if (job->no_slot) {
		/* Nothing was sent: the kind's minute was full.  Queued
		 * again without the attempt counted; the claim takes it
		 * when the cap lets it. */
		char delay[16], msg[160];
		snprintf(delay, sizeof(delay), "%d", CQ_SLOT_RETRY_S);
		snprintf(msg, sizeof(msg),
		         "rate cap of %s: no action slot within %d s, queued again",
		         cmdk_name(job->kind), CQ_SLOT_WAIT_S);
		log_meter(LOG_INFO, job->serial, "command %lld given back: %s", (long long)job->id,
		          msg);
		const char *pp[4] = {sid, q->instance, msg, delay};
		cq_query(q, postpone_sql, 4, pp, finish_done, NULL);
		job_free(job);
		return;
	}
	log_meter(LOG_INFO, job->serial, "command %lld given back: %s", (long long)job->id, why);
	const char *p[3] = {sid, q->instance, why};
	/* The last attempt given back is the command's end: failed, with its
	 * result message. */
	if (job->attempts >= job->max_attempts)
		cq_outcome(q, job->id, job->serial, cmdk_name(job->kind), "running", "failed", NULL,
		           why, job->request_id);
	else
		cq_query(q, release_sql, 3, p, finish_done, NULL);
	job_free(job);
}

void
command_postpone(struct command_queue *q, struct command_job *job, const char *why, int delay_s)
{
	char sid[24], delay[16];
	snprintf(sid, sizeof(sid), "%lld", (long long)job->id);
	snprintf(delay, sizeof(delay), "%d", delay_s > 0 ? delay_s : 0);
	log_meter(LOG_INFO, job->serial, "command %lld waits %d s: meter not reached: %s",
	          (long long)job->id, delay_s, why);
	const char *p[4] = {sid, q->instance, why, delay};
	cq_query(q, postpone_sql, 4, p, finish_done, NULL);
	job_free(job);
}

bool
command_pending(const struct command_queue *q, int32_t meter_id)
{
	for (const struct command_job *j = q->waiting; j != NULL; j = j->next)
		if (j->meter_id == meter_id)
			return true;
	return false;
}

/*
 * The checkpoint before a run's first state-changing request: stores the
 * progress and takes the action slot of the kind's cap group in one
 * statement (sql/0005: the cap is counted on the actions sent, fleet-wide,
 * under the group's advisory lock).  1: go; 0: the group's sliding minute
 * is full; -1: the command is no longer ours.  A full minute is asked
 * again every second for at most CQ_SLOT_WAIT_S, the association kept
 * open meanwhile; after that the job goes back to the queue (no_slot,
 * see command_release()) rather than holding its meter.  Claims reserve
 * slots, so in normal operation the first answer is 1.
 */
static const char act_sql[] =
    "SELECT ammd_command_act($1::bigint, $2, $3::jsonb, $4, $5::text[], $6::integer)";

static void ckpt_ask(struct command_queue *q, struct cq_ckpt *c);

static void
ckpt_end(struct cq_ckpt *c, bool ok)
{
	if (c->ev)
		event_free(c->ev);
	free(c->progress);
	c->done(c->arg, ok);
	free(c);
}

static void
ckpt_timer(evutil_socket_t fd, short what, void *arg)
{
	struct cq_ckpt *c = arg;
	(void)fd;
	(void)what;
	ckpt_ask(c->q, c);
}

static void
ckpt_done(struct command_queue *q, PGresult *res, void *arg)
{
	struct cq_ckpt *c = arg;
	int v = res != NULL && PQntuples(res) == 1 ? atoi(PQgetvalue(res, 0, 0)) : -1;

	if (v != 0) {
		if (v == 1 && c->waited)
			log_meter(LOG_INFO, c->job->serial, "command %lld: action slot taken",
			          (long long)c->job->id);
		ckpt_end(c, v == 1);
		return;
	}
	if (!c->waited)
		log_meter(LOG_INFO, c->job->serial,
		          "command %lld: rate cap of %s reached this minute: waiting for a slot",
		          (long long)c->job->id, cmdk_cap_group(c->job->kind));
	c->waited = true;
	struct timeval tv = {1, 0};
	if ((int64_t)time(NULL) >= c->give_up || q->draining ||
	    (c->ev == NULL && (c->ev = evtimer_new(q->d->base, ckpt_timer, c)) == NULL) ||
	    evtimer_add(c->ev, &tv) != 0) {
		c->job->no_slot = true;
		ckpt_end(c, false);
	}
}

static void
ckpt_ask(struct command_queue *q, struct cq_ckpt *c)
{
	const struct config *cfg = q->d->cfg;
	const char *grp = cmdk_cap_group(c->job->kind);
	char sid[24], kinds[512] = "{", cap[16];
	int mincap = -1;

	/* the group's kinds and its cap, as the claim computes them */
	for (int k = 0; k < CMDK_NKINDS; k++) {
		if (strcmp(cmdk_cap_group(k), grp) != 0)
			continue;
		int ck = cmdk_cap_per_minute(cfg, k);
		if (mincap < 0 || ck < mincap)
			mincap = ck;
		snprintf(kinds + strlen(kinds), sizeof(kinds) - strlen(kinds), "%s%s",
		         kinds[1] ? "," : "", cmdk_name(k));
	}
	strcat(kinds, "}");
	/* A cap of 0 refuses the kind at the claim; should one have been
	 * claimed all the same, it gets no slot here either. */
	snprintf(cap, sizeof(cap), "%d", mincap > 0 ? mincap : 0);
	snprintf(sid, sizeof(sid), "%lld", (long long)c->job->id);
	if (mincap <= 0) {
		c->job->no_slot = true;
		ckpt_end(c, false);
		return;
	}
	const char *p[6] = {sid, q->instance, c->progress, grp, kinds, cap};
	cq_query(q, act_sql, 6, p, ckpt_done, c);
}

void
command_checkpoint(struct command_queue *q, struct command_job *job, const char *progress,
                   void (*done)(void *arg, bool ok), void *arg)
{
	struct cq_ckpt *c = calloc(1, sizeof(*c));
	if (c == NULL || (progress != NULL && (c->progress = strdup(progress)) == NULL)) {
		free(c);
		done(arg, false);
		return;
	}
	c->q = q;
	c->job = job;
	c->done = done;
	c->arg = arg;
	c->give_up = (int64_t)time(NULL) + CQ_SLOT_WAIT_S;
	if (progress != NULL) {
		free(job->progress);
		job->progress = strdup(progress);
	}
	ckpt_ask(q, c);
}

/* ---- claims ----------------------------------------------------------------------------- */

static const char claim_sql[] =
    "SELECT c.id, c.meter_id, m.serial, m.transport, c.kind, c.params::text, "
    "  coalesce(c.progress::text, ''), c.attempts, "
    "  (extract(epoch FROM c.created_at) * 1000)::bigint, coalesce(c.request_id, ''), "
    "  c.max_attempts "
    "FROM ammd_command_claim($1, $2::text[], $3::text[], $4::integer[], $5::integer, "
    "  make_interval(secs => $6::int), $7::integer[], $8::text[]) c "
    "JOIN meter m ON m.id = c.meter_id ORDER BY c.id";

static void
claim_done(struct command_queue *q, PGresult *res, void *arg)
{
	(void)arg;
	q->claiming = false;
	if (res == NULL)
		return;
	int n = PQntuples(res);
	metric_add(q->m_claimed, (double)n);
	if (n == CQ_CLAIM_BATCH) {
		/* there may be more: claim again now, not at the next tick */
		q->claim_wanted = true;
		event_active(q->ev_now, EV_TIMEOUT, 0);
	}
	for (int i = 0; i < n; i++) {
		struct command_job *j = calloc(1, sizeof(*j));
		char err[256];
		if (j == NULL)
			break;
		j->id = strtoll(PQgetvalue(res, i, 0), NULL, 10);
		j->meter_id = (int32_t)strtol(PQgetvalue(res, i, 1), NULL, 10);
		snprintf(j->serial, sizeof(j->serial), "%s", PQgetvalue(res, i, 2));
		snprintf(j->transport, sizeof(j->transport), "%s", PQgetvalue(res, i, 3));
		j->kind = cmdk_by_name(PQgetvalue(res, i, 4));
		j->attempts = (int)strtol(PQgetvalue(res, i, 7), NULL, 10);
		j->created_ms = strtoll(PQgetvalue(res, i, 8), NULL, 10);
		snprintf(j->request_id, sizeof(j->request_id), "%s", PQgetvalue(res, i, 9));
		j->max_attempts = (int)strtol(PQgetvalue(res, i, 10), NULL, 10);
		if (*PQgetvalue(res, i, 6))
			j->progress = strdup(PQgetvalue(res, i, 6));
		/* A plain SQL insert is checked here, before anything is sent. */
		if (cmdk_parse(j->kind, PQgetvalue(res, i, 5), (int64_t)time(NULL), &j->params, err,
		               sizeof(err)) != 0) {
			command_finish(q, j, false, NULL, err);
			continue;
		}
		log_meter(LOG_INFO, j->serial, "command %lld %s claimed (attempt %d)",
		          (long long)j->id, cmdk_name(j->kind), j->attempts);
		if (q->waiting_tail)
			q->waiting_tail->next = j;
		else
			q->waiting = j;
		q->waiting_tail = j;
		q->nwaiting++;
	}
	/* One call per meter, in claim order. */
	for (struct command_job *j = q->waiting; j != NULL && q->exec != NULL; j = j->next) {
		bool first = true;
		for (struct command_job *k = q->waiting; k != j; k = k->next)
			first &= k->meter_id != j->meter_id;
		if (first)
			q->exec(j->meter_id, j->serial, q->exec_arg);
	}
}

static void
cq_claim(struct command_queue *q, const char *meters, const char *transports)
{
	const struct config *cfg = q->d->cfg;
	char kinds[512] = "{", groups[512] = "{", caps[256] = "{", n[16], lease[16];

	for (int k = 0; k < CMDK_NKINDS; k++) {
		snprintf(kinds + strlen(kinds), sizeof(kinds) - strlen(kinds), "%s%s", k ? "," : "",
		         cmdk_name(k));
		snprintf(groups + strlen(groups), sizeof(groups) - strlen(groups), "%s%s",
		         k ? "," : "", cmdk_cap_group(k));
		snprintf(caps + strlen(caps), sizeof(caps) - strlen(caps), "%s%d", k ? "," : "",
		         cmdk_cap_per_minute(cfg, k));
	}
	strcat(kinds, "}");
	strcat(groups, "}");
	strcat(caps, "}");
	snprintf(n, sizeof(n), "%d", CQ_CLAIM_BATCH);
	snprintf(lease, sizeof(lease), "%d", cq_lease_s(q));
	const char *p[8] = {q->instance, kinds, groups, caps, n, lease, meters, transports};
	q->claiming = true;
	cq_query(q, claim_sql, 8, p, claim_done, NULL);
}

void
command_claim_meter(struct command_queue *q, int32_t meter_id)
{
	char m[24];
	snprintf(m, sizeof(m), "{%d}", meter_id);
	cq_claim(q, m, NULL);
}

size_t
command_take(struct command_queue *q, int32_t meter_id, struct command_job **jobs, size_t max)
{
	size_t n = 0;
	struct command_job **pp = &q->waiting, *prev = NULL;
	while (*pp != NULL && n < max) {
		struct command_job *j = *pp;
		if (j->meter_id != meter_id) {
			prev = j;
			pp = &j->next;
			continue;
		}
		*pp = j->next;
		if (q->waiting_tail == j)
			q->waiting_tail = prev;
		j->next = NULL;
		jobs[n++] = j;
		q->nwaiting--;
	}
	return n;
}

size_t
command_waiting(const struct command_queue *q)
{
	return q->nwaiting;
}

void
command_set_executor(struct command_queue *q, command_executor_fn fn, void *arg)
{
	q->exec = fn;
	q->exec_arg = arg;
	q->claim_wanted = true;
}

/* ---- expiry ------------------------------------------------------------------------------ */

static const char expire_sql[] =
    "SELECT c.id, m.serial, c.kind, c.state, coalesce(c.request_id, ''), "
    "  CASE WHEN c.state = 'running' THEN "
    "    format('abandoned: ammd instance %s stopped during attempt %s of %s', c.claimed_by, "
    "      c.attempts, c.max_attempts) "
    "  ELSE format('expired at %s without being executed: %s', "
    "    to_char(c.expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), "
    "    CASE WHEN m.reachability = 'unreachable' OR m.last_error IS NOT NULL "
    "      THEN 'meter unreachable (' || coalesce(m.last_error, 'no answer') || ')' "
    "    WHEN c.attempts > 0 THEN format('%s attempts did not finish', c.attempts) "
    "    WHEN m.transport = 'gprs' THEN 'the GPRS meter did not connect in time' "
    "    ELSE 'not started in time (meter not reached, or the kind''s rate cap)' END) END "
    "FROM command c JOIN meter m ON m.id = c.meter_id "
    "WHERE (c.state = 'queued' AND c.expires_at <= now()) "
    "   OR (c.state = 'running' AND c.lease_until < now() AND c.attempts >= c.max_attempts) "
    "ORDER BY c.id LIMIT 200";

static void
expire_done(struct command_queue *q, PGresult *res, void *arg)
{
	(void)arg;
	q->expiring = false;
	if (res == NULL)
		return;
	for (int i = 0; i < PQntuples(res); i++) {
		const char *state = PQgetvalue(res, i, 3);
		bool running = strcmp(state, "running") == 0;
		log_meter(LOG_NOTICE, PQgetvalue(res, i, 1), "command %s %s: %s",
		          PQgetvalue(res, i, 0), PQgetvalue(res, i, 2), PQgetvalue(res, i, 5));
		metric_inc(q->m_done, PQgetvalue(res, i, 2), running ? "failed" : "expired");
		cq_outcome(q, strtoll(PQgetvalue(res, i, 0), NULL, 10), PQgetvalue(res, i, 1),
		           PQgetvalue(res, i, 2), state, running ? "failed" : "expired", NULL,
		           PQgetvalue(res, i, 5), PQgetvalue(res, i, 4));
	}
}

/* ---- GPRS wake-up ------------------------------------------------------------------------ */

/* Meters with an APN address are dialled for their commands: no hook. */
static const char wake_sql[] =
    "SELECT c.id, m.serial FROM command c JOIN meter m ON m.id = c.meter_id "
    "WHERE c.state = 'queued' AND m.transport = 'gprs' AND m.host IS NULL "
    "  AND c.expires_at > now() "
    "ORDER BY c.id LIMIT 100";

static bool
woken(struct command_queue *q, int64_t id)
{
	for (size_t i = 0; i < q->nwoken; i++)
		if (q->woken[i] == id)
			return true;
	return false;
}

static void
wake_done(struct command_queue *q, PGresult *res, void *arg)
{
	(void)arg;
	const char *cmd = q->d->cfg->gprs.wakeup_command;
	if (res == NULL || cmd[0] == '\0')
		return;
	for (int i = 0; i < PQntuples(res); i++) {
		int64_t id = strtoll(PQgetvalue(res, i, 0), NULL, 10);
		if (woken(q, id))
			continue;
		if (q->nwoken == CQ_MAX_WOKEN)
			q->nwoken = 0; /* forget the oldest: at worst a second SMS */
		q->woken[q->nwoken++] = id;
		/* Not through a shell: the serial is the only argument. */
		char *argv[] = {(char *)cmd, PQgetvalue(res, i, 1), NULL};
		pid_t pid;
		int rc = posix_spawn(&pid, cmd, NULL, NULL, argv, environ);
		if (rc != 0)
			log_meter(LOG_WARNING, PQgetvalue(res, i, 1), "wake-up command %s: %s", cmd,
			          strerror(rc));
		else
			log_meter(LOG_INFO, PQgetvalue(res, i, 1), "wake-up for command %lld",
			          (long long)id);
	}
}

/* ---- the tick ----------------------------------------------------------------------------- */

static const char renew_sql[] = "SELECT ammd_command_renew($1, make_interval(secs => $2::int))";

static void
cq_tick(evutil_socket_t fd, short what, void *arg)
{
	struct command_queue *q = arg;
	int64_t now = (int64_t)time(NULL);
	(void)fd;
	(void)what;

	while (waitpid(-1, NULL, WNOHANG) > 0)
		; /* wake-up commands that ended */
	if (q->pg == NULL) {
		if (now >= q->retry_at)
			(void)cq_connect(q);
		if (q->pg == NULL)
			return;
	}
	if (q->claim_wanted && !q->claiming && q->exec != NULL && !q->draining) {
		q->claim_wanted = false;
		cq_claim(q, NULL, CQ_ALWAYS_ON);
	}
	if (now != q->last_slow) {
		char lease[16];
		q->last_slow = now;
		snprintf(lease, sizeof(lease), "%d", cq_lease_s(q));
		const char *p[2] = {q->instance, lease};
		if (!q->expiring) {
			q->expiring = true;
			cq_query(q, expire_sql, 0, NULL, expire_done, NULL);
		}
		if (now - q->last_renew >= cq_lease_s(q) / 3) {
			q->last_renew = now;
			cq_query(q, renew_sql, 2, p, finish_done, NULL);
		}
		if (now >= q->next_wake && q->d->cfg->gprs.wakeup_command[0]) {
			q->next_wake = now + 10;
			cq_query(q, wake_sql, 0, NULL, wake_done, NULL);
		}
		/* Caps free up as the minute slides on: look again. */
		if (q->exec != NULL)
			q->claim_wanted = true;
	}
}

/* ---- MQTT command/request ------------------------------------------------------------------ */

static const char submit_sql[] =
    "SELECT count(*) FILTER (WHERE NOT merged) FROM ammd_command_submit($1::text[], $2, $3::jsonb, "
    "  CASE WHEN $4::bigint > 0 THEN to_timestamp($4::bigint / 1000.0) END, $5, $6::smallint, "
    "  $7, NULLIF($8, ''))";

static void
submit_done(struct command_queue *q, PGresult *res, void *arg)
{
	char *what = arg;
	(void)q;
	if (res != NULL)
		log_info("commands: MQTT request %s queued %s new command(s)", what,
		         PQgetvalue(res, 0, 0));
	else
		log_warnx("commands: MQTT request %s refused by the database", what);
	free(what);
}

/*
 * An inbound CommandRequest.  MQTT 3.1.1 does not tell a subscriber who
 * published, so the identity comes from the topic: a request on
 * <prefix>/command/request/<client> is created_by "mqtt:<client>", which
 * the broker's ACL makes true by letting each client write only its own
 * topic.  One on the shared <prefix>/command/request names nobody and is
 * created_by "mqtt:request:<request id>" (a client level never holds a
 * ':', so the two cannot be confused).  Requests with bad parameters are
 * refused here, before anything is queued.
 */
static void
cq_mqtt_request(const struct message_command_request *req, void *arg)
{
	struct command_queue *q = arg;
	struct cmdk_params p;
	char err[256], exp[24], prio[8], by[MESSAGE_TOPIC_MAX + 16]; /* a whole client level fits */
	int kind = cmdk_by_name(req->kind);
	struct {
		char *p;
		size_t len;
	} arr = {0};
	FILE *f;

	if (kind < 0) {
		log_warnx("commands: MQTT request %s: unknown kind '%s'", req->request_id,
		          req->kind);
		return;
	}
	if (cmdk_parse(kind, req->params_json, (int64_t)time(NULL), &p, err, sizeof(err)) != 0) {
		log_warnx("commands: MQTT request %s: %s", req->request_id, err);
		return;
	}
	if ((f = open_memstream(&arr.p, &arr.len)) == NULL)
		return;
	fputc('{', f);
	for (size_t i = 0; i < req->nmeters; i++)
		fprintf(f, "%s\"%s\"", i ? "," : "", req->meters[i]); /* topic-safe serials */
	fputc('}', f);
	fclose(f);
	const char *key = req->idempotency_key && *req->idempotency_key ? req->idempotency_key
	                                                                : cmdk_idempotency_key(&p);
	snprintf(
	    exp, sizeof(exp), "%lld",
	    (long long)(req->expires_at > 0
	                    ? req->expires_at
	                    : now_ms() + (int64_t)q->d->cfg->commands.default_expiry_s * 1000));
	snprintf(prio, sizeof(prio), "%d", req->priority);
	const char *client = publish_command_client(q->d->publish);
	if (client != NULL)
		snprintf(by, sizeof(by), "mqtt:%s", client);
	else
		snprintf(by, sizeof(by), "mqtt:request:%s", req->request_id ? req->request_id : "");
	const char *params[8] = {arr.p,
	                         req->kind,
	                         req->params_json && *req->params_json ? req->params_json : "{}",
	                         exp,
	                         key,
	                         prio,
	                         by,
	                         req->request_id ? req->request_id : ""};
	cq_query(q, submit_sql, 8, params, submit_done, strdup(by));
	free(arr.p);
}

/* ---- module ------------------------------------------------------------------------------- */

static int
command_start(struct ammd *d)
{
	struct command_queue *q = calloc(1, sizeof(*q));
	static const double bounds[] = {0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300};
	if (q == NULL)
		return -1;
	q->d = d;
	snprintf(q->instance, sizeof(q->instance), "%s", d->cfg->daemon.instance_id);
	q->m_done =
	    metrics_counter(d->metrics, "ammd_commands_total",
	                    "Operator commands finished, by kind and outcome.", "kind,outcome");
	q->m_latency = metrics_histogram(d->metrics, "ammd_command_latency_seconds",
	                                 "From insert to stored result.", "kind", bounds,
	                                 sizeof(bounds) / sizeof(bounds[0]));
	q->m_claimed = metrics_counter(d->metrics, "ammd_commands_claimed_total",
	                               "Commands claimed by this instance.", NULL);
	q->ev_tick = event_new(d->base, -1, EV_PERSIST, cq_tick, q);
	struct timeval tv = {CQ_TICK_MS / 1000, (CQ_TICK_MS % 1000) * 1000};
	q->ev_now = event_new(d->base, -1, 0, cq_tick, q);
	if (q->ev_tick == NULL || q->ev_now == NULL || event_add(q->ev_tick, &tv) != 0) {
		if (q->ev_tick)
			event_free(q->ev_tick);
		if (q->ev_now)
			event_free(q->ev_now);
		free(q);
		return -1;
	}
	(void)cq_connect(q); /* retried from the tick when the database is down */
	if (d->publish != NULL)
		publish_set_command_handler(d->publish, cq_mqtt_request, q);
	the_queue = q;
	return 0;
}

static void
command_drain(struct ammd *d)
{
	(void)d;
	if (the_queue)
		the_queue->draining = true;
}

static bool
command_drained(struct ammd *d)
{
	(void)d;
	struct command_queue *q = the_queue;
	/* Claimed but untaken jobs go back to the queue before we stop. */
	if (q && q->waiting) {
		struct command_job *j = q->waiting;
		q->waiting = j->next;
		if (q->waiting == NULL)
			q->waiting_tail = NULL;
		q->nwaiting--;
		command_release(q, j, "ammd stopping");
	}
	return q == NULL || (q->waiting == NULL && q->head == NULL);
}

static void
command_stop(struct ammd *d)
{
	struct command_queue *q = the_queue;
	if (q == NULL)
		return;
	if (d->publish != NULL)
		publish_set_command_handler(d->publish, NULL, NULL);
	while (q->waiting) {
		struct command_job *j = q->waiting;
		q->waiting = j->next;
		job_free(j);
	}
	if (q->ev_tick)
		event_free(q->ev_tick);
	if (q->ev_now)
		event_free(q->ev_now);
	if (q->ev_pg)
		event_free(q->ev_pg);
	while (q->head) {
		struct cq_stmt *s = q->head;
		q->head = s->next;
		stmt_free(s);
	}
	if (q->res)
		PQclear(q->res);
	if (q->pg)
		PQfinish(q->pg);
	free(q);
	the_queue = NULL;
}

const struct ammd_module command_module = {
    .name = "commands",
    .start = command_start,
    .drain = command_drain,
    .drained = command_drained,
    .stop = command_stop,
};
