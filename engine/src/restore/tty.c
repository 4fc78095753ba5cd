/*
 * Ptys on restore: TTY objects, FILE records of f_type TTY, and controlling terminals.
 * The mirror of tty.c.
 *
 * A pair whose master a task of the image held is made anew by the driver (posix_openpt,
 * unlockpt unless it was locked): the new slave has whatever index the kernel gives, not
 * the image's. The master's TTY record creates the pair and writes back the bytes the slave
 * had written and the master not read yet; the slave's record sets termios and window
 * size (through the master) and writes back its typed-ahead input. Bytes go in with the
 * slave in raw mode, so the line discipline does not process them twice, and the saved
 * termios is set after them (switching to canonical mode makes them one line, as the
 * kernel does). A master FILE is the driver's master description; each slave FILE is an
 * open of the new /dev/pts/M.
 *
 * A controlling terminal (SIGNAL.tty_objref of a session leader) must be acquired before
 * the session's other processes are forked, so that they inherit it: on a seekable image
 * the metadata pass finds it, the pair is made before the tree (tty_prepare) and the
 * leader's node takes it with TIOCSCTTY right after its setsid() (tree.c). From a pipe the
 * tree exists before the record arrives: the leader takes it by an injected TIOCSCTTY,
 * and a session with other processes is refused. The foreground group (SIGNAL.tty_pgrp)
 * is set by an injected TIOCSPGRP at the release, once every group exists.
 *
 * A slave whose master no task of the image held (file_objref 0: an outside terminal)
 * becomes the caller's terminal with --shell-job, where the tree also stays in the
 * caller's session (tree.c) and its foreground job is put in the foreground again; without
 * --shell-job it is refused.
 */
#include <asm/termbits.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "restore.h"

#define TTY_DRIVER_TYPE_PTY	0x0004
#define PTY_TYPE_MASTER		0x0001
#define PTY_TYPE_SLAVE		0x0002
#define N_TTY_LDISC		0
#define TTYF_OTHER_CLOSED	(1ULL << 2)	/* tty->flags bits of the 2.6.38 kernel */
#define TTYF_EXCLUSIVE		(1ULL << 3)
#define TTYF_CLOSING		(1ULL << 7)
#define TTYF_PTY_LOCK		(1ULL << 16)
#define TTYF_HUPPED		(1ULL << 18)
#define TTYF_FLUSHING		(1ULL << 19)
#define QUEUE_WAIT_MS		2000	/* written bytes reach the other side's buffer by then */

struct rtty {
	int ref;
	bool master;
	int link;		/* slave: index of its master in ttys[] */
	int file_ref;		/* master: 0 = no task of the image held it (an outside terminal) */
	unsigned int index;	/* at the dump */
	uint64_t flags;
	struct termios2 termios;
	struct winsize ws;
	bool packet;
	int mfd, sfd;		/* the driver's (a slave entry uses its master's) */
};

static struct rtty *ttys;
static int nr_ttys;

static struct rtty *tty_find(int ref)
{
	int i;

	for (i = 0; i < nr_ttys; i++)
		if (ttys[i].ref == ref)
			return &ttys[i];
	return NULL;
}

static struct rtty *tty_add(int ref)
{
	struct rtty *t = tty_find(ref);

	if (t)
		return t;
	t = realloc(ttys, (nr_ttys + 1) * sizeof(*t));
	if (!t) {
		pr_perror("tty table");
		return NULL;
	}
	ttys = t;
	ttys[nr_ttys] = (struct rtty){ .ref = ref, .link = -1, .mfd = -1, .sfd = -1 };
	return &ttys[nr_ttys++];
}

static struct rtty *master_of(struct rtty *t)
{
	return t->master ? t : &ttys[t->link];
}

static int make_pair(struct rctx *c, struct rtty *m)
{
	if (m->mfd >= 0)
		return 0;
	m->mfd = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (m->mfd < 0)
		return rst_refuse(c, "a new pty for /dev/pts/%u: %s", m->index, strerror(errno));
	if (grantpt(m->mfd) || (!(m->flags & TTYF_PTY_LOCK) && unlockpt(m->mfd)))
		return pr_perror("set up a new pty");
	if (m->flags & TTYF_EXCLUSIVE && ioctl(m->mfd, TIOCEXCL))
		return pr_perror("exclusive mode of a new pty");
	return 0;
}

/* the driver's own open of the new slave */
static int open_slave(struct rctx *c, struct rtty *m)
{
	char path[64];

	if (m->sfd >= 0)
		return 0;
	if (ioctl(m->mfd, TIOCGPTN, &(unsigned int){ 0 }) ||
	    ptsname_r(m->mfd, path, sizeof(path)))
		return pr_perror("name of a new pty");
	m->sfd = open(path, O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (m->sfd < 0)
		return rst_refuse(c, "open %s (for /dev/pts/%u): %s", path, m->index, strerror(errno));
	return 0;
}

/*
 * Bytes back into one side's read buffer: written into the other end with the slave in
 * raw mode (the saved termios comes after), then waited for until the line discipline
 * holds them.
 */
static int refill(struct rctx *c, struct rtty *m, bool into_slave, const char *data, uint32_t len)
{
	struct termios2 raw;
	int have = 0, waited;

	if (!len)
		return 0;
	if (open_slave(c, m))
		return -1;
	if (ioctl(m->sfd, TCGETS2, &raw))
		return pr_perror("termios of a new pty");
	raw.c_iflag &= ~(IGNBRK | BRKINT | PARMRK | ISTRIP | INLCR | IGNCR | ICRNL | IXON);
	raw.c_oflag &= ~OPOST;
	raw.c_lflag &= ~(ECHO | ECHONL | ICANON | ISIG | IEXTEN);
	if (ioctl(m->sfd, TCSETS2, &raw))
		return pr_perror("raw mode of a new pty");
	if (write(into_slave ? m->mfd : m->sfd, data, len) != (ssize_t)len)
		return pr_perror("write %u buffered bytes back into a pty", len);
	for (waited = 0; waited < QUEUE_WAIT_MS; waited++) {
		if (ioctl(into_slave ? m->sfd : m->mfd, FIONREAD, &have))
			return pr_perror("FIONREAD on a new pty");
		if ((uint32_t)have >= len)
			return 0;
		usleep(1000);
	}
	return pr_err("a new pty took %d of %u buffered bytes", have, len);
}

static void get_termios(struct termios2 *t, const struct ckpt_hdr_tty *h)
{
	*t = (struct termios2){ .c_iflag = h->termios.c_iflag, .c_oflag = h->termios.c_oflag,
				.c_cflag = h->termios.c_cflag, .c_lflag = h->termios.c_lflag,
				.c_line = h->termios.c_line, .c_ispeed = h->termios.c_ispeed,
				.c_ospeed = h->termios.c_ospeed };
	memcpy(t->c_cc, h->termios.c_cc, CKPT_TTY_NCCS);
}

/* TTY_LDISC [BUFFER]: the side's line discipline and saved read buffer (NULL, 0 if empty) */
static int read_ldisc(struct rctx *c, struct ckpt_hdr_ldisc_n_tty *ldisc, char **data, uint32_t *len)
{
	struct ckpt_hdr_ldisc_n_tty l;
	struct ckpt_hdr h;

	*data = NULL;
	*len = 0;
	if (rs_expect(&c->in, CKPT_HDR_TTY_LDISC, &h) || rs_record(&c->in, &h, &l, sizeof(l)))
		return -1;
	if (l.datalen > CKPT_N_TTY_BUF_SIZE || l.canon_datalen > CKPT_N_TTY_BUF_SIZE)
		return rs_invalid(&c->in, "TTY_LDISC at offset %llu: %u buffered bytes (at most %d)",
				  (unsigned long long)c->in.rec_off, l.datalen, CKPT_N_TTY_BUF_SIZE);
	*ldisc = l;
	if (!l.datalen)
		return 0;
	if (rs_expect(&c->in, CKPT_HDR_BUFFER, &h))
		return -1;
	if (h.len - sizeof(h) != l.datalen)
		return rs_invalid(&c->in, "BUFFER at offset %llu: %zu bytes for a datalen of %u",
				  (unsigned long long)c->in.rec_off, h.len - sizeof(h), l.datalen);
	*data = rs_payload_alloc(&c->in, &h, l.datalen, l.datalen);
	*len = l.datalen;
	return *data ? 0 : -1;
}

/* TTY TTY_LDISC [BUFFER] */
int restore_tty_rec(struct rctx *c, const struct ckpt_hdr *h)
{
	struct ckpt_hdr_tty r;
	struct ckpt_hdr_ldisc_n_tty l = { .packet = 0 };
	struct robj *o = obj_define(c, CKPT_OBJ_TTY);
	struct rtty *t, *m;
	int ref = o ? (int)(o - c->objs) : -1, ret = -1, link;
	bool master;
	char *data = NULL;
	uint32_t len;

	if (!o || rs_record(&c->in, h, &r, sizeof(r)))
		return -1;
	master = r.driver_subtype == PTY_TYPE_MASTER;
	if (r.driver_type != TTY_DRIVER_TYPE_PTY ||
	    (!master && r.driver_subtype != PTY_TYPE_SLAVE) || r.ldisc != N_TTY_LDISC)
		return rst_refuse(c, "a tty of driver %u.%u with line discipline %u (only Unix98 "
				  "ptys with n_tty are restored)", r.driver_type, r.driver_subtype,
				  r.ldisc);
	if (r.flags & (TTYF_CLOSING | TTYF_FLUSHING | TTYF_HUPPED))
		return rst_refuse(c, "/dev/pts/%u was closing or hung up (flags %#llx)", r.index,
				  (unsigned long long)r.flags);
	m = master || !obj_get(c, r.link_objref, CKPT_OBJ_TTY) ? NULL : tty_find(r.link_objref);
	if (master ? r.link_objref || r.file_objref < 0 : !m || !m->master || r.file_objref)
		return rs_invalid(&c->in, "TTY at offset %llu: %s with link %d and file %d",
				  (unsigned long long)c->in.rec_off, master ? "master" : "slave",
				  r.link_objref, r.file_objref);
	link = m ? (int)(m - ttys) : -1;
	t = tty_add(ref);		/* may move the table */
	if (!t)
		return -1;
	t->master = master;
	t->link = link;
	t->file_ref = r.file_objref;
	t->index = r.index;
	t->flags = r.flags;
	get_termios(&t->termios, &r);
	t->ws = (struct winsize){ r.winsize.ws_row, r.winsize.ws_col, r.winsize.ws_xpixel,
				  r.winsize.ws_ypixel };
	if (read_ldisc(c, &l, &data, &len))
		return -1;
	t->packet = master && l.packet;
	m = master_of(t);
	if (!m->file_ref) {
		/* an outside terminal: it becomes the caller's, whose input is its own */
		ret = len ? rst_refuse(c, "%u bytes typed ahead on the outside terminal /dev/pts/%u "
				       "cannot be given to the caller's terminal", len, t->index) : 0;
		goto out;
	}
	ret = 0;
	if (c->dry)
		goto out;
	ret = -1;
	if (master) {
		if (make_pair(c, t) || refill(c, t, false, data, len))
			goto out;
		/* a master whose slave was closed: opened and closed, as the slave's last close */
		if (t->flags & TTYF_OTHER_CLOSED) {
			if (open_slave(c, t))
				goto out;
			close(t->sfd);
			t->sfd = -1;
		}
	} else {
		/* packet mode last: the termios changes above are no status events for it */
		if (refill(c, m, true, data, len) || ioctl(m->mfd, TCSETS2, &t->termios) ||
		    ioctl(m->mfd, TIOCSWINSZ, &t->ws) ||
		    (m->packet && ioctl(m->mfd, TIOCPKT, &(int){ 1 }))) {
			pr_perror("settings of the new pty for /dev/pts/%u", t->index);
			goto out;
		}
	}
	ret = 0;
out:
	free(data);
	return ret;
}

/* the caller's terminal */
int caller_tty(void)
{
	int fd;

	for (fd = 0; fd < 3; fd++)
		if (isatty(fd))
			return fcntl(fd, F_DUPFD_CLOEXEC, 3);
	return open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC);
}

/*
 * A terminal the image does not hold (a pty whose master was outside the tree, or a
 * tty opened by its path): only with --shell-job, and then it is the caller's.
 */
int open_outside_tty(struct rctx *c, struct robj *o, const char *path)
{
	if (!c->shell_job)
		return rst_refuse(c, "%s is a terminal outside the image: restore with --shell-job "
				  "to give the tree the caller's terminal", path);
	if (c->dry)
		return 0;
	o->fd = caller_tty();
	return o->fd < 0 ? rst_refuse(c, "--shell-job: the caller has no terminal") : 0;
}

/* FILE(f_type TTY): the master's description, or a new open of the slave */
int restore_tty_file(struct rctx *c, struct robj *o, const struct ckpt_hdr_file_tty *f)
{
	struct robj *to = obj_get(c, f->tty_objref, CKPT_OBJ_TTY);
	struct rtty *t = to ? tty_find(f->tty_objref) : NULL, *m;
	int flags = (f->common.f_flags & ~(O_CREAT | O_EXCL | O_TRUNC)) | O_NOCTTY | O_CLOEXEC;
	char path[64];

	if (!t)
		return to ? rs_invalid(&c->in, "FILE at offset %llu: tty %d has no TTY record",
				       (unsigned long long)c->in.rec_off, f->tty_objref) : -1;
	m = master_of(t);
	if (!m->file_ref) {
		snprintf(path, sizeof(path), "/dev/pts/%u", t->index);
		return open_outside_tty(c, o, path);
	}
	if (c->dry)
		return 0;
	if (t->master) {
		o->fd = fcntl(m->mfd, F_DUPFD_CLOEXEC, 3);
		if (o->fd < 0 || fcntl(o->fd, F_SETFL, f->common.f_flags & O_NONBLOCK))
			return pr_perror("the master of a new pty");
		return 0;
	}
	if (ptsname_r(m->mfd, path, sizeof(path)))
		return pr_perror("name of a new pty");
	o->fd = open(path, flags);
	if (o->fd < 0)
		return rst_refuse(c, "open %s (for /dev/pts/%u): %s", path, t->index, strerror(errno));
	if (t->flags & TTYF_EXCLUSIVE && ioctl(o->fd, TIOCEXCL))
		return pr_perror("exclusive mode of %s", path);
	return 0;
}

/* SIGNAL.tty_objref: the controlling terminal of a session leader of the image */
int restore_ctty(struct rctx *c, struct rproc *p)
{
	struct rtask *leader = &c->tasks[p->leader];
	struct rtty *t, *m;
	int i;

	p->ctty_ref = 0;
	if (!p->signal.tty_objref)
		return 0;
	if (!obj_get(c, p->signal.tty_objref, CKPT_OBJ_TTY))
		return -1;
	t = tty_find(p->signal.tty_objref);
	if (!t || t->master || leader->sid != leader->pid)
		return rs_invalid(&c->in, "SIGNAL at offset %llu: pid %d has tty %d as its "
				  "controlling terminal", (unsigned long long)c->in.rec_off,
				  leader->pid, p->signal.tty_objref);
	m = master_of(t);
	if (!m->file_ref)
		return rst_refuse(c, "pid %d leads a session on the outside terminal /dev/pts/%u (with "
				  "--shell-job only a job of the caller's session gets the caller's "
				  "terminal)", leader->pid, t->index);
	p->ctty_ref = t->ref;
	if (c->dry || p->ctty_fd >= 0)
		return 0;
	/* from a pipe: the tree exists, only the leader itself can still take it */
	for (i = 0; i < c->nr_tasks; i++)
		if (c->tasks[i].sid == leader->pid && c->tasks[i].tgid != leader->pid)
			return rst_refuse(c, "pid %d: the controlling terminal of a session with other "
					  "processes is restored only from a file, not a pipe (they "
					  "must inherit it)", leader->pid);
	return 0;
}

/*
 * Before the tree, on a seekable image: the pairs the metadata pass found, and each
 * session leader's slave, which its node takes with TIOCSCTTY after its setsid().
 */
int tty_prepare(struct rctx *c)
{
	int i;

	for (i = 0; i < nr_ttys; i++)
		if (ttys[i].master && ttys[i].file_ref && make_pair(c, &ttys[i]))
			return -1;
	for (i = 0; i < c->nr_procs; i++) {
		struct rproc *p = &c->procs[i];
		struct rtty *m;

		if (!p->ctty_ref)
			continue;
		m = master_of(tty_find(p->ctty_ref));
		if (open_slave(c, m))
			return -1;
		p->ctty_fd = m->sfd;
	}
	return 0;
}

/* release: the controlling terminal taken (from a pipe) and its foreground group set */
int release_ctty(struct rctx *c, struct rproc *p)
{
	struct rtask *t = &c->tasks[p->leader];
	int32_t pgrp = p->signal.tty_pgrp;
	struct rtty *m;
	long r = 0;
	int fd;

	if (!p->ctty_ref)
		return 0;
	m = master_of(tty_find(p->ctty_ref));
	if (open_slave(c, m))
		return -1;
	fd = task_take_fd(c, p, m->sfd);
	if (fd < 0)
		return -1;
	if (p->ctty_fd < 0)
		r = rinj_syscall(c, t, SYS_ioctl, fd, TIOCSCTTY, 0, 0, 0, 0);
	if (!r && pgrp > 0)
		r = rinj_syscall(c, t, SYS_ioctl, fd, TIOCSPGRP, rinj_put(c, p, 0, &pgrp, sizeof(pgrp)),
				 0, 0, 0);
	rinj_syscall(c, t, SYS_close, fd, 0, 0, 0, 0, 0);
	if (r)
		return rst_refuse(c, "pid %d: %s of its controlling terminal: %s", t->pid,
				  p->ctty_fd < 0 && pgrp <= 0 ? "TIOCSCTTY" : "the foreground group",
				  r == INFECT_FAILED ? "failed" : strerror(-r));
	return 0;
}

/*
 * --shell-job: the tree is in the caller's session; if the image's root was in its
 * terminal's foreground group, that group is put in the foreground of the caller's.
 */
void release_shell_job(struct rctx *c)
{
	int32_t fg = c->procs[0].signal.tty_pgrp;
	sigset_t ttou, old;
	pid_t pgid = -1, sid;
	int i, fd;

	if (!c->shell_job || fg <= 0)
		return;
	for (i = 0; i < c->nr_tasks && pgid < 0; i++)
		if (c->tasks[i].pgid == fg && c->tasks[i].seized)
			pgid = getpgid(c->tasks[i].host);
	fd = pgid > 0 ? caller_tty() : -1;
	if (fd < 0)
		return;		/* its foreground group was outside the image, or no terminal */
	if (!ioctl(fd, TIOCGSID, &sid) && sid == getsid(0)) {
		/* the driver itself goes to the background: no SIGTTOU for it */
		sigemptyset(&ttou);
		sigaddset(&ttou, SIGTTOU);
		sigprocmask(SIG_BLOCK, &ttou, &old);
		if (ioctl(fd, TIOCSPGRP, &pgid))
			pr_perror("--shell-job: put process group %d in the foreground", pgid);
		sigprocmask(SIG_SETMASK, &old, NULL);
	}
	close(fd);
}

/* the tree holds its own descriptors now */
void tty_close_all(void)
{
	int i;

	for (i = 0; i < nr_ttys; i++) {
		if (ttys[i].mfd >= 0)
			close(ttys[i].mfd);
		if (ttys[i].sfd >= 0)
			close(ttys[i].sfd);
		ttys[i].mfd = ttys[i].sfd = -1;
	}
}
