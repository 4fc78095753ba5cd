/*
 * Event files on restore: eventfd and epoll (FILE records), signalfd, timerfd and inotify
 * (extension object records), and the epoll items. The mirror of eventpoll.c.
 *
 * The driver makes each file once (eventfd2, epoll_create1, signalfd4, timerfd_create) and
 * the tasks take it like any other file (files.c). An epoll item is keyed by (file,
 * descriptor number) in the kernel, so the items are added by an injected epoll_ctl in the
 * task, once its table is installed, with the numbers the image gives: EPOLL_CTL_MOD/DEL by
 * the program then find them. A signalfd reads the signals of whoever reads it, so the
 * driver's is as good as the program's own.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/kcmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "restore.h"

#define TFD_IOC_SET_TICKS_K	_IOW('T', 0, uint64_t)	/* CONFIG_CHECKPOINT_RESTORE */
#define EPOLL_ITEMS_MAX		(1 << 20)
#define INOTIFY_WATCHES_MAX	(1 << 16)
#define INOTIFY_WD_SKIP_MAX	(1 << 20)	/* watch numbers burnt to reach the image's */

static int set_nonblock(struct rctx *c, int fd, uint32_t f_flags)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0 || fcntl(fd, F_SETFL, (fl & ~O_NONBLOCK) | (f_flags & O_NONBLOCK)))
		return pr_perror("file flags");
	(void)c;
	return 0;
}

static int open_eventfd(struct rctx *c, struct robj *o, const struct ckpt_hdr_file_eventfd *f)
{
	if (f->count == UINT64_MAX)
		return rs_invalid(&c->in, "eventfd count %#llx at offset %llu is above the maximum",
				  (unsigned long long)f->count, (unsigned long long)c->in.rec_off);
	if (f->flags & ~(EFD_SEMAPHORE | EFD_NONBLOCK | EFD_CLOEXEC))
		return rst_refuse(c, "eventfd flags %#x", f->flags);
	if (c->dry)
		return 0;
	/* eventfd2 takes an int count: a larger one is written in */
	o->fd = eventfd(0, EFD_CLOEXEC | (f->flags & (EFD_SEMAPHORE | EFD_NONBLOCK)));
	if (o->fd < 0)
		return pr_perror("eventfd");
	if (f->count && write(o->fd, &f->count, sizeof(f->count)) != sizeof(f->count))
		return pr_perror("eventfd: set its count");
	return set_nonblock(c, o->fd, f->common.f_flags);
}

int restore_evfd_file(struct rctx *c, struct robj *o, const struct ckpt_hdr_file *f, size_t len)
{
	if (f->f_type == CKPT_FILE_EVENTFD) {
		if (len != sizeof(struct ckpt_hdr_file_eventfd))
			return rs_invalid(&c->in, "eventfd FILE at offset %llu: %zu bytes, expected %zu",
					  (unsigned long long)c->in.rec_off, len,
					  sizeof(struct ckpt_hdr_file_eventfd));
		return open_eventfd(c, o, (const struct ckpt_hdr_file_eventfd *)f);
	}
	/* epoll: the common part only; the items follow the file table */
	if (len != sizeof(*f))
		return rs_invalid(&c->in, "epoll FILE at offset %llu: %zu bytes, expected %zu",
				  (unsigned long long)c->in.rec_off, len, sizeof(*f));
	if (c->dry)
		return 0;
	o->fd = epoll_create1(EPOLL_CLOEXEC);
	if (o->fd < 0)
		return pr_perror("epoll_create1");
	return set_nonblock(c, o->fd, f->f_flags);
}

static int open_signalfd(struct rctx *c, struct robj *o, const struct ckpt_hdr_ext_file_signalfd *f)
{
	if (c->dry)
		return 0;
	o->fd = syscall(SYS_signalfd4, -1, &f->sigmask, sizeof(f->sigmask),
			SFD_CLOEXEC | (f->common.f_flags & O_NONBLOCK));
	if (o->fd < 0)
		return pr_perror("signalfd");
	return 0;
}

static struct timespec ns_timespec(int64_t ns)
{
	return (struct timespec){ .tv_sec = ns / 1000000000LL, .tv_nsec = ns % 1000000000LL };
}

/*
 * Armed with the time that was left (relative, so the time namespace does not matter);
 * TFD_TIMER_CANCEL_ON_SET needs an absolute time on a realtime clock, computed from now.
 * The expirations not read yet are put back with TFD_IOC_SET_TICKS after arming (arming
 * clears them); without that ioctl one pending expiration of a one-shot timer is made by
 * arming it to expire at once, and more than that is refused.
 */
static int open_timerfd(struct rctx *c, struct robj *o, const struct ckpt_hdr_ext_file_timerfd *f)
{
	struct itimerspec its = { ns_timespec(f->interval_ns), ns_timespec(f->value_ns) };
	int flags = 0;

	if (f->value_ns < 0 || f->interval_ns < 0 ||
	    f->settime_flags & ~(TFD_TIMER_ABSTIME | TFD_TIMER_CANCEL_ON_SET))
		return rs_invalid(&c->in, "timerfd at offset %llu: value %lld ns, interval %lld ns, "
				  "flags %#x", (unsigned long long)c->in.rec_off, (long long)f->value_ns,
				  (long long)f->interval_ns, f->settime_flags);
	if (c->dry)
		return 0;
	o->fd = timerfd_create(f->clockid, TFD_CLOEXEC | (f->common.f_flags & O_NONBLOCK));
	if (o->fd < 0)
		return rst_refuse(c, "timerfd on clock %d: %s", f->clockid, strerror(errno));
	if (!f->value_ns && f->interval_ns)
		its.it_value = its.it_interval;	/* expired at the dump: the next period */
	if (f->settime_flags & TFD_TIMER_CANCEL_ON_SET && (its.it_value.tv_sec || its.it_value.tv_nsec)) {
		struct timespec now;

		clock_gettime(f->clockid, &now);
		its.it_value = ns_timespec(now.tv_sec * 1000000000LL + now.tv_nsec + f->value_ns);
		flags = TFD_TIMER_ABSTIME | TFD_TIMER_CANCEL_ON_SET;
	}
	if (timerfd_settime(o->fd, flags, &its, NULL))
		return rst_refuse(c, "arm a timerfd: %s", strerror(errno));
	if (!f->ticks || !ioctl(o->fd, TFD_IOC_SET_TICKS_K, &f->ticks))
		return 0;
	if (f->ticks == 1 && !f->value_ns && !f->interval_ns) {
		its.it_value = (struct timespec){ 0, 1 };
		return timerfd_settime(o->fd, 0, &its, NULL) ? pr_perror("arm a timerfd") : 0;
	}
	return rst_refuse(c, "a timerfd with %llu expirations not read: this kernel cannot set "
			  "them (TFD_IOC_SET_TICKS: %s)", (unsigned long long)f->ticks, strerror(errno));
}

struct rwatch {
	struct ckpt_hdr_ext_inotify_watch w;
	char *path;
};

static int by_wd(const void *a, const void *b)
{
	return ((const struct rwatch *)a)->w.wd - ((const struct rwatch *)b)->w.wd;
}

/*
 * One watch with the image's number. Numbers are handed out in increasing order per
 * inotify instance, so a lower one is removed and the watch added again until it gets its
 * number (the IN_IGNORED events that leaves are drained before the task gets the file).
 */
static int add_watch(struct rctx *c, int fd, const struct rwatch *w, bool *burnt)
{
	int wd, n;

	for (n = 0; n < INOTIFY_WD_SKIP_MAX; n++) {
		wd = inotify_add_watch(fd, w->path, w->w.mask);
		if (wd < 0)
			return rst_refuse(c, "inotify watch of %s: %s", w->path, strerror(errno));
		if (wd >= w->w.wd)
			break;
		inotify_rm_watch(fd, wd);
		*burnt = true;
	}
	if (wd != w->w.wd)
		return rst_refuse(c, "inotify watch of %s: got number %d, the image has %d", w->path,
				  wd, w->w.wd);
	return 0;
}

static int drain(int fd)
{
	char buf[4096];
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK))
		return pr_perror("inotify flags");
	while (read(fd, buf, sizeof(buf)) > 0)
		;
	return fcntl(fd, F_SETFL, fl) ? pr_perror("inotify flags") : 0;
}

/* EXT_FILE_INOTIFY, then nr_watches x (EXT_INOTIFY_WATCH FILE_NAME) */
static int open_inotify(struct rctx *c, struct robj *o, const struct ckpt_hdr_ext_file_inotify *f)
{
	struct rwatch *w;
	bool burnt = false;
	uint32_t i, n = 0;
	int ret = -1;

	if (f->nr_watches > INOTIFY_WATCHES_MAX)
		return rs_invalid(&c->in, "inotify at offset %llu with %u watches",
				  (unsigned long long)c->in.rec_off, f->nr_watches);
	w = calloc(f->nr_watches + 1, sizeof(*w));
	if (!w)
		return pr_perror("inotify watches");
	for (n = 0; n < f->nr_watches; n++) {
		struct ckpt_hdr h;
		struct stat st;

		if (rs_expect(&c->in, CKPT_HDR_EXT_INOTIFY_WATCH, &h) ||
		    rs_record(&c->in, &h, &w[n].w, sizeof(w[n].w)) || !(w[n].path = read_path(c)))
			goto out;
		if (w[n].w.wd <= 0 || (n && w[n].w.wd == w[n - 1].w.wd)) {
			rs_invalid(&c->in, "inotify watch number %d at offset %llu", w[n].w.wd,
				   (unsigned long long)c->in.rec_off);
			goto out;
		}
		if (stat(w[n].path, &st) || st.st_ino != w[n].w.ino || st.st_dev != w[n].w.dev) {
			rst_refuse(c, "inotify watch %d: %s is %s", w[n].w.wd, w[n].path,
				   errno == ENOENT ? "gone" : "another file now");
			goto out;
		}
	}
	if (c->dry) {
		ret = 0;
		goto out;
	}
	o->fd = inotify_init1(IN_CLOEXEC | (f->common.f_flags & O_NONBLOCK));
	if (o->fd < 0) {
		pr_perror("inotify_init1");
		goto out;
	}
	qsort(w, n, sizeof(*w), by_wd);
	for (i = 0; i < n; i++)
		if (add_watch(c, o->fd, &w[i], &burnt))
			goto out;
	ret = burnt ? drain(o->fd) : 0;
out:
	for (i = 0; i < f->nr_watches; i++)
		free(w[i].path);	/* NULL past the last one read */
	free(w);
	return ret;
}

/* EXT_FILE_SIGNALFD, _TIMERFD, _INOTIFY: the FILE object the OBJREF before it introduced */
int restore_evfd_ext_file(struct rctx *c, const struct ckpt_hdr *h)
{
	union {
		struct ckpt_hdr_ext_file_signalfd sfd;
		struct ckpt_hdr_ext_file_timerfd tfd;
		struct ckpt_hdr_ext_file_inotify ifd;
	} f;
	struct robj *o = obj_define(c, CKPT_OBJ_FILE);

	if (!o)
		return -1;
	if (h->type == CKPT_HDR_EXT_FILE_SIGNALFD)
		return rs_record(&c->in, h, &f.sfd, sizeof(f.sfd)) ? -1 : open_signalfd(c, o, &f.sfd);
	if (h->type == CKPT_HDR_EXT_FILE_INOTIFY)
		return rs_record(&c->in, h, &f.ifd, sizeof(f.ifd)) ? -1 : open_inotify(c, o, &f.ifd);
	return rs_record(&c->in, h, &f.tfd, sizeof(f.tfd)) ? -1 : open_timerfd(c, o, &f.tfd);
}

/* one item, added in the task to its copy tmp of the epoll file */
static int add_item(struct rctx *c, struct rproc *p, int tmp, const struct ckpt_eventpoll_item *it)
{
	struct rtask *t = &c->tasks[p->leader];
	struct robj *target = obj_get(c, it->file_objref, CKPT_OBJ_FILE);
	struct epoll_event ev = { .events = it->events, .data.u64 = it->data };
	uint64_t at;
	long r;

	if (!target)
		return -1;
	if (it->fd >= (1 << 20))
		return rs_invalid(&c->in, "EPOLL_ITEMS at offset %llu: descriptor %u",
				  (unsigned long long)c->in.rec_off, it->fd);
	if (c->dry)
		return 0;
	if (syscall(SYS_kcmp, t->host, getpid(), KCMP_FILE, it->fd, target->fd))
		return rst_refuse(c, "pid %d: an epoll item watches descriptor %u, which is not the "
				  "item's file (objref %d) in its table", t->pid, it->fd,
				  it->file_objref);
	at = rinj_put(c, p, 0, &ev, sizeof(ev));
	if (!at)
		return -1;
	r = rinj_syscall(c, t, SYS_epoll_ctl, tmp, EPOLL_CTL_ADD, it->fd, at, 0, 0);
	if (r == INFECT_FAILED)
		return -1;
	if (r < 0)
		return rst_refuse(c, "pid %d: epoll_ctl(ADD) of descriptor %u (events %#x): %s", t->pid,
				  it->fd, it->events, strerror(-r));
	return 0;
}

/* EPOLL_ITEMS [+ BUFFER of items], after the file table of the task that first had the epoll */
int restore_epoll_items(struct rctx *c, const struct ckpt_hdr *h)
{
	struct ckpt_hdr_eventpoll_items ei;
	struct ckpt_eventpoll_item *items = NULL;
	struct rproc *p = cur_proc(c);
	struct ckpt_hdr b;
	struct robj *ep;
	int tmp = -1, ret = -1;
	uint32_t i;

	if (!p || rs_record(&c->in, h, &ei, sizeof(ei)))
		return -1;
	ep = obj_get(c, ei.epfile_objref, CKPT_OBJ_FILE);
	if (!ep)
		return -1;
	if (!ei.num_items)
		return 0;	/* and no BUFFER */
	if (rs_expect(&c->in, CKPT_HDR_BUFFER, &b))
		return -1;
	if (ei.num_items > EPOLL_ITEMS_MAX || b.len - sizeof(b) != ei.num_items * sizeof(*items))
		return rs_invalid(&c->in, "EPOLL_ITEMS of %u items with a BUFFER of %zu bytes",
				  ei.num_items, b.len - sizeof(b));
	items = rs_payload_alloc(&c->in, &b, b.len - sizeof(b), b.len - sizeof(b));
	if (!items)
		goto out;
	if (!c->dry) {
		if (p->leader < 0 || !p->prepared)
			return rs_invalid(&c->in, "EPOLL_ITEMS at offset %llu outside a task's files",
					  (unsigned long long)c->in.rec_off);
		tmp = task_take_fd(c, p, ep->fd);
		if (tmp < 0)
			goto out;
	}
	for (i = 0; i < ei.num_items; i++)
		if (add_item(c, p, tmp, &items[i]))
			goto out;
	ret = 0;
out:
	if (tmp >= 0 && rinj_syscall(c, &c->tasks[p->leader], SYS_close, tmp, 0, 0, 0, 0, 0))
		ret = pr_err("pid %d: close the restorer's epoll descriptor", c->tasks[p->leader].pid);
	free(items);
	return ret;
}
