/*
 * A process tree that checks itself across a checkpoint and restart (tests/test_restore.py).
 *
 *   rst_tree OUT GO DIR
 *
 * The parent forks: a child that shares a pipe and a FIFO with buffered data, a file description
 * (one offset, O_APPEND off) and a shared anonymous mapping with the parent, and leads its
 * own process group; a grandchild that leads its own session; a child that has exited and
 * is a zombie the parent has not reaped. After GO appears: the child reads the pipe's
 * bytes and writes through the shared mapping and the shared descriptor, the parent reaps
 * the zombie (exit status 7), sees the child's writes, and every process checks its ids.
 * "ok NAME" / "FAIL NAME: why" lines go to OUT; the parent exits 0 only if all passed.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"



struct ids { pid_t pid, ppid, pgid, sid; };

static struct ids ids_now(void)
{
	return (struct ids){ getpid(), getppid(), getpgid(0), getsid(0) };
}

static void check_ids(const char *who, struct ids was)
{
	struct ids now = ids_now();

	check_by(who, "ids", !memcmp(&now, &was, sizeof(now)),
	      "pid %d/%d ppid %d/%d pgid %d/%d sid %d/%d", now.pid, was.pid, now.ppid, was.ppid,
	      now.pgid, was.pgid, now.sid, was.sid);
}

static void wait_go(const char *go)
{
	while (access(go, F_OK))
		usleep(5000);
}

int main(int argc, char **argv)
{
	int p[2], sync_pipe[2], shared_fd, fifo_fd, status;
	volatile int *shm;
	struct ids me, child_ids;
	pid_t child, zombie, grand;
	char c;

	if (argc != 4 || chdir(argv[3]))
		return 2;
	out = fopen(argv[1], "w");
	setvbuf(out, NULL, _IOLBF, 0);
	shm = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	shm[0] = 1;
	shared_fd = open("shared", O_RDWR | O_CREAT | O_TRUNC, 0600);
	write(shared_fd, "P0", 2);
	pipe(p);
	pipe(sync_pipe);
	unlink("fifo");
	mkfifo("fifo", 0600);
	fifo_fd = open("fifo", O_RDWR);			/* a FIFO holding data of its own */
	write(fifo_fd, "fifo data", 9);
	write(p[1], "through the pipe", 16);	/* stays buffered across the checkpoint */
	me = ids_now();
	zombie = fork();
	if (zombie == 0)
		_exit(7);
	child = fork();
	if (child == 0) {
		char buf[32] = { 0 };

		setpgid(0, 0);
		grand = fork();
		if (grand == 0) {
			struct ids g;

			setsid();
			g = ids_now();
			write(sync_pipe[1], "g", 1);
			wait_go(argv[2]);
			check_ids("grandchild", g);
			_exit(failures ? 1 : 0);
		}
		child_ids = ids_now();
		write(sync_pipe[1], "c", 1);
		wait_go(argv[2]);
		check_ids("child", child_ids);
		check_by("child", "pipe-data", read(p[0], buf, 16) == 16 && !strcmp(buf, "through the pipe"),
		      "read '%s'", buf);
		check_by("child", "shm-seen", shm[0] == 1, "shm %d", shm[0]);
		memset(buf, 0, sizeof(buf));
		check_by("child", "fifo-data", read(fifo_fd, buf, 9) == 9 && !strcmp(buf, "fifo data"),
		      "read '%s'", buf);
		shm[1] = 99;				/* the parent must see it */
		write(shared_fd, "C1", 2);		/* the parent's offset moves too */
		waitpid(grand, &status, 0);
		check_by("child", "grandchild", WIFEXITED(status) && WEXITSTATUS(status) == 0,
		      "status %#x", status);
		_exit(failures ? 1 : 0);
	}
	read(sync_pipe[0], &c, 1);
	read(sync_pipe[0], &c, 1);
	while (kill(zombie, 0) == 0) {		/* a zombie still answers kill(0) */
		char path[64], state;
		FILE *f;

		snprintf(path, sizeof(path), "/proc/%d/stat", zombie);
		f = fopen(path, "r");
		if (f && fscanf(f, "%*d %*s %c", &state) == 1 && state == 'Z') {
			fclose(f);
			break;
		}
		if (f)
			fclose(f);
		usleep(1000);
	}
	fprintf(out, "ready\n");
	wait_go(argv[2]);

	check_ids("parent", me);
	check_by("parent", "zombie", waitpid(zombie, &status, 0) == zombie && WIFEXITED(status) &&
	      WEXITSTATUS(status) == 7, "status %#x", status);
	check_by("parent", "child", waitpid(child, &status, 0) == child && WIFEXITED(status) &&
	      WEXITSTATUS(status) == 0, "status %#x", status);
	check_by("parent", "shm-shared", shm[1] == 99, "shm %d", shm[1]);
	write(shared_fd, "P2", 2);
	{
		char buf[16] = { 0 };

		pread(shared_fd, buf, 6, 0);
		check_by("parent", "shared-offset", !strcmp(buf, "P0C1P2"), "file '%s'", buf);
	}
	fprintf(out, "done %d\n", failures);
	return failures ? 1 : 0;
}
