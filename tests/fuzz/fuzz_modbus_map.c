/*
 * fuzz_modbus_map.c: the Modbus register map parser (modbus_map.h) on
 * arbitrary text, and a register block decoded through what it parsed.
 *
 * Input: map text, then optionally a NUL byte, the block's start address
 * (two bytes, big-endian) and the registers (two bytes each).  The text is
 * copied to an allocation of exactly its length, without a terminator, so
 * a parser reading past `len` trips ASan.  An error must come with a
 * message; every reading must lie inside the block and point at an entry
 * of the map.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "meter_error.h"
#include "modbus_map.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAP_CAP 32

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct modbus_map_entry entries[MAP_CAP];
	static struct modbus_reading out[MAP_CAP];
	static uint16_t regs[4096];
	const uint8_t *nul = memchr(data, 0, size);
	size_t tlen = nul ? (size_t)(nul - data) : size, nregs = 0, n = 0;
	struct modbus_map m;
	uint16_t start = 0;
	char err[128];
	char *text;
	int r;

	text = malloc(tlen ? tlen : 1);
	if (text == NULL)
		return 0;
	memcpy(text, data, tlen);
	modbus_map_init(&m, entries, MAP_CAP);
	err[0] = '\0';
	r = modbus_map_parse(&m, text, tlen, err, sizeof(err));
	free(text);
	if (r != 0 && (r != METER_EMALFORMED && r != METER_ENOSPC))
		abort();
	if (r != 0 && (err[0] == '\0' || memchr(err, 0, sizeof(err)) == NULL))
		abort();
	if (m.n > MAP_CAP)
		abort();
	for (size_t i = 0; i < m.n; i++) {
		const struct modbus_map_entry *e = &m.e[i];
		if (e->words < 1 || e->words > 4 || memchr(e->unit, 0, sizeof(e->unit)) == NULL ||
		    modbus_type_name(e->type) == NULL)
			abort();
	}

	if (nul != NULL && size - tlen >= 3) {
		const uint8_t *p = nul + 1;
		size_t rest = size - tlen - 1;
		start = (uint16_t)(p[0] << 8 | p[1]);
		p += 2;
		rest -= 2;
		for (nregs = 0; nregs < rest / 2 && nregs < 4096; nregs++)
			regs[nregs] = (uint16_t)(p[2 * nregs] << 8 | p[2 * nregs + 1]);
	}
	/* An exactly sized copy of the block, for over-reads. */
	uint16_t *blk = malloc(nregs ? nregs * sizeof(*blk) : 1);
	if (blk == NULL)
		return 0;
	memcpy(blk, regs, nregs * sizeof(*blk));
	r = modbus_map_decode(&m, start, blk, nregs, out, (size_t)(start & 1 ? 3 : MAP_CAP), &n);
	free(blk);
	if (r != 0 && r != METER_ENOSPC)
		abort();
	if (r == 0) {
		if (n > m.n)
			abort();
		for (size_t i = 0; i < n; i++) {
			const struct modbus_map_entry *e = out[i].entry;
			if (e < m.e || e >= m.e + m.n || e->reg < start ||
			    (size_t)e->reg + e->words > (size_t)start + nregs)
				abort();
		}
	}
	return 0;
}
