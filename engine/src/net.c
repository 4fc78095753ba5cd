/*
 * TEMPORARY minimal socket dispatch of the inet branch: the unix branch owns net.c (FILE
 * SOCKET, OBJREF(SOCK), the SOCKET record, family dispatch); the merge takes its version.
 */
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "engine.h"

/* the engine's own copy of descriptor fd of task tid */
static int task_fd_copy(pid_t tid, int fd)
{
	int pidfd = syscall(SYS_pidfd_open, tid, 0), sk;

	if (pidfd < 0)
		return pr_perror("pidfd_open %d", tid);
	sk = syscall(SYS_pidfd_getfd, pidfd, fd, 0);
	if (sk < 0)
		pr_perror("pid %d: pidfd_getfd %d", tid, fd);
	close(pidfd);
	return sk;
}

const char *socket_unsupported(pid_t tid, int fd)
{
	int sk = task_fd_copy(tid, fd);
	const char *why;

	if (sk < 0)
		return "cannot be read";
	why = inet_unsupported(sk);
	close(sk);
	return why;
}

int dump_socket(struct ctx *c, struct task *t, int fd, const struct stat *st)
{
	int sk, ref, ret;
	bool first;

	ref = obj_lookup_add(c->objs, CKPT_OBJ_SOCK, st->st_dev, st->st_ino, &first);
	if (ref < 0 || !first)
		return ref;
	sk = task_fd_copy(t->tid, fd);
	if (sk < 0)
		return -1;
	ret = write_objref(&c->img, CKPT_OBJ_SOCK, ref) || dump_inet_socket(c, t, fd, sk, ref) ? -1 : ref;
	close(sk);
	return ret;
}
