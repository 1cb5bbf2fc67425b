/*
 * store_copy.h: rows encoded for `COPY ... FROM STDIN`, in PostgreSQL's
 * binary format or in its text format, into a growing buffer.  The store
 * encodes each row once, when a session adds it to a batch, so that a flush
 * only hands finished bytes to libpq; keeping the encoders apart from the
 * connection logic also lets the unit tests check them without a server.
 *
 * Binary is the default (DESIGN §9: about a third faster than text, and the
 * server spends no time parsing numbers and dates); text remains for
 * comparison and debugging.  Times are seconds since the Unix epoch, UTC.
 * Decimal values are passed exactly as mantissa × 10^exp (a register's raw
 * value and its scaler), never through a double.
 *
 * Errors are latched: a failed allocation or an unrepresentable value sets
 * `bad` and later writes are ignored, so a caller checks once per row.
 */
#ifndef AMM_STORE_COPY_H
#define AMM_STORE_COPY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct store_copy {
	unsigned char *p;
	size_t len, cap;
	size_t rows; /* rows ended */
	int fields;  /* fields written in the current row */
	bool binary;
	bool bad; /* latched: out of memory or a value out of range */
};

/* Largest |exp| accepted for a decimal: far beyond any DLMS scaler. */
#define STORE_COPY_MAX_EXP 64
/* Bytes of a binary numeric at most: 4 int16 header words + 6 digit words. */
#define STORE_COPY_NUMERIC_MAX 20

void store_copy_init(struct store_copy *c, bool binary);
void store_copy_free(struct store_copy *c);

/* A row of nfields fields; every row must be ended. */
void store_copy_row(struct store_copy *c, int nfields);
void store_copy_endrow(struct store_copy *c);

void store_copy_null(struct store_copy *c);
void store_copy_int2(struct store_copy *c, int16_t v);
void store_copy_int4(struct store_copy *c, int32_t v);
void store_copy_int8(struct store_copy *c, int64_t v);
void store_copy_bool(struct store_copy *c, bool v);
/* Text in UTF-8 (escaped for the text format). */
void store_copy_text(struct store_copy *c, const char *s, size_t n);
/* timestamptz from seconds since 1970-01-01 UTC. */
void store_copy_ts(struct store_copy *c, int64_t unix_s);
/* numeric mantissa × 10^exp, with exactly max(0, -exp) decimals. */
void store_copy_numeric(struct store_copy *c, int64_t mantissa, int exp);
void store_copy_bytea(struct store_copy *c, const void *p, size_t n);
/* jsonb from JSON text (the server checks it). */
void store_copy_jsonb(struct store_copy *c, const char *json, size_t n);

/* The binary format's file header and trailer, sent once per COPY. */
const unsigned char *store_copy_bin_header(size_t *len);
const unsigned char *store_copy_bin_trailer(size_t *len);

/*
 * PostgreSQL's binary numeric (ndigits, weight, sign, dscale, base-10000
 * digits, all big-endian int16) of mantissa × 10^exp into out, which holds
 * at least STORE_COPY_NUMERIC_MAX bytes.  Returns the length, or -1 when
 * |exp| > STORE_COPY_MAX_EXP.
 */
int store_copy_numeric_bin(int64_t mantissa, int exp, unsigned char *out);

/*
 * The same value as PostgreSQL prints it (e.g. -12.50 for -1250, -2) into
 * out; returns the length or -1 when it does not fit or exp is out of range.
 */
int store_copy_numeric_text(int64_t mantissa, int exp, char *out, size_t outlen);

#endif
