/*
 * ammctl.c: the operator's and field engineer's command-line tool.
 * This file only dispatches to the subcommands in ctl_*.c.
 */
#include <stdio.h>
#include <string.h>

#include "ctl.h"

struct ctl_cmd {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *help;
};

static const struct ctl_cmd cmds[] = {
	{"decode", ctl_decode, "decode dlms|hdlc|wrapper|mbus HEX|-   decode captured bytes to JSON"},
	{"read", ctl_read, "read --host H [--port P] | --listen [ADDR:]PORT [--hdlc] ... OBIS[:ATTR] | --mbus H:P --primary N|--secondary ID [OBIS...] | --modbus H:P --unit N [OBIS...]   one read from a meter"},
	{"action", ctl_action, "action --host H ... OBIS:METHOD [DATA]   invoke a method on a meter"},
	{"db", ctl_db, "db migrate|status [--dsn DSN]   apply or show the schema migrations"},
	{"meter", ctl_meter, "meter import|add|list|show|disable|enable ...   the meter inventory"},
	{"cmd", ctl_cmd, "cmd KIND SERIAL... [key=value...] | list | show ID | cancel ID   operator commands"},
	{"status", ctl_status, "status [--json] [--meter SERIAL] [--days N]   fleet, collection round, completeness"},
	{"mqtt", ctl_mqtt, "mqtt tail [--host H] [--port P] [--prefix P] [--count N] [--json]   decoded MQTT feed"},
	{"mbus", ctl_mbus, "mbus scan HOST:PORT [--baud B] [--mask HEX] [--json] | read HOST:PORT ADDR|SECONDARY"},
	{"report", ctl_report, "report traffic [--month YYYY-MM] [--transport T] [--json]   data volume per meter"},
};

static void
usage(FILE *f)
{
	fprintf(f, "usage: ammctl COMMAND [ARGS...]\n\ncommands:\n");
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		fprintf(f, "  %s\n", cmds[i].help);
}

int
main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 ||
	    strcmp(argv[1], "help") == 0) {
		usage(stdout);
		return 0;
	}
	if (argc >= 3 && strcmp(argv[1], "meter") == 0 && strcmp(argv[2], "discover") == 0)
		return ctl_discover(argc - 3, argv + 3);
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		if (strcmp(argv[1], cmds[i].name) == 0)
			return cmds[i].run(argc - 2, argv + 2);
	fprintf(stderr, "ammctl: unknown command '%s'\n", argv[1]);
	usage(stderr);
	return 2;
}
