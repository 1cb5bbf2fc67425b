/*
 * publish.c: the outbox drain (see publish.h).  Two connections, both on
 * the event loop and never blocking it:
 *
 *   the broker   libmosquitto without its thread: its socket is watched for
 *                reading, for writing while mosquitto_want_write() says so,
 *                and a one-second timer runs mosquitto_loop_misc() for the
 *                keep-alive.  Every connection is a fresh mosquitto object,
 *                so nothing the library queued survives a reconnect: what
 *                was not acknowledged is simply read from the outbox again.
 *   the database libpq in non-blocking mode, one statement at a time: the
 *                LISTEN, the advisory lock, reads of the next chunk of rows
 *                after the last one read, deletes of acknowledged rows, and
 *                now and then a count of the outbox for the depth gauge.
 *
 * The window is the set of rows published and not yet deleted, sorted by
 * id: SENT (waiting for the PUBACK), ACKED (waiting for the DELETE),
 * DELETING (in the DELETE under way).  Its size bounds what is in flight.
 * A PUBACK names the message id libmosquitto gave the PUBLISH; mid_row maps
 * those 16-bit ids back to the row.  When the broker connection is lost the
 * SENT rows leave the window and the read position goes back to the start,
 * so they are published again once the broker is back; ACKED rows stay and
 * are skipped by that re-read.  When the database connection is lost the
 * window keeps its ACKED rows and deletes them after the reconnect.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>
#include <libpq-fe.h>
#include <mosquitto.h>

#include "ammd.h"
#include "config.h"
#include "db.h"
#include "http.h"
#include "log.h"
#include "message.h"
#include "metrics.h"
#include "publish.h"

#define OUTBOX_CHANNEL "ammd_outbox"
/* Any constant will do as long as every ammd uses the same one. */
#define OUTBOX_LOCK_KEY   "7209160117"
#define WINDOW_MAX        20000
#define WINDOW_DEFAULT    1000
#define CHUNK_DEFAULT     500
#define POLL_MS_DEFAULT   2000
#define DELETE_MAX        1000 /* ids per DELETE */
#define DEPTH_EVERY_MS    5000
#define KEEPALIVE_S       30
#define CONNECT_TIMEOUT_S 15
#define BACKOFF_MIN_MS    500
#define BACKOFF_MAX_MS    30000
#define UNHEALTHY_AFTER_S 30

enum slot_state { SLOT_SENT, SLOT_ACKED, SLOT_DELETING };

struct slot {
	int64_t id;
	uint8_t state;
};

enum mqtt_state { MQTT_IDLE, MQTT_CONNECTING, MQTT_UP };
enum db_state { DB_IDLE, DB_CONNECTING, DB_UP };
enum db_op { OP_NONE, OP_LISTEN, OP_LOCK, OP_READ, OP_DELETE, OP_COUNT };

struct publish {
	struct event_base *base;
	struct config cfg;
	char password[CONFIG_STR_MAX];
	bool started, draining;
	bool lib_init; /* mosquitto_lib_init() done, cleanup owed */
	bool tls;

	/* broker */
	struct mosquitto *mosq;
	enum mqtt_state mstate;
	unsigned gen;   /* bumped at every broker connection lost */
	bool mqtt_dead; /* set inside libmosquitto callbacks, acted on after */
	struct event *m_rev, *m_wev, *m_misc, *m_retry;
	int m_backoff_ms;
	time_t m_since; /* connecting since / down since */
	char request_topic[MESSAGE_TOPIC_MAX]; /* <prefix>/command/request */
	char client_topic[MESSAGE_TOPIC_MAX];  /* <prefix>/command/request/+ */
	publish_command_fn cmd_fn;
	void *cmd_arg;
	const char *cmd_client; /* the request's topic level, during cmd_fn */

	/* database */
	PGconn *pg;
	enum db_state dstate;
	enum db_op op;
	unsigned op_gen;
	bool locked; /* holds the outbox advisory lock */
	struct event *d_ev, *d_wev, *d_retry, *d_poll;
	int d_fd;
	short d_what;
	int d_backoff_ms;
	time_t d_since;
	bool need_read;
	int64_t cursor; /* highest id read since the last reset */
	struct timespec last_count;
	size_t read_rows; /* rows the current read asked for */
	size_t ndelete;   /* slots in the DELETE under way */

	/* window */
	struct slot *win;
	size_t nwin, wcap, chunk;
	int poll_ms;
	int64_t *mid_row; /* [65536] */

	/* figures */
	struct publish_stats st;
	struct metric *mx_published, *mx_acked, *mx_depth, *mx_connected, *mx_window, *mx_commands,
	    *mx_connects;
};

static void mqtt_connect(struct publish *p);
static void mqtt_lost(struct publish *p, const char *why);
static void mqtt_update_write(struct publish *p);
static void db_connect_start(struct publish *p);
static void db_lost(struct publish *p, const char *why);
static void db_kick(struct publish *p);

static double
ms_since(const struct timespec *t)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - t->tv_sec) * 1e3 + (double)(now.tv_nsec - t->tv_nsec) / 1e6;
}

static void
backoff_schedule(struct event *ev, int *backoff_ms)
{
	struct timeval tv;
	int ms = *backoff_ms;

	/* Up to a quarter of jitter, so that a fleet of daemons does not
	 * come back at the broker in step. */
	ms += (int)((unsigned)random() % (unsigned)(ms / 4 + 1));
	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	event_add(ev, &tv);
	*backoff_ms = *backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : *backoff_ms * 2;
}

/* ---- window ----------------------------------------------------------------- */

/* Index of the first slot with id >= id. */
static size_t
win_lower(const struct publish *p, int64_t id)
{
	size_t lo = 0, hi = p->nwin;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (p->win[mid].id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static struct slot *
win_find(struct publish *p, int64_t id)
{
	size_t i = win_lower(p, id);

	return i < p->nwin && p->win[i].id == id ? &p->win[i] : NULL;
}

static void
win_insert(struct publish *p, int64_t id, enum slot_state s)
{
	size_t i = win_lower(p, id);

	memmove(&p->win[i + 1], &p->win[i], (p->nwin - i) * sizeof(p->win[0]));
	p->win[i].id = id;
	p->win[i].state = (uint8_t)s;
	p->nwin++;
}

/* Drops every slot in state s, keeping the order of the rest. */
static size_t
win_remove(struct publish *p, enum slot_state s)
{
	size_t j = 0, n = p->nwin;

	for (size_t i = 0; i < n; i++)
		if (p->win[i].state != s)
			p->win[j++] = p->win[i];
	p->nwin = j;
	return n - j;
}

static size_t
win_count(const struct publish *p, enum slot_state s)
{
	size_t n = 0;

	for (size_t i = 0; i < p->nwin; i++)
		n += p->win[i].state == s;
	return n;
}

static void
set_gauges(struct publish *p)
{
	p->st.window = p->nwin;
	metric_set(p->mx_window, (double)p->nwin);
	metric_set(p->mx_connected, p->mstate == MQTT_UP ? 1 : 0);
}

/* ---- broker ------------------------------------------------------------------ */

/* The inbound topics: every client's own request topic, and the shared one
 * unless [mqtt] shared_requests is off. */
static void
request_topics(struct publish *p)
{
	message_command_request_topic(&p->cfg, p->request_topic, sizeof(p->request_topic));
	if ((size_t)snprintf(p->client_topic, sizeof(p->client_topic), "%s/+", p->request_topic) >=
	    sizeof(p->client_topic))
		p->client_topic[0] = '\0';
}

static void
requests_subscribe(struct publish *p, bool on)
{
	if (on) {
		if (p->client_topic[0] != '\0')
			mosquitto_subscribe(p->mosq, NULL, p->client_topic, 1);
		if (p->cfg.mqtt.shared_requests)
			mosquitto_subscribe(p->mosq, NULL, p->request_topic, 1);
	} else {
		if (p->client_topic[0] != '\0')
			mosquitto_unsubscribe(p->mosq, NULL, p->client_topic);
		mosquitto_unsubscribe(p->mosq, NULL, p->request_topic);
	}
}

static void
on_connect(struct mosquitto *m, void *arg, int rc)
{
	struct publish *p = arg;

	(void)m;
	if (rc != 0) {
		log_warnx("mqtt: broker %s:%d refused the connection: %s", p->cfg.mqtt.host,
		          p->cfg.mqtt.port, mosquitto_connack_string(rc));
		p->mqtt_dead = true;
		return;
	}
	p->mstate = MQTT_UP;
	p->m_backoff_ms = BACKOFF_MIN_MS;
	p->m_since = time(NULL);
	metric_inc(p->mx_connects);
	log_notice("mqtt: connected to %s:%d as %s", p->cfg.mqtt.host, p->cfg.mqtt.port,
	           p->cfg.mqtt.client_id);
	if (p->cmd_fn != NULL)
		requests_subscribe(p, true);
	p->need_read = true;
}

static void
on_disconnect(struct mosquitto *m, void *arg, int rc)
{
	struct publish *p = arg;

	(void)m;
	(void)rc;
	p->mqtt_dead = true;
}

static void
on_publish(struct mosquitto *m, void *arg, int mid)
{
	struct publish *p = arg;
	struct slot *s;
	int64_t id;

	(void)m;
	if (mid < 0 || mid > 65535 || (id = p->mid_row[mid]) == 0)
		return; /* QoS 0 (already counted) or from before a reconnect */
	p->mid_row[mid] = 0;
	if ((s = win_find(p, id)) == NULL || s->state != SLOT_SENT)
		return;
	s->state = SLOT_ACKED;
	p->st.acknowledged++;
	metric_inc(p->mx_acked);
}

static void
on_message(struct mosquitto *m, void *arg, const struct mosquitto_message *msg)
{
	struct publish *p = arg;
	struct message_command_request req;
	size_t plen = strlen(p->request_topic);
	const char *client = NULL;
	int rc;

	(void)m;
	if (msg->topic == NULL || strncmp(msg->topic, p->request_topic, plen) != 0)
		return;
	if (msg->topic[plen] == '/') {
		/*
		 * <prefix>/command/request/<client>: the level names the publisher
		 * because the broker lets each client write its own topic only (the
		 * ACL pattern in the README).  One level, and no ':' in it, so that
		 * it can never read like the shared topic's "mqtt:request:<id>".
		 */
		client = msg->topic + plen + 1;
		if (*client == '\0' || strchr(client, '/') != NULL || strchr(client, ':') != NULL) {
			metric_inc(p->mx_commands, "malformed");
			log_warnx("mqtt: %s: ignoring a request on a topic that names no client",
			          msg->topic);
			return;
		}
	} else if (msg->topic[plen] != '\0' || !p->cfg.mqtt.shared_requests) {
		return;
	}
	p->st.commands++;
	if ((rc = message_command_request_decode(msg->payload, (size_t)msg->payloadlen, &req)) !=
	    0) {
		metric_inc(p->mx_commands, "malformed");
		log_warnx("mqtt: %s: ignoring a request that is no valid CommandRequest (%d bytes)",
		          msg->topic, msg->payloadlen);
		return;
	}
	metric_inc(p->mx_commands, "accepted");
	log_info("mqtt: command request %s from %s: %s for %zu meter(s), first %s",
	         req.request_id[0] != '\0' ? req.request_id : "(no id)",
	         client != NULL ? client : "the shared topic", req.kind, req.nmeters, req.meters[0]);
	if (p->cmd_fn != NULL) {
		p->cmd_client = client;
		p->cmd_fn(&req, p->cmd_arg);
		p->cmd_client = NULL;
	}
	message_command_request_free(&req);
}

/* After every call into libmosquitto: act on what its callbacks noticed. */
static void
mqtt_after(struct publish *p, int rc, const char *what)
{
	char why[128];

	if (p->mqtt_dead || rc != MOSQ_ERR_SUCCESS) {
		if (rc == MOSQ_ERR_ERRNO)
			snprintf(why, sizeof(why), "%s: %s", what, strerror(errno));
		else if (rc != MOSQ_ERR_SUCCESS)
			snprintf(why, sizeof(why), "%s: %s", what, mosquitto_strerror(rc));
		else
			snprintf(why, sizeof(why), "connection closed");
		mqtt_lost(p, why);
		return;
	}
	mqtt_update_write(p);
	set_gauges(p);
	db_kick(p);
}

static void
mqtt_update_write(struct publish *p)
{
	if (p->mosq != NULL && p->m_wev != NULL && mosquitto_want_write(p->mosq))
		event_add(p->m_wev, NULL);
}

static void
mqtt_read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct publish *p = arg;

	(void)fd;
	(void)what;
	mqtt_after(p, mosquitto_loop_read(p->mosq, 1), "read");
}

static void
mqtt_write_cb(evutil_socket_t fd, short what, void *arg)
{
	struct publish *p = arg;

	int rc = MOSQ_ERR_SUCCESS;

	(void)fd;
	(void)what;
	/* While a TLS handshake is under way only loop_read advances it,
	 * whichever way the socket is waiting; loop_write would do nothing
	 * and the write event would fire again at once. */
	if (p->mstate == MQTT_CONNECTING && p->tls)
		rc = mosquitto_loop_read(p->mosq, 1);
	if (rc == MOSQ_ERR_SUCCESS && !p->mqtt_dead)
		rc = mosquitto_loop_write(p->mosq, 1);
	mqtt_after(p, rc, "write");
}

static void
mqtt_misc_cb(evutil_socket_t fd, short what, void *arg)
{
	struct publish *p = arg;

	(void)fd;
	(void)what;
	if (p->mosq == NULL)
		return;
	if (p->mstate == MQTT_CONNECTING && time(NULL) - p->m_since > CONNECT_TIMEOUT_S) {
		mqtt_lost(p, "no CONNACK in time");
		return;
	}
	mqtt_after(p, mosquitto_loop_misc(p->mosq), "keep-alive");
}

static void
mqtt_retry_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	mqtt_connect(arg);
}

static void
mqtt_teardown(struct publish *p)
{
	if (p->m_rev != NULL)
		event_free(p->m_rev);
	if (p->m_wev != NULL)
		event_free(p->m_wev);
	p->m_rev = p->m_wev = NULL;
	if (p->mosq != NULL)
		mosquitto_destroy(p->mosq);
	p->mosq = NULL;
	p->mstate = MQTT_IDLE;
	p->mqtt_dead = false;
}

static void
mqtt_lost(struct publish *p, const char *why)
{
	size_t dropped;

	if (p->mstate == MQTT_UP)
		log_warnx("mqtt: lost the broker %s:%d (%s); retrying", p->cfg.mqtt.host,
		          p->cfg.mqtt.port, why);
	else
		log_debug("mqtt: cannot reach %s:%d (%s)", p->cfg.mqtt.host, p->cfg.mqtt.port, why);
	if (p->mstate == MQTT_UP)
		p->m_since = time(NULL);
	mqtt_teardown(p);
	/* What the broker did not acknowledge goes out again on the next
	 * connection: read it anew from the outbox. */
	dropped = win_remove(p, SLOT_SENT);
	memset(p->mid_row, 0, 65536 * sizeof(p->mid_row[0]));
	p->cursor = 0;
	p->gen++;
	if (dropped > 0)
		log_info("mqtt: %zu unacknowledged message(s) will be published again", dropped);
	set_gauges(p);
	if (p->started)
		backoff_schedule(p->m_retry, &p->m_backoff_ms);
}

static int
mqtt_setup(struct publish *p)
{
	const struct config *c = &p->cfg;
	int rc;

	if ((p->mosq = mosquitto_new(c->mqtt.client_id, true, p)) == NULL) {
		log_warn("mqtt: mosquitto_new");
		return -1;
	}
	mosquitto_connect_callback_set(p->mosq, on_connect);
	mosquitto_disconnect_callback_set(p->mosq, on_disconnect);
	mosquitto_publish_callback_set(p->mosq, on_publish);
	mosquitto_message_callback_set(p->mosq, on_message);
	/* The library's own limit matches the window, so it never holds
	 * back a PUBLISH that the window let through. */
	mosquitto_max_inflight_messages_set(p->mosq, (unsigned)p->wcap);
	mosquitto_int_option(p->mosq, MOSQ_OPT_TCP_NODELAY, 1);
	if (c->mqtt.username[0] != '\0' &&
	    (rc = mosquitto_username_pw_set(p->mosq, c->mqtt.username,
	                                    p->password[0] != '\0' ? p->password : NULL)) !=
	        MOSQ_ERR_SUCCESS) {
		log_warnx("mqtt: username: %s", mosquitto_strerror(rc));
		return -1;
	}
	if (c->mqtt.tls_ca[0] != '\0' || c->mqtt.tls_cert[0] != '\0') {
		rc = mosquitto_tls_set(p->mosq, c->mqtt.tls_ca[0] != '\0' ? c->mqtt.tls_ca : NULL,
		                       c->mqtt.tls_ca[0] != '\0' ? NULL : "/etc/ssl/certs",
		                       c->mqtt.tls_cert[0] != '\0' ? c->mqtt.tls_cert : NULL,
		                       c->mqtt.tls_key[0] != '\0' ? c->mqtt.tls_key : NULL, NULL);
		if (rc != MOSQ_ERR_SUCCESS) {
			log_warnx("mqtt: TLS setup: %s", mosquitto_strerror(rc));
			return -1;
		}
		p->tls = true;
	}
	return 0;
}

static void
mqtt_connect(struct publish *p)
{
	const struct config *c = &p->cfg;
	int rc, fd;

	if (p->mosq != NULL || !p->started)
		return;
	if (mqtt_setup(p) != 0) {
		mqtt_teardown(p);
		backoff_schedule(p->m_retry, &p->m_backoff_ms);
		return;
	}
	p->mstate = MQTT_CONNECTING;
	if (p->m_since == 0)
		p->m_since = time(NULL);
	/* Name resolution here is getaddrinfo(); a broker named in the
	 * config is expected to resolve locally (hosts file, or an address). */
	rc = mosquitto_connect_async(p->mosq, c->mqtt.host, c->mqtt.port, KEEPALIVE_S);
	if (rc != MOSQ_ERR_SUCCESS || (fd = mosquitto_socket(p->mosq)) < 0) {
		mqtt_lost(p, rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc));
		return;
	}
	p->m_rev = event_new(p->base, fd, EV_READ | EV_PERSIST, mqtt_read_cb, p);
	p->m_wev = event_new(p->base, fd, EV_WRITE, mqtt_write_cb, p);
	if (p->m_rev == NULL || p->m_wev == NULL) {
		mqtt_lost(p, "out of memory");
		return;
	}
	event_add(p->m_rev, NULL);
	/* The non-blocking connect completes when the socket turns writable. */
	event_add(p->m_wev, NULL);
}

/* Publishes one row; false when the broker connection is gone. */
static bool
mqtt_publish_row(struct publish *p, int64_t id, const char *topic, const void *payload, size_t len,
                 int qos, bool retain)
{
	int mid = 0, rc;

	if (len > INT32_MAX) {
		log_warnx("mqtt: outbox row %" PRId64 " is too large (%zu bytes); dropping it", id,
		          len);
		win_insert(p, id, SLOT_ACKED);
		return true;
	}
	rc = mosquitto_publish(p->mosq, &mid, topic, (int)len, payload, qos, retain);
	if (rc == MOSQ_ERR_INVAL || rc == MOSQ_ERR_PAYLOAD_SIZE || rc == MOSQ_ERR_MALFORMED_UTF8 ||
	    rc == MOSQ_ERR_QOS_NOT_SUPPORTED) {
		/* A row no broker will ever take must not block the rest. */
		log_warnx("mqtt: outbox row %" PRId64 " (topic %s) cannot be published: %s; "
		          "dropping it",
		          id, topic, mosquitto_strerror(rc));
		win_insert(p, id, SLOT_ACKED);
		return true;
	}
	if (rc != MOSQ_ERR_SUCCESS || p->mqtt_dead)
		return false;
	p->st.published++;
	metric_inc(p->mx_published);
	if (qos == 0) {
		/* No PUBACK will come: handed over is all QoS 0 promises. */
		win_insert(p, id, SLOT_ACKED);
		p->st.acknowledged++;
		metric_inc(p->mx_acked);
	} else {
		win_insert(p, id, SLOT_SENT);
		p->mid_row[mid & 0xffff] = id;
	}
	return true;
}

/* ---- database ------------------------------------------------------------------ */

static void db_event_cb(evutil_socket_t fd, short what, void *arg);
static void db_write_cb(evutil_socket_t fd, short what, void *arg);

/* Watch the libpq socket for `what` (persistent read, or one write). */
static void
db_watch(struct publish *p, short what)
{
	int fd = PQsocket(p->pg);

	if (p->d_ev != NULL && (fd != p->d_fd || what != p->d_what)) {
		event_free(p->d_ev);
		p->d_ev = NULL;
	}
	if (p->d_ev == NULL) {
		p->d_ev = event_new(p->base, fd, what | EV_PERSIST, db_event_cb, p);
		p->d_fd = fd;
		p->d_what = what;
		if (p->d_ev == NULL || event_add(p->d_ev, NULL) != 0)
			db_lost(p, "cannot watch the socket");
	}
}

static void
db_teardown(struct publish *p)
{
	if (p->d_ev != NULL)
		event_free(p->d_ev);
	p->d_ev = NULL;
	if (p->d_wev != NULL)
		event_free(p->d_wev);
	p->d_wev = NULL;
	if (p->pg != NULL)
		PQfinish(p->pg);
	p->pg = NULL;
	p->dstate = DB_IDLE;
	p->op = OP_NONE;
	p->locked = false;
	p->st.draining_db = false;
}

static void
db_lost(struct publish *p, const char *why)
{
	char msg[DB_ERR_MAX];

	snprintf(msg, sizeof(msg), "%s", why);
	/* libpq's messages end with a newline. */
	msg[strcspn(msg, "\n")] = '\0';
	if (p->dstate == DB_UP)
		log_warnx("mqtt: outbox database connection lost (%s); retrying", msg);
	else
		log_debug("mqtt: outbox database: %s", msg);
	if (p->dstate == DB_UP)
		p->d_since = time(NULL);
	db_teardown(p);
	/* A DELETE whose outcome is unknown is simply sent again. */
	for (size_t i = 0; i < p->nwin; i++)
		if (p->win[i].state == SLOT_DELETING)
			p->win[i].state = SLOT_ACKED;
	p->ndelete = 0;
	p->st.db_up = false;
	if (p->started)
		backoff_schedule(p->d_retry, &p->d_backoff_ms);
}

static void
db_flush(struct publish *p)
{
	int rc = PQflush(p->pg);

	if (rc < 0)
		db_lost(p, PQerrorMessage(p->pg));
	else if (rc > 0)
		event_add(p->d_wev, NULL);
}

static bool
db_send(struct publish *p, enum db_op op, const char *sql, int nparams, const char *const *params,
        int binary)
{
	if (!PQsendQueryParams(p->pg, sql, nparams, NULL, params, NULL, NULL, binary)) {
		db_lost(p, PQerrorMessage(p->pg));
		return false;
	}
	p->op = op;
	p->op_gen = p->gen;
	db_flush(p);
	return true;
}

static void
db_send_delete(struct publish *p)
{
	/* "{id,id,...}": up to DELETE_MAX ids of at most 20 digits. */
	static char arr[DELETE_MAX * 21 + 3];
	const char *params[1] = {arr};
	size_t off = 0, n = 0;

	arr[off++] = '{';
	for (size_t i = 0; i < p->nwin && n < DELETE_MAX; i++) {
		if (p->win[i].state != SLOT_ACKED)
			continue;
		off += (size_t)snprintf(arr + off, sizeof(arr) - off, "%s%" PRId64,
		                        n > 0 ? "," : "", p->win[i].id);
		p->win[i].state = SLOT_DELETING;
		n++;
	}
	arr[off++] = '}';
	arr[off] = '\0';
	p->ndelete = n;
	db_send(p, OP_DELETE, "DELETE FROM outbox WHERE id = ANY($1::bigint[])", 1, params, 0);
}

static void
db_send_read(struct publish *p)
{
	char after[24], limit[24];
	const char *params[2] = {after, limit};
	size_t room = p->wcap - p->nwin;

	p->read_rows = room < p->chunk ? room : p->chunk;
	snprintf(after, sizeof(after), "%" PRId64, p->cursor);
	snprintf(limit, sizeof(limit), "%zu", p->read_rows);
	p->need_read = false;
	db_send(p, OP_READ,
	        "SELECT id, topic, payload, qos, retain FROM outbox WHERE id > $1::bigint "
	        "ORDER BY id LIMIT $2::integer",
	        2, params, 1);
}

/* Starts the next statement when the connection is free. */
static void
db_kick(struct publish *p)
{
	if (p->dstate != DB_UP || p->op != OP_NONE)
		return;
	if (!p->locked) {
		db_send(p, OP_LOCK, "SELECT pg_try_advisory_lock(" OUTBOX_LOCK_KEY ")", 0, NULL, 0);
		return;
	}
	/* Deleting first keeps the window free for new rows. */
	if (win_count(p, SLOT_ACKED) > 0) {
		db_send_delete(p);
		return;
	}
	if (p->need_read && !p->draining && p->mstate == MQTT_UP && p->nwin < p->wcap) {
		db_send_read(p);
		return;
	}
	if (ms_since(&p->last_count) >= DEPTH_EVERY_MS) {
		clock_gettime(CLOCK_MONOTONIC, &p->last_count);
		db_send(p, OP_COUNT, "SELECT count(*) FROM outbox", 0, NULL, 0);
	}
}

static uint64_t
be64(const char *s)
{
	const unsigned char *b = (const unsigned char *)s;
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v = v << 8 | b[i];
	return v;
}

static void
db_read_result(struct publish *p, PGresult *res)
{
	int n = PQntuples(res);
	char topic[MESSAGE_TOPIC_MAX];

	/* Rows read for a broker connection that has since been lost would
	 * move the cursor past rows that must go out again. */
	if (p->op_gen != p->gen || p->mstate != MQTT_UP)
		return;
	if (PQnfields(res) != 5 || PQfsize(res, 0) != 8 || PQfsize(res, 3) != 2 ||
	    PQfsize(res, 4) != 1) {
		log_warnx("mqtt: the outbox table has an unexpected shape");
		return;
	}
	for (int i = 0; i < n; i++) {
		int64_t id = (int64_t)be64(PQgetvalue(res, i, 0));
		const unsigned char *q = (const unsigned char *)PQgetvalue(res, i, 3);
		int qos = (int16_t)(q[0] << 8 | q[1]);
		bool retain = PQgetvalue(res, i, 4)[0] != 0;
		int tlen = PQgetlength(res, i, 1);

		p->cursor = id;
		if (win_find(p, id) != NULL)
			continue; /* acknowledged before a reconnect */
		if (tlen <= 0 || (size_t)tlen >= sizeof(topic)) {
			log_warnx("mqtt: outbox row %" PRId64 " has an empty or too long topic; "
			          "dropping it",
			          id);
			win_insert(p, id, SLOT_ACKED);
			continue;
		}
		memcpy(topic, PQgetvalue(res, i, 1), (size_t)tlen);
		topic[tlen] = '\0';
		if (!mqtt_publish_row(p, id, topic, PQgetvalue(res, i, 2),
		                      (size_t)PQgetlength(res, i, 2), qos < 0 || qos > 2 ? 1 : qos,
		                      retain)) {
			mqtt_after(p, MOSQ_ERR_CONN_LOST, "publish");
			return;
		}
	}
	/* A full chunk means more may be waiting. */
	if ((size_t)n == p->read_rows)
		p->need_read = true;
	mqtt_update_write(p);
	set_gauges(p);
}

static void
db_result(struct publish *p, PGresult *res)
{
	ExecStatusType s = PQresultStatus(res);
	size_t n;

	if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK) {
		log_warnx("mqtt: outbox statement failed: %s", PQresultErrorMessage(res));
		if (p->op == OP_DELETE)
			for (size_t i = 0; i < p->nwin; i++)
				if (p->win[i].state == SLOT_DELETING)
					p->win[i].state = SLOT_ACKED;
		return;
	}
	switch (p->op) {
	case OP_LOCK:
		p->locked = PQntuples(res) == 1 && PQgetvalue(res, 0, 0)[0] == 't';
		p->st.draining_db = p->locked;
		if (p->locked) {
			log_info("mqtt: draining the outbox");
			p->need_read = true;
		} else {
			log_debug("mqtt: another publisher drains the outbox; standing by");
		}
		break;
	case OP_READ:
		db_read_result(p, res);
		break;
	case OP_DELETE:
		n = win_remove(p, SLOT_DELETING);
		p->st.deleted += n;
		/* Keep the gauge moving between counts. */
		if (p->st.depth > 0) {
			p->st.depth = p->st.depth > (int64_t)n ? p->st.depth - (int64_t)n : 0;
			metric_set(p->mx_depth, (double)p->st.depth);
		}
		p->ndelete = 0;
		set_gauges(p);
		break;
	case OP_COUNT:
		if (PQntuples(res) == 1) {
			p->st.depth = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
			metric_set(p->mx_depth, (double)p->st.depth);
		}
		break;
	default:
		break;
	}
}

static void
db_input(struct publish *p)
{
	PGnotify *nt;
	PGresult *res;

	if (!PQconsumeInput(p->pg)) {
		db_lost(p, PQerrorMessage(p->pg));
		return;
	}
	while ((nt = PQnotifies(p->pg)) != NULL) {
		p->need_read = true;
		PQfreemem(nt);
	}
	while (p->op != OP_NONE && !PQisBusy(p->pg)) {
		if ((res = PQgetResult(p->pg)) == NULL) {
			p->op = OP_NONE;
			break;
		}
		db_result(p, res);
		PQclear(res);
		if (p->pg == NULL)
			return; /* lost while handling it */
	}
	db_kick(p);
}

static void
db_connected(struct publish *p)
{
	if (PQsetnonblocking(p->pg, 1) != 0) {
		db_lost(p, PQerrorMessage(p->pg));
		return;
	}
	/* The socket is final only now (libpq may try several addresses). */
	if ((p->d_wev = event_new(p->base, PQsocket(p->pg), EV_WRITE, db_write_cb, p)) == NULL) {
		db_lost(p, "out of memory");
		return;
	}
	p->dstate = DB_UP;
	p->st.db_up = true;
	p->d_backoff_ms = BACKOFF_MIN_MS;
	p->d_since = time(NULL);
	log_info("mqtt: outbox database connected");
	db_watch(p, EV_READ);
	if (p->pg != NULL)
		db_send(p, OP_LISTEN, "LISTEN " OUTBOX_CHANNEL, 0, NULL, 0);
}

static void
db_poll_connect(struct publish *p)
{
	switch (PQconnectPoll(p->pg)) {
	case PGRES_POLLING_READING:
		db_watch(p, EV_READ);
		break;
	case PGRES_POLLING_WRITING:
		db_watch(p, EV_WRITE);
		break;
	case PGRES_POLLING_OK:
		db_connected(p);
		break;
	default:
		db_lost(p, PQerrorMessage(p->pg));
		break;
	}
}

static void
db_event_cb(evutil_socket_t fd, short what, void *arg)
{
	struct publish *p = arg;

	(void)fd;
	(void)what;
	if (p->dstate == DB_CONNECTING)
		db_poll_connect(p);
	else if (p->dstate == DB_UP)
		db_input(p);
}

static void
db_write_cb(evutil_socket_t fd, short what, void *arg)
{
	struct publish *p = arg;

	(void)fd;
	(void)what;
	if (p->dstate == DB_UP)
		db_flush(p);
}

static void
db_connect_start(struct publish *p)
{
	const char *keys[] = {"dbname", "application_name", "client_encoding", NULL};
	const char *vals[] = {
	    db_conninfo(p->cfg.database.dsn[0] != '\0' ? p->cfg.database.dsn : NULL),
	    "ammd-publish", "UTF8", NULL};

	if (p->pg != NULL || !p->started)
		return;
	if (p->d_since == 0)
		p->d_since = time(NULL);
	p->pg = PQconnectStartParams(keys, vals, 1);
	if (p->pg == NULL || PQstatus(p->pg) == CONNECTION_BAD) {
		db_lost(p, p->pg != NULL ? PQerrorMessage(p->pg) : "out of memory");
		return;
	}
	p->dstate = DB_CONNECTING;
	/* libpq asks for a write wait first. */
	db_watch(p, EV_WRITE);
}

static void
db_retry_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	db_connect_start(arg);
}

static void
db_poll_cb(evutil_socket_t fd, short what, void *arg)
{
	struct publish *p = arg;

	(void)fd;
	(void)what;
	/* The fallback for a lost NOTIFY, and the retry of the lock. */
	p->need_read = true;
	db_kick(p);
}

/* ---- life ------------------------------------------------------------------------- */

static int
read_password(struct publish *p)
{
	char path[CONFIG_PATH_MAX];
	FILE *f;
	size_t n;

	p->password[0] = '\0';
	if (p->cfg.mqtt.password[0] != '\0') {
		snprintf(p->password, sizeof(p->password), "%s", p->cfg.mqtt.password);
		return 0;
	}
	if (p->cfg.mqtt.password_file[0] == '\0')
		return 0;
	if (config_credential_path(p->cfg.mqtt.password_file, path, sizeof(path)) == NULL) {
		log_warnx("mqtt: password_file: name too long");
		return -1;
	}
	if ((f = fopen(path, "r")) == NULL) {
		log_warn("mqtt: password_file %s", path);
		return -1;
	}
	if (fgets(p->password, sizeof(p->password), f) == NULL)
		p->password[0] = '\0';
	fclose(f);
	n = strcspn(p->password, "\r\n");
	p->password[n] = '\0';
	return 0;
}

struct publish *
publish_new(struct event_base *base, const struct config *cfg, struct metrics *metrics)
{
	struct publish *p;

	if ((p = calloc(1, sizeof(*p))) == NULL)
		return NULL;
	p->base = base;
	p->cfg = *cfg;
	p->wcap = WINDOW_DEFAULT;
	p->chunk = CHUNK_DEFAULT;
	p->poll_ms = POLL_MS_DEFAULT;
	p->m_backoff_ms = p->d_backoff_ms = BACKOFF_MIN_MS;
	p->st.depth = -1;
	p->d_fd = -1;
	if ((p->win = calloc(WINDOW_MAX, sizeof(*p->win))) == NULL ||
	    (p->mid_row = calloc(65536, sizeof(*p->mid_row))) == NULL)
		goto fail;
	if ((p->m_misc = event_new(base, -1, EV_PERSIST, mqtt_misc_cb, p)) == NULL ||
	    (p->m_retry = evtimer_new(base, mqtt_retry_cb, p)) == NULL ||
	    (p->d_retry = evtimer_new(base, db_retry_cb, p)) == NULL ||
	    (p->d_poll = event_new(base, -1, EV_PERSIST, db_poll_cb, p)) == NULL)
		goto fail;
	if (mosquitto_lib_init() != MOSQ_ERR_SUCCESS)
		goto fail;
	p->lib_init = true;
	request_topics(p);
	if (metrics != NULL) {
		p->mx_published = metrics_counter(
		    metrics, "ammd_mqtt_published_total",
		    "Outbox rows published to the broker (again after an outage).", NULL);
		p->mx_acked =
		    metrics_counter(metrics, "ammd_mqtt_acknowledged_total",
		                    "Publications the broker acknowledged (PUBACK).", NULL);
		p->mx_depth = metrics_gauge(metrics, "ammd_outbox_depth",
		                            "Rows waiting in the outbox at the last count.", NULL);
		p->mx_connected = metrics_gauge(metrics, "ammd_mqtt_connected",
		                                "1 while the broker connection is up.", NULL);
		p->mx_window =
		    metrics_gauge(metrics, "ammd_mqtt_inflight",
		                  "Rows published and not yet deleted from the outbox.", NULL);
		p->mx_commands =
		    metrics_counter(metrics, "ammd_mqtt_command_requests_total",
		                    "Command requests received over MQTT, by outcome.", "outcome");
		p->mx_connects = metrics_counter(metrics, "ammd_mqtt_connects_total",
		                                 "Successful connections to the broker.", NULL);
		metric_add(p->mx_published, 0);
		metric_add(p->mx_acked, 0);
		metric_set(p->mx_connected, 0);
	}
	return p;
fail:
	publish_free(p);
	return NULL;
}

void
publish_tune(struct publish *p, size_t window, size_t chunk, int poll_ms)
{
	if (window > 0)
		p->wcap = window > WINDOW_MAX ? WINDOW_MAX : window;
	if (chunk > 0)
		p->chunk = chunk;
	if (poll_ms > 0)
		p->poll_ms = poll_ms;
}

int
publish_start(struct publish *p)
{
	struct timeval misc = {1, 0};
	struct timeval poll = {p->poll_ms / 1000, (p->poll_ms % 1000) * 1000};

	if (read_password(p) != 0)
		return -1;
	p->started = true;
	event_add(p->m_misc, &misc);
	event_add(p->d_poll, &poll);
	db_connect_start(p);
	mqtt_connect(p);
	return 0;
}

static void
publish_stop_conns(struct publish *p)
{
	if (p->mosq != NULL && p->mstate == MQTT_UP) {
		/* A clean DISCONNECT, written out if the socket takes it now. */
		mosquitto_disconnect(p->mosq);
		mosquitto_loop_write(p->mosq, 1);
	}
	mqtt_teardown(p);
	db_teardown(p);
	p->nwin = 0; /* unacknowledged rows stay in the outbox */
}

void
publish_reload(struct publish *p, const struct config *cfg)
{
	bool mq = memcmp(&p->cfg.mqtt, &cfg->mqtt, sizeof(cfg->mqtt)) != 0;
	bool db = strcmp(p->cfg.database.dsn, cfg->database.dsn) != 0;

	p->cfg = *cfg;
	request_topics(p);
	if (!p->started || (!mq && !db))
		return;
	log_info("mqtt: configuration changed; reconnecting");
	if (read_password(p) != 0)
		log_warnx("mqtt: keeping the previous password");
	publish_stop_conns(p);
	memset(p->mid_row, 0, 65536 * sizeof(p->mid_row[0]));
	p->cursor = 0;
	p->gen++;
	p->m_backoff_ms = p->d_backoff_ms = BACKOFF_MIN_MS;
	db_connect_start(p);
	mqtt_connect(p);
}

void
publish_drain(struct publish *p)
{
	p->draining = true;
}

bool
publish_drained(const struct publish *p)
{
	if (p->mstate != MQTT_UP || p->dstate != DB_UP)
		return true;
	return p->nwin == 0;
}

void
publish_set_command_handler(struct publish *p, publish_command_fn fn, void *arg)
{
	bool was = p->cmd_fn != NULL;

	p->cmd_fn = fn;
	p->cmd_arg = arg;
	if (p->mosq == NULL || p->mstate != MQTT_UP)
		return; /* on_connect subscribes */
	if (fn != NULL && !was)
		requests_subscribe(p, true);
	else if (fn == NULL && was)
		requests_subscribe(p, false);
	mqtt_update_write(p);
}

const char *
publish_command_client(const struct publish *p)
{
	return p->cmd_client;
}

void
publish_get_stats(const struct publish *p, struct publish_stats *s)
{
	*s = p->st;
	s->window = p->nwin;
	s->broker_up = p->mstate == MQTT_UP;
	s->db_up = p->dstate == DB_UP;
}

void
publish_free(struct publish *p)
{
	if (p == NULL)
		return;
	p->started = false;
	publish_stop_conns(p);
	if (p->m_misc != NULL)
		event_free(p->m_misc);
	if (p->m_retry != NULL)
		event_free(p->m_retry);
	if (p->d_retry != NULL)
		event_free(p->d_retry);
	if (p->d_poll != NULL)
		event_free(p->d_poll);
	if (p->lib_init)
		mosquitto_lib_cleanup();
	free(p->win);
	free(p->mid_row);
	explicit_bzero(p->password, sizeof(p->password));
	free(p);
}

/* ---- the module ------------------------------------------------------------------- */

static int
publish_health(void *arg, char *detail, size_t len)
{
	const struct publish *p = arg;
	time_t now = time(NULL);

	if (p->mstate != MQTT_UP && now - p->m_since > UNHEALTHY_AFTER_S) {
		snprintf(detail, len, "broker %s:%d unreachable for %lld s", p->cfg.mqtt.host,
		         p->cfg.mqtt.port, (long long)(now - p->m_since));
		return -1;
	}
	if (p->dstate != DB_UP && now - p->d_since > UNHEALTHY_AFTER_S) {
		snprintf(detail, len, "outbox database unreachable for %lld s",
		         (long long)(now - p->d_since));
		return -1;
	}
	snprintf(detail, len, "outbox %lld, in flight %zu", (long long)p->st.depth, p->nwin);
	return 0;
}

static int
publish_mod_start(struct ammd *d)
{
	if (!d->cfg->mqtt.enabled) {
		log_info("mqtt: disabled");
		return 0;
	}
	if ((d->publish = publish_new(d->base, d->cfg, d->metrics)) == NULL) {
		log_warnx("mqtt: cannot set up the publisher");
		return -1;
	}
	if (publish_start(d->publish) != 0) {
		publish_free(d->publish);
		d->publish = NULL;
		return -1;
	}
	if (d->http != NULL)
		http_health_add(d->http, "mqtt", publish_health, d->publish);
	return 0;
}

static void
publish_mod_reload(struct ammd *d, const struct config *old, const struct config *cfg)
{
	(void)old;
	if (d->publish != NULL && !cfg->mqtt.enabled) {
		log_info("mqtt: disabled by the new configuration");
		if (d->http != NULL)
			http_health_remove(d->http, "mqtt");
		publish_free(d->publish);
		d->publish = NULL;
		return;
	}
	if (d->publish != NULL) {
		publish_reload(d->publish, cfg);
		return;
	}
	if (cfg->mqtt.enabled) {
		struct ammd tmp = *d;
		tmp.cfg = (struct config *)cfg;
		if (publish_mod_start(&tmp) == 0)
			d->publish = tmp.publish;
	}
}

static void
publish_mod_drain(struct ammd *d)
{
	if (d->publish != NULL)
		publish_drain(d->publish);
}

static bool
publish_mod_drained(struct ammd *d)
{
	return d->publish == NULL || publish_drained(d->publish);
}

static void
publish_mod_stop(struct ammd *d)
{
	if (d->publish == NULL)
		return;
	if (d->http != NULL)
		http_health_remove(d->http, "mqtt");
	publish_free(d->publish);
	d->publish = NULL;
}

const struct ammd_module publish_module = {
    .name = "publish",
    .start = publish_mod_start,
    .reload = publish_mod_reload,
    .drain = publish_mod_drain,
    .drained = publish_mod_drained,
    .stop = publish_mod_stop,
};
