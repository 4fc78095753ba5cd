/*
 * Event files, rseq and the clocks across a checkpoint and restart (tests/test_restore_evfd.py).
 *
 *   rst_evfd OUT GO MODE
 *
 * Sets up an epoll watching a pipe, an eventfd, a signalfd (SIGUSR1) and a periodic timerfd
 * (100 ms); a semaphore eventfd with a count; a periodic timerfd (20 ms) nobody reads; a
 * one-shot timerfd that expired unread; an inotify with watches 2 (/) and 3 (GO's directory;
 * watch 1 was removed). Starts a thread that waits for the file GO, then creates GO.woke
 * (for the inotify), writes a byte to the pipe, adds 5 to the eventfd, sends the process
 * SIGUSR1 and checks that its own rseq area is registered. Writes "ready" to OUT
 * and sits in epoll_wait (reading the 100 ms timer's ticks as they come) until the pipe,
 * the eventfd and the signal have all been seen. Then it checks what it finds against what
 * it set up, writes "ok NAME" or "FAIL NAME: why" lines to OUT and exits 0 only if every
 * check passed. MODE "timens": the restore ran the tree in a time namespace, so
 * CLOCK_MONOTONIC must not count the time between dump and restore (which the test makes
 * at least 1.5 s); "host": it must count it (the caller's clocks).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/rseq.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <libgen.h>
#include <poll.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"

#define NS 1000000000LL
#define DOWNTIME_MIN_NS (NS * 3 / 2)
#define D_PIPE 0x1122334455667788ULL
#define D_EVFD 0x0102030405060708ULL
#define D_SIG 77
#define D_TICK 78

extern const ptrdiff_t __rseq_offset;
extern const unsigned int __rseq_size;



static int64_t now(clockid_t clk)
{
	struct timespec ts;

	clock_gettime(clk, &ts);
	return ts.tv_sec * NS + ts.tv_nsec;
}

static void arm(int fd, int64_t value, int64_t interval)
{
	struct itimerspec its = { { interval / NS, interval % NS }, { value / NS, value % NS } };

	if (timerfd_settime(fd, 0, &its, NULL))
		perror("timerfd_settime"), exit(2);
}

static volatile struct rseq *rseq_area(void)
{
	return (struct rseq *)((char *)__builtin_thread_pointer() + __rseq_offset);
}

/* the kernel writes the current CPU into a registered area whenever the thread comes back */
static int32_t rseq_cpu_after_reset(void)
{
	int n;

	rseq_area()->cpu_id = RSEQ_CPU_ID_UNINITIALIZED;
	for (n = 0; n < 20 && (int32_t)rseq_area()->cpu_id < 0; n++)
		usleep(1000);
	return rseq_area()->cpu_id;
}

static const char *go_file;
static int pipe_w, writer_evfd;
static int32_t writer_cpu_id = -2;

static void *writer(void *arg)
{
	uint64_t five = 5;
	struct timespec tick = { 0, 10000000 };
	char woke[4200];
	int fd;

	while (access(go_file, F_OK))
		nanosleep(&tick, NULL);
	snprintf(woke, sizeof(woke), "%s.woke", go_file);	/* for the inotify watch */
	fd = open(woke, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		return arg;
	close(fd);
	if (write(pipe_w, "x", 1) != 1 || write(writer_evfd, &five, 8) != 8 || kill(getpid(), SIGUSR1))
		return arg;
	writer_cpu_id = rseq_cpu_after_reset();
	return NULL;
}

int main(int argc, char **argv)
{
	int p[2], evfd, sem, sfd, tick, fast, once, ep, in, n;
	char dir[4096];
	int64_t mono0, real0, boot0, fast_armed, mono_el, real_el, boot_el;
	bool got_pipe = false, got_evfd = false, got_sig = false;
	struct epoll_event ev, evs[8];
	struct signalfd_siginfo si = { 0 };
	uint64_t v, ticks = 0, pipe_data = 0, evfd_data = 0;
	sigset_t usr1;
	pthread_t kid;
	void *kid_ret = &kid;
	char c;

	if (argc != 4)
		return 2;
	out = fopen(argv[1], "w");
	if (!out)
		return 2;
	setvbuf(out, NULL, _IOLBF, 0);
	sigemptyset(&usr1);
	sigaddset(&usr1, SIGUSR1);
	sigprocmask(SIG_BLOCK, &usr1, NULL);
	if (pipe2(p, O_CLOEXEC))
		return 2;
	evfd = eventfd(3, EFD_CLOEXEC);
	sem = eventfd(2, EFD_SEMAPHORE | EFD_NONBLOCK);
	sfd = signalfd(-1, &usr1, SFD_CLOEXEC);
	tick = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	fast = timerfd_create(CLOCK_MONOTONIC, 0);
	once = timerfd_create(CLOCK_BOOTTIME, TFD_NONBLOCK);
	ep = epoll_create1(EPOLL_CLOEXEC);
	if (evfd < 0 || sem < 0 || sfd < 0 || tick < 0 || fast < 0 || once < 0 || ep < 0)
		return 2;
	ev = (struct epoll_event){ .events = EPOLLIN, .data.u64 = D_PIPE };
	epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev);
	ev = (struct epoll_event){ .events = EPOLLIN | EPOLLET, .data.u64 = D_EVFD };
	epoll_ctl(ep, EPOLL_CTL_ADD, evfd, &ev);
	ev = (struct epoll_event){ .events = EPOLLIN, .data.u64 = D_SIG };
	epoll_ctl(ep, EPOLL_CTL_ADD, sfd, &ev);
	ev = (struct epoll_event){ .events = EPOLLIN, .data.u64 = D_TICK };
	epoll_ctl(ep, EPOLL_CTL_ADD, tick, &ev);
	go_file = argv[2];
	pipe_w = p[1];
	writer_evfd = evfd;
	if (pthread_create(&kid, NULL, writer, NULL))
		return 2;
	arm(once, NS / 100, 0);
	arm(fast, NS / 50, NS / 50);
	fast_armed = now(CLOCK_MONOTONIC);
	arm(tick, NS / 20, NS / 10);
	usleep(50000);			/* the one-shot has expired: one tick to read after restore */
	snprintf(dir, sizeof(dir), "%s", argv[2]);
	in = inotify_init1(IN_NONBLOCK);
	if (in < 0 || inotify_add_watch(in, dirname(dir), IN_CREATE) != 1 ||
	    inotify_add_watch(in, "/", IN_ATTRIB) != 2 || inotify_rm_watch(in, 1) ||
	    inotify_add_watch(in, dir, IN_CREATE) != 3)
		return 2;
	{
		char ev_buf[256];

		usleep(10000);
		while (read(in, ev_buf, sizeof(ev_buf)) > 0)
			;	/* the IN_IGNORED of watch 1 */
	}
	check("rseq-registered", __rseq_size >= 20 && (int32_t)rseq_area()->cpu_id >= 0,
	      "glibc has no rseq area (size %u, cpu_id %d)", __rseq_size, (int)rseq_area()->cpu_id);
	mono0 = now(CLOCK_MONOTONIC);
	real0 = now(CLOCK_REALTIME);
	boot0 = now(CLOCK_BOOTTIME);
	fprintf(out, "ready\n");
	while (!(got_pipe && got_evfd && got_sig)) {
		n = epoll_wait(ep, evs, 8, 30000);
		if (n < 0 && errno == EINTR)
			continue;	/* a ptrace stop (the dump) interrupts epoll_wait, as SIGSTOP does */
		if (n <= 0) {
			check("epoll-wakes", 0, "epoll_wait returned %d (%s)", n, n ? strerror(errno) : "timeout");
			return 1;
		}
		for (int i = 0; i < n; i++) {
			switch (evs[i].data.u64) {
			case D_PIPE: got_pipe = true; pipe_data = evs[i].data.u64; break;
			case D_EVFD: got_evfd = true; evfd_data = evs[i].data.u64; break;
			case D_SIG:
				got_sig = true;
				if (read(sfd, &si, sizeof(si)) != sizeof(si))
					si.ssi_signo = 0;
				break;
			case D_TICK:
				if (read(tick, &v, 8) == 8)
					ticks += v;
				break;
			default:
				check("epoll-data", 0, "unknown data %#llx", (unsigned long long)evs[i].data.u64);
			}
		}
	}
	mono_el = now(CLOCK_MONOTONIC) - mono0;
	real_el = now(CLOCK_REALTIME) - real0;
	boot_el = now(CLOCK_BOOTTIME) - boot0;
	check("epoll-wakes", 1, "");
	check("epoll-data", pipe_data == D_PIPE && evfd_data == D_EVFD, "data %#llx %#llx",
	      (unsigned long long)pipe_data, (unsigned long long)evfd_data);
	check("pipe", read(p[0], &c, 1) == 1 && c == 'x', "no byte in the pipe");
	check("eventfd-count", read(evfd, &v, 8) == 8 && v == 8, "read %llu, expected 3 + 5",
	      (unsigned long long)v);
	v = 0;
	n = read(sem, &v, 8);
	check("eventfd-semaphore", n == 8 && v == 1 && read(sem, &v, 8) == 8 && v == 1 &&
	      read(sem, &v, 8) < 0 && errno == EAGAIN, "reads of the semaphore (count 2) went wrong");
	check("eventfd-nonblock", fcntl(sem, F_GETFL) & O_NONBLOCK, "O_NONBLOCK lost");
	check("signalfd", si.ssi_signo == SIGUSR1 && (pid_t)si.ssi_pid == getpid(),
	      "signal %u from %u, expected %d from %d", si.ssi_signo, si.ssi_pid, SIGUSR1, getpid());
	ev = (struct epoll_event){ .events = EPOLLIN | EPOLLOUT, .data.u64 = 1 };
	check("epoll-mod", epoll_ctl(ep, EPOLL_CTL_MOD, p[0], &ev) == 0, "MOD of the pipe: %s",
	      strerror(errno));
	check("epoll-del", epoll_ctl(ep, EPOLL_CTL_DEL, evfd, NULL) == 0, "DEL of the eventfd: %s",
	      strerror(errno));
	check("epoll-del-again", epoll_ctl(ep, EPOLL_CTL_DEL, evfd, NULL) < 0 && errno == ENOENT,
	      "a second DEL did not fail with ENOENT");
	/* the 100 ms timer goes on at its interval */
	{
		struct itimerspec its;
		int64_t t0 = now(CLOCK_MONOTONIC), got = 0;

		timerfd_gettime(tick, &its);
		check("timerfd-interval", its.it_interval.tv_sec == 0 && its.it_interval.tv_nsec == NS / 10,
		      "interval %ld.%09ld", (long)its.it_interval.tv_sec, its.it_interval.tv_nsec);
		while (now(CLOCK_MONOTONIC) - t0 < NS / 2) {
			struct epoll_event e;

			if (epoll_wait(ep, &e, 1, 1000) == 1 && e.data.u64 == D_TICK && read(tick, &v, 8) == 8)
				got += v;
		}
		check("timerfd-fires", got >= 3 && got <= 7, "%lld ticks in 0.5 s at 100 ms", (long long)got);
	}
	check("timerfd-oneshot", read(once, &v, 8) == 8 && v == 1, "the expired one-shot gave no tick");
	{
		int64_t el = now(CLOCK_MONOTONIC) - fast_armed, expect = el / (NS / 50);

		n = read(fast, &v, 8);
		if (!strcmp(argv[3], "timens"))
			check("timerfd-ticks", n == 8 && (int64_t)v >= expect - 3 - expect / 10 &&
			      (int64_t)v <= expect + 3, "%llu ticks, expected about %lld (monotonic %lld ms)",
			      (unsigned long long)v, (long long)expect, (long long)(el / 1000000));
		else
			check("timerfd-ticks", n == 8 && v > 1, "%llu ticks", (unsigned long long)v);
	}
	if (!strcmp(argv[3], "timens")) {
		check("monotonic", mono_el >= 0 && real_el - mono_el >= DOWNTIME_MIN_NS,
		      "monotonic went on %lld ms while %lld ms passed", (long long)(mono_el / 1000000),
		      (long long)(real_el / 1000000));
		check("boottime", boot_el >= 0 && real_el - boot_el >= DOWNTIME_MIN_NS,
		      "boottime went on %lld ms while %lld ms passed", (long long)(boot_el / 1000000),
		      (long long)(real_el / 1000000));
	} else {
		check("monotonic", mono_el >= real_el - NS / 5 && mono_el <= real_el + NS / 5,
		      "monotonic went on %lld ms while %lld ms passed", (long long)(mono_el / 1000000),
		      (long long)(real_el / 1000000));
	}
	{
		union { struct inotify_event e; char b[512]; } ie = { .e = { .wd = 0 } };
		struct pollfd pfd = { .fd = in, .events = POLLIN };

		n = poll(&pfd, 1, 2000) == 1 ? read(in, &ie, sizeof(ie)) : -1;
		check("inotify", n > 0 && ie.e.wd == 3 && ie.e.mask == IN_CREATE && ie.e.len &&
		      !strcmp(ie.e.name, "go.woke"), "first event: %d bytes, watch %d, mask %#x, name '%s'",
		      n, ie.e.wd, ie.e.mask, n > 0 && ie.e.len ? ie.e.name : "");
		check("inotify-watch-2", inotify_rm_watch(in, 2) == 0, "watch 2 is gone: %s",
		      strerror(errno));
	}
	n = rseq_cpu_after_reset();
	check("rseq-after", n >= 0, "the rseq area's cpu_id stays %d (not registered)", n);
	check("writer", !pthread_join(kid, &kid_ret) && !kid_ret, "the writer thread failed");
	check("rseq-after-thread", writer_cpu_id >= 0,
	      "the writer thread's rseq area's cpu_id stays %d (not registered)", (int)writer_cpu_id);
	fprintf(out, "done %d\n", failures);
	return failures ? 1 : 0;
}
