"""A terminal in a few lines, for tests/test_restore_tty.py: runs CMD on a new pty and relays.

    python3 pty_relay.py FIFO LOG CMD...

The parent holds the master: what arrives on FIFO goes to the program's terminal, what the
program writes there is appended to LOG. It is dumped with its child and restored with
them: after the restore the relay still carries input to the program and its output back.
"""
import os
import pty
import select
import sys

fifo, log, cmd = sys.argv[1], sys.argv[2], sys.argv[3:]
pid, master = pty.fork()
if pid == 0:
    os.execvp(cmd[0], cmd)
inp = os.open(fifo, os.O_RDWR)
out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
while True:
    ready, _, _ = select.select([inp, master], [], [])
    if inp in ready:
        os.write(master, os.read(inp, 4096))
    if master in ready:
        try:
            data = os.read(master, 4096)
        except OSError:         # the program is gone: its terminal hung up
            break
        if not data:
            break
        os.write(out, data)
