/*
 * test_discovery.c: the object list of an association (class 15,
 * attribute 2) built with the A-XDR writers and decoded at the end of its
 * allocation (ASan trips on an over-read), truncated and malformed lists,
 * and the layout text round trip the scheduler and the session share.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "axdr.h"
#include "discovery.h"
#include "meter_error.h"
#include "obis.h"
#include "profile.h"

static const struct {
	uint16_t cls;
	uint8_t ver;
	struct obis o;
	uint32_t nattr; /* access_rights attribute entries */
} objs[] = {
    {8, 0, {{0, 0, 1, 0, 0, 255}}, 9},   {15, 1, {{0, 0, 40, 0, 0, 255}}, 11},
    {3, 0, {{1, 0, 1, 8, 0, 255}}, 3},   {7, 1, {{1, 0, 99, 1, 0, 255}}, 8},
    {7, 1, {{0, 0, 99, 98, 0, 255}}, 8}, {70, 0, {{0, 0, 96, 3, 10, 255}}, 4},
};
#define NOBJS (sizeof(objs) / sizeof(objs[0]))

/* An object list of the first n objects, at the end of a fresh block. */
static uint8_t *
build(size_t n, size_t cut, size_t *len)
{
	static uint8_t tmp[8192];
	struct mbuf b;
	mbuf_init(&b, tmp, sizeof(tmp));
	axdr_put_array(&b, (uint32_t)n);
	for (size_t i = 0; i < n; i++) {
		axdr_put_structure(&b, 4);
		axdr_put_long_unsigned(&b, objs[i].cls);
		axdr_put_unsigned(&b, objs[i].ver);
		axdr_put_octet_string(&b, objs[i].o.v, 6);
		axdr_put_structure(&b, 2);
		axdr_put_array(&b, objs[i].nattr);
		for (uint32_t a = 0; a < objs[i].nattr; a++) {
			axdr_put_structure(&b, 3);
			axdr_put_integer(&b, (int8_t)(a + 1));
			axdr_put_enum(&b, 1);
			axdr_put_null(&b);
		}
		axdr_put_array(&b, 0);
	}
	cr_assert_eq(b.err, 0);
	*len = b.len - cut;
	uint8_t *blk = malloc(*len ? *len : 1);
	memcpy(blk, tmp, *len);
	return blk;
}

Test(discovery, object_list_every_size)
{
	for (size_t n = 0; n <= NOBJS; n++) {
		size_t len, got, total;
		struct discovery_object out[NOBJS];
		uint8_t *p = build(n, 0, &len);
		cr_assert_eq(discovery_object_list(p, len, out, NOBJS, &got, &total), 0, "n=%zu",
		             n);
		cr_assert_eq(got, n);
		cr_assert_eq(total, n);
		for (size_t i = 0; i < n; i++) {
			cr_assert_eq(out[i].class_id, objs[i].cls);
			cr_assert_eq(out[i].version, objs[i].ver);
			cr_assert(obis_eq(&out[i].obis, &objs[i].o));
		}
		free(p);
	}
}

Test(discovery, object_list_capacity_counts_the_rest)
{
	size_t len, got, total;
	struct discovery_object out[2];
	uint8_t *p = build(NOBJS, 0, &len);
	cr_assert_eq(discovery_object_list(p, len, out, 2, &got, &total), 0);
	cr_assert_eq(got, 2);
	cr_assert_eq(total, NOBJS);
	free(p);
}

Test(discovery, object_list_truncated_anywhere)
{
	size_t full;
	free(build(NOBJS, 0, &full));
	for (size_t cut = 1; cut < full; cut++) {
		size_t len, got;
		struct discovery_object out[NOBJS];
		uint8_t *p = build(NOBJS, cut, &len);
		int r = discovery_object_list(p, len, out, NOBJS, &got, NULL);
		cr_assert(r == METER_ENEEDMORE || r == METER_EMALFORMED, "cut %zu: %d", cut, r);
		free(p);
	}
}

Test(discovery, object_list_wrong_shapes)
{
	static const struct {
		const char *what;
		uint8_t bytes[16];
		size_t len;
	} bad[] = {
	    {"not an array", {AXDR_STRUCTURE, 0}, 2},
	    {"element not a structure", {AXDR_ARRAY, 1, AXDR_UNSIGNED, 1}, 4},
	    {"short structure", {AXDR_ARRAY, 1, AXDR_STRUCTURE, 1, AXDR_UNSIGNED, 1}, 6},
	    {"class not long-unsigned",
	     {AXDR_ARRAY, 1, AXDR_STRUCTURE, 3, AXDR_UNSIGNED, 8, AXDR_UNSIGNED, 0,
	      AXDR_OCTET_STRING, 0},
	     10},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		size_t got;
		struct discovery_object out[2];
		uint8_t *p = malloc(bad[i].len);
		memcpy(p, bad[i].bytes, bad[i].len);
		cr_assert_eq(discovery_object_list(p, bad[i].len, out, 2, &got, NULL),
		             METER_EMALFORMED, "%s", bad[i].what);
		free(p);
	}
}

Test(discovery, has)
{
	struct discovery_object o[NOBJS];
	for (size_t i = 0; i < NOBJS; i++)
		o[i] = (struct discovery_object){objs[i].cls, objs[i].ver, objs[i].o};
	struct obis lp = OBIS(1, 0, 99, 1, 0, 255), nope = OBIS(1, 0, 99, 2, 0, 255);
	cr_assert(discovery_has(o, NOBJS, &lp, 7));
	cr_assert(discovery_has(o, NOBJS, &lp, 0));
	cr_assert_not(discovery_has(o, NOBJS, &lp, 3));
	cr_assert_not(discovery_has(o, NOBJS, &nope, 0));
}

Test(discovery, objects_text)
{
	struct discovery_object o[2] = {{8, 0, OBIS(0, 0, 1, 0, 0, 255)},
	                                {7, 1, OBIS(1, 0, 99, 1, 0, 255)}};
	char *t = discovery_objects_text(o, 2);
	cr_assert_str_eq(t, "0-0:1.0.0.255,8,0;1-0:99.1.0.255,7,1");
	free(t);
	t = discovery_objects_text(o, 0);
	cr_assert_str_eq(t, "");
	free(t);
}

Test(discovery, layout_round_trip)
{
	struct obis lp = OBIS(1, 0, 99, 1, 0, 255), other = OBIS(0, 0, 98, 1, 0, 255);
	struct profile_column in[4] = {
	    {8, OBIS(0, 0, 1, 0, 0, 255), 2, 0, 0, PROFILE_UNIT_COUNT, false},
	    {1, OBIS(0, 0, 96, 10, 1, 255), 2, 0, 0, PROFILE_UNIT_COUNT, false},
	    {3, OBIS(1, 0, 1, 8, 0, 255), 2, 0, -3, PROFILE_UNIT_WH, true},
	    {4, OBIS(1, 0, 1, 6, 0, 255), 5, 1, 2, PROFILE_UNIT_W, true},
	};
	struct profile_column out[8];
	char *a = discovery_layout_text(&lp, in, 4), *b = discovery_layout_text(&other, in, 2);
	char both[1024];
	snprintf(both, sizeof(both), "%s;%s", b, a);
	cr_assert_eq(discovery_layout_parse(both, &lp, out, 8), 4);
	for (int i = 0; i < 4; i++) {
		cr_assert_eq(out[i].class_id, in[i].class_id);
		cr_assert(obis_eq(&out[i].obis, &in[i].obis));
		cr_assert_eq(out[i].attribute, in[i].attribute);
		cr_assert_eq(out[i].data_index, in[i].data_index);
		cr_assert_eq(out[i].scaler, in[i].scaler);
		cr_assert_eq(out[i].unit, in[i].unit);
		cr_assert_eq(out[i].has_scaler_unit, in[i].has_scaler_unit);
	}
	cr_assert_eq(discovery_layout_parse(both, &other, out, 8), 2);
	cr_assert_eq(discovery_layout_parse(a, &lp, out, 3), METER_ENOSPC);
	cr_assert_eq(discovery_layout_parse("", &lp, out, 8), 0);
	free(a);
	free(b);
}

Test(discovery, layout_parse_refuses)
{
	static const char *const bad[] = {
	    "1-0:99.1.0.255,0,3,1-0:1.8.0.255,2,0,0",        /* a field short */
	    "1-0:99.1.0.255,1,3,1-0:1.8.0.255,2,0,0,30",     /* col 1 without col 0 */
	    "1-0:99.1.0.255,0,3,1-0:1.8.0.999,2,0,0,30",     /* bad OBIS */
	    "1-0:99.1.0.255,0,3,1-0:1.8.0.255,2,0,200,30",   /* scaler out of range */
	    "1-0:99.1.0.255,0,70000,1-0:1.8.0.255,2,0,0,30", /* class out of range */
	};
	struct obis lp = OBIS(1, 0, 99, 1, 0, 255);
	struct profile_column out[4];
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_eq(discovery_layout_parse(bad[i], &lp, out, 4), METER_EMALFORMED, "%s",
		             bad[i]);
}
