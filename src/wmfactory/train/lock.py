"""One training run per `output_dir`: the main process holds `<output_dir>/.wmfactory.lock` (its pid and host) while
it trains. A second run into the same folder refuses to start; the lock of a process that no longer runs on this
host is taken over with a warning (a run killed with SIGKILL leaves its lock behind)."""

import contextlib
import os
import socket

from ..extras.errors import ConfigError
from ..extras.logging import get_logger

logger = get_logger(__name__)
LOCK_FILE = ".wmfactory.lock"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


@contextlib.contextmanager
def output_dir_lock(output_dir: str, is_main_process: bool = True):
    if not is_main_process:
        yield
        return
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, LOCK_FILE)
    holder = f"{os.getpid()}@{socket.gethostname()}"
    while True:
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            with open(path, encoding="utf-8", errors="replace") as f:
                other = f.read().strip()
            pid, _, host = other.partition("@")
            if host == socket.gethostname() and pid.isdigit() and not _alive(int(pid)):
                logger.warning(f"'{output_dir}' was locked by process {pid}, which no longer runs: taking it over.")
                os.remove(path)
                continue
            raise ConfigError(f"'{output_dir}' is in use by another training run (process {other}, see {path}). "
                              "Wait for it to finish or choose another `output_dir`; if that run is gone, delete "
                              "the lock file.") from None
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(holder)
        break
    try:
        yield
    finally:
        try:
            with open(path, encoding="utf-8") as f:
                mine = f.read().strip() == holder
            if mine:
                os.remove(path)
        except OSError:
            pass
