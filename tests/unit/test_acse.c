/*
 * test_acse.c: the ACSE codec against every AARQ / AARE / RLRQ / RLRE /
 * Initiate / ConfirmedServiceError / conformance row of the corpus (and the
 * HDLC and wrapper rows that carry one): decode, compare with `meaning`,
 * re-encode to the same bytes.  Then generated round trips for every
 * mechanism, truncation and length faults, and the short AARE of a real
 * meter.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "acse.h"
#include "dlms_security.h"
#include "meter_error.h"
#include "vectors.h"

/* "{Type,k=v,k={..},...}" → "Type k=v k={..} ..." so meaning_get() can read it. */
static void
flatten(const char *nested, char *out, size_t cap)
{
	size_t n = strlen(nested), j = 0;
	int depth = 0;

	cr_assert(n >= 2 && nested[0] == '{' && nested[n - 1] == '}', "not a record: %s", nested);
	for (size_t i = 1; i + 1 < n && j + 1 < cap; i++) {
		char c = nested[i];
		if (c == '{' || c == '[' || c == '(')
			depth++;
		else if (c == '}' || c == ']' || c == ')')
			depth--;
		out[j++] = (c == ',' && depth == 0) ? ' ' : c;
	}
	out[j] = '\0';
}

static const char *
get(const char *m, const char *key, char *buf, size_t cap)
{
	return meaning_get(m, key, buf, cap);
}

static void
expect_field(const char *id, const char *m, const char *key, const char *got)
{
	char want[4096];

	if (get(m, key, want, sizeof(want)) == NULL) {
		cr_assert_null(got, "%s: %s present (%s) but not in meaning", id, key, got);
		return;
	}
	cr_assert_not_null(got, "%s: %s missing, want %s", id, key, want);
	cr_assert_str_eq(got, want, "%s: %s", id, key);
}

/* Leading number of "6", "0x007e1f", "1(dlms-version-too-low)"; or the one in "name(n)". */
static long
num(const char *s)
{
	const char *p = strchr(s, '(');

	if (p && !(s[0] >= '0' && s[0] <= '9'))
		return strtol(p + 1, NULL, 0);
	return strtol(s, NULL, 0);
}

static long
want_num(const char *id, const char *m, const char *key)
{
	char v[256];

	cr_assert_not_null(get(m, key, v, sizeof(v)), "%s: no %s", id, key);
	return num(v);
}

static char tmp[8][4096];
static size_t deciphered; /* ciphered user-information rows taken all the way down */

static const char *
fmt_hex(int slot, const uint8_t *p, size_t n)
{
	if (p == NULL)
		return NULL;
	snprintf(tmp[slot], sizeof(tmp[slot]), "%s", to_hex(p, n));
	return tmp[slot];
}

static const char *
fmt_charstring(int slot, const uint8_t *p, size_t n)
{
	if (p == NULL)
		return NULL;
	snprintf(tmp[slot], sizeof(tmp[slot]), "charstring:%s", to_hex(p, n));
	return tmp[slot];
}

static const char *
fmt_name_num(int slot, const char *name, int v)
{
	snprintf(tmp[slot], sizeof(tmp[slot]), "%s(%d)", name, v);
	return tmp[slot];
}

static const char *
fmt_acse_req(int slot, bool present, bool auth)
{
	if (!present)
		return NULL;
	snprintf(tmp[slot], sizeof(tmp[slot]), "07%s", auth ? "80" : "00");
	return tmp[slot];
}

static size_t
unhex_field(const char *m, const char *key, uint8_t *out, size_t cap)
{
	char v[1024];
	size_t n = 0, len;
	uint8_t *b;

	cr_assert_not_null(get(m, key, v, sizeof(v)), "no %s", key);
	v[strspn(v, "0123456789abcdef")] = '\0';
	b = hex_tail(v, &len);
	cr_assert_not_null(b);
	if (len <= cap) {
		memcpy(out, b, len);
		n = len;
	}
	tail_free(b);
	return n;
}

/*
 * What a session engine does with a ciphered user-information: unprotect
 * it with the keys of the cipher row and decode the Initiate inside.
 */
static void
decipher_user_info(const char *id, const struct dlms_vector *see, const struct dlms_ciphered *c)
{
	struct dlms_keys k;
	uint8_t st[8], plain[256], want[256], re[256];
	size_t wlen;
	struct mbuf out, rb;
	struct acse_user_info pu;

	cr_assert_eq(unhex_field(see->meaning, "key", k.ek, 16), 16, "%s", id);
	cr_assert_eq(unhex_field(see->meaning, "auth_key", k.ak, 16), 16, "%s", id);
	cr_assert_eq(unhex_field(see->meaning, "system_title", st, 8), 8, "%s", id);
	wlen = unhex_field(see->meaning, "plaintext_hex", want, sizeof(want));
	mbuf_init(&out, plain, sizeof(plain));
	cr_assert_eq(dlms_unprotect(&out, c, &k, st, DLMS_SC_AUTH | DLMS_SC_ENC, NULL), 0, "%s",
	             id);
	cr_assert_eq(out.len, wlen, "%s", id);
	cr_assert_eq(memcmp(plain, want, wlen), 0, "%s", id);
	cr_assert_eq(acse_user_info_decode(plain, out.len, &pu), 0, "%s", id);
	cr_assert_eq(pu.kind,
	             c->plain_tag == ACSE_APDU_INITIATE_REQUEST ? ACSE_UI_INITIATE_REQ
	                                                        : ACSE_UI_INITIATE_RESP,
	             "%s", id);
	mbuf_init(&rb, re, sizeof(re));
	cr_assert_eq(pu.kind == ACSE_UI_INITIATE_REQ ? acse_initiate_req_encode(&rb, &pu.u.req)
	                                             : acse_initiate_resp_encode(&rb, &pu.u.resp),
	             0);
	cr_assert_eq(rb.len, wlen, "%s", id);
	cr_assert_eq(memcmp(re, want, wlen), 0, "%s: plaintext Initiate re-encoded", id);
	deciphered++;
}

static void
check_user_info(const char *id, const char *m, const struct acse_user_info *u)
{
	char nested[4096], flat[4096], type[64], v[1024];
	uint8_t re[512];
	struct mbuf out;
	int rc = -1;

	if (get(m, "user_information_octets", v, sizeof(v))) {
		cr_assert_not_null(u->ui, "%s", id);
		cr_assert_str_eq(to_hex(u->ui, u->ui_len), v, "%s: user information", id);
		return;
	}
	if (get(m, "user_information", nested, sizeof(nested)) == NULL) {
		cr_assert_eq(u->kind, ACSE_UI_NONE, "%s: unexpected user information", id);
		cr_assert_null(u->ui);
		return;
	}
	flatten(nested, flat, sizeof(flat));
	meaning_type(flat, type, sizeof(type));
	mbuf_init(&out, re, sizeof(re));
	if (strcmp(type, "InitiateRequest") == 0) {
		const struct acse_initiate_req *q = &u->u.req;
		cr_assert_eq(u->kind, ACSE_UI_INITIATE_REQ, "%s", id);
		expect_field(id, flat, "dedicated_key",
		             q->dedicated_key ? fmt_hex(0, q->dedicated_key, q->dedicated_key_len)
		                              : "absent");
		get(flat, "response_allowed", v, sizeof(v));
		cr_assert_eq(q->response_allowed, strstr(v, "true") != NULL, "%s", id);
		get(flat, "proposed_qos", v, sizeof(v));
		cr_assert_eq(q->proposed_qos, strcmp(v, "absent") == 0 ? -1 : num(v), "%s", id);
		cr_assert_eq(q->dlms_version, want_num(id, flat, "dlms_version"), "%s", id);
		cr_assert_eq(q->conformance, want_num(id, flat, "proposed_conformance"), "%s", id);
		cr_assert_eq(q->max_pdu, want_num(id, flat, "client_max_receive_pdu_size"), "%s",
		             id);
		rc = acse_initiate_req_encode(&out, q);
	} else if (strcmp(type, "InitiateResponse") == 0) {
		const struct acse_initiate_resp *p = &u->u.resp;
		cr_assert_eq(u->kind, ACSE_UI_INITIATE_RESP, "%s", id);
		get(flat, "negotiated_qos", v, sizeof(v));
		cr_assert_eq(p->negotiated_qos, strcmp(v, "absent") == 0 ? -1 : num(v), "%s", id);
		cr_assert_eq(p->dlms_version, want_num(id, flat, "dlms_version"), "%s", id);
		cr_assert_eq(p->conformance, want_num(id, flat, "negotiated_conformance"), "%s",
		             id);
		cr_assert_eq(p->max_pdu, want_num(id, flat, "server_max_receive_pdu_size"), "%s",
		             id);
		cr_assert_eq(p->vaa_name, want_num(id, flat, "vaa_name"), "%s", id);
		cr_assert(!p->vaa_name_truncated);
		rc = acse_initiate_resp_encode(&out, p);
	} else if (strcmp(type, "ConfirmedServiceError") == 0) {
		cr_assert_eq(u->kind, ACSE_UI_SERVICE_ERROR, "%s", id);
		cr_assert_eq(u->u.err.choice, want_num(id, flat, "choice"), "%s", id);
		cr_assert_eq(u->u.err.service_error, want_num(id, flat, "service_error"), "%s", id);
		cr_assert_eq(u->u.err.value, want_num(id, flat, "value"), "%s", id);
		rc = acse_service_error_encode(&out, &u->u.err);
	} else if (strcmp(type, "GlobalCipheredApdu") == 0) {
		/* Ciphered: only the framing is ours to check here. */
		struct dlms_ciphered c;
		cr_assert_eq(u->kind, ACSE_UI_CIPHERED, "%s", id);
		cr_assert_eq(dlms_ciphered_parse(u->ui, u->ui_len, &c), (ssize_t)u->ui_len, "%s",
		             id);
		cr_assert_eq(c.tag, want_num(id, flat, "tag"), "%s", id);
		cr_assert_eq(c.body_len + 5, (size_t)want_num(id, flat, "length"), "%s", id);
		cr_assert_eq(c.sc, want_num(id, flat, "security_control"), "%s", id);
		cr_assert_eq(c.ic, (uint32_t)want_num(id, flat, "invocation_counter"), "%s", id);
		expect_field(id, flat, "payload_hex", fmt_hex(0, c.body, c.body_len));
		/* The cipher row it points to holds these very bytes. */
		if (get(m, "see", v, sizeof(v))) {
			const struct dlms_vector *see = dlms_vector(v);
			cr_assert_not_null(see, "%s: no row %s", id, v);
			cr_assert_str_eq(to_hex(u->ui, u->ui_len), see->hex, "%s", id);
			decipher_user_info(id, see, &c);
		}
		return;
	} else {
		cr_assert_fail("%s: user information type %s not handled", id, type);
	}
	/* The plaintext xDLMS APDU re-encodes to the same bytes. */
	cr_assert_eq(rc, 0, "%s: re-encode %d", id, rc);
	cr_assert_str_eq(to_hex(re, out.len), fmt_hex(1, u->ui, u->ui_len), "%s: inner", id);
}

static void
check_reencoded(const char *id, const uint8_t *want, size_t n, const uint8_t *got, size_t glen,
                int rc)
{
	cr_assert_eq(rc, 0, "%s: encode %s", id, meter_strerror(rc));
	cr_assert_eq(glen, n, "%s: %zu bytes, want %zu", id, glen, n);
	cr_assert_str_eq(fmt_hex(2, got, glen), fmt_hex(3, want, n), "%s: re-encoded", id);
}

/* One APDU (bytes b[0..n)) against a flat meaning m whose type is `type`. */
static void
check_apdu(const char *id, const char *type, const char *m, const uint8_t *b, size_t n)
{
	uint8_t re[1024];
	struct mbuf out;
	ssize_t got;

	mbuf_init(&out, re, sizeof(re));
	if (strcmp(type, "AARQ") == 0) {
		struct acse_aarq a;
		got = acse_aarq_decode(b, n, &a);
		cr_assert_eq(got, (ssize_t)n, "%s: decode %zd", id, got);
		expect_field(id, m, "application_context", acse_context_name(a.context));
		expect_field(id, m, "calling_ap_title",
		             fmt_hex(0, a.calling_ap_title, a.calling_ap_title_len));
		expect_field(id, m, "sender_acse_requirements",
		             fmt_acse_req(1, a.acse_requirements, a.authentication));
		expect_field(id, m, "mechanism",
		             a.mechanism_present
		                 ? fmt_name_num(2, acse_mech_name(a.mechanism), a.mechanism)
		                 : NULL);
		expect_field(id, m, "calling_authentication_value",
		             fmt_charstring(3, a.auth_value, a.auth_value_len));
		check_user_info(id, m, &a.user);
		check_reencoded(id, b, n, re, out.len, acse_aarq_encode(&out, &a));
	} else if (strcmp(type, "AARE") == 0) {
		struct acse_aare a;
		char diag[128];
		got = acse_aare_decode(b, n, &a);
		cr_assert_eq(got, (ssize_t)n, "%s: decode %zd", id, got);
		expect_field(id, m, "application_context", acse_context_name(a.context));
		expect_field(id, m, "result",
		             fmt_name_num(0, acse_result_name(a.result), a.result));
		cr_assert_eq(a.diag_source, ACSE_DIAG_SERVICE_USER, "%s", id);
		snprintf(diag, sizeof(diag), "acse-service-user:%s(%d)",
		         acse_user_diag_name(a.diag), a.diag);
		expect_field(id, m, "result_source_diagnostic", diag);
		expect_field(id, m, "responding_ap_title",
		             fmt_hex(1, a.responding_ap_title, a.responding_ap_title_len));
		expect_field(id, m, "responder_acse_requirements",
		             fmt_acse_req(2, a.acse_requirements, a.authentication));
		expect_field(id, m, "mechanism",
		             a.mechanism_present
		                 ? fmt_name_num(3, acse_mech_name(a.mechanism), a.mechanism)
		                 : NULL);
		expect_field(id, m, "responding_authentication_value",
		             fmt_charstring(4, a.auth_value, a.auth_value_len));
		check_user_info(id, m, &a.user);
		check_reencoded(id, b, n, re, out.len, acse_aare_encode(&out, &a));
	} else if (strcmp(type, "RLRQ") == 0 || strcmp(type, "RLRE") == 0) {
		bool rq = type[3] == 'Q';
		struct acse_release r;
		char v[64];
		got = rq ? acse_rlrq_decode(b, n, &r) : acse_rlre_decode(b, n, &r);
		cr_assert_eq(got, (ssize_t)n, "%s: decode %zd", id, got);
		if (get(m, "reason", v, sizeof(v))) {
			cr_assert(r.reason_present, "%s", id);
			cr_assert_eq(r.reason, num(v), "%s", id);
		} else {
			cr_assert(!r.reason_present, "%s", id);
		}
		check_user_info(id, m, &r.user);
		check_reencoded(id, b, n, re, out.len,
		                rq ? acse_rlrq_encode(&out, &r) : acse_rlre_encode(&out, &r));
	} else if (strcmp(type, "InitiateRequest") == 0 || strcmp(type, "InitiateResponse") == 0 ||
	           strcmp(type, "ConfirmedServiceError") == 0) {
		/* Same checks as inside user-information: build that shape. */
		struct acse_user_info u;
		char wrapped[4096];
		cr_assert_eq(acse_user_info_decode(b, n, &u), 0, "%s", id);
		snprintf(wrapped, sizeof(wrapped), "user_information={");
		for (const char *c = m; *c; c++) {
			size_t k = strlen(wrapped);
			if (k + 2 < sizeof(wrapped)) {
				wrapped[k] = *c == ' ' ? ',' : *c;
				wrapped[k + 1] = '\0';
			}
		}
		strncat(wrapped, "}", sizeof(wrapped) - strlen(wrapped) - 1);
		check_user_info(id, wrapped, &u);
	} else {
		cr_assert_fail("%s: type %s", id, type);
	}
}

static void
check_conformance(const struct dlms_vector *v, const uint8_t *b, size_t n)
{
	const char *names[24];
	char want[1024], got[1024] = "{";
	uint32_t conf;
	size_t k;

	cr_assert_eq(n, 4, "%s", v->id);
	cr_assert_eq(b[0], want_num(v->id, v->meaning, "unused_bits"));
	conf = (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
	cr_assert_eq(conf, want_num(v->id, v->meaning, "value"));
	k = acse_conformance_names(conf, names, 24);
	for (size_t i = 0; i < k; i++) {
		strcat(got, names[i]);
		strcat(got, i + 1 < k ? "," : "}");
	}
	cr_assert_not_null(meaning_get(v->meaning, "bits", want, sizeof(want)));
	cr_assert_str_eq(got, want, "%s", v->id);
	/* Fewer slots than bits: the count is still the full count. */
	cr_assert_eq(acse_conformance_names(conf, names, 2), k);
}

Test(acse, every_acse_row)
{
	static const char *const types[] = {"AARQ",
	                                    "AARE",
	                                    "RLRQ",
	                                    "RLRE",
	                                    "InitiateRequest",
	                                    "InitiateResponse",
	                                    "ConfirmedServiceError",
	                                    "ConformanceBitStringContents"};
	size_t n, seen = 0, framed = 0;
	const struct dlms_vector *v = dlms_vectors(&n);
	char type[64], inner[4096], flat[4096], info[4096];

	cr_assert_not_null(v);
	for (size_t i = 0; i < n; i++) {
		size_t len;
		uint8_t *b;

		meaning_type(v[i].meaning, type, sizeof(type));
		if (strcmp(v[i].layer, "apdu") == 0) {
			bool ours = false;
			for (size_t t = 0; t < sizeof(types) / sizeof(types[0]); t++)
				ours |= strcmp(type, types[t]) == 0;
			if (!ours)
				continue;
			b = hex_tail(v[i].hex, &len);
			cr_assert_not_null(b);
			if (strcmp(type, "ConformanceBitStringContents") == 0)
				check_conformance(&v[i], b, len);
			else
				check_apdu(v[i].id, type, v[i].meaning, b, len);
			tail_free(b);
			seen++;
			continue;
		}
		/* ACSE APDUs inside HDLC I-frames and wrapper PDUs of the corpus. */
		const char *key = strcmp(v[i].layer, "hdlc") == 0      ? "apdu"
		                  : strcmp(v[i].layer, "wrapper") == 0 ? "payload"
		                                                       : NULL;
		if (key == NULL || meaning_get(v[i].meaning, key, inner, sizeof(inner)) == NULL ||
		    (strncmp(inner, "{AAR", 4) != 0 && strncmp(inner, "{RLR", 4) != 0))
			continue;
		flatten(inner, flat, sizeof(flat));
		meaning_type(flat, type, sizeof(type));
		if (strcmp(v[i].layer, "hdlc") == 0) {
			cr_assert_not_null(
			    meaning_get(v[i].meaning, "info_hex", info, sizeof(info)));
			b = hex_tail(info + 6, &len); /* after the LLC header e6e6/e7 00 */
		} else {
			b = hex_tail(v[i].hex + 16, &len); /* after the 8-byte wrapper header */
		}
		cr_assert_not_null(b);
		check_apdu(v[i].id, type, flat, b, len);
		tail_free(b);
		framed++;
	}
	cr_assert_eq(seen, 45, "apdu rows checked: %zu", seen);
	cr_assert_eq(framed, 5, "hdlc/wrapper rows checked: %zu", framed);
	cr_assert_eq(deciphered, 5, "ciphered user-information deciphered: %zu", deciphered);
}

Test(acse, real_meter_short_aare)
{
	const struct dlms_vector *v = dlms_vector("hdlc-i-aare-sn");
	char info[512];
	struct acse_aare a;
	uint8_t *b;
	size_t len;

	cr_assert_not_null(v);
	cr_assert_not_null(meaning_get(v->meaning, "info_hex", info, sizeof(info)));
	b = hex_tail(info + 6, &len);
	/* The AARE ends one byte early; the byte after it is the vaa-name's low byte. */
	cr_assert_eq(acse_aare_decode(b, len, &a), (ssize_t)len - 1);
	cr_assert_eq(a.context, ACSE_CTX_SN);
	cr_assert_eq(a.result, ACSE_ACCEPTED);
	cr_assert_eq(a.diag, ACSE_DIAG_NULL);
	cr_assert_eq(a.user.kind, ACSE_UI_INITIATE_RESP);
	cr_assert(a.user.u.resp.vaa_name_truncated);
	cr_assert_eq(a.user.u.resp.vaa_name, ACSE_VAA_NAME_SN);
	cr_assert_eq(a.user.u.resp.dlms_version, 6);
	/* 5f1f 04 00 18 02 20 and max PDU 09 60 as on the wire */
	cr_assert_eq(a.user.u.resp.conformance, 0x180220);
	cr_assert_eq(a.user.u.resp.max_pdu, 0x0960);
	tail_free(b);

	/* Only that one missing byte is forgiven. */
	b = hex_tail("0800065f1f040000501f01", &len);
	struct acse_initiate_resp r;
	cr_assert_eq(acse_initiate_resp_decode(b, len, &r), METER_ENEEDMORE);
	tail_free(b);
}

/* Every prefix of every well-formed ACSE row asks for more bytes. */
Test(acse, truncation_needs_more)
{
	static const char *const ids[] = {"aarq-lls-ciphered-gb", "aare-hls-gmac-stoc",
	                                  "rlrq-ciphered-gb", "rlre-initiate-response",
	                                  "aare-rejected-dlms-version"};
	struct acse_aarq q;
	struct acse_aare e;
	struct acse_release r;

	for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
		const struct dlms_vector *v = dlms_vector(ids[i]);
		size_t len;
		uint8_t *full;

		cr_assert_not_null(v, "%s", ids[i]);
		full = hex_tail(v->hex, &len);
		for (size_t k = 0; k < len; k++) {
			/* A fresh allocation of exactly k bytes so ASan sees any over-read. */
			uint8_t *p = malloc(k ? k : 1);
			ssize_t rc;
			memcpy(p, full, k);
			switch (full[0]) {
			case ACSE_TAG_AARQ:
				rc = acse_aarq_decode(p, k, &q);
				break;
			case ACSE_TAG_AARE:
				rc = acse_aare_decode(p, k, &e);
				break;
			case ACSE_TAG_RLRQ:
				rc = acse_rlrq_decode(p, k, &r);
				break;
			default:
				rc = acse_rlre_decode(p, k, &r);
				break;
			}
			cr_assert_eq(rc, METER_ENEEDMORE, "%s at %zu: %zd", ids[i], k, rc);
			free(p);
		}
		tail_free(full);
	}
}

Test(acse, broken_lengths_and_tags)
{
	const struct dlms_vector *v = dlms_vector("aarq-no-auth-gb");
	struct acse_aarq a;
	struct acse_release r;
	uint8_t *b;
	size_t len;

	cr_assert_not_null(v);
	b = hex_tail(v->hex, &len);
	/* The octet string inside user-information claims one byte more than it holds. */
	for (size_t i = 0; i + 1 < len; i++) {
		if (b[i] == 0x04 && b[i + 1] == len - i - 2) {
			b[i + 1]++;
			cr_assert_eq(acse_aarq_decode(b, len, &a), METER_ELENGTH);
			b[i + 1]--;
			break;
		}
	}
	cr_assert_eq(acse_aarq_decode(b, len, &a), (ssize_t)len);
	/* Wrong APDU tag. */
	cr_assert_eq(acse_aare_decode(b, len, (struct acse_aare *)&(struct acse_aare){0}),
	             METER_EMALFORMED);
	/* Not a DLMS UA application context (arc 756 → 757). */
	b[8] ^= 0x01;
	cr_assert_eq(acse_aarq_decode(b, len, &a), METER_EMALFORMED);
	b[8] ^= 0x01;
	/* Indefinite outer length. */
	b[1] = 0x80;
	cr_assert_eq(acse_aarq_decode(b, len, &a), METER_EUNSUPPORTED);
	tail_free(b);

	/* An unknown field is stepped over; a missing application context is refused. */
	static const uint8_t rlrq_extra[] = {0x62, 0x06, 0x9d, 0x01, 0x55, 0x80, 0x01, 0x01};
	cr_assert_eq(acse_rlrq_decode(rlrq_extra, sizeof(rlrq_extra), &r), 8);
	cr_assert(r.reason_present);
	cr_assert_eq(r.reason, ACSE_RELEASE_URGENT);
	static const uint8_t aarq_no_ctx[] = {0x60, 0x04, 0x8a, 0x02, 0x07, 0x80};
	cr_assert_eq(acse_aarq_decode(aarq_no_ctx, sizeof(aarq_no_ctx), &a), METER_EMALFORMED);
	/* A bit-string authentication value is not something DLMS uses. */
	static const uint8_t aarq_bits[] = {0x60, 0x0f, 0xa1, 0x09, 0x06, 0x07, 0x60, 0x85, 0x74,
	                                    0x05, 0x08, 0x01, 0x01, 0xac, 0x02, 0x81, 0x00};
	cr_assert_eq(acse_aarq_decode(aarq_bits, sizeof(aarq_bits), &a), METER_EUNSUPPORTED);
}

/* Generated associations: every mechanism, with and without ciphering, both directions. */
Test(acse, round_trip_every_mechanism)
{
	static const uint8_t title[8] = {'A', 'M', 'M', 0, 0, 0, 0, 1};
	static const uint8_t secret[16] = "0123456789abcdef";
	uint8_t ireq[64], iresp[64], wire[512], again[512];
	struct mbuf ib, ob, wb;

	struct acse_initiate_req q = {.response_allowed = true,
	                              .proposed_qos = -1,
	                              .dlms_version = ACSE_DLMS_VERSION,
	                              .conformance = ACSE_CONF_GET | ACSE_CONF_SET |
	                                             ACSE_CONF_ACTION | ACSE_CONF_SELECTIVE_ACCESS |
	                                             ACSE_CONF_BLOCK_TRANSFER_WITH_GET,
	                              .max_pdu = 1200};
	struct acse_initiate_resp p = {.negotiated_qos = -1,
	                               .dlms_version = ACSE_DLMS_VERSION,
	                               .conformance = q.conformance,
	                               .max_pdu = 512,
	                               .vaa_name = ACSE_VAA_NAME_LN};
	mbuf_init(&ib, ireq, sizeof(ireq));
	cr_assert_eq(acse_initiate_req_encode(&ib, &q), 0);
	mbuf_init(&ob, iresp, sizeof(iresp));
	cr_assert_eq(acse_initiate_resp_encode(&ob, &p), 0);

	for (int mech = ACSE_MECH_NONE; mech <= ACSE_MECH_HLS_ECDSA; mech++) {
		for (int ciph = 0; ciph < 2; ciph++) {
			struct acse_aarq a = {0}, d;
			struct acse_aare r = {0}, e;
			bool auth = mech != ACSE_MECH_NONE;
			size_t alen = mech == ACSE_MECH_LLS ? 8 : 16;

			a.context = ciph ? ACSE_CTX_LN_CIPHER : ACSE_CTX_LN;
			if (ciph) {
				a.calling_ap_title = title;
				a.calling_ap_title_len = sizeof(title);
			}
			a.acse_requirements = auth;
			a.authentication = auth;
			a.mechanism = (enum acse_mech)mech;
			if (auth) {
				a.auth_value = secret;
				a.auth_value_len = alen;
			}
			a.user.ui = ireq;
			a.user.ui_len = ib.len;
			mbuf_init(&wb, wire, sizeof(wire));
			cr_assert_eq(acse_aarq_encode(&wb, &a), 0);
			cr_assert_eq(acse_aarq_decode(wire, wb.len, &d), (ssize_t)wb.len);
			cr_assert_eq(d.context, a.context);
			cr_assert_eq(d.mechanism, mech);
			cr_assert_eq(d.mechanism_present, auth, "mechanism none is sent as absent");
			cr_assert_eq(d.authentication, auth);
			cr_assert_eq(d.auth_value_len, auth ? alen : 0);
			if (auth)
				cr_assert_eq(memcmp(d.auth_value, secret, alen), 0);
			cr_assert_eq(d.calling_ap_title_len, ciph ? sizeof(title) : 0);
			cr_assert_eq(d.user.kind, ACSE_UI_INITIATE_REQ);
			cr_assert_eq(d.user.u.req.conformance, q.conformance);
			cr_assert_eq(d.user.u.req.max_pdu, 1200);
			struct mbuf ab;
			mbuf_init(&ab, again, sizeof(again));
			cr_assert_eq(acse_aarq_encode(&ab, &d), 0);
			cr_assert_eq(ab.len, wb.len);
			cr_assert_eq(memcmp(again, wire, wb.len), 0, "mech %d ciph %d", mech, ciph);

			r.context = a.context;
			r.result =
			    auth && mech != ACSE_MECH_LLS ? ACSE_ACCEPTED : ACSE_REJECTED_TRANSIENT;
			r.diag_source = ACSE_DIAG_SERVICE_USER;
			r.diag = mech >= ACSE_MECH_HLS ? ACSE_DIAG_AUTH_REQUIRED : ACSE_DIAG_NULL;
			if (ciph) {
				r.responding_ap_title = title;
				r.responding_ap_title_len = sizeof(title);
			}
			r.acse_requirements = auth;
			r.authentication = auth;
			r.mechanism = (enum acse_mech)mech;
			if (mech >= ACSE_MECH_HLS) {
				r.auth_value = secret; /* StoC */
				r.auth_value_len = 16;
			}
			r.user.ui = iresp;
			r.user.ui_len = ob.len;
			mbuf_init(&wb, wire, sizeof(wire));
			cr_assert_eq(acse_aare_encode(&wb, &r), 0);
			cr_assert_eq(acse_aare_decode(wire, wb.len, &e), (ssize_t)wb.len);
			cr_assert_eq(e.result, r.result);
			cr_assert_eq(e.diag, r.diag);
			cr_assert_eq(e.mechanism, mech);
			cr_assert_eq(e.auth_value_len, mech >= ACSE_MECH_HLS ? 16u : 0u);
			cr_assert_eq(e.responding_ap_title_len, ciph ? sizeof(title) : 0);
			cr_assert_eq(e.user.kind, ACSE_UI_INITIATE_RESP);
			cr_assert_eq(e.user.u.resp.max_pdu, 512);
			mbuf_init(&ab, again, sizeof(again));
			cr_assert_eq(acse_aare_encode(&ab, &e), 0);
			cr_assert_eq(ab.len, wb.len);
			cr_assert_eq(memcmp(again, wire, wb.len), 0);
		}
	}
}

Test(acse, long_user_information_and_errors)
{
	/* A user-information over 127 bytes takes BER long-form lengths. */
	uint8_t ui[300], wire[400];
	struct acse_release r = {.reason_present = true, .reason = ACSE_RELEASE_NORMAL}, d;
	struct acse_aare a = {.context = ACSE_CTX_LN,
	                      .diag_source = ACSE_DIAG_SERVICE_PROVIDER,
	                      .diag = ACSE_DIAG_NO_COMMON_ACSE_VERSION,
	                      .result = ACSE_REJECTED_PERMANENT},
	                 e;
	struct mbuf b;

	memset(ui, 0x5a, sizeof(ui));
	r.user.ui = ui;
	r.user.ui_len = sizeof(ui);
	mbuf_init(&b, wire, sizeof(wire));
	cr_assert_eq(acse_rlre_encode(&b, &r), 0);
	cr_assert_eq(wire[1], 0x82, "two-byte long form");
	cr_assert_eq(acse_rlre_decode(wire, b.len, &d), (ssize_t)b.len);
	cr_assert_eq(d.user.ui_len, sizeof(ui));
	cr_assert_eq(d.user.kind, ACSE_UI_OTHER);
	/* Too small an output: ENOSPC, nothing left behind. */
	mbuf_init(&b, wire, 100);
	cr_assert_eq(acse_rlre_encode(&b, &r), METER_ENOSPC);
	cr_assert_eq(b.len, 0);

	mbuf_init(&b, wire, sizeof(wire));
	cr_assert_eq(acse_aare_encode(&b, &a), 0);
	cr_assert_eq(acse_aare_decode(wire, b.len, &e), (ssize_t)b.len);
	cr_assert_eq(e.diag_source, ACSE_DIAG_SERVICE_PROVIDER);
	cr_assert_eq(e.diag, ACSE_DIAG_NO_COMMON_ACSE_VERSION);
	cr_assert_eq(e.result, ACSE_REJECTED_PERMANENT);
	cr_assert_eq(e.user.kind, ACSE_UI_NONE);

	a.context = (enum acse_context)200;
	cr_assert_eq(acse_aare_encode(&b, &a), METER_EINVAL);
	struct acse_initiate_req q = {.proposed_qos = 300};
	cr_assert_eq(acse_initiate_req_encode(&b, &q), METER_EINVAL);
}

Test(acse, names)
{
	cr_assert_str_eq(acse_conformance_bit_name(0), "reserved-zero");
	cr_assert_str_eq(acse_conformance_bit_name(16), "data-notification");
	cr_assert_str_eq(acse_conformance_bit_name(23), "action");
	cr_assert_null(acse_conformance_bit_name(24));
	cr_assert_eq(ACSE_CONF_ACTION, 0x000001);
	cr_assert_eq(ACSE_CONF_GENERAL_PROTECTION, 0x400000);
	cr_assert_str_eq(acse_mech_name(ACSE_MECH_HLS_GMAC), "HLS_GMAC");
	cr_assert_str_eq(acse_mech_name(9), "unknown");
	cr_assert_str_eq(acse_user_diag_name(ACSE_DIAG_AUTH_FAILURE), "authentication-failure");
	cr_assert_str_eq(acse_context_name(ACSE_CTX_SN_CIPHER), "SN_with_ciphering");
	cr_assert_str_eq(acse_result_name(3), "unknown");
	cr_assert_str_eq(acse_provider_diag_name(ACSE_DIAG_NO_COMMON_ACSE_VERSION),
	                 "no-common-acse-version");
	cr_assert_str_eq(acse_provider_diag_name(3), "unknown");
}
