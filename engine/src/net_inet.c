/*
 * AF_INET and AF_INET6 sockets: TCP listening, unconnected and established, UDP.
 *
 * The engine reads a socket through its own copy of the task's descriptor (pidfd_getfd;
 * the engine is root). An established TCP connection is read in TCP_REPAIR mode: the
 * sequence numbers of both queues (TCP_QUEUE_SEQ), the receive queue peeked (MSG_PEEK
 * under repair), the write queue read with TCP_SEND_QUEUE selected, the windows
 * (TCP_REPAIR_WINDOW), the options negotiated at the handshake (tcp_info, TCP_MAXSEG) and
 * the timestamp clock (TCP_TIMESTAMP). A socket in repair mode sends nothing when it is
 * closed: with --kill it stays in repair mode, so the kernel neither resets nor finishes
 * the connection when the tasks die, and a restore takes it over; otherwise it leaves
 * repair mode before the tree is thawed, and the original goes on.
 *
 * Records (docs/format-choices.md, "Inet sockets"): SOCKET SOCKET_INET EXT_INET [EXT_TCP]
 * and, for an established connection, SOCKET_QUEUE (receive) and SOCKET_QUEUE (write),
 * each followed by its bytes as SOCKET_BUFFER + BUFFER chunks.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <linux/tcp.h>
#include <linux/sockios.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "engine.h"

#define INET_CHUNK (64 * 1024)	/* queue bytes per SOCKET_BUFFER (our choice) */
#define SETTLE_MS	50	/* longer than a delayed ACK (40 ms) */
#define SETTLE_MAX_MS	500

/* a connection in repair mode, held until the dump ends */
struct held_conn {
	pid_t tid;
	int fd;			/* the task's descriptor number */
	int sk;			/* the engine's copy */
	int reuse;		/* SO_REUSEADDR, which leaving repair mode clears */
	uint64_t bytes_received;
	bool repair;
};
static struct held_conn *held;
static int nr_held, cap_held;

int inet_getopt(int sk, int level, int name, int *val)
{
	socklen_t len = sizeof(*val);

	*val = 0;
	return getsockopt(sk, level, name, val, &len);
}

static int tcp_info_of(int sk, struct tcp_info *ti)
{
	socklen_t len = sizeof(*ti);

	memset(ti, 0, sizeof(*ti));
	return getsockopt(sk, IPPROTO_TCP, TCP_INFO, ti, &len);
}

/* NULL if the socket is of a kind this file saves, else what it is */
static const char *unsupported(struct sock_dump *s, const struct tcp_info *ti)
{
	if (s->type == SOCK_DGRAM && s->protocol == IPPROTO_UDP)
		return NULL;
	if (s->type != SOCK_STREAM || s->protocol != IPPROTO_TCP)
		return s->type == SOCK_RAW ? "a raw inet socket" : "an inet socket of a protocol other than TCP and UDP";
	switch (ti->tcpi_state) {
	case CKPT_TCP_ESTABLISHED:
	case CKPT_TCP_LISTEN:
	case CKPT_TCP_CLOSE:
		return NULL;
	case CKPT_TCP_SYN_SENT:
	case CKPT_TCP_SYN_RECV:
		return "a TCP connection being set up (SYN_SENT/SYN_RECV)";
	default:
		return "a TCP connection being closed (FIN_WAIT, CLOSE_WAIT, LAST_ACK, CLOSING)";
	}
}

/* an inet address as v23 holds it: IPv4 in the u32 fields, IPv6 in inet6 (ports in both) */
static void put_addr(const struct sockaddr_storage *ss, __u32 *v4, __u8 *v6, __u16 *port,
		     struct ckpt_sockaddr_in *sa)
{
	const struct sockaddr_in *in = (const void *)ss;
	const struct sockaddr_in6 *in6 = (const void *)ss;

	memset(sa, 0, sizeof(*sa));
	sa->sin_family = ss->ss_family;
	if (ss->ss_family == AF_INET) {
		*v4 = in->sin_addr.s_addr;
		*port = in->sin_port;
		sa->sin_addr = in->sin_addr.s_addr;
	} else if (ss->ss_family == AF_INET6) {
		memcpy(v6, &in6->sin6_addr, 16);
		*port = in6->sin6_port;
	}
	sa->sin_port = *port;
}

static int held_add(pid_t tid, int fd, int sk, int reuse, uint64_t received)
{
	if (nr_held == cap_held) {
		struct held_conn *n = realloc(held, (cap_held = cap_held ? 2 * cap_held : 16) * sizeof(*n));

		if (!n)
			return pr_perror("connection list");
		held = n;
	}
	held[nr_held] = (struct held_conn){ tid, fd, -1, reuse, received, true };
	held[nr_held].sk = fcntl(sk, F_DUPFD_CLOEXEC, 3);
	if (held[nr_held].sk < 0)
		return pr_perror("pid %d fd %d: keep the connection", tid, fd);
	nr_held++;
	return 0;
}

/* leave repair mode; SO_REUSEADDR back as the program had it (repair off clears it) */
static int repair_off(int sk, int reuse, int mode)
{
	if (setsockopt(sk, IPPROTO_TCP, TCP_REPAIR, &mode, sizeof(mode)))
		return -1;
	return setsockopt(sk, SOL_SOCKET, SO_REUSEADDR, &reuse, sizeof(reuse));
}

/* one queue's bytes as SOCKET_QUEUE + (SOCKET_BUFFER BUFFER) chunks */
static int write_queue(struct ctx *c, int sock_ref, const char *data, uint32_t len)
{
	struct ckpt_hdr_socket_queue q = {
		.skb_count = (len + INET_CHUNK - 1) / INET_CHUNK,
		.total_bytes = len,
	};
	uint32_t off;

	if (write_obj(&c->img, CKPT_HDR_SOCKET_QUEUE, &q, sizeof(q)))
		return -1;
	for (off = 0; off < len; off += INET_CHUNK) {
		uint32_t n = len - off < INET_CHUNK ? len - off : INET_CHUNK;
		struct ckpt_hdr_socket_buffer b = {
			.lin_len = n, .skb_len = n, .sk_objref = sock_ref,
		};

		if (write_obj(&c->img, CKPT_HDR_SOCKET_BUFFER, &b, sizeof(b)) ||
		    write_buffer(&c->img, CKPT_HDR_BUFFER, data + off, n))
			return -1;
	}
	return 0;
}

struct tcp_snap {
	uint32_t rcv_nxt, write_seq;
	int inq, outq, unsent;
	char *rq, *sq;		/* receive queue, write queue */
};

static int queue_seq(int sk, int queue, uint32_t *seq)
{
	int v;

	if (setsockopt(sk, IPPROTO_TCP, TCP_REPAIR_QUEUE, &queue, sizeof(queue)) ||
	    inet_getopt(sk, IPPROTO_TCP, TCP_QUEUE_SEQ, &v))
		return -1;
	*seq = v;
	return 0;
}

static int snap_counts(int sk, struct tcp_snap *s)
{
	if (queue_seq(sk, TCP_RECV_QUEUE, &s->rcv_nxt) || queue_seq(sk, TCP_SEND_QUEUE, &s->write_seq) ||
	    ioctl(sk, SIOCINQ, &s->inq) || ioctl(sk, SIOCOUTQ, &s->outq) ||
	    ioctl(sk, SIOCOUTQNSD, &s->unsent))
		return -1;
	return 0;
}

/* peek len bytes of the selected queue (repair mode) */
static int peek_queue(int sk, int queue, char *buf, int len)
{
	int got = 0;
	ssize_t n;

	if (setsockopt(sk, IPPROTO_TCP, TCP_REPAIR_QUEUE, &queue, sizeof(queue)))
		return -1;
	if (!len)
		return 0;
	n = recv(sk, buf, len, MSG_PEEK | MSG_DONTWAIT);
	if (n >= 0)
		got = n;
	if (got != len) {
		errno = n < 0 ? errno : EAGAIN;
		return -1;
	}
	return 0;
}

/*
 * Sequence numbers and queue contents that belong together: read, peeked, read again;
 * a segment or an ACK that arrived in between (a peer outside the tree) makes it retry.
 */
static int tcp_snapshot(int sk, struct tcp_snap *s)
{
	int try;

	for (try = 0; try < 10; try++) {
		struct tcp_snap again;

		free(s->rq);
		free(s->sq);
		s->rq = s->sq = NULL;
		if (snap_counts(sk, s))
			return -1;
		s->rq = malloc(s->inq + 1);
		s->sq = malloc(s->outq + 1);
		if (!s->rq || !s->sq)
			return -1;
		if (peek_queue(sk, TCP_RECV_QUEUE, s->rq, s->inq) ||
		    peek_queue(sk, TCP_SEND_QUEUE, s->sq, s->outq) || snap_counts(sk, &again))
			return -1;
		if (again.rcv_nxt == s->rcv_nxt && again.write_seq == s->write_seq && again.inq == s->inq &&
		    again.outq == s->outq && again.unsent == s->unsent)
			return 0;
	}
	errno = EAGAIN;
	return -1;
}

static void fill_tcp(struct ckpt_hdr_socket_inet *in, const struct tcp_info *ti, int sk)
{
	int v;

	in->icsk_ack.rcv_mss = ti->tcpi_rcv_mss;
	in->icsk_ack.ato = ti->tcpi_ato;
	in->tcp.mss_cache = ti->tcpi_snd_mss;
	in->tcp.advmss = ti->tcpi_advmss;
	in->tcp.rcv_ssthresh = ti->tcpi_rcv_ssthresh;
	in->tcp.srtt = ti->tcpi_rtt;
	in->tcp.rttvar = ti->tcpi_rttvar;
	in->tcp.packets_out = ti->tcpi_unacked;
	in->tcp.retrans_out = ti->tcpi_retrans;
	in->tcp.lost_out = ti->tcpi_lost;
	in->tcp.sacked_out = ti->tcpi_sacked;
	in->tcp.total_retrans = ti->tcpi_total_retrans;
	in->tcp.reordering = ti->tcpi_reordering;
	in->tcp.prior_ssthresh = ti->tcpi_snd_ssthresh;
	in->tcp.ecn_flags = ti->tcpi_options & TCPI_OPT_ECN ? 1 : 0;	/* TCP_ECN_OK */
	if (!inet_getopt(sk, IPPROTO_TCP, TCP_WINDOW_CLAMP, &v))
		in->tcp.window_clamp = v;
	/* nonagle: TCP_NAGLE_OFF 1 (TCP_NODELAY), TCP_NAGLE_CORK 2 (TCP_CORK) */
	if (!inet_getopt(sk, IPPROTO_TCP, TCP_NODELAY, &v) && v)
		in->tcp.nonagle |= 1;
	if (!inet_getopt(sk, IPPROTO_TCP, TCP_CORK, &v) && v)
		in->tcp.nonagle |= 2;
	/* keepalive in seconds (the kernel kept jiffies; our choice, documented) */
	if (!inet_getopt(sk, IPPROTO_TCP, TCP_KEEPIDLE, &v))
		in->tcp.keepalive_time = v;
	if (!inet_getopt(sk, IPPROTO_TCP, TCP_KEEPINTVL, &v))
		in->tcp.keepalive_intvl = v;
	if (!inet_getopt(sk, IPPROTO_TCP, TCP_KEEPCNT, &v))
		in->tcp.keepalive_probes = v;
}

static void fill_ext_tcp(struct ckpt_hdr_ext_tcp *x, const struct tcp_info *ti, int sk, bool connected)
{
	socklen_t len = sizeof(x->congestion);
	int v;

	memset(x, 0, sizeof(*x));
	getsockopt(sk, IPPROTO_TCP, TCP_CONGESTION, x->congestion, &len);
	if (!inet_getopt(sk, IPPROTO_TCP, TCP_USER_TIMEOUT, &v))
		x->user_timeout = v;
	if (!inet_getopt(sk, IPPROTO_TCP, TCP_NOTSENT_LOWAT, &v))
		x->notsent_lowat = v;
	if (!inet_getopt(sk, IPPROTO_TCP, TCP_MAXSEG, &v))
		x->mss_clamp = v;
	if (!connected)
		return;
	x->options = ti->tcpi_options & (TCPI_OPT_TIMESTAMPS | TCPI_OPT_SACK | TCPI_OPT_WSCALE | TCPI_OPT_ECN);
	x->snd_wscale = ti->tcpi_snd_wscale;
	x->rcv_wscale = ti->tcpi_rcv_wscale;
	if (!inet_getopt(sk, IPPROTO_TCP, TCP_TIMESTAMP, &v))
		x->timestamp = v;
}

/* does this socket's option set differ from a fresh socket's (what --strict would lose)? */
static bool ext_is_default(int family, int type, int proto, const struct ckpt_hdr_ext_inet *xi,
			   const struct ckpt_hdr_ext_tcp *xt)
{
	struct ckpt_hdr_ext_tcp fresh;
	struct tcp_info ti = { 0 };
	int sk, v6only = 0;
	bool same = true;

	if (family == AF_INET6) {
		char *sysctl = proc_read(0, "sys/net/ipv6/bindv6only", NULL);

		v6only = sysctl ? atoi(sysctl) : 0;
		free(sysctl);
		if (xi->flags & ~IMGTOOLS_INET_V6ONLY || !!(xi->flags & IMGTOOLS_INET_V6ONLY) != !!v6only)
			return false;
	}
	if (family == AF_INET && xi->flags)
		return false;
	if (xi->tos || !xt)
		return !xi->tos;
	sk = socket(family, type | SOCK_CLOEXEC, proto);
	if (sk < 0)
		return false;
	fill_ext_tcp(&fresh, &ti, sk, false);
	close(sk);
	same = !strcmp(fresh.congestion, xt->congestion) && fresh.user_timeout == xt->user_timeout &&
	       fresh.notsent_lowat == xt->notsent_lowat;
	return same;
}

/* what check_inet_socket read, for the records written later (s->fam) */
struct inet_dump {
	struct ckpt_hdr_socket_inet in;
	struct ckpt_hdr_ext_inet xi;
	struct ckpt_hdr_ext_tcp xt;
	bool tcp;
	struct tcp_snap snap;		/* an established connection's queues */
};

/*
 * Wait until the connection receives nothing for SETTLE_MS (at most SETTLE_MAX_MS): the
 * peer's kernel may still send what it had queued when the tree froze (window updates,
 * delayed ACKs releasing Nagle-held bytes). Bytes arriving after the snapshot would be
 * acknowledged and missing from the image; inet_dump_end checks that none did.
 */
static void settle(int sk)
{
	uint64_t last = UINT64_MAX;
	int quiet = 0, waited;

	for (waited = 0; waited < SETTLE_MAX_MS && quiet < SETTLE_MS; waited += 5) {
		struct tcp_info ti;

		if (tcp_info_of(sk, &ti))
			return;
		quiet = ti.tcpi_bytes_received == last ? quiet + 5 : 0;
		last = ti.tcpi_bytes_received;
		usleep(5000);
	}
}

/* an established connection, read in repair mode; it stays in repair mode until the thaw */
static int snapshot_connection(struct sock_dump *s, struct inet_dump *d)
{
	struct ckpt_hdr_socket_inet *in = &d->in;
	struct tcp_repair_window w;
	struct tcp_info ti;
	socklen_t len = sizeof(w);
	int none = TCP_NO_QUEUE, reuse, ret = -1;

	inet_getopt(s->sk, SOL_SOCKET, SO_REUSEADDR, &reuse);
	settle(s->sk);
	if (setsockopt(s->sk, IPPROTO_TCP, TCP_REPAIR, &(int){ TCP_REPAIR_ON }, sizeof(int)))
		return pr_perror("pid %d fd %d: TCP_REPAIR", s->tid, s->tfd);
	if (tcp_snapshot(s->sk, &d->snap) || getsockopt(s->sk, IPPROTO_TCP, TCP_REPAIR_WINDOW, &w, &len) ||
	    tcp_info_of(s->sk, &ti)) {
		pr_perror("pid %d fd %d: read the TCP connection in repair mode", s->tid, s->tfd);
		goto out;
	}
	setsockopt(s->sk, IPPROTO_TCP, TCP_REPAIR_QUEUE, &none, sizeof(none));
	in->tcp.rcv_nxt = d->snap.rcv_nxt;
	in->tcp.copied_seq = d->snap.rcv_nxt - d->snap.inq;
	in->tcp.write_seq = in->tcp.pushed_seq = d->snap.write_seq;
	in->tcp.snd_una = d->snap.write_seq - d->snap.outq;
	in->tcp.snd_nxt = in->tcp.snd_sml = in->tcp.snd_up = d->snap.write_seq - d->snap.unsent;
	in->tcp.snd_wl1 = w.snd_wl1;
	in->tcp.snd_wnd = w.snd_wnd;
	in->tcp.max_window = w.max_window;
	in->tcp.rcv_wnd = w.rcv_wnd;
	in->tcp.rcv_wup = w.rcv_wup;
	fill_tcp(in, &ti, s->sk);
	fill_ext_tcp(&d->xt, &ti, s->sk, true);
	/* kept in repair mode until the end: a --kill then closes it without FIN or RST */
	ret = held_add(s->tid, s->tfd, s->sk, reuse, ti.tcpi_bytes_received);
out:
	if (ret && repair_off(s->sk, reuse, TCP_REPAIR_OFF_NO_WP))
		pr_perror("pid %d fd %d: leave TCP repair mode", s->tid, s->tfd);
	return ret;
}

/* 0: saved (SOCKET's inet part filled, state in s->fam), 2: not saved (ERROR written), -1 */
int check_inet_socket(struct ctx *c, struct sock_dump *s)
{
	struct sockaddr_storage la = { 0 }, ra = { 0 };
	socklen_t llen = sizeof(la), rlen = sizeof(ra);
	struct tcp_info ti = { 0 };
	struct inet_dump *d;
	struct ckpt_hdr_socket_inet *in;
	int v, state = CKPT_TCP_CLOSE;
	const char *why;
	bool connected;

	if (s->protocol == IPPROTO_TCP && tcp_info_of(s->sk, &ti))
		return pr_perror("pid %d fd %d: TCP_INFO", s->tid, s->tfd);
	why = unsupported(s, &ti);
	if (why)
		return ckpt_unsupported(c, "pid %d fd %d: socket:[%lu] not saved: %s", s->tid, s->tfd,
					(unsigned long)s->ino, why) ? -1 : 2;
	if (getsockname(s->sk, (struct sockaddr *)&la, &llen))
		return pr_perror("pid %d fd %d: getsockname", s->tid, s->tfd);
	connected = !getpeername(s->sk, (struct sockaddr *)&ra, &rlen);
	if (s->protocol == IPPROTO_TCP) {
		state = ti.tcpi_state;
		if (state == CKPT_TCP_ESTABLISHED && !ckpt_ext(c))
			return ckpt_unsupported(c, "pid %d fd %d: TCP connection: window scale, timestamps, "
						"SACK and MSS have no v23 field (--strict: no extension record)",
						s->tid, s->tfd) ? -1 : 2;
		if (state == CKPT_TCP_LISTEN) {
			s->h.sock.backlog = ti.tcpi_sacked;	/* sk_max_ack_backlog of a listener */
			if (ti.tcpi_unacked &&
			    ckpt_unsupported(c, "pid %d fd %d: %u connection%s waiting to be accepted (they "
					     "are reset when the listener closes)", s->tid, s->tfd,
					     ti.tcpi_unacked, ti.tcpi_unacked == 1 ? "" : "s"))
				return -1;
		}
	} else if (connected) {
		state = CKPT_TCP_ESTABLISHED;	/* a connected UDP socket, as the kernel says it */
	}
	if (s->protocol == IPPROTO_UDP && !ioctl(s->sk, SIOCINQ, &v) && v &&
	    ckpt_unsupported(c, "pid %d fd %d: datagrams waiting in a UDP socket (%d bytes in the "
			     "first) are not saved", s->tid, s->tfd, v))
		return -1;
	s->h.sock.state = s->h.sock_common.state = state;
	s->h.socket.state = connected ? CKPT_SS_CONNECTED : CKPT_SS_UNCONNECTED;

	d = calloc(1, sizeof(*d));
	if (!d)
		return pr_perror("socket state");
	s->fam = d;
	in = &d->in;
	d->tcp = s->protocol == IPPROTO_TCP;
	put_addr(&la, &in->rcv_saddr, in->inet6.rcv_saddr, &in->sport, &in->laddr);
	in->saddr = in->rcv_saddr;
	memcpy(in->inet6.saddr, in->inet6.rcv_saddr, 16);
	in->num = ntohs(in->sport);
	in->laddr_len = sizeof(in->laddr);
	if (connected) {
		put_addr(&ra, &in->daddr, in->inet6.daddr, &in->dport, &in->raddr);
		in->raddr_len = sizeof(in->raddr);
	}
	if (s->family == AF_INET6) {
		if (!inet_getopt(s->sk, IPPROTO_IPV6, IPV6_V6ONLY, &v) && v)
			d->xi.flags |= IMGTOOLS_INET_V6ONLY;
		if (!inet_getopt(s->sk, IPPROTO_IPV6, IPV6_TCLASS, &v))
			d->xi.tos = v;
		if (!inet_getopt(s->sk, IPPROTO_IPV6, IPV6_UNICAST_HOPS, &v))
			in->uc_ttl = v;
	} else {
		if (!inet_getopt(s->sk, IPPROTO_IP, IP_TOS, &v))
			d->xi.tos = v;
		if (!inet_getopt(s->sk, IPPROTO_IP, IP_TTL, &v))
			in->uc_ttl = v;
	}
	if (!inet_getopt(s->sk, SOL_SOCKET, SO_REUSEPORT, &v) && v)
		d->xi.flags |= IMGTOOLS_INET_REUSEPORT;
	if (!inet_getopt(s->sk, IPPROTO_IP, IP_FREEBIND, &v) && v)
		d->xi.flags |= IMGTOOLS_INET_FREEBIND;
	if (!inet_getopt(s->sk, IPPROTO_IP, IP_TRANSPARENT, &v) && v)
		d->xi.flags |= IMGTOOLS_INET_TRANSPARENT;
	if (d->tcp && state == CKPT_TCP_ESTABLISHED) {
		s->h.has_buffers = 1;
		return snapshot_connection(s, d);
	}
	if (d->tcp) {
		fill_tcp(in, &ti, s->sk);
		fill_ext_tcp(&d->xt, &ti, s->sk, false);
	}
	if (!ckpt_ext(c) && !ext_is_default(s->family, s->type, s->protocol, &d->xi, d->tcp ? &d->xt : NULL))
		return ckpt_unsupported(c, "pid %d fd %d: socket options (IPV6_V6ONLY, SO_REUSEPORT, TOS, "
					"TCP congestion...) have no v23 field (--strict: no extension "
					"record)", s->tid, s->tfd) ? -1 : 0;
	return 0;
}

/* the records after SOCKET: SOCKET_INET EXT_INET [EXT_TCP] */
int dump_inet_socket(struct ctx *c, struct sock_dump *s)
{
	struct inet_dump *d = s->fam;

	if (write_obj(&c->img, CKPT_HDR_SOCKET_INET, &d->in, sizeof(d->in)))
		return -1;
	if (!ckpt_ext(c))
		return 0;
	if (write_obj(&c->img, CKPT_HDR_EXT_INET, &d->xi, sizeof(d->xi)))
		return -1;
	return d->tcp ? write_obj(&c->img, CKPT_HDR_EXT_TCP, &d->xt, sizeof(d->xt)) : 0;
}

/* an established connection's receive queue, then its write queue (end of the file table) */
int dump_inet_queues(struct ctx *c, struct sock_dump *s)
{
	struct inet_dump *d = s->fam;
	int ret = write_queue(c, s->ref, d->snap.rq, d->snap.inq) ||
		  write_queue(c, s->ref, d->snap.sq, d->snap.outq) ? -1 : 0;

	free(d->snap.rq);
	free(d->snap.sq);
	d->snap.rq = d->snap.sq = NULL;
	return ret;
}

/* the first held connection that received bytes after its snapshot, -1 if none */
static int changed_conn(uint64_t *bytes)
{
	int i;

	for (i = 0; i < nr_held; i++) {
		struct tcp_info ti;

		if (tcp_info_of(held[i].sk, &ti) || ti.tcpi_bytes_received != held[i].bytes_received) {
			*bytes = ti.tcpi_bytes_received - held[i].bytes_received;
			return i;
		}
	}
	return -1;
}

/* before the TAIL: a connection that received data after its snapshot makes the dump fail */
int inet_dump_end(struct ctx *c)
{
	uint64_t n;
	int i = changed_conn(&n);

	if (i < 0)
		return 0;
	c->refused = true;
	return pr_err("pid %d fd %d: the TCP connection received %llu bytes while the tree was being "
		      "dumped (a peer outside the tree is sending): dump again", held[i].tid, held[i].fd,
		      (unsigned long long)n);
}

/*
 * Before the thaw. Killing: a last check that nothing arrived since the snapshot (those
 * bytes are acknowledged: they would be lost), else the tasks are not killed after all;
 * the connections stay in repair mode, so the tasks' death sends neither FIN nor RST.
 * Not killing: repair mode is left and the original goes on. Returns whether to kill.
 */
bool inet_thaw(struct ctx *c, bool kill)
{
	uint64_t n;
	int i = kill ? changed_conn(&n) : -1;

	if (i >= 0) {
		pr_err("pid %d fd %d: the TCP connection received %llu bytes after it was saved: the tree "
		       "is not killed (dump again)", held[i].tid, held[i].fd, (unsigned long long)n);
		c->nr_unsupported++;
		kill = false;
	}
	for (i = 0; i < nr_held; i++) {
		if (!kill && repair_off(held[i].sk, held[i].reuse, TCP_REPAIR_OFF_NO_WP))
			pr_perror("pid %d fd %d: leave TCP repair mode", held[i].tid, held[i].fd);
		close(held[i].sk);
	}
	nr_held = 0;
	return kill;
}
