/*
 * Event files (fs/eventpoll, fs/eventfd, fs/signalfd, fs/timerfd in linux-cr terms): what
 * an anonymous inode descriptor holds, from /proc/PID/fdinfo.
 *
 * eventfd and epoll have v23 records: FILE (f_type EVENTFD with count and flags; EPOLL
 * with the common part only) and, after the file table that first names an epoll file,
 * EPOLL_ITEMS + a BUFFER of its items, each naming the FILE object it watches (the linux-cr
 * kernel wrote them from a deferred queue run after the table, so every target is an object
 * by then; no BUFFER if there are no items). signalfd, timerfd and inotify have none:
 * imgtools extension object records (docs/format-choices.md, "Extension records"), and
 * `--strict` writes ERROR records for them (files.c). An inotify's watches each carry the
 * path of the watched inode, found from the file handle fdinfo gives (open_by_handle_at).
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/kcmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "engine.h"

#define EFD_SEMAPHORE_K	1	/* <sys/eventfd.h>'s EFD_SEMAPHORE */
#define PIDFD_THREAD_K	O_EXCL	/* pidfd_open of a thread (Linux 6.9) */

uint32_t evfd_kind(const char *path)
{
	static const struct { const char *name; uint32_t kind; } kinds[] = {
		{ "anon_inode:[eventfd]", CKPT_FILE_EVENTFD },
		{ "anon_inode:[eventpoll]", CKPT_FILE_EPOLL },
		{ "anon_inode:[signalfd]", CKPT_HDR_EXT_FILE_SIGNALFD },
		{ "anon_inode:[timerfd]", CKPT_HDR_EXT_FILE_TIMERFD },
		{ "anon_inode:inotify", CKPT_HDR_EXT_FILE_INOTIFY },
	};
	size_t i;

	for (i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
		if (!strcmp(path, kinds[i].name))
			return kinds[i].kind;
	return 0;
}

static char *read_fdinfo(struct task *t, int fd)
{
	char name[64], *info;

	snprintf(name, sizeof(name), "fdinfo/%d", fd);
	info = proc_read(t->tid, name, NULL);
	if (!info)
		pr_perror("read /proc/%d/%s", t->tid, name);
	return info;
}

/* a field of fdinfo that must be there (the running kernel's format) */
static const char *fdinfo_field(struct task *t, int fd, const char *info, const char *key)
{
	const char *v = status_field(info, key);

	if (!v)
		pr_err("pid %d fd %d: fdinfo has no '%s'", t->tid, fd, key);
	return v;
}

static int dump_eventfd(struct ctx *c, struct task *t, int ref, int fd, uint32_t f_flags,
			const struct stat *st, const char *info)
{
	struct ckpt_hdr_file_eventfd h = { ._padding = 0 };
	const char *count = status_field(info, "eventfd-count");	/* hex */
	const char *sem = status_field(info, "eventfd-semaphore");

	if (!count || !sem)
		return pr_err("pid %d fd %d: this kernel's fdinfo lacks the eventfd count or "
			      "semaphore mode (Linux 6.6 or later shows both)", t->tid, fd);
	file_common(&h.common, t, CKPT_FILE_EVENTFD, f_flags, st, 0);
	h.count = strtoull(count, NULL, 16);
	/* the eventfd2() flags: semaphore and non-blocking (close-on-exec is the descriptor's) */
	h.flags = (atoi(sem) ? EFD_SEMAPHORE_K : 0) | (f_flags & O_NONBLOCK);
	if (write_objref(&c->img, CKPT_OBJ_FILE, ref))
		return -1;
	return write_obj(&c->img, CKPT_HDR_FILE, &h, sizeof(h));
}

static int dump_epoll_file(struct ctx *c, struct task *t, int ref, uint32_t f_flags,
			   const struct stat *st)
{
	struct ckpt_hdr_file h;

	file_common(&h, t, CKPT_FILE_EPOLL, f_flags, st, 0);
	if (write_objref(&c->img, CKPT_OBJ_FILE, ref))
		return -1;
	return write_obj(&c->img, CKPT_HDR_FILE, &h, sizeof(h));
}

static int dump_signalfd(struct ctx *c, struct task *t, int ref, int fd, uint32_t f_flags,
			 const struct stat *st, const char *info)
{
	struct ckpt_hdr_ext_file_signalfd h;
	const char *mask = fdinfo_field(t, fd, info, "sigmask");

	if (!mask)
		return -1;
	file_common(&h.common, t, 0, f_flags, st, 0);
	h.sigmask = strtoull(mask, NULL, 16);
	if (write_objref(&c->img, CKPT_OBJ_FILE, ref))
		return -1;
	return write_obj(&c->img, CKPT_HDR_EXT_FILE_SIGNALFD, &h, sizeof(h));
}

/* our own descriptor of the task's open file fd: the same open file description */
static int copy_fd(struct task *t, int fd)
{
	int pidfd = syscall(SYS_pidfd_open, t->tid, t->tid == t->tgid ? 0 : PIDFD_THREAD_K), copy;

	if (pidfd < 0)
		return pr_perror("pidfd_open %d", t->tid);
	copy = syscall(SYS_pidfd_getfd, pidfd, fd, 0);
	close(pidfd);
	if (copy < 0)
		return pr_perror("pid %d fd %d: pidfd_getfd", t->tid, fd);
	return copy;
}

/* fdinfo "it_value: (sec, nsec)" */
static int64_t fdinfo_time(const char *v)
{
	long long sec = 0, nsec = 0;

	if (v)
		sscanf(v, "(%lld, %lld)", &sec, &nsec);
	return sec * 1000000000LL + nsec;
}

/*
 * A timer that expired is not moved to its next period until someone asks (read, poll,
 * timerfd_gettime): until then fdinfo shows one tick and no time left. timerfd_gettime on
 * our own copy of the descriptor (pidfd_getfd; the same open file) does that forwarding,
 * which changes nothing the program can see, so fdinfo then shows every expiration not
 * read yet and the time to the next one.
 */
static int dump_timerfd(struct ctx *c, struct task *t, int ref, int fd, uint32_t f_flags,
			const struct stat *st)
{
	struct ckpt_hdr_ext_file_timerfd h = { .ticks = 0 };
	int copy = copy_fd(t, fd), tries, ret = -1;
	char *info = NULL;

	if (copy < 0)
		return -1;
	for (tries = 0; tries < 4; tries++) {
		struct itimerspec its;
		const char *clk, *ticks, *flags, *value, *interval;

		free(info);
		if (timerfd_gettime(copy, &its)) {
			pr_perror("pid %d fd %d: timerfd_gettime", t->tid, fd);
			goto out;
		}
		info = read_fdinfo(t, fd);
		if (!info)
			goto out;
		clk = fdinfo_field(t, fd, info, "clockid");
		ticks = fdinfo_field(t, fd, info, "ticks");
		flags = fdinfo_field(t, fd, info, "settime flags");
		value = fdinfo_field(t, fd, info, "it_value");
		interval = fdinfo_field(t, fd, info, "it_interval");
		if (!clk || !ticks || !flags || !value || !interval)
			goto out;
		h.clockid = atoi(clk);
		h.ticks = strtoull(ticks, NULL, 10);
		h.settime_flags = strtoul(flags, NULL, 8);
		h.value_ns = fdinfo_time(value);
		h.interval_ns = fdinfo_time(interval);
		/* expired again between the two reads: forward once more */
		if (h.value_ns || !h.interval_ns)
			break;
	}
	file_common(&h.common, t, 0, f_flags, st, 0);
	if (!write_objref(&c->img, CKPT_OBJ_FILE, ref))
		ret = write_obj(&c->img, CKPT_HDR_EXT_FILE_TIMERFD, &h, sizeof(h));
out:
	free(info);
	close(copy);
	return ret;
}

struct watch {
	struct ckpt_hdr_ext_inotify_watch w;
	char path[4096];
};

/* a mount of the whole file system with kernel dev_t sdev, as the task sees it */
static int open_mount_of(struct task *t, unsigned int sdev)
{
	char *info = proc_read(t->tid, "mountinfo", NULL), *line, path[4200];
	unsigned int major = sdev >> 20, minor = sdev & 0xfffff, ma, mi;
	char root[4096], mnt[4096];
	int fd = -1;

	if (!info)
		return pr_perror("read /proc/%d/mountinfo", t->tid);
	for (line = info; line && fd < 0; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
		/* "36 35 98:0 /root /mount/point options ..." (octal escapes in the paths) */
		if (sscanf(line, "%*d %*d %u:%u %4095s %4095s", &ma, &mi, root, mnt) != 4 ||
		    ma != major || mi != minor || strcmp(root, "/") || strchr(mnt, '\\'))
			continue;
		snprintf(path, sizeof(path), "/proc/%d/root%s", t->tid, mnt);
		/* not O_PATH: open_by_handle_at takes no O_PATH descriptor */
		fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	}
	free(info);
	return fd;
}

/*
 * "inotify wd:%x ino:%lx sdev:%x mask:%x ignored_mask:%x fhandle-bytes:%x fhandle-type:%x
 * f_handle:%s": the watched inode's path from its file handle. 1: not found (ERROR record).
 */
static int watch_path(struct ctx *c, struct task *t, int fd, const char *line, struct watch *w)
{
	unsigned int wd, sdev, mask, ignored, bytes, type;
	unsigned long ino;
	char hex[2 * 128 + 1], link[64];
	struct { struct file_handle fh; unsigned char b[128]; } h;
	struct stat st;
	int mfd, pfd, n;
	unsigned int i;

	if (sscanf(line, "inotify wd:%x ino:%lx sdev:%x mask:%x ignored_mask:%x fhandle-bytes:%x "
		   "fhandle-type:%x f_handle:%256s", &wd, &ino, &sdev, &mask, &ignored, &bytes, &type,
		   hex) != 8 || bytes > sizeof(h.b) || strlen(hex) != 2 * bytes)
		return pr_err("pid %d fd %d: unexpected inotify fdinfo line '%.80s'", t->tid, fd, line);
	for (i = 0; i < bytes; i++)
		sscanf(hex + 2 * i, "%2hhx", &h.b[i]);
	h.fh.handle_bytes = bytes;
	h.fh.handle_type = type;
	w->w = (struct ckpt_hdr_ext_inotify_watch){ .wd = wd, .mask = mask, .ino = ino };
	mfd = open_mount_of(t, sdev);
	pfd = mfd < 0 ? -1 : open_by_handle_at(mfd, &h.fh, O_PATH | O_CLOEXEC);
	if (mfd >= 0)
		close(mfd);
	snprintf(link, sizeof(link), "/proc/self/fd/%d", pfd);
	n = pfd < 0 || fstat(pfd, &st) ? -1 : readlink(link, w->path, sizeof(w->path) - 1);
	if (pfd >= 0)
		close(pfd);
	if (n > 0)
		w->path[n] = 0;
	if (n <= 0 || w->path[0] != '/' || st.st_ino != ino || strstr(w->path, " (deleted)"))
		return ckpt_unsupported(c, "pid %d fd %d: inotify watch %d (inode %lu) not saved: its "
					"path is not found", t->tid, fd, wd, ino) ? -1 : 1;
	w->w.dev = st.st_dev;
	return 0;
}

/*
 * OBJREF EXT_FILE_INOTIFY nr_watches x (EXT_INOTIFY_WATCH FILE_NAME). Events queued and not
 * read cannot be read without taking them from the program: an ERROR record if any.
 */
static int dump_inotify(struct ctx *c, struct task *t, int ref, int fd, uint32_t f_flags,
			const struct stat *st)
{
	struct ckpt_hdr_ext_file_inotify h = { .nr_watches = 0 };
	struct watch *w = NULL;
	int copy = copy_fd(t, fd), queued = 0, cap = 0, i, ret = -1;
	char *info, *line;

	if (copy < 0)
		return -1;
	if (ioctl(copy, FIONREAD, &queued))
		queued = -1;
	close(copy);
	if (queued && ckpt_unsupported(c, "pid %d fd %d: %d bytes of inotify events not read yet "
				       "are not saved", t->tid, fd, queued))
		return -1;
	info = read_fdinfo(t, fd);
	if (!info)
		return -1;
	for (line = info; line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
		int r;

		if (strncmp(line, "inotify wd:", 11))
			continue;
		if ((int)h.nr_watches == cap) {
			struct watch *n = realloc(w, (cap = cap * 2 + 4) * sizeof(*n));

			if (!n) {
				pr_perror("inotify watches");
				goto out;
			}
			w = n;
		}
		r = watch_path(c, t, fd, line, &w[h.nr_watches]);
		if (r < 0)
			goto out;
		if (!r)
			h.nr_watches++;
	}
	file_common(&h.common, t, 0, f_flags, st, 0);
	if (write_objref(&c->img, CKPT_OBJ_FILE, ref) ||
	    write_obj(&c->img, CKPT_HDR_EXT_FILE_INOTIFY, &h, sizeof(h)))
		goto out;
	for (i = 0; i < (int)h.nr_watches; i++)
		if (write_obj(&c->img, CKPT_HDR_EXT_INOTIFY_WATCH, &w[i].w, sizeof(w[i].w)) ||
		    write_buffer(&c->img, CKPT_HDR_FILE_NAME, w[i].path, strlen(w[i].path) + 1))
			goto out;
	ret = 0;
out:
	free(w);
	free(info);
	return ret;
}

int dump_evfd_file(struct ctx *c, struct task *t, int ref, int fd, uint32_t kind,
		   uint32_t f_flags, const struct stat *st)
{
	char *info;
	int ret;

	if (kind == CKPT_FILE_EPOLL)
		return dump_epoll_file(c, t, ref, f_flags, st);
	if (kind == CKPT_HDR_EXT_FILE_TIMERFD)
		return dump_timerfd(c, t, ref, fd, f_flags, st);
	if (kind == CKPT_HDR_EXT_FILE_INOTIFY)
		return dump_inotify(c, t, ref, fd, f_flags, st);
	info = read_fdinfo(t, fd);
	if (!info)
		return -1;
	if (kind == CKPT_FILE_EVENTFD)
		ret = dump_eventfd(c, t, ref, fd, f_flags, st, info);
	else if (kind == CKPT_HDR_EXT_FILE_SIGNALFD)
		ret = dump_signalfd(c, t, ref, fd, f_flags, st, info);
	else
		ret = pr_err("pid %d fd %d: no dumper for file kind %u", t->tid, fd, kind);
	free(info);
	return ret;
}

/* epoll files whose items are written (an epoll shared by two file tables: once) */
static int *items_done;
static int nr_items_done, cap_items_done;

static bool items_written(int epref)
{
	int i;

	for (i = 0; i < nr_items_done; i++)
		if (items_done[i] == epref)
			return true;
	return false;
}

/*
 * An item is (file, descriptor number) in the kernel: the number is the one the watching
 * process used. Its target is the file at that number in this table if kcmp(KCMP_EPOLL_TFD)
 * says so; an item whose descriptor was closed (the file lives on elsewhere) or whose
 * target was not saved is an ERROR record.
 */
static int item_target(struct ctx *c, struct task *t, int epfd, int tfd, const int *fds,
		       const int *refs, int nr_fds)
{
	struct kcmp_epoll_slot slot = { .efd = epfd, .tfd = tfd, .toff = 0 };
	int i;

	for (i = 0; i < nr_fds && fds[i] != tfd; i++)
		;
	if (i < nr_fds && syscall(SYS_kcmp, t->tid, t->tid, KCMP_EPOLL_TFD, tfd, &slot) == 0)
		return refs[i];
	if (ckpt_unsupported(c, "pid %d epoll fd %d: its item for fd %d not saved (%s)", t->tid,
			     epfd, tfd, i < nr_fds ? "that descriptor is now another file" :
			     "the descriptor was closed or its file was not saved"))
		return -1;
	return 0;
}

int dump_epoll_items(struct ctx *c, struct task *t, int epfd, int epref, const int *fds,
		     const int *refs, int nr_fds)
{
	struct ckpt_hdr_eventpoll_items h = { .epfile_objref = epref };
	struct ckpt_eventpoll_item *items = NULL;
	int cap = 0, ret = -1;
	char *info, *line;

	if (items_written(epref))
		return 0;
	if (nr_items_done == cap_items_done) {
		int *n = realloc(items_done, (cap_items_done = cap_items_done * 2 + 16) * sizeof(*n));

		if (!n)
			return pr_perror("epoll list");
		items_done = n;
	}
	items_done[nr_items_done++] = epref;
	info = read_fdinfo(t, epfd);
	if (!info)
		return -1;
	for (line = info; line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
		unsigned int tfd, events;
		unsigned long long data;
		int target;

		/* "tfd: %8d events: %8x data: %16llx  pos:%lli ino:%lx sdev:%x" */
		if (sscanf(line, "tfd: %u events: %x data: %llx", &tfd, &events, &data) != 3)
			continue;
		target = item_target(c, t, epfd, tfd, fds, refs, nr_fds);
		if (target < 0)
			goto out;
		if (!target)
			continue;
		if (h.num_items == (unsigned int)cap) {
			struct ckpt_eventpoll_item *n = realloc(items, (cap = cap * 2 + 16) * sizeof(*n));

			if (!n) {
				pr_perror("epoll items");
				goto out;
			}
			items = n;
		}
		items[h.num_items++] = (struct ckpt_eventpoll_item){
			.data = data, .fd = tfd, .file_objref = target, .events = events,
		};
	}
	/* as the kernel did: no BUFFER after an EPOLL_ITEMS of no items */
	ret = write_obj(&c->img, CKPT_HDR_EPOLL_ITEMS, &h, sizeof(h));
	if (!ret && h.num_items)
		ret = write_buffer(&c->img, CKPT_HDR_BUFFER, items, h.num_items * sizeof(*items));
out:
	free(items);
	free(info);
	return ret;
}
