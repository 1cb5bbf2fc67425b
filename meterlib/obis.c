/*
 * obis.c: OBIS codes as text and the names of the COSEM objects ammd
 * reads and drives (DESIGN §4).
 *
 * The name table is the single place where an object's logical name, its
 * short name in configs, MQTT and the CLI, and the interface class we
 * expect it to have are written down; ammd compares the class with what
 * the meter's own object list says.  It is small, so lookups scan it.
 */
#include <string.h>

#include "bytes.h"
#include "meter_error.h"
#include "obis.h"

struct obis_entry {
	const char *name;
	uint8_t v[6];
	uint16_t cls;
};

#define E(n, a, b, c, d, e, cl) {n, {a, b, c, d, e, 255}, cl}

static const struct obis_entry obis_table[] = {
	E("clock", 0, 0, 1, 0, 0, 8),
	E("logical_device_name", 0, 0, 42, 0, 0, 1),
	E("serial_number", 0, 0, 96, 1, 0, 1),
	E("firmware_version", 1, 0, 0, 2, 0, 1),
	E("association_ln", 0, 0, 40, 0, 0, 15),
	E("active_energy_import", 1, 0, 1, 8, 0, 3),
	E("active_energy_export", 1, 0, 2, 8, 0, 3),
	E("reactive_energy_import", 1, 0, 3, 8, 0, 3),
	E("reactive_energy_export", 1, 0, 4, 8, 0, 3),
	E("active_energy_import_t1", 1, 0, 1, 8, 1, 3),
	E("active_energy_import_t2", 1, 0, 1, 8, 2, 3),
	E("active_energy_import_t3", 1, 0, 1, 8, 3, 3),
	E("active_energy_import_t4", 1, 0, 1, 8, 4, 3),
	E("active_energy_import_t5", 1, 0, 1, 8, 5, 3),
	E("active_energy_import_t6", 1, 0, 1, 8, 6, 3),
	E("active_energy_import_t7", 1, 0, 1, 8, 7, 3),
	E("active_energy_import_t8", 1, 0, 1, 8, 8, 3),
	E("reactive_energy_import_t1", 1, 0, 3, 8, 1, 3),
	E("reactive_energy_import_t2", 1, 0, 3, 8, 2, 3),
	E("reactive_energy_import_t3", 1, 0, 3, 8, 3, 3),
	E("reactive_energy_import_t4", 1, 0, 3, 8, 4, 3),
	E("reactive_energy_import_t5", 1, 0, 3, 8, 5, 3),
	E("reactive_energy_import_t6", 1, 0, 3, 8, 6, 3),
	E("reactive_energy_import_t7", 1, 0, 3, 8, 7, 3),
	E("reactive_energy_import_t8", 1, 0, 3, 8, 8, 3),
	E("voltage_l1", 1, 0, 32, 7, 0, 3),
	E("voltage_l2", 1, 0, 52, 7, 0, 3),
	E("voltage_l3", 1, 0, 72, 7, 0, 3),
	E("current_l1", 1, 0, 31, 7, 0, 3),
	E("current_l2", 1, 0, 51, 7, 0, 3),
	E("current_l3", 1, 0, 71, 7, 0, 3),
	E("active_power_l1", 1, 0, 21, 7, 0, 3),
	E("active_power_l2", 1, 0, 41, 7, 0, 3),
	E("active_power_l3", 1, 0, 61, 7, 0, 3),
	E("active_power", 1, 0, 1, 7, 0, 3),
	E("peak_power", 1, 0, 1, 6, 0, 4),
	E("peak_power_t1", 1, 0, 1, 6, 1, 4),
	E("peak_power_t2", 1, 0, 1, 6, 2, 4),
	E("load_profile", 1, 0, 99, 1, 0, 7),
	E("analysis_logger", 1, 0, 99, 2, 0, 7),
	E("billing_values", 0, 0, 98, 1, 0, 7),
	E("standard_event_log", 0, 0, 99, 98, 0, 7),
	E("fraud_event_log", 0, 0, 99, 98, 1, 7),
	E("disconnector_event_log", 0, 0, 99, 98, 2, 7),
	E("voltage_quality_log", 0, 0, 99, 98, 4, 7),
	E("rtc_event_log", 0, 0, 99, 98, 7, 7),
	E("alarm_register", 0, 0, 97, 98, 0, 1),
	E("push_setup", 0, 0, 25, 9, 0, 40),
	E("disconnect_control", 0, 0, 96, 3, 10, 70),
	E("limiter", 0, 0, 17, 0, 0, 71),
	E("prepayment_account", 0, 0, 19, 0, 0, 111),
	E("prepayment_credit", 0, 0, 19, 10, 0, 112),
	E("activity_calendar", 0, 0, 13, 0, 0, 20),
	E("special_days", 0, 0, 11, 0, 0, 11),
	E("tariff_script_table", 0, 0, 10, 0, 100, 9),
	E("current_tariff", 0, 0, 96, 14, 0, 1),
	E("security_setup", 0, 0, 43, 0, 0, 64),
	E("invocation_counter", 0, 0, 43, 1, 0, 1),
};

#define N_ENTRIES (sizeof obis_table / sizeof obis_table[0])

/* A decimal 0..255 of one to three digits; returns chars used or 0. */
static int
dec_byte(const char *s, uint8_t *out)
{
	unsigned v = 0;
	int i;

	for (i = 0; i < 3 && s[i] >= '0' && s[i] <= '9'; i++)
		v = v * 10 + (unsigned)(s[i] - '0');
	if (i == 0 || v > 255 || (s[i] >= '0' && s[i] <= '9'))
		return 0;
	*out = (uint8_t)v;
	return i;
}

static int
parse_hex(const char *s, struct obis *o)
{
	struct obis t;
	int i, hi, lo;

	for (i = 0; i < 6; i++) {
		hi = bytes_hexval(s[2 * i]);
		if (hi < 0)
			return METER_EMALFORMED;
		lo = bytes_hexval(s[2 * i + 1]);
		if (lo < 0)
			return METER_EMALFORMED;
		t.v[i] = (uint8_t)(hi << 4 | lo);
	}
	if (s[12] != '\0')
		return METER_EMALFORMED;
	*o = t;
	return 0;
}

int
obis_parse(const char *s, struct obis *o)
{
	/* Separators expected after A..E in each text form; '*' is also
	 * accepted before F, as IEC 62056-61 writes it. */
	static const char dashed[] = "-:...";
	static const char dotted[] = ".....";
	const char *seps;
	struct obis t;
	int i, k;

	if (!s)
		return METER_EMALFORMED;
	if (strlen(s) == 12 && bytes_hexval(s[0]) >= 0 && bytes_hexval(s[1]) >= 0 &&
	    strchr(s, '.') == NULL && strchr(s, '-') == NULL)
		return parse_hex(s, o);
	k = dec_byte(s, &t.v[0]);
	if (!k)
		return METER_EMALFORMED;
	s += k;
	if (*s == '-')
		seps = dashed;
	else if (*s == '.')
		seps = dotted;
	else
		return METER_EMALFORMED;
	for (i = 1; i < 6; i++) {
		if (*s != seps[i - 1] && !(i == 5 && *s == '*' && seps == dashed))
			break;
		k = dec_byte(s + 1, &t.v[i]);
		if (!k)
			return METER_EMALFORMED;
		s += 1 + k;
	}
	if (*s != '\0')
		return METER_EMALFORMED;
	if (i == 5 && seps == dashed)
		t.v[5] = 255; /* "1-0:1.8.0": F left out */
	else if (i != 6)
		return METER_EMALFORMED;
	*o = t;
	return 0;
}

char *
obis_format(const struct obis *o, char *out)
{
	/* Written by hand: at most 23 characters, and this runs per value in
	 * CSV and JSON output. */
	char *p = out;
	static const char seps[] = "-:...";
	int i;
	unsigned v;

	for (i = 0; i < 6; i++) {
		v = o->v[i];
		if (v >= 100)
			*p++ = (char)('0' + v / 100);
		if (v >= 10)
			*p++ = (char)('0' + v / 10 % 10);
		*p++ = (char)('0' + v % 10);
		if (i < 5)
			*p++ = seps[i];
	}
	*p = '\0';
	return out;
}

bool
obis_eq(const struct obis *a, const struct obis *b)
{
	return memcmp(a->v, b->v, 6) == 0;
}

static const struct obis_entry *
find_code(const struct obis *o)
{
	size_t i;

	for (i = 0; i < N_ENTRIES; i++)
		if (memcmp(obis_table[i].v, o->v, 6) == 0)
			return &obis_table[i];
	return NULL;
}

const char *
obis_name(const struct obis *o)
{
	const struct obis_entry *e = find_code(o);
	return e ? e->name : NULL;
}

uint16_t
obis_class(const struct obis *o)
{
	const struct obis_entry *e = find_code(o);
	return e ? e->cls : 0;
}

int
obis_by_name(const char *name, struct obis *o)
{
	size_t i;

	if (!name)
		return METER_ENOTFOUND;
	for (i = 0; i < N_ENTRIES; i++) {
		if (strcmp(obis_table[i].name, name) == 0) {
			memcpy(o->v, obis_table[i].v, 6);
			return 0;
		}
	}
	return METER_ENOTFOUND;
}
