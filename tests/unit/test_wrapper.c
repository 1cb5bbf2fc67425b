/*
 * test_wrapper.c: the IEC 62056-47 wrapper against every `wrapper` row of
 * the DLMS vectors (fields, re-encoding, prefixes, bad versions), and the
 * stream helper fed in every chunk size, with PDUs split across reads and
 * several PDUs in one read.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "meter_error.h"
#include "vectors.h"
#include "wrapper.h"

static size_t
wrapper_rows(const char *type, const struct dlms_vector **out, size_t cap)
{
	size_t n, k = 0;
	const struct dlms_vector *v = dlms_vectors(&n);
	char t[32];

	cr_assert_not_null(v, "vectors not found (AMM_VECTORS)");
	for (size_t i = 0; i < n; i++) {
		if (strcmp(v[i].layer, "wrapper") != 0)
			continue;
		if (type && strcmp(meaning_type(v[i].meaning, t, sizeof(t)), type) != 0)
			continue;
		cr_assert_lt(k, cap);
		out[k++] = &v[i];
	}
	return k;
}

static unsigned long
field(const char *meaning, const char *key)
{
	char val[64];

	cr_assert_not_null(meaning_get(meaning, key, val, sizeof(val)), "no %s", key);
	return strtoul(val, NULL, 0);
}

/* payload_hex=... inside payload=not-decoded(...), or NULL. */
static const char *
payload_hex(const char *meaning, char *out, size_t n)
{
	const char *p = strstr(meaning, "payload_hex=");
	size_t i = 0;

	if (p == NULL || strncmp(meaning_get(meaning, "payload", out, n), "not-decoded", 11) != 0)
		return NULL;
	for (p += 12; *p && *p != ')' && *p != ',' && i + 1 < n; p++)
		out[i++] = *p;
	out[i] = '\0';
	return out;
}

Test(wrapper, headers_match_meaning)
{
	const struct dlms_vector *rows[16];
	size_t n = wrapper_rows("WrapperHeader", rows, 16), good = 0, bad = 0, opaque = 0;

	cr_assert_eq(n, 9);
	for (size_t i = 0; i < n; i++) {
		const char *m = rows[i]->meaning;
		struct wrapper_pdu w;
		char val[512];
		size_t len;
		uint8_t *p = hex_tail(rows[i]->hex, &len);
		ssize_t r = wrapper_parse(p, len, 0, &w);

		if (meaning_get(m, "expect", val, sizeof(val))) {
			cr_assert_eq(r, METER_EMALFORMED, "%s: %zd", rows[i]->id, r);
			cr_assert_neq(field(m, "version"), WRAPPER_VERSION);
			/* Refused from the first two bytes on. */
			cr_assert_eq(wrapper_parse(p, 2, 0, &w), METER_EMALFORMED);
			bad++;
			tail_free(p);
			continue;
		}
		cr_assert_eq(r, (ssize_t)len, "%s: %zd", rows[i]->id, r);
		cr_assert_eq(w.version, field(m, "version"));
		cr_assert_eq(w.src_wport, field(m, "source_wport"), "%s", rows[i]->id);
		cr_assert_eq(w.dst_wport, field(m, "destination_wport"), "%s", rows[i]->id);
		cr_assert_eq(w.length, field(m, "length"), "%s", rows[i]->id);
		cr_assert_eq(w.apdu, p + WRAPPER_HEADER_LEN);
		if (payload_hex(m, val, sizeof(val))) {
			cr_assert_str_eq(to_hex(w.apdu, w.length), val, "%s", rows[i]->id);
			opaque++;
		}
		/* Re-encode to the same bytes. */
		uint8_t out[512];
		struct mbuf b;
		mbuf_init(&b, out, sizeof(out));
		cr_assert_eq(wrapper_encode(&b, w.src_wport, w.dst_wport, w.apdu, w.length),
		             (ssize_t)len);
		cr_assert_eq(memcmp(out, p, len), 0, "%s", rows[i]->id);
		/* Every prefix asks for more; a tight bound refuses. */
		for (size_t k = 0; k < len; k++) {
			uint8_t *q = malloc(k ? k : 1);
			memcpy(q, p, k);
			cr_assert_eq(wrapper_parse(q, k, 0, &w), METER_ENEEDMORE, "%s %zu",
			             rows[i]->id, k);
			free(q);
		}
		cr_assert_eq(wrapper_parse(p, len, len - WRAPPER_HEADER_LEN - 1, &w),
		             METER_ELENGTH);
		cr_assert_eq(wrapper_parse(p, len, len - WRAPPER_HEADER_LEN, &w), (ssize_t)len);
		good++;
		tail_free(p);
	}
	cr_assert_eq(good, 6);
	cr_assert_eq(bad, 3);
	cr_assert_geq(opaque, 4);
}

/* Feed a byte string through a stream in chunks of `chunk`; collect PDUs. */
static size_t
run_stream(const uint8_t *in, size_t len, size_t chunk, struct wrapper_pdu *got,
           uint8_t (*copies)[256], size_t cap, int *err)
{
	uint8_t *buf = malloc(300);
	struct wrapper_stream s;
	size_t fed = 0, n = 0;
	int r;

	cr_assert_eq(wrapper_stream_init(&s, buf, 300, 0), 0);
	*err = 0;
	while (fed < len) {
		size_t k = len - fed < chunk ? len - fed : chunk;
		size_t took = wrapper_stream_feed(&s, in + fed, k);
		fed += took;
		while ((r = wrapper_stream_next(&s, &got[n])) == 1) {
			cr_assert_lt(n, cap);
			cr_assert_leq(got[n].length, sizeof(copies[0]));
			memcpy(copies[n], got[n].apdu, got[n].length);
			n++;
		}
		if (r < 0) {
			*err = r;
			break;
		}
	}
	free(buf);
	return n;
}

Test(wrapper, stream_two_messages_every_chunk)
{
	const struct dlms_vector *rows[4];
	size_t n = wrapper_rows("WrapperStream", rows, 4), len;
	char m1[256], m2[256], h1[128], h2[128];

	cr_assert_eq(n, 1);
	cr_assert_eq(field(rows[0]->meaning, "messages"), 2);
	meaning_get(rows[0]->meaning, "msg1", m1, sizeof(m1));
	meaning_get(rows[0]->meaning, "msg2", m2, sizeof(m2));
	cr_assert_not_null(strstr(m1, "payload_hex="));
	sscanf(strstr(m1, "payload_hex=") + 12, "%127[0-9a-f]", h1);
	sscanf(strstr(m2, "payload_hex=") + 12, "%127[0-9a-f]", h2);
	uint8_t *p = hex_tail(rows[0]->hex, &len);

	/* One parse call sees the first PDU only. */
	struct wrapper_pdu w;
	ssize_t r = wrapper_parse(p, len, 0, &w);
	cr_assert_gt(r, 0);
	cr_assert_str_eq(to_hex(w.apdu, w.length), h1);
	cr_assert_eq(wrapper_parse(p + r, len - (size_t)r, 0, &w), (ssize_t)len - r);
	cr_assert_str_eq(to_hex(w.apdu, w.length), h2);

	for (size_t chunk = 1; chunk <= len; chunk++) {
		struct wrapper_pdu got[4];
		uint8_t copies[4][256];
		int err;
		cr_assert_eq(run_stream(p, len, chunk, got, copies, 4, &err), 2, "chunk %zu",
		             chunk);
		cr_assert_eq(err, 0);
		cr_assert_str_eq(to_hex(copies[0], got[0].length), h1);
		cr_assert_str_eq(to_hex(copies[1], got[1].length), h2);
		cr_assert_eq(got[1].src_wport, 3);
	}
	tail_free(p);
}

/* All good rows back to back, then a bad version: the stream stops there. */
Test(wrapper, stream_all_rows_then_bad_version)
{
	const struct dlms_vector *rows[16];
	size_t n = wrapper_rows(NULL, rows, 16), total = 0, want = 0;
	uint8_t *all = malloc(4096);
	const char *bad = NULL;

	for (size_t i = 0; i < n; i++) {
		char val[64];
		size_t len;
		if (meaning_get(rows[i]->meaning, "expect", val, sizeof(val))) {
			bad = rows[i]->hex;
			continue;
		}
		uint8_t *p = hex_tail(rows[i]->hex, &len);
		memcpy(all + total, p, len);
		total += len;
		want += strcmp(rows[i]->id, "wrapper-recv-two-messages") == 0 ? 2 : 1;
		tail_free(p);
	}
	cr_assert_not_null(bad);
	size_t good_len = total, blen;
	uint8_t *p = hex_tail(bad, &blen);
	memcpy(all + total, p, blen);
	total += blen;
	tail_free(p);

	for (size_t chunk = 1; chunk <= 97; chunk += 3) {
		struct wrapper_pdu got[16];
		uint8_t copies[16][256];
		int err;
		cr_assert_eq(run_stream(all, good_len, chunk, got, copies, 16, &err), want);
		cr_assert_eq(err, 0);
		cr_assert_eq(run_stream(all, total, chunk, got, copies, 16, &err), want);
		cr_assert_eq(err, METER_EMALFORMED, "chunk %zu", chunk);
	}
	free(all);
}

Test(wrapper, bounds)
{
	static uint8_t big[70000], apdu[65536];
	uint8_t buf[16];
	struct mbuf b;
	struct wrapper_stream s;
	struct wrapper_pdu w;
	const uint8_t hdr[] = {0, 1, 0, 16, 0, 1, 0x01, 0x00}; /* length 256 */

	mbuf_init(&b, buf, sizeof(buf));
	cr_assert_eq(wrapper_encode(&b, 16, 1, apdu, 65536), METER_ELENGTH);
	cr_assert_eq(wrapper_encode(&b, 16, 1, apdu, 9), METER_ENOSPC);
	cr_assert_eq(b.len, 0);
	cr_assert_eq(b.err, METER_ENOSPC);
	mbuf_init(&b, big, sizeof(big));
	cr_assert_eq(wrapper_encode(&b, 16, 1, apdu, 65535), 65543);
	cr_assert_eq(wrapper_parse(big, 65543, 0, &w), 65543);
	cr_assert_eq(w.length, 65535);

	/* A length larger than the stream's buffer can never complete. */
	cr_assert_eq(wrapper_stream_init(&s, buf, 7, 0), METER_EINVAL);
	cr_assert_eq(wrapper_stream_init(&s, buf, sizeof(buf), 0), 0);
	cr_assert_eq(wrapper_stream_feed(&s, hdr, sizeof(hdr)), sizeof(hdr));
	cr_assert_eq(wrapper_stream_next(&s, &w), METER_ELENGTH);
	cr_assert_eq(wrapper_stream_next(&s, &w), METER_ELENGTH); /* sticky */
	cr_assert_eq(wrapper_parse(hdr, sizeof(hdr), 255, &w), METER_ELENGTH);
	cr_assert_eq(wrapper_parse(hdr, sizeof(hdr), 256, &w), METER_ENEEDMORE);
}
