/*
 * bench_round.c: `make bench` entry point of the collection-round benchmark.
 *
 * tests/bench/run.sh runs every build/bench_* program; the round benchmark
 * itself is a shell script (tests/bench/bench_round.sh) because it
 * orchestrates processes — a private PostgreSQL, metersim and ammd — and
 * reads their CPU time from /proc.  This program only finds the script next
 * to the build directory and runs it with the same arguments and with
 * BUILD set to the directory holding this binary (so the ammd, ammctl and
 * metersim of the same build are measured).
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int
main(int argc, char **argv)
{
	char exe[PATH_MAX], script[PATH_MAX + 64];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	char *slash;

	if (n <= 0 || (exe[n] = '\0', slash = strrchr(exe, '/')) == NULL) {
		fprintf(stderr, "bench_round: cannot find my own path\n");
		return 1;
	}
	*slash = '\0';
	snprintf(script, sizeof(script), "%s/../tests/bench/bench_round.sh", exe);
	if (access(script, R_OK) != 0) {
		fprintf(stderr, "bench_round: no %s\n", script);
		return 1;
	}
	setenv("BUILD", exe, 1);
	char **av = calloc((size_t)argc + 2, sizeof(*av));
	if (av == NULL)
		return 1;
	av[0] = "bash";
	av[1] = script;
	for (int i = 1; i < argc; i++)
		av[i + 1] = argv[i];
	execv("/bin/bash", av);
	perror("bench_round: /bin/bash");
	free(av);
	return 1;
}
