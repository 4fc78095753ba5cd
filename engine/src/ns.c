/*
 * Namespaces: the nsproxy (NS) with its uts and ipc namespaces. The values shown by
 * uname(2) and /proc/sys/kernel are those of the reader's namespace, so a task in
 * another uts or ipc namespace is read by a helper process that setns() into it first.
 * The IPC sections that follow IPC_NS are ipc.c's.
 */
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include "engine.h"

static int ns_ino(pid_t pid, const char *name, uint64_t *ino)
{
	char path[64];
	struct stat st;

	snprintf(path, sizeof(path), "/proc/%d/ns/%s", pid, name);
	if (stat(path, &st))
		return pr_perror("stat %s", path);
	*ino = st.st_ino;
	return 0;
}

/* Call fill(out) in namespace `name` of pid: directly if it is ours, else in a child. */
static int read_in_ns(pid_t pid, const char *name, int nstype, int (*fill)(void *), void *out,
		      size_t len)
{
	uint64_t theirs = 0, ours = 0;
	void *shared;
	pid_t child;
	int status, fd;
	char path[64];

	if (ns_ino(pid, name, &theirs) || ns_ino(getpid(), name, &ours))
		return -1;
	if (theirs == ours)
		return fill(out);
	snprintf(path, sizeof(path), "/proc/%d/ns/%s", pid, name);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return pr_perror("open %s", path);
	shared = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (shared == MAP_FAILED) {
		close(fd);
		return pr_perror("mmap");
	}
	child = fork();
	if (child == 0)
		_exit(setns(fd, nstype) || fill(shared) ? 1 : 0);
	close(fd);
	if (child < 0 || waitpid(child, &status, 0) != child || !WIFEXITED(status) ||
	    WEXITSTATUS(status)) {
		munmap(shared, len);
		return pr_err("pid %d: cannot read its %s namespace", pid, name);
	}
	memcpy(out, shared, len);
	munmap(shared, len);
	return 0;
}

static int fill_uts(void *out)
{
	struct ckpt_hdr_utsns *h = out;
	struct utsname u;

	if (uname(&u))
		return pr_perror("uname");
	memcpy(h->sysname, u.sysname, strnlen(u.sysname, CKPT_NEW_UTS_LEN));
	memcpy(h->nodename, u.nodename, strnlen(u.nodename, CKPT_NEW_UTS_LEN));
	memcpy(h->release, u.release, strnlen(u.release, CKPT_NEW_UTS_LEN));
	memcpy(h->version, u.version, strnlen(u.version, CKPT_NEW_UTS_LEN));
	memcpy(h->machine, u.machine, strnlen(u.machine, CKPT_NEW_UTS_LEN));
	memcpy(h->domainname, u.domainname, strnlen(u.domainname, CKPT_NEW_UTS_LEN));
	return 0;
}

static int sysctl_u64(const char *name, __u64 *v)
{
	char path[64], *buf;

	snprintf(path, sizeof(path), "sys/kernel/%s", name);
	buf = proc_read(0, path, NULL);
	if (!buf)
		return pr_perror("read /proc/%s", path);
	*v = strtoull(buf, NULL, 10);
	free(buf);
	return 0;
}

static int fill_ipc(void *out)
{
	struct ckpt_hdr_ipcns *h = out;
	__u64 mni, max, mnb, msgmni;
	char *sem = proc_read(0, "sys/kernel/sem", NULL);
	int ret;

	if (!sem)
		return pr_perror("read /proc/sys/kernel/sem");
	ret = sscanf(sem, "%d %d %d %d", &h->sem_ctl_msl, &h->sem_ctl_mns, &h->sem_ctl_opm,
		     &h->sem_ctl_mni) == 4 ? 0 : pr_err("bad /proc/sys/kernel/sem");
	free(sem);
	if (ret || sysctl_u64("shmmax", &h->shm_ctlmax) || sysctl_u64("shmall", &h->shm_ctlall) ||
	    sysctl_u64("shmmni", &mni) || sysctl_u64("msgmax", &max) ||
	    sysctl_u64("msgmnb", &mnb) || sysctl_u64("msgmni", &msgmni))
		return -1;
	h->shm_ctlmni = mni;
	h->msg_ctlmax = max;
	h->msg_ctlmnb = mnb;
	h->msg_ctlmni = msgmni;
	return 0;
}

static int dump_uts_ns(struct ctx *c, pid_t pid)
{
	struct ckpt_hdr_utsns h;
	uint64_t ino = 0;
	bool first;
	int ref;

	if (ns_ino(pid, "uts", &ino))
		return -1;
	ref = obj_lookup_add(c->objs, CKPT_OBJ_UTS_NS, ino, 0, &first);
	if (ref < 0 || !first)
		return ref;
	memset(&h, 0, sizeof(h));
	if (read_in_ns(pid, "uts", CLONE_NEWUTS, fill_uts, &h, sizeof(h)) ||
	    write_objref(&c->img, CKPT_OBJ_UTS_NS, ref) ||
	    write_obj(&c->img, CKPT_HDR_UTS_NS, &h, sizeof(h)))
		return -1;
	return ref;
}

static int dump_ipc_ns(struct ctx *c, pid_t pid)
{
	struct ckpt_hdr_ipcns h;
	uint64_t ino = 0;
	bool first;
	int ref;

	if (ns_ino(pid, "ipc", &ino))
		return -1;
	ref = obj_lookup_add(c->objs, CKPT_OBJ_IPC_NS, ino, 0, &first);
	if (ref < 0 || !first)
		return ref;
	memset(&h, 0, sizeof(h));
	if (read_in_ns(pid, "ipc", CLONE_NEWIPC, fill_ipc, &h, sizeof(h)) ||
	    write_objref(&c->img, CKPT_OBJ_IPC_NS, ref) ||
	    write_obj(&c->img, CKPT_HDR_IPC_NS, &h, sizeof(h)) ||
	    dump_ipc_objects(c, pid, ino))
		return -1;
	return ref;
}

/* [OBJREF(NS) uts ipc NS] TASK_NS; the nsproxy is keyed by all of the task's namespaces */
int dump_task_ns(struct ctx *c, struct task *t)
{
	static const char *const names[] = { "uts", "ipc", "net", "mnt", "pid_for_children",
					     "cgroup", "time_for_children" };
	uint64_t ino[sizeof(names) / sizeof(names[0])] = { 0 };
	struct ckpt_hdr_task_ns tn;
	struct ckpt_hdr_ns h = { .net_objref = 0 };
	bool first;
	size_t i;
	int ref;

	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		char path[64];
		struct stat st;

		snprintf(path, sizeof(path), "/proc/%d/ns/%s", t->tid, names[i]);
		if (!stat(path, &st))
			ino[i] = st.st_ino;	/* namespaces the kernel lacks stay 0 */
	}
	ref = obj_lookup_add(c->objs, CKPT_OBJ_NS, hash_bytes(ino, sizeof(ino), 0),
			     hash_bytes(ino, sizeof(ino), 1), &first);
	if (ref < 0)
		return -1;
	if (first) {
		if (write_objref(&c->img, CKPT_OBJ_NS, ref) ||
		    (h.uts_objref = dump_uts_ns(c, t->tid)) < 0 ||
		    (h.ipc_objref = dump_ipc_ns(c, t->tid)) < 0 ||
		    write_obj(&c->img, CKPT_HDR_NS, &h, sizeof(h)))
			return -1;
	}
	tn = (struct ckpt_hdr_task_ns){ .ns_objref = ref };
	return write_obj(&c->img, CKPT_HDR_TASK_NS, &tn, sizeof(tn));
}
