/*
 * mbus_encode.c: building M-Bus telegrams.  The head-end needs the
 * master's side (SND_NKE, REQ_UD2 with the frame count bit, selection of a
 * slave by secondary address); the simulator needs the slave's (RSP_UD
 * with a long header and records of every coding).  Everything is written
 * through a struct mbuf, so a too-small buffer is one check at the end.
 */
#include <string.h>

#include "mbus.h"

static uint8_t
sum8(const uint8_t *p, size_t n)
{
	uint8_t s = 0;
	while (n--)
		s += *p++;
	return s;
}

void
mbus_encode_ack(struct mbuf *b)
{
	mbuf_u8(b, MBUS_ACK);
}

void
mbus_encode_short(struct mbuf *b, uint8_t c, uint8_t a)
{
	uint8_t *p = mbuf_reserve(b, 5);
	if (p == NULL)
		return;
	p[0] = MBUS_START_SHORT;
	p[1] = c;
	p[2] = a;
	p[3] = (uint8_t)(c + a);
	p[4] = MBUS_STOP;
}

void
mbus_encode_long(struct mbuf *b, uint8_t c, uint8_t a, uint8_t ci, const uint8_t *data,
		 size_t len)
{
	if (len > 252) {
		b->err = METER_ENOSPC;	/* L is one byte: C, A, CI and 252 data bytes */
		return;
	}
	uint8_t *p = mbuf_reserve(b, len + 9);
	if (p == NULL)
		return;
	p[0] = p[3] = MBUS_START_LONG;
	p[1] = p[2] = (uint8_t)(len + 3);
	p[4] = c;
	p[5] = a;
	p[6] = ci;
	if (len)
		memcpy(p + 7, data, len);
	p[7 + len] = sum8(p + 4, len + 3);
	p[8 + len] = MBUS_STOP;
}

void
mbus_encode_snd_nke(struct mbuf *b, uint8_t a)
{
	mbus_encode_short(b, MBUS_C_SND_NKE, a);
}

void
mbus_encode_req_ud2(struct mbuf *b, uint8_t a, bool fcb)
{
	mbus_encode_short(b, MBUS_C_REQ_UD2 | (fcb ? MBUS_C_FCB : 0), a);
}

void
mbus_encode_select(struct mbuf *b, const struct mbus_secondary *sel)
{
	uint8_t d[8];
	memcpy(d, sel->id_bcd, 4);
	d[4] = (uint8_t)sel->manufacturer;
	d[5] = (uint8_t)(sel->manufacturer >> 8);
	d[6] = sel->version;
	d[7] = sel->medium;
	mbus_encode_long(b, MBUS_C_SND_UD, MBUS_ADDR_NETWORK, MBUS_CI_SELECT, d, sizeof(d));
}

bool
mbus_secondary_match(const struct mbus_secondary *sel, const struct mbus_header *h)
{
	uint32_t id = h->id;
	/* Digits compare one by one, least significant first; F matches any. */
	for (int i = 0; i < 4; i++) {
		uint8_t s = sel->id_bcd[i];
		unsigned lo = id % 10, hi = (id / 10) % 10;
		id /= 100;
		if ((s & 15) != 0xF && (s & 15) != lo)
			return false;
		if ((s >> 4) != 0xF && (s >> 4) != hi)
			return false;
	}
	if (sel->manufacturer != 0xFFFF && sel->manufacturer != h->manufacturer)
		return false;
	if (sel->version != 0xFF && sel->version != h->version)
		return false;
	if (sel->medium != 0xFF && sel->medium != h->medium)
		return false;
	return true;
}

static int
put_int(struct mbuf *b, int64_t v, size_t n)
{
	if (n < 8) {
		int64_t lim = (int64_t)1 << (8 * n - 1);
		if (v < -lim || v >= lim)
			return METER_ERANGE;
	}
	uint8_t *p = mbuf_reserve(b, n);
	if (p)
		for (size_t i = 0; i < n; i++)
			p[i] = (uint8_t)((uint64_t)v >> (8 * i));
	return 0;
}

static int
put_bcd(struct mbuf *b, int64_t v, size_t n)
{
	bool neg = v < 0;
	uint64_t m = neg ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
	uint8_t tmp[8];

	/* A negative value gives its top digit to the sign nibble. */
	for (size_t i = 0; i < n; i++) {
		unsigned lo = m % 10, hi = (m / 10) % 10;
		m /= 100;
		if (neg && i == n - 1) {
			if (hi != 0)
				return METER_ERANGE;
			hi = 0xF;
		}
		tmp[i] = (uint8_t)(hi << 4 | lo);
	}
	if (m)
		return METER_ERANGE;
	mbuf_put(b, tmp, n);
	return 0;
}

int
mbus_encode_record(struct mbuf *b, const struct mbus_rec_out *r)
{
	if (r->function == MBUS_FN_MANUFACTURER || r->function == MBUS_FN_MORE_FOLLOWS) {
		mbuf_u8(b, r->function == MBUS_FN_MANUFACTURER ? 0x0F : 0x1F);
		mbuf_put(b, r->bytes, r->nbytes);
		return 0;
	}
	if (r->function > MBUS_FN_ERROR || r->dif_coding > 0x0E ||
	    r->vib_len == 0 || r->vib == NULL)
		return METER_EINVAL;
	if (r->storage >> 41 || r->tariff >> 20 || r->subunit >> 10)
		return METER_ERANGE;

	/* How many DIFEs the storage, tariff and subunit bits need. */
	unsigned ndife = 0;
	for (uint64_t s = r->storage >> 1; s; s >>= 4)
		ndife++;
	unsigned k = 0;
	for (uint32_t t = r->tariff; t; t >>= 2)
		k++;
	if (k > ndife)
		ndife = k;
	k = 0;
	for (unsigned su = r->subunit; su; su >>= 1)
		k++;
	if (k > ndife)
		ndife = k;

	mbuf_u8(b, (uint8_t)((ndife ? 0x80 : 0) | (r->storage & 1) << 6 | r->function << 4 |
			     r->dif_coding));
	for (unsigned i = 0; i < ndife; i++) {
		uint8_t e = (uint8_t)((r->storage >> (1 + 4 * i)) & 15);
		e |= (uint8_t)(((r->tariff >> (2 * i)) & 3) << 4);
		e |= (uint8_t)(((r->subunit >> i) & 1) << 6);
		if (i + 1 < ndife)
			e |= 0x80;
		mbuf_u8(b, e);
	}
	mbuf_put(b, r->vib, r->vib_len);

	static const uint8_t len[16] = {0, 1, 2, 3, 4, 4, 6, 8, 0, 1, 2, 3, 4, 0, 6, 0};
	unsigned c = r->dif_coding;
	if (c == 0x0D) {
		mbuf_u8(b, r->lvar);
		size_t dl;
		if (r->lvar <= 0xBF)
			dl = r->lvar;
		else if (r->lvar >= 0xC0 && r->lvar <= 0xC9)
			dl = r->lvar - 0xC0u;
		else if (r->lvar >= 0xD0 && r->lvar <= 0xD9)
			dl = r->lvar - 0xD0u;
		else if (r->lvar >= 0xE0 && r->lvar <= 0xEF)
			dl = r->lvar - 0xE0u;
		else if (r->lvar >= 0xF0 && r->lvar <= 0xFA)
			dl = 4 * (r->lvar - 0xECu);
		else
			return METER_EINVAL;
		if (dl != r->nbytes)
			return METER_EINVAL;
		mbuf_put(b, r->bytes, dl);
		return 0;
	}
	if (c == 0 || c == 8)
		return 0;
	if (c == 5) {
		float f = (float)r->real;
		uint32_t u;
		memcpy(&u, &f, 4);
		return put_int(b, (int32_t)u, 4);
	}
	if (c >= 9)
		return put_bcd(b, r->ival, len[c]);
	return put_int(b, r->ival, len[c]);
}

int
mbus_encode_rsp_ud(struct mbuf *b, uint8_t a, const struct mbus_header *h,
		   const struct mbus_rec_out *recs, size_t n)
{
	uint8_t ud[252];
	struct mbuf u;
	uint32_t id = h->id;

	mbuf_init(&u, ud, sizeof(ud));
	/* Identification as 8 BCD digits, least significant byte first. */
	for (int i = 0; i < 4; i++) {
		mbuf_u8(&u, (uint8_t)((id / 10 % 10) << 4 | id % 10));
		id /= 100;
	}
	mbuf_u8(&u, (uint8_t)h->manufacturer);
	mbuf_u8(&u, (uint8_t)(h->manufacturer >> 8));
	mbuf_u8(&u, h->version);
	mbuf_u8(&u, h->medium);
	mbuf_u8(&u, h->access);
	mbuf_u8(&u, h->status);
	mbuf_u8(&u, (uint8_t)h->signature);
	mbuf_u8(&u, (uint8_t)(h->signature >> 8));
	for (size_t i = 0; i < n; i++) {
		int rc = mbus_encode_record(&u, &recs[i]);
		if (rc < 0)
			return rc;
	}
	if (u.err)
		return METER_ELENGTH;
	mbus_encode_long(b, MBUS_C_RSP_UD, a, MBUS_CI_RSP_LONG, ud, u.len);
	return b->err ? b->err : 0;
}
