/*
 * A pty pair inside the tree that checks itself across a checkpoint and restart
 * (tests/test_restore_tty.py).
 *
 *   rst_pty OUT GO
 *
 * The parent holds the master (packet mode on). Its child leads a session with the slave
 * as controlling terminal, in raw mode with a window size of 33x99, and a grandchild's
 * process group in the foreground. Before the checkpoint the child writes "pending-output"
 * that the parent does not read, and the parent writes "typed-ahead\n" that the child does
 * not read: both wait in the pair's buffers. After GO appears: the child finds its input,
 * its termios, window size, controlling terminal and foreground group; the grandchild finds
 * it is in the foreground of the same terminal and reads the typed-ahead input; the parent
 * reads the child's output and the pair still carries a ping and the grandchild's pong. "ok WHO NAME" / "FAIL WHO NAME: why" lines go
 * to OUT; the parent exits 0 only if every check of every process passed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include "check.h"



static void wait_go(const char *go)
{
	while (access(go, F_OK))
		usleep(5000);
}

/* up to len bytes within 3 s (fewer if they stop coming) */
static size_t read_some(int fd, char *buf, size_t len)
{
	size_t got = 0;

	while (got < len) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		ssize_t n;

		if (poll(&p, 1, 3000) != 1)
			break;
		n = read(fd, buf + got, len - got);
		if (n <= 0)
			break;
		got += n;
	}
	buf[got] = 0;
	return got;
}

/* the controlling terminal's device, from /proc/self/stat (tty_nr) */
static dev_t ctty_dev(void)
{
	char buf[1024], *p;
	int fd = open("/proc/self/stat", O_RDONLY), i, nr = 0;
	ssize_t n = fd < 0 ? -1 : read(fd, buf, sizeof(buf) - 1);

	if (fd >= 0)
		close(fd);
	if (n <= 0)
		return 0;
	buf[n] = 0;
	p = strrchr(buf, ')');
	for (i = 0; p && i < 5; i++)	/* state ppid pgrp session tty_nr */
		p = strchr(p + 1, ' ');
	if (p)
		nr = atoi(p + 1);
	return makedev((nr >> 8) & 0xfff, (nr & 0xff) | ((nr >> 12) & 0xfff00));
}

static void check_ctty(const char *who, int fd)
{
	struct stat st;

	fstat(fd, &st);
	check_by(who, "ctty", ctty_dev() == st.st_rdev, "tty_nr %u:%u, its slave %u:%u",
	      major(ctty_dev()), minor(ctty_dev()), major(st.st_rdev), minor(st.st_rdev));
	check_by(who, "dev-tty", access("/dev/tty", R_OK) == 0 && open("/dev/tty", O_RDWR) >= 0,
	      "open /dev/tty: %s", strerror(errno));
}

/* the foreground group: the one that may read the terminal */
static int grandchild(int s, const char *go)
{
	const char *who = "grandchild";
	char buf[64];

	wait_go(go);
	check_ctty(who, s);
	check_by(who, "foreground", tcgetpgrp(s) == getpgrp(), "foreground %d, its group %d",
	      tcgetpgrp(s), getpgrp());
	read_some(s, buf, 12);
	check_by(who, "typed-ahead", !strcmp(buf, "typed-ahead\n"), "read '%s'", buf);
	read_some(s, buf, 4);
	check_by(who, "ping", !strcmp(buf, "ping"), "read '%s'", buf);
	if (write(s, "pong", 4) != 4)
		check_by(who, "pong", 0, "write: %s", strerror(errno));
	return failures ? 1 : 0;
}

static int child(const char *name, int sync, const char *go)
{
	const char *who = "child";
	struct winsize ws = { .ws_row = 33, .ws_col = 99, .ws_xpixel = 7 };
	struct termios t;
	pid_t g;
	int s, status;

	setsid();
	s = open(name, O_RDWR);		/* a session leader's first terminal: its controlling one */
	if (s < 0 || tcgetattr(s, &t))
		return 10;
	cfmakeraw(&t);
	if (tcsetattr(s, TCSANOW, &t) || ioctl(s, TIOCSWINSZ, &ws))
		return 11;
	g = fork();
	if (g == 0) {
		setpgid(0, 0);
		_exit(grandchild(s, go));
	}
	setpgid(g, g);
	signal(SIGTTOU, SIG_IGN);	/* it puts a group in the foreground from the background */
	if (tcsetpgrp(s, g))
		return 12;
	if (write(s, "pending-output", 14) != 14 || write(sync, "s", 1) != 1)
		return 13;
	close(sync);
	wait_go(go);
	memset(&t, 0, sizeof(t));
	tcgetattr(s, &t);
	check_by(who, "raw", !(t.c_lflag & (ICANON | ECHO | ISIG)) && !(t.c_oflag & OPOST),
	      "lflag %#o oflag %#o", t.c_lflag, t.c_oflag);
	memset(&ws, 0, sizeof(ws));
	ioctl(s, TIOCGWINSZ, &ws);
	check_by(who, "winsize", ws.ws_row == 33 && ws.ws_col == 99 && ws.ws_xpixel == 7,
	      "%ux%u (%u)", ws.ws_row, ws.ws_col, ws.ws_xpixel);
	check_ctty(who, s);
	check_by(who, "session", getsid(0) == getpid() && tcgetsid(s) == getpid(), "sid %d, tty's %d",
	      getsid(0), tcgetsid(s));
	check_by(who, "foreground", tcgetpgrp(s) == g, "foreground %d, expected %d", tcgetpgrp(s), g);
	waitpid(g, &status, 0);
	check_by(who, "grandchild", WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %#x", status);
	return failures ? 1 : 0;
}

int main(int argc, char **argv)
{
	const char *who = "parent";
	int m, sync[2], one = 1, status;
	char name[64], buf[64];
	pid_t kid;

	if (argc != 3)
		return 2;
	fclose(fopen(argv[1], "w"));
	out = fopen(argv[1], "a");	/* every process appends */
	setvbuf(out, NULL, _IOLBF, 0);
	m = posix_openpt(O_RDWR | O_NOCTTY);
	if (m < 0 || grantpt(m) || unlockpt(m) || ptsname_r(m, name, sizeof(name)) || pipe(sync))
		return 3;
	kid = fork();
	if (kid == 0) {
		close(m);
		close(sync[0]);
		_exit(child(name, sync[1], argv[2]));
	}
	close(sync[1]);
	/* packet mode once the slave is set up: no status byte (TIOCPKT_NOSTOP) is pending */
	if (read(sync[0], buf, 1) != 1 || ioctl(m, TIOCPKT, &one) ||
	    write(m, "typed-ahead\n", 12) != 12)
		return 4;
	usleep(100000);			/* the bytes reach the slave's buffer */
	fprintf(out, "ready\n");
	wait_go(argv[2]);
	read_some(m, buf, 15);
	check_by(who, "pending-output", buf[0] == TIOCPKT_DATA && !strcmp(buf + 1, "pending-output"),
	      "read %d '%s'", buf[0], buf + 1);
	if (write(m, "ping", 4) != 4)
		check_by(who, "ping", 0, "write: %s", strerror(errno));
	read_some(m, buf, 5);
	check_by(who, "pong", buf[0] == TIOCPKT_DATA && !strcmp(buf + 1, "pong"), "read '%s'", buf + 1);
	waitpid(kid, &status, 0);
	check_by(who, "child", WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %#x", status);
	fprintf(out, "done %d\n", failures);
	return failures ? 1 : 0;
}
