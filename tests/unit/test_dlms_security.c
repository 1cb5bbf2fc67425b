/*
 * test_dlms_security.c: security suite 0 against every `cipher` row of the
 * DLMS corpus (ciphering recomputed from the row's keys and plaintext,
 * deciphered back, bad tags refused, HLS-GMAC and key wrap recomputed),
 * plus the invocation-counter, policy and buffer rules of dlms_security.h.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bytes.h"
#include "dlms_security.h"
#include "meter_error.h"
#include "vectors.h"

/* Hex digits at the start of s (up to the first non-hex char) into out. */
static size_t
unhex(const char *s, uint8_t *out, size_t cap)
{
	size_t n = 0;

	while (n < cap && bytes_hexval(s[0]) >= 0 && bytes_hexval(s[1]) >= 0) {
		out[n++] = (uint8_t)(bytes_hexval(s[0]) << 4 | bytes_hexval(s[1]));
		s += 2;
	}
	return n;
}

struct cipher_row {
	const struct dlms_vector *v;
	char type[64];
	uint8_t sc;
	uint8_t st[8];
	uint32_t ic;
	struct dlms_keys k;
	uint8_t plain[512];
	size_t plain_len;
	uint8_t *wire; /* the row's hex */
	size_t wire_len;
	bool negative;
	bool verified;
	char verified_text[256];
};

static char field[8192];

static const char *
get(const struct dlms_vector *v, const char *key)
{
	return meaning_get(v->meaning, key, field, sizeof(field));
}

static void
load_row(const struct dlms_vector *v, struct cipher_row *r)
{
	const char *s;

	memset(r, 0, sizeof(*r));
	r->v = v;
	meaning_type(v->meaning, r->type, sizeof(r->type));
	if ((s = get(v, "security_control")))
		r->sc = (uint8_t)strtoul(s, NULL, 16);
	if ((s = get(v, "system_title")))
		unhex(s, r->st, sizeof(r->st));
	if ((s = get(v, "frame_counter")))
		r->ic = (uint32_t)strtoul(s, NULL, 16);
	if ((s = get(v, "key")))
		unhex(s, r->k.ek, sizeof(r->k.ek));
	if ((s = get(v, "auth_key")))
		unhex(s, r->k.ak, sizeof(r->k.ak));
	if ((s = get(v, "plaintext_hex")))
		r->plain_len = unhex(s, r->plain, sizeof(r->plain));
	r->negative = get(v, "expect") != NULL;
	s = get(v, "verified");
	snprintf(r->verified_text, sizeof(r->verified_text), "%s", s ? s : "(missing)");
	r->verified = s && strncmp(s, "yes", 3) == 0;
	r->wire = hex_tail(v->hex, &r->wire_len);
	cr_assert_not_null(r->wire, "%s: bad hex", v->id);
}

/* A glo or general-glo row: protect its plaintext and get its bytes, unprotect its bytes. */
static void
check_ciphering(struct cipher_row *r, enum dlms_cipher_kind kind)
{
	uint8_t buf[1024];
	struct mbuf out;
	struct dlms_ciphered c;
	ssize_t n;
	int rc;

	n = dlms_ciphered_parse(r->wire, r->wire_len, &c);
	cr_assert_eq(n, (ssize_t)r->wire_len, "%s: parse %zd", r->v->id, n);
	cr_assert_eq(c.sc, r->sc, "%s", r->v->id);
	cr_assert_eq(c.ic, r->ic, "%s", r->v->id);

	mbuf_init(&out, buf, sizeof(buf));
	rc = dlms_unprotect(&out, &c, &r->k, r->st, 0, NULL);
	if (r->negative) {
		cr_assert_eq(rc, METER_EAUTH, "%s: bad tag gave %d", r->v->id, rc);
		cr_assert_eq(out.len, 0, "%s: output left behind", r->v->id);
		return;
	}
	cr_assert_eq(rc, 0, "%s: unprotect %s", r->v->id, meter_strerror(rc));
	cr_assert_eq(out.len, r->plain_len, "%s", r->v->id);
	cr_assert_eq(memcmp(buf, r->plain, r->plain_len), 0, "%s: plaintext differs", r->v->id);

	mbuf_init(&out, buf, sizeof(buf));
	rc = dlms_protect(&out, kind, r->sc, &r->k, r->st, r->ic, r->plain, r->plain_len);
	cr_assert_eq(rc, 0, "%s: protect %s", r->v->id, meter_strerror(rc));
	cr_assert_eq(out.len, r->wire_len, "%s: %zu bytes, want %zu", r->v->id, out.len,
	             r->wire_len);
	cr_assert_eq(memcmp(buf, r->wire, r->wire_len), 0, "%s: got %s", r->v->id,
	             to_hex(buf, out.len));
}

static void
check_gmac(struct cipher_row *r)
{
	uint8_t chal[64], f[DLMS_HLS_GMAC_LEN], bad[DLMS_HLS_GMAC_LEN];
	size_t clen = unhex(get(r->v, "challenge_hex"), chal, sizeof(chal));
	uint32_t ic = 0;

	cr_assert_gt(clen, 0, "%s", r->v->id);
	cr_assert_eq(r->wire_len, DLMS_HLS_GMAC_LEN, "%s", r->v->id);
	cr_assert_eq(dlms_hls_gmac(f, r->sc, &r->k, r->st, r->ic, chal, clen), 0);
	cr_assert_eq(memcmp(f, r->wire, DLMS_HLS_GMAC_LEN), 0, "%s: got %s", r->v->id,
	             to_hex(f, sizeof(f)));
	cr_assert_eq(dlms_hls_gmac_check(r->wire, r->wire_len, &r->k, r->st, chal, clen, &ic), 0);
	cr_assert_eq(ic, r->ic);
	memcpy(bad, r->wire, sizeof(bad));
	bad[DLMS_HLS_GMAC_LEN - 1] ^= 1;
	cr_assert_eq(dlms_hls_gmac_check(bad, sizeof(bad), &r->k, r->st, chal, clen, NULL),
	             METER_EAUTH);
	chal[0] ^= 1; /* an answer to another challenge */
	cr_assert_eq(dlms_hls_gmac_check(r->wire, r->wire_len, &r->k, r->st, chal, clen, NULL),
	             METER_EAUTH);
	cr_assert_eq(dlms_hls_gmac_check(r->wire, r->wire_len - 1, &r->k, r->st, chal, clen, NULL),
	             METER_EAUTH);
}

static void
check_key_wrap(struct cipher_row *r)
{
	uint8_t kek[16], key[64], out[64], back[64];
	size_t klen;
	ssize_t n;

	cr_assert_eq(unhex(get(r->v, "kek"), kek, sizeof(kek)), 16);
	klen = unhex(get(r->v, "key_data"), key, sizeof(key));
	n = dlms_key_wrap(out, sizeof(out), kek, key, klen);
	cr_assert_eq(n, (ssize_t)r->wire_len, "%s: %zd", r->v->id, n);
	cr_assert_eq(memcmp(out, r->wire, r->wire_len), 0, "%s: got %s", r->v->id,
	             to_hex(out, (size_t)n));
	n = dlms_key_unwrap(back, sizeof(back), kek, r->wire, r->wire_len);
	cr_assert_eq(n, (ssize_t)klen);
	cr_assert_eq(memcmp(back, key, klen), 0);
	memcpy(out, r->wire, r->wire_len);
	out[3] ^= 0x40;
	cr_assert_eq(dlms_key_unwrap(back, sizeof(back), kek, out, r->wire_len), METER_EAUTH);
	cr_assert_eq(dlms_key_wrap(out, 8, kek, key, klen), METER_ENOSPC);
	cr_assert_eq(dlms_key_wrap(out, sizeof(out), kek, key, 12), METER_EINVAL);
}

Test(dlms_security, every_cipher_row)
{
	size_t n, rows = 0, done = 0, negatives = 0, skipped = 0;
	const struct dlms_vector *v = dlms_vectors(&n);
	struct cipher_row r;

	cr_assert_not_null(v);
	for (size_t i = 0; i < n; i++) {
		if (strcmp(v[i].layer, "cipher") != 0)
			continue;
		rows++;
		load_row(&v[i], &r);
		if (!r.verified) {
			/* The corpus could not recompute these (no keys, or ECDH inputs missing).
			 */
			cr_log_info("skip %s: verified=%s", v[i].id, r.verified_text);
			if (strcmp(r.type, "GeneralGloCiphering") == 0) {
				/* Still check the framing we can see. */
				struct dlms_ciphered c;
				cr_assert_eq(dlms_ciphered_parse(r.wire, r.wire_len, &c),
				             (ssize_t)r.wire_len, "%s", v[i].id);
			} else if (strcmp(r.type, "GeneralCiphering") == 0) {
				struct dlms_ciphered c;
				cr_assert_eq(dlms_ciphered_parse(r.wire, r.wire_len, &c),
				             METER_EUNSUPPORTED, "%s", v[i].id);
			}
			skipped++;
		} else if (strcmp(r.type, "GlobalCiphering") == 0) {
			check_ciphering(&r, DLMS_CIPHER_GLO);
			done++;
		} else if (strcmp(r.type, "GeneralGloCiphering") == 0) {
			check_ciphering(&r, DLMS_CIPHER_GENERAL_GLO);
			done++;
		} else if (strcmp(r.type, "HLSGmacResponse") == 0) {
			check_gmac(&r);
			done++;
		} else if (strcmp(r.type, "AESKeyWrap") == 0) {
			check_key_wrap(&r);
			done++;
		} else {
			cr_assert_fail("%s: row type %s not handled", v[i].id, r.type);
		}
		negatives += r.negative;
		tail_free(r.wire);
	}
	cr_assert_eq(rows, 18, "cipher rows: %zu", rows);
	cr_assert_eq(done, 16, "recomputed %zu", done);
	cr_assert_eq(negatives, 2);
	cr_assert_eq(skipped, 2);
}

static void
load(const char *id, struct cipher_row *r)
{
	const struct dlms_vector *v = dlms_vector(id);

	cr_assert_not_null(v, "no row %s", id);
	load_row(v, r);
}

Test(dlms_security, invocation_counter_must_increase)
{
	struct cipher_row r;
	struct dlms_ciphered c;
	struct dlms_rx_counter rx;
	uint8_t buf[256], wire[256];
	struct mbuf out;

	load("cipher-glo-get-request-sc30", &r);
	cr_assert_gt(dlms_ciphered_parse(r.wire, r.wire_len, &c), 0);

	rx = (struct dlms_rx_counter){.last = r.ic, .seen = true};
	mbuf_init(&out, buf, sizeof(buf));
	cr_assert_eq(dlms_unprotect(&out, &c, &r.k, r.st, 0, &rx), METER_EREPLAY);
	cr_assert_eq(out.len, 0);
	rx.last = r.ic + 1;
	cr_assert_eq(dlms_unprotect(&out, &c, &r.k, r.st, 0, &rx), METER_EREPLAY);
	cr_assert_eq(rx.last, r.ic + 1, "a refused APDU must not move the counter");

	rx.last = r.ic - 1;
	cr_assert_eq(dlms_unprotect(&out, &c, &r.k, r.st, 0, &rx), 0);
	cr_assert_eq(rx.last, r.ic);
	cr_assert(rx.seen);
	/* The same APDU again is a replay. */
	mbuf_init(&out, buf, sizeof(buf));
	cr_assert_eq(dlms_unprotect(&out, &c, &r.k, r.st, 0, &rx), METER_EREPLAY);

	/* The next counter is taken. */
	mbuf_init(&out, wire, sizeof(wire));
	cr_assert_eq(
	    dlms_protect(&out, DLMS_CIPHER_GLO, r.sc, &r.k, r.st, r.ic + 1, r.plain, r.plain_len),
	    0);
	cr_assert_gt(dlms_ciphered_parse(wire, out.len, &c), 0);
	mbuf_init(&out, buf, sizeof(buf));
	cr_assert_eq(dlms_unprotect(&out, &c, &r.k, r.st, 0, &rx), 0);
	cr_assert_eq(rx.last, r.ic + 1);
	cr_assert_eq(memcmp(buf, r.plain, r.plain_len), 0);

	/* Nothing accepted yet: any counter, even 0, is taken. */
	rx = (struct dlms_rx_counter){0};
	mbuf_init(&out, wire, sizeof(wire));
	cr_assert_eq(dlms_protect(&out, DLMS_CIPHER_GLO, r.sc, &r.k, r.st, 0, r.plain, r.plain_len),
	             0);
	cr_assert_gt(dlms_ciphered_parse(wire, out.len, &c), 0);
	mbuf_init(&out, buf, sizeof(buf));
	cr_assert_eq(dlms_unprotect(&out, &c, &r.k, r.st, 0, &rx), 0);
	cr_assert(rx.seen);
	cr_assert_eq(rx.last, 0);
	tail_free(r.wire);
}

Test(dlms_security, tag_failure_leaves_no_plaintext)
{
	struct cipher_row r;
	struct dlms_ciphered c;
	struct dlms_rx_counter rx = {0};
	uint8_t buf[256], *bad;
	struct mbuf out;

	load("cipher-glo-get-request-sc30", &r);
	bad = malloc(r.wire_len);
	memcpy(bad, r.wire, r.wire_len);
	bad[r.wire_len - 1] ^= 0x01;
	cr_assert_gt(dlms_ciphered_parse(bad, r.wire_len, &c), 0);
	memset(buf, 0xee, sizeof(buf));
	mbuf_init(&out, buf, sizeof(buf));
	mbuf_u8(&out, 0x42); /* something already in the buffer stays */
	cr_assert_eq(dlms_unprotect(&out, &c, &r.k, r.st, 0, &rx), METER_EAUTH);
	cr_assert_eq(out.len, 1);
	cr_assert_eq(buf[0], 0x42);
	cr_assert(!rx.seen, "a forged APDU must not move the counter");
	for (size_t i = 1; i + r.plain_len <= sizeof(buf); i++)
		cr_assert_neq(memcmp(buf + i, r.plain, r.plain_len), 0, "plaintext at %zu", i);
	/* A flipped ciphertext byte fails the same way. */
	memcpy(bad, r.wire, r.wire_len);
	bad[8] ^= 0x80;
	cr_assert_gt(dlms_ciphered_parse(bad, r.wire_len, &c), 0);
	mbuf_init(&out, buf, sizeof(buf));
	cr_assert_eq(dlms_unprotect(&out, &c, &r.k, r.st, 0, NULL), METER_EAUTH);
	/* So does the wrong system title (another meter's IV). */
	cr_assert_gt(dlms_ciphered_parse(r.wire, r.wire_len, &c), 0);
	r.st[7] ^= 1;
	cr_assert_eq(dlms_unprotect(&out, &c, &r.k, r.st, 0, NULL), METER_EAUTH);
	cr_assert_eq(out.len, 0);
	free(bad);
	tail_free(r.wire);
}

Test(dlms_security, policy_and_limits)
{
	struct cipher_row r, ro;
	struct dlms_ciphered c;
	uint8_t buf[256];
	struct mbuf out;

	/* Encryption only is refused when authentication is required. */
	load("cipher-glo-get-request-sc20", &r);
	cr_assert_gt(dlms_ciphered_parse(r.wire, r.wire_len, &c), 0);
	mbuf_init(&out, buf, sizeof(buf));
	cr_assert_eq(dlms_unprotect(&out, &c, &r.k, r.st, DLMS_SC_AUTH, NULL), METER_EAUTH);
	cr_assert_eq(dlms_unprotect(&out, &c, &r.k, r.st, DLMS_SC_ENC, NULL), 0);
	cr_assert_eq(memcmp(buf, r.plain, r.plain_len), 0);

	/* Authentication only is refused when encryption is required. */
	load("cipher-glo-get-request-sc10", &ro);
	cr_assert_gt(dlms_ciphered_parse(ro.wire, ro.wire_len, &c), 0);
	mbuf_init(&out, buf, sizeof(buf));
	cr_assert_eq(dlms_unprotect(&out, &c, &ro.k, ro.st, DLMS_SC_ENC, NULL), METER_EAUTH);
	cr_assert_eq(dlms_unprotect(&out, &c, &ro.k, ro.st, DLMS_SC_AUTH, NULL), 0);

	/* Neither A nor E, suite 2 and compression are refused. */
	c.sc = 0x00;
	cr_assert_eq(dlms_unprotect(&out, &c, &ro.k, ro.st, 0, NULL), METER_EAUTH);
	c.sc = 0x12;
	cr_assert_eq(dlms_unprotect(&out, &c, &ro.k, ro.st, 0, NULL), METER_EUNSUPPORTED);
	c.sc = 0x90;
	cr_assert_eq(dlms_unprotect(&out, &c, &ro.k, ro.st, 0, NULL), METER_EUNSUPPORTED);
	/* glo needs the peer's system title. */
	c.sc = 0x10;
	cr_assert_eq(dlms_unprotect(&out, &c, &ro.k, NULL, 0, NULL), METER_EINVAL);

	/* Output too small: ENOSPC and nothing written. */
	mbuf_init(&out, buf, r.wire_len - 1);
	cr_assert_eq(dlms_protect(&out, DLMS_CIPHER_GLO, 0x30, &r.k, r.st, 1, r.plain, r.plain_len),
	             METER_ENOSPC);
	cr_assert_eq(out.len, 0);
	mbuf_init(&out, buf, sizeof(buf));
	cr_assert_eq(dlms_protect(&out, DLMS_CIPHER_GLO, 0x00, &r.k, r.st, 1, r.plain, r.plain_len),
	             METER_EINVAL);
	cr_assert_eq(dlms_protect(&out, DLMS_CIPHER_GLO, 0x32, &r.k, r.st, 1, r.plain, r.plain_len),
	             METER_EUNSUPPORTED);
	/* A data-notification has no glo twin: general-glo only. */
	uint8_t dn[] = {0x0f, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00};
	cr_assert_eq(dlms_protect(&out, DLMS_CIPHER_GLO, 0x30, &r.k, r.st, 1, dn, sizeof(dn)),
	             METER_EINVAL);

	/* Truncated framing asks for more; a short body is malformed. */
	for (size_t n = 0; n < r.wire_len; n++)
		cr_assert_eq(dlms_ciphered_parse(r.wire, n, &c), METER_ENEEDMORE, "at %zu", n);
	tail_free(r.wire);
	tail_free(ro.wire);
}

Test(dlms_security, general_glo_title_checks)
{
	struct cipher_row r;
	struct dlms_ciphered c;
	uint8_t buf[512], other[8];
	struct mbuf out;

	load("cipher-general-glo-dlms-cosem", &r);
	cr_assert_eq(dlms_ciphered_parse(r.wire, r.wire_len, &c), (ssize_t)r.wire_len);
	cr_assert_not_null(c.system_title);
	cr_assert_eq(memcmp(c.system_title, r.st, 8), 0);
	cr_assert_eq(c.plain_tag, 0);
	/* Keys found by the APDU's own title: no peer title needed. */
	mbuf_init(&out, buf, sizeof(buf));
	cr_assert_eq(dlms_unprotect(&out, &c, &r.k, NULL, DLMS_SC_AUTH | DLMS_SC_ENC, NULL), 0);
	cr_assert_eq(out.len, r.plain_len);
	/* A title other than the expected meter's is refused before any decryption. */
	memcpy(other, r.st, 8);
	other[0] ^= 1;
	mbuf_init(&out, buf, sizeof(buf));
	cr_assert_eq(dlms_unprotect(&out, &c, &r.k, other, 0, NULL), METER_EAUTH);
	cr_assert_eq(out.len, 0);

	/* general-ded-ciphering round trip with our title. */
	mbuf_init(&out, buf, sizeof(buf));
	cr_assert_eq(
	    dlms_protect(&out, DLMS_CIPHER_GENERAL_DED, 0x30, &r.k, r.st, 7, r.plain, r.plain_len),
	    0);
	cr_assert_eq(buf[0], DLMS_TAG_GENERAL_DED_CIPHERING);
	uint8_t plain[512];
	struct mbuf po;
	cr_assert_gt(dlms_ciphered_parse(buf, out.len, &c), 0);
	mbuf_init(&po, plain, sizeof(plain));
	cr_assert_eq(dlms_unprotect(&po, &c, &r.k, r.st, 0, NULL), 0);
	cr_assert_eq(po.len, r.plain_len);
	cr_assert_eq(memcmp(plain, r.plain, r.plain_len), 0);
	tail_free(r.wire);
}

Test(dlms_security, ded_ciphering_round_trip_all_modes)
{
	struct cipher_row r;
	struct dlms_ciphered c;
	uint8_t wire[256], plain[256];
	struct mbuf out, po;
	const uint8_t scs[] = {0x10, 0x20, 0x30, 0x31};

	load("cipher-glo-get-request-sc30", &r);
	for (size_t i = 0; i < sizeof(scs); i++) {
		mbuf_init(&out, wire, sizeof(wire));
		cr_assert_eq(dlms_protect(&out, DLMS_CIPHER_DED, scs[i], &r.k, r.st, 100 + i,
		                          r.plain, r.plain_len),
		             0);
		cr_assert_eq(wire[0], 0xd0, "ded-get-request");
		cr_assert_eq(dlms_ciphered_parse(wire, out.len, &c), (ssize_t)out.len);
		cr_assert_eq(c.plain_tag, 0xc0);
		cr_assert_eq(c.sc, scs[i]);
		cr_assert_eq(c.ic, 100 + i);
		mbuf_init(&po, plain, sizeof(plain));
		cr_assert_eq(dlms_unprotect(&po, &c, &r.k, r.st, 0, NULL), 0, "sc %02x", scs[i]);
		cr_assert_eq(po.len, r.plain_len);
		cr_assert_eq(memcmp(plain, r.plain, r.plain_len), 0);
	}
	tail_free(r.wire);
}

Test(dlms_security, tag_table)
{
	static const struct {
		uint8_t plain, glo;
		int ded;
	} t[] = {
	    {0x01, 0x21, -1},   {0x05, 0x25, 0x45}, {0x06, 0x26, 0x46}, {0x08, 0x28, -1},
	    {0x0c, 0x2c, 0x4c}, {0x0d, 0x2d, 0x4d}, {0x0e, 0x2e, 0x4e}, {0x16, 0x36, 0x56},
	    {0x18, 0x38, 0x58}, {0xc0, 0xc8, 0xd0}, {0xc1, 0xc9, 0xd1}, {0xc2, 0xca, 0xd2},
	    {0xc3, 0xcb, 0xd3}, {0xc4, 0xcc, 0xd4}, {0xc5, 0xcd, 0xd5}, {0xc7, 0xcf, 0xd7},
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		cr_assert_eq(dlms_glo_tag(t[i].plain), t[i].glo, "%02x", t[i].plain);
		cr_assert_eq(dlms_plain_tag(t[i].glo), t[i].plain, "%02x", t[i].glo);
		cr_assert(dlms_is_ciphered_tag(t[i].glo));
		if (t[i].ded < 0) {
			cr_assert_eq(dlms_ded_tag(t[i].plain), METER_EUNSUPPORTED);
		} else {
			cr_assert_eq(dlms_ded_tag(t[i].plain), t[i].ded, "%02x", t[i].plain);
			cr_assert_eq(dlms_plain_tag((uint8_t)t[i].ded), t[i].plain);
		}
	}
	/* No twins: data-notification, exception-response, access; 0xc6/0xce/0xd6 unused. */
	const uint8_t none[] = {0x0f, 0xd8, 0xd9, 0xc6, 0x00, 0x60};
	for (size_t i = 0; i < sizeof(none); i++)
		cr_assert_eq(dlms_glo_tag(none[i]), METER_EUNSUPPORTED, "%02x", none[i]);
	cr_assert_eq(dlms_plain_tag(0xce), METER_EUNSUPPORTED);
	cr_assert_eq(dlms_plain_tag(0xd6), METER_EUNSUPPORTED);
	cr_assert_eq(dlms_plain_tag(0x41), METER_EUNSUPPORTED, "no ded-initiateRequest");
	cr_assert(dlms_is_ciphered_tag(0xdb));
	cr_assert(dlms_is_ciphered_tag(0xdc));
	cr_assert(!dlms_is_ciphered_tag(0xc0));
	cr_assert(!dlms_is_ciphered_tag(0x61));
}

Test(dlms_security, hls_gmac_both_directions_agree)
{
	/* A client and a server with the same keys each check the other's answer. */
	struct cipher_row s, c;
	uint8_t stoc[8], ctos[8], f[DLMS_HLS_GMAC_LEN];
	size_t sl, cl;

	load("cipher-gmac-hls-stoc", &s);
	load("cipher-gmac-hls-ctos", &c);
	sl = unhex(get(s.v, "challenge_hex"), stoc, sizeof(stoc));
	cl = unhex(get(c.v, "challenge_hex"), ctos, sizeof(ctos));
	/* The client answers StoC under its own title and counter... */
	cr_assert_eq(dlms_hls_gmac(f, 0x10, &s.k, s.st, 5, stoc, sl), 0);
	cr_assert_eq(dlms_hls_gmac_check(f, sizeof(f), &s.k, s.st, stoc, sl, NULL), 0);
	/* ...and checking it against the server's title fails. */
	cr_assert_eq(dlms_hls_gmac_check(f, sizeof(f), &s.k, c.st, stoc, sl, NULL), METER_EAUTH);
	cr_assert_eq(dlms_hls_gmac(f, 0x10, &c.k, c.st, 6, ctos, cl), 0);
	cr_assert_eq(dlms_hls_gmac_check(f, sizeof(f), &c.k, c.st, ctos, cl, NULL), 0);
	cr_assert_eq(dlms_hls_gmac(f, 0x20, &c.k, c.st, 6, ctos, cl), METER_EINVAL);
	tail_free(s.wire);
	tail_free(c.wire);
}
