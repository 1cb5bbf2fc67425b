/*
 * fuzz_discovery.c: libFuzzer target for what discovery takes from a
 * meter and from the database: any bytes as an association's object list
 * must be refused or decoded without reading outside the input, with every
 * kept object inside the capacity and the count of all objects no smaller
 * than the kept ones; any text as a stored profile layout must parse to at
 * most the capacity of columns, and a parsed layout must print and parse
 * back to the same columns.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "discovery.h"
#include "obis.h"
#include "profile.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct discovery_object objs[8];
	size_t n = 0, total = 0;
	static const struct obis lp = {{1, 0, 99, 1, 0, 255}};
	struct profile_column cols[8], again[8];

	if (discovery_object_list(data, size, objs, 8, &n, &total) == 0) {
		if (n > 8 || total < n || (total > n && n != 8))
			abort();
	}

	char *text = malloc(size + 1);
	if (text == NULL)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	int k = discovery_layout_parse(text, &lp, cols, 8);
	free(text);
	if (k > 8)
		abort();
	if (k > 0) {
		char *out = discovery_layout_text(&lp, cols, (size_t)k);
		if (out == NULL)
			return 0;
		if (discovery_layout_parse(out, &lp, again, 8) != k)
			abort();
		for (int i = 0; i < k; i++)
			if (again[i].class_id != cols[i].class_id ||
			    !obis_eq(&again[i].obis, &cols[i].obis) ||
			    again[i].attribute != cols[i].attribute ||
			    again[i].scaler != cols[i].scaler || again[i].unit != cols[i].unit ||
			    again[i].data_index != cols[i].data_index)
				abort();
		free(out);
	}
	return 0;
}
