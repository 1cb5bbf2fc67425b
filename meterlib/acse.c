/*
 * acse.c: BER encoding and decoding of the DLMS association APDUs (AARQ,
 * AARE, RLRQ, RLRE) and the A-XDR xDLMS Initiate APDUs they carry.
 *
 * Decoding walks each APDU's contents as a list of TLVs, picks out the
 * fields DLMS uses and steps over the rest, so a meter that adds an
 * implementation-information or AE qualifier does not break us.  Every
 * length is checked against the container it sits in before a byte of it
 * is read.  Encoding computes each element's size first and writes
 * definite lengths in one pass into the caller's mbuf.
 */
#include <string.h>

#include "acse.h"
#include "meter_error.h"

/* 2.16.756.5.8 (joint-iso-itu-t country ch, DLMS UA) as BER: 60 85 74 05 08. */
static const uint8_t dlms_ua_oid[] = {0x60, 0x85, 0x74, 0x05, 0x08};
#define OID_ARC_CONTEXT   1
#define OID_ARC_MECHANISM 2
#define DLMS_OID_LEN      7

/* AARQ field tags (context-specific, constructed when EXPLICIT). */
#define AARQ_CONTEXT       0xa1
#define AARQ_CALLING_TITLE 0xa6
#define AARQ_ACSE_REQ      0x8a
#define AARQ_MECHANISM     0x8b
#define AARQ_AUTH_VALUE    0xac
/* AARE field tags. */
#define AARE_CONTEXT          0xa1
#define AARE_RESULT           0xa2
#define AARE_DIAGNOSTIC       0xa3
#define AARE_RESPONDING_TITLE 0xa4
#define AARE_ACSE_REQ         0x88
#define AARE_MECHANISM        0x89
#define AARE_AUTH_VALUE       0xaa
/* Shared. */
#define ACSE_USER_INFO     0xbe
#define RELEASE_REASON     0x80
#define BER_INTEGER        0x02
#define BER_OCTET_STRING   0x04
#define BER_OID            0x06
#define AUTH_CHARSTRING    0x80
#define AUTH_BITSTRING     0x81
#define CONFORMANCE_TAG_HI 0x5f
#define CONFORMANCE_TAG_LO 0x1f

/* ---- BER primitives ------------------------------------------------------ */

/*
 * Read one TLV header: the tag (first byte kept; high tag numbers are
 * stepped over so unknown fields can be skipped) and a definite length.
 * Returns 0, METER_ENEEDMORE (header cut short), METER_EUNSUPPORTED
 * (indefinite length) or METER_EMALFORMED.
 */
static int
ber_header(struct mrd *r, uint8_t *tag, size_t *len)
{
	uint8_t t, b;
	size_t n = 0;
	int k;

	if (mrd_u8(r, &t))
		return METER_ENEEDMORE;
	if ((t & 0x1f) == 0x1f) {
		k = 0;
		do {
			if (mrd_u8(r, &b))
				return METER_ENEEDMORE;
			if (++k > 4)
				return METER_EMALFORMED;
		} while (b & 0x80);
	}
	if (mrd_u8(r, &b))
		return METER_ENEEDMORE;
	if (b == 0x80)
		return METER_EUNSUPPORTED;
	if (b & 0x80) {
		k = b & 0x7f;
		if (k > 3)
			return METER_EMALFORMED;
		while (k--) {
			if (mrd_u8(r, &b))
				return METER_ENEEDMORE;
			n = n << 8 | b;
		}
	} else {
		n = b;
	}
	*tag = t;
	*len = n;
	return 0;
}

/* One TLV inside a container: running short is a length error, not "need more". */
static int
ber_next(struct mrd *r, uint8_t *tag, const uint8_t **val, size_t *vlen)
{
	int rc = ber_header(r, tag, vlen);

	if (rc == METER_ENEEDMORE)
		return METER_ELENGTH;
	if (rc)
		return rc;
	if (mrd_take(r, *vlen, val))
		return METER_ELENGTH;
	return 0;
}

/* The single TLV that fills a container exactly, with the tag we expect. */
static int
ber_only(const uint8_t *p, size_t n, uint8_t want, const uint8_t **val, size_t *vlen)
{
	struct mrd r;
	uint8_t tag;
	int rc;

	mrd_init(&r, p, n);
	if ((rc = ber_next(&r, &tag, val, vlen)))
		return rc;
	if (tag != want || mrd_left(&r))
		return METER_EMALFORMED;
	return 0;
}

/* A one-byte non-negative INTEGER (all DLMS ACSE integers are small). */
static int
ber_small_int(const uint8_t *p, size_t n, uint8_t *v)
{
	if (n != 1 || p[0] & 0x80)
		return METER_EMALFORMED;
	*v = p[0];
	return 0;
}

/* Last arc of a DLMS UA OID 2.16.756.5.8.<kind>.<arc>. */
static int
dlms_oid_arc(const uint8_t *p, size_t n, uint8_t kind, uint8_t *arc)
{
	if (n != DLMS_OID_LEN || memcmp(p, dlms_ua_oid, sizeof(dlms_ua_oid)) != 0 || p[5] != kind ||
	    p[6] & 0x80)
		return METER_EMALFORMED;
	*arc = p[6];
	return 0;
}

/* The ACSE-requirements BIT STRING: unused-bits byte, then the bits; bit 0 = authentication. */
static int
acse_req_decode(const uint8_t *p, size_t n, bool *auth)
{
	if (n < 1 || p[0] > 7 || (n == 1 && p[0] != 0))
		return METER_EMALFORMED;
	*auth = n >= 2 && (p[1] & 0x80);
	return 0;
}

static size_t
ber_len_size(size_t n)
{
	return n < 0x80 ? 1 : n <= 0xff ? 2 : n <= 0xffff ? 3 : 4;
}

static size_t
tlv_size(size_t n)
{
	return 1 + ber_len_size(n) + n;
}

static void
put_tlv_header(struct mbuf *b, uint8_t tag, size_t n)
{
	mbuf_u8(b, tag);
	if (n < 0x80) {
		mbuf_u8(b, (uint8_t)n);
	} else if (n <= 0xff) {
		mbuf_u8(b, 0x81);
		mbuf_u8(b, (uint8_t)n);
	} else if (n <= 0xffff) {
		mbuf_u8(b, 0x82);
		mbuf_be16(b, (uint16_t)n);
	} else {
		mbuf_u8(b, 0x83);
		mbuf_u8(b, (uint8_t)(n >> 16));
		mbuf_be16(b, (uint16_t)n);
	}
}

/* [tag] EXPLICIT <inner> containing n bytes. */
static void
put_wrapped(struct mbuf *b, uint8_t tag, uint8_t inner, const uint8_t *p, size_t n)
{
	put_tlv_header(b, tag, tlv_size(n));
	put_tlv_header(b, inner, n);
	mbuf_put(b, p, n);
}

static void
put_dlms_oid(struct mbuf *b, uint8_t kind, uint8_t arc)
{
	mbuf_put(b, dlms_ua_oid, sizeof(dlms_ua_oid));
	mbuf_u8(b, kind);
	mbuf_u8(b, arc);
}

static int
finish(struct mbuf *out, size_t start)
{
	if (out->err) {
		out->len = start;
		return METER_ENOSPC;
	}
	return 0;
}

/* ---- xDLMS Initiate ------------------------------------------------------ */

static int
conformance_decode(struct mrd *r, uint32_t *conf)
{
	const uint8_t *p;

	/* [APPLICATION 31] IMPLICIT BIT STRING (SIZE(24)): 5f 1f 04 00 b0 b1 b2 */
	if (mrd_take(r, 7, &p))
		return METER_ENEEDMORE;
	if (p[0] != CONFORMANCE_TAG_HI || p[1] != CONFORMANCE_TAG_LO || p[2] != 4 || p[3] != 0)
		return METER_EMALFORMED;
	*conf = (uint32_t)p[4] << 16 | (uint32_t)p[5] << 8 | p[6];
	return 0;
}

static void
conformance_encode(struct mbuf *b, uint32_t conf)
{
	mbuf_u8(b, CONFORMANCE_TAG_HI);
	mbuf_u8(b, CONFORMANCE_TAG_LO);
	mbuf_u8(b, 4);
	mbuf_u8(b, 0);
	mbuf_u8(b, (uint8_t)(conf >> 16));
	mbuf_be16(b, (uint16_t)conf);
}

/* A-XDR OPTIONAL Integer8/Unsigned8: 00, or 01 then the value; -1 when absent. */
static int
optional_u8(struct mrd *r, int16_t *v)
{
	uint8_t flag, x;

	if (mrd_u8(r, &flag))
		return METER_ENEEDMORE;
	if (flag == 0) {
		*v = -1;
		return 0;
	}
	if (flag != 1)
		return METER_EMALFORMED;
	if (mrd_u8(r, &x))
		return METER_ENEEDMORE;
	*v = x;
	return 0;
}

int
acse_initiate_req_decode(const uint8_t *buf, size_t len, struct acse_initiate_req *q)
{
	struct mrd r;
	uint8_t tag, flag, klen, b;
	int rc;

	memset(q, 0, sizeof(*q));
	mrd_init(&r, buf, len);
	if (mrd_u8(&r, &tag))
		return METER_ENEEDMORE;
	if (tag != ACSE_APDU_INITIATE_REQUEST)
		return METER_EMALFORMED;
	/* dedicated-key OCTET STRING OPTIONAL */
	if (mrd_u8(&r, &flag))
		return METER_ENEEDMORE;
	if (flag == 1) {
		if (mrd_u8(&r, &klen))
			return METER_ENEEDMORE;
		if (klen == 0 || klen >= 0x80)
			return METER_EMALFORMED;
		if (mrd_take(&r, klen, &q->dedicated_key))
			return METER_ENEEDMORE;
		q->dedicated_key_len = klen;
	} else if (flag != 0) {
		return METER_EMALFORMED;
	}
	/* response-allowed BOOLEAN DEFAULT TRUE */
	if (mrd_u8(&r, &flag))
		return METER_ENEEDMORE;
	q->response_allowed = true;
	if (flag == 1) {
		if (mrd_u8(&r, &b))
			return METER_ENEEDMORE;
		q->response_allowed = b != 0;
	} else if (flag != 0) {
		return METER_EMALFORMED;
	}
	if ((rc = optional_u8(&r, &q->proposed_qos)))
		return rc;
	if (mrd_u8(&r, &q->dlms_version))
		return METER_ENEEDMORE;
	if ((rc = conformance_decode(&r, &q->conformance)))
		return rc;
	if (mrd_be16(&r, &q->max_pdu))
		return METER_ENEEDMORE;
	return mrd_left(&r) ? METER_EMALFORMED : 0;
}

int
acse_initiate_req_encode(struct mbuf *out, const struct acse_initiate_req *q)
{
	size_t start = out->len;

	if ((q->dedicated_key == NULL) != (q->dedicated_key_len == 0) ||
	    q->dedicated_key_len >= 0x80 || q->proposed_qos > 255 || q->conformance > 0xffffff)
		return METER_EINVAL;
	mbuf_u8(out, ACSE_APDU_INITIATE_REQUEST);
	if (q->dedicated_key) {
		mbuf_u8(out, 1);
		mbuf_u8(out, (uint8_t)q->dedicated_key_len);
		mbuf_put(out, q->dedicated_key, q->dedicated_key_len);
	} else {
		mbuf_u8(out, 0);
	}
	/* The default (true) is sent as "absent", the way every client does. */
	if (q->response_allowed) {
		mbuf_u8(out, 0);
	} else {
		mbuf_u8(out, 1);
		mbuf_u8(out, 0);
	}
	if (q->proposed_qos >= 0) {
		mbuf_u8(out, 1);
		mbuf_u8(out, (uint8_t)q->proposed_qos);
	} else {
		mbuf_u8(out, 0);
	}
	mbuf_u8(out, q->dlms_version);
	conformance_encode(out, q->conformance);
	mbuf_be16(out, q->max_pdu);
	return finish(out, start);
}

int
acse_initiate_resp_decode(const uint8_t *buf, size_t len, struct acse_initiate_resp *p)
{
	struct mrd r;
	uint8_t tag, hi;
	int rc;

	memset(p, 0, sizeof(*p));
	mrd_init(&r, buf, len);
	if (mrd_u8(&r, &tag))
		return METER_ENEEDMORE;
	if (tag != ACSE_APDU_INITIATE_RESPONSE)
		return METER_EMALFORMED;
	if ((rc = optional_u8(&r, &p->negotiated_qos)))
		return rc;
	if (mrd_u8(&r, &p->dlms_version))
		return METER_ENEEDMORE;
	if ((rc = conformance_decode(&r, &p->conformance)))
		return rc;
	if (mrd_be16(&r, &p->max_pdu))
		return METER_ENEEDMORE;
	if (mrd_left(&r) == 1) {
		/* The one meter fault we tolerate: see acse.h. */
		if (mrd_u8(&r, &hi))
			return METER_ENEEDMORE;
		p->vaa_name = (uint16_t)(hi << 8);
		p->vaa_name_truncated = true;
		return 0;
	}
	if (mrd_be16(&r, &p->vaa_name))
		return METER_ENEEDMORE;
	return mrd_left(&r) ? METER_EMALFORMED : 0;
}

int
acse_initiate_resp_encode(struct mbuf *out, const struct acse_initiate_resp *p)
{
	size_t start = out->len;

	if (p->negotiated_qos > 255 || p->conformance > 0xffffff)
		return METER_EINVAL;
	mbuf_u8(out, ACSE_APDU_INITIATE_RESPONSE);
	if (p->negotiated_qos >= 0) {
		mbuf_u8(out, 1);
		mbuf_u8(out, (uint8_t)p->negotiated_qos);
	} else {
		mbuf_u8(out, 0);
	}
	mbuf_u8(out, p->dlms_version);
	conformance_encode(out, p->conformance);
	mbuf_be16(out, p->max_pdu);
	mbuf_be16(out, p->vaa_name);
	return finish(out, start);
}

int
acse_service_error_decode(const uint8_t *buf, size_t len, struct acse_service_error *e)
{
	memset(e, 0, sizeof(*e));
	if (len < 4)
		return len && buf[0] != ACSE_APDU_SERVICE_ERROR ? METER_EMALFORMED
		                                                : METER_ENEEDMORE;
	if (buf[0] != ACSE_APDU_SERVICE_ERROR || len != 4)
		return METER_EMALFORMED;
	e->choice = buf[1];
	e->service_error = buf[2];
	e->value = buf[3];
	return 0;
}

int
acse_service_error_encode(struct mbuf *out, const struct acse_service_error *e)
{
	size_t start = out->len;

	mbuf_u8(out, ACSE_APDU_SERVICE_ERROR);
	mbuf_u8(out, e->choice);
	mbuf_u8(out, e->service_error);
	mbuf_u8(out, e->value);
	return finish(out, start);
}

int
acse_user_info_decode(const uint8_t *ui, size_t len, struct acse_user_info *u)
{
	memset(u, 0, sizeof(*u));
	u->ui = ui;
	u->ui_len = len;
	u->kind = ACSE_UI_OTHER;
	if (len == 0)
		return 0;
	switch (ui[0]) {
	case ACSE_APDU_INITIATE_REQUEST:
		u->kind = ACSE_UI_INITIATE_REQ;
		return acse_initiate_req_decode(ui, len, &u->u.req);
	case ACSE_APDU_INITIATE_RESPONSE:
		u->kind = ACSE_UI_INITIATE_RESP;
		return acse_initiate_resp_decode(ui, len, &u->u.resp);
	case ACSE_APDU_SERVICE_ERROR:
		u->kind = ACSE_UI_SERVICE_ERROR;
		return acse_service_error_decode(ui, len, &u->u.err);
	case ACSE_APDU_GLO_INITIATE_REQUEST:
	case ACSE_APDU_GLO_INITIATE_RESPONSE:
	case 0x2e: /* glo-confirmedServiceError */
	case 0xdb: /* general-glo-ciphering */
	case 0xdc: /* general-ded-ciphering */
		u->kind = ACSE_UI_CIPHERED;
		return 0;
	}
	return 0;
}

/* user-information [30] EXPLICIT OCTET STRING */
static int
user_info_field(const uint8_t *p, size_t n, struct acse_user_info *u)
{
	const uint8_t *ui;
	size_t len;
	int rc;

	if ((rc = ber_only(p, n, BER_OCTET_STRING, &ui, &len)))
		return rc;
	return acse_user_info_decode(ui, len, u);
}

static size_t
user_info_size(const struct acse_user_info *u)
{
	return u->ui ? tlv_size(tlv_size(u->ui_len)) : 0;
}

static void
user_info_put(struct mbuf *b, const struct acse_user_info *u)
{
	if (u->ui)
		put_wrapped(b, ACSE_USER_INFO, BER_OCTET_STRING, u->ui, u->ui_len);
}

/* ---- AARQ / AARE ----------------------------------------------------------- */

/*
 * Step into the outer APDU: check its tag, make sure all of it is there,
 * and set *in to its contents.  Returns the APDU's total size or an error.
 */
static ssize_t
apdu_open(const uint8_t *buf, size_t len, uint8_t want, struct mrd *in)
{
	struct mrd r;
	uint8_t tag;
	size_t n;
	const uint8_t *p;
	int rc;

	mrd_init(&r, buf, len);
	if (len && buf[0] != want)
		return METER_EMALFORMED;
	if ((rc = ber_header(&r, &tag, &n)))
		return rc;
	if (mrd_take(&r, n, &p))
		return METER_ENEEDMORE;
	mrd_init(in, p, n);
	return (ssize_t)r.off;
}

static int
context_field(const uint8_t *p, size_t n, enum acse_context *ctx)
{
	const uint8_t *oid;
	size_t olen;
	uint8_t arc;
	int rc;

	if ((rc = ber_only(p, n, BER_OID, &oid, &olen)))
		return rc;
	if ((rc = dlms_oid_arc(oid, olen, OID_ARC_CONTEXT, &arc)))
		return rc;
	*ctx = (enum acse_context)arc;
	return 0;
}

static int
auth_value_field(const uint8_t *p, size_t n, const uint8_t **val, size_t *vlen)
{
	struct mrd r;
	uint8_t tag;
	int rc;

	mrd_init(&r, p, n);
	if ((rc = ber_next(&r, &tag, val, vlen)))
		return rc;
	if (mrd_left(&r))
		return METER_EMALFORMED;
	if (tag == AUTH_BITSTRING)
		return METER_EUNSUPPORTED;
	return tag == AUTH_CHARSTRING ? 0 : METER_EMALFORMED;
}

ssize_t
acse_aarq_decode(const uint8_t *buf, size_t len, struct acse_aarq *a)
{
	struct mrd in;
	const uint8_t *v, *t;
	size_t vlen, tlen;
	uint8_t tag, arc;
	bool have_ctx = false;
	ssize_t total;
	int rc;

	memset(a, 0, sizeof(*a));
	if ((total = apdu_open(buf, len, ACSE_TAG_AARQ, &in)) < 0)
		return total;
	while (mrd_left(&in)) {
		if ((rc = ber_next(&in, &tag, &v, &vlen)))
			return rc;
		switch (tag) {
		case AARQ_CONTEXT:
			if ((rc = context_field(v, vlen, &a->context)))
				return rc;
			have_ctx = true;
			break;
		case AARQ_CALLING_TITLE:
			if ((rc = ber_only(v, vlen, BER_OCTET_STRING, &t, &tlen)))
				return rc;
			a->calling_ap_title = t;
			a->calling_ap_title_len = tlen;
			break;
		case AARQ_ACSE_REQ:
			if ((rc = acse_req_decode(v, vlen, &a->authentication)))
				return rc;
			a->acse_requirements = true;
			break;
		case AARQ_MECHANISM:
			if ((rc = dlms_oid_arc(v, vlen, OID_ARC_MECHANISM, &arc)))
				return rc;
			a->mechanism = (enum acse_mech)arc;
			a->mechanism_present = true;
			break;
		case AARQ_AUTH_VALUE:
			if ((rc = auth_value_field(v, vlen, &a->auth_value, &a->auth_value_len)))
				return rc;
			break;
		case ACSE_USER_INFO:
			if ((rc = user_info_field(v, vlen, &a->user)))
				return rc;
			break;
		default:
			/* protocol-version, called-*, calling AE fields, implementation-information
			 */
			break;
		}
	}
	return have_ctx ? total : METER_EMALFORMED;
}

static int
check_common(enum acse_context ctx, enum acse_mech mech, const uint8_t *title, size_t tlen,
             size_t alen)
{
	if ((unsigned)ctx > 127 || (unsigned)mech > 127)
		return METER_EINVAL;
	if (title && (tlen == 0 || tlen > 127))
		return METER_EINVAL;
	if (alen > 0xffff)
		return METER_EINVAL;
	return 0;
}

int
acse_aarq_encode(struct mbuf *out, const struct acse_aarq *a)
{
	size_t start = out->len, n;
	bool req = a->acse_requirements || a->authentication;
	bool mech = a->mechanism_present || a->mechanism != ACSE_MECH_NONE;
	int rc;

	if ((rc = check_common(a->context, a->mechanism, a->calling_ap_title,
	                       a->calling_ap_title_len, a->auth_value_len)))
		return rc;
	n = tlv_size(tlv_size(DLMS_OID_LEN));
	if (a->calling_ap_title)
		n += tlv_size(tlv_size(a->calling_ap_title_len));
	if (req)
		n += tlv_size(2);
	if (mech)
		n += tlv_size(DLMS_OID_LEN);
	if (a->auth_value)
		n += tlv_size(tlv_size(a->auth_value_len));
	n += user_info_size(&a->user);

	put_tlv_header(out, ACSE_TAG_AARQ, n);
	put_tlv_header(out, AARQ_CONTEXT, tlv_size(DLMS_OID_LEN));
	put_tlv_header(out, BER_OID, DLMS_OID_LEN);
	put_dlms_oid(out, OID_ARC_CONTEXT, (uint8_t)a->context);
	if (a->calling_ap_title)
		put_wrapped(out, AARQ_CALLING_TITLE, BER_OCTET_STRING, a->calling_ap_title,
		            a->calling_ap_title_len);
	if (req) {
		put_tlv_header(out, AARQ_ACSE_REQ, 2);
		mbuf_u8(out, 7); /* unused bits: only bit 0 (authentication) is defined */
		mbuf_u8(out, a->authentication ? 0x80 : 0x00);
	}
	if (mech) {
		put_tlv_header(out, AARQ_MECHANISM, DLMS_OID_LEN);
		put_dlms_oid(out, OID_ARC_MECHANISM, (uint8_t)a->mechanism);
	}
	if (a->auth_value)
		put_wrapped(out, AARQ_AUTH_VALUE, AUTH_CHARSTRING, a->auth_value,
		            a->auth_value_len);
	user_info_put(out, &a->user);
	return finish(out, start);
}

/* result-source-diagnostic: [1] acse-service-user or [2] acse-service-provider, each an INTEGER. */
static int
diag_field(const uint8_t *p, size_t n, struct acse_aare *a)
{
	struct mrd r;
	const uint8_t *v, *i;
	size_t vlen, ilen;
	uint8_t tag;
	int rc;

	mrd_init(&r, p, n);
	if ((rc = ber_next(&r, &tag, &v, &vlen)))
		return rc;
	if (mrd_left(&r) || (tag != 0xa1 && tag != 0xa2))
		return METER_EMALFORMED;
	a->diag_source = tag == 0xa1 ? ACSE_DIAG_SERVICE_USER : ACSE_DIAG_SERVICE_PROVIDER;
	if ((rc = ber_only(v, vlen, BER_INTEGER, &i, &ilen)))
		return rc;
	return ber_small_int(i, ilen, &a->diag);
}

ssize_t
acse_aare_decode(const uint8_t *buf, size_t len, struct acse_aare *a)
{
	struct mrd in;
	const uint8_t *v, *t;
	size_t vlen, tlen;
	uint8_t tag, arc, res;
	bool have_ctx = false, have_result = false, have_diag = false;
	ssize_t total;
	int rc;

	memset(a, 0, sizeof(*a));
	if ((total = apdu_open(buf, len, ACSE_TAG_AARE, &in)) < 0)
		return total;
	while (mrd_left(&in)) {
		if ((rc = ber_next(&in, &tag, &v, &vlen)))
			return rc;
		switch (tag) {
		case AARE_CONTEXT:
			if ((rc = context_field(v, vlen, &a->context)))
				return rc;
			have_ctx = true;
			break;
		case AARE_RESULT:
			if ((rc = ber_only(v, vlen, BER_INTEGER, &t, &tlen)) ||
			    (rc = ber_small_int(t, tlen, &res)))
				return rc;
			if (res > ACSE_REJECTED_TRANSIENT)
				return METER_EMALFORMED;
			a->result = (enum acse_result)res;
			have_result = true;
			break;
		case AARE_DIAGNOSTIC:
			if ((rc = diag_field(v, vlen, a)))
				return rc;
			have_diag = true;
			break;
		case AARE_RESPONDING_TITLE:
			if ((rc = ber_only(v, vlen, BER_OCTET_STRING, &t, &tlen)))
				return rc;
			a->responding_ap_title = t;
			a->responding_ap_title_len = tlen;
			break;
		case AARE_ACSE_REQ:
			if ((rc = acse_req_decode(v, vlen, &a->authentication)))
				return rc;
			a->acse_requirements = true;
			break;
		case AARE_MECHANISM:
			if ((rc = dlms_oid_arc(v, vlen, OID_ARC_MECHANISM, &arc)))
				return rc;
			a->mechanism = (enum acse_mech)arc;
			a->mechanism_present = true;
			break;
		case AARE_AUTH_VALUE:
			if ((rc = auth_value_field(v, vlen, &a->auth_value, &a->auth_value_len)))
				return rc;
			break;
		case ACSE_USER_INFO:
			if ((rc = user_info_field(v, vlen, &a->user)))
				return rc;
			break;
		default:
			break;
		}
	}
	return have_ctx && have_result && have_diag ? total : METER_EMALFORMED;
}

int
acse_aare_encode(struct mbuf *out, const struct acse_aare *a)
{
	size_t start = out->len, n;
	bool req = a->acse_requirements || a->authentication;
	bool mech = a->mechanism_present || a->mechanism != ACSE_MECH_NONE;
	int rc;

	if ((rc = check_common(a->context, a->mechanism, a->responding_ap_title,
	                       a->responding_ap_title_len, a->auth_value_len)))
		return rc;
	if ((unsigned)a->result > ACSE_REJECTED_TRANSIENT || a->diag > 127 ||
	    (a->diag_source != ACSE_DIAG_SERVICE_USER &&
	     a->diag_source != ACSE_DIAG_SERVICE_PROVIDER))
		return METER_EINVAL;
	n = tlv_size(tlv_size(DLMS_OID_LEN)) + tlv_size(tlv_size(1)) +
	    tlv_size(tlv_size(tlv_size(1)));
	if (a->responding_ap_title)
		n += tlv_size(tlv_size(a->responding_ap_title_len));
	if (req)
		n += tlv_size(2);
	if (mech)
		n += tlv_size(DLMS_OID_LEN);
	if (a->auth_value)
		n += tlv_size(tlv_size(a->auth_value_len));
	n += user_info_size(&a->user);

	put_tlv_header(out, ACSE_TAG_AARE, n);
	put_tlv_header(out, AARE_CONTEXT, tlv_size(DLMS_OID_LEN));
	put_tlv_header(out, BER_OID, DLMS_OID_LEN);
	put_dlms_oid(out, OID_ARC_CONTEXT, (uint8_t)a->context);
	put_tlv_header(out, AARE_RESULT, tlv_size(1));
	put_tlv_header(out, BER_INTEGER, 1);
	mbuf_u8(out, (uint8_t)a->result);
	put_tlv_header(out, AARE_DIAGNOSTIC, tlv_size(tlv_size(1)));
	put_tlv_header(out, a->diag_source == ACSE_DIAG_SERVICE_USER ? 0xa1 : 0xa2, tlv_size(1));
	put_tlv_header(out, BER_INTEGER, 1);
	mbuf_u8(out, a->diag);
	if (a->responding_ap_title)
		put_wrapped(out, AARE_RESPONDING_TITLE, BER_OCTET_STRING, a->responding_ap_title,
		            a->responding_ap_title_len);
	if (req) {
		put_tlv_header(out, AARE_ACSE_REQ, 2);
		mbuf_u8(out, 7);
		mbuf_u8(out, a->authentication ? 0x80 : 0x00);
	}
	if (mech) {
		put_tlv_header(out, AARE_MECHANISM, DLMS_OID_LEN);
		put_dlms_oid(out, OID_ARC_MECHANISM, (uint8_t)a->mechanism);
	}
	if (a->auth_value)
		put_wrapped(out, AARE_AUTH_VALUE, AUTH_CHARSTRING, a->auth_value,
		            a->auth_value_len);
	user_info_put(out, &a->user);
	return finish(out, start);
}

/* ---- RLRQ / RLRE ----------------------------------------------------------- */

static ssize_t
release_decode(const uint8_t *buf, size_t len, uint8_t want, struct acse_release *r)
{
	struct mrd in;
	const uint8_t *v;
	size_t vlen;
	uint8_t tag;
	ssize_t total;
	int rc;

	memset(r, 0, sizeof(*r));
	if ((total = apdu_open(buf, len, want, &in)) < 0)
		return total;
	while (mrd_left(&in)) {
		if ((rc = ber_next(&in, &tag, &v, &vlen)))
			return rc;
		switch (tag) {
		case RELEASE_REASON:
			if ((rc = ber_small_int(v, vlen, &r->reason)))
				return rc;
			r->reason_present = true;
			break;
		case ACSE_USER_INFO:
			if ((rc = user_info_field(v, vlen, &r->user)))
				return rc;
			break;
		default:
			break;
		}
	}
	return total;
}

static int
release_encode(struct mbuf *out, uint8_t tag, const struct acse_release *r)
{
	size_t start = out->len, n = 0;

	if (r->reason_present && r->reason > 127)
		return METER_EINVAL;
	if (r->reason_present)
		n += tlv_size(1);
	n += user_info_size(&r->user);
	put_tlv_header(out, tag, n);
	if (r->reason_present) {
		put_tlv_header(out, RELEASE_REASON, 1);
		mbuf_u8(out, r->reason);
	}
	user_info_put(out, &r->user);
	return finish(out, start);
}

ssize_t
acse_rlrq_decode(const uint8_t *buf, size_t len, struct acse_release *r)
{
	return release_decode(buf, len, ACSE_TAG_RLRQ, r);
}

ssize_t
acse_rlre_decode(const uint8_t *buf, size_t len, struct acse_release *r)
{
	return release_decode(buf, len, ACSE_TAG_RLRE, r);
}

int
acse_rlrq_encode(struct mbuf *out, const struct acse_release *r)
{
	return release_encode(out, ACSE_TAG_RLRQ, r);
}

int
acse_rlre_encode(struct mbuf *out, const struct acse_release *r)
{
	return release_encode(out, ACSE_TAG_RLRE, r);
}

/* ---- names ----------------------------------------------------------------- */

static const char *const conformance_names[24] = {
    "reserved-zero",
    "general-protection",
    "general-block-transfer",
    "read",
    "write",
    "unconfirmed-write",
    "delta-value-encoding",
    "reserved-seven",
    "attribute0-supported-with-set",
    "priority-mgmt-supported",
    "attribute0-supported-with-get",
    "block-transfer-with-get-or-read",
    "block-transfer-with-set-or-write",
    "block-transfer-with-action",
    "multiple-references",
    "information-report",
    "data-notification",
    "access",
    "parameterized-access",
    "get",
    "set",
    "selective-access",
    "event-notification",
    "action",
};

const char *
acse_conformance_bit_name(unsigned n)
{
	return n < 24 ? conformance_names[n] : NULL;
}

size_t
acse_conformance_names(uint32_t conf, const char **names, size_t cap)
{
	size_t k = 0;

	for (unsigned n = 0; n < 24; n++) {
		if (!(conf & ACSE_CONF_BIT(n)))
			continue;
		if (k < cap)
			names[k] = conformance_names[n];
		k++;
	}
	return k;
}

const char *
acse_context_name(int ctx)
{
	switch (ctx) {
	case ACSE_CTX_LN:
		return "LN_no_ciphering";
	case ACSE_CTX_SN:
		return "SN_no_ciphering";
	case ACSE_CTX_LN_CIPHER:
		return "LN_with_ciphering";
	case ACSE_CTX_SN_CIPHER:
		return "SN_with_ciphering";
	}
	return "unknown";
}

const char *
acse_mech_name(int mech)
{
	static const char *const names[] = {"none",     "LLS",      "HLS",        "HLS_MD5",
	                                    "HLS_SHA1", "HLS_GMAC", "HLS_SHA256", "HLS_ECDSA"};

	return mech >= 0 && mech < 8 ? names[mech] : "unknown";
}

const char *
acse_result_name(int result)
{
	switch (result) {
	case ACSE_ACCEPTED:
		return "accepted";
	case ACSE_REJECTED_PERMANENT:
		return "rejected-permanent";
	case ACSE_REJECTED_TRANSIENT:
		return "rejected-transient";
	}
	return "unknown";
}

const char *
acse_user_diag_name(int diag)
{
	static const char *const names[] = {
	    "null",
	    "no-reason-given",
	    "application-context-name-not-supported",
	    "calling-AP-title-not-recognized",
	    "calling-AP-invocation-identifier-not-recognized",
	    "calling-AE-qualifier-not-recognized",
	    "calling-AE-invocation-identifier-not-recognized",
	    "called-AP-title-not-recognized",
	    "called-AP-invocation-identifier-not-recognized",
	    "called-AE-qualifier-not-recognized",
	    "called-AE-invocation-identifier-not-recognized",
	    "authentication-mechanism-name-not-recognised",
	    "authentication-mechanism-name-required",
	    "authentication-failure",
	    "authentication-required",
	};

	return diag >= 0 && diag < 15 ? names[diag] : "unknown";
}

const char *
acse_provider_diag_name(int diag)
{
	static const char *const names[] = {"null", "no-reason-given", "no-common-acse-version"};

	return diag >= 0 && diag < 3 ? names[diag] : "unknown";
}
