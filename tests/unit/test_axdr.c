/*
 * test_axdr.c: the A-XDR codec against every `axdr` row of the DLMS
 * corpus (decoded tree rendered in the corpus's meaning grammar, re-encoded
 * to the same bytes, every truncation refused), random Data trees through
 * encode -> decode -> encode, and hostile input (huge counts, depth bombs,
 * long length fields, bad compact-array descriptions).  Inputs sit at the
 * end of their allocation (hex_tail) so an over-read trips ASan.
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

#define NODES 4096

/* ---- rendering in the corpus's meaning grammar ------------------------- */

struct sb {
	char *p;
	size_t len, cap;
};

static void
sb_add(struct sb *s, const char *fmt, ...)
{
	va_list ap;
	int k;

	va_start(ap, fmt);
	k = vsnprintf(s->p + s->len, s->cap - s->len, fmt, ap);
	va_end(ap);
	cr_assert(k >= 0 && (size_t)k < s->cap - s->len, "render buffer too small");
	s->len += (size_t)k;
}

static void
sb_hex(struct sb *s, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		sb_add(s, "%02x", p[i]);
}

/* Shortest decimal that reads back to the same float / double. */
static void
sb_float(struct sb *s, double v, bool single)
{
	char buf[64];

	for (int prec = 1; prec <= 17; prec++) {
		snprintf(buf, sizeof buf, "%.*g", prec, v);
		double back = strtod(buf, NULL);
		if (single ? (float)back == (float)v : back == v)
			break;
	}
	sb_add(s, "%s", buf);
}

/* Type description of a compact array: `structure(a;b)`, `array(n=N;t)`. */
static size_t
render_desc(struct sb *s, const uint8_t *d)
{
	size_t off;
	uint32_t cnt;
	ssize_t hl;

	if (d[0] == AXDR_STRUCTURE) {
		hl = axdr_decode_length(d + 1, 5, &cnt);
		cr_assert(hl > 0);
		off = 1 + (size_t)hl;
		sb_add(s, "structure(");
		for (uint32_t i = 0; i < cnt; i++) {
			if (i)
				sb_add(s, ";");
			off += render_desc(s, d + off);
		}
		sb_add(s, ")");
		return off;
	}
	if (d[0] == AXDR_ARRAY) {
		sb_add(s, "array(n=%u;", be16(d + 1));
		off = 3 + render_desc(s, d + 3);
		sb_add(s, ")");
		return off;
	}
	sb_add(s, "%s", axdr_tag_name(d[0]));
	return 1;
}

static void render(struct sb *s, const struct axdr_node *n);

static void
render_items(struct sb *s, const struct axdr_node *n)
{
	if (n->len > 12) {
		sb_add(s, "(n=%u)[first=", n->len);
		render(s, axdr_child(n, 0));
		sb_add(s, ",...,last=");
		render(s, axdr_child(n, n->len - 1));
		sb_add(s, "]");
		return;
	}
	sb_add(s, "[");
	for (uint32_t i = 0; i < n->len; i++) {
		if (i)
			sb_add(s, ",");
		render(s, axdr_child(n, i));
	}
	sb_add(s, "]");
}

static void
render(struct sb *s, const struct axdr_node *n)
{
	cr_assert_not_null(n);
	switch (n->tag) {
	case AXDR_NULL:
	case AXDR_DONT_CARE:
		sb_add(s, "%s", axdr_tag_name(n->tag));
		break;
	case AXDR_BOOLEAN:
		sb_add(s, "boolean:%s", n->v.u ? "true" : "false");
		break;
	case AXDR_BIT_STRING:
		sb_add(s, "bit-string(%u):", n->len);
		for (uint32_t i = 0; i < n->len; i++)
			sb_add(s, "%c", n->ptr[i / 8] & (0x80 >> (i % 8)) ? '1' : '0');
		break;
	case AXDR_INTEGER:
	case AXDR_LONG:
	case AXDR_DOUBLE_LONG:
	case AXDR_LONG64:
	case AXDR_BCD:
		sb_add(s, "%s:%lld", axdr_tag_name(n->tag), (long long)n->v.i);
		break;
	case AXDR_UNSIGNED:
	case AXDR_LONG_UNSIGNED:
	case AXDR_DOUBLE_LONG_UNSIGNED:
	case AXDR_LONG64_UNSIGNED:
	case AXDR_ENUM:
		sb_add(s, "%s:%llu", axdr_tag_name(n->tag), (unsigned long long)n->v.u);
		break;
	case AXDR_FLOATING_POINT:
	case AXDR_FLOAT32:
	case AXDR_FLOAT64:
		sb_add(s, "%s:", axdr_tag_name(n->tag));
		sb_float(s, n->v.f, n->tag != AXDR_FLOAT64);
		break;
	case AXDR_OCTET_STRING:
		sb_add(s, "octet-string:");
		if (n->len == 0)
			sb_add(s, "-");
		sb_hex(s, n->ptr, n->len);
		break;
	case AXDR_VISIBLE_STRING:
	case AXDR_UTF8_STRING:
		sb_add(s, "%s:\"%.*s\"", axdr_tag_name(n->tag), (int)n->len, (const char *)n->ptr);
		break;
	case AXDR_DATE_TIME:
	case AXDR_DATE:
	case AXDR_TIME:
		sb_add(s, "%s:", axdr_tag_name(n->tag));
		sb_hex(s, n->ptr, n->len);
		break;
	case AXDR_ARRAY:
	case AXDR_STRUCTURE:
		sb_add(s, "%s", axdr_tag_name(n->tag));
		render_items(s, n);
		break;
	case AXDR_COMPACT_ARRAY:
		sb_add(s, "compact-array(desc=");
		cr_assert_eq(render_desc(s, n->ptr), n->v.u, "description length");
		sb_add(s, ")");
		render_items(s, n);
		break;
	default:
		cr_assert_fail("unexpected tag %u", n->tag);
	}
}

static const char *
render_str(const struct axdr_node *n)
{
	static char buf[65536];
	struct sb s = {buf, 0, sizeof buf};

	render(&s, n);
	return buf;
}

/* ---- corpus rows --------------------------------------------------------- */

static struct axdr_node nodes[NODES], nodes2[NODES];

/* Bytes of the first k bytes of hex, at the end of their own block. */
static uint8_t *
prefix_tail(const char *hex, size_t k)
{
	char *h = strndup(hex, 2 * k);
	size_t n;
	uint8_t *p = hex_tail(h, &n);

	cr_assert_not_null(p);
	cr_assert_eq(n, k);
	free(h);
	return p;
}

Test(axdr, corpus_rows_decode_render_and_reencode)
{
	size_t nv, rows = 0;
	const struct dlms_vector *v = dlms_vectors(&nv);
	char type[64], want[65536];
	uint8_t out[8192];

	cr_assert_not_null(v);
	for (size_t i = 0; i < nv; i++) {
		if (strcmp(v[i].layer, "axdr") != 0)
			continue;
		meaning_type(v[i].meaning, type, sizeof type);
		if (strcmp(type, "AXDR") != 0)
			continue;
		cr_assert_not_null(meaning_get(v[i].meaning, "data", want, sizeof want), "%s",
				   v[i].id);
		size_t len, nn = 0;
		uint8_t *buf = hex_tail(v[i].hex, &len);
		ssize_t r = axdr_decode(buf, len, nodes, NODES, &nn);
		cr_assert_eq(r, (ssize_t)len, "%s: decode %zd (%s)", v[i].id, r,
			     r < 0 ? meter_strerror((int)r) : "short");
		cr_assert_eq(nodes[0].span, nn, "%s: root span", v[i].id);
		cr_assert_str_eq(render_str(nodes), want, "%s", v[i].id);

		struct mbuf b;
		mbuf_init(&b, out, sizeof out);
		cr_assert_eq(axdr_encode(nodes, nn, &b), (ssize_t)len, "%s: encode", v[i].id);
		cr_assert_eq(memcmp(out, buf, len), 0, "%s: re-encoded bytes differ", v[i].id);
		cr_assert_eq(axdr_skip(buf, len), (ssize_t)len, "%s: skip", v[i].id);

		/* one node short of what it needs */
		size_t n3;
		cr_assert_eq(axdr_decode(buf, len, nodes2, nn - 1, &n3), METER_ENOSPC, "%s",
			     v[i].id);
		tail_free(buf);

		/* every proper prefix is refused, and nothing is read past it */
		for (size_t k = 0; k < len; k++) {
			uint8_t *p = prefix_tail(v[i].hex, k);
			r = axdr_decode(p, k, nodes2, NODES, &n3);
			cr_assert(r == METER_ENEEDMORE || r == METER_EMALFORMED,
				  "%s: prefix %zu gave %zd", v[i].id, k, r);
			cr_assert_eq(axdr_skip(p, k), r, "%s: skip prefix %zu", v[i].id, k);
			tail_free(p);
		}
		rows++;
	}
	cr_assert_eq(rows, 38, "AXDR data rows: %zu", rows);
}

Test(axdr, corpus_trailing_bytes_left_alone)
{
	const struct dlms_vector *v = dlms_vector("axdr-structure-capture-object");
	char hex[256];
	size_t len, nn;

	cr_assert_not_null(v);
	snprintf(hex, sizeof hex, "%s%s", v->hex, "0000");
	uint8_t *buf = hex_tail(hex, &len);
	cr_assert_eq(axdr_decode(buf, len, nodes, NODES, &nn), (ssize_t)len - 2);
	cr_assert_eq(nn, 5);
	tail_free(buf);
}

Test(axdr, corpus_lengths)
{
	size_t nv, rows = 0;
	const struct dlms_vector *v = dlms_vectors(&nv);
	char type[64], val[32];
	uint8_t out[8];

	for (size_t i = 0; i < nv; i++) {
		if (strcmp(v[i].layer, "axdr") != 0)
			continue;
		meaning_type(v[i].meaning, type, sizeof type);
		if (strcmp(type, "AXDRLength") != 0)
			continue;
		cr_assert_not_null(meaning_get(v[i].meaning, "value", val, sizeof val));
		size_t len;
		uint32_t got;
		uint8_t *buf = hex_tail(v[i].hex, &len);
		cr_assert_eq(axdr_decode_length(buf, len, &got), (ssize_t)len, "%s", v[i].id);
		cr_assert_eq(got, strtoul(val, NULL, 10), "%s", v[i].id);
		for (size_t k = 0; k < len; k++)
			cr_assert_eq(axdr_decode_length(buf, k, &got), METER_ENEEDMORE, "%s/%zu",
				     v[i].id, k);
		struct mbuf b;
		mbuf_init(&b, out, sizeof out);
		axdr_put_length(&b, (uint32_t)strtoul(val, NULL, 10));
		cr_assert_eq(b.len, len, "%s", v[i].id);
		cr_assert_eq(memcmp(out, buf, len), 0, "%s", v[i].id);
		tail_free(buf);
		rows++;
	}
	cr_assert_eq(rows, 7);
}

Test(axdr, corpus_untagged_float_contents)
{
	size_t nv, rows = 0;
	const struct dlms_vector *v = dlms_vectors(&nv);
	char type[64], ftype[64], val[64], hex[64];
	uint8_t out[16];

	for (size_t i = 0; i < nv; i++) {
		if (strcmp(v[i].layer, "axdr") != 0)
			continue;
		meaning_type(v[i].meaning, type, sizeof type);
		if (strcmp(type, "AXDRValueContents") != 0)
			continue;
		cr_assert_not_null(meaning_get(v[i].meaning, "type", ftype, sizeof ftype));
		cr_assert_not_null(meaning_get(v[i].meaning, "value", val, sizeof val));
		bool single = strncmp(ftype, "float32", 7) == 0;
		cr_assert(single || strncmp(ftype, "float64", 7) == 0, "%s", v[i].id);
		uint8_t tag = single ? AXDR_FLOAT32 : AXDR_FLOAT64;
		snprintf(hex, sizeof hex, "%02x%s", tag, v[i].hex);
		size_t len, nn;
		uint8_t *buf = hex_tail(hex, &len);
		cr_assert_eq(len, single ? 5u : 9u);
		cr_assert_eq(axdr_decode(buf, len, nodes, NODES, &nn), (ssize_t)len, "%s", v[i].id);
		double want = strtod(val, NULL);
		if (single)
			cr_assert_eq((float)nodes[0].v.f, (float)want, "%s", v[i].id);
		else
			cr_assert_eq(nodes[0].v.f, want, "%s", v[i].id);
		struct mbuf b;
		mbuf_init(&b, out, sizeof out);
		if (single)
			axdr_put_float32(&b, (float)want);
		else
			axdr_put_float64(&b, want);
		cr_assert_eq(b.len, len);
		cr_assert_eq(memcmp(out, buf, len), 0, "%s: writer", v[i].id);
		tail_free(buf);
		rows++;
	}
	cr_assert_eq(rows, 4);
}

/* The tagged writers produce the corpus's bytes for the values decoded
 * from them. */
Test(axdr, writers_reproduce_corpus_scalars)
{
	size_t nv, rows = 0;
	const struct dlms_vector *v = dlms_vectors(&nv);
	char type[64];
	uint8_t out[600];

	for (size_t i = 0; i < nv; i++) {
		if (strcmp(v[i].layer, "axdr") != 0)
			continue;
		meaning_type(v[i].meaning, type, sizeof type);
		if (strcmp(type, "AXDR") != 0)
			continue;
		size_t len, nn;
		uint8_t *buf = hex_tail(v[i].hex, &len);
		cr_assert_eq(axdr_decode(buf, len, nodes, NODES, &nn), (ssize_t)len);
		const struct axdr_node *n = nodes;
		struct cosem_datetime dt;
		struct mbuf b;
		bool done = true;
		mbuf_init(&b, out, sizeof out);
		switch (n->tag) {
		case AXDR_NULL: axdr_put_null(&b); break;
		case AXDR_BOOLEAN: axdr_put_boolean(&b, n->v.u); break;
		case AXDR_BIT_STRING: axdr_put_bit_string(&b, n->ptr, n->len); break;
		case AXDR_DOUBLE_LONG: axdr_put_double_long(&b, (int32_t)n->v.i); break;
		case AXDR_DOUBLE_LONG_UNSIGNED: axdr_put_double_long_unsigned(&b, (uint32_t)n->v.u); break;
		case AXDR_OCTET_STRING: axdr_put_octet_string(&b, n->ptr, n->len); break;
		case AXDR_VISIBLE_STRING: axdr_put_visible_string(&b, (const char *)n->ptr, n->len); break;
		case AXDR_INTEGER: axdr_put_integer(&b, (int8_t)n->v.i); break;
		case AXDR_LONG: axdr_put_long(&b, (int16_t)n->v.i); break;
		case AXDR_UNSIGNED: axdr_put_unsigned(&b, (uint8_t)n->v.u); break;
		case AXDR_LONG_UNSIGNED: axdr_put_long_unsigned(&b, (uint16_t)n->v.u); break;
		case AXDR_LONG64: axdr_put_long64(&b, n->v.i); break;
		case AXDR_LONG64_UNSIGNED: axdr_put_long64_unsigned(&b, n->v.u); break;
		case AXDR_FLOAT32: axdr_put_float32(&b, (float)n->v.f); break;
		case AXDR_DATE_TIME:
			cr_assert_eq(cosem_datetime_decode(n->ptr, &dt), 0, "%s", v[i].id);
			axdr_put_datetime(&b, &dt);
			break;
		default: done = false; break;
		}
		if (done) {
			cr_assert_eq(b.err, 0);
			cr_assert_eq(b.len, len, "%s", v[i].id);
			cr_assert_eq(memcmp(out, buf, len), 0, "%s", v[i].id);
			rows++;
		}
		tail_free(buf);
	}
	cr_assert_geq(rows, 18, "scalar rows written: %zu", rows);
}

Test(axdr, datetime_octets_writer)
{
	const struct dlms_vector *v = dlms_vector("dt-utc+2");
	uint8_t raw[12], out[32];
	struct cosem_datetime dt;
	size_t len;
	struct mbuf b;

	cr_assert_not_null(v);
	uint8_t *p = hex_tail(v->hex, &len);
	cr_assert_eq(len, 12);
	memcpy(raw, p, 12);
	tail_free(p);
	cr_assert_eq(cosem_datetime_decode(raw, &dt), 0);
	mbuf_init(&b, out, sizeof out);
	axdr_put_datetime_octets(&b, &dt);
	cr_assert_eq(b.len, 14);
	cr_assert_eq(out[0], AXDR_OCTET_STRING);
	cr_assert_eq(out[1], 12);
	cr_assert_eq(memcmp(out + 2, raw, 12), 0);
}

/* ---- tree access ---------------------------------------------------------- */

Test(axdr, child_walks_spans)
{
	const struct dlms_vector *v = dlms_vector("axdr-array-24-structures");
	size_t len, nn;
	cr_assert_not_null(v);
	uint8_t *buf = hex_tail(v->hex, &len);

	cr_assert_eq(axdr_decode(buf, len, nodes, NODES, &nn), (ssize_t)len);
	cr_assert_eq(nodes[0].tag, AXDR_ARRAY);
	cr_assert_eq(nodes[0].len, 24);
	cr_assert_eq(nn, 1 + 24 * 4);
	int64_t prev = -1;
	for (uint32_t i = 0; i < 24; i++) {
		const struct axdr_node *row = axdr_child(nodes, i);
		cr_assert_not_null(row);
		cr_assert_eq(row, &nodes[1 + 4 * i]);
		cr_assert_eq(row->tag, AXDR_STRUCTURE);
		cr_assert_eq(row->span, 4);
		const struct axdr_node *val = axdr_child(row, 2);
		int64_t x;
		cr_assert_eq(axdr_to_int64(val, &x), 0);
		cr_assert_gt(x, prev, "values rise hour by hour");
		prev = x;
		cr_assert_eq(axdr_child(row, 0)->ptr[5], i, "hour of row %u", i);
		cr_assert_null(axdr_child(row, 3));
	}
	cr_assert_null(axdr_child(nodes, 24));
	cr_assert_null(axdr_child(axdr_child(axdr_child(nodes, 0), 1), 0), "scalar has no child");
	tail_free(buf);
}

Test(axdr, decode_header_walks_long_array)
{
	const struct dlms_vector *v = dlms_vector("axdr-array-profile-buffer");
	size_t len, nn;
	uint32_t count;
	cr_assert_not_null(v);
	uint8_t *buf = hex_tail(v->hex, &len);

	ssize_t off = axdr_decode_header(buf, len, AXDR_ARRAY, &count);
	cr_assert_eq(off, 2);
	cr_assert_eq(count, 4);
	cr_assert_eq(axdr_decode_header(buf, len, AXDR_STRUCTURE, &count), METER_EMALFORMED);
	cr_assert_eq(axdr_decode_header(buf, 0, AXDR_ARRAY, &count), METER_ENEEDMORE);
	cr_assert_eq(axdr_decode_header(buf, 1, AXDR_ARRAY, &count), METER_ENEEDMORE);
	for (uint32_t i = 0; i < count; i++) {
		ssize_t r = axdr_decode(buf + off, len - (size_t)off, nodes, NODES, &nn);
		cr_assert_gt(r, 0);
		cr_assert_eq(nn, 5);
		cr_assert_eq(axdr_skip(buf + off, len - (size_t)off), r);
		double status;
		cr_assert_eq(axdr_to_double(axdr_child(nodes, 1), &status), 0);
		cr_assert_eq(status, 6.0);
		off += r;
	}
	cr_assert_eq((size_t)off, len);
	tail_free(buf);
}

Test(axdr, numeric_conversions)
{
	struct axdr_node n = {0};
	int64_t i;
	double d;

	n.tag = AXDR_LONG64_UNSIGNED;
	n.v.u = UINT64_MAX;
	cr_assert_eq(axdr_to_int64(&n, &i), METER_ERANGE);
	cr_assert_eq(axdr_to_double(&n, &d), 0);
	cr_assert_eq(d, 18446744073709551615.0);
	n.v.u = INT64_MAX;
	cr_assert_eq(axdr_to_int64(&n, &i), 0);
	cr_assert_eq(i, INT64_MAX);
	n.tag = AXDR_LONG;
	n.v.i = -30123;
	cr_assert_eq(axdr_to_int64(&n, &i), 0);
	cr_assert_eq(i, -30123);
	n.tag = AXDR_FLOAT64;
	n.v.f = 2.5;
	cr_assert_eq(axdr_to_int64(&n, &i), METER_EINVAL);
	cr_assert_eq(axdr_to_double(&n, &d), 0);
	cr_assert_eq(d, 2.5);
	n.tag = AXDR_BOOLEAN;
	n.v.u = 1;
	cr_assert_eq(axdr_to_int64(&n, &i), 0);
	cr_assert_eq(i, 1);
	n.tag = AXDR_ENUM;
	n.v.u = 30;
	cr_assert_eq(axdr_to_double(&n, &d), 0);
	cr_assert_eq(d, 30.0);
	n.tag = AXDR_OCTET_STRING;
	cr_assert_eq(axdr_to_double(&n, &d), METER_EINVAL);
	cr_assert_eq(axdr_to_int64(&n, &i), METER_EINVAL);
	n.tag = AXDR_STRUCTURE;
	cr_assert_eq(axdr_to_int64(&n, &i), METER_EINVAL);
	cr_assert_str_eq(axdr_tag_name(AXDR_LONG_UNSIGNED), "long-unsigned");
	cr_assert_str_eq(axdr_tag_name(AXDR_COMPACT_ARRAY), "compact-array");
	cr_assert_str_eq(axdr_tag_name(8), "unknown");
}

/* ---- hostile input ---------------------------------------------------------- */

struct hostile {
	const char *name;
	const char *hex;
	ssize_t want;
};

static const struct hostile hostile_cases[] = {
	{"array count 2^32-1", "0184ffffffff000000", METER_EMALFORMED},
	{"array count 65535, 3 bytes", "0182ffff000000", METER_EMALFORMED},
	{"structure count over bytes", "020500000000", METER_EMALFORMED},
	{"length field of 5 bytes", "0985000000000100", METER_EMALFORMED},
	{"length field of 0 bytes", "098000", METER_EMALFORMED},
	{"length not shortest (0x81 0x05)", "0981050102030405", METER_EMALFORMED},
	{"length not shortest (0x82 0x00ff)", "098200ff", METER_EMALFORMED},
	{"octet-string over the end", "0984fffffff0010203", METER_ENEEDMORE},
	{"bit-string 2^32-1 bits", "0484ffffffff00", METER_ENEEDMORE},
	{"unknown tag 8", "0800", METER_EMALFORMED},
	{"unknown tag 11", "0b00", METER_EMALFORMED},
	{"unknown tag 14", "0e00", METER_EMALFORMED},
	{"unknown tag 28", "1c00", METER_EMALFORMED},
	{"unknown tag 0xfe", "fe", METER_EMALFORMED},
	{"unknown tag inside structure", "0202110108", METER_EMALFORMED},
	{"compact: nested compact description", "1313120000", METER_EMALFORMED},
	{"compact: unknown description tag", "130800", METER_EMALFORMED},
	{"compact: array of zero-size elements", "130100ff0000", METER_EMALFORMED},
	{"compact: null description, contents", "13000100", METER_EMALFORMED},
	{"compact: contents not a whole element", "1312030001ff", METER_EMALFORMED},
	{"compact: string overruns contents", "1309020500", METER_EMALFORMED},
	{"compact: contents over the end", "131284ffffffff", METER_ENEEDMORE},
	{"compact: structure count over description", "1302ff", METER_EMALFORMED},
	{"compact: desc array count over contents", "130100ff110300000000", METER_EMALFORMED},
	{"compact: truncated description", "130100", METER_ENEEDMORE},
};

Test(axdr, hostile_inputs_fail_cleanly)
{
	for (size_t i = 0; i < sizeof hostile_cases / sizeof hostile_cases[0]; i++) {
		const struct hostile *h = &hostile_cases[i];
		size_t len, nn = 12345;
		uint8_t *buf = hex_tail(h->hex, &len);
		cr_assert_not_null(buf, "%s", h->name);
		ssize_t r = axdr_decode(buf, len, nodes, NODES, &nn);
		cr_assert_eq(r, h->want, "%s: got %zd", h->name, r);
		cr_assert_eq(nn, 12345, "%s: n_nodes untouched on error", h->name);
		cr_assert_eq(axdr_skip(buf, len), h->want, "%s: skip", h->name);
		tail_free(buf);
	}
}

/* A count that the bytes could hold but the caller's array cannot is
 * refused before the elements are stored. */
Test(axdr, capacity_is_enforced)
{
	uint8_t in[2 + 100], out[128];
	size_t nn;
	struct mbuf b;

	mbuf_init(&b, in, sizeof in);
	axdr_put_array(&b, 100);
	for (int i = 0; i < 100; i++)
		axdr_put_null(&b);
	cr_assert_eq(b.len, sizeof in);
	cr_assert_eq(axdr_decode(in, sizeof in, nodes, 101, &nn), (ssize_t)sizeof in);
	cr_assert_eq(nn, 101);
	cr_assert_eq(axdr_decode(in, sizeof in, nodes, 100, &nn), METER_ENOSPC);
	cr_assert_eq(axdr_decode(in, sizeof in, nodes, 1, &nn), METER_ENOSPC);
	cr_assert_eq(axdr_decode(in, sizeof in, nodes, 0, &nn), METER_ENOSPC);
	cr_assert_eq(axdr_decode(in, sizeof in, NULL, 10, &nn), METER_EINVAL);
	cr_assert_eq(axdr_decode(in, sizeof in, nodes, 101, &nn), (ssize_t)sizeof in);
	mbuf_init(&b, out, 50);
	cr_assert_eq(axdr_encode(nodes, nn, &b), METER_ENOSPC);
	mbuf_init(&b, out, sizeof out);
	cr_assert_eq(axdr_encode(nodes, nn, &b), (ssize_t)sizeof in);
}

static uint8_t *
nested_arrays(unsigned levels, size_t *len)
{
	uint8_t *p = malloc(2 * levels + 1);
	for (unsigned i = 0; i < levels; i++) {
		p[2 * i] = AXDR_ARRAY;
		p[2 * i + 1] = 1;
	}
	p[2 * levels] = AXDR_NULL;
	*len = 2 * levels + 1;
	return p;
}

Test(axdr, depth_bombs)
{
	size_t len, nn;
	uint8_t *p, out[64];
	struct mbuf b;

	p = nested_arrays(AXDR_MAX_DEPTH, &len);
	cr_assert_eq(axdr_decode(p, len, nodes, NODES, &nn), (ssize_t)len);
	cr_assert_eq(nn, AXDR_MAX_DEPTH + 1);
	mbuf_init(&b, out, sizeof out);
	cr_assert_eq(axdr_encode(nodes, nn, &b), (ssize_t)len);
	free(p);

	p = nested_arrays(AXDR_MAX_DEPTH + 1, &len);
	cr_assert_eq(axdr_decode(p, len, nodes, NODES, &nn), METER_ELIMIT);
	cr_assert_eq(axdr_skip(p, len), METER_ELIMIT);
	free(p);

	p = nested_arrays(1000000, &len);
	cr_assert_eq(axdr_decode(p, len, nodes, NODES, &nn), METER_ELIMIT);
	cr_assert_eq(axdr_skip(p, len), METER_ELIMIT);
	free(p);

	/* the same through structures inside a compact array's description */
	uint8_t c[64];
	size_t k = 0;
	c[k++] = AXDR_COMPACT_ARRAY;
	for (int i = 0; i < 30; i++) {
		c[k++] = AXDR_STRUCTURE;
		c[k++] = 1;
	}
	c[k++] = AXDR_UNSIGNED;
	c[k++] = 0;
	cr_assert_eq(axdr_decode(c, k, nodes, NODES, &nn), METER_ELIMIT);

	/* encoder refuses a built tree deeper than the bound */
	struct axdr_node deep[AXDR_MAX_DEPTH + 2];
	for (int i = 0; i <= AXDR_MAX_DEPTH; i++)
		deep[i] = (struct axdr_node){.tag = AXDR_ARRAY, .len = 1,
					     .span = (uint32_t)(AXDR_MAX_DEPTH + 2 - i)};
	deep[AXDR_MAX_DEPTH + 1] = (struct axdr_node){.tag = AXDR_NULL, .span = 1};
	mbuf_init(&b, out, sizeof out);
	cr_assert_eq(axdr_encode(deep, AXDR_MAX_DEPTH + 2, &b), METER_ELIMIT);
}

Test(axdr, encoder_refuses_inconsistent_trees)
{
	uint8_t out[64];
	struct mbuf b;
	struct axdr_node t[4];

	/* span larger than the nodes given */
	t[0] = (struct axdr_node){.tag = AXDR_STRUCTURE, .len = 2, .span = 5};
	t[1] = (struct axdr_node){.tag = AXDR_UNSIGNED, .span = 1, .v.u = 1};
	t[2] = (struct axdr_node){.tag = AXDR_UNSIGNED, .span = 1, .v.u = 2};
	mbuf_init(&b, out, sizeof out);
	cr_assert_eq(axdr_encode(t, 3, &b), METER_EMALFORMED);
	/* count disagrees with span */
	t[0].span = 3;
	t[0].len = 1;
	mbuf_init(&b, out, sizeof out);
	cr_assert_eq(axdr_encode(t, 3, &b), METER_EMALFORMED);
	t[0].len = 2;
	mbuf_init(&b, out, sizeof out);
	cr_assert_eq(axdr_encode(t, 3, &b), 6);
	/* unknown tag */
	t[2].tag = 8;
	mbuf_init(&b, out, sizeof out);
	cr_assert_eq(axdr_encode(t, 3, &b), METER_EMALFORMED);
	/* compact-array element whose tag differs from the description */
	static const uint8_t desc[] = {AXDR_LONG_UNSIGNED};
	t[0] = (struct axdr_node){.tag = AXDR_COMPACT_ARRAY, .len = 1, .span = 2, .ptr = desc,
				  .v.u = 1};
	t[1] = (struct axdr_node){.tag = AXDR_UNSIGNED, .span = 1, .v.u = 1};
	mbuf_init(&b, out, sizeof out);
	cr_assert_eq(axdr_encode(t, 2, &b), METER_EMALFORMED);
	t[1].tag = AXDR_LONG_UNSIGNED;
	mbuf_init(&b, out, sizeof out);
	cr_assert_eq(axdr_encode(t, 2, &b), 5);
	cr_assert_eq(out[2], 2, "contents length");
	/* description length disagrees with v.u */
	t[0].v.u = 2;
	mbuf_init(&b, out, sizeof out);
	cr_assert_eq(axdr_encode(t, 2, &b), METER_EMALFORMED);
}

/* TRUE as 0x01 and a float32 signalling NaN come back byte for byte. */
Test(axdr, raw_bytes_survive_reencode)
{
	static const uint8_t in[] = {AXDR_STRUCTURE, 3, AXDR_BOOLEAN, 0x01, AXDR_FLOAT32, 0x7f,
				     0x80, 0x00, 0x01, AXDR_FLOATING_POINT, 0xff, 0xc1, 0x23, 0x45};
	uint8_t out[32];
	size_t nn;
	struct mbuf b;

	cr_assert_eq(axdr_decode(in, sizeof in, nodes, NODES, &nn), (ssize_t)sizeof in);
	cr_assert_eq(nodes[1].v.u, 1);
	mbuf_init(&b, out, sizeof out);
	cr_assert_eq(axdr_encode(nodes, nn, &b), (ssize_t)sizeof in);
	cr_assert_eq(memcmp(out, in, sizeof in), 0);
	/* a changed value wins over the stale raw byte */
	nodes[1].v.u = 0;
	mbuf_init(&b, out, sizeof out);
	cr_assert_eq(axdr_encode(nodes, nn, &b), (ssize_t)sizeof in);
	cr_assert_eq(out[3], 0x00);
}

/* ---- random trees ------------------------------------------------------------ */

struct gen {
	uint64_t s;
	struct axdr_node *nodes;
	size_t n, cap;
	uint8_t desc[8][256];
	int ndesc;
};

static uint8_t pool[4096];

static uint64_t
rnd(struct gen *g)
{
	g->s ^= g->s << 13;
	g->s ^= g->s >> 7;
	g->s ^= g->s << 17;
	return g->s * 0x2545f4914f6cdd1dULL;
}

static const uint8_t simple_tags[] = {
	AXDR_NULL, AXDR_BOOLEAN, AXDR_BIT_STRING, AXDR_DOUBLE_LONG, AXDR_DOUBLE_LONG_UNSIGNED,
	AXDR_FLOATING_POINT, AXDR_OCTET_STRING, AXDR_VISIBLE_STRING, AXDR_UTF8_STRING, AXDR_BCD,
	AXDR_INTEGER, AXDR_LONG, AXDR_UNSIGNED, AXDR_LONG_UNSIGNED, AXDR_LONG64,
	AXDR_LONG64_UNSIGNED, AXDR_ENUM, AXDR_FLOAT32, AXDR_FLOAT64, AXDR_DATE_TIME, AXDR_DATE,
	AXDR_TIME, AXDR_DONT_CARE};

static struct axdr_node *
gen_node(struct gen *g)
{
	cr_assert_lt(g->n, g->cap, "generator ran out of nodes");
	struct axdr_node *nd = &g->nodes[g->n++];
	memset(nd, 0, sizeof *nd);
	nd->span = 1;
	return nd;
}

static void
gen_simple(struct gen *g, uint8_t tag)
{
	struct axdr_node *nd = gen_node(g);
	uint64_t r = rnd(g);
	uint32_t l;

	nd->tag = tag;
	switch (tag) {
	case AXDR_BOOLEAN: nd->v.u = r & 1; break;
	case AXDR_INTEGER:
	case AXDR_BCD: nd->v.i = (int8_t)r; break;
	case AXDR_LONG: nd->v.i = (int16_t)r; break;
	case AXDR_DOUBLE_LONG: nd->v.i = (int32_t)r; break;
	case AXDR_LONG64: nd->v.i = (int64_t)r; break;
	case AXDR_UNSIGNED:
	case AXDR_ENUM: nd->v.u = (uint8_t)r; break;
	case AXDR_LONG_UNSIGNED: nd->v.u = (uint16_t)r; break;
	case AXDR_DOUBLE_LONG_UNSIGNED: nd->v.u = (uint32_t)r; break;
	case AXDR_LONG64_UNSIGNED: nd->v.u = r; break;
	case AXDR_FLOATING_POINT:
	case AXDR_FLOAT32: {
		float f;
		uint32_t u = (uint32_t)r;
		memcpy(&f, &u, 4);
		nd->v.f = f;
		break;
	}
	case AXDR_FLOAT64: memcpy(&nd->v.f, &r, 8); break;
	case AXDR_DATE_TIME:
	case AXDR_DATE:
	case AXDR_TIME:
		nd->len = tag == AXDR_DATE_TIME ? 12 : tag == AXDR_DATE ? 5 : 4;
		nd->ptr = pool + r % 1024;
		break;
	case AXDR_OCTET_STRING:
	case AXDR_VISIBLE_STRING:
	case AXDR_UTF8_STRING:
		/* mostly short, sometimes across the 0x80 / 0x100 length forms */
		l = (r >> 8) % 8 == 0 ? (uint32_t)((r >> 16) % 700) : (uint32_t)((r >> 16) % 20);
		nd->len = l;
		nd->ptr = l ? pool + (r >> 32) % 1024 : NULL;
		break;
	case AXDR_BIT_STRING:
		l = (r >> 8) % 8 == 0 ? (uint32_t)((r >> 16) % 3000) : (uint32_t)((r >> 16) % 40);
		nd->len = l;
		nd->ptr = l ? pool + (r >> 32) % 1024 : NULL;
		break;
	}
}

/* A compact-array description of non-zero size; returns its length. */
static size_t
gen_desc(struct gen *g, uint8_t *d, unsigned depth)
{
	uint64_t r = rnd(g);
	size_t k;

	if (depth < 3 && r % 3 == 0) {
		unsigned cnt = 1 + (unsigned)(r >> 8) % 4;
		d[0] = AXDR_STRUCTURE;
		d[1] = (uint8_t)cnt;
		k = 2;
		for (unsigned i = 0; i < cnt; i++)
			k += gen_desc(g, d + k, depth + 1);
		return k;
	}
	if (depth < 3 && r % 5 == 1) {
		d[0] = AXDR_ARRAY;
		d[1] = 0;
		d[2] = (uint8_t)(1 + (r >> 8) % 3);
		return 3 + gen_desc(g, d + 3, depth + 1);
	}
	do
		d[0] = simple_tags[(r >> 16) % sizeof simple_tags];
	while ((d[0] == AXDR_NULL || d[0] == AXDR_DONT_CARE) && (r = rnd(g)));
	return 1;
}

/* One value typed by d; returns the description bytes used. */
static size_t
gen_typed(struct gen *g, const uint8_t *d)
{
	size_t idx = g->n, k = 0;

	if (d[0] == AXDR_STRUCTURE) {
		struct axdr_node *nd = gen_node(g);
		nd->tag = AXDR_STRUCTURE;
		nd->len = d[1];
		k = 2;
		for (unsigned i = 0; i < d[1]; i++)
			k += gen_typed(g, d + k);
	} else if (d[0] == AXDR_ARRAY) {
		struct axdr_node *nd = gen_node(g);
		nd->tag = AXDR_ARRAY;
		nd->len = be16(d + 1);
		for (unsigned i = 0; i < nd->len; i++)
			k = 3 + gen_typed(g, d + 3);
	} else {
		gen_simple(g, d[0]);
		return 1;
	}
	g->nodes[idx].span = (uint32_t)(g->n - idx);
	return k;
}

static void
gen_value(struct gen *g, unsigned depth)
{
	uint64_t r = rnd(g);
	size_t idx = g->n;
	bool room = g->n + 2000 < g->cap;

	if (room && depth < 6 && r % 4 == 0) {
		struct axdr_node *nd = gen_node(g);
		nd->tag = r & 0x100 ? AXDR_ARRAY : AXDR_STRUCTURE;
		nd->len = depth == 0 && (r >> 9) % 5 == 0 ? (uint32_t)((r >> 12) % 300)
							  : (uint32_t)((r >> 12) % 6);
		for (uint32_t i = 0; i < nd->len; i++)
			gen_value(g, depth + 1);
		g->nodes[idx].span = (uint32_t)(g->n - idx);
	} else if (room && depth < 6 && r % 7 == 1 && g->ndesc < 8) {
		uint8_t *d = g->desc[g->ndesc++];
		size_t dl = gen_desc(g, d, 0);
		struct axdr_node *nd = gen_node(g);
		nd->tag = AXDR_COMPACT_ARRAY;
		nd->ptr = d;
		nd->v.u = dl;
		nd->len = (uint32_t)((r >> 12) % 8);
		for (uint32_t i = 0; i < nd->len; i++)
			gen_typed(g, d);
		g->nodes[idx].span = (uint32_t)(g->n - idx);
	} else {
		gen_simple(g, simple_tags[(r >> 20) % sizeof simple_tags]);
	}
}

Test(axdr, random_trees_round_trip)
{
	static struct axdr_node built[1 << 16], back[1 << 16];
	static uint8_t enc[1 << 20], enc2[1 << 20];
	struct gen g;
	unsigned trees = 0, compact = 0;

	g.s = 0x9e3779b97f4a7c15ULL;
	for (size_t i = 0; i < sizeof pool; i++)
		pool[i] = (uint8_t)rnd(&g);
	for (unsigned seed = 1; seed <= 3000; seed++) {
		g.s = seed * 0x9e3779b97f4a7c15ULL;
		g.nodes = built;
		g.n = 0;
		g.cap = sizeof built / sizeof built[0];
		g.ndesc = 0;
		gen_value(&g, 0);
		cr_assert_eq(built[0].span, g.n, "seed %u", seed);
		compact += g.ndesc > 0;

		struct mbuf b;
		mbuf_init(&b, enc, sizeof enc);
		ssize_t w = axdr_encode(built, g.n, &b);
		cr_assert_gt(w, 0, "seed %u: encode %zd", seed, w);

		size_t nn;
		ssize_t r = axdr_decode(enc, (size_t)w, back, sizeof back / sizeof back[0], &nn);
		cr_assert_eq(r, w, "seed %u: decode %zd of %zd", seed, r, w);
		cr_assert_eq(nn, g.n, "seed %u", seed);
		cr_assert(axdr_equal(built, back), "seed %u: trees differ", seed);
		cr_assert(axdr_equal(back, built), "seed %u", seed);
		cr_assert_eq(axdr_skip(enc, (size_t)w), w, "seed %u", seed);

		mbuf_init(&b, enc2, sizeof enc2);
		cr_assert_eq(axdr_encode(back, nn, &b), w, "seed %u", seed);
		cr_assert_eq(memcmp(enc, enc2, (size_t)w), 0, "seed %u: re-encode differs", seed);

		/* a changed leaf is noticed */
		if (nn > 1) {
			size_t k = 1 + (size_t)(rnd(&g) % (nn - 1));
			back[k].tag = back[k].tag == AXDR_NULL ? AXDR_DONT_CARE : AXDR_NULL;
			cr_assert(!axdr_equal(built, back), "seed %u: change at %zu missed", seed, k);
		}
		trees++;
	}
	cr_assert_eq(trees, 3000);
	cr_assert_gt(compact, 100, "compact arrays generated: %u", compact);
}

/* A load-profile shaped buffer: 2880 rows of clock, status and four
 * registers, the size the benchmark decodes. */
Test(axdr, profile_buffer_2880_rows)
{
	static struct axdr_node big[1 + 2880 * 7];
	size_t cap = 4 + 2880 * (2 + 14 + 2 + 4 * 5), nn;
	uint8_t *buf = malloc(cap), dt[12] = {0x07, 0xe8, 1, 1, 1, 0, 0, 0, 0, 0xff, 0xc4, 0};
	struct mbuf b;

	mbuf_init(&b, buf, cap);
	axdr_put_array(&b, 2880);
	for (uint32_t i = 0; i < 2880; i++) {
		axdr_put_structure(&b, 6);
		dt[5] = (uint8_t)(i % 24);
		axdr_put_octet_string(&b, dt, 12);
		axdr_put_unsigned(&b, 0);
		for (int c = 0; c < 4; c++)
			axdr_put_double_long_unsigned(&b, i * 4 + (uint32_t)c);
	}
	cr_assert_eq(b.err, 0);
	ssize_t r = axdr_decode(buf, b.len, big, sizeof big / sizeof big[0], &nn);
	cr_assert_eq(r, (ssize_t)b.len);
	cr_assert_eq(nn, 1 + 2880 * 7);
	const struct axdr_node *last = axdr_child(big, 2879);
	cr_assert_eq(axdr_child(last, 5)->v.u, 2879 * 4 + 3);
	cr_assert_eq(axdr_skip(buf, b.len), r);
	free(buf);
}
