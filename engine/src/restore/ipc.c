/*
 * SysV IPC on restore: the IPC sections after an IPC_NS, the tasks joining the restored
 * namespace (TASK_NS), segments attached again (SHM_IPC_SKIP VMAs). The mirror of ipc.c.
 *
 * --pidns (the default): an image whose IPC sections hold objects gets a new ipc
 * namespace, made by the driver (unshare, then back to its own); the image's limits are
 * written to its sysctls, and each object is created there with its own id (the
 * namespace's {shm,msg,sem}_next_id written just before), key, creator (the driver takes
 * cuid/cgid as its effective ids for the create), owner and mode; then segment pages (the
 * driver attaches the segment and reads the page data from the image into it), messages
 * in their order (msgsnd), semaphore values (SETALL). Every task of that namespace joins
 * it with an injected setns() at its TASK_NS, before its memory: its SHM_IPC_SKIP VMAs are
 * an injected shmat(SHM_REMAP) at their address. A segment marked for destruction
 * (SHM_DEST) is removed at the release, once attached. An image whose sections are empty
 * leaves the tree in the caller's ipc namespace.
 *
 * --no-pidns: the objects are made in the caller's namespace; an id or key in use there is
 * refused (in the metadata pass when the image is seekable), and a failed restore removes
 * what it made.
 *
 * Not restored (the kernel offers no way): times (shm_atime/dtime/ctime, msg
 * stime/rtime/ctime, sem otime/ctime) and pids (shm_cpid/lpid, msg lspid/lrpid, sempid)
 * are the restore's own; the namespace's limits of a --no-pidns restore are the caller's.
 */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "restore.h"

#define VM_WRITE_K	0x2ULL
#define VM_EXEC_K	0x4ULL
#define SEMVMX_K	32767
#define MAX_MSG_BYTES	(64U << 20)	/* a message or queue larger than this is refused */
#define MAX_NSEMS	65536

struct rmsg {
	long mtype;
	char mtext[];
};

union semun_k {
	int val;
	struct semid_ds *buf;
	unsigned short *array;
};

enum { IPC_KIND_SHM, IPC_KIND_MSG, IPC_KIND_SEM, NR_IPC_KIND };
static const char *const kind_name[NR_IPC_KIND] = { "shm segment", "message queue", "semaphore set" };
static const char *const next_id_sysctl[NR_IPC_KIND] = { "shm_next_id", "msg_next_id", "sem_next_id" };
static const uint32_t section_type[NR_IPC_KIND] = { CKPT_HDR_IPC_SHM, CKPT_HDR_IPC_MSG, CKPT_HDR_IPC_SEM };

struct rns {			/* an IPC_NS of the image */
	int ref;
	int fd;			/* the namespace made for it, -1: the caller's */
	bool made;
	int sections;		/* IPC sections read so far (shm, msg, sem in that order) */
	struct ckpt_hdr_ipcns lim;
};

struct rseg {			/* a segment, by the objref its VMAs name */
	int ref, ns;		/* ns: index in ripc.ns */
	int id;
	uint64_t size;
	bool dest;
};

struct rmade {			/* an object made in the caller's namespace (removed on failure) */
	int kind, id;
};

struct ripc {
	struct rns *ns;
	int nr_ns;
	struct { int ns_ref, ipc_ref; } *link;	/* NS objref -> its IPC_NS objref */
	int nr_link;
	struct rseg *seg;
	int nr_seg;
	struct rmade *made;
	int nr_made;
	int home;		/* the driver's own ipc namespace */
	int cur;		/* the IPC_NS whose sections are being read */
	int *task_ns;		/* per task (TREE order): index in ns of its TASK_NS's, -1 none */
};

static struct ripc *ripc(struct rctx *c)
{
	if (!c->ipc) {
		c->ipc = calloc(1, sizeof(*c->ipc));
		if (!c->ipc) {
			pr_perror("ipc state");
			return NULL;
		}
		c->ipc->home = -1;
		c->ipc->cur = -1;
	}
	return c->ipc;
}

static void *grow(void *arr, int n, size_t size)
{
	void *na = realloc(arr, (n + 1) * size);

	if (!na)
		pr_perror("ipc state");
	return na;
}

void ipc_reset(struct rctx *c)
{
	struct ripc *r = c->ipc;

	if (!r)
		return;
	if (r->home >= 0)
		close(r->home);
	free(r->ns);
	free(r->link);
	free(r->seg);
	free(r->made);
	free(r->task_ns);
	free(r);
	c->ipc = NULL;
}

/* ---- the driver in the namespace of an IPC_NS ---- */

static int enter(struct ripc *r, struct rns *ns)
{
	if (ns->fd < 0)
		return 0;
	if (r->home < 0)
		r->home = open("/proc/self/ns/ipc", O_RDONLY | O_CLOEXEC);
	if (r->home < 0 || setns(ns->fd, CLONE_NEWIPC))
		return pr_perror("enter the restored ipc namespace");
	return 0;
}

static int leave(struct ripc *r, struct rns *ns)
{
	if (ns->fd >= 0 && setns(r->home, CLONE_NEWIPC))
		return pr_perror("return to the restorer's ipc namespace");
	return 0;
}

static int write_sysctl(const char *name, const char *value)
{
	char path[64];
	int fd, ok;

	snprintf(path, sizeof(path), "/proc/sys/kernel/%s", name);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return pr_perror("open %s", path);
	ok = write(fd, value, strlen(value)) == (ssize_t)strlen(value);
	close(fd);
	return ok ? 0 : pr_perror("write %s to %s", value, path);
}

static int write_sysctl_u64(const char *name, unsigned long long v)
{
	char buf[32];

	snprintf(buf, sizeof(buf), "%llu", v);
	return write_sysctl(name, buf);
}

/* a new ipc namespace for ns, with the image's limits */
static int make_ns(struct rctx *c, struct ripc *r, struct rns *ns)
{
	const struct ckpt_hdr_ipcns *l = &ns->lim;
	char sem[80];
	int ret;

	if (r->home < 0)
		r->home = open("/proc/self/ns/ipc", O_RDONLY | O_CLOEXEC);
	if (r->home < 0 || unshare(CLONE_NEWIPC))
		return pr_perror("make an ipc namespace");
	ns->fd = open("/proc/self/ns/ipc", O_RDONLY | O_CLOEXEC);
	snprintf(sem, sizeof(sem), "%d %d %d %d", l->sem_ctl_msl, l->sem_ctl_mns, l->sem_ctl_opm,
		 l->sem_ctl_mni);
	ret = ns->fd < 0 || write_sysctl_u64("shmmax", l->shm_ctlmax) ||
	      write_sysctl_u64("shmall", l->shm_ctlall) || write_sysctl_u64("shmmni", l->shm_ctlmni) ||
	      write_sysctl_u64("msgmax", l->msg_ctlmax) || write_sysctl_u64("msgmnb", l->msg_ctlmnb) ||
	      write_sysctl_u64("msgmni", l->msg_ctlmni) || write_sysctl("sem", sem) ? -1 : 0;
	if (setns(r->home, CLONE_NEWIPC))
		ret = pr_perror("return to the restorer's ipc namespace");
	if (!ret)
		c->objs[ns->ref].fd = ns->fd;	/* closed at the release with the other objects */
	return ret ? rst_refuse(c, "cannot set up the restored ipc namespace: %s", last_error()) : 0;
}

/* ---- records ---- */

int ipc_ns_begin(struct rctx *c, int ref, const struct ckpt_hdr_ipcns *lim)
{
	struct ripc *r = ripc(c);
	struct rns *n;

	if (!r || !(n = grow(r->ns, r->nr_ns, sizeof(*n))))
		return -1;
	r->ns = n;
	r->ns[r->nr_ns] = (struct rns){ .ref = ref, .fd = -1, .lim = *lim };
	r->cur = r->nr_ns++;
	return 0;
}

int ipc_ns_link(struct rctx *c, int ns_ref, int ipc_ref)
{
	struct ripc *r = ripc(c);
	void *n;

	if (!r || !(n = grow(r->link, r->nr_link, sizeof(*r->link))))
		return -1;
	r->link = n;
	r->link[r->nr_link].ns_ref = ns_ref;
	r->link[r->nr_link++].ipc_ref = ipc_ref;
	return 0;
}

static struct rns *ns_by_ref(struct ripc *r, int ref)
{
	int i;

	for (i = 0; i < r->nr_ns; i++)
		if (r->ns[i].ref == ref)
			return &r->ns[i];
	return NULL;
}

/* id or key of an object of the image already in use in the namespace the driver is in */
static int check_free(struct rctx *c, int kind, const struct ckpt_hdr_ipc_perms *p)
{
	struct shmid_ds sd;
	struct msqid_ds md;
	struct semid_ds xd;
	int by_id, by_key = -1;

	switch (kind) {
	case IPC_KIND_SHM:
		by_id = shmctl(p->id, IPC_STAT, &sd);
		if (p->key != IPC_PRIVATE)
			by_key = shmget(p->key, 0, 0);
		break;
	case IPC_KIND_MSG:
		by_id = msgctl(p->id, IPC_STAT, &md);
		if (p->key != IPC_PRIVATE)
			by_key = msgget(p->key, 0);
		break;
	default:
		by_id = semctl(p->id, 0, IPC_STAT, (union semun_k){ .buf = &xd });
		if (p->key != IPC_PRIVATE)
			by_key = semget(p->key, 0, 0);
		break;
	}
	if (by_id == 0 || (by_id < 0 && errno == EACCES))
		return rst_refuse(c, "SysV %s id %d is taken in this ipc namespace (a restore "
				  "without --no-pidns gets a namespace of its own)", kind_name[kind], p->id);
	if (by_key >= 0)
		return rst_refuse(c, "SysV %s key %#x is taken in this ipc namespace (id %d; a "
				  "restore without --no-pidns gets a namespace of its own)",
				  kind_name[kind], p->key, by_key);
	return 0;
}

/* the driver's effective ids for a create: the object's creator becomes cuid/cgid */
static int creator_ids(uint32_t uid, uint32_t gid)
{
	if (syscall(SYS_setresgid, -1, gid, -1) || syscall(SYS_setresuid, -1, uid, -1))
		return pr_perror("take uid %u gid %u to create the object", uid, gid);
	return 0;
}

static void own_ids(void)
{
	if (syscall(SYS_setresuid, -1, getuid(), -1) || syscall(SYS_setresgid, -1, getgid(), -1))
		pr_perror("take back the restorer's ids");
}

/* create the object of p with its id, as its creator; its owner and mode after */
static int create(struct rctx *c, int kind, const struct ckpt_hdr_ipc_perms *p, uint64_t size,
		  uint32_t nsems)
{
	int flags = (p->mode & 0777) | IPC_CREAT | IPC_EXCL, id;
	char idtext[16];
	bool switch_ids = p->cuid != geteuid() || p->cgid != getegid();

	if (!c->pidns && check_free(c, kind, p))
		return -1;
	snprintf(idtext, sizeof(idtext), "%d", p->id);
	if (write_sysctl(next_id_sysctl[kind], idtext))
		return rst_refuse(c, "SysV %s %d: cannot choose its id (%s)", kind_name[kind], p->id,
				  last_error());
	if (switch_ids && creator_ids(p->cuid, p->cgid)) {
		write_sysctl(next_id_sysctl[kind], "-1");
		return rst_refuse(c, "SysV %s %d: %s", kind_name[kind], p->id, last_error());
	}
	id = kind == IPC_KIND_SHM ? shmget(p->key, size, flags) :
	     kind == IPC_KIND_MSG ? msgget(p->key, flags) : semget(p->key, nsems, flags);
	if (id < 0)
		pr_perror("create SysV %s %d", kind_name[kind], p->id);
	if (switch_ids)
		own_ids();
	if (id < 0) {
		write_sysctl(next_id_sysctl[kind], "-1");
		return rst_refuse(c, "%s", last_error());
	}
	if (id != p->id) {
		if (kind == IPC_KIND_SHM)
			shmctl(id, IPC_RMID, NULL);
		else if (kind == IPC_KIND_MSG)
			msgctl(id, IPC_RMID, NULL);
		else
			semctl(id, 0, IPC_RMID);
		return rst_refuse(c, "SysV %s %d was created as id %d", kind_name[kind], p->id, id);
	}
	if (!c->pidns) {
		struct ripc *r = c->ipc;
		struct rmade *m = grow(r->made, r->nr_made, sizeof(*m));

		if (!m)
			return -1;
		r->made = m;
		r->made[r->nr_made++] = (struct rmade){ kind, id };
	}
	return 0;
}

/* owner and mode, once the object holds its contents */
static void set_perms(struct ipc_perm *k, const struct ckpt_hdr_ipc_perms *p)
{
	k->uid = p->uid;
	k->gid = p->gid;
	k->mode = p->mode & 0777;
}

/* PGARR/BUFFER batches of segment pages into base (NULL: skipped), up to the terminator */
static int read_segment_pages(struct rctx *c, char *base, uint64_t size)
{
	uint64_t limit = (size + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1);

	for (;;) {
		struct ckpt_hdr_pgarr pg;
		struct ckpt_hdr h, b;
		uint64_t *addr, i, j;
		int ret = 0;

		if (rs_expect(&c->in, CKPT_HDR_PGARR, &h) || rs_record(&c->in, &h, &pg, sizeof(pg)))
			return -1;
		if (!pg.nr_pages)
			return 0;
		if (pg.nr_pages > CKPT_PGARR_BATCH || rs_expect(&c->in, CKPT_HDR_BUFFER, &b) ||
		    b.len - sizeof(b) != pg.nr_pages * (8 + PAGE_SIZE))
			return c->in.invalid ? -1 : rs_invalid(&c->in, "SysV shm pages at offset %llu: "
					       "a bad batch", (unsigned long long)c->in.rec_off);
		addr = malloc(pg.nr_pages * 8);
		if (!addr)
			return pr_perror("page offsets");
		if (rs_read(&c->in, addr, pg.nr_pages * 8)) {
			free(addr);
			return -1;
		}
		for (i = 0; i < pg.nr_pages && !ret; i++)
			if ((addr[i] & (PAGE_SIZE - 1)) || addr[i] >= limit)
				ret = rs_invalid(&c->in, "SysV shm pages at offset %llu: offset %#llx is "
						 "outside the segment of %llu bytes",
						 (unsigned long long)c->in.rec_off,
						 (unsigned long long)addr[i], (unsigned long long)size);
		/* runs of consecutive offsets in one read, straight into the segment */
		for (i = 0; i < pg.nr_pages && !ret; i = j) {
			for (j = i + 1; j < pg.nr_pages && addr[j] == addr[j - 1] + PAGE_SIZE; j++)
				;
			ret = base ? rs_read(&c->in, base + addr[i], (j - i) * PAGE_SIZE) :
				     rs_skip(&c->in, (j - i) * PAGE_SIZE);
		}
		free(addr);
		if (ret)
			return -1;
	}
}

static int restore_shm(struct rctx *c, struct ripc *r, struct rns *ns)
{
	struct ckpt_hdr_ipc_shm s;
	struct ckpt_hdr h;
	struct shmid_ds ds;
	struct rseg *sg;
	struct robj *o;
	bool first;
	char *m;
	int ret;

	if (rs_expect(&c->in, CKPT_HDR_IPC_SHM, &h) || rs_record(&c->in, &h, &s, sizeof(s)))
		return -1;
	if (s.perms.id < 0 || !s.shm_segsz || s.shm_segsz > (1ULL << 46) ||
	    s.flags & ~(SHM_NORESERVE | SHM_HUGETLB))
		return rs_invalid(&c->in, "IPC_SHM at offset %llu: id %d, %llu bytes, flags %#x",
				  (unsigned long long)c->in.rec_off, s.perms.id,
				  (unsigned long long)s.shm_segsz, s.flags);
	if (s.flags & SHM_HUGETLB || s.shift)
		return rst_refuse(c, "SysV shm segment %d is hugetlb", s.perms.id);
	o = obj_implicit(c, s.objref, CKPT_OBJ_INODE, &first);
	if (!o)
		return -1;
	if (!first)
		return rs_invalid(&c->in, "IPC_SHM at offset %llu: objref %u defined twice",
				  (unsigned long long)c->in.rec_off, s.objref);
	sg = grow(r->seg, r->nr_seg, sizeof(*sg));
	if (!sg)
		return -1;
	r->seg = sg;
	r->seg[r->nr_seg++] = (struct rseg){ .ref = s.objref, .ns = ns - r->ns, .id = s.perms.id,
					     .size = s.shm_segsz, .dest = s.perms.mode & SHM_DEST };
	if (c->dry)
		return (!c->pidns && check_free(c, IPC_KIND_SHM, &s.perms)) ? -1 :
		       read_segment_pages(c, NULL, s.shm_segsz);
	if (enter(r, ns))
		return -1;
	ret = create(c, IPC_KIND_SHM, &s.perms, s.shm_segsz, 0);
	m = ret ? (void *)-1 : shmat(s.perms.id, NULL, 0);
	if (!ret && m == (void *)-1)
		ret = pr_perror("attach SysV shm segment %d", s.perms.id);
	if (!ret)
		ret = read_segment_pages(c, m, s.shm_segsz);
	if (m != (void *)-1)
		shmdt(m);
	if (!ret && shmctl(s.perms.id, IPC_STAT, &ds))
		ret = pr_perror("stat SysV shm segment %d", s.perms.id);
	if (!ret) {
		set_perms(&ds.shm_perm, &s.perms);
		if (shmctl(s.perms.id, IPC_SET, &ds))
			ret = pr_perror("set the owner and mode of SysV shm segment %d", s.perms.id);
	}
	if (!ret && s.perms.mode & SHM_LOCKED && shmctl(s.perms.id, SHM_LOCK, NULL))
		ret = rst_refuse(c, "SysV shm segment %d was locked in memory: SHM_LOCK: %s",
				 s.perms.id, strerror(errno));
	return leave(r, ns) || ret ? -1 : 0;
}

/* one IPC_MSG_MSG and its text (BUFFERs totalling m_ts) into m */
static int read_message(struct rctx *c, struct rmsg *m, uint64_t room,
			uint32_t *len)
{
	struct ckpt_hdr_ipc_msg_msg mm;
	struct ckpt_hdr h;
	uint32_t got = 0;

	if (rs_expect(&c->in, CKPT_HDR_IPC_MSG_MSG, &h) || rs_record(&c->in, &h, &mm, sizeof(mm)))
		return -1;
	if (mm.m_ts > room || mm.m_type <= 0)
		return rs_invalid(&c->in, "IPC_MSG_MSG at offset %llu: type %lld, %u bytes in a queue "
				  "of %llu more", (unsigned long long)c->in.rec_off, (long long)mm.m_type,
				  mm.m_ts, (unsigned long long)room);
	while (got < mm.m_ts) {
		if (rs_expect(&c->in, CKPT_HDR_BUFFER, &h))
			return -1;
		if (h.len - sizeof(h) > mm.m_ts - got || h.len == sizeof(h))
			return rs_invalid(&c->in, "BUFFER at offset %llu: %zu bytes of a message's %u left",
					  (unsigned long long)c->in.rec_off, h.len - sizeof(h),
					  mm.m_ts - got);
		if (rs_read(&c->in, m->mtext + got, h.len - sizeof(h)))
			return -1;
		got += h.len - sizeof(h);
	}
	m->mtype = mm.m_type;
	*len = mm.m_ts;
	return 0;
}

static int restore_msg(struct rctx *c, struct ripc *r, struct rns *ns)
{
	struct ckpt_hdr_ipc_msg q;
	struct rmsg *m;
	struct msqid_ds ds;
	struct ckpt_hdr h;
	uint64_t i, left;
	int ret = 0;

	if (rs_expect(&c->in, CKPT_HDR_IPC_MSG, &h) || rs_record(&c->in, &h, &q, sizeof(q)))
		return -1;
	if (q.perms.id < 0 || q.q_cbytes > MAX_MSG_BYTES || q.q_qnum > q.q_cbytes + 65536)
		return rs_invalid(&c->in, "IPC_MSG at offset %llu: id %d, %llu messages of %llu bytes",
				  (unsigned long long)c->in.rec_off, q.perms.id,
				  (unsigned long long)q.q_qnum, (unsigned long long)q.q_cbytes);
	m = malloc(sizeof(*m) + q.q_cbytes + 1);
	if (!m)
		return pr_perror("message buffer");
	if (!c->dry && (enter(r, ns) || create(c, IPC_KIND_MSG, &q.perms, 0, 0))) {
		free(m);
		return -1;
	}
	if (!c->dry && !msgctl(q.perms.id, IPC_STAT, &ds) && ds.msg_qbytes < q.q_cbytes) {
		ds.msg_qbytes = q.q_cbytes;	/* room for every message while they are sent */
		if (msgctl(q.perms.id, IPC_SET, &ds))
			ret = rst_refuse(c, "SysV message queue %d held %llu bytes, more than this "
					 "namespace lets a queue hold: %s", q.perms.id,
					 (unsigned long long)q.q_cbytes, strerror(errno));
	}
	if (c->dry && !c->pidns)
		ret = check_free(c, IPC_KIND_MSG, &q.perms);
	for (i = 0, left = q.q_cbytes; i < q.q_qnum && !ret; i++) {
		uint32_t len = 0;

		ret = read_message(c, m, left, &len);
		if (!ret && !c->dry && msgsnd(q.perms.id, m, len, IPC_NOWAIT))
			ret = rst_refuse(c, "SysV message queue %d: message %llu of %u bytes: %s",
					 q.perms.id, (unsigned long long)i, len, strerror(errno));
		left -= len;
	}
	free(m);
	if (!ret && left)
		ret = rs_invalid(&c->in, "IPC_MSG at offset %llu: its messages hold %llu bytes less "
				 "than q_cbytes", (unsigned long long)c->in.rec_off, (unsigned long long)left);
	if (c->dry || ret)
		return c->dry ? ret : (leave(r, ns), -1);
	if (msgctl(q.perms.id, IPC_STAT, &ds))
		ret = pr_perror("stat SysV message queue %d", q.perms.id);
	if (!ret) {
		set_perms(&ds.msg_perm, &q.perms);
		ds.msg_qbytes = q.q_qbytes;
		if (msgctl(q.perms.id, IPC_SET, &ds))
			ret = rst_refuse(c, "SysV message queue %d: set owner, mode and size %llu: %s",
					 q.perms.id, (unsigned long long)q.q_qbytes, strerror(errno));
	}
	return leave(r, ns) || ret ? -1 : 0;
}

static int restore_sem(struct rctx *c, struct ripc *r, struct rns *ns)
{
	struct ckpt_hdr_ipc_sem s;
	struct ckpt_sem *sem = NULL;
	unsigned short *val = NULL;
	struct semid_ds ds;
	struct ckpt_hdr h;
	uint32_t k;
	int ret = -1;

	if (rs_expect(&c->in, CKPT_HDR_IPC_SEM, &h) || rs_record(&c->in, &h, &s, sizeof(s)))
		return -1;
	if (s.perms.id < 0 || !s.sem_nsems || s.sem_nsems > MAX_NSEMS)
		return rs_invalid(&c->in, "IPC_SEM at offset %llu: id %d, %u semaphores",
				  (unsigned long long)c->in.rec_off, s.perms.id, s.sem_nsems);
	sem = malloc(s.sem_nsems * sizeof(*sem));
	val = malloc(s.sem_nsems * sizeof(*val));
	if (!sem || !val) {
		pr_perror("semaphore values");
		goto out;
	}
	if (rs_expect(&c->in, CKPT_HDR_BUFFER, &h) ||
	    rs_payload(&c->in, &h, sem, s.sem_nsems * sizeof(*sem), s.sem_nsems * sizeof(*sem)))
		goto out;
	for (k = 0; k < s.sem_nsems; k++) {
		if (sem[k].semval < 0 || sem[k].semval > SEMVMX_K) {
			rs_invalid(&c->in, "IPC_SEM at offset %llu: semaphore %u has value %d",
				   (unsigned long long)c->in.rec_off, k, sem[k].semval);
			goto out;
		}
		val[k] = sem[k].semval;
	}
	if (c->dry) {
		ret = !c->pidns ? check_free(c, IPC_KIND_SEM, &s.perms) : 0;
		goto out;
	}
	if (enter(r, ns))
		goto out;
	ret = create(c, IPC_KIND_SEM, &s.perms, 0, s.sem_nsems);
	if (!ret && semctl(s.perms.id, 0, SETALL, (union semun_k){ .array = val }))
		ret = pr_perror("set the values of SysV semaphore set %d", s.perms.id);
	if (!ret && semctl(s.perms.id, 0, IPC_STAT, (union semun_k){ .buf = &ds }))
		ret = pr_perror("stat SysV semaphore set %d", s.perms.id);
	if (!ret) {
		set_perms(&ds.sem_perm, &s.perms);
		if (semctl(s.perms.id, 0, IPC_SET, (union semun_k){ .buf = &ds }))
			ret = pr_perror("set the owner and mode of SysV semaphore set %d", s.perms.id);
	}
	if (leave(r, ns))
		ret = -1;
out:
	free(sem);
	free(val);
	return ret;
}

/* IPC {type, count} and its objects: shm, msg, sem, in that order, after their IPC_NS */
int restore_ipc_section(struct rctx *c, const struct ckpt_hdr *h)
{
	struct ripc *r = ripc(c);
	struct ckpt_hdr_ipc i;
	struct rns *ns;
	uint32_t k;
	int kind;

	if (!r || rs_record(&c->in, h, &i, sizeof(i)))
		return -1;
	ns = r->cur >= 0 ? &r->ns[r->cur] : NULL;
	if (!ns || ns->sections >= NR_IPC_KIND || i.ipc_type != section_type[ns->sections])
		return rs_invalid(&c->in, "IPC at offset %llu: section of type %u out of order",
				  (unsigned long long)c->in.rec_off, i.ipc_type);
	kind = ns->sections++;
	if (i.ipc_count > (1U << 20))
		return rs_invalid(&c->in, "IPC at offset %llu: %u objects", (unsigned long long)c->in.rec_off,
				  i.ipc_count);
	if (i.ipc_count && !ns->made && !c->dry) {
		ns->made = true;
		if (c->pidns && make_ns(c, r, ns))
			return -1;
	}
	for (k = 0; k < i.ipc_count; k++) {
		int ret = kind == IPC_KIND_SHM ? restore_shm(c, r, ns) :
			  kind == IPC_KIND_MSG ? restore_msg(c, r, ns) : restore_sem(c, r, ns);

		if (ret)
			return -1;
	}
	return 0;
}

/* TASK_NS: the task joins the ipc namespace made for its NS's IPC_NS, if one was made */
int ipc_task_join(struct rctx *c, int ns_ref)
{
	struct ripc *r = c->ipc;
	struct rtask *t = cur_task(c);
	struct rns *ns = NULL;
	struct stat mine, theirs;
	char path[64];
	int i, fd;
	long ret;

	if (!r || !t)
		return 0;
	for (i = 0; i < r->nr_link && !ns; i++)
		if (r->link[i].ns_ref == ns_ref)
			ns = ns_by_ref(r, r->link[i].ipc_ref);
	if (!r->task_ns) {
		r->task_ns = malloc(c->nr_tasks * sizeof(int));
		if (!r->task_ns)
			return pr_perror("ipc state");
		for (i = 0; i < c->nr_tasks; i++)
			r->task_ns[i] = -1;
	}
	r->task_ns[c->cur] = ns ? ns - r->ns : -1;
	if (c->dry || !ns || ns->fd < 0)
		return 0;
	snprintf(path, sizeof(path), "/proc/%d/ns/ipc", t->host);
	if (stat(path, &theirs) || fstat(ns->fd, &mine))
		return pr_perror("stat %s", path);
	if (mine.st_ino == theirs.st_ino)
		return 0;	/* a thread made by its leader, which joined before */
	fd = task_take_fd(c, &c->procs[t->proc], ns->fd);
	if (fd < 0)
		return -1;
	ret = rinj_syscall(c, t, SYS_setns, fd, CLONE_NEWIPC, 0, 0, 0, 0);
	rinj_syscall(c, &c->tasks[c->procs[t->proc].leader], SYS_close, fd, 0, 0, 0, 0, 0);
	if (ret == INFECT_FAILED)
		return -1;
	if (ret < 0)
		return pr_err("pid %d: join the restored ipc namespace: %s", t->pid, strerror(-ret));
	return 0;
}

/* a SHM_IPC_SKIP VMA: the whole segment attached again at its address */
int restore_ipc_vma(struct rctx *c, struct rproc *p, const struct ckpt_hdr_vma *v, struct rvma *rv)
{
	struct ripc *r = c->ipc;
	struct rtask *t = &c->tasks[p->leader];
	struct rseg *sg = NULL;
	int i, flags = SHM_REMAP, prot = PROT_READ;
	long ret;

	for (i = 0; r && i < r->nr_seg && !sg; i++)
		if (r->seg[i].ref == v->ino_objref)
			sg = &r->seg[i];
	if (!sg)
		return rs_invalid(&c->in, "VMA at offset %llu: ino_objref %d is no SysV shm segment of "
				  "the image", (unsigned long long)c->in.rec_off, v->ino_objref);
	if (!r->task_ns || r->task_ns[p->leader] != sg->ns)
		return rst_refuse(c, "pid %d: %#llx-%#llx attaches SysV shm segment %d of another ipc "
				  "namespace", t->pid, (unsigned long long)v->vm_start,
				  (unsigned long long)v->vm_end, sg->id);
	if (v->vm_pgoff || v->vm_end - v->vm_start != ((sg->size + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)))
		return rst_refuse(c, "pid %d: %#llx-%#llx maps part of SysV shm segment %d (shmat "
				  "attaches whole segments)", t->pid, (unsigned long long)v->vm_start,
				  (unsigned long long)v->vm_end, sg->id);
	if (!(v->vm_flags & VM_WRITE_K))
		flags |= SHM_RDONLY;
	else
		prot |= PROT_WRITE;
	if (v->vm_flags & VM_EXEC_K) {
		flags |= SHM_EXEC;
		prot |= PROT_EXEC;
	}
	rv->added_write = prot != rv->prot;	/* its own protection at the end of the mm */
	if (c->dry)
		return 0;
	if (rinj_move_stub(c, p, v->vm_start, v->vm_end))
		return -1;
	ret = rinj_syscall(c, t, SYS_shmat, sg->id, v->vm_start, flags, 0, 0, 0);
	if (ret == INFECT_FAILED)
		return -1;
	if (ret != (long)v->vm_start)
		return rst_refuse(c, "pid %d: attach SysV shm segment %d at %#llx: %s", t->pid, sg->id,
				  (unsigned long long)v->vm_start, ret < 0 ? strerror(-ret) : "moved");
	return 0;
}

/* the release: segments marked for destruction go, now that the tasks have attached them */
int ipc_release(struct rctx *c)
{
	struct ripc *r = c->ipc;
	int i, ret = 0;

	for (i = 0; r && i < r->nr_seg; i++) {
		struct rns *ns = &r->ns[r->seg[i].ns];

		if (!r->seg[i].dest)
			continue;
		if (enter(r, ns))
			return -1;
		if (shmctl(r->seg[i].id, IPC_RMID, NULL))
			ret = pr_perror("remove SysV shm segment %d (marked for destruction)", r->seg[i].id);
		if (leave(r, ns))
			return -1;
	}
	if (r)
		r->nr_made = 0;	/* the tree owns them now */
	return ret;
}

/* a failed restore: what it made in the caller's namespace goes again */
void ipc_cleanup(struct rctx *c)
{
	struct ripc *r = c->ipc;
	int i;

	for (i = 0; r && i < r->nr_made; i++) {
		int id = r->made[i].id;

		if (r->made[i].kind == IPC_KIND_SHM)
			shmctl(id, IPC_RMID, NULL);
		else if (r->made[i].kind == IPC_KIND_MSG)
			msgctl(id, IPC_RMID, NULL);
		else
			semctl(id, 0, IPC_RMID);
	}
	if (r)
		r->nr_made = 0;
}

/*
 * TASK_SEM_UNDO_LIST {TASK_SEM_UNDO BUFFER(semadj)}...: the adjustments set again by the
 * task itself, one semop per semaphore with steps that leave its value as it is: up by a,
 * then down by a with SEM_UNDO (semadj += a); or up by -a with SEM_UNDO, then down.
 */
int restore_sem_undo(struct rctx *c, const struct ckpt_hdr *h)
{
	struct robj *o = obj_define(c, CKPT_OBJ_SEM_UNDO);
	struct rtask *t = cur_task(c);
	struct ckpt_hdr_task_sem_undo_list l;
	uint32_t i;

	if (!o || !t || rs_record(&c->in, h, &l, sizeof(l)))
		return -1;
	o->owner = c->cur;
	if (l.count > (1U << 16))
		return rs_invalid(&c->in, "TASK_SEM_UNDO_LIST at offset %llu: %u entries",
				  (unsigned long long)c->in.rec_off, l.count);
	for (i = 0; i < l.count; i++) {
		struct ckpt_hdr_task_sem_undo u;
		struct ckpt_hdr b;
		int16_t *adj;
		uint32_t k;
		int ret = 0;

		if (rs_expect(&c->in, CKPT_HDR_TASK_SEM_UNDO, &b) || rs_record(&c->in, &b, &u, sizeof(u)))
			return -1;
		if (!u.semadj_count || u.semadj_count > MAX_NSEMS)
			return rs_invalid(&c->in, "TASK_SEM_UNDO at offset %llu: %u adjustments",
					  (unsigned long long)c->in.rec_off, u.semadj_count);
		adj = malloc(u.semadj_count * sizeof(*adj));
		if (!adj)
			return pr_perror("semaphore adjustments");
		if (rs_expect(&c->in, CKPT_HDR_BUFFER, &b) ||
		    rs_payload(&c->in, &b, adj, u.semadj_count * sizeof(*adj), u.semadj_count * sizeof(*adj))) {
			free(adj);
			return -1;
		}
		for (k = 0; k < u.semadj_count && !ret && !c->dry; k++) {
			int a = adj[k];
			struct sembuf sops[2] = {
				a > 0 ? (struct sembuf){ k, a, IPC_NOWAIT } : (struct sembuf){ k, -a, SEM_UNDO | IPC_NOWAIT },
				a > 0 ? (struct sembuf){ k, -a, SEM_UNDO | IPC_NOWAIT } : (struct sembuf){ k, a, IPC_NOWAIT },
			};
			uint64_t at;
			long r;

			if (!a)
				continue;
			at = rinj_put(c, &c->procs[t->proc], 0, sops, sizeof(sops));
			r = at ? rinj_syscall(c, t, SYS_semop, u.semid, at, 2, 0, 0, 0) : INFECT_FAILED;
			if (r == INFECT_FAILED)
				ret = -1;
			else if (r < 0)
				ret = rst_refuse(c, "pid %d: SysV semaphore set %u: undo adjustment %d of "
						 "semaphore %u: %s", t->pid, u.semid, a, k, strerror(-r));
		}
		free(adj);
		if (ret)
			return -1;
	}
	return 0;
}

/* TASK_OBJS names an undo list: its own, or its thread group's (CLONE_SYSVSEM) */
int ipc_task_undo(struct rctx *c, struct rtask *t, int ref)
{
	struct robj *o = obj_get(c, ref, CKPT_OBJ_SEM_UNDO);

	if (!o)
		return -1;
	if (o->owner != c->cur && c->tasks[o->owner].tgid != t->tgid)
		return rst_refuse(c, "pid %d shares the SysV semaphore undo list of pid %d, another "
				  "process", t->pid, c->tasks[o->owner].pid);
	return 0;
}
