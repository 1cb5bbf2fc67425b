/*
 * ctl.h: the subcommands of ammctl, one file each (ctl_*.c).  Each takes
 * the arguments after its own name and returns the process exit code:
 * 0 success, 1 bad input or failed operation, 2 usage error.
 */
#ifndef AMM_CTL_H
#define AMM_CTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

int ctl_decode(int argc, char **argv);	     /* ctl_decode.c */
int ctl_decode_dlms(const char *kind, int argc, char **argv); /* ctl_decode_dlms.c: dlms|hdlc|wrapper */
int ctl_decode_mbus(int argc, char **argv);  /* ctl_decode_mbus.c */
int ctl_read(int argc, char **argv);	     /* ctl_read.c */
int ctl_action(int argc, char **argv);	     /* ctl_read.c */
int ctl_db(int argc, char **argv);	     /* ctl_db.c: migrate|status */
int ctl_meter(int argc, char **argv);	     /* ctl_meter.c: import|add|list|show|disable|enable */
int ctl_discover(int argc, char **argv);    /* ctl_discover.c: meter discover */
int ctl_cmd(int argc, char **argv);	     /* ctl_cmd.c: KIND|list|show|cancel */
int ctl_status(int argc, char **argv);	     /* ctl_status.c: fleet, round, completeness */
int ctl_mqtt(int argc, char **argv);	     /* ctl_mqtt.c: tail */
int ctl_mbus(int argc, char **argv);	     /* ctl_mbus.c: scan|read at an M-Bus gateway */
int ctl_report(int argc, char **argv);	     /* ctl_report.c: traffic per meter */

/*
 * Read hex from an argument, or from stdin when arg is "-" (whitespace,
 * newlines and "0x" prefixes ignored; '#' starts a comment to end of line).
 * Returns a malloc'd buffer (caller frees) and sets *len, or NULL with a
 * message in err.
 */
uint8_t *ctl_read_hex(const char *arg, size_t *len, char *err, size_t errlen);

/*
 * One readout of a meter behind a gateway for `ammctl read --mbus|--modbus`
 * (ctl_mbus.c): the daemon's driver on a private event loop, the answer
 * mapped to OBIS readings as ammd stores them (mbus_collect.h).
 */
struct mbus_collect_value;

struct ctl_gw_req {
	const char *host;
	uint16_t port;
	bool modbus;
	const char *addr;     /* M-Bus: primary 0..250 or secondary; Modbus: unit id 1..247 */
	int baud;	      /* M-Bus; 0: 2400 */
	const char *map;      /* Modbus register map file; NULL: found as ammd finds it */
	uint32_t timeout_ms;  /* to connect */
};

struct ctl_gw_meter {	      /* M-Bus: from the slave's first telegram */
	bool have;
	char id[9];	      /* identification number, 8 digits */
	char secondary[17];   /* id, manufacturer, version, medium */
	char manufacturer[4];
	const char *medium;
};

/* "HOST:PORT" or "[V6]:PORT" (ctl_mbus.c); 0 or -1. */
int ctl_parse_hostport(const char *s, char *host, size_t hostlen, uint16_t *port);

/* Up to cap readings into vals, *n of them; 0, or 1 with a message on stderr. */
int ctl_gw_read(const struct ctl_gw_req *q, struct mbus_collect_value *vals, size_t cap,
		size_t *n, struct ctl_gw_meter *m);

#endif
