/*
 * dlms_client.c: the client session engine.  One state machine carries a
 * head-end's whole conversation with a meter: link set-up, AARQ/AARE,
 * HLS-GMAC pass 3/4, one request at a time (GET lists split the way the
 * server's conformance allows, block transfers followed to the end), and
 * release.  Received APDUs are deciphered into the caller's work buffer,
 * decoded without a node array (values are handed back as raw A-XDR), and
 * answered in the same poll; what the caller must see is returned as one
 * event per poll, and anything the engine must do after an event (the next
 * GET of a list, DONE) is deferred to the next poll so the event's
 * pointers stay valid until then.
 */
#include <string.h>

#include <openssl/rand.h>

#include "dlms_client.h"
#include "meter_error.h"

#define DEFAULT_TIMEOUT_MS 10000
#define DEFAULT_MAX_LIST   10
/* glo tag, length (up to 3), SC, IC and the 12-byte tag around a plaintext */
#define CIPHER_OVERHEAD DLMS_CIPHER_OVERHEAD
#define DEFAULT_CONFORMANCE                                                                        \
	(ACSE_CONF_BLOCK_TRANSFER_WITH_GET | ACSE_CONF_BLOCK_TRANSFER_WITH_SET |                   \
	 ACSE_CONF_BLOCK_TRANSFER_WITH_ACTION | ACSE_CONF_MULTIPLE_REFERENCES |                    \
	 ACSE_CONF_DATA_NOTIFICATION | ACSE_CONF_GET | ACSE_CONF_SET |                             \
	 ACSE_CONF_SELECTIVE_ACCESS | ACSE_CONF_ACTION)

static const struct obis ASSOCIATION_LN = {{0, 0, 40, 0, 0, 255}};

const char *
dlms_client_state_name(int state)
{
	switch (state) {
	case DLMS_CLIENT_IDLE:
		return "idle";
	case DLMS_CLIENT_CONNECTING:
		return "connecting";
	case DLMS_CLIENT_ASSOCIATING:
		return "associating";
	case DLMS_CLIENT_AUTHENTICATING:
		return "authenticating";
	case DLMS_CLIENT_READY:
		return "ready";
	case DLMS_CLIENT_BUSY:
		return "busy";
	case DLMS_CLIENT_RELEASING:
		return "releasing";
	case DLMS_CLIENT_DISCONNECTING:
		return "disconnecting";
	case DLMS_CLIENT_CLOSED:
		return "closed";
	default:
		return "?";
	}
}

const char *
dlms_client_event_name(int type)
{
	switch (type) {
	case DLMS_CEV_NONE:
		return "none";
	case DLMS_CEV_ASSOCIATED:
		return "associated";
	case DLMS_CEV_RESULT:
		return "result";
	case DLMS_CEV_DONE:
		return "done";
	case DLMS_CEV_NOTIFICATION:
		return "notification";
	case DLMS_CEV_RELEASED:
		return "released";
	case DLMS_CEV_FAILED:
		return "failed";
	default:
		return "?";
	}
}

/* ---- small helpers ------------------------------------------------------ */

static void
timer_arm(struct dlms_client *c)
{
	c->timer_ms = c->timeout_ms;
	c->timer_gen++;
}

static void
timer_stop(struct dlms_client *c)
{
	if (c->timer_ms) {
		c->timer_ms = 0;
		c->timer_gen++;
	}
}

static uint8_t
cur_iip(const struct dlms_client *c)
{
	return xdlms_iip(c->invoke_id, true, c->high_priority);
}

/* Largest plaintext request the server takes (and our buffers hold). */
size_t
dlms_plain_max(const struct dlms_buffers *b, uint32_t peer_max_pdu, bool ciphered)
{
	size_t m = peer_max_pdu ? peer_max_pdu : 65535;

	if (ciphered) {
		m = m > DLMS_CIPHER_OVERHEAD ? m - DLMS_CIPHER_OVERHEAD : 0;
		if (m > b->work_cap)
			m = b->work_cap;
		if (m + DLMS_CIPHER_OVERHEAD > b->tx_cap)
			m = b->tx_cap > DLMS_CIPHER_OVERHEAD ? b->tx_cap - DLMS_CIPHER_OVERHEAD : 0;
	} else if (m > b->tx_cap) {
		m = b->tx_cap;
	}
	return m;
}

void
dlms_plain_begin(const struct dlms_buffers *b, bool ciphered, struct mbuf *m)
{
	if (ciphered)
		mbuf_init(m, b->work, b->work_cap);
	else
		mbuf_init(m, b->tx, b->tx_cap);
}

static size_t
plain_max(const struct dlms_client *c)
{
	return dlms_plain_max(&c->buf, c->server_max_pdu, c->ciphering);
}

static void
plain_begin(struct dlms_client *c, struct mbuf *m)
{
	dlms_plain_begin(&c->buf, c->ciphering, m);
}

/* Cipher (when the context says so) and hand to the link; arms the timer. */
static int
plain_send(struct dlms_client *c, struct mbuf *m, struct mbuf *out)
{
	const uint8_t *apdu = m->p;
	size_t len = m->len;
	int r;

	if (m->err)
		return m->err;
	if (len > plain_max(c))
		return METER_ENOSPC;
	if (c->ciphering) {
		struct mbuf t;

		mbuf_init(&t, c->buf.tx, c->buf.tx_cap);
		r = dlms_protect(&t, DLMS_CIPHER_GLO, c->sc, &c->keys, c->system_title,
		                 c->tx_counter, m->p, m->len);
		if (r)
			return r;
		c->tx_counter++;
		apdu = t.p;
		len = t.len;
	}
	r = dlms_link_send(&c->link, apdu, len, out);
	if (r == 0)
		timer_arm(c);
	return r;
}

static void
req_reset(struct dlms_client *c)
{
	c->op = DLMS_OP_NONE;
	c->items = NULL;
	c->n_items = c->next_item = c->batch = c->delivered = 0;
	c->with_list = false;
	c->access = NULL;
	c->value = NULL;
	c->value_len = c->value_off = 0;
	c->block = 0;
	c->data_len = 0;
	c->in_blocks = false;
	c->fail_err = 0;
	c->pending_done = c->pending_send = false;
	c->list_p = NULL;
	c->list_len = 0;
	c->list_left = 0;
	memset(c->exc, 0, sizeof(c->exc));
}

/* The request failed as a whole: its undelivered items get err, then DONE. */
static void
req_fail(struct dlms_client *c, int err)
{
	timer_stop(c);
	c->fail_err = err;
	c->list_left = 0;
	c->pending_send = false;
	c->pending_done = false;
	c->in_blocks = false;
}

/* The session is over: report FAILED once, drop everything. */
static int
session_fail(struct dlms_client *c, struct dlms_client_event *ev, int err)
{
	timer_stop(c);
	req_reset(c);
	c->state = DLMS_CLIENT_CLOSED;
	ev->type = DLMS_CEV_FAILED;
	ev->err = err;
	return ev->type;
}

/* ---- init, open, association ------------------------------------------- */

int
dlms_client_init(struct dlms_client *c, const struct dlms_client_config *cfg)
{
	struct dlms_link_config lc;
	size_t pdu;
	int r;

	if (cfg == NULL)
		return METER_EINVAL;
	memset(c, 0, sizeof(*c));
	if (cfg->buf.rx == NULL || cfg->buf.tx == NULL || cfg->buf.data == NULL ||
	    cfg->buf.rx_cap < 64 || cfg->buf.tx_cap < 64)
		return METER_EINVAL;
	if (cfg->ciphering && (cfg->buf.work == NULL || cfg->buf.work_cap < 64))
		return METER_EINVAL;
	switch (cfg->mechanism) {
	case ACSE_MECH_NONE:
		break;
	case ACSE_MECH_LLS:
		if (cfg->password == NULL && cfg->password_len)
			return METER_EINVAL;
		break;
	case ACSE_MECH_HLS_GMAC:
		if (cfg->challenge && (cfg->challenge_len < 8 || cfg->challenge_len > 64))
			return METER_EINVAL;
		break;
	default:
		return METER_EINVAL;
	}
	if (cfg->security & ~(DLMS_SC_AUTH | DLMS_SC_ENC))
		return METER_EINVAL;

	c->mechanism = cfg->mechanism;
	c->password = cfg->password;
	c->password_len = cfg->password_len;
	c->challenge = cfg->challenge;
	c->challenge_len = cfg->challenge_len;
	c->ciphering = cfg->ciphering;
	c->sc = cfg->security ? cfg->security : DLMS_SC_AUTH | DLMS_SC_ENC;
	c->keys = cfg->keys;
	memcpy(c->system_title, cfg->system_title, DLMS_SYSTEM_TITLE_LEN);
	c->tx_counter = cfg->tx_counter;
	c->rx_counter = cfg->rx_counter;
	c->proposed_conformance = cfg->conformance ? cfg->conformance : DEFAULT_CONFORMANCE;
	c->max_list = cfg->max_list ? cfg->max_list : DEFAULT_MAX_LIST;
	if (c->max_list > XDLMS_MAX_LIST)
		c->max_list = XDLMS_MAX_LIST;
	c->high_priority = cfg->high_priority;
	c->timeout_ms = cfg->timeout_ms ? cfg->timeout_ms : DEFAULT_TIMEOUT_MS;
	c->buf = cfg->buf;

	/* What we can take in: the link buffer less a wrapper header, and
	 * the work buffer the plaintext lands in. */
	pdu = cfg->buf.rx_cap - WRAPPER_HEADER_LEN;
	if (c->ciphering && pdu > cfg->buf.work_cap)
		pdu = cfg->buf.work_cap;
	if (cfg->max_pdu && cfg->max_pdu < pdu)
		pdu = cfg->max_pdu;
	c->max_pdu_rx = pdu > 65535 ? 65535 : (uint16_t)pdu;

	memset(&lc, 0, sizeof(lc));
	lc.framing = cfg->framing;
	lc.server = false;
	lc.local_wport = cfg->client_wport;
	lc.remote_wport = cfg->server_wport;
	lc.hdlc_local = cfg->hdlc_client;
	lc.hdlc_remote = cfg->hdlc_server;
	lc.hdlc_params = cfg->hdlc_params;
	lc.rxbuf = cfg->buf.rx;
	lc.rxcap = cfg->buf.rx_cap;
	r = dlms_link_init(&c->link, &lc);
	if (r)
		return r;
	c->state = DLMS_CLIENT_IDLE;
	return 0;
}

static int
send_aarq(struct dlms_client *c, struct mbuf *out)
{
	struct acse_initiate_req ir = {
	    .response_allowed = true,
	    .proposed_qos = -1,
	    .dlms_version = ACSE_DLMS_VERSION,
	    .conformance = c->proposed_conformance,
	    .max_pdu = c->max_pdu_rx,
	};
	uint8_t ini[32], cini[64];
	struct mbuf m, t;
	struct acse_aarq a;
	int r;

	mbuf_init(&m, ini, sizeof(ini));
	r = acse_initiate_req_encode(&m, &ir);
	if (r)
		return r;
	memset(&a, 0, sizeof(a));
	a.context = c->ciphering ? ACSE_CTX_LN_CIPHER : ACSE_CTX_LN;
	if (c->ciphering) {
		mbuf_init(&t, cini, sizeof(cini));
		r = dlms_protect(&t, DLMS_CIPHER_GLO, c->sc, &c->keys, c->system_title,
		                 c->tx_counter, m.p, m.len);
		if (r)
			return r;
		c->tx_counter++;
		a.user.ui = t.p;
		a.user.ui_len = t.len;
	} else {
		a.user.ui = m.p;
		a.user.ui_len = m.len;
	}
	if (c->ciphering || c->mechanism == ACSE_MECH_HLS_GMAC) {
		a.calling_ap_title = c->system_title;
		a.calling_ap_title_len = DLMS_SYSTEM_TITLE_LEN;
	}
	a.mechanism = c->mechanism;
	if (c->mechanism != ACSE_MECH_NONE) {
		a.acse_requirements = true;
		a.authentication = true;
		a.mechanism_present = true;
	}
	if (c->mechanism == ACSE_MECH_LLS) {
		a.auth_value = c->password;
		a.auth_value_len = c->password_len;
	} else if (c->mechanism == ACSE_MECH_HLS_GMAC) {
		if (c->challenge) {
			memcpy(c->ctos, c->challenge, c->challenge_len);
			c->ctos_len = (uint8_t)c->challenge_len;
		} else {
			if (RAND_bytes(c->ctos, 16) != 1)
				return METER_ECRYPTO;
			c->ctos_len = 16;
		}
		a.auth_value = c->ctos;
		a.auth_value_len = c->ctos_len;
	}
	mbuf_init(&m, c->buf.tx, c->buf.tx_cap);
	r = acse_aarq_encode(&m, &a);
	if (r)
		return r;
	r = dlms_link_send(&c->link, m.p, m.len, out);
	if (r)
		return r;
	c->state = DLMS_CLIENT_ASSOCIATING;
	timer_arm(c);
	return 0;
}

int
dlms_client_open(struct dlms_client *c, struct mbuf *out)
{
	int r;

	if (c->state != DLMS_CLIENT_IDLE)
		return METER_ESTATE;
	r = dlms_link_connect(&c->link, out);
	if (r)
		return r;
	c->state = DLMS_CLIENT_CONNECTING;
	timer_arm(c);
	return 0;
}

/* HLS-GMAC pass 3: reply_to_HLS_authentication(f(StoC)). */
static int
send_pass3(struct dlms_client *c, struct mbuf *out, const uint8_t *stoc, size_t len)
{
	uint8_t f[DLMS_HLS_GMAC_LEN], param[2 + DLMS_HLS_GMAC_LEN];
	struct xdlms_desc m = {15, ASSOCIATION_LN, 1};
	struct xdlms_data d;
	struct mbuf b;
	ssize_t n;
	int r;

	r = dlms_hls_gmac(f, DLMS_SC_AUTH, &c->keys, c->system_title, c->tx_counter, stoc, len);
	if (r)
		return r;
	c->tx_counter++;
	param[0] = AXDR_OCTET_STRING;
	param[1] = DLMS_HLS_GMAC_LEN;
	memcpy(param + 2, f, DLMS_HLS_GMAC_LEN);
	d = xdlms_data_raw(param, sizeof(param));
	c->invoke_id = (c->invoke_id + 1) & XDLMS_IIP_INVOKE_ID;
	plain_begin(c, &b);
	n = xdlms_put_action_request(&b, cur_iip(c), &m, &d);
	if (n < 0)
		return (int)n;
	return plain_send(c, &b, out);
}

/* Turn a received xDLMS APDU into plaintext (in the work buffer if ciphered). */
static int
unprotect(struct dlms_client *c, const uint8_t *apdu, size_t len, const uint8_t **plain,
          size_t *plen)
{
	struct dlms_ciphered ci;
	struct mbuf m;
	ssize_t n;
	int r;

	if (!dlms_is_ciphered_tag(apdu[0])) {
		/* In a ciphered context only error reports may come in clear. */
		if (c->ciphering && apdu[0] != XDLMS_TAG_EXCEPTION_RESPONSE &&
		    apdu[0] != XDLMS_TAG_CONFIRMED_SERVICE_ERROR)
			return METER_EAUTH;
		*plain = apdu;
		*plen = len;
		return 0;
	}
	if (!c->ciphering)
		return METER_EPROTO;
	n = dlms_ciphered_parse(apdu, len, &ci);
	if (n < 0)
		return n == METER_ENEEDMORE ? METER_EMALFORMED : (int)n;
	mbuf_init(&m, c->buf.work, c->buf.work_cap);
	r = dlms_unprotect(&m, &ci, &c->keys, c->have_server_title ? c->server_title : NULL, c->sc,
	                   &c->rx_counter);
	if (r)
		return r;
	if (m.len == 0)
		return METER_EMALFORMED;
	*plain = m.p;
	*plen = m.len;
	return 0;
}

static int
handle_aare(struct dlms_client *c, struct mbuf *out, const uint8_t *apdu, size_t len,
            struct dlms_client_event *ev)
{
	struct acse_aare a;
	struct acse_initiate_resp ir;
	ssize_t n;
	int r;

	n = acse_aare_decode(apdu, len, &a);
	if (n < 0)
		return session_fail(c, ev, n == METER_ENEEDMORE ? METER_EMALFORMED : (int)n);
	if (a.result != ACSE_ACCEPTED) {
		session_fail(c, ev, METER_EREJECTED);
		ev->result = (uint8_t)a.result;
		ev->diag_source = (uint8_t)a.diag_source;
		ev->diag = a.diag;
		if (a.user.kind == ACSE_UI_SERVICE_ERROR) {
			ev->cse_service = a.user.u.err.choice;
			ev->cse_error = a.user.u.err.service_error;
			ev->cse_value = a.user.u.err.value;
		}
		return ev->type;
	}
	if (a.responding_ap_title && a.responding_ap_title_len == DLMS_SYSTEM_TITLE_LEN) {
		memcpy(c->server_title, a.responding_ap_title, DLMS_SYSTEM_TITLE_LEN);
		c->have_server_title = true;
	}
	if (c->ciphering) {
		const uint8_t *plain;
		size_t plen;

		if (a.user.kind != ACSE_UI_CIPHERED || !c->have_server_title)
			return session_fail(c, ev, METER_EAUTH);
		r = unprotect(c, a.user.ui, a.user.ui_len, &plain, &plen);
		if (r)
			return session_fail(c, ev, r);
		r = acse_initiate_resp_decode(plain, plen, &ir);
		if (r)
			return session_fail(c, ev, r == METER_ENEEDMORE ? METER_EMALFORMED : r);
	} else {
		if (a.user.kind != ACSE_UI_INITIATE_RESP)
			return session_fail(c, ev, METER_EPROTO);
		ir = a.user.u.resp;
	}
	c->conformance = ir.conformance & c->proposed_conformance;
	c->server_max_pdu = ir.max_pdu;

	if (c->mechanism == ACSE_MECH_HLS_GMAC) {
		if (!c->have_server_title || a.auth_value == NULL || a.auth_value_len < 8 ||
		    a.auth_value_len > 64)
			return session_fail(c, ev, METER_EAUTH);
		r = send_pass3(c, out, a.auth_value, a.auth_value_len);
		if (r)
			return session_fail(c, ev, r);
		c->state = DLMS_CLIENT_AUTHENTICATING;
		return DLMS_CEV_NONE;
	}
	timer_stop(c);
	c->state = DLMS_CLIENT_READY;
	ev->type = DLMS_CEV_ASSOCIATED;
	return ev->type;
}

static int
handle_pass4(struct dlms_client *c, const struct xdlms_apdu *a, struct dlms_client_event *ev)
{
	const uint8_t *f;
	int r;

	if (a->type != XDLMS_ACTION_RESPONSE_NORMAL || xdlms_iip_invoke_id(a->iip) != c->invoke_id)
		return session_fail(c, ev, METER_EPROTO);
	if (a->act.result != XDLMS_AR_SUCCESS || !a->act.has_return || !a->act.ret.is_data)
		return session_fail(c, ev, METER_EAUTH);
	f = a->act.ret.data.raw;
	if (a->act.ret.data.len != 2 + DLMS_HLS_GMAC_LEN || f[0] != AXDR_OCTET_STRING ||
	    f[1] != DLMS_HLS_GMAC_LEN)
		return session_fail(c, ev, METER_EAUTH);
	r = dlms_hls_gmac_check(f + 2, DLMS_HLS_GMAC_LEN, &c->keys, c->server_title, c->ctos,
	                        c->ctos_len, NULL);
	if (r)
		return session_fail(c, ev, r);
	timer_stop(c);
	c->state = DLMS_CLIENT_READY;
	ev->type = DLMS_CEV_ASSOCIATED;
	return ev->type;
}

/* ---- requests ------------------------------------------------------------- */

static int
req_begin(struct dlms_client *c, int op)
{
	if (c->state != DLMS_CLIENT_READY || c->op != DLMS_OP_NONE)
		return METER_ESTATE;
	if (dlms_link_tx_busy(&c->link))
		return METER_ESTATE;
	req_reset(c);
	c->op = op;
	c->invoke_id = (c->invoke_id + 1) & XDLMS_IIP_INVOKE_ID;
	return 0;
}

static void
req_abandon(struct dlms_client *c)
{
	req_reset(c);
	timer_stop(c);
	c->state = DLMS_CLIENT_READY;
}

/* Send the next GET: a with-list batch or one GET-normal. */
static int
send_next_get(struct dlms_client *c, struct mbuf *out)
{
	uint32_t left = c->n_items - c->next_item;
	struct mbuf b;
	ssize_t n;

	c->block = 1;
	c->data_len = 0;
	c->in_blocks = false;
	if (left > 1 && (c->conformance & ACSE_CONF_MULTIPLE_REFERENCES)) {
		static const struct xdlms_access none;
		struct xdlms_apdu a;
		uint32_t k = left < c->max_list ? left : c->max_list;

		/* Shrink the batch until it fits the server's PDU size. */
		for (; k > 1; k = k / 2) {
			memset(&a, 0, sizeof(a));
			a.type = XDLMS_GET_REQUEST_WITH_LIST;
			a.iip = cur_iip(c);
			a.n_items = k;
			for (uint32_t i = 0; i < k; i++) {
				const struct dlms_get_item *it = &c->items[c->next_item + i];
				a.items[i].desc = it->desc;
				a.items[i].access = it->access ? *it->access : none;
			}
			plain_begin(c, &b);
			n = xdlms_encode(&a, &b);
			if (n > 0 && (size_t)n <= plain_max(c))
				break;
		}
		if (k > 1) {
			c->batch = k;
			c->with_list = true;
			c->next_item += k;
			return plain_send(c, &b, out);
		}
	}
	plain_begin(c, &b);
	n = xdlms_put_get_request(&b, cur_iip(c), &c->items[c->next_item].desc,
	                          c->items[c->next_item].access);
	if (n < 0)
		return (int)n;
	c->batch = 1;
	c->with_list = false;
	c->next_item++;
	return plain_send(c, &b, out);
}

int
dlms_client_get(struct dlms_client *c, struct mbuf *out, const struct dlms_get_item *items,
                uint32_t n)
{
	int r;

	if (items == NULL || n == 0)
		return METER_EINVAL;
	r = req_begin(c, DLMS_OP_GET);
	if (r)
		return r;
	c->items = items;
	c->n_items = n;
	r = send_next_get(c, out);
	if (r) {
		req_abandon(c);
		return r;
	}
	c->state = DLMS_CLIENT_BUSY;
	return 0;
}

/* Size of a block APDU's fixed part: encode it with no data. */
static size_t
block_header(struct dlms_client *c, struct xdlms_apdu *a)
{
	struct mbuf b;
	struct xdlms_block keep = a->block;
	ssize_t n;

	a->block.raw = NULL;
	a->block.raw_len = 0;
	plain_begin(c, &b);
	n = xdlms_encode(a, &b);
	a->block = keep;
	return n > 0 ? (size_t)n - 1 : 0; /* less the empty length byte */
}

/* Send the next SET/ACTION block from value[value_off..]. */
static int
send_value_block(struct dlms_client *c, struct mbuf *out, bool first)
{
	struct xdlms_apdu a;
	size_t room, chunk;
	struct mbuf b;
	ssize_t n;

	memset(&a, 0, sizeof(a));
	a.iip = cur_iip(c);
	if (c->op == DLMS_OP_SET)
		a.type = first ? XDLMS_SET_REQUEST_WITH_FIRST_DATABLOCK
		               : XDLMS_SET_REQUEST_WITH_DATABLOCK;
	else
		a.type = first ? XDLMS_ACTION_REQUEST_WITH_FIRST_PBLOCK
		               : XDLMS_ACTION_REQUEST_WITH_PBLOCK;
	a.desc = c->desc;
	if (c->access)
		a.access = *c->access;
	a.block.number = c->block;
	room = xdlms_block_room(plain_max(c), block_header(c, &a));
	if (room == 0)
		return METER_ENOSPC;
	chunk = c->value_len - c->value_off;
	if (chunk > room)
		chunk = room;
	a.block.raw = c->value + c->value_off;
	a.block.raw_len = (uint32_t)chunk;
	a.block.last = c->value_off + chunk == c->value_len;
	plain_begin(c, &b);
	n = xdlms_encode(&a, &b);
	if (n < 0)
		return (int)n;
	c->value_off += chunk;
	c->in_blocks = true;
	return plain_send(c, &b, out);
}

static int
start_value_op(struct dlms_client *c, struct mbuf *out, int op, const struct xdlms_desc *d,
               const struct xdlms_access *access, const uint8_t *value, size_t len)
{
	struct xdlms_data v = xdlms_data_raw(value, (uint32_t)len);
	uint32_t conf_bit;
	struct mbuf b;
	ssize_t n;
	int r;

	if (d == NULL || (op == DLMS_OP_SET && (value == NULL || len == 0)) || len > UINT32_MAX ||
	    (value == NULL && len))
		return METER_EINVAL;
	r = req_begin(c, op);
	if (r)
		return r;
	c->n_items = 1;
	c->desc = *d;
	c->access = access;
	c->value = value;
	c->value_len = len;
	c->block = 1;
	plain_begin(c, &b);
	if (op == DLMS_OP_SET)
		n = xdlms_put_set_request(&b, cur_iip(c), d, access, &v);
	else
		n = xdlms_put_action_request(&b, cur_iip(c), d, value ? &v : NULL);
	if (n > 0 && (size_t)n <= plain_max(c)) {
		r = plain_send(c, &b, out);
	} else {
		conf_bit = op == DLMS_OP_SET ? ACSE_CONF_BLOCK_TRANSFER_WITH_SET
		                             : ACSE_CONF_BLOCK_TRANSFER_WITH_ACTION;
		r = (c->conformance & conf_bit) && value ? send_value_block(c, out, true)
		                                         : METER_ENOSPC;
	}
	if (r) {
		req_abandon(c);
		return r;
	}
	c->next_item = 1;
	c->batch = 1;
	c->state = DLMS_CLIENT_BUSY;
	return 0;
}

int
dlms_client_set(struct dlms_client *c, struct mbuf *out, const struct xdlms_desc *d,
                const struct xdlms_access *access, const uint8_t *value, size_t len)
{
	return start_value_op(c, out, DLMS_OP_SET, d, access, value, len);
}

int
dlms_client_action(struct dlms_client *c, struct mbuf *out, const struct xdlms_desc *m,
                   const uint8_t *params, size_t len)
{
	return start_value_op(c, out, DLMS_OP_ACTION, m, NULL, params, len);
}

int
dlms_client_release(struct dlms_client *c, struct mbuf *out)
{
	struct acse_release rq;
	struct mbuf m;
	int r;

	switch (c->state) {
	case DLMS_CLIENT_READY:
	case DLMS_CLIENT_BUSY:
	case DLMS_CLIENT_AUTHENTICATING:
		if (dlms_link_tx_busy(&c->link))
			break; /* cannot speak now: just take the link down */
		req_reset(c);
		memset(&rq, 0, sizeof(rq));
		rq.reason_present = true;
		rq.reason = ACSE_RELEASE_NORMAL;
		mbuf_init(&m, c->buf.tx, c->buf.tx_cap);
		r = acse_rlrq_encode(&m, &rq);
		if (r)
			return r;
		r = dlms_link_send(&c->link, m.p, m.len, out);
		if (r)
			return r;
		c->state = DLMS_CLIENT_RELEASING;
		timer_arm(c);
		return 0;
	case DLMS_CLIENT_CONNECTING:
	case DLMS_CLIENT_ASSOCIATING:
	case DLMS_CLIENT_RELEASING:
		break;
	default:
		return METER_ESTATE;
	}
	req_reset(c);
	if (c->link.ops == &dlms_link_hdlc_ops && c->link.u.hl.state != HDLC_LINK_DISCONNECTED) {
		r = dlms_link_disconnect(&c->link, out);
		if (r == 0) {
			c->state = DLMS_CLIENT_DISCONNECTING;
			timer_arm(c);
			return 0;
		}
	}
	timer_stop(c);
	c->state = DLMS_CLIENT_CLOSED;
	c->pending = (struct dlms_client_event){.type = DLMS_CEV_RELEASED};
	c->has_pending = true;
	return 0;
}

void
dlms_client_abort(struct dlms_client *c)
{
	req_reset(c);
	timer_stop(c);
	c->has_pending = false;
	c->state = DLMS_CLIENT_CLOSED;
}

/* After RLRE (or a release timeout): take the link down. */
static int
release_link(struct dlms_client *c, struct mbuf *out, struct dlms_client_event *ev, int err)
{
	if (c->link.ops == &dlms_link_hdlc_ops && c->link.u.hl.state == HDLC_LINK_CONNECTED &&
	    err == 0 && dlms_link_disconnect(&c->link, out) == 0) {
		c->state = DLMS_CLIENT_DISCONNECTING;
		timer_arm(c);
		return DLMS_CEV_NONE;
	}
	timer_stop(c);
	c->state = DLMS_CLIENT_CLOSED;
	ev->type = DLMS_CEV_RELEASED;
	ev->err = err;
	return ev->type;
}

/* ---- responses ------------------------------------------------------------ */

static void
result_event(struct dlms_client *c, struct dlms_client_event *ev, int err, uint8_t dar,
             const uint8_t *data, size_t len)
{
	ev->type = DLMS_CEV_RESULT;
	ev->index = c->delivered++;
	ev->err = err;
	ev->dar = dar;
	ev->data = data;
	ev->data_len = len;
}

/* What follows the last RESULT of a batch: the next GET or DONE. */
static void
after_batch(struct dlms_client *c)
{
	if (c->op == DLMS_OP_GET && c->next_item < c->n_items)
		c->pending_send = true;
	else
		c->pending_done = true;
}

/* Deliver one Get-Data-Result of a with-list answer (in buf.data). */
static int
next_list_result(struct dlms_client *c, struct dlms_client_event *ev)
{
	const uint8_t *p = c->list_p;
	size_t left = c->list_len;
	ssize_t n;

	if (left >= 1 && p[0] == 0) {
		n = axdr_skip(p + 1, left - 1);
		if (n > 0) {
			c->list_p += 1 + n;
			c->list_len -= 1 + (size_t)n;
			c->list_left--;
			result_event(c, ev, 0, 0, p + 1, (size_t)n);
			goto out;
		}
	} else if (left >= 2 && p[0] == 1) {
		c->list_p += 2;
		c->list_len -= 2;
		c->list_left--;
		result_event(c, ev, p[1] ? METER_EACCESS : 0, p[1], NULL, 0);
		goto out;
	}
	req_fail(c, METER_EMALFORMED);
	return DLMS_CEV_NONE;
out:
	if (c->list_left == 0)
		after_batch(c);
	return ev->type;
}

/* A with-list answer's SEQUENCE OF Get-Data-Result is in buf.data. */
static int
start_list(struct dlms_client *c, struct dlms_client_event *ev)
{
	uint32_t count;
	ssize_t n = axdr_decode_length(c->buf.data, c->data_len, &count);

	if (n < 0 || count != c->batch) {
		req_fail(c, METER_EPROTO);
		return DLMS_CEV_NONE;
	}
	c->list_p = c->buf.data + n;
	c->list_len = c->data_len - (size_t)n;
	c->list_left = count;
	timer_stop(c);
	return next_list_result(c, ev);
}

static int
on_get_response(struct dlms_client *c, struct mbuf *out, const struct xdlms_apdu *a,
                const uint8_t *plain, size_t plen, struct dlms_client_event *ev)
{
	bool last;
	ssize_t n;
	int r;

	switch (a->type) {
	case XDLMS_GET_RESPONSE_NORMAL:
		if (c->with_list || c->in_blocks)
			break;
		timer_stop(c);
		if (a->get.is_data)
			result_event(c, ev, 0, 0, a->get.data.raw, a->get.data.len);
		else
			result_event(c, ev, a->get.dar ? METER_EACCESS : 0, a->get.dar, NULL, 0);
		after_batch(c);
		return ev->type;
	case XDLMS_GET_RESPONSE_WITH_LIST:
		if (!c->with_list || c->in_blocks || a->n_items != c->batch)
			break;
		/* Keep the list beside the APDU: it is delivered over several polls. */
		if (plen - a->trailing - 3 > c->buf.data_cap) {
			req_fail(c, METER_ENOSPC);
			return DLMS_CEV_NONE;
		}
		c->data_len = plen - a->trailing - 3;
		memcpy(c->buf.data, plain + 3, c->data_len);
		return start_list(c, ev);
	case XDLMS_GET_RESPONSE_WITH_DATABLOCK:
		r = xdlms_block_check(a, c->block, &last);
		if (r == METER_EACCESS) {
			/* The whole batch fails with the block's access result. */
			timer_stop(c);
			c->in_blocks = false;
			c->fail_err = METER_EACCESS;
			c->exc[0] = a->block.dar;
			return DLMS_CEV_NONE;
		}
		if (r)
			break;
		if (a->block.raw_len > c->buf.data_cap - c->data_len) {
			req_fail(c, METER_ENOSPC);
			return DLMS_CEV_NONE;
		}
		memcpy(c->buf.data + c->data_len, a->block.raw, a->block.raw_len);
		c->data_len += a->block.raw_len;
		c->in_blocks = true;
		if (!last) {
			struct mbuf b;

			plain_begin(c, &b);
			n = xdlms_put_get_request_next(&b, cur_iip(c), c->block);
			r = n < 0 ? (int)n : plain_send(c, &b, out);
			if (r)
				req_fail(c, r);
			c->block++;
			return DLMS_CEV_NONE;
		}
		c->in_blocks = false;
		if (c->with_list)
			return start_list(c, ev);
		timer_stop(c);
		n = axdr_skip(c->buf.data, c->data_len);
		if (n <= 0) {
			req_fail(c, METER_EMALFORMED);
			return DLMS_CEV_NONE;
		}
		/* Bytes after the value are tolerated, as after an APDU. */
		result_event(c, ev, 0, 0, c->buf.data, (size_t)n);
		after_batch(c);
		return ev->type;
	default:
		break;
	}
	req_fail(c, METER_EPROTO);
	return DLMS_CEV_NONE;
}

static int
on_value_response(struct dlms_client *c, struct mbuf *out, const struct xdlms_apdu *a,
                  struct dlms_client_event *ev)
{
	bool more = c->value_off < c->value_len;
	int r;

	switch (a->type) {
	case XDLMS_SET_RESPONSE_NORMAL:
	case XDLMS_SET_RESPONSE_LAST_DATABLOCK:
		if (c->op != DLMS_OP_SET)
			break;
		if (a->type == XDLMS_SET_RESPONSE_LAST_DATABLOCK &&
		    (!c->in_blocks || a->block.number != c->block))
			break;
		timer_stop(c);
		result_event(c, ev, a->dar ? METER_EACCESS : 0, a->dar, NULL, 0);
		after_batch(c);
		return ev->type;
	case XDLMS_ACTION_RESPONSE_NORMAL:
		if (c->op != DLMS_OP_ACTION)
			break;
		timer_stop(c);
		if (a->act.has_return && a->act.ret.is_data)
			result_event(c, ev, a->act.result ? METER_EACCESS : 0, a->act.result,
			             a->act.ret.data.raw, a->act.ret.data.len);
		else
			result_event(c, ev, a->act.result ? METER_EACCESS : 0, a->act.result, NULL,
			             0);
		after_batch(c);
		return ev->type;
	case XDLMS_SET_RESPONSE_DATABLOCK:
	case XDLMS_ACTION_RESPONSE_NEXT_PBLOCK:
		if ((a->type == XDLMS_SET_RESPONSE_DATABLOCK) != (c->op == DLMS_OP_SET))
			break;
		if (!c->in_blocks || !more || a->block.number != c->block)
			break;
		c->block++;
		r = send_value_block(c, out, false);
		if (r)
			req_fail(c, r);
		return DLMS_CEV_NONE;
	default:
		break;
	}
	req_fail(c, METER_EPROTO);
	return DLMS_CEV_NONE;
}

/*
 * Pushes.  A DataNotification comes in clear or in general-glo/ded-
 * ciphering (it has no glo- twin); our requests go glo-ciphered and are
 * answered in kind, so an APDU with one of these tags is never the answer
 * we wait for.  One that fails its checks (in clear in a ciphered context,
 * not authentic, a replayed counter, malformed once deciphered) is
 * reported and dropped: it must neither be stored nor fail the request
 * outstanding (anyone on the path could otherwise end a session).
 */
static bool
push_tag(uint8_t tag)
{
	return tag == XDLMS_TAG_DATA_NOTIFICATION || tag == XDLMS_TAG_GENERAL_GLO_CIPHERING ||
	       tag == XDLMS_TAG_GENERAL_DED_CIPHERING;
}

static int
push_event(struct dlms_client_event *ev, const struct xdlms_apdu *a)
{
	ev->type = DLMS_CEV_NOTIFICATION;
	ev->long_iip = a->long_iip;
	ev->time = a->time_len == 12 ? a->time : NULL;
	ev->data = a->value.raw;
	ev->data_len = a->value.len;
	return ev->type;
}

static int
push_refused(struct dlms_client *c, struct dlms_client_event *ev, int err)
{
	c->pushes_refused++;
	ev->type = DLMS_CEV_NOTIFICATION;
	ev->err = err;
	ev->data = NULL;
	ev->data_len = 0;
	return ev->type;
}

static int
handle_xdlms(struct dlms_client *c, struct mbuf *out, const uint8_t *apdu, size_t len,
             struct dlms_client_event *ev)
{
	struct xdlms_apdu a;
	const uint8_t *plain;
	size_t plen;
	ssize_t n;
	int r;

	r = unprotect(c, apdu, len, &plain, &plen);
	if (r && push_tag(apdu[0]))
		return push_refused(c, ev, r);
	if (r) {
		if (c->state == DLMS_CLIENT_AUTHENTICATING)
			return session_fail(c, ev, r);
		if (c->op != DLMS_OP_NONE && c->fail_err == 0)
			req_fail(c, r);
		else
			c->stray++;
		return DLMS_CEV_NONE;
	}
	n = xdlms_decode(plain, plen, &a, NULL, 0);
	if (n < 0) {
		r = n == METER_ENEEDMORE ? METER_EMALFORMED : (int)n;
		if (push_tag(apdu[0]) && plain[0] == XDLMS_TAG_DATA_NOTIFICATION)
			return push_refused(c, ev, r);
		if (c->state == DLMS_CLIENT_AUTHENTICATING)
			return session_fail(c, ev, r);
		if (c->op != DLMS_OP_NONE && c->fail_err == 0)
			req_fail(c, r);
		else
			c->stray++;
		return DLMS_CEV_NONE;
	}
	if (a.type == XDLMS_DATA_NOTIFICATION)
		return push_event(ev, &a);
	if (a.type == XDLMS_EXCEPTION_RESPONSE || a.type == XDLMS_CONFIRMED_SERVICE_ERROR) {
		if (c->state == DLMS_CLIENT_AUTHENTICATING)
			return session_fail(c, ev, METER_EEXCEPTION);
		if (c->op == DLMS_OP_NONE || c->fail_err) {
			c->stray++;
			return DLMS_CEV_NONE;
		}
		req_fail(c, METER_EEXCEPTION);
		c->exc[0] = a.state_error;
		c->exc[1] = a.service_error;
		c->exc[2] = a.cse_service;
		c->exc[3] = a.cse_error;
		c->exc[4] = a.cse_value;
		return DLMS_CEV_NONE;
	}
	if (c->state == DLMS_CLIENT_AUTHENTICATING)
		return handle_pass4(c, &a, ev);
	if (c->op == DLMS_OP_NONE || c->fail_err || c->pending_done || c->pending_send ||
	    c->list_left) {
		c->stray++;
		return DLMS_CEV_NONE;
	}
	if (a.type == XDLMS_CIPHERED || xdlms_iip_invoke_id(a.iip) != c->invoke_id) {
		req_fail(c, METER_EPROTO);
		return DLMS_CEV_NONE;
	}
	if (c->op == DLMS_OP_GET)
		return on_get_response(c, out, &a, plain, plen, ev);
	return on_value_response(c, out, &a, ev);
}

static int
handle_apdu(struct dlms_client *c, struct mbuf *out, const uint8_t *apdu, size_t len,
            struct dlms_client_event *ev)
{
	if (len == 0)
		return DLMS_CEV_NONE;
	switch (c->state) {
	case DLMS_CLIENT_ASSOCIATING:
		if (apdu[0] == ACSE_TAG_AARE)
			return handle_aare(c, out, apdu, len, ev);
		break;
	case DLMS_CLIENT_RELEASING:
		if (apdu[0] == ACSE_TAG_RLRE) {
			struct acse_release rl;
			if (acse_rlre_decode(apdu, len, &rl) < 0)
				return release_link(c, out, ev, METER_EMALFORMED);
			return release_link(c, out, ev, 0);
		}
		break;
	case DLMS_CLIENT_AUTHENTICATING:
	case DLMS_CLIENT_READY:
	case DLMS_CLIENT_BUSY:
		if (apdu[0] == ACSE_TAG_AARE || apdu[0] == ACSE_TAG_RLRE)
			break;
		return handle_xdlms(c, out, apdu, len, ev);
	default:
		break;
	}
	/* Pushes may come at any time, even before the association. */
	if (apdu[0] == XDLMS_TAG_DATA_NOTIFICATION || apdu[0] == XDLMS_TAG_GENERAL_GLO_CIPHERING) {
		struct xdlms_apdu a;
		const uint8_t *plain;
		size_t plen;

		int r = unprotect(c, apdu, len, &plain, &plen);
		if (r)
			return push_refused(c, ev, r);
		ssize_t n = xdlms_decode(plain, plen, &a, NULL, 0);
		if (n > 0 && a.type == XDLMS_DATA_NOTIFICATION)
			return push_event(ev, &a);
		if (n < 0 && plain[0] == XDLMS_TAG_DATA_NOTIFICATION)
			return push_refused(c, ev, n == METER_ENEEDMORE ? METER_EMALFORMED : (int)n);
	}
	c->stray++;
	return DLMS_CEV_NONE;
}

/* ---- the loop ------------------------------------------------------------- */

size_t
dlms_client_feed(struct dlms_client *c, const uint8_t *p, size_t n)
{
	if (c->state == DLMS_CLIENT_CLOSED || c->state == DLMS_CLIENT_IDLE)
		return n; /* nobody listens: drop */
	return dlms_link_feed(&c->link, p, n);
}

/* Work left from the previous event, before any new input. */
static int
pending_work(struct dlms_client *c, struct mbuf *out, struct dlms_client_event *ev)
{
	int r;

	if (c->has_pending) {
		c->has_pending = false;
		*ev = c->pending;
		return ev->type;
	}
	if (c->op == DLMS_OP_NONE)
		return DLMS_CEV_NONE;
	if (c->fail_err) {
		if (c->delivered < c->n_items) {
			result_event(c, ev, c->fail_err, 0, NULL, 0);
			if (c->fail_err == METER_EACCESS)
				ev->dar = c->exc[0];
			return ev->type;
		}
		ev->type = DLMS_CEV_DONE;
		ev->err = c->fail_err == METER_EACCESS ? 0 : c->fail_err;
		ev->state_error = c->exc[0];
		ev->service_error = c->exc[1];
		ev->cse_service = c->exc[2];
		ev->cse_error = c->exc[3];
		ev->cse_value = c->exc[4];
		if (ev->err != METER_EEXCEPTION)
			ev->state_error = ev->service_error = 0;
		req_abandon(c);
		return ev->type;
	}
	if (c->list_left)
		return next_list_result(c, ev);
	if (c->pending_send) {
		c->pending_send = false;
		r = send_next_get(c, out);
		if (r)
			req_fail(c, r);
		return pending_work(c, out, ev);
	}
	if (c->pending_done) {
		ev->type = DLMS_CEV_DONE;
		req_abandon(c);
		return ev->type;
	}
	return DLMS_CEV_NONE;
}

int
dlms_client_poll(struct dlms_client *c, struct mbuf *out, struct dlms_client_event *ev)
{
	struct dlms_link_event le;
	int r;

	memset(ev, 0, sizeof(*ev));
	r = pending_work(c, out, ev);
	if (r != DLMS_CEV_NONE)
		return r;
	if (c->state == DLMS_CLIENT_IDLE || c->state == DLMS_CLIENT_CLOSED)
		return ev->type = DLMS_CEV_NONE;
	for (;;) {
		switch (dlms_link_poll(&c->link, out, &le)) {
		case DLMS_LINK_EV_NONE:
			return ev->type = DLMS_CEV_NONE;
		case DLMS_LINK_EV_CONNECTED:
			if (c->state != DLMS_CLIENT_CONNECTING)
				break;
			r = send_aarq(c, out);
			if (r)
				return session_fail(c, ev, r);
			break;
		case DLMS_LINK_EV_DISCONNECTED:
			if (c->state == DLMS_CLIENT_DISCONNECTING) {
				timer_stop(c);
				c->state = DLMS_CLIENT_CLOSED;
				ev->type = DLMS_CEV_RELEASED;
				return ev->type;
			}
			return session_fail(c, ev, le.err ? le.err : METER_EABORTED);
		case DLMS_LINK_EV_ERROR:
			if (c->link.dead)
				return session_fail(c, ev, le.err);
			if (le.err == METER_ENOSPC && c->op != DLMS_OP_NONE && c->fail_err == 0)
				req_fail(c, METER_ENOSPC);
			break;
		case DLMS_LINK_EV_APDU:
			r = handle_apdu(c, out, le.apdu, le.apdu_len, ev);
			if (r != DLMS_CEV_NONE)
				return r;
			r = pending_work(c, out, ev);
			if (r != DLMS_CEV_NONE)
				return r;
			if (c->state == DLMS_CLIENT_CLOSED)
				return ev->type = DLMS_CEV_NONE;
			break;
		}
	}
}

int
dlms_client_timeout(struct dlms_client *c, struct mbuf *out)
{
	if (c->timer_ms == 0)
		return METER_ESTATE;
	timer_stop(c);
	switch (c->state) {
	case DLMS_CLIENT_CONNECTING:
	case DLMS_CLIENT_ASSOCIATING:
	case DLMS_CLIENT_AUTHENTICATING:
		req_reset(c);
		c->state = DLMS_CLIENT_CLOSED;
		c->pending =
		    (struct dlms_client_event){.type = DLMS_CEV_FAILED, .err = METER_ETIMEOUT};
		c->has_pending = true;
		return 0;
	case DLMS_CLIENT_BUSY:
		if (c->op != DLMS_OP_NONE && c->fail_err == 0)
			req_fail(c, METER_ETIMEOUT);
		return 0;
	case DLMS_CLIENT_RELEASING:
	case DLMS_CLIENT_DISCONNECTING:
		(void)out;
		c->state = DLMS_CLIENT_CLOSED;
		c->pending =
		    (struct dlms_client_event){.type = DLMS_CEV_RELEASED, .err = METER_ETIMEOUT};
		c->has_pending = true;
		return 0;
	default:
		return METER_ESTATE;
	}
}

uint32_t
dlms_client_timer(const struct dlms_client *c, uint32_t *ms)
{
	if (ms)
		*ms = c->timer_ms;
	return c->timer_gen;
}

uint32_t
dlms_client_tx_counter(const struct dlms_client *c)
{
	return c->tx_counter;
}

struct dlms_rx_counter
dlms_client_rx_counter(const struct dlms_client *c)
{
	return c->rx_counter;
}

size_t
dlms_client_out_max(const struct dlms_client *c)
{
	return dlms_link_out_max(&c->link, c->buf.tx_cap);
}

bool
dlms_client_out_pending(const struct dlms_client *c)
{
	return dlms_link_out_pending(&c->link);
}

int
dlms_client_decode(const struct dlms_client_event *ev, struct axdr_node *nodes, size_t cap,
                   size_t *n_nodes)
{
	ssize_t n;

	if (ev->data == NULL || ev->data_len == 0)
		return METER_EINVAL;
	n = axdr_decode(ev->data, ev->data_len, nodes, cap, n_nodes);
	return n < 0 ? (int)n : 0;
}
