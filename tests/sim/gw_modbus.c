/*
 * gw_modbus.c: Modbus-TCP gateways.  Gateway g listens on base port + g
 * and fronts meters g*247 .. g*247+246 as unit ids 1..247 (as `metersim
 * export --transport modbus` lists them).  Each meter's readings appear as
 * holding registers (also readable as input registers) laid out by a
 * register map (meterlib/maps/kamstrup382.map by default, parsed with
 * modbus_map.h), filled from the model at the moment of each request.
 *
 * Why threads: libmodbus's server side (modbus_tcp_listen, _accept,
 * modbus_receive, modbus_reply) is blocking and owns its sockets, so it
 * cannot be driven from the libevent loop.  Each gateway therefore runs a
 * thread that accepts masters, and every accepted master gets a thread of
 * its own with its own modbus_t (a context holds one socket and its
 * framing state and is not thread safe) and its own register mapping (the
 * mapping is rewritten for every request, so sharing one would race); the
 * model lock is taken only while one meter's values are computed.
 *
 * Why a thread per master rather than one thread polling every socket:
 * modbus_receive() reads a whole request before it returns, so a poll loop
 * that calls it on a ready socket still blocks on a master that sent half
 * a frame (or stalls), and a delayed answer (the delay fault) would hold
 * every other master; with a thread each, a slow or stuck master holds
 * only itself, as on a real multi-master gateway.
 *
 * Masters at once: real gateways take a few (often 1 to 8) and close
 * connections beyond that.  --modbus-masters N (serve_cfg.modbus_masters)
 * does the same: a connection past N masters open on the gateway is
 * closed at once and counted as refused; 0 takes any number.  The
 * counters show modbus_open (masters connected now, all gateways) and
 * modbus_open_max (the most one gateway had at once), so a test can see
 * how many connections a head-end really kept open.  A master that
 * connects and sends nothing for FIRST_REQUEST_S is closed (a head-end
 * asks at once): silent connections would otherwise hold the places and
 * their threads for good.  Once a master has asked, it may stay idle as
 * long as it likes, as before.  Threads get a small stack; stopping shuts
 * the listening socket so accept returns.
 *
 * Faults (per meter, by unit id): busy -> exception 6 (server busy),
 * noanswer -> exception 11 (gateway target failed to respond), drop ->
 * the connection is closed, delay -> the answer is held; refuse (fleet
 * set of the gateway's first meter) -> connections are closed at once.
 */
#include <errno.h>
#include <math.h>
#include <modbus/modbus.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "modbus_map.h"
#include "serve.h"

#define GW_UNITS 247
#define MAP_MAX  64

struct mgws;

struct mgw {
	struct serve *sv;
	struct mgws *all;
	uint32_t g, first, n;
	uint16_t port;
	pthread_t th;
	bool started;
	int lsock; /* written by the gateway's thread, read by stop: atomic */
	int stop;  /* atomic */
	unsigned open; /* masters connected now (atomic) */
};

/* How long a new master may stay silent before its first request. */
#define FIRST_REQUEST_S 10

/* One master's connection, owned by its thread. */
struct mconn {
	struct mgw *g;
	int sock;
};

struct mgws {
	struct mgw *gw;
	uint32_t n;
	struct modbus_map map;
	struct modbus_map_entry e[MAP_MAX];
	uint16_t nregs; /* registers the map spans from 0 */
};

/* A reading in the base unit of the map entry's unit text (Wh, varh, W,
 * V, A, s, or a plain number); false when the model has no such object. */
static bool
reading(struct sim_meter *m, int64_t t, const struct obis *o, const struct sim_registers *r,
        const struct sim_instant *in, const struct sim_demand *d, double *v)
{
	const uint8_t *x = o->v;
	if (x[0] == 1 && x[1] == 0 && x[3] == 8 && x[2] >= 1 && x[2] <= 4 && x[4] <= TARIFF_MAX) {
		unsigned q = x[2] - 1u;
		*v = x[4] == 0 ? (double)r->total[q] : (double)r->tariff[q][x[4] - 1];
		return true;
	}
	if (x[0] == 1 && x[1] == 0 && x[3] == 7 && x[4] == 0) {
		static const uint8_t uc[3] = {32, 52, 72}, ic[3] = {31, 51, 71},
		                     pc[3] = {21, 41, 61};
		for (unsigned p = 0; p < 3; p++) {
			if (x[2] == uc[p]) {
				*v = in->u[p] / 10.0;
				return true;
			}
			if (x[2] == ic[p]) {
				*v = in->i[p] / 1000.0;
				return true;
			}
			if (x[2] == pc[p]) {
				*v = in->p[p];
				return true;
			}
		}
		if (x[2] == 1) {
			*v = in->p_import;
			return true;
		}
		if (x[2] == 2) {
			*v = in->p_export;
			return true;
		}
	}
	if (x[0] == 1 && x[1] == 0 && x[2] == 1 && x[3] == 6 && x[4] <= TARIFF_MAX) {
		*v = x[4] == 0 ? d->total.w : d->tariff[x[4] - 1].w;
		return true;
	}
	if (x[0] == 0 && x[2] == 96 && x[3] == 8 && x[4] == 0) {
		*v = (double)(t - m->installed);
		return true;
	}
	if (x[0] == 0 && x[2] == 96 && x[3] == 14 && x[4] == 0) {
		*v = r->active_tariff;
		return true;
	}
	return false;
}

static void
put_words(uint16_t *regs, const struct modbus_map_entry *e, uint64_t raw)
{
	for (unsigned w = 0; w < e->words; w++) {
		/* word w counted from the most significant */
		uint16_t word = (uint16_t)(raw >> (16 * (e->words - 1 - w)));
		unsigned at = e->low_word_first ? e->words - 1 - w : w;
		regs[e->reg + at] = word;
	}
}

/* Fill regs[0..nregs) for meter index; caller holds the model lock. */
static void
fill(struct mgws *all, struct serve *sv, uint32_t index, uint16_t *regs)
{
	struct sim_meter m;
	sim_meter_load(sv->fleet, index, &m);
	int64_t t = serve_now(sv);
	if (t < m.installed)
		t = m.installed;
	dev_advance(&m, t);
	struct sim_registers r;
	struct sim_instant in;
	struct sim_demand d;
	sim_registers(&m, t, &r);
	sim_instant(&m, t, &in);
	sim_demand(&m, sim_month_start(&m, t), t, &d);
	memset(regs, 0, all->nregs * sizeof(*regs));
	for (size_t k = 0; k < all->map.n; k++) {
		const struct modbus_map_entry *e = &all->map.e[k];
		double v;
		if (!reading(&m, t, &e->obis, &r, &in, &d, &v))
			continue;
		if (e->unit[0] == 'k' && e->unit[1])
			v /= 1000.0; /* kWh, kvarh, kW */
		double raw = v / e->scale;
		uint64_t bits = 0;
		switch (e->type) {
		case MODBUS_F32: {
			float fv = (float)raw;
			uint32_t b32;
			memcpy(&b32, &fv, 4);
			bits = b32;
			break;
		}
		case MODBUS_F64:
			memcpy(&bits, &raw, 8);
			break;
		default:
			bits = (uint64_t)llround(raw);
			break;
		}
		put_words(regs, e, bits);
	}
}

static void
serve_client(struct mgw *g, struct mgws *all, modbus_t *ctx, modbus_mapping_t *mp)
{
	struct serve *sv = g->sv;
	uint8_t q[MODBUS_TCP_MAX_ADU_LENGTH];
	struct fault_rng rng;
	fault_rng_init(&rng, sv->fleet->cfg.seed, g->first,
	               __atomic_add_fetch(&sv->conn_seq, 1, __ATOMIC_RELAXED));
	/* the first request within FIRST_REQUEST_S; then none (0: forever) */
	modbus_set_indication_timeout(ctx, FIRST_REQUEST_S, 0);
	while (!__atomic_load_n(&g->stop, __ATOMIC_ACQUIRE)) {
		int n = modbus_receive(ctx, q);
		if (n < 0)
			return;
		modbus_set_indication_timeout(ctx, 0, 0);
		if (n == 0)
			continue; /* not for us (libmodbus filtered it) */
		CNT_ADD(sv, bytes_in, (uint64_t)n);
		CNT_ADD(sv, modbus_requests, 1);
		int hl = modbus_get_header_length(ctx);
		uint8_t unit = q[hl - 1];
		if (unit < 1 || unit > g->n) {
			modbus_reply_exception(ctx, q, MODBUS_EXCEPTION_GATEWAY_PATH);
			continue;
		}
		uint32_t index = g->first + unit - 1u;
		const struct fault_set *fs = faults_for(&sv->faults, index);
		if (fault_fire(&sv->faults, fs, &rng, FAULT_DROP))
			return;
		if (fault_fire(&sv->faults, fs, &rng, FAULT_BUSY)) {
			modbus_reply_exception(ctx, q, MODBUS_EXCEPTION_SLAVE_OR_SERVER_BUSY);
			continue;
		}
		if (fault_fire(&sv->faults, fs, &rng, FAULT_NOANSWER)) {
			modbus_reply_exception(ctx, q, MODBUS_EXCEPTION_GATEWAY_TARGET);
			continue;
		}
		if (fs->p[FAULT_DELAY] > 0 && fault_fire(&sv->faults, fs, &rng, FAULT_DELAY))
			usleep(fs->delay_ms * 1000u);
		serve_lock(sv);
		fill(all, sv, index, mp->tab_registers);
		serve_unlock(sv);
		memcpy(mp->tab_input_registers, mp->tab_registers, all->nregs * sizeof(uint16_t));
		int w = modbus_reply(ctx, q, n, mp);
		if (w < 0)
			return;
		CNT_ADD(sv, bytes_out, (uint64_t)w);
	}
}

/* Raise the high-water mark to at least n (several threads race). */
static void
open_max_raise(struct serve *sv, uint64_t n)
{
	uint64_t cur = __atomic_load_n(&sv->cnt.modbus_open_max, __ATOMIC_RELAXED);
	while (cur < n && !__atomic_compare_exchange_n(&sv->cnt.modbus_open_max, &cur, n, true,
	                                               __ATOMIC_RELAXED, __ATOMIC_RELAXED))
		;
}

static void *
conn_thread(void *arg)
{
	struct mconn *mc = arg;
	struct mgw *g = mc->g;
	struct serve *sv = g->sv;
	struct mgws *all = g->all;
	/* the address is not used: the context only wraps the accepted socket */
	modbus_t *ctx = modbus_new_tcp("127.0.0.1", g->port);
	modbus_mapping_t *mp = modbus_mapping_new(0, 0, all->nregs, all->nregs);
	if (ctx && mp && modbus_set_socket(ctx, mc->sock) == 0)
		serve_client(g, all, ctx, mp);
	close(mc->sock);
	if (mp)
		modbus_mapping_free(mp);
	if (ctx)
		modbus_free(ctx); /* does not close: the socket was closed above */
	__atomic_sub_fetch(&g->open, 1, __ATOMIC_RELAXED);
	__atomic_sub_fetch(&sv->cnt.modbus_open, 1, __ATOMIC_RELAXED);
	CNT_ADD(sv, closed, 1);
	free(mc);
	return NULL;
}

static void *
gw_thread(void *arg)
{
	struct mgw *g = arg;
	struct serve *sv = g->sv;
	modbus_t *ctx = modbus_new_tcp("127.0.0.1", g->port);
	pthread_attr_t at;
	pthread_attr_init(&at);
	pthread_attr_setstacksize(&at, 128 * 1024);
	pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
	if (!ctx)
		goto out;
	int ls = modbus_tcp_listen(ctx, 16);
	__atomic_store_n(&g->lsock, ls, __ATOMIC_RELEASE);
	if (ls < 0) {
		fprintf(stderr, "metersim: modbus gateway %u: cannot listen on port %u: %s\n", g->g,
		        g->port, modbus_strerror(errno));
		goto out;
	}
	while (!__atomic_load_n(&g->stop, __ATOMIC_ACQUIRE)) {
		/* plain accept(): the listening context keeps no client socket */
		int c = accept(ls, NULL, NULL);
		if (c < 0) {
			if (__atomic_load_n(&g->stop, __ATOMIC_ACQUIRE))
				break;
			continue;
		}
		const struct fault_set *fs = faults_for(&sv->faults, g->first);
		struct fault_rng rng;
		fault_rng_init(&rng, sv->fleet->cfg.seed, g->first, 0x10000u + (uint64_t)c);
		uint32_t max = sv->cfg.modbus_masters;
		if (fault_fire(&sv->faults, fs, &rng, FAULT_REFUSE) ||
		    (max > 0 && __atomic_load_n(&g->open, __ATOMIC_RELAXED) >= max)) {
			CNT_ADD(sv, refused, 1);
			close(c);
			continue;
		}
		struct mconn *mc = malloc(sizeof(*mc));
		if (!mc) {
			close(c);
			continue;
		}
		mc->g = g;
		mc->sock = c;
		/* counted before the thread runs, so the limit holds for the
		 * next accept already */
		unsigned now = __atomic_add_fetch(&g->open, 1, __ATOMIC_RELAXED);
		__atomic_add_fetch(&sv->cnt.modbus_open, 1, __ATOMIC_RELAXED);
		open_max_raise(sv, now);
		CNT_ADD(sv, connections, 1);
		pthread_t th;
		if (pthread_create(&th, &at, conn_thread, mc)) {
			__atomic_sub_fetch(&g->open, 1, __ATOMIC_RELAXED);
			__atomic_sub_fetch(&sv->cnt.modbus_open, 1, __ATOMIC_RELAXED);
			CNT_ADD(sv, closed, 1);
			close(c);
			free(mc);
		}
	}
out:
	pthread_attr_destroy(&at);
	if (ctx)
		modbus_free(ctx);
	return NULL;
}

static int
load_map(struct mgws *all, const char *path)
{
	static const char *fallback[] = {"meterlib/maps/kamstrup382.map",
	                                 "../meterlib/maps/kamstrup382.map"};
	char exe_map[4096];
	FILE *f = NULL;
	if (path) {
		f = fopen(path, "r");
	} else {
		for (size_t i = 0; !f && i < 2; i++)
			f = fopen(fallback[i], "r");
		if (!f) {
			/* relative to the binary: build/metersim -> meterlib/maps */
			ssize_t n = readlink("/proc/self/exe", exe_map, sizeof(exe_map) - 64);
			if (n > 0) {
				exe_map[n] = 0;
				char *slash = strrchr(exe_map, '/');
				if (slash) {
					strcpy(slash, "/../meterlib/maps/kamstrup382.map");
					f = fopen(exe_map, "r");
				}
			}
		}
	}
	if (!f) {
		fprintf(stderr, "metersim: cannot open the Modbus register map%s%s\n",
		        path ? " " : " (give --modbus-map)", path ? path : "");
		return -1;
	}
	char text[16384];
	size_t len = fread(text, 1, sizeof(text), f);
	fclose(f);
	char err[128];
	modbus_map_init(&all->map, all->e, MAP_MAX);
	if (modbus_map_parse(&all->map, text, len, err, sizeof(err))) {
		fprintf(stderr, "metersim: register map: %s\n", err);
		return -1;
	}
	for (size_t k = 0; k < all->map.n; k++) {
		unsigned end = all->map.e[k].reg + all->map.e[k].words;
		if (end > all->nregs)
			all->nregs = (uint16_t)end;
	}
	return 0;
}

int
modbus_gw_start(struct serve *sv)
{
	uint32_t count = sv->fleet->cfg.count - sv->cfg.first;
	uint32_t ngw = (count + GW_UNITS - 1) / GW_UNITS;
	uint16_t base = sv->cfg.base_port ? sv->cfg.base_port : 10000;
	if ((uint32_t)base + ngw > 65536)
		return -1;
	struct mgws *all = calloc(1, sizeof(*all));
	if (!all)
		return -1;
	sv->modbus = all;
	if (load_map(all, sv->cfg.modbus_map))
		return -1;
	all->gw = calloc(ngw, sizeof(*all->gw));
	if (!all->gw)
		return -1;
	pthread_attr_t at;
	pthread_attr_init(&at);
	pthread_attr_setstacksize(&at, 128 * 1024);
	for (uint32_t g = 0; g < ngw; g++) {
		struct mgw *w = &all->gw[g];
		w->sv = sv;
		w->all = all;
		w->g = g;
		w->first = sv->cfg.first + g * GW_UNITS;
		w->n = count - g * GW_UNITS < GW_UNITS ? count - g * GW_UNITS : GW_UNITS;
		w->port = (uint16_t)(base + g);
		w->lsock = -1;
		if (pthread_create(&w->th, &at, gw_thread, w)) {
			fprintf(stderr, "metersim: cannot start Modbus gateway %u\n", g);
			break;
		}
		w->started = true;
		all->n = g + 1;
		sv->served += w->n;
		sv->listeners++;
	}
	pthread_attr_destroy(&at);
	return all->n == ngw ? 0 : -1;
}

void
modbus_gw_stop(struct serve *sv)
{
	struct mgws *all = sv->modbus;
	if (!all)
		return;
	for (uint32_t g = 0; g < all->n; g++) {
		struct mgw *w = &all->gw[g];
		__atomic_store_n(&w->stop, 1, __ATOMIC_RELEASE);
		int ls = __atomic_load_n(&w->lsock, __ATOMIC_ACQUIRE);
		if (ls >= 0)
			shutdown(ls, SHUT_RDWR);
	}
	/* a master's thread blocked in modbus_receive on a quiet master
	 * would never return: threads are detached rather than joined (the
	 * masters' threads are detached from the start) */
	for (uint32_t g = 0; g < all->n; g++)
		if (all->gw[g].started)
			pthread_detach(all->gw[g].th);
	sv->modbus = NULL;
	/* the gateways' memory stays: detached threads may still read it
	 * until the process exits, which follows at once */
}
