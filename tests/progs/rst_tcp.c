/*
 * A TCP client/server pair in one tree that checks every byte across a checkpoint.
 *
 * rst_tcp READY_FILE [RECORDS [6]]: the parent listens on 127.0.0.1 (::1 with "6"; an ephemeral port), forks
 * the client, accepts it, and writes "ready PORT" to READY_FILE. Then both ends stream
 * RECORDS numbered 16-byte records to each other at once (writes as fast as the peer
 * takes them, reads throttled, so both directions have bytes queued in the kernel at any
 * moment), and each end checks that it receives record 0, 1, 2, ... with the right
 * contents, then EOF. Exit status (the parent's, which includes the child's): 0 only if
 * both ends got every record exactly once and in order.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define REC 16

static uint64_t tag(uint64_t seq, int side)
{
	return (seq * 0x9e3779b97f4a7c15ULL) ^ (side ? 0x5555aaaa5555aaaaULL : 0x1234567887654321ULL);
}

static int stream(int sk, int side, uint64_t records)
{
	unsigned char out[REC * 256], in[8192 + REC];
	uint64_t sent = 0, got = 0;
	size_t out_len = 0, out_off = 0, in_len = 0;
	bool eof = false, shut = false;

	fcntl(sk, F_SETFL, O_NONBLOCK);
	while (!eof || !shut) {
		struct pollfd p = { .fd = sk, .events = (eof ? 0 : POLLIN) | (shut ? 0 : POLLOUT) };

		if (poll(&p, 1, 10000) <= 0) {
			fprintf(stderr, "side %d: stalled at sent %llu got %llu\n", side,
				(unsigned long long)sent, (unsigned long long)got);
			return 1;
		}
		if (!shut && out_off == out_len) {
			out_len = out_off = 0;
			while (sent < records && out_len < sizeof(out)) {
				uint64_t v[2] = { sent, tag(sent, side) };

				memcpy(out + out_len, v, REC);
				out_len += REC;
				sent++;
			}
			if (!out_len) {
				shutdown(sk, SHUT_WR);
				shut = true;
			}
		}
		if (!shut && out_off < out_len) {
			ssize_t n = send(sk, out + out_off, out_len - out_off, MSG_NOSIGNAL);

			if (n < 0 && errno != EAGAIN) {
				fprintf(stderr, "side %d: send: %s\n", side, strerror(errno));
				return 1;
			}
			if (n > 0)
				out_off += n;
		}
		if (!eof && p.revents & (POLLIN | POLLHUP | POLLERR)) {
			ssize_t n = recv(sk, in + in_len, sizeof(in) - in_len, 0);
			size_t i;

			if (n < 0 && errno != EAGAIN) {
				fprintf(stderr, "side %d: recv: %s\n", side, strerror(errno));
				return 1;
			}
			if (n == 0)
				eof = true;
			if (n > 0)
				in_len += n;
			for (i = 0; i + REC <= in_len; i += REC) {
				uint64_t v[2];

				memcpy(v, in + i, REC);
				if (v[0] != got || v[1] != tag(got, !side)) {
					fprintf(stderr, "side %d: record %llu is %llu/%llx\n", side,
						(unsigned long long)got, (unsigned long long)v[0],
						(unsigned long long)v[1]);
					return 1;
				}
				got++;
			}
			memmove(in, in + i, in_len - i);
			in_len -= i;
			usleep(2000);	/* a slow reader: the kernel queues fill up */
		}
	}
	if (got != records || in_len) {
		fprintf(stderr, "side %d: EOF after %llu of %llu records (+%zu bytes)\n", side,
			(unsigned long long)got, (unsigned long long)records, in_len);
		return 1;
	}
	return 0;
}

/* small socket buffers: a writer cannot finish long before its reader (no FIN queued early) */
static int small_buffers(int sk)
{
	int size = 65536;

	return setsockopt(sk, SOL_SOCKET, SO_SNDBUF, &size, sizeof(size)) ||
	       setsockopt(sk, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
}

int main(int argc, char **argv)
{
	struct sockaddr_in a4 = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct sockaddr_in6 a6 = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT };
	bool v6 = argc > 3 && !strcmp(argv[3], "6");
	struct sockaddr *a = v6 ? (struct sockaddr *)&a6 : (struct sockaddr *)&a4;
	socklen_t alen = v6 ? sizeof(a6) : sizeof(a4);
	int family = v6 ? AF_INET6 : AF_INET;
	uint64_t records = argc > 2 ? strtoull(argv[2], NULL, 0) : 1 << 18;
	int ls, sk, status, r;
	pid_t child;
	FILE *f;

	if (argc < 2)
		return 2;
	ls = socket(family, SOCK_STREAM, 0);
	if (ls < 0 || small_buffers(ls) || bind(ls, a, alen) || listen(ls, 4) || getsockname(ls, a, &alen))
		return perror("listen"), 1;
	child = fork();
	if (child == 0) {
		close(ls);
		sk = socket(family, SOCK_STREAM, 0);
		if (sk < 0 || small_buffers(sk) || connect(sk, a, alen))
			return perror("connect"), 1;
		return stream(sk, 1, records);
	}
	sk = accept(ls, NULL, NULL);
	if (sk < 0)
		return perror("accept"), 1;
	f = fopen(argv[1], "w");
	if (!f)
		return 1;
	fprintf(f, "ready %d\n", ntohs(v6 ? a6.sin6_port : a4.sin_port));
	fclose(f);
	r = stream(sk, 0, records);
	if (waitpid(child, &status, 0) != child || !WIFEXITED(status) || WEXITSTATUS(status))
		r = 1;
	return r;
}
