/*
 * dlms_client.h: the DLMS/COSEM client session engine (the head-end side),
 * sans-I/O, over the TCP wrapper or HDLC (dlms_link.h).
 *
 * It opens the link (HDLC: SNRM/UA), associates (AARQ/AARE) with mechanism
 * none, LLS or HLS-GMAC (then pass 3/4 through reply_to_HLS_authentication
 * on 0-0:40.0.0.255), with context LN or LN-with-ciphering (every xDLMS
 * APDU then glo-ciphered with suite 0), carries GET/SET/ACTION requests,
 * reassembles block transfers, delivers DataNotification pushes, and
 * releases (RLRQ/RLRE, HDLC DISC).
 *
 * How a caller drives it (the daemon's drivers, ammctl, the tests):
 *
 *   dlms_client_init(c, &cfg);
 *   dlms_client_open(c, &out);            write `out` to the socket
 *   on every read:  dlms_client_feed(c, bytes, n) (until all taken), then
 *                   do {
 *                       while (dlms_client_poll(c, &out, &ev) != DLMS_CEV_NONE)
 *                               handle ev;
 *                       write `out`, empty it (len and err to 0)
 *                   } while (dlms_client_out_pending(c));
 *   on the timer:   dlms_client_timeout(c, &out), then poll as above
 *   after EVERY call: persist dlms_client_tx_counter() if it changed
 *                   (before writing `out`), and re-arm the timer when
 *                   dlms_client_timer() reports a new generation.
 *
 * Every call that may send takes `out`, an mbuf the caller empties after the
 * call (size it with dlms_client_out_max()).  The engine appends whole
 * frames or PDUs only while they fit and never sets out->err; when a read
 * brings more to answer than `out` holds (several frames at once, a window
 * to go out), the rest waits in the engine and dlms_client_out_pending()
 * is true: write `out`, empty it, poll again.  A request is started with
 * dlms_client_get()/_set()/_action(); its outcome comes back from poll as
 * one DLMS_CEV_RESULT per item, then DLMS_CEV_DONE.  One request is
 * outstanding at a time; the next may be started from the DONE event on.
 *
 * Timers: the engine never reads a clock.  dlms_client_timer() gives the
 * milliseconds, counted from the end of the call that set it, after which
 * the caller must call dlms_client_timeout() (0: no timer wanted), and a
 * generation number that changes whenever the engine arms, re-arms or
 * cancels the timer: when it differs from the last one seen, (re)arm.
 *
 * Invoke ids: each request gets the next id (0..15).  A response with
 * another invoke id while a request is outstanding fails that request with
 * METER_EPROTO (the association stays up, state READY).  A response when
 * nothing is outstanding (a late answer after a timeout) is ignored and
 * counted in `stray`.
 *
 * Pushes (DataNotification, in clear or general-glo/ded-ciphering) are
 * never taken for a response: they come as NOTIFICATION events between
 * the request's, and one that fails its checks neither fails the request
 * nor the association (see NOTIFICATION below).
 *
 * Tolerated: bytes after a complete response APDU, HDLC frames split
 * across reads, segmented I-frames, unspecified date-time fields.
 *
 * Buffers (struct dlms_buffers) are the caller's and must outlive the
 * engine; the engine struct holds no large arrays except the HDLC link's
 * input buffer.  Data pointers in events are valid until the next call
 * into the engine.  Nothing allocates except libcrypto's cipher context
 * inside each protect/unprotect call.
 */
#ifndef METER_DLMS_CLIENT_H
#define METER_DLMS_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "acse.h"
#include "axdr.h"
#include "bytes.h"
#include "dlms_link.h"
#include "dlms_security.h"
#include "xdlms.h"

/*
 * Buffers an engine works in (client and server), all caller-owned:
 *   rx    link receive: HDLC reassembly of one APDU, or the wrapper stream
 *         (8 + the largest APDU).  Bounds what can be received.
 *   tx    the APDU being sent, held while the link sends it.
 *   work  plaintext of a deciphered APDU, and of an APDU before ciphering
 *         (only used with ciphering; may be NULL otherwise).
 *   data  client: reassembly of a block-transferred result (a result
 *         larger than this fails with METER_ENOSPC); server: the encoded
 *         response of a GET (sent in blocks when large) and the value of a
 *         SET/ACTION received in blocks.
 * Each should hold at least the negotiated max PDU size plus 32 bytes;
 * `data` should hold the largest attribute value (a 30-day profile of
 * 2,880 rows x 6 columns takes about 150 kB).
 */
struct dlms_buffers {
	uint8_t *rx;
	size_t rx_cap;
	uint8_t *tx;
	size_t tx_cap;
	uint8_t *work;
	size_t work_cap;
	uint8_t *data;
	size_t data_cap;
};

/* Bytes glo-ciphering adds to an APDU: tag, length, SC, counter, GCM tag. */
#define DLMS_CIPHER_OVERHEAD 21

/*
 * The largest plaintext APDU an engine may build: the peer's max PDU size
 * (0: none announced), less the ciphering overhead when ciphered, bounded
 * by the buffers the plaintext and the ciphered form are built in.
 */
size_t dlms_plain_max(const struct dlms_buffers *b, uint32_t peer_max_pdu, bool ciphered);
/* Start a plaintext APDU where the engine's send expects it: the work
 * buffer when it will be ciphered, else the transmit buffer. */
void dlms_plain_begin(const struct dlms_buffers *b, bool ciphered, struct mbuf *m);

enum dlms_client_state {
	DLMS_CLIENT_IDLE = 0,       /* initialised, nothing sent */
	DLMS_CLIENT_CONNECTING,     /* HDLC: SNRM sent */
	DLMS_CLIENT_ASSOCIATING,    /* AARQ sent */
	DLMS_CLIENT_AUTHENTICATING, /* HLS pass 3 sent, waiting for pass 4 */
	DLMS_CLIENT_READY,          /* associated, no request outstanding */
	DLMS_CLIENT_BUSY,           /* a request outstanding */
	DLMS_CLIENT_RELEASING,      /* RLRQ sent */
	DLMS_CLIENT_DISCONNECTING,  /* HDLC: DISC sent */
	DLMS_CLIENT_CLOSED,         /* released, refused or failed: only init again */
};

/* "idle", "connecting", ... for the daemon's transition log. */
const char *dlms_client_state_name(int state);

struct dlms_client_config {
	int framing; /* enum dlms_framing */
	/* wrapper wPorts, also the logical addresses (public client 16) */
	uint16_t client_wport;
	uint16_t server_wport;
	/* HDLC addresses and proposed parameters (0 fields: defaults) */
	struct hdlc_addr hdlc_client;
	struct hdlc_addr hdlc_server;
	struct hdlc_params hdlc_params;

	int mechanism;           /* ACSE_MECH_NONE, _LLS, _HLS_GMAC */
	const uint8_t *password; /* LLS; pointer kept: must outlive the engine */
	size_t password_len;
	/*
	 * HLS-GMAC: our challenge CtoS (8..64 bytes; fresh random bytes for
	 * each association).  NULL: the engine draws 16 bytes with
	 * libcrypto's RAND_bytes.  Pointer kept until the association is up.
	 */
	const uint8_t *challenge;
	size_t challenge_len;

	bool ciphering;        /* context LN-with-ciphering, glo-ciphering */
	uint8_t security;      /* SC bits: DLMS_SC_AUTH|DLMS_SC_ENC (0 = both) */
	struct dlms_keys keys; /* EK, AK (HLS-GMAC, ciphering) */
	uint8_t system_title[DLMS_SYSTEM_TITLE_LEN]; /* ours */
	uint32_t tx_counter;                         /* next invocation counter to send */
	struct dlms_rx_counter rx_counter;           /* last accepted from the server */

	uint32_t conformance; /* proposed; 0 = everything the engine does */
	uint16_t max_pdu;     /* our max receive PDU; 0 = from the rx buffer, up to 65535 */
	uint8_t max_list;     /* most attributes per GET-with-list; 0 = 10 */
	bool high_priority;   /* invoke-id-and-priority high bit */
	uint32_t timeout_ms;  /* per exchange; 0 = 10000 */

	struct dlms_buffers buf;
};

/* One attribute for dlms_client_get(); the array and the access
 * parameters it points to stay the caller's until DLMS_CEV_DONE. */
struct dlms_get_item {
	struct xdlms_desc desc;
	const struct xdlms_access *access; /* NULL: none */
};

enum dlms_client_event_type {
	DLMS_CEV_NONE = 0,     /* all input handled */
	DLMS_CEV_ASSOCIATED,   /* association up: see conformance, max_pdu */
	DLMS_CEV_RESULT,       /* one item of the current request is done */
	DLMS_CEV_DONE,         /* the request is over (err: request-level) */
	DLMS_CEV_NOTIFICATION, /* a DataNotification (push) */
	DLMS_CEV_RELEASED,     /* release (or DISC) done; state CLOSED */
	DLMS_CEV_FAILED,       /* open failed or the session is lost; state CLOSED */
};

/*
 * An event.  Pointers are valid until the next call into the engine.
 *
 * RESULT: index (into the request's items; 0 for SET/ACTION), err (0;
 *   METER_EACCESS with dar set (GET, SET: data-access-result; ACTION: the
 *   action-result); METER_EEXCEPTION, METER_ETIMEOUT, METER_EPROTO,
 *   METER_EAUTH, METER_EREPLAY, METER_ENOSPC when the request failed as a
 *   whole), data/data_len: the tagged A-XDR Data returned (GET value,
 *   ACTION return parameters), NULL/0 when none.
 * DONE: err 0 when the exchange completed (items may still carry their own
 *   data-access-result), else the same request-level error.
 *   For EEXCEPTION: state_error/service_error (ExceptionResponse) or
 *   cse_service/cse_error/cse_value (ConfirmedServiceError) are set.
 * NOTIFICATION: a push, at any time, also while a request is outstanding
 *   (which it leaves alone).  err 0: long_iip, time (12 bytes or NULL),
 *   data/data_len, authenticated like every APDU when ciphered.  err set
 *   (METER_EAUTH: in clear in a ciphered context, or not authentic;
 *   METER_EREPLAY; METER_EPROTO: ciphered without ciphering;
 *   METER_EMALFORMED): a push that failed its checks, reported so it can
 *   be logged, data NULL: nothing of it may be used.
 * FAILED: err (METER_EREJECTED with result/diag from the AARE;
 *   METER_EAUTH for a wrong f(CtoS) or refused HLS pass 3; METER_ETIMEOUT;
 *   METER_EABORTED for DM/disconnect; METER_EPROTO; METER_EMALFORMED;
 *   METER_EREPLAY ...).  A request outstanding at that moment is dropped
 *   without RESULT or DONE: FAILED ends everything.
 * RELEASED: err 0, or METER_ETIMEOUT when the server did not answer.
 */
struct dlms_client_event {
	int type; /* enum dlms_client_event_type */
	int err;
	uint32_t index;
	uint8_t dar;
	const uint8_t *data;
	size_t data_len;
	/* FAILED with METER_EREJECTED */
	uint8_t result; /* enum acse_result */
	uint8_t diag_source;
	uint8_t diag;
	/* EEXCEPTION */
	uint8_t state_error, service_error;
	uint8_t cse_service, cse_error, cse_value;
	/* NOTIFICATION */
	uint32_t long_iip;
	const uint8_t *time;
};

/* Kinds of request, for the engine's bookkeeping. */
enum dlms_client_op {
	DLMS_OP_NONE = 0,
	DLMS_OP_GET,
	DLMS_OP_SET,
	DLMS_OP_ACTION,
};

/*
 * The engine.  Public so callers can allocate it (about 4.5 kB, most of it
 * the HDLC link's input buffer); read the members marked "read" and the
 * accessors, treat the rest as private.
 */
struct dlms_client {
	/* configuration */
	int mechanism;
	const uint8_t *password;
	size_t password_len;
	const uint8_t *challenge;
	size_t challenge_len;
	uint8_t ctos[64]; /* our challenge, kept for checking f(CtoS) */
	uint8_t ctos_len;
	bool ciphering;
	uint8_t sc;
	struct dlms_keys keys;
	uint8_t system_title[DLMS_SYSTEM_TITLE_LEN];
	uint8_t server_title[DLMS_SYSTEM_TITLE_LEN]; /* read: from the AARE */
	bool have_server_title;
	uint32_t proposed_conformance;
	uint16_t max_pdu_rx;
	uint8_t max_list;
	bool high_priority;
	uint32_t timeout_ms;
	struct dlms_buffers buf;

	/* read: state and what the association negotiated */
	int state;               /* enum dlms_client_state */
	uint32_t conformance;    /* negotiated */
	uint16_t server_max_pdu; /* server-max-receive-pdu-size */
	uint32_t tx_counter;     /* next invocation counter we send */
	struct dlms_rx_counter rx_counter;
	uint32_t stray; /* responses with nothing outstanding */
	uint32_t pushes_refused; /* pushes that failed their checks (NOTIFICATION with err) */

	/* timer */
	uint32_t timer_ms;
	uint32_t timer_gen;

	/* the current request */
	int op; /* enum dlms_client_op */
	uint8_t invoke_id;
	const struct dlms_get_item *items;
	uint32_t n_items;
	uint32_t next_item; /* first item not yet requested */
	uint32_t batch;     /* items in the request on the wire */
	uint32_t delivered; /* items whose RESULT was given */
	bool with_list;     /* the request on the wire is a with-list */
	struct xdlms_desc desc;
	const struct xdlms_access *access;
	const uint8_t *value; /* SET value / ACTION parameters (caller's) */
	size_t value_len;
	size_t value_off; /* bytes of value sent in blocks */
	uint32_t block;   /* block number expected / sent */
	size_t data_len;  /* bytes reassembled in buf.data */
	bool in_blocks;

	/* pending work and events between polls */
	int fail_err; /* request-level error to deliver */
	bool pending_done;
	bool pending_send;                /* start the next with-list batch on next poll */
	struct dlms_client_event pending; /* FAILED / RELEASED to report */
	bool has_pending;
	uint8_t exc[5]; /* state_error, service_error, cse x3 */

	/* with-list results of the last response, delivered one per poll */
	const uint8_t *list_p;
	size_t list_len;
	uint32_t list_left;

	struct dlms_link link;
};

/*
 * Set up from cfg (copied; the buffers, password and challenge are kept by
 * pointer).  Returns 0 or METER_EINVAL (bad framing, mechanism, missing
 * buffers, HLS or ciphering without a system title, rx/tx buffers smaller
 * than 64 bytes).
 */
int dlms_client_init(struct dlms_client *c, const struct dlms_client_config *cfg);

/*
 * Connect and associate: appends SNRM (HDLC) or the AARQ (wrapper).  The
 * outcome comes from poll: DLMS_CEV_ASSOCIATED or DLMS_CEV_FAILED.
 * Returns 0, METER_ESTATE (not IDLE), METER_ENOSPC, METER_ECRYPTO.
 */
int dlms_client_open(struct dlms_client *c, struct mbuf *out);

/*
 * GET n attributes (n >= 1).  With GET-with-list when the server's
 * conformance has multiple-references and n > 1 (batches of up to
 * max_list that fit the server's PDU size), else one GET-normal after the
 * other.  Block transfers are followed (GET-Request-Next) and reassembled
 * in buf.data.  Returns 0, METER_ESTATE (not READY, or the link still
 * busy), METER_EINVAL (n == 0), METER_ENOSPC (a request larger than tx or
 * the server's PDU size), METER_ECRYPTO.
 */
int dlms_client_get(struct dlms_client *c, struct mbuf *out, const struct dlms_get_item *items,
                    uint32_t n);

/*
 * SET one attribute to the tagged A-XDR value[0..len) (the caller's, kept
 * until DONE).  Uses SET-with-datablock when the APDU would exceed the
 * server's PDU size and the conformance allows it (else METER_ENOSPC).
 * Same returns as dlms_client_get().
 */
int dlms_client_set(struct dlms_client *c, struct mbuf *out, const struct xdlms_desc *d,
                    const struct xdlms_access *access, const uint8_t *value, size_t len);

/*
 * ACTION one method with tagged A-XDR parameters (NULL/0: none), in
 * pblocks when large.  The RESULT's dar is the action-result, data the
 * return parameters.  Same returns as dlms_client_get().
 */
int dlms_client_action(struct dlms_client *c, struct mbuf *out, const struct xdlms_desc *m,
                       const uint8_t *params, size_t len);

/*
 * Release: RLRQ, then (HDLC) DISC; DLMS_CEV_RELEASED follows.  From
 * CONNECTING/ASSOCIATING it just disconnects.  Returns 0, METER_ESTATE
 * (already CLOSED or IDLE), METER_ENOSPC.
 */
int dlms_client_release(struct dlms_client *c, struct mbuf *out);

/* Give up at once (no bytes): state CLOSED, nothing more is reported. */
void dlms_client_abort(struct dlms_client *c);

/* Queue received bytes; returns how many were taken (poll, then feed the rest). */
size_t dlms_client_feed(struct dlms_client *c, const uint8_t *p, size_t n);

/*
 * Handle queued input and pending work until an event; returns its type
 * (also in ev->type), DLMS_CEV_NONE when there is nothing more.  Frames and
 * APDUs to send are appended to out.
 */
int dlms_client_poll(struct dlms_client *c, struct mbuf *out, struct dlms_client_event *ev);

/*
 * The caller's timer fired.  During a request: the request fails with
 * METER_ETIMEOUT (RESULT for each item not yet delivered, then DONE) and
 * the state returns to READY (a late answer is ignored).  During open:
 * FAILED with METER_ETIMEOUT.  During release: RELEASED with
 * METER_ETIMEOUT.  Events come from the following polls.
 * Returns 0, METER_ESTATE when no timer was wanted.
 */
int dlms_client_timeout(struct dlms_client *c, struct mbuf *out);

/* Timer wanted (see top of file): *ms (0: none), returns the generation. */
uint32_t dlms_client_timer(const struct dlms_client *c, uint32_t *ms);

/* Next invocation counter we will send (persist it), and the last one accepted. */
uint32_t dlms_client_tx_counter(const struct dlms_client *c);
struct dlms_rx_counter dlms_client_rx_counter(const struct dlms_client *c);

/* Bytes `out` should hold (a full HDLC window, or a wrapper PDU): with an
 * empty buffer of this size, open/get/set/action/release/timeout never
 * leave output pending.  An upper bound valid for the whole session, so it
 * may be read right after init, before the HDLC parameters are negotiated. */
size_t dlms_client_out_max(const struct dlms_client *c);

/* The last call left output waiting for room in `out`: write and empty
 * `out`, then call dlms_client_poll() again (see the top of this file). */
bool dlms_client_out_pending(const struct dlms_client *c);

/* Convenience: decode a RESULT's or NOTIFICATION's data into nodes (axdr_decode). */
int dlms_client_decode(const struct dlms_client_event *ev, struct axdr_node *nodes, size_t cap,
                       size_t *n_nodes);

/* Name of an event type ("result"). */
const char *dlms_client_event_name(int type);

#endif
