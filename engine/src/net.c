/*
 * Sockets: the part every family shares, and the dispatch to the families (net_unix.c;
 * AF_INET/AF_INET6 in net_inet.c).
 *
 * Record order, as the linux-cr kernel wrote it (net/checkpoint.c): a socket's file is
 *   OBJREF(FILE) OBJREF(SOCK) SOCKET <family records> FILE{SOCKET, sock_objref}
 * where a family record may first nest another socket (a unix socket's peer); the
 * socket's queues are deferred to the end of the file table (the kernel's files_deferq):
 *   SOCKET_QUEUE(receive) {SOCKET_BUFFER BUFFER}...  SOCKET_QUEUE(send) ...
 * for each socket written in that table with has_buffers set, in the order its records
 * were completed. One SOCK object per socket, whichever descriptors and tasks hold it.
 *
 * The dumper reads a socket through its own copy of the task's descriptor (pidfd_getfd):
 * options with getsockopt, queued data with MSG_PEEK at an explicit SO_PEEK_OFF (put back
 * afterwards), so nothing the task would read is consumed. Sockets of the tree are found
 * once, by inode, from every file table of the tree.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <unistd.h>

#include "engine.h"

#ifndef SO_BINDTOIFINDEX
#define SO_BINDTOIFINDEX 62
#endif

static struct sock_dump *socks;		/* every socket the tree holds, sorted by inode */
static int nr_socks;
static bool socks_listed;
static struct sock_dump **due;		/* written in this file table, queues to follow */
static int nr_due, cap_due;

static int cmp_sock(const void *a, const void *b)
{
	const struct sock_dump *x = a, *y = b;

	return x->ino < y->ino ? -1 : x->ino > y->ino;
}

/* every "socket:[N]" descriptor of every file table of the tree, one entry per inode */
static int list_tree_sockets(struct ctx *c)
{
	int i, cap = 0;

	socks_listed = true;
	for (i = 0; i < c->nr_tasks; i++) {
		struct task *t = &c->tasks[i];
		char path[320], link[64];
		struct dirent *e;
		DIR *d;

		if (t->share[SHARE_FILES] != i)
			continue;	/* a file table already listed */
		snprintf(path, sizeof(path), "/proc/%d/fd", t->tid);
		d = opendir(path);
		if (!d)
			continue;	/* a zombie */
		while ((e = readdir(d))) {
			unsigned long ino;
			ssize_t n;

			snprintf(path, sizeof(path), "/proc/%d/fd/%s", t->tid, e->d_name);
			n = readlink(path, link, sizeof(link) - 1);
			if (n <= 0)
				continue;
			link[n] = 0;
			if (sscanf(link, "socket:[%lu]", &ino) != 1)
				continue;
			if (nr_socks == cap) {
				struct sock_dump *ns = realloc(socks, (cap = cap ? 2 * cap : 16) * sizeof(*ns));

				if (!ns) {
					closedir(d);
					return pr_perror("socket list");
				}
				socks = ns;
			}
			socks[nr_socks++] = (struct sock_dump){ .ino = ino, .tid = t->tid,
								.tfd = atoi(e->d_name), .sk = -1 };
		}
		closedir(d);
	}
	qsort(socks, nr_socks, sizeof(*socks), cmp_sock);
	/* one entry per inode: the first holder in tree order stays */
	for (i = 1; i < nr_socks; i++)
		if (socks[i].ino == socks[i - 1].ino) {
			memmove(&socks[i], &socks[i + 1], (nr_socks - i - 1) * sizeof(*socks));
			nr_socks--;
			i--;
		}
	return 0;
}

struct sock_dump *sock_of_inode(struct ctx *c, ino_t ino)
{
	struct sock_dump key = { .ino = ino };

	if (!socks_listed && list_tree_sockets(c))
		return NULL;
	return nr_socks ? bsearch(&key, socks, nr_socks, sizeof(*socks), cmp_sock) : NULL;
}

/* the dumper's own descriptor of the task's socket (the same open file) */
static int grab_socket(struct sock_dump *s)
{
	int pidfd = syscall(SYS_pidfd_open, s->tid, 0);

	if (pidfd < 0)
		return pr_perror("pidfd_open %d", s->tid);
	s->sk = syscall(SYS_pidfd_getfd, pidfd, s->tfd, 0);
	close(pidfd);
	if (s->sk < 0)
		return pr_perror("pid %d fd %d: pidfd_getfd", s->tid, s->tfd);
	return 0;
}

static int get_int(int sk, int opt, int *v)
{
	socklen_t len = sizeof(*v);

	*v = 0;
	return getsockopt(sk, SOL_SOCKET, opt, v, &len);
}

static int64_t get_timeo_ns(int sk, int opt)
{
	struct timeval tv = { 0 };
	socklen_t len = sizeof(tv);

	if (getsockopt(sk, SOL_SOCKET, opt, &tv, &len))
		return 0;
	return (int64_t)tv.tv_sec * 1000000000 + tv.tv_usec * 1000;
}

/* SO_RCVBUF/SO_SNDBUF of a fresh socket of this family and type: a differing value was set */
static void default_bufs(int family, int type, int *rcv, int *snd)
{
	static struct { int family, type, rcv, snd; } seen[8];
	static int nr_seen;
	int i, sk;

	for (i = 0; i < nr_seen; i++)
		if (seen[i].family == family && seen[i].type == type) {
			*rcv = seen[i].rcv;
			*snd = seen[i].snd;
			return;
		}
	*rcv = *snd = -1;
	sk = socket(family, type | SOCK_CLOEXEC, 0);
	if (sk < 0)
		return;
	get_int(sk, SO_RCVBUF, rcv);
	get_int(sk, SO_SNDBUF, snd);
	close(sk);
	if (nr_seen < (int)(sizeof(seen) / sizeof(seen[0])))
		seen[nr_seen++] = (typeof(seen[0])){ family, type, *rcv, *snd };
}

/*
 * The SOL_SOCKET part of SOCKET, as the kernel's sock_cptrst() saw it: the values a user can
 * set and read back. sk_err is left 0: reading SO_ERROR clears it.
 */
static void fill_socket(struct sock_dump *s)
{
	struct ckpt_hdr_socket *h = &s->h;
	static const struct { int opt, bit; } flag_opts[] = {
		{ SO_OOBINLINE, CKPT_SOCK_URGINLINE }, { SO_KEEPALIVE, CKPT_SOCK_KEEPOPEN },
		{ SO_BROADCAST, CKPT_SOCK_BROADCAST }, { SO_DEBUG, CKPT_SOCK_DBG },
		{ SO_DONTROUTE, CKPT_SOCK_LOCALROUTE }, { SO_TIMESTAMP_OLD, CKPT_SOCK_RCVTSTAMP },
		{ SO_TIMESTAMPNS_OLD, CKPT_SOCK_RCVTSTAMPNS },
	};
	struct linger lg = { 0 };
	socklen_t len = sizeof(lg);
	int v, rcv_default, snd_default;
	size_t i;

	memset(h, 0, sizeof(*h));
	if (!get_int(s->sk, SO_PASSCRED, &v) && v)
		h->socket.flags |= 1ULL << CKPT_SOCKET_PASSCRED;
	if (!get_int(s->sk, SO_PASSSEC, &v) && v)
		h->socket.flags |= 1ULL << CKPT_SOCKET_PASSSEC;
	if (!get_int(s->sk, SO_BINDTOIFINDEX, &v))
		h->sock_common.bound_dev_if = v;
	if (!get_int(s->sk, SO_REUSEADDR, &v))
		h->sock_common.reuse = v;
	h->sock_common.family = s->family;
	if (!get_int(s->sk, SO_RCVLOWAT, &v))
		h->sock.rcvlowat = v;
	for (i = 0; i < sizeof(flag_opts) / sizeof(flag_opts[0]); i++)
		if (!get_int(s->sk, flag_opts[i].opt, &v) && v)
			h->sock.flags |= 1ULL << flag_opts[i].bit;
	if (h->sock.flags & (1ULL << CKPT_SOCK_RCVTSTAMP | 1ULL << CKPT_SOCK_RCVTSTAMPNS))
		h->sock.flags |= 1ULL << CKPT_SOCK_TIMESTAMP;	/* the kernel sets both */
	if (!getsockopt(s->sk, SOL_SOCKET, SO_LINGER, &lg, &len)) {
		h->sock.linger_onoff = lg.l_onoff;
		h->sock.linger_linger = lg.l_linger;
		if (lg.l_onoff)
			h->sock.flags |= 1ULL << CKPT_SOCK_LINGER;
	}
	h->sock.rcvtimeo = get_timeo_ns(s->sk, SO_RCVTIMEO_OLD);
	h->sock.sndtimeo = get_timeo_ns(s->sk, SO_SNDTIMEO_OLD);
	if (!get_int(s->sk, SO_PRIORITY, &v))
		h->sock.priority = v;
	/* the kernel doubles what setsockopt is given; the record holds what the user gave */
	default_bufs(s->family, s->type, &rcv_default, &snd_default);
	if (!get_int(s->sk, SO_RCVBUF, &v)) {
		h->sock.rcvbuf = v / 2;
		if (v != rcv_default)
			h->sock.userlocks |= CKPT_SOCK_RCVBUF_LOCK;
	}
	if (!get_int(s->sk, SO_SNDBUF, &v)) {
		h->sock.sndbuf = v / 2;
		if (v != snd_default)
			h->sock.userlocks |= CKPT_SOCK_SNDBUF_LOCK;
	}
	h->sock.type = s->type;
	h->sock.protocol = s->protocol;
}

/*
 * Whether the socket can be saved, decided once: SOCK_SAVED, or SOCK_REFUSED with an ERROR
 * record written by the family. Its SOCKET record is filled on the way.
 */
int check_sock(struct ctx *c, struct sock_dump *s)
{
	int r;

	if (s->verdict || s->checking)
		return s->verdict ? s->verdict : SOCK_SAVED;	/* a pair: the other end asks */
	s->checking = true;
	if (grab_socket(s) || get_int(s->sk, SO_DOMAIN, &s->family) ||
	    get_int(s->sk, SO_TYPE, &s->type) || get_int(s->sk, SO_PROTOCOL, &s->protocol))
		return pr_perror("pid %d fd %d: read the socket", s->tid, s->tfd);
	fill_socket(s);
	/* the dumper peeks at its own offsets and puts the task's back; v23 has no field for it */
	if (get_int(s->sk, SO_PEEK_OFF, &s->peek_off))
		s->peek_off = -1;
	if (s->peek_off >= 0 &&
	    ckpt_unsupported(c, "pid %d fd %d: socket:[%lu] SO_PEEK_OFF %d not saved", s->tid, s->tfd,
			     (unsigned long)s->ino, s->peek_off))
		return -1;
	switch (s->family) {
	case AF_UNIX:
		r = check_unix_socket(c, s);
		break;
	case AF_INET:
	case AF_INET6:
		r = check_inet_socket(c, s);
		break;
	default:
		r = ckpt_unsupported(c, "pid %d fd %d: socket:[%lu] of family %d not saved", s->tid,
				     s->tfd, (unsigned long)s->ino, s->family) ? -1 : SOCK_REFUSED;
	}
	s->checking = false;
	if (r < 0)
		return -1;
	s->verdict = r ? SOCK_REFUSED : SOCK_SAVED;
	if (s->verdict == SOCK_REFUSED) {
		close(s->sk);
		s->sk = -1;
	}
	return s->verdict;
}

/* 0: the descriptor's socket is saved; 2: not (an ERROR record says why); -1: failure */
int check_socket(struct ctx *c, struct task *t, int fd, ino_t ino)
{
	struct sock_dump *s = sock_of_inode(c, ino);
	bool fresh;
	int v;

	if (!s)
		return pr_err("pid %d fd %d: socket:[%lu] is not in the tree's descriptors", t->tid,
			      fd, (unsigned long)ino);
	fresh = !s->verdict;
	v = check_sock(c, s);
	if (v < 0)
		return -1;
	if (v == SOCK_SAVED)
		return 0;
	/* the ERROR record named the socket by its first holder; name this descriptor too */
	if (!fresh || s->tid != t->tid || s->tfd != fd)
		if (ckpt_unsupported(c, "pid %d fd %d: socket:[%lu] not saved (see above)", t->tid, fd,
				     (unsigned long)ino))
			return -1;
	return 2;
}

static int add_due(struct sock_dump *s)
{
	if (nr_due == cap_due) {
		struct sock_dump **nd = realloc(due, (cap_due = cap_due ? 2 * cap_due : 16) * sizeof(*nd));

		if (!nd)
			return pr_perror("socket queue list");
		due = nd;
	}
	due[nr_due++] = s;
	s->queued = true;
	return 0;
}

/* OBJREF(SOCK) SOCKET <family records> the first time; the socket's objref */
int write_sock(struct ctx *c, struct sock_dump *s)
{
	bool first;
	int r;

	s->ref = obj_lookup_add(c->objs, CKPT_OBJ_SOCK, s->ino, 0, &first);
	if (s->ref < 0 || s->written)
		return s->ref;
	if (s->verdict != SOCK_SAVED)
		return pr_err("socket:[%lu] written before it was checked", (unsigned long)s->ino);
	s->written = true;	/* before the family's records: a peer's record refers back */
	if (write_objref(&c->img, CKPT_OBJ_SOCK, s->ref) ||
	    write_obj(&c->img, CKPT_HDR_SOCKET, &s->h, sizeof(s->h)))
		return -1;
	switch (s->family) {
	case AF_UNIX:
		r = dump_unix_socket(c, s);
		break;
	case AF_INET:
	case AF_INET6:
		r = dump_inet_socket(c, s);
		break;
	default:
		r = pr_err("socket family %d", s->family);
	}
	if (r)
		return -1;
	if (s->h.has_buffers)
		return add_due(s) ? -1 : s->ref;
	close(s->sk);
	s->sk = -1;
	return s->ref;
}

/* OBJREF(FILE) [the socket's records, the first time] FILE{SOCKET} */
int dump_socket_file(struct ctx *c, struct task *t, int file_ref, struct ckpt_hdr_file *common,
		     ino_t ino)
{
	struct ckpt_hdr_file_socket h = { .common = *common };
	struct sock_dump *s = sock_of_inode(c, ino);

	if (!s)
		return pr_err("pid %d: socket:[%lu] is not in the tree's descriptors", t->tid,
			      (unsigned long)ino);
	h.common.f_mode &= 0x3;		/* FMODE_READ|FMODE_WRITE: a socket does not seek */
	if (write_objref(&c->img, CKPT_OBJ_FILE, file_ref))
		return -1;
	h.sock_objref = write_sock(c, s);
	if (h.sock_objref < 0)
		return -1;
	return write_obj(&c->img, CKPT_HDR_FILE, &h, sizeof(h));
}

/* the deferred part of the file table: each written socket's queues, in order */
int dump_socket_queues(struct ctx *c)
{
	int i, r = 0;

	for (i = 0; i < nr_due && !r; i++) {
		struct sock_dump *s = due[i];

		switch (s->family) {
		case AF_UNIX:
			r = dump_unix_queues(c, s);
			break;
		case AF_INET:
		case AF_INET6:
			r = dump_inet_queues(c, s);
			break;
		default:
			r = pr_err("socket family %d", s->family);
		}
		if (setsockopt(s->sk, SOL_SOCKET, SO_PEEK_OFF, &s->peek_off, sizeof(s->peek_off)) && !r)
			r = pr_perror("pid %d fd %d: put SO_PEEK_OFF back", s->tid, s->tfd);
		close(s->sk);
		s->sk = -1;
	}
	nr_due = 0;
	return r;
}

/*
 * Up to len bytes of the receive queue from byte off on (a datagram socket: the message at
 * that offset), read without consuming them. 1 and *got = the length of what is there (more
 * than len with MSG_TRUNC in *msg_flags), 0 when the queue ends there, -1 on failure.
 * control gets the ancillary data (SCM_RIGHTS, SCM_CREDENTIALS).
 */
int sock_peek(struct sock_dump *s, void *buf, size_t len, size_t off, size_t *got,
	      int *msg_flags, void *control, size_t *control_len)
{
	struct iovec iov = { buf, len };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control,
			    .msg_controllen = control ? *control_len : 0 };
	int o = off;
	ssize_t n;

	if (off > (size_t)0x7fffffff || setsockopt(s->sk, SOL_SOCKET, SO_PEEK_OFF, &o, sizeof(o)))
		return pr_perror("pid %d fd %d: SO_PEEK_OFF %zu", s->tid, s->tfd, off);
	/* MSG_TRUNC: a datagram's own length; on a stream it would skip the copy */
	n = recvmsg(s->sk, &m, MSG_PEEK | MSG_DONTWAIT | (s->type == SOCK_STREAM ? 0 : MSG_TRUNC));
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
		return 0;
	if (n < 0)
		return pr_perror("pid %d fd %d: peek at the receive queue", s->tid, s->tfd);
	*got = n;
	*msg_flags = m.msg_flags;
	if (control)
		*control_len = m.msg_controllen;
	return 1;
}
