/*
 * expect.c: the ground truth of one meter over a time range, printed as
 * `metersim expect` does (see expect.h).  Everything comes from the model
 * (model.h) at the meter's state: for a fleet built by the command, the
 * pure function of (seed, meter, time); for a serving process's meter,
 * that plus its device journal.  The CSV is one record per line, its
 * kind first, each section headed by a "#kind,fields..." line; readers
 * pick records by kind, so a new kind (analysis) is only printed when
 * asked for.
 */
#include "expect.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "meter_error.h"
#include "obis.h"

int
expect_parse_time(const char *s, int64_t *out)
{
	char *end;
	if (*s && strspn(s, "0123456789-") == strlen(s) && strchr(s + 1, '-') == NULL) {
		errno = 0;
		long long v = strtoll(s, &end, 10);
		if (errno || *end)
			return METER_EMALFORMED;
		*out = v;
		return 0;
	}
	int y, mo, d, h = 0, mi = 0, sec = 0, n = 0;
	if (sscanf(s, "%4d-%2d-%2d%n", &y, &mo, &d, &n) != 3)
		return METER_EMALFORMED;
	s += n;
	if (*s == 'T' || *s == ' ') {
		n = 0;
		if (sscanf(s + 1, "%2d:%2d%n", &h, &mi, &n) != 2)
			return METER_EMALFORMED;
		s += 1 + n;
		if (*s == ':') {
			n = 0;
			if (sscanf(s + 1, "%2d%n", &sec, &n) != 1)
				return METER_EMALFORMED;
			s += 1 + n;
			if (*s == '.')
				for (s++; isdigit((unsigned char)*s); s++)
					;
		}
	}
	int off = 0;
	if (*s == 'Z') {
		s++;
	} else if (*s == '+' || *s == '-') {
		int oh, om = 0;
		int sign = *s == '-' ? -1 : 1;
		n = 0;
		if (sscanf(s + 1, "%2d%n", &oh, &n) != 1)
			return METER_EMALFORMED;
		s += 1 + n;
		if (*s == ':')
			s++;
		n = 0;
		if (isdigit((unsigned char)*s) && sscanf(s, "%2d%n", &om, &n) == 1)
			s += n;
		off = sign * (oh * 60 + om);
	}
	if (*s || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60)
		return METER_EMALFORMED;
	*out = cosem_days_from_civil(y, (unsigned)mo, (unsigned)d) * 86400 + h * 3600 + mi * 60 + sec -
	       off * 60;
	return 0;
}

char *
expect_iso_utc(int64_t t, char buf[32])
{
	int y;
	unsigned mo, d;
	int64_t days = t >= 0 ? t / 86400 : -((-t + 86399) / 86400);
	int64_t s = t - days * 86400;
	cosem_civil_from_days(days, &y, &mo, &d);
	snprintf(buf, 32, "%04d-%02u-%02uT%02d:%02d:%02dZ", y, mo, d, (int)(s / 3600),
		 (int)(s / 60 % 60), (int)(s % 60));
	return buf;
}

char *
expect_iso_local(const struct sim_meter *m, int64_t t, char buf[40])
{
	struct cosem_datetime dt;
	cosem_datetime_from_utc(t, &m->fleet->cfg.tz, &dt);
	cosem_datetime_format(&dt, buf, 40);
	return buf;
}

static const struct obis q_obis[SIM_NQ] = {
	OBIS(1, 0, 1, 8, 0, 255), OBIS(1, 0, 2, 8, 0, 255), OBIS(1, 0, 3, 8, 0, 255),
	OBIS(1, 0, 4, 8, 0, 255),
};

static const char *
q_unit(unsigned q)
{
	return q == SIM_AP || q == SIM_AM ? "Wh" : "varh";
}

struct out {
	FILE *f;
	const struct sim_meter *m;
	struct json j;
	bool csv;
};

static void
put_registers(struct out *o, const char *kind, const struct sim_registers *r)
{
	char ts[32], name[OBIS_STRLEN];
	if (o->csv) {
		for (unsigned q = 0; q < SIM_NQ; q++) {
			struct obis ob = q_obis[q];
			fprintf(o->f, "%s,%s,%s,%lld,%s\n", kind, expect_iso_utc(r->t, ts), obis_format(&ob, name),
			       (long long)r->total[q], q_unit(q));
			for (unsigned t = 0; t < TARIFF_MAX; t++) {
				ob.v[4] = (uint8_t)(t + 1);
				fprintf(o->f, "%s,%s,%s,%lld,%s\n", kind, ts, obis_format(&ob, name),
				       (long long)r->tariff[q][t], q_unit(q));
			}
		}
		return;
	}
	struct json *j = &o->j;
	json_obj_begin(j, NULL);
	json_str(j, "at", expect_iso_utc(r->t, ts));
	for (unsigned q = 0; q < SIM_NQ; q++)
		json_int(j, sim_q_name((uint8_t)q), r->total[q]);
	json_int(j, "active_tariff", r->active_tariff);
	json_obj_begin(j, "obis");
	for (unsigned q = 0; q < SIM_NQ; q++) {
		struct obis ob = q_obis[q];
		json_int(j, obis_format(&ob, name), r->total[q]);
		for (unsigned t = 0; t < TARIFF_MAX; t++) {
			ob.v[4] = (uint8_t)(t + 1);
			json_int(j, obis_format(&ob, name), r->tariff[q][t]);
		}
	}
	json_obj_end(j);
	json_obj_end(j);
}

static void
put_interval(void *arg, const struct sim_interval *iv)
{
	struct out *o = arg;
	char ts[32], lt[40];
	if (o->csv) {
		fprintf(o->f, "interval,%s,%s,%u,%u,%u,%u,%u\n", expect_iso_utc(iv->end, ts), expect_iso_local(o->m, iv->end, lt),
		       iv->e[0], iv->e[1], iv->e[2], iv->e[3], iv->status);
		return;
	}
	struct json *j = &o->j;
	json_obj_begin(j, NULL);
	json_str(j, "end", expect_iso_utc(iv->end, ts));
	json_str(j, "local", expect_iso_local(o->m, iv->end, lt));
	for (unsigned q = 0; q < SIM_NQ; q++)
		json_uint(j, sim_q_name((uint8_t)q), iv->e[q]);
	json_uint(j, "status", iv->status);
	json_obj_end(j);
}

static void
put_event(struct out *o, const struct sim_event *e)
{
	char ts[32], lt[40], name[OBIS_STRLEN];
	struct obis ob = events_log_obis(e->log);
	if (o->csv) {
		fprintf(o->f, "event,%s,%s,%s,%s,%u,%s\n", expect_iso_utc(e->t, ts), expect_iso_local(o->m, e->t, lt),
		       events_log_name(e->log), obis_format(&ob, name), e->code,
		       events_code_name(e->code));
		return;
	}
	struct json *j = &o->j;
	json_obj_begin(j, NULL);
	json_str(j, "t", expect_iso_utc(e->t, ts));
	json_str(j, "local", expect_iso_local(o->m, e->t, lt));
	json_str(j, "log", events_log_name(e->log));
	json_str(j, "obis", obis_format(&ob, name));
	json_uint(j, "code", e->code);
	json_str(j, "name", events_code_name(e->code));
	json_obj_end(j);
}

static void
put_peak(struct json *j, const char *key, const struct sim_peak *p)
{
	char ts[32];
	json_obj_begin(j, key);
	json_uint(j, "w", p->w);
	if (p->at)
		json_str(j, "at", expect_iso_utc(p->at, ts));
	else
		json_null(j, "at");
	json_obj_end(j);
}

static void
put_billing(struct out *o, const struct sim_billing *b)
{
	char ts[32], pt[32];
	if (o->csv) {
		put_registers(o, "billing", &b->r);
		fprintf(o->f, "billing_peak,%s,1-0:1.6.0.255,%u,W,%s\n", expect_iso_utc(b->t, ts), b->d.total.w,
		       b->d.total.at ? expect_iso_utc(b->d.total.at, pt) : "");
		for (unsigned t = 0; t < TARIFF_MAX; t++)
			if (b->d.tariff[t].at)
				fprintf(o->f, "billing_peak,%s,1-0:1.6.%u.255,%u,W,%s\n", ts, t + 1, b->d.tariff[t].w,
				       expect_iso_utc(b->d.tariff[t].at, pt));
		return;
	}
	struct json *j = &o->j;
	json_obj_begin(j, NULL);
	json_str(j, "t", expect_iso_utc(b->t, ts));
	for (unsigned q = 0; q < SIM_NQ; q++)
		json_int(j, sim_q_name((uint8_t)q), b->r.total[q]);
	json_arr_begin(j, "A+_tariff");
	for (unsigned t = 0; t < TARIFF_MAX; t++)
		json_int(j, NULL, b->r.tariff[SIM_AP][t]);
	json_arr_end(j);
	put_peak(j, "peak", &b->d.total);
	json_arr_begin(j, "peak_tariff");
	for (unsigned t = 0; t < TARIFF_MAX; t++)
		put_peak(j, NULL, &b->d.tariff[t]);
	json_arr_end(j);
	json_obj_end(j);
}

static void
put_analysis(void *arg, const struct sim_analysis *a)
{
	struct out *o = arg;
	const struct sim_instant *in = &a->in;
	char ts[32], lt[40];
	/* channels bit k (model.h SIM_ACH_*) in field order; channels not
	 * captured (phases the meter does not measure) are empty / null */
	long long v[11];
	for (unsigned k = 0; k < 9; k++)
		v[k] = k < 3 ? in->u[k % 3] : k < 6 ? (long long)in->i[k % 3] : in->p[k % 3];
	v[9] = in->p_import;
	v[10] = in->p_export;
	if (o->csv) {
		fprintf(o->f, "analysis,%s,%s", expect_iso_utc(a->t, ts), expect_iso_local(o->m, a->t, lt));
		for (unsigned k = 0; k < 11; k++) {
			if (a->chans >> k & 1)
				fprintf(o->f, ",%lld", v[k]);
			else
				fputs(",", o->f);
		}
		fputs("\n", o->f);
		return;
	}
	struct json *j = &o->j;
	json_obj_begin(j, NULL);
	json_str(j, "t", expect_iso_utc(a->t, ts));
	json_str(j, "local", expect_iso_local(o->m, a->t, lt));
	static const char *key[5] = {"u_dv", "i_ma", "p_w", "p_import_w", "p_export_w"};
	for (unsigned g = 0; g < 5; g++) {
		unsigned k0 = g < 3 ? 3 * g : 6 + g, n = g < 3 ? 3 : 1;
		if (g < 3)
			json_arr_begin(j, key[g]);
		for (unsigned k = k0; k < k0 + n; k++) {
			const char *name = g < 3 ? NULL : key[g];
			if (a->chans >> k & 1)
				json_int(j, name, v[k]);
			else
				json_null(j, name);
		}
		if (g < 3)
			json_arr_end(j);
	}
	json_obj_end(j);
}

int
expect_parse_what(const char *s, unsigned *what)
{
	static const char *names[] = {"registers", "intervals", "events",
	                              "billing",   "daily",     "analysis"};
	const size_t nn = sizeof(names) / sizeof(names[0]);
	unsigned w = 0;
	while (*s) {
		size_t len = strcspn(s, ",");
		size_t k;
		for (k = 0; k < nn && !(strlen(names[k]) == len && !strncmp(s, names[k], len)); k++)
			;
		if (k == nn)
			return METER_EMALFORMED;
		w |= 1u << k;
		s += len + (s[len] == ',');
	}
	*what = w;
	return 0;
}

int
expect_write(FILE *f, const struct sim_meter *m, const struct expect_req *rq)
{
	int rc = 0;
	struct out out = {.f = f, .m = m, .csv = rq->csv};
	char ts[32];
	struct json *j = &out.j;
	json_init(j, f, true);
	if (!rq->csv) {
		json_obj_begin(j, NULL);
		json_uint(j, "seed", m->fleet->cfg.seed);
		json_uint(j, "meter", m->serial);
		json_str(j, "type", sim_type_name(m->type));
		json_uint(j, "period", m->st->period);
		json_str(j, "from", expect_iso_utc(rq->from, ts));
		json_str(j, "to", expect_iso_utc(rq->to, ts));
		json_str(j, "installed", expect_iso_utc(m->installed, ts));
	} else if (rq->what & (EXPECT_REGISTERS | EXPECT_DAILY)) {
		fprintf(f, "#register,at,obis,value,unit\n");
	}
	struct sim_registers r;
	if (rq->what & EXPECT_REGISTERS) {
		sim_registers(m, rq->to, &r);
		if (!rq->csv)
			json_arr_begin(j, "registers");
		put_registers(&out, "register", &r);
		if (!rq->csv)
			json_arr_end(j);
	}
	if (rq->what & EXPECT_DAILY) {
		/* register values at every local midnight in (from, to] */
		if (!rq->csv)
			json_arr_begin(j, "daily");
		const struct cosem_tz *tz = &m->fleet->cfg.tz;
		for (int64_t d = tariff_local_day(tz, rq->from);; d++) {
			int64_t t = tariff_local_to_utc(tz, d, 0);
			if (t > rq->to)
				break;
			if (t <= rq->from || t < m->installed)
				continue;
			sim_registers(m, t, &r);
			put_registers(&out, "daily", &r);
		}
		if (!rq->csv)
			json_arr_end(j);
	}
	if (rq->what & EXPECT_INTERVALS) {
		if (rq->csv)
			fprintf(f, "#interval,end,local,A+,A-,R+,R-,status\n");
		else
			json_arr_begin(j, "intervals");
		if (sim_intervals(m, rq->from, rq->to, put_interval, &out) < 0)
			rc = METER_ENOSPC;
		if (!rq->csv)
			json_arr_end(j);
	}
	if (rq->what & EXPECT_EVENTS) {
		struct sim_evbuf ev = {0};
		if (events_range(m, rq->from, rq->to, &ev))
			rc = METER_ENOSPC;
		if (rq->csv)
			fprintf(f, "#event,t,local,log,obis,code,name\n");
		else
			json_arr_begin(j, "events");
		for (size_t i = 0; i < ev.n; i++)
			put_event(&out, &ev.v[i]);
		if (!rq->csv)
			json_arr_end(j);
		events_free(&ev);
	}
	if (rq->what & EXPECT_BILLING) {
		if (!rq->csv)
			json_arr_begin(j, "billing");
		else
			fprintf(f, "#billing,at,obis,value,unit / #billing_peak,at,obis,value,unit,captured\n");
		for (int64_t b = sim_month_next(m, rq->from); b <= rq->to; b = sim_month_next(m, b)) {
			if (b <= m->installed)
				continue;
			struct sim_billing bill;
			sim_billing(m, b, &bill);
			put_billing(&out, &bill);
		}
		if (!rq->csv)
			json_arr_end(j);
	}
	if (rq->what & EXPECT_ANALYSIS) {
		if (rq->csv)
			fprintf(f, "#analysis,t,local,u1_dV,u2_dV,u3_dV,i1_mA,i2_mA,i3_mA,p1_W,p2_W,p3_W,"
			           "p_import_W,p_export_W\n");
		else
			json_arr_begin(j, "analysis");
		sim_analysis(m, rq->from, rq->to, put_analysis, &out);
		if (!rq->csv)
			json_arr_end(j);
	}
	if (!rq->csv) {
		json_obj_end(j);
		json_end(j);
	}
	return rc;
}
