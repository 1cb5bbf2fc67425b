/*
 * session.c: one meter connection as an explicit state machine over the
 * event loop (see session.h for the states and ownership).  The DLMS work
 * is meterlib's sans-I/O client engine: this file only moves its bytes
 * between the bufferevent and the engine, arms the engine's timer, and
 * decides which request comes next.  Tasks run in a fixed order within one
 * association; a task that fails on a data-access-result (an object the
 * meter does not have) is skipped, one that times out ends the tasks, and
 * whatever was read until then is stored with pointers that cover it.
 *
 * Pushes: a DataNotification the meter sends while the session runs
 * (between our requests or before an answer; the engine checks it like
 * every APDU of the association and reports a forged one, which is logged
 * and dropped) is held and stored between two requests, once the
 * registers' scalers and the push setup's object list are known (read for
 * it when the session had no push before), through the same mapping as a
 * push sent before the session (push_store()), and published in a
 * registers message of its own.  The session goes on as it was.
 *
 * Times: the meter's clock is read first in every session; the ranges asked
 * of the profile and the logs end at the meter's own "now", so a meter
 * whose clock is off is neither asked for the future nor skipped.  Every
 * instant is converted to UTC by cosem_time.c with the deviation the meter
 * sends, or session_tz and the clock-status DST bit when it sends none.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "acse.h"
#include "axdr.h"
#include "cmd_kinds.h"
#include "command.h"
#include "config.h"
#include "cosem_time.h"
#include "discovery.h"
#include "dlms_client.h"
#include "gprs/gprs.h"
#include "log.h"
#include "message.h"
#include "meter_error.h"
#include "metrics.h"
#include "obis.h"
#include "profile.h"
#include "session.h"
#include "store.h"
#include "transport.h"

const uint8_t session_log_e[SESSION_NLOGS] = {0, 1, 2, 4, 7};
const struct cosem_tz session_tz = {60, COSEM_DST_EU};

#define SESSION_MAX_PDU            4096
#define SESSION_RX_CAP             (SESSION_MAX_PDU + 64)
#define SESSION_DATA_CAP           (96 * 1024)
#define SESSION_MAX_ITEMS          (2 * CONFIG_MAX_REGISTERS + 2)
#define SESSION_MAX_RANGES         (SESSION_MAX_GAPS + 64)
#define SESSION_PROFILE_CHUNK_ROWS 480 /* rows per range request: ~30 kB */
#define SESSION_MAX_OBJECTS        512
/* A larger drift is not corrected automatically: a jump that large
 * rewrites the meter's profile timeline and wants an operator's
 * clock_sync command. */
#define SESSION_CLOCK_SYNC_MAX 3600
#define SESSION_DEADLINE_S     300
/* Pushes held during one session until they can be mapped; an alarm
 * storm beyond this is logged, the meter's registers still tell its state. */
#define SESSION_MID_PUSHES 8

enum task {
	T_CLOCK_REGS = 0,
	T_DISC_OBJECTS,
	T_DISC_PROFILE,
	T_DISC_SCALERS,
	T_PROFILE,
	T_EVENTS,
	T_BILLING_COLS,
	T_BILLING,
	T_CLOCK_SYNC,
	T_END,
};

static const char *const task_names[] = {
    "clock+registers", "discover objects", "discover profile", "discover scalers", "load profile",
    "event logs",      "billing layout",   "billing values",   "clock sync",       "end"};

struct reg_result {
	bool have_value, have_su, numeric;
	int64_t raw;
	int8_t scaler;
	uint8_t unit;
};

struct range {
	int64_t from, to;
};

struct session {
	struct event_base *base;
	const struct config *cfg;
	struct store *store;
	const struct transport_ops *tr;
	struct transport_timeouts to;
	struct session_meter m;
	char instance[64];
	session_done_fn done;
	void *done_arg;

	int state;
	struct bufferevent *bev;
	struct event *ev_timer;    /* the engine's timer */
	struct event *ev_deadline; /* the whole session */
	struct event *ev_step;     /* deferred work: start, close, store, done */
	uint32_t timer_gen;

	struct dlms_client c;
	uint8_t *mem; /* one block: rx, tx, work, data, out */
	uint8_t *outp;
	size_t out_cap;

	/* what happened */
	struct timespec t0;
	int64_t started_at, finished_at;
	double duration;
	uint64_t bytes_in, bytes_out;
	bool associated, failed, partial, released, committed;
	bool stop;       /* end the tasks after the request under way */
	bool shutdown;   /* session_shutdown(): the daemon is stopping */
	bool store_back; /* the store's callback has run */
	const char *outcome;
	char error[256];

	/* tasks */
	int task;
	uint32_t sub; /* position within a task (range, log, ...) */
	struct dlms_get_item items[SESSION_MAX_ITEMS];
	uint32_t n_items;
	uint8_t accbuf[128];
	struct xdlms_access acc;
	uint8_t setbuf[16];

	bool have_meter_now;
	int64_t meter_now; /* the meter's clock, UTC */
	int64_t clock_read_at;
	struct reg_result regs[CONFIG_MAX_REGISTERS];
	size_t nregs;
	struct obis reg_obis[CONFIG_MAX_REGISTERS];

	struct range ranges[SESSION_MAX_RANGES];
	size_t nranges;
	int64_t profile_last; /* latest interval stored in this session */
	int64_t event_last[SESSION_NLOGS];
	int64_t billing_last;

	struct discovery_object *objs;
	size_t nobjs;
	bool have_objs;
	bool discovered;
	uint32_t disc_period;
	char *disc_objects, *disc_layout;

	struct profile_column bill_cols[PROFILE_MAX_COLUMNS];
	size_t n_bill_cols;

	/* A push the meter sent before this session (GPRS inbound): stored
	 * only from an association with the meter's own security, mapped by
	 * its push setup's object list read in T_CLOCK_REGS. */
	uint8_t *push;
	size_t push_len;
	uint32_t push_item;
	struct profile_column push_cols[PROFILE_MAX_COLUMNS];
	size_t n_push_cols;
	/* Pushes the meter sent during this session, between or inside our
	 * exchanges (authenticated by the association like every APDU): held
	 * until the registers' scalers and the push setup's object list are
	 * known, then stored and published like the pre-session push. */
	uint8_t *mid_push[SESSION_MID_PUSHES];
	size_t mid_push_len[SESSION_MID_PUSHES];
	size_t n_mid_push;
	bool regs_done;       /* the clock+registers task is over (scalers known) */
	bool push_cols_asked; /* the push setup's object list was requested */
	bool push_reading;    /* ... and that request is on the engine */

	/* columns of the load profile: A+, A-, R+, R-, status (-1: none) */
	int lp_idx[5];

	struct store_batch *batch;
	size_t rows;
	/* outbox accumulations */
	struct message_interval *miv;
	size_t nmiv, cmiv;
	struct message_event *mev;
	size_t nmev, cmev;

	struct metrics *reg;
	struct metric *m_sessions, *m_bytes, *m_duration, *m_rows;

	/* the operator command under way (command.h): owned until
	 * command_finish() / command_release() */
	struct command_job *job;
	struct cmdk_run run;
	bool ckpt_wait;      /* its checkpoint is being committed */
	bool ckpt_ok;        /* ... and was */
	struct event *ev_cmd; /* continues the run after the checkpoint */
	unsigned ncommands;
};

static void session_enter_state(struct session *s, int state);
static void session_pump(struct session *s);
static void session_next_task(struct session *s);
static void session_close(struct session *s);
static void session_fail(struct session *s, const char *outcome, const char *fmt, ...)
    LOG_PRINTF(3, 4);

static const char *const state_names[] = {"new",     "connect", "link",  "associate", "tasks",
                                          "release", "close",   "store", "done"};

const char *
session_state_name(int state)
{
	if (state < 0 || (size_t)state >= sizeof(state_names) / sizeof(state_names[0]))
		return "?";
	return state_names[state];
}

static const struct obis OBIS_CLOCK = {{0, 0, 1, 0, 0, 255}};
static const struct obis OBIS_ASSOC = {{0, 0, 40, 0, 0, 255}};
static const struct obis OBIS_LP = {{1, 0, 99, 1, 0, 255}};
static const struct obis OBIS_BILLING = {{0, 0, 98, 1, 0, 255}};
static const struct obis OBIS_PUSH_SETUP = {{0, 0, 25, 9, 0, 255}};

static int64_t
wall_now(void)
{
	return (int64_t)time(NULL);
}

static void
session_enter_state(struct session *s, int state)
{
	log_meter(LOG_DEBUG, s->m.serial, "session %s -> %s", session_state_name(s->state),
	          session_state_name(state));
	s->state = state;
}

/* Queue the deferred step (never run nested in a bufferevent callback). */
static void
session_defer(struct session *s)
{
	event_active(s->ev_step, EV_TIMEOUT, 0);
}

static void
session_fail(struct session *s, const char *outcome, const char *fmt, ...)
{
	va_list ap;

	if (!s->failed && !s->partial) {
		va_start(ap, fmt);
		vsnprintf(s->error, sizeof(s->error), fmt, ap);
		va_end(ap);
		s->outcome = outcome;
	}
	if (s->associated && s->state == SESSION_TASKS && (strcmp(outcome, "partial") == 0)) {
		s->partial = true;
		return;
	}
	s->failed = true;
}

static const char *
outcome_of(int err)
{
	switch (err) {
	case METER_ETIMEOUT:
		return "timeout";
	case METER_EREJECTED:
		return "rejected";
	case METER_EAUTH:
	case METER_EREPLAY:
	case METER_ECRYPTO:
		return "auth";
	case METER_EABORTED:
		return "aborted";
	case METER_EPROTO:
	case METER_EMALFORMED:
	case METER_ELENGTH:
	case METER_EEXCEPTION:
		return "protocol";
	default:
		return "error";
	}
}

/* ---- bytes between the engine and the bufferevent ------------------------ */

static void
session_flush(struct session *s, struct mbuf *out)
{
	if (out->len > 0 && s->bev != NULL) {
		if (s->tr->write(s->bev, out->p, out->len) != 0)
			session_fail(s, "error", "write failed");
		s->bytes_out += out->len;
	}
	out->len = 0;
	out->err = 0; /* drained: an overflow must not outlive its bytes */
}

static void
session_arm_timer(struct session *s)
{
	uint32_t ms, gen = dlms_client_timer(&s->c, &ms);

	if (gen == s->timer_gen)
		return;
	s->timer_gen = gen;
	evtimer_del(s->ev_timer);
	if (ms > 0) {
		struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
		evtimer_add(s->ev_timer, &tv);
	}
}

/* The invocation counter must stay inside the window the scheduler
 * persisted before the session: beyond it a crash could make us reuse
 * an IV with the same key. */
static bool
session_counter_ok(struct session *s)
{
	if (!s->m.ciphering)
		return true;
	if (dlms_client_tx_counter(&s->c) < s->m.tx_limit)
		return true;
	session_fail(s, "error", "invocation counter window exhausted");
	dlms_client_abort(&s->c);
	return false;
}

/* ---- decoding helpers ------------------------------------------------------ */

static int
decode_datetime_utc(const uint8_t *p, size_t len, int64_t *utc)
{
	struct cosem_datetime dt;

	/* octet-string(12) as clock.time carries it, or the date-time type */
	if (len == 14 && p[0] == AXDR_OCTET_STRING && p[1] == 12)
		p += 2;
	else if (len == 13 && p[0] == AXDR_DATE_TIME)
		p += 1;
	else
		return METER_EMALFORMED;
	if (cosem_datetime_decode(p, &dt) != 0)
		return METER_ERANGE;
	return cosem_datetime_to_utc(&dt, &session_tz, utc);
}

static int
decode_int(const uint8_t *p, size_t len, int64_t *v)
{
	struct axdr_node n[2];
	size_t nn;

	if (axdr_decode(p, len, n, 2, &nn) < 0 || nn != 1)
		return METER_EMALFORMED;
	return axdr_to_int64(&n[0], v);
}

static void
put_range(struct session *s, const struct obis *profile, int64_t from, int64_t to)
{
	struct cosem_datetime df, dt;
	struct xdlms_capture_obj clk = {8, OBIS_CLOCK, 2, 0};
	struct mbuf b;

	(void)profile;
	cosem_datetime_from_utc(from, &session_tz, &df);
	cosem_datetime_from_utc(to, &session_tz, &dt);
	mbuf_init(&b, s->accbuf, sizeof(s->accbuf));
	xdlms_put_range(&b, &clk, &df, &dt, NULL, 0);
	s->acc.present = true;
	s->acc.selector = XDLMS_ACCESS_RANGE;
	s->acc.params.raw = s->accbuf;
	s->acc.params.len = (uint32_t)b.len;
	s->acc.params.node = NULL;
	s->acc.params.n_nodes = 0;
}

static void
item(struct session *s, uint16_t cls, const struct obis *o, int8_t attr,
     const struct xdlms_access *acc)
{
	struct dlms_get_item *it = &s->items[s->n_items++];
	it->desc.class_id = cls;
	it->desc.obis = *o;
	it->desc.id = attr;
	it->access = acc;
}

static bool
session_get(struct session *s)
{
	uint8_t *obuf = s->outp;
	struct mbuf out;
	int r;

	mbuf_init(&out, obuf, s->out_cap);
	r = dlms_client_get(&s->c, &out, s->items, s->n_items);
	if (r != 0) {
		session_fail(s, "error", "%s: %s", task_names[s->task], meter_strerror(r));
		return false;
	}
	if (!session_counter_ok(s))
		return false;
	session_flush(s, &out);
	session_arm_timer(s);
	return true;
}

/* ---- results per task ---------------------------------------------------- */

static void
regs_result(struct session *s, const struct dlms_client_event *ev)
{
	if (s->push != NULL && ev->index == s->push_item && ev->index != 0) {
		if (ev->err != 0 || ev->dar != 0 || ev->data == NULL ||
		    profile_columns_decode(ev->data, ev->data_len, s->push_cols, PROFILE_MAX_COLUMNS,
		                           &s->n_push_cols) < 0)
			s->n_push_cols = 0;
		return;
	}
	if (ev->index == 0) {
		int64_t t;
		if (ev->err == 0 && ev->dar == 0 && ev->data != NULL &&
		    decode_datetime_utc(ev->data, ev->data_len, &t) == 0) {
			s->meter_now = t;
			s->have_meter_now = true;
			s->clock_read_at = wall_now();
		} else {
			log_meter(LOG_WARNING, s->m.serial, "clock unreadable (%s, dar %u)",
			          meter_strerror(ev->err), ev->dar);
		}
		return;
	}
	/* items 1.. pair up as value, scaler_unit per register (scaler_unit
	 * left out for class 1) */
	uint32_t k = 1;
	for (size_t i = 0; i < s->nregs; i++) {
		uint16_t cls = obis_class(&s->reg_obis[i]);
		bool su = cls != 1;
		if (ev->index == k) {
			int64_t v;
			if (ev->err == 0 && ev->dar == 0 && ev->data != NULL &&
			    decode_int(ev->data, ev->data_len, &v) == 0) {
				s->regs[i].raw = v;
				s->regs[i].have_value = true;
			}
			return;
		}
		if (su && ev->index == k + 1) {
			struct profile_column col;
			if (ev->err == 0 && ev->dar == 0 && ev->data != NULL &&
			    profile_scaler_unit_decode(ev->data, ev->data_len, &col) > 0) {
				s->regs[i].scaler = col.scaler;
				s->regs[i].unit = col.unit;
				s->regs[i].have_su = true;
			}
			return;
		}
		k += su ? 2 : 1;
	}
}

/* The pushed values: energy registers with the scaler_unit read in this
 * session (none read: not stored, a value without its scaler is not a
 * reading), class 1 values (alarm register) as counts, at the push's own
 * time.  A push naming another logical device is dropped. */
static void
push_store(struct session *s, const uint8_t *body, size_t body_len, struct message_register *mr,
           size_t *nmr, int64_t read_at)
{
	struct {
		const uint8_t *p;
		size_t len;
	} el[PROFILE_MAX_COLUMNS];
	struct axdr_node nodes[64];
	char name[OBIS_STRLEN];
	uint32_t count;
	size_t nn, off;
	int64_t at = STORE_NULL;
	ssize_t h;

	if (body == NULL || !s->associated || s->n_push_cols == 0)
		return;
	h = axdr_decode_header(body, body_len, AXDR_STRUCTURE, &count);
	if (h < 0 || count != s->n_push_cols) {
		log_meter(LOG_NOTICE, s->m.serial, "push does not follow its push setup: not stored");
		return;
	}
	off = (size_t)h;
	for (uint32_t i = 0; i < count; i++) {
		ssize_t r = axdr_decode(body + off, body_len - off, nodes, 64, &nn);
		if (r < 0)
			return;
		el[i].p = body + off;
		el[i].len = (size_t)r;
		off += (size_t)r;
		const struct profile_column *c = &s->push_cols[i];
		if (c->class_id == 8 && at == STORE_NULL)
			(void)decode_datetime_utc(el[i].p, el[i].len, &at);
		if (c->class_id == 1 && c->obis.v[2] == 42 && nodes[0].tag == AXDR_OCTET_STRING &&
		    !gprs_ldn_matches(nodes[0].ptr, nodes[0].len, s->m.serial)) {
			log_meter(LOG_WARNING, s->m.serial, "push names another logical device: dropped");
			return;
		}
	}
	if (at == STORE_NULL)
		at = s->have_meter_now ? s->meter_now : read_at;
	for (uint32_t i = 0; i < count; i++) {
		const struct profile_column *c = &s->push_cols[i];
		int64_t v;
		int scaler = 0, unit = PROFILE_UNIT_COUNT;
		bool known = c->class_id == 1;
		if (c->attribute != 2 || (c->class_id != 1 && c->class_id != 3 && c->class_id != 4) ||
		    decode_int(el[i].p, el[i].len, &v) != 0)
			continue;
		for (size_t k = 0; k < s->nregs && !known; k++)
			if (obis_eq(&s->reg_obis[k], &c->obis) && s->regs[k].have_su) {
				scaler = s->regs[k].scaler;
				unit = s->regs[k].unit;
				known = true;
			}
		if (!known)
			continue;
		if (store_add_register(s->batch, s->m.id, obis_format(&c->obis, name), at, v, scaler,
		                       unit, read_at) == 0)
			s->rows++;
		double d = (double)v;
		for (int e = scaler; e > 0; e--)
			d *= 10;
		for (int e = scaler; e < 0; e++)
			d /= 10;
		mr[(*nmr)++] = (struct message_register){.obis = c->obis,
		                                         .captured_at = at * 1000,
		                                         .value = d,
		                                         .has_raw = true,
		                                         .raw = v,
		                                         .scaler = (int8_t)scaler,
		                                         .unit = profile_unit_name((uint8_t)unit)};
	}
}

/* One register value into the batch and the registers message mr[]. */
static void
reg_store_one(struct session *s, const struct obis *o, const struct reg_result *r, int64_t at,
              int64_t read_at, struct message_register *mr, size_t *nmr)
{
	char name[OBIS_STRLEN];
	int scaler = r->have_su ? r->scaler : 0;
	int unit = r->have_su ? r->unit : PROFILE_UNIT_COUNT;
	if (store_add_register(s->batch, s->m.id, obis_format(o, name), at, r->raw, scaler, unit,
	                       read_at) == 0)
		s->rows++;
	double v = (double)r->raw;
	for (int e = scaler; e > 0; e--)
		v *= 10;
	for (int e = scaler; e < 0; e++)
		v /= 10;
	mr[*nmr] = (struct message_register){.obis = *o,
	                                     .captured_at = at * 1000,
	                                     .value = v,
	                                     .has_raw = true,
	                                     .raw = r->raw,
	                                     .scaler = (int8_t)scaler,
	                                     .unit = profile_unit_name((uint8_t)unit)};
	(*nmr)++;
}

/* The registers message of a session (or of a read_now command). */
static void
regs_publish(struct session *s, struct message_register *mr, size_t nmr, int64_t read_at)
{
	if (nmr > 0 && s->cfg->mqtt.enabled) {
		struct message msg;
		memset(&msg, 0, sizeof(msg));
		if (message_registers(s->cfg, s->m.serial, read_at * 1000, mr, nmr, &msg) == 0) {
			store_add_outbox(s->batch, msg.topic, msg.payload, msg.len, msg.qos,
			                 msg.retain);
			message_clear(&msg);
		}
	}
}

static void
regs_store(struct session *s)
{
	struct message_register mr[CONFIG_MAX_REGISTERS + PROFILE_MAX_COLUMNS];
	size_t nmr = 0;
	int64_t read_at = wall_now();
	int64_t at = s->have_meter_now ? s->meter_now : read_at;

	for (size_t i = 0; i < s->nregs; i++)
		if (s->regs[i].have_value)
			reg_store_one(s, &s->reg_obis[i], &s->regs[i], at, read_at, mr, &nmr);
	push_store(s, s->push, s->push_len, mr, &nmr, read_at);
	regs_publish(s, mr, nmr, read_at);
	s->regs_done = true;
}

/* The pushes held from this session, each stored and published on its
 * own (a registers message of the pushed values), as the pre-session push
 * is with the registers. */
static void
mid_push_store(struct session *s)
{
	for (size_t i = 0; i < s->n_mid_push; i++) {
		struct message_register mr[PROFILE_MAX_COLUMNS];
		size_t nmr = 0, rows = s->rows;
		int64_t read_at = wall_now();

		push_store(s, s->mid_push[i], s->mid_push_len[i], mr, &nmr, read_at);
		regs_publish(s, mr, nmr, read_at);
		log_meter(LOG_INFO, s->m.serial, "push during the session: %zu values stored",
		          s->rows - rows);
		free(s->mid_push[i]);
		s->mid_push[i] = NULL;
	}
	s->n_mid_push = 0;
}

static void
lp_map_columns(struct session *s)
{
	for (int k = 0; k < 5; k++)
		s->lp_idx[k] = -1;
	for (size_t i = 0; i < s->m.n_lp_cols; i++) {
		const struct profile_column *c = &s->m.lp_cols[i];
		const uint8_t *v = c->obis.v;
		/* A+, A-, R+, R-: per-interval (D = 29) or cumulative (D = 8)
		 * energies, totals (E = 0) */
		if ((c->class_id == 3 || c->class_id == 4) && v[0] == 1 && v[2] >= 1 && v[2] <= 4 &&
		    (v[3] == 8 || v[3] == 29) && v[4] == 0 && s->lp_idx[v[2] - 1] < 0)
			s->lp_idx[v[2] - 1] = (int)i;
		else if (!profile_column_is_clock(c) && s->lp_idx[4] < 0 &&
		         (c->class_id == 1 || v[2] == 96))
			s->lp_idx[4] = (int)i;
	}
}

/* IDIS default layout, for a meter whose discovery failed. */
static void
lp_default_layout(struct session_meter *m)
{
	static const struct {
		uint16_t cls;
		struct obis o;
	} d[] = {
	    {8, {{0, 0, 1, 0, 0, 255}}},  {1, {{0, 0, 96, 10, 1, 255}}},
	    {3, {{1, 0, 1, 29, 0, 255}}}, {3, {{1, 0, 2, 29, 0, 255}}},
	    {3, {{1, 0, 3, 29, 0, 255}}}, {3, {{1, 0, 4, 29, 0, 255}}},
	};
	m->n_lp_cols = sizeof(d) / sizeof(d[0]);
	for (size_t i = 0; i < m->n_lp_cols; i++) {
		memset(&m->lp_cols[i], 0, sizeof(m->lp_cols[i]));
		m->lp_cols[i].class_id = d[i].cls;
		m->lp_cols[i].obis = d[i].o;
		m->lp_cols[i].attribute = 2;
		m->lp_cols[i].unit = PROFILE_UNIT_COUNT;
	}
}

static int64_t
pow10i(int e)
{
	int64_t v = 1;
	while (e-- > 0)
		v *= 10;
	return v;
}

static void
profile_result(struct session *s, const struct dlms_client_event *ev)
{
	struct profile_cursor cur;
	struct profile_options opt = {session_tz,
	                              s->disc_period ? s->disc_period : s->m.profile_period};
	struct profile_row *row;
	int r;

	if (ev->err != 0 || ev->dar != 0 || ev->data == NULL) {
		if (ev->err == 0)
			log_meter(LOG_INFO, s->m.serial, "load profile: data-access-result %u",
			          ev->dar);
		return;
	}
	if ((row = malloc(sizeof(*row))) == NULL) {
		session_fail(s, "partial", "out of memory");
		return;
	}
	/* the common scaler of the four energy columns: the smallest */
	int common = 127;
	for (int k = 0; k < 4; k++)
		if (s->lp_idx[k] >= 0 && s->m.lp_cols[s->lp_idx[k]].scaler < common)
			common = s->m.lp_cols[s->lp_idx[k]].scaler;
	if (common == 127)
		common = 0;
	r = profile_cursor_init(&cur, s->m.lp_cols, s->m.n_lp_cols, ev->data, ev->data_len, &opt);
	while (r >= 0 && (r = profile_next(&cur, row)) == 1) {
		int64_t v[4], status = STORE_NULL;
		if (!row->has_time)
			continue;
		for (int k = 0; k < 4; k++) {
			int i = s->lp_idx[k];
			v[k] = STORE_NULL;
			if (i >= 0 && row->cells[i].numeric)
				v[k] = row->cells[i].i * pow10i(s->m.lp_cols[i].scaler - common);
		}
		if (s->lp_idx[4] >= 0 && row->cells[s->lp_idx[4]].numeric)
			status = row->cells[s->lp_idx[4]].i;
		if (store_add_interval(s->batch, s->m.id, row->time, v, common, status) == 0)
			s->rows++;
		if (s->profile_last == STORE_NULL || row->time > s->profile_last)
			s->profile_last = row->time;
		if (s->cfg->mqtt.enabled) {
			if (s->nmiv == s->cmiv) {
				size_t nc = s->cmiv ? 2 * s->cmiv : 128;
				void *p = realloc(s->miv, nc * sizeof(*s->miv));
				if (p == NULL)
					continue;
				s->miv = p;
				s->cmiv = nc;
			}
			double sc = 1;
			for (int e = common; e > 0; e--)
				sc *= 10;
			for (int e = common; e < 0; e++)
				sc /= 10;
			s->miv[s->nmiv++] =
			    (struct message_interval){row->time * 1000,
			                              v[0] == STORE_NULL ? 0 : (double)v[0] * sc,
			                              v[1] == STORE_NULL ? 0 : (double)v[1] * sc,
			                              v[2] == STORE_NULL ? 0 : (double)v[2] * sc,
			                              v[3] == STORE_NULL ? 0 : (double)v[3] * sc,
			                              status == STORE_NULL ? 0 : (uint32_t)status};
		}
	}
	if (r < 0)
		session_fail(s, "partial", "load profile: %s", meter_strerror(r));
	log_meter(LOG_DEBUG, s->m.serial, "load profile: %u of %u rows, %zu bytes", cur.next,
	          cur.count, ev->data_len);
	free(row);
}

/* Event and billing rows are read generically: the first date-time of a
 * row is its time, the first integer its code.  Logs differ in their
 * extra columns between meter types; the code and the time do not. */
static void
events_result(struct session *s, const struct dlms_client_event *ev, int li)
{
	struct axdr_node nodes[32];
	uint32_t count;
	size_t off, nn;
	ssize_t r;
	int64_t read_at = wall_now();

	if (ev->err != 0 || ev->dar != 0 || ev->data == NULL)
		return;
	r = axdr_decode_header(ev->data, ev->data_len, AXDR_ARRAY, &count);
	if (r < 0)
		goto bad;
	off = (size_t)r;
	for (uint32_t i = 0; i < count; i++) {
		r = axdr_decode(ev->data + off, ev->data_len - off, nodes, 32, &nn);
		if (r < 0)
			goto bad;
		off += (size_t)r;
		int64_t ts = STORE_NULL, code = STORE_NULL;
		for (size_t k = 1; k < nn; k++) {
			const struct axdr_node *n = &nodes[k];
			if (ts == STORE_NULL && ((n->tag == AXDR_OCTET_STRING && n->len == 12) ||
			                         n->tag == AXDR_DATE_TIME)) {
				struct cosem_datetime dt;
				int64_t t;
				if (cosem_datetime_decode(n->ptr, &dt) == 0 &&
				    cosem_datetime_to_utc(&dt, &session_tz, &t) == 0)
					ts = t;
			} else if (code == STORE_NULL && n->tag != AXDR_OCTET_STRING &&
			           n->tag != AXDR_STRUCTURE && n->tag != AXDR_ARRAY) {
				int64_t v;
				if (axdr_to_int64(n, &v) == 0)
					code = v;
			}
		}
		if (ts == STORE_NULL || code == STORE_NULL || code < INT32_MIN || code > INT32_MAX)
			continue;
		if (store_add_event(s->batch, s->m.id, session_log_e[li], ts, (int32_t)code, NULL,
		                    read_at) == 0)
			s->rows++;
		if (s->event_last[li] == STORE_NULL || ts > s->event_last[li])
			s->event_last[li] = ts;
		if (s->cfg->mqtt.enabled) {
			if (s->nmev == s->cmev) {
				size_t nc = s->cmev ? 2 * s->cmev : 32;
				void *p = realloc(s->mev, nc * sizeof(*s->mev));
				if (p == NULL)
					continue;
				s->mev = p;
				s->cmev = nc;
			}
			s->mev[s->nmev++] = (struct message_event){
			    .log = OBIS(0, 0, 99, 98, session_log_e[li], 255),
			    .ts = ts * 1000,
			    .code = (int32_t)code};
		}
	}
	return;
bad:
	session_fail(s, "partial", "event log %u: malformed buffer", session_log_e[li]);
}

static void
billing_result(struct session *s, const struct dlms_client_event *ev)
{
	struct profile_cursor cur;
	struct profile_row *row;
	char name[OBIS_STRLEN];
	int r, clk = -1;
	int64_t read_at = wall_now();

	if (ev->err != 0 || ev->dar != 0 || ev->data == NULL || s->n_bill_cols == 0)
		return;
	for (size_t i = 0; i < s->n_bill_cols; i++)
		if (profile_column_is_clock(&s->bill_cols[i]))
			clk = (int)i;
	if (clk < 0 || (row = malloc(sizeof(*row))) == NULL)
		return;
	/* scalers of billing columns: those of the same registers read now */
	for (size_t i = 0; i < s->n_bill_cols; i++)
		for (size_t k = 0; k < s->nregs; k++)
			if (obis_eq(&s->bill_cols[i].obis, &s->reg_obis[k]) && s->regs[k].have_su) {
				s->bill_cols[i].scaler = s->regs[k].scaler;
				s->bill_cols[i].unit = s->regs[k].unit;
			}
	struct profile_options opt = {session_tz, 0};
	r = profile_cursor_init(&cur, s->bill_cols, s->n_bill_cols, ev->data, ev->data_len, &opt);
	while (r >= 0 && (r = profile_next(&cur, row)) == 1) {
		if (!row->has_time)
			continue;
		for (size_t i = 0; i < s->n_bill_cols; i++) {
			const struct profile_column *c = &s->bill_cols[i];
			if ((int)i == clk || !row->cells[i].numeric || c->class_id == 8)
				continue;
			if (store_add_billing(s->batch, s->m.id, row->time,
			                      obis_format(&c->obis, name), row->cells[i].i,
			                      c->scaler, c->unit, STORE_NULL, read_at) == 0)
				s->rows++;
		}
		if (s->billing_last == STORE_NULL || row->time > s->billing_last)
			s->billing_last = row->time;
	}
	if (r < 0)
		session_fail(s, "partial", "billing: %s", meter_strerror(r));
	free(row);
}

static void
discovery_result(struct session *s, const struct dlms_client_event *ev)
{
	size_t n, total;
	int r;

	if (ev->err != 0 || ev->dar != 0 || ev->data == NULL)
		return;
	switch (s->task) {
	case T_DISC_OBJECTS:
		if (s->objs == NULL &&
		    (s->objs = calloc(SESSION_MAX_OBJECTS, sizeof(*s->objs))) == NULL)
			return;
		r = discovery_object_list(ev->data, ev->data_len, s->objs, SESSION_MAX_OBJECTS, &n,
		                          &total);
		if (r != 0) {
			log_meter(LOG_WARNING, s->m.serial, "object list: %s", meter_strerror(r));
			return;
		}
		s->nobjs = n;
		s->have_objs = true;
		log_meter(LOG_INFO, s->m.serial, "discovered %zu objects", total);
		break;
	case T_DISC_PROFILE:
		if (ev->index == 0) {
			ssize_t c = profile_columns_decode(ev->data, ev->data_len, s->m.lp_cols,
			                                   PROFILE_MAX_COLUMNS, &n);
			if (c < 0) {
				log_meter(LOG_WARNING, s->m.serial,
				          "load profile capture objects: %s",
				          meter_strerror((int)c));
				return;
			}
			s->m.n_lp_cols = n;
		} else {
			int64_t p;
			if (decode_int(ev->data, ev->data_len, &p) == 0 && p > 0 && p <= 86400)
				s->disc_period = (uint32_t)p;
		}
		break;
	case T_DISC_SCALERS:
		/* items are the columns with a scaler_unit, in column order */
		for (size_t i = 0, k = 0; i < s->m.n_lp_cols; i++) {
			struct profile_column *c = &s->m.lp_cols[i];
			if (c->class_id != 3 && c->class_id != 4)
				continue;
			if (k++ == ev->index) {
				if (profile_scaler_unit_decode(ev->data, ev->data_len, c) > 0)
					c->has_scaler_unit = true;
				break;
			}
		}
		break;
	}
}

/* ---- task sequencing ------------------------------------------------------- */

static int64_t
month_start(int64_t t)
{
	struct cosem_datetime dt;
	int64_t u;

	cosem_datetime_from_utc(t, &session_tz, &dt);
	dt.day = 1;
	dt.hour = dt.minute = dt.second = 0;
	dt.hundredths = 0;
	dt.deviation = COSEM_DEVIATION_UNSPEC;
	dt.status = 0;
	dt.dow = COSEM_UNSPEC;
	if (cosem_datetime_to_utc(&dt, &session_tz, &u) != 0)
		return t;
	return u;
}

static void
plan_profile(struct session *s)
{
	uint32_t period = s->disc_period ? s->disc_period : s->m.profile_period;
	int64_t chunk = (int64_t)period * SESSION_PROFILE_CHUNK_ROWS;
	int64_t now = s->meter_now, from;

	s->nranges = 0;
	/* holes first: they are the oldest data at risk of leaving the meter */
	for (size_t i = 0; i < s->m.ngaps && s->nranges < SESSION_MAX_GAPS; i++) {
		for (int64_t f = s->m.gaps[i].from;
		     f < s->m.gaps[i].to && s->nranges < SESSION_MAX_GAPS; f += chunk) {
			int64_t t = f + chunk < s->m.gaps[i].to ? f + chunk : s->m.gaps[i].to;
			s->ranges[s->nranges++] = (struct range){f + period, t};
		}
	}
	if (s->m.ptr_profile != STORE_NULL)
		from = s->m.ptr_profile + period;
	else
		from = now - (int64_t)s->cfg->collection.profile_backfill_days * 86400;
	/* intervals are stamped with their end: the first wanted one ends
	 * at the next multiple of the period */
	from = (from + period - 1) / period * period;
	for (int64_t f = from; f <= now && s->nranges < SESSION_MAX_RANGES; f += chunk) {
		int64_t t = f + chunk - period < now ? f + chunk - period : now;
		s->ranges[s->nranges++] = (struct range){f, t};
	}
}

static bool
log_present(struct session *s, int li)
{
	struct obis o = OBIS(0, 0, 99, 98, session_log_e[li], 255);
	if (!s->have_objs)
		return true;
	return discovery_has(s->objs, s->nobjs, &o, 7);
}

/* Start the request of the current task and sub-step; false when there
 * is nothing (more) to ask in this task. */
static bool
task_start(struct session *s)
{
	s->n_items = 0;
	switch (s->task) {
	case T_CLOCK_REGS:
		if (s->sub > 0)
			return false;
		item(s, 8, &OBIS_CLOCK, 2, NULL);
		for (size_t i = 0; i < s->nregs; i++) {
			uint16_t cls = obis_class(&s->reg_obis[i]);
			if (cls == 0)
				cls = 3;
			item(s, cls, &s->reg_obis[i], 2, NULL);
			if (cls != 1)
				item(s, cls, &s->reg_obis[i], 3, NULL);
		}
		if (s->push != NULL && s->n_items < SESSION_MAX_ITEMS) {
			s->push_item = s->n_items;
			item(s, 40, &OBIS_PUSH_SETUP, 2, NULL);
		}
		return session_get(s);
	case T_DISC_OBJECTS:
		if (s->sub > 0 || (s->m.n_lp_cols > 0 && !s->m.discover))
			return false;
		s->discovered = true;
		item(s, 15, &OBIS_ASSOC, 2, NULL);
		return session_get(s);
	case T_DISC_PROFILE:
		if (s->sub > 0 || !s->discovered)
			return false;
		s->m.n_lp_cols = 0;
		item(s, 7, &OBIS_LP, 3, NULL);
		item(s, 7, &OBIS_LP, 4, NULL);
		return session_get(s);
	case T_DISC_SCALERS:
		if (s->sub > 0 || !s->discovered)
			return false;
		for (size_t i = 0; i < s->m.n_lp_cols && s->n_items < SESSION_MAX_ITEMS; i++)
			if (s->m.lp_cols[i].class_id == 3 || s->m.lp_cols[i].class_id == 4)
				item(s, s->m.lp_cols[i].class_id, &s->m.lp_cols[i].obis, 3, NULL);
		if (s->n_items == 0)
			return false;
		return session_get(s);
	case T_PROFILE:
		if (s->sub == 0) {
			if (s->m.n_lp_cols == 0) {
				log_meter(LOG_NOTICE, s->m.serial,
				          "no load-profile layout: reading with the IDIS default");
				lp_default_layout(&s->m);
			}
			lp_map_columns(s);
			if (!s->have_meter_now)
				return false;
			plan_profile(s);
		}
		if (s->sub >= s->nranges)
			return false;
		log_meter(LOG_DEBUG, s->m.serial, "load profile %" PRId64 "..%" PRId64,
		          s->ranges[s->sub].from, s->ranges[s->sub].to);
		put_range(s, &OBIS_LP, s->ranges[s->sub].from, s->ranges[s->sub].to);
		item(s, 7, &OBIS_LP, 2, &s->acc);
		return session_get(s);
	case T_EVENTS:
		if (!s->have_meter_now)
			return false;
		while (s->sub < SESSION_NLOGS && !log_present(s, (int)s->sub))
			s->sub++;
		if (s->sub >= SESSION_NLOGS)
			return false;
		{
			struct obis o = OBIS(0, 0, 99, 98, session_log_e[s->sub], 255);
			int64_t from = s->m.ptr_events[s->sub];
			if (from == STORE_NULL)
				from = s->meter_now -
				       (int64_t)s->cfg->collection.profile_backfill_days * 86400;
			put_range(s, &o, from, s->meter_now);
			item(s, 7, &o, 2, &s->acc);
		}
		return session_get(s);
	case T_BILLING_COLS:
		if (s->sub > 0 || !s->have_meter_now)
			return false;
		if (s->have_objs && !discovery_has(s->objs, s->nobjs, &OBIS_BILLING, 7))
			return false;
		if (s->m.ptr_billing != STORE_NULL && s->m.ptr_billing >= month_start(s->meter_now))
			return false; /* no period has ended since the last read */
		item(s, 7, &OBIS_BILLING, 3, NULL);
		return session_get(s);
	case T_BILLING:
		if (s->sub > 0 || s->n_bill_cols == 0)
			return false;
		{
			int64_t from =
			    s->m.ptr_billing != STORE_NULL
			        ? s->m.ptr_billing + 1
			        : s->meter_now -
			              (int64_t)s->cfg->collection.profile_backfill_days * 86400;
			put_range(s, &OBIS_BILLING, from, s->meter_now);
			item(s, 7, &OBIS_BILLING, 2, &s->acc);
		}
		return session_get(s);
	case T_CLOCK_SYNC: {
		if (s->sub > 0 || !s->have_meter_now)
			return false;
		int64_t now = wall_now();
		int64_t drift = s->meter_now - s->clock_read_at;
		int64_t adrift = drift < 0 ? -drift : drift;
		if (adrift <= s->cfg->collection.clock_drift_threshold_s)
			return false;
		if (adrift > SESSION_CLOCK_SYNC_MAX) {
			log_meter(LOG_WARNING, s->m.serial,
			          "clock off by %" PRId64 " s: too far to correct automatically",
			          drift);
			return false;
		}
		struct cosem_datetime dt;
		struct mbuf b, out;
		struct xdlms_desc d = {8, OBIS_CLOCK, 2};
		cosem_datetime_from_utc(now, &session_tz, &dt);
		mbuf_init(&b, s->setbuf, sizeof(s->setbuf));
		axdr_put_datetime_octets(&b, &dt);
		mbuf_init(&out, s->outp, s->out_cap);
		log_meter(LOG_NOTICE, s->m.serial, "clock off by %" PRId64 " s: setting it", drift);
		int r = dlms_client_set(&s->c, &out, &d, NULL, s->setbuf, b.len);
		if (r != 0) {
			session_fail(s, "partial", "clock sync: %s", meter_strerror(r));
			return false;
		}
		if (!session_counter_ok(s))
			return false;
		session_flush(s, &out);
		session_arm_timer(s);
		return true;
	}
	default:
		return false;
	}
}

static void
session_release(struct session *s)
{
	struct mbuf out;

	session_enter_state(s, SESSION_RELEASE);
	mbuf_init(&out, s->outp, s->out_cap);
	if (dlms_client_release(&s->c, &out) != 0) {
		session_close(s);
		return;
	}
	session_flush(s, &out);
	session_arm_timer(s);
}

/* ---- operator commands ------------------------------------------------------ */

static int64_t
wall_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The job cannot go on on this connection: back to the queue, where its
 * next attempt starts again from the state it reads (credit_add from its
 * committed baseline). */
static void
cmd_give_back(struct session *s, const char *why)
{
	struct command_queue *q = command_get();

	if (s->job == NULL)
		return;
	cmdk_run_free(&s->run);
	if (q != NULL)
		command_release(q, s->job, why);
	s->job = NULL;
}

static void
cmd_ckpt_done(void *arg, bool ok)
{
	struct session *s = arg;
	/* from the command queue's database callback: continue from our
	 * own event, never nested in someone else's */
	s->ckpt_ok = ok;
	event_active(s->ev_cmd, EV_TIMEOUT, 0);
}

/*
 * What a read_now read goes where polled data goes, through the same
 * paths: registers (with the scaler_unit read along), the load profile
 * (1-0:99.1.0.255 only, mapped by the meter's layout) and the event logs,
 * into this session's batch and MQTT messages.  The read pointers stay
 * where the collection left them: an operator's range must not make the
 * collection skip a gap before it.
 */
static void
cmd_store_reads(struct session *s)
{
	struct message_register mr[CMDK_MAX_REGISTERS];
	size_t nmr = 0;
	int64_t read_at = wall_now();
	int64_t at = s->have_meter_now ? s->meter_now : read_at;
	int64_t profile_last = s->profile_last, event_last[SESSION_NLOGS];
	struct cmdk_reading rd;

	memcpy(event_last, s->event_last, sizeof(event_last));
	for (unsigned i = 0; cmdk_run_reading(&s->run, i, &rd); i++) {
		struct dlms_client_event ev = {
		    .type = DLMS_CEV_RESULT, .data = rd.value, .data_len = rd.value_len};
		if (rd.value == NULL)
			continue;
		if (rd.what == CMDK_RD_REGISTER) {
			struct reg_result r = {0};
			struct profile_column col;
			const uint8_t *su = rd.scaler_unit;
			if (decode_int(rd.value, rd.value_len, &r.raw) != 0 ||
			    nmr == CMDK_MAX_REGISTERS)
				continue;
			if (su != NULL &&
			    profile_scaler_unit_decode(su, rd.scaler_unit_len, &col) > 0) {
				r.scaler = col.scaler;
				r.unit = col.unit;
				r.have_su = true;
			} else if (rd.class_id != 1) {
				continue; /* a value without its scaler is not a reading */
			}
			r.have_value = true;
			reg_store_one(s, &rd.obis, &r, at, read_at, mr, &nmr);
		} else if (rd.what == CMDK_RD_PROFILE) {
			if (!obis_eq(&rd.obis, &OBIS_LP))
				continue;
			if (s->m.n_lp_cols == 0)
				lp_default_layout(&s->m);
			lp_map_columns(s);
			profile_result(s, &ev);
		} else {
			for (int li = 0; li < SESSION_NLOGS; li++)
				if (rd.obis.v[4] == session_log_e[li])
					events_result(s, &ev, li);
		}
	}
	regs_publish(s, mr, nmr, read_at);
	s->profile_last = profile_last;
	memcpy(s->event_last, event_last, sizeof(event_last));
}

/*
 * Run commands while there are any for this meter: true when a request is
 * on the engine or a checkpoint is being committed (the session waits),
 * false when there is nothing (more) to do.
 */
static bool
cmd_next(struct session *s)
{
	struct command_queue *q = command_get();
	struct mbuf out;

	if (q == NULL || s->ckpt_wait)
		return s->ckpt_wait;
	for (;;) {
		if (s->job == NULL) {
			if (s->failed || s->stop || s->state != SESSION_TASKS)
				return false;
			if (command_take(q, s->m.id, &s->job, 1) == 0)
				return false;
			if (cmdk_run_init(&s->run, &s->job->params, s->job->progress) != 0) {
				command_finish(q, s->job, false, NULL, "out of memory");
				s->job = NULL;
				continue;
			}
			s->ncommands++;
			log_meter(LOG_DEBUG, s->m.serial, "command %lld %s: running",
			          (long long)s->job->id, cmdk_name(s->job->kind));
		}
		mbuf_init(&out, s->outp, s->out_cap);
		int st = cmdk_run_next(&s->run, &s->c, &out, wall_now_ms());
		if (st == CMDK_SENT) {
			if (!session_counter_ok(s)) {
				cmd_give_back(s, "invocation counter window exhausted");
				return false;
			}
			session_flush(s, &out);
			session_arm_timer(s);
			return true;
		}
		if (st == CMDK_CHECKPOINT) {
			s->ckpt_wait = true;
			command_checkpoint(q, s->job, cmdk_run_progress(&s->run), cmd_ckpt_done, s);
			return true;
		}
		/* finished (or an error the run could not even report) */
		bool ok = st == CMDK_FINISHED && cmdk_run_ok(&s->run);
		const char *res = st == CMDK_FINISHED ? cmdk_run_result(&s->run) : NULL;
		const char *err = st == CMDK_FINISHED ? cmdk_run_error(&s->run) : meter_strerror(st);
		if (ok && s->job->kind == CMDK_READ_NOW)
			cmd_store_reads(s);
		command_finish(q, s->job, ok, res, err);
		s->job = NULL;
		cmdk_run_free(&s->run);
	}
}

static void session_release(struct session *s);

static void
session_cmdcb(evutil_socket_t fd, short what, void *arg)
{
	struct session *s = arg;
	(void)fd;
	(void)what;

	s->ckpt_wait = false;
	if (s->job != NULL && (!s->ckpt_ok || s->state != SESSION_TASKS)) {
		/* nothing was sent after the read: safe to run again */
		cmd_give_back(s, s->ckpt_ok ? "connection lost before acting"
		                            : "checkpoint not stored: not acting");
	}
	if (s->state == SESSION_TASKS) {
		session_next_task(s);
		session_pump(s);
	} else if (s->state >= SESSION_CLOSE) {
		session_defer(s); /* the step waits for us to be done */
	}
}

/* A RESULT or DONE of a command's request. */
static void
cmd_event(struct session *s, const struct dlms_client_event *ev)
{
	if (ev->type == DLMS_CEV_DONE &&
	    (ev->err == METER_ETIMEOUT || ev->err == METER_EPROTO || ev->err == METER_EAUTH ||
	     ev->err == METER_EREPLAY || ev->err == METER_EABORTED)) {
		/* the association can no longer be trusted, and whether the
		 * meter acted is unknown: the next attempt reads and decides */
		session_fail(s, "partial", "command %lld: %s", (long long)s->job->id,
		             meter_strerror(ev->err));
		s->stop = true;
		cmd_give_back(s, meter_strerror(ev->err));
		session_next_task(s);
		return;
	}
	cmdk_run_event(&s->run, ev);
	if (ev->type == DLMS_CEV_DONE)
		session_next_task(s);
}

/*
 * Pushes held from this session, between two requests: once the
 * registers' scalers are in (or the session reads none), ask for the push
 * setup's object list if this session has not, then store them.  True
 * when a request went out (its answer comes back here).
 */
static bool
push_next(struct session *s, bool last)
{
	if (s->n_mid_push == 0 || s->job != NULL || s->push_reading)
		return false;
	if (!s->regs_done && !s->m.commands_only && !last)
		return false;
	if (s->n_push_cols == 0 && !s->push_cols_asked && !s->failed && !s->stop) {
		s->push_cols_asked = true;
		s->n_items = 0;
		item(s, 40, &OBIS_PUSH_SETUP, 2, NULL);
		if (session_get(s)) {
			s->push_reading = true;
			return true;
		}
	}
	if (s->n_push_cols == 0) {
		log_meter(LOG_WARNING, s->m.serial,
		          "%zu pushes during the session not stored: push setup not read",
		          s->n_mid_push);
		for (size_t i = 0; i < s->n_mid_push; i++)
			free(s->mid_push[i]);
		s->n_mid_push = 0;
		return false;
	}
	mid_push_store(s);
	return false;
}

/* The answer to push_next()'s request. */
static void
push_event(struct session *s, const struct dlms_client_event *ev)
{
	if (ev->type == DLMS_CEV_RESULT) {
		if (ev->err != 0 || ev->dar != 0 || ev->data == NULL ||
		    profile_columns_decode(ev->data, ev->data_len, s->push_cols, PROFILE_MAX_COLUMNS,
		                           &s->n_push_cols) < 0)
			s->n_push_cols = 0;
		return;
	}
	s->push_reading = false;
	if (ev->err == METER_ETIMEOUT || ev->err == METER_EPROTO || ev->err == METER_EAUTH ||
	    ev->err == METER_EREPLAY) {
		/* as for a task: the association can no longer be trusted */
		session_fail(s, ev->err == METER_ETIMEOUT || ev->err == METER_EPROTO ? "partial" : "auth",
		             "push setup: %s", meter_strerror(ev->err));
		s->stop = true;
	}
	session_next_task(s);
}

/* A DataNotification during the session. */
static void
push_received(struct session *s, const struct dlms_client_event *ev)
{
	if (ev->err != 0) {
		/* not authentic (or in clear from a meter that ciphers): never
		 * stored; the session goes on, its own APDUs are checked */
		log_meter(LOG_WARNING, s->m.serial, "push during the session refused: %s: dropped",
		          meter_strerror(ev->err));
		return;
	}
	if (ev->data == NULL || ev->data_len == 0 || ev->data_len > SESSION_PUSH_MAX) {
		log_meter(LOG_WARNING, s->m.serial, "push during the session of %zu bytes: dropped",
		          ev->data_len);
		return;
	}
	/* before the association is up: the pre-session push's path (read
	 * with the registers) */
	if (!s->associated && session_add_push(s, ev->data, ev->data_len) == 0) {
		log_meter(LOG_INFO, s->m.serial, "pushed while associating: stored with the registers");
		return;
	}
	if (s->n_mid_push == SESSION_MID_PUSHES || s->state >= SESSION_CLOSE) {
		log_meter(LOG_WARNING, s->m.serial, "push during the session not stored (%s)",
		          s->state >= SESSION_CLOSE ? "session over" : "too many pushes");
		return;
	}
	uint8_t *b = malloc(ev->data_len);
	if (b == NULL) {
		log_meter(LOG_WARNING, s->m.serial, "push during the session: out of memory");
		return;
	}
	memcpy(b, ev->data, ev->data_len);
	s->mid_push[s->n_mid_push] = b;
	s->mid_push_len[s->n_mid_push++] = ev->data_len;
	log_meter(LOG_INFO, s->m.serial, "push during the session (%zu bytes): held to be stored",
	          ev->data_len);
	/* mapped already and nothing asked of the meter for it: store now
	 * (this is also the only chance once the release is under way) */
	if (s->n_push_cols > 0 && (s->regs_done || s->m.commands_only))
		mid_push_store(s);
}

static void
session_next_task(struct session *s)
{
	/* commands first, and between any two requests of the collection */
	if (cmd_next(s))
		return;
	if (push_next(s, false))
		return;
	if (s->m.commands_only)
		s->task = T_END;
	while (s->task < T_END) {
		if (s->failed || s->stop)
			break;
		if (task_start(s))
			return;
		if (s->failed)
			break;
		s->task++;
		s->sub = 0;
	}
	if (push_next(s, true))
		return;
	session_release(s);
}

/* Discovery is complete once the scalers are in: keep its rows for the
 * scheduler to store. */
static void
discovery_finish(struct session *s)
{
	if (!s->discovered || s->disc_layout != NULL)
		return;
	if (s->have_objs)
		s->disc_objects = discovery_objects_text(s->objs, s->nobjs);
	if (s->m.n_lp_cols > 0)
		s->disc_layout = discovery_layout_text(&OBIS_LP, s->m.lp_cols, s->m.n_lp_cols);
}

static void
task_result(struct session *s, const struct dlms_client_event *ev)
{
	switch (s->task) {
	case T_CLOCK_REGS:
		regs_result(s, ev);
		break;
	case T_DISC_OBJECTS:
	case T_DISC_PROFILE:
	case T_DISC_SCALERS:
		discovery_result(s, ev);
		break;
	case T_PROFILE:
		profile_result(s, ev);
		break;
	case T_EVENTS:
		events_result(s, ev, (int)s->sub);
		break;
	case T_BILLING_COLS:
		if (ev->err == 0 && ev->dar == 0 && ev->data != NULL &&
		    profile_columns_decode(ev->data, ev->data_len, s->bill_cols,
		                           PROFILE_MAX_COLUMNS, &s->n_bill_cols) < 0)
			s->n_bill_cols = 0;
		break;
	case T_BILLING:
		billing_result(s, ev);
		break;
	case T_CLOCK_SYNC:
		if (ev->err == 0 && ev->dar != 0)
			log_meter(LOG_WARNING, s->m.serial, "clock sync refused (dar %u)", ev->dar);
		break;
	}
}

static void
task_done(struct session *s, const struct dlms_client_event *ev)
{
	if (s->task == T_CLOCK_REGS)
		regs_store(s);
	if (s->task == T_DISC_SCALERS || (s->task == T_DISC_PROFILE && ev->err != 0))
		discovery_finish(s);
	if (ev->err != 0) {
		log_meter(LOG_WARNING, s->m.serial, "%s: %s", task_names[s->task],
		          meter_strerror(ev->err));
		if (ev->err == METER_EAUTH || ev->err == METER_EREPLAY) {
			/* a security failure, reported as one (outcome "auth",
			 * not "partial"): what was read before it is authentic
			 * and kept, nothing after it is asked */
			if (ev->err == METER_EREPLAY)
				log_meter(LOG_WARNING, s->m.serial,
				          "invocation counter of the meter went back (reset or "
				          "replayed frame): refused; it needs new keys if it persists");
			session_fail(s, "auth", "%s: %s", task_names[s->task],
			             meter_strerror(ev->err));
			s->stop = true;
		} else if (ev->err == METER_ETIMEOUT || ev->err == METER_EPROTO) {
			/* the association can no longer be trusted */
			session_fail(s, "partial", "%s: %s", task_names[s->task],
			             meter_strerror(ev->err));
			s->stop = true;
		} else {
			/* the meter refused this request: go on with the next task */
			s->task++;
			s->sub = 0;
		}
	} else {
		s->sub++;
	}
	session_next_task(s);
}

static void
session_on_event(struct session *s, const struct dlms_client_event *ev)
{
	switch (ev->type) {
	case DLMS_CEV_ASSOCIATED:
		s->associated = true;
		log_meter(LOG_DEBUG, s->m.serial, "associated (conformance %06x, max pdu %u)",
		          s->c.conformance, s->c.server_max_pdu);
		session_enter_state(s, SESSION_TASKS);
		s->task = T_CLOCK_REGS;
		s->sub = 0;
		session_next_task(s);
		break;
	case DLMS_CEV_RESULT:
		if (s->push_reading)
			push_event(s, ev);
		else if (s->job != NULL)
			cmd_event(s, ev);
		else
			task_result(s, ev);
		break;
	case DLMS_CEV_DONE:
		if (s->push_reading)
			push_event(s, ev);
		else if (s->job != NULL)
			cmd_event(s, ev);
		else
			task_done(s, ev);
		break;
	case DLMS_CEV_NOTIFICATION:
		push_received(s, ev);
		break;
	case DLMS_CEV_RELEASED:
		s->released = true;
		session_close(s);
		break;
	case DLMS_CEV_FAILED:
		if (ev->err == METER_EREJECTED)
			session_fail(s, "rejected",
			             "association refused (result %u, diagnostic %u)", ev->result,
			             ev->diag);
		else
			session_fail(s, outcome_of(ev->err), "%s%s",
			             s->associated ? "" : "association: ", meter_strerror(ev->err));
		session_close(s);
		break;
	}
}

/* Poll the engine until it has nothing more to say, then send; when a
 * read brought more to answer than out holds, send and poll again. */
static void
session_pump(struct session *s)
{
	struct dlms_client_event ev;
	struct mbuf out;

	mbuf_init(&out, s->outp, s->out_cap);
	while (s->state > SESSION_CONNECT && s->state < SESSION_CLOSE) {
		if (dlms_client_poll(&s->c, &out, &ev) == DLMS_CEV_NONE) {
			/* out.len == 0: nothing moved, do not spin */
			if (!dlms_client_out_pending(&s->c) || out.len == 0)
				break;
			if (!session_counter_ok(s)) {
				session_close(s);
				return;
			}
			session_flush(s, &out);
			continue;
		}
		if (!session_counter_ok(s)) {
			session_close(s);
			return;
		}
		session_flush(s, &out);
		int before = s->state;
		session_on_event(s, &ev);
		if (s->state >= SESSION_CLOSE || before != s->state)
			mbuf_init(&out, s->outp, s->out_cap);
	}
	if (s->state < SESSION_CLOSE) {
		session_flush(s, &out);
		if (s->c.state == DLMS_CLIENT_ASSOCIATING && s->state == SESSION_LINK)
			session_enter_state(s, SESSION_ASSOCIATE);
		session_arm_timer(s);
	}
}

static void
session_readcb(struct bufferevent *bev, void *arg)
{
	struct session *s = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	int stalls = 0;

	/* state first: once closed, the bufferevent is on its way out */
	while (s->state < SESSION_CLOSE && evbuffer_get_length(in) > 0) {
		size_t n = evbuffer_get_contiguous_space(in);
		const uint8_t *p = evbuffer_pullup(in, (ev_ssize_t)n);
		size_t took = dlms_client_feed(&s->c, p, n);

		if (took > 0) {
			s->bytes_in += took;
			evbuffer_drain(in, took);
			stalls = 0;
		}
		session_pump(s);
		/* Polling makes room; an engine that takes nothing twice in
		 * a row holds input it can never use. */
		if (took == 0 && ++stalls > 1 && s->state < SESSION_CLOSE) {
			session_fail(s, "protocol", "receive buffer full");
			session_close(s);
		}
	}
}

static void
session_eventcb(struct bufferevent *bev, short what, void *arg)
{
	struct session *s = arg;
	struct mbuf out;
	(void)bev;

	if (what & BEV_EVENT_CONNECTED) {
		s->tr->connected(s->bev, &s->to);
		session_enter_state(s, s->m.hdlc ? SESSION_LINK : SESSION_ASSOCIATE);
		mbuf_init(&out, s->outp, s->out_cap);
		int r = dlms_client_open(&s->c, &out);
		if (r != 0) {
			session_fail(s, "error", "open: %s", meter_strerror(r));
			session_close(s);
			return;
		}
		if (!session_counter_ok(s)) {
			session_close(s);
			return;
		}
		session_flush(s, &out);
		session_pump(s);
		return;
	}
	if (what & BEV_EVENT_TIMEOUT) {
		session_fail(s, "timeout", "%s",
		             s->state == SESSION_CONNECT ? "connect timed out"
		                                         : "no data from the meter");
	} else if (what & BEV_EVENT_EOF) {
		/* a meter that hangs up instead of answering the RLRQ is done */
		if (s->state == SESSION_RELEASE)
			s->released = true;
		else
			session_fail(s, "aborted", "connection closed by the meter");
	} else {
		int e = EVUTIL_SOCKET_ERROR();
		session_fail(s, s->state == SESSION_CONNECT ? "refused" : "error", "%s%s",
		             s->state == SESSION_CONNECT ? "connect: " : "",
		             evutil_socket_error_to_string(e));
	}
	session_close(s);
}

static void
session_timercb(evutil_socket_t fd, short what, void *arg)
{
	struct session *s = arg;
	struct mbuf out;
	(void)fd;
	(void)what;

	mbuf_init(&out, s->outp, s->out_cap);
	s->timer_gen = UINT32_MAX; /* re-arm whatever the engine wants now */
	if (dlms_client_timeout(&s->c, &out) == 0)
		session_flush(s, &out);
	session_pump(s);
}

static void
session_deadlinecb(evutil_socket_t fd, short what, void *arg)
{
	struct session *s = arg;
	(void)fd;
	(void)what;

	if (s->stop || s->state != SESSION_TASKS) {
		session_fail(s, "timeout", "session deadline");
		dlms_client_abort(&s->c);
		session_close(s);
		return;
	}
	session_abort(s, "session deadline");
	struct timeval tv = {10, 0};
	evtimer_add(s->ev_deadline, &tv);
}

/* ---- close, store, done --------------------------------------------------- */

static void
session_close(struct session *s)
{
	if (s->state >= SESSION_CLOSE)
		return;
	if (s->c.state != DLMS_CLIENT_CLOSED && s->c.state != DLMS_CLIENT_IDLE)
		dlms_client_abort(&s->c);
	if (s->bev != NULL) {
		s->tr->close(s->bev);
		s->bev = NULL;
	}
	/* a command cut off mid-run goes back to the queue (one waiting for
	 * its checkpoint is given back by session_cmdcb) */
	if (s->job != NULL && !s->ckpt_wait)
		cmd_give_back(s, s->error[0] ? s->error : "connection lost");
	evtimer_del(s->ev_timer);
	evtimer_del(s->ev_deadline);
	session_enter_state(s, SESSION_CLOSE);
	session_defer(s);
}

static void
session_stored(int status, const char *err, void *arg)
{
	struct session *s = arg;

	s->store_back = true;
	s->committed = status == 0;
	if (status != 0)
		log_meter(LOG_WARNING, s->m.serial,
		          "readings not stored: %s (read again next time)", err ? err : "?");
	session_defer(s);
}

static void
add_outbox(struct session *s, struct message *msg, int r)
{
	if (r == 0) {
		store_add_outbox(s->batch, msg->topic, msg->payload, msg->len, msg->qos,
		                 msg->retain);
		message_clear(msg);
	}
}

static void
session_submit(struct session *s)
{
	struct timespec t1;
	struct store_session ss;
	bool ok;
	int failures;
	enum store_reach reach;
	char what[16];

	clock_gettime(CLOCK_MONOTONIC, &t1);
	s->duration = (double)(t1.tv_sec - s->t0.tv_sec) + (t1.tv_nsec - s->t0.tv_nsec) / 1e9;
	s->finished_at = wall_now();
	if (!s->failed && !s->partial)
		s->outcome = "ok";
	if (s->outcome == NULL)
		s->outcome = "error";
	ok = strcmp(s->outcome, "ok") == 0;

	if (s->profile_last != STORE_NULL)
		store_add_pointer(s->batch, s->m.id, "profile", s->profile_last, STORE_NULL);
	for (int i = 0; i < SESSION_NLOGS; i++)
		if (s->event_last[i] != STORE_NULL) {
			snprintf(what, sizeof(what), "events:%u", session_log_e[i]);
			store_add_pointer(s->batch, s->m.id, what, s->event_last[i], STORE_NULL);
		}
	if (s->billing_last != STORE_NULL)
		store_add_pointer(s->batch, s->m.id, "billing", s->billing_last, STORE_NULL);

	if (s->shutdown && !ok)
		s->outcome = "aborted";
	failures = session_failures(s);
	if (s->associated)
		reach = STORE_REACH_REACHABLE;
	else if (s->shutdown)
		reach = STORE_REACH_KEEP;
	else
		reach = failures >= 5 ? STORE_REACH_UNREACHABLE : STORE_REACH_KEEP;
	store_add_meter_state(s->batch, s->m.id, s->associated ? s->finished_at : STORE_NULL, reach,
	                      ok || s->shutdown ? NULL : s->error, failures);

	if (s->cfg->mqtt.enabled) {
		struct message msg;
		memset(&msg, 0, sizeof(msg));
		if (s->nmiv > 0)
			add_outbox(s, &msg,
			           message_profile(s->cfg, s->m.serial,
			                           (int32_t)(s->disc_period ? s->disc_period
			                                                    : s->m.profile_period),
			                           s->miv, s->nmiv, &msg));
		if (s->nmev > 0)
			add_outbox(s, &msg,
			           message_events(s->cfg, s->m.serial, s->mev, s->nmev, &msg));
		struct message_state st = {.reachable = s->associated,
		                           .last_read = s->associated ? s->finished_at * 1000 : 0,
		                           .last_error = ok ? NULL : s->error,
		                           .updated_at = s->finished_at * 1000};
		add_outbox(s, &msg, message_state(s->cfg, s->m.serial, &st, &msg));
	}

	memset(&ss, 0, sizeof(ss));
	ss.meter = s->m.id;
	ss.instance = s->instance;
	ss.transport = s->tr->name;
	ss.started_at = s->started_at;
	ss.finished_at = s->finished_at;
	ss.outcome = s->outcome;
	ss.bytes_in = (int64_t)s->bytes_in;
	ss.bytes_out = (int64_t)s->bytes_out;
	ss.duration_ms = (int32_t)(s->duration * 1000);
	ss.error = s->error[0] ? s->error : NULL;
	store_add_session(s->batch, &ss);

	if (ok)
		log_meter(LOG_DEBUG, s->m.serial,
		          "session ok: %zu rows, %" PRIu64 "/%" PRIu64 " bytes in/out, %.3f s",
		          s->rows, s->bytes_in, s->bytes_out, s->duration);
	else
		log_meter(s->associated ? LOG_NOTICE : LOG_INFO, s->m.serial,
		          "session %s: %s (%zu rows kept)", s->outcome, s->error, s->rows);
	metric_inc(s->m_sessions, s->tr->name, s->outcome);
	metric_add(s->m_bytes, (double)s->bytes_in, s->tr->name, "in");
	metric_add(s->m_bytes, (double)s->bytes_out, s->tr->name, "out");
	metric_observe(s->m_duration, s->duration, s->tr->name);
	metric_add(s->m_rows, (double)s->rows, s->tr->name);

	session_enter_state(s, SESSION_STORE);
	struct store_batch *b = s->batch;
	s->batch = NULL;
	store_submit(s->store, b, session_stored, s);
}

static void
session_start_connect(struct session *s)
{
	struct transport_target t = {s->m.host, s->m.port};

	session_enter_state(s, SESSION_CONNECT);
	if (s->tr->connect(s->base, &t, &s->to, session_readcb, session_eventcb, s, &s->bev) != 0) {
		session_fail(s, "refused", "connect: %s", strerror(errno));
		session_close(s);
		return;
	}
	struct timeval tv = {SESSION_DEADLINE_S, 0};
	evtimer_add(s->ev_deadline, &tv);
}

static void
session_stepcb(evutil_socket_t fd, short what, void *arg)
{
	struct session *s = arg;
	(void)fd;
	(void)what;

	switch (s->state) {
	case SESSION_NEW:
		session_start_connect(s);
		break;
	case SESSION_CLOSE:
		session_submit(s);
		break;
	case SESSION_STORE:
		if (!s->store_back || s->ckpt_wait)
			break;
		session_enter_state(s, SESSION_DONE);
		s->done(s, s->done_arg);
		break;
	default:
		break;
	}
}

/* ---- life ------------------------------------------------------------------ */

static const double duration_bounds[] = {0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300};

struct session *
session_new(struct event_base *base, const struct config *cfg, struct store *st,
            struct metrics *reg, const struct transport_ops *tr, const struct session_meter *m,
            const char *instance, session_done_fn done, void *arg)
{
	struct session *s;
	struct dlms_client_config cc;
	size_t rx = SESSION_RX_CAP, tx = SESSION_RX_CAP, work = m->ciphering ? SESSION_RX_CAP : 0;

	if ((s = calloc(1, sizeof(*s))) == NULL)
		return NULL;
	s->base = base;
	s->cfg = cfg;
	s->store = st;
	s->tr = tr;
	s->m = *m;
	snprintf(s->instance, sizeof(s->instance), "%s", instance ? instance : "");
	s->done = done;
	s->done_arg = arg;
	s->profile_last = s->billing_last = STORE_NULL;
	for (int i = 0; i < SESSION_NLOGS; i++)
		s->event_last[i] = STORE_NULL;
	s->to.connect_ms = cfg->tcpip.connect_timeout_ms;
	s->to.response_ms = cfg->tcpip.response_timeout_ms;
	s->to.inactivity_s = cfg->tcpip.inactivity_timeout_s;
	if (strcmp(tr->name, "gprs") == 0) {
		/* GPRS round trips take seconds: [gprs] timing (issue 6) */
		s->to.connect_ms = cfg->gprs.connect_timeout_ms;
		s->to.response_ms = cfg->gprs.response_timeout_ms;
		s->to.inactivity_s = cfg->gprs.idle_timeout_s;
	}
	s->nregs = cfg->collection.nregisters;
	memcpy(s->reg_obis, cfg->collection.registers, s->nregs * sizeof(s->reg_obis[0]));

	s->out_cap = 2 * SESSION_RX_CAP + 1024;
	if ((s->mem = malloc(rx + tx + work + SESSION_DATA_CAP + s->out_cap)) == NULL)
		goto fail;
	memset(&cc, 0, sizeof(cc));
	cc.framing = m->hdlc ? DLMS_FRAMING_HDLC : DLMS_FRAMING_WRAPPER;
	cc.client_wport = m->client_addr;
	cc.server_wport = m->logical_addr;
	/* HDLC: the client address in one byte.  The server: the logical
	 * device alone in one byte when the inventory gives no separate
	 * physical address (server_addr equal to logical_addr, as with the
	 * defaults 1/1), else upper logical and lower physical address in
	 * two bytes, or four when either does not fit in seven bits. */
	cc.hdlc_client = (struct hdlc_addr){.upper = m->client_addr, .size = 1};
	if (m->server_addr == m->logical_addr && m->logical_addr <= 0x7f)
		cc.hdlc_server = (struct hdlc_addr){.upper = m->logical_addr, .size = 1};
	else
		cc.hdlc_server = (struct hdlc_addr){
		    .upper = m->logical_addr,
		    .lower = m->server_addr,
		    .size = m->logical_addr > 0x7f || m->server_addr > 0x7f ? 4 : 2};
	/* what we propose bounds what the meter may choose, and so the
	 * largest window of frames one call can append to `out` */
	cc.hdlc_params = (struct hdlc_params){1024, 1024, 1, 1};
	cc.mechanism = m->mechanism;
	if (m->mechanism == ACSE_MECH_LLS) {
		cc.password = (const uint8_t *)s->m.password;
		cc.password_len = strlen(s->m.password);
	}
	cc.ciphering = m->ciphering;
	memcpy(cc.keys.ek, m->ek, sizeof(cc.keys.ek));
	memcpy(cc.keys.ak, m->ak, sizeof(cc.keys.ak));
	memcpy(cc.system_title, "AMD\0\0\0\0\1", 8);
	cc.tx_counter = m->tx_first;
	cc.rx_counter.last = m->rx_counter;
	cc.rx_counter.seen = m->rx_seen;
	cc.max_pdu = SESSION_MAX_PDU;
	cc.timeout_ms = s->to.response_ms > 0 ? (uint32_t)s->to.response_ms : 0;
	cc.buf.rx = s->mem;
	cc.buf.rx_cap = rx;
	cc.buf.tx = s->mem + rx;
	cc.buf.tx_cap = tx;
	cc.buf.work = work ? s->mem + rx + tx : NULL;
	cc.buf.work_cap = work;
	cc.buf.data = s->mem + rx + tx + work;
	cc.buf.data_cap = SESSION_DATA_CAP;
	s->outp = s->mem + rx + tx + work + SESSION_DATA_CAP;
	if (dlms_client_init(&s->c, &cc) != 0)
		goto fail;
	if (dlms_client_out_max(&s->c) > s->out_cap)
		goto fail;
	s->timer_gen = dlms_client_timer(&s->c, &(uint32_t){0});
	if ((s->ev_timer = evtimer_new(base, session_timercb, s)) == NULL ||
	    (s->ev_deadline = evtimer_new(base, session_deadlinecb, s)) == NULL ||
	    (s->ev_step = event_new(base, -1, 0, session_stepcb, s)) == NULL ||
	    (s->ev_cmd = event_new(base, -1, 0, session_cmdcb, s)) == NULL)
		goto fail;
	if ((s->batch = store_batch_new(st)) == NULL)
		goto fail;
	if (reg != NULL) {
		s->m_sessions = metrics_counter(reg, "ammd_sessions_total",
		                                "Meter sessions by transport and outcome.",
		                                "transport,outcome");
		s->m_bytes = metrics_counter(reg, "ammd_session_bytes_total",
		                             "Bytes exchanged with meters.", "transport,direction");
		s->m_duration =
		    metrics_histogram(reg, "ammd_session_duration_seconds",
		                      "Duration of meter sessions.", "transport", duration_bounds,
		                      sizeof(duration_bounds) / sizeof(duration_bounds[0]));
		s->m_rows = metrics_counter(reg, "ammd_session_rows_total",
		                            "Rows read from meters.", "transport");
	}
	return s;
fail:
	session_free(s);
	return NULL;
}

void
session_start(struct session *s)
{
	clock_gettime(CLOCK_MONOTONIC, &s->t0);
	s->started_at = wall_now();
	session_defer(s);
}

void
session_abort(struct session *s, const char *why)
{
	if (s->state >= SESSION_CLOSE)
		return;
	log_meter(LOG_INFO, s->m.serial, "ending the session: %s", why);
	if (s->state == SESSION_TASKS) {
		if (!s->failed && !s->partial)
			session_fail(s, "partial", "%s", why);
		s->stop = true;
		return;
	}
	if (s->state == SESSION_RELEASE)
		return;
	session_fail(s, "aborted", "%s", why);
	if (s->state == SESSION_NEW) {
		session_enter_state(s, SESSION_CLOSE);
		session_defer(s);
		return;
	}
	session_close(s);
}

int
session_add_push(struct session *s, const uint8_t *body, size_t len)
{
	if (len == 0 || len > SESSION_PUSH_MAX || s->push != NULL)
		return -1;
	if ((s->push = malloc(len)) == NULL)
		return -1;
	memcpy(s->push, body, len);
	s->push_len = len;
	return 0;
}

void
session_set_config(struct session *s, const struct config *cfg)
{
	s->cfg = cfg;
}

void
session_free(struct session *s)
{
	if (s == NULL)
		return;
	if (s->bev != NULL)
		s->tr->close(s->bev);
	if (s->ev_timer != NULL)
		event_free(s->ev_timer);
	if (s->ev_deadline != NULL)
		event_free(s->ev_deadline);
	if (s->ev_step != NULL)
		event_free(s->ev_step);
	if (s->ev_cmd != NULL)
		event_free(s->ev_cmd);
	cmd_give_back(s, "session ended");
	if (s->batch != NULL)
		store_batch_free(s->batch);
	free(s->mem);
	free(s->objs);
	free(s->disc_objects);
	free(s->disc_layout);
	free(s->push);
	if (s->n_mid_push > 0)
		log_meter(LOG_WARNING, s->m.serial, "%zu pushes during the session not stored",
		          s->n_mid_push);
	for (size_t i = 0; i < s->n_mid_push; i++)
		free(s->mid_push[i]);
	free(s->miv);
	free(s->mev);
	free(s);
}

int32_t
session_meter_id(const struct session *s)
{
	return s->m.id;
}

const char *
session_serial(const struct session *s)
{
	return s->m.serial;
}

int
session_state(const struct session *s)
{
	return s->state;
}

const char *
session_outcome(const struct session *s)
{
	return s->outcome ? s->outcome : "?";
}

bool
session_ok(const struct session *s)
{
	return s->outcome != NULL && strcmp(s->outcome, "ok") == 0;
}

bool
session_reached(const struct session *s)
{
	return s->associated;
}

bool
session_committed(const struct session *s)
{
	return s->committed;
}

const char *
session_error(const struct session *s)
{
	return s->error;
}

uint64_t
session_bytes_in(const struct session *s)
{
	return s->bytes_in;
}

uint64_t
session_bytes_out(const struct session *s)
{
	return s->bytes_out;
}

double
session_duration(const struct session *s)
{
	return s->duration;
}

int
session_failures(const struct session *s)
{
	if (session_ok(s))
		return 0;
	return s->shutdown ? s->m.failures : s->m.failures + 1;
}

void
session_shutdown(struct session *s)
{
	if (s->state >= SESSION_CLOSE)
		return;
	s->shutdown = true;
	session_abort(s, "shutting down");
}

bool
session_was_shut_down(const struct session *s)
{
	return s->shutdown && !session_ok(s);
}

size_t
session_rows(const struct session *s)
{
	return s->rows;
}

uint32_t
session_tx_counter(const struct session *s)
{
	return dlms_client_tx_counter(&s->c);
}

bool
session_rx_counter(const struct session *s, uint32_t *ic)
{
	struct dlms_rx_counter rc = dlms_client_rx_counter(&s->c);

	if (!s->m.ciphering || !rc.seen)
		return false;
	*ic = rc.last;
	return true;
}

const char *
session_discovered_objects(const struct session *s)
{
	return s->disc_objects;
}

const char *
session_discovered_layout(const struct session *s)
{
	return s->disc_layout;
}
