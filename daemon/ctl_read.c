/*
 * ctl_read.c: `ammctl read` and `ammctl action`, one request to one meter
 * from the field engineer's shell, printed as JSON.
 *
 * A small blocking loop around the sans-I/O client engine
 * (dlms_client.h): connect, associate, one GET (or, for --from/--to, the
 * profile's capture_objects, capture_period and each register column's
 * scaler_unit, then the range read decoded to rows by profile.c) or one
 * ACTION, release.  The daemon's drivers do the same on libevent; here
 * poll() on one socket with the engine's timer is all it takes.
 *
 * The DLMS connection is dialled (--host), or accepted (--listen): a GPRS
 * module dials its head-end, so the engineer's tool waits for one meter
 * to connect in and then runs the same association and request over it.
 *
 * Meters behind M-Bus and Modbus-TCP gateways (--mbus, --modbus) are read
 * through ctl_gw_read() (ctl_mbus.c), which runs the daemon's own drivers
 * and OBIS mapping; their readings are printed in the shape of a DLMS
 * register read (obis, name, class, attribute, value, scaler, unit,
 * scaled), one object for one OBIS asked, else a list.
 *
 * Failures (connection refused, timeout, association refused, access
 * errors) give one line on stderr and exit code 1; usage errors exit 2.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "axdr.h"
#include "axdr_json.h"
#include "cosem_time.h"
#include "ctl.h"
#include "dlms_client.h"
#include "json.h"
#include "mbus.h"
#include "mbus/mbus_bus.h"
#include "mbus_collect.h"
#include "obis.h"
#include "profile.h"
#include "xdlms.h"

#define BUF_PDU	 2048	    /* our max receive PDU */
#define BUF_DATA (1 << 20) /* a block-transferred result, e.g. a long profile */
#define MAX_NODES 65536
#define MAX_TARGETS 32	   /* OBIS codes asked of a gateway meter */
#define MAX_GW_VALUES 64

struct opts {
	const char *host;
	const char *port;
	const char *listen;   /* [ADDR:]PORT: wait for a meter to connect in */
	char listen_host[256]; /* "" for every address */
	char listen_port[8];
	uint32_t wait_ms;     /* for the meter to connect in */
	const char *mbus, *modbus; /* gateway HOST:PORT */
	const char *primary, *secondary, *unit, *map;
	int baud;
	const char *dlms_only; /* first option given that only DLMS reads take */
	const char *gw_only;   /* first option given that only gateway reads take */
	const char *targets[MAX_TARGETS];
	size_t ntargets;
	bool hdlc;
	unsigned client, server_upper, server_lower;
	bool server_lower_set;
	int auth;
	const char *password;
	uint8_t ek[DLMS_KEY_LEN], ak[DLMS_KEY_LEN];
	bool have_ek, have_ak;
	uint8_t title[DLMS_SYSTEM_TITLE_LEN];
	bool cipher;
	uint32_t timeout_ms;
	int class_id;
	const char *from, *to;
	struct cosem_tz tz;
	const char *target; /* OBIS[:ATTR] or OBIS:METHOD: targets[0] */
	const char *data;   /* action parameters: targets[1] */
};

struct session {
	const char *cmd;
	int fd;
	struct dlms_client c;
	struct dlms_client_config cfg;
	uint8_t *rx, *tx, *work, *data, *out;
	size_t out_cap;
	struct mbuf o;
	uint32_t timer_gen;
	int64_t deadline_ms; /* -1: no timer */
};

static void
usage(const char *cmd)
{
	fprintf(stderr,
		"usage: ammctl %s --host H [--port P] | --listen [ADDR:]PORT [--wait MS]\n"
		"         [--hdlc] [--client N] [--server N[:L]]\n"
		"         [--auth none|lls|hls-gmac] [--password PW] [--ek HEX] [--ak HEX]\n"
		"         [--system-title HEX] [--cipher] [--timeout MS] [--tz cet|utc]\n",
		cmd);
	if (strcmp(cmd, "read") == 0)
		fprintf(stderr,
			"         OBIS[:ATTR] [--class C] [--from T --to T]\n"
			"       ammctl read --mbus HOST:PORT --primary N|--secondary ID [--baud B]\n"
			"         [--timeout MS] [OBIS...]\n"
			"       ammctl read --modbus HOST:PORT --unit N [--map FILE] [--timeout MS]\n"
			"         [OBIS...]\n");
	else
		fprintf(stderr, "         OBIS:METHOD [--class C] [DATA: hex A-XDR or "
				"type:value, e.g. integer:0]\n");
}

static int64_t
now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int
hex_bytes(const char *s, uint8_t *out, size_t n)
{
	size_t len;
	char err[128];
	uint8_t *b = ctl_read_hex(s, &len, err, sizeof err);

	if (b == NULL || len != n) {
		free(b);
		return -1;
	}
	memcpy(out, b, n);
	free(b);
	return 0;
}

/* "[ADDR:]PORT" (ADDR may be [v6]) into o->listen_host / listen_port. */
static int
parse_listen(const char *s, struct opts *o)
{
	const char *c = strrchr(s, ':'), *port = c ? c + 1 : s;
	char *end;
	long p = strtol(port, &end, 10);
	size_t hl = c ? (size_t)(c - s) : 0;

	if (*port == '\0' || *end != '\0' || p < 1 || p > 65535)
		return -1;
	if (hl >= 2 && s[0] == '[' && s[hl - 1] == ']') {
		s++;
		hl -= 2;
	}
	if (hl >= sizeof o->listen_host)
		return -1;
	memcpy(o->listen_host, s, hl);
	o->listen_host[hl] = '\0';
	snprintf(o->listen_port, sizeof o->listen_port, "%ld", p);
	return 0;
}

/* Which way the meter is reached: exactly one of the four. */
static int
check_reach(const char *cmd, struct opts *o)
{
	int ways = (o->host != NULL) + (o->listen != NULL) + (o->mbus != NULL) + (o->modbus != NULL);

	if (ways == 0) {
		usage(cmd);
		return -1;
	}
	if (ways > 1) {
		fprintf(stderr, "ammctl %s: give one of --host, --listen, --mbus and --modbus\n", cmd);
		return -1;
	}
	if (o->mbus || o->modbus) {
		const char *gw = o->mbus ? "--mbus" : "--modbus";
		if (strcmp(cmd, "read") != 0) {
			fprintf(stderr, "ammctl %s: %s meters are only read\n", cmd, gw);
			return -1;
		}
		if (o->dlms_only) {
			fprintf(stderr, "ammctl read: %s is for DLMS meters, not with %s\n",
				o->dlms_only, gw);
			return -1;
		}
		if (o->mbus && (o->unit || o->map)) {
			fprintf(stderr, "ammctl read: %s goes with --modbus\n",
				o->unit ? "--unit" : "--map");
			return -1;
		}
		if (o->mbus && (o->primary == NULL) == (o->secondary == NULL)) {
			fprintf(stderr, "ammctl read: --mbus needs one of --primary N and "
					"--secondary ID\n");
			return -1;
		}
		if (o->modbus && (o->primary || o->secondary || o->baud)) {
			fprintf(stderr, "ammctl read: --modbus meters have a --unit, not %s\n",
				o->baud ? "--baud" : o->primary ? "--primary" : "--secondary");
			return -1;
		}
		if (o->modbus && o->unit == NULL) {
			fprintf(stderr, "ammctl read: --modbus needs --unit N\n");
			return -1;
		}
		return 0;
	}
	if (o->gw_only) {
		fprintf(stderr, "ammctl %s: %s goes with --mbus or --modbus\n", cmd, o->gw_only);
		return -1;
	}
	if (o->listen && parse_listen(o->listen, o) < 0) {
		fprintf(stderr, "ammctl %s: --listen takes [ADDR:]PORT, not '%s'\n", cmd,
			o->listen);
		return -1;
	}
	if (o->listen && o->port) {
		fprintf(stderr, "ammctl %s: --port is for --host; --listen has its own\n", cmd);
		return -1;
	}
	if (o->wait_ms && o->listen == NULL) {
		fprintf(stderr, "ammctl %s: --wait goes with --listen\n", cmd);
		return -1;
	}
	return 0;
}

static int
parse_opts(const char *cmd, int argc, char **argv, struct opts *o)
{
	/* options only a DLMS session takes, and only a gateway readout */
	static const char *const dlms_only[] = {
		"--port",   "--hdlc",	      "--client", "--server", "--auth", "--password", "--ek",
		"--ak",	    "--system-title", "--cipher", "--class",  "--from", "--to",	      "--tz",
		"--listen", "--wait",
	};
	static const char *const gw_only[] = {"--primary", "--secondary", "--unit", "--map",
					      "--baud"};

	memset(o, 0, sizeof *o);
	o->client = 16;
	o->server_upper = 1;
	o->auth = ACSE_MECH_NONE;
	o->timeout_ms = 10000;
	o->tz = COSEM_TZ_CPH;
	memcpy(o->title, "AMMCTL01", DLMS_SYSTEM_TITLE_LEN);
	for (int i = 0; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		bool takes = true;

		for (size_t k = 0; k < sizeof dlms_only / sizeof dlms_only[0]; k++)
			if (o->dlms_only == NULL && strcmp(a, dlms_only[k]) == 0)
				o->dlms_only = dlms_only[k];
		for (size_t k = 0; k < sizeof gw_only / sizeof gw_only[0]; k++)
			if (o->gw_only == NULL && strcmp(a, gw_only[k]) == 0)
				o->gw_only = gw_only[k];
		if (strcmp(a, "--hdlc") == 0) {
			o->hdlc = true;
			takes = false;
		} else if (strcmp(a, "--cipher") == 0) {
			o->cipher = true;
			takes = false;
		} else if (strcmp(a, "--json") == 0) {
			takes = false; /* JSON is what read prints */
		} else if (a[0] == '-' && a[1] == '-' && v == NULL) {
			fprintf(stderr, "ammctl %s: %s needs a value\n", cmd, a);
			return -1;
		} else if (strcmp(a, "--host") == 0) {
			o->host = v;
		} else if (strcmp(a, "--port") == 0) {
			o->port = v;
		} else if (strcmp(a, "--listen") == 0) {
			o->listen = v;
		} else if (strcmp(a, "--wait") == 0) {
			o->wait_ms = (uint32_t)strtoul(v, NULL, 0);
		} else if (strcmp(a, "--mbus") == 0) {
			o->mbus = v;
		} else if (strcmp(a, "--modbus") == 0) {
			o->modbus = v;
		} else if (strcmp(a, "--primary") == 0) {
			o->primary = v;
		} else if (strcmp(a, "--secondary") == 0) {
			o->secondary = v;
		} else if (strcmp(a, "--unit") == 0) {
			o->unit = v;
		} else if (strcmp(a, "--map") == 0) {
			o->map = v;
		} else if (strcmp(a, "--baud") == 0) {
			o->baud = atoi(v);
			if (o->baud < 300 || o->baud > 38400) {
				fprintf(stderr, "ammctl %s: --baud 300..38400\n", cmd);
				return -1;
			}
		} else if (strcmp(a, "--client") == 0) {
			o->client = (unsigned)strtoul(v, NULL, 0);
		} else if (strcmp(a, "--server") == 0) {
			char *end;
			o->server_upper = (unsigned)strtoul(v, &end, 0);
			if (*end == ':') {
				o->server_lower = (unsigned)strtoul(end + 1, NULL, 0);
				o->server_lower_set = true;
			}
		} else if (strcmp(a, "--auth") == 0) {
			if (strcmp(v, "none") == 0)
				o->auth = ACSE_MECH_NONE;
			else if (strcmp(v, "lls") == 0)
				o->auth = ACSE_MECH_LLS;
			else if (strcmp(v, "hls-gmac") == 0)
				o->auth = ACSE_MECH_HLS_GMAC;
			else {
				fprintf(stderr, "ammctl %s: --auth none|lls|hls-gmac\n", cmd);
				return -1;
			}
		} else if (strcmp(a, "--password") == 0) {
			o->password = v;
		} else if (strcmp(a, "--ek") == 0 || strcmp(a, "--ak") == 0) {
			bool ek = a[2] == 'e';
			if (hex_bytes(v, ek ? o->ek : o->ak, DLMS_KEY_LEN) < 0) {
				fprintf(stderr, "ammctl %s: %s takes 16 bytes of hex\n", cmd, a);
				return -1;
			}
			*(ek ? &o->have_ek : &o->have_ak) = true;
		} else if (strcmp(a, "--system-title") == 0) {
			if (hex_bytes(v, o->title, DLMS_SYSTEM_TITLE_LEN) < 0) {
				fprintf(stderr, "ammctl %s: --system-title takes 8 bytes of hex\n",
					cmd);
				return -1;
			}
		} else if (strcmp(a, "--timeout") == 0) {
			o->timeout_ms = (uint32_t)strtoul(v, NULL, 0);
		} else if (strcmp(a, "--class") == 0) {
			o->class_id = atoi(v);
		} else if (strcmp(a, "--from") == 0) {
			o->from = v;
		} else if (strcmp(a, "--to") == 0) {
			o->to = v;
		} else if (strcmp(a, "--tz") == 0) {
			if (strcmp(v, "utc") == 0)
				o->tz = COSEM_TZ_UTC;
			else if (strcmp(v, "cet") == 0)
				o->tz = COSEM_TZ_CPH;
			else {
				fprintf(stderr, "ammctl %s: --tz cet|utc\n", cmd);
				return -1;
			}
		} else if (a[0] == '-' && a[1] == '-') {
			fprintf(stderr, "ammctl %s: unknown option %s\n", cmd, a);
			return -1;
		} else {
			takes = false;
			if (o->ntargets == MAX_TARGETS) {
				fprintf(stderr, "ammctl %s: at most %d OBIS codes\n", cmd,
					MAX_TARGETS);
				return -1;
			}
			o->targets[o->ntargets++] = a;
		}
		if (takes)
			i++;
	}
	if (check_reach(cmd, o) < 0)
		return -1;
	if (o->mbus || o->modbus)
		return 0; /* no OBIS: every reading */
	o->target = o->ntargets > 0 ? o->targets[0] : NULL;
	if (o->ntargets > 1 && strcmp(cmd, "action") == 0)
		o->data = o->targets[1];
	if (o->ntargets > (strcmp(cmd, "action") == 0 ? 2u : 1u)) {
		fprintf(stderr, "ammctl %s: unexpected argument '%s'\n", cmd,
			o->targets[strcmp(cmd, "action") == 0 ? 2 : 1]);
		return -1;
	}
	if (o->port == NULL)
		o->port = "4059";
	if (o->wait_ms == 0)
		o->wait_ms = 60000;
	if (o->target == NULL) {
		usage(cmd);
		return -1;
	}
	if ((o->from == NULL) != (o->to == NULL)) {
		fprintf(stderr, "ammctl %s: --from and --to go together\n", cmd);
		return -1;
	}
	if (o->auth == ACSE_MECH_LLS && o->password == NULL) {
		fprintf(stderr, "ammctl %s: --auth lls needs --password\n", cmd);
		return -1;
	}
	if ((o->auth == ACSE_MECH_HLS_GMAC || o->cipher) && !(o->have_ek && o->have_ak)) {
		fprintf(stderr, "ammctl %s: hls-gmac and --cipher need --ek and --ak\n", cmd);
		return -1;
	}
	return 0;
}

/* "OBIS[:N]" (the OBIS itself may hold ':' as in 1-0:1.8.0.255). */
static int
parse_target(const char *s, struct obis *o, int *id, bool need_id)
{
	char buf[64];
	const char *colon = strrchr(s, ':');

	*id = -1;
	if (strlen(s) >= sizeof buf)
		return -1;
	/* A trailing ":N" after a complete OBIS is the attribute or method. */
	if (colon && strchr(colon, '.') == NULL && strchr(s, ':') != colon) {
		snprintf(buf, sizeof buf, "%.*s", (int)(colon - s), s);
		*id = atoi(colon + 1);
	} else if (colon && strchr(s, '-') == NULL && strchr(colon, '.') == NULL) {
		snprintf(buf, sizeof buf, "%.*s", (int)(colon - s), s);
		*id = atoi(colon + 1);
	} else
		snprintf(buf, sizeof buf, "%s", s);
	if (obis_parse(buf, o) < 0 && obis_by_name(buf, o) < 0)
		return -1;
	if (*id < 0 && need_id)
		return -1;
	return 0;
}

/* ---- the connection -------------------------------------------------------- */

static int
connect_to(const char *cmd, const struct opts *o)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res, *ai;
	int fd = -1, rc, err = 0;

	if ((rc = getaddrinfo(o->host, o->port, &hints, &res)) != 0) {
		fprintf(stderr, "ammctl %s: %s:%s: %s\n", cmd, o->host, o->port, gai_strerror(rc));
		return -1;
	}
	for (ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK,
			    ai->ai_protocol);
		if (fd < 0) {
			err = errno;
			continue;
		}
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
			break;
		if (errno == EINPROGRESS) {
			struct pollfd p = {.fd = fd, .events = POLLOUT};
			socklen_t sl = sizeof err;
			rc = poll(&p, 1, (int)o->timeout_ms);
			if (rc == 1 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &sl) == 0 &&
			    err == 0)
				break;
			if (rc == 0)
				err = ETIMEDOUT;
		} else
			err = errno;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0)
		fprintf(stderr, "ammctl %s: connecting to %s:%s: %s\n", cmd, o->host, o->port,
			err == ETIMEDOUT ? "timed out" : strerror(err));
	return fd;
}

/*
 * --listen: bind [ADDR:]PORT, wait up to --wait for one meter to connect in
 * (a GPRS module dialling its head-end), take that one connection and stop
 * listening.  The accepted socket is non-blocking like a dialled one.
 */
static int
accept_one(const char *cmd, const struct opts *o)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE}, *res, *ai;
	struct sockaddr_storage peer;
	socklen_t pl = sizeof peer;
	const char *host = o->listen_host[0] ? o->listen_host : NULL;
	char ph[NI_MAXHOST], ps[NI_MAXSERV];
	int lfd = -1, fd = -1, rc, err = 0, one = 1;

	if ((rc = getaddrinfo(host, o->listen_port, &hints, &res)) != 0) {
		fprintf(stderr, "ammctl %s: --listen %s: %s\n", cmd, o->listen, gai_strerror(rc));
		return -1;
	}
	for (ai = res; ai; ai = ai->ai_next) {
		lfd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
		if (lfd < 0) {
			err = errno;
			continue;
		}
		setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
		if (bind(lfd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(lfd, 1) == 0)
			break;
		err = errno;
		close(lfd);
		lfd = -1;
	}
	freeaddrinfo(res);
	if (lfd < 0) {
		fprintf(stderr, "ammctl %s: --listen %s: %s\n", cmd, o->listen, strerror(err));
		return -1;
	}
	struct pollfd p = {.fd = lfd, .events = POLLIN};
	int64_t until = now_ms() + o->wait_ms;
	for (;;) {
		int64_t left = until - now_ms();
		rc = poll(&p, 1, left < 0 ? 0 : (int)left);
		if (rc < 0 && errno == EINTR)
			continue;
		if (rc <= 0) {
			fprintf(stderr, "ammctl %s: no meter connected to %s within %u ms\n", cmd,
				o->listen, o->wait_ms);
			break;
		}
		fd = accept4(lfd, (struct sockaddr *)&peer, &pl, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (fd >= 0)
			break;
		if (errno != EINTR && errno != ECONNABORTED && errno != EAGAIN) {
			fprintf(stderr, "ammctl %s: accept: %s\n", cmd, strerror(errno));
			break;
		}
	}
	close(lfd);
	if (fd >= 0 && getnameinfo((struct sockaddr *)&peer, pl, ph, sizeof ph, ps, sizeof ps,
				   NI_NUMERICHOST | NI_NUMERICSERV) == 0)
		fprintf(stderr, "ammctl %s: a meter connected from %s port %s\n", cmd, ph, ps);
	return fd;
}

static int
flush_out(struct session *s)
{
	size_t off = 0;

	while (off < s->o.len) {
		ssize_t n = send(s->fd, s->o.p + off, s->o.len - off, MSG_NOSIGNAL);
		if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
			struct pollfd p = {.fd = s->fd, .events = POLLOUT};
			poll(&p, 1, 1000);
			continue;
		}
		if (n < 0) {
			fprintf(stderr, "ammctl %s: send: %s\n", s->cmd, strerror(errno));
			return -1;
		}
		off += (size_t)n;
	}
	s->o.len = 0;
	s->o.err = 0;
	return 0;
}

/* After every engine call: send what it wrote, (re)arm its timer. */
static int
after_call(struct session *s)
{
	uint32_t ms, gen = dlms_client_timer(&s->c, &ms);

	if (gen != s->timer_gen) {
		s->timer_gen = gen;
		s->deadline_ms = ms ? now_ms() + ms : -1;
	}
	return flush_out(s);
}

/*
 * Run the loop until the engine reports an event other than NONE; returns
 * it in *ev.  Socket errors and the peer closing are reported as FAILED.
 */
static int
next_event(struct session *s, struct dlms_client_event *ev)
{
	uint8_t buf[4096];

	for (;;) {
		int t = dlms_client_poll(&s->c, &s->o, ev);
		if (after_call(s) < 0)
			goto lost;
		if (t != DLMS_CEV_NONE)
			return t;
		if (dlms_client_out_pending(&s->c))
			continue; /* out was full: it is sent now, poll again */

		int wait = -1;
		if (s->deadline_ms >= 0) {
			int64_t left = s->deadline_ms - now_ms();
			wait = left < 0 ? 0 : (int)left;
		}
		struct pollfd p = {.fd = s->fd, .events = POLLIN};
		int rc = poll(&p, 1, wait);
		if (rc < 0 && errno == EINTR)
			continue;
		if (rc == 0) {
			s->deadline_ms = -1;
			dlms_client_timeout(&s->c, &s->o);
			if (after_call(s) < 0)
				goto lost;
			continue;
		}
		ssize_t n = recv(s->fd, buf, sizeof buf, 0);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (n <= 0)
			goto lost;
		for (size_t off = 0; off < (size_t)n;) {
			size_t took = dlms_client_feed(&s->c, buf + off, (size_t)n - off);
			off += took;
			if (took == 0 || off < (size_t)n) {
				/* engine's input full: let it work, then feed the rest */
				t = dlms_client_poll(&s->c, &s->o, ev);
				if (after_call(s) < 0)
					goto lost;
				if (t != DLMS_CEV_NONE && off < (size_t)n) {
					fprintf(stderr, "ammctl %s: input overrun\n", s->cmd);
					goto lost_quiet;
				}
				if (t != DLMS_CEV_NONE)
					return t;
			}
		}
	}
lost:
	memset(ev, 0, sizeof *ev);
	ev->type = DLMS_CEV_FAILED;
	ev->err = METER_EABORTED;
	return ev->type;
lost_quiet:
	memset(ev, 0, sizeof *ev);
	ev->type = DLMS_CEV_FAILED;
	ev->err = METER_EPROTO;
	return ev->type;
}

static void
report_failure(struct session *s, const struct dlms_client_event *ev, const char *what)
{
	if (ev->err == METER_EREJECTED)
		fprintf(stderr, "ammctl %s: association rejected: %s (%s)\n", s->cmd,
			acse_result_name(ev->result),
			ev->diag_source == 1 ? acse_user_diag_name(ev->diag) : "provider");
	else if (ev->err == METER_EACCESS)
		fprintf(stderr, "ammctl %s: %s: access error: %s\n", s->cmd, what,
			xdlms_dar_name(ev->dar));
	else if (ev->err == METER_EEXCEPTION)
		fprintf(stderr, "ammctl %s: %s: the meter answered with an exception (%s, %s)\n",
			s->cmd, what, xdlms_state_error_name(ev->state_error),
			xdlms_service_error_name(ev->service_error));
	else if (ev->err == METER_EABORTED)
		fprintf(stderr, "ammctl %s: %s: the meter closed the connection\n", s->cmd, what);
	else if (ev->err == METER_ETIMEOUT)
		fprintf(stderr, "ammctl %s: %s: timed out\n", s->cmd, what);
	else
		fprintf(stderr, "ammctl %s: %s: %s\n", s->cmd, what, meter_strerror(ev->err));
}

static void
session_free(struct session *s)
{
	if (s->fd >= 0)
		close(s->fd);
	free(s->rx);
	free(s->tx);
	free(s->work);
	free(s->data);
	free(s->out);
}

static int
session_open(struct session *s, const char *cmd, const struct opts *o)
{
	struct dlms_client_config *cfg = &s->cfg;
	struct dlms_client_event ev;

	memset(s, 0, sizeof *s);
	s->cmd = cmd;
	s->fd = -1;
	s->deadline_ms = -1;
	s->rx = malloc(BUF_PDU + 64);
	s->tx = malloc(BUF_PDU + 64);
	s->work = malloc(BUF_PDU + 64);
	s->data = malloc(BUF_DATA);
	if (!s->rx || !s->tx || !s->work || !s->data) {
		fprintf(stderr, "ammctl %s: out of memory\n", cmd);
		return -1;
	}
	cfg->framing = o->hdlc ? DLMS_FRAMING_HDLC : DLMS_FRAMING_WRAPPER;
	cfg->client_wport = (uint16_t)o->client;
	cfg->server_wport = (uint16_t)o->server_upper;
	cfg->hdlc_client = (struct hdlc_addr){.upper = (uint16_t)o->client, .size = 1};
	cfg->hdlc_server = (struct hdlc_addr){
		.upper = (uint16_t)o->server_upper,
		.lower = (uint16_t)o->server_lower,
		.size = !o->server_lower_set	       ? 1
			: o->server_upper > 0x7f || o->server_lower > 0x7f ? 4
									   : 2};
	cfg->mechanism = o->auth;
	if (o->password) {
		cfg->password = (const uint8_t *)o->password;
		cfg->password_len = strlen(o->password);
	}
	cfg->ciphering = o->cipher;
	memcpy(cfg->keys.ek, o->ek, DLMS_KEY_LEN);
	memcpy(cfg->keys.ak, o->ak, DLMS_KEY_LEN);
	memcpy(cfg->system_title, o->title, DLMS_SYSTEM_TITLE_LEN);
	/* A one-shot tool keeps no counter: start from the clock, which keeps
	 * rising between runs. */
	cfg->tx_counter = (uint32_t)time(NULL);
	cfg->max_pdu = BUF_PDU;
	cfg->timeout_ms = o->timeout_ms;
	cfg->buf = (struct dlms_buffers){s->rx, BUF_PDU + 64, s->tx, BUF_PDU + 64,
					 s->work, BUF_PDU + 64, s->data, BUF_DATA};
	if (dlms_client_init(&s->c, cfg) < 0) {
		fprintf(stderr, "ammctl %s: bad connection settings\n", cmd);
		return -1;
	}
	s->out_cap = dlms_client_out_max(&s->c);
	if (s->out_cap < 16384)
		s->out_cap = 16384;
	s->out = malloc(s->out_cap);
	if (s->out == NULL)
		return -1;
	mbuf_init(&s->o, s->out, s->out_cap);
	if ((s->fd = o->listen ? accept_one(cmd, o) : connect_to(cmd, o)) < 0)
		return -1;
	if (dlms_client_open(&s->c, &s->o) < 0 || after_call(s) < 0) {
		fprintf(stderr, "ammctl %s: cannot start the association\n", cmd);
		return -1;
	}
	for (;;) {
		int t = next_event(s, &ev);
		if (t == DLMS_CEV_ASSOCIATED)
			return 0;
		if (t == DLMS_CEV_FAILED) {
			report_failure(s, &ev, "association");
			return -1;
		}
	}
}

static void
session_close(struct session *s)
{
	struct dlms_client_event ev;

	if (s->c.state == DLMS_CLIENT_READY && dlms_client_release(&s->c, &s->o) == 0 &&
	    after_call(s) == 0)
		while (next_event(s, &ev) != DLMS_CEV_RELEASED && ev.type != DLMS_CEV_FAILED)
			;
}

/*
 * GET n attributes; each item's data is copied to bufs[k] (malloc'd,
 * caller frees) with its length, or dars[k] set.  Returns 0 when the
 * exchange completed (items may still carry a dar), -1 otherwise.
 */
static int
get_items(struct session *s, const struct dlms_get_item *items, uint32_t n, uint8_t **bufs,
	  size_t *lens, int *dars)
{
	struct dlms_client_event ev;

	for (uint32_t k = 0; k < n; k++) {
		bufs[k] = NULL;
		lens[k] = 0;
		dars[k] = -1;
	}
	if (dlms_client_get(&s->c, &s->o, items, n) < 0 || after_call(s) < 0) {
		fprintf(stderr, "ammctl %s: cannot send the request\n", s->cmd);
		return -1;
	}
	for (;;) {
		int t = next_event(s, &ev);
		if (t == DLMS_CEV_RESULT && ev.index < n) {
			if (ev.err == 0 && ev.data) {
				bufs[ev.index] = malloc(ev.data_len ? ev.data_len : 1);
				if (bufs[ev.index] == NULL)
					return -1;
				memcpy(bufs[ev.index], ev.data, ev.data_len);
				lens[ev.index] = ev.data_len;
			} else if (ev.err == METER_EACCESS)
				dars[ev.index] = ev.dar;
			else
				dars[ev.index] = XDLMS_DAR_OTHER_REASON;
		} else if (t == DLMS_CEV_DONE) {
			if (ev.err) {
				report_failure(s, &ev, "read");
				return -1;
			}
			return 0;
		} else if (t == DLMS_CEV_FAILED) {
			report_failure(s, &ev, "read");
			return -1;
		}
	}
}

/* ---- output ---------------------------------------------------------------- */

static void
write_target(struct json *j, const struct obis *o, int class_id, const char *idkey, int id)
{
	char txt[OBIS_STRLEN];

	json_str(j, "obis", obis_format(o, txt));
	if (obis_name(o))
		json_str(j, "name", obis_name(o));
	json_int(j, "class", class_id);
	json_int(j, idkey, id);
}

static struct axdr_node *
decode_nodes(const uint8_t *p, size_t len, size_t *n)
{
	size_t cap = len + 1;
	struct axdr_node *nodes = calloc(cap, sizeof *nodes);

	if (nodes && axdr_decode(p, len, nodes, cap, n) < 0) {
		free(nodes);
		return NULL;
	}
	return nodes;
}

/* Parse "2024-10-01", "2024-10-01T00:15[:00]" (local under tz), with "Z" or
 * "+HH:MM" for an explicit offset. */
static int
parse_time(const char *s, const struct cosem_tz *tz, int64_t *utc)
{
	int y, mo, d, h = 0, mi = 0, sec = 0, n = 0, oh, om;
	char sign;
	struct cosem_datetime dt;

	if (sscanf(s, "%d-%d-%d%n", &y, &mo, &d, &n) != 3)
		return -1;
	s += n;
	if (*s == 'T' || *s == ' ') {
		if (sscanf(s + 1, "%d:%d%n", &h, &mi, &n) != 2)
			return -1;
		s += 1 + n;
		if (*s == ':') {
			if (sscanf(s + 1, "%d%n", &sec, &n) != 1)
				return -1;
			s += 1 + n;
		}
	}
	dt = (struct cosem_datetime){(uint16_t)y, (uint8_t)mo, (uint8_t)d, 0xff, (uint8_t)h,
				     (uint8_t)mi, (uint8_t)sec, 0, COSEM_DEVIATION_UNSPEC, 0};
	if (*s == 'Z' && s[1] == '\0')
		dt.deviation = 0;
	else if (sscanf(s, "%c%d:%d", &sign, &oh, &om) == 3 && (sign == '+' || sign == '-'))
		dt.deviation = (int16_t)((sign == '+' ? -1 : 1) * (oh * 60 + om));
	else if (*s != '\0')
		return -1;
	return cosem_datetime_to_utc(&dt, tz, utc) < 0 ? -1 : 0;
}

static double
pow10_int(int e)
{
	double r = 1;
	while (e-- > 0)
		r *= 10;
	return r;
}

static void
iso_utc(int64_t t, char *out, size_t n)
{
	struct cosem_datetime dt;
	struct cosem_tz utc = COSEM_TZ_UTC;

	cosem_datetime_from_utc(t, &utc, &dt);
	snprintf(out, n, "%04u-%02u-%02uT%02u:%02u:%02uZ", dt.year, dt.month, dt.day, dt.hour,
		 dt.minute, dt.second);
}

/* ---- read ------------------------------------------------------------------ */

static int
read_plain(struct session *s, const struct obis *o, int class_id, int attr)
{
	struct dlms_get_item items[2] = {
		{.desc = {(uint16_t)class_id, *o, (int8_t)attr}},
		{.desc = {(uint16_t)class_id, *o, 3}},
	};
	/* A register's value comes with its scaler_unit. */
	uint32_t n = (class_id == 3 || class_id == 4 || class_id == 5) && attr == 2 ? 2 : 1;
	uint8_t *bufs[2];
	size_t lens[2], nn;
	int dars[2], rc = -1;
	struct json j;

	if (get_items(s, items, n, bufs, lens, dars) < 0)
		goto out;
	if (dars[0] >= 0 || bufs[0] == NULL) {
		fprintf(stderr, "ammctl read: access error: %s\n",
			xdlms_dar_name((uint8_t)(dars[0] >= 0 ? dars[0] : XDLMS_DAR_OTHER_REASON)));
		goto out;
	}
	struct axdr_node *nodes = decode_nodes(bufs[0], lens[0], &nn);
	if (nodes == NULL) {
		fprintf(stderr, "ammctl read: the meter's answer does not decode\n");
		goto out;
	}
	json_init(&j, stdout, true);
	json_obj_begin(&j, NULL);
	write_target(&j, o, class_id, "attribute", attr);
	axdr_json_write(&j, "value", nodes);
	struct profile_column col = {0};
	double v;
	if (n == 2 && bufs[1] && profile_scaler_unit_decode(bufs[1], lens[1], &col) > 0 &&
	    axdr_to_double(nodes, &v) == 0) {
		json_int(&j, "scaler", col.scaler);
		json_str(&j, "unit", profile_unit_name(col.unit));
		json_double(&j, "scaled", col.scaler < 0 ? v / pow10_int(-col.scaler)
							 : v * pow10_int(col.scaler));
	}
	json_obj_end(&j);
	json_end(&j);
	free(nodes);
	rc = 0;
out:
	for (uint32_t k = 0; k < n; k++)
		free(k < n ? bufs[k] : NULL);
	return rc;
}

/* One cell of a profile row as JSON. */
static void
write_cell(struct json *j, const struct profile_column *col, const struct profile_cell *c)
{
	if (c->numeric) {
		if (col->has_scaler_unit)
			json_double(j, NULL, c->value);
		else
			json_int(j, NULL, c->i);
	} else if (c->type == AXDR_NULL || c->ptr == NULL)
		json_null(j, NULL);
	else if (c->type == AXDR_VISIBLE_STRING || c->type == AXDR_UTF8_STRING)
		json_strn(j, NULL, (const char *)c->ptr, c->len);
	else
		json_hex(j, NULL, c->ptr, c->len);
}

/*
 * A profile range read: capture_objects (3) and capture_period (4), each
 * register column's scaler_unit, then the buffer (2) restricted by the
 * clock column from..to, decoded by profile.c.
 */
static int
read_profile(struct session *s, const struct opts *op, const struct obis *o, int class_id,
	     int attr)
{
	struct dlms_get_item items[2 + PROFILE_MAX_COLUMNS];
	uint8_t *bufs[2 + PROFILE_MAX_COLUMNS] = {0};
	size_t lens[2 + PROFILE_MAX_COLUMNS];
	int dars[2 + PROFILE_MAX_COLUMNS];
	struct profile_column cols[PROFILE_MAX_COLUMNS];
	struct profile_cursor cur;
	struct profile_options popt = {.tz = op->tz};
	static struct profile_row row;
	size_t ncols = 0, nreg = 0;
	uint32_t nitems = 0;
	int64_t from, to;
	int rc = -1, err;
	uint8_t access_buf[256];
	struct mbuf ab;
	struct json j;
	char txt[40];

	if (parse_time(op->from, &op->tz, &from) < 0 || parse_time(op->to, &op->tz, &to) < 0) {
		fprintf(stderr, "ammctl read: --from/--to: use 2024-10-01T00:00[:00][Z|+HH:MM]\n");
		return -1;
	}
	items[0] = (struct dlms_get_item){.desc = {(uint16_t)class_id, *o, 3}};
	items[1] = (struct dlms_get_item){.desc = {(uint16_t)class_id, *o, 4}};
	if (get_items(s, items, 2, bufs, lens, dars) < 0)
		goto out;
	nitems = 2;
	if (bufs[0] == NULL) {
		fprintf(stderr, "ammctl read: capture_objects: access error: %s\n",
			xdlms_dar_name((uint8_t)dars[0]));
		goto out;
	}
	if (profile_columns_decode(bufs[0], lens[0], cols, PROFILE_MAX_COLUMNS, &ncols) < 0 ||
	    ncols == 0) {
		fprintf(stderr, "ammctl read: capture_objects do not decode\n");
		goto out;
	}
	if (bufs[1]) {
		struct axdr_node pn[1];
		size_t used;
		if (axdr_decode(bufs[1], lens[1], pn, 1, &used) > 0 &&
		    pn[0].tag == AXDR_DOUBLE_LONG_UNSIGNED)
			popt.period = (uint32_t)pn[0].v.u;
	}

	/* scaler_unit of the register columns */
	size_t regcol[PROFILE_MAX_COLUMNS];
	for (size_t k = 0; k < ncols; k++)
		if ((cols[k].class_id == 3 || cols[k].class_id == 4 || cols[k].class_id == 5) &&
		    cols[k].attribute == 2) {
			items[2 + nreg] = (struct dlms_get_item){
				.desc = {cols[k].class_id, cols[k].obis, 3}};
			regcol[nreg++] = k;
		}
	if (nreg) {
		if (get_items(s, items + 2, (uint32_t)nreg, bufs + 2, lens + 2, dars + 2) < 0)
			goto out;
		nitems = 2 + (uint32_t)nreg;
		for (size_t r = 0; r < nreg; r++)
			if (bufs[2 + r])
				profile_scaler_unit_decode(bufs[2 + r], lens[2 + r],
							   &cols[regcol[r]]);
	}

	/* the range read, restricted by the clock column */
	struct xdlms_capture_obj clock = {8, OBIS(0, 0, 1, 0, 0, 255), 2, 0};
	for (size_t k = 0; k < ncols; k++)
		if (profile_column_is_clock(&cols[k])) {
			clock.obis = cols[k].obis;
			clock.data_index = cols[k].data_index;
			break;
		}
	struct cosem_datetime dfrom, dto;
	cosem_datetime_from_utc(from, &op->tz, &dfrom);
	cosem_datetime_from_utc(to, &op->tz, &dto);
	mbuf_init(&ab, access_buf, sizeof access_buf);
	xdlms_put_range(&ab, &clock, &dfrom, &dto, NULL, 0);
	struct xdlms_access acc = {.present = true,
				   .selector = XDLMS_ACCESS_RANGE,
				   .params = xdlms_data_raw(access_buf, (uint32_t)ab.len)};
	struct dlms_get_item buf_item = {.desc = {(uint16_t)class_id, *o, (int8_t)attr},
					 .access = &acc};
	uint8_t *data = NULL;
	size_t dlen;
	int dar;
	if (get_items(s, &buf_item, 1, &data, &dlen, &dar) < 0)
		goto out;
	if (data == NULL) {
		fprintf(stderr, "ammctl read: buffer: access error: %s\n",
			xdlms_dar_name((uint8_t)dar));
		goto out;
	}
	if ((err = profile_cursor_init(&cur, cols, ncols, data, dlen, &popt)) < 0) {
		fprintf(stderr, "ammctl read: buffer: %s\n", meter_strerror(err));
		free(data);
		goto out;
	}

	/* Decode every row before printing anything. */
	while ((err = profile_next(&cur, &row)) == 1)
		;
	if (err < 0) {
		fprintf(stderr, "ammctl read: buffer row %u: %s\n", cur.next, meter_strerror(err));
		free(data);
		goto out;
	}
	profile_cursor_init(&cur, cols, ncols, data, dlen, &popt);

	json_init(&j, stdout, true);
	json_obj_begin(&j, NULL);
	write_target(&j, o, class_id, "attribute", attr);
	iso_utc(from, txt, sizeof txt);
	json_str(&j, "from", txt);
	iso_utc(to, txt, sizeof txt);
	json_str(&j, "to", txt);
	json_uint(&j, "capture_period", popt.period);
	json_arr_begin(&j, "columns");
	for (size_t k = 0; k < ncols; k++) {
		json_obj_begin(&j, NULL);
		write_target(&j, &cols[k].obis, cols[k].class_id, "attribute", cols[k].attribute);
		if (cols[k].has_scaler_unit) {
			json_int(&j, "scaler", cols[k].scaler);
			json_str(&j, "unit", profile_unit_name(cols[k].unit));
		}
		json_obj_end(&j);
	}
	json_arr_end(&j);
	json_uint(&j, "count", cur.count);
	json_arr_begin(&j, "rows");
	while (profile_next(&cur, &row) == 1) {
		json_obj_begin(&j, NULL);
		if (row.has_time) {
			iso_utc(row.time, txt, sizeof txt);
			json_str(&j, "time", txt);
		}
		json_arr_begin(&j, "values");
		for (size_t k = 0; k < ncols; k++) {
			if ((int)k == cur.clock_col && row.has_time)
				json_str(&j, NULL, txt);
			else
				write_cell(&j, &cols[k], &row.cells[k]);
		}
		json_arr_end(&j);
		json_obj_end(&j);
	}
	json_arr_end(&j);
	json_obj_end(&j);
	json_end(&j);
	free(data);
	rc = 0;
out:
	for (uint32_t k = 0; k < nitems; k++)
		free(bufs[k]);
	return rc;
}

/* ---- read at a gateway -------------------------------------------------------- */

/* One reading in the shape of a register read. */
static void
write_reading(struct json *j, const struct mbus_collect_value *v)
{
	int class_id = obis_class(&v->obis);

	json_obj_begin(j, NULL);
	write_target(j, &v->obis, class_id ? class_id : 3, "attribute", 2);
	json_int(j, "value", v->value);
	json_int(j, "scaler", v->scaler);
	json_str(j, "unit", profile_unit_name((uint8_t)v->unit));
	json_double(j, "scaled", v->scaler < 0 ? (double)v->value / pow10_int(-v->scaler)
					       : (double)v->value * pow10_int(v->scaler));
	json_obj_end(j);
}

/*
 * --mbus / --modbus: one readout, the readings asked for (every one when
 * no OBIS is given) in the order asked.  An OBIS the readout lacks is an
 * error: the meter or its gateway does not give it.
 */
static int
read_gateway(const struct opts *o)
{
	struct ctl_gw_req q = {.modbus = o->modbus != NULL,
			       .baud = o->baud,
			       .map = o->map,
			       .timeout_ms = o->timeout_ms};
	struct mbus_collect_value vals[MAX_GW_VALUES];
	const struct mbus_collect_value *pick[MAX_TARGETS];
	struct obis want[MAX_TARGETS];
	struct ctl_gw_meter m;
	const char *gw = o->mbus ? o->mbus : o->modbus;
	char host[256], *end;
	size_t n;
	int attr;

	for (size_t k = 0; k < o->ntargets; k++)
		if (parse_target(o->targets[k], &want[k], &attr, false) < 0 ||
		    (attr >= 0 && attr != 2)) {
			fprintf(stderr, "ammctl read: '%s' is not the OBIS code of a reading\n",
				o->targets[k]);
			return 2;
		}
	if (ctl_parse_hostport(gw, host, sizeof host, &q.port) < 0) {
		fprintf(stderr, "ammctl read: '%s' is not HOST:PORT\n", gw);
		return 2;
	}
	q.host = host;
	if (o->modbus) {
		long u = strtol(o->unit, &end, 10);
		if (*end != '\0' || end == o->unit || u < 1 || u > 247) {
			fprintf(stderr, "ammctl read: --unit takes a Modbus unit id 1..247\n");
			return 2;
		}
		q.addr = o->unit;
	} else if (o->primary) {
		long a = strtol(o->primary, &end, 10);
		if (*end != '\0' || end == o->primary || a < 0 || a > MBUS_ADDR_LAST) {
			fprintf(stderr, "ammctl read: --primary takes an M-Bus address 0..250\n");
			return 2;
		}
		q.addr = o->primary;
	} else {
		struct mbus_secondary sec;
		if (mbus_secondary_parse(o->secondary, &sec) != 0) {
			fprintf(stderr, "ammctl read: --secondary takes 8 or 16 hex digits "
					"(F a wildcard)\n");
			return 2;
		}
		q.addr = o->secondary;
	}
	if (ctl_gw_read(&q, vals, MAX_GW_VALUES, &n, &m) != 0)
		return 1;
	for (size_t k = 0; k < o->ntargets; k++) {
		pick[k] = NULL;
		for (size_t i = 0; i < n && pick[k] == NULL; i++)
			if (obis_eq(&vals[i].obis, &want[k]))
				pick[k] = &vals[i];
		if (pick[k] == NULL) {
			char txt[OBIS_STRLEN];
			fprintf(stderr, "ammctl read: the meter's readout has no %s\n",
				obis_format(&want[k], txt));
			return 1;
		}
	}

	struct json j;
	json_init(&j, stdout, true);
	if (o->ntargets == 1) {
		write_reading(&j, pick[0]);
		json_end(&j);
		return 0;
	}
	json_obj_begin(&j, NULL);
	json_str(&j, "gateway", gw);
	json_str(&j, "transport", o->modbus ? "modbus" : "mbus");
	if (o->modbus)
		json_int(&j, "unit", atoi(o->unit));
	else if (o->primary)
		json_int(&j, "primary", atoi(o->primary));
	else
		json_str(&j, "secondary", o->secondary);
	if (m.have) {
		json_str(&j, "id", m.id);
		json_str(&j, "secondary_address", m.secondary);
		json_str(&j, "manufacturer", m.manufacturer);
		json_str(&j, "medium", m.medium);
	}
	json_arr_begin(&j, "readings");
	for (size_t k = 0; k < (o->ntargets ? o->ntargets : n); k++)
		write_reading(&j, o->ntargets ? pick[k] : &vals[k]);
	json_arr_end(&j);
	json_obj_end(&j);
	json_end(&j);
	return 0;
}

int
ctl_read(int argc, char **argv)
{
	struct opts o;
	struct session s;
	struct obis obis;
	int attr, class_id, rc;

	if (parse_opts("read", argc, argv, &o) < 0)
		return 2;
	if (o.mbus || o.modbus)
		return read_gateway(&o);
	if (parse_target(o.target, &obis, &attr, false) < 0) {
		fprintf(stderr, "ammctl read: '%s' is not OBIS[:ATTR]\n", o.target);
		return 2;
	}
	if (attr < 0)
		attr = 2;
	class_id = o.class_id ? o.class_id : obis_class(&obis);
	if (class_id == 0) {
		fprintf(stderr, "ammctl read: unknown object %s: give --class\n", o.target);
		return 2;
	}
	if (o.from && class_id != 7) {
		fprintf(stderr, "ammctl read: --from/--to read profiles (class 7)\n");
		return 2;
	}
	if (session_open(&s, "read", &o) < 0) {
		session_free(&s);
		return 1;
	}
	rc = o.from ? read_profile(&s, &o, &obis, class_id, attr)
		    : read_plain(&s, &obis, class_id, attr);
	session_close(&s);
	session_free(&s);
	return rc < 0 ? 1 : 0;
}

/* ---- action ---------------------------------------------------------------- */

/*
 * Method parameters: hex A-XDR ("0f00") or "type:value" for the simple
 * types ("integer:0", "long-unsigned:100", "octet-string:0102",
 * "visible-string:abc", "boolean:true", "null").  Returns the length
 * written to b, or -1.
 */
static int
parse_data(const char *s, struct mbuf *b)
{
	const char *colon = strchr(s, ':');
	char type[32], err[64];
	long long v = 0;
	size_t len;

	if (strcmp(s, "null") == 0 || strcmp(s, "null-data") == 0) {
		axdr_put_null(b);
		return (int)b->len;
	}
	if (colon == NULL) {
		uint8_t *raw = ctl_read_hex(s, &len, err, sizeof err);
		if (raw == NULL || axdr_skip(raw, len) != (ssize_t)len) {
			free(raw);
			return -1;
		}
		mbuf_put(b, raw, len);
		free(raw);
		return b->err ? -1 : (int)b->len;
	}
	snprintf(type, sizeof type, "%.*s", (int)(colon - s), s);
	const char *val = colon + 1;
	if (strcmp(type, "octet-string") == 0) {
		uint8_t *raw = ctl_read_hex(val, &len, err, sizeof err);
		if (raw == NULL)
			return -1;
		axdr_put_octet_string(b, raw, (uint32_t)len);
		free(raw);
		return b->err ? -1 : (int)b->len;
	}
	if (strcmp(type, "visible-string") == 0) {
		axdr_put_visible_string(b, val, (uint32_t)strlen(val));
		return b->err ? -1 : (int)b->len;
	}
	if (strcmp(type, "boolean") == 0) {
		if (strcmp(val, "true") != 0 && strcmp(val, "false") != 0)
			return -1;
		axdr_put_boolean(b, strcmp(val, "true") == 0);
		return (int)b->len;
	}
	char *end;
	v = strtoll(val, &end, 0);
	if (*val == '\0' || *end != '\0')
		return -1;
	static const struct {
		const char *name;
		long long lo, hi;
		uint8_t tag;
	} ints[] = {
		{"integer", -128, 127, AXDR_INTEGER},
		{"long", -32768, 32767, AXDR_LONG},
		{"double-long", INT32_MIN, INT32_MAX, AXDR_DOUBLE_LONG},
		{"unsigned", 0, 255, AXDR_UNSIGNED},
		{"long-unsigned", 0, 65535, AXDR_LONG_UNSIGNED},
		{"double-long-unsigned", 0, UINT32_MAX, AXDR_DOUBLE_LONG_UNSIGNED},
		{"enum", 0, 255, AXDR_ENUM},
		{"long64", INT64_MIN, INT64_MAX, AXDR_LONG64},
	};
	for (size_t k = 0; k < sizeof ints / sizeof ints[0]; k++) {
		if (strcmp(type, ints[k].name) != 0)
			continue;
		if (v < ints[k].lo || v > ints[k].hi)
			return -1;
		switch (ints[k].tag) {
		case AXDR_INTEGER: axdr_put_integer(b, (int8_t)v); break;
		case AXDR_LONG: axdr_put_long(b, (int16_t)v); break;
		case AXDR_DOUBLE_LONG: axdr_put_double_long(b, (int32_t)v); break;
		case AXDR_UNSIGNED: axdr_put_unsigned(b, (uint8_t)v); break;
		case AXDR_LONG_UNSIGNED: axdr_put_long_unsigned(b, (uint16_t)v); break;
		case AXDR_DOUBLE_LONG_UNSIGNED: axdr_put_double_long_unsigned(b, (uint32_t)v); break;
		case AXDR_ENUM: axdr_put_enum(b, (uint8_t)v); break;
		default: axdr_put_long64(b, (int64_t)v); break;
		}
		return (int)b->len;
	}
	return -1;
}

int
ctl_action(int argc, char **argv)
{
	struct opts o;
	struct session s;
	struct obis obis;
	struct dlms_client_event ev;
	uint8_t params[1024];
	struct mbuf pb;
	int method, class_id, rc = 1;
	bool has_params = false;

	if (parse_opts("action", argc, argv, &o) < 0)
		return 2;
	if (parse_target(o.target, &obis, &method, true) < 0) {
		fprintf(stderr, "ammctl action: '%s' is not OBIS:METHOD\n", o.target);
		return 2;
	}
	class_id = o.class_id ? o.class_id : obis_class(&obis);
	if (class_id == 0) {
		fprintf(stderr, "ammctl action: unknown object %s: give --class\n", o.target);
		return 2;
	}
	mbuf_init(&pb, params, sizeof params);
	if (o.data) {
		if (parse_data(o.data, &pb) < 0) {
			fprintf(stderr,
				"ammctl action: DATA '%s' is neither A-XDR hex nor type:value\n",
				o.data);
			return 2;
		}
		has_params = true;
	}
	if (session_open(&s, "action", &o) < 0) {
		session_free(&s);
		return 1;
	}
	struct xdlms_desc m = {(uint16_t)class_id, obis, (int8_t)method};
	if (dlms_client_action(&s.c, &s.o, &m, has_params ? params : NULL,
			       has_params ? pb.len : 0) < 0 ||
	    after_call(&s) < 0) {
		fprintf(stderr, "ammctl action: cannot send the request\n");
		goto out;
	}
	struct json j;
	bool printed = false;
	for (;;) {
		int t = next_event(&s, &ev);
		if (t == DLMS_CEV_RESULT) {
			if (ev.err == METER_EACCESS) {
				fprintf(stderr, "ammctl action: the meter answered %s\n",
					xdlms_action_result_name(ev.dar));
				continue;
			}
			if (ev.err) {
				report_failure(&s, &ev, "action");
				continue;
			}
			json_init(&j, stdout, true);
			json_obj_begin(&j, NULL);
			write_target(&j, &obis, class_id, "method", method);
			json_str(&j, "result", "success");
			if (ev.data && ev.data_len) {
				size_t nn;
				struct axdr_node *nodes = decode_nodes(ev.data, ev.data_len, &nn);
				if (nodes)
					axdr_json_write(&j, "return", nodes);
				free(nodes);
			}
			json_obj_end(&j);
			json_end(&j);
			printed = true;
		} else if (t == DLMS_CEV_DONE) {
			if (ev.err && ev.err != METER_EACCESS)
				report_failure(&s, &ev, "action");
			rc = printed ? 0 : 1;
			break;
		} else if (t == DLMS_CEV_FAILED) {
			report_failure(&s, &ev, "action");
			break;
		}
	}
out:
	session_close(&s);
	session_free(&s);
	return rc;
}
