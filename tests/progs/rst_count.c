/*
 * A counter for restore tests and benchmarks: MIB mebibytes of memory whose every page
 * holds its own index (checked on every step, so a misplaced page stops it), and a line
 * "N pid PID ok NS" appended to OUT every PERIOD microseconds (20,000 by default), NS being
 * CLOCK_REALTIME in nanoseconds (bench/bench_restore.py measures the downtime of a
 * migration from it; not CLOCK_MONOTONIC, which a restore's time namespace carries on from
 * the dump, so that it does not see the downtime). It goes on counting from where it was after a checkpoint and
 * restart; a page that is wrong makes it write "FAIL" and exit 1.
 *
 *     rst_count OUT MIB [PERIOD]
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096

int main(int argc, char **argv)
{
	size_t size = (size_t)(argc > 2 ? atol(argv[2]) : 0) << 20, pages = size / PAGE, i;
	long period = argc > 3 ? atol(argv[3]) : 20000;
	struct timespec now;
	char *mem = size ? mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
			 : NULL;
	FILE *out;
	long n;

	if (argc < 2 || mem == MAP_FAILED || !(out = fopen(argv[1], "a")))
		return 2;
	setvbuf(out, NULL, _IOLBF, 0);
	for (i = 0; i < pages; i++)
		memcpy(mem + i * PAGE, &i, sizeof(i));
	for (n = 0;; n++) {
		size_t probe = pages ? (size_t)n * 7919 % pages : 0;

		if (pages && memcmp(mem + probe * PAGE, &probe, sizeof(probe))) {
			fprintf(out, "FAIL page %zu\n", probe);
			return 1;
		}
		clock_gettime(CLOCK_REALTIME, &now);
		fprintf(out, "%ld pid %d ok %lld\n", n, getpid(), now.tv_sec * 1000000000LL + now.tv_nsec);
		usleep(period);
	}
}
