/*
 * wrapper.h: the TCP/UDP wrapper of IEC 62056-47 that carries DLMS APDUs
 * over IP (port 4059).
 *
 * Every APDU travels behind an 8-byte header of four big-endian 16-bit
 * fields: version (always 1), source wPort, destination wPort and the
 * length of the APDU that follows.  A wPort is the DLMS client or server
 * (logical device) address: 16 for the public client, 1 for the management
 * logical device.
 *
 * wrapper_parse() handles one PDU in a buffer the caller owns, in the
 * picohttpparser manner (bytes consumed / need more / error).  struct
 * wrapper_stream adds the bookkeeping for a TCP byte stream: reads of any
 * size go in, whole PDUs come out.  Nothing allocates.
 */
#ifndef METER_WRAPPER_H
#define METER_WRAPPER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "bytes.h"

#define WRAPPER_HEADER_LEN 8
#define WRAPPER_VERSION    1
#define WRAPPER_PORT       4059 /* IANA port of DLMS/COSEM over TCP and UDP */

struct wrapper_pdu {
	uint16_t version;
	uint16_t src_wport;
	uint16_t dst_wport;
	uint16_t length;     /* APDU bytes */
	const uint8_t *apdu; /* in the caller's buffer */
};

/*
 * Append header and APDU.  Returns the bytes appended (len + 8),
 * METER_ELENGTH when len exceeds 65535, METER_ENOSPC (out->err set too).
 */
ssize_t wrapper_encode(struct mbuf *out, uint16_t src_wport, uint16_t dst_wport,
                       const uint8_t *apdu, size_t len);

/*
 * Parse one PDU at the start of buf.  max_apdu bounds the length field (the
 * caller's receive buffer, or the negotiated max PDU size; 0 means 65535).
 * Returns bytes consumed (8 + length) and fills *w, or METER_ENEEDMORE,
 * METER_EMALFORMED (version not 1), METER_ELENGTH (length over max_apdu).
 * The version is checked as soon as its two bytes are there and the length
 * as soon as the header is, so a bad stream is refused before its body
 * arrives.
 */
ssize_t wrapper_parse(const uint8_t *buf, size_t len, size_t max_apdu, struct wrapper_pdu *w);

/*
 * A receive buffer for one TCP connection.  The buffer is the caller's; its
 * capacity must be at least WRAPPER_HEADER_LEN + max_apdu for the largest
 * PDU to fit.
 */
struct wrapper_stream {
	uint8_t *buf;
	size_t cap;
	size_t len;  /* bytes held */
	size_t done; /* bytes of the PDU last returned, dropped next call */
	size_t max_apdu;
	int err; /* sticky: once a header is bad the stream is lost */
};

/* METER_EINVAL when cap cannot hold a header. */
int wrapper_stream_init(struct wrapper_stream *s, uint8_t *buf, size_t cap, size_t max_apdu);

/*
 * Take received bytes; returns how many were taken (fewer than n when the
 * buffer is full: call wrapper_stream_next() and feed the rest).
 */
size_t wrapper_stream_feed(struct wrapper_stream *s, const uint8_t *p, size_t n);

/*
 * Next whole PDU.  Returns 1 with *w set (its APDU valid until the next call
 * on the stream), 0 when more bytes are needed, or a negative error of
 * wrapper_parse() (METER_EMALFORMED, METER_ELENGTH), which repeats on every
 * later call: a TCP stream cannot resynchronise, so close the connection.
 */
int wrapper_stream_next(struct wrapper_stream *s, struct wrapper_pdu *w);

#endif
