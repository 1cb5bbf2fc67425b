/*
 * test_profile.c: the profile generic helper (profile.h): capture_objects
 * and scaler_unit from the corpus and from built bytes, the corpus' profile
 * buffer with compressed timestamps, every cell type, scalers, time zones,
 * and truncated, trailing and malformed buffers (each input placed at the
 * end of its allocation so an over-read trips ASan).
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "axdr.h"
#include "cosem_time.h"
#include "meter_error.h"
#include "profile.h"
#include "vectors.h"

static struct profile_row row;

/* Bytes of a finished mbuf moved to the end of a fresh allocation. */
static uint8_t *
tail_copy(const struct mbuf *b, size_t *len)
{
	cr_assert_eq(b->err, 0);
	uint8_t *p = hex_tail(to_hex(b->p, b->len), len);
	cr_assert_not_null(p);
	cr_assert_eq(*len, b->len);
	return p;
}

static uint8_t *
vector_bytes(const char *id, size_t *len)
{
	const struct dlms_vector *v = dlms_vector(id);
	cr_assert_not_null(v, "%s", id);
	uint8_t *p = hex_tail(v->hex, len);
	cr_assert_not_null(p, "%s", id);
	return p;
}

static void
put_capture(struct mbuf *b, uint16_t cls, struct obis o, int8_t attr)
{
	axdr_put_structure(b, 4);
	axdr_put_long_unsigned(b, cls);
	axdr_put_octet_string(b, o.v, 6);
	axdr_put_integer(b, attr);
	axdr_put_long_unsigned(b, 0);
}

/* The 4-column shape of the corpus' profile buffer: clock, status, A+, A-. */
static size_t
columns_4(struct profile_column *cols)
{
	uint8_t mem[256];
	struct mbuf b;
	size_t len, n = 0;

	mbuf_init(&b, mem, sizeof mem);
	axdr_put_array(&b, 4);
	put_capture(&b, 8, OBIS(0, 0, 1, 0, 0, 255), 2);
	put_capture(&b, 1, OBIS(0, 0, 96, 10, 1, 255), 2);
	put_capture(&b, 3, OBIS(1, 0, 1, 8, 0, 255), 2);
	put_capture(&b, 3, OBIS(1, 0, 2, 8, 0, 255), 2);
	uint8_t *p = tail_copy(&b, &len);
	cr_assert_eq(profile_columns_decode(p, len, cols, PROFILE_MAX_COLUMNS, &n), (ssize_t)len);
	tail_free(p);
	return n;
}

Test(profile, capture_object_from_corpus)
{
	size_t len, n = 99;
	uint8_t *v = vector_bytes("axdr-structure-capture-object", &len);
	/* An array of one: the corpus row is the structure alone. */
	char hex[256];
	snprintf(hex, sizeof hex, "0101%s", dlms_vector("axdr-structure-capture-object")->hex);
	tail_free(v);
	uint8_t *p = hex_tail(hex, &len);
	struct profile_column cols[2];

	cr_assert_eq(profile_columns_decode(p, len, cols, 2, &n), (ssize_t)len);
	cr_assert_eq(n, 1);
	cr_assert_eq(cols[0].class_id, 8);
	cr_assert(obis_eq(&cols[0].obis, &OBIS(0, 0, 1, 0, 0, 255)));
	cr_assert_eq(cols[0].attribute, 2);
	cr_assert_eq(cols[0].data_index, 0);
	cr_assert_eq(cols[0].unit, PROFILE_UNIT_COUNT);
	cr_assert_eq(cols[0].scaler, 0);
	cr_assert_not(cols[0].has_scaler_unit);
	cr_assert(profile_column_is_clock(&cols[0]));

	/* No room: ENOSPC.  Every prefix is refused: ENEEDMORE, or
	 * EMALFORMED where an element count outgrows the bytes left (axdr.h). */
	cr_assert_eq(profile_columns_decode(p, len, cols, 0, &n), METER_ENOSPC);
	for (size_t k = 0; k < len; k++) {
		uint8_t *q = hex_tail(to_hex(p, k), &k);
		ssize_t rc = profile_columns_decode(q, k, cols, 2, &n);
		cr_assert(rc == METER_ENEEDMORE || rc == METER_EMALFORMED, "at %zu: %zd", k, rc);
		tail_free(q);
	}
	tail_free(p);
}

Test(profile, scaler_unit_from_corpus)
{
	size_t len;
	uint8_t *p = vector_bytes("axdr-structure-scaler-unit", &len);
	struct profile_column c = {.scaler = 5, .unit = 0};

	cr_assert_eq(profile_scaler_unit_decode(p, len, &c), (ssize_t)len);
	cr_assert_eq(c.scaler, 0);
	cr_assert_eq(c.unit, PROFILE_UNIT_WH);
	cr_assert(c.has_scaler_unit);
	cr_assert_str_eq(profile_unit_name(c.unit), "Wh");
	cr_assert_eq(profile_scaler_unit_decode(p, len - 1, &c), METER_ENEEDMORE);
	tail_free(p);
}

static const struct {
	const char *hex; /* tagged value */
	int want;
} bad_scaler_units[] = {
	{"02020fff", METER_ENEEDMORE},	       /* enum missing */
	{"02030f00161e0f00", METER_EMALFORMED}, /* three elements */
	{"020210000016 1e", METER_EMALFORMED},  /* long scaler */
	{"02020f001100", METER_EMALFORMED},     /* unsigned unit */
	{"01020f00161e", METER_EMALFORMED},     /* array */
	{"0202020202020202", METER_EMALFORMED}, /* nested beyond 3 nodes */
};

Test(profile, scaler_unit_malformed)
{
	for (size_t i = 0; i < sizeof bad_scaler_units / sizeof bad_scaler_units[0]; i++) {
		size_t len;
		struct profile_column c = {0};
		uint8_t *p = hex_tail(bad_scaler_units[i].hex, &len);
		cr_assert_not_null(p);
		cr_assert_eq(profile_scaler_unit_decode(p, len, &c), bad_scaler_units[i].want,
			     "case %zu", i);
		cr_assert_not(c.has_scaler_unit);
		tail_free(p);
	}
}

static const struct {
	const char *hex;
	int want;
} bad_captures[] = {
	{"0201 0204 1200 08 0906 0000010000ff 0f02 120000", METER_EMALFORMED}, /* not an array */
	{"0101 0203 1200 08 0906 0000010000ff 0f02", METER_EMALFORMED},	       /* 3 elements */
	{"0101 0204 1200 08 0905 0000010000 0f02 120000", METER_EMALFORMED},   /* 5-byte name */
	{"0101 120008", METER_EMALFORMED},				       /* a scalar */
	{"0102 0204 1200 08 0906 0000010000ff 0f02 120000", METER_ENEEDMORE},  /* one of two */
};

Test(profile, capture_objects_malformed)
{
	struct profile_column cols[4];
	for (size_t i = 0; i < sizeof bad_captures / sizeof bad_captures[0]; i++) {
		size_t len, n = 77;
		uint8_t *p = hex_tail(bad_captures[i].hex, &len);
		cr_assert_not_null(p, "case %zu", i);
		ssize_t rc = profile_columns_decode(p, len, cols, 4, &n);
		cr_assert_eq(rc, bad_captures[i].want, "case %zu: %zd", i, rc);
		cr_assert_eq(n, 77, "case %zu", i);
		tail_free(p);
	}
}

/* The corpus' 4 x 4 buffer: one full clock, then three null clocks one
 * hour apart (its source asserts row1 - row0 = 3600 s). */
Test(profile, corpus_buffer_compressed_clock)
{
	struct profile_column cols[PROFILE_MAX_COLUMNS];
	struct profile_cursor c;
	struct profile_options opt = {.tz = COSEM_TZ_CPH, .period = 3600};
	size_t n = columns_4(cols), len;
	uint8_t *p = vector_bytes("axdr-array-profile-buffer", &len);

	cols[2].scaler = -3;
	cols[2].unit = PROFILE_UNIT_WH;
	cols[3].scaler = 1;
	cols[3].unit = PROFILE_UNIT_WH;
	cr_assert_eq(profile_cursor_init(&c, cols, n, p, len, &opt), 0);
	cr_assert_eq(c.count, 4);
	/* 2019-12-31 23:00:00 with deviation -60: 22:00 UTC. */
	int64_t t0 = cosem_days_from_civil(2019, 12, 31) * 86400 + 22 * 3600;
	for (uint32_t k = 0; k < 4; k++) {
		cr_assert_eq(profile_next(&c, &row), 1, "row %u", k);
		cr_assert_eq(row.index, k);
		cr_assert(row.has_time);
		cr_assert_eq(row.time_derived, k > 0);
		cr_assert_eq(row.time, t0 + 3600 * (int64_t)k, "row %u", k);
		cr_assert_eq(row.cells[0].type, k ? AXDR_NULL : AXDR_OCTET_STRING);
		cr_assert_eq(row.clock_status, k ? COSEM_STATUS_UNSPEC : 0);
		cr_assert_eq(row.cells[1].type, AXDR_UNSIGNED);
		cr_assert_eq(row.cells[1].i, 6);
		cr_assert_eq(row.cells[2].type, AXDR_DOUBLE_LONG_UNSIGNED);
		cr_assert_eq(row.cells[2].i, 1517);
		cr_assert_eq(row.cells[2].value, 1.517);
		cr_assert_eq(row.cells[2].unit, PROFILE_UNIT_WH);
		cr_assert_eq(row.cells[3].i, 1620);
		cr_assert_eq(row.cells[3].value, 16200.0);
	}
	cr_assert_eq(profile_next(&c, &row), 0);
	cr_assert_eq(profile_next(&c, &row), 0);

	/* Without a period the second row's null clock cannot be read. */
	opt.period = 0;
	cr_assert_eq(profile_cursor_init(&c, cols, n, p, len, &opt), 0);
	cr_assert_eq(profile_next(&c, &row), 1);
	cr_assert_eq(profile_next(&c, &row), METER_EMALFORMED);

	/* Every prefix ends inside a row (or the header): ENEEDMORE, and the
	 * cursor resumes once the rest is there. */
	opt.period = 3600;
	for (size_t k = 0; k < len; k++) {
		uint8_t *q = hex_tail(to_hex(p, k), &k);
		int rc = profile_cursor_init(&c, cols, n, q, k, &opt);
		uint32_t rows = 0;
		if (rc == 0)
			while ((rc = profile_next(&c, &row)) == 1)
				rows++;
		cr_assert_eq(rc, METER_ENEEDMORE, "prefix %zu: %d", k, rc);
		if (c.count == 4) {
			profile_cursor_extend(&c, p, len);
			while ((rc = profile_next(&c, &row)) == 1)
				rows++;
			cr_assert_eq(rc, 0);
			cr_assert_eq(rows, 4, "prefix %zu", k);
			cr_assert_eq(row.time, t0 + 3 * 3600);
		}
		tail_free(q);
	}
	tail_free(p);
}

Test(profile, trailing_bytes_and_wrong_shapes)
{
	struct profile_column cols[PROFILE_MAX_COLUMNS];
	struct profile_cursor c;
	struct profile_options opt = {.tz = COSEM_TZ_UTC, .period = 3600};
	size_t n = columns_4(cols), len;
	const char *good = dlms_vector("axdr-array-profile-buffer")->hex;
	char hex[1024];

	/* A byte after the last row. */
	snprintf(hex, sizeof hex, "%s00", good);
	uint8_t *p = hex_tail(hex, &len);
	cr_assert_eq(profile_cursor_init(&c, cols, n, p, len, &opt), 0);
	for (int k = 0; k < 4; k++)
		cr_assert_eq(profile_next(&c, &row), 1);
	cr_assert_eq(profile_next(&c, &row), METER_ELENGTH);
	tail_free(p);

	/* Three columns declared for four-cell rows. */
	p = hex_tail(good, &len);
	cr_assert_eq(profile_cursor_init(&c, cols, 3, p, len, &opt), 0);
	cr_assert_eq(profile_next(&c, &row), METER_EMALFORMED);
	/* Not an array, no columns, too many columns. */
	cr_assert_eq(profile_cursor_init(&c, cols, n, p + 2, len - 2, &opt), METER_EMALFORMED);
	cr_assert_eq(profile_cursor_init(&c, cols, 0, p, len, &opt), METER_EINVAL);
	cr_assert_eq(profile_cursor_init(&c, cols, PROFILE_MAX_COLUMNS + 1, p, len, &opt),
		     METER_EINVAL);
	tail_free(p);

	static const struct {
		const char *hex;
		int want;
	} bad[] = {
		/* the first row's clock is null: no previous time */
		{"0101 0204 00 1106 0600000001 0600000002", METER_EMALFORMED},
		/* a row that is an array */
		{"0101 0104 00 1106 0600000001 0600000002", METER_EMALFORMED},
		/* clock month 13 */
		{"0101 0204 090c07e30d1f0217000000ffc400 1106 0600000001 0600000002", METER_ERANGE},
		/* clock as a 4-byte octet-string */
		{"0101 0204 090401020304 1106 0600000001 0600000002", METER_EMALFORMED},
		/* unknown tag 0x08 in a cell */
		{"0101 0204 090c07e30c1f0217000000ffc400 0800 0600000001 0600000002",
		 METER_EMALFORMED},
		/* a cell cut short by the row count: structure of 4, three cells */
		{"0101 0204 090c07e30c1f0217000000ffc400 1106 0600000001", METER_ENEEDMORE},
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		p = hex_tail(bad[i].hex, &len);
		cr_assert_not_null(p, "case %zu", i);
		cr_assert_eq(profile_cursor_init(&c, cols, n, p, len, &opt), 0, "case %zu", i);
		cr_assert_eq(profile_next(&c, &row), bad[i].want, "case %zu", i);
		tail_free(p);
	}
}

/* Every cell type a profile may carry, read back with its scaler. */
Test(profile, cell_types_and_scalers)
{
	uint8_t mem[512];
	struct mbuf b;
	struct profile_column cols[16];
	struct profile_cursor c;
	size_t len;
	static const uint8_t bits[] = {0xa5, 0x80};

	memset(cols, 0, sizeof cols);
	for (int k = 0; k < 16; k++)
		cols[k] = (struct profile_column){.class_id = 3, .attribute = 2, .unit = 255};
	cols[0].scaler = -2;
	cols[1].scaler = 3;
	cols[2].scaler = -1;
	cols[5].scaler = -3;

	mbuf_init(&b, mem, sizeof mem);
	axdr_put_array(&b, 1);
	axdr_put_structure(&b, 16);
	axdr_put_long(&b, -1234);		  /* 0 */
	axdr_put_long_unsigned(&b, 65535);	  /* 1 */
	axdr_put_double_long(&b, -7);		  /* 2 */
	axdr_put_long64(&b, INT64_MIN);		  /* 3 */
	axdr_put_long64_unsigned(&b, UINT64_MAX); /* 4 */
	axdr_put_float32(&b, 2.5f);		  /* 5 */
	axdr_put_float64(&b, -0.125);		  /* 6 */
	axdr_put_enum(&b, 30);			  /* 7 */
	axdr_put_boolean(&b, true);		  /* 8 */
	axdr_put_integer(&b, -128);		  /* 9 */
	axdr_put_visible_string(&b, "abc", 3);	  /* 10 */
	axdr_put_bit_string(&b, bits, 9);	  /* 11 */
	axdr_put_structure(&b, 2);		  /* 12 */
	axdr_put_integer(&b, -3);
	axdr_put_enum(&b, 30);
	axdr_put_null(&b);			  /* 13 */
	axdr_put_octet_string(&b, "\x01\x02", 2); /* 14 */
	axdr_put_unsigned(&b, 200);		  /* 15 */
	uint8_t *p = tail_copy(&b, &len);

	cr_assert_eq(profile_cursor_init(&c, cols, 16, p, len, NULL), 0);
	cr_assert_eq(c.clock_col, -1);
	cr_assert_eq(profile_next(&c, &row), 1);
	cr_assert_not(row.has_time);
	cr_assert_eq(row.cells[0].i, -1234);
	cr_assert_eq(row.cells[0].value, -12.34);
	cr_assert_eq(row.cells[1].value, 65535000.0);
	cr_assert_eq(row.cells[2].value, -0.7);
	cr_assert_eq(row.cells[3].i, INT64_MIN);
	cr_assert_eq(row.cells[4].i, INT64_MAX, "clamped");
	cr_assert_eq(row.cells[4].value, 18446744073709551615.0);
	cr_assert_eq(row.cells[5].type, AXDR_FLOAT32);
	cr_assert_eq(row.cells[5].value, 0.0025);
	cr_assert_eq(row.cells[5].i, 2);
	cr_assert_eq(row.cells[6].value, -0.125);
	cr_assert_eq(row.cells[7].type, AXDR_ENUM);
	cr_assert_eq(row.cells[7].i, 30);
	cr_assert_eq(row.cells[8].i, 1);
	cr_assert_eq(row.cells[9].i, -128);
	for (int k = 0; k < 10; k++)
		cr_assert(row.cells[k].numeric, "cell %d", k);
	cr_assert_not(row.cells[10].numeric);
	cr_assert_eq(row.cells[10].len, 3);
	cr_assert_eq(memcmp(row.cells[10].ptr, "abc", 3), 0);
	cr_assert_eq(row.cells[11].type, AXDR_BIT_STRING);
	cr_assert_eq(row.cells[11].len, 2);
	cr_assert_eq(row.cells[11].ptr[0], 0xa5);
	cr_assert_eq(row.cells[12].type, AXDR_STRUCTURE);
	cr_assert_eq(row.cells[12].len, 6, "the whole tagged structure");
	cr_assert_eq(row.cells[12].ptr[0], AXDR_STRUCTURE);
	cr_assert_eq(row.cells[13].type, AXDR_NULL);
	cr_assert_not(row.cells[13].numeric);
	cr_assert_eq(row.cells[14].len, 2);
	cr_assert_eq(row.cells[15].value, 200.0);
	cr_assert_eq(profile_next(&c, &row), 0);
	tail_free(p);
}

/* Clock columns: unspecified deviation under the caller's zone, the tagged
 * date-time type, and a full clock after derived ones. */
Test(profile, clock_time_zones)
{
	uint8_t mem[512];
	struct mbuf b;
	struct profile_column cols[2] = {
		{.class_id = 8, .obis = OBIS(0, 0, 1, 0, 0, 255), .attribute = 2, .unit = 255},
		{.class_id = 3, .obis = OBIS(1, 0, 1, 8, 0, 255), .attribute = 2, .unit = 30},
	};
	struct profile_cursor c;
	struct profile_options opt = {.tz = COSEM_TZ_CPH, .period = 900};
	size_t len;
	struct cosem_datetime summer = {2024, 7, 1, 1, 12, 0, 0, 0, COSEM_DEVIATION_UNSPEC, 0x80};
	struct cosem_datetime winter = {2024, 1, 15, 1, 12, 0, 0, 0, COSEM_DEVIATION_UNSPEC, 0};
	struct cosem_datetime utc = {2024, 1, 15, 1, 12, 0, 0, 0, 0, 0};

	mbuf_init(&b, mem, sizeof mem);
	axdr_put_array(&b, 5);
	axdr_put_structure(&b, 2);
	axdr_put_datetime_octets(&b, &summer);
	axdr_put_double_long_unsigned(&b, 1);
	axdr_put_structure(&b, 2);
	axdr_put_null(&b);
	axdr_put_double_long_unsigned(&b, 2);
	axdr_put_structure(&b, 2);
	axdr_put_datetime(&b, &winter); /* tagged date-time */
	axdr_put_double_long_unsigned(&b, 3);
	axdr_put_structure(&b, 2);
	axdr_put_null(&b);
	axdr_put_double_long_unsigned(&b, 4);
	axdr_put_structure(&b, 2);
	axdr_put_datetime_octets(&b, &utc);
	axdr_put_double_long_unsigned(&b, 5);
	uint8_t *p = tail_copy(&b, &len);

	int64_t d_summer = cosem_days_from_civil(2024, 7, 1) * 86400;
	int64_t d_winter = cosem_days_from_civil(2024, 1, 15) * 86400;
	const int64_t want[] = {d_summer + 10 * 3600, d_summer + 10 * 3600 + 900,
				d_winter + 11 * 3600, d_winter + 11 * 3600 + 900,
				d_winter + 12 * 3600};
	cr_assert_eq(profile_cursor_init(&c, cols, 2, p, len, &opt), 0);
	cr_assert_eq(c.clock_col, 0);
	for (int k = 0; k < 5; k++) {
		cr_assert_eq(profile_next(&c, &row), 1);
		cr_assert_eq(row.time, want[k], "row %d: %lld", k, (long long)row.time);
		cr_assert_eq(row.time_derived, k == 1 || k == 3);
		cr_assert_eq(row.cells[1].i, k + 1);
	}
	cr_assert_eq(profile_next(&c, &row), 0);
	tail_free(p);
}

static const struct {
	uint8_t code;
	const char *name;
} units[] = {
	{27, "W"},   {28, "VA"},  {29, "var"},	 {30, "Wh"},	{31, "VAh"},	  {32, "varh"},
	{33, "A"},   {35, "V"},	  {44, "Hz"},	 {255, "count"}, {9, "degC"},	  {13, "m3"},
	{56, "%"},   {254, "other"}, {0, "unknown"}, {58, "unknown"}, {200, "unknown"},
};

Test(profile, unit_names)
{
	for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
		cr_assert_str_eq(profile_unit_name(units[i].code), units[i].name, "unit %u",
				 units[i].code);
}

/* Local clocks without deviation across both 2024 DST changes and the days
 * around them (where the cursor reuses each date's UTC midnight): every
 * row must come out exactly one period after the one before. */
Test(profile, local_clock_across_dst_changes)
{
	static uint8_t mem[64 * 1024];
	static const struct {
		int y, m, d;
	} starts[] = {{2024, 3, 30}, {2024, 10, 26}};
	struct profile_column cols[1] = {
		{.class_id = 8, .obis = OBIS(0, 0, 1, 0, 0, 255), .attribute = 2, .unit = 255}};
	struct profile_options opt = {.tz = COSEM_TZ_CPH, .period = 900};
	struct cosem_tz tz = COSEM_TZ_CPH;

	for (size_t s = 0; s < sizeof starts / sizeof starts[0]; s++) {
		struct mbuf b;
		struct profile_cursor c;
		struct cosem_datetime dt;
		size_t len;
		const int rows = 3 * 96; /* three days of 15 minutes */
		int64_t t0 = cosem_days_from_civil(starts[s].y, (unsigned)starts[s].m,
						   (unsigned)starts[s].d) * 86400 - 3600;

		mbuf_init(&b, mem, sizeof mem);
		axdr_put_array(&b, (uint32_t)rows);
		for (int r = 0; r < rows; r++) {
			cosem_datetime_from_utc(t0 + 900 * (int64_t)r, &tz, &dt);
			dt.deviation = COSEM_DEVIATION_UNSPEC;
			axdr_put_structure(&b, 1);
			axdr_put_datetime_octets(&b, &dt);
		}
		uint8_t *p = tail_copy(&b, &len);
		cr_assert_eq(profile_cursor_init(&c, cols, 1, p, len, &opt), 0);
		for (int r = 0; r < rows; r++) {
			cr_assert_eq(profile_next(&c, &row), 1);
			cr_assert_eq(row.time, t0 + 900 * (int64_t)r, "start %zu row %d: %lld", s, r,
				     (long long)(row.time - t0));
			cr_assert_not(row.time_derived);
		}
		cr_assert_eq(profile_next(&c, &row), 0);
		tail_free(p);
	}
}

/*
 * A row whose second cell is a structure or a compact array, cut inside
 * it where its element count or description outgrows the bytes present
 * (as a block boundary may cut it): every prefix is ENEEDMORE, not
 * EMALFORMED, and the cursor resumes once the rest is there.  Found by
 * tests/fuzz/fuzz_profile.c.
 */
Test(profile, aggregate_cell_cut_by_a_block_needs_more)
{
	static const struct {
		const char *hex; /* the whole buffer: one row {5, cell} */
		uint8_t type;
		uint32_t cell_len;
	} t[] = {
	    {"0101 0202 0600000005 0204 1101 1102 1103 1104", AXDR_STRUCTURE, 10},
	    {"0101 0202 0600000005 0202 0201 1101 0201 1102", AXDR_STRUCTURE, 10},
	    {"0101 0202 0600000005 1302021111 04 01020304", AXDR_COMPACT_ARRAY, 10},
	    {"0101 0202 0600000005 13010002 12 04 0001 0002", AXDR_COMPACT_ARRAY, 10},
	};
	struct profile_column cols[2] = {
	    {3, {{1, 0, 1, 8, 0, 255}}, 2, 0, 0, PROFILE_UNIT_COUNT, false},
	    {1, {{0, 0, 96, 10, 1, 255}}, 2, 0, 0, PROFILE_UNIT_COUNT, false},
	};
	struct profile_cursor c;
	size_t len;

	for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
		uint8_t *p = hex_tail(t[i].hex, &len);
		cr_assert_not_null(p);
		for (size_t k = 0; k < len; k++) {
			uint8_t *q = hex_tail(to_hex(p, k), &k);
			int rc = profile_cursor_init(&c, cols, 2, q, k, NULL);
			if (rc == 0)
				rc = profile_next(&c, &row);
			cr_assert_eq(rc, METER_ENEEDMORE, "case %zu prefix %zu: %d", i, k, rc);
			if (c.count == 1) {
				profile_cursor_extend(&c, p, len);
				cr_assert_eq(profile_next(&c, &row), 1, "case %zu prefix %zu", i, k);
				cr_assert_eq(row.cells[0].i, 5);
				cr_assert_eq(row.cells[1].type, t[i].type, "case %zu", i);
				cr_assert_eq(row.cells[1].len, t[i].cell_len, "case %zu", i);
				cr_assert_eq(row.cells[1].ptr + row.cells[1].len, p + len, "case %zu", i);
				cr_assert_eq(profile_next(&c, &row), 0);
			}
			tail_free(q);
		}
		tail_free(p);
	}
}
