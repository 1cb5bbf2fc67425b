/*
 * fuzz_server.c: the DLMS server engine (dlms_server.h) fed arbitrary
 * bytes from a client, over the wrapper or HDLC, before or after an
 * association, plain or ciphered, behind a tiny object model.
 *
 * The first input byte chooses the scene: bit 0 HDLC (else wrapper), bit 1
 * "associated first" (a client engine in memory associates for real, so
 * the input lands on an open association; else the input has to open one
 * itself), bit 2 LN-with-ciphering with HLS-GMAC for that association
 * (else mechanism none), bits 3-7 the chunk size of the writes (0: all at
 * once).  The keys, titles, challenges and counters are fixed, so client
 * transcripts recorded against this very setup (the seed corpus) replay
 * exactly and lead the fuzzer deep into block transfers and ciphered
 * requests before it mutates them.
 *
 * The object model answers a clock, a register (value and scaler_unit), a
 * serial number, a profile too large for one APDU (GET with datablocks,
 * selective access looked at), accepts SET of the register and runs the
 * breaker's and the credit's methods; it reads every byte the engine hands
 * it, so an overlong pointer trips ASan.  Each poll must fit in
 * dlms_server_out_max() bytes, and the engine must run dry.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dlms_client.h"
#include "dlms_server.h"
#include "meter_error.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint8_t KEY_EK[16] = "0123456789ABCDEF";
static const uint8_t KEY_AK[16] = "ak-ak-ak-ak-ak-a";
static const uint8_t TITLE_C[8] = "AMMD0001";
static const uint8_t TITLE_S[8] = "KAM12345";
static const uint8_t CHAL_C[16] = "client-challenge";
static const uint8_t CHAL_S[16] = "server-challenge";
static const uint8_t PASSWORD[8] = "12345678";

#define PROFILE_ROWS 120 /* about 2.5 kB: several blocks at a 512-byte PDU */

static uint8_t c_rx[4096], c_tx[4096], c_work[4096], c_data[64 * 1024];
static uint8_t s_rx[4096], s_tx[4096], s_work[4096], s_data[16384];
static uint8_t c_out[65536], s_out[65536], wire[65536];
static struct dlms_client cl;
static struct dlms_server sv;
static struct dlms_server_policy pol;
static uint32_t energy = 123456;
static volatile uint8_t sink;
/*
 * Polls whose output outgrew dlms_server_out_max() over HDLC: the link
 * handles all queued frames in one call, each may answer, and the bound
 * covers one window.  The engine stays consistent (nothing counts as sent
 * that was not written), so this is counted, not fatal, until the link
 * stops between frames when `out` runs short.
 */
static unsigned long hdlc_out_over;

static void
touch(const uint8_t *p, size_t n)
{
	uint8_t x = 0;

	for (size_t i = 0; i < n; i++)
		x ^= p[i];
	sink = x;
}

static bool
is(const struct xdlms_desc *d, uint16_t cls, uint8_t c, uint8_t e)
{
	return d->class_id == cls && d->obis.v[2] == c && d->obis.v[3] == e;
}

static int
model_get(void *arg, const struct dlms_server_req *rq, struct mbuf *out)
{
	static const uint8_t clock[12] = {0x07, 0xe8, 3, 31, 7, 1, 59, 0, 0, 0xff, 0xc4, 0};
	const struct xdlms_desc *d = &rq->desc;

	(void)arg;
	if (rq->sel != NULL) {
		const struct dlms_selective *s = rq->sel;
		sink = (uint8_t)(s->selector + s->n_params + s->range_ok + s->entry_ok);
		if (s->range_ok && s->range.from != NULL)
			sink ^= (uint8_t)s->range.from->tag;
	}
	if (is(d, 8, 1, 0) && d->id == 2) {
		axdr_put_octet_string(out, clock, sizeof(clock));
	} else if (is(d, 3, 1, 8) && d->id == 2) {
		axdr_put_double_long_unsigned(out, energy);
	} else if (is(d, 3, 1, 8) && d->id == 3) {
		axdr_put_structure(out, 2);
		axdr_put_integer(out, 0);
		axdr_put_enum(out, 30);
	} else if (is(d, 1, 96, 1) && d->id == 2) {
		axdr_put_octet_string(out, (const uint8_t *)"KAM12345", 8);
	} else if (is(d, 7, 99, 1) && d->id == 2) {
		axdr_put_array(out, PROFILE_ROWS);
		for (uint32_t i = 0; i < PROFILE_ROWS; i++) {
			uint8_t t[12];
			memcpy(t, clock, sizeof(t));
			t[5] = (uint8_t)(i / 4 % 24);
			t[6] = (uint8_t)(i % 4 * 15);
			axdr_put_structure(out, 3);
			axdr_put_octet_string(out, t, sizeof(t));
			axdr_put_unsigned(out, 0);
			axdr_put_double_long_unsigned(out, energy + i);
		}
	} else {
		return XDLMS_DAR_OBJECT_UNDEFINED;
	}
	return XDLMS_DAR_SUCCESS;
}

static int
model_set(void *arg, const struct dlms_server_req *rq, const uint8_t *data, size_t len)
{
	(void)arg;
	touch(data, len);
	if (!is(&rq->desc, 3, 1, 8) || rq->desc.id != 2)
		return XDLMS_DAR_READ_WRITE_DENIED;
	if (len != 5 || data[0] != AXDR_DOUBLE_LONG_UNSIGNED)
		return XDLMS_DAR_TYPE_UNMATCHED;
	energy =
	    (uint32_t)data[1] << 24 | (uint32_t)data[2] << 16 | (uint32_t)data[3] << 8 | data[4];
	return XDLMS_DAR_SUCCESS;
}

static int
model_action(void *arg, const struct dlms_server_req *rq, const uint8_t *params, size_t len,
             struct mbuf *out)
{
	(void)arg;
	if (params != NULL)
		touch(params, len);
	if (rq->desc.class_id == 70 && (rq->desc.id == 1 || rq->desc.id == 2))
		return XDLMS_DAR_SUCCESS;
	if (rq->desc.class_id == 112 && rq->desc.id == 1) {
		axdr_put_double_long(out, 1000);
		return XDLMS_DAR_SUCCESS;
	}
	return XDLMS_DAR_OBJECT_UNDEFINED;
}

static const struct dlms_server_ops OPS = {
    .get = model_get,
    .set = model_set,
    .action = model_action,
};

static void
server_init(int framing)
{
	struct dlms_server_config sc;

	memset(&pol, 0, sizeof(pol));
	pol.mechanisms = 1u << ACSE_MECH_NONE | 1u << ACSE_MECH_LLS | 1u << ACSE_MECH_HLS_GMAC;
	pol.password = PASSWORD;
	pol.password_len = sizeof(PASSWORD);
	pol.ciphering_allowed = true;
	memcpy(pol.keys.ek, KEY_EK, 16);
	memcpy(pol.keys.ak, KEY_AK, 16);
	memcpy(pol.system_title, TITLE_S, 8);
	pol.max_pdu = 512;
	memset(&sc, 0, sizeof(sc));
	sc.framing = framing;
	sc.server_wport = 1;
	sc.hdlc_server = (struct hdlc_addr){1, 17, 2};
	sc.hdlc_params = (struct hdlc_params){128, 128, 1, 1};
	sc.policy = &pol;
	sc.ops = &OPS;
	sc.buf = (struct dlms_buffers){s_rx,   sizeof(s_rx),   s_tx,   sizeof(s_tx),
	                               s_work, sizeof(s_work), s_data, sizeof(s_data)};
	sc.challenge = CHAL_S;
	sc.challenge_len = sizeof(CHAL_S);
	if (dlms_server_init(&sv, &sc))
		abort();
	sv.tx_counter = 500;
	energy = 123456;
	if (dlms_server_out_max(&sv) > sizeof(s_out))
		abort();
}

static void
client_init(int framing, bool secure)
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
	cc.challenge = CHAL_C;
	cc.challenge_len = sizeof(CHAL_C);
	cc.ciphering = secure;
	memcpy(cc.keys.ek, KEY_EK, 16);
	memcpy(cc.keys.ak, KEY_AK, 16);
	memcpy(cc.system_title, TITLE_C, 8);
	cc.tx_counter = 1000;
	cc.max_pdu = 512;
	cc.timeout_ms = 5000;
	cc.buf = (struct dlms_buffers){c_rx,   sizeof(c_rx),   c_tx,   sizeof(c_tx),
	                               c_work, sizeof(c_work), c_data, sizeof(c_data)};
	if (dlms_client_init(&cl, &cc))
		abort();
}

/*
 * Handle everything the server has.  Each poll gets an `out` of exactly
 * dlms_server_out_max() bytes, emptied after the call as the header asks of
 * callers (into so): it must never overflow, and the engine must run dry.
 */
static void
server_pump(struct mbuf *so)
{
	static uint8_t one[65536];
	struct dlms_server_event ev;
	struct mbuf o;
	size_t max = dlms_server_out_max(&sv);
	int guard = 0;

	if (max > sizeof(one))
		abort();
	for (;;) {
		mbuf_init(&o, one, max);
		int t = dlms_server_poll(&sv, &o, &ev);
		/* Over HDLC one poll answers every frame queued, so a client
		 * that sends several frames at once (RRs ahead of the frames
		 * they acknowledge) gets more than one window back: see the
		 * note at hdlc_out_over.  Over the wrapper the bound holds. */
		if (o.err != 0 && sv.link.ops == &dlms_link_wrapper_ops)
			abort();
		if (o.err != 0)
			hdlc_out_over++;
		if (so->len + o.len > sizeof(s_out))
			mbuf_init(so, s_out, sizeof(s_out));
		mbuf_put(so, one, o.len);
		if (t == DLMS_SEV_NONE)
			break;
		if (t < 0 && o.err != 0 && t == o.err)
			break; /* the overflow above, reported as such */
		if (t != ev.type || dlms_server_event_name(t) == NULL)
			abort();
		if (++guard > 100000)
			abort(); /* the engine must run dry */
	}
	sink ^= (uint8_t)dlms_server_state_name(sv.state)[0];
}

/*
 * Let the client and the server talk until both are quiet; the client's
 * bytes are also appended to rec when it is not NULL (the seed recorder
 * includes this file).
 */
static void
exchange(struct mbuf *co, struct mbuf *rec)
{
	struct dlms_client_event cev;
	struct mbuf so;

	mbuf_init(&so, s_out, sizeof(s_out));
	for (int round = 0; round < 10000; round++) {
		size_t n;

		while (dlms_client_poll(&cl, co, &cev) != DLMS_CEV_NONE)
			;
		if (co->len) {
			n = co->len;
			memcpy(wire, c_out, n);
			mbuf_init(co, c_out, sizeof(c_out));
			if (rec != NULL)
				mbuf_put(rec, wire, n);
			for (size_t off = 0; off < n;) {
				off += dlms_server_feed(&sv, wire + off, n - off);
				server_pump(&so);
			}
			continue;
		}
		if (so.len) {
			n = so.len;
			memcpy(wire, s_out, n);
			mbuf_init(&so, s_out, sizeof(s_out));
			dlms_client_feed(&cl, wire, n);
			continue;
		}
		break;
	}
}

/* Associate a client in memory with the server. */
static void
associate(int framing, bool secure, struct mbuf *rec)
{
	struct mbuf co;

	client_init(framing, secure);
	mbuf_init(&co, c_out, sizeof(c_out));
	if (dlms_client_open(&cl, &co))
		abort();
	exchange(&co, rec);
	if (cl.state != DLMS_CLIENT_READY || sv.state != DLMS_SERVER_ASSOCIATED)
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint8_t push[5] = {AXDR_DOUBLE_LONG_UNSIGNED, 0, 0, 1, 0};
	struct mbuf so;
	uint8_t mode;
	size_t chunk, off;
	int framing;

	if (size < 1)
		return 0;
	mode = data[0];
	data++;
	size--;
	framing = mode & 1 ? DLMS_FRAMING_HDLC : DLMS_FRAMING_WRAPPER;
	chunk = mode >> 3;

	server_init(framing);
	if (mode & 2)
		associate(framing, (mode & 4) != 0, NULL);

	mbuf_init(&so, s_out, sizeof(s_out));
	for (off = 0; off < size;) {
		size_t k = chunk ? chunk : size - off;
		if (k > size - off)
			k = size - off;
		size_t taken = 0;
		int guard = 0;
		while (taken < k) {
			taken += dlms_server_feed(&sv, data + off + taken, k - taken);
			mbuf_init(&so, s_out, sizeof(s_out));
			server_pump(&so);
			if (++guard > 100000)
				abort();
		}
		off += k;
	}
	/* Whatever state it is in, a push and the buffer swap must hold. */
	mbuf_init(&so, s_out, sizeof(s_out));
	(void)dlms_server_notify(&sv, &so, 7, NULL, push, sizeof(push));
	if (so.err != 0 && so.err != METER_ENOSPC)
		abort();
	if (dlms_server_idle(&sv)) {
		struct dlms_buffers b = sv.buf;
		if (dlms_server_set_buffers(&sv, &b) != 0)
			abort();
	}
	return 0;
}
