/*
 * axdr_json.c: A-XDR Data trees as JSON (shape documented in axdr_json.h).
 *
 * The renderer walks the pre-order node array with axdr_child(), so it
 * needs nothing but the nodes and the input buffer they point into.  The
 * extra readings it adds (OBIS names in object references, date-times in
 * 12-byte octet-strings) are only added when the bytes fit; the raw hex is
 * always there, so nothing a field engineer might need is hidden behind an
 * interpretation.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "axdr_json.h"
#include "cosem_time.h"
#include "obis.h"

/* Shortest text that reads back to the same float32, as a double. */
static double
float32_shortest(double v)
{
	char buf[48];
	double back = v;

	for (int prec = 1; prec <= 9; prec++) {
		snprintf(buf, sizeof buf, "%.*g", prec, v);
		back = strtod(buf, NULL);
		if ((float)back == (float)v)
			break;
	}
	return back;
}

static bool
printable(const uint8_t *p, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++)
		if (p[i] < 0x20 || p[i] > 0x7e)
			return false;
	return true;
}

/* Is n a COSEM object reference, structure[long-unsigned class id,
 * octet-string(6) logical name, ...] (capture object definitions,
 * restricting objects, object list entries)? */
static bool
is_object_reference(const struct axdr_node *n)
{
	const struct axdr_node *cls, *ln;

	if (n->tag != AXDR_STRUCTURE || n->len < 2)
		return false;
	cls = axdr_child(n, 0);
	ln = axdr_child(n, 1);
	return cls && ln && cls->tag == AXDR_LONG_UNSIGNED && ln->tag == AXDR_OCTET_STRING &&
	       ln->len == 6;
}

static void
date_text(const uint8_t *p, char *out, size_t n)
{
	struct cosem_date d;
	char y[8] = "????", m[4] = "??", dd[4] = "??";

	if (cosem_date_decode(p, &d) < 0) {
		out[0] = '\0';
		return;
	}
	if (d.year != COSEM_YEAR_UNSPEC)
		snprintf(y, sizeof y, "%04u", d.year);
	if (d.month >= 1 && d.month <= 12)
		snprintf(m, sizeof m, "%02u", d.month);
	if (d.day >= 1 && d.day <= 31)
		snprintf(dd, sizeof dd, "%02u", d.day);
	snprintf(out, n, "%s-%s-%s", y, m, dd);
}

static void
time_text(const uint8_t *p, char *out, size_t n)
{
	struct cosem_time t;
	char h[4] = "??", mi[4] = "??", s[4] = "??", f[8] = "";

	if (cosem_time_decode(p, &t) < 0) {
		out[0] = '\0';
		return;
	}
	if (t.hour != COSEM_UNSPEC)
		snprintf(h, sizeof h, "%02u", t.hour);
	if (t.minute != COSEM_UNSPEC)
		snprintf(mi, sizeof mi, "%02u", t.minute);
	if (t.second != COSEM_UNSPEC)
		snprintf(s, sizeof s, "%02u", t.second);
	if (t.hundredths != COSEM_UNSPEC && t.hundredths != 0)
		snprintf(f, sizeof f, ".%02u", t.hundredths);
	snprintf(out, n, "%s:%s:%s%s", h, mi, s, f);
}

/* "value": the bits as '0'/'1' text, first bit first. */
static void
write_bits(struct json *j, const struct axdr_node *n)
{
	char *t = malloc((size_t)n->len + 1);

	if (!t)
		return; /* "hex" already carries the bits */
	for (size_t k = 0; k < n->len; k++)
		t[k] = n->ptr[k / 8] & (0x80 >> (k % 8)) ? '1' : '0';
	json_strn(j, "value", t, n->len);
	free(t);
}

static void
write_node(struct json *j, const char *key, const struct axdr_node *n, bool in_objref)
{
	char txt[64], obis_txt[OBIS_STRLEN];
	struct cosem_datetime dt;
	struct obis o;
	bool objref;

	json_obj_begin(j, key);
	json_str(j, "type", axdr_tag_name(n->tag));
	switch (n->tag) {
	case AXDR_NULL:
	case AXDR_DONT_CARE:
		break;
	case AXDR_BOOLEAN:
		json_bool(j, "value", n->v.u != 0);
		break;
	case AXDR_INTEGER:
	case AXDR_LONG:
	case AXDR_DOUBLE_LONG:
	case AXDR_LONG64:
	case AXDR_BCD:
		json_int(j, "value", n->v.i);
		break;
	case AXDR_UNSIGNED:
	case AXDR_LONG_UNSIGNED:
	case AXDR_DOUBLE_LONG_UNSIGNED:
	case AXDR_LONG64_UNSIGNED:
	case AXDR_ENUM:
		json_uint(j, "value", n->v.u);
		break;
	case AXDR_FLOATING_POINT:
	case AXDR_FLOAT32:
		json_double(j, "value", float32_shortest(n->v.f));
		break;
	case AXDR_FLOAT64:
		json_double(j, "value", n->v.f);
		break;
	case AXDR_OCTET_STRING:
		json_hex(j, "hex", n->ptr, n->len);
		if (in_objref && n->len == 6) {
			memcpy(o.v, n->ptr, 6);
			json_str(j, "obis", obis_format(&o, obis_txt));
			if (obis_name(&o))
				json_str(j, "name", obis_name(&o));
		}
		if (n->len == 12 && cosem_datetime_decode(n->ptr, &dt) == 0) {
			cosem_datetime_format(&dt, txt, sizeof txt);
			json_str(j, "datetime", txt);
		}
		break;
	case AXDR_VISIBLE_STRING:
	case AXDR_UTF8_STRING:
		json_strn(j, "value", (const char *)n->ptr, n->len);
		if (n->tag == AXDR_VISIBLE_STRING && !printable(n->ptr, n->len))
			json_hex(j, "hex", n->ptr, n->len);
		break;
	case AXDR_BIT_STRING:
		json_uint(j, "bits", n->len);
		json_hex(j, "hex", n->ptr, ((size_t)n->len + 7) / 8);
		write_bits(j, n);
		break;
	case AXDR_DATE_TIME:
		json_hex(j, "hex", n->ptr, n->len);
		if (cosem_datetime_decode(n->ptr, &dt) == 0) {
			cosem_datetime_format(&dt, txt, sizeof txt);
			json_str(j, "value", txt);
		}
		break;
	case AXDR_DATE:
		json_hex(j, "hex", n->ptr, n->len);
		date_text(n->ptr, txt, sizeof txt);
		if (txt[0])
			json_str(j, "value", txt);
		break;
	case AXDR_TIME:
		json_hex(j, "hex", n->ptr, n->len);
		time_text(n->ptr, txt, sizeof txt);
		if (txt[0])
			json_str(j, "value", txt);
		break;
	case AXDR_ARRAY:
	case AXDR_STRUCTURE:
	case AXDR_COMPACT_ARRAY:
		json_uint(j, "count", n->len);
		if (n->tag == AXDR_COMPACT_ARRAY)
			json_hex(j, "description", n->ptr, (size_t)n->v.u);
		objref = is_object_reference(n);
		json_arr_begin(j, "items");
		for (uint32_t i = 0; i < n->len; i++) {
			const struct axdr_node *c = axdr_child(n, i);
			if (!c)
				break;
			write_node(j, NULL, c, objref);
		}
		json_arr_end(j);
		break;
	}
	json_obj_end(j);
}

void
axdr_json_write(struct json *j, const char *key, const struct axdr_node *n)
{
	write_node(j, key, n, false);
}
