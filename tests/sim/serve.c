/*
 * serve.c: `metersim serve` — one process, one libevent loop, the whole
 * fleet on the wire.  This file owns the loop, the simulated clock, the
 * model lock and the DLMS transports: TCP/IP modules (DLMS over the
 * IEC 62056-47 wrapper, every meter on its own loopback address
 * 127.x.y.z:4059 or on consecutive ports of 127.0.0.1), the same over HDLC
 * (--hdlc), and GPRS modules that connect out to a head-end and wait to be
 * served, reconnecting with jitter and optionally pushing a
 * DataNotification first.  M-Bus and Modbus gateways are gw_mbus.c and
 * gw_modbus.c, the control socket control.c, the object model
 * cosem_model.c.
 *
 * Loopback addresses are served by ONE listener bound to INADDR_ANY on
 * port 4059 (--loopback-port): the whole 127/8 reaches it, and the local
 * address of an accepted connection (getsockname) names the meter the
 * client dialled (sim_addr_index), so the fleet costs one fd however large
 * it is and a connection costs an fd only while it is open.  Consecutive
 * ports cannot share a listener, so that mode (and --per-meter-listeners)
 * keeps one listener per meter.
 *
 * Memory: a meter without a connection costs its struct sim_state (model)
 * and, with a listener of its own, one evconnlistener (~150 bytes and an
 * fd).  A
 * connection costs ~7 KiB (engine with its HDLC link, 3 x 2 KiB buffers)
 * plus a 512 KiB GET buffer that is malloc'd but only touched as far as a
 * response reaches (large profile reads), and freed with the connection.
 *
 * File descriptors bound per-meter listeners: RLIMIT_NOFILE is raised to
 * its hard limit and listeners are opened for the first meters up to that
 * limit less a reserve for connections; the rest of the fleet is not
 * reachable in that run (the start-up line says how many are).  --first
 * lets a run serve another slice of a large fleet.
 *
 * Faults on DLMS: refuse (RST at accept / no GPRS connect; refuse=1 on a
 * per-meter listener closes it: connection refused), drop (close
 * instead of answering), stall (hold the answer, then close), delay,
 * corrupt (bytes of the answers), truncate (half an answer, then close),
 * abort (connection closed mid-request), ic_reset / ic_replay (the
 * meter's invocation counter restarts at 0 / repeats the last value),
 * plain (the meter's security is off: mechanism none for any client, no
 * ciphering).
 */
#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/thread.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "meter_error.h"
#include "serve.h"
#include "wrapper.h"
#include "xdlms.h"

#define RX_CAP     2112 /* wrapper header + 2048 */
#define TX_CAP     2112
#define WORK_CAP   2112
#define DATA_CAP   (512 * 1024)
#define MAX_PDU    1024
#define FD_RESERVE 512

struct dconn {
	struct serve *sv;
	struct dlms_state *ds;
	struct bufferevent *bev;
	struct event *timer; /* delay / stall, GPRS reconnect */
	uint32_t index;
	bool gprs;
	bool closing;
	struct fault_rng rng;
	const struct fault_set *fs;
	struct cosem_ctx ctx;
	struct dlms_server_policy pol;
	char password[9]; /* pol.password points here: the connection owns it */
	bool ic_was_reset; /* an ic_reset fault fired: the counter may go down */
	struct dlms_server srv;
	uint32_t alarms; /* last alarm register seen (GPRS pushes on change) */
	uint8_t *mem;    /* rx, tx, work */
	uint8_t *data;   /* DATA_CAP */
	uint8_t *held;   /* delayed answer */
	size_t held_len;
	struct dconn *prev, *next;
};

struct mlis {
	struct serve *sv;
	struct evconnlistener *l;
	uint32_t index;
};

struct gprs_slot {
	struct serve *sv;
	uint32_t index;
	struct event *retry;
	struct dconn *c;
};

struct dlms_state {
	struct mlis *lis;
	uint32_t nlis;
	struct evconnlistener *shared; /* the loopback fleet's one listener */
	struct event *resume;          /* re-enables it after accept() failed */
	struct event *sweep;           /* closes / reopens listeners of refusing meters */
	struct gprs_slot *gprs;
	uint32_t ngprs;
	struct event *alarm_tick; /* GPRS: push when a meter's alarms change */
	struct sockaddr_storage gprs_addr;
	int gprs_addrlen;
	struct dconn *open;
	uint32_t nopen;
	uint32_t push_armed[16]; /* meters to push inside their next session */
	uint32_t n_push_armed;
};

/* ---- clock and lock ----------------------------------------------------- */

static double
real_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

int64_t
serve_now(const struct serve *sv)
{
	return sv->t0_sim + (int64_t)((real_now() - sv->t0_real) * sv->cfg.speed);
}

void
serve_lock(struct serve *sv)
{
	pthread_mutex_lock(&sv->lock);
}

void
serve_unlock(struct serve *sv)
{
	pthread_mutex_unlock(&sv->lock);
}

int64_t
serve_lookup(void *arg, uint32_t serial)
{
	struct serve *sv = arg;
	return sim_fleet_find(sv->fleet, serial);
}

/* ---- connections ---------------------------------------------------------- */

uint32_t
dlms_open_connections(const struct serve *sv)
{
	const struct dlms_state *ds = sv->dlms;
	return ds ? ds->nopen : 0;
}

static void gprs_schedule(struct gprs_slot *g, bool soon);

static void persist_ic(struct dconn *c);
static void push_if_armed(struct dconn *c);

static void
conn_free(struct dconn *c)
{
	struct dlms_state *ds = c->ds;
	struct serve *sv = c->sv;
	if (c->prev)
		c->prev->next = c->next;
	else
		ds->open = c->next;
	if (c->next)
		c->next->prev = c->prev;
	ds->nopen--;
	/* the meter keeps its invocation counter across connections */
	persist_ic(c);
	if (c->timer)
		event_free(c->timer);
	if (c->bev)
		bufferevent_free(c->bev);
	CNT_ADD(sv, closed, 1);
	if (c->gprs && ds->gprs) {
		for (uint32_t i = 0; i < ds->ngprs; i++)
			if (ds->gprs[i].c == c) {
				ds->gprs[i].c = NULL;
				gprs_schedule(&ds->gprs[i], false);
			}
	}
	free(c->held);
	free(c->mem);
	free(c->data);
	free(c);
}

/*
 * Store the meter's invocation counter.  An ic_replay fault steps the
 * engine's counter back by one for a single answer; that is a replay on
 * the wire, not a meter whose counter went back, so the stored counter
 * never moves down unless an ic_reset fault really reset it.
 */
static void
persist_ic(struct dconn *c)
{
	struct serve *sv = c->sv;
	serve_lock(sv);
	uint32_t *ic = &sv->fleet->st[c->index].invocation_counter;
	if (c->ic_was_reset || c->srv.tx_counter > *ic)
		*ic = c->srv.tx_counter;
	serve_unlock(sv);
}

/* The policy keeps pointers: `pw` (at least sizeof(m->password)) must live
 * as long as the policy, so the caller passes storage it owns. */
static void
policy_of(const struct sim_meter *m, struct dlms_server_policy *p, char *pw)
{
	memset(p, 0, sizeof(*p));
	p->mechanisms = 1u << ACSE_MECH_NONE;
	p->max_pdu = MAX_PDU;
	memcpy(p->system_title, m->system_title, sizeof(p->system_title));
	if (m->security == SIM_SEC_LLS) {
		p->mechanisms |= 1u << ACSE_MECH_LLS;
		memcpy(pw, m->password, sizeof(m->password));
		pw[sizeof(m->password) - 1] = '\0';
		p->password = (const uint8_t *)pw;
		p->password_len = strlen(pw);
		p->none_client = 16;
	} else if (m->security == SIM_SEC_HLS) {
		p->mechanisms |= 1u << ACSE_MECH_HLS_GMAC;
		p->ciphering_allowed = true;
		memcpy(p->keys.ek, m->ek, 16);
		memcpy(p->keys.ak, m->ak, 16);
		p->none_client = 16;
	}
}

/* Send bytes of an answer through the fault filter. */
static void
send_out(struct dconn *c, uint8_t *p, size_t n)
{
	struct serve *sv = c->sv;
	if (!n)
		return;
	fault_corrupt(&sv->faults, c->fs, &c->rng, p, n);
	if (fault_fire(&sv->faults, c->fs, &c->rng, FAULT_TRUNCATE)) {
		bufferevent_write(c->bev, p, n / 2);
		CNT_ADD(sv, bytes_out, n / 2);
		c->closing = true; /* the rest never comes */
		return;
	}
	bufferevent_write(c->bev, p, n);
	CNT_ADD(sv, bytes_out, n);
}

static void
on_timer(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct dconn *c = arg;
	if (c->held) {
		uint8_t *h = c->held;
		size_t n = c->held_len;
		c->held = NULL;
		send_out(c, h, n);
		free(h);
	}
	if (c->closing && evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
		conn_free(c);
}

static void
on_written(struct bufferevent *bev, void *arg)
{
	(void)bev;
	struct dconn *c = arg;
	if (c->closing && !c->held)
		conn_free(c);
}

/* Feed what arrived, run the engine, answer (through the faults). */
static void
on_read(struct bufferevent *bev, void *arg)
{
	struct dconn *c = arg;
	struct serve *sv = c->sv;
	if (c->closing || c->held) {
		/* stalled or closing: swallow */
		evbuffer_drain(bufferevent_get_input(bev),
		               evbuffer_get_length(bufferevent_get_input(bev)));
		return;
	}
	struct evbuffer *in = bufferevent_get_input(bev);
	if (c->ds->n_push_armed)
		push_if_armed(c);
	size_t omax = dlms_server_out_max(&c->srv);
	uint8_t *obuf = malloc(omax + 64);
	if (!obuf)
		return;
	struct mbuf out;
	mbuf_init(&out, obuf, omax + 64);
	bool had_request = false;
	while (evbuffer_get_length(in) > 0) {
		uint8_t chunk[1024];
		size_t n = evbuffer_get_length(in);
		if (n > sizeof(chunk))
			n = sizeof(chunk);
		evbuffer_copyout(in, chunk, n);
		size_t took = dlms_server_feed(&c->srv, chunk, n);
		evbuffer_drain(in, took);
		CNT_ADD(sv, bytes_in, took);
		struct dlms_server_event ev;
		for (;;) {
			if (out.len + omax > out.cap) {
				uint8_t *nb = realloc(obuf, out.cap * 2);
				if (!nb)
					break;
				obuf = nb;
				out.p = nb;
				out.cap *= 2;
			}
			int e = dlms_server_poll(&c->srv, &out, &ev);
			if (e == DLMS_SEV_NONE && !dlms_server_out_pending(&c->srv))
				break; /* pending: out grows above, poll again */
			switch (e) {
			case DLMS_SEV_ASSOCIATED:
				CNT_ADD(sv, associations, 1);
				/* invocation-counter faults act per association */
				if (fault_fire(&sv->faults, c->fs, &c->rng, FAULT_IC_RESET)) {
					c->srv.tx_counter = 0;
					c->ic_was_reset = true;
				}
				break;
			case DLMS_SEV_REJECTED:
				CNT_ADD(sv, rejected, 1);
				break;
			case DLMS_SEV_ERROR:
				CNT_ADD(sv, errors, 1);
				break;
			case DLMS_SEV_SERVED:
				CNT_ADD(sv, apdus, 1);
				had_request = true;
				break;
			default:
				break;
			}
		}
		if (took == 0)
			break;
	}
	/* persist the counter after every call (the engine advanced it) */
	persist_ic(c);
	if (had_request && fault_fire(&sv->faults, c->fs, &c->rng, FAULT_IC_REPLAY) && out.len)
		c->srv.tx_counter--; /* the next answer repeats this counter */
	if (out.len && had_request &&
	    (fault_fire(&sv->faults, c->fs, &c->rng, FAULT_ABORT) ||
	     fault_fire(&sv->faults, c->fs, &c->rng, FAULT_DROP))) {
		free(obuf);
		conn_free(c);
		return;
	}
	if (out.len) {
		/* every answer (AARE included) may be held */
		uint32_t hold_ms = 0;
		if (fault_fire(&sv->faults, c->fs, &c->rng, FAULT_STALL)) {
			hold_ms = c->fs->stall_ms;
			c->closing = true;
			out.len = 0;
		} else if (c->fs->p[FAULT_DELAY] > 0 &&
		           fault_fire(&sv->faults, c->fs, &c->rng, FAULT_DELAY)) {
			hold_ms = c->fs->delay_ms;
		}
		if (hold_ms) {
			if (out.len) {
				c->held = obuf;
				c->held_len = out.len;
				obuf = NULL;
			}
			struct timeval tv = {.tv_sec = hold_ms / 1000,
			                     .tv_usec = (suseconds_t)(hold_ms % 1000) * 1000};
			evtimer_add(c->timer, &tv);
			free(obuf);
			return;
		}
	}
	send_out(c, out.p, out.len);
	free(obuf);
	if (c->srv.state == DLMS_SERVER_CLOSED && !c->gprs)
		c->closing = true;
}

static void
on_event(struct bufferevent *bev, short what, void *arg)
{
	(void)bev;
	struct dconn *c = arg;
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
		conn_free(c);
}

static struct dconn *
conn_new(struct serve *sv, uint32_t index, struct bufferevent *bev, bool gprs)
{
	struct dlms_state *ds = sv->dlms;
	struct dconn *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->sv = sv;
	c->ds = ds;
	c->index = index;
	c->gprs = gprs;
	c->bev = bev;
	c->mem = malloc(RX_CAP + TX_CAP + WORK_CAP);
	c->data = malloc(DATA_CAP);
	c->timer = evtimer_new(sv->base, on_timer, c);
	if (!c->mem || !c->data || !c->timer) {
		if (c->timer)
			event_free(c->timer);
		free(c->mem);
		free(c->data);
		free(c);
		return NULL;
	}
	c->ctx.sv = sv;
	c->ctx.index = index;
	fault_rng_init(&c->rng, sv->fleet->cfg.seed, index, ++sv->conn_seq);
	c->fs = faults_for(&sv->faults, index);
	struct sim_meter m;
	serve_lock(sv);
	sim_meter_load(sv->fleet, index, &m);
	uint32_t ic = m.st->invocation_counter;
	serve_unlock(sv);
	policy_of(&m, &c->pol, c->password);
	/* a meter whose security was switched off: a head-end configured
	 * for HLS-GMAC must not fall back to reading it in the clear */
	if (fault_fire(&sv->faults, c->fs, &c->rng, FAULT_PLAIN)) {
		c->pol.mechanisms = 1u << ACSE_MECH_NONE;
		c->pol.ciphering_allowed = false;
		c->pol.none_client = 0;
	}
	struct dlms_server_config cfg = {0};
	cfg.framing = sv->cfg.transport == SIM_TR_HDLC ? DLMS_FRAMING_HDLC : DLMS_FRAMING_WRAPPER;
	cfg.server_wport = 1;
	cfg.hdlc_server = (struct hdlc_addr){.upper = 1, .lower = 0, .size = 1};
	hdlc_params_default(&cfg.hdlc_params);
	cfg.hdlc_params.max_info_rx = cfg.hdlc_params.max_info_tx = 1024;
	cfg.hdlc_params.window_rx = cfg.hdlc_params.window_tx = 1;
	cfg.policy = &c->pol;
	cfg.ops = &cosem_model_ops;
	cfg.arg = &c->ctx;
	cfg.buf = (struct dlms_buffers){.rx = c->mem,
	                                .rx_cap = RX_CAP,
	                                .tx = c->mem + RX_CAP,
	                                .tx_cap = TX_CAP,
	                                .work = c->mem + RX_CAP + TX_CAP,
	                                .work_cap = WORK_CAP,
	                                .data = c->data,
	                                .data_cap = DATA_CAP};
	if (dlms_server_init(&c->srv, &cfg)) {
		event_free(c->timer);
		free(c->mem);
		free(c->data);
		free(c);
		return NULL;
	}
	c->srv.tx_counter = ic;
	c->next = ds->open;
	if (ds->open)
		ds->open->prev = c;
	ds->open = c;
	ds->nopen++;
	CNT_ADD(sv, connections, 1);
	bufferevent_setcb(bev, on_read, on_written, on_event, c);
	bufferevent_enable(bev, EV_READ | EV_WRITE);
	return c;
}

static void
refuse_fd(evutil_socket_t fd)
{
	struct linger lg = {1, 0}; /* RST: what a module that refuses does */
	setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	evutil_closesocket(fd);
}

/* A connection to meter index was accepted (takes the fd). */
static void
accept_meter(struct serve *sv, uint32_t index, evutil_socket_t fd)
{
	const struct fault_set *fs = faults_for(&sv->faults, index);
	struct fault_rng rng;
	fault_rng_init(&rng, sv->fleet->cfg.seed, index, ++sv->conn_seq);
	if (fault_fire(&sv->faults, fs, &rng, FAULT_REFUSE)) {
		CNT_ADD(sv, refused, 1);
		refuse_fd(fd);
		return;
	}
	struct bufferevent *bev = bufferevent_socket_new(sv->base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (!bev) {
		evutil_closesocket(fd);
		return;
	}
	if (!conn_new(sv, index, bev, false))
		bufferevent_free(bev);
}

static void
on_accept(struct evconnlistener *lis, evutil_socket_t fd, struct sockaddr *sa, int len, void *arg)
{
	(void)lis;
	(void)sa;
	(void)len;
	struct mlis *ml = arg;
	accept_meter(ml->sv, ml->index, fd);
}

/* The shared listener: the address the client dialled names the meter;
 * one outside the fleet (127.0.0.1, another network, a meter this run
 * does not serve) is reset as an absent module would be. */
static void
on_accept_shared(struct evconnlistener *lis, evutil_socket_t fd, struct sockaddr *sa, int len,
                 void *arg)
{
	(void)lis;
	(void)sa;
	(void)len;
	struct serve *sv = arg;
	struct sockaddr_in local;
	socklen_t ll = sizeof(local);
	int64_t idx = METER_ENOTFOUND;
	if (getsockname(fd, (struct sockaddr *)&local, &ll) == 0 && local.sin_family == AF_INET)
		idx = sim_addr_index(ntohl(local.sin_addr.s_addr));
	if (idx < (int64_t)sv->cfg.first || idx >= (int64_t)sv->fleet->cfg.count) {
		CNT_ADD(sv, refused, 1);
		refuse_fd(fd);
		return;
	}
	accept_meter(sv, (uint32_t)idx, fd);
}

static void
resume_shared(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct dlms_state *ds = arg;
	evconnlistener_enable(ds->shared);
}

/* accept() failed (out of fds, most likely): pause instead of spinning on
 * a pending connection, and try again shortly. */
static void
on_accept_error(struct evconnlistener *lis, void *arg)
{
	struct serve *sv = arg;
	struct dlms_state *ds = sv->dlms;
	evconnlistener_disable(lis);
	struct timeval tv = {0, 50000};
	evtimer_add(ds->resume, &tv);
}

/* ---- GPRS: meters connect out ------------------------------------------------ */

/* A DataNotification the meter pushes before anyone associated: plain,
 * in a wrapper PDU (client wPort 102, the push destination) or a UI frame. */
static void
push_raw(struct dconn *c)
{
	struct serve *sv = c->sv;
	uint8_t body[256], apdu[320], frame[400];
	struct mbuf b;
	mbuf_init(&b, body, sizeof(body));
	serve_lock(sv);
	struct sim_meter m;
	sim_meter_load(sv->fleet, c->index, &m);
	int64_t t = serve_now(sv);
	if (t < m.installed)
		t = m.installed;
	dev_advance(&m, t);
	cosem_push_body(&m, t, &b);
	serve_unlock(sv);
	if (b.err)
		return;
	if (c->srv.state == DLMS_SERVER_ASSOCIATED || c->srv.state == DLMS_SERVER_CONNECTED) {
		struct mbuf out;
		mbuf_init(&out, frame, sizeof(frame));
		if (dlms_server_notify(&c->srv, &out, 1, NULL, body, b.len) == 0) {
			send_out(c, out.p, out.len);
			CNT_ADD(sv, pushes, 1);
			return;
		}
	}
	if (sv->cfg.transport == SIM_TR_HDLC)
		return; /* no link yet: an HDLC meter waits for SNRM */
	struct xdlms_apdu a;
	memset(&a, 0, sizeof(a));
	a.type = XDLMS_DATA_NOTIFICATION;
	a.long_iip = 1;
	a.value = xdlms_data_raw(body, (uint32_t)b.len);
	struct mbuf ab;
	mbuf_init(&ab, apdu, sizeof(apdu));
	if (xdlms_encode(&a, &ab) < 0)
		return;
	struct mbuf out;
	mbuf_init(&out, frame, sizeof(frame));
	if (wrapper_encode(&out, 1, 102, ab.p, ab.len) < 0)
		return;
	send_out(c, out.p, out.len);
	CNT_ADD(sv, pushes, 1);
}

int
dlms_push(struct serve *sv, uint32_t index)
{
	struct dlms_state *ds = sv->dlms;
	if (!ds)
		return METER_ESTATE;
	for (struct dconn *c = ds->open; c; c = c->next)
		if (c->index == index && !c->closing) {
			/* called under the model lock by the control socket */
			serve_unlock(sv);
			push_raw(c);
			serve_lock(sv);
			return 0;
		}
	return METER_ESTATE;
}

int
dlms_push_arm(struct serve *sv, uint32_t index)
{
	struct dlms_state *ds = sv->dlms;
	if (!ds)
		return METER_ESTATE;
	if (ds->n_push_armed == sizeof(ds->push_armed) / sizeof(ds->push_armed[0]))
		return METER_ENOSPC;
	ds->push_armed[ds->n_push_armed++] = index;
	return 0;
}

/* An armed meter's management association (not the public client, 16)
 * has had a request answered and the next one is in: push now, so the
 * push reaches the head-end while it waits for that answer. */
static void
push_if_armed(struct dconn *c)
{
	struct dlms_state *ds = c->ds;
	if (c->srv.state != DLMS_SERVER_ASSOCIATED || c->srv.client == 16 || c->srv.requests < 1 ||
	    c->srv.get_blocks || c->srv.in_op)
		return;
	for (uint32_t i = 0; i < ds->n_push_armed; i++)
		if (ds->push_armed[i] == c->index) {
			ds->push_armed[i] = ds->push_armed[--ds->n_push_armed];
			push_raw(c);
			return;
		}
}

static void
gprs_event(struct bufferevent *bev, short what, void *arg)
{
	struct gprs_slot *g = arg;
	struct serve *sv = g->sv;
	if (what & BEV_EVENT_CONNECTED) {
		g->c = conn_new(sv, g->index, bev, true);
		if (!g->c) {
			bufferevent_free(bev);
			gprs_schedule(g, false);
			return;
		}
		if (sv->cfg.push) {
			struct sim_meter m;
			serve_lock(sv);
			sim_meter_load(sv->fleet, g->index, &m);
			int64_t t = serve_now(sv);
			if (t < m.installed)
				t = m.installed;
			g->c->alarms = cosem_alarms(&m, t);
			serve_unlock(sv);
			push_raw(g->c);
		}
		return;
	}
	/* connect failed */
	bufferevent_free(bev);
	gprs_schedule(g, false);
}

static void
gprs_connect(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct gprs_slot *g = arg;
	struct serve *sv = g->sv;
	struct dlms_state *ds = sv->dlms;
	const struct fault_set *fs = faults_for(&sv->faults, g->index);
	struct fault_rng rng;
	fault_rng_init(&rng, sv->fleet->cfg.seed, g->index, ++sv->conn_seq);
	if (fault_fire(&sv->faults, fs, &rng, FAULT_REFUSE)) {
		/* the module does not come up this time */
		CNT_ADD(sv, refused, 1);
		gprs_schedule(g, false);
		return;
	}
	struct bufferevent *bev = bufferevent_socket_new(sv->base, -1, BEV_OPT_CLOSE_ON_FREE);
	if (!bev) {
		gprs_schedule(g, false);
		return;
	}
	bufferevent_setcb(bev, NULL, NULL, gprs_event, g);
	if (bufferevent_socket_connect(bev, (struct sockaddr *)&ds->gprs_addr, ds->gprs_addrlen)) {
		bufferevent_free(bev);
		gprs_schedule(g, false);
	}
}

/* Reconnect after 1..2 s (soon: 0..1 s at start-up), scaled by jitter from
 * the fault stream so meters do not all come back at once. */
static void
gprs_schedule(struct gprs_slot *g, bool soon)
{
	struct fault_rng r;
	fault_rng_init(&r, g->sv->fleet->cfg.seed ^ 0x6770, g->index, ++g->sv->conn_seq);
	double s = (soon ? 0.0 : 1.0) + fault_rng_u01(&r);
	struct timeval tv = {.tv_sec = (time_t)s, .tv_usec = (suseconds_t)((s - (int)s) * 1e6)};
	evtimer_add(g->retry, &tv);
}

/* Once a second: a connected GPRS meter whose alarm register changed
 * (breaker opened, credit low, limiter trip) pushes. */
static void
alarm_tick(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct serve *sv = arg;
	struct dlms_state *ds = sv->dlms;
	for (struct dconn *c = ds->open; c; c = c->next) {
		if (!c->gprs || c->closing || c->held)
			continue;
		struct sim_meter m;
		serve_lock(sv);
		sim_meter_load(sv->fleet, c->index, &m);
		int64_t t = serve_now(sv);
		if (t < m.installed)
			t = m.installed;
		dev_advance(&m, t);
		uint32_t a = cosem_alarms(&m, t);
		serve_unlock(sv);
		if (a != c->alarms) {
			c->alarms = a;
			push_raw(c);
		}
	}
}

static int
gprs_start(struct serve *sv, struct dlms_state *ds)
{
	char host[256];
	const char *colon = strrchr(sv->cfg.gprs, ':');
	if (!colon || (size_t)(colon - sv->cfg.gprs) >= sizeof(host)) {
		fprintf(stderr, "metersim: --gprs-connect wants HOST:PORT\n");
		return -1;
	}
	memcpy(host, sv->cfg.gprs, (size_t)(colon - sv->cfg.gprs));
	host[colon - sv->cfg.gprs] = 0;
	char spec[300];
	snprintf(spec, sizeof(spec), "%s:%s", host, colon + 1);
	ds->gprs_addrlen = sizeof(ds->gprs_addr);
	if (evutil_parse_sockaddr_port(spec, (struct sockaddr *)&ds->gprs_addr,
	                               &ds->gprs_addrlen)) {
		fprintf(stderr, "metersim: bad --gprs-connect address %s\n", sv->cfg.gprs);
		return -1;
	}
	uint32_t count = sv->fleet->cfg.count - sv->cfg.first;
	uint32_t n = sv->cfg.gprs_max && sv->cfg.gprs_max < count ? sv->cfg.gprs_max : count;
	struct rlimit rl;
	getrlimit(RLIMIT_NOFILE, &rl);
	if (rl.rlim_cur > FD_RESERVE && n > rl.rlim_cur - FD_RESERVE)
		n = (uint32_t)(rl.rlim_cur - FD_RESERVE);
	ds->gprs = calloc(n, sizeof(*ds->gprs));
	if (!ds->gprs)
		return -1;
	ds->ngprs = n;
	for (uint32_t i = 0; i < n; i++) {
		struct gprs_slot *g = &ds->gprs[i];
		g->sv = sv;
		g->index = sv->cfg.first + i;
		g->retry = evtimer_new(sv->base, gprs_connect, g);
		if (!g->retry)
			return -1;
		gprs_schedule(g, true);
	}
	sv->served = n;
	if (sv->cfg.push) {
		ds->alarm_tick = event_new(sv->base, -1, EV_PERSIST, alarm_tick, sv);
		struct timeval tv = {1, 0};
		if (!ds->alarm_tick || event_add(ds->alarm_tick, &tv))
			return -1;
	}
	return 0;
}

/* ---- listeners --------------------------------------------------------------- */

static uint32_t
fd_budget(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl))
		return 1000;
	rl.rlim_cur = rl.rlim_max;
	setrlimit(RLIMIT_NOFILE, &rl);
	getrlimit(RLIMIT_NOFILE, &rl);
	return rl.rlim_cur > 2 * FD_RESERVE ? (uint32_t)(rl.rlim_cur - FD_RESERVE) : 64;
}

static int
listen_on(struct mlis *ml)
{
	struct serve *sv = ml->sv;
	struct sim_meter m;
	sim_meter_load(sv->fleet, ml->index, &m);
	char host[16];
	uint16_t port;
	sim_meter_addr(&m, sv->cfg.base_port, host, &port);
	if (!sv->cfg.base_port && sv->cfg.lo_port)
		port = sv->cfg.lo_port;
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(port)};
	inet_pton(AF_INET, host, &sin.sin_addr);
	ml->l = evconnlistener_new_bind(sv->base, on_accept, ml,
	                                LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, 8,
	                                (struct sockaddr *)&sin, sizeof(sin));
	if (!ml->l) {
		fprintf(stderr, "metersim: cannot listen on %s:%u\n", host, port);
		return -1;
	}
	return 0;
}

/*
 * A meter that refuses every connection (refuse=1) has no listener, so a
 * client gets "connection refused" as from a module that is switched off;
 * the listener comes back when the fault is cleared.  (A refusal with a
 * probability below 1 resets the accepted connection instead.)
 */
static void
sweep(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct dlms_state *ds = arg;
	for (uint32_t i = 0; i < ds->nlis; i++) {
		struct mlis *ml = &ds->lis[i];
		bool refuse = faults_for(&ml->sv->faults, ml->index)->p[FAULT_REFUSE] >= 1;
		if (refuse && ml->l) {
			evconnlistener_free(ml->l);
			ml->l = NULL;
			__atomic_add_fetch(&ml->sv->faults.fired[FAULT_REFUSE], 1,
			                   __ATOMIC_RELAXED);
		} else if (!refuse && !ml->l) {
			listen_on(ml);
		}
	}
}

void
dlms_faults_changed(struct serve *sv)
{
	if (sv->dlms && ((struct dlms_state *)sv->dlms)->sweep)
		sweep(-1, 0, sv->dlms);
}

/* One listener on INADDR_ANY for every loopback address of the fleet. */
static int
shared_start(struct serve *sv, struct dlms_state *ds, uint32_t count)
{
	uint16_t port = sv->cfg.lo_port ? sv->cfg.lo_port : 4059;
	if ((uint64_t)sv->fleet->cfg.count > (uint64_t)255 * 62500) {
		fprintf(stderr, "metersim: loopback addresses reach %u meters, not %u\n",
		        255 * 62500, sv->fleet->cfg.count);
		return -1;
	}
	struct sockaddr_in sin = {
	    .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_ANY)};
	ds->shared = evconnlistener_new_bind(sv->base, on_accept_shared, sv,
	                                     LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, -1,
	                                     (struct sockaddr *)&sin, sizeof(sin));
	ds->resume = evtimer_new(sv->base, resume_shared, ds);
	if (!ds->shared || !ds->resume) {
		fprintf(stderr, "metersim: cannot listen on 0.0.0.0:%u\n", port);
		return -1;
	}
	evconnlistener_set_error_cb(ds->shared, on_accept_error);
	sv->listeners = 1;
	sv->served = count;
	return 0;
}

int
dlms_start(struct serve *sv)
{
	struct dlms_state *ds = calloc(1, sizeof(*ds));
	if (!ds)
		return -1;
	sv->dlms = ds;
	uint32_t budget = fd_budget();
	if (sv->cfg.transport == SIM_TR_GPRS)
		return gprs_start(sv, ds);
	uint32_t count = sv->fleet->cfg.count - sv->cfg.first;
	if (!sv->cfg.base_port && !sv->cfg.per_meter)
		return shared_start(sv, ds, count);
	uint32_t n = count;
	if (sv->cfg.max_listeners && n > sv->cfg.max_listeners)
		n = sv->cfg.max_listeners;
	if (n > budget) {
		fprintf(stderr,
		        "metersim: %u file descriptors allow listeners for %u of %u meters "
		        "(RLIMIT_NOFILE hard limit); use --first to serve another slice\n",
		        budget + FD_RESERVE, budget, count);
		n = budget;
	}
	if (sv->cfg.base_port && (uint32_t)sv->cfg.base_port + n > 65536)
		n = 65536u - sv->cfg.base_port;
	ds->lis = calloc(n, sizeof(*ds->lis));
	if (!ds->lis)
		return -1;
	for (uint32_t i = 0; i < n; i++) {
		struct mlis *ml = &ds->lis[i];
		ml->index = sv->cfg.first + i;
		ml->sv = sv;
		ds->nlis = i + 1;
		if (faults_for(&sv->faults, ml->index)->p[FAULT_REFUSE] >= 1) {
			/* refusing from the start: no listener */
			__atomic_add_fetch(&sv->faults.fired[FAULT_REFUSE], 1, __ATOMIC_RELAXED);
			continue;
		}
		if (listen_on(ml))
			return -1;
	}
	sv->listeners = ds->nlis;
	sv->served = ds->nlis;
	ds->sweep = event_new(sv->base, -1, EV_PERSIST, sweep, ds);
	struct timeval tv = {0, 250000};
	if (!ds->sweep || event_add(ds->sweep, &tv))
		return -1;
	return 0;
}

void
dlms_stop(struct serve *sv)
{
	struct dlms_state *ds = sv->dlms;
	if (!ds)
		return;
	while (ds->open) {
		ds->open->gprs = false;
		conn_free(ds->open);
	}
	if (ds->sweep)
		event_free(ds->sweep);
	if (ds->alarm_tick)
		event_free(ds->alarm_tick);
	if (ds->shared)
		evconnlistener_free(ds->shared);
	if (ds->resume)
		event_free(ds->resume);
	for (uint32_t i = 0; i < ds->nlis; i++)
		if (ds->lis[i].l)
			evconnlistener_free(ds->lis[i].l);
	free(ds->lis);
	for (uint32_t i = 0; i < ds->ngprs; i++)
		if (ds->gprs[i].retry)
			event_free(ds->gprs[i].retry);
	free(ds->gprs);
	free(ds);
	sv->dlms = NULL;
}

/* ---- the run -------------------------------------------------------------------- */

static void
on_signal(evutil_socket_t sig, short what, void *arg)
{
	(void)sig;
	(void)what;
	event_base_loopexit(arg, NULL);
}

static long
rss_kib(void)
{
	FILE *f = fopen("/proc/self/statm", "r");
	long pages = 0, res = 0;
	if (f) {
		if (fscanf(f, "%ld %ld", &pages, &res) != 2)
			res = 0;
		fclose(f);
	}
	return res * (sysconf(_SC_PAGESIZE) / 1024);
}

int
serve_run(const struct sim_fleet_cfg *fcfg, const struct serve_cfg *cfg, const char *faults_spec)
{
	double t_start = real_now();
	struct serve *sv = calloc(1, sizeof(*sv));
	if (!sv)
		return 1;
	sv->cfg = *cfg;
	if (!sv->cfg.baud)
		sv->cfg.baud = 2400;
	pthread_mutex_init(&sv->lock, NULL);
	faults_init(&sv->faults);
	signal(SIGPIPE, SIG_IGN);
	int rc = 1;
	sv->fleet = sim_fleet_new(fcfg);
	if (!sv->fleet || sv->cfg.first >= fcfg->count) {
		fprintf(stderr, "metersim: cannot create the fleet\n");
		goto out;
	}
	sv->t0_real = real_now();
	sv->t0_sim = sv->cfg.start ? sv->cfg.start : (int64_t)sv->t0_real;
	if (faults_spec) {
		char err[128];
		if (faults_apply(&sv->faults, faults_spec, serve_lookup, sv, err, sizeof(err))) {
			fprintf(stderr, "metersim: --faults: %s\n", err);
			goto out;
		}
	}
	evthread_use_pthreads();
	sv->base = event_base_new();
	if (!sv->base)
		goto out;
	int r;
	switch (sv->cfg.transport) {
	case SIM_TR_MBUS:
		r = mbus_gw_start(sv);
		break;
	case SIM_TR_MODBUS:
		r = modbus_gw_start(sv);
		break;
	default:
		r = dlms_start(sv);
		break;
	}
	if (r)
		goto out;
	if (sv->cfg.control && control_start(sv, sv->cfg.control))
		goto out;
	struct event *si = evsignal_new(sv->base, SIGINT, on_signal, sv->base);
	struct event *st = evsignal_new(sv->base, SIGTERM, on_signal, sv->base);
	event_add(si, NULL);
	event_add(st, NULL);
	static const char *tn[] = {"tcpip", "hdlc", "gprs", "mbus", "modbus"};
	/* one line a script can wait for */
	printf("metersim: serving %u of %u meters over %s (%u listeners), start-up %.3f s, RSS %ld "
	       "KiB\n",
	       sv->served, fcfg->count, tn[sv->cfg.transport], sv->listeners, real_now() - t_start,
	       rss_kib());
	fflush(stdout);
	event_base_dispatch(sv->base);
	event_free(si);
	event_free(st);
	rc = 0;
out:
	control_stop(sv);
	if (sv->dlms)
		dlms_stop(sv);
	mbus_gw_stop(sv);
	modbus_gw_stop(sv);
	if (sv->base)
		event_base_free(sv->base);
	/* detached Modbus threads may still read the fleet and the faults
	 * until the process exits, which follows: leave them */
	if (cfg->transport != SIM_TR_MODBUS) {
		faults_free(&sv->faults);
		sim_fleet_free(sv->fleet);
		free(sv);
	}
	return rc;
}
