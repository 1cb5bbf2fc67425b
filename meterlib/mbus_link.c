/*
 * mbus_link.c: EN 13757-2 frames.  Recognises the single character E5,
 * short frames (10 C A CS 16), control and long frames (68 L L 68 C A CI
 * ... CS 16), checks start, repeated length, stop byte and the 8-bit sum,
 * and hands back a view of the user data.  mbus_stream_next() lets a
 * driver read frames out of a TCP byte stream from a gateway, where reads
 * split frames anywhere and a reconnect can leave half a frame in front.
 */
#include "mbus.h"

static uint8_t
sum8(const uint8_t *p, size_t n)
{
	uint8_t s = 0;
	while (n--)
		s += *p++;
	return s;
}

int
mbus_frame_parse(const uint8_t *buf, size_t len, struct mbus_frame *f)
{
	if (len == 0)
		return METER_ENEEDMORE;
	switch (buf[0]) {
	case MBUS_ACK:
		f->type = MBUS_FRAME_ACK;
		f->c = f->a = f->ci = 0;
		f->data = NULL;
		f->data_len = 0;
		return 1;
	case MBUS_START_SHORT:
		if (len < 5)
			return METER_ENEEDMORE;
		if (buf[4] != MBUS_STOP)
			return METER_EMALFORMED;
		if (sum8(buf + 1, 2) != buf[3])
			return METER_ECHECKSUM;
		f->type = MBUS_FRAME_SHORT;
		f->c = buf[1];
		f->a = buf[2];
		f->ci = 0;
		f->data = NULL;
		f->data_len = 0;
		return 5;
	case MBUS_START_LONG:
		break;
	default:
		return METER_EMALFORMED;
	}

	/* 68 L L 68: check what we have of the header before waiting for more. */
	if (len >= 3 && buf[1] != buf[2])
		return METER_EMALFORMED;
	if (len >= 4 && buf[3] != MBUS_START_LONG)
		return METER_EMALFORMED;
	if (len < 4)
		return METER_ENEEDMORE;
	size_t l = buf[1];
	if (l < 3)		/* C, A and CI are mandatory */
		return METER_ELENGTH;
	size_t total = l + 6;
	if (len < total)
		return METER_ENEEDMORE;
	if (buf[total - 1] != MBUS_STOP)
		return METER_EMALFORMED;
	if (sum8(buf + 4, l) != buf[4 + l])
		return METER_ECHECKSUM;
	f->type = l == 3 ? MBUS_FRAME_CONTROL : MBUS_FRAME_LONG;
	f->c = buf[4];
	f->a = buf[5];
	f->ci = buf[6];
	f->data = buf + 7;
	f->data_len = l - 3;
	return (int)total;
}

const char *
mbus_c_name(uint8_t c)
{
	/* FCB/FCV (master) and ACD/DFC (slave) do not change the function. */
	switch (c & 0x4F) {
	case MBUS_C_SND_NKE:
		return "SND_NKE";
	case MBUS_C_SND_UD & 0x4F:
		return "SND_UD";
	case MBUS_C_REQ_UD2 & 0x4F:
		return "REQ_UD2";
	case MBUS_C_REQ_UD1 & 0x4F:
		return "REQ_UD1";
	case MBUS_C_RSP_UD:
		return "RSP_UD";
	default:
		return "unknown";
	}
}

int
mbus_stream_next(const uint8_t *buf, size_t len, struct mbus_frame *f, size_t *skipped)
{
	for (size_t i = 0; i < len; i++) {
		uint8_t b = buf[i];
		if (b != MBUS_ACK && b != MBUS_START_SHORT && b != MBUS_START_LONG)
			continue;
		int n = mbus_frame_parse(buf + i, len - i, f);
		if (n > 0) {
			*skipped = i;
			return (int)i + n;
		}
		if (n == METER_ENEEDMORE) {
			/* A valid prefix: keep it, drop only what came before. */
			*skipped = i;
			return METER_ENEEDMORE;
		}
		/* Not a frame after all: it was garbage, look further on. */
	}
	*skipped = len;
	return METER_ENEEDMORE;
}
