/*
 * modbus_gw.c: one Modbus-TCP gateway, read with libmodbus off the event
 * loop.
 *
 * Why a thread: libmodbus's calls (modbus_connect, modbus_read_registers)
 * block until the answer or the response timeout, and it owns its socket
 * and its framing state, so it cannot be driven by libevent the way libpq
 * or libmosquitto can.  A gateway that answers slowly, or a target meter
 * that does not answer at all, would freeze every other meter, the store
 * and the publisher for up to the whole timeout per request.  So each
 * gateway gets one worker thread with its own modbus_t (a context is not
 * thread safe; one per thread needs no locking around libmodbus), fed by
 * a queue under a mutex.  The worker only computes: it reads registers and
 * decodes them through the map (pure, meterlib); it never touches the
 * event base.  Finished reads go on a done list, and the worker writes one
 * byte into a pipe whose read end is an event on the loop; that event
 * runs the callbacks on the loop's thread.  A pipe rather than
 * event_active() from the worker because the daemon's event_base is not
 * built with libevent's locking (evthread), and a pipe wakes the loop
 * safely without it.
 *
 * A gateway has `concurrency` workers (1 unless its row says more), each
 * one master with its own connection, all taking from the gateway's one
 * queue: one worker keeps one master per gateway, as most gateways expect
 * (many serve a single TCP client); more workers let a gateway that
 * serves several masters work on several meters at once.  Queues per
 * gateway give fairness between gateways for free: a slow gateway delays
 * only its own queue.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <modbus/modbus.h>

#include "meter_error.h"
#include "modbus_gw.h"

#define MAX_READINGS 64
#define MAX_REGS     125 /* per Read Holding Registers request */
#define MAX_WORKERS  64  /* gateway.concurrency's upper bound */
#define REQ_BYTES    12  /* MBAP header 7 + function, address, quantity */
#define RSP_BYTES    9   /* MBAP header 7 + function, byte count (or code) */

struct mreq {
	struct mreq *next;
	uint8_t unit;
	modbus_gw_fn cb;
	void *arg;
	int status;
	struct modbus_reading r[MAX_READINGS];
	size_t n;
};

struct modbus_gw;

/* One master: a thread and the libmodbus context only it touches. */
struct worker {
	struct modbus_gw *g;
	pthread_t th;
	bool started;
	modbus_t *ctx;
	bool connected;
};

struct modbus_gw {
	struct event_base *base;
	char host[256];
	uint16_t port;
	int connect_ms, response_ms, retries;
	const struct modbus_map *map;
	uint16_t reg_first, reg_end; /* registers the map spans */

	struct worker w[MAX_WORKERS];
	int nworkers;
	bool locks; /* mu and cv initialised */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool stop;
	struct mreq *q, *qtail; /* waiting for the worker */
	struct mreq *done;      /* finished, for the loop */
	size_t npending;        /* queued + under way + done, not yet called back */
	struct modbus_gw_stats st;

	int pipefd[2];
	struct event *ev;
};

/* ---- worker ----------------------------------------------------------------- */

static void
set_timeout(modbus_t *ctx, int ms)
{
	modbus_set_response_timeout(ctx, (uint32_t)(ms / 1000), (uint32_t)(ms % 1000) * 1000);
}

static int
errno_to_meter(int e)
{
	switch (e) {
	case EMBXSBUSY:
		return METER_EBUSY;
	case EMBXGTAR:
	case EMBXGPATH:
	case ETIMEDOUT:
		return METER_ETIMEOUT;
	case EMBXILFUN:
	case EMBXILADD:
	case EMBXILVAL:
	case EMBXSFAIL:
	case EMBXACK:
	case EMBXNACK:
	case EMBXMEMPAR:
		return METER_EEXCEPTION;
	case EMBBADDATA:
	case EMBBADEXC:
	case EMBUNKEXC:
	case EMBMDATA:
	case EMBBADSLAVE:
	case EMBBADCRC:
		return METER_EPROTO;
	default:
		return METER_EABORTED;
	}
}

static void
worker_disconnect(struct worker *w)
{
	struct modbus_gw *g = w->g;

	if (w->ctx != NULL) {
		modbus_close(w->ctx);
		modbus_free(w->ctx);
	}
	w->ctx = NULL;
	if (w->connected) {
		pthread_mutex_lock(&g->mu);
		g->st.open--;
		pthread_mutex_unlock(&g->mu);
	}
	w->connected = false;
}

static int
worker_connect(struct worker *w)
{
	struct modbus_gw *g = w->g;
	char port[8];

	if (w->connected)
		return 0;
	snprintf(port, sizeof(port), "%u", g->port);
	w->ctx = modbus_new_tcp_pi(g->host, port);
	if (w->ctx == NULL)
		return METER_EABORTED;
	/* the connect itself is bounded by the response timeout in libmodbus */
	set_timeout(w->ctx, g->connect_ms);
	if (modbus_connect(w->ctx) != 0) {
		worker_disconnect(w);
		return METER_EABORTED;
	}
	set_timeout(w->ctx, g->response_ms);
	w->connected = true;
	pthread_mutex_lock(&g->mu);
	g->st.connects++;
	if (++g->st.open > g->st.peak_open)
		g->st.peak_open = g->st.open;
	pthread_mutex_unlock(&g->mu);
	return 0;
}

/* A failed request in the counters: what kind, and the bytes it moved. */
static void
count_failure(struct modbus_gw *g, int e, int rc)
{
	pthread_mutex_lock(&g->mu);
	g->st.failures++;
	g->st.bytes_out += REQ_BYTES;
	if (rc == METER_ETIMEOUT) {
		g->st.timeouts++;
		if (e != ETIMEDOUT) /* exception 10/11: the gateway answered */
			g->st.bytes_in += RSP_BYTES;
	} else if (rc == METER_EPROTO) {
		g->st.garbled++;
	} else if (rc == METER_EEXCEPTION || rc == METER_EBUSY) {
		g->st.exceptions++;
		g->st.bytes_in += RSP_BYTES;
	}
	pthread_mutex_unlock(&g->mu);
}

/* One readout: the map's span in requests of at most MAX_REGS. */
static int
worker_read(struct worker *w, struct mreq *r)
{
	struct modbus_gw *g = w->g;
	uint16_t regs[MAX_REGS];
	size_t n;
	int rc;

	if ((rc = worker_connect(w)) != 0)
		return rc;
	modbus_set_slave(w->ctx, r->unit);
	r->n = 0;
	for (uint32_t at = g->reg_first; at < g->reg_end;) {
		uint32_t cnt = g->reg_end - at;
		if (cnt > MAX_REGS)
			cnt = MAX_REGS;
		/* never split a value across two requests */
		for (size_t k = 0; k < g->map->n && cnt == MAX_REGS; k++) {
			const struct modbus_map_entry *e = &g->map->e[k];
			if (e->reg < at + cnt && e->reg + e->words > at + cnt && e->reg > at)
				cnt = e->reg - at;
		}
		pthread_mutex_lock(&g->mu);
		g->st.requests++;
		pthread_mutex_unlock(&g->mu);
		int got = modbus_read_registers(w->ctx, (int)at, (int)cnt, regs);
		if (got != (int)cnt) {
			int e = got < 0 ? errno : EMBBADDATA;
			rc = errno_to_meter(e);
			count_failure(g, e, rc);
			/* a broken or desynchronised link: start over */
			if (rc == METER_EABORTED || rc == METER_EPROTO || e == ETIMEDOUT)
				worker_disconnect(w);
			return rc;
		}
		pthread_mutex_lock(&g->mu);
		g->st.bytes_out += REQ_BYTES;
		g->st.bytes_in += RSP_BYTES + 2 * cnt;
		pthread_mutex_unlock(&g->mu);
		if (modbus_map_decode(g->map, (uint16_t)at, regs, cnt, r->r + r->n,
		                      MAX_READINGS - r->n, &n) != 0)
			return METER_ENOSPC;
		r->n += n;
		at += cnt;
	}
	return 0;
}

static void *
worker(void *arg)
{
	struct worker *w = arg;
	struct modbus_gw *g = w->g;

	pthread_mutex_lock(&g->mu);
	for (;;) {
		while (!g->stop && g->q == NULL)
			pthread_cond_wait(&g->cv, &g->mu);
		if (g->stop)
			break;
		struct mreq *r = g->q;
		g->q = r->next;
		if (g->q == NULL)
			g->qtail = NULL;
		pthread_mutex_unlock(&g->mu);

		int rc = worker_read(w, r);
		for (int t = 0; rc != 0 && rc != METER_ENOSPC && t < g->retries; t++) {
			pthread_mutex_lock(&g->mu);
			g->st.retries++;
			if (rc == METER_EABORTED)
				g->st.reconnects++;
			pthread_mutex_unlock(&g->mu);
			rc = worker_read(w, r);
		}
		r->status = rc;

		pthread_mutex_lock(&g->mu);
		r->next = g->done;
		g->done = r;
		pthread_mutex_unlock(&g->mu);
		/* wake the loop; a full pipe already holds a wake-up */
		char c = 1;
		ssize_t wr = write(g->pipefd[1], &c, 1);
		(void)wr;
		pthread_mutex_lock(&g->mu);
	}
	pthread_mutex_unlock(&g->mu);
	worker_disconnect(w);
	return NULL;
}

/* ---- loop side ------------------------------------------------------------------ */

static void
wake_cb(evutil_socket_t fd, short what, void *arg)
{
	struct modbus_gw *g = arg;
	char buf[64];
	struct mreq *list, *rev = NULL;
	(void)what;

	while (read(fd, buf, sizeof(buf)) > 0)
		;
	pthread_mutex_lock(&g->mu);
	list = g->done;
	g->done = NULL;
	pthread_mutex_unlock(&g->mu);
	/* the done list is newest first: call back in completion order */
	while (list != NULL) {
		struct mreq *r = list;
		list = r->next;
		r->next = rev;
		rev = r;
	}
	while (rev != NULL) {
		struct mreq *r = rev;
		rev = r->next;
		g->npending--;
		g->st.readouts++;
		if (r->status != 0)
			g->st.failed++;
		r->cb(r->status, r->r, r->status == 0 ? r->n : 0, r->arg);
		free(r);
	}
}

struct modbus_gw *
modbus_gw_new(struct event_base *base, const struct modbus_gw_params *p)
{
	struct modbus_gw *g = calloc(1, sizeof(*g));

	if (g == NULL)
		return NULL;
	g->pipefd[0] = g->pipefd[1] = -1;
	g->base = base;
	snprintf(g->host, sizeof(g->host), "%s", p->host ? p->host : "");
	g->port = p->port ? p->port : 502;
	g->connect_ms = p->connect_timeout_ms > 0 ? p->connect_timeout_ms : 3000;
	g->response_ms = p->response_timeout_ms > 0 ? p->response_timeout_ms : 1000;
	g->retries = p->retries >= 0 ? p->retries : 1;
	g->nworkers = p->concurrency <= 0            ? 1
	              : p->concurrency > MAX_WORKERS ? MAX_WORKERS
	                                             : p->concurrency;
	g->map = p->map;
	if (g->map == NULL || g->map->n == 0)
		goto fail;
	g->reg_first = UINT16_MAX;
	for (size_t k = 0; k < g->map->n; k++) {
		const struct modbus_map_entry *e = &g->map->e[k];
		if (e->reg < g->reg_first)
			g->reg_first = e->reg;
		if ((uint32_t)e->reg + e->words > g->reg_end)
			g->reg_end = (uint16_t)(e->reg + e->words);
	}
	pthread_mutex_init(&g->mu, NULL);
	pthread_cond_init(&g->cv, NULL);
	g->locks = true;
	if (pipe2(g->pipefd, O_NONBLOCK | O_CLOEXEC) != 0)
		goto fail;
	g->ev = event_new(base, g->pipefd[0], EV_READ | EV_PERSIST, wake_cb, g);
	if (g->ev == NULL || event_add(g->ev, NULL) != 0)
		goto fail;
	/* small stack: the worker keeps one request's registers, nothing more */
	pthread_attr_t at;
	pthread_attr_init(&at);
	pthread_attr_setstacksize(&at, 256 * 1024);
	for (int i = 0; i < g->nworkers; i++) {
		g->w[i].g = g;
		if (pthread_create(&g->w[i].th, &at, worker, &g->w[i]) != 0) {
			pthread_attr_destroy(&at);
			goto fail;
		}
		g->w[i].started = true;
	}
	pthread_attr_destroy(&at);
	return g;
fail:
	modbus_gw_free(g);
	return NULL;
}

void
modbus_gw_free(struct modbus_gw *g)
{
	if (g == NULL)
		return;
	if (g->locks) {
		pthread_mutex_lock(&g->mu);
		g->stop = true;
		pthread_cond_broadcast(&g->cv);
		pthread_mutex_unlock(&g->mu);
	}
	for (int i = 0; i < g->nworkers; i++)
		if (g->w[i].started)
			pthread_join(g->w[i].th, NULL);
	struct mreq *lists[2] = {g->q, g->done};
	for (int i = 0; i < 2; i++)
		while (lists[i] != NULL) {
			struct mreq *r = lists[i];
			lists[i] = r->next;
			free(r);
		}
	if (g->ev != NULL)
		event_free(g->ev);
	if (g->pipefd[0] >= 0)
		close(g->pipefd[0]);
	if (g->pipefd[1] >= 0)
		close(g->pipefd[1]);
	if (g->locks) {
		pthread_mutex_destroy(&g->mu);
		pthread_cond_destroy(&g->cv);
	}
	free(g);
}

int
modbus_gw_read(struct modbus_gw *g, uint8_t unit, modbus_gw_fn cb, void *arg)
{
	struct mreq *r = calloc(1, sizeof(*r));

	if (r == NULL)
		return -1;
	r->unit = unit;
	r->cb = cb;
	r->arg = arg;
	pthread_mutex_lock(&g->mu);
	if (g->qtail)
		g->qtail->next = r;
	else
		g->q = r;
	g->qtail = r;
	pthread_cond_signal(&g->cv);
	pthread_mutex_unlock(&g->mu);
	g->npending++;
	return 0;
}

size_t
modbus_gw_drop_queued(struct modbus_gw *g, void (*dropped)(void *arg))
{
	struct mreq *list;
	size_t n = 0;

	pthread_mutex_lock(&g->mu);
	list = g->q;
	g->q = g->qtail = NULL;
	pthread_mutex_unlock(&g->mu);
	while (list != NULL) {
		struct mreq *r = list;
		list = r->next;
		g->npending--;
		n++;
		if (dropped != NULL)
			dropped(r->arg);
		free(r);
	}
	return n;
}

size_t
modbus_gw_pending(const struct modbus_gw *g)
{
	return g->npending;
}

void
modbus_gw_stats(struct modbus_gw *g, struct modbus_gw_stats *out)
{
	pthread_mutex_lock(&g->mu);
	*out = g->st;
	pthread_mutex_unlock(&g->mu);
}
