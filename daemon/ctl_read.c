/*
 * ctl_read.c: `ammctl read` and `ammctl action` (not yet written).
 */
#include <stdio.h>

#include "ctl.h"

int
ctl_read(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	fprintf(stderr, "ammctl read: not implemented yet\n");
	return 1;
}

int
ctl_action(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	fprintf(stderr, "ammctl action: not implemented yet\n");
	return 1;
}
