/*
 * cosem_model.c: the COSEM object model of DESIGN §4 as a simulated
 * Kamstrup meter serves it, behind meterlib's dlms_server callbacks.
 * Every value is computed at the moment of the request from the model
 * (model.h) at the simulated time; SET and ACTION change the meter
 * through device.h, so what is written shows up in registers, profile and
 * event logs as the ground truth (`metersim expect`) says.
 *
 * Objects are a static table (OBIS, class, version, what it is); the
 * association object list is that table.  Profiles (load profile,
 * billing values, the five event logs) share one row writer that applies
 * selective access: range (by the clock column, from <= clock <= to) and
 * entry (1-based entries and columns, 0 = to the last).  The load profile
 * holds the last PROFILE_DAYS days and captures the clock, the IDIS status
 * and the energy of each interval per quadrant (1-0:x.29.0.255, "energy
 * over the capture period", Wh); the billing profile holds the last 24
 * month ends.
 *
 * The clock can be set (attribute 2) and adjusted (methods 1
 * adjust_to_quarter, 2 adjust_to_measuring_period, 3 adjust_to_minute,
 * 6 shift_time): the device journal keeps the offset, so GET of the clock
 * reflects it and the RTC log shows "clock adjusted" (old and new time).
 *
 * A passive calendar reads back exactly as it was written: the A-XDR of
 * each written attribute (names of seasons and week profiles, day ids,
 * start times, script references) is kept with the calendar it built,
 * also once that calendar is active; the parsed form drives the tariffs.
 *
 * The clock also takes a preset time (method 5 preset_adjusting_time:
 * preset, validity interval start and end) and applies it with method 4
 * adjust_to_preset_time while its own time is inside the interval.  The
 * special days table is written whole (attribute 2, entries keep the
 * indices written) or per entry (methods 1 insert, 2 delete by index);
 * tariffs and prepayment's working-day test follow it from then on.
 *
 * The analysis logger 1-0:99.2.0.255 captures, every 10 minutes, the
 * clock, voltage, current and active power of each measured phase and
 * total import and export power (model.h sim_analysis): 6 columns on a
 * 162, 9 on a 282 (L1, L3), 12 on a 382M; the last 40 days, range and
 * entry selective access as the load profile.  capture_objects (the
 * clock, then any of those channels) and capture_period are writable;
 * either restarts the buffer.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "axdr.h"
#include "cosem_time.h"
#include "meter_error.h"
#include "serve.h"
#include "xdlms.h"

#define PROFILE_DAYS   40
#define BILLING_MONTHS 24
#define NODES          1024

enum kind {
	K_CLOCK = 1,
	K_LDN,
	K_SERIAL,
	K_FW,
	K_ALN,
	K_ENERGY,
	K_DELTA,
	K_VOLT,
	K_CURR,
	K_POWER,
	K_PTOT,
	K_PEXP,
	K_PEAK,
	K_LP,
	K_ANALYSIS,
	K_BILLING,
	K_LOG,
	K_STATUS,
	K_EVCODE,
	K_DISC,
	K_LIMITER,
	K_ACCOUNT,
	K_CREDIT,
	K_CAL,
	K_SPECIAL,
	K_SCRIPTS,
	K_TARIFF,
	K_SECSETUP,
	K_IC,
	K_ALARM,
	K_PUSH,
};

struct obj {
	struct obis o;
	uint16_t cls;
	uint8_t ver, kind, a, b; /* a, b: quadrant/tariff, phase, log */
	uint8_t nattr, nmeth;
};

static struct obj objs[128];
static size_t nobjs;

static void
add(struct obis o, uint16_t cls, uint8_t ver, uint8_t kind, uint8_t a, uint8_t b, uint8_t nattr,
    uint8_t nmeth)
{
	objs[nobjs++] = (struct obj){o, cls, ver, kind, a, b, nattr, nmeth};
}

static void
build_table(void)
{
	if (nobjs)
		return;
	add(OBIS(0, 0, 1, 0, 0, 255), 8, 0, K_CLOCK, 0, 0, 9, 6);
	add(OBIS(0, 0, 42, 0, 0, 255), 1, 0, K_LDN, 0, 0, 2, 0);
	add(OBIS(0, 0, 96, 1, 0, 255), 1, 0, K_SERIAL, 0, 0, 2, 0);
	add(OBIS(1, 0, 0, 2, 0, 255), 1, 0, K_FW, 0, 0, 2, 0);
	add(OBIS(0, 0, 40, 0, 0, 255), 15, 1, K_ALN, 0, 0, 9, 4);
	for (uint8_t q = 0; q < SIM_NQ; q++) {
		add(OBIS(1, 0, q + 1, 8, 0, 255), 3, 0, K_ENERGY, q, 0, 3, 1);
		for (uint8_t t = 1; t <= TARIFF_MAX; t++)
			add(OBIS(1, 0, q + 1, 8, t, 255), 3, 0, K_ENERGY, q, t, 3, 1);
		add(OBIS(1, 0, q + 1, 29, 0, 255), 3, 0, K_DELTA, q, 0, 3, 1);
	}
	static const uint8_t uc[3] = {32, 52, 72}, ic[3] = {31, 51, 71}, pc[3] = {21, 41, 61};
	for (uint8_t p = 0; p < 3; p++) {
		add(OBIS(1, 0, uc[p], 7, 0, 255), 3, 0, K_VOLT, 0, p, 3, 1);
		add(OBIS(1, 0, ic[p], 7, 0, 255), 3, 0, K_CURR, 0, p, 3, 1);
		add(OBIS(1, 0, pc[p], 7, 0, 255), 3, 0, K_POWER, 0, p, 3, 1);
	}
	add(OBIS(1, 0, 1, 7, 0, 255), 3, 0, K_PTOT, 0, 0, 3, 1);
	add(OBIS(1, 0, 2, 7, 0, 255), 3, 0, K_PEXP, 0, 0, 3, 1);
	for (uint8_t t = 0; t <= 2; t++)
		add(OBIS(1, 0, 1, 6, t, 255), 4, 0, K_PEAK, t, 0, 5, 1);
	add(OBIS(1, 0, 99, 1, 0, 255), 7, 1, K_LP, 0, 0, 8, 2);
	add(OBIS(1, 0, 99, 2, 0, 255), 7, 1, K_ANALYSIS, 0, 0, 8, 2);
	add(OBIS(0, 0, 98, 1, 0, 255), 7, 1, K_BILLING, 0, 0, 8, 2);
	for (uint8_t l = 0; l < SIM_NLOG; l++) {
		add(events_log_obis(l), 7, 1, K_LOG, l, 0, 8, 2);
		struct obis ec = events_log_obis(l);
		add(OBIS(0, 0, 96, 11, ec.v[4], 255), 1, 0, K_EVCODE, l, 0, 2, 0);
	}
	add(OBIS(0, 0, 96, 10, 1, 255), 1, 0, K_STATUS, 0, 0, 2, 0);
	add(OBIS(0, 0, 96, 3, 10, 255), 70, 0, K_DISC, 0, 0, 4, 2);
	add(OBIS(0, 0, 17, 0, 0, 255), 71, 0, K_LIMITER, 0, 0, 11, 0);
	add(OBIS(0, 0, 19, 0, 0, 255), 111, 0, K_ACCOUNT, 0, 0, 2, 0);
	add(OBIS(0, 0, 19, 10, 0, 255), 112, 0, K_CREDIT, 0, 0, 8, 2);
	add(OBIS(0, 0, 13, 0, 0, 255), 20, 0, K_CAL, 0, 0, 10, 1);
	add(OBIS(0, 0, 11, 0, 0, 255), 11, 0, K_SPECIAL, 0, 0, 2, 2);
	add(OBIS(0, 0, 10, 0, 100, 255), 9, 0, K_SCRIPTS, 0, 0, 2, 1);
	add(OBIS(0, 0, 96, 14, 0, 255), 1, 0, K_TARIFF, 0, 0, 2, 0);
	add(OBIS(0, 0, 43, 0, 0, 255), 64, 0, K_SECSETUP, 0, 0, 5, 2);
	add(OBIS(0, 0, 43, 1, 0, 255), 1, 0, K_IC, 0, 0, 2, 0);
	add(OBIS(0, 0, 97, 98, 0, 255), 1, 0, K_ALARM, 0, 0, 2, 0);
	add(OBIS(0, 0, 25, 9, 0, 255), 40, 0, K_PUSH, 0, 0, 7, 1);
}

static const struct obj *
find(const struct obis *o)
{
	build_table();
	for (size_t i = 0; i < nobjs; i++)
		if (obis_eq(&objs[i].o, o))
			return &objs[i];
	return NULL;
}

/* ---- helpers ------------------------------------------------------------------ */

static void
put_dt(struct mbuf *b, int64_t utc, const struct cosem_tz *tz)
{
	struct cosem_datetime dt;
	cosem_datetime_from_utc(utc, tz, &dt);
	axdr_put_datetime_octets(b, &dt);
}

static void
put_dt_unspec(struct mbuf *b)
{
	struct cosem_datetime dt = {
	    0xffff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, COSEM_DEVIATION_UNSPEC, 0xff};
	axdr_put_datetime_octets(b, &dt);
}

static void
put_scaler_unit(struct mbuf *b, int8_t scaler, uint8_t unit)
{
	axdr_put_structure(b, 2);
	axdr_put_integer(b, scaler);
	axdr_put_enum(b, unit);
}

static void
put_capture(struct mbuf *b, uint16_t cls, struct obis o, int8_t attr)
{
	struct xdlms_capture_obj c = {
	    .class_id = cls, .obis = o, .attribute = attr, .data_index = 0};
	xdlms_put_capture_obj(b, &c);
}

static void
put_ln(struct mbuf *b, const struct obis *o)
{
	axdr_put_octet_string(b, o->v, 6);
}

/* Date-time octet-string node to UTC (deviation, or the meter's zone). */
static int
node_utc(const struct axdr_node *n, const struct cosem_tz *tz, int64_t *out)
{
	struct cosem_datetime dt;
	if (!n || n->tag != AXDR_OCTET_STRING || n->len != 12 || cosem_datetime_decode(n->ptr, &dt))
		return METER_EMALFORMED;
	return cosem_datetime_to_utc(&dt, tz, out);
}

/* ---- rows with selective access ------------------------------------------------- */

enum cell_kind { C_DT = 1, C_DT_NONE, C_U8, C_U32, C_S32, C_U16 };

struct cell {
	uint8_t kind;
	int64_t v;
};

#define MAXCOL 16

struct rows {
	struct mbuf *out;
	const struct cosem_tz *tz;
	bool writing;
	uint32_t count; /* rows selected (pass 1), rows written (pass 2) */
	uint32_t entry; /* rows seen */
	bool range;
	int64_t from, to; /* clock window */
	uint32_t e_from, e_to;
	uint32_t cols; /* bitmask of selected columns */
	uint32_t ncols;
};

static void
row(struct rows *r, int64_t clock, const struct cell *c, unsigned n)
{
	r->entry++;
	if (r->range && (clock < r->from || clock > r->to))
		return;
	if (r->e_from && (r->entry < r->e_from || (r->e_to && r->entry > r->e_to)))
		return;
	if (!r->writing) {
		r->count++;
		return;
	}
	unsigned k = 0;
	for (unsigned i = 0; i < n; i++)
		k += (r->cols >> i) & 1;
	axdr_put_structure(r->out, k);
	for (unsigned i = 0; i < n; i++) {
		if (!((r->cols >> i) & 1))
			continue;
		switch (c[i].kind) {
		case C_DT:
			put_dt(r->out, c[i].v, r->tz);
			break;
		case C_DT_NONE:
			put_dt_unspec(r->out);
			break;
		case C_U8:
			axdr_put_unsigned(r->out, (uint8_t)c[i].v);
			break;
		case C_U16:
			axdr_put_long_unsigned(r->out, (uint16_t)c[i].v);
			break;
		case C_S32:
			axdr_put_double_long(r->out, (int32_t)c[i].v);
			break;
		default:
			axdr_put_double_long_unsigned(r->out, (uint32_t)c[i].v);
			break;
		}
	}
	r->count++;
}

struct capdef {
	uint16_t cls;
	struct obis o;
	int8_t attr;
};

/* Set the selection from the request; returns a data-access-result. */
static int
select_rows(struct rows *r, const struct dlms_selective *sel, const struct capdef *cap,
            unsigned ncols)
{
	r->ncols = ncols;
	r->cols = (1u << ncols) - 1;
	if (!sel)
		return XDLMS_DAR_SUCCESS;
	if (sel->selector == XDLMS_ACCESS_RANGE && sel->range_ok) {
		const struct xdlms_range *rg = &sel->range;
		if (node_utc(rg->from, r->tz, &r->from) || node_utc(rg->to, r->tz, &r->to))
			return XDLMS_DAR_TYPE_UNMATCHED;
		r->range = true;
		if (rg->n_selected) {
			r->cols = 0;
			for (uint32_t i = 0; i < rg->n_selected; i++) {
				struct xdlms_capture_obj co;
				if (xdlms_capture_obj_from_node(axdr_child(rg->selected, i), &co))
					return XDLMS_DAR_TYPE_UNMATCHED;
				unsigned k;
				for (k = 0; k < ncols && !(obis_eq(&cap[k].o, &co.obis) &&
				                           cap[k].attr == co.attribute);
				     k++)
					;
				if (k == ncols)
					return XDLMS_DAR_OBJECT_UNAVAILABLE;
				r->cols |= 1u << k;
			}
		}
		return XDLMS_DAR_SUCCESS;
	}
	if (sel->selector == XDLMS_ACCESS_ENTRY && sel->entry_ok) {
		const struct xdlms_entry *e = &sel->entry;
		r->e_from = e->from_entry ? e->from_entry : 1;
		r->e_to = e->to_entry;
		unsigned c0 = e->from_value ? e->from_value : 1;
		unsigned c1 = e->to_value && e->to_value < ncols ? e->to_value : ncols;
		if (c0 > c1)
			return XDLMS_DAR_OBJECT_UNAVAILABLE;
		r->cols = 0;
		for (unsigned k = c0 - 1; k < c1; k++)
			r->cols |= 1u << k;
		return XDLMS_DAR_SUCCESS;
	}
	return XDLMS_DAR_OBJECT_UNAVAILABLE;
}

/* ---- the profiles --------------------------------------------------------------- */

static const struct capdef lp_cap[6] = {
    {8, OBIS(0, 0, 1, 0, 0, 255), 2},  {1, OBIS(0, 0, 96, 10, 1, 255), 2},
    {3, OBIS(1, 0, 1, 29, 0, 255), 2}, {3, OBIS(1, 0, 2, 29, 0, 255), 2},
    {3, OBIS(1, 0, 3, 29, 0, 255), 2}, {3, OBIS(1, 0, 4, 29, 0, 255), 2},
};

static const struct capdef bill_cap[10] = {
    {8, OBIS(0, 0, 1, 0, 0, 255), 2}, {3, OBIS(1, 0, 1, 8, 0, 255), 2},
    {3, OBIS(1, 0, 2, 8, 0, 255), 2}, {3, OBIS(1, 0, 3, 8, 0, 255), 2},
    {3, OBIS(1, 0, 4, 8, 0, 255), 2}, {3, OBIS(1, 0, 1, 8, 1, 255), 2},
    {3, OBIS(1, 0, 1, 8, 2, 255), 2}, {3, OBIS(1, 0, 1, 8, 3, 255), 2},
    {4, OBIS(1, 0, 1, 6, 0, 255), 2}, {4, OBIS(1, 0, 1, 6, 0, 255), 5},
};

/* Analysis logger columns: the clock, then the channels of the mask
 * (model.h SIM_ACH_*) in their bit order: voltage, current and active
 * power of each measured phase (L1; L1 and L3 on the 3-wire 282; L1..L3
 * on the 382M), then total import and export power: by default 6, 9 or
 * 12 of the 16 channels a Kamstrup analysis logger may have. */
enum { A_CLOCK = 0, A_U, A_I, A_P, A_PIMP, A_PEXP };

struct anacol {
	struct capdef cap;
	uint8_t what, phase;
};

/* The register captured by channel bit k (0..10). */
static struct anacol
ana_chan(unsigned k)
{
	static const uint8_t code[3][3] = {{32, 52, 72}, {31, 51, 71}, {21, 41, 61}};
	if (k < 9)
		return (struct anacol){{3, OBIS(1, 0, code[k / 3][k % 3], 7, 0, 255), 2},
		                       (uint8_t)(A_U + k / 3), (uint8_t)(k % 3)};
	return (struct anacol){{3, OBIS(1, 0, k == 9 ? 1 : 2, 7, 0, 255), 2},
	                       k == 9 ? A_PIMP : A_PEXP, 0};
}

static unsigned
ana_cols(const struct sim_meter *m, struct anacol c[MAXCOL])
{
	uint16_t chans = sim_analysis_chans(m);
	unsigned n = 0;
	c[n++] = (struct anacol){{8, OBIS(0, 0, 1, 0, 0, 255), 2}, A_CLOCK, 0};
	for (unsigned k = 0; k < 11; k++)
		if (chans >> k & 1)
			c[n++] = ana_chan(k);
	return n;
}

struct ana_ctx {
	struct rows *r;
	const struct anacol *c;
	unsigned n;
};

static void
ana_row(void *arg, const struct sim_analysis *a)
{
	const struct ana_ctx *x = arg;
	struct cell c[MAXCOL];
	for (unsigned k = 0; k < x->n; k++) {
		uint8_t ph = x->c[k].phase;
		switch (x->c[k].what) {
		case A_CLOCK:
			c[k] = (struct cell){C_DT, a->t};
			break;
		case A_U:
			c[k] = (struct cell){C_U16, a->in.u[ph]};
			break;
		case A_I:
			c[k] = (struct cell){C_U32, a->in.i[ph]};
			break;
		case A_P:
			c[k] = (struct cell){C_S32, a->in.p[ph]};
			break;
		case A_PIMP:
			c[k] = (struct cell){C_S32, a->in.p_import};
			break;
		default:
			c[k] = (struct cell){C_S32, a->in.p_export};
			break;
		}
	}
	row(x->r, a->t, c, x->n);
}

static int64_t
ana_start(const struct sim_meter *m, int64_t t)
{
	int64_t from = t - SIM_ANALYSIS_DAYS * 86400;
	return from < m->installed ? m->installed : from;
}

static void
lp_row(void *arg, const struct sim_interval *iv)
{
	struct cell c[6] = {{C_DT, iv->end},   {C_U8, iv->status}, {C_U32, iv->e[0]},
	                    {C_U32, iv->e[1]}, {C_U32, iv->e[2]},  {C_U32, iv->e[3]}};
	row(arg, iv->end, c, 6);
}

static int64_t
lp_start(const struct sim_meter *m, int64_t t)
{
	int64_t from = t - PROFILE_DAYS * 86400;
	return from < m->installed ? m->installed : from;
}

static void
billing_rows(struct sim_meter *m, int64_t t, struct rows *r)
{
	int64_t ends[BILLING_MONTHS];
	unsigned n = 0;
	for (int64_t b = sim_month_start(m, t); b > m->installed && n < BILLING_MONTHS;
	     b = sim_month_start(m, b - 1))
		ends[n++] = b;
	while (n--) {
		struct sim_billing bl;
		sim_billing(m, ends[n], &bl);
		struct cell c[10] = {
		    {C_DT, bl.t},
		    {C_U32, bl.r.total[0]},
		    {C_U32, bl.r.total[1]},
		    {C_U32, bl.r.total[2]},
		    {C_U32, bl.r.total[3]},
		    {C_U32, bl.r.tariff[0][0]},
		    {C_U32, bl.r.tariff[0][1]},
		    {C_U32, bl.r.tariff[0][2]},
		    {C_U32, bl.d.total.w},
		    {bl.d.total.at ? C_DT : C_DT_NONE, bl.d.total.at},
		};
		row(r, bl.t, c, 10);
	}
}

static int
log_rows(struct sim_meter *m, int64_t t, uint8_t log, struct rows *r)
{
	struct sim_evbuf ev = {0};
	if (events_log(m, log, t, &ev)) {
		events_free(&ev);
		return METER_ENOSPC;
	}
	for (size_t i = 0; i < ev.n; i++) {
		struct cell c[2] = {{C_DT, ev.v[i].t}, {C_U16, ev.v[i].code}};
		row(r, ev.v[i].t, c, 2);
	}
	events_free(&ev);
	return 0;
}

/* Attribute 2 of a profile: count, then write. */
static int
profile_buffer(const struct obj *ob, struct sim_meter *m, int64_t t,
               const struct dlms_selective *sel, struct mbuf *out)
{
	struct rows r = {.out = out, .tz = &m->fleet->cfg.tz};
	static const struct capdef log_cap[2] = {{8, OBIS(0, 0, 1, 0, 0, 255), 2},
	                                         {1, OBIS(0, 0, 96, 11, 0, 255), 2}};
	const struct capdef *cap = ob->kind == K_LP        ? lp_cap
	                           : ob->kind == K_BILLING ? bill_cap
	                                                   : log_cap;
	unsigned ncols = ob->kind == K_LP ? 6 : ob->kind == K_BILLING ? 10 : 2;
	struct anacol ac[MAXCOL];
	struct capdef acap[MAXCOL];
	struct ana_ctx ax = {&r, ac, 0};
	if (ob->kind == K_ANALYSIS) {
		ax.n = ncols = ana_cols(m, ac);
		for (unsigned k = 0; k < ncols; k++)
			acap[k] = ac[k].cap;
		cap = acap;
	}
	int dar = select_rows(&r, sel, cap, ncols);
	if (dar)
		return dar;
	for (int pass = 0; pass < 2; pass++) {
		r.writing = pass == 1;
		if (r.writing)
			axdr_put_array(out, r.count);
		r.count = r.entry = 0;
		if (ob->kind == K_LP) {
			int64_t from = lp_start(m, t);
			if (r.range && r.from - 1 > from)
				from = r.from - 1;
			int64_t to = r.range && r.to < t ? r.to : t;
			/* entry numbers count from the oldest entry held */
			if (r.e_from)
				from = lp_start(m, t);
			if (to > from && sim_intervals(m, from, to, lp_row, &r) < 0)
				return XDLMS_DAR_OTHER_REASON;
		} else if (ob->kind == K_ANALYSIS) {
			int64_t from = ana_start(m, t);
			if (r.range && !r.e_from && r.from - 1 > from)
				from = r.from - 1;
			int64_t to = r.range && r.to < t ? r.to : t;
			if (to > from)
				sim_analysis(m, from, to, ana_row, &ax);
		} else if (ob->kind == K_BILLING) {
			billing_rows(m, t, &r);
		} else if (log_rows(m, t, ob->a, &r)) {
			return XDLMS_DAR_OTHER_REASON;
		}
	}
	return XDLMS_DAR_SUCCESS;
}

static void
profile_capture(const struct obj *ob, const struct sim_meter *m, struct mbuf *out)
{
	if (ob->kind == K_ANALYSIS) {
		struct anacol ac[MAXCOL];
		unsigned n = ana_cols(m, ac);
		axdr_put_array(out, n);
		for (unsigned k = 0; k < n; k++)
			put_capture(out, ac[k].cap.cls, ac[k].cap.o, ac[k].cap.attr);
	} else if (ob->kind == K_LP) {
		axdr_put_array(out, 6);
		for (unsigned k = 0; k < 6; k++)
			put_capture(out, lp_cap[k].cls, lp_cap[k].o, lp_cap[k].attr);
	} else if (ob->kind == K_BILLING) {
		axdr_put_array(out, 10);
		for (unsigned k = 0; k < 10; k++)
			put_capture(out, bill_cap[k].cls, bill_cap[k].o, bill_cap[k].attr);
	} else {
		struct obis ec = events_log_obis(ob->a);
		axdr_put_array(out, 2);
		put_capture(out, 8, OBIS(0, 0, 1, 0, 0, 255), 2);
		put_capture(out, 1, OBIS(0, 0, 96, 11, ec.v[4], 255), 2);
	}
}

static void
count_row(void *arg, const struct sim_interval *iv)
{
	(void)arg;
	(void)iv;
}

static uint32_t
profile_entries(const struct obj *ob, struct sim_meter *m, int64_t t, bool in_use)
{
	if (ob->kind == K_LP) {
		if (!in_use)
			return PROFILE_DAYS * 86400u / m->st->period;
		long n = sim_intervals(m, lp_start(m, t), t, count_row, NULL);
		return n < 0 ? 0 : (uint32_t)n;
	}
	if (ob->kind == K_ANALYSIS) {
		if (!in_use)
			return SIM_ANALYSIS_DAYS * 86400u / sim_analysis_period(m);
		long n = sim_analysis(m, ana_start(m, t), t, NULL, NULL);
		return n < 0 ? 0 : (uint32_t)n;
	}
	if (ob->kind == K_BILLING) {
		if (!in_use)
			return BILLING_MONTHS;
		struct rows r = {0};
		r.cols = 0;
		billing_rows(m, t, &r);
		return r.count;
	}
	if (!in_use)
		return SIM_LOG_DEPTH;
	struct sim_evbuf ev = {0};
	events_log(m, ob->a, t, &ev);
	uint32_t n = (uint32_t)ev.n;
	events_free(&ev);
	return n;
}

/* ---- calendar ------------------------------------------------------------------- */

/* The A-XDR of calendar attributes as a client wrote them (name, seasons,
 * weeks, days; NULL: not written, derived from the parsed form). */
struct calraw {
	uint8_t *a[4];
	uint32_t len[4];
};

/* Passive calendar being written piecewise (attributes 6..9), per meter. */
struct draft {
	uint32_t index;
	struct tariff_calendar cal;
	int64_t activation;
	struct calraw raw;
};
static struct draft *drafts;
static size_t ndrafts;

/* Raw attributes kept with the journal calendar they built (by identity:
 * the journal owns its calendars until the fleet is freed), so a passive
 * calendar reads back as written, and so does it once active. */
static struct {
	const struct tariff_calendar *cal;
	struct calraw raw;
} * kept;
static size_t nkept;

static const struct calraw *
raw_of(const struct tariff_calendar *cal)
{
	for (size_t i = nkept; cal && i-- > 0;)
		if (kept[i].cal == cal)
			return &kept[i].raw;
	return NULL;
}

static int
raw_copy(struct calraw *dst, const struct calraw *src)
{
	memset(dst, 0, sizeof(*dst));
	for (unsigned k = 0; src && k < 4; k++) {
		if (!src->a[k])
			continue;
		dst->a[k] = malloc(src->len[k] ? src->len[k] : 1);
		if (!dst->a[k])
			return METER_ENOSPC;
		memcpy(dst->a[k], src->a[k], src->len[k]);
		dst->len[k] = src->len[k];
	}
	return 0;
}

/* Remember the draft's raw attributes for the calendar the journal now
 * holds (passive, or active when it was activated at once). */
static void
raw_keep(struct sim_meter *m, const struct draft *dr)
{
	const struct dev_journal *j = m->st->dev.j;
	const struct tariff_calendar *cal = j ? (j->passive ? j->passive : j->tou) : NULL;
	if (!cal || raw_of(cal))
		return;
	void *p = realloc(kept, (nkept + 1) * sizeof(*kept));
	if (!p)
		return;
	kept = p;
	kept[nkept].cal = cal;
	if (raw_copy(&kept[nkept].raw, &dr->raw) == 0)
		nkept++;
}

static struct draft *
draft_of(struct sim_meter *m)
{
	for (size_t i = 0; i < ndrafts; i++)
		if (drafts[i].index == m->index)
			return &drafts[i];
	struct draft *d = realloc(drafts, (ndrafts + 1) * sizeof(*d));
	if (!d)
		return NULL;
	drafts = d;
	d = &drafts[ndrafts++];
	d->index = m->index;
	const struct dev_journal *j = m->st->dev.j;
	d->cal = j && j->passive ? *j->passive : *tariff_default_calendar();
	d->activation = 0;
	if (raw_copy(&d->raw, j && j->passive ? raw_of(j->passive) : NULL))
		memset(&d->raw, 0, sizeof(d->raw)); /* derived from the parsed form */
	return d;
}

/* Seasons name their week profile: resolve by the names written (the
 * season table may come before the week table), falling back on the
 * "W<digit>" convention of week_index(). */
static void
resolve_weeks(struct draft *dr)
{
	if (!dr->raw.a[1] || !dr->raw.a[2])
		return;
	struct axdr_node ns[64], nw[64];
	size_t nn;
	if (axdr_decode(dr->raw.a[1], dr->raw.len[1], ns, 64, &nn) < 0 ||
	    axdr_decode(dr->raw.a[2], dr->raw.len[2], nw, 64, &nn) < 0)
		return;
	for (uint32_t i = 0; i < ns[0].len && i < TARIFF_MAX_SEASONS; i++) {
		const struct axdr_node *wn = axdr_child(axdr_child(&ns[0], i), 2);
		for (uint32_t k = 0; wn && k < nw[0].len && k < TARIFF_MAX_WEEKS; k++) {
			const struct axdr_node *n = axdr_child(axdr_child(&nw[0], k), 0);
			if (n && n->tag == AXDR_OCTET_STRING && n->len == wn->len &&
			    memcmp(n->ptr, wn->ptr, n->len) == 0) {
				dr->cal.season[i].week = (uint8_t)k;
				break;
			}
		}
	}
}

/* Keep the bytes of attribute 6 + k as written. */
static int
draft_raw(struct draft *dr, unsigned k, const uint8_t *data, size_t len)
{
	uint8_t *p = malloc(len ? len : 1);
	if (!p)
		return METER_ENOSPC;
	memcpy(p, data, len);
	free(dr->raw.a[k]);
	dr->raw.a[k] = p;
	dr->raw.len[k] = (uint32_t)len;
	return 0;
}

static void
put_calendar(const struct tariff_calendar *c, unsigned attr, int64_t t, const struct cosem_tz *tz,
             struct mbuf *out)
{
	(void)t;
	(void)tz;
	char nm[8];
	switch (attr) {
	case 0: /* name */
		axdr_put_octet_string(out, c->name, (uint32_t)strnlen(c->name, sizeof(c->name)));
		break;
	case 1: /* seasons */
		axdr_put_array(out, c->n_seasons);
		for (unsigned i = 0; i < c->n_seasons; i++) {
			const struct tariff_season *s = &c->season[i];
			axdr_put_structure(out, 3);
			snprintf(nm, sizeof(nm), "S%u", i);
			axdr_put_octet_string(out, nm, (uint32_t)strlen(nm));
			struct cosem_datetime dt = {
			    0xffff, s->month, s->day, 0xff, 0, 0, 0, 0, COSEM_DEVIATION_UNSPEC,
			    0xff};
			axdr_put_datetime_octets(out, &dt);
			snprintf(nm, sizeof(nm), "W%u", s->week);
			axdr_put_octet_string(out, nm, (uint32_t)strlen(nm));
		}
		break;
	case 2: /* weeks */
		axdr_put_array(out, c->n_weeks);
		for (unsigned i = 0; i < c->n_weeks; i++) {
			axdr_put_structure(out, 8);
			snprintf(nm, sizeof(nm), "W%u", i);
			axdr_put_octet_string(out, nm, (uint32_t)strlen(nm));
			for (unsigned d = 0; d < 7; d++)
				axdr_put_unsigned(out, c->week[i][d]);
		}
		break;
	default: /* days */
		axdr_put_array(out, c->n_days);
		for (unsigned i = 0; i < c->n_days; i++) {
			const struct tariff_day *d = &c->day[i];
			axdr_put_structure(out, 2);
			axdr_put_unsigned(out, (uint8_t)i);
			axdr_put_array(out, d->n);
			for (unsigned k = 0; k < d->n; k++) {
				axdr_put_structure(out, 3);
				uint8_t tm[4] = {(uint8_t)(d->a[k].minute / 60),
				                 (uint8_t)(d->a[k].minute % 60), 0, 0};
				axdr_put_octet_string(out, tm, 4);
				struct obis sc = OBIS(0, 0, 10, 0, 100, 255);
				put_ln(out, &sc);
				axdr_put_long_unsigned(out, d->a[k].tariff);
			}
		}
		break;
	}
}

static unsigned
week_index(const struct axdr_node *n)
{
	/* "W<digit>" names (ours); others map by their last byte */
	if (n && n->tag == AXDR_OCTET_STRING && n->len >= 1)
		return (unsigned)(n->ptr[n->len - 1] - '0') % TARIFF_MAX_WEEKS;
	return 0;
}

/* Write one passive attribute into c; returns a data-access-result. */
static int
parse_calendar(struct tariff_calendar *c, unsigned attr, const struct axdr_node *n)
{
	switch (attr) {
	case 0:
		if (n->tag != AXDR_OCTET_STRING || n->len > sizeof(c->name))
			return XDLMS_DAR_TYPE_UNMATCHED;
		memset(c->name, 0, sizeof(c->name));
		memcpy(c->name, n->ptr, n->len);
		return 0;
	case 1:
		if (n->tag != AXDR_ARRAY || n->len > TARIFF_MAX_SEASONS)
			return XDLMS_DAR_TYPE_UNMATCHED;
		for (uint32_t i = 0; i < n->len; i++) {
			const struct axdr_node *s = axdr_child(n, i);
			const struct axdr_node *st = axdr_child(s, 1);
			struct cosem_datetime dt;
			if (!s || s->tag != AXDR_STRUCTURE || s->len != 3 || !st || st->len != 12 ||
			    st->tag != AXDR_OCTET_STRING || cosem_datetime_decode(st->ptr, &dt))
				return XDLMS_DAR_TYPE_UNMATCHED;
			c->season[i].month = dt.month;
			c->season[i].day = dt.day;
			c->season[i].week = (uint8_t)week_index(axdr_child(s, 2));
		}
		c->n_seasons = (uint8_t)n->len;
		return 0;
	case 2:
		if (n->tag != AXDR_ARRAY || n->len > TARIFF_MAX_WEEKS)
			return XDLMS_DAR_TYPE_UNMATCHED;
		for (uint32_t i = 0; i < n->len; i++) {
			const struct axdr_node *w = axdr_child(n, i);
			if (!w || w->tag != AXDR_STRUCTURE || w->len != 8)
				return XDLMS_DAR_TYPE_UNMATCHED;
			for (unsigned d = 0; d < 7; d++) {
				const struct axdr_node *x = axdr_child(w, d + 1);
				if (!x || x->tag != AXDR_UNSIGNED)
					return XDLMS_DAR_TYPE_UNMATCHED;
				c->week[i][d] = (uint8_t)x->v.u;
			}
		}
		c->n_weeks = (uint8_t)n->len;
		return 0;
	default:
		if (n->tag != AXDR_ARRAY || n->len > TARIFF_MAX_DAYS)
			return XDLMS_DAR_TYPE_UNMATCHED;
		for (uint32_t i = 0; i < n->len; i++) {
			const struct axdr_node *d = axdr_child(n, i);
			const struct axdr_node *sch = axdr_child(d, 1);
			const struct axdr_node *id = axdr_child(d, 0);
			if (!d || !sch || !id || sch->tag != AXDR_ARRAY ||
			    sch->len > TARIFF_MAX_ACTIONS || id->v.u >= TARIFF_MAX_DAYS)
				return XDLMS_DAR_TYPE_UNMATCHED;
			struct tariff_day *td = &c->day[id->v.u];
			td->n = 0;
			for (uint32_t k = 0; k < sch->len; k++) {
				const struct axdr_node *a = axdr_child(sch, k);
				const struct axdr_node *tm = axdr_child(a, 0),
				                       *sel = axdr_child(a, 2);
				if (!a || !tm || !sel || tm->tag != AXDR_OCTET_STRING ||
				    tm->len != 4 || tm->ptr[0] > 23 || tm->ptr[1] > 59 ||
				    sel->v.u < 1 || sel->v.u > TARIFF_MAX)
					return XDLMS_DAR_TYPE_UNMATCHED;
				td->a[td->n].minute = (uint16_t)(tm->ptr[0] * 60 + tm->ptr[1]);
				td->a[td->n].tariff = (uint8_t)sel->v.u;
				td->n++;
			}
			if (id->v.u + 1 > c->n_days)
				c->n_days = (uint8_t)(id->v.u + 1);
		}
		return 0;
	}
}

/* ---- GET ---------------------------------------------------------------------- */

static const uint8_t uc_phase_map[3] = {0, 1, 2};

static int
get_attr(const struct obj *ob, const struct dlms_server_req *rq, struct sim_meter *m, int64_t t,
         struct mbuf *out)
{
	int attr = rq->desc.id;
	const struct cosem_tz *tz = &m->fleet->cfg.tz;
	const struct dev_state *d = &m->st->dev;
	if (attr == 1) {
		put_ln(out, &ob->o);
		return 0;
	}
	if (attr < 1 || attr > ob->nattr)
		return XDLMS_DAR_OBJECT_UNAVAILABLE;
	if (rq->sel && !(ob->cls == 7 && attr == 2))
		return XDLMS_DAR_OBJECT_UNAVAILABLE;
	switch (ob->kind) {
	case K_CLOCK: {
		switch (attr) {
		case 2: {
			int64_t ms = sim_clock_ms(m, t);
			struct cosem_datetime dt;
			int64_t s = ms >= 0 ? ms / 1000 : -((-ms + 999) / 1000);
			cosem_datetime_from_utc(s, tz, &dt);
			dt.hundredths = (uint8_t)((ms - s * 1000) / 10);
			axdr_put_datetime_octets(out, &dt);
			return 0;
		}
		case 3:
			axdr_put_long(out, (int16_t)-tz->std_offset);
			return 0;
		case 4: {
			struct cosem_datetime dt;
			cosem_datetime_from_utc(t, tz, &dt);
			axdr_put_unsigned(out, dt.status);
			return 0;
		}
		case 5:
		case 6: {
			/* last Sunday of March / October, 02:00 / 03:00 local */
			struct cosem_datetime dt = {0xffff,
			                            attr == 5 ? 3 : 10,
			                            COSEM_DAY_LAST,
			                            7,
			                            attr == 5 ? 2 : 3,
			                            0,
			                            0,
			                            0,
			                            COSEM_DEVIATION_UNSPEC,
			                            0xff};
			axdr_put_datetime_octets(out, &dt);
			return 0;
		}
		case 7:
			axdr_put_integer(out, 60);
			return 0;
		case 8:
			axdr_put_boolean(out, tz->dst_rule != 0);
			return 0;
		default:
			axdr_put_enum(out, 1); /* internal crystal */
			return 0;
		}
	}
	case K_LDN: {
		char s[16];
		snprintf(s, sizeof(s), "KAM%08u", m->serial);
		axdr_put_octet_string(out, s, (uint32_t)strlen(s));
		return 0;
	}
	case K_SERIAL: {
		char s[12];
		snprintf(s, sizeof(s), "%08u", m->serial);
		axdr_put_octet_string(out, s, 8);
		return 0;
	}
	case K_FW:
		axdr_put_octet_string(out, m->firmware, (uint32_t)strlen(m->firmware));
		return 0;
	case K_ALN:
		switch (attr) {
		case 2:
			build_table();
			axdr_put_array(out, (uint32_t)nobjs);
			for (size_t i = 0; i < nobjs; i++) {
				const struct obj *o = &objs[i];
				axdr_put_structure(out, 4);
				axdr_put_long_unsigned(out, o->cls);
				axdr_put_unsigned(out, o->ver);
				put_ln(out, &o->o);
				axdr_put_structure(out, 2);
				axdr_put_array(out, o->nattr);
				for (unsigned a = 1; a <= o->nattr; a++) {
					axdr_put_structure(out, 3);
					axdr_put_integer(out, (int8_t)a);
					axdr_put_enum(out, a == 1 ? 1 : 3); /* read, read-write */
					axdr_put_null(out);
				}
				axdr_put_array(out, o->nmeth);
				for (unsigned k = 1; k <= o->nmeth; k++) {
					axdr_put_structure(out, 2);
					axdr_put_integer(out, (int8_t)k);
					axdr_put_enum(out, 1);
				}
			}
			return 0;
		case 3:
			axdr_put_structure(out, 2);
			axdr_put_integer(out, (int8_t)rq->client);
			axdr_put_long_unsigned(out, 1);
			return 0;
		case 6: {
			/* authentication_mechanism_name 2.16.756.5.8.2.x */
			uint8_t mn[7] = {
			    0x60, 0x85, 0x74, 0x05, 0x08, 0x02, (uint8_t)rq->mechanism};
			axdr_put_octet_string(out, mn, 7);
			return 0;
		}
		case 8:
			return XDLMS_DAR_READ_WRITE_DENIED; /* secret */
		case 9:
			axdr_put_enum(out, 2); /* associated */
			return 0;
		default:
			axdr_put_null(out);
			return 0;
		}
	case K_ENERGY:
	case K_DELTA:
	case K_VOLT:
	case K_CURR:
	case K_POWER:
	case K_PTOT:
	case K_PEXP: {
		if (attr == 3) {
			static const uint8_t qunit[SIM_NQ] = {30, 30, 32, 32};
			switch (ob->kind) {
			case K_VOLT:
				put_scaler_unit(out, -1, 35);
				break;
			case K_CURR:
				put_scaler_unit(out, -3, 33);
				break;
			case K_ENERGY:
			case K_DELTA:
				put_scaler_unit(out, 0, qunit[ob->a]);
				break;
			default:
				put_scaler_unit(out, 0, 27);
				break;
			}
			return 0;
		}
		if (ob->kind == K_ENERGY) {
			struct sim_registers r;
			sim_registers(m, t, &r);
			int64_t v = ob->b ? r.tariff[ob->a][ob->b - 1] : r.total[ob->a];
			axdr_put_double_long_unsigned(out, (uint32_t)v);
			return 0;
		}
		if (ob->kind == K_DELTA) {
			/* energy of the last completed capture period */
			uint16_t p = m->st->period;
			int64_t end = t / p * p;
			int64_t v = sim_energy(m, ob->a, end) - sim_energy(m, ob->a, end - p);
			axdr_put_double_long_unsigned(out, (uint32_t)(v < 0 ? 0 : v));
			return 0;
		}
		struct sim_instant in;
		sim_instant(m, t, &in);
		unsigned p = uc_phase_map[ob->b];
		if (ob->kind == K_VOLT)
			axdr_put_long_unsigned(out, in.u[p]);
		else if (ob->kind == K_CURR)
			axdr_put_double_long_unsigned(out, in.i[p]);
		else if (ob->kind == K_POWER)
			axdr_put_double_long(out, in.p[p]);
		else if (ob->kind == K_PTOT)
			axdr_put_double_long(out, in.p_import);
		else
			axdr_put_double_long(out, in.p_export);
		return 0;
	}
	case K_PEAK: {
		struct sim_demand dm;
		sim_demand(m, sim_month_start(m, t), t, &dm);
		const struct sim_peak *pk = ob->a ? &dm.tariff[ob->a - 1] : &dm.total;
		switch (attr) {
		case 2:
			axdr_put_double_long_unsigned(out, pk->w);
			return 0;
		case 3:
			put_scaler_unit(out, 0, 27);
			return 0;
		case 4:
			axdr_put_unsigned(out, 0);
			return 0;
		default:
			if (pk->at)
				put_dt(out, pk->at, tz);
			else
				put_dt_unspec(out);
			return 0;
		}
	}
	case K_LP:
	case K_ANALYSIS:
	case K_BILLING:
	case K_LOG:
		switch (attr) {
		case 2:
			return profile_buffer(ob, m, t, rq->sel, out);
		case 3:
			profile_capture(ob, m, out);
			return 0;
		case 4:
			axdr_put_double_long_unsigned(out, ob->kind == K_LP         ? m->st->period
			                                   : ob->kind == K_ANALYSIS ? sim_analysis_period(m)
			                                                            : 0);
			return 0;
		case 5:
			axdr_put_enum(out, 1); /* fifo */
			return 0;
		case 6:
			put_capture(out, 8, OBIS(0, 0, 1, 0, 0, 255), 2);
			return 0;
		case 7:
			axdr_put_double_long_unsigned(out, profile_entries(ob, m, t, true));
			return 0;
		default:
			axdr_put_double_long_unsigned(out, profile_entries(ob, m, t, false));
			return 0;
		}
	case K_STATUS:
		axdr_put_unsigned(out, d->control == DEV_CONNECTED ? 0 : 0x04);
		return 0;
	case K_EVCODE: {
		struct sim_evbuf ev = {0};
		events_log(m, ob->a, t, &ev);
		axdr_put_long_unsigned(out, ev.n ? ev.v[ev.n - 1].code : 0);
		events_free(&ev);
		return 0;
	}
	case K_DISC:
		if (attr == 2)
			axdr_put_boolean(out, d->control == DEV_CONNECTED);
		else if (attr == 3)
			axdr_put_enum(out, d->control);
		else
			axdr_put_enum(out, d->mode);
		return 0;
	case K_LIMITER:
		switch (attr) {
		case 2:
			put_capture(out, 3, OBIS(1, 0, 1, 7, 0, 255), 2);
			return 0;
		case 3:
			axdr_put_double_long_unsigned(out, d->emergency ? d->thr_emergency
			                                                : d->thr_normal);
			return 0;
		case 4:
			axdr_put_double_long_unsigned(out, d->thr_normal);
			return 0;
		case 5:
			axdr_put_double_long_unsigned(out, d->thr_emergency);
			return 0;
		case 6:
			axdr_put_double_long_unsigned(out, d->min_over);
			return 0;
		case 7:
			axdr_put_double_long_unsigned(out, d->min_under);
			return 0;
		case 8:
			axdr_put_structure(out, 3);
			axdr_put_long_unsigned(out, 0);
			put_dt_unspec(out);
			axdr_put_double_long_unsigned(out, 0);
			return 0;
		case 9:
			axdr_put_array(out, 0);
			return 0;
		case 10:
			axdr_put_boolean(out, d->emergency);
			return 0;
		default: {
			struct obis dc = OBIS(0, 0, 10, 0, 106, 255);
			axdr_put_structure(out, 2);
			for (int k = 0; k < 2; k++) {
				axdr_put_structure(out, 2);
				put_ln(out, &dc);
				axdr_put_long_unsigned(out, (uint16_t)(k + 1));
			}
			return 0;
		}
		}
	case K_ACCOUNT:
		axdr_put_structure(out, 2);
		axdr_put_enum(out, d->payment);
		axdr_put_enum(out, 2); /* active */
		return 0;
	case K_CREDIT:
		switch (attr) {
		case 2: {
			int64_t c = d->payment == DEV_PAY_PREPAID ? dev_credit(m, t) : 0;
			axdr_put_double_long(out, (int32_t)c);
			return 0;
		}
		case 3:
			axdr_put_enum(out, 0); /* token credit */
			return 0;
		case 4:
			axdr_put_unsigned(out, 1);
			return 0;
		case 5:
			axdr_put_double_long(out, (int32_t)d->credit_warn);
			return 0;
		case 6:
			axdr_put_double_long(out, 0);
			return 0;
		case 7: {
			uint8_t bits = 0x80; /* requires visual indication */
			axdr_put_bit_string(out, &bits, 5);
			return 0;
		}
		default: {
			uint8_t st = d->payment != DEV_PAY_PREPAID ? 1
			             : dev_credit(m, t) <= 0       ? 4
			                                           : 3;
			axdr_put_enum(out, st);
			return 0;
		}
		}
	case K_CAL: {
		struct dev_calendar_change cc = dev_calendar_at(d->j, t);
		const struct tariff_calendar *act = cc.cal ? cc.cal : NULL;
		static struct tariff_calendar single; /* prepayment: one tariff */
		if (!act) {
			memset(&single, 0, sizeof(single));
			memcpy(single.name, "SINGLE", 6);
			single.n_seasons = single.n_weeks = single.n_days = 1;
			single.season[0] = (struct tariff_season){1, 1, 0};
			single.day[0].n = 1;
			single.day[0].a[0] = (struct tariff_action){0, 1};
			act = &single;
		}
		const struct tariff_calendar *pas = d->j && d->j->passive ? d->j->passive : act;
		if (attr >= 2 && attr <= 9) {
			const struct tariff_calendar *c = attr <= 5 ? act : pas;
			unsigned k = (unsigned)attr - (attr <= 5 ? 2 : 6);
			const struct calraw *raw = raw_of(c);
			if (raw && raw->a[k])
				mbuf_put(out, raw->a[k], raw->len[k]);
			else
				put_calendar(c, k, t, tz, out);
			return 0;
		}
		if (d->j && d->j->passive && d->j->passive_at)
			put_dt(out, d->j->passive_at, tz);
		else
			put_dt_unspec(out);
		return 0;
	}
	case K_SPECIAL: {
		struct dev_calendar_change cc = dev_calendar_at(d->j, t);
		const struct tariff_special *sp = cc.sp;
		uint32_t n = sp ? sp->n : 0;
		axdr_put_array(out, n);
		for (uint32_t i = 0; i < n; i++) {
			axdr_put_structure(out, 3);
			axdr_put_long_unsigned(out, sp->d[i].index);
			struct cosem_date dd = {sp->d[i].year, sp->d[i].month, sp->d[i].day, 0xff};
			uint8_t raw[5];
			cosem_date_encode(&dd, raw);
			axdr_put_octet_string(out, raw, 5);
			axdr_put_unsigned(out, sp->d[i].day_id);
		}
		return 0;
	}
	case K_SCRIPTS: {
		struct obis ct = OBIS(0, 0, 96, 14, 0, 255);
		axdr_put_array(out, TARIFF_MAX);
		for (unsigned i = 1; i <= TARIFF_MAX; i++) {
			axdr_put_structure(out, 2);
			axdr_put_long_unsigned(out, (uint16_t)i);
			axdr_put_array(out, 1);
			axdr_put_structure(out, 5);
			axdr_put_enum(out, 1); /* write attribute */
			axdr_put_long_unsigned(out, 1);
			put_ln(out, &ct);
			axdr_put_integer(out, 2);
			axdr_put_unsigned(out, (uint8_t)i);
		}
		return 0;
	}
	case K_TARIFF: {
		struct dev_calendar_change cc = dev_calendar_at(d->j, t);
		axdr_put_unsigned(out, tariff_at(cc.cal, cc.sp, tz, t));
		return 0;
	}
	case K_SECSETUP:
		switch (attr) {
		case 2:
			axdr_put_enum(out, m->security == SIM_SEC_HLS ? 3 : 0);
			return 0;
		case 3:
			axdr_put_enum(out, 0); /* suite 0: AES-GCM-128 */
			return 0;
		case 4:
			axdr_put_octet_string(out, rq->srv->client_title,
			                      rq->srv->have_client_title ? 8 : 0);
			return 0;
		default:
			axdr_put_octet_string(out, m->system_title, 8);
			return 0;
		}
	case K_IC:
		axdr_put_double_long_unsigned(out, rq->srv->tx_counter);
		return 0;
	case K_ALARM:
		axdr_put_double_long_unsigned(out, cosem_alarms(m, t));
		return 0;
	case K_PUSH:
		switch (attr) {
		case 2:
			axdr_put_array(out, 4);
			put_capture(out, 1, OBIS(0, 0, 42, 0, 0, 255), 2);
			put_capture(out, 8, OBIS(0, 0, 1, 0, 0, 255), 2);
			put_capture(out, 3, OBIS(1, 0, 1, 8, 0, 255), 2);
			put_capture(out, 1, OBIS(0, 0, 97, 98, 0, 255), 2);
			return 0;
		case 3:
			axdr_put_structure(out, 3);
			axdr_put_enum(out, 0);
			axdr_put_octet_string(out, "head-end", 8);
			axdr_put_enum(out, 0);
			return 0;
		case 4:
			axdr_put_array(out, 0);
			return 0;
		case 5:
			axdr_put_long_unsigned(out, 30);
			return 0;
		case 6:
			axdr_put_unsigned(out, 3);
			return 0;
		default:
			axdr_put_long_unsigned(out, 60);
			return 0;
		}
	}
	return XDLMS_DAR_OBJECT_UNAVAILABLE;
}

/* Load the meter of a request, at the simulated time, device state
 * brought up to it; takes the model lock (caller unlocks). */
static int64_t
enter(void *arg, struct sim_meter *m)
{
	struct cosem_ctx *c = arg;
	serve_lock(c->sv);
	sim_meter_load(c->sv->fleet, c->index, m);
	int64_t t = serve_now(c->sv);
	if (t < m->installed)
		t = m->installed;
	dev_advance(m, t);
	return t;
}

static int
cm_get(void *arg, const struct dlms_server_req *rq, struct mbuf *out)
{
	struct cosem_ctx *c = arg;
	const struct obj *ob = find(&rq->desc.obis);
	if (!ob)
		return XDLMS_DAR_OBJECT_UNDEFINED;
	if (ob->cls != rq->desc.class_id)
		return XDLMS_DAR_OBJECT_CLASS_INCONSISTENT;
	struct sim_meter m;
	int64_t t = enter(arg, &m);
	int dar = get_attr(ob, rq, &m, t, out);
	serve_unlock(c->sv);
	return dar;
}

/* ---- SET and ACTION ------------------------------------------------------------------ */

static int
dev_to_dar(int rc)
{
	if (rc == 0)
		return XDLMS_DAR_SUCCESS;
	if (rc == METER_ESTATE)
		return XDLMS_DAR_TEMPORARY_FAILURE;
	if (rc == METER_ERANGE)
		return XDLMS_DAR_TYPE_UNMATCHED;
	return XDLMS_DAR_OTHER_REASON;
}

/* SET of capture_objects: the clock first, then channels the meter can
 * capture (served in their canonical order). */
static int
ana_set_capture(struct sim_meter *m, int64_t t, const struct axdr_node *n)
{
	if (n->tag != AXDR_ARRAY || n->len < 2 || n->len > MAXCOL)
		return XDLMS_DAR_TYPE_UNMATCHED;
	uint16_t chans = 0;
	for (uint32_t i = 0; i < n->len; i++) {
		struct xdlms_capture_obj co;
		if (xdlms_capture_obj_from_node(axdr_child(n, i), &co))
			return XDLMS_DAR_TYPE_UNMATCHED;
		if (i == 0) {
			struct obis clk = OBIS(0, 0, 1, 0, 0, 255);
			if (co.class_id != 8 || !obis_eq(&co.obis, &clk) || co.attribute != 2)
				return XDLMS_DAR_TYPE_UNMATCHED;
			continue;
		}
		unsigned k;
		for (k = 0; k < 11; k++) {
			struct anacol a = ana_chan(k);
			if (a.cap.cls == co.class_id && obis_eq(&a.cap.o, &co.obis) &&
			    a.cap.attr == co.attribute)
				break;
		}
		if (k == 11)
			return XDLMS_DAR_TYPE_UNMATCHED;
		chans |= (uint16_t)(1u << k);
	}
	return dev_to_dar(dev_set_analysis(m, t, chans, sim_analysis_period(m)));
}

/* A spec_day_entry: structure {index long-unsigned, specialday_date
 * octet-string (date), day_id unsigned}. */
static int
spec_day(const struct axdr_node *e, struct tariff_special_day *out)
{
	const struct axdr_node *ix = axdr_child(e, 0), *dt = axdr_child(e, 1),
	                       *id = axdr_child(e, 2);
	struct cosem_date dd;
	if (!e || e->tag != AXDR_STRUCTURE || !ix || !dt || !id || ix->tag != AXDR_LONG_UNSIGNED ||
	    id->tag != AXDR_UNSIGNED || dt->tag != AXDR_OCTET_STRING || dt->len != 5 ||
	    cosem_date_decode(dt->ptr, &dd))
		return METER_EMALFORMED;
	*out = (struct tariff_special_day){dd.year, dd.month, dd.day, (uint8_t)id->v.u,
	                                   (uint16_t)ix->v.u};
	return 0;
}

static int
set_attr(const struct obj *ob, int attr, struct sim_meter *m, int64_t t, const struct axdr_node *n,
         const uint8_t *data, size_t len)
{
	struct dev_state *d = &m->st->dev;
	int64_t v = 0;
	bool num = axdr_to_int64(n, &v) == 0;
	switch (ob->kind) {
	case K_DISC:
		if (attr != 4 || !num)
			return XDLMS_DAR_READ_WRITE_DENIED;
		return dev_to_dar(dev_set_control_mode(m, t, (uint8_t)v));
	case K_LIMITER:
		if (attr == 10 && n->tag == AXDR_BOOLEAN)
			return dev_to_dar(dev_set_emergency(m, t, n->v.u != 0));
		if (attr < 4 || attr > 7 || !num || v < 0)
			return XDLMS_DAR_READ_WRITE_DENIED;
		{
			uint32_t x[4] = {d->thr_normal, d->thr_emergency, d->min_over,
			                 d->min_under};
			x[attr - 4] = (uint32_t)v;
			return dev_to_dar(dev_set_limiter(m, t, x[0], x[1], x[2], x[3]));
		}
	case K_ACCOUNT: {
		const struct axdr_node *mode = n->tag == AXDR_STRUCTURE ? axdr_child(n, 0) : n;
		int64_t mv;
		if (attr != 2 || !mode || axdr_to_int64(mode, &mv))
			return XDLMS_DAR_TYPE_UNMATCHED;
		return dev_to_dar(dev_set_payment_mode(m, t, (uint8_t)mv));
	}
	case K_CREDIT:
		if (attr == 5 && num && v >= 0) {
			d->credit_warn = (uint32_t)v;
			return XDLMS_DAR_SUCCESS;
		}
		return XDLMS_DAR_READ_WRITE_DENIED;
	case K_LP:
		if (attr == 4 && num)
			return dev_to_dar(sim_set_period(m, t, (uint16_t)v));
		return XDLMS_DAR_READ_WRITE_DENIED;
	case K_ANALYSIS:
		if (attr == 3)
			return ana_set_capture(m, t, n);
		if (attr == 4 && num && v >= 0 && v <= 86400)
			return dev_to_dar(dev_set_analysis(m, t, sim_analysis_chans(m), (uint32_t)v));
		return XDLMS_DAR_READ_WRITE_DENIED;
	case K_CAL: {
		struct draft *dr = draft_of(m);
		if (!dr)
			return XDLMS_DAR_OTHER_REASON;
		if (attr >= 6 && attr <= 9) {
			struct tariff_calendar c = dr->cal;
			int dar = parse_calendar(&c, (unsigned)attr - 6, n);
			if (dar)
				return dar;
			if (draft_raw(dr, (unsigned)attr - 6, data, len))
				return XDLMS_DAR_OTHER_REASON;
			dr->cal = c;
			resolve_weeks(dr);
		} else if (attr == 10) {
			int64_t at;
			if (node_utc(n, &m->fleet->cfg.tz, &at))
				at = 0; /* unspecified: on command */
			dr->activation = at;
		} else {
			return XDLMS_DAR_READ_WRITE_DENIED;
		}
		if (tariff_calendar_check(&dr->cal))
			return XDLMS_DAR_SUCCESS; /* incomplete so far: kept as a draft */
		int rc = dev_calendar_passive(m, t, &dr->cal, dr->activation);
		if (!rc)
			raw_keep(m, dr);
		return dev_to_dar(rc);
	}
	case K_SPECIAL: {
		if (attr != 2 || n->tag != AXDR_ARRAY || n->len > TARIFF_MAX_SPECIAL)
			return XDLMS_DAR_TYPE_UNMATCHED;
		struct tariff_special sp = {0};
		for (uint32_t i = 0; i < n->len; i++)
			if (spec_day(axdr_child(n, i), &sp.d[i]))
				return XDLMS_DAR_TYPE_UNMATCHED;
		sp.n = (uint8_t)n->len;
		return dev_to_dar(dev_special_days(m, t, &sp));
	}
	case K_CLOCK: {
		struct cosem_datetime dt;
		int64_t s;
		if (attr != 2)
			return XDLMS_DAR_READ_WRITE_DENIED;
		if (n->tag != AXDR_OCTET_STRING || n->len != 12 ||
		    cosem_datetime_decode(n->ptr, &dt) ||
		    cosem_datetime_to_utc(&dt, &m->fleet->cfg.tz, &s))
			return XDLMS_DAR_TYPE_UNMATCHED;
		int64_t ms = s * 1000 + (dt.hundredths < 100 ? dt.hundredths * 10 : 0);
		return dev_to_dar(dev_clock_set(m, t, ms));
	}
	default:
		return XDLMS_DAR_READ_WRITE_DENIED;
	}
}

static int
cm_set(void *arg, const struct dlms_server_req *rq, const uint8_t *data, size_t len)
{
	struct cosem_ctx *c = arg;
	const struct obj *ob = find(&rq->desc.obis);
	if (!ob)
		return XDLMS_DAR_OBJECT_UNDEFINED;
	if (ob->cls != rq->desc.class_id)
		return XDLMS_DAR_OBJECT_CLASS_INCONSISTENT;
	struct axdr_node *nodes = malloc(NODES * sizeof(*nodes));
	size_t nn;
	if (!nodes)
		return XDLMS_DAR_OTHER_REASON;
	if (axdr_decode(data, len, nodes, NODES, &nn) < 0) {
		free(nodes);
		return XDLMS_DAR_TYPE_UNMATCHED;
	}
	struct sim_meter m;
	int64_t t = enter(arg, &m);
	int dar = set_attr(ob, rq->desc.id, &m, t, nodes, data, len);
	serve_unlock(c->sv);
	free(nodes);
	return dar;
}

static int
force_tariff(struct sim_meter *m, int64_t t, unsigned tariff)
{
	struct tariff_calendar cal = {0};
	snprintf(cal.name, sizeof(cal.name), "FORCE%u", tariff);
	cal.n_seasons = cal.n_weeks = cal.n_days = 1;
	cal.season[0] = (struct tariff_season){1, 1, 0};
	cal.day[0].n = 1;
	cal.day[0].a[0] = (struct tariff_action){0, (uint8_t)tariff};
	int rc = dev_calendar_passive(m, t, &cal, 0);
	if (!rc)
		rc = dev_calendar_activate(m, t);
	return rc;
}

static int
cm_action(void *arg, const struct dlms_server_req *rq, const uint8_t *params, size_t len,
          struct mbuf *out)
{
	(void)out;
	struct cosem_ctx *c = arg;
	const struct obj *ob = find(&rq->desc.obis);
	if (!ob)
		return XDLMS_AR_OBJECT_UNDEFINED;
	if (ob->cls != rq->desc.class_id)
		return XDLMS_AR_OBJECT_CLASS_INCONSISTENT;
	struct axdr_node nodes[8];
	size_t nn = 0;
	int64_t v = 0;
	bool num = false;
	if (params && len && axdr_decode(params, len, nodes, 8, &nn) > 0)
		num = axdr_to_int64(&nodes[0], &v) == 0;
	struct sim_meter m;
	int64_t t = enter(arg, &m);
	int rc = METER_EUNSUPPORTED;
	int id = rq->desc.id;
	switch (ob->kind) {
	case K_DISC:
		if (id == 1)
			rc = dev_remote_disconnect(&m, t);
		else if (id == 2)
			rc = dev_remote_reconnect(&m, t);
		break;
	case K_CREDIT:
		if (id == 1 && num)
			rc = dev_credit_add(&m, t, v);
		else if (id == 2 && num)
			rc = dev_credit_set(&m, t, v);
		else if (id <= 2)
			rc = METER_ERANGE;
		break;
	case K_CAL:
		if (id == 1) {
			struct draft *dr = draft_of(&m);
			const struct dev_journal *j = m.st->dev.j;
			rc = 0;
			if (!(j && j->passive) && dr && !tariff_calendar_check(&dr->cal)) {
				rc = dev_calendar_passive(&m, t, &dr->cal, 0);
				if (!rc)
					raw_keep(&m, dr);
			}
			if (!rc)
				rc = dev_calendar_activate(&m, t);
		}
		break;
	case K_CLOCK: {
		/* adjust to the nearest quarter / profile period / minute, or shift */
		int64_t now = sim_clock_ms(&m, t), q = 0;
		if (id == 1)
			q = 900000;
		else if (id == 2)
			q = (int64_t)(m.st->period ? m.st->period : m.fleet->cfg.period) * 1000;
		else if (id == 3)
			q = 60000;
		if (q) {
			int64_t r = now + q / 2;
			rc = dev_clock_set(&m, t, (r >= 0 ? r / q : (r - q + 1) / q) * q);
		} else if (id == 6 && num && v >= -900 && v <= 900) {
			rc = dev_clock_set(&m, t, now + v * 1000);
		} else if (id == 6) {
			rc = METER_ERANGE;
		} else if (id == 4) {
			rc = dev_clock_adjust_preset(&m, t);
		} else if (id == 5) {
			/* {preset_time, validity_interval_start, validity_interval_end} */
			const struct cosem_tz *tz = &m.fleet->cfg.tz;
			int64_t x[3];
			rc = nn && nodes[0].tag == AXDR_STRUCTURE && nodes[0].len == 3 ? 0 : METER_ERANGE;
			for (unsigned k = 0; k < 3 && !rc; k++)
				rc = node_utc(axdr_child(&nodes[0], k), tz, &x[k]) ? METER_ERANGE : 0;
			if (!rc)
				rc = dev_clock_preset(&m, t, x[0] * 1000, x[1] * 1000, x[2] * 1000);
		}
		break;
	}
	case K_SPECIAL: {
		struct tariff_special_day e;
		if (id == 1)
			rc = nn && !spec_day(&nodes[0], &e) ? dev_special_insert(&m, t, &e) : METER_ERANGE;
		else if (id == 2)
			rc = num && nodes[0].tag == AXDR_LONG_UNSIGNED
			         ? dev_special_delete(&m, t, (uint16_t)v)
			         : METER_ERANGE;
		break;
	}
	case K_SCRIPTS:
		if (id == 1 && num && v >= 1 && v <= TARIFF_MAX)
			rc = force_tariff(&m, t, (unsigned)v);
		else if (id == 1)
			rc = METER_ERANGE;
		break;
	default:
		break;
	}
	serve_unlock(c->sv);
	switch (rc) {
	case 0:
		return XDLMS_AR_SUCCESS;
	case METER_ESTATE:
		return XDLMS_AR_TEMPORARY_FAILURE;
	case METER_ERANGE:
		return XDLMS_AR_TYPE_UNMATCHED;
	case METER_EUNSUPPORTED:
		return XDLMS_AR_OBJECT_UNAVAILABLE;
	default:
		return XDLMS_AR_OTHER_REASON;
	}
}

const struct dlms_server_ops cosem_model_ops = {
    .get = cm_get,
    .set = cm_set,
    .action = cm_action,
    .tamper = NULL,
};

/* ---- alarms and pushes -------------------------------------------------------------- */

uint32_t
cosem_alarms(struct sim_meter *m, int64_t t)
{
	const struct dev_state *d = &m->st->dev;
	uint32_t a = 0;
	if (d->control != DEV_CONNECTED)
		a |= 1u << 0; /* breaker open */
	if (d->control == DEV_READY)
		a |= 1u << 1; /* waiting for the button */
	if (d->payment == DEV_PAY_PREPAID) {
		int64_t c = dev_credit(m, t);
		if (c <= (int64_t)d->credit_warn)
			a |= 1u << 2;
		if (c <= 0)
			a |= 1u << 3;
	}
	if (d->tripped)
		a |= 1u << 4; /* limiter */
	return a;
}

void
cosem_push_body(struct sim_meter *m, int64_t t, struct mbuf *out)
{
	char s[16];
	snprintf(s, sizeof(s), "KAM%08u", m->serial);
	struct sim_registers r;
	sim_registers(m, t, &r);
	axdr_put_structure(out, 4);
	axdr_put_octet_string(out, s, (uint32_t)strlen(s));
	put_dt(out, t, &m->fleet->cfg.tz);
	axdr_put_double_long_unsigned(out, (uint32_t)r.total[SIM_AP]);
	axdr_put_double_long_unsigned(out, cosem_alarms(m, t));
}
