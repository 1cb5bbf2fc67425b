/*
 * test_log.c: the daemon's log lines (daemon/log.c): the syslog priority
 * prefix journald reads, the "meter SERIAL:" form, level filtering, errno
 * text, and that a message cannot forge a second line.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

/* Run fn with stderr captured; returns what was written. */
static char captured[4096];

static const char *
capture(void (*fn)(void))
{
	int p[2], saved = dup(STDERR_FILENO);
	ssize_t n;

	cr_assert_eq(pipe(p), 0);
	dup2(p[1], STDERR_FILENO);
	close(p[1]);
	fn();
	dup2(saved, STDERR_FILENO);
	close(saved);
	n = read(p[0], captured, sizeof(captured) - 1);
	close(p[0]);
	captured[n > 0 ? n : 0] = '\0';
	return captured;
}

static void
lines_at_info(void)
{
	log_init(false, LOG_INFO);
	log_warnx("plain %d", 1);
	log_info("info");
	log_debug("hidden");
	log_notice("notice");
	errno = ENOENT;
	log_warn("open %s", "x");
	log_meter(LOG_WARNING, "57000123", "association refused (%s)", "auth");
	log_meter(LOG_INFO, NULL, "unidentified");
	log_meter(LOG_ERR, "", "empty serial");
	logit(LOG_ERR, "two\nlines");
}

Test(log, prefixes_meter_lines_and_filtering)
{
	cr_assert_str_eq(capture(lines_at_info),
	    "<4>plain 1\n"
	    "<6>info\n"
	    "<5>notice\n"
	    "<4>open x: No such file or directory\n"
	    "<4>meter 57000123: association refused (auth)\n"
	    "<6>meter ?: unidentified\n"
	    "<3>meter ?: empty serial\n"
	    "<3>two lines\n");
}

static void
lines_at_debug(void)
{
	log_init(false, LOG_ERR);
	log_warnx("hidden");
	log_setlevel(LOG_DEBUG);
	log_debug("shown");
	log_setlevel(99); /* clamped to debug */
	cr_assert_eq(log_getlevel(), LOG_DEBUG);
}

Test(log, setlevel)
{
	cr_assert_str_eq(capture(lines_at_debug), "<7>shown\n");
}

static void
long_line(void)
{
	char big[5000];
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	log_init(false, LOG_INFO);
	log_info("%s", big);
}

Test(log, long_message_is_truncated_to_one_line)
{
	const char *out = capture(long_line);
	size_t n = strlen(out);

	cr_assert_gt(n, 1000);
	cr_assert_lt(n, 2100);
	cr_assert_eq(strncmp(out, "<6>aaa", 6), 0);
	cr_assert_eq(out[n - 1], '\n');
	cr_assert_null(memchr(out, '\n', n - 1));
}

struct level_case {
	const char *name;
	int level;
};

static const struct level_case level_cases[] = {
	{"err", LOG_ERR},     {"error", LOG_ERR},   {"warning", LOG_WARNING}, {"warn", LOG_WARNING},
	{"notice", LOG_NOTICE}, {"info", LOG_INFO}, {"debug", LOG_DEBUG},     {"loud", -1},
	{"", -1},	      {"INFO", LOG_INFO},
};

Test(log, level_names)
{
	for (size_t i = 0; i < sizeof(level_cases) / sizeof(level_cases[0]); i++)
		cr_assert_eq(log_level_parse(level_cases[i].name), level_cases[i].level, "%s",
		    level_cases[i].name);
	cr_assert_str_eq(log_level_name(LOG_WARNING), "warning");
	cr_assert_str_eq(log_level_name(42), "unknown");
}
