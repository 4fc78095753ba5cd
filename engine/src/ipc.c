/*
 * SysV IPC: the objects of an ipc namespace, written after its IPC_NS as three sections
 * (IPC {shm} IPC_SHM + pages..., IPC {msg} IPC_MSG + messages..., IPC {sem} IPC_SEM +
 * values...), and the tasks' semaphore undo lists.
 *
 * Which objects: every object of a namespace of the tree's own; of a namespace the tree
 * shares with the engine (the host's, as a rule) only those the tree uses as far as the
 * kernel shows it: segments a tree task has attached, created or last attached/detached
 * (shm_cpid, shm_lpid), queues a tree task last sent to or received from (msg_lspid,
 * msg_lrpid), semaphore sets with a semaphore a tree task last changed (sempid) or with
 * undo adjustments of a tree task.
 *
 * State is read from inside the namespace (the engine joins it with setns for the
 * section): *_STAT_ANY per index, segment pages through a read-only shmat by the engine
 * (SEEK_DATA over its file: only pages that hold data; the attach updates the live
 * segment's shm_atime/shm_dtime/shm_lpid, which are saved before it), messages with
 * msgrcv(MSG_COPY) (a copy; the queue is untouched), semaphore values with GETALL/GETPID.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/kcmp.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "engine.h"

#define HUGETLBFS_MAGIC_K	0x958458f6
#define IPCMNI_SHIFT_K		15	/* id = seq << 15 | index (without ipcmni_extend) */

union semun_k {
	int val;
	struct semid_ds *buf;
	unsigned short *array;
};

/* segments written to the image: the VMAs that attach them refer to their objref */
struct dumped_seg {
	uint64_t ns;
	int id;
	int objref;
	uint64_t size;
};
static struct dumped_seg *segs;
static int nr_segs;

static int ipc_ns_of(pid_t pid, uint64_t *ino)
{
	char path[64];
	struct stat st;

	snprintf(path, sizeof(path), "/proc/%d/ns/ipc", pid);
	if (stat(path, &st))
		return pr_perror("stat %s", path);
	*ino = st.st_ino;
	return 0;
}

/* join pid's ipc namespace; *home: the engine's own to return to, -1 if it is the same */
static int enter_ns(pid_t pid, uint64_t ino, int *home)
{
	uint64_t ours = 0;
	char path[64];
	int fd;

	*home = -1;
	if (ipc_ns_of(getpid(), &ours))
		return -1;
	if (ours == ino)
		return 0;
	snprintf(path, sizeof(path), "/proc/%d/ns/ipc", pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	*home = open("/proc/self/ns/ipc", O_RDONLY | O_CLOEXEC);
	if (fd < 0 || *home < 0 || setns(fd, CLONE_NEWIPC)) {
		pr_perror("pid %d: join its ipc namespace", pid);
		if (fd >= 0)
			close(fd);
		if (*home >= 0)
			close(*home);
		*home = -1;
		return -1;
	}
	close(fd);
	return 0;
}

static int leave_ns(int home)
{
	int ret = 0;

	if (home < 0)
		return 0;
	if (setns(home, CLONE_NEWIPC))
		ret = pr_perror("return to the engine's ipc namespace");
	close(home);
	return ret;
}

static bool tree_pid(struct ctx *c, pid_t pid)
{
	int i;

	for (i = 0; pid > 0 && i < c->nr_tasks; i++)
		if (c->tasks[i].tid == pid || c->tasks[i].tgid == pid)
			return true;
	return false;
}

/*
 * The SysV segments the tree's processes have attached: /proc/PID/maps names each
 * /SYSV<key> with inode = shmid. Read once per section (line by line: a process may
 * have 20,000 mappings), and only if a segment's other fields do not decide; sorted.
 */
struct shmid_set {
	bool read;
	int n;
	uint64_t *id;
};

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static int read_attached(struct ctx *c, struct shmid_set *s)
{
	char *line = NULL;
	size_t line_cap = 0;
	int cap = 0, i, ret = 0;

	s->read = true;
	for (i = 0; i < c->nr_tasks && !ret; i++) {
		struct task *t = &c->tasks[i];
		char path[64];
		FILE *f;

		if (t->tid != t->tgid || !t->seized)
			continue;
		snprintf(path, sizeof(path), "/proc/%d/maps", t->tid);
		f = fopen(path, "re");
		if (!f)
			continue;	/* as before: a process gone attaches nothing */
		while (getline(&line, &line_cap, f) > 0) {
			unsigned long long ino;
			int off = 0;

			if (sscanf(line, "%*x-%*x %*4s %*x %*x:%*x %llu %n", &ino, &off) != 1 || !off ||
			    strncmp(line + off, "/SYSV", 5))
				continue;
			if (s->n == cap) {
				uint64_t *nid = realloc(s->id, (cap = cap ? 2 * cap : 16) * sizeof(*nid));

				if (!nid) {
					ret = pr_perror("attached segment list");
					break;
				}
				s->id = nid;
			}
			s->id[s->n++] = ino;
		}
		fclose(f);
	}
	free(line);
	if (s->n)
		qsort(s->id, s->n, sizeof(*s->id), cmp_u64);
	return ret;
}

/* 1: a tree process maps segment shmid (attached: nattch > 0), 0: none, -1: error */
static int tree_attached(struct ctx *c, struct shmid_set *s, int shmid, const struct shmid_ds *ds)
{
	uint64_t key = (unsigned int)shmid;

	if (!ds->shm_nattch)
		return 0;	/* attached nowhere (the leftovers of ended programs) */
	if (!s->read && read_attached(c, s))
		return -1;
	return s->n && bsearch(&key, s->id, s->n, sizeof(*s->id), cmp_u64) != NULL;
}

static void fill_perms(struct ckpt_hdr_ipc_perms *h, const struct ipc_perm *p, int id)
{
	*h = (struct ckpt_hdr_ipc_perms){
		.id = id, .key = p->__key, .uid = p->uid, .gid = p->gid, .cuid = p->cuid,
		.cgid = p->cgid, .mode = p->mode, .seq = (unsigned int)id >> IPCMNI_SHIFT_K,
		.sec_ref = 0,
	};
}

/* the object indexes 0..max of one kind in use: *_INFO returns the highest */
struct idlist {
	struct ipc_obj {
		int id;
		int fd;			/* shm: the segment's file (engine's attach), else -1 */
		struct shmid_ds ds;	/* shm: its state before the engine's attach */
	} *o;
	int n;
};

static int idlist_add(struct idlist *l, int id, int fd, const struct shmid_ds *ds)
{
	struct ipc_obj *no = realloc(l->o, (l->n + 1) * sizeof(*no));

	if (!no)
		return pr_perror("ipc object list");
	l->o = no;
	l->o[l->n] = (struct ipc_obj){ .id = id, .fd = fd };
	if (ds)
		l->o[l->n].ds = *ds;
	l->n++;
	return 0;
}

static void idlist_free(struct idlist *l)
{
	int i;

	for (i = 0; i < l->n; i++)
		if (l->o[i].fd >= 0)
			close(l->o[i].fd);
	free(l->o);
	*l = (struct idlist){ 0 };
}

/* the segment's file, by a read-only attach of the engine (detached at once) */
static int segment_file(int id)
{
	void *m = shmat(id, NULL, SHM_RDONLY);
	struct shmid_ds ds;
	char path[96];
	int fd;

	if (m == (void *)-1)
		return pr_perror("attach SysV shm segment %d (read-only)", id);
	if (shmctl(id, IPC_STAT, &ds)) {
		shmdt(m);
		return pr_perror("stat SysV shm segment %d", id);
	}
	snprintf(path, sizeof(path), "/proc/self/map_files/%lx-%lx", (unsigned long)m,
		 (unsigned long)m + ((ds.shm_segsz + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)));
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		pr_perror("open %s (SysV shm segment %d)", path, id);
	shmdt(m);
	return fd;
}

static int collect_shm(struct ctx *c, bool all, struct idlist *l)
{
	struct shm_info info;
	struct shmid_set attached = { 0 };
	int max = shmctl(0, SHM_INFO, (struct shmid_ds *)&info), idx, ret = -1;

	for (idx = 0; idx <= max; idx++) {
		struct shmid_ds ds;
		struct statfs sf;
		int id = shmctl(idx, SHM_STAT_ANY, &ds), fd, used = all;

		if (id < 0)
			continue;
		if (!used)
			used = tree_pid(c, ds.shm_cpid) || tree_pid(c, ds.shm_lpid) ||
			       tree_attached(c, &attached, id, &ds);
		if (used < 0)
			goto out;
		if (!used)
			continue;
		fd = segment_file(id);
		if (fd < 0)
			goto out;
		if (!fstatfs(fd, &sf) && sf.f_type == HUGETLBFS_MAGIC_K) {
			close(fd);
			if (ckpt_unsupported(c, "SysV shm segment %d is hugetlb", id))
				goto out;
			continue;
		}
		if (idlist_add(l, id, fd, &ds)) {
			close(fd);
			goto out;
		}
	}
	ret = 0;
out:
	free(attached.id);
	return ret;
}

static int collect_msg(struct ctx *c, bool all, struct idlist *l)
{
	struct msginfo info;
	int max = msgctl(0, MSG_INFO, (struct msqid_ds *)&info), idx;

	for (idx = 0; idx <= max; idx++) {
		struct msqid_ds ds;
		int id = msgctl(idx, MSG_STAT_ANY, &ds);
		long probe[2];

		if (id < 0)
			continue;
		if (!all && !tree_pid(c, ds.msg_lspid) && !tree_pid(c, ds.msg_lrpid))
			continue;
		/* MSG_COPY needs CONFIG_CHECKPOINT_RESTORE; E2BIG says it exists */
		if (ds.msg_qnum && msgrcv(id, probe, 0, 0, MSG_COPY | IPC_NOWAIT) < 0 &&
		    errno == ENOSYS) {
			if (ckpt_unsupported(c, "SysV message queue %d: its messages cannot be copied "
					     "(kernel without MSG_COPY)", id))
				return -1;
			continue;
		}
		if (idlist_add(l, id, -1, NULL))
			return -1;
	}
	return 0;
}

static bool in_undo_list(struct ctx *c, int id);

static int collect_sem(struct ctx *c, bool all, struct idlist *l)
{
	struct seminfo info;
	int max = semctl(0, 0, SEM_INFO, (union semun_k){ .buf = (struct semid_ds *)&info }), idx;

	for (idx = 0; idx <= max; idx++) {
		struct semid_ds ds;
		int id = semctl(idx, 0, SEM_STAT_ANY, (union semun_k){ .buf = &ds });
		bool used = all;
		unsigned long k;

		if (id < 0)
			continue;
		for (k = 0; k < ds.sem_nsems && !used; k++)
			used = tree_pid(c, semctl(id, k, GETPID));
		used = used || in_undo_list(c, id);
		if (used && idlist_add(l, id, -1, NULL))
			return -1;
	}
	return 0;
}

static int write_section(struct ctx *c, uint32_t type, int count)
{
	struct ckpt_hdr_ipc ipc = { .ipc_type = type, .ipc_count = count };

	return write_obj(&c->img, CKPT_HDR_IPC, &ipc, sizeof(ipc));
}

/* IPC_SHM and the segment's pages; its objref names it in the VMAs that attach it */
static int dump_shm(struct ctx *c, uint64_t ns, const struct ipc_obj *o)
{
	struct ckpt_hdr_ipc_shm h = { .flags = 0, .shift = 0 };
	const struct shmid_ds ds = o->ds;
	struct dumped_seg *ns_segs;
	int id = o->id;
	bool first;

	fill_perms(&h.perms, &ds.shm_perm, id);
	h.shm_segsz = ds.shm_segsz;
	h.shm_atim = ds.shm_atime;
	h.shm_dtim = ds.shm_dtime;
	h.shm_ctim = ds.shm_ctime;
	h.shm_cprid = ds.shm_cpid;
	h.shm_lprid = ds.shm_lpid;
	h.mlock_uid = ds.shm_perm.mode & SHM_LOCKED ? ds.shm_perm.uid : (uint32_t)-1;
	h.objref = obj_lookup_add(c->objs, CKPT_OBJ_INODE, ns, 1ULL << 63 | (unsigned int)id, &first);
	if ((int)h.objref < 0)
		return -1;
	ns_segs = realloc(segs, (nr_segs + 1) * sizeof(*segs));
	if (!ns_segs)
		return pr_perror("segment list");
	segs = ns_segs;
	segs[nr_segs++] = (struct dumped_seg){ ns, id, h.objref, ds.shm_segsz };
	if (write_obj(&c->img, CKPT_HDR_IPC_SHM, &h, sizeof(h)))
		return -1;
	return dump_segment_pages(c, o->fd, ds.shm_segsz);
}

/* IPC_MSG, then per message IPC_MSG_MSG and its text in BUFFERs */
static int dump_msg(struct ctx *c, int id)
{
	struct ckpt_hdr_ipc_msg h;
	struct msqid_ds ds;
	struct { long mtype; char mtext[]; } *m;
	size_t cap;
	unsigned long i;
	int ret = -1;

	if (msgctl(id, IPC_STAT, &ds))
		return pr_perror("stat SysV message queue %d", id);
	h = (struct ckpt_hdr_ipc_msg){
		.q_stime = ds.msg_stime, .q_rtime = ds.msg_rtime, .q_ctime = ds.msg_ctime,
		.q_cbytes = ds.__msg_cbytes, .q_qnum = ds.msg_qnum, .q_qbytes = ds.msg_qbytes,
		.q_lspid = ds.msg_lspid, .q_lrpid = ds.msg_lrpid,
	};
	fill_perms(&h.perms, &ds.msg_perm, id);
	cap = ds.__msg_cbytes;	/* no message is longer than the queue holds */
	m = malloc(sizeof(*m) + cap + 1);
	if (!m)
		return pr_perror("message buffer");
	if (write_obj(&c->img, CKPT_HDR_IPC_MSG, &h, sizeof(h)))
		goto out;
	for (i = 0; i < ds.msg_qnum; i++) {
		ssize_t n = msgrcv(id, m, cap, i, MSG_COPY | IPC_NOWAIT);
		struct ckpt_hdr_ipc_msg_msg mh = { .sec_ref = 0 };
		size_t off, chunk;

		if (n < 0) {
			pr_perror("copy message %lu of SysV message queue %d (changed during the dump?)",
				  i, id);
			goto out;
		}
		mh.m_type = m->mtype;
		mh.m_ts = n;
		if (write_obj(&c->img, CKPT_HDR_IPC_MSG_MSG, &mh, sizeof(mh)))
			goto out;
		for (off = 0; off < (size_t)n; off += chunk) {
			chunk = off ? CKPT_MSG_DATALEN_SEG : CKPT_MSG_DATALEN_MSG;
			if (chunk > n - off)
				chunk = n - off;
			if (write_buffer(&c->img, CKPT_HDR_BUFFER, m->mtext + off, chunk))
				goto out;
		}
	}
	ret = 0;
out:
	free(m);
	return ret;
}

/* IPC_SEM and a BUFFER of {semval, sempid} per semaphore */
static int dump_sem(struct ctx *c, int id)
{
	struct ckpt_hdr_ipc_sem h = { ._padding = 0 };
	struct semid_ds ds;
	unsigned short *val = NULL;
	struct ckpt_sem *sem = NULL;
	unsigned long k;
	int ret = -1;

	if (semctl(id, 0, IPC_STAT, (union semun_k){ .buf = &ds }))
		return pr_perror("stat SysV semaphore set %d", id);
	fill_perms(&h.perms, &ds.sem_perm, id);
	h.sem_otime = ds.sem_otime;
	h.sem_ctime = ds.sem_ctime;
	h.sem_nsems = ds.sem_nsems;
	val = calloc(ds.sem_nsems + 1, sizeof(*val));
	sem = calloc(ds.sem_nsems + 1, sizeof(*sem));
	if (!val || !sem) {
		pr_perror("semaphore values");
		goto out;
	}
	if (semctl(id, 0, GETALL, (union semun_k){ .array = val })) {
		pr_perror("read SysV semaphore set %d", id);
		goto out;
	}
	for (k = 0; k < ds.sem_nsems; k++)
		sem[k] = (struct ckpt_sem){ .semval = val[k], .sempid = semctl(id, k, GETPID) };
	if (write_obj(&c->img, CKPT_HDR_IPC_SEM, &h, sizeof(h)) ||
	    (ds.sem_nsems && write_buffer(&c->img, CKPT_HDR_BUFFER, sem, ds.sem_nsems * sizeof(*sem))))
		goto out;
	ret = 0;
out:
	free(val);
	free(sem);
	return ret;
}

/* the three IPC sections of pid's ipc namespace (ns_ino), after its IPC_NS */
int dump_ipc_objects(struct ctx *c, pid_t pid, uint64_t ns_ino)
{
	struct idlist shm = { 0 }, msg = { 0 }, sem = { 0 };
	uint64_t ours = 0;
	int home, i, ret = -1;
	bool all;

	if (ipc_ns_of(getpid(), &ours) || enter_ns(pid, ns_ino, &home))
		return -1;
	all = ours != ns_ino;
	if (collect_shm(c, all, &shm) || collect_msg(c, all, &msg) || collect_sem(c, all, &sem))
		goto out;
	if (write_section(c, CKPT_HDR_IPC_SHM, shm.n))
		goto out;
	for (i = 0; i < shm.n; i++)
		if (dump_shm(c, ns_ino, &shm.o[i]))
			goto out;
	if (write_section(c, CKPT_HDR_IPC_MSG, msg.n))
		goto out;
	for (i = 0; i < msg.n; i++)
		if (dump_msg(c, msg.o[i].id))
			goto out;
	if (write_section(c, CKPT_HDR_IPC_SEM, sem.n))
		goto out;
	for (i = 0; i < sem.n; i++)
		if (dump_sem(c, sem.o[i].id))
			goto out;
	ret = 0;
out:
	idlist_free(&shm);
	idlist_free(&msg);
	idlist_free(&sem);
	if (leave_ns(home))
		ret = -1;
	return ret;
}

/* the objref of segment shmid of pid's ipc namespace in the image (0: not there); *size */
int ipc_shm_objref(struct ctx *c, pid_t pid, uint64_t shmid, __u64 *size)
{
	uint64_t ns = 0;
	int i;

	(void)c;
	if (ipc_ns_of(pid, &ns))
		return -1;
	for (i = 0; i < nr_segs; i++)
		if (segs[i].ns == ns && (uint64_t)segs[i].id == shmid) {
			if (size)
				*size = segs[i].size;
			return segs[i].objref;
		}
	return 0;
}

/*
 * Semaphore undo lists. The kernel shows that a task has one (kcmp KCMP_SYSVSEM against
 * the engine, which has none) but has no call that reads the adjustments; they are read
 * by a probe the task runs (injected): one semop of several steps on semaphore k, all
 * IPC_NOWAIT: down to 0, then up by x (SEM_UNDO: semadj -= x), down to 0, up again ...
 * (D in total, each step at most 32767), then down by 32768, which cannot succeed. The
 * kernel applies the steps in order (several on one semaphore: perform_atomic_semop_slow)
 * and undoes them all when one fails: EAGAIN from the last step, or ERANGE as soon as
 * semadj - D < -32768. So the call changes nothing and says whether semadj < D - 32768; a
 * binary search over D finds semadj in 16 calls. Probing a set the task had no undo entry
 * for gives it one with all adjustments 0 (exit applies nothing for it). Before the first
 * probe a throwaway child in an ipc namespace of its own checks that this kernel behaves
 * so (an SEM_UNDO of its own read back); if not, an undo list is an ERROR record.
 */
struct undo_entry {
	int semid;
	uint32_t n;
	int16_t *adj;
};

struct undo_list {
	char why[320];		/* not empty: the list could not be read, for this reason */
	int n;
	struct undo_entry *e;
	bool reported;
};

#define SEMAEM_K	32767
#define PROBE_BUDGET	200000	/* semop probes per list at most (16 per semaphore) */

/* runs one semop for the probe: 0 or -errno, INFECT_FAILED if it could not run */
typedef long (*semop_fn)(void *arg, int semid, struct sembuf *sops, int n);

/* does semop say semadj of semaphore k (value v) < d - 32768? 1 yes, 0 no, else -errno */
static long adj_below(semop_fn op, void *arg, int id, int k, int v, int d)
{
	struct sembuf sops[10];
	int n = 0;
	long r;

	if (v)
		sops[n++] = (struct sembuf){ k, -v, IPC_NOWAIT };
	while (d > 0) {
		int x = d > SEMAEM_K ? SEMAEM_K : d;

		sops[n++] = (struct sembuf){ k, x, SEM_UNDO | IPC_NOWAIT };
		d -= x;
		if (d > 0)
			sops[n++] = (struct sembuf){ k, -x, IPC_NOWAIT };
	}
	sops[n++] = (struct sembuf){ k, -32768, IPC_NOWAIT };
	r = op(arg, id, sops, n);
	if (r == -ERANGE)
		return 1;
	if (r == -EAGAIN)
		return 0;
	return r == 0 ? -EPROTO : r;	/* 0: the probe changed the set, which it must not */
}

static long probe_adj(semop_fn op, void *arg, int id, int k, int v, int *adj)
{
	int lo = 1, hi = 65536;		/* the least d with semadj < d - 32768 */

	while (lo < hi) {
		int mid = lo + (hi - lo) / 2;
		long r = adj_below(op, arg, id, k, v, mid);

		if (r < 0)
			return r;
		if (r)
			hi = mid;
		else
			lo = mid + 1;
	}
	*adj = lo - 32769;
	return 0;
}

static long own_semop(void *arg, int semid, struct sembuf *sops, int n)
{
	(void)arg;
	return semop(semid, sops, n) ? -errno : 0;
}

/* the probe on a semaphore of a throwaway namespace: 1 if it reads back what was set */
static int probe_works(void)
{
	static int known;	/* 0 not checked, 1 works, -1 does not */
	pid_t child;
	int status;

	if (known)
		return known > 0;
	child = fork();
	if (child == 0) {
		struct sembuf up = { 0, 5, SEM_UNDO }, down = { 1, -3, SEM_UNDO };
		unsigned short set[2] = { 7, 9 }, after[2] = { 0, 0 };
		int id, a0 = 0, a1 = 0;

		if (unshare(CLONE_NEWIPC) || (id = semget(IPC_PRIVATE, 2, 0600)) < 0 ||
		    semctl(id, 0, SETALL, (union semun_k){ .array = set }) || semop(id, &up, 1) ||
		    semop(id, &down, 1) || probe_adj(own_semop, NULL, id, 0, 12, &a0) ||
		    probe_adj(own_semop, NULL, id, 1, 6, &a1) ||
		    semctl(id, 0, GETALL, (union semun_k){ .array = after }))
			_exit(2);
		_exit(a0 == -5 && a1 == 3 && after[0] == 12 && after[1] == 6 ? 0 : 1);
	}
	known = child > 0 && waitpid(child, &status, 0) == child && WIFEXITED(status) &&
		!WEXITSTATUS(status) ? 1 : -1;
	return known > 0;
}

static long injected_semop(void *arg, int semid, struct sembuf *sops, int n)
{
	struct infect *inf = arg;

	if (infect_write(inf, sops, n * sizeof(*sops)))
		return INFECT_FAILED;
	return infect_syscall(inf, SYS_semop, semid, inf->scratch, n, 0);
}

/* the adjustments of every set of the namespace the engine is in, as task inf sees them */
static int probe_sets(struct infect *inf, struct undo_list *u, pid_t tid)
{
	struct seminfo info;
	int max = semctl(0, 0, SEM_INFO, (union semun_k){ .buf = (struct semid_ds *)&info }), idx;
	long budget = PROBE_BUDGET;

	for (idx = 0; idx <= max && !u->why[0]; idx++) {
		struct semid_ds ds;
		int id = semctl(idx, 0, SEM_STAT_ANY, (union semun_k){ .buf = &ds });
		struct undo_entry *ne;
		unsigned short *val;
		int16_t *adj;
		bool any = false;
		unsigned long k;
		long r = 0;

		if (id < 0 || !ds.sem_nsems)
			continue;
		budget -= 16 * ds.sem_nsems;
		if (budget < 0) {
			snprintf(u->why, sizeof(u->why), "pid %d: SysV semaphore undo list: too many "
				 "semaphores to probe", tid);
			break;
		}
		val = calloc(ds.sem_nsems, sizeof(*val));
		adj = calloc(ds.sem_nsems, sizeof(*adj));
		if (!val || !adj || semctl(id, 0, GETALL, (union semun_k){ .array = val })) {
			free(val);
			free(adj);
			return pr_perror("read SysV semaphore set %d", id);
		}
		for (k = 0; k < ds.sem_nsems && !r; k++) {
			int a = 0;

			r = probe_adj(injected_semop, inf, id, k, val[k], &a);
			adj[k] = a;
			any = any || a;
		}
		free(val);
		if (r == INFECT_FAILED) {
			free(adj);
			return -1;
		}
		if (r == -EIDRM || r == -EINVAL || !any) {
			free(adj);	/* gone meanwhile, or nothing to undo */
			continue;
		}
		if (r) {
			snprintf(u->why, sizeof(u->why), "pid %d: SysV semaphore undo list: set %d "
				 "cannot be probed: %s", tid, id, strerror(-r));
			free(adj);
			break;
		}
		ne = realloc(u->e, (u->n + 1) * sizeof(*ne));
		if (!ne) {
			free(adj);
			return pr_perror("undo list");
		}
		u->e = ne;
		u->e[u->n++] = (struct undo_entry){ id, ds.sem_nsems, adj };
	}
	return 0;
}

/* a tree task has SEM_UNDO adjustments for set id (probed before the dump is written) */
static bool in_undo_list(struct ctx *c, int id)
{
	int i, j;

	for (i = 0; i < c->nr_tasks; i++)
		for (j = 0; c->tasks[i].undo && j < c->tasks[i].undo->n; j++)
			if (c->tasks[i].undo->e[j].semid == id)
				return true;
	return false;
}

/* t's list: 1 if it has one not seen before (t->undo is new, to fill), 0 if none or known */
static int find_undo_list(struct ctx *c, struct task *t)
{
	long r = syscall(SYS_kcmp, getpid(), t->tid, KCMP_SYSVSEM, 0, 0);
	int i;

	if (t->undo || r == 0 || (r < 0 && errno == EOPNOTSUPP))
		return 0;	/* known, or no list (or no SysV IPC at all) */
	for (i = 0; i < c->nr_tasks; i++)
		if (&c->tasks[i] != t && c->tasks[i].undo &&
		    syscall(SYS_kcmp, c->tasks[i].tid, t->tid, KCMP_SYSVSEM, 0, 0) == 0) {
			t->undo = c->tasks[i].undo;	/* threads, CLONE_SYSVSEM: one list */
			return 0;
		}
	t->undo = calloc(1, sizeof(*t->undo));
	if (!t->undo)
		return pr_perror("undo list");
	if (r < 0)
		snprintf(t->undo->why, sizeof(t->undo->why), "pid %d: SysV semaphore undo list "
			 "(kcmp: %s)", t->tid, strerror(errno));
	return 1;
}

int probe_sem_undo(struct ctx *c, struct infect *inf, struct task *t)
{
	uint64_t ns = 0;
	int home, ret = find_undo_list(c, t);

	if (ret <= 0 || t->undo->why[0])
		return ret;
	if (!probe_works()) {
		snprintf(t->undo->why, sizeof(t->undo->why), "pid %d: SysV semaphore undo list (this "
			 "kernel does not let it be probed)", t->tid);
		return 0;
	}
	if (ipc_ns_of(t->tid, &ns) || enter_ns(t->tid, ns, &home))
		return -1;
	ret = probe_sets(inf, t->undo, t->tid);
	return leave_ns(home) || ret ? -1 : 0;
}

/* [OBJREF(SEM_UNDO) TASK_SEM_UNDO_LIST {TASK_SEM_UNDO BUFFER(semadj)}...]: its objref or 0 */
int dump_sem_undo(struct ctx *c, struct task *t)
{
	struct ckpt_hdr_task_sem_undo_list lh = { ._padding = 0 };
	struct undo_list *u;
	bool first;
	int ref, i;

	/* a task that could not be probed (seccomp, no syscall instruction) */
	ref = t->seized ? find_undo_list(c, t) : 0;
	if (ref < 0)
		return -1;
	if (ref > 0)
		snprintf(t->undo->why, sizeof(t->undo->why), "pid %d: SysV semaphore undo list not "
			 "read (the task could not be probed)", t->tid);
	u = t->undo;
	if (!u || (!u->why[0] && !u->n))
		return 0;	/* none, or nothing to undo */
	if (u->why[0]) {
		if (u->reported)
			return 0;
		u->reported = true;
		return ckpt_unsupported(c, "%s", u->why) ? -1 : 0;
	}
	ref = obj_lookup_add(c->objs, CKPT_OBJ_SEM_UNDO, (uintptr_t)u, 0, &first);
	if (ref < 0 || !first)
		return ref;
	lh.count = u->n;
	if (write_objref(&c->img, CKPT_OBJ_SEM_UNDO, ref) ||
	    write_obj(&c->img, CKPT_HDR_TASK_SEM_UNDO_LIST, &lh, sizeof(lh)))
		return -1;
	for (i = 0; i < u->n; i++) {
		struct ckpt_hdr_task_sem_undo uh = { .semid = u->e[i].semid, .semadj_count = u->e[i].n };

		if (write_obj(&c->img, CKPT_HDR_TASK_SEM_UNDO, &uh, sizeof(uh)) ||
		    write_buffer(&c->img, CKPT_HDR_BUFFER, u->e[i].adj, u->e[i].n * sizeof(int16_t)))
			return -1;
	}
	return ref;
}
