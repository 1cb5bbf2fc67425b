/*
 * fuzz_client.c: a DLMS client engine fed arbitrary bytes in the middle of
 * an association or of a GET, over the wrapper or HDLC, plain or ciphered.
 *
 * The first input byte chooses the scene (fuzz_engine.h): bit 0 HDLC, bit 1
 * "a GET is outstanding" (else "the association was just asked for"),
 * bit 2 HLS-GMAC with ciphering, bits 3-7 the chunk size of the reads; bit
 * 6 also asks the GET for two attributes instead of one.  For a GET the
 * client is first associated for real with a server engine in memory
 * (fuzz_engine.h), with the same keys, counters and challenges as
 * tests/unit/test_dlms_engine.c, so the seeds recorded there (the server's
 * bytes) drive the client deep into block transfer before the fuzzer
 * mutates them.  Every byte of every event's data is read, so a dangling
 * or overlong pointer trips ASan.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dlms_client.h"
#include "dlms_server.h"
#include "fuzz_engine.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int
undefined_get(void *arg, const struct dlms_server_req *rq, struct mbuf *out)
{
	(void)arg;
	(void)rq;
	(void)out;
	return XDLMS_DAR_OBJECT_UNDEFINED;
}

static const struct dlms_server_ops OPS = {.get = undefined_get};

/* Runs the client dry, reading every event; out is emptied when half full. */
static void
client_pump(struct mbuf *out)
{
	struct dlms_client_event ev;
	int guard = 0;

	while (dlms_client_poll(&fe.cl, out, &ev) != DLMS_CEV_NONE) {
		fe_sink = fe_xor(ev.data, ev.data_len) ^ (ev.time ? fe_xor(ev.time, 12) : 0);
		if (++guard > FE_GUARD)
			abort(); /* the engine must run dry */
		if (out->len > sizeof(fe.c_out) / 2)
			mbuf_init(out, fe.c_out, sizeof(fe.c_out));
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct dlms_get_item it[2] = {
	    {{7, {{1, 0, 99, 1, 0, 255}}, 2}, NULL},
	    {{3, {{1, 0, 1, 8, 0, 255}}, 2}, NULL},
	};
	struct fe_scene sc;
	struct mbuf out;

	if (!fe_scene(&data, &size, &sc))
		return 0;
	fe_client_init(sc.framing, sc.secure, 1024);
	mbuf_init(&out, fe.c_out, sizeof(fe.c_out));
	if (sc.associated) {
		/* A server that knows no object: the GET's answers are the input's. */
		fe_policy(1u << ACSE_MECH_NONE | 1u << ACSE_MECH_HLS_GMAC);
		fe_server_init(sc.framing, (struct hdlc_params){2030, 2030, 7, 7}, &OPS);
		fe_associate(client_pump, fe_server_drain, NULL);
		if (dlms_client_get(&fe.cl, &out, it, sc.mode & 0x40 ? 2 : 1))
			abort();
	} else if (dlms_client_open(&fe.cl, &out)) {
		abort();
	}

	fe_feed(FE_CLIENT, data, size, sc.chunk, client_pump);
	/* Whatever state it is in, the timer and release paths must hold. */
	mbuf_init(&out, fe.c_out, sizeof(fe.c_out));
	(void)dlms_client_timeout(&fe.cl, &out);
	client_pump(&out);
	mbuf_init(&out, fe.c_out, sizeof(fe.c_out));
	(void)dlms_client_release(&fe.cl, &out);
	client_pump(&out);
	(void)dlms_client_timeout(&fe.cl, &out);
	client_pump(&out);
	return 0;
}
