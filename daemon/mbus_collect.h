/*
 * mbus_collect.h: the daemon's side of gateway meters (issue 6).  Meters
 * behind M-Bus gateways (drivers/mbus/mbus_bus.h) and Modbus-TCP gateways
 * (drivers/mbus/modbus_gw.h) are leased by the scheduler in the same rounds
 * as DLMS meters and handed over through scheduler_gateway_hook; this
 * module keeps one driver object per gateway, queues each meter's readout
 * on its gateway, maps what comes back to OBIS register readings and
 * writes them with a session_log row, the meter state and the MQTT outbox
 * rows in one store batch per meter.
 *
 * Concurrency and fairness: every gateway has its own queue and its own
 * limit (an M-Bus segment carries one transaction at a time; a Modbus
 * gateway is read by gateway.concurrency workers, each on a connection of
 * its own), so a slow bus or a gateway that stopped answering delays only
 * its own meters, never the other gateways or the DLMS sessions.  Gateway
 * meters take no DLMS session slot.  Per-gateway metrics (label gateway =
 * gateway.name) go to the daemon's /metrics.
 *
 * The Modbus register map comes from the file named by the environment
 * variable AMMD_MODBUS_MAP, else AMMD_MAPDIR/kamstrup382.map, else
 * meterlib/maps/kamstrup382.map (the source tree).
 */
#ifndef AMM_MBUS_COLLECT_H
#define AMM_MBUS_COLLECT_H

#include <stdbool.h>
#include <stdint.h>

#include "mbus.h"
#include "modbus_map.h"
#include "obis.h"

extern const struct ammd_module gateway_module;

/* A reading ready for the store: value × 10^scaler in DLMS unit `unit`. */
struct mbus_collect_value {
	struct obis obis;
	int64_t value;
	int scaler;
	int unit;
};

/*
 * The OBIS code of an M-Bus record for a meter type ("382M", "162", ...):
 * energy (Wh) per subunit (0 import A+, 1 export A−) and tariff, power and
 * its maximum, voltage and current per phase (subunits 0..2), operating
 * time.  Storage numbers other than 0 (historic values) and anything else
 * are not mapped.  Returns 0 with *out filled, or METER_ENOTFOUND.
 */
int mbus_collect_map_record(const char *type, const struct mbus_record *r,
                            struct mbus_collect_value *out);

/*
 * A Modbus reading (value in the map entry's unit text) in the store's
 * form: kWh/kvarh/kW to Wh/varh/W, the smallest scaler in 0..-3 that
 * keeps it exact.  Returns 0 or METER_ERANGE.
 */
int mbus_collect_map_modbus(const struct obis *o, double value, const char *unit,
                            struct mbus_collect_value *out);

/*
 * A readout's frames (len bytes, as mbus_bus_read() delivers them) to the
 * values ammd stores: every telegram decoded, its records mapped with
 * mbus_collect_map_record(type, ...); at most cap go to vals, *n says how
 * many.  The header of the first telegram that carries an identification
 * goes to *hdr when hdr is not NULL (hdr->has_id false when none did).
 * Returns 0 when nothing went wrong, else the last problem's code
 * (METER_EAPPERR for an application error telegram, a record decoder's
 * error) with its text in err; values mapped before or after a problem
 * are kept in vals.  This is what ammd stores and what `ammctl read
 * --mbus` shows.
 */
int mbus_collect_map_frames(const char *type, const uint8_t *frames, size_t len,
                            struct mbus_collect_value *vals, size_t cap, size_t *n,
                            struct mbus_header *hdr, char *err, size_t errlen);

/*
 * Load a Modbus register map into map (over e[0..cap)): the file path, or
 * when path is NULL the first readable of $AMMD_MODBUS_MAP,
 * AMMD_MAPDIR/kamstrup382.map and meterlib/maps/kamstrup382.map (the
 * source tree), the order ammd uses.  *used (when not NULL) names the file
 * taken.  Returns 0; METER_ENOTFOUND when path is NULL and none of them
 * is readable; METER_EINVAL when the file cannot be opened or read whole
 * (16 KiB at most); METER_EMALFORMED or METER_ENOSPC when it does not
 * parse or has no entry.  err says why.
 */
int mbus_collect_map_load(const char *path, struct modbus_map *map, struct modbus_map_entry *e,
                          size_t cap, const char **used, char *err, size_t errlen);

#endif
