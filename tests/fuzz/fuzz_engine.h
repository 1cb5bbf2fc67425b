/*
 * fuzz_engine.h: the harness fuzz_client.c and fuzz_server.c share, a DLMS
 * client engine and a server engine in memory with fixed keys, system
 * titles, challenges and counters (those of tests/unit/test_dlms_engine.c,
 * so recorded seeds replay exactly), the talk between the two until both
 * are quiet, and the fuzz input fed to one engine in chunks.
 *
 * The first input byte chooses the scene the same way in both targets:
 * bit 0 HDLC (else the wrapper), bit 1 "associated first", bit 2
 * LN-with-ciphering with HLS-GMAC (else mechanism none), bits 3-7 the
 * chunk size of the feeds (0: all at once); a target may read more of it.
 *
 * Header-only, every function static inline: a fuzz target is one source
 * file linked with libmeter.a alone, and each includes this once.  What a
 * target does with the engines' events (its object model, its checks on
 * the output) stays in the target, passed in as the drain functions.
 */
#ifndef AMM_FUZZ_ENGINE_H
#define AMM_FUZZ_ENGINE_H

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dlms_client.h"
#include "dlms_server.h"

#define FE_GUARD 100000 /* polls or feeds in a row: more means an engine never runs dry */

static const uint8_t FE_KEY_EK[16] = "0123456789ABCDEF";
static const uint8_t FE_KEY_AK[16] = "ak-ak-ak-ak-ak-a";
static const uint8_t FE_TITLE_C[8] = "AMMD0001";
static const uint8_t FE_TITLE_S[8] = "KAM12345";
static const uint8_t FE_CHAL_C[16] = "client-challenge";
static const uint8_t FE_CHAL_S[16] = "server-challenge";

/* Both engines, their buffers, and where each one's output collects. */
static struct {
	struct dlms_client cl;
	struct dlms_server sv;
	struct dlms_server_policy pol;
	uint8_t c_rx[4096], c_tx[4096], c_work[4096], c_data[256 * 1024];
	uint8_t s_rx[4096], s_tx[4096], s_work[4096], s_data[16384];
	uint8_t c_out[65536], s_out[65536], wire[65536];
} fe;

static volatile uint8_t fe_sink; /* keeps the reads of event data from being optimised out */

struct fe_scene {
	uint8_t mode; /* the first input byte, for bits a target reads itself */
	int framing;
	bool associated;
	bool secure;
	size_t chunk;
};

/* Takes the scene byte off the input; false when there is none. */
static inline bool
fe_scene(const uint8_t **data, size_t *size, struct fe_scene *sc)
{
	if (*size < 1)
		return false;
	sc->mode = (*data)[0];
	sc->framing = sc->mode & 1 ? DLMS_FRAMING_HDLC : DLMS_FRAMING_WRAPPER;
	sc->associated = (sc->mode & 2) != 0;
	sc->secure = (sc->mode & 4) != 0;
	sc->chunk = sc->mode >> 3;
	(*data)++;
	(*size)--;
	return true;
}

/* Reads every byte, so that a dangling or overlong pointer trips ASan. */
static inline uint8_t
fe_xor(const uint8_t *p, size_t n)
{
	uint8_t x = 0;

	for (size_t i = 0; i < n; i++)
		x ^= p[i];
	return x;
}

/* The client side: wport 16 to 1, HDLC 16 to 1/17, 128-byte frames. */
static inline void
fe_client_init(int framing, bool secure, uint32_t max_pdu)
{
	struct dlms_client_config cc;

	memset(&cc, 0, sizeof(cc));
	cc.framing = framing;
	cc.client_wport = 16;
	cc.server_wport = 1;
	cc.hdlc_client = (struct hdlc_addr){16, 0, 1};
	cc.hdlc_server = (struct hdlc_addr){1, 17, 2};
	cc.hdlc_params = (struct hdlc_params){128, 128, 1, 1};
	cc.mechanism = secure ? ACSE_MECH_HLS_GMAC : ACSE_MECH_NONE;
	cc.challenge = FE_CHAL_C;
	cc.challenge_len = sizeof(FE_CHAL_C);
	cc.ciphering = secure;
	memcpy(cc.keys.ek, FE_KEY_EK, 16);
	memcpy(cc.keys.ak, FE_KEY_AK, 16);
	memcpy(cc.system_title, FE_TITLE_C, 8);
	cc.tx_counter = 1000;
	cc.max_pdu = max_pdu;
	cc.timeout_ms = 5000;
	cc.buf = (struct dlms_buffers){fe.c_rx,   sizeof(fe.c_rx),   fe.c_tx,   sizeof(fe.c_tx),
	                               fe.c_work, sizeof(fe.c_work), fe.c_data, sizeof(fe.c_data)};
	if (dlms_client_init(&fe.cl, &cc))
		abort();
}

/*
 * The server's policy with the shared keys and title, a 512-byte PDU and
 * the given mechanisms; a target adds what is its own (a password) to
 * fe.pol before fe_server_init().
 */
static inline void
fe_policy(uint32_t mechanisms)
{
	memset(&fe.pol, 0, sizeof(fe.pol));
	fe.pol.mechanisms = mechanisms;
	fe.pol.ciphering_allowed = true;
	memcpy(fe.pol.keys.ek, FE_KEY_EK, 16);
	memcpy(fe.pol.keys.ak, FE_KEY_AK, 16);
	memcpy(fe.pol.system_title, FE_TITLE_S, 8);
	fe.pol.max_pdu = 512;
}

/* The server side behind ops, with fe.pol; its output must fit s_out. */
static inline void
fe_server_init(int framing, struct hdlc_params hp, const struct dlms_server_ops *ops)
{
	struct dlms_server_config sc;

	memset(&sc, 0, sizeof(sc));
	sc.framing = framing;
	sc.server_wport = 1;
	sc.hdlc_server = (struct hdlc_addr){1, 17, 2};
	sc.hdlc_params = hp;
	sc.policy = &fe.pol;
	sc.ops = ops;
	sc.buf = (struct dlms_buffers){fe.s_rx,   sizeof(fe.s_rx),   fe.s_tx,   sizeof(fe.s_tx),
	                               fe.s_work, sizeof(fe.s_work), fe.s_data, sizeof(fe.s_data)};
	sc.challenge = FE_CHAL_S;
	sc.challenge_len = sizeof(FE_CHAL_S);
	if (dlms_server_init(&fe.sv, &sc))
		abort();
	fe.sv.tx_counter = 500;
	if (dlms_server_out_max(&fe.sv) > sizeof(fe.s_out))
		abort();
}

/* Drains that only run an engine dry: for the side a target does not fuzz. */
static inline void
fe_client_drain(struct mbuf *co)
{
	struct dlms_client_event ev;
	int guard = 0;

	while (dlms_client_poll(&fe.cl, co, &ev) != DLMS_CEV_NONE)
		if (++guard > FE_GUARD)
			abort();
}

static inline void
fe_server_drain(struct mbuf *so)
{
	struct dlms_server_event ev;
	int guard = 0;

	while (dlms_server_poll(&fe.sv, so, &ev) != DLMS_SEV_NONE)
		if (++guard > FE_GUARD)
			abort();
}

/*
 * Lets the client and the server talk until both are quiet.  The client's
 * output collects in co (over fe.c_out), the server's in an mbuf over
 * fe.s_out; each drain handles its engine's events.  The client's bytes
 * are also appended to rec when it is not NULL (to record seeds).
 */
static inline void
fe_exchange(struct mbuf *co, void (*client_drain)(struct mbuf *co),
            void (*server_drain)(struct mbuf *so), struct mbuf *rec)
{
	struct mbuf so;

	mbuf_init(&so, fe.s_out, sizeof(fe.s_out));
	for (int round = 0; round < 10000; round++) {
		size_t n;

		client_drain(co);
		if (co->len) {
			int guard = 0;
			n = co->len;
			memcpy(fe.wire, fe.c_out, n);
			mbuf_init(co, fe.c_out, sizeof(fe.c_out));
			if (rec != NULL)
				mbuf_put(rec, fe.wire, n);
			for (size_t off = 0; off < n;) {
				off += dlms_server_feed(&fe.sv, fe.wire + off, n - off);
				server_drain(&so);
				if (++guard > FE_GUARD)
					abort();
			}
			continue;
		}
		if (so.len) {
			n = so.len;
			memcpy(fe.wire, fe.s_out, n);
			mbuf_init(&so, fe.s_out, sizeof(fe.s_out));
			dlms_client_feed(&fe.cl, fe.wire, n);
			continue;
		}
		break;
	}
}

/*
 * Associates the initialised client with the initialised server for
 * real; aborts unless both end up associated.
 */
static inline void
fe_associate(void (*client_drain)(struct mbuf *co), void (*server_drain)(struct mbuf *so),
             struct mbuf *rec)
{
	struct mbuf co;

	mbuf_init(&co, fe.c_out, sizeof(fe.c_out));
	if (dlms_client_open(&fe.cl, &co))
		abort();
	fe_exchange(&co, client_drain, server_drain, rec);
	if (fe.cl.state != DLMS_CLIENT_READY || fe.sv.state != DLMS_SERVER_ASSOCIATED)
		abort();
}

enum fe_side { FE_CLIENT, FE_SERVER };

/*
 * Feeds data to one engine, chunk bytes at a time (0: all at once), and
 * after every feed calls pump with an empty mbuf over that engine's
 * output buffer.  An engine that stops taking input aborts.
 */
static inline void
fe_feed(enum fe_side side, const uint8_t *data, size_t size, size_t chunk,
        void (*pump)(struct mbuf *out))
{
	uint8_t *ob = side == FE_SERVER ? fe.s_out : fe.c_out;
	size_t ob_size = side == FE_SERVER ? sizeof(fe.s_out) : sizeof(fe.c_out);

	for (size_t off = 0; off < size;) {
		size_t k = chunk ? chunk : size - off;
		size_t taken = 0;
		int guard = 0;

		if (k > size - off)
			k = size - off;
		while (taken < k) {
			const uint8_t *p = data + off + taken;
			struct mbuf out;

			taken += side == FE_SERVER ? dlms_server_feed(&fe.sv, p, k - taken)
			                           : dlms_client_feed(&fe.cl, p, k - taken);
			mbuf_init(&out, ob, ob_size);
			pump(&out);
			if (++guard > FE_GUARD)
				abort();
		}
		off += k;
	}
}

#endif
