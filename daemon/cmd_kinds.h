/*
 * cmd_kinds.h: what each operator command kind means (DESIGN §4, §6,
 * issue 7): its parameters, checked before anything is sent, and its DLMS
 * plan, run as a small sans-I/O step machine over an associated
 * dlms_client that a session drives.  Every plan reads the state before,
 * acts, reads the state back and verifies, and the result JSON carries
 * both readings:
 *
 *	{"before": {...}, "after": {...}, "applied": true, "note": "..."}
 *
 * Parameters are one JSON object (command.params); cmdk_parse() accepts
 * exactly the keys listed in the README's "Commands" section and fails with
 * a message naming the key and the reason.
 *
 * Driving a run (the session, or a test against an in-process server):
 *
 *	cmdk_run_init(&r, &params, progress_from_earlier_attempt_or_NULL);
 *	for (;;) {
 *		st = cmdk_run_next(&r, client, &out, now_ms);
 *		CMDK_SENT:       write out, feed the engine, and give every
 *		                 RESULT and DONE event to cmdk_run_event(); after
 *		                 DONE call cmdk_run_next() again
 *		CMDK_CHECKPOINT: the run is about to send its first request
 *		                 that changes the meter: store
 *		                 cmdk_run_progress() (may be NULL) with the
 *		                 command (durably: committed) and take the
 *		                 kind's rate-cap slot (command.c) before
 *		                 calling next again; at most once per run,
 *		                 never for a run that sends no such request
 *		CMDK_FINISHED:   cmdk_run_ok(), cmdk_run_result(), cmdk_run_error()
 *	}
 *	cmdk_run_free(&r);
 *
 * The checkpoint exists for credit_add, the one kind that is not
 * idempotent on the meter: see cmd_kinds.c for why storing the credit and
 * energy baseline before the top-up makes it apply exactly once.
 */
#ifndef AMM_CMD_KINDS_H
#define AMM_CMD_KINDS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bytes.h"
#include "dlms_client.h"
#include "obis.h"

struct config;

enum cmdk_kind {
	CMDK_DISCONNECT,
	CMDK_RECONNECT,
	CMDK_CREDIT_ADD,
	CMDK_CREDIT_SET,
	CMDK_PAYMENT_MODE,
	CMDK_TARIFF_CALENDAR,
	CMDK_TARIFF_FORCE,
	CMDK_SPECIAL_DAYS,
	CMDK_LIMITER,
	CMDK_CLOCK_SYNC,
	CMDK_READ_NOW,
	CMDK_NKINDS
};

/* "disconnect", ...; NULL out of range.  cmdk_by_name: -1 unknown. */
const char *cmdk_name(int kind);
int cmdk_by_name(const char *name);

/* Rate-cap group of a kind ("credit" for credit_add and credit_set,
 * "tariff" for the calendar, forcing and special days) and its cap per
 * minute from [commands]. */
const char *cmdk_cap_group(int kind);
int cmdk_cap_per_minute(const struct config *cfg, int kind);

/* Bounds the validation enforces (Kamstrup 382M / simulator limits). */
#define CMDK_MAX_TARIFFS    8
#define CMDK_MAX_SEASONS    4
#define CMDK_MAX_WEEKS      4
#define CMDK_MAX_DAYS       8
#define CMDK_MAX_ACTIONS    8
#define CMDK_MAX_SPECIAL    100
#define CMDK_MAX_REGISTERS  32
#define CMDK_MAX_LOGS       8
#define CMDK_CREDIT_MAX_WH  100000000 /* 100 MWh: more is a typo */
#define CMDK_CREDIT_MIN_ADD 10        /* Wh: below this a top-up cannot be told from noise */
#define CMDK_LIMIT_MAX_W    250000
#define CMDK_DURATION_MAX_S 86400
#define CMDK_TXID_MAX       64

enum cmdk_reconnect_mode { CMDK_RECONNECT_REMOTE, CMDK_RECONNECT_RELEASE };

struct cmdk_season {
	char name[9];
	uint8_t month, day;
	uint8_t week; /* index into weeks */
};
struct cmdk_week {
	char name[9];
	uint8_t day[7]; /* day ids, Monday first */
};
struct cmdk_action {
	uint8_t hour, minute;
	uint8_t tariff; /* 1..8 */
};
struct cmdk_day {
	uint8_t id;
	uint8_t n;
	struct cmdk_action a[CMDK_MAX_ACTIONS];
};
struct cmdk_special {
	uint16_t year; /* 0xffff: every year */
	uint8_t month, day, day_id;
};

/* Parsed and checked parameters of one command. */
struct cmdk_params {
	int kind;
	union {
		struct {
			int mode;         /* enum cmdk_reconnect_mode */
			int control_mode; /* -1: leave it */
		} reconnect;
		struct {
			int64_t amount_wh;
			char txid[CMDK_TXID_MAX + 1];
		} credit;
		struct {
			int mode; /* 1 credit, 2 prepayment (class 111 payment_mode) */
		} payment;
		struct {
			char name[9];
			uint8_t n_seasons, n_weeks, n_days;
			struct cmdk_season season[CMDK_MAX_SEASONS];
			struct cmdk_week week[CMDK_MAX_WEEKS];
			struct cmdk_day day[CMDK_MAX_DAYS];
			int64_t activate_at; /* UTC s; 0: activate now */
		} calendar;
		struct {
			uint8_t tariff;
		} force;
		struct {
			uint8_t n;
			struct cmdk_special d[CMDK_MAX_SPECIAL];
		} special;
		struct {
			int64_t normal_w, emergency_w, min_over_s, min_under_s; /* -1: leave */
		} limiter;
		struct {
			int64_t max_step_s; /* refuse to move the clock further (0: no limit) */
		} clock;
		struct {
			uint8_t n_registers;
			struct obis registers[CMDK_MAX_REGISTERS];
			bool profile;
			struct obis profile_obis;
			int64_t from, to; /* UTC s */
			uint8_t n_logs;
			uint8_t logs[CMDK_MAX_LOGS]; /* E of 0-0:99.98.E.255 */
		} read;
	} u;
};

/*
 * Parse and check params_json (NULL or "" is {}) for kind.  Returns 0, or
 * METER_EINVAL with a sentence in err ("tariff_calendar: days[0].actions[1]:
 * tariff 9 out of 1..8").  `now` (UTC s) bounds activation times.
 */
int cmdk_parse(int kind, const char *params_json, int64_t now, struct cmdk_params *p, char *err,
               size_t errlen);

/* A key identifying a credit_add's operator transaction (its txid), for
 * command.idempotency_key; NULL for other kinds. */
const char *cmdk_idempotency_key(const struct cmdk_params *p);

/* ---- the step machine --------------------------------------------------------- */

enum cmdk_status {
	CMDK_SENT = 1,       /* a request is on the engine: feed it events */
	CMDK_CHECKPOINT = 2, /* persist cmdk_run_progress(), take the slot, then next */
	CMDK_FINISHED = 3,   /* see cmdk_run_ok() */
};

/* read_now: each register's value and scaler_unit, a profile, the logs */
#define CMDK_MAX_READS (2 * CMDK_MAX_REGISTERS + 1 + CMDK_MAX_LOGS)
#define CMDK_MAX_ACTS  8

struct cmdk_read {
	const char *name;
	struct dlms_get_item item;
	uint8_t *before, *after; /* tagged Data, malloc'd; NULL: not read */
	size_t before_len, after_len;
	uint8_t dar; /* last data-access-result (0 success) */
	bool aux;    /* read for storing only (a scaler_unit), not in the result */
};

struct cmdk_act {
	const char *name;
	int op; /* DLMS_OP_SET or DLMS_OP_ACTION */
	struct xdlms_desc desc;
	uint8_t *value; /* malloc'd tagged Data (NULL: ACTION without parameters) */
	size_t len;
	bool skip;
};

/* One execution of one command.  Plain struct so sessions can embed it;
 * it must not move while a request is on the engine (the engine keeps
 * pointers to items and range).  Treat the members as private. */
struct cmdk_run {
	struct cmdk_params p;
	int phase;
	bool retry_seen;               /* progress from an earlier attempt */
	double pre_credit, pre_energy; /* credit_add baseline (Wh) */
	bool have_pre;
	bool already; /* nothing to do: the meter was there already */
	bool applied_earlier;
	bool gated; /* the checkpoint before the first act was given */
	unsigned n_reads, n_acts, cur_act;
	struct cmdk_read reads[CMDK_MAX_READS];
	struct dlms_get_item items[CMDK_MAX_READS]; /* what the engine is given */
	struct cmdk_act acts[CMDK_MAX_ACTS];
	struct xdlms_access range; /* read_now profile range */
	uint8_t range_buf[96];
	int64_t clock_now;    /* clock_sync: UTC s written */
	int64_t clock_before; /* meter's clock before, UTC s */
	bool failed;
	char error[256];
	char note[160];
	char *progress; /* JSON, malloc'd */
	char *result;   /* JSON, malloc'd */
	int req_err;    /* of the request in flight */
	uint8_t req_dar;
};

/* Plan the run.  progress: what cmdk_run_progress() returned in an
 * earlier attempt of the same command (NULL: none).  Returns 0 or
 * METER_ENOSPC. */
int cmdk_run_init(struct cmdk_run *r, const struct cmdk_params *p, const char *progress);

/* Issue the next request on c (READY) into out, or report a checkpoint or
 * the end.  now_ms: wall clock, UTC (clock_sync writes it). */
int cmdk_run_next(struct cmdk_run *r, struct dlms_client *c, struct mbuf *out, int64_t now_ms);

/* A RESULT or DONE event of the request this run issued. */
void cmdk_run_event(struct cmdk_run *r, const struct dlms_client_event *ev);

/* The session lost the meter (link, timeout): the run fails with why. */
void cmdk_run_abort(struct cmdk_run *r, const char *why);

bool cmdk_run_ok(const struct cmdk_run *r);
/* JSON result (valid until free; never NULL once finished), error text
 * ("" on success), checkpoint JSON (NULL when none). */
const char *cmdk_run_result(const struct cmdk_run *r);
const char *cmdk_run_error(const struct cmdk_run *r);
const char *cmdk_run_progress(const struct cmdk_run *r);
void cmdk_run_free(struct cmdk_run *r);

/*
 * What a finished read_now read, for the session to store and publish like
 * polled data (registers, load profile, event logs).  Fills the i-th of
 * them and returns true; false past the last one.  Data are tagged A-XDR
 * as the meter sent them (NULL: not read), valid until cmdk_run_free().
 */
enum cmdk_reading_what { CMDK_RD_REGISTER, CMDK_RD_PROFILE, CMDK_RD_EVENTS };
struct cmdk_reading {
	int what; /* enum cmdk_reading_what */
	struct obis obis;
	uint16_t class_id;
	const uint8_t *value; /* register value, profile buffer, log buffer */
	size_t value_len;
	const uint8_t *scaler_unit; /* registers of class 3 and 4; NULL otherwise */
	size_t scaler_unit_len;
};
bool cmdk_run_reading(const struct cmdk_run *r, unsigned i, struct cmdk_reading *out);

/* ---- a small JSON reader (parameters, progress) ----------------------------- */

enum cj_type { CJ_NULL, CJ_BOOL, CJ_NUM, CJ_STR, CJ_ARR, CJ_OBJ };

/* A parsed value; children follow their parent in the array (span = this
 * node and all below it), object members as key string then value. */
struct cj {
	uint8_t type;
	bool b;
	double num;
	const char *s; /* string content, escapes still in (see cj_str) */
	uint32_t n;    /* string bytes, or element / member count */
	uint32_t span;
};

/* Parse text into at most cap nodes; returns the node count or a negative
 * METER_EMALFORMED / METER_ELIMIT. */
int cj_parse(const char *text, struct cj *nodes, size_t cap);
/* Member `key` of an object node, or NULL. */
const struct cj *cj_get(const struct cj *obj, const char *key);
/* The i-th element of an array (or i-th member value of an object). */
const struct cj *cj_at(const struct cj *arr, uint32_t i);
/* String content unescaped into out (NUL-terminated); false if not a
 * string or it does not fit. */
bool cj_str(const struct cj *n, char *out, size_t outlen);

#endif
