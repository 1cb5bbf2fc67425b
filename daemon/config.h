/*
 * config.h: ammd's configuration, read from an INI file (libinih).  Every
 * option lives in struct config with its default written once, in the option
 * table in config.c; the example file systemd/ammd.conf.example and ammd(8)
 * document the same list.  Loading is all-or-nothing: a file with any error
 * (unknown section or key, bad value, a secret in a world-readable file)
 * yields no config at all, only diagnostics naming file and line, so a
 * reload with a broken file leaves the running configuration untouched.
 *
 * A struct config is plain data (no pointers): it may be copied and compared
 * with memcmp, and modules keep the pointer they were given only until the
 * next reload hook tells them about its successor.
 */
#ifndef AMM_CONFIG_H
#define AMM_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "obis.h"

#define CONFIG_DEFAULT_PATH "/etc/ammd/ammd.conf"
#define CONFIG_STR_MAX	    256
#define CONFIG_PATH_MAX	    1024
#define CONFIG_MAX_REGISTERS 64

/* "host:port" or "[v6addr]:port"; host[0] == '\0' means "not set". */
struct config_addr {
	char host[CONFIG_STR_MAX];
	uint16_t port;
};

enum config_format { CONFIG_FORMAT_PROTOBUF, CONFIG_FORMAT_JSON };

struct config {
	struct {
		int log_level; /* LOG_ERR .. LOG_DEBUG */
		struct config_addr http_listen;
		int shutdown_timeout; /* s */
		char instance_id[CONFIG_STR_MAX]; /* host name when not set */
	} daemon;
	struct {
		char dsn[CONFIG_PATH_MAX];
		bool migrate_on_start;
		int batch_rows;
		int batch_ms;
	} database;
	struct {
		bool enabled;
		char host[CONFIG_STR_MAX];
		int port;
		char client_id[CONFIG_STR_MAX]; /* "ammd-<instance_id>" when not set */
		char username[CONFIG_STR_MAX];
		char password[CONFIG_STR_MAX]; /* discouraged: use password_file */
		char password_file[CONFIG_PATH_MAX];
		char tls_ca[CONFIG_PATH_MAX];
		char tls_cert[CONFIG_PATH_MAX];
		char tls_key[CONFIG_PATH_MAX];
		char prefix[CONFIG_STR_MAX];
		int qos;
		enum config_format format;
		bool ha_discovery;
		char ha_prefix[CONFIG_STR_MAX];
		/* also take CommandRequests on <prefix>/command/request, whose
		 * publisher nobody can name (each client's own topic is always on) */
		bool shared_requests;
	} mqtt;
	struct {
		int window_start;  /* minutes after local midnight */
		int window_length; /* s */
		int concurrency;
		struct obis registers[CONFIG_MAX_REGISTERS];
		size_t nregisters;
		int profile_backfill_days;
		int clock_drift_threshold_s;
		int retry_base_s;
		int retry_max_s;
		int unreachable_retry_s;
		int lease_batch;
		int lease_seconds;
	} collection;
	struct {
		int connect_timeout_ms;
		int response_timeout_ms;
		int inactivity_timeout_s;
		int default_port;
	} tcpip;
	struct {
		struct config_addr listen; /* host empty: no listener */
		int max_unidentified;
		int handshake_timeout_s;
		int idle_timeout_s;
		int connect_timeout_ms;
		int response_timeout_ms;
		char wakeup_command[CONFIG_PATH_MAX];
	} gprs;
	struct {
		int connect_timeout_ms;
		int response_timeout_ms;
		int retries;
	} mbus;
	struct {
		int connect_timeout_ms;
		int response_timeout_ms;
		int retries;
	} modbus;
	struct {
		/* Fleet-wide caps per minute; 0 refuses the kind altogether. */
		int disconnect_per_minute;
		int reconnect_per_minute;
		int credit_per_minute;
		int payment_mode_per_minute;
		int tariff_per_minute;
		int limiter_per_minute;
		int clock_sync_per_minute;
		int read_now_per_minute;
		int default_expiry_s;
		int lease_seconds; /* a running command's lease, renewed every third */
	} commands;
};

/* One complaint about a config file.  line is 0 for the file as a whole. */
struct config_error {
	int line;
	char msg[320];
};

#define CONFIG_MAX_ERRORS 32

struct config_diag {
	char file[CONFIG_PATH_MAX];
	size_t n;      /* errors kept (at most CONFIG_MAX_ERRORS) */
	size_t total;  /* errors found */
	struct config_error err[CONFIG_MAX_ERRORS];
};

/* Fill c with every default (instance_id and client_id included). */
void config_defaults(struct config *c);

/*
 * Read and check the file at path.  Returns a new config (caller frees with
 * config_free) or NULL with the reasons in *diag.  Refuses a file that holds
 * a secret (database dsn with a password, mqtt password) while readable by
 * everyone.
 */
struct config *config_load(const char *path, struct config_diag *diag);

/* The same from text already in memory (no file-mode check); name is used
 * in messages. */
struct config *config_parse_string(const char *text, const char *name, struct config_diag *diag);

void config_free(struct config *c);

/*
 * Load path and, only if it is valid, free *cur and put the new config in
 * its place.  Returns 0, or -1 with *cur untouched and the reasons in *diag.
 */
int config_reload(struct config **cur, const char *path, struct config_diag *diag);

/* Print every diagnostic as "file:line: message" (or "file: message"). */
void config_diag_print(const struct config_diag *diag, void (*out)(const char *line, void *arg),
    void *arg);

/* True when the DSN carries a password (key/value "password=" or a URI
 * "postgresql://user:secret@..."). */
bool config_dsn_has_password(const char *dsn);

/*
 * Resolve a secret's file name: a relative name is taken inside
 * $CREDENTIALS_DIRECTORY (systemd LoadCredential=) when that is set.
 * Writes into out; returns out, or NULL if it does not fit.
 */
char *config_credential_path(const char *name, char *out, size_t outlen);

/* "host:port" for messages, into out (at least CONFIG_STR_MAX + 8). */
const char *config_addr_format(const struct config_addr *a, char *out, size_t outlen);

#endif
