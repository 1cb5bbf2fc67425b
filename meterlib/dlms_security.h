/*
 * dlms_security.h: DLMS/COSEM security suite 0 (AES-GCM-128) for xDLMS APDUs
 * (IEC 62056-5-3 §5.3 and Green Book ch. 9), with OpenSSL libcrypto.
 *
 * What it does: protects a plaintext xDLMS APDU into a glo-, ded-,
 * general-glo- or general-ded-ciphered APDU and back; computes and checks
 * the HLS-GMAC (mechanism 5) challenge responses f(StoC) and f(CtoS); and
 * wraps keys with AES key wrap (RFC 3394) for key transfer.
 *
 * The cryptography, in the Green Book's terms:
 *   SC   security control byte: suite id (bits 0-3), A 0x10, E 0x20,
 *        key set 0x40 (broadcast), compression 0x80
 *   IV   system title of the sender (8) ‖ invocation counter (4, big endian)
 *   AAD  SC ‖ AK, and for authentication only SC ‖ AK ‖ plaintext
 *   tag  the GCM tag truncated to 12 bytes
 * Suites 0 and 1 share AES-GCM-128 for APDU protection, so both are accepted
 * when unprotecting; suite 2 (AES-256) is refused with METER_EUNSUPPORTED,
 * as is compression.
 *
 * Invocation counters are the caller's: dlms_protect() uses the counter it
 * is given, and the caller must persist the next value *before* the APDU
 * leaves (a counter must never be used twice with the same key, or GCM's
 * confidentiality and integrity are lost).  dlms_unprotect() takes the last
 * counter the caller accepted from that peer and refuses one that does not
 * increase (METER_EREPLAY); on success it advances it, and the caller
 * persists it with the rest of the session.
 *
 * No allocation beyond the one EVP cipher context each call needs (created
 * and freed inside the call).  Outputs go into the caller's struct mbuf.
 * A failed tag check returns METER_EAUTH and leaves nothing of the
 * plaintext in the output buffer.
 */
#ifndef METER_DLMS_SECURITY_H
#define METER_DLMS_SECURITY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "bytes.h"

#define DLMS_SYSTEM_TITLE_LEN 8
#define DLMS_KEY_LEN          16
#define DLMS_GCM_TAG_LEN      12
#define DLMS_IV_LEN           12
/* SC ‖ IC ‖ 12-byte GMAC: the authentication value of HLS mechanism 5. */
#define DLMS_HLS_GMAC_LEN 17

/* Security control byte. */
#define DLMS_SC_SUITE_MASK 0x0f
#define DLMS_SC_AUTH       0x10 /* A: authenticated */
#define DLMS_SC_ENC        0x20 /* E: encrypted */
#define DLMS_SC_KEY_SET    0x40 /* 1 = broadcast key, 0 = unicast */
#define DLMS_SC_COMPRESS   0x80

/* Ciphered APDU tags that are not a glo/ded twin of a plaintext tag. */
#define DLMS_TAG_GENERAL_GLO_CIPHERING 0xdb
#define DLMS_TAG_GENERAL_DED_CIPHERING 0xdc
#define DLMS_TAG_GENERAL_CIPHERING     0xdd

/* How a plaintext APDU is to be protected. */
enum dlms_cipher_kind {
	DLMS_CIPHER_GLO,         /* glo-xxx tag, global (unicast/broadcast) key */
	DLMS_CIPHER_DED,         /* ded-xxx tag, dedicated key */
	DLMS_CIPHER_GENERAL_GLO, /* 0xdb, carries the system title */
	DLMS_CIPHER_GENERAL_DED  /* 0xdc, carries the system title */
};

/*
 * The two keys of one protection.  For ded-ciphering `ek` is the dedicated
 * key; `ak` is always the authentication key.
 */
struct dlms_keys {
	uint8_t ek[DLMS_KEY_LEN];
	uint8_t ak[DLMS_KEY_LEN];
};

/* Last invocation counter accepted from one peer (under one key). */
struct dlms_rx_counter {
	uint32_t last;
	bool seen; /* false: nothing accepted yet, any counter is taken */
};

/*
 * A ciphered APDU as framed on the wire (no cryptography done yet).
 * Pointers are into the buffer given to dlms_ciphered_parse().
 */
struct dlms_ciphered {
	uint8_t tag;                 /* glo/ded tag, 0xdb or 0xdc */
	uint8_t plain_tag;           /* plaintext twin of a glo/ded tag; 0 for general-* */
	const uint8_t *system_title; /* general-*: the sender's, else NULL */
	uint8_t sc;
	uint32_t ic;
	const uint8_t *body; /* ciphertext (or plaintext) then tag when A is set */
	size_t body_len;
};

/*
 * Tag mapping of the xDLMS APDU table: plaintext tag → glo / ded tag
 * (e.g. get-request 0xc0 → glo 0xc8 / ded 0xd0; initiateRequest 0x01 →
 * glo 0x21; readRequest 0x05 → glo 0x25 / ded 0x45).  Returns the tag, or
 * METER_EUNSUPPORTED when the APDU has no such twin (data-notification,
 * exception-response, ...: those travel in general-glo-ciphering).
 */
int dlms_glo_tag(uint8_t plain_tag);
int dlms_ded_tag(uint8_t plain_tag);
/* Ciphered glo/ded tag → plaintext tag, or METER_EUNSUPPORTED. */
int dlms_plain_tag(uint8_t ciphered_tag);
/* True for tags of glo/ded ciphering and 0xdb/0xdc. */
bool dlms_is_ciphered_tag(uint8_t tag);

/*
 * Protect the plaintext xDLMS APDU apdu[0..len) and append the ciphered
 * APDU to out.  `sc` selects authentication only (0x10), encryption only
 * (0x20, kept for old meters: it has no integrity) or both (0x30), suite
 * bits 0 or 1; `sys_title` is our own system title, `ic` the invocation
 * counter to use (see the top of this file for who persists it).
 * For glo/ded kinds the APDU's first byte must have a twin tag.
 * Returns 0; METER_EINVAL (bad sc, empty APDU, no twin tag),
 * METER_EUNSUPPORTED (suite 2, compression), METER_ENOSPC (out too small,
 * out->err is set too), METER_ECRYPTO.
 */
int dlms_protect(struct mbuf *out, enum dlms_cipher_kind kind, uint8_t sc,
                 const struct dlms_keys *k, const uint8_t sys_title[DLMS_SYSTEM_TITLE_LEN],
                 uint32_t ic, const uint8_t *apdu, size_t len);

/*
 * Parse the framing of a ciphered APDU at buf: tag, (system title), length,
 * SC, IC.  Returns the bytes consumed (the whole ciphered APDU), or
 * METER_ENEEDMORE (truncated), METER_EMALFORMED (not a ciphered tag,
 * length shorter than SC ‖ IC, system-title length other than 0 or 8),
 * METER_EUNSUPPORTED (general-ciphering 0xdd: needs key agreement).
 * A general-* APDU with an empty system title gets system_title NULL.
 */
ssize_t dlms_ciphered_parse(const uint8_t *buf, size_t len, struct dlms_ciphered *c);

/*
 * Check and decrypt a parsed ciphered APDU; the plaintext xDLMS APDU is
 * appended to out.
 *   peer_title  the sender's system title.  Required for glo/ded and for
 *               general-* without a title; for general-* with a title it
 *               may be NULL (the APDU's own title is used, e.g. for pushes
 *               whose keys were found by that title) and when given must
 *               equal the APDU's (else METER_EAUTH).
 *   require     SC bits the APDU must carry (DLMS_SC_AUTH, DLMS_SC_ENC);
 *               an APDU with fewer protections is refused with METER_EAUTH.
 *               An APDU with neither A nor E is always refused.
 *   rx          last accepted counter; c->ic must be greater (else
 *               METER_EREPLAY); advanced only on success.  May be NULL when
 *               the caller tracks counters itself.
 * Returns 0; METER_EAUTH (tag mismatch, title mismatch, policy), METER_EREPLAY,
 * METER_EMALFORMED (body shorter than the tag), METER_EUNSUPPORTED (suite 2,
 * compression), METER_EINVAL (no system title at all), METER_ENOSPC,
 * METER_ECRYPTO.
 */
int dlms_unprotect(struct mbuf *out, const struct dlms_ciphered *c, const struct dlms_keys *k,
                   const uint8_t *peer_title, uint8_t require, struct dlms_rx_counter *rx);

/*
 * HLS-GMAC (mechanism 5), pass 3 and 4:
 *   f(challenge) = SC ‖ IC ‖ GMAC(SC ‖ AK ‖ challenge) under EK with
 *   IV = system title ‖ IC.
 * The client answers StoC with its own system title and counter; the
 * server answers CtoS with its own.  SC is normally 0x10.
 * dlms_hls_gmac() writes DLMS_HLS_GMAC_LEN bytes to out and returns 0, or
 * METER_EINVAL / METER_ECRYPTO.
 */
int dlms_hls_gmac(uint8_t out[DLMS_HLS_GMAC_LEN], uint8_t sc, const struct dlms_keys *k,
                  const uint8_t sys_title[DLMS_SYSTEM_TITLE_LEN], uint32_t ic,
                  const uint8_t *challenge, size_t clen);

/*
 * Check the peer's f(challenge) (resp, rlen bytes) for the challenge we
 * sent, with the peer's system title.  The comparison is constant-time.
 * On success *ic (may be NULL) gets the counter the peer used, so the
 * caller can apply its counter policy.  Returns 0; METER_EAUTH (wrong
 * GMAC, wrong length, SC without A); METER_ECRYPTO.
 */
int dlms_hls_gmac_check(const uint8_t *resp, size_t rlen, const struct dlms_keys *k,
                        const uint8_t peer_title[DLMS_SYSTEM_TITLE_LEN], const uint8_t *challenge,
                        size_t clen, uint32_t *ic);

/*
 * AES key wrap (RFC 3394) with a 128-bit KEK, as used to transfer keys
 * (security setup key_transfer).  keylen is a multiple of 8, at least 16;
 * the output is keylen + 8 bytes.  Both return the bytes written to out, or
 * METER_EINVAL (lengths), METER_ENOSPC (cap too small), METER_EAUTH
 * (unwrap: integrity check failed; out is wiped), METER_ECRYPTO.
 */
ssize_t dlms_key_wrap(uint8_t *out, size_t cap, const uint8_t kek[DLMS_KEY_LEN], const uint8_t *key,
                      size_t keylen);
ssize_t dlms_key_unwrap(uint8_t *out, size_t cap, const uint8_t kek[DLMS_KEY_LEN],
                        const uint8_t *wrapped, size_t len);

#endif
