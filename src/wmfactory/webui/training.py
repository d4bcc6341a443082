"""The board's training run: `wmfactory train CONFIG.yaml` as a subprocess, its console written to a log file.
Stop sends SIGTERM, on which the trainer saves a checkpoint at the end of the step and ends
(`train/preemption.py`); the run resumes from it with `resume_from_checkpoint`."""

import os
import signal
import subprocess
import sys
from typing import Optional

from ..extras.errors import DataError

ERROR_PREFIX = "wmfactory: error: "
START_MARK = "==> wmfactory "  # the line the board writes into the console log before each run


class TrainingJob:
    """At most one training run at a time."""

    def __init__(self):
        self.process: Optional[subprocess.Popen] = None
        self.output_dir: Optional[str] = None
        self.log_path: Optional[str] = None
        self.stop_requested = False

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, config_path: str, output_dir: str, log_path: str) -> list[str]:
        """Starts `wmfactory train config_path`; returns the command."""
        if self.running:
            raise DataError(f"a training run is going on (into '{self.output_dir}'): stop it first.")
        command = [sys.executable, "-m", "wmfactory.cli", "train", config_path]
        os.makedirs(os.path.dirname(log_path) or ".", exist_ok=True)
        with open(log_path, "a", encoding="utf-8") as log:  # a resumed run's console follows the stopped one's
            log.write(f"{START_MARK}{' '.join(command[3:])}\n")
            log.flush()
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.output_dir, self.log_path, self.stop_requested = output_dir, log_path, False
        return command

    def stop(self) -> None:
        """SIGTERM: a checkpoint at the end of the current step, then the run ends."""
        if not self.running:
            raise DataError("no training run is going on.")
        self.stop_requested = True
        self.process.send_signal(signal.SIGTERM)

    def wait(self, timeout: Optional[float] = None) -> Optional[int]:
        if self.process is None:
            return None
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def console_tail(self, lines: int = 15) -> str:
        if not self.log_path or not os.path.isfile(self.log_path):
            return ""
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            text = f.read()[-20000:]
        text = text[text.rfind(START_MARK):] if START_MARK in text else text  # this run's console only
        # tqdm redraws its bar with carriage returns: keep the last state of each line
        kept = [line.rsplit("\r", 1)[-1] for line in text.splitlines()]
        return "\n".join([line for line in kept if line.strip()][-lines:])

    def error_line(self) -> Optional[str]:
        """The one-line message of a run that ended with wmfactory's error (bad data or configuration)."""
        if self.process is None or self.process.poll() in (None, 0):
            return None
        for line in reversed(self.console_tail(50).splitlines()):
            if line.startswith(ERROR_PREFIX):
                return line[len(ERROR_PREFIX):]
        return None

    def state(self) -> str:
        """`idle`, `running`, `stopping`, `finished`, `stopped` or `failed (exit status N)`."""
        if self.process is None:
            return "idle"
        code = self.process.poll()
        if code is None:
            return "stopping" if self.stop_requested else "running"
        if code == 0:
            return "stopped" if self.stop_requested else "finished"
        return f"failed (exit status {code})"
