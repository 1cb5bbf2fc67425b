/*
 * fuzz_client.c: a DLMS client engine fed arbitrary bytes in the middle of
 * an association or of a GET, over the wrapper or HDLC, plain or ciphered.
 *
 * The first input byte chooses the scene: bit 0 HDLC (else wrapper), bit 1
 * "a GET is outstanding" (else "the association was just asked for"),
 * bit 2 LN-with-ciphering with HLS-GMAC (else no security), bits 3-7 the
 * chunk size of the reads (0: all at once).  For a GET the client is first
 * associated for real with a server engine in memory, with the same keys,
 * counters and challenges as tests/unit/test_dlms_engine.c, so the seeds
 * recorded there (the server's bytes) drive the client deep into block
 * transfer before the fuzzer mutates them.  Every byte of every event's
 * data is read, so a dangling or overlong pointer trips ASan.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dlms_client.h"
#include "dlms_server.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint8_t KEY_EK[16] = "0123456789ABCDEF";
static const uint8_t KEY_AK[16] = "ak-ak-ak-ak-ak-a";
static const uint8_t TITLE_C[8] = "AMMD0001";
static const uint8_t TITLE_S[8] = "KAM12345";
static const uint8_t CHAL_C[16] = "client-challenge";
static const uint8_t CHAL_S[16] = "server-challenge";

static uint8_t c_rx[4096], c_tx[4096], c_work[4096], c_data[256 * 1024];
static uint8_t s_rx[4096], s_tx[4096], s_work[4096], s_data[16384];
static uint8_t c_out[65536], s_out[65536], wire[65536];
static struct dlms_client cl;
static struct dlms_server sv;
static volatile uint8_t sink;

static int
undefined_get(void *arg, const struct dlms_server_req *rq, struct mbuf *out)
{
	(void)arg;
	(void)rq;
	(void)out;
	return XDLMS_DAR_OBJECT_UNDEFINED;
}

static const struct dlms_server_ops OPS = {.get = undefined_get};

static void
touch(const struct dlms_client_event *ev)
{
	uint8_t x = 0;

	for (size_t i = 0; i < ev->data_len; i++)
		x ^= ev->data[i];
	if (ev->time)
		for (size_t i = 0; i < 12; i++)
			x ^= ev->time[i];
	sink = x;
}

static void
client_pump(struct mbuf *out)
{
	struct dlms_client_event ev;
	int guard = 0;

	while (dlms_client_poll(&cl, out, &ev) != DLMS_CEV_NONE) {
		touch(&ev);
		if (++guard > 100000)
			abort(); /* the engine must run dry */
		if (out->len > sizeof(c_out) / 2)
			mbuf_init(out, c_out, sizeof(c_out));
	}
}

/* Associate the client with a server engine in memory. */
static int
associate(int framing, bool secure)
{
	struct dlms_server_policy pol;
	struct dlms_server_config sc;
	struct mbuf co, so;
	struct dlms_server_event sev;

	memset(&pol, 0, sizeof(pol));
	pol.mechanisms = 1u << ACSE_MECH_NONE | 1u << ACSE_MECH_HLS_GMAC;
	pol.ciphering_allowed = true;
	memcpy(pol.keys.ek, KEY_EK, 16);
	memcpy(pol.keys.ak, KEY_AK, 16);
	memcpy(pol.system_title, TITLE_S, 8);
	pol.max_pdu = 512;
	memset(&sc, 0, sizeof(sc));
	sc.framing = framing;
	sc.server_wport = 1;
	sc.hdlc_server = (struct hdlc_addr){1, 17, 2};
	sc.hdlc_params = (struct hdlc_params){2030, 2030, 7, 7};
	sc.policy = &pol;
	sc.ops = &OPS;
	sc.buf = (struct dlms_buffers){s_rx,   sizeof(s_rx),   s_tx,   sizeof(s_tx),
	                               s_work, sizeof(s_work), s_data, sizeof(s_data)};
	sc.challenge = CHAL_S;
	sc.challenge_len = sizeof(CHAL_S);
	if (dlms_server_init(&sv, &sc))
		abort();
	sv.tx_counter = 500;
	(void)secure;

	mbuf_init(&co, c_out, sizeof(c_out));
	mbuf_init(&so, s_out, sizeof(s_out));
	if (dlms_client_open(&cl, &co))
		abort();
	for (int round = 0; round < 1000; round++) {
		size_t n;

		client_pump(&co);
		if (co.len) {
			n = co.len;
			memcpy(wire, c_out, n);
			mbuf_init(&co, c_out, sizeof(c_out));
			dlms_server_feed(&sv, wire, n);
			while (dlms_server_poll(&sv, &so, &sev) != DLMS_SEV_NONE)
				;
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
	return cl.state == DLMS_CLIENT_READY ? 0 : -1;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct dlms_client_config cc;
	struct dlms_get_item it[2] = {
	    {{7, {{1, 0, 99, 1, 0, 255}}, 2}, NULL},
	    {{3, {{1, 0, 1, 8, 0, 255}}, 2}, NULL},
	};
	struct mbuf out;
	uint8_t mode;
	size_t chunk, off;
	int framing;
	bool secure, get;

	if (size < 1)
		return 0;
	mode = data[0];
	data++;
	size--;
	framing = mode & 1 ? DLMS_FRAMING_HDLC : DLMS_FRAMING_WRAPPER;
	get = (mode & 2) != 0;
	secure = (mode & 4) != 0;
	chunk = mode >> 3;

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
	cc.max_pdu = 1024;
	cc.timeout_ms = 5000;
	cc.buf = (struct dlms_buffers){c_rx,   sizeof(c_rx),   c_tx,   sizeof(c_tx),
	                               c_work, sizeof(c_work), c_data, sizeof(c_data)};
	if (dlms_client_init(&cl, &cc))
		abort();
	mbuf_init(&out, c_out, sizeof(c_out));
	if (get) {
		if (associate(framing, secure))
			abort();
		if (dlms_client_get(&cl, &out, it, mode & 0x40 ? 2 : 1))
			abort();
	} else if (dlms_client_open(&cl, &out)) {
		abort();
	}

	for (off = 0; off < size;) {
		size_t k = chunk ? chunk : size - off;
		if (k > size - off)
			k = size - off;
		size_t taken = 0;
		int guard = 0;
		while (taken < k) {
			taken += dlms_client_feed(&cl, data + off + taken, k - taken);
			mbuf_init(&out, c_out, sizeof(c_out));
			client_pump(&out);
			if (++guard > 100000)
				abort();
		}
		off += k;
	}
	/* Whatever state it is in, the timer and release paths must hold. */
	mbuf_init(&out, c_out, sizeof(c_out));
	(void)dlms_client_timeout(&cl, &out);
	client_pump(&out);
	mbuf_init(&out, c_out, sizeof(c_out));
	(void)dlms_client_release(&cl, &out);
	client_pump(&out);
	(void)dlms_client_timeout(&cl, &out);
	client_pump(&out);
	return 0;
}
