/*
 * test_dlms_engine.c: the client session engine against the server session
 * engine, in memory.  The test shuttles bytes between them (whole, one
 * byte at a time, or in random chunks, each chunk in an allocation of its
 * exact size so ASan sees over-reads) over the wrapper and over HDLC, and
 * checks what the client reports: association with each mechanism and with
 * ciphering, refusals with the right result and diagnostic, GET/SET/ACTION,
 * GET with-list, a 30-day load profile read by range in blocks and checked
 * row by row, invocation-counter replays, wrong invoke ids, trailing bytes,
 * timeouts, pushes (also between a request and its answer, and forged
 * ones) and release.  Corpus pushes are fed to a client as a meter would
 * send them.
 *
 * With DLMS_ENGINE_RECORD=dir set, the server's bytes of the fuzzing
 * scenarios are written there as seeds for tests/fuzz/fuzz_client.c.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cosem_time.h"
#include "dlms_client.h"
#include "dlms_server.h"
#include "meter_error.h"
#include "vectors.h"

#define BIG    (256 * 1024)
#define SMALL  4096
#define OUTCAP (512 * 1024)
#define MAXEV  8192

enum chunking { WHOLE, BYTES, RANDOM };

/* ---- the simulated meter: an object model behind dlms_server_ops -------- */

#define PROFILE_ROWS   3840       /* 40 days of 15 minutes */
#define PROFILE_START  1708819200 /* 2024-02-25T00:00:00Z */
#define PROFILE_PERIOD 900
#define RANGE_FIRST    480  /* day 5 */
#define RANGE_ROWS     2880 /* 30 days */
#define BIG_VALUE      3000

struct model {
	uint8_t serial[32];
	size_t serial_len;
	uint8_t big[BIG_VALUE + 8];
	size_t big_len;
	bool breaker; /* output_state */
	int gets, sets, actions;
	/* fault injection */
	int wrong_invoke_id; /* responses left to spoil */
	int trailing;        /* bytes to append to each response */
	bool replay_counter; /* reset the server's send counter once */
};

static const struct obis O_CLOCK = {{0, 0, 1, 0, 0, 255}};
static const struct obis O_SERIAL = {{0, 0, 96, 1, 0, 255}};
static const struct obis O_BIG = {{0, 0, 96, 99, 0, 255}};
static const struct obis O_APLUS = {{1, 0, 1, 8, 0, 255}};
static const struct obis O_RPLUS = {{1, 0, 3, 8, 0, 255}};
static const struct obis O_PROFILE = {{1, 0, 99, 1, 0, 255}};
static const struct obis O_BREAKER = {{0, 0, 96, 3, 10, 255}};
static const struct obis O_ECHO = {{0, 0, 96, 99, 1, 255}};

static const struct xdlms_capture_obj COLUMNS[6] = {
    {8, {{0, 0, 1, 0, 0, 255}}, 2, 0}, {1, {{0, 0, 96, 10, 1, 255}}, 2, 0},
    {3, {{1, 0, 1, 8, 0, 255}}, 2, 0}, {3, {{1, 0, 2, 8, 0, 255}}, 2, 0},
    {3, {{1, 0, 3, 8, 0, 255}}, 2, 0}, {3, {{1, 0, 4, 8, 0, 255}}, 2, 0},
};

static uint32_t
row_value(uint32_t row, int col)
{
	switch (col) {
	case 1:
		return row % 251;
	case 2:
		return 100000 + row * 3;
	case 3:
		return row;
	case 4:
		return 2 * row + 5;
	default:
		return 7 * row + 1;
	}
}

static void
put_row(struct mbuf *b, uint32_t row, const int *cols, int ncols)
{
	axdr_put_structure(b, (uint32_t)ncols);
	for (int k = 0; k < ncols; k++) {
		if (cols[k] == 0) {
			struct cosem_datetime dt;
			cosem_datetime_from_utc(PROFILE_START + (int64_t)row * PROFILE_PERIOD,
			                        &COSEM_TZ_UTC, &dt);
			axdr_put_datetime_octets(b, &dt);
		} else if (cols[k] == 1) {
			axdr_put_unsigned(b, (uint8_t)row_value(row, 1));
		} else {
			axdr_put_double_long_unsigned(b, row_value(row, cols[k]));
		}
	}
}

static int
node_utc(const struct axdr_node *n, int64_t *utc)
{
	struct cosem_datetime dt;

	if (n == NULL || n->tag != AXDR_OCTET_STRING || n->len != 12)
		return -1;
	if (cosem_datetime_decode(n->ptr, &dt) || cosem_datetime_to_utc(&dt, &COSEM_TZ_UTC, utc))
		return -1;
	return 0;
}

static int
profile_get(const struct dlms_selective *sel, struct mbuf *out)
{
	uint32_t first = 0, last = PROFILE_ROWS - 1;
	int cols[6] = {0, 1, 2, 3, 4, 5}, ncols = 6;

	if (sel && sel->selector == XDLMS_ACCESS_RANGE) {
		int64_t from, to;

		if (!sel->range_ok || node_utc(sel->range.from, &from) ||
		    node_utc(sel->range.to, &to))
			return XDLMS_DAR_OTHER_REASON;
		if (from < PROFILE_START)
			from = PROFILE_START;
		first = (uint32_t)((from - PROFILE_START + PROFILE_PERIOD - 1) / PROFILE_PERIOD);
		last = to < PROFILE_START ? 0 : (uint32_t)((to - PROFILE_START) / PROFILE_PERIOD);
		if (last >= PROFILE_ROWS)
			last = PROFILE_ROWS - 1;
		if (sel->range.n_selected) {
			ncols = 0;
			for (uint32_t i = 0; i < sel->range.n_selected && ncols < 6; i++) {
				struct xdlms_capture_obj c;
				const struct axdr_node *n = axdr_child(sel->range.selected, i);
				if (xdlms_capture_obj_from_node(n, &c))
					return XDLMS_DAR_OTHER_REASON;
				for (int k = 0; k < 6; k++)
					if (c.class_id == COLUMNS[k].class_id &&
					    obis_eq(&c.obis, &COLUMNS[k].obis))
						cols[ncols++] = k;
			}
		}
	} else if (sel && sel->selector == XDLMS_ACCESS_ENTRY) {
		const struct xdlms_entry *e = &sel->entry;
		if (!sel->entry_ok || e->from_entry == 0)
			return XDLMS_DAR_OTHER_REASON;
		first = e->from_entry - 1;
		last = e->to_entry ? e->to_entry - 1 : PROFILE_ROWS - 1;
		if (last >= PROFILE_ROWS)
			last = PROFILE_ROWS - 1;
		int fv = e->from_value ? e->from_value - 1 : 0;
		int tv = e->to_value ? e->to_value - 1 : 5;
		ncols = 0;
		for (int k = fv; k <= tv && k < 6; k++)
			cols[ncols++] = k;
	} else if (sel) {
		return XDLMS_DAR_OTHER_REASON;
	}
	if (first > last) {
		axdr_put_array(out, 0);
		return XDLMS_DAR_SUCCESS;
	}
	axdr_put_array(out, last - first + 1);
	for (uint32_t r = first; r <= last; r++)
		put_row(out, r, cols, ncols);
	return XDLMS_DAR_SUCCESS;
}

static int
model_get(void *arg, const struct dlms_server_req *rq, struct mbuf *out)
{
	struct model *m = arg;
	const struct xdlms_desc *d = &rq->desc;

	m->gets++;
	if (d->class_id == 8 && obis_eq(&d->obis, &O_CLOCK) && d->id == 2) {
		struct cosem_datetime dt;
		cosem_datetime_from_utc(PROFILE_START, &COSEM_TZ_CPH, &dt);
		axdr_put_datetime_octets(out, &dt);
		return XDLMS_DAR_SUCCESS;
	}
	if (d->class_id == 1 && obis_eq(&d->obis, &O_SERIAL) && d->id == 2) {
		axdr_put_visible_string(out, (const char *)m->serial, (uint32_t)m->serial_len);
		return XDLMS_DAR_SUCCESS;
	}
	if (d->class_id == 1 && obis_eq(&d->obis, &O_BIG) && d->id == 2) {
		axdr_put_octet_string(out, m->big, (uint32_t)m->big_len);
		return XDLMS_DAR_SUCCESS;
	}
	if (d->class_id == 3 && obis_eq(&d->obis, &O_APLUS)) {
		if (d->id == 2) {
			axdr_put_double_long_unsigned(out, 123456);
			return XDLMS_DAR_SUCCESS;
		}
		if (d->id == 3) {
			axdr_put_structure(out, 2);
			axdr_put_integer(out, 1);
			axdr_put_enum(out, 30);
			return XDLMS_DAR_SUCCESS;
		}
	}
	if (d->class_id == 70 && obis_eq(&d->obis, &O_BREAKER) && d->id == 2) {
		axdr_put_boolean(out, m->breaker);
		return XDLMS_DAR_SUCCESS;
	}
	if (d->class_id == 7 && obis_eq(&d->obis, &O_PROFILE) && d->id == 2)
		return profile_get(rq->sel, out);
	return XDLMS_DAR_OBJECT_UNDEFINED;
}

static int
model_set(void *arg, const struct dlms_server_req *rq, const uint8_t *data, size_t len)
{
	struct model *m = arg;
	const struct xdlms_desc *d = &rq->desc;
	struct axdr_node n[2];
	size_t nn;

	m->sets++;
	if (axdr_decode(data, len, n, 2, &nn) != (ssize_t)len)
		return XDLMS_DAR_TYPE_UNMATCHED;
	if (d->class_id == 1 && obis_eq(&d->obis, &O_SERIAL) && d->id == 2) {
		if (n[0].tag != AXDR_VISIBLE_STRING || n[0].len > sizeof(m->serial))
			return XDLMS_DAR_TYPE_UNMATCHED;
		memcpy(m->serial, n[0].ptr, n[0].len);
		m->serial_len = n[0].len;
		return XDLMS_DAR_SUCCESS;
	}
	if (d->class_id == 1 && obis_eq(&d->obis, &O_BIG) && d->id == 2) {
		if (n[0].tag != AXDR_OCTET_STRING || n[0].len > BIG_VALUE)
			return XDLMS_DAR_TYPE_UNMATCHED;
		memcpy(m->big, n[0].ptr, n[0].len);
		m->big_len = n[0].len;
		return XDLMS_DAR_SUCCESS;
	}
	if (d->class_id == 8 && obis_eq(&d->obis, &O_CLOCK))
		return XDLMS_DAR_READ_WRITE_DENIED;
	return XDLMS_DAR_OBJECT_UNDEFINED;
}

static int
model_action(void *arg, const struct dlms_server_req *rq, const uint8_t *params, size_t len,
             struct mbuf *out)
{
	struct model *m = arg;
	const struct xdlms_desc *d = &rq->desc;

	m->actions++;
	if (d->class_id == 70 && obis_eq(&d->obis, &O_BREAKER) && (d->id == 1 || d->id == 2)) {
		if (params == NULL || len != 2 || params[0] != AXDR_INTEGER)
			return XDLMS_AR_TYPE_UNMATCHED;
		m->breaker = d->id == 2;
		return XDLMS_AR_SUCCESS;
	}
	if (d->class_id == 1 && obis_eq(&d->obis, &O_ECHO) && d->id == 1) {
		/* Returns how many parameter bytes arrived and their sum. */
		uint32_t sum = 0;
		for (size_t i = 0; i < len; i++)
			sum += params[i];
		axdr_put_structure(out, 2);
		axdr_put_double_long_unsigned(out, (uint32_t)len);
		axdr_put_double_long_unsigned(out, sum);
		return XDLMS_AR_SUCCESS;
	}
	return XDLMS_AR_OBJECT_UNDEFINED;
}

static void
model_tamper(void *arg, struct dlms_server *s, uint8_t *apdu, size_t *len, size_t cap)
{
	struct model *m = arg;

	if (m->wrong_invoke_id && *len >= 3 && apdu[0] >= 0xc4 && apdu[0] <= 0xc7) {
		m->wrong_invoke_id--;
		apdu[2] ^= 0x05;
	}
	if (m->trailing && *len + (size_t)m->trailing <= cap) {
		memset(apdu + *len, 0xa5, (size_t)m->trailing);
		*len += (size_t)m->trailing;
	}
	if (m->replay_counter) {
		m->replay_counter = false;
		s->tx_counter -= 3; /* a counter the client has already seen */
	}
}

static const struct dlms_server_ops MODEL_OPS = {
    .get = model_get,
    .set = model_set,
    .action = model_action,
    .tamper = model_tamper,
};

/* ---- the pair --------------------------------------------------------------- */

static const uint8_t KEY_EK[16] = "0123456789ABCDEF";
static const uint8_t KEY_AK[16] = "ak-ak-ak-ak-ak-a";
static const uint8_t TITLE_C[8] = "AMMD0001";
static const uint8_t TITLE_S[8] = "KAM12345";
static const uint8_t CHAL_C[16] = "client-challenge";
static const uint8_t CHAL_S[16] = "server-challenge";
static const char PASSWORD[] = "00000000";

struct rec {
	int type, err;
	uint32_t index;
	uint8_t dar, result, diag, service_error;
	size_t off, len; /* data in the arena */
	uint32_t long_iip;
};

struct pair {
	struct dlms_client c;
	struct dlms_server s;
	struct dlms_client_config cc;
	struct dlms_server_config sc;
	struct dlms_server_policy pol;
	struct model m;
	uint8_t c_rx[SMALL], c_tx[SMALL], c_work[SMALL], c_data[BIG];
	uint8_t s_rx[SMALL], s_tx[SMALL], s_work[SMALL], s_data[BIG];
	uint8_t c_outbuf[OUTCAP], s_outbuf[OUTCAP], wire[OUTCAP];
	struct mbuf cout, sout;
	/* Output as the callers handle it: out holds ccap/scap bytes (0: all
	 * of *_outbuf); poll until NONE, write out (to the *_q "socket") and
	 * poll again while the engine says more is pending. */
	size_t ccap, scap;
	uint8_t c_q[OUTCAP], s_q[OUTCAP];
	size_t c_qlen, s_qlen;
	int c_drains, s_drains;
	enum chunking how;
	bool drop_server; /* lose what the server sends */
	struct rec ev[MAXEV];
	int n_ev;
	uint8_t arena[2 * BIG];
	size_t arena_len;
	int s_assoc, s_reject, s_released, s_disc, s_errors, s_served, s_last_err;
	uint8_t s_diag;
	/* seeds for the fuzzer */
	uint8_t *recbuf;
	size_t rec_len;
};

static uint32_t rng = 4242;

static size_t
rnd(size_t n)
{
	rng = rng * 1103515245u + 12345u;
	return (rng >> 8) % n;
}

enum { HDLC128 = 1, CIPHER = 2, HLS = 4, LLS = 8 };

static struct pair *
pair_new(int framing, int flags)
{
	struct pair *p = calloc(1, sizeof(*p));

	cr_assert_not_null(p);
	p->how = WHOLE;
	memcpy(p->m.serial, "KAM-000001", 10);
	p->m.serial_len = 10;
	p->m.breaker = true;

	p->pol.mechanisms = 1u << ACSE_MECH_NONE | 1u << ACSE_MECH_LLS | 1u << ACSE_MECH_HLS_GMAC;
	p->pol.password = (const uint8_t *)PASSWORD;
	p->pol.password_len = 8;
	p->pol.ciphering_allowed = true;
	memcpy(p->pol.keys.ek, KEY_EK, 16);
	memcpy(p->pol.keys.ak, KEY_AK, 16);
	memcpy(p->pol.system_title, TITLE_S, 8);
	p->pol.max_pdu = 512;

	p->sc.framing = framing;
	p->sc.server_wport = 1;
	p->sc.hdlc_server = (struct hdlc_addr){1, 17, 2};
	p->sc.policy = &p->pol;
	p->sc.ops = &MODEL_OPS;
	p->sc.arg = &p->m;
	p->sc.buf =
	    (struct dlms_buffers){p->s_rx,   sizeof(p->s_rx),   p->s_tx,   sizeof(p->s_tx),
	                          p->s_work, sizeof(p->s_work), p->s_data, sizeof(p->s_data)};
	p->sc.challenge = CHAL_S;
	p->sc.challenge_len = sizeof(CHAL_S);

	p->cc.framing = framing;
	p->cc.client_wport = 16;
	p->cc.server_wport = 1;
	p->cc.hdlc_client = (struct hdlc_addr){16, 0, 1};
	p->cc.hdlc_server = (struct hdlc_addr){1, 17, 2};
	if (flags & HDLC128)
		p->cc.hdlc_params = (struct hdlc_params){128, 128, 1, 1};
	else
		p->cc.hdlc_params = (struct hdlc_params){1024, 1024, 7, 7};
	p->sc.hdlc_params = (struct hdlc_params){2030, 2030, 7, 7};
	p->cc.mechanism = flags & HLS   ? ACSE_MECH_HLS_GMAC
	                  : flags & LLS ? ACSE_MECH_LLS
	                                : ACSE_MECH_NONE;
	p->cc.password = (const uint8_t *)PASSWORD;
	p->cc.password_len = 8;
	p->cc.challenge = CHAL_C;
	p->cc.challenge_len = sizeof(CHAL_C);
	p->cc.ciphering = (flags & CIPHER) != 0;
	memcpy(p->cc.keys.ek, KEY_EK, 16);
	memcpy(p->cc.keys.ak, KEY_AK, 16);
	memcpy(p->cc.system_title, TITLE_C, 8);
	p->cc.tx_counter = 1000;
	p->cc.max_pdu = 1024;
	p->cc.timeout_ms = 5000;
	p->cc.buf =
	    (struct dlms_buffers){p->c_rx,   sizeof(p->c_rx),   p->c_tx,   sizeof(p->c_tx),
	                          p->c_work, sizeof(p->c_work), p->c_data, sizeof(p->c_data)};
	mbuf_init(&p->cout, p->c_outbuf, sizeof(p->c_outbuf));
	mbuf_init(&p->sout, p->s_outbuf, sizeof(p->s_outbuf));
	return p;
}

static void
pair_init(struct pair *p)
{
	cr_assert_eq(dlms_server_init(&p->s, &p->sc), 0);
	p->s.tx_counter = 500;
	cr_assert_eq(dlms_client_init(&p->c, &p->cc), 0);
	cr_assert_geq(sizeof(p->c_outbuf), dlms_client_out_max(&p->c));
}

static void
pair_free(struct pair *p)
{
	free(p->recbuf);
	free(p);
}

static void
client_record(struct pair *p, const struct dlms_client_event *e)
{
	struct rec *r;

	cr_assert_lt(p->n_ev, MAXEV);
	r = &p->ev[p->n_ev++];
	r->type = e->type;
	r->err = e->err;
	r->index = e->index;
	r->dar = e->dar;
	r->result = e->result;
	r->diag = e->diag;
	r->service_error = e->service_error;
	r->long_iip = e->long_iip;
	r->off = p->arena_len;
	r->len = e->data_len;
	if (e->data_len) {
		cr_assert_not_null(e->data);
		cr_assert_leq(p->arena_len + e->data_len, sizeof(p->arena));
		memcpy(p->arena + p->arena_len, e->data, e->data_len);
		p->arena_len += e->data_len;
	}
}

/* Write what one side's out holds to its queue ("the socket"). */
static void
spill(struct mbuf *out, uint8_t *buf, size_t cap, uint8_t *q, size_t *qlen)
{
	cr_assert_eq(out->err, 0, "output overrun (ENOSPC latched)");
	cr_assert_leq(out->len, cap ? cap : OUTCAP);
	cr_assert_leq(*qlen + out->len, (size_t)OUTCAP);
	memcpy(q + *qlen, buf, out->len);
	*qlen += out->len;
	mbuf_init(out, buf, cap ? cap : OUTCAP);
}

static void
client_pump(struct pair *p)
{
	struct dlms_client_event e;

	for (int guard = 0;; guard++) {
		cr_assert_lt(guard, 100000, "the client stays pending");
		while (dlms_client_poll(&p->c, &p->cout, &e) != DLMS_CEV_NONE)
			client_record(p, &e);
		cr_assert_eq(p->cout.err, 0);
		if (!dlms_client_out_pending(&p->c))
			break;
		p->c_drains++;
		spill(&p->cout, p->c_outbuf, p->ccap, p->c_q, &p->c_qlen);
	}
}

static void
server_pump(struct pair *p)
{
	struct dlms_server_event e;

again:
	while (dlms_server_poll(&p->s, &p->sout, &e) != DLMS_SEV_NONE) {
		switch (e.type) {
		case DLMS_SEV_ASSOCIATED:
			p->s_assoc++;
			break;
		case DLMS_SEV_REJECTED:
			p->s_reject++;
			p->s_diag = e.diag;
			break;
		case DLMS_SEV_RELEASED:
			p->s_released++;
			break;
		case DLMS_SEV_DISCONNECTED:
			p->s_disc++;
			break;
		case DLMS_SEV_ERROR:
			p->s_errors++;
			p->s_last_err = e.err;
			break;
		case DLMS_SEV_SERVED:
			p->s_served++;
			break;
		default:
			break;
		}
	}
	cr_assert_eq(p->sout.err, 0);
	if (dlms_server_out_pending(&p->s)) {
		cr_assert_lt(p->s_drains++, 1000000, "the server stays pending");
		spill(&p->sout, p->s_outbuf, p->scap, p->s_q, &p->s_qlen);
		goto again;
	}
}

/* Feed n bytes to one side in the pair's chunking. */
static void
deliver(struct pair *p, bool to_server, const uint8_t *bytes, size_t n)
{
	size_t off = 0;

	while (off < n) {
		size_t k = p->how == WHOLE ? n - off : p->how == BYTES ? 1 : 1 + rnd(97);
		if (k > n - off)
			k = n - off;
		uint8_t *chunk = malloc(k);
		memcpy(chunk, bytes + off, k);
		size_t taken = 0;
		int guard = 0;
		while (taken < k) {
			cr_assert_lt(guard++, 100000, "engine stopped taking input");
			if (to_server) {
				taken += dlms_server_feed(&p->s, chunk + taken, k - taken);
				server_pump(p);
			} else {
				taken += dlms_client_feed(&p->c, chunk + taken, k - taken);
				client_pump(p);
			}
		}
		free(chunk);
		off += k;
	}
}

/* Move bytes both ways until both sides are quiet. */
static void
run(struct pair *p)
{
	client_pump(p);
	for (int round = 0; round < 200000; round++) {
		size_t n;

		spill(&p->cout, p->c_outbuf, p->ccap, p->c_q, &p->c_qlen);
		spill(&p->sout, p->s_outbuf, p->scap, p->s_q, &p->s_qlen);
		if (p->c_qlen) {
			n = p->c_qlen;
			memcpy(p->wire, p->c_q, n);
			p->c_qlen = 0;
			deliver(p, true, p->wire, n);
			continue;
		}
		if (p->s_qlen) {
			n = p->s_qlen;
			memcpy(p->wire, p->s_q, n);
			p->s_qlen = 0;
			if (p->drop_server)
				continue;
			if (p->recbuf) {
				p->recbuf = realloc(p->recbuf, p->rec_len + n);
				memcpy(p->recbuf + p->rec_len, p->wire, n);
				p->rec_len += n;
			}
			deliver(p, false, p->wire, n);
			continue;
		}
		client_pump(p);
		if (p->cout.len == 0 && p->sout.len == 0 && p->c_qlen == 0 && p->s_qlen == 0)
			return;
	}
	cr_assert_fail("the engines never went quiet");
}

static const struct rec *
last_ev(struct pair *p, int type)
{
	for (int i = p->n_ev - 1; i >= 0; i--)
		if (p->ev[i].type == type)
			return &p->ev[i];
	return NULL;
}

static void
open_ok(struct pair *p)
{
	cr_assert_eq(dlms_client_open(&p->c, &p->cout), 0);
	run(p);
	cr_assert_not_null(last_ev(p, DLMS_CEV_ASSOCIATED), "no association; last event %d err %d",
	                   p->n_ev ? p->ev[p->n_ev - 1].type : -1,
	                   p->n_ev ? p->ev[p->n_ev - 1].err : 0);
	cr_assert_eq(p->c.state, DLMS_CLIENT_READY);
	cr_assert_eq(p->s.state, DLMS_SERVER_ASSOCIATED);
	cr_assert_eq(p->s_assoc, 1);
}

static void
release_ok(struct pair *p)
{
	cr_assert_eq(dlms_client_release(&p->c, &p->cout), 0);
	run(p);
	const struct rec *r = last_ev(p, DLMS_CEV_RELEASED);
	cr_assert_not_null(r);
	cr_assert_eq(r->err, 0);
	cr_assert_eq(p->c.state, DLMS_CLIENT_CLOSED);
	cr_assert_eq(p->s_released, 1);
	if (p->cc.framing == DLMS_FRAMING_HDLC)
		cr_assert_eq(p->s_disc, 1);
}

/* GET items, run, and return the index of the first RESULT event. */
static int
get(struct pair *p, const struct dlms_get_item *items, uint32_t n)
{
	int first = p->n_ev;

	cr_assert_eq(dlms_client_get(&p->c, &p->cout, items, n), 0);
	cr_assert_eq(p->c.state, DLMS_CLIENT_BUSY);
	run(p);
	cr_assert_eq(p->c.state, DLMS_CLIENT_READY);
	/* n RESULTs in order, then DONE */
	for (uint32_t i = 0; i < n; i++) {
		cr_assert_eq(p->ev[first + (int)i].type, DLMS_CEV_RESULT, "event %u", i);
		cr_assert_eq(p->ev[first + (int)i].index, i);
	}
	cr_assert_eq(p->ev[first + (int)n].type, DLMS_CEV_DONE);
	cr_assert_eq(p->n_ev, first + (int)n + 1);
	return first;
}

static const uint8_t *
ev_data(struct pair *p, int i)
{
	return p->arena + p->ev[i].off;
}

static void
expect_u32(struct pair *p, int i, uint32_t v)
{
	struct axdr_node n[2];
	size_t nn;

	cr_assert_eq(p->ev[i].err, 0, "item err %d dar %d", p->ev[i].err, p->ev[i].dar);
	cr_assert_eq(axdr_decode(ev_data(p, i), p->ev[i].len, n, 2, &nn), (ssize_t)p->ev[i].len);
	cr_assert_eq(n[0].tag, AXDR_DOUBLE_LONG_UNSIGNED);
	cr_assert_eq(n[0].v.u, v);
}

#define ITEM(cls, o, a)                                                                            \
	{                                                                                          \
		{(cls), (o), (a)}, NULL                                                            \
	}

/* ---- association ------------------------------------------------------------ */

struct assoc_case {
	int framing, flags;
	enum chunking how;
};

static void
assoc_and_read(const struct assoc_case *ac)
{
	struct pair *p = pair_new(ac->framing, ac->flags);
	struct dlms_get_item it[1] = {ITEM(3, O_APLUS, 2)};
	uint32_t gen0, gen1, ms;

	p->how = ac->how;
	pair_init(p);
	size_t om0 = dlms_client_out_max(&p->c);
	gen0 = dlms_client_timer(&p->c, &ms);
	cr_assert_eq(ms, 0);
	cr_assert_eq(dlms_client_open(&p->c, &p->cout), 0);
	gen1 = dlms_client_timer(&p->c, &ms);
	cr_assert_neq(gen0, gen1);
	cr_assert_eq(ms, 5000);
	p->n_ev = 0;
	run(p);
	cr_assert_eq(p->n_ev, 1);
	cr_assert_eq(p->ev[0].type, DLMS_CEV_ASSOCIATED);
	cr_assert_eq(p->c.state, DLMS_CLIENT_READY);
	(void)dlms_client_timer(&p->c, &ms);
	cr_assert_eq(ms, 0, "timer left armed after association");
	cr_assert_eq(p->s.mechanism, p->cc.mechanism);
	cr_assert_eq(p->s.ciphered, p->cc.ciphering);
	cr_assert_eq(p->c.server_max_pdu, 512);
	cr_assert_leq(dlms_client_out_max(&p->c), om0, "out_max grew after negotiation");
	cr_assert(p->c.conformance & ACSE_CONF_GET);
	if (ac->flags & CIPHER) {
		cr_assert_eq(memcmp(p->c.server_title, TITLE_S, 8), 0);
		cr_assert_gt(p->c.tx_counter, 1000);
		cr_assert(p->c.rx_counter.seen);
		cr_assert_eq(p->s.rx_counter.last, p->c.tx_counter - 1);
	}
	int i = get(p, it, 1);
	expect_u32(p, i, 123456);
	if (ac->flags & CIPHER)
		cr_assert_eq(p->s.rx_counter.last, p->c.tx_counter - 1);
	release_ok(p);
	pair_free(p);
}

Test(dlms_engine, associate_each_mechanism)
{
	static const struct assoc_case cases[] = {
	    {DLMS_FRAMING_WRAPPER, 0, WHOLE},
	    {DLMS_FRAMING_WRAPPER, LLS, RANDOM},
	    {DLMS_FRAMING_WRAPPER, HLS, BYTES},
	    {DLMS_FRAMING_WRAPPER, CIPHER, RANDOM},
	    {DLMS_FRAMING_WRAPPER, CIPHER | LLS, WHOLE},
	    {DLMS_FRAMING_WRAPPER, CIPHER | HLS, BYTES},
	    {DLMS_FRAMING_HDLC, 0, BYTES},
	    {DLMS_FRAMING_HDLC, LLS, WHOLE},
	    {DLMS_FRAMING_HDLC, HLS | HDLC128, RANDOM},
	    {DLMS_FRAMING_HDLC, CIPHER | HLS | HDLC128, BYTES},
	    {DLMS_FRAMING_HDLC, CIPHER, RANDOM},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		assoc_and_read(&cases[i]);
}

Test(dlms_engine, refusals)
{
	struct pair *p;
	const struct rec *r;

	/* Wrong LLS password: rejected-permanent, authentication-failure. */
	p = pair_new(DLMS_FRAMING_WRAPPER, LLS);
	p->cc.password = (const uint8_t *)"12345678";
	pair_init(p);
	cr_assert_eq(dlms_client_open(&p->c, &p->cout), 0);
	run(p);
	r = last_ev(p, DLMS_CEV_FAILED);
	cr_assert_not_null(r);
	cr_assert_eq(r->err, METER_EREJECTED);
	cr_assert_eq(r->result, ACSE_REJECTED_PERMANENT);
	cr_assert_eq(r->diag, ACSE_DIAG_AUTH_FAILURE);
	cr_assert_eq(p->c.state, DLMS_CLIENT_CLOSED);
	cr_assert_eq(p->s_reject, 1);
	cr_assert_eq(p->s.state, DLMS_SERVER_CONNECTED);
	pair_free(p);

	/* Ciphering asked of a server that has none: context not supported. */
	p = pair_new(DLMS_FRAMING_HDLC, CIPHER);
	p->pol.ciphering_allowed = false;
	pair_init(p);
	cr_assert_eq(dlms_client_open(&p->c, &p->cout), 0);
	run(p);
	r = last_ev(p, DLMS_CEV_FAILED);
	cr_assert_not_null(r);
	cr_assert_eq(r->err, METER_EREJECTED);
	cr_assert_eq(r->diag, ACSE_DIAG_CONTEXT_NOT_SUPPORTED);
	pair_free(p);

	/* A server that requires ciphering refuses plain LN the same way. */
	p = pair_new(DLMS_FRAMING_WRAPPER, LLS);
	p->pol.ciphering_required = true;
	pair_init(p);
	cr_assert_eq(dlms_client_open(&p->c, &p->cout), 0);
	run(p);
	cr_assert_eq(last_ev(p, DLMS_CEV_FAILED)->diag, ACSE_DIAG_CONTEXT_NOT_SUPPORTED);
	pair_free(p);

	/* Mechanism none where the meter wants authentication. */
	p = pair_new(DLMS_FRAMING_WRAPPER, 0);
	p->pol.mechanisms = 1u << ACSE_MECH_HLS_GMAC;
	pair_init(p);
	cr_assert_eq(dlms_client_open(&p->c, &p->cout), 0);
	run(p);
	cr_assert_eq(last_ev(p, DLMS_CEV_FAILED)->diag, ACSE_DIAG_AUTH_REQUIRED);
	pair_free(p);

	/* HLS-GMAC with a wrong authentication key: the AARE is accepted, pass 3
	 * is refused by the server, the client fails with EAUTH. */
	p = pair_new(DLMS_FRAMING_HDLC, HLS);
	p->cc.keys.ak[0] ^= 1;
	pair_init(p);
	cr_assert_eq(dlms_client_open(&p->c, &p->cout), 0);
	run(p);
	r = last_ev(p, DLMS_CEV_FAILED);
	cr_assert_not_null(r);
	cr_assert_eq(r->err, METER_EAUTH);
	cr_assert_eq(p->s_reject, 1);
	cr_assert_eq(p->s_diag, ACSE_DIAG_AUTH_FAILURE);
	cr_assert_eq(p->s.state, DLMS_SERVER_CONNECTED);
	cr_assert_eq(p->s_assoc, 0);
	pair_free(p);

	/* A server with the wrong key: the client refuses its f(CtoS). */
	p = pair_new(DLMS_FRAMING_WRAPPER, HLS);
	p->pol.keys.ek[3] ^= 0x80;
	pair_init(p);
	cr_assert_eq(dlms_client_open(&p->c, &p->cout), 0);
	run(p);
	r = last_ev(p, DLMS_CEV_FAILED);
	cr_assert_not_null(r);
	cr_assert_eq(r->err, METER_EAUTH);
	pair_free(p);

	/* Ciphered context with a wrong encryption key: the server cannot
	 * read the InitiateRequest and refuses the association. */
	p = pair_new(DLMS_FRAMING_WRAPPER, CIPHER | HLS);
	p->cc.keys.ek[15] ^= 1;
	pair_init(p);
	cr_assert_eq(dlms_client_open(&p->c, &p->cout), 0);
	run(p);
	r = last_ev(p, DLMS_CEV_FAILED);
	cr_assert_not_null(r);
	cr_assert_eq(r->err, METER_EREJECTED);
	cr_assert_eq(r->result, ACSE_REJECTED_PERMANENT);
	cr_assert_eq(p->s_assoc, 0);
	pair_free(p);
}

/* ---- services ---------------------------------------------------------------- */

static void
services(int framing, int flags, enum chunking how)
{
	struct pair *p = pair_new(framing, flags);
	struct axdr_node n[8];
	size_t nn;
	int i;

	p->how = how;
	pair_init(p);
	open_ok(p);

	/* GET with-list: five attributes, one undefined, in one request. */
	struct dlms_get_item list[5] = {ITEM(1, O_SERIAL, 2), ITEM(3, O_APLUS, 2),
	                                ITEM(3, O_APLUS, 3), ITEM(1, O_RPLUS, 2),
	                                ITEM(70, O_BREAKER, 2)};
	int served = p->s_served;
	i = get(p, list, 5);
	cr_assert_eq(p->s_served - served, 1, "with-list expected");
	cr_assert_eq(p->ev[i].err, 0);
	cr_assert_eq(axdr_decode(ev_data(p, i), p->ev[i].len, n, 8, &nn), (ssize_t)p->ev[i].len);
	cr_assert_eq(n[0].tag, AXDR_VISIBLE_STRING);
	cr_assert_eq(memcmp(n[0].ptr, "KAM-000001", 10), 0);
	expect_u32(p, i + 1, 123456);
	cr_assert_eq(axdr_decode(ev_data(p, i + 2), p->ev[i + 2].len, n, 8, &nn),
	             (ssize_t)p->ev[i + 2].len);
	cr_assert_eq(n[0].tag, AXDR_STRUCTURE);
	cr_assert_eq(n[2].tag, AXDR_ENUM);
	cr_assert_eq(n[2].v.u, 30);
	cr_assert_eq(p->ev[i + 3].err, METER_EACCESS);
	cr_assert_eq(p->ev[i + 3].dar, XDLMS_DAR_OBJECT_UNDEFINED);
	cr_assert_eq(p->ev[i + 3].len, 0);
	cr_assert_eq(p->ev[i + 4].err, 0);
	cr_assert_eq(ev_data(p, i + 4)[0], AXDR_BOOLEAN);
	cr_assert_eq(p->ev[i + 5].err, 0);

	/* SET normal, then read back; SET refused. */
	uint8_t v[16];
	struct mbuf b;
	struct xdlms_desc serial = {1, O_SERIAL, 2}, clock = {8, O_CLOCK, 2};
	mbuf_init(&b, v, sizeof(v));
	axdr_put_visible_string(&b, "NEW-SERIAL", 10);
	cr_assert_eq(dlms_client_set(&p->c, &p->cout, &serial, NULL, v, b.len), 0);
	run(p);
	cr_assert_eq(p->ev[p->n_ev - 2].type, DLMS_CEV_RESULT);
	cr_assert_eq(p->ev[p->n_ev - 2].err, 0);
	cr_assert_eq(p->ev[p->n_ev - 1].type, DLMS_CEV_DONE);
	cr_assert_eq(memcmp(p->m.serial, "NEW-SERIAL", 10), 0);
	cr_assert_eq(dlms_client_set(&p->c, &p->cout, &clock, NULL, v, b.len), 0);
	run(p);
	cr_assert_eq(p->ev[p->n_ev - 2].err, METER_EACCESS);
	cr_assert_eq(p->ev[p->n_ev - 2].dar, XDLMS_DAR_READ_WRITE_DENIED);

	/* ACTION: remote disconnect, then read the breaker state. */
	uint8_t zero[2] = {AXDR_INTEGER, 0};
	struct xdlms_desc disc = {70, O_BREAKER, 1};
	cr_assert_eq(dlms_client_action(&p->c, &p->cout, &disc, zero, 2), 0);
	run(p);
	cr_assert_eq(p->ev[p->n_ev - 2].err, 0);
	cr_assert_eq(p->ev[p->n_ev - 2].dar, 0);
	cr_assert_eq(p->m.breaker, false);
	struct dlms_get_item br[1] = {ITEM(70, O_BREAKER, 2)};
	i = get(p, br, 1);
	cr_assert_eq(p->ev[i].len, 2);
	cr_assert_eq(ev_data(p, i)[1], 0);
	/* an unknown method */
	struct xdlms_desc nomethod = {70, O_BREAKER, 9};
	cr_assert_eq(dlms_client_action(&p->c, &p->cout, &nomethod, NULL, 0), 0);
	run(p);
	cr_assert_eq(p->ev[p->n_ev - 2].err, METER_EACCESS);
	cr_assert_eq(p->ev[p->n_ev - 2].dar, XDLMS_AR_OBJECT_UNDEFINED);

	/* SET with datablocks: 3,000 bytes through a 512-byte PDU. */
	static uint8_t big[BIG_VALUE + 8];
	uint8_t raw[BIG_VALUE];
	for (size_t k = 0; k < sizeof(raw); k++)
		raw[k] = (uint8_t)(k * 7 + 3);
	mbuf_init(&b, big, sizeof(big));
	axdr_put_octet_string(&b, raw, sizeof(raw));
	struct xdlms_desc bigd = {1, O_BIG, 2};
	served = p->s_served;
	cr_assert_eq(dlms_client_set(&p->c, &p->cout, &bigd, NULL, big, b.len), 0);
	run(p);
	cr_assert_gt(p->s_served - served, 5, "blocks expected");
	cr_assert_eq(p->ev[p->n_ev - 2].type, DLMS_CEV_RESULT);
	cr_assert_eq(p->ev[p->n_ev - 2].err, 0);
	cr_assert_eq(p->m.big_len, sizeof(raw));
	cr_assert_eq(memcmp(p->m.big, raw, sizeof(raw)), 0);
	/* ... read back in GET datablocks */
	struct dlms_get_item bg[1] = {ITEM(1, O_BIG, 2)};
	i = get(p, bg, 1);
	cr_assert_eq(p->ev[i].len, b.len);
	cr_assert_eq(memcmp(ev_data(p, i), big, b.len), 0);

	/* ACTION with pblocks: 3,000 bytes of parameters. */
	struct xdlms_desc echo = {1, O_ECHO, 1};
	uint32_t sum = 0;
	for (size_t k = 0; k < b.len; k++)
		sum += big[k];
	cr_assert_eq(dlms_client_action(&p->c, &p->cout, &echo, big, b.len), 0);
	run(p);
	i = p->n_ev - 2;
	cr_assert_eq(p->ev[i].err, 0);
	cr_assert_eq(axdr_decode(ev_data(p, i), p->ev[i].len, n, 8, &nn), (ssize_t)p->ev[i].len);
	cr_assert_eq(n[1].v.u, b.len);
	cr_assert_eq(n[2].v.u, sum);

	release_ok(p);
	pair_free(p);
}

Test(dlms_engine, get_set_action_wrapper)
{
	services(DLMS_FRAMING_WRAPPER, 0, RANDOM);
}

Test(dlms_engine, get_set_action_hdlc_ciphered)
{
	services(DLMS_FRAMING_HDLC, CIPHER | HLS | HDLC128, RANDOM);
}

Test(dlms_engine, get_set_action_wrapper_ciphered_bytes)
{
	services(DLMS_FRAMING_WRAPPER, CIPHER | LLS, BYTES);
}

Test(dlms_engine, get_one_by_one_without_multiple_references)
{
	struct pair *p = pair_new(DLMS_FRAMING_WRAPPER, 0);
	struct dlms_get_item list[3] = {ITEM(3, O_APLUS, 2), ITEM(1, O_RPLUS, 2),
	                                ITEM(3, O_APLUS, 2)};
	int i;

	p->pol.conformance = ACSE_CONF_GET | ACSE_CONF_SET | ACSE_CONF_ACTION |
	                     ACSE_CONF_BLOCK_TRANSFER_WITH_GET | ACSE_CONF_SELECTIVE_ACCESS;
	pair_init(p);
	open_ok(p);
	cr_assert_eq(p->c.conformance & ACSE_CONF_MULTIPLE_REFERENCES, 0);
	i = get(p, list, 3);
	cr_assert_eq(p->s_served, 3);
	expect_u32(p, i, 123456);
	cr_assert_eq(p->ev[i + 1].dar, XDLMS_DAR_OBJECT_UNDEFINED);
	expect_u32(p, i + 2, 123456);

	/* No block transfer with SET: a large value is refused up front. */
	static uint8_t big[1200], zeros[1000];
	struct mbuf b;
	mbuf_init(&b, big, sizeof(big));
	axdr_put_octet_string(&b, zeros, sizeof(zeros));
	struct xdlms_desc bigd = {1, O_BIG, 2};
	cr_assert_eq(dlms_client_set(&p->c, &p->cout, &bigd, NULL, big, b.len), METER_ENOSPC);
	cr_assert_eq(p->c.state, DLMS_CLIENT_READY);
	pair_free(p);
}

/* ---- the 30-day load profile ------------------------------------------------- */

static void
check_profile(struct pair *p, int i, uint32_t first_row, uint32_t rows, const int *cols, int ncols)
{
	const uint8_t *d = ev_data(p, i);
	size_t len = p->ev[i].len, off;
	struct axdr_node n[16];
	uint32_t count;
	size_t nn;
	ssize_t k;

	cr_assert_eq(p->ev[i].err, 0, "profile err %d dar %d", p->ev[i].err, p->ev[i].dar);
	k = axdr_decode_header(d, len, AXDR_ARRAY, &count);
	cr_assert_gt(k, 0);
	cr_assert_eq(count, rows);
	off = (size_t)k;
	for (uint32_t r = 0; r < rows; r++) {
		uint32_t row = first_row + r;
		k = axdr_decode(d + off, len - off, n, 16, &nn);
		cr_assert_gt(k, 0, "row %u", r);
		cr_assert_eq(n[0].tag, AXDR_STRUCTURE);
		cr_assert_eq(n[0].len, (uint32_t)ncols);
		for (int c = 0; c < ncols; c++) {
			const struct axdr_node *f = &n[1 + c];
			if (cols[c] == 0) {
				struct cosem_datetime dt;
				int64_t utc;
				cr_assert_eq(f->tag, AXDR_OCTET_STRING);
				cr_assert_eq(cosem_datetime_decode(f->ptr, &dt), 0);
				cr_assert_eq(cosem_datetime_to_utc(&dt, NULL, &utc), 0);
				cr_assert_eq(utc, PROFILE_START + (int64_t)row * PROFILE_PERIOD,
				             "row %u", r);
			} else {
				cr_assert_eq(f->v.u, row_value(row, cols[c]), "row %u col %d", r,
				             cols[c]);
			}
		}
		off += (size_t)k;
	}
	cr_assert_eq(off, len);
}

static void
range_access(struct xdlms_access *acc, uint8_t *buf, size_t cap, uint32_t first_row, uint32_t rows,
             const struct xdlms_capture_obj *cols, uint32_t ncols)
{
	struct cosem_datetime from, to;
	struct mbuf b;

	cosem_datetime_from_utc(PROFILE_START + (int64_t)first_row * PROFILE_PERIOD, &COSEM_TZ_UTC,
	                        &from);
	cosem_datetime_from_utc(PROFILE_START + (int64_t)(first_row + rows - 1) * PROFILE_PERIOD,
	                        &COSEM_TZ_UTC, &to);
	/* as many meters send it: deviation and status not specified */
	from.deviation = COSEM_DEVIATION_UNSPEC;
	to.deviation = COSEM_DEVIATION_UNSPEC;
	from.status = to.status = COSEM_STATUS_UNSPEC;
	from.dow = 0xff;
	mbuf_init(&b, buf, cap);
	xdlms_put_range(&b, &COLUMNS[0], &from, &to, cols, ncols);
	cr_assert_eq(b.err, 0);
	memset(acc, 0, sizeof(*acc));
	acc->present = true;
	acc->selector = XDLMS_ACCESS_RANGE;
	acc->params = xdlms_data_raw(buf, (uint32_t)b.len);
}

static void
profile(int framing, int flags, enum chunking how, const char *record)
{
	struct pair *p = pair_new(framing, flags);
	static const int all[6] = {0, 1, 2, 3, 4, 5};
	uint8_t abuf[256];
	struct xdlms_access acc;
	int i;

	p->how = how;
	pair_init(p);
	open_ok(p);
	range_access(&acc, abuf, sizeof(abuf), RANGE_FIRST, RANGE_ROWS, NULL, 0);
	struct dlms_get_item it[1] = {{{7, O_PROFILE, 2}, &acc}};
	if (record)
		p->recbuf = malloc(1);
	int served = p->s_served;
	i = get(p, it, 1);
	check_profile(p, i, RANGE_FIRST, RANGE_ROWS, all, 6);
	cr_assert_gt(p->s_served - served, 100, "the profile came in blocks");
	cr_assert_gt(p->ev[i].len, 100000);
	if (record && getenv("DLMS_ENGINE_RECORD")) {
		char path[512];
		snprintf(path, sizeof(path), "%s/%s", getenv("DLMS_ENGINE_RECORD"), record);
		FILE *f = fopen(path, "wb");
		cr_assert_not_null(f);
		uint8_t mode = (uint8_t)((framing == DLMS_FRAMING_HDLC ? 1 : 0) | 2 |
		                         (flags & CIPHER ? 4 : 0) | (4 << 3));
		fwrite(&mode, 1, 1, f);
		/* The first kilobytes are enough for a seed. */
		fwrite(p->recbuf, 1, p->rec_len < 6000 ? p->rec_len : 6000, f);
		fclose(f);
	}
	release_ok(p);
	pair_free(p);
}

Test(dlms_engine, profile_30_days_wrapper)
{
	profile(DLMS_FRAMING_WRAPPER, 0, RANDOM, "get-wrapper");
}

Test(dlms_engine, profile_30_days_wrapper_ciphered)
{
	profile(DLMS_FRAMING_WRAPPER, CIPHER | HLS, RANDOM, "get-wrapper-ciphered");
}

Test(dlms_engine, profile_30_days_hdlc_128_window_1)
{
	profile(DLMS_FRAMING_HDLC, HDLC128, RANDOM, "get-hdlc");
}

Test(dlms_engine, profile_30_days_hdlc_ciphered_bytes, .timeout = 120)
{
	profile(DLMS_FRAMING_HDLC, HDLC128 | CIPHER | HLS, BYTES, "get-hdlc-ciphered");
}

/*
 * Drain and poll again: HDLC with information length 128 and window 7,
 * each side's output buffer one maximum frame, everything a side wrote
 * reaching the other in one read (a window of I-frames in one TCP
 * segment).  The 2,880-row profile comes through whole, in blocks, with
 * the engines handing their windows over frame by frame.
 */
Test(dlms_engine, profile_hdlc_window7_one_frame_buffers, .timeout = 120)
{
	struct pair *p = pair_new(DLMS_FRAMING_HDLC, 0);
	static const int all[6] = {0, 1, 2, 3, 4, 5};
	uint8_t abuf[256];
	struct xdlms_access acc;
	int i;

	p->cc.hdlc_params = (struct hdlc_params){128, 128, 7, 7};
	p->sc.hdlc_params = (struct hdlc_params){128, 128, 7, 7};
	pair_init(p);
	p->ccap = p->scap = dlms_client_out_max(&p->c) / 7; /* 128 + 17 */
	cr_assert_eq(p->ccap, 145);
	mbuf_init(&p->cout, p->c_outbuf, p->ccap);
	mbuf_init(&p->sout, p->s_outbuf, p->scap);
	open_ok(p);
	cr_assert_eq(p->c.link.u.hl.window_tx, 7);
	cr_assert_eq(p->s.link.u.hl.window_tx, 7);
	range_access(&acc, abuf, sizeof(abuf), RANGE_FIRST, RANGE_ROWS, NULL, 0);
	struct dlms_get_item it[1] = {{{7, O_PROFILE, 2}, &acc}};
	int served = p->s_served;
	i = get(p, it, 1);
	check_profile(p, i, RANGE_FIRST, RANGE_ROWS, all, 6);
	cr_assert_gt(p->s_served - served, 100, "the profile came in blocks");
	cr_assert_gt(p->ev[i].len, 100000);
	cr_assert_gt(p->s_drains, 100, "windows went out frame by frame");
	cr_assert_eq(p->s_errors, 0);
	release_ok(p);
	pair_free(p);
}

/*
 * Three GET requests pipelined in one TCP segment over the wrapper, to a
 * server whose output buffer holds one response: it answers all three,
 * one per drain, instead of failing the second.
 */
Test(dlms_engine, pipelined_requests_one_response_buffer)
{
	struct pair *p = pair_new(DLMS_FRAMING_WRAPPER, 0);
	struct dlms_get_item it[1] = {ITEM(1, O_SERIAL, 2)};
	static uint8_t req[256], rsp[256], three[768];

	pair_init(p);
	open_ok(p);
	cr_assert_eq(dlms_client_get(&p->c, &p->cout, it, 1), 0);
	size_t qlen = p->cout.len;
	cr_assert_leq(qlen, sizeof(req));
	memcpy(req, p->c_outbuf, qlen);
	int i = p->n_ev;
	run(p);
	cr_assert_eq(p->n_ev, i + 2);
	cr_assert_eq(p->ev[i].type, DLMS_CEV_RESULT);
	cr_assert_eq(p->ev[i].err, 0);
	cr_assert_eq(p->ev[i].len, 2 + 10);
	cr_assert_eq(memcmp(ev_data(p, i) + 2, "KAM-000001", 10), 0);

	/* the answer's size, from the same request once more */
	cr_assert_eq(dlms_server_feed(&p->s, req, qlen), qlen);
	server_pump(p);
	size_t rlen = p->sout.len;
	cr_assert_gt(rlen, WRAPPER_HEADER_LEN + 10);
	memcpy(rsp, p->s_outbuf, rlen);
	p->scap = rlen; /* just one response */
	mbuf_init(&p->sout, p->s_outbuf, p->scap);

	int served = p->s_served;
	for (int k = 0; k < 3; k++)
		memcpy(three + k * qlen, req, qlen);
	p->how = WHOLE;
	deliver(p, true, three, 3 * qlen);
	spill(&p->sout, p->s_outbuf, p->scap, p->s_q, &p->s_qlen);
	cr_assert_eq(p->s_errors, 0, "server error %d", p->s_last_err);
	cr_assert_eq(p->s_served - served, 3);
	cr_assert_geq(p->s_drains, 2);
	cr_assert_eq(p->s_qlen, 3 * rlen);
	for (int k = 0; k < 3; k++)
		cr_assert_eq(memcmp(p->s_q + k * rlen, rsp, rlen), 0, "answer %d", k);
	p->s_qlen = 0;
	pair_free(p);
}

Test(dlms_engine, profile_columns_and_entries)
{
	struct pair *p = pair_new(DLMS_FRAMING_WRAPPER, 0);
	uint8_t abuf[256];
	struct xdlms_access acc, ent;
	struct xdlms_entry e = {10, 19, 3, 4};
	struct mbuf b;
	int i;

	pair_init(p);
	open_ok(p);
	/* Two selected columns, one day. */
	struct xdlms_capture_obj sel[2] = {COLUMNS[0], COLUMNS[4]};
	range_access(&acc, abuf, sizeof(abuf), 100, 96, sel, 2);
	struct dlms_get_item it[1] = {{{7, O_PROFILE, 2}, &acc}};
	i = get(p, it, 1);
	static const int c04[2] = {0, 4};
	check_profile(p, i, 100, 96, c04, 2);

	/* Entry descriptor: entries 10..19, values 3..4; a range outside the
	 * buffer gives an empty array.  Both in one with-list. */
	uint8_t ebuf[64];
	mbuf_init(&b, ebuf, sizeof(ebuf));
	xdlms_put_entry(&b, &e);
	memset(&ent, 0, sizeof(ent));
	ent.present = true;
	ent.selector = XDLMS_ACCESS_ENTRY;
	ent.params = xdlms_data_raw(ebuf, (uint32_t)b.len);
	uint8_t abuf2[256];
	struct xdlms_access none;
	range_access(&none, abuf2, sizeof(abuf2), PROFILE_ROWS + 10, 5, NULL, 0);
	struct dlms_get_item two[2] = {{{7, O_PROFILE, 2}, &ent}, {{7, O_PROFILE, 2}, &none}};
	i = get(p, two, 2);
	static const int c23[2] = {2, 3};
	check_profile(p, i, 9, 10, c23, 2);
	check_profile(p, i + 1, 0, 0, c23, 0);
	pair_free(p);
}

Test(dlms_engine, result_larger_than_buffer)
{
	struct pair *p = pair_new(DLMS_FRAMING_WRAPPER, 0);
	uint8_t abuf[256];
	struct xdlms_access acc;
	int i;

	p->cc.buf.data_cap = 20000; /* a 30-day profile needs ~110 kB */
	pair_init(p);
	open_ok(p);
	range_access(&acc, abuf, sizeof(abuf), RANGE_FIRST, RANGE_ROWS, NULL, 0);
	struct dlms_get_item it[2] = {{{7, O_PROFILE, 2}, &acc}, ITEM(3, O_APLUS, 2)};
	p->pol.conformance = 0;
	p->c.conformance &= ~ACSE_CONF_MULTIPLE_REFERENCES; /* one by one */
	cr_assert_eq(dlms_client_get(&p->c, &p->cout, it, 1), 0);
	run(p);
	i = p->n_ev - 2;
	cr_assert_eq(p->ev[i].type, DLMS_CEV_RESULT);
	cr_assert_eq(p->ev[i].err, METER_ENOSPC);
	cr_assert_eq(p->ev[i + 1].type, DLMS_CEV_DONE);
	cr_assert_eq(p->ev[i + 1].err, METER_ENOSPC);
	cr_assert_eq(p->c.state, DLMS_CLIENT_READY);
	/* The association goes on. */
	i = get(p, it + 1, 1);
	expect_u32(p, i, 123456);
	pair_free(p);
}

/* ---- faults ----------------------------------------------------------------- */

Test(dlms_engine, invocation_counter_replay)
{
	struct pair *p = pair_new(DLMS_FRAMING_WRAPPER, CIPHER | HLS);
	struct dlms_get_item it[1] = {ITEM(3, O_APLUS, 2)};
	int i;

	pair_init(p);
	open_ok(p);
	i = get(p, it, 1);
	expect_u32(p, i, 123456);

	/* The meter sends with a counter the client has seen. */
	p->m.replay_counter = true;
	cr_assert_eq(dlms_client_get(&p->c, &p->cout, it, 1), 0);
	run(p);
	i = p->n_ev - 2;
	cr_assert_eq(p->ev[i].err, METER_EREPLAY);
	cr_assert_eq(p->ev[i + 1].type, DLMS_CEV_DONE);
	cr_assert_eq(p->ev[i + 1].err, METER_EREPLAY);
	cr_assert_eq(p->c.state, DLMS_CLIENT_READY);

	/* The client's counter goes back: the server refuses with an
	 * ExceptionResponse (invocation-counter-error). */
	p->c.tx_counter -= 2;
	cr_assert_eq(dlms_client_get(&p->c, &p->cout, it, 1), 0);
	run(p);
	i = p->n_ev - 1;
	cr_assert_eq(p->ev[i].type, DLMS_CEV_DONE);
	cr_assert_eq(p->ev[i].err, METER_EEXCEPTION);
	cr_assert_eq(p->ev[i].service_error, XDLMS_SERVICE_INVOCATION_COUNTER_ERROR);
	cr_assert_eq(p->s_last_err, METER_EREPLAY);
	/* Counters moving forward again work. */
	p->c.tx_counter += 10;
	p->s.tx_counter += 10;
	i = get(p, it, 1);
	expect_u32(p, i, 123456);
	pair_free(p);
}

Test(dlms_engine, wrong_invoke_id_and_trailing_bytes)
{
	static const int framings[2] = {DLMS_FRAMING_WRAPPER, DLMS_FRAMING_HDLC};

	for (int f = 0; f < 2; f++) {
		struct pair *p = pair_new(framings[f], 0);
		struct dlms_get_item it[2] = {ITEM(3, O_APLUS, 2), ITEM(1, O_SERIAL, 2)};
		int i;

		p->how = RANDOM;
		pair_init(p);
		open_ok(p);
		p->m.wrong_invoke_id = 1;
		cr_assert_eq(dlms_client_get(&p->c, &p->cout, it, 1), 0);
		run(p);
		i = p->n_ev - 2;
		cr_assert_eq(p->ev[i].type, DLMS_CEV_RESULT);
		cr_assert_eq(p->ev[i].err, METER_EPROTO);
		cr_assert_eq(p->ev[i + 1].err, METER_EPROTO);
		cr_assert_eq(p->c.state, DLMS_CLIENT_READY);

		/* Three bytes of padding after each response are tolerated. */
		p->m.trailing = 3;
		i = get(p, it, 2);
		expect_u32(p, i, 123456);
		cr_assert_eq(p->ev[i + 1].err, 0);
		p->m.trailing = 0;
		release_ok(p);
		pair_free(p);
	}
}

Test(dlms_engine, timeouts)
{
	static const int framings[2] = {DLMS_FRAMING_WRAPPER, DLMS_FRAMING_HDLC};

	for (int f = 0; f < 2; f++) {
		struct pair *p = pair_new(framings[f], 0);
		struct dlms_get_item it[3] = {ITEM(3, O_APLUS, 2), ITEM(1, O_SERIAL, 2),
		                              ITEM(3, O_APLUS, 3)};
		uint32_t ms, gen;
		int i;

		p->pol.conformance = ACSE_CONF_GET; /* one by one */
		pair_init(p);
		open_ok(p);
		cr_assert_eq(dlms_client_timeout(&p->c, &p->cout), METER_ESTATE);
		p->drop_server = true;
		cr_assert_eq(dlms_client_get(&p->c, &p->cout, it, 3), 0);
		gen = dlms_client_timer(&p->c, &ms);
		cr_assert_eq(ms, 5000);
		run(p);
		cr_assert_eq(p->c.state, DLMS_CLIENT_BUSY);
		cr_assert_eq(dlms_client_timeout(&p->c, &p->cout), 0);
		cr_assert_neq(dlms_client_timer(&p->c, &ms), gen);
		cr_assert_eq(ms, 0);
		int before = p->n_ev;
		client_pump(p);
		cr_assert_eq(p->n_ev - before, 4);
		for (i = 0; i < 3; i++) {
			cr_assert_eq(p->ev[before + i].type, DLMS_CEV_RESULT);
			cr_assert_eq(p->ev[before + i].index, (uint32_t)i);
			cr_assert_eq(p->ev[before + i].err, METER_ETIMEOUT);
		}
		cr_assert_eq(p->ev[before + 3].type, DLMS_CEV_DONE);
		cr_assert_eq(p->ev[before + 3].err, METER_ETIMEOUT);
		cr_assert_eq(p->c.state, DLMS_CLIENT_READY);
		pair_free(p);

		/* No answer to the association at all. */
		p = pair_new(framings[f], 0);
		pair_init(p);
		p->drop_server = true;
		cr_assert_eq(dlms_client_open(&p->c, &p->cout), 0);
		run(p);
		cr_assert_eq(dlms_client_timeout(&p->c, &p->cout), 0);
		client_pump(p);
		const struct rec *r = last_ev(p, DLMS_CEV_FAILED);
		cr_assert_not_null(r);
		cr_assert_eq(r->err, METER_ETIMEOUT);
		cr_assert_eq(p->c.state, DLMS_CLIENT_CLOSED);
		cr_assert_eq(dlms_client_get(&p->c, &p->cout, it, 1), METER_ESTATE);
		pair_free(p);
	}
}

Test(dlms_engine, late_answer_after_timeout_is_ignored)
{
	struct pair *p = pair_new(DLMS_FRAMING_WRAPPER, 0);
	struct dlms_get_item it[1] = {ITEM(3, O_APLUS, 2)};
	int i;

	pair_init(p);
	open_ok(p);
	cr_assert_eq(dlms_client_get(&p->c, &p->cout, it, 1), 0);
	/* the request reaches the server, whose answer is held back */
	size_t n = p->cout.len;
	memcpy(p->wire, p->c_outbuf, n);
	mbuf_init(&p->cout, p->c_outbuf, sizeof(p->c_outbuf));
	deliver(p, true, p->wire, n);
	static uint8_t held[4096];
	size_t held_len = p->sout.len;
	memcpy(held, p->s_outbuf, held_len);
	mbuf_init(&p->sout, p->s_outbuf, sizeof(p->s_outbuf));
	cr_assert_eq(dlms_client_timeout(&p->c, &p->cout), 0);
	client_pump(p);
	cr_assert_eq(p->ev[p->n_ev - 1].err, METER_ETIMEOUT);
	deliver(p, false, held, held_len);
	cr_assert_eq(p->ev[p->n_ev - 1].type, DLMS_CEV_DONE);
	cr_assert_eq(p->c.stray, 1);
	i = get(p, it, 1);
	expect_u32(p, i, 123456);
	pair_free(p);
}

/* ---- pushes ------------------------------------------------------------------- */

Test(dlms_engine, data_notification)
{
	static const int flags[2] = {0, CIPHER | HLS};

	for (int k = 0; k < 2; k++) {
		struct pair *p = pair_new(k ? DLMS_FRAMING_HDLC : DLMS_FRAMING_WRAPPER, flags[k]);
		uint8_t body[32], tm[12];
		struct cosem_datetime dt;
		struct mbuf b;

		pair_init(p);
		open_ok(p);
		mbuf_init(&b, body, sizeof(body));
		axdr_put_structure(&b, 2);
		axdr_put_long_unsigned(&b, 7);
		axdr_put_boolean(&b, true);
		cosem_datetime_from_utc(PROFILE_START, &COSEM_TZ_CPH, &dt);
		cosem_datetime_encode(&dt, tm);
		cr_assert_eq(dlms_server_notify(&p->s, &p->sout, 0x1234, tm, body, b.len), 0);
		run(p);
		const struct rec *r = last_ev(p, DLMS_CEV_NOTIFICATION);
		cr_assert_not_null(r);
		cr_assert_eq(r->long_iip, 0x1234);
		cr_assert_eq(r->len, b.len);
		cr_assert_eq(memcmp(p->arena + r->off, body, b.len), 0);
		/* still associated, requests still work */
		struct dlms_get_item it[1] = {ITEM(3, O_APLUS, 2)};
		int i = get(p, it, 1);
		expect_u32(p, i, 123456);
		pair_free(p);
	}
}

/*
 * A push interleaved with a GET response: the meter pushes after our
 * request came in and before it answers.  The client delivers it as a
 * NOTIFICATION while the GET stays outstanding (BUSY, no RESULT), and the
 * answer still completes the GET.  Forged pushes in a ciphered association
 * (in clear, a flipped GCM tag, a replayed counter) come as NOTIFICATION
 * with err and no data, counted in pushes_refused, and fail neither the
 * GET nor the association; in a plain association a ciphered push is
 * refused the same way.
 */

/* Send a GET of A+; the server takes it, its answer is kept in held[]. */
static size_t
request_held(struct pair *p, const struct dlms_get_item *it, uint8_t *held, size_t cap)
{
	cr_assert_eq(dlms_client_get(&p->c, &p->cout, it, 1), 0);
	size_t n = p->cout.len;
	memcpy(p->wire, p->c_outbuf, n);
	mbuf_init(&p->cout, p->c_outbuf, sizeof(p->c_outbuf));
	deliver(p, true, p->wire, n);
	size_t held_len = p->sout.len;
	cr_assert_gt(held_len, 0);
	cr_assert_leq(held_len, cap);
	memcpy(held, p->s_outbuf, held_len);
	mbuf_init(&p->sout, p->s_outbuf, sizeof(p->s_outbuf));
	return held_len;
}

/* Feed a push to the client mid-request: exactly one NOTIFICATION with
 * error err, the GET still outstanding. */
static const struct rec *
push_mid_request(struct pair *p, const uint8_t *bytes, size_t n, int err)
{
	int first = p->n_ev;
	uint32_t refused = p->c.pushes_refused;

	deliver(p, false, bytes, n);
	cr_assert_eq(p->n_ev, first + 1, "events after a push: %d", p->n_ev - first);
	const struct rec *r = &p->ev[first];
	cr_assert_eq(r->type, DLMS_CEV_NOTIFICATION);
	cr_assert_eq(r->err, err, "push err %d, wanted %d", r->err, err);
	cr_assert_eq(p->c.pushes_refused, refused + (err != 0));
	if (err)
		cr_assert_eq(r->len, 0);
	cr_assert_eq(p->c.state, DLMS_CLIENT_BUSY);
	return r;
}

static void
push_body(uint8_t *body, size_t cap, size_t *len)
{
	struct mbuf b;

	mbuf_init(&b, body, cap);
	axdr_put_structure(&b, 2);
	axdr_put_octet_string(&b, "KAM-000001", 10);
	axdr_put_double_long_unsigned(&b, 1);
	cr_assert_eq(b.err, 0);
	*len = b.len;
}

/* The held answer completes the GET with the meter's value. */
static void
answer_completes(struct pair *p, const uint8_t *held, size_t held_len)
{
	int first = p->n_ev;

	deliver(p, false, held, held_len);
	run(p);
	cr_assert_eq(p->n_ev, first + 2);
	cr_assert_eq(p->ev[first].type, DLMS_CEV_RESULT);
	expect_u32(p, first, 123456);
	cr_assert_eq(p->ev[first + 1].type, DLMS_CEV_DONE);
	cr_assert_eq(p->ev[first + 1].err, 0);
	cr_assert_eq(p->c.state, DLMS_CLIENT_READY);
}

Test(dlms_engine, push_interleaved_with_get_response)
{
	static const struct {
		int framing, flags;
	} cases[] = {
	    {DLMS_FRAMING_WRAPPER, 0},
	    {DLMS_FRAMING_WRAPPER, CIPHER | HLS},
	    {DLMS_FRAMING_HDLC, 0},
	    {DLMS_FRAMING_HDLC, CIPHER | HLS},
	};
	struct dlms_get_item it[1] = {ITEM(3, O_APLUS, 2)};
	static uint8_t held[4096], pushb[OUTCAP];

	for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
		struct pair *p = pair_new(cases[k].framing, cases[k].flags);
		uint8_t body[64];
		size_t blen;
		struct mbuf pm;

		pair_init(p);
		open_ok(p);
		push_body(body, sizeof(body), &blen);
		/* the push is made first: its counter is below the answer's */
		mbuf_init(&pm, pushb, sizeof(pushb));
		int nr = dlms_server_notify(&p->s, &pm, 77, NULL, body, blen);
		cr_assert_eq(nr, 0, "case %zu: notify %s", k, meter_strerror(nr));
		if ((cases[k].flags & CIPHER) && cases[k].framing == DLMS_FRAMING_WRAPPER)
			cr_assert_eq(pm.p[8], DLMS_TAG_GENERAL_GLO_CIPHERING);
		size_t held_len = request_held(p, it, held, sizeof(held));
		const struct rec *r = push_mid_request(p, pm.p, pm.len, 0);
		cr_assert_eq(r->long_iip, 77);
		cr_assert_eq(r->len, blen);
		cr_assert_eq(memcmp(p->arena + r->off, body, blen), 0, "case %zu: push body", k);
		answer_completes(p, held, held_len);
		/* the association goes on */
		int i = get(p, it, 1);
		expect_u32(p, i, 123456);
		cr_assert_eq(p->c.pushes_refused, 0);
		pair_free(p);
	}
}

Test(dlms_engine, forged_push_refused_mid_request)
{
	struct dlms_get_item it[1] = {ITEM(3, O_APLUS, 2)};
	static uint8_t held[4096], pushb[1024], forged[1024];
	uint8_t body[64], apdu[128];
	size_t blen;
	struct mbuf pm, m;

	/* ciphered association (wrapper: the forged PDUs are built here) */
	struct pair *p = pair_new(DLMS_FRAMING_WRAPPER, CIPHER | HLS);
	pair_init(p);
	open_ok(p);
	push_body(body, sizeof(body), &blen);
	mbuf_init(&pm, pushb, sizeof(pushb));
	cr_assert_eq(dlms_server_notify(&p->s, &pm, 5, NULL, body, blen), 0);
	size_t held_len = request_held(p, it, held, sizeof(held));

	/* in clear: what anyone on the path could inject */
	struct xdlms_apdu a;
	memset(&a, 0, sizeof(a));
	a.type = XDLMS_DATA_NOTIFICATION;
	a.long_iip = 5;
	a.value = xdlms_data_raw(body, (uint32_t)blen);
	mbuf_init(&m, apdu, sizeof(apdu));
	cr_assert_gt(xdlms_encode(&a, &m), 0);
	size_t alen = m.len;
	mbuf_init(&m, forged, sizeof(forged));
	cr_assert_gt(wrapper_encode(&m, 1, 16, apdu, alen), 0);
	push_mid_request(p, forged, m.len, METER_EAUTH);

	/* the meter's push with one bit of its GCM tag flipped */
	memcpy(forged, pm.p, pm.len);
	forged[pm.len - 1] ^= 0x01;
	push_mid_request(p, forged, pm.len, METER_EAUTH);
	/* a ciphertext byte changed: not authentic either */
	memcpy(forged, pm.p, pm.len);
	forged[8 + 16] ^= 0x80;
	push_mid_request(p, forged, pm.len, METER_EAUTH);

	/* the real one still passes (the forgeries moved no counter) ... */
	const struct rec *r = push_mid_request(p, pm.p, pm.len, 0);
	cr_assert_eq(r->len, blen);
	cr_assert_eq(memcmp(p->arena + r->off, body, blen), 0);
	/* ... once */
	push_mid_request(p, pm.p, pm.len, METER_EREPLAY);
	cr_assert_eq(p->c.pushes_refused, 4);
	answer_completes(p, held, held_len);
	int i = get(p, it, 1);
	expect_u32(p, i, 123456);
	pair_free(p);

	/* a plain association: a ciphered push cannot be checked, refused */
	p = pair_new(DLMS_FRAMING_WRAPPER, 0);
	pair_init(p);
	open_ok(p);
	held_len = request_held(p, it, held, sizeof(held));
	push_mid_request(p, pushb, pm.len, METER_EPROTO);
	answer_completes(p, held, held_len);
	pair_free(p);
}

/* Corpus pushes as meters send them: an HDLC UI frame and a wrapper PDU. */
Test(dlms_engine, corpus_pushes)
{
	static uint8_t rx[4096], tx[4096], data[4096], out[8192];
	const struct dlms_vector *ui = dlms_vector("hdlc-ui-data-notification");
	const struct dlms_vector *dn = dlms_vector("data-notification-with-time");
	struct dlms_client_config cfg;
	struct dlms_client_event ev;
	static struct dlms_client c;
	struct hdlc_frame f;
	struct mbuf o;
	size_t len;
	int got = 0;

	cr_assert_not_null(ui);
	cr_assert_not_null(dn);
	uint8_t *p = hex_tail(ui->hex, &len);
	cr_assert_eq(hdlc_parse(p, len, &f), (ssize_t)len);
	memset(&cfg, 0, sizeof(cfg));
	cfg.framing = DLMS_FRAMING_HDLC;
	cfg.hdlc_client = f.dest;
	cfg.hdlc_server = f.src;
	cfg.buf =
	    (struct dlms_buffers){rx, sizeof(rx), tx, sizeof(tx), NULL, 0, data, sizeof(data)};
	cr_assert_eq(dlms_client_init(&c, &cfg), 0);
	mbuf_init(&o, out, sizeof(out));
	cr_assert_eq(dlms_client_open(&c, &o), 0);
	for (size_t k = 0; k < len; k++) {
		cr_assert_eq(dlms_client_feed(&c, p + k, 1), 1);
		while (dlms_client_poll(&c, &o, &ev) != DLMS_CEV_NONE) {
			cr_assert_eq(ev.type, DLMS_CEV_NOTIFICATION);
			cr_assert_eq(ev.long_iip, 0x40000000);
			cr_assert_null(ev.time);
			cr_assert_eq(ev.data[0], AXDR_ARRAY);
			cr_assert_eq(ev.data[1], 27);
			got++;
		}
	}
	cr_assert_eq(got, 1);
	tail_free(p);

	/* The same client type over the wrapper, with a date-time. */
	uint8_t *apdu = hex_tail(dn->hex, &len);
	char iip[32];
	cr_assert_not_null(
	    meaning_get(dn->meaning, "long_invoke_id_and_priority", iip, sizeof(iip)));
	cfg.framing = DLMS_FRAMING_WRAPPER;
	cfg.client_wport = 16;
	cfg.server_wport = 1;
	cr_assert_eq(dlms_client_init(&c, &cfg), 0);
	mbuf_init(&o, out, sizeof(out));
	cr_assert_eq(dlms_client_open(&c, &o), 0);
	static uint8_t wbuf[512];
	struct mbuf w;
	mbuf_init(&w, wbuf, sizeof(wbuf));
	cr_assert_gt(wrapper_encode(&w, 1, 16, apdu, len), 0);
	/* trailing garbage in the same read belongs to the next PDU header:
	 * give only the PDU */
	got = 0;
	cr_assert_eq(dlms_client_feed(&c, wbuf, w.len), w.len);
	while (dlms_client_poll(&c, &o, &ev) != DLMS_CEV_NONE) {
		cr_assert_eq(ev.type, DLMS_CEV_NOTIFICATION);
		cr_assert_eq(ev.long_iip, (uint32_t)strtoul(iip, NULL, 0));
		cr_assert_not_null(ev.time);
		cr_assert_eq(ev.time[0], 0x07);
		cr_assert_gt(ev.data_len, 10);
		got++;
	}
	cr_assert_eq(got, 1);
	cr_assert_eq(c.state, DLMS_CLIENT_ASSOCIATING); /* the AARE is still awaited */
	tail_free(apdu);
}

/* ---- API edges ------------------------------------------------------------------ */

Test(dlms_engine, api_edges)
{
	struct pair *p = pair_new(DLMS_FRAMING_WRAPPER, 0);
	struct dlms_get_item it[1] = {ITEM(3, O_APLUS, 2)};
	struct dlms_client_config bad;

	bad = p->cc;
	bad.framing = 7;
	cr_assert_eq(dlms_client_init(&p->c, &bad), METER_EINVAL);
	bad = p->cc;
	bad.mechanism = ACSE_MECH_HLS_MD5;
	cr_assert_eq(dlms_client_init(&p->c, &bad), METER_EINVAL);
	bad = p->cc;
	bad.buf.rx = NULL;
	cr_assert_eq(dlms_client_init(&p->c, &bad), METER_EINVAL);
	bad = p->cc;
	bad.ciphering = true;
	bad.buf.work = NULL;
	cr_assert_eq(dlms_client_init(&p->c, &bad), METER_EINVAL);

	pair_init(p);
	cr_assert_eq(dlms_client_get(&p->c, &p->cout, it, 1), METER_ESTATE);
	cr_assert_eq(dlms_client_release(&p->c, &p->cout), METER_ESTATE);
	open_ok(p);
	cr_assert_eq(dlms_client_open(&p->c, &p->cout), METER_ESTATE);
	cr_assert_eq(dlms_client_get(&p->c, &p->cout, it, 0), METER_EINVAL);
	cr_assert_eq(dlms_client_get(&p->c, &p->cout, it, 1), 0);
	cr_assert_eq(dlms_client_get(&p->c, &p->cout, it, 1), METER_ESTATE); /* one at a time */
	run(p);
	cr_assert_str_eq(dlms_client_state_name(DLMS_CLIENT_READY), "ready");
	cr_assert_str_eq(dlms_client_state_name(99), "?");
	cr_assert_str_eq(dlms_server_state_name(DLMS_SERVER_ASSOCIATED), "associated");
	cr_assert_str_eq(dlms_client_event_name(DLMS_CEV_RESULT), "result");
	cr_assert_str_eq(dlms_server_event_name(DLMS_SEV_REJECTED), "rejected");
	cr_assert_str_eq(dlms_framing_name(DLMS_FRAMING_HDLC), "hdlc");

	/* decode convenience */
	struct dlms_client_event e = {.type = DLMS_CEV_RESULT,
	                              .data = ev_data(p, p->n_ev - 2),
	                              .data_len = p->ev[p->n_ev - 2].len};
	struct axdr_node n[2];
	size_t nn;
	cr_assert_eq(dlms_client_decode(&e, n, 2, &nn), 0);
	cr_assert_eq(n[0].v.u, 123456);

	/* buffers can be swapped while the server is idle */
	struct dlms_buffers nb = p->sc.buf;
	cr_assert(dlms_server_idle(&p->s));
	cr_assert_eq(dlms_server_set_buffers(&p->s, &nb), 0);
	int i = get(p, it, 1);
	expect_u32(p, i, 123456);

	dlms_client_abort(&p->c);
	cr_assert_eq(p->c.state, DLMS_CLIENT_CLOSED);
	client_pump(p);
	pair_free(p);
}

/* ---- seeds for fuzz_client ------------------------------------------------------ */

static void
record_assoc(int framing, int flags, const char *name)
{
	struct pair *p;
	const char *dir = getenv("DLMS_ENGINE_RECORD");

	p = pair_new(framing, flags);
	pair_init(p);
	p->recbuf = malloc(1);
	open_ok(p);
	if (dir) {
		char path[512];
		snprintf(path, sizeof(path), "%s/%s", dir, name);
		FILE *f = fopen(path, "wb");
		cr_assert_not_null(f);
		uint8_t mode = (uint8_t)((framing == DLMS_FRAMING_HDLC ? 1 : 0) |
		                         (flags & CIPHER ? 4 : 0) | (2 << 3));
		fwrite(&mode, 1, 1, f);
		fwrite(p->recbuf, 1, p->rec_len, f);
		fclose(f);
	}
	cr_assert_gt(p->rec_len, 20);
	pair_free(p);
}

Test(dlms_engine, association_transcripts)
{
	record_assoc(DLMS_FRAMING_WRAPPER, 0, "assoc-wrapper");
	record_assoc(DLMS_FRAMING_HDLC, HDLC128, "assoc-hdlc");
	record_assoc(DLMS_FRAMING_WRAPPER, CIPHER | HLS, "assoc-wrapper-ciphered");
	record_assoc(DLMS_FRAMING_HDLC, HDLC128 | CIPHER | HLS, "assoc-hdlc-ciphered");
}

/* ---- a hostile client ------------------------------------------------------------ */

/*
 * Real requests (GET with range, SET in blocks, ACTION, with-list) mutated
 * byte by byte and cut short, fed to an associated server: it must answer
 * or refuse, never read or write out of bounds (run under ASan), and stay
 * able to serve a good request afterwards.
 */
Test(dlms_engine, server_hostile_requests)
{
	struct pair *p = pair_new(DLMS_FRAMING_WRAPPER, 0);
	static uint8_t reqs[8][4096];
	size_t req_len[8];
	int n_req = 0;
	uint8_t abuf[256], v[600];
	struct xdlms_access acc;
	struct mbuf b;

	pair_init(p);
	open_ok(p);
	range_access(&acc, abuf, sizeof(abuf), 10, 20, COLUMNS, 2);
	struct dlms_get_item it[3] = {
	    {{7, O_PROFILE, 2}, &acc}, ITEM(3, O_APLUS, 2), ITEM(1, O_SERIAL, 2)};
	struct xdlms_desc bigd = {1, O_BIG, 2}, echo = {1, O_ECHO, 1};
	uint8_t raw[580];
	memset(raw, 0x5a, sizeof(raw));
	mbuf_init(&b, v, sizeof(v));
	axdr_put_octet_string(&b, raw, sizeof(raw));

	/* Capture what the client sends for each kind of request. */
	for (int k = 0; k < 4; k++) {
		if (k == 0)
			cr_assert_eq(dlms_client_get(&p->c, &p->cout, it, 1), 0);
		else if (k == 1)
			cr_assert_eq(dlms_client_get(&p->c, &p->cout, it, 3), 0);
		else if (k == 2)
			cr_assert_eq(dlms_client_set(&p->c, &p->cout, &bigd, NULL, v, b.len), 0);
		else
			cr_assert_eq(dlms_client_action(&p->c, &p->cout, &echo, v, 40), 0);
		cr_assert_leq(p->cout.len, sizeof(reqs[0]));
		memcpy(reqs[n_req], p->c_outbuf, p->cout.len);
		req_len[n_req++] = p->cout.len;
		run(p);
	}
	for (int iter = 0; iter < 3000; iter++) {
		int k = (int)rnd((size_t)n_req);
		static uint8_t m[4096];
		size_t len = req_len[k];

		memcpy(m, reqs[k], len);
		int flips = 1 + (int)rnd(4);
		for (int f = 0; f < flips; f++)
			m[WRAPPER_HEADER_LEN + rnd(len - WRAPPER_HEADER_LEN)] = (uint8_t)rnd(256);
		if (rnd(3) == 0)
			len = WRAPPER_HEADER_LEN + 1 + rnd(len - WRAPPER_HEADER_LEN);
		m[6] = (uint8_t)((len - WRAPPER_HEADER_LEN) >> 8);
		m[7] = (uint8_t)(len - WRAPPER_HEADER_LEN);
		uint8_t *chunk = malloc(len);
		memcpy(chunk, m, len);
		cr_assert_eq(dlms_server_feed(&p->s, chunk, len), len);
		server_pump(p);
		free(chunk);
		mbuf_init(&p->sout, p->s_outbuf, sizeof(p->s_outbuf));
		/* a mutated AARQ/RLRQ tag may have ended the association */
		if (p->s.state != DLMS_SERVER_ASSOCIATED)
			p->s.state = DLMS_SERVER_ASSOCIATED;
	}
	cr_assert_gt(p->s_errors, 100, "mutations should be refused");
	/* A good request still works. */
	p->c.invoke_id = 0;
	int i = get(p, it + 1, 1);
	expect_u32(p, i, 123456);
	pair_free(p);
}
