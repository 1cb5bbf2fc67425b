/*
 * test_metrics.c: the metrics registry (daemon/metrics.c) and its
 * Prometheus text rendering: exact output for counters, gauges and
 * histograms with labels, escaping of label values and help text, number
 * formatting, and registration rules.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"

/* Render reg into a malloc'd string (caller frees). */
static char *
render(struct metrics *reg)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	cr_assert_not_null(f);
	cr_assert_eq(metrics_render(reg, f), 0);
	fclose(f);
	return buf;
}

Test(metrics, counter_with_labels)
{
	struct metrics *reg = metrics_new();
	struct metric *m = metrics_counter(reg, "ammd_sessions_total", "Sessions by outcome.",
	    "transport,outcome");
	char *out;

	metric_inc(m, "tcpip", "ok");
	metric_inc(m, "tcpip", "ok");
	metric_add(m, 3, "gprs", "timeout");
	metric_add(m, -5, "gprs", "timeout"); /* counters never go down */
	cr_assert_eq(metric_value(m, "tcpip", "ok"), 2);
	cr_assert_eq(metric_value(m, "gprs", "timeout"), 3);
	cr_assert_eq(metric_value(m, "mbus", "ok"), 0);
	out = render(reg);
	cr_assert_str_eq(out, "# HELP ammd_sessions_total Sessions by outcome.\n"
			      "# TYPE ammd_sessions_total counter\n"
			      "ammd_sessions_total{transport=\"tcpip\",outcome=\"ok\"} 2\n"
			      "ammd_sessions_total{transport=\"gprs\",outcome=\"timeout\"} 3\n");
	free(out);
	metrics_free(reg);
}

Test(metrics, escaping)
{
	struct metrics *reg = metrics_new();
	struct metric *m = metrics_gauge(reg, "x_info", "Help with \\ and\nnewline \"quoted\".",
	    "v");
	char *out;

	metric_set(m, 1, "a\"b\\c\nd");
	metric_set(m, 2, NULL); /* a NULL value is the empty string */
	out = render(reg);
	cr_assert_str_eq(out, "# HELP x_info Help with \\\\ and\\nnewline \"quoted\".\n"
			      "# TYPE x_info gauge\n"
			      "x_info{v=\"a\\\"b\\\\c\\nd\"} 1\n"
			      "x_info{v=\"\"} 2\n");
	free(out);
	metrics_free(reg);
}

Test(metrics, unlabelled_families_start_at_zero)
{
	struct metrics *reg = metrics_new();
	struct metric *g = metrics_gauge(reg, "queue_depth", "Depth.", NULL);
	char *out;

	metrics_counter(reg, "events_total", "Events.", NULL);
	metrics_counter(reg, "by_kind_total", "By kind.", "kind");
	metric_gauge_add(g, 5);
	metric_gauge_add(g, -2);
	out = render(reg);
	cr_assert_str_eq(out, "# HELP queue_depth Depth.\n# TYPE queue_depth gauge\nqueue_depth 3\n"
			      "# HELP events_total Events.\n# TYPE events_total counter\nevents_total 0\n"
			      "# HELP by_kind_total By kind.\n# TYPE by_kind_total counter\n");
	free(out);
	metrics_free(reg);
}

Test(metrics, histogram)
{
	static const double bounds[] = {0.005, 0.1, 1, 2.5};
	struct metrics *reg = metrics_new();
	struct metric *h = metrics_histogram(reg, "store_latency_seconds", "Store latency.", "op",
	    bounds, 4);
	char *out;

	cr_assert_not_null(h);
	metric_observe(h, 0.001, "copy");
	metric_observe(h, 0.1, "copy"); /* on a bound: counted in that bucket */
	metric_observe(h, 0.5, "copy");
	metric_observe(h, 7, "copy");
	metric_observe(h, NAN, "copy"); /* ignored */
	cr_assert_eq(metric_value(h, "copy"), 4);
	out = render(reg);
	cr_assert_str_eq(out, "# HELP store_latency_seconds Store latency.\n"
			      "# TYPE store_latency_seconds histogram\n"
			      "store_latency_seconds_bucket{op=\"copy\",le=\"0.005\"} 1\n"
			      "store_latency_seconds_bucket{op=\"copy\",le=\"0.1\"} 2\n"
			      "store_latency_seconds_bucket{op=\"copy\",le=\"1\"} 3\n"
			      "store_latency_seconds_bucket{op=\"copy\",le=\"2.5\"} 3\n"
			      "store_latency_seconds_bucket{op=\"copy\",le=\"+Inf\"} 4\n"
			      "store_latency_seconds_sum{op=\"copy\"} 7.601\n"
			      "store_latency_seconds_count{op=\"copy\"} 4\n");
	free(out);
	metrics_free(reg);
}

Test(metrics, empty_unlabelled_histogram)
{
	static const double bounds[] = {1};
	struct metrics *reg = metrics_new();
	char *out;

	metrics_histogram(reg, "h", "H.", NULL, bounds, 1);
	out = render(reg);
	cr_assert_str_eq(out, "# HELP h H.\n# TYPE h histogram\n"
			      "h_bucket{le=\"1\"} 0\nh_bucket{le=\"+Inf\"} 0\nh_sum 0\nh_count 0\n");
	free(out);
	metrics_free(reg);
}

struct num_case {
	double v;
	const char *text;
};

static const struct num_case num_cases[] = {
	{0, "0"},	     {42, "42"},	 {-3, "-3"},	   {0.1, "0.1"},
	{1.5e-7, "1.5e-07"}, {1e20, "1e+20"},	 {123456789012, "123456789012"},
	{1.0 / 3, "0.33333333333333331"},
};

Test(metrics, number_formatting)
{
	char want[128];

	for (size_t i = 0; i < sizeof(num_cases) / sizeof(num_cases[0]); i++) {
		struct metrics *reg = metrics_new();
		struct metric *g = metrics_gauge(reg, "g", "G.", NULL);
		char *out;

		metric_set(g, num_cases[i].v);
		out = render(reg);
		snprintf(want, sizeof(want), "# HELP g G.\n# TYPE g gauge\ng %s\n", num_cases[i].text);
		cr_assert_str_eq(out, want);
		free(out);
		metrics_free(reg);
	}

	struct metrics *reg = metrics_new();
	struct metric *g = metrics_gauge(reg, "g", "G.", "k");
	metric_set(g, NAN, "nan");
	metric_set(g, INFINITY, "inf");
	metric_set(g, -INFINITY, "ninf");
	char *out = render(reg);
	cr_assert_str_eq(out, "# HELP g G.\n# TYPE g gauge\n"
			      "g{k=\"nan\"} NaN\ng{k=\"inf\"} +Inf\ng{k=\"ninf\"} -Inf\n");
	free(out);
	metrics_free(reg);
}

Test(metrics, registration_rules)
{
	static const double good[] = {1, 2};
	static const double unsorted[] = {2, 1};
	static const double inf[] = {1, INFINITY};
	struct metrics *reg = metrics_new();
	struct metric *a = metrics_counter(reg, "a_total", "A.", "x,y");

	cr_assert_not_null(a);
	cr_assert_eq(metrics_counter(reg, "a_total", "A again.", "x,y"), a);
	cr_assert_null(metrics_counter(reg, "a_total", "A.", "x"));
	cr_assert_null(metrics_gauge(reg, "a_total", "A.", "x,y"));
	cr_assert_null(metrics_counter(reg, "9bad", "", NULL));
	cr_assert_null(metrics_counter(reg, "bad-name", "", NULL));
	cr_assert_null(metrics_counter(reg, "", "", NULL));
	cr_assert_null(metrics_counter(reg, "b", "", "le"));
	cr_assert_null(metrics_counter(reg, "b", "", "__x"));
	cr_assert_null(metrics_counter(reg, "b", "", "x,x"));
	cr_assert_null(metrics_counter(reg, "b", "", "a-b"));
	cr_assert_null(metrics_counter(reg, "b", "", "a,b,c,d,e,f,g,h,i"));
	cr_assert_not_null(metrics_counter(reg, "ns:b_total", "", "a, b"));
	cr_assert_null(metrics_histogram(reg, "h1", "", NULL, unsorted, 2));
	cr_assert_null(metrics_histogram(reg, "h2", "", NULL, inf, 2));
	cr_assert_not_null(metrics_histogram(reg, "h3", "", NULL, good, 2));

	/* Wrong kind of update, or a NULL family: nothing happens. */
	metric_set(metrics_histogram(reg, "h3", "", NULL, good, 2), 5);
	metric_observe(a, 1, "p", "q");
	metric_inc(NULL);
	cr_assert_eq(metric_value(a, "p", "q"), 0);
	metrics_free(reg);
}

static void
collector(struct metrics *reg, void *arg)
{
	(void)reg;
	metric_set(arg, 7);
}

Test(metrics, collectors_run_before_rendering)
{
	struct metrics *reg = metrics_new();
	struct metric *g = metrics_gauge(reg, "depth", "D.", NULL);
	char *out;

	metrics_collector_add(reg, collector, g);
	cr_assert_eq(metric_value(g), 0);
	out = render(reg);
	cr_assert_not_null(strstr(out, "\ndepth 7\n"));
	free(out);
	metrics_free(reg);
}

Test(metrics, process_metrics)
{
	struct metrics *reg = metrics_new();
	char *out;
	double rss = 0, fds = 0;
	const char *p;

	metrics_process_register(reg);
	out = render(reg);
	cr_assert_not_null(strstr(out, "# TYPE process_cpu_seconds_total counter\n"));
	cr_assert_not_null(p = strstr(out, "\nprocess_resident_memory_bytes "));
	rss = strtod(p + 31, NULL);
	cr_assert_gt(rss, 100000);
	cr_assert_not_null(p = strstr(out, "\nprocess_open_fds "));
	fds = strtod(p + 18, NULL);
	cr_assert_geq(fds, 3);
	cr_assert_not_null(strstr(out, "\nprocess_start_time_seconds 1"));
	free(out);
	metrics_free(reg);
}
