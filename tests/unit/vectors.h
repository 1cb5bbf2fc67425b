/*
 * vectors.h: loader for the shared byte-level test data
 * (../shared/vectors, or $AMM_VECTORS): the DLMS TSV corpus and files of
 * hex.  Tests iterate rows of one layer, turn `hex` into bytes placed at
 * the very end of a malloc'd block (so an over-read trips ASan), and pick
 * `key=value` fields out of `meaning`.
 */
#ifndef TESTS_VECTORS_H
#define TESTS_VECTORS_H

#include <stddef.h>
#include <stdint.h>

struct dlms_vector {
	char *id;
	char *layer;
	char *hex;
	char *meaning;
	char *source;
};

/* Path of a file under the vectors directory; static buffer. */
const char *vectors_path(const char *rel);

/* All rows of dlms-vectors.tsv (loaded once, never freed); *n set. */
const struct dlms_vector *dlms_vectors(size_t *n);
/* The row with this id, or NULL. */
const struct dlms_vector *dlms_vector(const char *id);

/*
 * Hex ("0a1B", spaces allowed) to bytes in a fresh allocation whose last
 * byte is the last byte of the block.  Caller frees with tail_free().
 * Returns NULL on bad hex.
 */
uint8_t *hex_tail(const char *hex, size_t *len);
void tail_free(uint8_t *p);

/* Bytes to lowercase hex in a static buffer (tests only). */
const char *to_hex(const uint8_t *p, size_t n);

/*
 * Value of `key=` in a meaning string, copied into out (up to the next
 * space at nesting level 0, so `[a,b]` and `{..}` come whole).  Returns
 * out, or NULL when the key is absent.
 */
char *meaning_get(const char *meaning, const char *key, char *out, size_t n);
/* The meaning's leading type name ("AXDR", "HDLCFrame", ...). */
char *meaning_type(const char *meaning, char *out, size_t n);

/* Whole file into a NUL-terminated malloc'd buffer; NULL if unreadable. */
char *slurp(const char *path, size_t *len);

#endif
