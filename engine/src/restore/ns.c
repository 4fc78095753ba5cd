/*
 * Namespaces on restore: NS, UTS_NS, IPC_NS (its IPC sections are ipc.c's) and TASK_NS.
 * The mirror of ns.c. The tree is restored into the caller's UTS namespace (the same host;
 * a different host name is reported) and into the caller's IPC namespace unless the image
 * holds SysV IPC objects (ipc.c).
 */
#include <stdio.h>
#include <string.h>
#include <sys/utsname.h>

#include "restore.h"

int restore_ns_rec(struct rctx *c, const struct ckpt_hdr *h)
{
	switch (h->type) {
	case CKPT_HDR_UTS_NS: {
		struct ckpt_hdr_utsns u;
		struct utsname me;

		if (!obj_define(c, CKPT_OBJ_UTS_NS) ||
		    rs_record(&c->in, h, &u, sizeof(u)))
			return -1;
		u.nodename[CKPT_NEW_UTS_LEN] = 0;
		if (c->dry && !uname(&me) && strcmp(me.nodename, u.nodename))
			fprintf(stderr, "imgtools-engine: note: restored in this host's UTS namespace "
				"(the image was taken on another host name)\n");
		return 0;
	}
	case CKPT_HDR_IPC_NS: {
		struct robj *o = obj_define(c, CKPT_OBJ_IPC_NS);
		struct ckpt_hdr_ipcns i;

		if (!o || rs_record(&c->in, h, &i, sizeof(i)))
			return -1;
		return ipc_ns_begin(c, o - c->objs, &i);
	}
	case CKPT_HDR_IPC:
		return restore_ipc_section(c, h);
	case CKPT_HDR_NS: {
		struct robj *o = obj_define(c, CKPT_OBJ_NS);
		struct ckpt_hdr_ns n;

		if (!o || rs_record(&c->in, h, &n, sizeof(n)))
			return -1;
		if (n.net_objref)
			return rst_refuse(c, "a network namespace");
		return ipc_ns_link(c, o - c->objs, n.ipc_objref);
	}
	default: {
		struct ckpt_hdr_task_ns tn;

		if (rs_record(&c->in, h, &tn, sizeof(tn)))
			return -1;
		return ipc_task_join(c, tn.ns_objref);
	}
	}
}
