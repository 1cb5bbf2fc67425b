/*
 * test_notify.c: systemd notification (daemon/notify.c) against a fake
 * NOTIFY_SOCKET: READY=1 waits for startup and for every expected part,
 * the watchdog timer pings at half of WATCHDOG_USEC from the event loop,
 * STATUS lines stay single-line.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/event.h>

#include "notify.h"

static int sock = -1;
static char dir[64];
static char path[96];

static void
setup(void)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};

	strcpy(dir, "/tmp/ammd-notify-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/notify", dir);
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
	sock = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK, 0);
	cr_assert_geq(sock, 0);
	cr_assert_eq(bind(sock, (struct sockaddr *)&sun, sizeof(sun)), 0);
	setenv("NOTIFY_SOCKET", path, 1);
	unsetenv("WATCHDOG_USEC");
	unsetenv("WATCHDOG_PID");
}

static void
teardown(void)
{
	close(sock);
	unlink(path);
	rmdir(dir);
	unsetenv("NOTIFY_SOCKET");
	unsetenv("WATCHDOG_USEC");
}

/* Everything received so far, datagrams joined by '|'. */
static const char *
received(void)
{
	static char all[4096];
	char buf[1024];
	ssize_t n;

	all[0] = '\0';
	while ((n = recv(sock, buf, sizeof(buf) - 1, 0)) > 0) {
		buf[n] = '\0';
		strncat(all, buf, sizeof(all) - strlen(all) - 2);
		strcat(all, "|");
	}
	return all;
}

Test(notify, ready_waits_for_every_part, .init = setup, .fini = teardown)
{
	struct event_base *base = event_base_new();
	struct notify *n = notify_new(base);

	cr_assert_not_null(n);
	cr_assert_eq(notify_watchdog_usec(n), 0);
	cr_assert_eq(notify_part_expect(n, "database"), 0);
	cr_assert_eq(notify_part_expect(n, "gprs-listener"), 0);
	cr_assert_eq(notify_part_expect(n, "database"), 0); /* once is enough */

	notify_part_ready(n, "database"); /* before startup is done */
	cr_assert_str_eq(received(), "");
	notify_startup_done(n);
	cr_assert_str_eq(received(), "STATUS=starting: waiting for gprs-listener|");
	cr_assert_not(notify_is_ready(n));
	notify_part_ready(n, "unknown");
	cr_assert_not(notify_is_ready(n));
	notify_part_ready(n, "gprs-listener");
	cr_assert(notify_is_ready(n));
	cr_assert_str_eq(received(), "READY=1\nSTATUS=running|");
	notify_part_ready(n, "gprs-listener");
	cr_assert_str_eq(received(), "", "READY sent twice");

	notify_status(n, "round %d%%\nINJECTED=1", 42);
	notify_reloading(n);
	notify_reloaded(n);
	notify_stopping(n);
	cr_assert_str_eq(received(), "STATUS=round 42%|RELOADING=1\nSTATUS=reloading configuration|"
				     "READY=1\nSTATUS=running|STOPPING=1\nSTATUS=draining|");
	notify_free(n);
	event_base_free(base);
}

Test(notify, ready_at_once_without_parts, .init = setup, .fini = teardown)
{
	struct event_base *base = event_base_new();
	struct notify *n = notify_new(base);

	notify_startup_done(n);
	cr_assert_str_eq(received(), "READY=1\nSTATUS=running|");
	notify_free(n);
	event_base_free(base);
}

static void
stop(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	event_base_loopbreak(arg);
}

Test(notify, watchdog_pings_from_the_loop, .init = setup, .fini = teardown)
{
	struct event_base *base = event_base_new();
	struct timeval tv = {0, 650000};
	struct notify *n;
	const char *got, *p;
	int pings = 0;

	setenv("WATCHDOG_USEC", "200000", 1); /* ping every 100 ms */
	n = notify_new(base);
	cr_assert_eq(notify_watchdog_usec(n), 200000);
	event_base_once(base, -1, EV_TIMEOUT, stop, base, &tv);
	event_base_dispatch(base);
	got = received();
	for (p = got; (p = strstr(p, "WATCHDOG=1|")) != NULL; p++)
		pings++;
	/* One at start, then one per 100 ms for 650 ms: 7, fewer if the
	 * machine is busy, never more. */
	cr_assert_geq(pings, 4, "%s", got);
	cr_assert_leq(pings, 7, "%s", got);
	notify_free(n);
	event_base_free(base);
}
