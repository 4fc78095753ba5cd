/*
 * Files the engine saves as extension records, for tests/test_restore_files.py: the
 * program sets them up, writes "ready" to OUT, goes on using them until GO exists (the
 * test dumps it with --kill meanwhile and restores it), then checks that everything is
 * as it was and still works. "ok NAME" / "FAIL NAME: why" lines go to OUT; exit 0 only if
 * all passed.
 *
 *     rst_files ghostlog|ghostmap|memfd|devzero OUT GO DIR
 *
 * ghostlog  DIR/log opened O_APPEND, unlinked, a line appended every few ms, before and
 *           after the restore: the file holds every line once, in order.
 * ghostmap  DIR/map (3 pages, the middle one a hole) mapped shared, unlinked, written
 *           through the mapping and through a descriptor of the same file.
 * memfd     a sealed memfd (SHRINK|GROW|WRITE) with data and a hole, mapped shared
 *           read-only, a second description of it at offset 123; an unsealable memfd
 *           mapped privately and written (copy-on-write); an MFD_NOEXEC_SEAL one.
 * devzero   a MAP_SHARED mapping of /dev/zero shared by the parent and a child.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"

#define PAGE 4096
#ifndef MFD_NOEXEC_SEAL
#define MFD_NOEXEC_SEAL	0x0008U		/* Linux 6.3 */
#define F_SEAL_EXEC	0x0020
#endif



static int gone(const char *go)
{
	return access(go, F_OK) != 0;
}

static void link_of(int fd, char *buf, size_t size)
{
	char self[64];
	ssize_t n;

	snprintf(self, sizeof(self), "/proc/self/fd/%d", fd);
	n = readlink(self, buf, size - 1);
	buf[n < 0 ? 0 : n] = 0;
}

static int ghostlog(const char *go, const char *dir)
{
	char path[4096], want[4096], link[4096], line[64], *data;
	struct stat st;
	long n = 0, i, pos = 0;
	int fd, rd;

	snprintf(path, sizeof(path), "%s/log", dir);
	fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_TRUNC, 0640);
	if (fd < 0 || unlink(path))
		return 2;
	for (; n < 20; n++)
		dprintf(fd, "line %ld\n", n);
	fprintf(out, "ready\n");
	while (gone(go)) {		/* the dump comes somewhere in here */
		dprintf(fd, "line %ld\n", n++);
		usleep(2000);
	}
	for (i = 0; i < 20; i++)
		dprintf(fd, "line %ld\n", n++);
	link_of(fd, link, sizeof(link));
	snprintf(want, sizeof(want), "%s (deleted)", path);
	check("ghost-name", !strcmp(link, want), "fd 3 is %s", link);
	check("ghost-stat", !fstat(fd, &st) && st.st_nlink == 0 && (st.st_mode & 07777) == 0640,
	      "nlink %lu mode %o", (unsigned long)st.st_nlink, st.st_mode & 07777);
	check("ghost-append-flag", (fcntl(fd, F_GETFL) & O_APPEND) != 0, "flags %#x", fcntl(fd, F_GETFL));
	/* every line once, in order */
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	rd = open(link, O_RDONLY);
	data = calloc(1, st.st_size + 1);
	if (rd < 0 || !data || pread(rd, data, st.st_size, 0) != st.st_size)
		return 2;
	for (i = 0; i < n; i++) {
		int len = snprintf(line, sizeof(line), "line %ld\n", i);

		if (strncmp(data + pos, line, len))
			break;
		pos += len;
	}
	check("ghost-contents", i == n && pos == st.st_size, "%ld of %ld lines in order, %ld of %lld bytes",
	      i, n, pos, (long long)st.st_size);
	check("ghost-offset", lseek(fd, 0, SEEK_CUR) == st.st_size, "offset %lld, size %lld",
	      (long long)lseek(fd, 0, SEEK_CUR), (long long)st.st_size);
	fprintf(out, "lines %ld\n", n);
	return failures != 0;
}

static int ghostmap(const char *go, const char *dir)
{
	char path[4096], link[4096], want[4096], buf[16];
	char *m;
	int fd;

	snprintf(path, sizeof(path), "%s/map", dir);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || pwrite(fd, "page-two", 8, 2 * PAGE) != 8 || ftruncate(fd, 3 * PAGE))
		return 2;
	m = mmap(NULL, 3 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (m == MAP_FAILED || unlink(path))
		return 2;
	strcpy(m, "page-zero");
	fprintf(out, "ready\n");
	while (gone(go))
		usleep(2000);
	check("map-contents", !strcmp(m, "page-zero") && !strcmp(m + 2 * PAGE, "page-two") && !m[PAGE],
	      "%.10s / %.10s", m, m + 2 * PAGE);
	check("map-hole", lseek(fd, 0, SEEK_HOLE) == PAGE, "first hole at %lld",
	      (long long)lseek(fd, 0, SEEK_HOLE));
	/* one file: a write through the descriptor shows in the mapping, and back */
	pwrite(fd, "by-fd", 6, PAGE);
	strcpy(m + 2 * PAGE, "by-map");
	check("map-shared",
	      !strcmp(m + PAGE, "by-fd") && pread(fd, buf, 7, 2 * PAGE) == 7 && !strcmp(buf, "by-map"), "mapping sees '%.6s', descriptor '%.6s'", m + PAGE, buf);
	link_of(fd, link, sizeof(link));
	snprintf(want, sizeof(want), "%s (deleted)", path);
	check("map-name", !strcmp(link, want), "fd is %s", link);
	return failures != 0;
}

static int memfd(const char *go)
{
	const unsigned int seals = F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE;
	char link[256], self[64], buf[16], *m, *p;
	int fd, fd2, plain, noexec;
	struct stat st;

	fd = memfd_create("imgtools test: x", MFD_ALLOW_SEALING | MFD_CLOEXEC);
	if (fd < 0 || pwrite(fd, "memfd-head", 10, 0) != 10 || pwrite(fd, "memfd-far", 9, 512 * 1024) != 9 ||
	    ftruncate(fd, 1 << 20) || fcntl(fd, F_ADD_SEALS, seals))
		return 2;
	m = mmap(NULL, 1 << 20, PROT_READ, MAP_SHARED, fd, 0);
	snprintf(self, sizeof(self), "/proc/self/fd/%d", fd);
	fd2 = open(self, O_RDONLY);
	plain = memfd_create("plain", 0);
	if (m == MAP_FAILED || fd2 < 0 || lseek(fd2, 123, SEEK_SET) != 123 || plain < 0 ||
	    pwrite(plain, "plain-file", 10, 0) != 10)
		return 2;
	p = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, plain, 0);
	if (p == MAP_FAILED)
		return 2;
	memcpy(p, "copied", 6);		/* a private copy of the page: not the file's */
	noexec = memfd_create("noexec", MFD_NOEXEC_SEAL);	/* 0666 and F_SEAL_EXEC */
	if (noexec < 0)
		return 2;
	fprintf(out, "ready\n");
	while (gone(go))
		usleep(2000);
	check("memfd-seals", fcntl(fd, F_GET_SEALS) == (int)seals, "seals %#x", fcntl(fd, F_GET_SEALS));
	link_of(fd, link, sizeof(link));
	check("memfd-name", !strcmp(link, "/memfd:imgtools test: x (deleted)"), "%s", link);
	check("memfd-cloexec", fcntl(fd, F_GETFD) == FD_CLOEXEC && fcntl(fd2, F_GETFD) == 0, "%d %d",
	      fcntl(fd, F_GETFD), fcntl(fd2, F_GETFD));
	/* first: a read fault of a hole through the mapping would allocate its page */
	check("memfd-hole", lseek(fd, 0, SEEK_END) == 1 << 20 && lseek(fd, PAGE, SEEK_DATA) == 512 * 1024,
	      "size %lld, data after the first page at %lld", (long long)lseek(fd, 0, SEEK_END),
	      (long long)lseek(fd, PAGE, SEEK_DATA));
	check("memfd-contents", !memcmp(m, "memfd-head", 10) && !memcmp(m + 512 * 1024, "memfd-far", 9) &&
	      pread(fd, buf, 1, PAGE) == 1 && !buf[0], "%.10s", m);
	check("memfd-second-description", lseek(fd2, 0, SEEK_CUR) == 123 && (fcntl(fd2, F_GETFL) & O_ACCMODE) == O_RDONLY &&
	      read(fd2, buf, 3) == 3, "offset %lld",
	      (long long)lseek(fd2, 0, SEEK_CUR));
	/* the seals still hold */
	check("memfd-sealed",
	      pwrite(fd, "x", 1, 0) < 0 && errno == EPERM && ftruncate(fd, 0) < 0 && errno == EPERM, "a write or shrink went through");
	check("plain-seals", fcntl(plain, F_GET_SEALS) == F_SEAL_SEAL, "seals %#x", fcntl(plain, F_GET_SEALS));
	check("plain-private-copy",
	      !memcmp(p, "copied", 6) && pread(plain, buf, 10, 0) == 10 && !memcmp(buf, "plain-file", 10), "mapping %.6s, file %.10s", p, buf);
	link_of(plain, link, sizeof(link));
	check("plain-name", !strcmp(link, "/memfd:plain (deleted)"), "%s", link);
	check("noexec-seal", fcntl(noexec, F_GET_SEALS) == F_SEAL_EXEC && !fstat(noexec, &st) &&
	      (st.st_mode & 07777) == 0666 && fchmod(noexec, 0755) < 0,
	      "seals %#x mode %o", fcntl(noexec, F_GET_SEALS), st.st_mode & 07777);
	return failures != 0;
}

static int devzero(const char *go)
{
	int fd = open("/dev/zero", O_RDWR), status;
	volatile char *m;
	pid_t child;

	m = fd < 0 ? MAP_FAILED : mmap(NULL, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (m == MAP_FAILED)
		return 2;
	close(fd);
	m[0] = 'P';
	child = fork();
	if (child == 0) {
		m[PAGE] = 'C';		/* a page only the child touched before the dump */
		while (gone(go))
			usleep(2000);
		m[2 * PAGE] = 'c';	/* after the restore: the parent must see it */
		while (m[3 * PAGE] != 'p')
			usleep(1000);
		_exit(m[0] == 'P' ? 0 : 1);
	}
	while (m[PAGE] != 'C')
		usleep(1000);
	fprintf(out, "ready\n");
	while (gone(go))
		usleep(2000);
	while (m[2 * PAGE] != 'c')
		usleep(1000);
	check("devzero-contents", m[0] == 'P' && m[PAGE] == 'C', "%c %c", m[0], m[PAGE]);
	m[3 * PAGE] = 'p';
	check("devzero-shared",
	      waitpid(child, &status, 0) == child && WIFEXITED(status) && !WEXITSTATUS(status), "child status %#x", status);
	return failures != 0;
}

int main(int argc, char **argv)
{
	int ret;

	if (argc != 5 || !(out = fopen(argv[2], "a")))
		return 2;
	setvbuf(out, NULL, _IOLBF, 0);
	if (!strcmp(argv[1], "ghostlog"))
		ret = ghostlog(argv[3], argv[4]);
	else if (!strcmp(argv[1], "ghostmap"))
		ret = ghostmap(argv[3], argv[4]);
	else if (!strcmp(argv[1], "memfd"))
		ret = memfd(argv[3]);
	else if (!strcmp(argv[1], "devzero"))
		ret = devzero(argv[3]);
	else
		ret = 2;
	fprintf(out, "done %d\n", ret);
	return ret;
}
