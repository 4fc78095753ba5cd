/*
 * A process that checks itself across a checkpoint and restart (tests/test_restore.py).
 *
 *   rst_solo OUT GO DIR MARK
 *
 * Sets up state (threads with their own TLS, masks and FPU/AVX registers, a thread blocked
 * in read(), pending signals with siginfo, a running itimer, an alternate signal stack,
 * rlimits, umask, cwd DIR, files half read and half written, a cloexec descriptor, heap),
 * writes "ready" to OUT and waits for the file GO. Then it checks that everything is as
 * it was (and goes on working: the itimer fires, the blocked read returns the byte written
 * to it, the pending signals reach their handlers with their values, the threads join),
 * writes "ok NAME" or "FAIL NAME: why" lines to OUT and exits 0 only if every check passed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <immintrin.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "check.h"

static volatile int go_flag;
static __thread long tls_value;
static volatile sig_atomic_t alarms, usr1_value = -1, usr1_code, rt_value = -1;
static volatile sig_atomic_t pwr_pid = -1, pwr_code = -1;
static int read_pipe[2];
static volatile long reader_result = -100;


static void on_alarm(int sig) { (void)sig; alarms++; }
static void on_usr1(int sig, siginfo_t *si, void *uc)
{
	(void)sig; (void)uc;
	usr1_value = si->si_value.sival_int;
	usr1_code = si->si_code;
}
static void on_rt(int sig, siginfo_t *si, void *uc) { (void)sig; (void)uc; rt_value = si->si_value.sival_int; }
static void on_pwr(int sig, siginfo_t *si, void *uc)
{
	(void)sig; (void)uc;
	pwr_pid = si->si_pid;
	pwr_code = si->si_code;
}

struct worker {
	pthread_t th;
	pid_t tid, tid_after;
	long tls, tls_after;
	sigset_t mask_after;
	int fpu_ok;
	unsigned short cw_after;
	unsigned int mxcsr_after;
};
static struct worker w[2];

/* keeps a pattern in ymm0..ymm3 while it spins: the checkpoint stops it mid-loop */
static int spin_with_avx(void)
{
	__m256i a = _mm256_set1_epi32(0x11111111), b = _mm256_set1_epi32(0x22222222);
	__m256i c = _mm256_set1_epi32(0x33333333), d = _mm256_set1_epi32(0x44444444);
	int ok;

	__asm__ volatile("1: cmpl $0, %4\n\tje 1b\n"
			 : "+x"(a), "+x"(b), "+x"(c), "+x"(d) : "m"(go_flag));
	ok = _mm256_movemask_epi8(_mm256_cmpeq_epi32(a, _mm256_set1_epi32(0x11111111))) == -1 &&
	     _mm256_movemask_epi8(_mm256_cmpeq_epi32(b, _mm256_set1_epi32(0x22222222))) == -1 &&
	     _mm256_movemask_epi8(_mm256_cmpeq_epi32(c, _mm256_set1_epi32(0x33333333))) == -1 &&
	     _mm256_movemask_epi8(_mm256_cmpeq_epi32(d, _mm256_set1_epi32(0x44444444))) == -1;
	return ok;
}

static void *worker_main(void *arg)
{
	struct worker *me = arg;
	unsigned short cw = 0x0c7f;	/* x87: round toward zero, all exceptions masked */
	unsigned int mxcsr = 0x7f80 | 0x6000;	/* SSE: round toward zero */
	sigset_t s;

	me->tid = syscall(SYS_gettid);
	tls_value = me->tls = 1000 + (me - w);
	sigemptyset(&s);
	sigaddset(&s, me == &w[0] ? SIGUSR2 : SIGWINCH);
	pthread_sigmask(SIG_BLOCK, &s, NULL);
	__asm__ volatile("fldcw %0" : : "m"(cw));
	__asm__ volatile("ldmxcsr %0" : : "m"(mxcsr));
	me->fpu_ok = spin_with_avx();
	__asm__ volatile("fnstcw %0" : "=m"(me->cw_after));
	__asm__ volatile("stmxcsr %0" : "=m"(me->mxcsr_after));
	me->tid_after = syscall(SYS_gettid);
	me->tls_after = tls_value;
	pthread_sigmask(SIG_BLOCK, NULL, &me->mask_after);
	return NULL;
}

/* the contents of a /proc/self file */
static size_t slurp(const char *path, char *buf, size_t size)
{
	int fd = open(path, O_RDONLY);
	ssize_t n = fd < 0 ? -1 : read(fd, buf, size);

	if (fd >= 0)
		close(fd);
	return n < 0 ? 0 : n;
}

/* uses about depth KiB of stack: the stack grows below what it was */
static int deep(int depth)
{
	volatile char frame[1024];

	frame[0] = (char)depth;
	return depth ? deep(depth - 1) + frame[0] - (char)depth : 0;
}

static void *reader_main(void *arg)
{
	char c;

	(void)arg;
	reader_result = read(read_pipe[0], &c, 1);	/* blocked across the checkpoint */
	return NULL;
}

int main(int argc, char **argv)
{
	struct sigaction sa = { 0 };
	struct itimerval it = { { 0, 20000 }, { 0, 20000 } };
	struct rlimit rl = { 200, 300 }, rl_after;
	char cwd[4096], exe[4096], exe_after[4096], buf[16], path[4200];
	stack_t ss = { .ss_sp = malloc(65536), .ss_size = 65536 }, ss_after;
	unsigned long vdso = getauxval(AT_SYSINFO_EHDR);
	pid_t pid, ppid, pgid, sid;
	struct timespec t0, t1;
	int logfd, datafd, cefd, ncfd, mapfd, i, before;
	char *map;
	pthread_t reader;
	sigset_t s;
	char *heap;
	off_t pos;

	if (argc != 5)
		return 2;
	out = fopen(argv[1], "w");
	setvbuf(out, NULL, _IOLBF, 0);
	if (chdir(argv[3]))
		return 2;
	umask(027);
	setrlimit(RLIMIT_NOFILE, &rl);
	sigaltstack(&ss, NULL);
	pid = getpid(); ppid = getppid(); pgid = getpgid(0); sid = getsid(0);
	static char cmdline[4096], cmdline_after[4096], auxv[1024], auxv_after[1024];
	size_t cmdline_len = slurp("/proc/self/cmdline", cmdline, sizeof(cmdline));
	size_t auxv_len = slurp("/proc/self/auxv", auxv, sizeof(auxv));
	char *brk_before = sbrk(0);
	readlink("/proc/self/exe", exe, sizeof(exe));
	heap = malloc(1 << 20);
	for (i = 0; i < 1 << 20; i++)
		heap[i] = (char)(i * 7);
	/* files: appending, half read, close-on-exec and not */
	logfd = open("log", O_WRONLY | O_APPEND | O_CREAT, 0600);
	write(logfd, "one\n", 4);
	datafd = open("data", O_RDONLY);
	read(datafd, buf, 4);
	cefd = fcntl(datafd, F_DUPFD_CLOEXEC, 20);
	ncfd = dup(logfd);
	mapfd = open("mapped", O_RDWR | O_CREAT | O_TRUNC, 0600);
	ftruncate(mapfd, 4096);
	map = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, mapfd, 0);
	map[0] = 'A';
	/* signals */
	sa.sa_handler = on_alarm;
	sa.sa_flags = SA_RESTART;
	sigaction(SIGALRM, &sa, NULL);
	sa.sa_sigaction = on_usr1;
	sa.sa_flags = SA_SIGINFO | SA_RESTART;
	sigaction(SIGUSR1, &sa, NULL);
	sa.sa_sigaction = on_rt;
	sigaction(SIGRTMIN + 1, &sa, NULL);
	sa.sa_sigaction = on_pwr;
	sigaction(SIGPWR, &sa, NULL);
	sigemptyset(&s);
	sigaddset(&s, SIGUSR1);
	sigaddset(&s, SIGPWR);
	sigaddset(&s, SIGRTMIN + 1);
	sigprocmask(SIG_BLOCK, &s, NULL);
	kill(pid, SIGPWR);					/* SI_USER, from us */
	sigqueue(pid, SIGUSR1, (union sigval){ .sival_int = 42 });	/* shared queue */
	pthread_sigqueue(pthread_self(), SIGRTMIN + 1, (union sigval){ .sival_int = 7 });
	setitimer(ITIMER_REAL, &it, NULL);
	pipe(read_pipe);
	for (i = 0; i < 2; i++)
		pthread_create(&w[i].th, NULL, worker_main, &w[i]);
	pthread_create(&reader, NULL, reader_main, NULL);
	while (!w[0].tid || !w[1].tid)
		usleep(1000);
	fprintf(out, "ready\n");

	snprintf(path, sizeof(path), "%s", argv[2]);
	while (access(path, F_OK))
		usleep(5000);

	/* after the restart */
	check("pids", getpid() == pid && getppid() == ppid && getpgid(0) == pgid && getsid(0) == sid,
	      "pid %d/%d ppid %d/%d pgid %d/%d sid %d/%d", getpid(), pid, getppid(), ppid,
	      getpgid(0), pgid, getsid(0), sid);
	readlink("/proc/self/exe", exe_after, sizeof(exe_after));
	check("exe", !strcmp(exe, exe_after), "%s vs %s", exe_after, exe);
	check("cwd", getcwd(cwd, sizeof(cwd)) && !strcmp(cwd, argv[3]), "%s", cwd);
	check("umask", umask(022) == 027, "changed");
	getrlimit(RLIMIT_NOFILE, &rl_after);
	check("rlimit", rl_after.rlim_cur == 200 && rl_after.rlim_max == 300, "%lu/%lu",
	      rl_after.rlim_cur, rl_after.rlim_max);
	sigaltstack(NULL, &ss_after);
	check("sigaltstack", ss_after.ss_sp == ss.ss_sp && ss_after.ss_size == ss.ss_size,
	      "%p/%zu", ss_after.ss_sp, ss_after.ss_size);
	check("argv-env", !strcmp(argv[4], "marker") && getenv("RST_MARK") &&
	      !strcmp(getenv("RST_MARK"), "env-intact"), "argv %s env %s", argv[4], getenv("RST_MARK"));
	for (i = 0; i < 1 << 20 && heap[i] == (char)(i * 7); i++)
		;
	check("heap", i == 1 << 20, "differs at %d", i);
	check("cmdline-auxv", slurp("/proc/self/cmdline", cmdline_after, sizeof(cmdline_after)) ==
	      cmdline_len && !memcmp(cmdline, cmdline_after, cmdline_len) &&
	      slurp("/proc/self/auxv", auxv_after, sizeof(auxv_after)) == auxv_len &&
	      !memcmp(auxv, auxv_after, auxv_len), "/proc/self/cmdline or auxv changed");
	{
		char *b = sbrk(0), *more = sbrk(1 << 16);

		check("brk", b == brk_before && more == b && (memset(more, 1, 1 << 16), 1),
		      "brk %p was %p, grew to %p", b, brk_before, more);
	}
	check("stack-grows", deep(2048) == 0, "recursion failed");
	check("vdso", getauxval(AT_SYSINFO_EHDR) == vdso && !clock_gettime(CLOCK_MONOTONIC, &t0),
	      "auxv %#lx was %#lx", getauxval(AT_SYSINFO_EHDR), vdso);
	/* files */
	write(logfd, "two\n", 4);
	pos = lseek(datafd, 0, SEEK_CUR);
	check("read-position", pos == 4 && read(datafd, buf, 2) == 2 && !memcmp(buf, "45", 2),
	      "position %ld", (long)pos);
	check("cloexec", fcntl(cefd, F_GETFD) == FD_CLOEXEC && fcntl(ncfd, F_GETFD) == 0 &&
	      fcntl(datafd, F_GETFD) == 0, "flags %d %d", fcntl(cefd, F_GETFD), fcntl(ncfd, F_GETFD));
	check("append", (fcntl(logfd, F_GETFL) & O_APPEND) != 0, "O_APPEND lost");
	/* signals: the pending ones reach their handlers, the itimer keeps firing */
	before = alarms;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	do
		clock_gettime(CLOCK_MONOTONIC, &t1);
	while ((t1.tv_sec - t0.tv_sec) * 1000000000L + t1.tv_nsec - t0.tv_nsec < 300000000L);
	check("itimer", alarms - before >= 5, "%d alarms in 300 ms", alarms - before);
	sigprocmask(SIG_UNBLOCK, &s, NULL);
	check("pending-shared", usr1_value == 42 && usr1_code == SI_QUEUE, "value %d code %d",
	      (int)usr1_value, (int)usr1_code);
	check("pending-thread", rt_value == 7, "value %d", (int)rt_value);
	check("pending-kill", pwr_code == SI_USER && pwr_pid == pid, "code %d pid %d",
	      (int)pwr_code, (int)pwr_pid);
	/* a shared file mapping writes through to the file after the restart too */
	map[1] = 'B';
	msync(map, 4096, MS_SYNC);
	check("shared-file-map", pread(mapfd, buf, 2, 0) == 2 && !memcmp(buf, "AB", 2),
	      "file holds %.2s", buf);
	/* threads */
	write(read_pipe[1], "x", 1);
	go_flag = 1;
	for (i = 0; i < 2; i++) {
		pthread_join(w[i].th, NULL);
		check("thread-tid", w[i].tid_after == w[i].tid, "%d was %d", w[i].tid_after, w[i].tid);
		check("thread-tls", w[i].tls_after == w[i].tls, "%ld was %ld", w[i].tls_after, w[i].tls);
		check("thread-mask", sigismember(&w[i].mask_after, i == 0 ? SIGUSR2 : SIGWINCH) == 1 &&
		      sigismember(&w[i].mask_after, i == 0 ? SIGWINCH : SIGUSR2) == 0, "mask changed");
		check("thread-avx", w[i].fpu_ok, "ymm registers changed");
		check("thread-x87-sse", w[i].cw_after == 0x0c7f && (w[i].mxcsr_after & 0x6000) == 0x6000,
		      "cw %#x mxcsr %#x", w[i].cw_after, w[i].mxcsr_after);
	}
	pthread_join(reader, NULL);
	check("restarted-read", reader_result == 1, "read() gave %ld", reader_result);
	fprintf(out, "done %d\n", failures);
	return failures ? 1 : 0;
}
