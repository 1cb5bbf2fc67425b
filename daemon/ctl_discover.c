/*
 * ctl_discover.c: `ammctl meter discover [--dsn DSN] [--wait SECS] SERIAL...`
 *
 * Asks the daemon to discover meters again: it marks each meter
 * (collect.discover), makes it due now and wakes the schedulers with
 * NOTIFY ammd_ondemand; whichever ammd instance claims the meter reads its
 * object list and load-profile layout in its next session, at on-demand
 * priority, and stores them (meter_object, meter_profile_layout).  The
 * operator's role may update the inventory but not write discovery rows,
 * so the reading itself is the daemon's.  With --wait it polls until the
 * mark is gone (the discovery was stored) or the time runs out.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ctl.h"
#include "db.h"

static const char mark_sql[] =
    "UPDATE meter SET collect = collect || '{\"discover\": true}', next_due_at = NULL, "
    "updated_at = now() WHERE serial = $1 RETURNING id";

static const char pending_sql[] =
    "SELECT count(*) FROM meter WHERE serial = ANY(string_to_array($1, ',')) "
    "AND collect ? 'discover'";

static void
usage(FILE *f)
{
	fprintf(f, "usage: ammctl meter discover [--dsn DSN] [--wait SECS] SERIAL...\n");
}

int
ctl_discover(int argc, char **argv)
{
	const char *dsn = NULL;
	int wait_s = 0, i, rc = 0;
	char err[DB_ERR_MAX];
	PGconn *c;
	PGresult *r;
	size_t listlen = 1;
	char *list;

	for (i = 0; i < argc && argv[i][0] == '-'; i++) {
		if (strcmp(argv[i], "--dsn") == 0 && i + 1 < argc) {
			dsn = argv[++i];
		} else if (strcmp(argv[i], "--wait") == 0 && i + 1 < argc) {
			wait_s = atoi(argv[++i]);
		} else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
			usage(stdout);
			return 0;
		} else {
			usage(stderr);
			return 2;
		}
	}
	if (i == argc) {
		usage(stderr);
		return 2;
	}
	if ((c = db_connect(dsn, "ammctl", err, sizeof(err))) == NULL) {
		fprintf(stderr, "ammctl meter discover: %s\n", err);
		return 1;
	}
	for (int k = i; k < argc; k++)
		listlen += strlen(argv[k]) + 1;
	if ((list = calloc(1, listlen)) == NULL) {
		PQfinish(c);
		return 1;
	}
	for (int k = i; k < argc; k++) {
		const char *p[1] = {argv[k]};
		if ((r = db_query(c, mark_sql, 1, p, err, sizeof(err))) == NULL) {
			fprintf(stderr, "ammctl meter discover: %s: %s\n", argv[k], err);
			rc = 1;
			continue;
		}
		if (PQntuples(r) == 0) {
			fprintf(stderr, "ammctl meter discover: no meter %s\n", argv[k]);
			rc = 1;
		} else {
			if (list[0])
				strcat(list, ",");
			strcat(list, argv[k]);
			printf("%s: discovery requested\n", argv[k]);
		}
		PQclear(r);
	}
	if (db_exec(c, "NOTIFY ammd_ondemand", err, sizeof(err)) != 0)
		fprintf(stderr, "ammctl meter discover: %s\n", err);
	for (int t = 0; t < wait_s * 10 && list[0]; t++) {
		const char *p[1] = {list};
		long n = -1;
		if ((r = db_query(c, pending_sql, 1, p, err, sizeof(err))) != NULL) {
			n = atol(PQgetvalue(r, 0, 0));
			PQclear(r);
		}
		if (n == 0) {
			printf("discovered\n");
			break;
		}
		if (t + 1 == wait_s * 10) {
			fprintf(stderr, "ammctl meter discover: not done after %d s\n", wait_s);
			rc = 1;
		}
		usleep(100000);
	}
	free(list);
	PQfinish(c);
	return rc;
}
