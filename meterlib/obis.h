/*
 * obis.h: OBIS codes (IEC 62056-6-1), the six-byte logical names of COSEM
 * objects, with parsing, formatting and names for the objects ammd uses
 * (see DESIGN §4).
 */
#ifndef METER_OBIS_H
#define METER_OBIS_H

#include <stdbool.h>
#include <stdint.h>

struct obis {
	uint8_t v[6]; /* A B C D E F */
};

#define OBIS(a, b, c, d, e, f) ((struct obis){{(a), (b), (c), (d), (e), (f)}})

/*
 * Parse "1-0:1.8.0.255", "1-0:1.8.0" (F defaults to 255), "1.0.1.8.0.255"
 * and "0100010800ff" (12 hex digits).  Returns 0 or METER_EMALFORMED.
 */
int obis_parse(const char *s, struct obis *o);

/* Format as "A-B:C.D.E.F" into out (at least OBIS_STRLEN bytes). */
#define OBIS_STRLEN 24
char *obis_format(const struct obis *o, char *out);

bool obis_eq(const struct obis *a, const struct obis *b);

/* Short snake_case name of a known object ("active_energy_import",
 * "load_profile", "clock", ...), or NULL. */
const char *obis_name(const struct obis *o);
/* The COSEM interface class ammd expects for a known object, or 0. */
uint16_t obis_class(const struct obis *o);
/* Reverse lookup by name; 0 or METER_ENOTFOUND. */
int obis_by_name(const char *name, struct obis *o);

#endif
