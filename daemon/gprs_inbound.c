/*
 * gprs_inbound.c: the listener for GPRS modules that connect in ([gprs]
 * listen), and what turns such a connection into a session (issue 6).
 *
 * Trust.  Before a connection is identified the head-end does not know
 * whose keys to use, and nothing a meter says before it has authenticated
 * is believed.  The listener therefore:
 *
 *   1. associates as the public client (wPort 16, no security, the
 *      lowest-privilege association every IDIS meter offers), reads the
 *      logical device name 0-0:42.0.0.255 and releases.  A DataNotification
 *      the meter pushes first (wPort 102) is parsed for the name it claims;
 *      when that differs from the name read, the connection is refused.
 *      The name is only a claim;
 *   2. leases the meter with that serial (scheduler_lease_serial(): known,
 *      enabled, transport gprs, due, not leased) — an unknown name is
 *      refused and logged with the peer address;
 *   3. hands the connection to an ordinary session (session.c) over
 *      gprs_inbound_transport, which associates as the management client
 *      with THAT meter's security: for an HLS-GMAC meter, its keys (pass
 *      3/4 proves the peer holds them, every APDU after is authenticated
 *      and ciphered with them).  A peer claiming another meter's identity
 *      without its keys fails there: the association is refused
 *      (METER_EAUTH / rejected), the session ends before any task, so
 *      nothing of it is stored but its session_log row (outcome "auth" or
 *      "rejected", bytes, error) and no command runs, because commands only
 *      run inside an associated session.  Meters configured without
 *      security (none, LLS) cannot prove who they are in DLMS; for them the
 *      claim is all there is, as with any unauthenticated meter.
 *
 * Bounded resources: the unidentified connections live in a pool of
 * [gprs] max_unidentified slots allocated at start (each holds a public-
 * client engine and its small fixed buffers, ~6 kB), so an accept costs no
 * allocation but libevent's bufferevent, whose input is capped by a read
 * watermark at the slot's receive buffer; when the pool is full new
 * connections are closed at once.  Every slot has a handshake timer
 * ([gprs] handshake_timeout_s): a half-open or silent peer loses its slot
 * then.  A meter that identifies but is not due is held idle (reading and
 * discarding at most a small amount) until [gprs] idle_timeout_s, so it
 * does not redial at once.
 *
 * Commands run on the meter's own connection.  A meter that identifies
 * while due gets its commands claimed then (command_claim_meter()) and
 * its session runs them first.  For the meters held idle the scheduler
 * polls once a second for queued commands (gprs_inbound_idle_serials());
 * once they are claimed, its executor takes the held connection
 * (gprs_inbound_take()) for a command-only session on it: a command
 * queued while the meter sits idle runs within about a second, without a
 * redial.
 *
 * Pushes: the body of a DataNotification sent before identification is
 * kept in the slot (up to 256 bytes) and handed to the session, which
 * stores its values only once its association with the meter's own
 * security is up (session_add_push()).  A push on an idle connection (an
 * alarm) is kept the same way: the meter is made due and leased, and a
 * session on that connection stores the push once associated with the
 * meter's security, and runs its commands (idle_readcb()).
 *
 * Traffic: the identification exchange is on the operator's bill too; it
 * is written to session_log (outcome "identify") for the meter it
 * identified, next to the session's own row.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "ammd.h"
#include "command.h"
#include "config.h"
#include "dlms_client.h"
#include "gprs/gprs.h"
#include "log.h"
#include "meter_error.h"
#include "metrics.h"
#include "obis.h"
#include "scheduler.h"
#include "session.h"
#include "store.h"

#define GIN_RX_CAP     640 /* an AARE, a GET response with a name, a push */
#define GIN_TX_CAP     160
#define GIN_DATA_CAP   128
#define GIN_OUT_CAP    (GIN_RX_CAP + 64)
#define GIN_PUBLIC     16 /* public client wPort */
#define GIN_MAX_PDU    512
#define GIN_IDLE_DRAIN 4096 /* bytes an idle meter may send before we hang up */

enum gin_phase { GIN_FREE = 0, GIN_IDENTIFY, GIN_LOOKUP };

struct gin_slot {
	struct gprs_in *g;
	int phase;
	uint32_t gen; /* bumped when the slot is reused: stale lease answers */
	struct bufferevent *bev;
	struct event *ev_timer;
	char peer[64];
	int64_t started_at;
	uint64_t bytes_in, bytes_out;
	struct dlms_client c;
	struct dlms_get_item item;
	char claim[48];      /* serial the name read claims */
	char push_claim[48]; /* serial a push claimed ("" none) */
	uint8_t push[256];   /* its body, for the session to store once authenticated */
	size_t push_len;
	uint8_t rx[GIN_RX_CAP], tx[GIN_TX_CAP], data[GIN_DATA_CAP], out[GIN_OUT_CAP];
};

struct gin_idle {
	struct gin_idle *next, *prev;
	struct gprs_in *g;
	struct bufferevent *bev;
	struct event *ev;
	size_t seen;
	uint64_t seq;      /* names it to a lease answer that may come after it went */
	bool leasing;      /* it pushed: a lease for a session on it is asked for */
	uint8_t push[256]; /* that push's body, for the session to store */
	size_t push_len;
	char serial[48];
};

struct gprs_in {
	struct ammd *d;
	struct evconnlistener *lis;
	struct gin_slot *slots;
	size_t nslots, used;
	struct gin_idle *idle;
	size_t nidle;
	uint64_t idle_seq;
	struct metric *m_conn;
};

static struct gprs_in *the_gin;
static const struct obis OBIS_LDN = {{0, 0, 42, 0, 0, 255}};

static void gin_readcb(struct bufferevent *bev, void *arg);
static void gin_eventcb(struct bufferevent *bev, short what, void *arg);

static void
gin_count(struct gprs_in *g, const char *what)
{
	metric_inc(g->m_conn, what);
}

static void
slot_free(struct gin_slot *sl)
{
	if (sl->bev != NULL) {
		bufferevent_setcb(sl->bev, NULL, NULL, NULL, NULL);
		bufferevent_free(sl->bev);
		sl->bev = NULL;
	}
	evtimer_del(sl->ev_timer);
	if (sl->phase != GIN_FREE)
		sl->g->used--;
	sl->phase = GIN_FREE;
	sl->gen++;
}

static void slot_refuse(struct gin_slot *sl, const char *what, const char *fmt, ...)
    LOG_PRINTF(3, 4);

static void
slot_refuse(struct gin_slot *sl, const char *what, const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log_warnx("gprs: connection from %s refused: %s", sl->peer, msg);
	gin_count(sl->g, what);
	slot_free(sl);
}

static void
slot_send(struct gin_slot *sl, struct mbuf *out)
{
	if (out->len > 0 && sl->bev != NULL) {
		bufferevent_write(sl->bev, out->p, out->len);
		sl->bytes_out += out->len;
	}
	out->len = 0;
}

/* ---- idle identified meters ----------------------------------------------- */

static void
idle_free(struct gin_idle *id)
{
	struct gprs_in *g = id->g;

	if (id->prev)
		id->prev->next = id->next;
	else
		g->idle = id->next;
	if (id->next)
		id->next->prev = id->prev;
	g->nidle--;
	if (id->bev != NULL) {
		bufferevent_setcb(id->bev, NULL, NULL, NULL, NULL);
		bufferevent_free(id->bev);
	}
	event_free(id->ev);
	free(id);
}

static struct gin_idle *
idle_by_seq(struct gprs_in *g, uint64_t seq)
{
	for (struct gin_idle *id = g->idle; id != NULL; id = id->next)
		if (id->seq == seq)
			return id;
	return NULL;
}

/* Hand the idle connection over to a session: parked under key, the idle
 * record freed without closing it. */
static int
idle_park(struct gin_idle *id, char *key)
{
	struct bufferevent *bev = id->bev;

	bufferevent_disable(bev, EV_READ | EV_WRITE);
	bufferevent_setcb(bev, NULL, NULL, NULL, NULL);
	if (gprs_park(bev, key) != 0)
		return -1;
	id->bev = NULL;
	idle_free(id);
	return 0;
}

static void
idle_lease_cb(struct scheduler *sc, const struct session_meter *m, const char *why, void *arg)
{
	uint64_t *seq = arg;
	struct gprs_in *g = the_gin;
	struct gin_idle *id = g != NULL ? idle_by_seq(g, *seq) : NULL;

	free(seq);
	if (id == NULL) {
		/* the meter hung up meanwhile: it is due now, its next
		 * connection is read (a lease, if any, runs out first) */
		return;
	}
	if (m == NULL) {
		log_meter(LOG_NOTICE, id->serial,
		          "gprs: pushed while idle, not read now (%s): read at its next connection",
		          why);
		idle_free(id);
		return;
	}
	struct session_meter sm = *m;
	uint8_t push[sizeof(id->push)];
	size_t push_len = id->push_len;
	memcpy(push, id->push, push_len);
	if (idle_park(id, sm.host) != 0) {
		log_meter(LOG_WARNING, m->serial,
		          "gprs: no memory for the pushing meter's session");
		idle_free(id);
		return;
	}
	sm.port = 0;
	if (command_get() != NULL)
		command_claim_meter(command_get(), sm.id);
	log_meter(LOG_INFO, sm.serial, "gprs: pushed while idle: read on this connection");
	if (!scheduler_start_session(sc, &sm, &gprs_inbound_transport, push_len > 0 ? push : NULL,
	                             push_len))
		log_meter(LOG_WARNING, sm.serial, "gprs: cannot set up a session");
}

/*
 * An idle meter that pushes has something to say (an alarm).  The push is
 * not authenticated, so it is not believed yet: the meter is made due and
 * leased, and a session on this same connection associates with its own
 * security and stores the push's values only once that association is up
 * (as with a push before identification), then the registers, and runs
 * the meter's commands.  Closing instead would lose the alarm whenever
 * the meter does not push it again at its redial.
 */
static void
idle_readcb(struct bufferevent *bev, void *arg)
{
	struct gin_idle *id = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	size_t n = evbuffer_get_length(in);
	size_t k = n < GIN_RX_CAP ? n : GIN_RX_CAP;
	const uint8_t *p = evbuffer_pullup(in, (ev_ssize_t)k);
	struct gprs_push push;
	struct scheduler *sc = scheduler_get();
	uint64_t *seq;

	if (id->leasing) {
		/* a second push while we ask: the first one is kept */
		evbuffer_drain(in, n);
		return;
	}
	int r = p != NULL ? gprs_push_parse(p, k, &push) : METER_ENEEDMORE;
	if (r == METER_ENEEDMORE && n < GIN_RX_CAP)
		return; /* the rest of a push, or of whatever it is, is coming */
	if (r == 0 && sc != NULL) {
		gin_count(id->g, "idle-push");
		if (push.claim[0] != '\0' && strcmp(push.claim, id->serial) != 0) {
			log_meter(LOG_WARNING, id->serial,
			          "gprs: idle connection pushed as %s: closed", push.claim);
			idle_free(id);
			return;
		}
		if (push.body_len <= sizeof(id->push)) {
			memcpy(id->push, push.body, push.body_len);
			id->push_len = push.body_len;
		}
		evbuffer_drain(in, n);
		if ((seq = malloc(sizeof(*seq))) == NULL) {
			idle_free(id);
			return;
		}
		*seq = id->seq;
		id->leasing = true;
		evtimer_del(id->ev); /* the peer closing still ends it */
		log_meter(LOG_INFO, id->serial, "gprs: pushed while idle: reading it now");
		/* one statement queue: the due time is moved before the lease
		 * looks at it */
		scheduler_due_now(sc, id->serial);
		scheduler_lease_serial(sc, id->serial, idle_lease_cb, seq);
		return;
	}
	log_meter(LOG_DEBUG, id->serial, "gprs: %zu bytes on an idle connection dropped", n);
	id->seen += n;
	evbuffer_drain(in, n);
	if (id->seen > GIN_IDLE_DRAIN) {
		log_meter(LOG_INFO, id->serial, "gprs: idle connection talks too much: closed");
		idle_free(id);
	}
}

static void
idle_eventcb(struct bufferevent *bev, short what, void *arg)
{
	(void)bev;
	(void)what;
	idle_free(arg);
}

static void
idle_timercb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	idle_free(arg);
}

/* The meter is known but has nothing to do now: keep its connection until
 * idle_timeout_s, so it neither redials at once nor holds a slot. */
static void
slot_to_idle(struct gin_slot *sl, const char *serial)
{
	struct gprs_in *g = sl->g;
	struct gin_idle *id = calloc(1, sizeof(*id));
	struct timeval tv = {g->d->cfg->gprs.idle_timeout_s, 0};

	if (id == NULL || (id->ev = evtimer_new(g->d->base, idle_timercb, id)) == NULL) {
		free(id);
		slot_free(sl);
		return;
	}
	id->g = g;
	id->seq = ++g->idle_seq;
	id->bev = sl->bev;
	sl->bev = NULL;
	snprintf(id->serial, sizeof(id->serial), "%s", serial);
	bufferevent_setcb(id->bev, idle_readcb, NULL, idle_eventcb, id);
	bufferevent_setwatermark(id->bev, EV_READ, 0, GIN_RX_CAP);
	bufferevent_set_timeouts(id->bev, NULL, NULL);
	bufferevent_enable(id->bev, EV_READ);
	evtimer_add(id->ev, &tv);
	id->next = g->idle;
	if (g->idle)
		g->idle->prev = id;
	g->idle = id;
	g->nidle++;
	slot_free(sl);
}

int
gprs_inbound_take(const char *serial, char *key)
{
	struct gprs_in *g = the_gin;

	/* the newest first: a meter that redialled has left its older
	 * connection behind */
	for (struct gin_idle *id = g != NULL ? g->idle : NULL; id != NULL; id = id->next)
		if (!id->leasing && strcmp(id->serial, serial) == 0) {
			if (idle_park(id, key) != 0) {
				idle_free(id);
				return -1;
			}
			log_meter(LOG_DEBUG, serial, "gprs: idle connection taken for commands");
			gin_count(g, "idle-command");
			return 0;
		}
	return -1;
}

char *
gprs_inbound_idle_serials(void)
{
	struct gprs_in *g = the_gin;
	char *buf = NULL;
	size_t len = 0;
	FILE *f;

	if (g == NULL || g->nidle == 0 || (f = open_memstream(&buf, &len)) == NULL)
		return NULL;
	fputc('{', f);
	bool first = true;
	for (struct gin_idle *id = g->idle; id != NULL; id = id->next) {
		if (id->leasing)
			continue; /* its session claims its commands */
		fputs(first ? "\"" : ",\"", f);
		first = false;
		for (const char *c = id->serial; *c != '\0'; c++) {
			if (*c == '"' || *c == '\\')
				fputc('\\', f);
			fputc(*c, f);
		}
		fputc('"', f);
	}
	fputc('}', f);
	if (fclose(f) != 0) {
		free(buf);
		return NULL;
	}
	return buf;
}

/* ---- identified: lease and session ----------------------------------------- */

struct lease_arg {
	struct gin_slot *sl;
	uint32_t gen;
};

static void
log_identify(struct gin_slot *sl, int32_t meter)
{
	struct store *st = sl->g->d->store;
	struct store_batch *b = st ? store_batch_new(st) : NULL;
	struct store_session ss;

	if (b == NULL)
		return;
	memset(&ss, 0, sizeof(ss));
	ss.meter = meter;
	ss.instance = sl->g->d->cfg->daemon.instance_id;
	ss.transport = "gprs";
	ss.started_at = sl->started_at;
	ss.finished_at = (int64_t)time(NULL);
	ss.outcome = "identify";
	ss.bytes_in = (int64_t)sl->bytes_in;
	ss.bytes_out = (int64_t)sl->bytes_out;
	ss.duration_ms = (int32_t)((ss.finished_at - ss.started_at) * 1000);
	ss.error = NULL;
	if (store_add_session(b, &ss) != 0) {
		store_batch_free(b);
		return;
	}
	store_submit(st, b, NULL, NULL);
}

static void
lease_cb(struct scheduler *sc, const struct session_meter *m, const char *why, void *arg)
{
	struct lease_arg *la = arg;
	struct gin_slot *sl = la->sl;
	bool stale = la->gen != sl->gen || sl->phase != GIN_LOOKUP;

	free(la);
	if (stale) {
		/* the connection went while we asked: the lease, if any, runs
		 * out and the meter is read at its next connection */
		return;
	}
	if (m == NULL) {
		if (strcmp(why, "not due") == 0 || strcmp(why, "busy") == 0) {
			log_debug("gprs: %s (%s) %s: held idle", sl->claim, sl->peer, why);
			gin_count(sl->g, "idle");
			slot_to_idle(sl, sl->claim);
			return;
		}
		slot_refuse(sl, "unknown", "%s meter %s", why, sl->claim);
		return;
	}
	log_info("gprs: connection from %s claims %s: associating with its security (%s)", sl->peer,
	         m->serial,
	         m->mechanism == ACSE_MECH_HLS_GMAC ? "hls-gmac"
	         : m->mechanism == ACSE_MECH_LLS    ? "lls, not authenticated"
	                                            : "none, not authenticated");
	log_identify(sl, m->id);
	if (command_get() != NULL)
		command_claim_meter(command_get(), m->id);

	struct session_meter sm = *m;
	struct bufferevent *bev = sl->bev;
	bufferevent_disable(bev, EV_READ | EV_WRITE);
	bufferevent_setcb(bev, NULL, NULL, NULL, NULL);
	if (gprs_park(bev, sm.host) != 0) {
		slot_refuse(sl, "error", "no memory");
		return;
	}
	sl->bev = NULL; /* the park's now */
	sm.port = 0;
	log_meter(LOG_DEBUG, sm.serial, "gprs: connected from %s, identified", sl->peer);
	gin_count(sl->g, "identified");
	if (!scheduler_start_session(sc, &sm, &gprs_inbound_transport,
	                             sl->push_len > 0 ? sl->push : NULL, sl->push_len))
		log_meter(LOG_WARNING, sm.serial, "gprs: cannot set up a session");
	slot_free(sl);
}

static void
slot_identified(struct gin_slot *sl)
{
	struct scheduler *sc = scheduler_get();
	struct lease_arg *la;

	if (sl->claim[0] == '\0') {
		slot_refuse(sl, "unidentified", "no readable logical device name");
		return;
	}
	if (sl->push_claim[0] != '\0' && strcmp(sl->push_claim, sl->claim) != 0) {
		slot_refuse(sl, "mismatch", "pushed as %s, logical device name says %s",
		            sl->push_claim, sl->claim);
		return;
	}
	if (sc == NULL || (la = malloc(sizeof(*la))) == NULL) {
		slot_refuse(sl, "error", "no scheduler");
		return;
	}
	sl->phase = GIN_LOOKUP;
	bufferevent_disable(sl->bev, EV_READ);
	la->sl = sl;
	la->gen = sl->gen;
	scheduler_lease_serial(sc, sl->claim, lease_cb, la);
}

/* ---- identification exchange ------------------------------------------------ */

static void
slot_pump(struct gin_slot *sl)
{
	struct dlms_client_event ev;
	struct mbuf out;

	mbuf_init(&out, sl->out, sizeof(sl->out));
again:
	while (sl->phase == GIN_IDENTIFY && dlms_client_poll(&sl->c, &out, &ev) != DLMS_CEV_NONE) {
		slot_send(sl, &out);
		switch (ev.type) {
		case DLMS_CEV_ASSOCIATED:
			sl->item.desc = (struct xdlms_desc){1, OBIS_LDN, 2};
			sl->item.access = NULL;
			if (dlms_client_get(&sl->c, &out, &sl->item, 1) != 0) {
				slot_refuse(sl, "protocol",
				            "cannot ask for the logical device name");
				return;
			}
			break;
		case DLMS_CEV_RESULT:
			if (ev.err == 0 && ev.dar == 0 && ev.data_len >= 2 &&
			    ev.data[0] == AXDR_OCTET_STRING && ev.data[1] == ev.data_len - 2)
				(void)gprs_ldn_serial(ev.data + 2, ev.data_len - 2, sl->claim,
				                      sizeof(sl->claim));
			break;
		case DLMS_CEV_DONE:
			if (dlms_client_release(&sl->c, &out) != 0) {
				slot_send(sl, &out);
				slot_identified(sl);
				return;
			}
			break;
		case DLMS_CEV_RELEASED:
			slot_send(sl, &out);
			slot_identified(sl);
			return;
		case DLMS_CEV_FAILED:
			slot_refuse(sl, "protocol", "public association: %s",
			            meter_strerror(ev.err));
			return;
		default:
			break;
		}
	}
	/* no per-exchange timer: the handshake timer bounds the whole exchange */
	slot_send(sl, &out);
	if (sl->phase == GIN_IDENTIFY && dlms_client_out_pending(&sl->c))
		goto again; /* out was full: sent now, poll again */
}

static void
gin_readcb(struct bufferevent *bev, void *arg)
{
	struct gin_slot *sl = arg;
	struct evbuffer *in = bufferevent_get_input(bev);

	while (sl->phase == GIN_IDENTIFY && evbuffer_get_length(in) > 0) {
		size_t n = evbuffer_get_length(in);
		const uint8_t *p = evbuffer_pullup(in, (ev_ssize_t)n);
		struct gprs_push push;
		/* a PDU not addressed to our public client may be the push */
		if (n >= 6 && p[0] == 0 && p[1] == 1 && (p[4] << 8 | p[5]) != GIN_PUBLIC) {
			int r = gprs_push_parse(p, n, &push);
			if (r == METER_ENEEDMORE) {
				if (n >= GIN_RX_CAP) {
					slot_refuse(sl, "protocol", "oversized first PDU");
					return;
				}
				return;
			}
			if (r == 0) {
				if (sl->push_claim[0] == '\0')
					snprintf(sl->push_claim, sizeof(sl->push_claim), "%s",
					         push.claim);
				if (sl->push_len == 0 && push.body_len <= sizeof(sl->push)) {
					memcpy(sl->push, push.body, push.body_len);
					sl->push_len = push.body_len;
				}
				sl->bytes_in += push.used;
				evbuffer_drain(in, push.used);
				continue;
			}
			if (r != METER_EPROTO) {
				slot_refuse(sl, "protocol", "bad push: %s", meter_strerror(r));
				return;
			}
		}
		size_t took = dlms_client_feed(&sl->c, p, n);
		sl->bytes_in += took;
		evbuffer_drain(in, took);
		slot_pump(sl);
		if (took == 0 && sl->phase == GIN_IDENTIFY) {
			slot_refuse(sl, "protocol", "receive buffer full");
			return;
		}
	}
}

static void
gin_eventcb(struct bufferevent *bev, short what, void *arg)
{
	struct gin_slot *sl = arg;
	(void)bev;

	slot_refuse(sl, "closed", "%s during identification",
	            what & BEV_EVENT_EOF       ? "closed by the peer"
	            : what & BEV_EVENT_TIMEOUT ? "silent"
	                                       : "connection error");
}

static void
gin_timercb(evutil_socket_t fd, short what, void *arg)
{
	struct gin_slot *sl = arg;
	(void)fd;
	(void)what;

	if (sl->phase == GIN_IDENTIFY)
		slot_refuse(sl, "timeout", "not identified within %d s",
		            sl->g->d->cfg->gprs.handshake_timeout_s);
	else if (sl->phase == GIN_LOOKUP)
		slot_refuse(sl, "timeout", "meter lookup took too long");
}

static void
gin_acceptcb(struct evconnlistener *lis, evutil_socket_t fd, struct sockaddr *sa, int salen,
             void *arg)
{
	struct gprs_in *g = arg;
	const struct config *cfg = g->d->cfg;
	struct gin_slot *sl = NULL;
	struct dlms_client_config cc;
	struct timeval tv = {cfg->gprs.handshake_timeout_s, 0};
	char peer[64] = "?";
	(void)lis;
	(void)salen;

	if (sa->sa_family == AF_INET) {
		struct sockaddr_in *s4 = (struct sockaddr_in *)sa;
		char a[INET_ADDRSTRLEN];
		inet_ntop(AF_INET, &s4->sin_addr, a, sizeof(a));
		snprintf(peer, sizeof(peer), "%s:%u", a, ntohs(s4->sin_port));
	} else if (sa->sa_family == AF_INET6) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)sa;
		char a[INET6_ADDRSTRLEN];
		inet_ntop(AF_INET6, &s6->sin6_addr, a, sizeof(a));
		snprintf(peer, sizeof(peer), "[%s]:%u", a, ntohs(s6->sin6_port));
	}
	if (g->used < g->nslots)
		for (size_t i = 0; i < g->nslots; i++)
			if (g->slots[i].phase == GIN_FREE) {
				sl = &g->slots[i];
				break;
			}
	if (sl == NULL || g->d->draining) {
		log_warnx("gprs: connection from %s refused: %s", peer,
		          sl == NULL ? "too many unidentified connections" : "stopping");
		gin_count(g, "overload");
		evutil_closesocket(fd);
		return;
	}
	evutil_make_socket_nonblocking(fd);
	sl->bev = bufferevent_socket_new(g->d->base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (sl->bev == NULL) {
		evutil_closesocket(fd);
		return;
	}
	g->used++;
	sl->phase = GIN_IDENTIFY;
	snprintf(sl->peer, sizeof(sl->peer), "%s", peer);
	sl->started_at = (int64_t)time(NULL);
	sl->bytes_in = sl->bytes_out = 0;
	sl->claim[0] = sl->push_claim[0] = '\0';
	sl->push_len = 0;
	bufferevent_setcb(sl->bev, gin_readcb, NULL, gin_eventcb, sl);
	/* the input never grows past the slot's receive buffer */
	bufferevent_setwatermark(sl->bev, EV_READ, 0, GIN_RX_CAP);
	bufferevent_enable(sl->bev, EV_READ | EV_WRITE);
	evtimer_add(sl->ev_timer, &tv);

	memset(&cc, 0, sizeof(cc));
	cc.framing = DLMS_FRAMING_WRAPPER;
	cc.client_wport = GIN_PUBLIC;
	cc.server_wport = 1;
	cc.mechanism = ACSE_MECH_NONE;
	cc.max_pdu = GIN_MAX_PDU;
	cc.timeout_ms = (uint32_t)cfg->gprs.response_timeout_ms;
	cc.buf = (struct dlms_buffers){.rx = sl->rx,
	                               .rx_cap = sizeof(sl->rx),
	                               .tx = sl->tx,
	                               .tx_cap = sizeof(sl->tx),
	                               .data = sl->data,
	                               .data_cap = sizeof(sl->data)};
	struct mbuf out;
	mbuf_init(&out, sl->out, sizeof(sl->out));
	if (dlms_client_init(&sl->c, &cc) != 0 || dlms_client_out_max(&sl->c) > sizeof(sl->out) ||
	    dlms_client_open(&sl->c, &out) != 0) {
		slot_refuse(sl, "error", "cannot start the public association");
		return;
	}
	gin_count(g, "accepted");
	slot_send(sl, &out);
	slot_pump(sl); /* the wrapper has no link set-up: the AARQ comes from the poll */
}

/* ---- module ------------------------------------------------------------------ */

static void
gin_free(struct gprs_in *g)
{
	if (g->lis != NULL)
		evconnlistener_free(g->lis);
	for (size_t i = 0; g->slots != NULL && i < g->nslots; i++) {
		slot_free(&g->slots[i]);
		if (g->slots[i].ev_timer != NULL)
			event_free(g->slots[i].ev_timer);
	}
	while (g->idle != NULL)
		idle_free(g->idle);
	free(g->slots);
	gprs_unpark_all();
	free(g);
}

static int
gin_start(struct ammd *d)
{
	const struct config *cfg = d->cfg;
	struct sockaddr_storage ss;
	int sslen = sizeof(ss);
	char addr[CONFIG_STR_MAX + 16];
	struct gprs_in *g;

	if (cfg->gprs.listen.host[0] == '\0')
		return 0;
	if ((g = calloc(1, sizeof(*g))) == NULL)
		return -1;
	g->d = d;
	g->nslots = (size_t)cfg->gprs.max_unidentified;
	if ((g->slots = calloc(g->nslots, sizeof(*g->slots))) == NULL) {
		log_warnx("gprs: no memory for %zu connection slots", g->nslots);
		free(g);
		return -1;
	}
	for (size_t i = 0; i < g->nslots; i++) {
		g->slots[i].g = g;
		if ((g->slots[i].ev_timer = evtimer_new(d->base, gin_timercb, &g->slots[i])) ==
		    NULL)
			goto fail;
	}
	snprintf(addr, sizeof(addr), strchr(cfg->gprs.listen.host, ':') ? "[%s]:%u" : "%s:%u",
	         cfg->gprs.listen.host, cfg->gprs.listen.port);
	memset(&ss, 0, sizeof(ss));
	if (evutil_parse_sockaddr_port(addr, (struct sockaddr *)&ss, &sslen) != 0) {
		log_warnx("gprs: bad listen address %s", addr);
		goto fail;
	}
	g->lis = evconnlistener_new_bind(d->base, gin_acceptcb, g,
	                                 LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, 1024,
	                                 (struct sockaddr *)&ss, sslen);
	if (g->lis == NULL) {
		log_warn("gprs: listen on %s", addr);
		goto fail;
	}
	g->m_conn = metrics_counter(d->metrics, "ammd_gprs_connections_total",
	                            "Inbound GPRS connections by what became of them.", "what");
	the_gin = g;
	log_info("gprs: listening on %s (at most %zu unidentified connections)", addr, g->nslots);
	return 0;
fail:
	gin_free(g);
	return -1;
}

static void
gin_drain(struct ammd *d)
{
	struct gprs_in *g = the_gin;
	(void)d;

	if (g == NULL)
		return;
	if (g->lis != NULL)
		evconnlistener_disable(g->lis);
	for (size_t i = 0; i < g->nslots; i++)
		if (g->slots[i].phase != GIN_FREE)
			slot_free(&g->slots[i]);
	while (g->idle != NULL)
		idle_free(g->idle);
}

static void
gin_stop(struct ammd *d)
{
	(void)d;
	if (the_gin == NULL)
		return;
	gin_free(the_gin);
	the_gin = NULL;
}

const struct ammd_module gprs_module = {
    .name = "gprs",
    .start = gin_start,
    .drain = gin_drain,
    .stop = gin_stop,
};
