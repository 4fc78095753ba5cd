/* x86_64 registers, FPU/xstate, TLS and the arch records (HEADER_ARCH, THREAD, CPU, MM_CONTEXT). */
#include <asm/ldt.h>
#include <elf.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/uio.h>

#include "engine.h"

#define XSTATE_MAX		(64 << 10)
#define FXSAVE_SIZE		512
#define GDT_ENTRY_TLS_MIN	12

/* x86_64 GDT selectors (RPL 3) */
#define USER32_CS	0x23
#define USER_DS		0x2b	/* also __USER32_DS */
#define USER_CS		0x33

/* Size of the XSAVE area PTRACE_GETREGSET returns: the same for every task. */
int arch_probe_xstate(struct ctx *c, pid_t tid)
{
	void *buf = malloc(XSTATE_MAX);
	struct iovec iov = { buf, XSTATE_MAX };

	if (!buf)
		return pr_perror("xstate buffer");
	if (ptrace(PTRACE_GETREGSET, tid, NT_X86_XSTATE, &iov) == 0) {
		c->has_xsave = true;
		c->xstate_size = iov.iov_len;
	} else {
		c->has_xsave = false;
		c->xstate_size = FXSAVE_SIZE;
	}
	free(buf);
	return 0;
}

/* user_desc (the ptrace view) back to the 8-byte GDT descriptor the kernel stores */
static uint64_t desc_from_user(const struct user_desc *u)
{
	uint64_t base = u->base_addr, limit = u->limit, d;

	if (u->seg_not_present && u->read_exec_only && !base && !limit && !u->contents &&
	    !u->seg_32bit && !u->limit_in_pages && !u->useable)
		return 0;	/* empty slot */
	d = (limit & 0xffff) | (base & 0xffffff) << 16;
	d |= (uint64_t)(1 | (!u->read_exec_only) << 1 | u->contents << 2) << 40;	/* type, accessed */
	d |= 1ULL << 44;					/* s: code/data */
	d |= 3ULL << 45;					/* dpl 3 */
	d |= (uint64_t)!u->seg_not_present << 47;		/* p */
	d |= ((limit >> 16) & 0xf) << 48;
	d |= (uint64_t)u->useable << 52;
	d |= (uint64_t)u->lm << 53;
	d |= (uint64_t)u->seg_32bit << 54;
	d |= (uint64_t)u->limit_in_pages << 55;
	d |= (base >> 24 & 0xff) << 56;
	return d;
}

int arch_read_regs(struct ctx *c, struct task *t)
{
	struct arch_task *a = &t->arch;
	struct iovec iov;
	int i;

	if (ptrace(PTRACE_GETREGS, t->tid, 0, &a->regs))
		return pr_perror("task %d: get registers", t->tid);
	a->xstate = calloc(1, c->xstate_size);
	if (!a->xstate)
		return pr_perror("xstate");
	iov = (struct iovec){ a->xstate, c->xstate_size };
	if (ptrace(PTRACE_GETREGSET, t->tid, c->has_xsave ? NT_X86_XSTATE : NT_PRFPREG, &iov))
		return pr_perror("task %d: get FPU state", t->tid);
	if (iov.iov_len != c->xstate_size)
		return pr_err("task %d: FPU state is %zu bytes, expected %u", t->tid, iov.iov_len,
			      c->xstate_size);
	a->xstate_len = iov.iov_len;
	for (i = 0; i < CKPT_TLS_ENTRIES; i++) {
		struct user_desc u;
		uint64_t d;

		if (ptrace(PTRACE_GET_THREAD_AREA, t->tid, GDT_ENTRY_TLS_MIN + i, &u))
			return pr_perror("task %d: get TLS entry %d", t->tid, GDT_ENTRY_TLS_MIN + i);
		d = desc_from_user(&u);
		memcpy(a->tls + 8 * i, &d, 8);
	}
	return 0;
}

int arch_dump_header(struct ctx *c)
{
	struct ckpt_hdr_header_arch h = {
		.has_fxsr = 1,
		.has_xsave = c->has_xsave,
		.xstate_size = c->xstate_size,
	};

	return write_obj(&c->img, CKPT_HDR_HEADER_ARCH, &h, sizeof(h));
}

int arch_dump_thread(struct ctx *c, struct task *t)
{
	struct {
		struct ckpt_hdr_thread h;
		uint8_t tls[sizeof(t->arch.tls)];
	} rec = {
		.h.gdt_entry_tls_entries = CKPT_TLS_ENTRIES,
		.h.sizeof_tls_array = sizeof(t->arch.tls),
	};

	memcpy(rec.tls, t->arch.tls, sizeof(rec.tls));
	return write_obj(&c->img, CKPT_HDR_THREAD, &rec, sizeof(rec));
}

static int encode_segment(pid_t tid, unsigned long long sel, uint16_t *out)
{
	unsigned int idx = sel >> 3;

	if (sel == 0)
		*out = CKPT_X86_SEG_NULL;
	else if (sel == USER_CS)
		*out = CKPT_X86_SEG_USER64_CS;
	else if (sel == USER_DS)
		*out = CKPT_X86_SEG_USER64_DS;
	else if (sel == USER32_CS)
		*out = CKPT_X86_SEG_USER32_CS;
	else if ((sel & 3) == 3 && (sel & 4))
		*out = CKPT_X86_SEG_LDT | idx;
	else if ((sel & 3) == 3 && idx >= GDT_ENTRY_TLS_MIN && idx < GDT_ENTRY_TLS_MIN + CKPT_TLS_ENTRIES)
		*out = CKPT_X86_SEG_TLS | (idx - GDT_ENTRY_TLS_MIN);
	else
		return pr_err("task %d: segment selector %#llx cannot be encoded", tid, sel);
	return 0;
}

int arch_dump_cpu(struct ctx *c, struct task *t)
{
	const struct user_regs_struct *r = &t->arch.regs;
	struct ckpt_hdr_cpu h = {
		.r15 = r->r15, .r14 = r->r14, .r13 = r->r13, .r12 = r->r12,
		.bp = r->rbp, .bx = r->rbx, .r11 = r->r11, .r10 = r->r10,
		.r9 = r->r9, .r8 = r->r8, .ax = r->rax, .cx = r->rcx,
		.dx = r->rdx, .si = r->rsi, .di = r->rdi, .orig_ax = r->orig_rax,
		.ip = r->rip, .sp = r->rsp, .flags = r->eflags,
		.fs = r->fs_base, .gs = r->gs_base,
		.used_math = 1,
	};

	if (encode_segment(t->tid, r->fs, &h.fsindex) || encode_segment(t->tid, r->gs, &h.gsindex) ||
	    encode_segment(t->tid, r->cs, &h.cs) || encode_segment(t->tid, r->ss, &h.ss) ||
	    encode_segment(t->tid, r->ds, &h.ds) || encode_segment(t->tid, r->es, &h.es))
		return -1;
	if (write_obj(&c->img, CKPT_HDR_CPU, &h, sizeof(h)))
		return -1;
	return write_buffer(&c->img, CKPT_HDR_CPU_FPU, t->arch.xstate, t->arch.xstate_len);
}

/* The LDT is not read (64-bit tasks do not use one): MM_CONTEXT_LDT stays empty. */
int arch_dump_mm_context(struct ctx *c, uint64_t vdso)
{
	struct ckpt_hdr_mm_context h = { .vdso = vdso, .ldt_entry_size = 8, .nldt = 0 };

	if (write_obj(&c->img, CKPT_HDR_MM_CONTEXT, &h, sizeof(h)))
		return -1;
	return write_obj_header(&c->img, CKPT_HDR_MM_CONTEXT_LDT, 0);
}
