/*
 * fuzz_profile.c: the profile generic helper (profile.h) on arbitrary
 * bytes: capture_objects, then optional scaler_units, then a buffer walked
 * row by row.
 *
 * The first byte chooses the options: bits 0-1 the capture period for
 * compressed clocks (0, 900, 60, 3600 s), bit 2 the time zone (UTC or
 * Copenhagen with EU summer time), bit 3 "a scaler_unit follows for each
 * column", bits 4-7 where the buffer is first cut (in 16ths).  When the
 * capture_objects do not decode, a fixed clock/status/A+/A- shape is used
 * so that the buffer walk is still reached.  The walk is done twice: over
 * the whole buffer, and over a prefix extended to the whole on "need
 * more", as a caller receiving blocks does; both must give the same rows.
 * Every byte a cell points at is read, so an overlong pointer trips ASan.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "meter_error.h"
#include "profile.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_ROWS 4096

/* What a row is remembered by for the comparison of both walks. */
struct seen {
	int64_t time;
	uint64_t cells;
	bool has_time;
};

static struct seen seen[MAX_ROWS];
static struct profile_row row;
static volatile uint8_t sink;

static const uint32_t PERIODS[4] = {0, 900, 60, 3600};

static uint64_t
row_hash(const struct profile_row *r, size_t n_cols)
{
	uint64_t h = 1469598103934665603ull;
	uint8_t x = 0;

	for (size_t k = 0; k < n_cols; k++) {
		const struct profile_cell *c = &r->cells[k];
		h = (h ^ c->type) * 1099511628211ull;
		h = (h ^ (uint64_t)c->i) * 1099511628211ull;
		h = (h ^ c->len) * 1099511628211ull;
		h = (h ^ (uint64_t)(uintptr_t)c->ptr) * 1099511628211ull;
		for (uint32_t i = 0; c->ptr != NULL && i < c->len; i++)
			x ^= c->ptr[i];
	}
	sink = x;
	return h;
}

/* Walk the buffer; with cut < len, first over buf[0..cut) only. */
static int
walk(const struct profile_column *cols, size_t n_cols, const uint8_t *buf, size_t len, size_t cut,
     const struct profile_options *opt, bool record, size_t *rows)
{
	struct profile_cursor c;
	size_t have = cut;
	int r;

	*rows = 0;
	r = profile_cursor_init(&c, cols, n_cols, buf, have, opt);
	if (r == METER_ENEEDMORE && have < len) {
		have = len;
		r = profile_cursor_init(&c, cols, n_cols, buf, have, opt);
	}
	if (r < 0)
		return r;
	for (;;) {
		r = profile_next(&c, &row);
		/* A prefix may also end right after the last row: the rest
		 * are bytes after it, which the whole walk sees too. */
		if ((r == METER_ENEEDMORE || r == 0) && have < len) {
			have = len;
			profile_cursor_extend(&c, buf, have);
			continue;
		}
		if (r != 1)
			return r;
		if (row.index != *rows)
			abort();
		if (*rows < MAX_ROWS) {
			struct seen s = {row.has_time ? row.time : 0, row_hash(&row, n_cols),
			                 row.has_time};
			if (record)
				seen[*rows] = s;
			else if (s.has_time != seen[*rows].has_time || s.time != seen[*rows].time ||
			         s.cells != seen[*rows].cells)
				abort();
		}
		++*rows;
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct profile_column cols[PROFILE_MAX_COLUMNS];
	static const struct profile_column fixed[4] = {
	    {8, {{0, 0, 1, 0, 0, 255}}, 2, 0, 0, PROFILE_UNIT_COUNT, false},
	    {1, {{0, 0, 96, 10, 1, 255}}, 2, 0, 0, PROFILE_UNIT_COUNT, false},
	    {3, {{1, 0, 1, 8, 0, 255}}, 2, 0, 3, PROFILE_UNIT_WH, true},
	    {3, {{1, 0, 2, 8, 0, 255}}, 2, 0, -2, PROFILE_UNIT_WH, true},
	};
	struct profile_options opt;
	size_t n = 0, rows1, rows2, cut;
	ssize_t k;
	uint8_t mode;
	int r1, r2;

	if (size < 1)
		return 0;
	mode = data[0];
	data++;
	size--;
	opt.period = PERIODS[mode & 3];
	opt.tz = mode & 4 ? COSEM_TZ_CPH : COSEM_TZ_UTC;

	k = profile_columns_decode(data, size, cols, PROFILE_MAX_COLUMNS, &n);
	if (k > 0) {
		if ((size_t)k > size || n > PROFILE_MAX_COLUMNS)
			abort();
		data += k;
		size -= (size_t)k;
	} else {
		memcpy(cols, fixed, sizeof(fixed));
		n = 4;
	}
	for (size_t i = 0; i < n; i++)
		sink = (uint8_t)(profile_column_is_clock(&cols[i]) +
		                 profile_unit_name(cols[i].unit)[0]);
	if (mode & 8) {
		for (size_t i = 0; i < n && size > 0; i++) {
			k = profile_scaler_unit_decode(data, size, &cols[i]);
			if (k <= 0)
				break;
			if ((size_t)k > size)
				abort();
			data += k;
			size -= (size_t)k;
		}
	}

	r1 = walk(cols, n, data, size, size, &opt, true, &rows1);
	cut = size * (mode >> 4) / 16;
	r2 = walk(cols, n, data, size, cut, &opt, false, &rows2);
	if (r1 != r2 || rows1 != rows2)
		abort();
	return 0;
}
