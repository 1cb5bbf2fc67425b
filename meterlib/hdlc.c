/*
 * hdlc.c: the HDLC frame codec of IEC 62056-46, frame format type 3.
 *
 * It parses and builds single frames and leaves every decision about
 * sequence numbers and retransmission to hdlc_link.c.  A frame is delimited
 * by its 11-bit length field, not by its flags (DLMS uses no byte stuffing),
 * so the parser reads the length first, checks the header's HCS as soon as
 * the header is there (which rejects garbage early in a stream) and only
 * then waits for the rest.  Parsed frames point into the caller's buffer.
 */
#include "hdlc.h"

#include "meter_error.h"

/* CRC-16/X.25, reflected polynomial 0x8408, one entry per byte value. */
/* clang-format off */
static const uint16_t crc_table[256] = {
	0x0000, 0x1189, 0x2312, 0x329b, 0x4624, 0x57ad, 0x6536, 0x74bf,
	0x8c48, 0x9dc1, 0xaf5a, 0xbed3, 0xca6c, 0xdbe5, 0xe97e, 0xf8f7,
	0x1081, 0x0108, 0x3393, 0x221a, 0x56a5, 0x472c, 0x75b7, 0x643e,
	0x9cc9, 0x8d40, 0xbfdb, 0xae52, 0xdaed, 0xcb64, 0xf9ff, 0xe876,
	0x2102, 0x308b, 0x0210, 0x1399, 0x6726, 0x76af, 0x4434, 0x55bd,
	0xad4a, 0xbcc3, 0x8e58, 0x9fd1, 0xeb6e, 0xfae7, 0xc87c, 0xd9f5,
	0x3183, 0x200a, 0x1291, 0x0318, 0x77a7, 0x662e, 0x54b5, 0x453c,
	0xbdcb, 0xac42, 0x9ed9, 0x8f50, 0xfbef, 0xea66, 0xd8fd, 0xc974,
	0x4204, 0x538d, 0x6116, 0x709f, 0x0420, 0x15a9, 0x2732, 0x36bb,
	0xce4c, 0xdfc5, 0xed5e, 0xfcd7, 0x8868, 0x99e1, 0xab7a, 0xbaf3,
	0x5285, 0x430c, 0x7197, 0x601e, 0x14a1, 0x0528, 0x37b3, 0x263a,
	0xdecd, 0xcf44, 0xfddf, 0xec56, 0x98e9, 0x8960, 0xbbfb, 0xaa72,
	0x6306, 0x728f, 0x4014, 0x519d, 0x2522, 0x34ab, 0x0630, 0x17b9,
	0xef4e, 0xfec7, 0xcc5c, 0xddd5, 0xa96a, 0xb8e3, 0x8a78, 0x9bf1,
	0x7387, 0x620e, 0x5095, 0x411c, 0x35a3, 0x242a, 0x16b1, 0x0738,
	0xffcf, 0xee46, 0xdcdd, 0xcd54, 0xb9eb, 0xa862, 0x9af9, 0x8b70,
	0x8408, 0x9581, 0xa71a, 0xb693, 0xc22c, 0xd3a5, 0xe13e, 0xf0b7,
	0x0840, 0x19c9, 0x2b52, 0x3adb, 0x4e64, 0x5fed, 0x6d76, 0x7cff,
	0x9489, 0x8500, 0xb79b, 0xa612, 0xd2ad, 0xc324, 0xf1bf, 0xe036,
	0x18c1, 0x0948, 0x3bd3, 0x2a5a, 0x5ee5, 0x4f6c, 0x7df7, 0x6c7e,
	0xa50a, 0xb483, 0x8618, 0x9791, 0xe32e, 0xf2a7, 0xc03c, 0xd1b5,
	0x2942, 0x38cb, 0x0a50, 0x1bd9, 0x6f66, 0x7eef, 0x4c74, 0x5dfd,
	0xb58b, 0xa402, 0x9699, 0x8710, 0xf3af, 0xe226, 0xd0bd, 0xc134,
	0x39c3, 0x284a, 0x1ad1, 0x0b58, 0x7fe7, 0x6e6e, 0x5cf5, 0x4d7c,
	0xc60c, 0xd785, 0xe51e, 0xf497, 0x8028, 0x91a1, 0xa33a, 0xb2b3,
	0x4a44, 0x5bcd, 0x6956, 0x78df, 0x0c60, 0x1de9, 0x2f72, 0x3efb,
	0xd68d, 0xc704, 0xf59f, 0xe416, 0x90a9, 0x8120, 0xb3bb, 0xa232,
	0x5ac5, 0x4b4c, 0x79d7, 0x685e, 0x1ce1, 0x0d68, 0x3ff3, 0x2e7a,
	0xe70e, 0xf687, 0xc41c, 0xd595, 0xa12a, 0xb0a3, 0x8238, 0x93b1,
	0x6b46, 0x7acf, 0x4854, 0x59dd, 0x2d62, 0x3ceb, 0x0e70, 0x1ff9,
	0xf78f, 0xe606, 0xd49d, 0xc514, 0xb1ab, 0xa022, 0x92b9, 0x8330,
	0x7bc7, 0x6a4e, 0x58d5, 0x495c, 0x3de3, 0x2c6a, 0x1ef1, 0x0f78,
};
/* clang-format on */

/* Control bytes with the P/F bit (0x10) cleared. */
#define CTL_SNRM 0x83
#define CTL_DISC 0x43
#define CTL_UA   0x63
#define CTL_DM   0x0f
#define CTL_FRMR 0x87
#define CTL_UI   0x03
#define CTL_RR   0x01
#define CTL_RNR  0x05
#define CTL_PF   0x10

/* Parameter identifiers of the 81 80 group. */
#define PARAM_FORMAT    0x81
#define PARAM_GROUP     0x80
#define PARAM_INFO_TX   0x05
#define PARAM_INFO_RX   0x06
#define PARAM_WINDOW_TX 0x07
#define PARAM_WINDOW_RX 0x08

uint16_t
hdlc_crc16(const uint8_t *p, size_t n)
{
	uint16_t crc = 0xffff;

	while (n--)
		crc = (uint16_t)(crc >> 8) ^ crc_table[(crc ^ *p++) & 0xff];
	return crc ^ 0xffff;
}

static uint16_t
le16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static void
put_le16(uint8_t *p, uint16_t v)
{
	p[0] = v & 0xff;
	p[1] = v >> 8;
}

ssize_t
hdlc_addr_parse(const uint8_t *buf, size_t len, struct hdlc_addr *a)
{
	size_t n;

	for (n = 0; n < len && n < 4; n++)
		if (buf[n] & 1)
			break;
	if (n == len && n < 4)
		return METER_ENEEDMORE;
	if (n == 4 || n == 2)
		return METER_EMALFORMED; /* no end bit in 4 bytes, or 3 bytes */
	n++;
	switch (n) {
	case 1:
		a->upper = buf[0] >> 1;
		a->lower = 0;
		break;
	case 2:
		a->upper = buf[0] >> 1;
		a->lower = buf[1] >> 1;
		break;
	default:
		a->upper = (uint16_t)((buf[0] >> 1) << 7 | buf[1] >> 1);
		a->lower = (uint16_t)((buf[2] >> 1) << 7 | buf[3] >> 1);
		break;
	}
	a->size = (uint8_t)n;
	return (ssize_t)n;
}

static bool
addr_valid(const struct hdlc_addr *a)
{
	switch (a->size) {
	case 1:
		return a->upper <= 0x7f && a->lower == 0;
	case 2:
		return a->upper <= 0x7f && a->lower <= 0x7f;
	case 4:
		return a->upper <= 0x3fff && a->lower <= 0x3fff;
	default:
		return false;
	}
}

static void
addr_write(uint8_t *d, const struct hdlc_addr *a)
{
	switch (a->size) {
	case 1:
		d[0] = (uint8_t)(a->upper << 1 | 1);
		break;
	case 2:
		d[0] = (uint8_t)(a->upper << 1);
		d[1] = (uint8_t)(a->lower << 1 | 1);
		break;
	default:
		d[0] = (uint8_t)((a->upper >> 7) << 1);
		d[1] = (uint8_t)((a->upper & 0x7f) << 1);
		d[2] = (uint8_t)((a->lower >> 7) << 1);
		d[3] = (uint8_t)((a->lower & 0x7f) << 1 | 1);
		break;
	}
}

int
hdlc_addr_put(struct mbuf *out, const struct hdlc_addr *a)
{
	uint8_t *d;

	if (!addr_valid(a))
		return METER_EINVAL;
	if ((d = mbuf_reserve(out, a->size)) == NULL)
		return METER_ENOSPC;
	addr_write(d, a);
	return 0;
}

bool
hdlc_addr_eq(const struct hdlc_addr *a, const struct hdlc_addr *b)
{
	return a->upper == b->upper && a->lower == b->lower;
}

/* Fill type, ns, nr and pf from the control byte. */
static int
decode_control(uint8_t c, struct hdlc_frame *f)
{
	f->control = c;
	f->pf = (c & CTL_PF) != 0;
	f->ns = 0;
	f->nr = 0;
	if ((c & 1) == 0) {
		f->type = HDLC_I;
		f->ns = (c >> 1) & 7;
		f->nr = c >> 5;
		return 0;
	}
	if ((c & 3) == 1) {
		f->nr = c >> 5;
		switch (c & 0x0f) {
		case CTL_RR:
			f->type = HDLC_RR;
			return 0;
		case CTL_RNR:
			f->type = HDLC_RNR;
			return 0;
		default:
			return METER_EUNSUPPORTED; /* REJ, SREJ */
		}
	}
	switch (c & ~CTL_PF) {
	case CTL_SNRM:
		f->type = HDLC_SNRM;
		return 0;
	case CTL_DISC:
		f->type = HDLC_DISC;
		return 0;
	case CTL_UA:
		f->type = HDLC_UA;
		return 0;
	case CTL_DM:
		f->type = HDLC_DM;
		return 0;
	case CTL_FRMR:
		f->type = HDLC_FRMR;
		return 0;
	case CTL_UI:
		f->type = HDLC_UI;
		return 0;
	default:
		return METER_EUNSUPPORTED;
	}
}

uint8_t
hdlc_control(uint8_t type, uint8_t ns, uint8_t nr, bool pf)
{
	uint8_t p = pf ? CTL_PF : 0;

	switch (type) {
	case HDLC_I:
		return (uint8_t)((nr & 7) << 5 | p | (ns & 7) << 1);
	case HDLC_RR:
		return (uint8_t)((nr & 7) << 5 | p | CTL_RR);
	case HDLC_RNR:
		return (uint8_t)((nr & 7) << 5 | p | CTL_RNR);
	case HDLC_SNRM:
		return CTL_SNRM | p;
	case HDLC_DISC:
		return CTL_DISC | p;
	case HDLC_UA:
		return CTL_UA | p;
	case HDLC_DM:
		return CTL_DM | p;
	case HDLC_FRMR:
		return CTL_FRMR | p;
	case HDLC_UI:
		return CTL_UI | p;
	default:
		return 0;
	}
}

/*
 * Parse a frame that starts with its format field (no flag).  Returns the
 * frame's length (its length field) or an error.  Checks run in wire order
 * on whatever is present, so a bad header is refused before its body has
 * arrived.
 */
static ssize_t
parse_body(const uint8_t *b, size_t len, struct hdlc_frame *f)
{
	size_t flen, avail, pos, hdr;
	ssize_t n;
	int rc;

	if (len < 1)
		return METER_ENEEDMORE;
	if ((b[0] & 0xf0) != 0xa0)
		return METER_EMALFORMED;
	if (len < 2)
		return METER_ENEEDMORE;
	flen = (size_t)(b[0] & 7) << 8 | b[1];
	if (flen < 7)
		return METER_ELENGTH;
	avail = len < flen ? len : flen;

	pos = 2;
	n = hdlc_addr_parse(b + pos, avail - pos, &f->dest);
	if (n == METER_ENEEDMORE && len >= flen)
		return METER_ELENGTH; /* the address runs past the frame */
	if (n < 0)
		return n;
	pos += (size_t)n;
	n = hdlc_addr_parse(b + pos, avail - pos, &f->src);
	if (n == METER_ENEEDMORE && len >= flen)
		return METER_ELENGTH;
	if (n < 0)
		return n;
	pos += (size_t)n;
	if (pos >= avail)
		return len >= flen ? METER_ELENGTH : METER_ENEEDMORE;
	hdr = pos + 1; /* through the control byte */
	if (flen < hdr + 2)
		return METER_ELENGTH;
	f->has_hcs = flen > hdr + 2;
	f->hcs = 0;
	f->info = NULL;
	f->info_len = 0;
	if (f->has_hcs) {
		if (flen < hdr + 4)
			return METER_ELENGTH; /* no room for an HCS and an FCS */
		if (len < hdr + 2)
			return METER_ENEEDMORE;
		f->hcs = le16(b + hdr);
		if (hdlc_crc16(b, hdr) != f->hcs)
			return METER_ECHECKSUM;
		f->info = b + hdr + 2;
		f->info_len = flen - hdr - 4;
	}
	if (len < flen)
		return METER_ENEEDMORE;
	f->fcs = le16(b + flen - 2);
	if (hdlc_crc16(b, flen - 2) != f->fcs)
		return METER_ECHECKSUM;
	if ((rc = decode_control(b[pos], f)) < 0)
		return rc;
	f->segmented = (b[0] & 0x08) != 0;
	f->length = (uint16_t)flen;
	return (ssize_t)flen;
}

ssize_t
hdlc_parse(const uint8_t *buf, size_t len, struct hdlc_frame *f)
{
	size_t off = 0, end;
	ssize_t n;

	if (len == 0)
		return METER_ENEEDMORE;
	if (buf[0] == HDLC_FLAG)
		off = 1;
	if ((n = parse_body(buf + off, len - off, f)) < 0)
		return n;
	f->flagged = off == 1;
	end = off + (size_t)n;
	if (f->flagged) {
		if (end >= len)
			return METER_ENEEDMORE;
		if (buf[end] != HDLC_FLAG)
			return METER_EMALFORMED;
		end++;
	} else if (end < len && buf[end] == HDLC_FLAG) {
		end++;
	}
	return (ssize_t)end;
}

int
hdlc_scan(const uint8_t *buf, size_t len, struct hdlc_frame *f, size_t *drop)
{
	size_t i = 0, end;
	ssize_t n;

	while (i < len && buf[i] != HDLC_FLAG)
		i++;
	if (i == len) {
		*drop = len; /* all garbage */
		return 0;
	}
	/* Keep the last of a run of flags: it opens the frame. */
	while (i + 1 < len && buf[i + 1] == HDLC_FLAG)
		i++;
	n = parse_body(buf + i + 1, len - i - 1, f);
	if (n == METER_ENEEDMORE) {
		*drop = i;
		return 0;
	}
	if (n < 0) {
		*drop = i + 1; /* skip this flag, look for the next */
		return (int)n;
	}
	end = i + 1 + (size_t)n;
	if (end == len) {
		*drop = i;
		return 0;
	}
	if (buf[end] != HDLC_FLAG) {
		*drop = i + 1;
		return METER_EMALFORMED;
	}
	f->flagged = true;
	*drop = end; /* the closing flag may open the next frame */
	return 1;
}

static bool
type_has_info(uint8_t type)
{
	switch (type) {
	case HDLC_I:
	case HDLC_UI:
	case HDLC_SNRM:
	case HDLC_UA:
	case HDLC_FRMR:
		return true;
	default:
		return false;
	}
}

ssize_t
hdlc_encode(struct mbuf *out, const struct hdlc_frame *f)
{
	size_t hdr, flen;
	uint8_t *d, ctl;

	/* 0 is a valid control byte (I-frame 0/0 without poll): check the
	 * type itself. */
	if (f->type < HDLC_I || f->type > HDLC_UI)
		return METER_EINVAL;
	ctl = hdlc_control(f->type, f->ns, f->nr, f->pf);
	if (!addr_valid(&f->dest) || !addr_valid(&f->src))
		return METER_EINVAL;
	if (f->info_len > 0 && (f->info == NULL || !type_has_info(f->type)))
		return METER_EINVAL;
	hdr = 2 + f->dest.size + f->src.size + 1;
	if (f->info_len > HDLC_MAX_LENGTH)
		return METER_ELENGTH;
	flen = hdr + (f->info_len ? 2 + f->info_len : 0) + 2;
	if (flen > HDLC_MAX_LENGTH)
		return METER_ELENGTH;
	if ((d = mbuf_reserve(out, flen + 2)) == NULL)
		return METER_ENOSPC;

	d[0] = HDLC_FLAG;
	d++;
	d[0] = (uint8_t)(0xa0 | (f->segmented ? 0x08 : 0) | flen >> 8);
	d[1] = flen & 0xff;
	addr_write(d + 2, &f->dest);
	addr_write(d + 2 + f->dest.size, &f->src);
	d[hdr - 1] = ctl;
	if (f->info_len) {
		put_le16(d + hdr, hdlc_crc16(d, hdr));
		memcpy(d + hdr + 2, f->info, f->info_len);
	}
	put_le16(d + flen - 2, hdlc_crc16(d, flen - 2));
	d[flen] = HDLC_FLAG;
	return (ssize_t)(flen + 2);
}

size_t
hdlc_frame_len(uint8_t dest_size, uint8_t src_size, size_t info_len)
{
	/* flags, format, addresses, control, HCS (with information), FCS */
	return 2 + 2 + (size_t)dest_size + src_size + 1 + (info_len ? 2 + info_len : 0) + 2;
}

void
hdlc_put_llc(struct mbuf *out, bool response)
{
	uint8_t llc[HDLC_LLC_LEN] = {HDLC_LLC_DST, response ? HDLC_LLC_RSP : HDLC_LLC_CMD, 0};

	mbuf_put(out, llc, sizeof(llc));
}

int
hdlc_check_llc(const uint8_t *info, size_t len, bool *response)
{
	if (len < HDLC_LLC_LEN)
		return METER_ENEEDMORE;
	if (info[0] != HDLC_LLC_DST || info[2] != 0)
		return METER_EMALFORMED;
	if (info[1] == HDLC_LLC_CMD)
		*response = false;
	else if (info[1] == HDLC_LLC_RSP)
		*response = true;
	else
		return METER_EMALFORMED;
	return 0;
}

void
hdlc_params_default(struct hdlc_params *p)
{
	p->max_info_tx = HDLC_DEFAULT_INFO;
	p->max_info_rx = HDLC_DEFAULT_INFO;
	p->window_tx = HDLC_DEFAULT_WINDOW;
	p->window_rx = HDLC_DEFAULT_WINDOW;
}

int
hdlc_params_decode(const uint8_t *buf, size_t len, struct hdlc_params *p)
{
	size_t pos, end, vlen, i;
	uint32_t v;

	hdlc_params_default(p);
	if (len < 3 || buf[0] != PARAM_FORMAT || buf[1] != PARAM_GROUP)
		return METER_EMALFORMED;
	end = 3 + (size_t)buf[2];
	if (end > len)
		return METER_EMALFORMED;
	/* Bytes after the group would be further groups (user data); they are
	 * not ours to interpret. */
	for (pos = 3; pos < end; pos += vlen) {
		if (end - pos < 2)
			return METER_EMALFORMED;
		uint8_t id = buf[pos];
		vlen = buf[pos + 1];
		pos += 2;
		if (vlen > end - pos)
			return METER_EMALFORMED;
		if (id < PARAM_INFO_TX || id > PARAM_WINDOW_RX)
			continue;
		if (vlen != 1 && vlen != 2 && vlen != 4)
			return METER_EMALFORMED;
		for (v = 0, i = 0; i < vlen; i++)
			v = v << 8 | buf[pos + i];
		switch (id) {
		case PARAM_INFO_TX:
			p->max_info_tx = v;
			break;
		case PARAM_INFO_RX:
			p->max_info_rx = v;
			break;
		case PARAM_WINDOW_TX:
			p->window_tx = v;
			break;
		default:
			p->window_rx = v;
			break;
		}
	}
	return 0;
}

static void
put_param(struct mbuf *out, uint8_t id, uint32_t v, size_t size)
{
	mbuf_u8(out, id);
	mbuf_u8(out, (uint8_t)size);
	if (size == 1)
		mbuf_u8(out, (uint8_t)v);
	else if (size == 2)
		mbuf_be16(out, (uint16_t)v);
	else
		mbuf_be32(out, v);
}

static size_t
info_size(uint32_t v)
{
	return v < 0x100 ? 1 : v < 0x10000 ? 2 : 4;
}

void
hdlc_params_encode(struct mbuf *out, const struct hdlc_params *p)
{
	size_t tx = info_size(p->max_info_tx), rx = info_size(p->max_info_rx);

	mbuf_u8(out, PARAM_FORMAT);
	mbuf_u8(out, PARAM_GROUP);
	mbuf_u8(out, (uint8_t)(2 + tx + 2 + rx + 6 + 6));
	put_param(out, PARAM_INFO_TX, p->max_info_tx, tx);
	put_param(out, PARAM_INFO_RX, p->max_info_rx, rx);
	put_param(out, PARAM_WINDOW_TX, p->window_tx, 4);
	put_param(out, PARAM_WINDOW_RX, p->window_rx, 4);
}

const char *
hdlc_type_name(uint8_t type)
{
	static const char *const names[] = {
	    [HDLC_I] = "I",       [HDLC_RR] = "RR",     [HDLC_RNR] = "RNR",
	    [HDLC_SNRM] = "SNRM", [HDLC_DISC] = "DISC", [HDLC_UA] = "UA",
	    [HDLC_DM] = "DM",     [HDLC_FRMR] = "FRMR", [HDLC_UI] = "UI",
	};

	if (type < sizeof(names) / sizeof(names[0]) && names[type])
		return names[type];
	return "?";
}
