/*
 * test_meter_csv.c: the meter import format (daemon/meter_csv.c): CSV
 * splitting with RFC 4180 quotes, skipped lines, the header's column map
 * and its refusals, records against the header, and the per-field checks
 * of a row, each refusal with the message the operator sees.  Lines sit at
 * the end of their allocation so an over-read trips ASan.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "meter_csv.h"

/* A writable copy of s, ending its allocation with the terminator. */
static char *
line_dup(const char *s)
{
	char *p = malloc(strlen(s) + 1);
	cr_assert_not_null(p);
	memcpy(p, s, strlen(s) + 1);
	return p;
}

Test(meter_csv, split_quotes_and_errors)
{
	static const struct {
		const char *line;
		int n;          /* fields, or -1 */
		const char *f1; /* second field, or a substring of the error */
	} t[] = {
	    {"a,b,c", 3, "b"},
	    {"a,,c", 3, ""},
	    {"\"a,1\",\"x \"\"y\"\"\"", 2, "x \"y\""},
	    {"a,", 2, ""},
	    {"\"a", -1, "unterminated quoted field 1"},
	    {"\"a\"b,c", -1, "text after the closing quote of field 1"},
	    {"a,b\"c", -1, "quote inside unquoted field 2"},
	    {"1,2,3,4", -1, "more than 3 fields"},
	};
	for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
		char *fv[3], err[128] = "", *l = line_dup(t[i].line);
		size_t fn[3];
		int n = meter_csv_split(l, fv, fn, 3, err, sizeof err);
		cr_expect_eq(n, t[i].n, "case %zu: %d", i, n);
		if (n >= 2)
			cr_expect(fn[1] == strlen(t[i].f1) && memcmp(fv[1], t[i].f1, fn[1]) == 0,
			          "case %zu: '%.*s'", i, (int)fn[1], fv[1]);
		else
			cr_expect(strstr(err, t[i].f1) != NULL, "case %zu: '%s'", i, err);
		free(l);
	}
}

Test(meter_csv, skip_blank_comment_and_line_ends)
{
	static const struct {
		const char *line;
		bool skip;
		ssize_t len;
	} t[] = {{"\r\n", true, 0}, {"# x\n", true, 3}, {"a,b\r\n", false, 3}, {"a", false, 1}};
	for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
		char *l = line_dup(t[i].line);
		ssize_t len = (ssize_t)strlen(l);
		cr_expect_eq(meter_csv_skip(l, &len), t[i].skip, "case %zu", i);
		cr_expect_eq(len, t[i].len, "case %zu", i);
		cr_expect_eq(l[len], '\0', "case %zu", i);
		free(l);
	}
}

Test(meter_csv, header)
{
	static const struct {
		const char *line;
		const char *err; /* NULL: accepted */
	} t[] = {
	    {"serial,transport,host", NULL},
	    {"transport,serial,ek,ak,password,system_title", NULL},
	    {"serial,transport,colour", "unknown column 'colour'"},
	    {"serial,transport,serial", "repeated column 'serial'"},
	    {"serial,host", "serial and transport columns are required"},
	    {"serial,transport,ek", "go together (all or none)"},
	    {"serial,\"transport", "unterminated quoted field 2"},
	};
	for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
		struct meter_csv_header h;
		char err[128] = "", *l = line_dup(t[i].line);
		int rc = meter_csv_header(l, &h, err, sizeof err);
		if (t[i].err == NULL)
			cr_expect_eq(rc, 0, "case %zu: %s", i, err);
		else
			cr_expect(rc == -1 && strstr(err, t[i].err) != NULL, "case %zu: '%s'", i,
			          err);
		free(l);
	}
	struct meter_csv_header h;
	char err[128], *l = line_dup("transport,serial,ek,ak,password,system_title");
	cr_assert_eq(meter_csv_header(l, &h, err, sizeof err), 0);
	cr_expect_eq(h.ncols, 6);
	cr_expect_eq(h.map[0], MC_TRANSPORT);
	cr_expect_eq(h.map[1], MC_SERIAL);
	cr_expect(h.keys);
	free(l);
}

/* Records against "serial,transport,host,port,gateway,primary_addr". */
Test(meter_csv, records_and_row_checks)
{
	static const struct {
		const char *line;
		const char *err; /* NULL: accepted */
		int port;
	} t[] = {
	    {"KAM1,tcpip,10.0.0.1,,,", NULL, 4059},
	    {"KAM1,tcpip,10.0.0.1,4060,,", NULL, 4060},
	    {"KAM2,mbus,,,10.9.0.1:10001,5", NULL, 0},
	    {"KAM1,tcpip,10.0.0.1,70000,,", "port '70000': expected 1..65535", 0},
	    {"KAM1,tcpip,,,,", "transport tcpip needs a host", 0},
	    {"KAM 1,tcpip,h,,,", "serial 'KAM 1'", 0},
	    {"KAM1,bus,h,,,", "transport 'bus'", 0},
	    {"KAM2,mbus,,,10.9.0.1,5", "gateway '10.9.0.1': expected host:port", 0},
	    {"KAM2,mbus,,,10.9.0.1:1,", "needs primary_addr or secondary_addr", 0},
	    {"KAM3,modbus,,,g:502,0", "needs primary_addr (the unit id", 0},
	    {"KAM1,tcpip,h,,g:1,", "for mbus and modbus meters only", 0},
	    {"KAM1,tcpip,h", "3 fields, the header has 6", 0},
	};
	struct meter_csv_header h;
	char err[256], *hl = line_dup("serial,transport,host,port,gateway,primary_addr");
	cr_assert_eq(meter_csv_header(hl, &h, err, sizeof err), 0);
	for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
		struct meter_fields f;
		struct meter_row r;
		char *l = line_dup(t[i].line);
		int rc;
		err[0] = '\0';
		rc = meter_csv_record(l, strlen(l), &h, &f, err, sizeof err);
		if (rc == 0)
			rc = meter_csv_row_check(&f, &r, err, sizeof err);
		if (t[i].err == NULL) {
			cr_expect_eq(rc, 0, "case %zu: %s", i, err);
			cr_expect_eq(r.port, t[i].port, "case %zu", i);
			cr_expect_eq(r.serial, l, "case %zu: points into the line", i);
		} else {
			cr_expect(rc == -1 && strstr(err, t[i].err) != NULL, "case %zu: '%s'", i,
			          err);
		}
		free(l);
	}
	/* A NUL inside the line (getline() counts it, strlen() stops at it). */
	struct meter_fields f;
	char nul[] = "KAM1,tcpip\0,h,,,";
	cr_expect_eq(meter_csv_record(nul, sizeof nul - 1, &h, &f, err, sizeof err), -1);
	cr_expect_str_eq(err, "NUL byte in line");
	free(hl);
}

Test(meter_csv, keys_and_security)
{
	static const struct {
		const char *line;
		const char *err;
	} t[] = {
	    {"A,tcpip,h,hls-gmac,000102030405060708090a0b0c0d0e0f,000102030405060708090a0b0c0d0e0f,"
	     ","
	     "4b414d0000000003",
	     NULL},
	    {"A,tcpip,h,lls,,,secret,", NULL},
	    {"A,tcpip,h,lls,,,,", "security lls needs a password"},
	    {"A,tcpip,h,hls-gmac,0001,,,", "ek: expected 32 or 64 hex digits"},
	    {"A,tcpip,h,hls-gmac,000102030405060708090a0b0c0d0e0f,,,", "needs both ek and ak"},
	    {"A,tcpip,h,none,,,,4b414d", "system_title: expected 16 hex digits"},
	    {"A,tcpip,h,hls,,,,", "security 'hls'"},
	};
	struct meter_csv_header h;
	char err[256], *hl = line_dup("serial,transport,host,security,ek,ak,password,system_title");
	cr_assert_eq(meter_csv_header(hl, &h, err, sizeof err), 0);
	cr_assert(h.keys);
	for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
		struct meter_fields f;
		struct meter_row r;
		char *l = line_dup(t[i].line);
		int rc = meter_csv_record(l, strlen(l), &h, &f, err, sizeof err);
		cr_assert_eq(rc, 0, "case %zu: %s", i, err);
		rc = meter_csv_row_check(&f, &r, err, sizeof err);
		if (t[i].err == NULL) {
			cr_expect_eq(rc, 0, "case %zu: %s", i, err);
			if (i == 0)
				cr_expect(r.ek_len == 16 && r.ak_len == 16 && r.has_st &&
				              r.ek[15] == 0x0f && r.st[0] == 0x4b,
				          "hls keys decoded");
		} else {
			cr_expect(rc == -1 && strstr(err, t[i].err) != NULL, "case %zu: '%s'", i,
			          err);
		}
		free(l);
	}
	free(hl);
}
