/*
 * test_sim_faults.c: the simulator's fault injection (tests/sim/faults.c):
 * specs parsed into fleet-wide and per-meter sets, a meter's own set
 * replacing the fleet's, "none" clearing, bad specs rejected with a clear
 * message and without touching what was set before, the text form
 * parsing back to the same set, decisions reproducible from (seed, meter,
 * connection) and the probabilities honoured over many trials.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../sim/faults.h"
#include "meter_error.h"

/* A fleet of three meters for @SERIAL: serial -> index. */
static int64_t
lookup(void *arg, uint32_t serial)
{
	(void)arg;
	static const uint32_t serials[] = {12345678, 20000001, 99000000};
	for (int64_t i = 0; i < 3; i++)
		if (serials[i] == serial)
			return i;
	return METER_ENOTFOUND;
}

static void
apply_ok(struct faults *f, const char *spec)
{
	char err[128] = "";
	int rc = faults_apply(f, spec, lookup, NULL, err, sizeof(err));
	cr_assert_eq(rc, 0, "'%s': %s (%s)", spec, meter_strerror(rc), err);
}

/* ---- parsing -------------------------------------------------------------------- */

struct parse_case {
	const char *spec;
	float p[FAULT_N];
	uint32_t delay_ms, stall_ms;
};

static const struct parse_case parse_cases[] = {
    {"corrupt=0.001,delay=200", {[FAULT_CORRUPT] = 0.001f, [FAULT_DELAY] = 1}, 200, 0},
    {"refuse", {[FAULT_REFUSE] = 1}, 0, 0},
    {"stall", {[FAULT_STALL] = 1}, 0, 1000},
    {"stall=50", {[FAULT_STALL] = 1}, 0, 50},
    {"delay", {[FAULT_DELAY] = 1}, 1000, 0},
    {"delay=0", {[FAULT_DELAY] = 0}, 0, 0},
    {"drop=0.5 truncate=0.25", {[FAULT_DROP] = 0.5f, [FAULT_TRUNCATE] = 0.25f}, 0, 0},
    {"ic_reset,ic_replay=0.1", {[FAULT_IC_RESET] = 1, [FAULT_IC_REPLAY] = 0.1f}, 0, 0},
    {"abort=0,busy=1,noanswer=0.75,collision=.5",
     {[FAULT_BUSY] = 1, [FAULT_NOANSWER] = 0.75f, [FAULT_COLLISION] = 0.5f},
     0,
     0},
    {"corrupt=0.2,corrupt=0.3", {[FAULT_CORRUPT] = 0.3f}, 0, 0}, /* the last one wins */
    {"", {0}, 0, 0},
    {"none", {0}, 0, 0},
};

Test(sim_faults, specs_parse_into_the_fleet_set)
{
	for (size_t i = 0; i < sizeof(parse_cases) / sizeof(parse_cases[0]); i++) {
		const struct parse_case *c = &parse_cases[i];
		struct faults f;
		faults_init(&f);
		apply_ok(&f, c->spec);
		for (unsigned k = 0; k < FAULT_N; k++)
			cr_expect_float_eq(f.fleet.p[k], c->p[k], 1e-7, "'%s': %s = %g, want %g",
			                   c->spec, fault_name(k), (double)f.fleet.p[k],
			                   (double)c->p[k]);
		cr_expect_eq(f.fleet.delay_ms, c->delay_ms, "'%s': delay %u", c->spec,
		             f.fleet.delay_ms);
		cr_expect_eq(f.fleet.stall_ms, c->stall_ms, "'%s': stall %u", c->spec,
		             f.fleet.stall_ms);
		cr_expect_eq(f.n, 0, "'%s' made per-meter sets", c->spec);
		faults_free(&f);
	}
}

Test(sim_faults, every_kind_has_a_name_that_parses)
{
	for (unsigned k = 0; k < FAULT_N; k++) {
		struct faults f;
		faults_init(&f);
		apply_ok(&f, fault_name(k));
		cr_expect_gt(f.fleet.p[k], 0, "%s did not switch on", fault_name(k));
		for (unsigned o = 0; o < FAULT_N; o++)
			if (o != k)
				cr_expect_eq(f.fleet.p[o], 0, "%s switched on %s too",
				             fault_name(k), fault_name(o));
		faults_free(&f);
	}
	cr_expect_str_eq(fault_name(FAULT_N), "?");
}

/* ---- fleet-wide and per meter ----------------------------------------------------- */

Test(sim_faults, a_meter_set_replaces_the_fleet_set_for_that_meter_only)
{
	struct faults f;
	faults_init(&f);
	apply_ok(&f, "delay=300,refuse@20000001,corrupt=0.5@20000001");
	cr_assert_eq(f.n, 1);
	const struct fault_set *m1 = faults_for(&f, 1);
	cr_expect_eq(m1->p[FAULT_REFUSE], 1);
	cr_expect_float_eq(m1->p[FAULT_CORRUPT], 0.5f, 1e-7);
	cr_expect_eq(m1->p[FAULT_DELAY], 0, "the meter's set does not inherit the fleet's delay");
	for (uint32_t i = 0; i < 3; i += 2) {
		const struct fault_set *s = faults_for(&f, i);
		cr_expect_eq(s, &f.fleet, "meter %u has its own set", i);
		cr_expect_eq(s->delay_ms, 300);
		cr_expect_eq(s->p[FAULT_REFUSE], 0);
	}
	/* none@SERIAL: back to the fleet's set; none: everything off */
	apply_ok(&f, "none@20000001");
	cr_expect_eq(f.n, 0);
	cr_expect_eq(faults_for(&f, 1), &f.fleet);
	apply_ok(&f, "drop@99000000,stall=20@12345678");
	cr_expect_eq(f.n, 2);
	apply_ok(&f, "none");
	cr_expect_eq(f.n, 0);
	for (unsigned k = 0; k < FAULT_N; k++)
		cr_expect_eq(f.fleet.p[k], 0);
	faults_free(&f);
}

static int64_t
identity(void *arg, uint32_t serial)
{
	(void)arg;
	return serial < 1000 ? (int64_t)serial : METER_ENOTFOUND;
}

Test(sim_faults, many_meters_set_in_any_order_are_each_found)
{
	struct faults f;
	faults_init(&f);
	char spec[32], err[64];
	/* a permutation of 0..996 (997 is prime) */
	for (uint32_t i = 0; i < 997; i++) {
		uint32_t idx = (i * 389) % 997;
		snprintf(spec, sizeof(spec), "stall=%u@%u", idx + 1, idx);
		cr_assert_eq(faults_apply(&f, spec, identity, NULL, err, sizeof(err)), 0, "%s",
		             err);
	}
	cr_assert_eq(f.n, 997);
	for (uint32_t idx = 0; idx < 997; idx++)
		cr_expect_eq(faults_for(&f, idx)->stall_ms, idx + 1, "meter %u", idx);
	cr_expect_eq(faults_for(&f, 998), &f.fleet);
	for (size_t i = 1; i < f.n; i++)
		cr_assert_lt(f.m[i - 1].index, f.m[i].index, "table not sorted at %zu", i);
	faults_free(&f);
}

/* ---- bad specs ---------------------------------------------------------------------- */

struct bad_case {
	const char *spec;
	int rc;
	const char *msg; /* in err */
};

static const struct bad_case bad_cases[] = {
    {"bogus", METER_EMALFORMED, "unknown fault 'bogus'"},
    {"corrupt=2", METER_EMALFORMED, "probability of corrupt above 1"},
    {"drop=1.0001", METER_EMALFORMED, "above 1"},
    {"corrupt=-0.1", METER_EMALFORMED, "bad value for corrupt"},
    {"corrupt=abc", METER_EMALFORMED, "bad value for corrupt"},
    {"corrupt=", METER_EMALFORMED, "bad value for corrupt"},
    {"corrupt=0.5x", METER_EMALFORMED, "bad value for corrupt"},
    {"corrupt=nan", METER_EMALFORMED, "bad value for corrupt"},
    {"truncate=inf", METER_EMALFORMED, "above 1"},
    {"delay=inf", METER_EMALFORMED, "delay of more than 3600000 ms"},
    {"stall=3600001", METER_EMALFORMED, "stall of more than"},
    {"delay=-5", METER_EMALFORMED, "bad value for delay"},
    {"refuse@", METER_EMALFORMED, "bad serial ''"},
    {"refuse@12x", METER_EMALFORMED, "bad serial '12x'"},
    {"refuse@99999999", METER_ENOTFOUND, "no meter 99999999"},
    {"none@11111111", METER_ENOTFOUND, "no meter 11111111"},
    {"delay=5,bogus", METER_EMALFORMED, "unknown fault 'bogus'"},
    {"refuse@12345678,corrupt=7@12345678", METER_EMALFORMED, "above 1"},
};

Test(sim_faults, bad_specs_are_rejected_with_a_message_and_change_nothing)
{
	for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
		const struct bad_case *c = &bad_cases[i];
		struct faults f;
		faults_init(&f);
		apply_ok(&f, "ic_reset=0.25,drop@20000001");
		struct fault_set fleet = f.fleet, m1 = *faults_for(&f, 1);
		char err[128] = "";
		int rc = faults_apply(&f, c->spec, lookup, NULL, err, sizeof(err));
		cr_expect_eq(rc, c->rc, "'%s': %s, want %s", c->spec, meter_strerror(rc),
		             meter_strerror(c->rc));
		cr_expect(strstr(err, c->msg) != NULL, "'%s': message '%s' lacks '%s'", c->spec,
		          err, c->msg);
		cr_expect(memcmp(&f.fleet, &fleet, sizeof(fleet)) == 0,
		          "'%s' changed the fleet set", c->spec);
		cr_expect_eq(f.n, 1, "'%s' changed the per-meter table", c->spec);
		cr_expect(memcmp(faults_for(&f, 1), &m1, sizeof(m1)) == 0,
		          "'%s' changed meter 1's set", c->spec);
		faults_free(&f);
	}
}

/* ---- text form ------------------------------------------------------------------------ */

Test(sim_faults, the_text_form_parses_back_to_the_same_set)
{
	static const char *specs[] = {"corrupt=0.001,delay=200", "refuse,stall=75",
	                              "ic_replay=0.125,busy,collision=0.5",
	                              "drop=0.5,truncate=0.25,abort=0.75,noanswer", ""};
	for (size_t i = 0; i < sizeof(specs) / sizeof(specs[0]); i++) {
		struct faults a, b;
		faults_init(&a);
		faults_init(&b);
		apply_ok(&a, specs[i]);
		char text[256];
		faults_format(&a.fleet, text, sizeof(text));
		if (!*specs[i])
			cr_expect_str_eq(text, "none");
		apply_ok(&b, text);
		cr_expect(memcmp(&a.fleet, &b.fleet, sizeof(a.fleet)) == 0,
		          "'%s' -> '%s' parses to another set", specs[i], text);
		faults_free(&a);
		faults_free(&b);
	}
	struct faults f;
	faults_init(&f);
	apply_ok(&f, "corrupt=0.001,delay=200");
	char text[256];
	faults_format(&f.fleet, text, sizeof(text));
	cr_expect_str_eq(text, "delay=200,corrupt=0.001");
	faults_free(&f);
}

/* ---- decisions ----------------------------------------------------------------------- */

Test(sim_faults, decisions_are_reproducible_from_seed_meter_and_connection)
{
	struct faults f;
	faults_init(&f);
	apply_ok(&f, "drop=0.3");
	struct fault_rng a, b, c, d;
	fault_rng_init(&a, 42, 7, 3);
	fault_rng_init(&b, 42, 7, 3);
	fault_rng_init(&c, 42, 7, 4); /* next connection */
	fault_rng_init(&d, 43, 7, 3); /* another seed */
	unsigned same_c = 0, same_d = 0;
	for (int i = 0; i < 1000; i++) {
		bool x = fault_fire(&f, &f.fleet, &a, FAULT_DROP);
		cr_assert_eq(x, fault_fire(&f, &f.fleet, &b, FAULT_DROP), "diverged at draw %d", i);
		same_c += x == fault_fire(&f, &f.fleet, &c, FAULT_DROP);
		same_d += x == fault_fire(&f, &f.fleet, &d, FAULT_DROP);
	}
	/* independent streams agree on about 0.7^2 + 0.3^2 = 58 % of draws */
	cr_expect(same_c > 500 && same_c < 660, "next connection agrees on %u of 1000", same_c);
	cr_expect(same_d > 500 && same_d < 660, "another seed agrees on %u of 1000", same_d);

	/* the same bytes are corrupted the same way */
	apply_ok(&f, "corrupt=0.05");
	uint8_t p[4096], q[4096];
	memset(p, 0x5a, sizeof(p));
	memset(q, 0x5a, sizeof(q));
	fault_rng_init(&a, 9, 1, 1);
	fault_rng_init(&b, 9, 1, 1);
	size_t hp = fault_corrupt(&f, &f.fleet, &a, p, sizeof(p));
	size_t hq = fault_corrupt(&f, &f.fleet, &b, q, sizeof(q));
	cr_expect_eq(hp, hq);
	cr_expect(memcmp(p, q, sizeof(p)) == 0, "the same stream corrupted other bytes");
	faults_free(&f);
}

struct prob_case {
	unsigned kind;
	float p;
};

static const struct prob_case prob_cases[] = {
    {FAULT_DROP, 0.1f},      {FAULT_TRUNCATE, 0.5f}, {FAULT_ABORT, 0.01f},    {FAULT_BUSY, 0.9f},
    {FAULT_NOANSWER, 0.25f}, {FAULT_REFUSE, 1.0f},   {FAULT_COLLISION, 0.0f},
};

Test(sim_faults, probabilities_are_honoured_and_counted)
{
	enum { TRIALS = 100000 };
	for (size_t i = 0; i < sizeof(prob_cases) / sizeof(prob_cases[0]); i++) {
		const struct prob_case *c = &prob_cases[i];
		struct faults f;
		faults_init(&f);
		f.fleet.p[c->kind] = c->p;
		unsigned fired = 0;
		for (uint32_t conn = 0; conn < TRIALS / 100; conn++) {
			struct fault_rng r;
			fault_rng_init(&r, 1, 5, conn);
			for (int j = 0; j < 100; j++)
				fired += fault_fire(&f, &f.fleet, &r, c->kind);
		}
		/* five standard deviations of the binomial */
		double mean = (double)TRIALS * c->p;
		double sd = sqrt((double)TRIALS * c->p * (1 - c->p));
		cr_expect(fabs(fired - mean) <= 5 * sd + 0.5, "%s=%g fired %u of %d",
		          fault_name(c->kind), (double)c->p, fired, TRIALS);
		cr_expect_eq(f.fired[c->kind], fired, "%s: counter %llu, fired %u",
		             fault_name(c->kind), (unsigned long long)f.fired[c->kind], fired);
		for (unsigned k = 0; k < FAULT_N; k++)
			if (k != c->kind)
				cr_expect_eq(f.fired[k], 0);
		faults_free(&f);
	}
}

Test(sim_faults, corruption_flips_one_bit_per_chosen_byte_at_the_rate_asked)
{
	struct faults f;
	faults_init(&f);
	apply_ok(&f, "corrupt=0.01");
	enum { N = 200000 };
	static uint8_t buf[N];
	for (size_t i = 0; i < N; i++)
		buf[i] = (uint8_t)(i * 131);
	struct fault_rng r;
	fault_rng_init(&r, 77, 3, 1);
	size_t hit = fault_corrupt(&f, &f.fleet, &r, buf, N);
	size_t changed = 0;
	for (size_t i = 0; i < N; i++) {
		uint8_t x = buf[i] ^ (uint8_t)(i * 131);
		if (!x)
			continue;
		changed++;
		cr_expect_eq(x & (x - 1), 0, "byte %zu has more than one bit flipped", i);
	}
	cr_expect_eq(changed, hit);
	cr_expect_eq(f.fired[FAULT_CORRUPT], hit);
	double sd = sqrt(N * 0.01 * 0.99);
	cr_expect(fabs((double)hit - N * 0.01) <= 5 * sd, "%zu of %d bytes corrupted", hit, N);

	/* off: nothing changes, nothing counted */
	apply_ok(&f, "none");
	uint8_t before[64], after[64];
	memset(before, 0xa5, sizeof(before));
	memcpy(after, before, sizeof(after));
	cr_expect_eq(fault_corrupt(&f, &f.fleet, &r, after, sizeof(after)), 0);
	cr_expect(memcmp(before, after, sizeof(after)) == 0);
	faults_free(&f);
}
