/*
 * fuzz_server.c: the DLMS server engine (dlms_server.h) fed arbitrary
 * bytes from a client, over the wrapper or HDLC, before or after an
 * association, plain or ciphered, behind a tiny object model.
 *
 * The first input byte chooses the scene (fuzz_engine.h): bit 0 HDLC, bit
 * 1 "associated first" (a client engine in memory associates for real, so
 * the input lands on an open association; else the input has to open one
 * itself), bit 2 HLS-GMAC with ciphering for that association, bits 3-7
 * the chunk size of the writes.  The keys, titles, challenges and counters
 * are fixed (fuzz_engine.h), so client transcripts recorded against this
 * very setup (the seed corpus) replay exactly and lead the fuzzer deep
 * into block transfers and ciphered requests before it mutates them.
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

#include "dlms_server.h"
#include "fuzz_engine.h"
#include "meter_error.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint8_t PASSWORD[8] = "12345678";

#define PROFILE_ROWS 120 /* about 2.5 kB: several blocks at a 512-byte PDU */

static uint32_t energy = 123456;
/*
 * Polls whose output outgrew dlms_server_out_max() over HDLC: the link
 * handles all queued frames in one call, each may answer, and the bound
 * covers one window.  The engine stays consistent (nothing counts as sent
 * that was not written), so this is counted, not fatal, until the link
 * stops between frames when `out` runs short.
 */
static unsigned long hdlc_out_over;

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
		fe_sink = (uint8_t)(s->selector + s->n_params + s->range_ok + s->entry_ok);
		if (s->range_ok && s->range.from != NULL)
			fe_sink ^= (uint8_t)s->range.from->tag;
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
	fe_sink = fe_xor(data, len);
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
		fe_sink = fe_xor(params, len);
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
	size_t max = dlms_server_out_max(&fe.sv);
	int guard = 0;

	if (max > sizeof(one))
		abort();
	for (;;) {
		mbuf_init(&o, one, max);
		int t = dlms_server_poll(&fe.sv, &o, &ev);
		/* Over HDLC one poll answers every frame queued, so a client
		 * that sends several frames at once (RRs ahead of the frames
		 * they acknowledge) gets more than one window back: see the
		 * note at hdlc_out_over.  Over the wrapper the bound holds. */
		if (o.err != 0 && fe.sv.link.ops == &dlms_link_wrapper_ops)
			abort();
		if (o.err != 0)
			hdlc_out_over++;
		if (so->len + o.len > sizeof(fe.s_out))
			mbuf_init(so, fe.s_out, sizeof(fe.s_out));
		mbuf_put(so, one, o.len);
		if (t == DLMS_SEV_NONE)
			break;
		if (t < 0 && o.err != 0 && t == o.err)
			break; /* the overflow above, reported as such */
		if (t != ev.type || dlms_server_event_name(t) == NULL)
			abort();
		if (++guard > FE_GUARD)
			abort(); /* the engine must run dry */
	}
	fe_sink ^= (uint8_t)dlms_server_state_name(fe.sv.state)[0];
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint8_t push[5] = {AXDR_DOUBLE_LONG_UNSIGNED, 0, 0, 1, 0};
	struct fe_scene sc;
	struct mbuf so;

	if (!fe_scene(&data, &size, &sc))
		return 0;
	fe_policy(1u << ACSE_MECH_NONE | 1u << ACSE_MECH_LLS | 1u << ACSE_MECH_HLS_GMAC);
	fe.pol.password = PASSWORD;
	fe.pol.password_len = sizeof(PASSWORD);
	fe_server_init(sc.framing, (struct hdlc_params){128, 128, 1, 1}, &OPS);
	energy = 123456;
	if (sc.associated) {
		fe_client_init(sc.framing, sc.secure, 512);
		fe_associate(fe_client_drain, server_pump, NULL);
	}

	fe_feed(FE_SERVER, data, size, sc.chunk, server_pump);
	/* Whatever state it is in, a push and the buffer swap must hold. */
	mbuf_init(&so, fe.s_out, sizeof(fe.s_out));
	(void)dlms_server_notify(&fe.sv, &so, 7, NULL, push, sizeof(push));
	if (so.err != 0 && so.err != METER_ENOSPC)
		abort();
	if (dlms_server_idle(&fe.sv)) {
		struct dlms_buffers b = fe.sv.buf;
		if (dlms_server_set_buffers(&fe.sv, &b) != 0)
			abort();
	}
	return 0;
}
