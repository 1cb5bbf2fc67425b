/*
 * message.c: outbox rows from readings, events, meter state and command
 * results (see message.h).  Each builder fills the protobuf-c struct of
 * ammd.proto from the caller's plain structs, or writes the same fields as
 * one JSON object, and names the topic.  Nothing here keeps state or does
 * I/O, so the unit tests, the benchmark and the sessions call it alike.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ammd.pb-c.h"
#include "config.h"
#include "json.h"
#include "message.h"
#include "meter_error.h"

void
message_clear(struct message *m)
{
	free(m->payload);
	memset(m, 0, sizeof(*m));
}

/* ---- topics ----------------------------------------------------------------- */

bool
message_topic_safe(const char *s)
{
	size_t n;

	if (s == NULL || (n = strlen(s)) == 0 || n > MESSAGE_SERIAL_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '+' || c == '#' || c == '/' || c < 0x20 || c == 0x7f)
			return false;
	}
	return true;
}

static int topic_printf(char *out, size_t outlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int
topic_printf(char *out, size_t outlen, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(out, outlen, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= outlen) {
		if (outlen > 0)
			out[0] = '\0';
		return METER_EINVAL;
	}
	return 0;
}

int
message_meter_topic(const struct config *cfg, const char *serial, const char *leaf, char *out,
                    size_t outlen)
{
	if (!message_topic_safe(serial))
		return METER_EINVAL;
	return topic_printf(out, outlen, "%s/meter/%s/%s", cfg->mqtt.prefix, serial, leaf);
}

int
message_command_request_topic(const struct config *cfg, char *out, size_t outlen)
{
	return topic_printf(out, outlen, "%s/command/request", cfg->mqtt.prefix);
}

/* ---- payload helpers ---------------------------------------------------------- */

/* Packs any protobuf-c message into a fresh buffer. */
static int
pack(const ProtobufCMessage *pb, struct message *out)
{
	size_t n = protobuf_c_message_get_packed_size(pb);

	/* An empty message packs to zero bytes; keep a valid pointer anyway. */
	if ((out->payload = malloc(n > 0 ? n : 1)) == NULL)
		return METER_ENOSPC;
	out->len = protobuf_c_message_pack(pb, out->payload);
	return 0;
}

/* JSON goes through a memstream so the writer in json.c serves as is. */
struct jbuf {
	FILE *f;
	char *p;
	size_t n;
	struct json j;
};

static int
jbuf_open(struct jbuf *b)
{
	memset(b, 0, sizeof(*b));
	if ((b->f = open_memstream(&b->p, &b->n)) == NULL)
		return METER_ENOSPC;
	json_init(&b->j, b->f, false);
	json_obj_begin(&b->j, NULL);
	return 0;
}

static int
jbuf_close(struct jbuf *b, struct message *out)
{
	bool err;

	json_obj_end(&b->j);
	err = ferror(b->f) != 0;
	if (fclose(b->f) != 0 || err) {
		free(b->p);
		return METER_ENOSPC;
	}
	out->payload = (uint8_t *)b->p;
	out->len = b->n;
	return 0;
}

static const char *
nz(const char *s)
{
	return s != NULL ? s : "";
}

static bool
use_json(const struct config *cfg)
{
	return cfg->mqtt.format == CONFIG_FORMAT_JSON;
}

static int
start(const struct config *cfg, const char *serial, const char *leaf, bool retain,
      struct message *out)
{
	memset(out, 0, sizeof(*out));
	out->qos = cfg->mqtt.qos;
	out->retain = retain;
	return message_meter_topic(cfg, serial, leaf, out->topic, sizeof(out->topic));
}

static int
finish(int rc, struct message *out)
{
	if (rc != 0)
		message_clear(out);
	return rc;
}

/* ---- registers ------------------------------------------------------------------ */

static int
registers_json(const char *serial, int64_t read_at, const struct message_register *r, size_t n,
               struct message *out)
{
	struct jbuf b;
	char o[OBIS_STRLEN];
	int rc;

	if ((rc = jbuf_open(&b)) != 0)
		return rc;
	json_str(&b.j, "meter", serial);
	json_int(&b.j, "read_at", read_at);
	json_arr_begin(&b.j, "registers");
	for (size_t i = 0; i < n; i++) {
		json_obj_begin(&b.j, NULL);
		json_str(&b.j, "obis", obis_format(&r[i].obis, o));
		json_int(&b.j, "captured_at", r[i].captured_at);
		json_double(&b.j, "value", r[i].value);
		json_bool(&b.j, "has_raw", r[i].has_raw);
		if (r[i].has_raw) {
			json_int(&b.j, "raw", r[i].raw);
			json_int(&b.j, "scaler", r[i].scaler);
		}
		json_str(&b.j, "unit", nz(r[i].unit));
		json_obj_end(&b.j);
	}
	json_arr_end(&b.j);
	return jbuf_close(&b, out);
}

static int
registers_pb(const char *serial, int64_t read_at, const struct message_register *r, size_t n,
             struct message *out)
{
	Ammd__Registers m = AMMD__REGISTERS__INIT;
	Ammd__Register *regs = NULL, **ptrs = NULL;
	char(*names)[OBIS_STRLEN] = NULL;
	int rc = METER_ENOSPC;

	if (n > 0 && ((regs = calloc(n, sizeof(*regs))) == NULL ||
	              (ptrs = calloc(n, sizeof(*ptrs))) == NULL ||
	              (names = calloc(n, sizeof(*names))) == NULL))
		goto done;
	for (size_t i = 0; i < n; i++) {
		ammd__register__init(&regs[i]);
		regs[i].obis = obis_format(&r[i].obis, names[i]);
		regs[i].captured_at = r[i].captured_at;
		regs[i].value = r[i].value;
		regs[i].has_raw = r[i].has_raw;
		regs[i].raw = r[i].has_raw ? r[i].raw : 0;
		regs[i].scaler = r[i].has_raw ? r[i].scaler : 0;
		regs[i].unit = (char *)nz(r[i].unit);
		ptrs[i] = &regs[i];
	}
	m.meter = (char *)serial;
	m.read_at = read_at;
	m.n_registers = n;
	m.registers = ptrs;
	rc = pack(&m.base, out);
done:
	free(regs);
	free(ptrs);
	free(names);
	return rc;
}

int
message_registers(const struct config *cfg, const char *serial, int64_t read_at,
                  const struct message_register *r, size_t n, struct message *out)
{
	int rc;

	if ((rc = start(cfg, serial, "registers", false, out)) != 0 || (n > 0 && r == NULL))
		return finish(rc != 0 ? rc : METER_EINVAL, out);
	rc = use_json(cfg) ? registers_json(serial, read_at, r, n, out)
	                   : registers_pb(serial, read_at, r, n, out);
	return finish(rc, out);
}

/* ---- profile -------------------------------------------------------------------- */

int
message_profile(const struct config *cfg, const char *serial, int32_t period,
                const struct message_interval *iv, size_t n, struct message *out)
{
	Ammd__ProfileBlock m = AMMD__PROFILE_BLOCK__INIT;
	Ammd__Interval *ivs = NULL, **ptrs = NULL;
	struct jbuf b;
	int rc;

	if ((rc = start(cfg, serial, "profile", false, out)) != 0 || (n > 0 && iv == NULL))
		return finish(rc != 0 ? rc : METER_EINVAL, out);
	if (use_json(cfg)) {
		if ((rc = jbuf_open(&b)) != 0)
			return finish(rc, out);
		json_str(&b.j, "meter", serial);
		json_int(&b.j, "period", period);
		json_arr_begin(&b.j, "intervals");
		for (size_t i = 0; i < n; i++) {
			json_obj_begin(&b.j, NULL);
			json_int(&b.j, "ts", iv[i].ts);
			json_double(&b.j, "a_plus", iv[i].a_plus);
			json_double(&b.j, "a_minus", iv[i].a_minus);
			json_double(&b.j, "r_plus", iv[i].r_plus);
			json_double(&b.j, "r_minus", iv[i].r_minus);
			json_uint(&b.j, "status", iv[i].status);
			json_obj_end(&b.j);
		}
		json_arr_end(&b.j);
		return finish(jbuf_close(&b, out), out);
	}
	rc = METER_ENOSPC;
	if (n > 0 &&
	    ((ivs = calloc(n, sizeof(*ivs))) == NULL || (ptrs = calloc(n, sizeof(*ptrs))) == NULL))
		goto done;
	for (size_t i = 0; i < n; i++) {
		ammd__interval__init(&ivs[i]);
		ivs[i].ts = iv[i].ts;
		ivs[i].a_plus = iv[i].a_plus;
		ivs[i].a_minus = iv[i].a_minus;
		ivs[i].r_plus = iv[i].r_plus;
		ivs[i].r_minus = iv[i].r_minus;
		ivs[i].status = iv[i].status;
		ptrs[i] = &ivs[i];
	}
	m.meter = (char *)serial;
	m.period = period;
	m.n_intervals = n;
	m.intervals = ptrs;
	rc = pack(&m.base, out);
done:
	free(ivs);
	free(ptrs);
	return finish(rc, out);
}

/* ---- events ----------------------------------------------------------------------- */

int
message_events(const struct config *cfg, const char *serial, const struct message_event *ev,
               size_t n, struct message *out)
{
	Ammd__Events m = AMMD__EVENTS__INIT;
	Ammd__Event *evs = NULL, **ptrs = NULL;
	char(*names)[OBIS_STRLEN] = NULL;
	char o[OBIS_STRLEN];
	struct jbuf b;
	int rc;

	if ((rc = start(cfg, serial, "events", false, out)) != 0 || (n > 0 && ev == NULL))
		return finish(rc != 0 ? rc : METER_EINVAL, out);
	if (use_json(cfg)) {
		if ((rc = jbuf_open(&b)) != 0)
			return finish(rc, out);
		json_str(&b.j, "meter", serial);
		json_arr_begin(&b.j, "events");
		for (size_t i = 0; i < n; i++) {
			json_obj_begin(&b.j, NULL);
			json_str(&b.j, "log", obis_format(&ev[i].log, o));
			json_int(&b.j, "ts", ev[i].ts);
			json_int(&b.j, "code", ev[i].code);
			json_str(&b.j, "name", nz(ev[i].name));
			json_hex(&b.j, "data", ev[i].data, ev[i].data != NULL ? ev[i].data_len : 0);
			json_obj_end(&b.j);
		}
		json_arr_end(&b.j);
		return finish(jbuf_close(&b, out), out);
	}
	rc = METER_ENOSPC;
	if (n > 0 &&
	    ((evs = calloc(n, sizeof(*evs))) == NULL || (ptrs = calloc(n, sizeof(*ptrs))) == NULL ||
	     (names = calloc(n, sizeof(*names))) == NULL))
		goto done;
	for (size_t i = 0; i < n; i++) {
		ammd__event__init(&evs[i]);
		evs[i].log = obis_format(&ev[i].log, names[i]);
		evs[i].ts = ev[i].ts;
		evs[i].code = ev[i].code;
		evs[i].name = (char *)nz(ev[i].name);
		if (ev[i].data != NULL) {
			evs[i].data.data = (uint8_t *)ev[i].data;
			evs[i].data.len = ev[i].data_len;
		}
		ptrs[i] = &evs[i];
	}
	m.meter = (char *)serial;
	m.n_events = n;
	m.events = ptrs;
	rc = pack(&m.base, out);
done:
	free(evs);
	free(ptrs);
	free(names);
	return finish(rc, out);
}

/* ---- meter state -------------------------------------------------------------------- */

static const char *const breaker_names[] = {
    [MESSAGE_BREAKER_UNKNOWN] = "unknown",
    [MESSAGE_BREAKER_CONNECTED] = "connected",
    [MESSAGE_BREAKER_DISCONNECTED] = "disconnected",
    [MESSAGE_BREAKER_READY] = "ready_for_reconnection",
};

int
message_state(const struct config *cfg, const char *serial, const struct message_state *st,
              struct message *out)
{
	Ammd__MeterState m = AMMD__METER_STATE__INIT;
	struct jbuf b;
	int rc;

	if ((rc = start(cfg, serial, "state", true, out)) != 0 || st == NULL ||
	    (unsigned)st->breaker > MESSAGE_BREAKER_READY)
		return finish(rc != 0 ? rc : METER_EINVAL, out);
	if (use_json(cfg)) {
		if ((rc = jbuf_open(&b)) != 0)
			return finish(rc, out);
		json_str(&b.j, "meter", serial);
		json_bool(&b.j, "reachable", st->reachable);
		json_str(&b.j, "breaker", breaker_names[st->breaker]);
		json_bool(&b.j, "has_credit", st->has_credit);
		if (st->has_credit)
			json_double(&b.j, "credit", st->credit);
		json_int(&b.j, "last_read", st->last_read);
		json_str(&b.j, "last_error", nz(st->last_error));
		json_int(&b.j, "updated_at", st->updated_at);
		return finish(jbuf_close(&b, out), out);
	}
	m.meter = (char *)serial;
	m.reachable = st->reachable;
	m.breaker = (Ammd__Breaker)st->breaker;
	m.has_credit = st->has_credit;
	m.credit = st->has_credit ? st->credit : 0;
	m.last_read = st->last_read;
	m.last_error = (char *)nz(st->last_error);
	m.updated_at = st->updated_at;
	return finish(pack(&m.base, out), out);
}

/* ---- command results -------------------------------------------------------------- */

static const char *const status_names[] = {
    [MESSAGE_CMD_UNKNOWN] = "unknown",     [MESSAGE_CMD_QUEUED] = "queued",
    [MESSAGE_CMD_RUNNING] = "running",     [MESSAGE_CMD_SUCCEEDED] = "succeeded",
    [MESSAGE_CMD_FAILED] = "failed",       [MESSAGE_CMD_EXPIRED] = "expired",
    [MESSAGE_CMD_CANCELLED] = "cancelled",
};

int
message_command_result(const struct config *cfg, const struct message_command_result *r,
                       struct message *out)
{
	Ammd__CommandResult m = AMMD__COMMAND_RESULT__INIT;
	struct jbuf b;
	int rc;

	memset(out, 0, sizeof(*out));
	if (r == NULL || r->id <= 0 || (unsigned)r->status > MESSAGE_CMD_CANCELLED ||
	    !message_topic_safe(r->meter) || r->kind == NULL)
		return METER_EINVAL;
	out->qos = cfg->mqtt.qos;
	if ((rc = topic_printf(out->topic, sizeof(out->topic), "%s/command/%lld/result",
	                       cfg->mqtt.prefix, (long long)r->id)) != 0)
		return rc;
	if (use_json(cfg)) {
		if ((rc = jbuf_open(&b)) != 0)
			return finish(rc, out);
		json_int(&b.j, "id", r->id);
		json_str(&b.j, "meter", r->meter);
		json_str(&b.j, "kind", r->kind);
		json_str(&b.j, "status", status_names[r->status]);
		json_str(&b.j, "result_json", nz(r->result_json));
		json_str(&b.j, "error", nz(r->error));
		json_int(&b.j, "finished_at", r->finished_at);
		json_str(&b.j, "request_id", nz(r->request_id));
		return finish(jbuf_close(&b, out), out);
	}
	m.id = r->id;
	m.meter = (char *)r->meter;
	m.kind = (char *)r->kind;
	m.status = (Ammd__CommandStatus)r->status;
	m.result_json = (char *)nz(r->result_json);
	m.error = (char *)nz(r->error);
	m.finished_at = r->finished_at;
	m.request_id = (char *)nz(r->request_id);
	return finish(pack(&m.base, out), out);
}

/* ---- Home Assistant ------------------------------------------------------------------ */

bool
message_is_energy(const struct message_register *r)
{
	const uint8_t *v = r->obis.v;

	/* Electricity (A = 1), C = 1..8 (active/reactive import/export and
	 * quadrants), D = 8 (time integral: the energy registers). */
	if (v[0] != 1 || v[2] < 1 || v[2] > 8 || v[3] != 8)
		return false;
	return r->unit != NULL && (strcmp(r->unit, "Wh") == 0 || strcmp(r->unit, "kWh") == 0);
}

void
message_ha_key(const struct obis *o, char out[OBIS_STRLEN])
{
	snprintf(out, OBIS_STRLEN, "%u_%u_%u_%u_%u_%u", o->v[0], o->v[1], o->v[2], o->v[3], o->v[4],
	         o->v[5]);
}

static double
kwh(const struct message_register *r)
{
	return strcmp(r->unit, "Wh") == 0 ? r->value / 1000.0 : r->value;
}

int
message_ha_state(const struct config *cfg, const char *serial, const struct message_register *r,
                 size_t n, struct message *out)
{
	char key[OBIS_STRLEN];
	struct jbuf b;
	size_t k = 0;
	int rc;

	if ((rc = start(cfg, serial, "ha", true, out)) != 0 || (n > 0 && r == NULL))
		return finish(rc != 0 ? rc : METER_EINVAL, out);
	for (size_t i = 0; i < n; i++)
		k += message_is_energy(&r[i]);
	if (k == 0)
		return finish(METER_ENOTFOUND, out);
	if ((rc = jbuf_open(&b)) != 0)
		return finish(rc, out);
	for (size_t i = 0; i < n; i++) {
		if (!message_is_energy(&r[i]))
			continue;
		message_ha_key(&r[i].obis, key);
		json_double(&b.j, key, kwh(&r[i]));
	}
	return finish(jbuf_close(&b, out), out);
}

int
message_ha_config(const struct config *cfg, const char *serial, const struct message_register *r,
                  struct message *out)
{
	char key[OBIS_STRLEN], o[OBIS_STRLEN], id[MESSAGE_SERIAL_MAX + OBIS_STRLEN + 8];
	char state[MESSAGE_TOPIC_MAX], name[MESSAGE_SERIAL_MAX + 64], tpl[64];
	const char *what;
	struct jbuf b;
	int rc;

	memset(out, 0, sizeof(*out));
	if (r == NULL || !message_is_energy(r))
		return METER_EINVAL;
	/* HA's object ids allow [a-zA-Z0-9_-] only. */
	if (!message_topic_safe(serial))
		return METER_EINVAL;
	for (const char *s = serial; *s != '\0'; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || *s == '_' || *s == '-'))
			return METER_EINVAL;
	if ((rc = message_meter_topic(cfg, serial, "ha", state, sizeof(state))) != 0)
		return rc;
	message_ha_key(&r->obis, key);
	snprintf(id, sizeof(id), "ammd_%s_%s", serial, key);
	out->qos = cfg->mqtt.qos;
	out->retain = true;
	if ((rc = topic_printf(out->topic, sizeof(out->topic), "%s/sensor/%s/config",
	                       cfg->mqtt.ha_prefix, id)) != 0)
		return rc;
	what = obis_name(&r->obis);
	snprintf(name, sizeof(name), "%s", what != NULL ? what : obis_format(&r->obis, o));
	snprintf(tpl, sizeof(tpl), "{{ value_json['%s'] }}", key);
	if ((rc = jbuf_open(&b)) != 0)
		return rc;
	json_str(&b.j, "name", name);
	json_str(&b.j, "unique_id", id);
	json_str(&b.j, "object_id", id);
	json_str(&b.j, "state_topic", state);
	json_str(&b.j, "value_template", tpl);
	json_str(&b.j, "device_class", "energy");
	json_str(&b.j, "state_class", "total_increasing");
	json_str(&b.j, "unit_of_measurement", "kWh");
	json_obj_begin(&b.j, "device");
	json_arr_begin(&b.j, "identifiers");
	json_str(&b.j, NULL, serial);
	json_arr_end(&b.j);
	json_str(&b.j, "name", serial);
	json_str(&b.j, "manufacturer", "ammd");
	json_obj_end(&b.j);
	return finish(jbuf_close(&b, out), out);
}

/* ---- inbound command requests ---------------------------------------------------- */

int
message_command_request_decode(const uint8_t *p, size_t len, struct message_command_request *out)
{
	Ammd__CommandRequest *m;

	memset(out, 0, sizeof(*out));
	if (p == NULL && len > 0)
		return METER_EINVAL;
	if ((m = ammd__command_request__unpack(NULL, len, p)) == NULL)
		return METER_EMALFORMED;
	if (m->kind == NULL || m->kind[0] == '\0' || m->n_meters == 0)
		goto bad;
	for (size_t i = 0; i < m->n_meters; i++)
		if (!message_topic_safe(m->meters[i]))
			goto bad;
	out->pb = m;
	out->request_id = m->request_id;
	out->kind = m->kind;
	out->params_json = m->params_json;
	out->meters = (const char *const *)m->meters;
	out->nmeters = m->n_meters;
	out->expires_at = m->expires_at;
	out->idempotency_key = m->idempotency_key;
	out->priority = m->priority;
	return 0;
bad:
	ammd__command_request__free_unpacked(m, NULL);
	return METER_EMALFORMED;
}

void
message_command_request_free(struct message_command_request *r)
{
	if (r->pb != NULL)
		ammd__command_request__free_unpacked(r->pb, NULL);
	memset(r, 0, sizeof(*r));
}
