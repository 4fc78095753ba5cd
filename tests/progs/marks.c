/*
 * Test target for `mem` and `diff`: known strings at known addresses in the heap, on the
 * main stack, in a shared anonymous mapping (shared with a child process) and on a second
 * thread's stack, a mapping that is never touched, and a counter. Prints "ready", then
 * one line of addresses:
 *
 *     heap=ADDR stack=ADDR shared=ADDR thread=ADDR untouched=ADDR counter=ADDR child=PID
 *
 * On SIGUSR1 it adds one to the counter, opens /etc/hostname and maps (and fills) four
 * pages, then prints "changed fd=FD region=ADDR".
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define PAGE 4096

static volatile uint64_t counter = 0x1234567800000000ULL;
static volatile sig_atomic_t poked;
static char *volatile thread_mark;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;

static void poke(int sig)
{
	(void)sig;
	poked = 1;
}

static void *thread_main(void *arg)
{
	char mark[64];
	sigset_t all;

	(void)arg;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	strcpy(mark, "thread stack marker 7e1d");
	pthread_mutex_lock(&lock);
	thread_mark = mark;
	pthread_cond_signal(&cond);
	pthread_mutex_unlock(&lock);
	for (;;)
		pause();
	return NULL;
}

int main(void)
{
	char stack_mark[64];
	char *heap, *shared, *untouched;
	struct sigaction sa = { .sa_handler = poke };
	pthread_t th;
	pid_t child;
	int i;

	heap = malloc(256 << 10);
	shared = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	untouched = mmap(NULL, 8 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
			 -1, 0);
	if (!heap || shared == MAP_FAILED || untouched == MAP_FAILED)
		return 1;
	/* before any mark is written: the child shares only the shared mapping's */
	child = fork();
	if (child < 0)
		return 1;
	if (child == 0)
		for (;;)
			pause();
	for (i = 0; i < (256 << 10); i++)
		heap[i] = (char)(i * 7);
	strcpy(heap + 5000, "heap marker 9f3a");
	strcpy(stack_mark, "stack marker 41c2");
	strcpy(shared + PAGE + 100, "shared marker 0b77");
	sigemptyset(&sa.sa_mask);
	sigaction(SIGUSR1, &sa, NULL);
	pthread_mutex_lock(&lock);
	if (pthread_create(&th, NULL, thread_main, NULL))
		return 1;
	while (!thread_mark)
		pthread_cond_wait(&cond, &lock);
	pthread_mutex_unlock(&lock);
	printf("ready\nheap=%p stack=%p shared=%p thread=%p untouched=%p counter=%p child=%d\n",
	       (void *)(heap + 5000), (void *)stack_mark, (void *)(shared + PAGE + 100),
	       (void *)thread_mark, (void *)untouched, (void *)&counter, (int)child);
	fflush(stdout);
	for (;;) {
		pause();
		if (poked) {
			char *region;
			int fd;

			poked = 0;
			counter++;
			fd = open("/etc/hostname", O_RDONLY);
			/* far from every other mapping: a VMA of its own */
			region = mmap((void *)0x3f0000000000UL, 4 * PAGE, PROT_READ | PROT_WRITE,
				      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
			if (fd < 0 || region == MAP_FAILED)
				return 1;
			memset(region, 'R', 4 * PAGE);
			printf("changed fd=%d region=%p\n", fd, (void *)region);
			fflush(stdout);
		}
	}
}
