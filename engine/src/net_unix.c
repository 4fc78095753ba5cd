/*
 * AF_UNIX sockets: SOCKET_UNIX and the queues (the mirror is restore/net_unix.c).
 *
 * What a descriptor does not show -- the peer, the state, the queue lengths, the pending
 * connections of a listener, the shutdown bits, the inode a name is bound to -- comes from
 * the kernel's socket diagnostics (NETLINK_SOCK_DIAG, unix_diag), read once for the
 * network namespace.
 *
 *   SOCKET_UNIX {this, peer, laddr, raddr, flags LINKED} [STRING dir, for a relative name]
 *
 * A connected socket's peer, if a task of the tree holds it, is written (nested) before the
 * SOCKET_UNIX that names it. A peer that is gone (its last descriptor closed) is peer 0 with
 * no raddr: restore makes a pair and closes the other end once the queue is back. A
 * datagram socket connected to a name outside the tree keeps raddr and peer 0: restore
 * connects by name. A stream or seqpacket socket whose peer lives outside the tree, a
 * listener with connections not accepted yet, a socket of another network namespace are
 * not saved (ERROR record). Messages in a receive queue are one SOCKET_BUFFER each
 * (datagram, seqpacket: boundaries kept); a stream's bytes come in 64 KiB buffers.
 * Descriptors in flight (SCM_RIGHTS) are not saved: ERROR record, the bytes are.
 */
#include <errno.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "engine.h"

#define STREAM_CHUNK	(64 << 10)
#define QUEUE_MAX	(64U << 20)	/* sanity bound on one socket's queue */

/* the family's state of one socket (sock_dump.fam) */
struct unix_sock {
	struct unix_diag_info d;
	struct ckpt_hdr_socket_unix un;
	struct sock_dump *peer;		/* in the tree, NULL if none */
	char dir[4096];			/* for a relative name: the directory it is bound in */
};

static struct unix_diag_info *diag;	/* the dump's table, read once */
static int nr_diag;
static bool diag_read, diag_failed;

static int cmp_diag(const void *a, const void *b)
{
	const struct unix_diag_info *x = a, *y = b;

	return x->ino < y->ino ? -1 : x->ino > y->ino;
}

static int parse_diag_msg(struct nlmsghdr *nh, struct unix_diag_info **tab, int *n)
{
	struct unix_diag_msg *m = NLMSG_DATA(nh);
	struct unix_diag_info *d;
	struct rtattr *a;
	int len;

	if (nh->nlmsg_len < NLMSG_LENGTH(sizeof(*m)))
		return pr_err("unix_diag: short message");
	if (*n % 256 == 0) {
		struct unix_diag_info *nd = realloc(*tab, (*n + 256) * sizeof(*nd));

		if (!nd)
			return pr_perror("unix_diag table");
		*tab = nd;
	}
	d = &(*tab)[(*n)++];
	*d = (struct unix_diag_info){ .ino = m->udiag_ino, .type = m->udiag_type,
				      .state = m->udiag_state };
	len = nh->nlmsg_len - NLMSG_LENGTH(sizeof(*m));
	for (a = (struct rtattr *)(m + 1); RTA_OK(a, len); a = RTA_NEXT(a, len)) {
		void *v = RTA_DATA(a);
		size_t n = RTA_PAYLOAD(a);

		switch (a->rta_type) {
		case UNIX_DIAG_PEER:
			if (n >= 4) {
				d->has_peer = true;
				d->peer = *(uint32_t *)v;
			}
			break;
		case UNIX_DIAG_VFS:
			if (n >= sizeof(struct unix_diag_vfs)) {
				d->has_vfs = true;
				d->vfs_ino = ((struct unix_diag_vfs *)v)->udiag_vfs_ino;
				d->vfs_dev = ((struct unix_diag_vfs *)v)->udiag_vfs_dev;
			}
			break;
		case UNIX_DIAG_ICONS:
			d->nr_icons = n / 4;
			break;
		case UNIX_DIAG_RQLEN:
			if (n >= sizeof(struct unix_diag_rqlen)) {
				d->rqueue = ((struct unix_diag_rqlen *)v)->udiag_rqueue;
				d->wqueue = ((struct unix_diag_rqlen *)v)->udiag_wqueue;
			}
			break;
		case UNIX_DIAG_SHUTDOWN:
			if (n >= 1)
				d->shutdown = *(uint8_t *)v;
			break;
		}
	}
	return 0;
}

/* every unix socket of the caller's network namespace, sorted by inode (free() *tab) */
int unix_diag_table(struct unix_diag_info **tab, int *n)
{
	struct {
		struct nlmsghdr nh;
		struct unix_diag_req r;
	} req = {
		.nh = { .nlmsg_len = sizeof(req), .nlmsg_type = SOCK_DIAG_BY_FAMILY,
			.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP, .nlmsg_seq = 1 },
		.r = { .sdiag_family = AF_UNIX, .udiag_states = ~0U,
		       .udiag_show = UDIAG_SHOW_NAME | UDIAG_SHOW_VFS | UDIAG_SHOW_PEER |
				     UDIAG_SHOW_ICONS | UDIAG_SHOW_RQLEN },
	};
	static char buf[32768] __attribute__((aligned(8)));
	struct sockaddr_nl nl = { .nl_family = AF_NETLINK };
	int fd, ret = -1;
	bool done = false;

	*tab = NULL;
	*n = 0;
	fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
	if (fd < 0)
		return pr_perror("NETLINK_SOCK_DIAG");
	if (sendto(fd, &req, sizeof(req), 0, (struct sockaddr *)&nl, sizeof(nl)) < 0) {
		pr_perror("unix_diag request");
		goto out;
	}
	while (!done) {
		ssize_t len = recv(fd, buf, sizeof(buf), 0);
		struct nlmsghdr *nh;

		if (len < 0) {
			pr_perror("unix_diag");
			goto out;
		}
		for (nh = (struct nlmsghdr *)buf; NLMSG_OK(nh, len); nh = NLMSG_NEXT(nh, len)) {
			if (nh->nlmsg_type == NLMSG_DONE) {
				done = true;
				break;
			}
			if (nh->nlmsg_type == NLMSG_ERROR) {
				pr_err("unix_diag: %s", strerror(-((struct nlmsgerr *)NLMSG_DATA(nh))->error));
				goto out;
			}
			if (parse_diag_msg(nh, tab, n))
				goto out;
		}
	}
	qsort(*tab, *n, sizeof(**tab), cmp_diag);
	ret = 0;
out:
	close(fd);
	return ret;
}

static const struct unix_diag_info *diag_of(ino_t ino)
{
	struct unix_diag_info key = { .ino = ino };

	if (!diag_read) {
		diag_read = true;
		diag_failed = unix_diag_table(&diag, &nr_diag) != 0;
	}
	return nr_diag ? bsearch(&key, diag, nr_diag, sizeof(*diag), cmp_diag) : NULL;
}

static const char *type_name(int type)
{
	return type == SOCK_STREAM ? "stream" : type == SOCK_DGRAM ? "dgram" :
	       type == SOCK_SEQPACKET ? "seqpacket" : "unknown";
}

/* a unix address for messages: abstract names start with '@', control bytes escaped */
const char *unix_name_text(const struct ckpt_sockaddr_un *a, uint32_t len, char *buf, size_t size)
{
	size_t n = len > 2 ? len - 2 : 0, i, o = 0;

	for (i = 0; i < n && o + 5 < size; i++) {
		unsigned char ch = a->sun_path[i];

		if (i == 0 && !ch)
			buf[o++] = '@';
		else if (!ch)
			break;		/* a path's NUL */
		else if (ch < 0x20 || ch >= 0x7f)
			o += snprintf(buf + o, size - o, "\\x%02x", ch);
		else
			buf[o++] = ch;
	}
	buf[o] = 0;
	return o ? buf : "unnamed";
}

static int refuse(struct ctx *c, struct sock_dump *s, const char *why, const char *name)
{
	return ckpt_unsupported(c, "pid %d fd %d: unix %s socket:[%lu] (%s) %s", s->tid, s->tfd,
				type_name(s->type), (unsigned long)s->ino, name, why) ? -1 : SOCK_REFUSED;
}

/* the directory of a relative name: the holder's cwd if the name resolves to the socket there */
static bool linked_at(const struct unix_sock *u, const char *path)
{
	struct stat st;

	return u->d.has_vfs && !stat(path, &st) && S_ISSOCK(st.st_mode) &&
	       st.st_ino == u->d.vfs_ino;
}

static int find_name(struct ctx *c, struct sock_dump *s, struct unix_sock *u, const char *name)
{
	struct ckpt_sockaddr_un *a = &u->un.laddr;
	char path[8192];

	if (u->un.laddr_len <= 2 || !a->sun_path[0])
		return 0;	/* unnamed, or abstract */
	if (a->sun_path[0] == '/') {
		if (linked_at(u, a->sun_path))
			u->un.flags |= CKPT_UNIX_LINKED;
		return 0;
	}
	if (proc_readlink(s->tid, "cwd", u->dir, sizeof(u->dir)))
		return pr_perror("pid %d: read cwd", s->tid);
	snprintf(path, sizeof(path), "%s/%.*s", u->dir, (int)sizeof(a->sun_path), a->sun_path);
	if (linked_at(u, path))
		u->un.flags |= CKPT_UNIX_LINKED;
	else if (u->d.has_vfs)
		return refuse(c, s, "is bound to a relative name not found from the working directory",
			      name);
	return 0;
}

int check_unix_socket(struct ctx *c, struct sock_dump *s)
{
	const struct unix_diag_info *d = diag_of(s->ino);
	struct unix_sock *u;
	socklen_t len;
	char name[600];
	int r;

	if (diag_failed)
		return -1;
	u = calloc(1, sizeof(*u));
	if (!u)
		return pr_perror("unix socket");
	s->fam = u;
	len = sizeof(u->un.laddr);
	if (getsockname(s->sk, (struct sockaddr *)&u->un.laddr, &len))
		return pr_perror("pid %d fd %d: getsockname", s->tid, s->tfd);
	u->un.laddr_len = len;
	unix_name_text(&u->un.laddr, u->un.laddr_len, name, sizeof(name));
	if (!d)
		return refuse(c, s, "is not in the dumper's network namespace", name);
	if (s->type != SOCK_STREAM && s->type != SOCK_DGRAM && s->type != SOCK_SEQPACKET)
		return refuse(c, s, "is of a type not saved", name);
	u->d = *d;
	len = sizeof(u->un.raddr);
	if (getpeername(s->sk, (struct sockaddr *)&u->un.raddr, &len) == 0)
		u->un.raddr_len = len > 2 ? len : 0;
	if (d->state == CKPT_TCP_LISTEN && (d->nr_icons || d->rqueue)) {
		snprintf(name + strlen(name), sizeof(name) - strlen(name), ", %u connection%s",
			 d->rqueue, d->rqueue == 1 ? "" : "s");
		return refuse(c, s, "is listening with connections not accepted yet", name);
	}
	r = find_name(c, s, u, name);
	if (r)
		return r;
	/* the peer last: a pair is saved only if both ends are */
	if (d->has_peer && d->peer) {
		u->peer = sock_of_inode(c, d->peer);
		if (!u->peer && !(s->type == SOCK_DGRAM && u->un.raddr_len)) {
			char peer[600];

			snprintf(name + strlen(name), sizeof(name) - strlen(name), ", peer socket:[%lu] %s",
				 (unsigned long)d->peer,
				 unix_name_text(&u->un.raddr, u->un.raddr_len, peer, sizeof(peer)));
			return refuse(c, s, "is connected to a peer outside the tree", name);
		}
		if (u->peer) {
			r = check_sock(c, u->peer);
			if (r != SOCK_SAVED)
				return r < 0 ? -1 : refuse(c, s, "has a peer that is not saved", name);
		}
	} else if (d->has_peer) {
		u->un.raddr_len = 0;	/* the peer is gone: restore pairs it with an end it closes */
		memset(&u->un.raddr, 0, sizeof(u->un.raddr));
	}
	s->h.socket.state = d->has_peer ? CKPT_SS_CONNECTED : CKPT_SS_UNCONNECTED;
	s->h.sock_common.state = s->h.sock.state = d->state;
	s->h.sock.shutdown = d->shutdown;
	s->h.sock.backlog = d->state == CKPT_TCP_LISTEN ? (int16_t)d->wqueue : 0;
	s->h.has_buffers = d->state != CKPT_TCP_LISTEN;
	return 0;
}

int dump_unix_socket(struct ctx *c, struct sock_dump *s)
{
	struct unix_sock *u = s->fam;

	u->un.this = s->ref;
	u->un.peer = 0;
	if (u->peer) {
		u->un.peer = write_sock(c, u->peer);
		if (u->un.peer < 0)
			return -1;
	}
	u->un.peercred = 0;
	if (write_obj(&c->img, CKPT_HDR_SOCKET_UNIX, &u->un, sizeof(u->un)))
		return -1;
	if (u->un.laddr_len > 2 && u->un.laddr.sun_path[0] && u->un.laddr.sun_path[0] != '/')
		return write_buffer(&c->img, CKPT_HDR_STRING, u->dir, strlen(u->dir) + 1);
	return 0;
}

struct msg {
	char *data;
	size_t len;
	struct ckpt_unix_cb cb;
};

/* the sender's credentials a peek brought along (the task has SO_PASSCRED) */
static void passed_creds(void *control, size_t len, struct ckpt_unix_cb *cb)
{
	struct msghdr m = { .msg_control = control, .msg_controllen = len };
	struct cmsghdr *cm;

	memset(cb, 0, sizeof(*cb));
	for (cm = CMSG_FIRSTHDR(&m); cm; cm = CMSG_NXTHDR(&m, cm)) {
		struct ucred uc;

		if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_CREDENTIALS ||
		    cm->cmsg_len < CMSG_LEN(sizeof(uc)))
			continue;
		memcpy(&uc, CMSG_DATA(cm), sizeof(uc));
		if (!uc.pid)
			continue;	/* a message sent with no credentials */
		*cb = (struct ckpt_unix_cb){ CKPT_UNIX_CB_CREDS, uc.pid, uc.uid, uc.gid };
	}
}

/* descriptors a peek brought along (SCM_RIGHTS): closed, and counted */
static int drop_passed_fds(void *control, size_t len)
{
	struct msghdr m = { .msg_control = control, .msg_controllen = len };
	struct cmsghdr *cm;
	int n = 0;

	for (cm = CMSG_FIRSTHDR(&m); cm; cm = CMSG_NXTHDR(&m, cm)) {
		int i, k;

		if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
			continue;
		k = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (i = 0; i < k; i++)
			close(((int *)CMSG_DATA(cm))[i]);
		n += k;
	}
	return n;
}

/* the receive queue, message by message (a stream: in chunks), held while it is written */
static int read_queue(struct sock_dump *s, struct msg **msgs, int *nr, uint64_t *total, int *nr_fds)
{
	char control[CMSG_SPACE(253 * sizeof(int)) + CMSG_SPACE(sizeof(struct ucred))];
	size_t cap = STREAM_CHUNK, off = 0;
	int nmsgs = 0, cap_msgs = 0;
	char *buf = malloc(cap);

	*msgs = NULL;
	*total = 0;
	*nr_fds = 0;
	if (!buf)
		return pr_perror("socket queue");
	for (;;) {
		size_t clen = sizeof(control), got;
		int k, flags, r = sock_peek(s, buf, cap, off, &got, &flags, control, &clen);

		if (r <= 0) {
			free(buf);
			if (r < 0)
				return -1;
			break;
		}
		if (flags & MSG_CTRUNC)
			return pr_err("pid %d fd %d: ancillary data too large", s->tid, s->tfd);
		k = drop_passed_fds(control, clen);
		if (got > cap && s->type != SOCK_STREAM) {
			char *nb = realloc(buf, cap = got);	/* a larger datagram: peek again */

			if (!nb)
				return pr_perror("socket queue");
			buf = nb;
			continue;
		}
		*nr_fds += k;
		if (got > cap)
			got = cap;
		if (s->type == SOCK_STREAM && !got)
			break;
		if (nmsgs == cap_msgs) {
			struct msg *nm = realloc(*msgs, (cap_msgs = cap_msgs ? 2 * cap_msgs : 16) * sizeof(*nm));

			if (!nm)
				return pr_perror("socket queue");
			*msgs = nm;
		}
		(*msgs)[nmsgs].data = malloc(got ? got : 1);
		if (!(*msgs)[nmsgs].data)
			return pr_perror("socket queue");
		memcpy((*msgs)[nmsgs].data, buf, got);
		passed_creds(control, clen, &(*msgs)[nmsgs].cb);
		(*msgs)[nmsgs++].len = got;
		*nr = nmsgs;
		*total += got;
		off += got;
		if (*total > QUEUE_MAX)
			return pr_err("pid %d fd %d: more than %u bytes queued", s->tid, s->tfd, QUEUE_MAX);
		if (!got && nmsgs > 65536)
			return pr_err("pid %d fd %d: too many empty datagrams", s->tid, s->tfd);
	}
	*nr = nmsgs;
	return 0;
}

/* SOCKET_QUEUE(receive) {SOCKET_BUFFER BUFFER}... SOCKET_QUEUE(send: none on a unix socket) */
int dump_unix_queues(struct ctx *c, struct sock_dump *s)
{
	struct unix_sock *u = s->fam;
	struct ckpt_hdr_socket_queue q = { .skb_count = 0 };
	struct msg *msgs = NULL;
	uint64_t total = 0;
	int i, nr = 0, nr_fds = 0, ret = -1;

	/* a stream or seqpacket socket that never connected has no queue (recv says EINVAL) */
	if ((s->type == SOCK_DGRAM || u->d.state == CKPT_TCP_ESTABLISHED) &&
	    read_queue(s, &msgs, &nr, &total, &nr_fds))
		goto out;
	if (s->type != SOCK_DGRAM && total != u->d.rqueue) {
		pr_err("pid %d fd %d: %llu bytes read from a queue of %u", s->tid, s->tfd,
		       (unsigned long long)total, u->d.rqueue);
		goto out;
	}
	if (nr_fds && ckpt_unsupported(c, "pid %d fd %d: socket:[%lu]: %d descriptor%s in flight "
				       "(SCM_RIGHTS) not saved", s->tid, s->tfd, (unsigned long)s->ino,
				       nr_fds, nr_fds == 1 ? "" : "s"))
		goto out;
	q.skb_count = nr;
	q.total_bytes = total;
	if (write_obj(&c->img, CKPT_HDR_SOCKET_QUEUE, &q, sizeof(q)))
		goto out;
	for (i = 0; i < nr; i++) {
		struct ckpt_hdr_socket_buffer b = {
			.lin_len = msgs[i].len,
			.skb_len = msgs[i].len,
			.sk_objref = u->un.peer,	/* the sender, when it is known: the peer */
			.pr_objref = s->ref,
		};

		_Static_assert(sizeof(msgs[i].cb) <= sizeof(b.cb), "cb");
		memcpy(b.cb, &msgs[i].cb, sizeof(msgs[i].cb));
		if (write_obj(&c->img, CKPT_HDR_SOCKET_BUFFER, &b, sizeof(b)) ||
		    write_buffer(&c->img, CKPT_HDR_BUFFER, msgs[i].data, msgs[i].len))
			goto out;
	}
	q.skb_count = q.total_bytes = 0;
	ret = write_obj(&c->img, CKPT_HDR_SOCKET_QUEUE, &q, sizeof(q));
out:
	for (i = 0; i < nr; i++)
		free(msgs[i].data);
	free(msgs);
	return ret;
}
