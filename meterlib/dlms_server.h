/*
 * dlms_server.h: the DLMS/COSEM server session engine (the meter side),
 * sans-I/O, over the TCP wrapper or HDLC (dlms_link.h).  The simulator
 * runs one per simulated connection; the tests run it against dlms_client.
 *
 * It answers the AARQ by the association policy (mechanisms, LLS password,
 * HLS-GMAC keys, ciphering), completes HLS-GMAC pass 3/4, serves
 * GET/SET/ACTION (normal and with-list; GET responses larger than the
 * client's PDU size go out in datablocks, SET/ACTION values arrive in
 * blocks), answers RLRQ, and sends DataNotification when the caller asks.
 * The object model is the caller's, reached through the callbacks of a
 * const struct dlms_server_ops.  Lengths from the client are never trusted:
 * every APDU is decoded by the bounded codecs before anything is served.
 *
 * Driving it: like the client (see dlms_client.h): dlms_server_feed()
 * received bytes, dlms_server_poll() until DLMS_SEV_NONE, write what was
 * appended to `out`, and while dlms_server_out_pending() empty `out` and
 * poll again (a pipelined read may need more answers than `out` holds).
 * The server needs no timer: the caller closes idle connections itself.
 *
 * Buffers (struct dlms_buffers, see dlms_client.h) are the caller's.
 * A server may lend its big buffers to another engine while
 * dlms_server_idle() is true (no partial input, no transfer in progress)
 * and give them back, or others, with dlms_server_set_buffers().
 *
 * Invocation counters live in the engine (tx_counter: next we send;
 * rx_counter: last accepted from the client); the caller loads them after
 * init and persists them after each call.  It may also rewrite them between
 * calls, or use the `tamper` hook, to inject faults (a reset or replayed
 * counter, a wrong invoke id).
 */
#ifndef METER_DLMS_SERVER_H
#define METER_DLMS_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "acse.h"
#include "axdr.h"
#include "bytes.h"
#include "dlms_client.h" /* struct dlms_buffers */
#include "dlms_link.h"
#include "dlms_security.h"
#include "xdlms.h"

/* Association policy; may be shared by many engines (kept by pointer). */
struct dlms_server_policy {
	uint32_t mechanisms;     /* bit (1 << ACSE_MECH_x) for each accepted mechanism */
	const uint8_t *password; /* LLS */
	size_t password_len;
	bool ciphering_required; /* refuse context LN without ciphering */
	bool ciphering_allowed;  /* accept LN-with-ciphering (needs keys, title) */
	uint8_t security;        /* SC bits required of the client and used in
	                            answers: DLMS_SC_AUTH|DLMS_SC_ENC (0 = both) */
	struct dlms_keys keys;
	uint8_t system_title[DLMS_SYSTEM_TITLE_LEN];
	uint32_t conformance; /* offered; 0 = everything the engine does */
	uint16_t max_pdu;     /* our max receive PDU; 0 = 1024 */
	/* When set, mechanism none is accepted only from this client wPort /
	 * HDLC client address (the public client, 16); 0 = from any. */
	uint16_t none_client;
};

/* Selective access as the object model sees it. */
struct dlms_selective {
	uint8_t selector;               /* XDLMS_ACCESS_RANGE, _ENTRY or another */
	const struct axdr_node *params; /* decoded access-parameters */
	uint32_t n_params;
	bool range_ok; /* range decoded (selector 1) */
	struct xdlms_range range;
	bool entry_ok; /* entry decoded (selector 2) */
	struct xdlms_entry entry;
};

struct dlms_server;

/* What a callback is asked about.  Valid during the callback only. */
struct dlms_server_req {
	struct dlms_server *srv;
	struct xdlms_desc desc;
	const struct dlms_selective *sel; /* NULL: no selective access */
	int mechanism;                    /* of the association */
	uint16_t client;                  /* client wPort / HDLC address */
};

struct dlms_server_ops {
	/*
	 * Append the attribute's value, one tagged A-XDR Data, to out and
	 * return XDLMS_DAR_SUCCESS, or return another data-access-result
	 * (out is then ignored).  When out fills up (out->err METER_ENOSPC)
	 * the engine answers other-reason.
	 */
	int (*get)(void *arg, const struct dlms_server_req *rq, struct mbuf *out);
	/* Store data[0..len) (one tagged Data, checked well-formed); return
	 * a data-access-result. */
	int (*set)(void *arg, const struct dlms_server_req *rq, const uint8_t *data, size_t len);
	/* Run a method with parameters (NULL/0: none); optionally append
	 * return parameters (one tagged Data) to out; return an
	 * action-result. */
	int (*action)(void *arg, const struct dlms_server_req *rq, const uint8_t *params,
	              size_t len, struct mbuf *out);
	/*
	 * Optional fault injection: see (and change) every plaintext xDLMS
	 * response before it is ciphered and sent: apdu[0..*len), cap bytes
	 * of room.  The simulator and tests use it for wrong invoke ids.
	 */
	void (*tamper)(void *arg, struct dlms_server *s, uint8_t *apdu, size_t *len, size_t cap);
};

enum dlms_server_state {
	DLMS_SERVER_IDLE = 0,       /* HDLC: no link yet */
	DLMS_SERVER_CONNECTED,      /* link up, not associated */
	DLMS_SERVER_AUTHENTICATING, /* HLS-GMAC: AARE sent, waiting for pass 3 */
	DLMS_SERVER_ASSOCIATED,
	DLMS_SERVER_CLOSED, /* disconnected or lost */
};

const char *dlms_server_state_name(int state);

enum dlms_server_event_type {
	DLMS_SEV_NONE = 0,
	DLMS_SEV_CONNECTED,    /* HDLC link up (wrapper: the first byte) */
	DLMS_SEV_ASSOCIATED,   /* an association is up (after pass 4 for HLS) */
	DLMS_SEV_REJECTED,     /* an AARQ or HLS pass 3 was refused: diag */
	DLMS_SEV_RELEASED,     /* RLRQ answered */
	DLMS_SEV_DISCONNECTED, /* HDLC DISC answered, or link lost */
	DLMS_SEV_ERROR,        /* a request could not be served: err (METER_EAUTH
	                          deciphering, METER_EREPLAY counter, METER_EMALFORMED,
	                          METER_EPROTO); the engine answered as the
	                          standard says (ExceptionResponse) and goes on */
	DLMS_SEV_SERVED,       /* one request answered: op (enum dlms_client_op) */
};

struct dlms_server_event {
	int type;
	int err;
	uint8_t diag; /* REJECTED: enum acse_user_diag */
	int op;       /* SERVED */
};

struct dlms_server_config {
	int framing;
	uint16_t server_wport; /* our logical device (1) */
	uint16_t client_wport; /* 0: answer any */
	struct hdlc_addr hdlc_server;
	struct hdlc_addr hdlc_client;   /* size 0: answer any */
	struct hdlc_params hdlc_params; /* our limits */
	const struct dlms_server_policy *policy;
	const struct dlms_server_ops *ops;
	void *arg; /* passed to every callback */
	struct dlms_buffers buf;
	/* HLS-GMAC StoC challenge source: NULL = RAND_bytes, else this
	 * (8..64 bytes, kept by pointer) */
	const uint8_t *challenge;
	size_t challenge_len;
};

/* The engine; public for allocation, read the marked members only. */
struct dlms_server {
	const struct dlms_server_policy *policy;
	const struct dlms_server_ops *ops;
	void *arg;
	struct dlms_buffers buf;
	const uint8_t *challenge;
	size_t challenge_len;

	/* read */
	int state;
	int mechanism;           /* of the association */
	bool ciphered;           /* context LN-with-ciphering */
	uint32_t conformance;    /* negotiated */
	uint16_t client_max_pdu; /* client-max-receive-pdu-size (0: 65535) */
	uint8_t client_title[DLMS_SYSTEM_TITLE_LEN];
	bool have_client_title;
	uint16_t client; /* address of the associated client */
	/* read/write: invocation counters (see top of file) */
	uint32_t tx_counter;
	struct dlms_rx_counter rx_counter;
	uint32_t requests; /* served */

	/* HLS */
	uint8_t stoc[64];
	uint8_t stoc_len;
	uint8_t ctos[64];
	uint8_t ctos_len;

	/* long GET in progress: response in buf.data */
	bool get_blocks;
	uint8_t get_iip;
	uint32_t get_block;
	size_t get_len, get_off;
	/* long SET / ACTION being received into buf.data */
	int in_op; /* DLMS_OP_SET / DLMS_OP_ACTION / 0 */
	struct xdlms_desc in_desc;
	uint32_t in_block;
	size_t in_len;

	struct dlms_server_event pending;
	bool has_pending;

	struct dlms_link link;
};

/* 0, or METER_EINVAL (no policy, ops or ops->get, buffers, bad framing);
 * set and action may be NULL (then read-write-denied). */
int dlms_server_init(struct dlms_server *s, const struct dlms_server_config *cfg);

size_t dlms_server_feed(struct dlms_server *s, const uint8_t *p, size_t n);
int dlms_server_poll(struct dlms_server *s, struct mbuf *out, struct dlms_server_event *ev);

/*
 * Push a DataNotification (long-invoke-id long_iip, optional 12-byte
 * date-time, body one tagged Data), in general-glo-ciphering when the
 * association is ciphered (DataNotification has no glo- twin).  Allowed
 * when CONNECTED or ASSOCIATED; over HDLC it goes in UI frames, outside the
 * I-frame exchange.  The APDU is built in buf.data, so not while a long
 * GET/SET/ACTION is in progress.  Returns 0, METER_ESTATE (no link, a long
 * transfer in progress), METER_ENOSPC (larger than the client's PDU size
 * or `out`), METER_EINVAL (no data), METER_ECRYPTO.
 */
int dlms_server_notify(struct dlms_server *s, struct mbuf *out, uint32_t long_iip,
                       const uint8_t *time, const uint8_t *data, size_t len);

/* No partial input and no transfer in progress (buffers may be lent). */
bool dlms_server_idle(const struct dlms_server *s);
/* Swap buffers; METER_ESTATE unless idle, METER_EINVAL for NULL ones. */
int dlms_server_set_buffers(struct dlms_server *s, const struct dlms_buffers *b);

/* Bytes `out` must hold for any call but notify (see dlms_client_out_max());
 * a push over HDLC takes (APDU / information length + 1) frames more. */
size_t dlms_server_out_max(const struct dlms_server *s);

/* Output waits for room in `out`: write and empty it, then poll again. */
bool dlms_server_out_pending(const struct dlms_server *s);

const char *dlms_server_event_name(int type);

#endif
