/*
 * inotify instances: OBJREF(FILE) EXT_FILE_INOTIFY nr_watches x (EXT_INOTIFY_WATCH FILE_NAME).
 *
 * v23 has no record for them (an imgtools extension, docs/format-choices.md). Each watch
 * is read from /proc/PID/fdinfo (wd, inode, superblock, mask, file handle); its path comes
 * from the file handle, opened by open_by_handle_at() on the mount of that superblock, so
 * a watched file that was renamed is saved under its current name. Queued events cannot be
 * read without taking them from the program: an instance with events waiting is an ERROR
 * record, as is a watch whose file can no longer be named (deleted, or on a mount the
 * engine cannot see).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "engine.h"

#define MAX_HANDLE_BYTES	128	/* MAX_HANDLE_SZ of the kernel */

struct watch {
	struct ckpt_hdr_ext_inotify_watch rec;
	char path[4096];
};

/* the kernel's dev_t of fdinfo's sdev (MKDEV: major << 20 | minor) as a user dev_t */
static dev_t kernel_dev(unsigned long sdev)
{
	return makedev(sdev >> 20, sdev & 0xfffff);
}

/* a descriptor of a mount point of superblock dev, as the task sees its mounts */
static int open_mount_of(pid_t pid, dev_t dev)
{
	char *info = proc_read(pid, "mountinfo", NULL), *line, *save = NULL;
	int fd = -1;

	if (!info)
		return -1;
	for (line = strtok_r(info, "\n", &save); line && fd < 0; line = strtok_r(NULL, "\n", &save)) {
		unsigned int ma, mi;
		char mnt[4096], path[4200];

		/* "36 35 98:0 /root /mnt/point opts ..." */
		if (sscanf(line, "%*d %*d %u:%u %*s %4095s", &ma, &mi, mnt) != 3 || makedev(ma, mi) != dev)
			continue;
		snprintf(path, sizeof(path), "/proc/%d/root%s", pid, mnt);
		/* not O_PATH: open_by_handle_at() refuses an O_PATH descriptor (EBADF) */
		fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	}
	free(info);
	return fd;
}

/* the path of the watched inode from its file handle; -1 if it has none any more */
static int watch_path(pid_t pid, struct watch *w, unsigned int bytes, int htype, const char *hex)
{
	union {
		struct file_handle fh;
		unsigned char bytes[sizeof(struct file_handle) + MAX_HANDLE_BYTES];
	} h;
	unsigned char *handle = h.bytes + sizeof(struct file_handle);
	char link[64];
	struct stat st;
	unsigned int i;
	int mfd, fd;
	ssize_t n;

	if (bytes > MAX_HANDLE_BYTES || strlen(hex) < 2 * bytes)
		return -1;
	h.fh.handle_bytes = bytes;
	h.fh.handle_type = htype;
	for (i = 0; i < bytes; i++)
		if (sscanf(hex + 2 * i, "%2hhx", &handle[i]) != 1)
			return -1;
	mfd = open_mount_of(pid, w->rec.dev);
	if (mfd < 0)
		return -1;
	fd = open_by_handle_at(mfd, &h.fh, O_PATH | O_CLOEXEC);
	close(mfd);
	if (fd < 0)
		return -1;
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	n = readlink(link, w->path, sizeof(w->path) - 1);
	if (n > 0)
		w->path[n] = 0;
	if (n <= 0 || fstat(fd, &st) || st.st_ino != w->rec.ino || w->path[0] != '/' ||
	    (n > 10 && !strcmp(w->path + n - 10, " (deleted)"))) {
		close(fd);
		return -1;
	}
	close(fd);
	return 0;
}

static int cmp_wd(const void *a, const void *b)
{
	return ((const struct watch *)a)->rec.wd - ((const struct watch *)b)->rec.wd;
}

/* the bytes of events queued on the instance (they cannot be saved), or -1 */
static int queued_bytes(pid_t tid, int fd)
{
	int pidfd, qfd, n = 0;

	/* the task's own file: a reopen of /proc/PID/fd/N of an anon inode is not possible */
	pidfd = syscall(SYS_pidfd_open, tid, 0);
	if (pidfd < 0)
		return pr_perror("pidfd_open %d", tid);
	qfd = syscall(SYS_pidfd_getfd, pidfd, fd, 0);
	close(pidfd);
	if (qfd < 0)
		return pr_perror("pid %d: take inotify descriptor %d", tid, fd);
	if (ioctl(qfd, FIONREAD, &n))
		n = pr_perror("pid %d fd %d: FIONREAD", tid, fd);
	close(qfd);
	return n;
}

/*
 * The watches of instance fd, sorted by wd: 0; 1 if it cannot be saved (its ERROR record
 * written); -1 on error.
 */
static int read_watches(struct ctx *c, struct task *t, int fd, struct watch **wp, int *nrp)
{
	struct watch *w = NULL;
	char name[64], *info, *line, *save = NULL;
	int nr = 0, cap = 0, queued, ret = -1;

	snprintf(name, sizeof(name), "fdinfo/%d", fd);
	info = proc_read(t->tid, name, NULL);
	if (!info)
		return pr_perror("read /proc/%d/%s", t->tid, name);
	for (line = strtok_r(info, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		unsigned int wd, mask, ignored, bytes;
		unsigned long ino, sdev;
		int htype;
		char hex[2 * MAX_HANDLE_BYTES + 1];

		/* inotify wd:1 ino:20c058 sdev:fe00000 mask:2 ignored_mask:0 fhandle-bytes:8
		 * fhandle-type:1 f_handle:58c020005c8c3435 (all hex) */
		if (strncmp(line, "inotify ", 8))
			continue;
		if (sscanf(line, "inotify wd:%x ino:%lx sdev:%lx mask:%x ignored_mask:%x "
			   "fhandle-bytes:%x fhandle-type:%x f_handle:%256s", &wd, &ino, &sdev, &mask,
			   &ignored, &bytes, &htype, hex) != 8) {
			pr_err("pid %d fd %d: cannot parse inotify watch \"%.80s\"", t->tid, fd, line);
			goto out;
		}
		if (nr == cap) {
			struct watch *nw = realloc(w, (cap = cap ? 2 * cap : 8) * sizeof(*w));

			if (!nw) {
				pr_perror("inotify watches");
				goto out;
			}
			w = nw;
		}
		w[nr].rec = (struct ckpt_hdr_ext_inotify_watch){ .wd = wd, .mask = mask, .ino = ino,
								  .dev = kernel_dev(sdev) };
		if (watch_path(t->tid, &w[nr], bytes, htype, hex)) {
			ret = ckpt_unsupported(c, "pid %d fd %d: inotify watch %u on inode %lu of device "
					       "%u:%u: the file has no name the engine can reach",
					       t->tid, fd, wd, ino, major(w[nr].rec.dev),
					       minor(w[nr].rec.dev)) ? -1 : 1;
			goto out;
		}
		nr++;
	}
	queued = queued_bytes(t->tid, fd);
	if (queued < 0)
		goto out;
	if (queued) {
		ret = ckpt_unsupported(c, "pid %d fd %d: %d bytes of inotify events waiting to be read "
				       "(they cannot be saved without taking them from the program)",
				       t->tid, fd, queued) ? -1 : 1;
		goto out;
	}
	qsort(w, nr, sizeof(*w), cmp_wd);	/* restore re-adds them in wd order */
	*wp = w;
	*nrp = nr;
	w = NULL;
	ret = 0;
out:
	free(w);
	free(info);
	return ret;
}

int probe_inotify(struct ctx *c, struct task *t, int fd)
{
	struct watch *w;
	int nr, r;

	if (c->strict)
		return ckpt_unsupported(c, "pid %d fd %d: an inotify instance (an imgtools extension "
					"record, not written with --strict)", t->tid, fd) ? -1 : 1;
	r = read_watches(c, t, fd, &w, &nr);
	if (r == 0)
		free(w);
	return r;
}

int dump_inotify(struct ctx *c, struct task *t, int ref, int fd, const struct ckpt_hdr_file *common)
{
	struct ckpt_hdr_ext_file_inotify h = { .common = *common };
	struct watch *w;
	int nr, i, ret = -1;

	h.common.h = (struct ckpt_hdr){ 0 };
	if (read_watches(c, t, fd, &w, &nr))
		return pr_err("pid %d fd %d: the inotify watches changed during the dump", t->tid, fd);
	h.nr_watches = nr;
	if (write_objref(&c->img, CKPT_OBJ_FILE, ref) ||
	    write_obj(&c->img, CKPT_HDR_EXT_FILE_INOTIFY, &h, sizeof(h)))
		goto out;
	for (i = 0; i < nr; i++)
		if (write_obj(&c->img, CKPT_HDR_EXT_INOTIFY_WATCH, &w[i].rec, sizeof(w[i].rec)) ||
		    write_buffer(&c->img, CKPT_HDR_FILE_NAME, w[i].path, strlen(w[i].path) + 1))
			goto out;
	ret = 0;
out:
	free(w);
	return ret;
}
