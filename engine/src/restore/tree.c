/*
 * The task tree: a plan of who creates whom (from PIDS/TREE), the processes created by forked
 * copies of the driver with clone3(set_tid), and the seize. The mirror of freeze.c and of
 * task.c's PIDS/TREE.
 *
 * Plan. Each process is created by its parent. In a new pid namespace (the default) the
 * first process is pid 1: the image's root if its pid was 1, else a reaper that creates the
 * rest and passes the root's exit status on. Around the root, helpers stand in for what the
 * image names outside it: the root's session leader (setsid), its process group leader, its
 * parent (which stays, waits for the root and passes its status on); helpers that are not
 * the parent exit once the tree runs, leaving a session or group whose leader is dead, as
 * after the real leader's death. A session is recreated by forking a session leader's
 * children of the old session before its setsid() and the rest after; process groups are
 * joined by an injected setpgid() once every group leader exists.
 *
 * Safety. Every created process has PR_SET_PDEATHSIG(SIGKILL) at once, and is seized with
 * PTRACE_O_EXITKILL: if the driver dies at any point, the tree dies with it; in a new pid
 * namespace the death of its init kills everything in it. Helpers wait on a pipe whose end
 * of file means "the driver is gone".
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "restore.h"

enum node_kind { NODE_TASK, NODE_REAPER, NODE_HELPER };

struct plan_node {
	enum node_kind kind;
	pid_t pid;		/* in the restored pid namespace */
	int task;		/* NODE_TASK: index in tasks[] */
	int creator;		/* node index, -1 for the driver */
	bool clone_parent;	/* its parent is its creator's parent */
	bool new_pidns;		/* the first process of a new pid namespace */
	bool early;		/* forked before its creator's setsid() */
	bool do_setsid, do_setpgid;
	bool parent_role;	/* stands in for the root's parent */
	pid_t sid_before, sid_after;	/* its session before and after its own setsid() */
	pid_t host;
};

#define READY_TIMEOUT_MS	20000
#define PID_FREE_WAIT_MS	3000	/* a zombie awaiting PID 1's lazy reaping (1-2 s here) */
#define SVC_FD_BASE		1000	/* service descriptors of the tasks: pidfd, image */
#define OUTSIDE			-1	/* a session outside the image */

static int ready_pipe[2] = { -1, -1 }, go_pipe[2] = { -1, -1 }, leave_pipe[2] = { -1, -1 };
static pid_t driver_pid;

static int find_process(struct rctx *c, pid_t pid)
{
	int i;

	for (i = 0; i < c->nr_nodes; i++)
		if (c->nodes[i].kind == NODE_TASK && c->nodes[i].pid == pid)
			return i;
	return -1;
}

static int add_node(struct rctx *c, enum node_kind kind, pid_t pid, int task, int creator)
{
	struct plan_node *n = &c->nodes[c->nr_nodes];

	*n = (struct plan_node){ .kind = kind, .pid = pid, .task = task, .creator = creator };
	return c->nr_nodes++;
}

/* the session a node's creator hands it: before or after the creator's own setsid() */
static pid_t creator_sid(struct rctx *c, const struct plan_node *n)
{
	const struct plan_node *cr;

	if (n->creator < 0)
		return OUTSIDE;
	cr = &c->nodes[n->creator];
	if (n->clone_parent)
		return cr->sid_after;	/* a CLONE_PARENT child still gets its creator's session */
	return n->early ? cr->sid_before : cr->sid_after;
}

static void set_session(struct rctx *c, struct plan_node *n)
{
	n->sid_before = creator_sid(c, n);
	n->sid_after = n->do_setsid ? n->pid : n->sid_before;
}

/* helpers for the root's session, group and parent outside the image (new pid ns only) */
static int plan_outer(struct rctx *c, int reaper, int *root_creator, bool *clone_parent)
{
	const struct rtask *root = &c->tasks[0];
	pid_t s = root->sid, g = root->pgid, p = root->ppid;
	int last = reaper, n;

	*root_creator = reaper;

	/* --shell-job: the caller's session stands for the root's (its terminal too) */
	if (s && s != root->pid && find_process(c, s) < 0 && !c->shell_job) {
		if (s == 1) {
			c->nodes[reaper].do_setsid = true;
		} else {
			last = add_node(c, NODE_HELPER, s, -1, last);
			c->nodes[last].do_setsid = true;
		}
	}
	if (g && g != root->pid && g != s && find_process(c, g) < 0) {
		if (g == 1)
			return rst_refuse(c, "the root's process group 1 is not its session %d", s);
		last = add_node(c, NODE_HELPER, g, -1, last);
		c->nodes[last].do_setpgid = true;
	}
	if (p && p != 1 && (p != s || c->shell_job) && p != g && find_process(c, p) < 0)
		last = add_node(c, NODE_HELPER, p, -1, last);
	if (p && find_process(c, p) >= 0)
		return rst_refuse(c, "the first task of the image (pid %d) is not the root: its parent %d "
				  "is in the image", root->pid, p);
	for (n = 0; n < c->nr_nodes; n++)
		if (c->nodes[n].kind == NODE_HELPER && c->nodes[n].pid == p)
			c->nodes[n].parent_role = true;
	/*
	 * The root's creator: its stand-in parent, which is in the session already (its group
	 * is joined later); or, for a parent that is the namespace's init, the first helper
	 * with CLONE_PARENT, so that it is born in the session but a child of the reaper.
	 */
	*clone_parent = false;
	for (n = 0; n < c->nr_nodes; n++)
		if (c->nodes[n].parent_role)
			*root_creator = n;
	if (c->nodes[*root_creator].parent_role)
		return 0;
	if (p > 1)
		return rst_refuse(c, "the root's parent %d cannot be recreated", p);
	*root_creator = reaper + 1 < c->nr_nodes ? reaper + 1 : reaper;
	*clone_parent = *root_creator != reaper;
	return 0;
}

int plan_tree(struct rctx *c)
{
	struct rtask *root = &c->tasks[0];
	int i, reaper = -1, root_creator = -1, node;
	bool clone_parent = false;

	c->nodes = calloc(c->nr_tasks + 4, sizeof(*c->nodes));
	c->procs = calloc(c->nr_tasks, sizeof(*c->procs));
	if (!c->nodes || !c->procs)
		return pr_perror("tree plan");
	if (root->pid != root->tgid)
		return rst_refuse(c, "the first task of the image (pid %d) is a thread", root->pid);
	/* thread groups: a leader and the threads that follow it */
	for (i = 0; i < c->nr_tasks; i++) {
		struct rtask *t = &c->tasks[i];

		if (t->pid == t->tgid) {
			c->procs[c->nr_procs] = (struct rproc){ .leader = i, .map_cache_fd = -1, .populate = true,
								.svc_pidfd = SVC_FD_BASE,
								.svc_in = SVC_FD_BASE + 1,
								.ctty_fd = -1 };
			t->proc = c->nr_procs++;
		} else if (i && c->tasks[i - 1].tgid == t->tgid) {
			t->proc = c->tasks[i - 1].proc;
		} else {
			return rst_refuse(c, "thread %d does not follow its thread group %d", t->pid, t->tgid);
		}
	}
	if (c->pidns && root->pid != 1) {
		reaper = add_node(c, NODE_REAPER, 1, -1, -1);
		c->nodes[reaper].new_pidns = true;
		if (plan_outer(c, reaper, &root_creator, &clone_parent))
			return -1;
	}
	node = add_node(c, NODE_TASK, root->pid, 0, root_creator);
	c->nodes[node].clone_parent = clone_parent;
	c->nodes[node].new_pidns = c->pidns && root->pid == 1;
	for (i = 1; i < c->nr_tasks; i++) {
		struct rtask *t = &c->tasks[i];
		int parent, n;

		if (t->pid != t->tgid)
			continue;
		parent = find_process(c, t->ppid);
		if (parent < 0 && c->pidns) {
			for (n = 0; n < c->nr_nodes; n++)
				if ((c->nodes[n].kind == NODE_REAPER && t->ppid == 1) ||
				    (c->nodes[n].parent_role && c->nodes[n].pid == t->ppid))
					parent = n;
			if (parent < 0)
				return rst_refuse(c, "pid %d: its parent %d is neither in the image nor the "
						  "root's parent", t->pid, t->ppid);
		}
		add_node(c, NODE_TASK, t->pid, i, parent);
	}
	/* sessions: who forks before its setsid(), and whether every session can be had */
	for (i = 0; i < c->nr_nodes; i++) {
		struct plan_node *n = &c->nodes[i];
		struct rtask *t = n->kind == NODE_TASK ? &c->tasks[n->task] : NULL;
		const struct plan_node *cr = n->creator >= 0 ? &c->nodes[n->creator] : NULL;

		if (t) {
			n->do_setsid = t->sid == t->pid;
			n->do_setpgid = !n->do_setsid && t->pgid == t->pid;
			n->early = cr && cr->do_setsid && !n->clone_parent && !n->do_setsid &&
				   t->sid == cr->sid_before && t->sid != cr->pid;
		}
		set_session(c, n);
		if (!t || n->do_setsid)
			continue;
		if (n->sid_before == OUTSIDE) {
			/* the caller's session stands for one outside the image (not in a new pid ns) */
			if (c->pidns && !c->shell_job ? t->sid != 0 : find_process(c, t->sid) >= 0)
				return rst_refuse(c, "pid %d: its session %d cannot be recreated", t->pid,
						  t->sid);
			continue;
		}
		if (n->sid_before != t->sid)
			return rst_refuse(c, "pid %d: its session %d cannot be recreated (its leader is "
					  "dead or outside the image)", t->pid, t->sid);
	}
	return 0;
}

static long clone3_pid(const struct plan_node *n)
{
	pid_t tid = n->pid;
	struct clone_args a = {
		.flags = (n->clone_parent ? CLONE_PARENT : 0) |
			 (n->new_pidns ? CLONE_NEWPID | CLONE_NEWNS : 0),
		.exit_signal = n->clone_parent ? 0 : SIGCHLD,
		.set_tid = n->new_pidns ? 0 : (uint64_t)(uintptr_t)&tid,
		.set_tid_size = n->new_pidns ? 0 : 1,
	};

	return syscall(SYS_clone3, &a, sizeof(a));
}

static void report(int node, int err)
{
	int msg[2] = { node, err };

	if (write(ready_pipe[1], msg, sizeof(msg)) != sizeof(msg))
		_exit(112);
}

static void node_main(struct rctx *c, int self) __attribute__((noreturn));

/* a session leader's terminal, kept open for the node that takes it (tty_prepare) */
static bool is_ctty_fd(struct rctx *c, int fd)
{
	int i;

	for (i = 0; i < c->nr_procs; i++)
		if (c->procs[i].ctty_fd == fd)
			return true;
	return false;
}

static void spawn_children(struct rctx *c, int self, bool early)
{
	int i;

	for (i = 0; i < c->nr_nodes; i++) {
		struct plan_node *n = &c->nodes[i];
		long pid;

		if (n->creator != self || n->early != early)
			continue;
		pid = clone3_pid(n);
		if (pid == 0)
			node_main(c, i);
		if (pid < 0)
			report(i, errno);
	}
}

/* the reaper: pid 1 of the new namespace, passing on the root's (or its stand-in's) status */
static void reaper_loop(pid_t watched)
{
	int status;

	for (;;) {
		pid_t r = waitpid(-1, &status, 0);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			_exit(1);
		if (r == watched)
			_exit(WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status));
	}
}

/* the root's stand-in parent: waits for the root and ends the same way */
static void parent_loop(pid_t root)
{
	struct rlimit no_core = { 0, 0 };
	sigset_t none;
	int status;

	while (waitpid(root, &status, 0) < 0)
		if (errno != EINTR)
			_exit(1);
	if (WIFSIGNALED(status)) {
		setrlimit(RLIMIT_CORE, &no_core);
		signal(WTERMSIG(status), SIG_DFL);
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		kill(getpid(), WTERMSIG(status));
	}
	_exit(WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status));
}

static void node_main(struct rctx *c, int self)
{
	struct plan_node *n = &c->nodes[self];
	pid_t expect = 0;
	sigset_t all;
	int sig, i;
	char go;

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (!n->new_pidns) {
		const struct plan_node *parent = n->creator < 0 ? NULL : &c->nodes[n->creator];

		if (parent && n->clone_parent)
			parent = parent->creator < 0 ? NULL : &c->nodes[parent->creator];
		expect = parent ? parent->pid : driver_pid;
		if (getppid() != expect)
			_exit(113);	/* the creator died before PR_SET_PDEATHSIG took hold */
	}
	for (sig = 1; sig < NSIG; sig++)
		signal(sig, SIG_DFL);
	sigfillset(&all);
	sigprocmask(SIG_SETMASK, &all, NULL);
	if (n->new_pidns) {
		/* its own /proc, so that the restored tasks see their own pids there */
		if (mount(NULL, "/", NULL, MS_SLAVE | MS_REC, NULL) ||
		    mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL)) {
			report(self, errno);
			_exit(114);
		}
	}
	if (n->creator < 0) {
		/* inherited from here on by every process of the tree */
		dup2(c->self_pidfd, SVC_FD_BASE);
		dup2(c->in.fd, SVC_FD_BASE + 1);
	}
	/* nothing of the driver's but the pipes of the plan and the service descriptors */
	for (i = 0; i < SVC_FD_BASE; i++)
		if (i != ready_pipe[1] && i != go_pipe[0] && i != leave_pipe[0] && !is_ctty_fd(c, i))
			close(i);
	syscall(SYS_close_range, SVC_FD_BASE + 2, ~0U, 0);
	if (n->kind != NODE_TASK)	/* how ps names them: not a task of the image */
		prctl(PR_SET_NAME, n->kind == NODE_REAPER ? "imgtools-init" : "imgtools-helper");
	spawn_children(c, self, true);
	if (n->do_setsid && setsid() < 0)
		report(self, errno), _exit(115);
	/* its controlling terminal before the children of its session, which inherit it */
	if (n->kind == NODE_TASK && c->procs[c->tasks[n->task].proc].ctty_fd >= 0 &&
	    ioctl(c->procs[c->tasks[n->task].proc].ctty_fd, TIOCSCTTY, 0))
		report(self, errno), _exit(119);
	if (n->do_setpgid && setpgid(0, 0))
		report(self, errno), _exit(116);
	spawn_children(c, self, false);
	for (i = 0; i < c->nr_procs; i++)
		if (c->procs[i].ctty_fd >= 0)
			close(c->procs[i].ctty_fd);
	report(self, 0);
	if (n->kind == NODE_TASK) {
		close(ready_pipe[1]);
		close(go_pipe[0]);
		close(leave_pipe[0]);
		for (;;)
			pause();	/* until seized */
	}
	if (read(go_pipe[0], &go, 1) != 1)
		_exit(117);		/* the driver is gone: so is the tree */
	close(SVC_FD_BASE);
	close(SVC_FD_BASE + 1);
	prctl(PR_SET_PDEATHSIG, 0);
	report(self, 0);		/* from now on it outlives the driver: it may go */
	close(ready_pipe[1]);
	/* one that leaves waits until no other still dies with its parent (PDEATHSIG) */
	close(go_pipe[0]);
	if (n->kind == NODE_HELPER && !n->parent_role && read(leave_pipe[0], &go, 1) != 1)
		_exit(118);
	close(leave_pipe[0]);
	if (n->kind == NODE_REAPER) {
		pid_t watched = c->tasks[0].pid;

		for (i = 0; i < c->nr_nodes; i++)
			if (c->nodes[i].parent_role)
				watched = c->nodes[i].pid;
		reaper_loop(watched);
	}
	if (n->parent_role)
		parent_loop(c->tasks[0].pid);
	_exit(0);
}

/* --no-pidns: every pid must be free; a zombie awaiting its reaper gets a bounded wait */
static int check_pids_free(struct rctx *c)
{
	int i, waited = 0;

	for (i = 0; i < c->nr_tasks; i++) {
		char path[64], *stat;

		for (;;) {
			snprintf(path, sizeof(path), "/proc/%d", c->tasks[i].pid);
			if (access(path, F_OK))
				break;
			stat = proc_read(c->tasks[i].pid, "stat", NULL);
			if (stat && strstr(stat, ") Z ") && waited < PID_FREE_WAIT_MS) {
				free(stat);
				usleep(20000);
				waited += 20;
				continue;
			}
			if (stat) {
				char *l = strchr(stat, '('), *r = strrchr(stat, ')');

				if (l && r > l)
					*r = 0;
				rst_refuse(c, "pid %d is taken by '%s' (use --pidns, the default, to restore "
					   "into a new pid namespace)", c->tasks[i].pid, l ? l + 1 : "?");
				free(stat);
				return -1;
			}
			break;
		}
	}
	return 0;
}

/* ns pid (last NSpid entry) of a host pid */
static pid_t ns_pid(pid_t host)
{
	char *status = proc_read(host, "status", NULL);
	const char *v = status ? status_field(status, "NSpid") : NULL;
	pid_t last = -1;

	while (v && *v && *v != '\n') {
		last = strtol(v, (char **)&v, 10);
		v += strspn(v, " \t");
	}
	free(status);
	return last;
}

/* host pids of the plan: walk the descendants of the driver's child */
static int resolve_hosts(struct rctx *c)
{
	pid_t *queue = calloc(c->nr_nodes + 1, sizeof(pid_t));
	int head = 0, tail = 0, i, found = 0;

	if (!queue)
		return pr_perror("pid list");
	queue[tail++] = c->top;
	while (head < tail) {
		pid_t h = queue[head++], nsp = ns_pid(h);
		char name[64], *kids;
		char *p;

		for (i = 0; i < c->nr_nodes; i++) {
			if (!c->nodes[i].host && c->nodes[i].pid == nsp) {
				c->nodes[i].host = h;
				found++;
				break;
			}
		}
		snprintf(name, sizeof(name), "task/%d/children", h);
		kids = proc_read(h, name, NULL);
		for (p = kids; p && *p; ) {
			long k = strtol(p, &p, 10);

			if (k > 0 && tail < c->nr_nodes + 1)
				queue[tail++] = k;
			p += strspn(p, " \n");
		}
		free(kids);
	}
	free(queue);
	if (found != c->nr_nodes) {
		for (i = 0; i < c->nr_nodes; i++)
			if (!c->nodes[i].host)
				return pr_err("restored pid %d not found among the %d created processes",
					      c->nodes[i].pid, c->nr_nodes);
	}
	return 0;
}

int create_tree(struct rctx *c)
{
	struct plan_node *top = &c->nodes[0];
	int got = 0, i;
	long pid;

	if (!c->pidns && check_pids_free(c))
		return -1;
	if (c->pidns && enter_time_ns(c))	/* timens.c: before the first process exists */
		return -1;
	if (!c->pidns)
		prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);	/* orphans of a failed restore are ours */
	c->self_pidfd = syscall(SYS_pidfd_open, getpid(), 0);
	if (c->self_pidfd < 0)
		return pr_perror("pidfd_open");
	if (pipe2(ready_pipe, O_CLOEXEC) || pipe2(go_pipe, O_CLOEXEC) || pipe2(leave_pipe, O_CLOEXEC))
		return pr_perror("pipe");
	c->go_fd = go_pipe[1];
	driver_pid = getpid();	/* what the first processes see as their parent in --no-pidns */
	fflush(NULL);
	/* the driver creates the first node; in --no-pidns also every node whose parent is gone */
	for (i = 0; i < c->nr_nodes; i++) {
		if (c->nodes[i].creator >= 0)
			continue;
		pid = clone3_pid(&c->nodes[i]);
		if (pid == 0)
			node_main(c, i);
		if (pid < 0) {
			if (errno == EEXIST)
				return rst_refuse(c, "pid %d is taken", c->nodes[i].pid);
			if (errno == EPERM)
				return rst_refuse(c, "creating tasks with their original pids%s needs "
						  "CAP_CHECKPOINT_RESTORE or CAP_SYS_ADMIN, which the caller "
						  "lacks", c->pidns ? " in a new pid namespace" : "");
			return pr_perror("create pid %d", c->nodes[i].pid);
		}
		c->nodes[i].host = pid;
		if (i == 0)
			c->top = pid;
	}
	close(ready_pipe[1]);
	ready_pipe[1] = -1;
	close(go_pipe[0]);
	go_pipe[0] = -1;
	close(leave_pipe[0]);
	leave_pipe[0] = -1;
	while (got < c->nr_nodes) {
		struct pollfd pfd = { .fd = ready_pipe[0], .events = POLLIN };
		int msg[2];
		ssize_t n;

		if (poll(&pfd, 1, READY_TIMEOUT_MS) <= 0)
			return pr_err("the restored processes did not all start (%d of %d)", got,
				      c->nr_nodes);
		n = read(ready_pipe[0], msg, sizeof(msg));
		if (n != sizeof(msg))
			return pr_err("a restored process died while the tree was being created");
		if (msg[0] < 0 || msg[0] >= c->nr_nodes)
			return pr_err("bad report from a restored process");
		if (msg[1] == EEXIST)
			return rst_refuse(c, "pid %d is taken", c->nodes[msg[0]].pid);
		if (msg[1] == EPERM)
			return rst_refuse(c, "pid %d: creating it with its original pid needs "
					  "CAP_CHECKPOINT_RESTORE or CAP_SYS_ADMIN", c->nodes[msg[0]].pid);
		if (msg[1])
			return pr_err("pid %d: %s", c->nodes[msg[0]].pid, strerror(msg[1]));
		got++;
	}
	if (c->pidns) {
		for (i = 1; i < c->nr_nodes; i++)
			c->nodes[i].host = 0;
		top->host = c->top;
		return resolve_hosts(c);
	}
	for (i = 0; i < c->nr_nodes; i++)
		c->nodes[i].host = c->nodes[i].pid;	/* no namespace between them */
	return 0;
}

int seize_tree(struct rctx *c)
{
	int i, status;

	for (i = 0; i < c->nr_nodes; i++) {
		struct plan_node *n = &c->nodes[i];
		struct rtask *t;

		if (n->kind != NODE_TASK)
			continue;
		t = &c->tasks[n->task];
		t->host = n->host;
		if (ptrace(PTRACE_SEIZE, t->host, 0, PTRACE_O_TRACESYSGOOD | PTRACE_O_TRACECLONE |
			   PTRACE_O_EXITKILL))
			return pr_perror("seize restored pid %d (host pid %d)", t->pid, t->host);
		t->seized = true;
		if (ptrace(PTRACE_INTERRUPT, t->host, 0, 0) || rinj_wait(t->host, &status))
			return pr_perror("interrupt restored pid %d", t->pid);
		if (!WIFSTOPPED(status))
			return pr_err("restored pid %d died before its restore", t->pid);
		if (rinj_start(c, t))
			return -1;
	}
	/* process groups, once every group leader exists */
	for (i = 0; i < c->nr_nodes; i++) {
		struct plan_node *n = &c->nodes[i];
		struct rtask *t;
		bool known = false;
		long r;
		int k;

		if (n->kind != NODE_TASK)
			continue;
		t = &c->tasks[n->task];
		if (t->pgid == t->pid || n->do_setsid || !t->pgid)
			continue;
		for (k = 0; k < c->nr_nodes; k++)
			known = known || (c->nodes[k].pid == t->pgid &&
					  (c->nodes[k].kind == NODE_TASK || c->nodes[k].do_setpgid ||
					   c->nodes[k].do_setsid));
		if (!known) {
			if (!c->pidns)
				continue;	/* the caller's group stands for one outside the image */
			return rst_refuse(c, "pid %d: its process group %d has no leader to recreate",
					  t->pid, t->pgid);
		}
		r = rinj_at_insn(c, t, SYS_setpgid, 0, t->pgid, 0, 0);
		if (r == INFECT_FAILED)
			return -1;
		if (r < 0)
			return rst_refuse(c, "pid %d: join process group %d: %s", t->pid, t->pgid,
					  strerror(-r));
	}
	return 0;
}

/*
 * The helpers may go on: each confirms it no longer dies with its parent, and only then
 * may the ones that leave (session and group stand-ins) leave.
 */
void tree_go(struct rctx *c)
{
	int i, helpers = 0, leaving = 0, msg[2];

	for (i = 0; i < c->nr_nodes; i++) {
		if (c->nodes[i].kind == NODE_TASK)
			continue;
		helpers += write(c->go_fd, "g", 1) == 1;
		leaving += c->nodes[i].kind == NODE_HELPER && !c->nodes[i].parent_role;
	}
	for (i = 0; i < helpers; i++) {
		struct pollfd pfd = { .fd = ready_pipe[0], .events = POLLIN };

		if (poll(&pfd, 1, READY_TIMEOUT_MS) <= 0 ||
		    read(ready_pipe[0], msg, sizeof(msg)) != sizeof(msg)) {
			pr_err("a helper of the restored tree did not confirm its release");
			break;
		}
	}
	for (i = 0; i < leaving; i++)
		if (write(leave_pipe[1], "x", 1) != 1)
			pr_perror("release the helpers");
	close(leave_pipe[1]);
	leave_pipe[1] = -1;
	/*
	 * Gone before any task runs or stops: a process group that their exit orphans gets
	 * SIGHUP+SIGCONT if a member is stopped (--stopped, a task stopped in the image).
	 */
	for (i = 0; i < c->nr_nodes; i++) {
		struct plan_node *n = &c->nodes[i];
		int waited;

		if (n->kind != NODE_HELPER || n->parent_role)
			continue;
		for (waited = 0; waited < READY_TIMEOUT_MS; waited++) {
			char *st = proc_read(n->host, "stat", NULL);
			char *r = st ? strrchr(st, ')') : NULL;
			bool gone = !r || r[2] == 'Z' || r[2] == 'X';

			free(st);
			if (gone)
				break;
			usleep(1000);
		}
	}
	close(c->go_fd);
	c->go_fd = -1;
	close(ready_pipe[0]);
	ready_pipe[0] = -1;
}

/* a failed restore: nothing it created stays alive */
void kill_tree(struct rctx *c)
{
	struct timespec until;
	int i, status;

	for (i = 0; i < c->nr_nodes; i++)
		if (c->nodes && c->nodes[i].host > 0 && c->nodes[i].host != getpid())
			kill(c->nodes[i].host, SIGKILL);
	for (i = 0; i < c->nr_tasks; i++)
		if (c->tasks[i].host > 0)
			kill(c->tasks[i].host, SIGKILL);
	if (c->go_fd >= 0)
		close(c->go_fd);
	/* reap what is ours; in a pid namespace its init goes last, after everything in it */
	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_sec += 5;
	for (;;) {
		struct timespec now;
		pid_t r = waitpid(-1, &status, __WALL | WNOHANG);

		if (r < 0 && errno == ECHILD)
			break;
		if (r > 0)
			continue;
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (now.tv_sec > until.tv_sec)
			break;
		usleep(2000);
	}
}
