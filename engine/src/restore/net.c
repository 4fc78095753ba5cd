/*
 * TEMPORARY minimal socket dispatch of the inet branch on restore, with the names and
 * signatures of the unix branch's restore/net.c (/work/notes/net-api.md); the merge takes
 * the unix branch's file.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "restore.h"

static int *due;		/* SOCK objrefs whose queues are still to come */
static int nr_due, cap_due, next_due, queues_read;
static bool due_dry;

int restore_sock_options(struct rctx *c, int fd, const struct ckpt_hdr_socket *h)
{
	struct linger lg = { h->sock.linger_onoff, h->sock.linger_linger };
	struct timeval rt = { h->sock.rcvtimeo / 1000000000, h->sock.rcvtimeo % 1000000000 / 1000 };
	struct timeval st = { h->sock.sndtimeo / 1000000000, h->sock.sndtimeo % 1000000000 / 1000 };
	int one = 1, reuse = h->sock_common.reuse;

	if (c->dry)
		return 0;
	if ((reuse && setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &reuse, sizeof(reuse))) ||
	    (lg.l_onoff && setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg))) ||
	    (h->sock.rcvtimeo && setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &rt, sizeof(rt))) ||
	    (h->sock.sndtimeo && setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &st, sizeof(st))) ||
	    ((h->sock.flags & 1ULL << CKPT_SOCK_KEEPOPEN) &&
	     setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one))))
		return rst_refuse(c, "socket options: %s", strerror(errno));
	return 0;
}

int restore_socket(struct rctx *c, const struct ckpt_hdr *h)
{
	struct robj *o = obj_define(c, CKPT_OBJ_SOCK);
	struct rsock *s;

	if (!o)
		return -1;
	s = calloc(1, sizeof(*s));
	if (!s)
		return pr_perror("socket");
	o->data = s;
	if (rs_record(&c->in, h, &s->h, sizeof(s->h)))
		return -1;
	if (s->h.sock_common.family != AF_INET && s->h.sock_common.family != AF_INET6)
		return rst_refuse(c, "sockets of family %u are not restored", s->h.sock_common.family);
	if (restore_inet_socket(c, o, s))
		return -1;
	if (!s->h.has_buffers)
		return 0;
	if (due_dry != c->dry) {
		nr_due = next_due = queues_read = 0;
		due_dry = c->dry;
	}
	if (nr_due == cap_due) {
		int *nd = realloc(due, (cap_due = cap_due ? 2 * cap_due : 16) * sizeof(*nd));

		if (!nd)
			return pr_perror("socket list");
		due = nd;
	}
	due[nr_due++] = o - c->objs;
	return 0;
}

int restore_socket_queue(struct rctx *c, const struct ckpt_hdr *h)
{
	struct ckpt_hdr_socket_queue q;
	struct robj *o;

	if (rs_record(&c->in, h, &q, sizeof(q)))
		return -1;
	if (due_dry != c->dry || next_due >= nr_due)
		return rs_invalid(&c->in, "SOCKET_QUEUE at offset %llu: no socket has queues to come",
				  (unsigned long long)c->in.rec_off);
	o = &c->objs[due[next_due]];
	if (restore_inet_queue(c, o, o->data, &q, queues_read == 0))
		return -1;
	if (++queues_read == 2) {
		queues_read = 0;
		if (restore_inet_finish(c, o, o->data))
			return -1;
		next_due++;
	}
	return 0;
}

int restore_socket_file(struct rctx *c, struct robj *o, const struct ckpt_hdr_file_socket *f)
{
	struct robj *s = obj_get(c, f->sock_objref, CKPT_OBJ_SOCK);

	if (!s)
		return -1;
	if (c->dry)
		return 0;
	o->fd = fcntl(s->fd, F_DUPFD_CLOEXEC, 3);
	if (o->fd < 0 || fcntl(o->fd, F_SETFL, f->common.f_flags & O_NONBLOCK))
		return pr_perror("socket file");
	return 0;
}
