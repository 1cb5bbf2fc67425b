/*
 * message.h: what ammd publishes over MQTT, as outbox rows.  The sessions
 * and the store's callers describe readings, events, meter state and command
 * results in the plain structs below; message_*() turns each into one
 * struct message: the topic under [mqtt] prefix, the payload (protobuf per
 * daemon/ammd.proto, or one JSON object with the same field names when
 * [mqtt] format = json), QoS and the retain flag.  The store writes that
 * row into the outbox in the same transaction as the data, and the
 * publisher (publish.h) carries it to the broker.  No I/O here.
 *
 * Timestamps are int64 milliseconds since the epoch, UTC.  Serials and OBIS
 * codes go into topics only when message_topic_safe() accepts them (no
 * '+', '#', '/', control characters or empty names); the builders refuse
 * others rather than publish on a topic a wildcard would mangle.
 *
 * Errors: the builders return 0, or METER_EINVAL (unsafe serial or OBIS,
 * topic too long, bad argument) or METER_ENOSPC (memory for the payload
 * could not be had); on error *out is left empty.  A filled struct message
 * owns its payload: message_clear() frees it.
 */
#ifndef AMM_MESSAGE_H
#define AMM_MESSAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "obis.h"

struct config;

#define MESSAGE_TOPIC_MAX  512
#define MESSAGE_SERIAL_MAX 64

struct message {
	char topic[MESSAGE_TOPIC_MAX];
	uint8_t *payload; /* malloc'd; message_clear() frees */
	size_t len;
	int qos;
	bool retain;
};

void message_clear(struct message *m);

/* ---- inputs --------------------------------------------------------------- */

struct message_register {
	struct obis obis;
	int64_t captured_at; /* ms UTC */
	double value;        /* scaled, in unit */
	bool has_raw;        /* raw and scaler are meaningful */
	int64_t raw;
	int8_t scaler;
	const char *unit; /* "Wh", "kWh", ...; NULL or "" unknown */
};

struct message_interval {
	int64_t ts; /* ms UTC, end of the interval */
	double a_plus, a_minus, r_plus, r_minus;
	uint32_t status;
};

struct message_event {
	struct obis log; /* the event log object, 0-0:99.98.E.255 */
	int64_t ts;      /* ms UTC */
	int32_t code;
	const char *name; /* NULL or "" unknown */
	const uint8_t *data;
	size_t data_len;
};

/* Values as in ammd.proto's Breaker enum. */
enum message_breaker {
	MESSAGE_BREAKER_UNKNOWN = 0,
	MESSAGE_BREAKER_CONNECTED = 1,
	MESSAGE_BREAKER_DISCONNECTED = 2,
	MESSAGE_BREAKER_READY = 3, /* ready for reconnection (button) */
};

struct message_state {
	bool reachable;
	enum message_breaker breaker;
	bool has_credit;
	double credit;
	int64_t last_read;      /* ms UTC, 0 never */
	const char *last_error; /* NULL or "" none */
	int64_t updated_at;     /* ms UTC */
};

/* Values as in ammd.proto's CommandStatus enum. */
enum message_command_status {
	MESSAGE_CMD_UNKNOWN = 0,
	MESSAGE_CMD_QUEUED,
	MESSAGE_CMD_RUNNING,
	MESSAGE_CMD_SUCCEEDED,
	MESSAGE_CMD_FAILED,
	MESSAGE_CMD_EXPIRED,
	MESSAGE_CMD_CANCELLED,
};

struct message_command_result {
	int64_t id;
	const char *meter;
	const char *kind;
	enum message_command_status status;
	const char *result_json; /* NULL or "" none */
	const char *error;       /* NULL or "" none */
	int64_t finished_at;     /* ms UTC */
	const char *request_id;  /* NULL or "" none */
};

/* ---- builders ------------------------------------------------------------- */

/* <prefix>/meter/<serial>/registers; QoS from the config, not retained. */
int message_registers(const struct config *cfg, const char *serial, int64_t read_at,
                      const struct message_register *r, size_t n, struct message *out);

/* <prefix>/meter/<serial>/profile; period in seconds. */
int message_profile(const struct config *cfg, const char *serial, int32_t period,
                    const struct message_interval *iv, size_t n, struct message *out);

/* <prefix>/meter/<serial>/events */
int message_events(const struct config *cfg, const char *serial, const struct message_event *ev,
                   size_t n, struct message *out);

/* <prefix>/meter/<serial>/state, retained. */
int message_state(const struct config *cfg, const char *serial, const struct message_state *st,
                  struct message *out);

/* <prefix>/command/<id>/result */
int message_command_result(const struct config *cfg, const struct message_command_result *r,
                           struct message *out);

/*
 * Home Assistant MQTT discovery (when [mqtt] ha_discovery is on).  HA reads
 * JSON, whatever [mqtt] format says, so the energy registers of a meter get
 * a JSON state of their own on <prefix>/meter/<serial>/ha (retained), an
 * object of kWh values keyed by message_ha_key() ("1_0_1_8_0_255"), and each
 * energy register one retained config on
 * <ha_prefix>/sensor/ammd_<serial>_<key>/config naming that topic with
 * device_class energy, state_class total_increasing, unit kWh.
 *
 * message_is_energy() says which registers qualify (active and reactive
 * energy totals and rates, class 3 in Wh/kWh).  message_ha_state() takes
 * every register and keeps the qualifying ones; METER_ENOTFOUND when none
 * does.  message_ha_config() is meant for a meter's first read and after
 * discovery; configs are idempotent, so sending one again is harmless.
 */
bool message_is_energy(const struct message_register *r);
void message_ha_key(const struct obis *o, char out[OBIS_STRLEN]);
int message_ha_state(const struct config *cfg, const char *serial, const struct message_register *r,
                     size_t n, struct message *out);
int message_ha_config(const struct config *cfg, const char *serial,
                      const struct message_register *r, struct message *out);

/* ---- topics ----------------------------------------------------------------- */

/* True when s may stand as one topic level: 1..MESSAGE_SERIAL_MAX bytes,
 * none of '+', '#', '/', NUL or a control character. */
bool message_topic_safe(const char *s);

/* "<prefix>/meter/<serial>/<leaf>" into out; 0 or METER_EINVAL. */
int message_meter_topic(const struct config *cfg, const char *serial, const char *leaf, char *out,
                        size_t outlen);

/* "<prefix>/command/request", what the publisher subscribes to. */
int message_command_request_topic(const struct config *cfg, char *out, size_t outlen);

/* ---- inbound -------------------------------------------------------------- */

/*
 * A decoded CommandRequest.  Strings point into the struct's own storage
 * and stay valid until message_command_request_free().
 */
struct message_command_request {
	void *pb; /* the protobuf-c object */
	const char *request_id;
	const char *kind;
	const char *params_json;
	const char *const *meters;
	size_t nmeters;
	int64_t expires_at;
	const char *idempotency_key;
	int32_t priority;
};

/*
 * Decodes a protobuf CommandRequest (the inbound topic takes protobuf only).
 * Returns 0, METER_EMALFORMED (not a CommandRequest, no kind or no meter, a
 * serial that is not topic-safe) or METER_EINVAL (p NULL with len > 0).
 */
int message_command_request_decode(const uint8_t *p, size_t len,
                                   struct message_command_request *out);
void message_command_request_free(struct message_command_request *r);

#endif
