/*
 * ctl_decode_dlms.c: `ammctl decode dlms|hdlc|wrapper HEX|-`, the field
 * engineer's view of captured DLMS bytes as JSON.
 *
 *   dlms     one APDU: xDLMS (GET/SET/ACTION, notifications, errors), ACSE
 *            (AARQ/AARE/RLRQ/RLRE with the Initiate inside) or a ciphered
 *            APDU's framing (security control, system title, counter: the
 *            keys are not ammctl's to have, so the payload stays opaque)
 *   hdlc     every frame of a capture (flags optional and shared), with
 *            addresses, control, N(S)/N(R), P/F, HCS/FCS status, SNRM/UA
 *            parameters and, once a segmented APDU is complete, the APDU
 *   wrapper  every IEC 62056-47 PDU of a capture, header and APDU
 *
 * One frame gives one JSON object, several a JSON array.  The whole
 * document is written to memory first, so bad input gives a message on
 * stderr and exit code 1, never half a document on stdout.  The field names
 * are documented in README.md.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "acse.h"
#include "axdr.h"
#include "axdr_json.h"
#include "cosem_time.h"
#include "ctl.h"
#include "dlms_security.h"
#include "hdlc.h"
#include "json.h"
#include "obis.h"
#include "wrapper.h"
#include "xdlms.h"

#define MAX_FRAMES 4096

struct decoder {
	const char *kind;
	struct json j;
	struct axdr_node *nodes;
	size_t cap;
	struct xdlms_apdu apdu;
	char err[256];
	/* HDLC reassembly of a segmented APDU */
	uint8_t *reasm;
	size_t reasm_len, reasm_cap;
	unsigned reasm_frames;
	unsigned apdu_errors; /* APDUs in good frames that did not decode */
};

/* COSEM interface classes by id, for the reader's convenience. */
static const char *
class_name(uint16_t id)
{
	switch (id) {
	case 1: return "data";
	case 3: return "register";
	case 4: return "extended_register";
	case 5: return "demand_register";
	case 6: return "register_activation";
	case 7: return "profile_generic";
	case 8: return "clock";
	case 9: return "script_table";
	case 11: return "special_days_table";
	case 15: return "association_ln";
	case 17: return "sap_assignment";
	case 18: return "image_transfer";
	case 20: return "activity_calendar";
	case 21: return "register_monitor";
	case 22: return "single_action_schedule";
	case 23: return "iec_hdlc_setup";
	case 40: return "push_setup";
	case 41: return "tcp_udp_setup";
	case 42: return "ipv4_setup";
	case 45: return "gprs_modem_setup";
	case 64: return "security_setup";
	case 70: return "disconnect_control";
	case 71: return "limiter";
	case 111: return "account";
	case 112: return "credit";
	case 113: return "charge";
	}
	return NULL;
}

static void
write_obis(struct json *j, const struct obis *o)
{
	char txt[OBIS_STRLEN];

	json_str(j, "obis", obis_format(o, txt));
	if (obis_name(o))
		json_str(j, "name", obis_name(o));
}

static void
write_desc(struct json *j, const struct xdlms_desc *d, bool method)
{
	json_uint(j, "class", d->class_id);
	if (class_name(d->class_id))
		json_str(j, "class_name", class_name(d->class_id));
	write_obis(j, &d->obis);
	json_int(j, method ? "method" : "attribute", d->id);
}

static void
write_data(struct json *j, const char *key, const struct xdlms_data *d)
{
	if (d->node)
		axdr_json_write(j, key, d->node);
	else if (d->raw)
		json_hex(j, key, d->raw, d->len);
	else
		json_null(j, key);
}

static void
write_datetime_node(struct json *j, const char *key, const struct axdr_node *n)
{
	struct cosem_datetime dt;
	char txt[64];

	if (n && (n->tag == AXDR_OCTET_STRING || n->tag == AXDR_DATE_TIME) && n->len == 12 &&
	    cosem_datetime_decode(n->ptr, &dt) == 0) {
		cosem_datetime_format(&dt, txt, sizeof txt);
		json_str(j, key, txt);
	} else if (n)
		axdr_json_write(j, key, n);
}

static void
write_capture_obj(struct json *j, const char *key, const struct xdlms_capture_obj *c)
{
	json_obj_begin(j, key);
	json_uint(j, "class", c->class_id);
	write_obis(j, &c->obis);
	json_int(j, "attribute", c->attribute);
	json_uint(j, "data_index", c->data_index);
	json_obj_end(j);
}

static void
write_access(struct json *j, const struct xdlms_access *a)
{
	struct xdlms_range r;
	struct xdlms_entry e;
	struct xdlms_capture_obj col;

	if (!a->present)
		return;
	json_obj_begin(j, "access");
	json_uint(j, "selector", a->selector);
	if (a->selector == XDLMS_ACCESS_RANGE && a->params.node &&
	    xdlms_range_from_nodes(a->params.node, &r) == 0) {
		json_str(j, "kind", "range");
		write_capture_obj(j, "restricting", &r.restricting);
		write_datetime_node(j, "from", r.from);
		write_datetime_node(j, "to", r.to);
		json_arr_begin(j, "columns");
		for (uint32_t k = 0; k < r.n_selected; k++)
			if (xdlms_capture_obj_from_node(axdr_child(r.selected, k), &col) == 0)
				write_capture_obj(j, NULL, &col);
		json_arr_end(j);
	} else if (a->selector == XDLMS_ACCESS_ENTRY && a->params.node &&
		   xdlms_entry_from_nodes(a->params.node, &e) == 0) {
		json_str(j, "kind", "entry");
		json_uint(j, "from_entry", e.from_entry);
		json_uint(j, "to_entry", e.to_entry);
		json_uint(j, "from_value", e.from_value);
		json_uint(j, "to_value", e.to_value);
	}
	write_data(j, "parameters", &a->params);
	json_obj_end(j);
}

static void
write_get_result(struct json *j, const char *key, const struct xdlms_get_result *g)
{
	if (key)
		json_obj_begin(j, key);
	if (g->is_data) {
		json_str(j, "result", "success");
		write_data(j, "data", &g->data);
	} else {
		json_str(j, "result", xdlms_dar_name(g->dar));
		json_uint(j, "dar", g->dar);
	}
	if (key)
		json_obj_end(j);
}

static void
write_action_resp(struct json *j, const struct xdlms_action_resp *a)
{
	json_str(j, "result", xdlms_action_result_name(a->result));
	json_uint(j, "result_code", a->result);
	if (a->has_return)
		write_get_result(j, "return", &a->ret);
}

static void
write_block(struct json *j, const struct xdlms_block *b, bool with_data)
{
	json_obj_begin(j, "block");
	json_uint(j, "number", b->number);
	if (with_data) {
		json_bool(j, "last", b->last != 0);
		if (b->is_dar) {
			json_str(j, "result", xdlms_dar_name(b->dar));
			json_uint(j, "dar", b->dar);
		} else {
			json_uint(j, "raw_len", b->raw_len);
			json_hex(j, "raw", b->raw, b->raw_len);
		}
	}
	json_obj_end(j);
}

static void
write_iip(struct json *j, uint8_t iip)
{
	json_uint(j, "invoke_id", xdlms_iip_invoke_id(iip));
	json_str(j, "service_class", xdlms_iip_confirmed(iip) ? "confirmed" : "unconfirmed");
	json_str(j, "priority", xdlms_iip_high(iip) ? "high" : "normal");
}

static void
write_items(struct json *j, const struct xdlms_apdu *a)
{
	uint16_t t = a->type;
	bool method = (t >> 8) == XDLMS_TAG_ACTION_REQUEST;

	json_arr_begin(j, "items");
	for (uint32_t k = 0; k < a->n_items; k++) {
		const struct xdlms_item *it = &a->items[k];
		json_obj_begin(j, NULL);
		switch (t) {
		case XDLMS_GET_REQUEST_WITH_LIST:
		case XDLMS_SET_REQUEST_WITH_LIST:
		case XDLMS_SET_REQUEST_WITH_LIST_AND_FIRST_DATABLOCK:
		case XDLMS_ACTION_REQUEST_WITH_LIST:
		case XDLMS_ACTION_REQUEST_WITH_LIST_AND_FIRST_PBLOCK:
			write_desc(j, &it->desc, method);
			if (!method)
				write_access(j, &it->access);
			if ((t == XDLMS_SET_REQUEST_WITH_LIST || t == XDLMS_ACTION_REQUEST_WITH_LIST) &&
			    k < a->n_values)
				write_data(j, method ? "parameters" : "value", &it->value);
			break;
		case XDLMS_GET_RESPONSE_WITH_LIST:
			write_get_result(j, NULL, &it->get);
			break;
		case XDLMS_ACTION_RESPONSE_WITH_LIST:
			write_action_resp(j, &it->act);
			break;
		default: /* SET-Response lists */
			json_str(j, "result", xdlms_dar_name(it->dar));
			json_uint(j, "dar", it->dar);
			break;
		}
		json_obj_end(j);
	}
	json_arr_end(j);
	/* SET/ACTION-with-list: values beyond the descriptors' count */
	if (a->n_values > a->n_items) {
		json_arr_begin(j, "extra_values");
		for (uint32_t k = a->n_items; k < a->n_values && k < XDLMS_MAX_LIST; k++)
			write_data(j, NULL, &a->items[k].value);
		json_arr_end(j);
	}
}

static void
write_xdlms(struct json *j, const struct xdlms_apdu *a)
{
	struct cosem_datetime dt;
	char txt[64];

	json_str(j, "apdu", xdlms_type_name(a->type));
	switch (a->type) {
	case XDLMS_GET_REQUEST_NORMAL:
		write_iip(j, a->iip);
		write_desc(j, &a->desc, false);
		write_access(j, &a->access);
		break;
	case XDLMS_GET_REQUEST_NEXT:
	case XDLMS_ACTION_REQUEST_NEXT_PBLOCK:
	case XDLMS_SET_RESPONSE_DATABLOCK:
	case XDLMS_ACTION_RESPONSE_NEXT_PBLOCK:
		write_iip(j, a->iip);
		write_block(j, &a->block, false);
		break;
	case XDLMS_SET_REQUEST_NORMAL:
		write_iip(j, a->iip);
		write_desc(j, &a->desc, false);
		write_access(j, &a->access);
		write_data(j, "value", &a->value);
		break;
	case XDLMS_SET_REQUEST_WITH_FIRST_DATABLOCK:
		write_iip(j, a->iip);
		write_desc(j, &a->desc, false);
		write_access(j, &a->access);
		write_block(j, &a->block, true);
		break;
	case XDLMS_ACTION_REQUEST_NORMAL:
		write_iip(j, a->iip);
		write_desc(j, &a->desc, true);
		if (a->has_value)
			write_data(j, "parameters", &a->value);
		break;
	case XDLMS_ACTION_REQUEST_WITH_FIRST_PBLOCK:
		write_iip(j, a->iip);
		write_desc(j, &a->desc, true);
		write_block(j, &a->block, true);
		break;
	case XDLMS_SET_REQUEST_WITH_DATABLOCK:
	case XDLMS_ACTION_REQUEST_WITH_PBLOCK:
	case XDLMS_GET_RESPONSE_WITH_DATABLOCK:
	case XDLMS_ACTION_RESPONSE_WITH_PBLOCK:
		write_iip(j, a->iip);
		write_block(j, &a->block, true);
		break;
	case XDLMS_GET_REQUEST_WITH_LIST:
	case XDLMS_SET_REQUEST_WITH_LIST:
	case XDLMS_ACTION_REQUEST_WITH_LIST:
	case XDLMS_GET_RESPONSE_WITH_LIST:
	case XDLMS_ACTION_RESPONSE_WITH_LIST:
	case XDLMS_SET_RESPONSE_WITH_LIST:
		write_iip(j, a->iip);
		write_items(j, a);
		break;
	case XDLMS_SET_REQUEST_WITH_LIST_AND_FIRST_DATABLOCK:
	case XDLMS_ACTION_REQUEST_WITH_LIST_AND_FIRST_PBLOCK:
		write_iip(j, a->iip);
		write_items(j, a);
		write_block(j, &a->block, true);
		break;
	case XDLMS_SET_RESPONSE_LAST_DATABLOCK_WITH_LIST:
		write_iip(j, a->iip);
		write_items(j, a);
		write_block(j, &a->block, false);
		break;
	case XDLMS_GET_RESPONSE_NORMAL:
		write_iip(j, a->iip);
		write_get_result(j, NULL, &a->get);
		break;
	case XDLMS_SET_RESPONSE_NORMAL:
		write_iip(j, a->iip);
		json_str(j, "result", xdlms_dar_name(a->dar));
		json_uint(j, "dar", a->dar);
		break;
	case XDLMS_SET_RESPONSE_LAST_DATABLOCK:
		write_iip(j, a->iip);
		json_str(j, "result", xdlms_dar_name(a->dar));
		json_uint(j, "dar", a->dar);
		write_block(j, &a->block, false);
		break;
	case XDLMS_ACTION_RESPONSE_NORMAL:
		write_iip(j, a->iip);
		write_action_resp(j, &a->act);
		break;
	case XDLMS_EVENT_NOTIFICATION_REQUEST:
		if (a->has_time && a->time_len == 12 && cosem_datetime_decode(a->time, &dt) == 0) {
			cosem_datetime_format(&dt, txt, sizeof txt);
			json_str(j, "time", txt);
		}
		write_desc(j, &a->desc, false);
		write_data(j, "value", &a->value);
		break;
	case XDLMS_DATA_NOTIFICATION:
		json_uint(j, "long_invoke_id", a->long_iip & XDLMS_LIIP_INVOKE_ID);
		json_str(j, "priority", a->long_iip & XDLMS_LIIP_HIGH ? "high" : "normal");
		json_bool(j, "confirmed", (a->long_iip & XDLMS_LIIP_CONFIRMED) != 0);
		if (a->time_len == 12 && cosem_datetime_decode(a->time, &dt) == 0) {
			cosem_datetime_format(&dt, txt, sizeof txt);
			json_str(j, "time", txt);
		} else if (a->time_len)
			json_hex(j, "time_hex", a->time, a->time_len);
		write_data(j, "body", &a->value);
		break;
	case XDLMS_EXCEPTION_RESPONSE:
		json_str(j, "state_error", xdlms_state_error_name(a->state_error));
		json_str(j, "service_error", xdlms_service_error_name(a->service_error));
		if (a->service_error == XDLMS_SERVICE_INVOCATION_COUNTER_ERROR)
			json_uint(j, "invocation_counter", a->invocation_counter);
		break;
	case XDLMS_CONFIRMED_SERVICE_ERROR:
		json_str(j, "service", xdlms_cse_service_name(a->cse_service));
		json_str(j, "error", xdlms_cse_error_name(a->cse_error));
		json_str(j, "value", xdlms_cse_value_name(a->cse_error, a->cse_value));
		break;
	}
}

static void
write_ciphered(struct json *j, const struct dlms_ciphered *c)
{
	json_str(j, "apdu", xdlms_tag_name(c->tag));
	json_bool(j, "ciphered", true);
	if (c->plain_tag)
		json_str(j, "plaintext_apdu", xdlms_tag_name(c->plain_tag));
	json_obj_begin(j, "security_control");
	char sc[8];
	snprintf(sc, sizeof sc, "0x%02x", c->sc);
	json_str(j, "hex", sc);
	json_uint(j, "suite", c->sc & DLMS_SC_SUITE_MASK);
	json_bool(j, "authentication", (c->sc & DLMS_SC_AUTH) != 0);
	json_bool(j, "encryption", (c->sc & DLMS_SC_ENC) != 0);
	json_bool(j, "broadcast_key", (c->sc & DLMS_SC_KEY_SET) != 0);
	json_bool(j, "compression", (c->sc & DLMS_SC_COMPRESS) != 0);
	json_obj_end(j);
	if (c->system_title)
		json_hex(j, "system_title", c->system_title, DLMS_SYSTEM_TITLE_LEN);
	json_uint(j, "invocation_counter", c->ic);
	json_uint(j, "payload_len", c->body_len);
	if (c->sc & DLMS_SC_AUTH && c->body_len >= DLMS_GCM_TAG_LEN)
		json_hex(j, "tag", c->body + c->body_len - DLMS_GCM_TAG_LEN, DLMS_GCM_TAG_LEN);
}

/* The 24-bit conformance block as a number and as hex, the way the Green
 * Book and meter documentation print it. */
static void
write_conformance(struct json *j, uint32_t conf)
{
	char hex[16];

	json_uint(j, "conformance", conf);
	snprintf(hex, sizeof hex, "0x%06x", conf);
	json_str(j, "conformance_hex", hex);
}

static void
write_user_info(struct json *j, const struct acse_user_info *u)
{
	const char *conf[24];
	size_t n;

	if (u->kind == ACSE_UI_NONE)
		return;
	json_obj_begin(j, "user_information");
	switch (u->kind) {
	case ACSE_UI_INITIATE_REQ:
		json_str(j, "apdu", "initiate-request");
		if (u->u.req.dedicated_key)
			json_hex(j, "dedicated_key", u->u.req.dedicated_key,
				 u->u.req.dedicated_key_len);
		json_bool(j, "response_allowed", u->u.req.response_allowed);
		if (u->u.req.proposed_qos >= 0)
			json_int(j, "proposed_qos", u->u.req.proposed_qos);
		json_uint(j, "dlms_version", u->u.req.dlms_version);
		write_conformance(j, u->u.req.conformance);
		n = acse_conformance_names(u->u.req.conformance, conf, 24);
		json_arr_begin(j, "conformance_names");
		for (size_t k = 0; k < n && k < 24; k++)
			json_str(j, NULL, conf[k]);
		json_arr_end(j);
		json_uint(j, "max_pdu", u->u.req.max_pdu);
		break;
	case ACSE_UI_INITIATE_RESP:
		json_str(j, "apdu", "initiate-response");
		if (u->u.resp.negotiated_qos >= 0)
			json_int(j, "negotiated_qos", u->u.resp.negotiated_qos);
		json_uint(j, "dlms_version", u->u.resp.dlms_version);
		write_conformance(j, u->u.resp.conformance);
		n = acse_conformance_names(u->u.resp.conformance, conf, 24);
		json_arr_begin(j, "conformance_names");
		for (size_t k = 0; k < n && k < 24; k++)
			json_str(j, NULL, conf[k]);
		json_arr_end(j);
		json_uint(j, "max_pdu", u->u.resp.max_pdu);
		json_uint(j, "vaa_name", u->u.resp.vaa_name);
		if (u->u.resp.vaa_name_truncated)
			json_bool(j, "vaa_name_truncated", true);
		break;
	case ACSE_UI_SERVICE_ERROR:
		json_str(j, "apdu", "confirmed-service-error");
		json_str(j, "service", xdlms_cse_service_name(u->u.err.choice));
		json_str(j, "error", xdlms_cse_error_name(u->u.err.service_error));
		json_str(j, "value", xdlms_cse_value_name(u->u.err.service_error, u->u.err.value));
		break;
	case ACSE_UI_CIPHERED: {
		struct dlms_ciphered c;
		if (dlms_ciphered_parse(u->ui, u->ui_len, &c) > 0)
			write_ciphered(j, &c);
		else
			json_str(j, "apdu", xdlms_tag_name(u->ui[0]));
		break;
	}
	default:
		json_str(j, "apdu", u->ui_len ? xdlms_tag_name(u->ui[0]) : "empty");
		break;
	}
	json_hex(j, "hex", u->ui, u->ui_len);
	json_obj_end(j);
}

static void
write_auth(struct json *j, bool req_present, bool auth, bool mech_present, int mech,
	   const uint8_t *value, size_t len, const char *value_key)
{
	if (req_present)
		json_bool(j, "authentication_functional_unit", auth);
	json_str(j, "mechanism", mech_present ? acse_mech_name(mech) : "none");
	if (value)
		json_hex(j, value_key, value, len);
}

/* ACSE APDUs; returns bytes consumed or a meter error. */
static ssize_t
write_acse(struct json *j, const uint8_t *p, size_t len)
{
	struct acse_aarq rq;
	struct acse_aare re;
	struct acse_release rl;
	ssize_t rc;

	switch (p[0]) {
	case ACSE_TAG_AARQ:
		if ((rc = acse_aarq_decode(p, len, &rq)) < 0)
			return rc;
		json_str(j, "apdu", "AARQ");
		json_str(j, "context", acse_context_name(rq.context));
		if (rq.calling_ap_title)
			json_hex(j, "calling_ap_title", rq.calling_ap_title,
				 rq.calling_ap_title_len);
		write_auth(j, rq.acse_requirements, rq.authentication, rq.mechanism_present,
			   rq.mechanism, rq.auth_value, rq.auth_value_len,
			   "calling_authentication_value");
		write_user_info(j, &rq.user);
		return rc;
	case ACSE_TAG_AARE:
		if ((rc = acse_aare_decode(p, len, &re)) < 0)
			return rc;
		json_str(j, "apdu", "AARE");
		json_str(j, "context", acse_context_name(re.context));
		json_str(j, "result", acse_result_name(re.result));
		json_str(j, "diagnostic_source", re.diag_source == ACSE_DIAG_SERVICE_PROVIDER
							 ? "acse-service-provider"
							 : "acse-service-user");
		if (re.diag_source == ACSE_DIAG_SERVICE_PROVIDER)
			json_uint(j, "diagnostic", re.diag);
		else
			json_str(j, "diagnostic", acse_user_diag_name(re.diag));
		if (re.responding_ap_title)
			json_hex(j, "responding_ap_title", re.responding_ap_title,
				 re.responding_ap_title_len);
		write_auth(j, re.acse_requirements, re.authentication, re.mechanism_present,
			   re.mechanism, re.auth_value, re.auth_value_len,
			   "responding_authentication_value");
		write_user_info(j, &re.user);
		return rc;
	case ACSE_TAG_RLRQ:
	case ACSE_TAG_RLRE:
		rc = p[0] == ACSE_TAG_RLRQ ? acse_rlrq_decode(p, len, &rl)
					   : acse_rlre_decode(p, len, &rl);
		if (rc < 0)
			return rc;
		json_str(j, "apdu", p[0] == ACSE_TAG_RLRQ ? "RLRQ" : "RLRE");
		if (rl.reason_present)
			json_uint(j, "reason", rl.reason);
		write_user_info(j, &rl.user);
		return rc;
	}
	return METER_EUNSUPPORTED;
}

/*
 * One APDU as an object under key.  On failure nothing sensible can be
 * written, so the caller abandons the whole document; d->err says why.
 */
static int
write_apdu(struct decoder *d, const char *key, const uint8_t *p, size_t len)
{
	struct json *j = &d->j;
	struct dlms_ciphered c;
	struct acse_user_info ui;
	ssize_t rc;
	size_t used;

	if (len == 0) {
		snprintf(d->err, sizeof d->err, "empty APDU");
		return -1;
	}
	json_obj_begin(j, key);
	if (p[0] >= ACSE_TAG_AARQ && p[0] <= ACSE_TAG_RLRE) {
		rc = write_acse(j, p, len);
	} else if (dlms_is_ciphered_tag(p[0]) &&
		   p[0] != ACSE_APDU_GLO_INITIATE_REQUEST && p[0] != ACSE_APDU_GLO_INITIATE_RESPONSE) {
		rc = dlms_ciphered_parse(p, len, &c);
		if (rc > 0)
			write_ciphered(j, &c);
	} else if (p[0] == ACSE_APDU_INITIATE_REQUEST || p[0] == ACSE_APDU_INITIATE_RESPONSE ||
		   p[0] == ACSE_APDU_GLO_INITIATE_REQUEST ||
		   p[0] == ACSE_APDU_GLO_INITIATE_RESPONSE) {
		rc = acse_user_info_decode(p, len, &ui);
		if (rc == 0) {
			write_user_info(j, &ui);
			rc = (ssize_t)len;
		}
	} else {
		memset(&d->apdu, 0, sizeof d->apdu);
		rc = xdlms_decode(p, len, &d->apdu, d->nodes, d->cap);
		if (rc > 0)
			write_xdlms(j, &d->apdu);
	}
	if (rc < 0) {
		snprintf(d->err, sizeof d->err, "APDU (tag 0x%02x, %s): %s", p[0],
			 xdlms_tag_name(p[0]), meter_strerror((int)rc));
		if (key == NULL)
			return -1;
		/* Inside a good frame: show the frame, and the APDU as bytes. */
		json_str(j, "error", d->err);
		json_hex(j, "hex", p, len);
		json_obj_end(j);
		d->apdu_errors++;
		return 0;
	}
	used = (size_t)rc;
	if (used < len) {
		json_uint(j, "trailing_bytes", len - used);
		json_hex(j, "trailing", p + used, len - used);
	}
	json_obj_end(j);
	return 0;
}

/* ---- hdlc ---------------------------------------------------------------- */

static void
write_addr(struct json *j, const char *key, const struct hdlc_addr *a)
{
	json_obj_begin(j, key);
	json_uint(j, "upper", a->upper);
	if (a->size > 1)
		json_uint(j, "lower", a->lower);
	json_uint(j, "size", a->size);
	json_obj_end(j);
}

/*
 * A frame with a wrong HCS or FCS is still worth showing: copy it, put the
 * right checksums in and parse the copy, then say which one was wrong.
 * Returns the bytes of the frame or a meter error.
 */
static ssize_t
parse_frame(const uint8_t *p, size_t len, struct hdlc_frame *f, uint8_t *copy, bool *hcs_ok,
	    bool *fcs_ok)
{
	ssize_t rc = hdlc_parse(p, len, f);
	size_t start, flen, hdr;
	struct hdlc_addr a;
	ssize_t n;

	*hcs_ok = *fcs_ok = true;
	if (rc != METER_ECHECKSUM)
		return rc;
	start = p[0] == HDLC_FLAG ? 1 : 0;
	if (len < start + 2)
		return rc;
	flen = ((size_t)(p[start] & 0x07) << 8 | p[start + 1]);
	if (flen < 7 || start + flen > len || flen > HDLC_MAX_LENGTH)
		return rc;
	memcpy(copy, p, start + flen + (start + flen < len ? 1 : 0));
	hdr = start + 2;
	for (int k = 0; k < 2; k++) {
		n = hdlc_addr_parse(p + hdr, start + flen - hdr, &a);
		if (n < 0)
			return rc;
		hdr += (size_t)n;
	}
	hdr += 1; /* control */
	if (start + flen - hdr > 2) {
		/* an information field: the HCS follows the control byte */
		uint16_t hcs = hdlc_crc16(copy + start, hdr - start);
		*hcs_ok = p[hdr] == (hcs & 0xff) && p[hdr + 1] == (hcs >> 8);
		copy[hdr] = (uint8_t)hcs;
		copy[hdr + 1] = (uint8_t)(hcs >> 8);
	}
	uint16_t fcs = hdlc_crc16(copy + start, flen - 2);
	*fcs_ok = p[start + flen - 2] == (fcs & 0xff) && p[start + flen - 1] == (fcs >> 8);
	copy[start + flen - 2] = (uint8_t)fcs;
	copy[start + flen - 1] = (uint8_t)(fcs >> 8);
	rc = hdlc_parse(copy, start + flen + (start + flen < len ? 1 : 0), f);
	if (rc < 0)
		return rc;
	/* info points into the copy, which lives as long as the frame's use */
	return rc;
}

static int
write_hdlc_frame(struct decoder *d, size_t offset, const struct hdlc_frame *f, bool hcs_ok,
		 bool fcs_ok)
{
	struct json *j = &d->j;
	struct hdlc_params prm;
	char ctl[8];
	bool response;

	json_obj_begin(j, NULL);
	json_str(j, "frame", "hdlc");
	json_uint(j, "offset", offset);
	json_str(j, "type", hdlc_type_name(f->type));
	json_uint(j, "length", f->length);
	json_bool(j, "segmented", f->segmented);
	write_addr(j, "dest", &f->dest);
	write_addr(j, "src", &f->src);
	snprintf(ctl, sizeof ctl, "0x%02x", f->control);
	json_str(j, "control", ctl);
	if (f->type == HDLC_I)
		json_uint(j, "ns", f->ns);
	if (f->type == HDLC_I || f->type == HDLC_RR || f->type == HDLC_RNR)
		json_uint(j, "nr", f->nr);
	json_bool(j, "pf", f->pf);
	json_str(j, "hcs", !f->has_hcs ? "absent" : hcs_ok ? "ok" : "bad");
	json_str(j, "fcs", fcs_ok ? "ok" : "bad");
	json_uint(j, "info_len", f->info_len);
	if (!hcs_ok || !fcs_ok) {
		json_hex(j, "info", f->info, f->info_len);
		json_obj_end(j);
		return 0;
	}
	if ((f->type == HDLC_SNRM || f->type == HDLC_UA) && f->info_len) {
		hdlc_params_default(&prm);
		if (hdlc_params_decode(f->info, f->info_len, &prm) == 0) {
			json_obj_begin(j, "params");
			json_uint(j, "max_info_tx", prm.max_info_tx);
			json_uint(j, "max_info_rx", prm.max_info_rx);
			json_uint(j, "window_tx", prm.window_tx);
			json_uint(j, "window_rx", prm.window_rx);
			json_obj_end(j);
		} else
			json_hex(j, "info", f->info, f->info_len);
	} else if ((f->type == HDLC_I || f->type == HDLC_UI) && f->info_len) {
		const uint8_t *info = f->info;
		size_t n = f->info_len;
		if (d->reasm_len == 0) {
			if (hdlc_check_llc(info, n, &response) < 0) {
				snprintf(d->err, sizeof d->err,
					 "frame at offset %zu: no LLC header (e6 e6 00 / e6 e7 00)",
					 offset);
				return -1;
			}
			json_str(j, "llc", response ? "response" : "command");
			info += HDLC_LLC_LEN;
			n -= HDLC_LLC_LEN;
		}
		if (d->reasm_len + n > d->reasm_cap) {
			size_t cap = (d->reasm_len + n) * 2;
			uint8_t *t = realloc(d->reasm, cap);
			if (!t) {
				snprintf(d->err, sizeof d->err, "out of memory");
				return -1;
			}
			d->reasm = t;
			d->reasm_cap = cap;
		}
		memcpy(d->reasm + d->reasm_len, info, n);
		d->reasm_len += n;
		d->reasm_frames++;
		if (f->segmented) {
			json_str(j, "apdu_segment", "more segments follow");
		} else {
			if (d->reasm_frames > 1)
				json_uint(j, "reassembled_from_frames", d->reasm_frames);
			if (d->reasm_len && write_apdu(d, "apdu", d->reasm, d->reasm_len) < 0)
				return -1;
			d->reasm_len = 0;
			d->reasm_frames = 0;
		}
	} else if (f->info_len)
		json_hex(j, "info", f->info, f->info_len);
	json_obj_end(j);
	return 0;
}

static int
decode_hdlc(struct decoder *d, const uint8_t *p, size_t len, unsigned *frames)
{
	uint8_t *copy = malloc(HDLC_MAX_FRAME + 1);
	size_t off = 0;
	int ret = -1;

	if (!copy) {
		snprintf(d->err, sizeof d->err, "out of memory");
		return -1;
	}
	while (off < len) {
		struct hdlc_frame f;
		bool hcs_ok, fcs_ok;
		ssize_t rc;

		/* A flag left over between frames (or doubled) is filler. */
		if (p[off] == HDLC_FLAG && off + 1 < len && p[off + 1] == HDLC_FLAG) {
			off++;
			continue;
		}
		if (p[off] == HDLC_FLAG && off + 1 == len)
			break;
		rc = parse_frame(p + off, len - off, &f, copy, &hcs_ok, &fcs_ok);
		if (rc < 0) {
			snprintf(d->err, sizeof d->err, "HDLC frame at offset %zu: %s", off,
				 rc == METER_ENEEDMORE ? "truncated" : meter_strerror((int)rc));
			goto done;
		}
		if (++*frames > MAX_FRAMES) {
			snprintf(d->err, sizeof d->err, "more than %d frames", MAX_FRAMES);
			goto done;
		}
		if (write_hdlc_frame(d, off, &f, hcs_ok, fcs_ok) < 0)
			goto done;
		off += (size_t)rc;
	}
	if (d->reasm_len) {
		snprintf(d->err, sizeof d->err,
			 "capture ends inside a segmented APDU (%u frames, %zu bytes so far)",
			 d->reasm_frames, d->reasm_len);
		goto done;
	}
	ret = 0;
done:
	free(copy);
	return ret;
}

/* ---- wrapper ------------------------------------------------------------- */

static int
decode_wrapper(struct decoder *d, const uint8_t *p, size_t len, unsigned *frames)
{
	struct json *j = &d->j;
	size_t off = 0;

	while (off < len) {
		struct wrapper_pdu w;
		ssize_t rc = wrapper_parse(p + off, len - off, 0, &w);
		if (rc < 0) {
			snprintf(d->err, sizeof d->err, "wrapper PDU at offset %zu: %s", off,
				 rc == METER_ENEEDMORE ? "truncated" : meter_strerror((int)rc));
			return -1;
		}
		if (++*frames > MAX_FRAMES) {
			snprintf(d->err, sizeof d->err, "more than %d PDUs", MAX_FRAMES);
			return -1;
		}
		json_obj_begin(j, NULL);
		json_str(j, "frame", "wrapper");
		json_uint(j, "offset", off);
		json_uint(j, "version", w.version);
		json_uint(j, "src_wport", w.src_wport);
		json_uint(j, "dst_wport", w.dst_wport);
		json_uint(j, "length", w.length);
		if (w.length && write_apdu(d, "apdu", w.apdu, w.length) < 0)
			return -1;
		json_obj_end(j);
		off += (size_t)rc;
	}
	return 0;
}

/*
 * Decode the whole input into a memory document.  Returns 0 with *doc set
 * (caller frees), or -1 with d->err set.
 */
static int
decode_all(struct decoder *d, const uint8_t *bytes, size_t len, bool as_array, unsigned *frames,
	   char **doc)
{
	size_t doclen = 0;
	FILE *mem = open_memstream(doc, &doclen);
	int rc;

	*frames = 0;
	d->apdu_errors = 0;
	d->reasm_len = 0;
	d->reasm_frames = 0;
	if (mem == NULL) {
		snprintf(d->err, sizeof d->err, "out of memory");
		return -1;
	}
	json_init(&d->j, mem, true);
	if (strcmp(d->kind, "dlms") == 0) {
		rc = write_apdu(d, NULL, bytes, len);
	} else {
		if (as_array)
			json_arr_begin(&d->j, NULL);
		rc = strcmp(d->kind, "hdlc") == 0 ? decode_hdlc(d, bytes, len, frames)
						  : decode_wrapper(d, bytes, len, frames);
		if (as_array)
			json_arr_end(&d->j);
		if (rc == 0 && *frames == 0) {
			snprintf(d->err, sizeof d->err, "no frame in the input");
			rc = -1;
		}
	}
	json_end(&d->j);
	fclose(mem);
	if (rc < 0) {
		free(*doc);
		*doc = NULL;
	}
	return rc;
}

int
ctl_decode_dlms(const char *kind, int argc, char **argv)
{
	struct decoder d;
	char *doc = NULL;
	uint8_t *bytes;
	size_t len;
	unsigned frames = 0;
	int rc = -1;

	if (argc != 1) {
		fprintf(stderr, "usage: ammctl decode %s HEX|-\n", kind);
		return 2;
	}
	memset(&d, 0, sizeof d);
	d.kind = kind;
	bytes = ctl_read_hex(argv[0], &len, d.err, sizeof d.err);
	if (bytes == NULL) {
		fprintf(stderr, "ammctl decode %s: %s\n", kind, d.err);
		return 1;
	}
	/* Every node takes at least one input byte. */
	d.cap = len + 1;
	d.nodes = calloc(d.cap, sizeof *d.nodes);
	if (d.nodes == NULL)
		snprintf(d.err, sizeof d.err, "out of memory");
	else
		rc = decode_all(&d, bytes, len, true, &frames, &doc);
	/* A capture of one frame reads better as the frame's object alone. */
	if (rc == 0 && frames == 1 && strcmp(kind, "dlms") != 0) {
		free(doc);
		rc = decode_all(&d, bytes, len, false, &frames, &doc);
	}
	if (rc == 0) {
		fputs(doc, stdout);
		fflush(stdout);
		if (d.apdu_errors) {
			fprintf(stderr, "ammctl decode %s: %u APDU(s) did not decode; last: %s\n",
				kind, d.apdu_errors, d.err);
			rc = -1;
		}
	} else
		fprintf(stderr, "ammctl decode %s: %s\n", kind, d.err);
	free(doc);
	free(d.nodes);
	free(d.reasm);
	free(bytes);
	return rc == 0 ? 0 : 1;
}
