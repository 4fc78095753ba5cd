/*
 * Credentials on restore: GROUPINFO, USER, USER_NS and CRED objects, TASK_CREDS per task,
 * set at the release. The mirror of creds.c.
 *
 * A restore never grants what its caller does not have: each set of credentials is checked
 * against the caller's (uids and gids it may take, supplementary groups, capabilities
 * within its own permitted and bounding sets) when its record arrives, before any process
 * exists on a seekable image. The tasks are forks of the caller, so credentials equal to
 * the caller's need nothing; others are set by the task itself, last, in the order that
 * keeps each step permitted: bounding set, securebits keeping the capabilities across the
 * uid change, groups, gids, uids, the image's securebits, then capset().
 */
#include <errno.h>
#include <linux/capability.h>
#include <linux/securebits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "restore.h"

#define CAP_SETGID_BIT	(1ULL << CAP_SETGID)
#define CAP_SETUID_BIT	(1ULL << CAP_SETUID)
#define NGROUPS_MAX_IMG	65536

struct caller {
	uid_t uid[3];
	gid_t gid[3];
	int ngroups;
	gid_t groups[NGROUPS_MAX_IMG];
	uint64_t eff, prm, inh, bnd;
	uint32_t securebits;
	bool read;
};

static struct caller me;

static int read_caller(void)
{
	struct __user_cap_header_struct hdr = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct d[2];
	int cap;

	if (me.read)
		return 0;
	if (getresuid(&me.uid[0], &me.uid[1], &me.uid[2]) || getresgid(&me.gid[0], &me.gid[1], &me.gid[2]))
		return pr_perror("the caller's ids");
	me.ngroups = getgroups(NGROUPS_MAX_IMG, me.groups);
	if (me.ngroups < 0 || syscall(SYS_capget, &hdr, d))
		return pr_perror("the caller's groups and capabilities");
	me.eff = d[0].effective | (uint64_t)d[1].effective << 32;
	me.prm = d[0].permitted | (uint64_t)d[1].permitted << 32;
	me.inh = d[0].inheritable | (uint64_t)d[1].inheritable << 32;
	for (cap = 0; cap < 64; cap++)
		if (prctl(PR_CAPBSET_READ, cap, 0, 0, 0) == 1)
			me.bnd |= 1ULL << cap;
	me.securebits = prctl(PR_GET_SECUREBITS, 0, 0, 0, 0);
	me.read = true;
	return 0;
}

static bool same_groups(const struct rcred *r)
{
	uint32_t i;
	int k;

	if ((int)r->ngroups != me.ngroups)
		return false;
	for (i = 0; i < r->ngroups; i++) {
		for (k = 0; k < me.ngroups && me.groups[k] != r->groups[i]; k++)
			;
		if (k == me.ngroups)
			return false;
	}
	return true;
}

static bool is_callers(const struct rcred *r)
{
	return r->uid == me.uid[0] && r->euid == me.uid[1] && r->suid == me.uid[2] &&
	       r->fsuid == me.uid[1] && r->gid == me.gid[0] && r->egid == me.gid[1] &&
	       r->sgid == me.gid[2] && r->fsgid == me.gid[1] && same_groups(r) &&
	       r->cap_eff == me.eff && r->cap_prm == me.prm && r->cap_inh == me.inh &&
	       r->cap_bnd == me.bnd && r->securebits == me.securebits;
}

static bool may_take(uint32_t id, const uint32_t *own, bool privileged)
{
	return privileged || id == own[0] || id == own[1] || id == own[2];
}

/* the reason the caller may not assume r, or NULL */
static const char *forbidden(const struct rcred *r)
{
	bool su = me.eff & CAP_SETUID_BIT, sg = me.eff & CAP_SETGID_BIT;
	const uint32_t *u = (const uint32_t *)me.uid, *g = (const uint32_t *)me.gid;

	if (!may_take(r->uid, u, su) || !may_take(r->euid, u, su) || !may_take(r->suid, u, su) ||
	    !may_take(r->fsuid, u, su))
		return "user ids";
	if (!may_take(r->gid, g, sg) || !may_take(r->egid, g, sg) || !may_take(r->sgid, g, sg) ||
	    !may_take(r->fsgid, g, sg) || (!sg && !same_groups(r)))
		return "group ids";
	if ((r->cap_prm & ~me.prm) || (r->cap_eff & ~r->cap_prm) || (r->cap_bnd & ~me.bnd) ||
	    (r->cap_inh & ~(me.inh | me.prm)))
		return "capabilities";
	return NULL;
}

int restore_cred_obj(struct rctx *c, const struct ckpt_hdr *h)
{
	struct robj *o;

	switch (h->type) {
	case CKPT_HDR_GROUPINFO: {
		uint8_t *raw;
		struct rcred *g;
		uint32_t n;

		if (!(o = obj_define(c, CKPT_OBJ_GROUPINFO)))
			return -1;
		raw = rs_payload_alloc(&c->in, h, 4, 4 + 4 * NGROUPS_MAX_IMG + 8);
		if (!raw)
			return -1;
		memcpy(&n, raw, 4);
		g = calloc(1, sizeof(*g));
		if (!g || n > NGROUPS_MAX_IMG || 4 + 4 * (size_t)n > h->len - sizeof(*h)) {
			free(raw);
			free(g);
			return rs_invalid(&c->in, "GROUPINFO at offset %llu: %u groups", (unsigned long long)c->in.rec_off, n);
		}
		g->ngroups = n;
		g->groups = malloc((n ? n : 1) * 4);
		if (!g->groups)
			return pr_perror("groups");
		memcpy(g->groups, raw + 4, 4 * n);
		free(raw);
		o->data = g;
		return 0;
	}
	case CKPT_HDR_USER_NS: {
		struct ckpt_hdr_user_ns u;

		if (!(o = obj_define(c, CKPT_OBJ_USER_NS)) ||
		    rs_record(&c->in, h, &u, sizeof(u)))
			return -1;
		if (u.creator_ref)
			return rst_refuse(c, "a nested user namespace");
		return 0;
	}
	case CKPT_HDR_USER: {
		struct ckpt_hdr_user u;

		if (!(o = obj_define(c, CKPT_OBJ_USER)))
			return -1;
		return rs_record(&c->in, h, &u, sizeof(u));
	}
	default: {
		struct ckpt_hdr_cred cr;
		struct rcred *r;
		struct robj *gi;

		if (!(o = obj_define(c, CKPT_OBJ_CRED)) ||
		    rs_record(&c->in, h, &cr, sizeof(cr)))
			return -1;
		gi = obj_get(c, cr.groupinfo_ref, CKPT_OBJ_GROUPINFO);
		if (!gi || !(r = calloc(1, sizeof(*r))))
			return -1;
		*r = *(struct rcred *)gi->data;
		r->uid = cr.uid; r->euid = cr.euid; r->suid = cr.suid; r->fsuid = cr.fsuid;
		r->gid = cr.gid; r->egid = cr.egid; r->sgid = cr.sgid; r->fsgid = cr.fsgid;
		r->cap_inh = cr.cap_s.cap_i_0 | (uint64_t)cr.cap_s.cap_i_1 << 32;
		r->cap_prm = cr.cap_s.cap_p_0 | (uint64_t)cr.cap_s.cap_p_1 << 32;
		r->cap_eff = cr.cap_s.cap_e_0 | (uint64_t)cr.cap_s.cap_e_1 << 32;
		r->cap_bnd = cr.cap_s.cap_b_0 | (uint64_t)cr.cap_s.cap_b_1 << 32;
		r->securebits = cr.cap_s.securebits;
		o->data = r;
		return 0;
	}
	}
}

int restore_task_creds(struct rctx *c, const struct ckpt_hdr *h)
{
	struct ckpt_hdr_task_creds tc;
	struct rtask *t = cur_task(c);
	struct robj *o;
	const char *why;
	struct rcred *r;

	if (!t || rs_record(&c->in, h, &tc, sizeof(tc)))
		return -1;
	o = obj_get(c, tc.cred_ref, CKPT_OBJ_CRED);
	if (!o || !obj_get(c, tc.ecred_ref, CKPT_OBJ_CRED) || read_caller())
		return -1;
	r = o->data;
	why = is_callers(r) ? NULL : forbidden(r);
	if (why)
		return rst_refuse(c, "pid %d runs with %s (uid %u, gid %u, capabilities %#llx) the "
				  "caller (uid %u, capabilities %#llx) may not assume", t->pid, why,
				  r->uid, r->gid, (unsigned long long)r->cap_eff, me.uid[0],
				  (unsigned long long)me.eff);
	t->cred_ref = tc.cred_ref;
	return 0;
}

static int inj(struct rctx *c, struct rtask *t, const char *what, long nr, long a0, long a1,
	       long a2, long a3)
{
	long r = rinj_syscall(c, t, nr, a0, a1, a2, a3, 0, 0);

	if (r == INFECT_FAILED)
		return -1;
	if (r < 0)
		return rst_refuse(c, "pid %d: %s: %s", t->pid, what, strerror(-r));
	return 0;
}

int release_creds(struct rctx *c, struct rtask *t)
{
	struct rproc *p = &c->procs[t->proc];
	struct __user_cap_header_struct hdr = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct d[2];
	struct rcred *r;
	uint64_t at;
	int cap;

	if (t->cred_ref <= 0)
		goto after;
	r = c->objs[t->cred_ref].data;
	if (read_caller())
		return -1;
	if (is_callers(r))
		goto after;
	for (cap = 0; cap < 64; cap++)
		if ((me.bnd & (1ULL << cap)) && !(r->cap_bnd & (1ULL << cap)) &&
		    inj(c, t, "drop from the bounding set", SYS_prctl, PR_CAPBSET_DROP, cap, 0, 0))
			return -1;
	if (inj(c, t, "keep capabilities", SYS_prctl, PR_SET_SECUREBITS,
		r->securebits | SECBIT_NO_SETUID_FIXUP, 0, 0))
		return -1;
	at = rinj_put(c, p, 0, r->groups, r->ngroups * 4);
	if ((r->ngroups && !at) || inj(c, t, "setgroups", SYS_setgroups, r->ngroups, at, 0, 0) ||
	    inj(c, t, "setresgid", SYS_setresgid, r->gid, r->egid, r->sgid, 0) ||
	    rinj_syscall(c, t, SYS_setfsgid, r->fsgid, 0, 0, 0, 0, 0) == INFECT_FAILED ||
	    inj(c, t, "setresuid", SYS_setresuid, r->uid, r->euid, r->suid, 0) ||
	    rinj_syscall(c, t, SYS_setfsuid, r->fsuid, 0, 0, 0, 0, 0) == INFECT_FAILED ||
	    inj(c, t, "securebits", SYS_prctl, PR_SET_SECUREBITS, r->securebits, 0, 0))
		return -1;
	memset(d, 0, sizeof(d));
	d[0].effective = r->cap_eff; d[1].effective = r->cap_eff >> 32;
	d[0].permitted = r->cap_prm; d[1].permitted = r->cap_prm >> 32;
	d[0].inheritable = r->cap_inh; d[1].inheritable = r->cap_inh >> 32;
	if (!rinj_put(c, p, 0, &hdr, sizeof(hdr)) || !rinj_put(c, p, 64, d, sizeof(d)) ||
	    inj(c, t, "capset", SYS_capset, p->stub + RST_SCRATCH, p->stub + RST_SCRATCH + 64, 0, 0))
		return -1;
after:
	/* a change of credentials resets both: set after it */
	if (t->pid == t->tgid && p->have_mm &&
	    inj(c, t, "dumpable", SYS_prctl, PR_SET_DUMPABLE, p->mm.flags & 3, 0, 0))
		return -1;
	if (inj(c, t, "parent death signal", SYS_prctl, PR_SET_PDEATHSIG, t->rec.pdeath_signal, 0, 0) ||
	    inj(c, t, "robust list", SYS_set_robust_list, t->rec.robust_futex_list,
		t->rec.robust_futex_head_len ? t->rec.robust_futex_head_len : 24, 0, 0) ||
	    rinj_syscall(c, t, SYS_set_tid_address, t->rec.clear_child_tid, 0, 0, 0, 0, 0) == INFECT_FAILED)
		return -1;
	if (t->rec.sas_ss_size) {
		stack_t ss = { (void *)t->rec.sas_ss_sp, 0, t->rec.sas_ss_size };

		at = rinj_put(c, p, 0, &ss, sizeof(ss));
		if (!at || inj(c, t, "sigaltstack", SYS_sigaltstack, at, 0, 0, 0))
			return -1;
	}
	at = rinj_put(c, p, 0, t->comm, sizeof(t->comm));
	return !at || inj(c, t, "comm", SYS_prctl, PR_SET_NAME, at, 0, 0) ? -1 : 0;
}
