"""Sockets, epoll items, tty line disciplines and semaphore undo lists: the records that
follow a SOCKET object (SOCKET_UNIX, SOCKET_INET), the queues of skbs written after the file
table (SOCKET_QUEUE, then skb_count x (SOCKET_BUFFER BUFFER [SOCKET_FRAG BUFFER]...)), the
EPOLL_ITEMS and their BUFFER, a TTY's TTY_LDISC and its buffered input, and a task's
TASK_SEM_UNDO_LIST with count x (TASK_SEM_UNDO BUFFER)."""
from __future__ import annotations

from ._pass import ERROR, WARNING, Expect, Pass
from .objrefs import REQ

# code -> (severity, title, explanation)
CODES: dict[str, tuple[str, str, str]] = {
    "socket.family": (ERROR, "socket family record out of place", "An AF_UNIX SOCKET is "
                      "followed by its SOCKET_UNIX, an AF_INET/AF_INET6 one by its "
                      "SOCKET_INET, before the FILE that names the socket; a family record "
                      "belongs to a SOCKET of its family."),
    "socket.addr": (WARNING, "socket address length out of range", "laddr_len and raddr_len "
                    "count the bytes of the sockaddr they describe: at most its size."),
    "socket.queue": (ERROR, "socket queue inconsistent", "SOCKET_QUEUE announces skb_count "
                     "SOCKET_BUFFERs holding total_bytes; each SOCKET_BUFFER is followed by "
                     "the BUFFER of its data (lin_len bytes where the version has it), then "
                     "nr_frags SOCKET_FRAGs with their BUFFERs."),
    "epoll.items": (ERROR, "epoll items inconsistent", "EPOLL_ITEMS names an epoll FILE and, "
                    "when num_items is not 0, is followed by a BUFFER of num_items "
                    "ckpt_eventpoll_items, each naming the file it watches."),
    "tty.ldisc": (ERROR, "tty line discipline inconsistent", "TTY_LDISC follows its TTY; a "
                  "BUFFER of datalen bytes (at most N_TTY_BUF_SIZE) follows when datalen is "
                  "not 0."),
    "ipc.sem-undo": (ERROR, "semaphore undo list inconsistent", "TASK_SEM_UNDO_LIST "
                     "announces count TASK_SEM_UNDO records, each followed by a BUFFER of "
                     "semadj_count s16 adjustments."),
}

EXPECT = {
    "skb": Expect(("socket_buffer",), "socket.queue", "a SOCKET_BUFFER its SOCKET_QUEUE "
                  "announced"),
    "skb_data": Expect(("buffer",), "socket.queue", "the BUFFER of an skb's data"),
    "frag": Expect(("socket_frag",), "socket.queue", "a SOCKET_FRAG its SOCKET_BUFFER "
                   "announced"),
    "epoll_buffer": Expect(("buffer",), "epoll.items", "the BUFFER of epoll items"),
    "ldisc_data": Expect(("buffer",), "tty.ldisc", "the BUFFER of the tty's buffered input"),
    "sem_undo": Expect(("task_sem_undo",), "ipc.sem-undo", "a TASK_SEM_UNDO its list "
                       "announced"),
    "semadj": Expect(("buffer",), "ipc.sem-undo", "the BUFFER of semaphore adjustments"),
}

AF_UNIX, AF_INET, AF_INET6 = 1, 2, 10
FAMILY_RECORD = {AF_UNIX: "socket_unix", AF_INET: "socket_inet", AF_INET6: "socket_inet"}
SOCKADDR_SIZE = {"socket_unix": 110, "socket_inet": 16}
N_TTY_BUF_SIZE = 4096


class Sockets(Pass):
    def __init__(self, reader, sink):
        super().__init__(reader, sink)
        self.family_due: list[tuple[str, int]] = []     # (family record, SOCKET offset)
        self.item_size = self.abi.sizeof("ckpt_eventpoll_item")

    # -- a socket object and its family record ---------------------------------------
    def on_socket(self, rec, v, matched):
        self.object_record("socket", rec, v)
        want = FAMILY_RECORD.get(v.sock_common.family)
        if want is not None and self.abi.has(want):
            self.family_due.append((want, rec.offset))

    def family_record(self, rec, v, name: str) -> None:
        for i in range(len(self.family_due) - 1, -1, -1):
            if self.family_due[i][0] == name:
                del self.family_due[i]
                break
        else:
            self.add("socket.family", f"{name.upper()} without a SOCKET of its family before "
                     f"it")
        self.refs_of(name, v, None)
        size = SOCKADDR_SIZE[name]
        for field in ("laddr_len", "raddr_len"):
            if v[field] > size:
                self.add("socket.addr", f"{field} {v[field]} is larger than the "
                         f"{size}-byte sockaddr")

    def on_socket_unix(self, rec, v, matched):
        self.family_record(rec, v, "socket_unix")

    def on_socket_inet(self, rec, v, matched):
        self.family_record(rec, v, "socket_inet")

    def socket_file(self) -> None:
        """A FILE of a socket: its socket's family record came before it."""
        for name, off in self.family_due:
            self.add("socket.family", f"the SOCKET at byte {off} has no {name.upper()}")
        self.family_due.clear()

    # -- queues, written after the file table -------------------------------------------
    def on_socket_queue(self, rec, v, matched):
        if v.skb_count:
            self.expect.insert(0, ("skb", [v.skb_count, v.total_bytes], rec.offset))

    def on_socket_buffer(self, rec, v, matched):
        if matched is None:
            self.add("socket.queue", "SOCKET_BUFFER outside a SOCKET_QUEUE (or past its "
                     "skb_count)")
        else:
            left = matched[1]
            left[0] -= 1
            if left[0] > 0:
                self.expect.insert(0, ("skb", left, matched[2]))
        self.refs_of("socket_buffer", v, None)
        follow = [("skb_data", v.get("lin_len"), rec.offset)]
        follow += [("frag", None, rec.offset)] * min(v.get("nr_frags", 0), 64)
        self.expect[:0] = follow

    def buffer_skb_data(self, rec, lin_len) -> None:
        if lin_len is not None and rec.size != lin_len:
            self.add("socket.queue", f"skb BUFFER of {rec.size} bytes, SOCKET_BUFFER.lin_len "
                     f"says {lin_len}")

    def on_socket_frag(self, rec, v, matched):
        if matched is None:
            self.add("socket.queue", "SOCKET_FRAG not announced by a SOCKET_BUFFER")
        self.expect.insert(0, ("skb_data", v.size, rec.offset))

    # -- epoll ---------------------------------------------------------------------------
    def on_epoll_items(self, rec, v, matched):
        self.ref("file", v.epfile_objref, "epfile_objref", REQ)
        if v.num_items:                 # no BUFFER for no items
            self.expect.insert(0, ("epoll_buffer", v.num_items, rec.offset))

    def buffer_epoll_buffer(self, rec, n) -> None:
        size = self.item_size
        if rec.size != n * size:
            self.add("epoll.items", f"BUFFER of {rec.size} bytes for {n} epoll items "
                     f"({n * size} bytes)")
            return
        data = rec.read(n * size)
        for i in range(n):
            item = self.abi.parse("ckpt_eventpoll_item", data[i * size:(i + 1) * size])
            self.name = "epoll_items"
            self.ref("file", item.file_objref, f"item[{i}].file_objref", REQ)
        self.name = "buffer"

    # -- ttys ----------------------------------------------------------------------------
    def on_tty(self, rec, v, matched):
        self.object_record("tty", rec, v)

    def on_tty_ldisc(self, rec, v, matched):
        if self.last_name != "tty":
            self.add("tty.ldisc", "TTY_LDISC not right after its TTY")
        if v.datalen > N_TTY_BUF_SIZE:
            self.add("tty.ldisc", f"datalen {v.datalen} exceeds N_TTY_BUF_SIZE "
                     f"({N_TTY_BUF_SIZE})")
        elif v.datalen:
            self.expect.insert(0, ("ldisc_data", v.datalen, rec.offset))

    def buffer_ldisc_data(self, rec, n) -> None:
        if rec.size != n:
            self.add("tty.ldisc", f"tty input BUFFER of {rec.size} bytes, datalen says {n}")

    # -- semaphore undo lists ------------------------------------------------------------
    def on_task_sem_undo_list(self, rec, v, matched):
        self.object_record("task_sem_undo_list", rec, v)
        if v.count:
            self.expect.insert(0, ("sem_undo", min(v.count, 1 << 20), rec.offset))

    def on_task_sem_undo(self, rec, v, matched):
        if matched is None:
            self.add("ipc.sem-undo", "TASK_SEM_UNDO outside a TASK_SEM_UNDO_LIST (or past "
                     "its count)")
        elif matched[1] > 1:
            self.expect.insert(0, ("sem_undo", matched[1] - 1, matched[2]))
        if v.semadj_count:
            self.expect.insert(0, ("semadj", v.semadj_count, rec.offset))

    def buffer_semadj(self, rec, n) -> None:
        if rec.size != 2 * n:
            self.add("ipc.sem-undo", f"adjustment BUFFER of {rec.size} bytes for {n} "
                     f"semaphores ({2 * n} bytes)")
