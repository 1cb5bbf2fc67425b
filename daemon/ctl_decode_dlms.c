/*
 * ctl_decode_dlms.c: `ammctl decode dlms|hdlc|wrapper HEX|-` (not yet written).
 */
#include <stdio.h>

#include "ctl.h"

int
ctl_decode_dlms(const char *kind, int argc, char **argv)
{
	(void)argc;
	(void)argv;
	fprintf(stderr, "ammctl decode %s: not implemented yet\n", kind);
	return 1;
}
