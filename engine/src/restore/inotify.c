/*
 * inotify instances on restore: the mirror of inotify.c.
 *
 * The driver creates the instance and adds each watch by its path, in wd order. The
 * kernel numbers a group's watches cyclically from 1 (idr_alloc_cyclic), so a number
 * the program removed before the dump is skipped by adding and removing a watch on a
 * private inode (a memfd) until the next number is the one the image has. A watched path
 * that is gone, or that names another file than at the dump, is refused.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "restore.h"

#define MAX_WATCHES	(1 << 20)	/* fs.inotify.max_user_watches is far below */

/* take numbers until the next watch gets wd; 0, or -1 if wd lies behind */
static int skip_to_wd(struct rctx *c, int ifd, int *next, int wd)
{
	char self[64], buf[4096];
	int mfd, w;

	if (*next > wd)
		return rst_refuse(c, "inotify watch %d: the watches are not in wd order", wd);
	if (*next == wd)
		return 0;
	mfd = memfd_create("imgtools-inotify-gap", MFD_CLOEXEC);
	if (mfd < 0)
		return pr_perror("memfd");
	snprintf(self, sizeof(self), "/proc/self/fd/%d", mfd);
	while (*next < wd) {
		w = inotify_add_watch(ifd, self, IN_ACCESS);
		if (w < 0 || inotify_rm_watch(ifd, w)) {
			close(mfd);
			return pr_perror("inotify: skip watch number %d", *next);
		}
		*next = w + 1;
	}
	close(mfd);
	/* the IN_IGNORED events of those removals: the program never had them (the instance
	 * is non-blocking until the end, and no watch of the image exists yet past next) */
	while (read(ifd, buf, sizeof(buf)) > 0)
		;
	return 0;
}

int restore_inotify(struct rctx *c, const struct ckpt_hdr *h)
{
	struct ckpt_hdr_ext_file_inotify f;
	struct robj *o = obj_define(c, CKPT_OBJ_FILE);
	int ifd = -1, next = 1, ret = -1;
	uint32_t i;

	if (!o || rs_record(&c->in, h, &f, sizeof(f)))
		return -1;
	if (f.nr_watches > MAX_WATCHES)
		return rs_invalid(&c->in, "EXT_FILE_INOTIFY at offset %llu: %u watches",
				  (unsigned long long)c->in.rec_off, f.nr_watches);
	if (!c->dry) {
		ifd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);	/* the image's flags at the end */
		if (ifd < 0)
			return rst_refuse(c, "inotify_init1: %s", strerror(errno));
	}
	for (i = 0; i < f.nr_watches; i++) {
		struct ckpt_hdr_ext_inotify_watch w;
		struct ckpt_hdr wh;
		struct stat st;
		char *path;
		int got;

		if (rs_expect(&c->in, CKPT_HDR_EXT_INOTIFY_WATCH, &wh) || rs_record(&c->in, &wh, &w, sizeof(w)))
			goto out;
		path = read_file_name(c);
		if (!path)
			goto out;
		if (stat(path, &st)) {
			ret = rst_refuse(c, "inotify watch %d on %s: %s", w.wd, path, strerror(errno));
			free(path);
			goto out;
		}
		if (st.st_ino != w.ino || st.st_dev != w.dev) {
			ret = rst_refuse(c, "inotify watch %d on %s: another file than at the dump "
					 "(inode %llu, was %llu)", w.wd, path,
					 (unsigned long long)st.st_ino, (unsigned long long)w.ino);
			free(path);
			goto out;
		}
		if (!c->dry) {
			if (w.wd < 1 || skip_to_wd(c, ifd, &next, w.wd)) {
				free(path);
				goto out;
			}
			got = inotify_add_watch(ifd, path, w.mask);
			if (got != w.wd) {
				ret = rst_refuse(c, "inotify watch %d on %s: %s", w.wd, path,
						 got < 0 ? strerror(errno) : "got another watch number");
				free(path);
				goto out;
			}
			next = got + 1;
		}
		free(path);
	}
	if (!c->dry && !(f.common.f_flags & O_NONBLOCK) && fcntl(ifd, F_SETFL, 0)) {
		pr_perror("inotify flags");
		goto out;
	}
	o->fd = ifd;
	return 0;
out:
	if (ifd >= 0)
		close(ifd);
	return ret ? ret : -1;
}
