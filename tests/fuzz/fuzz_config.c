/*
 * fuzz_config.c: ammd's configuration parser (daemon/config.c, libinih
 * underneath) on arbitrary INI text.
 *
 * The text goes through config_parse_string() as an operator's file would
 * through config_load() (less the file-mode check).  Loading is
 * all-or-nothing: either a config comes back and the diagnostics are empty,
 * or no config and at least one diagnostic, each a terminated message with
 * a line number inside the text.  A config that loads must hold only
 * terminated strings and a register count within its array, and the
 * helpers that read it (the address formatter, the DSN password check)
 * must hold too.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile size_t sink;

static void
diag_line(const char *line, void *arg)
{
	(void)arg;
	sink += strlen(line);
}

static void
check_str(const char *s, size_t cap)
{
	if (memchr(s, 0, cap) == NULL)
		abort();
	sink += strlen(s);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct config_diag diag;
	struct config *c;
	char addr[CONFIG_STR_MAX + 16];
	char *text;
	size_t lines = 1;

	if ((text = malloc(size + 1)) == NULL)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	for (size_t i = 0; i < size && text[i] != '\0'; i++)
		lines += text[i] == '\n';

	c = config_parse_string(text, "fuzz.conf", &diag);
	if (diag.n > CONFIG_MAX_ERRORS || diag.n > diag.total)
		abort();
	for (size_t i = 0; i < diag.n; i++) {
		check_str(diag.err[i].msg, sizeof(diag.err[i].msg));
		if (diag.err[i].line < 0 || (size_t)diag.err[i].line > lines)
			abort();
	}
	config_diag_print(&diag, diag_line, NULL);
	if (c == NULL) {
		if (diag.total == 0)
			abort(); /* refused without saying why */
	} else {
		if (diag.total != 0)
			abort(); /* complaints, yet a config */
		if (c->collection.nregisters > CONFIG_MAX_REGISTERS)
			abort();
		check_str(c->daemon.instance_id, sizeof(c->daemon.instance_id));
		check_str(c->database.dsn, sizeof(c->database.dsn));
		check_str(c->mqtt.host, sizeof(c->mqtt.host));
		check_str(c->mqtt.client_id, sizeof(c->mqtt.client_id));
		check_str(c->mqtt.password, sizeof(c->mqtt.password));
		check_str(c->mqtt.prefix, sizeof(c->mqtt.prefix));
		check_str(c->gprs.wakeup_command, sizeof(c->gprs.wakeup_command));
		check_str(c->gprs.listen.host, sizeof(c->gprs.listen.host));
		sink += config_dsn_has_password(c->database.dsn);
		config_addr_format(&c->daemon.http_listen, addr, sizeof(addr));
		check_str(addr, sizeof(addr));
		config_addr_format(&c->gprs.listen, addr, sizeof(addr));
		check_str(addr, sizeof(addr));
		config_free(c);
	}
	free(text);
	return 0;
}
