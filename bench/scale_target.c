/*
 * Benchmark target for bench_dump_scale.py, one of three shapes:
 *
 *     scale_target threads N     one process, N threads besides the main one
 *     scale_target tree N        N processes: the root and N-1 children (a flat tree)
 *     scale_target vmas N        one process with N VMAs: a region of N pages whose
 *                                protections alternate page by page, every page touched
 *
 * Every task waits in pause(). Prints "ready" when the whole shape is in place.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define PAGE 4096

static void *sleeper(void *arg)
{
	(void)arg;
	for (;;)
		pause();
	return NULL;
}

int main(int argc, char **argv)
{
	long n = argc > 2 ? atol(argv[2]) : 0, i;
	int ready[2];

	if (argc != 3 || n < 1)
		return fprintf(stderr, "usage: scale_target threads|tree|vmas N\n"), 2;
	if (!strcmp(argv[1], "threads")) {
		for (i = 0; i < n; i++) {
			pthread_t t;
			pthread_attr_t a;

			pthread_attr_init(&a);
			pthread_attr_setstacksize(&a, 64 << 10);
			if (pthread_create(&t, &a, sleeper, NULL))
				return perror("pthread_create"), 1;
		}
	} else if (!strcmp(argv[1], "tree")) {
		if (pipe(ready))
			return 1;
		for (i = 1; i < n; i++) {
			pid_t p = fork();

			if (p < 0)
				return perror("fork"), 1;
			if (p == 0) {
				(void)!write(ready[1], "x", 1);
				sleeper(NULL);
			}
		}
		for (i = 1; i < n; i++) {
			char x;

			if (read(ready[0], &x, 1) != 1)
				return 1;
		}
	} else if (!strcmp(argv[1], "vmas")) {
		char *m = mmap(NULL, n * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

		if (m == MAP_FAILED)
			return perror("mmap"), 1;
		for (i = 0; i < n; i++)
			m[i * PAGE] = (char)i;
		for (i = 1; i < n; i += 2)
			if (mprotect(m + i * PAGE, PAGE, PROT_READ))
				return perror("mprotect"), 1;
	} else {
		return fprintf(stderr, "unknown shape %s\n", argv[1]), 2;
	}
	printf("ready\n");
	fflush(stdout);
	sleeper(NULL);
}
