/*
 * fuzz_mbus.c: libFuzzer target for the M-Bus stack.  The input is run
 * through the stream parser as a gateway's byte stream; every frame found
 * is decoded down to its records and their text form, and the same bytes
 * are offered to the application layer directly as a record area, so the
 * record decoder sees inputs the checksum would otherwise filter out.
 * The Modbus map parser gets the input as a map file.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "mbus.h"
#include "modbus_map.h"

static void
walk_records(const struct mbus_telegram *t)
{
	struct mbus_iter it;
	struct mbus_record r;
	char text[1024];
	int n = 0;

	mbus_iter_init(&it, t);
	while (mbus_records_next(&it, &r) > 0) {
		mbus_value_format(&r, text, sizeof(text));
		if (++n > 1000)
			__builtin_trap(); /* an iterator must always advance */
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t off = 0;

	while (off < size) {
		struct mbus_frame f;
		size_t skipped;
		int rc = mbus_stream_next(data + off, size - off, &f, &skipped);
		if (rc <= 0)
			break;
		off += (size_t)rc;
		struct mbus_telegram t;
		if (mbus_telegram_decode(&f, &t) < 0)
			continue;
		walk_records(&t);
		struct mbus_record r;
		for (int i = 0; i < 2; i++)
			mbus_fixed_record(&t, i, &r);
	}

	/* The record area without framing. */
	struct mbus_telegram raw = {.kind = MBUS_TG_VARIABLE, .records = data, .records_len = size};
	walk_records(&raw);

	/* The map parser, when the input looks like text. */
	if (size < 4096 && memchr(data, '\n', size) != NULL) {
		struct modbus_map_entry e[32];
		struct modbus_map m;
		char err[128];
		modbus_map_init(&m, e, 32);
		modbus_map_parse(&m, (const char *)data, size, err, sizeof(err));
	}
	return 0;
}
