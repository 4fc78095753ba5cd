/*
 * Running syscalls inside a task being restored (x86_64).
 *
 * The tasks are forked copies of the driver, stopped by PTRACE_INTERRUPT in pause(). The
 * first syscalls run on rst_syscall_insn, a "syscall" instruction in the driver's own text,
 * which every fork has at the same address. The first of them maps the stub: RST_STUB_SIZE
 * bytes, read-write-execute, a "syscall; int3" at its start and scratch memory for the
 * arguments after it. Everything else of the fork is then unmapped, and every later syscall
 * runs on the stub, which moves (mremap) when the image wants its address.
 *
 * As in the dumper (arch/x86_64/infect.c), a syscall runs under PTRACE_SYSCALL with
 * orig_ax = -1: entry and exit stops are ptrace notifications, not signals, so no handler,
 * mask or pending signal of the task is touched. Every signal is blocked in the tasks for the
 * whole restore; what still arrives (SIGSTOP, say) is held and re-applied at the release.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "restore.h"

__asm__(".pushsection .text\n"
	".globl rst_syscall_insn\n"
	".type rst_syscall_insn, @function\n"
	"rst_syscall_insn:\n"
	"	syscall\n"
	"	int3\n"
	".popsection\n");
extern char rst_syscall_insn[];

static const unsigned char stub_code[] = { 0x0f, 0x05, 0xcc };	/* syscall; int3 */

#define STUB_FIRST	0x10000UL		/* above mmap_min_addr, below any usual mapping */
#define TASK_SIZE_MAX	0x7ffffffff000UL	/* 4-level paging user space */
#define MAX_STOPS	64			/* stops passed over before giving up */

static pid_t last_clone;

pid_t rinj_last_clone(void)
{
	return last_clone;
}

int rinj_wait(pid_t tid, int *status)
{
	for (;;) {
		pid_t r = waitpid(tid, status, __WALL);

		if (r == tid)
			return 0;
		if (r < 0 && errno == EINTR && rst_stop_requested())
			return pr_err("interrupted");
		if (r < 0 && errno != EINTR)
			return pr_perror("wait for task %d", tid);
	}
}

static int died(struct rtask *t, int status)
{
	if (WIFSIGNALED(status))
		return pr_err("pid %d: the task being restored was killed by signal %d", t->pid,
			      WTERMSIG(status));
	return pr_err("pid %d: the task being restored exited (status %d)", t->pid,
		      WEXITSTATUS(status));
}

/* resume to the next syscall stop, passing over event stops and holding stop signals */
static int syscall_stop(struct rtask *t)
{
	int status, i;

	for (i = 0; i < MAX_STOPS; i++) {
		unsigned long msg;
		int sig;

		if (ptrace(PTRACE_SYSCALL, t->host, 0, 0))
			return pr_perror("pid %d: resume to syscall", t->pid);
		if (rinj_wait(t->host, &status))
			return -1;
		if (!WIFSTOPPED(status))
			return died(t, status);
		if (WSTOPSIG(status) == (SIGTRAP | 0x80))
			return 0;
		if (status >> 16 == PTRACE_EVENT_CLONE) {
			if (ptrace(PTRACE_GETEVENTMSG, t->host, 0, &msg) == 0)
				last_clone = msg;
			continue;
		}
		if (status >> 16)
			continue;	/* PTRACE_EVENT_STOP: an interrupt or a group stop */
		sig = WSTOPSIG(status);
		/* only what cannot be blocked gets here; a stop is kept for the release */
		if (sig == SIGSTOP || sig == SIGTSTP || sig == SIGTTIN || sig == SIGTTOU)
			t->stop_signal = sig;
	}
	return pr_err("pid %d: no syscall stop after %d stops", t->pid, MAX_STOPS);
}

static long run(struct rctx *c, struct rtask *t, uint64_t ip, long nr, const long *a)
{
	struct rproc *p = &c->procs[t->proc];
	struct user_regs_struct r = t->tmpl;

	r.orig_rax = -1;
	r.rax = nr;
	r.rdi = a[0];
	r.rsi = a[1];
	r.rdx = a[2];
	r.r10 = a[3];
	r.r8 = a[4];
	r.r9 = a[5];
	r.rip = ip;
	if (p->stub)
		r.rsp = p->stub + RST_STUB_SIZE - 256;
	if (ptrace(PTRACE_SETREGS, t->host, 0, &r))
		return pr_perror("pid %d: set registers", t->pid), INFECT_FAILED;
	if (syscall_stop(t) || syscall_stop(t))		/* entry, exit */
		return INFECT_FAILED;
	if (ptrace(PTRACE_GETREGS, t->host, 0, &r))
		return pr_perror("pid %d: get registers", t->pid), INFECT_FAILED;
	return (long)r.rax;
}

/* a syscall on the stub; result or -errno, INFECT_FAILED if it could not run */
long rinj_syscall(struct rctx *c, struct rtask *t, long nr, long a0, long a1, long a2, long a3,
		  long a4, long a5)
{
	const long a[6] = { a0, a1, a2, a3, a4, a5 };
	struct rproc *p = &c->procs[t->proc];

	return run(c, t, p->stub ? p->stub : (uint64_t)rst_syscall_insn, nr, a);
}

/* a syscall on the driver's own instruction (before the stub exists, or without one) */
long rinj_at_insn(struct rctx *c, struct rtask *t, long nr, long a0, long a1, long a2, long a3)
{
	const long a[6] = { a0, a1, a2, a3, 0, 0 };

	return run(c, t, (uint64_t)rst_syscall_insn, nr, a);
}

/* exit_group(code), or tgkill(self, sig): the task ends as a zombie of its parent */
int rinj_exit(struct rctx *c, struct rtask *t, long nr, long a0, long a1)
{
	struct user_regs_struct r = t->tmpl;
	int status, i, sig = 0;

	r.orig_rax = -1;
	r.rax = nr;
	r.rdi = a0;
	r.rsi = a1;
	if (nr == SYS_tgkill) {
		r.rdi = t->tgid;
		r.rsi = t->pid;
		r.rdx = a0;
	}
	r.rip = (uint64_t)rst_syscall_insn;
	(void)c;
	if (ptrace(PTRACE_SETREGS, t->host, 0, &r))
		return pr_perror("pid %d: set registers", t->pid);
	for (i = 0; i < MAX_STOPS; i++) {
		if (ptrace(PTRACE_CONT, t->host, 0, sig))
			return pr_perror("pid %d: resume to exit", t->pid);
		sig = 0;
		if (rinj_wait(t->host, &status))
			return -1;
		if (!WIFSTOPPED(status))
			return 0;
		if (!(status >> 16) && WSTOPSIG(status) == a0 && nr == SYS_tgkill)
			sig = a0;	/* deliver the fatal signal */
	}
	return pr_err("pid %d: did not exit", t->pid);
}

int rinj_start(struct rctx *c, struct rtask *t)
{
	uint64_t all = ~0ULL;

	(void)c;
	if (ptrace(PTRACE_GETREGS, t->host, 0, &t->tmpl))
		return pr_perror("pid %d: get registers", t->pid);
	if (ptrace(PTRACE_SETSIGMASK, t->host, sizeof(all), &all))
		return pr_perror("pid %d: block signals", t->pid);
	return 0;
}

int rinj_write(struct rtask *t, uint64_t addr, const void *buf, size_t len)
{
	struct iovec local = { (void *)buf, len }, remote = { (void *)addr, len };
	char path[64];
	ssize_t n;
	int fd;

	if (process_vm_writev(t->host, &local, 1, &remote, 1, 0) == (ssize_t)len)
		return 0;
	/* a mapping without write permission: /proc/pid/mem writes through it */
	snprintf(path, sizeof(path), "/proc/%d/mem", t->host);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return pr_perror("open %s", path);
	n = pwrite(fd, buf, len, addr);
	close(fd);
	if (n != (ssize_t)len)
		return pr_perror("pid %d: write %zu bytes at %#llx", t->pid, len,
				 (unsigned long long)addr);
	return 0;
}

/* data for a syscall argument at offset off of the stub's scratch area; its address */
uint64_t rinj_put(struct rctx *c, struct rproc *p, size_t off, const void *data, size_t len)
{
	uint64_t addr = p->stub + RST_SCRATCH + off;

	if (off + len > RST_SCRATCH_SIZE) {
		pr_err("scratch data of %zu bytes at %zu does not fit the stub", len, off);
		return 0;
	}
	if (len && rinj_write(&c->tasks[p->leader], addr, data, len))
		return 0;
	return addr;
}

static bool overlaps(uint64_t s1, uint64_t e1, uint64_t s2, uint64_t e2)
{
	return s1 < e2 && s2 < e1;
}

/* a stub address clear of the restored VMAs and of [avoid_start, avoid_end) */
static uint64_t free_stub_addr(struct rproc *p, uint64_t avoid_start, uint64_t avoid_end)
{
	uint64_t a;
	int i;

	for (a = STUB_FIRST; a + RST_STUB_SIZE < TASK_SIZE_MAX; a += RST_STUB_SIZE) {
		bool busy = overlaps(a, a + RST_STUB_SIZE, avoid_start, avoid_end) ||
			    (p->stub && overlaps(a, a + RST_STUB_SIZE, p->stub, p->stub + RST_STUB_SIZE));

		for (i = 0; i < p->nr_vmas && !busy; i++)
			busy = overlaps(a, a + RST_STUB_SIZE, p->vmas[i].start, p->vmas[i].end);
		if (!busy)
			return a;
		/* jump past what is in the way */
		if (overlaps(a, a + RST_STUB_SIZE, avoid_start, avoid_end))
			a = (avoid_end - RST_STUB_SIZE) & ~(RST_STUB_SIZE - 1);
	}
	return 0;
}

int rinj_make_stub(struct rctx *c, struct rproc *p, uint64_t addr)
{
	struct rtask *t = &c->tasks[p->leader];
	long r;

	for (; addr && addr + RST_STUB_SIZE < TASK_SIZE_MAX; addr += 16 * RST_STUB_SIZE) {
		r = rinj_at_insn(c, t, SYS_mmap, addr, RST_STUB_SIZE,
				 PROT_READ | PROT_WRITE | PROT_EXEC,
				 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE);
		if (r == INFECT_FAILED)
			return -1;
		if (r == (long)addr)
			break;
		if (r != -EEXIST)
			return pr_err("pid %d: map the restore stub: %s", t->pid, strerror(-r));
	}
	p->stub = addr;
	return rinj_write(t, addr, stub_code, sizeof(stub_code));
}

int rinj_move_stub(struct rctx *c, struct rproc *p, uint64_t avoid_start, uint64_t avoid_end)
{
	struct rtask *t = &c->tasks[p->leader];
	uint64_t to;
	long r;

	if (!overlaps(p->stub, p->stub + RST_STUB_SIZE, avoid_start, avoid_end))
		return 0;
	to = free_stub_addr(p, avoid_start, avoid_end);
	if (!to)
		return pr_err("pid %d: no room for the restore stub", t->pid);
	r = rinj_syscall(c, t, SYS_mremap, p->stub, RST_STUB_SIZE, RST_STUB_SIZE,
			 MREMAP_MAYMOVE | MREMAP_FIXED, to, 0);
	if (r != (long)to)
		return pr_err("pid %d: move the restore stub to %#llx: %s", t->pid,
			      (unsigned long long)to, r < 0 ? strerror(-r) : "bad address");
	p->stub = to;
	return 0;
}
