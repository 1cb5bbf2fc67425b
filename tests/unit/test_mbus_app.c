/*
 * test_mbus_app.c: the EN 13757-3 decoder against the shared corpus.
 * Every frame in vectors/mbus/frames must decode to the records an
 * independent decoder found (NAME.json), and every telegram in
 * vectors/mbus/negative must be handled as that folder's README says.
 * Our names for units and quantities are mapped onto the reference's
 * spelling here, in the test.
 */
#include <criterion/criterion.h>
#include <ctype.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "mbus.h"
#include "vectors.h"

/* ---- a reader for the corpus's flat JSON: a list of flat objects ---------- */

enum jkind { J_NULL, J_NUM, J_STR };

struct jval {
	enum jkind kind;
	double num;
	char str[512];
};

struct ref_record {
	char function[64];
	double storage;
	struct jval tariff, device, unit, quantity, value;
};

static const char *
skip_ws(const char *p)
{
	while (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t' || *p == ',')
		p++;
	return p;
}

static const char *
parse_string(const char *p, char *out, size_t cap)
{
	size_t o = 0;
	cr_assert_eq(*p, '"');
	for (p++; *p && *p != '"'; p++) {
		char c = *p;
		if (c == '\\') {
			p++;
			c = *p == 'n' ? '\n' : *p;
		}
		if (o + 1 < cap)
			out[o++] = c;
	}
	cr_assert_eq(*p, '"', "unterminated string");
	out[o] = '\0';
	return p + 1;
}

static const char *
parse_value(const char *p, struct jval *v)
{
	if (strncmp(p, "null", 4) == 0) {
		v->kind = J_NULL;
		return p + 4;
	}
	if (*p == '"') {
		v->kind = J_STR;
		return parse_string(p, v->str, sizeof(v->str));
	}
	char *end;
	v->kind = J_NUM;
	v->num = strtod(p, &end);
	cr_assert_neq(end, p, "bad JSON value at '%.20s'", p);
	return end;
}

/* Parses NAME.json into recs; returns the count. */
static size_t
load_reference(const char *text, struct ref_record *recs, size_t cap)
{
	const char *p = skip_ws(text);
	size_t n = 0;

	cr_assert_eq(*p, '[');
	p = skip_ws(p + 1);
	while (*p == '{') {
		cr_assert_lt(n, cap);
		struct ref_record *r = &recs[n++];
		memset(r, 0, sizeof(*r));
		p = skip_ws(p + 1);
		while (*p == '"') {
			char key[64];
			struct jval v;
			p = parse_string(p, key, sizeof(key));
			p = skip_ws(p);
			cr_assert_eq(*p, ':');
			p = parse_value(skip_ws(p + 1), &v);
			if (strcmp(key, "Function") == 0)
				snprintf(r->function, sizeof(r->function), "%.63s", v.str);
			else if (strcmp(key, "StorageNumber") == 0)
				r->storage = v.kind == J_NUM ? v.num : 0;
			else if (strcmp(key, "Tariff") == 0)
				r->tariff = v;
			else if (strcmp(key, "Device") == 0)
				r->device = v;
			else if (strcmp(key, "Unit") == 0)
				r->unit = v;
			else if (strcmp(key, "Quantity") == 0)
				r->quantity = v;
			else if (strcmp(key, "Value") == 0)
				r->value = v;
			p = skip_ws(p);
		}
		cr_assert_eq(*p, '}');
		p = skip_ws(p + 1);
	}
	cr_assert_eq(*p, ']');
	return n;
}

/* ---- our names onto the reference's ---------------------------------------- */

static const char *const function_map[][2] = {
	{"instantaneous", "Instantaneous value"},
	{"maximum", "Maximum value"},
	{"minimum", "Minimum value"},
	{"error state", "Value during error state"},
	{"manufacturer specific", "Manufacturer specific"},
	{"more records follow", "More records follow"},
	{"actual", "Actual value"},
};

static const char *const quantity_map[][2] = {
	{"energy", "Energy"},
	{"volume", "Volume"},
	{"mass", "Mass"},
	{"on time", "On time"},
	{"operating time", "Operating time"},
	{"power", "Power"},
	{"volume flow", "Volume flow"},
	{"flow temperature", "Flow temperature"},
	{"return temperature", "Return temperature"},
	{"temperature difference", "Temperature difference"},
	{"external temperature", "External temperature"},
	{"pressure", "Pressure"},
	{"date", "Time point (date)"},
	{"date and time", "Time point (date & time)"},
	{"units for H.C.A.", "H.C.A."},
	{"averaging duration", "Averaging Duration"},
	{"actuality duration", "Actuality Duration"},
	{"fabrication number", "Fabrication No"},
	{"model version", "Model / Version"},
	{"parameter set identification", "Parameter set identification"},
	{"firmware version", "Firmware version"},
	{"software version", "Software version"},
	{"customer location", "Customer location"},
	{"error flags", "Error flags"},
	{"digital input", "Digital Input"},
	{"dimensionless", "Dimensionless"},
	{"voltage", "Voltage"},
	{"current", "Current"},
	{"reset counter", "Reset counter"},
	{"manufacturer specific", "Manufacturer specific"},
	{"reserved", "Reserved"},
};

static const char *
map_name(const char *const (*map)[2], size_t n, const char *ours)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(map[i][0], ours) == 0)
			return map[i][1];
	return ours;
}

/* Units the reference keeps in larger steps (fixed-data frames). */
static const struct {
	const char *ref, *ours;
	double factor; /* ours = ref * factor */
} unit_steps[] = {
	{"kWh", "Wh", 1e3},
	{"l", "m^3", 1e-3},
};

static bool
units_agree(const char *ours, const char *ref, double *factor)
{
	*factor = 1;
	if (strcmp(ours, ref) == 0)
		return true;
	/* The reference writes "-", "" or "Reserved" where there is no unit. */
	if (*ours == '\0' && (!strcmp(ref, "") || !strcmp(ref, "-") || !strcmp(ref, "Reserved")))
		return true;
	if (strcmp(ours, "HCA") == 0 && strcmp(ref, "Units for H.C.A.") == 0)
		return true;
	for (size_t i = 0; i < sizeof(unit_steps) / sizeof(unit_steps[0]); i++)
		if (!strcmp(ref, unit_steps[i].ref) && !strcmp(ours, unit_steps[i].ours)) {
			*factor = unit_steps[i].factor;
			return true;
		}
	return false;
}

/* Reference value text to our form: no spaces, lowercase hex, no "Z". */
static void
normalise_ref_text(const char *in, char *out, size_t cap)
{
	size_t o = 0;
	bool hex = true;
	for (const char *q = in; *q; q++)
		if (!(isxdigit((unsigned char)*q) || *q == ' '))
			hex = false;
	for (const char *q = in; *q && o + 1 < cap; q++) {
		if (hex && *q == ' ')
			continue;
		out[o++] = hex ? (char)tolower((unsigned char)*q) : *q;
	}
	out[o] = '\0';
	if (o && out[o - 1] == 'Z')
		out[--o] = '\0';
}

/* ---- decoding a corpus file -------------------------------------------------- */

#define MAXREC 128

/* Decodes one frame file's bytes; returns the record count or an error. */
static int
decode_all(const uint8_t *p, size_t n, struct mbus_telegram *t, struct mbus_record *recs,
	   size_t cap)
{
	struct mbus_frame f;
	int rc = mbus_frame_parse(p, n, &f);
	if (rc < 0)
		return rc;
	if ((size_t)rc != n)
		return METER_ELENGTH;
	rc = mbus_telegram_decode(&f, t);
	if (rc < 0)
		return rc;
	if (t->kind == MBUS_TG_FIXED) {
		for (int i = 0; i < 2; i++)
			if ((rc = mbus_fixed_record(t, i, &recs[i])) < 0)
				return rc;
		return 2;
	}
	size_t k;
	rc = mbus_records_decode(t, recs, cap, &k);
	return rc < 0 ? rc : (int)k;
}

static void
check_frame(const char *name)
{
	char rel[256];
	size_t len, n;
	static struct ref_record ref[MAXREC];
	struct mbus_record recs[MAXREC];
	struct mbus_telegram t;

	snprintf(rel, sizeof(rel), "mbus/frames/%s.json", name);
	char *json = slurp(vectors_path(rel), &len);
	cr_assert_not_null(json, "cannot read %s", rel);
	size_t nref = load_reference(json, ref, MAXREC);
	free(json);

	snprintf(rel, sizeof(rel), "mbus/frames/%s.hex", name);
	char *hex = slurp(vectors_path(rel), &len);
	cr_assert_not_null(hex);
	uint8_t *bytes = hex_tail(hex, &n);
	free(hex);
	cr_assert_not_null(bytes, "%s: bad hex", name);

	int nrec = decode_all(bytes, n, &t, recs, MAXREC);
	cr_assert_geq(nrec, 0, "%s: %s", name, meter_strerror(nrec));
	cr_assert_eq((size_t)nrec, nref, "%s: %d records, reference has %zu", name, nrec, nref);

	for (size_t i = 0; i < nref; i++) {
		const struct mbus_record *r = &recs[i];
		const struct ref_record *e = &ref[i];
		const char *fn = map_name(function_map, sizeof(function_map) / sizeof(function_map[0]),
					  mbus_function_name(r->function));
		cr_assert_str_eq(fn, e->function, "%s #%zu: function", name, i);
		cr_assert_eq((double)r->storage, e->storage, "%s #%zu: storage", name, i);
		if (e->tariff.kind == J_NULL) {
			cr_assert(!r->has_dife || r->function == MBUS_FN_ACTUAL, "%s #%zu", name, i);
		} else {
			cr_assert(r->has_dife, "%s #%zu: tariff expected", name, i);
			cr_assert_eq((double)r->tariff, e->tariff.num, "%s #%zu: tariff", name, i);
			cr_assert_eq((double)r->subunit, e->device.num, "%s #%zu: subunit", name, i);
		}

		/* Quantity and unit; a plain-text VIF's text is the reference's quantity. */
		double factor = 1;
		char text[64];
		if (r->info.plain_text) {
			size_t k = 0;
			for (size_t j = r->vif_text_len; j-- > 0 && k + 1 < sizeof(text);)
				text[k++] = (char)r->vif_text[j];
			text[k] = '\0';
			cr_assert_str_eq(text, e->quantity.str, "%s #%zu: plain-text unit", name, i);
		} else if (e->quantity.kind == J_STR && e->quantity.str[0] != '\0') {
			const char *q = map_name(quantity_map,
						 sizeof(quantity_map) / sizeof(quantity_map[0]),
						 r->info.quantity);
			cr_assert_str_eq(q, e->quantity.str, "%s #%zu: quantity", name, i);
			cr_assert(units_agree(r->info.unit, e->unit.str, &factor),
				  "%s #%zu: unit '%s' vs '%s'", name, i, r->info.unit, e->unit.str);
		} else if (e->unit.kind == J_STR) {
			cr_assert(units_agree(r->info.unit, e->unit.str, &factor),
				  "%s #%zu: unit '%s' vs '%s'", name, i, r->info.unit, e->unit.str);
		}

		if (r->bcd_invalid) {
			/*
			 * BCD with digits A-E (error markers): the reference runs
			 * them through decimal arithmetic and gets a number; we
			 * keep the digits as text instead.  Check those digits.
			 */
			char got[64], want[64];
			mbus_value_format(r, got, sizeof(got));
			size_t k = 0;
			for (size_t j = r->data_len; j-- > 0;)
				k += (size_t)snprintf(want + k, sizeof(want) - k, "%02x", r->data[j]);
			cr_assert_str_eq(got, want);
			cr_assert_eq(e->value.kind, J_NUM);
		} else if (e->value.kind == J_NUM) {
			cr_assert_eq(r->type, MBUS_V_NUMBER, "%s #%zu: not a number", name, i);
			double want = e->value.num * factor;
			double tol = fabs(want) * 1e-6 + 1e-12;
			/* The reference prints reals rounded to six decimals. */
			if (r->coding == MBUS_CODING_REAL)
				tol += 5e-7 * factor;
			cr_assert(fabs(r->value - want) <= tol, "%s #%zu: value %.17g, want %.17g", name,
				  i, r->value, want);
		} else {
			char want[1024], got[1024];
			normalise_ref_text(e->value.str, want, sizeof(want));
			mbus_value_format(r, got, sizeof(got));
			/* Type F has no seconds; the reference prints ":00". */
			if (r->type == MBUS_V_DATETIME && !r->dt.has_seconds)
				strcat(got, ":00");
			cr_assert_str_eq(got, want, "%s #%zu: value '%s' want '%s'", name, i, got, want);
		}
	}
	tail_free(bytes);
}

static int
cmpstr(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

Test(mbus_app, every_corpus_frame_matches_reference)
{
	DIR *d = opendir(vectors_path("mbus/frames"));
	cr_assert_not_null(d, "no mbus/frames under the vectors directory");
	char *names[256];
	size_t n = 0;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		size_t l = strlen(de->d_name);
		if (l > 4 && strcmp(de->d_name + l - 4, ".hex") == 0 && n < 256)
			names[n++] = strndup(de->d_name, l - 4);
	}
	closedir(d);
	qsort(names, n, sizeof(names[0]), cmpstr);
	cr_assert_eq(n, 45, "expected 45 frames, found %zu", n);
	for (size_t i = 0; i < n; i++) {
		check_frame(names[i]);
		free(names[i]);
	}
}

/* ---- negative telegrams ------------------------------------------------------ */

/* Tolerant hex: a lone digit in the corpus ("D 04 ...") stands for one byte. */
static uint8_t *
tokens_tail(const char *text, size_t *n)
{
	uint8_t tmp[512];
	size_t k = 0;
	const char *p = text;
	while (*p) {
		while (*p == ' ' || *p == '\n')
			p++;
		if (!*p)
			break;
		char *end;
		unsigned long v = strtoul(p, &end, 16);
		cr_assert_neq(end, p);
		tmp[k++] = (uint8_t)v;
		p = end;
	}
	static const char hx[] = "0123456789abcdef";
	char hex[1100];
	for (size_t i = 0; i < k; i++) {
		hex[2 * i] = hx[tmp[i] >> 4];
		hex[2 * i + 1] = hx[tmp[i] & 15];
	}
	hex[2 * k] = '\0';
	return hex_tail(hex, n);
}

static int
negative(const char *name, struct mbus_telegram *t)
{
	char rel[256];
	size_t len, n;
	struct mbus_record recs[MAXREC];

	snprintf(rel, sizeof(rel), "mbus/negative/%s.hex", name);
	char *hex = slurp(vectors_path(rel), &len);
	cr_assert_not_null(hex, "cannot read %s", rel);
	uint8_t *bytes = tokens_tail(hex, &n);
	free(hex);
	int rc = decode_all(bytes, n, t, recs, MAXREC);
	tail_free(bytes);
	return rc;
}

static const struct {
	const char *name;
	int code;
	const char *text;
} app_errors[] = {
	{"application_busy", 8, "application busy"},
	{"error", -1, "unspecified error (no code)"},
	{"too_many_readouts", 9, "too many readouts"},
	{"unimplemented_ci", 1, "unimplemented CI-field"},
	{"unspecified_error", 0, "unspecified error"},
};

Test(mbus_app, application_errors_decode_as_status)
{
	for (size_t i = 0; i < sizeof(app_errors) / sizeof(app_errors[0]); i++) {
		struct mbus_telegram t;
		int rc = negative(app_errors[i].name, &t);
		cr_assert_eq(rc, 0, "%s: %d", app_errors[i].name, rc);
		cr_assert_eq(t.kind, MBUS_TG_APP_ERROR);
		cr_assert_eq(t.app_error, app_errors[i].code, "%s", app_errors[i].name);
		cr_assert_str_eq(mbus_app_error_text(t.app_error), app_errors[i].text);
	}
}

static const struct {
	const char *name;
	int err;
} malformed[] = {
	{"premature_end_of_dif1", METER_ELENGTH},
	{"premature_end_of_dif2", METER_ELENGTH},
	{"premature_end_of_var_vif1", METER_ELENGTH},
	{"too_long_var_vif", METER_ELENGTH},
	{"too_many_dife", METER_ELIMIT},
	{"too_many_vife", METER_ELIMIT},
	/* unsupported */
	{"invalid_length", METER_ELENGTH},
	{"manual_frame1", METER_EMALFORMED},
};

Test(mbus_app, malformed_telegrams_are_rejected_with_specific_errors)
{
	for (size_t i = 0; i < sizeof(malformed) / sizeof(malformed[0]); i++) {
		struct mbus_telegram t;
		int rc = negative(malformed[i].name, &t);
		cr_assert_eq(rc, malformed[i].err, "%s: got %d (%s), want %d", malformed[i].name, rc,
			     meter_strerror(rc), malformed[i].err);
	}
}

Test(mbus_app, master_data_send_frames_decode_what_is_well_formed)
{
	/* manual_frame4/5: SND_UD to 254 with CI 0x51, records without header. */
	struct mbus_telegram t;
	cr_assert_eq(negative("manual_frame4", &t), 1);
	cr_assert_eq(t.ci, MBUS_CI_DATA_SEND);
	cr_assert_eq(negative("manual_frame5", &t), 1);
}

Test(mbus_app, kamstrup_382_header_and_records)
{
	size_t len, n;
	char *hex = slurp(vectors_path("mbus/frames/kamstrup_382_005.hex"), &len);
	cr_assert_not_null(hex);
	uint8_t *b = hex_tail(hex, &n);
	free(hex);
	struct mbus_frame f;
	struct mbus_telegram t;
	cr_assert_eq(mbus_frame_parse(b, n, &f), (int)n);
	cr_assert_eq(f.type, MBUS_FRAME_LONG);
	cr_assert_str_eq(mbus_c_name(f.c), "RSP_UD");
	cr_assert_eq(mbus_telegram_decode(&f, &t), 0);
	cr_assert_eq(t.hdr.id, 14839120);
	char m[4];
	mbus_manufacturer(t.hdr.manufacturer, m);
	cr_assert_str_eq(m, "KAM");
	cr_assert_eq(t.hdr.medium, 2);
	cr_assert_str_eq(mbus_medium_name(t.hdr.medium), "electricity");
	cr_assert_eq(t.hdr.version, 1);

	struct mbus_record r[4];
	size_t k;
	cr_assert_eq(mbus_records_decode(&t, r, 4, &k), METER_ENOSPC, "capacity is honoured");
	cr_assert_eq(k, 4);
	cr_assert_str_eq(r[1].info.quantity, "on time");
	cr_assert_eq(r[1].ival, 9);
	cr_assert_eq(r[1].raw, r[0].raw + r[0].raw_len, "records point into the frame");
	tail_free(b);
}

/* Codings the corpus lacks: built by hand from the standard's layouts. */
static const struct {
	const char *hex; /* record area of a CI 0x78 telegram */
	enum mbus_vtype type;
	const char *text;
} codings[] = {
	{"090334", MBUS_V_NUMBER, "34"},			   /* 2-digit BCD, Wh */
	{"0c03785634f2", MBUS_V_NUMBER, "-2345678"},		   /* negative BCD */
	{"0e03785634120000", MBUS_V_NUMBER, "12345678"},	   /* 12-digit BCD */
	{"070301000000000000000f", MBUS_V_NUMBER, "1"},		   /* 64-bit, then 0x0F */
	{"0603ffffffffffff", MBUS_V_NUMBER, "-1"},		   /* 48-bit signed */
	{"036d3b1715", MBUS_V_TIME, "21:23:59"},		   /* type J */
	{"066d3b2a0b7c2c00", MBUS_V_DATETIME, "2019-12-28T11:42:59"}, /* type I */
	{"026c7c2c", MBUS_V_DATE, "2019-12-28"},		   /* type G */
	{"0dfd0bc23412", MBUS_V_NUMBER, "1234"},		   /* LVAR positive BCD */
	{"0dfd0bd23412", MBUS_V_NUMBER, "-1234"},		   /* LVAR negative BCD */
	{"0dfd0be2ff01", MBUS_V_BYTES, "01ff"},			   /* LVAR binary */
	{"0dfd0b03434241", MBUS_V_TEXT, "ABC"},			   /* LVAR text, reversed */
	{"2f2f012b052f", MBUS_V_NUMBER, "5"},			   /* fillers around */
	{"05fd4800002041", MBUS_V_NUMBER, "1"},			   /* real 10.0 V x 0.1 */
};

Test(mbus_app, codings_not_in_corpus)
{
	for (size_t i = 0; i < sizeof(codings) / sizeof(codings[0]); i++) {
		size_t n;
		uint8_t *p = hex_tail(codings[i].hex, &n);
		struct mbus_telegram t = {.kind = MBUS_TG_VARIABLE, .records = p, .records_len = n};
		struct mbus_iter it;
		struct mbus_record r;
		char buf[128];
		mbus_iter_init(&it, &t);
		cr_assert_eq(mbus_records_next(&it, &r), 1, "%s", codings[i].hex);
		cr_assert_eq(r.type, codings[i].type, "%s: type %d", codings[i].hex, r.type);
		mbus_value_format(&r, buf, sizeof(buf));
		cr_assert_str_eq(buf, codings[i].text, "%s", codings[i].hex);
		tail_free(p);
	}
}

Test(mbus_app, selection_and_vife_tables)
{
	struct mbus_vif_info vi;
	static const uint8_t v_fd48[] = {0x48};
	mbus_vif_lookup(0xFD, v_fd48, 1, &vi);
	cr_assert_str_eq(vi.quantity, "voltage");
	cr_assert_float_eq(vi.scale, 0.1, 1e-15);
	static const uint8_t a_fd59[] = {0x59};
	mbus_vif_lookup(0xFD, a_fd59, 1, &vi);
	cr_assert_str_eq(vi.unit, "A");
	cr_assert_float_eq(vi.scale, 1e-3, 1e-18);
	static const uint8_t fb01[] = {0x01};
	mbus_vif_lookup(0xFB, fb01, 1, &vi);
	cr_assert_str_eq(vi.unit, "Wh");
	cr_assert_float_eq(vi.scale, 1e6, 1e-6);
	static const uint8_t corr[] = {0x74};
	mbus_vif_lookup(0x83, corr, 1, &vi);
	cr_assert_float_eq(vi.scale, 1e-2, 1e-15);
	mbus_vif_lookup(0xFF, corr, 1, &vi);
	cr_assert(vi.manufacturer);
	mbus_vif_lookup(0x22, NULL, 0, &vi);
	cr_assert_float_eq(vi.scale, 3600, 0);
}

/* ---- ammctl decode mbus ---------------------------------------------------- */

/* Runs ammctl (build/ammctl, or $AMMCTL) with a shell tail; output in out. */
static int
run_ammctl(const char *args, char *out, size_t cap)
{
	const char *bin = getenv("AMMCTL");
	char cmd[1024];
	if (bin == NULL)
		bin = "build/ammctl";
	snprintf(cmd, sizeof(cmd), "%s decode mbus %s 2>&1", bin, args);
	FILE *p = popen(cmd, "r");
	cr_assert_not_null(p);
	size_t n = fread(out, 1, cap - 1, p);
	out[n] = '\0';
	int st = pclose(p);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

Test(mbus_app, ammctl_decode_mbus_json_and_errors)
{
	static char out[1 << 17];
	char args[1024];

	snprintf(args, sizeof(args), "- < '%s'", vectors_path("mbus/frames/kamstrup_382_005.hex"));
	cr_assert_eq(run_ammctl(args, out, sizeof(out)), 0, "%s", out);
	cr_assert_not_null(strstr(out, "\"manufacturer\": \"KAM\""), "%s", out);
	cr_assert_not_null(strstr(out, "\"id\": \"14839120\""));
	cr_assert_not_null(strstr(out, "\"records\": ["));
	cr_assert_not_null(strstr(out, "\"quantity\": \"on time\""));
	cr_assert_not_null(strstr(out, "\"raw\": \"042209000000\""));
	cr_assert_not_null(strstr(out, "\"function\": \"maximum\""));
	cr_assert_not_null(strstr(out, "\"tariff\": 2"));

	/* Two telegrams in one input: an array of two. */
	char first[512];
	/* vectors_path() returns a static buffer: keep the first path. */
	snprintf(first, sizeof(first), "%s", vectors_path("mbus/negative/application_busy.hex"));
	snprintf(args, sizeof(args), "- < /dev/null 2>/dev/null; cat '%s' '%s' | %s decode mbus -",
		 first, vectors_path("mbus/frames/oms_frame1.hex"),
		 getenv("AMMCTL") ? getenv("AMMCTL") : "build/ammctl");
	cr_assert_eq(run_ammctl(args, out, sizeof(out)), 0, "%s", out);
	cr_assert_eq(out[0], '[', "%s", out);
	cr_assert_not_null(strstr(out, "\"text\": \"application busy\""));
	cr_assert_not_null(strstr(out, "\"value\": \"2008-05-31T23:50\""));

	cr_assert_eq(run_ammctl("'68 04 04 68 08 01 72'", out, sizeof(out)), 1);
	cr_assert_not_null(strstr(out, "cut short"), "%s", out);
	cr_assert_eq(run_ammctl("nothex", out, sizeof(out)), 1);
	snprintf(args, sizeof(args), "- < '%s'", vectors_path("mbus/negative/too_many_dife.hex"));
	cr_assert_eq(run_ammctl(args, out, sizeof(out)), 1);
	cr_assert_not_null(strstr(out, "record"), "%s", out);
}
