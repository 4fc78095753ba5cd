/*
 * The clocks on restore: EXT_CLOCKS holds CLOCK_MONOTONIC and CLOCK_BOOTTIME of the frozen
 * tree. In a new pid namespace (--pidns, the default) the tree also gets a new time
 * namespace whose offsets make both clocks go on from those values, so a restored program
 * sees the time it was frozen for as not having passed (only the restore's own seconds),
 * and its timeouts, deadlines and CLOCK_MONOTONIC timerfds stay right. The driver unshares
 * it for its children before it creates the first one (the offsets can only be written
 * while no process is in the namespace); the driver itself stays in its own. --no-pidns
 * keeps the caller's clocks (a jump by the downtime), as does an image without EXT_CLOCKS.
 */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "restore.h"

#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif

int restore_clocks_rec(struct rctx *c, const struct ckpt_hdr *h)
{
	if (!c->ext)
		return rs_invalid(&c->in, "EXT_CLOCKS at offset %llu in an image whose header does "
				  "not allow extension records", (unsigned long long)c->in.rec_off);
	if (rs_record(&c->in, h, &c->clocks, sizeof(c->clocks)))
		return -1;
	if (c->clocks.monotonic_ns < 0 || c->clocks.boottime_ns < 0)
		return rs_invalid(&c->in, "EXT_CLOCKS: negative monotonic or boot time");
	c->have_clocks = true;
	return 0;
}

/* "<clock> <secs> <nanosecs>" with 0 <= nanosecs < 1e9, for an offset of off ns */
static int offset_line(char *buf, size_t size, const char *clock, int64_t off)
{
	int64_t sec = off / 1000000000LL, nsec = off % 1000000000LL;

	if (nsec < 0) {
		nsec += 1000000000LL;
		sec--;
	}
	return snprintf(buf, size, "%s %lld %lld\n", clock, (long long)sec, (long long)nsec);
}

int enter_time_ns(struct rctx *c)
{
	struct timespec mono, boot;
	char buf[128];
	int fd, n;

	if (!c->have_clocks)
		return 0;
	if (unshare(CLONE_NEWTIME)) {
		fprintf(stderr, "imgtools-engine: note: no time namespace (%s): CLOCK_MONOTONIC "
			"and CLOCK_BOOTTIME jump by the time since the dump\n", strerror(errno));
		return 0;
	}
	clock_gettime(CLOCK_MONOTONIC, &mono);
	clock_gettime(CLOCK_BOOTTIME, &boot);
	n = offset_line(buf, sizeof(buf), "monotonic",
			c->clocks.monotonic_ns - (mono.tv_sec * 1000000000LL + mono.tv_nsec));
	n += offset_line(buf + n, sizeof(buf) - n, "boottime",
			 c->clocks.boottime_ns - (boot.tv_sec * 1000000000LL + boot.tv_nsec));
	fd = open("/proc/self/timens_offsets", O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return pr_perror("open /proc/self/timens_offsets");
	if (write(fd, buf, n) != n) {
		pr_perror("set the time namespace's offsets");
		close(fd);
		return -1;
	}
	close(fd);
	return 0;
}
