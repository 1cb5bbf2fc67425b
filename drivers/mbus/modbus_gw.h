/*
 * modbus_gw.h: Modbus-TCP gateways (DESIGN §3) through libmodbus.  Each
 * gateway fronts meters by unit id; a meter's readings are holding
 * registers laid out by a register map (meterlib/modbus_map.h), so a
 * readout is one or a few modbus_read_registers() calls covering the map,
 * decoded into readings that already carry their OBIS code.
 *
 * libmodbus blocks, so each gateway runs its calls on a worker thread of
 * its own (see modbus_gw.c for why and how results come back); for the
 * caller everything happens on the event loop: modbus_gw_read() queues,
 * the callback runs later from the loop.
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
	/* The register map of this gateway's meters; read-only, shared with
	 * the worker thread: it must outlive the gateway and not change. */
	const struct modbus_map *map;
};

struct modbus_gw_stats {
	uint64_t requests; /* modbus_read_registers() calls */
	uint64_t failures; /* of those that failed */
	uint64_t reconnects;
	uint64_t readouts, failed;
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

size_t modbus_gw_pending(const struct modbus_gw *g);
/* A snapshot (the worker updates the counters). */
void modbus_gw_stats(struct modbus_gw *g, struct modbus_gw_stats *out);

#endif
