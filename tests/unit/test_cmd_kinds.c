/*
 * test_cmd_kinds.c: the command kinds (daemon/cmd_kinds.c).  Parameter
 * checks from a table of good and bad parameter sets; the step machines
 * driven against meterlib's DLMS server engine in-process, with a tiny
 * object model of a Kamstrup-like meter (breaker with control modes,
 * kWh-countdown credit tied to the A+ register, account, limiter, activity
 * calendar, special days, tariff scripts, clock), checking the meter's
 * state afterwards and the before/after in the result; and the
 * exactly-once credit_add across an attempt killed at every point.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "axdr.h"
#include "cmd_kinds.h"
#include "config.h"
#include "cosem_time.h"
#include "dlms_client.h"
#include "dlms_server.h"
#include "meter_error.h"
#include "xdlms.h"

#define NOW 1767225600 /* 2026-01-01T00:00:00Z */

/* ---- parameter checks ------------------------------------------------------------- */

static const char CAL_OK[] =
    "{\"name\":\"TOU2\",\"seasons\":[{\"name\":\"winter\",\"start\":\"01-01\",\"week\":\"W0\"},"
    "{\"name\":\"summer\",\"start\":\"04-01\",\"week\":\"W1\"}],"
    "\"weeks\":[{\"name\":\"W0\",\"days\":[1,1,1,1,1,2,2]},{\"name\":\"W1\",\"days\":[2,2,2,2,2,2,"
    "2]}],"
    "\"days\":[{\"id\":1,\"actions\":[{\"at\":\"00:00\",\"tariff\":1},{\"at\":\"07:00\",\"tariff\":"
    "2},"
    "{\"at\":\"17:00\",\"tariff\":3}]},{\"id\":2,\"actions\":[{\"at\":\"00:00\",\"tariff\":1}]}]}";

struct pcase {
	const char *kind;
	const char *params;
	const char *err; /* NULL: accepted; else a substring of the message */
};

static const struct pcase PCASES[] = {
    {"disconnect", NULL, NULL},
    {"disconnect", "{}", NULL},
    {"disconnect", "{\"force\":true}", "unknown parameter 'force' (allowed: none)"},
    {"disconnect", "[1]", "must be a JSON object"},
    {"disconnect", "{\"a\":", "not valid JSON"},
    {"reconnect", "{\"mode\":\"release\"}", NULL},
    {"reconnect", "{\"mode\":\"remote\",\"control_mode\":2}",
     "control_mode 2 does not reconnect remotely"},
    {"reconnect", "{\"mode\":\"release\",\"control_mode\":4}", NULL},
    {"reconnect", "{\"control_mode\":7}", "control_mode 7 out of range 1..6"},
    {"credit_add", "{\"amount_wh\":5000,\"transaction_id\":\"V-1\"}", NULL},
    {"credit_add", "{\"amount_wh\":-5,\"transaction_id\":\"V-1\"}",
     "amount_wh -5 out of range 10.."},
    {"credit_add", "{\"amount_wh\":5000}", "transaction_id is required"},
    {"credit_add", "{\"amount_wh\":5000,\"transaction_id\":\"\"}", "must not be empty"},
    {"credit_add", "{\"amount_wh\":5000,\"transaction_id\":\"a b\"}", "printable characters only"},
    {"credit_add", "{\"amount_wh\":2.5,\"transaction_id\":\"x\"}", "amount_wh must be an integer"},
    {"credit_set", "{\"amount_wh\":-1}", "amount_wh must not be negative"},
    {"credit_set", "{\"amount_wh\":0}", NULL},
    {"credit_set", "{\"amount_wh\":100000001}", "out of range 0..100000000"},
    {"payment_mode", "{\"mode\":\"prepayment\"}", NULL},
    {"payment_mode", "{\"mode\":\"postpaid\"}", "neither 'credit' nor 'prepayment'"},
    {"payment_mode", "{}", "mode is required"},
    {"tariff_calendar", CAL_OK, NULL},
    {"tariff_force", "{\"tariff\":8}", NULL},
    {"tariff_force", "{\"tariff\":9}", "tariff 9 out of range 1..8"},
    {"special_days",
     "{\"days\":[{\"date\":\"2026-12-24\",\"day_id\":2},{\"date\":\"*-12-25\",\"day_id\":2}]}",
     NULL},
    {"special_days", "{\"days\":[{\"date\":\"2026-13-01\",\"day_id\":2}]}", "does not exist"},
    {"special_days",
     "{\"days\":[{\"date\":\"2026-12-24\",\"day_id\":2},{\"date\":\"2026-12-24\",\"day_id\":1}]}",
     "listed twice"},
    {"special_days", "{}", "days must be an array"},
    {"limiter", "{\"threshold_normal_w\":10000,\"threshold_emergency_w\":4000,\"min_over_s\":60}",
     NULL},
    {"limiter", "{\"threshold_normal_w\":300000}",
     "threshold_normal_w 300000 out of range 0..250000"},
    {"limiter", "{\"threshold_normal_w\":3000,\"threshold_emergency_w\":4000}",
     "is above threshold_normal_w"},
    {"limiter", "{\"min_over_s\":-1}", "min_over_s must not be negative"},
    {"limiter", "{}", "nothing to set"},
    {"clock_sync", "{}", NULL},
    {"clock_sync", "{\"max_step_s\":0}", "max_step_s 0 out of range"},
    {"read_now", "{\"registers\":[\"1-0:1.8.0.255\"],\"events\":[0,2]}", NULL},
    {"read_now", "{\"registers\":[\"1-0:1.8\"]}", "registers[0] is not an OBIS code"},
    {"read_now", "{\"events\":[3]}", "events[0] is no event log"},
    {"read_now",
     "{\"profile\":{\"from\":\"2025-12-31T00:00:00Z\",\"to\":\"2025-12-30T00:00:00Z\"}}",
     "profile.to is not after"},
    {"read_now",
     "{\"profile\":{\"from\":\"2025-10-01T00:00:00Z\",\"to\":\"2025-12-30T00:00:00Z\"}}",
     "longer than 31 days"},
    {"read_now",
     "{\"profile\":{\"from\":\"2025-12-30T00:00:00+01:00\",\"to\":\"2025-12-31T00:00:00Z\"}}",
     NULL},
    {"read_now", "{}", "nothing to read"},
};

Test(cmd_kinds, params_table)
{
	char err[256];
	struct cmdk_params p;
	for (size_t i = 0; i < sizeof(PCASES) / sizeof(PCASES[0]); i++) {
		const struct pcase *c = &PCASES[i];
		int kind = cmdk_by_name(c->kind);
		cr_assert_geq(kind, 0, "%s", c->kind);
		err[0] = '\0';
		int rc = cmdk_parse(kind, c->params, NOW, &p, err, sizeof(err));
		if (c->err == NULL) {
			cr_expect_eq(rc, 0, "case %zu (%s %s): %s", i, c->kind, c->params, err);
		} else {
			cr_expect_eq(rc, METER_EINVAL, "case %zu (%s %s) accepted", i, c->kind,
			             c->params);
			cr_expect(strstr(err, c->err) != NULL, "case %zu: '%s' lacks '%s'", i, err,
			          c->err);
			cr_expect(strncmp(err, c->kind, strlen(c->kind)) == 0, "case %zu: '%s'", i,
			          err);
		}
	}
}

/* Calendars break in many ways; each mutation of CAL_OK must be refused. */
Test(cmd_kinds, calendar_mutations)
{
	static const struct {
		const char *from, *to, *err;
	} M[] = {
	    {"\"tariff\":3", "\"tariff\":9", "days[0].actions[2].tariff 9 out of 1..8"},
	    {"\"17:00\"", "\"06:00\"", "is not after the previous switching time"},
	    {"\"17:00\"", "\"25:00\"", "is not a time HH:MM"},
	    {"[2,2,2,2,2,2,2]", "[2,2,2,2,2,2]", "must list 7 day ids"},
	    {"[2,2,2,2,2,2,2]", "[2,2,2,2,2,2,5]", "weeks[1].days[6] names no day profile"},
	    {"\"week\":\"W1\"", "\"week\":\"W7\"", "week 'W7' names no week profile"},
	    {"\"04-01\"", "\"02-30\"", "is not a date MM-DD"},
	    {"\"04-01\"", "\"01-01\"", "is not after the previous season"},
	    {"\"name\":\"TOU2\"", "\"name\":\"TOOLONGNAME\"", "name is longer than 8"},
	    {"\"id\":2", "\"id\":1", "id 1 used twice"},
	};
	char err[256], buf[2048];
	struct cmdk_params p;
	for (size_t i = 0; i < sizeof(M) / sizeof(M[0]); i++) {
		const char *at = strstr(CAL_OK, M[i].from);
		cr_assert_not_null(at, "%s", M[i].from);
		snprintf(buf, sizeof(buf), "%.*s%s%s", (int)(at - CAL_OK), CAL_OK, M[i].to,
		         at + strlen(M[i].from));
		cr_expect_eq(cmdk_parse(CMDK_TARIFF_CALENDAR, buf, NOW, &p, err, sizeof(err)),
		             METER_EINVAL, "mutation %zu accepted", i);
		cr_expect(strstr(err, M[i].err) != NULL, "mutation %zu: '%s' lacks '%s'", i, err,
		          M[i].err);
	}
	/* Nine day profiles where eight is the most a meter keeps. */
	char nine[4096] =
	    "{\"name\":\"N\",\"seasons\":[{\"name\":\"s\",\"start\":\"01-01\",\"week\":\"w\"}],"
	    "\"weeks\":[{\"name\":\"w\",\"days\":[1,1,1,1,1,1,1]}],\"days\":[";
	for (int d = 1; d <= 9; d++)
		snprintf(nine + strlen(nine), sizeof(nine) - strlen(nine),
		         "%s{\"id\":%d,\"actions\":[{\"at\":\"00:00\",\"tariff\":%d}]}",
		         d > 1 ? "," : "", d, d > 8 ? 8 : d);
	strcat(nine, "]}");
	cr_expect_eq(cmdk_parse(CMDK_TARIFF_CALENDAR, nine, NOW, &p, err, sizeof(err)),
	             METER_EINVAL);
	cr_expect(strstr(err, "9 day profiles, at most 8") != NULL, "%s", err);
}

Test(cmd_kinds, names_caps_and_keys)
{
	struct config cfg;
	config_defaults(&cfg);
	cfg.commands.credit_per_minute = 7;
	cr_expect_eq(cmdk_cap_per_minute(&cfg, CMDK_CREDIT_SET), 7);
	cr_expect_eq(cmdk_cap_per_minute(&cfg, CMDK_DISCONNECT),
	             cfg.commands.disconnect_per_minute);
	cr_expect_str_eq(cmdk_cap_group(CMDK_SPECIAL_DAYS), "tariff");
	cr_expect_str_eq(cmdk_cap_group(CMDK_CREDIT_ADD), "credit");
	for (int k = 0; k < CMDK_NKINDS; k++)
		cr_expect_eq(cmdk_by_name(cmdk_name(k)), k);
	cr_expect_eq(cmdk_by_name("explode"), -1);
	cr_expect_null(cmdk_name(CMDK_NKINDS));
	struct cmdk_params p;
	char err[128];
	cr_assert_eq(cmdk_parse(CMDK_CREDIT_ADD,
	                        "{\"amount_wh\":100,\"transaction_id\":\"T\\u0041-9\"}", NOW, &p,
	                        err, sizeof(err)),
	             0, "%s", err);
	cr_expect_str_eq(cmdk_idempotency_key(&p), "TA-9");
	cr_assert_eq(cmdk_parse(CMDK_DISCONNECT, "{}", NOW, &p, err, sizeof(err)), 0);
	cr_expect_null(cmdk_idempotency_key(&p));
}

Test(cmd_kinds, json_reader)
{
	struct cj n[32];
	char s[32];
	cr_assert_gt(
	    cj_parse(" {\"a\": [1, {\"b\": \"x\\\"y\"}], \"c\": null, \"d\": -2.5e1} ", n, 32), 0);
	cr_expect_eq(cj_get(n, "d")->num, -25);
	cr_expect_eq(cj_get(n, "c")->type, CJ_NULL);
	cr_expect(cj_str(cj_get(cj_at(cj_get(n, "a"), 1), "b"), s, sizeof(s)));
	cr_expect_str_eq(s, "x\"y");
	cr_expect_null(cj_get(n, "zz"));
	static const char *const bad[] = {"",     "{",   "{\"a\" 1}", "[1,]", "\"\x01\"",
	                                  "{} x", "tru", "[\"\\q\"]", "01x"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_expect_lt(cj_parse(bad[i], n, 32), 0, "'%s' accepted", bad[i]);
	cr_expect_eq(
	    cj_parse("[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]", n,
	             32),
	    METER_ELIMIT);
}

/* ---- a tiny meter ------------------------------------------------------------------------ */

struct meter {
	uint8_t control, mode; /* class 70 */
	uint8_t payment;       /* class 111 */
	int64_t credit;        /* Wh */
	int64_t aplus;         /* Wh */
	int64_t load_per_req;  /* Wh consumed per request served */
	uint32_t lim[4];
	uint8_t cal[5][1024]; /* raw attrs 6..10 as written */
	size_t cal_len[5];
	char active_name[9];
	uint8_t special[2048];
	size_t special_len;
	uint8_t tariff;
	int64_t clock; /* UTC s */
	int credit_actions;
	bool refuse_disconnect;
};

static const struct obis O_DISC = {{0, 0, 96, 3, 10, 255}}, O_CREDIT = {{0, 0, 19, 10, 0, 255}},
                         O_APLUS = {{1, 0, 1, 8, 0, 255}}, O_ACCOUNT = {{0, 0, 19, 0, 0, 255}},
                         O_LIMITER = {{0, 0, 17, 0, 0, 255}}, O_CAL = {{0, 0, 13, 0, 0, 255}},
                         O_SPECIAL = {{0, 0, 11, 0, 0, 255}}, O_SCRIPT = {{0, 0, 10, 0, 100, 255}},
                         O_TARIFF = {{0, 0, 96, 14, 0, 255}}, O_CLOCK = {{0, 0, 1, 0, 0, 255}};

static int
m_get(void *arg, const struct dlms_server_req *rq, struct mbuf *out)
{
	struct meter *m = arg;
	const struct obis *o = &rq->desc.obis;
	int a = rq->desc.id;
	/* Energy flows while the breaker is closed; credit counts it down. */
	if (m->control == 1) {
		m->aplus += m->load_per_req;
		m->credit -= m->load_per_req;
	}
	if (obis_eq(o, &O_DISC)) {
		if (a == 2)
			axdr_put_boolean(out, m->control == 1);
		else if (a == 3)
			axdr_put_enum(out, m->control);
		else
			axdr_put_enum(out, m->mode);
	} else if (obis_eq(o, &O_CREDIT)) {
		axdr_put_double_long(out, (int32_t)m->credit);
	} else if (obis_eq(o, &O_APLUS)) {
		if (a == 2) {
			axdr_put_double_long_unsigned(out, (uint32_t)m->aplus);
		} else {
			axdr_put_structure(out, 2);
			axdr_put_integer(out, 0);
			axdr_put_enum(out, 30);
		}
	} else if (obis_eq(o, &O_ACCOUNT)) {
		axdr_put_structure(out, 2);
		axdr_put_enum(out, m->payment);
		axdr_put_enum(out, 2);
	} else if (obis_eq(o, &O_LIMITER) && a >= 4 && a <= 7) {
		axdr_put_double_long_unsigned(out, m->lim[a - 4]);
	} else if (obis_eq(o, &O_CAL)) {
		if (a == 2)
			axdr_put_octet_string(out, m->active_name,
			                      (uint32_t)strlen(m->active_name));
		else if (a >= 6 && a <= 10 && m->cal_len[a - 6])
			mbuf_put(out, m->cal[a - 6], m->cal_len[a - 6]);
		else if (a >= 6 && a <= 9)
			axdr_put_array(out, 0);
		else
			axdr_put_octet_string(out, "", 0);
	} else if (obis_eq(o, &O_SPECIAL)) {
		if (m->special_len)
			mbuf_put(out, m->special, m->special_len);
		else
			axdr_put_array(out, 0);
	} else if (obis_eq(o, &O_TARIFF)) {
		axdr_put_unsigned(out, m->tariff);
	} else if (obis_eq(o, &O_CLOCK)) {
		struct cosem_datetime dt;
		cosem_datetime_from_utc(m->clock, NULL, &dt);
		axdr_put_datetime_octets(out, &dt);
	} else {
		return XDLMS_DAR_OBJECT_UNDEFINED;
	}
	return XDLMS_DAR_SUCCESS;
}

static int
m_set(void *arg, const struct dlms_server_req *rq, const uint8_t *data, size_t len)
{
	struct meter *m = arg;
	const struct obis *o = &rq->desc.obis;
	int a = rq->desc.id;
	struct axdr_node n[512];
	size_t nn;
	int64_t v = 0;
	cr_assert_gt(axdr_decode(data, len, n, 512, &nn), 0);
	if (obis_eq(o, &O_DISC) && a == 4 && axdr_to_int64(&n[0], &v) == 0) {
		m->mode = (uint8_t)v;
	} else if (obis_eq(o, &O_ACCOUNT) && a == 2 && n[0].tag == AXDR_STRUCTURE) {
		m->payment = (uint8_t)n[1].v.u;
	} else if (obis_eq(o, &O_LIMITER) && a >= 4 && a <= 7 && axdr_to_int64(&n[0], &v) == 0) {
		m->lim[a - 4] = (uint32_t)v;
	} else if (obis_eq(o, &O_CAL) && a >= 6 && a <= 10 && len <= sizeof(m->cal[0])) {
		memcpy(m->cal[a - 6], data, len);
		m->cal_len[a - 6] = len;
	} else if (obis_eq(o, &O_SPECIAL) && a == 2 && len <= sizeof(m->special)) {
		memcpy(m->special, data, len);
		m->special_len = len;
	} else if (obis_eq(o, &O_CLOCK) && a == 2) {
		struct cosem_datetime dt;
		cr_assert_eq(n[0].len, 12);
		cr_assert_eq(cosem_datetime_decode(n[0].ptr, &dt), 0);
		cr_assert_eq(cosem_datetime_to_utc(&dt, NULL, &m->clock), 0);
	} else {
		return XDLMS_DAR_READ_WRITE_DENIED;
	}
	return XDLMS_DAR_SUCCESS;
}

static int
m_action(void *arg, const struct dlms_server_req *rq, const uint8_t *params, size_t len,
         struct mbuf *out)
{
	struct meter *m = arg;
	const struct obis *o = &rq->desc.obis;
	struct axdr_node n[8];
	size_t nn;
	int64_t v = 0;
	(void)out;
	if (params && len && axdr_decode(params, len, n, 8, &nn) > 0)
		(void)axdr_to_int64(&n[0], &v);
	if (obis_eq(o, &O_DISC)) {
		if (m->mode == 0 || m->refuse_disconnect)
			return XDLMS_AR_TEMPORARY_FAILURE;
		if (rq->desc.id == 1)
			m->control = 0;
		else if (m->control == 0)
			m->control = (m->mode == 2 || m->mode == 4) ? 2 : 1;
		return XDLMS_AR_SUCCESS;
	}
	if (obis_eq(o, &O_CREDIT)) {
		m->credit_actions++;
		if (rq->desc.id == 1)
			m->credit += v;
		else
			m->credit = v;
		return XDLMS_AR_SUCCESS;
	}
	if (obis_eq(o, &O_CAL) && rq->desc.id == 1) {
		struct axdr_node nm[4];
		if (m->cal_len[0] && axdr_decode(m->cal[0], m->cal_len[0], nm, 4, &nn) > 0)
			snprintf(m->active_name, sizeof(m->active_name), "%.*s", (int)nm[0].len,
			         (const char *)nm[0].ptr);
		return XDLMS_AR_SUCCESS;
	}
	if (obis_eq(o, &O_SCRIPT) && rq->desc.id == 1) {
		m->tariff = (uint8_t)v;
		return XDLMS_AR_SUCCESS;
	}
	return XDLMS_AR_OBJECT_UNAVAILABLE;
}

static const struct dlms_server_ops M_OPS = {.get = m_get, .set = m_set, .action = m_action};

#define BUF 8192

struct rig {
	struct meter m;
	struct dlms_client c;
	struct dlms_server s;
	struct dlms_server_policy pol;
	uint8_t c_rx[BUF], c_tx[BUF], c_data[BUF * 4];
	uint8_t s_rx[BUF], s_tx[BUF], s_data[BUF * 4];
	uint8_t cout[BUF * 2], sout[BUF * 2];
	int requests; /* requests the client sent */
};

static struct rig *
rig_new(void)
{
	struct rig *g = calloc(1, sizeof(*g));
	cr_assert_not_null(g);
	g->m = (struct meter){.control = 1,
	                      .mode = 1,
	                      .payment = 2,
	                      .credit = 20000,
	                      .aplus = 1000000,
	                      .load_per_req = 3,
	                      .tariff = 1,
	                      .clock = NOW - 95};
	strcpy(g->m.active_name, "OLD");
	g->pol.mechanisms = 1u << ACSE_MECH_NONE;
	g->pol.max_pdu = 1024;
	struct dlms_server_config sc = {
	    .framing = DLMS_FRAMING_WRAPPER,
	    .server_wport = 1,
	    .policy = &g->pol,
	    .ops = &M_OPS,
	    .arg = &g->m,
	    .buf = {g->s_rx, BUF, g->s_tx, BUF, NULL, 0, g->s_data, sizeof(g->s_data)},
	};
	struct dlms_client_config cc = {
	    .framing = DLMS_FRAMING_WRAPPER,
	    .client_wport = 16,
	    .server_wport = 1,
	    .mechanism = ACSE_MECH_NONE,
	    .max_pdu = 1024,
	    .buf = {g->c_rx, BUF, g->c_tx, BUF, NULL, 0, g->c_data, sizeof(g->c_data)},
	};
	cr_assert_eq(dlms_server_init(&g->s, &sc), 0);
	cr_assert_eq(dlms_client_init(&g->c, &cc), 0);
	return g;
}

/* Carry bytes both ways until the client reports an event of `want` (or
 * nothing moves); every client event goes to run (when not NULL). */
static int
rig_pump(struct rig *g, struct mbuf *out, struct cmdk_run *run, int want)
{
	int last = DLMS_CEV_NONE;
	for (int round = 0; round < 64; round++) {
		struct mbuf so;
		struct dlms_server_event sev;
		struct dlms_client_event cev;
		/* The engine may have work pending (the AARQ after open). */
		while (dlms_client_poll(&g->c, out, &cev) != DLMS_CEV_NONE) {
			last = cev.type;
			if (run != NULL)
				cmdk_run_event(run, &cev);
		}
		if (out->len == 0)
			return last;
		mbuf_init(&so, g->sout, sizeof(g->sout));
		for (size_t off = 0; off < out->len;) {
			off += dlms_server_feed(&g->s, out->p + off, out->len - off);
			while (dlms_server_poll(&g->s, &so, &sev) != DLMS_SEV_NONE)
				;
		}
		mbuf_init(out, g->cout, sizeof(g->cout));
		for (size_t off = 0; off < so.len;) {
			off += dlms_client_feed(&g->c, so.p + off, so.len - off);
			while (dlms_client_poll(&g->c, out, &cev) != DLMS_CEV_NONE) {
				last = cev.type;
				if (run != NULL)
					cmdk_run_event(run, &cev);
				if (cev.type == want && out->len == 0)
					return last;
			}
		}
	}
	return last;
}

static void
rig_open(struct rig *g)
{
	struct mbuf out;
	mbuf_init(&out, g->cout, sizeof(g->cout));
	cr_assert_eq(dlms_client_open(&g->c, &out), 0);
	cr_assert_eq(rig_pump(g, &out, NULL, DLMS_CEV_ASSOCIATED), DLMS_CEV_ASSOCIATED);
}

/*
 * Run a command.  stop_at_checkpoint: return at the checkpoint (the
 * caller "dies" there); kill_after_requests > 0: stop after that many
 * requests were answered (SIGKILL mid-command).  Returns the status of the
 * last step.
 */
/* Checkpoints of the last run_cmd(), and the meter's control state and
 * tariff when the first was given (nothing changed on the meter yet). */
static int n_ckpt;
static int ckpt_control, ckpt_tariff;

static int
run_cmd(struct rig *g, struct cmdk_run *r, bool stop_at_checkpoint, int kill_after_requests,
        char **progress_out)
{
	int n = 0;
	n_ckpt = 0;
	for (;;) {
		struct mbuf out;
		mbuf_init(&out, g->cout, sizeof(g->cout));
		int st = cmdk_run_next(r, &g->c, &out, (int64_t)NOW * 1000);
		if (st == CMDK_FINISHED)
			return st;
		if (st == CMDK_CHECKPOINT) {
			if (n_ckpt++ == 0) {
				ckpt_control = g->m.control;
				ckpt_tariff = g->m.tariff;
			}
			if (progress_out && cmdk_run_progress(r) != NULL)
				*progress_out = strdup(cmdk_run_progress(r));
			if (stop_at_checkpoint)
				return st;
			continue;
		}
		cr_assert_eq(st, CMDK_SENT);
		rig_pump(g, &out, r, DLMS_CEV_DONE);
		if (kill_after_requests > 0 && ++n >= kill_after_requests)
			return st;
	}
}

static struct cmdk_run *
start(const char *kind, const char *params, const char *progress)
{
	struct cmdk_params p;
	char err[256];
	struct cmdk_run *r = calloc(1, sizeof(*r));
	cr_assert_not_null(r);
	cr_assert_eq(cmdk_parse(cmdk_by_name(kind), params, NOW, &p, err, sizeof(err)), 0, "%s",
	             err);
	cr_assert_eq(cmdk_run_init(r, &p, progress), 0);
	return r;
}

static void
finish_run(struct cmdk_run *r)
{
	cmdk_run_free(r);
	free(r);
}

static struct cmdk_run *
exec_cmd(struct rig *g, const char *kind, const char *params)
{
	struct cmdk_run *r = start(kind, params, NULL);
	cr_assert_eq(run_cmd(g, r, false, 0, NULL), CMDK_FINISHED);
	return r;
}

static void
expect_in(const char *hay, const char *needle)
{
	cr_expect(strstr(hay, needle) != NULL, "'%s' not in %s", needle, hay);
}

Test(cmd_kinds, disconnect_reconnect)
{
	struct rig *g = rig_new();
	rig_open(g);
	struct cmdk_run *r = exec_cmd(g, "disconnect", NULL);
	cr_expect(cmdk_run_ok(r), "%s", cmdk_run_error(r));
	cr_expect_eq(g->m.control, 0);
	/* the rate-cap slot is asked for once, before the ACTION went out */
	cr_expect_eq(n_ckpt, 1);
	cr_expect_eq(ckpt_control, 1);
	cr_expect_null(cmdk_run_progress(r));
	expect_in(cmdk_run_result(r),
	          "\"before\":{\"output_state\":{\"type\":\"boolean\",\"value\":true},\"control_"
	          "state\":{\"type\":\"enum\",\"value\":1}");
	expect_in(cmdk_run_result(r), "\"after\":{\"output_state\":{\"type\":\"boolean\",\"value\":"
	                              "false},\"control_state\":{\"type\":\"enum\",\"value\":0}");
	expect_in(cmdk_run_result(r), "\"applied\":true");
	finish_run(r);

	/* Twice = disconnected, without sending the method again. */
	r = exec_cmd(g, "disconnect", NULL);
	cr_expect(cmdk_run_ok(r));
	expect_in(cmdk_run_result(r), "\"applied\":false");
	expect_in(cmdk_run_result(r), "already disconnected");
	cr_expect_eq(n_ckpt, 0, "nothing sent: no slot taken");
	finish_run(r);

	/* Mode 1 reconnects directly; release is refused before acting. */
	r = exec_cmd(g, "reconnect", "{\"mode\":\"release\"}");
	cr_expect_not(cmdk_run_ok(r));
	expect_in(cmdk_run_error(r), "control mode 1 reconnects remotely");
	cr_expect_eq(g->m.control, 0);
	finish_run(r);
	r = exec_cmd(g, "reconnect", NULL);
	cr_expect(cmdk_run_ok(r), "%s", cmdk_run_error(r));
	cr_expect_eq(g->m.control, 1);
	finish_run(r);

	/* Release for the consumer's button: mode 2 set on the way. */
	g->m.control = 0;
	r = exec_cmd(g, "reconnect", "{\"mode\":\"release\",\"control_mode\":2}");
	cr_expect(cmdk_run_ok(r), "%s", cmdk_run_error(r));
	cr_expect_eq(g->m.mode, 2);
	cr_expect_eq(g->m.control, 2);
	expect_in(cmdk_run_result(r), "\"control_state\":{\"type\":\"enum\",\"value\":2}");
	finish_run(r);

	/* A meter that refuses: failed, with the state read back. */
	g->m.control = 1;
	g->m.refuse_disconnect = true;
	r = exec_cmd(g, "disconnect", NULL);
	cr_expect_not(cmdk_run_ok(r));
	expect_in(cmdk_run_error(r), "the meter refused remote_disconnect: action-result 2");
	expect_in(cmdk_run_result(r),
	          "\"after\":{\"output_state\":{\"type\":\"boolean\",\"value\":true}");
	finish_run(r);
	free(g);
}

Test(cmd_kinds, credit_add_once)
{
	struct rig *g = rig_new();
	rig_open(g);
	const char *P = "{\"amount_wh\":5000,\"transaction_id\":\"V-77\"}";
	int64_t s0 = g->m.credit + g->m.aplus;
	struct cmdk_run *r = exec_cmd(g, "credit_add", P);
	cr_expect(cmdk_run_ok(r), "%s", cmdk_run_error(r));
	cr_expect_eq(g->m.credit + g->m.aplus, s0 + 5000);
	cr_expect_eq(g->m.credit_actions, 1);
	expect_in(cmdk_run_result(r), "\"pre_credit_wh\":");
	finish_run(r);
	free(g);
}

/*
 * ammd killed at every point of a credit_add: before the checkpoint was
 * committed (no progress stored), after it (progress stored) but before
 * the ACTION, and after the ACTION but before the result was stored.  The
 * retry, given what was stored, leaves the meter credited exactly once.
 */
Test(cmd_kinds, credit_add_killed_anywhere)
{
	const char *P = "{\"amount_wh\":5000,\"transaction_id\":\"V-78\"}";
	for (int kill = 0; kill < 4; kill++) {
		struct rig *g = rig_new();
		rig_open(g);
		int64_t s0 = g->m.credit + g->m.aplus;
		char *progress = NULL;
		struct cmdk_run *r = start("credit_add", P, NULL);
		if (kill == 0) {
			/* dies during the first read: nothing stored */
			run_cmd(g, r, false, 1, NULL);
			cr_assert_eq(g->m.credit_actions, 0);
		} else if (kill == 1) {
			/* dies at the checkpoint, before its commit */
			cr_assert_eq(run_cmd(g, r, true, 0, &progress), CMDK_CHECKPOINT);
			free(progress);
			progress = NULL;
		} else if (kill == 2) {
			/* checkpoint committed, dies before the ACTION */
			cr_assert_eq(run_cmd(g, r, true, 0, &progress), CMDK_CHECKPOINT);
		} else {
			/* dies after the ACTION was answered */
			run_cmd(g, r, false, 2, &progress);
			cr_assert_eq(g->m.credit_actions, 1);
			cr_assert_not_null(progress);
		}
		finish_run(r);
		/* energy keeps flowing between the attempts */
		g->m.aplus += 400;
		g->m.credit -= 400;
		r = start("credit_add", P, progress);
		cr_assert_eq(run_cmd(g, r, false, 0, NULL), CMDK_FINISHED);
		cr_expect(cmdk_run_ok(r), "kill %d: %s", kill, cmdk_run_error(r));
		cr_expect_eq(g->m.credit + g->m.aplus, s0 + 5000, "kill %d: credited %lld", kill,
		             (long long)(g->m.credit + g->m.aplus - s0));
		cr_expect_eq(g->m.credit_actions, 1, "kill %d", kill);
		if (kill == 3)
			expect_in(cmdk_run_result(r), "\"applied_earlier\":true");
		finish_run(r);
		free(progress);
		free(g);
	}
}

Test(cmd_kinds, credit_in_credit_mode_and_set)
{
	struct rig *g = rig_new();
	rig_open(g);
	struct cmdk_run *r = exec_cmd(g, "credit_set", "{\"amount_wh\":12345}");
	cr_expect(cmdk_run_ok(r), "%s", cmdk_run_error(r));
	cr_expect_leq(g->m.credit, 12345);
	cr_expect_geq(g->m.credit, 12345 - 20);
	finish_run(r);
	r = exec_cmd(g, "payment_mode", "{\"mode\":\"credit\"}");
	cr_expect(cmdk_run_ok(r), "%s", cmdk_run_error(r));
	cr_expect_eq(g->m.payment, 1);
	finish_run(r);
	r = exec_cmd(g, "credit_add", "{\"amount_wh\":500,\"transaction_id\":\"X\"}");
	cr_expect_not(cmdk_run_ok(r));
	expect_in(cmdk_run_error(r), "credit mode");
	cr_expect_eq(g->m.credit_actions, 1);
	finish_run(r);
	free(g);
}

Test(cmd_kinds, calendar_special_days_force)
{
	struct rig *g = rig_new();
	rig_open(g);
	struct cmdk_run *r = exec_cmd(g, "tariff_calendar", CAL_OK);
	cr_expect(cmdk_run_ok(r), "%s", cmdk_run_error(r));
	cr_expect_str_eq(g->m.active_name, "TOU2");
	cr_expect_eq(n_ckpt, 1, "a calendar's SETs go out under one slot");
	expect_in(cmdk_run_result(r),
	          "\"calendar_name_active\":{\"type\":\"octet-string\",\"hex\":\"4f4c44\"}");
	finish_run(r);

	char later[2048];
	snprintf(later, sizeof(later), "%.*s,\"activate_at\":\"2026-06-01T00:00:00Z\"}",
	         (int)strlen(CAL_OK) - 1, CAL_OK);
	later[strlen(later) - 1] = '}';
	memcpy(strstr(later, "TOU2"), "TOU3", 4);
	r = exec_cmd(g, "tariff_calendar", later);
	cr_expect(cmdk_run_ok(r), "%s", cmdk_run_error(r));
	cr_expect_str_eq(g->m.active_name, "TOU2", "activation waits for its time");
	cr_expect_gt(g->m.cal_len[4], 0);
	finish_run(r);

	r = exec_cmd(g, "special_days", "{\"days\":[{\"date\":\"*-12-25\",\"day_id\":2}]}");
	cr_expect(cmdk_run_ok(r), "%s", cmdk_run_error(r));
	cr_expect_gt(g->m.special_len, 0);
	finish_run(r);

	int tariff0 = g->m.tariff;
	r = exec_cmd(g, "tariff_force", "{\"tariff\":3}");
	cr_expect(cmdk_run_ok(r), "%s", cmdk_run_error(r));
	cr_expect_eq(g->m.tariff, 3);
	cr_expect_eq(n_ckpt, 1);
	cr_expect_eq(ckpt_tariff, tariff0, "the slot comes before the SET");
	expect_in(cmdk_run_result(r),
	          "\"before\":{\"current_tariff\":{\"type\":\"unsigned\",\"value\":1}}");
	expect_in(cmdk_run_result(r),
	          "\"after\":{\"current_tariff\":{\"type\":\"unsigned\",\"value\":3}}");
	finish_run(r);
	free(g);
}

Test(cmd_kinds, limiter_clock_read)
{
	struct rig *g = rig_new();
	rig_open(g);
	struct cmdk_run *r =
	    exec_cmd(g, "limiter", "{\"threshold_normal_w\":9000,\"min_over_s\":30}");
	cr_expect(cmdk_run_ok(r), "%s", cmdk_run_error(r));
	cr_expect_eq(g->m.lim[0], 9000);
	cr_expect_eq(g->m.lim[2], 30);
	expect_in(cmdk_run_result(r),
	          "\"after\":{\"threshold_normal\":{\"type\":\"double-long-unsigned\",\"value\":"
	          "9000},\"threshold_emergency\":{\"type\":\"double-long-unsigned\",\"value\":0}");
	finish_run(r);

	r = exec_cmd(g, "clock_sync", "{\"max_step_s\":60}");
	cr_expect_not(cmdk_run_ok(r));
	expect_in(cmdk_run_error(r), "-95 s off, more than max_step_s 60");
	cr_expect_eq(g->m.clock, NOW - 95);
	finish_run(r);
	r = exec_cmd(g, "clock_sync", NULL);
	cr_expect(cmdk_run_ok(r), "%s", cmdk_run_error(r));
	cr_expect_eq(g->m.clock, NOW);
	expect_in(cmdk_run_result(r), "\"drift_s\":-95");
	finish_run(r);

	r = exec_cmd(g, "read_now", "{\"registers\":[\"1-0:1.8.0.255\",\"0-0:96.14.0.255\"]}");
	cr_expect(cmdk_run_ok(r), "%s", cmdk_run_error(r));
	expect_in(cmdk_run_result(r), "\"1-0:1.8.0.255\":");
	expect_in(
	    cmdk_run_result(r),
	    "\"values\":{\"1-0:1.8.0.255\":{\"type\":\"double-long-unsigned\",\"value\":10000");
	expect_in(cmdk_run_result(r), "\"0-0:96.14.0.255\":{\"type\":\"unsigned\",\"value\":1}");
	cr_expect_eq(n_ckpt, 0, "read_now changes nothing: no slot");
	/* the scaler_unit read for storing is not in the result */
	cr_expect_null(strstr(cmdk_run_result(r), "scaler"), "%s", cmdk_run_result(r));
	/* what the session stores: each register with its scaler_unit */
	struct cmdk_reading rd;
	cr_assert(cmdk_run_reading(r, 0, &rd));
	cr_expect_eq(rd.what, CMDK_RD_REGISTER);
	cr_expect_eq(rd.class_id, 3);
	cr_expect_eq(rd.obis.v[2], 1);
	cr_assert_not_null(rd.value);
	cr_expect_eq(rd.value[0], 6, "double-long-unsigned");
	cr_assert_not_null(rd.scaler_unit);
	cr_expect_eq(rd.scaler_unit[0], 2, "scaler_unit is a structure");
	cr_assert(cmdk_run_reading(r, 1, &rd));
	cr_expect_eq(rd.class_id, 1);
	cr_expect_null(rd.scaler_unit, "class 1 has no scaler_unit");
	cr_expect_not(cmdk_run_reading(r, 2, &rd));
	finish_run(r);
	free(g);
}

/* The session lost the meter in the middle: failed with the reason. */
Test(cmd_kinds, abort)
{
	struct rig *g = rig_new();
	rig_open(g);
	struct cmdk_run *r = start("disconnect", NULL, NULL);
	run_cmd(g, r, false, 1, NULL);
	cmdk_run_abort(r, "connection lost");
	cr_expect_not(cmdk_run_ok(r));
	cr_expect_str_eq(cmdk_run_error(r), "connection lost");
	expect_in(cmdk_run_result(r), "\"error\":\"connection lost\"");
	finish_run(r);
	free(g);
}
