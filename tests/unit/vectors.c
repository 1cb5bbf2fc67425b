/*
 * vectors.c: reads ../shared/vectors for the table-driven tests.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vectors.h"

const char *
vectors_path(const char *rel)
{
	static char path[4096];
	const char *dir = getenv("AMM_VECTORS");

	if (dir == NULL || *dir == '\0')
		dir = "../shared/vectors";
	snprintf(path, sizeof(path), "%s/%s", dir, rel);
	return path;
}

char *
slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	size_t cap = 0, n = 0, r;

	if (f == NULL)
		return NULL;
	for (;;) {
		if (n + 4096 + 1 > cap) {
			cap = (cap + 4096) * 2;
			char *nb = realloc(buf, cap);
			if (nb == NULL) {
				free(buf);
				fclose(f);
				return NULL;
			}
			buf = nb;
		}
		r = fread(buf + n, 1, cap - n - 1, f);
		if (r == 0)
			break;
		n += r;
	}
	fclose(f);
	buf[n] = '\0';
	if (len)
		*len = n;
	return buf;
}

static struct dlms_vector *rows;
static size_t nrows;

const struct dlms_vector *
dlms_vectors(size_t *n)
{
	char *text, *line, *save = NULL;

	if (rows == NULL) {
		text = slurp(vectors_path("dlms/dlms-vectors.tsv"), NULL);
		if (text == NULL) {
			fprintf(stderr, "cannot read %s (set AMM_VECTORS)\n",
				vectors_path("dlms/dlms-vectors.tsv"));
			*n = 0;
			return NULL;
		}
		rows = calloc(1024, sizeof(*rows));
		line = strtok_r(text, "\n", &save); /* header */
		while ((line = strtok_r(NULL, "\n", &save)) != NULL && nrows < 1024) {
			char *f[5] = {0};
			int i = 0;
			f[0] = line;
			for (char *c = line; *c && i < 4; c++)
				if (*c == '\t') {
					*c = '\0';
					f[++i] = c + 1;
				}
			if (i < 3)
				continue;
			rows[nrows].id = f[0];
			rows[nrows].layer = f[1];
			rows[nrows].hex = f[2];
			rows[nrows].meaning = f[3];
			rows[nrows].source = f[4] ? f[4] : "";
			nrows++;
		}
	}
	*n = nrows;
	return rows;
}

const struct dlms_vector *
dlms_vector(const char *id)
{
	size_t n;
	const struct dlms_vector *v = dlms_vectors(&n);

	for (size_t i = 0; i < n; i++)
		if (strcmp(v[i].id, id) == 0)
			return &v[i];
	return NULL;
}

static int
hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = tolower(c);
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

uint8_t *
hex_tail(const char *hex, size_t *len)
{
	size_t digits = 0;
	uint8_t *block, *p;

	for (const char *c = hex; *c; c++) {
		if (isspace((unsigned char)*c))
			continue;
		if (hexval(*c) < 0)
			return NULL;
		digits++;
	}
	if (digits % 2)
		return NULL;
	*len = digits / 2;
	/* One byte more than needed when empty so malloc never gets 0. */
	block = malloc(*len ? *len : 1);
	if (block == NULL)
		return NULL;
	p = block;
	int hi = -1;
	for (const char *c = hex; *c; c++) {
		if (isspace((unsigned char)*c))
			continue;
		if (hi < 0)
			hi = hexval(*c);
		else {
			*p++ = (uint8_t)(hi << 4 | hexval(*c));
			hi = -1;
		}
	}
	return block;
}

void
tail_free(uint8_t *p)
{
	free(p);
}

const char *
to_hex(const uint8_t *p, size_t n)
{
	static char buf[65536];
	size_t i;

	for (i = 0; i < n && i * 2 + 2 < sizeof(buf); i++)
		snprintf(buf + i * 2, 3, "%02x", p[i]);
	buf[i * 2] = '\0';
	return buf;
}

char *
meaning_get(const char *meaning, const char *key, char *out, size_t n)
{
	size_t kl = strlen(key);
	const char *p = meaning;

	while ((p = strstr(p, key)) != NULL) {
		/* Must start a field: at the beginning or after a space. */
		if ((p == meaning || p[-1] == ' ') && p[kl] == '=') {
			const char *v = p + kl + 1;
			int depth = 0;
			size_t i = 0;
			for (; *v && (depth > 0 || *v != ' '); v++) {
				if (*v == '[' || *v == '{' || *v == '(')
					depth++;
				else if (*v == ']' || *v == '}' || *v == ')')
					depth--;
				if (i + 1 < n)
					out[i++] = *v;
			}
			out[i] = '\0';
			return out;
		}
		p += kl;
	}
	return NULL;
}

char *
meaning_type(const char *meaning, char *out, size_t n)
{
	size_t i = 0;

	while (meaning[i] && meaning[i] != ' ' && i + 1 < n) {
		out[i] = meaning[i];
		i++;
	}
	out[i] = '\0';
	return out;
}
