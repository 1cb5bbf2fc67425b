/*
 * test_message.c: the MQTT payloads and topics of daemon/message.c.  Every
 * message type is built with every field set, unpacked again with
 * protobuf-c and compared field by field; the JSON variant is compared with
 * the exact text expected; topics carry the prefix and refuse serials that
 * a wildcard would mangle; inbound CommandRequests decode and bad ones are
 * refused.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ammd.pb-c.h"
#include "config.h"
#include "message.h"
#include "meter_error.h"

static struct config cfg;

static void
setup(void)
{
	config_defaults(&cfg);
}

TestSuite(message, .init = setup);

static const struct message_register regs[] = {
    {OBIS(1, 0, 1, 8, 0, 255), 1700000000000LL, 12345.678, true, 12345678, -3, "kWh"},
    {OBIS(1, 0, 2, 8, 0, 255), 1700000000001LL, 4.5, false, 0, 0, "Wh"},
    {OBIS(1, 0, 32, 7, 0, 255), 1700000000002LL, 230.1, true, 2301, -1, "V"},
    {OBIS(0, 0, 96, 1, 0, 255), -5, 0, false, 0, 0, NULL},
};
#define NREGS (sizeof(regs) / sizeof(regs[0]))

Test(message, registers_roundtrip)
{
	struct message m;
	Ammd__Registers *d;
	static const char *const obis[] = {"1-0:1.8.0.255", "1-0:2.8.0.255", "1-0:32.7.0.255",
	                                   "0-0:96.1.0.255"};

	cr_assert_eq(message_registers(&cfg, "KAM00042", 1700000000500LL, regs, NREGS, &m), 0);
	cr_assert_str_eq(m.topic, "ammd/v1/meter/KAM00042/registers");
	cr_assert_eq(m.qos, 1);
	cr_assert_not(m.retain);
	d = ammd__registers__unpack(NULL, m.len, m.payload);
	cr_assert_not_null(d);
	cr_assert_str_eq(d->meter, "KAM00042");
	cr_assert_eq(d->read_at, 1700000000500LL);
	cr_assert_eq(d->n_registers, NREGS);
	for (size_t i = 0; i < NREGS; i++) {
		cr_assert_str_eq(d->registers[i]->obis, obis[i]);
		cr_assert_eq(d->registers[i]->captured_at, regs[i].captured_at);
		cr_assert_eq(d->registers[i]->value, regs[i].value);
		cr_assert_eq(d->registers[i]->has_raw, regs[i].has_raw);
		cr_assert_eq(d->registers[i]->raw, regs[i].raw);
		cr_assert_eq(d->registers[i]->scaler, regs[i].scaler);
		cr_assert_str_eq(d->registers[i]->unit, regs[i].unit ? regs[i].unit : "");
	}
	ammd__registers__free_unpacked(d, NULL);
	message_clear(&m);
	cr_assert_null(m.payload);
}

Test(message, profile_roundtrip)
{
	struct message_interval iv[96];
	struct message m;
	Ammd__ProfileBlock *d;

	for (size_t i = 0; i < 96; i++)
		iv[i] = (struct message_interval){
		    1700000000000LL + (int64_t)i * 900000, 100.0 + i, (double)i / 4, 7.25 * i, 0.5,
		    (uint32_t)(i == 40 ? 0x88 : 0)};
	cr_assert_eq(message_profile(&cfg, "S1", 900, iv, 96, &m), 0);
	cr_assert_str_eq(m.topic, "ammd/v1/meter/S1/profile");
	d = ammd__profile_block__unpack(NULL, m.len, m.payload);
	cr_assert_not_null(d);
	cr_assert_str_eq(d->meter, "S1");
	cr_assert_eq(d->period, 900);
	cr_assert_eq(d->n_intervals, 96);
	for (size_t i = 0; i < 96; i++) {
		cr_assert_eq(d->intervals[i]->ts, iv[i].ts);
		cr_assert_eq(d->intervals[i]->a_plus, iv[i].a_plus);
		cr_assert_eq(d->intervals[i]->a_minus, iv[i].a_minus);
		cr_assert_eq(d->intervals[i]->r_plus, iv[i].r_plus);
		cr_assert_eq(d->intervals[i]->r_minus, iv[i].r_minus);
		cr_assert_eq(d->intervals[i]->status, iv[i].status);
	}
	cr_assert_eq(d->intervals[40]->status, 0x88);
	ammd__profile_block__free_unpacked(d, NULL);
	message_clear(&m);
}

Test(message, events_roundtrip)
{
	static const uint8_t data[] = {0x09, 0x02, 0xab, 0xcd};
	const struct message_event ev[] = {
	    {OBIS(0, 0, 99, 98, 0, 255), 1700000001000LL, 47, "power_down", data, sizeof(data)},
	    {OBIS(0, 0, 99, 98, 2, 255), 1700000002000LL, -1, NULL, NULL, 0},
	};
	struct message m;
	Ammd__Events *d;

	cr_assert_eq(message_events(&cfg, "S2", ev, 2, &m), 0);
	cr_assert_str_eq(m.topic, "ammd/v1/meter/S2/events");
	d = ammd__events__unpack(NULL, m.len, m.payload);
	cr_assert_not_null(d);
	cr_assert_str_eq(d->meter, "S2");
	cr_assert_eq(d->n_events, 2);
	cr_assert_str_eq(d->events[0]->log, "0-0:99.98.0.255");
	cr_assert_eq(d->events[0]->ts, 1700000001000LL);
	cr_assert_eq(d->events[0]->code, 47);
	cr_assert_str_eq(d->events[0]->name, "power_down");
	cr_assert_eq(d->events[0]->data.len, sizeof(data));
	cr_assert_arr_eq(d->events[0]->data.data, data, sizeof(data));
	cr_assert_str_eq(d->events[1]->log, "0-0:99.98.2.255");
	cr_assert_eq(d->events[1]->code, -1);
	cr_assert_str_eq(d->events[1]->name, "");
	cr_assert_eq(d->events[1]->data.len, 0);
	ammd__events__free_unpacked(d, NULL);
	message_clear(&m);
}

Test(message, state_roundtrip_retained)
{
	const struct message_state st = {
	    true, MESSAGE_BREAKER_READY, true, -12.5, 1700000003000LL, "timeout", 1700000004000LL};
	struct message m;
	Ammd__MeterState *d;

	cr_assert_eq(message_state(&cfg, "S3", &st, &m), 0);
	cr_assert_str_eq(m.topic, "ammd/v1/meter/S3/state");
	cr_assert(m.retain);
	d = ammd__meter_state__unpack(NULL, m.len, m.payload);
	cr_assert_not_null(d);
	cr_assert_str_eq(d->meter, "S3");
	cr_assert_eq(d->reachable, true);
	cr_assert_eq(d->breaker, AMMD__BREAKER__BREAKER_READY_FOR_RECONNECTION);
	cr_assert_eq(d->has_credit, true);
	cr_assert_eq(d->credit, -12.5);
	cr_assert_eq(d->last_read, 1700000003000LL);
	cr_assert_str_eq(d->last_error, "timeout");
	cr_assert_eq(d->updated_at, 1700000004000LL);
	ammd__meter_state__free_unpacked(d, NULL);
	message_clear(&m);
}

Test(message, command_result_roundtrip)
{
	const struct message_command_result r = {98765,
	                                         "S4",
	                                         "credit_add",
	                                         MESSAGE_CMD_SUCCEEDED,
	                                         "{\"before\":1,\"after\":11}",
	                                         "",
	                                         1700000005000LL,
	                                         "req-7"};
	struct message m;
	Ammd__CommandResult *d;

	cr_assert_eq(message_command_result(&cfg, &r, &m), 0);
	cr_assert_str_eq(m.topic, "ammd/v1/command/98765/result");
	cr_assert_not(m.retain);
	d = ammd__command_result__unpack(NULL, m.len, m.payload);
	cr_assert_not_null(d);
	cr_assert_eq(d->id, 98765);
	cr_assert_str_eq(d->meter, "S4");
	cr_assert_str_eq(d->kind, "credit_add");
	cr_assert_eq(d->status, AMMD__COMMAND_STATUS__COMMAND_STATUS_SUCCEEDED);
	cr_assert_str_eq(d->result_json, "{\"before\":1,\"after\":11}");
	cr_assert_str_eq(d->error, "");
	cr_assert_eq(d->finished_at, 1700000005000LL);
	cr_assert_str_eq(d->request_id, "req-7");
	ammd__command_result__free_unpacked(d, NULL);
	message_clear(&m);
}

/* The enums in message.h and ammd.proto must not drift apart. */
Test(message, enums_match_proto)
{
	cr_assert_eq(MESSAGE_BREAKER_CONNECTED, AMMD__BREAKER__BREAKER_CONNECTED);
	cr_assert_eq(MESSAGE_BREAKER_DISCONNECTED, AMMD__BREAKER__BREAKER_DISCONNECTED);
	cr_assert_eq(MESSAGE_BREAKER_READY, AMMD__BREAKER__BREAKER_READY_FOR_RECONNECTION);
	cr_assert_eq(MESSAGE_CMD_QUEUED, AMMD__COMMAND_STATUS__COMMAND_STATUS_QUEUED);
	cr_assert_eq(MESSAGE_CMD_RUNNING, AMMD__COMMAND_STATUS__COMMAND_STATUS_RUNNING);
	cr_assert_eq(MESSAGE_CMD_FAILED, AMMD__COMMAND_STATUS__COMMAND_STATUS_FAILED);
	cr_assert_eq(MESSAGE_CMD_EXPIRED, AMMD__COMMAND_STATUS__COMMAND_STATUS_EXPIRED);
	cr_assert_eq(MESSAGE_CMD_CANCELLED, AMMD__COMMAND_STATUS__COMMAND_STATUS_CANCELLED);
}

/* ---- JSON ----------------------------------------------------------------------- */

static void
expect_json(const struct message *m, const char *want)
{
	cr_assert_eq(m->len, strlen(want), "length %zu, want %zu: %.*s", m->len, strlen(want),
	             (int)m->len, (const char *)m->payload);
	cr_assert_arr_eq(m->payload, want, m->len, "got %.*s", (int)m->len,
	                 (const char *)m->payload);
}

Test(message, json_variants)
{
	static const uint8_t data[] = {0x01, 0xff};
	const struct message_interval iv = {1700000000000LL, 1.5, 0, 2, 0.25, 8};
	const struct message_event ev = {OBIS(0, 0, 99, 98, 1, 255),
	                                 1700000001000LL,
	                                 40,
	                                 "terminal_cover_opened",
	                                 data,
	                                 sizeof(data)};
	const struct message_state st = {
	    false, MESSAGE_BREAKER_DISCONNECTED, false, 99, 0, "no answer", 1700000002000LL};
	const struct message_command_result r = {
	    5,    "S\"5",          "disconnect",    MESSAGE_CMD_FAILED,
	    NULL, "meter refused", 1700000003000LL, NULL};
	struct message m;

	cfg.mqtt.format = CONFIG_FORMAT_JSON;
	cr_assert_eq(message_registers(&cfg, "J1", 1700000000500LL, regs, 2, &m), 0);
	expect_json(&m, "{\"meter\":\"J1\",\"read_at\":1700000000500,\"registers\":["
	                "{\"obis\":\"1-0:1.8.0.255\",\"captured_at\":1700000000000,"
	                "\"value\":12345.678,\"has_raw\":true,\"raw\":12345678,\"scaler\":-3,"
	                "\"unit\":\"kWh\"},"
	                "{\"obis\":\"1-0:2.8.0.255\",\"captured_at\":1700000000001,"
	                "\"value\":4.5,\"has_raw\":false,\"unit\":\"Wh\"}]}");
	cr_assert_str_eq(m.topic, "ammd/v1/meter/J1/registers");
	message_clear(&m);

	cr_assert_eq(message_profile(&cfg, "J1", 900, &iv, 1, &m), 0);
	expect_json(&m,
	            "{\"meter\":\"J1\",\"period\":900,\"intervals\":[{\"ts\":1700000000000,"
	            "\"a_plus\":1.5,\"a_minus\":0,\"r_plus\":2,\"r_minus\":0.25,\"status\":8}]}");
	message_clear(&m);

	cr_assert_eq(message_events(&cfg, "J1", &ev, 1, &m), 0);
	expect_json(&m, "{\"meter\":\"J1\",\"events\":[{\"log\":\"0-0:99.98.1.255\","
	                "\"ts\":1700000001000,\"code\":40,\"name\":\"terminal_cover_opened\","
	                "\"data\":\"01ff\"}]}");
	message_clear(&m);

	cr_assert_eq(message_state(&cfg, "J1", &st, &m), 0);
	expect_json(&m, "{\"meter\":\"J1\",\"reachable\":false,\"breaker\":\"disconnected\","
	                "\"has_credit\":false,\"last_read\":0,\"last_error\":\"no answer\","
	                "\"updated_at\":1700000002000}");
	cr_assert(m.retain);
	message_clear(&m);

	cr_assert_eq(message_command_result(&cfg, &r, &m), 0);
	expect_json(&m, "{\"id\":5,\"meter\":\"S\\\"5\",\"kind\":\"disconnect\","
	                "\"status\":\"failed\",\"result_json\":\"\",\"error\":\"meter refused\","
	                "\"finished_at\":1700000003000,\"request_id\":\"\"}");
	cr_assert_str_eq(m.topic, "ammd/v1/command/5/result");
	message_clear(&m);
}

/* ---- topics ----------------------------------------------------------------------- */

struct topic_case {
	const char *serial;
	bool safe;
};

static const struct topic_case topic_cases[] = {
    {"KAM00042", true},
    {"12345678", true},
    {"with space", true},
    {"a+b", false},
    {"a#", false},
    {"a/b", false},
    {"", false},
    {"tab\there", false},
    {"\x7f", false},
    {"0123456789012345678901234567890123456789012345678901234567890123", true},   /* 64 */
    {"01234567890123456789012345678901234567890123456789012345678901234", false}, /* 65 */
};

Test(message, topic_safety)
{
	const struct message_state st = {0};
	struct message m;
	char t[MESSAGE_TOPIC_MAX];

	for (size_t i = 0; i < sizeof(topic_cases) / sizeof(topic_cases[0]); i++) {
		const struct topic_case *c = &topic_cases[i];
		cr_assert_eq(message_topic_safe(c->serial), c->safe, "%zu: \"%s\"", i, c->serial);
		cr_assert_eq(message_state(&cfg, c->serial, &st, &m), c->safe ? 0 : METER_EINVAL,
		             "%zu", i);
		if (c->safe) {
			snprintf(t, sizeof(t), "ammd/v1/meter/%s/state", c->serial);
			cr_assert_str_eq(m.topic, t);
			/* No wildcard and exactly four levels below the root. */
			cr_assert_null(strpbrk(m.topic, "+#"));
			message_clear(&m);
		} else {
			cr_assert_null(m.payload);
			cr_assert_str_eq(m.topic, "");
		}
	}
	cr_assert_not(message_topic_safe(NULL));
}

Test(message, prefix_and_request_topic)
{
	struct message m;
	char t[MESSAGE_TOPIC_MAX];
	const struct message_command_result r = {1,    "M", "clock_sync", MESSAGE_CMD_QUEUED, NULL,
	                                         NULL, 0,   NULL};

	snprintf(cfg.mqtt.prefix, sizeof(cfg.mqtt.prefix), "site/a");
	cr_assert_eq(message_registers(&cfg, "M", 0, NULL, 0, &m), 0);
	cr_assert_str_eq(m.topic, "site/a/meter/M/registers");
	message_clear(&m);
	cr_assert_eq(message_command_request_topic(&cfg, t, sizeof(t)), 0);
	cr_assert_str_eq(t, "site/a/command/request");
	cr_assert_eq(message_meter_topic(&cfg, "M", "state", t, 10), METER_EINVAL);
	cr_assert_eq(message_command_result(&cfg, &r, &m), 0);
	cr_assert_str_eq(m.topic, "site/a/command/1/result");
	message_clear(&m);
	/* A command result needs an id and a safe meter. */
	struct message_command_result bad = r;
	bad.id = 0;
	cr_assert_eq(message_command_result(&cfg, &bad, &m), METER_EINVAL);
	bad = r;
	bad.meter = "x/y";
	cr_assert_eq(message_command_result(&cfg, &bad, &m), METER_EINVAL);
	/* A count without the array. */
	cr_assert_eq(message_profile(&cfg, "M", 900, NULL, 3, &m), METER_EINVAL);
	cr_assert_null(m.payload);
}

/* ---- Home Assistant --------------------------------------------------------------- */

Test(message, ha_discovery)
{
	struct message m;
	char key[OBIS_STRLEN];

	cr_assert(message_is_energy(&regs[0]));
	cr_assert(message_is_energy(&regs[1]));
	cr_assert_not(message_is_energy(&regs[2])); /* voltage */
	cr_assert_not(message_is_energy(&regs[3]));
	message_ha_key(&regs[0].obis, key);
	cr_assert_str_eq(key, "1_0_1_8_0_255");

	cr_assert_eq(message_ha_state(&cfg, "KAM1", regs, NREGS, &m), 0);
	cr_assert_str_eq(m.topic, "ammd/v1/meter/KAM1/ha");
	cr_assert(m.retain);
	/* Wh are turned into kWh; the voltage is left out. */
	expect_json(&m, "{\"1_0_1_8_0_255\":12345.678,\"1_0_2_8_0_255\":0.0045}");
	message_clear(&m);
	cr_assert_eq(message_ha_state(&cfg, "KAM1", &regs[2], 2, &m), METER_ENOTFOUND);

	cr_assert_eq(message_ha_config(&cfg, "KAM1", &regs[0], &m), 0);
	cr_assert_str_eq(m.topic, "homeassistant/sensor/ammd_KAM1_1_0_1_8_0_255/config");
	cr_assert(m.retain);
	expect_json(&m,
	            "{\"name\":\"active_energy_import\",\"unique_id\":\"ammd_KAM1_1_0_1_8_0_255\","
	            "\"object_id\":\"ammd_KAM1_1_0_1_8_0_255\","
	            "\"state_topic\":\"ammd/v1/meter/KAM1/ha\","
	            "\"value_template\":\"{{ value_json['1_0_1_8_0_255'] }}\","
	            "\"device_class\":\"energy\",\"state_class\":\"total_increasing\","
	            "\"unit_of_measurement\":\"kWh\",\"device\":{\"identifiers\":[\"KAM1\"],"
	            "\"name\":\"KAM1\",\"manufacturer\":\"ammd\"}}");
	message_clear(&m);
	cr_assert_eq(message_ha_config(&cfg, "KAM1", &regs[2], &m), METER_EINVAL);
	cr_assert_eq(message_ha_config(&cfg, "KAM 1", &regs[0], &m), METER_EINVAL);
}

/* ---- inbound ------------------------------------------------------------------------ */

static size_t
pack_request(Ammd__CommandRequest *r, uint8_t **out)
{
	size_t n = ammd__command_request__get_packed_size(r);

	*out = malloc(n + 1);
	cr_assert_not_null(*out);
	return ammd__command_request__pack(r, *out);
}

Test(message, command_request_decode)
{
	char *meters[] = {"S1", "S2"};
	Ammd__CommandRequest r = AMMD__COMMAND_REQUEST__INIT;
	struct message_command_request q;
	uint8_t *buf;
	size_t n;

	r.request_id = "abc";
	r.n_meters = 2;
	r.meters = meters;
	r.kind = "credit_add";
	r.params_json = "{\"amount\":10}";
	r.expires_at = 1700000009000LL;
	r.idempotency_key = "tx-1";
	r.priority = 5;
	n = pack_request(&r, &buf);
	cr_assert_eq(message_command_request_decode(buf, n, &q), 0);
	cr_assert_str_eq(q.request_id, "abc");
	cr_assert_str_eq(q.kind, "credit_add");
	cr_assert_str_eq(q.params_json, "{\"amount\":10}");
	cr_assert_eq(q.nmeters, 2);
	cr_assert_str_eq(q.meters[0], "S1");
	cr_assert_str_eq(q.meters[1], "S2");
	cr_assert_eq(q.expires_at, 1700000009000LL);
	cr_assert_str_eq(q.idempotency_key, "tx-1");
	cr_assert_eq(q.priority, 5);
	message_command_request_free(&q);
	cr_assert_null(q.pb);

	/* Truncated: every strict prefix is refused or decodes without
	 * reading past the end (ASan watches). */
	for (size_t k = 0; k < n; k++) {
		uint8_t *t = malloc(k + 1);
		memcpy(t, buf, k);
		int rc = message_command_request_decode(k > 0 ? t : NULL, k, &q);
		cr_assert(rc == 0 || rc == METER_EMALFORMED, "prefix %zu: %d", k, rc);
		message_command_request_free(&q);
		free(t);
	}
	free(buf);

	/* No meter, an unsafe meter, no kind. */
	r.n_meters = 0;
	n = pack_request(&r, &buf);
	cr_assert_eq(message_command_request_decode(buf, n, &q), METER_EMALFORMED);
	free(buf);
	meters[1] = "S/2";
	r.n_meters = 2;
	n = pack_request(&r, &buf);
	cr_assert_eq(message_command_request_decode(buf, n, &q), METER_EMALFORMED);
	free(buf);
	meters[1] = "S2";
	r.kind = "";
	n = pack_request(&r, &buf);
	cr_assert_eq(message_command_request_decode(buf, n, &q), METER_EMALFORMED);
	free(buf);
	/* Not protobuf at all. */
	cr_assert_eq(message_command_request_decode((const uint8_t *)"\xff\xff\xff", 3, &q),
	             METER_EMALFORMED);
}
