"""`report_to`: the trackers LLaMA-Factory offers beside tensorboard and wandb, trackio (local-first) and swanlab,
are Hugging Face integrations; a missing package is one line naming what to install."""

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
