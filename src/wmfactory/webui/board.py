"""What every tab of the board shares: its folders, the training process, the loaded models, and the one way an
action reports a user's mistake (a one-line message in the page, never a traceback)."""

import functools
import itertools
import os
import tempfile
import threading
from typing import Callable

import gradio as gr

from ..extras.errors import DataError
from .training import TrainingJob

# the board's own files inside saves_dir: the YAML of each run it started, and that run's console log
BOARD_FOLDER = ".webui"


class Board:
    def __init__(self, saves_dir: str, dataset_dir: str):
        self.saves_dir = saves_dir
        self.dataset_dir = dataset_dir
        self.job = TrainingJob()
        self.files = tempfile.mkdtemp(prefix="wmfactory-webui-")  # PNG and CSV downloads
        self._numbers = itertools.count()
        self._models: dict[str, object] = {}
        self._model_lock = threading.Lock()

    @property
    def board_folder(self) -> str:
        return os.path.join(self.saves_dir, BOARD_FOLDER)

    def file(self, name: str) -> str:
        """A new path in the board's download folder: `<n>-<name>` (every result keeps its own file)."""
        return os.path.join(self.files, f"{next(self._numbers)}-{name}")

    def model(self, run_dir: str):
        """The world model of a run folder, loaded once (the newest few are kept)."""
        from ..model import WorldModel

        run_dir = (run_dir or "").strip()
        if not run_dir:
            raise DataError("pick a run folder (the output_dir of a training run).")
        key = os.path.abspath(run_dir)
        with self._model_lock:
            if key not in self._models:
                if len(self._models) >= 2:
                    self._models.pop(next(iter(self._models)))
                self._models[key] = WorldModel.from_pretrained(run_dir)
            return self._models[key]

    def forget_model(self, run_dir: str) -> None:
        """Drop a cached model (its folder was trained again)."""
        with self._model_lock:
            self._models.pop(os.path.abspath(run_dir), None)


def one_line(message: str) -> str:
    return " ".join(str(message).split())


def shown_errors(action: Callable) -> Callable:
    """Run `action`; bad input (wmfactory's DataError and ConfigError, or a ValueError of argument parsing) ends
    it with its message in the page (`gr.Error`), without a traceback, and the board goes on."""

    @functools.wraps(action)
    def guarded(*args, **kwargs):
        try:
            return action(*args, **kwargs)
        except gr.Error:
            raise
        except (DataError, ValueError) as err:
            raise gr.Error(one_line(err), print_exception=False) from None

    return guarded
