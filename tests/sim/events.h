/*
 * events.h: the simulated meter's event logs.  Events come from two
 * sources: a seeded process (power failures, voltage quality, tamper,
 * clock adjustments, DST changes), which is a pure function of (seed,
 * meter, day) and so enumerable for any time range in O(days + events);
 * and the device journal (breaker, limiter, prepayment, calendar), which
 * records what commands and time-driven behaviour changed.  Each code
 * belongs to exactly one log; each log shows its last 200 entries.
 */
#ifndef SIM_EVENTS_H
#define SIM_EVENTS_H

#include <stddef.h>
#include <stdint.h>

#include "obis.h"

enum sim_log {
	SIM_LOG_STANDARD = 0, /* 0-0:99.98.0.255 */
	SIM_LOG_FRAUD,	      /* 0-0:99.98.1.255 */
	SIM_LOG_DISCONNECTOR, /* 0-0:99.98.2.255 */
	SIM_LOG_VQ,	      /* 0-0:99.98.4.255 */
	SIM_LOG_RTC,	      /* 0-0:99.98.7.255 */
	SIM_NLOG
};

#define SIM_LOG_DEPTH 200

/* Event codes (IDIS numbering where IDIS has one; 2xx are ours). */
enum sim_ev_code {
	EV_POWER_DOWN = 1,
	EV_POWER_UP = 2,
	EV_DST_CHANGE = 3,
	EV_CLOCK_OLD = 4, /* clock adjusted, entry stamped with the old time */
	EV_CLOCK_NEW = 5, /* clock adjusted, entry stamped with the new time */
	EV_TOU_ACTIVATED = 10,
	EV_TOU_PROGRAMMED = 17,
	EV_SPECIAL_DAYS_CHANGED = 22,
	EV_MAGNETIC_ON = 42,
	EV_MAGNETIC_OFF = 43,
	EV_COVER_OPEN = 44,
	EV_COVER_CLOSED = 45,
	EV_MANUAL_DISCONNECT = 59,
	EV_MANUAL_CONNECT = 60,
	EV_REMOTE_DISCONNECT = 61,
	EV_REMOTE_CONNECT = 62,
	EV_LOCAL_DISCONNECT = 63,
	EV_LIMITER_EXCEEDED = 64,
	EV_LIMITER_OK = 65,
	EV_LIMITER_CHANGED = 66,
	EV_READY_FOR_RECONNECT = 67,
	EV_LOCAL_CONNECT = 68,
	EV_CONTROL_MODE_CHANGED = 69,
	EV_UNDERVOLT_L1 = 76, /* +phase-1 */
	EV_OVERVOLT_L1 = 79,
	EV_MISSING_VOLT_L1 = 82,
	EV_VOLT_NORMAL_L1 = 85,
	EV_MISSING_NEUTRAL = 89,
	EV_CREDIT_WARNING = 230,
	EV_CREDIT_EXHAUSTED = 231,
	EV_CREDIT_UPDATED = 232,
	EV_PAYMENT_MODE_CHANGED = 233,
};

struct sim_event {
	int64_t t;     /* UTC seconds */
	uint16_t code; /* enum sim_ev_code */
	uint8_t log;   /* enum sim_log */
};

/* A growable, owned array of events. */
struct sim_evbuf {
	struct sim_event *v;
	size_t n, cap;
};

/* Append (returns 0 or METER_ENOSPC when out of memory). */
int events_push(struct sim_evbuf *b, int64_t t, uint16_t code);
void events_sort(struct sim_evbuf *b);
void events_free(struct sim_evbuf *b);

/* The log a code is written to, its name ("power_down", ...), and a log's
 * name and OBIS code. */
uint8_t events_code_log(uint16_t code);
const char *events_code_name(uint16_t code);
const char *events_log_name(uint8_t log);
struct obis events_log_obis(uint8_t log);

struct sim_meter;

/*
 * Every event of meter m with from < t <= to, seeded and journalled, sorted
 * by (time, log, code), appended to out.  Returns 0 or METER_ENOSPC.
 */
int events_range(const struct sim_meter *m, int64_t from, int64_t to, struct sim_evbuf *out);

/*
 * What log `log` holds at instant `at`: its newest SIM_LOG_DEPTH entries
 * (older ones have been overwritten), oldest first, appended to out.
 */
int events_log(const struct sim_meter *m, uint8_t log, int64_t at, struct sim_evbuf *out);

/* The time of the last seeded clock adjustment at or before t (or the
 * installation time): the meter's drift counts from there. */
int64_t events_last_clock_set(const struct sim_meter *m, int64_t t);

#endif
