/*
 * fuzz_command_request.c: the inbound MQTT command request decoder
 * (message_command_request_decode(), daemon/message.h: protobuf-c unpack
 * of ammd.proto's CommandRequest plus ammd's own checks) on arbitrary
 * payloads, as anyone allowed to publish on the broker could send them.
 *
 * The payload is copied to an allocation of exactly its size so a read
 * past it trips ASan.  A request that is accepted must carry a kind, at
 * least one meter, topic-safe serials and terminated strings; a refused
 * one must leave nothing allocated (LeakSanitizer), and freeing twice must
 * be harmless.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "message.h"
#include "meter_error.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile size_t sink;

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct message_command_request q;
	uint8_t *p = malloc(size ? size : 1);
	int rc;

	if (p == NULL)
		return 0;
	memcpy(p, data, size);
	rc = message_command_request_decode(size ? p : NULL, size, &q);
	free(p); /* the decoded request must not point into the payload */
	if (rc != 0 && rc != METER_EMALFORMED)
		abort();
	if (rc == 0) {
		if (q.kind == NULL || q.kind[0] == '\0' || q.nmeters == 0 || q.meters == NULL)
			abort();
		for (size_t i = 0; i < q.nmeters; i++) {
			if (!message_topic_safe(q.meters[i]))
				abort();
			sink += strlen(q.meters[i]);
		}
		sink += strlen(q.kind);
		if (q.request_id != NULL)
			sink += strlen(q.request_id);
		if (q.params_json != NULL)
			sink += strlen(q.params_json);
		if (q.idempotency_key != NULL)
			sink += strlen(q.idempotency_key);
		sink += (size_t)q.expires_at + (size_t)q.priority;
	} else if (q.pb != NULL) {
		abort();
	}
	message_command_request_free(&q);
	message_command_request_free(&q);
	return 0;
}
