"""One command at a time per output folder: `train`, `predict`, `eval` and `encode` hold `<output_dir>/.wmfactory.lock`
(`export`, whose folder is replaced whole, holds `.<name>.wmfactory.lock` beside it) while they write. A second command
into the same folder refuses to start and names the holder.

The lock is filelock's OS lock (`flock`) on that file, so the operating system releases it when its process ends,
however it ends (SIGKILL included): there are no stale locks to take over. The file holds the holder's pid, host and
command, for the message, and is removed when the holder releases it."""

import contextlib
import os
import socket
from typing import Optional

from filelock import FileLock, Timeout

from ..extras.errors import ConfigError

LOCK_FILE = ".wmfactory.lock"


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
    holder = f"{os.getpid()}@{socket.gethostname()} {command}".encode("utf-8")

    def write_holder(fd: int) -> None:  # into the locked file, before anyone can read it as ours
        os.ftruncate(fd, 0)
        os.pwrite(fd, holder, 0)

    lock = FileLock(path, timeout=0, on_acquired=write_holder)
    try:
        lock.acquire()
    except Timeout:
        pid, _, what = _holder(path).partition(" ")
        raise ConfigError(f"'{output_dir}' is in use by another {what or 'command'} (process {pid}, see {path}). "
                          "Wait for it to finish or choose another output folder.") from None
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            os.remove(path)  # while still held: a process that opened this file finds it unlinked and retries
        lock.release()
