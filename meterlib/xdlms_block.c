/*
 * xdlms_block.c: the pieces of xDLMS block transfer that do not need
 * session state.  A client engine checks each GET-Response-With-Datablock
 * against the block number it expects and asks for the next one; a server
 * engine cuts an encoded result into datablocks that fit the client's
 * negotiated max PDU size.  The reassembly buffer, the block counter and
 * the decision to abort stay with the engines.
 */
#include "xdlms.h"

int
xdlms_block_check(const struct xdlms_apdu *a, uint32_t expected, bool *last)
{
	if (a->type != XDLMS_GET_RESPONSE_WITH_DATABLOCK || a->block.number != expected)
		return METER_EPROTO;
	*last = a->block.last != 0;
	if (a->block.is_dar)
		return METER_EACCESS;
	return 0;
}

/* Bytes axdr_put_length() uses for n, measured rather than assumed. */
static size_t
length_size(size_t n)
{
	uint8_t tmp[8];
	struct mbuf b;

	mbuf_init(&b, tmp, sizeof(tmp));
	axdr_put_length(&b, (uint32_t)n);
	return b.len;
}

size_t
xdlms_block_room(size_t max_pdu, size_t header)
{
	size_t avail, n;

	if (max_pdu <= header + 1)
		return 0;
	avail = max_pdu - header;
	if (avail > UINT32_MAX)
		avail = UINT32_MAX;
	/* the length field grows with n; step down until both fit */
	for (n = avail - 1; n > 0; n--)
		if (n + length_size(n) <= avail)
			return n;
	return 0;
}

ssize_t
xdlms_put_get_response_block(struct mbuf *b, uint8_t iip, uint32_t block_number,
			     const uint8_t *data, size_t len, size_t *off, size_t max_pdu)
{
	struct xdlms_apdu a;
	size_t room, chunk;
	ssize_t n;

	if (*off > len)
		return METER_EINVAL;
	room = xdlms_block_room(max_pdu, XDLMS_GET_BLOCK_HEADER);
	if (room == 0)
		return METER_EINVAL;
	chunk = len - *off < room ? len - *off : room;

	memset(&a, 0, sizeof(a));
	a.type = XDLMS_GET_RESPONSE_WITH_DATABLOCK;
	a.iip = iip;
	a.block.last = *off + chunk == len;
	a.block.number = block_number;
	a.block.raw = data + *off;
	a.block.raw_len = (uint32_t)chunk;
	n = xdlms_encode(&a, b);
	if (n >= 0)
		*off += chunk;
	return n;
}
