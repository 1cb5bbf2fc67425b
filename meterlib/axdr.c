/*
 * axdr.c: A-XDR decoding and encoding of COSEM Data.
 *
 * The decoder is one recursive descent over the input that writes nodes in
 * pre-order into the caller's array; with no array (axdr_skip) the same
 * code runs and only counts.  Every length and element count from the wire
 * is checked before it is used: a count that the remaining bytes could not
 * possibly hold is refused as malformed before any node is stored, so a
 * hostile header cannot make us loop or fill the caller's array.
 *
 * The encoder reproduces decoded input byte for byte.  That is why the
 * decoder refuses length fields that are not in their shortest form (they
 * would re-encode differently) and why boolean and float nodes keep a
 * pointer to their raw bytes (a boolean TRUE may arrive as 0x01 or 0xff, a
 * float32 NaN carries a payload a double does not keep).
 *
 * Compact arrays carry a type description and untagged contents; the
 * description is validated once (depth, zero-size elements) and then drives
 * the decoding of each element into ordinary tagged nodes.
 */
#include <string.h>

#include "axdr.h"
#include "cosem_time.h"
#include "meter_error.h"

/* Contents are at most UINT32_MAX bytes, so any minimum size beyond this
 * already cannot fit; saturating here keeps the arithmetic from wrapping. */
#define MINSIZE_SAT ((uint64_t)1 << 40)

struct dec {
	const uint8_t *buf;
	size_t len; /* end of what may be read (contents end inside compact arrays) */
	size_t pos;
	struct axdr_node *nodes; /* NULL: count only (axdr_skip) */
	size_t cap;
	size_t n;
	struct axdr_node scratch;
};

const char *
axdr_tag_name(uint8_t tag)
{
	switch (tag) {
	case AXDR_NULL: return "null-data";
	case AXDR_ARRAY: return "array";
	case AXDR_STRUCTURE: return "structure";
	case AXDR_BOOLEAN: return "boolean";
	case AXDR_BIT_STRING: return "bit-string";
	case AXDR_DOUBLE_LONG: return "double-long";
	case AXDR_DOUBLE_LONG_UNSIGNED: return "double-long-unsigned";
	case AXDR_FLOATING_POINT: return "floating-point";
	case AXDR_OCTET_STRING: return "octet-string";
	case AXDR_VISIBLE_STRING: return "visible-string";
	case AXDR_UTF8_STRING: return "utf8-string";
	case AXDR_BCD: return "bcd";
	case AXDR_INTEGER: return "integer";
	case AXDR_LONG: return "long";
	case AXDR_UNSIGNED: return "unsigned";
	case AXDR_LONG_UNSIGNED: return "long-unsigned";
	case AXDR_COMPACT_ARRAY: return "compact-array";
	case AXDR_LONG64: return "long64";
	case AXDR_LONG64_UNSIGNED: return "long64-unsigned";
	case AXDR_ENUM: return "enum";
	case AXDR_FLOAT32: return "float32";
	case AXDR_FLOAT64: return "float64";
	case AXDR_DATE_TIME: return "date-time";
	case AXDR_DATE: return "date";
	case AXDR_TIME: return "time";
	case AXDR_DONT_CARE: return "dont-care";
	}
	return "unknown";
}

/*
 * Smallest content size of a simple (non-container) type, or -1 for a tag
 * that is not a Data type.  Variable-length types need at least their
 * length byte.
 */
static int
simple_minsize(uint8_t tag)
{
	switch (tag) {
	case AXDR_NULL:
	case AXDR_DONT_CARE:
		return 0;
	case AXDR_BOOLEAN:
	case AXDR_BCD:
	case AXDR_INTEGER:
	case AXDR_UNSIGNED:
	case AXDR_ENUM:
	case AXDR_BIT_STRING:
	case AXDR_OCTET_STRING:
	case AXDR_VISIBLE_STRING:
	case AXDR_UTF8_STRING:
		return 1;
	case AXDR_LONG:
	case AXDR_LONG_UNSIGNED:
		return 2;
	case AXDR_DOUBLE_LONG:
	case AXDR_DOUBLE_LONG_UNSIGNED:
	case AXDR_FLOATING_POINT:
	case AXDR_FLOAT32:
	case AXDR_TIME:
		return 4;
	case AXDR_DATE:
		return 5;
	case AXDR_LONG64:
	case AXDR_LONG64_UNSIGNED:
	case AXDR_FLOAT64:
		return 8;
	case AXDR_DATE_TIME:
		return 12;
	}
	return -1;
}

ssize_t
axdr_decode_length(const uint8_t *buf, size_t len, uint32_t *out)
{
	uint32_t v = 0;
	unsigned n, i;

	if (len < 1)
		return METER_ENEEDMORE;
	if (buf[0] < 0x80) {
		*out = buf[0];
		return 1;
	}
	n = buf[0] & 0x7f;
	if (n == 0 || n > 4)
		return METER_EMALFORMED;
	if (len < 1 + (size_t)n)
		return METER_ENEEDMORE;
	/* Only the shortest form is accepted: any other would not re-encode
	 * to the same bytes. */
	if (buf[1] == 0)
		return METER_EMALFORMED;
	for (i = 1; i <= n; i++)
		v = v << 8 | buf[i];
	if (v < 0x80)
		return METER_EMALFORMED;
	*out = v;
	return 1 + n;
}

void
axdr_put_length(struct mbuf *b, uint32_t n)
{
	if (n < 0x80) {
		mbuf_u8(b, (uint8_t)n);
	} else if (n <= 0xff) {
		mbuf_u8(b, 0x81);
		mbuf_u8(b, (uint8_t)n);
	} else if (n <= 0xffff) {
		mbuf_u8(b, 0x82);
		mbuf_be16(b, (uint16_t)n);
	} else if (n <= 0xffffff) {
		uint8_t *d = mbuf_reserve(b, 4);
		if (d) {
			d[0] = 0x83;
			d[1] = n >> 16;
			d[2] = n >> 8;
			d[3] = n;
		}
	} else {
		mbuf_u8(b, 0x84);
		mbuf_be32(b, n);
	}
}

static size_t
length_size(uint32_t n)
{
	if (n < 0x80)
		return 1;
	if (n <= 0xff)
		return 2;
	if (n <= 0xffff)
		return 3;
	if (n <= 0xffffff)
		return 4;
	return 5;
}

static uint64_t
be64(const uint8_t *p)
{
	return (uint64_t)be32(p) << 32 | be32(p + 4);
}

static float
f32_from_bits(uint32_t u)
{
	float f;
	memcpy(&f, &u, 4);
	return f;
}

static uint32_t
f32_bits(float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	return u;
}

static uint64_t
f64_bits(double f)
{
	uint64_t u;
	memcpy(&u, &f, 8);
	return u;
}

static double
f64_from_bits(uint64_t u)
{
	double f;
	memcpy(&f, &u, 8);
	return f;
}

/*
 * Parse a compact-array type description at p.  Returns its length in
 * bytes and the smallest content size of one value it describes
 * (saturated).  Descriptions nest like the values they describe, so depth
 * counts the same way.
 */
static ssize_t
desc_parse(const uint8_t *p, size_t len, unsigned depth, uint64_t *minsize)
{
	uint64_t sub, sum;
	uint32_t cnt;
	ssize_t r;
	size_t off;
	int m;

	if (len < 1)
		return METER_ENEEDMORE;
	switch (p[0]) {
	case AXDR_ARRAY:
		if (depth >= AXDR_MAX_DEPTH)
			return METER_ELIMIT;
		if (len < 3)
			return METER_ENEEDMORE;
		cnt = be16(p + 1);
		r = desc_parse(p + 3, len - 3, depth + 1, &sub);
		if (r < 0)
			return r;
		/* Zero-size elements would let a few bytes describe an
		 * unbounded number of values. */
		if (sub == 0 && cnt > 0)
			return METER_EMALFORMED;
		sum = cnt * sub;
		*minsize = sum > MINSIZE_SAT ? MINSIZE_SAT : sum;
		return 3 + r;
	case AXDR_STRUCTURE:
		if (depth >= AXDR_MAX_DEPTH)
			return METER_ELIMIT;
		r = axdr_decode_length(p + 1, len - 1, &cnt);
		if (r < 0)
			return r;
		off = 1 + (size_t)r;
		if (cnt > len - off)
			return METER_EMALFORMED;
		sum = 0;
		while (cnt--) {
			r = desc_parse(p + off, len - off, depth + 1, &sub);
			if (r < 0)
				return r;
			off += (size_t)r;
			sum += sub;
			if (sum > MINSIZE_SAT)
				sum = MINSIZE_SAT;
		}
		*minsize = sum;
		return (ssize_t)off;
	case AXDR_COMPACT_ARRAY:
		return METER_EMALFORMED;
	default:
		m = simple_minsize(p[0]);
		if (m < 0)
			return METER_EMALFORMED;
		*minsize = (uint64_t)m;
		return 1;
	}
}

static inline int
dec_node(struct dec *d, struct axdr_node **out)
{
	if (!d->nodes) {
		d->n++;
		*out = &d->scratch;
		return 0;
	}
	if (d->n >= d->cap)
		return METER_ENOSPC;
	*out = &d->nodes[d->n++];
	return 0;
}

static inline void
dec_close(struct dec *d, size_t idx)
{
	if (d->nodes)
		d->nodes[idx].span = (uint32_t)(d->n - idx);
}

/* Contents of one value of a non-container type; the tag is already read. */
static inline int
dec_simple(struct dec *d, uint8_t tag, struct axdr_node *nd)
{
	const uint8_t *p = d->buf + d->pos;
	size_t left = d->len - d->pos;
	uint32_t l;
	uint64_t nbytes;
	ssize_t r;

	nd->tag = tag;
	nd->len = 0;
	nd->span = 1;
	nd->ptr = NULL;
	nd->v.u = 0;
	switch (tag) {
	case AXDR_NULL:
	case AXDR_DONT_CARE:
		return 0;
	case AXDR_BOOLEAN:
		if (left < 1)
			return METER_ENEEDMORE;
		nd->v.u = p[0] != 0;
		nd->ptr = p;
		d->pos += 1;
		return 0;
	case AXDR_INTEGER:
	case AXDR_BCD:
		if (left < 1)
			return METER_ENEEDMORE;
		nd->v.i = (int8_t)p[0];
		d->pos += 1;
		return 0;
	case AXDR_UNSIGNED:
	case AXDR_ENUM:
		if (left < 1)
			return METER_ENEEDMORE;
		nd->v.u = p[0];
		d->pos += 1;
		return 0;
	case AXDR_LONG:
		if (left < 2)
			return METER_ENEEDMORE;
		nd->v.i = (int16_t)be16(p);
		d->pos += 2;
		return 0;
	case AXDR_LONG_UNSIGNED:
		if (left < 2)
			return METER_ENEEDMORE;
		nd->v.u = be16(p);
		d->pos += 2;
		return 0;
	case AXDR_DOUBLE_LONG:
		if (left < 4)
			return METER_ENEEDMORE;
		nd->v.i = (int32_t)be32(p);
		d->pos += 4;
		return 0;
	case AXDR_DOUBLE_LONG_UNSIGNED:
		if (left < 4)
			return METER_ENEEDMORE;
		nd->v.u = be32(p);
		d->pos += 4;
		return 0;
	case AXDR_LONG64:
		if (left < 8)
			return METER_ENEEDMORE;
		nd->v.i = (int64_t)be64(p);
		d->pos += 8;
		return 0;
	case AXDR_LONG64_UNSIGNED:
		if (left < 8)
			return METER_ENEEDMORE;
		nd->v.u = be64(p);
		d->pos += 8;
		return 0;
	case AXDR_FLOATING_POINT:
	case AXDR_FLOAT32:
		if (left < 4)
			return METER_ENEEDMORE;
		nd->v.f = f32_from_bits(be32(p));
		nd->ptr = p;
		d->pos += 4;
		return 0;
	case AXDR_FLOAT64:
		if (left < 8)
			return METER_ENEEDMORE;
		nd->v.f = f64_from_bits(be64(p));
		nd->ptr = p;
		d->pos += 8;
		return 0;
	case AXDR_DATE_TIME:
	case AXDR_DATE:
	case AXDR_TIME:
		l = tag == AXDR_DATE_TIME ? 12 : tag == AXDR_DATE ? 5 : 4;
		if (left < l)
			return METER_ENEEDMORE;
		nd->len = l;
		nd->ptr = p;
		d->pos += l;
		return 0;
	case AXDR_OCTET_STRING:
	case AXDR_VISIBLE_STRING:
	case AXDR_UTF8_STRING:
	case AXDR_BIT_STRING:
		r = axdr_decode_length(p, left, &l);
		if (r < 0)
			return (int)r;
		nbytes = tag == AXDR_BIT_STRING ? ((uint64_t)l + 7) / 8 : l;
		if (nbytes > left - (size_t)r)
			return METER_ENEEDMORE;
		nd->len = l;
		nd->ptr = p + r;
		d->pos += (size_t)r + (size_t)nbytes;
		return 0;
	}
	return METER_EMALFORMED;
}

static int dec_value(struct dec *d, unsigned depth);

/*
 * One untagged value of a compact array's contents, typed by the
 * (already validated) description at desc.
 */
static int
dec_typed(struct dec *d, const uint8_t *desc, size_t dlen, unsigned depth)
{
	struct axdr_node *nd;
	size_t idx = d->n;
	uint64_t sub;
	uint32_t cnt, i;
	ssize_t r, hl;
	size_t off;
	int e;

	if ((e = dec_node(d, &nd)) < 0)
		return e;
	switch (desc[0]) {
	case AXDR_ARRAY:
		cnt = be16(desc + 1);
		r = desc_parse(desc + 3, dlen - 3, depth + 1, &sub);
		if (r < 0)
			return (int)r;
		if (cnt * sub > d->len - d->pos)
			return METER_EMALFORMED;
		nd->tag = AXDR_ARRAY;
		nd->len = cnt;
		nd->ptr = NULL;
		nd->v.u = 0;
		if (d->nodes && cnt > d->cap - d->n)
			return METER_ENOSPC;
		for (i = 0; i < cnt; i++)
			if ((e = dec_typed(d, desc + 3, (size_t)r, depth + 1)) < 0)
				return e;
		break;
	case AXDR_STRUCTURE:
		hl = axdr_decode_length(desc + 1, dlen - 1, &cnt);
		if (hl < 0)
			return (int)hl;
		nd->tag = AXDR_STRUCTURE;
		nd->len = cnt;
		nd->ptr = NULL;
		nd->v.u = 0;
		off = 1 + (size_t)hl;
		for (i = 0; i < cnt; i++) {
			r = desc_parse(desc + off, dlen - off, depth + 1, &sub);
			if (r < 0)
				return (int)r;
			if ((e = dec_typed(d, desc + off, (size_t)r, depth + 1)) < 0)
				return e;
			off += (size_t)r;
		}
		break;
	default:
		return dec_simple(d, desc[0], nd);
	}
	dec_close(d, idx);
	return 0;
}

static int
dec_compact(struct dec *d, struct axdr_node *nd, size_t idx, unsigned depth)
{
	const uint8_t *desc = d->buf + d->pos;
	size_t saved_len = d->len, end;
	uint64_t minsize;
	uint32_t clen, count = 0;
	ssize_t dl, r;
	int e;

	if (depth >= AXDR_MAX_DEPTH)
		return METER_ELIMIT;
	dl = desc_parse(desc, d->len - d->pos, depth + 1, &minsize);
	if (dl < 0)
		return (int)dl;
	d->pos += (size_t)dl;
	r = axdr_decode_length(d->buf + d->pos, d->len - d->pos, &clen);
	if (r < 0)
		return (int)r;
	d->pos += (size_t)r;
	if (clen > d->len - d->pos)
		return METER_ENEEDMORE;
	if (minsize == 0 && clen > 0)
		return METER_EMALFORMED;
	nd->tag = AXDR_COMPACT_ARRAY;
	nd->ptr = desc;
	nd->v.u = (uint64_t)dl;
	nd->len = 0;
	end = d->pos + clen;
	/* The contents length is authoritative: elements must fill it
	 * exactly, and running short inside it is malformed, not truncated. */
	d->len = end;
	while (d->pos < end) {
		e = dec_typed(d, desc, (size_t)dl, depth + 1);
		if (e < 0) {
			d->len = saved_len;
			return e == METER_ENEEDMORE ? METER_EMALFORMED : e;
		}
		count++;
	}
	d->len = saved_len;
	if (d->nodes)
		d->nodes[idx].len = count;
	return 0;
}

static int
dec_value(struct dec *d, unsigned depth)
{
	struct axdr_node *nd;
	size_t idx;
	uint32_t cnt, i;
	ssize_t r;
	uint8_t tag;
	int e;

	if (d->pos >= d->len)
		return METER_ENEEDMORE;
	tag = d->buf[d->pos++];
	if (tag == AXDR_ARRAY || tag == AXDR_STRUCTURE) {
		if (depth >= AXDR_MAX_DEPTH)
			return METER_ELIMIT;
		r = axdr_decode_length(d->buf + d->pos, d->len - d->pos, &cnt);
		if (r < 0)
			return (int)r;
		d->pos += (size_t)r;
		/* Every element takes at least its tag byte. */
		if (cnt > d->len - d->pos)
			return METER_EMALFORMED;
		idx = d->n;
		if ((e = dec_node(d, &nd)) < 0)
			return e;
		if (d->nodes && cnt > d->cap - d->n)
			return METER_ENOSPC;
		nd->tag = tag;
		nd->len = cnt;
		nd->ptr = NULL;
		nd->v.u = 0;
		for (i = 0; i < cnt; i++)
			if ((e = dec_value(d, depth + 1)) < 0)
				return e;
		dec_close(d, idx);
		return 0;
	}
	idx = d->n;
	if ((e = dec_node(d, &nd)) < 0)
		return e;
	if (tag == AXDR_COMPACT_ARRAY) {
		if ((e = dec_compact(d, nd, idx, depth)) < 0)
			return e;
		dec_close(d, idx);
		return 0;
	}
	return dec_simple(d, tag, nd);
}

ssize_t
axdr_decode(const uint8_t *buf, size_t len, struct axdr_node *nodes, size_t cap,
	    size_t *n_nodes)
{
	struct dec d;
	int e;

	if (!nodes)
		return METER_EINVAL;
	d.buf = buf;
	d.len = len;
	d.pos = 0;
	d.nodes = nodes;
	/* spans are 32-bit */
	d.cap = cap > UINT32_MAX ? UINT32_MAX : cap;
	d.n = 0;
	if ((e = dec_value(&d, 0)) < 0)
		return e;
	*n_nodes = d.n;
	return (ssize_t)d.pos;
}

ssize_t
axdr_skip(const uint8_t *buf, size_t len)
{
	struct dec d;
	int e;

	d.buf = buf;
	d.len = len;
	d.pos = 0;
	d.nodes = NULL;
	d.cap = 0;
	d.n = 0;
	if ((e = dec_value(&d, 0)) < 0)
		return e;
	return (ssize_t)d.pos;
}

ssize_t
axdr_decode_header(const uint8_t *buf, size_t len, uint8_t want_tag, uint32_t *count)
{
	ssize_t r;

	if (len < 1)
		return METER_ENEEDMORE;
	if (buf[0] != want_tag || (want_tag != AXDR_ARRAY && want_tag != AXDR_STRUCTURE))
		return METER_EMALFORMED;
	r = axdr_decode_length(buf + 1, len - 1, count);
	if (r < 0)
		return r;
	return 1 + r;
}

const struct axdr_node *
axdr_child(const struct axdr_node *n, uint32_t i)
{
	const struct axdr_node *c;

	if (n->tag != AXDR_ARRAY && n->tag != AXDR_STRUCTURE && n->tag != AXDR_COMPACT_ARRAY)
		return NULL;
	if (i >= n->len)
		return NULL;
	c = n + 1;
	while (i--) {
		if (c->span == 0)
			return NULL;
		c += c->span;
	}
	return c;
}

int
axdr_to_int64(const struct axdr_node *n, int64_t *out)
{
	switch (n->tag) {
	case AXDR_INTEGER:
	case AXDR_LONG:
	case AXDR_DOUBLE_LONG:
	case AXDR_LONG64:
	case AXDR_BCD:
		*out = n->v.i;
		return 0;
	case AXDR_BOOLEAN:
		*out = n->v.u != 0;
		return 0;
	case AXDR_UNSIGNED:
	case AXDR_LONG_UNSIGNED:
	case AXDR_DOUBLE_LONG_UNSIGNED:
	case AXDR_LONG64_UNSIGNED:
	case AXDR_ENUM:
		if (n->v.u > INT64_MAX)
			return METER_ERANGE;
		*out = (int64_t)n->v.u;
		return 0;
	}
	return METER_EINVAL;
}

int
axdr_to_double(const struct axdr_node *n, double *out)
{
	switch (n->tag) {
	case AXDR_FLOATING_POINT:
	case AXDR_FLOAT32:
	case AXDR_FLOAT64:
		*out = n->v.f;
		return 0;
	case AXDR_INTEGER:
	case AXDR_LONG:
	case AXDR_DOUBLE_LONG:
	case AXDR_LONG64:
	case AXDR_BCD:
		*out = (double)n->v.i;
		return 0;
	case AXDR_BOOLEAN:
		*out = n->v.u != 0;
		return 0;
	case AXDR_UNSIGNED:
	case AXDR_LONG_UNSIGNED:
	case AXDR_DOUBLE_LONG_UNSIGNED:
	case AXDR_LONG64_UNSIGNED:
	case AXDR_ENUM:
		*out = (double)n->v.u;
		return 0;
	}
	return METER_EINVAL;
}

/* Bytes a string-like node's content occupies. */
static size_t
content_bytes(const struct axdr_node *n)
{
	if (n->tag == AXDR_BIT_STRING)
		return (size_t)(((uint64_t)n->len + 7) / 8);
	return n->len;
}

static bool
node_equal(const struct axdr_node *a, const struct axdr_node *b)
{
	if (a->tag != b->tag || a->span != b->span)
		return false;
	switch (a->tag) {
	case AXDR_NULL:
	case AXDR_DONT_CARE:
		return true;
	case AXDR_ARRAY:
	case AXDR_STRUCTURE:
		return a->len == b->len;
	case AXDR_COMPACT_ARRAY:
		return a->len == b->len && a->v.u == b->v.u &&
		       (a->v.u == 0 || memcmp(a->ptr, b->ptr, (size_t)a->v.u) == 0);
	case AXDR_BOOLEAN:
		return (a->v.u != 0) == (b->v.u != 0);
	case AXDR_INTEGER:
	case AXDR_LONG:
	case AXDR_DOUBLE_LONG:
	case AXDR_LONG64:
	case AXDR_BCD:
		return a->v.i == b->v.i;
	case AXDR_UNSIGNED:
	case AXDR_LONG_UNSIGNED:
	case AXDR_DOUBLE_LONG_UNSIGNED:
	case AXDR_LONG64_UNSIGNED:
	case AXDR_ENUM:
		return a->v.u == b->v.u;
	case AXDR_FLOATING_POINT:
	case AXDR_FLOAT32:
	case AXDR_FLOAT64:
		/* bit patterns, so that NaN equals itself and -0 differs */
		return f64_bits(a->v.f) == f64_bits(b->v.f);
	case AXDR_BIT_STRING:
	case AXDR_OCTET_STRING:
	case AXDR_VISIBLE_STRING:
	case AXDR_UTF8_STRING:
	case AXDR_DATE_TIME:
	case AXDR_DATE:
	case AXDR_TIME:
		if (a->len != b->len)
			return false;
		return content_bytes(a) == 0 || memcmp(a->ptr, b->ptr, content_bytes(a)) == 0;
	}
	return false;
}

bool
axdr_equal(const struct axdr_node *a, const struct axdr_node *b)
{
	uint32_t span = a->span ? a->span : 1, i;

	/* Equal trees have the same pre-order layout, so a walk in step
	 * compares them completely. */
	for (i = 0; i < span; i++)
		if (!node_equal(&a[i], &b[i]))
			return false;
	return true;
}

/* ---- encoding ---------------------------------------------------------- */

/* Contents (no tag) of a non-container node. */
static int
enc_simple(const struct axdr_node *n, struct mbuf *b)
{
	size_t nb;
	float f;

	switch (n->tag) {
	case AXDR_NULL:
	case AXDR_DONT_CARE:
		return 0;
	case AXDR_BOOLEAN:
		if (n->ptr && (n->ptr[0] != 0) == (n->v.u != 0))
			mbuf_u8(b, n->ptr[0]);
		else
			mbuf_u8(b, n->v.u ? 0xff : 0x00);
		return 0;
	case AXDR_INTEGER:
	case AXDR_BCD:
		mbuf_u8(b, (uint8_t)n->v.i);
		return 0;
	case AXDR_UNSIGNED:
	case AXDR_ENUM:
		mbuf_u8(b, (uint8_t)n->v.u);
		return 0;
	case AXDR_LONG:
		mbuf_be16(b, (uint16_t)n->v.i);
		return 0;
	case AXDR_LONG_UNSIGNED:
		mbuf_be16(b, (uint16_t)n->v.u);
		return 0;
	case AXDR_DOUBLE_LONG:
		mbuf_be32(b, (uint32_t)n->v.i);
		return 0;
	case AXDR_DOUBLE_LONG_UNSIGNED:
		mbuf_be32(b, (uint32_t)n->v.u);
		return 0;
	case AXDR_LONG64:
		mbuf_be64(b, (uint64_t)n->v.i);
		return 0;
	case AXDR_LONG64_UNSIGNED:
		mbuf_be64(b, n->v.u);
		return 0;
	case AXDR_FLOATING_POINT:
	case AXDR_FLOAT32:
		/* The raw bytes win when they still say the same thing, which
		 * keeps a NaN's payload. */
		if (n->ptr &&
		    f64_bits((double)f32_from_bits(be32(n->ptr))) == f64_bits(n->v.f)) {
			mbuf_put(b, n->ptr, 4);
		} else {
			f = (float)n->v.f;
			mbuf_be32(b, f32_bits(f));
		}
		return 0;
	case AXDR_FLOAT64:
		mbuf_be64(b, f64_bits(n->v.f));
		return 0;
	case AXDR_DATE_TIME:
	case AXDR_DATE:
	case AXDR_TIME:
		nb = n->tag == AXDR_DATE_TIME ? 12 : n->tag == AXDR_DATE ? 5 : 4;
		if (n->len != nb || !n->ptr)
			return METER_EMALFORMED;
		mbuf_put(b, n->ptr, nb);
		return 0;
	case AXDR_OCTET_STRING:
	case AXDR_VISIBLE_STRING:
	case AXDR_UTF8_STRING:
	case AXDR_BIT_STRING:
		nb = content_bytes(n);
		if (nb && !n->ptr)
			return METER_EMALFORMED;
		axdr_put_length(b, n->len);
		mbuf_put(b, n->ptr, nb);
		return 0;
	}
	return METER_EMALFORMED;
}

/* Untagged value typed by a compact-array description; returns nodes used. */
static ssize_t
enc_typed(const struct axdr_node *n, size_t avail, const uint8_t *desc, size_t dlen,
	  unsigned depth, struct mbuf *b)
{
	uint64_t sub;
	uint32_t cnt, i;
	ssize_t r, hl, used;
	size_t off, k;
	int e;

	if (avail < 1 || n->span < 1 || n->span > avail)
		return METER_EMALFORMED;
	if (n->tag != desc[0])
		return METER_EMALFORMED;
	switch (desc[0]) {
	case AXDR_ARRAY:
		cnt = be16(desc + 1);
		if (n->len != cnt)
			return METER_EMALFORMED;
		r = desc_parse(desc + 3, dlen - 3, depth + 1, &sub);
		if (r < 0)
			return r;
		k = 1;
		for (i = 0; i < cnt; i++) {
			used = enc_typed(n + k, n->span - k, desc + 3, (size_t)r, depth + 1, b);
			if (used < 0)
				return used;
			k += (size_t)used;
		}
		break;
	case AXDR_STRUCTURE:
		hl = axdr_decode_length(desc + 1, dlen - 1, &cnt);
		if (hl < 0)
			return hl;
		if (n->len != cnt)
			return METER_EMALFORMED;
		off = 1 + (size_t)hl;
		k = 1;
		for (i = 0; i < cnt; i++) {
			r = desc_parse(desc + off, dlen - off, depth + 1, &sub);
			if (r < 0)
				return r;
			used = enc_typed(n + k, n->span - k, desc + off, (size_t)r, depth + 1, b);
			if (used < 0)
				return used;
			k += (size_t)used;
			off += (size_t)r;
		}
		break;
	default:
		if (n->span != 1)
			return METER_EMALFORMED;
		if ((e = enc_simple(n, b)) < 0)
			return e;
		return 1;
	}
	if (k != n->span)
		return METER_EMALFORMED;
	return (ssize_t)k;
}

static ssize_t enc_value(const struct axdr_node *n, size_t avail, unsigned depth,
			 struct mbuf *b);

static ssize_t
enc_compact(const struct axdr_node *n, unsigned depth, struct mbuf *b)
{
	uint64_t minsize;
	size_t k = 1, start, clen, ls;
	uint32_t i;
	ssize_t dl, used;
	uint8_t *d;

	if (!n->ptr || n->v.u == 0 || n->v.u > SIZE_MAX)
		return METER_EMALFORMED;
	dl = desc_parse(n->ptr, (size_t)n->v.u, depth + 1, &minsize);
	if (dl < 0)
		return dl == METER_ELIMIT ? dl : METER_EMALFORMED;
	if ((uint64_t)dl != n->v.u)
		return METER_EMALFORMED;
	if (minsize == 0 && n->len > 0)
		return METER_EMALFORMED;
	mbuf_put(b, n->ptr, (size_t)dl);
	/* The contents length precedes the contents; write them first and
	 * slide them up once their length is known. */
	start = b->len;
	for (i = 0; i < n->len; i++) {
		used = enc_typed(n + k, n->span - k, n->ptr, (size_t)dl, depth + 1, b);
		if (used < 0)
			return used;
		k += (size_t)used;
	}
	if (k != n->span)
		return METER_EMALFORMED;
	if (b->err)
		return b->err;
	clen = b->len - start;
	if (clen > UINT32_MAX)
		return METER_EMALFORMED;
	ls = length_size((uint32_t)clen);
	if (!mbuf_reserve(b, ls))
		return b->err;
	d = b->p + start;
	memmove(d + ls, d, clen);
	b->len = start;
	axdr_put_length(b, (uint32_t)clen);
	b->len = start + ls + clen;
	return (ssize_t)k;
}

/* One tagged value and its subtree; returns nodes used. */
static ssize_t
enc_value(const struct axdr_node *n, size_t avail, unsigned depth, struct mbuf *b)
{
	size_t k;
	uint32_t i;
	ssize_t used;
	int e;

	if (avail < 1 || n->span < 1 || n->span > avail)
		return METER_EMALFORMED;
	if (b->err)
		return b->err;
	switch (n->tag) {
	case AXDR_ARRAY:
	case AXDR_STRUCTURE:
		if (depth >= AXDR_MAX_DEPTH)
			return METER_ELIMIT;
		mbuf_u8(b, n->tag);
		axdr_put_length(b, n->len);
		k = 1;
		for (i = 0; i < n->len; i++) {
			used = enc_value(n + k, n->span - k, depth + 1, b);
			if (used < 0)
				return used;
			k += (size_t)used;
		}
		if (k != n->span)
			return METER_EMALFORMED;
		return (ssize_t)k;
	case AXDR_COMPACT_ARRAY:
		if (depth >= AXDR_MAX_DEPTH)
			return METER_ELIMIT;
		mbuf_u8(b, n->tag);
		return enc_compact(n, depth, b);
	default:
		if (n->span != 1)
			return METER_EMALFORMED;
		mbuf_u8(b, n->tag);
		if ((e = enc_simple(n, b)) < 0)
			return e;
		return 1;
	}
}

ssize_t
axdr_encode(const struct axdr_node *nodes, size_t n, struct mbuf *b)
{
	size_t start = b->len, k = 0;
	ssize_t used;

	if (b->err)
		return b->err;
	while (k < n) {
		used = enc_value(nodes + k, n - k, 0, b);
		if (used < 0)
			return b->err ? b->err : used;
		k += (size_t)used;
	}
	if (b->err)
		return b->err;
	return (ssize_t)(b->len - start);
}

/* ---- writers ----------------------------------------------------------- */

void
axdr_put_null(struct mbuf *b)
{
	mbuf_u8(b, AXDR_NULL);
}

void
axdr_put_array(struct mbuf *b, uint32_t count)
{
	mbuf_u8(b, AXDR_ARRAY);
	axdr_put_length(b, count);
}

void
axdr_put_structure(struct mbuf *b, uint32_t count)
{
	mbuf_u8(b, AXDR_STRUCTURE);
	axdr_put_length(b, count);
}

void
axdr_put_boolean(struct mbuf *b, bool v)
{
	mbuf_u8(b, AXDR_BOOLEAN);
	mbuf_u8(b, v ? 0xff : 0x00);
}

void
axdr_put_bit_string(struct mbuf *b, const uint8_t *bits, uint32_t nbits)
{
	mbuf_u8(b, AXDR_BIT_STRING);
	axdr_put_length(b, nbits);
	mbuf_put(b, bits, (size_t)(((uint64_t)nbits + 7) / 8));
}

void
axdr_put_integer(struct mbuf *b, int8_t v)
{
	mbuf_u8(b, AXDR_INTEGER);
	mbuf_u8(b, (uint8_t)v);
}

void
axdr_put_long(struct mbuf *b, int16_t v)
{
	mbuf_u8(b, AXDR_LONG);
	mbuf_be16(b, (uint16_t)v);
}

void
axdr_put_double_long(struct mbuf *b, int32_t v)
{
	mbuf_u8(b, AXDR_DOUBLE_LONG);
	mbuf_be32(b, (uint32_t)v);
}

void
axdr_put_long64(struct mbuf *b, int64_t v)
{
	mbuf_u8(b, AXDR_LONG64);
	mbuf_be64(b, (uint64_t)v);
}

void
axdr_put_unsigned(struct mbuf *b, uint8_t v)
{
	mbuf_u8(b, AXDR_UNSIGNED);
	mbuf_u8(b, v);
}

void
axdr_put_long_unsigned(struct mbuf *b, uint16_t v)
{
	mbuf_u8(b, AXDR_LONG_UNSIGNED);
	mbuf_be16(b, v);
}

void
axdr_put_double_long_unsigned(struct mbuf *b, uint32_t v)
{
	mbuf_u8(b, AXDR_DOUBLE_LONG_UNSIGNED);
	mbuf_be32(b, v);
}

void
axdr_put_long64_unsigned(struct mbuf *b, uint64_t v)
{
	mbuf_u8(b, AXDR_LONG64_UNSIGNED);
	mbuf_be64(b, v);
}

void
axdr_put_enum(struct mbuf *b, uint8_t v)
{
	mbuf_u8(b, AXDR_ENUM);
	mbuf_u8(b, v);
}

void
axdr_put_bcd(struct mbuf *b, int8_t v)
{
	mbuf_u8(b, AXDR_BCD);
	mbuf_u8(b, (uint8_t)v);
}

void
axdr_put_float32(struct mbuf *b, float v)
{
	mbuf_u8(b, AXDR_FLOAT32);
	mbuf_be32(b, f32_bits(v));
}

void
axdr_put_float64(struct mbuf *b, double v)
{
	mbuf_u8(b, AXDR_FLOAT64);
	mbuf_be64(b, f64_bits(v));
}

void
axdr_put_octet_string(struct mbuf *b, const void *p, uint32_t n)
{
	mbuf_u8(b, AXDR_OCTET_STRING);
	axdr_put_length(b, n);
	mbuf_put(b, p, n);
}

void
axdr_put_visible_string(struct mbuf *b, const char *s, uint32_t n)
{
	mbuf_u8(b, AXDR_VISIBLE_STRING);
	axdr_put_length(b, n);
	mbuf_put(b, s, n);
}

void
axdr_put_utf8_string(struct mbuf *b, const char *s, uint32_t n)
{
	mbuf_u8(b, AXDR_UTF8_STRING);
	axdr_put_length(b, n);
	mbuf_put(b, s, n);
}

void
axdr_put_datetime_octets(struct mbuf *b, const struct cosem_datetime *dt)
{
	uint8_t raw[12];

	cosem_datetime_encode(dt, raw);
	mbuf_u8(b, AXDR_OCTET_STRING);
	mbuf_u8(b, 12);
	mbuf_put(b, raw, 12);
}

void
axdr_put_datetime(struct mbuf *b, const struct cosem_datetime *dt)
{
	uint8_t raw[12];

	cosem_datetime_encode(dt, raw);
	mbuf_u8(b, AXDR_DATE_TIME);
	mbuf_put(b, raw, 12);
}
