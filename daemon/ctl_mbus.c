/*
 * ctl_mbus.c: `ammctl mbus scan|read` for field engineers at an M-Bus
 * gateway.  Both run the daemon's own bus driver (drivers/mbus) on a
 * private event loop until it is done:
 *
 *   ammctl mbus scan HOST:PORT [--baud B] [--mask HEX] [--json]
 *	(all: [--latency MS] the gateway's delay, default 100; [--reply-ms MS]
 *	the slaves' reply time beyond 330 bit times, default 50; [--retries N]
 *	per request, default 5)
 *	secondary-address search; one line per slave found (secondary
 *	address, id, manufacturer, version, medium) and the probe count,
 *	or a JSON document with the same
 *   ammctl mbus read HOST:PORT ADDR|SECONDARY [--baud B]
 *	one readout (SND_NKE + REQ_UD2, or selection + REQ_UD2 + deselect),
 *	all its telegrams decoded to JSON as `ammctl decode mbus` does
 *
 * Exit codes: 0 done, 1 the gateway or the slave failed, 2 usage.
 *
 * The same readout serves `ammctl read --mbus|--modbus` (ctl_read.c):
 * ctl_gw_read() runs one M-Bus readout (the one `mbus read` runs) or one
 * Modbus readout through drivers/mbus/modbus_gw.c and maps what comes back
 * to OBIS readings with the daemon's own mapping (mbus_collect.h), so the
 * engineer sees what ammd would store.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "ctl.h"
#include "json.h"
#include "mbus.h"
#include "mbus/mbus_bus.h"
#include "mbus/modbus_gw.h"
#include "mbus_collect.h"
#include "modbus_map.h"

#define MAP_MAX 64

struct found {
	struct mbus_header h;
	int status;
};

struct scan_ctx {
	struct event_base *base;
	struct found *f;
	size_t n, cap;
	int status;
	struct mbus_scan scan; /* copy at the end */
	bool over;
};

int
ctl_parse_hostport(const char *s, char *host, size_t hostlen, uint16_t *port)
{
	const char *c = strrchr(s, ':');
	char *end;
	long p;

	if (c == NULL || c == s)
		return -1;
	p = strtol(c + 1, &end, 10);
	if (*end || p < 1 || p > 65535)
		return -1;
	size_t hl = (size_t)(c - s);
	if (s[0] == '[' && c[-1] == ']') {
		s++;
		hl -= 2;
	}
	if (hl >= hostlen)
		return -1;
	memcpy(host, s, hl);
	host[hl] = '\0';
	*port = (uint16_t)p;
	return 0;
}

static void
scan_found(int status, const struct mbus_header *h, void *arg)
{
	struct scan_ctx *c = arg;

	if (c->n == c->cap) {
		size_t nc = c->cap ? 2 * c->cap : 64;
		void *p = realloc(c->f, nc * sizeof(*c->f));
		if (p == NULL)
			return;
		c->f = p;
		c->cap = nc;
	}
	c->f[c->n].h = *h;
	c->f[c->n].status = status;
	c->n++;
}

static void
scan_done(int status, const struct mbus_scan *s, void *arg)
{
	struct scan_ctx *c = arg;

	c->status = status;
	c->scan = *s;
	c->over = true;
	event_base_loopbreak(c->base);
}

static int
cmp_found(const void *a, const void *b)
{
	const struct found *x = a, *y = b;
	return x->h.id < y->h.id ? -1 : x->h.id > y->h.id;
}

static void
usage(void)
{
	fprintf(stderr, "usage: ammctl mbus scan HOST:PORT [--baud B] [--mask HEX] [--json]\n"
	                "       ammctl mbus read HOST:PORT ADDR|SECONDARY [--baud B]\n"
	                "       (both: [--latency MS] [--reply-ms MS] [--retries N])\n");
}

static int
mbus_scan_cmd(struct mbus_bus *bus, struct event_base *base, const struct mbus_secondary *mask,
              bool json_out)
{
	struct scan_ctx c = {.base = base};
	struct mbus_scan_run *r = mbus_scan_start(bus, mask, scan_found, scan_done, &c);
	const struct mbus_bus_stats *st = mbus_bus_stats(bus);
	char sec[17], man[4];

	if (r == NULL) {
		fprintf(stderr, "ammctl mbus scan: out of memory\n");
		return 1;
	}
	while (!c.over)
		if (event_base_loop(base, EVLOOP_ONCE) < 0)
			break;
	mbus_scan_run_free(r);
	qsort(c.f, c.n, sizeof(*c.f), cmp_found);
	size_t ok = 0;
	for (size_t i = 0; i < c.n; i++)
		ok += c.f[i].status == 0 || c.f[i].status == METER_EAPPERR;
	if (json_out) {
		struct json j;
		json_init(&j, stdout, true);
		json_obj_begin(&j, NULL);
		json_str(&j, "status", c.status == 0 ? "ok" : meter_strerror(c.status));
		json_uint(&j, "probes", c.scan.probes);
		json_uint(&j, "requests", st->requests);
		json_uint(&j, "collisions", st->garbled);
		json_uint(&j, "unresolved", c.scan.unresolved);
		json_uint(&j, "repeated", c.scan.repeated);
		json_uint(&j, "unexplained", c.scan.unexplained);
		json_uint(&j, "late", st->late);
		json_uint(&j, "stray", st->stray);
		json_uint(&j, "slack_ms", st->slack_ms);
		json_uint(&j, "found", ok);
		json_arr_begin(&j, "meters");
		for (size_t i = 0; i < c.n; i++) {
			struct mbus_secondary s;
			mbus_secondary_from_header(&c.f[i].h, &s);
			mbus_secondary_format(&s, sec);
			mbus_manufacturer(c.f[i].h.manufacturer, man);
			json_obj_begin(&j, NULL);
			if (c.f[i].status != 0 && c.f[i].status != METER_EAPPERR) {
				json_str(&j, "error", meter_strerror(c.f[i].status));
			} else {
				json_str(&j, "secondary", sec);
				json_uint(&j, "id", c.f[i].h.id);
				json_str(&j, "manufacturer", man);
				json_uint(&j, "version", c.f[i].h.version);
				json_str(&j, "medium", mbus_medium_name(c.f[i].h.medium));
			}
			json_obj_end(&j);
		}
		json_arr_end(&j);
		json_obj_end(&j);
		json_end(&j);
	} else {
		for (size_t i = 0; i < c.n; i++) {
			if (c.f[i].status != 0 && c.f[i].status != METER_EAPPERR) {
				printf("error %s\n", meter_strerror(c.f[i].status));
				continue;
			}
			struct mbus_secondary s;
			mbus_secondary_from_header(&c.f[i].h, &s);
			mbus_secondary_format(&s, sec);
			mbus_manufacturer(c.f[i].h.manufacturer, man);
			printf("%s id=%08u man=%s version=%u medium=%s\n", sec, c.f[i].h.id, man,
			       c.f[i].h.version, mbus_medium_name(c.f[i].h.medium));
		}
		printf("found %zu meters with %llu probes (%llu requests, %llu collisions, "
		       "%llu unresolved)%s%s\n",
		       ok, (unsigned long long)c.scan.probes, (unsigned long long)st->requests,
		       (unsigned long long)st->garbled, (unsigned long long)c.scan.unresolved,
		       c.status ? ": " : "", c.status ? meter_strerror(c.status) : "");
	}
	free(c.f);
	return c.status == 0 ? 0 : 1;
}

/* ---- one readout of one slave ------------------------------------------- */

struct readout {
	struct event_base *base;
	bool over;
	int status;
	uint8_t *frames; /* malloc'd copy */
	size_t len, nt;
};

static void
readout_done(int status, const uint8_t *frames, size_t len, size_t nt, void *arg)
{
	struct readout *r = arg;

	r->status = status;
	r->over = true;
	r->nt = nt;
	if (len > 0 && (r->frames = malloc(len)) != NULL) {
		memcpy(r->frames, frames, len);
		r->len = len;
	}
	event_base_loopbreak(r->base);
}

/* "N" (0..250) or a secondary address; 0 or -1. */
static int
parse_addr(const char *target, struct mbus_addr *a)
{
	char *end;
	long prim = strtol(target, &end, 10);

	memset(a, 0, sizeof(*a));
	if (*end == '\0' && end != target && prim >= 0 && prim <= MBUS_ADDR_LAST &&
	    strlen(target) < 4) {
		a->primary = (uint8_t)prim;
		return 0;
	}
	if (mbus_secondary_parse(target, &a->sec) == 0) {
		a->secondary = true;
		return 0;
	}
	return -1;
}

/*
 * One readout (SND_NKE or selection, REQ_UD2 until the last telegram) on a
 * bus of its own, run to its end.  r->status is the readout's (0 or a
 * METER_* as mbus_read_fn has it); r->frames the caller frees.  -1 when
 * out of memory.
 */
static int
mbus_readout(const struct mbus_bus_params *p, const struct mbus_addr *a, struct readout *r)
{
	struct mbus_bus *bus = NULL;
	int rc = -1;

	memset(r, 0, sizeof(*r));
	if ((r->base = event_base_new()) == NULL || (bus = mbus_bus_new(r->base, p)) == NULL ||
	    mbus_bus_read(bus, a, readout_done, r) != 0)
		goto out;
	while (!r->over)
		if (event_base_loop(r->base, EVLOOP_ONCE) < 0)
			goto out;
	rc = 0;
out:
	if (bus)
		mbus_bus_free(bus);
	if (r->base)
		event_base_free(r->base);
	r->base = NULL;
	return rc;
}

static int
mbus_read_cmd(const struct mbus_bus_params *p, const char *target)
{
	struct readout r;
	struct mbus_addr a;
	int rc = 1;

	if (parse_addr(target, &a) != 0) {
		fprintf(stderr,
		        "ammctl mbus read: '%s' is neither a primary address (0..250) nor a "
		        "secondary one (8 or 16 hex digits)\n",
		        target);
		return 2;
	}
	if (mbus_readout(p, &a, &r) != 0) {
		fprintf(stderr, "ammctl mbus read: out of memory\n");
		return 1;
	}
	char *hex = r.len ? malloc(2 * r.len + 1) : NULL;
	if (hex != NULL) {
		for (size_t i = 0; i < r.len; i++)
			snprintf(hex + 2 * i, 3, "%02x", r.frames[i]);
		char *argv[1] = {hex};
		rc = ctl_decode_mbus(1, argv);
	}
	if (r.status != 0) {
		fprintf(stderr, "ammctl mbus read %s: %s\n", target, meter_strerror(r.status));
		rc = 1;
	}
	free(hex);
	free(r.frames);
	return rc;
}

/* ---- `ammctl read --mbus|--modbus` --------------------------------------- */

/*
 * The records of a readout's telegrams that ammd stores, mapped as ammd
 * maps them (mbus_collect_map_frames).  The slave's header (of its first
 * telegram) goes to *m.  Returns 0, or -1 with a message when no record
 * could be mapped.
 */
static int
mbus_values(const struct readout *r, struct mbus_collect_value *vals, size_t cap, size_t *n,
            struct ctl_gw_meter *m)
{
	struct mbus_header h;
	char err[160];

	mbus_collect_map_frames("other", r->frames, r->len, vals, cap, n, &h, err, sizeof(err));
	if (h.has_id) {
		struct mbus_secondary sec;
		m->have = true;
		snprintf(m->id, sizeof(m->id), "%08u", h.id % 100000000u);
		mbus_secondary_from_header(&h, &sec);
		mbus_secondary_format(&sec, m->secondary);
		mbus_manufacturer(h.manufacturer, m->manufacturer);
		m->medium = mbus_medium_name(h.medium);
	}
	if (*n > 0)
		return 0;
	fprintf(stderr, "ammctl read: %s\n", err[0] ? err : "no records ammd knows");
	return -1;
}

/* The map file as ammd finds it (mbus_collect_map_load), unless one is named. */
static int
modbus_map_load(const char *path, struct modbus_map *map, struct modbus_map_entry *e)
{
	char err[400];
	int rc = mbus_collect_map_load(path, map, e, MAP_MAX, NULL, err, sizeof(err));

	if (rc == METER_ENOTFOUND)
		fprintf(stderr, "ammctl read: no Modbus register map found: give --map FILE\n");
	else if (rc != 0)
		fprintf(stderr, "ammctl read: %s\n", err);
	return rc != 0 ? -1 : 0;
}

struct modbus_readout {
	struct event_base *base;
	bool over;
	int status;
	struct mbus_collect_value *vals;
	size_t cap, n;
};

static void
modbus_done(int status, const struct modbus_reading *rd, size_t nr, void *arg)
{
	struct modbus_readout *r = arg;

	r->status = status;
	r->over = true;
	/* the readings live only during this call */
	for (size_t i = 0; status == 0 && i < nr && r->n < r->cap; i++)
		if (mbus_collect_map_modbus(&rd[i].entry->obis, rd[i].value, rd[i].entry->unit,
		                            &r->vals[r->n]) == 0)
			r->n++;
	event_base_loopbreak(r->base);
}

int
ctl_gw_read(const struct ctl_gw_req *q, struct mbus_collect_value *vals, size_t cap, size_t *n,
            struct ctl_gw_meter *m)
{
	char where[300];

	memset(m, 0, sizeof(*m));
	*n = 0;
	snprintf(where, sizeof(where), "%s:%u", q->host, q->port);
	if (!q->modbus) {
		/* a field engineer waits rather than miss a meter: more
		 * retries than the daemon's default, as `mbus read` */
		struct mbus_bus_params p = {.host = q->host,
		                            .port = q->port,
		                            .baud = q->baud > 0 ? q->baud : 2400,
		                            .latency_ms = -1,
		                            .connect_timeout_ms = (int)q->timeout_ms,
		                            .retries = 5};
		struct mbus_addr a;
		struct readout r;
		if (parse_addr(q->addr, &a) != 0) {
			fprintf(stderr, "ammctl read: '%s' is not an M-Bus address\n", q->addr);
			return 1;
		}
		if (mbus_readout(&p, &a, &r) != 0) {
			fprintf(stderr, "ammctl read: out of memory\n");
			return 1;
		}
		int rc = 0;
		if (r.status != 0 && r.status != METER_EAPPERR) {
			fprintf(stderr, "ammctl read: M-Bus %s at %s: %s\n", q->addr, where,
			        meter_strerror(r.status));
			rc = 1;
		} else if (mbus_values(&r, vals, cap, n, m) != 0)
			rc = 1;
		free(r.frames);
		return rc;
	}

	struct modbus_map map;
	struct modbus_map_entry e[MAP_MAX];
	char *end;
	long unit = strtol(q->addr, &end, 10);
	if (*end != '\0' || end == q->addr || unit < 1 || unit > 247) {
		fprintf(stderr, "ammctl read: Modbus unit id 1..247, not '%s'\n", q->addr);
		return 1;
	}
	if (modbus_map_load(q->map, &map, e) != 0)
		return 1;
	struct modbus_gw_params p = {.host = q->host,
	                             .port = q->port,
	                             .connect_timeout_ms = (int)q->timeout_ms,
	                             .response_timeout_ms = 0,
	                             .retries = 2,
	                             .map = &map};
	struct modbus_readout r = {.vals = vals, .cap = cap};
	struct modbus_gw *g = NULL;
	int rc = 1;
	if ((r.base = event_base_new()) == NULL || (g = modbus_gw_new(r.base, &p)) == NULL ||
	    modbus_gw_read(g, (uint8_t)unit, modbus_done, &r) != 0) {
		fprintf(stderr, "ammctl read: out of memory\n");
		goto out;
	}
	while (!r.over)
		if (event_base_loop(r.base, EVLOOP_ONCE) < 0)
			goto out;
	if (r.status != 0)
		fprintf(stderr, "ammctl read: Modbus unit %ld at %s: %s\n", unit, where,
		        meter_strerror(r.status));
	else if (r.n == 0)
		fprintf(stderr, "ammctl read: Modbus unit %ld at %s: no readings\n", unit, where);
	else
		rc = 0;
	*n = r.n;
out:
	if (g)
		modbus_gw_free(g);
	if (r.base)
		event_base_free(r.base);
	return rc;
}

int
ctl_mbus(int argc, char **argv)
{
	/* a field engineer waits rather than miss a meter: more retries
	 * than the daemon's default */
	struct mbus_bus_params p = {.latency_ms = -1, .retries = 5};
	struct mbus_secondary mask;
	bool have_mask = false, json_out = false;
	const char *pos[3];
	int npos = 0, rc;
	char host[256];

	p.baud = 2400;
	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--baud") == 0 && i + 1 < argc) {
			p.baud = atoi(argv[++i]);
			if (p.baud < 300 || p.baud > 38400) {
				fprintf(stderr, "ammctl mbus: baud rate 300..38400\n");
				return 2;
			}
		} else if (strcmp(argv[i], "--latency") == 0 && i + 1 < argc) {
			p.latency_ms = atoi(argv[++i]);
		} else if (strcmp(argv[i], "--retries") == 0 && i + 1 < argc) {
			p.retries = atoi(argv[++i]);
		} else if (strcmp(argv[i], "--reply-ms") == 0 && i + 1 < argc) {
			p.reply_ms = atoi(argv[++i]);
		} else if (strcmp(argv[i], "--mask") == 0 && i + 1 < argc) {
			if (mbus_secondary_parse(argv[++i], &mask) != 0) {
				fprintf(stderr, "ammctl mbus: --mask takes 8 or 16 hex digits, F a "
				                "wildcard\n");
				return 2;
			}
			have_mask = true;
		} else if (strcmp(argv[i], "--json") == 0) {
			json_out = true;
		} else if (argv[i][0] == '-' && argv[i][1] != '\0') {
			usage();
			return 2;
		} else if (npos < 3) {
			pos[npos++] = argv[i];
		} else {
			usage();
			return 2;
		}
	}
	if (npos < 2 || (strcmp(pos[0], "scan") == 0 && npos != 2) ||
	    (strcmp(pos[0], "read") == 0 && npos != 3) ||
	    (strcmp(pos[0], "scan") != 0 && strcmp(pos[0], "read") != 0)) {
		usage();
		return 2;
	}
	if (ctl_parse_hostport(pos[1], host, sizeof(host), &p.port) != 0) {
		fprintf(stderr, "ammctl mbus: '%s' is not HOST:PORT\n", pos[1]);
		return 2;
	}
	p.host = host;
	if (strcmp(pos[0], "read") == 0)
		return mbus_read_cmd(&p, pos[2]);
	struct event_base *base = event_base_new();
	struct mbus_bus *bus = base ? mbus_bus_new(base, &p) : NULL;
	if (bus == NULL) {
		fprintf(stderr, "ammctl mbus: out of memory\n");
		if (base)
			event_base_free(base);
		return 1;
	}
	rc = mbus_scan_cmd(bus, base, have_mask ? &mask : NULL, json_out);
	mbus_bus_free(bus);
	event_base_free(base);
	return rc;
}
