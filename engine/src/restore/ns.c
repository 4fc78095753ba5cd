/*
 * Namespaces on restore: NS, UTS_NS, IPC_NS (with its IPC sections) and TASK_NS. The mirror
 * of ns.c. The tree is restored into the caller's UTS and IPC namespaces (the same host);
 * a different host name is reported, and IPC objects, which the dumper does not save, must
 * be absent.
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
		struct ckpt_hdr_ipcns i;

		if (!obj_define(c, CKPT_OBJ_IPC_NS))
			return -1;
		return rs_record(&c->in, h, &i, sizeof(i));
	}
	case CKPT_HDR_IPC: {
		struct ckpt_hdr_ipc i;

		if (rs_record(&c->in, h, &i, sizeof(i)))
			return -1;
		if (i.ipc_count)
			return rst_refuse(c, "%u SysV IPC objects of type %u", i.ipc_count, i.ipc_type);
		return 0;
	}
	case CKPT_HDR_NS: {
		struct ckpt_hdr_ns n;

		if (!obj_define(c, CKPT_OBJ_NS) ||
		    rs_record(&c->in, h, &n, sizeof(n)))
			return -1;
		if (n.net_objref)
			return rst_refuse(c, "a network namespace");
		return 0;
	}
	default: {
		struct ckpt_hdr_task_ns tn;

		return rs_record(&c->in, h, &tn, sizeof(tn));
	}
	}
}
