/*
 * Memory on restore: MM, each VMA mapped at its address, the page batches, MM_CONTEXT.
 * The mirror of mm.c.
 *
 * Pages are read by the restored task itself: the driver reads a batch's address list,
 * and an injected readv() in the task moves the page data from the image (the same open
 * file description, or the same pipe) straight into place: one copy, no staging in the
 * driver, and from a pipe while the dumper is still writing. VMAs are mapped with write
 * permission added for that and get their own protection once the mm is complete.
 * [vvar]/[vdso] are not mapped from the image: this kernel's pair is placed at the image's
 * address with ARCH_MAP_VDSO_64, after checking it is the same vdso.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include "restore.h"

/* kernel VM_* flags, as the dumper writes them (mm.c) */
#define VM_READ		0x00000001ULL
#define VM_WRITE	0x00000002ULL
#define VM_EXEC		0x00000004ULL
#define VM_SHARED	0x00000008ULL
#define VM_GROWSDOWN	0x00000100ULL
#define VM_PFNMAP	0x00000400ULL
#define VM_LOCKED	0x00002000ULL
#define VM_IO		0x00004000ULL
#define VM_DONTCOPY	0x00020000ULL
#define VM_NORESERVE	0x00200000ULL
#define VM_HUGETLB	0x00400000ULL
#define VM_WIPEONFORK	0x02000000ULL
#define VM_DONTDUMP	0x04000000ULL
#define VM_HUGEPAGE	0x20000000ULL
#define VM_NOHUGEPAGE	0x40000000ULL

#define TASK_SIZE_MAX	0x7ffffffff000UL
#define ARCH_MAP_VDSO_64 0x2003
#define MAX_IOV		CKPT_PGARR_BATCH
#define MADV_POPULATE_WRITE_K 23

static const struct {
	uint64_t flag;
	int advice;
} vm_advice[] = {
	{ VM_DONTCOPY, MADV_DONTFORK }, { VM_DONTDUMP, MADV_DONTDUMP },
	{ VM_WIPEONFORK, MADV_WIPEONFORK }, { VM_HUGEPAGE, MADV_HUGEPAGE },
	{ VM_NOHUGEPAGE, MADV_NOHUGEPAGE },
};

static struct rproc *mm_proc(struct rctx *c)
{
	struct rproc *p = cur_proc(c);

	if (p && (!p->have_mm || p->mm_done)) {
		rs_invalid(&c->in, "%s at offset %llu is outside an MM section", rec_name(c->in.rec_type),
		       (unsigned long long)c->in.rec_off);
		return NULL;
	}
	return p;
}

int restore_mm(struct rctx *c, const struct ckpt_hdr *h)
{
	struct rproc *p = cur_proc(c);
	struct robj *o = obj_define(c, CKPT_OBJ_MM);
	struct ckpt_hdr b;

	if (!p || !o)
		return -1;
	if (c->tasks[c->cur].pid != c->tasks[c->cur].tgid)
		return rst_refuse(c, "thread %d has an address space of its own", c->tasks[c->cur].pid);
	o->owner = c->tasks[c->cur].proc;
	if (rs_record(&c->in, h, &p->mm, sizeof(p->mm)) ||
	    rs_expect(&c->in, CKPT_HDR_BUFFER, &b) ||
	    rs_payload(&c->in, &b, p->auxv, 0, sizeof(p->auxv)))
		return -1;
	if (p->mm.exe_objref && !obj_get(c, p->mm.exe_objref, CKPT_OBJ_FILE))
		return -1;
	p->have_mm = true;
	p->mm_done = false;
	p->nr_vmas = 0;
	p->vdso = p->vdso_len = p->vvar_start = p->vvar_len = 0;
	return 0;
}

static int add_vma(struct rproc *p, const struct rvma *v)
{
	if (p->nr_vmas == p->cap_vmas) {
		int n = p->cap_vmas ? 2 * p->cap_vmas : 64;
		struct rvma *nv = realloc(p->vmas, n * sizeof(*nv));

		if (!nv)
			return pr_perror("vma list");
		p->vmas = nv;
		p->cap_vmas = n;
	}
	p->vmas[p->nr_vmas++] = *v;
	return 0;
}

static int prot_of(uint64_t vm_flags)
{
	return (vm_flags & VM_READ ? PROT_READ : 0) | (vm_flags & VM_WRITE ? PROT_WRITE : 0) |
	       (vm_flags & VM_EXEC ? PROT_EXEC : 0);
}

/* a shared anonymous memory object, as MAP_SHARED|MAP_ANONYMOUS makes it ("/dev/zero") */
static int shm_object(struct robj *o, uint64_t size)
{
	char path[96];
	void *m = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	if (m == MAP_FAILED)
		return pr_perror("shared memory of %llu bytes", (unsigned long long)size);
	snprintf(path, sizeof(path), "/proc/self/map_files/%lx-%lx", (unsigned long)m,
		 (unsigned long)m + size);
	o->fd = open(path, O_RDWR | O_CLOEXEC);	/* needs CAP_CHECKPOINT_RESTORE */
	munmap(m, size);
	if (o->fd < 0) {
		/* a memfd holds the same memory; /proc/PID/maps names it differently */
		o->fd = memfd_create("imgtools-shm", MFD_CLOEXEC);
		if (o->fd < 0 || ftruncate(o->fd, size))
			return pr_perror("shared memory object");
	}
	return 0;
}

/* the task's descriptor of a mapped file, kept while consecutive VMAs map the same file */
static int mapped_fd(struct rctx *c, struct rproc *p, int ref, int drv_fd)
{
	struct rtask *t = &c->tasks[p->leader];

	if (p->map_cache_fd >= 0 && p->map_cache_ref == ref)
		return p->map_cache_fd;
	if (p->map_cache_fd >= 0)
		rinj_syscall(c, t, SYS_close, p->map_cache_fd, 0, 0, 0, 0, 0);
	p->map_cache_fd = task_take_fd(c, p, drv_fd);
	p->map_cache_ref = ref;
	return p->map_cache_fd;
}

int restore_vma(struct rctx *c, const struct ckpt_hdr *h)
{
	struct rproc *p = mm_proc(c);
	struct ckpt_hdr_vma v;
	struct rvma rv = { 0 };
	int flags = MAP_FIXED, fd = -1, prot;
	uint64_t len, off;
	struct robj *o = NULL;
	struct rtask *t;
	long r;

	if (!p || rs_record(&c->in, h, &v, sizeof(v)))
		return -1;
	t = &c->tasks[p->leader];
	if (v.vm_start >= v.vm_end || (v.vm_start | v.vm_end) & (PAGE_SIZE - 1) ||
	    v.vm_end > TASK_SIZE_MAX || v.vm_start < 4096)
		return rs_invalid(&c->in, "VMA at offset %llu: bad range %#llx-%#llx", (unsigned long long)c->in.rec_off,
			      (unsigned long long)v.vm_start, (unsigned long long)v.vm_end);
	if (p->nr_vmas && v.vm_start < p->vmas[p->nr_vmas - 1].end)
		return rs_invalid(&c->in, "VMA at offset %llu: %#llx-%#llx overlaps or precedes the previous one",
			      (unsigned long long)c->in.rec_off, (unsigned long long)v.vm_start,
			      (unsigned long long)v.vm_end);
	if (v.vm_flags & VM_HUGETLB || v.hugetlb_shift)
		return rst_refuse(c, "pid %d: hugetlb mapping %#llx-%#llx", t->pid,
				  (unsigned long long)v.vm_start, (unsigned long long)v.vm_end);
	len = v.vm_end - v.vm_start;
	rv = (struct rvma){ .start = v.vm_start, .end = v.vm_end, .vm_flags = v.vm_flags,
			    .prot = prot_of(v.vm_flags) };
	prot = rv.prot;
	switch (v.vma_type) {
	case CKPT_VMA_VDSO:
		rv.skip = true;
		p->vdso = v.vm_start;
		p->vdso_len = len;
		return add_vma(p, &rv);
	case CKPT_VMA_ANON:
		if (v.vm_flags & (VM_IO | VM_PFNMAP)) {		/* [vvar], [vvar_vclock] */
			rv.skip = true;
			if (!p->vvar_len || p->vvar_start + p->vvar_len != v.vm_start)
				p->vvar_start = v.vm_start, p->vvar_len = 0;
			p->vvar_len += len;
			return add_vma(p, &rv);
		}
		flags |= MAP_PRIVATE | MAP_ANONYMOUS;
		break;
	case CKPT_VMA_FILE:
	case CKPT_VMA_SHM_FILE:
		o = obj_get(c, v.vma_objref, CKPT_OBJ_FILE);
		if (!o)
			return -1;
		flags |= v.vma_type == CKPT_VMA_FILE ? MAP_PRIVATE : MAP_SHARED;
		break;
	case CKPT_VMA_SHM_ANON: {
		bool first;

		o = obj_implicit(c, v.ino_objref, CKPT_OBJ_INODE, &first);
		if (!o)
			return -1;
		if (first && !c->dry &&
		    shm_object(o, v.ino_size ? v.ino_size : len + v.vm_pgoff * PAGE_SIZE))
			return -1;
		flags |= MAP_SHARED;
		break;
	}
	case CKPT_VMA_SHM_IPC_SKIP:
		return restore_ipc_vma(c, p, &v, &rv) ? -1 : add_vma(p, &rv);
	default:
		return rst_refuse(c, "pid %d: mapping %#llx-%#llx of type %u", t->pid,
				  (unsigned long long)v.vm_start, (unsigned long long)v.vm_end,
				  v.vma_type);
	}
	/* pages are written by the task: room for them, the own protection comes later */
	if (!(prot & PROT_WRITE) && v.vma_type != CKPT_VMA_SHM_FILE) {
		prot |= PROT_WRITE;
		rv.added_write = true;
	}
	if (v.vm_flags & VM_GROWSDOWN)
		flags |= MAP_GROWSDOWN;
	if (v.vm_flags & VM_NORESERVE)
		flags |= MAP_NORESERVE;
	if (c->dry)
		return add_vma(p, &rv);
	if (rinj_move_stub(c, p, v.vm_start, v.vm_end))
		return -1;
	if (o) {
		fd = mapped_fd(c, p, v.vma_type == CKPT_VMA_SHM_ANON ? -v.ino_objref : v.vma_objref, o->fd);
		if (fd < 0)
			return -1;
	}
	off = v.vma_type == CKPT_VMA_ANON ? 0 : v.vm_pgoff * PAGE_SIZE;
	r = rinj_syscall(c, t, SYS_mmap, v.vm_start, len, prot, flags, fd, off);
	if (r == INFECT_FAILED)
		return -1;
	if (r != (long)v.vm_start)
		return rst_refuse(c, "pid %d: map %#llx-%#llx: %s", t->pid, (unsigned long long)v.vm_start,
				  (unsigned long long)v.vm_end, r < 0 ? strerror(-r) : "moved");
	return add_vma(p, &rv);
}

static struct rvma *vma_of(struct rproc *p, uint64_t addr)
{
	int lo = 0, hi = p->nr_vmas - 1;

	while (lo <= hi) {
		int mid = (lo + hi) / 2;

		if (addr < p->vmas[mid].start)
			hi = mid - 1;
		else if (addr >= p->vmas[mid].end)
			lo = mid + 1;
		else
			return &p->vmas[mid];
	}
	return NULL;
}

/* pages the task cannot read in place (vdso pages): through the driver */
static int pages_by_driver(struct rctx *c, struct rproc *p, const uint64_t *addr, uint64_t n)
{
	static char page[PAGE_SIZE];
	uint64_t i;

	for (i = 0; i < n; i++) {
		struct rvma *v = vma_of(p, addr[i]);

		if (rs_read(&c->in, page, PAGE_SIZE))
			return -1;
		if (!v)
			continue;
		if (v->skip) {
			/* the image's vdso, compared with this kernel's at MM_CONTEXT */
			if (addr[i] >= p->vdso && addr[i] + PAGE_SIZE <= p->vdso + p->vdso_len &&
			    p->vdso_len <= (1 << 20)) {
				uint8_t *nb = realloc(c->vdso_image, p->vdso_len);

				if (!nb)
					return pr_perror("vdso pages");
				if (!c->vdso_image)
					memset(nb, 0, p->vdso_len);
				c->vdso_image = nb;
				c->vdso_image_len = p->vdso_len;
				memcpy(nb + (addr[i] - p->vdso), page, PAGE_SIZE);
			}
			continue;
		}
		if (!c->dry && rinj_write(&c->tasks[p->leader], addr[i], page, PAGE_SIZE))
			return -1;
	}
	return 0;
}

/* n pages from the image into their addresses, read by the task (readv of the image) */
static int pages_by_task(struct rctx *c, struct rproc *p, const uint64_t *addr, uint64_t n)
{
	struct rtask *t = &c->tasks[p->leader];
	struct iovec iov[MAX_IOV];
	int niov = 0, first = 0;
	uint64_t i, left = n * PAGE_SIZE;

	for (i = 0; i < n; i++) {
		if (niov && (uint64_t)iov[niov - 1].iov_base + iov[niov - 1].iov_len == addr[i])
			iov[niov - 1].iov_len += PAGE_SIZE;
		else
			iov[niov++] = (struct iovec){ (void *)addr[i], PAGE_SIZE };
	}
	/*
	 * Fresh pages in bulk first: one MADV_POPULATE_WRITE per run costs less than a page
	 * fault per page inside readv (the floor of a restore on this kind of machine).
	 */
	for (i = 0; i < (uint64_t)niov && p->populate; i++) {
		long r = rinj_syscall(c, t, SYS_madvise, (long)iov[i].iov_base, iov[i].iov_len,
				      MADV_POPULATE_WRITE_K, 0, 0, 0);

		if (r == INFECT_FAILED)
			return -1;
		if (r == -EINVAL)
			p->populate = false;	/* an older kernel */
	}
	while (left) {
		uint64_t at = rinj_put(c, p, 0, &iov[first], (niov - first) * sizeof(iov[0]));
		long r;

		if (!at)
			return -1;
		r = rinj_syscall(c, t, SYS_readv, p->svc_in, at, niov - first, 0, 0, 0);
		if (r == INFECT_FAILED)
			return -1;
		if (r < 0)
			return pr_err("pid %d: read pages from the image: %s", t->pid, strerror(-r));
		if (r == 0)
			return rs_invalid(&c->in, "the image ends at offset %llu inside a page batch",
				      (unsigned long long)c->in.off);
		c->in.off += r;
		left -= r;
		/* a pipe gives what it has: go on after the bytes that arrived */
		while (r > 0) {
			if ((uint64_t)r >= iov[first].iov_len) {
				r -= iov[first].iov_len;
				first++;
			} else {
				iov[first].iov_base = (char *)iov[first].iov_base + r;
				iov[first].iov_len -= r;
				r = 0;
			}
		}
	}
	return 0;
}

int restore_pgarr(struct rctx *c, const struct ckpt_hdr *h)
{
	struct rproc *p = mm_proc(c);
	struct ckpt_hdr_pgarr pg;
	struct ckpt_hdr b;
	uint64_t *addr, i;
	bool in_place = true;
	int ret;

	if (!p || rs_record(&c->in, h, &pg, sizeof(pg)))
		return -1;
	if (!pg.nr_pages)
		return 0;
	if (pg.nr_pages > CKPT_PGARR_BATCH)
		return rs_invalid(&c->in, "PGARR at offset %llu: %llu pages, at most %lu", (unsigned long long)c->in.rec_off,
			      (unsigned long long)pg.nr_pages, (unsigned long)CKPT_PGARR_BATCH);
	if (rs_expect(&c->in, CKPT_HDR_BUFFER, &b))
		return -1;
	if (b.len - sizeof(b) != pg.nr_pages * (8 + PAGE_SIZE))
		return rs_invalid(&c->in, "BUFFER at offset %llu: %zu bytes for %llu pages", (unsigned long long)c->in.rec_off,
			      b.len - sizeof(b), (unsigned long long)pg.nr_pages);
	addr = malloc(pg.nr_pages * 8);
	if (!addr)
		return pr_perror("page addresses");
	if (rs_read(&c->in, addr, pg.nr_pages * 8)) {
		free(addr);
		return -1;
	}
	for (i = 0; i < pg.nr_pages; i++) {
		struct rvma *v = vma_of(p, addr[i]);

		if ((addr[i] & (PAGE_SIZE - 1)) || !v) {
			free(addr);
			return rs_invalid(&c->in, "BUFFER at offset %llu: page %#llx is outside every VMA",
				      (unsigned long long)c->in.rec_off, (unsigned long long)addr[i]);
		}
		if (v->skip || (i && addr[i] <= addr[i - 1]))
			in_place = false;
	}
	if (!in_place)
		ret = pages_by_driver(c, p, addr, pg.nr_pages);
	else if (c->dry)
		ret = rs_skip(&c->in, pg.nr_pages * PAGE_SIZE);
	else
		ret = pages_by_task(c, p, addr, pg.nr_pages);
	free(addr);
	if (!c->dry)
		rs_progress(&c->in, false);
	return ret;
}

/* the image's [vvar]+[vdso] against this kernel's: the same sizes, the same code */
static int check_vdso(struct rctx *c, struct rproc *p, uint64_t vdso)
{
	struct rtask *t = &c->tasks[p->leader];

	if (vdso != p->vdso)
		return rst_refuse(c, "pid %d: MM_CONTEXT names the vdso at %#llx, no vdso VMA is there",
				  t->pid, (unsigned long long)vdso);
	if (p->vdso_len != c->vdso_running || p->vvar_len != c->vvar_running ||
	    p->vvar_start + p->vvar_len != vdso)
		return rst_refuse(c, "pid %d: the image's vdso (%llu bytes, vvar %llu) is not this "
				  "kernel's (%llu, vvar %llu): a different kernel", t->pid,
				  (unsigned long long)p->vdso_len, (unsigned long long)p->vvar_len,
				  (unsigned long long)c->vdso_running, (unsigned long long)c->vvar_running);
	if (c->same_kernel)
		return 0;
	if (c->vdso_image && c->vdso_image_len == p->vdso_len) {
		uint64_t here = 0;
		char *maps = proc_read(0, "self/maps", NULL), *l;

		for (l = maps; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : l + strlen(l))
			if (strstr(l, "[vdso]") && strstr(l, "[vdso]") < strchr(l, '\n'))
				here = strtoull(l, NULL, 16);
		free(maps);
		if (here && !memcmp((void *)here, c->vdso_image, p->vdso_len))
			return 0;
	}
	return rst_refuse(c, "pid %d: the image comes from kernel %s %s: its vdso is not known to be "
			  "this kernel's", t->pid, c->uts_release, c->uts_version);
}

/* the mm is complete: vdso, own protections, madvise bits, then the mm fields and exe */
int restore_mm_context(struct rctx *c, const struct ckpt_hdr *h)
{
	struct rproc *p = mm_proc(c);
	struct ckpt_hdr_mm_context mc;
	struct ckpt_hdr ldt;
	struct prctl_mm_map map;
	struct rtask *t;
	int i, exe_fd = -1, n;
	long r;

	if (!p || rs_record(&c->in, h, &mc, sizeof(mc)) ||
	    rs_expect(&c->in, CKPT_HDR_MM_CONTEXT_LDT, &ldt) || rs_skip(&c->in, ldt.len - sizeof(ldt)))
		return -1;
	t = &c->tasks[p->leader];
	if (mc.nldt)
		return rst_refuse(c, "pid %d: an LDT of %u entries", t->pid, mc.nldt);
	if (mc.vdso && check_vdso(c, p, mc.vdso))
		return -1;
	free(c->vdso_image);
	c->vdso_image = NULL;
	if (c->dry) {
		p->mm_done = true;
		return 0;
	}
	if (mc.vdso) {
		uint64_t at = mc.vdso - c->vvar_running;

		if (rinj_move_stub(c, p, at, mc.vdso + c->vdso_running))
			return -1;
		r = rinj_syscall(c, t, SYS_arch_prctl, ARCH_MAP_VDSO_64, at, 0, 0, 0, 0);
		if (r == INFECT_FAILED || r < 0)
			return pr_err("pid %d: map the vdso at %#llx: %s", t->pid, (unsigned long long)at,
				      r < 0 ? strerror(-r) : "failed");
	}
	for (i = 0; i < p->nr_vmas; i++) {
		struct rvma *v = &p->vmas[i];
		size_t k;

		if (v->skip)
			continue;
		if (v->added_write &&
		    rinj_syscall(c, t, SYS_mprotect, v->start, v->end - v->start, v->prot, 0, 0, 0))
			return pr_err("pid %d: protect %#llx-%#llx", t->pid, (unsigned long long)v->start,
				      (unsigned long long)v->end);
		for (k = 0; k < sizeof(vm_advice) / sizeof(vm_advice[0]); k++)
			if (v->vm_flags & vm_advice[k].flag &&
			    rinj_syscall(c, t, SYS_madvise, v->start, v->end - v->start,
					 vm_advice[k].advice, 0, 0, 0))
				return pr_err("pid %d: madvise %#llx-%#llx", t->pid,
					      (unsigned long long)v->start, (unsigned long long)v->end);
	}
	if (p->map_cache_fd >= 0) {
		rinj_syscall(c, t, SYS_close, p->map_cache_fd, 0, 0, 0, 0, 0);
		p->map_cache_fd = -1;
	}
	if (p->mm.exe_objref) {
		exe_fd = task_take_fd(c, p, obj_get(c, p->mm.exe_objref, CKPT_OBJ_FILE)->fd);
		if (exe_fd < 0)
			return -1;
	}
	for (n = 0; n + 1 < CKPT_AT_VECTOR_SIZE && p->auxv[n]; n += 2)
		;
	map = (struct prctl_mm_map){
		.start_code = p->mm.start_code, .end_code = p->mm.end_code,
		.start_data = p->mm.start_data, .end_data = p->mm.end_data,
		.start_brk = p->mm.start_brk, .brk = p->mm.brk, .start_stack = p->mm.start_stack,
		.arg_start = p->mm.arg_start, .arg_end = p->mm.arg_end,
		.env_start = p->mm.env_start, .env_end = p->mm.env_end,
		.auxv = (__u64 *)(p->stub + RST_SCRATCH + 256),
		.auxv_size = (n + 2) * sizeof(uint64_t),
		.exe_fd = exe_fd,
	};
	if (!rinj_put(c, p, 256, p->auxv, map.auxv_size) || !rinj_put(c, p, 0, &map, sizeof(map)))
		return -1;
	r = rinj_syscall(c, t, SYS_prctl, PR_SET_MM, PR_SET_MM_MAP, p->stub + RST_SCRATCH,
			 sizeof(map), 0, 0);
	if (r == INFECT_FAILED)
		return -1;
	if (r < 0)
		return rst_refuse(c, "pid %d: set the mm fields and exe (PR_SET_MM_MAP): %s", t->pid,
				  strerror(-r));
	if (exe_fd >= 0)
		rinj_syscall(c, t, SYS_close, exe_fd, 0, 0, 0, 0, 0);
	p->mm_done = true;
	return 0;
}

/* this kernel's [vdso] and [vvar]* sizes, from the driver's own mappings */
int probe_running_vdso(struct rctx *c)
{
	char *maps = proc_read(0, "self/maps", NULL), *l, *next;
	uint64_t vvar = 0, vdso = 0;

	if (!maps)
		return pr_perror("read /proc/self/maps");
	for (l = maps; *l; l = next) {
		unsigned long long s, e;

		next = l + strcspn(l, "\n");
		if (*next)
			*next++ = 0;
		if (sscanf(l, "%llx-%llx", &s, &e) != 2)
			continue;
		if (strstr(l, "[vvar") && (!vvar || s < vvar))
			vvar = s;
		if (strstr(l, "[vdso]")) {
			vdso = s;
			c->vdso_running = e - s;
		}
	}
	free(maps);
	c->vvar_running = vdso && vvar ? vdso - vvar : 0;
	return 0;
}
