/*
 * fuzz_cmd_params.c: the operators' command parameters (daemon/cmd_kinds.c)
 * on arbitrary text: cmdk_parse() for every kind, the small JSON reader
 * underneath, and the checkpoint ("progress") JSON a run reads back from
 * the database after a crash.
 *
 * The first byte chooses: bits 0-3 the kind (modulo the number of kinds),
 * bit 7 "the text is a checkpoint" (a valid credit_add is planned with it;
 * the plan must come out or fail with METER_ENOSPC, never trust it
 * blindly), else the text is the kind's parameters.  A refusal must be
 * METER_EINVAL with a terminated sentence that starts with the kind's
 * name; an accepted credit_add has its idempotency key.  The text is
 * copied to an allocation of exactly its length plus the terminator.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cmd_kinds.h"
#include "meter_error.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NOW 1767225600 /* 2026-01-01T00:00:00Z */

static struct cmdk_params params;
static struct cmdk_run run;
static struct cj nodes[64];
static volatile size_t sink;

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[256];
	uint8_t mode;
	char *text;
	int kind, rc;

	if (size < 1)
		return 0;
	mode = data[0];
	data++;
	size--;
	if ((text = malloc(size + 1)) == NULL)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';

	rc = cj_parse(text, nodes, sizeof(nodes) / sizeof(nodes[0]));
	if (rc > (int)(sizeof(nodes) / sizeof(nodes[0])))
		abort();
	if (rc > 0) {
		char s[64];
		if (nodes[0].span != (uint32_t)rc)
			abort();
		for (int i = 0; i < rc; i++)
			if (cj_str(&nodes[i], s, sizeof(s)) && memchr(s, 0, sizeof(s)) == NULL)
				abort();
		if (nodes[0].type == CJ_OBJ)
			sink += cj_get(&nodes[0], "amount_wh") != NULL;
		if (nodes[0].type == CJ_ARR || nodes[0].type == CJ_OBJ)
			sink += cj_at(&nodes[0], 0) != NULL;
	}

	if (mode & 0x80) {
		static const char credit[] = "{\"amount_wh\":5000,\"transaction_id\":\"V-1\"}";
		if (cmdk_parse(CMDK_CREDIT_ADD, credit, NOW, &params, err, sizeof(err)) != 0)
			abort();
		rc = cmdk_run_init(&run, &params, text);
		if (rc != 0 && rc != METER_ENOSPC)
			abort();
		if (rc == 0) {
			sink += strlen(cmdk_run_error(&run));
			cmdk_run_free(&run);
		}
		free(text);
		return 0;
	}

	kind = (mode & 15) % CMDK_NKINDS;
	err[0] = '\0';
	rc = cmdk_parse(kind, text, NOW, &params, err, sizeof(err));
	if (rc == 0) {
		if (params.kind != kind)
			abort();
		if (kind == CMDK_CREDIT_ADD && cmdk_idempotency_key(&params) == NULL)
			abort();
	} else {
		const char *name = cmdk_name(kind);
		if (rc != METER_EINVAL || memchr(err, 0, sizeof(err)) == NULL ||
		    strncmp(err, name, strlen(name)) != 0)
			abort();
	}
	free(text);
	return 0;
}
