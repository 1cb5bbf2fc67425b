/*
 * test_config.c: ammd.conf parsing (daemon/config.c): the defaults, every
 * option read from a file, wrong values, unknown keys and sections reported
 * at the right line, the refusal of a world-readable file holding a secret,
 * and a reload that keeps the running config when the new file is broken.
 */
#include <criterion/criterion.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include "config.h"

static struct config_diag diag;

static struct config *
parse(const char *text)
{
	return config_parse_string(text, "test.conf", &diag);
}

/* A temporary file with the given text and mode; caller unlinks. */
static char *
temp_conf(const char *text, mode_t mode)
{
	char *path = strdup("/tmp/ammd-test-conf-XXXXXX");
	int fd = mkstemp(path);
	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	cr_assert_eq(fchmod(fd, mode), 0);
	close(fd);
	return path;
}

Test(config, defaults)
{
	struct config c;
	char obis[OBIS_STRLEN];

	config_defaults(&c);
	cr_assert_eq(c.daemon.log_level, LOG_INFO);
	cr_assert_str_eq(c.daemon.http_listen.host, "127.0.0.1");
	cr_assert_eq(c.daemon.http_listen.port, 9477);
	cr_assert_eq(c.daemon.shutdown_timeout, 30);
	cr_assert_str_eq(c.database.dsn, "dbname=ammd");
	cr_assert_eq(c.database.migrate_on_start, false);
	cr_assert_eq(c.database.batch_rows, 5000);
	cr_assert_eq(c.database.batch_ms, 200);
	cr_assert_eq(c.mqtt.enabled, false);
	cr_assert_str_eq(c.mqtt.host, "localhost");
	cr_assert_eq(c.mqtt.port, 1883);
	cr_assert_str_eq(c.mqtt.prefix, "ammd/v1");
	cr_assert_eq(c.mqtt.qos, 1);
	cr_assert_eq(c.mqtt.format, CONFIG_FORMAT_PROTOBUF);
	cr_assert_eq(c.collection.window_start, 15);
	cr_assert_eq(c.collection.window_length, 20 * 3600);
	cr_assert_eq(c.collection.concurrency, 200);
	cr_assert_eq(c.collection.nregisters, 14);
	snprintf(obis, sizeof(obis), "%u-%u:%u.%u.%u.%u", c.collection.registers[0].v[0],
	    c.collection.registers[0].v[1], c.collection.registers[0].v[2],
	    c.collection.registers[0].v[3], c.collection.registers[0].v[4],
	    c.collection.registers[0].v[5]);
	cr_assert_str_eq(obis, "1-0:1.8.0.255");
	cr_assert_eq(c.collection.registers[13].v[2], 71);
	cr_assert_eq(c.collection.retry_base_s, 60);
	cr_assert_eq(c.collection.retry_max_s, 3600);
	cr_assert_eq(c.tcpip.default_port, 4059);
	cr_assert_eq(c.tcpip.connect_timeout_ms, 5000);
	cr_assert_str_eq(c.gprs.listen.host, "");
	cr_assert_eq(c.gprs.handshake_timeout_s, 60);
	cr_assert_eq(c.mbus.response_timeout_ms, 3000);
	cr_assert_eq(c.modbus.response_timeout_ms, 1000);
	cr_assert_eq(c.commands.disconnect_per_minute, 10);
	cr_assert_eq(c.commands.default_expiry_s, 86400);
}

Test(config, empty_file_gives_defaults_and_derived_names)
{
	struct config *c = parse("");
	char host[256] = "";

	cr_assert_not_null(c);
	gethostname(host, sizeof(host) - 1);
	host[strcspn(host, ".")] = '\0';
	host[63] = '\0';
	cr_assert_str_eq(c->daemon.instance_id, host[0] ? host : "ammd");
	cr_assert_eq(strncmp(c->mqtt.client_id, "ammd-", 5), 0);
	cr_assert_str_eq(c->mqtt.client_id + 5, c->daemon.instance_id);
	config_free(c);
}

/* The example file documents every option at its default: it must parse,
 * and to the very same config as an empty file. */
Test(config, example_file_equals_defaults)
{
	const char *path = access("systemd/ammd.conf.example", R_OK) == 0
	    ? "systemd/ammd.conf.example" : "../systemd/ammd.conf.example";
	struct config *ex = config_load(path, &diag);
	struct config *def;

	cr_assert_not_null(ex, "%s: line %d: %s", path, diag.err[0].line, diag.err[0].msg);
	def = parse("");
	cr_assert_not_null(def);
	cr_assert_eq(memcmp(ex, def, sizeof(*ex)), 0, "example and defaults differ");
	config_free(ex);
	config_free(def);
}

enum kind { K_INT, K_BOOL, K_STR };

struct opt_case {
	const char *section, *key, *value;
	size_t off;
	enum kind kind;
	long want;
	const char *want_str;
};

#define OFF(f) offsetof(struct config, f)

static const struct opt_case opt_cases[] = {
	{"daemon", "shutdown_timeout", "2m", OFF(daemon.shutdown_timeout), K_INT, 120, NULL},
	{"daemon", "instance_id", "hes-2", OFF(daemon.instance_id), K_STR, 0, "hes-2"},
	{"database", "dsn", "\"host=/run/postgresql dbname=x\"", OFF(database.dsn), K_STR, 0,
	    "host=/run/postgresql dbname=x"},
	{"database", "migrate_on_start", "yes", OFF(database.migrate_on_start), K_BOOL, 1, NULL},
	{"database", "batch_rows", "20000", OFF(database.batch_rows), K_INT, 20000, NULL},
	{"database", "batch_ms", "50", OFF(database.batch_ms), K_INT, 50, NULL},
	{"mqtt", "enabled", "on", OFF(mqtt.enabled), K_BOOL, 1, NULL},
	{"mqtt", "host", "broker.example", OFF(mqtt.host), K_STR, 0, "broker.example"},
	{"mqtt", "port", "8883", OFF(mqtt.port), K_INT, 8883, NULL},
	{"mqtt", "client_id", "hes", OFF(mqtt.client_id), K_STR, 0, "hes"},
	{"mqtt", "username", "u", OFF(mqtt.username), K_STR, 0, "u"},
	/* A password needs a username: the value carries the second line. */
	{"mqtt", "password_file", "mqtt-password\nusername = u", OFF(mqtt.password_file), K_STR, 0,
	    "mqtt-password"},
	{"mqtt", "tls_ca", "/etc/ssl/ca.pem", OFF(mqtt.tls_ca), K_STR, 0, "/etc/ssl/ca.pem"},
	{"mqtt", "prefix", "utility/ammd", OFF(mqtt.prefix), K_STR, 0, "utility/ammd"},
	{"mqtt", "qos", "0", OFF(mqtt.qos), K_INT, 0, NULL},
	{"mqtt", "format", "json", OFF(mqtt.format), K_INT, CONFIG_FORMAT_JSON, NULL},
	{"mqtt", "ha_discovery", "true", OFF(mqtt.ha_discovery), K_BOOL, 1, NULL},
	{"mqtt", "ha_prefix", "ha", OFF(mqtt.ha_prefix), K_STR, 0, "ha"},
	{"collection", "window_start", "22:30", OFF(collection.window_start), K_INT, 1350, NULL},
	{"collection", "window_length", "90m", OFF(collection.window_length), K_INT, 5400, NULL},
	{"collection", "concurrency", "1000", OFF(collection.concurrency), K_INT, 1000, NULL},
	{"collection", "profile_backfill_days", "0", OFF(collection.profile_backfill_days), K_INT, 0, NULL},
	{"collection", "clock_drift_threshold_s", "5", OFF(collection.clock_drift_threshold_s), K_INT, 5, NULL},
	{"collection", "retry_base_s", "30", OFF(collection.retry_base_s), K_INT, 30, NULL},
	{"collection", "retry_max_s", "7200", OFF(collection.retry_max_s), K_INT, 7200, NULL},
	{"collection", "unreachable_retry_s", "3600", OFF(collection.unreachable_retry_s), K_INT, 3600, NULL},
	{"collection", "lease_batch", "50", OFF(collection.lease_batch), K_INT, 50, NULL},
	{"collection", "lease_seconds", "120", OFF(collection.lease_seconds), K_INT, 120, NULL},
	{"tcpip", "connect_timeout_ms", "1500", OFF(tcpip.connect_timeout_ms), K_INT, 1500, NULL},
	{"tcpip", "response_timeout_ms", "2500", OFF(tcpip.response_timeout_ms), K_INT, 2500, NULL},
	{"tcpip", "inactivity_timeout_s", "30", OFF(tcpip.inactivity_timeout_s), K_INT, 30, NULL},
	{"tcpip", "default_port", "4060", OFF(tcpip.default_port), K_INT, 4060, NULL},
	{"gprs", "max_unidentified", "10", OFF(gprs.max_unidentified), K_INT, 10, NULL},
	{"gprs", "handshake_timeout_s", "90", OFF(gprs.handshake_timeout_s), K_INT, 90, NULL},
	{"gprs", "idle_timeout_s", "300", OFF(gprs.idle_timeout_s), K_INT, 300, NULL},
	{"gprs", "connect_timeout_ms", "90000", OFF(gprs.connect_timeout_ms), K_INT, 90000, NULL},
	{"gprs", "response_timeout_ms", "45000", OFF(gprs.response_timeout_ms), K_INT, 45000, NULL},
	{"gprs", "wakeup_command", "/usr/local/bin/wake", OFF(gprs.wakeup_command), K_STR, 0, "/usr/local/bin/wake"},
	{"mbus", "connect_timeout_ms", "2000", OFF(mbus.connect_timeout_ms), K_INT, 2000, NULL},
	{"mbus", "response_timeout_ms", "600", OFF(mbus.response_timeout_ms), K_INT, 600, NULL},
	{"mbus", "retries", "0", OFF(mbus.retries), K_INT, 0, NULL},
	{"modbus", "connect_timeout_ms", "700", OFF(modbus.connect_timeout_ms), K_INT, 700, NULL},
	{"modbus", "response_timeout_ms", "80", OFF(modbus.response_timeout_ms), K_INT, 80, NULL},
	{"modbus", "retries", "5", OFF(modbus.retries), K_INT, 5, NULL},
	{"commands", "disconnect_per_minute", "0", OFF(commands.disconnect_per_minute), K_INT, 0, NULL},
	{"commands", "reconnect_per_minute", "5", OFF(commands.reconnect_per_minute), K_INT, 5, NULL},
	{"commands", "credit_per_minute", "6", OFF(commands.credit_per_minute), K_INT, 6, NULL},
	{"commands", "payment_mode_per_minute", "7", OFF(commands.payment_mode_per_minute), K_INT, 7, NULL},
	{"commands", "tariff_per_minute", "8", OFF(commands.tariff_per_minute), K_INT, 8, NULL},
	{"commands", "limiter_per_minute", "9", OFF(commands.limiter_per_minute), K_INT, 9, NULL},
	{"commands", "clock_sync_per_minute", "11", OFF(commands.clock_sync_per_minute), K_INT, 11, NULL},
	{"commands", "read_now_per_minute", "12", OFF(commands.read_now_per_minute), K_INT, 12, NULL},
	{"commands", "default_expiry_s", "2h", OFF(commands.default_expiry_s), K_INT, 7200, NULL},
};

Test(config, every_simple_option_is_read)
{
	char text[512];

	for (size_t i = 0; i < sizeof(opt_cases) / sizeof(opt_cases[0]); i++) {
		const struct opt_case *t = &opt_cases[i];
		struct config *c;
		const char *field;

		snprintf(text, sizeof(text), "; comment\n[%s]\n%s = %s ; trailing comment\n",
		    t->section, t->key, t->value);
		c = parse(text);
		cr_assert_not_null(c, "[%s] %s = %s: %s", t->section, t->key, t->value,
		    diag.n ? diag.err[0].msg : "?");
		field = (const char *)c + t->off;
		switch (t->kind) {
		case K_INT:
			cr_assert_eq(*(const int *)field, t->want, "[%s] %s", t->section, t->key);
			break;
		case K_BOOL:
			cr_assert_eq(*(const bool *)field, t->want != 0, "[%s] %s", t->section, t->key);
			break;
		case K_STR:
			cr_assert_str_eq(field, t->want_str, "[%s] %s", t->section, t->key);
			break;
		}
		config_free(c);
	}
}

Test(config, structured_options)
{
	struct config *c = parse("[daemon]\n"
				 "log_level = debug\n"
				 "http_listen = [::1]:9100\n"
				 "[mqtt]\n"
				 "username = ammd\n"
				 "password = s3cret\n"
				 "tls_cert = /c.pem\n"
				 "tls_key = /k.pem\n"
				 "[gprs]\n"
				 "listen = 0.0.0.0:4060\n"
				 "[collection]\n"
				 "registers = 1-0:1.8.0, 0-0:96.1.0.255\n"
				 "    1-0:99.1.0.255\n");

	cr_assert_not_null(c, "%s", diag.n ? diag.err[0].msg : "?");
	cr_assert_eq(c->daemon.log_level, LOG_DEBUG);
	cr_assert_str_eq(c->daemon.http_listen.host, "::1");
	cr_assert_eq(c->daemon.http_listen.port, 9100);
	cr_assert_str_eq(c->mqtt.password, "s3cret");
	cr_assert_str_eq(c->mqtt.tls_key, "/k.pem");
	cr_assert_str_eq(c->gprs.listen.host, "0.0.0.0");
	cr_assert_eq(c->gprs.listen.port, 4060);
	cr_assert_eq(c->collection.nregisters, 3);
	cr_assert_eq(c->collection.registers[0].v[5], 255);
	cr_assert_eq(c->collection.registers[1].v[3], 1);
	cr_assert_eq(c->collection.registers[2].v[2], 99);
	config_free(c);

	c = parse("[daemon]\nhttp_listen =\n");
	cr_assert_not_null(c);
	cr_assert_str_eq(c->daemon.http_listen.host, "");
	config_free(c);
}

struct bad_case {
	const char *text;
	int line;
	const char *says;
};

static const struct bad_case bad_cases[] = {
	{"[daemon]\nshutdown_timeout = 0\n", 2, "shutdown_timeout: must be a duration"},
	{"[daemon]\nshutdown_timeout = 10x\n", 2, "shutdown_timeout"},
	{"[daemon]\nlog_level = loud\n", 2, "log_level: must be one of"},
	{"[daemon]\nhttp_listen = localhost\n", 2, "http_listen: must be HOST:PORT"},
	{"[daemon]\nhttp_listen = ::1:80\n", 2, "http_listen"},
	{"[daemon]\nhttp_listen = 127.0.0.1:0\n", 2, "http_listen"},
	{"[daemon]\ninstance_id = a b\n", 2, "instance_id may hold only"},
	{"[mqtt]\nqos = 3\n", 2, "qos: must be an integer from 0 to 2"},
	{"[mqtt]\nport = 70000\n", 2, "port"},
	{"[mqtt]\nport = -1\n", 2, "port"},
	{"[mqtt]\nport = 12abc\n", 2, "port"},
	{"[mqtt]\nenabled = maybe\n", 2, "enabled: must be yes or no"},
	{"[mqtt]\nformat = xml\n", 2, "format: must be protobuf or json"},
	{"[mqtt]\nprefix = ammd/#\n", 2, "prefix must not contain"},
	{"[mqtt]\nprefix =\n", 2, "prefix: must not be empty"},
	{"[mqtt]\n\ntls_cert = /c.pem\n", 3, "tls_cert and tls_key go together"},
	{"[mqtt]\npassword = x\n", 2, "needs a username"},
	{"[mqtt]\nusername = u\npassword = x\npassword_file = f\n", 3, "exclusive"},
	{"[mqtt]\nclient_id = a\x01z\n", 2, "control character, not"},
	{"[mqtt]\nusername = u\npassword = hun\x01ter2\n", 3, "[mqtt] password: contains a control character"},
	{"[collection]\nwindow_start = 24:00\n", 2, "window_start: must be a time of day"},
	{"[collection]\nwindow_start = 7\n", 2, "window_start"},
	{"[collection]\nwindow_length = 2d\n", 2, "window_length"},
	{"[collection]\nregisters = 1-0:1.8.0.256\n", 2, "not an OBIS code"},
	{"[collection]\nregisters = 1-0:1.8\n", 2, "not an OBIS code"},
	{"[collection]\nregisters = 1-0:1.8.0 1-0:1.8.0.255\n", 2, "listed twice"},
	{"[collection]\nregisters =\n", 2, "at least one register"},
	{"[collection]\nretry_base_s = 100\nretry_max_s = 50\n", 3, "smaller than retry_base_s"},
	{"# comment\n\n[daemon]\nlog_level = info\nlog_lvl = debug\n", 5, "[daemon] log_lvl: unknown key"},
	{"[daemon]\n[databse]\ndsn = x\n", 2, "unknown section [databse]"},
	{"log_level = info\n", 1, "outside any section"},
	{"[daemon]\nlog_level = info\nlog_level = debug\n", 3, "set twice (first on line 2)"},
	{"[daemon]\njust some words\n", 2, "expected \"key = value\""},
	{"[daemon\nlog_level = info\n", 1, "closing ']'"},
	{"[daemon]\nshutdown_timeout = 10\n  20\n", 3, "only lists may continue"},
	{"[tcpip]\ndefault_port = 0\n", 2, "default_port"},
	{"[commands]\ndefault_expiry_s = 10\n", 2, "default_expiry_s"},
};

Test(config, bad_values_name_the_line)
{
	for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
		const struct bad_case *t = &bad_cases[i];
		struct config *c = parse(t->text);

		cr_assert_null(c, "case %zu accepted: %s", i, t->text);
		cr_assert_eq(diag.total, 1, "case %zu: %zu errors, first: %s", i, diag.total,
		    diag.err[0].msg);
		cr_assert_eq(diag.err[0].line, t->line, "case %zu: line %d, want %d (%s)", i,
		    diag.err[0].line, t->line, diag.err[0].msg);
		cr_assert_not_null(strstr(diag.err[0].msg, t->says), "case %zu: \"%s\" lacks \"%s\"",
		    i, diag.err[0].msg, t->says);
	}
}

Test(config, secrets_are_not_echoed)
{
	cr_assert_null(parse("[database]\ndsn = password=hun\x02ter2\n"));
	cr_assert_eq(diag.err[0].line, 2);
	cr_assert_null(strstr(diag.err[0].msg, "hun"), "%s", diag.err[0].msg);
}

Test(config, every_error_is_reported)
{
	struct config *c = parse("[daemon]\n"
				 "log_level = loud\n"
				 "[nope]\n"
				 "x = 1\n"
				 "[mqtt]\n"
				 "qos = 9\n"
				 "colour = blue\n");

	cr_assert_null(c);
	cr_assert_eq(diag.n, 4);
	cr_assert_eq(diag.err[0].line, 2);
	cr_assert_eq(diag.err[1].line, 3);
	cr_assert_eq(diag.err[2].line, 6);
	cr_assert_eq(diag.err[3].line, 7);
	cr_assert_str_eq(diag.file, "test.conf");
}

Test(config, overlong_line_is_an_error_not_a_truncation)
{
	char text[600];
	int n = snprintf(text, sizeof(text), "[gprs]\nwakeup_command = /bin/");
	memset(text + n, 'x', 300);
	strcpy(text + n + 300, "\n[mqtt]\nqos = 2\n");

	cr_assert_null(parse(text));
	cr_assert_eq(diag.total, 1);
	cr_assert_eq(diag.err[0].line, 2);
	cr_assert_not_null(strstr(diag.err[0].msg, "longer than"));
}

struct dsn_case {
	const char *dsn;
	bool secret;
};

static const struct dsn_case dsn_cases[] = {
	{"dbname=ammd", false},
	{"host=/run/postgresql dbname=ammd user=ammd", false},
	{"dbname=ammd password=x", true},
	{"dbname=ammd password = x", true},
	{"passfile=/etc/ammd/pgpass dbname=ammd", false},
	{"postgresql://ammd@db/ammd", false},
	{"postgresql://ammd:x@db/ammd", true},
	{"postgres://db:5432/ammd?password=x", true},
	{"postgresql://db/ammd?sslmode=require", false},
};

Test(config, dsn_password_detection)
{
	for (size_t i = 0; i < sizeof(dsn_cases) / sizeof(dsn_cases[0]); i++)
		cr_assert_eq(config_dsn_has_password(dsn_cases[i].dsn), dsn_cases[i].secret, "%s",
		    dsn_cases[i].dsn);
}

Test(config, world_readable_secret_is_refused)
{
	static const struct {
		const char *text;
		int line;
		const char *says;
	} cases[] = {
		{"[database]\n\ndsn = dbname=ammd password=hunter2\n", 3, "[database] dsn holds a password"},
		{"[mqtt]\nusername = u\npassword = hunter2\n", 3, "[mqtt] password is set"},
	};

	for (size_t i = 0; i < 2; i++) {
		char *path = temp_conf(cases[i].text, 0644);
		struct config *c = config_load(path, &diag);
		cr_assert_null(c, "case %zu accepted at mode 0644", i);
		cr_assert_eq(diag.total, 1);
		cr_assert_eq(diag.err[0].line, cases[i].line);
		cr_assert_not_null(strstr(diag.err[0].msg, cases[i].says), "%s", diag.err[0].msg);
		cr_assert_not_null(strstr(diag.err[0].msg, "readable by everyone (mode 0644)"), "%s",
		    diag.err[0].msg);
		cr_assert_str_eq(diag.file, path);

		/* The same file closed to others is fine. */
		cr_assert_eq(chmod(path, 0640), 0);
		c = config_load(path, &diag);
		cr_assert_not_null(c, "case %zu refused at mode 0640", i);
		config_free(c);
		unlink(path);
		free(path);
	}

	/* No secret: a world-readable file is fine. */
	char *path = temp_conf("[database]\ndsn = dbname=ammd\n", 0644);
	struct config *c = config_load(path, &diag);
	cr_assert_not_null(c);
	config_free(c);
	unlink(path);
	free(path);
}

Test(config, missing_file)
{
	cr_assert_null(config_load("/nonexistent/ammd.conf", &diag));
	cr_assert_eq(diag.err[0].line, 0);
	cr_assert_not_null(strstr(diag.err[0].msg, "cannot open"));
}

static void
collect(const char *line, void *arg)
{
	strncat(arg, line, 1000);
	strncat(arg, "|", 2);
}

Test(config, diagnostics_print_file_and_line)
{
	char out[2048] = "";

	cr_assert_null(parse("[daemon]\nfoo = 1\n"));
	config_diag_print(&diag, collect, out);
	cr_assert_str_eq(out, "test.conf:2: [daemon] foo: unknown key|");
}

Test(config, reload_keeps_the_running_config_on_error)
{
	char *path = temp_conf("[mqtt]\nqos = 2\n", 0600);
	struct config *cur = config_load(path, &diag), *before;
	FILE *f;

	cr_assert_not_null(cur);
	before = cur;

	f = fopen(path, "w");
	fputs("[mqtt]\nqos = 0\nbogus = 1\n", f);
	fclose(f);
	cr_assert_eq(config_reload(&cur, path, &diag), -1);
	cr_assert_eq(cur, before, "the running config was replaced");
	cr_assert_eq(cur->mqtt.qos, 2);
	cr_assert_eq(diag.err[0].line, 3);

	f = fopen(path, "w");
	fputs("[mqtt]\nqos = 0\n", f);
	fclose(f);
	cr_assert_eq(config_reload(&cur, path, &diag), 0);
	cr_assert_eq(cur->mqtt.qos, 0);
	config_free(cur);
	unlink(path);
	free(path);
}

Test(config, credential_path)
{
	char out[256];

	setenv("CREDENTIALS_DIRECTORY", "/run/credentials/ammd.service", 1);
	cr_assert_str_eq(config_credential_path("mqtt-password", out, sizeof(out)),
	    "/run/credentials/ammd.service/mqtt-password");
	cr_assert_str_eq(config_credential_path("/etc/ammd/pw", out, sizeof(out)), "/etc/ammd/pw");
	cr_assert_null(config_credential_path("mqtt-password", out, 10));
	unsetenv("CREDENTIALS_DIRECTORY");
	cr_assert_str_eq(config_credential_path("pw", out, sizeof(out)), "pw");
}
