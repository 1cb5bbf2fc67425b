/*
 * fuzz_meter_csv.c: the meter import format (daemon/meter_csv.h) on
 * arbitrary text, line by line as `ammctl meter import` reads a file: the
 * first line that is not blank or a comment is the header, every other
 * line a record split by the header's map and checked into a meter row.
 *
 * Each line is copied to an allocation of exactly its length plus the
 * terminator getline() adds, so a read past it trips ASan.  A refusal must
 * come with a terminated message; an accepted row must point into its
 * line and hold values inside the documented ranges.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "meter_csv.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile size_t sink;

static void
check_err(const char *err, size_t cap)
{
	if (err[0] == '\0' || memchr(err, 0, cap) == NULL)
		abort();
	sink += strlen(err);
}

/* A string member of the row lies inside the line (or is a literal). */
static void
inside(const char *p, size_t n, const char *line, size_t len)
{
	if (p != NULL && (p < line || p + n > line + len))
		abort();
}

static void
check_row(const struct meter_row *r, const char *line, size_t len)
{
	if (r->serial_len < 1 || r->serial_len > 32 || r->type == NULL || r->transport == NULL ||
	    r->security == NULL)
		abort();
	inside(r->serial, r->serial_len, line, len);
	inside(r->host, r->host_len, line, len);
	inside(r->password, r->password_len, line, len);
	inside(r->gw, r->gw_len, line, len);
	inside(r->secondary, r->secondary ? 16 : 0, line, len);
	if (r->port < 0 || r->port > 65535 || r->client_addr < 0 || r->client_addr > 127 ||
	    r->server_addr < 0 || r->server_addr > 16383 || r->ek_len > 32 || r->ak_len > 32 ||
	    r->password_len > 255 || r->primary < -1 || r->primary > 250 ||
	    r->gw_host_len > r->gw_len)
		abort();
	if (strcmp(r->transport, "tcpip") == 0 && (r->host == NULL || r->port == 0))
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct meter_csv_header h;
	bool have_header = false;
	size_t off = 0;
	char err[512];

	while (off < size) {
		const uint8_t *nl = memchr(data + off, '\n', size - off);
		size_t n = nl ? (size_t)(nl - (data + off)) + 1 : size - off;
		char *line = malloc(n + 1);
		ssize_t len = (ssize_t)n;

		if (line == NULL)
			return 0;
		memcpy(line, data + off, n);
		line[n] = '\0';
		off += n;
		err[0] = '\0';
		if (meter_csv_skip(line, &len)) {
			free(line);
			continue;
		}
		if (!have_header) {
			if (meter_csv_header(line, &h, err, sizeof(err)) < 0) {
				check_err(err, sizeof(err));
				free(line);
				return 0; /* the import stops at a bad header */
			}
			if (h.ncols < 2 || h.ncols > MC_NCOLS)
				abort();
			have_header = true;
		} else {
			struct meter_fields f;
			struct meter_row r;

			if (meter_csv_record(line, (size_t)len, &h, &f, err, sizeof(err)) < 0)
				check_err(err, sizeof(err));
			else if (meter_csv_row_check(&f, &r, err, sizeof(err)) < 0)
				check_err(err, sizeof(err));
			else
				check_row(&r, line, (size_t)len);
		}
		free(line);
	}
	return 0;
}
