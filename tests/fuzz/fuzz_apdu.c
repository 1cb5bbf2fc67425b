/*
 * fuzz_apdu.c: libFuzzer target for the xDLMS service APDU codec.
 *
 * Whatever the input, xdlms_decode() must not crash or read past it, and
 * must answer the same with and without a node array (bar running out of
 * nodes).  When it succeeds on a service APDU, encoding the decoded struct
 * must give back exactly the bytes consumed, both from the recorded raw
 * Data bytes and from the decoded nodes alone.  The bare selective-access
 * decoder and its range/entry readers get the same input.  The seed
 * corpus (corpus/apdu/) is the xDLMS rows of the DLMS vectors.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "meter_error.h"
#include "xdlms.h"

#define CAP 2048

static struct axdr_node nodes[CAP];
static struct xdlms_apdu apdu, apdu2;
static uint8_t out[1 << 17];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
clear(struct xdlms_data *d)
{
	d->raw = NULL;
	d->len = 0;
}

static void
reencode(const struct xdlms_apdu *a, const uint8_t *want, size_t n)
{
	struct mbuf b;

	mbuf_init(&b, out, sizeof(out));
	if (xdlms_encode(a, &b) != (ssize_t)n || memcmp(out, want, n) != 0)
		abort();
}

static bool
allowed(ssize_t r)
{
	return r == METER_ENEEDMORE || r == METER_EMALFORMED || r == METER_EUNSUPPORTED ||
	       r == METER_ELIMIT || r == METER_ENOSPC;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	ssize_t r, s;

	r = xdlms_decode(data, size, &apdu, nodes, CAP);
	s = xdlms_decode(data, size, &apdu2, NULL, 0);
	if (r != METER_ENOSPC && r != s)
		abort();
	if (r < 0) {
		if (!allowed(r))
			abort();
	} else {
		if ((size_t)r > size || apdu.trailing != size - (size_t)r || apdu.n_nodes > CAP)
			abort();
		if (apdu.type != XDLMS_CIPHERED) {
			reencode(&apdu, data, (size_t)r);
			clear(&apdu.access.params);
			clear(&apdu.value);
			clear(&apdu.get.data);
			clear(&apdu.act.ret.data);
			for (size_t i = 0; i < XDLMS_MAX_LIST; i++) {
				clear(&apdu.items[i].access.params);
				clear(&apdu.items[i].value);
				clear(&apdu.items[i].get.data);
				clear(&apdu.items[i].act.ret.data);
			}
			reencode(&apdu, data, (size_t)r);
		}
		bool last;
		(void)xdlms_block_check(&apdu, apdu.block.number, &last);
	}

	/* the same bytes as a bare Selective-Access-Descriptor */
	struct xdlms_access acc;
	size_t used;
	r = xdlms_decode_access(data, size, &acc, nodes, CAP, &used);
	if (r < 0) {
		if (!allowed(r))
			abort();
		return 0;
	}
	struct xdlms_range rg;
	struct xdlms_entry e;
	if (xdlms_range_from_nodes(acc.params.node, &rg) == 0) {
		for (uint32_t i = 0; i < rg.n_selected; i++) {
			struct xdlms_capture_obj c;
			if (xdlms_capture_obj_from_node(axdr_child(rg.selected, i), &c) != 0)
				abort();
		}
	}
	(void)xdlms_entry_from_nodes(acc.params.node, &e);
	return 0;
}
