/*
 * faults.h: the simulator's fault injection.  A fault set says, per kind,
 * how likely the fault is at each chance it gets (a connection attempt, a
 * response, a byte, an association) and, for a delay, how long.  One set
 * applies fleet-wide; single meters may have their own, which replaces the
 * fleet's for them.  Sets are parsed from a short text (the --faults
 * option and the control socket's `fault` command) and changed at run
 * time.  Decisions come from a per-connection random stream seeded from
 * (fleet seed, meter, connection number), so a run with the same seed and
 * the same traffic fires the same faults.
 *
 * Spec: comma-separated items KIND[=VALUE][@SERIAL]; VALUE is a
 * probability 0..1 (default 1), except for delay and stall where it is
 * milliseconds (default 1000; a stall holds the answer that long, then
 * drops the connection).  @SERIAL scopes one item to one meter.
 * "none" clears.  Example: "corrupt=0.001,refuse@12345678,delay=200".
 */
#ifndef SIM_FAULTS_H
#define SIM_FAULTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum fault_kind {
	FAULT_REFUSE = 0, /* per connection attempt: reset at once */
	FAULT_DROP,       /* per response: close instead of answering */
	FAULT_STALL,      /* per response: never answer (ms: then close) */
	FAULT_DELAY,      /* every response is held ms */
	FAULT_CORRUPT,    /* per byte sent: one bit flipped */
	FAULT_TRUNCATE,   /* per response: only part of it is sent */
	FAULT_ABORT,      /* per request: the association is dropped
	                     (wrapper: connection closed; HDLC: DM) */
	FAULT_IC_REPLAY,  /* per association: the invocation counter repeats */
	FAULT_IC_RESET,   /* per association: the counter starts again at 0 */
	FAULT_BUSY,       /* per request at a gateway: busy answer */
	FAULT_NOANSWER,   /* per M-Bus request: the slave stays silent */
	FAULT_COLLISION,  /* per M-Bus request: a second slave answers too */
	FAULT_PLAIN,      /* per connection: security off, mechanism none only,
	                     no ciphering, any client (a downgrade) */
	FAULT_N
};

struct fault_set {
	float p[FAULT_N];  /* probability per chance (0: off) */
	uint32_t delay_ms; /* FAULT_DELAY */
	uint32_t stall_ms; /* FAULT_STALL */
};

/* A fleet's faults: the fleet-wide set and a sparse per-meter table. */
struct faults {
	struct fault_set fleet;
	struct fault_meter {
		uint32_t index;
		struct fault_set set;
	} * m;
	size_t n, cap;
	uint64_t fired[FAULT_N]; /* counters, updated atomically */
};

/* A decision stream for one connection. */
struct fault_rng {
	uint64_t s;
};

const char *fault_name(unsigned kind);

/* Empty (no faults). */
void faults_init(struct faults *f);
void faults_free(struct faults *f);

/*
 * Apply a spec.  serial_to_index maps @SERIAL to a meter index (< 0: no
 * such meter); items without @SERIAL change the fleet set, with one the
 * meter's (created from an empty set).  "none" alone clears the fleet set
 * and every meter's; "none@SERIAL" that meter's.  Returns 0, or
 * METER_EMALFORMED / METER_ENOTFOUND / METER_ENOSPC with a message in err;
 * a rejected spec changes nothing (not even its good items).  Delays and
 * stalls are at most an hour.
 */
typedef int64_t (*fault_lookup_fn)(void *arg, uint32_t serial);
int faults_apply(struct faults *f, const char *spec, fault_lookup_fn lookup, void *arg, char *err,
                 size_t errlen);

/* The set in force for meter `index`. */
const struct fault_set *faults_for(const struct faults *f, uint32_t index);

/* Text form of a set ("corrupt=0.001,delay=200"; "none"). */
void faults_format(const struct fault_set *s, char *buf, size_t cap);

void fault_rng_init(struct fault_rng *r, uint64_t seed, uint32_t index, uint64_t conn);
double fault_rng_u01(struct fault_rng *r);

/* Does fault `kind` fire now?  Counts it in f->fired when it does. */
bool fault_fire(struct faults *f, const struct fault_set *s, struct fault_rng *r, unsigned kind);

/* Flip one bit in each byte of p[0..n) that FAULT_CORRUPT picks; returns
 * how many bytes were changed (counted as fired). */
size_t fault_corrupt(struct faults *f, const struct fault_set *s, struct fault_rng *r, uint8_t *p,
                     size_t n);

#endif
