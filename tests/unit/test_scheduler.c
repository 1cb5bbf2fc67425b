/*
 * test_scheduler.c: the scheduler's pure rules: per-meter jitter (stable,
 * in range, spread), exponential backoff with its cap and the unreachable
 * cadence, the next collection slot in local time on ordinary days and on
 * both daylight-saving days, and the claim query's pointer and gap texts.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "cosem_time.h"
#include "scheduler.h"
#include "session.h"
#include "store.h"

static int64_t
utc(int y, unsigned mo, unsigned d, int h, int mi)
{
	return cosem_days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60;
}

Test(scheduler, jitter_stable_in_range_and_spread)
{
	static int buckets[10];
	for (int32_t id = 1; id <= 10000; id++) {
		int64_t j = scheduler_jitter(id, 72000);
		cr_assert(j >= 0 && j < 72000);
		cr_assert_eq(j, scheduler_jitter(id, 72000));
		buckets[j / 7200]++;
	}
	/* 1,000 expected per tenth of the window; allow 15 % */
	for (int b = 0; b < 10; b++)
		cr_assert(buckets[b] > 850 && buckets[b] < 1150, "bucket %d: %d", b, buckets[b]);
	cr_assert_eq(scheduler_jitter(5, 0), 0);
}

Test(scheduler, backoff)
{
	static const struct {
		int failures, base, max, unreach;
		int64_t want;
	} t[] = {
	    {1, 60, 3600, 21600, 60},     {2, 60, 3600, 21600, 120},    {3, 60, 3600, 21600, 240},
	    {4, 60, 3600, 21600, 480},    {4, 60, 300, 21600, 300},     {5, 60, 3600, 21600, 21600},
	    {40, 60, 3600, 21600, 21600}, {2, 3000, 3600, 21600, 3600},
	};
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
		cr_assert_eq(scheduler_backoff(t[i].failures, t[i].base, t[i].max, t[i].unreach),
		             t[i].want, "case %zu", i);
}

Test(scheduler, next_slot_local_window)
{
	/* window 00:15 local (Copenhagen), 0 s long: exactly 00:15 local */
	const struct {
		int64_t now, want;
		const char *what;
	} t[] = {
	    {utc(2024, 1, 10, 12, 0), utc(2024, 1, 10, 23, 15), "winter: 00:15 CET = 23:15 UTC"},
	    {utc(2024, 7, 10, 12, 0), utc(2024, 7, 10, 22, 15), "summer: 00:15 CEST = 22:15 UTC"},
	    {utc(2024, 3, 30, 12, 0), utc(2024, 3, 30, 23, 15), "night into the spring change"},
	    {utc(2024, 3, 31, 12, 0), utc(2024, 3, 31, 22, 15), "day after the spring change"},
	    {utc(2024, 10, 26, 12, 0), utc(2024, 10, 26, 22, 15), "night into the autumn change"},
	    {utc(2024, 10, 27, 12, 0), utc(2024, 10, 27, 23, 15), "day after the autumn change"},
	};
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
		cr_assert_eq(scheduler_next_slot(t[i].now, 1, 15, 1, 3600), t[i].want, "%s",
		             t[i].what);
	/* too close to the next slot: the day after */
	cr_assert_eq(scheduler_next_slot(utc(2024, 1, 10, 23, 0), 1, 15, 1, 3600),
	             utc(2024, 1, 11, 23, 15));
	/* jitter lands inside a window (the one open now or the next), at
	 * least the gap away, and in the window's first day at the latest */
	int64_t now = utc(2024, 1, 10, 12, 0);
	for (int32_t id = 1; id < 200; id++) {
		int64_t s = scheduler_next_slot(now, id, 15, 72000, 3600);
		cr_assert(s > now + 3600);
		cr_assert((s - utc(2024, 1, 9, 23, 15)) % 86400 < 72000, "id %d", id);
		cr_assert(s < utc(2024, 1, 10, 23, 15) + 72000);
	}
}

Test(scheduler, parse_pointers)
{
	struct session_meter m;
	memset(&m, 0, sizeof(m));
	cr_assert_eq(scheduler_parse_pointers("profile=1700000000,events:0=1690000000,events:7=5,"
	                                      "billing=1698796800,events:4=",
	                                      &m),
	             0);
	cr_assert_eq(m.ptr_profile, 1700000000);
	cr_assert_eq(m.ptr_billing, 1698796800);
	cr_assert_eq(m.ptr_events[0], 1690000000);
	cr_assert_eq(m.ptr_events[4], 5); /* events:7 is the fifth log */
	cr_assert_eq(m.ptr_events[1], STORE_NULL);
	cr_assert_eq(m.ptr_events[3], STORE_NULL); /* empty value: never read */
	cr_assert_eq(scheduler_parse_pointers(NULL, &m), 0);
	cr_assert_eq(m.ptr_profile, STORE_NULL);
	cr_assert_eq(scheduler_parse_pointers("garbage", &m), -1);
}

Test(scheduler, parse_gaps)
{
	struct session_meter m;
	memset(&m, 0, sizeof(m));
	cr_assert_eq(scheduler_parse_gaps("100-1000,2000-2900", &m), 0);
	cr_assert_eq(m.ngaps, 2);
	cr_assert_eq(m.gaps[1].from, 2000);
	cr_assert_eq(m.gaps[1].to, 2900);
	cr_assert_eq(scheduler_parse_gaps("", &m), 0);
	cr_assert_eq(m.ngaps, 0);
	cr_assert_eq(scheduler_parse_gaps("5-5", &m), -1);
	/* more holes than a session asks for: the first SESSION_MAX_GAPS */
	char many[2048] = "";
	for (int i = 0; i < SESSION_MAX_GAPS + 5; i++)
		sprintf(many + strlen(many), "%s%d-%d", i ? "," : "", i * 10, i * 10 + 5);
	cr_assert_eq(scheduler_parse_gaps(many, &m), 0);
	cr_assert_eq(m.ngaps, SESSION_MAX_GAPS);
}
