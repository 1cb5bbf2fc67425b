/*
 * test_json.c: the streaming JSON writer: nesting and commas, escaping, and
 * numbers that read back exactly without exponent noise for whole values.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

static char *
render(void (*fn)(struct json *))
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	struct json j;

	json_init(&j, f, false);
	fn(&j);
	fclose(f);
	return buf;
}

static void
doc_nested(struct json *j)
{
	json_obj_begin(j, NULL);
	json_str(j, "a", "x\"y\\z\n\x01");
	json_arr_begin(j, "list");
	json_int(j, NULL, -5);
	json_uint(j, NULL, 18446744073709551615ull);
	json_bool(j, NULL, true);
	json_null(j, NULL);
	json_arr_end(j);
	json_hex(j, "raw", (const uint8_t *)"\x01\xab", 2);
	json_obj_begin(j, "empty");
	json_obj_end(j);
	json_obj_end(j);
}

Test(json, nesting_commas_and_escapes)
{
	char *s = render(doc_nested);
	cr_assert_str_eq(s, "{\"a\":\"x\\\"y\\\\z\\n\\u0001\",\"list\":[-5,18446744073709551615,true,null],"
			    "\"raw\":\"01ab\",\"empty\":{}}");
	free(s);
}

static const struct {
	double v;
	const char *want;
} numbers[] = {
	{570, "570"},
	{0, "0"},
	{-1234567, "-1234567"},
	{4592558000, "4592558000"},
	{0.1, "0.1"},
	{230.5, "230.5"},
	{-3.14, "-3.14"},
	{1e-7, "1e-07"},
	{1e20, "1e+20"},
};

static double cur;
static void
doc_number(struct json *j)
{
	json_double(j, NULL, cur);
}

Test(json, numbers_shortest_and_whole_values_without_exponent)
{
	for (size_t i = 0; i < sizeof(numbers) / sizeof(numbers[0]); i++) {
		cur = numbers[i].v;
		char *s = render(doc_number);
		cr_assert_str_eq(s, numbers[i].want, "%.17g rendered as %s", numbers[i].v, s);
		cr_assert_eq(strtod(s, NULL), numbers[i].v);
		free(s);
	}
	cur = 0.0 / 0.0;
	char *s = render(doc_number);
	cr_assert_str_eq(s, "null");
	free(s);
}
