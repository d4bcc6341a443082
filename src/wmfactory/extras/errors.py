"""The one exception type for problems in the user's data or configuration.

The CLI catches it once and prints its message as a single line; anything else is a bug and keeps its traceback.
"""

from typing import Optional


class DataError(ValueError):
    """Bad input: a dataset, a row, an embedding file or a configuration value. The message names the culprit;
    `reason` is the message without the location (used to count skipped rows by reason)."""

    def __init__(self, message: str, reason: Optional[str] = None):
        super().__init__(message)
        self.reason = reason or message

    def __reduce__(self):  # keep `reason` across the processes of a multi-worker `datasets.map`
        return (type(self), (str(self), self.reason))


def where(dataset: str | None = None, row: int | None = None, key: str | None = None, file: str | None = None) -> str:
    """Format the location of a data problem: ``dataset 'wm_demo', row 3, key 'm2', file 'a.json'``."""
    parts = []
    if dataset is not None:
        parts.append(f"dataset '{dataset}'")
    if row is not None:
        parts.append(f"row {row}")
    if key is not None:
        parts.append(f"key '{key}'")
    if file is not None:
        parts.append(f"file '{file}'")
    return ", ".join(parts)


def row_error(reason: str, dataset: str, row: int, key: str | None = None, file: str | None = None) -> DataError:
    """A problem of one row: `dataset 'd', row 3, key 'm2', file 'a.json': <reason>`."""
    return DataError(f"{where(dataset, row, key, file)}: {reason}", reason=reason)
