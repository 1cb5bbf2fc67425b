/*
 * test_mbus_scan.c: the secondary-address tree search (drivers/mbus/
 * mbus_scan.c) against an in-memory bus.  A probe is answered as a wired
 * bus would: nobody matches, one slave matches (E5), or several do and
 * their ACKs collide.  Every bus must be found completely, with a number
 * of probes that grows with the slaves, never with the 10^8 ids; the
 * figures are printed for the report.  A probe whose answer came late and
 * was doubted is probed again, a bounded number of times; so is the silent
 * probe before a collision that nobody under it explains.  Also the text
 * form of secondary addresses and the baud-rate timeout.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mbus.h"
#include "mbus/mbus_bus.h"

#define MAXS 300

struct membus {
	struct mbus_header h[MAXS];
	size_t n;
	bool seen[MAXS];
	uint32_t rng;
	unsigned garble_pct; /* a lone ACK garbled by noise, wildcard probes only */
};

static uint32_t
rnd(uint32_t *s)
{
	*s = *s * 1103515245u + 12345u;
	return *s >> 8;
}

static void
add(struct membus *b, uint32_t id, uint8_t medium)
{
	struct mbus_header *h = &b->h[b->n++];
	memset(h, 0, sizeof(*h));
	h->has_id = true;
	h->id = id;
	h->manufacturer = 0x2c2d; /* KAM */
	h->version = 0x1b;
	h->medium = medium;
}

static bool
has_wildcard(const struct mbus_secondary *s)
{
	for (int i = 0; i < 4; i++)
		if ((s->id_bcd[i] & 15) == 15 || s->id_bcd[i] >> 4 == 15)
			return true;
	return false;
}

/* Runs a full search; returns the probes, fills found/unresolved. */
static uint64_t last_unexplained;

/* What the slaves on B answer to probe P: nobody, one (*who, its index) or
 * several at once. */
static enum mbus_probe_result
answer(const struct membus *b, const struct mbus_secondary *p, size_t *who)
{
	size_t hits = 0;

	for (size_t i = 0; i < b->n; i++)
		if (mbus_secondary_match(p, &b->h[i])) {
			hits++;
			*who = i;
		}
	return hits == 0 ? MBUS_PROBE_NONE : hits == 1 ? MBUS_PROBE_ONE : MBUS_PROBE_COLLISION;
}

/* Slave WHO found by a search: each slave is found once. */
static void
found_once(struct membus *b, size_t who, size_t *found)
{
	cr_assert_not(b->seen[who], "slave %u found twice", b->h[who].id);
	b->seen[who] = true;
	(*found)++;
}

static uint64_t
search(struct membus *b, const struct mbus_secondary *mask, size_t *found, uint64_t *unresolved)
{
	struct mbus_scan s;
	struct mbus_secondary p;

	*found = 0;
	memset(b->seen, 0, sizeof(b->seen));
	mbus_scan_init(&s, mask);
	while (mbus_scan_next(&s, &p)) {
		size_t who = 0;
		enum mbus_probe_result r = answer(b, &p, &who);
		if (r == MBUS_PROBE_ONE && b->garble_pct && has_wildcard(&p) &&
		    rnd(&b->rng) % 100 < b->garble_pct)
			r = MBUS_PROBE_COLLISION;
		if (r == MBUS_PROBE_ONE)
			found_once(b, who, found);
		mbus_scan_result(&s, r);
		cr_assert(s.probes < 100000, "runaway search");
	}
	*unresolved = s.unresolved;
	last_unexplained = s.unexplained;
	return s.probes;
}

enum layout { RANDOM, SEQUENTIAL, CLUSTERED, SINGLE, EMPTY };

struct scan_case {
	const char *name;
	enum layout layout;
	size_t n;
	unsigned garble_pct;
	uint64_t max_probes; /* bound the search must stay under */
};

static void
fill(struct membus *b, const struct scan_case *c)
{
	memset(b, 0, sizeof(*b));
	b->rng = 42;
	b->garble_pct = c->garble_pct;
	for (size_t i = 0; i < c->n; i++) {
		uint32_t id;
		bool dup;
		do {
			switch (c->layout) {
			case RANDOM:
				id = rnd(&b->rng) % 100000000u;
				break;
			case SEQUENTIAL:
				id = 71234000u + (uint32_t)i;
				break;
			case CLUSTERED: /* a few deliveries of consecutive serials */
				id = 10000000u * (uint32_t)(i % 5) + 5550000u +
				     (uint32_t)(i / 5) * 3u;
				break;
			default:
				id = 12345678u;
				break;
			}
			dup = false;
			for (size_t k = 0; k < b->n; k++)
				dup |= b->h[k].id == id;
		} while (dup && c->layout == RANDOM);
		add(b, id, 0x02);
	}
}

static void scan_one(const struct scan_case *c);

static struct scan_case scan_cases[] = {
    {"250 random ids", RANDOM, 250, 0, 3000},
    {"250 random ids, 10% of lone ACKs garbled", RANDOM, 250, 10, 4000},
    {"250 consecutive serials", SEQUENTIAL, 250, 0, 3000},
    {"250 serials in 5 deliveries", CLUSTERED, 250, 0, 3000},
    {"one slave", SINGLE, 1, 0, 1},
    {"empty bus", EMPTY, 0, 0, 1},
};

Test(mbus_scan, finds_every_slave)
{
	for (size_t k = 0; k < sizeof(scan_cases) / sizeof(scan_cases[0]); k++)
		scan_one(&scan_cases[k]);
}

static void
scan_one(const struct scan_case *c)
{
	static struct membus b;
	size_t found;
	uint64_t unresolved;

	fill(&b, c);
	uint64_t probes = search(&b, NULL, &found, &unresolved);
	cr_assert_eq(found, c->n, "%s: found %zu of %zu", c->name, found, c->n);
	for (size_t i = 0; i < b.n; i++)
		cr_assert(b.seen[i], "%s: slave %u not found", c->name, b.h[i].id);
	cr_assert_eq(unresolved, 0);
	cr_assert_eq(last_unexplained, 0, "%s: a collision with nobody under it", c->name);
	cr_assert_leq(probes, c->max_probes, "%s: %llu probes", c->name,
	              (unsigned long long)probes);
	if (c->n > 1)
		cr_assert_geq(probes, c->n + 1, "a collision needs more probes than slaves");
	fprintf(stderr, "mbus_scan: %-42s %3zu slaves, %5llu probes\n", c->name, c->n,
	        (unsigned long long)probes);
}

Test(mbus_scan, same_id_twice_is_unresolved_not_lost)
{
	static struct membus b;
	size_t found;
	uint64_t unresolved;

	memset(&b, 0, sizeof(b));
	add(&b, 12345678u, 0x02);
	add(&b, 12345678u, 0x07); /* a water meter with the same id */
	add(&b, 12345679u, 0x02);
	uint64_t probes = search(&b, NULL, &found, &unresolved);
	cr_assert_eq(found, 1);
	cr_assert(b.seen[2]);
	cr_assert_eq(unresolved, 1);
	/* 1 + 10 per level for the 8 levels the pair shares */
	cr_assert_eq(probes, 81);
}

Test(mbus_scan, mask_limits_the_search)
{
	static struct membus b;
	struct mbus_secondary mask;
	size_t found;
	uint64_t unresolved;

	memset(&b, 0, sizeof(b));
	for (uint32_t i = 0; i < 20; i++)
		add(&b, 55500000u + i * 7u, 0x02);
	for (uint32_t i = 0; i < 20; i++)
		add(&b, 66600000u + i * 7u, 0x02);
	cr_assert_eq(mbus_secondary_parse("555FFFFF", &mask), 0);
	search(&b, &mask, &found, &unresolved);
	cr_assert_eq(found, 20);
	for (size_t i = 0; i < 40; i++)
		cr_assert_eq(b.seen[i], i < 20);
	/* a mask that fixes the medium excludes everything else */
	cr_assert_eq(mbus_secondary_parse("FFFFFFFF2d2c1b07", &mask), 0);
	search(&b, &mask, &found, &unresolved);
	cr_assert_eq(found, 0);
}

Test(mbus_scan, probes_are_one_at_a_time)
{
	struct mbus_scan s;
	struct mbus_secondary p, q;

	mbus_scan_init(&s, NULL);
	cr_assert(mbus_scan_next(&s, &p));
	cr_assert_not(mbus_scan_next(&s, &q), "a second probe before the first's result");
	mbus_scan_result(&s, MBUS_PROBE_COLLISION);
	cr_assert(mbus_scan_next(&s, &q));
	/* the first child fixes the most significant digit to 0 */
	cr_assert_eq(q.id_bcd[3], 0x0F);
	cr_assert_eq(q.id_bcd[0], 0xFF);
	cr_assert_eq(s.probes, 2);
}

/* Bus B filled as C says, nobody found yet, and search S begun over it. */
static void
scan_begin(struct membus *b, const struct scan_case *c, struct mbus_scan *s)
{
	fill(b, c);
	memset(b->seen, 0, sizeof(b->seen));
	mbus_scan_init(s, NULL);
}

/*
 * A loaded line: the first answer of every probe that one slave would
 * acknowledge comes late and is taken for silence; the late bytes show
 * up afterwards (stray), and the caller doubts that silent probe
 * (mbus_scan_repeat), as mbus_scan_run does.  Every slave is still found,
 * each once, with exactly one repeated probe per lost answer.
 */
Test(mbus_scan, a_late_answer_doubted_is_probed_again)
{
	static struct membus b;
	static const struct scan_case c = {"late", RANDOM, 250, 0, 0};
	struct mbus_scan s;
	struct mbus_secondary p;
	size_t found = 0, lost = 0;

	scan_begin(&b, &c, &s);
	while (mbus_scan_next(&s, &p)) {
		size_t who = 0;
		enum mbus_probe_result r = answer(&b, &p, &who);
		if (r == MBUS_PROBE_ONE && s.current_repeats == 0) {
			/* its E5 comes after the timeout */
			mbus_scan_result(&s, MBUS_PROBE_NONE);
			lost++;
			cr_assert(mbus_scan_repeat(&s, &p, s.current_repeats));
			continue;
		}
		if (r == MBUS_PROBE_ONE)
			found_once(&b, who, &found);
		mbus_scan_result(&s, r);
	}
	cr_assert_eq(found, 250);
	cr_assert_eq(lost, 250);
	cr_assert_eq(s.repeated, 250);
	cr_assert_eq(s.unresolved, 0);
}

/*
 * A loaded line, worse: the garbled answer of a probe over several slaves
 * comes so late that the probe is taken as silent and the garbage lands in
 * the window of the next, truly empty, probe.  That collision's ten
 * children all stay silent (nobody is under it), so the search sends the
 * silent probe before it again, and finds every slave.
 */
Test(mbus_scan, a_collision_nobody_explains_repeats_the_silence_before_it)
{
	static struct membus b;
	static const struct scan_case c = {"late garbage", RANDOM, 250, 0, 0};
	struct mbus_scan s;
	struct mbus_secondary p;
	size_t found = 0, shifted = 0;
	bool carry = false;

	scan_begin(&b, &c, &s);
	while (mbus_scan_next(&s, &p)) {
		size_t who = 0;
		enum mbus_probe_result r = answer(&b, &p, &who);
		if (r == MBUS_PROBE_COLLISION && !carry && shifted < 5 && s.probes > 20 &&
		    s.current_repeats == 0) {
			carry = true; /* its garbage comes later */
			r = MBUS_PROBE_NONE;
		} else if (carry && r == MBUS_PROBE_NONE) {
			carry = false; /* ... into this one's window */
			shifted++;
			r = MBUS_PROBE_COLLISION;
		}
		if (r == MBUS_PROBE_ONE)
			found_once(&b, who, &found);
		mbus_scan_result(&s, r);
		cr_assert(s.probes < 100000, "runaway search");
	}
	cr_assert_eq(shifted, 5);
	cr_assert_eq(found, 250);
	cr_assert_eq(s.unexplained, 5);
	cr_assert_eq(s.repeated, 5);
}

Test(mbus_scan, a_probe_is_repeated_a_bounded_number_of_times)
{
	struct mbus_scan s;
	struct mbus_secondary p;
	unsigned times = 0;

	mbus_scan_init(&s, NULL);
	cr_assert(mbus_scan_next(&s, &p));
	mbus_scan_result(&s, MBUS_PROBE_NONE);
	while (mbus_scan_repeat(&s, &p, s.current_repeats)) {
		struct mbus_secondary q;
		times++;
		cr_assert(mbus_scan_next(&s, &q));
		cr_assert_eq(memcmp(&q, &p, sizeof(p)), 0, "the doubted probe comes next");
		cr_assert_eq(s.current_repeats, times);
		mbus_scan_result(&s, MBUS_PROBE_NONE);
		cr_assert(times <= MBUS_SCAN_REPEAT, "repeated without end");
	}
	cr_assert_eq(times, MBUS_SCAN_REPEAT);
	cr_assert_eq(s.repeated, MBUS_SCAN_REPEAT);
	cr_assert_not(mbus_scan_next(&s, &p), "nothing else was pending");
}

struct sec_case {
	const char *text;
	int rc;
	uint8_t bcd[4];
	uint16_t man;
	uint8_t version, medium;
	const char *formatted;
};

static struct sec_case sec_cases[] = {
    {"123456782d2c1b02", 0, {0x78, 0x56, 0x34, 0x12}, 0x2c2d, 0x1b, 0x02, "123456782d2c1b02"},
    {"12345678", 0, {0x78, 0x56, 0x34, 0x12}, 0xffff, 0xff, 0xff, "12345678ffffffff"},
    {"1234FFFF", 0, {0xff, 0xff, 0x34, 0x12}, 0xffff, 0xff, 0xff, "1234FFFFffffffff"},
    {"1234A678", METER_EINVAL, {0}, 0, 0, 0, NULL},
    {"1234567", METER_EINVAL, {0}, 0, 0, 0, NULL},
    {"123456782d2c1b0", METER_EINVAL, {0}, 0, 0, 0, NULL},
    {"123456782d2c1bzz", METER_EINVAL, {0}, 0, 0, 0, NULL},
    {"", METER_EINVAL, {0}, 0, 0, 0, NULL},
};

Test(mbus_scan, secondary_text)
{
	for (size_t k = 0; k < sizeof(sec_cases) / sizeof(sec_cases[0]); k++) {
		const struct sec_case *c = &sec_cases[k];
		struct mbus_secondary s;
		char out[17];

		cr_assert_eq(mbus_secondary_parse(c->text, &s), c->rc, "%s", c->text);
		if (c->rc != 0)
			continue;
		cr_assert_arr_eq(s.id_bcd, c->bcd, 4, "%s", c->text);
		cr_assert_eq(s.manufacturer, c->man);
		cr_assert_eq(s.version, c->version);
		cr_assert_eq(s.medium, c->medium);
		mbus_secondary_format(&s, out);
		cr_assert_str_eq(out, c->formatted);
	}
}

Test(mbus_scan, secondary_from_header_matches_it)
{
	struct mbus_header h = {
	    .has_id = true, .id = 98447399, .manufacturer = 0x2c2d, .version = 0x1b, .medium = 2};
	struct mbus_secondary s;
	char out[17];

	mbus_secondary_from_header(&h, &s);
	mbus_secondary_format(&s, out);
	cr_assert_str_eq(out, "984473992d2c1b02");
	cr_assert(mbus_secondary_match(&s, &h));
	h.id++;
	cr_assert_not(mbus_secondary_match(&s, &h));
}

struct to_case {
	int baud;
	size_t req, reply;
	int reply_ms, latency_ms, want;
};

/* (req + reply) * 11 + 330 bits at baud, + reply_ms + latency, rounded up */
static struct to_case to_cases[] = {
    {9600, 5, 261, 50, 0, 390},    /* 3256 bits = 339.2 ms */
    {300, 5, 261, 50, 100, 11004}, /* 10853.3 ms */
    {2400, 21, 1, 50, 100, 389},   /* selection: 572 bits = 238.3 ms */
    {38400, 5, 1, 10, 0, 21},      /* 396 bits = 10.3 ms */
    {0, 5, 1, 0, 0, 166},          /* 0 baud: 2400 assumed */
};

Test(mbus_scan, timeout_follows_baud)
{
	for (size_t k = 0; k < sizeof(to_cases) / sizeof(to_cases[0]); k++) {
		const struct to_case *c = &to_cases[k];
		cr_assert_eq(
		    mbus_bus_timeout_ms(c->baud, c->req, c->reply, c->reply_ms, c->latency_ms),
		    c->want, "%d Bd", c->baud);
	}
}
