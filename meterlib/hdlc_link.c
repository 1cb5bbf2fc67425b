/*
 * hdlc_link.c: the HDLC link procedures of IEC 62056-46 in normal response
 * mode, for the client (primary) and the server (secondary) side.
 *
 * The link is a state machine driven by three things: the caller's actions
 * (connect, send, disconnect, resend), and frames found in the bytes it is
 * fed.  It keeps V(S)/V(R) modulo 8, cuts an outgoing APDU into I-frames of
 * at most the negotiated information length, sends up to a window of them
 * with the poll/final bit on the last, and continues when the peer's RR
 * acknowledges them.  Received segments are copied into the caller's
 * reassembly buffer and answered with RR; the final segment is not answered
 * because the next I-frame we send acknowledges it.
 *
 * Outgoing segments are not copied: they are cut again from the caller's
 * APDU whenever they are (re)sent, which is why the caller keeps the APDU
 * until every frame of it is acknowledged, and why a go-back-N resend costs
 * no memory.  There are no timers; hdlc_link_resend() is the caller's
 * answer to a timeout.
 *
 * The caller's output buffer is never overrun: a frame is written only when
 * it fits whole.  A window cut short for room is finished by the next poll
 * (tx_more), and a received frame is taken only when out has room for any
 * answer but a window (in_blocked otherwise), so a caller that drains out
 * and polls again while hdlc_link_out_pending() says so loses nothing,
 * however many frames a read brings.
 */
#include "hdlc_link.h"

#include "meter_error.h"

static void
clamp_params(struct hdlc_params *p)
{
	if (p->max_info_tx == 0)
		p->max_info_tx = HDLC_DEFAULT_INFO;
	if (p->max_info_rx == 0)
		p->max_info_rx = HDLC_DEFAULT_INFO;
	if (p->window_tx == 0)
		p->window_tx = HDLC_DEFAULT_WINDOW;
	if (p->window_rx == 0)
		p->window_rx = HDLC_DEFAULT_WINDOW;
}

static uint32_t
min32(uint32_t a, uint32_t b)
{
	return a < b ? a : b;
}

/*
 * An information length we can honour: at least room for the LLC header
 * and one byte, at most what fits a frame.
 */
static uint16_t
clamp_info(uint32_t v)
{
	if (v < HDLC_LLC_LEN + 1)
		return HDLC_LLC_LEN + 1;
	if (v > HDLC_MAX_INFO)
		return HDLC_MAX_INFO;
	return (uint16_t)v;
}

/* Windows are 1..7: sequence numbers are modulo 8. */
static uint8_t
window(uint32_t v)
{
	return v < 1 ? 1 : v > 7 ? 7 : (uint8_t)v;
}

/* Room left in out; none once it has overflowed (the caller's bug). */
static size_t
room(const struct mbuf *out)
{
	return out->err ? 0 : out->cap - out->len;
}

static bool
addr_ok(const struct hdlc_addr *a)
{
	uint8_t tmp[4];
	struct mbuf m;

	mbuf_init(&m, tmp, sizeof(tmp));
	return hdlc_addr_put(&m, a) == 0;
}

int
hdlc_link_init(struct hdlc_link *l, const struct hdlc_link_config *cfg)
{
	if (l == NULL || cfg == NULL || cfg->rxbuf == NULL || cfg->rxcap == 0)
		return METER_EINVAL;
	if (cfg->role != HDLC_CLIENT && cfg->role != HDLC_SERVER)
		return METER_EINVAL;
	if (!addr_ok(&cfg->local))
		return METER_EINVAL;
	if (!addr_ok(&cfg->remote) && !(cfg->role == HDLC_SERVER && cfg->remote.size == 0))
		return METER_EINVAL;

	memset(l, 0, sizeof(*l));
	l->role = cfg->role;
	l->local = cfg->local;
	l->remote = cfg->remote;
	l->any_client = cfg->role == HDLC_SERVER && cfg->remote.size == 0;
	l->proposed = cfg->params;
	clamp_params(&l->proposed);
	l->send_params = cfg->send_params;
	l->rxbuf = cfg->rxbuf;
	l->rxcap = cfg->rxcap;
	l->state = HDLC_LINK_DISCONNECTED;
	l->max_info_tx = HDLC_DEFAULT_INFO;
	l->max_info_rx = HDLC_DEFAULT_INFO;
	l->window_tx = HDLC_DEFAULT_WINDOW;
	l->window_rx = HDLC_DEFAULT_WINDOW;
	return 0;
}

static void
reset_sequence(struct hdlc_link *l)
{
	l->vs = 0;
	l->vr = 0;
	l->rx_active = false;
	l->rx_ui = false;
	l->rx_len = 0;
	l->rx_err = 0;
	l->peer_busy = false;
	l->tx = NULL;
	l->tx_len = 0;
	l->tx_acked = 0;
	l->tx_sent = 0;
	l->tx_ack_ns = 0;
	l->tx_unacked = 0;
	l->tx_final_sent = false;
	l->tx_more = false;
	l->in_blocked = false;
	l->last_sent = 0;
}

/* Append one frame without information field to out. */
static int
emit(struct hdlc_link *l, struct mbuf *out, uint8_t type, bool pf, const uint8_t *info, size_t ilen)
{
	struct hdlc_frame f = {
	    .type = type,
	    .dest = l->remote,
	    .src = l->local,
	    .nr = l->vr,
	    .pf = pf,
	    .info = info,
	    .info_len = ilen,
	};
	ssize_t n;

	/* Check first: a frame that does not fit must not latch out->err. */
	if (hdlc_frame_len(l->remote.size, l->local.size, ilen) > room(out))
		return METER_ENOSPC;
	if ((n = hdlc_encode(out, &f)) < 0)
		return (int)n;
	l->frames_out++;
	l->last_sent = type;
	return 0;
}

static int
emit_snrm(struct hdlc_link *l, struct mbuf *out)
{
	uint8_t info[32];
	struct mbuf m;

	mbuf_init(&m, info, sizeof(info));
	if (l->send_params)
		hdlc_params_encode(&m, &l->proposed);
	return emit(l, out, HDLC_SNRM, true, info, m.len);
}

int
hdlc_link_connect(struct hdlc_link *l, struct mbuf *out)
{
	int rc;

	if (l->role != HDLC_CLIENT || l->state == HDLC_LINK_CONNECTED)
		return METER_ESTATE;
	reset_sequence(l);
	if ((rc = emit_snrm(l, out)) < 0)
		return rc;
	l->state = HDLC_LINK_CONNECTING;
	return 0;
}

int
hdlc_link_disconnect(struct hdlc_link *l, struct mbuf *out)
{
	int rc;

	if (l->role == HDLC_SERVER) {
		/* A secondary may not speak unasked; it just forgets. */
		reset_sequence(l);
		l->state = HDLC_LINK_DISCONNECTED;
		return 0;
	}
	if (l->state == HDLC_LINK_DISCONNECTED)
		return METER_ESTATE;
	if ((rc = emit(l, out, HDLC_DISC, true, NULL, 0)) < 0)
		return rc;
	l->state = HDLC_LINK_DISCONNECTING;
	l->tx_more = false; /* no I-frame may follow the DISC */
	return 0;
}

bool
hdlc_link_tx_busy(const struct hdlc_link *l)
{
	return l->tx != NULL;
}

bool
hdlc_link_out_pending(const struct hdlc_link *l)
{
	return l->tx_more || l->in_blocked;
}

size_t
hdlc_link_out_max(const struct hdlc_link *l)
{
	/* flags 2, format 2, addresses 4 + 4, control 1, HCS 2, FCS 2 */
	size_t frame = (size_t)l->max_info_tx + 17;

	if (frame < 64)
		frame = 64; /* a UA with parameters */
	return frame * l->window_tx;
}

/* APDU bytes carried by the frame that starts at APDU offset off. */
static size_t
chunk_at(const struct hdlc_link *l, size_t off)
{
	size_t room = l->max_info_tx - (off == 0 ? HDLC_LLC_LEN : 0);
	size_t left = l->tx_len - off;

	return left < room ? left : room;
}

/*
 * Send segments from tx_sent on while the window and the peer allow and
 * out has room; a window cut short for room is marked tx_more, and the
 * next poll goes on with it (the poll bit is only on its last frame, so
 * the peer waits for the rest).
 */
static int
tx_fill(struct hdlc_link *l, struct mbuf *out)
{
	uint8_t info[HDLC_MAX_INFO];

	l->tx_more = false;
	while (l->tx && !l->peer_busy && !l->tx_final_sent && l->tx_unacked < l->window_tx) {
		size_t off = l->tx_sent, n = chunk_at(l, off), ilen = 0;
		bool seg = off + n < l->tx_len;
		struct hdlc_frame f = {
		    .type = HDLC_I,
		    .segmented = seg,
		    .dest = l->remote,
		    .src = l->local,
		    .ns = l->vs,
		    .nr = l->vr,
		    .pf = !seg || l->tx_unacked + 1 == l->window_tx,
		    .info = info,
		};
		ssize_t rc;

		if (off == 0) {
			info[0] = HDLC_LLC_DST;
			info[1] = l->role == HDLC_SERVER ? HDLC_LLC_RSP : HDLC_LLC_CMD;
			info[2] = 0;
			ilen = HDLC_LLC_LEN;
		}
		f.info_len = ilen + n;
		if (hdlc_frame_len(f.dest.size, f.src.size, f.info_len) > room(out)) {
			l->tx_more = true;
			return 0;
		}
		memcpy(info + ilen, l->tx + off, n);
		if ((rc = hdlc_encode(out, &f)) < 0)
			return (int)rc;
		l->frames_out++;
		l->vs = (l->vs + 1) & 7;
		l->tx_sent += n;
		l->tx_unacked++;
		l->tx_final_sent = !seg;
		l->last_sent = HDLC_I;
	}
	return 0;
}

int
hdlc_link_send(struct hdlc_link *l, const uint8_t *apdu, size_t len, struct mbuf *out)
{
	if (l->state != HDLC_LINK_CONNECTED || l->tx)
		return METER_ESTATE;
	if (apdu == NULL || len == 0)
		return METER_EINVAL;
	uint8_t vs = l->vs, last = l->last_sent;
	int rc;

	l->tx = apdu;
	l->tx_len = len;
	l->tx_acked = 0;
	l->tx_sent = 0;
	l->tx_ack_ns = l->vs;
	l->tx_unacked = 0;
	l->tx_final_sent = false;
	rc = tx_fill(l, out);
	if (rc == 0 && l->tx_more && l->tx_unacked == 0 && out->len == 0)
		rc = METER_ENOSPC; /* not one frame fits an empty out: never will */
	if (rc < 0) {
		/* As if never sent. */
		l->tx = NULL;
		l->tx_len = 0;
		l->tx_sent = 0;
		l->tx_unacked = 0;
		l->tx_final_sent = false;
		l->tx_more = false;
		l->vs = vs;
		l->last_sent = last;
	}
	return rc;
}

/* Go back to the first unacknowledged frame and send from there. */
static int
tx_go_back(struct hdlc_link *l, struct mbuf *out)
{
	l->vs = l->tx_ack_ns;
	l->tx_sent = l->tx_acked;
	l->tx_unacked = 0;
	l->tx_final_sent = false;
	return tx_fill(l, out);
}

/*
 * The peer's N(R) acknowledges our frames before it.  It must lie between
 * the first unacknowledged frame and V(S); anything else means the two
 * sides disagree on the sequence.
 */
static int
tx_ack(struct hdlc_link *l, uint8_t nr)
{
	uint8_t k = (nr - l->tx_ack_ns) & 7;

	if (l->tx == NULL)
		return nr == l->vs ? 0 : METER_EPROTO;
	if (k > l->tx_unacked)
		return METER_EPROTO;
	while (k--) {
		l->tx_acked += chunk_at(l, l->tx_acked);
		l->tx_ack_ns = (l->tx_ack_ns + 1) & 7;
		l->tx_unacked--;
	}
	if (l->tx_final_sent && l->tx_unacked == 0) {
		l->tx = NULL; /* all acknowledged: the caller may reuse it */
		l->tx_len = 0;
		l->tx_acked = 0;
		l->tx_sent = 0;
		l->tx_final_sent = false;
		l->tx_more = false;
	}
	return 0;
}

int
hdlc_link_resend(struct hdlc_link *l, struct mbuf *out)
{
	switch (l->state) {
	case HDLC_LINK_CONNECTING:
		return emit_snrm(l, out);
	case HDLC_LINK_DISCONNECTING:
		return emit(l, out, HDLC_DISC, true, NULL, 0);
	case HDLC_LINK_CONNECTED:
		if (l->role == HDLC_CLIENT) {
			/* The primary recovers by polling: the server's RR
			 * (or its I-frames) then says where to go on from,
			 * which is right whatever was lost and whatever the
			 * window, where a blind repeat of a window of
			 * I-frames would look out of sequence to the peer. */
			if (l->tx || l->last_sent == HDLC_RR || l->rx_active)
				return emit(l, out, HDLC_RR, true, NULL, 0);
			return METER_ESTATE;
		}
		if (l->tx)
			return tx_go_back(l, out);
		if (l->last_sent == HDLC_RR)
			return emit(l, out, HDLC_RR, true, NULL, 0);
		return METER_ESTATE;
	default:
		return METER_ESTATE;
	}
}

size_t
hdlc_link_feed(struct hdlc_link *l, const uint8_t *p, size_t n)
{
	size_t room;

	if (l->in_off) {
		memmove(l->in, l->in + l->in_off, l->in_len - l->in_off);
		l->in_len -= l->in_off;
		l->in_off = 0;
	}
	if (l->flag_held && n) {
		/* Put back the flag set aside by hdlc_link_poll(). */
		memmove(l->in + 1, l->in, l->in_len);
		l->in[0] = HDLC_FLAG;
		l->in_len++;
		l->flag_held = false;
	}
	room = sizeof(l->in) - l->in_len;
	if (n > room)
		n = room;
	if (n) {
		memcpy(l->in + l->in_len, p, n);
		l->in_len += n;
	}
	return n;
}

static int
set_event(struct hdlc_event *ev, int type, int err, uint8_t frame)
{
	ev->type = type;
	ev->err = err;
	ev->frame = frame;
	return type;
}

/*
 * Add one frame's information field to the APDU being reassembled.  The
 * first segment starts with the LLC header, which is checked and stripped.
 * An APDU that does not fit, or has a bad LLC header, is dropped whole and
 * reported once its last segment is in.  Returns an event type or
 * HDLC_EV_NONE while more segments are to come.
 */
static int
rx_append(struct hdlc_link *l, const struct hdlc_frame *f, bool ui, struct hdlc_event *ev)
{
	const uint8_t *p = f->info;
	size_t n = f->info_len;
	bool response;

	if (!l->rx_active || l->rx_ui != ui) {
		l->rx_active = true;
		l->rx_ui = ui;
		l->rx_len = 0;
		l->rx_err = 0;
		if (hdlc_check_llc(p, n, &response) < 0) {
			l->rx_err = METER_EPROTO;
		} else {
			p += HDLC_LLC_LEN;
			n -= HDLC_LLC_LEN;
		}
	}
	if (l->rx_err == 0) {
		if (n > l->rxcap - l->rx_len) {
			l->rx_err = METER_ENOSPC;
		} else {
			memcpy(l->rxbuf + l->rx_len, p, n);
			l->rx_len += n;
		}
	}
	if (f->segmented)
		return HDLC_EV_NONE;
	l->rx_active = false;
	if (l->rx_err)
		return set_event(ev, HDLC_EV_ERROR, l->rx_err, f->type);
	ev->apdu = l->rxbuf;
	ev->apdu_len = l->rx_len;
	ev->ui = ui;
	return set_event(ev, HDLC_EV_APDU, 0, f->type);
}

/* Answer a SNRM: the UA carries what we will use, from our side. */
static int
server_snrm(struct hdlc_link *l, const struct hdlc_frame *f, struct mbuf *out,
            struct hdlc_event *ev)
{
	struct hdlc_params peer, ours;
	uint8_t info[32];
	struct mbuf m;
	int rc;

	hdlc_params_default(&peer);
	if (f->info_len && hdlc_params_decode(f->info, f->info_len, &peer) < 0)
		return set_event(ev, HDLC_EV_ERROR, METER_EPROTO, HDLC_SNRM);
	if (l->any_client)
		l->remote = f->src;
	/* Answer in the address size the client chose for us. */
	l->local.size = f->dest.size;
	reset_sequence(l);
	l->max_info_tx = clamp_info(min32(peer.max_info_rx, l->proposed.max_info_tx));
	l->max_info_rx = clamp_info(min32(peer.max_info_tx, l->proposed.max_info_rx));
	l->window_tx = window(min32(peer.window_rx, l->proposed.window_tx));
	l->window_rx = window(min32(peer.window_tx, l->proposed.window_rx));
	ours.max_info_tx = l->max_info_tx;
	ours.max_info_rx = l->max_info_rx;
	ours.window_tx = l->window_tx;
	ours.window_rx = l->window_rx;
	mbuf_init(&m, info, sizeof(info));
	hdlc_params_encode(&m, &ours);
	if ((rc = emit(l, out, HDLC_UA, true, info, m.len)) < 0)
		return set_event(ev, HDLC_EV_ERROR, rc, HDLC_SNRM);
	l->state = HDLC_LINK_CONNECTED;
	return set_event(ev, HDLC_EV_CONNECTED, 0, HDLC_SNRM);
}

/* The UA to our SNRM: adopt what the server granted, from our side. */
static int
client_ua(struct hdlc_link *l, const struct hdlc_frame *f, struct hdlc_event *ev)
{
	struct hdlc_params srv;

	hdlc_params_default(&srv);
	if (f->info_len && hdlc_params_decode(f->info, f->info_len, &srv) < 0) {
		l->state = HDLC_LINK_DISCONNECTED;
		return set_event(ev, HDLC_EV_ERROR, METER_EPROTO, HDLC_UA);
	}
	reset_sequence(l);
	l->max_info_tx = clamp_info(min32(srv.max_info_rx, l->proposed.max_info_tx));
	l->max_info_rx = clamp_info(srv.max_info_tx);
	l->window_tx = window(min32(srv.window_rx, l->proposed.window_tx));
	l->window_rx = window(srv.window_tx);
	l->state = HDLC_LINK_CONNECTED;
	return set_event(ev, HDLC_EV_CONNECTED, 0, HDLC_UA);
}

static int
on_iframe(struct hdlc_link *l, const struct hdlc_frame *f, struct mbuf *out, struct hdlc_event *ev)
{
	int rc;

	if (f->ns != l->vr) {
		/* Our RR (or answer) was lost and the peer sent it again:
		 * repeat what we sent instead of taking the data twice. */
		if (f->ns == ((l->vr - 1) & 7)) {
			if (f->pf && l->last_sent && (rc = hdlc_link_resend(l, out)) < 0 &&
			    rc != METER_ESTATE)
				return set_event(ev, HDLC_EV_ERROR, rc, HDLC_I);
			return HDLC_EV_NONE;
		}
		return set_event(ev, HDLC_EV_ERROR, METER_EPROTO, HDLC_I);
	}
	if (tx_ack(l, f->nr) < 0)
		return set_event(ev, HDLC_EV_ERROR, METER_EPROTO, HDLC_I);
	l->vr = (l->vr + 1) & 7;
	rc = rx_append(l, f, false, ev);
	if (rc != HDLC_EV_NONE || !f->pf)
		return rc;
	/* A segment with the poll bit: the peer waits for our RR. */
	if ((rc = emit(l, out, HDLC_RR, true, NULL, 0)) < 0)
		return set_event(ev, HDLC_EV_ERROR, rc, HDLC_I);
	return HDLC_EV_NONE;
}

static int
on_rr(struct hdlc_link *l, const struct hdlc_frame *f, struct mbuf *out, struct hdlc_event *ev)
{
	bool had_tx = l->tx != NULL;
	int rc;

	if (tx_ack(l, f->nr) < 0)
		return set_event(ev, HDLC_EV_ERROR, METER_EPROTO, f->type);
	l->peer_busy = f->type == HDLC_RNR;
	if (l->tx) {
		/* In normal response mode an RR answers our poll, so the
		 * peer has seen all we sent: go on from its N(R), which
		 * also repeats whatever it missed. */
		if (!l->peer_busy && (rc = tx_go_back(l, out)) < 0)
			return set_event(ev, HDLC_EV_ERROR, rc, f->type);
		return HDLC_EV_NONE;
	}
	/* A client polling a server with nothing to say gets RR back. */
	if (l->role == HDLC_SERVER && f->pf && !had_tx) {
		if ((rc = emit(l, out, HDLC_RR, true, NULL, 0)) < 0)
			return set_event(ev, HDLC_EV_ERROR, rc, f->type);
	}
	return HDLC_EV_NONE;
}

static bool
for_us(const struct hdlc_link *l, const struct hdlc_frame *f)
{
	if (!hdlc_addr_eq(&f->dest, &l->local))
		return false;
	if (l->any_client && (f->type == HDLC_SNRM || l->remote.size == 0))
		return true;
	return hdlc_addr_eq(&f->src, &l->remote);
}

static int
server_frame(struct hdlc_link *l, const struct hdlc_frame *f, struct mbuf *out,
             struct hdlc_event *ev)
{
	int rc;

	if (f->type == HDLC_SNRM)
		return server_snrm(l, f, out, ev);
	if (l->state != HDLC_LINK_CONNECTED) {
		/* Not connected: everything but UI is answered with DM. */
		if (l->any_client)
			l->remote = f->src;
		if (f->pf && (rc = emit(l, out, HDLC_DM, true, NULL, 0)) < 0)
			return set_event(ev, HDLC_EV_ERROR, rc, f->type);
		return HDLC_EV_NONE;
	}
	switch (f->type) {
	case HDLC_DISC:
		rc = emit(l, out, HDLC_UA, true, NULL, 0);
		reset_sequence(l);
		l->state = HDLC_LINK_DISCONNECTED;
		if (rc < 0)
			return set_event(ev, HDLC_EV_ERROR, rc, HDLC_DISC);
		return set_event(ev, HDLC_EV_DISCONNECTED, 0, HDLC_DISC);
	case HDLC_I:
		return on_iframe(l, f, out, ev);
	case HDLC_RR:
	case HDLC_RNR:
		return on_rr(l, f, out, ev);
	default:
		return HDLC_EV_NONE; /* UA, DM, FRMR are not for a secondary */
	}
}

static int
client_frame(struct hdlc_link *l, const struct hdlc_frame *f, struct mbuf *out,
             struct hdlc_event *ev)
{
	switch (l->state) {
	case HDLC_LINK_CONNECTING:
		if (f->type == HDLC_UA)
			return client_ua(l, f, ev);
		if (f->type == HDLC_DM) {
			l->state = HDLC_LINK_DISCONNECTED;
			return set_event(ev, HDLC_EV_DISCONNECTED, METER_EREJECTED, HDLC_DM);
		}
		return HDLC_EV_NONE;
	case HDLC_LINK_DISCONNECTING:
		if (f->type == HDLC_UA || f->type == HDLC_DM) {
			reset_sequence(l);
			l->state = HDLC_LINK_DISCONNECTED;
			return set_event(ev, HDLC_EV_DISCONNECTED, 0, f->type);
		}
		return HDLC_EV_NONE;
	case HDLC_LINK_CONNECTED:
		break;
	default:
		return HDLC_EV_NONE;
	}
	switch (f->type) {
	case HDLC_I:
		return on_iframe(l, f, out, ev);
	case HDLC_RR:
	case HDLC_RNR:
		return on_rr(l, f, out, ev);
	case HDLC_DM:
		reset_sequence(l);
		l->state = HDLC_LINK_DISCONNECTED;
		return set_event(ev, HDLC_EV_DISCONNECTED, METER_EABORTED, HDLC_DM);
	case HDLC_FRMR:
		return set_event(ev, HDLC_EV_ERROR, METER_EPROTO, HDLC_FRMR);
	default:
		return HDLC_EV_NONE;
	}
}

static int
handle_frame(struct hdlc_link *l, const struct hdlc_frame *f, struct mbuf *out,
             struct hdlc_event *ev)
{
	if (!for_us(l, f)) {
		l->frames_ignored++;
		return HDLC_EV_NONE;
	}
	l->frames_in++;
	/* UI needs no connection: meters push DataNotifications in it. */
	if (f->type == HDLC_UI)
		return rx_append(l, f, true, ev);
	if (l->role == HDLC_SERVER)
		return server_frame(l, f, out, ev);
	return client_frame(l, f, out, ev);
}

int
hdlc_link_poll(struct hdlc_link *l, struct mbuf *out, struct hdlc_event *ev)
{
	struct hdlc_frame f;
	size_t drop;
	int rc, type;

	memset(ev, 0, sizeof(*ev));
	l->in_blocked = false;
	if (l->tx_more) {
		/* The rest of a window that did not fit last time. */
		if ((rc = tx_fill(l, out)) < 0)
			return set_event(ev, HDLC_EV_ERROR, rc, HDLC_I);
		if (l->tx_more) {
			if (out->len > 0)
				return HDLC_EV_NONE; /* drain, then poll again */
			/* Not one frame fits an empty out: stop trying until
			 * the peer's next poll or the caller's resend. */
			l->tx_more = false;
			return set_event(ev, HDLC_EV_ERROR, METER_ENOSPC, HDLC_I);
		}
	}
	for (;;) {
		rc = hdlc_scan(l->in + l->in_off, l->in_len - l->in_off, &f, &drop);
		if (rc <= 0) {
			l->in_off += drop;
			if (rc == 0) {
				/* A lone closing flag is not a frame in
				 * progress: hold it aside so the input
				 * reads as empty until more bytes come. */
				if (l->in_len - l->in_off == 1 && l->in[l->in_off] == HDLC_FLAG) {
					l->in_off++;
					l->flag_held = true;
				}
				return HDLC_EV_NONE;
			}
			l->frames_bad++;
			continue;
		}
		/* Leave the frame queued until out has room for its answer
		 * (and the window in progress is out).  An empty out that is
		 * smaller still goes ahead: its errors are reported. */
		if ((l->tx_more || room(out) < HDLC_LINK_CTRL_MAX) && out->len > 0) {
			l->in_blocked = true;
			return HDLC_EV_NONE;
		}
		type = handle_frame(l, &f, out, ev);
		l->in_off += drop;
		if (type != HDLC_EV_NONE)
			return type;
	}
}

const char *
hdlc_event_name(int type)
{
	switch (type) {
	case HDLC_EV_NONE:
		return "none";
	case HDLC_EV_CONNECTED:
		return "connected";
	case HDLC_EV_DISCONNECTED:
		return "disconnected";
	case HDLC_EV_APDU:
		return "apdu";
	case HDLC_EV_ERROR:
		return "error";
	default:
		return "?";
	}
}
