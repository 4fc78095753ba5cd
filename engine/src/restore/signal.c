/*
 * Signals on restore: handlers (SIGHAND), limits, itimers and the shared queue (SIGNAL +
 * SIGPENDING), each thread's queue and mask (SIGPENDING + SIGNAL_TASK). The mirror of
 * signal.c.
 *
 * Handlers are installed when SIGHAND arrives: the restore uses no trap that could reset
 * them. Everything else is applied at the release: what the restore itself queued (the
 * SIGCHLD of a zombie child, say) is drained first, then the image's signals are queued
 * again with their siginfo, by the task to itself (the kernel lets a task queue any
 * siginfo to itself), and the itimers are armed last.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/time.h>

#include "restore.h"

#define SIGINFO_SIZE	128
#define DRAIN_MAX	4096

static const char *const rlimit_names[CKPT_RLIM_NLIMITS] = {
	"CPU", "FSIZE", "DATA", "STACK", "CORE", "RSS", "NPROC", "NOFILE", "MEMLOCK", "AS",
	"LOCKS", "SIGPENDING", "MSGQUEUE", "NICE", "RTPRIO", "RTTIME",
};

static uint64_t sigset_bits(const struct ckpt_sigset *s)
{
	uint64_t v;

	memcpy(&v, s->sigset, sizeof(v));
	return v;
}

int restore_sighand(struct rctx *c, const struct ckpt_hdr *h)
{
	struct rproc *p = cur_proc(c);
	struct robj *o = obj_define(c, CKPT_OBJ_SIGHAND);
	struct rtask *t;
	int i;

	if (!p || !o || rs_payload(&c->in, h, p->action, sizeof(p->action), sizeof(p->action)))
		return -1;
	if (c->dry)
		return 0;
	t = &c->tasks[p->leader];
	for (i = 0; i < CKPT_ARCH_NSIG; i++) {
		const struct ckpt_sigaction *a = &p->action[i];
		int sig = i + 1;
		uint64_t at;
		long r;

		if (sig == SIGKILL || sig == SIGSTOP ||
		    (!a->_sa_handler && !a->sa_flags && !a->sa_restorer && !sigset_bits(&a->sa_mask)))
			continue;	/* the fresh task has the default */
		/* struct ckpt_sigaction is the kernel's struct sigaction of rt_sigaction(2) */
		at = rinj_put(c, p, 0, a, sizeof(*a));
		r = rinj_syscall(c, t, SYS_rt_sigaction, sig, at, 0, 8, 0, 0);
		if (r)
			return rst_refuse(c, "pid %d: the action of signal %d: %s", t->pid, sig,
					  r < 0 ? strerror(-r) : "failed");
	}
	return 0;
}

int restore_signal(struct rctx *c, const struct ckpt_hdr *h)
{
	struct rproc *p = cur_proc(c);
	struct robj *o;
	bool first;
	int i;

	/* defined by its first use: the TASK_OBJS just before names it */
	o = p ? obj_implicit(c, p->signal_ref, CKPT_OBJ_SIGNAL, &first) : NULL;
	if (!o || !first || rs_record(&c->in, h, &p->signal, sizeof(p->signal)))
		return -1;
	p->have_signal = true;
	c->after_signal = true;
	if (restore_ctty(c, p))
		return -1;
	/* a hard limit above ours needs CAP_SYS_RESOURCE, which a restore does not assume */
	for (i = 0; i < CKPT_RLIM_NLIMITS; i++) {
		struct rlimit ours;

		if (!getrlimit(i, &ours) && p->signal.rlim[i].rlim_max > ours.rlim_max &&
		    ours.rlim_max != RLIM_INFINITY) {
			struct rlimit want = { ours.rlim_cur, p->signal.rlim[i].rlim_max };

			/* allowed if we may raise it (CAP_SYS_RESOURCE): try on ourselves, undo */
			if (setrlimit(i, &want))
				return rst_refuse(c, "pid %d: RLIMIT_%s hard limit %llu is above the "
						  "restorer's %llu", c->tasks[p->leader].pid,
						  rlimit_names[i],
						  (unsigned long long)p->signal.rlim[i].rlim_max,
						  (unsigned long long)ours.rlim_max);
			setrlimit(i, &ours);
		}
	}
	return 0;
}

int restore_sigpending(struct rctx *c, const struct ckpt_hdr *h)
{
	const size_t head = sizeof(struct ckpt_hdr_sigpending) - sizeof(*h);
	struct rtask *t = cur_task(c);
	struct rpending *q;
	uint8_t *raw;
	uint32_t nr;

	if (!t)
		return -1;
	raw = rs_payload_alloc(&c->in, h, head, 1 << 20);
	if (!raw)
		return -1;
	memcpy(&nr, raw, sizeof(nr));
	if (head + (size_t)nr * sizeof(struct ckpt_siginfo) > h->len - sizeof(*h)) {
		free(raw);
		return rs_invalid(&c->in, "SIGPENDING at offset %llu: %u signals do not fit",
			      (unsigned long long)c->in.rec_off, nr);
	}
	q = c->after_signal ? &c->procs[t->proc].shared : &t->pending;
	c->after_signal = false;
	free(q->info);
	q->nr = nr;
	q->info = malloc((nr ? nr : 1) * sizeof(*q->info));
	if (!q->info) {
		free(raw);
		return pr_perror("pending signals");
	}
	memcpy(q->info, raw + head, nr * sizeof(*q->info));
	free(raw);
	return 0;
}

int restore_signal_task(struct rctx *c, const struct ckpt_hdr *h)
{
	struct rtask *t = cur_task(c);
	struct ckpt_hdr_signal_task st;

	if (!t || rs_record(&c->in, h, &st, sizeof(st)))
		return -1;
	t->blocked = sigset_bits(&st.blocked) & ~((1ULL << (SIGKILL - 1)) | (1ULL << (SIGSTOP - 1)));
	return 0;
}

/* does a pending, unblocked, caught signal interrupt t's syscall at the release? */
bool signal_will_interrupt(struct rctx *c, struct rtask *t, bool *restart)
{
	struct rproc *p = &c->procs[t->proc];
	const struct rpending *q[2] = { &t->pending, &p->shared };
	uint32_t i;
	int k;

	for (k = 0; k < 2; k++) {
		for (i = 0; i < q[k]->nr; i++) {
			int sig = q[k]->info[i].csi_signo;
			const struct ckpt_sigaction *a;

			if (sig < 1 || sig > CKPT_ARCH_NSIG || (t->blocked & (1ULL << (sig - 1))))
				continue;
			a = &p->action[sig - 1];
			if (a->_sa_handler > 1) {	/* neither SIG_DFL nor SIG_IGN */
				*restart = a->sa_flags & SA_RESTART;
				return true;
			}
		}
	}
	return false;
}

/* what the restore itself left pending (a zombie child's SIGCHLD): gone before the image's */
int release_drain_signals(struct rctx *c, struct rtask *t)
{
	struct rproc *p = &c->procs[t->proc];
	const uint64_t all = ~((1ULL << (SIGKILL - 1)) | (1ULL << (SIGSTOP - 1)));
	const struct timespec zero = { 0, 0 };
	uint64_t set_at = rinj_put(c, p, 0, &all, sizeof(all));
	uint64_t ts_at = rinj_put(c, p, 16, &zero, sizeof(zero));
	int i;

	if (!set_at || !ts_at)
		return -1;
	for (i = 0; i < DRAIN_MAX; i++) {
		long r = rinj_syscall(c, t, SYS_rt_sigtimedwait, set_at, 0, ts_at, 8, 0, 0);

		if (r == INFECT_FAILED)
			return -1;
		if (r < 0)
			return 0;	/* EAGAIN: nothing more */
	}
	return pr_err("pid %d: signals keep arriving during the restore", t->pid);
}

int release_rlimits(struct rctx *c, struct rproc *p)
{
	struct rtask *t = &c->tasks[p->leader];
	int i;

	if (!p->have_signal)
		return 0;
	for (i = 0; i < CKPT_RLIM_NLIMITS; i++) {
		struct rlimit want = { p->signal.rlim[i].rlim_cur, p->signal.rlim[i].rlim_max }, now;

		if (prlimit(t->host, i, NULL, &now))
			return pr_perror("pid %d: read RLIMIT_%s", t->pid, rlimit_names[i]);
		if (now.rlim_cur == want.rlim_cur && now.rlim_max == want.rlim_max)
			continue;
		if (prlimit(t->host, i, &want, NULL))
			return rst_refuse(c, "pid %d: set RLIMIT_%s to %llu/%llu: %s", t->pid,
					  rlimit_names[i], (unsigned long long)want.rlim_cur,
					  (unsigned long long)want.rlim_max, strerror(errno));
	}
	return 0;
}

/* ckpt_siginfo back to the kernel's siginfo (x86_64), by the union member its code uses */
static void kernel_siginfo(const struct ckpt_siginfo *s, uint8_t *si)
{
	int signo = s->csi_signo, code = (int)s->csi_code;

	memset(si, 0, SIGINFO_SIZE);
#define PUT(off, v) do { __typeof__(v) _v = (v); memcpy(si + (off), &_v, sizeof(_v)); } while (0)
	PUT(0, (uint32_t)signo);
	PUT(4, s->csi_errno);
	PUT(8, s->csi_code);
	if (code == SI_TIMER) {
		PUT(16, s->csi_tid);
		PUT(20, s->csi_overrun);
		PUT(24, s->csi_ptr);
		PUT(32, s->csi_sys_private);
	} else if (code == SI_SIGIO || (code > 0 && code != SI_KERNEL && signo == SIGIO)) {
		PUT(16, s->csi_band);
		PUT(24, s->csi_fd);
	} else if (code > 0 && code != SI_KERNEL &&
		   (signo == SIGILL || signo == SIGFPE || signo == SIGSEGV || signo == SIGBUS ||
		    signo == SIGTRAP || signo == SIGSYS)) {
		PUT(16, s->csi_addr);
		if (signo == SIGSYS)
			PUT(24, s->csi_int);
	} else if (code > 0 && code != SI_KERNEL && signo == SIGCHLD) {
		PUT(16, s->csi_pid);
		PUT(20, s->csi_uid);
		PUT(24, s->csi_status);
		PUT(32, s->csi_utime);
		PUT(40, s->csi_stime);
	} else {
		PUT(16, s->csi_pid);
		PUT(20, s->csi_uid);
		PUT(24, s->csi_ptr);
	}
#undef PUT
}

int release_queue_signals(struct rctx *c, struct rtask *t, bool shared)
{
	struct rproc *p = &c->procs[t->proc];
	const struct rpending *q = shared ? &p->shared : &t->pending;
	uint8_t si[SIGINFO_SIZE];
	uint32_t i;

	for (i = 0; i < q->nr; i++) {
		int sig = q->info[i].csi_signo;
		uint64_t at;
		long r;

		if (sig < 1 || sig > CKPT_ARCH_NSIG)
			return pr_err("pid %d: pending signal %d", t->pid, sig);
		kernel_siginfo(&q->info[i], si);
		at = rinj_put(c, p, 0, si, sizeof(si));
		if (!at)
			return -1;
		r = shared ? rinj_syscall(c, t, SYS_rt_sigqueueinfo, t->tgid, sig, at, 0, 0, 0)
			   : rinj_syscall(c, t, SYS_rt_tgsigqueueinfo, t->tgid, t->pid, sig, at, 0, 0);
		if (r)
			return rst_refuse(c, "pid %d: queue pending signal %d: %s", t->pid, sig,
					  r < 0 ? strerror(-r) : "failed");
	}
	return 0;
}

static struct timeval tv_of(uint64_t ns)
{
	return (struct timeval){ ns / 1000000000ULL, ns % 1000000000ULL / 1000 };
}

int release_itimers(struct rctx *c, struct rproc *p)
{
	struct rtask *t = &c->tasks[p->leader];
	const uint64_t v[3][2] = {
		{ p->signal.it_real_value, p->signal.it_real_incr },
		{ p->signal.it_virt_value, p->signal.it_virt_incr },
		{ p->signal.it_prof_value, p->signal.it_prof_incr },
	};
	int which;

	if (!p->have_signal)
		return 0;
	for (which = 0; which < 3; which++) {
		struct itimerval it = { tv_of(v[which][1]), tv_of(v[which][0]) };
		uint64_t at;
		long r;

		if (!v[which][0] && !v[which][1])
			continue;
		/* caught just as it expired: the next period starts now */
		if (!v[which][0] || (!it.it_value.tv_sec && !it.it_value.tv_usec))
			it.it_value = it.it_interval.tv_sec || it.it_interval.tv_usec ? it.it_interval
										 : (struct timeval){ 0, 1 };
		at = rinj_put(c, p, 0, &it, sizeof(it));
		r = rinj_syscall(c, t, SYS_setitimer, which, at, 0, 0, 0, 0);
		if (r)
			return pr_err("pid %d: setitimer %d: %s", t->pid, which,
				      r < 0 ? strerror(-r) : "failed");
	}
	return 0;
}
