/*
 * bench_publish.c: the MQTT publisher from outbox to broker, measured and
 * driven.  Without arguments (as `make bench` runs it) it asks
 * tests/integration/t_publish.sh to start a private PostgreSQL and
 * mosquitto and to call it back with --bench: then it fills the outbox with
 * N register messages, runs the publisher on an event loop until the outbox
 * is empty (every row published with QoS 1, acknowledged and deleted), and
 * prints messages/s, the median of three runs.
 *
 * With --check it is the integration test's driver:
 *
 *   --check insert DSN PREFIX FROM COUNT [PER_SECOND]
 *	outbox rows for messages FROM..FROM+COUNT-1, built by message.c and
 *	inserted with NOTIFY ammd_outbox as the store does, in transactions of
 *	up to 100 rows, at most PER_SECOND rows a second when given.
 *   --check run DSN HOST PORT PREFIX [--until-empty]
 *	the publisher on a libevent loop until SIGTERM/SIGINT (drained), or
 *	until the outbox is empty and nothing is in flight.
 *   --check verify PREFIX FROM COUNT FILE
 *	FILE holds `mosquitto_sub -F '%t %x'` lines; every message must be
 *	byte for byte one of the expected ones, and every expected one must be
 *	there at least once.  Prints "distinct D total T".
 *   --check request FILE ID KIND SERIAL...
 *	a packed CommandRequest into FILE, for mosquitto_pub -f; `run` logs
 *	every request it receives on <prefix>/command/request.
 *
 * $BENCH_PUBLISH_MQTT, when set, is appended to the [mqtt] section of the
 * config (e.g. "tls_ca = ca.pem" or "username = u").
 *
 * Message i is a Registers message of meter "T<i>" read at i ms with three
 * registers whose values derive from i, so a received payload names the
 * row it came from and can be rebuilt and compared exactly.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <libpq-fe.h>

#include "ammd.pb-c.h"
#include "bytes.h"
#include "config.h"
#include "db.h"
#include "log.h"
#include "message.h"
#include "publish.h"

#define RUNS    3
#define BENCH_N 20000
#define TX_ROWS 100

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
die(const char *fmt, const char *arg)
{
	fprintf(stderr, "bench_publish: ");
	fprintf(stderr, fmt, arg);
	fputc('\n', stderr);
	exit(1);
}

static struct config *
make_config(const char *dsn, const char *host, const char *port, const char *prefix)
{
	struct config_diag *diag = calloc(1, sizeof(*diag));
	struct config *c;
	char *text;

	if (diag == NULL ||
	    asprintf(&text,
	             "[database]\ndsn = %s\n[mqtt]\nenabled = yes\nhost = %s\nport = %s\n"
	             "prefix = %s\nclient_id = bench-publish-%d\n%s\n",
	             dsn, host, port, prefix, (int)getpid(),
	             getenv("BENCH_PUBLISH_MQTT") != NULL ? getenv("BENCH_PUBLISH_MQTT") : "") < 0)
		die("%s", "out of memory");
	if ((c = config_parse_string(text, "bench", diag)) == NULL) {
		fprintf(stderr, "%s\n", diag->n > 0 ? diag->err[0].msg : "?");
		die("%s", "bad config");
	}
	free(text);
	free(diag);
	return c;
}

/* Message i, as the insert writes it and the verification expects it. */
static int
build(const struct config *cfg, long i, struct message *m)
{
	char serial[32];
	struct message_register r[3] = {
	    {OBIS(1, 0, 1, 8, 0, 255), i * 1000, (double)i * 0.5, true, i * 500, -3, "kWh"},
	    {OBIS(1, 0, 2, 8, 0, 255), i * 1000, (double)(i % 977), false, 0, 0, "Wh"},
	    {OBIS(1, 0, 32, 7, 0, 255), i * 1000, 230.0 + (double)(i % 10) / 10, true,
	     2300 + i % 10, -1, "V"},
	};

	snprintf(serial, sizeof(serial), "T%ld", i);
	return message_registers(cfg, serial, i, r, 3, m);
}

/* ---- insert --------------------------------------------------------------------- */

static void
exec_or_die(PGconn *c, const char *sql)
{
	char err[DB_ERR_MAX];

	if (db_exec(c, sql, err, sizeof(err)) != 0)
		die("%s", err);
}

static void
insert_rows(PGconn *c, const struct config *cfg, long from, long count, double per_second)
{
	double t0 = now();
	long done = 0;

	while (done < count) {
		long n = count - done < TX_ROWS ? count - done : TX_ROWS;

		if (per_second > 0) {
			/* Keep to the rate: the batch may start once the rows
			 * before it are due. */
			double due = t0 + (double)done / per_second;
			if (n > (long)(per_second / 10) + 1)
				n = (long)(per_second / 10) + 1;
			while (now() < due)
				usleep(10000);
		}
		exec_or_die(c, "BEGIN");
		for (long k = 0; k < n; k++) {
			struct message m;
			char qos[4];
			const char *vals[4] = {NULL, NULL, qos, NULL};
			int lens[4] = {0}, fmts[4] = {0, 1, 0, 0};
			PGresult *res;

			if (build(cfg, from + done + k, &m) != 0)
				die("%s", "message_registers failed");
			snprintf(qos, sizeof(qos), "%d", m.qos);
			vals[0] = m.topic;
			vals[1] = (const char *)m.payload;
			lens[1] = (int)m.len;
			vals[3] = m.retain ? "t" : "f";
			res = PQexecParams(c,
			                   "INSERT INTO outbox (topic, payload, qos, retain) "
			                   "VALUES ($1, $2, $3, $4)",
			                   4, NULL, vals, lens, fmts, 0);
			if (PQresultStatus(res) != PGRES_COMMAND_OK)
				die("%s", PQresultErrorMessage(res));
			PQclear(res);
			message_clear(&m);
		}
		exec_or_die(c, "NOTIFY ammd_outbox");
		exec_or_die(c, "COMMIT");
		done += n;
	}
}

/* ---- run ---------------------------------------------------------------------------- */

struct runner {
	struct event_base *base;
	struct publish *pub;
	PGconn *check; /* a blocking connection of the driver's own */
	bool until_empty;
	bool draining;
	double t_empty;
};

static void
runner_tick(evutil_socket_t fd, short what, void *arg)
{
	struct runner *r = arg;
	struct publish_stats s;
	PGresult *res;

	(void)fd;
	(void)what;
	publish_get_stats(r->pub, &s);
	if (r->draining) {
		if (publish_drained(r->pub))
			event_base_loopexit(r->base, NULL);
		return;
	}
	if (!r->until_empty || s.window > 0 || !s.broker_up)
		return;
	res = PQexec(r->check, "SELECT count(*) FROM outbox");
	if (PQresultStatus(res) == PGRES_TUPLES_OK && strcmp(PQgetvalue(res, 0, 0), "0") == 0) {
		r->t_empty = now();
		event_base_loopexit(r->base, NULL);
	}
	PQclear(res);
}

/* What the command queue will do with a request; here a line to check. */
static void
runner_command(const struct message_command_request *req, void *arg)
{
	(void)arg;
	fprintf(stderr, "bench_publish: command request %s: %s for", req->request_id, req->kind);
	for (size_t i = 0; i < req->nmeters; i++)
		fprintf(stderr, " %s", req->meters[i]);
	fprintf(stderr, " params %s\n", req->params_json);
}

static void
runner_signal(evutil_socket_t sig, short what, void *arg)
{
	struct runner *r = arg;

	(void)sig;
	(void)what;
	r->draining = true;
	publish_drain(r->pub);
}

/* Runs the publisher; returns the seconds until the outbox was empty. */
static double
run(const struct config *cfg, bool until_empty, size_t window, int tick_ms, bool quiet)
{
	struct runner r = {.until_empty = until_empty};
	struct event *tick, *sigterm, *sigint;
	struct timeval tv = {0, tick_ms * 1000};
	struct publish_stats s;
	char err[DB_ERR_MAX];
	double t0;

	if ((r.base = event_base_new()) == NULL)
		die("%s", "event_base_new");
	if ((r.check = db_connect(cfg->database.dsn, "bench-publish-check", err, sizeof(err))) ==
	    NULL)
		die("%s", err);
	if ((r.pub = publish_new(r.base, cfg, NULL)) == NULL)
		die("%s", "publish_new");
	publish_tune(r.pub, window, 0, 500);
	if (!quiet)
		publish_set_command_handler(r.pub, runner_command, NULL);
	tick = event_new(r.base, -1, EV_PERSIST, runner_tick, &r);
	sigterm = evsignal_new(r.base, SIGTERM, runner_signal, &r);
	sigint = evsignal_new(r.base, SIGINT, runner_signal, &r);
	event_add(tick, &tv);
	event_add(sigterm, NULL);
	event_add(sigint, NULL);
	t0 = now();
	if (publish_start(r.pub) != 0)
		die("%s", "publish_start");
	event_base_dispatch(r.base);
	publish_get_stats(r.pub, &s);
	if (!quiet)
		fprintf(stderr,
		        "bench_publish: published %llu, acknowledged %llu, deleted %llu, in flight "
		        "%zu\n",
		        (unsigned long long)s.published, (unsigned long long)s.acknowledged,
		        (unsigned long long)s.deleted, s.window);
	publish_free(r.pub);
	event_free(tick);
	event_free(sigterm);
	event_free(sigint);
	PQfinish(r.check);
	event_base_free(r.base);
	return r.t_empty > 0 ? r.t_empty - t0 : -1;
}

/* ---- verify -------------------------------------------------------------------------- */

static int
verify(const struct config *cfg, long from, long count, const char *file)
{
	FILE *f = fopen(file, "r");
	unsigned char *seen = calloc((size_t)count, 1), *buf = NULL;
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;
	long total = 0, distinct = 0, bad = 0, missing = 0;

	if (f == NULL || seen == NULL)
		die("%s", file);
	while ((len = getline(&line, &cap, f)) > 0) {
		char *sp = strchr(line, ' ');
		struct message m;
		Ammd__Registers *d;
		size_t n = 0;
		long i;

		while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
			line[--len] = '\0';
		if (sp == NULL) {
			bad++;
			continue;
		}
		*sp++ = '\0';
		buf = realloc(buf, strlen(sp) / 2 + 1);
		for (; sp[0] != '\0' && sp[1] != '\0'; sp += 2) {
			int hi = bytes_hexval(sp[0]), lo = bytes_hexval(sp[1]);
			if (hi < 0 || lo < 0)
				break;
			buf[n++] = (unsigned char)(hi << 4 | lo);
		}
		total++;
		if ((d = ammd__registers__unpack(NULL, n, buf)) == NULL) {
			fprintf(stderr, "verify: undecodable payload on %s\n", line);
			bad++;
			continue;
		}
		i = (long)d->read_at;
		ammd__registers__free_unpacked(d, NULL);
		if (i < from || i >= from + count || build(cfg, i, &m) != 0) {
			fprintf(stderr, "verify: unexpected message %ld on %s\n", i, line);
			bad++;
			continue;
		}
		if (strcmp(m.topic, line) != 0 || m.len != n || memcmp(m.payload, buf, n) != 0) {
			fprintf(stderr, "verify: message %ld differs from the row\n", i);
			bad++;
		} else if (!seen[i - from]) {
			seen[i - from] = 1;
			distinct++;
		}
		message_clear(&m);
	}
	for (long i = 0; i < count; i++)
		if (!seen[i] && missing++ < 5)
			fprintf(stderr, "verify: message %ld never arrived\n", from + i);
	printf("distinct %ld total %ld bad %ld missing %ld\n", distinct, total, bad, missing);
	fclose(f);
	free(line);
	free(buf);
	free(seen);
	return distinct == count && bad == 0 ? 0 : 1;
}

/* ---- bench ------------------------------------------------------------------------------ */

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static int
bench(const char *dsn, const char *host, const char *port)
{
	struct config *cfg = make_config(dsn, host, port, "bench/v1");
	static const size_t windows[] = {100, 1000};
	char err[DB_ERR_MAX];
	PGconn *c;

	if ((c = db_connect(dsn, "bench-publish", err, sizeof(err))) == NULL)
		die("%s", err);
	log_init(false, LOG_WARNING);
	struct message sample;
	if (build(cfg, BENCH_N / 2, &sample) != 0)
		die("%s", "message_registers failed");
	printf("outbox -> mosquitto on loopback, QoS 1, %d register messages of %zu bytes, "
	       "median of %d\n",
	       BENCH_N, sample.len, RUNS);
	message_clear(&sample);
	for (size_t w = 0; w < sizeof(windows) / sizeof(windows[0]); w++) {
		double rate[RUNS];
		for (int k = 0; k < RUNS; k++) {
			double secs;
			exec_or_die(c, "TRUNCATE outbox");
			insert_rows(c, cfg, 0, BENCH_N, 0);
			if ((secs = run(cfg, true, windows[w], 20, true)) <= 0)
				die("%s", "the outbox did not empty");
			rate[k] = BENCH_N / secs;
		}
		qsort(rate, RUNS, sizeof(rate[0]), cmp_double);
		printf("  window %5zu: %8.0f messages/s published, acknowledged and deleted "
		       "(runs %.0f .. %.0f)\n",
		       windows[w], rate[RUNS / 2], rate[0], rate[RUNS - 1]);
	}
	PQfinish(c);
	config_free(cfg);
	return 0;
}

/* Started without arguments: let the integration script provide the
 * services and call us back with --bench. */
static int
bench_outer(const char *self)
{
	const char *script = "tests/integration/t_publish.sh";
	char exe[4096];
	ssize_t n;

	if (access(script, R_OK) != 0) {
		fprintf(stderr, "bench_publish: run from the source tree (no %s)\n", script);
		return 1;
	}
	if ((n = readlink("/proc/self/exe", exe, sizeof(exe) - 1)) > 0)
		exe[n] = '\0';
	else
		snprintf(exe, sizeof(exe), "%s", self);
	execlp("bash", "bash", script, "--bench", exe, (char *)NULL);
	perror("bench_publish: bash");
	return 1;
}

/* A packed CommandRequest into a file, for mosquitto_pub -f. */
static int
write_request(const char *file, const char *id, const char *kind, char **meters, size_t n)
{
	Ammd__CommandRequest r = AMMD__COMMAND_REQUEST__INIT;
	uint8_t *buf;
	size_t len;
	FILE *f;

	r.request_id = (char *)id;
	r.kind = (char *)kind;
	r.meters = meters;
	r.n_meters = n;
	r.params_json = "{}";
	if ((buf = malloc(ammd__command_request__get_packed_size(&r) + 1)) == NULL)
		die("%s", "out of memory");
	len = ammd__command_request__pack(&r, buf);
	if ((f = fopen(file, "wb")) == NULL || fwrite(buf, 1, len, f) != len || fclose(f) != 0)
		die("%s", file);
	free(buf);
	return 0;
}

static void
usage(void)
{
	fprintf(stderr, "usage: bench_publish\n"
	                "       bench_publish --bench DSN HOST PORT\n"
	                "       bench_publish --check insert DSN PREFIX FROM COUNT [PER_SECOND]\n"
	                "       bench_publish --check run DSN HOST PORT PREFIX [--until-empty]\n"
	                "       bench_publish --check verify PREFIX FROM COUNT FILE\n"
	                "       bench_publish --check request FILE ID KIND SERIAL...\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	if (argc == 1)
		return bench_outer(argv[0]);
	if (strcmp(argv[1], "--bench") == 0 && argc == 5)
		return bench(argv[2], argv[3], argv[4]);
	if (strcmp(argv[1], "--check") != 0 || argc < 3)
		usage();
	if (strcmp(argv[2], "insert") == 0 && (argc == 7 || argc == 8)) {
		struct config *cfg = make_config(argv[3], "localhost", "1883", argv[4]);
		char err[DB_ERR_MAX];
		PGconn *c = db_connect(argv[3], "bench-publish-insert", err, sizeof(err));
		if (c == NULL)
			die("%s", err);
		insert_rows(c, cfg, atol(argv[5]), atol(argv[6]), argc == 8 ? atof(argv[7]) : 0);
		PQfinish(c);
		config_free(cfg);
		return 0;
	}
	if (strcmp(argv[2], "run") == 0 && (argc == 7 || argc == 8)) {
		struct config *cfg = make_config(argv[3], argv[4], argv[5], argv[6]);
		bool until = argc == 8 && strcmp(argv[7], "--until-empty") == 0;
		double secs;
		log_init(false, LOG_INFO);
		secs = run(cfg, until, 0, 200, false);
		config_free(cfg);
		return until && secs < 0 ? 1 : 0;
	}
	if (strcmp(argv[2], "verify") == 0 && argc == 7) {
		struct config *cfg = make_config("", "localhost", "1883", argv[3]);
		int rc = verify(cfg, atol(argv[4]), atol(argv[5]), argv[6]);
		config_free(cfg);
		return rc;
	}
	if (strcmp(argv[2], "request") == 0 && argc >= 7)
		return write_request(argv[3], argv[4], argv[5], &argv[6], (size_t)(argc - 6));
	usage();
	return 2;
}
