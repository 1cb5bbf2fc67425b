/*
 * hdlc_link.h: the HDLC link of IEC 62056-46 in normal response mode, for
 * a client (the head-end) or a server (the simulator), without I/O.
 *
 * The link turns APDUs into I-frames and back: it connects (SNRM/UA with
 * parameter negotiation), segments an APDU into I-frames of at most the
 * negotiated information length within the negotiated window, reassembles
 * received segments (answering each segment with RR), keeps V(S)/V(R)
 * modulo 8 and disconnects (DISC, UA/DM).  It owns no socket and no timer.
 *
 * Usage: the caller allocates a struct hdlc_link (no malloc inside), calls
 * hdlc_link_init() with a reassembly buffer it owns, and then
 *
 *   - hdlc_link_connect() / hdlc_link_send() / hdlc_link_disconnect() to act;
 *   - hdlc_link_feed() with every chunk of bytes read from the transport,
 *     then hdlc_link_poll() until it returns HDLC_EV_NONE, handling events;
 *   - after each of these calls, writes whatever the call appended to the
 *     `out` mbuf to the transport.  Frames to send (RR after a received
 *     segment, the next segment after the peer's RR, UA to a SNRM) appear
 *     in `out` without an event of their own.
 *   - when hdlc_link_out_pending() is true after that, empties `out` and
 *     polls again: drain and poll again until nothing is pending.
 *
 * The link never overruns `out` and never sets out->err: it appends whole
 * frames only while they fit.  What does not fit waits in the link (the
 * rest of a window is cut again from the caller's APDU; received frames
 * stay in the input buffer until there is room to answer them), which is
 * why a peer that pipelines frames, two polls answered with a window each,
 * or an output buffer of a single frame all work without an error.
 *
 * Timers are the caller's: when the peer does not answer in time, call
 * hdlc_link_resend(), or give up and drop the link.  A client repeats SNRM
 * or DISC, and once connected polls the server with RR: the answer (RR
 * with the server's N(R), or the server's I-frames again) puts both sides
 * back in step whatever was lost.  A server repeats its unacknowledged
 * I-frames or its last RR (servers normally wait to be polled instead).
 *
 * Ownership: the reassembly buffer belongs to the caller and must outlive
 * the link.  The APDU passed to hdlc_link_send() is not copied: the caller
 * keeps it unchanged until hdlc_link_tx_busy() is false, i.e. until the peer
 * has acknowledged every frame of it (for a client that is when the
 * response starts to arrive; for a server, when the next request or RR
 * does).  An APDU in an event points into the reassembly buffer and is valid
 * until the next call of hdlc_link_poll() or hdlc_link_feed().
 */
#ifndef METER_HDLC_LINK_H
#define METER_HDLC_LINK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bytes.h"
#include "hdlc.h"

/* Room for one maximum frame plus the tail of a read that began another. */
#define HDLC_LINK_RXBUF (2 * HDLC_MAX_FRAME + 2)

/* Room hdlc_link_poll() wants in `out` before it takes a received frame:
 * the largest frame it answers with that is not an I-frame (a UA with
 * parameters, 4-byte addresses).  I-frames go out as they fit. */
#define HDLC_LINK_CTRL_MAX 64

enum hdlc_role { HDLC_CLIENT = 1, HDLC_SERVER };

enum hdlc_link_state {
	HDLC_LINK_DISCONNECTED = 0,
	HDLC_LINK_CONNECTING, /* client: SNRM sent, waiting for UA */
	HDLC_LINK_CONNECTED,
	HDLC_LINK_DISCONNECTING, /* client: DISC sent, waiting for UA or DM */
};

enum hdlc_event_type {
	HDLC_EV_NONE = 0,     /* all fed input handled: feed more bytes */
	HDLC_EV_CONNECTED,    /* client: UA to our SNRM; server: SNRM answered */
	HDLC_EV_DISCONNECTED, /* UA to our DISC, DM, or (server) DISC answered */
	HDLC_EV_APDU,         /* a complete APDU (LLC header stripped) */
	HDLC_EV_ERROR,        /* protocol error; see err.  The caller usually
	                         disconnects; the link stays usable otherwise */
};

struct hdlc_event {
	int type;            /* enum hdlc_event_type */
	const uint8_t *apdu; /* HDLC_EV_APDU: in the reassembly buffer */
	size_t apdu_len;
	bool ui;       /* HDLC_EV_APDU came in UI frames (push, broadcast) */
	int err;       /* HDLC_EV_ERROR: METER_EPROTO (wrong N(S) or N(R),
	                  FRMR received, bad LLC), METER_ENOSPC (APDU
	                  larger than the reassembly buffer, dropped; or
	                  an empty `out` too small for a frame to send);
	                  HDLC_EV_DISCONNECTED: METER_EREJECTED when the
	                  peer answered SNRM with DM, METER_EABORTED for
	                  a DM while connected, else 0 */
	uint8_t frame; /* HDLC_EV_ERROR / DISCONNECTED: type of the frame
	                  that caused it (enum hdlc_type), 0 if none */
};

struct hdlc_link_config {
	int role;                  /* enum hdlc_role */
	struct hdlc_addr local;    /* our address (server: upper/lower) */
	struct hdlc_addr remote;   /* the peer's; a server with remote.size 0
	                              accepts any client and answers it */
	struct hdlc_params params; /* client: proposed in SNRM; server: its
	                              limits.  Seen from this side: tx is what
	                              we send.  Zero fields mean the default. */
	bool send_params;          /* client: put the parameter group in SNRM */
	uint8_t *rxbuf;            /* reassembly buffer, caller-owned */
	size_t rxcap;
};

/*
 * The link.  Public so that callers can embed it without allocation; read
 * `state`, `max_info_tx`, `max_info_rx`, `window_tx`, `window_rx` and the
 * counters, and treat the rest as private.
 */
struct hdlc_link {
	/* configuration */
	int role;
	struct hdlc_addr local, remote;
	bool any_client; /* server: remote taken from each SNRM */
	struct hdlc_params proposed;
	bool send_params;
	uint8_t *rxbuf;
	size_t rxcap;

	/* link state and negotiated parameters */
	int state;            /* enum hdlc_link_state */
	uint16_t max_info_tx; /* largest information field we may send */
	uint16_t max_info_rx; /* largest we accept */
	uint8_t window_tx;    /* frames we may send before an RR */
	uint8_t window_rx;
	uint8_t vs, vr; /* V(S), V(R), modulo 8 */

	/* receive side: bytes fed but not yet handled, and reassembly */
	uint8_t in[HDLC_LINK_RXBUF];
	size_t in_off;  /* bytes at the front already handled */
	size_t in_len;  /* in_off == in_len: no partial frame waits */
	bool flag_held; /* a closing flag was set aside: it may open the next */
	size_t rx_len;  /* APDU bytes reassembled so far */
	bool rx_active; /* a segmented APDU is being received */
	bool rx_ui;     /* ... in UI frames */
	int rx_err;     /* it is being dropped: report this at its end */
	bool peer_busy; /* RNR received */

	/* send side: the APDU being segmented (caller-owned) */
	const uint8_t *tx;
	size_t tx_len;
	size_t tx_acked;    /* APDU bytes the peer has acknowledged */
	size_t tx_sent;     /* APDU bytes sent (acked or not) */
	uint8_t tx_ack_ns;  /* N(S) of the first unacknowledged frame */
	uint8_t tx_unacked; /* frames sent and not acknowledged */
	bool tx_final_sent; /* the last segment has gone out */
	bool tx_more;       /* the window was cut short for room in out */
	bool in_blocked;    /* a received frame waits for room in out */

	/* what hdlc_link_resend() repeats: enum hdlc_type, 0 for nothing */
	uint8_t last_sent;

	/* counters, for the caller's statistics */
	uint32_t frames_in;      /* good frames addressed to us */
	uint32_t frames_bad;     /* checksum or format errors (skipped) */
	uint32_t frames_ignored; /* good frames for another address */
	uint32_t frames_out;
};

/*
 * Set the link up from cfg, disconnected.  Returns 0, or METER_EINVAL for a
 * bad role, address or a NULL reassembly buffer.
 */
int hdlc_link_init(struct hdlc_link *l, const struct hdlc_link_config *cfg);

/* Client: append SNRM.  0, METER_ESTATE (not a client or already
 * connected), METER_ENOSPC. */
int hdlc_link_connect(struct hdlc_link *l, struct mbuf *out);

/* Client: append DISC (the link then waits for UA or DM).  Server: nothing
 * to do (a server disconnects by answering DISC).  0, METER_ESTATE,
 * METER_ENOSPC. */
int hdlc_link_disconnect(struct hdlc_link *l, struct mbuf *out);

/*
 * Send an APDU: appends the first frames (LLC header first, at most
 * max_info_tx bytes of information each, up to window_tx frames, as many
 * as fit in out; the others of the window follow from hdlc_link_poll()
 * once out is drained, see hdlc_link_out_pending()), and the link sends
 * the rest as the peer's RRs arrive during hdlc_link_poll().
 * Returns 0, METER_ESTATE (not connected, or a previous APDU still busy),
 * METER_EINVAL (empty APDU), METER_ENOSPC (an empty out cannot hold one
 * frame: nothing counts as sent, so call again with hdlc_link_out_max()
 * bytes).
 */
int hdlc_link_send(struct hdlc_link *l, const uint8_t *apdu, size_t len, struct mbuf *out);

/* True while an APDU given to hdlc_link_send() is not fully acknowledged. */
bool hdlc_link_tx_busy(const struct hdlc_link *l);

/*
 * True when the last call stopped because `out` was full: frames of a
 * window still to go, or received frames still to answer.  Write out,
 * empty it and call hdlc_link_poll() again (with no new input if need be).
 */
bool hdlc_link_out_pending(const struct hdlc_link *l);

/*
 * A full window of maximum I-frames with the parameters now in force: an
 * empty output buffer of this size takes any one burst, so a send into it
 * leaves nothing pending.  A smaller one (down to one frame) also works,
 * with more drains; a poll over several received frames may fill any size,
 * which hdlc_link_out_pending() then says.
 */
size_t hdlc_link_out_max(const struct hdlc_link *l);

/*
 * Queue received bytes.  Returns how many were taken: all of them unless
 * the link's input buffer is full, in which case poll until HDLC_EV_NONE
 * and feed the rest.
 */
size_t hdlc_link_feed(struct hdlc_link *l, const uint8_t *p, size_t n);

/*
 * Handle queued input until a frame yields an event, the input is used up
 * or out has no room for what a frame may need (HDLC_EV_NONE; then
 * hdlc_link_out_pending() is true).  First sends what is pending of a
 * window.  Frames to send in answer are appended to out.
 * Frames with bad checksums, and frames for other addresses, are skipped
 * (and counted).  Returns the event type, also stored in ev->type.
 */
int hdlc_link_poll(struct hdlc_link *l, struct mbuf *out, struct hdlc_event *ev);

/*
 * Recover from a silent peer (the caller's timeout): SNRM again while
 * connecting, DISC again while disconnecting; connected, a client polls
 * with RR (P=1) while it has an APDU out or a response coming in, and a
 * server repeats its unacknowledged I-frames or its last RR.  Returns 0,
 * METER_ESTATE when nothing is outstanding, METER_ENOSPC.
 */
int hdlc_link_resend(struct hdlc_link *l, struct mbuf *out);

/* Name of a link event ("apdu"), for logs. */
const char *hdlc_event_name(int type);

#endif
