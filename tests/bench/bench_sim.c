/*
 * bench_sim.c: what the simulator's model costs — time and memory to
 * create a 100,000-meter fleet (the budget is 2 KiB per idle meter), and
 * how fast `expect` produces ground truth: load-profile intervals per
 * second, full register sets (with per-tariff sums since installation)
 * per second, and events per second.  Median of three runs each.
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>

#include "../sim/model.h"

#define RUNS 3
#define METERS 100000
#define DAY 86400

static double
now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static long
rss_kib(void)
{
	/* current resident set from /proc; ru_maxrss only grows */
	FILE *f = fopen("/proc/self/statm", "r");
	long pages = 0, res = 0;
	if (f) {
		if (fscanf(f, "%ld %ld", &pages, &res) != 2)
			res = 0;
		fclose(f);
	}
	return res * 4;
}

static int
cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double
median(double v[RUNS])
{
	qsort(v, RUNS, sizeof(v[0]), cmp_d);
	return v[RUNS / 2];
}

static void
count_cb(void *arg, const struct sim_interval *iv)
{
	unsigned long *n = arg;
	*n += iv->e[SIM_AP] != 0xffffffffu;
}

int
main(void)
{
	struct sim_fleet_cfg cfg = {1, METERS, 900, cosem_days_from_civil(2024, 1, 1) * DAY,
				    COSEM_TZ_CPH};
	double create[RUNS], rss[RUNS], ivs[RUNS], regs[RUNS], evs[RUNS];
	for (int r = 0; r < RUNS; r++) {
		long before = rss_kib();
		double t0 = now();
		struct sim_fleet *f = sim_fleet_new(&cfg);
		double t1 = now();
		if (!f) {
			fprintf(stderr, "bench_sim: fleet creation failed\n");
			return 1;
		}
		create[r] = t1 - t0;
		rss[r] = (double)(rss_kib() - before) * 1024 / METERS;

		/* 30 days of 15-minute profile for 200 meters */
		int64_t from = cosem_days_from_civil(2024, 3, 1) * DAY, to = from + 30 * DAY;
		unsigned long n = 0;
		t0 = now();
		for (uint32_t i = 0; i < 200; i++) {
			struct sim_meter m;
			sim_meter_load(f, i * 397 % METERS, &m);
			sim_intervals(&m, from, to, count_cb, &n);
		}
		ivs[r] = (double)n / (now() - t0);

		/* register sets a year after installation */
		t0 = now();
		for (uint32_t i = 0; i < 200; i++) {
			struct sim_meter m;
			struct sim_registers rg;
			sim_meter_load(f, i * 397 % METERS, &m);
			sim_registers(&m, from + 300 * DAY, &rg);
		}
		regs[r] = 200 / (now() - t0);

		/* a year of events for 200 meters */
		size_t ne = 0;
		t0 = now();
		for (uint32_t i = 0; i < 200; i++) {
			struct sim_meter m;
			struct sim_evbuf b = {0};
			sim_meter_load(f, i * 397 % METERS, &m);
			events_range(&m, from, from + 365 * DAY, &b);
			ne += b.n;
			events_free(&b);
		}
		evs[r] = (double)ne / (now() - t0);
		sim_fleet_free(f);
	}
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	printf("bench_sim: fleet of %d meters created in %.3f s, %.0f bytes RSS per meter "
	       "(budget 2048; struct sim_state %zu bytes), peak RSS %ld KiB\n",
	       METERS, median(create), median(rss), sizeof(struct sim_state), ru.ru_maxrss);
	printf("bench_sim: expect: %.0f intervals/s (4 quadrants + status), %.0f register sets/s "
	       "(totals + 8 tariffs x 4 quadrants, ~1 year since installation), %.0f events/s\n",
	       median(ivs), median(regs), median(evs));
	return 0;
}
