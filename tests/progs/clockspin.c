/*
 * Test target that spends most of its time inside the vDSO: a loop calling
 * clock_gettime (a vDSO function, no syscall). Prints "ready", then spins forever.
 *
 *     clockspin
 */
#include <stdio.h>
#include <time.h>

volatile unsigned long rounds;

static void __attribute__((noinline)) spin(void)
{
	struct timespec ts;

	for (;;) {
		clock_gettime(CLOCK_MONOTONIC, &ts);
		rounds++;
	}
}

int main(void)
{
	printf("ready\n");
	fflush(stdout);
	spin();
}
