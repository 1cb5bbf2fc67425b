/*
 * meter_error.h: the one error space of meterlib.
 *
 * Every meterlib function that can fail returns a negative value from this
 * enum (or NULL) and never prints; meter_strerror() turns a code into text
 * for the caller's log line, which is where the context (meter serial,
 * session state) is known.  Parsers return METER_ENEEDMORE when the input
 * is a valid prefix and more bytes would complete it.
 */
#ifndef METER_ERROR_H
#define METER_ERROR_H

enum meter_err {
	METER_OK = 0,
	METER_ENEEDMORE = -1,	/* valid so far, feed more bytes */
	METER_EMALFORMED = -2,	/* input violates the encoding */
	METER_EUNSUPPORTED = -3, /* well-formed, but not something we handle */
	METER_ENOSPC = -4,	/* caller's output buffer or array too small */
	METER_ELIMIT = -5,	/* nesting depth or element count over the bound */
	METER_ECHECKSUM = -6,	/* HCS/FCS/CRC/M-Bus checksum mismatch */
	METER_EAUTH = -7,	/* authentication tag / GMAC / password mismatch */
	METER_EREPLAY = -8,	/* received invocation counter did not increase */
	METER_ECRYPTO = -9,	/* libcrypto reported a failure */
	METER_ESTATE = -10,	/* not valid in the current session state */
	METER_ETIMEOUT = -11,	/* the peer did not answer in time */
	METER_EREJECTED = -12,	/* association refused by the peer */
	METER_EACCESS = -13,	/* the meter answered with a data-access-result error */
	METER_EPROTO = -14,	/* peer broke the protocol (unexpected APDU, invoke id) */
	METER_ERANGE = -15,	/* a value out of its allowed range */
	METER_ENOTFOUND = -16,	/* no such object, attribute, record or name */
	METER_EABORTED = -17,	/* the peer aborted or disconnected */
	METER_EINVAL = -18,	/* caller passed an invalid argument */
	METER_ELENGTH = -19,	/* a length field disagrees with the bytes present */
	METER_EEXCEPTION = -20, /* peer sent ExceptionResponse / ConfirmedServiceError */
	METER_EAPPERR = -21,	/* M-Bus application error (CI 0x70) */
	METER_ECOLLISION = -22, /* M-Bus: several slaves answered at once */
	METER_EBUSY = -23,	/* peer (gateway, meter) says it is busy */
	METER_ELAST = -24
};

/* Text for a meter_err code; never NULL. */
const char *meter_strerror(int err);

#endif
