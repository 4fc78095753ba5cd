/*
 * A thread's restartable-sequences registration (glibc 2.35+ registers one in every
 * thread): PTRACE_GET_RSEQ_CONFIGURATION of the stopped thread, written as EXT_RSEQ after
 * its SIGNAL_TASK. v23 has no record for it: `--strict` writes an ERROR record instead.
 */
#include <stdio.h>
#include <sys/ptrace.h>

#include "engine.h"

int dump_rseq(struct ctx *c, struct task *t)
{
	struct rseq_configuration_k conf = { 0 };
	struct ckpt_hdr_ext_rseq h;
	long n = ptrace(PTRACE_GET_RSEQ_CONFIGURATION_K, t->tid, sizeof(conf), &conf);

	if (n < 0)
		return pr_perror("pid %d: PTRACE_GET_RSEQ_CONFIGURATION", t->tid);
	if (!conf.rseq_abi_pointer)
		return 0;	/* none registered */
	if (c->strict)
		return ckpt_unsupported(c, "pid %d: rseq area at %#llx (signature %#x) not saved "
					"(--strict: no extension record)", t->tid,
					(unsigned long long)conf.rseq_abi_pointer, conf.signature);
	h = (struct ckpt_hdr_ext_rseq){
		.rseq = conf.rseq_abi_pointer,
		.rseq_len = conf.rseq_abi_size,
		.signature = conf.signature,
	};
	return write_obj(&c->img, CKPT_HDR_EXT_RSEQ, &h, sizeof(h));
}
