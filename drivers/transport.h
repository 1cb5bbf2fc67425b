/*
 * transport.h: how a session reaches a meter.  Each transport (TCP/IP
 * module, GPRS, M-Bus gateway) is a const struct transport_ops of function
 * pointers, in the manner of libmodbus's backends; the session calls only
 * through it, so adding a transport is adding a file under drivers/.
 *
 * A transport hands the session a libevent bufferevent: connect() creates
 * it on the caller's event_base with the caller's callbacks and starts the
 * connection (BEV_EVENT_CONNECTED or an error arrives in the event
 * callback); the session then reads and writes through the bufferevent
 * and gives it back with close().  Timeouts are per transport (a GPRS
 * round trip takes seconds where a TCP/IP module answers in milliseconds),
 * so the session asks the transport for them rather than knowing them.
 *
 * Drivers know nothing of the daemon's configuration: the session fills a
 * struct transport_timeouts from it and passes it in.
 */
#ifndef AMM_TRANSPORT_H
#define AMM_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/bufferevent.h>

struct event_base;

struct transport_timeouts {
	int connect_ms;   /* until the connection is up */
	int response_ms;  /* per DLMS exchange (the engine's timer) */
	int inactivity_s; /* nothing read at all: the link is dead */
};

struct transport_target {
	const char *host; /* numeric address or name */
	uint16_t port;    /* 0: the transport's default */
};

struct transport_ops {
	const char *name; /* "tcpip": the meter table's transport column */
	uint16_t default_port;
	/*
	 * Start connecting; *out gets the bufferevent (the caller's from now
	 * on, to give back with close()).  readcb/eventcb/arg as for
	 * bufferevent_setcb().  Returns 0, or -1 with errno set (bad address,
	 * no memory, immediate refusal); no callback fires after -1.
	 */
	int (*connect)(struct event_base *base, const struct transport_target *t,
	               const struct transport_timeouts *to, bufferevent_data_cb readcb,
	               bufferevent_event_cb eventcb, void *arg, struct bufferevent **out);
	/* The connection is up: switch from connect to inactivity timeouts. */
	void (*connected)(struct bufferevent *bev, const struct transport_timeouts *to);
	/* Queue bytes; 0 or -1. */
	int (*write)(struct bufferevent *bev, const void *p, size_t n);
	/* Close and free (no callback fires afterwards). */
	void (*close)(struct bufferevent *bev);
};

extern const struct transport_ops tcpip_transport; /* drivers/tcpip/tcpip.c */

/*
 * What every transport that dials TCP shares (drivers/tcpip/tcpip.c); each
 * passes its own timing and policy.
 *
 * tcpip_dial(): connect() for a dialled TCP peer: t->port, or default_port
 * when 0; connect_ms bounds the connect (a write timeout, reported as
 * BEV_EVENT_TIMEOUT|BEV_EVENT_WRITING); a host that is not a numeric
 * address is resolved (blocking, no DNS base) when names is true and
 * refused with EINVAL otherwise.  Returns and errno as for connect().
 */
int tcpip_dial(struct event_base *base, const struct transport_target *t, uint16_t default_port,
               int connect_ms, bool names, bufferevent_data_cb readcb, bufferevent_event_cb eventcb,
               void *arg, struct bufferevent **out);
/* Read and write timeouts both set to ms. */
void tcpip_set_timeouts(struct bufferevent *bev, int ms);
/* transport_ops.write and .close of a bufferevent transport. */
int tcpip_write(struct bufferevent *bev, const void *p, size_t n);
void tcpip_close(struct bufferevent *bev);

#endif
