/*
 * xdlms.h: the xDLMS service APDUs of logical-name referencing
 * (IEC 62056-5-3, Green Book ch. 9): GET, SET, ACTION requests and
 * responses in all their forms, EventNotificationRequest, DataNotification,
 * ExceptionResponse and ConfirmedServiceError, with selective access and the
 * helpers the client and server session engines need for block transfer.
 *
 * One decoded form serves both directions.  xdlms_decode() recognises the
 * APDU and fills a struct xdlms_apdu the caller provides; every COSEM Data
 * value inside it (attribute values, access parameters, results) is given
 * both as the raw tagged bytes in the input and, when the caller passes a
 * node array, as decoded A-XDR nodes (see axdr.h).  Nothing is allocated:
 * raw pointers point into the caller's input, node pointers into the
 * caller's array, so both must outlive the struct.  xdlms_encode() writes
 * the same struct back, so an engine builds an APDU by filling the struct
 * (or through the small builders below) and a server answers with the
 * same types it parses.
 *
 * Ciphered APDUs (glo-*, ded-*, general-glo/ded-ciphering) are only framed
 * here (tag, security header, payload); the security module deciphers them
 * and hands the plaintext back to xdlms_decode().  ACSE (AARQ/AARE/RLRQ/
 * RLRE) and InitiateRequest/Response belong to acse.h; xdlms_decode()
 * refuses them with METER_EUNSUPPORTED but xdlms_tag_name() names them.
 */
#ifndef METER_XDLMS_H
#define METER_XDLMS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "axdr.h"
#include "bytes.h"
#include "obis.h"

/* ---- APDU tags (first byte) ------------------------------------------- */

enum xdlms_tag {
	XDLMS_TAG_INITIATE_REQUEST = 0x01,
	XDLMS_TAG_INITIATE_RESPONSE = 0x08,
	XDLMS_TAG_CONFIRMED_SERVICE_ERROR = 0x0e,
	XDLMS_TAG_DATA_NOTIFICATION = 0x0f,
	XDLMS_TAG_GLO_INITIATE_REQUEST = 0x21,
	XDLMS_TAG_GLO_INITIATE_RESPONSE = 0x28,
	XDLMS_TAG_GLO_CONFIRMED_SERVICE_ERROR = 0x2e,
	XDLMS_TAG_AARQ = 0x60,
	XDLMS_TAG_AARE = 0x61,
	XDLMS_TAG_RLRQ = 0x62,
	XDLMS_TAG_RLRE = 0x63,
	XDLMS_TAG_GET_REQUEST = 0xc0,
	XDLMS_TAG_SET_REQUEST = 0xc1,
	XDLMS_TAG_EVENT_NOTIFICATION_REQUEST = 0xc2,
	XDLMS_TAG_ACTION_REQUEST = 0xc3,
	XDLMS_TAG_GET_RESPONSE = 0xc4,
	XDLMS_TAG_SET_RESPONSE = 0xc5,
	XDLMS_TAG_ACTION_RESPONSE = 0xc7,
	XDLMS_TAG_GLO_GET_REQUEST = 0xc8, /* 0xc8..0xcf: glo- of 0xc0..0xc7 */
	XDLMS_TAG_GLO_ACTION_RESPONSE = 0xcf,
	XDLMS_TAG_DED_GET_REQUEST = 0xd0, /* 0xd0..0xd7: ded- of 0xc0..0xc7 */
	XDLMS_TAG_DED_ACTION_RESPONSE = 0xd7,
	XDLMS_TAG_EXCEPTION_RESPONSE = 0xd8,
	XDLMS_TAG_ACCESS_REQUEST = 0xd9,
	XDLMS_TAG_ACCESS_RESPONSE = 0xda,
	XDLMS_TAG_GENERAL_GLO_CIPHERING = 0xdb,
	XDLMS_TAG_GENERAL_DED_CIPHERING = 0xdc,
	XDLMS_TAG_GENERAL_CIPHERING = 0xdd,
	XDLMS_TAG_GENERAL_SIGNING = 0xdf,
	XDLMS_TAG_GENERAL_BLOCK_TRANSFER = 0xe0
};

/*
 * What a decoded APDU is: tag << 8 | CHOICE index for the service APDUs
 * (so XDLMS_GET_RESPONSE_WITH_DATABLOCK is 0xc402, the first two bytes on
 * the wire), tag << 8 for those without a CHOICE.
 */
enum xdlms_type {
	XDLMS_GET_REQUEST_NORMAL = 0xc001,
	XDLMS_GET_REQUEST_NEXT = 0xc002,
	XDLMS_GET_REQUEST_WITH_LIST = 0xc003,
	XDLMS_SET_REQUEST_NORMAL = 0xc101,
	XDLMS_SET_REQUEST_WITH_FIRST_DATABLOCK = 0xc102,
	XDLMS_SET_REQUEST_WITH_DATABLOCK = 0xc103,
	XDLMS_SET_REQUEST_WITH_LIST = 0xc104,
	XDLMS_SET_REQUEST_WITH_LIST_AND_FIRST_DATABLOCK = 0xc105,
	XDLMS_EVENT_NOTIFICATION_REQUEST = 0xc200,
	XDLMS_ACTION_REQUEST_NORMAL = 0xc301,
	XDLMS_ACTION_REQUEST_NEXT_PBLOCK = 0xc302,
	XDLMS_ACTION_REQUEST_WITH_LIST = 0xc303,
	XDLMS_ACTION_REQUEST_WITH_FIRST_PBLOCK = 0xc304,
	XDLMS_ACTION_REQUEST_WITH_LIST_AND_FIRST_PBLOCK = 0xc305,
	XDLMS_ACTION_REQUEST_WITH_PBLOCK = 0xc306,
	XDLMS_GET_RESPONSE_NORMAL = 0xc401,
	XDLMS_GET_RESPONSE_WITH_DATABLOCK = 0xc402,
	XDLMS_GET_RESPONSE_WITH_LIST = 0xc403,
	XDLMS_SET_RESPONSE_NORMAL = 0xc501,
	XDLMS_SET_RESPONSE_DATABLOCK = 0xc502,
	XDLMS_SET_RESPONSE_LAST_DATABLOCK = 0xc503,
	XDLMS_SET_RESPONSE_LAST_DATABLOCK_WITH_LIST = 0xc504,
	XDLMS_SET_RESPONSE_WITH_LIST = 0xc505,
	XDLMS_ACTION_RESPONSE_NORMAL = 0xc701,
	XDLMS_ACTION_RESPONSE_WITH_PBLOCK = 0xc702,
	XDLMS_ACTION_RESPONSE_WITH_LIST = 0xc703,
	XDLMS_ACTION_RESPONSE_NEXT_PBLOCK = 0xc704,
	XDLMS_EXCEPTION_RESPONSE = 0xd800,
	XDLMS_CONFIRMED_SERVICE_ERROR = 0x0e00,
	XDLMS_DATA_NOTIFICATION = 0x0f00,
	/* any glo-/ded-/general-glo-/general-ded-ciphered APDU: framing only,
	 * the real tag is in apdu.cipher.tag */
	XDLMS_CIPHERED = 0xff00
};

/* Longest with-list a decoded APDU holds; more is METER_ELIMIT. */
#define XDLMS_MAX_LIST 32

/* ---- Invoke-Id-And-Priority ---------------------------------------------
 * One byte: invoke id in bits 0-3, service class in bit 6 (1 = confirmed),
 * priority in bit 7 (1 = high).  Bits 4-5 are reserved; decoders keep the
 * byte as received (apdu.iip) so a response can echo it unchanged. */

#define XDLMS_IIP_INVOKE_ID 0x0f
#define XDLMS_IIP_RESERVED  0x30
#define XDLMS_IIP_CONFIRMED 0x40
#define XDLMS_IIP_HIGH	    0x80

static inline uint8_t
xdlms_iip(uint8_t invoke_id, bool confirmed, bool high_priority)
{
	return (uint8_t)((invoke_id & XDLMS_IIP_INVOKE_ID) | (confirmed ? XDLMS_IIP_CONFIRMED : 0) |
			 (high_priority ? XDLMS_IIP_HIGH : 0));
}
static inline uint8_t
xdlms_iip_invoke_id(uint8_t iip)
{
	return iip & XDLMS_IIP_INVOKE_ID;
}
static inline bool
xdlms_iip_confirmed(uint8_t iip)
{
	return (iip & XDLMS_IIP_CONFIRMED) != 0;
}
static inline bool
xdlms_iip_high(uint8_t iip)
{
	return (iip & XDLMS_IIP_HIGH) != 0;
}

/* Long-Invoke-Id-And-Priority (DataNotification): 32 bits. */
#define XDLMS_LIIP_INVOKE_ID	   0x00ffffffu
#define XDLMS_LIIP_SELF_DESCRIBING 0x10000000u
#define XDLMS_LIIP_BREAK_ON_ERROR  0x20000000u
#define XDLMS_LIIP_CONFIRMED	   0x40000000u
#define XDLMS_LIIP_HIGH		   0x80000000u

/* ---- result codes -------------------------------------------------------- */

enum xdlms_dar { /* Data-Access-Result */
	XDLMS_DAR_SUCCESS = 0,
	XDLMS_DAR_HARDWARE_FAULT = 1,
	XDLMS_DAR_TEMPORARY_FAILURE = 2,
	XDLMS_DAR_READ_WRITE_DENIED = 3,
	XDLMS_DAR_OBJECT_UNDEFINED = 4,
	XDLMS_DAR_OBJECT_CLASS_INCONSISTENT = 9,
	XDLMS_DAR_OBJECT_UNAVAILABLE = 11,
	XDLMS_DAR_TYPE_UNMATCHED = 12,
	XDLMS_DAR_SCOPE_OF_ACCESS_VIOLATED = 13,
	XDLMS_DAR_DATA_BLOCK_UNAVAILABLE = 14,
	XDLMS_DAR_LONG_GET_ABORTED = 15,
	XDLMS_DAR_NO_LONG_GET_IN_PROGRESS = 16,
	XDLMS_DAR_LONG_SET_ABORTED = 17,
	XDLMS_DAR_NO_LONG_SET_IN_PROGRESS = 18,
	XDLMS_DAR_DATA_BLOCK_NUMBER_INVALID = 19,
	XDLMS_DAR_OTHER_REASON = 250
};

enum xdlms_action_result { /* Action-Result */
	XDLMS_AR_SUCCESS = 0,
	XDLMS_AR_HARDWARE_FAULT = 1,
	XDLMS_AR_TEMPORARY_FAILURE = 2,
	XDLMS_AR_READ_WRITE_DENIED = 3,
	XDLMS_AR_OBJECT_UNDEFINED = 4,
	XDLMS_AR_OBJECT_CLASS_INCONSISTENT = 9,
	XDLMS_AR_OBJECT_UNAVAILABLE = 11,
	XDLMS_AR_TYPE_UNMATCHED = 12,
	XDLMS_AR_SCOPE_OF_ACCESS_VIOLATED = 13,
	XDLMS_AR_DATA_BLOCK_UNAVAILABLE = 14,
	XDLMS_AR_LONG_ACTION_ABORTED = 15,
	XDLMS_AR_NO_LONG_ACTION_IN_PROGRESS = 16,
	XDLMS_AR_OTHER_REASON = 250
};

/* ExceptionResponse */
enum xdlms_state_error {
	XDLMS_STATE_SERVICE_NOT_ALLOWED = 1,
	XDLMS_STATE_SERVICE_UNKNOWN = 2
};
enum xdlms_service_error {
	XDLMS_SERVICE_OPERATION_NOT_POSSIBLE = 1,
	XDLMS_SERVICE_NOT_SUPPORTED = 2,
	XDLMS_SERVICE_OTHER_REASON = 3,
	XDLMS_SERVICE_PDU_TOO_LONG = 4,
	XDLMS_SERVICE_DECIPHERING_ERROR = 5,
	XDLMS_SERVICE_INVOCATION_COUNTER_ERROR = 6 /* carries a uint32 */
};

/* ConfirmedServiceError: which service failed ... */
enum xdlms_cse_service {
	XDLMS_CSE_INITIATE_ERROR = 1,
	XDLMS_CSE_GET_STATUS = 2,
	XDLMS_CSE_GET_NAME_LIST = 3,
	XDLMS_CSE_GET_VARIABLE_ATTRIBUTE = 4,
	XDLMS_CSE_READ = 5,
	XDLMS_CSE_WRITE = 6,
	XDLMS_CSE_GET_DATA_SET_ATTRIBUTE = 7,
	XDLMS_CSE_GET_TI_ATTRIBUTE = 8,
	XDLMS_CSE_CHANGE_SCOPE = 9,
	XDLMS_CSE_START = 10,
	XDLMS_CSE_STOP = 11,
	XDLMS_CSE_RESUME = 12,
	XDLMS_CSE_MAKE_USABLE = 13,
	XDLMS_CSE_INITIATE_LOAD = 14,
	XDLMS_CSE_LOAD_SEGMENT = 15,
	XDLMS_CSE_TERMINATE_LOAD = 16,
	XDLMS_CSE_INITIATE_UPLOAD = 17,
	XDLMS_CSE_UPLOAD_SEGMENT = 18,
	XDLMS_CSE_TERMINATE_UPLOAD = 19
};
/* ... and the ServiceError CHOICE; each has its own enumeration of values
 * (xdlms_cse_value_name()). */
enum xdlms_cse_error {
	XDLMS_CSE_APPLICATION_REFERENCE = 0,
	XDLMS_CSE_HARDWARE_RESOURCE = 1,
	XDLMS_CSE_VDE_STATE_ERROR = 2,
	XDLMS_CSE_SERVICE = 3,
	XDLMS_CSE_DEFINITION = 4,
	XDLMS_CSE_ACCESS = 5,
	XDLMS_CSE_INITIATE = 6,
	XDLMS_CSE_LOAD_DATA_SET = 7,
	XDLMS_CSE_TASK = 9,
	XDLMS_CSE_OTHER_ERROR = 10
};
/* initiate(6) values, the ones a head-end meets at association */
enum xdlms_cse_initiate {
	XDLMS_CSE_INITIATE_OTHER = 0,
	XDLMS_CSE_INITIATE_DLMS_VERSION_TOO_LOW = 1,
	XDLMS_CSE_INITIATE_INCOMPATIBLE_CONFORMANCE = 2,
	XDLMS_CSE_INITIATE_PDU_SIZE_TOO_SHORT = 3,
	XDLMS_CSE_INITIATE_REFUSED_BY_VDE_HANDLER = 4
};

/* ---- names (for logs and `ammctl decode`); never NULL ------------------- */

const char *xdlms_tag_name(uint8_t tag);	 /* "get-response", "glo-get-request", "unknown" */
const char *xdlms_type_name(uint16_t type);	 /* "get-response-with-datablock" */
const char *xdlms_dar_name(uint8_t dar);	 /* "hardware-fault" */
const char *xdlms_action_result_name(uint8_t r); /* "long-action-aborted" */
const char *xdlms_state_error_name(uint8_t v);	 /* "service-not-allowed" */
const char *xdlms_service_error_name(uint8_t v); /* "service-not-supported" */
const char *xdlms_cse_service_name(uint8_t v);	 /* "initiateError" */
const char *xdlms_cse_error_name(uint8_t v);	 /* "initiate" */
const char *xdlms_cse_value_name(uint8_t error, uint8_t value); /* "dlms-version-too-low" */

/* ---- the parts ------------------------------------------------------------ */

/*
 * A COSEM Data value inside an APDU.  raw/len: the tagged A-XDR bytes (in
 * the decoder's input, or prepared by the caller for encoding).  node /
 * n_nodes: the decoded tree in the caller's node array; NULL/0 when the
 * APDU was decoded without a node array.  The encoder writes raw when it
 * is set, else encodes the nodes.
 */
struct xdlms_data {
	const uint8_t *raw;
	uint32_t len;
	const struct axdr_node *node;
	uint32_t n_nodes;
};

/* Cosem-Attribute-Descriptor and Cosem-Method-Descriptor: same layout on
 * the wire (class-id Unsigned16, instance-id octet-string(6), id Integer8;
 * negative ids are manufacturer-specific). */
struct xdlms_desc {
	uint16_t class_id;
	struct obis obis;
	int8_t id; /* attribute or method */
};

/* Selective-Access-Descriptor; present == false: no selective access. */
#define XDLMS_ACCESS_RANGE 1
#define XDLMS_ACCESS_ENTRY 2
struct xdlms_access {
	bool present;
	uint8_t selector;	  /* XDLMS_ACCESS_RANGE, _ENTRY, or another */
	struct xdlms_data params; /* access-parameters */
};

/* DataBlock-G (GET) and DataBlock-SA (SET, ACTION pblocks). */
struct xdlms_block {
	uint8_t last;	 /* boolean as received: 0 = more blocks follow */
	uint32_t number; /* block-number */
	bool is_dar;	 /* DataBlock-G only: data-access-result instead of raw data */
	uint8_t dar;
	const uint8_t *raw; /* raw-data octet-string contents */
	uint32_t raw_len;
};

/* Get-Data-Result: data or data-access-result. */
struct xdlms_get_result {
	bool is_data;
	uint8_t dar; /* when !is_data */
	struct xdlms_data data;
};

/* Action-Response-With-Optional-Data. */
struct xdlms_action_resp {
	uint8_t result; /* enum xdlms_action_result */
	bool has_return;
	struct xdlms_get_result ret; /* return-parameters */
};

/* One element of a with-list APDU; which members matter depends on the
 * type (see struct xdlms_apdu). */
struct xdlms_item {
	struct xdlms_desc desc;	    /* request lists */
	struct xdlms_access access; /* GET/SET request lists */
	struct xdlms_data value;    /* SET value-list, ACTION parameter list */
	struct xdlms_get_result get; /* GET-Response-With-List */
	struct xdlms_action_resp act; /* ACTION-Response-With-List */
	uint8_t dar;		    /* SET-Response lists */
};

/* Framing of a ciphered APDU (no crypto here). */
struct xdlms_cipher {
	uint8_t tag;
	const uint8_t *system_title; /* general-glo/ded only, else NULL */
	uint32_t system_title_len;
	uint8_t security_control;
	uint32_t invocation_counter;
	const uint8_t *payload; /* after SC and IC: ciphertext and tag */
	uint32_t payload_len;
};

/*
 * A decoded (or to-be-encoded) APDU.  Members by type:
 *
 *   GET-Request-Normal		iip, desc, access
 *   GET-Request-Next		iip, block.number
 *   GET-Request-With-List	iip, n_items, items[].desc, items[].access
 *   SET-Request-Normal		iip, desc, access, value
 *   SET-Request-With-First-Datablock	iip, desc, access, block
 *   SET-Request-With-Datablock	iip, block
 *   SET-Request-With-List	iip, n_items, items[].desc/.access,
 *				n_values, items[].value
 *   SET-Request-With-List-And-First-Datablock  iip, n_items, items[].desc/
 *				.access, block
 *   ACTION-Request-Normal	iip, desc (method), has_value, value (parameters)
 *   ACTION-Request-Next-Pblock	iip, block.number
 *   ACTION-Request-With-List	iip, n_items, items[].desc, n_values, items[].value
 *   ACTION-Request-With-First-Pblock  iip, desc, block
 *   ACTION-Request-With-List-And-First-Pblock  iip, n_items, items[].desc, block
 *   ACTION-Request-With-Pblock	iip, block
 *   GET-Response-Normal	iip, get
 *   GET-Response-With-Datablock iip, block (raw data or is_dar/dar)
 *   GET-Response-With-List	iip, n_items, items[].get
 *   SET-Response-Normal	iip, dar
 *   SET-Response-Datablock	iip, block.number
 *   SET-Response-Last-Datablock iip, dar, block.number
 *   SET-Response-Last-Datablock-With-List  iip, n_items, items[].dar, block.number
 *   SET-Response-With-List	iip, n_items, items[].dar
 *   ACTION-Response-Normal	iip, act
 *   ACTION-Response-With-Pblock iip, block
 *   ACTION-Response-With-List	iip, n_items, items[].act
 *   ACTION-Response-Next-Pblock iip, block.number
 *   EventNotificationRequest	time/time_len (has_time), desc, value
 *   DataNotification		long_iip, time/time_len (0 = absent), value
 *   ExceptionResponse		state_error, service_error, invocation_counter
 *   ConfirmedServiceError	cse_service, cse_error, cse_value
 *   ciphered			cipher
 */
struct xdlms_apdu {
	uint16_t type; /* enum xdlms_type */
	uint8_t iip;
	struct xdlms_desc desc;
	struct xdlms_access access;
	bool has_value;
	struct xdlms_data value;
	struct xdlms_block block;
	struct xdlms_get_result get;
	struct xdlms_action_resp act;
	uint8_t dar;

	uint32_t n_items;
	uint32_t n_values;
	struct xdlms_item items[XDLMS_MAX_LIST];

	uint32_t long_iip;
	bool has_time;
	const uint8_t *time; /* date-time octet-string contents (12 bytes) */
	uint32_t time_len;

	uint8_t state_error, service_error;
	uint32_t invocation_counter; /* service_error == invocation-counter-error */
	uint8_t cse_service, cse_error, cse_value;

	struct xdlms_cipher cipher;

	/* set by xdlms_decode() */
	size_t trailing; /* bytes after the APDU, left alone */
	size_t n_nodes;	 /* nodes used in the caller's array */
};

/* ---- decode / encode -------------------------------------------------------- */

/*
 * Decode one xDLMS APDU from buf.  Data values go into nodes[0..cap) in
 * APDU order; pass nodes = NULL (cap 0) to only delimit them (raw/len),
 * e.g. to walk a large profile buffer with axdr_decode_header() later.
 * Returns bytes consumed; bytes after a complete APDU are not an error
 * (some meters pad responses) and are reported in out->trailing.
 * Errors: METER_ENEEDMORE (truncated), METER_EMALFORMED (bad CHOICE, flag,
 * length or Data), METER_EUNSUPPORTED (ACSE, Initiate, SN or other APDUs
 * this module does not decode), METER_ELIMIT (list longer than
 * XDLMS_MAX_LIST, Data nested too deep), METER_ENOSPC (node array full).
 */
ssize_t xdlms_decode(const uint8_t *buf, size_t len, struct xdlms_apdu *out, struct axdr_node *nodes,
		     size_t cap);

/*
 * Encode an APDU from the struct (type decides which members are used).
 * Returns bytes written, or METER_ENOSPC (b too small), METER_EINVAL
 * (unknown type, list over XDLMS_MAX_LIST, Data with neither raw nor
 * nodes), METER_EMALFORMED (inconsistent node tree).  XDLMS_CIPHERED is
 * not encoded here (METER_EINVAL): the security module builds those.
 */
ssize_t xdlms_encode(const struct xdlms_apdu *a, struct mbuf *b);

/* A Data value from raw tagged bytes (for filling structs to encode). */
static inline struct xdlms_data
xdlms_data_raw(const uint8_t *raw, uint32_t len)
{
	return (struct xdlms_data){raw, len, NULL, 0};
}

/* ---- builders for the common requests and responses ----------------------
 * Thin wrappers over xdlms_encode(); same return values.  `value`,
 * `params`, `access` may be NULL where the APDU makes them optional. */

ssize_t xdlms_put_get_request(struct mbuf *b, uint8_t iip, const struct xdlms_desc *d,
			      const struct xdlms_access *access);
ssize_t xdlms_put_get_request_next(struct mbuf *b, uint8_t iip, uint32_t block_number);
ssize_t xdlms_put_set_request(struct mbuf *b, uint8_t iip, const struct xdlms_desc *d,
			      const struct xdlms_access *access, const struct xdlms_data *value);
ssize_t xdlms_put_action_request(struct mbuf *b, uint8_t iip, const struct xdlms_desc *m,
				 const struct xdlms_data *params);
ssize_t xdlms_put_get_response_data(struct mbuf *b, uint8_t iip, const struct xdlms_data *value);
ssize_t xdlms_put_get_response_dar(struct mbuf *b, uint8_t iip, uint8_t dar);
ssize_t xdlms_put_set_response(struct mbuf *b, uint8_t iip, uint8_t dar);
ssize_t xdlms_put_action_response(struct mbuf *b, uint8_t iip, uint8_t result,
				  const struct xdlms_data *ret);
ssize_t xdlms_put_exception_response(struct mbuf *b, uint8_t state_error, uint8_t service_error);

/* ---- selective access --------------------------------------------------- */

/* capture_object_definition: {class_id, logical_name, attribute_index,
 * data_index}. */
struct xdlms_capture_obj {
	uint16_t class_id;
	struct obis obis;
	int8_t attribute;
	uint16_t data_index;
};

/* range_descriptor as decoded from the access-parameters nodes. */
struct xdlms_range {
	struct xdlms_capture_obj restricting;
	const struct axdr_node *from; /* usually octet-string(12) date-time */
	const struct axdr_node *to;
	const struct axdr_node *selected; /* the array node (may be empty) */
	uint32_t n_selected;
};

/* entry_descriptor; to_entry 0 = to the last entry, to_value 0 = to the
 * last column. */
struct xdlms_entry {
	uint32_t from_entry, to_entry;
	uint16_t from_value, to_value;
};

/*
 * Write the access-parameters Data of a range_descriptor: from/to as
 * date-time octet-strings, and the selected columns (n == 0: all).
 * Overflow latches in b->err.  The _data variant takes from/to as any
 * Data (raw bytes or nodes) and returns 0, METER_EINVAL (a value with
 * neither) or METER_EMALFORMED (inconsistent node tree).
 */
struct cosem_datetime;
void xdlms_put_range(struct mbuf *b, const struct xdlms_capture_obj *restricting,
		     const struct cosem_datetime *from, const struct cosem_datetime *to,
		     const struct xdlms_capture_obj *cols, uint32_t n);
int xdlms_put_range_data(struct mbuf *b, const struct xdlms_capture_obj *restricting,
			  const struct xdlms_data *from, const struct xdlms_data *to,
			  const struct xdlms_capture_obj *cols, uint32_t n);
void xdlms_put_entry(struct mbuf *b, const struct xdlms_entry *e);
void xdlms_put_capture_obj(struct mbuf *b, const struct xdlms_capture_obj *c);

/*
 * Read decoded access-parameters (a node tree).  Return 0, or
 * METER_EMALFORMED when the tree does not have the descriptor's shape.
 */
int xdlms_range_from_nodes(const struct axdr_node *params, struct xdlms_range *out);
int xdlms_entry_from_nodes(const struct axdr_node *params, struct xdlms_entry *out);
int xdlms_capture_obj_from_node(const struct axdr_node *n, struct xdlms_capture_obj *out);

/*
 * A bare Selective-Access-Descriptor (access-selector, access-parameters),
 * as it appears inside the request APDUs after the presence flag.
 * Returns bytes consumed; errors as xdlms_decode().  *n_used: nodes used.
 */
ssize_t xdlms_decode_access(const uint8_t *buf, size_t len, struct xdlms_access *out,
			    struct axdr_node *nodes, size_t cap, size_t *n_used);

/* ---- block transfer (the engines own the reassembly buffer) -------------- */

/*
 * Client, long GET: check a decoded response against the block the engine
 * expects.  Returns 0 with *last set when `a` is a
 * GET-Response-With-Datablock carrying raw data for block `expected`;
 * METER_EACCESS when it carries a data-access-result (a->block.dar);
 * METER_EPROTO for another APDU type or another block number.  The next
 * request is xdlms_put_get_request_next(b, iip, expected).
 */
int xdlms_block_check(const struct xdlms_apdu *a, uint32_t expected, bool *last);

/*
 * Largest raw-data chunk for a datablock APDU whose fixed part takes
 * `header` bytes so that the whole APDU fits in max_pdu (the octet-string
 * length field is accounted for).  0 when nothing fits.
 */
size_t xdlms_block_room(size_t max_pdu, size_t header);

/*
 * Server, long GET: write the GET-Response-With-Datablock for block
 * `block_number` carrying the next part of data[*off..len), at most
 * max_pdu bytes in all; advances *off and marks the block last when it
 * reaches len.  Returns bytes written, METER_ENOSPC, or METER_EINVAL when
 * max_pdu leaves no room for data or *off > len.
 */
ssize_t xdlms_put_get_response_block(struct mbuf *b, uint8_t iip, uint32_t block_number,
				     const uint8_t *data, size_t len, size_t *off, size_t max_pdu);

/* Fixed bytes before the raw data of each datablock APDU kind (without the
 * raw-data length field); for xdlms_block_room().  A client sending a long
 * SET or ACTION measures the fixed part of its first APDU (with-first-
 * datablock / -pblock) by encoding it with raw_len 0 and subtracting the
 * one length byte, and uses XDLMS_SET_BLOCK_HEADER for the ones after. */
#define XDLMS_GET_BLOCK_HEADER 9 /* c4 02 iip last number(4) choice */
#define XDLMS_SET_BLOCK_HEADER 8 /* c1 03 iip last number(4) */

#endif
