/*
 * xdlms.c: decoding and encoding of the xDLMS service APDUs (GET, SET,
 * ACTION, notifications, ExceptionResponse, ConfirmedServiceError) into and
 * from struct xdlms_apdu, plus the framing of ciphered APDUs.
 *
 * The decoder walks the input once with a bounded reader; every Data value
 * is handed to axdr_decode() (or axdr_skip() when the caller gave no node
 * array) so that its length is checked by the one A-XDR parser.  CHOICE
 * indexes and OPTIONAL flags must be what the standard allows: a meter
 * that sends something else gets METER_EMALFORMED rather than a guess.
 * The encoder is the mirror image and writes Data from the raw bytes the
 * decoder recorded, which is what makes decode/encode round trips exact.
 * Names are in xdlms_names.c, selective access in xdlms_access.c and the
 * block-transfer helpers in xdlms_block.c.
 */
#include "xdlms.h"

#include "meter_error.h"

/* Decoder state: the reader and the caller's node array. */
struct dctx {
	struct mrd r;
	struct axdr_node *nodes;
	size_t cap;
	size_t used;
};

#define TRY(x)                                                                                     \
	do {                                                                                       \
		int try_rc_ = (x);                                                                 \
		if (try_rc_ < 0)                                                                   \
			return try_rc_;                                                            \
	} while (0)

static int
get_u8(struct dctx *c, uint8_t *v)
{
	return mrd_u8(&c->r, v);
}

static int
get_u16(struct dctx *c, uint16_t *v)
{
	return mrd_be16(&c->r, v);
}

static int
get_u32(struct dctx *c, uint32_t *v)
{
	return mrd_be32(&c->r, v);
}

/* An OPTIONAL / boolean-as-flag byte: 0 or 1, nothing else. */
static int
get_flag(struct dctx *c, bool *v)
{
	uint8_t f;

	TRY(get_u8(c, &f));
	if (f > 1)
		return METER_EMALFORMED;
	*v = f == 1;
	return 0;
}

/* A-XDR length; the bytes it announces are checked by whoever reads them. */
static int
get_length(struct dctx *c, uint32_t *n)
{
	ssize_t k = axdr_decode_length(c->r.p + c->r.off, mrd_left(&c->r), n);

	if (k < 0)
		return (int)k;
	c->r.off += (size_t)k;
	return 0;
}

/* Length of a SEQUENCE OF, bounded by what a struct xdlms_apdu holds. */
static int
get_count(struct dctx *c, uint32_t *n)
{
	TRY(get_length(c, n));
	if (*n > XDLMS_MAX_LIST)
		return METER_ELIMIT;
	return 0;
}

/* octet-string contents (untagged, length-prefixed). */
static int
get_octets(struct dctx *c, const uint8_t **p, uint32_t *n)
{
	TRY(get_length(c, n));
	return mrd_take(&c->r, *n, p);
}

static int
get_data(struct dctx *c, struct xdlms_data *d)
{
	const uint8_t *p = c->r.p + c->r.off;
	size_t left = mrd_left(&c->r);
	ssize_t n;

	if (c->nodes) {
		size_t k = 0;

		if (c->used >= c->cap)
			return left ? METER_ENOSPC : METER_ENEEDMORE;
		n = axdr_decode(p, left, c->nodes + c->used, c->cap - c->used, &k);
		if (n < 0)
			return (int)n;
		d->node = c->nodes + c->used;
		d->n_nodes = (uint32_t)k;
		c->used += k;
	} else {
		n = axdr_skip(p, left);
		if (n < 0)
			return (int)n;
		d->node = NULL;
		d->n_nodes = 0;
	}
	if ((size_t)n > left)
		return METER_EMALFORMED; /* the A-XDR layer must never claim more */
	if ((uint64_t)n > UINT32_MAX)
		return METER_ELIMIT; /* xdlms_data.len is 32 bits */
	d->raw = p;
	d->len = (uint32_t)n;
	c->r.off += (size_t)n;
	return 0;
}

static int
get_desc(struct dctx *c, struct xdlms_desc *d)
{
	const uint8_t *p;
	uint8_t id;

	TRY(get_u16(c, &d->class_id));
	TRY(mrd_take(&c->r, 6, &p));
	memcpy(d->obis.v, p, 6);
	TRY(get_u8(c, &id));
	d->id = (int8_t)id;
	return 0;
}

/* Selective-Access-Descriptor after its OPTIONAL flag. */
static int
get_access_body(struct dctx *c, struct xdlms_access *a)
{
	a->present = true;
	TRY(get_u8(c, &a->selector));
	return get_data(c, &a->params);
}

static int
get_access(struct dctx *c, struct xdlms_access *a)
{
	bool present;

	TRY(get_flag(c, &present));
	if (!present) {
		memset(a, 0, sizeof(*a));
		return 0;
	}
	return get_access_body(c, a);
}

/* DataBlock-SA: last-block, block-number, raw-data. */
static int
get_block_sa(struct dctx *c, struct xdlms_block *b)
{
	TRY(get_u8(c, &b->last));
	TRY(get_u32(c, &b->number));
	b->is_dar = false;
	return get_octets(c, &b->raw, &b->raw_len);
}

/* DataBlock-G: last-block, block-number, CHOICE raw-data [0] | dar [1]. */
static int
get_block_g(struct dctx *c, struct xdlms_block *b)
{
	uint8_t choice;

	TRY(get_u8(c, &b->last));
	TRY(get_u32(c, &b->number));
	TRY(get_u8(c, &choice));
	switch (choice) {
	case 0:
		b->is_dar = false;
		return get_octets(c, &b->raw, &b->raw_len);
	case 1:
		b->is_dar = true;
		return get_u8(c, &b->dar);
	default:
		return METER_EMALFORMED;
	}
}

/* Get-Data-Result: CHOICE data [0] | data-access-result [1]. */
static int
get_get_result(struct dctx *c, struct xdlms_get_result *g)
{
	uint8_t choice;

	TRY(get_u8(c, &choice));
	switch (choice) {
	case 0:
		g->is_data = true;
		return get_data(c, &g->data);
	case 1:
		g->is_data = false;
		return get_u8(c, &g->dar);
	default:
		return METER_EMALFORMED;
	}
}

static int
get_action_resp(struct dctx *c, struct xdlms_action_resp *a)
{
	TRY(get_u8(c, &a->result));
	TRY(get_flag(c, &a->has_return));
	if (a->has_return)
		return get_get_result(c, &a->ret);
	return 0;
}

/* SEQUENCE OF Cosem-Attribute-Descriptor-With-Selection (with_access) or
 * of Cosem-Method-Descriptor. */
static int
get_desc_list(struct dctx *c, struct xdlms_apdu *a, bool with_access)
{
	TRY(get_count(c, &a->n_items));
	for (uint32_t i = 0; i < a->n_items; i++) {
		TRY(get_desc(c, &a->items[i].desc));
		if (with_access)
			TRY(get_access(c, &a->items[i].access));
	}
	return 0;
}

static int
get_value_list(struct dctx *c, struct xdlms_apdu *a)
{
	TRY(get_count(c, &a->n_values));
	for (uint32_t i = 0; i < a->n_values; i++)
		TRY(get_data(c, &a->items[i].value));
	return 0;
}

static int
decode_get_request(struct dctx *c, struct xdlms_apdu *a)
{
	switch (a->type) {
	case XDLMS_GET_REQUEST_NORMAL:
		TRY(get_desc(c, &a->desc));
		return get_access(c, &a->access);
	case XDLMS_GET_REQUEST_NEXT:
		return get_u32(c, &a->block.number);
	case XDLMS_GET_REQUEST_WITH_LIST:
		return get_desc_list(c, a, true);
	}
	return METER_EMALFORMED;
}

static int
decode_set_request(struct dctx *c, struct xdlms_apdu *a)
{
	switch (a->type) {
	case XDLMS_SET_REQUEST_NORMAL:
		TRY(get_desc(c, &a->desc));
		TRY(get_access(c, &a->access));
		a->has_value = true;
		return get_data(c, &a->value);
	case XDLMS_SET_REQUEST_WITH_FIRST_DATABLOCK:
		TRY(get_desc(c, &a->desc));
		TRY(get_access(c, &a->access));
		return get_block_sa(c, &a->block);
	case XDLMS_SET_REQUEST_WITH_DATABLOCK:
		return get_block_sa(c, &a->block);
	case XDLMS_SET_REQUEST_WITH_LIST:
		TRY(get_desc_list(c, a, true));
		return get_value_list(c, a);
	case XDLMS_SET_REQUEST_WITH_LIST_AND_FIRST_DATABLOCK:
		TRY(get_desc_list(c, a, true));
		return get_block_sa(c, &a->block);
	}
	return METER_EMALFORMED;
}

static int
decode_action_request(struct dctx *c, struct xdlms_apdu *a)
{
	switch (a->type) {
	case XDLMS_ACTION_REQUEST_NORMAL:
		TRY(get_desc(c, &a->desc));
		TRY(get_flag(c, &a->has_value));
		if (a->has_value)
			return get_data(c, &a->value);
		return 0;
	case XDLMS_ACTION_REQUEST_NEXT_PBLOCK:
		return get_u32(c, &a->block.number);
	case XDLMS_ACTION_REQUEST_WITH_LIST:
		TRY(get_desc_list(c, a, false));
		return get_value_list(c, a);
	case XDLMS_ACTION_REQUEST_WITH_FIRST_PBLOCK:
		TRY(get_desc(c, &a->desc));
		return get_block_sa(c, &a->block);
	case XDLMS_ACTION_REQUEST_WITH_LIST_AND_FIRST_PBLOCK:
		TRY(get_desc_list(c, a, false));
		return get_block_sa(c, &a->block);
	case XDLMS_ACTION_REQUEST_WITH_PBLOCK:
		return get_block_sa(c, &a->block);
	}
	return METER_EMALFORMED;
}

static int
decode_get_response(struct dctx *c, struct xdlms_apdu *a)
{
	switch (a->type) {
	case XDLMS_GET_RESPONSE_NORMAL:
		return get_get_result(c, &a->get);
	case XDLMS_GET_RESPONSE_WITH_DATABLOCK:
		return get_block_g(c, &a->block);
	case XDLMS_GET_RESPONSE_WITH_LIST:
		TRY(get_count(c, &a->n_items));
		for (uint32_t i = 0; i < a->n_items; i++)
			TRY(get_get_result(c, &a->items[i].get));
		return 0;
	}
	return METER_EMALFORMED;
}

static int
get_dar_list(struct dctx *c, struct xdlms_apdu *a)
{
	TRY(get_count(c, &a->n_items));
	for (uint32_t i = 0; i < a->n_items; i++)
		TRY(get_u8(c, &a->items[i].dar));
	return 0;
}

static int
decode_set_response(struct dctx *c, struct xdlms_apdu *a)
{
	switch (a->type) {
	case XDLMS_SET_RESPONSE_NORMAL:
		return get_u8(c, &a->dar);
	case XDLMS_SET_RESPONSE_DATABLOCK:
		return get_u32(c, &a->block.number);
	case XDLMS_SET_RESPONSE_LAST_DATABLOCK:
		TRY(get_u8(c, &a->dar));
		return get_u32(c, &a->block.number);
	case XDLMS_SET_RESPONSE_LAST_DATABLOCK_WITH_LIST:
		TRY(get_dar_list(c, a));
		return get_u32(c, &a->block.number);
	case XDLMS_SET_RESPONSE_WITH_LIST:
		return get_dar_list(c, a);
	}
	return METER_EMALFORMED;
}

static int
decode_action_response(struct dctx *c, struct xdlms_apdu *a)
{
	switch (a->type) {
	case XDLMS_ACTION_RESPONSE_NORMAL:
		return get_action_resp(c, &a->act);
	case XDLMS_ACTION_RESPONSE_WITH_PBLOCK:
		return get_block_sa(c, &a->block);
	case XDLMS_ACTION_RESPONSE_WITH_LIST:
		TRY(get_count(c, &a->n_items));
		for (uint32_t i = 0; i < a->n_items; i++)
			TRY(get_action_resp(c, &a->items[i].act));
		return 0;
	case XDLMS_ACTION_RESPONSE_NEXT_PBLOCK:
		return get_u32(c, &a->block.number);
	}
	return METER_EMALFORMED;
}

static int
decode_event_notification(struct dctx *c, struct xdlms_apdu *a)
{
	TRY(get_flag(c, &a->has_time));
	if (a->has_time)
		TRY(get_octets(c, &a->time, &a->time_len));
	TRY(get_desc(c, &a->desc));
	a->has_value = true;
	return get_data(c, &a->value);
}

static int
decode_data_notification(struct dctx *c, struct xdlms_apdu *a)
{
	TRY(get_u32(c, &a->long_iip));
	/* date-time is a plain OCTET STRING: length 0 stands for "absent" */
	TRY(get_octets(c, &a->time, &a->time_len));
	a->has_time = a->time_len > 0;
	a->has_value = true;
	return get_data(c, &a->value);
}

static int
decode_exception(struct dctx *c, struct xdlms_apdu *a)
{
	TRY(get_u8(c, &a->state_error));
	TRY(get_u8(c, &a->service_error));
	if (a->service_error == XDLMS_SERVICE_INVOCATION_COUNTER_ERROR)
		return get_u32(c, &a->invocation_counter);
	return 0;
}

static int
decode_cse(struct dctx *c, struct xdlms_apdu *a)
{
	TRY(get_u8(c, &a->cse_service));
	TRY(get_u8(c, &a->cse_error));
	return get_u8(c, &a->cse_value);
}

/* glo-/ded- tags whose content is length, SC, IC, ciphertext(+tag): the
 * ciphered forms of Initiate, ConfirmedServiceError and the SN services
 * (33..56 glo, 65..88 ded), and of the LN services 0xc0..0xc7 (0xc8..0xcf
 * glo, 0xd0..0xd7 ded; 0xce and 0xd6 stand for nothing). */
static bool
is_ciphered_tag(uint8_t t)
{
	switch (t) {
	case 33: case 37: case 38: case 40: case 44: case 45: case 46: case 54: case 56:
	case 65: case 69: case 70: case 72: case 76: case 77: case 78: case 86: case 88:
		return true;
	}
	return (t >= 0xc8 && t <= 0xd7 && t != 0xce && t != 0xd6);
}

static int
decode_ciphered(struct dctx *c, struct xdlms_apdu *a, uint8_t tag)
{
	struct xdlms_cipher *x = &a->cipher;
	const uint8_t *content;
	uint32_t n;

	x->tag = tag;
	if (tag == XDLMS_TAG_GENERAL_GLO_CIPHERING || tag == XDLMS_TAG_GENERAL_DED_CIPHERING)
		TRY(get_octets(c, &x->system_title, &x->system_title_len));
	TRY(get_length(c, &n));
	if (n < 5) /* SC and IC at least */
		return METER_EMALFORMED;
	TRY(mrd_take(&c->r, n, &content));
	x->security_control = content[0];
	x->invocation_counter = be32(content + 1);
	x->payload = content + 5;
	x->payload_len = n - 5;
	return 0;
}

ssize_t
xdlms_decode(const uint8_t *buf, size_t len, struct xdlms_apdu *out, struct axdr_node *nodes,
	     size_t cap)
{
	struct dctx c;
	uint8_t tag, choice = 0;
	int rc;

	if (buf == NULL && len)
		return METER_EINVAL;
	memset(out, 0, sizeof(*out));
	mrd_init(&c.r, buf, len);
	c.nodes = cap ? nodes : NULL;
	c.cap = cap;
	c.used = 0;

	TRY(get_u8(&c, &tag));
	switch (tag) {
	case XDLMS_TAG_GET_REQUEST:
	case XDLMS_TAG_SET_REQUEST:
	case XDLMS_TAG_ACTION_REQUEST:
	case XDLMS_TAG_GET_RESPONSE:
	case XDLMS_TAG_SET_RESPONSE:
	case XDLMS_TAG_ACTION_RESPONSE:
		TRY(get_u8(&c, &choice));
		TRY(get_u8(&c, &out->iip));
		break;
	case XDLMS_TAG_EVENT_NOTIFICATION_REQUEST:
	case XDLMS_TAG_EXCEPTION_RESPONSE:
	case XDLMS_TAG_CONFIRMED_SERVICE_ERROR:
	case XDLMS_TAG_DATA_NOTIFICATION:
		break;
	default:
		if (is_ciphered_tag(tag) || tag == XDLMS_TAG_GENERAL_GLO_CIPHERING ||
		    tag == XDLMS_TAG_GENERAL_DED_CIPHERING) {
			out->type = XDLMS_CIPHERED;
			rc = decode_ciphered(&c, out, tag);
			goto done;
		}
		return METER_EUNSUPPORTED;
	}
	out->type = (uint16_t)(tag << 8 | choice);

	switch (tag) {
	case XDLMS_TAG_GET_REQUEST:
		rc = decode_get_request(&c, out);
		break;
	case XDLMS_TAG_SET_REQUEST:
		rc = decode_set_request(&c, out);
		break;
	case XDLMS_TAG_ACTION_REQUEST:
		rc = decode_action_request(&c, out);
		break;
	case XDLMS_TAG_GET_RESPONSE:
		rc = decode_get_response(&c, out);
		break;
	case XDLMS_TAG_SET_RESPONSE:
		rc = decode_set_response(&c, out);
		break;
	case XDLMS_TAG_ACTION_RESPONSE:
		rc = decode_action_response(&c, out);
		break;
	case XDLMS_TAG_EVENT_NOTIFICATION_REQUEST:
		rc = decode_event_notification(&c, out);
		break;
	case XDLMS_TAG_EXCEPTION_RESPONSE:
		rc = decode_exception(&c, out);
		break;
	case XDLMS_TAG_CONFIRMED_SERVICE_ERROR:
		rc = decode_cse(&c, out);
		break;
	default: /* XDLMS_TAG_DATA_NOTIFICATION */
		rc = decode_data_notification(&c, out);
		break;
	}
done:
	if (rc < 0)
		return rc;
	out->trailing = mrd_left(&c.r);
	out->n_nodes = c.used;
	return (ssize_t)c.r.off;
}

ssize_t
xdlms_decode_access(const uint8_t *buf, size_t len, struct xdlms_access *out,
		    struct axdr_node *nodes, size_t cap, size_t *n_used)
{
	struct dctx c;

	if (buf == NULL && len)
		return METER_EINVAL;
	memset(out, 0, sizeof(*out));
	mrd_init(&c.r, buf, len);
	c.nodes = cap ? nodes : NULL;
	c.cap = cap;
	c.used = 0;
	TRY(get_access_body(&c, out));
	if (n_used)
		*n_used = c.used;
	return (ssize_t)c.r.off;
}

/* ---- encoder ------------------------------------------------------------ */

static int
put_data(struct mbuf *b, const struct xdlms_data *d)
{
	if (d->raw) {
		mbuf_put(b, d->raw, d->len);
		return 0;
	}
	if (d->node && d->n_nodes) {
		ssize_t n = axdr_encode(d->node, d->n_nodes, b);

		if (n == METER_ENOSPC)
			b->err = METER_ENOSPC;
		else if (n < 0)
			return (int)n;
		return 0;
	}
	return METER_EINVAL;
}

static void
put_desc(struct mbuf *b, const struct xdlms_desc *d)
{
	mbuf_be16(b, d->class_id);
	mbuf_put(b, d->obis.v, 6);
	mbuf_u8(b, (uint8_t)d->id);
}

static int
put_access(struct mbuf *b, const struct xdlms_access *a)
{
	if (!a->present) {
		mbuf_u8(b, 0);
		return 0;
	}
	mbuf_u8(b, 1);
	mbuf_u8(b, a->selector);
	return put_data(b, &a->params);
}

static void
put_octets(struct mbuf *b, const uint8_t *p, uint32_t n)
{
	axdr_put_length(b, n);
	mbuf_put(b, p, n);
}

static void
put_block_sa(struct mbuf *b, const struct xdlms_block *k)
{
	mbuf_u8(b, k->last);
	mbuf_be32(b, k->number);
	put_octets(b, k->raw, k->raw_len);
}

static void
put_block_g(struct mbuf *b, const struct xdlms_block *k)
{
	mbuf_u8(b, k->last);
	mbuf_be32(b, k->number);
	if (k->is_dar) {
		mbuf_u8(b, 1);
		mbuf_u8(b, k->dar);
	} else {
		mbuf_u8(b, 0);
		put_octets(b, k->raw, k->raw_len);
	}
}

static int
put_get_result(struct mbuf *b, const struct xdlms_get_result *g)
{
	if (!g->is_data) {
		mbuf_u8(b, 1);
		mbuf_u8(b, g->dar);
		return 0;
	}
	mbuf_u8(b, 0);
	return put_data(b, &g->data);
}

static int
put_action_resp(struct mbuf *b, const struct xdlms_action_resp *r)
{
	mbuf_u8(b, r->result);
	mbuf_u8(b, r->has_return ? 1 : 0);
	if (r->has_return)
		return put_get_result(b, &r->ret);
	return 0;
}

static int
put_desc_list(struct mbuf *b, const struct xdlms_apdu *a, bool with_access)
{
	axdr_put_length(b, a->n_items);
	for (uint32_t i = 0; i < a->n_items; i++) {
		put_desc(b, &a->items[i].desc);
		if (with_access)
			TRY(put_access(b, &a->items[i].access));
	}
	return 0;
}

static int
put_value_list(struct mbuf *b, const struct xdlms_apdu *a)
{
	axdr_put_length(b, a->n_values);
	for (uint32_t i = 0; i < a->n_values; i++)
		TRY(put_data(b, &a->items[i].value));
	return 0;
}

static int
encode_body(const struct xdlms_apdu *a, struct mbuf *b)
{
	switch (a->type) {
	case XDLMS_GET_REQUEST_NORMAL:
		put_desc(b, &a->desc);
		return put_access(b, &a->access);
	case XDLMS_GET_REQUEST_NEXT:
	case XDLMS_ACTION_REQUEST_NEXT_PBLOCK:
	case XDLMS_SET_RESPONSE_DATABLOCK:
	case XDLMS_ACTION_RESPONSE_NEXT_PBLOCK:
		mbuf_be32(b, a->block.number);
		return 0;
	case XDLMS_GET_REQUEST_WITH_LIST:
		return put_desc_list(b, a, true);
	case XDLMS_SET_REQUEST_NORMAL:
		put_desc(b, &a->desc);
		TRY(put_access(b, &a->access));
		return put_data(b, &a->value);
	case XDLMS_SET_REQUEST_WITH_FIRST_DATABLOCK:
		put_desc(b, &a->desc);
		TRY(put_access(b, &a->access));
		put_block_sa(b, &a->block);
		return 0;
	case XDLMS_SET_REQUEST_WITH_DATABLOCK:
	case XDLMS_ACTION_REQUEST_WITH_PBLOCK:
	case XDLMS_ACTION_RESPONSE_WITH_PBLOCK:
		put_block_sa(b, &a->block);
		return 0;
	case XDLMS_SET_REQUEST_WITH_LIST:
		TRY(put_desc_list(b, a, true));
		return put_value_list(b, a);
	case XDLMS_SET_REQUEST_WITH_LIST_AND_FIRST_DATABLOCK:
		TRY(put_desc_list(b, a, true));
		put_block_sa(b, &a->block);
		return 0;
	case XDLMS_ACTION_REQUEST_NORMAL:
		put_desc(b, &a->desc);
		mbuf_u8(b, a->has_value ? 1 : 0);
		return a->has_value ? put_data(b, &a->value) : 0;
	case XDLMS_ACTION_REQUEST_WITH_LIST:
		TRY(put_desc_list(b, a, false));
		return put_value_list(b, a);
	case XDLMS_ACTION_REQUEST_WITH_FIRST_PBLOCK:
		put_desc(b, &a->desc);
		put_block_sa(b, &a->block);
		return 0;
	case XDLMS_ACTION_REQUEST_WITH_LIST_AND_FIRST_PBLOCK:
		TRY(put_desc_list(b, a, false));
		put_block_sa(b, &a->block);
		return 0;
	case XDLMS_GET_RESPONSE_NORMAL:
		return put_get_result(b, &a->get);
	case XDLMS_GET_RESPONSE_WITH_DATABLOCK:
		put_block_g(b, &a->block);
		return 0;
	case XDLMS_GET_RESPONSE_WITH_LIST:
		axdr_put_length(b, a->n_items);
		for (uint32_t i = 0; i < a->n_items; i++)
			TRY(put_get_result(b, &a->items[i].get));
		return 0;
	case XDLMS_SET_RESPONSE_NORMAL:
		mbuf_u8(b, a->dar);
		return 0;
	case XDLMS_SET_RESPONSE_LAST_DATABLOCK:
		mbuf_u8(b, a->dar);
		mbuf_be32(b, a->block.number);
		return 0;
	case XDLMS_SET_RESPONSE_LAST_DATABLOCK_WITH_LIST:
	case XDLMS_SET_RESPONSE_WITH_LIST:
		axdr_put_length(b, a->n_items);
		for (uint32_t i = 0; i < a->n_items; i++)
			mbuf_u8(b, a->items[i].dar);
		if (a->type == XDLMS_SET_RESPONSE_LAST_DATABLOCK_WITH_LIST)
			mbuf_be32(b, a->block.number);
		return 0;
	case XDLMS_ACTION_RESPONSE_NORMAL:
		return put_action_resp(b, &a->act);
	case XDLMS_ACTION_RESPONSE_WITH_LIST:
		axdr_put_length(b, a->n_items);
		for (uint32_t i = 0; i < a->n_items; i++)
			TRY(put_action_resp(b, &a->items[i].act));
		return 0;
	case XDLMS_EVENT_NOTIFICATION_REQUEST:
		mbuf_u8(b, a->has_time ? 1 : 0);
		if (a->has_time)
			put_octets(b, a->time, a->time_len);
		put_desc(b, &a->desc);
		return put_data(b, &a->value);
	case XDLMS_DATA_NOTIFICATION:
		mbuf_be32(b, a->long_iip);
		put_octets(b, a->time, a->has_time ? a->time_len : 0);
		return put_data(b, &a->value);
	case XDLMS_EXCEPTION_RESPONSE:
		mbuf_u8(b, a->state_error);
		mbuf_u8(b, a->service_error);
		if (a->service_error == XDLMS_SERVICE_INVOCATION_COUNTER_ERROR)
			mbuf_be32(b, a->invocation_counter);
		return 0;
	case XDLMS_CONFIRMED_SERVICE_ERROR:
		mbuf_u8(b, a->cse_service);
		mbuf_u8(b, a->cse_error);
		mbuf_u8(b, a->cse_value);
		return 0;
	}
	return METER_EINVAL;
}

ssize_t
xdlms_encode(const struct xdlms_apdu *a, struct mbuf *b)
{
	size_t start = b->len;
	uint8_t tag = (uint8_t)(a->type >> 8);
	int rc;

	if (a->n_items > XDLMS_MAX_LIST || a->n_values > XDLMS_MAX_LIST)
		return METER_EINVAL;
	mbuf_u8(b, tag);
	switch (tag) {
	case XDLMS_TAG_GET_REQUEST:
	case XDLMS_TAG_SET_REQUEST:
	case XDLMS_TAG_ACTION_REQUEST:
	case XDLMS_TAG_GET_RESPONSE:
	case XDLMS_TAG_SET_RESPONSE:
	case XDLMS_TAG_ACTION_RESPONSE:
		mbuf_u8(b, (uint8_t)a->type);
		mbuf_u8(b, a->iip);
		break;
	}
	rc = encode_body(a, b);
	if (rc < 0) {
		if (!b->err)
			b->len = start;
		return rc;
	}
	if (b->err)
		return b->err;
	return (ssize_t)(b->len - start);
}

/* ---- builders ------------------------------------------------------------ */

static void
apdu_init(struct xdlms_apdu *a, uint16_t type, uint8_t iip)
{
	memset(a, 0, sizeof(*a));
	a->type = type;
	a->iip = iip;
}

ssize_t
xdlms_put_get_request(struct mbuf *b, uint8_t iip, const struct xdlms_desc *d,
		      const struct xdlms_access *access)
{
	struct xdlms_apdu a;

	apdu_init(&a, XDLMS_GET_REQUEST_NORMAL, iip);
	a.desc = *d;
	if (access)
		a.access = *access;
	return xdlms_encode(&a, b);
}

ssize_t
xdlms_put_get_request_next(struct mbuf *b, uint8_t iip, uint32_t block_number)
{
	struct xdlms_apdu a;

	apdu_init(&a, XDLMS_GET_REQUEST_NEXT, iip);
	a.block.number = block_number;
	return xdlms_encode(&a, b);
}

ssize_t
xdlms_put_set_request(struct mbuf *b, uint8_t iip, const struct xdlms_desc *d,
		      const struct xdlms_access *access, const struct xdlms_data *value)
{
	struct xdlms_apdu a;

	if (value == NULL)
		return METER_EINVAL;
	apdu_init(&a, XDLMS_SET_REQUEST_NORMAL, iip);
	a.desc = *d;
	if (access)
		a.access = *access;
	a.has_value = true;
	a.value = *value;
	return xdlms_encode(&a, b);
}

ssize_t
xdlms_put_action_request(struct mbuf *b, uint8_t iip, const struct xdlms_desc *m,
			 const struct xdlms_data *params)
{
	struct xdlms_apdu a;

	apdu_init(&a, XDLMS_ACTION_REQUEST_NORMAL, iip);
	a.desc = *m;
	if (params) {
		a.has_value = true;
		a.value = *params;
	}
	return xdlms_encode(&a, b);
}

ssize_t
xdlms_put_get_response_data(struct mbuf *b, uint8_t iip, const struct xdlms_data *value)
{
	struct xdlms_apdu a;

	if (value == NULL)
		return METER_EINVAL;
	apdu_init(&a, XDLMS_GET_RESPONSE_NORMAL, iip);
	a.get.is_data = true;
	a.get.data = *value;
	return xdlms_encode(&a, b);
}

ssize_t
xdlms_put_get_response_dar(struct mbuf *b, uint8_t iip, uint8_t dar)
{
	struct xdlms_apdu a;

	apdu_init(&a, XDLMS_GET_RESPONSE_NORMAL, iip);
	a.get.dar = dar;
	return xdlms_encode(&a, b);
}

ssize_t
xdlms_put_set_response(struct mbuf *b, uint8_t iip, uint8_t dar)
{
	struct xdlms_apdu a;

	apdu_init(&a, XDLMS_SET_RESPONSE_NORMAL, iip);
	a.dar = dar;
	return xdlms_encode(&a, b);
}

ssize_t
xdlms_put_action_response(struct mbuf *b, uint8_t iip, uint8_t result, const struct xdlms_data *ret)
{
	struct xdlms_apdu a;

	apdu_init(&a, XDLMS_ACTION_RESPONSE_NORMAL, iip);
	a.act.result = result;
	if (ret) {
		a.act.has_return = true;
		a.act.ret.is_data = true;
		a.act.ret.data = *ret;
	}
	return xdlms_encode(&a, b);
}

ssize_t
xdlms_put_exception_response(struct mbuf *b, uint8_t state_error, uint8_t service_error)
{
	struct xdlms_apdu a;

	apdu_init(&a, XDLMS_EXCEPTION_RESPONSE, 0);
	a.state_error = state_error;
	a.service_error = service_error;
	return xdlms_encode(&a, b);
}
