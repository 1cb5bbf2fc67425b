/*
 * device.c: breaker, limiter, prepayment and calendar switching of a
 * simulated meter, as state machines over the measurement model.
 *
 * The breaker follows the disconnect-control transitions of the Blue Book
 * (class 70): a remote_reconnect Disconnected -> Ready_for_reconnection,
 * b remote_disconnect Ready -> Disconnected, c remote_disconnect Connected
 * -> Disconnected, d remote_reconnect Disconnected -> Connected, e manual
 * (button) Ready -> Connected, f manual Connected -> Ready, g local
 * (limiter, prepayment) Connected -> Ready, h local Ready -> Connected;
 * control_mode selects which of them exist.  Time-driven behaviour is
 * evaluated in chunks over which the model's power is constant (one 5-min
 * grid step at most), so a limiter trip lands at the exact second its
 * over-threshold duration runs out and credit runs out at the exact
 * second the A+ register says it does.
 */
#include "device.h"

#include <stdlib.h>
#include <string.h>

#include "meter_error.h"
#include "model.h"

enum { T_A = 1 << 0, T_B = 1 << 1, T_C = 1 << 2, T_D = 1 << 3, T_E = 1 << 4, T_F = 1 << 5,
       T_G = 1 << 6, T_H = 1 << 7 };

static const uint8_t mode_allows[7] = {
	0,
	T_B | T_C | T_F | T_G | T_D | T_E,
	T_B | T_C | T_F | T_G | T_A | T_E,
	T_B | T_C | T_G | T_D | T_E,
	T_B | T_C | T_G | T_A | T_E,
	T_B | T_C | T_F | T_G | T_D | T_E | T_H,
	T_B | T_C | T_G | T_D | T_E | T_H,
};

void
dev_init(struct dev_state *d, const struct sim_meter *m)
{
	memset(d, 0, sizeof(*d));
	d->control = DEV_CONNECTED;
	d->mode = sim_hash(m->fleet->cfg.seed, m->index, 77, 0) % 5 < 3 ? 1 : 2;
	d->payment = DEV_PAY_CREDIT;
	/* main fuse: 50 A single phase, 3 x 63 A three phase */
	d->thr_normal = m->phases == 1 ? 11500 : 43470;
	d->thr_emergency = d->thr_normal / 2;
	d->min_over = 60;
	d->min_under = 60;
	d->credit_warn = 5000;
	d->over_since = -1;
	d->cut_at = -1;
	d->reconnect_at = -1;
	d->credit_ref_t = m->installed;
	d->now = m->installed;
}

void
dev_free(struct dev_state *d)
{
	struct dev_journal *j = d->j;
	if (!j)
		return;
	for (uint32_t i = 0; i < j->n_owned; i++)
		free(j->owned[i]);
	free(j->owned);
	free(j->off);
	free(j->clk);
	free(j->cal);
	events_free(&j->ev);
	free(j);
	d->j = NULL;
}

static struct dev_journal *
journal(struct sim_meter *m)
{
	struct dev_state *d = &m->st->dev;
	if (!d->j)
		d->j = calloc(1, sizeof(*d->j));
	return d->j;
}

static int
grow(void **v, uint32_t *cap, uint32_t n, size_t size)
{
	if (n < *cap)
		return 0;
	uint32_t c = *cap ? 2 * *cap : 4;
	void *p = realloc(*v, c * size);
	if (!p)
		return METER_ENOSPC;
	*v = p;
	*cap = c;
	return 0;
}

static int
log_event(struct sim_meter *m, int64_t t, uint16_t code)
{
	struct dev_journal *j = journal(m);
	return j ? events_push(&j->ev, t, code) : METER_ENOSPC;
}

static int
set_output(struct sim_meter *m, int64_t t, bool on)
{
	struct dev_journal *j = journal(m);
	if (!j)
		return METER_ENOSPC;
	bool open = j->n_off && j->off[j->n_off - 1].to == INT64_MAX;
	if (on && open)
		j->off[j->n_off - 1].to = t;
	if (!on && !open) {
		if (grow((void **)&j->off, &j->cap_off, j->n_off, sizeof(*j->off)))
			return METER_ENOSPC;
		j->off[j->n_off++] = (struct dev_off){t, INT64_MAX};
	}
	return 0;
}

/* Apply transition tr (T_A..T_H) if the control mode has it. */
static int
transition(struct sim_meter *m, int64_t t, unsigned tr, uint16_t code)
{
	struct dev_state *d = &m->st->dev;
	if (!(mode_allows[d->mode] & tr))
		return METER_ESTATE;
	static const struct {
		unsigned tr;
		uint8_t from, to;
	} tt[] = {
		{T_A, DEV_DISCONNECTED, DEV_READY}, {T_B, DEV_READY, DEV_DISCONNECTED},
		{T_C, DEV_CONNECTED, DEV_DISCONNECTED}, {T_D, DEV_DISCONNECTED, DEV_CONNECTED},
		{T_E, DEV_READY, DEV_CONNECTED}, {T_F, DEV_CONNECTED, DEV_READY},
		{T_G, DEV_CONNECTED, DEV_READY}, {T_H, DEV_READY, DEV_CONNECTED},
	};
	for (size_t i = 0; i < sizeof(tt) / sizeof(tt[0]); i++) {
		if (tt[i].tr != tr)
			continue;
		if (d->control != tt[i].from)
			return METER_ESTATE;
		d->control = tt[i].to;
		int rc = set_output(m, t, d->control == DEV_CONNECTED);
		return rc ? rc : log_event(m, t, code);
	}
	return METER_ESTATE;
}

struct dev_calendar_change
dev_calendar_at(const struct dev_journal *j, int64_t t)
{
	struct dev_calendar_change c = {INT64_MIN, tariff_default_calendar(), tariff_default_special()};
	if (!j)
		return c;
	for (uint32_t i = 0; i < j->n_cal && j->cal[i].at <= t; i++)
		c = j->cal[i];
	return c;
}

static int
calendar_change(struct sim_meter *m, int64_t t, const struct tariff_calendar *cal,
		const struct tariff_special *sp)
{
	struct dev_journal *j = journal(m);
	if (!j || grow((void **)&j->cal, &j->cap_cal, j->n_cal, sizeof(*j->cal)))
		return METER_ENOSPC;
	j->cal[j->n_cal++] = (struct dev_calendar_change){t, cal, sp};
	return 0;
}

static void *
own_copy(struct sim_meter *m, const void *src, size_t size)
{
	struct dev_journal *j = journal(m);
	if (!j || grow((void **)&j->owned, &j->cap_owned, j->n_owned, sizeof(*j->owned)))
		return NULL;
	void *p = malloc(size);
	if (p) {
		memcpy(p, src, size);
		j->owned[j->n_owned++] = p;
	}
	return p;
}

/* ---- time-driven behaviour ---------------------------------------------- */

static int64_t
credit_at(const struct sim_meter *m, int64_t t)
{
	const struct dev_state *d = &m->st->dev;
	return d->credit_ref_wh - (sim_energy(m, SIM_AP, t) - sim_energy(m, SIM_AP, d->credit_ref_t));
}

/* First second in (a, b] at which credit <= level (credit(b) <= level). */
static int64_t
credit_crossing(const struct sim_meter *m, int64_t a, int64_t b, int64_t level)
{
	while (b - a > 1) {
		int64_t mid = a + (b - a) / 2;
		if (credit_at(m, mid) <= level)
			b = mid;
		else
			a = mid;
	}
	return b;
}

static int64_t
next_working_cut(const struct sim_meter *m, int64_t t)
{
	const struct cosem_tz *tz = &m->fleet->cfg.tz;
	const struct tariff_special *sp = dev_calendar_at(m->st->dev.j, t).sp;
	int64_t day = tariff_local_day(tz, t);
	for (int i = 1; i < 30; i++) {
		int64_t at = tariff_local_to_utc(tz, day + i, DEV_PREPAY_CUT_HOUR * 3600);
		if (tariff_working_day(sp, tz, at))
			return at;
	}
	return tariff_local_to_utc(tz, day + 1, DEV_PREPAY_CUT_HOUR * 3600);
}

static void
local_disconnect(struct sim_meter *m, int64_t t)
{
	/* Mode 0 (always connected) has no g: the cause is still logged. */
	transition(m, t, T_G, EV_LOCAL_DISCONNECT);
}

static void
prepay_cut(struct sim_meter *m, int64_t t)
{
	struct dev_state *d = &m->st->dev;
	d->cut_at = -1;
	log_event(m, t, EV_CREDIT_EXHAUSTED);
	if (d->control == DEV_CONNECTED) {
		local_disconnect(m, t);
		d->tripped = 0;
	}
}

void
dev_advance(struct sim_meter *m, int64_t t)
{
	struct dev_state *d = &m->st->dev;
	/* The model can never draw more than this (see model.c); a limiter
	 * set above it needs no step-by-step evaluation. */
	double pmax = m->mean_w * 2.0 + 20;
	while (d->now < t) {
		int64_t c0 = d->now, c1 = t;
		struct dev_journal *j = d->j;
		int64_t sched[3] = {j && j->passive && j->passive_at > c0 ? j->passive_at : INT64_MAX,
				    d->cut_at > c0 ? d->cut_at : INT64_MAX,
				    d->reconnect_at > c0 ? d->reconnect_at : INT64_MAX};
		for (int i = 0; i < 3; i++)
			if (sched[i] < c1)
				c1 = sched[i];
		uint32_t thr = d->emergency ? d->thr_emergency : d->thr_normal;
		/* Only a breaker that can open locally (not mode 0) is evaluated. */
		bool can_open = d->control == DEV_CONNECTED && (mode_allows[d->mode] & T_G);
		bool limiter = can_open && thr && thr < pmax;
		bool prepaid = can_open && d->payment == DEV_PAY_PREPAID;
		if (limiter || prepaid) {
			/* one grid step at most: the model's power is constant on it */
			int64_t g = (c0 / SIM_GRID + 1) * SIM_GRID;
			if (g < c1)
				c1 = g;
		}
		int64_t next = c1;
		if (limiter) {
			if (sim_model_power(m, c0) > thr) {
				if (d->over_since < 0)
					d->over_since = c0;
				int64_t trip = d->over_since + d->min_over;
				if (trip <= c1) {
					next = trip > c0 ? trip : c0;
					log_event(m, next, EV_LIMITER_EXCEEDED);
					local_disconnect(m, next);
					d->tripped = 1;
					d->over_since = -1;
					if (mode_allows[d->mode] & T_H)
						d->reconnect_at = next + d->min_under;
				}
			} else {
				d->over_since = -1;
			}
		} else {
			d->over_since = -1;
		}
		if (prepaid && d->control == DEV_CONNECTED && next == c1) {
			int64_t cr0 = credit_at(m, c0), cr1 = credit_at(m, c1);
			if (!d->warned && cr1 <= (int64_t)d->credit_warn) {
				int64_t w = cr0 <= (int64_t)d->credit_warn ? c0
									  : credit_crossing(m, c0, c1, d->credit_warn);
				log_event(m, w, EV_CREDIT_WARNING);
				d->warned = 1;
			}
			if (d->cut_at < 0 && cr1 <= 0) {
				int64_t z = cr0 <= 0 ? c0 : credit_crossing(m, c0, c1, 0);
				const struct tariff_special *sp = dev_calendar_at(d->j, z).sp;
				if (tariff_working_day(sp, &m->fleet->cfg.tz, z)) {
					next = z;
					prepay_cut(m, z);
				} else {
					d->cut_at = next_working_cut(m, z);
				}
			}
		}
		d->now = next;
		/* Scheduled things due now. */
		j = d->j;
		if (j && j->passive && j->passive_at && j->passive_at <= next)
			dev_calendar_activate(m, j->passive_at);
		if (d->cut_at >= 0 && d->cut_at <= next) {
			if (d->payment == DEV_PAY_PREPAID && credit_at(m, d->cut_at) <= 0)
				prepay_cut(m, d->cut_at);
			d->cut_at = -1;
		}
		if (d->reconnect_at >= 0 && d->reconnect_at <= next) {
			if (d->control == DEV_READY && d->tripped)
				transition(m, d->reconnect_at, T_H, EV_LOCAL_CONNECT);
			d->tripped = 0;
			d->reconnect_at = -1;
		}
	}
}

/* ---- commands ------------------------------------------------------------ */

int
dev_remote_disconnect(struct sim_meter *m, int64_t t)
{
	dev_advance(m, t);
	struct dev_state *d = &m->st->dev;
	if (d->control == DEV_DISCONNECTED)
		return 0; /* disconnecting twice = disconnected */
	d->reconnect_at = -1;
	return transition(m, t, d->control == DEV_CONNECTED ? T_C : T_B, EV_REMOTE_DISCONNECT);
}

int
dev_remote_reconnect(struct sim_meter *m, int64_t t)
{
	dev_advance(m, t);
	struct dev_state *d = &m->st->dev;
	if (d->control == DEV_CONNECTED)
		return 0;
	if (d->control == DEV_READY)
		return METER_ESTATE; /* only the button (or h) leaves ready */
	if (mode_allows[d->mode] & T_D)
		return transition(m, t, T_D, EV_REMOTE_CONNECT);
	return transition(m, t, T_A, EV_READY_FOR_RECONNECT);
}

int
dev_button(struct sim_meter *m, int64_t t)
{
	dev_advance(m, t);
	struct dev_state *d = &m->st->dev;
	if (d->control == DEV_READY) {
		int rc = transition(m, t, T_E, EV_MANUAL_CONNECT);
		if (!rc) {
			d->tripped = 0;
			d->reconnect_at = -1;
		}
		return rc;
	}
	if (d->control == DEV_CONNECTED)
		return transition(m, t, T_F, EV_MANUAL_DISCONNECT);
	return METER_ESTATE;
}

int
dev_set_control_mode(struct sim_meter *m, int64_t t, uint8_t mode)
{
	if (mode > 6)
		return METER_ERANGE;
	dev_advance(m, t);
	struct dev_state *d = &m->st->dev;
	d->mode = mode;
	if (mode == 0 && d->control != DEV_CONNECTED) {
		d->control = DEV_CONNECTED;
		if (set_output(m, t, true))
			return METER_ENOSPC;
	}
	return log_event(m, t, EV_CONTROL_MODE_CHANGED);
}

int
dev_set_limiter(struct sim_meter *m, int64_t t, uint32_t thr_normal, uint32_t thr_emergency,
		uint32_t min_over, uint32_t min_under)
{
	if (min_over > 86400 || min_under > 86400)
		return METER_ERANGE;
	dev_advance(m, t);
	struct dev_state *d = &m->st->dev;
	d->thr_normal = thr_normal;
	d->thr_emergency = thr_emergency;
	d->min_over = min_over;
	d->min_under = min_under;
	d->over_since = -1;
	return log_event(m, t, EV_LIMITER_CHANGED);
}

int
dev_set_emergency(struct sim_meter *m, int64_t t, bool on)
{
	dev_advance(m, t);
	m->st->dev.emergency = on;
	m->st->dev.over_since = -1;
	return log_event(m, t, EV_LIMITER_CHANGED);
}

int
dev_set_payment_mode(struct sim_meter *m, int64_t t, uint8_t mode)
{
	if (mode != DEV_PAY_CREDIT && mode != DEV_PAY_PREPAID)
		return METER_ERANGE;
	dev_advance(m, t);
	struct dev_state *d = &m->st->dev;
	if (d->payment == mode)
		return 0;
	d->payment = mode;
	d->cut_at = -1;
	if (mode == DEV_PAY_PREPAID) {
		/* the countdown starts from what is left, never from a debt */
		int64_t c = credit_at(m, t);
		d->credit_ref_t = t;
		d->credit_ref_wh = c > 0 ? c : 0;
	}
	const struct tariff_special *sp = dev_calendar_at(d->j, t).sp;
	const struct tariff_calendar *tou = d->j && d->j->tou ? d->j->tou : tariff_default_calendar();
	/* Kamstrup: prepayment runs on a single tariff; credit mode gets the
	 * TOU calendar back. */
	int rc = calendar_change(m, t, mode == DEV_PAY_PREPAID ? NULL : tou, sp);
	return rc ? rc : log_event(m, t, EV_PAYMENT_MODE_CHANGED);
}

static int
credit_rebase(struct sim_meter *m, int64_t t, int64_t wh)
{
	struct dev_state *d = &m->st->dev;
	d->credit_ref_t = t;
	d->credit_ref_wh = wh;
	if (wh > (int64_t)d->credit_warn)
		d->warned = 0;
	if (wh > 0)
		d->cut_at = -1;
	int rc = log_event(m, t, EV_CREDIT_UPDATED);
	/* Credit back after a prepayment cut: modes with local reconnection
	 * reconnect at once; the others wait for the button. */
	if (!rc && wh > 0 && d->control == DEV_READY && !d->tripped && (mode_allows[d->mode] & T_H))
		rc = transition(m, t, T_H, EV_LOCAL_CONNECT);
	return rc;
}

int
dev_credit_add(struct sim_meter *m, int64_t t, int64_t wh)
{
	dev_advance(m, t);
	return credit_rebase(m, t, credit_at(m, t) + wh);
}

int
dev_credit_set(struct sim_meter *m, int64_t t, int64_t wh)
{
	dev_advance(m, t);
	return credit_rebase(m, t, wh);
}

int64_t
dev_credit(struct sim_meter *m, int64_t t)
{
	dev_advance(m, t);
	return credit_at(m, t);
}

bool
dev_output(struct sim_meter *m, int64_t t)
{
	dev_advance(m, t);
	return m->st->dev.control == DEV_CONNECTED;
}

int
dev_calendar_passive(struct sim_meter *m, int64_t t, const struct tariff_calendar *cal,
		     int64_t activation_at)
{
	int rc = tariff_calendar_check(cal);
	if (rc)
		return rc;
	dev_advance(m, t);
	struct tariff_calendar *c = own_copy(m, cal, sizeof(*cal));
	if (!c)
		return METER_ENOSPC;
	m->st->dev.j->passive = c;
	m->st->dev.j->passive_at = activation_at > t ? activation_at : 0;
	rc = log_event(m, t, EV_TOU_PROGRAMMED);
	if (!rc && activation_at && activation_at <= t)
		rc = dev_calendar_activate(m, t);
	return rc;
}

int
dev_calendar_activate(struct sim_meter *m, int64_t t)
{
	struct dev_state *d = &m->st->dev;
	if (t > d->now)
		dev_advance(m, t);
	struct dev_journal *j = d->j;
	if (!j || !j->passive)
		return METER_ESTATE;
	j->tou = j->passive;
	j->passive = NULL;
	j->passive_at = 0;
	int rc = 0;
	if (d->payment == DEV_PAY_CREDIT)
		rc = calendar_change(m, t, j->tou, dev_calendar_at(j, t).sp);
	return rc ? rc : log_event(m, t, EV_TOU_ACTIVATED);
}

int
dev_special_days(struct sim_meter *m, int64_t t, const struct tariff_special *sp)
{
	int rc = tariff_special_check(sp);
	if (rc)
		return rc;
	dev_advance(m, t);
	const struct tariff_special *c = own_copy(m, sp, sizeof(*sp));
	if (!c)
		return METER_ENOSPC;
	rc = calendar_change(m, t, dev_calendar_at(m->st->dev.j, t).cal, c);
	return rc ? rc : log_event(m, t, EV_SPECIAL_DAYS_CHANGED);
}

int
dev_special_insert(struct sim_meter *m, int64_t t, const struct tariff_special_day *e)
{
	dev_advance(m, t);
	const struct tariff_special *cur = dev_calendar_at(m->st->dev.j, t).sp;
	struct tariff_special sp = {0};
	/* drop what e overwrites, then put e in index order */
	for (unsigned i = 0; cur && i < cur->n; i++) {
		const struct tariff_special_day *d = &cur->d[i];
		if (d->index == e->index ||
		    (d->year == e->year && d->month == e->month && d->day == e->day))
			continue;
		sp.d[sp.n++] = *d;
	}
	if (sp.n == TARIFF_MAX_SPECIAL)
		return METER_ERANGE;
	unsigned k = sp.n;
	while (k > 0 && sp.d[k - 1].index > e->index) {
		sp.d[k] = sp.d[k - 1];
		k--;
	}
	sp.d[k] = *e;
	sp.n++;
	return dev_special_days(m, t, &sp);
}

int
dev_special_delete(struct sim_meter *m, int64_t t, uint16_t index)
{
	dev_advance(m, t);
	const struct tariff_special *cur = dev_calendar_at(m->st->dev.j, t).sp;
	struct tariff_special sp = {0};
	for (unsigned i = 0; cur && i < cur->n; i++)
		if (cur->d[i].index != index)
			sp.d[sp.n++] = cur->d[i];
	if (!cur || sp.n == cur->n)
		return METER_ENOTFOUND;
	return dev_special_days(m, t, &sp);
}

int
dev_clock_preset(struct sim_meter *m, int64_t t, int64_t preset_ms, int64_t from_ms, int64_t to_ms)
{
	if (from_ms > to_ms)
		return METER_ERANGE;
	dev_advance(m, t);
	struct dev_journal *j = journal(m);
	if (!j)
		return METER_ENOSPC;
	j->preset_ms = preset_ms;
	j->preset_from_ms = from_ms;
	j->preset_to_ms = to_ms;
	j->have_preset = 1;
	return 0;
}

int
dev_clock_adjust_preset(struct sim_meter *m, int64_t t)
{
	dev_advance(m, t);
	struct dev_journal *j = m->st->dev.j;
	if (!j || !j->have_preset)
		return METER_ESTATE;
	int64_t now = sim_clock_ms(m, t);
	if (now < j->preset_from_ms || now > j->preset_to_ms)
		return METER_ESTATE;
	j->have_preset = 0;
	return dev_clock_set(m, t, j->preset_ms);
}

int
dev_set_analysis(struct sim_meter *m, int64_t t, uint16_t chans, uint32_t period)
{
	if (!chans || (chans & ~sim_analysis_all(m)) || period < 60 || period > 86400 ||
	    86400 % period)
		return METER_ERANGE;
	dev_advance(m, t);
	struct dev_journal *j = journal(m);
	if (!j)
		return METER_ENOSPC;
	j->ana_chans = chans;
	j->ana_period = period;
	j->ana_from = t;
	return 0;
}

int
dev_clock_set(struct sim_meter *m, int64_t t, int64_t clock_ms)
{
	dev_advance(m, t);
	struct dev_journal *j = journal(m);
	if (!j || grow((void **)&j->clk, &j->cap_clk, j->n_clk, sizeof(*j->clk)))
		return METER_ENOSPC;
	/* a second setting in the same second replaces the first */
	if (j->n_clk && j->clk[j->n_clk - 1].at == t)
		j->n_clk--;
	j->clk[j->n_clk++] = (struct dev_clock_set){t, clock_ms - t * 1000};
	int rc = log_event(m, t, EV_CLOCK_OLD);
	return rc ? rc : log_event(m, t, EV_CLOCK_NEW);
}
