/*
 * Files on restore: the file table, open files, pipes and FIFOs, the fs object (cwd, root,
 * umask). The mirror of files.c.
 *
 * The driver opens every open file description of the image once, when its FILE record
 * arrives (a regular file by its path with its flags, then lseek; a pipe with pipe2 and its
 * buffered bytes written back), and keeps it. A task takes its descriptors from the driver
 * with an injected pidfd_getfd(): descriptions the dumped tasks shared (one FILE object)
 * stay shared, with one offset. Reopening a path never shares; that is why this way round.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "restore.h"

_Static_assert(sizeof(struct ckpt_hdr_file_tty) == sizeof(struct ckpt_hdr_file_pipe) &&
	       offsetof(struct ckpt_hdr_file_tty, tty_objref) ==
	       offsetof(struct ckpt_hdr_file_pipe, pipe_objref), "FILE subtypes read as one");

#define FMODE_EXEC_K	040		/* __FMODE_EXEC in f_flags of an exec'd file */
#define FMODE_LSEEK	0x4
#define PATH_MAX_IMG	4096

static bool is_tty(const struct stat *st)
{
	unsigned int major = major(st->st_rdev);

	return S_ISCHR(st->st_mode) && (major == 4 || major == 5 || (major >= 136 && major <= 143));
}

/* a FILE_NAME record: an absolute path */
char *read_path(struct rctx *c)
{
	struct ckpt_hdr h;
	char *path;

	if (rs_expect(&c->in, CKPT_HDR_FILE_NAME, &h))
		return NULL;
	path = rs_payload_alloc(&c->in, &h, 1, PATH_MAX_IMG);
	if (path && path[0] != '/') {
		rs_invalid(&c->in, "FILE_NAME at offset %llu is not an absolute path", (unsigned long long)c->in.rec_off);
		free(path);
		return NULL;
	}
	return path;
}

int task_take_fd(struct rctx *c, struct rproc *p, int drv_fd)
{
	struct rtask *t = &c->tasks[p->leader];
	long r = rinj_syscall(c, t, SYS_pidfd_getfd, p->svc_pidfd, drv_fd, 0, 0, 0, 0);

	if (r == INFECT_FAILED)
		return -1;
	if (r < 0)
		return pr_err("pid %d: take descriptor %d from the restorer: %s", t->pid, drv_fd,
			      strerror(-r));
	return r;
}

/* a service descriptor of the task in the way of the image's descriptor fd: move it */
static int move_service_fd(struct rctx *c, struct rproc *p, int *svc, int fd)
{
	struct rtask *t = &c->tasks[p->leader];
	long r;

	if (*svc != fd)
		return 0;
	r = rinj_syscall(c, t, SYS_fcntl, *svc, F_DUPFD_CLOEXEC, fd + 1, 0, 0, 0);
	if (r < 0)
		return pr_err("pid %d: move a service descriptor: %s", t->pid, strerror(-r));
	rinj_syscall(c, t, SYS_close, *svc, 0, 0, 0, 0, 0);
	*svc = r;
	return 0;
}

int task_install_fd(struct rctx *c, struct rproc *p, int drv_fd, int fd, bool cloexec)
{
	struct rtask *t = &c->tasks[p->leader];
	long r;
	int got;

	if (move_service_fd(c, p, &p->svc_in, fd) || move_service_fd(c, p, &p->svc_pidfd, fd))
		return -1;
	got = task_take_fd(c, p, drv_fd);	/* close-on-exec, at the lowest free number */
	if (got < 0)
		return -1;
	if (got == fd)
		r = cloexec ? 0 : rinj_syscall(c, t, SYS_fcntl, fd, F_SETFD, 0, 0, 0, 0);
	else
		r = rinj_syscall(c, t, SYS_dup3, got, fd, cloexec ? O_CLOEXEC : 0, 0, 0, 0);
	if (r < 0)
		return pr_err("pid %d: install descriptor %d: %s", t->pid, fd,
			      r == INFECT_FAILED ? "failed" : strerror(-r));
	if (got != fd && rinj_syscall(c, t, SYS_close, got, 0, 0, 0, 0, 0))
		return pr_err("pid %d: close descriptor %d", t->pid, got);
	return 0;
}

int restore_file_table(struct rctx *c, const struct ckpt_hdr *h)
{
	struct ckpt_hdr_file_table ft;
	struct rproc *p = cur_proc(c);
	struct robj *o = obj_define(c, CKPT_OBJ_FILE_TABLE);

	if (!p || !o)
		return -1;
	o->owner = c->tasks[c->cur].proc;
	return rs_record(&c->in, h, &ft, sizeof(ft));
}

static int open_generic(struct rctx *c, struct robj *o, const struct ckpt_hdr_file *f, const char *path)
{
	int flags = (f->f_flags & ~(O_CREAT | O_EXCL | O_TRUNC | FMODE_EXEC_K)) | O_NOCTTY | O_CLOEXEC;
	struct stat st;

	if (stat(path, &st))
		return rst_refuse(c, "file %s: %s", path, strerror(errno));
	if (is_tty(&st))
		return open_outside_tty(c, o, path);
	if (c->dry)
		return 0;
	o->fd = open(path, flags);
	if (o->fd < 0)
		return rst_refuse(c, "open %s: %s", path, strerror(errno));
	if (f->f_pos && (f->f_mode & FMODE_LSEEK) && lseek(o->fd, f->f_pos, SEEK_SET) < 0)
		return rst_refuse(c, "%s: seek to %llu: %s", path, (unsigned long long)f->f_pos,
				  strerror(errno));
	return 0;
}

/* PIPE_BUF: the bytes that were in the pipe, written back */
static int pipe_contents(struct rctx *c, int wfd)
{
	struct ckpt_hdr h;
	char *data;
	size_t len;
	int ret = 0;

	if (rs_expect(&c->in, CKPT_HDR_PIPE_BUF, &h))
		return -1;
	len = h.len - sizeof(h);
	data = rs_payload_alloc(&c->in, &h, 0, 16 << 20);
	if (!data)
		return -1;
	if (!c->dry && len) {
		if ((size_t)fcntl(wfd, F_GETPIPE_SZ) < len && fcntl(wfd, F_SETPIPE_SZ, len) < 0)
			ret = rst_refuse(c, "a pipe of %zu buffered bytes: %s", len, strerror(errno));
		else if (write(wfd, data, len) != (ssize_t)len)
			ret = pr_perror("write %zu bytes back into a pipe", len);
	}
	free(data);
	return ret;
}

/* a pipe end or FIFO: one open file description per FILE object */
static int open_pipe(struct rctx *c, struct robj *o, const struct ckpt_hdr_file_pipe *f, const char *path)
{
	int acc = f->common.f_flags & O_ACCMODE;
	bool first;
	struct robj *ino = obj_implicit(c, f->pipe_objref, CKPT_OBJ_INODE, &first);
	char self[64];
	int fl;

	if (!ino)
		return -1;
	if (first) {
		int p[2];

		if (path) {
			/* a FIFO: a read-write holder first, so no open blocks on a missing peer */
			struct stat st;

			if (stat(path, &st) || !S_ISFIFO(st.st_mode))
				return rst_refuse(c, "FIFO %s is gone", path);
			if (!c->dry) {
				ino->fd = ino->fd2 = open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC);
				if (ino->fd < 0)
					return rst_refuse(c, "open FIFO %s: %s", path, strerror(errno));
			}
		} else if (!c->dry) {
			if (pipe2(p, O_CLOEXEC))
				return pr_perror("pipe");
			ino->fd = p[0];
			ino->fd2 = p[1];
		}
		if (pipe_contents(c, ino->fd2))
			return -1;
	}
	if (c->dry)
		return 0;
	if (path) {
		o->fd = open(path, (f->common.f_flags & ~(O_CREAT | O_EXCL | O_TRUNC)) | O_NONBLOCK | O_CLOEXEC);
	} else if (acc == O_RDONLY && !ino->rd_used) {
		o->fd = ino->fd;
		ino->rd_used = true;
	} else if (acc == O_WRONLY && !ino->wr_used) {
		o->fd = ino->fd2;
		ino->wr_used = true;
	} else {
		/* another description of the same pipe (another open of /proc/PID/fd/N) */
		snprintf(self, sizeof(self), "/proc/self/fd/%d", acc == O_WRONLY ? ino->fd2 : ino->fd);
		o->fd = open(self, (acc == O_WRONLY ? O_WRONLY : O_RDONLY) | O_CLOEXEC);
	}
	if (o->fd < 0)
		return rst_refuse(c, "reopen a pipe: %s", strerror(errno));
	fl = fcntl(o->fd, F_GETFL);
	if (fl < 0 || fcntl(o->fd, F_SETFL, (fl & ~O_NONBLOCK) | (f->common.f_flags & O_NONBLOCK)))
		return pr_perror("pipe flags");
	return 0;
}

int restore_file(struct rctx *c, const struct ckpt_hdr *h)
{
	union {
		struct ckpt_hdr_file_pipe pipe;
		struct ckpt_hdr_file_eventfd eventfd;
	} u = { .pipe = { .pipe_objref = 0 } };
	struct ckpt_hdr_file_pipe f;
	struct robj *o = obj_define(c, CKPT_OBJ_FILE);
	char *path = NULL;
	int ret = -1;

	if (!o || rs_payload(&c->in, h, (char *)&u + sizeof(*h), sizeof(struct ckpt_hdr_file) - sizeof(*h),
			     sizeof(u) - sizeof(*h)))
		return -1;
	memcpy(&u, h, sizeof(*h));
	f = u.pipe;
	switch (f.common.f_type) {
	case CKPT_FILE_GENERIC:
		path = read_path(c);
		ret = path ? restore_file_stat(c, path) : -1;
		if (!ret)
			ret = open_generic(c, o, &f.common, path);
		break;
	case CKPT_FILE_PIPE:
		ret = open_pipe(c, o, &f, NULL);
		break;
	case CKPT_FILE_FIFO:
		path = read_path(c);
		ret = path ? open_pipe(c, o, &f, path) : -1;
		break;
	case CKPT_FILE_SOCKET: {
		struct ckpt_hdr_file_socket fs;	/* the same size as a pipe's FILE */

		memcpy(&fs, &f, sizeof(fs));
		ret = restore_socket_file(c, o, &fs);
		break;
	}
	case CKPT_FILE_TTY:	/* the same layout: the pipe's objref is the tty's */
		ret = restore_tty_file(c, o, (const struct ckpt_hdr_file_tty *)&f);
		break;
	case CKPT_FILE_EVENTFD:
	case CKPT_FILE_EPOLL:
		ret = restore_evfd_file(c, o, &u.pipe.common, h->len);	/* eventpoll.c */
		break;
	default:
		ret = rst_refuse(c, "files of type %u (%s) are not restored", f.common.f_type,
				 f.common.f_type == CKPT_FILE_SOCKET ? "socket" :
				 f.common.f_type == CKPT_FILE_TTY ? "tty" : "unknown");
	}
	free(path);
	return ret;
}

int restore_file_desc(struct rctx *c, const struct ckpt_hdr *h)
{
	struct ckpt_hdr_file_desc d;
	struct rproc *p = cur_proc(c);
	struct robj *o;

	if (!p || rs_record(&c->in, h, &d, sizeof(d)))
		return -1;
	o = obj_get(c, d.fd_objref, CKPT_OBJ_FILE);
	if (!o)
		return -1;
	if (d.fd_descriptor < 0 || d.fd_descriptor >= (1 << 20))
		return rs_invalid(&c->in, "FILE_DESC at offset %llu: descriptor %d", (unsigned long long)c->in.rec_off,
			      d.fd_descriptor);
	if (c->dry)
		return 0;
	return task_install_fd(c, p, o->fd, d.fd_descriptor, d.fd_close_on_exec);
}

/* FS FILE_NAME(cwd) FILE_NAME(root): chdir, chroot, umask in the task */
int restore_fs(struct rctx *c, const struct ckpt_hdr *h)
{
	struct ckpt_hdr_fs fs;
	struct rproc *p = cur_proc(c);
	struct robj *o = obj_define(c, CKPT_OBJ_FS);
	char *cwd = NULL, *root = NULL;
	struct rtask *t;
	struct stat st;
	int ret = -1;
	long r;

	if (!p || !o || rs_record(&c->in, h, &fs, sizeof(fs)))
		return -1;
	t = &c->tasks[p->leader];
	cwd = read_path(c);
	root = cwd ? read_path(c) : NULL;
	if (!root)
		goto out;
	if (stat(cwd, &st) || !S_ISDIR(st.st_mode)) {
		ret = rst_refuse(c, "pid %d: its working directory %s is gone", t->pid, cwd);
		goto out;
	}
	if (strcmp(root, "/")) {
		ret = rst_refuse(c, "pid %d: a root directory of its own (%s) is not restored", t->pid, root);
		goto out;
	}
	ret = 0;
	if (c->dry)
		goto out;
	r = rinj_syscall(c, t, SYS_chdir, rinj_put(c, p, 0, cwd, strlen(cwd) + 1), 0, 0, 0, 0, 0);
	if (r)
		ret = rst_refuse(c, "pid %d: chdir %s: %s", t->pid, cwd, r < 0 ? strerror(-r) : "failed");
	else if (rinj_syscall(c, t, SYS_umask, fs.umask & 0777, 0, 0, 0, 0, 0) == INFECT_FAILED)
		ret = -1;
out:
	free(cwd);
	free(root);
	return ret;
}
