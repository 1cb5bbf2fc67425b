/*
 * fuzz_axdr.c: libFuzzer target for the A-XDR codec.
 *
 * Whatever the input, decoding must not crash or read past it; when it
 * succeeds, re-encoding must give back exactly the bytes consumed, the
 * re-encoded bytes must decode to an equal tree, and axdr_skip must agree
 * with axdr_decode on the length.  The seed corpus (corpus/axdr/) is the
 * `axdr` rows of the DLMS vectors, one binary file each.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "axdr.h"
#include "cosem_time.h"
#include "meter_error.h"

#define CAP 4096

static struct axdr_node nodes[CAP], again[CAP];
static uint8_t out[1 << 17];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mbuf b;
	size_t n, n2;
	ssize_t r, s, w;

	r = axdr_decode(data, size, nodes, CAP, &n);
	s = axdr_skip(data, size);
	if (r != METER_ENOSPC && s != r)
		abort();
	if (r < 0) {
		if (r != METER_ENEEDMORE && r != METER_EMALFORMED && r != METER_ELIMIT &&
		    r != METER_ENOSPC)
			abort();
		return 0;
	}
	if (nodes[0].span != n || (size_t)r > size)
		abort();

	mbuf_init(&b, out, sizeof out);
	w = axdr_encode(nodes, n, &b);
	if (w == METER_ENOSPC && (size_t)r > sizeof out)
		return 0;
	if (w != r || memcmp(out, data, (size_t)r) != 0)
		abort();
	if (axdr_decode(out, (size_t)w, again, CAP, &n2) != r || n2 != n ||
	    !axdr_equal(nodes, again))
		abort();

	/* the accessors on whatever came out */
	for (size_t i = 0; i < n; i++) {
		const struct axdr_node *nd = &nodes[i];
		double d;
		int64_t v;
		(void)axdr_to_double(nd, &d);
		(void)axdr_to_int64(nd, &v);
		if (nd->tag == AXDR_ARRAY || nd->tag == AXDR_STRUCTURE ||
		    nd->tag == AXDR_COMPACT_ARRAY) {
			if (nd->len && !axdr_child(nd, nd->len - 1))
				abort();
			if (axdr_child(nd, nd->len))
				abort();
		}
		if (nd->tag == AXDR_DATE_TIME ||
		    (nd->tag == AXDR_OCTET_STRING && nd->len == 12)) {
			struct cosem_datetime dt;
			int64_t utc;
			struct cosem_tz tz = COSEM_TZ_CPH;
			char txt[64];
			uint8_t raw[12];
			if (cosem_datetime_decode(nd->ptr, &dt) == 0) {
				cosem_datetime_encode(&dt, raw);
				if (memcmp(raw, nd->ptr, 12) != 0)
					abort();
				cosem_datetime_format(&dt, txt, sizeof txt);
				(void)cosem_datetime_to_utc(&dt, &tz, &utc);
			}
		}
	}
	return 0;
}
