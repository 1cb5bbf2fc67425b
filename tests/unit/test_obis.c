/*
 * test_obis.c: OBIS text forms round-trip for every value of every group
 * and for random codes, malformed text is refused, and every object of
 * DESIGN §4 is found by name and by code with its class.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "axdr.h"
#include "meter_error.h"
#include "obis.h"
#include "vectors.h"

static void
round_trip(const struct obis *o)
{
	char txt[OBIS_STRLEN], alt[64];
	struct obis back;

	cr_assert_eq(obis_format(o, txt), txt);
	cr_assert_lt(strlen(txt), OBIS_STRLEN);
	cr_assert_eq(obis_parse(txt, &back), 0, "%s", txt);
	cr_assert(obis_eq(&back, o), "%s", txt);

	snprintf(alt, sizeof alt, "%u.%u.%u.%u.%u.%u", o->v[0], o->v[1], o->v[2], o->v[3],
		 o->v[4], o->v[5]);
	memset(&back, 0, sizeof back);
	cr_assert_eq(obis_parse(alt, &back), 0, "%s", alt);
	cr_assert(obis_eq(&back, o), "%s", alt);

	snprintf(alt, sizeof alt, "%02x%02X%02x%02X%02x%02x", o->v[0], o->v[1], o->v[2], o->v[3],
		 o->v[4], o->v[5]);
	memset(&back, 0, sizeof back);
	cr_assert_eq(obis_parse(alt, &back), 0, "%s", alt);
	cr_assert(obis_eq(&back, o), "%s", alt);
}

Test(obis, every_value_of_every_group)
{
	for (int g = 0; g < 6; g++) {
		for (int v = 0; v < 256; v++) {
			struct obis o = OBIS(1, 0, 99, 98, 7, 255);
			o.v[g] = (uint8_t)v;
			round_trip(&o);
		}
	}
}

Test(obis, random_codes)
{
	uint64_t s = 0x853c49e6748fea9bULL;

	for (int i = 0; i < 100000; i++) {
		s ^= s << 13;
		s ^= s >> 7;
		s ^= s << 17;
		struct obis o;
		for (int g = 0; g < 6; g++)
			o.v[g] = (uint8_t)(s >> (8 * g));
		round_trip(&o);
	}
}

Test(obis, text_forms)
{
	struct obis o;
	char txt[OBIS_STRLEN];

	cr_assert_eq(obis_parse("1-0:1.8.0", &o), 0);
	cr_assert(obis_eq(&o, &OBIS(1, 0, 1, 8, 0, 255)), "F defaults to 255");
	cr_assert_eq(obis_parse("1-0:1.8.0*255", &o), 0);
	cr_assert(obis_eq(&o, &OBIS(1, 0, 1, 8, 0, 255)));
	cr_assert_eq(obis_parse("0-0:96.3.10.255", &o), 0);
	cr_assert_str_eq(obis_format(&o, txt), "0-0:96.3.10.255");
	cr_assert_eq(obis_parse("0100010800ff", &o), 0);
	cr_assert_str_eq(obis_format(&o, txt), "1-0:1.8.0.255");
	cr_assert_eq(obis_parse("255-255:255.255.255.255", &o), 0);
	cr_assert_eq(strlen(obis_format(&o, txt)), 23);
	cr_assert_eq(obis_parse("001-0:1.8.0.255", &o), 0, "leading zeros within three digits");
}

Test(obis, malformed_text_refused)
{
	static const char *bad[] = {
		"",		   "1",		      "1-0",		 "1-0:1.8",
		"1-0:1.8.0.256",   "1-0:1.8.0.255.1", "1-0:1.8.0.",	 "1-0:1.8.0.255 ",
		" 1-0:1.8.0.255",  "1.0.1.8.0",	      "1.0.1.8.0.255.0", "1-0.1.8.0.255",
		"1:0-1.8.0.255",   "1-0:1:8.0.255",   "1--0:1.8.0.255",	 "1-0:1.8.0.0255",
		"-1-0:1.8.0.255",  "1-0:1.8.0*",      "1-0:1*8.0.255",	 "a-b:c.d.e.f",
		"0100010800f",	   "0100010800fg",    "0100010800ff0",	 "1000-0:1.8.0.255",
		"1-0:1.8.0.255\n", "1-0:+1.8.0.255",  "1.0.1.8.0*255",	 "1-0:1.8..0",
	};
	struct obis o = OBIS(9, 9, 9, 9, 9, 9);

	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		cr_assert_eq(obis_parse(bad[i], &o), METER_EMALFORMED, "\"%s\" accepted", bad[i]);
		cr_assert(obis_eq(&o, &OBIS(9, 9, 9, 9, 9, 9)), "\"%s\" wrote output", bad[i]);
	}
	cr_assert_eq(obis_parse(NULL, &o), METER_EMALFORMED);
}

/* DESIGN §4, written out again here so that a slip in either copy shows. */
static const struct {
	const char *name, *code;
	uint16_t cls;
} design[] = {
	{"clock", "0-0:1.0.0.255", 8},
	{"logical_device_name", "0-0:42.0.0.255", 1},
	{"serial_number", "0-0:96.1.0.255", 1},
	{"firmware_version", "1-0:0.2.0.255", 1},
	{"association_ln", "0-0:40.0.0.255", 15},
	{"active_energy_import", "1-0:1.8.0.255", 3},
	{"active_energy_export", "1-0:2.8.0.255", 3},
	{"reactive_energy_import", "1-0:3.8.0.255", 3},
	{"reactive_energy_export", "1-0:4.8.0.255", 3},
	{"voltage_l1", "1-0:32.7.0.255", 3},
	{"voltage_l2", "1-0:52.7.0.255", 3},
	{"voltage_l3", "1-0:72.7.0.255", 3},
	{"current_l1", "1-0:31.7.0.255", 3},
	{"current_l2", "1-0:51.7.0.255", 3},
	{"current_l3", "1-0:71.7.0.255", 3},
	{"active_power_l1", "1-0:21.7.0.255", 3},
	{"active_power_l2", "1-0:41.7.0.255", 3},
	{"active_power_l3", "1-0:61.7.0.255", 3},
	{"active_power", "1-0:1.7.0.255", 3},
	{"peak_power", "1-0:1.6.0.255", 4},
	{"peak_power_t1", "1-0:1.6.1.255", 4},
	{"peak_power_t2", "1-0:1.6.2.255", 4},
	{"load_profile", "1-0:99.1.0.255", 7},
	{"analysis_logger", "1-0:99.2.0.255", 7},
	{"billing_values", "0-0:98.1.0.255", 7},
	{"standard_event_log", "0-0:99.98.0.255", 7},
	{"fraud_event_log", "0-0:99.98.1.255", 7},
	{"disconnector_event_log", "0-0:99.98.2.255", 7},
	{"voltage_quality_log", "0-0:99.98.4.255", 7},
	{"rtc_event_log", "0-0:99.98.7.255", 7},
	{"alarm_register", "0-0:97.98.0.255", 1},
	{"push_setup", "0-0:25.9.0.255", 40},
	{"disconnect_control", "0-0:96.3.10.255", 70},
	{"limiter", "0-0:17.0.0.255", 71},
	{"prepayment_account", "0-0:19.0.0.255", 111},
	{"prepayment_credit", "0-0:19.10.0.255", 112},
	{"activity_calendar", "0-0:13.0.0.255", 20},
	{"special_days", "0-0:11.0.0.255", 11},
	{"tariff_script_table", "0-0:10.0.100.255", 9},
	{"current_tariff", "0-0:96.14.0.255", 1},
	{"security_setup", "0-0:43.0.0.255", 64},
	{"invocation_counter", "0-0:43.1.0.255", 1},
};

static void
check_named(const char *name, const char *code, uint16_t cls)
{
	struct obis by_code, by_name;
	char txt[OBIS_STRLEN];

	cr_assert_eq(obis_parse(code, &by_code), 0, "%s", code);
	cr_assert_str_eq(obis_name(&by_code) ? obis_name(&by_code) : "(null)", name, "%s", code);
	cr_assert_eq(obis_class(&by_code), cls, "%s", name);
	cr_assert_eq(obis_by_name(name, &by_name), 0, "%s", name);
	cr_assert(obis_eq(&by_name, &by_code), "%s", name);
	cr_assert_str_eq(obis_format(&by_name, txt), code);
}

Test(obis, every_named_object)
{
	char name[64], code[32];

	for (size_t i = 0; i < sizeof design / sizeof design[0]; i++)
		check_named(design[i].name, design[i].code, design[i].cls);
	for (int t = 1; t <= 8; t++) {
		snprintf(name, sizeof name, "active_energy_import_t%d", t);
		snprintf(code, sizeof code, "1-0:1.8.%d.255", t);
		check_named(name, code, 3);
		snprintf(name, sizeof name, "reactive_energy_import_t%d", t);
		snprintf(code, sizeof code, "1-0:3.8.%d.255", t);
		check_named(name, code, 3);
	}
}

Test(obis, unknown_objects)
{
	struct obis o = OBIS(1, 0, 1, 8, 9, 255);

	cr_assert_null(obis_name(&o));
	cr_assert_eq(obis_class(&o), 0);
	cr_assert_eq(obis_by_name("no_such_object", &o), METER_ENOTFOUND);
	cr_assert_eq(obis_by_name("", &o), METER_ENOTFOUND);
	cr_assert_eq(obis_by_name(NULL, &o), METER_ENOTFOUND);
	cr_assert_eq(obis_by_name("clock ", &o), METER_ENOTFOUND);
}

/* The corpus's capture-object definition names the clock, class 8. */
Test(obis, corpus_capture_object_is_the_clock)
{
	const struct dlms_vector *v = dlms_vector("axdr-structure-capture-object");
	struct axdr_node n[8];
	size_t len, nn;
	struct obis o;

	cr_assert_not_null(v);
	uint8_t *buf = hex_tail(v->hex, &len);
	cr_assert_eq(axdr_decode(buf, len, n, 8, &nn), (ssize_t)len);
	const struct axdr_node *ln = axdr_child(n, 1);
	cr_assert_eq(ln->tag, AXDR_OCTET_STRING);
	cr_assert_eq(ln->len, 6);
	memcpy(o.v, ln->ptr, 6);
	cr_assert_str_eq(obis_name(&o), "clock");
	cr_assert_eq(obis_class(&o), axdr_child(n, 0)->v.u);
	tail_free(buf);
}
