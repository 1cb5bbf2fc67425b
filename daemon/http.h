/*
 * http.h: the daemon's small HTTP endpoint (libevent evhttp), meant for
 * loopback: GET /metrics (Prometheus text format) and GET /healthz (200 with
 * a JSON body when the event loop is turning and every registered health
 * check passes, 503 otherwise, and 503 while draining).  The listener
 * follows [daemon] http_listen, including on reload; an empty value turns
 * it off.  It is a module (http_module in ammd.h): start binds, reload
 * rebinds when the address changed, stop unbinds.
 */
#ifndef AMM_HTTP_H
#define AMM_HTTP_H

#include <stddef.h>

struct ammd;
struct http;

/*
 * A health check: return 0 when healthy, -1 when not, optionally with a
 * short reason in detail (a NUL-terminated string of at most len bytes).
 * Runs on the loop for every GET /healthz, so it must be cheap and must not
 * block: report state the module already keeps.
 */
typedef int (*http_health_fn)(void *arg, char *detail, size_t len);

/* Create the endpoint (not yet listening).  Uses d->base and d->metrics,
 * and reads d->cfg and d->draining when answering. */
struct http *http_new(struct ammd *d);
void http_free(struct http *h);

/* Register a check under a unique name ([a-z0-9_]); the name and arg must
 * stay valid until removed.  Returns 0, or -1 (table full or name taken). */
int http_health_add(struct http *h, const char *name, http_health_fn fn, void *arg);
void http_health_remove(struct http *h, const char *name);

/* The port actually bound (useful with port 0), or 0 when not listening. */
int http_port(const struct http *h);

#endif
