/*
 * Unix98 ptys: the pair behind a /dev/ptmx or /dev/pts/N descriptor, and the controlling
 * terminal of a session leader.
 *
 * Record order, as the linux-cr kernel wrote it (tty_file_checkpoint): the first FILE of
 * either end is OBJREF(FILE) OBJREF(TTY master) TTY TTY_LDISC [BUFFER] OBJREF(TTY slave)
 * TTY TTY_LDISC [BUFFER] FILE(f_type TTY, tty_objref = the end it opens). The master TTY
 * reserves an objref for its file (file_objref), the slave names the master (link_objref).
 * A session leader's controlling terminal is written the same way before its SIGNAL
 * record when no file named it yet (checkpoint_signal).
 *
 * The state is read through descriptors the engine takes from the frozen tasks with
 * pidfd_getfd() -- the same open file descriptions, never a new open: reopening /dev/ptmx
 * makes a new pty, and an open and close of a slave can be the last close that hangs the
 * master up. Before the first pair is written, every descriptor of the tree is scanned once
 * for pty ends (the kernel's collect pass), so a pair knows whether its master is in the
 * tree: a master that no task holds is written with file_objref 0 (the kernel always
 * reserved one) and its slave restores only onto the caller's terminal (--shell-job).
 *
 * Buffered bytes (a side's n_tty read buffer: FIONREAD) cannot be read without taking them
 * from the task. A --kill dump reads them from its descriptor (the tree dies after the dump
 * anyway) and saves them as the BUFFER after TTY_LDISC; any other dump leaves them in place
 * and writes an ERROR record. docs/format-choices.md, "TTYs", lists the fields the kernel
 * had and user space cannot see, and what is written for them.
 */
#include <asm/termbits.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "engine.h"

#ifndef PIDFD_THREAD
#define PIDFD_THREAD	O_EXCL
#endif

/* the 2.6.38 kernel's tty constants the TTY records carry */
#define TTY_DRIVER_TYPE_PTY	0x0004
#define PTY_TYPE_MASTER		0x0001
#define PTY_TYPE_SLAVE		0x0002
#define N_TTY_LDISC		0
#define TTYF_OTHER_CLOSED	(1ULL << 2)	/* tty->flags bit numbers */
#define TTYF_EXCLUSIVE		(1ULL << 3)
#define TTYF_LDISC		(1ULL << 9)
#define TTYF_LDISC_OPEN		(1ULL << 11)
#define TTYF_PTY_LOCK		(1ULL << 16)

#define UNIX98_SLAVE_MAJOR	136	/* ..143: index = (major - 136) * 256 + minor */
#define DATA_WAIT_MS		10

struct pty_end {
	pid_t tid;		/* 0: no task of the tree holds this end */
	int fd;
};

struct tty_side {
	struct ckpt_hdr_tty tty;
	struct ckpt_hdr_ldisc_n_tty ldisc;
	char data[CKPT_N_TTY_BUF_SIZE];
};

struct pty_pair {
	unsigned int index;
	struct pty_end master, slave;
	bool master_held;		/* a task of the tree holds the master */
	struct tty_side *state;		/* master, slave: read, not written yet */
	char why[160];			/* set: the pair cannot be saved, for this reason */
	int master_ref, slave_ref;	/* 0 until written */
};

static struct pty_pair *pairs;
static int nr_pairs;
static bool collected;

bool is_unix98_pty(const struct stat *st, bool *master, unsigned int *index)
{
	unsigned int maj = major(st->st_rdev), min = minor(st->st_rdev);

	if (!S_ISCHR(st->st_mode))
		return false;
	*master = maj == 5 && min == 2;
	*index = maj >= UNIX98_SLAVE_MAJOR ? (maj - UNIX98_SLAVE_MAJOR) * 256 + min : 0;
	return *master || (maj >= UNIX98_SLAVE_MAJOR && maj <= UNIX98_SLAVE_MAJOR + 7);
}

static struct pty_pair *find_pair(unsigned int index, bool add)
{
	struct pty_pair *p;
	int i;

	for (i = 0; i < nr_pairs; i++)
		if (pairs[i].index == index)
			return &pairs[i];
	if (!add)
		return NULL;
	p = realloc(pairs, (nr_pairs + 1) * sizeof(*p));
	if (!p) {
		pr_perror("pty list");
		return NULL;
	}
	pairs = p;
	pairs[nr_pairs] = (struct pty_pair){ .index = index };
	return &pairs[nr_pairs++];
}

/* the pty index of a master descriptor: its fdinfo says it */
static int master_index(pid_t tid, int fd, unsigned int *index)
{
	char name[64], *info;
	const char *v;

	snprintf(name, sizeof(name), "fdinfo/%d", fd);
	info = proc_read(tid, name, NULL);
	v = info ? status_field(info, "tty-index") : NULL;
	if (v)
		*index = strtoul(v, NULL, 10);
	free(info);
	return v ? 0 : -1;
}

/* every pty end some descriptor of the tree holds, the first holder of each */
static int collect_ptys(struct ctx *c)
{
	int i;

	collected = true;
	for (i = 0; i < c->nr_tasks; i++) {
		struct task *t = &c->tasks[i];
		char dir[64];
		struct dirent *e;
		DIR *d;

		if (!t->seized || t->share[SHARE_FILES] != i)
			continue;
		snprintf(dir, sizeof(dir), "/proc/%d/fd", t->tid);
		d = opendir(dir);
		if (!d)
			return pr_perror("open %s", dir);
		while ((e = readdir(d))) {
			char path[96];
			struct stat st;
			unsigned int index;
			struct pty_pair *p;
			struct pty_end *end;
			bool master;
			int fd = atoi(e->d_name);

			if (e->d_name[0] == '.')
				continue;
			snprintf(path, sizeof(path), "%s/%d", dir, fd);
			if (stat(path, &st) || !is_unix98_pty(&st, &master, &index))
				continue;
			if (master && master_index(t->tid, fd, &index))
				continue;	/* a kernel without tty-index: read_fd's ERROR path */
			p = find_pair(index, true);
			if (!p) {
				closedir(d);
				return -1;
			}
			end = master ? &p->master : &p->slave;
			if (!end->tid)
				*end = (struct pty_end){ t->tid, fd };
		}
		closedir(d);
	}
	return 0;
}

/* the frozen task's own open file description of an end, or -1 */
static int take_end(struct ctx *c, const struct pty_end *e)
{
	int pidfd, fd, i;
	bool thread = false;

	if (!e->tid)
		return -1;
	for (i = 0; i < c->nr_tasks; i++)
		if (c->tasks[i].tid == e->tid)
			thread = c->tasks[i].tgid != e->tid;
	pidfd = syscall(SYS_pidfd_open, e->tid, thread ? PIDFD_THREAD : 0);
	if (pidfd < 0)
		return pr_perror("pidfd_open %d", e->tid);
	fd = syscall(SYS_pidfd_getfd, pidfd, e->fd, 0);
	if (fd < 0)
		pr_perror("pidfd_getfd %d fd %d", e->tid, e->fd);
	close(pidfd);
	return fd;
}

static void put_termios(struct ckpt_hdr_tty *h, const struct termios2 *t)
{
	h->termios.c_iflag = t->c_iflag;
	h->termios.c_oflag = t->c_oflag;
	h->termios.c_cflag = t->c_cflag;
	h->termios.c_lflag = t->c_lflag;
	h->termios.c_ispeed = t->c_ispeed;
	h->termios.c_ospeed = t->c_ospeed;
	h->termios.c_line = t->c_line;
	memcpy(h->termios.c_cc, t->c_cc, CKPT_TTY_NCCS);
}

/*
 * The master's own termios: what the ptm driver gives it at open (pty.c, unix98). No
 * ioctl reads or changes it -- TCGETS/TCSETS on a master act on the slave.
 */
static void master_termios(struct termios2 *t)
{
	static const unsigned char std_cc[CKPT_TTY_NCCS] = {
		003, 034, 0177, 025, 004, 0, 1, 0, 021, 023, 032, 0, 022, 017, 027, 026, 0,
	};

	*t = (struct termios2){ .c_cflag = B38400 | CS8 | CREAD, .c_ispeed = 38400,
				.c_ospeed = 38400 };
	memcpy(t->c_cc, std_cc, sizeof(std_cc));
}

/* the n_tty fields that follow from termios (n_tty_set_termios) */
static void ldisc_modes(struct ckpt_hdr_ldisc_n_tty *l, const struct termios2 *t)
{
	bool cooked = t->c_iflag & (ISTRIP | IUCLC | IGNCR | ICRNL | INLCR | IXON | PARMRK) ||
		      t->c_lflag & (ICANON | ISIG | ECHO);

	l->icanon = !!(t->c_lflag & ICANON);
	l->raw = !cooked;
	/* pty drivers are TTY_DRIVER_REAL_RAW */
	l->real_raw = !cooked && (t->c_iflag & IGNBRK || !(t->c_iflag & (BRKINT | PARMRK))) &&
		      (t->c_iflag & IGNPAR || !(t->c_iflag & INPCK));
}

/*
 * The bytes waiting in one side's read buffer, read from the task's description (only in
 * a --kill dump): in canonical mode a read returns one line, whose end is marked in
 * read_flags as n_tty marks it; in packet mode each read starts with a status byte, which
 * is not data. *left: bytes are left behind (ERROR record by the caller).
 */
static int read_queue(struct ctx *c, int fd, struct tty_side *s, const char *what, bool *left)
{
	char chunk[1 + CKPT_N_TTY_BUF_SIZE];
	int avail = 0, hdr = s->ldisc.packet;

	*left = false;
	if (fd < 0)
		return 0;		/* no task of the tree reads this side */
	if (ioctl(fd, FIONREAD, &avail))
		return pr_perror("FIONREAD on %s", what);
	if (!avail)
		return 0;
	if (!c->kill) {
		*left = true;
		return 0;
	}
	while (s->ldisc.datalen < CKPT_N_TTY_BUF_SIZE) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		ssize_t n;

		if (poll(&pfd, 1, DATA_WAIT_MS) != 1 || !(pfd.revents & POLLIN))
			break;
		n = read(fd, chunk, hdr + CKPT_N_TTY_BUF_SIZE - s->ldisc.datalen);
		if (n <= hdr)
			break;		/* a packet status byte: checked before */
		memcpy(s->data + s->ldisc.datalen, chunk + hdr, n - hdr);
		s->ldisc.datalen += n - hdr;
		if (s->ldisc.icanon) {
			unsigned int end = s->ldisc.datalen - 1;

			s->ldisc.read_flags[end / 8] |= 1 << (end % 8);
			s->ldisc.canon_data++;
		}
	}
	if (s->ldisc.icanon)
		s->ldisc.canon_datalen = s->ldisc.datalen;
	if (ioctl(fd, FIONREAD, &avail) == 0 && avail > 0)
		*left = true;		/* beyond the format's 4096-byte n_tty buffer */
	return 0;
}

static int write_side(struct ctx *c, int ref, struct tty_side *s)
{
	if (write_objref(&c->img, CKPT_OBJ_TTY, ref) ||
	    write_obj(&c->img, CKPT_HDR_TTY, &s->tty, sizeof(s->tty)) ||
	    write_obj(&c->img, CKPT_HDR_TTY_LDISC, &s->ldisc, sizeof(s->ldisc)))
		return -1;
	return s->ldisc.datalen ? write_buffer(&c->img, CKPT_HDR_BUFFER, s->data, s->ldisc.datalen) : 0;
}

/* state of both ends, read before anything is written (a refusal writes no TTY record) */
static int read_pair(struct ctx *c, struct pty_pair *p, int mfd, int sfd, struct tty_side *m,
		     struct tty_side *s, char *why, size_t why_len)
{
	int any = mfd >= 0 ? mfd : sfd, excl = 0, lock = 0, pkt = 0, ldisc = -1;
	struct termios2 tm, ts;
	struct winsize ws;
	struct pollfd pfd = { .fd = mfd, .events = POLLIN };
	bool left_m, left_s;

	if (ioctl(any, TIOCGETD, &ldisc) || ioctl(any, TCGETS2, &ts) || ioctl(any, TIOCGWINSZ, &ws))
		return pr_perror("read the settings of /dev/pts/%u", p->index);
	if (ldisc != N_TTY_LDISC) {
		snprintf(why, why_len, "line discipline %d (only n_tty is saved)", ldisc);
		return 1;
	}
	master_termios(&tm);
	m->tty = (struct ckpt_hdr_tty){ .driver_type = TTY_DRIVER_TYPE_PTY,
					.driver_subtype = PTY_TYPE_MASTER, .index = p->index,
					.ldisc = N_TTY_LDISC, .flags = TTYF_LDISC | TTYF_LDISC_OPEN };
	s->tty = m->tty;
	s->tty.driver_subtype = PTY_TYPE_SLAVE;
	put_termios(&m->tty, &tm);
	put_termios(&s->tty, &ts);
	m->tty.winsize.ws_row = s->tty.winsize.ws_row = ws.ws_row;
	m->tty.winsize.ws_col = s->tty.winsize.ws_col = ws.ws_col;
	m->tty.winsize.ws_xpixel = s->tty.winsize.ws_xpixel = ws.ws_xpixel;
	m->tty.winsize.ws_ypixel = s->tty.winsize.ws_ypixel = ws.ws_ypixel;
	if (mfd >= 0) {
		pfd.events = POLLPRI;
		if (ioctl(mfd, TIOCGPTLCK, &lock) || ioctl(mfd, TIOCGEXCL, &excl) ||
		    ioctl(mfd, TIOCGPKT, &pkt) || poll(&pfd, 1, 0) < 0)
			return pr_perror("read the master of /dev/pts/%u", p->index);
		/* a packet-mode status event the master has not read: no record field restores it */
		if (pkt && pfd.revents & POLLPRI &&
		    ckpt_unsupported(c, "/dev/pts/%u: a packet-mode status event not read by the "
				     "master is not saved", p->index))
			return -1;
		m->tty.flags |= (lock ? TTYF_PTY_LOCK : 0) | (excl ? TTYF_EXCLUSIVE : 0) |
				(pfd.revents & POLLHUP ? TTYF_OTHER_CLOSED : 0);
	}
	if (sfd >= 0) {
		if (ioctl(sfd, TIOCGEXCL, &excl))
			return pr_perror("read /dev/pts/%u", p->index);
		s->tty.flags |= excl ? TTYF_EXCLUSIVE : 0;
	}
	memset(&m->ldisc, 0, sizeof(m->ldisc));
	memset(&s->ldisc, 0, sizeof(s->ldisc));
	m->ldisc.minimum_to_wake = s->ldisc.minimum_to_wake = 1;
	m->ldisc.packet = !!pkt;
	ldisc_modes(&m->ldisc, &tm);
	ldisc_modes(&s->ldisc, &ts);
	if (read_queue(c, mfd, m, "a pty master", &left_m) ||
	    read_queue(c, sfd, s, "a pty slave", &left_s))
		return -1;
	if ((left_m || left_s) &&
	    ckpt_unsupported(c, "/dev/pts/%u: unread bytes %s not saved (%s)", p->index,
			     left_m && left_s ? "on both sides" : left_m ? "for the master" : "for the slave",
			     c->kill ? "more than the 4096-byte n_tty buffer" :
			     "reading them takes them from the task: dump with --kill to save them"))
		return -1;
	return 0;
}

/*
 * The state of a pair, read once before anything of it is written (a pty that cannot be
 * saved leaves no record behind): 1 with why set if it cannot be saved.
 */
static int prepare_pair(struct ctx *c, unsigned int index, struct pty_pair **out, char *why,
			size_t why_len)
{
	struct pty_pair *p;
	int mfd = -1, sfd = -1, r = -1;

	if (!collected && collect_ptys(c))
		return -1;
	p = *out = find_pair(index, false);
	if (!p) {
		snprintf(why, why_len, "no task of the tree holds either end");
		return 1;
	}
	if (p->master_ref || p->state)
		return 0;
	if (p->why[0]) {
		snprintf(why, why_len, "%s", p->why);
		return 1;
	}
	p->state = calloc(2, sizeof(*p->state));
	if (!p->state)
		return pr_perror("tty state");
	if (p->master.tid && (mfd = take_end(c, &p->master)) < 0)
		goto out;
	if (p->slave.tid && (sfd = take_end(c, &p->slave)) < 0)
		goto out;
	p->master_held = mfd >= 0;
	r = read_pair(c, p, mfd, sfd, &p->state[0], &p->state[1], p->why, sizeof(p->why));
	if (r > 0)
		snprintf(why, why_len, "%s", p->why);
out:
	if (r) {
		free(p->state);
		p->state = NULL;
	}
	if (mfd >= 0)
		close(mfd);
	if (sfd >= 0)
		close(sfd);
	return r;
}

/* OBJREF(TTY) TTY TTY_LDISC [BUFFER] of the master, then of the slave, the first time */
static int write_pair(struct ctx *c, struct pty_pair *p)
{
	struct tty_side *m = p->state, *s = p->state + 1;
	bool first;
	int r = -1;

	if (p->master_ref)
		return 0;
	p->master_ref = obj_lookup_add(c->objs, CKPT_OBJ_TTY, p->index, PTY_TYPE_MASTER, &first);
	p->slave_ref = obj_lookup_add(c->objs, CKPT_OBJ_TTY, p->index, PTY_TYPE_SLAVE, &first);
	if (p->master_ref < 0 || p->slave_ref < 0)
		goto out;
	/* the objref the kernel reserved for the master's file: none if no task holds it */
	m->tty.file_objref = !p->master_held ? 0 :
			     obj_lookup_add(c->objs, CKPT_OBJ_IGNORE, p->index, PTY_TYPE_MASTER, &first);
	s->tty.link_objref = p->master_ref;
	if (m->tty.file_objref >= 0 && !write_side(c, p->master_ref, m) &&
	    !write_side(c, p->slave_ref, s))
		r = 0;
out:
	free(p->state);
	p->state = NULL;
	return r;
}

/* OBJREF(FILE) [the pair's TTY objects] FILE(tty); 1 (why set) if the pty cannot be saved */
int dump_tty_file(struct ctx *c, int ref, const struct ckpt_hdr_file *common, pid_t tid, int fd,
		  const struct stat *st, char *why, size_t why_len)
{
	struct ckpt_hdr_file_tty h = { .common = *common };
	struct pty_pair *p;
	unsigned int index;
	bool master;
	int r;

	if (!is_unix98_pty(st, &master, &index))
		return 1;
	if (master && master_index(tid, fd, &index)) {
		snprintf(why, why_len, "the kernel does not show the pty index of the master");
		return 1;
	}
	r = prepare_pair(c, index, &p, why, why_len);
	if (r)
		return r;
	if (write_objref(&c->img, CKPT_OBJ_FILE, ref) || write_pair(c, p))
		return -1;
	h.tty_objref = master ? p->master_ref : p->slave_ref;
	return write_obj(&c->img, CKPT_HDR_FILE, &h, sizeof(h));
}

/*
 * SIGNAL.tty_objref of a session leader: its controlling terminal's TTY object (written
 * here if no file named it yet); 0 with an ERROR record for a terminal that is not saved.
 */
int dump_ctty(struct ctx *c, struct task *t)
{
	unsigned int maj = (t->st.tty_nr >> 8) & 0xfff;
	unsigned int min = (t->st.tty_nr & 0xff) | ((t->st.tty_nr >> 12) & 0xfff00);
	char why[160] = "";
	struct pty_pair *p;
	unsigned int index;
	int r;

	if (!t->st.tty_nr || t->st.sid != t->tgid)
		return 0;
	if (maj < UNIX98_SLAVE_MAJOR || maj > UNIX98_SLAVE_MAJOR + 7)
		return ckpt_unsupported(c, "pid %d: its controlling terminal (device %u:%u) is not a "
					"pty: not saved", t->tgid, maj, min) ? -1 : 0;
	index = (maj - UNIX98_SLAVE_MAJOR) * 256 + min;
	r = prepare_pair(c, index, &p, why, sizeof(why));
	if (r > 0)
		return ckpt_unsupported(c, "pid %d: its controlling terminal /dev/pts/%u not saved: "
					"%s", t->tgid, index, why) ? -1 : 0;
	if (r < 0 || write_pair(c, p))
		return -1;
	return p->slave_ref;
}
