/*
 * xdlms_names.c: names of xDLMS APDU tags, APDU types and the result and
 * error enumerations, spelled as in IEC 62056-5-3 so that log lines and
 * `ammctl decode` output can be checked against the standard.  Unknown
 * values get "unknown" (never NULL), since they come from the wire.
 */
#include "xdlms.h"

#define N_ELEM(a) (sizeof(a) / sizeof((a)[0]))

static const char *
lookup(const char *const *tab, size_t n, unsigned v)
{
	if (v < n && tab[v])
		return tab[v];
	return "unknown";
}

const char *
xdlms_tag_name(uint8_t tag)
{
	static const char *const tab[256] = {
		[1] = "initiate-request",
		[5] = "read-request",
		[6] = "write-request",
		[8] = "initiate-response",
		[12] = "read-response",
		[13] = "write-response",
		[14] = "confirmed-service-error",
		[15] = "data-notification",
		[22] = "unconfirmed-write-request",
		[24] = "information-report-request",
		[33] = "glo-initiate-request",
		[37] = "glo-read-request",
		[38] = "glo-write-request",
		[40] = "glo-initiate-response",
		[44] = "glo-read-response",
		[45] = "glo-write-response",
		[46] = "glo-confirmed-service-error",
		[54] = "glo-unconfirmed-write-request",
		[56] = "glo-information-report-request",
		[65] = "ded-initiate-request",
		[69] = "ded-read-request",
		[70] = "ded-write-request",
		[72] = "ded-initiate-response",
		[76] = "ded-read-response",
		[77] = "ded-write-response",
		[78] = "ded-confirmed-service-error",
		[86] = "ded-unconfirmed-write-request",
		[88] = "ded-information-report-request",
		[0x60] = "aarq",
		[0x61] = "aare",
		[0x62] = "rlrq",
		[0x63] = "rlre",
		[0xc0] = "get-request",
		[0xc1] = "set-request",
		[0xc2] = "event-notification-request",
		[0xc3] = "action-request",
		[0xc4] = "get-response",
		[0xc5] = "set-response",
		[0xc7] = "action-response",
		[0xc8] = "glo-get-request",
		[0xc9] = "glo-set-request",
		[0xca] = "glo-event-notification-request",
		[0xcb] = "glo-action-request",
		[0xcc] = "glo-get-response",
		[0xcd] = "glo-set-response",
		[0xcf] = "glo-action-response",
		[0xd0] = "ded-get-request",
		[0xd1] = "ded-set-request",
		[0xd2] = "ded-event-notification-request",
		[0xd3] = "ded-action-request",
		[0xd4] = "ded-get-response",
		[0xd5] = "ded-set-response",
		[0xd7] = "ded-action-response",
		[0xd8] = "exception-response",
		[0xd9] = "access-request",
		[0xda] = "access-response",
		[0xdb] = "general-glo-ciphering",
		[0xdc] = "general-ded-ciphering",
		[0xdd] = "general-ciphering",
		[0xdf] = "general-signing",
		[0xe0] = "general-block-transfer",
	};
	return lookup(tab, N_ELEM(tab), tag);
}

const char *
xdlms_type_name(uint16_t type)
{
	switch (type) {
	case XDLMS_GET_REQUEST_NORMAL: return "get-request-normal";
	case XDLMS_GET_REQUEST_NEXT: return "get-request-next";
	case XDLMS_GET_REQUEST_WITH_LIST: return "get-request-with-list";
	case XDLMS_SET_REQUEST_NORMAL: return "set-request-normal";
	case XDLMS_SET_REQUEST_WITH_FIRST_DATABLOCK: return "set-request-with-first-datablock";
	case XDLMS_SET_REQUEST_WITH_DATABLOCK: return "set-request-with-datablock";
	case XDLMS_SET_REQUEST_WITH_LIST: return "set-request-with-list";
	case XDLMS_SET_REQUEST_WITH_LIST_AND_FIRST_DATABLOCK:
		return "set-request-with-list-and-first-datablock";
	case XDLMS_EVENT_NOTIFICATION_REQUEST: return "event-notification-request";
	case XDLMS_ACTION_REQUEST_NORMAL: return "action-request-normal";
	case XDLMS_ACTION_REQUEST_NEXT_PBLOCK: return "action-request-next-pblock";
	case XDLMS_ACTION_REQUEST_WITH_LIST: return "action-request-with-list";
	case XDLMS_ACTION_REQUEST_WITH_FIRST_PBLOCK: return "action-request-with-first-pblock";
	case XDLMS_ACTION_REQUEST_WITH_LIST_AND_FIRST_PBLOCK:
		return "action-request-with-list-and-first-pblock";
	case XDLMS_ACTION_REQUEST_WITH_PBLOCK: return "action-request-with-pblock";
	case XDLMS_GET_RESPONSE_NORMAL: return "get-response-normal";
	case XDLMS_GET_RESPONSE_WITH_DATABLOCK: return "get-response-with-datablock";
	case XDLMS_GET_RESPONSE_WITH_LIST: return "get-response-with-list";
	case XDLMS_SET_RESPONSE_NORMAL: return "set-response-normal";
	case XDLMS_SET_RESPONSE_DATABLOCK: return "set-response-datablock";
	case XDLMS_SET_RESPONSE_LAST_DATABLOCK: return "set-response-last-datablock";
	case XDLMS_SET_RESPONSE_LAST_DATABLOCK_WITH_LIST:
		return "set-response-last-datablock-with-list";
	case XDLMS_SET_RESPONSE_WITH_LIST: return "set-response-with-list";
	case XDLMS_ACTION_RESPONSE_NORMAL: return "action-response-normal";
	case XDLMS_ACTION_RESPONSE_WITH_PBLOCK: return "action-response-with-pblock";
	case XDLMS_ACTION_RESPONSE_WITH_LIST: return "action-response-with-list";
	case XDLMS_ACTION_RESPONSE_NEXT_PBLOCK: return "action-response-next-pblock";
	case XDLMS_EXCEPTION_RESPONSE: return "exception-response";
	case XDLMS_CONFIRMED_SERVICE_ERROR: return "confirmed-service-error";
	case XDLMS_DATA_NOTIFICATION: return "data-notification";
	case XDLMS_CIPHERED: return "ciphered";
	}
	return "unknown";
}

/* Data-Access-Result and Action-Result share codes 0..14 and 250; they
 * differ in 15..19, where GET/SET block transfer and long actions part. */
static const char *const dar_common[] = {
	[0] = "success",
	[1] = "hardware-fault",
	[2] = "temporary-failure",
	[3] = "read-write-denied",
	[4] = "object-undefined",
	[9] = "object-class-inconsistent",
	[11] = "object-unavailable",
	[12] = "type-unmatched",
	[13] = "scope-of-access-violated",
	[14] = "data-block-unavailable",
};

const char *
xdlms_dar_name(uint8_t dar)
{
	switch (dar) {
	case 15: return "long-get-aborted";
	case 16: return "no-long-get-in-progress";
	case 17: return "long-set-aborted";
	case 18: return "no-long-set-in-progress";
	case 19: return "data-block-number-invalid";
	case 250: return "other-reason";
	}
	return lookup(dar_common, N_ELEM(dar_common), dar);
}

const char *
xdlms_action_result_name(uint8_t r)
{
	switch (r) {
	case 15: return "long-action-aborted";
	case 16: return "no-long-action-in-progress";
	case 250: return "other-reason";
	}
	return lookup(dar_common, N_ELEM(dar_common), r);
}

const char *
xdlms_state_error_name(uint8_t v)
{
	static const char *const tab[] = {
		[1] = "service-not-allowed",
		[2] = "service-unknown",
	};
	return lookup(tab, N_ELEM(tab), v);
}

const char *
xdlms_service_error_name(uint8_t v)
{
	static const char *const tab[] = {
		[1] = "operation-not-possible",
		[2] = "service-not-supported",
		[3] = "other-reason",
		[4] = "pdu-too-long",
		[5] = "deciphering-error",
		[6] = "invocation-counter-error",
	};
	return lookup(tab, N_ELEM(tab), v);
}

const char *
xdlms_cse_service_name(uint8_t v)
{
	static const char *const tab[] = {
		[1] = "initiateError",
		[2] = "getStatus",
		[3] = "getNameList",
		[4] = "getVariableAttribute",
		[5] = "read",
		[6] = "write",
		[7] = "getDataSetAttribute",
		[8] = "getTIAttribute",
		[9] = "changeScope",
		[10] = "start",
		[11] = "stop",
		[12] = "resume",
		[13] = "makeUsable",
		[14] = "initiateLoad",
		[15] = "loadSegment",
		[16] = "terminateLoad",
		[17] = "initiateUpLoad",
		[18] = "upLoadSegment",
		[19] = "terminateUpLoad",
	};
	return lookup(tab, N_ELEM(tab), v);
}

const char *
xdlms_cse_error_name(uint8_t v)
{
	static const char *const tab[] = {
		[0] = "application-reference",
		[1] = "hardware-resource",
		[2] = "vde-state-error",
		[3] = "service",
		[4] = "definition",
		[5] = "access",
		[6] = "initiate",
		[7] = "load-data-set",
		[9] = "task",
		[10] = "other-error",
	};
	return lookup(tab, N_ELEM(tab), v);
}

const char *
xdlms_cse_value_name(uint8_t error, uint8_t value)
{
	static const char *const application_reference[] = {
		"other", "time-elapsed", "application-unreachable",
		"application-reference-invalid", "application-context-unsupported",
		"provider-communication-error", "deciphering-error",
	};
	static const char *const hardware_resource[] = {
		"other", "memory-unavailable", "processor-resource-unavailable",
		"mass-storage-unavailable", "other-resource-unavailable",
	};
	static const char *const vde_state_error[] = {
		"other", "no-dlms-context", "loading-data-set", "status-nochange",
		"status-inoperable",
	};
	static const char *const service[] = {"other", "pdu-size", "service-unsupported"};
	static const char *const definition[] = {
		"other", "object-undefined", "object-class-inconsistent",
		"object-attribute-inconsistent",
	};
	static const char *const access[] = {
		"other", "scope-of-access-violated", "object-access-violated", "hardware-fault",
		"object-unavailable",
	};
	static const char *const initiate[] = {
		"other", "dlms-version-too-low", "incompatible-conformance", "pdu-size-too-short",
		"refused-by-the-VDE-Handler",
	};
	static const char *const load_data_set[] = {
		"other", "primitive-out-of-sequence", "not-loadable", "dataset-size-too-large",
		"not-awaited-segment", "interpretation-failure", "storage-failure",
		"data-set-not-ready",
	};
	static const char *const task[] = {
		"other", "no-remote-control", "ti-stopped", "ti-running", "ti-unusable",
	};

	switch (error) {
	case XDLMS_CSE_APPLICATION_REFERENCE:
		return lookup(application_reference, N_ELEM(application_reference), value);
	case XDLMS_CSE_HARDWARE_RESOURCE:
		return lookup(hardware_resource, N_ELEM(hardware_resource), value);
	case XDLMS_CSE_VDE_STATE_ERROR:
		return lookup(vde_state_error, N_ELEM(vde_state_error), value);
	case XDLMS_CSE_SERVICE:
		return lookup(service, N_ELEM(service), value);
	case XDLMS_CSE_DEFINITION:
		return lookup(definition, N_ELEM(definition), value);
	case XDLMS_CSE_ACCESS:
		return lookup(access, N_ELEM(access), value);
	case XDLMS_CSE_INITIATE:
		return lookup(initiate, N_ELEM(initiate), value);
	case XDLMS_CSE_LOAD_DATA_SET:
		return lookup(load_data_set, N_ELEM(load_data_set), value);
	case XDLMS_CSE_TASK:
		return lookup(task, N_ELEM(task), value);
	case XDLMS_CSE_OTHER_ERROR:
		return value == 0 ? "other" : "unknown";
	}
	return "unknown";
}
