/*
 * TEMPORARY minimal socket dispatch of the inet branch on restore: the unix branch owns
 * restore/net.c (SOCKET record, family dispatch, FILE of type SOCKET); the merge takes its
 * version.
 */
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "restore.h"

/* OBJREF(SOCK) SOCKET ...: the socket object, made by its family */
int restore_socket(struct rctx *c, const struct ckpt_hdr *h)
{
	struct ckpt_hdr_socket hs;
	struct robj *o = obj_define(c, CKPT_OBJ_SOCK);

	if (!o || rs_record(&c->in, h, &hs, sizeof(hs)))
		return -1;
	if (hs.sock_common.family == AF_INET || hs.sock_common.family == AF_INET6)
		return restore_inet_socket(c, o, &hs);
	return rst_refuse(c, "sockets of family %u are not restored", hs.sock_common.family);
}

/* FILE of type SOCKET: a description of the socket object, with the file's flags */
int open_socket_file(struct rctx *c, struct robj *o, const struct ckpt_hdr_file *f, int sock_ref)
{
	struct robj *s = obj_get(c, sock_ref, CKPT_OBJ_SOCK);

	if (!s)
		return -1;
	if (c->dry)
		return 0;
	o->fd = fcntl(s->fd, F_DUPFD_CLOEXEC, 3);
	if (o->fd < 0 || fcntl(o->fd, F_SETFL, f->f_flags & O_NONBLOCK))
		return pr_perror("socket file");
	return 0;
}
