/*
 * test_xdlms.c: the xDLMS service APDUs against the shared DLMS corpus and
 * against APDUs built here.
 *
 * The corpus test renders what xdlms_decode() found in the corpus'
 * `meaning` grammar, field by field, and requires every field the row
 * states (other than provenance notes) to match; then it re-encodes the
 * APDU from the raw Data bytes and again from the decoded nodes and wants
 * the input back.  Generated APDUs of every type make the round trip the
 * other way, and every proper prefix of every APDU must come back as
 * "need more" or "malformed", with the input at the end of its allocation.
 */
#include <criterion/criterion.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "axdr.h"
#include "cosem_time.h"
#include "meter_error.h"
#include "vectors.h"
#include "xdlms.h"

#define NODES 4096

static struct axdr_node nodes[NODES];
static struct xdlms_apdu apdu, apdu2;

/* ---- rendering in the corpus' meaning grammar ---------------------------- */

struct out {
	char s[16384];
	size_t n;
};

static void
emit(struct out *o, const char *fmt, ...)
{
	va_list ap;
	int k;

	va_start(ap, fmt);
	k = vsnprintf(o->s + o->n, sizeof(o->s) - o->n, fmt, ap);
	va_end(ap);
	cr_assert(k >= 0 && (size_t)k < sizeof(o->s) - o->n, "render buffer too small");
	o->n += (size_t)k;
}

static void
emit_hex(struct out *o, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		emit(o, "%02x", p[i]);
}

/* One Data tree; returns the number of nodes it spans. */
static uint32_t
render_node(struct out *o, const struct axdr_node *n)
{
	const char *name = axdr_tag_name(n->tag);

	switch (n->tag) {
	case AXDR_ARRAY:
	case AXDR_STRUCTURE: {
		emit(o, "%s[", name);
		for (uint32_t i = 0; i < n->len; i++) {
			if (i)
				emit(o, ",");
			render_node(o, axdr_child(n, i));
		}
		emit(o, "]");
		break;
	}
	case AXDR_NULL:
		emit(o, "null-data");
		break;
	case AXDR_BOOLEAN:
		emit(o, "boolean:%s", n->v.u ? "true" : "false");
		break;
	case AXDR_BIT_STRING:
		emit(o, "bit-string(%u):", n->len);
		for (uint32_t i = 0; i < n->len; i++)
			emit(o, "%d", (n->ptr[i / 8] >> (7 - i % 8)) & 1);
		break;
	case AXDR_OCTET_STRING:
	case AXDR_DATE_TIME:
	case AXDR_DATE:
	case AXDR_TIME:
		emit(o, "%s:", name);
		emit_hex(o, n->ptr, n->len);
		break;
	case AXDR_VISIBLE_STRING:
	case AXDR_UTF8_STRING:
		emit(o, "%s:\"%.*s\"", name, (int)n->len, (const char *)n->ptr);
		break;
	case AXDR_DOUBLE_LONG:
	case AXDR_INTEGER:
	case AXDR_LONG:
	case AXDR_LONG64:
	case AXDR_BCD:
		emit(o, "%s:%lld", name, (long long)n->v.i);
		break;
	case AXDR_FLOAT32:
	case AXDR_FLOAT64:
	case AXDR_FLOATING_POINT:
		emit(o, "%s:%g", name, n->v.f);
		break;
	default:
		emit(o, "%s:%llu", name, (unsigned long long)n->v.u);
		break;
	}
	return n->span;
}

static void
render_data(struct out *o, const struct xdlms_data *d)
{
	cr_assert_not_null(d->node, "Data without nodes");
	cr_assert_eq(render_node(o, d->node), d->n_nodes, "span disagrees with node count");
}

static void
render_obis(struct out *o, const struct obis *ob)
{
	emit(o, "%u.%u.%u.%u.%u.%u", ob->v[0], ob->v[1], ob->v[2], ob->v[3], ob->v[4], ob->v[5]);
}

static void
render_access(struct out *o, const struct xdlms_access *a, char sep)
{
	if (!a->present) {
		emit(o, "access_selection=none");
		return;
	}
	emit(o, "access_selector=%u%caccess_parameters=", a->selector, sep);
	render_data(o, &a->params);
}

/* A field map: the decoded APDU as key=value strings. */
struct field {
	char key[40];
	struct out val;
};
static struct field fields[40];
static size_t n_fields;

static struct out *
field(const char *key)
{
	cr_assert(n_fields < sizeof(fields) / sizeof(fields[0]));
	struct field *f = &fields[n_fields++];
	snprintf(f->key, sizeof(f->key), "%s", key);
	f->val.n = 0;
	f->val.s[0] = '\0';
	return &f->val;
}

static void
fieldf(const char *key, const char *fmt, ...)
{
	struct out *o = field(key);
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(o->s, sizeof(o->s), fmt, ap);
	va_end(ap);
	o->n = strlen(o->s);
}

static void
fields_desc(const struct xdlms_desc *d, const char *idname)
{
	fieldf("class_id", "%u", d->class_id);
	render_obis(field("obis"), &d->obis);
	fieldf(idname, "%d", d->id);
}

static void
fields_access(const struct xdlms_access *a)
{
	if (!a->present) {
		fieldf("access_selection", "none");
		return;
	}
	fieldf("access_selector", "%u", a->selector);
	render_data(field("access_parameters"), &a->params);
}

static void
render_desc_item(struct out *o, const struct xdlms_item *it, const char *idname, bool access)
{
	emit(o, "{class_id=%u,obis=", it->desc.class_id);
	render_obis(o, &it->desc.obis);
	emit(o, ",%s=%d", idname, it->desc.id);
	if (access) {
		emit(o, ",");
		render_access(o, &it->access, ',');
	}
	emit(o, "}");
}

static void
render_get_result(struct out *o, const struct xdlms_get_result *g, char sep)
{
	if (g->is_data) {
		emit(o, "data%c", sep);
		render_data(o, &g->data);
	} else {
		emit(o, "data-access-result%c%s(%u)", sep, xdlms_dar_name(g->dar), g->dar);
	}
}

static void
fields_block(const struct xdlms_block *k)
{
	fieldf("last_block", "%s", k->last ? "true" : "false");
	fieldf("block_number", "%u", k->number);
	if (k->is_dar) {
		fieldf("result", "data-access-result:%s(%u)", xdlms_dar_name(k->dar), k->dar);
		return;
	}
	fieldf("result", "raw-data");
	fieldf("raw_len", "%u", k->raw_len);
	emit_hex(field("raw_hex"), k->raw, k->raw_len);
}

static void
fields_iip(uint8_t iip)
{
	fieldf("iip", "0x%02x", iip);
	fieldf("invoke_id", "%u", xdlms_iip_invoke_id(iip));
	fieldf("service_class", "%s", xdlms_iip_confirmed(iip) ? "confirmed" : "unconfirmed");
	fieldf("priority", "%s", xdlms_iip_high(iip) ? "high" : "normal");
	fieldf("reserved_bits", "0x%02x", iip & XDLMS_IIP_RESERVED);
}

static void
fields_value_list(const char *key, const struct xdlms_apdu *a)
{
	struct out *o = field(key);

	emit(o, "[");
	for (uint32_t i = 0; i < a->n_values; i++) {
		if (i)
			emit(o, ",");
		render_data(o, &a->items[i].value);
	}
	emit(o, "]");
}

/* Everything the corpus may state about an xDLMS APDU. */
static void
build_fields(const struct xdlms_apdu *a)
{
	struct out *o;

	n_fields = 0;
	if ((a->type & 0xff) != 0) /* the APDUs with a CHOICE carry an iip */
		fields_iip(a->iip);

	switch (a->type) {
	case XDLMS_GET_REQUEST_NORMAL:
		fields_desc(&a->desc, "attribute");
		fields_access(&a->access);
		break;
	case XDLMS_GET_REQUEST_NEXT:
	case XDLMS_ACTION_REQUEST_NEXT_PBLOCK:
		fieldf("block_number", "%u", a->block.number);
		break;
	case XDLMS_GET_REQUEST_WITH_LIST:
	case XDLMS_SET_REQUEST_WITH_LIST:
		fieldf("count", "%u", a->n_items);
		o = field("items");
		emit(o, "[");
		for (uint32_t i = 0; i < a->n_items; i++) {
			if (i)
				emit(o, ",");
			render_desc_item(o, &a->items[i], "attribute", true);
		}
		emit(o, "]");
		if (a->type == XDLMS_SET_REQUEST_WITH_LIST)
			fields_value_list("values", a);
		break;
	case XDLMS_SET_REQUEST_NORMAL:
		fields_desc(&a->desc, "attribute");
		fields_access(&a->access);
		render_data(field("value"), &a->value);
		break;
	case XDLMS_SET_REQUEST_WITH_FIRST_DATABLOCK:
		fields_desc(&a->desc, "attribute");
		fields_access(&a->access);
		fields_block(&a->block);
		break;
	case XDLMS_SET_REQUEST_WITH_DATABLOCK:
		fields_block(&a->block);
		break;
	case XDLMS_ACTION_REQUEST_NORMAL:
		fields_desc(&a->desc, "method");
		if (a->has_value)
			render_data(field("params"), &a->value);
		else
			fieldf("params", "none");
		break;
	case XDLMS_ACTION_REQUEST_WITH_LIST:
		fieldf("count", "%u", a->n_items);
		o = field("methods");
		emit(o, "[");
		for (uint32_t i = 0; i < a->n_items; i++) {
			if (i)
				emit(o, ",");
			render_desc_item(o, &a->items[i], "method", false);
		}
		emit(o, "]");
		fields_value_list("params", a);
		break;
	case XDLMS_GET_RESPONSE_NORMAL:
		if (a->get.is_data)
			render_data(field("data"), &a->get.data);
		else
			fieldf("data-access-result", "%s(%u)", xdlms_dar_name(a->get.dar),
			       a->get.dar);
		break;
	case XDLMS_GET_RESPONSE_WITH_DATABLOCK:
		fields_block(&a->block);
		break;
	case XDLMS_GET_RESPONSE_WITH_LIST:
		fieldf("count", "%u", a->n_items);
		o = field("results");
		emit(o, "[");
		for (uint32_t i = 0; i < a->n_items; i++) {
			if (i)
				emit(o, ",");
			render_get_result(o, &a->items[i].get, '=');
		}
		emit(o, "]");
		break;
	case XDLMS_SET_RESPONSE_NORMAL:
		fieldf("result", "%s(%u)", xdlms_dar_name(a->dar), a->dar);
		break;
	case XDLMS_SET_RESPONSE_WITH_LIST:
		fieldf("count", "%u", a->n_items);
		o = field("results");
		emit(o, "[");
		for (uint32_t i = 0; i < a->n_items; i++)
			emit(o, "%s%s(%u)", i ? "," : "", xdlms_dar_name(a->items[i].dar),
			     a->items[i].dar);
		emit(o, "]");
		break;
	case XDLMS_ACTION_RESPONSE_NORMAL:
		fieldf("result", "%s(%u)", xdlms_action_result_name(a->act.result), a->act.result);
		o = field("return");
		if (a->act.has_return)
			render_get_result(o, &a->act.ret, ':');
		else
			emit(o, "none");
		break;
	case XDLMS_EXCEPTION_RESPONSE:
		fieldf("state_error", "%s(%u)", xdlms_state_error_name(a->state_error),
		       a->state_error);
		fieldf("service_error", "%s(%u)", xdlms_service_error_name(a->service_error),
		       a->service_error);
		break;
	case XDLMS_CONFIRMED_SERVICE_ERROR:
		fieldf("choice", "%s(%u)", xdlms_cse_service_name(a->cse_service), a->cse_service);
		fieldf("service_error", "%s(%u)", xdlms_cse_error_name(a->cse_error), a->cse_error);
		fieldf("value", "%u(%s)", a->cse_value, xdlms_cse_value_name(a->cse_error, a->cse_value));
		break;
	case XDLMS_DATA_NOTIFICATION:
		fieldf("long_invoke_id_and_priority", "0x%08x", a->long_iip);
		if (a->has_time)
			emit_hex(field("date_time"), a->time, a->time_len);
		else
			fieldf("date_time", "absent(length0)");
		render_data(field("body"), &a->value);
		break;
	case XDLMS_EVENT_NOTIFICATION_REQUEST:
		if (a->has_time)
			emit_hex(field("time"), a->time, a->time_len);
		else
			fieldf("time", "absent");
		fields_desc(&a->desc, "attribute");
		render_data(field("value"), &a->value);
		break;
	default:
		cr_assert_fail("no renderer for type 0x%04x", a->type);
	}
}

static const char *
field_get(const char *key)
{
	for (size_t i = 0; i < n_fields; i++)
		if (strcmp(fields[i].key, key) == 0)
			return fields[i].val.s;
	return NULL;
}

/* Expected values may elide the middle of long hex with "...". */
static bool
value_matches(const char *want, const char *got)
{
	const char *dots = strstr(want, "...");

	if (dots == NULL)
		return strcmp(want, got) == 0;
	size_t pre = (size_t)(dots - want), post = strlen(dots + 3), gl = strlen(got);
	return gl >= pre + post && strncmp(got, want, pre) == 0 &&
	       strcmp(got + gl - post, dots + 3) == 0;
}

static bool
ignored_key(const char *k)
{
	return strncmp(k, "src_", 4) == 0 || strcmp(k, "note") == 0 || strcmp(k, "basis") == 0 ||
	       strcmp(k, "cross_ref") == 0;
}

/* Compare every key=value of a meaning with the rendered fields; returns
 * how many were compared. */
static int
check_meaning(const struct dlms_vector *v)
{
	static char key[64], want[16384];
	const char *p = strchr(v->meaning, ' ');
	int compared = 0;

	while (p && *p) {
		while (*p == ' ')
			p++;
		const char *eq = strchr(p, '='), *sp = strchr(p, ' ');
		if (eq == NULL)
			break;
		if (sp && sp < eq) { /* a value with a space in it (one src_note): skip */
			p = sp;
			continue;
		}
		size_t kl = (size_t)(eq - p);
		cr_assert(kl < sizeof(key));
		memcpy(key, p, kl);
		key[kl] = '\0';
		cr_assert_not_null(meaning_get(v->meaning, key, want, sizeof(want)));
		/* step over the value, brackets nested */
		int depth = 0;
		for (p = eq + 1; *p && (depth > 0 || *p != ' '); p++) {
			if (*p == '[' || *p == '{' || *p == '(')
				depth++;
			else if (*p == ']' || *p == '}' || *p == ')')
				depth--;
		}
		if (ignored_key(key))
			continue;
		const char *got = field_get(key);
		cr_assert_not_null(got, "%s: field %s not produced by the decoder", v->id, key);
		cr_assert(value_matches(want, got), "%s: %s=%s, decoded %s", v->id, key, want, got);
		compared++;
	}
	/* the corpus names reserved bits only when they are set */
	const char *rb = field_get("reserved_bits");
	if (rb && strcmp(rb, "0x00") != 0)
		cr_assert_not_null(strstr(v->meaning, "reserved_bits="), "%s: reserved bits %s unnoticed",
				   v->id, rb);
	return compared;
}

/* ---- helpers --------------------------------------------------------------- */

static bool
is_service_row(const struct dlms_vector *v)
{
	static const char *const other[] = {"aarq", "aare", "rlrq", "rlre", "initiate",
					     "conformance", "sel-access"};

	if (strcmp(v->layer, "apdu") != 0)
		return false;
	for (size_t i = 0; i < sizeof(other) / sizeof(other[0]); i++)
		if (strncmp(v->id, other[i], strlen(other[i])) == 0)
			return false;
	return true;
}

static void
clear_data(struct xdlms_data *d)
{
	d->raw = NULL;
	d->len = 0;
}

/* Drop the raw bytes of every Data so the encoder must use the nodes. */
static void
strip_raw(struct xdlms_apdu *a)
{
	clear_data(&a->access.params);
	clear_data(&a->value);
	clear_data(&a->get.data);
	clear_data(&a->act.ret.data);
	for (size_t i = 0; i < XDLMS_MAX_LIST; i++) {
		clear_data(&a->items[i].access.params);
		clear_data(&a->items[i].value);
		clear_data(&a->items[i].get.data);
		clear_data(&a->items[i].act.ret.data);
	}
}

static void
expect_reencode(const char *what, const struct xdlms_apdu *a, const uint8_t *want, size_t n)
{
	static uint8_t out[8192];
	struct mbuf b;
	ssize_t k;

	mbuf_init(&b, out, sizeof(out));
	k = xdlms_encode(a, &b);
	cr_assert_eq(k, (ssize_t)n, "%s: encode gave %zd, want %zu", what, k, n);
	cr_assert(memcmp(out, want, n) == 0, "%s: re-encoded %s", what, to_hex(out, n));
}

/* Every proper prefix must be refused as incomplete or malformed. */
static void
expect_prefixes_refused(const char *what, const uint8_t *p, size_t n)
{
	for (size_t k = 0; k < n; k++) {
		uint8_t *q = malloc(k ? k : 1);
		uint8_t *at = q + (k ? 0 : 1);
		memcpy(at, p, k);
		ssize_t r = xdlms_decode(at, k, &apdu2, nodes, NODES);
		cr_assert(r == METER_ENEEDMORE || r == METER_EMALFORMED,
			  "%s: prefix of %zu bytes gave %zd", what, k, r);
		r = xdlms_decode(at, k, &apdu2, NULL, 0);
		cr_assert(r == METER_ENEEDMORE || r == METER_EMALFORMED,
			  "%s: raw-only prefix of %zu bytes gave %zd", what, k, r);
		free(q);
	}
}

/* ---- the corpus ---------------------------------------------------------------- */

Test(xdlms, corpus_service_apdus)
{
	size_t n, rows = 0, compared = 0;
	const struct dlms_vector *v = dlms_vectors(&n);

	cr_assert_not_null(v);
	for (size_t i = 0; i < n; i++) {
		size_t len;
		uint8_t *p;
		ssize_t r;

		if (!is_service_row(&v[i]))
			continue;
		p = hex_tail(v[i].hex, &len);
		cr_assert_not_null(p, "%s: bad hex", v[i].id);

		r = xdlms_decode(p, len, &apdu, nodes, NODES);
		cr_assert_eq(r, (ssize_t)len, "%s: decode gave %zd (%s), want %zu", v[i].id, r,
			     r < 0 ? meter_strerror((int)r) : "short", len);
		cr_assert_eq(apdu.trailing, 0);
		build_fields(&apdu);
		compared += (size_t)check_meaning(&v[i]);

		expect_reencode(v[i].id, &apdu, p, len);
		strip_raw(&apdu);
		expect_reencode(v[i].id, &apdu, p, len);

		/* without a node array the APDU is delimited the same way */
		r = xdlms_decode(p, len, &apdu2, NULL, 0);
		cr_assert_eq(r, (ssize_t)len, "%s: raw-only decode gave %zd", v[i].id, r);
		cr_assert_eq(apdu2.n_nodes, 0);
		cr_assert_eq(apdu2.type, apdu.type);

		expect_prefixes_refused(v[i].id, p, len);
		tail_free(p);
		rows++;
	}
	cr_assert_eq(rows, 52, "expected 52 xDLMS service rows, found %zu", rows);
	cr_log_info("xdlms corpus: %zu rows, %zu fields compared", rows, compared);
	cr_assert_gt(compared, 300, "only %zu fields compared", compared);
}

/* Trailing bytes after a complete APDU are reported, not refused. */
Test(xdlms, trailing_bytes_reported)
{
	const struct dlms_vector *v = dlms_vector("get-resp-normal-dlu");
	char hex[256];
	size_t len;

	cr_assert_not_null(v);
	snprintf(hex, sizeof(hex), "%s0000ffee", v->hex);
	uint8_t *p = hex_tail(hex, &len);
	ssize_t r = xdlms_decode(p, len, &apdu, nodes, NODES);
	cr_assert_eq(r, (ssize_t)(len - 4));
	cr_assert_eq(apdu.trailing, 4);
	cr_assert_eq(apdu.type, XDLMS_GET_RESPONSE_NORMAL);
	cr_assert_eq(apdu.get.data.node->v.u, 5009);
	tail_free(p);
}

/* Selective-access rows: the bare descriptor, read back into structs. */
Test(xdlms, corpus_selective_access)
{
	static const char *const ids[] = {"sel-access-range-descriptor",
					  "sel-access-range-with-columns",
					  "sel-access-entry-descriptor"};
	char want[2048];

	for (size_t i = 0; i < 3; i++) {
		const struct dlms_vector *v = dlms_vector(ids[i]);
		struct xdlms_access acc;
		size_t len, used;
		uint8_t out[512];
		struct mbuf b;
		struct out o = {.n = 0};

		cr_assert_not_null(v, "%s missing", ids[i]);
		uint8_t *p = hex_tail(v->hex, &len);
		ssize_t r = xdlms_decode_access(p, len, &acc, nodes, NODES, &used);
		cr_assert_eq(r, (ssize_t)len, "%s: %zd", ids[i], r);
		cr_assert(acc.present);
		cr_assert_eq(acc.params.n_nodes, used);

		cr_assert_not_null(meaning_get(v->meaning, "access_selector", want, sizeof(want)));
		mbuf_init(&b, out, sizeof(out));
		mbuf_u8(&b, acc.selector);
		if (acc.selector == XDLMS_ACCESS_RANGE) {
			struct xdlms_range rg;
			struct cosem_datetime from, to;

			cr_assert_str_eq(want, "1(range_descriptor)");
			cr_assert_eq(xdlms_range_from_nodes(acc.params.node, &rg), 0);
			/* restricting object as the corpus writes it */
			emit(&o, "structure[long-unsigned:%u,octet-string:", rg.restricting.class_id);
			emit_hex(&o, rg.restricting.obis.v, 6);
			emit(&o, ",integer:%d,long-unsigned:%u]", rg.restricting.attribute,
			     rg.restricting.data_index);
			meaning_get(v->meaning, "restricting_object", want, sizeof(want));
			cr_assert_str_eq(o.s, want);
			/* from/to are octet-strings(12) the corpus reads as date-time */
			cr_assert_eq(rg.from->tag, AXDR_OCTET_STRING);
			cr_assert_eq(rg.from->len, 12);
			o.n = 0;
			emit(&o, "date-time:");
			emit_hex(&o, rg.from->ptr, 12);
			meaning_get(v->meaning, "from", want, sizeof(want));
			cr_assert_str_eq(o.s, want);
			o.n = 0;
			emit(&o, "date-time:");
			emit_hex(&o, rg.to->ptr, 12);
			meaning_get(v->meaning, "to", want, sizeof(want));
			cr_assert_str_eq(o.s, want);
			o.n = 0;
			render_node(&o, rg.selected);
			meaning_get(v->meaning, "selected_values", want, sizeof(want));
			cr_assert_str_eq(o.s, want);

			/* rebuild from structs: date-times and capture objects */
			struct xdlms_capture_obj cols[4];
			cr_assert_leq(rg.n_selected, 4);
			for (uint32_t k = 0; k < rg.n_selected; k++)
				cr_assert_eq(xdlms_capture_obj_from_node(axdr_child(rg.selected, k),
									 &cols[k]),
					     0);
			cr_assert_eq(cosem_datetime_decode(rg.from->ptr, &from), 0);
			cr_assert_eq(cosem_datetime_decode(rg.to->ptr, &to), 0);
			xdlms_put_range(&b, &rg.restricting, &from, &to, cols, rg.n_selected);
		} else {
			struct xdlms_entry e;

			cr_assert_str_eq(want, "2(entry_descriptor)");
			cr_assert_eq(xdlms_entry_from_nodes(acc.params.node, &e), 0);
			cr_assert_eq(e.from_entry, 0);
			cr_assert_eq(e.to_entry, 5);
			cr_assert_eq(e.from_value, 0);
			cr_assert_eq(e.to_value, 0);
			meaning_get(v->meaning, "parameters", want, sizeof(want));
			cr_assert_str_eq(want, "structure[double-long-unsigned:0(from_entry),"
					       "double-long-unsigned:5(to_entry),long-unsigned:0("
					       "from_selected_value),long-unsigned:0(to_selected_value)]");
			xdlms_put_entry(&b, &e);
		}
		cr_assert_eq(b.err, 0);
		cr_assert_eq(b.len, len, "%s: rebuilt %s", ids[i], to_hex(out, b.len));
		cr_assert(memcmp(out, p, len) == 0, "%s: rebuilt %s", ids[i], to_hex(out, b.len));
		for (size_t k = 0; k < len; k++) {
			uint8_t *q = malloc(k + 1);
			memcpy(q + 1, p, k);
			r = xdlms_decode_access(q + 1, k, &acc, nodes, NODES, &used);
			free(q);
			cr_assert(r == METER_ENEEDMORE || r == METER_EMALFORMED, "%s: %zu bytes: %zd",
				  ids[i], k, r);
		}
		tail_free(p);
	}
}

/* The range descriptor inside a real GET request reads the same way. */
Test(xdlms, range_inside_get_request)
{
	const struct dlms_vector *v = dlms_vector("get-req-range-descriptor");
	struct xdlms_range rg;
	size_t len;

	cr_assert_not_null(v);
	uint8_t *p = hex_tail(v->hex, &len);
	cr_assert_eq(xdlms_decode(p, len, &apdu, nodes, NODES), (ssize_t)len);
	cr_assert_eq(apdu.access.selector, XDLMS_ACCESS_RANGE);
	cr_assert_eq(xdlms_range_from_nodes(apdu.access.params.node, &rg), 0);
	cr_assert_eq(rg.restricting.class_id, 8);
	cr_assert(obis_eq(&rg.restricting.obis, &OBIS(0, 0, 1, 0, 0, 255)));
	cr_assert_eq(rg.restricting.attribute, 2);
	cr_assert_eq(rg.n_selected, 0);
	/* and an entry descriptor is not a range */
	cr_assert_eq(xdlms_entry_from_nodes(apdu.access.params.node, &(struct xdlms_entry){0}),
		     METER_EMALFORMED);
	tail_free(p);
}

/* Ciphered rows: only the framing is this module's business. */
Test(xdlms, corpus_ciphered_framing)
{
	size_t n, seen = 0;
	const struct dlms_vector *v = dlms_vectors(&n);
	char want[4096], got[64];

	for (size_t i = 0; i < n; i++) {
		size_t len;
		char type[64];

		if (strcmp(v[i].layer, "cipher") != 0)
			continue;
		meaning_type(v[i].meaning, type, sizeof(type));
		if (strcmp(type, "GlobalCiphering") != 0 && strcmp(type, "GeneralGloCiphering") != 0)
			continue;
		uint8_t *p = hex_tail(v[i].hex, &len);
		ssize_t r = xdlms_decode(p, len, &apdu, nodes, NODES);
		cr_assert_eq(r, (ssize_t)len, "%s: %zd", v[i].id, r);
		cr_assert_eq(apdu.type, XDLMS_CIPHERED);
		cr_assert_eq(apdu.cipher.tag, p[0]);
		if (meaning_get(v[i].meaning, "security_control", want, sizeof(want))) {
			snprintf(got, sizeof(got), "0x%02x", apdu.cipher.security_control);
			cr_assert(strncmp(want, got, 4) == 0, "%s: SC %s vs %s", v[i].id, want, got);
		}
		if (meaning_get(v[i].meaning, "frame_counter", want, sizeof(want)) ||
		    meaning_get(v[i].meaning, "invocation_counter", want, sizeof(want))) {
			snprintf(got, sizeof(got), "0x%08x", apdu.cipher.invocation_counter);
			cr_assert_str_eq(want, got, "%s", v[i].id);
		}
		if (meaning_get(v[i].meaning, "length", want, sizeof(want)))
			cr_assert_eq(strtoul(want, NULL, 10), apdu.cipher.payload_len + 5, "%s",
				     v[i].id);
		if (p[0] == XDLMS_TAG_GENERAL_GLO_CIPHERING &&
		    meaning_get(v[i].meaning, "system_title", want, sizeof(want))) {
			if (want[0] == '-')
				cr_assert_eq(apdu.cipher.system_title_len, 0);
			else
				cr_assert_str_eq(want, to_hex(apdu.cipher.system_title,
							      apdu.cipher.system_title_len));
		}
		cr_assert_str_neq(xdlms_tag_name(p[0]), "unknown");
		expect_prefixes_refused(v[i].id, p, len);
		tail_free(p);
		seen++;
	}
	cr_assert_geq(seen, 14, "only %zu ciphered rows", seen);
}

/* ---- generated APDUs of every type ------------------------------------------ */

static uint8_t scratch[4096];

/* Tagged Data for the generated APDUs, from the A-XDR writers. */
static struct xdlms_data
mk_data(int kind)
{
	static size_t used;
	struct mbuf b;

	if (used > sizeof(scratch) - 256)
		used = 0;
	mbuf_init(&b, scratch + used, 256);
	switch (kind % 4) {
	case 0:
		axdr_put_double_long_unsigned(&b, 123456u + (uint32_t)kind);
		break;
	case 1:
		axdr_put_structure(&b, 3);
		axdr_put_octet_string(&b, "\x01\x00\x01\x08\x00\xff", 6);
		axdr_put_long(&b, -3);
		axdr_put_enum(&b, 30);
		break;
	case 2:
		axdr_put_visible_string(&b, "KAM382", 6);
		break;
	default:
		axdr_put_array(&b, 2);
		axdr_put_boolean(&b, true);
		axdr_put_null(&b);
		break;
	}
	cr_assert_eq(b.err, 0);
	used += b.len;
	return xdlms_data_raw(b.p, (uint32_t)b.len);
}

static struct xdlms_desc
mk_desc(int k)
{
	return (struct xdlms_desc){.class_id = (uint16_t)(3 + k),
				   .obis = OBIS(1, 0, 1, 8, (uint8_t)k, 255),
				   .id = (int8_t)(2 + k)};
}

static struct xdlms_access
mk_access(int k)
{
	static uint8_t buf[2][128];
	struct mbuf b;
	struct xdlms_access a = {.present = k != 0, .selector = (uint8_t)k};

	if (k == 0)
		return a;
	mbuf_init(&b, buf[k - 1], sizeof(buf[0]));
	if (k == XDLMS_ACCESS_ENTRY) {
		xdlms_put_entry(&b, &(struct xdlms_entry){1, 96, 1, 0});
	} else {
		struct xdlms_capture_obj clock = {8, OBIS(0, 0, 1, 0, 0, 255), 2, 0};
		struct cosem_datetime f = {2026, 11, 1, 7, 0, 0, 0, 0, -60, 0};
		struct cosem_datetime t = {2026, 11, 2, 1, 0, 0, 0, 0, -60, 0};
		xdlms_put_range(&b, &clock, &f, &t, &clock, 1);
	}
	cr_assert_eq(b.err, 0);
	a.params = xdlms_data_raw(b.p, (uint32_t)b.len);
	return a;
}

static const uint8_t blob[300] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};

static void
fill(struct xdlms_apdu *a, uint16_t type, int variant)
{
	memset(a, 0, sizeof(*a));
	a->type = type;
	a->iip = xdlms_iip((uint8_t)(variant + 1), true, variant & 1);
	a->desc = mk_desc(variant);
	a->block.last = (uint8_t)(variant & 1);
	a->block.number = 0x01020304u + (uint32_t)variant;
	a->block.raw = blob;
	a->block.raw_len = variant ? 300 : 0; /* long form length and empty */

	switch (type) {
	case XDLMS_GET_REQUEST_NORMAL:
	case XDLMS_SET_REQUEST_WITH_FIRST_DATABLOCK:
		a->access = mk_access(variant % 3);
		break;
	case XDLMS_SET_REQUEST_NORMAL:
		a->access = mk_access(variant % 3);
		a->has_value = true;
		a->value = mk_data(variant);
		break;
	case XDLMS_GET_REQUEST_WITH_LIST:
	case XDLMS_SET_REQUEST_WITH_LIST:
	case XDLMS_SET_REQUEST_WITH_LIST_AND_FIRST_DATABLOCK:
	case XDLMS_ACTION_REQUEST_WITH_LIST:
	case XDLMS_ACTION_REQUEST_WITH_LIST_AND_FIRST_PBLOCK:
		a->n_items = variant ? XDLMS_MAX_LIST : 1;
		for (uint32_t i = 0; i < a->n_items; i++) {
			a->items[i].desc = mk_desc((int)i);
			if (type >> 8 != XDLMS_TAG_ACTION_REQUEST)
				a->items[i].access = mk_access((int)i % 3);
		}
		if (type == XDLMS_SET_REQUEST_WITH_LIST || type == XDLMS_ACTION_REQUEST_WITH_LIST) {
			a->n_values = a->n_items;
			for (uint32_t i = 0; i < a->n_values; i++)
				a->items[i].value = mk_data((int)i);
		}
		break;
	case XDLMS_ACTION_REQUEST_NORMAL:
		a->has_value = variant != 0;
		if (a->has_value)
			a->value = mk_data(variant);
		break;
	case XDLMS_GET_RESPONSE_NORMAL:
		a->get.is_data = variant != 0;
		if (variant)
			a->get.data = mk_data(variant);
		else
			a->get.dar = XDLMS_DAR_OBJECT_UNAVAILABLE;
		break;
	case XDLMS_GET_RESPONSE_WITH_DATABLOCK:
		a->block.is_dar = variant == 2;
		if (a->block.is_dar) {
			a->block.dar = XDLMS_DAR_LONG_GET_ABORTED;
			a->block.raw = NULL;
			a->block.raw_len = 0;
		}
		break;
	case XDLMS_GET_RESPONSE_WITH_LIST:
		a->n_items = variant ? 5 : 0;
		for (uint32_t i = 0; i < a->n_items; i++) {
			a->items[i].get.is_data = i % 2 == 0;
			if (i % 2 == 0)
				a->items[i].get.data = mk_data((int)i);
			else
				a->items[i].get.dar = XDLMS_DAR_READ_WRITE_DENIED;
		}
		break;
	case XDLMS_SET_RESPONSE_NORMAL:
	case XDLMS_SET_RESPONSE_LAST_DATABLOCK:
		a->dar = variant ? XDLMS_DAR_TYPE_UNMATCHED : XDLMS_DAR_SUCCESS;
		break;
	case XDLMS_SET_RESPONSE_LAST_DATABLOCK_WITH_LIST:
	case XDLMS_SET_RESPONSE_WITH_LIST:
		a->n_items = 3;
		for (uint32_t i = 0; i < 3; i++)
			a->items[i].dar = (uint8_t)(i * 3);
		break;
	case XDLMS_ACTION_RESPONSE_NORMAL:
		a->act.result = variant ? XDLMS_AR_OTHER_REASON : XDLMS_AR_SUCCESS;
		a->act.has_return = variant != 0;
		a->act.ret.is_data = variant == 1;
		if (variant == 1)
			a->act.ret.data = mk_data(3);
		else
			a->act.ret.dar = XDLMS_DAR_HARDWARE_FAULT;
		if (!a->act.has_return)
			memset(&a->act.ret, 0, sizeof(a->act.ret));
		break;
	case XDLMS_ACTION_RESPONSE_WITH_LIST:
		a->n_items = 4;
		for (uint32_t i = 0; i < 4; i++) {
			a->items[i].act.result = (uint8_t)i;
			a->items[i].act.has_return = i >= 2;
			a->items[i].act.ret.is_data = i == 3;
			if (i == 3)
				a->items[i].act.ret.data = mk_data(1);
			else if (i == 2)
				a->items[i].act.ret.dar = XDLMS_DAR_SCOPE_OF_ACCESS_VIOLATED;
		}
		break;
	case XDLMS_EVENT_NOTIFICATION_REQUEST:
	case XDLMS_DATA_NOTIFICATION:
		a->iip = 0;
		a->has_time = variant != 0;
		if (a->has_time) {
			a->time = (const uint8_t *)"\x07\xea\x0b\x15\x06\x15\x1e\x00\x00\xff\xc4\x00";
			a->time_len = 12;
		}
		a->long_iip = type == XDLMS_DATA_NOTIFICATION ? 0xc0000017u + (uint32_t)variant : 0;
		a->has_value = true;
		a->value = mk_data(variant + 1);
		if (type == XDLMS_DATA_NOTIFICATION)
			a->desc = (struct xdlms_desc){0};
		break;
	case XDLMS_EXCEPTION_RESPONSE:
		a->iip = 0;
		a->desc = (struct xdlms_desc){0};
		a->state_error = XDLMS_STATE_SERVICE_NOT_ALLOWED;
		a->service_error = variant ? XDLMS_SERVICE_INVOCATION_COUNTER_ERROR
					   : XDLMS_SERVICE_PDU_TOO_LONG;
		a->invocation_counter = variant ? 0xdeadbeefu : 0;
		break;
	case XDLMS_CONFIRMED_SERVICE_ERROR:
		a->iip = 0;
		a->desc = (struct xdlms_desc){0};
		a->cse_service = XDLMS_CSE_READ;
		a->cse_error = XDLMS_CSE_ACCESS;
		a->cse_value = (uint8_t)variant;
		break;
	}
}

/* The members a type uses (xdlms.h), so the others can be cleared before
 * comparing a generated APDU with its decode. */
static void
keep_used(struct xdlms_apdu *a)
{
	uint16_t t = a->type;
	struct xdlms_apdu k;

	memset(&k, 0, sizeof(k));
	k.type = t;
	k.iip = a->iip;
	switch (t) {
	case XDLMS_GET_REQUEST_NORMAL:
		k.desc = a->desc;
		k.access = a->access;
		break;
	case XDLMS_GET_REQUEST_NEXT:
	case XDLMS_ACTION_REQUEST_NEXT_PBLOCK:
	case XDLMS_SET_RESPONSE_DATABLOCK:
	case XDLMS_ACTION_RESPONSE_NEXT_PBLOCK:
		k.block.number = a->block.number;
		break;
	case XDLMS_SET_REQUEST_NORMAL:
		k.desc = a->desc;
		k.access = a->access;
		k.has_value = true;
		k.value = a->value;
		break;
	case XDLMS_SET_REQUEST_WITH_FIRST_DATABLOCK:
		k.desc = a->desc;
		k.access = a->access;
		k.block = a->block;
		break;
	case XDLMS_SET_REQUEST_WITH_DATABLOCK:
	case XDLMS_ACTION_REQUEST_WITH_PBLOCK:
	case XDLMS_ACTION_RESPONSE_WITH_PBLOCK:
	case XDLMS_GET_RESPONSE_WITH_DATABLOCK:
		k.block = a->block;
		break;
	case XDLMS_ACTION_REQUEST_WITH_FIRST_PBLOCK:
		k.desc = a->desc;
		k.block = a->block;
		break;
	case XDLMS_ACTION_REQUEST_NORMAL:
		k.desc = a->desc;
		k.has_value = a->has_value;
		k.value = a->value;
		break;
	case XDLMS_GET_RESPONSE_NORMAL:
		k.get = a->get;
		break;
	case XDLMS_SET_RESPONSE_NORMAL:
		k.dar = a->dar;
		break;
	case XDLMS_SET_RESPONSE_LAST_DATABLOCK:
		k.dar = a->dar;
		k.block.number = a->block.number;
		break;
	case XDLMS_ACTION_RESPONSE_NORMAL:
		k.act = a->act;
		break;
	case XDLMS_EVENT_NOTIFICATION_REQUEST:
	case XDLMS_DATA_NOTIFICATION:
		k.iip = 0;
		k.desc = a->desc;
		k.long_iip = a->long_iip;
		k.has_time = a->has_time;
		k.time = a->time;
		k.time_len = a->time_len;
		k.has_value = true;
		k.value = a->value;
		break;
	case XDLMS_EXCEPTION_RESPONSE:
		k.state_error = a->state_error;
		k.service_error = a->service_error;
		k.invocation_counter = a->invocation_counter;
		break;
	case XDLMS_CONFIRMED_SERVICE_ERROR:
		k.cse_service = a->cse_service;
		k.cse_error = a->cse_error;
		k.cse_value = a->cse_value;
		break;
	default: /* the lists */
		k.n_items = a->n_items;
		k.n_values = a->n_values;
		memcpy(k.items, a->items, sizeof(k.items));
		if (t == XDLMS_SET_REQUEST_WITH_LIST_AND_FIRST_DATABLOCK ||
		    t == XDLMS_ACTION_REQUEST_WITH_LIST_AND_FIRST_PBLOCK)
			k.block = a->block;
		if (t == XDLMS_SET_RESPONSE_LAST_DATABLOCK_WITH_LIST)
			k.block.number = a->block.number;
		break;
	}
	*a = k;
}

static void
same_data(const char *what, const struct xdlms_data *a, const struct xdlms_data *b)
{
	cr_assert_eq(a->len, b->len, "%s: Data length %u vs %u", what, a->len, b->len);
	if (a->len)
		cr_assert(memcmp(a->raw, b->raw, a->len) == 0, "%s: Data bytes differ", what);
}

static void
same_access(const char *what, const struct xdlms_access *a, const struct xdlms_access *b)
{
	cr_assert_eq(a->present, b->present, "%s: access presence", what);
	cr_assert_eq(a->selector, b->selector, "%s: selector", what);
	same_data(what, &a->params, &b->params);
}

static void
same_get(const char *what, const struct xdlms_get_result *a, const struct xdlms_get_result *b)
{
	cr_assert_eq(a->is_data, b->is_data, "%s: get result choice", what);
	cr_assert_eq(a->dar, b->dar, "%s: dar", what);
	same_data(what, &a->data, &b->data);
}

static void
same_desc(const char *what, const struct xdlms_desc *a, const struct xdlms_desc *b)
{
	cr_assert_eq(a->class_id, b->class_id, "%s: class", what);
	cr_assert(obis_eq(&a->obis, &b->obis), "%s: obis", what);
	cr_assert_eq(a->id, b->id, "%s: id", what);
}

static void
same_apdu(const char *w, const struct xdlms_apdu *a, const struct xdlms_apdu *b)
{
	cr_assert_eq(a->type, b->type, "%s: type", w);
	cr_assert_eq(a->iip, b->iip, "%s: iip", w);
	same_desc(w, &a->desc, &b->desc);
	same_access(w, &a->access, &b->access);
	cr_assert_eq(a->has_value, b->has_value, "%s: has_value", w);
	same_data(w, &a->value, &b->value);
	cr_assert_eq(a->block.last, b->block.last, "%s: last", w);
	cr_assert_eq(a->block.number, b->block.number, "%s: block number", w);
	cr_assert_eq(a->block.is_dar, b->block.is_dar, "%s: block choice", w);
	cr_assert_eq(a->block.dar, b->block.dar, "%s: block dar", w);
	cr_assert_eq(a->block.raw_len, b->block.raw_len, "%s: raw len", w);
	if (a->block.raw_len)
		cr_assert(memcmp(a->block.raw, b->block.raw, a->block.raw_len) == 0, "%s: raw", w);
	same_get(w, &a->get, &b->get);
	cr_assert_eq(a->act.result, b->act.result, "%s: action result", w);
	cr_assert_eq(a->act.has_return, b->act.has_return, "%s: has_return", w);
	same_get(w, &a->act.ret, &b->act.ret);
	cr_assert_eq(a->dar, b->dar, "%s: dar", w);
	cr_assert_eq(a->n_items, b->n_items, "%s: n_items", w);
	cr_assert_eq(a->n_values, b->n_values, "%s: n_values", w);
	for (uint32_t i = 0; i < XDLMS_MAX_LIST; i++) {
		const struct xdlms_item *x = &a->items[i], *y = &b->items[i];
		same_desc(w, &x->desc, &y->desc);
		same_access(w, &x->access, &y->access);
		same_data(w, &x->value, &y->value);
		same_get(w, &x->get, &y->get);
		cr_assert_eq(x->act.result, y->act.result, "%s: item %u result", w, i);
		cr_assert_eq(x->act.has_return, y->act.has_return, "%s: item %u", w, i);
		same_get(w, &x->act.ret, &y->act.ret);
		cr_assert_eq(x->dar, y->dar, "%s: item %u dar", w, i);
	}
	cr_assert_eq(a->long_iip, b->long_iip, "%s: long iip", w);
	cr_assert_eq(a->has_time, b->has_time, "%s: has_time", w);
	cr_assert_eq(a->time_len, b->time_len, "%s: time", w);
	if (a->time_len)
		cr_assert(memcmp(a->time, b->time, a->time_len) == 0);
	cr_assert_eq(a->state_error, b->state_error, "%s", w);
	cr_assert_eq(a->service_error, b->service_error, "%s", w);
	cr_assert_eq(a->invocation_counter, b->invocation_counter, "%s", w);
	cr_assert_eq(a->cse_service, b->cse_service, "%s", w);
	cr_assert_eq(a->cse_error, b->cse_error, "%s", w);
	cr_assert_eq(a->cse_value, b->cse_value, "%s", w);
}

static const uint16_t all_types[] = {
	XDLMS_GET_REQUEST_NORMAL,
	XDLMS_GET_REQUEST_NEXT,
	XDLMS_GET_REQUEST_WITH_LIST,
	XDLMS_SET_REQUEST_NORMAL,
	XDLMS_SET_REQUEST_WITH_FIRST_DATABLOCK,
	XDLMS_SET_REQUEST_WITH_DATABLOCK,
	XDLMS_SET_REQUEST_WITH_LIST,
	XDLMS_SET_REQUEST_WITH_LIST_AND_FIRST_DATABLOCK,
	XDLMS_EVENT_NOTIFICATION_REQUEST,
	XDLMS_ACTION_REQUEST_NORMAL,
	XDLMS_ACTION_REQUEST_NEXT_PBLOCK,
	XDLMS_ACTION_REQUEST_WITH_LIST,
	XDLMS_ACTION_REQUEST_WITH_FIRST_PBLOCK,
	XDLMS_ACTION_REQUEST_WITH_LIST_AND_FIRST_PBLOCK,
	XDLMS_ACTION_REQUEST_WITH_PBLOCK,
	XDLMS_GET_RESPONSE_NORMAL,
	XDLMS_GET_RESPONSE_WITH_DATABLOCK,
	XDLMS_GET_RESPONSE_WITH_LIST,
	XDLMS_SET_RESPONSE_NORMAL,
	XDLMS_SET_RESPONSE_DATABLOCK,
	XDLMS_SET_RESPONSE_LAST_DATABLOCK,
	XDLMS_SET_RESPONSE_LAST_DATABLOCK_WITH_LIST,
	XDLMS_SET_RESPONSE_WITH_LIST,
	XDLMS_ACTION_RESPONSE_NORMAL,
	XDLMS_ACTION_RESPONSE_WITH_PBLOCK,
	XDLMS_ACTION_RESPONSE_WITH_LIST,
	XDLMS_ACTION_RESPONSE_NEXT_PBLOCK,
	XDLMS_EXCEPTION_RESPONSE,
	XDLMS_CONFIRMED_SERVICE_ERROR,
	XDLMS_DATA_NOTIFICATION,
};
#define N_TYPES (sizeof(all_types) / sizeof(all_types[0]))

Test(xdlms, generated_round_trips_every_type)
{
	static uint8_t wire[16384];
	static struct xdlms_apdu orig;
	size_t done = 0;

	for (size_t t = 0; t < N_TYPES; t++) {
		for (int variant = 0; variant < 3; variant++) {
			struct mbuf b;
			char what[96];
			ssize_t n, r;

			fill(&orig, all_types[t], variant);
			keep_used(&orig);
			snprintf(what, sizeof(what), "%s/%d", xdlms_type_name(orig.type), variant);
			mbuf_init(&b, wire, sizeof(wire));
			n = xdlms_encode(&orig, &b);
			cr_assert_gt(n, 0, "%s: encode %zd", what, n);
			cr_assert_eq(wire[0], orig.type >> 8, "%s: tag", what);

			uint8_t *p = malloc((size_t)n);
			memcpy(p, wire, (size_t)n);
			r = xdlms_decode(p, (size_t)n, &apdu, nodes, NODES);
			cr_assert_eq(r, n, "%s: decode %zd of %zd (%s)", what, r, n,
				     r < 0 ? meter_strerror((int)r) : "");
			same_apdu(what, &orig, &apdu);
			expect_reencode(what, &apdu, p, (size_t)n);
			strip_raw(&apdu);
			expect_reencode(what, &apdu, p, (size_t)n);
			expect_prefixes_refused(what, p, (size_t)n);

			/* too small a buffer: ENOSPC, never a partial success */
			for (size_t cap = 0; cap < (size_t)n; cap += 1 + cap / 4) {
				mbuf_init(&b, wire, cap);
				cr_assert_eq(xdlms_encode(&orig, &b), METER_ENOSPC, "%s cap %zu", what,
					     cap);
			}
			free(p);
			done++;
		}
	}
	cr_assert_eq(done, 3 * N_TYPES);
}

Test(xdlms, builders_match_struct_encoding)
{
	uint8_t a[256], b2[256];
	struct mbuf b, c;
	struct xdlms_desc d = {70, OBIS(0, 0, 96, 3, 10, 255), 1};
	uint8_t zero[2] = {AXDR_INTEGER, 0};
	struct xdlms_data p = xdlms_data_raw(zero, 2);
	const struct dlms_vector *v = dlms_vector("action-req-disconnect");
	size_t len;

	/* the remote-disconnect request of the corpus, from the builder */
	cr_assert_not_null(v);
	uint8_t *want = hex_tail(v->hex, &len);
	mbuf_init(&b, a, sizeof(a));
	cr_assert_eq(xdlms_put_action_request(&b, xdlms_iip(1, true, true), &d, &p), (ssize_t)len);
	cr_assert(memcmp(a, want, len) == 0, "%s", to_hex(a, b.len));
	tail_free(want);

	v = dlms_vector("get-req-next-3");
	want = hex_tail(v->hex, &len);
	mbuf_init(&b, a, sizeof(a));
	cr_assert_eq(xdlms_put_get_request_next(&b, 0xc1, 3), (ssize_t)len);
	cr_assert(memcmp(a, want, len) == 0);
	tail_free(want);

	v = dlms_vector("get-req-normal");
	want = hex_tail(v->hex, &len);
	mbuf_init(&b, a, sizeof(a));
	d = (struct xdlms_desc){1, OBIS(0, 0, 43, 1, 0, 255), 2};
	cr_assert_eq(xdlms_put_get_request(&b, 0xc1, &d, NULL), (ssize_t)len);
	cr_assert(memcmp(a, want, len) == 0);
	tail_free(want);

	v = dlms_vector("get-resp-normal-error");
	want = hex_tail(v->hex, &len);
	mbuf_init(&b, a, sizeof(a));
	cr_assert_eq(xdlms_put_get_response_dar(&b, 0xc1, XDLMS_DAR_HARDWARE_FAULT), (ssize_t)len);
	cr_assert(memcmp(a, want, len) == 0);
	tail_free(want);

	v = dlms_vector("set-resp-normal");
	want = hex_tail(v->hex, &len);
	mbuf_init(&b, a, sizeof(a));
	cr_assert_eq(xdlms_put_set_response(&b, 0xc1, XDLMS_DAR_SUCCESS), (ssize_t)len);
	cr_assert(memcmp(a, want, len) == 0);
	tail_free(want);

	v = dlms_vector("action-resp-success");
	want = hex_tail(v->hex, &len);
	mbuf_init(&b, a, sizeof(a));
	cr_assert_eq(xdlms_put_action_response(&b, 0xc0, XDLMS_AR_SUCCESS, NULL), (ssize_t)len);
	cr_assert(memcmp(a, want, len) == 0);
	tail_free(want);

	v = dlms_vector("exception-response-1");
	want = hex_tail(v->hex, &len);
	mbuf_init(&b, a, sizeof(a));
	cr_assert_eq(xdlms_put_exception_response(&b, XDLMS_STATE_SERVICE_NOT_ALLOWED,
						  XDLMS_SERVICE_NOT_SUPPORTED),
		     (ssize_t)len);
	cr_assert(memcmp(a, want, len) == 0);
	tail_free(want);

	/* the clock SET from the corpus, value built with the A-XDR writer */
	v = dlms_vector("set-req-normal-clock");
	want = hex_tail(v->hex, &len);
	struct cosem_datetime dt;
	cr_assert_eq(cosem_datetime_decode(want + 15, &dt), 0);
	mbuf_init(&c, b2, sizeof(b2));
	axdr_put_datetime_octets(&c, &dt);
	struct xdlms_data val = xdlms_data_raw(b2, (uint32_t)c.len);
	mbuf_init(&b, a, sizeof(a));
	d = (struct xdlms_desc){8, OBIS(0, 0, 1, 0, 0, 255), 2};
	cr_assert_eq(xdlms_put_set_request(&b, 0xc1, &d, NULL, &val), (ssize_t)len);
	cr_assert(memcmp(a, want, len) == 0, "%s", to_hex(a, b.len));
	tail_free(want);

	/* GET response carrying Data */
	v = dlms_vector("get-resp-normal-dlu");
	want = hex_tail(v->hex, &len);
	mbuf_init(&c, b2, sizeof(b2));
	axdr_put_double_long_unsigned(&c, 5009);
	val = xdlms_data_raw(b2, (uint32_t)c.len);
	mbuf_init(&b, a, sizeof(a));
	cr_assert_eq(xdlms_put_get_response_data(&b, 0xc1, &val), (ssize_t)len);
	cr_assert(memcmp(a, want, len) == 0);
	tail_free(want);

	/* missing mandatory values */
	mbuf_init(&b, a, sizeof(a));
	cr_assert_eq(xdlms_put_set_request(&b, 0xc1, &d, NULL, NULL), METER_EINVAL);
	cr_assert_eq(xdlms_put_get_response_data(&b, 0xc1, NULL), METER_EINVAL);
}

/* ---- refusals ------------------------------------------------------------------ */

static ssize_t
decode_hex(const char *hex, struct axdr_node *ns, size_t cap)
{
	size_t len;
	uint8_t *p = hex_tail(hex, &len);
	cr_assert_not_null(p, "bad hex %s", hex);
	ssize_t r = xdlms_decode(p, len, &apdu, ns, cap);
	tail_free(p);
	return r;
}

Test(xdlms, refusals)
{
	static const struct {
		const char *hex;
		ssize_t want;
	} t[] = {
		{"c004c1", METER_EMALFORMED},			/* GET-Request CHOICE 4 */
		{"c400c1", METER_EMALFORMED},			/* GET-Response CHOICE 0 */
		{"c506c100", METER_EMALFORMED},			/* SET-Response CHOICE 6 */
		{"c707c100", METER_EMALFORMED},			/* ACTION-Response CHOICE 7 */
		{"c401c102", METER_EMALFORMED},			/* Get-Data-Result CHOICE 2 */
		{"c001c1000100002b0100ff0202", METER_EMALFORMED}, /* access flag 2 */
		{"c701c10002", METER_EMALFORMED},		/* return-parameters flag 2 */
		{"c402c1000000000102", METER_EMALFORMED},	/* DataBlock-G CHOICE 2 */
		{"c401c100ee", METER_EMALFORMED},		/* bad Data tag */
		{"c403c1850000000001", METER_EMALFORMED},	/* length of 5 bytes */
		{"c403c121", METER_ELIMIT},			/* 33 results > XDLMS_MAX_LIST */
		{"c505c18180", METER_ELIMIT},
		{"601da1", METER_EUNSUPPORTED},			/* AARQ: acse.c */
		{"01000000065f1f0400007e1f04b0", METER_EUNSUPPORTED}, /* InitiateRequest */
		{"0501", METER_EUNSUPPORTED},			/* SN read-request */
		{"dd00", METER_EUNSUPPORTED},			/* general-ciphering */
		{"c6", METER_EUNSUPPORTED},
		{"c80300", METER_EMALFORMED},			/* glo: no room for SC+IC */
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		ssize_t r = decode_hex(t[i].hex, nodes, NODES);
		cr_assert_eq(r, t[i].want, "%s: got %zd want %zd", t[i].hex, r, t[i].want);
	}
	uint8_t none[1];
	cr_assert_eq(xdlms_decode(none + 1, 0, &apdu, nodes, NODES), METER_ENEEDMORE);
	/* a node array too small for the value */
	const struct dlms_vector *v = dlms_vector("get-resp-with-list-compound");
	cr_assert_eq(decode_hex(v->hex, nodes, 5), METER_ENOSPC);
	cr_assert_gt(decode_hex(v->hex, nodes, 21), 0);
	cr_assert_eq(apdu.n_nodes, 21);
	cr_assert_eq(decode_hex(v->hex, nodes, 20), METER_ENOSPC);

	/* the encoder refuses what it cannot write */
	uint8_t buf[64];
	struct mbuf b;
	mbuf_init(&b, buf, sizeof(buf));
	memset(&apdu, 0, sizeof(apdu));
	apdu.type = 0xc009;
	cr_assert_eq(xdlms_encode(&apdu, &b), METER_EINVAL);
	cr_assert_eq(b.len, 0);
	apdu.type = XDLMS_CIPHERED;
	cr_assert_eq(xdlms_encode(&apdu, &b), METER_EINVAL);
	apdu.type = XDLMS_GET_RESPONSE_WITH_LIST;
	apdu.n_items = XDLMS_MAX_LIST + 1;
	cr_assert_eq(xdlms_encode(&apdu, &b), METER_EINVAL);
	apdu.type = XDLMS_SET_REQUEST_NORMAL; /* value with neither raw nor nodes */
	apdu.n_items = 0;
	cr_assert_eq(xdlms_encode(&apdu, &b), METER_EINVAL);
	cr_assert_eq(b.len, 0);
}

/* ---- block transfer ------------------------------------------------------------- */

Test(xdlms, block_room_accounts_for_length_field)
{
	/* 9 header bytes; one length byte up to 127 of data */
	cr_assert_eq(xdlms_block_room(9 + 1 + 127, XDLMS_GET_BLOCK_HEADER), 127);
	/* 138 bytes: 128 would need two length bytes, so 127 */
	cr_assert_eq(xdlms_block_room(9 + 1 + 128, XDLMS_GET_BLOCK_HEADER), 127);
	cr_assert_eq(xdlms_block_room(9 + 2 + 128, XDLMS_GET_BLOCK_HEADER), 128);
	cr_assert_eq(xdlms_block_room(9 + 2 + 255, XDLMS_GET_BLOCK_HEADER), 255);
	cr_assert_eq(xdlms_block_room(9 + 2 + 256, XDLMS_GET_BLOCK_HEADER), 255);
	cr_assert_eq(xdlms_block_room(9 + 3 + 256, XDLMS_GET_BLOCK_HEADER), 256);
	cr_assert_eq(xdlms_block_room(10, XDLMS_GET_BLOCK_HEADER), 0);
	cr_assert_eq(xdlms_block_room(11, XDLMS_GET_BLOCK_HEADER), 1);
	cr_assert_eq(xdlms_block_room(3, XDLMS_GET_BLOCK_HEADER), 0);
}

/* A server cuts a 5000-byte result into blocks; a client reassembles it. */
Test(xdlms, long_get_split_and_reassemble)
{
	static uint8_t result[5000], joined[5000];
	static const size_t pdus[] = {12, 137, 138, 139, 266, 267, 1200, 65535};

	for (size_t i = 0; i < sizeof(result); i++)
		result[i] = (uint8_t)(i * 7 + 3);
	for (size_t k = 0; k < sizeof(pdus) / sizeof(pdus[0]); k++) {
		size_t off = 0, got = 0, max_pdu = pdus[k];
		uint32_t block = 1;
		bool last = false;

		while (!last) {
			uint8_t pdu[70000];
			struct mbuf b;
			ssize_t n;

			mbuf_init(&b, pdu, sizeof(pdu));
			n = xdlms_put_get_response_block(&b, 0xc1, block, result, sizeof(result), &off,
							 max_pdu);
			cr_assert_gt(n, 0, "pdu %zu block %u: %zd", max_pdu, block, n);
			cr_assert_leq((size_t)n, max_pdu);
			cr_assert_eq(xdlms_decode(pdu, (size_t)n, &apdu, NULL, 0), n);
			cr_assert_eq(xdlms_block_check(&apdu, block, &last), 0);
			if (!last)
				cr_assert_geq((size_t)n + 2, max_pdu, "a block that is not last is full");
			cr_assert_leq(got + apdu.block.raw_len, sizeof(joined));
			memcpy(joined + got, apdu.block.raw, apdu.block.raw_len);
			got += apdu.block.raw_len;
			block++;
			/* the client's next request names the block it wants */
			mbuf_init(&b, pdu, sizeof(pdu));
			cr_assert_eq(xdlms_put_get_request_next(&b, 0xc1, block - 1), 7);
			cr_assert_eq(xdlms_decode(pdu, 7, &apdu2, NULL, 0), 7);
			cr_assert_eq(apdu2.type, XDLMS_GET_REQUEST_NEXT);
			cr_assert_eq(apdu2.block.number, block - 1);
		}
		cr_assert_eq(got, sizeof(result), "pdu %zu", max_pdu);
		cr_assert_eq(off, sizeof(result));
		cr_assert(memcmp(joined, result, sizeof(result)) == 0);
	}
	/* no room at all, or an offset past the end */
	uint8_t pdu[64];
	struct mbuf b;
	size_t off = 0;
	mbuf_init(&b, pdu, sizeof(pdu));
	cr_assert_eq(xdlms_put_get_response_block(&b, 0xc1, 1, result, 10, &off, 10), METER_EINVAL);
	off = 11;
	cr_assert_eq(xdlms_put_get_response_block(&b, 0xc1, 1, result, 10, &off, 60), METER_EINVAL);
	/* the output buffer too small: offset stays */
	off = 0;
	mbuf_init(&b, pdu, 20);
	cr_assert_eq(xdlms_put_get_response_block(&b, 0xc1, 1, result, 100, &off, 60), METER_ENOSPC);
	cr_assert_eq(off, 0);
}

Test(xdlms, block_check_against_corpus)
{
	bool last = true;
	size_t len;
	const struct dlms_vector *v = dlms_vector("get-resp-block-first");
	uint8_t *p = hex_tail(v->hex, &len);

	cr_assert_gt(xdlms_decode(p, len, &apdu, NULL, 0), 0);
	cr_assert_eq(xdlms_block_check(&apdu, 1, &last), 0);
	cr_assert_not(last);
	cr_assert_eq(xdlms_block_check(&apdu, 2, &last), METER_EPROTO);
	tail_free(p);

	v = dlms_vector("get-resp-block-last-error");
	p = hex_tail(v->hex, &len);
	cr_assert_gt(xdlms_decode(p, len, &apdu, NULL, 0), 0);
	cr_assert_eq(xdlms_block_check(&apdu, 19, &last), METER_EACCESS);
	cr_assert(last);
	cr_assert_eq(apdu.block.dar, XDLMS_DAR_HARDWARE_FAULT);
	tail_free(p);

	v = dlms_vector("get-resp-normal-dlu");
	p = hex_tail(v->hex, &len);
	cr_assert_gt(xdlms_decode(p, len, &apdu, NULL, 0), 0);
	cr_assert_eq(xdlms_block_check(&apdu, 1, &last), METER_EPROTO);
	tail_free(p);
}

/* ---- names ------------------------------------------------------------------- */

Test(xdlms, names)
{
	static const struct {
		uint8_t code;
		const char *name;
	} dar[] = {
		{0, "success"}, {1, "hardware-fault"}, {2, "temporary-failure"},
		{3, "read-write-denied"}, {4, "object-undefined"}, {9, "object-class-inconsistent"},
		{11, "object-unavailable"}, {12, "type-unmatched"}, {13, "scope-of-access-violated"},
		{14, "data-block-unavailable"}, {15, "long-get-aborted"},
		{16, "no-long-get-in-progress"}, {17, "long-set-aborted"},
		{18, "no-long-set-in-progress"}, {19, "data-block-number-invalid"},
		{250, "other-reason"},
	};
	for (size_t i = 0; i < sizeof(dar) / sizeof(dar[0]); i++)
		cr_assert_str_eq(xdlms_dar_name(dar[i].code), dar[i].name);
	cr_assert_str_eq(xdlms_dar_name(5), "unknown");
	cr_assert_str_eq(xdlms_dar_name(255), "unknown");
	cr_assert_str_eq(xdlms_action_result_name(15), "long-action-aborted");
	cr_assert_str_eq(xdlms_action_result_name(16), "no-long-action-in-progress");
	cr_assert_str_eq(xdlms_action_result_name(17), "unknown");
	cr_assert_str_eq(xdlms_action_result_name(250), "other-reason");
	cr_assert_str_eq(xdlms_action_result_name(3), "read-write-denied");

	cr_assert_str_eq(xdlms_tag_name(0xc4), "get-response");
	cr_assert_str_eq(xdlms_tag_name(0xcc), "glo-get-response");
	cr_assert_str_eq(xdlms_tag_name(0xd4), "ded-get-response");
	cr_assert_str_eq(xdlms_tag_name(0xdb), "general-glo-ciphering");
	cr_assert_str_eq(xdlms_tag_name(0x0f), "data-notification");
	cr_assert_str_eq(xdlms_tag_name(0x60), "aarq");
	cr_assert_str_eq(xdlms_tag_name(0xc6), "unknown");
	cr_assert_str_eq(xdlms_service_error_name(6), "invocation-counter-error");
	cr_assert_str_eq(xdlms_cse_value_name(XDLMS_CSE_ACCESS, 2), "object-access-violated");
	cr_assert_str_eq(xdlms_cse_value_name(XDLMS_CSE_INITIATE, 9), "unknown");
	cr_assert_str_eq(xdlms_cse_value_name(8, 0), "unknown");

	/* every type its own name, which starts with its tag's name */
	for (size_t i = 0; i < N_TYPES; i++) {
		const char *n = xdlms_type_name(all_types[i]);
		const char *tn = xdlms_tag_name((uint8_t)(all_types[i] >> 8));
		cr_assert_str_neq(n, "unknown");
		cr_assert(strncmp(n, tn, strlen(tn)) == 0, "%s vs %s", n, tn);
		for (size_t j = 0; j < i; j++)
			cr_assert_str_neq(n, xdlms_type_name(all_types[j]));
	}
	cr_assert_str_eq(xdlms_type_name(0xc009), "unknown");
}

Test(xdlms, iip_bits)
{
	cr_assert_eq(xdlms_iip(1, true, true), 0xc1);
	cr_assert_eq(xdlms_iip(5, true, false), 0x45);
	cr_assert_eq(xdlms_iip(0x1f, false, true), 0x8f);
	cr_assert_eq(xdlms_iip_invoke_id(0x51), 1);
	cr_assert(xdlms_iip_confirmed(0x51));
	cr_assert_not(xdlms_iip_high(0x51));

	/* the reserved bits come back as received in the response */
	const struct dlms_vector *v = dlms_vector("get-resp-normal-gosem");
	size_t len;
	uint8_t *p = hex_tail(v->hex, &len);
	cr_assert_gt(xdlms_decode(p, len, &apdu, nodes, NODES), 0);
	cr_assert_eq(apdu.iip, 0x51);
	cr_assert_eq(apdu.iip & XDLMS_IIP_RESERVED, 0x10);
	tail_free(p);
}
