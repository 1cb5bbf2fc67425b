/*
 * fuzz_wrapper.c: arbitrary bytes into the IEC 62056-47 wrapper parser and
 * stream.  A parsed PDU must re-encode to the same bytes; the stream, fed
 * in chunks chosen by the first byte, must yield the same PDUs as repeated
 * wrapper_parse() calls over the whole input.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "wrapper.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t buf[WRAPPER_HEADER_LEN + 4096], enc[WRAPPER_HEADER_LEN + 65536];
	struct wrapper_stream s;
	struct wrapper_pdu w, v;
	struct mbuf m;
	size_t chunk, off = 0, pos = 0, max;
	ssize_t n;
	int r = 0;

	if (size < 2)
		return 0;
	chunk = 1 + data[0] % 128;
	max = (size_t)data[1] * 16;
	data += 2;
	size -= 2;

	n = wrapper_parse(data, size, max, &w);
	if (n > 0) {
		mbuf_init(&m, enc, sizeof(enc));
		if (wrapper_encode(&m, w.src_wport, w.dst_wport, w.apdu, w.length) != n ||
		    memcmp(enc, data, (size_t)n) != 0)
			abort();
	}

	if (wrapper_stream_init(&s, buf, sizeof(buf), max) < 0)
		abort();
	while (off < size && r >= 0) {
		size_t k = size - off < chunk ? size - off : chunk;
		off += wrapper_stream_feed(&s, data + off, k);
		while ((r = wrapper_stream_next(&s, &w)) == 1) {
			/* The same PDU, parsed straight from the input. */
			n = wrapper_parse(data + pos, size - pos, s.max_apdu, &v);
			if (n <= 0 || v.length != w.length || memcmp(v.apdu, w.apdu, w.length) != 0)
				abort();
			pos += (size_t)n;
		}
	}
	return 0;
}
