/*
 * test_hdlc.c: the HDLC frame codec against every `hdlc` row of the DLMS
 * vectors: each field of `meaning` is compared with what hdlc_parse()
 * finds, well-formed rows re-encode to their own bytes, every proper prefix
 * of a frame asks for more, every single-bit error is refused, and the
 * negative row is rejected.  Inputs sit at the very end of their allocation
 * (hex_tail) so an over-read trips AddressSanitizer.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hdlc.h"
#include "meter_error.h"
#include "vectors.h"

/* Rows of one meaning type in the hdlc layer. */
static size_t
rows_of(const char *type, const struct dlms_vector **out, size_t cap)
{
	size_t n, k = 0;
	const struct dlms_vector *v = dlms_vectors(&n);
	char t[32];

	cr_assert_not_null(v, "vectors not found (AMM_VECTORS)");
	for (size_t i = 0; i < n; i++) {
		if (strcmp(v[i].layer, "hdlc") != 0)
			continue;
		if (strcmp(meaning_type(v[i].meaning, t, sizeof(t)), type) != 0)
			continue;
		cr_assert_lt(k, cap);
		out[k++] = &v[i];
	}
	return k;
}

static unsigned long
num(const char *s)
{
	return strtoul(s, NULL, 0);
}

/* Integer after `key=` inside a record such as params{a=1,b=2(1byte)}. */
static long
inner(const char *rec, const char *key)
{
	char pat[64];
	const char *p;

	snprintf(pat, sizeof(pat), "%s=", key);
	for (p = rec; (p = strstr(p, pat)) != NULL; p++)
		if (p == rec || p[-1] == '{' || p[-1] == ',')
			return (long)strtoul(p + strlen(pat), NULL, 0);
	return -1;
}

/* The two CRC bytes as they appear on the wire, low byte first. */
static const char *
crc_wire(uint16_t v)
{
	static char s[8];

	snprintf(s, sizeof(s), "%02x%02x", v & 0xff, v >> 8);
	return s;
}

static void
check_addr(const struct dlms_vector *v, const char *side, const struct hdlc_addr *a)
{
	char key[32], val[64];

	snprintf(key, sizeof(key), "%s_hex", side);
	cr_assert_not_null(meaning_get(v->meaning, key, val, sizeof(val)), "%s: no %s", v->id, key);
	cr_assert_eq(a->size, strlen(val) / 2, "%s: %s size %u", v->id, side, a->size);
	if (meaning_get(v->meaning, side, val, sizeof(val))) {
		cr_assert_eq(a->size, 1, "%s", v->id);
		cr_assert_eq(a->upper, num(val), "%s: %s %u want %s", v->id, side, a->upper, val);
		cr_assert_eq(a->lower, 0);
	} else {
		snprintf(key, sizeof(key), "%s_upper", side);
		cr_assert_not_null(meaning_get(v->meaning, key, val, sizeof(val)), "%s", v->id);
		cr_assert_eq(a->upper, num(val), "%s: %s upper %u want %s", v->id, side, a->upper,
		             val);
		snprintf(key, sizeof(key), "%s_lower", side);
		cr_assert_not_null(meaning_get(v->meaning, key, val, sizeof(val)), "%s", v->id);
		cr_assert_eq(a->lower, num(val), "%s: %s lower %u want %s", v->id, side, a->lower,
		             val);
	}
}

static void
check_params(const struct dlms_vector *v, const struct hdlc_frame *f, const char *rec,
             size_t *reencoded)
{
	struct hdlc_params p;
	uint8_t buf[64];
	struct mbuf m;

	cr_assert_eq(hdlc_params_decode(f->info, f->info_len, &p), 0, "%s", v->id);
	cr_assert_eq(p.max_info_tx, inner(rec, "max_info_tx"), "%s", v->id);
	cr_assert_eq(p.max_info_rx, inner(rec, "max_info_rx"), "%s", v->id);
	cr_assert_eq(p.window_tx, inner(rec, "window_tx"), "%s", v->id);
	cr_assert_eq(p.window_rx, inner(rec, "window_rx"), "%s", v->id);
	cr_assert_eq(inner(rec, "format_id"), 0x81);
	cr_assert_eq(inner(rec, "group_len"), (long)f->info_len - 3, "%s", v->id);
	/* Our encoder writes max lengths in 1 byte below 256: compare the
	 * bytes where the row did the same. */
	if (strstr(rec, "max_info_tx=") && strstr(rec, "(1byte),max_info_rx") &&
	    strstr(rec, "(1byte),window_tx") && strstr(rec, "window_rx=") &&
	    strstr(rec, "(4byte),window_rx")) {
		mbuf_init(&m, buf, sizeof(buf));
		hdlc_params_encode(&m, &p);
		cr_assert_eq(m.err, 0);
		cr_assert_str_eq(to_hex(buf, m.len), to_hex(f->info, f->info_len), "%s", v->id);
		(*reencoded)++;
	}
}

Test(hdlc, crc_routine)
{
	const struct dlms_vector *rows[4];
	char data[64], want[16];
	size_t n = rows_of("CRC16X25Check", rows, 4), len;

	cr_assert_eq(n, 1);
	cr_assert_not_null(meaning_get(rows[0]->meaning, "data_hex", data, sizeof(data)));
	cr_assert_not_null(meaning_get(rows[0]->meaning, "crc_le_hex", want, sizeof(want)));
	uint8_t *p = hex_tail(data, &len);
	cr_assert_str_eq(crc_wire(hdlc_crc16(p, len)), want);
	/* The catalogue check value of CRC-16/X.25 over "123456789". */
	cr_assert_eq(hdlc_crc16((const uint8_t *)"123456789", 9), 0x906e);
	cr_assert_eq(hdlc_crc16(p, 0), 0x0000);
	tail_free(p);
}

Test(hdlc, frames_match_meaning)
{
	const struct dlms_vector *rows[64];
	size_t n = rows_of("HDLCFrame", rows, 64), positive = 0, negative = 0, params = 0;
	size_t reencoded_params = 0;

	cr_assert_geq(n, 35);
	for (size_t i = 0; i < n; i++) {
		const struct dlms_vector *v = rows[i];
		char val[2048];
		struct hdlc_frame f;
		size_t len;
		uint8_t *p = hex_tail(v->hex, &len);
		ssize_t r = hdlc_parse(p, len, &f);

		if (meaning_get(v->meaning, "expect", val, sizeof(val))) {
			cr_assert(r < 0 && r != METER_ENEEDMORE, "%s: accepted (%zd)", v->id, r);
			negative++;
			tail_free(p);
			continue;
		}
		positive++;
		cr_assert_eq(r, (ssize_t)len, "%s: parse %zd (%s)", v->id, r,
		             meter_strerror((int)r));
		meaning_get(v->meaning, "flags", val, sizeof(val));
		cr_assert_eq(f.flagged, strcmp(val, "both") == 0, "%s", v->id);
		meaning_get(v->meaning, "format", val, sizeof(val));
		cr_assert_eq(0xa000u | (f.segmented ? 0x800u : 0) | f.length, num(val), "%s",
		             v->id);
		meaning_get(v->meaning, "segmented", val, sizeof(val));
		cr_assert_eq(f.segmented, strcmp(val, "yes") == 0, "%s", v->id);
		meaning_get(v->meaning, "length", val, sizeof(val));
		cr_assert_eq(f.length, num(val), "%s", v->id);
		cr_assert_eq(f.length + (f.flagged ? 2u : 0u), len, "%s", v->id);
		check_addr(v, "dest", &f.dest);
		check_addr(v, "src", &f.src);
		meaning_get(v->meaning, "control", val, sizeof(val));
		cr_assert_eq(f.control, num(val), "%s", v->id);
		meaning_get(v->meaning, "type", val, sizeof(val));
		cr_assert_str_eq(hdlc_type_name(f.type), val, "%s", v->id);
		if (meaning_get(v->meaning, "ns", val, sizeof(val)))
			cr_assert_eq(f.ns, num(val), "%s", v->id);
		if (meaning_get(v->meaning, "nr", val, sizeof(val)))
			cr_assert_eq(f.nr, num(val), "%s", v->id);
		meaning_get(v->meaning, "pf", val, sizeof(val));
		cr_assert_eq(f.pf, num(val), "%s", v->id);
		meaning_get(v->meaning, "hcs", val, sizeof(val));
		if (strcmp(val, "absent") == 0) {
			cr_assert_not(f.has_hcs, "%s", v->id);
		} else {
			cr_assert(f.has_hcs, "%s", v->id);
			cr_assert_str_eq(strchr(val, ':'), ":ok");
			cr_assert_eq(strncmp(val, crc_wire(f.hcs), 4), 0, "%s hcs", v->id);
		}
		meaning_get(v->meaning, "fcs", val, sizeof(val));
		cr_assert_str_eq(strchr(val, ':'), ":ok");
		cr_assert_eq(strncmp(val, crc_wire(f.fcs), 4), 0, "%s fcs", v->id);
		meaning_get(v->meaning, "info_len", val, sizeof(val));
		cr_assert_eq(f.info_len, num(val), "%s", v->id);
		if (meaning_get(v->meaning, "info_hex", val, sizeof(val)))
			cr_assert_str_eq(to_hex(f.info, f.info_len), val, "%s", v->id);
		if (meaning_get(v->meaning, "info", val, sizeof(val)) &&
		    strncmp(val, "params{", 7) == 0) {
			check_params(v, &f, val, &reencoded_params);
			params++;
		}
		if (meaning_get(v->meaning, "llc", val, sizeof(val))) {
			bool response;
			cr_assert_eq(hdlc_check_llc(f.info, f.info_len, &response), 0, "%s", v->id);
			cr_assert_eq(strncmp(val, to_hex(f.info, 3), 6), 0, "%s llc", v->id);
			cr_assert_eq(response, strstr(val, "(response)") != NULL, "%s", v->id);
			/* The APDU itself is another module's business: it
			 * is there, after the LLC header. */
			cr_assert_not_null(meaning_get(v->meaning, "apdu", val, sizeof(val)));
			cr_assert_gt(f.info_len, 3, "%s", v->id);
		}

		/* Re-encode: always with flags. */
		uint8_t out[HDLC_MAX_FRAME];
		struct mbuf m;
		mbuf_init(&m, out, sizeof(out));
		cr_assert_eq(hdlc_encode(&m, &f), (ssize_t)f.length + 2, "%s", v->id);
		cr_assert_eq(memcmp(out + 1, p + (f.flagged ? 1 : 0), f.length), 0,
		             "%s: re-encoded %s", v->id, to_hex(out, m.len));
		cr_assert_eq(out[0], HDLC_FLAG);
		cr_assert_eq(out[m.len - 1], HDLC_FLAG);
		tail_free(p);
	}
	cr_assert_eq(negative, 1);
	cr_assert_eq(positive + negative, n);
	cr_assert_geq(params, 7);
	cr_assert_geq(reencoded_params, 3);
}

/* Every proper prefix is METER_ENEEDMORE; every single-bit flip is refused. */
Test(hdlc, prefixes_and_bit_errors)
{
	const struct dlms_vector *rows[64];
	size_t n = rows_of("HDLCFrame", rows, 64), checked = 0;

	for (size_t i = 0; i < n; i++) {
		char val[16];
		size_t len;
		struct hdlc_frame f;

		if (meaning_get(rows[i]->meaning, "expect", val, sizeof(val)))
			continue;
		uint8_t *full = hex_tail(rows[i]->hex, &len);
		for (size_t k = 0; k < len; k++) {
			uint8_t *p = malloc(k ? k : 1);
			memcpy(p, full, k);
			ssize_t r = hdlc_parse(p, k, &f);
			/* A frame without flags is complete before the end
			 * only if it is the whole frame. */
			cr_assert_eq(r, METER_ENEEDMORE, "%s prefix %zu: %zd", rows[i]->id, k, r);
			free(p);
		}
		for (size_t k = 0; k < len * 8; k++) {
			full[k / 8] ^= (uint8_t)(1 << (k % 8));
			ssize_t r = hdlc_parse(full, len, &f);
			cr_assert(r < 0, "%s: bit %zu flipped, parsed %zd", rows[i]->id, k, r);
			full[k / 8] ^= (uint8_t)(1 << (k % 8));
		}
		tail_free(full);
		checked++;
	}
	cr_assert_geq(checked, 35);
}

Test(hdlc, params_row)
{
	const struct dlms_vector *rows[4];
	size_t n = rows_of("HDLCParameters", rows, 4), len;
	struct hdlc_params prm;
	char val[64];

	cr_assert_eq(n, 1);
	uint8_t *p = hex_tail(rows[0]->hex, &len);
	cr_assert_eq(hdlc_params_decode(p, len, &prm), 0);
	meaning_get(rows[0]->meaning, "max_info_field_length_transmit", val, sizeof(val));
	cr_assert_eq(prm.max_info_tx, num(val));
	meaning_get(rows[0]->meaning, "max_info_field_length_receive", val, sizeof(val));
	cr_assert_eq(prm.max_info_rx, num(val));
	meaning_get(rows[0]->meaning, "window_size_transmit", val, sizeof(val));
	cr_assert_eq(prm.window_tx, num(val));
	meaning_get(rows[0]->meaning, "window_size_receive", val, sizeof(val));
	cr_assert_eq(prm.window_rx, num(val));
	meaning_get(rows[0]->meaning, "group_length", val, sizeof(val));
	cr_assert_eq(len, num(val) + 3);
	/* Truncated or lying group lengths are refused. */
	for (size_t k = 0; k < len; k++) {
		uint8_t *q = malloc(k ? k : 1);
		memcpy(q, p, k);
		cr_assert_eq(hdlc_params_decode(q, k, &prm), METER_EMALFORMED, "prefix %zu", k);
		free(q);
	}
	p[4] = 3; /* a 3-byte value */
	cr_assert_eq(hdlc_params_decode(p, len, &prm), METER_EMALFORMED);
	tail_free(p);
}

static const struct {
	const char *hex;
	int rc;
} bad_frames[] = {
    {"b00800232193", METER_EMALFORMED},       /* format type B */
    {"a00502232193", METER_ELENGTH},          /* length 5 < minimum */
    {"a00800020321930000", METER_EMALFORMED}, /* 3-byte address */
    {"a00a00000000002193", METER_EMALFORMED}, /* no end bit in 4 bytes */
    {"a0070223219300", METER_ELENGTH},        /* no room for the FCS */
    {"a008032193000000", METER_ELENGTH},      /* 1 byte between control and FCS */
    {"7ea00703215303c700", METER_EMALFORMED}, /* no closing flag */
    {"a00703215303c8", METER_ECHECKSUM},      /* FCS off by one */
    {"a0070321b9f2e0", METER_ECHECKSUM},      /* REJ control, bad FCS */
};

Test(hdlc, malformed_frames)
{
	struct hdlc_frame f;
	size_t len;

	for (size_t i = 0; i < sizeof(bad_frames) / sizeof(bad_frames[0]); i++) {
		uint8_t *p = hex_tail(bad_frames[i].hex, &len);
		cr_assert_not_null(p);
		ssize_t r = hdlc_parse(p, len, &f);
		cr_assert_eq(r, bad_frames[i].rc, "%s: %zd want %d", bad_frames[i].hex, r,
		             bad_frames[i].rc);
		tail_free(p);
	}
	/* A REJ with a good FCS: well-formed, but DLMS does not use it. */
	uint8_t rej[7] = {0xa0, 0x07, 0x03, 0x21, 0x99};
	uint16_t fcs = hdlc_crc16(rej, 5);
	rej[5] = fcs & 0xff;
	rej[6] = fcs >> 8;
	cr_assert_eq(hdlc_parse(rej, sizeof(rej), &f), METER_EUNSUPPORTED);
	rej[4] = 0x91; /* the same as RR */
	fcs = hdlc_crc16(rej, 5);
	rej[5] = fcs & 0xff;
	rej[6] = fcs >> 8;
	cr_assert_eq(hdlc_parse(rej, sizeof(rej), &f), 7);
	cr_assert_eq(f.type, HDLC_RR);
	cr_assert_eq(f.nr, 4);
}

Test(hdlc, encode_every_type)
{
	static const uint8_t types[] = {HDLC_I,  HDLC_RR, HDLC_RNR,  HDLC_SNRM, HDLC_DISC,
	                                HDLC_UA, HDLC_DM, HDLC_FRMR, HDLC_UI};
	static const struct hdlc_addr addrs[] = {{0x7f, 0, 1}, {1, 0x11, 2}, {0x3fff, 0x1234, 4}};
	const uint8_t info[] = {0xe6, 0xe6, 0x00, 0x7e, 0x7e};
	uint8_t buf[64];
	struct mbuf m;
	size_t count = 0;

	for (size_t t = 0; t < sizeof(types); t++)
		for (size_t a = 0; a < 3; a++)
			for (int k = 0; k < 16; k++) {
				bool has_info = types[t] == HDLC_I || types[t] == HDLC_UI;
				struct hdlc_frame f = {.type = types[t],
				                       .segmented = types[t] == HDLC_I && (k & 1),
				                       .dest = addrs[a],
				                       .src = {0x10, 0, 1},
				                       .ns = (uint8_t)(k & 7),
				                       .nr = (uint8_t)((k * 3) & 7),
				                       .pf = k & 8,
				                       .info = has_info ? info : NULL,
				                       .info_len = has_info ? sizeof(info) : 0};
				struct hdlc_frame g;
				mbuf_init(&m, buf, sizeof(buf));
				ssize_t n = hdlc_encode(&m, &f);
				cr_assert_gt(n, 0, "type %u addr %zu k %d: %zd", types[t], a, k, n);
				cr_assert_eq(hdlc_parse(buf, (size_t)n, &g), n);
				cr_assert_eq(g.type, f.type);
				cr_assert_eq(g.pf, f.pf);
				cr_assert_eq(g.segmented, f.segmented);
				cr_assert(hdlc_addr_eq(&g.dest, &f.dest));
				cr_assert_eq(g.dest.size, f.dest.size);
				if (f.type == HDLC_I)
					cr_assert_eq(g.ns, f.ns);
				if (f.type == HDLC_I || f.type == HDLC_RR || f.type == HDLC_RNR)
					cr_assert_eq(g.nr, f.nr);
				cr_assert_eq(g.info_len, f.info_len);
				cr_assert_eq(g.has_hcs, has_info);
				count++;
			}
	cr_assert_eq(count, 9 * 3 * 16);

	/* Refusals: bad address, info where none goes, too long, no room. */
	struct hdlc_frame f = {.type = HDLC_RR, .dest = {0x80, 0, 1}, .src = {1, 0, 1}};
	mbuf_init(&m, buf, sizeof(buf));
	cr_assert_eq(hdlc_encode(&m, &f), METER_EINVAL);
	f.dest.upper = 1;
	f.dest.size = 3;
	cr_assert_eq(hdlc_encode(&m, &f), METER_EINVAL);
	f.dest.size = 1;
	f.info = info;
	f.info_len = 1;
	cr_assert_eq(hdlc_encode(&m, &f), METER_EINVAL);
	static uint8_t big[HDLC_MAX_LENGTH];
	f.type = HDLC_I;
	f.info = big;
	f.info_len = HDLC_MAX_LENGTH - 8; /* 1-byte addresses: 9 bytes of frame */
	cr_assert_eq(hdlc_encode(&m, &f), METER_ELENGTH);
	f.info_len = HDLC_MAX_LENGTH - 9;
	uint8_t *large = malloc(HDLC_MAX_FRAME);
	mbuf_init(&m, large, HDLC_MAX_FRAME);
	cr_assert_eq(hdlc_encode(&m, &f), HDLC_MAX_FRAME);
	mbuf_init(&m, large, HDLC_MAX_FRAME - 1);
	cr_assert_eq(hdlc_encode(&m, &f), METER_ENOSPC);
	cr_assert_eq(m.err, METER_ENOSPC);
	cr_assert_eq(m.len, 0);
	free(large);
}

/*
 * The stream scanner over all flagged frames of the corpus written back to
 * back (sharing no flag, then sharing flags), with garbage in front and
 * between, delivered in chunks of every size from 1 to 64.
 */
static void
scan_stream(const uint8_t *stream, size_t slen, size_t chunk, size_t want,
            const struct dlms_vector **rows, size_t nrows)
{
	uint8_t *rx = malloc(slen + 1);
	size_t have = 0, fed = 0, found = 0, errors = 0;

	while (fed < slen || have) {
		size_t k = slen - fed < chunk ? slen - fed : chunk;
		memcpy(rx + have, stream + fed, k);
		have += k;
		fed += k;
		for (;;) {
			struct hdlc_frame f;
			size_t drop = 0;
			int r = hdlc_scan(rx, have, &f, &drop);
			cr_assert_leq(drop, have);
			if (r == 1) {
				/* Frames come out in corpus order. */
				size_t len;
				uint8_t *p = hex_tail(rows[found % nrows]->hex, &len);
				size_t off = p[0] == HDLC_FLAG ? 1 : 0;
				cr_assert_eq(f.length, len - 2 * off, "frame %zu", found);
				cr_assert_eq(memcmp(rx + drop - f.length, p + off, f.length), 0);
				tail_free(p);
				found++;
			} else if (r < 0) {
				errors++;
			}
			memmove(rx, rx + drop, have - drop);
			have -= drop;
			if (r == 0)
				break;
		}
		if (fed == slen)
			break;
	}
	cr_assert_eq(found, want, "chunk %zu: found %zu of %zu", chunk, found, want);
	cr_assert_leq(have, 1); /* at most the last closing flag waits */
	cr_assert_leq(errors, 64);
	free(rx);
}

Test(hdlc, scan_stream)
{
	const struct dlms_vector *all[64], *rows[64];
	size_t n = rows_of("HDLCFrame", all, 64), nrows = 0, cap = 65536, len = 0;
	uint8_t *shared = malloc(cap), *separate = malloc(cap);
	size_t slen = 0;

	for (size_t i = 0; i < n; i++) {
		char val[16];
		if (meaning_get(all[i]->meaning, "expect", val, sizeof(val)))
			continue;
		rows[nrows++] = all[i];
	}
	/* Separate: garbage, then 7E frame 7E for every row. */
	const uint8_t junk[] = {0x00, 0xa0, 0xff, 0x12};
	memcpy(separate, junk, sizeof(junk));
	len = sizeof(junk);
	for (size_t i = 0; i < nrows; i++) {
		size_t fl;
		uint8_t *p = hex_tail(rows[i]->hex, &fl);
		size_t off = p[0] == HDLC_FLAG ? 1 : 0, body = fl - 2 * off;
		separate[len++] = HDLC_FLAG;
		memcpy(separate + len, p + off, body);
		len += body;
		separate[len++] = HDLC_FLAG;
		/* Shared: one flag between frames. */
		if (slen == 0)
			shared[slen++] = HDLC_FLAG;
		memcpy(shared + slen, p + off, body);
		slen += body;
		shared[slen++] = HDLC_FLAG;
		tail_free(p);
	}
	for (size_t chunk = 1; chunk <= 64; chunk++) {
		scan_stream(separate, len, chunk, nrows, rows, nrows);
		scan_stream(shared, slen, chunk, nrows, rows, nrows);
	}
	scan_stream(separate, len, len, nrows, rows, nrows);

	/* A frame with a bad FCS is reported, and the next one still found. */
	shared[5] ^= 0x40;
	struct hdlc_frame f;
	size_t drop, off = 0;
	int r = hdlc_scan(shared, slen, &f, &drop);
	cr_assert(r < 0);
	off += drop;
	r = hdlc_scan(shared + off, slen - off, &f, &drop);
	while (r < 0) {
		off += drop;
		r = hdlc_scan(shared + off, slen - off, &f, &drop);
	}
	cr_assert_eq(r, 1);
	size_t second;
	uint8_t *p = hex_tail(rows[1]->hex, &second);
	cr_assert_eq(memcmp(shared + off + drop - f.length, p + (p[0] == HDLC_FLAG), f.length), 0);
	tail_free(p);
	free(shared);
	free(separate);
}

Test(hdlc, addresses)
{
	static const struct {
		const char *hex;
		uint16_t upper, lower;
		int size;
	} cases[] = {
	    {"03", 1, 0, 1},
	    {"ff", 0x7f, 0, 1},
	    {"0223", 1, 17, 2},
	    {"00020023", 1, 17, 4},
	    {"fefefeff", 0x3fff, 0x3fff, 4},
	};
	uint8_t out[4];
	struct mbuf m;
	struct hdlc_addr a;
	size_t len;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint8_t *p = hex_tail(cases[i].hex, &len);
		cr_assert_eq(hdlc_addr_parse(p, len, &a), cases[i].size);
		cr_assert_eq(a.upper, cases[i].upper);
		cr_assert_eq(a.lower, cases[i].lower);
		mbuf_init(&m, out, sizeof(out));
		cr_assert_eq(hdlc_addr_put(&m, &a), 0);
		cr_assert_str_eq(to_hex(out, m.len), cases[i].hex);
		for (size_t k = 0; k < len; k++)
			cr_assert_eq(hdlc_addr_parse(p, k, &a), METER_ENEEDMORE);
		tail_free(p);
	}
	uint8_t three[] = {0x00, 0x02, 0x23};
	cr_assert_eq(hdlc_addr_parse(three, 3, &a), METER_EMALFORMED);
	uint8_t five[] = {0x00, 0x02, 0x22, 0x00, 0x01};
	cr_assert_eq(hdlc_addr_parse(five, 5, &a), METER_EMALFORMED);
}

/* hdlc_frame_len() is what hdlc_encode() appends, for every address size
 * pair and information lengths from none to the largest. */
Test(hdlc, frame_len_matches_encode)
{
	static uint8_t buf[HDLC_MAX_FRAME], info[HDLC_MAX_INFO];
	static const struct hdlc_addr addrs[3] = {{16, 0, 1}, {1, 17, 2}, {1, 0x3fff, 4}};
	static const size_t lens[] = {0, 1, 3, 128, 1024, HDLC_MAX_INFO};
	int checked = 0;

	for (int d = 0; d < 3; d++)
		for (int s = 0; s < 3; s++)
			for (size_t k = 0; k < sizeof(lens) / sizeof(lens[0]); k++) {
				struct hdlc_frame f = {.type = lens[k] ? HDLC_I : HDLC_RR,
				                       .dest = addrs[d],
				                       .src = addrs[s],
				                       .info = info,
				                       .info_len = lens[k]};
				struct mbuf m;
				mbuf_init(&m, buf, sizeof(buf));
				ssize_t n = hdlc_encode(&m, &f);
				cr_assert_gt(n, 0, "d %d s %d len %zu", d, s, lens[k]);
				cr_assert_eq((size_t)n,
				             hdlc_frame_len(addrs[d].size, addrs[s].size, lens[k]));
				/* one byte less room: refused without a partial frame */
				mbuf_init(&m, buf, (size_t)n - 1);
				cr_assert_eq(hdlc_encode(&m, &f), METER_ENOSPC);
				checked++;
			}
	cr_assert_eq(checked, 54);
}
