/*
 * Sockets on restore: the part every family shares (the SOCKET record, the generic
 * SOL_SOCKET options, the deferred queues) and the dispatch to the families
 * (restore/net_unix.c; AF_INET/AF_INET6 in restore/net_inet.c). The mirror of net.c.
 *
 * The driver creates each socket when its SOCKET record and the family's records arrive
 * (a pair once, when the first of its ends is complete), holds it like any open file, and
 * the tasks take it with pidfd_getfd at their FILE_DESC. The queues, which the kernel
 * wrote at the end of the file table, are sent back in the order of the image; once the
 * last queue of the table is back, each family finishes its sockets (shutdown bits, names
 * connected to, the other end of a pair whose peer was gone).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "restore.h"

#ifndef SO_BINDTOIFINDEX
#define SO_BINDTOIFINDEX 62
#endif

/* sock.flags bits the restore knows how to set; any other is refused */
#define KNOWN_SOCK_FLAGS (1ULL << CKPT_SOCK_URGINLINE | 1ULL << CKPT_SOCK_KEEPOPEN |	\
			  1ULL << CKPT_SOCK_LINGER | 1ULL << CKPT_SOCK_BROADCAST |		\
			  1ULL << CKPT_SOCK_TIMESTAMP | 1ULL << CKPT_SOCK_DBG |		\
			  1ULL << CKPT_SOCK_RCVTSTAMP | 1ULL << CKPT_SOCK_RCVTSTAMPNS |	\
			  1ULL << CKPT_SOCK_LOCALROUTE | 1ULL << CKPT_SOCK_DONE)
#define KNOWN_SOCKET_FLAGS (1ULL << CKPT_SOCKET_PASSCRED | 1ULL << CKPT_SOCKET_PASSSEC)

/* sockets whose queues are still to come (in order), and those whose queues came */
static struct { int ref; int queues_read; } *due;
static int nr_due, cap_due, next_due;
static bool due_dry;

static int ref_of(struct rctx *c, struct robj *o)
{
	return o - c->objs;
}

/* the next record of type, after the nested objects (a peer socket) the kernel wrote first */
int rs_family_record(struct rctx *c, uint32_t type, struct ckpt_hdr *h)
{
	for (;;) {
		int r = rs_peek(&c->in, h);

		if (r < 0)
			return -1;
		if (r > 0 || (h->type != CKPT_HDR_OBJREF && h->type != CKPT_HDR_SOCKET))
			return rs_expect(&c->in, type, h);
		if (rs_next(&c->in, h))
			return -1;
		r = h->type == CKPT_HDR_OBJREF ? restore_objref(c, h) : restore_socket(c, h);
		if (r)
			return -1;
	}
}

static int set_int(int fd, int opt, int v)
{
	return setsockopt(fd, SOL_SOCKET, opt, &v, sizeof(v));
}

static int set_timeo(int fd, int opt, int64_t ns)
{
	struct timeval tv = { ns / 1000000000, (ns % 1000000000) / 1000 };

	return setsockopt(fd, SOL_SOCKET, opt, &tv, sizeof(tv));
}

/* a buffer size the user set; above the sysctl maximum only with ...FORCE (CAP_NET_ADMIN) */
static int set_buf(int fd, int opt, int force_opt, int v)
{
	int got;
	socklen_t len = sizeof(got);

	if (set_int(fd, opt, v) || getsockopt(fd, SOL_SOCKET, opt, &got, &len))
		return -1;
	return got / 2 < v ? set_int(fd, force_opt, v) : 0;
}

/* the SOL_SOCKET part of SOCKET, set on the new socket (the kernel's sock_cptrst) */
int restore_sock_options(struct rctx *c, int fd, const struct ckpt_hdr_socket *h)
{
	static const struct { int opt, bit; } flag_opts[] = {
		{ SO_OOBINLINE, CKPT_SOCK_URGINLINE }, { SO_KEEPALIVE, CKPT_SOCK_KEEPOPEN },
		{ SO_BROADCAST, CKPT_SOCK_BROADCAST }, { SO_DEBUG, CKPT_SOCK_DBG },
		{ SO_DONTROUTE, CKPT_SOCK_LOCALROUTE }, { SO_TIMESTAMP_OLD, CKPT_SOCK_RCVTSTAMP },
		{ SO_TIMESTAMPNS_OLD, CKPT_SOCK_RCVTSTAMPNS },
	};
	struct linger lg = { h->sock.linger_onoff, h->sock.linger_linger };
	const char *what = NULL;
	size_t i;

	if (c->dry)
		return 0;
	if ((h->socket.flags & (1ULL << CKPT_SOCKET_PASSCRED)) && set_int(fd, SO_PASSCRED, 1))
		what = "SO_PASSCRED";
	else if ((h->socket.flags & (1ULL << CKPT_SOCKET_PASSSEC)) && set_int(fd, SO_PASSSEC, 1))
		what = "SO_PASSSEC";
	else if (h->sock_common.bound_dev_if && set_int(fd, SO_BINDTOIFINDEX, h->sock_common.bound_dev_if))
		what = "SO_BINDTOIFINDEX";
	else if (h->sock_common.reuse && set_int(fd, SO_REUSEADDR, h->sock_common.reuse))
		what = "SO_REUSEADDR";
	else if (h->sock.priority && set_int(fd, SO_PRIORITY, h->sock.priority))
		what = "SO_PRIORITY";
	else if (h->sock.rcvlowat > 1 && set_int(fd, SO_RCVLOWAT, h->sock.rcvlowat))
		what = "SO_RCVLOWAT";
	else if (h->sock.linger_onoff && setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)))
		what = "SO_LINGER";
	else if (h->sock.rcvtimeo && set_timeo(fd, SO_RCVTIMEO_OLD, h->sock.rcvtimeo))
		what = "SO_RCVTIMEO";
	else if (h->sock.sndtimeo && set_timeo(fd, SO_SNDTIMEO_OLD, h->sock.sndtimeo))
		what = "SO_SNDTIMEO";
	else if ((h->sock.userlocks & CKPT_SOCK_RCVBUF_LOCK) &&
		 set_buf(fd, SO_RCVBUF, SO_RCVBUFFORCE, h->sock.rcvbuf))
		what = "SO_RCVBUF";
	else if ((h->sock.userlocks & CKPT_SOCK_SNDBUF_LOCK) &&
		 set_buf(fd, SO_SNDBUF, SO_SNDBUFFORCE, h->sock.sndbuf))
		what = "SO_SNDBUF";
	for (i = 0; !what && i < sizeof(flag_opts) / sizeof(flag_opts[0]); i++)
		if ((h->sock.flags & (1ULL << flag_opts[i].bit)) && set_int(fd, flag_opts[i].opt, 1))
			what = "a socket flag";
	if (what)
		return rst_refuse(c, "socket option %s: %s", what, strerror(errno));
	return 0;
}

/* what the restore cannot set is refused, as the kernel's sock_cptrst_verify() did */
static int check_socket_rec(struct rctx *c, const struct ckpt_hdr_socket *h)
{
	if (h->sock.shutdown & ~(CKPT_SOCK_SHUTDOWN_RCV | CKPT_SOCK_SHUTDOWN_SEND))
		return rs_invalid(&c->in, "SOCKET at offset %llu: shutdown bits %#x",
				  (unsigned long long)c->in.rec_off, h->sock.shutdown);
	if (h->sock.userlocks & ~0xf)
		return rs_invalid(&c->in, "SOCKET at offset %llu: userlocks %#x",
				  (unsigned long long)c->in.rec_off, h->sock.userlocks);
	if (h->sock.flags & ~KNOWN_SOCK_FLAGS)
		return rst_refuse(c, "socket flags %#llx are not restored",
				  (unsigned long long)(h->sock.flags & ~KNOWN_SOCK_FLAGS));
	if (h->socket.flags & ~KNOWN_SOCKET_FLAGS)
		return rst_refuse(c, "socket flags %#llx (struct socket) are not restored",
				  (unsigned long long)(h->socket.flags & ~KNOWN_SOCKET_FLAGS));
	if (h->sock.err || h->sock.err_soft)
		return rst_refuse(c, "a pending socket error (%u) is not restored", h->sock.err);
	if (h->sock.rcvbuf < 0 || h->sock.sndbuf < 0)
		return rs_invalid(&c->in, "SOCKET at offset %llu: buffer sizes %d/%d",
				  (unsigned long long)c->in.rec_off, h->sock.rcvbuf, h->sock.sndbuf);
	return 0;
}

static int add_due(struct rctx *c, int ref)
{
	if (due_dry != c->dry) {	/* the metadata pass is over: the real one starts afresh */
		nr_due = next_due = 0;
		due_dry = c->dry;
	}
	if (nr_due == cap_due) {
		void *nd = realloc(due, (cap_due = cap_due ? 2 * cap_due : 16) * sizeof(*due));

		if (!nd)
			return pr_perror("socket list");
		due = nd;
	}
	due[nr_due].ref = ref;
	due[nr_due++].queues_read = 0;
	return 0;
}

/* OBJREF(SOCK) SOCKET <family records>: the socket, made by its family */
int restore_socket(struct rctx *c, const struct ckpt_hdr *h)
{
	struct robj *o = obj_define(c, CKPT_OBJ_SOCK);
	struct rsock *s;
	int r;

	if (!o)
		return -1;
	s = calloc(1, sizeof(*s));
	if (!s)
		return pr_perror("socket");
	o->data = s;
	if (rs_record(&c->in, h, &s->h, sizeof(s->h)) || check_socket_rec(c, &s->h))
		return -1;
	switch (s->h.sock_common.family) {
	case AF_UNIX:
		r = restore_unix_socket(c, o, s);
		break;
	case AF_INET:
	case AF_INET6:
		r = restore_inet_socket(c, o, s);
		break;
	default:
		r = rst_refuse(c, "sockets of family %u are not restored", s->h.sock_common.family);
	}
	if (r)
		return -1;
	return s->h.has_buffers ? add_due(c, ref_of(c, o)) : 0;
}

static int finish_sockets(struct rctx *c)
{
	int i, r = 0;

	for (i = 0; i < nr_due && !r; i++) {
		struct robj *o = &c->objs[due[i].ref];
		struct rsock *s = o->data;

		switch (s->h.sock_common.family) {
		case AF_UNIX:
			r = restore_unix_finish(c, o, s);
			break;
		case AF_INET:
		case AF_INET6:
			r = restore_inet_finish(c, o, s);
			break;
		default:
			r = -1;
		}
	}
	nr_due = next_due = 0;
	return r;
}

/* SOCKET_QUEUE: the receive, then the send queue of the next socket that has them */
int restore_socket_queue(struct rctx *c, const struct ckpt_hdr *h)
{
	struct ckpt_hdr_socket_queue q;
	struct robj *o;
	struct rsock *s;
	bool recv;
	int r;

	if (rs_record(&c->in, h, &q, sizeof(q)))
		return -1;
	if (due_dry != c->dry || next_due >= nr_due)
		return rs_invalid(&c->in, "SOCKET_QUEUE at offset %llu: no socket of the file table "
				  "has queues to come", (unsigned long long)c->in.rec_off);
	o = &c->objs[due[next_due].ref];
	s = o->data;
	recv = due[next_due].queues_read == 0;
	switch (s->h.sock_common.family) {
	case AF_UNIX:
		r = restore_unix_queue(c, o, s, &q, recv);
		break;
	case AF_INET:
	case AF_INET6:
		r = restore_inet_queue(c, o, s, &q, recv);
		break;
	default:
		r = -1;
	}
	if (r)
		return -1;
	if (++due[next_due].queues_read == 2)
		next_due++;
	return next_due == nr_due ? finish_sockets(c) : 0;
}

/* FILE{SOCKET}: the open file of a socket made before */
int restore_socket_file(struct rctx *c, struct robj *o, const struct ckpt_hdr_file_socket *f)
{
	struct robj *sk = obj_get(c, f->sock_objref, CKPT_OBJ_SOCK);
	int fl;

	if (!sk)
		return -1;
	if (c->dry)
		return 0;
	if (sk->fd < 0)
		return pr_err("socket %d was not made", f->sock_objref);
	o->fd = fcntl(sk->fd, F_DUPFD_CLOEXEC, 0);
	fl = o->fd < 0 ? -1 : fcntl(o->fd, F_GETFL);
	if (fl < 0 || fcntl(o->fd, F_SETFL, (fl & ~O_NONBLOCK) | (f->common.f_flags & O_NONBLOCK)))
		return pr_perror("socket file flags");
	return 0;
}
