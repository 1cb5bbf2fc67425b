/*
 * expect.h: the ground truth of one meter over a time range, in the
 * formats `metersim expect` prints (JSON or CSV records: register,
 * daily, interval, event, billing, billing_peak, analysis).  Shared by
 * the `expect` command, which builds an uncommanded fleet, and the
 * control socket's `expect`, which prints a serving process's meter with
 * everything commands changed (its device journal).
 */
#ifndef SIM_EXPECT_H
#define SIM_EXPECT_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "model.h"

enum {
	EXPECT_REGISTERS = 1,
	EXPECT_INTERVALS = 2,
	EXPECT_EVENTS = 4,
	EXPECT_BILLING = 8,
	EXPECT_DAILY = 16,
	EXPECT_ANALYSIS = 32,
	/* what is printed without --what (the analysis logger is not: the
	 * readers of the CSV predate it) */
	EXPECT_DEFAULT = EXPECT_REGISTERS | EXPECT_INTERVALS | EXPECT_EVENTS | EXPECT_BILLING,
};

struct expect_req {
	int64_t from, to; /* from <= to */
	unsigned what;	  /* EXPECT_* */
	bool csv;
};

/* ISO 8601 (a date, or date-time with Z / +hh:mm / none = UTC) or epoch
 * seconds; 0 or METER_EMALFORMED. */
int expect_parse_time(const char *s, int64_t *out);
/* UTC as 2024-01-01T00:00:00Z; the meter's local time as COSEM prints it. */
char *expect_iso_utc(int64_t t, char buf[32]);
char *expect_iso_local(const struct sim_meter *m, int64_t t, char buf[40]);
/* A comma-separated list of registers,intervals,events,billing,daily,
 * analysis; 0 or METER_EMALFORMED. */
int expect_parse_what(const char *s, unsigned *what);

/* Print the ground truth of m to f.  Returns 0, or METER_ENOSPC when out
 * of memory (output then incomplete). */
int expect_write(FILE *f, const struct sim_meter *m, const struct expect_req *rq);

#endif
