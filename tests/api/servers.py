"""A real `wmfactory api` process on a free loopback port, for the tests (and the serving benchmark)."""

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ApiServer:
    """`python -m wmfactory.cli api ARGS --port P`, its output in a log file; `wait` until /v1/health answers."""

    def __init__(self, *args: str, env: dict | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_file = tempfile.NamedTemporaryFile("w+", suffix=".log", delete=False)
        environment = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
                       "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", **(env or {})}
        self.process = subprocess.Popen([sys.executable, "-m", "wmfactory.cli", "api", *args, "--port",
                                         str(self.port)], stdout=self.log_file, stderr=subprocess.STDOUT,
                                        env=environment)

    def wait(self, timeout: float = 120) -> "ApiServer":
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited with {self.process.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/v1/health", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"the server did not answer within {timeout} s:\n{self.log()}")

    def log(self) -> str:
        return Path(self.log_file.name).read_text()

    def memory_kib(self) -> int:
        """The resident memory of the server process (VmRSS of /proc/PID/status), in KiB."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    def stop(self, timeout: float = 60) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def inline_row(row: dict, dataset_dir: str) -> dict:
    """A dataset row whose `embeddings` name files -> the same row holding the vectors (lists of floats)."""
    from wmfactory.data.embeddings import load_embedding

    return {**row, "embeddings": {key: [load_embedding(path, dataset_dir).tolist() for path in paths]
                                  for key, paths in row["embeddings"].items()}}


def read_rows(dataset_dir: str, name: str) -> list[dict]:
    rows = json.loads((Path(dataset_dir) / f"{name}.json").read_text())
    return [inline_row(row, dataset_dir) for row in rows]


def as_arrays(row: dict) -> dict:
    return {**row, "embeddings": {key: [np.asarray(v, dtype=np.float32) for v in values]
                                  for key, values in row["embeddings"].items()}}
