/*
 * AF_INET and AF_INET6 sockets on restore. The mirror of net_inet.c.
 *
 * The driver creates each socket (in its own network namespace, the caller's) and the
 * tasks take it like any file. A listening socket is bound to its address again (an
 * address taken on this host is refused); UDP sockets are bound and connected again. An
 * established TCP connection is rebuilt in TCP_REPAIR mode, without a handshake: the
 * sequence numbers of both queues, bind, connect, the options negotiated by the original
 * handshake, the received bytes the program had not read, the bytes it had sent that were
 * not acknowledged, the windows. The connections leave repair mode at the TAIL, all
 * together (a window probe each), when both ends of a connection inside the tree exist;
 * then the bytes that were never sent are written. A connection whose peer is neither in
 * the image nor on this host any more is refused, or with --tcp-close restored closed.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <linux/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "restore.h"

#define QUEUE_MAX	(256U << 20)	/* a larger socket queue in an image is invalid */
#define TCPOPT_MSS_K		2	/* TCP option kinds for TCP_REPAIR_OPTIONS */
#define TCPOPT_WINDOW_K		3
#define TCPOPT_SACK_PERM_K	4
#define TCPOPT_TIMESTAMP_K	8

/* an established connection of the image, until the TAIL */
struct rconn {
	int fd;				/* the driver's socket; -1 in the dry pass */
	uint8_t local[18], peer[18];	/* IPv6 (IPv4 mapped) address + port, network order */
	char name[168];			/* "L -> P" for messages */
	char *unsent;			/* written after repair mode */
	uint32_t unsent_len, inq;
	int reuse;
};
static struct rconn *conns;
static int nr_conns, cap_conns;

struct inet_rec {			/* rsock.fam of an inet socket */
	struct ckpt_hdr_socket s;
	struct ckpt_hdr_socket_inet in;
	struct ckpt_hdr_ext_inet xi;
	struct ckpt_hdr_ext_tcp xt;
	bool have_xi, have_xt;
	struct sockaddr_storage la, ra;
	socklen_t alen;
	int conn;			/* index in conns of an established connection */
};

static void addr_of(const struct inet_rec *r, bool local, struct sockaddr_storage *ss)
{
	int family = r->s.sock_common.family;

	memset(ss, 0, sizeof(*ss));
	if (family == AF_INET) {
		struct sockaddr_in *in = (void *)ss;

		in->sin_family = AF_INET;
		in->sin_port = local ? r->in.sport : r->in.dport;
		in->sin_addr.s_addr = local ? r->in.rcv_saddr : r->in.daddr;
	} else {
		struct sockaddr_in6 *in6 = (void *)ss;

		in6->sin6_family = AF_INET6;
		in6->sin6_port = local ? r->in.sport : r->in.dport;
		memcpy(&in6->sin6_addr, local ? r->in.inet6.rcv_saddr : r->in.inet6.daddr, 16);
	}
}

/* address + port as 18 bytes, IPv4 as IPv4-mapped IPv6, for comparisons */
static void addr_key(const struct sockaddr_storage *ss, uint8_t key[18])
{
	memset(key, 0, 18);
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *in = (const void *)ss;

		key[10] = key[11] = 0xff;
		memcpy(key + 12, &in->sin_addr, 4);
		memcpy(key + 16, &in->sin_port, 2);
	} else {
		const struct sockaddr_in6 *in6 = (const void *)ss;

		memcpy(key, &in6->sin6_addr, 16);
		memcpy(key + 16, &in6->sin6_port, 2);
	}
}

static void addr_text(const struct sockaddr_storage *ss, char *buf, size_t len)
{
	char a[INET6_ADDRSTRLEN] = "?";

	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *in = (const void *)ss;

		inet_ntop(AF_INET, &in->sin_addr, a, sizeof(a));
		snprintf(buf, len, "%s:%u", a, ntohs(in->sin_port));
	} else {
		const struct sockaddr_in6 *in6 = (const void *)ss;

		inet_ntop(AF_INET6, &in6->sin6_addr, a, sizeof(a));
		snprintf(buf, len, "[%s]:%u", a, ntohs(in6->sin6_port));
	}
}

/* the (SOCKET_BUFFER BUFFER) chunks of a SOCKET_QUEUE, as one byte string */
static int read_queue(struct rctx *c, const struct ckpt_hdr_socket_queue *q, char **data)
{
	struct ckpt_hdr h;
	uint32_t i, got = 0;

	if (q->total_bytes > QUEUE_MAX || q->skb_count > q->total_bytes)
		return rs_invalid(&c->in, "SOCKET_QUEUE at offset %llu: %u bytes in %u buffers",
				  (unsigned long long)c->in.rec_off, q->total_bytes, q->skb_count);
	*data = malloc(q->total_bytes + 1);
	if (!*data)
		return pr_perror("socket queue");
	for (i = 0; i < q->skb_count; i++) {
		struct ckpt_hdr_socket_buffer b;
		uint32_t n;

		if (rs_expect(&c->in, CKPT_HDR_SOCKET_BUFFER, &h) || rs_record(&c->in, &h, &b, sizeof(b)) ||
		    rs_expect(&c->in, CKPT_HDR_BUFFER, &h))
			return -1;
		n = h.len - sizeof(h);
		if (b.nr_frags || b.lin_len != n || b.skb_len != n || b.data_offset || n > q->total_bytes - got)
			return rs_invalid(&c->in, "SOCKET_BUFFER of a TCP queue at offset %llu: %u bytes, "
					  "%u fragments, %u left in the queue", (unsigned long long)c->in.rec_off,
					  n, b.nr_frags, q->total_bytes - got);
		if (rs_read(&c->in, *data + got, n))
			return -1;
		got += n;
	}
	if (got != q->total_bytes)
		return rs_invalid(&c->in, "SOCKET_QUEUE at offset %llu: %u of %u bytes",
				  (unsigned long long)c->in.rec_off, got, q->total_bytes);
	return 0;
}

/* an optional annotation of the given type right after: read it if it is there */
static int read_ext(struct rctx *c, uint32_t type, void *rec, size_t size, bool *have)
{
	struct ckpt_hdr h;

	*have = false;
	if (rs_peek(&c->in, &h) || h.type != type)
		return 0;
	if (rs_next(&c->in, &h) || rs_record(&c->in, &h, rec, size))
		return -1;
	*have = true;
	return 0;
}

static int read_records(struct rctx *c, struct inet_rec *r)
{
	struct ckpt_hdr h;
	int family = r->s.sock_common.family, state = r->s.sock.state;
	bool tcp = r->s.sock.type == SOCK_STREAM && r->s.sock.protocol == IPPROTO_TCP;
	bool udp = r->s.sock.type == SOCK_DGRAM && r->s.sock.protocol == IPPROTO_UDP;

	if (rs_expect(&c->in, CKPT_HDR_SOCKET_INET, &h) || rs_record(&c->in, &h, &r->in, sizeof(r->in)) ||
	    read_ext(c, CKPT_HDR_EXT_INET, &r->xi, sizeof(r->xi), &r->have_xi) ||
	    read_ext(c, CKPT_HDR_EXT_TCP, &r->xt, sizeof(r->xt), &r->have_xt))
		return -1;
	if (!tcp && !udp)
		return rst_refuse(c, "inet sockets of type %u protocol %u are not restored", r->s.sock.type,
				  r->s.sock.protocol);
	if (tcp && state != CKPT_TCP_ESTABLISHED && state != CKPT_TCP_LISTEN && state != CKPT_TCP_CLOSE)
		return rst_refuse(c, "TCP sockets in state %u are not restored", state);
	addr_of(r, true, &r->la);
	addr_of(r, false, &r->ra);
	r->alen = family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
	if (!tcp || state != CKPT_TCP_ESTABLISHED)
		return 0;
	if (!r->have_xt)
		return rst_refuse(c, "a TCP connection without its EXT_TCP record (a --strict dump) cannot "
				  "be rebuilt: its window scale, timestamps and MSS are unknown");
	if (!r->s.has_buffers)
		return rs_invalid(&c->in, "SOCKET of an established TCP connection without its queues "
				  "(has_buffers 0)");
	if (r->in.tcp.write_seq - r->in.tcp.snd_nxt > r->in.tcp.write_seq - r->in.tcp.snd_una)
		return rs_invalid(&c->in, "SOCKET_INET: snd_una %u, snd_nxt %u, write_seq %u are out of "
				  "order", r->in.tcp.snd_una, r->in.tcp.snd_nxt, r->in.tcp.write_seq);
	return 0;
}

static int set_int(int sk, int level, int name, int val)
{
	return setsockopt(sk, level, name, &val, sizeof(val));
}

static bool congestion_available(const char *name)
{
	char *list = proc_read(0, "sys/net/ipv4/tcp_available_congestion_control", NULL), *tok, *save;
	bool found = false;

	for (tok = list ? strtok_r(list, " \n", &save) : NULL; tok && !found; tok = strtok_r(NULL, " \n", &save))
		found = !strcmp(tok, name);
	free(list);
	return found;
}

/* the options of the image on a new socket (before bind) */
static int apply_options(struct rctx *c, struct inet_rec *r, int sk, const char *where)
{
	int family = r->s.sock_common.family, fresh = 0;
	bool fail = false;

	if (restore_sock_options(c, sk, &r->s))	/* SOL_SOCKET (net.c) */
		return -1;
	/* the metadata pass only tries the address: with the program's SO_REUSEADDR */
	if (c->dry && r->s.sock_common.reuse)
		fail |= set_int(sk, SOL_SOCKET, SO_REUSEADDR, 1) != 0;

	if (r->have_xi) {
		if (family == AF_INET6)
			fail |= set_int(sk, IPPROTO_IPV6, IPV6_V6ONLY, !!(r->xi.flags & IMGTOOLS_INET_V6ONLY)) != 0;
		if (r->xi.flags & IMGTOOLS_INET_REUSEPORT)
			fail |= set_int(sk, SOL_SOCKET, SO_REUSEPORT, 1) != 0;
		if (r->xi.flags & IMGTOOLS_INET_FREEBIND)
			fail |= set_int(sk, IPPROTO_IP, IP_FREEBIND, 1) != 0;
		if (r->xi.flags & IMGTOOLS_INET_TRANSPARENT)
			fail |= set_int(sk, IPPROTO_IP, IP_TRANSPARENT, 1) != 0;
		if (r->xi.tos)
			fail |= set_int(sk, family == AF_INET6 ? IPPROTO_IPV6 : IPPROTO_IP,
					family == AF_INET6 ? IPV6_TCLASS : IP_TOS, r->xi.tos) != 0;
	}
	if (r->in.uc_ttl > 0 && !inet_getopt(sk, family == AF_INET6 ? IPPROTO_IPV6 : IPPROTO_IP,
					     family == AF_INET6 ? IPV6_UNICAST_HOPS : IP_TTL, &fresh) &&
	    fresh != r->in.uc_ttl)
		fail |= set_int(sk, family == AF_INET6 ? IPPROTO_IPV6 : IPPROTO_IP,
				family == AF_INET6 ? IPV6_UNICAST_HOPS : IP_TTL, r->in.uc_ttl) != 0;
	if (r->s.sock.protocol == IPPROTO_TCP) {
		fail |= set_int(sk, IPPROTO_TCP, TCP_NODELAY, !!(r->in.tcp.nonagle & 1)) != 0;
		fail |= set_int(sk, IPPROTO_TCP, TCP_CORK, !!(r->in.tcp.nonagle & 2)) != 0;
		if (r->in.tcp.keepalive_time)
			fail |= set_int(sk, IPPROTO_TCP, TCP_KEEPIDLE, r->in.tcp.keepalive_time) != 0;
		if (r->in.tcp.keepalive_intvl)
			fail |= set_int(sk, IPPROTO_TCP, TCP_KEEPINTVL, r->in.tcp.keepalive_intvl) != 0;
		if (r->in.tcp.keepalive_probes)
			fail |= set_int(sk, IPPROTO_TCP, TCP_KEEPCNT, r->in.tcp.keepalive_probes) != 0;
	}
	if (r->have_xt) {
		char cc[sizeof(r->xt.congestion) + 1] = { 0 };

		memcpy(cc, r->xt.congestion, sizeof(r->xt.congestion));
		/* only one this host has loaded: an unknown name would make the kernel load a module */
		if (cc[0] && !congestion_available(cc))
			return rst_refuse(c, "%s: TCP congestion control \"%s\" is not available on this host",
					  where, strspn(cc, "abcdefghijklmnopqrstuvwxyz0123456789_-") == strlen(cc) ?
					  cc : "(not a name)");
		if (cc[0])
			fail |= setsockopt(sk, IPPROTO_TCP, TCP_CONGESTION, cc, strlen(cc)) != 0;
		fail |= set_int(sk, IPPROTO_TCP, TCP_USER_TIMEOUT, r->xt.user_timeout) != 0;
		if (r->xt.notsent_lowat)
			fail |= set_int(sk, IPPROTO_TCP, TCP_NOTSENT_LOWAT, r->xt.notsent_lowat) != 0;
	}
	if (fail)
		return rst_refuse(c, "%s: the socket's options cannot be set: %s", where, strerror(errno));
	return 0;
}

static bool any_address(const struct sockaddr_storage *ss)
{
	static const uint8_t zero[16];

	if (ss->ss_family == AF_INET)
		return ((const struct sockaddr_in *)ss)->sin_addr.s_addr == 0 &&
		       ((const struct sockaddr_in *)ss)->sin_port == 0;
	return !memcmp(&((const struct sockaddr_in6 *)ss)->sin6_addr, zero, 16) &&
	       ((const struct sockaddr_in6 *)ss)->sin6_port == 0;
}

/* bind to the image's local address; "in use" and "not here" are refusals */
static int bind_local(struct rctx *c, struct inet_rec *r, int sk, const char *what)
{
	char a[80];

	if (!bind(sk, (struct sockaddr *)&r->la, r->alen))
		return 0;
	addr_text(&r->la, a, sizeof(a));
	if (errno == EADDRINUSE)
		return rst_refuse(c, "%s %s: address already in use on this host", what, a);
	if (errno == EADDRNOTAVAIL)
		return rst_refuse(c, "%s %s: this host has no such address", what, a);
	return rst_refuse(c, "%s %s: bind: %s", what, a, strerror(errno));
}

/* a listener, a UDP socket, an unconnected TCP socket: create, bind, listen/connect */
static int make_plain(struct rctx *c, struct inet_rec *r, int sk)
{
	bool listener = r->s.sock.protocol == IPPROTO_TCP && r->s.sock.state == CKPT_TCP_LISTEN;
	const char *what = listener ? "listening TCP socket" :
			   r->s.sock.protocol == IPPROTO_TCP ? "TCP socket" : "UDP socket";
	char a[80];

	if (apply_options(c, r, sk, what))
		return -1;
	if ((listener || !any_address(&r->la)) && bind_local(c, r, sk, what))
		return -1;
	if (c->dry)
		return 0;
	if (listener && listen(sk, r->s.sock.backlog > 0 ? r->s.sock.backlog : 1))
		return pr_perror("listen");
	if (r->s.sock.protocol == IPPROTO_UDP && r->in.raddr_len && r->in.dport &&
	    connect(sk, (struct sockaddr *)&r->ra, r->alen)) {
		addr_text(&r->ra, a, sizeof(a));
		return rst_refuse(c, "UDP socket connected to %s: %s", a, strerror(errno));
	}
	return 0;
}

static int queue_seq(int sk, int queue, uint32_t seq)
{
	if (set_int(sk, IPPROTO_TCP, TCP_REPAIR_QUEUE, queue))
		return -1;
	return set_int(sk, IPPROTO_TCP, TCP_QUEUE_SEQ, seq);
}

/* len bytes into the selected queue (repair mode: received / sent, not transmitted) */
static int fill_queue(int sk, int queue, const char *data, uint32_t len)
{
	uint32_t off = 0;

	if (set_int(sk, IPPROTO_TCP, TCP_REPAIR_QUEUE, queue))
		return -1;
	while (off < len) {
		ssize_t n = send(sk, data + off, len - off, MSG_DONTWAIT);

		if (n <= 0)
			return -1;
		off += n;
	}
	return 0;
}

static int repair_options(int sk, const struct ckpt_hdr_ext_tcp *x)
{
	struct tcp_repair_opt o[4];
	int n = 0;

	o[n++] = (struct tcp_repair_opt){ TCPOPT_MSS_K, x->mss_clamp };
	if (x->options & TCPI_OPT_WSCALE)
		o[n++] = (struct tcp_repair_opt){ TCPOPT_WINDOW_K, x->snd_wscale | (uint32_t)x->rcv_wscale << 16 };
	if (x->options & TCPI_OPT_SACK)
		o[n++] = (struct tcp_repair_opt){ TCPOPT_SACK_PERM_K, 0 };
	if (x->options & TCPI_OPT_TIMESTAMPS)
		o[n++] = (struct tcp_repair_opt){ TCPOPT_TIMESTAMP_K, 0 };
	return setsockopt(sk, IPPROTO_TCP, TCP_REPAIR_OPTIONS, o, n * sizeof(o[0]));
}

static int add_conn(struct inet_rec *r, int sk)
{
	struct rconn *k;
	char l[80], p[80];

	if (nr_conns == cap_conns) {
		struct rconn *n = realloc(conns, (cap_conns = cap_conns ? 2 * cap_conns : 16) * sizeof(*n));

		if (!n)
			return pr_perror("connection list");
		conns = n;
	}
	r->conn = nr_conns;
	k = &conns[nr_conns++];
	memset(k, 0, sizeof(*k));
	k->fd = sk;
	k->reuse = !!r->s.sock_common.reuse;
	k->inq = r->in.tcp.rcv_nxt - r->in.tcp.copied_seq;
	addr_key(&r->la, k->local);
	addr_key(&r->ra, k->peer);
	addr_text(&r->la, l, sizeof(l));
	addr_text(&r->ra, p, sizeof(p));
	snprintf(k->name, sizeof(k->name), "%s -> %s", l, p);
	return 0;
}

/*
 * An established connection, rebuilt in repair mode up to its queues (restore_inet_queue
 * refills them at the end of the file table); it leaves repair mode at the TAIL.
 */
static int make_connection(struct rctx *c, struct inet_rec *r, int sk)
{
	const struct ckpt_hdr_socket_inet *in = &r->in;
	char l[80], p[80];

	if (c->dry)
		return add_conn(r, -1);
	/* options first: SO_REUSEADDR would undo the forced address reuse of repair mode */
	if (apply_options(c, r, sk, "TCP connection"))
		return -1;
	if (set_int(sk, IPPROTO_TCP, TCP_REPAIR, TCP_REPAIR_ON))
		return rst_refuse(c, "TCP_REPAIR: %s (the restorer needs CAP_NET_ADMIN)", strerror(errno));
	if (queue_seq(sk, TCP_RECV_QUEUE, in->tcp.copied_seq) ||
	    queue_seq(sk, TCP_SEND_QUEUE, in->tcp.snd_una) ||
	    (r->xt.timestamp && set_int(sk, IPPROTO_TCP, TCP_TIMESTAMP, r->xt.timestamp)))
		return pr_perror("TCP connection: sequence numbers");
	if (bind_local(c, r, sk, "TCP connection from"))
		return -1;
	if (connect(sk, (struct sockaddr *)&r->ra, r->alen)) {
		addr_text(&r->la, l, sizeof(l));
		addr_text(&r->ra, p, sizeof(p));
		return rst_refuse(c, "TCP connection %s -> %s: %s (is the dumped program still running?)", l, p,
				  strerror(errno));
	}
	if (repair_options(sk, &r->xt))
		return pr_perror("TCP connection: TCP_REPAIR_OPTIONS");
	return add_conn(r, sk);
}

/* room for a queue of len bytes (the kernel counts each buffer's overhead too) */
static void make_room(int sk, int opt, uint32_t len, int asked)
{
	int need = 2 * len + 65536;

	if (len)
		set_int(sk, SOL_SOCKET, opt, need > asked ? need : asked);
}

/*
 * SOCKET_QUEUE of an established connection: the receive queue goes back as received
 * bytes, the write queue's sent part as sent and not acknowledged (repair mode transmits
 * nothing), the part never sent is kept for the TAIL; then the windows.
 */
int restore_inet_queue(struct rctx *c, struct robj *o, struct rsock *s,
		       const struct ckpt_hdr_socket_queue *q, bool recv)
{
	struct inet_rec *r = s->fam;
	const struct ckpt_hdr_socket_inet *in;
	uint32_t expect, unsent;
	char *data = NULL;
	int ret = -1;

	if (!r || r->s.sock.state != CKPT_TCP_ESTABLISHED || r->s.sock.protocol != IPPROTO_TCP)
		return rs_invalid(&c->in, "SOCKET_QUEUE at offset %llu of an inet socket that is not an "
				  "established TCP connection", (unsigned long long)c->in.rec_off);
	in = &r->in;
	expect = recv ? in->tcp.rcv_nxt - in->tcp.copied_seq : in->tcp.write_seq - in->tcp.snd_una;
	unsent = recv ? 0 : in->tcp.write_seq - in->tcp.snd_nxt;
	if (q->total_bytes != expect)
		return rs_invalid(&c->in, "SOCKET_QUEUE at offset %llu: %u bytes, the sequence numbers say %u",
				  (unsigned long long)c->in.rec_off, q->total_bytes, expect);
	if (read_queue(c, q, &data))
		goto out;
	ret = 0;
	if (c->dry)
		goto out;
	if (recv) {
		make_room(o->fd, SO_RCVBUFFORCE, q->total_bytes, r->s.sock.rcvbuf);
		if (fill_queue(o->fd, TCP_RECV_QUEUE, data, q->total_bytes))
			ret = pr_perror("TCP connection %s: refill the receive queue", conns[r->conn].name);
		goto out;
	}
	make_room(o->fd, SO_SNDBUFFORCE, q->total_bytes, r->s.sock.sndbuf);
	if (fill_queue(o->fd, TCP_SEND_QUEUE, data, q->total_bytes - unsent) ||
	    setsockopt(o->fd, IPPROTO_TCP, TCP_REPAIR_WINDOW, &(struct tcp_repair_window){
			.snd_wl1 = in->tcp.snd_wl1, .snd_wnd = in->tcp.snd_wnd,
			.max_window = in->tcp.max_window, .rcv_wnd = in->tcp.rcv_wnd,
			.rcv_wup = in->tcp.rcv_wup }, sizeof(struct tcp_repair_window)) ||
	    set_int(o->fd, IPPROTO_TCP, TCP_REPAIR_QUEUE, TCP_NO_QUEUE)) {
		ret = pr_perror("TCP connection %s: refill the write queue", conns[r->conn].name);
		goto out;
	}
	if (unsent) {
		conns[r->conn].unsent = malloc(unsent);
		if (!conns[r->conn].unsent) {
			ret = pr_perror("unsent bytes");
			goto out;
		}
		memcpy(conns[r->conn].unsent, data + q->total_bytes - unsent, unsent);
		conns[r->conn].unsent_len = unsent;
	}
out:
	free(data);
	return ret;
}

/* the end of a file table: the connections wait for the TAIL (inet_restore_end) */
int restore_inet_finish(struct rctx *c, struct robj *o, struct rsock *s)
{
	(void)c;
	(void)o;
	(void)s;
	return 0;
}

int restore_inet_socket(struct rctx *c, struct robj *o, struct rsock *s)
{
	struct inet_rec *r = calloc(1, sizeof(*r));
	int sk = -1, ret = -1;

	if (!r)
		return pr_perror("socket");
	s->fam = r;
	r->s = s->h;
	if (read_records(c, r))
		goto out;
	sk = socket(r->s.sock_common.family, r->s.sock.type | SOCK_CLOEXEC | SOCK_NONBLOCK,
		    r->s.sock.protocol);
	if (sk < 0) {
		ret = pr_perror("socket");
		goto out;
	}
	if (r->s.sock.protocol == IPPROTO_TCP && r->s.sock.state == CKPT_TCP_ESTABLISHED)
		ret = make_connection(c, r, sk);
	else
		ret = make_plain(c, r, sk);
	if (!ret && !c->dry) {
		o->fd = sk;
		sk = -1;
	}
out:
	if (sk >= 0)
		close(sk);
	return ret;
}

/* does a TCP socket of this host have local address `local` and peer `peer` (any state)? */
static bool host_has(const uint8_t local[18], const uint8_t peer[18])
{
	static const char *const tables[] = { "/proc/net/tcp", "/proc/net/tcp6" };
	char line[512];
	unsigned int i;

	for (i = 0; i < 2; i++) {
		FILE *f = fopen(tables[i], "re");

		if (!f)
			continue;
		while (fgets(line, sizeof(line), f)) {
			char la[40], ra[40];
			unsigned int lp, rp, st;
			uint8_t lk[18] = { 0 }, rk[18] = { 0 };
			int k;

			if (sscanf(line, " %*d: %39[0-9A-Fa-f]:%x %39[0-9A-Fa-f]:%x %x", la, &lp, ra, &rp, &st) != 5)
				continue;
			if (st == 10 || st == 6)	/* LISTEN, TIME_WAIT: not a peer */
				continue;
			for (k = 0; k < 2; k++) {
				const char *hex = k ? ra : la;
				uint8_t *key = k ? rk : lk;
				unsigned int words = strlen(hex) / 8, w;

				if (words == 1) {
					key[10] = key[11] = 0xff;
				}
				for (w = 0; w < words && w < 4; w++) {
					char word[9];
					uint32_t v;

					memcpy(word, hex + 8 * w, 8);
					word[8] = 0;
					v = strtoul(word, NULL, 16);	/* the kernel printed the word in host order */
					memcpy(key + (words == 1 ? 12 : 4 * w), &v, 4);
				}
				key[16] = (k ? rp : lp) >> 8;
				key[17] = (k ? rp : lp) & 0xff;
			}
			if (!memcmp(lk, local, 18) && !memcmp(rk, peer, 18)) {
				fclose(f);
				return true;
			}
		}
		fclose(f);
	}
	return false;
}

/* is the address part of key one of this host's (a UDP socket can bind to it)? */
static bool local_address(const uint8_t key[18])
{
	struct sockaddr_in6 a = { .sin6_family = AF_INET6 };
	int sk = socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	bool local;

	if (sk < 0)
		return true;	/* cannot tell: do not call the peer gone */
	memcpy(&a.sin6_addr, key, 16);
	local = !bind(sk, (struct sockaddr *)&a, sizeof(a)) || errno != EADDRNOTAVAIL;
	close(sk);
	return local;
}

/* the peer of connection i: in the image, on this host, or elsewhere (cannot be checked) */
static bool peer_gone(int i)
{
	int j;

	for (j = 0; j < nr_conns; j++)
		if (!memcmp(conns[j].local, conns[i].peer, 18) && !memcmp(conns[j].peer, conns[i].local, 18))
			return false;
	if (host_has(conns[i].peer, conns[i].local))
		return false;
	return local_address(conns[i].peer);
}

/* repair mode off (a window probe), SO_REUSEADDR back, then the bytes never sent */
static int release_conn(struct rconn *k)
{
	uint32_t off = 0;

	if (set_int(k->fd, IPPROTO_TCP, TCP_REPAIR, TCP_REPAIR_OFF) ||
	    set_int(k->fd, SOL_SOCKET, SO_REUSEADDR, k->reuse))
		return pr_perror("TCP connection %s: leave repair mode", k->name);
	while (off < k->unsent_len) {
		ssize_t n = send(k->fd, k->unsent + off, k->unsent_len - off, MSG_DONTWAIT | MSG_NOSIGNAL);

		if (n <= 0)
			return pr_perror("TCP connection %s: send %u unsent bytes", k->name, k->unsent_len - off);
		off += n;
	}
	return 0;
}

/* --tcp-close: dropped in repair mode (no RST to anyone); the program's next read or write fails */
static int close_conn(struct rconn *k)
{
	struct sockaddr unspec = { .sa_family = AF_UNSPEC };

	if (connect(k->fd, &unspec, sizeof(unspec)) || set_int(k->fd, IPPROTO_TCP, TCP_REPAIR, TCP_REPAIR_OFF))
		return pr_perror("TCP connection %s: close it", k->name);
	fprintf(stderr, "imgtools-engine: --tcp-close: TCP connection %s restored closed (its peer is gone; "
		"%u received bytes the program had not read dropped)\n", k->name, k->inq);
	return 0;
}

int inet_restore_end(struct rctx *c)
{
	int i, ret = 0;

	for (i = 0; i < nr_conns && !ret; i++) {
		struct rconn *k = &conns[i];
		bool gone = peer_gone(i);

		if (c->dry && host_has(k->local, k->peer))
			ret = rst_refuse(c, "TCP connection %s is still open on this host (is the dumped program "
					 "still running?)", k->name);
		else if (gone && !c->tcp_close)
			ret = rst_refuse(c, "TCP connection %s: the peer is gone (it is not in the image and "
					 "nothing on this host is connected to it); --tcp-close restores it closed",
					 k->name);
		else if (!c->dry)
			ret = gone ? close_conn(k) : release_conn(k);
	}
	for (i = 0; i < nr_conns; i++)
		free(conns[i].unsent);
	nr_conns = 0;
	return ret;
}
