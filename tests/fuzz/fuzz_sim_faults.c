/*
 * fuzz_sim_faults.c: the simulator's fault specs (tests/sim/faults.h), as
 * the --faults option and the control socket's `fault` command take them,
 * on arbitrary text.
 *
 * Each input line is one spec applied in turn to the same fault table
 * (serials below 1000 are meters, index serial % 50; others unknown).  A
 * rejected spec must say why and change nothing at all; an accepted one
 * must leave probabilities in 0..1, delays within the documented hour, a
 * sorted table without duplicates, and text forms that are terminated.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../sim/faults.h"
#include "../sim/model.h" /* sim_hash() */
#include "meter_error.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile size_t sink;

/*
 * faults.c seeds its decision streams with the model's sim_hash(); the
 * model itself (and all it pulls in) is not linked here, so a stand-in
 * mixer serves the fault_fire()/fault_corrupt() calls below.
 */
uint64_t
sim_hash(uint64_t seed, uint64_t a, uint64_t b, uint64_t c)
{
	uint64_t z = seed ^ a * 0x9e3779b97f4a7c15ull ^ b * 0xbf58476d1ce4e5b9ull ^ c;

	z = (z ^ z >> 30) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ z >> 27) * 0x94d049bb133111ebull;
	return z ^ z >> 31;
}

static int64_t
lookup(void *arg, uint32_t serial)
{
	(void)arg;
	return serial < 1000 ? (int64_t)(serial % 50) : -1;
}

static void
check_set(const struct fault_set *s)
{
	char buf[512];

	for (unsigned k = 0; k < FAULT_N; k++)
		if (!(s->p[k] >= 0 && s->p[k] <= 1))
			abort();
	if (s->delay_ms > 3600000 || s->stall_ms > 3600000)
		abort();
	faults_format(s, buf, sizeof(buf));
	if (memchr(buf, 0, sizeof(buf)) == NULL)
		abort();
	sink += strlen(buf);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct faults f;
	size_t off = 0;

	faults_init(&f);
	while (off < size) {
		const uint8_t *nl = memchr(data + off, '\n', size - off);
		size_t n = nl ? (size_t)(nl - (data + off)) : size - off;
		char *spec = malloc(n + 1);
		struct fault_set fleet = f.fleet;
		struct fault_meter *snap = NULL;
		size_t snap_n = f.n;
		char err[256] = "";
		int rc;

		if (spec == NULL)
			break;
		memcpy(spec, data + off, n);
		spec[n] = '\0';
		off += n + (nl != NULL);
		if (f.n && (snap = malloc(f.n * sizeof(*snap))) != NULL)
			memcpy(snap, f.m, f.n * sizeof(*snap));
		rc = faults_apply(&f, spec, lookup, NULL, err, sizeof(err));
		free(spec);
		if (rc != 0) {
			if (rc != METER_EMALFORMED && rc != METER_ENOTFOUND && rc != METER_ENOSPC)
				abort();
			if (err[0] == '\0' || memchr(err, 0, sizeof(err)) == NULL)
				abort();
			if (memcmp(&fleet, &f.fleet, sizeof(fleet)) != 0 || f.n != snap_n ||
			    (snap_n && snap && memcmp(snap, f.m, snap_n * sizeof(*snap)) != 0))
				abort(); /* a rejected spec changed something */
		}
		free(snap);
		check_set(&f.fleet);
		for (size_t i = 0; i < f.n; i++) {
			if (i > 0 && f.m[i - 1].index >= f.m[i].index)
				abort();
			check_set(&f.m[i].set);
			if (faults_for(&f, f.m[i].index) != &f.m[i].set)
				abort();
		}
		if (f.n == 0 && faults_for(&f, 7) != &f.fleet)
			abort();
	}
	/* The set in force drives decisions: counts stay within the chances. */
	{
		struct fault_rng r;
		uint8_t bytes[64];
		uint64_t before = f.fired[FAULT_CORRUPT];

		memset(bytes, 0x55, sizeof(bytes));
		fault_rng_init(&r, size, 3, 1);
		for (unsigned k = 0; k < FAULT_N; k++)
			sink += fault_fire(&f, faults_for(&f, 3), &r, k);
		if (fault_corrupt(&f, faults_for(&f, 3), &r, bytes, sizeof(bytes)) >
		        sizeof(bytes) ||
		    f.fired[FAULT_CORRUPT] - before > sizeof(bytes) + 1)
			abort();
	}
	faults_free(&f);
	return 0;
}
