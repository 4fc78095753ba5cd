/* The image as a whole: head, pids and tree, one section per task, tail. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>

#include "engine.h"

/*
 * Record state the image cannot hold: an ERROR record where it was met, a warning on
 * stderr, and the dump ends with EXIT_PARTIAL unless --allow-partial.
 */
int ckpt_unsupported(struct ctx *c, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fprintf(stderr, "imgtools-engine: not saved: %s\n", msg);
	c->nr_unsupported++;
	return write_error(&c->img, msg);
}

/* extension records may be written (not --strict); TEMPORARY copy, the files branch owns it */
bool ckpt_ext(struct ctx *c)
{
	return !c->strict;
}

static int dump_uts_buffer(struct ctx *c, const char *s)
{
	char buf[CKPT_NEW_UTS_LEN + 1] = { 0 };

	memcpy(buf, s, strnlen(s, CKPT_NEW_UTS_LEN));
	return write_buffer(&c->img, CKPT_HDR_BUFFER, buf, sizeof(buf));
}

/* HEADER | BUFFER release | BUFFER version | BUFFER machine | HEADER_ARCH | CONTAINER */
static int dump_head(struct ctx *c)
{
	struct ckpt_hdr_header h = {
		.magic = CHECKPOINT_MAGIC_HEAD,
		.arch_id = CKPT_ARCH_X86_64,
		.major = CKPT_KERNEL_MAJOR,
		.minor = CKPT_KERNEL_MINOR,
		.patch = CKPT_KERNEL_PATCH,
		.rev = CHECKPOINT_VERSION,
		.constants = {
			.task_comm_len = CKPT_TASK_COMM_LEN,
			.at_vector_size = CKPT_AT_VECTOR_SIZE,
			.signal_nsig = CKPT_ARCH_NSIG,
			.uts_sysname_len = CKPT_NEW_UTS_LEN + 1,
			.uts_nodename_len = CKPT_NEW_UTS_LEN + 1,
			.uts_release_len = CKPT_NEW_UTS_LEN + 1,
			.uts_version_len = CKPT_NEW_UTS_LEN + 1,
			.uts_machine_len = CKPT_NEW_UTS_LEN + 1,
			.uts_domainname_len = CKPT_NEW_UTS_LEN + 1,
			.rlimit_nlimits = CKPT_RLIM_NLIMITS,
			.n_tty_buf_size = CKPT_N_TTY_BUF_SIZE,
			.tty_termios_nccs = CKPT_TTY_NCCS,
		},
		.time = time(NULL),
		.uflags = CHECKPOINT_SUBTREE,
	};
	struct ckpt_hdr_container container;
	struct utsname u;

	if (uname(&u))
		return pr_perror("uname");
	if (write_obj(&c->img, CKPT_HDR_HEADER, &h, sizeof(h)) ||
	    dump_uts_buffer(c, u.release) || dump_uts_buffer(c, u.version) ||
	    dump_uts_buffer(c, u.machine) || arch_dump_header(c))
		return -1;
	return write_obj(&c->img, CKPT_HDR_CONTAINER, &container, sizeof(container));
}

int checkpoint(struct ctx *c)
{
	struct ckpt_hdr_tail tail = { .magic = CHECKPOINT_MAGIC_TAIL };
	int i;

	if (dump_head(c) || dump_tree(c))
		return -1;
	for (i = 0; i < c->nr_tasks; i++)
		if (dump_task(c, &c->tasks[i]) || check_interrupted())
			return -1;
	if (inet_dump_end(c))
		return -1;
	return write_obj(&c->img, CKPT_HDR_TAIL, &tail, sizeof(tail));
}
