/*
 * Tasks: what is read once the tree is frozen (registers, sharing of kernel objects,
 * state only a syscall in the task can report), the PIDS/TREE head, and the per-task
 * record sequence.
 */
#include <errno.h>
#include <linux/kcmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "engine.h"

#define PF_FORKNOEXEC 0x00000040	/* forked but did not exec (kernel task flag) */

static const int kcmp_type[NR_SHARE] = {
	[SHARE_FILES] = KCMP_FILES,
	[SHARE_VM] = KCMP_VM,
	[SHARE_FS] = KCMP_FS,
	[SHARE_SIGHAND] = KCMP_SIGHAND,
};

static bool have_kcmp = true;

/* kcmp(2) orders the kernel objects it compares: sort by it, n log n calls */
static int cmp_object(const void *a, const void *b, void *arg)
{
	const struct task *x = *(struct task *const *)a, *y = *(struct task *const *)b;
	enum share_kind kind = *(enum share_kind *)arg;
	long r = have_kcmp ? syscall(SYS_kcmp, x->tid, y->tid, kcmp_type[kind], 0, 0) : -1;

	if (r < 0 && errno == ENOSYS)
		have_kcmp = false;
	if (r == 0 || r == 1 || r == 2)
		return r == 0 ? 0 : r == 1 ? -1 : 1;
	/* without kcmp only threads are known to share */
	return (x->tgid > y->tgid) - (x->tgid < y->tgid);
}

/*
 * task.share[kind] = index of the first task holding the same kernel object. The seized
 * tasks are sorted by object (kcmp's order), so each group of equal neighbours is one
 * object: O(n log n) kcmp calls instead of one per pair.
 */
static int find_sharing(struct ctx *c)
{
	struct task **by = malloc(c->nr_tasks * sizeof(*by));
	int i, j, n, k;

	if (!by)
		return pr_perror("sharing");
	for (i = 0; i < c->nr_tasks; i++)
		for (k = 0; k < NR_SHARE; k++)
			c->tasks[i].share[k] = i;
	for (k = 0; k < NR_SHARE; k++) {
		enum share_kind kind = k;

		for (i = 0, n = 0; i < c->nr_tasks; i++)
			if (c->tasks[i].seized)
				by[n++] = &c->tasks[i];
		qsort_r(by, n, sizeof(*by), cmp_object, &kind);
		for (i = 0; i < n; i = j) {
			int first = by[i] - c->tasks;

			for (j = i + 1; j < n && !cmp_object(&by[i], &by[j], &kind); j++)
				if (by[j] - c->tasks < first)
					first = by[j] - c->tasks;
			while (i < j)
				by[i++]->share[k] = first;
		}
	}
	free(by);
	return 0;
}

static int read_task(struct ctx *c, struct task *t)
{
	char *comm = proc_read(t->tid, "comm", NULL);
	struct {
		uint64_t head, len;
	} robust;

	if (!comm)
		return pr_perror("read /proc/%d/comm", t->tid);
	comm[strcspn(comm, "\n")] = 0;
	memcpy(t->comm, comm, strnlen(comm, sizeof(t->comm) - 1));
	free(comm);
	if (!t->seized)
		return 0;
	if (arch_read_regs(c, t))
		return -1;
	if (ptrace(PTRACE_GETSIGMASK, t->tid, sizeof(t->blocked), &t->blocked))
		return pr_perror("task %d: get signal mask", t->tid);
	if (syscall(SYS_get_robust_list, t->tid, &robust.head, &robust.len))
		return pr_perror("task %d: get_robust_list", t->tid);
	t->robust_list = robust.head;
	t->robust_len = robust.len;
	return 0;
}

static int probe_thread(struct infect *inf, struct task *t)
{
	long r;

	if (infect_syscall(inf, SYS_prctl, PR_GET_TID_ADDRESS, inf->scratch, 0, 0) == INFECT_FAILED ||
	    infect_read(inf, &t->clear_child_tid, sizeof(t->clear_child_tid)))
		return -1;
	t->pdeath_signal = 0;	/* the kernel writes an int into it */
	if (infect_syscall(inf, SYS_prctl, PR_GET_PDEATHSIG, inf->scratch, 0, 0) == INFECT_FAILED ||
	    infect_read(inf, &t->pdeath_signal, sizeof(int)))
		return -1;
	r = infect_syscall(inf, SYS_prctl, PR_GET_SECUREBITS, 0, 0, 0);
	if (r == INFECT_FAILED)
		return -1;
	t->securebits = r < 0 ? 0 : r;
	return probe_thread_signals(inf, t);
}

/*
 * Run the probing syscalls in every live thread of p. A task we cannot run a syscall
 * in is not fatal: p->probe_error explains what the image lacks. A failure after the
 * task ran injected code is fatal, since its state may not be restored.
 */
static int probe_process(struct ctx *c, struct process *p, int first, int end)
{
	char *status = proc_read(p->tgid, "status", NULL);
	const char *seccomp = status ? status_field(status, "Seccomp") : NULL;
	bool process_done = false;
	uint64_t syscall_ip;
	int i;

	if (seccomp && *seccomp != '0') {
		/* a filter might kill the task for a syscall it does not expect */
		snprintf(p->probe_error, sizeof(p->probe_error), "pid %d: uses seccomp", p->tgid);
		free(status);
		return 0;
	}
	free(status);
	/* the threads share the address space: one search for a syscall instruction */
	if (infect_find_syscall(p->tgid, &syscall_ip)) {
		snprintf(p->probe_error, sizeof(p->probe_error), "%s", last_error());
		return 0;
	}
	for (i = first; i < end; i++) {
		struct task *t = &c->tasks[i];
		struct infect inf;
		int ret;

		if (!t->seized)
			continue;
		if (infect_start(&inf, t->tid, syscall_ip)) {
			snprintf(p->probe_error, sizeof(p->probe_error), "%s", last_error());
			return 0;
		}
		ret = process_done ? 0 : probe_process_signals(&inf, p) || probe_mm(&inf, p);
		ret = ret || probe_thread(&inf, t) || probe_sem_undo(c, &inf, t);
		if (infect_stop(&inf) || ret)
			return -1;
		process_done = true;
	}
	p->probed = process_done;
	return 0;
}

int collect_tasks(struct ctx *c)
{
	int i, first;

	c->procs = calloc(c->nr_tasks, sizeof(*c->procs));
	if (!c->procs)
		return pr_perror("process list");
	for (i = 0; i < c->nr_tasks; i++) {
		if (c->tasks[i].seized) {
			if (arch_probe_xstate(c, c->tasks[i].tid))
				return -1;
			break;
		}
	}
	for (i = 0; i < c->nr_tasks; i++) {
		struct task *t = &c->tasks[i];

		if (i == 0 || t->tgid != t[-1].tgid)
			c->procs[c->nr_procs++].tgid = t->tgid;
		t->proc = &c->procs[c->nr_procs - 1];
		if (read_task(c, t))
			return -1;
	}
	if (find_sharing(c))
		return -1;
	for (first = 0; first < c->nr_tasks; first = i) {
		for (i = first; i < c->nr_tasks && c->tasks[i].tgid == c->tasks[first].tgid; i++)
			;
		if (probe_process(c, c->tasks[first].proc, first, i) || check_interrupted())
			return -1;
	}
	return 0;
}

/* objref of the pid object of nr; 0 ("not in the checkpoint's namespace") stays 0 */
static int pid_tag(struct ctx *c, pid_t nr, bool *first)
{
	*first = false;
	return nr ? obj_lookup_add(c->objs, CKPT_OBJ_PID, nr, 0, first) : 0;
}

/*
 * PIDS + BUFFER of every pid number the tasks refer to, then TREE + BUFFER of the tasks'
 * pid tags. Nothing else is in the objhash yet, so the pid objects get 1..nr_pids.
 */
int dump_tree(struct ctx *c)
{
	struct ckpt_pids *pids = calloc(5 * c->nr_tasks, sizeof(*pids));
	struct ckpt_task_pids *tp = calloc(c->nr_tasks, sizeof(*tp));
	struct ckpt_hdr_pids hp = { .offset = 1 };
	struct ckpt_hdr_tree ht = { .nr_tasks = c->nr_tasks };
	int i, j, ret = -1;

	if (!pids || !tp) {
		pr_perror("pid arrays");
		goto out;
	}
	for (i = 0; i < c->nr_tasks; i++) {
		struct task *t = &c->tasks[i];
		pid_t nr[5] = { t->tid, t->st.ppid, t->tgid, t->st.pgid, t->st.sid };
		int tag[5];

		for (j = 0; j < 5; j++) {
			bool first;

			tag[j] = pid_tag(c, nr[j], &first);
			if (tag[j] < 0)
				goto out;
			if (first)
				pids[hp.nr_pids++] = (struct ckpt_pids){ .depth = 0, .numbers = { nr[j] } };
		}
		tp[i] = (struct ckpt_task_pids){ .vpid = tag[0], .vppid = tag[1], .vtgid = tag[2],
						 .vpgid = tag[3], .vsid = tag[4], .depth = 0 };
	}
	if (write_obj(&c->img, CKPT_HDR_PIDS, &hp, sizeof(hp)) ||
	    write_buffer(&c->img, CKPT_HDR_BUFFER, pids, hp.nr_pids * sizeof(*pids)) ||
	    write_obj(&c->img, CKPT_HDR_TREE, &ht, sizeof(ht)) ||
	    write_buffer(&c->img, CKPT_HDR_BUFFER, tp, c->nr_tasks * sizeof(*tp)))
		goto out;
	ret = 0;
out:
	free(pids);
	free(tp);
	return ret;
}

/* /proc state letter (seen before the freeze) -> 2.6.38 state and exit_state */
static void task_state(char letter, uint32_t *state, uint32_t *exit_state)
{
	*exit_state = 0;
	switch (letter) {
	case 'S': *state = CKPT_TASK_INTERRUPTIBLE; break;
	case 'D': *state = CKPT_TASK_UNINTERRUPTIBLE; break;
	case 'T': *state = CKPT_TASK_STOPPED; break;
	case 't': *state = CKPT_TASK_TRACED; break;
	case 'Z': *state = CKPT_TASK_DEAD; *exit_state = CKPT_EXIT_ZOMBIE; break;
	case 'X': *state = CKPT_TASK_DEAD; *exit_state = CKPT_EXIT_DEAD; break;
	default: *state = CKPT_TASK_RUNNING; break;
	}
}

static int dump_task_struct(struct ctx *c, struct task *t)
{
	struct ckpt_hdr_task h = {
		.flags = t->st.flags & PF_FORKNOEXEC ? CKPT_PF_FORKNOEXEC : 0,
		.exit_code = t->seized ? 0 : t->st.exit_code,
		.exit_signal = t->st.exit_signal,
		.pdeath_signal = t->pdeath_signal,
		.clear_child_tid = t->clear_child_tid,
		.sas_ss_sp = t->sas_ss_sp,
		.sas_ss_size = t->sas_ss_size,
		.robust_futex_head_len = t->robust_len,
		.robust_futex_list = t->robust_list,
	};

	task_state(t->st.state, &h.state, &h.exit_state);
	if (write_obj(&c->img, CKPT_HDR_TASK, &h, sizeof(h)))
		return -1;
	return write_buffer(&c->img, CKPT_HDR_STRING, t->comm, sizeof(t->comm));
}

static int dump_restart_block(struct ctx *c)
{
	struct ckpt_hdr_restart_block h = { .function_type = CKPT_RESTART_BLOCK_NONE };

	return write_obj(&c->img, CKPT_HDR_RESTART_BLOCK, &h, sizeof(h));
}

static int dump_task_objs(struct ctx *c, struct task *t)
{
	struct ckpt_hdr_task_objs h = { .files_objref = 0 };
	bool new_signal;

	if (dump_unsaved_state(c, t) ||
	    (h.files_objref = dump_file_table(c, t)) < 0 ||
	    (h.mm_objref = dump_mm(c, t)) < 0 ||
	    (h.fs_objref = dump_fs(c, t)) < 0 ||
	    (h.sem_undo_objref = dump_sem_undo(c, t)) < 0 ||
	    (h.sighand_objref = dump_sighand(c, t)) < 0)
		return -1;
	/* the signal object is defined by its first use: SIGNAL follows that TASK_OBJS */
	h.signal_objref = obj_lookup_add(c->objs, CKPT_OBJ_SIGNAL, t->tgid, 0, &new_signal);
	if (h.signal_objref < 0 || write_obj(&c->img, CKPT_HDR_TASK_OBJS, &h, sizeof(h)))
		return -1;
	return new_signal ? dump_signal(c, t) : 0;
}

int dump_task(struct ctx *c, struct task *t)
{
	if (dump_task_struct(c, t))
		return -1;
	if (!t->seized)
		return 0;	/* a zombie is its task record and comm */
	if (arch_dump_thread(c, t) || dump_restart_block(c) || arch_dump_cpu(c, t) ||
	    dump_creds(c, t) || dump_task_ns(c, t) || dump_task_objs(c, t) ||
	    dump_task_signal(c, t) || dump_rseq(c, t))
		return -1;
	return 0;
}
