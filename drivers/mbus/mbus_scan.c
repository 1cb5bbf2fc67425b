/*
 * mbus_scan.c: the secondary-address search (see mbus_bus.h) and the text
 * form of secondary addresses.
 *
 * The search is depth first over the identification digits, most
 * significant first.  A probe leaves every digit not yet fixed as the
 * wildcard F; when several slaves answer (the ACKs collide and arrive
 * garbled) the first wildcard digit is fixed to 0..9 in turn, and an empty
 * answer prunes the whole subtree.  A bus of n slaves costs about 10 probes
 * per internal node of the digit tree their ids span, a few thousand at
 * most for 250 slaves, where trying every id would take 10^8.  The search
 * keeps its pending probes on a fixed stack (8 levels of at most 10), so it
 * never allocates.
 *
 * Trust: a scan is what a field engineer uses to learn what is on a line,
 * so a meter missed is worse than a slow scan.  Silence prunes a subtree,
 * so silence that was really a late answer would hide every meter under
 * it.  The bus guards and learns (mbus_bus.c); what still slips through
 * shows up as stray bytes, as a lone acknowledgement whose slave cannot
 * be read (mbus_scan_run), or as a collision none of whose ten children
 * answers (nobody was under it: the garbled byte was an earlier probe's),
 * and then the doubtful probes are sent again.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bytes.h"
#include "mbus_bus.h"

/* Digit k of the id (0: least significant) in the wire-order BCD. */
static unsigned
digit_get(const struct mbus_secondary *s, int k)
{
	uint8_t v = s->id_bcd[k / 2];
	return k % 2 ? v >> 4 : v & 15;
}

static void
digit_set(struct mbus_secondary *s, int k, unsigned d)
{
	uint8_t *v = &s->id_bcd[k / 2];
	if (k % 2)
		*v = (uint8_t)((*v & 0x0F) | d << 4);
	else
		*v = (uint8_t)((*v & 0xF0) | d);
}

void
mbus_scan_init(struct mbus_scan *s, const struct mbus_secondary *mask)
{
	memset(s, 0, sizeof(*s));
	if (mask != NULL) {
		s->stack[0] = *mask;
	} else {
		memset(s->stack[0].id_bcd, 0xFF, 4);
		s->stack[0].manufacturer = 0xFFFF;
		s->stack[0].version = 0xFF;
		s->stack[0].medium = 0xFF;
	}
	s->depth = 1;
}

bool
mbus_scan_next(struct mbus_scan *s, struct mbus_secondary *probe)
{
	if (s->waiting || s->depth == 0)
		return false;
	s->current = s->stack[--s->depth];
	s->current_repeats = s->repeats[s->depth];
	s->waiting = true;
	s->probes++;
	*probe = s->current;
	return true;
}

/* Does probe p lie under mask m (every id digit m fixes, p has too)? */
static bool
covers(const struct mbus_secondary *m, const struct mbus_secondary *p)
{
	for (int k = 0; k < 8; k++)
		if (digit_get(m, k) != 0xF && digit_get(m, k) != digit_get(p, k))
			return false;
	return true;
}

/*
 * Groups whose probes are all done are closed.  A collision whose ten
 * children all stayed silent had nobody under it: its garbled answer was
 * another probe's, late (most likely that of the silent probe just
 * before it), or noise; that silent probe is sent again.
 */
static void
groups_close(struct mbus_scan *s)
{
	while (s->ngroups > 0 && s->depth <= s->groups[s->ngroups - 1].base) {
		struct mbus_scan_group g = s->groups[--s->ngroups];
		if (g.hits == 0) {
			s->unexplained++;
			if (g.have_before)
				mbus_scan_repeat(s, &g.before, g.before_repeats);
		}
	}
}

void
mbus_scan_result(struct mbus_scan *s, enum mbus_probe_result r)
{
	int k;

	if (!s->waiting)
		return;
	s->waiting = false;
	if (r == MBUS_PROBE_NONE) {
		s->have_silent = true;
		s->silent = s->current;
		s->silent_repeats = s->current_repeats;
		groups_close(s);
		return;
	}
	for (size_t i = 0; i < s->ngroups; i++)
		if (covers(&s->groups[i].parent, &s->current))
			s->groups[i].hits++;
	if (r == MBUS_PROBE_ONE) {
		s->found++;
		groups_close(s);
		return;
	}
	/* a collision: fix the most significant wildcard digit */
	for (k = 7; k >= 0; k--)
		if (digit_get(&s->current, k) == 0xF)
			break;
	if (k < 0) {
		/* same id, different manufacturer, version or medium (or
		 * two slaves with one id): not told apart by digits */
		s->unresolved++;
		groups_close(s);
		return;
	}
	if (s->ngroups < MBUS_SCAN_GROUPS && s->depth + 10 <= MBUS_SCAN_STACK) {
		struct mbus_scan_group *g = &s->groups[s->ngroups++];
		g->parent = s->current;
		g->base = s->depth;
		g->hits = 0;
		g->have_before = s->have_silent;
		g->before = s->silent;
		g->before_repeats = (uint8_t)s->silent_repeats;
	}
	/* pushed 9..0 so that 0 is probed first; the stack cannot overflow:
	 * at most 9 siblings wait on each of the 8 levels, plus one */
	for (int d = 9; d >= 0; d--) {
		if (s->depth == MBUS_SCAN_STACK)
			return;
		struct mbus_secondary c = s->current;
		digit_set(&c, k, (unsigned)d);
		s->repeats[s->depth] = 0;
		s->stack[s->depth++] = c;
	}
}

bool
mbus_scan_doubt_silent(struct mbus_scan *s)
{
	bool ok = s->have_silent && mbus_scan_repeat(s, &s->silent, s->silent_repeats);

	s->have_silent = false;
	return ok;
}

bool
mbus_scan_repeat(struct mbus_scan *s, const struct mbus_secondary *probe, unsigned times)
{
	if (times >= MBUS_SCAN_REPEAT || s->depth == MBUS_SCAN_STACK)
		return false;
	s->repeats[s->depth] = (uint8_t)(times + 1);
	s->stack[s->depth++] = *probe;
	s->repeated++;
	return true;
}

/* ---- the search over a bus ------------------------------------------------------ */

struct mbus_scan_run {
	struct mbus_bus *bus;
	struct mbus_scan scan;
	mbus_scan_found_fn found;
	mbus_scan_done_fn done;
	void *arg;
	bool over;
	uint64_t stray_seen; /* the bus's stray count when last looked at */
};

static void
doubt_silent(struct mbus_scan_run *r)
{
	mbus_scan_doubt_silent(&r->scan);
}

/* Stray bytes since the last look: an answer came after its probe was
 * taken as silent (or a read's answer after its retry; one probe more). */
static void
check_stray(struct mbus_scan_run *r)
{
	uint64_t stray = mbus_bus_stats(r->bus)->stray;

	if (stray != r->stray_seen) {
		r->stray_seen = stray;
		doubt_silent(r);
	}
}

static void run_next(struct mbus_scan_run *r);

static void
run_read_cb(int status, const uint8_t *frames, size_t len, size_t nt, void *arg)
{
	struct mbus_scan_run *r = arg;
	struct mbus_header h;
	struct mbus_frame f;
	struct mbus_telegram tg;
	(void)nt;

	memset(&h, 0, sizeof(h));
	if (status == METER_EABORTED) {
		r->over = true;
		r->done(METER_EABORTED, &r->scan, r->arg);
		return;
	}
	check_stray(r);
	if ((status == METER_ETIMEOUT || status == METER_ECOLLISION || status == METER_EPROTO) &&
	    mbus_scan_repeat(&r->scan, &r->scan.current, r->scan.current_repeats)) {
		/* no slave (or not one) was selected after all: the E5 was
		 * most likely the late answer of the last silent probe */
		doubt_silent(r);
		run_next(r);
		return;
	}
	if (status == 0 || status == METER_EAPPERR) {
		int n = mbus_frame_parse(frames, len, &f);
		if (n > 0 && mbus_telegram_decode(&f, &tg) == 0 && tg.hdr.has_id)
			h = tg.hdr;
		else if (status == 0)
			status = METER_EPROTO;
	}
	r->found(status, &h, r->arg);
	run_next(r);
}

static void
run_probe_cb(int result, void *arg)
{
	struct mbus_scan_run *r = arg;

	if (result < 0) {
		r->over = true;
		r->done(result, &r->scan, r->arg);
		return;
	}
	check_stray(r);
	mbus_scan_result(&r->scan, (enum mbus_probe_result)result);
	if (result == MBUS_PROBE_ONE) {
		/* exactly one slave is selected now: read it at 253 for its
		 * full address (the read deselects it afterwards) */
		struct mbus_addr a = {.secondary = true, .sec = r->scan.current, .selected = true};
		if (mbus_bus_read(r->bus, &a, run_read_cb, r) != 0) {
			r->over = true;
			r->done(METER_EABORTED, &r->scan, r->arg);
		}
		return;
	}
	run_next(r);
}

static void
run_next(struct mbus_scan_run *r)
{
	struct mbus_secondary probe;

	if (!mbus_scan_next(&r->scan, &probe)) {
		r->over = true;
		r->done(0, &r->scan, r->arg);
		return;
	}
	if (mbus_bus_probe(r->bus, &probe, run_probe_cb, r) != 0) {
		r->over = true;
		r->done(METER_EABORTED, &r->scan, r->arg);
	}
}

struct mbus_scan_run *
mbus_scan_start(struct mbus_bus *b, const struct mbus_secondary *mask, mbus_scan_found_fn found,
                mbus_scan_done_fn done, void *arg)
{
	struct mbus_scan_run *r = calloc(1, sizeof(*r));
	struct mbus_secondary probe;

	if (r == NULL)
		return NULL;
	r->bus = b;
	r->found = found;
	r->done = done;
	r->arg = arg;
	mbus_scan_init(&r->scan, mask);
	/* the first probe is queued here; its answer arrives through the
	 * bus's deferred callbacks, never from inside this call */
	mbus_scan_next(&r->scan, &probe);
	if (mbus_bus_probe(b, &probe, run_probe_cb, r) != 0) {
		free(r);
		return NULL;
	}
	return r;
}

void
mbus_scan_run_free(struct mbus_scan_run *r)
{
	free(r);
}

/* ---- secondary address text ------------------------------------------------------ */

int
mbus_secondary_parse(const char *text, struct mbus_secondary *out)
{
	size_t n = text ? strlen(text) : 0;
	uint8_t x[4];

	if (n != 8 && n != 16)
		return METER_EINVAL;
	memset(out, 0, sizeof(*out));
	out->manufacturer = 0xFFFF;
	out->version = 0xFF;
	out->medium = 0xFF;
	/* text digit 0 is the most significant: id digit 7 */
	for (int i = 0; i < 8; i++) {
		int v = bytes_hexval(text[i]);
		if (v < 0 || (v > 9 && v != 0xF))
			return METER_EINVAL;
		digit_set(out, 7 - i, (unsigned)v);
	}
	if (n == 16) {
		for (int i = 0; i < 4; i++) {
			int hi = bytes_hexval(text[8 + 2 * i]), lo = bytes_hexval(text[9 + 2 * i]);
			if (hi < 0 || lo < 0)
				return METER_EINVAL;
			x[i] = (uint8_t)(hi << 4 | lo);
		}
		/* manufacturer in wire order, as the meter table keeps it */
		out->manufacturer = (uint16_t)(x[0] | x[1] << 8);
		out->version = x[2];
		out->medium = x[3];
	}
	return 0;
}

void
mbus_secondary_format(const struct mbus_secondary *s, char out[17])
{
	for (int i = 0; i < 8; i++)
		out[i] = "0123456789ABCDEF"[digit_get(s, 7 - i)];
	snprintf(out + 8, 9, "%02x%02x%02x%02x", s->manufacturer & 0xFF, s->manufacturer >> 8,
	         s->version, s->medium);
}

void
mbus_secondary_from_header(const struct mbus_header *h, struct mbus_secondary *out)
{
	uint32_t id = h->id;

	memset(out, 0, sizeof(*out));
	for (int k = 0; k < 8; k++) {
		digit_set(out, k, id % 10);
		id /= 10;
	}
	out->manufacturer = h->manufacturer;
	out->version = h->version;
	out->medium = h->medium;
}
