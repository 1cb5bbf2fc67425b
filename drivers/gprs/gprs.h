/*
 * gprs.h: GSM/GPRS modules (DESIGN §3).  Two transports in the
 * transport_ops sense, both named "gprs" so that session_log counts their
 * bytes under one name:
 *
 *   gprs_transport          the head-end dials the module's APN address
 *                           (meter transport gprs with a host), with GPRS
 *                           timing: the connect and response timeouts of
 *                           [gprs] (tens of seconds, not milliseconds), one
 *                           attempt per session (the scheduler's backoff is
 *                           the retry), TCP keepalive so a dead radio link
 *                           is noticed, and the session's HDLC window of 1;
 *   gprs_inbound_transport  the module connected to our listener: connect()
 *                           dials nothing, it adopts the bufferevent parked
 *                           under the target's host by gprs_park() once the
 *                           meter was identified (daemon/gprs_inbound.c).
 *
 * The pure helpers below (identity and push parsing) are what the listener
 * decides with before it trusts a connection; they are unit-tested.
 */
#ifndef AMM_GPRS_H
#define AMM_GPRS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "transport.h"

extern const struct transport_ops gprs_transport;
extern const struct transport_ops gprs_inbound_transport;

#define GPRS_PARK_KEY_MAX 32

/*
 * Park an accepted, identified connection: key (at least GPRS_PARK_KEY_MAX
 * bytes) gets the name to pass as transport_target.host to
 * gprs_inbound_transport.connect(), which takes the bufferevent over.
 * The park owns bev until then (gprs_unpark_all() frees what is left).
 * Returns 0 or -1 (no memory).
 */
int gprs_park(struct bufferevent *bev, char *key);
/* Free every parked connection (daemon stop). */
void gprs_unpark_all(void);

/*
 * The listener's held connections (daemon/gprs_inbound.c): a meter that
 * connected in and was identified but had nothing due is held idle until
 * [gprs] idle_timeout_s, and commands queued for it meanwhile run on that
 * connection rather than wait for a redial.
 *
 * gprs_inbound_take() parks the idle connection of the meter with this
 * serial for a session (key as gprs_park()); returns 0, or -1 when no
 * connection of that meter is held idle (not connected, or already in a
 * session).  gprs_inbound_idle_serials() returns the serials held idle as
 * a PostgreSQL array literal ("{\"s1\",\"s2\"}") for the caller to free,
 * or NULL when none are held (or no memory).
 */
int gprs_inbound_take(const char *serial, char *key);
char *gprs_inbound_idle_serials(void);

/*
 * Does a logical device name (0-0:42.0.0.255, octet-string value) name
 * the meter with this serial?  The same text, or the three-letter
 * manufacturer flag followed by the serial ("KAM" + "12345678", as
 * Kamstrup and IDIS meters form it).
 */
bool gprs_ldn_matches(const uint8_t *ldn, size_t len, const char *serial);

/*
 * The serial a logical device name claims: the name without a leading
 * three-letter flag when the rest is digits, else the name itself.
 * Writes a NUL-terminated string into out[cap]; returns 0, or
 * METER_EMALFORMED (empty, not printable, or longer than cap - 1).
 */
int gprs_ldn_serial(const uint8_t *ldn, size_t len, char *out, size_t cap);

/*
 * A DataNotification a meter pushed before association, in one wrapper
 * PDU at the start of buf[0..len).  On success *used is the PDU's length,
 * body/body_len point at the notification's tagged A-XDR value (inside
 * buf) and claim[] gets the logical device name it carries when its value
 * is a structure whose first element is an octet-string (the IDIS push
 * layout), else "".  Returns 0; METER_ENEEDMORE (incomplete PDU);
 * METER_EPROTO (a wrapper PDU that is not a DataNotification);
 * METER_EMALFORMED / METER_ELENGTH (broken bytes: the caller drops the
 * connection).
 */
struct gprs_push {
	size_t used;
	uint16_t src_wport, dst_wport;
	const uint8_t *body;
	size_t body_len;
	char claim[48];
};
int gprs_push_parse(const uint8_t *buf, size_t len, struct gprs_push *out);

#endif
