/*
 * test_mbus_collect.c: how gateway readings become register readings
 * (daemon/mbus_collect.c).  M-Bus records to OBIS for the 382M, from the
 * captured Kamstrup 382 telegram in the vector corpus and from records
 * encoded the way the 382M module (and metersim) sends voltage, current,
 * tariffs and export; Modbus readings (already OBIS) to the store's
 * value, scaler and unit.  The helpers ammd and `ammctl read` share: a
 * readout's frames to values, and the Modbus map lookup.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mbus.h"
#include "mbus_collect.h"
#include "obis.h"
#include "vectors.h"

struct want {
	int rc;
	const char *obis;
	int64_t value;
	int scaler;
	int unit;
};

static void
check(const char *what, size_t i, int rc, const struct mbus_collect_value *v, const struct want *w)
{
	char name[OBIS_STRLEN];

	cr_assert_eq(rc, w->rc, "%s %zu: rc %d", what, i, rc);
	if (rc != 0)
		return;
	cr_assert_str_eq(obis_format(&v->obis, name), w->obis, "%s %zu", what, i);
	cr_assert_eq(v->value, w->value, "%s %zu: value %lld", what, i, (long long)v->value);
	cr_assert_eq(v->scaler, w->scaler, "%s %zu: scaler %d", what, i, v->scaler);
	cr_assert_eq(v->unit, w->unit, "%s %zu: unit %d", what, i, v->unit);
}

Test(mbus_collect, kamstrup_382_telegram_from_the_corpus)
{
	/* energy in kWh (10^3 Wh), on time in hours, power, its maximum,
	 * export energy per tariff (subunit 1), manufacturer data */
	static const struct want want[] = {
	    {0, "1-0:1.8.0.255", 0, 3, 30},   {0, "0-0:96.8.0.255", 32400, 0, 7},
	    {0, "1-0:1.7.0.255", 0, 0, 27},   {0, "1-0:1.6.0.255", 0, 0, 27},
	    {0, "1-0:2.8.1.255", 0, 3, 30},   {0, "1-0:2.8.2.255", 0, 3, 30},
	    {METER_ENOTFOUND, NULL, 0, 0, 0},
	};
	size_t len, n;
	char *hex = slurp(vectors_path("mbus/frames/kamstrup_382_005.hex"), &len);
	cr_assert_not_null(hex, "cannot read the Kamstrup 382 vector (set AMM_VECTORS)");
	uint8_t *p = hex_tail(hex, &n);
	struct mbus_frame f;
	struct mbus_telegram t;
	struct mbus_iter it;
	struct mbus_record r;
	struct mbus_collect_value v;
	size_t i = 0;

	cr_assert_gt(mbus_frame_parse(p, n, &f), 0);
	cr_assert_eq(mbus_telegram_decode(&f, &t), 0);
	mbus_iter_init(&it, &t);
	while (mbus_records_next(&it, &r) == 1) {
		cr_assert_lt(i, sizeof(want) / sizeof(want[0]));
		memset(&v, 0, sizeof(v));
		check("382 record", i, mbus_collect_map_record("382M", &r, &v), &v, &want[i]);
		i++;
	}
	cr_assert_eq(i, sizeof(want) / sizeof(want[0]));
	tail_free(p);
	free(hex);
}

struct enc_case {
	enum mbus_function fn;
	uint64_t storage;
	uint32_t tariff;
	uint16_t subunit;
	uint8_t vib[2];
	size_t vib_len;
	int64_t ival;
	struct want want;
};

Test(mbus_collect, records_as_the_382m_module_sends_them)
{
	static const struct enc_case cases[] = {
	    /* 0x03: Wh; subunit 0 import, 1 export; tariffs */
	    {MBUS_FN_INSTANT, 0, 0, 0, {0x03}, 1, 2505065, {0, "1-0:1.8.0.255", 2505065, 0, 30}},
	    {MBUS_FN_INSTANT, 0, 0, 1, {0x03}, 1, 1689980, {0, "1-0:2.8.0.255", 1689980, 0, 30}},
	    {MBUS_FN_INSTANT, 0, 3, 0, {0x03}, 1, 361211, {0, "1-0:1.8.3.255", 361211, 0, 30}},
	    {MBUS_FN_INSTANT, 0, 2, 1, {0x03}, 1, 77, {0, "1-0:2.8.2.255", 77, 0, 30}},
	    /* power and its maximum, export power */
	    {MBUS_FN_INSTANT, 0, 0, 0, {0x2b}, 1, 1830, {0, "1-0:1.7.0.255", 1830, 0, 27}},
	    {MBUS_FN_MAX, 0, 0, 0, {0x2b}, 1, 9120, {0, "1-0:1.6.0.255", 9120, 0, 27}},
	    {MBUS_FN_INSTANT, 0, 0, 1, {0x2b}, 1, 40, {0, "1-0:2.7.0.255", 40, 0, 27}},
	    /* voltage in 0.1 V, current in mA, per phase as subunits */
	    {MBUS_FN_INSTANT, 0, 0, 0, {0xfd, 0x48}, 2, 2301, {0, "1-0:32.7.0.255", 2301, -1, 35}},
	    {MBUS_FN_INSTANT, 0, 0, 2, {0xfd, 0x48}, 2, 2288, {0, "1-0:72.7.0.255", 2288, -1, 35}},
	    {MBUS_FN_INSTANT, 0, 0, 1, {0xfd, 0x59}, 2, 5120, {0, "1-0:51.7.0.255", 5120, -3, 33}},
	    /* on time in seconds */
	    {MBUS_FN_INSTANT, 0, 0, 0, {0x20}, 1, 86400, {0, "0-0:96.8.0.255", 86400, 0, 7}},
	    /* not mapped: historic values, minimum, a fourth phase, volume */
	    {MBUS_FN_INSTANT, 1, 0, 0, {0x03}, 1, 5, {METER_ENOTFOUND, NULL, 0, 0, 0}},
	    {MBUS_FN_MIN, 0, 0, 0, {0x2b}, 1, 5, {METER_ENOTFOUND, NULL, 0, 0, 0}},
	    {MBUS_FN_INSTANT, 0, 0, 3, {0xfd, 0x48}, 2, 5, {METER_ENOTFOUND, NULL, 0, 0, 0}},
	    {MBUS_FN_INSTANT, 0, 0, 2, {0x03}, 1, 5, {METER_ENOTFOUND, NULL, 0, 0, 0}},
	    {MBUS_FN_INSTANT, 0, 0, 0, {0x13}, 1, 5, {METER_ENOTFOUND, NULL, 0, 0, 0}},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct enc_case *c = &cases[i];
		uint8_t buf[64];
		struct mbuf b;
		struct mbus_rec_out o = {.function = c->fn,
		                         .storage = c->storage,
		                         .tariff = c->tariff,
		                         .subunit = c->subunit,
		                         .dif_coding = 4,
		                         .vib = c->vib,
		                         .vib_len = c->vib_len,
		                         .ival = c->ival};
		mbuf_init(&b, buf, sizeof(buf));
		cr_assert_eq(mbus_encode_record(&b, &o), 0, "case %zu", i);
		struct mbus_telegram t = {
		    .kind = MBUS_TG_VARIABLE, .records = buf, .records_len = b.len};
		struct mbus_iter it;
		struct mbus_record r;
		struct mbus_collect_value v;
		mbus_iter_init(&it, &t);
		cr_assert_eq(mbus_records_next(&it, &r), 1, "case %zu", i);
		memset(&v, 0, sizeof(v));
		check("encoded record", i, mbus_collect_map_record("382M", &r, &v), &v, &c->want);
	}
}

struct mb_case {
	const char *obis;
	double value;
	const char *unit;
	struct want want;
};

Test(mbus_collect, modbus_readings)
{
	static const struct mb_case cases[] = {
	    /* u32 Wh × 0.001 in kWh: whole Wh again */
	    {"1-0:1.8.0.255", 2505.065, "kWh", {0, "1-0:1.8.0.255", 2505065, 0, 30}},
	    {"1-0:3.8.0.255", 10268.171, "kvarh", {0, "1-0:3.8.0.255", 10268171, 0, 32}},
	    {"1-0:1.7.0.255", 1830, "W", {0, "1-0:1.7.0.255", 1830, 0, 27}},
	    /* float32 voltage: the digits a float carries (~7), not its
	     * binary tail 230.10000610... */
	    {"1-0:32.7.0.255", (double)230.1f, "V", {0, "1-0:32.7.0.255", 2301, -1, 35}},
	    {"1-0:32.7.0.255", 229.8765, "V", {0, "1-0:32.7.0.255", 229877, -3, 35}},
	    {"1-0:31.7.0.255", 5.12, "A", {0, "1-0:31.7.0.255", 512, -2, 33}},
	    {"0-0:96.8.0.255", 86400, "s", {0, "0-0:96.8.0.255", 86400, 0, 7}},
	    {"0-0:96.14.0.255", 2, "-", {0, "0-0:96.14.0.255", 2, 0, 255}},
	    {"1-0:1.8.0.255", NAN, "kWh", {METER_ERANGE, NULL, 0, 0, 0}},
	    {"1-0:1.8.0.255", 1e300, "kWh", {METER_ERANGE, NULL, 0, 0, 0}},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct mb_case *c = &cases[i];
		struct obis o;
		struct mbus_collect_value v;
		cr_assert_eq(obis_parse(c->obis, &o), 0);
		memset(&v, 0, sizeof(v));
		check("modbus", i, mbus_collect_map_modbus(&o, c->value, c->unit, &v), &v,
		      &c->want);
	}
}

/*
 * A readout's frames to values (mbus_collect_map_frames, shared by ammd and
 * `ammctl read --mbus`): the corpus telegram twice, as a two-telegram
 * readout, maps to its six values twice; the header of the first telegram
 * comes back; cap bounds the values; a cut-off last frame ends the walk.
 */
Test(mbus_collect, frames_of_a_readout_to_values)
{
	size_t len, n, nv;
	char *hex = slurp(vectors_path("mbus/frames/kamstrup_382_005.hex"), &len);
	cr_assert_not_null(hex, "cannot read the Kamstrup 382 vector (set AMM_VECTORS)");
	uint8_t *p = hex_tail(hex, &n);
	uint8_t *two = malloc(2 * n);
	struct mbus_collect_value v[16];
	struct mbus_header h;
	struct mbus_frame f;
	struct mbus_telegram t;
	char err[160];

	cr_assert_not_null(two);
	memcpy(two, p, n);
	memcpy(two + n, p, n);
	cr_assert_gt(mbus_frame_parse(p, n, &f), 0);
	cr_assert_eq(mbus_telegram_decode(&f, &t), 0);
	cr_assert_eq(mbus_collect_map_frames("382M", two, 2 * n, v, 16, &nv, &h, err, sizeof(err)),
	             0, "%s", err);
	cr_assert_eq(nv, 12);
	cr_assert_str_eq(err, "");
	cr_assert(h.has_id);
	cr_assert_eq(h.id, t.hdr.id);
	char a[OBIS_STRLEN], b[OBIS_STRLEN];
	for (size_t i = 0; i < 6; i++) {
		cr_assert_str_eq(obis_format(&v[i].obis, a), obis_format(&v[i + 6].obis, b));
		cr_assert_eq(v[i].value, v[i + 6].value);
	}
	cr_assert_str_eq(obis_format(&v[0].obis, a), "1-0:1.8.0.255");
	/* cap */
	cr_assert_eq(mbus_collect_map_frames("382M", two, 2 * n, v, 4, &nv, NULL, err, sizeof(err)), 0);
	cr_assert_eq(nv, 4);
	/* the second frame cut short: the first one's values only */
	cr_assert_eq(mbus_collect_map_frames("382M", two, 2 * n - 3, v, 16, &nv, NULL, err, sizeof(err)),
	             0);
	cr_assert_eq(nv, 6);
	free(two);
	tail_free(p);
	free(hex);
}

static char *
temp_map(const char *text)
{
	static char path[64];
	snprintf(path, sizeof(path), "/tmp/amm-test-map-XXXXXX");
	int fd = mkstemp(path);
	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	return path;
}

/* The Modbus map as ammd and ammctl find it (mbus_collect_map_load). */
Test(mbus_collect, modbus_map_lookup)
{
	struct modbus_map m;
	struct modbus_map_entry e[8];
	const char *used;
	char err[400];
	char *path = temp_map("0x0000 u32 hi 0.001 kWh 1-0:1.8.0.255\n"
	                      "0x0002 u32 hi 0.001 kWh 1-0:2.8.0.255\n");
	char named[64];

	snprintf(named, sizeof(named), "%s", path);
	/* $AMMD_MODBUS_MAP first */
	setenv("AMMD_MODBUS_MAP", named, 1);
	cr_assert_eq(mbus_collect_map_load(NULL, &m, e, 8, &used, err, sizeof(err)), 0, "%s", err);
	cr_assert_str_eq(used, named);
	cr_assert_eq(m.n, 2);
	/* a file named explicitly that is not there */
	cr_assert_eq(mbus_collect_map_load("/nonexistent/x.map", &m, e, 8, &used, err, sizeof(err)),
	             METER_EINVAL);
	cr_assert_not_null(strstr(err, "/nonexistent/x.map"));
	/* a file without entries */
	char *empty = temp_map("# nothing\n");
	cr_assert_eq(mbus_collect_map_load(empty, &m, e, 8, NULL, err, sizeof(err)),
	             METER_EMALFORMED);
	cr_assert_not_null(strstr(err, "no entries"));
	/* more entries than room */
	cr_assert_eq(mbus_collect_map_load(named, &m, e, 1, NULL, err, sizeof(err)), METER_ENOSPC);
	unlink(empty);
	unlink(named);
	unsetenv("AMMD_MODBUS_MAP");
}
