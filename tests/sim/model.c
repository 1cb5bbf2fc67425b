/*
 * model.c: the simulator's measurement model — fleet identity and energy as
 * closed-form functions of (seed, meter, time).
 *
 * Identity.  Meter i has serial 10000000 + (mul * i + add) mod 9e7, with
 * mul a seeded unit modulo 9e7, so serials are unique 8-digit numbers and
 * the reverse lookup is one multiplication by mul's inverse.  Every other
 * parameter is a hash of (seed, i, tag): type (50 % 162, 25 % 282, 25 %
 * 382M), exporter (15 %, solar), security (20 % none, 30 % LLS, 50 %
 * HLS-GMAC with 16-byte keys hashed from the seed), mean power, phase
 * shares, clock drift (±20 ppm) and the installation time (the 90 days
 * before the fleet's origin, on a whole hour) with register base values.
 *
 * Energy.  Each quadrant q has a cumulative function on the 5-minute grid
 * (x = 300 j, UTC seconds), for consumption-shaped channels (A+, R+, R-):
 *
 *   G(j) = floor( rho * ( x - x0 + D(tod) + c * dst(x) + S(x) ) + L w u(j) )
 *
 *   D(tod) = a1/om sin(om (tod - h1)) + a2/(2 om) sin(2 om (tod - h2))
 *   S(x)   = as/OM sin(OM (x - ts))           om = 2pi/day, OM = 2pi/year
 *
 * with tod the local time of day, L = 300 rho the mean energy of a grid
 * step, u(j) a hash in [0, 1), and c = D(2h) - D(3h) added while summer
 * time is in force, which keeps G continuous across both DST switches
 * (the daily shape follows local wall-clock time, the trend UTC).  The
 * derivative of the real part is rho (1 + a1 cos + a2 cos + as cos) >=
 * rho (1 - a1 - a2 - as); with a1 + a2 + as + w <= 0.95 one grid step adds
 * at least 0.05 L more than u can take away, so G never decreases.  A-
 * of an exporting meter is solar production in closed form: with solar
 * day d and time of day s on UTC+1, P the peak and sun from 06:00 to 18:00,
 *
 *   G(j) = floor( P/3600 * ( Gd * sum_{k<d} f(k) + f(d) g(s) ) ),
 *   g(s) = 12h/pi (1 - cos(pi (s - 6h) / 12h)) on [6h, 18h],  Gd = g(18h),
 *   f(k) = 1 + b cos(2pi (k - midsummer) / 365.2425)
 *
 * (the sum of cosines in closed form; times from 18:00 count as the next
 * day's 00:00 so the same expression is used on both sides of the
 * boundary).  Between grid points G is interpolated with integer
 * arithmetic.  The register is  E(t) = base + G(t) - G(installed) minus
 * G's growth over the periods the breaker was open (device journal), an
 * interval's energy is E(end) - E(end - period), so registers are exact
 * integrals of the profile at every period; per-tariff registers are the
 * base split plus E's growth summed over the calendar's constant-tariff
 * segments since installation (a telescoping sum, so they add up to the
 * total).  Power failures in the event process do not remove energy: the
 * ground truth stays self-consistent, the physics is approximate.
 */
#include "model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "meter_error.h"

#define SERIAL_MOD 90000000ull
#define SERIAL_MIN 10000000ull
#define DAY 86400
#define YEAR_S (365.2425 * DAY)

enum hash_tag {
	H_SERIAL = 1, H_TYPE, H_EXPORT, H_SEC, H_MEAN, H_SHAPE, H_SHARE, H_DRIFT, H_INSTALL,
	H_BASE, H_KEY, H_PV, H_WIGGLE, H_VOLT, H_PASSWORD,
};

uint64_t
sim_hash(uint64_t seed, uint64_t a, uint64_t b, uint64_t c)
{
	uint64_t z = seed ^ 0x9e3779b97f4a7c15ull;
	uint64_t in[3] = {a, b, c};
	for (int i = 0; i < 3; i++) {
		z += in[i] + 0x9e3779b97f4a7c15ull;
		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
		z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
		z ^= z >> 31;
	}
	return z;
}

double
sim_u01(uint64_t h)
{
	return (double)(h >> 11) * (1.0 / 9007199254740992.0);
}

static uint64_t
mh(const struct sim_meter *m, uint64_t tag, uint64_t x)
{
	return sim_hash(m->fleet->cfg.seed, m->index, tag, x);
}

static double
mu(const struct sim_meter *m, uint64_t tag, uint64_t x)
{
	return sim_u01(mh(m, tag, x));
}

/* ---- fleet ---------------------------------------------------------- */

static void meter_basics(struct sim_meter *m);

static uint64_t
gcd(uint64_t a, uint64_t b)
{
	while (b) {
		uint64_t t = a % b;
		a = b;
		b = t;
	}
	return a;
}

static uint64_t
inverse_mod(uint64_t a, uint64_t n)
{
	int64_t t = 0, nt = 1, r = (int64_t)n, nr = (int64_t)a;
	while (nr) {
		int64_t q = r / nr, x;
		x = t - q * nt, t = nt, nt = x;
		x = r - q * nr, r = nr, nr = x;
	}
	return (uint64_t)(t < 0 ? t + (int64_t)n : t);
}

struct sim_fleet *
sim_fleet_new(const struct sim_fleet_cfg *cfg)
{
	if (cfg->count == 0 || cfg->count > SIM_MAX_METERS)
		return NULL;
	if (cfg->period != 300 && cfg->period != 900 && cfg->period != 1800 && cfg->period != 3600)
		return NULL;
	struct sim_fleet *f = calloc(1, sizeof(*f));
	if (!f)
		return NULL;
	f->cfg = *cfg;
	f->mul = sim_hash(cfg->seed, 0, H_SERIAL, 1) % SERIAL_MOD;
	while (gcd(f->mul, SERIAL_MOD) != 1)
		f->mul = (f->mul + 1) % SERIAL_MOD;
	f->inv = inverse_mod(f->mul, SERIAL_MOD);
	f->add = sim_hash(cfg->seed, 0, H_SERIAL, 2) % SERIAL_MOD;
	f->st = calloc(cfg->count, sizeof(*f->st));
	if (!f->st) {
		free(f);
		return NULL;
	}
	/* The state an uncommanded meter has; the rest of it is zero.  Only
	 * the parameters the initial state depends on are derived here. */
	for (uint32_t i = 0; i < cfg->count; i++) {
		struct sim_meter m = {.fleet = f, .st = &f->st[i], .index = i};
		meter_basics(&m);
		f->st[i].period = cfg->period;
		f->st[i].profile_from = m.installed;
		dev_init(&f->st[i].dev, &m);
	}
	return f;
}

void
sim_fleet_free(struct sim_fleet *f)
{
	if (!f)
		return;
	for (uint32_t i = 0; i < f->cfg.count; i++)
		dev_free(&f->st[i].dev);
	free(f->st);
	free(f);
}

uint32_t
sim_fleet_serial(const struct sim_fleet *f, uint32_t index)
{
	return (uint32_t)(SERIAL_MIN + (f->mul * index + f->add) % SERIAL_MOD);
}

int64_t
sim_fleet_find(const struct sim_fleet *f, uint32_t serial)
{
	if (serial < SERIAL_MIN || serial >= SERIAL_MIN + SERIAL_MOD)
		return METER_ENOTFOUND;
	uint64_t v = (serial - SERIAL_MIN + SERIAL_MOD - f->add) % SERIAL_MOD;
	uint64_t i = v * f->inv % SERIAL_MOD;
	return i < f->cfg.count ? (int64_t)i : METER_ENOTFOUND;
}

const char *
sim_type_name(uint8_t type)
{
	static const char *n[] = {"162", "282", "382M"};
	return type < 3 ? n[type] : "?";
}

const char *
sim_sec_name(uint8_t sec)
{
	static const char *n[] = {"none", "lls", "hls-gmac"};
	return sec < 3 ? n[sec] : "?";
}

const char *
sim_q_name(uint8_t q)
{
	static const char *n[] = {"A+", "A-", "R+", "R-"};
	return q < SIM_NQ ? n[q] : "?";
}

static int64_t cum(const struct sim_meter *m, unsigned q, int64_t t);

static double
shape_d(const struct sim_chan *c, double tod)
{
	const double om = 2 * M_PI / DAY;
	return c->a1 / om * sin(om * (tod - c->h1)) + c->a2 / (2 * om) * sin(2 * om * (tod - c->h2));
}

static void
chan_init(const struct sim_meter *m, struct sim_chan *c, unsigned q, double mean_w)
{
	uint64_t k = q * 16;
	c->tag = H_WIGGLE + q * 100;
	c->rho = mean_w / 3600.0;
	c->a1 = 0.20 + 0.15 * mu(m, H_SHAPE, k + 1);
	c->h1 = (17.5 + 2.0 * mu(m, H_SHAPE, k + 2)) * 3600;
	c->a2 = 0.05 + 0.15 * mu(m, H_SHAPE, k + 3);
	c->h2 = (7.0 + 1.5 * mu(m, H_SHAPE, k + 4)) * 3600;
	c->as = 0.10 + 0.10 * mu(m, H_SHAPE, k + 5);
	/* winter peak: mid January */
	c->ts = (double)cosem_days_from_civil(2024, 1, 15) * DAY;
	c->w = 0.05 + 0.15 * mu(m, H_SHAPE, k + 6);
	c->cdst = shape_d(c, 2 * 3600) - shape_d(c, 3 * 3600);
}

/* Type, phases and installation time: what the initial state needs. */
static void
meter_basics(struct sim_meter *m)
{
	double u = mu(m, H_TYPE, 0);
	m->type = u < 0.5 ? SIM_TYPE_162 : u < 0.75 ? SIM_TYPE_282 : SIM_TYPE_382M;
	m->phases = m->type == SIM_TYPE_162 ? 1 : m->type == SIM_TYPE_282 ? 2 : 3;
	int64_t span = 90 * 24;
	m->installed = m->fleet->cfg.origin / 3600 * 3600 -
		       3600 * (int64_t)(1 + mh(m, H_INSTALL, 0) % span);
}

void
sim_meter_load(struct sim_fleet *f, uint32_t index, struct sim_meter *m)
{
	memset(m, 0, sizeof(*m));
	m->fleet = f;
	m->st = &f->st[index];
	m->index = index;
	m->serial = sim_fleet_serial(f, index);

	meter_basics(m);
	double u;
	m->exporter = mu(m, H_EXPORT, 0) < 0.15;
	u = mu(m, H_SEC, 0);
	m->security = u < 0.2 ? SIM_SEC_NONE : u < 0.5 ? SIM_SEC_LLS : SIM_SEC_HLS;
	/* public client 16, reading client 32 (LLS), management client 1 (HLS) */
	m->client_addr = m->security == SIM_SEC_NONE ? 16 : m->security == SIM_SEC_LLS ? 32 : 1;
	m->server_addr = 1;

	/* mean power: households 200..700 W, three-phase sites 400..3000 W */
	u = mu(m, H_MEAN, 0);
	m->mean_w = m->type == SIM_TYPE_162 ? 200 + 500 * u : 400 + 2600 * u * u;
	m->pv_peak_w = m->exporter ? (m->type == SIM_TYPE_162 ? 1500 : 3000) * (1 + 2 * mu(m, H_PV, 0)) : 0;
	m->drift_ppm = 40 * mu(m, H_DRIFT, 0) - 20;
	if (m->phases == 3) {
		m->share[0] = 0.25 + 0.20 * mu(m, H_SHARE, 0);
		m->share[1] = 0.25 + 0.15 * mu(m, H_SHARE, 1);
		m->share[2] = 1 - m->share[0] - m->share[1];
	} else if (m->phases == 2) {
		m->share[0] = 0.35 + 0.30 * mu(m, H_SHARE, 0);
		m->share[2] = 1 - m->share[0];
	} else {
		m->share[0] = 1;
	}


	chan_init(m, &m->ch[SIM_AP], SIM_AP, m->mean_w);
	chan_init(m, &m->ch[SIM_AM], SIM_AM, 0);
	chan_init(m, &m->ch[SIM_RP], SIM_RP, m->mean_w * (0.2 + 0.2 * mu(m, H_MEAN, 1)));
	chan_init(m, &m->ch[SIM_RM], SIM_RM, m->mean_w * (0.01 + 0.03 * mu(m, H_MEAN, 2)));

	/* Register values at installation: up to three years of use, split
	 * over the default calendar's three tariffs. */
	static const double split[3] = {0.5, 0.35, 0.15};
	for (unsigned q = 0; q < SIM_NQ; q++) {
		double yearly = q == SIM_AM ? m->pv_peak_w * 1.0 : m->ch[q].rho * 3600 * 8766;
		int64_t total = (int64_t)(yearly * 3 * mu(m, H_BASE, q));
		int64_t rest = total;
		for (unsigned t = 0; t < 2; t++) {
			m->base[q][t] = (int64_t)(total * split[t]);
			rest -= m->base[q][t];
		}
		m->base[q][2] = rest;
		m->e0[q] = total - cum(m, q, m->installed);
	}

	for (unsigned i = 0; i < 16; i++) {
		m->ek[i] = (uint8_t)(mh(m, H_KEY, i / 8) >> (8 * (i % 8)));
		m->ak[i] = (uint8_t)(mh(m, H_KEY, 2 + i / 8) >> (8 * (i % 8)));
	}
	memcpy(m->system_title, "KAM", 3);
	m->system_title[3] = 0;
	for (unsigned i = 0; i < 4; i++)
		m->system_title[4 + i] = (uint8_t)(m->serial >> (24 - 8 * i));
	snprintf(m->password, sizeof(m->password), "%08u",
		 (unsigned)(mh(m, H_PASSWORD, 0) % 100000000u));
	snprintf(m->firmware, sizeof(m->firmware), "%s-1.%u.%u", sim_type_name(m->type),
		 (unsigned)(mh(m, H_PASSWORD, 1) % 4), (unsigned)(mh(m, H_PASSWORD, 2) % 10));
}

void
sim_meter_addr(const struct sim_meter *m, uint16_t base_port, char host[16], uint16_t *port)
{
	if (base_port) {
		snprintf(host, 16, "127.0.0.1");
		*port = (uint16_t)(base_port + m->index);
		return;
	}
	uint32_t i = m->index;
	snprintf(host, 16, "127.%u.%u.%u", (uint8_t)(1 + i / 62500), (uint8_t)(i / 250 % 250),
		 (uint8_t)(1 + i % 250));
	*port = 4059;
}

int64_t
sim_addr_index(uint32_t addr)
{
	uint32_t a = addr >> 24, b = (addr >> 16) & 0xff, c = (addr >> 8) & 0xff, d = addr & 0xff;
	if (a != 127 || b < 1 || c >= 250 || d < 1 || d > 250)
		return METER_ENOTFOUND;
	return (int64_t)(b - 1) * 62500 + c * 250 + (d - 1);
}

/* ---- energy ----------------------------------------------------------- */

static int64_t
floor_div(int64_t a, int64_t b)
{
	int64_t q = a / b;
	return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

static double
chan_grid(const struct sim_meter *m, const struct sim_chan *c, int64_t j)
{
	const struct cosem_tz *tz = &m->fleet->cfg.tz;
	int64_t x = j * SIM_GRID;
	int off = cosem_tz_offset(tz, x);
	int64_t tl = x + 60 * (int64_t)off;
	double tod = (double)(tl - floor_div(tl, DAY) * DAY);
	const double OM = 2 * M_PI / YEAR_S;
	double v = (double)(x - m->installed) + shape_d(c, tod) +
		   c->as / OM * sin(OM * ((double)x - c->ts));
	if (off != tz->std_offset)
		v += c->cdst;
	return c->rho * v + c->rho * SIM_GRID * c->w * sim_u01(mh(m, c->tag, (uint64_t)j));
}

/* Solar production, see the top of the file. */
static double
pv_grid(const struct sim_meter *m, int64_t j)
{
	const double h12 = 12 * 3600.0, gd = 2 * h12 / M_PI, b = 0.6;
	const double al = 2 * M_PI / 365.2425;
	int64_t y = j * SIM_GRID + 3600;
	int64_t d = floor_div(y, DAY);
	double s = (double)(y - d * DAY);
	if (s >= 18 * 3600) {
		d++;
		s = 0;
	}
	int64_t k0 = floor_div(m->installed + 3600, DAY) - 1;
	int64_t mid = cosem_days_from_civil(2024, 6, 21);
	double n = (double)(d - k0);
	double th0 = al * (double)(k0 - mid);
	double sum = n + b * sin(n * al / 2) / sin(al / 2) * cos(th0 + (n - 1) * al / 2);
	double f = 1 + b * cos(al * (double)(d - mid));
	double g = s <= 6 * 3600 ? 0 : h12 / M_PI * (1 - cos(M_PI * (s - 6 * 3600) / h12));
	return m->pv_peak_w / 3600 * (gd * sum + f * g);
}

static int64_t
grid_value(const struct sim_meter *m, unsigned q, int64_t j)
{
	if (q == SIM_AM)
		return m->exporter ? (int64_t)floor(pv_grid(m, j)) : 0;
	return (int64_t)floor(chan_grid(m, &m->ch[q], j));
}

/* The model's cumulative at any second: integer interpolation between
 * grid points keeps it monotone and exact. */
static int64_t
cum(const struct sim_meter *m, unsigned q, int64_t t)
{
	int64_t j = floor_div(t, SIM_GRID), r = t - j * SIM_GRID;
	int64_t a = grid_value(m, q, j);
	if (r == 0)
		return a;
	int64_t b = grid_value(m, q, j + 1);
	return a + (b - a) * r / SIM_GRID;
}

int64_t
sim_energy(const struct sim_meter *m, unsigned q, int64_t t)
{
	if (t < m->installed)
		t = m->installed;
	int64_t e = m->e0[q] + cum(m, q, t);
	const struct dev_journal *jr = m->st->dev.j;
	if (jr)
		for (uint32_t i = 0; i < jr->n_off; i++) {
			const struct dev_off *o = &jr->off[i];
			if (o->from >= t)
				break;
			e -= cum(m, q, o->to < t ? o->to : t) - cum(m, q, o->from);
		}
	return e;
}

struct reg_acc {
	const struct sim_meter *m;
	struct sim_registers *r;
	int64_t last_t;
	int64_t last_e[SIM_NQ];
};

static void
reg_seg(void *arg, int64_t a, int64_t b, uint8_t tariff)
{
	struct reg_acc *acc = arg;
	int64_t ea[SIM_NQ];
	for (unsigned q = 0; q < SIM_NQ; q++)
		ea[q] = a == acc->last_t ? acc->last_e[q] : sim_energy(acc->m, q, a);
	for (unsigned q = 0; q < SIM_NQ; q++) {
		acc->last_e[q] = sim_energy(acc->m, q, b);
		acc->r->tariff[q][tariff - 1] += acc->last_e[q] - ea[q];
	}
	acc->last_t = b;
}

void
sim_registers(const struct sim_meter *m, int64_t t, struct sim_registers *r)
{
	memset(r, 0, sizeof(*r));
	r->t = t;
	memcpy(r->tariff, m->base, sizeof(r->tariff));
	for (unsigned q = 0; q < SIM_NQ; q++)
		r->total[q] = sim_energy(m, q, t);
	struct reg_acc acc = {m, r, INT64_MIN, {0}};
	const struct dev_journal *jr = m->st->dev.j;
	const struct cosem_tz *tz = &m->fleet->cfg.tz;
	int64_t from = m->installed;
	/* One window per calendar in force, the fleet's default first. */
	uint32_t n = jr ? jr->n_cal : 0;
	for (uint32_t i = 0; i <= n && from < t; i++) {
		struct dev_calendar_change c = dev_calendar_at(jr, from);
		int64_t to = i < n ? jr->cal[i].at : t;
		if (to > t)
			to = t;
		if (to > from)
			tariff_segments(c.cal, c.sp, tz, from, to, reg_seg, &acc);
		if (to > from)
			from = to;
	}
	struct dev_calendar_change c = dev_calendar_at(jr, t);
	r->active_tariff = tariff_at(c.cal, c.sp, tz, t);
}

/* ---- profile ------------------------------------------------------------ */

long
sim_intervals(const struct sim_meter *m, int64_t from, int64_t to, sim_interval_fn fn, void *arg)
{
	int64_t p = m->st->period;
	if (from < m->st->profile_from)
		from = m->st->profile_from;
	int64_t first = floor_div(from, p) * p + p, n = 0;
	if (first > to)
		return 0;
	struct sim_evbuf ev = {0};
	if (events_range(m, first - p, to, &ev))
		return METER_ENOSPC;
	size_t k = 0;
	int64_t prev[SIM_NQ];
	for (unsigned q = 0; q < SIM_NQ; q++)
		prev[q] = sim_energy(m, q, first - p);
	for (int64_t e = first; e <= to; e += p, n++) {
		struct sim_interval iv = {.end = e};
		for (unsigned q = 0; q < SIM_NQ; q++) {
			int64_t v = sim_energy(m, q, e);
			iv.e[q] = (uint32_t)(v - prev[q]);
			prev[q] = v;
		}
		for (; k < ev.n && ev.v[k].t <= e; k++) {
			if (ev.v[k].t <= e - p)
				continue;
			if (ev.v[k].code == EV_POWER_DOWN)
				iv.status |= SIM_ST_PDN;
			if (ev.v[k].code == EV_CLOCK_NEW)
				iv.status |= SIM_ST_CAD;
		}
		if (cosem_tz_is_dst(&m->fleet->cfg.tz, e))
			iv.status |= SIM_ST_DST;
		fn(arg, &iv);
	}
	events_free(&ev);
	return (long)n;
}

int
sim_set_period(struct sim_meter *m, int64_t t, uint16_t period)
{
	if (period != 300 && period != 900 && period != 1800 && period != 3600)
		return METER_ERANGE;
	m->st->period = period;
	m->st->profile_from = t;
	return 0;
}

/* ---- instantaneous values, demand, billing --------------------------- */

uint32_t
sim_model_power(const struct sim_meter *m, int64_t t)
{
	int64_t j = floor_div(t, SIM_GRID);
	return (uint32_t)((grid_value(m, SIM_AP, j + 1) - grid_value(m, SIM_AP, j)) * 3600 / SIM_GRID);
}

void
sim_instant(const struct sim_meter *m, int64_t t, struct sim_instant *out)
{
	memset(out, 0, sizeof(*out));
	int64_t s = floor_div(t, SIM_GRID) * SIM_GRID;
	int64_t e[SIM_NQ];
	for (unsigned q = 0; q < SIM_NQ; q++)
		e[q] = (sim_energy(m, q, s + SIM_GRID) - sim_energy(m, q, s)) * 3600 / SIM_GRID;
	out->phases = m->phases;
	out->p_import = (int32_t)e[SIM_AP];
	out->p_export = (int32_t)e[SIM_AM];
	double qvar = (double)(e[SIM_RP] - e[SIM_RM]);
	int32_t left = out->p_import;
	double nominal = m->type == SIM_TYPE_282 ? 4000 : 2300; /* 0.1 V */
	for (unsigned ph = 0; ph < 3; ph++) {
		if (m->share[ph] == 0)
			continue;
		/* the last measured phase takes the rounding rest */
		bool last = ph == 2 || (m->phases == 1 && ph == 0);
		int32_t p = last ? left : (int32_t)floor(out->p_import * m->share[ph]);
		left -= p;
		out->p[ph] = p;
		double du = 0.015 * sin(2 * M_PI * (double)(s % DAY) / DAY + ph) +
			    0.02 * (mu(m, H_VOLT, (uint64_t)(s / SIM_GRID) * 3 + ph) - 0.5);
		out->u[ph] = (uint16_t)lround(nominal * (1 + du));
		double va = hypot((double)p, qvar * m->share[ph]);
		out->i[ph] = (uint32_t)lround(va * 1000 / (out->u[ph] / 10.0));
	}
}

uint16_t
sim_analysis_all(const struct sim_meter *m)
{
	uint16_t ph = m->phases == 3 ? 7 : m->phases == 2 ? 5 : 1; /* L1; L1, L3; all */
	return (uint16_t)(ph | ph << 3 | ph << 6 | SIM_ACH_PIMP | SIM_ACH_PEXP);
}

uint16_t
sim_analysis_chans(const struct sim_meter *m)
{
	const struct dev_journal *j = m->st->dev.j;
	return j && j->ana_chans ? j->ana_chans : sim_analysis_all(m);
}

uint32_t
sim_analysis_period(const struct sim_meter *m)
{
	const struct dev_journal *j = m->st->dev.j;
	return j && j->ana_period ? j->ana_period : SIM_ANALYSIS_PERIOD;
}

long
sim_analysis(const struct sim_meter *m, int64_t from, int64_t to, sim_analysis_fn fn, void *arg)
{
	const int64_t p = sim_analysis_period(m);
	const struct dev_journal *j = m->st->dev.j;
	if (from < m->installed)
		from = m->installed;
	if (j && from < j->ana_from)
		from = j->ana_from;
	uint16_t chans = sim_analysis_chans(m);
	long n = 0;
	for (int64_t c = floor_div(from, p) * p + p; c <= to; c += p, n++) {
		struct sim_analysis a = {.t = c, .chans = chans};
		sim_instant(m, c - 1, &a.in);
		if (fn)
			fn(arg, &a);
	}
	return n;
}

void
sim_demand(const struct sim_meter *m, int64_t from, int64_t to, struct sim_demand *d)
{
	memset(d, 0, sizeof(*d));
	d->from = from;
	d->to = to;
	const struct cosem_tz *tz = &m->fleet->cfg.tz;
	int64_t w0 = floor_div(from > m->installed ? from : m->installed, SIM_DEMAND_PERIOD);
	int64_t prev = sim_energy(m, SIM_AP, w0 * SIM_DEMAND_PERIOD);
	for (int64_t e = (w0 + 1) * SIM_DEMAND_PERIOD; e <= to; e += SIM_DEMAND_PERIOD) {
		int64_t v = sim_energy(m, SIM_AP, e);
		uint32_t w = (uint32_t)((v - prev) * 3600 / SIM_DEMAND_PERIOD);
		prev = v;
		if (w > d->total.w || !d->total.at)
			d->total = (struct sim_peak){w, e};
		struct dev_calendar_change c = dev_calendar_at(m->st->dev.j, e - SIM_DEMAND_PERIOD);
		uint8_t t = tariff_at(c.cal, c.sp, tz, e - SIM_DEMAND_PERIOD);
		if (w > d->tariff[t - 1].w || !d->tariff[t - 1].at)
			d->tariff[t - 1] = (struct sim_peak){w, e};
	}
}

int64_t
sim_month_start(const struct sim_meter *m, int64_t t)
{
	const struct cosem_tz *tz = &m->fleet->cfg.tz;
	int y;
	unsigned mo, d;
	cosem_civil_from_days(tariff_local_day(tz, t), &y, &mo, &d);
	return tariff_local_to_utc(tz, cosem_days_from_civil(y, mo, 1), 0);
}

int64_t
sim_month_next(const struct sim_meter *m, int64_t t)
{
	const struct cosem_tz *tz = &m->fleet->cfg.tz;
	int y;
	unsigned mo, d;
	cosem_civil_from_days(tariff_local_day(tz, t), &y, &mo, &d);
	if (++mo > 12) {
		mo = 1;
		y++;
	}
	return tariff_local_to_utc(tz, cosem_days_from_civil(y, mo, 1), 0);
}

void
sim_billing(const struct sim_meter *m, int64_t b, struct sim_billing *out)
{
	out->t = b;
	sim_registers(m, b, &out->r);
	sim_demand(m, sim_month_start(m, b - 1), b, &out->d);
}

int64_t
sim_clock_ms(const struct sim_meter *m, int64_t t)
{
	int64_t since = events_last_clock_set(m, t), off = 0;
	/* the latest setting wins: a seeded adjustment brings the clock to
	 * true time, a client's (device journal) to what the client wrote */
	const struct dev_journal *j = m->st->dev.j;
	for (uint32_t i = j ? j->n_clk : 0; i-- > 0;) {
		if (j->clk[i].at > t)
			continue;
		if (j->clk[i].at >= since) {
			since = j->clk[i].at;
			off = j->clk[i].offset_ms;
		}
		break;
	}
	return t * 1000 + off + (int64_t)llround((double)(t - since) * m->drift_ppm / 1000.0);
}
