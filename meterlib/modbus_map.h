/*
 * modbus_map.h: data-driven Modbus register maps.  A Modbus-TCP gateway
 * exposes a meter's readings as holding registers whose layout depends on
 * the gateway and the meter type; a small text file says, per reading,
 * where it is and how to read it:
 *
 *	# register  type     order  scale   unit  obis
 *	0x0000      u32      hi     0.001   kWh   1-0:1.8.0.255
 *
 * register: decimal or 0x-hex address of the first word; type: u16 s16
 * u32 s32 u64 float32 float64; order: "hi" (high word first, the Modbus
 * convention) or "lo" (low word first, common in gateways); scale: the
 * raw number is multiplied by it; unit: text, "-" for none; obis: the
 * COSEM code the reading stands for.  '#' starts a comment.
 *
 * Parsing fills an array the caller owns; decoding a block of registers
 * (as libmodbus's modbus_read_registers() returns it) yields readings that
 * point at their map entries.  No I/O, no allocation.
 */
#ifndef METER_MODBUS_MAP_H
#define METER_MODBUS_MAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "obis.h"

enum modbus_type {
	MODBUS_U16 = 1,
	MODBUS_S16,
	MODBUS_U32,
	MODBUS_S32,
	MODBUS_U64,
	MODBUS_F32,
	MODBUS_F64,
};

struct modbus_map_entry {
	uint16_t reg;
	enum modbus_type type;
	uint8_t words;		/* registers the value spans */
	bool low_word_first;
	double scale;
	char unit[16];
	struct obis obis;
	unsigned line;		/* line in the map file, for messages */
};

struct modbus_map {
	struct modbus_map_entry *e;
	size_t n, cap;
};

struct modbus_reading {
	const struct modbus_map_entry *entry; /* valid as long as the map */
	double value;			      /* raw * scale */
};

void modbus_map_init(struct modbus_map *m, struct modbus_map_entry *e, size_t cap);

/*
 * Parse map text (len bytes, need not be NUL-terminated), appending
 * entries.  Returns 0; METER_EMALFORMED with "line N: ..." in err for a bad
 * line; METER_ENOSPC when the array is full (err says at which line).
 */
int modbus_map_parse(struct modbus_map *m, const char *text, size_t len, char *err,
		     size_t errlen);

/*
 * Decode nregs holding registers starting at address start through the
 * map: one reading per entry whose words all lie inside the block, in map
 * order.  Returns 0 (*n set) or METER_ENOSPC.
 */
int modbus_map_decode(const struct modbus_map *m, uint16_t start, const uint16_t *regs,
		      size_t nregs, struct modbus_reading *out, size_t cap, size_t *n);

/* "u16", "float32", ... */
const char *modbus_type_name(enum modbus_type t);

#endif
