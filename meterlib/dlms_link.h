/*
 * dlms_link.h: the framing under the DLMS/COSEM session engines, so that
 * dlms_client and dlms_server work the same over the IEC 62056-47 TCP
 * wrapper and over HDLC (IEC 62056-46, through hdlc_link.h).
 *
 * A link moves whole APDUs: dlms_link_send() frames one, dlms_link_feed()
 * takes received bytes in reads of any size and dlms_link_poll() hands
 * back events (connected, an APDU, disconnected, an error).  Each framing
 * is a const struct dlms_link_ops; the engines only call through it.
 *
 * Wrapper: there is no link set-up, so connect just reports CONNECTED on
 * the next poll; PDUs addressed to another wPort are dropped; a bad header
 * is fatal (a TCP stream cannot resynchronise) and reported once.  A server
 * with remote_wport 0 answers whichever client wPort spoke last.
 * HDLC: SNRM/UA, segmentation, windows and RR are hdlc_link's.
 *
 * Ownership: the receive buffer is the caller's (HDLC: reassembly of one
 * APDU; wrapper: the stream buffer, 8 bytes more than the largest APDU) and
 * must outlive the link.  An APDU given to dlms_link_send() must stay
 * unchanged until dlms_link_tx_busy() is false (HDLC sends it frame by
 * frame as RRs arrive; the wrapper copies it into `out` at once, or when
 * `out` is full keeps it until the next poll).  An APDU in an event is
 * valid until the next feed or poll.  Nothing allocates.
 *
 * Output: neither framing overruns `out` or sets out->err.  What does not
 * fit waits in the link, dlms_link_out_pending() says so, and the next
 * poll (after the caller has written and emptied `out`) sends it before it
 * takes more input.
 */
#ifndef METER_DLMS_LINK_H
#define METER_DLMS_LINK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bytes.h"
#include "hdlc.h"
#include "hdlc_link.h"
#include "wrapper.h"

enum dlms_framing { DLMS_FRAMING_WRAPPER = 1, DLMS_FRAMING_HDLC = 2 };

enum dlms_link_event_type {
	DLMS_LINK_EV_NONE = 0,     /* all input handled: feed more */
	DLMS_LINK_EV_CONNECTED,    /* link up (wrapper: at once) */
	DLMS_LINK_EV_APDU,         /* one whole APDU */
	DLMS_LINK_EV_DISCONNECTED, /* HDLC: UA to DISC, DM, or DISC answered; err as hdlc_event */
	DLMS_LINK_EV_ERROR         /* err: METER_EPROTO, METER_ENOSPC, METER_EMALFORMED,
	                              METER_ELENGTH (wrapper: stream lost) */
};

struct dlms_link_event {
	int type; /* enum dlms_link_event_type */
	const uint8_t *apdu;
	size_t apdu_len;
	bool ui; /* HDLC: the APDU came in UI frames (a push) */
	int err;
};

struct dlms_link_config {
	int framing; /* enum dlms_framing */
	bool server;
	/* wrapper */
	uint16_t local_wport;
	uint16_t remote_wport; /* server: 0 = answer any client */
	/* HDLC (see hdlc_link_config) */
	struct hdlc_addr hdlc_local;
	struct hdlc_addr hdlc_remote;
	struct hdlc_params hdlc_params;
	/* receive buffer, caller-owned */
	uint8_t *rxbuf;
	size_t rxcap;
};

struct dlms_link;

struct dlms_link_ops {
	const char *name;
	int (*connect)(struct dlms_link *l, struct mbuf *out);
	int (*disconnect)(struct dlms_link *l, struct mbuf *out);
	int (*send)(struct dlms_link *l, const uint8_t *apdu, size_t len, struct mbuf *out);
	int (*push)(struct dlms_link *l, const uint8_t *apdu, size_t len, struct mbuf *out);
	size_t (*feed)(struct dlms_link *l, const uint8_t *p, size_t n);
	int (*poll)(struct dlms_link *l, struct mbuf *out, struct dlms_link_event *ev);
	int (*resend)(struct dlms_link *l, struct mbuf *out);
	bool (*tx_busy)(const struct dlms_link *l);
	size_t (*out_max)(const struct dlms_link *l, size_t apdu_len);
	bool (*idle)(const struct dlms_link *l);
	void (*set_rxbuf)(struct dlms_link *l, uint8_t *buf, size_t cap);
	bool (*out_pending)(const struct dlms_link *l);
};

extern const struct dlms_link_ops dlms_link_wrapper_ops;
extern const struct dlms_link_ops dlms_link_hdlc_ops;

/* Public so the engines can embed it; treat as private. */
struct dlms_link {
	const struct dlms_link_ops *ops;
	bool server;
	bool up;        /* wrapper: connected */
	bool report_up; /* wrapper: CONNECTED still to be reported */
	bool dead;      /* wrapper: stream lost, error reported */
	uint16_t local_wport, remote_wport;
	bool any_remote;
	uint32_t ignored;    /* PDUs for another wPort */
	const uint8_t *held; /* wrapper: APDU sent while out was full */
	size_t held_len;
	union {
		struct wrapper_stream ws;
		struct hdlc_link hl;
	} u;
};

/* 0, or METER_EINVAL (bad framing, NULL buffer, bad HDLC address). */
int dlms_link_init(struct dlms_link *l, const struct dlms_link_config *cfg);

/*
 * Thin dispatchers over l->ops; same contracts as the hdlc_link functions
 * of the same name.  dlms_link_out_max() is the most bytes one call may
 * append to `out` when an APDU of apdu_len bytes is sent.
 * dlms_link_idle(): no partial input held and nothing unacknowledged, so
 * the receive buffer may be swapped with dlms_link_set_rxbuf().
 * dlms_link_out_pending(): the last call left output waiting for room in
 * `out`: write and empty it, then poll again.
 */
int dlms_link_connect(struct dlms_link *l, struct mbuf *out);
int dlms_link_disconnect(struct dlms_link *l, struct mbuf *out);
int dlms_link_send(struct dlms_link *l, const uint8_t *apdu, size_t len, struct mbuf *out);
/*
 * Send an unsolicited APDU (a server's DataNotification): over the wrapper
 * as any PDU, over HDLC in UI frames (segmented at the negotiated
 * information length), outside the I-frame sequence, so it may go while an
 * I-frame exchange is unfinished.  The APDU is copied into `out` at once.
 * 0, METER_ESTATE (link down), METER_ENOSPC, METER_ELENGTH.
 */
int dlms_link_push(struct dlms_link *l, const uint8_t *apdu, size_t len, struct mbuf *out);
size_t dlms_link_feed(struct dlms_link *l, const uint8_t *p, size_t n);
int dlms_link_poll(struct dlms_link *l, struct mbuf *out, struct dlms_link_event *ev);
int dlms_link_resend(struct dlms_link *l, struct mbuf *out);
bool dlms_link_tx_busy(const struct dlms_link *l);
size_t dlms_link_out_max(const struct dlms_link *l, size_t apdu_len);
bool dlms_link_idle(const struct dlms_link *l);
bool dlms_link_out_pending(const struct dlms_link *l);
void dlms_link_set_rxbuf(struct dlms_link *l, uint8_t *buf, size_t cap);

/* "wrapper" or "hdlc". */
const char *dlms_framing_name(int framing);

#endif
