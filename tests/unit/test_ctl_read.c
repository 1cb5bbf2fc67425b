/*
 * test_ctl_read.c: `ammctl read` and `ammctl action` against a real
 * server: a forked child runs meterlib's server engine (dlms_server.h) on
 * a loopback socket with a few objects (clock, an A+ register with
 * scaler_unit, a small load profile with compressed clocks, a disconnect
 * control), and the test runs build/ammctl (or $AMMCTL) against it and
 * checks the JSON, and exit 1 with a message for a refused port, a wrong
 * password and an access error.  --listen is run against a child that
 * connects in as a GPRS module does; the gateway options (--mbus,
 * --modbus) are checked for their usage errors and for failures that need
 * no gateway (t_sim_read.sh reads real ones from metersim).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "axdr.h"
#include "cosem_time.h"
#include "dlms_server.h"
#include "xdlms.h"

#define PASSWORD "12345678"
#define SRV_PDU	 1024

static const struct obis O_CLOCK = OBIS(0, 0, 1, 0, 0, 255);
static const struct obis O_APLUS = OBIS(1, 0, 1, 8, 0, 255);
static const struct obis O_LP = OBIS(1, 0, 99, 1, 0, 255);
static const struct obis O_BREAKER = OBIS(0, 0, 96, 3, 10, 255);

/* 2024-03-01 00:00 UTC: the clock, and the profile's first entry. */
#define T0 (cosem_days_from_civil(2024, 3, 1) * 86400)

static char out[1 << 16];

static void
put_capture(struct mbuf *b, uint16_t cls, struct obis o)
{
	axdr_put_structure(b, 4);
	axdr_put_long_unsigned(b, cls);
	axdr_put_octet_string(b, o.v, 6);
	axdr_put_integer(b, 2);
	axdr_put_long_unsigned(b, 0);
}

/* Profile rows every 15 minutes from T0: the first with its clock, the
 * rest with null-data (compressed).  Four rows whatever the range. */
static void
put_profile(struct mbuf *b)
{
	struct cosem_datetime dt;
	struct cosem_tz tz = COSEM_TZ_CPH;

	axdr_put_array(b, 4);
	for (int r = 0; r < 4; r++) {
		axdr_put_structure(b, 2);
		if (r == 0) {
			cosem_datetime_from_utc(T0, &tz, &dt);
			axdr_put_datetime_octets(b, &dt);
		} else
			axdr_put_null(b);
		axdr_put_double_long_unsigned(b, 1000u + (uint32_t)r * 25);
	}
}

static int
model_get(void *arg, const struct dlms_server_req *rq, struct mbuf *o)
{
	const struct xdlms_desc *d = &rq->desc;
	struct cosem_datetime dt;
	struct cosem_tz tz = COSEM_TZ_CPH;

	(void)arg;
	if (d->class_id == 8 && obis_eq(&d->obis, &O_CLOCK) && d->id == 2) {
		cosem_datetime_from_utc(T0, &tz, &dt);
		axdr_put_datetime_octets(o, &dt);
		return XDLMS_DAR_SUCCESS;
	}
	if (d->class_id == 3 && obis_eq(&d->obis, &O_APLUS) && d->id == 2) {
		axdr_put_double_long_unsigned(o, 123456);
		return XDLMS_DAR_SUCCESS;
	}
	if (d->class_id == 3 && obis_eq(&d->obis, &O_APLUS) && d->id == 3) {
		axdr_put_structure(o, 2);
		axdr_put_integer(o, -1);
		axdr_put_enum(o, 30);
		return XDLMS_DAR_SUCCESS;
	}
	if (d->class_id == 3 && obis_eq(&d->obis, &O_APLUS))
		return XDLMS_DAR_READ_WRITE_DENIED;
	if (d->class_id == 7 && obis_eq(&d->obis, &O_LP)) {
		switch (d->id) {
		case 2:
			if (rq->sel == NULL || !rq->sel->range_ok)
				return XDLMS_DAR_SCOPE_OF_ACCESS_VIOLATED;
			put_profile(o);
			return XDLMS_DAR_SUCCESS;
		case 3:
			axdr_put_array(o, 2);
			put_capture(o, 8, O_CLOCK);
			put_capture(o, 3, O_APLUS);
			return XDLMS_DAR_SUCCESS;
		case 4:
			axdr_put_double_long_unsigned(o, 900);
			return XDLMS_DAR_SUCCESS;
		}
	}
	return XDLMS_DAR_OBJECT_UNDEFINED;
}

static int
model_set(void *arg, const struct dlms_server_req *rq, const uint8_t *data, size_t len)
{
	(void)arg;
	(void)rq;
	(void)data;
	(void)len;
	return XDLMS_DAR_READ_WRITE_DENIED;
}

static int
model_action(void *arg, const struct dlms_server_req *rq, const uint8_t *params, size_t len,
	     struct mbuf *o)
{
	(void)arg;
	(void)o;
	if (rq->desc.class_id == 70 && obis_eq(&rq->desc.obis, &O_BREAKER) &&
	    (rq->desc.id == 1 || rq->desc.id == 2))
		/* remote_disconnect/reconnect take integer(0) */
		return len == 2 && params[0] == AXDR_INTEGER && params[1] == 0
			       ? XDLMS_AR_SUCCESS
			       : XDLMS_AR_TYPE_UNMATCHED;
	return XDLMS_AR_OBJECT_UNDEFINED;
}

static const struct dlms_server_ops ops = {
	.get = model_get,
	.set = model_set,
	.action = model_action,
};

/* One connection, until the peer closes it. */
static void
serve_conn(int fd, int framing)
{
	static uint8_t rx[SRV_PDU + 64], tx[SRV_PDU + 64], work[SRV_PDU + 64], data[1 << 16];
	static uint8_t obuf[1 << 16];
	struct dlms_server_policy pol = {
		.mechanisms = 1u << ACSE_MECH_NONE | 1u << ACSE_MECH_LLS,
		.password = (const uint8_t *)PASSWORD,
		.password_len = sizeof PASSWORD - 1,
		.max_pdu = SRV_PDU,
	};
	struct dlms_server_config cfg = {
		.framing = framing,
		.server_wport = 1,
		.hdlc_server = {.upper = 1, .lower = 17, .size = 2},
		.policy = &pol,
		.ops = &ops,
		.buf = {rx, sizeof rx, tx, sizeof tx, work, sizeof work, data, sizeof data},
	};
	static struct dlms_server s;

	if (dlms_server_init(&s, &cfg) < 0)
		_exit(3);
	for (;;) {
		uint8_t in[4096];
		ssize_t n = recv(fd, in, sizeof in, 0);
		if (n <= 0)
			break;
		struct mbuf o;
		struct dlms_server_event ev;
		mbuf_init(&o, obuf, sizeof obuf);
		for (size_t off = 0; off < (size_t)n;) {
			off += dlms_server_feed(&s, in + off, (size_t)n - off);
			while (dlms_server_poll(&s, &o, &ev) != DLMS_SEV_NONE)
				;
		}
		if (o.len && send(fd, o.p, o.len, MSG_NOSIGNAL) < 0)
			break;
	}
	close(fd);
}

/* One connection at a time, until killed. */
static void
serve(int lfd, int framing)
{
	for (;;) {
		int fd = accept(lfd, NULL, NULL);
		if (fd >= 0)
			serve_conn(fd, framing);
	}
}

static pid_t server_pid;
static int server_port;
static int server_framing = DLMS_FRAMING_WRAPPER;

/* A TCP socket bound to a loopback port the kernel picks; *port gets it. */
static int
loopback_bound(int *port)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t al = sizeof a;
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	cr_assert_geq(fd, 0);
	cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
	cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &al), 0);
	*port = ntohs(a.sin_port);
	return fd;
}

static void
start_server(void)
{
	int lfd = loopback_bound(&server_port);

	cr_assert_eq(listen(lfd, 4), 0);
	fflush(NULL);
	server_pid = fork();
	cr_assert_geq(server_pid, 0);
	if (server_pid == 0) {
		serve(lfd, server_framing);
		_exit(0);
	}
	close(lfd);
}

static void
stop_server(void)
{
	if (server_pid > 0) {
		kill(server_pid, SIGKILL);
		waitpid(server_pid, NULL, 0);
		server_pid = 0;
	}
}

/* Run "ammctl ARGS" as given; stderr folded in. */
static int
run_raw(const char *args)
{
	const char *bin = getenv("AMMCTL") ? getenv("AMMCTL") : "build/ammctl";
	char line[1024];

	snprintf(line, sizeof line, "%s %s 2>&1", bin, args);
	FILE *p = popen(line, "r");
	cr_assert_not_null(p);
	size_t n = fread(out, 1, sizeof out - 1, p);
	out[n] = '\0';
	int st = pclose(p);
	if (WIFSIGNALED(st))
		return 128 + WTERMSIG(st);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Run "ammctl CMD --host 127.0.0.1 --port P ARGS"; stderr folded in. */
static int
run(const char *cmd, int port, const char *args)
{
	char line[1024];

	snprintf(line, sizeof line, "%s --host 127.0.0.1 --port %d --timeout 5000 %s", cmd, port,
		 args);
	return run_raw(line);
}

#define HAS(s) cr_assert_not_null(strstr(out, s), "no %s in:\n%s", s, out)

TestSuite(ctl_read, .init = start_server, .fini = stop_server, .timeout = 60);

Test(ctl_read, register_with_scaler_unit)
{
	cr_assert_eq(run("read", server_port, "1-0:1.8.0.255"), 0, "%s", out);
	HAS("\"obis\": \"1-0:1.8.0.255\"");
	HAS("\"name\": \"active_energy_import\"");
	HAS("\"class\": 3");
	HAS("\"value\": 123456");
	HAS("\"scaler\": -1");
	HAS("\"unit\": \"Wh\"");
	HAS("\"scaled\": 12345.6");

	/* the same with LLS and the right password */
	cr_assert_eq(run("read", server_port, "--auth lls --password " PASSWORD " 1-0:1.8.0.255:2"),
		     0, "%s", out);
	HAS("\"value\": 123456");
}

Test(ctl_read, clock)
{
	cr_assert_eq(run("read", server_port, "0-0:1.0.0.255"), 0, "%s", out);
	HAS("\"name\": \"clock\"");
	/* 2024-03-01 00:00 UTC is 01:00 in Copenhagen (deviation -60) */
	HAS("\"datetime\": \"2024-03-01T01:00:00+01:00\"");
}

Test(ctl_read, profile_range)
{
	cr_assert_eq(run("read", server_port,
			 "1-0:99.1.0.255 --from 2024-03-01T00:00:00Z --to 2024-03-01T01:00:00Z"),
		     0, "%s", out);
	HAS("\"capture_period\": 900");
	HAS("\"count\": 4");
	HAS("\"time\": \"2024-03-01T00:00:00Z\"");
	HAS("\"time\": \"2024-03-01T00:45:00Z\"");
	HAS("\"unit\": \"Wh\"");
	HAS("107.5"); /* 1075 x 10^-1 */
}

Test(ctl_read, action_breaker)
{
	cr_assert_eq(run("action", server_port, "0-0:96.3.10.255:1 integer:0"), 0, "%s", out);
	HAS("\"method\": 1");
	HAS("\"result\": \"success\"");
	cr_assert_eq(run("action", server_port, "0-0:96.3.10.255:1 0f00"), 0, "%s", out);
	cr_assert_eq(run("action", server_port, "0-0:96.3.10.255:1 unsigned:3"), 1, "%s", out);
	HAS("type-unmatched");
}

Test(ctl_read, failures)
{
	cr_assert_eq(run("read", server_port, "--auth lls --password wrong 1-0:1.8.0.255"), 1,
		     "%s", out);
	HAS("association rejected");
	cr_assert_eq(run("read", server_port, "1-0:1.8.0.255:5"), 1, "%s", out);
	HAS("access error: read-write-denied");
	cr_assert_eq(run("read", server_port, "1-0:1.8.0.255:5 --class"), 2, "%s", out);

	/* a port nobody listens on */
	stop_server();
	cr_assert_eq(run("read", server_port, "1-0:1.8.0.255"), 1, "%s", out);
	HAS("Connection refused");
}

/* The same over HDLC (a GPRS module's framing) with 2-byte server addresses. */
Test(ctl_read, over_hdlc)
{
	stop_server();
	server_framing = DLMS_FRAMING_HDLC;
	start_server();
	cr_assert_eq(run("read", server_port, "--hdlc --server 1:17 1-0:1.8.0.255"), 0, "%s", out);
	HAS("\"scaled\": 12345.6");
	cr_assert_eq(run("read", server_port,
			 "--hdlc --server 1:17 1-0:99.1.0.255 --from 2024-03-01 --to 2024-03-02"),
		     0, "%s", out);
	HAS("\"time\": \"2024-03-01T00:45:00Z\"");
}

/* ---- usage and failures without a meter ----------------------------------- */

/* A loopback port nobody listens on (free a moment ago). */
static int
free_port(void)
{
	int port;

	close(loopback_bound(&port));
	return port;
}

static const struct {
	const char *args, *msg;
} usage_errors[] = {
	{"read --host h --listen 4059 1.8.0", "give one of --host, --listen, --mbus and --modbus"},
	{"read --mbus h:1 --modbus h:2 --unit 1", "give one of --host"},
	{"read 1.8.0", "usage: ammctl read"},
	{"read --host h", "usage: ammctl read"},
	{"read --host h 1.8.0 2.8.0", "unexpected argument '2.8.0'"},
	{"action --host h 0-0:96.3.10.255:1 integer:0 x", "unexpected argument 'x'"},
	{"read --mbus h:1 --primary 1 --hdlc", "--hdlc is for DLMS meters, not with --mbus"},
	{"read --modbus h:1 --unit 1 --auth lls", "--auth is for DLMS meters, not with --modbus"},
	{"read --mbus h:1 --primary 1 --from 2024-03-01 --to 2024-03-02", "--from is for DLMS"},
	{"read --mbus h:1 --primary 1 --listen 5000", "give one of --host"},
	{"read --mbus h:1 1.8.0", "--mbus needs one of --primary N and --secondary ID"},
	{"read --mbus h:1 --primary 1 --secondary 12345678", "--mbus needs one of --primary"},
	{"read --mbus h:1 --primary 251", "--primary takes an M-Bus address 0..250"},
	{"read --mbus h:1 --primary x1", "--primary takes an M-Bus address"},
	{"read --mbus h:1 --secondary 12345", "--secondary takes 8 or 16 hex digits"},
	{"read --mbus h --primary 1", "'h' is not HOST:PORT"},
	{"read --mbus h:70000 --primary 1", "'h:70000' is not HOST:PORT"},
	{"read --mbus h:1 --primary 1 --unit 2", "--unit goes with --modbus"},
	{"read --mbus h:1 --primary 1 --map m", "--map goes with --modbus"},
	{"read --mbus h:1 --primary 1 --baud 100", "--baud 300..38400"},
	{"read --mbus h:1 --primary 1 1-0:1.8.0.255:3", "'1-0:1.8.0.255:3' is not the OBIS code"},
	{"read --mbus h:1 --primary 1 nonsense", "'nonsense' is not the OBIS code"},
	{"read --modbus h:1", "--modbus needs --unit N"},
	{"read --modbus h:1 --unit 0", "--unit takes a Modbus unit id 1..247"},
	{"read --modbus h:1 --unit 248", "--unit takes a Modbus unit id 1..247"},
	{"read --modbus h:1 --unit 1 --primary 2", "--modbus meters have a --unit, not --primary"},
	{"read --modbus h:1 --unit 1 --baud 2400", "--modbus meters have a --unit, not --baud"},
	{"read --host h --unit 3 1.8.0", "--unit goes with --mbus or --modbus"},
	{"read --host h --primary 3 1.8.0", "--primary goes with --mbus or --modbus"},
	{"read --listen 0 1.8.0", "--listen takes [ADDR:]PORT, not '0'"},
	{"read --listen 127.0.0.1: 1.8.0", "--listen takes [ADDR:]PORT"},
	{"read --listen 127.0.0.1:x 1.8.0", "--listen takes [ADDR:]PORT"},
	{"read --listen 5000 --port 4059 1.8.0", "--port is for --host"},
	{"read --host h --wait 5 1.8.0", "--wait goes with --listen"},
	{"read --listen 5000 --auth lls 1.8.0", "--auth lls needs --password"},
	{"read --listen 5000 --cipher 1.8.0", "hls-gmac and --cipher need --ek and --ak"},
	{"read --listen 5000 --wait", "--wait needs a value"},
	{"action --mbus h:1 --primary 1 0-0:96.3.10.255:1", "--mbus meters are only read"},
};

Test(ctl_read, usage_errors)
{
	for (size_t k = 0; k < sizeof usage_errors / sizeof usage_errors[0]; k++) {
		int rc = run_raw(usage_errors[k].args);
		cr_assert_eq(rc, 2, "ammctl %s: exit %d, not 2:\n%s", usage_errors[k].args, rc, out);
		cr_assert_not_null(strstr(out, usage_errors[k].msg), "ammctl %s: no '%s' in:\n%s",
				   usage_errors[k].args, usage_errors[k].msg, out);
	}
}

/* Failures that need no gateway or meter: nothing listens, no map. */
Test(ctl_read, gateway_failures)
{
	char args[512];
	int port = free_port();
	char map[] = "/tmp/ctl_read_mapXXXXXX";
	int fd = mkstemp(map);

	snprintf(args, sizeof args, "read --mbus 127.0.0.1:%d --primary 1 --timeout 2000", port);
	cr_assert_eq(run_raw(args), 1, "%s", out);
	HAS("M-Bus 1 at 127.0.0.1:");
	snprintf(args, sizeof args, "read --mbus 127.0.0.1:%d --secondary 12345678", port);
	cr_assert_eq(run_raw(args), 1, "%s", out);
	HAS("M-Bus 12345678 at 127.0.0.1:");
	snprintf(args, sizeof args, "read --modbus 127.0.0.1:%d --unit 3 --map %s", port,
		 "meterlib/maps/kamstrup382.map");
	cr_assert_eq(run_raw(args), 1, "%s", out);
	HAS("Modbus unit 3 at 127.0.0.1:");

	/* the register map is read before the gateway is dialled */
	snprintf(args, sizeof args, "read --modbus 127.0.0.1:%d --unit 3 --map /nonexistent/x.map",
		 port);
	cr_assert_eq(run_raw(args), 1, "%s", out);
	HAS("/nonexistent/x.map: No such file or directory");
	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, "0x0000 u32 hi 1 Wh\n", 19), 19);
	close(fd);
	snprintf(args, sizeof args, "read --modbus 127.0.0.1:%d --unit 3 --map %s", port, map);
	cr_assert_eq(run_raw(args), 1, "%s", out);
	HAS("line 1");
	unlink(map);
}

Test(ctl_read, listen_nobody)
{
	char args[256];
	struct timespec t0, t1;
	int port = free_port();

	snprintf(args, sizeof args, "read --listen 127.0.0.1:%d --wait 300 1-0:1.8.0.255", port);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	cr_assert_eq(run_raw(args), 1, "%s", out);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	HAS("no meter connected to 127.0.0.1:");
	HAS("within 300 ms");
	double s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	cr_assert_geq(s, 0.29, "gave up after %.3f s", s);
	cr_assert_lt(s, 10.0, "gave up after %.3f s", s);

	/* a port already taken cannot be listened on */
	stop_server();
	start_server();
	snprintf(args, sizeof args, "read --listen 127.0.0.1:%d --wait 300 1-0:1.8.0.255",
		 server_port);
	cr_assert_eq(run_raw(args), 1, "%s", out);
	HAS("Address already in use");
}

/*
 * A meter that connects in: a child dials PORT (retrying until ammctl
 * listens, as a GPRS module redials) and serves one connection.
 */
static pid_t
dial_in(int port, int framing)
{
	fflush(NULL);
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid > 0)
		return pid;
	struct sockaddr_in a = {.sin_family = AF_INET,
				.sin_port = htons((uint16_t)port),
				.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	for (int i = 0; i < 500; i++) {
		int fd = socket(AF_INET, SOCK_STREAM, 0);
		if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0) {
			serve_conn(fd, framing);
			_exit(0);
		}
		if (fd >= 0)
			close(fd);
		usleep(20000);
	}
	_exit(4);
}

static void
reap(pid_t pid)
{
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
}

Test(ctl_read, listen)
{
	char args[256];
	int port = free_port();
	pid_t pid = dial_in(port, DLMS_FRAMING_WRAPPER);

	snprintf(args, sizeof args, "read --listen 127.0.0.1:%d --wait 10000 1-0:1.8.0.255", port);
	cr_assert_eq(run_raw(args), 0, "%s", out);
	reap(pid);
	HAS("a meter connected from 127.0.0.1 port ");
	HAS("\"obis\": \"1-0:1.8.0.255\"");
	HAS("\"scaled\": 12345.6");

	/* LLS, with the port alone (every address), the same as a dialled read */
	port = free_port();
	pid = dial_in(port, DLMS_FRAMING_WRAPPER);
	snprintf(args, sizeof args,
		 "read --listen %d --auth lls --password " PASSWORD " 0-0:1.0.0.255", port);
	cr_assert_eq(run_raw(args), 0, "%s", out);
	reap(pid);
	HAS("\"datetime\": \"2024-03-01T01:00:00+01:00\"");

	/* a wrong password: refused as on a dialled connection */
	port = free_port();
	pid = dial_in(port, DLMS_FRAMING_WRAPPER);
	snprintf(args, sizeof args,
		 "read --listen 127.0.0.1:%d --auth lls --password wrong 1-0:1.8.0.255", port);
	cr_assert_eq(run_raw(args), 1, "%s", out);
	reap(pid);
	HAS("association rejected");

	/* HDLC over the accepted connection, and an action */
	port = free_port();
	pid = dial_in(port, DLMS_FRAMING_HDLC);
	snprintf(args, sizeof args,
		 "read --listen 127.0.0.1:%d --hdlc --server 1:17 1-0:99.1.0.255 --from 2024-03-01 "
		 "--to 2024-03-02",
		 port);
	cr_assert_eq(run_raw(args), 0, "%s", out);
	reap(pid);
	HAS("\"count\": 4");
	HAS("\"time\": \"2024-03-01T00:45:00Z\"");
	port = free_port();
	pid = dial_in(port, DLMS_FRAMING_WRAPPER);
	snprintf(args, sizeof args, "action --listen 127.0.0.1:%d 0-0:96.3.10.255:1 integer:0",
		 port);
	cr_assert_eq(run_raw(args), 0, "%s", out);
	reap(pid);
	HAS("\"result\": \"success\"");
}
