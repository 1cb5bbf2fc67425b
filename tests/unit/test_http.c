/*
 * test_http.c: the HTTP endpoint (daemon/http.c) on a real loopback socket
 * and event loop: /healthz follows the registered health checks and the
 * drain flag, /metrics serves the registry in the Prometheus text format,
 * anything else is 404 or refused.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>

#include "ammd.h"
#include "config.h"
#include "http.h"
#include "metrics.h"

struct reply {
	struct event_base *base;
	int code;
	char body[8192];
	char ctype[128];
};

static void
on_reply(struct evhttp_request *req, void *arg)
{
	struct reply *r = arg;

	if (req != NULL) {
		struct evbuffer *b = evhttp_request_get_input_buffer(req);
		size_t n = evbuffer_get_length(b);
		const char *ct = evhttp_find_header(evhttp_request_get_input_headers(req),
		    "Content-Type");
		if (n >= sizeof(r->body))
			n = sizeof(r->body) - 1;
		r->code = evhttp_request_get_response_code(req);
		evbuffer_remove(b, r->body, n);
		r->body[n] = '\0';
		snprintf(r->ctype, sizeof(r->ctype), "%s", ct != NULL ? ct : "");
	}
	event_base_loopbreak(r->base);
}

/* One request on the daemon's own loop; returns the status code. */
static int
request(struct ammd *d, enum evhttp_cmd_type cmd, const char *path, struct reply *r)
{
	struct evhttp_connection *c;
	struct evhttp_request *req;

	memset(r, 0, sizeof(*r));
	r->base = d->base;
	c = evhttp_connection_base_new(d->base, NULL, "127.0.0.1", (uint16_t)http_port(d->http));
	cr_assert_not_null(c);
	evhttp_connection_set_timeout(c, 5);
	req = evhttp_request_new(on_reply, r);
	evhttp_add_header(evhttp_request_get_output_headers(req), "Host", "localhost");
	cr_assert_eq(evhttp_make_request(c, req, cmd, path), 0);
	event_base_dispatch(d->base);
	evhttp_connection_free(c);
	return r->code;
}

static int store_ok;

static int
store_check(void *arg, char *detail, size_t len)
{
	(void)arg;
	if (store_ok)
		return 0;
	snprintf(detail, len, "database \"down\"");
	return -1;
}

static struct ammd d;

static void
setup(void)
{
	memset(&d, 0, sizeof(d));
	d.base = event_base_new();
	d.metrics = metrics_new();
	d.cfg = malloc(sizeof(*d.cfg));
	config_defaults(d.cfg);
	strcpy(d.cfg->daemon.instance_id, "unit");
	d.cfg->daemon.http_listen.port = 0; /* any free port */
	d.http = http_new(&d);
	cr_assert_not_null(d.http);
	cr_assert_eq(http_module.start(&d), 0);
	cr_assert_gt(http_port(d.http), 0);
}

static void
teardown(void)
{
	http_module.stop(&d);
	http_free(d.http);
	metrics_free(d.metrics);
	config_free(d.cfg);
	event_base_free(d.base);
}

struct health_case {
	bool registered, healthy, draining;
	int code;
	const char *says;
};

static const struct health_case health_cases[] = {
	{false, false, false, 200, "\"status\":\"ok\""},
	{true, true, false, 200, "\"store\":{\"ok\":true}"},
	{true, false, false, 503, "\"store\":{\"ok\":false,\"detail\":\"database \\\"down\\\"\"}"},
	{true, false, false, 503, "\"status\":\"failing\""},
	{true, true, true, 503, "\"status\":\"draining\""},
	{false, false, false, 200, "\"instance_id\":\"unit\""},
	{false, false, false, 200, "\"loop\":{\"ok\":true"},
};

Test(http, healthz_follows_checks_and_drain, .init = setup, .fini = teardown)
{
	struct reply r;

	for (size_t i = 0; i < sizeof(health_cases) / sizeof(health_cases[0]); i++) {
		const struct health_case *t = &health_cases[i];
		if (t->registered)
			cr_assert_eq(http_health_add(d.http, "store", store_check, NULL), 0);
		store_ok = t->healthy;
		d.draining = t->draining;
		cr_assert_eq(request(&d, EVHTTP_REQ_GET, "/healthz", &r), t->code, "case %zu: %d %s",
		    i, r.code, r.body);
		cr_assert_not_null(strstr(r.body, t->says), "case %zu: %s", i, r.body);
		cr_assert_str_eq(r.ctype, "application/json");
		http_health_remove(d.http, "store");
	}
}

Test(http, health_registration, .init = setup, .fini = teardown)
{
	cr_assert_eq(http_health_add(d.http, "a", store_check, NULL), 0);
	cr_assert_eq(http_health_add(d.http, "a", store_check, NULL), -1);
	cr_assert_eq(http_health_add(d.http, "loop", store_check, NULL), -1);
	http_health_remove(d.http, "a");
	cr_assert_eq(http_health_add(d.http, "a", store_check, NULL), 0);
}

Test(http, metrics_and_other_paths, .init = setup, .fini = teardown)
{
	struct reply r;
	struct metric *m = metrics_counter(d.metrics, "t_total", "T.", "k");

	metric_inc(m, "v");
	cr_assert_eq(request(&d, EVHTTP_REQ_GET, "/metrics", &r), 200);
	cr_assert_str_eq(r.ctype, "text/plain; version=0.0.4; charset=utf-8");
	cr_assert_not_null(strstr(r.body, "\nt_total{k=\"v\"} 1\n"), "%s", r.body);
	cr_assert_not_null(strstr(r.body, "ammd_http_requests_total{path=\"/metrics\",code=\"200\"} 1"));

	cr_assert_eq(request(&d, EVHTTP_REQ_GET, "/metrics?x=1", &r), 200);
	cr_assert_eq(request(&d, EVHTTP_REQ_GET, "/", &r), 404);
	cr_assert_eq(request(&d, EVHTTP_REQ_GET, "/healthz/../x", &r), 404);
	cr_assert_neq(request(&d, EVHTTP_REQ_POST, "/metrics", &r), 200);
	cr_assert_eq(request(&d, EVHTTP_REQ_HEAD, "/healthz", &r), 200);
	cr_assert_str_eq(r.body, "");
}

Test(http, reload_moves_the_listener, .init = setup, .fini = teardown)
{
	struct config next = *d.cfg;
	struct reply r;
	int before = http_port(d.http);

	/* The same address: nothing changes. */
	http_module.reload(&d, d.cfg, &next);
	cr_assert_eq(http_port(d.http), before);
	/* Turned off, then on again on another port. */
	next.daemon.http_listen.host[0] = '\0';
	http_module.reload(&d, d.cfg, &next);
	cr_assert_eq(http_port(d.http), 0);
	*d.cfg = next;
	next = *d.cfg;
	strcpy(next.daemon.http_listen.host, "127.0.0.1");
	http_module.reload(&d, d.cfg, &next);
	*d.cfg = next;
	cr_assert_gt(http_port(d.http), 0);
	cr_assert_eq(request(&d, EVHTTP_REQ_GET, "/healthz", &r), 200);
}
