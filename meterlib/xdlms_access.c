/*
 * xdlms_access.c: the two selective-access descriptors of the profile
 * generic class (IEC 62056-6-2, class 7 attribute 2): range_descriptor
 * (restricting capture object, from and to values, selected columns) and
 * entry_descriptor (entry and column ranges).  Writers produce the
 * access-parameters Data; readers check a decoded node tree for the
 * descriptor's shape so that a server engine can act on it and a client
 * can log what it asked for.
 */
#include "xdlms.h"

#include "cosem_time.h"

void
xdlms_put_capture_obj(struct mbuf *b, const struct xdlms_capture_obj *c)
{
	axdr_put_structure(b, 4);
	axdr_put_long_unsigned(b, c->class_id);
	axdr_put_octet_string(b, c->obis.v, 6);
	axdr_put_integer(b, c->attribute);
	axdr_put_long_unsigned(b, c->data_index);
}

static void
put_columns(struct mbuf *b, const struct xdlms_capture_obj *cols, uint32_t n)
{
	axdr_put_array(b, n);
	for (uint32_t i = 0; i < n; i++)
		xdlms_put_capture_obj(b, &cols[i]);
}

void
xdlms_put_range(struct mbuf *b, const struct xdlms_capture_obj *restricting,
		const struct cosem_datetime *from, const struct cosem_datetime *to,
		const struct xdlms_capture_obj *cols, uint32_t n)
{
	axdr_put_structure(b, 4);
	xdlms_put_capture_obj(b, restricting);
	axdr_put_datetime_octets(b, from);
	axdr_put_datetime_octets(b, to);
	put_columns(b, cols, n);
}

static int
put_value(struct mbuf *b, const struct xdlms_data *d)
{
	if (d->raw) {
		mbuf_put(b, d->raw, d->len);
		return 0;
	}
	if (d->node && d->n_nodes) {
		ssize_t n = axdr_encode(d->node, d->n_nodes, b);

		if (n == METER_ENOSPC)
			b->err = METER_ENOSPC;
		return n < 0 && n != METER_ENOSPC ? (int)n : 0;
	}
	return METER_EINVAL;
}

int
xdlms_put_range_data(struct mbuf *b, const struct xdlms_capture_obj *restricting,
		     const struct xdlms_data *from, const struct xdlms_data *to,
		     const struct xdlms_capture_obj *cols, uint32_t n)
{
	int rc;

	axdr_put_structure(b, 4);
	xdlms_put_capture_obj(b, restricting);
	if ((rc = put_value(b, from)) < 0 || (rc = put_value(b, to)) < 0)
		return rc;
	put_columns(b, cols, n);
	return 0;
}

void
xdlms_put_entry(struct mbuf *b, const struct xdlms_entry *e)
{
	axdr_put_structure(b, 4);
	axdr_put_double_long_unsigned(b, e->from_entry);
	axdr_put_double_long_unsigned(b, e->to_entry);
	axdr_put_long_unsigned(b, e->from_value);
	axdr_put_long_unsigned(b, e->to_value);
}

/* The i-th child of a structure node, checked for its tag. */
static const struct axdr_node *
child_of(const struct axdr_node *n, uint32_t i, uint8_t tag)
{
	const struct axdr_node *c = axdr_child(n, i);

	return c && c->tag == tag ? c : NULL;
}

int
xdlms_capture_obj_from_node(const struct axdr_node *n, struct xdlms_capture_obj *out)
{
	const struct axdr_node *cls, *ln, *attr, *idx;

	if (n == NULL || n->tag != AXDR_STRUCTURE || n->len != 4)
		return METER_EMALFORMED;
	cls = child_of(n, 0, AXDR_LONG_UNSIGNED);
	ln = child_of(n, 1, AXDR_OCTET_STRING);
	attr = child_of(n, 2, AXDR_INTEGER);
	idx = child_of(n, 3, AXDR_LONG_UNSIGNED);
	if (!cls || !ln || !attr || !idx || ln->len != 6)
		return METER_EMALFORMED;
	out->class_id = (uint16_t)cls->v.u;
	memcpy(out->obis.v, ln->ptr, 6);
	out->attribute = (int8_t)attr->v.i;
	out->data_index = (uint16_t)idx->v.u;
	return 0;
}

int
xdlms_range_from_nodes(const struct axdr_node *params, struct xdlms_range *out)
{
	const struct axdr_node *sel;
	struct xdlms_capture_obj col;

	if (params == NULL || params->tag != AXDR_STRUCTURE || params->len != 4)
		return METER_EMALFORMED;
	if (xdlms_capture_obj_from_node(axdr_child(params, 0), &out->restricting) < 0)
		return METER_EMALFORMED;
	out->from = axdr_child(params, 1);
	out->to = axdr_child(params, 2);
	sel = child_of(params, 3, AXDR_ARRAY);
	if (!out->from || !out->to || !sel)
		return METER_EMALFORMED;
	for (uint32_t i = 0; i < sel->len; i++)
		if (xdlms_capture_obj_from_node(axdr_child(sel, i), &col) < 0)
			return METER_EMALFORMED;
	out->selected = sel;
	out->n_selected = sel->len;
	return 0;
}

int
xdlms_entry_from_nodes(const struct axdr_node *params, struct xdlms_entry *out)
{
	const struct axdr_node *fe, *te, *fv, *tv;

	if (params == NULL || params->tag != AXDR_STRUCTURE || params->len != 4)
		return METER_EMALFORMED;
	fe = child_of(params, 0, AXDR_DOUBLE_LONG_UNSIGNED);
	te = child_of(params, 1, AXDR_DOUBLE_LONG_UNSIGNED);
	fv = child_of(params, 2, AXDR_LONG_UNSIGNED);
	tv = child_of(params, 3, AXDR_LONG_UNSIGNED);
	if (!fe || !te || !fv || !tv)
		return METER_EMALFORMED;
	out->from_entry = (uint32_t)fe->v.u;
	out->to_entry = (uint32_t)te->v.u;
	out->from_value = (uint16_t)fv->v.u;
	out->to_value = (uint16_t)tv->v.u;
	return 0;
}
