/*
 * mbus.h: wired M-Bus (EN 13757-2 link layer, EN 13757-3 application
 * layer) for the head-end, the gateways' drivers, the simulator and ammctl.
 *
 * Everything here is sans-I/O and allocation-free.  Parsers take the
 * caller's bytes and hand back views into them: a frame's user data, a
 * record's DIF/VIF chains and data field all point into the buffer the
 * caller passed, so they are valid only as long as that buffer is.
 * Records are decoded one at a time through an iterator (or into an array
 * whose capacity the caller gives); nothing is copied except the small
 * numeric results.  Encoders write into a struct mbuf (bytes.h) and report
 * METER_ENOSPC through it.
 *
 * Files: mbus_link.c (frames, stream parser), mbus_app.c (CI, headers,
 * DIF/DIFE, data codings), mbus_vif.c (VIF/VIFE meaning and scaling),
 * mbus_encode.c (building frames and records).
 */
#ifndef METER_MBUS_H
#define METER_MBUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bytes.h"
#include "meter_error.h"

/* ---- link layer (EN 13757-2) ------------------------------------------- */

#define MBUS_ACK	 0xE5
#define MBUS_START_SHORT 0x10
#define MBUS_START_LONG	 0x68
#define MBUS_STOP	 0x16

/* C field. FCB/FCV apply to SND_UD and REQ_UD1/2 from the master. */
#define MBUS_C_SND_NKE 0x40
#define MBUS_C_SND_UD  0x53
#define MBUS_C_REQ_UD2 0x5B
#define MBUS_C_REQ_UD1 0x5A
#define MBUS_C_RSP_UD  0x08
#define MBUS_C_FCB     0x20
#define MBUS_C_FCV     0x10
#define MBUS_C_ACD     0x20 /* slave: class 2 data waiting */
#define MBUS_C_DFC     0x10 /* slave: data flow control, cannot take more */

/* A field. */
#define MBUS_ADDR_UNCONFIGURED 0
#define MBUS_ADDR_FIRST	       1
#define MBUS_ADDR_LAST	       250
#define MBUS_ADDR_NETWORK      253 /* the slave selected by secondary address */
#define MBUS_ADDR_TEST	       254 /* broadcast, every slave replies (test only) */
#define MBUS_ADDR_BROADCAST    255 /* broadcast, no slave replies */

/* Frames longer than this cannot exist: L is one byte. */
#define MBUS_FRAME_MAX (255 + 6)

enum mbus_frame_type {
	MBUS_FRAME_ACK = 1,	/* single character E5 */
	MBUS_FRAME_SHORT,	/* 10 C A CS 16 */
	MBUS_FRAME_CONTROL,	/* 68 03 03 68 C A CI CS 16 */
	MBUS_FRAME_LONG,	/* 68 L L 68 C A CI data CS 16 */
};

struct mbus_frame {
	enum mbus_frame_type type;
	uint8_t c, a, ci;	/* c/a: short, control, long; ci: control, long */
	const uint8_t *data;	/* user data after CI (long frames), into caller's buffer */
	size_t data_len;
};

/*
 * Parse one frame at the start of buf.  Returns the frame's length in bytes
 * (> 0) and fills *f; METER_ENEEDMORE when buf holds a valid prefix;
 * METER_EMALFORMED (not a start byte, bad stop byte, L fields differ),
 * METER_ELENGTH (L below 3) or METER_ECHECKSUM.
 */
int mbus_frame_parse(const uint8_t *buf, size_t len, struct mbus_frame *f);

/* Short names for the C field ("SND_NKE", "REQ_UD2", "RSP_UD", ...). */
const char *mbus_c_name(uint8_t c);

/*
 * Streaming parse over bytes received from a TCP gateway: the caller keeps
 * what it received in one buffer and calls this until it returns
 * METER_ENEEDMORE.  Bytes that cannot begin a frame (line noise, echoes,
 * half frames after a reconnect) are skipped: *skipped reports how many
 * were, and on success the frame begins at buf + *skipped.  Returns the
 * number of bytes the caller may drop (garbage plus frame, > 0) with *f
 * set; or METER_ENEEDMORE, in which case the caller may drop *skipped
 * bytes and must wait for more.  Never returns another error: a bad
 * candidate frame is treated as garbage and the scan resumes one byte on.
 */
int mbus_stream_next(const uint8_t *buf, size_t len, struct mbus_frame *f, size_t *skipped);

/* ---- application layer (EN 13757-3) ------------------------------------ */

#define MBUS_CI_DATA_SEND	0x51 /* master to slave, records without header */
#define MBUS_CI_SELECT		0x52 /* selection by secondary address */
#define MBUS_CI_APP_RESET	0x50
#define MBUS_CI_APP_ERROR	0x70
#define MBUS_CI_RSP_LONG	0x72 /* variable data, long header */
#define MBUS_CI_RSP_FIXED	0x73 /* fixed data structure */
#define MBUS_CI_RSP_NOHDR	0x78 /* variable data, no header */
#define MBUS_CI_RSP_SHORT	0x7A /* variable data, short header */

enum mbus_telegram_kind {
	MBUS_TG_VARIABLE = 1,	/* records follow (0x72, 0x7A, 0x78, 0x51) */
	MBUS_TG_FIXED,		/* CI 0x73: two counters */
	MBUS_TG_APP_ERROR,	/* CI 0x70: app_error holds the code */
	MBUS_TG_SELECT,		/* CI 0x52: sel holds the secondary address */
};

/* Secondary address; 0xF nibbles / 0xFFFF / 0xFF are wildcards. */
struct mbus_secondary {
	uint8_t id_bcd[4];	/* identification, BCD, wire order (LSB first) */
	uint16_t manufacturer;
	uint8_t version;
	uint8_t medium;
};

struct mbus_header {
	bool has_id;		/* long header (0x72) or fixed frame */
	uint32_t id;		/* identification number, BCD read as decimal */
	uint16_t manufacturer;	/* raw; mbus_manufacturer() gives the letters */
	uint8_t version;
	uint8_t medium;
	uint8_t access;		/* access number */
	uint8_t status;
	uint16_t signature;
};

struct mbus_telegram {
	enum mbus_telegram_kind kind;
	uint8_t ci;
	struct mbus_header hdr;
	int app_error;		 /* CI 0x70: code, -1 when the telegram carries none */
	struct mbus_secondary sel; /* CI 0x52 */
	const uint8_t *records;	 /* variable data: the record area */
	size_t records_len;
	const uint8_t *fixed;	 /* CI 0x73: the 12 bytes after the header */
};

/*
 * Decode the application layer of a control or long frame: CI, header,
 * and the bounds of the record area (records are then read with
 * mbus_records_next()).  An application error telegram is a success with
 * kind MBUS_TG_APP_ERROR.  Returns 0, METER_EUNSUPPORTED (CI we do not
 * handle), METER_ELENGTH (header cut short).
 */
int mbus_telegram_decode(const struct mbus_frame *f, struct mbus_telegram *t);

/* Text for a CI 0x70 error code ("application busy", ...); never NULL. */
const char *mbus_app_error_text(int code);

/* Manufacturer field to three letters plus NUL. */
void mbus_manufacturer(uint16_t m, char out[4]);

/* Medium byte to a name ("electricity", "water", ...); never NULL. */
const char *mbus_medium_name(uint8_t medium);

enum mbus_function {
	MBUS_FN_INSTANT = 0,
	MBUS_FN_MAX = 1,
	MBUS_FN_MIN = 2,
	MBUS_FN_ERROR = 3,	/* value during error state */
	MBUS_FN_MANUFACTURER,	/* DIF 0x0F: the rest is manufacturer data */
	MBUS_FN_MORE_FOLLOWS,	/* DIF 0x1F: same, and another telegram follows */
	MBUS_FN_ACTUAL,		/* fixed frame, actual value */
	MBUS_FN_HISTORIC,	/* fixed frame, historic value */
};

const char *mbus_function_name(enum mbus_function fn);

/* Data field coding after decoding the DIF (and LVAR). */
enum mbus_coding {
	MBUS_CODING_NONE = 0,	/* no data */
	MBUS_CODING_INT,	/* signed little-endian, data_len 1,2,3,4,6,8 */
	MBUS_CODING_REAL,	/* IEEE 754 single */
	MBUS_CODING_BCD,	/* data_len*2 digits; 0xF top nibble = negative */
	MBUS_CODING_SELECTION,	/* DIF x8: selection for readout, no data */
	MBUS_CODING_TEXT,	/* LVAR 0x00-0xBF: ASCII, last char first */
	MBUS_CODING_BINARY,	/* LVAR 0xE0-0xFA: binary, little-endian */
	MBUS_CODING_MANUFACTURER, /* DIF 0x0F/0x1F: rest of the telegram */
};

enum mbus_vtype {
	MBUS_V_NONE = 0,
	MBUS_V_NUMBER,		/* value (and ival when is_int) */
	MBUS_V_DATE,		/* type G */
	MBUS_V_DATETIME,	/* type F (minutes) or I (seconds) */
	MBUS_V_TIME,		/* type J */
	MBUS_V_TEXT,		/* data, reversed on the wire */
	MBUS_V_BYTES,		/* data as raw bytes (or BCD that is not a number) */
};

struct mbus_datetime {
	uint16_t year;
	uint8_t month, day, hour, minute, second;
	bool has_seconds;
	bool invalid;		/* IV bit set by the meter */
	bool summer;
};

/* What a VIF (+ VIFEs) means; filled by mbus_vif_lookup(). */
struct mbus_vif_info {
	const char *quantity;	/* "energy", "volume", "voltage", ... */
	const char *unit;	/* SI unit after scaling: "Wh", "m^3", "V", "" */
	double scale;		/* multiply the raw number by this */
	enum mbus_vtype kind;	/* MBUS_V_NUMBER, or a date kind for 0x6C/0x6D */
	bool plain_text;	/* VIF 0x7C/0xFC: unit given as text */
	bool manufacturer;	/* VIF 0x7F/0xFF or VIFE 0xFF: meaning private */
};

#define MBUS_MAX_DIFE 10
#define MBUS_MAX_VIFE 10

struct mbus_record {
	const uint8_t *raw;	/* whole record: DIF to the end of its data */
	size_t raw_len;
	uint8_t dif;
	uint8_t ndife;
	const uint8_t *dife;
	uint8_t vif;		/* 0 when the record has no VIB (0x0F/0x1F) */
	bool has_vif;
	uint8_t nvife;
	const uint8_t *vife;	/* after VIF (and after the plain text) */
	const uint8_t *vif_text; /* plain-text unit, last char first */
	uint8_t vif_text_len;

	enum mbus_function function;
	uint64_t storage;
	uint32_t tariff;
	uint16_t subunit;
	bool has_dife;		/* tariff and subunit only mean something then */

	enum mbus_coding coding;
	const uint8_t *data;
	size_t data_len;

	struct mbus_vif_info info;
	enum mbus_vtype type;
	double value;		/* scaled number (MBUS_V_NUMBER) */
	int64_t ival;		/* unscaled integer when is_int */
	bool is_int;
	bool bcd_invalid;	/* BCD with digits A-E: type MBUS_V_BYTES, digits as text */
	struct mbus_datetime dt;
};

/* Record iterator over a telegram's record area. */
struct mbus_iter {
	const uint8_t *p;
	size_t len;
	size_t off;
	bool done;
};

void mbus_iter_init(struct mbus_iter *it, const struct mbus_telegram *t);

/*
 * Decode the next record.  Returns 1 with *r filled, 0 at the end of the
 * records (idle fillers 0x2F are skipped), or a negative error:
 * METER_ELENGTH (record cut short, LVAR or plain text longer than what
 * is left), METER_ELIMIT (more than 10 DIFEs or VIFEs), METER_EMALFORMED
 * (reserved LVAR, bad BCD).  After an error the iterator stays at the
 * failing record.
 */
int mbus_records_next(struct mbus_iter *it, struct mbus_record *r);

/*
 * All records into recs[cap]; *n set to how many.  Returns 0, METER_ENOSPC
 * when cap was too small, or an error from mbus_records_next().
 */
int mbus_records_decode(const struct mbus_telegram *t, struct mbus_record *recs, size_t cap,
			size_t *n);

/*
 * The two counters of a fixed-data telegram (CI 0x73) as records
 * (index 0 or 1).  Returns 0, METER_EINVAL, METER_EMALFORMED (bad BCD).
 */
int mbus_fixed_record(const struct mbus_telegram *t, int index, struct mbus_record *r);

/*
 * A record's value as text: dates "2014-03-13", "2014-03-13T11:11",
 * "2014-03-13T11:11:05", times "11:11:05", text in reading order, bytes as
 * lowercase hex (binary LVAR most significant byte first, manufacturer
 * data in wire order), numbers "%.17g".  Returns the length (snprintf
 * semantics: truncated when >= cap).
 */
int mbus_value_format(const struct mbus_record *r, char *buf, size_t cap);

/* ---- VIF tables (mbus_vif.c) --------------------------------------------- */

/*
 * Meaning of a VIF and its VIFE chain (vife excludes the 0xFB/0xFD table
 * byte only in the sense that vife[0] IS that table's code when vif is
 * 0xFB/0xFD).  Combinable VIFEs that scale (multiplicative correction
 * 10^(nnn-6), 10^3) are folded into scale.  Unknown codes give quantity
 * "reserved".
 */
void mbus_vif_lookup(uint8_t vif, const uint8_t *vife, size_t nvife, struct mbus_vif_info *info);

/* ---- encoding (mbus_encode.c) ------------------------------------------ */

/* E5, short frame, or long/control frame (data may be NULL when len 0). */
void mbus_encode_ack(struct mbuf *b);
void mbus_encode_short(struct mbuf *b, uint8_t c, uint8_t a);
void mbus_encode_long(struct mbuf *b, uint8_t c, uint8_t a, uint8_t ci, const uint8_t *data,
		      size_t len);

/* SND_NKE, REQ_UD2 (fcb toggles per exchange), selection of a slave. */
void mbus_encode_snd_nke(struct mbuf *b, uint8_t a);
void mbus_encode_req_ud2(struct mbuf *b, uint8_t a, bool fcb);
void mbus_encode_select(struct mbuf *b, const struct mbus_secondary *sel);

/*
 * Does a slave with this header match a selection (with wildcards)?
 * The simulator answers a selection only when this is true.
 */
bool mbus_secondary_match(const struct mbus_secondary *sel, const struct mbus_header *h);

/* A record to encode. */
struct mbus_rec_out {
	enum mbus_function function; /* INSTANT..ERROR, or MANUFACTURER/MORE_FOLLOWS */
	uint64_t storage;	/* up to 41 bits */
	uint32_t tariff;	/* up to 20 bits */
	uint16_t subunit;	/* up to 10 bits */
	uint8_t dif_coding;	/* DIF low nibble: 0..7, 9..0xE (0xD: LVAR) */
	const uint8_t *vib;	/* VIF, VIFEs (plain text included), as on the wire */
	size_t vib_len;
	int64_t ival;		/* integers and BCD */
	double real;		/* coding 5 */
	uint8_t lvar;		/* coding 0xD: LVAR byte; data from bytes */
	const uint8_t *bytes;	/* LVAR data, or the manufacturer data */
	size_t nbytes;
};

/*
 * One record.  METER_ERANGE when the value does not fit its coding,
 * METER_EINVAL for a bad description; write errors through b->err.
 */
int mbus_encode_record(struct mbuf *b, const struct mbus_rec_out *r);

/*
 * A whole RSP_UD long frame with a long header (CI 0x72) and the records.
 * Returns 0, or an error from mbus_encode_record(), METER_ENOSPC, or
 * METER_ELENGTH when the telegram would exceed one frame.
 */
int mbus_encode_rsp_ud(struct mbuf *b, uint8_t a, const struct mbus_header *h,
		       const struct mbus_rec_out *recs, size_t n);

#endif
