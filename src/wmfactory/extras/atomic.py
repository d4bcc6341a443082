"""Writing files so that a reader finds either the old file or the new one, never half of one.

Every file a command writes goes to a temporary name in the same folder (`.<name>.partial-<pid>`), is flushed to
disk, then renamed over the final name (`os.replace`, atomic on POSIX). A write that fails (a full disk, a quota,
`RLIMIT_FSIZE`) removes its temporary file and ends as one `DataError` naming the path; a process killed mid-write
leaves only a hidden `.partial-` file, which no reader opens and `remove_partials` clears."""

import contextlib
import errno
import json
import os
import re
import shutil
from typing import Any, Callable, Iterator

from .errors import DataError

PARTIAL = ".partial-"
# what the disk or the system refuses (full, quota, file size limit, read-only, no permission, I/O): the user's to
# fix, so one line; any other OSError inside a write is a bug and keeps its traceback
WRITE_FAILURES = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO}


def partial_name(path: str) -> str:
    folder, name = os.path.split(os.path.abspath(path))
    return os.path.join(folder, f".{name}{PARTIAL}{os.getpid()}")


def as_os_error(err: BaseException) -> OSError | None:
    """`err` as the OSError it reports: itself, or the I/O error inside a safetensors error (a full disk while
    `save_file` writes: "I/O error: No space left on device (os error 28)"); None for anything else."""
    if isinstance(err, OSError):
        return err
    found = re.search(r"I/O error: (.*?) \(os error (\d+)\)", str(err)) if type(err).__name__ == "SafetensorError" \
        else None
    return OSError(int(found.group(2)), found.group(1)) if found else None


def cannot_write(path: str, err: OSError) -> DataError:
    reason = err.strerror or str(err) or type(err).__name__
    return DataError(f"cannot write '{path}': {reason}; nothing was left half-written there (free space or fix the "
                     "permissions, then run the command again).")


def _sync_folder(folder: str) -> None:
    """Make a rename durable: fsync the folder that holds it (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            os.remove(path)


@contextlib.contextmanager
def _replacing(path: str) -> Iterator[str]:
    """A temporary name beside `path`; when the block ends without error, the file written there takes `path`'s
    place. On any error the temporary file is removed, and a full disk (or another write failure) is one line."""
    temporary = partial_name(path)
    try:
        yield temporary
        os.replace(temporary, path)
    except BaseException as err:
        _remove(temporary)
        if (failure := as_os_error(err)) is not None and failure.errno in WRITE_FAILURES:
            raise cannot_write(path, failure) from None
        raise
    _sync_folder(os.path.dirname(os.path.abspath(path)))


def save_with(path: str, save: Callable[[str], Any]) -> None:
    """`save(temporary_path)` writes the file (a library's own writer: safetensors, json), then it takes `path`'s
    place. The writer must not infer the format from the temporary name's suffix."""
    with _replacing(path) as temporary:
        save(temporary)
        with open(temporary, "rb+") as f:
            os.fsync(f.fileno())


@contextlib.contextmanager
def open_atomic(path: str, mode: str = "w", encoding: str | None = "utf-8") -> Iterator:
    """`with open_atomic(path) as f: f.write(...)`: the file appears at `path` when the block ends without error."""
    with _replacing(path) as temporary:
        with open(temporary, mode, encoding=None if "b" in mode else encoding) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())


def write_bytes(path: str, content: bytes) -> None:
    with open_atomic(path, "wb") as f:
        f.write(content)


def write_text(path: str, text: str) -> None:
    with open_atomic(path) as f:
        f.write(text)


def write_json(path: str, content: Any, **dump_keys) -> None:
    write_text(path, json.dumps(content, **dump_keys) + "\n")


@contextlib.contextmanager
def staged_folder(path: str) -> Iterator[str]:
    """Yields a temporary folder beside `path`; when the block ends without error it replaces `path` (an existing
    folder is moved aside first, then removed). A kill between the two renames leaves the new folder under its
    temporary name and no `path`: nothing, never a mix."""
    temporary = partial_name(path)
    _remove(temporary)
    try:
        os.makedirs(temporary)
        yield temporary
    except BaseException as err:
        _remove(temporary)
        if (failure := as_os_error(err)) is not None and failure.errno in WRITE_FAILURES:
            raise cannot_write(path, failure) from None
        raise
    old = f"{temporary}.old"
    if os.path.isdir(path):
        os.replace(path, old)
    os.replace(temporary, path)
    _remove(old)
    _sync_folder(os.path.dirname(os.path.abspath(path)))


def remove_partials(folder: str, prefix: str = ".") -> None:
    """Remove what killed writers left in `folder` (`.partial-` names starting with `prefix`). Call it only while
    holding the lock of what they were writing: then no other process is writing them."""
    if not os.path.isdir(folder):
        return
    for name in os.listdir(folder):
        if name.startswith(prefix) and PARTIAL in name:
            _remove(os.path.join(folder, name))


def commit_staged(staging: str, folder: str, names: list[str], marker: str) -> None:
    """Move the entries `names` (files or folders) from `staging` into `folder`, replacing the old ones, with
    `marker` (one of `names`, the file a reader opens first) removed first and put in place last: a kill at any
    moment leaves the old output, no output (no marker), or the new output. `staging` is removed."""
    final_marker = os.path.join(folder, marker)
    with contextlib.suppress(FileNotFoundError):
        os.remove(final_marker)
    _sync_folder(folder)
    for name in names:
        if name == marker:
            continue
        target = os.path.join(folder, name)
        if os.path.lexists(target):
            os.replace(target, os.path.join(staging, f"{name}.old"))
        os.replace(os.path.join(staging, name), target)
    os.replace(os.path.join(staging, marker), final_marker)
    _sync_folder(folder)
    _remove(staging)


@contextlib.contextmanager
def staged_outputs(folder: str, names: list[str], marker: str) -> Iterator[str]:
    """`with staged_outputs(out, ["plans", "plans.jsonl"], "plans.jsonl") as staging:` write those entries into the
    hidden folder `staging`; when the block ends they replace the old ones in `folder` (`commit_staged`). A write that
    fails removes the staging folder and ends as one DataError naming the path; the old output stays."""
    remove_partials(folder)
    staging = partial_name(os.path.join(folder, marker))
    os.makedirs(staging)
    try:
        yield staging
        commit_staged(staging, folder, names, marker)
    except BaseException as err:
        _remove(staging)
        failure = as_os_error(err)
        if failure is None or failure.errno not in WRITE_FAILURES:
            raise
        raise cannot_write(str(failure.filename or folder).replace(staging, folder), failure) from None
