/*
 * ctl_decode.c: `ammctl decode KIND HEX|-`: picks the decoder for KIND and
 * holds the hex reader the decoders share.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"

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
ctl_read_hex(const char *arg, size_t *len, char *err, size_t errlen)
{
	char *text = NULL;
	size_t n = 0, cap = 0;
	uint8_t *out = NULL;

	if (strcmp(arg, "-") == 0) {
		int c;
		while ((c = getchar()) != EOF) {
			if (n + 2 > cap) {
				cap = cap ? cap * 2 : 4096;
				char *t = realloc(text, cap);
				if (t == NULL)
					goto nomem;
				text = t;
			}
			text[n++] = (char)c;
		}
		if (text == NULL)
			text = strdup("");
		else
			text[n] = '\0';
	} else
		text = strdup(arg);
	if (text == NULL)
		goto nomem;

	n = strlen(text);
	out = malloc(n / 2 + 1);
	if (out == NULL)
		goto nomem;
	*len = 0;
	int hi = -1;
	for (size_t i = 0; i < n; i++) {
		char c = text[i];
		if (c == '#') {
			while (i < n && text[i] != '\n')
				i++;
			continue;
		}
		if (isspace((unsigned char)c) || c == ':' || c == ',')
			continue;
		if (c == '0' && i + 1 < n && (text[i + 1] == 'x' || text[i + 1] == 'X') && hi < 0) {
			i++;
			continue;
		}
		int v = hexval(c);
		if (v < 0) {
			snprintf(err, errlen, "not a hex digit at offset %zu: '%c'", i, c);
			goto fail;
		}
		if (hi < 0)
			hi = v;
		else {
			out[(*len)++] = (uint8_t)(hi << 4 | v);
			hi = -1;
		}
	}
	if (hi >= 0) {
		snprintf(err, errlen, "odd number of hex digits");
		goto fail;
	}
	if (*len == 0) {
		snprintf(err, errlen, "no bytes given");
		goto fail;
	}
	free(text);
	return out;
nomem:
	snprintf(err, errlen, "out of memory");
fail:
	free(text);
	free(out);
	return NULL;
}

int
ctl_decode(int argc, char **argv)
{
	if (argc < 1) {
		fprintf(stderr, "usage: ammctl decode dlms|hdlc|wrapper|mbus HEX|-\n");
		return 2;
	}
	if (strcmp(argv[0], "mbus") == 0)
		return ctl_decode_mbus(argc - 1, argv + 1);
	if (strcmp(argv[0], "dlms") == 0 || strcmp(argv[0], "hdlc") == 0 ||
	    strcmp(argv[0], "wrapper") == 0)
		return ctl_decode_dlms(argv[0], argc - 1, argv + 1);
	fprintf(stderr, "ammctl decode: unknown kind '%s' (dlms, hdlc, wrapper, mbus)\n", argv[0]);
	return 2;
}
