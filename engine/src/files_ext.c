/*
 * Files whose contents only the tree can still reach: deleted files still open or mapped
 * ("ghosts") and memfds. v23 has no record for them; they are imgtools extension object
 * records (docs/format-choices.md, "Deleted files and memfd"):
 *
 *   OBJREF(FILE n) EXT_FILE_GHOST FILE_NAME(the path it had) [EXT_EXTENT... end]
 *   OBJREF(FILE n) EXT_FILE_MEMFD STRING(name)               [EXT_EXTENT... end]
 *
 * Every FILE object (descriptor or mapping) of one inode names the same ino_objref; the
 * first carries the contents, as runs of data (SEEK_DATA/SEEK_HOLE: holes are not
 * written), read through /proc/PID/fd/N or /proc/PID/map_files/A-B, which reach a file
 * that has no name any more. Ghost contents are bounded per image (--ghost-limit); memfd
 * contents are memory, like shared anonymous memory, and are not.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "engine.h"

#define EXTENT_CHUNK	(1 << 20)	/* data bytes per EXT_EXTENT record, at most */
#define HUGETLBFS_MAGIC	0x958458f6
#define DELETED		" (deleted)"
#define MEMFD_PREFIX	"/memfd:"

/* deleted files seen so far, by inode: whether their contents fit in the limit */
struct ghost_ino {
	dev_t dev;
	ino_t ino;
	bool refused;
};
static struct ghost_ino *ghosts;
static int nr_ghosts;

static bool ends_deleted(const char *path)
{
	size_t n = strlen(path), d = strlen(DELETED);

	return n > d && !strcmp(path + n - d, DELETED);
}

/* names of shmem objects that are not files of a directory (shm, shared anonymous, aio) */
static bool internal_object(const char *path)
{
	static const char *const prefixes[] = { "/SYSV", "/dev/zero" DELETED, "/anon_hugepage",
						"/[aio]", "/i915", "/drm mm object" };
	size_t i;

	for (i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++)
		if (!strncmp(path, prefixes[i], strlen(prefixes[i])))
			return true;
	return false;
}

/*
 * A memfd is "/memfd:NAME (deleted)"; a ghost is a deleted regular file no other name
 * reaches (a deleted name of a file with other links is not one: its contents are there).
 */
enum ext_file_kind ext_file_kind(const char *path, const struct stat *st)
{
	if (!S_ISREG(st->st_mode) || !ends_deleted(path) || path[0] != '/')
		return EXT_FILE_NONE;
	if (!strncmp(path, MEMFD_PREFIX, strlen(MEMFD_PREFIX)))
		return EXT_FILE_MEMFD;
	if (internal_object(path) || st->st_nlink)
		return EXT_FILE_NONE;
	return EXT_FILE_GHOST;
}

/* the path without " (deleted)" (a memfd: the name after "/memfd:"), in buf */
static const char *base_name(const char *path, char *buf, size_t size)
{
	size_t n = strlen(path) - strlen(DELETED);

	if (!strncmp(path, MEMFD_PREFIX, strlen(MEMFD_PREFIX))) {
		path += strlen(MEMFD_PREFIX);
		n -= strlen(MEMFD_PREFIX);
	}
	snprintf(buf, size, "%.*s", (int)n, path);
	return buf;
}

/* bytes of data (not holes) in fd's first size bytes */
static int64_t data_bytes(int fd, uint64_t size)
{
	uint64_t off = 0, total = 0;

	while (off < size) {
		off_t data = lseek(fd, off, SEEK_DATA), hole;

		if (data < 0 && errno == ENXIO)
			break;
		hole = data < 0 ? -1 : lseek(fd, data, SEEK_HOLE);
		if (hole < 0)
			return -1;
		total += (uint64_t)hole > size ? size - data : (uint64_t)(hole - data);
		off = hole;
	}
	return total;
}

/*
 * Whether the deleted file or memfd behind `what` (a descriptor or a mapping) can be
 * saved: 0 yes, 1 no (an ERROR record says why: --strict, the ghost limit, hugetlb),
 * -1 on failure.
 */
int ext_file_admit(struct ctx *c, const char *what, const char *path, const char *source)
{
	bool memfd = !strncmp(path, MEMFD_PREFIX, strlen(MEMFD_PREFIX));
	const char *kind = memfd ? "memfd" : "deleted file";
	char name[4096];
	struct ghost_ino *g;
	struct statfs sfs;
	struct stat st;
	int64_t bytes;
	int fd, i, ret = 0;

	base_name(path, name, sizeof(name));
	if (!ckpt_ext(c))
		return ckpt_unsupported(c, "%s: %s %s not saved (--strict: its contents%s need an "
					"imgtools extension record)", what, kind, name,
					memfd ? ", name and seals" : " and mode") ? -1 : 1;
	fd = open(source, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) || fstatfs(fd, &sfs)) {
		ret = pr_perror("%s: open %s %s (%s)", what, kind, name, source);
		goto out;
	}
	if (sfs.f_type == HUGETLBFS_MAGIC) {
		ret = ckpt_unsupported(c, "%s: %s %s on hugetlbfs not saved", what, kind, name) ? -1 : 1;
		goto out;
	}
	if (memfd)
		goto out;
	for (i = 0; i < nr_ghosts; i++)
		if (ghosts[i].dev == st.st_dev && ghosts[i].ino == st.st_ino) {
			if (ghosts[i].refused)
				ret = ckpt_unsupported(c, "%s: deleted file %s not saved (over --ghost-limit, "
						       "see above)", what, name) ? -1 : 1;
			goto out;
		}
	g = realloc(ghosts, (nr_ghosts + 1) * sizeof(*g));
	if (!g) {
		ret = pr_perror("deleted file list");
		goto out;
	}
	ghosts = g;
	g = &ghosts[nr_ghosts++];
	*g = (struct ghost_ino){ st.st_dev, st.st_ino, false };
	bytes = data_bytes(fd, st.st_size);
	if (bytes < 0) {
		ret = pr_perror("%s: find the data of deleted file %s", what, name);
	} else if (c->ghost_used + bytes > c->ghost_limit) {
		g->refused = true;
		ret = ckpt_unsupported(c, "%s: deleted file %s not saved: %lld bytes of contents, over "
				       "the --ghost-limit of %llu bytes per image (%llu used)", what,
				       name, (long long)bytes, (unsigned long long)c->ghost_limit,
				       (unsigned long long)c->ghost_used) ? -1 : 1;
	} else {
		c->ghost_used += bytes;
	}
out:
	if (fd >= 0)
		close(fd);
	return ret;
}

/* EXT_EXTENT records of fd's data, up to size, then the one of no data at offset size */
static int dump_extents(struct ctx *c, int fd, uint64_t size, const char *name)
{
	struct ckpt_hdr_ext_extent e = { .h = { CKPT_HDR_EXT_EXTENT, sizeof(e) } };
	uint64_t off = 0;
	char *buf = malloc(EXTENT_CHUNK);
	int ret = -1;

	if (!buf)
		return pr_perror("contents of %s", name);
	while (off < size) {
		off_t data = lseek(fd, off, SEEK_DATA), hole;

		if (data < 0 && errno == ENXIO)
			break;
		hole = data < 0 ? -1 : lseek(fd, data, SEEK_HOLE);
		if (hole < 0) {
			pr_perror("find the data of %s", name);
			goto out;
		}
		if ((uint64_t)hole > size)
			hole = size;
		for (off = data; off < (uint64_t)hole;) {
			size_t want = (uint64_t)hole - off > EXTENT_CHUNK ? EXTENT_CHUNK : (uint64_t)hole - off;
			ssize_t got = pread(fd, buf, want, off);
			struct iovec iov[2] = { { &e, sizeof(e) }, { buf, got } };

			if (got <= 0) {
				pr_perror("read %s at %llu", name, (unsigned long long)off);
				goto out;
			}
			e.h.len = sizeof(e) + got;
			e.offset = off;
			if (image_writev(&c->img, iov, 2) || check_interrupted())
				goto out;
			off += got;
		}
	}
	e.h.len = sizeof(e);
	e.offset = size;
	ret = image_write(&c->img, &e, sizeof(e));
out:
	free(buf);
	return ret;
}

/* OBJREF(FILE ref) EXT_FILE_GHOST|EXT_FILE_MEMFD FILE_NAME|STRING [contents, first time] */
int dump_ext_file(struct ctx *c, struct task *t, int ref, const char *path, const char *source,
		  uint32_t f_flags, uint64_t pos)
{
	bool memfd = !strncmp(path, MEMFD_PREFIX, strlen(MEMFD_PREFIX)), first;
	char name[4096];
	struct stat st;
	int fd, ino_ref, ret = -1;

	base_name(path, name, sizeof(name));
	fd = open(source, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st)) {
		pr_perror("open %s (%s)", path, source);
		goto out;
	}
	ino_ref = obj_lookup_add(c->objs, CKPT_OBJ_INODE, st.st_dev, st.st_ino, &first);
	if (ino_ref < 0 || write_objref(&c->img, CKPT_OBJ_FILE, ref))
		goto out;
	if (memfd) {
		struct ckpt_hdr_ext_file_memfd h = { .ino_objref = ino_ref, .size = st.st_size };
		int seals = fcntl(fd, F_GET_SEALS);

		if (seals < 0) {
			pr_perror("memfd %s: F_GET_SEALS", name);
			goto out;
		}
		h.seals = seals;
		file_common(&h.common, t, CKPT_FILE_IGNORE, f_flags, &st, pos);
		if (write_obj(&c->img, CKPT_HDR_EXT_FILE_MEMFD, &h, sizeof(h)) ||
		    write_buffer(&c->img, CKPT_HDR_STRING, name, strlen(name) + 1))
			goto out;
	} else {
		struct ckpt_hdr_ext_file_ghost h = {
			.ino_objref = ino_ref, .mode = st.st_mode, .size = st.st_size,
			.uid = st.st_uid, .gid = st.st_gid,
		};

		file_common(&h.common, t, CKPT_FILE_IGNORE, f_flags, &st, pos);
		if (write_obj(&c->img, CKPT_HDR_EXT_FILE_GHOST, &h, sizeof(h)) ||
		    write_buffer(&c->img, CKPT_HDR_FILE_NAME, name, strlen(name) + 1))
			goto out;
	}
	ret = first ? dump_extents(c, fd, st.st_size, name) : 0;
out:
	if (fd >= 0)
		close(fd);
	return ret;
}
