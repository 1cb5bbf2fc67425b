/*
 * json.h: a small streaming JSON writer for ammctl and the daemon's JSON
 * outputs.  Values are written as they come; the writer tracks commas and
 * indentation.  Pass key = NULL for array elements and the top level.
 */
#ifndef AMM_JSON_H
#define AMM_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define JSON_MAX_DEPTH 64

struct json {
	FILE *f;
	int depth;
	bool pretty;
	bool need_comma[JSON_MAX_DEPTH];
};

void json_init(struct json *j, FILE *f, bool pretty);
void json_obj_begin(struct json *j, const char *key);
void json_obj_end(struct json *j);
void json_arr_begin(struct json *j, const char *key);
void json_arr_end(struct json *j);
void json_str(struct json *j, const char *key, const char *s);
void json_strn(struct json *j, const char *key, const char *s, size_t n);
void json_int(struct json *j, const char *key, int64_t v);
void json_uint(struct json *j, const char *key, uint64_t v);
/* Shortest text that reads back to the same double; null for NaN/inf. */
void json_double(struct json *j, const char *key, double v);
void json_bool(struct json *j, const char *key, bool v);
void json_null(struct json *j, const char *key);
/* Bytes as a lowercase hex string. */
void json_hex(struct json *j, const char *key, const uint8_t *p, size_t n);
/* Finish the document with a newline. */
void json_end(struct json *j);

#endif
