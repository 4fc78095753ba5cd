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

/*
 * Whether an imgtools extension record (types 8000-8999) may be written. Under --strict it
 * may not: a caller with state only an extension holds writes an ERROR record instead
 * (ckpt_unsupported, saying what would have been saved).
 */
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

static int64_t clock_ns(clockid_t clk)
{
	struct timespec ts;

	clock_gettime(clk, &ts);
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/*
 * The clocks of the frozen tree (the tree is frozen before the head is written): a restore
 * in a new time namespace lets CLOCK_MONOTONIC and CLOCK_BOOTTIME go on from these. Not
 * state of the tree itself, so --strict just leaves it out (no ERROR record).
 */
static int dump_clocks(struct ctx *c)
{
	struct ckpt_hdr_ext_clocks h = {
		.realtime_ns = clock_ns(CLOCK_REALTIME),
		.monotonic_ns = clock_ns(CLOCK_MONOTONIC),
		.boottime_ns = clock_ns(CLOCK_BOOTTIME),
	};

	if (c->strict)
		return 0;
	return write_obj(&c->img, CKPT_HDR_EXT_CLOCKS, &h, sizeof(h));
}

/* HEADER | BUFFER release, version, machine | HEADER_ARCH | [EXT_CLOCKS] | CONTAINER */
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

	if (ckpt_ext(c))
		h.uflags |= IMGTOOLS_UFLAG_EXT;
	if (uname(&u))
		return pr_perror("uname");
	if (write_obj(&c->img, CKPT_HDR_HEADER, &h, sizeof(h)) ||
	    dump_uts_buffer(c, u.release) || dump_uts_buffer(c, u.version) ||
	    dump_uts_buffer(c, u.machine) || arch_dump_header(c) || dump_clocks(c))
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
