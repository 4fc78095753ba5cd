/*
 * State of a task that /proc shows but the v23 image has no field for: each kind found
 * is an ERROR record ("never lose data silently"), written before the task's TASK_OBJS
 * like the other ERRORs of a task. Attributes a restored task would inherit from its
 * restorer (nice, scheduling policy, CPU affinity, personality, timer slack, OOM score
 * adjustment, no_new_privs) are reported only when they differ from the engine's own,
 * since a restore run in the same environment gets those values back anyway.
 * engine/README.md lists what is still neither saved nor reported.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine.h"

/* one /proc/PID file's first line, trimmed; "" if unreadable */
static void first_line(pid_t pid, const char *name, char *buf, size_t size)
{
	char *s = proc_read(pid, name, NULL);

	snprintf(buf, size, "%.*s", s ? (int)strcspn(s, "\n") : 0, s ? s : "");
	free(s);
}

static int differs(struct ctx *c, pid_t pid, const char *name, const char *what)
{
	char mine[128], theirs[128];

	first_line(getpid(), name, mine, sizeof(mine));
	first_line(pid, name, theirs, sizeof(theirs));
	if (!*theirs || !strcmp(mine, theirs))
		return 0;
	return ckpt_unsupported(c, "pid %d: %s %s not saved (the restorer's is %s)", pid, what,
				theirs, mine);
}

/* POSIX timers (timer_create) of the thread group, from /proc/PID/timers */
static int audit_timers(struct ctx *c, pid_t tgid)
{
	char *timers = proc_read(tgid, "timers", NULL), ids[128] = "", *p;
	size_t used = 0;
	int n = 0, ret = 0;

	for (p = timers; p && *p; p += strcspn(p, "\n"), p += *p == '\n') {
		int id;

		if (strncmp(p, "ID: ", 4))
			continue;	/* signal:, notify:, ClockID: lines */
		id = atoi(p + 4);

		if (used < sizeof(ids) - 16)
			used += snprintf(ids + used, sizeof(ids) - used, "%s%d", n ? " " : "", id);
		n++;
	}
	free(timers);
	if (n)
		ret = ckpt_unsupported(c, "pid %d: %d POSIX timer%s not saved (ids %s)", tgid, n,
				       n == 1 ? "" : "s", ids);
	return ret;
}

/* status "Key: value" of a task and of the engine differ (value up to the end of the line) */
static int status_differs(struct ctx *c, pid_t tid, const char *status, const char *mine,
			  const char *key, const char *what)
{
	const char *a = status_field(status, key), *b = status_field(mine, key);
	int la = a ? (int)strcspn(a, "\n") : 0, lb = b ? (int)strcspn(b, "\n") : 0;

	if (!a || (la == lb && !strncmp(a, b, la)))
		return 0;
	return ckpt_unsupported(c, "task %d: %s %.*s not saved (the restorer's is %.*s)", tid, what,
				la, a, lb, b ? b : "");
}

int dump_unsaved_state(struct ctx *c, struct task *t)
{
	static char *mine;	/* the engine's own status and stat, read once */
	static struct proc_stat self;
	char *status = proc_read(t->tid, "status", NULL);
	int ret = -1;

	if (!mine && (!(mine = proc_read(0, "self/status", NULL)) || proc_stat(getpid(), &self))) {
		pr_perror("read /proc/self/status");
		goto out;
	}
	if (!status) {
		pr_perror("read /proc/%d/status", t->tid);
		goto out;
	}
	if (*(status_field(status, "Seccomp") ?: "0") != '0' &&
	    ckpt_unsupported(c, "task %d: seccomp mode %.1s with %.*s filter(s) not saved", t->tid,
			     status_field(status, "Seccomp"),
			     (int)strcspn(status_field(status, "Seccomp_filters") ?: "?", "\n"),
			     status_field(status, "Seccomp_filters") ?: "?"))
		goto out;
	if (strtoull(status_field(status, "CapAmb") ?: "0", NULL, 16) &&
	    ckpt_unsupported(c, "task %d: ambient capabilities %.16s not saved", t->tid,
			     status_field(status, "CapAmb")))
		goto out;
	if (status_differs(c, t->tid, status, mine, "NoNewPrivs", "no_new_privs") ||
	    status_differs(c, t->tid, status, mine, "THP_enabled", "THP_enabled (PR_SET_THP_DISABLE)") ||
	    status_differs(c, t->tid, status, mine, "Cpus_allowed_list", "CPU affinity"))
		goto out;
	if ((t->st.nice != self.nice || t->st.policy != self.policy ||
	     t->st.rt_priority != self.rt_priority) &&
	    ckpt_unsupported(c, "task %d: scheduling (policy %u, rt priority %u, nice %d) not saved "
			     "(the restorer's is policy %u, rt priority %u, nice %d)", t->tid,
			     t->st.policy, t->st.rt_priority, t->st.nice, self.policy, self.rt_priority,
			     self.nice))
		goto out;
	if (!t->proc->audited) {
		/* per process */
		t->proc->audited = true;
		if (audit_timers(c, t->tgid) ||
		    differs(c, t->tgid, "personality", "personality") ||
		    differs(c, t->tgid, "timerslack_ns", "timer slack (ns)") ||
		    differs(c, t->tgid, "oom_score_adj", "oom_score_adj"))
			goto out;
	}
	ret = 0;
out:
	free(status);
	return ret;
}
