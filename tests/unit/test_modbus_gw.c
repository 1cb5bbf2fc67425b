/*
 * test_modbus_gw.c: the Modbus-TCP gateway driver (drivers/mbus/
 * modbus_gw.c) against a libmodbus server on loopback in a thread of the
 * test.  Readings come back decoded through the register map, a busy
 * exception is reported as METER_EBUSY, and a slow answer does not hold up
 * the event loop (a loop timer keeps firing while the worker waits).
 * gateway.concurrency is checked against a server that takes any number
 * of masters and counts how many connections and requests it had at once.
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

/* The server side of one master's connection: a libmodbus context on the
 * accepted socket and 16 holding registers. */
struct peer {
	modbus_t *ctx;
	modbus_mapping_t *mp;
	uint8_t q[MODBUS_TCP_MAX_ADU_LENGTH];
	int fd;
};

static void
peer_open(struct peer *c, uint16_t port, int fd)
{
	c->ctx = modbus_new_tcp("127.0.0.1", port);
	c->mp = modbus_mapping_new(0, 0, 16, 0);
	c->fd = fd;
	modbus_set_socket(c->ctx, fd);
}

/* The next request's length in c->q (empty reads skipped), or < 0 once
 * the master is gone. */
static int
peer_receive(struct peer *c)
{
	int n;

	while ((n = modbus_receive(c->ctx, c->q)) == 0)
		;
	return n;
}

static void
peer_close(struct peer *c)
{
	close(c->fd);
	modbus_mapping_free(c->mp);
	modbus_free(c->ctx);
}

/* One master, until it disconnects: registers hold unit*1000 Wh,
 * 230 + unit V and -unit W. */
static void *
serve(void *arg)
{
	struct server *sv = arg;
	struct peer c;
	int n;

	peer_open(&c, sv->port, accept(sv->lsock, NULL, NULL));
	while ((n = peer_receive(&c)) >= 0) {
		int unit = c.q[6]; /* MBAP header: the unit id is its last byte */
		if (unit == UNIT_BUSY) {
			modbus_reply_exception(c.ctx, c.q, MODBUS_EXCEPTION_SLAVE_OR_SERVER_BUSY);
			continue;
		}
		if (unit == UNIT_SLOW)
			usleep(300 * 1000);
		uint32_t wh = (uint32_t)unit * 1000u;
		float v = 230.0f + (float)unit;
		uint32_t vb;
		memcpy(&vb, &v, 4);
		c.mp->tab_registers[0] = (uint16_t)(wh >> 16);
		c.mp->tab_registers[1] = (uint16_t)wh;
		c.mp->tab_registers[2] = (uint16_t)(vb >> 16);
		c.mp->tab_registers[3] = (uint16_t)vb;
		c.mp->tab_registers[4] = (uint16_t)(int16_t)-unit;
		modbus_reply(c.ctx, c.q, n, c.mp);
		sv->served++;
	}
	peer_close(&c);
	return NULL;
}

/* A socket listening on a loopback port the kernel picks; *port gets it. */
static int
loopback_listen(int backlog, uint16_t *port)
{
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof(sin);
	int one = 1;
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	cr_assert_eq(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	cr_assert_eq(listen(fd, backlog), 0);
	getsockname(fd, (struct sockaddr *)&sin, &sl);
	*port = ntohs(sin.sin_port);
	return fd;
}

static void
server_start(struct server *sv)
{
	memset(sv, 0, sizeof(*sv));
	sv->lsock = loopback_listen(1, &sv->port);
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
	cr_assert_eq(st.exceptions, 2);
	cr_assert_eq(st.retries, 1, "the busy meter once more, the other not");
	cr_assert_eq(st.timeouts + st.garbled, 0);
	cr_assert_eq(st.connects, 1, "an exception keeps the connection");
	/* 3 requests of 12 bytes; 2 exception answers of 9, one of 9 + 2 * 5 */
	cr_assert_eq(st.requests, 3);
	cr_assert_eq(st.bytes_out, 3 * 12);
	cr_assert_eq(st.bytes_in, 2 * 9 + 19);
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

/* ---- several masters at once ------------------------------------------------------- */

/*
 * A gateway that serves any number of masters, a thread per connection,
 * each answer held delay_ms: it counts the connections open and the
 * requests under way at once, and the bytes each way as they crossed.
 */
struct mserver {
	int lsock;
	uint16_t port;
	int delay_ms;
	pthread_t th, conn[16];
	int nconn;
	pthread_mutex_t mu;
	int open, max_open, inflight, max_inflight;
	uint64_t bytes_in, bytes_out, requests;
};

struct mconn {
	struct mserver *sv;
	int fd;
};

static void *
mserve_conn(void *arg)
{
	struct mconn *c = arg;
	struct mserver *sv = c->sv;
	struct peer pc;
	int n;

	peer_open(&pc, sv->port, c->fd);
	while ((n = peer_receive(&pc)) >= 0) {
		pthread_mutex_lock(&sv->mu);
		sv->bytes_in += (uint64_t)n;
		sv->requests++;
		if (++sv->inflight > sv->max_inflight)
			sv->max_inflight = sv->inflight;
		pthread_mutex_unlock(&sv->mu);
		usleep((useconds_t)sv->delay_ms * 1000);
		uint32_t wh = (uint32_t)pc.q[6] * 1000u;
		pc.mp->tab_registers[0] = (uint16_t)(wh >> 16);
		pc.mp->tab_registers[1] = (uint16_t)wh;
		int w = modbus_reply(pc.ctx, pc.q, n, pc.mp);
		pthread_mutex_lock(&sv->mu);
		sv->inflight--;
		sv->bytes_out += w > 0 ? (uint64_t)w : 0;
		pthread_mutex_unlock(&sv->mu);
	}
	pthread_mutex_lock(&sv->mu);
	sv->open--;
	pthread_mutex_unlock(&sv->mu);
	peer_close(&pc);
	free(c);
	return NULL;
}

static void *
mserve(void *arg)
{
	struct mserver *sv = arg;

	for (;;) {
		int fd = accept(sv->lsock, NULL, NULL);
		if (fd < 0)
			break; /* shut down */
		struct mconn *c = malloc(sizeof(*c));
		c->sv = sv;
		c->fd = fd;
		pthread_mutex_lock(&sv->mu);
		if (++sv->open > sv->max_open)
			sv->max_open = sv->open;
		pthread_mutex_unlock(&sv->mu);
		if (sv->nconn == 16 ||
		    pthread_create(&sv->conn[sv->nconn], NULL, mserve_conn, c) != 0) {
			close(fd);
			free(c);
			break;
		}
		sv->nconn++;
	}
	return NULL;
}

static void
mserver_start(struct mserver *sv, int delay_ms)
{
	memset(sv, 0, sizeof(*sv));
	pthread_mutex_init(&sv->mu, NULL);
	sv->delay_ms = delay_ms;
	sv->lsock = loopback_listen(16, &sv->port);
	cr_assert_eq(pthread_create(&sv->th, NULL, mserve, sv), 0);
}

/* After the gateway is freed (its connections closed). */
static void
mserver_stop(struct mserver *sv)
{
	shutdown(sv->lsock, SHUT_RDWR);
	pthread_join(sv->th, NULL);
	for (int i = 0; i < sv->nconn; i++)
		pthread_join(sv->conn[i], NULL);
	close(sv->lsock);
	pthread_mutex_destroy(&sv->mu);
}

/*
 * gateway.concurrency: that many connections, that many requests under
 * way at once, never more, whatever the queue; one by default.  The
 * driver's counters agree with what the server saw.
 */
Test(modbus_gw, concurrency_is_connections_and_requests_at_once)
{
	static const struct {
		int concurrency, reads, want; /* want: connections and requests at once */
	} cases[] = {
	    {0, 4, 1}, /* unset: one master */
	    {1, 4, 1},
	    {3, 9, 3},
	    {4, 2, 2}, /* only as many as there is work for */
	};
	static const char map1[] = "0x0000 u32 hi 1 Wh 1-0:1.8.0.255\n";

	for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
		struct mserver sv;
		struct modbus_map map;
		struct modbus_map_entry e[4];
		struct result r[16];
		char err[64];
		struct event_base *base = event_base_new();

		memset(r, 0, sizeof(r));
		modbus_map_init(&map, e, 4);
		cr_assert_eq(modbus_map_parse(&map, map1, strlen(map1), err, sizeof(err)), 0);
		mserver_start(&sv, 60);
		struct modbus_gw_params p = {.host = "127.0.0.1",
		                             .port = sv.port,
		                             .response_timeout_ms = 2000,
		                             .retries = 0,
		                             .concurrency = cases[k].concurrency,
		                             .map = &map};
		struct modbus_gw *g = modbus_gw_new(base, &p);
		cr_assert_not_null(g);
		for (int i = 0; i < cases[k].reads; i++)
			cr_assert_eq(modbus_gw_read(g, (uint8_t)(i + 1), read_cb, &r[i]), 0);
		for (int i = 0; i < 5000; i++) {
			int done = 0;
			for (int x = 0; x < cases[k].reads; x++)
				done += r[x].called;
			if (done == cases[k].reads)
				break;
			event_base_loop(base, EVLOOP_ONCE);
		}
		for (int i = 0; i < cases[k].reads; i++) {
			cr_assert(r[i].called, "case %zu: read %d not called back", k, i);
			cr_assert_eq(r[i].status, 0, "case %zu: read %d: %d", k, i, r[i].status);
			cr_assert_float_eq(r[i].v[0], (i + 1) * 1000.0, 1e-9, "case %zu: unit %d",
			                   k, i + 1);
		}
		struct modbus_gw_stats st;
		modbus_gw_stats(g, &st);
		modbus_gw_free(g);
		mserver_stop(&sv);
		cr_assert_eq(sv.max_open, cases[k].want, "case %zu: %d connections at once", k,
		             sv.max_open);
		cr_assert_eq(sv.max_inflight, cases[k].want, "case %zu: %d requests at once", k,
		             sv.max_inflight);
		cr_assert_eq(st.connects, (uint64_t)cases[k].want, "case %zu", k);
		cr_assert_eq(st.peak_open, (unsigned)cases[k].want, "case %zu", k);
		cr_assert_eq(st.requests, sv.requests, "case %zu", k);
		cr_assert_eq(st.requests, (uint64_t)cases[k].reads, "case %zu", k);
		cr_assert_eq(st.bytes_out, sv.bytes_in, "case %zu: bytes to the gateway", k);
		cr_assert_eq(st.bytes_in, sv.bytes_out, "case %zu: bytes from the gateway", k);
		cr_assert_eq(st.timeouts + st.garbled + st.exceptions + st.failures, 0);
		event_base_free(base);
	}
}

static void
note_dropped(void *arg)
{
	((struct result *)arg)->status = 1; /* no read callback sets 1 */
}

/* Shutting down: the readout a worker has started finishes, the queued
 * ones are handed back at once without reaching the gateway. */
Test(modbus_gw, drop_queued_keeps_the_readout_under_way)
{
	struct fixture f;
	struct result r[3];
	struct modbus_gw_stats st;

	memset(r, 0, sizeof(r));
	setup(&f, 0);
	cr_assert_eq(modbus_gw_read(f.g, UNIT_SLOW, read_cb, &r[0]), 0);
	cr_assert_eq(modbus_gw_read(f.g, 2, read_cb, &r[1]), 0);
	cr_assert_eq(modbus_gw_read(f.g, 3, read_cb, &r[2]), 0);
	/* the worker counts its request before sending it: then the slow
	 * answer takes 300 ms, and the other two wait in the queue */
	for (int i = 0; i < 2000; i++) {
		modbus_gw_stats(f.g, &st);
		if (st.requests > 0)
			break;
		usleep(1000);
	}
	cr_assert_eq(st.requests, 1);
	cr_assert_eq(modbus_gw_drop_queued(f.g, note_dropped), 2);
	cr_assert_eq(modbus_gw_pending(f.g), 1);
	cr_assert(r[1].status == 1 && r[2].status == 1 && !r[1].called && !r[2].called);
	wait_for(&f, r, 1);
	cr_assert_eq(r[0].status, 0);
	cr_assert_float_eq(r[0].v[0], UNIT_SLOW * 1.0, 1e-9);
	cr_assert_eq(modbus_gw_pending(f.g), 0);
	modbus_gw_stats(f.g, &st);
	cr_assert_eq(st.requests, 1, "the dropped readouts never reached the gateway");
	teardown(&f);
	cr_assert_eq(f.sv.served, 1, "the server answered one readout"); /* joined: stable */
}
