/*
 * Test target whose depth-first and breadth-first task orders differ: the root (with a
 * second thread) forks A, A forks A1, then the root forks B and a child Z that exits at
 * once and is never reaped (a zombie). Prints "ready" once all of that is in place, then
 * waits forever.
 *
 *     root (+thread) -> A -> A1
 *                    -> B
 *                    -> Z (zombie, exit status 3)
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

static __attribute__((noreturn)) void *sleeper(void *arg)
{
	(void)arg;
	for (;;)
		pause();
}

static __attribute__((noreturn)) void wait_forever(void)
{
	for (;;)
		pause();
}

int main(void)
{
	pthread_t th;
	siginfo_t si;
	pid_t z;
	int p[2];
	char c;

	if (pipe(p) || pthread_create(&th, NULL, sleeper, NULL))
		return 1;
	if (fork() == 0) {			/* A */
		if (fork() == 0)		/* A1 */
			wait_forever();
		if (write(p[1], "x", 1) != 1)
			_exit(1);
		wait_forever();
	}
	if (read(p[0], &c, 1) != 1)		/* A1 exists */
		return 1;
	if (fork() == 0)			/* B */
		wait_forever();
	z = fork();
	if (z == 0)
		_exit(3);
	if (waitid(P_PID, z, &si, WEXITED | WNOWAIT))	/* Z is a zombie now */
		return 1;
	printf("ready\n");
	fflush(stdout);
	wait_forever();
}
