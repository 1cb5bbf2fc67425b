/*
 * tcpip.c: the TCP/IP transport (DESIGN §3): the head-end dials the
 * meter's TCP/IP module, DLMS over the IEC 62056-47 wrapper (or HDLC when
 * the meter table says so), port 4059 by default.  Always-on modules answer
 * in milliseconds, so a connect that takes longer than connect_ms is
 * given up (the scheduler retries later) rather than left to the kernel's
 * two-minute SYN retries.
 *
 * Names that are not numeric addresses are resolved by libevent without a
 * DNS base, which blocks; inventories name TCP/IP meters by address, and a
 * name costs one lookup per session.
 *
 * The dial itself (address, non-blocking connect under a write timeout,
 * callbacks), the timeouts once up, write and close are the same for
 * every transport that dials TCP, so they are exported here (transport.h)
 * and the GPRS transport calls them with its own timing and policy.
 */
#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/util.h>

#include "transport.h"

static void
ms_to_tv(int ms, struct timeval *tv)
{
	tv->tv_sec = ms / 1000;
	tv->tv_usec = (ms % 1000) * 1000;
}

void
tcpip_set_timeouts(struct bufferevent *bev, int ms)
{
	struct timeval tv;

	ms_to_tv(ms, &tv);
	bufferevent_set_timeouts(bev, &tv, &tv);
}

int
tcpip_dial(struct event_base *base, const struct transport_target *t, uint16_t default_port,
           int connect_ms, bool names, bufferevent_data_cb readcb, bufferevent_event_cb eventcb,
           void *arg, struct bufferevent **out)
{
	struct sockaddr_storage ss;
	int sslen = sizeof(ss);
	struct bufferevent *bev;
	struct timeval tv;
	char addr[300];
	uint16_t port = t->port ? t->port : default_port;
	bool numeric;

	*out = NULL;
	if (t->host == NULL || t->host[0] == '\0') {
		errno = EINVAL;
		return -1;
	}
	if (strchr(t->host, ':') != NULL)
		snprintf(addr, sizeof(addr), "[%s]:%u", t->host, port);
	else
		snprintf(addr, sizeof(addr), "%s:%u", t->host, port);
	memset(&ss, 0, sizeof(ss));
	numeric = evutil_parse_sockaddr_port(addr, (struct sockaddr *)&ss, &sslen) == 0;
	if (!numeric && !names) {
		errno = EINVAL;
		return -1;
	}

	bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
	if (bev == NULL)
		return -1;
	bufferevent_setcb(bev, readcb, NULL, eventcb, arg);
	/* A write timeout covers the connect: libevent reports it as
	 * BEV_EVENT_TIMEOUT|BEV_EVENT_WRITING while connecting. */
	ms_to_tv(connect_ms, &tv);
	bufferevent_set_timeouts(bev, NULL, &tv);
	bufferevent_enable(bev, EV_READ | EV_WRITE);
	if (numeric) {
		if (bufferevent_socket_connect(bev, (struct sockaddr *)&ss, sslen) != 0)
			goto fail;
	} else if (bufferevent_socket_connect_hostname(bev, NULL, AF_UNSPEC, t->host, port) != 0) {
		goto fail;
	}
	*out = bev;
	return 0;
fail:
	if (errno == 0)
		errno = ECONNREFUSED;
	bufferevent_free(bev);
	return -1;
}

static int
tcpip_connect(struct event_base *base, const struct transport_target *t,
              const struct transport_timeouts *to, bufferevent_data_cb readcb,
              bufferevent_event_cb eventcb, void *arg, struct bufferevent **out)
{
	return tcpip_dial(base, t, tcpip_transport.default_port,
	                  to->connect_ms > 0 ? to->connect_ms : 5000, true, readcb, eventcb, arg,
	                  out);
}

static void
tcpip_connected(struct bufferevent *bev, const struct transport_timeouts *to)
{
	evutil_socket_t fd = bufferevent_getfd(bev);
	int one = 1;

	/* Request/response traffic: small APDUs must not wait for Nagle. */
	if (fd >= 0)
		(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	tcpip_set_timeouts(bev, (to->inactivity_s > 0 ? to->inactivity_s : 60) * 1000);
}

int
tcpip_write(struct bufferevent *bev, const void *p, size_t n)
{
	return bufferevent_write(bev, p, n) == 0 ? 0 : -1;
}

void
tcpip_close(struct bufferevent *bev)
{
	if (bev == NULL)
		return;
	bufferevent_disable(bev, EV_READ | EV_WRITE);
	bufferevent_setcb(bev, NULL, NULL, NULL, NULL);
	bufferevent_free(bev);
}

const struct transport_ops tcpip_transport = {
    .name = "tcpip",
    .default_port = 4059,
    .connect = tcpip_connect,
    .connected = tcpip_connected,
    .write = tcpip_write,
    .close = tcpip_close,
};
