/*
 * The process the user starts is not the tracer. It forks one child that does all the
 * ptrace work and only waits for it, passing on SIGINT/SIGTERM/SIGHUP. The child has
 * PR_SET_PDEATHSIG: if the launched process dies, even by SIGKILL, the child gets
 * SIGTERM and takes the normal interrupted path, which puts back the registers, signal
 * mask and scratch bytes of a task it is running a syscall in, and detaches every task.
 * (If the tracer itself died, the kernel would resume its tracees as they are: inside an
 * injected syscall that means at a borrowed instruction with all signals blocked.)
 * The launched process itself has PR_SET_PDEATHSIG too, so the engine dies with the
 * wrapper that started it (imgtools dump, a shell script) and releases the tasks.
 *
 * The tracer is named imgtools-tracer so that `pkill imgtools-engine` or
 * `killall imgtools-engine` reach the supervisor, not the tracer. SIGKILL of the tracer
 * by its own pid is the one case not covered.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "engine.h"

static volatile pid_t worker;
static volatile sig_atomic_t early_signal;	/* arrived before the tracer existed */

static void forward(int sig)
{
	if (worker > 0)
		kill(worker, sig);
	else
		early_signal = sig;
}

/* PR_SET_PDEATHSIG(sig), unless the parent is already gone (then 1). */
static int die_with_parent(pid_t parent, int sig)
{
	if (prctl(PR_SET_PDEATHSIG, sig))
		return pr_perror("prctl PR_SET_PDEATHSIG");
	return getppid() != parent;
}

int run_supervised(int (*work)(void *), void *arg)
{
	struct sigaction sa = { .sa_handler = forward };
	pid_t self = getpid(), pid;
	int status;

	if (die_with_parent(getppid(), SIGTERM) > 0)
		return pr_err("the process that started the engine is gone"), EXIT_INTERNAL;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	fflush(NULL);
	pid = fork();
	if (pid < 0)
		return pr_perror("fork the tracer"), EXIT_INTERNAL;
	if (pid == 0) {
		int r;

		if (die_with_parent(self, SIGTERM))
			_exit(EXIT_INTERNAL);	/* the supervisor died before we started */
		prctl(PR_SET_NAME, "imgtools-tracer");
		r = work(arg);
		fflush(NULL);
		_exit(r);
	}
	worker = pid;
	if (early_signal)
		kill(pid, early_signal);
	while (waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR)
			return pr_perror("wait for the tracer %d", pid), EXIT_INTERNAL;
	}
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	return pr_err("the tracer (pid %d) was killed by %s", pid, strsignal(WTERMSIG(status))),
	       EXIT_INTERNAL;
}
