/*
 * modbus_map.c: the register-map text format (see modbus_map.h) and
 * decoding a block of holding registers through a map.  A map is read
 * once at start-up, so the parser favours exact line-numbered messages
 * over speed; decoding runs per poll and only shifts words.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "meter_error.h"
#include "modbus_map.h"

static const struct {
	const char *name;
	enum modbus_type type;
	uint8_t words;
} types[] = {
	{"u16", MODBUS_U16, 1},	   {"s16", MODBUS_S16, 1}, {"u32", MODBUS_U32, 2},
	{"s32", MODBUS_S32, 2},	   {"u64", MODBUS_U64, 4}, {"float32", MODBUS_F32, 2},
	{"float64", MODBUS_F64, 4},
};

void
modbus_map_init(struct modbus_map *m, struct modbus_map_entry *e, size_t cap)
{
	m->e = e;
	m->n = 0;
	m->cap = cap;
}

const char *
modbus_type_name(enum modbus_type t)
{
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
		if (types[i].type == t)
			return types[i].name;
	return "?";
}

#define MAXTOK 8

/* Split a line (NUL-terminated copy) into blank-separated tokens. */
static int
tokens(char *s, char **tok)
{
	int n = 0;
	char *save = NULL;
	for (char *p = strtok_r(s, " \t\r", &save); p; p = strtok_r(NULL, " \t\r", &save)) {
		if (n == MAXTOK)
			return MAXTOK + 1;
		tok[n++] = p;
	}
	return n;
}

static int
parse_line(char *s, unsigned line, struct modbus_map_entry *e, char *err, size_t errlen)
{
	char *tok[MAXTOK], *end;
	int n = tokens(s, tok);

	if (n != 6) {
		snprintf(err, errlen, "line %u: expected 6 fields (register type order scale unit "
				      "obis), found %d", line, n > MAXTOK ? n - 1 : n);
		return METER_EMALFORMED;
	}
	memset(e, 0, sizeof(*e));
	e->line = line;
	unsigned long reg = strtoul(tok[0], &end, 0);
	if (*end || end == tok[0] || tok[0][0] == '-' || reg > 0xFFFF) {
		snprintf(err, errlen, "line %u: bad register address '%s'", line, tok[0]);
		return METER_EMALFORMED;
	}
	e->reg = (uint16_t)reg;
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
		if (strcmp(tok[1], types[i].name) == 0) {
			e->type = types[i].type;
			e->words = types[i].words;
		}
	if (e->type == 0) {
		snprintf(err, errlen, "line %u: unknown type '%s' (u16 s16 u32 s32 u64 float32 "
				      "float64)", line, tok[1]);
		return METER_EMALFORMED;
	}
	if (reg + e->words > 0x10000) {
		snprintf(err, errlen, "line %u: %s at %lu runs past register 65535", line, tok[1],
			 reg);
		return METER_EMALFORMED;
	}
	if (strcmp(tok[2], "hi") == 0)
		e->low_word_first = false;
	else if (strcmp(tok[2], "lo") == 0)
		e->low_word_first = true;
	else {
		snprintf(err, errlen, "line %u: bad word order '%s' (hi or lo)", line, tok[2]);
		return METER_EMALFORMED;
	}
	e->scale = strtod(tok[3], &end);
	if (*end || end == tok[3] || !(e->scale == e->scale) || e->scale == 0) {
		snprintf(err, errlen, "line %u: bad scale '%s'", line, tok[3]);
		return METER_EMALFORMED;
	}
	if (strlen(tok[4]) >= sizeof(e->unit)) {
		snprintf(err, errlen, "line %u: unit '%s' too long", line, tok[4]);
		return METER_EMALFORMED;
	}
	if (strcmp(tok[4], "-") != 0)
		strcpy(e->unit, tok[4]);
	if (obis_parse(tok[5], &e->obis) < 0) {
		snprintf(err, errlen, "line %u: bad OBIS code '%s'", line, tok[5]);
		return METER_EMALFORMED;
	}
	return 0;
}

int
modbus_map_parse(struct modbus_map *m, const char *text, size_t len, char *err, size_t errlen)
{
	size_t pos = 0;
	unsigned line = 0;
	char buf[256];

	if (errlen)
		err[0] = '\0';
	while (pos < len) {
		const char *nl = memchr(text + pos, '\n', len - pos);
		size_t ll = nl ? (size_t)(nl - (text + pos)) : len - pos;
		line++;
		if (ll >= sizeof(buf)) {
			snprintf(err, errlen, "line %u: longer than %zu characters", line,
				 sizeof(buf) - 1);
			return METER_EMALFORMED;
		}
		memcpy(buf, text + pos, ll);
		buf[ll] = '\0';
		pos += ll + 1;
		if (memchr(buf, '\0', ll) != NULL) {
			snprintf(err, errlen, "line %u: NUL byte", line);
			return METER_EMALFORMED;
		}
		char *hash = strchr(buf, '#');
		if (hash)
			*hash = '\0';
		if (buf[strspn(buf, " \t\r")] == '\0')
			continue;
		if (m->n == m->cap) {
			snprintf(err, errlen, "line %u: more than %zu entries", line, m->cap);
			return METER_ENOSPC;
		}
		int rc = parse_line(buf, line, &m->e[m->n], err, errlen);
		if (rc < 0)
			return rc;
		m->n++;
	}
	return 0;
}

int
modbus_map_decode(const struct modbus_map *m, uint16_t start, const uint16_t *regs,
		  size_t nregs, struct modbus_reading *out, size_t cap, size_t *n)
{
	*n = 0;
	for (size_t i = 0; i < m->n; i++) {
		const struct modbus_map_entry *e = &m->e[i];
		if (e->reg < start || (size_t)(e->reg - start) + e->words > nregs)
			continue;
		if (*n == cap)
			return METER_ENOSPC;
		const uint16_t *w = regs + (e->reg - start);
		uint64_t raw = 0;
		for (unsigned k = 0; k < e->words; k++) {
			unsigned idx = e->low_word_first ? e->words - 1 - k : k;
			raw = raw << 16 | w[idx];
		}
		double v;
		switch (e->type) {
		case MODBUS_S16:
			v = (int16_t)raw;
			break;
		case MODBUS_S32:
			v = (int32_t)(uint32_t)raw;
			break;
		case MODBUS_F32: {
			float f;
			uint32_t u = (uint32_t)raw;
			memcpy(&f, &u, 4);
			v = f;
			break;
		}
		case MODBUS_F64:
			memcpy(&v, &raw, 8);
			break;
		default:
			v = (double)raw;
			break;
		}
		out[*n].entry = e;
		out[*n].value = v * e->scale;
		(*n)++;
	}
	return 0;
}
