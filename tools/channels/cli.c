/*
 * cli PATH N [CPU]: N x stat(PATH), optionally pinned to CPU. Prints one line:
 *   stats N errs E total_us T us_per_stat U cpuI COUNT...
 * with the number of stats made on each CPU the loop ran on (sampled after
 * every stat). Exits 1 if any stat failed.
 */
#define _GNU_SOURCE
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>

#define MAXCPU 64

int main(int argc, char **argv)
{
	if (argc < 3 || atol(argv[2]) < 1) {
		fprintf(stderr, "usage: %s PATH N [CPU]\n", argv[0]);
		return 2;
	}
	long n = atol(argv[2]);
	if (argc > 3) {
		cpu_set_t cs;
		CPU_ZERO(&cs);
		CPU_SET(atoi(argv[3]), &cs);
		if (sched_setaffinity(0, sizeof(cs), &cs)) {
			perror("sched_setaffinity");
			return 2;
		}
	}
	struct stat st;
	struct timespec a, b;
	long cpu_hist[MAXCPU] = { 0 }, errs = 0;
	clock_gettime(CLOCK_MONOTONIC, &a);
	for (long i = 0; i < n; i++) {
		if (stat(argv[1], &st))
			errs++;
		int c = sched_getcpu();
		if (c >= 0 && c < MAXCPU)
			cpu_hist[c]++;
	}
	clock_gettime(CLOCK_MONOTONIC, &b);
	double us = (b.tv_sec - a.tv_sec) * 1e6 + (b.tv_nsec - a.tv_nsec) / 1e3;
	printf("stats %ld errs %ld total_us %.0f us_per_stat %.2f", n, errs, us, us / n);
	for (int c = 0; c < MAXCPU; c++)
		if (cpu_hist[c])
			printf(" cpu%d %ld", c, cpu_hist[c]);
	printf("\n");
	return errs ? 1 : 0;
}
