/*
 * discovery.c: interpreting a meter's object list and load-profile layout
 * (see discovery.h), and their round trip through the database as text.
 * The text forms keep the SQL to two statements with two parameters each,
 * so storing a discovery is one round trip per table on the scheduler's
 * connection whatever the size of the object list.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "axdr.h"
#include "discovery.h"
#include "meter_error.h"

int
discovery_object_list(const uint8_t *data, size_t len, struct discovery_object *out, size_t cap,
                      size_t *n, size_t *total)
{
	uint32_t count, fields;
	size_t off;
	ssize_t r;

	*n = 0;
	if (total != NULL)
		*total = 0;
	r = axdr_decode_header(data, len, AXDR_ARRAY, &count);
	if (r < 0)
		return (int)r;
	off = (size_t)r;
	for (uint32_t i = 0; i < count; i++) {
		/* Only the first three fields matter; access_rights, however
		 * long, is stepped over whole, never decoded into nodes. */
		ssize_t entry = axdr_skip(data + off, len - off);
		if (entry < 0)
			return (int)entry;
		const uint8_t *e = data + off;
		size_t elen = (size_t)entry, p;
		r = axdr_decode_header(e, elen, AXDR_STRUCTURE, &fields);
		if (r < 0 || fields < 3)
			return METER_EMALFORMED;
		p = (size_t)r;
		struct axdr_node f[3];
		for (int k = 0; k < 3; k++) {
			size_t nn;
			r = axdr_decode(e + p, elen - p, &f[k], 1, &nn);
			if (r < 0)
				return r == METER_ENEEDMORE ? METER_ENEEDMORE : METER_EMALFORMED;
			p += (size_t)r;
		}
		if (f[0].tag != AXDR_LONG_UNSIGNED || f[1].tag != AXDR_UNSIGNED ||
		    f[2].tag != AXDR_OCTET_STRING || f[2].len != 6)
			return METER_EMALFORMED;
		if (*n < cap) {
			out[*n].class_id = (uint16_t)f[0].v.u;
			out[*n].version = (uint8_t)f[1].v.u;
			memcpy(out[*n].obis.v, f[2].ptr, 6);
			(*n)++;
		}
		if (total != NULL)
			(*total)++;
		off += elen;
	}
	return 0;
}

bool
discovery_has(const struct discovery_object *o, size_t n, const struct obis *obis,
              uint16_t class_id)
{
	for (size_t i = 0; i < n; i++)
		if (obis_eq(&o[i].obis, obis) && (class_id == 0 || o[i].class_id == class_id))
			return true;
	return false;
}

char *
discovery_objects_text(const struct discovery_object *o, size_t n)
{
	size_t cap = n * 40 + 1, len = 0;
	char *s = malloc(cap), name[OBIS_STRLEN];

	if (s == NULL)
		return NULL;
	s[0] = '\0';
	for (size_t i = 0; i < n; i++)
		len += (size_t)snprintf(s + len, cap - len, "%s%s,%u,%u", i ? ";" : "",
		                        obis_format(&o[i].obis, name), o[i].class_id, o[i].version);
	return s;
}

char *
discovery_layout_text(const struct obis *profile, const struct profile_column *cols, size_t n)
{
	size_t cap = n * 80 + 1, len = 0;
	char *s = malloc(cap), pn[OBIS_STRLEN], cn[OBIS_STRLEN];

	if (s == NULL)
		return NULL;
	s[0] = '\0';
	obis_format(profile, pn);
	for (size_t i = 0; i < n; i++)
		len += (size_t)snprintf(s + len, cap - len, "%s%s,%zu,%u,%s,%d,%u,%d,%u",
		                        i ? ";" : "", pn, i, cols[i].class_id,
		                        obis_format(&cols[i].obis, cn), cols[i].attribute,
		                        cols[i].data_index, cols[i].scaler, cols[i].unit);
	return s;
}

int
discovery_layout_parse(const char *text, const struct obis *profile, struct profile_column *cols,
                       size_t cap)
{
	const char *p = text;
	size_t n = 0;

	while (p != NULL && *p != '\0') {
		char row[160], pobis[40], cobis[40];
		const char *end = strchr(p, ';');
		size_t l = end ? (size_t)(end - p) : strlen(p);
		unsigned col, cls, di, unit;
		int attr, scaler;
		struct obis po, co;

		if (l >= sizeof(row))
			return METER_EMALFORMED;
		memcpy(row, p, l);
		row[l] = '\0';
		p = end ? end + 1 : NULL;
		if (sscanf(row, "%39[^,],%u,%u,%39[^,],%d,%u,%d,%u", pobis, &col, &cls, cobis,
		           &attr, &di, &scaler, &unit) != 8)
			return METER_EMALFORMED;
		if (obis_parse(pobis, &po) != 0 || obis_parse(cobis, &co) != 0)
			return METER_EMALFORMED;
		if (!obis_eq(&po, profile))
			continue;
		if (col != n)
			return METER_EMALFORMED; /* rows come ordered by col */
		if (n == cap)
			return METER_ENOSPC;
		if (cls > 0xffff || attr < -128 || attr > 127 || di > 0xffff || scaler < -128 ||
		    scaler > 127 || unit > 255)
			return METER_EMALFORMED;
		cols[n].class_id = (uint16_t)cls;
		cols[n].obis = co;
		cols[n].attribute = (int8_t)attr;
		cols[n].data_index = (uint16_t)di;
		cols[n].scaler = (int8_t)scaler;
		cols[n].unit = (uint8_t)unit;
		cols[n].has_scaler_unit = cls == 3 || cls == 4;
		n++;
	}
	return (int)n;
}

/* Rows that are no longer there are deleted, the others upserted; the
 * DELETE never touches a row the INSERT writes, so the two may share one
 * statement. */
const char discovery_save_objects_sql[] =
    "WITH n AS (SELECT DISTINCT ON (f[1], f[2]::int) f[1] AS obis, f[2]::int AS cls, "
    "f[3]::int AS ver "
    "FROM (SELECT string_to_array(r, ',') AS f FROM unnest(string_to_array($2, ';')) AS r) x), "
    "d AS (DELETE FROM meter_object o WHERE o.meter_id = $1::int AND NOT EXISTS "
    "(SELECT 1 FROM n WHERE n.obis = o.obis AND n.cls = o.class_id)), "
    "c AS (UPDATE meter SET collect = collect - 'discover' WHERE id = $1::int AND collect ? "
    "'discover') "
    "INSERT INTO meter_object (meter_id, obis, class_id, version) "
    "SELECT $1::int, obis, cls, ver FROM n "
    "ON CONFLICT (meter_id, obis, class_id) DO UPDATE SET version = EXCLUDED.version, "
    "discovered_at = now()";

const char discovery_save_layout_sql[] =
    "WITH n AS (SELECT f[1] AS p, f[2]::int AS col, f[3]::int AS cls, f[4] AS obis, "
    "f[5]::int AS attr, f[6]::int AS di, f[7]::int AS sc, f[8]::int AS unit "
    "FROM (SELECT string_to_array(r, ',') AS f FROM unnest(string_to_array($2, ';')) AS r) x), "
    "d AS (DELETE FROM meter_profile_layout l WHERE l.meter_id = $1::int AND NOT EXISTS "
    "(SELECT 1 FROM n WHERE n.p = l.profile_obis AND n.col = l.col)) "
    "INSERT INTO meter_profile_layout (meter_id, profile_obis, col, class_id, obis, attr, "
    "data_index, scaler, unit) "
    "SELECT $1::int, p, col, cls, obis, attr, di, sc, unit FROM n "
    "ON CONFLICT (meter_id, profile_obis, col) DO UPDATE SET class_id = EXCLUDED.class_id, "
    "obis = EXCLUDED.obis, attr = EXCLUDED.attr, data_index = EXCLUDED.data_index, "
    "scaler = EXCLUDED.scaler, unit = EXCLUDED.unit, discovered_at = now()";
