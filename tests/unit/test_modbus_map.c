/*
 * test_modbus_map.c: the register-map format and decoding.  The shipped
 * Kamstrup 382 map must parse; a register block built here decodes to the
 * right values for each type, word order and scale; bad lines name their
 * line number.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "meter_error.h"
#include "modbus_map.h"
#include "vectors.h"

#define KAMSTRUP_MAP "meterlib/maps/kamstrup382.map"

static void
put32(uint16_t *w, uint32_t v, bool lo_first)
{
	w[lo_first ? 1 : 0] = (uint16_t)(v >> 16);
	w[lo_first ? 0 : 1] = (uint16_t)v;
}

static uint32_t
f32bits(float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	return u;
}

Test(modbus_map, kamstrup382_map_parses_and_decodes)
{
	size_t len;
	char *text = slurp(KAMSTRUP_MAP, &len);
	cr_assert_not_null(text, "run from the repository root: %s", KAMSTRUP_MAP);
	struct modbus_map_entry e[64];
	struct modbus_map m;
	char err[128];
	modbus_map_init(&m, e, 64);
	cr_assert_eq(modbus_map_parse(&m, text, len, err, sizeof(err)), 0, "%s", err);
	free(text);
	cr_assert_eq(m.n, 19);

	uint16_t regs[0x26] = {0};
	put32(regs + 0x00, 1234567, false);		/* A+ 1234.567 kWh */
	put32(regs + 0x0C, (uint32_t)-1500, false);	/* -1500 W */
	put32(regs + 0x10, f32bits(230.5f), false);	/* V L1 */
	put32(regs + 0x16, f32bits(-1.25f), false);	/* A L1 */
	regs[0x1C] = (uint16_t)-300;			/* s16 */
	regs[0x20] = 0x0001;				/* u64 2^48 + 5 */
	regs[0x23] = 5;
	regs[0x24] = 2;

	struct modbus_reading r[64];
	size_t n;
	cr_assert_eq(modbus_map_decode(&m, 0, regs, 0x26, r, 64, &n), 0);
	cr_assert_eq(n, 19);
	char ob[OBIS_STRLEN];
	cr_assert_str_eq(obis_format(&r[0].entry->obis, ob), "1-0:1.8.0.255");
	cr_assert_float_eq(r[0].value, 1234.567, 1e-9);
	cr_assert_str_eq(r[0].entry->unit, "kWh");
	cr_assert_float_eq(r[6].value, -1500, 0);
	cr_assert_str_eq(r[8].entry->unit, "V");
	cr_assert_float_eq(r[8].value, 230.5, 0);
	cr_assert_float_eq(r[11].value, -1.25, 0);
	cr_assert_float_eq(r[14].value, -300, 0);
	cr_assert_float_eq(r[17].value, 281474976710661.0, 0);
	cr_assert_float_eq(r[18].value, 2, 0);
	cr_assert_str_eq(r[18].entry->unit, "");

	/* A block that covers only part of the map yields only what fits. */
	cr_assert_eq(modbus_map_decode(&m, 0x10, regs + 0x10, 4, r, 64, &n), 0);
	cr_assert_eq(n, 2);
	cr_assert_float_eq(r[0].value, 230.5, 0);
	cr_assert_eq(modbus_map_decode(&m, 0, regs, 0x26, r, 3, &n), METER_ENOSPC);
}

Test(modbus_map, word_orders_signed_types_floats_and_scale)
{
	static const char map[] =
		"# every type, both word orders\n"
		"0 u32 hi 1 - 1-0:1.8.0.255\n"
		"2 u32 lo 1 - 1-0:1.8.1.255\n"
		"4 s32 lo 0.1 W 1-0:1.7.0.255\n"
		"6 float32 lo 1 V 1-0:32.7.0.255\n"
		"8 float64 hi 2 A 1-0:31.7.0.255\n"
		"12 float64 lo 1 A 1-0:51.7.0.255\n"
		"16 u64 lo 1 s 0-0:96.8.0.255\n"
		"20 s16 hi 0.01 Hz 1-0:14.7.0.255   # trailing comment\n"
		"0x15 u16 hi 10 Wh 1-0:2.8.0.255\n";
	struct modbus_map_entry e[16];
	struct modbus_map m;
	char err[128];
	modbus_map_init(&m, e, 16);
	cr_assert_eq(modbus_map_parse(&m, map, strlen(map), err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(m.n, 9);

	uint16_t w[22] = {0};
	put32(w + 0, 0x12345678, false);
	put32(w + 2, 0x12345678, true);
	put32(w + 4, (uint32_t)-12345, true);
	put32(w + 6, f32bits(3.5f), true);
	double d = -0.125;
	uint64_t u;
	memcpy(&u, &d, 8);
	for (int k = 0; k < 4; k++) {
		w[8 + k] = (uint16_t)(u >> (48 - 16 * k));	/* high word first */
		w[12 + k] = (uint16_t)(u >> (16 * k));		/* low word first */
	}
	uint64_t big = 0x0001000200030004ull;
	for (int k = 0; k < 4; k++)
		w[16 + k] = (uint16_t)(big >> (16 * k));
	w[20] = (uint16_t)-5000;
	w[21] = 65535;

	struct modbus_reading r[16];
	size_t n;
	cr_assert_eq(modbus_map_decode(&m, 0, w, 22, r, 16, &n), 0);
	cr_assert_eq(n, 9);
	cr_assert_float_eq(r[0].value, 0x12345678, 0);
	cr_assert_float_eq(r[1].value, 0x12345678, 0);
	cr_assert_float_eq(r[2].value, -1234.5, 1e-9);
	cr_assert_float_eq(r[3].value, 3.5, 0);
	cr_assert_float_eq(r[4].value, -0.25, 0);
	cr_assert_float_eq(r[5].value, -0.125, 0);
	cr_assert_float_eq(r[6].value, (double)big, 0);
	cr_assert_float_eq(r[7].value, -50, 1e-12);
	cr_assert_float_eq(r[8].value, 655350, 0);
	cr_assert_eq(e[8].reg, 0x15);
}

static const struct {
	const char *text;
	int rc;
	const char *msg;
} bad[] = {
	{"# ok\n0 u16 hi 1 - 1-0:1.8.0.255\n0 u17 hi 1 - 1-0:1.8.0.255\n", METER_EMALFORMED,
	 "line 3: unknown type 'u17'"},
	{"0 u16 hi 1 -\n", METER_EMALFORMED, "line 1: expected 6 fields"},
	{"\n\n70000 u16 hi 1 - 1-0:1.8.0.255\n", METER_EMALFORMED, "line 3: bad register address"},
	{"65535 u32 hi 1 - 1-0:1.8.0.255\n", METER_EMALFORMED, "line 1: u32 at 65535 runs past"},
	{"0 u16 mid 1 - 1-0:1.8.0.255\n", METER_EMALFORMED, "line 1: bad word order 'mid'"},
	{"0 u16 hi x - 1-0:1.8.0.255\n", METER_EMALFORMED, "line 1: bad scale 'x'"},
	{"0 u16 hi 0 - 1-0:1.8.0.255\n", METER_EMALFORMED, "line 1: bad scale '0'"},
	{"0 u16 hi 1 - 1-0:1.8\n", METER_EMALFORMED, "line 1: bad OBIS code"},
	{"0 u16 hi 1 averyveryverylongunit 1-0:1.8.0.255\n", METER_EMALFORMED, "line 1: unit"},
	{"0 u16 hi 1 - 1-0:1.8.0.255 extra\n", METER_EMALFORMED, "line 1: expected 6 fields"},
	{"-1 u16 hi 1 - 1-0:1.8.0.255\n", METER_EMALFORMED, "line 1: bad register address"},
};

Test(modbus_map, bad_lines_give_line_numbers)
{
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct modbus_map_entry e[4];
		struct modbus_map m;
		char err[128];
		modbus_map_init(&m, e, 4);
		cr_assert_eq(modbus_map_parse(&m, bad[i].text, strlen(bad[i].text), err, sizeof(err)),
			     bad[i].rc, "case %zu", i);
		cr_assert(strncmp(err, bad[i].msg, strlen(bad[i].msg)) == 0, "case %zu: '%s'", i, err);
	}
	/* A full array is ENOSPC at the line that did not fit. */
	struct modbus_map_entry e[1];
	struct modbus_map m;
	char err[128];
	static const char two[] = "0 u16 hi 1 - 1-0:1.8.0.255\n1 u16 hi 1 - 1-0:2.8.0.255";
	modbus_map_init(&m, e, 1);
	cr_assert_eq(modbus_map_parse(&m, two, strlen(two), err, sizeof(err)), METER_ENOSPC);
	cr_assert_str_eq(err, "line 2: more than 1 entries");
}
