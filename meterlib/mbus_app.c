/*
 * mbus_app.c: the EN 13757-3 application layer: CI field, long and short
 * headers, application errors, selection telegrams, fixed-data telegrams
 * and the variable-data records (DIF/DIFE, VIF/VIFE, every data coding,
 * dates of types F, G, I and J).  Records are decoded one at a time into a
 * caller's struct that points back into the telegram, so a readout costs
 * no allocation.  Every length the wire gives is checked against what is
 * left before a byte is read.
 */
#include <stdio.h>
#include <string.h>

#include "mbus.h"

static uint32_t
le_u(const uint8_t *p, size_t n)
{
	uint32_t v = 0;
	while (n--)
		v = v << 8 | p[n];
	return v;
}

/* BCD, least significant byte first, as decimal; -1 on a non-decimal digit. */
static int
bcd_u32(const uint8_t *p, size_t n, uint32_t *out)
{
	uint32_t v = 0;
	while (n--) {
		unsigned hi = p[n] >> 4, lo = p[n] & 15;
		if (hi > 9 || lo > 9)
			return -1;
		v = v * 100 + hi * 10 + lo;
	}
	*out = v;
	return 0;
}

static void
read_long_header(const uint8_t *p, struct mbus_header *h)
{
	uint32_t id;
	h->has_id = true;
	/* A non-BCD identification is kept as its raw value rather than refused. */
	if (bcd_u32(p, 4, &id) < 0)
		id = le_u(p, 4);
	h->id = id;
	h->manufacturer = (uint16_t)(p[4] | p[5] << 8);
	h->version = p[6];
	h->medium = p[7];
	h->access = p[8];
	h->status = p[9];
	h->signature = (uint16_t)(p[10] | p[11] << 8);
}

int
mbus_telegram_decode(const struct mbus_frame *f, struct mbus_telegram *t)
{
	const uint8_t *p = f->data;
	size_t n = f->data_len;

	memset(t, 0, sizeof(*t));
	t->ci = f->ci;
	t->app_error = -1;
	if (f->type != MBUS_FRAME_CONTROL && f->type != MBUS_FRAME_LONG)
		return METER_EUNSUPPORTED;

	switch (f->ci) {
	case MBUS_CI_RSP_LONG:
		if (n < 12)
			return METER_ELENGTH;
		read_long_header(p, &t->hdr);
		t->kind = MBUS_TG_VARIABLE;
		t->records = p + 12;
		t->records_len = n - 12;
		return 0;
	case MBUS_CI_RSP_SHORT:
		if (n < 4)
			return METER_ELENGTH;
		t->hdr.access = p[0];
		t->hdr.status = p[1];
		t->hdr.signature = (uint16_t)(p[2] | p[3] << 8);
		t->kind = MBUS_TG_VARIABLE;
		t->records = p + 4;
		t->records_len = n - 4;
		return 0;
	case MBUS_CI_RSP_NOHDR:
	case MBUS_CI_DATA_SEND:
		t->kind = MBUS_TG_VARIABLE;
		t->records = p;
		t->records_len = n;
		return 0;
	case MBUS_CI_RSP_FIXED: {
		uint32_t id;
		/* id(4) access status medium/units(2) counter1(4) counter2(4) */
		if (n < 16)
			return METER_ELENGTH;
		t->kind = MBUS_TG_FIXED;
		t->hdr.has_id = true;
		t->hdr.id = bcd_u32(p, 4, &id) < 0 ? le_u(p, 4) : id;
		t->hdr.access = p[4];
		t->hdr.status = p[5];
		t->hdr.medium = (uint8_t)((p[6] >> 6) | (p[7] >> 6) << 2);
		t->fixed = p + 6;
		return 0;
	}
	case MBUS_CI_APP_ERROR:
		t->kind = MBUS_TG_APP_ERROR;
		t->app_error = n > 0 ? p[0] : -1;
		return 0;
	case MBUS_CI_SELECT:
		if (n < 8)
			return METER_ELENGTH;
		t->kind = MBUS_TG_SELECT;
		memcpy(t->sel.id_bcd, p, 4);
		t->sel.manufacturer = (uint16_t)(p[4] | p[5] << 8);
		t->sel.version = p[6];
		t->sel.medium = p[7];
		return 0;
	default:
		return METER_EUNSUPPORTED;
	}
}

const char *
mbus_app_error_text(int code)
{
	static const char *const text[] = {
		"unspecified error",
		"unimplemented CI-field",
		"buffer too long, truncated",
		"too many records",
		"premature end of record",
		"more than 10 DIFEs",
		"more than 10 VIFEs",
		"reserved",
		"application busy",
		"too many readouts",
	};
	if (code < 0)
		return "unspecified error (no code)";
	if ((size_t)code < sizeof(text) / sizeof(text[0]))
		return text[code];
	return "reserved";
}

void
mbus_manufacturer(uint16_t m, char out[4])
{
	out[0] = (char)(((m >> 10) & 0x1F) + 64);
	out[1] = (char)(((m >> 5) & 0x1F) + 64);
	out[2] = (char)((m & 0x1F) + 64);
	out[3] = '\0';
}

const char *
mbus_medium_name(uint8_t medium)
{
	static const char *const names[] = {
		"other", "oil", "electricity", "gas", "heat (outlet)", "steam",
		"warm water", "water", "heat cost allocator", "compressed air",
		"cooling (outlet)", "cooling (inlet)", "heat (inlet)", "heat/cooling",
		"bus/system", "unknown", "reserved", "reserved", "reserved", "reserved",
		"reserved", "hot water", "cold water", "dual water", "pressure",
		"A/D converter",
	};
	if (medium < sizeof(names) / sizeof(names[0]))
		return names[medium];
	return "reserved";
}

const char *
mbus_function_name(enum mbus_function fn)
{
	switch (fn) {
	case MBUS_FN_INSTANT:
		return "instantaneous";
	case MBUS_FN_MAX:
		return "maximum";
	case MBUS_FN_MIN:
		return "minimum";
	case MBUS_FN_ERROR:
		return "error state";
	case MBUS_FN_MANUFACTURER:
		return "manufacturer specific";
	case MBUS_FN_MORE_FOLLOWS:
		return "more records follow";
	case MBUS_FN_ACTUAL:
		return "actual";
	case MBUS_FN_HISTORIC:
		return "historic";
	}
	return "unknown";
}

void
mbus_iter_init(struct mbus_iter *it, const struct mbus_telegram *t)
{
	it->p = t->records;
	it->len = t->kind == MBUS_TG_VARIABLE ? t->records_len : 0;
	it->off = 0;
	it->done = false;
}

/* Signed little-endian integer of n bytes (1..8). */
static int64_t
le_signed(const uint8_t *p, size_t n)
{
	uint64_t v = 0;
	for (size_t i = n; i-- > 0;)
		v = v << 8 | p[i];
	if (n < 8 && (p[n - 1] & 0x80))
		v |= ~(uint64_t)0 << (n * 8);
	return (int64_t)v;
}

/*
 * BCD of n bytes, least significant first.  A top nibble of 0xF marks a
 * negative value (EN 13757-3 annex); other non-decimal nibbles are errors.
 */
static int
bcd_value(const uint8_t *p, size_t n, int64_t *out)
{
	int64_t v = 0;
	bool neg = false;
	for (size_t i = n; i-- > 0;) {
		unsigned hi = p[i] >> 4, lo = p[i] & 15;
		if (i == n - 1 && hi == 0xF) {
			neg = true;
			hi = 0;
		}
		if (hi > 9 || lo > 9)
			return METER_EMALFORMED;
		v = v * 100 + hi * 10 + lo;
	}
	*out = neg ? -v : v;
	return 0;
}

static uint16_t
century(unsigned yy)
{
	/*
	 * The field has 7 bits but holds two digits: 0..80 are this century,
	 * 81..99 the last.  Larger values (meters send 127 as "no date") are
	 * read the way the common decoders do, as 1900 + yy.
	 */
	return (uint16_t)(yy <= 80 ? 2000 + yy : 1900 + yy);
}

static void
date_g(const uint8_t *p, struct mbus_datetime *d)
{
	d->day = p[0] & 0x1F;
	d->month = p[1] & 0x0F;
	d->year = century((unsigned)((p[0] & 0xE0) >> 5 | (p[1] & 0xF0) >> 1));
}

static void
date_f(const uint8_t *p, struct mbus_datetime *d)
{
	d->minute = p[0] & 0x3F;
	d->invalid = (p[0] & 0x80) != 0;
	d->hour = p[1] & 0x1F;
	d->summer = (p[1] & 0x80) != 0;
	date_g(p + 2, d);
}

static int
decode_value(struct mbus_record *r)
{
	const uint8_t *d = r->data;
	size_t n = r->data_len;

	r->type = MBUS_V_NONE;
	switch (r->coding) {
	case MBUS_CODING_NONE:
	case MBUS_CODING_SELECTION:
		return 0;
	case MBUS_CODING_TEXT:
		r->type = MBUS_V_TEXT;
		return 0;
	case MBUS_CODING_BINARY:
	case MBUS_CODING_MANUFACTURER:
		r->type = MBUS_V_BYTES;
		return 0;
	case MBUS_CODING_REAL: {
		float fv;
		uint32_t u = le_u(d, 4);
		memcpy(&fv, &u, 4);
		r->type = MBUS_V_NUMBER;
		r->value = (double)fv * r->info.scale;
		return 0;
	}
	case MBUS_CODING_INT:
		if (r->info.kind == MBUS_V_DATE && n == 2) {
			r->type = MBUS_V_DATE;
			date_g(d, &r->dt);
			return 0;
		}
		if (r->info.kind == MBUS_V_DATETIME && n == 4) {
			r->type = MBUS_V_DATETIME;
			date_f(d, &r->dt);
			return 0;
		}
		if (r->info.kind == MBUS_V_DATETIME && n == 6) {
			/* Type I: seconds, then type F's layout shifted by one byte. */
			r->type = MBUS_V_DATETIME;
			r->dt.second = d[0] & 0x3F;
			r->dt.has_seconds = true;
			date_f(d + 1, &r->dt);
			return 0;
		}
		if (r->info.kind == MBUS_V_DATETIME && n == 3) {
			r->type = MBUS_V_TIME;
			r->dt.second = d[0] & 0x3F;
			r->dt.minute = d[1] & 0x3F;
			r->dt.hour = d[2] & 0x1F;
			r->dt.has_seconds = true;
			return 0;
		}
		r->ival = le_signed(d, n);
		r->is_int = true;
		r->type = MBUS_V_NUMBER;
		r->value = (double)r->ival * r->info.scale;
		return 0;
	case MBUS_CODING_BCD: {
		/*
		 * Digits A-E are the meter's error or blank markers (EN 13757-3
		 * annex B), sent e.g. as "value during error state".  They make
		 * no number; the record is kept, with its digits as text, rather
		 * than losing the rest of the telegram.
		 */
		if (bcd_value(d, n, &r->ival) < 0) {
			r->bcd_invalid = true;
			r->type = MBUS_V_BYTES;
			return 0;
		}
		r->is_int = true;
		r->type = MBUS_V_NUMBER;
		r->value = (double)r->ival * r->info.scale;
		return 0;
	}
	}
	return METER_EMALFORMED;
}

/* Data length of DIF codings 0..0xF; -1 for LVAR (0xD), -2 special. */
static const int8_t coding_len[16] = {0, 1, 2, 3, 4, 4, 6, 8, 0, 1, 2, 3, 4, -1, 6, -2};

int
mbus_records_next(struct mbus_iter *it, struct mbus_record *r)
{
	const uint8_t *p = it->p;
	size_t len = it->len, i = it->off;

	if (it->done)
		return 0;
	/* Idle fillers between records carry nothing. */
	while (i < len && p[i] == 0x2F)
		i++;
	if (i >= len) {
		it->off = i;
		it->done = true;
		return 0;
	}

	memset(r, 0, sizeof(*r));
	size_t start = i;
	uint8_t dif = p[i++];
	r->dif = dif;

	if (dif == 0x0F || dif == 0x1F) {
		/* Manufacturer data runs to the end of the telegram. */
		r->function = dif == 0x0F ? MBUS_FN_MANUFACTURER : MBUS_FN_MORE_FOLLOWS;
		r->coding = MBUS_CODING_MANUFACTURER;
		r->data = p + i;
		r->data_len = len - i;
		r->raw = p + start;
		r->raw_len = len - start;
		r->info.quantity = "manufacturer specific";
		r->info.unit = "";
		r->info.scale = 1;
		r->info.manufacturer = true;
		r->type = MBUS_V_BYTES;
		it->off = len;
		it->done = true;
		return 1;
	}
	if ((dif & 0x0F) == 0x0F)	/* 0x2F handled above; 0x3F..0x6F reserved */
		return METER_EMALFORMED;

	r->function = (enum mbus_function)((dif >> 4) & 3);
	r->storage = (dif >> 6) & 1;

	/* DIFE chain: storage 4 bits, tariff 2, subunit 1 per extension. */
	if (dif & 0x80) {
		r->dife = p + i;
		uint8_t e;
		do {
			if (i >= len)
				return METER_ELENGTH;
			if (r->ndife == MBUS_MAX_DIFE)
				return METER_ELIMIT;
			e = p[i++];
			unsigned k = r->ndife++;
			r->storage |= (uint64_t)(e & 0x0F) << (1 + 4 * k);
			r->tariff |= (uint32_t)((e >> 4) & 3) << (2 * k);
			r->subunit |= (uint16_t)(((e >> 6) & 1) << k);
		} while (e & 0x80);
		r->has_dife = true;
	}

	/* VIB. */
	if (i >= len)
		return METER_ELENGTH;
	r->vif = p[i++];
	r->has_vif = true;
	if ((r->vif & 0x7F) == 0x7C) {
		/* Plain-text unit: length and ASCII come straight after the VIF. */
		if (i >= len)
			return METER_ELENGTH;
		size_t tl = p[i++];
		if (tl > len - i)
			return METER_ELENGTH;
		r->vif_text = p + i;
		r->vif_text_len = (uint8_t)tl;
		i += tl;
	}
	if (r->vif & 0x80) {
		r->vife = p + i;
		uint8_t e;
		do {
			if (i >= len)
				return METER_ELENGTH;
			if (r->nvife == MBUS_MAX_VIFE)
				return METER_ELIMIT;
			e = p[i++];
			r->nvife++;
		} while (e & 0x80);
	}
	mbus_vif_lookup(r->vif, r->vife, r->nvife, &r->info);

	/* Data field. */
	unsigned c = dif & 0x0F;
	size_t dl;
	if (c == 0x0D) {
		if (i >= len)
			return METER_ELENGTH;
		uint8_t lv = p[i++];
		if (lv <= 0xBF) {
			r->coding = MBUS_CODING_TEXT;
			dl = lv;
		} else if (lv >= 0xC0 && lv <= 0xC9) {
			r->coding = MBUS_CODING_BCD;
			dl = (size_t)(lv - 0xC0);
		} else if (lv >= 0xD0 && lv <= 0xD9) {
			r->coding = MBUS_CODING_BCD;
			dl = (size_t)(lv - 0xD0);
		} else if (lv >= 0xE0 && lv <= 0xEF) {
			r->coding = MBUS_CODING_BINARY;
			dl = (size_t)(lv - 0xE0);
		} else if (lv >= 0xF0 && lv <= 0xFA) {
			r->coding = MBUS_CODING_BINARY;
			dl = 4 * (size_t)(lv - 0xEC);
		} else
			return METER_EMALFORMED;
		if (dl > len - i)
			return METER_ELENGTH;
		r->data = p + i;
		r->data_len = dl;
		i += dl;
		if (r->coding == MBUS_CODING_BCD) {
			/* LVAR BCD longer than an int64 holds is kept as bytes. */
			if (dl > 9) {
				r->coding = MBUS_CODING_BINARY;
			} else {
				if (bcd_value(r->data, dl, &r->ival) < 0) {
					r->bcd_invalid = true;
					r->type = MBUS_V_BYTES;
					goto done;
				}
				if (lv >= 0xD0)
					r->ival = -r->ival;
				r->is_int = true;
				r->type = MBUS_V_NUMBER;
				r->value = (double)r->ival * r->info.scale;
				goto done;
			}
		}
	} else {
		dl = (size_t)coding_len[c];
		if (dl > len - i)
			return METER_ELENGTH;
		r->data = p + i;
		r->data_len = dl;
		i += dl;
		if (c == 0x08)
			r->coding = MBUS_CODING_SELECTION;
		else if (c == 0)
			r->coding = MBUS_CODING_NONE;
		else if (c == 5)
			r->coding = MBUS_CODING_REAL;
		else if (c >= 9)
			r->coding = MBUS_CODING_BCD;
		else
			r->coding = MBUS_CODING_INT;
	}
	if (r->data_len == 0 && r->coding != MBUS_CODING_TEXT && r->coding != MBUS_CODING_BINARY)
		r->coding = r->coding == MBUS_CODING_SELECTION ? MBUS_CODING_SELECTION
							      : MBUS_CODING_NONE;
	{
		int rc = decode_value(r);
		if (rc < 0)
			return rc;
	}
done:
	r->raw = p + start;
	r->raw_len = i - start;
	it->off = i;
	return 1;
}

int
mbus_records_decode(const struct mbus_telegram *t, struct mbus_record *recs, size_t cap,
		    size_t *n)
{
	struct mbus_iter it;
	struct mbus_record tmp;
	int rc;

	*n = 0;
	mbus_iter_init(&it, t);
	for (;;) {
		rc = mbus_records_next(&it, *n < cap ? &recs[*n] : &tmp);
		if (rc <= 0)
			return rc;
		if (*n == cap)
			return METER_ENOSPC;
		(*n)++;
	}
}

/* Units of the fixed-data structure (EN 13757-3 annex): unit, 10^exp. */
static void
fixed_unit(unsigned code, struct mbus_vif_info *info)
{
	static const struct {
		uint8_t lo, hi;
		const char *q, *u;
		int8_t exp;
	} t[] = {
		{0x02, 0x0A, "energy", "Wh", 0},  {0x0B, 0x13, "energy", "J", 3},
		{0x14, 0x1C, "power", "W", 0},	  {0x1D, 0x25, "power", "J/h", 3},
		{0x26, 0x2E, "volume", "m^3", -6}, {0x2F, 0x37, "volume flow", "m^3/h", -6},
	};
	info->quantity = "reserved";
	info->unit = "";
	info->scale = 1;
	info->kind = MBUS_V_NUMBER;
	info->plain_text = info->manufacturer = false;
	if (code == 0x38) {
		info->quantity = "temperature";
		info->unit = "°C";
		info->scale = 1e-3;
		return;
	}
	if (code == 0x39) {
		info->quantity = "units for H.C.A.";
		info->unit = "HCA";
		return;
	}
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		if (code < t[i].lo || code > t[i].hi)
			continue;
		int e = t[i].exp + (int)(code - t[i].lo);
		double s = 1;
		for (; e > 0; e--)
			s *= 10;
		for (; e < 0; e++)
			s /= 10;
		info->quantity = t[i].q;
		info->unit = t[i].u;
		info->scale = s;
		return;
	}
}

int
mbus_fixed_record(const struct mbus_telegram *t, int index, struct mbus_record *r)
{
	if (t->kind != MBUS_TG_FIXED || index < 0 || index > 1)
		return METER_EINVAL;
	memset(r, 0, sizeof(*r));
	/* Status bit 7: counters binary (1) or BCD (0); bit 6: historic. */
	uint8_t st = t->hdr.status;
	r->function = st & 0x40 ? MBUS_FN_HISTORIC : MBUS_FN_ACTUAL;
	r->data = t->fixed + 2 + 4 * index;
	r->data_len = 4;
	r->raw = r->data;
	r->raw_len = 4;
	fixed_unit(t->fixed[index] & 0x3F, &r->info);
	if (st & 0x80) {
		r->coding = MBUS_CODING_INT;
		r->ival = (int64_t)le_u(r->data, 4);
	} else {
		r->coding = MBUS_CODING_BCD;
		int rc = bcd_value(r->data, 4, &r->ival);
		if (rc < 0)
			return rc;
	}
	r->is_int = true;
	r->type = MBUS_V_NUMBER;
	r->value = (double)r->ival * r->info.scale;
	return 0;
}

static int
hex_out(char *buf, size_t cap, const uint8_t *p, size_t n, bool reverse)
{
	static const char hx[] = "0123456789abcdef";
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		uint8_t b = reverse ? p[n - 1 - i] : p[i];
		if (o + 2 < cap) {
			buf[o] = hx[b >> 4];
			buf[o + 1] = hx[b & 15];
		}
		o += 2;
	}
	if (cap)
		buf[o < cap ? o : cap - 1] = '\0';
	return (int)o;
}

int
mbus_value_format(const struct mbus_record *r, char *buf, size_t cap)
{
	const struct mbus_datetime *d = &r->dt;

	switch (r->type) {
	case MBUS_V_NONE:
		if (cap)
			buf[0] = '\0';
		return 0;
	case MBUS_V_NUMBER:
		return snprintf(buf, cap, "%.17g", r->value);
	case MBUS_V_DATE:
		return snprintf(buf, cap, "%04u-%02u-%02u", d->year, d->month, d->day);
	case MBUS_V_DATETIME:
		if (d->has_seconds)
			return snprintf(buf, cap, "%04u-%02u-%02uT%02u:%02u:%02u", d->year, d->month,
					d->day, d->hour, d->minute, d->second);
		return snprintf(buf, cap, "%04u-%02u-%02uT%02u:%02u", d->year, d->month, d->day,
				d->hour, d->minute);
	case MBUS_V_TIME:
		return snprintf(buf, cap, "%02u:%02u:%02u", d->hour, d->minute, d->second);
	case MBUS_V_TEXT: {
		/* Sent last character first. */
		size_t o = 0;
		for (size_t i = r->data_len; i-- > 0; o++)
			if (o + 1 < cap)
				buf[o] = (char)r->data[i];
		if (cap)
			buf[o < cap ? o : cap - 1] = '\0';
		return (int)o;
	}
	case MBUS_V_BYTES:
		/* Binary and BCD digits most significant first; manufacturer data as sent. */
		return hex_out(buf, cap, r->data, r->data_len, r->coding != MBUS_CODING_MANUFACTURER);
	}
	return 0;
}
