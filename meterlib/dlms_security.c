/*
 * dlms_security.c: security suite 0 (AES-GCM-128) for xDLMS APDUs: glo-,
 * ded- and general-glo/ded-ciphering, HLS-GMAC challenge responses and
 * RFC 3394 key wrap, on top of OpenSSL's EVP interface.
 *
 * Every operation is one pass through gcm_run(), which owns the single EVP
 * context of the call.  Decryption writes straight into the caller's
 * buffer (no second copy of the plaintext anywhere) and wipes it again if
 * the tag does not verify; authentication-only APDUs are copied out only
 * after their tag has verified.
 */
#include <limits.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "dlms_security.h"
#include "meter_error.h"

/* ---- tag table ----------------------------------------------------------- */

/*
 * The xDLMS APDU table: the short-name / Initiate APDUs get glo = +0x20 and
 * ded = +0x40; the logical-name services get glo = +0x08 and ded = +0x10.
 * Initiate has no ded twin: the dedicated key is only agreed inside it.
 */
static bool
sn_glo_capable(uint8_t t)
{
	switch (t) {
	case 0x01: /* initiateRequest */
	case 0x05: /* readRequest */
	case 0x06: /* writeRequest */
	case 0x08: /* initiateResponse */
	case 0x0c: /* readResponse */
	case 0x0d: /* writeResponse */
	case 0x0e: /* confirmedServiceError */
	case 0x16: /* unconfirmedWriteRequest */
	case 0x18: /* informationReportRequest */
		return true;
	}
	return false;
}

static bool
ln_capable(uint8_t t)
{
	/* get/set/event-notification/action request, get/set/action response */
	return (t >= 0xc0 && t <= 0xc5) || t == 0xc7;
}

int
dlms_glo_tag(uint8_t plain_tag)
{
	if (sn_glo_capable(plain_tag))
		return plain_tag + 0x20;
	if (ln_capable(plain_tag))
		return plain_tag + 0x08;
	return METER_EUNSUPPORTED;
}

int
dlms_ded_tag(uint8_t plain_tag)
{
	if (sn_glo_capable(plain_tag) && plain_tag != 0x01 && plain_tag != 0x08)
		return plain_tag + 0x40;
	if (ln_capable(plain_tag))
		return plain_tag + 0x10;
	return METER_EUNSUPPORTED;
}

int
dlms_plain_tag(uint8_t t)
{
	if (t >= 0x20 && t < 0x40 && sn_glo_capable(t - 0x20))
		return t - 0x20;
	if (t >= 0x40 && t < 0x60 && dlms_ded_tag(t - 0x40) == t)
		return t - 0x40;
	if (t >= 0xc8 && t <= 0xcf && ln_capable(t - 0x08))
		return t - 0x08;
	if (t >= 0xd0 && t <= 0xd7 && ln_capable(t - 0x10))
		return t - 0x10;
	return METER_EUNSUPPORTED;
}

bool
dlms_is_ciphered_tag(uint8_t t)
{
	return dlms_plain_tag(t) >= 0 || t == DLMS_TAG_GENERAL_GLO_CIPHERING ||
	       t == DLMS_TAG_GENERAL_DED_CIPHERING || t == DLMS_TAG_GENERAL_CIPHERING;
}

/* ---- AES-GCM ------------------------------------------------------------- */

struct gcm_job {
	int encrypt;
	const uint8_t *key;
	const uint8_t *iv;
	bool aad; /* feed SC ‖ AK as AAD (A bit set) */
	uint8_t sc;
	const uint8_t *ak;
	const uint8_t *aad_tail; /* more AAD: plaintext (A only) or challenge */
	size_t aad_tail_len;
	const uint8_t *in; /* data to en/decrypt (E bit set) */
	uint8_t *out;
	size_t len;
	uint8_t *tag; /* 12 bytes, written (encrypt) or checked (decrypt); NULL: none */
};

/* Returns 0, METER_EAUTH (decrypt: tag mismatch) or METER_ECRYPTO. */
static int
gcm_run(const struct gcm_job *j)
{
	EVP_CIPHER_CTX *ctx;
	uint8_t fin[16]; /* GCM's Final emits nothing, but wants somewhere to */
	int n, rc = METER_ECRYPTO;

	if ((ctx = EVP_CIPHER_CTX_new()) == NULL)
		return METER_ECRYPTO;
	if (EVP_CipherInit_ex(ctx, EVP_aes_128_gcm(), NULL, NULL, NULL, j->encrypt) != 1 ||
	    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, DLMS_IV_LEN, NULL) != 1 ||
	    EVP_CipherInit_ex(ctx, NULL, NULL, j->key, j->iv, j->encrypt) != 1)
		goto fail;
	if (j->aad) {
		if (EVP_CipherUpdate(ctx, NULL, &n, &j->sc, 1) != 1 ||
		    EVP_CipherUpdate(ctx, NULL, &n, j->ak, DLMS_KEY_LEN) != 1)
			goto fail;
	}
	if (j->aad_tail_len &&
	    EVP_CipherUpdate(ctx, NULL, &n, j->aad_tail, (int)j->aad_tail_len) != 1)
		goto fail;
	if (j->len && EVP_CipherUpdate(ctx, j->out, &n, j->in, (int)j->len) != 1)
		goto fail;
	if (j->encrypt) {
		if (EVP_CipherFinal_ex(ctx, fin, &n) != 1)
			goto fail;
		if (j->tag) {
			uint8_t full[16];
			if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, sizeof(full), full) != 1)
				goto fail;
			memcpy(j->tag, full, DLMS_GCM_TAG_LEN);
		}
	} else if (j->tag) {
		/* OpenSSL checks a truncated tag over the length it was given. */
		if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, DLMS_GCM_TAG_LEN, j->tag) != 1)
			goto fail;
		if (EVP_CipherFinal_ex(ctx, fin, &n) != 1) {
			rc = METER_EAUTH;
			goto fail;
		}
	}
	/* Encryption only, decrypting: GCM without its tag is plain CTR; no Final. */
	rc = 0;
fail:
	EVP_CIPHER_CTX_free(ctx);
	return rc;
}

static void
make_iv(uint8_t iv[DLMS_IV_LEN], const uint8_t *st, uint32_t ic)
{
	memcpy(iv, st, DLMS_SYSTEM_TITLE_LEN);
	iv[8] = ic >> 24;
	iv[9] = ic >> 16;
	iv[10] = ic >> 8;
	iv[11] = ic;
}

/* A-XDR length: one byte below 0x80, else 0x8N and N big-endian bytes. */
static void
put_axdr_len(struct mbuf *b, size_t n)
{
	if (n < 0x80) {
		mbuf_u8(b, (uint8_t)n);
	} else if (n <= 0xff) {
		mbuf_u8(b, 0x81);
		mbuf_u8(b, (uint8_t)n);
	} else if (n <= 0xffff) {
		mbuf_u8(b, 0x82);
		mbuf_be16(b, (uint16_t)n);
	} else {
		mbuf_u8(b, 0x84);
		mbuf_be32(b, (uint32_t)n);
	}
}

static int
get_axdr_len(struct mrd *r, size_t *n)
{
	uint8_t b, k;
	size_t v = 0;

	if (mrd_u8(r, &b))
		return METER_ENEEDMORE;
	if (b < 0x80) {
		*n = b;
		return 0;
	}
	k = b & 0x7f;
	if (k == 0 || k > 4)
		return METER_EMALFORMED;
	while (k--) {
		if (mrd_u8(r, &b))
			return METER_ENEEDMORE;
		v = v << 8 | b;
	}
	*n = v;
	return 0;
}

/* Suites 0 and 1 protect APDUs with AES-GCM-128; anything else we cannot do. */
static int
check_sc(uint8_t sc)
{
	if (sc & DLMS_SC_COMPRESS)
		return METER_EUNSUPPORTED;
	if ((sc & DLMS_SC_SUITE_MASK) > 1)
		return METER_EUNSUPPORTED;
	return 0;
}

/* ---- protect ------------------------------------------------------------- */

int
dlms_protect(struct mbuf *out, enum dlms_cipher_kind kind, uint8_t sc, const struct dlms_keys *k,
             const uint8_t sys_title[DLMS_SYSTEM_TITLE_LEN], uint32_t ic, const uint8_t *apdu,
             size_t len)
{
	bool a = sc & DLMS_SC_AUTH, e = sc & DLMS_SC_ENC;
	struct gcm_job j = {.encrypt = 1};
	uint8_t iv[DLMS_IV_LEN], *body, *tag = NULL;
	size_t start = out->len;
	int tagv, rc;

	if (apdu == NULL || len == 0 || k == NULL || sys_title == NULL || (!a && !e))
		return METER_EINVAL;
	if ((rc = check_sc(sc)))
		return rc;
	if (len > 0xffffff)
		return METER_EINVAL;

	switch (kind) {
	case DLMS_CIPHER_GLO:
	case DLMS_CIPHER_DED:
		tagv = kind == DLMS_CIPHER_GLO ? dlms_glo_tag(apdu[0]) : dlms_ded_tag(apdu[0]);
		if (tagv < 0)
			return METER_EINVAL;
		mbuf_u8(out, (uint8_t)tagv);
		break;
	case DLMS_CIPHER_GENERAL_GLO:
	case DLMS_CIPHER_GENERAL_DED:
		mbuf_u8(out, kind == DLMS_CIPHER_GENERAL_GLO ? DLMS_TAG_GENERAL_GLO_CIPHERING
		                                             : DLMS_TAG_GENERAL_DED_CIPHERING);
		mbuf_u8(out, DLMS_SYSTEM_TITLE_LEN);
		mbuf_put(out, sys_title, DLMS_SYSTEM_TITLE_LEN);
		break;
	default:
		return METER_EINVAL;
	}
	put_axdr_len(out, 1 + 4 + len + (a ? DLMS_GCM_TAG_LEN : 0));
	mbuf_u8(out, sc);
	mbuf_be32(out, ic);
	body = mbuf_reserve(out, len);
	if (a)
		tag = mbuf_reserve(out, DLMS_GCM_TAG_LEN);
	if (out->err) {
		out->len = start;
		return METER_ENOSPC;
	}

	make_iv(iv, sys_title, ic);
	j.key = k->ek;
	j.iv = iv;
	j.aad = a;
	j.sc = sc;
	j.ak = k->ak;
	j.tag = tag;
	if (e) {
		j.in = apdu;
		j.out = body;
		j.len = len;
	} else {
		/* Authentication only: the APDU travels in clear and is part of the AAD. */
		memcpy(body, apdu, len);
		j.aad_tail = apdu;
		j.aad_tail_len = len;
	}
	if ((rc = gcm_run(&j))) {
		OPENSSL_cleanse(out->p + start, out->len - start);
		out->len = start;
	}
	return rc;
}

/* ---- unprotect ----------------------------------------------------------- */

ssize_t
dlms_ciphered_parse(const uint8_t *buf, size_t len, struct dlms_ciphered *c)
{
	struct mrd r;
	uint8_t tag, stlen;
	size_t n;
	const uint8_t *st = NULL, *content;
	int rc;

	memset(c, 0, sizeof(*c));
	mrd_init(&r, buf, len);
	if (mrd_u8(&r, &tag))
		return METER_ENEEDMORE;
	if (tag == DLMS_TAG_GENERAL_CIPHERING)
		return METER_EUNSUPPORTED;
	if (tag == DLMS_TAG_GENERAL_GLO_CIPHERING || tag == DLMS_TAG_GENERAL_DED_CIPHERING) {
		if (mrd_u8(&r, &stlen))
			return METER_ENEEDMORE;
		if (stlen != 0 && stlen != DLMS_SYSTEM_TITLE_LEN)
			return METER_EMALFORMED;
		if (stlen && mrd_take(&r, stlen, &st))
			return METER_ENEEDMORE;
	} else {
		rc = dlms_plain_tag(tag);
		if (rc < 0)
			return METER_EMALFORMED;
		c->plain_tag = (uint8_t)rc;
	}
	if ((rc = get_axdr_len(&r, &n)))
		return rc;
	if (n < 5)
		return METER_EMALFORMED;
	if (mrd_take(&r, n, &content))
		return METER_ENEEDMORE;
	c->tag = tag;
	c->system_title = st;
	c->sc = content[0];
	c->ic = be32(content + 1);
	c->body = content + 5;
	c->body_len = n - 5;
	return (ssize_t)r.off;
}

int
dlms_unprotect(struct mbuf *out, const struct dlms_ciphered *c, const struct dlms_keys *k,
               const uint8_t *peer_title, uint8_t require, struct dlms_rx_counter *rx)
{
	bool a = c->sc & DLMS_SC_AUTH, e = c->sc & DLMS_SC_ENC;
	struct gcm_job j = {.encrypt = 0};
	const uint8_t *st = peer_title;
	uint8_t iv[DLMS_IV_LEN], tag[DLMS_GCM_TAG_LEN], *dst;
	size_t start = out->len, dlen;
	int rc;

	if ((rc = check_sc(c->sc)))
		return rc;
	if (!a && !e)
		return METER_EAUTH;
	if ((c->sc & require) != (require & (DLMS_SC_AUTH | DLMS_SC_ENC)))
		return METER_EAUTH;
	if (c->system_title) {
		if (peer_title && CRYPTO_memcmp(peer_title, c->system_title, DLMS_SYSTEM_TITLE_LEN))
			return METER_EAUTH;
		st = c->system_title;
	}
	if (st == NULL || k == NULL)
		return METER_EINVAL;
	if (rx && rx->seen && c->ic <= rx->last)
		return METER_EREPLAY;
	if (a && c->body_len < DLMS_GCM_TAG_LEN)
		return METER_EMALFORMED;
	if (c->body_len > INT_MAX) /* EVP counts in int */
		return METER_EUNSUPPORTED;
	dlen = c->body_len - (a ? DLMS_GCM_TAG_LEN : 0);
	if ((dst = mbuf_reserve(out, dlen)) == NULL)
		return METER_ENOSPC;

	make_iv(iv, st, c->ic);
	j.key = k->ek;
	j.iv = iv;
	j.aad = a;
	j.sc = c->sc;
	j.ak = k->ak;
	if (a) {
		memcpy(tag, c->body + dlen, DLMS_GCM_TAG_LEN);
		j.tag = tag;
	}
	if (e) {
		j.in = c->body;
		j.out = dst;
		j.len = dlen;
	} else {
		j.aad_tail = c->body;
		j.aad_tail_len = dlen;
	}
	if ((rc = gcm_run(&j))) {
		OPENSSL_cleanse(dst, dlen);
		out->len = start;
		return rc;
	}
	if (!e)
		memcpy(dst, c->body, dlen);
	if (rx) {
		rx->last = c->ic;
		rx->seen = true;
	}
	return 0;
}

/* ---- HLS-GMAC ------------------------------------------------------------ */

int
dlms_hls_gmac(uint8_t out[DLMS_HLS_GMAC_LEN], uint8_t sc, const struct dlms_keys *k,
              const uint8_t sys_title[DLMS_SYSTEM_TITLE_LEN], uint32_t ic, const uint8_t *challenge,
              size_t clen)
{
	struct gcm_job j = {.encrypt = 1};
	uint8_t iv[DLMS_IV_LEN];

	if (k == NULL || sys_title == NULL || (challenge == NULL && clen) || clen > INT_MAX ||
	    !(sc & DLMS_SC_AUTH))
		return METER_EINVAL;
	make_iv(iv, sys_title, ic);
	out[0] = sc;
	out[1] = ic >> 24;
	out[2] = ic >> 16;
	out[3] = ic >> 8;
	out[4] = ic;
	j.key = k->ek;
	j.iv = iv;
	j.aad = true;
	j.sc = sc;
	j.ak = k->ak;
	j.aad_tail = challenge;
	j.aad_tail_len = clen;
	j.tag = out + 5;
	return gcm_run(&j);
}

int
dlms_hls_gmac_check(const uint8_t *resp, size_t rlen, const struct dlms_keys *k,
                    const uint8_t peer_title[DLMS_SYSTEM_TITLE_LEN], const uint8_t *challenge,
                    size_t clen, uint32_t *ic)
{
	uint8_t want[DLMS_HLS_GMAC_LEN];
	uint32_t v;
	int rc;

	if (resp == NULL || rlen != DLMS_HLS_GMAC_LEN || !(resp[0] & DLMS_SC_AUTH))
		return METER_EAUTH;
	v = be32(resp + 1);
	if ((rc = dlms_hls_gmac(want, resp[0], k, peer_title, v, challenge, clen)))
		return rc;
	if (CRYPTO_memcmp(want, resp, DLMS_HLS_GMAC_LEN))
		return METER_EAUTH;
	if (ic)
		*ic = v;
	return 0;
}

/* ---- AES key wrap (RFC 3394) --------------------------------------------- */

static ssize_t
key_wrap_run(int encrypt, uint8_t *out, size_t cap, const uint8_t *kek, const uint8_t *in,
             size_t len)
{
	EVP_CIPHER_CTX *ctx;
	size_t want;
	int n, m;
	ssize_t rc = METER_ECRYPTO;

	if (kek == NULL || in == NULL || len % 8 || len < (encrypt ? 16u : 24u) || len > 4096)
		return METER_EINVAL;
	want = encrypt ? len + 8 : len - 8;
	if (cap < want)
		return METER_ENOSPC;
	if ((ctx = EVP_CIPHER_CTX_new()) == NULL)
		return METER_ECRYPTO;
	/* The wrap modes are off by default in EVP: they are not streaming ciphers. */
	EVP_CIPHER_CTX_set_flags(ctx, EVP_CIPHER_CTX_FLAG_WRAP_ALLOW);
	if (EVP_CipherInit_ex(ctx, EVP_aes_128_wrap(), NULL, kek, NULL, encrypt) != 1)
		goto fail;
	if (EVP_CipherUpdate(ctx, out, &n, in, (int)len) != 1 || n < 0 || (size_t)n != want) {
		if (!encrypt) {
			OPENSSL_cleanse(out, want);
			rc = METER_EAUTH;
		}
		goto fail;
	}
	if (EVP_CipherFinal_ex(ctx, out + n, &m) != 1)
		goto fail;
	rc = (ssize_t)want;
fail:
	EVP_CIPHER_CTX_free(ctx);
	return rc;
}

ssize_t
dlms_key_wrap(uint8_t *out, size_t cap, const uint8_t kek[DLMS_KEY_LEN], const uint8_t *key,
              size_t keylen)
{
	return key_wrap_run(1, out, cap, kek, key, keylen);
}

ssize_t
dlms_key_unwrap(uint8_t *out, size_t cap, const uint8_t kek[DLMS_KEY_LEN], const uint8_t *wrapped,
                size_t len)
{
	return key_wrap_run(0, out, cap, kek, wrapped, len);
}
