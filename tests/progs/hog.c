/*
 * Test/benchmark target: MIB mebibytes of touched private anonymous memory (every page
 * holds its own index, so a misplaced page shows), one page of shared anonymous memory,
 * a close-on-exec descriptor, a pipe with buffered data, and a SIGUSR1 handler that
 * answers "pong" on stdout. Prints "ready" once set up, then waits forever.
 *
 *     hog MIB
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define PAGE 4096

static void pong(int sig)
{
	(void)sig;
	(void)!write(STDOUT_FILENO, "pong\n", 5);
}

int main(int argc, char **argv)
{
	size_t size = (size_t)(argc > 1 ? atol(argv[1]) : 1) << 20, i;
	struct sigaction sa = { .sa_handler = pong, .sa_flags = SA_RESTART };
	char *mem, *shared;
	int p[2];

	mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	shared = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED || shared == MAP_FAILED)
		return 1;
	for (i = 0; i < size; i += PAGE) {
		memset(mem + i, 0x5a, PAGE);
		*(uint64_t *)(mem + i) = i / PAGE;
	}
	strcpy(shared, "shared anonymous page");
	if (open("/dev/null", O_RDONLY | O_CLOEXEC) < 0 || pipe2(p, O_CLOEXEC) ||
	    write(p[1], "hog pipe", 8) != 8)
		return 1;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGUSR1, &sa, NULL);
	printf("ready\n");
	fflush(stdout);
	for (;;)
		pause();
}
