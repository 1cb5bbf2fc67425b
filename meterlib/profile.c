/*
 * profile.c: capture_objects into columns, and a profile buffer into typed
 * rows (see profile.h).
 *
 * The row walker reads scalar cells straight from the bytes instead of
 * going through axdr_decode(): a 30-day load profile is some 17,000 cells,
 * and building a node per cell only to read one number back out of it
 * would double the work.  Containers inside a cell (rare: a structure in a
 * billing profile) are stepped over with axdr_skip() and handed out raw.
 * A row is decoded into the caller's struct and the cursor advances only
 * when the whole row is good, so a short buffer can be extended and the
 * same row read again.
 */
#include <math.h>
#include <string.h>

#include "axdr.h"
#include "bytes.h"
#include "meter_error.h"
#include "profile.h"
#include "xdlms.h"

/* One capture_object_definition structure: the structure and 4 scalars. */
#define CAPTURE_OBJ_NODES 5

ssize_t
profile_columns_decode(const uint8_t *buf, size_t len, struct profile_column *cols, size_t cap,
		       size_t *n)
{
	struct axdr_node nodes[CAPTURE_OBJ_NODES];
	struct xdlms_capture_obj co;
	uint32_t count;
	size_t used, off;
	ssize_t rc;

	rc = axdr_decode_header(buf, len, AXDR_ARRAY, &count);
	if (rc < 0)
		return rc;
	if (count > cap)
		return METER_ENOSPC;
	off = (size_t)rc;
	for (uint32_t k = 0; k < count; k++) {
		rc = axdr_decode(buf + off, len - off, nodes, CAPTURE_OBJ_NODES, &used);
		if (rc == METER_ENOSPC || rc == METER_ELIMIT)
			return METER_EMALFORMED; /* not the 4-scalar structure */
		if (rc < 0)
			return rc;
		if (xdlms_capture_obj_from_node(&nodes[0], &co) < 0)
			return METER_EMALFORMED;
		off += (size_t)rc;
		memset(&cols[k], 0, sizeof cols[k]);
		cols[k].class_id = co.class_id;
		cols[k].obis = co.obis;
		cols[k].attribute = co.attribute;
		cols[k].data_index = co.data_index;
		cols[k].unit = PROFILE_UNIT_COUNT;
	}
	*n = count;
	return (ssize_t)off;
}

ssize_t
profile_scaler_unit_decode(const uint8_t *buf, size_t len, struct profile_column *col)
{
	struct axdr_node nodes[3];
	size_t used;
	ssize_t rc;

	rc = axdr_decode(buf, len, nodes, 3, &used);
	if (rc == METER_ENOSPC || rc == METER_ELIMIT)
		return METER_EMALFORMED;
	if (rc < 0)
		return rc;
	if (used != 3 || nodes[0].tag != AXDR_STRUCTURE || nodes[0].len != 2 ||
	    nodes[1].tag != AXDR_INTEGER || nodes[2].tag != AXDR_ENUM)
		return METER_EMALFORMED;
	col->scaler = (int8_t)nodes[1].v.i;
	col->unit = (uint8_t)nodes[2].v.u;
	col->has_scaler_unit = true;
	return rc;
}

bool
profile_column_is_clock(const struct profile_column *col)
{
	return col->class_id == 8 && col->attribute == 2;
}

const char *
profile_unit_name(uint8_t unit)
{
	/* IEC 62056-6-2 enum unit; 58, 59 and 68, 69 are not assigned. */
	static const char *const names[] = {
		[1] = "a",	   [2] = "mo",	       [3] = "wk",	  [4] = "d",
		[5] = "h",	   [6] = "min",	       [7] = "s",	  [8] = "deg",
		[9] = "degC",	   [10] = "currency",  [11] = "m",	  [12] = "m/s",
		[13] = "m3",	   [14] = "m3_corr",   [15] = "m3/h",	  [16] = "m3/h_corr",
		[17] = "m3/d",	   [18] = "m3/d_corr", [19] = "l",	  [20] = "kg",
		[21] = "N",	   [22] = "Nm",	       [23] = "Pa",	  [24] = "bar",
		[25] = "J",	   [26] = "J/h",       [27] = "W",	  [28] = "VA",
		[29] = "var",	   [30] = "Wh",	       [31] = "VAh",	  [32] = "varh",
		[33] = "A",	   [34] = "C",	       [35] = "V",	  [36] = "V/m",
		[37] = "F",	   [38] = "Ohm",       [39] = "Ohm_m2/m", [40] = "Wb",
		[41] = "T",	   [42] = "A/m",       [43] = "H",	  [44] = "Hz",
		[45] = "1/(Wh)",   [46] = "1/(varh)",  [47] = "1/(VAh)",  [48] = "V2h",
		[49] = "A2h",	   [50] = "kg/s",      [51] = "S",	  [52] = "K",
		[53] = "1/(V2h)",  [54] = "1/(A2h)",   [55] = "1/m3",	  [56] = "%",
		[57] = "Ah",	   [60] = "Wh/m3",     [61] = "J/m3",	  [62] = "mol%",
		[63] = "g/m3",	   [64] = "Pa_s",      [65] = "J/kg",	  [66] = "g/cm2",
		[67] = "atm",	   [70] = "dBm",       [71] = "dBuV",	  [72] = "dB",
	};

	if (unit == PROFILE_UNIT_COUNT)
		return "count";
	if (unit == 254)
		return "other";
	if (unit < sizeof names / sizeof names[0] && names[unit])
		return names[unit];
	return "unknown";
}

int
profile_cursor_init(struct profile_cursor *c, const struct profile_column *cols, size_t n_cols,
		    const uint8_t *buf, size_t len, const struct profile_options *opt)
{
	ssize_t rc;

	if (n_cols == 0 || n_cols > PROFILE_MAX_COLUMNS || cols == NULL)
		return METER_EINVAL;
	memset(c, 0, sizeof *c);
	rc = axdr_decode_header(buf, len, AXDR_ARRAY, &c->count);
	if (rc < 0)
		return (int)rc;
	c->cols = cols;
	c->n_cols = (uint32_t)n_cols;
	c->clock_col = -1;
	c->buf = buf;
	c->len = len;
	c->off = (size_t)rc;
	if (opt)
		c->opt = *opt;
	else
		c->opt.tz = COSEM_TZ_UTC;
	for (uint32_t k = 0; k < c->n_cols; k++) {
		int s = cols[k].scaler;
		/* Dividing by 10^3 rounds once; multiplying by 0.001 (inexact)
		 * would give 1.2340000000000002 for 1234 Wh in kWh. */
		c->divide[k] = s < 0;
		c->factor[k] = pow(10.0, s < 0 ? -s : s);
		if (c->clock_col < 0 && profile_column_is_clock(&cols[k]))
			c->clock_col = (int)k;
	}
	return 0;
}

void
profile_cursor_extend(struct profile_cursor *c, const uint8_t *buf, size_t len)
{
	c->buf = buf;
	c->len = len;
}

/* Variable-length contents: length field, then n bytes (bits for a
 * bit-string).  Returns bytes from p, or an error. */
static ssize_t
read_string(const uint8_t *p, size_t left, bool bits, struct profile_cell *cell)
{
	uint32_t n;
	size_t bytes;
	ssize_t h = axdr_decode_length(p, left, &n);

	if (h < 0)
		return h;
	bytes = bits ? ((size_t)n + 7) / 8 : n;
	if (bytes > left - (size_t)h)
		return METER_ENEEDMORE;
	cell->ptr = p + h;
	cell->len = (uint32_t)bytes;
	return h + (ssize_t)bytes;
}

static ssize_t read_cell(const uint8_t *p, size_t left, struct profile_cell *cell);

/*
 * Step over one tagged array or structure cell.  Unlike axdr_skip(), which
 * calls an element count larger than the bytes left malformed, a count
 * running past the end here is METER_ENEEDMORE: the rest of the row may
 * come with the next block (profile_cursor_extend()).  Each element takes
 * at least one byte, so the loop ends with the bytes.
 */
static ssize_t
skip_aggregate(const uint8_t *p, size_t left, unsigned depth)
{
	struct profile_cell scratch;
	uint32_t cnt;
	size_t pos;
	ssize_t r;

	if (depth >= AXDR_MAX_DEPTH)
		return METER_ELIMIT;
	r = axdr_decode_length(p + 1, left - 1, &cnt);
	if (r < 0)
		return r;
	pos = 1 + (size_t)r;
	for (uint32_t i = 0; i < cnt; i++) {
		if (pos >= left)
			return METER_ENEEDMORE;
		if (p[pos] == AXDR_ARRAY || p[pos] == AXDR_STRUCTURE)
			r = skip_aggregate(p + pos, left - pos, depth + 1);
		else
			r = read_cell(p + pos, left - pos, &scratch);
		if (r < 0)
			return r;
		pos += (size_t)r;
	}
	return (ssize_t)pos;
}

/*
 * Bytes of a compact-array type description at p, METER_ENEEDMORE when it
 * runs past the bytes present; its shape is left to axdr_skip().
 */
static ssize_t
desc_len(const uint8_t *p, size_t left, unsigned depth)
{
	uint32_t cnt;
	size_t pos;
	ssize_t r;

	if (depth >= AXDR_MAX_DEPTH)
		return METER_ELIMIT;
	if (left < 1)
		return METER_ENEEDMORE;
	if (p[0] == AXDR_ARRAY) {
		if (left < 3)
			return METER_ENEEDMORE;
		r = desc_len(p + 3, left - 3, depth + 1);
		return r < 0 ? r : r + 3;
	}
	if (p[0] != AXDR_STRUCTURE)
		return 1;
	r = axdr_decode_length(p + 1, left - 1, &cnt);
	if (r < 0)
		return r;
	pos = 1 + (size_t)r;
	for (uint32_t i = 0; i < cnt; i++) {
		if ((r = desc_len(p + pos, left - pos, depth + 1)) < 0)
			return r;
		pos += (size_t)r;
	}
	return (ssize_t)pos;
}

/* Step over a compact-array cell: ENEEDMORE until its description and
 * contents are all there, then axdr_skip() judges the whole. */
static ssize_t
skip_compact(const uint8_t *p, size_t left)
{
	uint32_t clen;
	size_t pos;
	ssize_t r;

	if ((r = desc_len(p + 1, left - 1, 1)) < 0)
		return r;
	pos = 1 + (size_t)r;
	if ((r = axdr_decode_length(p + pos, left - pos, &clen)) < 0)
		return r;
	pos += (size_t)r;
	if (clen > left - pos)
		return METER_ENEEDMORE;
	return axdr_skip(p, pos + clen);
}

/*
 * One tagged cell at p (p[-1] is not ours).  Fills type, numeric, i, ptr,
 * len; `value` is set from i (or the float) unscaled.  Returns bytes.
 */
static ssize_t
read_cell(const uint8_t *p, size_t left, struct profile_cell *cell)
{
	const uint8_t *q = p + 1;
	size_t rest;
	ssize_t rc;
	union {
		uint32_t u;
		float f;
	} f32;
	union {
		uint64_t u;
		double d;
	} f64;

	if (left < 1)
		return METER_ENEEDMORE;
	rest = left - 1;
	cell->type = p[0];
	cell->numeric = true;
	cell->ptr = NULL;
	cell->len = 0;
	switch (p[0]) {
	case AXDR_DOUBLE_LONG_UNSIGNED:
		if (rest < 4)
			return METER_ENEEDMORE;
		cell->i = be32(q);
		cell->value = (double)cell->i;
		return 5;
	case AXDR_DOUBLE_LONG:
		if (rest < 4)
			return METER_ENEEDMORE;
		cell->i = (int32_t)be32(q);
		cell->value = (double)cell->i;
		return 5;
	case AXDR_UNSIGNED:
	case AXDR_ENUM:
		if (rest < 1)
			return METER_ENEEDMORE;
		cell->i = q[0];
		cell->value = (double)cell->i;
		return 2;
	case AXDR_INTEGER:
	case AXDR_BCD:
		if (rest < 1)
			return METER_ENEEDMORE;
		cell->i = (int8_t)q[0];
		cell->value = (double)cell->i;
		return 2;
	case AXDR_BOOLEAN:
		if (rest < 1)
			return METER_ENEEDMORE;
		cell->i = q[0] != 0;
		cell->value = (double)cell->i;
		return 2;
	case AXDR_LONG_UNSIGNED:
		if (rest < 2)
			return METER_ENEEDMORE;
		cell->i = be16(q);
		cell->value = (double)cell->i;
		return 3;
	case AXDR_LONG:
		if (rest < 2)
			return METER_ENEEDMORE;
		cell->i = (int16_t)be16(q);
		cell->value = (double)cell->i;
		return 3;
	case AXDR_LONG64:
	case AXDR_LONG64_UNSIGNED: {
		uint64_t u;
		if (rest < 8)
			return METER_ENEEDMORE;
		u = (uint64_t)be32(q) << 32 | be32(q + 4);
		if (p[0] == AXDR_LONG64) {
			cell->i = (int64_t)u;
			cell->value = (double)cell->i;
		} else {
			cell->i = u > INT64_MAX ? INT64_MAX : (int64_t)u;
			cell->value = (double)u;
		}
		return 9;
	}
	case AXDR_FLOATING_POINT:
	case AXDR_FLOAT32:
		if (rest < 4)
			return METER_ENEEDMORE;
		f32.u = be32(q);
		cell->value = f32.f;
		cell->i = isfinite(cell->value) && fabs(cell->value) < 9e18 ? (int64_t)cell->value : 0;
		return 5;
	case AXDR_FLOAT64:
		if (rest < 8)
			return METER_ENEEDMORE;
		f64.u = (uint64_t)be32(q) << 32 | be32(q + 4);
		cell->value = f64.d;
		cell->i = isfinite(cell->value) && fabs(cell->value) < 9e18 ? (int64_t)cell->value : 0;
		return 9;
	}

	cell->numeric = false;
	cell->i = 0;
	cell->value = 0;
	switch (p[0]) {
	case AXDR_NULL:
	case AXDR_DONT_CARE:
		return 1;
	case AXDR_OCTET_STRING:
	case AXDR_VISIBLE_STRING:
	case AXDR_UTF8_STRING:
	case AXDR_BIT_STRING:
		rc = read_string(q, rest, p[0] == AXDR_BIT_STRING, cell);
		return rc < 0 ? rc : rc + 1;
	case AXDR_DATE_TIME:
	case AXDR_DATE:
	case AXDR_TIME: {
		size_t n = p[0] == AXDR_DATE_TIME ? 12 : p[0] == AXDR_DATE ? 5 : 4;
		if (rest < n)
			return METER_ENEEDMORE;
		cell->ptr = q;
		cell->len = (uint32_t)n;
		return (ssize_t)n + 1;
	}
	case AXDR_ARRAY:
	case AXDR_STRUCTURE:
	case AXDR_COMPACT_ARRAY:
		rc = p[0] == AXDR_COMPACT_ARRAY ? skip_compact(p, left) : skip_aggregate(p, left, 0);
		if (rc < 0)
			return rc;
		cell->ptr = p;
		cell->len = (uint32_t)rc;
		return rc;
	}
	return METER_EMALFORMED;
}

/*
 * Local midnight of the date at p (year, month, day bytes) under the
 * caller's zone, remembered for the rows that follow: a 15-minute profile
 * has 96 rows per date, and the DST rule (two civil-date conversions per
 * candidate offset) is the dearest part of a row.  A date is cached only
 * when no DST change falls within two hours of it, so one offset holds
 * for the whole day; the two change days go the long way every row.
 */
static void
remember_day(struct profile_cursor *c, const uint8_t *p, const struct cosem_datetime *dt)
{
	const struct cosem_tz *tz = &c->opt.tz;
	int64_t local0 = cosem_days_from_civil(dt->year, dt->month, dt->day) * 86400;
	int64_t first = local0 - (int64_t)tz->std_offset * 60 - 3 * 3600;
	int64_t last = local0 + 86400 - (int64_t)tz->std_offset * 60 + 2 * 3600;
	bool dst = cosem_tz_is_dst(tz, first);

	c->day_valid = dst == cosem_tz_is_dst(tz, last);
	memcpy(c->day_key, p, sizeof c->day_key);
	c->day_utc0 = local0 - (int64_t)(tz->std_offset + (dst ? 60 : 0)) * 60;
}

/* The clock cell of a row: its UTC time, or the previous one plus the
 * period for a null clock. */
static int
row_time(struct profile_cursor *c, const struct profile_cell *cell, struct profile_row *row)
{
	struct cosem_datetime dt;
	int rc;

	row->clock_status = COSEM_STATUS_UNSPEC;
	if (cell->type == AXDR_NULL) {
		if (!c->have_time || c->opt.period == 0)
			return METER_EMALFORMED;
		row->time = c->last_time + c->opt.period;
		row->has_time = true;
		row->time_derived = true;
		return 0;
	}
	if ((cell->type != AXDR_OCTET_STRING && cell->type != AXDR_DATE_TIME) || cell->len != 12)
		return METER_EMALFORMED;
	if ((rc = cosem_datetime_decode(cell->ptr, &dt)) < 0)
		return rc;
	row->clock_status = dt.status;
	row->has_time = true;
	if (dt.deviation == COSEM_DEVIATION_UNSPEC && c->day_valid &&
	    memcmp(cell->ptr, c->day_key, sizeof c->day_key) == 0 && dt.hour <= 23 &&
	    dt.minute <= 59 && dt.second <= 59) {
		row->time = c->day_utc0 + dt.hour * 3600 + dt.minute * 60 + dt.second;
		return 0;
	}
	if ((rc = cosem_datetime_to_utc(&dt, &c->opt.tz, &row->time)) < 0)
		return rc;
	if (dt.deviation == COSEM_DEVIATION_UNSPEC)
		remember_day(c, cell->ptr, &dt);
	return 0;
}

int
profile_next(struct profile_cursor *c, struct profile_row *row)
{
	const uint8_t *p;
	size_t left, pos;
	ssize_t rc;
	int err;

	if (c->next == c->count)
		return c->off == c->len ? 0 : METER_ELENGTH;
	p = c->buf + c->off;
	left = c->len - c->off;
	if (left < 2)
		return METER_ENEEDMORE;
	if (p[0] != AXDR_STRUCTURE)
		return METER_EMALFORMED;
	/* Element counts under 128 take one length byte; a row of more
	 * columns than we have is malformed anyway. */
	if (p[1] != c->n_cols)
		return METER_EMALFORMED;
	pos = 2;
	row->has_time = false;
	row->time_derived = false;
	for (uint32_t k = 0; k < c->n_cols; k++) {
		struct profile_cell *cell = &row->cells[k];
		rc = read_cell(p + pos, left - pos, cell);
		if (rc < 0)
			return (int)rc;
		pos += (size_t)rc;
		if (cell->numeric)
			cell->value = c->divide[k] ? cell->value / c->factor[k]
						   : cell->value * c->factor[k];
		cell->unit = c->cols[k].unit;
	}
	if (c->clock_col >= 0) {
		if ((err = row_time(c, &row->cells[c->clock_col], row)) < 0)
			return err;
		c->have_time = true;
		c->last_time = row->time;
	}
	row->index = c->next++;
	c->off += pos;
	return 1;
}
