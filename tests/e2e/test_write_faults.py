"""Faults while a command writes: a full disk ends with one line naming the path and leaves the previous output whole;
a SIGKILL at any moment leaves nothing, the old output or the new one; a folder that another command is writing is
refused."""

import json
import os
import subprocess
import sys

import pytest
from conftest import REPO, hold_lock

from wmfactory.extras import atomic
from wmfactory.extras.errors import ConfigError, DataError

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
       "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO / "tests")])}


def test_a_full_disk_leaves_the_old_checkpoint_predictions_and_export(tmp_path):
    done = subprocess.run([sys.executable, str(REPO / "tests" / "e2e" / "full_disk_run.py"), str(tmp_path)],
                          env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    out = tmp_path / "out"
    assert result["train_error"].startswith(f"cannot write '{out}': File too large. The checkpoints written before "
                                            f"are intact (newest complete: {out / 'checkpoint-2'})")
    assert result["newest_checkpoint"] == str(out / "checkpoint-2")
    assert result["predict_error"].startswith(f"cannot write '{tmp_path / 'pred'}': File too large")
    # the rollout predictions never replaced the teacher-forced ones, nor left a file beside them
    assert result["predictions_after"] == result["predictions_before"]
    assert result["predictions_jsonl_after"] == result["predictions_jsonl_before"]
    assert '"mode": "teacher_forced"' in result["predictions_jsonl_after"]
    assert result["export_error"].startswith(f"cannot write '{tmp_path / 'export'}': File too large")
    assert result["export_after"] == result["export_before"]
    assert result["work_after"] == ["data", "export", "out", "pred"]  # no partial folder, no lock left


def test_sigkill_at_random_moments_leaves_nothing_or_a_complete_output():
    """5 kills of each command here; `python scripts/kill_loop.py --kills 30` runs the full loop."""
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "kill_loop.py"), "--kills", "5", "--seed", "1"],
                          env=ENV, capture_output=True, text=True, timeout=300)
    results = [json.loads(line) for line in done.stdout.splitlines() if line.startswith('{"command"')]
    assert [r["command"] for r in results] == ["predict", "eval", "export"], done.stderr[-3000:]
    for result in results:
        found = result["found"]
        assert found["bad"] == 0 and result["failures"] == [], result
        assert found["nothing"] + found["A"] + found["B"] == 5
    assert done.returncode == 0


def test_atomic_writes_replace_whole_or_not_at_all(tmp_path, monkeypatch):
    path = tmp_path / "results.json"
    atomic.write_json(str(path), {"a": 1})
    assert json.loads(path.read_text()) == {"a": 1}

    def fails(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic.os, "fsync", fails)
    with pytest.raises(DataError, match=rf"^cannot write '{path}': No space left on device; nothing was left"):
        atomic.write_json(str(path), {"a": 2})
    assert json.loads(path.read_text()) == {"a": 1} and os.listdir(tmp_path) == ["results.json"]
    monkeypatch.undo()
    with pytest.raises(KeyError):  # a bug inside the block keeps its traceback, and leaves nothing behind
        with atomic.open_atomic(str(path)) as f:
            f.write("half")
            raise KeyError("bug")
    assert json.loads(path.read_text()) == {"a": 1} and os.listdir(tmp_path) == ["results.json"]
    (tmp_path / f".results.json{atomic.PARTIAL}123").write_text("left by a killed run")
    atomic.remove_partials(str(tmp_path))
    assert os.listdir(tmp_path) == ["results.json"]


@pytest.mark.parametrize("command", ["predict", "eval", "encode", "export"])
def test_a_folder_another_command_writes_is_refused(tmp_path, command):
    from wmfactory.commands.encode import run_encode
    from wmfactory.commands.evaluate import run_eval
    from wmfactory.commands.export import run_export
    from wmfactory.commands.predict import run_predict
    from wmfactory.train.lock import LOCK_FILE

    folder = tmp_path / "busy"
    what = "export" if command == "export" else "training run"
    holder = hold_lock(folder, what, tmp_path / f".busy{LOCK_FILE}" if command == "export" else None)
    keys = {"model_name_or_path": str(tmp_path / "no-model"), "dataset": "d", "output_dir": str(folder)}
    run = {"predict": lambda: run_predict(keys), "eval": lambda: run_eval(keys),
           "encode": lambda: run_encode({"encoder": "x", "manifest": "m.jsonl", "output_dir": str(folder)}),
           "export": lambda: run_export({"model_name_or_path": str(tmp_path / "no-model"),
                                         "export_dir": str(folder)})}[command]
    try:
        with pytest.raises(ConfigError, match=rf"'{folder}' is in use by another {what} \(process {holder.pid}@"):
            run()
    finally:
        holder.kill()
        holder.wait()
