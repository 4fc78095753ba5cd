/*
 * Unix sockets that check themselves across a checkpoint and restart (tests/test_restore_unix.py).
 *
 *   rst_unix OUT GO DIR
 *
 * Before "ready": a stream pair between parent and child with bytes queued both ways
 * (P2C_LEN to the child, C2P_LEN to the parent, nobody reads yet); a datagram pair with
 * three messages queued to the parent and one to the child; a seqpacket pair with two
 * records to the parent; a stream socket whose peer has written and closed (its data, then
 * end of file); a pair shut down for writing one way; a listener on DIR/listen.sock; an
 * abstract datagram socket "@rst_unix-PID" with two messages from a socket since closed;
 * O_NONBLOCK, SO_RCVBUF, SO_PASSCRED (credentials on queued records) and SO_RCVTIMEO on
 * some of them; a datagram socket bound to a relative name, a stream socket whose name was
 * unlinked, a datagram server the child's socket is connected to (one way).
 * After GO appears, each side reads what was queued -- every byte exactly once, every
 * message whole, nothing more -- and the pairs go on working; the parent accepts one
 * connection on the listener (the test connects, sends "ping", expects "pong").
 * "ok NAME" / "FAIL NAME: why" lines go to OUT; the parent exits 0 only if all passed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"

#define P2C_LEN 100000
#define C2P_LEN 50000



static unsigned char pattern(size_t i, int seed)
{
	return (unsigned char)(i * 31 + seed + i / 251);
}

static void send_pattern(int fd, size_t len, int seed)
{
	unsigned char buf[4096];
	size_t done = 0;

	while (done < len) {
		size_t n = len - done < sizeof(buf) ? len - done : sizeof(buf), i;

		for (i = 0; i < n; i++)
			buf[i] = pattern(done + i, seed);
		if (write(fd, buf, n) != (ssize_t)n)
			exit(20);
		done += n;
	}
}

/* len bytes of the pattern, exactly, then nothing more queued */
static void expect_pattern(const char *who, const char *name, int fd, size_t len, int seed)
{
	unsigned char buf[4096];
	size_t done = 0, bad = (size_t)-1;
	ssize_t n;

	while (done < len) {
		size_t i;

		n = recv(fd, buf, len - done < sizeof(buf) ? len - done : sizeof(buf), 0);
		if (n <= 0)
			break;
		for (i = 0; i < (size_t)n; i++)
			if (buf[i] != pattern(done + i, seed) && bad == (size_t)-1)
				bad = done + i;
		done += n;
	}
	n = recv(fd, buf, 1, MSG_DONTWAIT);
	check_by(who, name, done == len && bad == (size_t)-1 && n < 0 && errno == EAGAIN,
	      "%zu of %zu bytes, first wrong at %zd, then %zd more", done, len, (ssize_t)bad, n);
}

static void expect_msg(const char *who, const char *name, int fd, const char *want)
{
	char buf[256];
	ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);

	check_by(who, name, n == (ssize_t)strlen(want) && !memcmp(buf, want, n),
	      "got %zd bytes '%.*s', expected '%s'", n, (int)(n > 0 ? n : 0), buf, want);
}

/* the next message's SCM_CREDENTIALS, peeked: the sender's pid and ids */
static void expect_creds(const char *who, const char *name, int fd, pid_t pid)
{
	char buf[64], control[CMSG_SPACE(sizeof(struct ucred))];
	struct iovec iov = { buf, sizeof(buf) };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control,
			    .msg_controllen = sizeof(control) };
	struct cmsghdr *cm;
	struct ucred uc = { 0, 0, 0 };

	if (recvmsg(fd, &m, MSG_PEEK | MSG_DONTWAIT) >= 0)
		for (cm = CMSG_FIRSTHDR(&m); cm; cm = CMSG_NXTHDR(&m, cm))
			if (cm->cmsg_type == SCM_CREDENTIALS)
				memcpy(&uc, CMSG_DATA(cm), sizeof(uc));
	check_by(who, name, uc.pid == pid && uc.uid == getuid() && uc.gid == getgid(),
	      "credentials pid %d uid %u gid %u, expected %d %u %u", uc.pid, uc.uid, uc.gid, pid,
	      getuid(), getgid());
}

static void expect_empty(const char *who, const char *name, int fd)
{
	char c;
	ssize_t n = recv(fd, &c, 1, MSG_DONTWAIT);

	check_by(who, name, n < 0 && errno == EAGAIN, "more in the queue: %zd", n);
}

static void wait_go(const char *go)
{
	while (access(go, F_OK))
		usleep(5000);
}

static int get_int(int fd, int opt)
{
	int v = -1;
	socklen_t l = sizeof(v);

	getsockopt(fd, SOL_SOCKET, opt, &v, &l);
	return v;
}

int main(int argc, char **argv)
{
	int st[2], dg[2], sq[2], dead[2], half[2], sync_pipe[2], go_pipe[2], lst, abs_fd, tmp, status, rcvbuf;
	int rel, gone, srv, cli = -1, acc = -1;
	struct sockaddr_un ra = { .sun_family = AF_UNIX, .sun_path = "rel.sock" };
	struct sockaddr_un ga = { .sun_family = AF_UNIX }, sa = { .sun_family = AF_UNIX };
	struct sockaddr_un la = { .sun_family = AF_UNIX }, aa = { .sun_family = AF_UNIX }, got;
	socklen_t alen, glen = sizeof(got);
	struct timeval tv = { 7, 250000 }, tv_was = { 0 };
	socklen_t tvlen = sizeof(tv_was);
	pid_t child;
	char c;

	if (argc != 4 || chdir(argv[3]))
		return 2;
	out = fopen(argv[1], "w");
	setvbuf(out, NULL, _IOLBF, 0);
	signal(SIGPIPE, SIG_IGN);
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, st) || socketpair(AF_UNIX, SOCK_DGRAM, 0, dg) ||
	    socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sq) || pipe(sync_pipe) || pipe(go_pipe))
		return 3;
	/* a datagram server the child connects to (one way: the server has no peer) */
	srv = socket(AF_UNIX, SOCK_DGRAM, 0);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/srv.dgram", argv[3]);
	unlink(sa.sun_path);
	if (bind(srv, (struct sockaddr *)&sa, sizeof(sa)))
		return 8;
	/* the receiver asks for credentials before anything is sent: every record carries them */
	setsockopt(sq[0], SOL_SOCKET, SO_PASSCRED, &(int){ 1 }, sizeof(int));
	child = fork();
	if (child == 0) {
		close(st[0]);
		close(dg[0]);
		close(sq[0]);
		close(sync_pipe[0]);
		close(srv);
		cli = socket(AF_UNIX, SOCK_DGRAM, 0);
		if (connect(cli, (struct sockaddr *)&sa, sizeof(sa)))
			return 9;
		send(cli, "one way", 7, 0);
		/* a connection to the parent's listener, accepted there (the path comes from argv) */
		{
			struct sockaddr_un l2 = { .sun_family = AF_UNIX };
			int i;

			snprintf(l2.sun_path, sizeof(l2.sun_path), "%s/listen.sock", argv[3]);
			acc = socket(AF_UNIX, SOCK_STREAM, 0);
			for (i = 0; i < 500 && connect(acc, (struct sockaddr *)&l2, sizeof(l2)); i++)
				usleep(10000);
			send(acc, "from the client", 15, 0);
		}
		send_pattern(st[1], C2P_LEN, 2);
		send(dg[1], "alpha", 5, 0);
		send(dg[1], "be", 2, 0);
		send(dg[1], "gamma-gamma", 11, 0);
		send(sq[1], "record one", 10, 0);
		send(sq[1], "record two!", 11, 0);
		fcntl(st[1], F_SETFL, O_NONBLOCK);
		if (write(sync_pipe[1], "r", 1) != 1)
			return 4;
		wait_go(argv[2]);
		check_by("child", "nonblock", fcntl(st[1], F_GETFL) & O_NONBLOCK, "O_NONBLOCK lost");
		fcntl(st[1], F_SETFL, 0);
		expect_pattern("child", "stream-queued", st[1], P2C_LEN, 1);
		expect_msg("child", "dgram-queued", dg[1], "to the child");
		expect_empty("child", "dgram-nothing-more", dg[1]);
		/* the pairs still work, both ways (once the parent has checked its queues) */
		check_by("child", "parent-done", read(go_pipe[0], &c, 1) == 1, "no word from the parent");
		send(st[1], "after", 5, 0);
		send(dg[1], "after-dgram", 11, 0);
		glen = sizeof(got);
		check_by("child", "client-peer-name", !getpeername(acc, (struct sockaddr *)&got, &glen) &&
		      strstr(got.sun_path, "/listen.sock"), "getpeername '%s'", got.sun_path);
		expect_msg("child", "client-queued", acc, "from the server");
		check_by("child", "one-way-after", send(cli, "one way again", 13, 0) == 13,
		      "send on the connected datagram socket: %s", strerror(errno));
		return failures ? 1 : 0;
	}
	close(st[1]);
	close(dg[1]);
	close(sq[1]);
	close(sync_pipe[1]);
	send_pattern(st[0], P2C_LEN, 1);
	send(dg[0], "to the child", 12, 0);
	/* a peer that wrote, then closed */
	socketpair(AF_UNIX, SOCK_STREAM, 0, dead);
	send(dead[1], "last words", 10, 0);
	close(dead[1]);
	/* shut down for writing one way: the other end reads the bytes, then end of file */
	socketpair(AF_UNIX, SOCK_STREAM, 0, half);
	send(half[0], "half", 4, 0);
	shutdown(half[0], SHUT_WR);
	/* a listener on a path */
	lst = socket(AF_UNIX, SOCK_STREAM, 0);
	snprintf(la.sun_path, sizeof(la.sun_path), "%s/listen.sock", argv[3]);
	unlink(la.sun_path);
	if (bind(lst, (struct sockaddr *)&la, sizeof(la)) || listen(lst, 4))
		return 5;
	/* the child's connection, accepted: both ends have names (the listener's path) */
	acc = accept(lst, NULL, NULL);
	if (acc < 0)
		return 12;
	send(acc, "from the server", 15, 0);
	/* an abstract name with two datagrams from a socket that is gone */
	abs_fd = socket(AF_UNIX, SOCK_DGRAM, 0);
	alen = offsetof(struct sockaddr_un, sun_path) + 1 +
	       snprintf(aa.sun_path + 1, sizeof(aa.sun_path) - 1, "rst_unix-%d", getpid());
	if (bind(abs_fd, (struct sockaddr *)&aa, alen))
		return 6;
	tmp = socket(AF_UNIX, SOCK_DGRAM, 0);
	sendto(tmp, "first", 5, 0, (struct sockaddr *)&aa, alen);
	sendto(tmp, "second!", 7, 0, (struct sockaddr *)&aa, alen);
	close(tmp);
	/* a relative name (bound from DIR), and a name whose file was unlinked */
	rel = socket(AF_UNIX, SOCK_DGRAM, 0);
	if (bind(rel, (struct sockaddr *)&ra, sizeof(ra)))
		return 10;
	gone = socket(AF_UNIX, SOCK_STREAM, 0);
	snprintf(ga.sun_path, sizeof(ga.sun_path), "%s/gone.sock", argv[3]);
	unlink(ga.sun_path);
	if (bind(gone, (struct sockaddr *)&ga, sizeof(ga)) || unlink(ga.sun_path))
		return 11;
	/* options */
	rcvbuf = 50000;
	setsockopt(dg[0], SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
	rcvbuf = get_int(dg[0], SO_RCVBUF);
	setsockopt(st[0], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	getsockopt(st[0], SOL_SOCKET, SO_RCVTIMEO, &tv_was, &tvlen);	/* in jiffies: rounded */
	if (read(sync_pipe[0], &c, 1) != 1)
		return 7;
	fprintf(out, "ready\n");
	wait_go(argv[2]);

	expect_pattern("parent", "stream-queued", st[0], C2P_LEN, 2);
	expect_msg("parent", "dgram-1", dg[0], "alpha");
	expect_msg("parent", "dgram-2", dg[0], "be");
	expect_msg("parent", "dgram-3", dg[0], "gamma-gamma");
	expect_empty("parent", "dgram-nothing-more", dg[0]);
	expect_creds("parent", "seqpacket-creds", sq[0], child);
	expect_msg("parent", "seqpacket-1", sq[0], "record one");
	expect_msg("parent", "seqpacket-2", sq[0], "record two!");
	expect_empty("parent", "seqpacket-nothing-more", sq[0]);
	expect_msg("parent", "dead-peer-data", dead[0], "last words");
	check_by("parent", "dead-peer-eof", recv(dead[0], &c, 1, MSG_DONTWAIT) == 0, "no end of file");
	expect_msg("parent", "half-data", half[1], "half");
	check_by("parent", "half-eof", recv(half[1], &c, 1, MSG_DONTWAIT) == 0, "no end of file");
	check_by("parent", "half-shut", send(half[0], "x", 1, MSG_DONTWAIT) < 0 && errno == EPIPE,
	      "send after SHUT_WR: %s", strerror(errno));
	check_by("parent", "half-other-way", send(half[1], "y", 1, 0) == 1, "the other way is shut too");
	expect_msg("parent", "half-other-way-data", half[0], "y");
	expect_msg("parent", "abstract-1", abs_fd, "first");
	expect_msg("parent", "abstract-2", abs_fd, "second!");
	expect_empty("parent", "abstract-nothing-more", abs_fd);
	check_by("parent", "abstract-name", !getsockname(abs_fd, (struct sockaddr *)&got, &glen) &&
	      glen == alen && !memcmp(&got, &aa, alen), "getsockname of %u bytes", glen);
	glen = sizeof(got);
	check_by("parent", "relative-name", !getsockname(rel, (struct sockaddr *)&got, &glen) &&
	      !strcmp(got.sun_path, "rel.sock"), "getsockname '%s'", got.sun_path);
	tmp = socket(AF_UNIX, SOCK_DGRAM, 0);
	sendto(tmp, "to rel", 6, 0, (struct sockaddr *)&ra, sizeof(ra));
	expect_msg("parent", "relative-bound", rel, "to rel");
	glen = sizeof(got);
	check_by("parent", "unlinked-name", !getsockname(gone, (struct sockaddr *)&got, &glen) &&
	      !strcmp(got.sun_path, ga.sun_path) && access(ga.sun_path, F_OK) && errno == ENOENT,
	      "getsockname '%s', file %s", got.sun_path, access(ga.sun_path, F_OK) ? "absent" : "there");
	expect_msg("parent", "one-way-queued", srv, "one way");
	glen = sizeof(got);
	check_by("parent", "accepted-name", !getsockname(acc, (struct sockaddr *)&got, &glen) &&
	      !strcmp(got.sun_path, la.sun_path), "getsockname '%s'", got.sun_path);
	expect_msg("parent", "accepted-queued", acc, "from the client");
	sendto(tmp, "new", 3, 0, (struct sockaddr *)&aa, alen);
	close(tmp);
	expect_msg("parent", "abstract-bound", abs_fd, "new");
	check_by("parent", "rcvbuf", get_int(dg[0], SO_RCVBUF) == rcvbuf, "SO_RCVBUF %d, was %d",
	      get_int(dg[0], SO_RCVBUF), rcvbuf);
	check_by("parent", "passcred", get_int(sq[0], SO_PASSCRED) == 1, "SO_PASSCRED lost");
	{
		struct timeval now = { 0 };
		socklen_t l = sizeof(now);

		getsockopt(st[0], SOL_SOCKET, SO_RCVTIMEO, &now, &l);
		check_by("parent", "rcvtimeo", now.tv_sec == tv_was.tv_sec && now.tv_usec == tv_was.tv_usec,
		      "SO_RCVTIMEO %ld.%06ld, was %ld.%06ld", (long)now.tv_sec, (long)now.tv_usec,
		      (long)tv_was.tv_sec, (long)tv_was.tv_usec);
	}
	if (write(go_pipe[1], "k", 1) != 1)
		return 13;
	if (waitpid(child, &status, 0) != child || !WIFEXITED(status) || WEXITSTATUS(status)) {
		check_by("parent", "child", 0, "child status %#x", status);
	} else {
		check_by("parent", "child", 1, "");
		expect_msg("parent", "stream-after", st[0], "after");
		expect_msg("parent", "dgram-after", dg[0], "after-dgram");
		expect_msg("parent", "one-way-after", srv, "one way again");
	}
	/* the listener takes a new connection: the test's "ping" */
	{
		struct pollfd p = { lst, POLLIN, 0 };
		int conn = -1;
		char buf[8] = { 0 };

		if (poll(&p, 1, 20000) == 1)
			conn = accept(lst, NULL, NULL);
		check_by("parent", "listener-accepts", conn >= 0, "no connection: %s", strerror(errno));
		if (conn >= 0) {
			struct timeval t5 = { 5, 0 };

			setsockopt(conn, SOL_SOCKET, SO_RCVTIMEO, &t5, sizeof(t5));
			check_by("parent", "listener-ping", recv(conn, buf, 4, MSG_WAITALL) == 4 &&
			      !memcmp(buf, "ping", 4), "got '%s'", buf);
			send(conn, "pong", 4, 0);
			close(conn);
		}
	}
	unlink(la.sun_path);
	unlink(sa.sun_path);
	unlink(ra.sun_path);
	fprintf(out, "done %d\n", failures);
	return failures ? 1 : 0;
}
