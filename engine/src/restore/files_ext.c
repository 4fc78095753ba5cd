/*
 * Deleted files (ghosts) and memfds on restore, and the check of a reopened file against
 * what it was at the dump (EXT_FILE_STAT). The mirror of files_ext.c.
 *
 * The first FILE object naming an inode (ino_objref) makes the file again and fills it from
 * its EXT_EXTENT records: a ghost is an O_TMPFILE in the directory it was deleted from, with
 * its mode and owner, named once and unlinked again so that /proc shows its old name; a
 * memfd is memfd_create(name) with its seals added last. Every FILE object of the inode
 * (descriptors and mappings) is then a new open of that one file with its own flags and
 * offset, so they share the contents as before, and an O_APPEND writer goes on appending.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "restore.h"

#define EXTENT_CHUNK	(1 << 20)	/* bytes read from the image at once */
#define FMODE_EXEC_K	040
#define MEMFD_NAME_MAX	249		/* memfd_create(2): 249 bytes and a NUL */
#define F_SEAL_EXEC_K	0x0020		/* Linux 6.3; older headers lack it */

/* the contents: EXT_EXTENTs up to the one of no data at offset size; written to fd (>= 0) */
static int read_extents(struct rctx *c, int fd, uint64_t size, const char *name)
{
	uint64_t next = 0;
	char *buf = NULL;
	int ret = -1;

	for (;;) {
		struct ckpt_hdr h;
		uint64_t off, len;

		if (rs_expect(&c->in, CKPT_HDR_EXT_EXTENT, &h))
			goto out;
		if (h.len < sizeof(struct ckpt_hdr_ext_extent) || rs_read(&c->in, &off, sizeof(off))) {
			if (h.len < sizeof(struct ckpt_hdr_ext_extent))
				rs_invalid(&c->in, "EXT_EXTENT at offset %llu: %u bytes",
					   (unsigned long long)c->in.rec_off, h.len);
			goto out;
		}
		len = h.len - sizeof(struct ckpt_hdr_ext_extent);
		if (off < next || off > size || len > size - off || (!len && off != size)) {
			rs_invalid(&c->in, "EXT_EXTENT at offset %llu: %llu bytes at %llu of %s (size %llu, "
				   "next data at %llu or later)", (unsigned long long)c->in.rec_off,
				   (unsigned long long)len, (unsigned long long)off, name,
				   (unsigned long long)size, (unsigned long long)next);
			goto out;
		}
		if (!len)
			break;
		next = off + len;
		if (fd < 0) {
			if (rs_skip(&c->in, len))
				goto out;
			continue;
		}
		if (!buf && !(buf = malloc(EXTENT_CHUNK))) {
			pr_perror("contents of %s", name);
			goto out;
		}
		while (len) {
			size_t n = len > EXTENT_CHUNK ? EXTENT_CHUNK : len;

			if (rs_read(&c->in, buf, n))
				goto out;
			if (pwrite(fd, buf, n, off) != (ssize_t)n) {
				pr_perror("write the contents of %s", name);
				goto out;
			}
			off += n;
			len -= n;
		}
	}
	ret = 0;
out:
	free(buf);
	return ret;
}

/* a directory's part of path, in dir */
static void dir_of(const char *path, char *dir, size_t size)
{
	const char *slash = strrchr(path, '/');
	int n = slash == path ? 1 : (int)(slash - path);

	snprintf(dir, size, "%.*s", n, path);
}

/*
 * An unnamed file in the directory of path with the ghost's mode and owner (an O_TMPFILE:
 * nobody sees it before it is complete); the directory must still be there.
 */
static int ghost_create(struct rctx *c, const char *path, const struct ckpt_hdr_ext_file_ghost *g)
{
	char dir[4096];
	struct stat st;
	int fd;

	dir_of(path, dir, sizeof(dir));
	if (stat(dir, &st) || !S_ISDIR(st.st_mode))
		return rst_refuse(c, "deleted file %s: its directory %s is gone", path, dir);
	if (c->dry)
		return 0;
	fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, g->mode & 07777);
	if (fd < 0)
		return rst_refuse(c, "deleted file %s: an unnamed file in %s: %s", path, dir, strerror(errno));
	/* chown first: it clears set-id bits that fchmod sets */
	if (fchown(fd, g->uid, g->gid) || fchmod(fd, g->mode & 07777)) {
		rst_refuse(c, "deleted file %s: owner %u:%u, mode %o: %s", path, g->uid, g->gid,
			   g->mode & 07777, strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

/*
 * Give the complete ghost its old name for a moment and unlink it again, so that
 * /proc/PID/fd shows "PATH (deleted)" as before. If the name is taken (a new file has it),
 * the ghost stays unnamed ("DIR/#INODE (deleted)" in /proc): nothing of the new file is
 * touched. Either way the file is then held by an O_PATH descriptor: the driver is no
 * writer of it (a deleted executable may become a task's exe, which allows none).
 */
static int ghost_name(int fd, const char *path)
{
	char self[64];
	struct stat a, b;
	int named = -1;

	snprintf(self, sizeof(self), "/proc/self/fd/%d", fd);
	if (!linkat(AT_FDCWD, self, AT_FDCWD, path, AT_SYMLINK_FOLLOW)) {
		named = open(path, O_PATH | O_NOFOLLOW | O_CLOEXEC);
		if (named >= 0 && (fstat(named, &a) || fstat(fd, &b) || a.st_ino != b.st_ino ||
				   a.st_dev != b.st_dev || unlink(path))) {
			close(named);
			named = -1;
		}
	}
	if (named < 0)
		named = open(self, O_PATH | O_CLOEXEC);
	if (named < 0)
		return pr_perror("hold the deleted file %s", path);
	close(fd);
	return named;
}

/* memfd_create as it was (sealing is always allowed here: the seals say what was) */
static int memfd_make(struct rctx *c, const char *name)
{
	int fd;

	if (strlen(name) > MEMFD_NAME_MAX)
		return rs_invalid(&c->in, "memfd name of %zu bytes (at most %d)", strlen(name), MEMFD_NAME_MAX);
	if (c->dry)
		return 0;
	fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
	return fd < 0 ? rst_refuse(c, "memfd %s: %s", name, strerror(errno)) : fd;
}

/* after the contents: the size, then a memfd's seals (last: they forbid what came before) */
static int finish_contents(struct rctx *c, int fd, const char *name, uint64_t size, bool memfd,
			   uint32_t seals)
{
	if (ftruncate(fd, size))
		return rst_refuse(c, "%s: size %llu: %s", name, (unsigned long long)size, strerror(errno));
	/* the record has no mode: a memfd sealed against exec was made 0666 (MFD_NOEXEC_SEAL) */
	if (memfd && (seals & F_SEAL_EXEC_K) && fchmod(fd, 0666))
		return rst_refuse(c, "memfd %s: mode 0666: %s", name, strerror(errno));
	if (memfd && seals && fcntl(fd, F_ADD_SEALS, seals))
		return rst_refuse(c, "memfd %s: seals %#x: %s", name, seals, strerror(errno));
	return 0;
}

/* OBJREF(FILE) EXT_FILE_GHOST FILE_NAME | EXT_FILE_MEMFD STRING, [contents the first time] */
int restore_ext_file(struct rctx *c, const struct ckpt_hdr *h)
{
	bool memfd = h->type == CKPT_HDR_EXT_FILE_MEMFD, first;
	union {
		struct ckpt_hdr_ext_file_ghost g;
		struct ckpt_hdr_ext_file_memfd m;
	} rec;
	const struct ckpt_hdr_file *f = &rec.g.common;
	struct robj *o = obj_define(c, CKPT_OBJ_FILE), *ino;
	char *name = NULL, self[64];
	uint64_t size;
	int ino_ref, ret = -1, flags;

	if (!o || rs_record(&c->in, h, &rec, memfd ? sizeof(rec.m) : sizeof(rec.g)))
		return -1;
	if (memfd) {
		struct ckpt_hdr s;

		if (rs_expect(&c->in, CKPT_HDR_STRING, &s) || !(name = rs_payload_alloc(&c->in, &s, 1, 4096)))
			return -1;
		ino_ref = rec.m.ino_objref;
		size = rec.m.size;
	} else {
		if (!(name = read_path(c)))
			return -1;
		ino_ref = rec.g.ino_objref;
		size = rec.g.size;
	}
	ino = obj_implicit(c, ino_ref, CKPT_OBJ_INODE, &first);
	if (!ino)
		goto out;
	if (first) {
		int fd = memfd ? memfd_make(c, name) : ghost_create(c, name, &rec.g);

		if (fd < 0)
			goto out;
		if (c->dry)
			fd = -1;
		ino->fd = fd;
		if (read_extents(c, fd, size, name))
			goto out;
		if (fd >= 0 && finish_contents(c, fd, name, size, memfd, memfd ? rec.m.seals : 0))
			goto out;
		if (fd >= 0 && !memfd && (ino->fd = ghost_name(fd, name)) < 0)
			goto out;
	}
	ret = 0;
	if (c->dry)
		goto out;
	/* a description of its own: its flags (O_APPEND...) and its offset */
	flags = (f->f_flags & ~(O_CREAT | O_EXCL | O_TRUNC | FMODE_EXEC_K)) | O_NOCTTY | O_CLOEXEC;
	snprintf(self, sizeof(self), "/proc/self/fd/%d", ino->fd);
	o->fd = open(self, flags);
	if (o->fd < 0)
		ret = rst_refuse(c, "reopen %s %s: %s", memfd ? "memfd" : "deleted file", name, strerror(errno));
	else if (f->f_pos && lseek(o->fd, f->f_pos, SEEK_SET) < 0)
		ret = rst_refuse(c, "%s: seek to %llu: %s", name, (unsigned long long)f->f_pos, strerror(errno));
out:
	free(name);
	return ret;
}

static void format_time(char *buf, size_t size, int64_t sec, uint32_t nsec)
{
	time_t t = sec;
	struct tm tm;
	size_t n = strftime(buf, size, "%Y-%m-%d %H:%M:%S", gmtime_r(&t, &tm));

	snprintf(buf + n, size - n, ".%09u UTC", nsec);
}

/*
 * EXT_FILE_STAT after the FILE_NAME of a regular file: refuse the file if its size or
 * mtime changed since the dump, unless --allow-changed-files.
 */
int restore_file_stat(struct rctx *c, const char *path)
{
	struct ckpt_hdr_ext_file_stat fs;
	struct ckpt_hdr h;
	struct stat st;
	char then[64], now[64];

	if (rs_peek(&c->in, &h) || h.type != CKPT_HDR_EXT_FILE_STAT)
		return 0;
	if (rs_next(&c->in, &h) || rs_record(&c->in, &h, &fs, sizeof(fs)))
		return -1;
	if (c->allow_changed_files || stat(path, &st) || !S_ISREG(st.st_mode))
		return 0;	/* a file that is gone or of another kind: open_generic says so */
	if ((uint64_t)st.st_size == fs.size && st.st_mtim.tv_sec == fs.mtime_sec &&
	    (uint32_t)st.st_mtim.tv_nsec == fs.mtime_nsec)
		return 0;
	format_time(then, sizeof(then), fs.mtime_sec, fs.mtime_nsec);
	format_time(now, sizeof(now), st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
	return rst_refuse(c, "file %s changed since the dump: size %llu -> %llu, mtime %s -> %s "
			  "(--allow-changed-files accepts it)", path, (unsigned long long)fs.size,
			  (unsigned long long)st.st_size, then, now);
}
