"""One command at a time per output folder: `train`, `predict`, `eval` and `encode` hold `<output_dir>/.wmfactory.lock`
(`export`, whose folder is replaced whole, holds `.<name>.wmfactory.lock` beside it) while they write. A second command
into the same folder refuses to start and names the holder.

The lock is an OS lock (`flock`) on that file, so the operating system releases it when its process ends, however it
ends (SIGKILL included): there are no stale locks to take over. The file holds the holder's pid, host and command,
for the message."""

import contextlib
import fcntl
import os
import socket
from typing import Optional

from ..extras.errors import ConfigError

LOCK_FILE = ".wmfactory.lock"


def _acquire(path: str) -> Optional[int]:
    """An open descriptor holding the lock of `path`, or None when another process holds it."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        try:  # the holder before us may have removed the file between our open and our flock: lock the new one
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)


def _holder(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read().strip() or "unknown"
    except OSError:
        return "unknown"


@contextlib.contextmanager
def output_dir_lock(output_dir: str, is_main_process: bool = True, command: str = "training run",
                    lock_path: Optional[str] = None):
    """Hold the lock of `output_dir` (created if needed) while the block runs; `command` names this holder in the
    message another command gets. `lock_path`: the lock file, when not `<output_dir>/.wmfactory.lock`."""
    if not is_main_process:
        yield
        return
    path = lock_path or os.path.join(output_dir, LOCK_FILE)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fd = _acquire(path)
    if fd is None:
        holder = _holder(path)
        pid, _, what = holder.partition(" ")
        raise ConfigError(f"'{output_dir}' is in use by another {what or 'command'} (process {pid}, see {path}). "
                          "Wait for it to finish or choose another output folder.")
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}@{socket.gethostname()} {command}".encode("utf-8"))
        yield
    finally:
        with contextlib.suppress(OSError):
            os.remove(path)  # while still held: a process waiting on this file then sees it gone and retries
        os.close(fd)
