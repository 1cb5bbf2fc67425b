/*
 * test_ctl_decode.c: `ammctl decode dlms|hdlc|wrapper` through the binary
 * (build/ammctl, or $AMMCTL): the JSON for corpus rows of each layer,
 * captures of several frames, a segmented APDU reassembled, checksum
 * errors shown, and bad input (truncated, random, not hex) refused with
 * exit code 1 and a message, never a crash.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "axdr.h"
#include "hdlc.h"
#include "vectors.h"
#include "xdlms.h"

static char out[1 << 18];

/* Run "ammctl decode KIND ARG" with stderr folded into out; returns the
 * exit code, or 128 + signal. */
static int
run(const char *kind, const char *arg)
{
	const char *bin = getenv("AMMCTL") ? getenv("AMMCTL") : "build/ammctl";
	size_t n = strlen(bin) + strlen(arg) + 64;
	char *cmd = malloc(n);

	cr_assert_not_null(cmd);
	snprintf(cmd, n, "%s decode %s %s 2>&1", bin, kind, arg);
	FILE *p = popen(cmd, "r");
	cr_assert_not_null(p);
	size_t got = fread(out, 1, sizeof out - 1, p);
	out[got] = '\0';
	int st = pclose(p);
	free(cmd);
	if (WIFSIGNALED(st))
		return 128 + WTERMSIG(st);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static const char *
hex_of(const char *id)
{
	const struct dlms_vector *v = dlms_vector(id);
	cr_assert_not_null(v, "%s", id);
	return v->hex;
}

static const struct {
	const char *kind, *id;
	int exit;
	const char *want[6];
} rows[] = {
	{"dlms", "get-req-range-descriptor", 0,
	 {"\"apdu\": \"get-request-normal\"", "\"invoke_id\": 1", "\"class\": 7",
	  "\"obis\": \"1-0:99.1.0.255\"", "\"name\": \"load_profile\"", "\"kind\": \"range\""}},
	{"dlms", "aare-accepted-gb", 0,
	 {"\"apdu\": \"AARE\"", "\"result\": \"accepted\"", "\"apdu\": \"initiate-response\"",
	  "\"max_pdu\": 500", "\"conformance_hex\": \"0x00501f\"", "\"selective-access\""}},
	{"dlms", "cipher-glo-get-request-sc30", 0,
	 {"\"apdu\": \"glo-get-request\"", "\"ciphered\": true", "\"hex\": \"0x30\"",
	  "\"encryption\": true", "\"invocation_counter\": 19088743"}},
	{"hdlc", "hdlc-i-aarq", 0,
	 {"\"frame\": \"hdlc\"", "\"type\": \"I\"", "\"llc\": \"command\"", "\"apdu\": \"AARQ\"",
	  "\"hcs\": \"ok\"", "\"fcs\": \"ok\""}},
	{"hdlc", "hdlc-ua-lg-e650", 0,
	 {"\"type\": \"UA\"", "\"max_info_rx\": 62", "\"control\": \"0x73\"", "\"pf\": true"}},
	{"hdlc", "hdlc-ui-data-notification", 0,
	 {"\"type\": \"UI\"", "\"llc\": \"response\"", "\"apdu\": \"data-notification\"",
	  "\"body\""}},
	{"hdlc", "hdlc-rr-4byte", 0, {"\"type\": \"RR\"", "\"nr\"", "\"hcs\": \"absent\""}},
	{"wrapper", "wrapper-rlre-e350", 0,
	 {"\"frame\": \"wrapper\"", "\"version\": 1", "\"apdu\": \"RLRE\""}},
	{"wrapper", "wrapper-bad-version-2", 1, {"wrapper PDU at offset 0"}},
	/* a good frame around bytes that are no APDU: shown, but exit 1 */
	{"wrapper", "wrapper-send-gosem", 1,
	 {"\"src_wport\": 1", "\"error\":", "\"hex\": \"aabbccddeeff\"", "did not decode"}},
	{"hdlc", "hdlc-bad-hcs-aare", 1, {"ammctl decode hdlc: HDLC frame at offset 0"}},
};

Test(ctl_decode, corpus_rows)
{
	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
		int rc = run(rows[i].kind, hex_of(rows[i].id));
		cr_assert_eq(rc, rows[i].exit, "%s: exit %d\n%s", rows[i].id, rc, out);
		for (int k = 0; k < 6 && rows[i].want[k]; k++)
			cr_assert_not_null(strstr(out, rows[i].want[k]), "%s: no %s in\n%s",
					   rows[i].id, rows[i].want[k], out);
	}
}

/* Several frames in one capture, from stdin with comments: a JSON array. */
Test(ctl_decode, captures_are_arrays)
{
	char arg[4096], path[] = "/tmp/ctl_decode_XXXXXX";
	int fd = mkstemp(path);
	cr_assert_geq(fd, 0);
	FILE *f = fdopen(fd, "w");
	cr_assert_not_null(f);
	fprintf(f, "# SNRM, then the UA\n%s\n0x%s\n", hex_of("hdlc-snrm-params"),
		hex_of("hdlc-ua-lg-e650"));
	fclose(f);
	snprintf(arg, sizeof arg, "- < %s", path);
	int rc = run("hdlc", arg);
	unlink(path);
	cr_assert_eq(rc, 0, "%s", out);
	cr_assert_eq(out[0], '[', "%s", out);
	cr_assert_not_null(strstr(out, "\"type\": \"SNRM\""), "%s", out);
	cr_assert_not_null(strstr(out, "\"type\": \"UA\""), "%s", out);

	cr_assert_eq(run("wrapper", hex_of("wrapper-recv-two-messages")), 1, "%s", out);
	cr_assert_eq(out[0], '[', "%s", out);
	cr_assert_not_null(strstr(out, "\"offset\": 0"), "%s", out);
	cr_assert_not_null(strstr(out, "\"offset\": 1"), "%s", out);
}

/* A GET response split over two I-frames comes out as one APDU. */
Test(ctl_decode, segmented_apdu_reassembled)
{
	uint8_t apdu[600], frames[1200], value[512];
	struct mbuf a, v, f;
	char arg[4096];

	mbuf_init(&v, value, sizeof value);
	axdr_put_array(&v, 40);
	for (int k = 0; k < 40; k++)
		axdr_put_double_long_unsigned(&v, 1000u + (unsigned)k);
	struct xdlms_data d = xdlms_data_raw(value, (uint32_t)v.len);
	mbuf_init(&a, apdu, sizeof apdu);
	hdlc_put_llc(&a, true);
	cr_assert_gt(xdlms_put_get_response_data(&a, 0xc1, &d), 0);
	cr_assert_gt(a.len, 128);

	mbuf_init(&f, frames, sizeof frames);
	struct hdlc_frame fr = {.type = HDLC_I,
				.dest = {.upper = 16, .size = 1},
				.src = {.upper = 1, .lower = 17, .size = 2},
				.pf = true};
	fr.segmented = true;
	fr.info = apdu;
	fr.info_len = 128;
	cr_assert_gt(hdlc_encode(&f, &fr), 0);
	fr.segmented = false;
	fr.ns = 1;
	fr.info = apdu + 128;
	fr.info_len = a.len - 128;
	cr_assert_gt(hdlc_encode(&f, &fr), 0);

	snprintf(arg, sizeof arg, "%s", to_hex(frames, f.len));
	cr_assert_eq(run("hdlc", arg), 0, "%s", out);
	cr_assert_not_null(strstr(out, "\"apdu_segment\": \"more segments follow\""), "%s", out);
	cr_assert_not_null(strstr(out, "\"reassembled_from_frames\": 2"), "%s", out);
	cr_assert_not_null(strstr(out, "\"apdu\": \"get-response-normal\""), "%s", out);
	cr_assert_not_null(strstr(out, "\"value\": 1039"), "%s", out);

	/* The first segment alone: the capture ends inside the APDU. */
	snprintf(arg, sizeof arg, "%s", to_hex(frames, (size_t)(f.len - (a.len - 128) - 13)));
	int rc = run("hdlc", arg);
	cr_assert_eq(rc, 1, "%s", out);
}

/* A frame whose FCS is wrong is still shown, with fcs "bad", and exit 0. */
Test(ctl_decode, bad_fcs_shown)
{
	char hex[2048];
	snprintf(hex, sizeof hex, "%s", hex_of("hdlc-i-aarq"));
	size_t n = strlen(hex);
	cr_assert_gt(n, 8);
	/* ... fcs-lo fcs-hi 7e: flip a bit of the FCS's high byte */
	hex[n - 3] = hex[n - 3] == '0' ? '1' : '0';
	cr_assert_eq(run("hdlc", hex), 0, "%s", out);
	cr_assert_not_null(strstr(out, "\"fcs\": \"bad\""), "%s", out);
	cr_assert_not_null(strstr(out, "\"hcs\": \"ok\""), "%s", out);
}

/* Truncated frames and APDUs, random bytes and non-hex: exit 1, a
 * message, never a signal. */
Test(ctl_decode, bad_input_refused)
{
	static const char *const ids[][2] = {
		{"hdlc", "hdlc-i-aarq"},
		{"wrapper", "wrapper-rlre-e350"},
		{"dlms", "get-req-range-descriptor"},
		{"dlms", "aare-accepted-gb"},
	};
	char hex[2048];

	for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++) {
		const char *full = hex_of(ids[i][1]);
		size_t n = strlen(full);
		for (size_t cut = 2; cut < n; cut += 6) {
			snprintf(hex, sizeof hex, "%.*s", (int)cut, full);
			int rc = run(ids[i][0], hex);
			cr_assert_eq(rc, 1, "%s cut at %zu: exit %d\n%s", ids[i][1], cut / 2, rc,
				     out);
			cr_assert_not_null(strstr(out, "ammctl decode"), "%s", out);
		}
	}

	srand(7);
	for (int t = 0; t < 40; t++) {
		static const char *const kinds[] = {"dlms", "hdlc", "wrapper"};
		size_t n = 1 + (size_t)(rand() % 200);
		uint8_t b[256];
		for (size_t k = 0; k < n; k++)
			b[k] = (uint8_t)rand();
		/* start like the real thing now and then */
		if (t % 3 == 1)
			b[0] = 0x7e;
		if (t % 3 == 2)
			b[0] = 0xc4;
		snprintf(hex, sizeof hex, "%s", to_hex(b, n));
		int rc = run(kinds[t % 3], hex);
		cr_assert(rc == 0 || rc == 1, "random %d (%s %s): exit %d\n%s", t, kinds[t % 3],
			  hex, rc, out);
	}

	cr_assert_eq(run("dlms", "c4zz"), 1, "%s", out);
	cr_assert_not_null(strstr(out, "not a hex digit"), "%s", out);
	cr_assert_eq(run("hdlc", "''"), 1, "%s", out);
	cr_assert_eq(run("dlms", ""), 2, "%s", out);
}
