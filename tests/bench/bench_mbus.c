/*
 * bench_mbus.c: M-Bus decode throughput over the frame corpus
 * (the .hex files in vectors/mbus/frames, or under $AMM_VECTORS): frame parse, header and
 * every record decoded with its value, the work `ammctl decode mbus` and
 * the driver do per telegram.  Prints the median of five runs in
 * telegrams/s and records/s beside DESIGN §9's figure for an established
 * C library (0.3 M telegrams/s).
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mbus.h"

#define MAXF 256
#define RUNS 5

static uint8_t frames[MAXF][MBUS_FRAME_MAX];
static size_t flen[MAXF];

static int
load(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	int n = 0;
	if (d == NULL)
		return -1;
	while ((de = readdir(d)) != NULL && n < MAXF) {
		size_t l = strlen(de->d_name);
		if (l < 5 || strcmp(de->d_name + l - 4, ".hex") != 0)
			continue;
		char path[8192];
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		FILE *f = fopen(path, "r");
		if (f == NULL)
			continue;
		unsigned v;
		size_t k = 0;
		while (k < MBUS_FRAME_MAX && fscanf(f, "%x", &v) == 1)
			frames[n][k++] = (uint8_t)v;
		fclose(f);
		flen[n++] = k;
	}
	closedir(d);
	return n;
}

static double
now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int
cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

int
main(void)
{
	const char *v = getenv("AMM_VECTORS");
	char dir[4096];
	snprintf(dir, sizeof(dir), "%s/mbus/frames", v && *v ? v : "../shared/vectors");
	int n = load(dir);
	if (n <= 0) {
		fprintf(stderr, "bench_mbus: no frames in %s\n", dir);
		return 1;
	}

	double tps[RUNS], rps[RUNS];
	volatile double sink = 0;
	for (int run = 0; run < RUNS; run++) {
		long tel = 0, recs = 0;
		double t0 = now(), t1;
		do {
			for (int rep = 0; rep < 1000; rep++)
				for (int i = 0; i < n; i++) {
					struct mbus_frame f;
					struct mbus_telegram t;
					struct mbus_iter it;
					struct mbus_record r;
					if (mbus_frame_parse(frames[i], flen[i], &f) <= 0 ||
					    mbus_telegram_decode(&f, &t) < 0)
						continue;
					tel++;
					if (t.kind == MBUS_TG_FIXED) {
						for (int k = 0; k < 2; k++)
							if (mbus_fixed_record(&t, k, &r) == 0)
								sink += r.value, recs++;
						continue;
					}
					mbus_iter_init(&it, &t);
					while (mbus_records_next(&it, &r) > 0) {
						sink += r.value;
						recs++;
					}
				}
			t1 = now();
		} while (t1 - t0 < 0.5);
		tps[run] = tel / (t1 - t0);
		rps[run] = recs / (t1 - t0);
	}
	qsort(tps, RUNS, sizeof(double), cmp);
	qsort(rps, RUNS, sizeof(double), cmp);
	printf("mbus decode: %d corpus frames, median of %d runs: %.2f M telegrams/s, "
	       "%.1f M records/s (established C library, DESIGN §9: 0.3 M telegrams/s; "
	       "ratio %.1fx)\n",
	       n, RUNS, tps[RUNS / 2] / 1e6, rps[RUNS / 2] / 1e6, tps[RUNS / 2] / 0.3e6);
	return sink == -1 ? 2 : 0;
}
