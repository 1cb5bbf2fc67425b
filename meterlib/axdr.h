/*
 * axdr.h: A-XDR encoding of COSEM Data (IEC 62056-6-2 / Green Book).
 *
 * Decoding never allocates.  A Data value is decoded into a flat array of
 * nodes that the caller provides, in pre-order: an array or structure node
 * is followed by its elements, each followed by its own subtree.  `span`
 * lets a reader step over a subtree in O(1).  Strings, bit-strings and the
 * date/time types point into the caller's input buffer, which must outlive
 * the nodes.
 *
 * A compact-array is presented like an array: its node has tag
 * AXDR_COMPACT_ARRAY, `len` elements follow as ordinary tagged nodes, and
 * `ptr`/`v.u` keep the raw type description so the value re-encodes to the
 * same bytes.
 *
 * Bounds: nesting deeper than AXDR_MAX_DEPTH or more nodes than the caller's
 * capacity are refused with METER_ELIMIT / METER_ENOSPC; every length from
 * the wire is checked against the bytes present.  An element count larger
 * than the remaining bytes could hold (every element takes at least one
 * byte) is METER_EMALFORMED before any node is stored.
 *
 * Byte-exact re-encoding: lengths must be in their shortest form (others
 * are METER_EMALFORMED); boolean and float nodes also set `ptr` to their
 * raw content bytes, which axdr_encode() reuses while they agree with `v`
 * (TRUE may be 0x01 or 0xff; a float32 NaN keeps its payload).  Trees built
 * by hand leave `ptr` NULL for those types.  Nodes of other scalar types
 * have len 0 and ptr NULL.
 */
#ifndef METER_AXDR_H
#define METER_AXDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "bytes.h"

#define AXDR_MAX_DEPTH 16

enum axdr_tag {
	AXDR_NULL = 0,
	AXDR_ARRAY = 1,
	AXDR_STRUCTURE = 2,
	AXDR_BOOLEAN = 3,
	AXDR_BIT_STRING = 4,
	AXDR_DOUBLE_LONG = 5,	       /* int32 */
	AXDR_DOUBLE_LONG_UNSIGNED = 6, /* uint32 */
	AXDR_FLOATING_POINT = 7,       /* legacy float32 */
	AXDR_OCTET_STRING = 9,
	AXDR_VISIBLE_STRING = 10,
	AXDR_UTF8_STRING = 12,
	AXDR_BCD = 13,
	AXDR_INTEGER = 15,	 /* int8 */
	AXDR_LONG = 16,		 /* int16 */
	AXDR_UNSIGNED = 17,	 /* uint8 */
	AXDR_LONG_UNSIGNED = 18, /* uint16 */
	AXDR_COMPACT_ARRAY = 19,
	AXDR_LONG64 = 20,
	AXDR_LONG64_UNSIGNED = 21,
	AXDR_ENUM = 22,
	AXDR_FLOAT32 = 23,
	AXDR_FLOAT64 = 24,
	AXDR_DATE_TIME = 25, /* 12 bytes, see cosem_time.h */
	AXDR_DATE = 26,	     /* 5 bytes */
	AXDR_TIME = 27,	     /* 4 bytes */
	AXDR_DONT_CARE = 255
};

struct axdr_node {
	uint8_t tag;	    /* enum axdr_tag */
	uint32_t len;	    /* array/structure/compact-array: element count;
			       bit-string: number of bits; strings: bytes;
			       date-time/date/time: 12/5/4 */
	uint32_t span;	    /* nodes in this subtree, this one included */
	const uint8_t *ptr; /* content bytes in the input (strings, bit-string,
			       date/time); type description for compact-array */
	union {
		int64_t i;  /* integer, long, double-long, long64, bcd */
		uint64_t u; /* unsigned types, enum, boolean (0/1); compact-array:
			       length of the type description at ptr */
		double f;   /* float32, float64, floating-point */
	} v;
};

/* Name of a tag ("long-unsigned"), or "unknown". */
const char *axdr_tag_name(uint8_t tag);

/*
 * A-XDR length (1 byte below 0x80, else 0x8N followed by N bytes).
 * Returns bytes consumed, METER_ENEEDMORE, or METER_EMALFORMED (N > 4 or
 * value over UINT32_MAX).
 */
ssize_t axdr_decode_length(const uint8_t *buf, size_t len, uint32_t *out);
void axdr_put_length(struct mbuf *b, uint32_t n);

/*
 * Decode one tagged Data value from buf into nodes[0..cap).  On success
 * returns bytes consumed (trailing bytes are left alone) and sets *n_nodes.
 * Errors: METER_ENEEDMORE (truncated), METER_EMALFORMED (bad tag or
 * length), METER_ELIMIT (too deep), METER_ENOSPC (more nodes than cap).
 */
ssize_t axdr_decode(const uint8_t *buf, size_t len, struct axdr_node *nodes, size_t cap,
		    size_t *n_nodes);

/*
 * Decode only the header of an array or structure (tag and element count)
 * so that a long array can be walked element by element with axdr_decode.
 * Returns bytes consumed; METER_EMALFORMED if the tag is not `want_tag`.
 */
ssize_t axdr_decode_header(const uint8_t *buf, size_t len, uint8_t want_tag, uint32_t *count);

/* Step over one tagged Data value without storing it; returns bytes. */
ssize_t axdr_skip(const uint8_t *buf, size_t len);

/* The i-th element of an array/structure node (nodes follow it in memory),
 * or NULL when i is out of range. */
const struct axdr_node *axdr_child(const struct axdr_node *n, uint32_t i);

/* Numeric value of any integer, enum, boolean, bcd or float node as a
 * double; METER_EINVAL for other tags. */
int axdr_to_double(const struct axdr_node *n, double *out);
/* Integer value (float types refused); METER_ERANGE if a long64-unsigned
 * does not fit. */
int axdr_to_int64(const struct axdr_node *n, int64_t *out);

/* Deep equality of two decoded trees (tags, lengths, values, bytes). */
bool axdr_equal(const struct axdr_node *a, const struct axdr_node *b);

/* Encode a decoded (or built) tree; returns bytes written or METER_ENOSPC /
 * METER_EMALFORMED (inconsistent spans or compact-array description) /
 * METER_ELIMIT (deeper than AXDR_MAX_DEPTH).  When nodes[0].span < n the
 * values that follow are encoded one after the other until n nodes. */
ssize_t axdr_encode(const struct axdr_node *nodes, size_t n, struct mbuf *b);

/*
 * Tagged writers for building APDUs directly.  They append to b; overflow
 * is latched in b->err.  Array/structure writers emit only the header; the
 * caller then writes exactly `count` elements.
 */
void axdr_put_null(struct mbuf *b);
void axdr_put_array(struct mbuf *b, uint32_t count);
void axdr_put_structure(struct mbuf *b, uint32_t count);
void axdr_put_boolean(struct mbuf *b, bool v);
void axdr_put_bit_string(struct mbuf *b, const uint8_t *bits, uint32_t nbits);
void axdr_put_integer(struct mbuf *b, int8_t v);
void axdr_put_long(struct mbuf *b, int16_t v);
void axdr_put_double_long(struct mbuf *b, int32_t v);
void axdr_put_long64(struct mbuf *b, int64_t v);
void axdr_put_unsigned(struct mbuf *b, uint8_t v);
void axdr_put_long_unsigned(struct mbuf *b, uint16_t v);
void axdr_put_double_long_unsigned(struct mbuf *b, uint32_t v);
void axdr_put_long64_unsigned(struct mbuf *b, uint64_t v);
void axdr_put_enum(struct mbuf *b, uint8_t v);
void axdr_put_bcd(struct mbuf *b, int8_t v);
void axdr_put_float32(struct mbuf *b, float v);
void axdr_put_float64(struct mbuf *b, double v);
void axdr_put_octet_string(struct mbuf *b, const void *p, uint32_t n);
void axdr_put_visible_string(struct mbuf *b, const char *s, uint32_t n);
void axdr_put_utf8_string(struct mbuf *b, const char *s, uint32_t n);
/* date-time as an octet-string of 12 (how COSEM attributes carry it) and
 * as the tagged date-time type (tag 25). */
struct cosem_datetime;
void axdr_put_datetime_octets(struct mbuf *b, const struct cosem_datetime *dt);
void axdr_put_datetime(struct mbuf *b, const struct cosem_datetime *dt);

#endif
