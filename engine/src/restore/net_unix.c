/*
 * AF_UNIX sockets on restore: the mirror of net_unix.c.
 *
 * A pair whose both ends are in the image is made by socketpair() when the first end is
 * complete; a datagram socket connected to a name connects to it once the file table's
 * sockets exist (at the finish); a socket whose peer was gone at the dump is made as a pair
 * whose other end sends the queue back and is then closed, so it reads the data and then
 * end of file, as it would have. Names are bound again: an abstract name must be free; a
 * path must be absent or a socket file no socket is bound to any more (a stale file left
 * by the dumped program, which is then unlinked -- nothing else is ever removed); a name
 * unlinked at the dump is bound and unlinked again. A connected stream socket is not
 * bound again (an accepted socket's name is its listener's): a connection accepted from a
 * listener restored before it is made again by connect() and accept(). Queued messages are sent
 * back in order from the peer (or the closed pair's other end, or an unnamed socket to the
 * socket's name), one send per message: datagram and seqpacket boundaries stay.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <unistd.h>

#include "restore.h"

#define MSG_MAX		(64U << 20)
#define SKB_COUNT_MAX	(1U << 20)

struct runix {			/* rsock.fam */
	struct ckpt_hdr_socket_unix un;
	char *dir;		/* a relative name's directory */
	int spare;		/* the pair's other end standing in for a peer that was gone */
	bool connect_name;	/* connect to un.raddr at the finish */
};

static bool has_name(uint32_t len)
{
	return len > sizeof(uint16_t);
}

static bool relative(const struct ckpt_sockaddr_un *a, uint32_t len)
{
	return has_name(len) && a->sun_path[0] && a->sun_path[0] != '/';
}

/* the name as an address to bind, connect or send to (a relative one below dir) */
static int sockaddr_of(struct rctx *c, const struct ckpt_sockaddr_un *a, uint32_t len,
		       const char *dir, struct sockaddr_un *sa, socklen_t *salen)
{
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	if (relative(a, len) && dir) {
		int n = snprintf(sa->sun_path, sizeof(sa->sun_path), "%s/%.*s", dir,
				 (int)strnlen(a->sun_path, len - 2), a->sun_path);

		if (n < 0 || n >= (int)sizeof(sa->sun_path))
			return rst_refuse(c, "socket name %s/%s is too long to reach", dir, a->sun_path);
		*salen = offsetof(struct sockaddr_un, sun_path) + n + 1;
		return 0;
	}
	memcpy(sa->sun_path, a->sun_path, len - 2);
	*salen = len;
	return 0;
}

/* a socket of this network namespace is bound to the file st (unix_diag) */
static int inode_bound(const struct stat *st, bool *bound)
{
	uint64_t kdev = (uint64_t)major(st->st_dev) << 20 | minor(st->st_dev);
	struct unix_diag_info *tab;
	int i, n;

	if (unix_diag_table(&tab, &n))
		return -1;
	*bound = false;
	for (i = 0; i < n; i++)
		if (tab[i].has_vfs && tab[i].vfs_ino == st->st_ino && tab[i].vfs_dev == kdev)
			*bound = true;
	free(tab);
	return 0;
}

/* bind the socket's own name again (see the top of the file for the rules) */
static int bind_name(struct rctx *c, struct robj *o, struct runix *u)
{
	const struct ckpt_sockaddr_un *a = &u->un.laddr;
	struct sockaddr_un sa, at;
	socklen_t salen, atlen;
	char name[600];
	struct stat st;
	bool bound;
	int cwd = -1, r;

	unix_name_text(a, u->un.laddr_len, name, sizeof(name));
	if (!a->sun_path[0]) {		/* abstract */
		int fd = c->dry ? socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0) : o->fd;

		if (fd < 0 || sockaddr_of(c, a, u->un.laddr_len, NULL, &sa, &salen))
			return fd < 0 ? pr_perror("socket") : -1;
		r = bind(fd, (struct sockaddr *)&sa, salen);
		if (c->dry)
			close(fd);
		if (r)
			return rst_refuse(c, "bind unix socket %s: %s", name,
					  errno == EADDRINUSE ? "address already in use" : strerror(errno));
		return 0;
	}
	if (sockaddr_of(c, a, u->un.laddr_len, u->dir, &at, &atlen))
		return -1;
	if (!lstat(at.sun_path, &st)) {
		if (!S_ISSOCK(st.st_mode))
			return rst_refuse(c, "bind unix socket %s: %s exists and is not a socket", name,
					  at.sun_path);
		if (inode_bound(&st, &bound))
			return -1;
		if (bound)
			return rst_refuse(c, "bind unix socket %s: address already in use", name);
		/* a stale socket file no socket is bound to: the dumped program's own */
		if (!c->dry && unlink(at.sun_path) && errno != ENOENT)
			return rst_refuse(c, "remove the stale socket file %s: %s", at.sun_path,
					  strerror(errno));
	} else if (errno != ENOENT) {
		return rst_refuse(c, "bind unix socket %s: %s", name, strerror(errno));
	}
	if (c->dry)
		return 0;
	/* bound as it was named: a relative name from its directory */
	if (relative(a, u->un.laddr_len)) {
		cwd = open(".", O_PATH | O_DIRECTORY | O_CLOEXEC);
		if (cwd < 0 || chdir(u->dir))
			return rst_refuse(c, "bind unix socket %s: directory %s: %s", name, u->dir,
					  strerror(errno));
	}
	sockaddr_of(c, a, u->un.laddr_len, NULL, &sa, &salen);
	r = bind(o->fd, (struct sockaddr *)&sa, salen);
	if (cwd >= 0) {
		if (fchdir(cwd))
			r = pr_perror("back to the restorer's directory");
		close(cwd);
	}
	if (r)
		return rst_refuse(c, "bind unix socket %s: %s", name, strerror(errno));
	if (!(u->un.flags & CKPT_UNIX_LINKED) && unlink(at.sun_path))
		return pr_perror("unlink %s (it was unlinked at the dump)", at.sun_path);
	return 0;
}

static int check_unix_rec(struct rctx *c, struct robj *o, const struct rsock *s,
			  const struct ckpt_hdr_socket_unix *un)
{
	int type = s->h.sock.type, state = s->h.sock.state;

	if (un->this != o - c->objs || un->peer < 0 || un->peer >= c->nr_objs + (1 << 24) ||
	    un->laddr_len > sizeof(un->laddr) || un->raddr_len > sizeof(un->raddr) ||
	    (un->laddr_len && un->laddr_len < 2) || (un->raddr_len && un->raddr_len < 2))
		return rs_invalid(&c->in, "SOCKET_UNIX at offset %llu: this %d peer %d, names of %u "
				  "and %u bytes", (unsigned long long)c->in.rec_off, un->this, un->peer,
				  un->laddr_len, un->raddr_len);
	if (type != SOCK_STREAM && type != SOCK_DGRAM && type != SOCK_SEQPACKET)
		return rst_refuse(c, "unix sockets of type %d are not restored", type);
	if (state != CKPT_TCP_ESTABLISHED && state != CKPT_TCP_CLOSE && state != CKPT_TCP_LISTEN)
		return rs_invalid(&c->in, "SOCKET at offset %llu: unix socket state %d",
				  (unsigned long long)c->in.rec_off, state);
	if (state == CKPT_TCP_LISTEN && type == SOCK_DGRAM)
		return rs_invalid(&c->in, "a listening unix datagram socket");
	return 0;
}

/* the socket's peer in the image: a SOCK object whose SOCKET record came before */
static struct robj *peer_of(struct rctx *c, const struct ckpt_hdr_socket_unix *un)
{
	struct robj *p;

	if (un->peer >= c->nr_objs || c->objs[un->peer].type != CKPT_OBJ_SOCK ||
	    !c->objs[un->peer].data) {
		rs_invalid(&c->in, "SOCKET_UNIX at offset %llu: peer %d is not a socket written before",
			   (unsigned long long)c->in.rec_off, un->peer);
		return NULL;
	}
	p = &c->objs[un->peer];
	return p;
}

/* a listener of the image, made already, bound to the name a */
static struct robj *listener_at(struct rctx *c, const struct ckpt_sockaddr_un *a, uint32_t len)
{
	int i;

	if (!has_name(len))
		return NULL;
	for (i = 1; i < c->nr_objs; i++) {
		struct robj *l = &c->objs[i];
		struct rsock *ls = l->type == CKPT_OBJ_SOCK ? l->data : NULL;
		struct runix *lu = ls && ls->made && ls->h.sock_common.family == AF_UNIX ? ls->fam : NULL;

		if (lu && l->fd >= 0 && ls->h.sock.state == CKPT_TCP_LISTEN &&
		    lu->un.laddr_len == len && !memcmp(lu->un.laddr.sun_path, a->sun_path, len - 2))
			return l;
	}
	return NULL;
}

/*
 * A connection accepted from a listener of the image is made again by connect() and
 * accept(), so both ends have their names (the accepted end its listener's, the client its
 * peer's); 1 if so, 0 if there is no such listener (a plain pair then), -1 on failure.
 */
static int accept_again(struct rctx *c, const struct runix *u, int type, int *mine, int *peer)
{
	struct robj *l = listener_at(c, &u->un.laddr, u->un.laddr_len);
	bool accepted_here = l != NULL;
	const struct rsock *ls;
	const struct runix *lu;
	struct sockaddr_un sa;
	socklen_t salen;
	int client, accepted;

	if (!l)
		l = listener_at(c, &u->un.raddr, u->un.raddr_len);
	if (!l)
		return 0;
	ls = l->data;
	lu = ls->fam;
	if (ls->h.sock.type != type)
		return 0;
	if (sockaddr_of(c, &lu->un.laddr, lu->un.laddr_len, lu->dir, &sa, &salen))
		return -1;
	client = socket(AF_UNIX, type | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (client < 0)
		return pr_perror("socket");
	if (connect(client, (struct sockaddr *)&sa, salen)) {
		close(client);
		return 0;	/* its backlog is full: a plain pair */
	}
	accepted = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC);
	if (accepted < 0 || fcntl(client, F_SETFL, 0)) {
		close(client);
		return pr_perror("accept a restored connection again");
	}
	*mine = accepted_here ? accepted : client;
	*peer = accepted_here ? client : accepted;
	return 1;
}

/* make the socket: one end of a pair, or alone */
static int make_socket(struct rctx *c, struct robj *o, struct rsock *s, struct runix *u)
{
	int type = s->h.sock.type, sv[2] = { -1, -1 };
	bool connected = s->h.socket.state == CKPT_SS_CONNECTED;
	struct robj *p = NULL;
	struct rsock *ps = NULL;

	if (s->made)		/* the other end of a pair made with its peer */
		return s->pair_ref == u->un.peer ? 0 :
		       rs_invalid(&c->in, "SOCKET_UNIX at offset %llu: paired with %d, its peer is %d",
				  (unsigned long long)c->in.rec_off, s->pair_ref, u->un.peer);
	if (u->un.peer) {
		p = peer_of(c, &u->un);
		if (!p)
			return -1;
		ps = p->data;
		if (ps->h.sock.type != type)
			return rs_invalid(&c->in, "a unix socket of type %d connected to one of type %d",
					  type, ps->h.sock.type);
	}
	u->connect_name = connected && has_name(u->un.raddr_len) && type == SOCK_DGRAM;
	if (p && !u->connect_name) {
		if (ps->made)
			return rs_invalid(&c->in, "SOCKET_UNIX at offset %llu: its peer %d is paired "
					  "already", (unsigned long long)c->in.rec_off, u->un.peer);
		ps->made = true;
		ps->pair_ref = o - c->objs;
		s->pair_ref = u->un.peer;
	}
	s->made = true;
	if (c->dry)
		return 0;
	if (p && !u->connect_name) {
		int r = type == SOCK_DGRAM ? 0 : accept_again(c, u, type, &sv[0], &sv[1]);

		if (r < 0 || (!r && socketpair(AF_UNIX, type | SOCK_CLOEXEC, 0, sv)))
			return r < 0 ? -1 : pr_perror("socketpair");
		o->fd = sv[0];
		p->fd = sv[1];
	} else if (connected && !p && !has_name(u->un.raddr_len)) {
		/* the peer was gone: a pair whose other end is closed at the finish */
		if (socketpair(AF_UNIX, type | SOCK_CLOEXEC, 0, sv))
			return pr_perror("socketpair");
		o->fd = sv[0];
		u->spare = sv[1];
	} else {
		o->fd = socket(AF_UNIX, type | SOCK_CLOEXEC, 0);
		if (o->fd < 0)
			return pr_perror("socket");
	}
	return 0;
}

/* SOCKET_UNIX [STRING dir]: the socket made, named, listening, with its options */
int restore_unix_socket(struct rctx *c, struct robj *o, struct rsock *s)
{
	struct ckpt_hdr h;
	struct runix *u = calloc(1, sizeof(*u));

	if (!u)
		return pr_perror("unix socket");
	u->spare = -1;
	s->fam = u;
	if (rs_family_record(c, CKPT_HDR_SOCKET_UNIX, &h) || rs_record(&c->in, &h, &u->un, sizeof(u->un)) ||
	    check_unix_rec(c, o, s, &u->un))
		return -1;
	if (relative(&u->un.laddr, u->un.laddr_len)) {
		if (rs_expect(&c->in, CKPT_HDR_STRING, &h))
			return -1;
		u->dir = rs_payload_alloc(&c->in, &h, 2, 4096);
		if (!u->dir)
			return -1;
		if (u->dir[0] != '/')
			return rs_invalid(&c->in, "STRING at offset %llu: the directory of a unix socket "
					  "is not absolute", (unsigned long long)c->in.rec_off);
	}
	if (make_socket(c, o, s, u))
		return -1;
	if (has_name(u->un.laddr_len) &&
	    !(s->h.socket.state == CKPT_SS_CONNECTED && s->h.sock.type != SOCK_DGRAM) &&
	    bind_name(c, o, u))
		return -1;
	if (s->h.sock.state == CKPT_TCP_LISTEN && !c->dry &&
	    listen(o->fd, s->h.sock.backlog > 0 ? s->h.sock.backlog : 0))
		return rst_refuse(c, "listen: %s", strerror(errno));
	if (restore_sock_options(c, o->fd, &s->h))
		return -1;
	/* a listener has no queues, so no finish: its shutdown bits now */
	return s->h.has_buffers ? 0 : restore_unix_finish(c, o, s);
}

/*
 * The sender's credentials as the message carried them: its pid is the restored task's (the
 * driver's own pid for a sender that is not in the image), uid and gid as they were.
 */
static void creds_of(struct rctx *c, const struct ckpt_unix_cb *cb, struct ucred *uc)
{
	int i;

	uc->pid = getpid();
	uc->uid = cb->uid;
	uc->gid = cb->gid;
	for (i = 0; i < c->nr_tasks; i++)
		if (c->tasks[i].pid == cb->pid && c->tasks[i].tgid == cb->pid && c->tasks[i].host > 0)
			uc->pid = c->tasks[i].host;
}

/* send one message (a stream: bytes) from fd to the socket, all of it, with its credentials */
static int send_back(struct rctx *c, int fd, const struct sockaddr_un *to, socklen_t tolen,
		     const char *data, size_t len, bool stream, const struct ckpt_unix_cb *cb)
{
	char control[CMSG_SPACE(sizeof(struct ucred))] __attribute__((aligned(8))) = { 0 };
	size_t done = 0;
	bool grown = false;

	do {
		struct iovec iov = { (char *)data + done, len - done };
		struct msghdr m = { .msg_name = (void *)to, .msg_namelen = to ? tolen : 0,
				    .msg_iov = &iov, .msg_iovlen = 1 };
		ssize_t n;

		if (cb->flags & CKPT_UNIX_CB_CREDS) {
			struct cmsghdr *cm;
			struct ucred uc;

			m.msg_control = control;
			m.msg_controllen = sizeof(control);
			cm = CMSG_FIRSTHDR(&m);
			cm->cmsg_level = SOL_SOCKET;
			cm->cmsg_type = SCM_CREDENTIALS;
			cm->cmsg_len = CMSG_LEN(sizeof(uc));
			creds_of(c, cb, &uc);
			memcpy(CMSG_DATA(cm), &uc, sizeof(uc));
		}
		n = sendmsg(fd, &m, MSG_DONTWAIT | MSG_NOSIGNAL);

		if (n < 0 && (errno == EAGAIN || errno == ENOBUFS) && !grown) {
			int sndbuf = 0;
			socklen_t l = sizeof(sndbuf);

			/* a queue filled to the limit: room for it, the socket's size is set again */
			getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, &l);
			sndbuf += 2 * len + (1 << 16);
			setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &sndbuf, sizeof(sndbuf));
			grown = true;
			continue;
		}
		if (n < 0)
			return rst_refuse(c, "send %zu queued bytes back: %s", len, strerror(errno));
		if (!stream && (size_t)n != len)
			return rst_refuse(c, "a message of %zu bytes sent back as %zd", len, n);
		done += n;
	} while (done < len);
	return 0;
}

/* the fd a message for o is sent from, and the address it needs (NULL: connected) */
static int sender_of(struct rctx *c, struct robj *o, struct rsock *s, int sk_ref, int *anon,
		     struct sockaddr_un *to, socklen_t *tolen, bool *named)
{
	struct runix *u = s->fam;
	int me = o - c->objs;

	*named = false;
	if (sk_ref && sk_ref == s->pair_ref)
		return c->objs[sk_ref].fd;
	if (!sk_ref && u->spare >= 0)
		return u->spare;
	if (s->h.sock.type != SOCK_DGRAM || !has_name(u->un.laddr_len))
		return rst_refuse(c, "unix socket %d: queued data with no sender to send it back", me);
	if (sockaddr_of(c, &u->un.laddr, u->un.laddr_len, u->dir, to, tolen))
		return -1;
	*named = true;
	if (sk_ref) {
		struct robj *from = obj_get(c, sk_ref, CKPT_OBJ_SOCK);

		return from ? from->fd : -1;
	}
	if (*anon < 0)
		*anon = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	return *anon >= 0 ? *anon : pr_perror("socket");
}

/* SOCKET_QUEUE {SOCKET_BUFFER BUFFER}...: the receive queue sent back; no send queue */
int restore_unix_queue(struct rctx *c, struct robj *o, struct rsock *s,
		       const struct ckpt_hdr_socket_queue *q, bool recv)
{
	bool stream = s->h.sock.type == SOCK_STREAM;
	uint64_t total = 0;
	int anon = -1, ret = -1;
	uint32_t i;

	if (q->skb_count && !recv)
		return rs_invalid(&c->in, "SOCKET_QUEUE at offset %llu: a unix socket's send queue "
				  "is always empty", (unsigned long long)c->in.rec_off);
	if (q->skb_count > SKB_COUNT_MAX)
		return rs_invalid(&c->in, "SOCKET_QUEUE at offset %llu: %u buffers",
				  (unsigned long long)c->in.rec_off, q->skb_count);
	for (i = 0; i < q->skb_count; i++) {
		struct ckpt_hdr_socket_buffer b;
		struct ckpt_unix_cb cb;
		struct sockaddr_un to;
		socklen_t tolen = 0;
		struct ckpt_hdr h;
		bool named;
		char *data;
		int fd;

		if (rs_expect(&c->in, CKPT_HDR_SOCKET_BUFFER, &h) || rs_record(&c->in, &h, &b, sizeof(b)))
			goto out;
		if (b.nr_frags || b.frg_len || b.lin_len != b.skb_len || b.lin_len > MSG_MAX ||
		    b.pr_objref != o - c->objs || b.sk_objref < 0) {
			rs_invalid(&c->in, "SOCKET_BUFFER at offset %llu: %u+%u bytes, %u fragments, "
				   "from %d to %d", (unsigned long long)c->in.rec_off, b.lin_len, b.frg_len,
				   b.nr_frags, b.sk_objref, b.pr_objref);
			goto out;
		}
		memcpy(&cb, b.cb, sizeof(cb));
		if (cb.flags & ~CKPT_UNIX_CB_CREDS) {
			rs_invalid(&c->in, "SOCKET_BUFFER at offset %llu: cb flags %#x",
				   (unsigned long long)c->in.rec_off, cb.flags);
			goto out;
		}
		if (rs_expect(&c->in, CKPT_HDR_BUFFER, &h))
			goto out;
		if (h.len - sizeof(h) != b.lin_len) {
			rs_invalid(&c->in, "BUFFER at offset %llu: %zu bytes, SOCKET_BUFFER says %u",
				   (unsigned long long)c->in.rec_off, h.len - sizeof(h), b.lin_len);
			goto out;
		}
		total += b.lin_len;
		if (c->dry) {
			if (rs_skip(&c->in, b.lin_len))
				goto out;
			continue;
		}
		data = rs_payload_alloc(&c->in, &h, 0, MSG_MAX);
		if (!data)
			goto out;
		fd = sender_of(c, o, s, b.sk_objref, &anon, &to, &tolen, &named);
		if (fd < 0 || send_back(c, fd, named ? &to : NULL, tolen, data, b.lin_len, stream, &cb)) {
			free(data);
			goto out;
		}
		free(data);
	}
	if (total != q->total_bytes) {
		rs_invalid(&c->in, "SOCKET_QUEUE: %llu bytes in its buffers, it says %u",
			   (unsigned long long)total, q->total_bytes);
		goto out;
	}
	ret = 0;
out:
	if (anon >= 0)
		close(anon);
	return ret;
}

/* once the file table's queues are back: the lost peer's stand-in closed, names, shutdown */
int restore_unix_finish(struct rctx *c, struct robj *o, struct rsock *s)
{
	struct runix *u = s->fam;
	uint8_t sd = s->h.sock.shutdown;

	if (c->dry)
		return 0;
	if (u->spare >= 0) {
		close(u->spare);
		u->spare = -1;
	}
	if (u->connect_name) {
		struct sockaddr_un sa;
		socklen_t salen;
		char name[600];

		if (sockaddr_of(c, &u->un.raddr, u->un.raddr_len, NULL, &sa, &salen))
			return -1;
		if (connect(o->fd, (struct sockaddr *)&sa, salen))
			return rst_refuse(c, "connect a unix datagram socket to %s: %s",
					  unix_name_text(&u->un.raddr, u->un.raddr_len, name, sizeof(name)),
					  strerror(errno));
	}
	if (sd && shutdown(o->fd, sd == (CKPT_SOCK_SHUTDOWN_RCV | CKPT_SOCK_SHUTDOWN_SEND) ? SHUT_RDWR :
			   sd == CKPT_SOCK_SHUTDOWN_RCV ? SHUT_RD : SHUT_WR))
		return rst_refuse(c, "shutdown a unix socket: %s", strerror(errno));
	return 0;
}
