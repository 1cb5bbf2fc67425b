/*
 * bench_gprs.c: what one daily GPRS collection costs on the operator's
 * bill — bytes on the wire per meter, each way, against the bytes of the
 * payload itself (the tagged A-XDR values the meter returns).
 *
 * It starts build/metersim serve for a small fleet (the security mix of
 * the simulator: none, LLS, HLS-GMAC with ciphering), frozen at a fixed
 * time, and reads every meter as ammd's session does on a GPRS connection
 * (wrapper framing): association with the meter's own security, the clock
 * and 36 energy registers with their scaler_units (GET-with-list), one day
 * of 15-minute load profile by range, the five event logs by range over
 * the same day, release.  It also measures the identification exchange
 * that precedes an inbound session (public client association, logical
 * device name, release).  Wire bytes are counted at the socket; payload
 * bytes are the data of every RESULT.  Figures are per meter, averaged,
 * by security, and the overhead ratio wire / payload.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "axdr.h"
#include "cosem_time.h"
#include "dlms_client.h"
#include "meter_error.h"
#include "obis.h"
#include "xdlms.h"

#define METERS 30
#define START  "2024-03-02T00:00:00Z"
#define DAY    86400

struct bsess {
	int fd;
	struct dlms_client c;
	uint8_t rx[4200], tx[4200], work[4200];
	uint8_t *data;
	uint8_t out[70000];
	uint64_t wire_in, wire_out, payload;
};

static int
flush_out(struct bsess *s, struct mbuf *out)
{
	if (out->len && write(s->fd, out->p, out->len) != (ssize_t)out->len)
		return -1;
	s->wire_out += out->len;
	out->len = 0;
	return 0;
}

/* Drive the engine until `want` (or a failure); RESULT data counts as payload. */
static int
run_until(struct bsess *s, struct mbuf *out, int want)
{
	uint8_t buf[8192];

	for (;;) {
		struct dlms_client_event ev;
		int e;
		while ((e = dlms_client_poll(&s->c, out, &ev)) != DLMS_CEV_NONE) {
			if (flush_out(s, out))
				return -1;
			if (e == DLMS_CEV_RESULT && ev.err == 0 && ev.data != NULL)
				s->payload += ev.data_len;
			if (e == DLMS_CEV_FAILED || (e == DLMS_CEV_DONE && ev.err))
				return -1;
			if (e == want)
				return 0;
		}
		if (flush_out(s, out))
			return -1;
		struct pollfd p = {s->fd, POLLIN, 0};
		if (poll(&p, 1, 5000) <= 0)
			return -1;
		ssize_t n = read(s->fd, buf, sizeof(buf));
		if (n <= 0)
			return -1;
		s->wire_in += (size_t)n;
		size_t off = 0;
		while (off < (size_t)n) {
			size_t took = dlms_client_feed(&s->c, buf + off, (size_t)n - off);
			off += took;
			if (off < (size_t)n) {
				while ((e = dlms_client_poll(&s->c, out, &ev)) != DLMS_CEV_NONE) {
					if (e == DLMS_CEV_RESULT && ev.err == 0 && ev.data != NULL)
						s->payload += ev.data_len;
					if (e == DLMS_CEV_FAILED)
						return -1;
				}
				if (flush_out(s, out))
					return -1;
			}
		}
	}
}

static int
connect_to(uint16_t port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	for (int i = 0; i < 50; i++) {
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
			return fd;
		close(fd);
		usleep(100000);
		fd = socket(AF_INET, SOCK_STREAM, 0);
	}
	close(fd);
	return -1;
}

static int
hex16(const char *h, uint8_t k[16])
{
	if (strlen(h) != 32)
		return -1;
	for (int i = 0; i < 16; i++) {
		unsigned v;
		if (sscanf(h + 2 * i, "%2x", &v) != 1)
			return -1;
		k[i] = (uint8_t)v;
	}
	return 0;
}

struct meter {
	char serial[16], sec[16], ek[40], ak[40], pw[40];
	uint16_t port, client;
};

static int
session_open(struct bsess *s, const struct meter *m, bool public_client, struct mbuf *out)
{
	struct dlms_client_config cfg = {0};

	s->wire_in = s->wire_out = s->payload = 0;
	s->fd = connect_to(m->port);
	if (s->fd < 0)
		return -1;
	cfg.framing = DLMS_FRAMING_WRAPPER;
	cfg.client_wport = public_client ? 16 : m->client;
	cfg.server_wport = 1;
	cfg.mechanism = ACSE_MECH_NONE;
	if (!public_client && strcmp(m->sec, "lls") == 0) {
		cfg.mechanism = ACSE_MECH_LLS;
		cfg.password = (const uint8_t *)m->pw;
		cfg.password_len = strlen(m->pw);
	} else if (!public_client && strcmp(m->sec, "hls-gmac") == 0) {
		cfg.mechanism = ACSE_MECH_HLS_GMAC;
		cfg.ciphering = true;
		if (hex16(m->ek, cfg.keys.ek) || hex16(m->ak, cfg.keys.ak))
			return -1;
	}
	memcpy(cfg.system_title, "AMD\0\0\0\0\1", 8);
	cfg.tx_counter = 1;
	cfg.max_pdu = 4096; /* as ammd's sessions propose */
	cfg.buf = (struct dlms_buffers){s->rx,   sizeof(s->rx),   s->tx,   sizeof(s->tx),
	                                s->work, sizeof(s->work), s->data, 600000};
	cfg.timeout_ms = 5000;
	if (dlms_client_init(&s->c, &cfg) != 0)
		return -1;
	mbuf_init(out, s->out, sizeof(s->out));
	if (dlms_client_open(&s->c, out) != 0)
		return -1;
	return run_until(s, out, DLMS_CEV_ASSOCIATED);
}

static int
get(struct bsess *s, struct mbuf *out, const struct dlms_get_item *it, uint32_t n)
{
	if (dlms_client_get(&s->c, out, it, n) != 0)
		return -1;
	return run_until(s, out, DLMS_CEV_DONE);
}

static int
range(uint8_t *buf, size_t cap, int64_t from, int64_t to, struct xdlms_access *acc)
{
	static const struct cosem_tz tz = {60, COSEM_DST_EU};
	struct xdlms_capture_obj clk = {8, OBIS(0, 0, 1, 0, 0, 255), 2, 0};
	struct cosem_datetime df, dt;
	struct mbuf b;

	cosem_datetime_from_utc(from, &tz, &df);
	cosem_datetime_from_utc(to, &tz, &dt);
	mbuf_init(&b, buf, cap);
	xdlms_put_range(&b, &clk, &df, &dt, NULL, 0);
	memset(acc, 0, sizeof(*acc));
	acc->present = true;
	acc->selector = XDLMS_ACCESS_RANGE;
	acc->params.raw = buf;
	acc->params.len = (uint32_t)b.len;
	return b.err ? -1 : 0;
}

/* One daily collection: registers, a day of profile, a day of events. */
static int
collect(struct bsess *s, const struct meter *m, int64_t now)
{
	struct mbuf out;
	struct dlms_get_item it[80];
	uint32_t n = 0;
	uint8_t rb[6][128];
	struct xdlms_access acc[6];

	if (session_open(s, m, false, &out) != 0)
		return -1;
	it[n++] = (struct dlms_get_item){.desc = {8, OBIS(0, 0, 1, 0, 0, 255), 2}};
	for (uint8_t c = 1; c <= 4; c++)
		for (uint8_t t = 0; t <= 8; t++) {
			it[n++] = (struct dlms_get_item){.desc = {3, OBIS(1, 0, c, 8, t, 255), 2}};
			it[n++] = (struct dlms_get_item){.desc = {3, OBIS(1, 0, c, 8, t, 255), 3}};
		}
	if (get(s, &out, it, n) != 0)
		return -1;
	if (range(rb[0], sizeof(rb[0]), now - DAY + 900, now, &acc[0]) != 0)
		return -1;
	struct dlms_get_item lp = {.desc = {7, OBIS(1, 0, 99, 1, 0, 255), 2}, .access = &acc[0]};
	if (get(s, &out, &lp, 1) != 0)
		return -1;
	static const uint8_t logs[5] = {0, 1, 2, 4, 7};
	for (int i = 0; i < 5; i++) {
		if (range(rb[1 + i], sizeof(rb[1 + i]), now - DAY, now, &acc[1 + i]) != 0)
			return -1;
		struct dlms_get_item ev = {.desc = {7, OBIS(0, 0, 99, 98, logs[i], 255), 2},
		                           .access = &acc[1 + i]};
		if (get(s, &out, &ev, 1) != 0)
			return -1;
	}
	if (dlms_client_release(&s->c, &out) != 0 || run_until(s, &out, DLMS_CEV_RELEASED) != 0)
		return -1;
	close(s->fd);
	return 0;
}

static int
identify(struct bsess *s, const struct meter *m)
{
	struct mbuf out;
	struct dlms_get_item ldn = {.desc = {1, OBIS(0, 0, 42, 0, 0, 255), 2}};

	if (session_open(s, m, true, &out) != 0 || get(s, &out, &ldn, 1) != 0)
		return -1;
	if (dlms_client_release(&s->c, &out) != 0 || run_until(s, &out, DLMS_CEV_RELEASED) != 0)
		return -1;
	close(s->fd);
	return 0;
}

int
main(void)
{
	const char *build = getenv("BUILD") ? getenv("BUILD") : "build";
	char cmd[1024], line[512];
	struct meter ms[METERS];
	int nm = 0;
	uint16_t base = (uint16_t)(20000 + (getpid() % 5000) * 2);

	snprintf(cmd, sizeof(cmd), "%s/metersim export --count %d --seed 5 --base-port %u", build,
	         METERS, base);
	FILE *f = popen(cmd, "r");
	if (f == NULL)
		return 1;
	while (fgets(line, sizeof(line), f) && nm < METERS) {
		char *fl[20];
		int k = 0;
		for (char *p = line, *q; k < 20 && p; p = q) {
			q = strchr(p, ',');
			if (q)
				*q++ = '\0';
			fl[k++] = p;
		}
		if (k < 12 || strcmp(fl[0], "serial") == 0)
			continue;
		struct meter *m = &ms[nm++];
		snprintf(m->serial, sizeof(m->serial), "%s", fl[0]);
		m->port = (uint16_t)atoi(fl[4]);
		m->client = (uint16_t)atoi(fl[6]);
		snprintf(m->sec, sizeof(m->sec), "%s", fl[8]);
		snprintf(m->ek, sizeof(m->ek), "%s", fl[9]);
		snprintf(m->ak, sizeof(m->ak), "%s", fl[10]);
		snprintf(m->pw, sizeof(m->pw), "%s", fl[11]);
	}
	pclose(f);
	if (nm == 0) {
		fprintf(stderr, "bench_gprs: no meters from %s/metersim export\n", build);
		return 1;
	}

	pid_t pid = fork();
	if (pid == 0) {
		char b[16], c[16];
		snprintf(b, sizeof(b), "%u", base);
		snprintf(c, sizeof(c), "%d", METERS);
		snprintf(cmd, sizeof(cmd), "%s/metersim", build);
		freopen("/dev/null", "w", stdout);
		execl(cmd, "metersim", "serve", "--count", c, "--seed", "5", "--base-port", b,
		      "--speed", "0", "--start", START, (char *)NULL);
		_exit(127);
	}
	struct cosem_datetime sdt = {2024, 3, 2, COSEM_UNSPEC, 0, 0, 0, 0, 0, 0};
	int64_t now = cosem_days_from_civil(sdt.year, sdt.month, sdt.day) * DAY;
	struct bsess *s = calloc(1, sizeof(*s));
	s->data = malloc(600000);
	/* by security: 0 none, 1 lls, 2 hls-gmac */
	double win[3] = {0}, wout[3] = {0}, pay[3] = {0};
	int cnt[3] = {0}, failed = 0;
	double iin = 0, iout = 0;
	int icnt = 0;
	for (int i = 0; i < nm; i++) {
		int k = strcmp(ms[i].sec, "hls-gmac") == 0 ? 2
		        : strcmp(ms[i].sec, "lls") == 0    ? 1
		                                           : 0;
		if (collect(s, &ms[i], now) != 0) {
			failed++;
			if (s->fd >= 0)
				close(s->fd);
			continue;
		}
		win[k] += (double)s->wire_in;
		wout[k] += (double)s->wire_out;
		pay[k] += (double)s->payload;
		cnt[k]++;
		if (identify(s, &ms[i]) == 0) {
			iin += (double)s->wire_in;
			iout += (double)s->wire_out;
			icnt++;
		}
	}
	kill(pid, SIGTERM);
	waitpid(pid, NULL, 0);
	free(s->data);
	free(s);

	static const char *names[3] = {"none", "lls", "hls-gmac"};
	double tin = 0, tout = 0, tpay = 0;
	int tc = 0;
	printf("   one daily GPRS collection per meter (clock + 36 registers with scaler_unit, "
	       "96 profile rows, 5 event logs, wrapper):\n");
	for (int k = 0; k < 3; k++) {
		if (cnt[k] == 0)
			continue;
		printf(
		    "   %-9s %2d meters: wire %6.0f B in + %5.0f B out = %6.0f B; payload %6.0f B; "
		    "wire/payload %.2f\n",
		    names[k], cnt[k], win[k] / cnt[k], wout[k] / cnt[k],
		    (win[k] + wout[k]) / cnt[k], pay[k] / cnt[k],
		    (win[k] + wout[k]) / (pay[k] > 0 ? pay[k] : 1));
		tin += win[k];
		tout += wout[k];
		tpay += pay[k];
		tc += cnt[k];
	}
	if (tc > 0)
		printf("   all       %2d meters: wire %6.0f B per meter (%.1f kB/month at one "
		       "collection a day), payload %6.0f B, wire/payload %.2f\n",
		       tc, (tin + tout) / tc, (tin + tout) / tc * 30 / 1000, tpay / tc,
		       (tin + tout) / (tpay > 0 ? tpay : 1));
	if (icnt > 0)
		printf("   inbound identification (public association, logical device name, "
		       "release): %.0f B in + %.0f B out per connection\n",
		       iin / icnt, iout / icnt);
	if (failed)
		fprintf(stderr, "bench_gprs: %d meters could not be read\n", failed);
	return failed == 0 && tc > 0 ? 0 : 1;
}
