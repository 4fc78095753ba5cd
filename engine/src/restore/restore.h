/*
 * Internal interfaces of the restore half of imgtools-engine: one section per source file,
 * in the order the files mirror the dump side (restart.c ~ checkpoint.c, tree.c ~ freeze.c
 * and task.c's PIDS/TREE, task.c, mm.c, files.c, signal.c, creds.c, arch/<arch>/).
 *
 * The driver (this process) reads the v23 stream once, in order. Tasks are created by
 * forked copies of the driver (tree.c), seized with ptrace, emptied, and rebuilt by syscalls
 * injected through a small stub mapped into each address space (arch inject.c). State that
 * must come last (credentials, pending signals, itimers, registers) is held per task and
 * applied when the TAIL arrives (restart.c: release).
 */
#ifndef RESTORE_H
#define RESTORE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/user.h>

#include "engine.h"

#define RST_EXIT_REFUSED 3	/* the image cannot be restored faithfully */

/* stream.c: the image, read exactly (no read-ahead: tasks read page data from the same fd) */
struct rstream {
	int fd;
	bool seekable;
	uint64_t off;		/* offset of the next unread byte */
	uint64_t rec_off;	/* offset of the record being handled */
	uint32_t rec_type;
	bool peeked;
	struct ckpt_hdr peek;
	bool invalid;		/* a framing or layout error: the image is invalid (exit 3) */
	bool progress;		/* --progress: a line on stderr every PROGRESS_STEP */
	uint64_t next_report;
};
void rs_progress(struct rstream *s, bool last);
int rs_open(struct rstream *s, const char *path);
int rs_next(struct rstream *s, struct ckpt_hdr *h);		/* 1 at EOF */
int rs_peek(struct rstream *s, struct ckpt_hdr *h);		/* 1 at EOF */
int rs_read(struct rstream *s, void *buf, size_t len);
int rs_skip(struct rstream *s, uint64_t len);
int rs_payload(struct rstream *s, const struct ckpt_hdr *h, void *buf, size_t min, size_t max);
int rs_record(struct rstream *s, const struct ckpt_hdr *h, void *rec, size_t size);
void *rs_payload_alloc(struct rstream *s, const struct ckpt_hdr *h, size_t min, size_t max);
int rs_expect(struct rstream *s, uint32_t type, struct ckpt_hdr *h);
int rs_rewind(struct rstream *s, uint64_t off);
int rs_invalid(struct rstream *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
const char *rec_name(uint32_t type);

/* objects of the image by objref: what the restorer made of them */
struct robj {
	int type;		/* CKPT_OBJ_*, 0 = not defined yet */
	int fd;			/* FILE: the driver's descriptor; INODE: pipe read end / shm fd */
	int fd2;		/* INODE: pipe write end, or FIFO holder */
	bool rd_used, wr_used;	/* INODE of a pipe: the pipe2 ends were given to a FILE */
	void *data;		/* CRED: struct rcred */
	int owner;		/* FILE_TABLE / MM: index of the thread group that restored it */
};

struct rcred {
	uint32_t uid, euid, suid, fsuid, gid, egid, sgid, fsgid;
	uint64_t cap_inh, cap_prm, cap_eff, cap_bnd;
	uint32_t securebits;
	int groupinfo_ref;
	uint32_t ngroups;
	uint32_t *groups;
};

struct rpending {		/* one SIGPENDING record */
	uint32_t nr;
	struct ckpt_siginfo *info;
};

/* a task of the image (TREE order) */
struct rtask {
	pid_t pid, ppid, tgid, pgid, sid;	/* numbers in the image's pid namespace */
	pid_t host;				/* the same task as the driver sees it */
	int proc;				/* index of its thread group */
	bool seized, zombie, exited, have_cpu;
	struct ckpt_hdr_task rec;
	char comm[CKPT_TASK_COMM_LEN];
	uint8_t tls[3 * 8];
	struct ckpt_hdr_cpu cpu;
	void *xstate;
	uint32_t xstate_len;
	int cred_ref;
	uint64_t blocked;
	struct rpending pending;		/* private queue */
	int stop_signal;			/* a stop signal that arrived during the restore */
	struct ckpt_hdr_ext_rseq rseq;		/* EXT_RSEQ: registered at the release (rseq 0: none) */
	struct user_regs_struct tmpl;		/* segment registers of the fresh task */
};

struct rvma {
	uint64_t start, end, vm_flags;
	int prot;			/* final protection */
	bool added_write;		/* mapped with PROT_WRITE for the pages: mprotect at the end */
	bool skip;			/* vvar / vdso: not mapped from the image */
};

/* a thread group, or a helper process of the tree plan */
struct rproc {
	int leader;			/* task index, -1 for helpers */
	uint64_t stub;			/* address of the injection stub in its mm, 0 = none yet */
	int svc_in, svc_pidfd;		/* service descriptors in the task */
	bool prepared, mm_done, have_mm;
	bool populate;			/* MADV_POPULATE_WRITE before reading pages */
	int files_ref, mm_ref, fs_ref, sighand_ref, signal_ref;
	struct ckpt_hdr_mm mm;
	uint64_t auxv[CKPT_AT_VECTOR_SIZE];
	struct rvma *vmas;
	int nr_vmas, cap_vmas;
	int map_cache_ref, map_cache_fd;	/* file descriptor of the last mapped file, in the task */
	uint64_t vdso, vvar_start;		/* from the image's VMAs */
	uint64_t vdso_len, vvar_len;
	bool have_signal;
	struct ckpt_hdr_signal signal;
	struct rpending shared;
	bool xcomp_amx;				/* ARCH_REQ_XCOMP_PERM needed */
	struct ckpt_sigaction action[CKPT_ARCH_NSIG];	/* SIGHAND, for the restart rules */
	bool stopped;				/* TASK state T: released stopped */
	int ctty_ref;				/* SIGNAL.tty_objref: its controlling terminal */
	int ctty_fd;				/* the driver's slave, taken at its birth, or -1 */
};

struct plan_node;

struct rctx {
	struct rstream in;
	bool dry;			/* the metadata pass of a seekable image: check, create nothing */
	bool pidns, detach, stopped, shell_job;
	bool allow_changed_files;	/* reopen files whose size or mtime changed (EXT_FILE_STAT) */
	bool tcp_close;			/* --tcp-close: a TCP connection whose peer is gone, closed */
	bool refused;			/* failure is the image's (exit 3), not ours */
	bool ext;			/* HEADER.uflags IMGTOOLS_UFLAG_EXT: extension records allowed */
	bool have_clocks;		/* EXT_CLOCKS: the dump's clocks, for the time namespace */
	struct ckpt_hdr_ext_clocks clocks;
	char uts_release[CKPT_NEW_UTS_LEN + 1], uts_version[CKPT_NEW_UTS_LEN + 1];
	bool same_kernel;
	unsigned int xstate_size;
	bool has_xsave;
	struct rtask *tasks;
	int nr_tasks;
	struct rproc *procs;
	int nr_procs;
	struct plan_node *nodes;
	int nr_nodes;
	int cur;			/* task whose records are being read */
	struct robj *objs;
	int nr_objs;
	int nr_pending;			/* OBJREFs whose object is not defined yet (they nest) */
	struct { int type, ref; } pending[8];
	bool after_signal;		/* the next SIGPENDING is the shared queue */
	int self_pidfd;			/* pidfd of the driver, inherited by every task */
	pid_t top;			/* the driver's child: the namespace's init, or the root */
	int go_fd;			/* write end: helpers may go on */
	uint64_t vdso_running, vvar_running;	/* sizes of this kernel's [vdso] and [vvar]* */
	uint8_t *vdso_image;		/* the image's vdso pages, if it has them */
	uint64_t vdso_image_len;
	struct ripc *ipc;		/* ipc.c: SysV IPC namespaces and segments of the image */
};

/* restart.c */
int restore_main(int argc, char **argv);
bool rst_stop_requested(void);
int rst_refuse(struct rctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int restore_objref(struct rctx *c, const struct ckpt_hdr *h);
struct robj *obj_get(struct rctx *c, int ref, int type);
struct robj *obj_define(struct rctx *c, int type);
struct robj *obj_implicit(struct rctx *c, int ref, int type, bool *first);
struct rtask *cur_task(struct rctx *c);
struct rproc *cur_proc(struct rctx *c);

/* tree.c */
int plan_tree(struct rctx *c);
int create_tree(struct rctx *c);
int seize_tree(struct rctx *c);
void tree_go(struct rctx *c);
void kill_tree(struct rctx *c);

/* task.c */
int restore_task(struct rctx *c, const struct ckpt_hdr *h);
int restore_thread_rec(struct rctx *c, const struct ckpt_hdr *h);
int restore_restart_block(struct rctx *c, const struct ckpt_hdr *h);
int restore_task_objs(struct rctx *c, const struct ckpt_hdr *h);
int prepare_proc(struct rctx *c, struct rproc *p);

/* mm.c */
int restore_mm(struct rctx *c, const struct ckpt_hdr *h);
int restore_vma(struct rctx *c, const struct ckpt_hdr *h);
int restore_pgarr(struct rctx *c, const struct ckpt_hdr *h);
int restore_mm_context(struct rctx *c, const struct ckpt_hdr *h);
int probe_running_vdso(struct rctx *c);

/* files.c */
int restore_file_table(struct rctx *c, const struct ckpt_hdr *h);
int restore_file(struct rctx *c, const struct ckpt_hdr *h);
int restore_file_desc(struct rctx *c, const struct ckpt_hdr *h);
int restore_fs(struct rctx *c, const struct ckpt_hdr *h);
int task_install_fd(struct rctx *c, struct rproc *p, int drv_fd, int fd, bool cloexec);
int task_take_fd(struct rctx *c, struct rproc *p, int drv_fd);
char *read_path(struct rctx *c);

/* files_ext.c: deleted files and memfds (extension object records), EXT_FILE_STAT */
int restore_ext_file(struct rctx *c, const struct ckpt_hdr *h);
int restore_file_stat(struct rctx *c, const char *path);

/* net.c: sockets, the common part and the family dispatch (net_unix.c, net_inet.c) */
struct rsock {			/* robj.data of a CKPT_OBJ_SOCK */
	struct ckpt_hdr_socket h;	/* its SOCKET record */
	bool made;			/* created (the other end of a pair is made with it) */
	int pair_ref;			/* made by socketpair() with this socket, 0 if not */
	void *fam;			/* the family's state */
};
int restore_socket(struct rctx *c, const struct ckpt_hdr *h);
int restore_socket_queue(struct rctx *c, const struct ckpt_hdr *h);
int restore_socket_file(struct rctx *c, struct robj *o, const struct ckpt_hdr_file_socket *f);
int restore_sock_options(struct rctx *c, int fd, const struct ckpt_hdr_socket *h);
int rs_family_record(struct rctx *c, uint32_t type, struct ckpt_hdr *h);
int restore_unix_socket(struct rctx *c, struct robj *o, struct rsock *s);
int restore_unix_queue(struct rctx *c, struct robj *o, struct rsock *s,
		       const struct ckpt_hdr_socket_queue *q, bool recv);
int restore_unix_finish(struct rctx *c, struct robj *o, struct rsock *s);

/* tty.c */
int caller_tty(void);
int open_outside_tty(struct rctx *c, struct robj *o, const char *path);
int restore_tty_rec(struct rctx *c, const struct ckpt_hdr *h);
int restore_tty_file(struct rctx *c, struct robj *o, const struct ckpt_hdr_file_tty *f);
int restore_ctty(struct rctx *c, struct rproc *p);
int tty_prepare(struct rctx *c);
int release_ctty(struct rctx *c, struct rproc *p);
void release_shell_job(struct rctx *c);
void tty_close_all(void);
/* eventpoll.c: eventfd, epoll and its items, signalfd, timerfd */
int restore_evfd_file(struct rctx *c, struct robj *o, const struct ckpt_hdr_file *f, size_t len);
int restore_evfd_ext_file(struct rctx *c, const struct ckpt_hdr *h);
int restore_epoll_items(struct rctx *c, const struct ckpt_hdr *h);

/* rseq.c: EXT_RSEQ, re-registered in each thread at the release */
int restore_rseq_rec(struct rctx *c, const struct ckpt_hdr *h);
int release_rseq(struct rctx *c, struct rtask *t);

/* timens.c: EXT_CLOCKS; a time namespace in which the dump's clocks go on */
int restore_clocks_rec(struct rctx *c, const struct ckpt_hdr *h);
int enter_time_ns(struct rctx *c);

/* net_inet.c: AF_INET / AF_INET6 sockets */
int restore_inet_socket(struct rctx *c, struct robj *o, struct rsock *s);
int restore_inet_queue(struct rctx *c, struct robj *o, struct rsock *s,
		       const struct ckpt_hdr_socket_queue *q, bool recv);
int restore_inet_finish(struct rctx *c, struct robj *o, struct rsock *s);
int inet_restore_end(struct rctx *c);

/* signal.c */
int restore_sighand(struct rctx *c, const struct ckpt_hdr *h);
int restore_signal(struct rctx *c, const struct ckpt_hdr *h);
int restore_sigpending(struct rctx *c, const struct ckpt_hdr *h);
int restore_signal_task(struct rctx *c, const struct ckpt_hdr *h);
int release_drain_signals(struct rctx *c, struct rtask *t);
int release_rlimits(struct rctx *c, struct rproc *p);
int release_queue_signals(struct rctx *c, struct rtask *t, bool shared);
int release_itimers(struct rctx *c, struct rproc *p);
bool signal_will_interrupt(struct rctx *c, struct rtask *t, bool *restart);

/* creds.c */
int restore_cred_obj(struct rctx *c, const struct ckpt_hdr *h);
int restore_task_creds(struct rctx *c, const struct ckpt_hdr *h);
int release_creds(struct rctx *c, struct rtask *t);

/* ns.c */
int restore_ns_rec(struct rctx *c, const struct ckpt_hdr *h);

/* ipc.c */
int ipc_ns_begin(struct rctx *c, int ref, const struct ckpt_hdr_ipcns *lim);
int ipc_ns_link(struct rctx *c, int ns_ref, int ipc_ref);
int restore_ipc_section(struct rctx *c, const struct ckpt_hdr *h);
int ipc_task_join(struct rctx *c, int ns_ref);
int restore_ipc_vma(struct rctx *c, struct rproc *p, const struct ckpt_hdr_vma *v, struct rvma *rv);
int restore_sem_undo(struct rctx *c, const struct ckpt_hdr *h);
int ipc_task_undo(struct rctx *c, struct rtask *t, int ref);
int ipc_release(struct rctx *c);
void ipc_cleanup(struct rctx *c);
void ipc_reset(struct rctx *c);

/* arch/<arch>/inject.c: syscalls run inside a seized task */
#define RST_STUB_SIZE	(4 * 4096UL)
#define RST_SCRATCH	64	/* data area of the stub starts here */
#define RST_SCRATCH_SIZE (RST_STUB_SIZE - RST_SCRATCH)
long rinj_syscall(struct rctx *c, struct rtask *t, long nr, long a0, long a1, long a2, long a3,
		  long a4, long a5);
long rinj_at_insn(struct rctx *c, struct rtask *t, long nr, long a0, long a1, long a2, long a3);
int rinj_exit(struct rctx *c, struct rtask *t, long nr, long a0, long a1);
int rinj_start(struct rctx *c, struct rtask *t);
uint64_t rinj_put(struct rctx *c, struct rproc *p, size_t off, const void *data, size_t len);
int rinj_write(struct rtask *t, uint64_t addr, const void *buf, size_t len);
int rinj_make_stub(struct rctx *c, struct rproc *p, uint64_t addr);
int rinj_move_stub(struct rctx *c, struct rproc *p, uint64_t avoid_start, uint64_t avoid_end);
pid_t rinj_last_clone(void);
int rinj_wait(pid_t tid, int *status);

/* arch/<arch>/regs.c */
int rarch_check_header(struct rctx *c, const struct ckpt_hdr_header_arch *h);
int rarch_restore_thread(struct rctx *c, struct rtask *t, const void *payload, size_t len);
int rarch_restore_cpu(struct rctx *c, struct rtask *t, const struct ckpt_hdr *h);
int rarch_restore_fpu(struct rctx *c, struct rtask *t, const struct ckpt_hdr *h);
int rarch_release(struct rctx *c, struct rtask *t);
int rarch_prepare_xstate(struct rctx *c, struct rtask *t);
uint64_t rarch_xfeatures(void);

#endif /* RESTORE_H */
