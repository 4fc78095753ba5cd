/*
 * x86_64 registers on restore: HEADER_ARCH, THREAD (TLS), CPU and CPU_FPU, and putting them
 * into a thread at the release.
 *
 * The XSAVE area is relocated feature by feature. The standard (non-compacted) format puts
 * each feature at an offset CPUID leaf 0xD reports, and the offsets differ between CPUs:
 * AMD Zen has no MPX, so AVX-512 state sits 256 bytes lower than on Intel. v23 records only
 * the size of the dump machine's area (HEADER_ARCH.xstate_size), so the dump layout is
 * inferred from it: the running CPU's own layout when the size is the same, the AMD layout
 * for 2,432/2,440 bytes, the Intel layout for the sizes Intel's feature sets give; an image
 * whose features need a layout not known here, or a feature this CPU lacks (XCR0), is
 * refused. AMX state needs ARCH_REQ_XCOMP_PERM in the task first.
 */
#include <asm/ldt.h>
#include <cpuid.h>
#include <elf.h>
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/uio.h>

#include "restore.h"

#define FXSAVE_SIZE	512
#define XSAVE_HDR	512		/* xstate_bv, xcomp_bv, reserved: 64 bytes */
#define XSTATE_MAX	(64 << 10)
#define NR_FEATURES	19		/* up to XTILEDATA (18) */
#define XFEATURE_AMX	((1ULL << 17) | (1ULL << 18))
#define GDT_ENTRY_TLS_MIN 12
#define ARCH_REQ_XCOMP_PERM 0x1023
#define XFEATURE_XTILEDATA 18

#define ERESTARTSYS		512
#define ERESTARTNOINTR		513
#define ERESTARTNOHAND		514
#define ERESTART_RESTARTBLOCK	516

/* standard-format offsets of the user features, by vendor (0: no such feature) */
static const uint32_t intel_offsets[NR_FEATURES] = {
	[2] = 576, [3] = 960, [4] = 1024, [5] = 1088, [6] = 1152, [7] = 1664, [9] = 2688,
	[17] = 2752, [18] = 2816,
};
static const uint32_t amd_offsets[NR_FEATURES] = {
	[2] = 576, [5] = 832, [6] = 896, [7] = 1408, [9] = 2432,
};
/* feature sizes are architectural, the same on every CPU */
static const uint32_t feature_size[NR_FEATURES] = {
	[2] = 256, [3] = 64, [4] = 64, [5] = 64, [6] = 512, [7] = 1024, [9] = 8,
	[17] = 64, [18] = 8192,
};

static uint32_t running_offset[NR_FEATURES];
static uint64_t running_xcr0;
static const uint32_t *dump_offsets;
static uint32_t identity_offsets[NR_FEATURES];

uint64_t rarch_xfeatures(void)
{
	unsigned int a, b, cx, d, lo, hi;
	int i;

	if (running_xcr0)
		return running_xcr0;
	if (!__get_cpuid(1, &a, &b, &cx, &d) || !(cx & bit_OSXSAVE))
		return running_xcr0 = 3;	/* x87 and SSE only: FXSAVE */
	__asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
	running_xcr0 = (uint64_t)hi << 32 | lo;
	for (i = 2; i < NR_FEATURES; i++) {
		if (running_xcr0 & (1ULL << i)) {
			__cpuid_count(0xd, i, a, b, cx, d);
			running_offset[i] = b;
		}
	}
	return running_xcr0;
}

static unsigned int running_size(void)
{
	unsigned int a, b, cx, d;

	if (rarch_xfeatures() == 3)
		return FXSAVE_SIZE;
	__cpuid_count(0xd, 0, a, b, cx, d);
	return b;
}

int rarch_check_header(struct rctx *c, const struct ckpt_hdr_header_arch *h)
{
	c->has_xsave = h->has_xsave;
	c->xstate_size = h->xstate_size;
	rarch_xfeatures();
	if (!h->has_xsave) {
		dump_offsets = NULL;
		return 0;
	}
	if (h->xstate_size < FXSAVE_SIZE + 64)
		return rst_refuse(c, "HEADER_ARCH: an XSAVE area of %u bytes is not possible",
				  h->xstate_size);
	if (h->xstate_size == running_size()) {
		memcpy(identity_offsets, running_offset, sizeof(identity_offsets));
		dump_offsets = identity_offsets;
	} else if (h->xstate_size == 2432 || h->xstate_size == 2440) {
		dump_offsets = amd_offsets;
	} else if (h->xstate_size == 832 || h->xstate_size == 1088 || h->xstate_size == 2696 ||
		   h->xstate_size == 2752 || h->xstate_size == 11008) {
		dump_offsets = intel_offsets;
	} else {
		dump_offsets = NULL;	/* only x87/SSE/AVX (the same everywhere) can be placed */
	}
	return 0;
}

int rarch_restore_thread(struct rctx *c, struct rtask *t, const void *payload, size_t len)
{
	const struct ckpt_hdr_thread *h = payload;

	(void)c;
	if (len < sizeof(*h) - sizeof(struct ckpt_hdr))
		return pr_err("THREAD record too short");
	if (h->sizeof_tls_array > sizeof(t->tls) ||
	    len < sizeof(*h) - sizeof(struct ckpt_hdr) + h->sizeof_tls_array)
		return rst_refuse(c, "pid %d: THREAD holds %u bytes of TLS descriptors", t->pid,
				  h->sizeof_tls_array);
	memset(t->tls, 0, sizeof(t->tls));
	memcpy(t->tls, (const char *)payload + sizeof(*h) - sizeof(struct ckpt_hdr),
	       h->sizeof_tls_array);
	return 0;
}

/* CKPT_X86_SEG_* -> selector; -1 for what cannot be restored */
static long selector(uint16_t enc)
{
	if (enc == CKPT_X86_SEG_NULL)
		return 0;
	if (enc == CKPT_X86_SEG_USER64_CS)
		return 0x33;
	if (enc == CKPT_X86_SEG_USER64_DS || enc == CKPT_X86_SEG_USER32_DS)
		return 0x2b;
	if (enc == CKPT_X86_SEG_USER32_CS)
		return 0x23;
	if ((enc & 0xc000) == CKPT_X86_SEG_TLS && (enc & 0x3fff) < CKPT_TLS_ENTRIES)
		return ((GDT_ENTRY_TLS_MIN + (enc & 0x3fff)) << 3) | 3;
	return -1;	/* LDT selectors: the image holds no LDT */
}

int rarch_restore_cpu(struct rctx *c, struct rtask *t, const struct ckpt_hdr *h)
{
	struct ckpt_hdr_cpu *cpu = &t->cpu;

	if (rs_record(&c->in, h, cpu, sizeof(*cpu)))
		return -1;
	if (selector(cpu->cs) < 0 || selector(cpu->ss) < 0 || selector(cpu->ds) < 0 ||
	    selector(cpu->es) < 0 || selector(cpu->fsindex) < 0 || selector(cpu->gsindex) < 0)
		return rst_refuse(c, "pid %d: a segment selector refers to an LDT, which the image "
				  "does not hold", t->pid);
	if (cpu->cs == CKPT_X86_SEG_USER32_CS)
		return rst_refuse(c, "pid %d: 32-bit code is not restored", t->pid);
	t->have_cpu = true;
	return 0;
}

int rarch_restore_fpu(struct rctx *c, struct rtask *t, const struct ckpt_hdr *h)
{
	size_t len = h->len - sizeof(*h);
	uint64_t bv = 0, missing;
	int i;

	free(t->xstate);
	t->xstate = rs_payload_alloc(&c->in, h, FXSAVE_SIZE, XSTATE_MAX);
	if (!t->xstate)
		return -1;
	t->xstate_len = len;
	if (!c->has_xsave)
		return 0;
	if (len < XSAVE_HDR + 16)
		return rst_refuse(c, "pid %d: CPU_FPU of %zu bytes has no XSAVE header", t->pid, len);
	memcpy(&bv, (char *)t->xstate + XSAVE_HDR, sizeof(bv));
	missing = bv & ~rarch_xfeatures();
	if (missing)
		return rst_refuse(c, "pid %d: its FPU state uses XSAVE features %#llx this CPU does "
				  "not have (XCR0 %#llx)", t->pid, (unsigned long long)missing,
				  (unsigned long long)rarch_xfeatures());
	for (i = 2; i < NR_FEATURES; i++) {
		uint64_t bit = 1ULL << i;

		if (!(bv & bit))
			continue;
		if (!feature_size[i] || (i > 2 && (!dump_offsets || !dump_offsets[i])))
			return rst_refuse(c, "pid %d: XSAVE feature %d in a %u-byte area of an "
					  "unknown layout", t->pid, i, c->xstate_size);
		if ((i == 2 ? 576 : dump_offsets[i]) + feature_size[i] > len)
			return rst_refuse(c, "pid %d: XSAVE feature %d lies outside the %zu-byte area",
					  t->pid, i, len);
		if (bit & XFEATURE_AMX)
			c->procs[t->proc].xcomp_amx = true;
	}
	return 0;
}

/* ARCH_REQ_XCOMP_PERM before AMX state can be set (once per process, in any thread) */
int rarch_prepare_xstate(struct rctx *c, struct rtask *t)
{
	struct rproc *p = &c->procs[t->proc];
	long r;

	if (!p->xcomp_amx)
		return 0;
	r = rinj_syscall(c, t, SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA, 0, 0, 0, 0);
	if (r == INFECT_FAILED)
		return -1;
	if (r < 0)
		return pr_err("pid %d: ARCH_REQ_XCOMP_PERM: %s", t->pid, strerror(-r));
	p->xcomp_amx = false;
	return 0;
}

/* the image's FPU state in this CPU's layout, into buf (holding the task's current area) */
static void relocate_xstate(struct rtask *t, uint8_t *buf, size_t len)
{
	const uint8_t *src = t->xstate;
	uint64_t bv;
	int i;

	memcpy(buf, src, 464);				/* legacy area, not its sw_reserved bytes */
	memcpy(&bv, src + XSAVE_HDR, sizeof(bv));
	memset(buf + XSAVE_HDR, 0, 64);			/* standard format: xcomp_bv 0 */
	memcpy(buf + XSAVE_HDR, &bv, sizeof(bv));
	for (i = 2; i < NR_FEATURES; i++) {
		uint32_t from = i == 2 ? 576 : dump_offsets ? dump_offsets[i] : 0;

		if (!(bv & (1ULL << i)) || !running_offset[i])
			continue;
		if (running_offset[i] + feature_size[i] <= len)
			memcpy(buf + running_offset[i], src + from, feature_size[i]);
	}
}

/* user_desc of an 8-byte GDT descriptor (the inverse of the dumper's desc_from_user) */
static void desc_to_user(uint64_t d, unsigned int entry, struct user_desc *u)
{
	memset(u, 0, sizeof(*u));
	u->entry_number = entry;
	u->base_addr = (d >> 16 & 0xffffff) | (d >> 56 & 0xff) << 24;
	u->limit = (d & 0xffff) | (d >> 48 & 0xf) << 16;
	u->contents = d >> 42 & 3;
	u->read_exec_only = !(d >> 41 & 1);
	u->seg_not_present = !(d >> 47 & 1);
	u->useable = d >> 52 & 1;
	u->lm = d >> 53 & 1;
	u->seg_32bit = d >> 54 & 1;
	u->limit_in_pages = d >> 55 & 1;
}

/*
 * An interrupted syscall restarts as the kernel would have restarted it on the way back
 * to user space: detaching from a syscall-exit stop does not run that logic, so the
 * registers are rewritten here (ip back over the syscall instruction, ax = orig_ax). A
 * signal that will interrupt it first gets -EINTR where the kernel would give it. Without
 * its restart block (v23 keeps none), an -ERESTART_RESTARTBLOCK syscall is run again from
 * the start: a sleep or a wait with a timeout starts its timeout anew.
 */
static void restart_syscall_regs(struct rctx *c, struct rtask *t, struct user_regs_struct *r)
{
	long ax = (long)r->rax, nr = (long)r->orig_rax;
	bool interrupted, sa_restart = false, restart = false;

	r->orig_rax = -1;
	if (nr < 0)
		return;
	interrupted = signal_will_interrupt(c, t, &sa_restart);
	switch (-ax) {
	case ERESTARTNOINTR:
		restart = true;
		break;
	case ERESTARTSYS:
		restart = !interrupted || sa_restart;
		break;
	case ERESTARTNOHAND:
		restart = !interrupted;
		break;
	case ERESTART_RESTARTBLOCK:
		restart = !interrupted && nr != SYS_restart_syscall;
		break;
	default:
		return;
	}
	if (restart) {
		r->rax = nr;
		r->rip -= 2;
	} else {
		r->rax = -EINTR;
	}
}

int rarch_release(struct rctx *c, struct rtask *t)
{
	const struct ckpt_hdr_cpu *cpu = &t->cpu;
	struct user_regs_struct r = t->tmpl;
	uint8_t *buf = NULL;
	struct iovec iov;
	int i, ret = -1;

	r.r15 = cpu->r15; r.r14 = cpu->r14; r.r13 = cpu->r13; r.r12 = cpu->r12;
	r.rbp = cpu->bp; r.rbx = cpu->bx; r.r11 = cpu->r11; r.r10 = cpu->r10;
	r.r9 = cpu->r9; r.r8 = cpu->r8; r.rax = cpu->ax; r.rcx = cpu->cx;
	r.rdx = cpu->dx; r.rsi = cpu->si; r.rdi = cpu->di; r.orig_rax = cpu->orig_ax;
	r.rip = cpu->ip; r.rsp = cpu->sp; r.eflags = cpu->flags;
	r.fs_base = cpu->fs; r.gs_base = cpu->gs;
	r.cs = selector(cpu->cs); r.ss = selector(cpu->ss);
	r.ds = selector(cpu->ds); r.es = selector(cpu->es);
	r.fs = selector(cpu->fsindex); r.gs = selector(cpu->gsindex);
	restart_syscall_regs(c, t, &r);

	for (i = 0; i < CKPT_TLS_ENTRIES; i++) {
		uint64_t d;
		struct user_desc u;

		memcpy(&d, t->tls + 8 * i, 8);
		if (!d)
			continue;
		desc_to_user(d, GDT_ENTRY_TLS_MIN + i, &u);
		if (ptrace(PTRACE_SET_THREAD_AREA, t->host, GDT_ENTRY_TLS_MIN + i, &u))
			return pr_perror("pid %d: set TLS entry %d", t->pid, GDT_ENTRY_TLS_MIN + i);
	}
	if (t->xstate) {
		buf = calloc(1, XSTATE_MAX);
		if (!buf)
			return pr_perror("xstate");
		iov = (struct iovec){ buf, XSTATE_MAX };
		if (c->has_xsave) {
			if (ptrace(PTRACE_GETREGSET, t->host, NT_X86_XSTATE, &iov)) {
				pr_perror("pid %d: get FPU state", t->pid);
				goto out;
			}
			relocate_xstate(t, buf, iov.iov_len);
			if (ptrace(PTRACE_SETREGSET, t->host, NT_X86_XSTATE, &iov)) {
				pr_perror("pid %d: set FPU state", t->pid);
				goto out;
			}
		} else {
			iov.iov_len = FXSAVE_SIZE;
			memcpy(buf, t->xstate, FXSAVE_SIZE);
			if (ptrace(PTRACE_SETREGSET, t->host, NT_PRFPREG, &iov)) {
				pr_perror("pid %d: set FPU state", t->pid);
				goto out;
			}
		}
	}
	if (ptrace(PTRACE_SETREGS, t->host, 0, &r)) {
		pr_perror("pid %d: set registers", t->pid);
		goto out;
	}
	if (ptrace(PTRACE_SETSIGMASK, t->host, sizeof(t->blocked), &t->blocked)) {
		pr_perror("pid %d: set the signal mask", t->pid);
		goto out;
	}
	ret = 0;
out:
	free(buf);
	return ret;
}
