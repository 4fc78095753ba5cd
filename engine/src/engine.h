/* Internal interfaces of imgtools-engine: one section per source file. */
#ifndef ENGINE_H
#define ENGINE_H

#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "ckpt_hdr.h"
#include "arch.h"

#define ENGINE_VERSION "0.1.0"

#undef PAGE_SIZE	/* <sys/user.h> has one too */
#define PAGE_SIZE 4096UL

/* exit codes */
#define EXIT_OK		0
#define EXIT_INTERNAL	1
#define EXIT_USAGE	2
#define EXIT_PARTIAL	3

/* proc.c: messages and /proc parsing */
int pr_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int pr_perror(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
const char *last_error(void);
char *proc_read(pid_t pid, const char *name, size_t *len);
int proc_readlink(pid_t pid, const char *name, char *buf, size_t size);
const char *status_field(const char *status, const char *key);
uint64_t status_hex(const char *status, const char *key);

struct proc_stat {
	char state;
	pid_t ppid, pgid, sid;
	int tty_nr;
	pid_t tpgid;
	unsigned int flags;
	uint64_t start_code, end_code, start_stack;
	int exit_signal;
	uint64_t start_data, end_data, start_brk;
	uint64_t arg_start, arg_end, env_start, env_end;
	int exit_code;
	int nice;
	unsigned int rt_priority, policy;
};
int proc_stat(pid_t pid, struct proc_stat *st);
int proc_limits(pid_t pid, struct ckpt_rlimit *rlim, int n);

/* image.c: buffered sequential writer */
struct image {
	int fd;
	char *buf;
	size_t used;
	uint64_t offset;	/* bytes handed to the kernel so far */
	bool progress;
	uint64_t next_report;
};
int image_open(struct image *img, const char *path, bool progress);
int image_close(struct image *img);
int image_write(struct image *img, const void *data, size_t len);
int image_writev(struct image *img, const struct iovec *iov, int iovcnt);
int write_obj(struct image *img, uint32_t type, void *rec, size_t size);
int write_obj_header(struct image *img, uint32_t type, size_t payload_len);
int write_buffer(struct image *img, uint32_t type, const void *data, size_t len);
int write_objref(struct image *img, uint32_t objtype, int objref);
int write_error(struct image *img, const char *msg);

/* objhash.c: objref numbering; a key is the object type plus two words */
struct objhash;
struct objhash *objhash_new(void);
void objhash_free(struct objhash *h);
int obj_lookup_add(struct objhash *h, int type, uint64_t k1, uint64_t k2, bool *first);
uint64_t hash_bytes(const void *data, size_t len, uint64_t seed);

/* kernel objects a task may share with other tasks, compared with kcmp(2) */
enum share_kind { SHARE_FILES, SHARE_VM, SHARE_FS, SHARE_SIGHAND, NR_SHARE };

/* per thread group state read while frozen (mostly by running syscalls in the task) */
struct process {
	pid_t tgid;
	bool probed;		/* false: probe_error says why the fields below are missing */
	char probe_error[200];
	struct ckpt_sigaction action[CKPT_ARCH_NSIG];
	struct itimerval_ns { uint64_t value, interval; } itimer[3];
	uint64_t brk;
	uint64_t dumpable;
	bool audited;		/* its unsaved per-process state was reported */
};

struct task {
	pid_t tid, tgid;
	char comm[CKPT_TASK_COMM_LEN];
	bool seized;		/* zombies cannot be seized */
	struct proc_stat st;	/* read before the seize: state, ppid, pgid, sid, mm bounds */
	struct process *proc;
	int share[NR_SHARE];	/* index of the first task sharing that object */
	/* read while frozen */
	struct arch_task arch;
	uint64_t blocked;
	uint64_t sas_ss_sp, sas_ss_size;
	uint64_t clear_child_tid;
	uint64_t pdeath_signal;
	uint64_t securebits;
	uint64_t robust_list, robust_len;
	struct undo_list *undo;	/* its SysV semaphore undo list, probed (ipc.c); NULL: none */
	/* set while writing */
	int cred_ref;
};

struct ctx {
	struct image img;
	struct objhash *objs;
	struct task *tasks;
	int nr_tasks;
	struct process *procs;
	int nr_procs;
	bool tree, kill, allow_partial;
	bool strict;		/* --strict: a pure v23 image, no extension records (ckpt_ext) */
	uint64_t ghost_limit;	/* --ghost-limit: bytes of deleted files' contents per image */
	uint64_t ghost_used;
	bool refused;		/* a task may not be traced: exit EXIT_PARTIAL */
	bool usage_error;	/* the PID names no process: exit EXIT_USAGE */
	int nr_unsupported;	/* ERROR records written for skipped state */
	unsigned int xstate_size;
	bool has_xsave;
};

/* restore/restart.c: the restore half (restore/restore.h) */
int restore_main(int argc, char **argv);

/* checkpoint.c */
int checkpoint(struct ctx *c);
int ckpt_unsupported(struct ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
bool ckpt_ext(struct ctx *c);

/* supervise.c: work() runs in a child (the tracer) that outlives a killed launcher */
int run_supervised(int (*work)(void *), void *arg);

/* freeze.c */
#define STOP_TIMEOUT_MS 2000	/* a task that does not stop within this is refused */
#define TRAP_TIMEOUT_MS 30000	/* for the stops of a task we run a syscall in */
extern volatile sig_atomic_t interrupted;
void freeze_install_handlers(void);
int check_interrupted(void);
int freeze_tree(struct ctx *c, pid_t root);
void thaw_all(struct ctx *c, bool kill);
int wait_trap(pid_t tid, int *status);

/* task.c */
int collect_tasks(struct ctx *c);
int dump_tree(struct ctx *c);
int dump_task(struct ctx *c, struct task *t);

/* audit.c: ERROR records for state the image has no field for */
int dump_unsaved_state(struct ctx *c, struct task *t);

/* creds.c */
int dump_creds(struct ctx *c, struct task *t);

/* ns.c */
int dump_task_ns(struct ctx *c, struct task *t);

/* files.c */
int dump_file_table(struct ctx *c, struct task *t);
int dump_fs(struct ctx *c, struct task *t);
int dump_mapped_file(struct ctx *c, struct task *t, const char *path, const struct stat *st,
		     uint32_t f_flags, const char *source);
void file_common(struct ckpt_hdr_file *h, struct task *t, uint32_t f_type, uint32_t f_flags,
		 const struct stat *st, uint64_t pos);

/* files_ext.c: deleted files still open or mapped (ghosts) and memfds, as extension records */
enum ext_file_kind { EXT_FILE_NONE, EXT_FILE_GHOST, EXT_FILE_MEMFD };
enum ext_file_kind ext_file_kind(const char *path, const struct stat *st);
int ext_file_admit(struct ctx *c, const char *what, const char *path, const char *source);
int dump_ext_file(struct ctx *c, struct task *t, int ref, const char *path, const char *source,
		  uint32_t f_flags, uint64_t pos);

/* net.c: sockets, the common SOCKET record and the family dispatch (net_unix.c, net_inet.c) */
#define SOCK_SAVED	1
#define SOCK_REFUSED	2	/* not saved: an ERROR record says why */
struct sock_dump {		/* a socket of the tree, by inode; kept for the whole dump */
	ino_t ino;
	pid_t tid;		/* a task of the tree holding it, and its descriptor there */
	int tfd;
	int sk;			/* the dumper's own copy of it (pidfd_getfd), -1 when closed */
	int family, type, protocol;
	int peek_off;		/* the task's SO_PEEK_OFF, put back after the dumper's peeks */
	int verdict;		/* 0 not checked yet, SOCK_SAVED, SOCK_REFUSED */
	bool checking;		/* its check is running (a pair checks its peer) */
	int ref;		/* CKPT_OBJ_SOCK objref, 0 until written */
	bool written, queued;	/* records written; queues due at the end of the file table */
	struct ckpt_hdr_socket h;	/* SOL_SOCKET part by net.c, the rest by the family */
	void *fam;		/* the family's own state, free()d by net.c */
};
int check_socket(struct ctx *c, struct task *t, int fd, ino_t ino);
int dump_socket_file(struct ctx *c, struct task *t, int file_ref, struct ckpt_hdr_file *common,
		     ino_t ino);
int dump_socket_queues(struct ctx *c);
struct sock_dump *sock_of_inode(struct ctx *c, ino_t ino);
int check_sock(struct ctx *c, struct sock_dump *s);
int write_sock(struct ctx *c, struct sock_dump *s);
int sock_peek(struct sock_dump *s, void *buf, size_t len, size_t off, size_t *got,
	      int *msg_flags, void *control, size_t *control_len);
/* net_unix.c */
struct unix_diag_info {		/* what unix_diag says of a socket */
	ino_t ino;
	uint8_t type, state, shutdown;
	bool has_peer, has_vfs;
	ino_t peer;			/* 0 with has_peer: the peer is gone */
	uint64_t vfs_ino, vfs_dev;	/* the inode its name is bound to (kernel dev_t) */
	uint32_t rqueue, wqueue, nr_icons;
};
int unix_diag_table(struct unix_diag_info **tab, int *n);
const char *unix_name_text(const struct ckpt_sockaddr_un *a, uint32_t len, char *buf, size_t size);
int check_unix_socket(struct ctx *c, struct sock_dump *s);
int dump_unix_socket(struct ctx *c, struct sock_dump *s);
int dump_unix_queues(struct ctx *c, struct sock_dump *s);

/* tty.c */
bool is_unix98_pty(const struct stat *st, bool *master, unsigned int *index);
int dump_tty_file(struct ctx *c, int ref, const struct ckpt_hdr_file *common, pid_t tid, int fd,
		  const struct stat *st, char *why, size_t why_len);
int dump_ctty(struct ctx *c, struct task *t);

/* eventpoll.c: eventfd, epoll and (extension records) signalfd, timerfd */
uint32_t evfd_kind(const char *path);
int dump_evfd_file(struct ctx *c, struct task *t, int ref, int fd, uint32_t kind,
		   uint32_t f_flags, const struct stat *st);
int dump_epoll_items(struct ctx *c, struct task *t, int epfd, int epref, const int *fds,
		     const int *refs, int nr_fds);

/* rseq.c: a thread's rseq registration (EXT_RSEQ); the restore reads the fork's own too */
#define PTRACE_GET_RSEQ_CONFIGURATION_K 0x420f
struct rseq_configuration_k {	/* <linux/ptrace.h>'s, which cannot be included beside <sys/ptrace.h> */
	uint64_t rseq_abi_pointer;
	uint32_t rseq_abi_size;
	uint32_t signature;
	uint32_t flags;
	uint32_t pad;
};
int dump_rseq(struct ctx *c, struct task *t);

/* net_inet.c: AF_INET / AF_INET6 sockets (TCP listeners, connections in TCP_REPAIR mode, UDP) */
int inet_getopt(int sk, int level, int name, int *val);
int check_inet_socket(struct ctx *c, struct sock_dump *s);
int dump_inet_socket(struct ctx *c, struct sock_dump *s);
int dump_inet_queues(struct ctx *c, struct sock_dump *s);
int inet_dump_end(struct ctx *c);
bool inet_thaw(struct ctx *c, bool kill);

/* mm.c */
int probe_mm(struct infect *inf, struct process *p);
int dump_mm(struct ctx *c, struct task *t);

int dump_segment_pages(struct ctx *c, int fd, uint64_t size);

/* ipc.c: SysV IPC objects of an ipc namespace, semaphore undo lists */
int dump_ipc_objects(struct ctx *c, pid_t pid, uint64_t ns_ino);
int ipc_shm_objref(struct ctx *c, pid_t pid, uint64_t shmid, __u64 *size);
int probe_sem_undo(struct ctx *c, struct infect *inf, struct task *t);
int dump_sem_undo(struct ctx *c, struct task *t);

/* signal.c */
int probe_process_signals(struct infect *inf, struct process *p);
int probe_thread_signals(struct infect *inf, struct task *t);
int dump_sighand(struct ctx *c, struct task *t);
int dump_signal(struct ctx *c, struct task *t);
int dump_task_signal(struct ctx *c, struct task *t);

/* arch/<arch>/regs.c */
int arch_read_regs(struct ctx *c, struct task *t);
int arch_probe_xstate(struct ctx *c, pid_t tid);
int arch_dump_header(struct ctx *c);
int arch_dump_thread(struct ctx *c, struct task *t);
int arch_dump_cpu(struct ctx *c, struct task *t);
int arch_dump_mm_context(struct ctx *c, uint64_t vdso);

/* arch/<arch>/infect.c: run syscalls inside a stopped task */
#define INFECT_FAILED LONG_MIN	/* infect_syscall: the syscall could not be run */
int infect_find_syscall(pid_t pid, uint64_t *ip);
int infect_start(struct infect *inf, pid_t tid, uint64_t syscall_ip);
long infect_syscall(struct infect *inf, long nr, long a0, long a1, long a2, long a3);
int infect_read(struct infect *inf, void *buf, size_t len);
int infect_write(struct infect *inf, const void *buf, size_t len);
int infect_stop(struct infect *inf);

#endif /* ENGINE_H */
