/*
 * acse.h: the association layer of DLMS/COSEM (IEC 62056-5-3 §9.3 and the
 * Green Book): the BER-encoded ACSE APDUs AARQ, AARE, RLRQ and RLRE, and the
 * A-XDR xDLMS InitiateRequest / InitiateResponse / ConfirmedServiceError
 * they carry in their user-information.
 *
 * Decoding never allocates: decoded structs point into the caller's buffer,
 * which must outlive them.  Every BER length is checked against the bytes
 * present; lengths in the long form (0x81, 0x82) are accepted, indefinite
 * lengths are not.  Optional fields we do not use (protocol-version,
 * called/calling AE qualifiers and invocation ids, implementation
 * information) are skipped when decoding and never emitted.
 *
 * User-information is kept as the raw xDLMS APDU inside the octet string
 * (`ui`, `ui_len`), and when it is a plaintext InitiateRequest,
 * InitiateResponse or ConfirmedServiceError it is decoded as well.  A
 * ciphered one (glo-initiate-request 0x21, glo-initiate-response 0x28,
 * general-glo 0xdb) is only recognised: the caller unprotects `ui` with
 * dlms_security.h and decodes the plaintext with acse_initiate_*_decode().
 * Encoders likewise take user-information as ready-made bytes, so the
 * same encoder serves plaintext and ciphered associations.
 *
 * Leniency: bytes after the end of the outer APDU are not ours and are
 * ignored (the decoders return how much they consumed).  An APDU whose
 * inner lengths run past their container is refused with METER_ELENGTH.
 * One known meter fault is tolerated: an InitiateResponse that stops one
 * byte into vaa-name (the `hdlc-i-aare-sn` capture, whose AARE lengths are
 * all one byte short, so the low byte of vaa-name falls after the AARE).
 * Its PDU size and conformance are complete, so it is accepted with
 * `vaa_name_truncated` set; any other short Initiate is METER_EMALFORMED.
 */
#ifndef METER_ACSE_H
#define METER_ACSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "bytes.h"

/* APDU tags (BER [APPLICATION n] constructed). */
#define ACSE_TAG_AARQ 0x60
#define ACSE_TAG_AARE 0x61
#define ACSE_TAG_RLRQ 0x62
#define ACSE_TAG_RLRE 0x63

/* xDLMS APDU tags found in user-information. */
#define ACSE_APDU_INITIATE_REQUEST      0x01
#define ACSE_APDU_INITIATE_RESPONSE     0x08
#define ACSE_APDU_SERVICE_ERROR         0x0e
#define ACSE_APDU_GLO_INITIATE_REQUEST  0x21
#define ACSE_APDU_GLO_INITIATE_RESPONSE 0x28

#define ACSE_DLMS_VERSION 6
#define ACSE_VAA_NAME_LN  0x0007
#define ACSE_VAA_NAME_SN  0xfa00

/* Application context name: last arc of 2.16.756.5.8.1.x. */
enum acse_context {
	ACSE_CTX_LN = 1,
	ACSE_CTX_SN = 2,
	ACSE_CTX_LN_CIPHER = 3,
	ACSE_CTX_SN_CIPHER = 4
};

/* Authentication mechanism name: last arc of 2.16.756.5.8.2.x. */
enum acse_mech {
	ACSE_MECH_NONE = 0, /* lowest level: normally sent as no mechanism at all */
	ACSE_MECH_LLS = 1,
	ACSE_MECH_HLS = 2, /* manufacturer specific */
	ACSE_MECH_HLS_MD5 = 3,
	ACSE_MECH_HLS_SHA1 = 4,
	ACSE_MECH_HLS_GMAC = 5,
	ACSE_MECH_HLS_SHA256 = 6,
	ACSE_MECH_HLS_ECDSA = 7
};

enum acse_result { ACSE_ACCEPTED = 0, ACSE_REJECTED_PERMANENT = 1, ACSE_REJECTED_TRANSIENT = 2 };

enum acse_diag_source {
	ACSE_DIAG_SERVICE_USER = 1,    /* [1] acse-service-user */
	ACSE_DIAG_SERVICE_PROVIDER = 2 /* [2] acse-service-provider */
};

/* acse-service-user diagnostics. */
enum acse_user_diag {
	ACSE_DIAG_NULL = 0,
	ACSE_DIAG_NO_REASON = 1,
	ACSE_DIAG_CONTEXT_NOT_SUPPORTED = 2,
	ACSE_DIAG_CALLING_AP_TITLE_NOT_RECOGNIZED = 3,
	ACSE_DIAG_CALLING_AP_INVOCATION_NOT_RECOGNIZED = 4,
	ACSE_DIAG_CALLING_AE_QUALIFIER_NOT_RECOGNIZED = 5,
	ACSE_DIAG_CALLING_AE_INVOCATION_NOT_RECOGNIZED = 6,
	ACSE_DIAG_CALLED_AP_TITLE_NOT_RECOGNIZED = 7,
	ACSE_DIAG_CALLED_AP_INVOCATION_NOT_RECOGNIZED = 8,
	ACSE_DIAG_CALLED_AE_QUALIFIER_NOT_RECOGNIZED = 9,
	ACSE_DIAG_CALLED_AE_INVOCATION_NOT_RECOGNIZED = 10,
	ACSE_DIAG_MECH_NOT_RECOGNISED = 11,
	ACSE_DIAG_MECH_REQUIRED = 12,
	ACSE_DIAG_AUTH_FAILURE = 13,
	ACSE_DIAG_AUTH_REQUIRED = 14
};
/* acse-service-provider diagnostics: null 0, no-reason-given 1, no-common-acse-version 2. */
#define ACSE_DIAG_NO_COMMON_ACSE_VERSION 2

/* RLRQ reasons: normal 0, urgent 1, user-defined 30; RLRE: normal 0, not-finished 1,
 * user-defined 30. */
#define ACSE_RELEASE_NORMAL       0
#define ACSE_RELEASE_URGENT       1
#define ACSE_RELEASE_NOT_FINISHED 1
#define ACSE_RELEASE_USER_DEFINED 30

/*
 * Conformance block: 24 bits, bit 0 is the most significant as in the
 * Green Book, so bit n is the mask 1 << (23 - n).
 */
#define ACSE_CONF_BIT(n)                     (1u << (23 - (n)))
#define ACSE_CONF_GENERAL_PROTECTION         ACSE_CONF_BIT(1)
#define ACSE_CONF_GENERAL_BLOCK_TRANSFER     ACSE_CONF_BIT(2)
#define ACSE_CONF_READ                       ACSE_CONF_BIT(3)
#define ACSE_CONF_WRITE                      ACSE_CONF_BIT(4)
#define ACSE_CONF_UNCONFIRMED_WRITE          ACSE_CONF_BIT(5)
#define ACSE_CONF_DELTA_VALUE_ENCODING       ACSE_CONF_BIT(6)
#define ACSE_CONF_ATTRIBUTE0_WITH_SET        ACSE_CONF_BIT(8)
#define ACSE_CONF_PRIORITY_MGMT              ACSE_CONF_BIT(9)
#define ACSE_CONF_ATTRIBUTE0_WITH_GET        ACSE_CONF_BIT(10)
#define ACSE_CONF_BLOCK_TRANSFER_WITH_GET    ACSE_CONF_BIT(11)
#define ACSE_CONF_BLOCK_TRANSFER_WITH_SET    ACSE_CONF_BIT(12)
#define ACSE_CONF_BLOCK_TRANSFER_WITH_ACTION ACSE_CONF_BIT(13)
#define ACSE_CONF_MULTIPLE_REFERENCES        ACSE_CONF_BIT(14)
#define ACSE_CONF_INFORMATION_REPORT         ACSE_CONF_BIT(15)
#define ACSE_CONF_DATA_NOTIFICATION          ACSE_CONF_BIT(16)
#define ACSE_CONF_ACCESS                     ACSE_CONF_BIT(17)
#define ACSE_CONF_PARAMETERIZED_ACCESS       ACSE_CONF_BIT(18)
#define ACSE_CONF_GET                        ACSE_CONF_BIT(19)
#define ACSE_CONF_SET                        ACSE_CONF_BIT(20)
#define ACSE_CONF_SELECTIVE_ACCESS           ACSE_CONF_BIT(21)
#define ACSE_CONF_EVENT_NOTIFICATION         ACSE_CONF_BIT(22)
#define ACSE_CONF_ACTION                     ACSE_CONF_BIT(23)

/* xDLMS InitiateRequest (A-XDR, tag 0x01). */
struct acse_initiate_req {
	const uint8_t *dedicated_key; /* NULL when absent */
	size_t dedicated_key_len;
	bool response_allowed; /* default true; false is sent explicitly */
	int16_t proposed_qos;  /* -1 when absent, else 0..255 */
	uint8_t dlms_version;  /* 6 */
	uint32_t conformance;  /* 24 bits */
	uint16_t max_pdu;      /* client-max-receive-pdu-size (0: no limit) */
};

/* xDLMS InitiateResponse (A-XDR, tag 0x08). */
struct acse_initiate_resp {
	int16_t negotiated_qos; /* -1 when absent */
	uint8_t dlms_version;
	uint32_t conformance;
	uint16_t max_pdu;  /* server-max-receive-pdu-size */
	uint16_t vaa_name; /* 0x0007 for LN, 0xfa00 for SN */
	/*
	 * Decode only: the APDU ended one byte into vaa-name, as some meters
	 * send it (their lengths count one byte too few); vaa_name then holds
	 * the byte present as its high byte.  Everything that matters (PDU
	 * size, conformance) was complete.
	 */
	bool vaa_name_truncated;
};

/* ConfirmedServiceError (tag 0x0e), as sent in an AARE that refuses the Initiate. */
struct acse_service_error {
	uint8_t choice;        /* 1 = initiateError */
	uint8_t service_error; /* 6 = initiate */
	uint8_t value;         /* initiate: 0 other, 1 dlms-version-too-low,
	                          2 incompatible-conformance, 3 pdu-size-too-short,
	                          4 refused-by-the-VDE-Handler */
};

enum acse_ui_kind {
	ACSE_UI_NONE = 0,      /* no user-information */
	ACSE_UI_INITIATE_REQ,  /* .u.req decoded */
	ACSE_UI_INITIATE_RESP, /* .u.resp decoded */
	ACSE_UI_SERVICE_ERROR, /* .u.err decoded */
	ACSE_UI_CIPHERED,      /* glo-initiate-*, general-glo: unprotect ui first */
	ACSE_UI_OTHER          /* something else: only the raw bytes */
};

struct acse_user_info {
	enum acse_ui_kind kind;
	const uint8_t *ui; /* the xDLMS APDU inside the octet string */
	size_t ui_len;
	union {
		struct acse_initiate_req req;
		struct acse_initiate_resp resp;
		struct acse_service_error err;
	} u;
};

struct acse_aarq {
	enum acse_context context;
	const uint8_t *calling_ap_title; /* our system title; NULL when absent */
	size_t calling_ap_title_len;
	/* sender-acse-requirements: authentication functional unit */
	bool acse_requirements; /* the field is present */
	bool authentication;    /* its authentication bit */
	enum acse_mech mechanism;
	bool mechanism_present;    /* set by decode; encode also emits it when mechanism != NONE */
	const uint8_t *auth_value; /* calling-authentication-value (charstring): password or CtoS */
	size_t auth_value_len;
	/* decode: user information; encode: only ui/ui_len are used */
	struct acse_user_info user;
};

struct acse_aare {
	enum acse_context context;
	enum acse_result result;
	enum acse_diag_source diag_source;
	uint8_t diag;                       /* enum acse_user_diag, or provider diagnostic */
	const uint8_t *responding_ap_title; /* server system title; NULL when absent */
	size_t responding_ap_title_len;
	bool acse_requirements;
	bool authentication;
	enum acse_mech mechanism;
	bool mechanism_present;
	const uint8_t *auth_value; /* responding-authentication-value: StoC */
	size_t auth_value_len;
	struct acse_user_info user;
};

/* RLRQ and RLRE share a shape. */
struct acse_release {
	bool reason_present;
	uint8_t reason;
	struct acse_user_info user;
};

/*
 * Encoders append one APDU to out; they return 0, or METER_EINVAL (value
 * out of range, e.g. a context or mechanism outside 0..127, an AP title
 * longer than 127 bytes) or METER_ENOSPC (out->err is set too).
 */
int acse_aarq_encode(struct mbuf *out, const struct acse_aarq *a);
int acse_aare_encode(struct mbuf *out, const struct acse_aare *a);
int acse_rlrq_encode(struct mbuf *out, const struct acse_release *r);
int acse_rlre_encode(struct mbuf *out, const struct acse_release *r);

/*
 * Decoders return the bytes of the APDU consumed (bytes after it are left
 * alone), or METER_ENEEDMORE (the buffer ends before the outer length
 * says), METER_EMALFORMED (wrong tag, broken BER, an OID that is not a
 * DLMS one, a mandatory field missing), METER_ELENGTH (an inner length
 * runs past its container), METER_EUNSUPPORTED (indefinite length, an
 * authentication value that is not a charstring).
 * A malformed plaintext InitiateRequest/Response inside user-information
 * fails the whole decode with that code.
 */
ssize_t acse_aarq_decode(const uint8_t *buf, size_t len, struct acse_aarq *a);
ssize_t acse_aare_decode(const uint8_t *buf, size_t len, struct acse_aare *a);
ssize_t acse_rlrq_decode(const uint8_t *buf, size_t len, struct acse_release *r);
ssize_t acse_rlre_decode(const uint8_t *buf, size_t len, struct acse_release *r);

/*
 * xDLMS Initiate APDUs (A-XDR).  Encoders append and return 0 or
 * METER_ENOSPC / METER_EINVAL; decoders need the whole APDU (len exactly
 * its size: trailing bytes are METER_EMALFORMED) and return 0 or
 * METER_ENEEDMORE / METER_EMALFORMED.
 */
int acse_initiate_req_encode(struct mbuf *out, const struct acse_initiate_req *r);
int acse_initiate_req_decode(const uint8_t *buf, size_t len, struct acse_initiate_req *r);
int acse_initiate_resp_encode(struct mbuf *out, const struct acse_initiate_resp *r);
int acse_initiate_resp_decode(const uint8_t *buf, size_t len, struct acse_initiate_resp *r);
int acse_service_error_encode(struct mbuf *out, const struct acse_service_error *e);
int acse_service_error_decode(const uint8_t *buf, size_t len, struct acse_service_error *e);

/*
 * Classify and decode an xDLMS APDU found in user-information (fills u).
 * Returns 0 or the decode error of a plaintext Initiate/ServiceError.
 */
int acse_user_info_decode(const uint8_t *ui, size_t len, struct acse_user_info *u);

/* Name of conformance bit n (0 = MSB), "reserved-N" for the unnamed ones, NULL if n > 23. */
const char *acse_conformance_bit_name(unsigned n);
/*
 * Names of the bits set in conf, MSB first, into names[0..cap).  Returns
 * how many bits are set (which may exceed cap; only cap are stored).
 */
size_t acse_conformance_names(uint32_t conf, const char **names, size_t cap);

/* Short names for logs: "LN", "LN_with_ciphering", "HLS_GMAC", "rejected-permanent", ... */
const char *acse_context_name(int ctx);
const char *acse_mech_name(int mech);
const char *acse_result_name(int result);
const char *acse_user_diag_name(int diag);
/* acse-service-provider diagnostics: "null", "no-reason-given", "no-common-acse-version". */
const char *acse_provider_diag_name(int diag);

#endif
