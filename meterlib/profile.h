/*
 * profile.h: the profile generic helper (interface class 7): turns a
 * profile's capture_objects (attribute 3) into column descriptors and walks
 * its buffer (attribute 2) row by row into typed rows, with each column's
 * scaler_unit applied and the clock column converted to UTC.
 *
 * It is the hot path of every load-profile read, so it never allocates and
 * never builds a node tree: a row is read straight from the A-XDR bytes
 * into a row struct the caller owns, and the iterator keeps only an offset.
 * The buffer is the caller's and must outlive the cursor (string cells
 * point into it).
 *
 * Compressed timestamps: many meters send the clock of a row as null-data
 * when it is the previous row's clock plus the capture period (attribute
 * 4).  The cursor then derives it; the caller says what the period is.
 * A null clock before any full one is METER_EMALFORMED.
 *
 * Time zones: a clock value whose deviation is "not specified" is read in
 * the caller's cosem_tz (see cosem_time.h), as the meter's local time.
 */
#ifndef METER_PROFILE_H
#define METER_PROFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "cosem_time.h"
#include "obis.h"

/* Most columns a profile may have here: DESIGN §4's widest profile is
 * the 16-channel analysis logger with clock and status. */
#define PROFILE_MAX_COLUMNS 64

/* DLMS unit codes (IEC 62056-6-2, enum unit) ammd meets most. */
#define PROFILE_UNIT_W	   27
#define PROFILE_UNIT_VA	   28
#define PROFILE_UNIT_VAR   29
#define PROFILE_UNIT_WH	   30
#define PROFILE_UNIT_VAH   31
#define PROFILE_UNIT_VARH  32
#define PROFILE_UNIT_A	   33
#define PROFILE_UNIT_V	   35
#define PROFILE_UNIT_HZ	   44
#define PROFILE_UNIT_COUNT 255 /* a count, or no unit */

/* One column: the capture object definition and its scaler_unit. */
struct profile_column {
	uint16_t class_id;
	struct obis obis;
	int8_t attribute;
	uint16_t data_index;
	int8_t scaler;	     /* value x 10^scaler; 0 without scaler_unit */
	uint8_t unit;	     /* DLMS unit code; PROFILE_UNIT_COUNT without */
	bool has_scaler_unit;
};

/*
 * Decode a tagged capture_objects value (array of structure{long-unsigned
 * class_id, octet-string(6) logical_name, integer attribute_index,
 * long-unsigned data_index}) into cols[0..cap); *n gets the count.  Each
 * column starts with scaler 0 and unit "count".  Returns bytes consumed
 * (bytes after the value are left alone), or METER_ENEEDMORE (truncated),
 * METER_EMALFORMED (other shape), METER_ENOSPC (more columns than cap).
 */
ssize_t profile_columns_decode(const uint8_t *buf, size_t len, struct profile_column *cols,
			       size_t cap, size_t *n);

/*
 * Decode a tagged scaler_unit (structure{integer scaler, enum unit}, a
 * register's attribute 3) into the column.  Returns bytes consumed, or
 * METER_ENEEDMORE / METER_EMALFORMED.
 */
ssize_t profile_scaler_unit_decode(const uint8_t *buf, size_t len, struct profile_column *col);

/* Is this column a clock's time (class 8, attribute 2)? */
bool profile_column_is_clock(const struct profile_column *col);

/* Name of a DLMS unit code ("Wh", "var", "count"), or "unknown"; never NULL.
 * ASCII only: "degC", "m3", "Ohm". */
const char *profile_unit_name(uint8_t unit);

/* One cell of a row. */
struct profile_cell {
	uint8_t type;	    /* enum axdr_tag as received (AXDR_NULL for an empty
			       cell or a compressed clock) */
	bool numeric;	    /* an integer, enum, boolean or float: `value` holds */
	int64_t i;	    /* integer value (long64-unsigned above INT64_MAX is
			       clamped; floats truncated) */
	double value;	    /* scaled: raw x 10^scaler of the column */
	const uint8_t *ptr; /* octet-, visible-, utf8-string, bit-string: the
			       contents; other non-numeric types: the whole
			       tagged value; NULL for numbers and null-data */
	uint32_t len;	    /* bytes at ptr */
	uint8_t unit;	    /* the column's unit code */
};

/* One row; cells[k] belongs to column k. */
struct profile_row {
	uint32_t index;	 /* 0-based position in the buffer */
	bool has_time;	 /* a clock column gave a time */
	bool time_derived; /* ... derived from the previous row (null clock) */
	int64_t time;	 /* UTC seconds since the epoch */
	uint8_t clock_status; /* clock status of the row's date-time (0xff when
				 derived or unspecified) */
	struct profile_cell cells[PROFILE_MAX_COLUMNS];
};

/* How to read the clock column. */
struct profile_options {
	struct cosem_tz tz;  /* for date-times with an unspecified deviation */
	uint32_t period;     /* capture period in seconds, for null clocks;
				0: null clocks are METER_EMALFORMED */
};

/*
 * The iterator.  Public so callers embed it; read `count` and `n_cols`,
 * treat the rest as private.
 */
struct profile_cursor {
	const struct profile_column *cols;
	uint32_t n_cols;
	int clock_col;	  /* index of the clock column, or -1 */
	const uint8_t *buf;
	size_t len;
	size_t off;	  /* start of the next row */
	uint32_t count;	  /* rows in the buffer (the array's element count) */
	uint32_t next;	  /* rows done */
	struct profile_options opt;
	bool have_time;
	int64_t last_time;
	/* the last local date seen with an unspecified deviation, when one
	 * UTC offset holds all day: its midnight in UTC */
	bool day_valid;
	uint8_t day_key[4]; /* year, month, day bytes */
	int64_t day_utc0;
	/* per column: divide (scaler < 0) or multiply by this power of ten */
	double factor[PROFILE_MAX_COLUMNS];
	bool divide[PROFILE_MAX_COLUMNS];
};

/*
 * Start walking a tagged buffer value (array of structures).  cols and buf
 * must outlive the cursor.  opt may be NULL (UTC, no compressed clocks).
 * Returns 0, or METER_ENEEDMORE (not even the array header), METER_EMALFORMED
 * (not an array), METER_EINVAL (no columns or more than PROFILE_MAX_COLUMNS).
 */
int profile_cursor_init(struct profile_cursor *c, const struct profile_column *cols, size_t n_cols,
			const uint8_t *buf, size_t len, const struct profile_options *opt);

/*
 * The next row into *row.  Returns 1 for a row, 0 when all rows are done
 * and the buffer ends exactly there, or an error:
 *   METER_ENEEDMORE   the buffer ends inside a row (the cursor does not
 *                     move, so a caller receiving blocks may append bytes,
 *                     call profile_cursor_extend() and try again)
 *   METER_ELENGTH     bytes after the last row
 *   METER_EMALFORMED  a row that is not a structure of n_cols elements, a
 *                     bad A-XDR value, a null clock with no previous time
 *                     or no period
 *   METER_ERANGE      a clock that is not a valid date-time
 * The row's string cells point into the buffer.
 */
int profile_next(struct profile_cursor *c, struct profile_row *row);

/* The buffer grew (same start, more bytes now valid). */
void profile_cursor_extend(struct profile_cursor *c, const uint8_t *buf, size_t len);

#endif
