/*
 * faults.c: parsing fault specs, the per-meter table and the seeded
 * decisions (see faults.h).  The per-meter table is a sorted array: faults
 * are set on a handful of meters, so a binary search beats a hash here and
 * an idle meter pays nothing.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "faults.h"
#include "meter_error.h"
#include "model.h"

static const char *names[FAULT_N] = {
    "refuse", "drop",      "stall",    "delay", "corrupt",  "truncate",
    "abort",  "ic_replay", "ic_reset", "busy",  "noanswer", "collision", "plain",
};

const char *
fault_name(unsigned kind)
{
	return kind < FAULT_N ? names[kind] : "?";
}

void
faults_init(struct faults *f)
{
	memset(f, 0, sizeof(*f));
}

void
faults_free(struct faults *f)
{
	free(f->m);
	f->m = NULL;
	f->n = f->cap = 0;
}

static size_t
find_pos(const struct faults *f, uint32_t index)
{
	size_t lo = 0, hi = f->n;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (f->m[mid].index < index)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

const struct fault_set *
faults_for(const struct faults *f, uint32_t index)
{
	size_t i = find_pos(f, index);
	if (i < f->n && f->m[i].index == index)
		return &f->m[i].set;
	return &f->fleet;
}

static struct fault_set *
meter_set(struct faults *f, uint32_t index)
{
	size_t i = find_pos(f, index);
	if (i < f->n && f->m[i].index == index)
		return &f->m[i].set;
	if (f->n == f->cap) {
		size_t cap = f->cap ? f->cap * 2 : 8;
		struct fault_meter *m = realloc(f->m, cap * sizeof(*m));
		if (!m)
			return NULL;
		f->m = m;
		f->cap = cap;
	}
	memmove(&f->m[i + 1], &f->m[i], (f->n - i) * sizeof(*f->m));
	f->n++;
	memset(&f->m[i], 0, sizeof(f->m[i]));
	f->m[i].index = index;
	return &f->m[i].set;
}

static void
meter_clear(struct faults *f, uint32_t index)
{
	size_t i = find_pos(f, index);
	if (i < f->n && f->m[i].index == index) {
		memmove(&f->m[i], &f->m[i + 1], (f->n - i - 1) * sizeof(*f->m));
		f->n--;
	}
}

/* Longest delay or stall a spec may ask for (ms): an hour. */
#define FAULT_MAX_MS 3600000.0

/* The spec is applied to a copy that replaces *f only when every item was
 * good, so a rejected spec changes nothing. */
int
faults_apply(struct faults *fs, const char *spec, fault_lookup_fn lookup, void *arg, char *err,
             size_t errlen)
{
	struct faults w = *fs, *f = &w;
	w.m = NULL;
	w.n = w.cap = 0;
	if (fs->n) {
		w.m = malloc(fs->n * sizeof(*w.m));
		if (!w.m) {
			snprintf(err, errlen, "out of memory");
			return METER_ENOSPC;
		}
		memcpy(w.m, fs->m, fs->n * sizeof(*w.m));
		w.n = w.cap = fs->n;
	}
	char *dup = strdup(spec), *save = NULL;
	if (!dup) {
		free(w.m);
		snprintf(err, errlen, "out of memory");
		return METER_ENOSPC;
	}
	int rc = 0;
	for (char *it = strtok_r(dup, ", ", &save); it; it = strtok_r(NULL, ", ", &save)) {
		struct fault_set *set = &f->fleet;
		int64_t idx = -1;
		char *at = strchr(it, '@');
		if (at) {
			*at++ = 0;
			char *end;
			unsigned long serial = strtoul(at, &end, 10);
			if (*end || !*at) {
				snprintf(err, errlen, "bad serial '%s'", at);
				rc = METER_EMALFORMED;
				break;
			}
			idx = lookup(arg, (uint32_t)serial);
			if (idx < 0) {
				snprintf(err, errlen, "no meter %s", at);
				rc = METER_ENOTFOUND;
				break;
			}
		}
		if (!strcmp(it, "none")) {
			if (idx >= 0) {
				meter_clear(f, (uint32_t)idx);
			} else {
				memset(&f->fleet, 0, sizeof(f->fleet));
				f->n = 0;
			}
			continue;
		}
		if (idx >= 0) {
			set = meter_set(f, (uint32_t)idx);
			if (!set) {
				snprintf(err, errlen, "out of memory");
				rc = METER_ENOSPC;
				break;
			}
		}
		char *eq = strchr(it, '=');
		if (eq)
			*eq++ = 0;
		unsigned k;
		for (k = 0; k < FAULT_N && strcmp(it, names[k]); k++)
			;
		if (k == FAULT_N) {
			snprintf(err, errlen, "unknown fault '%s'", it);
			rc = METER_EMALFORMED;
			break;
		}
		char *end = NULL;
		double v = eq ? strtod(eq, &end) : -1;
		if (eq && (*end || end == eq || !(v >= 0))) { /* NaN too */
			snprintf(err, errlen, "bad value for %s", it);
			rc = METER_EMALFORMED;
			break;
		}
		if ((k == FAULT_DELAY || k == FAULT_STALL) && v > FAULT_MAX_MS) {
			snprintf(err, errlen, "%s of more than %.0f ms", it, FAULT_MAX_MS);
			rc = METER_EMALFORMED;
			break;
		}
		if (k == FAULT_DELAY || k == FAULT_STALL) {
			uint32_t ms = v < 0 ? 1000 : (uint32_t)v;
			if (k == FAULT_DELAY)
				set->delay_ms = ms;
			else
				set->stall_ms = ms;
			set->p[k] = ms ? 1.0f : 0.0f;
			if (k == FAULT_STALL)
				set->p[k] = 1.0f;
		} else {
			if (v > 1) {
				snprintf(err, errlen, "probability of %s above 1", it);
				rc = METER_EMALFORMED;
				break;
			}
			set->p[k] = v < 0 ? 1.0f : (float)v;
		}
	}
	free(dup);
	if (rc) {
		free(w.m);
		return rc;
	}
	free(fs->m);
	fs->fleet = w.fleet;
	fs->m = w.m;
	fs->n = w.n;
	fs->cap = w.cap;
	return 0;
}

void
faults_format(const struct fault_set *s, char *buf, size_t cap)
{
	size_t n = 0;
	buf[0] = 0;
	for (unsigned k = 0; k < FAULT_N && n < cap; k++) {
		if (s->p[k] <= 0)
			continue;
		int w;
		if (k == FAULT_DELAY)
			w = snprintf(buf + n, cap - n, "%s%s=%u", n ? "," : "", names[k],
			             s->delay_ms);
		else if (k == FAULT_STALL)
			w = snprintf(buf + n, cap - n, "%s%s=%u", n ? "," : "", names[k],
			             s->stall_ms);
		else
			w = snprintf(buf + n, cap - n, "%s%s=%g", n ? "," : "", names[k],
			             (double)s->p[k]);
		if (w < 0)
			break;
		n += (size_t)w;
	}
	if (n == 0)
		snprintf(buf, cap, "none");
}

void
fault_rng_init(struct fault_rng *r, uint64_t seed, uint32_t index, uint64_t conn)
{
	r->s = sim_hash(seed, 0xfa17, index, conn);
}

double
fault_rng_u01(struct fault_rng *r)
{
	/* splitmix64 step */
	uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	z ^= z >> 31;
	return (double)(z >> 11) / 9007199254740992.0;
}

bool
fault_fire(struct faults *f, const struct fault_set *s, struct fault_rng *r, unsigned kind)
{
	float p = s->p[kind];
	if (p <= 0)
		return false;
	if (p < 1 && fault_rng_u01(r) >= p)
		return false;
	__atomic_add_fetch(&f->fired[kind], 1, __ATOMIC_RELAXED);
	return true;
}

size_t
fault_corrupt(struct faults *f, const struct fault_set *s, struct fault_rng *r, uint8_t *p,
              size_t n)
{
	float pr = s->p[FAULT_CORRUPT];
	if (pr <= 0)
		return 0;
	size_t hit = 0;
	for (size_t i = 0; i < n; i++) {
		if (pr < 1 && fault_rng_u01(r) >= pr)
			continue;
		p[i] ^= (uint8_t)(1u << (unsigned)(fault_rng_u01(r) * 8));
		hit++;
	}
	if (hit)
		__atomic_add_fetch(&f->fired[FAULT_CORRUPT], hit, __ATOMIC_RELAXED);
	return hit;
}
