/*
 * fuzz_hdlc.c: arbitrary bytes into the HDLC frame parser, the stream
 * scanner, the parameter decoder, and a client and a server link.
 *
 * A parsed frame must re-encode to the same bytes; the links must never
 * read or write out of bounds, whatever arrives, in whatever chunks.  The
 * first input byte chooses the chunk size so the fuzzer explores splits,
 * and the size of the output buffer, from one maximum frame up: the links
 * are drained the way callers must (poll, write, poll again while
 * hdlc_link_out_pending()), never overrun out, and always make progress.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hdlc.h"
#include "hdlc_link.h"
#include "meter_error.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check_roundtrip(const uint8_t *data, size_t size)
{
	static uint8_t out[HDLC_MAX_FRAME];
	struct hdlc_frame f, g;
	struct mbuf m;
	ssize_t n = hdlc_parse(data, size, &f);
	size_t body;

	if (n <= 0)
		return;
	if ((size_t)n > size)
		abort();
	if ((f.type == HDLC_SNRM || f.type == HDLC_UA) && f.info_len) {
		struct hdlc_params p;
		(void)hdlc_params_decode(f.info, f.info_len, &p);
	}
	mbuf_init(&m, out, sizeof(out));
	if (hdlc_encode(&m, &f) < 0)
		return; /* the parser is lenient (info on DISC, ...) */
	if (f.has_hcs && f.info_len == 0)
		return; /* an empty field with an HCS re-encodes without both */
	body = f.length;
	if (m.len != body + 2 || memcmp(out + 1, data + (f.flagged ? 1 : 0), body) != 0)
		abort();
	if (hdlc_parse(out, m.len, &g) != (ssize_t)m.len || g.type != f.type ||
	    g.info_len != f.info_len)
		abort();
}

static volatile uint8_t sink;

static void
check_scan(const uint8_t *data, size_t size)
{
	size_t off = 0, drop;
	struct hdlc_frame f;

	for (;;) {
		int r = hdlc_scan(data + off, size - off, &f, &drop);
		if (drop > size - off)
			abort();
		off += drop;
		if (r == 0)
			break;
		if (r == 1 && f.info_len)
			sink = f.info[f.info_len - 1]; /* in bounds, says ASan */
	}
}

/* One maximum frame of the 128-byte information length both links use. */
#define FRAME_128 (128 + 17)

static struct hdlc_link l;
static uint8_t outbuf[8 * HDLC_MAX_FRAME], apdu[300];

static void
send_apdu(struct mbuf *out)
{
	/* Only an empty out too small for one frame may refuse it. */
	if (hdlc_link_send(&l, apdu, sizeof(apdu), out) == METER_ENOSPC && out->len == 0)
		abort();
}

/* Poll until nothing is left, writing out (here: dropping it) between. */
static void
drain(int role, struct mbuf *out, size_t cap, unsigned *sum)
{
	struct hdlc_event ev;

	for (int guard = 0;; guard++) {
		if (guard > 10000)
			abort(); /* pending forever */
		while (hdlc_link_poll(&l, out, &ev) != HDLC_EV_NONE) {
			if (ev.type == HDLC_EV_APDU) {
				for (size_t i = 0; i < ev.apdu_len; i++)
					*sum += ev.apdu[i];
				if (!hdlc_link_tx_busy(&l))
					send_apdu(out);
			} else if (ev.type == HDLC_EV_CONNECTED && role == HDLC_CLIENT) {
				send_apdu(out);
			}
			if (out->err || out->len > cap)
				abort();
		}
		if (out->err || out->len > cap)
			abort(); /* the link never overruns out */
		bool pending = hdlc_link_out_pending(&l);
		if (pending && out->len == 0)
			abort(); /* pending, yet nothing came out */
		mbuf_init(out, outbuf, cap);
		if (!pending)
			return;
	}
}

static void
run_link(int role, const uint8_t *data, size_t size, size_t chunk, size_t cap)
{
	static uint8_t rx[4096];
	struct hdlc_link_config cfg = {
	    .role = role,
	    .local =
	        role == HDLC_CLIENT ? (struct hdlc_addr){16, 0, 1} : (struct hdlc_addr){1, 17, 2},
	    .remote =
	        role == HDLC_CLIENT ? (struct hdlc_addr){1, 17, 2} : (struct hdlc_addr){0, 0, 0},
	    .params = {128, 128, 7, 7},
	    .send_params = true,
	    .rxbuf = rx,
	    .rxcap = sizeof(rx),
	};
	struct mbuf out;
	size_t off = 0;
	unsigned sum = 0;

	if (hdlc_link_init(&l, &cfg) < 0)
		abort();
	mbuf_init(&out, outbuf, cap);
	if (role == HDLC_CLIENT && hdlc_link_connect(&l, &out) < 0)
		abort();
	mbuf_init(&out, outbuf, cap);
	while (off < size) {
		size_t k = size - off < chunk ? size - off : chunk;
		size_t took = hdlc_link_feed(&l, data + off, k);
		off += took;
		drain(role, &out, cap, &sum);
		if (took == 0) {
			/* Drained: a frame's worth of room is free again. */
			if ((took = hdlc_link_feed(&l, data + off, k)) == 0)
				abort();
			off += took;
			drain(role, &out, cap, &sum);
		}
		if ((sum & 0xff) == 0x42) {
			(void)hdlc_link_resend(&l, &out);
			drain(role, &out, cap, &sum);
		}
	}
	(void)hdlc_link_disconnect(&l, &out);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct hdlc_params p;
	size_t chunk;

	check_roundtrip(data, size);
	check_scan(data, size);
	if (hdlc_params_decode(data, size, &p) == 0) {
		uint8_t buf[64];
		struct mbuf m;
		mbuf_init(&m, buf, sizeof(buf));
		hdlc_params_encode(&m, &p);
	}
	if (size < 1)
		return 0;
	static const size_t caps[4] = {FRAME_128, 2 * FRAME_128, 7 * FRAME_128, sizeof(outbuf)};
	chunk = 1 + data[0] % 64;
	run_link(HDLC_CLIENT, data + 1, size - 1, chunk, caps[data[0] >> 6]);
	run_link(HDLC_SERVER, data + 1, size - 1, chunk, caps[data[0] >> 6]);
	return 0;
}
