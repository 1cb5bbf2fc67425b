/*
 * ctl_decode_mbus.c: `ammctl decode mbus HEX|-` (not yet written).
 */
#include <stdio.h>

#include "ctl.h"

int
ctl_decode_mbus(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	fprintf(stderr, "ammctl decode mbus: not implemented yet\n");
	return 1;
}
