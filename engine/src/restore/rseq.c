/*
 * rseq on restore: EXT_RSEQ names the area a thread had registered (glibc's, in its TLS);
 * the release registers it again by an injected rseq(2) in that thread, once its memory is
 * in place, so the kernel keeps the area's cpu_id current and sched_getcpu() is right again.
 * The mirror of rseq.c. (The fork's own area was unregistered when the process was emptied.)
 */
#include <string.h>
#include <sys/syscall.h>

#include "restore.h"

int restore_rseq_rec(struct rctx *c, const struct ckpt_hdr *h)
{
	struct rtask *t = cur_task(c);
	struct ckpt_hdr_ext_rseq r;

	if (!t || rs_record(&c->in, h, &r, sizeof(r)))
		return -1;
	if (!r.rseq || r.rseq & 31 || r.rseq_len < 32 || r.rseq_len > 4096)
		return rs_invalid(&c->in, "EXT_RSEQ at offset %llu: area %#llx of %u bytes",
				  (unsigned long long)c->in.rec_off, (unsigned long long)r.rseq,
				  r.rseq_len);
	t->rseq = r;
	return 0;
}

int release_rseq(struct rctx *c, struct rtask *t)
{
	long r;

	if (!t->rseq.rseq || t->zombie || t->exited)
		return 0;
	r = rinj_syscall(c, t, SYS_rseq, t->rseq.rseq, t->rseq.rseq_len, 0, t->rseq.signature, 0, 0);
	if (r == INFECT_FAILED)
		return -1;
	if (r < 0)
		return rst_refuse(c, "pid %d: register its rseq area at %#llx: %s", t->pid,
				  (unsigned long long)t->rseq.rseq, strerror(-r));
	return 0;
}
