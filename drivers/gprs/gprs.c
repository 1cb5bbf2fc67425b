/*
 * gprs.c: the GPRS transports and the helpers the inbound listener decides
 * with (see gprs.h).  A GPRS module's round trip takes 0.5-3 s and its
 * link may die without a FIN (the radio goes, the operator's NAT forgets
 * the flow), so both transports switch on TCP keepalive with short probes
 * and take their timeouts from [gprs], never from [tcpip].
 *
 * The inbound transport exists so that a session (daemon/session.c) can run
 * on a connection the meter opened without the session knowing: the
 * listener parks the identified connection under a key, the key travels as
 * the target's host, and connect() takes the bufferevent back and reports
 * BEV_EVENT_CONNECTED from a deferred callback, as a dial would.
 *
 * The dial, write and close are the TCP/IP transport's (tcpip_dial() and
 * friends in transport.h): only the timing, the refusal of names and the
 * socket options are GPRS's own.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/util.h>

#include "axdr.h"
#include "gprs.h"
#include "meter_error.h"
#include "wrapper.h"
#include "xdlms.h"

#define GPRS_PUSH_MAX_APDU 1024 /* a push larger than this is not a push we read */

/* Keepalive after 60 s of silence, 3 probes 20 s apart: a half-open
 * GPRS link is found within two minutes even while nobody talks. */
static void
gprs_socket_opts(struct bufferevent *bev)
{
	evutil_socket_t fd = bufferevent_getfd(bev);
	int one = 1, idle = 60, intvl = 20, cnt = 3;

	if (fd < 0)
		return;
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	(void)setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
	(void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
	(void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
	(void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
}

/* ---- outbound: the head-end dials the APN address ------------------------ */

/* APN addresses are numeric (the operator's private range): a name would
 * need a blocking lookup on the loop, so it is refused.  A GPRS attach and
 * PDP context can take tens of seconds, hence the longer default. */
static int
gprs_connect(struct event_base *base, const struct transport_target *t,
             const struct transport_timeouts *to, bufferevent_data_cb readcb,
             bufferevent_event_cb eventcb, void *arg, struct bufferevent **out)
{
	return tcpip_dial(base, t, gprs_transport.default_port,
	                  to->connect_ms > 0 ? to->connect_ms : 60000, false, readcb, eventcb, arg,
	                  out);
}

static void
gprs_connected(struct bufferevent *bev, const struct transport_timeouts *to)
{
	gprs_socket_opts(bev);
	tcpip_set_timeouts(bev, (to->inactivity_s > 0 ? to->inactivity_s : 120) * 1000);
}

const struct transport_ops gprs_transport = {
    .name = "gprs",
    .default_port = 4059,
    .connect = gprs_connect,
    .connected = gprs_connected,
    .write = tcpip_write,
    .close = tcpip_close,
};

/* ---- inbound: adopt a parked connection ------------------------------------ */

struct parked {
	struct parked *next;
	struct bufferevent *bev;
	char key[GPRS_PARK_KEY_MAX];
};

static struct parked *parked;
static unsigned long park_seq;

int
gprs_park(struct bufferevent *bev, char *key)
{
	struct parked *p = calloc(1, sizeof(*p));

	if (p == NULL)
		return -1;
	p->bev = bev;
	snprintf(p->key, sizeof(p->key), "gprs-in:%lu", ++park_seq);
	memcpy(key, p->key, sizeof(p->key));
	p->next = parked;
	parked = p;
	return 0;
}

void
gprs_unpark_all(void)
{
	while (parked != NULL) {
		struct parked *p = parked;
		parked = p->next;
		tcpip_close(p->bev);
		free(p);
	}
}

static int
gprs_in_connect(struct event_base *base, const struct transport_target *t,
                const struct transport_timeouts *to, bufferevent_data_cb readcb,
                bufferevent_event_cb eventcb, void *arg, struct bufferevent **out)
{
	struct parked **pp, *p = NULL;
	(void)base;

	*out = NULL;
	for (pp = &parked; t->host != NULL && *pp != NULL; pp = &(*pp)->next)
		if (strcmp((*pp)->key, t->host) == 0) {
			p = *pp;
			*pp = p->next;
			break;
		}
	if (p == NULL) {
		errno = ENOTCONN; /* the meter is gone, or never was */
		return -1;
	}
	*out = p->bev;
	free(p);
	bufferevent_setcb(*out, readcb, NULL, eventcb, arg);
	tcpip_set_timeouts(*out, to->connect_ms > 0 ? to->connect_ms : 60000);
	bufferevent_setwatermark(*out, EV_READ, 0, 0);
	bufferevent_enable(*out, EV_READ | EV_WRITE);
	/* the link is already up: say so the way a dial would, from the
	 * loop rather than from inside this call */
	bufferevent_trigger_event(*out, BEV_EVENT_CONNECTED, BEV_TRIG_DEFER_CALLBACKS);
	return 0;
}

const struct transport_ops gprs_inbound_transport = {
    .name = "gprs",
    .default_port = 0,
    .connect = gprs_in_connect,
    .connected = gprs_connected,
    .write = tcpip_write,
    .close = tcpip_close,
};

/* ---- identity --------------------------------------------------------------- */

static bool
all_digits(const uint8_t *p, size_t n)
{
	if (n == 0)
		return false;
	for (size_t i = 0; i < n; i++)
		if (p[i] < '0' || p[i] > '9')
			return false;
	return true;
}

static bool
is_flag(const uint8_t *p)
{
	for (int i = 0; i < 3; i++)
		if (p[i] < 'A' || p[i] > 'Z')
			return false;
	return true;
}

bool
gprs_ldn_matches(const uint8_t *ldn, size_t len, const char *serial)
{
	size_t n = serial != NULL ? strlen(serial) : 0;

	if (ldn == NULL || n == 0)
		return false;
	if (len == n && memcmp(ldn, serial, n) == 0)
		return true;
	return len == n + 3 && is_flag(ldn) && memcmp(ldn + 3, serial, n) == 0;
}

int
gprs_ldn_serial(const uint8_t *ldn, size_t len, char *out, size_t cap)
{
	if (cap == 0)
		return METER_EINVAL;
	out[0] = '\0';
	if (ldn == NULL || len == 0)
		return METER_EMALFORMED;
	if (len > 3 && is_flag(ldn) && all_digits(ldn + 3, len - 3)) {
		ldn += 3;
		len -= 3;
	}
	if (len >= cap)
		return METER_EMALFORMED;
	for (size_t i = 0; i < len; i++)
		if (ldn[i] < 0x21 || ldn[i] > 0x7e || ldn[i] == '\'' || ldn[i] == '\\')
			return METER_EMALFORMED;
	memcpy(out, ldn, len);
	out[len] = '\0';
	return 0;
}

/* ---- pushes ------------------------------------------------------------------ */

int
gprs_push_parse(const uint8_t *buf, size_t len, struct gprs_push *out)
{
	struct wrapper_pdu w;
	struct xdlms_apdu a;
	struct axdr_node nodes[8];
	ssize_t r;

	memset(out, 0, sizeof(*out));
	r = wrapper_parse(buf, len, GPRS_PUSH_MAX_APDU, &w);
	if (r < 0)
		return (int)r;
	if (w.length == 0 || w.apdu[0] != XDLMS_TAG_DATA_NOTIFICATION)
		return METER_EPROTO;
	out->used = (size_t)r;
	out->src_wport = w.src_wport;
	out->dst_wport = w.dst_wport;
	memset(&a, 0, sizeof(a));
	ssize_t d = xdlms_decode(w.apdu, w.length, &a, NULL, 0);
	if (d < 0)
		return d == METER_ENEEDMORE ? METER_EMALFORMED : (int)d;
	if (a.type != XDLMS_DATA_NOTIFICATION || a.value.raw == NULL || a.value.len == 0)
		return METER_EMALFORMED;
	out->body = a.value.raw;
	out->body_len = a.value.len;
	/* the first element of the structure: the IDIS push names the
	 * logical device first */
	size_t nn = 0;
	uint32_t count;
	ssize_t h = axdr_decode_header(out->body, out->body_len, AXDR_STRUCTURE, &count);
	if (h > 0 && count > 0 &&
	    axdr_decode(out->body + h, out->body_len - (size_t)h, nodes, 8, &nn) > 0 && nn >= 1 &&
	    nodes[0].tag == AXDR_OCTET_STRING)
		(void)gprs_ldn_serial(nodes[0].ptr, nodes[0].len, out->claim, sizeof(out->claim));
	return 0;
}
