"""v19-rc1 <-> v19-rc2: LSM labels, epoll, eventfd.

* ``sec_ref`` / ``f_secref`` fields grow CRED (88->96), FILE (40->48),
  ``ipc_perms`` (48->56) and IPC_MSG_MSG (16->24); 0 means "no label".
* LSM_INFO=7, SECURITY=8 records, SECURITY_PTR/SECURITY objects; the container
  section may carry ``BUFFER lsm_name | LSM_INFO`` after CONTAINER.
* EPOLL_ITEMS 308, FILE_EPOLL/FILE_EVENTFD; SOCKET_FRAG=704 is inserted
  (SOCKET_UNIX, SOCKET_INET renumbered by name).
* SOCKET_BUFFER grows from the two objrefs (16) to the skb's layout (104): an
  upgrade takes lin_len and skb_len from the BUFFER of data that follows, the
  other header offsets 0 (a note); a downgrade loses them where not 0, and the
  fragments (SOCKET_FRAG and its BUFFER: v19-rc1 has no record for them).
* SOCKET_INET grows from the two sockaddr_in (48) to 328 bytes: an upgrade
  derives the addresses and ports from them and assumes no TCP state (a note:
  v19-rc1 saved none); a downgrade loses the TCP, ack and IPv6 state.

Upgrade assumes no LSM (every sec_ref 0, a note); downgrade loses any label.
"""
from __future__ import annotations

from . import _base
from ._base import New

import formats

_TCP = formats.abi("v19-rc2").module.TCP_FIELDS
# the fields of the v19-rc2 SOCKET_BUFFER an upgrade sets to 0 (lin_len, skb_len: the data)
_SKB_HEAD = ("transport_header", "network_header", "mac_header", "frg_len", "hdr_len",
             "mac_len", "data_offset", "protocol", "nr_frags")
_INET_DERIVED = ("daddr", "rcv_saddr", "saddr", "dport", "num", "sport")
_NO_TCP = "assumed: no TCP state (v19-rc1 saved only the addresses)"

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

    def upward(self, recs):
        held = None             # a SOCKET_BUFFER waits for the BUFFER that gives its length
        for rec in recs:
            if held is not None:
                size = rec.size if rec.name == "buffer" else 0
                yield self.small(held, "socket_buffer", self._skb_up(held, size))
                held = None
            if rec.name == "socket_buffer":
                held = rec.derive("socket_buffer", rec.data())
                continue
            out = self.generic(rec)
            if out is not None:
                yield out
        if held is not None:
            yield self.small(held, "socket_buffer", self._skb_up(held, 0))

    def _skb_up(self, rec, size: int) -> dict:
        v = self.parse(rec)
        refs = {k: self.ref(rec, k, v[k]) for k in ("sk_objref", "pr_objref")}
        self.note(rec, "transport_header", 0, "assumed: a linear skb, header offsets 0 "
                  "(v19-rc1 saved only its data)")
        return {**dict.fromkeys(_SKB_HEAD, 0), **refs, "lin_len": size, "skb_len": size,
                "cb": bytes(48)}

    def fix_socket_buffer(self, rec, v) -> None:
        if self.up:
            return
        for f in _SKB_HEAD:
            if v.get(f):
                self.lose(rec, f, v[f], "v19-rc1 keeps only the skb's data")
        if any(v.get("cb", b"")):
            self.lose(rec, "cb", v["cb"], "v19-rc1 keeps only the skb's data")
        for f in (*_SKB_HEAD, "lin_len", "skb_len", "cb"):
            v.pop(f, None)

    def fix_socket_inet(self, rec, v) -> None:
        if self.up:
            la, ra = v["laddr"], v["raddr"]
            v.update(daddr=ra["sin_addr"], rcv_saddr=la["sin_addr"], saddr=la["sin_addr"],
                     dport=ra["sin_port"], sport=la["sin_port"],
                     num=int.from_bytes(la["sin_port"].to_bytes(2, "little"), "big"),
                     uc_ttl=-1, cmsg_flags=0,
                     icsk_ack=dict.fromkeys(("timeout", "ato", "lrcvtime", "last_seg_size",
                                             "rcv_mss", "pending", "quick", "pingpong",
                                             "blocked"), 0),
                     tcp=dict.fromkeys((*_TCP, "urg_data", "advmss", "frto_counter",
                                        "nonagle", "ecn_flags", "reordering",
                                        "keepalive_probes"), 0),
                     inet6={"saddr": bytes(16), "rcv_saddr": bytes(16), "daddr": bytes(16)})
            self.note(rec, "tcp", None, _NO_TCP)
            return
        for part in ("icsk_ack", "tcp", "inet6"):
            for f, x in (v.pop(part, None) or {}).items():
                if x and (not isinstance(x, bytes) or any(x)):
                    self.lose(rec, f"{part}.{f}", x, "v19-rc1 saves only the addresses")
        for f in ("uc_ttl", "cmsg_flags"):
            x = v.pop(f, None)
            if x not in (None, 0, -1):
                self.lose(rec, f, x, "v19-rc1 saves only the addresses")
        for f in _INET_DERIVED:
            v.pop(f, None)      # the sockaddrs hold them

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
