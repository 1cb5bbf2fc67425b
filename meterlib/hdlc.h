/*
 * hdlc.h: HDLC frames of IEC 62056-46 (frame format type 3), as DLMS/COSEM
 * meters speak them on optical ports, RS-485 and GPRS modules.
 *
 * This is the frame codec only: parse one frame, find frames in a TCP byte
 * stream, encode a frame, and the SNRM/UA parameter group.  The link
 * procedures (connect, sequence numbers, segmentation) live in hdlc_link.h.
 *
 * A frame on the wire:
 *
 *   7E | format(2) | dest(1,2,4) | src(1,2,4) | control | [HCS(2) info] | FCS(2) | 7E
 *
 * The format field is 0xA000 | S << 11 | length, where length counts the
 * bytes from format through FCS (flags excluded) and S marks a segment that
 * more segments follow.  HCS and FCS are CRC-16/X.25, sent low byte first.
 * No byte stuffing: the length field, not the flags, delimits a frame, so a
 * 0x7E inside the frame is data.
 *
 * Parsing never allocates and never copies: a parsed frame points into the
 * caller's buffer, which must outlive it.
 */
#ifndef METER_HDLC_H
#define METER_HDLC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "bytes.h"

#define HDLC_FLAG       0x7e
#define HDLC_MAX_LENGTH 2047                  /* 11-bit length field */
#define HDLC_MAX_FRAME  (HDLC_MAX_LENGTH + 2) /* with both flags */
/* Largest information field that fits any address sizes (4 + 4 bytes). */
#define HDLC_MAX_INFO       (HDLC_MAX_LENGTH - 15)
#define HDLC_DEFAULT_INFO   128 /* max information length when not negotiated */
#define HDLC_DEFAULT_WINDOW 1
#define HDLC_LLC_LEN        3

/* LLC header in front of every APDU in an I or UI frame. */
#define HDLC_LLC_DST 0xe6
#define HDLC_LLC_CMD 0xe6 /* source LSAP of a command (client to server) */
#define HDLC_LLC_RSP 0xe7 /* source LSAP of a response (server to client) */

enum hdlc_type {
	HDLC_I = 1, /* information */
	HDLC_RR,    /* receive ready (supervisory) */
	HDLC_RNR,   /* receive not ready (supervisory) */
	HDLC_SNRM,  /* set normal response mode: connect */
	HDLC_DISC,  /* disconnect */
	HDLC_UA,    /* unnumbered acknowledge */
	HDLC_DM,    /* disconnected mode */
	HDLC_FRMR,  /* frame reject */
	HDLC_UI     /* unnumbered information (pushes, broadcasts) */
};

/*
 * An HDLC address.  Client addresses are one byte; a server address is an
 * upper (logical device) and a lower (physical device) part of one, two or
 * four bytes.  A one-byte address has only `upper`, and `lower` is 0.  Each
 * wire byte carries 7 bits, MSB first; the LSB set ends the address.
 * Ranges: 1 byte 0..0x7f; 2 bytes 0..0x7f each; 4 bytes 0..0x3fff each.
 */
struct hdlc_addr {
	uint16_t upper;
	uint16_t lower;
	uint8_t size; /* 1, 2 or 4 bytes on the wire */
};

struct hdlc_frame {
	uint8_t type;    /* enum hdlc_type */
	bool segmented;  /* S bit: more segments of this APDU follow */
	bool flagged;    /* parse: the opening flag was present */
	uint16_t length; /* length field: format through FCS */
	struct hdlc_addr dest;
	struct hdlc_addr src;
	uint8_t control;     /* raw control byte (parse); encode builds its own */
	uint8_t ns;          /* I: send sequence number, 0..7 */
	uint8_t nr;          /* I, RR, RNR: receive sequence number, 0..7 */
	bool pf;             /* poll/final bit */
	bool has_hcs;        /* an information field (and so an HCS) is present */
	uint16_t hcs;        /* CRC values as received (wire bytes e6 c7 are */
	uint16_t fcs;        /*   0xc7e6); hcs is 0 when has_hcs is false */
	const uint8_t *info; /* information field in the caller's buffer, or NULL */
	size_t info_len;
};

/*
 * CRC-16/X.25 of p[0..n): poly 0x1021 reflected, init and xorout 0xffff.
 * It goes on the wire low byte first.  hdlc_crc16((uint8_t[]){3, 0x3f}, 2)
 * is 0xec5b.
 */
uint16_t hdlc_crc16(const uint8_t *p, size_t n);

/*
 * Parse one frame at the start of buf.  Flags are optional: one opening 0x7E
 * may precede the frame; if it does, the closing 0x7E must follow the FCS,
 * else a 0x7E right after the FCS is taken as the closing flag when present.
 * On success fills *f and returns the bytes consumed (flags included).
 * Errors: METER_ENEEDMORE (buf is a valid prefix), METER_ECHECKSUM (HCS or
 * FCS wrong), METER_ELENGTH (length field too small for the header, or an
 * information field of one byte), METER_EUNSUPPORTED (a control byte of a
 * frame type DLMS does not use, such as REJ), METER_EMALFORMED otherwise
 * (format type not 0xA, address of 3 or more than 4 bytes, missing closing
 * flag).
 */
ssize_t hdlc_parse(const uint8_t *buf, size_t len, struct hdlc_frame *f);

/*
 * Find the next frame in a stream receive buffer (TCP, serial), where frames
 * are always flagged, may share a flag between them, and a frame may arrive
 * in pieces.  The caller owns the buffer and, after every call, drops *drop
 * bytes from its front (after using the frame: it points into buf).
 *
 * Returns 1: *f is a frame.  0: no complete frame yet; after dropping,
 * append more bytes and call again (garbage before a flag is dropped; a
 * partial frame is kept).  Negative: a frame candidate was bad
 * (METER_ECHECKSUM, METER_EMALFORMED, ...); after dropping, call again to
 * resynchronise.  The closing flag of a frame is not dropped, because it may
 * open the next one; at most one flag byte is ever kept waiting.
 */
int hdlc_scan(const uint8_t *buf, size_t len, struct hdlc_frame *f, size_t *drop);

/*
 * Control byte of a frame of type `type` with sequence numbers ns, nr (used
 * only where the type has them) and the poll/final bit.  0 for a bad type
 * (and for I with ns = nr = 0 and no poll: check the type first).
 */
uint8_t hdlc_control(uint8_t type, uint8_t ns, uint8_t nr, bool pf);

/*
 * Append a complete frame, flags included, to out: type, segmented, dest,
 * src, ns, nr, pf, info and info_len are used; length, control, HCS and FCS
 * are computed.  Returns the frame's size, METER_EINVAL for a bad type or
 * address (size not 1/2/4, value over its range) or an information field on
 * a type that has none (RR, RNR, DISC, DM), METER_ELENGTH when the frame
 * would exceed HDLC_MAX_LENGTH, or METER_ENOSPC (out->err is then set too).
 */
ssize_t hdlc_encode(struct mbuf *out, const struct hdlc_frame *f);

/*
 * Bytes hdlc_encode() appends for a frame with these address sizes and
 * information length, flags included, so that a sender can check the room
 * left in its output before it commits to a frame.
 */
size_t hdlc_frame_len(uint8_t dest_size, uint8_t src_size, size_t info_len);

/*
 * Address codec.  hdlc_addr_parse reads one address from buf and returns
 * its size (1, 2 or 4), METER_ENEEDMORE, or METER_EMALFORMED for a 3-byte
 * or over-long address.  hdlc_addr_put appends a in a->size bytes (out->err
 * METER_ENOSPC when full) and returns METER_EINVAL for a bad size or value.
 */
ssize_t hdlc_addr_parse(const uint8_t *buf, size_t len, struct hdlc_addr *a);
int hdlc_addr_put(struct mbuf *out, const struct hdlc_addr *a);
/* Same upper and lower parts (the wire size may differ). */
bool hdlc_addr_eq(const struct hdlc_addr *a, const struct hdlc_addr *b);

/* LLC header: E6 E6 00 for a command, E6 E7 00 for a response. */
void hdlc_put_llc(struct mbuf *out, bool response);
/*
 * Check the LLC header at the start of an information field.  Returns 0 and
 * sets *response, or METER_ENEEDMORE (under 3 bytes) / METER_EMALFORMED.
 */
int hdlc_check_llc(const uint8_t *info, size_t len, bool *response);

/*
 * SNRM/UA parameter negotiation, the information field 81 80 LL followed by
 * parameters 05 (max information field length transmit), 06 (... receive),
 * 07 (window size transmit), 08 (window size receive), each with a length
 * byte and a value of 1, 2 or 4 bytes.  Values are seen from the frame's
 * sender: in a SNRM, tx is what the client sends; in the UA, what the
 * server sends.  Parameters absent from the group keep the defaults
 * (128 bytes, window 1).
 */
struct hdlc_params {
	uint32_t max_info_tx;
	uint32_t max_info_rx;
	uint32_t window_tx;
	uint32_t window_rx;
};

/* Defaults of IEC 62056-46: 128 bytes, window 1. */
void hdlc_params_default(struct hdlc_params *p);

/*
 * Decode a parameter group (the whole information field of a SNRM or UA).
 * Unknown parameter identifiers inside the group are skipped.  Returns 0,
 * METER_EMALFORMED (not 81 80, a value of 0 or 3 or more than 4 bytes, a
 * group length that disagrees with len), or METER_EUNSUPPORTED.
 */
int hdlc_params_decode(const uint8_t *buf, size_t len, struct hdlc_params *p);

/*
 * Append the parameter group: max information lengths in one byte when
 * under 256, else two; windows in four bytes (what meters send).
 */
void hdlc_params_encode(struct mbuf *out, const struct hdlc_params *p);

/* Name of a frame type ("SNRM"), or "?". */
const char *hdlc_type_name(uint8_t type);

#endif
