/*
 * test_mbus_encode.c: encode -> decode round trips.  Random records of
 * every data coding (integers of each width, real, BCD of each length and
 * sign, LVAR text/BCD/binary, no data, manufacturer data), with storage,
 * tariff and subunit spread over DIFE chains, are built into RSP_UD
 * frames and must decode to what was put in.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mbus.h"

static uint64_t rng = 0x9E3779B97F4A7C15u;

static uint64_t
rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static int64_t
rnd_signed(unsigned bytes)
{
	int64_t v = (int64_t)rnd();
	if (bytes < 8)
		v >>= 64 - 8 * bytes;	/* arithmetic: stays in range */
	return v;
}

static int64_t
rnd_bcd(unsigned digits)
{
	int64_t v = 0;
	for (unsigned i = 0; i + 1 < digits; i++)
		v = v * 10 + (int64_t)(rnd() % 10);
	if (rnd() & 1)
		return -v;	/* top digit goes to the sign nibble */
	return v * 10 + (int64_t)(rnd() % 10);
}

static const uint8_t vibs[][3] = {
	{0x03}, {0x06}, {0x13}, {0x2B}, {0x5B}, {0x22}, {0xFD, 0x48}, {0xFD, 0x59}, {0xFB, 0x01},
	{0x84, 0x74},
};

Test(mbus_encode, random_records_round_trip)
{
	static const uint8_t codings[] = {0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 14, 0xD};
	static const uint8_t bcd_digits[16] = {[9] = 2, [10] = 4, [11] = 6, [12] = 8, [14] = 12};
	static const uint8_t int_bytes[8] = {0, 1, 2, 3, 4, 0, 6, 8};
	unsigned checked = 0;

	for (int round = 0; round < 400; round++) {
		struct mbus_rec_out out[12];
		uint8_t lvdata[12][16];
		size_t n = 1 + rnd() % 11;
		for (size_t i = 0; i < n; i++) {
			struct mbus_rec_out *r = &out[i];
			memset(r, 0, sizeof(*r));
			r->function = (enum mbus_function)(rnd() % 4);
			r->storage = rnd() % 4 ? rnd() % 4 : rnd() >> 23;
			r->tariff = rnd() % 3 ? 0 : (uint32_t)(rnd() >> 44);
			r->subunit = rnd() % 3 ? 0 : (uint16_t)(rnd() >> 54);
			r->dif_coding = codings[rnd() % sizeof(codings)];
			size_t v = rnd() % (sizeof(vibs) / sizeof(vibs[0]));
			r->vib = vibs[v];
			r->vib_len = vibs[v][0] & 0x80 ? 2 : 1;
			if (r->dif_coding == 5)
				r->real = (double)(float)((double)rnd_signed(3) / 8.0);
			else if (bcd_digits[r->dif_coding])
				r->ival = rnd_bcd(bcd_digits[r->dif_coding]);
			else if (r->dif_coding && r->dif_coding < 8)
				r->ival = rnd_signed(int_bytes[r->dif_coding]);
			else if (r->dif_coding == 0xD) {
				unsigned kind = rnd() % 3, len = 1 + rnd() % 8;
				for (unsigned k = 0; k < len; k++)
					lvdata[i][k] = kind == 0 ? (uint8_t)('A' + rnd() % 26)
						      : kind == 1 ? (uint8_t)(rnd() % 10 * 16 + rnd() % 10)
								  : (uint8_t)rnd();
				r->lvar = (uint8_t)(kind == 0 ? len : kind == 1 ? 0xC0 + len : 0xE0 + len);
				r->bytes = lvdata[i];
				r->nbytes = len;
			}
		}
		if (rnd() % 4 == 0) {	/* manufacturer data at the end */
			out[n] = (struct mbus_rec_out){.function = rnd() & 1 ? MBUS_FN_MANUFACTURER
									    : MBUS_FN_MORE_FOLLOWS,
						       .bytes = lvdata[0], .nbytes = rnd() % 8};
			n++;
		}

		struct mbus_header h = {.id = (uint32_t)(rnd() % 100000000), .manufacturer = 0x2C2D,
					.version = 1, .medium = 2, .access = (uint8_t)rnd()};
		uint8_t frame[MBUS_FRAME_MAX];
		struct mbuf b;
		mbuf_init(&b, frame, sizeof(frame));
		int rc = mbus_encode_rsp_ud(&b, 1, &h, out, n);
		if (rc == METER_ELENGTH)
			continue;	/* too much for one telegram: try another */
		cr_assert_eq(rc, 0, "round %d: %s", round, meter_strerror(rc));

		struct mbus_frame f;
		struct mbus_telegram t;
		struct mbus_record recs[12];
		size_t got;
		cr_assert_eq(mbus_frame_parse(frame, b.len, &f), (int)b.len);
		cr_assert_eq(mbus_telegram_decode(&f, &t), 0);
		cr_assert_eq(t.hdr.id, h.id);
		cr_assert_eq(t.hdr.access, h.access);
		cr_assert_eq(mbus_records_decode(&t, recs, 12, &got), 0);
		cr_assert_eq(got, n, "round %d", round);
		for (size_t i = 0; i < n; i++) {
			const struct mbus_rec_out *o = &out[i];
			const struct mbus_record *r = &recs[i];
			cr_assert_eq(r->function, o->function, "round %d rec %zu", round, i);
			if (o->function >= MBUS_FN_MANUFACTURER) {
				cr_assert_eq(r->data_len, o->nbytes);
				cr_assert_eq(memcmp(r->data, o->bytes, o->nbytes), 0);
				continue;
			}
			cr_assert_eq(r->storage, o->storage, "round %d rec %zu", round, i);
			cr_assert_eq(r->tariff, o->tariff);
			cr_assert_eq(r->subunit, o->subunit);
			cr_assert_eq(r->vif, o->vib[0]);
			if (o->dif_coding == 5) {
				cr_assert_eq(r->coding, MBUS_CODING_REAL);
				cr_assert(fabs(r->value - o->real * r->info.scale) <=
					  fabs(o->real * r->info.scale) * 1e-12);
			} else if (o->dif_coding == 0xD) {
				cr_assert_eq(r->data_len, o->nbytes);
				cr_assert_eq(memcmp(r->data, o->bytes, o->nbytes), 0);
			} else if (o->dif_coding == 0) {
				cr_assert_eq(r->type, MBUS_V_NONE);
			} else if (r->type == MBUS_V_NUMBER) {
				cr_assert(r->is_int);
				cr_assert_eq(r->ival, o->ival, "round %d rec %zu coding %x: %lld vs %lld",
					     round, i, o->dif_coding, (long long)r->ival,
					     (long long)o->ival);
			} else {
				/* 0x22 (on time, hours) with 16 bits etc. stay numbers; only
				 * dates would differ, and no VIB here is a date. */
				cr_assert_fail("round %d rec %zu: type %d", round, i, r->type);
			}
			checked++;
		}
	}
	cr_assert_gt(checked, 1000, "only %u records checked", checked);
}

Test(mbus_encode, out_of_range_and_bad_descriptions)
{
	uint8_t buf[64];
	struct mbuf b;
	static const uint8_t vib[] = {0x03};
	struct mbus_rec_out r = {.dif_coding = 1, .vib = vib, .vib_len = 1, .ival = 128};

	mbuf_init(&b, buf, sizeof(buf));
	cr_assert_eq(mbus_encode_record(&b, &r), METER_ERANGE);
	r.ival = -128;
	cr_assert_eq(mbus_encode_record(&b, &r), 0);
	r.dif_coding = 9;	/* 2 BCD digits */
	r.ival = 100;
	cr_assert_eq(mbus_encode_record(&b, &r), METER_ERANGE);
	r.ival = -10;		/* only one digit left beside the sign */
	cr_assert_eq(mbus_encode_record(&b, &r), METER_ERANGE);
	r.ival = -9;
	cr_assert_eq(mbus_encode_record(&b, &r), 0);
	r.storage = (uint64_t)1 << 41;
	cr_assert_eq(mbus_encode_record(&b, &r), METER_ERANGE);
	r.storage = 0;
	r.vib_len = 0;
	cr_assert_eq(mbus_encode_record(&b, &r), METER_EINVAL);

	/* A full buffer latches ENOSPC. */
	uint8_t tiny[3];
	mbuf_init(&b, tiny, sizeof(tiny));
	mbus_encode_req_ud2(&b, 1, false);
	cr_assert_eq(b.err, METER_ENOSPC);
}
