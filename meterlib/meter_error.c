/*
 * meter_error.c: text for meterlib's error codes.
 */
#include "meter_error.h"

const char *
meter_strerror(int err)
{
	switch (err) {
	case METER_OK: return "success";
	case METER_ENEEDMORE: return "incomplete input, more bytes needed";
	case METER_EMALFORMED: return "malformed input";
	case METER_EUNSUPPORTED: return "unsupported feature or encoding";
	case METER_ENOSPC: return "output buffer too small";
	case METER_ELIMIT: return "nesting depth or element count over the limit";
	case METER_ECHECKSUM: return "checksum mismatch";
	case METER_EAUTH: return "authentication failed";
	case METER_EREPLAY: return "invocation counter did not increase (replay)";
	case METER_ECRYPTO: return "cryptographic library failure";
	case METER_ESTATE: return "operation not valid in the current state";
	case METER_ETIMEOUT: return "timed out";
	case METER_EREJECTED: return "association rejected";
	case METER_EACCESS: return "data access refused by the meter";
	case METER_EPROTO: return "protocol violation by the peer";
	case METER_ERANGE: return "value out of range";
	case METER_ENOTFOUND: return "not found";
	case METER_EABORTED: return "aborted by the peer";
	case METER_EINVAL: return "invalid argument";
	case METER_ELENGTH: return "length field disagrees with the data";
	case METER_EEXCEPTION: return "exception or service error from the peer";
	case METER_EAPPERR: return "M-Bus application error";
	case METER_ECOLLISION: return "M-Bus collision";
	case METER_EBUSY: return "peer busy";
	default: return "unknown error";
	}
}
