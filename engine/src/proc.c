/* Error messages and /proc parsing shared by the subsystems. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine.h"

/* the last message is also written into the image as the ERROR record of a failed dump */
static char last_msg[512];

static int vreport(const char *fmt, va_list ap, int err)
{
	int n = vsnprintf(last_msg, sizeof(last_msg), fmt, ap);

	if (err && n >= 0 && (size_t)n < sizeof(last_msg))
		snprintf(last_msg + n, sizeof(last_msg) - n, ": %s", strerror(err));
	fprintf(stderr, "imgtools-engine: %s\n", last_msg);
	return -1;
}

int pr_err(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vreport(fmt, ap, 0);
	va_end(ap);
	return -1;
}

int pr_perror(const char *fmt, ...)
{
	int err = errno;
	va_list ap;

	va_start(ap, fmt);
	vreport(fmt, ap, err);
	va_end(ap);
	errno = err;
	return -1;
}

const char *last_error(void)
{
	return last_msg;
}

/* Whole file /proc/<pid>/<name> (/proc/<name> for pid 0), NUL-terminated; NULL with errno set. */
char *proc_read(pid_t pid, const char *name, size_t *len)
{
	char path[64];
	size_t cap = 4096, used = 0;
	char *buf = NULL;
	int fd;

	if (pid)
		snprintf(path, sizeof(path), "/proc/%d/%s", pid, name);
	else
		snprintf(path, sizeof(path), "/proc/%s", name);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	for (;;) {
		char *nbuf = realloc(buf, cap + 1);
		ssize_t n;

		if (!nbuf)
			goto fail;
		buf = nbuf;
		n = read(fd, buf + used, cap - used);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			goto fail;
		}
		if (n == 0)
			break;
		used += n;
		if (used == cap)
			cap *= 2;
	}
	close(fd);
	buf[used] = 0;
	if (len)
		*len = used;
	return buf;
fail:
	free(buf);
	close(fd);
	return NULL;
}

int proc_readlink(pid_t pid, const char *name, char *buf, size_t size)
{
	char path[64];
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/%d/%s", pid, name);
	n = readlink(path, buf, size - 1);
	if (n < 0)
		return -1;
	buf[n] = 0;
	return 0;
}

/* Value of a "Key:\tvalue" line of /proc/<pid>/status, or NULL. */
const char *status_field(const char *status, const char *key)
{
	size_t klen = strlen(key);
	const char *p = status;

	while (p && *p) {
		if (!strncmp(p, key, klen) && p[klen] == ':') {
			p += klen + 1;
			return p + strspn(p, " \t");
		}
		p = strchr(p, '\n');
		if (p)
			p++;
	}
	return NULL;
}

uint64_t status_hex(const char *status, const char *key)
{
	const char *v = status_field(status, key);

	return v ? strtoull(v, NULL, 16) : 0;
}

int proc_stat(pid_t pid, struct proc_stat *st)
{
	char *buf = proc_read(pid, "stat", NULL);
	unsigned long long f[53] = { 0 };
	char *p;
	int i;

	if (!buf)
		return -1;
	/* comm may contain spaces and parentheses: fields resume after the last ')' */
	p = strrchr(buf, ')');
	if (!p || p[1] != ' ' || !p[2]) {
		free(buf);
		errno = EINVAL;
		return -1;
	}
	st->state = p[2];
	p += 3;
	for (i = 4; i <= 52 && *p; i++) {
		f[i] = (unsigned long long)strtoll(p, &p, 10);
		if (*p == ' ')
			p++;
	}
	free(buf);
	st->ppid = f[4];
	st->pgid = f[5];
	st->sid = f[6];
	st->tty_nr = f[7];
	st->tpgid = f[8];
	st->flags = f[9];
	st->start_code = f[26];
	st->end_code = f[27];
	st->start_stack = f[28];
	st->exit_signal = f[38];
	st->start_data = f[45];
	st->end_data = f[46];
	st->start_brk = f[47];
	st->arg_start = f[48];
	st->arg_end = f[49];
	st->env_start = f[50];
	st->env_end = f[51];
	st->exit_code = f[52];
	st->nice = (int)f[19];
	st->rt_priority = f[40];
	st->policy = f[41];
	return 0;
}

/*
 * Resource limits of a process from /proc/PID/limits (prlimit(2) on another process
 * needs CAP_SYS_RESOURCE unless the uids match, which root lacks in many containers).
 * One line per RLIMIT_* in numeric order after the header; the kernel prints the name
 * in 25 columns, then the soft and hard values ("unlimited" is RLIM_INFINITY).
 */
int proc_limits(pid_t pid, struct ckpt_rlimit *rlim, int n)
{
	char *buf = proc_read(pid, "limits", NULL), *line;
	int i = -1;

	if (!buf)
		return -1;
	for (line = buf; *line && i < n; i++) {
		char *next = line + strcspn(line, "\n");
		char soft[32], hard[32];

		if (*next)
			*next++ = 0;
		if (i >= 0) {
			if (strlen(line) < 26 || sscanf(line + 26, "%31s %31s", soft, hard) != 2)
				break;
			rlim[i].rlim_cur = strcmp(soft, "unlimited") ? strtoull(soft, NULL, 10) : ~0ULL;
			rlim[i].rlim_max = strcmp(hard, "unlimited") ? strtoull(hard, NULL, 10) : ~0ULL;
		}
		line = next;
	}
	free(buf);
	if (i != n) {
		errno = EINVAL;
		return -1;
	}
	return 0;
}
