/*
 * test_hdlc_link.c: a client link and a server link talking to each other
 * in memory.  Connection with parameter negotiation, 10 kB APDUs each way
 * with max information length 128 and windows 1 and 7, bytes delivered
 * whole, one at a time and in random chunks (each chunk in an allocation of
 * its exact size so ASan sees over-reads), lost frames and resends, wrong
 * sequence numbers, foreign addresses and DISC; plus corpus frames (a
 * Landis+Gyr UA, a pushed UI DataNotification) fed to a client link.
 * The tight_* tests drive the links the way the daemon must: an output
 * buffer of one frame (or one window), everything a side wrote delivered to
 * the peer in one read, and poll again while the link has more to send.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "hdlc_link.h"
#include "meter_error.h"
#include "vectors.h"

#define BIG 10240

enum chunking { WHOLE, BYTES, RANDOM };

struct peer {
	struct hdlc_link l;
	uint8_t rx[16384];
	uint8_t outbuf[32768];
	struct mbuf out;
	int connected, disconnected, errors, apdus, last_err, last_disc_err;
	uint8_t got[16384];
	size_t got_len;
	bool got_ui;
	size_t iframes;   /* I-frames this side sent */
	size_t max_burst; /* most I-frames in one delivery */
	size_t max_info;  /* largest information field it sent */
	/* drain-and-poll-again (tight_*): out holds `cap` bytes; what was
	 * written to the "socket" collects in sent */
	size_t cap;
	uint8_t sent[65536];
	size_t sent_len;
	int drains; /* times more was pending after a write */
};

static uint32_t rng = 12345;

static size_t
rnd(size_t n)
{
	rng = rng * 1103515245u + 12345u;
	return (rng >> 8) % n;
}

static void
peer_init(struct peer *p, int role, struct hdlc_addr local, struct hdlc_addr remote,
          struct hdlc_params prm)
{
	struct hdlc_link_config cfg = {
	    .role = role,
	    .local = local,
	    .remote = remote,
	    .params = prm,
	    .send_params = true,
	    .rxbuf = p->rx,
	    .rxcap = sizeof(p->rx),
	};

	memset(p, 0, sizeof(*p));
	cr_assert_eq(hdlc_link_init(&p->l, &cfg), 0);
	mbuf_init(&p->out, p->outbuf, sizeof(p->outbuf));
}

static void
record(struct peer *p, const struct hdlc_event *ev)
{
	switch (ev->type) {
	case HDLC_EV_CONNECTED:
		p->connected++;
		break;
	case HDLC_EV_DISCONNECTED:
		p->disconnected++;
		p->last_disc_err = ev->err;
		break;
	case HDLC_EV_APDU:
		p->apdus++;
		cr_assert_leq(ev->apdu_len, sizeof(p->got));
		memcpy(p->got, ev->apdu, ev->apdu_len);
		p->got_len = ev->apdu_len;
		p->got_ui = ev->ui;
		break;
	case HDLC_EV_ERROR:
		p->errors++;
		p->last_err = ev->err;
		break;
	default:
		cr_assert_fail("event %d", ev->type);
	}
}

/* Hand bytes to a link the way a socket would, and handle its events. */
static void
deliver(struct peer *to, const uint8_t *bytes, size_t n, enum chunking how)
{
	size_t off = 0;

	while (off < n) {
		size_t k = how == WHOLE ? n - off : how == BYTES ? 1 : 1 + rnd(64);
		if (k > n - off)
			k = n - off;
		uint8_t *chunk = malloc(k); /* exact size: over-reads trip ASan */
		memcpy(chunk, bytes + off, k);
		size_t taken = 0;
		while (taken < k) {
			struct hdlc_event ev;
			taken += hdlc_link_feed(&to->l, chunk + taken, k - taken);
			while (hdlc_link_poll(&to->l, &to->out, &ev) != HDLC_EV_NONE)
				record(to, &ev);
			cr_assert_eq(to->out.err, 0);
		}
		free(chunk);
		off += k;
	}
}

/* Look at what a side is about to send: frame sizes and burst length. */
static void
inspect(struct peer *from, const uint8_t *bytes, size_t n)
{
	size_t off = 0, drop, burst = 0;
	struct hdlc_frame f;

	for (;;) {
		int r = hdlc_scan(bytes + off, n - off, &f, &drop);
		cr_assert_geq(r, 0, "link sent a bad frame");
		if (r == 0)
			break;
		if (f.type == HDLC_I) {
			from->iframes++;
			burst++;
			cr_assert_leq(f.info_len, from->l.max_info_tx);
			if (f.info_len > from->max_info)
				from->max_info = f.info_len;
		}
		off += drop;
	}
	cr_assert_leq(off + 1, n); /* only the closing flag is left */
	if (burst > from->max_burst)
		from->max_burst = burst;
}

/* Move bytes both ways until both sides are quiet. */
static void
exchange(struct peer *a, struct peer *b, enum chunking how)
{
	static uint8_t wire[32768];

	for (int round = 0; round < 10000; round++) {
		struct peer *from = round % 2 ? b : a, *to = round % 2 ? a : b;
		size_t n = from->out.len;

		if (n == 0) {
			if (a->out.len == 0 && b->out.len == 0)
				return;
			continue;
		}
		memcpy(wire, from->outbuf, n);
		mbuf_init(&from->out, from->outbuf, sizeof(from->outbuf));
		inspect(from, wire, n);
		deliver(to, wire, n, how);
	}
	cr_assert_fail("the links never went quiet");
}

static const struct hdlc_addr CLIENT = {16, 0, 1};
static const struct hdlc_addr SERVER = {1, 17, 2};
static const struct hdlc_addr ANY = {0, 0, 0};

static void
connect_pair(struct peer *c, struct peer *s, struct hdlc_params cp, struct hdlc_params sp,
             enum chunking how)
{
	peer_init(c, HDLC_CLIENT, CLIENT, SERVER, cp);
	peer_init(s, HDLC_SERVER, SERVER, ANY, sp);
	cr_assert_eq(hdlc_link_connect(&c->l, &c->out), 0);
	cr_assert_eq(c->l.state, HDLC_LINK_CONNECTING);
	exchange(c, s, how);
	cr_assert_eq(c->connected, 1);
	cr_assert_eq(s->connected, 1);
	cr_assert_eq(c->l.state, HDLC_LINK_CONNECTED);
	cr_assert_eq(s->l.state, HDLC_LINK_CONNECTED);
	/* What one side sends, the other receives. */
	cr_assert_eq(c->l.max_info_tx, s->l.max_info_rx);
	cr_assert_eq(c->l.max_info_rx, s->l.max_info_tx);
	cr_assert_eq(c->l.window_tx, s->l.window_rx);
	cr_assert_eq(c->l.window_rx, s->l.window_tx);
}

Test(hdlc_link, negotiation)
{
	static struct peer c, s;
	struct hdlc_params cp = {
	    .max_info_tx = 128, .max_info_rx = 256, .window_tx = 1, .window_rx = 7};
	struct hdlc_params sp = {
	    .max_info_tx = 200, .max_info_rx = 100, .window_tx = 7, .window_rx = 7};

	connect_pair(&c, &s, cp, sp, WHOLE);
	cr_assert_eq(c.l.max_info_tx, 100); /* the server receives at most 100 */
	cr_assert_eq(c.l.max_info_rx, 200); /* min(256 asked, 200 it can) */
	cr_assert_eq(c.l.window_tx, 1);
	cr_assert_eq(c.l.window_rx, 7);
	cr_assert(hdlc_addr_eq(&s.l.remote, &CLIENT)); /* learnt from SNRM */
	cr_assert_eq(hdlc_link_connect(&c.l, &c.out), METER_ESTATE);
	cr_assert_eq(hdlc_link_connect(&s.l, &s.out), METER_ESTATE);

	/* Defaults when the SNRM carries no parameters. */
	static struct peer c2, s2;
	peer_init(&c2, HDLC_CLIENT, CLIENT, SERVER, (struct hdlc_params){0});
	peer_init(&s2, HDLC_SERVER, SERVER, ANY, sp);
	c2.l.send_params = false;
	cr_assert_eq(hdlc_link_connect(&c2.l, &c2.out), 0);
	cr_assert_eq(c2.out.len, 10); /* 7E A0 08 02 23 21 93 FCS FCS 7E */
	exchange(&c2, &s2, BYTES);
	cr_assert_eq(c2.l.max_info_tx, 100);
	cr_assert_eq(c2.l.max_info_rx, 128);
	cr_assert_eq(c2.l.window_tx, 1);
	cr_assert_eq(s2.l.window_tx, 1);
}

static void
big_transfer(uint8_t window, enum chunking how)
{
	static struct peer c, s;
	static uint8_t req[BIG], rsp[BIG];
	struct hdlc_params prm = {
	    .max_info_tx = 128, .max_info_rx = 128, .window_tx = window, .window_rx = window};

	for (size_t i = 0; i < BIG; i++) {
		req[i] = (uint8_t)(i * 7 + 1);
		rsp[i] = (uint8_t)(i * 13 + 5);
	}
	req[100] = rsp[200] = HDLC_FLAG; /* flags inside data are data */
	connect_pair(&c, &s, prm, prm, how);
	cr_assert_eq(c.l.window_tx, window);

	for (int round = 0; round < 3; round++) {
		size_t before_c = c.iframes, before_s = s.iframes;
		cr_assert_eq(hdlc_link_send(&c.l, req, BIG, &c.out), 0);
		cr_assert(hdlc_link_tx_busy(&c.l));
		cr_assert_eq(hdlc_link_send(&c.l, req, BIG, &c.out), METER_ESTATE);
		exchange(&c, &s, how);
		cr_assert_eq(s.apdus, round + 1);
		cr_assert_eq(s.got_len, BIG);
		cr_assert_eq(memcmp(s.got, req, BIG), 0);
		cr_assert_not(s.got_ui);
		/* 10240 bytes + LLC in 128-byte fields: 81 I-frames. */
		cr_assert_eq(c.iframes - before_c, 81, "%zu frames", c.iframes - before_c);
		cr_assert_eq(c.max_info, 128);

		cr_assert_eq(hdlc_link_send(&s.l, rsp, BIG, &s.out), 0);
		exchange(&c, &s, how);
		cr_assert_not(hdlc_link_tx_busy(&c.l)); /* the response acknowledged it */
		cr_assert_eq(c.apdus, round + 1);
		cr_assert_eq(c.got_len, BIG);
		cr_assert_eq(memcmp(c.got, rsp, BIG), 0);
		cr_assert_eq(s.iframes - before_s, 81);
	}
	cr_assert_eq(c.max_burst, window);
	cr_assert_eq(s.max_burst, window);
	cr_assert_eq(c.errors + s.errors, 0);
	cr_assert_eq(c.l.frames_bad + s.l.frames_bad, 0);
	cr_assert_eq(c.l.in_len, c.l.in_off, "nothing half-read left");
	cr_assert_eq(s.l.in_len, s.l.in_off);

	cr_assert_eq(hdlc_link_disconnect(&c.l, &c.out), 0);
	exchange(&c, &s, how);
	cr_assert_eq(c.disconnected, 1);
	cr_assert_eq(c.last_disc_err, 0);
	cr_assert_eq(s.disconnected, 1);
	cr_assert_eq(c.l.state, HDLC_LINK_DISCONNECTED);
	cr_assert_eq(s.l.state, HDLC_LINK_DISCONNECTED);
	cr_assert_eq(hdlc_link_send(&c.l, req, 1, &c.out), METER_ESTATE);
}

Test(hdlc_link, big_apdus_window1_whole)
{
	big_transfer(1, WHOLE);
}

Test(hdlc_link, big_apdus_window1_bytes)
{
	big_transfer(1, BYTES);
}

Test(hdlc_link, big_apdus_window1_random)
{
	big_transfer(1, RANDOM);
}

Test(hdlc_link, big_apdus_window7_whole)
{
	big_transfer(7, WHOLE);
}

Test(hdlc_link, big_apdus_window7_bytes)
{
	big_transfer(7, BYTES);
}

Test(hdlc_link, big_apdus_window7_random)
{
	big_transfer(7, RANDOM);
}

static const struct hdlc_params P128 = {128, 128, 1, 1};

/* An I-frame from the server with a sequence number the client does not expect. */
Test(hdlc_link, out_of_sequence_is_an_error)
{
	static struct peer c, s;
	uint8_t buf[64], info[] = {0xe6, 0xe7, 0x00, 0xc4, 0x01};
	struct mbuf m;

	connect_pair(&c, &s, P128, P128, WHOLE);
	struct hdlc_frame f = {.type = HDLC_I,
	                       .dest = CLIENT,
	                       .src = SERVER,
	                       .ns = 3,
	                       .nr = 0,
	                       .pf = true,
	                       .info = info,
	                       .info_len = sizeof(info)};
	mbuf_init(&m, buf, sizeof(buf));
	cr_assert_gt(hdlc_encode(&m, &f), 0);
	deliver(&c, buf, m.len, WHOLE);
	cr_assert_eq(c.errors, 1);
	cr_assert_eq(c.last_err, METER_EPROTO);
	cr_assert_eq(c.apdus, 0);

	/* With the right N(S) but an N(R) acknowledging frames never sent. */
	f.ns = 0;
	f.nr = 5;
	mbuf_init(&m, buf, sizeof(buf));
	cr_assert_gt(hdlc_encode(&m, &f), 0);
	deliver(&c, buf, m.len, BYTES);
	cr_assert_eq(c.errors, 2);

	/* The right one is taken. */
	f.nr = 0;
	mbuf_init(&m, buf, sizeof(buf));
	cr_assert_gt(hdlc_encode(&m, &f), 0);
	deliver(&c, buf, m.len, BYTES);
	cr_assert_eq(c.apdus, 1);
	cr_assert_eq(c.got_len, 2);
	cr_assert_eq(c.l.vr, 1);

	/* FRMR from the server is reported. */
	f.type = HDLC_FRMR;
	f.info_len = 0;
	mbuf_init(&m, buf, sizeof(buf));
	cr_assert_gt(hdlc_encode(&m, &f), 0);
	deliver(&c, buf, m.len, WHOLE);
	cr_assert_eq(c.errors, 3);
}

/* A lost RR: the sender resends on its timeout, the receiver sees a duplicate. */
Test(hdlc_link, lost_rr_and_resend)
{
	static struct peer c, s;
	static uint8_t req[1000];

	for (size_t i = 0; i < sizeof(req); i++)
		req[i] = (uint8_t)i;
	connect_pair(&c, &s, P128, P128, WHOLE);
	cr_assert_eq(hdlc_link_send(&c.l, req, sizeof(req), &c.out), 0);
	deliver(&s, c.outbuf, c.out.len, RANDOM);
	mbuf_init(&c.out, c.outbuf, sizeof(c.outbuf));
	cr_assert_gt(s.out.len, 0);                    /* its RR */
	mbuf_init(&s.out, s.outbuf, sizeof(s.outbuf)); /* ... lost */
	cr_assert_eq(hdlc_link_resend(&c.l, &c.out), 0);
	exchange(&c, &s, RANDOM);
	cr_assert_eq(s.errors, 0);
	cr_assert_eq(s.apdus, 1);
	cr_assert_eq(s.got_len, sizeof(req));
	cr_assert_eq(memcmp(s.got, req, sizeof(req)), 0);

	/* The response's first segment is lost: the client resends nothing
	 * of its own (its request is acknowledged only by the response), so
	 * it resends its last I-frame; the server takes it as a duplicate
	 * and answers again. */
	cr_assert_eq(hdlc_link_send(&s.l, req, sizeof(req), &s.out), 0);
	mbuf_init(&s.out, s.outbuf, sizeof(s.outbuf)); /* lost */
	cr_assert(hdlc_link_tx_busy(&c.l));
	cr_assert_eq(hdlc_link_resend(&c.l, &c.out), 0);
	exchange(&c, &s, WHOLE);
	cr_assert_eq(s.errors, 0);
	cr_assert_eq(s.apdus, 1, "the duplicate was not delivered again");
	cr_assert_eq(c.apdus, 1);
	cr_assert_eq(memcmp(c.got, req, sizeof(req)), 0);

	/* A lost RR on the client side of a segmented response. */
	cr_assert_eq(hdlc_link_send(&c.l, req, 10, &c.out), 0);
	exchange(&c, &s, WHOLE);
	cr_assert_eq(s.apdus, 2);
	cr_assert_eq(hdlc_link_send(&s.l, req, sizeof(req), &s.out), 0);
	deliver(&c, s.outbuf, s.out.len, WHOLE);
	mbuf_init(&s.out, s.outbuf, sizeof(s.outbuf));
	mbuf_init(&c.out, c.outbuf, sizeof(c.outbuf));   /* client's RR lost */
	cr_assert_eq(hdlc_link_resend(&c.l, &c.out), 0); /* client polls again */
	exchange(&c, &s, WHOLE);
	cr_assert_eq(c.apdus, 2);
	cr_assert_eq(c.got_len, sizeof(req));
	cr_assert_eq(c.errors + s.errors, 0);
}

Test(hdlc_link, foreign_addresses_are_ignored)
{
	static struct peer c, s;
	uint8_t buf[64], info[] = {0xe6, 0xe7, 0x00, 0x01};
	struct mbuf m;
	struct hdlc_frame f = {.type = HDLC_I,
	                       .dest = {17, 0, 1},
	                       .src = SERVER,
	                       .pf = true,
	                       .info = info,
	                       .info_len = sizeof(info)};

	connect_pair(&c, &s, P128, P128, WHOLE);
	mbuf_init(&m, buf, sizeof(buf));
	cr_assert_gt(hdlc_encode(&m, &f), 0);
	f.dest = CLIENT;
	f.src = (struct hdlc_addr){1, 18, 2}; /* another server */
	cr_assert_gt(hdlc_encode(&m, &f), 0);
	deliver(&c, buf, m.len, BYTES);
	cr_assert_eq(c.l.frames_ignored, 2);
	cr_assert_eq(c.apdus + c.errors, 0);
	cr_assert_eq(c.out.len, 0);

	/* Garbage and a corrupted frame between good ones are skipped. */
	f.src = SERVER;
	mbuf_init(&m, buf, sizeof(buf));
	mbuf_u8(&m, 0x55);
	cr_assert_gt(hdlc_encode(&m, &f), 0);
	buf[5] ^= 1;
	cr_assert_gt(hdlc_encode(&m, &f), 0);
	deliver(&c, buf, m.len, RANDOM);
	/* Resynchronising may trip over a 0x7E inside the bad frame too. */
	cr_assert_geq(c.l.frames_bad, 1);
	cr_assert_eq(c.apdus, 1);
	cr_assert_eq(c.got_len, 1);
}

Test(hdlc_link, server_answers_when_not_connected)
{
	static struct peer c, s;
	uint8_t buf[64];
	struct mbuf m;
	struct hdlc_frame f;

	peer_init(&s, HDLC_SERVER, SERVER, ANY, P128);
	struct hdlc_frame disc = {.type = HDLC_DISC, .dest = SERVER, .src = CLIENT, .pf = true};
	mbuf_init(&m, buf, sizeof(buf));
	cr_assert_gt(hdlc_encode(&m, &disc), 0);
	deliver(&s, buf, m.len, WHOLE);
	cr_assert_eq(hdlc_parse(s.outbuf, s.out.len, &f), (ssize_t)s.out.len);
	cr_assert_eq(f.type, HDLC_DM);
	cr_assert(hdlc_addr_eq(&f.dest, &CLIENT));
	cr_assert_eq(s.disconnected, 0);

	/* A client told DM in answer to SNRM reports the refusal. */
	peer_init(&c, HDLC_CLIENT, CLIENT, SERVER, P128);
	cr_assert_eq(hdlc_link_connect(&c.l, &c.out), 0);
	deliver(&c, s.outbuf, s.out.len, BYTES);
	cr_assert_eq(c.disconnected, 1);
	cr_assert_eq(c.last_disc_err, METER_EREJECTED);
	cr_assert_eq(c.l.state, HDLC_LINK_DISCONNECTED);
	cr_assert_eq(hdlc_link_disconnect(&c.l, &c.out), METER_ESTATE);

	/* Connected, a poll with nothing to send is answered with RR. */
	connect_pair(&c, &s, P128, P128, WHOLE);
	struct hdlc_frame rr = {.type = HDLC_RR, .dest = SERVER, .src = CLIENT, .pf = true};
	mbuf_init(&m, buf, sizeof(buf));
	cr_assert_gt(hdlc_encode(&m, &rr), 0);
	deliver(&s, buf, m.len, WHOLE);
	cr_assert_eq(hdlc_parse(s.outbuf, s.out.len, &f), (ssize_t)s.out.len);
	cr_assert_eq(f.type, HDLC_RR);
	cr_assert_eq(f.nr, 0);
}

Test(hdlc_link, resend_repeats_snrm_and_disc)
{
	static struct peer c;
	uint8_t first[64];
	size_t n;

	peer_init(&c, HDLC_CLIENT, CLIENT, SERVER, P128);
	cr_assert_eq(hdlc_link_resend(&c.l, &c.out), METER_ESTATE);
	cr_assert_eq(hdlc_link_connect(&c.l, &c.out), 0);
	n = c.out.len;
	memcpy(first, c.outbuf, n);
	mbuf_init(&c.out, c.outbuf, sizeof(c.outbuf));
	cr_assert_eq(hdlc_link_resend(&c.l, &c.out), 0);
	cr_assert_eq(c.out.len, n);
	cr_assert_eq(memcmp(first, c.outbuf, n), 0);
	mbuf_init(&c.out, c.outbuf, sizeof(c.outbuf));
	cr_assert_eq(hdlc_link_disconnect(&c.l, &c.out), 0);
	mbuf_init(&c.out, c.outbuf, sizeof(c.outbuf));
	cr_assert_eq(hdlc_link_resend(&c.l, &c.out), 0);
	struct hdlc_frame f;
	cr_assert_gt(hdlc_parse(c.outbuf, c.out.len, &f), 0);
	cr_assert_eq(f.type, HDLC_DISC);

	/* Too small an output buffer is reported, never half a frame. */
	uint8_t tiny[8];
	struct mbuf m;
	mbuf_init(&m, tiny, sizeof(tiny));
	cr_assert_eq(hdlc_link_resend(&c.l, &m), METER_ENOSPC);
	cr_assert_eq(m.len, 0);
}

/* Corpus frames: a meter's UA with asymmetric limits, and a pushed UI frame. */
Test(hdlc_link, corpus_ua_and_ui_push)
{
	static struct peer c;
	static uint8_t req[1000];
	const struct dlms_vector *ua = dlms_vector("hdlc-ua-lg-e650");
	size_t len;
	struct hdlc_frame f;

	cr_assert_not_null(ua);
	uint8_t *p = hex_tail(ua->hex, &len);
	cr_assert_eq(hdlc_parse(p, len, &f), (ssize_t)len);
	/* The capture has no flags; on a line it would. */
	uint8_t *framed = malloc(len + 2);
	framed[0] = framed[len + 1] = HDLC_FLAG;
	memcpy(framed + 1, p, len);
	peer_init(&c, HDLC_CLIENT, f.dest, f.src, P128);
	cr_assert_eq(hdlc_link_connect(&c.l, &c.out), 0);
	mbuf_init(&c.out, c.outbuf, sizeof(c.outbuf));
	deliver(&c, framed, len + 2, BYTES);
	cr_assert_eq(c.connected, 1);
	cr_assert_eq(c.l.max_info_tx, 62); /* the meter receives 62 */
	cr_assert_eq(c.l.max_info_rx, 128);
	cr_assert_eq(hdlc_link_send(&c.l, req, sizeof(req), &c.out), 0);
	inspect(&c, c.outbuf, c.out.len);
	cr_assert_eq(c.max_info, 62);
	cr_assert_eq(c.out.len, 62 + 11); /* window 1: one frame, 1-byte addresses */
	tail_free(p);
	free(framed);

	const struct dlms_vector *ui = dlms_vector("hdlc-ui-data-notification");
	cr_assert_not_null(ui);
	p = hex_tail(ui->hex, &len);
	cr_assert_eq(hdlc_parse(p, len, &f), (ssize_t)len);
	peer_init(&c, HDLC_CLIENT, f.dest, f.src, P128);
	deliver(&c, p, len, RANDOM); /* no connection needed for UI */
	cr_assert_eq(c.apdus, 1);
	cr_assert(c.got_ui);
	cr_assert_eq(c.got_len, f.info_len - HDLC_LLC_LEN);
	cr_assert_eq(memcmp(c.got, f.info + HDLC_LLC_LEN, c.got_len), 0);
	cr_assert_eq(c.got[0], 0x0f); /* DataNotification tag */
	tail_free(p);
}

Test(hdlc_link, reassembly_overflow_and_bad_config)
{
	static struct peer c, s;
	static uint8_t req[3000];
	struct hdlc_link l;
	uint8_t rx[8];
	struct hdlc_link_config cfg = {.role = HDLC_CLIENT,
	                               .local = CLIENT,
	                               .remote = SERVER,
	                               .rxbuf = rx,
	                               .rxcap = sizeof(rx)};

	cr_assert_eq(hdlc_link_init(&l, &cfg), 0);
	cfg.role = 3;
	cr_assert_eq(hdlc_link_init(&l, &cfg), METER_EINVAL);
	cfg.role = HDLC_CLIENT;
	cfg.remote.size = 0; /* only a server may leave the peer open */
	cr_assert_eq(hdlc_link_init(&l, &cfg), METER_EINVAL);
	cfg.remote = SERVER;
	cfg.rxbuf = NULL;
	cr_assert_eq(hdlc_link_init(&l, &cfg), METER_EINVAL);

	connect_pair(&c, &s, P128, P128, WHOLE);
	s.l.rxcap = 2000; /* smaller than the APDU: dropped, reported once */
	cr_assert_eq(hdlc_link_send(&c.l, req, sizeof(req), &c.out), 0);
	exchange(&c, &s, WHOLE);
	cr_assert_eq(s.apdus, 0);
	cr_assert_eq(s.errors, 1);
	cr_assert_eq(s.last_err, METER_ENOSPC);
	cr_assert_eq(hdlc_link_send(&c.l, req, 0, &c.out), METER_ESTATE); /* still busy */
	/* The link itself is fine: the next APDU arrives. */
	cr_assert_eq(hdlc_link_send(&s.l, req, 100, &s.out), 0);
	exchange(&c, &s, WHOLE);
	cr_assert_eq(c.apdus, 1);
	cr_assert_eq(hdlc_link_send(&c.l, req, 0, &c.out), METER_EINVAL);
	cr_assert_eq(hdlc_link_send(&c.l, req, 1000, &c.out), 0);
	exchange(&c, &s, WHOLE);
	cr_assert_eq(s.apdus, 1);
	cr_assert_eq(s.got_len, 1000);
}

/*
 * Window 7: the server's RR after a full window is lost, and later the
 * client's RR after the server's window; the client's poll on timeout puts
 * both back in step without an error.
 */
Test(hdlc_link, window7_lost_rr_recovers_by_poll)
{
	static struct peer c, s;
	static uint8_t req[3000], rsp[3000];
	struct hdlc_params prm = {128, 128, 7, 7};

	for (size_t i = 0; i < sizeof(req); i++) {
		req[i] = (uint8_t)(i ^ 0x5a);
		rsp[i] = (uint8_t)(i * 3);
	}
	connect_pair(&c, &s, prm, prm, WHOLE);
	cr_assert_eq(hdlc_link_send(&c.l, req, sizeof(req), &c.out), 0);
	inspect(&c, c.outbuf, c.out.len);
	cr_assert_eq(c.iframes, 7);
	deliver(&s, c.outbuf, c.out.len, RANDOM);
	mbuf_init(&c.out, c.outbuf, sizeof(c.outbuf));
	cr_assert_gt(s.out.len, 0);
	mbuf_init(&s.out, s.outbuf, sizeof(s.outbuf)); /* its RR is lost */
	cr_assert_eq(hdlc_link_resend(&c.l, &c.out), 0);
	struct hdlc_frame f;
	cr_assert_eq(hdlc_parse(c.outbuf, c.out.len, &f), (ssize_t)c.out.len);
	cr_assert_eq(f.type, HDLC_RR);
	cr_assert(f.pf);
	exchange(&c, &s, RANDOM);
	cr_assert_eq(s.apdus, 1);
	cr_assert_eq(memcmp(s.got, req, sizeof(req)), 0);

	cr_assert_eq(hdlc_link_send(&s.l, rsp, sizeof(rsp), &s.out), 0);
	deliver(&c, s.outbuf, s.out.len, BYTES);
	mbuf_init(&s.out, s.outbuf, sizeof(s.outbuf));
	cr_assert_gt(c.out.len, 0);
	mbuf_init(&c.out, c.outbuf, sizeof(c.outbuf)); /* the client's RR is lost */
	cr_assert_eq(hdlc_link_resend(&c.l, &c.out), 0);
	exchange(&c, &s, BYTES);
	cr_assert_eq(c.apdus, 1);
	cr_assert_eq(c.got_len, sizeof(rsp));
	cr_assert_eq(memcmp(c.got, rsp, sizeof(rsp)), 0);
	cr_assert_eq(c.errors + s.errors, 0);

	/* A lost frame in the middle of a window is an error the caller sees. */
	cr_assert_eq(hdlc_link_send(&c.l, req, 10, &c.out), 0);
	exchange(&c, &s, WHOLE);
	cr_assert_eq(s.apdus, 2);
	cr_assert_eq(hdlc_link_send(&s.l, rsp, sizeof(rsp), &s.out), 0);
	size_t drop, off = 0;
	int r = hdlc_scan(s.outbuf, s.out.len, &f, &drop);
	cr_assert_eq(r, 1);
	off = drop; /* the first frame goes missing */
	deliver(&c, s.outbuf + off, s.out.len - off, WHOLE);
	cr_assert_eq(c.errors, 6, "one per frame after the gap, %d", c.errors);
	cr_assert_eq(c.apdus, 1);
	cr_assert_eq(c.last_err, METER_EPROTO);
}

Test(hdlc_link, send_into_small_buffer_counts_nothing)
{
	static struct peer c, s;
	static uint8_t req[1000];
	uint8_t small[100];
	struct mbuf m;
	struct hdlc_params prm = {128, 128, 7, 7};

	connect_pair(&c, &s, prm, prm, WHOLE);
	mbuf_init(&m, small, sizeof(small));
	cr_assert_eq(hdlc_link_send(&c.l, req, sizeof(req), &m), METER_ENOSPC);
	cr_assert_not(hdlc_link_tx_busy(&c.l));
	cr_assert_geq(sizeof(c.outbuf), hdlc_link_out_max(&c.l));
	cr_assert_eq(hdlc_link_send(&c.l, req, sizeof(req), &c.out), 0);
	cr_assert_leq(c.out.len, hdlc_link_out_max(&c.l));
	exchange(&c, &s, WHOLE);
	cr_assert_eq(s.apdus, 1);
	cr_assert_eq(s.got_len, sizeof(req));
	cr_assert_eq(c.errors + s.errors, 0);
}

/*
 * Frames that share a flag, with the read boundary right after the shared
 * flag: the flag is set aside (the input reads as empty, no partial frame)
 * and still opens the next frame.
 */
Test(hdlc_link, shared_flag_across_reads)
{
	static struct peer c, s;
	uint8_t buf[128], info[] = {0xe6, 0xe7, 0x00, 0x11};
	struct mbuf m;
	size_t first;

	connect_pair(&c, &s, P128, P128, WHOLE);
	cr_assert_eq(c.l.in_len, c.l.in_off, "idle after connecting");
	struct hdlc_frame f = {.type = HDLC_I,
	                       .dest = CLIENT,
	                       .src = SERVER,
	                       .segmented = true,
	                       .pf = true,
	                       .info = info,
	                       .info_len = sizeof(info)};
	mbuf_init(&m, buf, sizeof(buf));
	cr_assert_gt(hdlc_encode(&m, &f), 0);
	first = m.len;
	f.ns = 1;
	f.segmented = false;
	cr_assert_gt(hdlc_encode(&m, &f), 0);
	/* 7E F1 7E 7E F2 7E  ->  7E F1 7E | F2 7E */
	memmove(buf + first, buf + first + 1, m.len - first - 1);
	m.len--;
	deliver(&c, buf, first, WHOLE);
	cr_assert_eq(c.l.in_len, c.l.in_off, "a lone flag is not a partial frame");
	cr_assert_eq(c.apdus, 0);
	deliver(&c, buf + first, m.len - first, WHOLE);
	cr_assert_eq(c.apdus, 1);
	cr_assert_eq(c.got_len, 5); /* 1 byte after the LLC, then all 4 of segment 2 */
	cr_assert_eq(c.errors + (int)c.l.frames_bad, 0);
}

/* ---- drain and poll again ------------------------------------------------- */

/*
 * Write out (append it to sent) and poll again while the link says more
 * is pending, as every caller must.  The link may never overrun out, so
 * out never latches ENOSPC.
 */
static void
tight_drain(struct peer *p)
{
	struct hdlc_event ev;

	for (int guard = 0;; guard++) {
		cr_assert_lt(guard, 10000, "the link stays pending");
		cr_assert_eq(p->out.err, 0, "output overrun (ENOSPC latched)");
		cr_assert_leq(p->out.len, p->cap);
		cr_assert_leq(p->sent_len + p->out.len, sizeof(p->sent));
		memcpy(p->sent + p->sent_len, p->outbuf, p->out.len);
		p->sent_len += p->out.len;
		mbuf_init(&p->out, p->outbuf, p->cap);
		if (!hdlc_link_out_pending(&p->l))
			return;
		p->drains++;
		while (hdlc_link_poll(&p->l, &p->out, &ev) != HDLC_EV_NONE)
			record(p, &ev);
	}
}

/* One read of n bytes (in an allocation of its exact size), then drain. */
static void
tight_deliver(struct peer *to, const uint8_t *bytes, size_t n)
{
	uint8_t *seg = malloc(n);
	struct hdlc_event ev;
	size_t off = 0;

	memcpy(seg, bytes, n);
	for (int guard = 0; off < n; guard++) {
		cr_assert_lt(guard, 10000, "the link stopped taking input");
		off += hdlc_link_feed(&to->l, seg + off, n - off);
		while (hdlc_link_poll(&to->l, &to->out, &ev) != HDLC_EV_NONE)
			record(to, &ev);
		tight_drain(to);
	}
	free(seg);
}

/* Each turn, everything one side wrote reaches the other in one read. */
static void
tight_exchange(struct peer *a, struct peer *b)
{
	static uint8_t wire[65536];

	for (int round = 0; round < 10000; round++) {
		struct peer *from = round % 2 ? b : a, *to = round % 2 ? a : b;
		size_t n = from->sent_len;

		if (n == 0) {
			if (a->sent_len == 0 && b->sent_len == 0)
				return;
			continue;
		}
		memcpy(wire, from->sent, n);
		from->sent_len = 0;
		inspect(from, wire, n);
		tight_deliver(to, wire, n);
	}
	cr_assert_fail("the links never went quiet");
}

static void
tight(struct peer *p, size_t cap)
{
	cr_assert_leq(cap, sizeof(p->outbuf));
	p->cap = cap;
	p->sent_len = 0;
	p->drains = 0;
	mbuf_init(&p->out, p->outbuf, cap);
}

/* Frames of one kind in bytes, and the N(S) of each I-frame. */
static size_t
count_frames(const uint8_t *bytes, size_t n, uint8_t type, uint8_t *ns, size_t ns_cap)
{
	size_t off = 0, drop, k = 0;
	struct hdlc_frame f;

	while (hdlc_scan(bytes + off, n - off, &f, &drop) > 0) {
		if (f.type == type) {
			if (ns && k < ns_cap)
				ns[k] = type == HDLC_I ? f.ns : f.nr;
			k++;
		}
		off += drop;
	}
	return k;
}

/*
 * Window 7 through output buffers of one maximum frame each way: a send
 * puts out the frame that fits and the rest follows poll by poll, each
 * side's frames reaching the other in one read.
 */
Test(hdlc_link, tight_one_frame_buffer_window7)
{
	static struct peer c, s;
	static uint8_t req[3000], rsp[3000];
	struct hdlc_params prm = {128, 128, 7, 7};
	size_t frame;

	for (size_t i = 0; i < sizeof(req); i++) {
		req[i] = (uint8_t)(i * 7 + 1);
		rsp[i] = (uint8_t)(i ^ 0xa5);
	}
	connect_pair(&c, &s, prm, prm, WHOLE);
	cr_assert_eq(c.l.window_tx, 7);
	frame = hdlc_link_out_max(&c.l) / c.l.window_tx; /* one maximum frame */
	tight(&c, frame);
	tight(&s, frame);

	cr_assert_eq(hdlc_link_send(&c.l, req, sizeof(req), &c.out), 0);
	cr_assert(hdlc_link_out_pending(&c.l), "a window does not fit one frame");
	tight_drain(&c);
	cr_assert_eq(count_frames(c.sent, c.sent_len, HDLC_I, NULL, 0), 7);
	cr_assert_eq(c.drains, 6);
	tight_exchange(&c, &s);
	cr_assert_eq(s.apdus, 1);
	cr_assert_eq(s.got_len, sizeof(req));
	cr_assert_eq(memcmp(s.got, req, sizeof(req)), 0);
	cr_assert_eq(c.max_burst, 7, "a whole window in one read");
	/* 3 LLC bytes + 3000: 24 frames of 128, none sent twice */
	cr_assert_eq(c.iframes, 24);

	cr_assert_eq(hdlc_link_send(&s.l, rsp, sizeof(rsp), &s.out), 0);
	tight_drain(&s);
	tight_exchange(&c, &s);
	cr_assert_eq(c.apdus, 1);
	cr_assert_eq(c.got_len, sizeof(rsp));
	cr_assert_eq(memcmp(c.got, rsp, sizeof(rsp)), 0);
	cr_assert_eq(s.iframes, 24);
	cr_assert_eq(c.errors + s.errors, 0);
	cr_assert(!hdlc_link_tx_busy(&c.l), "the response acknowledged the request");
}

/*
 * The client's poll (RR) and its repeat after a timeout arrive in one
 * read at a server whose buffer holds one window: each poll is answered
 * with the window, the second after the caller has written the first.
 */
Test(hdlc_link, tight_two_polls_in_one_read)
{
	static struct peer c, s;
	static uint8_t rsp[3000], both[64];
	struct hdlc_params prm = {128, 128, 7, 7};
	uint8_t req[10] = {0xc0, 0x01};
	uint8_t ns[16];

	for (size_t i = 0; i < sizeof(rsp); i++)
		rsp[i] = (uint8_t)(i * 13);
	connect_pair(&c, &s, prm, prm, WHOLE);
	tight(&c, sizeof(c.outbuf));
	tight(&s, hdlc_link_out_max(&s.l));
	cr_assert_eq(hdlc_link_send(&c.l, req, sizeof(req), &c.out), 0);
	tight_drain(&c);
	tight_exchange(&c, &s);
	cr_assert_eq(s.apdus, 1);

	cr_assert_eq(hdlc_link_send(&s.l, rsp, sizeof(rsp), &s.out), 0);
	tight_drain(&s);
	cr_assert_eq(count_frames(s.sent, s.sent_len, HDLC_I, NULL, 0), 7);
	tight_deliver(&c, s.sent, s.sent_len); /* the first window */
	s.sent_len = 0;
	cr_assert_eq(count_frames(c.sent, c.sent_len, HDLC_RR, NULL, 0), 1);
	cr_assert_eq(hdlc_link_resend(&c.l, &c.out), 0); /* timeout: poll again */
	tight_drain(&c);
	cr_assert_eq(count_frames(c.sent, c.sent_len, HDLC_RR, NULL, 0), 2);
	cr_assert_leq(c.sent_len, sizeof(both));
	size_t n = c.sent_len;
	memcpy(both, c.sent, n);
	c.sent_len = 0;

	tight_deliver(&s, both, n);
	cr_assert_eq(s.errors, 0, "server error %d", s.last_err);
	cr_assert_eq(count_frames(s.sent, s.sent_len, HDLC_I, ns, 16), 14);
	cr_assert_geq(s.drains, 1);
	/* both polls carry the same N(R): the same window twice */
	cr_assert_eq(s.sent_len % 2, 0);
	cr_assert_eq(memcmp(s.sent, s.sent + s.sent_len / 2, s.sent_len / 2), 0);
	/* the second window of the response: N(S) 7, 0, 1, ... 5, twice */
	for (int i = 0; i < 14; i++)
		cr_assert_eq(ns[i], (uint8_t)((7 + i % 7) & 7), "frame %d N(S) %u", i, ns[i]);

	/* The client gets the first copy; the rest of the APDU follows. */
	tight_deliver(&c, s.sent, s.sent_len / 2);
	s.sent_len = 0;
	tight_exchange(&c, &s);
	cr_assert_eq(c.apdus, 1);
	cr_assert_eq(c.got_len, sizeof(rsp));
	cr_assert_eq(memcmp(c.got, rsp, sizeof(rsp)), 0);
	cr_assert_eq(c.errors + s.errors, 0);
}

/*
 * A client that sends three segments, each with the poll bit, in one TCP
 * segment, to a server whose output buffer holds exactly one RR: the
 * server answers each in turn instead of overrunning.
 */
Test(hdlc_link, tight_three_iframes_in_one_segment)
{
	static struct peer c, s;
	uint8_t wire[256], info[3][8] = {{0xe6, 0xe6, 0x00, 1, 2, 3, 4, 5}, {6, 7, 8, 9}, {10, 11}};
	size_t ilen[3] = {8, 4, 2};
	uint8_t nr[4];
	struct mbuf m;

	connect_pair(&c, &s, P128, P128, WHOLE);
	mbuf_init(&m, wire, sizeof(wire));
	for (int i = 0; i < 3; i++) {
		struct hdlc_frame f = {.type = HDLC_I,
		                       .dest = SERVER,
		                       .src = CLIENT,
		                       .ns = (uint8_t)i,
		                       .nr = 0,
		                       .segmented = i < 2,
		                       .pf = true,
		                       .info = info[i],
		                       .info_len = ilen[i]};
		cr_assert_gt(hdlc_encode(&m, &f), 0);
	}
	struct hdlc_frame rr = {.type = HDLC_RR, .dest = CLIENT, .src = SERVER, .pf = true};
	uint8_t one[32];
	struct mbuf r1;
	mbuf_init(&r1, one, sizeof(one));
	cr_assert_gt(hdlc_encode(&r1, &rr), 0);
	tight(&s, r1.len); /* just one RR */

	tight_deliver(&s, wire, m.len);
	cr_assert_eq(s.errors, 0, "server error %d", s.last_err);
	cr_assert_eq(s.apdus, 1);
	cr_assert_eq(s.got_len, 5 + 4 + 2);
	for (size_t i = 0; i < s.got_len; i++)
		cr_assert_eq(s.got[i], i + 1);
	/* an RR after each of the two non-final segments, N(R) 1 then 2 */
	cr_assert_eq(count_frames(s.sent, s.sent_len, HDLC_RR, nr, 4), 2);
	cr_assert_eq(nr[0], 1);
	cr_assert_eq(nr[1], 2);
	cr_assert_eq(s.sent_len, 2 * r1.len);
}

/* A client that disconnects with a window half out sends no I-frame after
 * its DISC. */
Test(hdlc_link, tight_disconnect_drops_the_rest_of_a_window)
{
	static struct peer c, s;
	static uint8_t req[3000];
	struct hdlc_params prm = {128, 128, 7, 7};
	struct hdlc_event ev;
	struct hdlc_frame f;

	connect_pair(&c, &s, prm, prm, WHOLE);
	tight(&c, hdlc_link_out_max(&c.l) / c.l.window_tx);
	cr_assert_eq(hdlc_link_send(&c.l, req, sizeof(req), &c.out), 0);
	cr_assert(hdlc_link_out_pending(&c.l));
	mbuf_init(&c.out, c.outbuf, c.cap); /* written */
	cr_assert_eq(hdlc_link_disconnect(&c.l, &c.out), 0);
	cr_assert_not(hdlc_link_out_pending(&c.l));
	size_t n = c.out.len;
	cr_assert_eq(hdlc_link_poll(&c.l, &c.out, &ev), HDLC_EV_NONE);
	cr_assert_eq(c.out.len, n, "nothing after the DISC");
	cr_assert_eq(hdlc_parse(c.outbuf, n, &f), (ssize_t)n);
	cr_assert_eq(f.type, HDLC_DISC);
}
