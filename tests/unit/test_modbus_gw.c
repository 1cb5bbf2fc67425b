/*
 * test_modbus_gw.c: the Modbus-TCP gateway driver (drivers/mbus/
 * modbus_gw.c) against a libmodbus server on loopback in a thread of the
 * test.  Readings come back decoded through the register map, a busy
 * exception is reported as METER_EBUSY, and a slow answer does not hold up
 * the event loop (a loop timer keeps firing while the worker waits).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <math.h>
#include <modbus/modbus.h>
#include <netinet/in.h>
#include <pthread.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>

#include "mbus/modbus_gw.h"
#include "meter_error.h"
#include "modbus_map.h"

#define UNIT_BUSY 9
#define UNIT_SLOW 7

static const char map_text[] = "0x0000 u32 hi 0.001 kWh 1-0:1.8.0.255\n"
                               "0x0002 float32 hi 1 V 1-0:32.7.0.255\n"
                               "0x0004 s16 hi 1 W 1-0:21.7.0.255\n";

struct server {
	pthread_t th;
	int lsock;
	uint16_t port;
	int served;
};

/* One master, until it disconnects: registers hold unit*1000 Wh,
 * 230 + unit V and -unit W. */
static void *
serve(void *arg)
{
	struct server *sv = arg;
	modbus_t *ctx = modbus_new_tcp("127.0.0.1", sv->port);
	modbus_mapping_t *mp = modbus_mapping_new(0, 0, 16, 0);
	uint8_t q[MODBUS_TCP_MAX_ADU_LENGTH];
	int s = accept(sv->lsock, NULL, NULL);

	modbus_set_socket(ctx, s);
	for (;;) {
		int n = modbus_receive(ctx, q);
		if (n < 0)
			break;
		if (n == 0)
			continue;
		int unit = q[6]; /* MBAP header: the unit id is its last byte */
		if (unit == UNIT_BUSY) {
			modbus_reply_exception(ctx, q, MODBUS_EXCEPTION_SLAVE_OR_SERVER_BUSY);
			continue;
		}
		if (unit == UNIT_SLOW)
			usleep(300 * 1000);
		uint32_t wh = (uint32_t)unit * 1000u;
		float v = 230.0f + (float)unit;
		uint32_t vb;
		memcpy(&vb, &v, 4);
		mp->tab_registers[0] = (uint16_t)(wh >> 16);
		mp->tab_registers[1] = (uint16_t)wh;
		mp->tab_registers[2] = (uint16_t)(vb >> 16);
		mp->tab_registers[3] = (uint16_t)vb;
		mp->tab_registers[4] = (uint16_t)(int16_t)-unit;
		modbus_reply(ctx, q, n, mp);
		sv->served++;
	}
	close(s);
	modbus_mapping_free(mp);
	modbus_free(ctx);
	return NULL;
}

static void
server_start(struct server *sv)
{
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof(sin);
	int one = 1;

	memset(sv, 0, sizeof(*sv));
	sv->lsock = socket(AF_INET, SOCK_STREAM, 0);
	setsockopt(sv->lsock, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	cr_assert_eq(bind(sv->lsock, (struct sockaddr *)&sin, sizeof(sin)), 0);
	cr_assert_eq(listen(sv->lsock, 1), 0);
	getsockname(sv->lsock, (struct sockaddr *)&sin, &sl);
	sv->port = ntohs(sin.sin_port);
	cr_assert_eq(pthread_create(&sv->th, NULL, serve, sv), 0);
}

static void
server_join(struct server *sv)
{
	pthread_join(sv->th, NULL);
	close(sv->lsock);
}

struct result {
	bool called;
	int status;
	size_t n;
	double v[8];
	char obis[8][32];
};

static void
read_cb(int status, const struct modbus_reading *r, size_t n, void *arg)
{
	struct result *res = arg;

	res->called = true;
	res->status = status;
	res->n = n;
	for (size_t i = 0; i < n && i < 8; i++) {
		res->v[i] = r[i].value;
		obis_format(&r[i].entry->obis, res->obis[i]);
	}
}

struct fixture {
	struct event_base *base;
	struct modbus_map map;
	struct modbus_map_entry e[8];
	struct server sv;
	struct modbus_gw *g;
};

static void
setup(struct fixture *f, int retries)
{
	char err[128];

	memset(f, 0, sizeof(*f));
	modbus_map_init(&f->map, f->e, 8);
	cr_assert_eq(modbus_map_parse(&f->map, map_text, strlen(map_text), err, sizeof(err)), 0,
	             "%s", err);
	server_start(&f->sv);
	f->base = event_base_new();
	struct modbus_gw_params p = {.host = "127.0.0.1",
	                             .port = f->sv.port,
	                             .response_timeout_ms = 2000,
	                             .retries = retries,
	                             .map = &f->map};
	f->g = modbus_gw_new(f->base, &p);
	cr_assert_not_null(f->g);
}

static void
teardown(struct fixture *f)
{
	modbus_gw_free(f->g); /* closes the connection: the server returns */
	server_join(&f->sv);
	event_base_free(f->base);
}

static void
wait_for(struct fixture *f, struct result *r, size_t n)
{
	for (int i = 0; i < 5000; i++) {
		size_t done = 0;
		for (size_t k = 0; k < n; k++)
			done += r[k].called;
		if (done == n)
			return;
		event_base_loop(f->base, EVLOOP_ONCE);
	}
	cr_assert_fail("no callback");
}

Test(modbus_gw, readings_through_the_map)
{
	struct fixture f;
	struct result r[2];

	memset(r, 0, sizeof(r));
	setup(&f, 0);
	cr_assert_eq(modbus_gw_read(f.g, 3, read_cb, &r[0]), 0);
	cr_assert_eq(modbus_gw_read(f.g, 12, read_cb, &r[1]), 0);
	cr_assert_eq(modbus_gw_pending(f.g), 2);
	wait_for(&f, r, 2);
	for (int k = 0; k < 2; k++) {
		int unit = k == 0 ? 3 : 12;
		cr_assert_eq(r[k].status, 0);
		cr_assert_eq(r[k].n, 3);
		cr_assert_str_eq(r[k].obis[0], "1-0:1.8.0.255");
		cr_assert_float_eq(r[k].v[0], unit * 1.0, 1e-9, "kWh of unit %d", unit);
		cr_assert_str_eq(r[k].obis[1], "1-0:32.7.0.255");
		cr_assert_float_eq(r[k].v[1], 230.0 + unit, 1e-4);
		cr_assert_float_eq(r[k].v[2], -unit, 1e-9);
	}
	cr_assert_eq(modbus_gw_pending(f.g), 0);
	struct modbus_gw_stats st;
	modbus_gw_stats(f.g, &st);
	cr_assert_eq(st.requests, 2, "the map's 5 registers in one request per meter");
	cr_assert_eq(st.readouts, 2);
	cr_assert_eq(st.failed, 0);
	teardown(&f);
}

Test(modbus_gw, busy_exception_is_ebusy)
{
	struct fixture f;
	struct result r[2];

	memset(r, 0, sizeof(r));
	setup(&f, 1);
	cr_assert_eq(modbus_gw_read(f.g, UNIT_BUSY, read_cb, &r[0]), 0);
	cr_assert_eq(modbus_gw_read(f.g, 4, read_cb, &r[1]), 0);
	wait_for(&f, r, 2);
	cr_assert_eq(r[0].status, METER_EBUSY);
	cr_assert_eq(r[0].n, 0);
	cr_assert_eq(r[1].status, 0, "the connection stays usable after an exception");
	struct modbus_gw_stats st;
	modbus_gw_stats(f.g, &st);
	cr_assert_eq(st.failures, 2, "the busy answer and its retry");
	teardown(&f);
}

static void
tick(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(*(int *)arg)++;
}

Test(modbus_gw, slow_gateway_does_not_block_the_loop)
{
	struct fixture f;
	struct result r = {0};
	int ticks = 0;

	setup(&f, 0);
	struct event *t = event_new(f.base, -1, EV_PERSIST, tick, &ticks);
	struct timeval tv = {0, 10 * 1000};
	event_add(t, &tv);
	cr_assert_eq(modbus_gw_read(f.g, UNIT_SLOW, read_cb, &r), 0);
	wait_for(&f, &r, 1);
	cr_assert_eq(r.status, 0);
	/* 300 ms of server time at 10 ms per tick */
	cr_assert_geq(ticks, 15, "only %d loop ticks while the gateway was slow", ticks);
	event_free(t);
	teardown(&f);
}

Test(modbus_gw, unreachable_gateway_is_eaborted)
{
	struct event_base *base = event_base_new();
	struct modbus_map map;
	struct modbus_map_entry e[8];
	struct result r = {0};
	char err[64];
	int s = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof(sin);

	/* a port that was free a moment ago: nobody listens there */
	bind(s, (struct sockaddr *)&sin, sizeof(sin));
	getsockname(s, (struct sockaddr *)&sin, &sl);
	close(s);
	modbus_map_init(&map, e, 8);
	cr_assert_eq(modbus_map_parse(&map, map_text, strlen(map_text), err, sizeof(err)), 0);
	struct modbus_gw_params p = {.host = "127.0.0.1",
	                             .port = ntohs(sin.sin_port),
	                             .connect_timeout_ms = 500,
	                             .retries = 0,
	                             .map = &map};
	struct modbus_gw *g = modbus_gw_new(base, &p);
	cr_assert_eq(modbus_gw_read(g, 1, read_cb, &r), 0);
	for (int i = 0; i < 5000 && !r.called; i++)
		event_base_loop(base, EVLOOP_ONCE);
	cr_assert(r.called);
	cr_assert_eq(r.status, METER_EABORTED);
	modbus_gw_free(g);
	event_base_free(base);
}
