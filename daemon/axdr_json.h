/*
 * axdr_json.h: a decoded A-XDR Data tree (meterlib/axdr.h) as JSON, for
 * `ammctl decode` and the daemon's JSON outputs.
 *
 * Every node becomes one object with "type" (the A-XDR type name, as
 * axdr_tag_name() gives it) and, by type:
 *
 *   null-data, dont-care        nothing else
 *   boolean                     "value": true|false
 *   integer, long, double-long, long64, unsigned, long-unsigned,
 *   double-long-unsigned, long64-unsigned, enum, bcd
 *                               "value": number
 *   floating-point, float32, float64
 *                               "value": number (shortest text that reads
 *                               back to the same value; null for NaN/inf)
 *   octet-string                "hex"; plus "obis" (and "name" when ammd
 *                               knows the object) for the 6-byte logical
 *                               name inside an object reference
 *                               structure[long-unsigned class, octet-string,
 *                               ...]; plus "datetime" (ISO text) when 12
 *                               bytes read as a valid COSEM date-time
 *   visible-string, utf8-string "value": text; "hex" too when the bytes are
 *                               not printable ASCII (visible-string)
 *   bit-string                  "bits": count, "hex", "value": "0101..."
 *   date-time, date, time       "hex" (raw contents) and "value" (ISO text,
 *                               '?' for unspecified fields; absent when a
 *                               field is out of range)
 *   array, structure            "count", "items": [ ... ]
 *   compact-array               "count", "description" (hex of the type
 *                               description), "items": [ ... ]
 *
 * Example: {"type":"structure","count":2,"items":[{"type":"integer",
 * "value":0},{"type":"enum","value":30}]}
 */
#ifndef AMM_AXDR_JSON_H
#define AMM_AXDR_JSON_H

#include "axdr.h"
#include "json.h"

/* Write the tree rooted at n (its subtree follows it in memory, as
 * axdr_decode() lays it out) as one JSON value under key (NULL inside an
 * array or at the top level). */
void axdr_json_write(struct json *j, const char *key, const struct axdr_node *n);

#endif
