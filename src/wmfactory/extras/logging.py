"""The package logger. Its level follows ``TRANSFORMERS_VERBOSITY`` (default ``info``), so that
``TRANSFORMERS_VERBOSITY=debug`` turns on the per-row traces of the data pipeline as users of HF tools expect."""

import logging
import os
import sys

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR,
           "critical": logging.CRITICAL}


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is at the time of the record (so that redirections, e.g. pytest's capture,
    are followed instead of a stream captured at import)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


def get_logger(name: str) -> logging.Logger:
    root = logging.getLogger("wmfactory")
    if not root.handlers:
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("[wmfactory|%(levelname)s] %(message)s"))
        root.addHandler(handler)
        root.propagate = False
        verbosity = os.environ.get("TRANSFORMERS_VERBOSITY", "info").lower()
        root.setLevel(_LEVELS.get(verbosity, logging.INFO))
    return logging.getLogger(name if name.startswith("wmfactory") else f"wmfactory.{name}")
