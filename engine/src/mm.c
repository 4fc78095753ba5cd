/*
 * Memory: the mm record, saved auxv, one VMA record per mapping (from /proc/pid/smaps)
 * and the contents of private and shared-anonymous mappings.
 *
 * Only pages that exist are saved: pagemap says which (present, or swapped); of a private
 * file mapping only the pages that became anonymous (copy-on-write) are saved, the rest
 * is in the file. Pages are read with process_vm_readv, up to a PGARR batch (512 pages)
 * per call with contiguous pages coalesced (the pages of neighbouring small mappings in
 * one call), and written with one writev per batch.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "engine.h"

/* kernel VM_* flags */
#define VM_READ		0x00000001ULL
#define VM_WRITE	0x00000002ULL
#define VM_EXEC		0x00000004ULL
#define VM_SHARED	0x00000008ULL
#define VM_MAYWRITE	0x00000020ULL
#define VM_PFNMAP	0x00000400ULL
#define VM_IO		0x00004000ULL
#define VM_HUGETLB	0x00400000ULL

/* x86_64 page table entry bits */
#define _PAGE_PRESENT	0x001ULL
#define _PAGE_RW	0x002ULL
#define _PAGE_USER	0x004ULL
#define _PAGE_ACCESSED	0x020ULL
#define _PAGE_PROTNONE	0x100ULL
#define _PAGE_NX	(1ULL << 63)

/* /proc/pid/pagemap entry bits */
#define PM_PRESENT	(1ULL << 63)
#define PM_SWAP		(1ULL << 62)
#define PM_FILE		(1ULL << 61)

#define SMAPS_READ	(64 << 10)	/* bytes of smaps text per read */
#define PAGEMAP_CHUNK	65536	/* pagemap entries read at once, at most */
#define PAGEMAP_AHEAD	4096	/* and at least (32 KiB of entries, 16 MiB of memory) */
#define O_LARGEFILE_K	0100000	/* x86_64 O_LARGEFILE, which glibc defines as 0 */
#define FMODE_EXEC_K	0x20	/* __FMODE_EXEC in f_flags of an exec'd file */
#define MMF_DUMP_FILTER_SHIFT 2

/* smaps "VmFlags" mnemonics (show_smap_vma_flags) and the VM_* bit each stands for */
static const struct {
	char name[3];
	uint64_t flag;
} vm_flag_names[] = {
	{ "rd", 0x1 }, { "wr", 0x2 }, { "ex", 0x4 }, { "sh", 0x8 },
	{ "mr", 0x10 }, { "mw", 0x20 }, { "me", 0x40 }, { "ms", 0x80 },
	{ "gd", 0x100 }, { "um", 0x200 }, { "pf", 0x400 }, { "uw", 0x1000 },
	{ "lo", 0x2000 }, { "io", 0x4000 }, { "sr", 0x8000 }, { "rr", 0x10000 },
	{ "dc", 0x20000 }, { "de", 0x40000 }, { "lf", 0x80000 }, { "ac", 0x100000 },
	{ "nr", 0x200000 }, { "ht", 0x400000 }, { "sf", 0x800000 }, { "ar", 0x1000000 },
	{ "wf", 0x2000000 }, { "dd", 0x4000000 }, { "sd", 0x8000000 }, { "mm", 0x10000000 },
	{ "hg", 0x20000000 }, { "nh", 0x40000000 }, { "mg", 0x80000000 },
};

struct vma {
	uint64_t start, end, pgoff;
	char perms[5];
	uint64_t vm_flags;
	uint32_t type;
	bool no_contents;	/* VM_IO / VM_PFNMAP: kernel pages, only the terminator is written */
	struct stat *st;	/* the mapped file (malloc'd: 20,000 anonymous VMAs have none) */
	char *path;		/* as smaps names it, "" for none (malloc'd) */
};

struct page_batch {
	pid_t pid;
	int memfd;		/* /proc/pid/mem, opened on first need */
	int objfd;		/* >= 0: pages come from this shared object instead, */
	uint64_t obj_delta;	/* at file offset addr + obj_delta */
	int n;
	uint64_t addr[CKPT_PGARR_BATCH];
	char *pages;
};

int probe_mm(struct infect *inf, struct process *p)
{
	long brk = infect_syscall(inf, SYS_brk, 0, 0, 0, 0);
	long dumpable = infect_syscall(inf, SYS_prctl, PR_GET_DUMPABLE, 0, 0, 0);

	if (brk == INFECT_FAILED || dumpable == INFECT_FAILED)
		return -1;
	p->brk = brk;
	p->dumpable = dumpable < 0 ? 0 : dumpable;
	return 0;
}

/* VmFlags' mnemonics by their two letters: 20,000 VMAs have some 200,000 of them */
static uint64_t vm_flag_of(char a, char b)
{
	static uint64_t table[26][26];
	static bool filled;
	size_t i;

	if (!filled) {
		for (i = 0; i < sizeof(vm_flag_names) / sizeof(vm_flag_names[0]); i++)
			table[vm_flag_names[i].name[0] - 'a'][vm_flag_names[i].name[1] - 'a'] =
				vm_flag_names[i].flag;
		filled = true;
	}
	return a >= 'a' && a <= 'z' && b >= 'a' && b <= 'z' ? table[a - 'a'][b - 'a'] : 0;
}

static uint64_t parse_vm_flags(const char *v)
{
	uint64_t flags = 0;

	while (*v && *v != '\n') {
		if (v[1] && (v[2] == ' ' || v[2] == '\n' || !v[2]))
			flags |= vm_flag_of(v[0], v[1]);
		v += strcspn(v, " \n");
		v += strspn(v, " ");
	}
	return flags;
}

/* a hexadecimal field of a maps line and the one character that must end it */
static bool hex_field(const char **p, char end, unsigned long long *v)
{
	char *e;

	*v = strtoull(*p, &e, 16);
	if (e == *p || *e != end)
		return false;
	*p = e + 1;
	return true;
}

/*
 * "start-end perms offset major:minor inode [path]" (show_map_vma); *path: the text
 * after the inode and its padding. The line is parsed in place: sscanf would measure
 * the whole line for every field.
 */
static bool parse_map_line(const char *line, unsigned long long *start, unsigned long long *end,
			   const char **perms, unsigned long long *pgoff, const char **path)
{
	unsigned long long major, minor;
	const char *p = line;
	char *e;

	if (!hex_field(&p, '-', start) || !hex_field(&p, ' ', end))
		return false;
	*perms = p;
	if (strnlen(p, 5) < 5 || p[4] != ' ')
		return false;
	p += 5;
	if (!hex_field(&p, ' ', pgoff) || !hex_field(&p, ':', &major) || !hex_field(&p, ' ', &minor))
		return false;
	strtoull(p, &e, 10);
	if (e == p || (*e && *e != ' '))
		return false;
	*path = e + strspn(e, " ");
	return true;
}

/*
 * vm_page_prot as the x86_64 kernel derives it from vm_flags (protection_map): present,
 * user and accessed; writable only for shared writable mappings (private ones are
 * copy-on-write); NX unless executable; no access at all is PROTNONE | accessed.
 */
static uint64_t page_prot(uint64_t vm_flags)
{
	uint64_t prot;

	if (!(vm_flags & (VM_READ | VM_WRITE | VM_EXEC)))
		return _PAGE_PROTNONE | _PAGE_ACCESSED;
	prot = _PAGE_PRESENT | _PAGE_USER | _PAGE_ACCESSED;
	if ((vm_flags & (VM_WRITE | VM_SHARED)) == (VM_WRITE | VM_SHARED))
		prot |= _PAGE_RW;
	if (!(vm_flags & VM_EXEC))
		prot |= _PAGE_NX;
	return prot;
}

static bool deleted(const char *path)
{
	size_t n = strlen(path);

	return n > 10 && !strcmp(path + n - 10, " (deleted)");
}

static void map_files_path(char *buf, size_t size, pid_t pid, const struct vma *v)
{
	snprintf(buf, size, "/proc/%d/map_files/%llx-%llx", pid, (unsigned long long)v->start,
		 (unsigned long long)v->end);
}

/* Set v->type; 1 if the mapping is not saved (vsyscall), 2 if it cannot be, -1 on error. */
static int classify(pid_t pid, struct vma *v)
{
	bool shared = v->perms[3] == 's';
	char mf[96];

	if (!strcmp(v->path, "[vsyscall]"))
		return 1;	/* not a vma of the mm */
	if (!strcmp(v->path, "[vdso]")) {
		v->type = CKPT_VMA_VDSO;
		return 0;
	}
	if (v->vm_flags & VM_HUGETLB)
		return 2;
	if (v->vm_flags & (VM_IO | VM_PFNMAP)) {
		v->type = CKPT_VMA_ANON;	/* [vvar]: kernel pages, nothing to save */
		v->no_contents = true;
		return 0;
	}
	if (v->path[0] != '/') {
		v->type = CKPT_VMA_ANON;
		return shared ? 2 : 0;
	}
	map_files_path(mf, sizeof(mf), pid, v);
	v->st = malloc(sizeof(*v->st));
	if (!v->st)
		return pr_perror("vma list");
	if (stat(mf, v->st) && stat(v->path, v->st))
		return 2;
	if (shared && !strcmp(v->path, "/dev/zero (deleted)")) {
		v->type = CKPT_VMA_SHM_ANON;	/* MAP_SHARED | MAP_ANONYMOUS */
		return 0;
	}
	if (shared && !strncmp(v->path, "/SYSV", 5) && deleted(v->path)) {
		v->type = CKPT_VMA_SHM_IPC_SKIP;	/* shmat(2): the segment's inode is its shmid */
		return 0;
	}
	if (deleted(v->path) && !ext_file_kind(v->path, v->st))
		return 2;
	v->type = shared ? CKPT_VMA_SHM_FILE : CKPT_VMA_FILE;
	return 0;
}

static void free_vmas(struct vma *vmas, int n)
{
	int i;

	for (i = 0; i < n; i++) {
		free(vmas[i].path);
		free(vmas[i].st);
	}
	free(vmas);
}

/*
 * The mappings of pid from /proc/PID/smaps, read line by line (the text of 20,000 VMAs
 * is some 20 MB, never held whole); unsupported ones are ERROR records and left out.
 */
static int read_vmas(struct ctx *c, pid_t pid, struct vma **out, int *n)
{
	char path[64], *line = NULL;
	size_t line_cap = 0;
	ssize_t len;
	struct vma *vmas = NULL, *v = NULL;
	int cap = 0, ret = 0, i, j;
	FILE *f;

	*n = 0;
	*out = NULL;
	snprintf(path, sizeof(path), "/proc/%d/smaps", pid);
	f = fopen(path, "re");
	if (!f)
		return pr_perror("read %s", path);
	/* stdio would read in st_blksize pieces, 1 KiB on /proc: 20,000 reads of 20 MB */
	setvbuf(f, NULL, _IOFBF, SMAPS_READ);
	while ((len = getline(&line, &line_cap, f)) > 0 && !ret) {
		unsigned long long start, end, pgoff;
		const char *perms, *name;

		if (line[len - 1] == '\n')
			line[len - 1] = 0;
		if (line[0] == 'V' && !strncmp(line, "VmFlags:", 8) && v) {
			v->vm_flags = parse_vm_flags(line + 8 + strspn(line + 8, " "));
			continue;
		}
		/* "Key: value" lines start with a capital, a mapping with its lowercase hex start */
		if (!((line[0] >= '0' && line[0] <= '9') || (line[0] >= 'a' && line[0] <= 'f')) ||
		    !parse_map_line(line, &start, &end, &perms, &pgoff, &name))
			continue;
		if (*n == cap) {
			struct vma *nv = realloc(vmas, (cap = cap ? 2 * cap : 64) * sizeof(*vmas));

			if (!nv) {
				ret = pr_perror("vma list");
				break;
			}
			vmas = nv;
		}
		v = &vmas[*n];
		memset(v, 0, sizeof(*v));
		v->start = start;
		v->end = end;
		v->pgoff = pgoff / PAGE_SIZE;
		memcpy(v->perms, perms, 4);
		v->path = strdup(name);
		if (!v->path)
			ret = pr_perror("vma list");
		else
			(*n)++;
	}
	if (ferror(f) && !ret)
		ret = pr_perror("read %s", path);
	fclose(f);
	free(line);
	/* classify once every VmFlags line is in */
	for (i = 0, j = 0; i < *n; i++) {
		int r = ret ? 1 : classify(pid, &vmas[i]);

		if (r < 0)
			ret = -1;
		if (r == 0 && vmas[i].st && ext_file_kind(vmas[i].path, vmas[i].st)) {
			/* a deleted file or a memfd: saved whole, or an ERROR record and left out */
			char what[64], source[96];

			snprintf(what, sizeof(what), "pid %d mapping %llx-%llx", pid,
				 (unsigned long long)vmas[i].start, (unsigned long long)vmas[i].end);
			map_files_path(source, sizeof(source), pid, &vmas[i]);
			r = ext_file_admit(c, what, vmas[i].path, source);
			if (r < 0)
				ret = -1;
		}
		/* a segment the IPC section does not hold (another namespace's, made since) */
		if (!r && vmas[i].type == CKPT_VMA_SHM_IPC_SKIP &&
		    ipc_shm_objref(c, pid, vmas[i].st->st_ino, NULL) <= 0)
			r = 2;

		if (r == 2 && ckpt_unsupported(c, "pid %d: unsupported mapping %llx-%llx %s", pid,
					       (unsigned long long)vmas[i].start,
					       (unsigned long long)vmas[i].end, vmas[i].path))
			ret = -1;
		if (r == 0) {
			vmas[j++] = vmas[i];
		} else {
			free(vmas[i].path);
			free(vmas[i].st);
		}
	}
	*n = j;
	*out = vmas;
	return ret;
}

/* pages of a shared object, one pread per run of contiguous pages */
static int read_object_pages(struct page_batch *b)
{
	int i, j;

	for (i = 0; i < b->n; i = j) {
		size_t len;
		ssize_t got;

		for (j = i + 1; j < b->n && b->addr[j] == b->addr[j - 1] + PAGE_SIZE; j++)
			;
		len = (j - i) * PAGE_SIZE;
		got = pread(b->objfd, b->pages + i * PAGE_SIZE, len, b->addr[i] + b->obj_delta);
		/* a SysV segment's size need not be page-aligned: its last page reads short */
		if (got < 0 || (size_t)got + PAGE_SIZE <= len)
			return pr_perror("pid %d: read shared memory at %#llx", b->pid,
					 (unsigned long long)b->addr[i]);
		memset(b->pages + i * PAGE_SIZE + got, 0, len - got);
	}
	return 0;
}

/*
 * read the batch's pages: process_vm_readv, and /proc/pid/mem for a page it cannot read
 * (it stops there: special mappings such as the vDSO), then process_vm_readv again
 */
static int read_pages(struct page_batch *b)
{
	struct iovec remote[CKPT_PGARR_BATCH];
	int first = 0;

	if (b->objfd >= 0)
		return read_object_pages(b);

	while (first < b->n) {
		struct iovec local = { b->pages + (size_t)first * PAGE_SIZE,
				       (size_t)(b->n - first) * PAGE_SIZE };
		int nr = 0, i;
		ssize_t got;

		for (i = first; i < b->n; i++) {
			if (nr && (uint64_t)remote[nr - 1].iov_base + remote[nr - 1].iov_len == b->addr[i])
				remote[nr - 1].iov_len += PAGE_SIZE;
			else
				remote[nr++] = (struct iovec){ (void *)b->addr[i], PAGE_SIZE };
		}
		got = process_vm_readv(b->pid, &local, 1, remote, nr, 0);
		/* got is a whole number of pages: the remote vector is page-granular */
		first += got > 0 ? got / PAGE_SIZE : 0;
		if (first == b->n)
			break;
		if (b->memfd < 0) {
			char path[64];

			snprintf(path, sizeof(path), "/proc/%d/mem", b->pid);
			b->memfd = open(path, O_RDONLY | O_CLOEXEC);
			if (b->memfd < 0)
				return pr_perror("open %s", path);
		}
		if (pread(b->memfd, b->pages + (size_t)first * PAGE_SIZE, PAGE_SIZE, b->addr[first]) !=
		    PAGE_SIZE)
			return pr_perror("pid %d: read page %#llx", b->pid,
					 (unsigned long long)b->addr[first]);
		first++;
	}
	return 0;
}

/* PGARR {n} | BUFFER (n addresses, n pages), in one writev; the pages already read */
static int write_batch(struct ctx *c, int n, const uint64_t *addr, const char *pages)
{
	struct {
		struct ckpt_hdr_pgarr pgarr;
		struct ckpt_hdr buf;
	} h = {
		.pgarr = { .h = { CKPT_HDR_PGARR, sizeof(struct ckpt_hdr_pgarr) }, .nr_pages = n },
		.buf = { CKPT_HDR_BUFFER, sizeof(struct ckpt_hdr) + n * (8 + PAGE_SIZE) },
	};
	struct iovec iov[3] = {
		{ &h, sizeof(h) },
		{ (void *)addr, n * sizeof(uint64_t) },
		{ (void *)pages, n * PAGE_SIZE },
	};

	_Static_assert(sizeof(h) == 24, "PGARR and BUFFER headers are contiguous");
	if (image_writev(&c->img, iov, 3))
		return -1;
	return check_interrupted();
}

/* the batch's pages read and written (nothing if it is empty) */
static int flush_batch(struct ctx *c, struct page_batch *b)
{
	if (!b->n)
		return 0;
	/* interrupted: no more pages, the tasks are released first */
	if (check_interrupted() || read_pages(b) || write_batch(c, b->n, b->addr, b->pages))
		return -1;
	b->n = 0;
	return 0;
}

static bool page_wanted(uint32_t type, uint64_t pm)
{
	/*
	 * every page of the vDSO, mapped in or not (a debugger reads the code and the ELF
	 * headers of the core's vDSO; /proc/PID/mem reads them as gcore does)
	 */
	if (type == CKPT_VMA_VDSO)
		return true;
	if (pm & PM_SWAP)
		return true;
	if (!(pm & PM_PRESENT))
		return false;
	/* of a private file mapping only copy-on-write (anonymous) pages */
	return type != CKPT_VMA_FILE || !(pm & PM_FILE);
}

/*
 * Pagemap entries of [page, page + n) of the mm behind the pagemap fd. Read ahead to at
 * least PAGEMAP_AHEAD entries, so that thousands of small adjacent VMAs cost a few reads;
 * the tasks are frozen, so the entries stay valid while one mm is dumped.
 */
static const uint64_t *pagemap_entries(int pagemap, pid_t pid, uint64_t page, size_t *n)
{
	static uint64_t pm[PAGEMAP_CHUNK], first;
	static size_t have;
	static int fd = -1;
	static pid_t owner;	/* fd numbers are reused by the next mm's pagemap */
	ssize_t got;

	if (fd == pagemap && owner == pid && page >= first && page < first + have) {
		if (*n > first + have - page)
			*n = first + have - page;
		return pm + (page - first);
	}
	if (*n > PAGEMAP_CHUNK)
		*n = PAGEMAP_CHUNK;
	got = pread(pagemap, pm, (*n > PAGEMAP_AHEAD ? *n : PAGEMAP_AHEAD) * 8, page * 8);
	if (got < (ssize_t)(*n * 8) && got > 0)
		*n = got / 8;	/* the end of the address space */
	if (got <= 0) {
		fd = -1;
		pr_perror("pid %d: read pagemap at %#llx", pid, (unsigned long long)(page * PAGE_SIZE));
		return NULL;
	}
	fd = pagemap;
	owner = pid;
	first = page;
	have = got / 8;
	return pm;
}

/*
 * The wanted pages of v in [addr, v->end) appended to b until it is full; the address to
 * go on from (v->end once all are in), 0 on error.
 */
static uint64_t gather_pages(struct page_batch *b, int pagemap, const struct vma *v, uint64_t addr)
{
	while (addr < v->end && b->n < CKPT_PGARR_BATCH) {
		size_t n = (v->end - addr) / PAGE_SIZE, i;
		const uint64_t *pm = pagemap_entries(pagemap, b->pid, addr / PAGE_SIZE, &n);

		if (!pm)
			return 0;
		for (i = 0; i < n && b->n < CKPT_PGARR_BATCH; i++, addr += PAGE_SIZE)
			if (page_wanted(v->type, pm[i]))
				b->addr[b->n++] = addr;
	}
	return addr;
}

static uint64_t first_page(const struct vma *v)
{
	return v->no_contents ? v->end : v->start;
}

/* the pages of one mapping, then the PGARR terminator */
static int dump_vma_pages(struct ctx *c, struct page_batch *b, int pagemap, const struct vma *v)
{
	struct ckpt_hdr_pgarr end = { .nr_pages = 0 };
	uint64_t addr = first_page(v);

	while (addr < v->end) {
		addr = gather_pages(b, pagemap, v, addr);
		if (!addr || (b->n == CKPT_PGARR_BATCH && flush_batch(c, b)))
			return -1;
	}
	if (flush_batch(c, b))
		return -1;
	return write_obj(&c->img, CKPT_HDR_PGARR, &end, sizeof(end));
}

/* pages of one mapping read ahead with those of its neighbours (dump_mm) */
struct read_ahead {
	int n;
	const uint64_t *addr;
	const char *pages;
};

/*
 * Shared anonymous memory is one shmem object however many mappings and processes see
 * it, and a page one of them touched is absent from the others' page tables. Its pages
 * are therefore taken from the object itself (SEEK_DATA over /proc/PID/map_files/A-B,
 * read with pread, which faults nothing into any task): the first VMA of the object saves
 * every page in its window of the object; a later VMA of it only pages of its window no
 * earlier window covered (a mapping of another part of the object), otherwise nothing.
 */
struct shm_window {
	dev_t dev;
	ino_t ino;
	uint64_t first, end;	/* object pages [first, end) already saved */
};
static struct shm_window *shm_saved;
static int nr_shm_saved;

static bool shm_covered(const struct vma *v, uint64_t page)
{
	int i;

	for (i = 0; i < nr_shm_saved; i++) {
		const struct shm_window *w = &shm_saved[i];

		if (w->ino == v->st->st_ino && w->dev == v->st->st_dev && page >= w->first && page < w->end)
			return true;
	}
	return false;
}

/* Page addresses of v's window holding data not saved yet; with add, queued for saving. */
static int shm_pages(struct ctx *c, struct page_batch *b, const struct vma *v, bool add, bool *any)
{
	uint64_t off = v->pgoff * PAGE_SIZE, end = off + (v->end - v->start);

	*any = false;
	while (off < end) {
		off_t data = lseek(b->objfd, off, SEEK_DATA), hole;

		if (data < 0 && errno == ENXIO)
			break;	/* no data after off */
		hole = data < 0 ? -1 : lseek(b->objfd, data, SEEK_HOLE);
		if (hole < 0)
			return pr_perror("pid %d: find the pages of shared memory %#llx-%#llx", b->pid,
					 (unsigned long long)v->start, (unsigned long long)v->end);
		for (off = data & ~(PAGE_SIZE - 1); off < (uint64_t)hole && off < end; off += PAGE_SIZE) {
			if (shm_covered(v, off / PAGE_SIZE))
				continue;
			*any = true;
			if (!add)
				return 0;
			b->addr[b->n++] = off - b->obj_delta;
			if (b->n == CKPT_PGARR_BATCH && flush_batch(c, b))
				return -1;
		}
		off = hole;
	}
	return 0;
}

/* VMA [contents] of a shared anonymous mapping; first: the first VMA of its object */
static int dump_shm_anon(struct ctx *c, struct page_batch *b, struct ckpt_hdr_vma *h,
			 const struct vma *v, bool first)
{
	struct ckpt_hdr_pgarr end = { .nr_pages = 0 };
	struct shm_window *w;
	char path[96];
	bool any;
	int ret = -1;

	map_files_path(path, sizeof(path), b->pid, v);
	b->objfd = open(path, O_RDONLY | O_CLOEXEC);
	if (b->objfd < 0)
		return pr_perror("open %s (the shared memory's object)", path);
	b->obj_delta = v->pgoff * PAGE_SIZE - v->start;
	if (shm_pages(c, b, v, false, &any))
		goto out;
	if (write_obj(&c->img, CKPT_HDR_VMA, h, sizeof(*h)))
		goto out;
	if (first || any) {
		if (shm_pages(c, b, v, true, &any) || flush_batch(c, b) ||
		    write_obj(&c->img, CKPT_HDR_PGARR, &end, sizeof(end)))
			goto out;
	}
	w = realloc(shm_saved, (nr_shm_saved + 1) * sizeof(*w));
	if (!w) {
		pr_perror("shared memory list");
		goto out;
	}
	shm_saved = w;
	shm_saved[nr_shm_saved++] = (struct shm_window){ v->st->st_dev, v->st->st_ino, v->pgoff,
							 v->pgoff + (v->end - v->start) / PAGE_SIZE };
	ret = 0;
out:
	close(b->objfd);
	b->objfd = -1;
	return ret;
}

/*
 * The pages of a SysV shm segment (ipc.c) from its file, fd: PGARR batches whose
 * addresses are offsets in the segment, then the terminator; only pages that hold data.
 */
int dump_segment_pages(struct ctx *c, int fd, uint64_t size)
{
	struct page_batch b = { .memfd = -1, .objfd = fd, .obj_delta = 0 };
	struct ckpt_hdr_pgarr end = { .nr_pages = 0 };
	uint64_t off = 0;
	int ret = -1;

	b.pages = malloc(CKPT_PGARR_BATCH * PAGE_SIZE);
	if (!b.pages)
		return pr_perror("page batch");
	while (off < size) {
		off_t data = lseek(fd, off, SEEK_DATA), hole;

		if (data < 0 && errno == ENXIO)
			break;	/* no data after off */
		hole = data < 0 ? -1 : lseek(fd, data, SEEK_HOLE);
		if (hole < 0) {
			pr_perror("find the pages of a SysV shm segment");
			goto out;
		}
		for (off = data & ~(PAGE_SIZE - 1); off < (uint64_t)hole && off < size; off += PAGE_SIZE) {
			b.addr[b.n++] = off;
			if (b.n == CKPT_PGARR_BATCH && flush_batch(c, &b))
				goto out;
		}
	}
	if (flush_batch(c, &b))
		goto out;
	ret = write_obj(&c->img, CKPT_HDR_PGARR, &end, sizeof(end));
out:
	free(b.pages);
	return ret;
}

/* [vm_file object] VMA [contents]; pre: its pages, already read (or NULL) */
static int dump_vma(struct ctx *c, struct task *t, struct page_batch *b, int pagemap, const struct vma *v,
		    const struct read_ahead *pre)
{
	struct ckpt_hdr_vma h = {
		.vma_type = v->type,
		.vm_start = v->start,
		.vm_end = v->end,
		.vm_page_prot = page_prot(v->vm_flags),
		.vm_flags = v->vm_flags,
		.vm_pgoff = v->pgoff,
		.hugetlb_shift = 0,
	};
	bool contents = v->type != CKPT_VMA_SHM_FILE;

	if (v->type == CKPT_VMA_FILE || v->type == CKPT_VMA_SHM_FILE) {
		bool rw = v->type == CKPT_VMA_SHM_FILE && (v->vm_flags & VM_MAYWRITE);

		char source[96];

		map_files_path(source, sizeof(source), t->tid, v);
		h.vma_objref = dump_mapped_file(c, t, v->path, v->st,
						(rw ? O_RDWR : O_RDONLY) | O_LARGEFILE_K, source);
		if (h.vma_objref < 0)
			return -1;
	}
	if (v->type == CKPT_VMA_SHM_IPC_SKIP) {
		/* as the kernel wrote it: the contents are the IPC section's, not repeated here */
		h.ino_objref = ipc_shm_objref(c, t->tid, v->st->st_ino, &h.ino_size);
		return h.ino_objref < 0 ? -1 : write_obj(&c->img, CKPT_HDR_VMA, &h, sizeof(h));
	}
	if (v->type == CKPT_VMA_SHM_ANON) {
		bool first;

		/* the shared inode is defined by its first use, which carries the contents */
		h.ino_objref = obj_lookup_add(c->objs, CKPT_OBJ_INODE, v->st->st_dev, v->st->st_ino, &first);
		if (h.ino_objref < 0)
			return -1;
		h.ino_size = v->st->st_size;
		return dump_shm_anon(c, b, &h, v, first);
	}
	if (write_obj(&c->img, CKPT_HDR_VMA, &h, sizeof(h)))
		return -1;
	if (contents && pre) {
		struct ckpt_hdr_pgarr end = { .nr_pages = 0 };

		if (pre->n && write_batch(c, pre->n, pre->addr, pre->pages))
			return -1;
		return write_obj(&c->img, CKPT_HDR_PGARR, &end, sizeof(end));
	}
	return contents ? dump_vma_pages(c, b, pagemap, v) : 0;
}

/* the mappings whose pages are read from the process's memory (dump_vma_pages) */
static bool pages_from_memory(const struct vma *v)
{
	return v->type == CKPT_VMA_ANON || v->type == CKPT_VMA_FILE || v->type == CKPT_VMA_VDSO;
}

/*
 * vmas[i], or vmas[i..*next) whose pages fit in one batch together: thousands of small
 * mappings then cost one process_vm_readv per batch, not one each.
 */
static int dump_vma_group(struct ctx *c, struct task *t, struct page_batch *b, int pagemap,
			  const struct vma *vmas, int nr_vmas, int i, int *next)
{
	int start[CKPT_PGARR_BATCH + 1], k = 0, j;

	b->n = 0;
	for (j = i; j < nr_vmas && k < CKPT_PGARR_BATCH && pages_from_memory(&vmas[j]); j++) {
		int before = b->n;
		uint64_t end = gather_pages(b, pagemap, &vmas[j], first_page(&vmas[j]));

		if (!end)
			return -1;
		if (end < vmas[j].end) {
			b->n = before;	/* more pages than the batch has room for */
			break;
		}
		start[k++] = before;
	}
	if (k == 0) {
		*next = i + 1;
		return dump_vma(c, t, b, pagemap, &vmas[i], NULL);
	}
	*next = i + k;
	start[k] = b->n;
	if (check_interrupted() || read_pages(b))
		return -1;
	for (j = 0; j < k; j++) {
		struct read_ahead pre = { start[j + 1] - start[j], b->addr + start[j],
					  b->pages + (size_t)start[j] * PAGE_SIZE };

		if (dump_vma(c, t, b, pagemap, &vmas[i + j], &pre))
			return -1;
	}
	b->n = 0;
	return 0;
}

/* saved_auxv: at_vector_size u64 words, zero padded */
static int dump_auxv(struct ctx *c, pid_t pid)
{
	uint64_t auxv[CKPT_AT_VECTOR_SIZE] = { 0 };
	size_t len;
	char *raw = proc_read(pid, "auxv", &len);

	if (!raw)
		return pr_perror("read /proc/%d/auxv", pid);
	if (len > sizeof(auxv) &&
	    ckpt_unsupported(c, "pid %d: auxv of %zu words, the image holds %d: tail dropped", pid,
			     len / 8, CKPT_AT_VECTOR_SIZE - 2)) {
		free(raw);
		return -1;
	}
	/* keep the last pair AT_NULL when cutting */
	memcpy(auxv, raw, len > sizeof(auxv) ? sizeof(auxv) - 16 : len);
	free(raw);
	return write_buffer(&c->img, CKPT_HDR_BUFFER, auxv, sizeof(auxv));
}

static int dump_exe(struct ctx *c, struct task *t)
{
	char path[4096], name[64];
	struct stat st;

	if (proc_readlink(t->tid, "exe", path, sizeof(path)))
		return 0;	/* no executable (kernel thread) */
	snprintf(name, sizeof(name), "/proc/%d/exe", t->tid);
	if (stat(name, &st) || (deleted(path) && ext_file_kind(path, &st) != EXT_FILE_GHOST))
		return ckpt_unsupported(c, "pid %d: executable %s cannot be saved", t->tid, path) ? -1 : 0;
	if (deleted(path)) {
		/* a deleted executable (an upgraded program) is a ghost like any deleted file */
		char what[64];
		int r;

		snprintf(what, sizeof(what), "pid %d executable", t->tid);
		r = ext_file_admit(c, what, path, name);
		if (r)
			return r < 0 ? -1 : 0;
	}
	return dump_mapped_file(c, t, path, &st, O_RDONLY | O_LARGEFILE_K | FMODE_EXEC_K, name);
}

static int dump_mm_struct(struct ctx *c, struct task *t, int nr_vmas, int exe_ref)
{
	const struct proc_stat *st = &t->st;
	struct process *p = t->proc;
	char *filter = proc_read(t->tid, "coredump_filter", NULL);
	struct ckpt_hdr_mm h = {
		.map_count = nr_vmas,
		.exe_objref = exe_ref,
		.def_flags = 0,
		.flags = p->dumpable | (filter ? strtoull(filter, NULL, 16) : 0) << MMF_DUMP_FILTER_SHIFT,
		.start_code = st->start_code, .end_code = st->end_code,
		.start_data = st->start_data, .end_data = st->end_data,
		.start_brk = st->start_brk, .brk = p->probed ? p->brk : st->start_brk,
		.start_stack = st->start_stack,
		.arg_start = st->arg_start, .arg_end = st->arg_end,
		.env_start = st->env_start, .env_end = st->env_end,
	};

	free(filter);
	return write_obj(&c->img, CKPT_HDR_MM, &h, sizeof(h));
}

/* OBJREF(MM) [exe file] MM BUFFER(auxv) VMAs MM_CONTEXT MM_CONTEXT_LDT, the first time */
int dump_mm(struct ctx *c, struct task *t)
{
	struct page_batch b = { .pid = t->tid, .memfd = -1, .objfd = -1 };
	struct vma *vmas = NULL;
	int nr_vmas = 0, i, next, exe_ref, pagemap = -1, ret = -1;
	uint64_t vdso = 0;
	char path[64];
	bool first;
	int ref = obj_lookup_add(c->objs, CKPT_OBJ_MM, c->tasks[t->share[SHARE_VM]].tid, 0, &first);

	if (ref < 0 || !first)
		return ref;
	snprintf(path, sizeof(path), "/proc/%d/pagemap", t->tid);
	pagemap = open(path, O_RDONLY | O_CLOEXEC);
	b.pages = malloc(CKPT_PGARR_BATCH * PAGE_SIZE);
	if (pagemap < 0 || !b.pages) {
		pr_perror("open %s", path);
		goto out;
	}
	if (read_vmas(c, t->tid, &vmas, &nr_vmas) || write_objref(&c->img, CKPT_OBJ_MM, ref))
		goto out;
	exe_ref = dump_exe(c, t);
	if (exe_ref < 0 || dump_mm_struct(c, t, nr_vmas, exe_ref) || dump_auxv(c, t->tid))
		goto out;
	for (i = 0; i < nr_vmas; i++)
		if (vmas[i].type == CKPT_VMA_VDSO)
			vdso = vmas[i].start;
	for (i = 0; i < nr_vmas; i = next)
		if (dump_vma_group(c, t, &b, pagemap, vmas, nr_vmas, i, &next))
			goto out;
	if (arch_dump_mm_context(c, vdso))
		goto out;
	ret = ref;
out:
	free_vmas(vmas, nr_vmas);
	free(b.pages);
	if (b.memfd >= 0)
		close(b.memfd);
	if (pagemap >= 0)
		close(pagemap);
	return ret;
}
