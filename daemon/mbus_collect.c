/*
 * mbus_collect.c: gateway meters from lease to committed batch (see
 * mbus_collect.h).  The scheduler hands a leased meter over; the meter's
 * gateway is found or created (one struct gw per gateway id, kept for the
 * daemon's life so that a bus keeps its connection and its FCB state);
 * the readout is queued on it; its answer becomes one store batch; the
 * commit (or refusal) gives the meter back to the scheduler for its next
 * due time.  Nothing here blocks: the M-Bus driver is on the event loop,
 * the Modbus driver does its blocking work on its own threads.
 *
 * gateway.concurrency is the number of readouts a gateway works on at
 * once, each on a connection of its own: the Modbus driver gets that many
 * workers.  An M-Bus gateway row is one bus, and a bus has one master and
 * one request on the wire, so it is read one meter at a time whatever the
 * row says (a larger value is logged once and not used); buses of one
 * multi-port gateway are rows of their own and are read in parallel.
 * A gateway whose row changed (address, baud rate, concurrency) gets a
 * new driver the next time a meter of it arrives while it is idle.
 *
 * Metrics per gateway (label gateway = gateway.name, kind): the drivers'
 * counters are copied into the registry just before /metrics is rendered,
 * as differences, so a rebuilt driver never makes a counter go back.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ammd.h"
#include "config.h"
#include "log.h"
#include "mbus.h"
#include "mbus/mbus_bus.h"
#include "mbus/modbus_gw.h"
#include "mbus_collect.h"
#include "message.h"
#include "metrics.h"
#include "modbus_map.h"
#include "profile.h"
#include "scheduler.h"
#include "store.h"

#ifndef AMMD_MAPDIR
#define AMMD_MAPDIR "/usr/local/share/ammd/maps"
#endif

#define MAP_MAX    64
#define MAX_VALUES 64
#define UNIT_S     7
#define UNIT_W     27
#define UNIT_VAR   29
#define UNIT_VARH  32
#define UNIT_V     35
#define UNIT_A     33
#define UNIT_NONE  255

/* ---- mapping (pure) ------------------------------------------------------------ */

/*
 * The 382M's module (and the other Kamstrup types, which send the same
 * layout): see vectors/mbus/frames/kamstrup_382_005 and DESIGN §4.
 */
static int
scaler_of(double scale, int64_t *mul)
{
	*mul = 1;
	if (scale <= 0)
		return 0;
	double l = log10(scale);
	long r = lround(l);
	if (fabs(l - (double)r) < 1e-9)
		return (int)r;
	/* durations in minutes, hours, days: a whole multiplier */
	if (scale >= 1 && fabs(scale - round(scale)) < 1e-9)
		*mul = (int64_t)llround(scale);
	return 0;
}

int
mbus_collect_map_record(const char *type, const struct mbus_record *r,
                        struct mbus_collect_value *out)
{
	const char *q = r->info.quantity;
	unsigned sub = r->has_dife ? r->subunit : 0;
	unsigned tar = r->has_dife ? r->tariff : 0;
	uint8_t c = 0, d = 0, e = 0;
	int64_t mul;
	bool elec = true;

	(void)type; /* every type we know sends the Kamstrup layout */
	if (q == NULL || !r->is_int || r->type != MBUS_V_NUMBER || r->storage != 0 ||
	    r->info.manufacturer)
		return METER_ENOTFOUND;
	if (r->function != MBUS_FN_INSTANT && r->function != MBUS_FN_MAX)
		return METER_ENOTFOUND;
	if (strcmp(q, "energy") == 0 && strcmp(r->info.unit, "Wh") == 0) {
		if (sub > 1 || tar > 8 || r->function != MBUS_FN_INSTANT)
			return METER_ENOTFOUND;
		c = (uint8_t)(sub == 0 ? 1 : 2);
		d = 8;
		e = (uint8_t)tar;
		out->unit = PROFILE_UNIT_WH;
	} else if (strcmp(q, "power") == 0 && strcmp(r->info.unit, "W") == 0) {
		if (sub > 1 || tar != 0)
			return METER_ENOTFOUND;
		c = (uint8_t)(sub == 0 ? 1 : 2);
		d = r->function == MBUS_FN_MAX ? 6 : 7;
		out->unit = UNIT_W;
	} else if (strcmp(q, "voltage") == 0 && r->function == MBUS_FN_INSTANT) {
		if (sub > 2 || tar != 0)
			return METER_ENOTFOUND;
		c = (uint8_t)(32 + 20 * sub);
		d = 7;
		out->unit = UNIT_V;
	} else if (strcmp(q, "current") == 0 && r->function == MBUS_FN_INSTANT) {
		if (sub > 2 || tar != 0)
			return METER_ENOTFOUND;
		c = (uint8_t)(31 + 20 * sub);
		d = 7;
		out->unit = UNIT_A;
	} else if (strcmp(q, "on time") == 0 && r->function == MBUS_FN_INSTANT && sub == 0 &&
	           tar == 0) {
		elec = false;
		c = 96;
		d = 8;
		out->unit = UNIT_S;
	} else {
		return METER_ENOTFOUND;
	}
	out->obis = (struct obis){{elec ? 1 : 0, 0, c, d, e, 255}};
	out->scaler = scaler_of(r->info.scale, &mul);
	if (mul != 1 && (r->ival > INT64_MAX / mul || r->ival < INT64_MIN / mul))
		return METER_ENOTFOUND;
	out->value = r->ival * mul;
	return 0;
}

int
mbus_collect_map_modbus(const struct obis *o, double value, const char *unit,
                        struct mbus_collect_value *out)
{
	static const struct {
		const char *text;
		int unit;
		double mul;
	} units[] = {
	    {"Wh", PROFILE_UNIT_WH, 1}, {"kWh", PROFILE_UNIT_WH, 1000},
	    {"varh", UNIT_VARH, 1},     {"kvarh", UNIT_VARH, 1000},
	    {"W", UNIT_W, 1},           {"kW", UNIT_W, 1000},
	    {"var", UNIT_VAR, 1},       {"kvar", UNIT_VAR, 1000},
	    {"V", UNIT_V, 1},           {"A", UNIT_A, 1},
	    {"s", UNIT_S, 1},
	};
	double v = value, mul = 1;

	out->obis = *o;
	out->unit = UNIT_NONE;
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
		if (unit != NULL && strcmp(unit, units[i].text) == 0) {
			out->unit = units[i].unit;
			mul = units[i].mul;
		}
	v *= mul;
	if (!isfinite(v))
		return METER_ERANGE;
	/* the fewest decimals that keep it: kWh with 3 decimals are whole
	 * Wh; a float32 voltage keeps its 3 first decimals */
	for (int s = 0; s >= -3; s--) {
		double x = v * pow(10, -s);
		if (fabs(x) > 9e15)
			return METER_ERANGE;
		if (fabs(x - round(x)) < 1e-6 * (fabs(x) > 1 ? fabs(x) : 1) || s == -3) {
			out->value = (int64_t)llround(x);
			out->scaler = s;
			return 0;
		}
	}
	return METER_ERANGE;
}

int
mbus_collect_map_frames(const char *type, const uint8_t *frames, size_t len,
                        struct mbus_collect_value *vals, size_t cap, size_t *n,
                        struct mbus_header *hdr, char *err, size_t errlen)
{
	size_t off = 0;
	int problem = 0;

	*n = 0;
	if (hdr != NULL)
		memset(hdr, 0, sizeof(*hdr));
	if (errlen > 0)
		err[0] = '\0';
	while (off < len) {
		struct mbus_frame f;
		struct mbus_telegram tg;
		struct mbus_iter it;
		struct mbus_record r;
		int rc = mbus_frame_parse(frames + off, len - off, &f);
		if (rc <= 0)
			break;
		off += (size_t)rc;
		if (mbus_telegram_decode(&f, &tg) != 0)
			continue;
		if (tg.kind == MBUS_TG_APP_ERROR) {
			problem = METER_EAPPERR;
			snprintf(err, errlen, "application error: %s",
			         mbus_app_error_text(tg.app_error));
			continue;
		}
		if (hdr != NULL && !hdr->has_id && tg.hdr.has_id)
			*hdr = tg.hdr;
		mbus_iter_init(&it, &tg);
		while ((rc = mbus_records_next(&it, &r)) == 1 && *n < cap)
			if (mbus_collect_map_record(type, &r, &vals[*n]) == 0)
				(*n)++;
		if (rc < 0) {
			problem = rc;
			snprintf(err, errlen, "record: %s", meter_strerror(rc));
		}
	}
	return problem;
}

int
mbus_collect_map_load(const char *path, struct modbus_map *map, struct modbus_map_entry *e,
                      size_t cap, const char **used, char *err, size_t errlen)
{
	const char *paths[3] = {getenv("AMMD_MODBUS_MAP"), AMMD_MAPDIR "/kamstrup382.map",
	                        "meterlib/maps/kamstrup382.map"};
	char buf[16384], why[256] = "";
	FILE *f = NULL;

	modbus_map_init(map, e, cap);
	if (used != NULL)
		*used = NULL;
	if (path != NULL) {
		f = fopen(path, "r");
		if (f == NULL) {
			snprintf(err, errlen, "%s: %s", path, strerror(errno));
			return METER_EINVAL;
		}
	} else {
		/* the first that opens: a file named but missing falls through */
		for (int i = 0; i < 3 && f == NULL; i++)
			if (paths[i] != NULL && (f = fopen(paths[i], "r")) != NULL)
				path = paths[i];
		if (f == NULL) {
			snprintf(err, errlen, "no Modbus register map found");
			return METER_ENOTFOUND;
		}
	}
	if (used != NULL)
		*used = path;
	size_t n = fread(buf, 1, sizeof(buf), f);
	bool whole = feof(f) && !ferror(f);
	fclose(f);
	if (!whole) {
		snprintf(err, errlen, "%s: not read whole (at most %zu bytes)", path,
		         sizeof(buf) - 1);
		return METER_EINVAL;
	}
	int rc = modbus_map_parse(map, buf, n, why, sizeof(why));
	if (rc == 0 && map->n == 0) {
		rc = METER_EMALFORMED;
		snprintf(why, sizeof(why), "no entries");
	}
	if (rc != 0) {
		snprintf(err, errlen, "%s: %s", path, why);
		return rc;
	}
	return 0;
}

/* ---- gateways and jobs ------------------------------------------------------------ */

struct collector;

struct gw {
	struct gw *next;
	struct collector *c;
	int32_t id;
	bool modbus;
	char name[300];  /* host:port, for log lines and errors */
	char label[300]; /* gateway.name, for metrics */
	char host[256];
	uint16_t port;
	struct mbus_bus *bus;
	struct modbus_gw *mgw;
	int baud;
	int want;              /* gateway.concurrency as last read */
	int concurrency;       /* in force: readouts at once */
	bool warned;           /* an M-Bus concurrency above 1 was logged */
	size_t queued;         /* readouts handed to the driver, not called back */
	int64_t busy_since_ms; /* queued > 0 since (counted up to here) */
	/* driver counters already added to the metrics */
	struct mbus_bus_stats seen_mb;
	struct modbus_gw_stats seen_mo;
};

/* The gateway families (NULL when there is no registry: no metrics). */
struct gw_metrics {
	struct metric *requests, *retries, *timeouts, *garbled, *exceptions, *connects;
	struct metric *bytes, *readouts, *busy, *queue, *concurrency;
};

struct job {
	struct collector *c;
	struct gw *g;
	struct scheduler *sc;
	int32_t meter;
	char serial[40];
	char type[8];
	int failures;
	int64_t started_at;
	struct timespec t0;
};

struct collector {
	struct ammd *d;
	struct gw *gws;
	size_t active; /* jobs from hand-over to commit */
	bool draining;
	struct modbus_map map;
	struct modbus_map_entry map_e[MAP_MAX];
	bool have_map;
	uint64_t done, failed;
	struct gw_metrics m;
};

static struct collector *collector;

static int64_t
wall_now(void)
{
	return (int64_t)time(NULL);
}

static int64_t
mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const char *
gw_kind(const struct gw *g)
{
	return g->modbus ? "modbus" : "mbus";
}

/* Busy time: from the first readout handed to the driver until the
 * driver has nothing left, counted up to now while it lasts. */
static void
gw_busy_account(struct gw *g)
{
	if (g->busy_since_ms == 0)
		return;
	int64_t now = mono_ms();
	metric_add(g->c->m.busy, (double)(now - g->busy_since_ms) / 1000.0, g->label, gw_kind(g));
	g->busy_since_ms = g->queued > 0 ? now : 0;
}

static void
gw_queued_add(struct gw *g)
{
	if (g->queued++ == 0)
		g->busy_since_ms = mono_ms();
}

static void
gw_queued_sub(struct gw *g)
{
	g->queued--;
	if (g->queued == 0)
		gw_busy_account(g);
}

#define DELTA(cur, seen, f) ((double)((cur)->f - (seen)->f))

/* The counters the M-Bus and the Modbus driver both keep, as increments
 * since the last flush: their stats structs differ, the metrics do not. */
struct gw_delta {
	double requests, retries, timeouts, garbled, connects, bytes_in, bytes_out;
};
#define GW_DELTA(cur, seen)                                                                        \
	{                                                                                          \
		DELTA(cur, seen, requests), DELTA(cur, seen, retries), DELTA(cur, seen, timeouts), \
		    DELTA(cur, seen, garbled), DELTA(cur, seen, connects),                         \
		    DELTA(cur, seen, bytes_in), DELTA(cur, seen, bytes_out)                        \
	}

static void
gw_delta_add(const struct gw *g, const struct gw_delta *d)
{
	const struct gw_metrics *m = &g->c->m;
	const char *l = g->label, *k = gw_kind(g);

	metric_add(m->requests, d->requests, l, k);
	metric_add(m->retries, d->retries, l, k);
	metric_add(m->timeouts, d->timeouts, l, k);
	metric_add(m->garbled, d->garbled, l, k);
	metric_add(m->connects, d->connects, l, k);
	metric_add(m->bytes, d->bytes_in, l, k, "in");
	metric_add(m->bytes, d->bytes_out, l, k, "out");
}

/* The driver's counters since the last call into the registry. */
static void
gw_stats_flush(struct gw *g)
{
	const struct gw_metrics *m = &g->c->m;
	const char *l = g->label, *k = gw_kind(g);

	if (g->bus != NULL) {
		const struct mbus_bus_stats *st = mbus_bus_stats(g->bus), *o = &g->seen_mb;
		const struct gw_delta d = GW_DELTA(st, o);
		gw_delta_add(g, &d);
		g->seen_mb = *st;
	}
	if (g->mgw != NULL) {
		struct modbus_gw_stats cur;
		const struct modbus_gw_stats *st = &cur, *o = &g->seen_mo;
		modbus_gw_stats(g->mgw, &cur);
		const struct gw_delta d = GW_DELTA(st, o);
		gw_delta_add(g, &d);
		/* only Modbus answers with exceptions */
		metric_add(m->exceptions, DELTA(st, o, exceptions), l, k);
		g->seen_mo = cur;
	}
	metric_set(m->queue, (double)g->queued, l, k);
	metric_set(m->concurrency, g->concurrency, l, k);
	gw_busy_account(g);
}

static const char *
instance(const struct collector *c)
{
	return c->d->cfg->daemon.instance_id[0] ? c->d->cfg->daemon.instance_id : NULL;
}

static void
job_stored(int status, const char *err, void *arg)
{
	struct job *j = arg;
	struct collector *c = j->c;
	(void)err;

	/* the batch carried the failures counter; the same rule gives the
	 * next due time */
	if (j->sc != NULL && scheduler_get() == j->sc)
		scheduler_gateway_done(j->sc, j->meter, status == 0, j->failures == 0, j->failures);
	if (status != 0)
		log_meter(LOG_WARNING, j->serial, "gateway readout not stored: %s",
		          err ? err : "refused");
	c->active--;
	free(j);
}

/*
 * One batch for one meter: its readings, a session_log row, its state and
 * the MQTT message.  outcome "ok" or why not; vals may be empty.
 */
static void
job_submit(struct job *j, const char *outcome, const char *error,
           const struct mbus_collect_value *vals, size_t n, int64_t bytes_in, int64_t bytes_out)
{
	struct collector *c = j->c;
	const struct config *cfg = c->d->cfg;
	struct timespec t1;
	bool ok = strcmp(outcome, "ok") == 0;
	int64_t now = wall_now();
	char name[OBIS_STRLEN];
	struct message_register mr[MAX_VALUES];
	struct store_batch *b = store_batch_new(c->d->store);

	clock_gettime(CLOCK_MONOTONIC, &t1);
	metric_inc(c->m.readouts, j->g->label, gw_kind(j->g), outcome);
	j->failures = ok ? 0 : j->failures + 1;
	if (ok)
		c->done++;
	else
		c->failed++;
	if (b == NULL) {
		job_stored(-1, "no memory for a batch", j);
		return;
	}
	for (size_t i = 0; i < n && i < MAX_VALUES; i++) {
		double v = (double)vals[i].value * pow(10, vals[i].scaler);
		store_add_register(b, j->meter, obis_format(&vals[i].obis, name), now,
		                   vals[i].value, vals[i].scaler, vals[i].unit, now);
		mr[i] = (struct message_register){.obis = vals[i].obis,
		                                  .captured_at = now * 1000,
		                                  .value = v,
		                                  .has_raw = true,
		                                  .raw = vals[i].value,
		                                  .scaler = (int8_t)vals[i].scaler,
		                                  .unit = profile_unit_name((uint8_t)vals[i].unit)};
	}
	enum store_reach reach = ok ? STORE_REACH_REACHABLE
	                         : j->failures >= SCHEDULER_UNREACHABLE_AFTER
	                             ? STORE_REACH_UNREACHABLE
	                             : STORE_REACH_KEEP;
	store_add_meter_state(b, j->meter, ok ? now : STORE_NULL, reach, ok ? NULL : error,
	                      j->failures);
	if (cfg->mqtt.enabled && n > 0) {
		struct message msg;
		memset(&msg, 0, sizeof(msg));
		if (message_registers(cfg, j->serial, now * 1000, mr,
		                      n < MAX_VALUES ? n : MAX_VALUES, &msg) == 0) {
			store_add_outbox(b, msg.topic, msg.payload, msg.len, msg.qos, msg.retain);
			message_clear(&msg);
		}
	}
	struct store_session ss = {
	    .meter = j->meter,
	    .instance = instance(c),
	    .transport = j->g->modbus ? "modbus" : "mbus",
	    .started_at = j->started_at,
	    .finished_at = now,
	    .outcome = outcome,
	    .bytes_in = bytes_in,
	    .bytes_out = bytes_out,
	    .duration_ms = (int32_t)((t1.tv_sec - j->t0.tv_sec) * 1000 +
	                             (t1.tv_nsec - j->t0.tv_nsec) / 1000000),
	    .error = ok ? NULL : error,
	};
	store_add_session(b, &ss);
	if (ok)
		log_meter(LOG_DEBUG, j->serial, "%s readout ok: %zu registers", ss.transport, n);
	else
		log_meter(LOG_INFO, j->serial, "%s readout %s: %s", ss.transport, outcome, error);
	store_submit(c->d->store, b, job_stored, j);
}

static const char *
outcome_of(int status)
{
	switch (status) {
	case 0:
		return "ok";
	case METER_ETIMEOUT:
	case METER_ENOTFOUND:
		return "timeout";
	case METER_EABORTED:
		return "refused";
	default:
		return "protocol";
	}
}

static void
mbus_read_done(int status, const uint8_t *frames, size_t len, size_t nt, void *arg)
{
	struct job *j = arg;
	struct mbus_collect_value vals[MAX_VALUES];
	size_t n = 0;
	char err[400] = "";
	(void)nt;

	gw_queued_sub(j->g);
	if (status != 0 && status != METER_EAPPERR) {
		snprintf(err, sizeof(err), "%s at %s", meter_strerror(status), j->g->name);
		job_submit(j, outcome_of(status), err, NULL, 0, (int64_t)len, 10);
		return;
	}
	mbus_collect_map_frames(j->type, frames, len, vals, MAX_VALUES, &n, NULL, err, sizeof(err));
	if (n == 0 && err[0] == '\0')
		snprintf(err, sizeof(err), "no known records");
	/* what was decoded is kept even when a later record was bad */
	job_submit(j,
	           n > 0 && err[0] == '\0' ? "ok"
	           : n > 0                 ? "partial"
	                                   : "protocol",
	           err, vals, n, (int64_t)len, 10 + 5 * (int64_t)nt);
}

static void
modbus_read_done(int status, const struct modbus_reading *rd, size_t nr, void *arg)
{
	struct job *j = arg;
	struct mbus_collect_value vals[MAX_VALUES];
	size_t n = 0;
	char err[400] = "";

	gw_queued_sub(j->g);
	if (status != 0) {
		snprintf(err, sizeof(err), "%s at %s", meter_strerror(status), j->g->name);
		job_submit(j, outcome_of(status), err, NULL, 0, 0, 12);
		return;
	}
	for (size_t i = 0; i < nr && n < MAX_VALUES; i++)
		if (mbus_collect_map_modbus(&rd[i].entry->obis, rd[i].value, rd[i].entry->unit,
		                            &vals[n]) == 0)
			n++;
	job_submit(j, n > 0 ? "ok" : "protocol", n > 0 ? NULL : "no readings", vals, n,
	           9 + 2 * (int64_t)nr, 12);
}

/* The driver for g as row m describes it; 0 or -1. */
static int
gw_open(struct collector *c, struct gw *g, const struct scheduler_gateway_meter *m)
{
	const struct config *cfg = c->d->cfg;

	g->modbus = strcmp(m->gw_kind, "modbus") == 0;
	g->baud = m->gw_baud;
	g->want = m->gw_concurrency;
	snprintf(g->host, sizeof(g->host), "%s", m->gw_host);
	g->port = m->gw_port;
	snprintf(g->name, sizeof(g->name), "%s:%u", m->gw_host, m->gw_port);
	snprintf(g->label, sizeof(g->label), "%s",
	         m->gw_name != NULL && m->gw_name[0] != '\0' ? m->gw_name : g->name);
	memset(&g->seen_mb, 0, sizeof(g->seen_mb));
	memset(&g->seen_mo, 0, sizeof(g->seen_mo));
	if (g->modbus) {
		if (!c->have_map) {
			log_warnx("gateway %s: no Modbus register map loaded", g->name);
			return -1;
		}
		g->concurrency = m->gw_concurrency < 1 ? 1 : m->gw_concurrency;
		struct modbus_gw_params p = {
		    .host = m->gw_host,
		    .port = m->gw_port,
		    .connect_timeout_ms = cfg->modbus.connect_timeout_ms,
		    .response_timeout_ms = cfg->modbus.response_timeout_ms,
		    .retries = cfg->modbus.retries,
		    .concurrency = g->concurrency,
		    .map = &c->map,
		};
		g->mgw = modbus_gw_new(c->d->base, &p);
		if (g->mgw == NULL)
			return -1;
		log_info("gateway %s (modbus, %d connections at most) opened", g->label,
		         g->concurrency);
		return 0;
	}
	/* one bus, one master, one request on the wire */
	g->concurrency = 1;
	if (m->gw_concurrency > 1 && !g->warned) {
		log_warnx("gateway %s: concurrency %d not used: an M-Bus bus reads one meter "
		          "at a time",
		          g->label, m->gw_concurrency);
		g->warned = true;
	}
	/* the bus's own timeouts follow its baud rate; the configured
	 * response timeout is the gateway's latency on top */
	struct mbus_bus_params p = {
	    .host = m->gw_host,
	    .port = m->gw_port,
	    .baud = m->gw_baud > 0 ? m->gw_baud : 2400,
	    .latency_ms = cfg->mbus.response_timeout_ms,
	    .connect_timeout_ms = cfg->mbus.connect_timeout_ms,
	    .retries = cfg->mbus.retries,
	};
	g->bus = mbus_bus_new(c->d->base, &p);
	if (g->bus == NULL)
		return -1;
	log_info("gateway %s (mbus, %d Bd) opened", g->label, p.baud);
	return 0;
}

static void
gw_close(struct gw *g)
{
	gw_stats_flush(g);
	mbus_bus_free(g->bus);
	modbus_gw_free(g->mgw);
	g->bus = NULL;
	g->mgw = NULL;
}

static bool
gw_changed(const struct gw *g, const struct scheduler_gateway_meter *m)
{
	return g->modbus != (strcmp(m->gw_kind, "modbus") == 0) || g->baud != m->gw_baud ||
	       g->want != m->gw_concurrency || g->port != m->gw_port ||
	       strcmp(g->host, m->gw_host) != 0;
}

static struct gw *
gw_get(struct collector *c, const struct scheduler_gateway_meter *m)
{
	struct gw *g;

	for (g = c->gws; g != NULL; g = g->next)
		if (g->id == m->gateway_id)
			break;
	if (g != NULL) {
		/* a changed row takes effect once the old driver is idle */
		bool open = g->bus != NULL || g->mgw != NULL;
		if (g->queued > 0 || (open && !gw_changed(g, m)))
			return g;
		if (open)
			log_info("gateway %s changed: opened again", g->label);
		gw_close(g);
		return gw_open(c, g, m) == 0 ? g : NULL;
	}
	g = calloc(1, sizeof(*g));
	if (g == NULL)
		return NULL;
	g->c = c;
	g->id = m->gateway_id;
	if (gw_open(c, g, m) != 0) {
		free(g);
		return NULL;
	}
	g->next = c->gws;
	c->gws = g;
	return g;
}

static bool
take(struct scheduler *sc, const struct scheduler_gateway_meter *m)
{
	struct collector *c = collector;
	struct gw *g;
	struct job *j;
	int rc;

	if (c == NULL || c->draining)
		return false;
	if ((g = gw_get(c, m)) == NULL || (g->bus == NULL && g->mgw == NULL))
		return false;
	if ((j = calloc(1, sizeof(*j))) == NULL)
		return false;
	j->c = c;
	j->g = g;
	j->sc = sc;
	j->meter = m->id;
	snprintf(j->serial, sizeof(j->serial), "%s", m->serial);
	snprintf(j->type, sizeof(j->type), "%s", m->type ? m->type : "other");
	j->failures = m->failures;
	j->started_at = wall_now();
	clock_gettime(CLOCK_MONOTONIC, &j->t0);
	if (g->modbus) {
		if (m->primary_addr < 1 || m->primary_addr > 247) {
			log_meter(LOG_WARNING, m->serial,
			          "modbus meter without a unit id: not read");
			free(j);
			return false;
		}
		rc = modbus_gw_read(g->mgw, (uint8_t)m->primary_addr, modbus_read_done, j);
	} else {
		struct mbus_addr a;
		memset(&a, 0, sizeof(a));
		if (m->secondary_addr != NULL && m->secondary_addr[0] != '\0' &&
		    mbus_secondary_parse(m->secondary_addr, &a.sec) == 0) {
			a.secondary = true;
		} else if (m->primary_addr >= 0 && m->primary_addr <= MBUS_ADDR_LAST) {
			a.primary = (uint8_t)m->primary_addr;
		} else {
			log_meter(LOG_WARNING, m->serial,
			          "mbus meter without an address: not read");
			free(j);
			return false;
		}
		/* primary addressing when both are known: shorter on the bus */
		if (a.secondary && m->primary_addr >= 1 && m->primary_addr <= MBUS_ADDR_LAST) {
			a.secondary = false;
			a.primary = (uint8_t)m->primary_addr;
		}
		rc = mbus_bus_read(g->bus, &a, mbus_read_done, j);
	}
	if (rc != 0) {
		free(j);
		return false;
	}
	gw_queued_add(g);
	c->active++;
	return true;
}

/* ---- module ---------------------------------------------------------------------- */

static int
load_map(struct collector *c)
{
	char err[400];
	const char *used;
	int rc = mbus_collect_map_load(NULL, &c->map, c->map_e, MAP_MAX, &used, err, sizeof(err));

	if (rc == METER_ENOTFOUND) {
		log_info("no modbus register map found: Modbus gateways are not read");
		return 0;
	}
	if (rc != 0) {
		log_warnx("modbus map %s", err);
		return -1;
	}
	c->have_map = true;
	log_info("modbus register map %s: %zu readings", used, c->map.n);
	return 0;
}

static void
gw_collect(struct metrics *reg, void *arg)
{
	(void)reg;
	(void)arg;
	/* the registry outlives the module: the module may be gone */
	if (collector == NULL)
		return;
	for (struct gw *g = collector->gws; g != NULL; g = g->next)
		gw_stats_flush(g);
}

static void
gw_metrics_register(struct collector *c, struct metrics *reg)
{
	static bool collecting;
	const char *gk = "gateway,kind";

	if (reg == NULL)
		return;
	c->m = (struct gw_metrics){
	    .requests = metrics_counter(reg, "ammd_gateway_requests_total",
	                                "Requests sent to a gateway: M-Bus frames, Modbus "
	                                "register reads; retries included.",
	                                gk),
	    .retries =
	        metrics_counter(reg, "ammd_gateway_retries_total",
	                        "M-Bus requests sent again; Modbus readouts tried again.", gk),
	    .timeouts = metrics_counter(reg, "ammd_gateway_timeouts_total",
	                                "Requests without an answer (Modbus: also exceptions "
	                                "10 and 11, the target did not answer).",
	                                gk),
	    .garbled = metrics_counter(reg, "ammd_gateway_garbled_total",
	                               "Answers that did not parse: M-Bus collisions, checksum "
	                               "errors and noise; malformed Modbus answers.",
	                               gk),
	    .exceptions = metrics_counter(reg, "ammd_gateway_exceptions_total",
	                                  "Modbus exception answers other than 10 and 11.", gk),
	    .connects = metrics_counter(reg, "ammd_gateway_connects_total",
	                                "TCP connections established to a gateway.", gk),
	    .bytes = metrics_counter(reg, "ammd_gateway_bytes_total",
	                             "Bytes exchanged with a gateway (Modbus: as framed).",
	                             "gateway,kind,direction"),
	    .readouts = metrics_counter(reg, "ammd_gateway_readouts_total",
	                                "Meters read through a gateway, by outcome.",
	                                "gateway,kind,outcome"),
	    .busy = metrics_counter(reg, "ammd_gateway_busy_seconds_total",
	                            "Time a gateway had readouts queued or under way.", gk),
	    .queue = metrics_gauge(reg, "ammd_gateway_queue",
	                           "Readouts queued or under way at a gateway.", gk),
	    .concurrency = metrics_gauge(reg, "ammd_gateway_concurrency",
	                                 "Readouts a gateway works on at once.", gk),
	};
	if (!collecting)
		metrics_collector_add(reg, gw_collect, NULL);
	collecting = true;
}

static int
gw_start(struct ammd *d)
{
	struct collector *c = calloc(1, sizeof(*c));
	if (c == NULL)
		return -1;
	c->d = d;
	if (load_map(c) != 0) {
		free(c);
		return -1;
	}
	gw_metrics_register(c, d->metrics);
	collector = c;
	scheduler_gateway_hook = take;
	return 0;
}

/* A readout dropped from its gateway's queue at shutdown: no batch, no
 * session row; the meter's lease is given back when the scheduler stops. */
static void
job_dropped(void *arg)
{
	struct job *j = arg;

	gw_queued_sub(j->g);
	j->c->active--;
	free(j);
}

/*
 * Shutting down: the readouts on the wire finish and are stored; those
 * still queued are dropped, so that a slow bus with a long queue does not
 * hold the daemon up until shutdown_timeout (the next start reads them).
 */
static void
gw_drain(struct ammd *d)
{
	struct collector *c = collector;
	size_t dropped = 0;
	(void)d;

	if (c == NULL)
		return;
	c->draining = true;
	for (struct gw *g = c->gws; g != NULL; g = g->next) {
		if (g->bus != NULL)
			dropped += mbus_bus_drop_queued(g->bus, job_dropped);
		if (g->mgw != NULL)
			dropped += modbus_gw_drop_queued(g->mgw, job_dropped);
	}
	log_info("gateways: draining: %zu readouts to finish, %zu queued left for the next start",
	         c->active, dropped);
}

static bool
gw_drained(struct ammd *d)
{
	(void)d;
	return collector == NULL || collector->active == 0;
}

static void
gw_stop(struct ammd *d)
{
	struct collector *c = collector;
	(void)d;

	scheduler_gateway_hook = NULL;
	if (c == NULL)
		return;
	while (c->gws != NULL) {
		struct gw *g = c->gws;
		c->gws = g->next;
		gw_close(g);
		free(g);
	}
	log_info("gateways: %" PRIu64 " readouts stored, %" PRIu64 " failed", c->done, c->failed);
	collector = NULL;
	free(c);
}

const struct ammd_module gateway_module = {
    .name = "gateways",
    .start = gw_start,
    .drain = gw_drain,
    .drained = gw_drained,
    .stop = gw_stop,
};
