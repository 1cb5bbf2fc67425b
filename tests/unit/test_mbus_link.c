/*
 * test_mbus_link.c: EN 13757-2 frames and the stream parser.  Frames come
 * from the shared corpus (read at run time) and from our own encoder; the
 * stream parser is fed them split at every position, behind garbage, and
 * several to one buffer.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "mbus.h"
#include "vectors.h"

static uint8_t *
corpus_frame(const char *rel, size_t *n)
{
	size_t len;
	char *hex = slurp(vectors_path(rel), &len);
	cr_assert_not_null(hex, "cannot read %s", rel);
	uint8_t *b = hex_tail(hex, n);
	free(hex);
	cr_assert_not_null(b);
	return b;
}

Test(mbus_link, frame_kinds_and_c_fields)
{
	uint8_t buf[64];
	struct mbuf b;
	struct mbus_frame f;

	mbuf_init(&b, buf, sizeof(buf));
	mbus_encode_ack(&b);
	mbus_encode_snd_nke(&b, 5);
	mbus_encode_req_ud2(&b, 250, true);
	mbus_encode_long(&b, MBUS_C_SND_UD, 1, MBUS_CI_APP_RESET, NULL, 0);
	cr_assert_eq(b.err, 0);
	cr_assert_eq(b.len, 1 + 5 + 5 + 9);

	size_t off = 0;
	cr_assert_eq(mbus_frame_parse(buf, b.len, &f), 1);
	cr_assert_eq(f.type, MBUS_FRAME_ACK);
	off = 1;
	cr_assert_eq(mbus_frame_parse(buf + off, b.len - off, &f), 5);
	cr_assert_eq(f.type, MBUS_FRAME_SHORT);
	cr_assert_str_eq(mbus_c_name(f.c), "SND_NKE");
	cr_assert_eq(f.a, 5);
	off += 5;
	cr_assert_eq(mbus_frame_parse(buf + off, b.len - off, &f), 5);
	cr_assert_str_eq(mbus_c_name(f.c), "REQ_UD2");
	cr_assert_eq(f.c, 0x7B, "FCB set");
	cr_assert_eq(f.a, 250);
	off += 5;
	cr_assert_eq(mbus_frame_parse(buf + off, b.len - off, &f), 9);
	cr_assert_eq(f.type, MBUS_FRAME_CONTROL);
	cr_assert_str_eq(mbus_c_name(f.c), "SND_UD");
	cr_assert_eq(f.ci, MBUS_CI_APP_RESET);
	cr_assert_str_eq(mbus_c_name(MBUS_C_RSP_UD | MBUS_C_ACD), "RSP_UD");
	cr_assert_str_eq(mbus_c_name(MBUS_C_REQ_UD2 | MBUS_C_FCV), "REQ_UD2");
}

Test(mbus_link, addresses_and_selection)
{
	static const uint8_t addrs[] = {MBUS_ADDR_UNCONFIGURED, 1, 250, MBUS_ADDR_NETWORK,
					MBUS_ADDR_TEST, MBUS_ADDR_BROADCAST};
	for (size_t i = 0; i < sizeof(addrs); i++) {
		uint8_t buf[8];
		struct mbuf b;
		struct mbus_frame f;
		mbuf_init(&b, buf, sizeof(buf));
		mbus_encode_req_ud2(&b, addrs[i], false);
		cr_assert_eq(mbus_frame_parse(buf, b.len, &f), 5);
		cr_assert_eq(f.a, addrs[i]);
	}

	/* Selection with wildcards, then matching against headers. */
	struct mbus_secondary sel = {{0x20, 0x91, 0xFF, 0xFF}, 0xFFFF, 0xFF, 0x02};
	uint8_t buf[32];
	struct mbuf b;
	struct mbus_frame f;
	struct mbus_telegram t;
	mbuf_init(&b, buf, sizeof(buf));
	mbus_encode_select(&b, &sel);
	cr_assert_eq(mbus_frame_parse(buf, b.len, &f), 17);
	cr_assert_eq(f.a, MBUS_ADDR_NETWORK);
	cr_assert_eq(mbus_telegram_decode(&f, &t), 0);
	cr_assert_eq(t.kind, MBUS_TG_SELECT);
	cr_assert_eq(memcmp(t.sel.id_bcd, sel.id_bcd, 4), 0);
	struct mbus_header h = {.id = 14839120, .manufacturer = 0x2C2D, .medium = 2};
	cr_assert(mbus_secondary_match(&t.sel, &h));
	h.id = 14839121;
	cr_assert_not(mbus_secondary_match(&t.sel, &h));
	h.id = 99999120;
	cr_assert(mbus_secondary_match(&t.sel, &h));
	h.medium = 7;
	cr_assert_not(mbus_secondary_match(&t.sel, &h));
}

Test(mbus_link, checksum_length_and_stop_errors)
{
	size_t n;
	uint8_t *p = corpus_frame("mbus/frames/kamstrup_382_005.hex", &n);
	uint8_t *q = malloc(n);
	struct mbus_frame f;

	memcpy(q, p, n);
	cr_assert_eq(mbus_frame_parse(q, n, &f), (int)n);
	for (size_t k = 1; k < n; k++)
		cr_assert_eq(mbus_frame_parse(q, k, &f), METER_ENEEDMORE, "prefix %zu", k);
	q[n - 2] ^= 1;
	cr_assert_eq(mbus_frame_parse(q, n, &f), METER_ECHECKSUM);
	q[n - 2] ^= 1;
	q[n - 1] = 0x17;
	cr_assert_eq(mbus_frame_parse(q, n, &f), METER_EMALFORMED);
	q[n - 1] = 0x16;
	q[2] ^= 1;
	cr_assert_eq(mbus_frame_parse(q, n, &f), METER_EMALFORMED, "L fields differ");
	static const uint8_t short_bad[] = {0x10, 0x40, 0x05, 0x44, 0x16};
	cr_assert_eq(mbus_frame_parse(short_bad, 5, &f), METER_ECHECKSUM);
	static const uint8_t l2[] = {0x68, 0x02, 0x02, 0x68, 0x08, 0x01, 0x09, 0x16};
	cr_assert_eq(mbus_frame_parse(l2, sizeof(l2), &f), METER_ELENGTH);
	cr_assert_eq(mbus_frame_parse(p, 0, &f), METER_ENEEDMORE);
	free(q);
	tail_free(p);
}

/* Feeds `in` in pieces of `step`, collecting the frames the stream yields. */
static size_t
run_stream(const uint8_t *in, size_t n, size_t split, int *types, size_t *lens)
{
	uint8_t acc[2048];
	size_t have = 0, got = 0, pos = 0;
	while (pos < n) {
		size_t take = pos < split ? split - pos : n - pos;
		memcpy(acc + have, in + pos, take);
		have += take;
		pos += take;
		for (;;) {
			struct mbus_frame f;
			size_t skipped;
			int rc = mbus_stream_next(acc, have, &f, &skipped);
			if (rc == METER_ENEEDMORE) {
				memmove(acc, acc + skipped, have - skipped);
				have -= skipped;
				break;
			}
			cr_assert_gt(rc, 0);
			types[got] = f.type;
			lens[got] = (size_t)rc - skipped;
			got++;
			memmove(acc, acc + rc, have - (size_t)rc);
			have -= (size_t)rc;
		}
	}
	return got;
}

Test(mbus_link, stream_split_everywhere_with_garbage_and_several_frames)
{
	size_t n1, n2;
	uint8_t *a = corpus_frame("mbus/frames/kamstrup_382_005.hex", &n1);
	uint8_t *c = corpus_frame("mbus/frames/oms_frame1.hex", &n2);
	uint8_t in[1024];
	struct mbuf b;

	/* garbage (including a false start 68 and 10), long, ACK, short, long */
	static const uint8_t junk[] = {0x00, 0xFF, 0x68, 0x05, 0x10, 0x42, 0x99, 0x16};
	mbuf_init(&b, in, sizeof(in));
	mbuf_put(&b, junk, sizeof(junk));
	mbuf_put(&b, a, n1);
	mbus_encode_ack(&b);
	mbus_encode_req_ud2(&b, 7, true);
	mbuf_put(&b, junk, 2);
	mbuf_put(&b, c, n2);
	cr_assert_eq(b.err, 0);

	for (size_t split = 0; split <= b.len; split++) {
		int types[8];
		size_t lens[8];
		size_t got = run_stream(in, b.len, split, types, lens);
		cr_assert_eq(got, 4, "split at %zu: %zu frames", split, got);
		cr_assert_eq(types[0], MBUS_FRAME_LONG);
		cr_assert_eq(lens[0], n1);
		cr_assert_eq(types[1], MBUS_FRAME_ACK);
		cr_assert_eq(types[2], MBUS_FRAME_SHORT);
		cr_assert_eq(types[3], MBUS_FRAME_LONG);
		cr_assert_eq(lens[3], n2);
	}

	/* Byte by byte, too: every read one byte long. */
	uint8_t acc[1024];
	size_t have = 0, frames = 0;
	for (size_t i = 0; i < b.len; i++) {
		acc[have++] = in[i];
		struct mbus_frame f;
		size_t skipped;
		int rc;
		while ((rc = mbus_stream_next(acc, have, &f, &skipped)) > 0) {
			frames++;
			memmove(acc, acc + rc, have - (size_t)rc);
			have -= (size_t)rc;
		}
		memmove(acc, acc + skipped, have - skipped);
		have -= skipped;
	}
	cr_assert_eq(frames, 4);
	tail_free(a);
	tail_free(c);
}
