/*
 * control.c: the control socket of `metersim serve` (a unix stream socket,
 * --control PATH).  Line protocol: one command per line, answered by any
 * number of lines and then a last line "ok" or "err MESSAGE", so a client
 * (`metersim ctl`) knows where an answer ends.  Commands:
 *
 *   list [FIRST [N]]        serial index type security breaker (20 by default)
 *   show SERIAL             state as key=value lines
 *   set SERIAL KEY VALUE..  breaker connect|disconnect, mode 0..6,
 *                           credit WH, credit_add WH, payment credit|prepaid,
 *                           limiter NORMAL EMERGENCY MIN_OVER MIN_UNDER,
 *                           emergency on|off, period 300|900|1800|3600,
 *                           clock EPOCH (set the meter's clock),
 *                           analysis PERIOD [CHANNELS] (analysis logger:
 *                           capture period, SIM_ACH_* mask; clears it)
 *   button SERIAL           the consumer presses the breaker button
 *   push SERIAL             GPRS: DataNotification now
 *   push SERIAL session     ... in the meter's next session, before an answer
 *   fault SPEC              faults.h syntax, fleet-wide or @SERIAL
 *   clear [SERIAL]          no faults (fleet and all meters, or one meter)
 *   faults                  the sets in force
 *   counters                connections, APDUs, bytes, faults fired
 *   time                    the simulated clock
 *   expect --meter SERIAL --from T1 --to T2 [--format json|csv] [--what LIST]
 *                           the ground truth of a meter as this process
 *                           holds it, commands included (expect.h); time-
 *                           driven changes (limiter, credit, calendar
 *                           activation) are known up to the simulated now
 *   quit                    stop serving
 *
 * Commands run in the event loop, under the model lock.
 */
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "expect.h"
#include "meter_error.h"
#include "serve.h"

struct ctl {
	struct serve *sv;
	struct evconnlistener *lis;
	char path[108];
};

#define MAXARGS 16

static int
meter_arg(struct serve *sv, const char *s, struct sim_meter *m, struct evbuffer *o)
{
	char *end;
	unsigned long serial = strtoul(s, &end, 10);
	int64_t i = *end ? -1 : sim_fleet_find(sv->fleet, (uint32_t)serial);
	if (i < 0) {
		evbuffer_add_printf(o, "err no meter %s\n", s);
		return -1;
	}
	sim_meter_load(sv->fleet, (uint32_t)i, m);
	return 0;
}

static void
show(struct serve *sv, struct sim_meter *m, int64_t t, struct evbuffer *o)
{
	const struct dev_state *d = &m->st->dev;
	struct sim_registers r;
	sim_registers(m, t, &r);
	struct sim_instant in;
	sim_instant(m, t, &in);
	evbuffer_add_printf(o, "serial=%08u\nindex=%u\ntype=%s\nsecurity=%s\n", m->serial, m->index,
	                    sim_type_name(m->type), sim_sec_name(m->security));
	evbuffer_add_printf(o, "time=%lld\ncontrol_state=%u\noutput_state=%d\ncontrol_mode=%u\n",
	                    (long long)t, d->control, d->control == DEV_CONNECTED, d->mode);
	evbuffer_add_printf(o, "payment=%s\n",
	                    d->payment == DEV_PAY_PREPAID ? "prepaid" : "credit");
	if (d->payment == DEV_PAY_PREPAID)
		evbuffer_add_printf(o, "credit_wh=%lld\n", (long long)dev_credit(m, t));
	evbuffer_add_printf(o, "limiter=%u %u %u %u\nemergency=%u\n", d->thr_normal,
	                    d->thr_emergency, d->min_over, d->min_under, d->emergency);
	evbuffer_add_printf(o, "period=%u\ninvocation_counter=%u\nactive_tariff=%u\n",
	                    m->st->period, m->st->invocation_counter, r.active_tariff);
	for (unsigned q = 0; q < SIM_NQ; q++)
		evbuffer_add_printf(o, "%s=%lld\n", sim_q_name((uint8_t)q), (long long)r.total[q]);
	evbuffer_add_printf(o, "p_import_w=%d\np_export_w=%d\n", in.p_import, in.p_export);
	int64_t clk = sim_clock_ms(m, t);
	evbuffer_add_printf(o, "clock_ms=%lld\nclock_error_ms=%lld\n", (long long)clk,
	                    (long long)(clk - t * 1000));
	char fb[256];
	faults_format(faults_for(&sv->faults, m->index), fb, sizeof(fb));
	evbuffer_add_printf(o, "faults=%s\n", fb);
}

static int
set_cmd(struct sim_meter *m, int64_t t, char **av, int ac, struct evbuffer *o)
{
	if (ac < 2) {
		evbuffer_add_printf(o, "err set SERIAL KEY VALUE\n");
		return -1;
	}
	const char *k = av[0], *v = av[1];
	long long x = strtoll(v, NULL, 0);
	int rc;
	if (!strcmp(k, "breaker")) {
		if (!strcmp(v, "connect"))
			rc = dev_remote_reconnect(m, t);
		else if (!strcmp(v, "disconnect"))
			rc = dev_remote_disconnect(m, t);
		else
			rc = METER_EINVAL;
	} else if (!strcmp(k, "mode")) {
		rc = dev_set_control_mode(m, t, (uint8_t)x);
	} else if (!strcmp(k, "credit")) {
		rc = dev_credit_set(m, t, x);
	} else if (!strcmp(k, "credit_add")) {
		rc = dev_credit_add(m, t, x);
	} else if (!strcmp(k, "payment")) {
		rc = dev_set_payment_mode(m, t,
		                          !strcmp(v, "prepaid") ? DEV_PAY_PREPAID : DEV_PAY_CREDIT);
	} else if (!strcmp(k, "limiter")) {
		if (ac < 5) {
			evbuffer_add_printf(o, "err limiter NORMAL EMERGENCY MIN_OVER MIN_UNDER\n");
			return -1;
		}
		rc = dev_set_limiter(m, t, (uint32_t)x, (uint32_t)strtoul(av[2], NULL, 0),
		                     (uint32_t)strtoul(av[3], NULL, 0),
		                     (uint32_t)strtoul(av[4], NULL, 0));
	} else if (!strcmp(k, "emergency")) {
		rc = dev_set_emergency(m, t, !strcmp(v, "on"));
	} else if (!strcmp(k, "period")) {
		rc = sim_set_period(m, t, (uint16_t)x);
	} else if (!strcmp(k, "analysis")) {
		uint16_t chans = ac > 2 ? (uint16_t)strtoul(av[2], NULL, 0) : sim_analysis_chans(m);
		rc = x < 0 || x > 86400 ? METER_ERANGE : dev_set_analysis(m, t, chans, (uint32_t)x);
	} else if (!strcmp(k, "clock")) {
		rc = dev_clock_set(m, t, x * 1000); /* epoch seconds, as a client SETs it */
	} else {
		evbuffer_add_printf(o, "err unknown key %s\n", k);
		return -1;
	}
	if (rc) {
		evbuffer_add_printf(o, "err %s\n", meter_strerror(rc));
		return -1;
	}
	return 0;
}

/* `expect` with metersim expect's options; the answer is its output. */
static int
expect_cmd(struct serve *sv, int64_t now, char **av, int ac, struct evbuffer *o)
{
	struct expect_req rq = {.what = EXPECT_DEFAULT};
	const char *serial = NULL;
	bool have_from = false, have_to = false;
	for (int i = 0; i < ac; i += 2) {
		const char *k = av[i], *v = i + 1 < ac ? av[i + 1] : NULL;
		int bad = !v;
		if (bad)
			;
		else if (!strcmp(k, "--meter"))
			serial = v;
		else if (!strcmp(k, "--from"))
			bad = expect_parse_time(v, &rq.from), have_from = true;
		else if (!strcmp(k, "--to"))
			bad = expect_parse_time(v, &rq.to), have_to = true;
		else if (!strcmp(k, "--what"))
			bad = expect_parse_what(v, &rq.what);
		else if (!strcmp(k, "--format") && (!strcmp(v, "csv") || !strcmp(v, "json")))
			rq.csv = !strcmp(v, "csv");
		else
			bad = 1;
		if (bad) {
			evbuffer_add_printf(o, "err bad expect option %s\n", k);
			return -1;
		}
	}
	if (!serial || !have_from || !have_to || rq.to < rq.from) {
		evbuffer_add_printf(o, "err expect needs --meter, --from and --to (from <= to)\n");
		return -1;
	}
	struct sim_meter m;
	if (meter_arg(sv, serial, &m, o))
		return -1;
	dev_advance(&m, now < m.installed ? m.installed : now);
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	if (!f) {
		evbuffer_add_printf(o, "err %s\n", meter_strerror(METER_ENOSPC));
		return -1;
	}
	int rc = expect_write(f, &m, &rq);
	if (fclose(f) || rc) {
		free(buf);
		evbuffer_add_printf(o, "err %s\n", meter_strerror(METER_ENOSPC));
		return -1;
	}
	evbuffer_add(o, buf, len);
	free(buf);
	return 0;
}

static void
counters(struct serve *sv, struct evbuffer *o)
{
	const struct serve_counters *c = &sv->cnt;
#define C(f)                                                                                       \
	evbuffer_add_printf(o, #f "=%llu\n",                                                       \
	                    (unsigned long long)__atomic_load_n(&c->f, __ATOMIC_RELAXED))
	C(connections);
	C(refused);
	C(closed);
	C(associations);
	C(rejected);
	C(apdus);
	C(errors);
	C(bytes_in);
	C(bytes_out);
	C(mbus_requests);
	C(mbus_answers);
	C(modbus_requests);
	C(modbus_open);
	C(modbus_open_max);
	C(pushes);
#undef C
	evbuffer_add_printf(o, "open=%u\nlisteners=%u\nserved=%u\n", dlms_open_connections(sv),
	                    sv->listeners, sv->served);
	for (unsigned k = 0; k < FAULT_N; k++)
		evbuffer_add_printf(
		    o, "fault_%s=%llu\n", fault_name(k),
		    (unsigned long long)__atomic_load_n(&sv->faults.fired[k], __ATOMIC_RELAXED));
}

/* Run one command line; the answer goes to o.  Returns false for quit. */
static bool
run(struct serve *sv, char *line, struct evbuffer *o)
{
	char *av[MAXARGS + 1], *save = NULL;
	int ac = 0;
	for (char *w = strtok_r(line, " \t\r", &save); w && ac < MAXARGS;
	     w = strtok_r(NULL, " \t\r", &save))
		av[ac++] = w;
	if (ac == 0) {
		evbuffer_add_printf(o, "err empty command\n");
		return true;
	}
	const char *cmd = av[0];
	struct sim_meter m;
	int64_t t = serve_now(sv);
	if (!strcmp(cmd, "quit")) {
		evbuffer_add_printf(o, "ok\n");
		return false;
	}
	if (!strcmp(cmd, "time")) {
		evbuffer_add_printf(o, "%lld\nok\n", (long long)t);
	} else if (!strcmp(cmd, "expect")) {
		if (expect_cmd(sv, t, av + 1, ac - 1, o) == 0)
			evbuffer_add_printf(o, "ok\n");
	} else if (!strcmp(cmd, "counters")) {
		counters(sv, o);
		evbuffer_add_printf(o, "ok\n");
	} else if (!strcmp(cmd, "list")) {
		uint32_t first = ac > 1 ? (uint32_t)strtoul(av[1], NULL, 10) : 0;
		uint32_t n = ac > 2 ? (uint32_t)strtoul(av[2], NULL, 10) : 20;
		for (uint32_t i = first; i < sv->fleet->cfg.count && i - first < n; i++) {
			sim_meter_load(sv->fleet, i, &m);
			evbuffer_add_printf(o, "%08u %u %s %s %s\n", m.serial, i,
			                    sim_type_name(m.type), sim_sec_name(m.security),
			                    m.st->dev.control == DEV_CONNECTED ? "connected"
			                                                       : "open");
		}
		evbuffer_add_printf(o, "ok\n");
	} else if (!strcmp(cmd, "show") && ac == 2) {
		if (meter_arg(sv, av[1], &m, o) == 0) {
			if (t < m.installed)
				t = m.installed;
			dev_advance(&m, t);
			show(sv, &m, t, o);
			evbuffer_add_printf(o, "ok\n");
		}
	} else if (!strcmp(cmd, "set") && ac >= 3) {
		if (meter_arg(sv, av[1], &m, o) == 0 && set_cmd(&m, t, av + 2, ac - 2, o) == 0)
			evbuffer_add_printf(o, "ok\n");
	} else if (!strcmp(cmd, "button") && ac == 2) {
		if (meter_arg(sv, av[1], &m, o) == 0) {
			int rc = dev_button(&m, t);
			if (rc)
				evbuffer_add_printf(o, "err %s\n", meter_strerror(rc));
			else
				evbuffer_add_printf(o, "ok\n");
		}
	} else if (!strcmp(cmd, "push") && (ac == 2 || (ac == 3 && !strcmp(av[2], "session")))) {
		if (meter_arg(sv, av[1], &m, o) == 0) {
			int rc = ac == 3 ? dlms_push_arm(sv, m.index) : dlms_push(sv, m.index);
			if (rc)
				evbuffer_add_printf(o, "err %s\n", meter_strerror(rc));
			else
				evbuffer_add_printf(o, "ok\n");
		}
	} else if (!strcmp(cmd, "fault") && ac >= 2) {
		char err[128] = "";
		int rc = 0;
		for (int i = 1; i < ac && !rc; i++)
			rc = faults_apply(&sv->faults, av[i], serve_lookup, sv, err, sizeof(err));
		dlms_faults_changed(sv);
		if (rc)
			evbuffer_add_printf(o, "err %s\n", err);
		else
			evbuffer_add_printf(o, "ok\n");
	} else if (!strcmp(cmd, "clear")) {
		char spec[32], err[128];
		snprintf(spec, sizeof(spec), ac > 1 ? "none@%s" : "none", ac > 1 ? av[1] : "");
		int rc = faults_apply(&sv->faults, spec, serve_lookup, sv, err, sizeof(err));
		dlms_faults_changed(sv);
		if (rc)
			evbuffer_add_printf(o, "err %s\n", err);
		else
			evbuffer_add_printf(o, "ok\n");
	} else if (!strcmp(cmd, "faults")) {
		char fb[256];
		faults_format(&sv->faults.fleet, fb, sizeof(fb));
		evbuffer_add_printf(o, "fleet %s\n", fb);
		for (size_t i = 0; i < sv->faults.n; i++) {
			faults_format(&sv->faults.m[i].set, fb, sizeof(fb));
			evbuffer_add_printf(o, "%08u %s\n",
			                    sim_fleet_serial(sv->fleet, sv->faults.m[i].index), fb);
		}
		evbuffer_add_printf(o, "ok\n");
	} else {
		evbuffer_add_printf(o, "err unknown command or arguments: %s\n", cmd);
	}
	return true;
}

static void on_event(struct bufferevent *bev, short what, void *arg);

static void
on_quit_written(struct bufferevent *bev, void *arg)
{
	struct serve *sv = arg;
	bufferevent_free(bev);
	event_base_loopexit(sv->base, NULL);
}

static void
on_read(struct bufferevent *bev, void *arg)
{
	struct serve *sv = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	struct evbuffer *out = bufferevent_get_output(bev);
	char *line;
	size_t n;
	while ((line = evbuffer_readln(in, &n, EVBUFFER_EOL_LF)) != NULL) {
		serve_lock(sv);
		bool go_on = run(sv, line, out);
		serve_unlock(sv);
		free(line);
		if (!go_on) {
			/* leave the loop once the answer is out */
			bufferevent_setcb(bev, NULL, on_quit_written, on_event, sv);
			return;
		}
	}
	if (evbuffer_get_length(in) > 4096)
		bufferevent_free(bev); /* no line that long */
}

static void
on_event(struct bufferevent *bev, short what, void *arg)
{
	(void)arg;
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
		bufferevent_free(bev);
}

static void
on_accept(struct evconnlistener *lis, evutil_socket_t fd, struct sockaddr *sa, int len, void *arg)
{
	(void)lis;
	(void)sa;
	(void)len;
	struct serve *sv = arg;
	struct bufferevent *bev = bufferevent_socket_new(sv->base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (!bev) {
		evutil_closesocket(fd);
		return;
	}
	bufferevent_setcb(bev, on_read, NULL, on_event, sv);
	bufferevent_enable(bev, EV_READ | EV_WRITE);
}

int
control_start(struct serve *sv, const char *path)
{
	struct ctl *c = calloc(1, sizeof(*c));
	if (!c)
		return -1;
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof(sun.sun_path)) {
		fprintf(stderr, "metersim: control socket path too long\n");
		free(c);
		return -1;
	}
	strcpy(sun.sun_path, path);
	strcpy(c->path, path);
	unlink(path);
	c->sv = sv;
	c->lis = evconnlistener_new_bind(sv->base, on_accept, sv, LEV_OPT_CLOSE_ON_FREE, 8,
	                                 (struct sockaddr *)&sun, sizeof(sun));
	if (!c->lis) {
		fprintf(stderr, "metersim: cannot listen on %s\n", path);
		free(c);
		return -1;
	}
	sv->ctl = c;
	return 0;
}

void
control_stop(struct serve *sv)
{
	struct ctl *c = sv->ctl;
	if (!c)
		return;
	evconnlistener_free(c->lis);
	unlink(c->path);
	free(c);
	sv->ctl = NULL;
}
