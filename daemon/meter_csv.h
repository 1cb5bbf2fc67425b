/*
 * meter_csv.h: the meter inventory's import format, as `ammctl meter
 * import` reads it (ctl_meter.c documents the columns): splitting a CSV
 * line, mapping the header's columns, and checking one record into a
 * meter row.  Pure text handling with no database, so that the fuzzer
 * (tests/fuzz/fuzz_meter_csv.c) reaches it alone.  Lines are split in
 * place; fields and rows point into the caller's line buffer.
 */
#ifndef AMM_METER_CSV_H
#define AMM_METER_CSV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

enum meter_col {
	MC_SERIAL,
	MC_TYPE,
	MC_TRANSPORT,
	MC_HOST,
	MC_PORT,
	MC_HDLC,
	MC_CLIENT,
	MC_SERVER,
	MC_SECURITY,
	MC_EK,
	MC_AK,
	MC_PASSWORD,
	MC_SYSTITLE,
	MC_PERIOD,
	MC_GATEWAY,
	MC_PRIMARY,
	MC_SECONDARY,
	MC_NCOLS
};

extern const char *const meter_csv_col_names[MC_NCOLS];

/* One input record: fields point into the caller's line buffer. */
struct meter_fields {
	const char *v[MC_NCOLS];
	size_t n[MC_NCOLS];
};

/* A validated meter, ready to be written as a COPY row. */
struct meter_row {
	const char *serial;
	size_t serial_len;
	const char *type, *transport, *security;
	const char *host;
	size_t host_len;
	int port; /* 0: none */
	bool hdlc;
	int client_addr, server_addr, period;
	uint8_t ek[32], ak[32], st[8];
	size_t ek_len, ak_len; /* 0: none */
	bool has_st;
	const char *password; /* NULL: none */
	size_t password_len;
	const char *gw; /* host:port, NULL: none */
	size_t gw_len, gw_host_len;
	int gw_port;
	int primary;           /* -1: none */
	const char *secondary; /* NULL: none */
};

/* The header line: map[i] is the column of field i. */
struct meter_csv_header {
	int map[MC_NCOLS];
	int ncols;
	bool keys; /* names ek, ak, password and system_title (all of them) */
};

/*
 * Splits one CSV line in place (quotes removed, "" unescaped) into at most
 * max fields.  Returns the number of fields, or -1 with the reason in err.
 */
int meter_csv_split(char *line, char **fv, size_t *fn, int max, char *err, size_t errlen);

/* Strips the line end; true when the line is blank or a comment. */
bool meter_csv_skip(char *line, ssize_t *len);

/* Column of a header name (n bytes), or -1. */
int meter_csv_col_index(const char *s, size_t n);

/*
 * Reads the header line (split in place): known columns, none twice,
 * serial and transport present, the key columns all or none.  Returns 0,
 * or -1 with the reason in err.
 */
int meter_csv_header(char *line, struct meter_csv_header *h, char *err, size_t errlen);

/*
 * Splits a record line of len bytes (after meter_csv_skip()) in place into
 * f by the header's map: no NUL byte, as many fields as the header.
 * Returns 0, or -1 with the reason in err.
 */
int meter_csv_record(char *line, size_t len, const struct meter_csv_header *h,
                     struct meter_fields *f, char *err, size_t errlen);

/*
 * Checks one record and fills r.  Returns 0, or -1 with the reason in err.
 * Field values are not NUL-terminated; r points into them.
 */
int meter_csv_row_check(const struct meter_fields *f, struct meter_row *r, char *err,
                        size_t errlen);

#endif
