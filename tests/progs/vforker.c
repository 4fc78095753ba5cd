/*
 * Test target: a vfork parent that never returns from vfork on its own. The child
 * prints "ready" and waits for a signal (pause) without calling exec, so the parent
 * stays in the kernel (state D) until the child dies; then it reaps the child and exits
 * with 0, or 1 if anything was off.
 *
 *     vforker
 */
#define _GNU_SOURCE
#include <sys/wait.h>
#include <unistd.h>

int main(void)
{
	int status;
	pid_t child = vfork();

	if (child == 0) {
		/* only async-signal-safe calls that touch no memory of the parent */
		(void)!write(STDOUT_FILENO, "ready\n", 6);
		for (;;)
			pause();
	}
	if (child < 0 || waitpid(child, &status, 0) != child)
		return 1;
	return WIFSIGNALED(status) ? 0 : 1;
}
