/*
 * gw_mbus.c: M-Bus gateways over TCP.  Each TCP port (base port + g) is
 * one bus carrying meters g*250 .. g*250+249 at primary addresses 1..250,
 * as `metersim export --transport mbus` lists them.  The bus answers what a
 * wired bus of Kamstrup 382 M-Bus modules would: E5 to SND_NKE, RSP_UD to
 * REQ_UD2 (built from the model with mbus_encode_rsp_ud), E5 to a
 * secondary-address selection (CI 52, wildcards allowed) that matches,
 * and nothing to what no slave is addressed by.
 *
 * Realism that head-ends trip over: one request at a time (a bus is half
 * duplex; bytes that arrive meanwhile wait), answers only after the bytes
 * would have crossed the bus at the configured baud rate (11 bits per
 * byte, request and answer), a repeated REQ_UD2 with an unchanged FCB gets
 * the previous telegram again, and when two slaves answer at once (a
 * wildcard selection that matched several, the test address 254, or the
 * collision fault) the master sees the wired-AND of both: garbled bytes
 * that fail the checksum.
 *
 * Memory: per bus ~800 bytes (FCB, access numbers, selection bitmap and
 * the last telegram); per connection a 1 KiB input buffer.
 */
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "mbus.h"
#include "serve.h"

#define BUS_SLAVES 250

struct bus;

struct bus_conn {
	struct bufferevent *bev;
	struct bus *bus;
	struct event *timer;
	struct fault_rng rng;
	bool waiting; /* an answer is crossing the bus */
	bool close_after;
	uint8_t rx[1024];
	size_t rxn;
	uint8_t out[2 * MBUS_FRAME_MAX];
	size_t out_len;
};

struct bus {
	struct serve *sv;
	uint32_t g, first, n; /* meters first .. first+n-1 */
	struct evconnlistener *lis;
	struct bus_conn *conn;
	uint8_t fcb[BUS_SLAVES]; /* last FCB seen, 0/1; 2: none since reset */
	uint8_t acc[BUS_SLAVES]; /* access numbers */
	uint8_t sel[BUS_SLAVES / 8 + 1];
	uint8_t last[MBUS_FRAME_MAX]; /* last RSP_UD, for a repeated request */
	size_t last_len;
	uint8_t last_addr;
};

struct gw {
	struct bus *bus;
	uint32_t n;
};

static bool
sel_get(const struct bus *b, unsigned i)
{
	return b->sel[i / 8] >> (i % 8) & 1;
}

static void
sel_set(struct bus *b, unsigned i, bool on)
{
	if (on)
		b->sel[i / 8] |= (uint8_t)(1u << (i % 8));
	else
		b->sel[i / 8] &= (uint8_t) ~(1u << (i % 8));
}

static void
header_of(const struct sim_meter *m, uint8_t acc, uint8_t status, struct mbus_header *h)
{
	memset(h, 0, sizeof(*h));
	h->has_id = true;
	h->id = m->serial;
	h->manufacturer = SIM_MBUS_MANUFACTURER;
	h->version = SIM_MBUS_VERSION;
	h->medium = SIM_MBUS_MEDIUM;
	h->access = acc;
	h->status = status;
}

/*
 * The telegram of meter i (slot on the bus): energies in Wh, A- as
 * subunit 1, A+ per tariff 1 and 2, power and its maximum this billing
 * period, voltage (0.1 V) and current (mA) per phase as subunits 0..2,
 * on-time in seconds.  Caller holds the model lock.
 */
static int
build_rsp_ud(struct bus *b, unsigned slot, struct mbuf *out)
{
	static const uint8_t vib_wh[] = {0x03}, vib_w[] = {0x2b}, vib_s[] = {0x20},
	                     vib_dv[] = {0xfd, 0x48}, vib_ma[] = {0xfd, 0x59};
	struct sim_meter m;
	sim_meter_load(b->sv->fleet, b->first + slot, &m);
	int64_t t = serve_now(b->sv);
	if (t < m.installed)
		t = m.installed;
	dev_advance(&m, t);
	struct sim_registers r;
	sim_registers(&m, t, &r);
	struct sim_instant in;
	sim_instant(&m, t, &in);
	struct sim_demand d;
	sim_demand(&m, sim_month_start(&m, t), t, &d);
	struct mbus_rec_out rec[16];
	size_t n = 0;
#define REC(fn_, st_, tar_, sub_, vib_, v_)                                                        \
	do {                                                                                       \
		memset(&rec[n], 0, sizeof(rec[n]));                                                \
		rec[n].function = (fn_);                                                           \
		rec[n].storage = (st_);                                                            \
		rec[n].tariff = (tar_);                                                            \
		rec[n].subunit = (sub_);                                                           \
		rec[n].dif_coding = 4;                                                             \
		rec[n].vib = (vib_);                                                               \
		rec[n].vib_len = sizeof(vib_);                                                     \
		rec[n].ival = (v_);                                                                \
		n++;                                                                               \
	} while (0)
	REC(MBUS_FN_INSTANT, 0, 0, 0, vib_wh, r.total[SIM_AP]);
	REC(MBUS_FN_INSTANT, 0, 0, 1, vib_wh, r.total[SIM_AM]);
	REC(MBUS_FN_INSTANT, 0, 1, 0, vib_wh, r.tariff[SIM_AP][0]);
	REC(MBUS_FN_INSTANT, 0, 2, 0, vib_wh, r.tariff[SIM_AP][1]);
	REC(MBUS_FN_INSTANT, 0, 0, 0, vib_s, t - m.installed);
	REC(MBUS_FN_INSTANT, 0, 0, 0, vib_w, in.p_import);
	REC(MBUS_FN_MAX, 0, 0, 0, vib_w, d.total.w);
	for (unsigned p = 0; p < 3; p++)
		REC(MBUS_FN_INSTANT, 0, 0, p, vib_dv, in.u[p]);
	for (unsigned p = 0; p < 3; p++)
		REC(MBUS_FN_INSTANT, 0, 0, p, vib_ma, in.i[p]);
#undef REC
	struct mbus_header h;
	header_of(&m, b->acc[slot]++, m.st->dev.control == DEV_CONNECTED ? 0 : 0x04, &h);
	return mbus_encode_rsp_ud(out, (uint8_t)(slot + 1), &h, rec, n);
}

/* Merge a second slave's answer into the first as the bus would: the
 * line is a wired-AND, and the second starts a little later. */
static void
collide(uint8_t *a, size_t *alen, const uint8_t *b, size_t blen, size_t cap)
{
	size_t shift = 1;
	size_t n = blen + shift > *alen ? blen + shift : *alen;
	if (n > cap)
		n = cap;
	for (size_t i = 0; i < n; i++) {
		uint8_t x = i < *alen ? a[i] : 0xff;
		uint8_t y =
		    i >= shift && i - shift < blen ? (uint8_t)(b[i - shift] << 1 | 1) : 0xff;
		a[i] = x & y;
	}
	*alen = n;
}

static void conn_free(struct bus_conn *c);
static void process(struct bus_conn *c);

static void
on_timer(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct bus_conn *c = arg;
	struct serve *sv = c->bus->sv;
	if (c->out_len) {
		bufferevent_write(c->bev, c->out, c->out_len);
		CNT_ADD(sv, bytes_out, c->out_len);
		CNT_ADD(sv, mbus_answers, 1);
	}
	c->out_len = 0;
	c->waiting = false;
	if (c->close_after) {
		conn_free(c);
		return;
	}
	process(c);
}

/* Answer for one frame (empty when no slave answers); returns false when
 * the connection is to be dropped at once. */
static bool
answer(struct bus_conn *c, const struct mbus_frame *f, struct mbuf *out, uint32_t *extra_ms)
{
	struct bus *b = c->bus;
	struct serve *sv = b->sv;
	uint8_t a = f->a;
	/* which slaves are addressed */
	unsigned slots[BUS_SLAVES];
	unsigned ns = 0;
	if (a >= MBUS_ADDR_FIRST && a <= MBUS_ADDR_LAST) {
		if ((uint32_t)(a - 1) < b->n)
			slots[ns++] = a - 1u;
	} else if (a == MBUS_ADDR_NETWORK) {
		for (unsigned i = 0; i < b->n; i++)
			if (sel_get(b, i))
				slots[ns++] = i;
	} else if (a == MBUS_ADDR_TEST || a == MBUS_ADDR_BROADCAST) {
		for (unsigned i = 0; i < b->n; i++)
			slots[ns++] = i;
	}
	bool reply = a != MBUS_ADDR_BROADCAST;
	uint8_t c_field = f->c & ~(MBUS_C_FCB | MBUS_C_FCV);
	const struct fault_set *fs = faults_for(&sv->faults, b->first + (ns ? slots[0] : 0));

	if (f->type == MBUS_FRAME_SHORT && c_field == MBUS_C_SND_NKE) {
		for (unsigned k = 0; k < ns; k++) {
			b->fcb[slots[k]] = 2;
			if (a == MBUS_ADDR_NETWORK)
				sel_set(b, slots[k], false); /* deselect */
		}
		if (reply && ns)
			mbus_encode_ack(out);
	} else if ((f->type == MBUS_FRAME_CONTROL || f->type == MBUS_FRAME_LONG) &&
	           (f->c & ~MBUS_C_FCB) == (MBUS_C_SND_UD & ~MBUS_C_FCB) &&
	           f->ci == MBUS_CI_SELECT) {
		struct mbus_telegram t;
		if (mbus_telegram_decode(f, &t) || t.kind != MBUS_TG_SELECT)
			return true;
		unsigned hits = 0;
		serve_lock(sv);
		for (unsigned i = 0; i < b->n; i++) {
			struct sim_meter m;
			sim_meter_load(sv->fleet, b->first + i, &m);
			struct mbus_header h;
			header_of(&m, 0, 0, &h);
			bool on = mbus_secondary_match(&t.sel, &h);
			sel_set(b, i, on);
			hits += on;
		}
		serve_unlock(sv);
		if (hits == 1) {
			mbus_encode_ack(out);
		} else if (hits > 1) {
			/* several ACKs a bit apart: a garbled byte */
			mbuf_u8(out, MBUS_ACK & (uint8_t)(MBUS_ACK << 1 | 1));
			__atomic_add_fetch(&sv->faults.fired[FAULT_COLLISION], 1, __ATOMIC_RELAXED);
		}
	} else if (f->type == MBUS_FRAME_SHORT &&
	           (f->c & ~MBUS_C_FCB) == (MBUS_C_REQ_UD2 & ~MBUS_C_FCB)) {
		if (!ns || !reply)
			return true;
		if (fault_fire(&sv->faults, fs, &c->rng, FAULT_NOANSWER))
			return true;
		if (fault_fire(&sv->faults, fs, &c->rng, FAULT_DROP))
			return false;
		if (fault_fire(&sv->faults, fs, &c->rng, FAULT_BUSY)) {
			static const uint8_t busy = 1; /* application busy */
			mbus_encode_long(out, MBUS_C_RSP_UD, (uint8_t)(slots[0] + 1),
			                 MBUS_CI_APP_ERROR, &busy, 1);
			return true;
		}
		unsigned s0 = slots[0];
		bool fcv = f->c & MBUS_C_FCV, fcb = f->c & MBUS_C_FCB;
		if (ns == 1 && fcv && b->fcb[s0] == (uint8_t)fcb && b->last_len &&
		    b->last_addr == s0) {
			/* the master did not toggle FCB: it lost our answer */
			mbuf_put(out, b->last, b->last_len);
		} else {
			serve_lock(sv);
			int rc = build_rsp_ud(b, s0, out);
			serve_unlock(sv);
			if (rc)
				return true;
			if (out->len <= sizeof(b->last)) {
				memcpy(b->last, out->p, out->len);
				b->last_len = out->len;
				b->last_addr = (uint8_t)s0;
			}
		}
		if (fcv)
			b->fcb[s0] = fcb;
		bool coll = ns > 1 || fault_fire(&sv->faults, fs, &c->rng, FAULT_COLLISION);
		if (coll) {
			uint8_t other[MBUS_FRAME_MAX];
			struct mbuf ob;
			mbuf_init(&ob, other, sizeof(other));
			serve_lock(sv);
			unsigned s1 = ns > 1 ? slots[1] : (s0 + 1) % b->n;
			int rc = build_rsp_ud(b, s1, &ob);
			serve_unlock(sv);
			if (!rc) {
				collide(out->p, &out->len, other, ob.len, out->cap);
				if (ns > 1)
					__atomic_add_fetch(&sv->faults.fired[FAULT_COLLISION], 1,
					                   __ATOMIC_RELAXED);
			}
		}
		if (fault_fire(&sv->faults, fs, &c->rng, FAULT_TRUNCATE))
			out->len = out->len / 2;
		fault_corrupt(&sv->faults, fs, &c->rng, out->p, out->len);
		if (fs->p[FAULT_DELAY] > 0 && fault_fire(&sv->faults, fs, &c->rng, FAULT_DELAY))
			*extra_ms += fs->delay_ms;
		if (fault_fire(&sv->faults, fs, &c->rng, FAULT_STALL)) {
			out->len = 0;
			*extra_ms += fs->stall_ms;
			c->close_after = true;
		}
	} else if (f->type == MBUS_FRAME_SHORT &&
	           (f->c & ~MBUS_C_FCB) == (MBUS_C_REQ_UD1 & ~MBUS_C_FCB)) {
		if (ns == 1 && reply)
			mbus_encode_ack(out); /* no class 1 data */
	}
	return true;
}

static void
process(struct bus_conn *c)
{
	struct serve *sv = c->bus->sv;
	while (!c->waiting && c->rxn) {
		struct mbus_frame f;
		size_t skipped = 0;
		int n = mbus_stream_next(c->rx, c->rxn, &f, &skipped);
		if (n == METER_ENEEDMORE) {
			memmove(c->rx, c->rx + skipped, c->rxn - skipped);
			c->rxn -= skipped;
			return;
		}
		if (n < 0) {
			c->rxn = 0;
			return;
		}
		size_t flen = (size_t)n - skipped;
		CNT_ADD(sv, mbus_requests, 1);
		struct mbuf out;
		mbuf_init(&out, c->out, sizeof(c->out));
		uint32_t extra_ms = 0;
		bool keep = answer(c, &f, &out, &extra_ms);
		memmove(c->rx, c->rx + n, c->rxn - (size_t)n);
		c->rxn -= (size_t)n;
		if (!keep) {
			conn_free(c);
			return;
		}
		if (out.len == 0 && extra_ms == 0)
			continue;
		c->out_len = out.len;
		c->waiting = true;
		/* the request and the answer cross the bus at 11 bits per byte */
		double secs = (double)(flen + out.len) * 11.0 / (double)sv->cfg.baud;
		uint64_t us = (uint64_t)(secs * 1e6) + (uint64_t)extra_ms * 1000;
		struct timeval tv = {.tv_sec = (time_t)(us / 1000000),
		                     .tv_usec = (suseconds_t)(us % 1000000)};
		evtimer_add(c->timer, &tv);
		return;
	}
}

static void
on_read(struct bufferevent *bev, void *arg)
{
	struct bus_conn *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	size_t n;
	while ((n = evbuffer_get_length(in)) > 0) {
		if (c->rxn == sizeof(c->rx)) {
			/* a master flooding the bus: the oldest half goes */
			memmove(c->rx, c->rx + sizeof(c->rx) / 2, sizeof(c->rx) / 2);
			c->rxn = sizeof(c->rx) / 2;
		}
		size_t room = sizeof(c->rx) - c->rxn;
		int got = evbuffer_remove(in, c->rx + c->rxn, n < room ? n : room);
		if (got <= 0)
			break;
		c->rxn += (size_t)got;
		CNT_ADD(c->bus->sv, bytes_in, (uint64_t)got);
	}
	process(c);
}

static void
conn_free(struct bus_conn *c)
{
	if (c->bus->conn == c)
		c->bus->conn = NULL;
	event_free(c->timer);
	bufferevent_free(c->bev);
	CNT_ADD(c->bus->sv, closed, 1);
	free(c);
}

static void
on_event(struct bufferevent *bev, short what, void *arg)
{
	(void)bev;
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
		conn_free(arg);
}

static void
refuse(evutil_socket_t fd)
{
	struct linger lg = {1, 0}; /* RST, as a refusing gateway does */
	setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	evutil_closesocket(fd);
}

static void
on_accept(struct evconnlistener *lis, evutil_socket_t fd, struct sockaddr *sa, int len, void *arg)
{
	(void)lis;
	(void)sa;
	(void)len;
	struct bus *b = arg;
	struct serve *sv = b->sv;
	const struct fault_set *fs = faults_for(&sv->faults, b->first);
	struct fault_rng rng;
	fault_rng_init(&rng, sv->fleet->cfg.seed, b->first, ++sv->conn_seq);
	/* a gateway serves one master: a second connection finds it busy */
	if (b->conn || fault_fire(&sv->faults, fs, &rng, FAULT_REFUSE) ||
	    fault_fire(&sv->faults, fs, &rng, FAULT_BUSY)) {
		CNT_ADD(sv, refused, 1);
		refuse(fd);
		return;
	}
	struct bus_conn *c = calloc(1, sizeof(*c));
	if (!c) {
		evutil_closesocket(fd);
		return;
	}
	c->bus = b;
	c->rng = rng;
	c->bev = bufferevent_socket_new(sv->base, fd, BEV_OPT_CLOSE_ON_FREE);
	c->timer = evtimer_new(sv->base, on_timer, c);
	if (!c->bev || !c->timer) {
		if (c->bev)
			bufferevent_free(c->bev);
		else
			evutil_closesocket(fd);
		if (c->timer)
			event_free(c->timer);
		free(c);
		return;
	}
	b->conn = c;
	CNT_ADD(sv, connections, 1);
	bufferevent_setcb(c->bev, on_read, NULL, on_event, c);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
}

int
mbus_gw_start(struct serve *sv)
{
	uint32_t count = sv->fleet->cfg.count - sv->cfg.first;
	uint32_t nbus = (count + BUS_SLAVES - 1) / BUS_SLAVES;
	uint16_t base = sv->cfg.base_port ? sv->cfg.base_port : 10000;
	if ((uint32_t)base + nbus > 65536) {
		fprintf(stderr, "metersim: %u buses do not fit above port %u\n", nbus, base);
		return -1;
	}
	struct gw *gw = calloc(1, sizeof(*gw));
	if (!gw)
		return -1;
	gw->bus = calloc(nbus, sizeof(*gw->bus));
	if (!gw->bus) {
		free(gw);
		return -1;
	}
	sv->mbus = gw;
	for (uint32_t g = 0; g < nbus; g++) {
		struct bus *b = &gw->bus[g];
		b->sv = sv;
		b->g = g;
		b->first = sv->cfg.first + g * BUS_SLAVES;
		b->n = count - g * BUS_SLAVES < BUS_SLAVES ? count - g * BUS_SLAVES : BUS_SLAVES;
		memset(b->fcb, 2, sizeof(b->fcb));
		struct sockaddr_in sin = {.sin_family = AF_INET,
		                          .sin_port = htons((uint16_t)(base + g)),
		                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
		b->lis = evconnlistener_new_bind(sv->base, on_accept, b,
		                                 LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, 16,
		                                 (struct sockaddr *)&sin, sizeof(sin));
		if (!b->lis) {
			fprintf(stderr, "metersim: cannot listen on 127.0.0.1:%u (bus %u)\n",
			        base + g, g);
			gw->n = g;
			return -1;
		}
		gw->n = g + 1;
		sv->listeners++;
		sv->served += b->n;
	}
	return 0;
}

void
mbus_gw_stop(struct serve *sv)
{
	struct gw *gw = sv->mbus;
	if (!gw)
		return;
	for (uint32_t g = 0; g < gw->n; g++) {
		if (gw->bus[g].conn)
			conn_free(gw->bus[g].conn);
		if (gw->bus[g].lis)
			evconnlistener_free(gw->bus[g].lis);
	}
	free(gw->bus);
	free(gw);
	sv->mbus = NULL;
}
