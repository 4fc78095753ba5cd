/*
 * Tasks: the TASK record and what follows it per task (THREAD, RESTART_BLOCK, TASK_OBJS),
 * emptying a fresh process for the image, threads created in their leader, zombies.
 * The mirror of task.c's per-task records.
 */
#include <errno.h>
#include <linux/rseq.h>
#include <linux/sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "restore.h"

#define TASK_SIZE_MAX	0x7ffffffff000UL
#define THREAD_FLAGS	(CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | \
			 CLONE_SYSVSEM)

/*
 * A fresh process (a fork of the driver) made ready for the image: the rseq area glibc
 * registered is unregistered (it is about to be unmapped), the stub is mapped, and every
 * other mapping and descriptor of the fork goes.
 */
int prepare_proc(struct rctx *c, struct rproc *p)
{
	struct rtask *t = &c->tasks[p->leader];
	struct rseq_configuration_k rseq;
	uint64_t end;
	long r;

	if (p->prepared)
		return 0;
	if (ptrace(PTRACE_GET_RSEQ_CONFIGURATION_K, t->host, sizeof(rseq), &rseq) == sizeof(rseq) &&
	    rseq.rseq_abi_pointer) {
		r = rinj_at_insn(c, t, SYS_rseq, rseq.rseq_abi_pointer, rseq.rseq_abi_size,
				 RSEQ_FLAG_UNREGISTER, rseq.signature);
		if (r == INFECT_FAILED || r < 0)
			return pr_err("pid %d: unregister the inherited rseq area: %s", t->pid,
				      r < 0 ? strerror(-r) : "failed");
	}
	if (rinj_make_stub(c, p, 0x10000))
		return -1;
	end = p->stub + RST_STUB_SIZE;
	if (rinj_syscall(c, t, SYS_munmap, 0, p->stub, 0, 0, 0, 0) ||
	    rinj_syscall(c, t, SYS_munmap, end, TASK_SIZE_MAX - end, 0, 0, 0, 0))
		return pr_err("pid %d: unmap the driver's memory", t->pid);
	if (rinj_syscall(c, t, SYS_close_range, 0, p->svc_pidfd - 1, 0, 0, 0, 0) ||
	    rinj_syscall(c, t, SYS_close_range, p->svc_in + 1, ~0U, 0, 0, 0, 0))
		return pr_err("pid %d: close the driver's descriptors", t->pid);
	p->prepared = true;
	return 0;
}

/* a thread of p's leader, with its tid: clone3 in the leader, the thread seized at birth */
static int create_thread(struct rctx *c, struct rtask *t)
{
	struct rproc *p = &c->procs[t->proc];
	struct rtask *leader = &c->tasks[p->leader];
	pid_t tid = t->pid;
	struct clone_args a = { .flags = THREAD_FLAGS, .set_tid_size = 1 };
	uint64_t at, tid_at;
	int status;
	long r;

	tid_at = rinj_put(c, p, 512, &tid, sizeof(tid));
	a.set_tid = tid_at;
	at = rinj_put(c, p, 0, &a, sizeof(a));
	if (!at || !tid_at)
		return -1;
	r = rinj_syscall(c, leader, SYS_clone3, at, sizeof(a), 0, 0, 0, 0);
	if (r == INFECT_FAILED)
		return -1;
	if (r < 0)
		return rst_refuse(c, "thread %d: clone3: %s", t->pid, strerror(-r));
	t->host = rinj_last_clone();
	if (t->host <= 0 || rinj_wait(t->host, &status))
		return pr_err("thread %d: not seen after its creation", t->pid);
	if (!WIFSTOPPED(status))
		return pr_err("thread %d: died at birth", t->pid);
	t->seized = true;
	t->tmpl = leader->tmpl;
	return rinj_start(c, t);
}

/* exit status as waitpid reports it: the zombie ends the same way */
static int make_zombie(struct rctx *c, struct rtask *t)
{
	uint32_t code = t->rec.exit_code;
	uint64_t none = 0;

	if ((code & 0x7f) == 0)
		return rinj_exit(c, t, SYS_exit_group, (code >> 8) & 0xff, 0);
	/* killed by a signal: no core file, nothing blocked, the default action */
	if (rinj_at_insn(c, t, SYS_prctl, PR_SET_DUMPABLE, 0, 0, 0) == INFECT_FAILED ||
	    ptrace(PTRACE_SETSIGMASK, t->host, sizeof(none), &none))
		return pr_err("pid %d: prepare its death", t->pid);
	return rinj_exit(c, t, SYS_tgkill, code & 0x7f, 0);
}

int restore_task(struct rctx *c, const struct ckpt_hdr *h)
{
	struct rtask *t;
	struct ckpt_hdr s;
	struct rproc *p;

	if (c->cur + 1 >= c->nr_tasks)
		return rs_invalid(&c->in, "TASK at offset %llu: more tasks than the TREE's %d",
			      (unsigned long long)c->in.rec_off, c->nr_tasks);
	t = &c->tasks[++c->cur];
	p = &c->procs[t->proc];
	if (rs_record(&c->in, h, &t->rec, sizeof(t->rec)) ||
	    rs_expect(&c->in, CKPT_HDR_STRING, &s) ||
	    rs_payload(&c->in, &s, t->comm, 1, sizeof(t->comm)))
		return -1;
	t->comm[sizeof(t->comm) - 1] = 0;
	c->after_signal = false;
	t->zombie = t->rec.state == CKPT_TASK_DEAD;
	if (t->zombie && t->rec.exit_state != CKPT_EXIT_ZOMBIE)
		return rst_refuse(c, "pid %d: a dead task that is not a zombie", t->pid);
	if (t->zombie && t->pid != t->tgid)
		return rst_refuse(c, "thread %d is a zombie", t->pid);
	if (t->zombie && c->cur + 1 < c->nr_tasks && c->tasks[c->cur + 1].tgid == t->tgid)
		return rst_refuse(c, "pid %d: a zombie thread group leader with live threads", t->pid);
	if (t->rec.state == CKPT_TASK_STOPPED)
		p->stopped = true;
	if (c->dry)
		return 0;
	if (t->zombie) {
		/* it dies now: its parent's SIGCHLD stays pending (blocked) and is dropped later */
		if (make_zombie(c, t))
			return -1;
		t->exited = true;
		t->seized = false;
		return 0;
	}
	if (t->pid != t->tgid)
		return create_thread(c, t);
	return prepare_proc(c, p);
}

int restore_thread_rec(struct rctx *c, const struct ckpt_hdr *h)
{
	struct rtask *t = cur_task(c);
	void *payload;
	int ret;

	if (!t)
		return -1;
	payload = rs_payload_alloc(&c->in, h, sizeof(struct ckpt_hdr_thread) - sizeof(*h), 4096);
	if (!payload)
		return -1;
	ret = rarch_restore_thread(c, t, payload, h->len - sizeof(*h));
	free(payload);
	return ret;
}

int restore_restart_block(struct rctx *c, const struct ckpt_hdr *h)
{
	struct ckpt_hdr_restart_block rb;

	if (rs_record(&c->in, h, &rb, sizeof(rb)))
		return -1;
	/* other kinds name kernel functions; the syscall is run again instead (arch regs.c) */
	return 0;
}

/* the task's shared objects: a thread shares its leader's; processes share none of them */
int restore_task_objs(struct rctx *c, const struct ckpt_hdr *h)
{
	struct rtask *t = cur_task(c);
	struct ckpt_hdr_task_objs o;
	struct rproc *p;
	if (!t || rs_record(&c->in, h, &o, sizeof(o)))
		return -1;
	p = &c->procs[t->proc];
	if (o.sem_undo_objref && ipc_task_undo(c, t, o.sem_undo_objref))
		return -1;
	if (t->pid == t->tgid) {
		p->files_ref = o.files_objref;
		p->mm_ref = o.mm_objref;
		p->fs_ref = o.fs_objref;
		p->sighand_ref = o.sighand_objref;
		p->signal_ref = o.signal_objref;
		if (!p->have_mm || !p->mm_done)
			return rst_refuse(c, "pid %d: no complete address space before its TASK_OBJS", t->pid);
	} else if (o.files_objref != p->files_ref || o.mm_objref != p->mm_ref ||
		   o.fs_objref != p->fs_ref || o.sighand_objref != p->sighand_ref ||
		   o.signal_objref != p->signal_ref) {
		return rst_refuse(c, "thread %d does not share its leader's files, memory, fs and "
				  "signal handlers", t->pid);
	}
	/* a process whose memory or file table is another process's (CLONE_VM, CLONE_FILES) */
	if (t->pid == t->tgid) {
		struct robj *mm = obj_get(c, o.mm_objref, CKPT_OBJ_MM);
		struct robj *ft = obj_get(c, o.files_objref, CKPT_OBJ_FILE_TABLE);

		if (!mm || !ft)
			return -1;
		if (mm->owner != t->proc || ft->owner != t->proc)
			return rst_refuse(c, "pid %d shares its %s with another process", t->pid,
					  mm->owner != t->proc ? "memory" : "file table");
	}
	return 0;
}
