/*
 * Freezing the tree: every thread of every process is seized and interrupted
 * (PTRACE_SEIZE + PTRACE_INTERRUPT) before anything is read, parents before their
 * children so no process can fork behind our back, and a thread group is rescanned until
 * no new thread shows up. Thawing detaches (or kills) everything that was seized.
 *
 * SIGINT/SIGTERM/SIGHUP only raise a flag, installed without SA_RESTART so that a
 * blocked wait or write returns EINTR: the dump then fails through the normal path,
 * which writes the ERROR record and detaches every task with its registers intact (a
 * handler detaching on its own could catch a task in the middle of a syscall injection).
 * The tracer is a child of the launched process (supervise.c), told by
 * PR_SET_PDEATHSIG when that one dies, so SIGKILL of the engine takes the same path.
 *
 * Every wait is bounded (STOP_TIMEOUT_MS): a task that does not take its interrupt
 * trap (a vfork parent waits in the kernel until its child execs or exits) is refused
 * by name; the tracer's exit then releases it with its trap still pending.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/kcmp.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "engine.h"

#define MAX_SIGNAL_STOPS 64	/* signals let through before the interrupt trap wins */

volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
	interrupted = sig;
}

void freeze_install_handlers(void)
{
	struct sigaction sa = { .sa_handler = on_signal };
	struct sigaction ign = { .sa_handler = SIG_IGN };
	sigset_t chld;

	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	/* a closed output pipe must fail the write (EPIPE), not kill us with tasks frozen */
	sigaction(SIGPIPE, &ign, NULL);
	/* ptrace stops are announced by SIGCHLD: bounded waits take it with sigtimedwait */
	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	sigprocmask(SIG_BLOCK, &chld, NULL);
}

/* -1 once a stop was requested; the message is printed the first time */
int check_interrupted(void)
{
	static bool reported;

	if (!interrupted)
		return 0;
	if (!reported) {
		reported = true;
		pr_err("interrupted by %s", strsignal(interrupted));
	}
	return -1;
}

static long elapsed_ms(const struct timespec *since)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (now.tv_sec - since->tv_sec) * 1000 + (now.tv_nsec - since->tv_nsec) / 1000000;
}

/*
 * waitpid(tid, __WALL) for at most timeout_ms. -1 with errno ETIMEDOUT when it passed,
 * EINTR when the dump was interrupted and the wait may be abandoned (abortable).
 */
static int wait_bounded(pid_t tid, int *status, long timeout_ms, bool abortable)
{
	struct timespec start;
	sigset_t chld;

	clock_gettime(CLOCK_MONOTONIC, &start);
	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	for (;;) {
		pid_t r = waitpid(tid, status, __WALL | WNOHANG);
		long left;

		if (r == tid)
			return 0;
		if (r < 0 && errno != EINTR)
			return -1;
		if (abortable && interrupted) {
			errno = EINTR;
			return -1;
		}
		left = timeout_ms - elapsed_ms(&start);
		if (left <= 0) {
			errno = ETIMEDOUT;
			return -1;
		}
		/* a SIGCHLD, a handled signal (EINTR) or the time left, whichever comes first */
		sigtimedwait(&chld, NULL, &(struct timespec){ left / 1000, left % 1000 * 1000000 });
	}
}

/*
 * waitpid for a ptrace stop of a task that is known to stop promptly (inside a syscall
 * injection: the task must come back to have its registers put back, so the bound is
 * generous, for a loaded machine, and an interruption does not cut it short)
 */
int wait_trap(pid_t tid, int *status)
{
	if (wait_bounded(tid, status, TRAP_TIMEOUT_MS, false))
		return errno == ETIMEDOUT
			? pr_err("task %d: did not stop within %d ms", tid, TRAP_TIMEOUT_MS)
			: pr_perror("wait %d", tid);
	if (!WIFSTOPPED(*status))
		return pr_err("task %d: exited while traced (status %#x)", tid, *status);
	return 0;
}

/* The child a vfork parent waits for: the one sharing its address space, or 0. */
static pid_t vfork_child(pid_t pid)
{
	char name[64], *kids, *p;
	pid_t child = 0;

	snprintf(name, sizeof(name), "task/%d/children", pid);
	kids = proc_read(pid, name, NULL);
	for (p = kids; p && *p && !child;) {
		char *end;
		long k = strtol(p, &end, 10);

		if (end == p)
			break;
		if (syscall(SYS_kcmp, pid, (pid_t)k, KCMP_VM, 0, 0) == 0)
			child = k;
		p = end;
	}
	free(kids);
	return child;
}

/* A seized task that does not take its interrupt trap: say why, from /proc. */
static int refuse_unstoppable(struct ctx *c, pid_t tid)
{
	char *sc = proc_read(tid, "syscall", NULL);
	long nr = sc && *sc >= '0' && *sc <= '9' ? strtol(sc, NULL, 10) : -1;
	struct proc_stat st = { .state = '?' };

	free(sc);
	proc_stat(tid, &st);
	c->refused = true;
	if (st.state == 'D' && (nr == SYS_vfork || nr == SYS_clone || nr == SYS_clone3))
		return pr_err("pid %d is a vfork parent waiting for its child %d: it cannot stop "
			      "until the child calls exec or exits", tid, vfork_child(tid));
	return pr_err("pid %d did not stop within %d ms (state %c, syscall %ld)", tid,
		      STOP_TIMEOUT_MS, st.state, nr);
}

/*
 * Wait for the PTRACE_EVENT_STOP of the interrupt. A signal-delivery stop that comes
 * first is let through (the task enters its handler or default action) and the pending
 * interrupt traps it right after. Returns 1 if the task is gone.
 */
static int wait_interrupt_stop(struct ctx *c, pid_t tid)
{
	int i, status;

	for (i = 0; i < MAX_SIGNAL_STOPS; i++) {
		if (wait_bounded(tid, &status, STOP_TIMEOUT_MS, true)) {
			if (errno == EINTR)
				return check_interrupted();
			return errno == ETIMEDOUT ? refuse_unstoppable(c, tid) : pr_perror("wait %d", tid);
		}
		if (WIFEXITED(status) || WIFSIGNALED(status))
			return 1;
		if (status >> 16 == PTRACE_EVENT_STOP)
			return 0;
		if (ptrace(PTRACE_CONT, tid, 0, (long)WSTOPSIG(status)))
			return pr_perror("resume %d to take signal %d", tid, WSTOPSIG(status));
	}
	return pr_err("task %d: keeps receiving signals, cannot stop it", tid);
}

static struct task *add_task(struct ctx *c, pid_t tid, pid_t tgid)
{
	struct task *t = realloc(c->tasks, (c->nr_tasks + 1) * sizeof(*t));

	if (!t) {
		pr_perror("task list");
		return NULL;
	}
	c->tasks = t;
	t += c->nr_tasks++;
	memset(t, 0, sizeof(*t));
	t->tid = tid;
	t->tgid = tgid;
	return t;
}

static bool known_tid(struct ctx *c, int from, pid_t tid)
{
	int i;

	for (i = from; i < c->nr_tasks; i++)
		if (c->tasks[i].tid == tid)
			return true;
	return false;
}

#define PF_KTHREAD 0x00200000	/* kernel task flag: a kernel thread */

/* "pid N (comm)" of a task, for messages */
static const char *task_name(pid_t pid, char *buf, size_t size)
{
	char *comm = proc_read(pid, "comm", NULL);

	snprintf(buf, size, "pid %d (%.*s)", pid, comm ? (int)strcspn(comm, "\n") : 1,
		 comm ? comm : "?");
	free(comm);
	return buf;
}

/* Why PTRACE_SEIZE of tid failed with EPERM, if /proc says: traced, or a kernel thread. */
static int seize_refused(struct ctx *c, pid_t tid, const struct proc_stat *st)
{
	char *status = proc_read(tid, "status", NULL);
	pid_t tracer = status ? atoi(status_field(status, "TracerPid") ?: "0") : 0;
	char name[64];

	free(status);
	c->refused = true;
	if (st->flags & PF_KTHREAD)
		return pr_err("pid %d is a kernel thread: it has no user space to checkpoint", tid);
	if (tracer > 0)
		return pr_err("pid %d is traced by %s: a task has one tracer at a time", tid,
			      task_name(tracer, name, sizeof(name)));
	errno = EPERM;
	return pr_perror("seize %d", tid);
}

/* Seize and stop one thread. Returns 1 if it vanished before we got it. */
static int freeze_thread(struct ctx *c, pid_t tid, pid_t tgid)
{
	struct proc_stat st;
	bool seized = false;
	struct task *t;
	int ret;

	if (tid == getpid())
		return c->refused = true, pr_err("pid %d: is the dumper itself", tid);
	if (proc_stat(tid, &st))
		return errno == ENOENT || errno == ESRCH ? 1 : pr_perror("read /proc/%d/stat", tid);
	/* a dead task cannot change and cannot be traced: it is recorded as it is */
	if (st.state != 'Z' && st.state != 'X') {
		if (ptrace(PTRACE_SEIZE, tid, 0, (long)PTRACE_O_TRACESYSGOOD)) {
			int err = errno;

			if (err == ESRCH)
				return 1;
			if (err != EPERM || proc_stat(tid, &st) || st.state != 'Z') {
				errno = err;
				c->refused = true;
				return err == EPERM ? seize_refused(c, tid, &st) : pr_perror("seize %d", tid);
			}
		} else {
			seized = true;
		}
	}
	t = add_task(c, tid, tgid);
	if (!t) {
		if (seized)
			ptrace(PTRACE_DETACH, tid, 0, 0);
		return -1;
	}
	t->st = st;
	t->seized = seized;
	if (!seized)
		return 0;
	if (ptrace(PTRACE_INTERRUPT, tid, 0, 0))
		return pr_perror("interrupt %d", tid);
	ret = wait_interrupt_stop(c, tid);
	if (ret == 1)
		c->nr_tasks--;
	return ret;
}

static int cmp_pid(const void *a, const void *b)
{
	pid_t x = *(const pid_t *)a, y = *(const pid_t *)b;

	return (x > y) - (x < y);
}

/* the thread group leader first, then its other threads by ascending tid */
static int cmp_thread(const void *a, const void *b)
{
	const struct task *x = a, *y = b;

	if ((x->tid == x->tgid) != (y->tid == y->tgid))
		return x->tid == x->tgid ? -1 : 1;
	return (x->tid > y->tid) - (x->tid < y->tid);
}

/* Numeric entries of a /proc directory, ascending. */
static int list_dir_pids(const char *path, pid_t **out, int *n)
{
	DIR *d = opendir(path);
	struct dirent *e;
	int cap = 0;

	*out = NULL;
	*n = 0;
	if (!d)
		return -1;
	while ((e = readdir(d))) {
		pid_t p = atoi(e->d_name);

		if (p <= 0)
			continue;
		if (*n == cap) {
			pid_t *np = realloc(*out, (cap = cap ? 2 * cap : 16) * sizeof(pid_t));

			if (!np) {
				closedir(d);
				return pr_perror("pid list");
			}
			*out = np;
		}
		(*out)[(*n)++] = p;
	}
	closedir(d);
	qsort(*out, *n, sizeof(pid_t), cmp_pid);
	return 0;
}

/* Rescan /proc/<pid>/task until every thread listed there is stopped. */
static int freeze_threads(struct ctx *c, pid_t pid, int first)
{
	char path[64];
	bool again = true;

	snprintf(path, sizeof(path), "/proc/%d/task", pid);
	while (again) {
		pid_t *tids;
		int n, i, ret = 0;

		if (list_dir_pids(path, &tids, &n))
			return pr_perror("list %s", path);
		again = false;
		for (i = 0; i < n && !ret; i++) {
			if (known_tid(c, first, tids[i]))
				continue;
			ret = freeze_thread(c, tids[i], pid);
			if (ret == 0)
				again = true;
			else if (ret == 1)
				ret = 0;
		}
		free(tids);
		if (ret)
			return ret;
		if (check_interrupted())
			return -1;
	}
	return 0;
}

static void detach_range(struct ctx *c, int first, int end)
{
	int i;

	for (i = first; i < end; i++)
		if (c->tasks[i].seized)
			ptrace(PTRACE_DETACH, c->tasks[i].tid, 0, 0);
}

/* Children of every thread of the process c->tasks[first..end), ascending, unique. */
static int list_children(struct ctx *c, int first, int end, pid_t **out, int *n)
{
	int i, cap = 0;

	*out = NULL;
	*n = 0;
	for (i = first; i < end; i++) {
		char name[64], *buf, *p;

		snprintf(name, sizeof(name), "task/%d/children", c->tasks[i].tid);
		buf = proc_read(c->tasks[i].tgid, name, NULL);
		if (!buf)
			continue;	/* zombie threads have no children file */
		for (p = buf; *p;) {
			char *end_p;
			long v = strtol(p, &end_p, 10);

			if (end_p == p)
				break;
			p = end_p;
			if (*n == cap) {
				pid_t *np = realloc(*out, (cap = cap ? 2 * cap : 16) * sizeof(pid_t));

				if (!np) {
					free(buf);
					return pr_perror("children list");
				}
				*out = np;
			}
			(*out)[(*n)++] = v;
		}
		free(buf);
	}
	qsort(*out, *n, sizeof(pid_t), cmp_pid);
	for (i = 1, cap = *n ? 1 : 0; i < *n; i++)
		if ((*out)[i] != (*out)[cap - 1])
			(*out)[cap++] = (*out)[i];
	*n = cap;
	return 0;
}

/* Freeze process pid (child of ppid, 0 for the root), then its subtree, depth first. */
static int freeze_process(struct ctx *c, pid_t pid, pid_t ppid)
{
	int first = c->nr_tasks, end, i, ret;
	pid_t *children;
	int nr_children;

	ret = freeze_threads(c, pid, first);
	if (ret)
		return ret;
	end = c->nr_tasks;
	if (end == first)
		return 0;	/* exited before we got to it */
	if (ppid) {
		struct proc_stat st;

		/* the pid was reaped and reused by a stranger while we froze its parent */
		if (proc_stat(pid, &st) || st.ppid != ppid) {
			detach_range(c, first, end);
			c->nr_tasks = first;
			return 0;
		}
	}
	qsort(c->tasks + first, end - first, sizeof(struct task), cmp_thread);
	if (!c->tree)
		return 0;
	if (list_children(c, first, end, &children, &nr_children))
		return -1;
	for (i = 0, ret = 0; i < nr_children && !ret; i++)
		ret = freeze_process(c, children[i], pid);
	free(children);
	return ret;
}

/* The thread group a task id belongs to, from /proc/PID/status; -1 if unknown. */
static pid_t tgid_of(pid_t pid)
{
	char path[64], line[256];
	pid_t tgid = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", pid);
	f = fopen(path, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "Tgid: %d", &tgid) == 1)
			break;
	fclose(f);
	return tgid;
}

/*
 * A tree that holds the dumper cannot be frozen by it: root is the dumper or one of its
 * ancestors (dump $$ from a shell). Named before anything is seized.
 */
static int refuse_own_tree(struct ctx *c, pid_t root)
{
	char who[64], me[64];
	pid_t pid = getpid();
	struct proc_stat st;

	if (root == pid)
		return c->refused = true, pr_err("pid %d is the dumper itself", root);
	if (!c->tree)
		return 0;	/* an ancestor alone is a process like any other */
	while (pid > 1 && !proc_stat(pid, &st)) {
		pid = st.ppid;
		if (pid == root)
			return c->refused = true,
			       pr_err("%s is an ancestor of the dumper, %s: its tree holds the dump "
				      "itself (use --single, or dump a process outside it)",
				      task_name(root, who, sizeof(who)), task_name(getpid(), me, sizeof(me)));
	}
	return 0;
}

int freeze_tree(struct ctx *c, pid_t root)
{
	struct proc_stat st;
	pid_t tgid;
	int ret;

	if ((kill(root, 0) && errno == ESRCH) || proc_stat(root, &st))
		return c->usage_error = true, pr_err("pid %d: no such process", root);
	if (st.flags & PF_KTHREAD)
		return c->refused = true,
		       pr_err("pid %d is a kernel thread: it has no user space to checkpoint", root);
	tgid = tgid_of(root);
	if (tgid > 0 && tgid != root)
		return c->refused = true,
		       pr_err("pid %d is a thread of process %d: dump %d instead", root, tgid, tgid);
	if (refuse_own_tree(c, root))
		return -1;
	ret = freeze_process(c, root, 0);
	if (!ret && c->nr_tasks == 0)
		return c->refused = true, pr_err("pid %d: exited", root);
	return ret;
}

void thaw_all(struct ctx *c, bool kill_tasks)
{
	int i;

	kill_tasks = inet_thaw(c, kill_tasks);	/* inet may call the kill off */
	if (kill_tasks)
		for (i = 0; i < c->nr_tasks; i++)
			if (c->tasks[i].seized)
				kill(c->tasks[i].tgid, SIGKILL);
	detach_range(c, 0, c->nr_tasks);
}
