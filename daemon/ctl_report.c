/*
 * ctl_report.c: `ammctl report traffic --month [YYYY-MM] [--json]` — data
 * volume per meter over a calendar month (UTC), summed from session_log's
 * bytes each way (issue 6: GPRS operators bill per megabyte).  Every
 * session row counts, the "identify" rows of inbound GPRS connections
 * included, because the operator bills those bytes too; --transport
 * restricts to one transport (e.g. gprs).
 *
 *   ammctl report traffic [--dsn DSN] [--month YYYY-MM] [--transport T] [--json]
 *
 * Text: one line per meter, largest first, then the total.  JSON:
 * {"month", "from", "to", "meters": [{"serial", "transport", "sessions",
 * "bytes_in", "bytes_out", "bytes"}], "total": {...}}.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ctl.h"
#include "db.h"
#include "json.h"

static const char traffic_sql[] =
    "SELECT m.serial, m.transport, count(*) FILTER (WHERE l.outcome <> 'identify'), "
    "  sum(l.bytes_in)::bigint, sum(l.bytes_out)::bigint "
    "FROM session_log l JOIN meter m ON m.id = l.meter_id "
    "WHERE l.started_at >= $1::timestamptz AND l.started_at < $1::timestamptz + interval '1 month' "
    "  AND ($2::text IS NULL OR l.transport = $2) "
    "GROUP BY m.id, m.serial, m.transport "
    "ORDER BY sum(l.bytes_in + l.bytes_out) DESC, m.serial";

static void
report_usage(FILE *f)
{
	fprintf(f, "usage: ammctl report traffic [--dsn DSN] [--month YYYY-MM] [--transport T] "
	           "[--json]\n");
}

static int
month_ok(const char *s, int *y, int *m)
{
	char tail;
	if (sscanf(s, "%4d-%2d%c", y, m, &tail) != 2 || strlen(s) != 7)
		return -1;
	return *y >= 2000 && *y <= 2200 && *m >= 1 && *m <= 12 ? 0 : -1;
}

static int
report_traffic(int argc, char **argv)
{
	const char *dsn = NULL, *month = NULL, *transport = NULL;
	bool json = false;
	char mbuf[24], from[48], err[DB_ERR_MAX];
	int y, mo;

	for (int i = 0; i < argc; i++) {
		const char *a = argv[i], **dst;
		if (strcmp(a, "--json") == 0) {
			json = true;
			continue;
		}
		if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
			report_usage(stdout);
			return 0;
		}
		if (strcmp(a, "--dsn") == 0)
			dst = &dsn;
		else if (strcmp(a, "--month") == 0)
			dst = &month;
		else if (strcmp(a, "--transport") == 0)
			dst = &transport;
		else {
			fprintf(stderr, "ammctl report traffic: unexpected argument '%s'\n", a);
			report_usage(stderr);
			return 2;
		}
		/* --month alone: this month */
		if (dst == &month && (i + 1 >= argc || argv[i + 1][0] == '-'))
			continue;
		if (i + 1 >= argc) {
			fprintf(stderr, "ammctl report traffic: %s needs a value\n", a);
			return 2;
		}
		*dst = argv[++i];
	}
	if (month == NULL) {
		time_t now = time(NULL);
		struct tm tm;
		gmtime_r(&now, &tm);
		snprintf(mbuf, sizeof(mbuf), "%04d-%02d", tm.tm_year + 1900, tm.tm_mon + 1);
		month = mbuf;
	}
	if (month_ok(month, &y, &mo) != 0) {
		fprintf(stderr, "ammctl report traffic: --month wants YYYY-MM, not '%s'\n", month);
		return 2;
	}
	snprintf(from, sizeof(from), "%04d-%02d-01 00:00:00+00", y, mo);

	PGconn *c = db_connect(dsn, "ammctl report", err, sizeof(err));
	if (c == NULL) {
		fprintf(stderr, "ammctl report traffic: %s\n", err);
		return 1;
	}
	const char *p[2] = {from, transport};
	PGresult *r = PQexecParams(c, traffic_sql, 2, NULL, p, NULL, NULL, 0);
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		fprintf(stderr, "ammctl report traffic: %s", PQresultErrorMessage(r));
		PQclear(r);
		PQfinish(c);
		return 1;
	}
	int n = PQntuples(r);
	int64_t tin = 0, tout = 0, tses = 0;
	struct json j;
	if (json) {
		json_init(&j, stdout, false);
		json_obj_begin(&j, NULL);
		json_str(&j, "month", month);
		json_str(&j, "from", from);
		if (transport)
			json_str(&j, "transport", transport);
		json_arr_begin(&j, "meters");
	} else {
		printf("traffic %s (UTC)%s%s\n%-20s %-9s %8s %14s %14s %12s\n", month,
		       transport ? ", transport " : "", transport ? transport : "", "serial",
		       "transport", "sessions", "bytes in", "bytes out", "MB");
	}
	for (int i = 0; i < n; i++) {
		int64_t ses = strtoll(PQgetvalue(r, i, 2), NULL, 10);
		int64_t in = strtoll(PQgetvalue(r, i, 3), NULL, 10);
		int64_t out = strtoll(PQgetvalue(r, i, 4), NULL, 10);
		tin += in;
		tout += out;
		tses += ses;
		if (json) {
			json_obj_begin(&j, NULL);
			json_str(&j, "serial", PQgetvalue(r, i, 0));
			json_str(&j, "transport", PQgetvalue(r, i, 1));
			json_int(&j, "sessions", ses);
			json_int(&j, "bytes_in", in);
			json_int(&j, "bytes_out", out);
			json_int(&j, "bytes", in + out);
			json_obj_end(&j);
		} else {
			printf("%-20s %-9s %8lld %14lld %14lld %12.3f\n", PQgetvalue(r, i, 0),
			       PQgetvalue(r, i, 1), (long long)ses, (long long)in, (long long)out,
			       (double)(in + out) / 1e6);
		}
	}
	if (json) {
		json_arr_end(&j);
		json_obj_begin(&j, "total");
		json_int(&j, "meters", n);
		json_int(&j, "sessions", tses);
		json_int(&j, "bytes_in", tin);
		json_int(&j, "bytes_out", tout);
		json_int(&j, "bytes", tin + tout);
		json_obj_end(&j);
		json_obj_end(&j);
		json_end(&j);
		putchar('\n');
	} else {
		printf("%-20s %-9s %8lld %14lld %14lld %12.3f\n", "total", "", (long long)tses,
		       (long long)tin, (long long)tout, (double)(tin + tout) / 1e6);
		if (n > 0)
			printf("%d meters, %.0f bytes per meter\n", n, (double)(tin + tout) / n);
	}
	PQclear(r);
	PQfinish(c);
	return 0;
}

int
ctl_report(int argc, char **argv)
{
	if (argc >= 1 && (strcmp(argv[0], "-h") == 0 || strcmp(argv[0], "--help") == 0)) {
		report_usage(stdout);
		return 0;
	}
	if (argc < 1 || strcmp(argv[0], "traffic") != 0) {
		report_usage(stderr);
		return 2;
	}
	return report_traffic(argc - 1, argv + 1);
}
