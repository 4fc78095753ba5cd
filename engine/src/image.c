/*
 * Buffered sequential image writer. Small records collect in a 1 MiB buffer; a large
 * payload (page batches) goes out in one writev together with whatever is buffered,
 * so page data is never copied twice and each PGARR batch costs one syscall.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include "engine.h"

#define IMAGE_BUF	(1 << 20)
#define DIRECT_MIN	(64 << 10)	/* payloads this big bypass the buffer */
#define PROGRESS_STEP	(256ULL << 20)
#define LAST_WRITE_WAIT_MS 1000	/* for the output once the dump was interrupted */

int image_open(struct image *img, const char *path, bool progress)
{
	memset(img, 0, sizeof(*img));
	img->progress = progress;
	img->next_report = PROGRESS_STEP;
	img->buf = malloc(IMAGE_BUF);
	if (!img->buf)
		return pr_perror("image buffer");
	if (!strcmp(path, "-")) {
		img->fd = STDOUT_FILENO;
		return 0;
	}
	img->fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (img->fd < 0)
		return pr_perror("open %s", path);
	return 0;
}

static void report_progress(struct image *img, bool last)
{
	if (!img->progress || (!last && img->offset < img->next_report))
		return;
	fprintf(stderr, "imgtools-engine: progress: %llu MiB written%s\n",
		(unsigned long long)(img->offset >> 20), last ? " (done)" : "");
	while (img->next_report <= img->offset)
		img->next_report += PROGRESS_STEP;
}

static volatile sig_atomic_t last_writes_over;

static void on_last_write_alarm(int sig)
{
	(void)sig;
	last_writes_over = 1;
}

/*
 * Once the dump is interrupted, what is still written (the batch under way, the ERROR
 * record) gets LAST_WRITE_WAIT_MS in all: poll alone does not bound a writev larger than
 * the room a pipe has left, so a one-shot SIGALRM (no SA_RESTART) cuts it short. 0 while
 * that time lasts.
 */
static int last_write_time(void)
{
	static bool armed;

	if (!armed) {
		struct sigaction sa = { .sa_handler = on_last_write_alarm };
		struct itimerval once = { .it_value = { LAST_WRITE_WAIT_MS / 1000,
							(LAST_WRITE_WAIT_MS % 1000) * 1000 } };

		armed = true;
		sigemptyset(&sa.sa_mask);
		if (sigaction(SIGALRM, &sa, NULL) || setitimer(ITIMER_REAL, &once, NULL))
			last_writes_over = 1;
	}
	return last_writes_over ? -1 : 0;
}

/* writev the whole vector, resuming after short writes and EINTR */
static int full_writev(struct image *img, struct iovec *iov, int iovcnt)
{
	while (iovcnt > 0) {
		struct pollfd pfd = { .fd = img->fd, .events = POLLOUT };
		ssize_t n;

		/* interrupted (the ERROR record): a reader that stopped reading cannot keep us */
		if (interrupted && (last_write_time() || poll(&pfd, 1, LAST_WRITE_WAIT_MS) != 1 ||
				    last_writes_over)) {
			errno = EAGAIN;
			return pr_perror("write image");
		}
		n = writev(img->fd, iov, iovcnt > IOV_MAX ? IOV_MAX : iovcnt);

		if (n < 0) {
			if (errno == EINTR && !interrupted)
				continue;
			return pr_perror("write image");
		}
		img->offset += n;
		if (check_interrupted())
			return -1;	/* a slow reader must not keep the tasks frozen */
		while (iovcnt > 0 && (size_t)n >= iov->iov_len) {
			n -= iov->iov_len;
			iov++;
			iovcnt--;
		}
		if (iovcnt > 0) {
			iov->iov_base = (char *)iov->iov_base + n;
			iov->iov_len -= n;
		}
	}
	report_progress(img, false);
	return 0;
}

static int flush(struct image *img)
{
	struct iovec iov = { img->buf, img->used };

	img->used = 0;
	return full_writev(img, &iov, 1);
}

int image_writev(struct image *img, const struct iovec *iov, int iovcnt)
{
	size_t total = 0;
	int i;

	for (i = 0; i < iovcnt; i++)
		total += iov[i].iov_len;
	if (total < DIRECT_MIN) {
		if (img->used + total > IMAGE_BUF && flush(img))
			return -1;
		for (i = 0; i < iovcnt; i++) {
			memcpy(img->buf + img->used, iov[i].iov_base, iov[i].iov_len);
			img->used += iov[i].iov_len;
		}
		return 0;
	} else {
		struct iovec vec[iovcnt + 1];

		vec[0] = (struct iovec){ img->buf, img->used };
		memcpy(vec + 1, iov, iovcnt * sizeof(*iov));
		img->used = 0;
		return full_writev(img, vec, iovcnt + 1);
	}
}

int image_write(struct image *img, const void *data, size_t len)
{
	struct iovec iov = { (void *)data, len };

	return image_writev(img, &iov, 1);
}

int image_close(struct image *img)
{
	int ret = flush(img);

	report_progress(img, true);
	if (img->fd != STDOUT_FILENO && close(img->fd) && !ret)
		ret = pr_perror("close image");
	free(img->buf);
	img->buf = NULL;
	return ret;
}

/* rec starts with a struct ckpt_hdr, filled in here; size is the whole record */
int write_obj(struct image *img, uint32_t type, void *rec, size_t size)
{
	struct ckpt_hdr *h = rec;

	h->type = type;
	h->len = size;
	return image_write(img, rec, size);
}

/* header of a record whose payload_len bytes follow as raw writes */
int write_obj_header(struct image *img, uint32_t type, size_t payload_len)
{
	struct ckpt_hdr h = { .type = type, .len = sizeof(h) + payload_len };

	if (payload_len > UINT32_MAX - sizeof(h))
		return pr_err("record of type %u too large (%zu bytes)", type, payload_len);
	return image_write(img, &h, sizeof(h));
}

int write_buffer(struct image *img, uint32_t type, const void *data, size_t len)
{
	struct ckpt_hdr h = { .type = type, .len = sizeof(h) + len };
	struct iovec iov[2] = { { &h, sizeof(h) }, { (void *)data, len } };

	return image_writev(img, iov, 2);
}

int write_objref(struct image *img, uint32_t objtype, int objref)
{
	struct ckpt_hdr_objref h = { .objtype = objtype, .objref = objref };

	return write_obj(img, CKPT_HDR_OBJREF, &h, sizeof(h));
}

/* ERROR (header only), then a STRING "\0<msg>\0" as the kernel wrote it */
int write_error(struct image *img, const char *msg)
{
	size_t len = strlen(msg);
	char *s = malloc(len + 2);
	int ret;

	if (!s)
		return pr_perror("error record");
	s[0] = 0;
	memcpy(s + 1, msg, len + 1);
	ret = write_obj_header(img, CKPT_HDR_ERROR, 0);
	if (!ret)
		ret = write_buffer(img, CKPT_HDR_STRING, s, len + 2);
	free(s);
	return ret;
}
