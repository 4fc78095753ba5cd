/*
 * inotify across a checkpoint and restart (tests/test_restore_inotify.py).
 *
 *   rst_inotify OUT GO DIR [pending]
 *
 * Watches DIR/a (wd 1) and DIR/sub (wd 3); the watch on DIR/b (wd 2) is removed before
 * the dump, so the restored instance must skip that number. With "pending", an event is
 * left unread (the dump must refuse it). After GO appears: a write to DIR/a and a file
 * created in DIR/sub arrive as events with the same wds, wd 2 is still unknown, and the
 * next watch gets wd 4. "ok NAME" / "FAIL NAME: why" lines go to OUT; exit 0 if all passed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"



static char path_a[PATH_MAX], path_b[PATH_MAX], path_sub[PATH_MAX], path_new[PATH_MAX];

/* the next event, waiting up to 5 s */
static int next_event(int fd, struct inotify_event *ev, size_t size)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };

	if (poll(&p, 1, 5000) != 1)
		return -1;
	return read(fd, ev, size) > 0 ? 0 : -1;
}

int main(int argc, char **argv)
{
	union { struct inotify_event ev; char buf[4096]; } u;
	char link[64], target[64];
	int fd, wa, wb, wsub, w4, f;
	ssize_t n;

	if (argc < 4)
		return 2;
	out = fopen(argv[1], "w");
	setvbuf(out, NULL, _IOLBF, 0);
	snprintf(path_a, sizeof(path_a), "%s/a", argv[3]);
	snprintf(path_b, sizeof(path_b), "%s/b", argv[3]);
	snprintf(path_sub, sizeof(path_sub), "%s/sub", argv[3]);
	snprintf(path_new, sizeof(path_new), "%s/sub/new", argv[3]);
	close(open(path_a, O_CREAT | O_WRONLY, 0600));
	close(open(path_b, O_CREAT | O_WRONLY, 0600));
	mkdir(path_sub, 0700);
	fd = inotify_init1(IN_NONBLOCK);
	wa = inotify_add_watch(fd, path_a, IN_MODIFY);
	wb = inotify_add_watch(fd, path_b, IN_MODIFY);
	inotify_rm_watch(fd, wb);
	wsub = inotify_add_watch(fd, path_sub, IN_CREATE | IN_DELETE);
	/* the IN_IGNORED of wb's removal is an event too: read it */
	while (read(fd, u.buf, sizeof(u.buf)) > 0)
		;
	if (argc > 4 && !strcmp(argv[4], "pending")) {
		f = open(path_a, O_WRONLY | O_APPEND);
		write(f, "x", 1);
		close(f);
	}
	fprintf(out, "ready %d %d %d\n", wa, wb, wsub);
	while (access(argv[2], F_OK))
		usleep(10000);

	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	n = readlink(link, target, sizeof(target) - 1);
	target[n > 0 ? n : 0] = 0;
	check("still-inotify", !strcmp(target, "anon_inode:inotify"), "fd %d is %s", fd, target);
	check("nonblocking", fcntl(fd, F_GETFL) & O_NONBLOCK, "flags %#x", fcntl(fd, F_GETFL));
	check("nothing-queued", read(fd, u.buf, sizeof(u.buf)) < 0 && errno == EAGAIN,
	      "an event was waiting");

	f = open(path_a, O_WRONLY | O_APPEND);
	write(f, "y", 1);
	close(f);
	check("modify-event", !next_event(fd, &u.ev, sizeof(u)) && u.ev.wd == wa &&
	      (u.ev.mask & IN_MODIFY), "wd %d mask %#x (want wd %d)", u.ev.wd, u.ev.mask, wa);

	close(open(path_new, O_CREAT | O_WRONLY, 0600));
	check("create-event", !next_event(fd, &u.ev, sizeof(u)) && u.ev.wd == wsub &&
	      (u.ev.mask & IN_CREATE) && u.ev.len && !strcmp(u.ev.name, "new"),
	      "wd %d mask %#x name %s (want wd %d)", u.ev.wd, u.ev.mask, u.ev.len ? u.ev.name : "",
	      wsub);

	errno = 0;
	check("removed-wd-unknown", inotify_rm_watch(fd, wb) < 0 && errno == EINVAL,
	      "rm_watch(%d): %s", wb, strerror(errno));
	w4 = inotify_add_watch(fd, path_b, IN_MODIFY);
	check("next-wd", w4 == wsub + 1, "new watch got wd %d, want %d", w4, wsub + 1);
	check("rm-watch", inotify_rm_watch(fd, wa) == 0, "rm_watch(%d): %s", wa, strerror(errno));
	fprintf(out, failures ? "FAILED\n" : "PASSED\n");
	return failures ? 1 : 0;
}
