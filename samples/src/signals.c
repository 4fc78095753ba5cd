/*
 * Custom SIGUSR1/SIGUSR2 handlers, SIGUSR2 blocked with one queued by sigqueue, an
 * interval timer and an alternate signal stack.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/time.h>
#include <unistd.h>

static volatile sig_atomic_t got;

static void on_usr1(int sig) { got = sig; }
static void on_usr2(int sig, siginfo_t *si, void *ctx) { (void)si; (void)ctx; got = sig; }
static void on_alarm(int sig) { got = sig; }

int main(void)
{
	struct sigaction sa = { .sa_handler = on_usr1, .sa_flags = SA_RESTART };
	struct itimerval it = { .it_interval = { 3600, 0 }, .it_value = { 1800, 500000 } };
	stack_t ss = { .ss_sp = malloc(SIGSTKSZ), .ss_size = SIGSTKSZ };
	sigset_t block;

	sigaction(SIGUSR1, &sa, NULL);
	sa.sa_handler = NULL;
	sa.sa_sigaction = on_usr2;
	sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
	sigaddset(&sa.sa_mask, SIGUSR1);
	sigaction(SIGUSR2, &sa, NULL);
	signal(SIGALRM, on_alarm);
	sigaltstack(&ss, NULL);
	setitimer(ITIMER_REAL, &it, NULL);
	sigemptyset(&block);
	sigaddset(&block, SIGUSR2);
	sigprocmask(SIG_BLOCK, &block, NULL);
	sigqueue(getpid(), SIGUSR2, (union sigval){ .sival_int = 42 });
	printf("ready\n");
	fflush(stdout);
	for (;;)
		pause();
}
