/*
 * mbus_bus.h: one wired M-Bus segment behind a transparent TCP gateway
 * (EN 13757-2 over TCP, DESIGN §3).  A bus is half duplex and its slaves
 * answer only when asked, so the driver keeps a queue of transactions and
 * has exactly one request on the wire at a time; readouts, selections and
 * scans queued by different callers take turns in the order they came.
 *
 * A readout of one slave is: SND_NKE (primary) or a selection by secondary
 * address (SND_UD CI 0x52 to 253), then REQ_UD2 with the slave's FCB,
 * toggled after every answer that arrived and kept on a retry (so a slave
 * whose answer we lost sends the same telegram again), again while a
 * telegram ends in DIF 0x1F (more follows), and for secondary addressing
 * a SND_NKE to 253 that deselects the slave.
 *
 * Timeouts follow the line: every byte crosses the bus as 11 bits at the
 * gateway's baud rate, the slave may take 330 bit times + 50 ms to start
 * answering (EN 13757-2), and the gateway adds its own latency.  A request
 * that gets no answer, or an answer that does not parse (a collision of
 * two slaves, noise), is counted and sent again up to `retries` times.
 *
 * The driver knows nothing of the daemon: it takes a libevent base, a
 * host and port and numbers, and hands back the raw frames it read.
 * Frames passed to callbacks are valid only during the callback.
 */
#ifndef AMM_MBUS_BUS_H
#define AMM_MBUS_BUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mbus.h"

struct event_base;
struct mbus_bus;

struct mbus_bus_params {
	const char *host; /* copied */
	uint16_t port;
	int baud;               /* 300 .. 38400; 0: 2400 */
	int latency_ms;         /* the gateway's own delay per exchange; < 0: 100 */
	int reply_ms;           /* the slave's reply time beyond 330 bit times; <= 0: 50 */
	int connect_timeout_ms; /* 0: 5000 */
	int retries;            /* per request, after the first try; < 0: 2 */
	int max_telegrams;      /* per readout (DIF 0x1F chains); 0: 16 */
};

/* How a slave is addressed. */
struct mbus_addr {
	bool secondary;
	uint8_t primary;           /* 1..250 (0 allowed: unconfigured slave) */
	struct mbus_secondary sec; /* when secondary; wildcards allowed */
	bool selected;             /* secondary: already selected, skip the selection */
};

/* Counters over the bus's life (for metrics and `ammctl mbus scan`). */
struct mbus_bus_stats {
	uint64_t requests; /* frames sent, retries included */
	uint64_t retries;
	uint64_t timeouts;   /* requests without any answer */
	uint64_t garbled;    /* answers that did not parse: collisions, noise */
	uint64_t selections; /* secondary-address selections sent */
	uint64_t readouts, failed;
	uint64_t bytes_in, bytes_out;
	uint64_t connects; /* TCP connections established */
	uint64_t late;     /* answers after their timeout, caught in the guard and used */
	uint64_t stray;    /* bytes for no request: an earlier answer, later than the guard */
	uint64_t slack_ms; /* what the bus adds to its timeouts now (learnt, see mbus_bus.c) */
};

/*
 * A readout's result.  status 0: frames[0..len) holds ntelegrams RSP_UD
 * long frames back to back (parse them with mbus_frame_parse()); else a
 * METER_* code: METER_ETIMEOUT (no answer after the retries),
 * METER_ECOLLISION (garbled answers after the retries), METER_EAPPERR (the
 * slave answered with CI 0x70; its frame is in frames), METER_EABORTED
 * (the gateway closed or refused the connection), METER_ECOLLISION also
 * when a secondary selection was answered by several slaves.
 * Valid only during the call.
 */
typedef void (*mbus_read_fn)(int status, const uint8_t *frames, size_t len, size_t ntelegrams,
                             void *arg);

enum mbus_probe_result {
	MBUS_PROBE_NONE = 0,      /* no slave matched */
	MBUS_PROBE_ONE = 1,       /* one E5: exactly one slave is now selected */
	MBUS_PROBE_COLLISION = 2, /* garbled: several slaves matched */
};

/* A probe's result: a MBUS_PROBE_* (>= 0) or METER_EABORTED. */
typedef void (*mbus_probe_fn)(int result, void *arg);

/* A bus that connects on its first transaction.  NULL: no memory. */
struct mbus_bus *mbus_bus_new(struct event_base *base, const struct mbus_bus_params *p);

/*
 * Closes the connection and frees the bus.  Transactions still queued are
 * dropped without their callbacks.  Not from inside a callback of this bus.
 */
void mbus_bus_free(struct mbus_bus *b);

/* Queue a readout of one slave; 0, or -1 when out of memory. */
int mbus_bus_read(struct mbus_bus *b, const struct mbus_addr *a, mbus_read_fn cb, void *arg);

/* Queue one selection by (wildcard) secondary address; 0 or -1. */
int mbus_bus_probe(struct mbus_bus *b, const struct mbus_secondary *mask, mbus_probe_fn cb,
                   void *arg);

/*
 * Drops the transactions queued behind the one under way (which stays:
 * it is on the wire, or the bus is dialling for it), for a daemon that
 * is shutting down.  Their read or probe callbacks never run; instead
 * dropped(arg) is called for each, at once, in queue order.  Returns how
 * many were dropped.  Not from inside a callback of this bus.
 */
size_t mbus_bus_drop_queued(struct mbus_bus *b, void (*dropped)(void *arg));

/* Transactions queued or under way. */
size_t mbus_bus_pending(const struct mbus_bus *b);
const struct mbus_bus_stats *mbus_bus_stats(const struct mbus_bus *b);

/*
 * How long to wait for the answer to a request of req_bytes whose answer
 * may be up to reply_max bytes long, at baud with the gateway's latency:
 * both frames at 11 bits per byte, plus the slave's reply time
 * (330 bit times + reply_ms, 50 ms in EN 13757-2), plus latency.  In
 * milliseconds, rounded up.
 */
int mbus_bus_timeout_ms(int baud, size_t req_bytes, size_t reply_max, int reply_ms, int latency_ms);

/* ---- the secondary-address search (mbus_scan.c) ------------------------- */

/*
 * A tree search over the 8 identification digits, most significant first:
 * a probe with the digits fixed so far and the rest wildcards either finds
 * nobody (the subtree is empty), one slave (found), or a collision (the
 * next digit is fixed to 0..9 in turn).  The cost grows with the number
 * of slaves and the digits they share, not with the 10^8 possible ids.
 * The search itself is sans-I/O (mbus_scan_next / mbus_scan_result), so it
 * is tested against an in-memory bus; mbus_scan_run drives it over a bus.
 */
#define MBUS_SCAN_STACK 96

#define MBUS_SCAN_REPEAT 3 /* times one probe is sent again at most */
#define MBUS_SCAN_GROUPS 16

/* A collision's ten children, while they are probed: did any answer? */
struct mbus_scan_group {
	struct mbus_secondary parent;
	size_t base; /* stack slots base.. hold the children */
	unsigned hits;
	bool have_before; /* the silent probe before the collision */
	struct mbus_secondary before;
	uint8_t before_repeats;
};

struct mbus_scan {
	struct mbus_secondary stack[MBUS_SCAN_STACK];
	uint8_t repeats[MBUS_SCAN_STACK]; /* times each pending probe was sent already */
	size_t depth;
	struct mbus_secondary current; /* the probe waiting for its result */
	unsigned current_repeats;      /* times current was sent before */
	bool waiting;
	bool have_silent; /* the last probe that got no answer, while not doubted */
	struct mbus_secondary silent;
	unsigned silent_repeats;
	struct mbus_scan_group groups[MBUS_SCAN_GROUPS];
	size_t ngroups;
	uint64_t probes;      /* selections sent */
	uint64_t found;       /* probes answered by exactly one slave */
	uint64_t unresolved;  /* collisions with every id digit fixed */
	uint64_t repeated;    /* probes sent again because their result was doubtful */
	uint64_t unexplained; /* collisions none of whose children answered */
};

/* Start a search under mask (NULL: every digit and field a wildcard). */
void mbus_scan_init(struct mbus_scan *s, const struct mbus_secondary *mask);

/* The next selection to send into *probe; false when the search is over. */
bool mbus_scan_next(struct mbus_scan *s, struct mbus_secondary *probe);

/* What the last probe got (MBUS_PROBE_*). */
void mbus_scan_result(struct mbus_scan *s, enum mbus_probe_result r);

/*
 * A probe's result turned out doubtful (an answer came after the bus had
 * taken it for silence, or a slave that acknowledged alone could not be
 * read): probe sent again (times: how often it had been sent again
 * already) comes next.  False when it was repeated MBUS_SCAN_REPEAT times
 * already, or the stack is full.
 */
bool mbus_scan_repeat(struct mbus_scan *s, const struct mbus_secondary *probe, unsigned times);

/* The last probe that got no answer is doubtful (stray bytes came after
 * it): mbus_scan_repeat() it.  False when there is none or it cannot be. */
bool mbus_scan_doubt_silent(struct mbus_scan *s);

/*
 * One found slave: its header as read from its RSP_UD (hdr), and the whole
 * readout's status (0, or why it could not be read after selection).
 */
typedef void (*mbus_scan_found_fn)(int status, const struct mbus_header *hdr, void *arg);
/* The scan ended: 0, or METER_EABORTED (the gateway went away). */
typedef void (*mbus_scan_done_fn)(int status, const struct mbus_scan *s, void *arg);

struct mbus_scan_run;

/*
 * Run a search over bus b: every slave that answers a probe alone is read
 * at 253 (REQ_UD2) for its header and reported through found.  A result
 * the bus shows to be doubtful is not trusted: when stray bytes (an answer
 * later than its timeout and guard) come after a probe was taken as
 * silent, that probe is sent again; when a slave that acknowledged alone
 * then gives no readable answer (the acknowledgement was a late one of an
 * earlier probe), this probe and the last silent one are sent again, up to
 * MBUS_SCAN_REPEAT times each, before the slave is reported as failed.
 * The search itself repeats the silent probe before a collision none of
 * whose children answered (mbus_scan_result).  The run is
 * freed by mbus_scan_run_free() after done (not from inside it).
 */
struct mbus_scan_run *mbus_scan_start(struct mbus_bus *b, const struct mbus_secondary *mask,
                                      mbus_scan_found_fn found, mbus_scan_done_fn done, void *arg);
void mbus_scan_run_free(struct mbus_scan_run *r);

/* Secondary address text: 8 id digits (F wildcard), then manufacturer,
 * version and medium in hex as in the meter table ("123456782d2c1b02"),
 * or only the 8 id digits (the rest wildcards).  0 or METER_EINVAL. */
int mbus_secondary_parse(const char *text, struct mbus_secondary *out);
/* Into out[17]. */
void mbus_secondary_format(const struct mbus_secondary *s, char out[17]);
/* From a long header (no wildcards). */
void mbus_secondary_from_header(const struct mbus_header *h, struct mbus_secondary *out);

#endif
