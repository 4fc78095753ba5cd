/*
 * File table, open files and the fs object (cwd, root, umask).
 *
 * An open file description shared by several descriptors (dup, fork) is one FILE object:
 * descriptors of the same inode are compared with kcmp(KCMP_FILE). Regular files,
 * directories, character and block devices (/dev/null, ttys) are GENERIC files with a
 * path; pipes and FIFOs carry the pipe inode objref, and the first file naming a pipe
 * inode is followed by the pipe's buffered data, copied with tee(2) so the task's data
 * stays in its pipe. Anything else is an ERROR record and the descriptor is skipped.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/kcmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "engine.h"

/* kernel FMODE_* bits the FILE record carries */
#define FMODE_READ	0x1
#define FMODE_WRITE	0x2
#define FMODE_LSEEK	0x4
#define FMODE_PREAD	0x8
#define FMODE_PWRITE	0x10

#define MAPPED_KEY	(1ULL << 63)	/* key space of files known only by a mapping */

struct fd_info {
	int fd;
	uint32_t f_type;
	uint32_t f_flags;
	bool cloexec;
	int nr_locks;		/* "lock:" lines of fdinfo: flock, POSIX and OFD locks */
	char locks[120];	/* the first of them, for the ERROR record */
	uint64_t pos;
	struct stat st;
	char path[4096];
};

/*
 * Open file descriptions seen so far: hashed by inode, and only descriptors of the same
 * inode are compared with kcmp (an open file description has one inode).
 */
struct file_rep {
	pid_t tid;
	int fd;
	dev_t dev;
	ino_t ino;
	int ref;
	int next;		/* next rep in the same bucket, -1 */
};
static struct file_rep *reps;
static int nr_reps, cap_reps;
static int *rep_bucket;		/* first rep of each bucket, -1 */
static unsigned int nr_buckets;

static unsigned int inode_bucket(dev_t dev, ino_t ino)
{
	return hash_bytes(&ino, sizeof(ino), dev) & (nr_buckets - 1);
}

/* room for one more rep, the buckets kept at least as many as the reps */
static int grow_reps(void)
{
	unsigned int i;

	if (nr_reps == cap_reps) {
		struct file_rep *r = realloc(reps, (cap_reps = cap_reps ? 2 * cap_reps : 64) * sizeof(*r));

		if (!r)
			return pr_perror("file list");
		reps = r;
	}
	if ((unsigned int)nr_reps < nr_buckets)
		return 0;
	free(rep_bucket);
	nr_buckets = nr_buckets ? 2 * nr_buckets : 64;
	rep_bucket = malloc(nr_buckets * sizeof(*rep_bucket));
	if (!rep_bucket)
		return pr_perror("file list");
	for (i = 0; i < nr_buckets; i++)
		rep_bucket[i] = -1;
	for (i = 0; i < (unsigned int)nr_reps; i++) {
		unsigned int b = inode_bucket(reps[i].dev, reps[i].ino);

		reps[i].next = rep_bucket[b];
		rep_bucket[b] = i;
	}
	return 0;
}

static bool is_tty(const struct stat *st)
{
	unsigned int major = major(st->st_rdev);

	return S_ISCHR(st->st_mode) && (major == 4 || major == 5 || (major >= 136 && major <= 143));
}

/*
 * f_mode as the kernel sets it: READ/WRITE from the access mode; seek and positional I/O
 * for everything opened by path except stream files (pipes, FIFOs, ttys).
 */
static uint32_t file_mode(uint32_t f_flags, const struct stat *st)
{
	uint32_t acc = f_flags & O_ACCMODE, mode = 0;

	if (acc == O_RDONLY || acc == O_RDWR)
		mode |= FMODE_READ;
	if (acc == O_WRONLY || acc == O_RDWR)
		mode |= FMODE_WRITE;
	if (!S_ISFIFO(st->st_mode) && !is_tty(st))
		mode |= FMODE_LSEEK | FMODE_PREAD | FMODE_PWRITE;
	return mode;
}

static int dump_file_name(struct ctx *c, const char *path)
{
	return write_buffer(&c->img, CKPT_HDR_FILE_NAME, path, strlen(path) + 1);
}

static void file_common(struct ckpt_hdr_file *h, struct task *t, uint32_t f_type,
			uint32_t f_flags, const struct stat *st, uint64_t pos)
{
	*h = (struct ckpt_hdr_file){
		.f_type = f_type,
		.f_mode = file_mode(f_flags, st),
		.f_flags = f_flags,
		.f_credref = t->cred_ref,
		.f_pos = pos,
		.f_version = 0,
		.f_secref = 0,
	};
}

static int dump_generic(struct ctx *c, struct task *t, int ref, const struct fd_info *fi)
{
	struct ckpt_hdr_file_generic h;

	file_common(&h.common, t, CKPT_FILE_GENERIC, fi->f_flags, &fi->st, fi->pos);
	if (write_objref(&c->img, CKPT_OBJ_FILE, ref) ||
	    write_obj(&c->img, CKPT_HDR_FILE, &h, sizeof(h)))
		return -1;
	return dump_file_name(c, fi->path);
}

/* The pipe's buffered bytes, duplicated by tee(2) from a second reader of the pipe. */
static int dump_pipe_buf(struct ctx *c, struct task *t, int fd)
{
	char path[64];
	int rfd, p[2] = { -1, -1 }, ret = -1;
	int avail = 0, size;
	char *data = NULL;
	ssize_t n = 0;

	snprintf(path, sizeof(path), "/proc/%d/fd/%d", t->tid, fd);
	rfd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	if (rfd < 0)
		return pr_perror("open %s", path);
	size = fcntl(rfd, F_GETPIPE_SZ);
	if (size < 0 || ioctl(rfd, FIONREAD, &avail)) {
		pr_perror("pipe %s", path);
		goto out;
	}
	if (avail > 0) {
		data = malloc(avail);
		if (!data || pipe2(p, O_CLOEXEC) || fcntl(p[1], F_SETPIPE_SZ, size) < 0) {
			pr_perror("pipe for copying %s", path);
			goto out;
		}
		n = tee(rfd, p[1], avail, SPLICE_F_NONBLOCK);
		if (n != avail || read(p[0], data, n) != n) {
			pr_perror("copy %d buffered bytes of %s (got %zd)", avail, path, n);
			goto out;
		}
	}
	ret = write_buffer(&c->img, CKPT_HDR_PIPE_BUF, data, n);
out:
	free(data);
	if (p[0] >= 0) {
		close(p[0]);
		close(p[1]);
	}
	close(rfd);
	return ret;
}

/* PIPE or FIFO: FILE [FILE_NAME] [PIPE_BUF the first time the pipe inode is named] */
static int dump_pipe(struct ctx *c, struct task *t, int ref, const struct fd_info *fi)
{
	struct ckpt_hdr_file_pipe h;
	bool first;

	file_common(&h.common, t, fi->f_type, fi->f_flags, &fi->st, 0);
	h.pipe_objref = obj_lookup_add(c->objs, CKPT_OBJ_INODE, fi->st.st_dev, fi->st.st_ino, &first);
	h._padding = 0;
	if (h.pipe_objref < 0 || write_objref(&c->img, CKPT_OBJ_FILE, ref) ||
	    write_obj(&c->img, CKPT_HDR_FILE, &h, sizeof(h)))
		return -1;
	if (fi->f_type == CKPT_FILE_FIFO && dump_file_name(c, fi->path))
		return -1;
	return first ? dump_pipe_buf(c, t, fi->fd) : 0;
}

/* objref of the open file behind fi, writing the FILE object the first time */
static int dump_fd_file(struct ctx *c, struct task *t, const struct fd_info *fi)
{
	struct file_rep *r;
	unsigned int b;
	bool first;
	int i, ref;

	for (i = nr_buckets ? rep_bucket[inode_bucket(fi->st.st_dev, fi->st.st_ino)] : -1; i >= 0;
	     i = r->next) {
		r = &reps[i];
		if (r->dev == fi->st.st_dev && r->ino == fi->st.st_ino &&
		    syscall(SYS_kcmp, t->tid, r->tid, KCMP_FILE, fi->fd, r->fd) == 0)
			return r->ref;
	}
	ref = obj_lookup_add(c->objs, CKPT_OBJ_FILE, (uint64_t)t->tid << 32 | fi->fd, 0, &first);
	if (ref < 0 || grow_reps())
		return -1;
	b = inode_bucket(fi->st.st_dev, fi->st.st_ino);
	reps[nr_reps] = (struct file_rep){ t->tid, fi->fd, fi->st.st_dev, fi->st.st_ino, ref,
					   rep_bucket[b] };
	rep_bucket[b] = nr_reps++;
	if (fi->f_type == CKPT_FILE_GENERIC)
		return dump_generic(c, t, ref, fi) ? -1 : ref;
	if (fi->f_type == CKPT_FILE_SOCKET) {
		struct ckpt_hdr_file common;

		file_common(&common, t, CKPT_FILE_SOCKET, fi->f_flags, &fi->st, 0);
		return dump_socket_file(c, t, ref, &common, fi->st.st_ino) ? -1 : ref;
	}
	return dump_pipe(c, t, ref, fi) ? -1 : ref;
}

static bool deleted(const char *path)
{
	size_t n = strlen(path);

	return n > 10 && !strcmp(path + n - 10, " (deleted)");
}

/* Fill fi for descriptor fd; 1 if it is of a kind the format cannot hold. */
static int read_fd(struct task *t, int fd, struct fd_info *fi)
{
	char name[64], *info;
	const char *v;
	unsigned long flags;

	memset(fi, 0, sizeof(*fi));
	fi->fd = fd;
	snprintf(name, sizeof(name), "fd/%d", fd);
	if (proc_readlink(t->tid, name, fi->path, sizeof(fi->path)))
		return pr_perror("readlink /proc/%d/%s", t->tid, name);
	snprintf(name, sizeof(name), "/proc/%d/fd/%d", t->tid, fd);
	if (stat(name, &fi->st))
		return pr_perror("stat %s", name);
	snprintf(name, sizeof(name), "fdinfo/%d", fd);
	info = proc_read(t->tid, name, NULL);
	if (!info)
		return pr_perror("read /proc/%d/%s", t->tid, name);
	v = status_field(info, "pos");
	fi->pos = v ? strtoull(v, NULL, 10) : 0;
	v = status_field(info, "flags");
	flags = v ? strtoul(v, NULL, 8) : 0;
	for (v = info; (v = strstr(v, "\nlock:")); v += 6) {
		const char *l = v + 6 + strspn(v + 6, " \t");	/* "1: POSIX  ADVISORY  WRITE ..." */
		size_t used = strlen(fi->locks);

		if (used < sizeof(fi->locks) - 40)
			snprintf(fi->locks + used, sizeof(fi->locks) - used, "%s%.*s", used ? "; " : "",
				 (int)strcspn(l, "\n"), l);
		fi->nr_locks++;
	}
	free(info);
	/* fdinfo folds the descriptor's close-on-exec into flags; the FILE_DESC carries it */
	fi->cloexec = flags & O_CLOEXEC;
	fi->f_flags = flags & ~O_CLOEXEC;
	if (S_ISFIFO(fi->st.st_mode) && !strncmp(fi->path, "pipe:[", 6)) {
		fi->f_type = CKPT_FILE_PIPE;
		return 0;
	}
	if (S_ISSOCK(fi->st.st_mode)) {
		fi->f_type = CKPT_FILE_SOCKET;	/* net.c: check_socket() decides */
		return 0;
	}
	if (fi->path[0] != '/' || deleted(fi->path))
		return 1;
	if (S_ISFIFO(fi->st.st_mode))
		fi->f_type = CKPT_FILE_FIFO;
	else if (S_ISREG(fi->st.st_mode) || S_ISDIR(fi->st.st_mode) || S_ISCHR(fi->st.st_mode) ||
		 S_ISBLK(fi->st.st_mode))
		fi->f_type = CKPT_FILE_GENERIC;	/* ttys too: reopened by path (our choice) */
	else
		return 1;
	return 0;
}

/* a Unix98 pty: a slave /dev/pts/N (majors 136-143) or the master /dev/ptmx (5, 2) */
static bool is_pty(const struct stat *st)
{
	unsigned int major = major(st->st_rdev), minor = minor(st->st_rdev);

	return S_ISCHR(st->st_mode) && ((major >= 136 && major <= 143) || (major == 5 && minor == 2));
}

/* ERROR records for what a saved descriptor loses: its file locks, a pty's pairing */
static int audit_fd(struct ctx *c, struct task *t, const struct fd_info *fi)
{
	if (fi->nr_locks && ckpt_unsupported(c, "pid %d fd %d: %d file lock%s on %s not saved (%s)",
					     t->tid, fi->fd, fi->nr_locks, fi->nr_locks == 1 ? "" : "s",
					     fi->path, fi->locks))
		return -1;
	if (is_pty(&fi->st) &&
	    ckpt_unsupported(c, "pid %d fd %d: pty %s saved as a plain file (its other end, "
			     "buffered input and termios are not saved)", t->tid, fi->fd, fi->path))
		return -1;
	return 0;
}

static int cmp_int(const void *a, const void *b)
{
	return *(const int *)a - *(const int *)b;
}

static int list_fds(pid_t tid, int **fds, int *n)
{
	char path[64];
	DIR *d;
	struct dirent *e;
	int cap = 0;

	snprintf(path, sizeof(path), "/proc/%d/fd", tid);
	d = opendir(path);
	if (!d)
		return pr_perror("open %s", path);
	*fds = NULL;
	*n = 0;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		if (*n == cap) {
			int *nf = realloc(*fds, (cap = cap ? 2 * cap : 64) * sizeof(int));

			if (!nf) {
				closedir(d);
				return pr_perror("fd list");
			}
			*fds = nf;
		}
		(*fds)[(*n)++] = atoi(e->d_name);
	}
	closedir(d);
	qsort(*fds, *n, sizeof(int), cmp_int);
	return 0;
}

/* OBJREF(FILE_TABLE) FILE_TABLE nfds * ([file object] FILE_DESC), the first time */
int dump_file_table(struct ctx *c, struct task *t)
{
	struct ckpt_hdr_file_table h = { .fdt_nfds = 0 };
	struct fd_info *fi = NULL;
	int *fds = NULL, nr_fds = 0, i, ref, ret = -1;
	bool first;

	ref = obj_lookup_add(c->objs, CKPT_OBJ_FILE_TABLE, c->tasks[t->share[SHARE_FILES]].tid, 0,
			     &first);
	if (ref < 0 || !first)
		return ref;
	if (list_fds(t->tid, &fds, &nr_fds))
		return -1;
	fi = malloc((nr_fds ? nr_fds : 1) * sizeof(*fi));
	if (!fi) {
		pr_perror("fd table");
		goto out;
	}
	for (i = 0; i < nr_fds; i++) {
		int r = read_fd(t, fds[i], &fi[h.fdt_nfds]);

		if (r == 0 && fi[h.fdt_nfds].f_type == CKPT_FILE_SOCKET)
			r = check_socket(c, t, fds[i], fi[h.fdt_nfds].st.st_ino);	/* 2: ERROR written */
		if (r < 0)
			goto out;
		if (r == 0 && (audit_fd(c, t, &fi[h.fdt_nfds])))
			goto out;
		if (r == 0)
			h.fdt_nfds++;
		else if (r == 1 && ckpt_unsupported(c, "pid %d fd %d: unsupported file %s", t->tid, fds[i],
					  fi[h.fdt_nfds].path))
			goto out;
	}
	if (write_objref(&c->img, CKPT_OBJ_FILE_TABLE, ref) ||
	    write_obj(&c->img, CKPT_HDR_FILE_TABLE, &h, sizeof(h)))
		goto out;
	for (i = 0; i < h.fdt_nfds; i++) {
		struct ckpt_hdr_file_desc d = {
			.fd_descriptor = fi[i].fd,
			.fd_close_on_exec = fi[i].cloexec,
		};

		d.fd_objref = dump_fd_file(c, t, &fi[i]);
		if (d.fd_objref < 0 || write_obj(&c->img, CKPT_HDR_FILE_DESC, &d, sizeof(d)))
			goto out;
	}
	if (dump_socket_queues(c))	/* the kernel's deferred part of the file table */
		goto out;
	ret = ref;
out:
	free(fi);
	free(fds);
	return ret;
}

/*
 * File object of a memory mapping (exe or vm_file). A mapping's struct file is not
 * visible, so mappings of one inode share one object, opened read-only unless
 * f_flags say otherwise.
 */
int dump_mapped_file(struct ctx *c, struct task *t, const char *path, const struct stat *st,
		     uint32_t f_flags)
{
	struct fd_info fi = { .f_type = CKPT_FILE_GENERIC, .f_flags = f_flags, .st = *st };
	bool first;
	int ref = obj_lookup_add(c->objs, CKPT_OBJ_FILE, MAPPED_KEY | st->st_dev, st->st_ino, &first);

	if (ref < 0 || !first)
		return ref;
	snprintf(fi.path, sizeof(fi.path), "%s", path);
	return dump_generic(c, t, ref, &fi) ? -1 : ref;
}

/* OBJREF(FS) FS FILE_NAME(cwd) FILE_NAME(root), the first time */
int dump_fs(struct ctx *c, struct task *t)
{
	struct ckpt_hdr_fs h = { ._padding = 0 };
	char cwd[4096], root[4096], *status;
	const char *umask;
	bool first;
	int ref = obj_lookup_add(c->objs, CKPT_OBJ_FS, c->tasks[t->share[SHARE_FS]].tid, 0, &first);

	if (ref < 0 || !first)
		return ref;
	status = proc_read(t->tid, "status", NULL);
	if (!status)
		return pr_perror("read /proc/%d/status", t->tid);
	umask = status_field(status, "Umask");
	h.umask = umask ? strtoul(umask, NULL, 8) : 022;
	free(status);
	if (proc_readlink(t->tid, "cwd", cwd, sizeof(cwd)) ||
	    proc_readlink(t->tid, "root", root, sizeof(root)))
		return pr_perror("pid %d: read cwd/root", t->tid);
	if (write_objref(&c->img, CKPT_OBJ_FS, ref) || write_obj(&c->img, CKPT_HDR_FS, &h, sizeof(h)) ||
	    dump_file_name(c, cwd) || dump_file_name(c, root))
		return -1;
	return ref;
}
