/*
 * Running a syscall inside a task stopped by PTRACE_INTERRUPT, for state no /proc file
 * shows (signal handlers, itimers, sigaltstack, ...). No code is written into the task:
 *
 *  - the task's own "syscall" instruction (0f 05, found in [vdso], else in any
 *    executable mapping) is executed with PTRACE_SYSCALL, which stops at syscall entry
 *    and exit. Syscall stops are ptrace notifications, not signals, so no handler or
 *    mask of the task is touched (single-stepping would force SIGTRAP, and the kernel
 *    resets a blocked or ignored SIGTRAP handler to SIG_DFL when it does that);
 *  - orig_ax = -1 in the injected registers keeps the kernel's syscall-restart logic off
 *    the injected state;
 *  - every signal is blocked (PTRACE_SETSIGMASK) while the task runs, so nothing is
 *    delivered; the mask is restored afterwards and pending signals stay pending;
 *  - results land in INFECT_SCRATCH bytes of the task's stack just below the 128-byte
 *    red zone (else 4 KiB below its stack pointer), saved before and written back after;
 *  - SIGSTOP cannot be blocked: one already pending (a stopped process sent SIGSTOP again)
 *    is dequeued as soon as the task runs. That signal-delivery stop is suppressed, the
 *    siginfo kept, and the task itself re-queues it with rt_(tg)sigqueueinfo as the last
 *    injected syscall (a task may queue any siginfo to itself), into the queue it left:
 *    the process stays stopped with the same signal pending, at the tail of its queue;
 *  - at the end the task is re-trapped with PTRACE_INTERRUPT so it sits in the same
 *    kind of stop as before (inside signal delivery) when its registers are put back:
 *    an interrupted syscall (ax = -ERESTART*) is then restarted exactly as it would
 *    have been without us.
 * The tracer is a child of the process the user started (supervise.c): if that one is
 * killed, the tracer is told (PR_SET_PDEATHSIG) and runs infect_stop before detaching.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/ioctl.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "engine.h"

#define SCAN_MAX (64 << 10)	/* bytes of a mapping searched for a syscall instruction */

static ssize_t read_remote(pid_t pid, uint64_t addr, void *buf, size_t len)
{
	struct iovec local = { buf, len }, remote = { (void *)addr, len };
	ssize_t n = process_vm_readv(pid, &local, 1, &remote, 1, 0);
	char path[64];
	int fd;

	if (n == (ssize_t)len)
		return n;
	/* special mappings ([vdso]) may refuse process_vm_readv; /proc/pid/mem reads them */
	snprintf(path, sizeof(path), "/proc/%d/mem", pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	n = pread(fd, buf, len, addr);
	close(fd);
	return n;
}

static int write_remote(pid_t pid, uint64_t addr, const void *buf, size_t len)
{
	struct iovec local = { (void *)buf, len }, remote = { (void *)addr, len };
	char path[64];
	ssize_t n;
	int fd;

	if (process_vm_writev(pid, &local, 1, &remote, 1, 0) == (ssize_t)len)
		return 0;
	snprintf(path, sizeof(path), "/proc/%d/mem", pid);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	n = pwrite(fd, buf, len, addr);
	close(fd);
	return n == (ssize_t)len ? 0 : -1;
}

static int scan_syscall(pid_t pid, uint64_t start, uint64_t end, uint64_t *ip)
{
	size_t len = end - start > SCAN_MAX ? SCAN_MAX : end - start;
	unsigned char *buf = malloc(len);
	ssize_t n, i;

	if (!buf)
		return -1;
	n = read_remote(pid, start, buf, len);
	for (i = 0; i + 1 < n; i++) {
		if (buf[i] == 0x0f && buf[i + 1] == 0x05) {
			*ip = start + i;
			free(buf);
			return 0;
		}
	}
	free(buf);
	return -1;
}

/* the PROCMAP_QUERY ioctl on /proc/PID/maps (Linux 6.11; uapi linux/fs.h) */
struct procmap_query_k {
	uint64_t size, query_flags, query_addr;
	uint64_t vma_start, vma_end, vma_flags, vma_page_size, vma_offset, inode;
	uint32_t dev_major, dev_minor, vma_name_size, build_id_size;
	uint64_t vma_name_addr, build_id_addr;
};
#define PROCMAP_QUERY_K		_IOWR('f', 17, struct procmap_query_k)
#define PROCMAP_QUERY_VMA_EXECUTABLE_K 0x04

/*
 * The [vdso] without reading the maps (a process can have 20,000 mappings): the auxv's
 * AT_SYSINFO_EHDR, confirmed by PROCMAP_QUERY to be an executable mapping that the
 * kernel still names [vdso] (a program may have unmapped or moved it). -1: not found so.
 */
static int vdso_syscall(pid_t pid, int maps, uint64_t *ip)
{
	size_t len, i;
	uint64_t *auxv = (uint64_t *)proc_read(pid, "auxv", &len), base = 0;
	char name[8] = "";
	struct procmap_query_k q = {
		.size = sizeof(q), .query_flags = PROCMAP_QUERY_VMA_EXECUTABLE_K,
		.vma_name_size = sizeof(name), .vma_name_addr = (uintptr_t)name,
	};

	for (i = 0; auxv && i + 1 < len / 8 && auxv[i] != AT_NULL; i += 2)
		if (auxv[i] == AT_SYSINFO_EHDR)
			base = auxv[i + 1];
	free(auxv);
	q.query_addr = base;
	if (!base || ioctl(maps, PROCMAP_QUERY_K, &q) || q.vma_start != base ||
	    strcmp(name, "[vdso]"))
		return -1;
	return scan_syscall(pid, q.vma_start, q.vma_end, ip);
}

/* Address of a "syscall" instruction mapped in the task: [vdso] first. */
int infect_find_syscall(pid_t pid, uint64_t *ip)
{
	char path[64], *line = NULL;
	size_t cap = 0;
	int pass, ret = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/maps", pid);
	f = fopen(path, "re");
	if (!f)
		return pr_perror("read %s", path);
	if (!vdso_syscall(pid, fileno(f), ip)) {
		fclose(f);
		return 0;
	}
	for (pass = 0; pass < 2 && ret; pass++) {
		rewind(f);
		while (ret && getline(&line, &cap, f) > 0) {
			unsigned long long start, end;
			char perms[5];
			bool vdso = strstr(line, "[vdso]") != NULL;

			if (sscanf(line, "%llx-%llx %4s", &start, &end, perms) != 3)
				continue;
			if (pass == 0 ? vdso : perms[0] == 'r' && perms[2] == 'x')
				ret = scan_syscall(pid, start, end, ip);
		}
	}
	free(line);
	fclose(f);
	return ret ? pr_err("task %d: no syscall instruction found in its mappings", pid) : 0;
}

/* syscall_ip: from infect_find_syscall, once per address space */
int infect_start(struct infect *inf, pid_t tid, uint64_t syscall_ip)
{
	uint64_t all = ~0ULL;
	uint64_t cand[2];
	char *status;
	int i;

	memset(inf, 0, sizeof(*inf));
	inf->tid = tid;
	inf->syscall_ip = syscall_ip;
	status = proc_read(tid, "status", NULL);
	if (!status)
		return pr_perror("read /proc/%d/status", tid);
	inf->tgid = atoi(status_field(status, "Tgid") ? status_field(status, "Tgid") : "0");
	inf->private_pending = status_hex(status, "SigPnd");
	free(status);
	if (ptrace(PTRACE_GETREGS, tid, 0, &inf->saved))
		return pr_perror("task %d: get registers", tid);
	if (ptrace(PTRACE_GETSIGMASK, tid, sizeof(inf->saved_mask), &inf->saved_mask))
		return pr_perror("task %d: get signal mask", tid);
	/*
	 * Just below the red zone first: normally inside the stack page already in use.
	 * Touching a page the task never used would add a page to it (and to the image).
	 */
	cand[0] = (inf->saved.rsp - 128 - INFECT_SCRATCH) & ~63ULL;
	cand[1] = (inf->saved.rsp - 4096) & ~63ULL;
	for (i = 0; i < 2; i++) {
		if (read_remote(tid, cand[i], inf->saved_scratch, INFECT_SCRATCH) == INFECT_SCRATCH)
			break;
	}
	if (i == 2)
		return pr_err("task %d: no scratch memory below its stack pointer %#llx", tid,
			      inf->saved.rsp);
	inf->scratch = cand[i];
	if (ptrace(PTRACE_SETSIGMASK, tid, sizeof(all), &all))
		return pr_perror("task %d: block signals", tid);
	return 0;
}

#define MAX_TRAPS 8	/* interrupt/group-stop traps still queued from the freeze */

/* A signal-delivery stop while injecting: only an unblockable SIGSTOP can get here. */
static int hold_signal(struct infect *inf, int sig)
{
	uint64_t bit = 1ULL << (sig - 1);

	if (sig != SIGSTOP || inf->nr_held == INFECT_MAX_HELD)
		return -1;
	if (ptrace(PTRACE_GETSIGINFO, inf->tid, 0, inf->held[inf->nr_held].siginfo))
		return pr_perror("task %d: get siginfo of a pending SIGSTOP", inf->tid);
	/* the private queue is dequeued before the shared one */
	inf->held[inf->nr_held].shared = !(inf->private_pending & bit);
	inf->private_pending &= ~bit;
	inf->nr_held++;
	return 0;
}

/* resume to the next syscall stop, passing over traps queued before we started */
static int syscall_stop(struct infect *inf)
{
	pid_t tid = inf->tid;
	int status, i;

	for (i = 0; i < MAX_TRAPS; i++) {
		if (ptrace(PTRACE_SYSCALL, tid, 0, 0))	/* 0: a held signal is not delivered */
			return pr_perror("task %d: resume to syscall", tid);
		if (wait_trap(tid, &status))
			return -1;
		if (WSTOPSIG(status) == (SIGTRAP | 0x80))
			return 0;
		if (status >> 16 == PTRACE_EVENT_STOP)
			continue;
		if (status >> 16 || hold_signal(inf, WSTOPSIG(status)))
			break;
	}
	return pr_err("task %d: unexpected stop %#x while running a syscall", tid, status);
}

static long run_syscall(struct infect *inf, long nr, long a0, long a1, long a2, long a3)
{
	struct user_regs_struct regs = inf->saved;

	regs.orig_rax = -1;
	regs.rax = nr;
	regs.rdi = a0;
	regs.rsi = a1;
	regs.rdx = a2;
	regs.r10 = a3;
	regs.rip = inf->syscall_ip;
	if (ptrace(PTRACE_SETREGS, inf->tid, 0, &regs)) {
		pr_perror("task %d: set registers", inf->tid);
		return INFECT_FAILED;
	}
	if (syscall_stop(inf) || syscall_stop(inf))	/* entry, then exit */
		return INFECT_FAILED;
	if (ptrace(PTRACE_GETREGS, inf->tid, 0, &regs)) {
		pr_perror("task %d: get registers", inf->tid);
		return INFECT_FAILED;
	}
	return (long)regs.rax;
}

/* Result of the syscall in the task (-errno on failure), or INFECT_FAILED if it did not run. */
long infect_syscall(struct infect *inf, long nr, long a0, long a1, long a2, long a3)
{
	if (check_interrupted())
		return INFECT_FAILED;	/* the task is in a stop: infect_stop can put it back */
	return run_syscall(inf, nr, a0, a1, a2, a3);
}

int infect_read(struct infect *inf, void *buf, size_t len)
{
	if (len > INFECT_SCRATCH || read_remote(inf->tid, inf->scratch, buf, len) != (ssize_t)len)
		return pr_perror("task %d: read syscall result", inf->tid);
	return 0;
}

/* arguments for the next syscall: len bytes at inf->scratch */
int infect_write(struct infect *inf, const void *buf, size_t len)
{
	if (len > INFECT_SCRATCH || write_remote(inf->tid, inf->scratch, buf, len))
		return pr_perror("task %d: write syscall arguments", inf->tid);
	return 0;
}

/* Put held signals back where they were, sent by the task to itself with their siginfo. */
static int requeue_held(struct infect *inf)
{
	int i, n = inf->nr_held;

	inf->nr_held = 0;	/* dequeued again only by a later injection */
	for (i = 0; i < n; i++) {
		long r;

		if (write_remote(inf->tid, inf->scratch, inf->held[i].siginfo, sizeof(inf->held[i].siginfo)))
			return pr_perror("task %d: write the siginfo of SIGSTOP", inf->tid);
		r = inf->held[i].shared
			? run_syscall(inf, SYS_rt_sigqueueinfo, inf->tid, SIGSTOP, inf->scratch, 0)
			: run_syscall(inf, SYS_rt_tgsigqueueinfo, inf->tgid, inf->tid, SIGSTOP,
					 inf->scratch);
		if (r == INFECT_FAILED)
			return -1;
		if (r < 0)
			return pr_err("task %d: re-queue its pending SIGSTOP: %s", inf->tid, strerror(-r));
	}
	return 0;
}

int infect_stop(struct infect *inf)
{
	pid_t tid = inf->tid;
	int status, ret = 0;

	/* last: a re-queued SIGSTOP would be dequeued by the next injected syscall */
	if (requeue_held(inf))
		ret = -1;
	if (write_remote(tid, inf->scratch, inf->saved_scratch, INFECT_SCRATCH))
		ret = pr_perror("task %d: restore stack bytes at %#llx", tid,
				(unsigned long long)inf->scratch);
	if (ptrace(PTRACE_INTERRUPT, tid, 0, 0) || ptrace(PTRACE_CONT, tid, 0, 0))
		return pr_perror("task %d: re-trap", tid);
	if (wait_trap(tid, &status))
		return -1;
	if (status >> 16 != PTRACE_EVENT_STOP)
		return pr_err("task %d: unexpected stop %#x while re-trapping", tid, status);
	if (ptrace(PTRACE_SETREGS, tid, 0, &inf->saved))
		return pr_perror("task %d: restore registers", tid);
	if (ptrace(PTRACE_SETSIGMASK, tid, sizeof(inf->saved_mask), &inf->saved_mask))
		return pr_perror("task %d: restore signal mask", tid);
	return ret;
}
