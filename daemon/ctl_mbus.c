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
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "ctl.h"
#include "json.h"
#include "mbus.h"
#include "mbus/mbus_bus.h"

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

static int
parse_hostport(const char *s, char *host, size_t hostlen, uint16_t *port)
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

struct read_ctx {
	struct event_base *base;
	bool over;
	int status;
	char *hex;
};

static void
read_done(int status, const uint8_t *frames, size_t len, size_t nt, void *arg)
{
	struct read_ctx *c = arg;
	(void)nt;

	c->status = status;
	c->over = true;
	if (len > 0 && (c->hex = malloc(2 * len + 1)) != NULL)
		for (size_t i = 0; i < len; i++)
			snprintf(c->hex + 2 * i, 3, "%02x", frames[i]);
	event_base_loopbreak(c->base);
}

static int
mbus_read_cmd(struct mbus_bus *bus, struct event_base *base, const char *target)
{
	struct read_ctx c = {.base = base};
	struct mbus_addr a;
	char *end;
	long prim = strtol(target, &end, 10);

	memset(&a, 0, sizeof(a));
	if (*end == '\0' && end != target && prim >= 0 && prim <= 250 && strlen(target) < 4) {
		a.primary = (uint8_t)prim;
	} else if (mbus_secondary_parse(target, &a.sec) == 0) {
		a.secondary = true;
	} else {
		fprintf(stderr,
		        "ammctl mbus read: '%s' is neither a primary address (0..250) nor a "
		        "secondary one (8 or 16 hex digits)\n",
		        target);
		return 2;
	}
	if (mbus_bus_read(bus, &a, read_done, &c) != 0)
		return 1;
	while (!c.over)
		if (event_base_loop(base, EVLOOP_ONCE) < 0)
			break;
	int rc = 1;
	if (c.hex != NULL) {
		char *argv[1] = {c.hex};
		rc = ctl_decode_mbus(1, argv);
	}
	if (c.status != 0) {
		fprintf(stderr, "ammctl mbus read %s: %s\n", target, meter_strerror(c.status));
		rc = 1;
	}
	free(c.hex);
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
	if (parse_hostport(pos[1], host, sizeof(host), &p.port) != 0) {
		fprintf(stderr, "ammctl mbus: '%s' is not HOST:PORT\n", pos[1]);
		return 2;
	}
	p.host = host;
	struct event_base *base = event_base_new();
	struct mbus_bus *bus = base ? mbus_bus_new(base, &p) : NULL;
	if (bus == NULL) {
		fprintf(stderr, "ammctl mbus: out of memory\n");
		if (base)
			event_base_free(base);
		return 1;
	}
	if (strcmp(pos[0], "scan") == 0)
		rc = mbus_scan_cmd(bus, base, have_mask ? &mask : NULL, json_out);
	else
		rc = mbus_read_cmd(bus, base, pos[2]);
	mbus_bus_free(bus);
	event_base_free(base);
	return rc;
}
