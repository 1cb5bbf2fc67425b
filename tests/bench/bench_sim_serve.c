/*
 * bench_sim_serve.c: `metersim serve` measured and checked from outside.
 *
 * Without arguments (make bench): starts build/metersim serve for 100,000
 * meters on each transport in turn and reports the start-up time and RSS
 * the simulator prints once it listens (and how many meters a run can
 * reach given the file-descriptor limit), then stops it; TCP/IP on
 * loopback addresses (one listener for the whole fleet) as the median of
 * three runs.
 *
 * With --check, it is the small client the integration tests use to read a
 * serving metersim and print what it read in the CSV lines of `metersim
 * expect --format csv`, so a test can compare the two with diff:
 *
 *   --check mbus HOST:PORT (--addr N | --secondary SERIAL) [--fcb-repeat]
 *   --check modbus HOST:PORT --unit U --map FILE
 *   --check gprs HOST:PORT ... (as dlms, but listens there for a GPRS meter;
 *           --ops push: expect its DataNotification first)
 *   --check dlms HOST:PORT [--hdlc] [--security none|lls|hls-gmac --client N
 *           --password P --ek HEX --ak HEX] [--profile FROM TO] [--at T]
 *           [--ic N] [--ops list] [--set-clock EPOCH]
 *
 * --ops takes a comma-separated list: ldn, registers, ic, disconnect,
 * objects, clock (prints "clock,EPOCH,HUNDREDTHS", the meter's clock in
 * UTC), quarter / shift=S (clock methods adjust_to_quarter, shift_time),
 * calwrite (SETs a passive calendar attribute by attribute as the
 * daemon's command queue encodes one — named seasons and week profiles,
 * day ids out of order — printing "written,ATTR,HEX"), activate (method
 * 1: passive becomes active), calendar (prints activity calendar
 * attributes 2..9 as "calendar,ATTR,HEX").  --set-clock SETs the clock
 * (local time, with its deviation) before any of them.
 *
 * Registers print as "register,AT,OBIS,VALUE,UNIT", profile rows as
 * "interval,END,LOCAL,A+,A-,R+,R-,STATUS"; anything that goes wrong is one
 * line "error,WHAT,DETAIL" and a non-zero exit.
 */
#include <errno.h>
#include <modbus/modbus.h>
#include <arpa/inet.h>
#include <netdb.h>
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
#include "mbus.h"
#include "meter_error.h"
#include "modbus_map.h"
#include "obis.h"
#include "xdlms.h"

#include "../sim/expect.h" /* the time format of metersim expect's CSV */

static int
tcp_connect(const char *hostport)
{
	char host[256];
	const char *c = strrchr(hostport, ':');
	if (!c || (size_t)(c - hostport) >= sizeof(host))
		return -1;
	memcpy(host, hostport, (size_t)(c - hostport));
	host[c - hostport] = 0;
	struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM}, *ai;
	if (getaddrinfo(host, c + 1, &hints, &ai))
		return -1;
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen)) {
		printf("error,connect,%s\n", strerror(errno));
		close(fd);
		fd = -1;
	}
	freeaddrinfo(ai);
	return fd;
}

/* Read with a timeout; returns bytes, 0 on EOF, -1 on timeout/error. */
static ssize_t
read_to(int fd, uint8_t *p, size_t n, int ms)
{
	struct pollfd pf = {.fd = fd, .events = POLLIN};
	errno = 0;
	if (poll(&pf, 1, ms) <= 0)
		return -1;
	return read(fd, p, n);
}

static int64_t at_time;

static void
put_reg(const char *obis, long long v, const char *unit)
{
	char ts[32];
	printf("register,%s,%s,%lld,%s\n", expect_iso_utc(at_time, ts), obis, v, unit);
}

/* ---- M-Bus --------------------------------------------------------------------- */

static int
mbus_exchange(int fd, const uint8_t *req, size_t n, uint8_t *resp, size_t cap, size_t *got)
{
	if (write(fd, req, n) != (ssize_t)n)
		return -1;
	*got = 0;
	for (;;) {
		ssize_t r = read_to(fd, resp + *got, cap - *got, *got ? 500 : 5000);
		if (r <= 0)
			return *got ? 0 : -1;
		*got += (size_t)r;
		struct mbus_frame f;
		int pr = mbus_frame_parse(resp, *got, &f);
		if (pr != METER_ENEEDMORE)
			return 0;
	}
}

static int
check_mbus(const char *hp, int addr, const char *secondary, bool fcb_repeat)
{
	int fd = tcp_connect(hp);
	if (fd < 0)
		return 1;
	uint8_t req[64], resp[600];
	struct mbuf b;
	size_t got;
	if (secondary) {
		struct mbus_secondary sel;
		memset(&sel, 0xff, sizeof(sel));
		/* eight digits, most significant first; 'F' is a wildcard digit */
		size_t len = strlen(secondary);
		if (len != 8 || strspn(secondary, "0123456789Ff") != 8) {
			printf("error,secondary,eight digits or F\n");
			close(fd);
			return 2;
		}
		for (int i = 0; i < 4; i++) {
			char hi = secondary[6 - 2 * i], lo = secondary[7 - 2 * i];
			unsigned h = hi == 'F' || hi == 'f' ? 15u : (unsigned)(hi - '0');
			unsigned l = lo == 'F' || lo == 'f' ? 15u : (unsigned)(lo - '0');
			sel.id_bcd[i] = (uint8_t)(h << 4 | l);
		}
		mbuf_init(&b, req, sizeof(req));
		mbus_encode_select(&b, &sel);
		if (mbus_exchange(fd, req, b.len, resp, sizeof(resp), &got) || got != 1 ||
		    resp[0] != MBUS_ACK) {
			printf("error,select,%s\n",
			       got ? "garbled answer (collision)" : "no answer");
			close(fd);
			return 1;
		}
		addr = MBUS_ADDR_NETWORK;
	} else {
		mbuf_init(&b, req, sizeof(req));
		mbus_encode_snd_nke(&b, (uint8_t)addr);
		if (mbus_exchange(fd, req, b.len, resp, sizeof(resp), &got) || got != 1 ||
		    resp[0] != MBUS_ACK) {
			printf("error,snd_nke,no answer\n");
			close(fd);
			return 1;
		}
	}
	uint8_t first[600];
	size_t first_len = 0;
	for (int round = 0; round < (fcb_repeat ? 2 : 1); round++) {
		mbuf_init(&b, req, sizeof(req));
		mbus_encode_req_ud2(&b, (uint8_t)addr, true); /* same FCB twice: a repeat */
		if (mbus_exchange(fd, req, b.len, resp, sizeof(resp), &got)) {
			printf("error,req_ud2,no answer\n");
			close(fd);
			return 1;
		}
		if (round == 0) {
			memcpy(first, resp, got);
			first_len = got;
		} else if (got != first_len || memcmp(first, resp, got)) {
			printf("error,fcb,repeated request got a different telegram\n");
			close(fd);
			return 1;
		} else {
			printf("fcb_repeat,same\n");
		}
	}
	close(fd);
	struct mbus_frame f;
	int pr = mbus_frame_parse(resp, got, &f);
	if (pr < 0) {
		printf("error,frame,%s\n", meter_strerror(pr));
		return 1;
	}
	struct mbus_telegram t;
	if (mbus_telegram_decode(&f, &t)) {
		printf("error,telegram,undecodable\n");
		return 1;
	}
	if (t.kind == MBUS_TG_APP_ERROR) {
		printf("error,app,%s\n", mbus_app_error_text(t.app_error));
		return 1;
	}
	printf("meter,%08u\n", t.hdr.id);
	struct mbus_iter it;
	mbus_iter_init(&it, &t);
	struct mbus_record r;
	int rc;
	while ((rc = mbus_records_next(&it, &r)) == 1) {
		if (!r.is_int)
			continue;
		bool energy = !strcmp(r.info.unit, "Wh");
		if (energy && r.subunit == 0 && r.tariff == 0)
			put_reg("1-0:1.8.0.255", (long long)r.value, "Wh");
		else if (energy && r.subunit == 1)
			put_reg("1-0:2.8.0.255", (long long)r.value, "Wh");
		else if (energy && r.tariff) {
			char ob[OBIS_STRLEN];
			struct obis o = OBIS(1, 0, 1, 8, (uint8_t)r.tariff, 255);
			put_reg(obis_format(&o, ob), (long long)r.value, "Wh");
		} else if (!strcmp(r.info.unit, "W"))
			printf("%s,%lld\n", r.function == MBUS_FN_MAX ? "peak_w" : "power_w",
			       (long long)r.value);
		else if (!strcmp(r.info.unit, "V"))
			printf("voltage_dv_%u,%lld\n", r.subunit, (long long)r.ival);
		else if (!strcmp(r.info.unit, "A"))
			printf("current_ma_%u,%lld\n", r.subunit, (long long)r.ival);
	}
	return rc < 0;
}

/* ---- Modbus ------------------------------------------------------------------------ */

static int
check_modbus(const char *hp, int unit, const char *mapfile)
{
	static struct modbus_map_entry e[64];
	struct modbus_map map;
	modbus_map_init(&map, e, 64);
	FILE *f = fopen(mapfile, "r");
	char text[16384], err[128];
	if (!f) {
		printf("error,map,%s\n", strerror(errno));
		return 1;
	}
	size_t len = fread(text, 1, sizeof(text), f);
	fclose(f);
	if (modbus_map_parse(&map, text, len, err, sizeof(err))) {
		printf("error,map,%s\n", err);
		return 1;
	}
	char host[64];
	const char *c = strrchr(hp, ':');
	snprintf(host, sizeof(host), "%.*s", (int)(c - hp), hp);
	modbus_t *ctx = modbus_new_tcp(host, atoi(c + 1));
	if (!ctx || modbus_connect(ctx)) {
		printf("error,connect,%s\n", modbus_strerror(errno));
		return 1;
	}
	modbus_set_slave(ctx, unit);
	uint16_t regs[64];
	int n = modbus_read_registers(ctx, 0, 0x25, regs);
	if (n < 0) {
		printf("error,read,%s\n", modbus_strerror(errno));
		modbus_close(ctx);
		modbus_free(ctx);
		return 1;
	}
	modbus_close(ctx);
	modbus_free(ctx);
	struct modbus_reading rd[64];
	size_t nr;
	if (modbus_map_decode(&map, 0, regs, (size_t)n, rd, 64, &nr)) {
		printf("error,decode,\n");
		return 1;
	}
	for (size_t i = 0; i < nr; i++) {
		char ob[OBIS_STRLEN];
		obis_format(&rd[i].entry->obis, ob);
		/* energies back in Wh as expect prints them */
		if (rd[i].entry->unit[0] == 'k')
			put_reg(ob, (long long)(rd[i].value * 1000 + 0.5), rd[i].entry->unit + 1);
		else
			printf("reading,%s,%.3f,%s\n", ob, rd[i].value, rd[i].entry->unit);
	}
	return 0;
}

/* ---- DLMS --------------------------------------------------------------------------- */

struct dsess {
	int fd;
	struct dlms_client c;
	uint8_t rx[4200], tx[4200], work[4200];
	uint8_t *data;
	uint8_t out[70000];
};

static int
flush_out(struct dsess *s, struct mbuf *out)
{
	if (out->len && write(s->fd, out->p, out->len) != (ssize_t)out->len)
		return -1;
	out->len = 0;
	return 0;
}

/* Run the engine until an event of type want (or FAILED / DONE); handles
 * RESULT events through cb. */
typedef void (*result_fn)(void *arg, const struct dlms_client_event *ev);

static int
pump(struct dsess *s, struct mbuf *out, int want, result_fn cb, void *arg, int *err)
{
	uint8_t buf[4096];
	*err = METER_EABORTED; /* when a write fails: the peer is gone */
	for (;;) {
		struct dlms_client_event ev;
		int e;
		while ((e = dlms_client_poll(&s->c, out, &ev)) != DLMS_CEV_NONE) {
			if (flush_out(s, out))
				return -1;
			if (e == DLMS_CEV_RESULT && cb)
				cb(arg, &ev);
			if (e == DLMS_CEV_FAILED || (e == DLMS_CEV_DONE && ev.err)) {
				*err = ev.err;
				return e;
			}
			if (e == want) {
				*err = 0;
				return e;
			}
		}
		if (flush_out(s, out))
			return -1;
		uint32_t ms;
		dlms_client_timer(&s->c, &ms);
		ssize_t n = read_to(s->fd, buf, sizeof(buf), ms ? (int)ms : 5000);
		if (n < 0 && errno == ECONNRESET) {
			*err = METER_EABORTED;
			return DLMS_CEV_FAILED;
		}
		if (n < 0) {
			dlms_client_timeout(&s->c, out);
			continue;
		}
		if (n == 0) {
			*err = METER_EABORTED;
			return DLMS_CEV_FAILED;
		}
		size_t off = 0;
		while (off < (size_t)n) {
			off += dlms_client_feed(&s->c, buf + off, (size_t)n - off);
			if (off < (size_t)n) {
				while ((e = dlms_client_poll(&s->c, out, &ev)) != DLMS_CEV_NONE) {
					if (e == DLMS_CEV_RESULT && cb)
						cb(arg, &ev);
					if (e == DLMS_CEV_FAILED) {
						*err = ev.err;
						return e;
					}
				}
				if (flush_out(s, out))
					return -1;
			}
		}
	}
}

static int
hexkey(const char *h, uint8_t k[16])
{
	if (!h || strlen(h) != 32)
		return -1;
	for (int i = 0; i < 16; i++) {
		unsigned v;
		if (sscanf(h + 2 * i, "%2x", &v) != 1)
			return -1;
		k[i] = (uint8_t)v;
	}
	return 0;
}

struct reg_item {
	const char *obis;
	const char *unit;
};

static const struct reg_item reg_items[] = {
    {"1-0:1.8.0.255", "Wh"}, {"1-0:1.8.1.255", "Wh"},   {"1-0:1.8.2.255", "Wh"},
    {"1-0:1.8.3.255", "Wh"}, {"1-0:1.8.4.255", "Wh"},   {"1-0:1.8.5.255", "Wh"},
    {"1-0:1.8.6.255", "Wh"}, {"1-0:1.8.7.255", "Wh"},   {"1-0:1.8.8.255", "Wh"},
    {"1-0:2.8.0.255", "Wh"}, {"1-0:3.8.0.255", "varh"}, {"1-0:4.8.0.255", "varh"},
};
#define NREG (sizeof(reg_items) / sizeof(reg_items[0]))

static void
on_reg(void *arg, const struct dlms_client_event *ev)
{
	(void)arg;
	struct axdr_node n[4];
	size_t nn;
	if (ev->err || ev->index >= NREG || axdr_decode(ev->data, ev->data_len, n, 4, &nn) < 0) {
		printf("error,get,%s,%s\n", ev->index < NREG ? reg_items[ev->index].obis : "?",
		       ev->err ? meter_strerror(ev->err) : xdlms_dar_name(ev->dar));
		return;
	}
	int64_t v;
	axdr_to_int64(&n[0], &v);
	put_reg(reg_items[ev->index].obis, (long long)v, reg_items[ev->index].unit);
}

struct prof {
	const struct cosem_tz *tz;
	int rows;
};

static void
on_profile(void *arg, const struct dlms_client_event *ev)
{
	struct prof *p = arg;
	if (ev->err) {
		printf("error,profile,%s %s\n", meter_strerror(ev->err), xdlms_dar_name(ev->dar));
		return;
	}
	size_t cap = 1 + ev->data_len;
	struct axdr_node *n = malloc(cap * sizeof(*n));
	size_t nn;
	if (!n || axdr_decode(ev->data, ev->data_len, n, cap, &nn) < 0 || n[0].tag != AXDR_ARRAY) {
		printf("error,profile,undecodable\n");
		free(n);
		return;
	}
	for (uint32_t i = 0; i < n[0].len; i++) {
		const struct axdr_node *r = axdr_child(&n[0], i);
		struct cosem_datetime dt;
		int64_t utc;
		if (!r || r->len != 6 || cosem_datetime_decode(axdr_child(r, 0)->ptr, &dt) ||
		    cosem_datetime_to_utc(&dt, p->tz, &utc)) {
			printf("error,profile,bad row\n");
			continue;
		}
		char ts[32], lt[40];
		cosem_datetime_format(&dt, lt, sizeof(lt));
		printf("interval,%s,%s", expect_iso_utc(utc, ts), lt);
		for (unsigned k = 2; k < 6; k++)
			printf(",%llu", (unsigned long long)axdr_child(r, k)->v.u);
		printf(",%llu\n", (unsigned long long)axdr_child(r, 1)->v.u);
		p->rows++;
	}
	free(n);
}

static void
print_ldn(void *arg, const struct dlms_client_event *ev)
{
	(void)arg;
	struct axdr_node n[2];
	size_t nn;
	if (!ev->err && axdr_decode(ev->data, ev->data_len, n, 2, &nn) > 0 &&
	    n[0].tag == AXDR_OCTET_STRING && n[0].len == 11)
		printf("meter,%.8s\n", (const char *)n[0].ptr + 3);
}

static void
on_any(void *arg, const struct dlms_client_event *ev)
{
	const char *what = arg;
	if (ev->err || ev->dar)
		printf("result,%s,%s,%s\n", what, ev->err ? meter_strerror(ev->err) : "access",
		       ev->err ? "" : xdlms_dar_name(ev->dar));
	else
		printf("result,%s,ok\n", what);
}

static void
print_clock(void *arg, const struct dlms_client_event *ev)
{
	(void)arg;
	struct axdr_node n[2];
	size_t nn;
	struct cosem_datetime dt;
	int64_t utc;
	if (ev->err || axdr_decode(ev->data, ev->data_len, n, 2, &nn) < 0 ||
	    n[0].tag != AXDR_OCTET_STRING || n[0].len != 12 ||
	    cosem_datetime_decode(n[0].ptr, &dt) || cosem_datetime_to_utc(&dt, NULL, &utc)) {
		printf("error,clock,%s\n", ev->err ? meter_strerror(ev->err) : "undecodable");
		return;
	}
	printf("clock,%lld,%u\n", (long long)utc, dt.hundredths);
}

static void
print_hex(void *arg, const struct dlms_client_event *ev)
{
	const char *what = arg;
	if (ev->err || ev->dar) {
		printf("error,%s,%s\n", what, ev->err ? meter_strerror(ev->err) : "access");
		return;
	}
	printf("%s,%u,", what, 2 + ev->index);
	for (size_t i = 0; i < ev->data_len; i++)
		printf("%02x", ev->data[i]);
	printf("\n");
}

static int64_t set_clock; /* --set-clock: SET the clock to this first */

/* Is name one of the comma-separated words of ops? */
static bool
has_op(const char *ops, const char *name)
{
	size_t n = strlen(name);
	for (const char *p = ops; p && *p; p = strchr(p, ',') ? strchr(p, ',') + 1 : NULL)
		if (!strncmp(p, name, n) && (p[n] == ',' || p[n] == 0))
			return true;
	return false;
}

/* A passive calendar as daemon/cmd_kinds.c encodes one (attributes 6..9):
 * names that are not "W<digit>", seasons naming their week profile, day
 * profiles written out of id order. */
static size_t
sample_calendar(unsigned attr, uint8_t *buf, size_t cap)
{
	struct mbuf b;
	mbuf_init(&b, buf, cap);
	static const char *const sn[2] = {"winter", "summer"}, *const wn[2] = {"workweek", "flat"};
	static const uint8_t smon[2] = {1, 4}, sweek[2] = {0, 1};
	static const uint8_t wd[2][7] = {{1, 1, 1, 1, 1, 0, 0}, {0, 0, 0, 0, 0, 0, 0}};
	static const struct obis script = OBIS(0, 0, 10, 0, 100, 255);
	switch (attr) {
	case 6:
		axdr_put_octet_string(&b, "TOU2026", 7);
		break;
	case 7:
		axdr_put_array(&b, 2);
		for (unsigned i = 0; i < 2; i++) {
			struct cosem_datetime dt = {.year = 0xffff,
			                            .month = smon[i],
			                            .day = 1,
			                            .dow = 0xff,
			                            .hundredths = 0xff,
			                            .deviation = COSEM_DEVIATION_UNSPEC,
			                            .status = 0xff};
			axdr_put_structure(&b, 3);
			axdr_put_octet_string(&b, sn[i], (uint32_t)strlen(sn[i]));
			axdr_put_datetime_octets(&b, &dt);
			const char *w = wn[sweek[i]];
			axdr_put_octet_string(&b, w, (uint32_t)strlen(w));
		}
		break;
	case 8:
		axdr_put_array(&b, 2);
		for (unsigned i = 0; i < 2; i++) {
			axdr_put_structure(&b, 8);
			axdr_put_octet_string(&b, wn[i], (uint32_t)strlen(wn[i]));
			for (unsigned d = 0; d < 7; d++)
				axdr_put_unsigned(&b, wd[i][d]);
		}
		break;
	default: {
		/* day 1 (weekday: T4 07:00-22:00) before day 0 (flat T1) */
		axdr_put_array(&b, 2);
		for (unsigned k = 0; k < 2; k++) {
			unsigned id = 1 - k, n = id ? 2 : 1;
			static const uint8_t at[2][2] = {{0, 0}, {7, 22}},
			                     tr[2][2] = {{1, 1}, {4, 1}};
			axdr_put_structure(&b, 2);
			axdr_put_unsigned(&b, (uint8_t)id);
			axdr_put_array(&b, n);
			for (unsigned j = 0; j < n; j++) {
				uint8_t tm[4] = {at[id][j], 0, 0, 0};
				axdr_put_structure(&b, 3);
				axdr_put_octet_string(&b, tm, 4);
				axdr_put_octet_string(&b, script.v, 6);
				axdr_put_long_unsigned(&b, tr[id][j]);
			}
		}
		break;
	}
	}
	return b.err ? 0 : b.len;
}

static int gprs_fd = -1; /* a meter that connected to us (GPRS) */

/* Wait for a GPRS meter to connect to 127.0.0.1:port; print the push it
 * sends first, if any (a DataNotification in a wrapper PDU). */
static int
gprs_accept(const char *port, bool want_push)
{
	int ls = socket(AF_INET, SOCK_STREAM, 0), one = 1;
	setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	struct sockaddr_in sin = {.sin_family = AF_INET,
	                          .sin_port = htons((uint16_t)atoi(port)),
	                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	if (ls < 0 || bind(ls, (struct sockaddr *)&sin, sizeof(sin)) || listen(ls, 16)) {
		printf("error,listen,%s\n", strerror(errno));
		return -1;
	}
	struct pollfd pf = {.fd = ls, .events = POLLIN};
	if (poll(&pf, 1, 10000) <= 0) {
		printf("error,gprs,no meter connected\n");
		return -1;
	}
	gprs_fd = accept(ls, NULL, NULL);
	close(ls);
	printf("gprs,connected\n");
	if (want_push) {
		uint8_t b[512];
		ssize_t n = read_to(gprs_fd, b, sizeof(b), 5000);
		if (n >= 9 && b[0] == 0 && b[1] == 1 && b[8] == XDLMS_TAG_DATA_NOTIFICATION)
			printf("push,data-notification,%zd bytes\n", n);
		else
			printf("error,push,none\n");
	}
	return 0;
}

static int
check_dlms(const char *hp, bool hdlc, const char *sec, int client, const char *pw, const char *ek,
           const char *ak, int64_t pfrom, int64_t pto, long ic, const char *ops)
{
	struct dsess *s = calloc(1, sizeof(*s));
	s->data = malloc(600000);
	s->fd = gprs_fd >= 0 ? gprs_fd : tcp_connect(hp);
	if (s->fd < 0) {
		if (errno == ECONNREFUSED)
			printf("error,connect,refused\n");
		return 1;
	}
	struct dlms_client_config cfg = {0};
	cfg.framing = hdlc ? DLMS_FRAMING_HDLC : DLMS_FRAMING_WRAPPER;
	cfg.client_wport = (uint16_t)client;
	cfg.server_wport = 1;
	cfg.hdlc_client = (struct hdlc_addr){.upper = (uint16_t)client, .size = 1};
	cfg.hdlc_server = (struct hdlc_addr){.upper = 1, .lower = 0, .size = 1};
	cfg.mechanism = ACSE_MECH_NONE;
	if (!strcmp(sec, "lls")) {
		cfg.mechanism = ACSE_MECH_LLS;
		cfg.password = (const uint8_t *)pw;
		cfg.password_len = strlen(pw);
	} else if (!strcmp(sec, "hls-gmac")) {
		cfg.mechanism = ACSE_MECH_HLS_GMAC;
		cfg.ciphering = true;
		if (hexkey(ek, cfg.keys.ek) || hexkey(ak, cfg.keys.ak)) {
			printf("error,keys,bad\n");
			return 1;
		}
		memcpy(cfg.system_title, "AMM\x00\x00\x00\x00\x01", 8);
		if (ic >= 0) {
			cfg.rx_counter.last = (uint32_t)ic;
			cfg.rx_counter.seen = true;
		}
	}
	cfg.tx_counter = 1;
	cfg.buf = (struct dlms_buffers){s->rx,   sizeof(s->rx),   s->tx,   sizeof(s->tx),
	                                s->work, sizeof(s->work), s->data, 600000};
	cfg.timeout_ms = 4000;
	int rc = dlms_client_init(&s->c, &cfg);
	if (rc) {
		printf("error,init,%s\n", meter_strerror(rc));
		return 1;
	}
	struct mbuf out;
	mbuf_init(&out, s->out, sizeof(s->out));
	int err;
	dlms_client_open(&s->c, &out);
	if (pump(s, &out, DLMS_CEV_ASSOCIATED, NULL, NULL, &err) != DLMS_CEV_ASSOCIATED) {
		printf("error,associate,%s\n", meter_strerror(err));
		return 1;
	}
	/* the meter's clock (the time the registers are read at) */
	struct dlms_get_item clk = {.desc = {8, OBIS(0, 0, 1, 0, 0, 255), 2}};
	int64_t clock_utc = 0;
	struct cosem_tz tz = COSEM_TZ_CPH;
	if (ops && strstr(ops, "ldn")) {
		struct dlms_get_item it = {.desc = {1, OBIS(0, 0, 42, 0, 0, 255), 2}};
		if (dlms_client_get(&s->c, &out, &it, 1) ||
		    pump(s, &out, DLMS_CEV_RESULT, print_ldn, NULL, &err) != DLMS_CEV_RESULT ||
		    pump(s, &out, DLMS_CEV_DONE, NULL, NULL, &err) != DLMS_CEV_DONE) {
			printf("error,ldn,%s\n", meter_strerror(err));
			return 1;
		}
	}
	if (set_clock) {
		uint8_t v[16];
		struct mbuf vb;
		mbuf_init(&vb, v, sizeof(v));
		struct cosem_datetime dt;
		cosem_datetime_from_utc(set_clock, &tz, &dt);
		axdr_put_datetime_octets(&vb, &dt);
		struct xdlms_desc d = {8, OBIS(0, 0, 1, 0, 0, 255), 2};
		if (dlms_client_set(&s->c, &out, &d, NULL, v, vb.len) ||
		    pump(s, &out, DLMS_CEV_DONE, on_any, "set_clock", &err) != DLMS_CEV_DONE) {
			printf("error,set_clock,%s\n", meter_strerror(err));
			return 1;
		}
	}
	const char *sh = ops ? strstr(ops, "shift=") : NULL;
	if (sh || has_op(ops, "quarter")) {
		uint8_t p[3];
		struct mbuf pb;
		mbuf_init(&pb, p, sizeof(p));
		if (sh)
			axdr_put_long(&pb, (int16_t)atoi(sh + 6));
		else
			axdr_put_integer(&pb, 0);
		struct xdlms_desc m = {8, OBIS(0, 0, 1, 0, 0, 255), sh ? 6 : 1};
		if (dlms_client_action(&s->c, &out, &m, p, pb.len) ||
		    pump(s, &out, DLMS_CEV_DONE, on_any, sh ? "shift_time" : "adjust_to_quarter",
		         &err) != DLMS_CEV_DONE) {
			printf("error,clock_action,%s\n", meter_strerror(err));
			return 1;
		}
	}
	if (has_op(ops, "clock")) {
		if (dlms_client_get(&s->c, &out, &clk, 1) ||
		    pump(s, &out, DLMS_CEV_DONE, print_clock, NULL, &err) != DLMS_CEV_DONE) {
			printf("error,clock,%s\n", meter_strerror(err));
			return 1;
		}
	}
	if (has_op(ops, "calwrite")) {
		for (unsigned a = 6; a <= 9; a++) {
			uint8_t v[512];
			size_t n = sample_calendar(a, v, sizeof(v));
			struct xdlms_desc d = {20, OBIS(0, 0, 13, 0, 0, 255), (int8_t)a};
			printf("written,%u,", a);
			for (size_t i = 0; i < n; i++)
				printf("%02x", v[i]);
			printf("\n");
			if (dlms_client_set(&s->c, &out, &d, NULL, v, n) ||
			    pump(s, &out, DLMS_CEV_DONE, on_any, "set_calendar", &err) !=
			        DLMS_CEV_DONE) {
				printf("error,set_calendar,%s\n", meter_strerror(err));
				return 1;
			}
		}
	}
	if (has_op(ops, "activate")) {
		struct xdlms_desc m = {20, OBIS(0, 0, 13, 0, 0, 255), 1};
		uint8_t p[2] = {AXDR_INTEGER, 0};
		if (dlms_client_action(&s->c, &out, &m, p, 2) ||
		    pump(s, &out, DLMS_CEV_DONE, on_any, "activate", &err) != DLMS_CEV_DONE) {
			printf("error,activate,%s\n", meter_strerror(err));
			return 1;
		}
	}
	if (has_op(ops, "calendar")) {
		struct dlms_get_item it[8];
		for (unsigned i = 0; i < 8; i++)
			it[i] = (struct dlms_get_item){
			    .desc = {20, OBIS(0, 0, 13, 0, 0, 255), (int8_t)(2 + i)}};
		if (dlms_client_get(&s->c, &out, it, 8) ||
		    pump(s, &out, DLMS_CEV_DONE, print_hex, "calendar", &err) != DLMS_CEV_DONE) {
			printf("error,calendar,%s\n", meter_strerror(err));
			return 1;
		}
	}
	if (!ops || strstr(ops, "registers")) {
		struct dlms_get_item items[NREG];
		for (size_t i = 0; i < NREG; i++) {
			items[i].access = NULL;
			items[i].desc.class_id = 3;
			items[i].desc.id = 2;
			obis_parse(reg_items[i].obis, &items[i].desc.obis);
		}
		(void)clk;
		(void)clock_utc;
		if (dlms_client_get(&s->c, &out, items, NREG) ||
		    pump(s, &out, DLMS_CEV_DONE, on_reg, NULL, &err) != DLMS_CEV_DONE) {
			printf("error,registers,%s\n", meter_strerror(err));
			return 1;
		}
	}
	if (ops && strstr(ops, "ic")) {
		struct dlms_get_item it = {.desc = {1, OBIS(0, 0, 43, 1, 0, 255), 2}};
		if (dlms_client_get(&s->c, &out, &it, 1) ||
		    pump(s, &out, DLMS_CEV_DONE, on_any, "ic", &err) != DLMS_CEV_DONE) {
			printf("error,ic,%s\n", meter_strerror(err));
			return 1;
		}
	}
	if (ops && strstr(ops, "disconnect")) {
		struct xdlms_desc m = {70, OBIS(0, 0, 96, 3, 10, 255), 1};
		uint8_t p[2] = {AXDR_INTEGER, 0};
		if (dlms_client_action(&s->c, &out, &m, p, 2) ||
		    pump(s, &out, DLMS_CEV_DONE, on_any, "disconnect", &err) != DLMS_CEV_DONE) {
			printf("error,action,%s\n", meter_strerror(err));
			return 1;
		}
	}
	if (ops && strstr(ops, "objects")) {
		struct dlms_get_item it = {.desc = {15, OBIS(0, 0, 40, 0, 0, 255), 2}};
		if (dlms_client_get(&s->c, &out, &it, 1) ||
		    pump(s, &out, DLMS_CEV_DONE, on_any, "object_list", &err) != DLMS_CEV_DONE) {
			printf("error,object_list,%s\n", meter_strerror(err));
			return 1;
		}
	}
	if (pfrom || pto) {
		uint8_t acc[128];
		struct mbuf ab;
		mbuf_init(&ab, acc, sizeof(acc));
		struct xdlms_capture_obj restr = {8, OBIS(0, 0, 1, 0, 0, 255), 2, 0};
		struct cosem_datetime f, t;
		cosem_datetime_from_utc(pfrom, &tz, &f);
		cosem_datetime_from_utc(pto, &tz, &t);
		xdlms_put_range(&ab, &restr, &f, &t, NULL, 0);
		struct axdr_node an[32];
		size_t nn;
		if (axdr_decode(acc, ab.len, an, 32, &nn) < 0)
			return 1;
		struct xdlms_access access = {0};
		access.present = true;
		access.selector = XDLMS_ACCESS_RANGE;
		access.params = xdlms_data_raw(acc, (uint32_t)ab.len);
		struct dlms_get_item it = {.desc = {7, OBIS(1, 0, 99, 1, 0, 255), 2},
		                           .access = &access};
		struct prof p = {.tz = &tz};
		if (dlms_client_get(&s->c, &out, &it, 1) ||
		    pump(s, &out, DLMS_CEV_DONE, on_profile, &p, &err) != DLMS_CEV_DONE) {
			printf("error,profile,%s\n", meter_strerror(err));
			return 1;
		}
	}
	dlms_client_release(&s->c, &out);
	pump(s, &out, DLMS_CEV_RELEASED, NULL, NULL, &err);
	printf("ic_seen,%u\n", s->c.rx_counter.last);
	close(s->fd);
	return 0;
}

/* ---- bench ------------------------------------------------------------------------------ */

static int bench_run(const char *metersim, const char *transport, const char *extra,
                     double *startup, long *rss_kib, double *wall);

static int
bench_one(const char *metersim, const char *transport, const char *extra)
{
	double st, wall;
	long rss;
	return bench_run(metersim, transport, extra, &st, &rss, &wall);
}

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* Median of three runs: start-up time, RSS and wall time to listening. */
static int
bench_median(const char *metersim, const char *transport, const char *extra)
{
	double st[3], rss[3], wall[3];
	int rc = 0;
	for (int i = 0; i < 3; i++) {
		long r = 0;
		rc |= bench_run(metersim, transport, extra, &st[i], &r, &wall[i]);
		rss[i] = (double)r;
	}
	qsort(st, 3, sizeof(double), cmp_double);
	qsort(rss, 3, sizeof(double), cmp_double);
	qsort(wall, 3, sizeof(double), cmp_double);
	printf("   %-7s median of 3 (%s): start-up %.3f s, RSS %.0f KiB (%.0f bytes per meter), "
	       "wall time to listening %.3f s\n",
	       transport, extra, st[1], rss[1], rss[1] * 1024 / 100000, wall[1]);
	return rc;
}

static int
bench_run(const char *metersim, const char *transport, const char *extra, double *startup,
          long *rss_kib, double *wall)
{
	char cmd[512];
	snprintf(cmd, sizeof(cmd),
	         "exec %s serve --seed 1 --count 100000 --transport %s --speed 0 "
	         "--start 2024-03-01T00:00:00Z %s",
	         metersim, transport, extra);
	int pfd[2];
	if (pipe(pfd))
		return 1;
	pid_t pid = fork();
	if (pid == 0) {
		dup2(pfd[1], 1);
		close(pfd[0]);
		execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
		_exit(127);
	}
	close(pfd[1]);
	char line[512] = "";
	FILE *f = fdopen(pfd[0], "r");
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	if (!fgets(line, sizeof(line), f))
		line[0] = 0;
	clock_gettime(CLOCK_MONOTONIC, &t1);
	kill(pid, SIGTERM);
	int st;
	waitpid(pid, &st, 0);
	fclose(f);
	*wall = (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
	const char *su = strstr(line, "start-up ");
	*startup = 0;
	*rss_kib = 0;
	if (!su || sscanf(su, "start-up %lf s, RSS %ld KiB", startup, rss_kib) != 2)
		line[0] = 0;
	printf("   %-7s %s", transport, line[0] ? line : "(no start-up line)\n");
	printf("   %-7s wall time to listening: %.3f s\n", transport, *wall);
	return line[0] ? 0 : 1;
}

static int
bench(void)
{
	const char *build = getenv("BUILD") ? getenv("BUILD") : "build";
	char ms[400];
	snprintf(ms, sizeof(ms), "%s/metersim", build);
	if (access(ms, X_OK)) {
		fprintf(stderr, "bench_sim_serve: no %s\n", ms);
		return 1;
	}
	printf("metersim serve, 100,000 meters: start-up time and RSS as it reports them\n");
	int rc = 0;
	rc |= bench_one(ms, "mbus", "--base-port 20000");
	/* the whole fleet on loopback addresses through one listener */
	rc |= bench_median(ms, "tcpip", "--loopback-port 24059");
	/* consecutive ports stay below the ephemeral range (32768 on); on a
	 * shared machine another program may hold one of 19,000 ports, so
	 * this variant informs and does not fail the bench */
	if (bench_one(ms, "tcpip", "--base-port 12000 --max-listeners 19000"))
		printf("   tcpip   (consecutive ports: a port in 12000-30999 was busy; not counted)\n");
	rc |= bench_one(ms, "modbus", "--base-port 21000");
	rc |= bench_one(ms, "gprs", "--gprs-connect 127.0.0.1:9 --gprs-max 1000");
	return rc;
}

int
main(int argc, char **argv)
{
	if (argc < 2)
		return bench();
	if (strcmp(argv[1], "--check") || argc < 4) {
		fprintf(stderr,
		        "usage: bench_sim_serve [--check mbus|modbus|dlms HOST:PORT ...]\n");
		return 2;
	}
	const char *what = argv[2], *hp = argv[3];
	int addr = 1, unit = 1, client = 16;
	long ic = -1;
	const char *secondary = NULL;
	bool hdlc = false, fcb_repeat = false;
	const char *map = "meterlib/maps/kamstrup382.map", *sec = "none", *pw = "", *ek = NULL,
	           *ak = NULL, *ops = NULL;
	int64_t pfrom = 0, pto = 0;
	for (int i = 4; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(a, "--hdlc")) {
			hdlc = true;
			continue;
		}
		if (!strcmp(a, "--fcb-repeat")) {
			fcb_repeat = true;
			continue;
		}
		if (!v) {
			fprintf(stderr, "bench_sim_serve: %s needs a value\n", a);
			return 2;
		}
		i++;
		if (!strcmp(a, "--addr"))
			addr = atoi(v);
		else if (!strcmp(a, "--secondary"))
			secondary = v;
		else if (!strcmp(a, "--unit"))
			unit = atoi(v);
		else if (!strcmp(a, "--map"))
			map = v;
		else if (!strcmp(a, "--security"))
			sec = v;
		else if (!strcmp(a, "--client"))
			client = atoi(v);
		else if (!strcmp(a, "--password"))
			pw = v;
		else if (!strcmp(a, "--ek"))
			ek = v;
		else if (!strcmp(a, "--ak"))
			ak = v;
		else if (!strcmp(a, "--at"))
			at_time = atoll(v);
		else if (!strcmp(a, "--set-clock"))
			set_clock = atoll(v);
		else if (!strcmp(a, "--ic"))
			ic = atol(v);
		else if (!strcmp(a, "--ops"))
			ops = v;
		else if (!strcmp(a, "--profile") && i + 1 < argc) {
			pfrom = atoll(v);
			pto = atoll(argv[++i]);
		} else {
			fprintf(stderr, "bench_sim_serve: unknown option %s\n", a);
			return 2;
		}
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	signal(SIGPIPE, SIG_IGN);
	if (!strcmp(what, "mbus"))
		return check_mbus(hp, addr, secondary, fcb_repeat);
	if (!strcmp(what, "modbus"))
		return check_modbus(hp, unit, map);
	if (!strcmp(what, "gprs")) {
		/* HOST:PORT is where we listen; the meter connects to it */
		const char *c = strrchr(hp, ':');
		if (!c || gprs_accept(c + 1, ops && strstr(ops, "push")))
			return 1;
		what = "dlms";
	}
	if (!strcmp(what, "dlms"))
		return check_dlms(hp, hdlc, sec, client, pw, ek, ak, pfrom, pto, ic, ops);
	fprintf(stderr, "bench_sim_serve: unknown check %s\n", what);
	return 2;
}
