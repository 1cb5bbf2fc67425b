/*
 * test_axdr_json.c: the JSON shape of decoded A-XDR trees (axdr_json.h),
 * on rows of the DLMS corpus.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "axdr.h"
#include "axdr_json.h"
#include "json.h"
#include "vectors.h"

static struct axdr_node nodes[1024];

/* The compact JSON of a corpus row's decoded Data; caller frees. */
static char *
row_json(const char *id)
{
	const struct dlms_vector *v = dlms_vector(id);
	char *out = NULL;
	size_t olen = 0, len, nn;
	struct json j;

	cr_assert_not_null(v, "%s", id);
	uint8_t *buf = hex_tail(v->hex, &len);
	cr_assert_eq(axdr_decode(buf, len, nodes, 1024, &nn), (ssize_t)len, "%s", id);
	FILE *f = open_memstream(&out, &olen);
	json_init(&j, f, false);
	axdr_json_write(&j, NULL, nodes);
	json_end(&j);
	fclose(f);
	tail_free(buf);
	return out;
}

static const struct {
	const char *id, *want;
} cases[] = {
	{"axdr-structure-scaler-unit", "{\"type\":\"structure\",\"count\":2,\"items\":["
				       "{\"type\":\"integer\",\"value\":0},"
				       "{\"type\":\"enum\",\"value\":30}]}\n"},
	{"axdr-long-unsigned", "{\"type\":\"long-unsigned\",\"value\":13652}\n"},
	{"axdr-null", "{\"type\":\"null-data\"}\n"},
	{"axdr-boolean-true", "{\"type\":\"boolean\",\"value\":true}\n"},
	{"axdr-float32", "{\"type\":\"float32\",\"value\":0.99854}\n"},
	{"axdr-long64-neg", "{\"type\":\"long64\",\"value\":-38373878373383}\n"},
	{"axdr-visible-string", "{\"type\":\"visible-string\",\"value\":\"TEST\"}\n"},
	{"axdr-bit-string-8",
	 "{\"type\":\"bit-string\",\"bits\":8,\"hex\":\"2a\",\"value\":\"00101010\"}\n"},
	{"axdr-date-time-tagged", "{\"type\":\"date-time\",\"hex\":\"270f0c1e04173b3b00000000\","
				  "\"value\":\"9999-12-30T23:59:59Z\"}\n"},
	{"axdr-date-tagged", "{\"type\":\"date\",\"hex\":\"07e80b15ff\",\"value\":\"2024-11-21\"}\n"},
	{"axdr-time-tagged", "{\"type\":\"time\",\"hex\":\"081e0f17\",\"value\":\"08:30:15.23\"}\n"},
	{"axdr-time-all-unspecified",
	 "{\"type\":\"time\",\"hex\":\"ffffffff\",\"value\":\"??:??:??\"}\n"},
	{"axdr-structure-capture-object",
	 "{\"type\":\"structure\",\"count\":4,\"items\":["
	 "{\"type\":\"long-unsigned\",\"value\":8},"
	 "{\"type\":\"octet-string\",\"hex\":\"0000010000ff\",\"obis\":\"0-0:1.0.0.255\","
	 "\"name\":\"clock\"},"
	 "{\"type\":\"integer\",\"value\":2},{\"type\":\"long-unsigned\",\"value\":0}]}\n"},
	{"axdr-compact-array-long-unsigned",
	 "{\"type\":\"compact-array\",\"count\":5,\"description\":\"12\",\"items\":["
	 "{\"type\":\"long-unsigned\",\"value\":4369},{\"type\":\"long-unsigned\",\"value\":8738},"
	 "{\"type\":\"long-unsigned\",\"value\":13107},{\"type\":\"long-unsigned\",\"value\":17476},"
	 "{\"type\":\"long-unsigned\",\"value\":21845}]}\n"},
};

Test(axdr_json, shapes)
{
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char *got = row_json(cases[i].id);
		cr_assert_str_eq(got, cases[i].want, "%s", cases[i].id);
		free(got);
	}
}

/* A clock column of a profile buffer shows its date-time. */
Test(axdr_json, octet_string_datetime)
{
	char *got = row_json("axdr-array-profile-buffer");

	cr_assert_not_null(strstr(got, "\"hex\":\"07e30c1f0217000000ffc400\","
				       "\"datetime\":\"2019-12-31T23:00:00+01:00\""),
			   "%s", got);
	free(got);
}

/* Every corpus Data row renders to balanced JSON. */
Test(axdr_json, every_corpus_row)
{
	size_t nv, rows = 0;
	const struct dlms_vector *v = dlms_vectors(&nv);

	for (size_t i = 0; i < nv; i++) {
		if (strcmp(v[i].layer, "axdr") != 0 || strncmp(v[i].meaning, "AXDR ", 5) != 0)
			continue;
		char *got = row_json(v[i].id);
		int depth = 0;
		bool in_str = false;
		for (const char *p = got; *p; p++) {
			if (in_str) {
				if (*p == '\\')
					p++;
				else if (*p == '"')
					in_str = false;
				continue;
			}
			if (*p == '"')
				in_str = true;
			else if (*p == '{' || *p == '[')
				depth++;
			else if (*p == '}' || *p == ']')
				cr_assert_geq(--depth, 0, "%s", v[i].id);
		}
		cr_assert_eq(depth, 0, "%s: %s", v[i].id, got);
		cr_assert(!in_str, "%s", v[i].id);
		free(got);
		rows++;
	}
	cr_assert_eq(rows, 38);
}
