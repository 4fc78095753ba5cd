/*
 * Signals: handlers (SIGHAND), the thread group's limits, itimers and shared queue
 * (SIGNAL + SIGPENDING), and each thread's private queue and blocked mask.
 *
 * Handlers, itimers and the alternate stack are visible nowhere in /proc: they are read
 * by running rt_sigaction/getitimer/sigaltstack inside the stopped task (infect.c).
 * Pending signals are peeked, not dequeued (PTRACE_PEEKSIGINFO, private and shared).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/time.h>

#include "engine.h"

#define PEEK_BATCH 64

/* the kernel's struct sigaction on x86_64 */
struct k_sigaction {
	uint64_t handler, flags, restorer, mask;
};

struct k_itimerval {
	int64_t interval_sec, interval_usec, value_sec, value_usec;
};

struct k_stack {
	uint64_t sp;
	int32_t flags;
	int32_t pad;
	uint64_t size;
};

int probe_process_signals(struct infect *inf, struct process *p)
{
	int sig, which;

	for (sig = 1; sig <= CKPT_ARCH_NSIG; sig++) {
		struct k_sigaction ka = { 0 };
		long r = infect_syscall(inf, SYS_rt_sigaction, sig, 0, inf->scratch, sizeof(ka.mask));

		if (r == INFECT_FAILED || (r == 0 && infect_read(inf, &ka, sizeof(ka))))
			return -1;
		p->action[sig - 1] = (struct ckpt_sigaction){ ka.handler, ka.flags, ka.restorer, { { 0 } } };
		memcpy(p->action[sig - 1].sa_mask.sigset, &ka.mask, sizeof(ka.mask));
	}
	for (which = 0; which < 3; which++) {
		struct k_itimerval it = { 0 };
		long r = infect_syscall(inf, SYS_getitimer, which, inf->scratch, 0, 0);

		if (r == INFECT_FAILED || (r == 0 && infect_read(inf, &it, sizeof(it))))
			return -1;
		p->itimer[which].value = it.value_sec * 1000000000ULL + it.value_usec * 1000ULL;
		p->itimer[which].interval = it.interval_sec * 1000000000ULL + it.interval_usec * 1000ULL;
	}
	return 0;
}

int probe_thread_signals(struct infect *inf, struct task *t)
{
	struct k_stack ss = { 0 };
	long r = infect_syscall(inf, SYS_sigaltstack, 0, inf->scratch, 0, 0);

	if (r == INFECT_FAILED || (r == 0 && infect_read(inf, &ss, sizeof(ss))))
		return -1;
	t->sas_ss_sp = ss.sp;
	t->sas_ss_size = ss.size;
	return 0;
}

static void set_sigset(struct ckpt_sigset *s, uint64_t mask)
{
	memcpy(s->sigset, &mask, sizeof(mask));
}

/*
 * Handlers of a process we could not run syscalls in: SIG_IGN and SIG_DFL are known
 * from /proc, caught signals are not; one ERROR record says what is missing.
 */
static int sighand_from_proc(struct ctx *c, struct task *t, struct ckpt_sigaction *action)
{
	char *status = proc_read(t->tid, "status", NULL);
	uint64_t ign, cgt;
	int sig;

	if (!status)
		return pr_perror("read /proc/%d/status", t->tid);
	ign = status_hex(status, "SigIgn");
	cgt = status_hex(status, "SigCgt");
	free(status);
	for (sig = 0; sig < CKPT_ARCH_NSIG; sig++)
		action[sig]._sa_handler = ign >> sig & 1 ? (uint64_t)SIG_IGN : (uint64_t)SIG_DFL;
	return ckpt_unsupported(c, "%s: handlers of caught signals (mask %#llx), itimers, sigaltstack, "
			        "brk, pdeath signal, clear_child_tid and securebits not saved",
				t->proc->probe_error, (unsigned long long)cgt);
}

/* OBJREF(SIGHAND) SIGHAND, the first time */
int dump_sighand(struct ctx *c, struct task *t)
{
	size_t size = sizeof(struct ckpt_hdr_sighand) + CKPT_ARCH_NSIG * sizeof(struct ckpt_sigaction);
	struct ckpt_hdr_sighand *h;
	bool first;
	int ret = -1;
	int ref = obj_lookup_add(c->objs, CKPT_OBJ_SIGHAND, c->tasks[t->share[SHARE_SIGHAND]].tid, 0,
				 &first);

	if (ref < 0 || !first)
		return ref;
	h = calloc(1, size);
	if (!h)
		return pr_perror("sighand");
	if (t->proc->probed)
		memcpy(h->action, t->proc->action, sizeof(t->proc->action));
	else if (sighand_from_proc(c, t, h->action))
		goto out;
	if (write_objref(&c->img, CKPT_OBJ_SIGHAND, ref) || write_obj(&c->img, CKPT_HDR_SIGHAND, h, size))
		goto out;
	ret = ref;
out:
	free(h);
	return ret;
}

static uint32_t u32_at(const uint8_t *p, int off)
{
	uint32_t v;

	memcpy(&v, p + off, sizeof(v));
	return v;
}

static uint64_t u64_at(const uint8_t *p, int off)
{
	uint64_t v;

	memcpy(&v, p + off, sizeof(v));
	return v;
}

/* kernel siginfo (x86_64, 128 bytes) -> ckpt_siginfo, by the union member its code uses */
static void fill_siginfo(struct ckpt_siginfo *o, const uint8_t *si)
{
	int signo = u32_at(si, 0), code = u32_at(si, 8);

	memset(o, 0, sizeof(*o));
	o->csi_signo = signo;
	o->csi_errno = u32_at(si, 4);
	o->csi_code = code;
	if (code == SI_TIMER) {
		o->csi_tid = u32_at(si, 16);
		o->csi_overrun = u32_at(si, 20);
		o->csi_int = u32_at(si, 24);
		o->csi_ptr = u64_at(si, 24);
		o->csi_sys_private = u32_at(si, 32);
	} else if (code == SI_SIGIO || (code > 0 && code != SI_KERNEL && signo == SIGIO)) {
		o->csi_band = u64_at(si, 16);
		o->csi_fd = u32_at(si, 24);
	} else if (code > 0 && code != SI_KERNEL &&
		   (signo == SIGILL || signo == SIGFPE || signo == SIGSEGV || signo == SIGBUS ||
		    signo == SIGTRAP || signo == SIGSYS)) {
		o->csi_addr = u64_at(si, 16);
		if (signo == SIGSYS)
			o->csi_int = u32_at(si, 24);	/* the syscall number */
	} else if (code > 0 && code != SI_KERNEL && signo == SIGCHLD) {
		o->csi_pid = u32_at(si, 16);
		o->csi_uid = u32_at(si, 20);
		o->csi_status = u32_at(si, 24);
		o->csi_utime = u64_at(si, 32);
		o->csi_stime = u64_at(si, 40);
	} else {
		/* kill, tkill, sigqueue, mq_notify, aio: sender and value */
		o->csi_pid = u32_at(si, 16);
		o->csi_uid = u32_at(si, 20);
		o->csi_int = u32_at(si, 24);
		o->csi_ptr = u64_at(si, 24);
	}
}

/* SIGPENDING of the private or the shared queue of tid, peeked without dequeuing */
static int dump_sigpending(struct ctx *c, pid_t tid, bool shared, uint64_t mask)
{
	struct ckpt_hdr_sigpending *h = calloc(1, sizeof(*h));
	uint8_t raw[PEEK_BATCH][128];
	size_t size = sizeof(*h);
	int ret = -1;

	if (!h)
		return pr_perror("sigpending");
	for (;;) {
		struct __ptrace_peeksiginfo_args args = {
			.off = h->nr_pending,
			.flags = shared ? PTRACE_PEEKSIGINFO_SHARED : 0,
			.nr = PEEK_BATCH,
		};
		struct ckpt_hdr_sigpending *nh;
		int n = ptrace(PTRACE_PEEKSIGINFO, tid, &args, raw), i;

		if (n < 0) {
			pr_perror("task %d: peek pending signals", tid);
			goto out;
		}
		if (n == 0)
			break;
		size += n * sizeof(struct ckpt_siginfo);
		nh = realloc(h, size);
		if (!nh) {
			pr_perror("sigpending");
			goto out;
		}
		h = nh;
		for (i = 0; i < n; i++)
			fill_siginfo(&h->siginfo[h->nr_pending++], raw[i]);
	}
	set_sigset(&h->signal, mask);
	ret = write_obj(&c->img, CKPT_HDR_SIGPENDING, h, size);
out:
	free(h);
	return ret;
}

/* SIGNAL then the shared SIGPENDING, after the TASK_OBJS that first names the signal object */
int dump_signal(struct ctx *c, struct task *t)
{
	struct process *p = t->proc;
	struct ckpt_hdr_signal h = { .tty_objref = 0, .tty_old_pgrp = 0 };
	char *status;
	uint64_t shared;

	if (proc_limits(t->tgid, h.rlim, CKPT_RLIM_NLIMITS))
		return pr_perror("read /proc/%d/limits", t->tgid);
	h.it_real_value = p->itimer[ITIMER_REAL].value;
	h.it_real_incr = p->itimer[ITIMER_REAL].interval;
	h.it_virt_value = p->itimer[ITIMER_VIRTUAL].value;
	h.it_virt_incr = p->itimer[ITIMER_VIRTUAL].interval;
	h.it_prof_value = p->itimer[ITIMER_PROF].value;
	h.it_prof_incr = p->itimer[ITIMER_PROF].interval;
	/*
	 * A session leader's controlling terminal is a TTY object (tty.c); the foreground
	 * group is kept for every process with a terminal (v23 kept it for leaders only): a
	 * job of a shell outside the tree is put in the foreground again (--shell-job).
	 */
	h.tty_objref = dump_ctty(c, t);
	if (h.tty_objref < 0)
		return -1;
	h.tty_pgrp = t->st.tty_nr && t->st.tpgid > 0 ? t->st.tpgid : 0;
	status = proc_read(t->tid, "status", NULL);
	if (!status)
		return pr_perror("read /proc/%d/status", t->tid);
	shared = status_hex(status, "ShdPnd");
	free(status);
	if (write_obj(&c->img, CKPT_HDR_SIGNAL, &h, sizeof(h)))
		return -1;
	return dump_sigpending(c, t->tid, true, shared);
}

/* SIGPENDING (private) SIGNAL_TASK */
int dump_task_signal(struct ctx *c, struct task *t)
{
	struct ckpt_hdr_signal_task h;
	char *status = proc_read(t->tid, "status", NULL);
	uint64_t pending;

	if (!status)
		return pr_perror("read /proc/%d/status", t->tid);
	pending = status_hex(status, "SigPnd");
	free(status);
	if (dump_sigpending(c, t->tid, false, pending))
		return -1;
	set_sigset(&h.blocked, t->blocked);
	return write_obj(&c->img, CKPT_HDR_SIGNAL_TASK, &h, sizeof(h));
}
