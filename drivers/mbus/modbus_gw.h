/*
 * modbus_gw.h: Modbus-TCP gateways (DESIGN §3) through libmodbus.  Each
 * gateway fronts meters by unit id; a meter's readings are holding
 * registers laid out by a register map (meterlib/modbus_map.h), so a
 * readout is one or a few modbus_read_registers() calls covering the map,
 * decoded into readings that already carry their OBIS code.
 *
 * libmodbus blocks, so each gateway runs its calls on worker threads of
 * its own (see modbus_gw.c for why and how results come back); for the
 * caller everything happens on the event loop: modbus_gw_read() queues,
 * the callback runs later from the loop.
 *
 * Concurrency: a gateway has `concurrency` workers (gateway.concurrency),
 * each with its own libmodbus context and so its own TCP connection, all
 * taking readouts from the gateway's one queue in the order they came.
 * A worker connects on its first readout, so at most min(concurrency,
 * readouts waiting) connections are ever open.  One (the default) suits
 * gateways that serve a single master; a gateway that fronts several
 * serial lines, or queues masters itself, may take more.
 */
#ifndef AMM_MODBUS_GW_H
#define AMM_MODBUS_GW_H

#include <stddef.h>
#include <stdint.h>

#include "modbus_map.h"

struct event_base;
struct modbus_gw;

struct modbus_gw_params {
	const char *host;        /* copied; numeric address or name */
	uint16_t port;           /* 0: 502 */
	int connect_timeout_ms;  /* 0: 3000 */
	int response_timeout_ms; /* per request; 0: 1000 */
	int retries;             /* per meter after the first try; < 0: 1 */
	int concurrency;         /* connections (workers) at once, 1..64; 0: 1 */
	/* The register map of this gateway's meters; read-only, shared with
	 * the worker thread: it must outlive the gateway and not change. */
	const struct modbus_map *map;
};

struct modbus_gw_stats {
	uint64_t requests; /* modbus_read_registers() calls */
	uint64_t failures; /* of those that failed: the next four and lost links */
	uint64_t timeouts; /* no answer, or exception 10/11 (target did not answer) */
	uint64_t garbled;  /* answers that did not make sense (bad data, wrong unit) */
	uint64_t exceptions; /* other exception responses, server busy included */
	uint64_t retries; /* readouts tried again (after a failed request) */
	uint64_t reconnects;
	uint64_t connects; /* TCP connections established */
	/* Bytes as Modbus-TCP frames them (libmodbus does not report what it
	 * sent): 12 per request, 9 + 2 per register per answer, 9 per
	 * exception; nothing counted for an answer that never came. */
	uint64_t bytes_in, bytes_out;
	uint64_t readouts, failed;
	unsigned open, peak_open; /* connections open now, at most so far */
};

/*
 * A readout's result: status 0 with n readings (each pointing at its map
 * entry), or METER_ETIMEOUT (no answer, or gateway target failed to
 * respond), METER_EBUSY (server busy), METER_EABORTED (connection lost or
 * refused), METER_EEXCEPTION (another Modbus exception), METER_EPROTO.
 * readings are valid only during the call.
 */
typedef void (*modbus_gw_fn)(int status, const struct modbus_reading *readings, size_t n,
                             void *arg);

/* A gateway whose worker starts at once and connects on its first read.
 * NULL: no memory or no thread. */
struct modbus_gw *modbus_gw_new(struct event_base *base, const struct modbus_gw_params *p);

/* Stops the worker (waits for the call under way, bounded by the
 * response timeout), drops queued reads without their callbacks. */
void modbus_gw_free(struct modbus_gw *g);

/* Queue a readout of unit id unit (1..247); 0, or -1 when out of memory. */
int modbus_gw_read(struct modbus_gw *g, uint8_t unit, modbus_gw_fn cb, void *arg);

/*
 * Drops the readouts no worker has started (those under way finish and
 * call back as usual), for a daemon that is shutting down: their
 * callbacks never run; dropped(arg) is called for each instead, at once,
 * in queue order.  Returns how many were dropped.
 */
size_t modbus_gw_drop_queued(struct modbus_gw *g, void (*dropped)(void *arg));

size_t modbus_gw_pending(const struct modbus_gw *g);
/* A snapshot (the worker updates the counters). */
void modbus_gw_stats(struct modbus_gw *g, struct modbus_gw_stats *out);

#endif
