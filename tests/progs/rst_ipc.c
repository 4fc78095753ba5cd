/*
 * SysV IPC objects across a checkpoint and restart (tests/test_restore_ipc.py).
 *
 *   rst_ipc KIND OUT GO [private]
 *
 * KIND shm: a segment of 3 pages + 100 bytes (page 1 never touched) attached by this
 * process and a forked child; after the restart both see the old contents, the child
 * writes and the parent sees it. shmdest: the same, the segment removed (IPC_RMID) while
 * attached, as programs do to have it go with them. msg: a queue with 3 messages of different types (one of
 * 5,000 bytes, more than a kernel message page), read back in order after the restart.
 * sem: a set of 3 semaphores with values 5, 0, 42, read back and operated on. semundo:
 * a child with SEM_UNDO adjustments, applied by the kernel when it exits after the
 * restart (its parent checks); semthread: the same with the adjustment made by a thread of
 * the child; semseccomp: an adjustment in a process under seccomp (not probed). With
 * "private" the process makes an ipc namespace of its own first.
 *
 * Writes "ready <id>" to OUT and waits for the file GO; then checks, writes "ok NAME" or
 * "FAIL NAME: why" lines, removes its objects and exits 0 only if every check passed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/prctl.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"

#define SEG_SIZE (3 * 4096 + 100)
#define LONG_MSG 5000



static void wait_go(const char *go)
{
	struct timespec ts = { 0, 10 * 1000 * 1000 };

	while (access(go, F_OK))
		nanosleep(&ts, NULL);
}

static void ready(int id)
{
	fprintf(out, "ready %d\n", id);
	fflush(out);
}

static char pattern(int page, int i)
{
	return (char)('a' + (page * 7 + i) % 26);
}

static int run_shm(const char *go, int dest)
{
	int id = shmget(IPC_PRIVATE, SEG_SIZE, IPC_CREAT | 0640), i, status;
	volatile char *m;
	struct shmid_ds ds;
	pid_t child;

	if (id < 0)
		return perror("shmget"), 2;
	m = shmat(id, NULL, 0);
	if (m == (void *)-1)
		return perror("shmat"), 2;
	for (i = 0; i < 4096; i++) {
		m[i] = pattern(0, i);
		m[2 * 4096 + i] = pattern(2, i);
	}
	m[3 * 4096 + 99] = 'Z';
	if (dest && shmctl(id, IPC_RMID, NULL))	/* gone once both detach */
		return perror("shmctl"), 2;
	child = fork();
	if (child == 0) {
		struct timespec ts = { 0, 10 * 1000 * 1000 };

		wait_go(go);
		for (i = 0; i < 4096 && m[2 * 4096 + i] == pattern(2, i); i++)
			;
		if (i < 4096)
			_exit(10);
		while (m[100] != 'P')	/* the parent's word first */
			nanosleep(&ts, NULL);
		m[200] = 'C';
		_exit(0);
	}
	ready(id);
	wait_go(go);
	for (i = 0; i < 4096 && m[i] == pattern(0, i) && m[2 * 4096 + i] == pattern(2, i); i++)
		;
	check("shm-contents", i == 4096, "byte %d differs", i);
	for (i = 0; i < 4096 && !m[4096 + i]; i++)
		;
	check("shm-untouched-page", i == 4096, "page 1 byte %d is %d", i, m[4096 + i]);
	check("shm-tail", m[3 * 4096 + 99] == 'Z', "last byte %d", m[3 * 4096 + 99]);
	memset(&ds, 0, sizeof(ds));
	i = shmctl(id, IPC_STAT, &ds);	/* before check(): its arguments print ds */
	check("shm-stat", !i && ds.shm_segsz == SEG_SIZE &&
	      (ds.shm_perm.mode & 0777) == 0640 && ds.shm_nattch == 2 &&
	      !(ds.shm_perm.mode & SHM_DEST) == !dest,
	      "segsz %zu mode %o nattch %lu", (size_t)ds.shm_segsz, ds.shm_perm.mode,
	      (unsigned long)ds.shm_nattch);
	m[100] = 'P';
	for (i = 0; i < 500 && m[200] != 'C'; i++)
		usleep(10000);
	check("shm-shared", m[200] == 'C', "the child's write is not seen");
	status = -1;
	if (waitpid(child, &status, 0) != child)
		status = -1;
	check("shm-child", WIFEXITED(status) && !WEXITSTATUS(status), "child status %#x", status);
	shmdt((void *)m);
	shmctl(id, IPC_RMID, NULL);
	return failures ? 1 : 0;
}

struct msgbuf_t {
	long mtype;
	char mtext[LONG_MSG + 1];
};

static void msg_text(char *s, long type, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		s[i] = (char)('A' + (type * 3 + i) % 26);
}

static int run_msg(const char *go)
{
	static const long types[3] = { 3, 1, 2 };
	static const size_t sizes[3] = { 10, LONG_MSG, 1 };
	int id = msgget(IPC_PRIVATE, IPC_CREAT | 0620), i;
	static struct msgbuf_t m, want;
	struct msqid_ds ds;

	if (id < 0)
		return perror("msgget"), 2;
	for (i = 0; i < 3; i++) {
		m.mtype = types[i];
		msg_text(m.mtext, types[i], sizes[i]);
		if (msgsnd(id, &m, sizes[i], 0))
			return perror("msgsnd"), 2;
	}
	ready(id);
	wait_go(go);
	memset(&ds, 0, sizeof(ds));
	i = msgctl(id, IPC_STAT, &ds);
	check("msg-stat", !i && ds.msg_qnum == 3 &&
	      ds.__msg_cbytes == sizes[0] + sizes[1] + sizes[2] && (ds.msg_perm.mode & 0777) == 0620,
	      "qnum %lu cbytes %lu mode %o", (unsigned long)ds.msg_qnum,
	      (unsigned long)ds.__msg_cbytes, ds.msg_perm.mode);
	for (i = 0; i < 3; i++) {
		ssize_t n = msgrcv(id, &m, sizeof(m.mtext), 0, IPC_NOWAIT);

		msg_text(want.mtext, types[i], sizes[i]);
		check("msg-order", n == (ssize_t)sizes[i] && m.mtype == types[i] &&
		      !memcmp(m.mtext, want.mtext, sizes[i]), "message %d: %zd bytes of type %ld", i,
		      n, m.mtype);
	}
	check("msg-empty", msgrcv(id, &m, sizeof(m.mtext), 0, IPC_NOWAIT) < 0 && errno == ENOMSG,
	      "a fourth message");
	msgctl(id, IPC_RMID, NULL);
	return failures ? 1 : 0;
}

static int run_sem(const char *go)
{
	int id = semget(IPC_PRIVATE, 3, IPC_CREAT | 0600);
	unsigned short set[3] = { 5, 0, 42 }, got[3] = { 0 };
	struct sembuf op = { 0, -2, IPC_NOWAIT };
	int ok;

	if (id < 0 || semctl(id, 0, SETALL, set))
		return perror("semget"), 2;
	ready(id);
	wait_go(go);
	ok = !semctl(id, 0, GETALL, got);
	check("sem-values", ok && !memcmp(got, set, sizeof(set)),
	      "values %u %u %u", got[0], got[1], got[2]);
	check("sem-op", !semop(id, &op, 1) && semctl(id, 0, GETVAL) == 3, "semop failed: %s",
	      strerror(errno));
	semctl(id, 0, IPC_RMID);
	return failures ? 1 : 0;
}

/*
 * A child with SEM_UNDO adjustments (+2 on semaphore 0, -1 on semaphore 1); its parent,
 * which has none, sees the kernel apply them when the child exits after the restart.
 */
static int run_semundo(const char *go)
{
	int id = semget(IPC_PRIVATE, 3, IPC_CREAT | 0600), status = -1, ok;
	unsigned short set[3] = { 5, 0, 42 }, got[3] = { 0 };
	pid_t child;

	if (id < 0 || semctl(id, 0, SETALL, set))
		return perror("semget"), 2;
	child = fork();
	if (child == 0) {
		struct sembuf ops[2] = { { 0, -2, SEM_UNDO }, { 1, 1, SEM_UNDO } };

		if (semop(id, ops, 2))
			_exit(2);
		ready(id);
		wait_go(go);
		_exit(semctl(id, 0, GETALL, got) || got[0] != 3 || got[1] != 1 || got[2] != 42);
	}
	wait_go(go);
	if (waitpid(child, &status, 0) != child)
		status = -1;
	check("semundo-child", WIFEXITED(status) && !WEXITSTATUS(status), "child status %#x", status);
	ok = !semctl(id, 0, GETALL, got);
	check("semundo-applied", ok && !memcmp(got, set, sizeof(set)),
	      "values after the child's exit %u %u %u", got[0], got[1], got[2]);
	semctl(id, 0, IPC_RMID);
	return failures ? 1 : 0;
}

static int undo_set;

static void *undo_thread(void *arg)
{
	struct sembuf op = { 0, -2, SEM_UNDO };

	(void)arg;
	if (semop(undo_set, &op, 1))
		_exit(2);
	for (;;)
		pause();
	return NULL;
}

/*
 * A thread's SEM_UNDO adjustment (+2) is its process's (threads share the undo list):
 * applied when the whole process exits after the restart, as the parent sees.
 */
static int run_semthread(const char *go)
{
	int status = -1, val;
	pthread_t thread;
	pid_t child;

	undo_set = semget(IPC_PRIVATE, 1, IPC_CREAT | 0600);
	if (undo_set < 0 || semctl(undo_set, 0, SETVAL, 10))
		return perror("semget"), 2;
	child = fork();
	if (child == 0) {
		struct timespec ts = { 0, 1000 * 1000 };

		if (pthread_create(&thread, NULL, undo_thread, NULL))
			_exit(2);
		while (semctl(undo_set, 0, GETVAL) != 8)
			nanosleep(&ts, NULL);
		ready(undo_set);
		wait_go(go);
		_exit(semctl(undo_set, 0, GETVAL) != 8);
	}
	wait_go(go);
	if (waitpid(child, &status, 0) != child)
		status = -1;
	check("semthread-child", WIFEXITED(status) && !WEXITSTATUS(status), "child status %#x", status);
	val = semctl(undo_set, 0, GETVAL);
	check("semthread-applied", val == 10, "value after the child's exit %d", val);
	semctl(undo_set, 0, IPC_RMID);
	return failures ? 1 : 0;
}

/* an undo list in a task under seccomp, which the dump does not probe: it must say so */
static int run_semseccomp(const char *go)
{
	struct sock_filter allow[] = { BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW) };
	struct sock_fprog filter = { 1, allow };
	struct sembuf op = { 0, 1, SEM_UNDO };
	int id = semget(IPC_PRIVATE, 1, IPC_CREAT | 0600);

	if (id < 0 || semop(id, &op, 1) || prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) ||
	    prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &filter))
		return perror("seccomp"), 2;
	ready(id);
	wait_go(go);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 4)
		return fprintf(stderr, "usage: rst_ipc shm|shmdest|msg|sem|semundo|semthread|semseccomp OUT GO [private]\n"), 2;
	out = fopen(argv[2], "w");
	if (!out)
		return perror(argv[2]), 2;
	if (argc > 4 && !strcmp(argv[4], "private") && unshare(CLONE_NEWIPC))
		return perror("unshare"), 2;
	if (!strcmp(argv[1], "shm") || !strcmp(argv[1], "shmdest"))
		return run_shm(argv[3], !strcmp(argv[1], "shmdest"));
	if (!strcmp(argv[1], "msg"))
		return run_msg(argv[3]);
	if (!strcmp(argv[1], "sem"))
		return run_sem(argv[3]);
	if (!strcmp(argv[1], "semundo"))
		return run_semundo(argv[3]);
	if (!strcmp(argv[1], "semthread"))
		return run_semthread(argv[3]);
	if (!strcmp(argv[1], "semseccomp"))
		return run_semseccomp(argv[3]);
	return 2;
}
