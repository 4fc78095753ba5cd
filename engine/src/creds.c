/*
 * Credentials from /proc/<tid>/status. One CRED object per distinct credential set
 * (keyed by its content); real and effective cred refs point to the same object, since
 * a task outside a kernel override has real_cred == cred.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "engine.h"

struct cred_info {
	uint32_t uid[4], gid[4];	/* real, effective, saved, fs as /proc lists them */
	uint64_t cap_inh, cap_prm, cap_eff, cap_bnd;
	uint32_t securebits;
	uint64_t userns_ino;
};

static int parse_ids(const char *status, const char *key, uint32_t ids[4], pid_t tid)
{
	const char *v = status_field(status, key);

	if (!v || sscanf(v, "%u %u %u %u", &ids[0], &ids[1], &ids[2], &ids[3]) != 4)
		return pr_err("task %d: no %s line in /proc status", tid, key);
	return 0;
}

static int parse_groups(const char *status, uint32_t **groups, uint32_t *n)
{
	const char *v = status_field(status, "Groups");
	size_t cap = v ? strcspn(v, "\n") / 2 + 1 : 1;	/* every group takes 2+ chars */
	char *end;

	*n = 0;
	*groups = malloc(cap * sizeof(uint32_t));
	if (!*groups)
		return pr_perror("groups");
	while (v && *n < cap) {
		unsigned long g = strtoul(v, &end, 10);

		if (end == v || (*end && *end != ' ' && *end != '\n'))
			break;
		(*groups)[(*n)++] = g;
		v = end;
		if (*v == '\n')
			break;
	}
	return 0;
}

static int dump_groupinfo(struct ctx *c, const uint32_t *groups, uint32_t n)
{
	bool first;
	int ref = obj_lookup_add(c->objs, CKPT_OBJ_GROUPINFO, hash_bytes(groups, n * 4, 0), n, &first);
	struct ckpt_hdr_groupinfo h = { .ngroups = n };
	size_t size = sizeof(h) + n * sizeof(uint32_t);	/* the kernel's 4 spare bytes */
	struct ckpt_hdr_groupinfo *rec;
	int ret;

	if (ref < 0 || !first)
		return ref;
	rec = calloc(1, size);
	if (!rec)
		return pr_perror("groupinfo");
	*rec = h;
	memcpy(rec->groups, groups, n * sizeof(uint32_t));
	ret = write_objref(&c->img, CKPT_OBJ_GROUPINFO, ref) ||
	      write_obj(&c->img, CKPT_HDR_GROUPINFO, rec, size);
	free(rec);
	return ret ? -1 : ref;
}

/* The first user namespace met is the checkpoint's root (creator_ref 0). */
static int dump_user_ns(struct ctx *c, uint64_t ino)
{
	static uint64_t root_ino;
	struct ckpt_hdr_user_ns h = { .creator_ref = 0 };
	bool first;
	int ref = obj_lookup_add(c->objs, CKPT_OBJ_USER_NS, ino, 0, &first);

	if (ref < 0 || !first)
		return ref;
	if (!root_ino)
		root_ino = ino;
	else if (ckpt_unsupported(c, "user namespace %llu nested in %llu: saved as a root namespace",
				  (unsigned long long)ino, (unsigned long long)root_ino))
		return -1;
	if (write_objref(&c->img, CKPT_OBJ_USER_NS, ref) ||
	    write_obj(&c->img, CKPT_HDR_USER_NS, &h, sizeof(h)))
		return -1;
	return ref;
}

static int dump_user(struct ctx *c, uint32_t uid, uint64_t userns_ino)
{
	struct ckpt_hdr_user h = { .uid = uid };
	bool first;
	int ref = obj_lookup_add(c->objs, CKPT_OBJ_USER, uid, userns_ino, &first);

	if (ref < 0 || !first)
		return ref;
	if (write_objref(&c->img, CKPT_OBJ_USER, ref))
		return -1;
	h.userns_ref = dump_user_ns(c, userns_ino);
	if (h.userns_ref < 0 || write_obj(&c->img, CKPT_HDR_USER, &h, sizeof(h)))
		return -1;
	return ref;
}

static int read_cred(struct task *t, struct cred_info *ci, uint32_t **groups, uint32_t *ngroups)
{
	char *status = proc_read(t->tid, "status", NULL);
	char path[64];
	struct stat st;
	int ret = -1;

	if (!status)
		return pr_perror("read /proc/%d/status", t->tid);
	memset(ci, 0, sizeof(*ci));
	snprintf(path, sizeof(path), "/proc/%d/ns/user", t->tid);
	if (stat(path, &st)) {
		pr_perror("stat %s", path);
		goto out;
	}
	ci->userns_ino = st.st_ino;
	if (parse_ids(status, "Uid", ci->uid, t->tid) || parse_ids(status, "Gid", ci->gid, t->tid) ||
	    parse_groups(status, groups, ngroups))
		goto out;
	ci->cap_inh = status_hex(status, "CapInh");
	ci->cap_prm = status_hex(status, "CapPrm");
	ci->cap_eff = status_hex(status, "CapEff");
	ci->cap_bnd = status_hex(status, "CapBnd");
	ci->securebits = t->securebits;
	ret = 0;
out:
	free(status);
	return ret;
}

/* [OBJREF(CRED) [groupinfo] [user [user_ns]] CRED] TASK_CREDS */
int dump_creds(struct ctx *c, struct task *t)
{
	struct ckpt_hdr_task_creds tc;
	struct ckpt_hdr_cred h;
	struct cred_info ci;
	uint32_t *groups = NULL, ngroups = 0;
	uint64_t k1, k2;
	bool first;
	int ref, ret = -1;

	if (read_cred(t, &ci, &groups, &ngroups))
		goto out;
	k1 = hash_bytes(&ci, sizeof(ci), 0) ^ hash_bytes(groups, ngroups * 4, 1);
	k2 = hash_bytes(&ci, sizeof(ci), 2) ^ hash_bytes(groups, ngroups * 4, 3);
	ref = obj_lookup_add(c->objs, CKPT_OBJ_CRED, k1, k2, &first);
	if (ref < 0)
		goto out;
	if (first) {
		h = (struct ckpt_hdr_cred){
			.uid = ci.uid[0], .euid = ci.uid[1], .suid = ci.uid[2], .fsuid = ci.uid[3],
			.gid = ci.gid[0], .egid = ci.gid[1], .sgid = ci.gid[2], .fsgid = ci.gid[3],
			.sec_ref = 0,
			.cap_s = {
				.cap_i_0 = ci.cap_inh, .cap_i_1 = ci.cap_inh >> 32,
				.cap_p_0 = ci.cap_prm, .cap_p_1 = ci.cap_prm >> 32,
				.cap_e_0 = ci.cap_eff, .cap_e_1 = ci.cap_eff >> 32,
				.cap_b_0 = ci.cap_bnd, .cap_b_1 = ci.cap_bnd >> 32,
				.securebits = ci.securebits,
			},
		};
		if (write_objref(&c->img, CKPT_OBJ_CRED, ref) ||
		    (h.groupinfo_ref = dump_groupinfo(c, groups, ngroups)) < 0 ||
		    (h.user_ref = dump_user(c, ci.uid[0], ci.userns_ino)) < 0 ||
		    write_obj(&c->img, CKPT_HDR_CRED, &h, sizeof(h)))
			goto out;
	}
	t->cred_ref = ref;
	tc = (struct ckpt_hdr_task_creds){ .cred_ref = ref, .ecred_ref = ref };
	ret = write_obj(&c->img, CKPT_HDR_TASK_CREDS, &tc, sizeof(tc));
out:
	free(groups);
	return ret;
}
