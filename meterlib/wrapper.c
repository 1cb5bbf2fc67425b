/*
 * wrapper.c: the IEC 62056-47 wrapper, the framing of DLMS over TCP/UDP.
 *
 * The header is fixed (8 bytes) and carries the APDU's length, so a PDU is
 * complete exactly when 8 + length bytes are there.  TCP has no way to find
 * a header again once the stream is out of step, so a bad version or an
 * over-long length is final for the stream, not a frame to skip.
 */
#include "wrapper.h"

#include "meter_error.h"

ssize_t
wrapper_encode(struct mbuf *out, uint16_t src_wport, uint16_t dst_wport, const uint8_t *apdu,
               size_t len)
{
	if (len > UINT16_MAX)
		return METER_ELENGTH;
	if (out->err || WRAPPER_HEADER_LEN + len > out->cap - out->len) {
		out->err = METER_ENOSPC;
		return METER_ENOSPC;
	}
	mbuf_be16(out, WRAPPER_VERSION);
	mbuf_be16(out, src_wport);
	mbuf_be16(out, dst_wport);
	mbuf_be16(out, (uint16_t)len);
	mbuf_put(out, apdu, len);
	return (ssize_t)(WRAPPER_HEADER_LEN + len);
}

ssize_t
wrapper_parse(const uint8_t *buf, size_t len, size_t max_apdu, struct wrapper_pdu *w)
{
	size_t n;

	if (max_apdu == 0 || max_apdu > UINT16_MAX)
		max_apdu = UINT16_MAX;
	/* A wrong version is visible in the first two bytes; say so early. */
	if (len >= 2 && be16(buf) != WRAPPER_VERSION)
		return METER_EMALFORMED;
	if (len < WRAPPER_HEADER_LEN)
		return METER_ENEEDMORE;
	n = be16(buf + 6);
	if (n > max_apdu)
		return METER_ELENGTH;
	if (len - WRAPPER_HEADER_LEN < n)
		return METER_ENEEDMORE;
	w->version = be16(buf);
	w->src_wport = be16(buf + 2);
	w->dst_wport = be16(buf + 4);
	w->length = (uint16_t)n;
	w->apdu = buf + WRAPPER_HEADER_LEN;
	return (ssize_t)(WRAPPER_HEADER_LEN + n);
}

int
wrapper_stream_init(struct wrapper_stream *s, uint8_t *buf, size_t cap, size_t max_apdu)
{
	if (buf == NULL || cap < WRAPPER_HEADER_LEN)
		return METER_EINVAL;
	s->buf = buf;
	s->cap = cap;
	s->len = 0;
	s->done = 0;
	/* A PDU that cannot fit the buffer could never complete. */
	if (max_apdu == 0 || max_apdu > cap - WRAPPER_HEADER_LEN)
		max_apdu = cap - WRAPPER_HEADER_LEN;
	s->max_apdu = max_apdu;
	s->err = 0;
	return 0;
}

/* Drop the PDU handed out last; its APDU pointer dies here. */
static void
stream_compact(struct wrapper_stream *s)
{
	if (s->done == 0)
		return;
	memmove(s->buf, s->buf + s->done, s->len - s->done);
	s->len -= s->done;
	s->done = 0;
}

size_t
wrapper_stream_feed(struct wrapper_stream *s, const uint8_t *p, size_t n)
{
	size_t room;

	stream_compact(s);
	room = s->cap - s->len;
	if (n > room)
		n = room;
	if (n) {
		memcpy(s->buf + s->len, p, n);
		s->len += n;
	}
	return n;
}

int
wrapper_stream_next(struct wrapper_stream *s, struct wrapper_pdu *w)
{
	ssize_t n;

	if (s->err)
		return s->err;
	stream_compact(s);
	n = wrapper_parse(s->buf, s->len, s->max_apdu, w);
	if (n == METER_ENEEDMORE)
		return 0;
	if (n < 0) {
		s->err = (int)n;
		return s->err;
	}
	s->done = (size_t)n;
	return 1;
}
