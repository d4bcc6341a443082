"""`report_to`: the trackers LLaMA-Factory offers beside tensorboard and wandb, trackio (local-first) and swanlab,
are Hugging Face integrations; a missing package is one line naming what to install. swanlab 0.8 and later raise
where transformers' callback asks whether a run exists (`extras.compat.swanlab_callback` answers for them)."""

import importlib.util
import json
import os
import sqlite3
import subprocess
import sys

import pytest
import yaml

from conftest import REPO, train_args, write_dynamics_dataset

from wmfactory.extras.errors import ConfigError
from wmfactory.hparams import get_train_args


@pytest.mark.parametrize("tracker", ["swanlab", "trackio", "wandb", "tensorboard"])
def test_a_tracker_that_is_not_installed_is_named_with_its_package(tracker, tmp_path, monkeypatch):
    from wmfactory.hparams import parser

    monkeypatch.setattr(parser, "_tracker_installed", lambda name: False)
    with pytest.raises(ConfigError, match=rf"`report_to` names {tracker}, which is not installed: `pip install "
                                          rf"{tracker}`, or set report_to: none"):
        get_train_args(train_args(tmp_path / "out", tmp_path, report_to=tracker))


@pytest.mark.skipif(importlib.util.find_spec("swanlab") is not None, reason="swanlab is installed here")
def test_swanlab_without_the_package():
    with pytest.raises(ConfigError, match=r"`pip install swanlab`"):
        get_train_args({"model_name_or_path": "m", "dataset": "d", "output_dir": "o", "report_to": "swanlab"})


def test_trackio_records_the_loss_parts_locally(tmp_path):
    pytest.importorskip("trackio")
    data_dir = write_dynamics_dataset(tmp_path / "data", rows=8)
    config = train_args(tmp_path / "out", data_dir, report_to="trackio", project="wm-tracking", run_name="tiny")
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config))
    env = {**os.environ, "TRACKIO_DIR": str(tmp_path / "trackio"), "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-m", "wmfactory.cli", "train", str(tmp_path / "run.yaml")], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    with sqlite3.connect(tmp_path / "trackio" / "wm-tracking.db") as db:
        logged = [json.loads(row[0]) for row in db.execute("select metrics from metrics order by step")]
    logged = [m for m in logged if "train/loss" in m]  # the steps (the last record is the run's summary)
    ours = [json.loads(line) for line in open(tmp_path / "out" / "trainer_log.jsonl")]
    assert [m["train/global_step"] for m in logged] == [r["current_steps"] for r in ours] == [1, 2, 3]
    assert [m["train/embedding_loss"] for m in logged] == pytest.approx([r["embedding_loss"] for r in ours])
    assert [m["train/lm_loss"] for m in logged] == pytest.approx([r["lm_loss"] for r in ours])


def test_swanlab_records_the_loss_parts_offline(tmp_path, monkeypatch):
    swanlab = pytest.importorskip("swanlab")
    from wmfactory.train.tuner import run_exp

    logged = []
    log = swanlab.log
    monkeypatch.setattr(swanlab, "log", lambda data, *a, **k: (logged.append(dict(data)), log(data, *a, **k))[1])
    monkeypatch.setenv("SWANLAB_MODE", "offline")
    monkeypatch.chdir(tmp_path)  # the offline run's folder is ./swanlog
    data_dir = write_dynamics_dataset(tmp_path / "data", rows=8)
    try:
        run_exp(train_args(tmp_path / "out", data_dir, report_to="swanlab", run_name="tiny"))
    finally:
        swanlab.finish()
    steps = [m for m in logged if "train/embedding_loss" in m]
    ours = [json.loads(line) for line in open(tmp_path / "out" / "trainer_log.jsonl")]
    assert [m["train/global_step"] for m in steps] == [r["current_steps"] for r in ours] == [1, 2, 3]
    assert [m["train/embedding_loss"] for m in steps] == pytest.approx([r["embedding_loss"] for r in ours])
    assert [m["train/lm_loss"] for m in steps] == pytest.approx([r["lm_loss"] for r in ours])
    assert any((tmp_path / "swanlog").iterdir())  # the offline run's folder
