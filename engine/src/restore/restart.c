/*
 * Restore: the image as a whole. Head, pids and tree, a metadata pass over a seekable image,
 * the task tree, then every task's records in stream order, and the release at the TAIL.
 * The mirror of checkpoint.c.
 *
 * Order (engine/README.md, "Restore"): nothing is created before the head, the tree and, on
 * a seekable image, every record has been checked; on a pipe the checks run as the records
 * arrive and a refusal kills what was created. Everything that must come last for a task
 * (credentials, pending signals, itimers, registers, the signal mask) is held until the
 * TAIL; then all tasks are released together.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "restore.h"

static const char usage[] =
	"usage: imgtools-engine restore [IMG|-] [--pidns|--no-pidns] [--detach] [--stopped]\n"
	"                               [--shell-job] [--tcp-close] [--progress] [--allow-changed-files]\n"
	"Restart the process tree of a linux-cr v23 x86_64 image (stdin by default). Exit: the\n"
	"root's status, or with --detach 0 and the root's pid on the last line of stdout;\n"
	"1 internal error, 2 usage, 3 the image is refused (the reason on stderr).\n";

static volatile sig_atomic_t rst_interrupted;

static void on_signal(int sig)
{
	rst_interrupted = sig;
}

/* a blocking wait (a task reading a pipe, the stream) gives up on SIGINT/SIGTERM/SIGHUP */
bool rst_stop_requested(void)
{
	return rst_interrupted != 0;
}

int rst_refuse(struct rctx *c, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	c->refused = true;
	return pr_err("cannot restore: %s (record %s at offset %llu)", msg,
		      rec_name(c->in.rec_type), (unsigned long long)c->in.rec_off);
}

static struct robj *obj_slot(struct rctx *c, int ref)
{
	if (ref <= 0 || ref > (1 << 24)) {
		rs_invalid(&c->in, "objref %d at offset %llu is out of range", ref, (unsigned long long)c->in.rec_off);
		return NULL;
	}
	if (ref >= c->nr_objs) {
		int n = ref + 64;
		struct robj *no = realloc(c->objs, n * sizeof(*no));

		if (!no) {
			pr_perror("object table");
			return NULL;
		}
		memset(no + c->nr_objs, 0, (n - c->nr_objs) * sizeof(*no));
		c->objs = no;
		c->nr_objs = n;
	}
	return &c->objs[ref];
}

/* the object an OBJREF introduced (the innermost pending one of that type) */
struct robj *obj_define(struct rctx *c, int type)
{
	struct robj *o;
	int i, ref;

	for (i = c->nr_pending - 1; i >= 0 && c->pending[i].type != type; i--)
		;
	if (i < 0) {
		rs_invalid(&c->in, "%s at offset %llu is not introduced by an OBJREF of its type",
		       rec_name(c->in.rec_type), (unsigned long long)c->in.rec_off);
		return NULL;
	}
	ref = c->pending[i].ref;
	memmove(&c->pending[i], &c->pending[i + 1], (c->nr_pending - i - 1) * sizeof(c->pending[0]));
	c->nr_pending--;
	o = obj_slot(c, ref);
	if (!o)
		return NULL;
	if (o->type) {
		rs_invalid(&c->in, "objref %d defined twice (offset %llu)", ref, (unsigned long long)c->in.rec_off);
		return NULL;
	}
	*o = (struct robj){ .type = type, .fd = -1, .fd2 = -1, .owner = -1 };
	return o;
}

/* an object the image defines by its first use, without an OBJREF (inodes) */
struct robj *obj_implicit(struct rctx *c, int ref, int type, bool *first)
{
	struct robj *o = obj_slot(c, ref);

	if (!o)
		return NULL;
	*first = !o->type;
	if (*first)
		*o = (struct robj){ .type = type, .fd = -1, .fd2 = -1, .owner = -1 };
	else if (o->type != type) {
		rs_invalid(&c->in, "objref %d at offset %llu is of type %d, expected %d", ref,
		       (unsigned long long)c->in.rec_off, o->type, type);
		return NULL;
	}
	return o;
}

struct robj *obj_get(struct rctx *c, int ref, int type)
{
	if (ref <= 0 || ref >= c->nr_objs || c->objs[ref].type != type) {
		rs_invalid(&c->in, "record %s at offset %llu: objref %d is not a defined object of type %d",
		       rec_name(c->in.rec_type), (unsigned long long)c->in.rec_off, ref, type);
		return NULL;
	}
	return &c->objs[ref];
}

struct rtask *cur_task(struct rctx *c)
{
	if (c->cur < 0 || c->cur >= c->nr_tasks) {
		rs_invalid(&c->in, "%s at offset %llu comes before any TASK", rec_name(c->in.rec_type),
		       (unsigned long long)c->in.rec_off);
		return NULL;
	}
	return &c->tasks[c->cur];
}

struct rproc *cur_proc(struct rctx *c)
{
	struct rtask *t = cur_task(c);

	return t ? &c->procs[t->proc] : NULL;
}

static int read_uts_buffer(struct rctx *c, char *out)
{
	struct ckpt_hdr h;
	char buf[CKPT_NEW_UTS_LEN + 1];

	if (rs_expect(&c->in, CKPT_HDR_BUFFER, &h) || rs_payload(&c->in, &h, buf, 1, sizeof(buf)))
		return -1;
	buf[CKPT_NEW_UTS_LEN] = 0;
	memcpy(out, buf, sizeof(buf));
	return 0;
}

/* HEADER, uts BUFFERs, HEADER_ARCH, CONTAINER */
static int restore_head(struct rctx *c)
{
	struct ckpt_hdr_header hh;
	struct ckpt_hdr_header_arch ha;
	struct ckpt_hdr h;
	char machine[CKPT_NEW_UTS_LEN + 1];
	struct utsname u;

	if (rs_expect(&c->in, CKPT_HDR_HEADER, &h) ||
	    rs_record(&c->in, &h, &hh, sizeof(hh)))
		return -1;
	if (hh.magic != CHECKPOINT_MAGIC_HEAD)
		return rst_refuse(c, "not a checkpoint image (magic %#llx)", (unsigned long long)hh.magic);
	if (hh.arch_id != CKPT_ARCH_X86_64)
		return rst_refuse(c, "the image is of architecture %u; this engine restores x86_64 (2)",
				  hh.arch_id);
	if (hh.rev != CHECKPOINT_VERSION || hh.constants.task_comm_len != CKPT_TASK_COMM_LEN ||
	    hh.constants.signal_nsig != CKPT_ARCH_NSIG ||
	    hh.constants.rlimit_nlimits != CKPT_RLIM_NLIMITS)
		return rst_refuse(c, "not a v23 image (rev %u): convert it first (imgtools restore "
				  "does this on the way)", hh.rev);
	if (read_uts_buffer(c, c->uts_release) || read_uts_buffer(c, c->uts_version) ||
	    read_uts_buffer(c, machine))
		return -1;
	if (rs_expect(&c->in, CKPT_HDR_HEADER_ARCH, &h) ||
	    rs_record(&c->in, &h, &ha, sizeof(ha)) ||
	    rarch_check_header(c, &ha))
		return -1;
	c->ext = hh.uflags & IMGTOOLS_UFLAG_EXT;
	if (!rs_peek(&c->in, &h) && h.type == CKPT_HDR_EXT_CLOCKS &&
	    (rs_next(&c->in, &h) || restore_clocks_rec(c, &h)))	/* timens.c */
		return -1;
	if (rs_expect(&c->in, CKPT_HDR_CONTAINER, &h) || rs_skip(&c->in, h.len - sizeof(h)))
		return -1;
	if (uname(&u))
		return pr_perror("uname");
	c->same_kernel = !strcmp(u.release, c->uts_release) && !strcmp(u.version, c->uts_version);
	return 0;
}

/* PIDS + BUFFER (pid objects 1..n), TREE + BUFFER (one entry per task) */
static int restore_pids(struct rctx *c)
{
	struct ckpt_hdr_pids hp;
	struct ckpt_hdr_tree ht;
	struct ckpt_hdr h;
	int32_t *numbers = NULL;
	struct ckpt_task_pids *tp = NULL;
	uint8_t *raw = NULL;
	size_t len, pos;
	uint32_t i;
	int ret = -1;

	if (rs_expect(&c->in, CKPT_HDR_PIDS, &h) ||
	    rs_record(&c->in, &h, &hp, sizeof(hp)) ||
	    rs_expect(&c->in, CKPT_HDR_BUFFER, &h))
		return -1;
	if (hp.nr_pids > (1 << 22) || hp.offset != 1)
		return rst_refuse(c, "PIDS: %u pids from objref %u", hp.nr_pids, hp.offset);
	raw = rs_payload_alloc(&c->in, &h, 0, (size_t)hp.nr_pids * 64 + 64);
	numbers = calloc(hp.nr_pids + 1, sizeof(*numbers));
	if (!raw || !numbers)
		goto out;
	len = h.len - sizeof(h);
	for (i = 0, pos = 0; i < hp.nr_pids; i++) {
		uint32_t depth;

		if (pos + 8 > len) {
			rs_invalid(&c->in, "PIDS BUFFER: %u entries announced, %u present", hp.nr_pids, i);
			goto out;
		}
		memcpy(&depth, raw + pos, 4);
		if (depth != 0) {
			rst_refuse(c, "pid %u of the image lives in a nested pid namespace", i + 1);
			goto out;
		}
		memcpy(&numbers[i + 1], raw + pos + 4, 4);
		pos += 8 + 4 * depth;
	}
	if (rs_expect(&c->in, CKPT_HDR_TREE, &h) ||
	    rs_record(&c->in, &h, &ht, sizeof(ht)) ||
	    rs_expect(&c->in, CKPT_HDR_BUFFER, &h))
		goto out;
	if (!ht.nr_tasks || ht.nr_tasks > (1 << 20) ||
	    h.len - sizeof(h) != ht.nr_tasks * sizeof(*tp)) {
		rs_invalid(&c->in, "TREE of %u tasks with a BUFFER of %zu bytes", ht.nr_tasks, h.len - sizeof(h));
		goto out;
	}
	tp = rs_payload_alloc(&c->in, &h, h.len - sizeof(h), h.len - sizeof(h));
	c->tasks = calloc(ht.nr_tasks, sizeof(*c->tasks));
	if (!tp || !c->tasks)
		goto out;
	c->nr_tasks = ht.nr_tasks;
	for (i = 0; i < ht.nr_tasks; i++) {
		struct rtask *t = &c->tasks[i];
		int32_t ref[5] = { tp[i].vpid, tp[i].vppid, tp[i].vtgid, tp[i].vpgid, tp[i].vsid };
		pid_t *dst[5] = { &t->pid, &t->ppid, &t->tgid, &t->pgid, &t->sid };
		int k;

		for (k = 0; k < 5; k++) {
			if (ref[k] < 0 || (uint32_t)ref[k] > hp.nr_pids) {
				rs_invalid(&c->in, "TREE entry %u refers to pid object %d of %u", i, ref[k], hp.nr_pids);
				goto out;
			}
			*dst[k] = ref[k] ? numbers[ref[k]] : 0;
		}
		if (t->pid <= 0 || tp[i].depth) {
			rst_refuse(c, "TREE entry %u: pid %d at depth %u", i, t->pid, tp[i].depth);
			goto out;
		}
		t->cred_ref = -1;
	}
	/* every pid object is defined */
	for (i = 1; i <= hp.nr_pids; i++) {
		bool first;

		if (!obj_implicit(c, i, CKPT_OBJ_PID, &first))
			goto out;
	}
	ret = 0;
out:
	free(raw);
	free(numbers);
	free(tp);
	return ret;
}

int restore_objref(struct rctx *c, const struct ckpt_hdr *h)
{
	struct ckpt_hdr_objref o;

	if (rs_record(&c->in, h, &o, sizeof(o)))
		return -1;
	if (o.objref <= 0 || o.objref > (1 << 24) || o.objtype >= CKPT_OBJ_MAX)
		return rs_invalid(&c->in, "OBJREF at offset %llu: objref %d of type %u", (unsigned long long)c->in.rec_off,
			      o.objref, o.objtype);
	if (c->nr_pending == (int)(sizeof(c->pending) / sizeof(c->pending[0])))
		return rs_invalid(&c->in, "OBJREF at offset %llu: objects nested too deeply",
			      (unsigned long long)c->in.rec_off);
	c->pending[c->nr_pending].type = o.objtype;
	c->pending[c->nr_pending++].ref = o.objref;
	return 0;
}

/* ERROR [STRING]: the dump's own word on what it could not save (after a NUL) */
static int restore_error_rec(struct rctx *c, const struct ckpt_hdr *h)
{
	struct ckpt_hdr s;
	char *msg = NULL, *text = "";
	size_t i, len = 0;

	if (rs_skip(&c->in, h->len - sizeof(*h)))
		return -1;
	if (!rs_peek(&c->in, &s) && s.type == CKPT_HDR_STRING && !rs_next(&c->in, &s)) {
		msg = rs_payload_alloc(&c->in, &s, 0, 1 << 16);
		len = s.len - sizeof(s);
		if (!msg)
			return -1;
		text = len && !msg[0] ? msg + 1 : msg;
		for (i = 0; text[i]; i++)	/* the image's text, not terminal control */
			if ((unsigned char)text[i] < 0x20 || text[i] == 0x7f)
				text[i] = '?';
	}
	rst_refuse(c, "the dump could not save everything: %s", text);
	free(msg);
	return -1;
}

static int restore_tail(struct rctx *c, const struct ckpt_hdr *h)
{
	struct ckpt_hdr_tail t;

	if (rs_record(&c->in, h, &t, sizeof(t)))
		return -1;
	if (t.magic != CHECKPOINT_MAGIC_TAIL)
		return rs_invalid(&c->in, "TAIL at offset %llu: bad magic", (unsigned long long)c->in.rec_off);
	if (c->cur != c->nr_tasks - 1)
		return rs_invalid(&c->in, "TAIL after %d of %d tasks", c->cur + 1, c->nr_tasks);
	return inet_restore_end(c);
}

/* Every record after the tree, up to and including the TAIL. */
static int restore_records(struct rctx *c)
{
	struct ckpt_hdr h;
	int r;

	for (;;) {
		if (rst_interrupted)
			return pr_err("rst_interrupted by signal %d", (int)rst_interrupted);
		r = rs_next(&c->in, &h);
		if (r > 0)
			return rs_invalid(&c->in, "the image ends at offset %llu without a TAIL",
				      (unsigned long long)c->in.off);
		if (r)
			return -1;
		if (h.type >= CKPT_HDR_EXT_FIRST && h.type <= CKPT_HDR_EXT_LAST && !c->ext)
			return rs_invalid(&c->in, "%s (type %u) at offset %llu in an image whose "
					  "header does not allow extension records", rec_name(h.type),
					  h.type, (unsigned long long)c->in.rec_off);
		switch (h.type) {
		case CKPT_HDR_OBJREF: r = restore_objref(c, &h); break;
		case CKPT_HDR_TASK: r = restore_task(c, &h); break;
		case CKPT_HDR_THREAD: r = restore_thread_rec(c, &h); break;
		case CKPT_HDR_RESTART_BLOCK: r = restore_restart_block(c, &h); break;
		case CKPT_HDR_CPU: r = cur_task(c) ? rarch_restore_cpu(c, cur_task(c), &h) : -1; break;
		case CKPT_HDR_CPU_FPU: r = cur_task(c) ? rarch_restore_fpu(c, cur_task(c), &h) : -1; break;
		case CKPT_HDR_GROUPINFO:
		case CKPT_HDR_USER:
		case CKPT_HDR_USER_NS:
		case CKPT_HDR_CRED: r = restore_cred_obj(c, &h); break;
		case CKPT_HDR_TASK_CREDS: r = restore_task_creds(c, &h); break;
		case CKPT_HDR_NS:
		case CKPT_HDR_UTS_NS:
		case CKPT_HDR_IPC_NS:
		case CKPT_HDR_IPC:
		case CKPT_HDR_TASK_NS: r = restore_ns_rec(c, &h); break;
		case CKPT_HDR_TASK_SEM_UNDO_LIST: r = restore_sem_undo(c, &h); break;
		case CKPT_HDR_FILE_TABLE: r = restore_file_table(c, &h); break;
		case CKPT_HDR_FILE: r = restore_file(c, &h); break;
		case CKPT_HDR_FILE_DESC: r = restore_file_desc(c, &h); break;
		case CKPT_HDR_EXT_FILE_GHOST:
		case CKPT_HDR_EXT_FILE_MEMFD: r = restore_ext_file(c, &h); break;
		case CKPT_HDR_TTY: r = restore_tty_rec(c, &h); break;
		case CKPT_HDR_MM: r = restore_mm(c, &h); break;
		case CKPT_HDR_VMA: r = restore_vma(c, &h); break;
		case CKPT_HDR_PGARR: r = restore_pgarr(c, &h); break;
		case CKPT_HDR_MM_CONTEXT: r = restore_mm_context(c, &h); break;
		case CKPT_HDR_FS: r = restore_fs(c, &h); break;
		case CKPT_HDR_SIGHAND: r = restore_sighand(c, &h); break;
		case CKPT_HDR_TASK_OBJS: r = restore_task_objs(c, &h); break;
		case CKPT_HDR_SIGNAL: r = restore_signal(c, &h); break;
		case CKPT_HDR_SIGPENDING: r = restore_sigpending(c, &h); break;
		case CKPT_HDR_SIGNAL_TASK: r = restore_signal_task(c, &h); break;
		case CKPT_HDR_SOCKET: r = restore_socket(c, &h); break;
		case CKPT_HDR_SOCKET_QUEUE: r = restore_socket_queue(c, &h); break;
		case CKPT_HDR_EPOLL_ITEMS: r = restore_epoll_items(c, &h); break;
		case CKPT_HDR_EXT_FILE_SIGNALFD:
		case CKPT_HDR_EXT_FILE_TIMERFD:
		case CKPT_HDR_EXT_FILE_INOTIFY: r = restore_evfd_ext_file(c, &h); break;
		case CKPT_HDR_EXT_RSEQ: r = restore_rseq_rec(c, &h); break;
		case CKPT_HDR_ERROR: return restore_error_rec(c, &h);
		case CKPT_HDR_TAIL: return restore_tail(c, &h);
		default:
			return rst_refuse(c, "%s records (type %u) are not restored", rec_name(h.type),
					  h.type);
		}
		if (r)
			return -1;
	}
}

/* a task's process: everything but the registers, in the order that keeps each step possible */
static int release_proc(struct rctx *c, struct rproc *p)
{
	struct rtask *leader = &c->tasks[p->leader];
	int i;

	if (leader->zombie)
		return 0;
	for (i = p->leader; i < c->nr_tasks && c->tasks[i].tgid == leader->tgid; i++)
		if (release_drain_signals(c, &c->tasks[i]))
			return -1;
	if (release_rlimits(c, p))
		return -1;
	for (i = p->leader; i < c->nr_tasks && c->tasks[i].tgid == leader->tgid; i++)
		if (release_creds(c, &c->tasks[i]))
			return -1;
	if (release_queue_signals(c, leader, true))
		return -1;
	for (i = p->leader; i < c->nr_tasks && c->tasks[i].tgid == leader->tgid; i++)
		if (release_queue_signals(c, &c->tasks[i], false) || rarch_prepare_xstate(c, &c->tasks[i]) ||
		    release_rseq(c, &c->tasks[i]))
			return -1;
	if (release_itimers(c, p) || release_ctty(c, p))
		return -1;
	/* the last injected syscalls: the service descriptors, then the stub itself */
	if (rinj_syscall(c, leader, SYS_close, p->svc_in, 0, 0, 0, 0, 0) == INFECT_FAILED ||
	    rinj_syscall(c, leader, SYS_close, p->svc_pidfd, 0, 0, 0, 0, 0) == INFECT_FAILED ||
	    rinj_syscall(c, leader, SYS_munmap, p->stub, RST_STUB_SIZE, 0, 0, 0, 0) != 0)
		return pr_err("pid %d: remove the restore stub", leader->pid);
	for (i = p->leader; i < c->nr_tasks && c->tasks[i].tgid == leader->tgid; i++)
		if (rarch_release(c, &c->tasks[i]))
			return -1;
	return 0;
}

static int release(struct rctx *c)
{
	int i;

	for (i = 0; i < c->nr_procs; i++)
		if (c->procs[i].leader >= 0 && release_proc(c, &c->procs[i]))
			return -1;
	release_shell_job(c);
	if (ipc_release(c))
		return -1;
	tree_go(c);
	/* all at once: from here on the tree runs */
	for (i = 0; i < c->nr_tasks; i++) {
		struct rtask *t = &c->tasks[i];
		int sig = 0;

		if (!t->seized || t->exited)
			continue;
		if (c->stopped || c->procs[t->proc].stopped || t->stop_signal)
			sig = t->stop_signal ? t->stop_signal : SIGSTOP;
		if (ptrace(PTRACE_DETACH, t->host, 0, sig))
			return pr_perror("pid %d: detach", t->pid);
		t->seized = false;
	}
	/* the tree holds its own descriptors now: a pipe's peer outside the image is gone */
	for (i = 0; i < c->nr_objs; i++) {
		struct robj *o = &c->objs[i];

		if (o->fd >= 0 && o->type != CKPT_OBJ_PID)
			close(o->fd);
		if (o->fd2 >= 0 && o->fd2 != o->fd && o->type != CKPT_OBJ_PID)
			close(o->fd2);
		o->fd = o->fd2 = -1;
	}
	tty_close_all();
	return 0;
}

/* wait for the root (or the namespace's init, which passes the root's status on) */
static int wait_root(struct rctx *c)
{
	struct sigaction sa = { .sa_handler = on_signal };
	int status;

	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	for (;;) {
		pid_t r;

		rst_interrupted = 0;
		r = waitpid(c->top, &status, 0);
		if (r == c->top)
			break;
		if (r < 0 && errno == EINTR && rst_interrupted) {
			/* the caller's signal is the restored tree's: pass it to the root */
			kill(c->tasks[0].host, rst_interrupted);
			continue;
		}
		if (r < 0 && errno != EINTR)
			return pr_perror("wait for the restored root");
	}
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return WEXITSTATUS(status);
}

static bool progress;

static int parse_args(struct rctx *c, int argc, char **argv, const char **input)
{
	static const struct option opts[] = {
		{ "input", required_argument, NULL, 'i' },
		{ "pidns", no_argument, NULL, 'n' },
		{ "no-pidns", no_argument, NULL, 'N' },
		{ "detach", no_argument, NULL, 'd' },
		{ "stopped", no_argument, NULL, 's' },
		{ "shell-job", no_argument, NULL, 'j' },
		{ "allow-changed-files", no_argument, NULL, 'C' },
		{ "tcp-close", no_argument, NULL, 'T' },
		{ "progress", no_argument, NULL, 'P' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int opt;

	*input = "-";
	c->pidns = true;
	opterr = 0;
	while ((opt = getopt_long(argc, argv, "i:h", opts, NULL)) != -1) {
		switch (opt) {
		case 'i': *input = optarg; break;
		case 'n': c->pidns = true; break;
		case 'N': c->pidns = false; break;
		case 'd': c->detach = true; break;
		case 's': c->stopped = true; break;
		case 'j': c->shell_job = true; break;
		case 'C': c->allow_changed_files = true; break;
		case 'T': c->tcp_close = true; break;
		case 'P': progress = true; break;
		case 'h': fputs(usage, stdout); exit(EXIT_OK);
		default:
			fprintf(stderr, "imgtools-engine: unknown option or missing argument\n%s", usage);
			return -1;
		}
	}
	if (optind < argc)
		*input = argv[optind++];
	if (optind != argc) {
		fprintf(stderr, "imgtools-engine: expected at most one image\n%s", usage);
		return -1;
	}
	return 0;
}

static void reset_pass(struct rctx *c)
{
	int i;

	for (i = 0; i < c->nr_objs; i++)
		if (c->objs[i].type != CKPT_OBJ_PID)
			c->objs[i].type = 0;
	c->cur = -1;
	c->nr_pending = 0;
	c->after_signal = false;
	ipc_reset(c);
	for (i = 0; i < c->nr_procs; i++) {
		struct rproc *p = &c->procs[i];

		p->nr_vmas = 0;
		p->have_mm = p->mm_done = p->have_signal = false;
		p->files_ref = p->mm_ref = p->fs_ref = p->sighand_ref = p->signal_ref = 0;
	}
}

int restore_main(int argc, char **argv)
{
	struct rctx c = { .cur = -1, .self_pidfd = -1, .go_fd = -1 };
	struct sigaction sa = { .sa_handler = on_signal };
	struct rlimit rl;
	const char *input;
	uint64_t body;
	int ret = EXIT_INTERNAL;

	if (parse_args(&c, argc, argv, &input))
		return EXIT_USAGE;
	if (!strcmp(input, "-") && isatty(STDIN_FILENO)) {
		fprintf(stderr, "imgtools-engine: refusing to read an image from a terminal\n");
		return EXIT_USAGE;
	}
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	if (!getrlimit(RLIMIT_NOFILE, &rl) && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;	/* the driver holds every file of the image open */
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	if (rs_open(&c.in, input))
		goto fail;
	c.in.progress = progress;
	c.in.next_report = 64ULL << 20;
	if (restore_head(&c) || restore_pids(&c) || plan_tree(&c) ||
	    probe_running_vdso(&c))
		goto fail;
	body = c.in.off;
	if (c.in.seekable) {
		/* every refusal that the records can give, before any process exists */
		c.dry = true;
		if (restore_records(&c) || rs_rewind(&c.in, body))
			goto fail;
		c.dry = false;
		reset_pass(&c);
		if (tty_prepare(&c))
			goto fail;
	}
	if (create_tree(&c) || seize_tree(&c) || restore_records(&c) ||
	    release(&c))
		goto fail;
	rs_progress(&c.in, true);
	if (!c.pidns)
		prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0);
	if (c.detach) {
		printf("%d\n", c.tasks[0].host);
		fflush(stdout);
		return EXIT_OK;
	}
	return wait_root(&c);
fail:
	kill_tree(&c);
	ipc_cleanup(&c);
	if (c.refused || c.in.invalid)
		ret = RST_EXIT_REFUSED;
	if (rst_interrupted)
		ret = 128 + rst_interrupted;
	return ret;
}
