/*
 * test_meter_error.c: every error code has its own text, and the vectors
 * loader finds the shared corpus (the other tests depend on it).
 */
#include <criterion/criterion.h>
#include <string.h>

#include "meter_error.h"
#include "vectors.h"

Test(meter_error, every_code_has_distinct_text)
{
	for (int e = METER_ENEEDMORE; e > METER_ELAST; e--) {
		const char *s = meter_strerror(e);
		cr_assert_neq(strcmp(s, "unknown error"), 0, "code %d has no text", e);
		for (int f = e - 1; f > METER_ELAST; f--)
			cr_assert_neq(strcmp(s, meter_strerror(f)), 0, "codes %d and %d share text", e, f);
	}
	cr_assert_str_eq(meter_strerror(12345), "unknown error");
}

Test(vectors, corpus_is_there)
{
	size_t n;
	const struct dlms_vector *v = dlms_vectors(&n);
	cr_assert_not_null(v, "set AMM_VECTORS to ../shared/vectors");
	cr_assert_eq(n, 235, "expected 235 DLMS vectors, got %zu", n);
	cr_assert_not_null(dlms_vector("axdr-null"));
}

Test(vectors, hex_tail_places_bytes_at_block_end)
{
	size_t n;
	uint8_t *p = hex_tail("0a 1B ff", &n);
	cr_assert_eq(n, 3);
	cr_assert_eq(p[0], 0x0a);
	cr_assert_eq(p[2], 0xff);
	tail_free(p);
	cr_assert_null(hex_tail("0g", &n));
}

Test(vectors, meaning_fields)
{
	char buf[256];
	const char *m = "AXDR data=array[boolean:true,boolean:false] basis=test-assert";
	cr_assert_str_eq(meaning_get(m, "data", buf, sizeof(buf)), "array[boolean:true,boolean:false]");
	cr_assert_str_eq(meaning_get(m, "basis", buf, sizeof(buf)), "test-assert");
	cr_assert_null(meaning_get(m, "nothing", buf, sizeof(buf)));
	cr_assert_str_eq(meaning_type(m, buf, sizeof(buf)), "AXDR");
}
