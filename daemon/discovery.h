/*
 * discovery.h: what ammd learns about a meter on first contact, and
 * again when an operator runs `ammctl meter discover SERIAL`: the
 * association's object list (class 15, attribute 2) and the capture
 * objects of the load profile with each column's scaler_unit.  They are
 * stored in meter_object and meter_profile_layout, and every later
 * session reads the profile with the stored layout instead of assuming
 * the IDIS default (Kamstrup publishes no complete object list).
 *
 * The session does the reading; this file interprets the values and turns
 * them into the text parameters of two SQL statements the scheduler runs,
 * and back from the stored layout.  No I/O here.
 *
 * Text forms (';' between rows, ',' between fields; OBIS as A-B:C.D.E.F):
 *   objects: "obis,class_id,version"
 *   layout:  "profile_obis,col,class_id,obis,attr,data_index,scaler,unit"
 */
#ifndef AMM_DISCOVERY_H
#define AMM_DISCOVERY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "obis.h"
#include "profile.h"

struct discovery_object {
	uint16_t class_id;
	uint8_t version;
	struct obis obis;
};

/*
 * Decode a tagged object_list (array of structure{long-unsigned class_id,
 * unsigned version, octet-string(6) logical_name, access_rights}) into
 * out[0..cap); *n gets the count, objects beyond cap are counted in *total
 * but not kept.  Returns 0, METER_EMALFORMED (other shape) or
 * METER_ENEEDMORE (truncated).
 */
int discovery_object_list(const uint8_t *data, size_t len, struct discovery_object *out, size_t cap,
                          size_t *n, size_t *total);

/* Is obis (of class_id, 0: any) in the list? */
bool discovery_has(const struct discovery_object *o, size_t n, const struct obis *obis,
                   uint16_t class_id);

/* The text forms above; malloc'd (caller frees), NULL when out of memory. */
char *discovery_objects_text(const struct discovery_object *o, size_t n);
char *discovery_layout_text(const struct obis *profile, const struct profile_column *cols,
                            size_t n);

/*
 * Parse a layout text, keeping the rows of `profile` in column order.
 * Returns the number of columns (0: none stored), or METER_EMALFORMED /
 * METER_ENOSPC (more than cap columns).
 */
int discovery_layout_parse(const char *text, const struct obis *profile,
                           struct profile_column *cols, size_t cap);

/*
 * Statements that replace a meter's stored discovery: $1 meter id, $2 the
 * text.  The objects statement also clears the meter's "discover" request.
 */
extern const char discovery_save_objects_sql[];
extern const char discovery_save_layout_sql[];

#endif
