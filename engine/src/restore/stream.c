/*
 * Reading the image: record headers and payloads, read exactly and in order.
 *
 * Nothing is read ahead: page data is read by the restored task itself from the same open
 * file description (restore/mm.c), so the driver's position must be the stream's. A
 * seekable image is read twice (a metadata pass that seeks over pages, then the restore);
 * a pipe once.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "restore.h"

#define PAYLOAD_MAX	(64U << 20)	/* no single non-page record is larger */
#define PIPE_SIZE	(1 << 20)	/* a larger input pipe: fewer, larger reads of pages */
#define PROGRESS_STEP	(64ULL << 20)

static const struct {
	uint32_t type;
	const char *name;
} names[] = {
	{ CKPT_HDR_HEADER, "HEADER" }, { CKPT_HDR_HEADER_ARCH, "HEADER_ARCH" },
	{ CKPT_HDR_CONTAINER, "CONTAINER" }, { CKPT_HDR_BUFFER, "BUFFER" },
	{ CKPT_HDR_STRING, "STRING" }, { CKPT_HDR_OBJREF, "OBJREF" },
	{ CKPT_HDR_LSM_INFO, "LSM_INFO" }, { CKPT_HDR_SECURITY, "SECURITY" },
	{ CKPT_HDR_PIDS, "PIDS" }, { CKPT_HDR_TREE, "TREE" }, { CKPT_HDR_TASK, "TASK" },
	{ CKPT_HDR_TASK_NS, "TASK_NS" }, { CKPT_HDR_TASK_OBJS, "TASK_OBJS" },
	{ CKPT_HDR_RESTART_BLOCK, "RESTART_BLOCK" }, { CKPT_HDR_THREAD, "THREAD" },
	{ CKPT_HDR_CPU, "CPU" }, { CKPT_HDR_NS, "NS" }, { CKPT_HDR_UTS_NS, "UTS_NS" },
	{ CKPT_HDR_IPC_NS, "IPC_NS" }, { CKPT_HDR_MNT_NS, "MNT_NS" },
	{ CKPT_HDR_CAPABILITIES, "CAPABILITIES" }, { CKPT_HDR_USER_NS, "USER_NS" },
	{ CKPT_HDR_CRED, "CRED" }, { CKPT_HDR_USER, "USER" }, { CKPT_HDR_GROUPINFO, "GROUPINFO" },
	{ CKPT_HDR_TASK_CREDS, "TASK_CREDS" }, { CKPT_HDR_CPU_FPU, "CPU_FPU" },
	{ CKPT_HDR_MM_CONTEXT_LDT, "MM_CONTEXT_LDT" }, { CKPT_HDR_FILE_TABLE, "FILE_TABLE" },
	{ CKPT_HDR_FILE_DESC, "FILE_DESC" }, { CKPT_HDR_FILE_NAME, "FILE_NAME" },
	{ CKPT_HDR_FILE, "FILE" }, { CKPT_HDR_PIPE_BUF, "PIPE_BUF" }, { CKPT_HDR_TTY, "TTY" },
	{ CKPT_HDR_TTY_LDISC, "TTY_LDISC" }, { CKPT_HDR_EPOLL_ITEMS, "EPOLL_ITEMS" },
	{ CKPT_HDR_MM, "MM" }, { CKPT_HDR_VMA, "VMA" }, { CKPT_HDR_PGARR, "PGARR" },
	{ CKPT_HDR_HPAGE, "HPAGE" }, { CKPT_HDR_MM_CONTEXT, "MM_CONTEXT" }, { CKPT_HDR_FS, "FS" },
	{ CKPT_HDR_IPC, "IPC" }, { CKPT_HDR_IPC_SHM, "IPC_SHM" }, { CKPT_HDR_IPC_MSG, "IPC_MSG" },
	{ CKPT_HDR_IPC_MSG_MSG, "IPC_MSG_MSG" }, { CKPT_HDR_IPC_SEM, "IPC_SEM" },
	{ CKPT_HDR_TASK_SEM_UNDO_LIST, "TASK_SEM_UNDO_LIST" },
	{ CKPT_HDR_TASK_SEM_UNDO, "TASK_SEM_UNDO" }, { CKPT_HDR_SIGHAND, "SIGHAND" },
	{ CKPT_HDR_SIGNAL, "SIGNAL" }, { CKPT_HDR_SIGNAL_TASK, "SIGNAL_TASK" },
	{ CKPT_HDR_SIGPENDING, "SIGPENDING" }, { CKPT_HDR_SOCKET, "SOCKET" },
	{ CKPT_HDR_SOCKET_QUEUE, "SOCKET_QUEUE" }, { CKPT_HDR_SOCKET_BUFFER, "SOCKET_BUFFER" },
	{ CKPT_HDR_SOCKET_FRAG, "SOCKET_FRAG" }, { CKPT_HDR_SOCKET_UNIX, "SOCKET_UNIX" },
	{ CKPT_HDR_SOCKET_INET, "SOCKET_INET" }, { CKPT_HDR_NET_NS, "NET_NS" },
	{ CKPT_HDR_NETDEV, "NETDEV" }, { CKPT_HDR_NETDEV_ADDR, "NETDEV_ADDR" },
	{ CKPT_HDR_EXT_INET, "EXT_INET" }, { CKPT_HDR_EXT_TCP, "EXT_TCP" },
	{ CKPT_HDR_TAIL, "TAIL" }, { CKPT_HDR_ERROR, "ERROR" },
	{ CKPT_HDR_EXT_FILE_STAT, "EXT_FILE_STAT" }, { CKPT_HDR_EXT_FILE_MEMFD, "EXT_FILE_MEMFD" },
	{ CKPT_HDR_EXT_FILE_GHOST, "EXT_FILE_GHOST" }, { CKPT_HDR_EXT_EXTENT, "EXT_EXTENT" },
	{ CKPT_HDR_EXT_CLOCKS, "EXT_CLOCKS" }, { CKPT_HDR_EXT_RSEQ, "EXT_RSEQ" },
	{ CKPT_HDR_EXT_FILE_SIGNALFD, "EXT_FILE_SIGNALFD" },
	{ CKPT_HDR_EXT_FILE_TIMERFD, "EXT_FILE_TIMERFD" },
	{ CKPT_HDR_EXT_FILE_INOTIFY, "EXT_FILE_INOTIFY" },
	{ CKPT_HDR_EXT_INOTIFY_WATCH, "EXT_INOTIFY_WATCH" },
};

const char *rec_name(uint32_t type)
{
	size_t i;

	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (names[i].type == type)
			return names[i].name;
	return "unknown";
}

/* the image is not what v23 says it is: a one-line reason, and exit 3 */
int rs_invalid(struct rstream *s, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	s->invalid = true;
	return pr_err("invalid image: %s", msg);
}

int rs_open(struct rstream *s, const char *path)
{
	struct stat st;

	memset(s, 0, sizeof(*s));
	if (!strcmp(path, "-"))
		s->fd = STDIN_FILENO;
	else if ((s->fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return pr_perror("open %s", path);
	if (fstat(s->fd, &st))
		return pr_perror("stat %s", path);
	s->seekable = S_ISREG(st.st_mode) && lseek(s->fd, 0, SEEK_CUR) == 0;
	if (S_ISFIFO(st.st_mode))
		fcntl(s->fd, F_SETPIPE_SZ, PIPE_SIZE);	/* best effort: pipe-max-size may be lower */
	return 0;
}

/* as the dumper reports it (image.c): the image bytes consumed so far */
void rs_progress(struct rstream *s, bool last)
{
	if (!s->progress || (!last && s->off < s->next_report))
		return;
	fprintf(stderr, "imgtools-engine: progress: %llu MiB restored%s\n",
		(unsigned long long)(s->off >> 20), last ? " (done)" : "");
	while (s->next_report <= s->off)
		s->next_report += PROGRESS_STEP;
}

/* up to len bytes (fewer only at the end of the image); -1 on an error or an interrupt */
static ssize_t read_upto(struct rstream *s, void *buf, size_t len)
{
	size_t got = 0;

	while (got < len) {
		ssize_t n = read(s->fd, (char *)buf + got, len - got);

		if (n < 0 && errno == EINTR && rst_stop_requested())
			return pr_err("interrupted");
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return pr_perror("read the image at offset %llu", (unsigned long long)s->off);
		if (n == 0)
			break;
		got += n;
		s->off += n;
	}
	return got;
}

int rs_read(struct rstream *s, void *buf, size_t len)
{
	ssize_t got = read_upto(s, buf, len);

	if (got < 0)
		return -1;
	if ((size_t)got < len)
		return rs_invalid(s, "the image ends at offset %llu inside the %s record at %llu",
				  (unsigned long long)s->off, rec_name(s->rec_type),
				  (unsigned long long)s->rec_off);
	return 0;
}

int rs_skip(struct rstream *s, uint64_t len)
{
	char buf[65536];

	if (s->seekable) {
		if (lseek(s->fd, len, SEEK_CUR) < 0)
			return pr_perror("seek in the image");
		s->off += len;
		return 0;
	}
	while (len) {
		size_t n = len > sizeof(buf) ? sizeof(buf) : len;

		if (rs_read(s, buf, n))
			return -1;
		len -= n;
	}
	return 0;
}

int rs_rewind(struct rstream *s, uint64_t off)
{
	if (lseek(s->fd, off, SEEK_SET) < 0)
		return pr_perror("seek in the image");
	s->off = off;
	s->peeked = false;
	return 0;
}

static int read_header(struct rstream *s, struct ckpt_hdr *h)
{
	ssize_t got = read_upto(s, h, sizeof(*h));

	if (got < 0)
		return -1;
	if (got == 0)
		return 1;
	if ((size_t)got < sizeof(*h))
		return rs_invalid(s, "the image ends inside a record header at offset %llu",
				  (unsigned long long)s->off);
	if (h->len < sizeof(*h))
		return rs_invalid(s, "record at offset %llu: length %u is shorter than its header",
				  (unsigned long long)s->off - sizeof(*h), h->len);
	return 0;
}

int rs_peek(struct rstream *s, struct ckpt_hdr *h)
{
	int r;

	if (!s->peeked) {
		r = read_header(s, &s->peek);
		if (r)
			return r;
		s->peeked = true;
	}
	*h = s->peek;
	return 0;
}

int rs_next(struct rstream *s, struct ckpt_hdr *h)
{
	int r = rs_peek(s, h);

	if (r)
		return r;
	s->peeked = false;
	s->rec_off = s->off - sizeof(*h);
	s->rec_type = h->type;
	return 0;
}

/* the payload of h (already consumed) into buf: at least min, at most max bytes, rest zeroed */
int rs_payload(struct rstream *s, const struct ckpt_hdr *h, void *buf, size_t min, size_t max)
{
	size_t len = h->len - sizeof(*h);

	if (len < min || len > max)
		return rs_invalid(s, "%s record at offset %llu: payload of %zu bytes, expected %zu..%zu",
			      rec_name(h->type), (unsigned long long)s->rec_off, len, min, max);
	memset((char *)buf + len, 0, max - len);
	return rs_read(s, buf, len);
}

/* a fixed-size record (struct ckpt_hdr_X, header first): its payload after the header */
int rs_record(struct rstream *s, const struct ckpt_hdr *h, void *rec, size_t size)
{
	memcpy(rec, h, sizeof(*h));
	return rs_payload(s, h, (char *)rec + sizeof(*h), size - sizeof(*h), size - sizeof(*h));
}

void *rs_payload_alloc(struct rstream *s, const struct ckpt_hdr *h, size_t min, size_t max)
{
	size_t len = h->len - sizeof(*h);
	void *buf;

	if (max > PAYLOAD_MAX)
		max = PAYLOAD_MAX;
	if (len < min || len > max) {
		rs_invalid(s, "%s record at offset %llu: payload of %zu bytes, expected %zu..%zu",
		       rec_name(h->type), (unsigned long long)s->rec_off, len, min, max);
		return NULL;
	}
	buf = calloc(1, len + 1);	/* + 1: strings are NUL-terminated even if the image's is not */
	if (!buf) {
		pr_perror("record of %zu bytes", len);
		return NULL;
	}
	if (rs_read(s, buf, len)) {
		free(buf);
		return NULL;
	}
	return buf;
}

/* the next record, which must be of type */
int rs_expect(struct rstream *s, uint32_t type, struct ckpt_hdr *h)
{
	uint64_t at = s->off;
	int r = rs_next(s, h);

	if (r > 0)
		return rs_invalid(s, "the image ends at offset %llu where a %s record was expected",
			      (unsigned long long)at, rec_name(type));
	if (r)
		return -1;
	if (h->type != type)
		return rs_invalid(s, "record at offset %llu is %s (type %u), expected %s",
			      (unsigned long long)s->rec_off, rec_name(h->type), h->type,
			      rec_name(type));
	return 0;
}
