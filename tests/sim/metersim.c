/*
 * metersim.c: the fleet simulator's command line.  A table of subcommands;
 * each parses its own options and works on a fleet built from the common
 * ones (--seed, --count, --period, --origin).  Today: `expect` prints the
 * ground truth a head-end must have stored for one meter and time range,
 * `export` the fleet inventory CSV for `ammctl meter import`, `info` one
 * meter's identity and state.  The serving transports are added as further
 * entries of the table.
 *
 * The fleet options must be the same for every subcommand that talks
 * about one fleet: the same seed, period and origin give the same meters.
 */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "expect.h"
#include "json.h"
#include "meter_error.h"
#include "model.h"
#include "obis.h"
#include "serve.h"

struct opts {
	struct sim_fleet_cfg cfg;
	uint32_t serial;
	int64_t from, to, at;
	bool have_from, have_to, have_at, csv;
	unsigned what; /* EXPECT_* */
	uint8_t transport;
	uint16_t base_port;
	struct serve_cfg serve; /* serve: transport and base_port from above */
	const char *faults;
};

static void list_commands(FILE *f);

static void
usage(FILE *f)
{
	list_commands(f);
	fputs("usage: metersim COMMAND [options]\n"
	      "  expect --meter SERIAL --from T1 --to T2 [--format json|csv]\n"
	      "         [--what registers,intervals,events,billing,daily,analysis]\n"
	      "  export --count N [--transport tcpip|hdlc|gprs|mbus|modbus]\n"
	      "         [--base-port P | --loopback | --loopback-port P]\n"
	      "  info   --meter SERIAL [--at T]\n"
	      "  serve  [--transport tcpip|hdlc|gprs|mbus|modbus] [--hdlc]\n"
	      "         [--base-port P | --loopback | --loopback-port P] [--per-meter-listeners]\n"
	      "         [--speed X] [--start T] [--faults SPEC] [--control PATH] [--baud B]\n"
	      "         [--gprs-connect HOST:PORT [--gprs-max N] [--push]] [--first INDEX]\n"
	      "         [--max-listeners N] [--modbus-map FILE] [--modbus-masters N]\n"
	      "  ctl    PATH COMMAND...  (list, show, set, button, push, fault, clear, faults,\n"
	      "         counters, time, expect, quit; see README)\n"
	      "fleet options (the same for every command on one fleet):\n"
	      "  --seed S (1)  --count N (100000)  --period 300|900|1800|3600 (900)\n"
	      "  --origin T (2024-01-01T00:00:00Z; meters are installed in the 90 days before)\n"
	      "times: ISO 8601 with Z or an offset (2024-03-31T02:00:00+02:00), a date, or epoch seconds\n",
	      f);
}

static void
hex(char *out, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		sprintf(out + 2 * i, "%02x", p[i]);
	out[2 * n] = 0;
}

static const char *transports[] = {"tcpip", "hdlc", "gprs", "mbus", "modbus"};
/* ammctl's inventory knows HDLC over TCP as tcpip with hdlc=1. */
static const char *inventory_transport[] = {"tcpip", "tcpip", "gprs", "mbus", "modbus"};

/* Parse the options every command shares plus the command's own. */
static int
parse_opts(int argc, char **argv, struct opts *o)
{
	enum { O_SEED = 256, O_COUNT, O_PERIOD, O_ORIGIN, O_METER, O_FROM, O_TO, O_AT, O_FORMAT,
	       O_WHAT, O_TRANSPORT, O_BASE_PORT, O_LOOPBACK, O_HELP, O_SPEED, O_START, O_FAULTS,
	       O_CONTROL, O_HDLC, O_GPRS, O_GPRS_MAX, O_PUSH, O_BAUD, O_MAXLIS, O_FIRST, O_MAP,
	       O_VERBOSE, O_LO_PORT, O_PER_METER, O_MASTERS };
	static const struct option lo[] = {
		{"seed", required_argument, 0, O_SEED}, {"count", required_argument, 0, O_COUNT},
		{"period", required_argument, 0, O_PERIOD}, {"origin", required_argument, 0, O_ORIGIN},
		{"meter", required_argument, 0, O_METER}, {"from", required_argument, 0, O_FROM},
		{"to", required_argument, 0, O_TO}, {"at", required_argument, 0, O_AT},
		{"format", required_argument, 0, O_FORMAT}, {"what", required_argument, 0, O_WHAT},
		{"transport", required_argument, 0, O_TRANSPORT},
		{"base-port", required_argument, 0, O_BASE_PORT},
		{"loopback", no_argument, 0, O_LOOPBACK}, {"help", no_argument, 0, O_HELP},
		{"speed", required_argument, 0, O_SPEED}, {"start", required_argument, 0, O_START},
		{"faults", required_argument, 0, O_FAULTS},
		{"control", required_argument, 0, O_CONTROL}, {"hdlc", no_argument, 0, O_HDLC},
		{"gprs-connect", required_argument, 0, O_GPRS},
		{"gprs-max", required_argument, 0, O_GPRS_MAX}, {"push", no_argument, 0, O_PUSH},
		{"baud", required_argument, 0, O_BAUD},
		{"max-listeners", required_argument, 0, O_MAXLIS},
		{"first", required_argument, 0, O_FIRST}, {"modbus-map", required_argument, 0, O_MAP},
		{"verbose", no_argument, 0, O_VERBOSE},
		{"loopback-port", required_argument, 0, O_LO_PORT},
		{"per-meter-listeners", no_argument, 0, O_PER_METER},
		{"modbus-masters", required_argument, 0, O_MASTERS},
		{0, 0, 0, 0},
	};
	memset(o, 0, sizeof(*o));
	o->cfg.seed = 1;
	o->cfg.count = 100000;
	o->cfg.period = 900;
	o->cfg.origin = cosem_days_from_civil(2024, 1, 1) * 86400;
	o->cfg.tz = COSEM_TZ_CPH;
	o->what = EXPECT_DEFAULT;
	o->serve.speed = 1.0;
	o->serve.baud = 2400;
	optind = 1;
	int c;
	char *end;
	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (c) {
		case O_SEED:
			o->cfg.seed = strtoull(optarg, &end, 0);
			if (*end)
				goto bad;
			break;
		case O_COUNT: {
			unsigned long v = strtoul(optarg, &end, 10);
			if (*end || v == 0 || v > SIM_MAX_METERS)
				goto bad;
			o->cfg.count = (uint32_t)v;
			break;
		}
		case O_PERIOD:
			o->cfg.period = (uint16_t)strtoul(optarg, &end, 10);
			if (*end || (o->cfg.period != 300 && o->cfg.period != 900 &&
				     o->cfg.period != 1800 && o->cfg.period != 3600))
				goto bad;
			break;
		case O_ORIGIN:
			if (expect_parse_time(optarg, &o->cfg.origin))
				goto bad;
			break;
		case O_METER: {
			unsigned long v = strtoul(optarg, &end, 10);
			if (*end || v > 99999999)
				goto bad;
			o->serial = (uint32_t)v;
			break;
		}
		case O_FROM:
			if (expect_parse_time(optarg, &o->from))
				goto bad;
			o->have_from = true;
			break;
		case O_TO:
			if (expect_parse_time(optarg, &o->to))
				goto bad;
			o->have_to = true;
			break;
		case O_AT:
			if (expect_parse_time(optarg, &o->at))
				goto bad;
			o->have_at = true;
			break;
		case O_FORMAT:
			if (!strcmp(optarg, "csv"))
				o->csv = true;
			else if (strcmp(optarg, "json"))
				goto bad;
			break;
		case O_WHAT:
			if (expect_parse_what(optarg, &o->what))
				goto bad;
			break;
		case O_TRANSPORT: {
			unsigned k;
			for (k = 0; k < 5 && strcmp(optarg, transports[k]); k++)
				;
			if (k == 5)
				goto bad;
			o->transport = (uint8_t)k;
			break;
		}
		case O_BASE_PORT: {
			unsigned long v = strtoul(optarg, &end, 10);
			if (*end || v == 0 || v > 65535)
				goto bad;
			o->base_port = (uint16_t)v;
			break;
		}
		case O_LOOPBACK:
			o->base_port = 0;
			break;
		case O_LO_PORT: {
			unsigned long v = strtoul(optarg, &end, 10);
			if (*end || v == 0 || v > 65535)
				goto bad;
			o->base_port = 0;
			o->serve.lo_port = (uint16_t)v;
			break;
		}
		case O_PER_METER:
			o->serve.per_meter = true;
			break;
		case O_SPEED:
			o->serve.speed = strtod(optarg, &end);
			if (*end || o->serve.speed < 0)
				goto bad;
			break;
		case O_START:
			if (expect_parse_time(optarg, &o->serve.start))
				goto bad;
			break;
		case O_FAULTS:
			o->faults = optarg;
			break;
		case O_CONTROL:
			o->serve.control = optarg;
			break;
		case O_HDLC:
			o->transport = SIM_TR_HDLC;
			break;
		case O_GPRS:
			o->serve.gprs = optarg;
			o->transport = SIM_TR_GPRS;
			break;
		case O_GPRS_MAX:
		case O_MAXLIS:
		case O_FIRST:
		case O_MASTERS:
		case O_BAUD: {
			unsigned long v = strtoul(optarg, &end, 10);
			if (*end || v > UINT32_MAX || (c == O_BAUD && v == 0))
				goto bad;
			if (c == O_GPRS_MAX)
				o->serve.gprs_max = (uint32_t)v;
			else if (c == O_MAXLIS)
				o->serve.max_listeners = (uint32_t)v;
			else if (c == O_FIRST)
				o->serve.first = (uint32_t)v;
			else if (c == O_MASTERS)
				o->serve.modbus_masters = (uint32_t)v;
			else
				o->serve.baud = (uint32_t)v;
			break;
		}
		case O_PUSH:
			o->serve.push = true;
			break;
		case O_MAP:
			o->serve.modbus_map = optarg;
			break;
		case O_VERBOSE:
			o->serve.verbose = true;
			break;
		case O_HELP:
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			return 2;
		}
	}
	return 0;
bad:
	fprintf(stderr, "metersim: bad value for an option: %s\n", optarg);
	return 2;
}

/* Fleet and meter for --meter; prints the reason on failure. */
static struct sim_fleet *
open_meter(const struct opts *o, struct sim_meter *m)
{
	struct sim_fleet *f = sim_fleet_new(&o->cfg);
	if (!f) {
		fprintf(stderr, "metersim: cannot create the fleet\n");
		return NULL;
	}
	int64_t i = sim_fleet_find(f, o->serial);
	if (i < 0) {
		fprintf(stderr, "metersim: no meter %08u in this fleet (seed %llu, %u meters)\n",
			o->serial, (unsigned long long)o->cfg.seed, o->cfg.count);
		sim_fleet_free(f);
		return NULL;
	}
	sim_meter_load(f, (uint32_t)i, m);
	return f;
}

/* ---- expect ------------------------------------------------------------ */

static int
cmd_expect(int argc, char **argv)
{
	struct opts o;
	int rc = parse_opts(argc, argv, &o);
	if (rc)
		return rc;
	if (!o.serial || !o.have_from || !o.have_to || o.to < o.from) {
		fprintf(stderr, "metersim expect: needs --meter, --from and --to (from <= to)\n");
		return 2;
	}
	struct sim_meter m;
	struct sim_fleet *f = open_meter(&o, &m);
	if (!f)
		return 1;
	struct expect_req rq = {o.from, o.to, o.what, o.csv};
	rc = expect_write(stdout, &m, &rq) ? 1 : 0;
	sim_fleet_free(f);
	if (fflush(stdout) || ferror(stdout))
		rc = 1;
	return rc;
}

/* ---- export -------------------------------------------------------------- */

#define EXPORT_HEADER                                                                       \
	"serial,type,transport,host,port,hdlc,client_addr,server_addr,security,ek,ak,password," \
	"system_title,profile_period,gateway,primary_addr,secondary_addr"

static int
cmd_export(int argc, char **argv)
{
	struct opts o;
	int rc = parse_opts(argc, argv, &o);
	if (rc)
		return rc;
	struct sim_fleet *f = sim_fleet_new(&o.cfg);
	if (!f) {
		fprintf(stderr, "metersim: cannot create the fleet\n");
		return 1;
	}
	puts(EXPORT_HEADER);
	/* gateways: an M-Bus bus carries up to 250 meters, a Modbus gateway
	 * 247 unit ids; one TCP port each from the base port (10000) */
	uint16_t gw_base = o.base_port ? o.base_port : 10000;
	for (uint32_t i = 0; i < o.cfg.count; i++) {
		struct sim_meter m;
		sim_meter_load(f, i, &m);
		char host[16] = "", ek[33] = "", ak[33] = "", st[17], gw[32] = "", prim[8] = "",
		     sec[17] = "", port[8] = "";
		uint16_t p = 0;
		if (o.transport == SIM_TR_TCPIP || o.transport == SIM_TR_HDLC) {
			sim_meter_addr(&m, o.base_port, host, &p);
			if (!o.base_port && o.serve.lo_port)
				p = o.serve.lo_port;
			snprintf(port, sizeof(port), "%u", p);
		} else if (o.transport == SIM_TR_MBUS) {
			snprintf(gw, sizeof(gw), "127.0.0.1:%u", (unsigned)(gw_base + i / 250));
			snprintf(prim, sizeof(prim), "%u", 1 + i % 250);
			/* identification (BCD, shown as its digits), KAM, version, electricity */
			snprintf(sec, sizeof(sec), "%08u2d2c%02x02", m.serial, 0x1b);
		} else if (o.transport == SIM_TR_MODBUS) {
			snprintf(gw, sizeof(gw), "127.0.0.1:%u", (unsigned)(gw_base + i / 247));
			snprintf(prim, sizeof(prim), "%u", 1 + i % 247);
		}
		/* M-Bus and Modbus meters speak no DLMS: no association security */
		uint8_t sec_mode = o.transport >= SIM_TR_MBUS ? SIM_SEC_NONE : m.security;
		uint16_t client = sec_mode == SIM_SEC_NONE ? 16 : m.client_addr;
		if (sec_mode == SIM_SEC_HLS) {
			hex(ek, m.ek, 16);
			hex(ak, m.ak, 16);
		}
		hex(st, m.system_title, 8);
		printf("%08u,%s,%s,%s,%s,%d,%u,%u,%s,%s,%s,%s,%s,%u,%s,%s,%s\n", m.serial,
		       sim_type_name(m.type), inventory_transport[o.transport], host, port,
		       o.transport == SIM_TR_HDLC, client, m.server_addr, sim_sec_name(sec_mode), ek,
		       ak, sec_mode == SIM_SEC_LLS ? m.password : "", st, m.st->period, gw, prim, sec);
	}
	sim_fleet_free(f);
	if (fflush(stdout) || ferror(stdout))
		return 1;
	return 0;
}

/* ---- info ------------------------------------------------------------------ */

static int
cmd_info(int argc, char **argv)
{
	struct opts o;
	int rc = parse_opts(argc, argv, &o);
	if (rc)
		return rc;
	if (!o.serial) {
		fprintf(stderr, "metersim info: needs --meter\n");
		return 2;
	}
	struct sim_meter m;
	struct sim_fleet *f = open_meter(&o, &m);
	if (!f)
		return 1;
	int64_t at = o.have_at ? o.at : (int64_t)time(NULL);
	if (at < m.installed)
		at = m.installed;
	dev_advance(&m, at);
	char ts[32], lt[40], buf[40], host[16];
	uint16_t port;
	struct json j;
	json_init(&j, stdout, true);
	json_obj_begin(&j, NULL);
	json_uint(&j, "serial", m.serial);
	json_uint(&j, "index", m.index);
	json_str(&j, "type", sim_type_name(m.type));
	json_uint(&j, "phases", m.phases);
	json_bool(&j, "exporter", m.exporter);
	json_str(&j, "firmware", m.firmware);
	json_str(&j, "security", sim_sec_name(m.security));
	json_uint(&j, "client_addr", m.client_addr);
	json_uint(&j, "server_addr", m.server_addr);
	hex(buf, m.system_title, 8);
	json_str(&j, "system_title", buf);
	if (m.security == SIM_SEC_HLS) {
		json_hex(&j, "ek", m.ek, 16);
		json_hex(&j, "ak", m.ak, 16);
	}
	if (m.security == SIM_SEC_LLS)
		json_str(&j, "password", m.password);
	sim_meter_addr(&m, 0, host, &port);
	json_str(&j, "host", host);
	json_uint(&j, "port", port);
	json_uint(&j, "profile_period", m.st->period);
	json_str(&j, "installed", expect_iso_utc(m.installed, ts));
	json_double(&j, "mean_w", m.mean_w);
	json_double(&j, "pv_peak_w", m.pv_peak_w);
	json_double(&j, "drift_ppm", m.drift_ppm);
	json_str(&j, "at", expect_iso_utc(at, ts));
	json_str(&j, "local", expect_iso_local(&m, at, lt));
	int64_t clk = sim_clock_ms(&m, at);
	json_int(&j, "clock_offset_ms", clk - at * 1000);
	const struct dev_state *d = &m.st->dev;
	json_obj_begin(&j, "breaker");
	json_bool(&j, "output_state", d->control == DEV_CONNECTED);
	json_uint(&j, "control_state", d->control);
	json_uint(&j, "control_mode", d->mode);
	json_obj_end(&j);
	json_obj_begin(&j, "limiter");
	json_uint(&j, "threshold_normal", d->thr_normal);
	json_uint(&j, "threshold_emergency", d->thr_emergency);
	json_uint(&j, "min_over_threshold_duration", d->min_over);
	json_uint(&j, "min_under_threshold_duration", d->min_under);
	json_bool(&j, "emergency", d->emergency);
	json_obj_end(&j);
	json_obj_begin(&j, "payment");
	json_str(&j, "mode", d->payment == DEV_PAY_PREPAID ? "prepayment" : "credit");
	if (d->payment == DEV_PAY_PREPAID)
		json_int(&j, "credit_wh", dev_credit(&m, at));
	json_obj_end(&j);
	struct sim_registers r;
	sim_registers(&m, at, &r);
	json_uint(&j, "active_tariff", r.active_tariff);
	json_obj_begin(&j, "registers");
	for (unsigned q = 0; q < SIM_NQ; q++)
		json_int(&j, sim_q_name((uint8_t)q), r.total[q]);
	json_obj_end(&j);
	struct sim_instant in;
	sim_instant(&m, at, &in);
	json_obj_begin(&j, "instant");
	json_int(&j, "p_import_w", in.p_import);
	json_int(&j, "p_export_w", in.p_export);
	json_arr_begin(&j, "voltage_dv");
	for (int p = 0; p < 3; p++)
		json_uint(&j, NULL, in.u[p]);
	json_arr_end(&j);
	json_arr_begin(&j, "current_ma");
	for (int p = 0; p < 3; p++)
		json_uint(&j, NULL, in.i[p]);
	json_arr_end(&j);
	json_arr_begin(&j, "power_w");
	for (int p = 0; p < 3; p++)
		json_int(&j, NULL, in.p[p]);
	json_arr_end(&j);
	json_obj_end(&j);
	json_obj_end(&j);
	json_end(&j);
	sim_fleet_free(f);
	return 0;
}

/* ---- serve and ctl ------------------------------------------------------------- */

static int
cmd_serve(int argc, char **argv)
{
	struct opts o;
	int rc = parse_opts(argc, argv, &o);
	if (rc)
		return rc;
	o.serve.transport = o.transport;
	o.serve.base_port = o.base_port;
	if (o.transport == SIM_TR_GPRS && !o.serve.gprs) {
		fprintf(stderr, "metersim serve: GPRS meters need --gprs-connect HOST:PORT\n");
		return 2;
	}
	return serve_run(&o.cfg, &o.serve, o.faults);
}

/* Send one command line to a serving metersim; print the answer lines
 * before the final ok/err; exit 0 on ok. */
static int
cmd_ctl(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: metersim ctl PATH COMMAND [ARGS...]\n");
		return 2;
	}
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	if (strlen(argv[1]) >= sizeof(sun.sun_path)) {
		fprintf(stderr, "metersim ctl: path too long\n");
		return 2;
	}
	strcpy(sun.sun_path, argv[1]);
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sun, sizeof(sun))) {
		fprintf(stderr, "metersim ctl: cannot connect to %s: %s\n", argv[1], strerror(errno));
		if (fd >= 0)
			close(fd);
		return 1;
	}
	char line[1024];
	size_t n = 0;
	for (int i = 2; i < argc; i++) {
		int w = snprintf(line + n, sizeof(line) - n, "%s%s", i > 2 ? " " : "", argv[i]);
		if (w < 0 || (size_t)w >= sizeof(line) - n - 1) {
			fprintf(stderr, "metersim ctl: command too long\n");
			close(fd);
			return 2;
		}
		n += (size_t)w;
	}
	line[n++] = '\n';
	if (write(fd, line, n) != (ssize_t)n) {
		close(fd);
		return 1;
	}
	FILE *f = fdopen(fd, "r");
	if (!f) {
		close(fd);
		return 1;
	}
	int rc = 1;
	char buf[4096];
	while (fgets(buf, sizeof(buf), f)) {
		if (!strcmp(buf, "ok\n")) {
			rc = 0;
			break;
		}
		if (!strncmp(buf, "err ", 4) || !strcmp(buf, "err\n")) {
			fprintf(stderr, "metersim ctl: %s", buf[3] ? buf + 4 : "error\n");
			break;
		}
		fputs(buf, stdout);
	}
	fclose(f);
	return rc;
}

/* ---- dispatch ---------------------------------------------------------------- */

static const struct command {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *help;
} commands[] = {
	{"expect", cmd_expect, "ground truth for one meter and time range"},
	{"export", cmd_export, "fleet inventory CSV for ammctl meter import"},
	{"info", cmd_info, "one meter's identity and state"},
	{"serve", cmd_serve, "serve the fleet over a transport, with faults and a control socket"},
	{"ctl", cmd_ctl, "send a command to a serving metersim's control socket"},
};

static void
list_commands(FILE *f)
{
	fputs("commands:\n", f);
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(f, "  %-8s %s\n", commands[i].name, commands[i].help);
}

int
main(int argc, char **argv)
{
	if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (!strcmp(argv[1], commands[i].name))
			return commands[i].run(argc - 1, argv + 1);
	fprintf(stderr, "metersim: unknown command '%s'\n", argv[1]);
	usage(stderr);
	return 2;
}
