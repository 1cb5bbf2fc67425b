/*
 * ctl_decode_mbus.c: `ammctl decode mbus HEX|-`: decodes captured M-Bus
 * bytes (one telegram, or several back to back such as a multi-telegram
 * readout) to JSON: frame, header and a `records` array per telegram.
 * Every telegram is decoded in full before anything is printed, so bad
 * input gives a message on stderr and exit code 1, never half a document.
 * The field names are documented in README.md.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "json.h"
#include "mbus.h"

#define MAX_TELEGRAMS 64
#define MAX_RECORDS   128

struct decoded {
	struct mbus_frame f;
	struct mbus_telegram t;
	struct mbus_record recs[MAX_RECORDS];
	size_t nrec;
};

static const char *
frame_type_name(enum mbus_frame_type t)
{
	switch (t) {
	case MBUS_FRAME_ACK:
		return "ack";
	case MBUS_FRAME_SHORT:
		return "short";
	case MBUS_FRAME_CONTROL:
		return "control";
	case MBUS_FRAME_LONG:
		return "long";
	}
	return "unknown";
}

static const char *
kind_name(enum mbus_telegram_kind k)
{
	switch (k) {
	case MBUS_TG_VARIABLE:
		return "variable";
	case MBUS_TG_FIXED:
		return "fixed";
	case MBUS_TG_APP_ERROR:
		return "application_error";
	case MBUS_TG_SELECT:
		return "selection";
	}
	return "unknown";
}

/* Decodes one frame's application layer; prints why not on failure. */
static int
decode_one(struct decoded *d, size_t offset)
{
	int rc;

	d->nrec = 0;
	if (d->f.type == MBUS_FRAME_ACK || d->f.type == MBUS_FRAME_SHORT)
		return 0;
	rc = mbus_telegram_decode(&d->f, &d->t);
	if (rc < 0) {
		fprintf(stderr, "ammctl decode mbus: frame at offset %zu, CI 0x%02x: %s\n", offset,
			d->f.ci, meter_strerror(rc));
		return -1;
	}
	if (d->t.kind == MBUS_TG_FIXED) {
		for (int i = 0; i < 2; i++)
			if ((rc = mbus_fixed_record(&d->t, i, &d->recs[i])) < 0)
				goto fail;
		d->nrec = 2;
		return 0;
	}
	rc = mbus_records_decode(&d->t, d->recs, MAX_RECORDS, &d->nrec);
	if (rc < 0)
		goto fail;
	return 0;
fail:
	fprintf(stderr, "ammctl decode mbus: frame at offset %zu, record %zu: %s\n", offset,
		d->nrec, meter_strerror(rc));
	return -1;
}

static void
print_record(struct json *j, const struct mbus_record *r, size_t index)
{
	char buf[1024];

	json_obj_begin(j, NULL);
	json_uint(j, "index", index);
	json_str(j, "function", mbus_function_name(r->function));
	json_uint(j, "storage", r->storage);
	if (r->has_dife) {
		json_uint(j, "tariff", r->tariff);
		json_uint(j, "subunit", r->subunit);
	} else {
		json_null(j, "tariff");
		json_null(j, "subunit");
	}
	if (r->info.plain_text) {
		size_t k = 0;
		for (size_t i = r->vif_text_len; i-- > 0 && k + 1 < sizeof(buf);)
			buf[k++] = (char)r->vif_text[i];
		json_strn(j, "unit", buf, k);
	} else
		json_str(j, "unit", r->info.unit);
	json_str(j, "quantity", r->info.quantity);
	switch (r->type) {
	case MBUS_V_NONE:
		json_null(j, "value");
		break;
	case MBUS_V_NUMBER:
		json_double(j, "value", r->value);
		break;
	default:
		mbus_value_format(r, buf, sizeof(buf));
		json_str(j, "value", buf);
		break;
	}
	json_hex(j, "raw", r->raw, r->raw_len);
	json_obj_end(j);
}

static void
print_telegram(struct json *j, const struct decoded *d)
{
	const struct mbus_telegram *t = &d->t;
	char man[4];

	json_obj_begin(j, NULL);
	json_str(j, "frame", frame_type_name(d->f.type));
	if (d->f.type == MBUS_FRAME_ACK) {
		json_obj_end(j);
		return;
	}
	json_str(j, "c", mbus_c_name(d->f.c));
	json_uint(j, "c_raw", d->f.c);
	json_uint(j, "a", d->f.a);
	if (d->f.type == MBUS_FRAME_SHORT) {
		json_obj_end(j);
		return;
	}
	json_uint(j, "ci", d->f.ci);
	json_str(j, "kind", kind_name(t->kind));
	if (t->kind == MBUS_TG_APP_ERROR) {
		json_obj_begin(j, "application_error");
		if (t->app_error >= 0)
			json_int(j, "code", t->app_error);
		else
			json_null(j, "code");
		json_str(j, "text", mbus_app_error_text(t->app_error));
		json_obj_end(j);
	}
	if (t->kind == MBUS_TG_SELECT) {
		json_obj_begin(j, "selection");
		json_hex(j, "id_bcd", t->sel.id_bcd, 4);
		json_uint(j, "manufacturer", t->sel.manufacturer);
		json_uint(j, "version", t->sel.version);
		json_uint(j, "medium", t->sel.medium);
		json_obj_end(j);
	}
	if (t->kind == MBUS_TG_VARIABLE || t->kind == MBUS_TG_FIXED) {
		char id[16];
		json_obj_begin(j, "header");
		if (t->hdr.has_id) {
			snprintf(id, sizeof(id), "%08lu", (unsigned long)t->hdr.id);
			json_str(j, "id", id);
			mbus_manufacturer(t->hdr.manufacturer, man);
			if (t->ci != MBUS_CI_RSP_FIXED) {
				json_str(j, "manufacturer", man);
				json_uint(j, "version", t->hdr.version);
			}
			json_uint(j, "medium", t->hdr.medium);
			json_str(j, "medium_name", mbus_medium_name(t->hdr.medium));
		}
		json_uint(j, "access", t->hdr.access);
		json_uint(j, "status", t->hdr.status);
		if (t->ci != MBUS_CI_RSP_FIXED)
			json_uint(j, "signature", t->hdr.signature);
		json_obj_end(j);
		bool more = false;
		json_arr_begin(j, "records");
		for (size_t i = 0; i < d->nrec; i++) {
			print_record(j, &d->recs[i], i);
			if (d->recs[i].function == MBUS_FN_MORE_FOLLOWS)
				more = true;
		}
		json_arr_end(j);
		json_bool(j, "more_records_follow", more);
	}
	json_obj_end(j);
}

int
ctl_decode_mbus(int argc, char **argv)
{
	char err[256];
	size_t len, off = 0, n = 0;
	uint8_t *buf;
	struct decoded *d = NULL;
	int status = 1;

	if (argc != 1) {
		fprintf(stderr, "usage: ammctl decode mbus HEX|-\n");
		return 2;
	}
	buf = ctl_read_hex(argv[0], &len, err, sizeof(err));
	if (buf == NULL) {
		fprintf(stderr, "ammctl decode mbus: %s\n", err);
		return 1;
	}
	d = calloc(MAX_TELEGRAMS, sizeof(*d));
	if (d == NULL) {
		fprintf(stderr, "ammctl decode mbus: out of memory\n");
		goto out;
	}
	/* Frames back to back; anything between or after them is an error. */
	while (off < len) {
		if (n == MAX_TELEGRAMS) {
			fprintf(stderr, "ammctl decode mbus: more than %d frames\n", MAX_TELEGRAMS);
			goto out;
		}
		int rc = mbus_frame_parse(buf + off, len - off, &d[n].f);
		if (rc == METER_ENEEDMORE) {
			fprintf(stderr, "ammctl decode mbus: frame at offset %zu is cut short "
					"(%zu bytes present)\n", off, len - off);
			goto out;
		}
		if (rc < 0) {
			fprintf(stderr, "ammctl decode mbus: no valid frame at offset %zu (byte 0x%02x): %s\n",
				off, buf[off], meter_strerror(rc));
			goto out;
		}
		if (decode_one(&d[n], off) < 0)
			goto out;
		off += (size_t)rc;
		n++;
	}

	struct json j;
	json_init(&j, stdout, true);
	if (n > 1)
		json_arr_begin(&j, NULL);
	for (size_t i = 0; i < n; i++)
		print_telegram(&j, &d[i]);
	if (n > 1)
		json_arr_end(&j);
	json_end(&j);
	status = 0;
out:
	free(d);
	free(buf);
	return status;
}
