"""v19-rc1 <-> v19-rc2: LSM labels, epoll, eventfd.

* ``sec_ref`` / ``f_secref`` fields grow CRED (88->96), FILE (40->48),
  ``ipc_perms`` (48->56) and IPC_MSG_MSG (16->24); 0 means "no label".
* LSM_INFO=7, SECURITY=8 records, SECURITY_PTR/SECURITY objects; the container
  section may carry ``BUFFER lsm_name | LSM_INFO`` after CONTAINER.
* EPOLL_ITEMS 308, FILE_EPOLL/FILE_EVENTFD; SOCKET_FRAG=704 is inserted
  (SOCKET_UNIX, SOCKET_INET renumbered by name).
* SOCKET_BUFFER (16->104) and SOCKET_INET (48->328) change layout; imgtools
  has no struct for them, so they cannot be converted (a loss either way).

Upgrade assumes no LSM (every sec_ref 0, a note); downgrade loses any label.
"""
from __future__ import annotations

from . import _base
from ._base import New

_NO_LSM = "assumed: no LSM label (the source version has no security references)"


class Step(_base.Step):
    OLD, NEW = "v19-rc1", "v19-rc2"
    NEW_FIELDS = {
        "cred": {"sec_ref": New(0, _NO_LSM)},
        "file": {"f_secref": New(0, _NO_LSM)},
        "ipc_shm": {"perms.sec_ref": New(0, _NO_LSM)},
        "ipc_msg": {"perms.sec_ref": New(0, _NO_LSM)},
        "ipc_sem": {"perms.sec_ref": New(0, _NO_LSM)},
        "ipc_msg_msg": {"sec_ref": New(0, _NO_LSM)},
    }
    OPAQUE_CHANGED = frozenset({"socket_buffer", "socket_inet"})

    def downward(self, recs):
        state = None            # "container": between CONTAINER and TREE (LSM section)
        for rec in recs:
            n = rec.name
            if n == "container":
                state = "container"
            elif n == "tree":
                state = None
            elif state == "container" and n == "buffer":
                name = rec.data().split(b"\0", 1)[0].decode("utf-8", "replace")
                self.lose(rec, "lsm_name", name, "v19-rc1 has no LSM section")
                continue
            out = self.generic(rec)
            if out is not None:
                yield out
