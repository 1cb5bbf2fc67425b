/*
 * test_gprs.c: what the GPRS listener decides with before it trusts a
 * connection (drivers/gprs/gprs.h): logical device names against serials,
 * the serial a name claims, and pushes parsed from every DataNotification
 * of the DLMS vectors wrapped as a meter sends them (wPort 1 -> 102), cut
 * at every length, with the input at the very end of its allocation.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "axdr.h"
#include "bytes.h"
#include "gprs/gprs.h"
#include "meter_error.h"
#include "vectors.h"
#include "wrapper.h"
#include "xdlms.h"

static const struct {
	const char *ldn, *serial;
	bool match;
} ldn_cases[] = {
    {"KAM12345678", "12345678", true},  {"12345678", "12345678", true},
    {"KAM12345678", "12345679", false}, {"KAM1234567", "12345678", false},
    {"kam12345678", "12345678", false}, {"XKAM12345678", "12345678", false},
    {"KAM12345678", "", false},         {"", "12345678", false},
    {"ABC-7", "ABC-7", true},           {"KAM12345678X", "12345678", false},
};

Test(gprs, ldn_matches)
{
	for (size_t i = 0; i < sizeof(ldn_cases) / sizeof(ldn_cases[0]); i++) {
		size_t n = strlen(ldn_cases[i].ldn);
		uint8_t *p = malloc(n + 1); /* exact size: an over-read trips ASan */
		memcpy(p, ldn_cases[i].ldn, n);
		cr_expect_eq(gprs_ldn_matches(p, n, ldn_cases[i].serial), ldn_cases[i].match,
		             "%s vs %s", ldn_cases[i].ldn, ldn_cases[i].serial);
		free(p);
	}
}

static const struct {
	const char *ldn;
	int ret;
	const char *serial;
} serial_cases[] = {
    {"KAM12345678", 0, "12345678"},
    {"12345678", 0, "12345678"},
    {"KAMX1234", 0, "KAMX1234"}, /* the flag is only dropped before digits */
    {"ISK-7.a_b", 0, "ISK-7.a_b"},
    {"", METER_EMALFORMED, ""},
    {"KAM 1234", METER_EMALFORMED, ""},
    {"a'b", METER_EMALFORMED, ""},
    {"0123456789012345678901234567890123456789", METER_EMALFORMED, ""}, /* > cap - 1 */
};

Test(gprs, ldn_serial)
{
	for (size_t i = 0; i < sizeof(serial_cases) / sizeof(serial_cases[0]); i++) {
		char out[32];
		size_t n = strlen(serial_cases[i].ldn);
		uint8_t *p = malloc(n + 1);
		memcpy(p, serial_cases[i].ldn, n);
		int r = gprs_ldn_serial(p, n, out, sizeof(out));
		cr_expect_eq(r, serial_cases[i].ret, "%s: %d", serial_cases[i].ldn, r);
		cr_expect_str_eq(out, serial_cases[i].serial, "%s", serial_cases[i].ldn);
		free(p);
	}
}

/* apdu wrapped as a meter pushes it, at the end of an exact allocation */
static uint8_t *
wrap(const uint8_t *apdu, size_t len, size_t *n)
{
	uint8_t tmp[2048];
	struct mbuf b;
	mbuf_init(&b, tmp, sizeof(tmp));
	cr_assert_gt(wrapper_encode(&b, 1, 102, apdu, len), 0);
	uint8_t *p = malloc(b.len);
	memcpy(p, tmp, b.len);
	*n = b.len;
	return p;
}

Test(gprs, push_from_vectors)
{
	size_t nv, found = 0;
	const struct dlms_vector *v = dlms_vectors(&nv);
	char t[64];

	cr_assert_not_null(v, "vectors not found (AMM_VECTORS)");
	for (size_t i = 0; i < nv; i++) {
		if (strcmp(v[i].layer, "apdu") != 0 ||
		    strcmp(meaning_type(v[i].meaning, t, sizeof(t)), "DataNotification") != 0)
			continue;
		size_t alen, n;
		uint8_t *apdu = hex_tail(v[i].hex, &alen);
		uint8_t *w = wrap(apdu, alen, &n);
		struct gprs_push push;
		int r = gprs_push_parse(w, n, &push);
		cr_expect_eq(r, 0, "%s: %s", v[i].id, meter_strerror(r));
		if (r == 0) {
			cr_expect_eq(push.used, n, "%s", v[i].id);
			cr_expect_eq(push.src_wport, 1);
			cr_expect_eq(push.dst_wport, 102);
			/* the body is the tail of the APDU */
			cr_expect(push.body > w + 8 && push.body + push.body_len <= w + n, "%s",
			          v[i].id);
			cr_expect_eq(push.body + push.body_len, w + n, "%s", v[i].id);
		}
		/* every cut is "need more", never a read past the end */
		for (size_t k = 0; k < n; k++) {
			uint8_t *cut = malloc(k ? k : 1);
			memcpy(cut, w, k);
			cr_expect_eq(gprs_push_parse(cut, k, &push), METER_ENEEDMORE, "%s cut %zu",
			             v[i].id, k);
			free(cut);
		}
		free(w);
		tail_free(apdu);
		found++;
	}
	cr_expect_geq(found, 2, "DataNotification vectors: %zu", found);
	/* the one with a date-time and a structure of registers claims nothing
	 * (its first element is a date-time octet-string, not a name) */
	const struct dlms_vector *wt = dlms_vector("data-notification-with-time");
	cr_assert_not_null(wt);
	size_t alen, n;
	uint8_t *apdu = hex_tail(wt->hex, &alen);
	uint8_t *w = wrap(apdu, alen, &n);
	struct gprs_push push;
	cr_expect_eq(gprs_push_parse(w, n, &push), 0);
	cr_expect_str_eq(push.claim, "");
	free(w);
	tail_free(apdu);
}

Test(gprs, push_idis_claims_its_name)
{
	uint8_t body[64], apdu[128];
	struct mbuf b, a;
	struct xdlms_apdu x;
	struct gprs_push push;
	size_t n;

	mbuf_init(&b, body, sizeof(body));
	axdr_put_structure(&b, 2);
	axdr_put_octet_string(&b, "KAM87654321", 11);
	axdr_put_double_long_unsigned(&b, 12345);
	memset(&x, 0, sizeof(x));
	x.type = XDLMS_DATA_NOTIFICATION;
	x.long_iip = 1;
	x.value = xdlms_data_raw(body, (uint32_t)b.len);
	mbuf_init(&a, apdu, sizeof(apdu));
	cr_assert_gt(xdlms_encode(&x, &a), 0);
	uint8_t *w = wrap(a.p, a.len, &n);
	cr_expect_eq(gprs_push_parse(w, n, &push), 0);
	cr_expect_str_eq(push.claim, "87654321");
	cr_expect_eq(push.body_len, b.len);
	free(w);
}

Test(gprs, push_refusals)
{
	/* a wrapper PDU that is no DataNotification: not a push */
	const struct dlms_vector *v = NULL;
	size_t nv;
	const struct dlms_vector *all = dlms_vectors(&nv);
	char t[64];
	for (size_t i = 0; i < nv && v == NULL; i++)
		if (strcmp(all[i].layer, "apdu") == 0 &&
		    strncmp(meaning_type(all[i].meaning, t, sizeof(t)), "GetResponse", 11) == 0)
			v = &all[i];
	cr_assert_not_null(v, "no GetResponse vector");
	size_t alen, n;
	uint8_t *apdu = hex_tail(v->hex, &alen);
	uint8_t *w = wrap(apdu, alen, &n);
	struct gprs_push push;
	cr_expect_eq(gprs_push_parse(w, n, &push), METER_EPROTO, "%s", v->id);
	free(w);
	tail_free(apdu);

	/* a length beyond what a push may be is refused from the header */
	static const uint8_t big[8] = {0, 1, 0, 1, 0, 102, 0xff, 0xff};
	uint8_t *p = malloc(sizeof(big));
	memcpy(p, big, sizeof(big));
	cr_expect_eq(gprs_push_parse(p, sizeof(big), &push), METER_ELENGTH);
	/* a bad version */
	p[1] = 2;
	cr_expect_eq(gprs_push_parse(p, sizeof(big), &push), METER_EMALFORMED);
	free(p);
}
