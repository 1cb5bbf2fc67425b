/*
 * ctl_mqtt.c: `ammctl mqtt tail`, the MQTT feed as an integrator sees it:
 * subscribe to ammd's topics and print each message's topic and payload,
 * protobuf decoded to JSON.
 *
 *   ammctl mqtt tail [--host H] [--port P] [--prefix P] [--topic FILTER]
 *                    [--count N] [--timeout S] [--no-retained] [--json]
 *                    [--user U --password-file F]
 *
 * The message type follows from the topic (DESIGN §7): .../registers,
 * /profile, /events, /state under <prefix>/meter/<serial>/, and
 * <prefix>/command/request and <prefix>/command/<id>/result.  Decoding is
 * generic over protobuf-c's descriptors of daemon/ammd.proto, so a field
 * added to the .proto shows up here without a change: field names as in
 * the .proto, enums as their lower-case names without the enum's prefix
 * (as ammd's own JSON format writes them), bytes as hex.  A payload that
 * is JSON already ([mqtt] format = json, the Home Assistant topics) is
 * printed as it came; one that does not decode is printed as hex with the
 * reason.
 *
 * Without --json each message is a header line (topic, type, size, QoS,
 * retained) followed by the payload as indented JSON, where each timestamp
 * (an int64 field named ts, last_read or *_at, in ms) is followed by
 * "<name>_utc" in ISO 8601 for the human reader; with --json each is
 * one JSON object on one line: {"topic", "type", "qos", "retained",
 * "bytes", "payload"} (or "payload_text" for JSON payloads, "payload_hex"
 * and "error" for undecodable ones).
 *
 * --no-retained skips what the broker replays on subscribing (the retained
 * state of every meter) and shows only messages published from now on.
 *
 * libmosquitto's blocking loop is fine here: this is a command-line tool
 * with nothing else to do.  --count N ends after N messages (exit 0);
 * --timeout S ends after S seconds, with exit 1 when fewer than N came.
 */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <mosquitto.h>
#include <protobuf-c/protobuf-c.h>

#include "ammd.pb-c.h"
#include "ctl.h"
#include "json.h"

#define MQTT_DEFAULT_PREFIX "ammd/v1"
#define MQTT_KEEPALIVE      30
#define MQTT_PASSWORD_MAX   256

struct mqtt_opts {
	const char *host;
	int port;
	const char *prefix;
	const char *topic;
	const char *user;
	const char *password_file;
	long count;   /* 0: until interrupted */
	long timeout; /* s; 0: none */
	bool json;
	bool no_retained;
};

struct mqtt_tail {
	const struct mqtt_opts *o;
	long seen;
	bool done;
	int connect_rc; /* -1 until the CONNACK */
	int sub_mid;
};

static volatile sig_atomic_t mqtt_interrupted;

static void
mqtt_on_signal(int sig)
{
	(void)sig;
	mqtt_interrupted = 1;
}

static void
mqtt_usage(FILE *f)
{
	fprintf(f, "usage: ammctl mqtt tail [--host H (localhost)] [--port P (1883)]"
	           " [--prefix P (" MQTT_DEFAULT_PREFIX ")]\n"
	           "                        [--topic FILTER (PREFIX/#)] [--count N] [--timeout S]"
	           " [--no-retained] [--json]\n"
	           "                        [--user U --password-file F]\n");
}

static int
mqtt_num(const char *opt, const char *v, long lo, long hi, long *out)
{
	char *end;

	errno = 0;
	long n = strtol(v, &end, 10);
	if (errno != 0 || *v == '\0' || *end != '\0' || n < lo || n > hi) {
		fprintf(stderr, "ammctl mqtt: %s wants %ld..%ld, not '%s'\n", opt, lo, hi, v);
		return 2;
	}
	*out = n;
	return 0;
}

static int
mqtt_parse(int argc, char **argv, struct mqtt_opts *o)
{
	static const char *const names[] = {"--host",  "--port",    "--prefix", "--topic",
	                                    "--count", "--timeout", "--user",   "--password-file"};
	memset(o, 0, sizeof(*o));
	o->host = "localhost";
	o->port = 1883;
	o->prefix = MQTT_DEFAULT_PREFIX;
	for (int i = 0; i < argc; i++) {
		const char *a = argv[i], *v = NULL;
		size_t k, nn = sizeof(names) / sizeof(names[0]);
		long n;

		if (strcmp(a, "--json") == 0) {
			o->json = true;
			continue;
		}
		if (strcmp(a, "--no-retained") == 0) {
			o->no_retained = true;
			continue;
		}
		if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
			mqtt_usage(stdout);
			return -1;
		}
		for (k = 0; k < nn; k++) {
			size_t l = strlen(names[k]);
			if (strcmp(a, names[k]) == 0) {
				if (i + 1 >= argc) {
					fprintf(stderr, "ammctl mqtt: %s needs a value\n", a);
					return 2;
				}
				v = argv[++i];
				break;
			}
			if (strncmp(a, names[k], l) == 0 && a[l] == '=') {
				v = a + l + 1;
				break;
			}
		}
		switch (k) {
		case 0:
			o->host = v;
			break;
		case 1:
			if (mqtt_num("--port", v, 1, 65535, &n) != 0)
				return 2;
			o->port = (int)n;
			break;
		case 2:
			o->prefix = v;
			break;
		case 3:
			o->topic = v;
			break;
		case 4:
			if (mqtt_num("--count", v, 0, 1000000000L, &o->count) != 0)
				return 2;
			break;
		case 5:
			if (mqtt_num("--timeout", v, 0, 86400L * 365, &o->timeout) != 0)
				return 2;
			break;
		case 6:
			o->user = v;
			break;
		case 7:
			o->password_file = v;
			break;
		default:
			fprintf(stderr, "ammctl mqtt: unexpected argument '%s'\n", a);
			mqtt_usage(stderr);
			return 2;
		}
	}
	if (o->password_file != NULL && o->user == NULL) {
		fprintf(stderr, "ammctl mqtt: --password-file needs --user\n");
		return 2;
	}
	return 0;
}

/* ---- protobuf to JSON ---------------------------------------------------------- */

/* The message type a topic carries, or NULL (not one of ammd's). */
static const ProtobufCMessageDescriptor *
mqtt_topic_type(const char *topic, const char *prefix)
{
	static const struct {
		const char *last;
		const ProtobufCMessageDescriptor *d;
	} meter_topics[] = {
	    {"registers", &ammd__registers__descriptor},
	    {"profile", &ammd__profile_block__descriptor},
	    {"events", &ammd__events__descriptor},
	    {"state", &ammd__meter_state__descriptor},
	};
	size_t pl = strlen(prefix);
	const char *rest, *slash;

	if (strncmp(topic, prefix, pl) != 0 || topic[pl] != '/')
		return NULL;
	rest = topic + pl + 1;
	if (strncmp(rest, "meter/", 6) == 0) {
		if ((slash = strchr(rest + 6, '/')) == NULL || slash == rest + 6)
			return NULL;
		for (size_t i = 0; i < sizeof(meter_topics) / sizeof(meter_topics[0]); i++)
			if (strcmp(slash + 1, meter_topics[i].last) == 0)
				return meter_topics[i].d;
		return NULL;
	}
	if (strcmp(rest, "command/request") == 0)
		return &ammd__command_request__descriptor;
	if (strncmp(rest, "command/", 8) == 0 && (slash = strchr(rest + 8, '/')) != NULL &&
	    slash != rest + 8 && strcmp(slash + 1, "result") == 0)
		return &ammd__command_result__descriptor;
	return NULL;
}

/*
 * An enum value's JSON name: "BREAKER_READY_FOR_RECONNECTION" of enum
 * Breaker is "ready_for_reconnection", "COMMAND_STATUS_QUEUED" of
 * CommandStatus "queued"; a number the schema does not know stays a number.
 */
static void
mqtt_json_enum(struct json *j, const char *key, const ProtobufCEnumDescriptor *ed, int v)
{
	const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(ed, v);
	char prefix[128], name[128];
	size_t n = 0, pl;

	if (ev == NULL) {
		json_int(j, key, v);
		return;
	}
	/* CamelCase enum name -> CAMEL_CASE_ */
	for (const char *s = ed->short_name; *s != '\0' && n + 3 < sizeof(prefix); s++) {
		if (s != ed->short_name && *s >= 'A' && *s <= 'Z')
			prefix[n++] = '_';
		prefix[n++] = (char)(*s >= 'a' && *s <= 'z' ? *s - 'a' + 'A' : *s);
	}
	prefix[n++] = '_';
	prefix[n] = '\0';
	pl = strncmp(ev->name, prefix, n) == 0 && ev->name[n] != '\0' ? n : 0;
	snprintf(name, sizeof(name), "%s", ev->name + pl);
	for (char *p = name; *p != '\0'; p++)
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
	json_str(j, key, name);
}

static void mqtt_json_message(struct json *j, const char *key, const ProtobufCMessage *m,
                              bool human);

/* ammd.proto's timestamps: int64 ms named ts, last_read or *_at. */
static bool
mqtt_is_timestamp(const ProtobufCFieldDescriptor *f)
{
	size_t n = strlen(f->name);

	if (f->type != PROTOBUF_C_TYPE_INT64)
		return false;
	return strcmp(f->name, "ts") == 0 || strcmp(f->name, "last_read") == 0 ||
	       (n > 3 && strcmp(f->name + n - 3, "_at") == 0);
}

static void
mqtt_json_utc(struct json *j, const char *name, int64_t ms)
{
	char key[128], buf[40];
	time_t t = (time_t)(ms / 1000);
	struct tm tm;

	if (ms <= 0 || gmtime_r(&t, &tm) == NULL)
		return;
	snprintf(key, sizeof(key), "%s_utc", name);
	strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf + strlen(buf), sizeof(buf) - strlen(buf), ".%03dZ", (int)(ms % 1000));
	json_str(j, key, buf);
}

/* A double that is a whole number (570, not 5.7e+02) is written as one;
 * the value is the same for any JSON reader. */
static void
mqtt_json_double(struct json *j, const char *key, double v)
{
	if (v == v && v >= -9007199254740992.0 && v <= 9007199254740992.0 &&
	    v == (double)(int64_t)v)
		json_int(j, key, (int64_t)v);
	else
		json_double(j, key, v);
}

/* One value of field f at p (the member itself, or an array element). */
static void
mqtt_json_value(struct json *j, const char *key, const ProtobufCFieldDescriptor *f, const void *p,
                bool human)
{
	switch (f->type) {
	case PROTOBUF_C_TYPE_INT32:
	case PROTOBUF_C_TYPE_SINT32:
	case PROTOBUF_C_TYPE_SFIXED32:
		json_int(j, key, *(const int32_t *)p);
		break;
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
		json_int(j, key, *(const int64_t *)p);
		break;
	case PROTOBUF_C_TYPE_UINT32:
	case PROTOBUF_C_TYPE_FIXED32:
		json_uint(j, key, *(const uint32_t *)p);
		break;
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64:
		json_uint(j, key, *(const uint64_t *)p);
		break;
	case PROTOBUF_C_TYPE_FLOAT:
		mqtt_json_double(j, key, *(const float *)p);
		break;
	case PROTOBUF_C_TYPE_DOUBLE:
		mqtt_json_double(j, key, *(const double *)p);
		break;
	case PROTOBUF_C_TYPE_BOOL:
		json_bool(j, key, *(const protobuf_c_boolean *)p != 0);
		break;
	case PROTOBUF_C_TYPE_ENUM:
		mqtt_json_enum(j, key, f->descriptor, *(const int *)p);
		break;
	case PROTOBUF_C_TYPE_STRING: {
		const char *s = *(const char *const *)p;
		json_str(j, key, s != NULL ? s : "");
		break;
	}
	case PROTOBUF_C_TYPE_BYTES: {
		const ProtobufCBinaryData *b = p;
		json_hex(j, key, b->data, b->len);
		break;
	}
	case PROTOBUF_C_TYPE_MESSAGE: {
		const ProtobufCMessage *sub = *(const ProtobufCMessage *const *)p;
		if (sub != NULL)
			mqtt_json_message(j, key, sub, human);
		else
			json_null(j, key);
		break;
	}
	}
}

static size_t
mqtt_type_size(ProtobufCType t)
{
	switch (t) {
	case PROTOBUF_C_TYPE_INT32:
	case PROTOBUF_C_TYPE_SINT32:
	case PROTOBUF_C_TYPE_SFIXED32:
	case PROTOBUF_C_TYPE_UINT32:
	case PROTOBUF_C_TYPE_FIXED32:
		return 4;
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64:
		return 8;
	case PROTOBUF_C_TYPE_FLOAT:
		return sizeof(float);
	case PROTOBUF_C_TYPE_DOUBLE:
		return sizeof(double);
	case PROTOBUF_C_TYPE_BOOL:
		return sizeof(protobuf_c_boolean);
	case PROTOBUF_C_TYPE_ENUM:
		return sizeof(int);
	case PROTOBUF_C_TYPE_STRING:
		return sizeof(char *);
	case PROTOBUF_C_TYPE_BYTES:
		return sizeof(ProtobufCBinaryData);
	case PROTOBUF_C_TYPE_MESSAGE:
		return sizeof(ProtobufCMessage *);
	}
	return 0;
}

/*
 * Every field of m in declaration order.  proto3 scalars have no presence
 * and are always shown (0, "", false are values); an optional field
 * without its has_ flag, an unset message or an inactive oneof member is
 * left out.
 */
static void
mqtt_json_message(struct json *j, const char *key, const ProtobufCMessage *m, bool human)
{
	const ProtobufCMessageDescriptor *d = m->descriptor;
	const char *base = (const char *)m;

	json_obj_begin(j, key);
	for (unsigned i = 0; i < d->n_fields; i++) {
		const ProtobufCFieldDescriptor *f = &d->fields[i];
		const void *member = base + f->offset;

		if (f->label == PROTOBUF_C_LABEL_REPEATED) {
			size_t n = *(const size_t *)(base + f->quantifier_offset);
			const char *arr = *(const char *const *)member;
			size_t sz = mqtt_type_size(f->type);

			json_arr_begin(j, f->name);
			for (size_t k = 0; k < n && arr != NULL; k++)
				mqtt_json_value(j, NULL, f, arr + k * sz, human);
			json_arr_end(j);
			continue;
		}
		if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
			if (*(const uint32_t *)(base + f->quantifier_offset) != f->id)
				continue;
		} else if (f->label == PROTOBUF_C_LABEL_OPTIONAL && f->quantifier_offset != 0 &&
		           f->type != PROTOBUF_C_TYPE_MESSAGE &&
		           f->type != PROTOBUF_C_TYPE_STRING) {
			if (!*(const protobuf_c_boolean *)(base + f->quantifier_offset))
				continue;
		}
		if (f->type == PROTOBUF_C_TYPE_MESSAGE && *(const void *const *)member == NULL)
			continue;
		mqtt_json_value(j, f->name, f, member, human);
		if (human && mqtt_is_timestamp(f))
			mqtt_json_utc(j, f->name, *(const int64_t *)member);
	}
	json_obj_end(j);
}

/* ---- the subscriber -------------------------------------------------------------- */

static bool
mqtt_looks_json(const uint8_t *p, size_t n)
{
	while (n > 0 && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')) {
		p++;
		n--;
	}
	return n > 0 && (*p == '{' || *p == '[');
}

/* Prints one message; returns nothing, errors are shown in the output. */
static void
mqtt_print(const struct mqtt_opts *o, const struct mosquitto_message *msg)
{
	const ProtobufCMessageDescriptor *d = mqtt_topic_type(msg->topic, o->prefix);
	const uint8_t *p = msg->payload;
	size_t n = msg->payloadlen > 0 ? (size_t)msg->payloadlen : 0;
	ProtobufCMessage *pm = NULL;
	const char *type, *error = NULL;
	bool is_json = mqtt_looks_json(p, n);
	struct json j;

	if (is_json) {
		type = "json";
	} else if (d == NULL) {
		type = "unknown";
		error = "not one of ammd's topics";
	} else if ((pm = protobuf_c_message_unpack(d, NULL, n, p)) == NULL) {
		type = d->name;
		error = "payload does not decode as this message";
	} else {
		type = d->name;
	}

	if (o->json) {
		json_init(&j, stdout, false);
		json_obj_begin(&j, NULL);
		json_str(&j, "topic", msg->topic);
		json_str(&j, "type", type);
		json_int(&j, "qos", msg->qos);
		json_bool(&j, "retained", msg->retain);
		json_uint(&j, "bytes", n);
		if (pm != NULL)
			mqtt_json_message(&j, "payload", pm, false);
		else if (is_json)
			json_strn(&j, "payload_text", (const char *)p, n);
		else {
			json_hex(&j, "payload_hex", p, n);
			json_str(&j, "error", error);
		}
		json_obj_end(&j);
		json_end(&j);
	} else {
		printf("%s  %s, %zu bytes, qos %d%s\n", msg->topic, type, n, msg->qos,
		       msg->retain ? ", retained" : "");
		if (pm != NULL) {
			json_init(&j, stdout, true);
			mqtt_json_message(&j, NULL, pm, true);
			json_end(&j);
		} else if (is_json) {
			fwrite(p, 1, n, stdout);
			putchar('\n');
		} else {
			printf("  %s; hex: ", error);
			for (size_t i = 0; i < n; i++)
				printf("%02x", p[i]);
			putchar('\n');
		}
	}
	fflush(stdout);
	if (pm != NULL)
		protobuf_c_message_free_unpacked(pm, NULL);
}

static void
mqtt_on_connect(struct mosquitto *mosq, void *arg, int rc)
{
	struct mqtt_tail *t = arg;
	char filter[1024];

	t->connect_rc = rc;
	if (rc != 0)
		return;
	if (t->o->topic != NULL)
		snprintf(filter, sizeof(filter), "%s", t->o->topic);
	else
		snprintf(filter, sizeof(filter), "%s/#", t->o->prefix);
	if (mosquitto_subscribe(mosq, &t->sub_mid, filter, 1) != MOSQ_ERR_SUCCESS)
		t->connect_rc = -2;
}

static void
mqtt_on_message(struct mosquitto *mosq, void *arg, const struct mosquitto_message *msg)
{
	struct mqtt_tail *t = arg;

	if (t->done || (t->o->no_retained && msg->retain))
		return;
	mqtt_print(t->o, msg);
	t->seen++;
	if (t->o->count > 0 && t->seen >= t->o->count) {
		t->done = true;
		mosquitto_disconnect(mosq);
	}
}

static int
mqtt_read_password(const char *path, char *buf, size_t n)
{
	FILE *f = fopen(path, "r");
	size_t len;

	if (f == NULL) {
		fprintf(stderr, "ammctl mqtt: %s: %s\n", path, strerror(errno));
		return -1;
	}
	len = fread(buf, 1, n - 1, f);
	fclose(f);
	buf[len] = '\0';
	buf[strcspn(buf, "\r\n")] = '\0';
	return 0;
}

static double
mqtt_mono(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int
mqtt_tail(const struct mqtt_opts *o)
{
	struct mqtt_tail t = {.o = o, .connect_rc = -1};
	struct mosquitto *mosq = NULL;
	char id[64], pw[MQTT_PASSWORD_MAX];
	struct sigaction sa;
	double deadline = o->timeout > 0 ? mqtt_mono() + (double)o->timeout : 0;
	int rc = 1, mrc;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = mqtt_on_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	mosquitto_lib_init();
	snprintf(id, sizeof(id), "ammctl-tail-%ld", (long)getpid());
	if ((mosq = mosquitto_new(id, true, &t)) == NULL) {
		fprintf(stderr, "ammctl mqtt: mosquitto_new: %s\n", strerror(errno));
		goto out;
	}
	if (o->user != NULL) {
		pw[0] = '\0';
		if (o->password_file != NULL &&
		    mqtt_read_password(o->password_file, pw, sizeof(pw)) != 0)
			goto out;
		mrc = mosquitto_username_pw_set(mosq, o->user, o->password_file ? pw : NULL);
		memset(pw, 0, sizeof(pw));
		if (mrc != MOSQ_ERR_SUCCESS) {
			fprintf(stderr, "ammctl mqtt: %s\n", mosquitto_strerror(mrc));
			goto out;
		}
	}
	mosquitto_connect_callback_set(mosq, mqtt_on_connect);
	mosquitto_message_callback_set(mosq, mqtt_on_message);
	if ((mrc = mosquitto_connect(mosq, o->host, o->port, MQTT_KEEPALIVE)) != MOSQ_ERR_SUCCESS) {
		fprintf(stderr, "ammctl mqtt: cannot connect to %s:%d: %s\n", o->host, o->port,
		        mrc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(mrc));
		goto out;
	}
	while (!t.done && !mqtt_interrupted) {
		if (deadline > 0 && mqtt_mono() >= deadline)
			break;
		mrc = mosquitto_loop(mosq, 200, 1);
		if (t.connect_rc > 0 || t.connect_rc == -2) {
			fprintf(stderr, "ammctl mqtt: %s:%d refused the connection: %s\n", o->host,
			        o->port,
			        t.connect_rc > 0 ? mosquitto_connack_string(t.connect_rc)
			                         : "subscribe failed");
			goto out;
		}
		if (mrc != MOSQ_ERR_SUCCESS && !t.done && !mqtt_interrupted) {
			fprintf(stderr, "ammctl mqtt: connection to %s:%d lost: %s\n", o->host,
			        o->port,
			        mrc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(mrc));
			goto out;
		}
	}
	if (t.done || o->count == 0) {
		rc = 0; /* enough messages, or interrupted / timed out with no count asked */
	} else {
		fprintf(stderr, "ammctl mqtt: %ld of %ld messages %s\n", t.seen, o->count,
		        mqtt_interrupted ? "before the interrupt" : "before the timeout");
	}
	if (!t.done)
		mosquitto_disconnect(mosq);
out:
	if (mosq != NULL)
		mosquitto_destroy(mosq);
	mosquitto_lib_cleanup();
	return rc;
}

int
ctl_mqtt(int argc, char **argv)
{
	struct mqtt_opts o;
	int rc;

	if (argc < 1 || strcmp(argv[0], "-h") == 0 || strcmp(argv[0], "--help") == 0) {
		mqtt_usage(argc < 1 ? stderr : stdout);
		return argc < 1 ? 2 : 0;
	}
	if (strcmp(argv[0], "tail") != 0) {
		fprintf(stderr, "ammctl mqtt: unknown subcommand '%s'\n", argv[0]);
		mqtt_usage(stderr);
		return 2;
	}
	if ((rc = mqtt_parse(argc - 1, argv + 1, &o)) != 0)
		return rc < 0 ? 0 : rc;
	return mqtt_tail(&o);
}
