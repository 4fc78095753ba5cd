/* x86_64 per-task state and syscall injection context. */
#ifndef ARCH_H
#define ARCH_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/user.h>

#define INFECT_SCRATCH 128	/* tracee bytes borrowed for syscall results (a siginfo fits) */
#define INFECT_MAX_HELD 2	/* SIGSTOPs dequeued while injecting: one per queue */

struct arch_task {
	struct user_regs_struct regs;
	void *xstate;
	unsigned int xstate_len;
	uint8_t tls[3 * 8];	/* GDT TLS descriptors, raw desc_struct */
};

struct infect {
	pid_t tid;
	struct user_regs_struct saved;
	uint64_t saved_mask;
	uint64_t syscall_ip;	/* address of a "syscall" instruction in the tracee */
	uint64_t scratch;	/* tracee address of INFECT_SCRATCH borrowed bytes */
	uint8_t saved_scratch[INFECT_SCRATCH];
	pid_t tgid;
	uint64_t private_pending;	/* SigPnd at the start: which queue a held signal left */
	int nr_held;
	struct {
		bool shared;
		uint8_t siginfo[128];	/* as PTRACE_GETSIGINFO returns it */
	} held[INFECT_MAX_HELD];	/* unblockable signals dequeued under us, re-queued at the end */
};

#endif /* ARCH_H */
