/*
 * test_mbus_bus.c: the M-Bus bus driver (drivers/mbus/mbus_bus.c) against
 * a scripted gateway on loopback, in process: a libevent listener whose
 * slaves answer with telegrams built by meterlib's encoder.  Checked: the
 * order of frames on the wire (SND_NKE, REQ_UD2 with the FCB toggled per
 * answer, selection at 253 and deselection), multi-telegram readouts (DIF
 * 0x1F), a lost answer retried with the same FCB and answered with the same
 * telegram, timeouts after the retries, and never two requests on the bus
 * at once.  A host too busy to answer in time: an answer after the
 * timeout is counted stray and widens the timeouts that follow.
 */
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "mbus.h"
#include "mbus/mbus_bus.h"

#define LOGMAX 64

struct wire {
	char what[16]; /* "nke", "req", "sel", "other" */
	uint8_t a;
	int fcb;
};

struct gateway {
	struct event_base *base;
	struct evconnlistener *lis;
	struct bufferevent *bev;
	struct event *reply; /* answers go out a little later, like a bus */
	uint16_t port;
	uint8_t rx[1024];
	size_t rxn;
	uint8_t out[MBUS_FRAME_MAX];
	size_t out_len;
	bool busy;    /* an answer is pending */
	bool overlap; /* a request came while busy */
	struct wire log[LOGMAX];
	size_t nlog;
	/* slaves 1..5 answer; each has a chain of `chain` telegrams */
	int chain;
	int next[256];     /* telegram index to send next */
	int last_fcb[256]; /* -1 after SND_NKE */
	bool selected;
	uint32_t sec_id; /* the slave at address 3 has this id */
	int drop_req;    /* ignore the n-th REQ_UD2 (1-based), 0: none */
	int nreq;
	bool mute;    /* nobody answers anything */
	int close_on; /* close the connection at the n-th frame (1-based) */
	int nframes;
	int reply_us; /* how long an answer takes; 0: 3 ms */
};

static void
log_wire(struct gateway *g, const char *what, uint8_t a, int fcb)
{
	if (g->nlog < LOGMAX) {
		snprintf(g->log[g->nlog].what, sizeof(g->log[0].what), "%s", what);
		g->log[g->nlog].a = a;
		g->log[g->nlog].fcb = fcb;
		g->nlog++;
	}
}

/* Telegram k of slave a: one energy record (a*1000 + k), and DIF 0x1F
 * unless it is the last of the chain. */
static void
telegram(struct gateway *g, uint8_t a, int k, struct mbuf *out)
{
	static const uint8_t vib_wh[] = {0x03};
	struct mbus_rec_out rec[2];
	struct mbus_header h = {.has_id = true,
	                        .id = a == 3 ? g->sec_id : 10000000u + a,
	                        .manufacturer = 0x2c2d,
	                        .version = 0x1b,
	                        .medium = 2,
	                        .access = (uint8_t)k};
	size_t n = 0;

	memset(rec, 0, sizeof(rec));
	rec[n].function = MBUS_FN_INSTANT;
	rec[n].dif_coding = 4;
	rec[n].vib = vib_wh;
	rec[n].vib_len = 1;
	rec[n].ival = a * 1000 + k;
	n++;
	if (k + 1 < g->chain) {
		rec[n].function = MBUS_FN_MORE_FOLLOWS;
		n++;
	}
	cr_assert_eq(mbus_encode_rsp_ud(out, a, &h, rec, n), 0);
}

static void
reply_cb(evutil_socket_t fd, short what, void *arg)
{
	struct gateway *g = arg;
	(void)fd;
	(void)what;
	if (g->out_len && g->bev)
		bufferevent_write(g->bev, g->out, g->out_len);
	g->out_len = 0;
	g->busy = false;
}

static void
answer(struct gateway *g, const struct mbus_frame *f)
{
	struct mbuf out;
	uint8_t a = f->a;

	mbuf_init(&out, g->out, sizeof(g->out));
	if (f->type == MBUS_FRAME_SHORT && f->c == MBUS_C_SND_NKE) {
		log_wire(g, "nke", a, -1);
		if (a == MBUS_ADDR_NETWORK) {
			if (!g->selected)
				return;
			g->selected = false;
			a = 3;
		}
		g->last_fcb[a] = -1;
		g->next[a] = 0;
		if (!g->mute && a >= 1 && a <= 5)
			mbus_encode_ack(&out);
	} else if (f->type == MBUS_FRAME_LONG && f->ci == MBUS_CI_SELECT) {
		struct mbus_telegram t;
		struct mbus_header h = {
		    .id = g->sec_id, .manufacturer = 0x2c2d, .version = 0x1b, .medium = 2};
		log_wire(g, "sel", a, -1);
		cr_assert_eq(mbus_telegram_decode(f, &t), 0);
		g->selected = mbus_secondary_match(&t.sel, &h);
		if (g->selected && !g->mute)
			mbus_encode_ack(&out);
	} else if (f->type == MBUS_FRAME_SHORT &&
	           (f->c & ~MBUS_C_FCB) == (MBUS_C_REQ_UD2 & ~MBUS_C_FCB)) {
		int fcb = (f->c & MBUS_C_FCB) ? 1 : 0;
		log_wire(g, "req", a, fcb);
		if (a == MBUS_ADDR_NETWORK) {
			if (!g->selected)
				return;
			a = 3;
		}
		if (g->mute || a < 1 || a > 5 || ++g->nreq == g->drop_req)
			return;
		/* FCB toggled: the next telegram; the same: the last again */
		if (g->last_fcb[a] == fcb && g->next[a] > 0)
			g->next[a]--;
		g->last_fcb[a] = fcb;
		telegram(g, a, g->next[a] % g->chain, &out);
		g->next[a]++;
	} else {
		log_wire(g, "other", a, -1);
	}
	if (out.len > 0) {
		struct timeval tv = {0, g->reply_us ? g->reply_us : 3000};
		g->out_len = out.len;
		g->busy = true;
		evtimer_add(g->reply, &tv);
	}
}

static void
gw_read(struct bufferevent *bev, void *arg)
{
	struct gateway *g = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	int n;

	n = evbuffer_remove(in, g->rx + g->rxn, sizeof(g->rx) - g->rxn);
	if (n > 0)
		g->rxn += (size_t)n;
	for (;;) {
		struct mbus_frame f;
		size_t skipped = 0;
		n = mbus_stream_next(g->rx, g->rxn, &f, &skipped);
		if (n == METER_ENEEDMORE)
			break;
		if (g->busy)
			g->overlap = true;
		if (++g->nframes == g->close_on) {
			/* the gateway drops the master mid-readout */
			bufferevent_free(g->bev);
			g->bev = NULL;
			g->rxn = 0;
			return;
		}
		answer(g, &f);
		memmove(g->rx, g->rx + n, g->rxn - (size_t)n);
		g->rxn -= (size_t)n;
	}
}

static void
gw_accept(struct evconnlistener *lis, evutil_socket_t fd, struct sockaddr *sa, int len, void *arg)
{
	struct gateway *g = arg;
	(void)lis;
	(void)sa;
	(void)len;
	g->bev = bufferevent_socket_new(g->base, fd, BEV_OPT_CLOSE_ON_FREE);
	bufferevent_setcb(g->bev, gw_read, NULL, NULL, g);
	bufferevent_enable(g->bev, EV_READ | EV_WRITE);
}

static void
gw_init(struct gateway *g)
{
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof(sin);

	memset(g, 0, sizeof(*g));
	g->base = event_base_new();
	g->chain = 1;
	g->sec_id = 87654321;
	for (int i = 0; i < 256; i++)
		g->last_fcb[i] = -1;
	g->lis = evconnlistener_new_bind(g->base, gw_accept, g,
	                                 LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, 4,
	                                 (struct sockaddr *)&sin, sizeof(sin));
	cr_assert_not_null(g->lis);
	getsockname(evconnlistener_get_fd(g->lis), (struct sockaddr *)&sin, &sl);
	g->port = ntohs(sin.sin_port);
	g->reply = evtimer_new(g->base, reply_cb, g);
}

static void
gw_free(struct gateway *g)
{
	if (g->bev)
		bufferevent_free(g->bev);
	evconnlistener_free(g->lis);
	event_free(g->reply);
	event_base_free(g->base);
}

struct result {
	int status;
	size_t ntelegrams;
	int64_t values[8];
	size_t nvalues;
	bool called;
	bool dropped; /* handed back by mbus_bus_drop_queued() */
};

static void
read_cb(int status, const uint8_t *frames, size_t len, size_t nt, void *arg)
{
	struct result *r = arg;
	size_t off = 0;

	r->called = true;
	r->status = status;
	r->ntelegrams = nt;
	while (off < len) {
		struct mbus_frame f;
		struct mbus_telegram t;
		struct mbus_iter it;
		struct mbus_record rec;
		int n = mbus_frame_parse(frames + off, len - off, &f);
		cr_assert_gt(n, 0, "frames handed back must parse");
		off += (size_t)n;
		cr_assert_eq(mbus_telegram_decode(&f, &t), 0);
		mbus_iter_init(&it, &t);
		while (mbus_records_next(&it, &rec) == 1)
			if (rec.function == MBUS_FN_INSTANT && r->nvalues < 8)
				r->values[r->nvalues++] = rec.ival;
	}
}

static struct mbus_bus *
bus_for(struct gateway *g, int retries)
{
	struct mbus_bus_params p = {.host = "127.0.0.1",
	                            .port = g->port,
	                            .baud = 38400,
	                            .latency_ms = 0,
	                            .reply_ms = 20,
	                            .retries = retries};
	struct mbus_bus *b = mbus_bus_new(g->base, &p);
	cr_assert_not_null(b);
	return b;
}

static void
run_until(struct gateway *g, struct result *r, size_t n)
{
	for (int i = 0; i < 20000; i++) {
		size_t done = 0;
		for (size_t k = 0; k < n; k++)
			done += r[k].called;
		if (done == n)
			return;
		event_base_loop(g->base, EVLOOP_ONCE);
	}
	cr_assert_fail("the readouts did not finish");
}

static void
expect_wire(const struct gateway *g, const struct wire *want, size_t n)
{
	cr_assert_eq(g->nlog, n, "%zu frames on the wire, expected %zu", g->nlog, n);
	for (size_t i = 0; i < n; i++) {
		cr_assert_str_eq(g->log[i].what, want[i].what, "frame %zu", i);
		cr_assert_eq(g->log[i].a, want[i].a, "frame %zu address", i);
		cr_assert_eq(g->log[i].fcb, want[i].fcb, "frame %zu FCB", i);
	}
}

Test(mbus_bus, primary_multi_telegram_toggles_fcb)
{
	struct gateway g;
	struct result r = {0};
	struct mbus_addr a = {.primary = 2};

	gw_init(&g);
	g.chain = 3;
	struct mbus_bus *b = bus_for(&g, 2);
	cr_assert_eq(mbus_bus_read(b, &a, read_cb, &r), 0);
	run_until(&g, &r, 1);
	cr_assert_eq(r.status, 0);
	cr_assert_eq(r.ntelegrams, 3);
	cr_assert_eq(r.nvalues, 3);
	for (int k = 0; k < 3; k++)
		cr_assert_eq(r.values[k], 2000 + k);
	static const struct wire want[] = {
	    {"nke", 2, -1}, {"req", 2, 1}, {"req", 2, 0}, {"req", 2, 1}};
	expect_wire(&g, want, 4);
	cr_assert_eq(mbus_bus_stats(b)->retries, 0);
	mbus_bus_free(b);
	gw_free(&g);
}

Test(mbus_bus, lost_answer_is_asked_again_with_the_same_fcb)
{
	struct gateway g;
	struct result r = {0};
	struct mbus_addr a = {.primary = 4};

	gw_init(&g);
	g.chain = 3;
	g.drop_req = 2; /* the second telegram's answer is lost */
	struct mbus_bus *b = bus_for(&g, 2);
	cr_assert_eq(mbus_bus_read(b, &a, read_cb, &r), 0);
	run_until(&g, &r, 1);
	cr_assert_eq(r.status, 0);
	cr_assert_eq(r.ntelegrams, 3);
	for (int k = 0; k < 3; k++)
		cr_assert_eq(r.values[k], 4000 + k, "telegram %d", k);
	static const struct wire want[] = {
	    {"nke", 4, -1}, {"req", 4, 1}, {"req", 4, 0}, {"req", 4, 0}, {"req", 4, 1}};
	expect_wire(&g, want, 5);
	cr_assert_eq(mbus_bus_stats(b)->retries, 1);
	cr_assert_eq(mbus_bus_stats(b)->timeouts, 1);
	mbus_bus_free(b);
	gw_free(&g);
}

Test(mbus_bus, secondary_selects_reads_at_253_and_deselects)
{
	struct gateway g;
	struct result r = {0}, miss = {0};
	struct mbus_addr a = {.secondary = true};
	struct mbus_addr nobody = {.secondary = true};

	gw_init(&g);
	cr_assert_eq(mbus_secondary_parse("876543212d2c1b02", &a.sec), 0);
	cr_assert_eq(mbus_secondary_parse("11111111", &nobody.sec), 0);
	struct mbus_bus *b = bus_for(&g, 1);
	cr_assert_eq(mbus_bus_read(b, &a, read_cb, &r), 0);
	cr_assert_eq(mbus_bus_read(b, &nobody, read_cb, &miss), 0);
	cr_assert_eq(mbus_bus_pending(b), 2);
	run_until(&g, &r, 1);
	run_until(&g, &miss, 1);
	cr_assert_eq(r.status, 0);
	cr_assert_eq(r.ntelegrams, 1);
	cr_assert_eq(r.values[0], 3000);
	cr_assert_eq(miss.status, METER_ENOTFOUND);
	static const struct wire want[] = {
	    {"sel", 253, -1}, {"req", 253, 1}, {"nke", 253, -1}, {"sel", 253, -1}};
	expect_wire(&g, want, 4);
	cr_assert_eq(mbus_bus_pending(b), 0);
	mbus_bus_free(b);
	gw_free(&g);
}

Test(mbus_bus, silent_slave_times_out_after_the_retries)
{
	struct gateway g;
	struct result r = {0};
	struct mbus_addr a = {.primary = 9}; /* nobody there */

	gw_init(&g);
	struct mbus_bus *b = bus_for(&g, 2);
	cr_assert_eq(mbus_bus_read(b, &a, read_cb, &r), 0);
	run_until(&g, &r, 1);
	cr_assert_eq(r.status, METER_ETIMEOUT);
	/* SND_NKE three times, then REQ_UD2 three times with one FCB */
	static const struct wire want[] = {{"nke", 9, -1}, {"nke", 9, -1}, {"nke", 9, -1},
	                                   {"req", 9, 1},  {"req", 9, 1},  {"req", 9, 1}};
	expect_wire(&g, want, 6);
	cr_assert_eq(mbus_bus_stats(b)->timeouts, 6);
	cr_assert_eq(mbus_bus_stats(b)->failed, 1);
	mbus_bus_free(b);
	gw_free(&g);
}

static void
probe_cb(int result, void *arg)
{
	int *r = arg;
	*r = result;
}

/*
 * The gateway answers a selection 60 ms late, past the probe's timeout
 * (34 ms at 38400 Bd with 20 ms reply time) and its guard: the probe is
 * silent, the E5 then arrives for no request (stray) and teaches the bus
 * a slack, so the same probe sent again is answered in time.
 */
Test(mbus_bus, a_late_answer_is_stray_and_widens_the_timeouts)
{
	struct gateway g;
	struct mbus_secondary mask;
	int r1 = -100, r2 = -100;

	gw_init(&g);
	g.reply_us = 60000;
	struct mbus_bus *b = bus_for(&g, 0);
	cr_assert_eq(mbus_secondary_parse("87654321", &mask), 0);
	cr_assert_eq(mbus_bus_probe(b, &mask, probe_cb, &r1), 0);
	for (int i = 0; i < 20000 && r1 == -100; i++)
		event_base_loop(g.base, EVLOOP_ONCE);
	cr_assert_eq(r1, MBUS_PROBE_NONE, "the late E5 is not the answer");
	cr_assert_eq(mbus_bus_stats(b)->slack_ms, 0);
	/* idle until the late E5 has come */
	for (int i = 0; i < 20000 && mbus_bus_stats(b)->stray == 0; i++)
		event_base_loop(g.base, EVLOOP_ONCE);
	cr_assert_eq(mbus_bus_stats(b)->stray, 1);
	/* ~60 ms where 14.75 ms of line time was due: 1.5 x the wait, less
	 * the 20 ms reply time allowed, is ~45 ms of slack (libevent's
	 * cached clock may fire the gateway's timer a few ms early) */
	cr_assert_geq(mbus_bus_stats(b)->slack_ms, 35, "slack %llu ms, late %llu",
	              (unsigned long long)mbus_bus_stats(b)->slack_ms,
	              (unsigned long long)mbus_bus_stats(b)->late);
	cr_assert_eq(mbus_bus_probe(b, &mask, probe_cb, &r2), 0);
	for (int i = 0; i < 20000 && r2 == -100; i++)
		event_base_loop(g.base, EVLOOP_ONCE);
	cr_assert_eq(r2, MBUS_PROBE_ONE, "the same probe with the slack learnt");
	cr_assert_eq(mbus_bus_stats(b)->timeouts, 1);
	cr_assert_eq(mbus_bus_stats(b)->late, 0);
	mbus_bus_free(b);
	gw_free(&g);
}

/*
 * A babbling gateway: a byte that comes long after an answered request
 * (nobody waits for anything) is counted stray, but it is no late answer
 * and must not widen the timeouts; nor may a byte that comes long after a
 * silent probe, later than the most slack could ever wait for it.
 */
static void
idle_byte_after(struct gateway *g, struct mbus_bus *b, int ms, uint64_t stray)
{
	static const uint8_t e5 = MBUS_ACK;

	usleep((useconds_t)ms * 1000u);
	cr_assert_eq(bufferevent_write(g->bev, &e5, 1), 0);
	for (int i = 0; i < 20000 && mbus_bus_stats(b)->stray < stray; i++)
		event_base_loop(g->base, EVLOOP_ONCE);
	cr_assert_eq(mbus_bus_stats(b)->stray, stray);
}

Test(mbus_bus, a_babbling_gateway_does_not_widen_the_timeouts)
{
	struct gateway g;
	struct result r = {0};
	struct mbus_addr a = {.primary = 1};
	struct mbus_secondary mask;
	int pr = -100;

	gw_init(&g);
	struct mbus_bus *b = bus_for(&g, 0);
	cr_assert_eq(mbus_bus_read(b, &a, read_cb, &r), 0);
	run_until(&g, &r, 1);
	cr_assert_eq(r.status, 0);
	cr_assert_eq(mbus_bus_stats(b)->slack_ms, 0);
	idle_byte_after(&g, b, 300, 1);
	cr_assert_eq(mbus_bus_stats(b)->slack_ms, 0, "slack %llu ms after an answered request",
	             (unsigned long long)mbus_bus_stats(b)->slack_ms);
	/* a silent probe (nobody has this id), then a byte 2.5 s on */
	cr_assert_eq(mbus_secondary_parse("11111111", &mask), 0);
	cr_assert_eq(mbus_bus_probe(b, &mask, probe_cb, &pr), 0);
	for (int i = 0; i < 20000 && pr == -100; i++)
		event_base_loop(g.base, EVLOOP_ONCE);
	cr_assert_eq(pr, MBUS_PROBE_NONE);
	idle_byte_after(&g, b, 2500, 2);
	cr_assert_eq(mbus_bus_stats(b)->slack_ms, 0, "slack %llu ms from a byte 2.5 s late",
	             (unsigned long long)mbus_bus_stats(b)->slack_ms);
	mbus_bus_free(b);
	gw_free(&g);
}

Test(mbus_bus, one_request_on_the_bus_at_a_time)
{
	struct gateway g;
	struct result r[5];
	struct mbus_addr a[5];

	gw_init(&g);
	g.chain = 2;
	memset(r, 0, sizeof(r));
	struct mbus_bus *b = bus_for(&g, 1);
	for (int i = 0; i < 5; i++) {
		memset(&a[i], 0, sizeof(a[i]));
		a[i].primary = (uint8_t)(i + 1);
		cr_assert_eq(mbus_bus_read(b, &a[i], read_cb, &r[i]), 0);
	}
	run_until(&g, r, 5);
	cr_assert_not(g.overlap, "a request arrived while an answer was pending");
	for (int i = 0; i < 5; i++) {
		cr_assert_eq(r[i].status, 0);
		cr_assert_eq(r[i].ntelegrams, 2);
		cr_assert_eq(r[i].values[1], (i + 1) * 1000 + 1);
	}
	/* in the order they were queued: slave i's frames before slave i+1's */
	cr_assert_eq(g.nlog, 15);
	for (size_t k = 0; k < g.nlog; k++)
		cr_assert_eq(g.log[k].a, k / 3 + 1);
	/* one master: one connection for the whole queue */
	cr_assert_eq(mbus_bus_stats(b)->connects, 1);
	cr_assert_eq(mbus_bus_stats(b)->requests, g.nlog);
	cr_assert_eq(mbus_bus_stats(b)->readouts, 5);
	mbus_bus_free(b);
	gw_free(&g);
}

Test(mbus_bus, refused_gateway_fails_everything_queued)
{
	struct gateway g;
	struct result r[2];
	struct mbus_addr a = {.primary = 1};

	gw_init(&g);
	memset(r, 0, sizeof(r));
	uint16_t port = g.port;
	evconnlistener_free(g.lis); /* nobody listens any more */
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	g.lis = evconnlistener_new_bind(g.base, gw_accept, &g, LEV_OPT_CLOSE_ON_FREE, 1,
	                                (struct sockaddr *)&sin,
	                                sizeof(sin)); /* another port, for gw_free */
	struct mbus_bus_params p = {.host = "127.0.0.1", .port = port, .baud = 38400, .retries = 1};
	struct mbus_bus *b = mbus_bus_new(g.base, &p);
	cr_assert_eq(mbus_bus_read(b, &a, read_cb, &r[0]), 0);
	cr_assert_eq(mbus_bus_read(b, &a, read_cb, &r[1]), 0);
	run_until(&g, r, 2);
	cr_assert_eq(r[0].status, METER_EABORTED);
	cr_assert_eq(r[1].status, METER_EABORTED);
	cr_assert_eq(mbus_bus_pending(b), 0);
	cr_assert_eq(mbus_bus_stats(b)->connects, 0);
	cr_assert_eq(mbus_bus_stats(b)->requests, 0);
	mbus_bus_free(b);
	gw_free(&g);
}

Test(mbus_bus, dropped_connection_fails_only_the_readout_on_the_wire)
{
	struct gateway g;
	struct result r[2];
	struct mbus_addr a1 = {.primary = 1}, a2 = {.primary = 2};

	gw_init(&g);
	memset(r, 0, sizeof(r));
	g.close_on = 2; /* the first readout's REQ_UD2 */
	struct mbus_bus *b = bus_for(&g, 1);
	cr_assert_eq(mbus_bus_read(b, &a1, read_cb, &r[0]), 0);
	cr_assert_eq(mbus_bus_read(b, &a2, read_cb, &r[1]), 0);
	run_until(&g, r, 2);
	cr_assert_eq(r[0].status, METER_EABORTED);
	cr_assert_eq(r[1].status, 0, "the next readout dials again");
	cr_assert_eq(r[1].values[0], 2000);
	cr_assert_eq(mbus_bus_stats(b)->connects, 2);
	mbus_bus_free(b);
	gw_free(&g);
}

static void
note_dropped(void *arg)
{
	((struct result *)arg)->dropped = true;
}

/* Shutting down: the readout under way finishes, those behind it are
 * handed back without a frame on the wire or a read callback. */
Test(mbus_bus, drop_queued_keeps_the_readout_under_way)
{
	struct gateway g;
	struct result r[3];
	struct mbus_addr a[3];

	gw_init(&g);
	memset(r, 0, sizeof(r));
	struct mbus_bus *b = bus_for(&g, 1);
	for (int i = 0; i < 3; i++) {
		memset(&a[i], 0, sizeof(a[i]));
		a[i].primary = (uint8_t)(i + 1);
		cr_assert_eq(mbus_bus_read(b, &a[i], read_cb, &r[i]), 0);
	}
	cr_assert_eq(mbus_bus_drop_queued(b, note_dropped), 2);
	cr_assert_eq(mbus_bus_pending(b), 1);
	cr_assert(r[1].dropped && r[2].dropped && !r[0].dropped);
	run_until(&g, r, 1);
	cr_assert_eq(r[0].status, 0);
	cr_assert_eq(r[0].values[0], 1000);
	/* the loop runs on: nothing else is sent, nobody else called back */
	for (int i = 0; i < 50; i++)
		event_base_loop(g.base, EVLOOP_NONBLOCK);
	cr_assert(!r[1].called && !r[2].called);
	static const struct wire want[] = {{"nke", 1, -1}, {"req", 1, 1}};
	expect_wire(&g, want, 2);
	cr_assert_eq(mbus_bus_pending(b), 0);
	cr_assert_eq(mbus_bus_drop_queued(b, note_dropped), 0, "an idle bus has nothing to drop");
	/* the bus still works afterwards */
	struct result again = {0};
	cr_assert_eq(mbus_bus_read(b, &a[2], read_cb, &again), 0);
	run_until(&g, &again, 1);
	cr_assert_eq(again.status, 0);
	cr_assert_eq(again.values[0], 3000);
	mbus_bus_free(b);
	gw_free(&g);
}
