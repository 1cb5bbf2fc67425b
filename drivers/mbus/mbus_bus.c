/*
 * mbus_bus.c: the transaction queue of one M-Bus segment behind a TCP
 * gateway (see mbus_bus.h).  Each transaction (a readout or a probe) is a
 * small state machine of steps; each step sends one frame and arms one
 * timer sized for that frame and the longest answer it may get at the
 * bus's baud rate.  Exactly one step is on the wire at a time: the next
 * transaction starts only when the current one has called back.
 *
 * Callbacks run from the bus's own deferred event, never from inside
 * mbus_bus_read() or mbus_bus_probe(), and the transaction is unlinked
 * before its callback runs, so a callback may queue more work.
 *
 * Late answers.  The timeouts are what the line needs, but the far end is
 * a gateway (or a simulator) on a host that may be busy, and an answer
 * that arrives after its timeout is worse than slow: a probe's E5 taken
 * for silence prunes a whole subtree of a scan, and the late byte then
 * lands in the window of the next request and is taken for its answer.
 * So silence is believed only after a short guard past the timeout (a
 * byte in the guard is the answer, counted late), bytes that arrive for
 * no request are counted as stray (the scan repeats its last silent probe
 * when it sees one, mbus_scan.c), and the bus learns: every answer that
 * used more than two thirds of its timeout, and every late one (a stray
 * byte counts only as the late answer of a step that ended in silence,
 * within the cap's reach), widens an allowance (slack) added to the timeouts that follow, which shrinks
 * again by 1/32 per answer in time.  (The ms figures are whole ms: the
 * slack moves in steps of 1 ms.)  An idle host keeps the line's
 * timeouts; a loaded one gets retries and longer waits, not wrong results.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/util.h>

#include "mbus_bus.h"

#define RX_MAX       (4 * MBUS_FRAME_MAX)
#define OUT_MAX      (16 * MBUS_FRAME_MAX)
#define SLACK_MAX_MS 2000 /* the most the learnt allowance adds to a timeout */
#define GUARD_MS     3    /* listened past a silent timeout, plus half the slack */
#define RECONNECT_MS 1000

enum step {
	STEP_NKE,      /* SND_NKE to the primary address: E5 expected */
	STEP_SELECT,   /* selection: E5, nothing, or garbage */
	STEP_REQ,      /* REQ_UD2: RSP_UD expected */
	STEP_DESELECT, /* SND_NKE to 253 after a secondary readout */
};

enum txn_kind { TXN_READ, TXN_PROBE };

struct txn {
	struct txn *next;
	enum txn_kind kind;
	struct mbus_addr addr;
	union {
		mbus_read_fn read;
		mbus_probe_fn probe;
	} cb;
	void *arg;
	enum step step;
	int tries;
	size_t ntelegrams;
	int status;
	uint8_t out[OUT_MAX]; /* frames read so far */
	size_t out_len;
};

struct mbus_bus {
	struct event_base *base;
	char host[256];
	uint16_t port;
	int baud, latency_ms, reply_ms, connect_ms, retries, max_telegrams;

	struct bufferevent *bev;
	bool connected, connecting;
	struct event *timer;   /* answer timeout, reconnect delay */
	struct event *deliver; /* runs finished transactions' callbacks */
	struct txn *head, *tail;
	struct txn *done; /* finished, callbacks pending */
	size_t npending;
	bool on_wire;     /* the head's current step awaits its answer */
	bool failing;     /* bus_fail_all() under way: do not redial */
	size_t req_len;   /* bytes of the request on the wire */
	uint8_t fcb[256]; /* per address: next FCB to send */
	uint8_t rx[RX_MAX];
	size_t rxn;
	int64_t sent_us; /* when the step on the wire (or the last one) was sent */
	int slack_ms;    /* learnt allowance for a loaded host (see the top) */
	bool guarding;   /* the step's timeout passed in silence: the guard runs */
	bool silent;     /* the last step ended in silence: a late answer may come */
	int wait_ms;     /* the last step's timeout, slack included */
	struct mbus_bus_stats st;
};

static void step_send(struct mbus_bus *b);
static void bus_connect(struct mbus_bus *b);

int
mbus_bus_timeout_ms(int baud, size_t req_bytes, size_t reply_max, int reply_ms, int latency_ms)
{
	if (baud <= 0)
		baud = 2400;
	/* 11 bits per byte both ways, the slave's reply time of 330 bit
	 * times + 50 ms, then the gateway's own delay */
	double bits = (double)(req_bytes + reply_max) * 11.0 + 330.0;
	double ms = bits * 1000.0 / (double)baud + (reply_ms > 0 ? reply_ms : 0) +
	            (latency_ms > 0 ? latency_ms : 0);
	return (int)ms + 1;
}

static void
ms_tv(int ms, struct timeval *tv)
{
	tv->tv_sec = ms / 1000;
	tv->tv_usec = (ms % 1000) * 1000;
}

static int64_t
mono_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/*
 * An answer of got bytes to the last request came now.  What it took
 * beyond the bytes' time on the line is the wait the timeout allows for
 * (reply time, gateway latency, slack): widen the slack when that wait
 * used more than two thirds of its allowance (late or nearly so), else
 * let the slack shrink a little.
 */
static void
learn(struct mbus_bus *b, size_t got)
{
	int64_t took = (mono_us() - b->sent_us) / 1000;
	int64_t wait = took - mbus_bus_timeout_ms(b->baud, b->req_len, got, 0, 0);
	int64_t need = wait + wait / 2 - b->reply_ms - b->latency_ms;

	if (need > b->slack_ms)
		b->slack_ms = need > SLACK_MAX_MS ? SLACK_MAX_MS : (int)need;
	else
		b->slack_ms -= (b->slack_ms + 31) / 32;
	b->st.slack_ms = (uint64_t)b->slack_ms;
}

/*
 * Bytes no request on the wire asked for: an earlier answer, late.  With
 * nothing on the wire they teach the slack only as the late answer of a
 * step that ended in silence, once, and only if they came within the
 * most slack could have waited for them: a gateway that babbles while
 * the bus is idle (or long after) would otherwise hold the slack at
 * SLACK_MAX_MS for good.
 */
static void
stray_bytes(struct mbus_bus *b, size_t n)
{
	b->st.stray++;
	if (!b->on_wire) {
		int64_t took = (mono_us() - b->sent_us) / 1000;
		bool late = b->silent && took <= (int64_t)b->wait_ms + SLACK_MAX_MS;
		b->silent = false;
		if (!late)
			return;
	}
	learn(b, n);
}

/* ---- finishing transactions ------------------------------------------------ */

static void
deliver_cb(evutil_socket_t fd, short what, void *arg)
{
	struct mbus_bus *b = arg;
	(void)fd;
	(void)what;

	while (b->done != NULL) {
		struct txn *t = b->done;
		b->done = t->next;
		if (t->kind == TXN_READ)
			t->cb.read(t->status, t->out, t->out_len, t->ntelegrams, t->arg);
		else
			t->cb.probe(t->status, t->arg);
		free(t);
	}
}

/* The head transaction is over: unlink it, start the next one. */
static void
txn_finish(struct mbus_bus *b, int status)
{
	struct txn *t = b->head;

	evtimer_del(b->timer);
	b->on_wire = false;
	b->guarding = false;
	b->head = t->next;
	if (b->head == NULL)
		b->tail = NULL;
	b->npending--;
	t->status = status;
	if (t->kind == TXN_READ) {
		b->st.readouts++;
		if (status != 0)
			b->st.failed++;
	}
	t->next = NULL;
	struct txn **pp = &b->done;
	while (*pp != NULL)
		pp = &(*pp)->next;
	*pp = t;
	event_active(b->deliver, EV_TIMEOUT, 0);
	if (b->head != NULL)
		step_send(b);
}

/* ---- the connection ---------------------------------------------------------- */

static void
bus_drop(struct mbus_bus *b)
{
	if (b->bev != NULL) {
		bufferevent_setcb(b->bev, NULL, NULL, NULL, NULL);
		bufferevent_free(b->bev);
	}
	b->bev = NULL;
	b->connected = b->connecting = false;
	b->rxn = 0;
}

/* The gateway cannot be reached: everything queued fails (the callers
 * retry in their next round), and the next transaction dials again. */
static void
bus_fail_all(struct mbus_bus *b)
{
	bus_drop(b);
	b->failing = true;
	while (b->head != NULL)
		txn_finish(b, METER_EABORTED);
	b->failing = false;
}

static void on_read(struct bufferevent *bev, void *arg);

static void
on_event(struct bufferevent *bev, short what, void *arg)
{
	struct mbus_bus *b = arg;
	(void)bev;

	if (what & BEV_EVENT_CONNECTED) {
		evutil_socket_t fd = bufferevent_getfd(b->bev);
		int one = 1;
		/* one small frame per exchange: no Nagle delay */
		if (fd >= 0)
			(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		bufferevent_set_timeouts(b->bev, NULL, NULL);
		b->connecting = false;
		b->connected = true;
		b->st.connects++;
		if (b->head != NULL)
			step_send(b);
		return;
	}
	if (!(what & (BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT)))
		return;
	if (b->connected && b->head != NULL) {
		/* The gateway dropped an established connection: the readout
		 * on the wire is lost, the ones behind it dial again. */
		bus_drop(b);
		txn_finish(b, METER_EABORTED);
		return;
	}
	/* No connection at all: everything queued would fail the same way. */
	bus_fail_all(b);
}

static void
bus_connect(struct mbus_bus *b)
{
	struct sockaddr_storage ss;
	int sslen = sizeof(ss);
	char addr[300];
	struct timeval tv;

	if (b->connecting || b->connected || b->failing)
		return;
	snprintf(addr, sizeof(addr), strchr(b->host, ':') ? "[%s]:%u" : "%s:%u", b->host, b->port);
	memset(&ss, 0, sizeof(ss));
	b->bev = bufferevent_socket_new(b->base, -1, BEV_OPT_CLOSE_ON_FREE);
	if (b->bev == NULL)
		goto fail;
	bufferevent_setcb(b->bev, on_read, NULL, on_event, b);
	ms_tv(b->connect_ms, &tv);
	bufferevent_set_timeouts(b->bev, NULL, &tv);
	bufferevent_enable(b->bev, EV_READ | EV_WRITE);
	b->connecting = true;
	if (evutil_parse_sockaddr_port(addr, (struct sockaddr *)&ss, &sslen) == 0) {
		if (bufferevent_socket_connect(b->bev, (struct sockaddr *)&ss, sslen) != 0)
			goto fail;
	} else if (bufferevent_socket_connect_hostname(b->bev, NULL, AF_UNSPEC, b->host, b->port) !=
	           0) {
		goto fail;
	}
	return;
fail:
	bus_fail_all(b);
}

/* ---- steps ------------------------------------------------------------------- */

static uint8_t
txn_a(const struct txn *t)
{
	return t->addr.secondary ? MBUS_ADDR_NETWORK : t->addr.primary;
}

static void
step_send(struct mbus_bus *b)
{
	struct txn *t = b->head;
	uint8_t frame[MBUS_FRAME_MAX];
	struct mbuf m;
	size_t reply_max = 1;
	int ms;

	if (t == NULL || b->on_wire || b->failing)
		return;
	if (!b->connected) {
		bus_connect(b);
		return;
	}
	mbuf_init(&m, frame, sizeof(frame));
	switch (t->step) {
	case STEP_NKE:
		mbus_encode_snd_nke(&m, t->addr.primary);
		break;
	case STEP_SELECT:
		mbus_encode_select(&m, &t->addr.sec);
		b->st.selections++;
		break;
	case STEP_REQ:
		mbus_encode_req_ud2(&m, txn_a(t), b->fcb[txn_a(t)] != 0);
		reply_max = MBUS_FRAME_MAX;
		break;
	case STEP_DESELECT:
		mbus_encode_snd_nke(&m, MBUS_ADDR_NETWORK);
		break;
	}
	/* Whatever is left from an earlier answer belongs to it. */
	size_t stale = evbuffer_get_length(bufferevent_get_input(b->bev));
	if (stale > 0) {
		stray_bytes(b, stale);
		evbuffer_drain(bufferevent_get_input(b->bev), stale);
	}
	b->rxn = 0;
	b->guarding = false;
	if (bufferevent_write(b->bev, frame, m.len) != 0) {
		bus_fail_all(b);
		return;
	}
	b->st.requests++;
	b->st.bytes_out += m.len;
	b->req_len = m.len;
	b->on_wire = true;
	b->sent_us = mono_us();
	ms = mbus_bus_timeout_ms(b->baud, m.len, reply_max, b->reply_ms, b->latency_ms) +
	     b->slack_ms;
	b->wait_ms = ms;
	b->silent = false;
	struct timeval tv;
	ms_tv(ms, &tv);
	evtimer_add(b->timer, &tv);
}

/* The current step is done: on to the next one or finish. */
static void
step_next(struct mbus_bus *b, enum step next)
{
	b->on_wire = false;
	b->guarding = false;
	evtimer_del(b->timer);
	b->head->step = next;
	b->head->tries = 0;
	step_send(b);
}

/* No (usable) answer to the current step. */
static void
step_retry(struct mbus_bus *b, int why)
{
	struct txn *t = b->head;

	b->on_wire = false;
	b->guarding = false;
	evtimer_del(b->timer);
	if (t->tries < b->retries) {
		t->tries++;
		b->st.retries++;
		step_send(b); /* the same FCB: a slave that answered resends */
		return;
	}
	if (t->step == STEP_NKE && why == METER_ETIMEOUT) {
		/* Some slaves never acknowledge SND_NKE; the readout decides. */
		step_next(b, STEP_REQ);
		return;
	}
	if (t->step == STEP_DESELECT) {
		txn_finish(b, 0); /* the data is in; a lost deselect is harmless */
		return;
	}
	txn_finish(b, why);
}

/* Does the telegram announce another one (DIF 0x1F)? */
static bool
more_follows(const struct mbus_frame *f)
{
	struct mbus_telegram tg;
	struct mbus_iter it;
	struct mbus_record r;

	if (mbus_telegram_decode(f, &tg) != 0 || tg.kind != MBUS_TG_VARIABLE)
		return false;
	mbus_iter_init(&it, &tg);
	while (mbus_records_next(&it, &r) == 1)
		if (r.function == MBUS_FN_MORE_FOLLOWS)
			return true;
	return false;
}

static void
got_rsp(struct mbus_bus *b, const uint8_t *p, size_t n, const struct mbus_frame *f)
{
	struct txn *t = b->head;
	uint8_t a = txn_a(t);

	/* The answer arrived: the next request to this slave toggles FCB. */
	b->fcb[a] ^= 1;
	if (f->type != MBUS_FRAME_LONG || (f->c & 0x0F) != MBUS_C_RSP_UD) {
		step_retry(b, METER_EPROTO);
		return;
	}
	if (t->out_len + n > sizeof(t->out)) {
		txn_finish(b, METER_ENOSPC);
		return;
	}
	memcpy(t->out + t->out_len, p, n);
	t->out_len += n;
	t->ntelegrams++;
	if (f->ci == MBUS_CI_APP_ERROR) {
		t->status = METER_EAPPERR;
		if (t->addr.secondary)
			step_next(b, STEP_DESELECT);
		else
			txn_finish(b, METER_EAPPERR);
		return;
	}
	if (more_follows(f) && t->ntelegrams < (size_t)b->max_telegrams) {
		step_next(b, STEP_REQ);
		return;
	}
	if (t->addr.secondary)
		step_next(b, STEP_DESELECT);
	else
		txn_finish(b, 0);
}

static void
process(struct mbus_bus *b)
{
	struct txn *t = b->head;
	struct mbus_frame f;
	size_t skipped = 0;
	int n;

	if (t == NULL || !b->on_wire || b->rxn == 0)
		return;
	if (b->guarding) {
		/* past the timeout: this is the answer, late */
		b->st.late++;
		b->guarding = false;
		evtimer_del(b->timer);
		/* the rest of a long answer gets the step's whole time again */
		struct timeval tv;
		ms_tv(mbus_bus_timeout_ms(b->baud, b->req_len, t->step == STEP_REQ ? MBUS_FRAME_MAX : 1,
		                          b->reply_ms, b->latency_ms) +
		          b->slack_ms,
		      &tv);
		evtimer_add(b->timer, &tv);
	}
	if (t->step != STEP_REQ) {
		learn(b, b->rxn);
		/* single-character answers: E5, or a garbled byte when
		 * several slaves acknowledged at once */
		bool ack = b->rx[0] == MBUS_ACK && b->rxn == 1;
		if (t->kind == TXN_PROBE) {
			b->on_wire = false;
			evtimer_del(b->timer);
			if (!ack)
				b->st.garbled++;
			/* A probe's answer is one byte (E5, or the garbled byte
			 * of ACKs at once); more may hold an earlier probe's late
			 * answer too.  Still a collision, as on a wired bus
			 * where ACKs a little apart arrive whole, but counted
			 * stray so that the scan doubts its last silence. */
			if (b->rxn > 1)
				b->st.stray++;
			txn_finish(b, ack ? MBUS_PROBE_ONE : MBUS_PROBE_COLLISION);
			return;
		}
		if (!ack) {
			b->st.garbled++;
			if (t->step == STEP_SELECT) {
				/* several slaves match: not one meter's address */
				b->on_wire = false;
				txn_finish(b, METER_ECOLLISION);
			} else {
				step_retry(b, METER_ECOLLISION);
			}
			return;
		}
		if (t->step == STEP_DESELECT) {
			b->on_wire = false;
			txn_finish(b, t->status);
			return;
		}
		if (t->step == STEP_NKE)
			b->fcb[t->addr.primary] = 1; /* reset: the first REQ_UD2 has FCB 1 */
		else
			b->fcb[MBUS_ADDR_NETWORK] = 1;
		step_next(b, STEP_REQ);
		return;
	}
	for (;;) {
		n = mbus_stream_next(b->rx, b->rxn, &f, &skipped);
		if (n == METER_ENEEDMORE)
			return; /* the rest, or the timeout */
		if (f.type != MBUS_FRAME_ACK)
			break;
		/* a late E5 of an earlier exchange is not this answer */
		stray_bytes(b, 1);
		memmove(b->rx, b->rx + n, b->rxn - (size_t)n);
		b->rxn -= (size_t)n;
	}
	learn(b, (size_t)n);
	got_rsp(b, b->rx + skipped, (size_t)n - skipped, &f);
}

static void
on_read(struct bufferevent *bev, void *arg)
{
	struct mbus_bus *b = arg;
	struct evbuffer *in = bufferevent_get_input(bev);

	while (evbuffer_get_length(in) > 0) {
		size_t room = sizeof(b->rx) - b->rxn;
		if (room == 0) {
			/* more than any answer: noise, the timeout decides */
			evbuffer_drain(in, evbuffer_get_length(in));
			break;
		}
		int got = evbuffer_remove(in, b->rx + b->rxn, room);
		if (got <= 0)
			break;
		b->rxn += (size_t)got;
		b->st.bytes_in += (uint64_t)got;
	}
	if (b->on_wire) {
		process(b);
	} else if (b->rxn > 0) {
		stray_bytes(b, b->rxn); /* nobody asked: an answer that came late */
		b->rxn = 0;
	}
}

static void
timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct mbus_bus *b = arg;
	struct txn *t = b->head;
	(void)fd;
	(void)what;

	if (t == NULL || !b->on_wire)
		return;
	if (b->rxn == 0 && !b->guarding) {
		/* silence is believed only after the guard */
		struct timeval tv;
		b->guarding = true;
		ms_tv(GUARD_MS + b->slack_ms / 2, &tv);
		evtimer_add(b->timer, &tv);
		return;
	}
	b->guarding = false;
	if (b->rxn == 0) {
		b->st.timeouts++;
		b->silent = true;
		if (t->kind == TXN_PROBE) {
			b->on_wire = false;
			txn_finish(b, MBUS_PROBE_NONE);
			return;
		}
		if (t->step == STEP_SELECT) {
			b->on_wire = false;
			txn_finish(b, METER_ENOTFOUND);
			return;
		}
		step_retry(b, METER_ETIMEOUT);
		return;
	}
	/* bytes came but no frame: two slaves at once, or noise */
	b->st.garbled++;
	step_retry(b, METER_ECOLLISION);
}

/* ---- public ------------------------------------------------------------------ */

struct mbus_bus *
mbus_bus_new(struct event_base *base, const struct mbus_bus_params *p)
{
	struct mbus_bus *b = calloc(1, sizeof(*b));
	if (b == NULL)
		return NULL;
	b->base = base;
	snprintf(b->host, sizeof(b->host), "%s", p->host ? p->host : "");
	b->port = p->port;
	b->baud = p->baud > 0 ? p->baud : 2400;
	b->latency_ms = p->latency_ms >= 0 ? p->latency_ms : 100;
	b->reply_ms = p->reply_ms > 0 ? p->reply_ms : 50;
	b->connect_ms = p->connect_timeout_ms > 0 ? p->connect_timeout_ms : 5000;
	b->retries = p->retries >= 0 ? p->retries : 2;
	b->max_telegrams = p->max_telegrams > 0 ? p->max_telegrams : 16;
	b->timer = evtimer_new(base, timer_cb, b);
	b->deliver = event_new(base, -1, 0, deliver_cb, b);
	if (b->timer == NULL || b->deliver == NULL) {
		mbus_bus_free(b);
		return NULL;
	}
	memset(b->fcb, 1, sizeof(b->fcb));
	return b;
}

void
mbus_bus_free(struct mbus_bus *b)
{
	if (b == NULL)
		return;
	bus_drop(b);
	while (b->head != NULL) {
		struct txn *t = b->head;
		b->head = t->next;
		free(t);
	}
	while (b->done != NULL) {
		struct txn *t = b->done;
		b->done = t->next;
		free(t);
	}
	if (b->timer)
		event_free(b->timer);
	if (b->deliver)
		event_free(b->deliver);
	free(b);
}

static int
txn_queue(struct mbus_bus *b, struct txn *t)
{
	t->next = NULL;
	if (b->tail)
		b->tail->next = t;
	else
		b->head = t;
	b->tail = t;
	b->npending++;
	if (b->head == t)
		step_send(b);
	return 0;
}

int
mbus_bus_read(struct mbus_bus *b, const struct mbus_addr *a, mbus_read_fn cb, void *arg)
{
	struct txn *t = calloc(1, sizeof(*t));
	if (t == NULL)
		return -1;
	t->kind = TXN_READ;
	t->addr = *a;
	t->cb.read = cb;
	t->arg = arg;
	if (!a->secondary)
		t->step = STEP_NKE;
	else
		t->step = a->selected ? STEP_REQ : STEP_SELECT;
	return txn_queue(b, t);
}

int
mbus_bus_probe(struct mbus_bus *b, const struct mbus_secondary *mask, mbus_probe_fn cb, void *arg)
{
	struct txn *t = calloc(1, sizeof(*t));
	if (t == NULL)
		return -1;
	t->kind = TXN_PROBE;
	t->addr.secondary = true;
	t->addr.sec = *mask;
	t->step = STEP_SELECT;
	t->cb.probe = cb;
	t->arg = arg;
	return txn_queue(b, t);
}

size_t
mbus_bus_drop_queued(struct mbus_bus *b, void (*dropped)(void *arg))
{
	size_t n = 0;

	if (b->head == NULL)
		return 0;
	while (b->head->next != NULL) {
		struct txn *t = b->head->next;
		b->head->next = t->next;
		b->npending--;
		n++;
		if (dropped != NULL)
			dropped(t->arg);
		free(t);
	}
	b->tail = b->head;
	return n;
}

size_t
mbus_bus_pending(const struct mbus_bus *b)
{
	return b->npending;
}

const struct mbus_bus_stats *
mbus_bus_stats(const struct mbus_bus *b)
{
	return &b->st;
}
