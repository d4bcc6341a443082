"""The exception types for problems in the user's data or configuration, and the one place that turns them into a
line on stderr.

Commands catch `DataError` (and its subclass `ConfigError`) once and print the message as a single line; anything
else is a bug and keeps its traceback.
"""

import sys
from typing import Callable, Optional


class DataError(ValueError):
    """Bad input: a dataset, a row, an embedding file or a configuration value. The message names the culprit;
    `reason` is the message without the location (used to count skipped rows by reason)."""

    def __init__(self, message: str, reason: Optional[str] = None):
        message = shown(message)  # one line, whatever value or file name the message quotes
        super().__init__(message)
        self.reason = shown(reason) if reason else message

    def __reduce__(self):  # keep `reason` across the processes of a multi-worker `datasets.map`
        return (type(self), (str(self), self.reason))


class ConfigError(DataError):
    """A configuration value the user set wrongly (an unknown key, a value out of range, keys that contradict)."""

    PREFIX = "invalid configuration: "

    def __init__(self, message: str, reason: Optional[str] = None):
        if not message.startswith(self.PREFIX):
            message = self.PREFIX + message
        super().__init__(message, reason)


def shown(text: str) -> str:
    """`text` for a one-line message: control characters (a newline, a NUL byte) written as escapes, so that a file
    name holding one can neither break the line nor hide what it is."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def where(dataset: str | None = None, row: int | None = None, key: str | None = None, file: str | None = None) -> str:
    """Format the location of a data problem: ``dataset 'wm_demo', row 3, key 'm2', file 'a.json'``."""
    parts = []
    if dataset is not None:
        parts.append(f"dataset '{shown(dataset)}'")
    if row is not None:
        parts.append(f"row {row}")
    if key is not None:
        parts.append(f"key '{shown(key)}'")
    if file is not None:
        parts.append(f"file '{shown(file)}'")
    return ", ".join(parts)


def row_error(reason: str, dataset: str, row: int, key: str | None = None, file: str | None = None) -> DataError:
    """A problem of one row: `dataset 'd', row 3, key 'm2', file 'a.json': <reason>`."""
    return DataError(f"{where(dataset, row, key, file)}: {reason}", reason=reason)


def guarded(run: Callable[[list[str]], object], argv: list[str]) -> int:
    """Run a command: bad configuration or data ends with one line on stderr and exit status 1; anything else is a
    bug and keeps its traceback. Returns the exit status."""
    try:
        result = run(argv)
    except DataError as err:
        print(f"wmfactory: error: {err}", file=sys.stderr)
        return 1
    return result if isinstance(result, int) else 0
