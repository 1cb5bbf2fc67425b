/*
 * fuzz_gprs.c: libFuzzer target for what the GPRS listener reads from a
 * connection it does not trust yet (drivers/gprs/gprs.h).
 *
 * Whatever the input, gprs_push_parse() must not crash or read past it;
 * when it succeeds, the PDU, the body and the claimed name lie inside the
 * input and the claim is printable.  gprs_ldn_serial() on the input as a
 * name must give a serial that gprs_ldn_matches() accepts for that name.
 * The seed corpus (corpus/gprs/) is the DataNotification rows of the DLMS
 * vectors wrapped as a meter pushes them (wPort 1 -> 102).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gprs/gprs.h"
#include "meter_error.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct gprs_push p;
	char serial[48];

	if (gprs_push_parse(data, size, &p) == 0) {
		if (p.used > size || p.body < data || p.body + p.body_len > data + p.used)
			abort();
		size_t n = strnlen(p.claim, sizeof(p.claim));
		if (n == sizeof(p.claim))
			abort();
		for (size_t i = 0; i < n; i++)
			if (p.claim[i] < 0x21 || p.claim[i] > 0x7e)
				abort();
	}
	if (gprs_ldn_serial(data, size, serial, sizeof(serial)) == 0 &&
	    !gprs_ldn_matches(data, size, serial))
		abort();
	return 0;
}
