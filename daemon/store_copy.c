/*
 * store_copy.c: the COPY row encoders behind store.c (see store_copy.h).
 * The binary layouts are PostgreSQL's send/recv formats: integers in network
 * order, timestamptz as microseconds since 2000-01-01 UTC, numeric as
 * base-10000 digits aligned on the decimal point, jsonb as a version byte
 * before the text.  The text format follows COPY's rules: tab between
 * fields, \N for NULL, backslash escapes for tab, newline, carriage return
 * and backslash.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store_copy.h"

/* Seconds from 1970-01-01 to 2000-01-01, PostgreSQL's epoch. */
#define PG_EPOCH_OFFSET 946684800LL

static const unsigned char bin_header[19] = {'P', 'G', 'C', 'O', 'P', 'Y', '\n', 0xff, '\r', '\n',
                                             0,   0,   0,   0,   0,   0,   0,    0,    0};
static const unsigned char bin_trailer[2] = {0xff, 0xff};

const unsigned char *
store_copy_bin_header(size_t *len)
{
	*len = sizeof(bin_header);
	return bin_header;
}

const unsigned char *
store_copy_bin_trailer(size_t *len)
{
	*len = sizeof(bin_trailer);
	return bin_trailer;
}

void
store_copy_init(struct store_copy *c, bool binary)
{
	memset(c, 0, sizeof(*c));
	c->binary = binary;
}

void
store_copy_free(struct store_copy *c)
{
	free(c->p);
	c->p = NULL;
	c->len = c->cap = 0;
}

static unsigned char *
copy_room(struct store_copy *c, size_t more)
{
	if (c->bad)
		return NULL;
	if (c->cap - c->len < more) {
		size_t ncap = c->cap ? c->cap : 4096;
		unsigned char *np;

		while (ncap - c->len < more) {
			if (ncap > SIZE_MAX / 2) {
				c->bad = true;
				return NULL;
			}
			ncap *= 2;
		}
		if ((np = realloc(c->p, ncap)) == NULL) {
			c->bad = true;
			return NULL;
		}
		c->p = np;
		c->cap = ncap;
	}
	return c->p + c->len;
}

static void
put_be(unsigned char *p, uint64_t v, int n)
{
	for (int i = n - 1; i >= 0; i--) {
		p[i] = (unsigned char)(v & 0xff);
		v >>= 8;
	}
}

/* Binary: the field's length word followed by room for n bytes; text: a
 * separator when needed.  Returns where the n bytes go. */
static unsigned char *
field_begin(struct store_copy *c, size_t n)
{
	unsigned char *p;

	if (c->binary) {
		if (n > INT32_MAX) {
			c->bad = true;
			return NULL;
		}
		if ((p = copy_room(c, 4 + n)) == NULL)
			return NULL;
		put_be(p, n, 4);
		c->len += 4 + n;
		c->fields++;
		return p + 4;
	}
	if ((p = copy_room(c, 1 + n)) == NULL)
		return NULL;
	if (c->fields++ > 0)
		*p++ = '\t', c->len++;
	c->len += n;
	return p;
}

void
store_copy_row(struct store_copy *c, int nfields)
{
	unsigned char *p;

	c->fields = 0;
	if (c->binary && (p = copy_room(c, 2)) != NULL) {
		put_be(p, (uint16_t)nfields, 2);
		c->len += 2;
	}
}

void
store_copy_endrow(struct store_copy *c)
{
	unsigned char *p;

	if (!c->binary) {
		if ((p = copy_room(c, 1)) == NULL)
			return;
		*p = '\n';
		c->len++;
	}
	c->rows++;
}

void
store_copy_null(struct store_copy *c)
{
	unsigned char *p;

	if (c->binary) {
		if ((p = copy_room(c, 4)) != NULL) {
			memset(p, 0xff, 4);
			c->len += 4;
			c->fields++;
		}
		return;
	}
	if ((p = field_begin(c, 2)) != NULL)
		memcpy(p, "\\N", 2);
}

/* Text form of a number: the decimal digits straight into the buffer. */
static void
text_int(struct store_copy *c, int64_t v)
{
	char tmp[24];
	int n = 0;
	uint64_t u = v < 0 ? (uint64_t)(-(v + 1)) + 1 : (uint64_t)v;
	unsigned char *p;

	do {
		tmp[n++] = (char)('0' + u % 10);
		u /= 10;
	} while (u != 0);
	if (v < 0)
		tmp[n++] = '-';
	if ((p = field_begin(c, (size_t)n)) == NULL)
		return;
	for (int i = 0; i < n; i++)
		p[i] = (unsigned char)tmp[n - 1 - i];
}

static void
bin_int(struct store_copy *c, uint64_t v, int n)
{
	unsigned char *p = field_begin(c, (size_t)n);

	if (p != NULL)
		put_be(p, v, n);
}

void
store_copy_int2(struct store_copy *c, int16_t v)
{
	if (c->binary)
		bin_int(c, (uint16_t)v, 2);
	else
		text_int(c, v);
}

void
store_copy_int4(struct store_copy *c, int32_t v)
{
	if (c->binary)
		bin_int(c, (uint32_t)v, 4);
	else
		text_int(c, v);
}

void
store_copy_int8(struct store_copy *c, int64_t v)
{
	if (c->binary)
		bin_int(c, (uint64_t)v, 8);
	else
		text_int(c, v);
}

void
store_copy_bool(struct store_copy *c, bool v)
{
	unsigned char *p = field_begin(c, 1);

	if (p != NULL)
		*p = c->binary ? (v ? 1 : 0) : (v ? 't' : 'f');
}

/* Text with COPY's escapes; the worst case doubles every byte. */
static void
text_escaped(struct store_copy *c, const unsigned char *s, size_t n)
{
	size_t k = 0;
	unsigned char *p;

	if (n > (SIZE_MAX - 1) / 2 || (p = copy_room(c, 1 + 2 * n)) == NULL) {
		c->bad = true;
		return;
	}
	if (c->fields++ > 0)
		p[k++] = '\t';
	for (size_t i = 0; i < n; i++) {
		switch (s[i]) {
		case '\\':
			p[k++] = '\\';
			p[k++] = '\\';
			break;
		case '\t':
			p[k++] = '\\';
			p[k++] = 't';
			break;
		case '\n':
			p[k++] = '\\';
			p[k++] = 'n';
			break;
		case '\r':
			p[k++] = '\\';
			p[k++] = 'r';
			break;
		default:
			p[k++] = s[i];
		}
	}
	c->len += k;
}

void
store_copy_text(struct store_copy *c, const char *s, size_t n)
{
	unsigned char *p;

	if (!c->binary) {
		text_escaped(c, (const unsigned char *)s, n);
		return;
	}
	if ((p = field_begin(c, n)) != NULL)
		memcpy(p, s, n);
}

void
store_copy_jsonb(struct store_copy *c, const char *json, size_t n)
{
	unsigned char *p;

	if (!c->binary) {
		text_escaped(c, (const unsigned char *)json, n);
		return;
	}
	if (n == SIZE_MAX) {
		c->bad = true;
		return;
	}
	if ((p = field_begin(c, n + 1)) != NULL) {
		p[0] = 1; /* jsonb binary format version */
		memcpy(p + 1, json, n);
	}
}

void
store_copy_bytea(struct store_copy *c, const void *data, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *s = data;
	unsigned char *p;

	if (c->binary) {
		if ((p = field_begin(c, n)) != NULL && n > 0)
			memcpy(p, s, n);
		return;
	}
	/* "\x..." with the backslash itself escaped for COPY. */
	if (n > (SIZE_MAX - 3) / 2) {
		c->bad = true;
		return;
	}
	if ((p = field_begin(c, 3 + 2 * n)) == NULL)
		return;
	memcpy(p, "\\\\x", 3);
	for (size_t i = 0; i < n; i++) {
		p[3 + 2 * i] = (unsigned char)hex[s[i] >> 4];
		p[4 + 2 * i] = (unsigned char)hex[s[i] & 15];
	}
}

void
store_copy_ts(struct store_copy *c, int64_t unix_s)
{
	if (c->binary) {
		/* Far outside any meter's clock; also keeps the product in range. */
		if (unix_s < -PG_EPOCH_OFFSET * 100 || unix_s > PG_EPOCH_OFFSET * 100) {
			c->bad = true;
			return;
		}
		bin_int(c, (uint64_t)((unix_s - PG_EPOCH_OFFSET) * 1000000), 8);
		return;
	}
	time_t t = (time_t)unix_s;
	struct tm tm;
	char buf[48];
	unsigned char *p;
	int n;

	if (gmtime_r(&t, &tm) == NULL || tm.tm_year + 1900 < 1 || tm.tm_year + 1900 > 9999) {
		c->bad = true;
		return;
	}
	n = (int)strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M:%S+00", &tm);
	if (n <= 0 || (p = field_begin(c, (size_t)n)) == NULL)
		return;
	memcpy(p, buf, (size_t)n);
}

/* Floor division and modulo for the digit alignment of negative powers. */
static int
floordiv4(int a)
{
	return a >= 0 ? a / 4 : -((-a + 3) / 4);
}

int
store_copy_numeric_bin(int64_t mantissa, int exp, unsigned char *out)
{
	uint64_t u = mantissa < 0 ? (uint64_t)(-(mantissa + 1)) + 1 : (uint64_t)mantissa;
	char d[32];
	int nd = 0, ndig = 0, weight, pad, dscale = exp < 0 ? -exp : 0;
	uint16_t groups[8];

	if (exp > STORE_COPY_MAX_EXP || exp < -STORE_COPY_MAX_EXP)
		return -1;
	if (u == 0) {
		put_be(out, 0, 2);
		put_be(out + 2, 0, 2);
		put_be(out + 4, 0, 2);
		put_be(out + 6, (uint64_t)dscale, 2);
		return 8;
	}
	{
		char rev[24];
		int n = 0;

		while (u != 0) {
			rev[n++] = (char)(u % 10);
			u /= 10;
		}
		for (int i = 0; i < n; i++)
			d[nd++] = rev[n - 1 - i];
	}
	/*
	 * The leading digit has the power p = nd + exp - 1; its base-10000
	 * group is floor(p / 4), and it sits 3 - (p mod 4) places from the left
	 * of that group.  Pad on the left to put the groups on the boundaries.
	 */
	int p = nd + exp - 1;
	weight = floordiv4(p);
	pad = 3 - (p - 4 * weight);
	for (int i = 0; i < pad + nd; i += 4) {
		int g = 0;
		for (int k = i; k < i + 4; k++) {
			int digit = (k >= pad && k < pad + nd) ? d[k - pad] : 0;
			g = g * 10 + digit;
		}
		groups[ndig++] = (uint16_t)g;
	}
	while (ndig > 0 && groups[ndig - 1] == 0)
		ndig--; /* trailing zero groups are implied by the weight */
	put_be(out, (uint64_t)ndig, 2);
	put_be(out + 2, (uint16_t)(int16_t)weight, 2);
	put_be(out + 4, mantissa < 0 ? 0x4000 : 0, 2);
	put_be(out + 6, (uint64_t)dscale, 2);
	for (int i = 0; i < ndig; i++)
		put_be(out + 8 + 2 * i, groups[i], 2);
	return 8 + 2 * ndig;
}

int
store_copy_numeric_text(int64_t mantissa, int exp, char *out, size_t outlen)
{
	uint64_t u = mantissa < 0 ? (uint64_t)(-(mantissa + 1)) + 1 : (uint64_t)mantissa;
	char d[24];
	int nd = 0, k = 0;
	char buf[24 + 2 * STORE_COPY_MAX_EXP + 4];

	if (exp > STORE_COPY_MAX_EXP || exp < -STORE_COPY_MAX_EXP)
		return -1;
	{
		char rev[24];
		int n = 0;

		do {
			rev[n++] = (char)('0' + u % 10);
			u /= 10;
		} while (u != 0);
		for (int i = 0; i < n; i++)
			d[nd++] = rev[n - 1 - i];
	}
	if (mantissa < 0)
		buf[k++] = '-';
	if (exp >= 0) {
		memcpy(buf + k, d, (size_t)nd);
		k += nd;
		if (!(nd == 1 && d[0] == '0'))
			for (int i = 0; i < exp; i++)
				buf[k++] = '0';
	} else {
		int frac = -exp, intd = nd - frac;

		if (intd <= 0) {
			buf[k++] = '0';
			buf[k++] = '.';
			for (int i = 0; i < -intd; i++)
				buf[k++] = '0';
			memcpy(buf + k, d, (size_t)nd);
			k += nd;
		} else {
			memcpy(buf + k, d, (size_t)intd);
			k += intd;
			buf[k++] = '.';
			memcpy(buf + k, d + intd, (size_t)frac);
			k += frac;
		}
	}
	if ((size_t)k + 1 > outlen)
		return -1;
	memcpy(out, buf, (size_t)k);
	out[k] = '\0';
	return k;
}

void
store_copy_numeric(struct store_copy *c, int64_t mantissa, int exp)
{
	unsigned char tmp[STORE_COPY_NUMERIC_MAX];
	char txt[24 + 2 * STORE_COPY_MAX_EXP + 4];
	unsigned char *p;
	int n;

	if (c->binary)
		n = store_copy_numeric_bin(mantissa, exp, tmp);
	else
		n = store_copy_numeric_text(mantissa, exp, txt, sizeof(txt));
	if (n < 0) {
		c->bad = true;
		return;
	}
	if ((p = field_begin(c, (size_t)n)) != NULL)
		memcpy(p, c->binary ? (const void *)tmp : (const void *)txt, (size_t)n);
}
