/*
 * dlms_server.c: the server session engine.  Each received APDU is
 * answered within the poll that delivers it: ACSE (AARQ/RLRQ) by the
 * association policy, xDLMS requests by the caller's object model through
 * struct dlms_server_ops.  Request APDUs are decoded whole by the bounded
 * codecs (xdlms_decode, acse_*_decode) before anything is served, and the
 * selective-access parameters are decoded into a small node array on the
 * stack, so a hostile client can make the engine refuse but never read or
 * write out of bounds.  GET results are encoded into the caller's data
 * buffer first; if they do not fit the client's PDU size they are sent in
 * datablocks from there, one per GET-Request-Next.
 */
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "dlms_server.h"
#include "meter_error.h"

#define CIPHER_OVERHEAD DLMS_CIPHER_OVERHEAD
#define DEFAULT_MAX_PDU 1024
#define ACCESS_NODES    96
#define DEFAULT_CONFORMANCE                                                                        \
	(ACSE_CONF_BLOCK_TRANSFER_WITH_GET | ACSE_CONF_BLOCK_TRANSFER_WITH_SET |                   \
	 ACSE_CONF_BLOCK_TRANSFER_WITH_ACTION | ACSE_CONF_MULTIPLE_REFERENCES |                    \
	 ACSE_CONF_DATA_NOTIFICATION | ACSE_CONF_GET | ACSE_CONF_SET |                             \
	 ACSE_CONF_SELECTIVE_ACCESS | ACSE_CONF_ACTION)

static const struct obis ASSOCIATION_LN = {{0, 0, 40, 0, 0, 255}};

const char *
dlms_server_state_name(int state)
{
	switch (state) {
	case DLMS_SERVER_IDLE:
		return "idle";
	case DLMS_SERVER_CONNECTED:
		return "connected";
	case DLMS_SERVER_AUTHENTICATING:
		return "authenticating";
	case DLMS_SERVER_ASSOCIATED:
		return "associated";
	case DLMS_SERVER_CLOSED:
		return "closed";
	default:
		return "?";
	}
}

const char *
dlms_server_event_name(int type)
{
	switch (type) {
	case DLMS_SEV_NONE:
		return "none";
	case DLMS_SEV_CONNECTED:
		return "connected";
	case DLMS_SEV_ASSOCIATED:
		return "associated";
	case DLMS_SEV_REJECTED:
		return "rejected";
	case DLMS_SEV_RELEASED:
		return "released";
	case DLMS_SEV_DISCONNECTED:
		return "disconnected";
	case DLMS_SEV_ERROR:
		return "error";
	case DLMS_SEV_SERVED:
		return "served";
	default:
		return "?";
	}
}

static uint32_t
offered_conformance(const struct dlms_server *s)
{
	return s->policy->conformance ? s->policy->conformance : DEFAULT_CONFORMANCE;
}

static uint8_t
policy_sc(const struct dlms_server *s)
{
	return s->policy->security ? s->policy->security : DLMS_SC_AUTH | DLMS_SC_ENC;
}

static uint16_t
our_max_pdu(const struct dlms_server *s)
{
	size_t m = s->policy->max_pdu ? s->policy->max_pdu : DEFAULT_MAX_PDU;

	if (m > s->buf.rx_cap - WRAPPER_HEADER_LEN)
		m = s->buf.rx_cap - WRAPPER_HEADER_LEN;
	if (s->policy->ciphering_allowed && m > s->buf.work_cap)
		m = s->buf.work_cap;
	return (uint16_t)(m > 65535 ? 65535 : m);
}

/* Largest plaintext response the client takes (and our buffers hold). */
static size_t
plain_max(const struct dlms_server *s)
{
	return dlms_plain_max(&s->buf, s->client_max_pdu, s->ciphered);
}

static void
plain_begin(struct dlms_server *s, struct mbuf *m)
{
	dlms_plain_begin(&s->buf, s->ciphered, m);
}

/* Let the fault hook see it, cipher when associated so, send. */
static int
plain_send(struct dlms_server *s, struct mbuf *m, struct mbuf *out, enum dlms_cipher_kind kind)
{
	const uint8_t *apdu = m->p;
	size_t len = m->len;
	int r;

	if (m->err)
		return m->err;
	if (s->ops->tamper)
		s->ops->tamper(s->arg, s, m->p, &m->len, m->cap);
	len = m->len;
	if (len == 0 || len > m->cap)
		return METER_EINVAL;
	if (s->ciphered) {
		struct mbuf t;

		mbuf_init(&t, s->buf.tx, s->buf.tx_cap);
		r = dlms_protect(&t, kind, policy_sc(s), &s->policy->keys, s->policy->system_title,
		                 s->tx_counter, m->p, len);
		if (r)
			return r;
		s->tx_counter++;
		apdu = t.p;
		len = t.len;
	}
	return dlms_link_send(&s->link, apdu, len, out);
}

static void
association_reset(struct dlms_server *s)
{
	s->mechanism = ACSE_MECH_NONE;
	s->ciphered = false;
	s->conformance = 0;
	s->client_max_pdu = 0;
	s->have_client_title = false;
	s->get_blocks = false;
	s->in_op = 0;
	s->stoc_len = s->ctos_len = 0;
}

int
dlms_server_init(struct dlms_server *s, const struct dlms_server_config *cfg)
{
	struct dlms_link_config lc;
	int r;

	if (cfg == NULL || cfg->policy == NULL || cfg->ops == NULL || cfg->ops->get == NULL)
		return METER_EINVAL;
	if (cfg->buf.rx == NULL || cfg->buf.tx == NULL || cfg->buf.data == NULL ||
	    cfg->buf.rx_cap < 64 || cfg->buf.tx_cap < 64 || cfg->buf.data_cap < 16)
		return METER_EINVAL;
	if (cfg->policy->ciphering_allowed && (cfg->buf.work == NULL || cfg->buf.work_cap < 64))
		return METER_EINVAL;
	if (cfg->challenge && (cfg->challenge_len < 8 || cfg->challenge_len > 64))
		return METER_EINVAL;
	memset(s, 0, sizeof(*s));
	s->policy = cfg->policy;
	s->ops = cfg->ops;
	s->arg = cfg->arg;
	s->buf = cfg->buf;
	s->challenge = cfg->challenge;
	s->challenge_len = cfg->challenge_len;
	memset(&lc, 0, sizeof(lc));
	lc.framing = cfg->framing;
	lc.server = true;
	lc.local_wport = cfg->server_wport;
	lc.remote_wport = cfg->client_wport;
	lc.hdlc_local = cfg->hdlc_server;
	lc.hdlc_remote = cfg->hdlc_client;
	lc.hdlc_params = cfg->hdlc_params;
	lc.rxbuf = cfg->buf.rx;
	lc.rxcap = cfg->buf.rx_cap;
	r = dlms_link_init(&s->link, &lc);
	if (r)
		return r;
	s->state = DLMS_SERVER_IDLE;
	return 0;
}

/* The client's address as the link knows it. */
static uint16_t
client_addr(const struct dlms_server *s)
{
	if (s->link.ops == &dlms_link_hdlc_ops)
		return s->link.u.hl.remote.upper;
	return s->link.remote_wport;
}

/* ---- association ---------------------------------------------------------- */

static int
send_aare(struct dlms_server *s, struct mbuf *out, struct acse_aare *a)
{
	struct mbuf m;
	int r;

	mbuf_init(&m, s->buf.tx, s->buf.tx_cap);
	r = acse_aare_encode(&m, a);
	if (r)
		return r;
	return dlms_link_send(&s->link, m.p, m.len, out);
}

static int
reject(struct dlms_server *s, struct mbuf *out, struct dlms_server_event *ev, int ctx,
       uint8_t result, uint8_t diag, const struct acse_service_error *cse)
{
	uint8_t ui[8];
	struct acse_aare a;
	struct mbuf m;

	memset(&a, 0, sizeof(a));
	a.context = ctx;
	a.result = result;
	a.diag_source = ACSE_DIAG_SERVICE_USER;
	a.diag = diag;
	if (cse) {
		mbuf_init(&m, ui, sizeof(ui));
		if (acse_service_error_encode(&m, cse) == 0) {
			a.user.ui = m.p;
			a.user.ui_len = m.len;
		}
	}
	association_reset(s);
	s->state = DLMS_SERVER_CONNECTED;
	(void)send_aare(s, out, &a);
	ev->type = DLMS_SEV_REJECTED;
	ev->diag = diag;
	return ev->type;
}

static bool
password_ok(const struct dlms_server_policy *p, const uint8_t *v, size_t n)
{
	if (p->password == NULL || v == NULL || n != p->password_len)
		return false;
	return CRYPTO_memcmp(p->password, v, n) == 0;
}

static int
handle_aarq(struct dlms_server *s, struct mbuf *out, const uint8_t *apdu, size_t len,
            struct dlms_server_event *ev)
{
	const struct dlms_server_policy *p = s->policy;
	struct acse_service_error cse = {XDLMS_CSE_INITIATE_ERROR, XDLMS_CSE_INITIATE,
	                                 XDLMS_CSE_INITIATE_OTHER};
	struct acse_initiate_req ir;
	struct acse_initiate_resp resp;
	uint8_t ini[32], cini[64];
	struct acse_aarq q;
	struct acse_aare a;
	struct mbuf m, t;
	ssize_t n;
	int r, mech;

	association_reset(s);
	s->state = DLMS_SERVER_CONNECTED;
	n = acse_aarq_decode(apdu, len, &q);
	if (n < 0)
		return reject(s, out, ev, ACSE_CTX_LN, ACSE_REJECTED_PERMANENT, ACSE_DIAG_NO_REASON,
		              NULL);
	/* Context. */
	if (!((q.context == ACSE_CTX_LN && !p->ciphering_required) ||
	      (q.context == ACSE_CTX_LN_CIPHER && p->ciphering_allowed)))
		return reject(s, out, ev, q.context, ACSE_REJECTED_PERMANENT,
		              ACSE_DIAG_CONTEXT_NOT_SUPPORTED, NULL);
	/* Mechanism. */
	mech = q.mechanism_present ? (int)q.mechanism : ACSE_MECH_NONE;
	if (mech < 0 || mech > 31 || !(p->mechanisms & (1u << mech)))
		return reject(s, out, ev, q.context, ACSE_REJECTED_PERMANENT,
		              mech == ACSE_MECH_NONE ? ACSE_DIAG_AUTH_REQUIRED
		                                     : ACSE_DIAG_MECH_NOT_RECOGNISED,
		              NULL);
	s->client = client_addr(s);
	if (mech == ACSE_MECH_NONE && p->none_client && s->client != p->none_client)
		return reject(s, out, ev, q.context, ACSE_REJECTED_PERMANENT,
		              ACSE_DIAG_AUTH_REQUIRED, NULL);
	if (q.calling_ap_title && q.calling_ap_title_len == DLMS_SYSTEM_TITLE_LEN) {
		memcpy(s->client_title, q.calling_ap_title, DLMS_SYSTEM_TITLE_LEN);
		s->have_client_title = true;
	}
	if (mech == ACSE_MECH_LLS && !password_ok(p, q.auth_value, q.auth_value_len))
		return reject(s, out, ev, q.context, ACSE_REJECTED_PERMANENT,
		              ACSE_DIAG_AUTH_FAILURE, NULL);
	if (mech == ACSE_MECH_HLS_GMAC) {
		if (!s->have_client_title)
			return reject(s, out, ev, q.context, ACSE_REJECTED_PERMANENT,
			              ACSE_DIAG_CALLING_AP_TITLE_NOT_RECOGNIZED, NULL);
		if (q.auth_value == NULL || q.auth_value_len < 8 || q.auth_value_len > 64)
			return reject(s, out, ev, q.context, ACSE_REJECTED_PERMANENT,
			              ACSE_DIAG_AUTH_FAILURE, NULL);
		memcpy(s->ctos, q.auth_value, q.auth_value_len);
		s->ctos_len = (uint8_t)q.auth_value_len;
	}
	/* The xDLMS InitiateRequest, ciphered in a ciphered context. */
	if (q.context == ACSE_CTX_LN_CIPHER) {
		struct dlms_ciphered ci;

		if (!s->have_client_title)
			return reject(s, out, ev, q.context, ACSE_REJECTED_PERMANENT,
			              ACSE_DIAG_CALLING_AP_TITLE_NOT_RECOGNIZED, NULL);
		if (q.user.kind != ACSE_UI_CIPHERED ||
		    q.user.ui[0] != ACSE_APDU_GLO_INITIATE_REQUEST)
			return reject(s, out, ev, q.context, ACSE_REJECTED_PERMANENT,
			              ACSE_DIAG_NO_REASON, &cse);
		n = dlms_ciphered_parse(q.user.ui, q.user.ui_len, &ci);
		mbuf_init(&m, ini, sizeof(ini));
		r = n < 0 ? (int)n
		          : dlms_unprotect(&m, &ci, &p->keys, s->client_title, policy_sc(s),
		                           &s->rx_counter);
		if (r == 0)
			r = acse_initiate_req_decode(m.p, m.len, &ir);
		if (r)
			return reject(s, out, ev, q.context, ACSE_REJECTED_PERMANENT,
			              ACSE_DIAG_NO_REASON, &cse);
	} else {
		if (q.user.kind != ACSE_UI_INITIATE_REQ)
			return reject(s, out, ev, q.context, ACSE_REJECTED_PERMANENT,
			              ACSE_DIAG_NO_REASON, &cse);
		ir = q.user.u.req;
	}
	if (ir.dlms_version < ACSE_DLMS_VERSION) {
		cse.value = XDLMS_CSE_INITIATE_DLMS_VERSION_TOO_LOW;
		return reject(s, out, ev, q.context, ACSE_REJECTED_PERMANENT, ACSE_DIAG_NO_REASON,
		              &cse);
	}
	if (ir.max_pdu != 0 && ir.max_pdu < 12) {
		cse.value = XDLMS_CSE_INITIATE_PDU_SIZE_TOO_SHORT;
		return reject(s, out, ev, q.context, ACSE_REJECTED_PERMANENT, ACSE_DIAG_NO_REASON,
		              &cse);
	}
	s->conformance = ir.conformance & offered_conformance(s);
	if (s->conformance == 0) {
		cse.value = XDLMS_CSE_INITIATE_INCOMPATIBLE_CONFORMANCE;
		return reject(s, out, ev, q.context, ACSE_REJECTED_PERMANENT, ACSE_DIAG_NO_REASON,
		              &cse);
	}
	s->client_max_pdu = ir.max_pdu;
	s->mechanism = mech;
	s->ciphered = q.context == ACSE_CTX_LN_CIPHER;

	/* Accept. */
	memset(&resp, 0, sizeof(resp));
	resp.negotiated_qos = -1;
	resp.dlms_version = ACSE_DLMS_VERSION;
	resp.conformance = s->conformance;
	resp.max_pdu = our_max_pdu(s);
	resp.vaa_name = ACSE_VAA_NAME_LN;
	mbuf_init(&m, ini, sizeof(ini));
	r = acse_initiate_resp_encode(&m, &resp);
	if (r)
		return r;
	memset(&a, 0, sizeof(a));
	a.context = q.context;
	a.result = ACSE_ACCEPTED;
	a.diag_source = ACSE_DIAG_SERVICE_USER;
	a.diag = ACSE_DIAG_NULL;
	if (s->ciphered) {
		mbuf_init(&t, cini, sizeof(cini));
		r = dlms_protect(&t, DLMS_CIPHER_GLO, policy_sc(s), &p->keys, p->system_title,
		                 s->tx_counter, m.p, m.len);
		if (r)
			return r;
		s->tx_counter++;
		a.user.ui = t.p;
		a.user.ui_len = t.len;
	} else {
		a.user.ui = m.p;
		a.user.ui_len = m.len;
	}
	if (s->ciphered || mech == ACSE_MECH_HLS_GMAC) {
		a.responding_ap_title = p->system_title;
		a.responding_ap_title_len = DLMS_SYSTEM_TITLE_LEN;
	}
	if (mech != ACSE_MECH_NONE) {
		a.acse_requirements = true;
		a.authentication = true;
		a.mechanism = mech;
		a.mechanism_present = true;
	}
	if (mech == ACSE_MECH_HLS_GMAC) {
		if (s->challenge) {
			memcpy(s->stoc, s->challenge, s->challenge_len);
			s->stoc_len = (uint8_t)s->challenge_len;
		} else {
			if (RAND_bytes(s->stoc, 16) != 1)
				return METER_ECRYPTO;
			s->stoc_len = 16;
		}
		a.auth_value = s->stoc;
		a.auth_value_len = s->stoc_len;
	}
	r = send_aare(s, out, &a);
	if (r)
		return r;
	if (mech == ACSE_MECH_HLS_GMAC) {
		s->state = DLMS_SERVER_AUTHENTICATING;
		return DLMS_SEV_NONE;
	}
	s->state = DLMS_SERVER_ASSOCIATED;
	ev->type = DLMS_SEV_ASSOCIATED;
	return ev->type;
}

/* HLS-GMAC pass 3 in, pass 4 out. */
static int
handle_pass3(struct dlms_server *s, struct mbuf *out, const struct xdlms_apdu *a,
             struct dlms_server_event *ev)
{
	uint8_t f[DLMS_HLS_GMAC_LEN], ret[2 + DLMS_HLS_GMAC_LEN];
	const uint8_t *v = a->value.raw;
	struct xdlms_data d;
	struct mbuf b;
	ssize_t n;
	int r;

	if (a->type != XDLMS_ACTION_REQUEST_NORMAL || a->desc.class_id != 15 ||
	    !obis_eq(&a->desc.obis, &ASSOCIATION_LN) || a->desc.id != 1 || !a->has_value ||
	    a->value.len != 2 + DLMS_HLS_GMAC_LEN || v[0] != AXDR_OCTET_STRING ||
	    v[1] != DLMS_HLS_GMAC_LEN)
		r = METER_EAUTH;
	else
		r = dlms_hls_gmac_check(v + 2, DLMS_HLS_GMAC_LEN, &s->policy->keys, s->client_title,
		                        s->stoc, s->stoc_len, NULL);
	plain_begin(s, &b);
	if (r) {
		n = xdlms_put_action_response(&b, a->iip, XDLMS_AR_READ_WRITE_DENIED, NULL);
		if (n > 0)
			(void)plain_send(s, &b, out, DLMS_CIPHER_GLO);
		association_reset(s);
		s->state = DLMS_SERVER_CONNECTED;
		ev->type = DLMS_SEV_REJECTED;
		ev->err = METER_EAUTH;
		ev->diag = ACSE_DIAG_AUTH_FAILURE;
		return ev->type;
	}
	r = dlms_hls_gmac(f, DLMS_SC_AUTH, &s->policy->keys, s->policy->system_title, s->tx_counter,
	                  s->ctos, s->ctos_len);
	if (r)
		return r;
	s->tx_counter++;
	ret[0] = AXDR_OCTET_STRING;
	ret[1] = DLMS_HLS_GMAC_LEN;
	memcpy(ret + 2, f, DLMS_HLS_GMAC_LEN);
	d = xdlms_data_raw(ret, sizeof(ret));
	n = xdlms_put_action_response(&b, a->iip, XDLMS_AR_SUCCESS, &d);
	if (n < 0)
		return (int)n;
	r = plain_send(s, &b, out, DLMS_CIPHER_GLO);
	if (r)
		return r;
	s->state = DLMS_SERVER_ASSOCIATED;
	ev->type = DLMS_SEV_ASSOCIATED;
	return ev->type;
}

/* ---- services --------------------------------------------------------------- */

/* Decode a request's selective access for the object model. */
static const struct dlms_selective *
selective(const struct xdlms_access *acc, struct dlms_selective *sel, struct axdr_node *nodes,
          size_t cap)
{
	size_t nn;

	if (!acc->present)
		return NULL;
	memset(sel, 0, sizeof(*sel));
	sel->selector = acc->selector;
	if (acc->params.raw && axdr_decode(acc->params.raw, acc->params.len, nodes, cap, &nn) > 0) {
		sel->params = nodes;
		sel->n_params = (uint32_t)nn;
		if (acc->selector == XDLMS_ACCESS_RANGE)
			sel->range_ok = xdlms_range_from_nodes(nodes, &sel->range) == 0;
		else if (acc->selector == XDLMS_ACCESS_ENTRY)
			sel->entry_ok = xdlms_entry_from_nodes(nodes, &sel->entry) == 0;
	}
	return sel;
}

static void
req_init(struct dlms_server *s, struct dlms_server_req *rq, const struct xdlms_desc *d,
         const struct dlms_selective *sel)
{
	rq->srv = s;
	rq->desc = *d;
	rq->sel = sel;
	rq->mechanism = s->mechanism;
	rq->client = s->client;
}

/* Append one attribute's Get-Data-Result (choice, then data or dar) to b. */
static uint8_t
get_one(struct dlms_server *s, struct mbuf *b, const struct xdlms_desc *d,
        const struct xdlms_access *acc)
{
	struct axdr_node nodes[ACCESS_NODES];
	struct dlms_selective sel;
	struct dlms_server_req rq;
	struct mbuf v;
	size_t at = b->len;
	int dar;

	if (b->err)
		return XDLMS_DAR_OTHER_REASON;
	req_init(s, &rq, d, selective(acc, &sel, nodes, ACCESS_NODES));
	if (b->cap - b->len < 2) {
		b->err = METER_ENOSPC;
		return XDLMS_DAR_OTHER_REASON;
	}
	mbuf_init(&v, b->p + at + 1, b->cap - at - 1);
	dar = s->ops->get(s->arg, &rq, &v);
	if (dar == XDLMS_DAR_SUCCESS &&
	    (v.err || v.len == 0 || axdr_skip(v.p, v.len) != (ssize_t)v.len))
		dar = XDLMS_DAR_OTHER_REASON; /* too big for us, or not one Data */
	if (dar < 0 || dar > 255)
		dar = XDLMS_DAR_OTHER_REASON;
	if (dar == XDLMS_DAR_SUCCESS) {
		b->p[at] = 0;
		b->len = at + 1 + v.len;
	} else {
		b->p[at] = 1;
		b->p[at + 1] = (uint8_t)dar;
		b->len = at + 2;
	}
	return (uint8_t)dar;
}

/* Send data[0..len) (a Get-Data-Result's body, or a list) normally or in blocks. */
static int
answer_get(struct dlms_server *s, struct mbuf *out, uint8_t iip, uint8_t choice, size_t len)
{
	struct mbuf b;

	plain_begin(s, &b);
	if (len + 3 <= plain_max(s)) {
		mbuf_u8(&b, XDLMS_TAG_GET_RESPONSE);
		mbuf_u8(&b, choice);
		mbuf_u8(&b, iip);
		mbuf_put(&b, s->buf.data, len);
		return plain_send(s, &b, out, DLMS_CIPHER_GLO);
	}
	if (!(s->conformance & ACSE_CONF_BLOCK_TRANSFER_WITH_GET)) {
		ssize_t n = xdlms_put_get_response_dar(&b, iip, XDLMS_DAR_OTHER_REASON);
		return n < 0 ? (int)n : plain_send(s, &b, out, DLMS_CIPHER_GLO);
	}
	/* GET-Response-With-Datablock carries a normal answer's Get-Data-Result
	 * data without its choice byte, a list's answer whole. */
	s->get_blocks = true;
	s->get_iip = iip;
	s->get_block = 1;
	s->get_off = choice == 1 ? 1 : 0;
	s->get_len = len;
	{
		ssize_t n = xdlms_put_get_response_block(&b, iip, 1, s->buf.data, len, &s->get_off,
		                                         plain_max(s));
		if (n < 0)
			return (int)n;
	}
	if (s->get_off >= s->get_len)
		s->get_blocks = false;
	return plain_send(s, &b, out, DLMS_CIPHER_GLO);
}

static int
answer_get_dar_block(struct dlms_server *s, struct mbuf *out, uint8_t iip, uint32_t number,
                     uint8_t dar)
{
	struct xdlms_apdu a;
	struct mbuf b;
	ssize_t n;

	memset(&a, 0, sizeof(a));
	a.type = XDLMS_GET_RESPONSE_WITH_DATABLOCK;
	a.iip = iip;
	a.block.last = 1;
	a.block.number = number;
	a.block.is_dar = true;
	a.block.dar = dar;
	plain_begin(s, &b);
	n = xdlms_encode(&a, &b);
	return n < 0 ? (int)n : plain_send(s, &b, out, DLMS_CIPHER_GLO);
}

static int
serve_get(struct dlms_server *s, struct mbuf *out, const struct xdlms_apdu *a)
{
	struct mbuf d;

	switch (a->type) {
	case XDLMS_GET_REQUEST_NORMAL:
		s->get_blocks = false;
		mbuf_init(&d, s->buf.data, s->buf.data_cap);
		(void)get_one(s, &d, &a->desc, &a->access);
		if (d.err || d.p[0] == 1) {
			struct mbuf b;
			ssize_t n;

			plain_begin(s, &b);
			n = xdlms_put_get_response_dar(&b, a->iip,
			                               d.err ? XDLMS_DAR_OTHER_REASON : d.p[1]);
			return n < 0 ? (int)n : plain_send(s, &b, out, DLMS_CIPHER_GLO);
		}
		return answer_get(s, out, a->iip, 1, d.len);
	case XDLMS_GET_REQUEST_WITH_LIST:
		s->get_blocks = false;
		mbuf_init(&d, s->buf.data, s->buf.data_cap);
		axdr_put_length(&d, a->n_items);
		for (uint32_t i = 0; i < a->n_items; i++)
			(void)get_one(s, &d, &a->items[i].desc, &a->items[i].access);
		if (d.err) {
			struct mbuf b;
			ssize_t n;

			plain_begin(s, &b);
			n = xdlms_put_get_response_dar(&b, a->iip, XDLMS_DAR_OTHER_REASON);
			return n < 0 ? (int)n : plain_send(s, &b, out, DLMS_CIPHER_GLO);
		}
		return answer_get(s, out, a->iip, 3, d.len);
	case XDLMS_GET_REQUEST_NEXT:
		if (!s->get_blocks)
			return answer_get_dar_block(s, out, a->iip, a->block.number,
			                            XDLMS_DAR_NO_LONG_GET_IN_PROGRESS);
		if (a->block.number != s->get_block) {
			s->get_blocks = false;
			return answer_get_dar_block(s, out, a->iip, a->block.number,
			                            XDLMS_DAR_DATA_BLOCK_NUMBER_INVALID);
		}
		{
			struct mbuf b;
			ssize_t n;

			plain_begin(s, &b);
			n = xdlms_put_get_response_block(&b, a->iip, ++s->get_block, s->buf.data,
			                                 s->get_len, &s->get_off, plain_max(s));
			if (n < 0) {
				s->get_blocks = false;
				return (int)n;
			}
			if (s->get_off >= s->get_len)
				s->get_blocks = false;
			return plain_send(s, &b, out, DLMS_CIPHER_GLO);
		}
	default:
		return METER_EUNSUPPORTED;
	}
}

static int
call_set(struct dlms_server *s, const struct xdlms_desc *d, const struct xdlms_access *acc,
         const uint8_t *v, size_t len)
{
	struct axdr_node nodes[ACCESS_NODES];
	struct dlms_selective sel;
	struct dlms_server_req rq;
	int dar;

	if (v == NULL || len == 0 || axdr_skip(v, len) != (ssize_t)len)
		return XDLMS_DAR_TYPE_UNMATCHED;
	req_init(s, &rq, d, acc ? selective(acc, &sel, nodes, ACCESS_NODES) : NULL);
	dar = s->ops->set ? s->ops->set(s->arg, &rq, v, len) : XDLMS_DAR_READ_WRITE_DENIED;
	return dar < 0 || dar > 255 ? XDLMS_DAR_OTHER_REASON : dar;
}

/*
 * Run an action; its response goes into b.  Return parameters are written
 * to buf.data from ret_at on, past any parameters reassembled at its head.
 */
static int
call_action(struct dlms_server *s, struct mbuf *b, uint8_t iip, const struct xdlms_desc *d,
            const uint8_t *v, size_t len, size_t ret_at)
{
	struct dlms_server_req rq;
	struct xdlms_data ret;
	struct mbuf r;
	int res;
	ssize_t n;

	if (v && len && axdr_skip(v, len) != (ssize_t)len) {
		res = XDLMS_AR_TYPE_UNMATCHED;
	} else {
		req_init(s, &rq, d, NULL);
		mbuf_init(&r, s->buf.data + ret_at, s->buf.data_cap - ret_at);
		res = s->ops->action ? s->ops->action(s->arg, &rq, v, len, &r)
		                     : XDLMS_AR_READ_WRITE_DENIED;
		if (res < 0 || res > 255)
			res = XDLMS_AR_OTHER_REASON;
		if (r.len && !r.err && axdr_skip(r.p, r.len) == (ssize_t)r.len) {
			ret = xdlms_data_raw(r.p, (uint32_t)r.len);
			n = xdlms_put_action_response(b, iip, (uint8_t)res, &ret);
			return n < 0 ? (int)n : 0;
		}
	}
	n = xdlms_put_action_response(b, iip, (uint8_t)res, NULL);
	return n < 0 ? (int)n : 0;
}

/* Append a block of a long SET/ACTION value to buf.data. */
static int
take_block(struct dlms_server *s, const struct xdlms_block *k)
{
	if (k->raw_len > s->buf.data_cap - s->in_len)
		return METER_ENOSPC;
	memcpy(s->buf.data + s->in_len, k->raw, k->raw_len);
	s->in_len += k->raw_len;
	s->in_block = k->number;
	return 0;
}

static int
serve_set(struct dlms_server *s, struct mbuf *out, const struct xdlms_apdu *a)
{
	struct xdlms_apdu r;
	struct mbuf b;
	ssize_t n;

	memset(&r, 0, sizeof(r));
	r.iip = a->iip;
	switch (a->type) {
	case XDLMS_SET_REQUEST_NORMAL:
		s->in_op = 0;
		r.type = XDLMS_SET_RESPONSE_NORMAL;
		r.dar = (uint8_t)call_set(s, &a->desc, &a->access, a->value.raw, a->value.len);
		break;
	case XDLMS_SET_REQUEST_WITH_LIST:
		s->in_op = 0;
		if (a->n_values != a->n_items)
			return METER_EMALFORMED;
		r.type = XDLMS_SET_RESPONSE_WITH_LIST;
		r.n_items = a->n_items;
		for (uint32_t i = 0; i < a->n_items; i++)
			r.items[i].dar =
			    (uint8_t)call_set(s, &a->items[i].desc, &a->items[i].access,
			                      a->items[i].value.raw, a->items[i].value.len);
		break;
	case XDLMS_SET_REQUEST_WITH_FIRST_DATABLOCK:
	case XDLMS_SET_REQUEST_WITH_DATABLOCK:
		if (a->type == XDLMS_SET_REQUEST_WITH_FIRST_DATABLOCK) {
			s->in_op = DLMS_OP_SET;
			s->in_desc = a->desc;
			s->in_len = 0;
			s->in_block = 0;
		}
		r.block.number = a->block.number;
		if (s->in_op != DLMS_OP_SET || a->block.number != s->in_block + 1 ||
		    take_block(s, &a->block) != 0) {
			r.type = XDLMS_SET_RESPONSE_LAST_DATABLOCK;
			r.dar = s->in_op != DLMS_OP_SET ? XDLMS_DAR_NO_LONG_SET_IN_PROGRESS
			        : a->block.number != s->in_block + 1
			            ? XDLMS_DAR_DATA_BLOCK_NUMBER_INVALID
			            : XDLMS_DAR_LONG_SET_ABORTED;
			s->in_op = 0;
		} else if (!a->block.last) {
			r.type = XDLMS_SET_RESPONSE_DATABLOCK;
		} else {
			r.type = XDLMS_SET_RESPONSE_LAST_DATABLOCK;
			s->in_op = 0;
			r.dar = (uint8_t)call_set(s, &s->in_desc, NULL, s->buf.data, s->in_len);
		}
		break;
	default:
		return METER_EUNSUPPORTED;
	}
	plain_begin(s, &b);
	n = xdlms_encode(&r, &b);
	return n < 0 ? (int)n : plain_send(s, &b, out, DLMS_CIPHER_GLO);
}

static int
serve_action(struct dlms_server *s, struct mbuf *out, const struct xdlms_apdu *a)
{
	struct mbuf b;
	ssize_t n;
	int r;

	plain_begin(s, &b);
	switch (a->type) {
	case XDLMS_ACTION_REQUEST_NORMAL:
		s->in_op = 0;
		r = call_action(s, &b, a->iip, &a->desc, a->has_value ? a->value.raw : NULL,
		                a->has_value ? a->value.len : 0, 0);
		break;
	case XDLMS_ACTION_REQUEST_WITH_FIRST_PBLOCK:
	case XDLMS_ACTION_REQUEST_WITH_PBLOCK:
		if (a->type == XDLMS_ACTION_REQUEST_WITH_FIRST_PBLOCK) {
			s->in_op = DLMS_OP_ACTION;
			s->in_desc = a->desc;
			s->in_len = 0;
			s->in_block = 0;
		}
		if (s->in_op != DLMS_OP_ACTION || a->block.number != s->in_block + 1 ||
		    take_block(s, &a->block) != 0) {
			n = xdlms_put_action_response(&b, a->iip,
			                              s->in_op != DLMS_OP_ACTION
			                                  ? XDLMS_AR_NO_LONG_ACTION_IN_PROGRESS
			                                  : XDLMS_AR_LONG_ACTION_ABORTED,
			                              NULL);
			s->in_op = 0;
			r = n < 0 ? (int)n : 0;
		} else if (!a->block.last) {
			struct xdlms_apdu x;

			memset(&x, 0, sizeof(x));
			x.type = XDLMS_ACTION_RESPONSE_NEXT_PBLOCK;
			x.iip = a->iip;
			x.block.number = a->block.number;
			n = xdlms_encode(&x, &b);
			r = n < 0 ? (int)n : 0;
		} else {
			s->in_op = 0;
			r = call_action(s, &b, a->iip, &s->in_desc, s->buf.data, s->in_len,
			                s->in_len);
		}
		break;
	default:
		return METER_EUNSUPPORTED;
	}
	if (r)
		return r;
	return plain_send(s, &b, out, DLMS_CIPHER_GLO);
}

static int
send_exception(struct dlms_server *s, struct mbuf *out, uint8_t state_error, uint8_t service_error)
{
	struct xdlms_apdu a;
	uint8_t buf[16];
	struct mbuf b;
	ssize_t n;

	/* In clear: the client may not share our keys (that is the error). */
	memset(&a, 0, sizeof(a));
	a.type = XDLMS_EXCEPTION_RESPONSE;
	a.state_error = state_error;
	a.service_error = service_error;
	a.invocation_counter = s->rx_counter.seen ? s->rx_counter.last + 1 : 0;
	mbuf_init(&b, buf, sizeof(buf));
	n = xdlms_encode(&a, &b);
	if (n < 0)
		return (int)n;
	if (s->link.ops == &dlms_link_hdlc_ops && dlms_link_tx_busy(&s->link))
		return METER_ESTATE;
	/* The link keeps the APDU by pointer until acknowledged: use tx. */
	memcpy(s->buf.tx, buf, b.len);
	return dlms_link_send(&s->link, s->buf.tx, b.len, out);
}

static int
handle_xdlms(struct dlms_server *s, struct mbuf *out, const uint8_t *apdu, size_t len,
             struct dlms_server_event *ev)
{
	struct xdlms_apdu a;
	const uint8_t *plain = apdu;
	size_t plen = len;
	ssize_t n;
	int r;

	if (s->state != DLMS_SERVER_ASSOCIATED && s->state != DLMS_SERVER_AUTHENTICATING) {
		(void)send_exception(s, out, XDLMS_STATE_SERVICE_NOT_ALLOWED,
		                     XDLMS_SERVICE_OPERATION_NOT_POSSIBLE);
		ev->type = DLMS_SEV_ERROR;
		ev->err = METER_ESTATE;
		return ev->type;
	}
	if (len > our_max_pdu(s)) {
		/* The client ignored the PDU size we announced. */
		(void)send_exception(s, out, XDLMS_STATE_SERVICE_NOT_ALLOWED,
		                     XDLMS_SERVICE_PDU_TOO_LONG);
		ev->type = DLMS_SEV_ERROR;
		ev->err = METER_ELENGTH;
		return ev->type;
	}
	if (dlms_is_ciphered_tag(apdu[0])) {
		struct dlms_ciphered ci;
		struct mbuf m;

		if (!s->ciphered) {
			r = METER_EPROTO;
		} else {
			n = dlms_ciphered_parse(apdu, len, &ci);
			mbuf_init(&m, s->buf.work, s->buf.work_cap);
			r = n < 0 ? (n == METER_ENEEDMORE ? METER_EMALFORMED : (int)n)
			          : dlms_unprotect(&m, &ci, &s->policy->keys, s->client_title,
			                           policy_sc(s), &s->rx_counter);
			plain = m.p;
			plen = m.len;
			if (r == 0 && plen == 0)
				r = METER_EMALFORMED;
		}
		if (r) {
			(void)send_exception(s, out, XDLMS_STATE_SERVICE_NOT_ALLOWED,
			                     r == METER_EREPLAY
			                         ? XDLMS_SERVICE_INVOCATION_COUNTER_ERROR
			                         : XDLMS_SERVICE_DECIPHERING_ERROR);
			ev->type = DLMS_SEV_ERROR;
			ev->err = r;
			return ev->type;
		}
	} else if (s->ciphered) {
		(void)send_exception(s, out, XDLMS_STATE_SERVICE_NOT_ALLOWED,
		                     XDLMS_SERVICE_DECIPHERING_ERROR);
		ev->type = DLMS_SEV_ERROR;
		ev->err = METER_EAUTH;
		return ev->type;
	}
	n = xdlms_decode(plain, plen, &a, NULL, 0);
	if (n < 0 || a.type == XDLMS_CIPHERED) {
		(void)send_exception(s, out, XDLMS_STATE_SERVICE_UNKNOWN,
		                     n == METER_EUNSUPPORTED ? XDLMS_SERVICE_NOT_SUPPORTED
		                                             : XDLMS_SERVICE_OTHER_REASON);
		ev->type = DLMS_SEV_ERROR;
		ev->err = n < 0 ? (n == METER_ENEEDMORE ? METER_EMALFORMED : (int)n) : METER_EPROTO;
		return ev->type;
	}
	if (s->state == DLMS_SERVER_AUTHENTICATING)
		return handle_pass3(s, out, &a, ev);
	switch (a.type >> 8) {
	case XDLMS_TAG_GET_REQUEST:
		r = serve_get(s, out, &a);
		ev->op = DLMS_OP_GET;
		break;
	case XDLMS_TAG_SET_REQUEST:
		r = serve_set(s, out, &a);
		ev->op = DLMS_OP_SET;
		break;
	case XDLMS_TAG_ACTION_REQUEST:
		r = serve_action(s, out, &a);
		ev->op = DLMS_OP_ACTION;
		break;
	default:
		r = METER_EUNSUPPORTED;
		break;
	}
	if (r == METER_EUNSUPPORTED || r == METER_EMALFORMED) {
		(void)send_exception(s, out, XDLMS_STATE_SERVICE_UNKNOWN,
		                     XDLMS_SERVICE_NOT_SUPPORTED);
		ev->type = DLMS_SEV_ERROR;
		ev->err = r;
		return ev->type;
	}
	if (r) {
		ev->type = DLMS_SEV_ERROR;
		ev->err = r;
		return ev->type;
	}
	s->requests++;
	ev->type = DLMS_SEV_SERVED;
	return ev->type;
}

static int
handle_apdu(struct dlms_server *s, struct mbuf *out, const uint8_t *apdu, size_t len,
            struct dlms_server_event *ev)
{
	int r;

	if (len == 0)
		return DLMS_SEV_NONE;
	if (s->state == DLMS_SERVER_IDLE || s->state == DLMS_SERVER_CLOSED)
		s->state = DLMS_SERVER_CONNECTED;
	if (apdu[0] == ACSE_TAG_AARQ) {
		r = handle_aarq(s, out, apdu, len, ev);
		if (r < 0) {
			ev->type = DLMS_SEV_ERROR;
			ev->err = r;
		}
		return ev->type;
	}
	if (apdu[0] == ACSE_TAG_RLRQ) {
		struct acse_release rq, re;
		struct mbuf m;

		if (acse_rlrq_decode(apdu, len, &rq) < 0) {
			ev->type = DLMS_SEV_ERROR;
			ev->err = METER_EMALFORMED;
			return ev->type;
		}
		memset(&re, 0, sizeof(re));
		re.reason_present = true;
		re.reason = ACSE_RELEASE_NORMAL;
		mbuf_init(&m, s->buf.tx, s->buf.tx_cap);
		if (acse_rlre_encode(&m, &re) == 0)
			(void)dlms_link_send(&s->link, m.p, m.len, out);
		association_reset(s);
		s->state = DLMS_SERVER_CONNECTED;
		ev->type = DLMS_SEV_RELEASED;
		return ev->type;
	}
	return handle_xdlms(s, out, apdu, len, ev);
}

size_t
dlms_server_feed(struct dlms_server *s, const uint8_t *p, size_t n)
{
	return dlms_link_feed(&s->link, p, n);
}

int
dlms_server_poll(struct dlms_server *s, struct mbuf *out, struct dlms_server_event *ev)
{
	struct dlms_link_event le;
	int r;

	memset(ev, 0, sizeof(*ev));
	for (;;) {
		switch (dlms_link_poll(&s->link, out, &le)) {
		case DLMS_LINK_EV_NONE:
			return ev->type = DLMS_SEV_NONE;
		case DLMS_LINK_EV_CONNECTED:
			association_reset(s);
			s->state = DLMS_SERVER_CONNECTED;
			return ev->type = DLMS_SEV_CONNECTED;
		case DLMS_LINK_EV_DISCONNECTED:
			association_reset(s);
			s->state = DLMS_SERVER_CLOSED;
			ev->err = le.err;
			return ev->type = DLMS_SEV_DISCONNECTED;
		case DLMS_LINK_EV_ERROR:
			ev->err = le.err;
			if (s->link.dead) {
				association_reset(s);
				s->state = DLMS_SERVER_CLOSED;
				return ev->type = DLMS_SEV_DISCONNECTED;
			}
			return ev->type = DLMS_SEV_ERROR;
		case DLMS_LINK_EV_APDU:
			if (le.ui)
				break; /* broadcasts to a meter: nothing we serve */
			r = handle_apdu(s, out, le.apdu, le.apdu_len, ev);
			if (r != DLMS_SEV_NONE)
				return r;
			break;
		}
	}
}

int
dlms_server_notify(struct dlms_server *s, struct mbuf *out, uint32_t long_iip, const uint8_t *time,
                   const uint8_t *data, size_t len)
{
	size_t half = s->buf.data_cap / 2;
	struct xdlms_apdu a;
	struct mbuf b, t;
	ssize_t n;
	int r;

	if (s->state != DLMS_SERVER_CONNECTED && s->state != DLMS_SERVER_ASSOCIATED)
		return METER_ESTATE;
	if (s->link.ops == &dlms_link_wrapper_ops && !s->link.up)
		return METER_ESTATE;
	/* The push is built in the data buffer (tx may still hold a response
	 * the link has not had acknowledged), so not during a long transfer. */
	if (s->get_blocks || s->in_op)
		return METER_ESTATE;
	if (data == NULL || len == 0 || len > UINT32_MAX)
		return METER_EINVAL;
	memset(&a, 0, sizeof(a));
	a.type = XDLMS_DATA_NOTIFICATION;
	a.long_iip = long_iip;
	a.has_time = time != NULL;
	a.time = time;
	a.time_len = time ? 12 : 0;
	a.value = xdlms_data_raw(data, (uint32_t)len);
	mbuf_init(&b, s->buf.data, s->ciphered ? half : s->buf.data_cap);
	n = xdlms_encode(&a, &b);
	if (n < 0)
		return (int)n;
	if (s->state == DLMS_SERVER_ASSOCIATED && b.len > plain_max(s))
		return METER_ENOSPC;
	if (!s->ciphered)
		return dlms_link_push(&s->link, b.p, b.len, out);
	mbuf_init(&t, s->buf.data + half, s->buf.data_cap - half);
	r = dlms_protect(&t, DLMS_CIPHER_GENERAL_GLO, policy_sc(s), &s->policy->keys,
	                 s->policy->system_title, s->tx_counter, b.p, b.len);
	if (r)
		return r;
	s->tx_counter++;
	return dlms_link_push(&s->link, t.p, t.len, out);
}

bool
dlms_server_idle(const struct dlms_server *s)
{
	return !s->get_blocks && !s->in_op && dlms_link_idle(&s->link);
}

int
dlms_server_set_buffers(struct dlms_server *s, const struct dlms_buffers *b)
{
	if (b == NULL || b->rx == NULL || b->tx == NULL || b->data == NULL || b->rx_cap < 64 ||
	    b->tx_cap < 64 || b->data_cap < 16)
		return METER_EINVAL;
	if (s->policy->ciphering_allowed && (b->work == NULL || b->work_cap < 64))
		return METER_EINVAL;
	if (!dlms_server_idle(s))
		return METER_ESTATE;
	s->buf = *b;
	dlms_link_set_rxbuf(&s->link, b->rx, b->rx_cap);
	return 0;
}

size_t
dlms_server_out_max(const struct dlms_server *s)
{
	return dlms_link_out_max(&s->link, s->buf.tx_cap);
}

bool
dlms_server_out_pending(const struct dlms_server *s)
{
	return dlms_link_out_pending(&s->link);
}
