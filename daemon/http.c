/*
 * http.c: GET /metrics and GET /healthz over evhttp (see http.h).
 *
 * The endpoint also watches the loop it runs on: a one-second timer notes
 * when it fired and how late, so /healthz can tell a loop that is turning
 * from one that answered this request after being stuck for a while, and
 * /metrics exports the lag.  Nothing here blocks; a health check reports
 * state its module already holds.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "ammd.h"
#include "config.h"
#include "http.h"
#include "json.h"
#include "log.h"
#include "metrics.h"

#define HTTP_MAX_CHECKS	  32
#define HTTP_TICK_SEC	  1
#define HTTP_STALL_SEC	  5.0 /* no tick for this long: the loop is stuck */

struct http_check {
	const char *name;
	http_health_fn fn;
	void *arg;
};

struct http {
	struct ammd *d;
	struct evhttp *eh;
	struct evhttp_bound_socket *sock;
	struct config_addr bound; /* what sock listens on */
	int port;
	struct event *tick;
	double last_tick; /* monotonic seconds */
	double lag;	  /* how late the last tick fired */
	double started;
	struct http_check checks[HTTP_MAX_CHECKS];
	size_t nchecks;
	struct metric *m_requests;
	struct metric *m_lag;
};

static double
mono_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void
http_tick(evutil_socket_t fd, short what, void *arg)
{
	struct http *h = arg;
	double now = mono_now();

	(void)fd;
	(void)what;
	h->lag = now - h->last_tick - HTTP_TICK_SEC;
	if (h->lag < 0)
		h->lag = 0;
	h->last_tick = now;
	metric_set(h->m_lag, h->lag);
}

static void
reply(struct http *h, struct evhttp_request *req, const char *path, int code, const char *reason,
    const char *ctype, const char *buf, size_t len)
{
	struct evbuffer *out = evhttp_request_get_output_buffer(req);
	char codestr[8];

	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", ctype);
	evhttp_add_header(evhttp_request_get_output_headers(req), "Cache-Control", "no-store");
	if (buf != NULL)
		evbuffer_add(out, buf, len);
	evhttp_send_reply(req, code, reason, NULL);
	snprintf(codestr, sizeof(codestr), "%d", code);
	metric_inc(h->m_requests, path, codestr);
}

static void
serve_metrics(struct http *h, struct evhttp_request *req)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f;

	if ((f = open_memstream(&buf, &len)) == NULL) {
		log_warn("http: open_memstream");
		evhttp_send_error(req, HTTP_INTERNAL, NULL);
		return;
	}
	/* Count this request before rendering so the scrape sees itself. */
	metric_inc(h->m_requests, "/metrics", "200");
	metrics_render(h->d->metrics, f);
	if (fclose(f) != 0) {
		free(buf);
		evhttp_send_error(req, HTTP_INTERNAL, NULL);
		return;
	}
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
	    "text/plain; version=0.0.4; charset=utf-8");
	evhttp_add_header(evhttp_request_get_output_headers(req), "Cache-Control", "no-store");
	evbuffer_add(evhttp_request_get_output_buffer(req), buf, len);
	evhttp_send_reply(req, HTTP_OK, "OK", NULL);
	free(buf);
}

static void
serve_healthz(struct http *h, struct evhttp_request *req)
{
	char detail[256];
	char *buf = NULL;
	size_t len = 0;
	struct json j;
	bool ok = true, loop_ok;
	double now = mono_now();
	FILE *f;

	if ((f = open_memstream(&buf, &len)) == NULL) {
		evhttp_send_error(req, HTTP_INTERNAL, NULL);
		return;
	}
	loop_ok = now - h->last_tick < HTTP_STALL_SEC;
	ok = loop_ok && !h->d->draining;

	json_init(&j, f, false);
	json_obj_begin(&j, NULL);
	/* The checks come first: the overall status depends on them. */
	json_obj_begin(&j, "checks");
	json_obj_begin(&j, "loop");
	json_bool(&j, "ok", loop_ok);
	json_int(&j, "lag_ms", (int64_t)(h->lag * 1000));
	json_obj_end(&j);
	for (size_t i = 0; i < h->nchecks; i++) {
		detail[0] = '\0';
		int r = h->checks[i].fn(h->checks[i].arg, detail, sizeof(detail));
		detail[sizeof(detail) - 1] = '\0';
		json_obj_begin(&j, h->checks[i].name);
		json_bool(&j, "ok", r == 0);
		if (detail[0] != '\0')
			json_str(&j, "detail", detail);
		json_obj_end(&j);
		if (r != 0)
			ok = false;
	}
	json_obj_end(&j);
	json_str(&j, "status", h->d->draining ? "draining" : ok ? "ok" : "failing");
	json_str(&j, "version", AMMD_VERSION);
	if (h->d->cfg != NULL)
		json_str(&j, "instance_id", h->d->cfg->daemon.instance_id);
	json_int(&j, "uptime_s", (int64_t)(now - h->started));
	json_obj_end(&j);
	json_end(&j);
	if (fclose(f) != 0) {
		free(buf);
		evhttp_send_error(req, HTTP_INTERNAL, NULL);
		return;
	}
	reply(h, req, "/healthz", ok ? HTTP_OK : 503, ok ? "OK" : "Service Unavailable",
	    "application/json", buf, len);
	free(buf);
}

static void
http_request(struct evhttp_request *req, void *arg)
{
	struct http *h = arg;
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *path = uri != NULL ? evhttp_uri_get_path(uri) : NULL;
	static const char nf[] = "not found\n";

	if (path == NULL)
		path = "";
	if (strcmp(path, "/metrics") == 0)
		serve_metrics(h, req);
	else if (strcmp(path, "/healthz") == 0)
		serve_healthz(h, req);
	else
		reply(h, req, "other", HTTP_NOTFOUND, "Not Found", "text/plain", nf, sizeof(nf) - 1);
}

struct http *
http_new(struct ammd *d)
{
	static const char nameset[] = "path,code";
	struct http *h;

	if ((h = calloc(1, sizeof(*h))) == NULL)
		return NULL;
	h->d = d;
	if ((h->eh = evhttp_new(d->base)) == NULL)
		goto fail;
	evhttp_set_allowed_methods(h->eh, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);
	evhttp_set_timeout(h->eh, 10);
	evhttp_set_max_headers_size(h->eh, 8192);
	evhttp_set_max_body_size(h->eh, 0);
	evhttp_set_gencb(h->eh, http_request, h);

	if ((h->tick = event_new(d->base, -1, EV_PERSIST, http_tick, h)) == NULL)
		goto fail;
	struct timeval tv = {HTTP_TICK_SEC, 0};
	event_add(h->tick, &tv);
	h->started = h->last_tick = mono_now();

	h->m_requests = metrics_counter(d->metrics, "ammd_http_requests_total",
	    "HTTP requests answered, by path and status code.", nameset);
	h->m_lag = metrics_gauge(d->metrics, "ammd_event_loop_lag_seconds",
	    "How late the event loop's one-second timer last fired.", NULL);
	return h;
fail:
	http_free(h);
	return NULL;
}

void
http_free(struct http *h)
{
	if (h == NULL)
		return;
	if (h->tick != NULL)
		event_free(h->tick);
	if (h->eh != NULL)
		evhttp_free(h->eh);
	free(h);
}

int
http_health_add(struct http *h, const char *name, http_health_fn fn, void *arg)
{
	if (h == NULL || h->nchecks == HTTP_MAX_CHECKS || strcmp(name, "loop") == 0)
		return -1;
	for (size_t i = 0; i < h->nchecks; i++)
		if (strcmp(h->checks[i].name, name) == 0)
			return -1;
	h->checks[h->nchecks++] = (struct http_check){name, fn, arg};
	return 0;
}

void
http_health_remove(struct http *h, const char *name)
{
	if (h == NULL)
		return;
	for (size_t i = 0; i < h->nchecks; i++)
		if (strcmp(h->checks[i].name, name) == 0) {
			memmove(&h->checks[i], &h->checks[i + 1],
			    (h->nchecks - i - 1) * sizeof(h->checks[0]));
			h->nchecks--;
			return;
		}
}

int
http_port(const struct http *h)
{
	return h != NULL && h->sock != NULL ? h->port : 0;
}

/* Listen on a (closing what was bound before only once the new one is up,
 * so a bad address in a reload leaves the old listener working). */
static int
http_bind(struct http *h, const struct config_addr *a)
{
	struct evhttp_bound_socket *s = NULL;
	char name[CONFIG_STR_MAX + 16];

	config_addr_format(a, name, sizeof(name));
	if (a->host[0] != '\0') {
		if ((s = evhttp_bind_socket_with_handle(h->eh, a->host, a->port)) == NULL) {
			log_warn("http: cannot listen on %s", name);
			return -1;
		}
	} else
		log_info("http: endpoint turned off (http_listen is empty)");
	if (h->sock != NULL)
		evhttp_del_accept_socket(h->eh, h->sock);
	h->sock = s;
	h->bound = *a;
	h->port = a->port;
	if (s != NULL) {
		/* Port 0 asks the kernel for one: learn which. */
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		if (getsockname(evhttp_bound_socket_get_fd(s), (struct sockaddr *)&ss, &sl) == 0)
			h->port = ntohs(ss.ss_family == AF_INET6
				? ((struct sockaddr_in6 *)&ss)->sin6_port
				: ((struct sockaddr_in *)&ss)->sin_port);
		struct config_addr real = *a;
		real.port = (uint16_t)h->port;
		log_info("http: listening on %s", config_addr_format(&real, name, sizeof(name)));
	}
	return 0;
}

static int
http_start(struct ammd *d)
{
	return http_bind(d->http, &d->cfg->daemon.http_listen);
}

static void
http_reload(struct ammd *d, const struct config *old, const struct config *cfg)
{
	(void)old;
	if (memcmp(&d->http->bound, &cfg->daemon.http_listen, sizeof(cfg->daemon.http_listen)) != 0)
		(void)http_bind(d->http, &cfg->daemon.http_listen);
}

static void
http_stop(struct ammd *d)
{
	if (d->http != NULL && d->http->sock != NULL) {
		evhttp_del_accept_socket(d->http->eh, d->http->sock);
		d->http->sock = NULL;
	}
}

/* /healthz keeps answering (503) while the others drain, so it has nothing
 * to drain itself. */
const struct ammd_module http_module = {
	.name = "http",
	.start = http_start,
	.reload = http_reload,
	.stop = http_stop,
};
