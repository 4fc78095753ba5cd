/* Three threads, each blocked in a function of its own. */
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>

static int pipefd[2];
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t never = PTHREAD_COND_INITIALIZER;
static pthread_barrier_t started;

static __attribute__((noreturn)) void *sleeper(void *arg)
{
	(void)arg;
	pthread_barrier_wait(&started);
	for (;;)
		sleep(100);
}

static __attribute__((noreturn)) void *reader(void *arg)
{
	char c;

	(void)arg;
	pthread_barrier_wait(&started);
	for (;;)
		read(pipefd[0], &c, 1);	/* nobody writes */
}

static __attribute__((noreturn)) void *waiter(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&lock);
	pthread_barrier_wait(&started);
	for (;;)
		pthread_cond_wait(&never, &lock);
}

int main(void)
{
	pthread_t t[3];

	if (pipe(pipefd))
		return 1;
	pthread_barrier_init(&started, NULL, 4);
	pthread_create(&t[0], NULL, sleeper, NULL);
	pthread_create(&t[1], NULL, reader, NULL);
	pthread_create(&t[2], NULL, waiter, NULL);
	pthread_barrier_wait(&started);
	printf("ready\n");
	fflush(stdout);
	for (;;)
		pause();
}
