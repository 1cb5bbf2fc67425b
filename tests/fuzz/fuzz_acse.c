/*
 * fuzz_acse.c: libFuzzer target for the association layer and the glo
 * unprotect path: whatever bytes a peer sends as AARQ / AARE / RLRQ / RLRE
 * or as a ciphered APDU must be refused or decoded without reading outside
 * the input.  A decoded APDU must re-encode to something that decodes
 * again to the same fields, and a ciphered user-information goes on
 * through dlms_unprotect() with fixed keys.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "acse.h"
#include "dlms_security.h"

static const struct dlms_keys keys = {
    .ek = {0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e,
           0x0f},
    .ak = {0xd0, 0xd1, 0xd2, 0xd3, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8, 0xd9, 0xda, 0xdb, 0xdc, 0xdd, 0xde,
           0xdf},
};
static const uint8_t title[DLMS_SYSTEM_TITLE_LEN] = {0x4d, 0x4d, 0x4d, 0x00,
                                                     0x00, 0xbc, 0x61, 0x4e};

static void
unprotect(const uint8_t *p, size_t n)
{
	struct dlms_ciphered c;
	struct dlms_rx_counter rx = {.last = 5, .seen = true};
	uint8_t plain[4096];
	struct mbuf out;

	if (dlms_ciphered_parse(p, n, &c) < 0)
		return;
	if (c.body + c.body_len > p + n)
		abort();
	mbuf_init(&out, plain, sizeof(plain));
	if (dlms_unprotect(&out, &c, &keys, title, 0, &rx) == 0) {
		struct acse_user_info u;
		(void)acse_user_info_decode(plain, out.len, &u);
	}
}

static void
check_user(const struct acse_user_info *u, const uint8_t *p, size_t n)
{
	if (u->ui && (u->ui < p || u->ui + u->ui_len > p + n))
		abort();
	if (u->kind == ACSE_UI_CIPHERED)
		unprotect(u->ui, u->ui_len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t wire[70000];
	struct acse_aarq q, q2;
	struct acse_aare e, e2;
	struct acse_release r, r2;
	struct mbuf b;
	ssize_t n;

	mbuf_init(&b, wire, sizeof(wire));
	if ((n = acse_aarq_decode(data, size, &q)) > 0) {
		check_user(&q.user, data, size);
		if (acse_aarq_encode(&b, &q) == 0) {
			if (acse_aarq_decode(wire, b.len, &q2) != (ssize_t)b.len ||
			    q2.context != q.context || q2.mechanism != q.mechanism ||
			    q2.auth_value_len != q.auth_value_len ||
			    q2.user.ui_len != q.user.ui_len)
				abort();
		}
	}
	mbuf_init(&b, wire, sizeof(wire));
	if ((n = acse_aare_decode(data, size, &e)) > 0) {
		check_user(&e.user, data, size);
		if (acse_aare_encode(&b, &e) == 0) {
			if (acse_aare_decode(wire, b.len, &e2) != (ssize_t)b.len ||
			    e2.result != e.result || e2.diag != e.diag ||
			    e2.diag_source != e.diag_source || e2.user.ui_len != e.user.ui_len)
				abort();
		}
	}
	mbuf_init(&b, wire, sizeof(wire));
	if ((n = acse_rlrq_decode(data, size, &r)) > 0) {
		check_user(&r.user, data, size);
		if (acse_rlrq_encode(&b, &r) == 0 &&
		    (acse_rlrq_decode(wire, b.len, &r2) != (ssize_t)b.len || r2.reason != r.reason))
			abort();
	}
	mbuf_init(&b, wire, sizeof(wire));
	if ((n = acse_rlre_decode(data, size, &r)) > 0) {
		check_user(&r.user, data, size);
		if (acse_rlre_encode(&b, &r) == 0 &&
		    (acse_rlre_decode(wire, b.len, &r2) != (ssize_t)b.len || r2.reason != r.reason))
			abort();
	}
	/* The input itself as a glo / general-glo APDU. */
	unprotect(data, size);
	return 0;
}
