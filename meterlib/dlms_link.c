/*
 * dlms_link.c: the two framings under the DLMS session engines, each a
 * const struct dlms_link_ops.  The wrapper backend is a wrapper_stream plus
 * wPort checks; the HDLC backend forwards to hdlc_link and renames its
 * events.  The engines above never look at which one they have.
 *
 * Neither writes past the room left in `out`.  The wrapper keeps an APDU
 * that does not fit by pointer (the caller keeps it while tx_busy) and
 * sends it from the next poll, before it hands over another received APDU
 * whose answer would need the same transmit buffer.
 */
#include <string.h>

#include "dlms_link.h"
#include "meter_error.h"

/* ---- wrapper (IEC 62056-47) ------------------------------------------- */

static int
wr_connect(struct dlms_link *l, struct mbuf *out)
{
	(void)out;
	if (l->up)
		return METER_ESTATE;
	l->up = true;
	l->report_up = true;
	return 0;
}

static int
wr_disconnect(struct dlms_link *l, struct mbuf *out)
{
	(void)out;
	/* Nothing on the wire: closing the TCP connection is the caller's. */
	l->up = false;
	l->held = NULL;
	return 0;
}

static size_t
out_room(const struct mbuf *out)
{
	return out->err ? 0 : out->cap - out->len;
}

/* One PDU into out if it fits whole; METER_ENOSPC (out untouched) if not. */
static int
wr_emit(struct dlms_link *l, const uint8_t *apdu, size_t len, struct mbuf *out)
{
	ssize_t n;

	if (len > UINT16_MAX)
		return METER_ELENGTH;
	if (WRAPPER_HEADER_LEN + len > out_room(out))
		return METER_ENOSPC;
	n = wrapper_encode(out, l->local_wport, l->remote_wport, apdu, len);
	return n < 0 ? (int)n : 0;
}

static int
wr_send(struct dlms_link *l, const uint8_t *apdu, size_t len, struct mbuf *out)
{
	int r;

	if (!l->up || l->dead || l->held)
		return METER_ESTATE;
	if (len == 0)
		return METER_EINVAL;
	r = wr_emit(l, apdu, len, out);
	if (r == METER_ENOSPC && out->len > 0 && WRAPPER_HEADER_LEN + len <= out->cap) {
		/* Full for now: the next poll sends it, once out is drained. */
		l->held = apdu;
		l->held_len = len;
		return 0;
	}
	return r;
}

static int
wr_push(struct dlms_link *l, const uint8_t *apdu, size_t len, struct mbuf *out)
{
	if (!l->up || l->dead)
		return METER_ESTATE;
	if (len == 0)
		return METER_EINVAL;
	/* Copied at once (the caller reuses its buffer), ahead of a held
	 * response: each PDU is whole on the stream either way. */
	return wr_emit(l, apdu, len, out);
}

static size_t
wr_feed(struct dlms_link *l, const uint8_t *p, size_t n)
{
	if (l->dead)
		return n; /* the stream is lost: swallow, the caller closes */
	return wrapper_stream_feed(&l->u.ws, p, n);
}

static int
wr_poll(struct dlms_link *l, struct mbuf *out, struct dlms_link_event *ev)
{
	struct wrapper_pdu w;
	int r;

	memset(ev, 0, sizeof(*ev));
	if (l->dead)
		return ev->type = DLMS_LINK_EV_NONE;
	if (l->held) {
		r = wr_emit(l, l->held, l->held_len, out);
		if (r == METER_ENOSPC && out->len > 0)
			return ev->type = DLMS_LINK_EV_NONE; /* drain, poll again */
		l->held = NULL;
		if (r < 0) {
			/* An empty out too small (or overflowed by the caller):
			 * the stream cannot go on without this PDU. */
			l->dead = true;
			ev->err = r;
			return ev->type = DLMS_LINK_EV_ERROR;
		}
	}
	if (l->server && !l->up && l->u.ws.len > 0) {
		l->up = true;
		l->report_up = true;
	}
	if (l->report_up) {
		l->report_up = false;
		return ev->type = DLMS_LINK_EV_CONNECTED;
	}
	for (;;) {
		r = wrapper_stream_next(&l->u.ws, &w);
		if (r == 0)
			return ev->type = DLMS_LINK_EV_NONE;
		if (r < 0) {
			l->dead = true;
			ev->err = r;
			return ev->type = DLMS_LINK_EV_ERROR;
		}
		if (w.dst_wport != l->local_wport ||
		    (!l->any_remote && w.src_wport != l->remote_wport)) {
			l->ignored++;
			continue;
		}
		if (w.length == 0) {
			l->ignored++;
			continue;
		}
		if (l->any_remote)
			l->remote_wport = w.src_wport;
		ev->apdu = w.apdu;
		ev->apdu_len = w.length;
		return ev->type = DLMS_LINK_EV_APDU;
	}
}

static int
wr_resend(struct dlms_link *l, struct mbuf *out)
{
	(void)l;
	(void)out;
	return METER_ESTATE; /* TCP does not lose PDUs */
}

static bool
wr_tx_busy(const struct dlms_link *l)
{
	return l->held != NULL;
}

static bool
wr_out_pending(const struct dlms_link *l)
{
	return l->held != NULL;
}

static size_t
wr_out_max(const struct dlms_link *l, size_t apdu_len)
{
	(void)l;
	return WRAPPER_HEADER_LEN + apdu_len;
}

static bool
wr_idle(const struct dlms_link *l)
{
	return l->u.ws.len == l->u.ws.done && l->held == NULL;
}

static void
wr_set_rxbuf(struct dlms_link *l, uint8_t *buf, size_t cap)
{
	struct wrapper_stream *s = &l->u.ws;

	/* Only when idle: drop what was handed out, keep nothing. */
	(void)wrapper_stream_init(s, buf, cap, 0);
}

const struct dlms_link_ops dlms_link_wrapper_ops = {
    .name = "wrapper",
    .connect = wr_connect,
    .disconnect = wr_disconnect,
    .send = wr_send,
    .push = wr_push,
    .feed = wr_feed,
    .poll = wr_poll,
    .resend = wr_resend,
    .tx_busy = wr_tx_busy,
    .out_max = wr_out_max,
    .idle = wr_idle,
    .set_rxbuf = wr_set_rxbuf,
    .out_pending = wr_out_pending,
};

/* ---- HDLC (IEC 62056-46) ---------------------------------------------- */

static int
hd_connect(struct dlms_link *l, struct mbuf *out)
{
	return hdlc_link_connect(&l->u.hl, out);
}

static int
hd_disconnect(struct dlms_link *l, struct mbuf *out)
{
	return hdlc_link_disconnect(&l->u.hl, out);
}

static int
hd_send(struct dlms_link *l, const uint8_t *apdu, size_t len, struct mbuf *out)
{
	return hdlc_link_send(&l->u.hl, apdu, len, out);
}

static int
hd_push(struct dlms_link *l, const uint8_t *apdu, size_t len, struct mbuf *out)
{
	const struct hdlc_link *h = &l->u.hl;
	uint8_t info[HDLC_MAX_INFO];
	size_t off = 0, room;
	struct hdlc_frame f;
	struct mbuf ib;
	ssize_t n;

	if (h->state != HDLC_LINK_CONNECTED)
		return METER_ESTATE;
	if (len == 0)
		return METER_EINVAL;
	room = h->max_info_tx < sizeof(info) ? h->max_info_tx : sizeof(info);
	if (room <= HDLC_LLC_LEN)
		return METER_ELENGTH;
	/* All frames or none: do not leave half a push in out. */
	if ((len + HDLC_LLC_LEN + room - 1) / room * (room + 17) > out_room(out))
		return METER_ENOSPC;
	do {
		mbuf_init(&ib, info, room);
		if (off == 0)
			hdlc_put_llc(&ib, l->server);
		size_t k = room - ib.len < len - off ? room - ib.len : len - off;
		mbuf_put(&ib, apdu + off, k);
		off += k;
		memset(&f, 0, sizeof(f));
		f.type = HDLC_UI;
		f.segmented = off < len;
		f.dest = h->remote;
		f.src = h->local;
		f.pf = !f.segmented;
		f.info = info;
		f.info_len = ib.len;
		n = hdlc_encode(out, &f);
		if (n < 0)
			return (int)n;
	} while (off < len);
	return 0;
}

static bool
hd_out_pending(const struct dlms_link *l)
{
	return hdlc_link_out_pending(&l->u.hl);
}

static size_t
hd_feed(struct dlms_link *l, const uint8_t *p, size_t n)
{
	return hdlc_link_feed(&l->u.hl, p, n);
}

static int
hd_poll(struct dlms_link *l, struct mbuf *out, struct dlms_link_event *ev)
{
	struct hdlc_event he;

	memset(ev, 0, sizeof(*ev));
	switch (hdlc_link_poll(&l->u.hl, out, &he)) {
	case HDLC_EV_CONNECTED:
		return ev->type = DLMS_LINK_EV_CONNECTED;
	case HDLC_EV_DISCONNECTED:
		ev->err = he.err;
		return ev->type = DLMS_LINK_EV_DISCONNECTED;
	case HDLC_EV_APDU:
		ev->apdu = he.apdu;
		ev->apdu_len = he.apdu_len;
		ev->ui = he.ui;
		return ev->type = DLMS_LINK_EV_APDU;
	case HDLC_EV_ERROR:
		ev->err = he.err;
		return ev->type = DLMS_LINK_EV_ERROR;
	default:
		return ev->type = DLMS_LINK_EV_NONE;
	}
}

static int
hd_resend(struct dlms_link *l, struct mbuf *out)
{
	return hdlc_link_resend(&l->u.hl, out);
}

static bool
hd_tx_busy(const struct dlms_link *l)
{
	return hdlc_link_tx_busy(&l->u.hl);
}

static size_t
hd_out_max(const struct dlms_link *l, size_t apdu_len)
{
	const struct hdlc_link *h = &l->u.hl;
	size_t now = hdlc_link_out_max(h);
	size_t info = h->proposed.max_info_tx ? h->proposed.max_info_tx : HDLC_DEFAULT_INFO;
	size_t win = h->proposed.window_tx ? h->proposed.window_tx : HDLC_DEFAULT_WINDOW;
	size_t bound;

	(void)apdu_len;
	/* Negotiation only lowers what we proposed, so this bound holds for
	 * the whole session, before SNRM/UA as after. */
	if (info > HDLC_MAX_INFO)
		info = HDLC_MAX_INFO;
	if (win > 7)
		win = 7;
	bound = (info + 17 < 64 ? 64 : info + 17) * win;
	return now > bound ? now : bound;
}

static bool
hd_idle(const struct dlms_link *l)
{
	const struct hdlc_link *h = &l->u.hl;

	return !h->rx_active && h->in_len == h->in_off && !hdlc_link_tx_busy(h);
}

static void
hd_set_rxbuf(struct dlms_link *l, uint8_t *buf, size_t cap)
{
	l->u.hl.rxbuf = buf;
	l->u.hl.rxcap = cap;
	l->u.hl.rx_len = 0;
}

const struct dlms_link_ops dlms_link_hdlc_ops = {
    .name = "hdlc",
    .connect = hd_connect,
    .disconnect = hd_disconnect,
    .send = hd_send,
    .push = hd_push,
    .feed = hd_feed,
    .poll = hd_poll,
    .resend = hd_resend,
    .tx_busy = hd_tx_busy,
    .out_max = hd_out_max,
    .idle = hd_idle,
    .set_rxbuf = hd_set_rxbuf,
    .out_pending = hd_out_pending,
};

/* ---- common ------------------------------------------------------------- */

int
dlms_link_init(struct dlms_link *l, const struct dlms_link_config *cfg)
{
	struct hdlc_link_config hc;

	if (cfg == NULL || cfg->rxbuf == NULL)
		return METER_EINVAL;
	memset(l, 0, sizeof(*l));
	l->server = cfg->server;
	switch (cfg->framing) {
	case DLMS_FRAMING_WRAPPER:
		l->ops = &dlms_link_wrapper_ops;
		l->local_wport = cfg->local_wport;
		l->remote_wport = cfg->remote_wport;
		l->any_remote = cfg->server && cfg->remote_wport == 0;
		return wrapper_stream_init(&l->u.ws, cfg->rxbuf, cfg->rxcap, 0);
	case DLMS_FRAMING_HDLC:
		l->ops = &dlms_link_hdlc_ops;
		memset(&hc, 0, sizeof(hc));
		hc.role = cfg->server ? HDLC_SERVER : HDLC_CLIENT;
		hc.local = cfg->hdlc_local;
		hc.remote = cfg->hdlc_remote;
		hc.params = cfg->hdlc_params;
		hc.send_params = true;
		hc.rxbuf = cfg->rxbuf;
		hc.rxcap = cfg->rxcap;
		return hdlc_link_init(&l->u.hl, &hc);
	default:
		return METER_EINVAL;
	}
}

int
dlms_link_connect(struct dlms_link *l, struct mbuf *out)
{
	return l->ops->connect(l, out);
}

int
dlms_link_disconnect(struct dlms_link *l, struct mbuf *out)
{
	return l->ops->disconnect(l, out);
}

int
dlms_link_send(struct dlms_link *l, const uint8_t *apdu, size_t len, struct mbuf *out)
{
	return l->ops->send(l, apdu, len, out);
}

int
dlms_link_push(struct dlms_link *l, const uint8_t *apdu, size_t len, struct mbuf *out)
{
	return l->ops->push(l, apdu, len, out);
}

size_t
dlms_link_feed(struct dlms_link *l, const uint8_t *p, size_t n)
{
	return l->ops->feed(l, p, n);
}

int
dlms_link_poll(struct dlms_link *l, struct mbuf *out, struct dlms_link_event *ev)
{
	return l->ops->poll(l, out, ev);
}

int
dlms_link_resend(struct dlms_link *l, struct mbuf *out)
{
	return l->ops->resend(l, out);
}

bool
dlms_link_tx_busy(const struct dlms_link *l)
{
	return l->ops->tx_busy(l);
}

size_t
dlms_link_out_max(const struct dlms_link *l, size_t apdu_len)
{
	return l->ops->out_max(l, apdu_len);
}

bool
dlms_link_idle(const struct dlms_link *l)
{
	return l->ops->idle(l);
}

bool
dlms_link_out_pending(const struct dlms_link *l)
{
	return l->ops->out_pending(l);
}

void
dlms_link_set_rxbuf(struct dlms_link *l, uint8_t *buf, size_t cap)
{
	l->ops->set_rxbuf(l, buf, cap);
}

const char *
dlms_framing_name(int framing)
{
	switch (framing) {
	case DLMS_FRAMING_WRAPPER:
		return "wrapper";
	case DLMS_FRAMING_HDLC:
		return "hdlc";
	default:
		return "?";
	}
}
