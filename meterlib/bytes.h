/*
 * bytes.h: bounded byte writer and reader shared by meterlib's codecs.
 *
 * A writer appends into a buffer the caller owns; running past its capacity
 * does not write but sets `err` to METER_ENOSPC, so an encoder can emit a
 * whole APDU and check once at the end.  A reader walks a const buffer and
 * reports METER_ENEEDMORE instead of reading past its end.  Both are plain
 * structs on the caller's stack: no allocation.
 */
#ifndef METER_BYTES_H
#define METER_BYTES_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "meter_error.h"

struct mbuf {
	uint8_t *p;
	size_t len;
	size_t cap;
	int err; /* 0, or METER_ENOSPC once a write did not fit */
};

static inline void
mbuf_init(struct mbuf *b, uint8_t *p, size_t cap)
{
	b->p = p;
	b->len = 0;
	b->cap = cap;
	b->err = 0;
}

/* Reserve n bytes and return where to write them, or NULL (err set). */
static inline uint8_t *
mbuf_reserve(struct mbuf *b, size_t n)
{
	if (b->err || n > b->cap - b->len) {
		b->err = METER_ENOSPC;
		return NULL;
	}
	b->len += n;
	return b->p + b->len - n;
}

static inline void
mbuf_put(struct mbuf *b, const void *src, size_t n)
{
	uint8_t *d = mbuf_reserve(b, n);
	if (d && n)
		memcpy(d, src, n);
}

static inline void
mbuf_u8(struct mbuf *b, uint8_t v)
{
	uint8_t *d = mbuf_reserve(b, 1);
	if (d)
		d[0] = v;
}

static inline void
mbuf_be16(struct mbuf *b, uint16_t v)
{
	uint8_t *d = mbuf_reserve(b, 2);
	if (d) {
		d[0] = v >> 8;
		d[1] = v;
	}
}

static inline void
mbuf_be32(struct mbuf *b, uint32_t v)
{
	uint8_t *d = mbuf_reserve(b, 4);
	if (d) {
		d[0] = v >> 24;
		d[1] = v >> 16;
		d[2] = v >> 8;
		d[3] = v;
	}
}

static inline void
mbuf_be64(struct mbuf *b, uint64_t v)
{
	mbuf_be32(b, (uint32_t)(v >> 32));
	mbuf_be32(b, (uint32_t)v);
}

struct mrd {
	const uint8_t *p;
	size_t len;
	size_t off;
};

static inline void
mrd_init(struct mrd *r, const uint8_t *p, size_t len)
{
	r->p = p;
	r->len = len;
	r->off = 0;
}

static inline size_t
mrd_left(const struct mrd *r)
{
	return r->len - r->off;
}

/* Point *out at the next n bytes and step over them. */
static inline int
mrd_take(struct mrd *r, size_t n, const uint8_t **out)
{
	if (n > r->len - r->off)
		return METER_ENEEDMORE;
	*out = r->p + r->off;
	r->off += n;
	return 0;
}

static inline int
mrd_u8(struct mrd *r, uint8_t *v)
{
	if (r->off >= r->len)
		return METER_ENEEDMORE;
	*v = r->p[r->off++];
	return 0;
}

static inline int
mrd_be16(struct mrd *r, uint16_t *v)
{
	const uint8_t *q;
	if (mrd_take(r, 2, &q))
		return METER_ENEEDMORE;
	*v = (uint16_t)(q[0] << 8 | q[1]);
	return 0;
}

static inline int
mrd_be32(struct mrd *r, uint32_t *v)
{
	const uint8_t *q;
	if (mrd_take(r, 4, &q))
		return METER_ENEEDMORE;
	*v = (uint32_t)q[0] << 24 | (uint32_t)q[1] << 16 | (uint32_t)q[2] << 8 | q[3];
	return 0;
}

static inline int
mrd_be64(struct mrd *r, uint64_t *v)
{
	uint32_t hi, lo;
	if (r->len - r->off < 8)
		return METER_ENEEDMORE;
	mrd_be32(r, &hi);
	mrd_be32(r, &lo);
	*v = (uint64_t)hi << 32 | lo;
	return 0;
}

static inline uint16_t
be16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static inline uint32_t
be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Value of one hex digit, either case, or -1 when c is not one. */
static inline int
bytes_hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

#endif
