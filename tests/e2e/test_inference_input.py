"""predict, eval, rollout and export on input nobody showed them: text-only rows, bad steps, damaged model
folders, export targets that would lose data."""

import json
import shutil

import numpy as np
import pytest
from conftest import train_args, write_dataset, write_dynamics_dataset

from wmfactory import WorldModel
from wmfactory.commands.evaluate import run_eval
from wmfactory.commands.export import run_export
from wmfactory.commands.predict import read_predictions, run_predict
from wmfactory.extras.errors import ConfigError, DataError
from wmfactory.train.tuner import run_exp

TEXT_ONLY = {"messages": [{"role": "user", "content": "no vectors here"},
                          {"role": "assistant", "content": "none at all"}], "embeddings": {}}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("robust")
    data_dir = write_dynamics_dataset(tmp / "data", rows=6)
    rows = json.loads((tmp / "data" / "dynamics.json").read_text())
    write_dataset(tmp / "data", "mixed", rows[:3] + [TEXT_ONLY])
    # ridge_history 2: eval scores a vector from 2 known ones on (the rows below have 2 to 6 groups)
    run_exp(train_args(tmp / "out", data_dir, finetuning_type="full", max_steps=2, ridge_history=2))
    return tmp, WorldModel.from_pretrained(str(tmp / "out")), rows


def test_text_only_rows_are_skipped_and_counted(trained, capsys):
    tmp, _, _ = trained
    keys = {"model_name_or_path": str(tmp / "out"), "dataset": "mixed", "dataset_dir": str(tmp / "data")}
    path = run_predict({**keys, "output_dir": str(tmp / "pred")})
    lines = [json.loads(line) for line in open(path)]
    assert {line["row"] for line in lines} == {0, 1, 2}
    report = run_eval({**keys, "output_dir": str(tmp / "eval")})
    assert report["teacher_forced"]["vectors"] > 0
    assert capsys.readouterr().err.count("Skipping 1 of 4 rows without embedding vectors") == 2


def test_rollout_refuses_what_it_cannot_do(trained):
    tmp, model, rows = trained
    data_dir = str(tmp / "data")
    for steps in (0, -2, 2.5, "4", True):
        with pytest.raises(DataError, match="`steps` must be a positive integer"):
            model.rollout(rows[0], steps=steps, dataset_dir=data_dir)
    with pytest.raises(DataError, match="no embedding vector"):
        model.rollout(TEXT_ONLY, steps=2)
    assert model.predict_next(TEXT_ONLY) == []
    with pytest.raises(DataError, match=r"needs \d+ positions; the model has 2048"):
        model.rollout(rows[0], steps=5000, dataset_dir=data_dir)


def test_a_damaged_model_folder_is_one_line_naming_the_file(trained, tmp_path):
    tmp, _, _ = trained
    cut = shutil.copytree(tmp / "out", tmp_path / "cut", ignore=shutil.ignore_patterns("checkpoint-*"))
    weights = (cut / "model.safetensors").read_bytes()
    (cut / "model.safetensors").write_bytes(weights[: len(weights) // 2])
    with pytest.raises(DataError, match=r"model.safetensors is damaged"):
        WorldModel.from_pretrained(str(cut))
    edited = shutil.copytree(tmp / "out", tmp_path / "edited", ignore=shutil.ignore_patterns("checkpoint-*"))
    (edited / "config.json").write_text("{not json")
    with pytest.raises(DataError, match=r"config.json' is not valid JSON"):
        WorldModel.from_pretrained(str(edited))
    (edited / "config.json").write_text((tmp / "out" / "config.json").read_text())
    (edited / "tokenizer.json").unlink()
    with pytest.raises(DataError, match="cannot be loaded as a world model"):
        WorldModel.from_pretrained(str(edited))


def test_export_never_loses_a_folder(trained, tmp_path):
    tmp, _, _ = trained
    source = str(tmp / "out")
    with pytest.raises(ConfigError, match="is the model's own folder"):
        run_export({"model_name_or_path": source, "export_dir": source})
    target = tmp_path / "target"
    target.mkdir()
    (target / "notes.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="exists and is not empty"):
        run_export({"model_name_or_path": source, "export_dir": str(target)})
    assert (target / "notes.txt").read_text() == "keep me"
    run_export({"model_name_or_path": source, "export_dir": str(target), "overwrite_output_dir": True})
    assert not (target / "notes.txt").exists() and (target / "model.safetensors").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["target"]  # no partial folder, no lock left
    WorldModel.from_pretrained(str(target))


def test_predictions_are_small_lines_and_binary_files_a_dataset_can_list(trained):
    tmp, model, rows = trained
    keys = {"model_name_or_path": str(tmp / "out"), "dataset": "dynamics", "dataset_dir": str(tmp / "data"),
            "output_dir": str(tmp / "compact"), "num_samples": 3, "seed": 0}
    path = run_predict(keys)
    lines = [json.loads(line) for line in open(path)]
    assert lines[0] == {"dataset": "dynamics", "row": 0, "key": "m2", "occurrence": 0, "mode": "teacher_forced",
                        "horizon": None, "file": "predicted_embeddings/dynamics_row0_m2_0.safetensors",
                        "shape": [1, 4], "num_samples": 3}
    # 16 bytes per value, and the file's header: against about 20 characters per value as JSON text
    file = tmp / "compact" / lines[0]["file"]
    assert file.stat().st_size < 4 * 4 * (1 + 1 + 3) + 400 and len(open(path).readline()) < 250
    # the arrays read back are what the Python API predicts
    expected = {(g.key, g.occurrence): g for g in model.predict_next(rows[0], dataset_dir=str(tmp / "data"))}
    for record in read_predictions(path):
        if record["row"] == 0:
            group = expected[record["key"], record["occurrence"]]
            np.testing.assert_allclose(record["predicted"], group.predicted, rtol=1e-6, atol=1e-7)
            np.testing.assert_array_equal(record["target"], group.target)
            assert record["samples"].shape == (3, 1, 4)
    # a row of a dataset can list a predicted file as its vectors
    listed = {"messages": [{"role": "user", "content": "<m1>then"}, {"role": "assistant", "content": "<m2>now"}],
              "embeddings": {"m1": [rows[0]["embeddings"]["m1"][0]], "m2": [lines[0]["file"]]}}
    (tmp / "compact" / rows[0]["embeddings"]["m1"][0]).parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(tmp / "data" / rows[0]["embeddings"]["m1"][0], tmp / "compact" / rows[0]["embeddings"]["m1"][0])
    (group,) = model.predict_next(listed, dataset_dir=str(tmp / "compact"))
    np.testing.assert_allclose(group.target, expected["m2", 0].predicted, rtol=1e-6, atol=1e-7)
    # a damaged line is one error naming the file and the line
    (tmp / "compact" / "bad.jsonl").write_text(open(path).readline() + '{"row": 1}\n')
    with pytest.raises(DataError, match=r"bad.jsonl, line 2: not a prediction record"):
        list(read_predictions(str(tmp / "compact" / "bad.jsonl")))


def test_eval_over_two_datasets_gives_each_and_the_geometric_mean(trained, capsys):
    tmp, _, _ = trained
    write_dynamics_dataset(tmp / "data", name="other", rows=4, seed=5)
    report = run_eval({"model_name_or_path": str(tmp / "out"), "dataset": "dynamics,other",
                       "dataset_dir": str(tmp / "data"), "output_dir": str(tmp / "two")})
    assert list(report["datasets"]) == ["dynamics", "other"]
    per = [report["datasets"][name]["teacher_forced"] for name in ("dynamics", "other")]
    assert per[0]["vectors"] + per[1]["vectors"] == report["teacher_forced"]["vectors"]
    for result in per:
        for name in ("model", "ridge"):
            assert result[name]["relative_mse"] == pytest.approx(result[name]["mse"] / result["persistence"]["mse"])
    ratios = [result["model"]["mse"] / result["persistence"]["mse"] for result in per]
    mean = report["geometric_mean"]["teacher_forced"]
    assert mean["datasets"] == ["dynamics", "other"] and mean["model"] == pytest.approx(np.sqrt(np.prod(ratios)))
    text = capsys.readouterr().out
    assert "per dataset: MSE / persistence MSE" in text and "geometric mean" in text


def test_predict_and_eval_give_the_same_in_batches_as_row_by_row(trained):
    """`per_device_eval_batch_size` rows at a time (rows of 2 to 6 groups, so different lengths): the same files and
    scores as one row at a time, sampled draws included (each row draws with its own generator)."""
    tmp, _, _ = trained
    write_dynamics_dataset(tmp / "data", name="varied", rows=7, steps=6, varied=True, seed=9)
    keys = {"model_name_or_path": str(tmp / "out"), "dataset": "varied", "dataset_dir": str(tmp / "data"),
            "num_samples": 3, "seed": 0}
    for mode in ("teacher_forced", "rollout"):
        records = {}
        for size in (1, 4):
            path = run_predict({**keys, "output_dir": str(tmp / f"batch{size}_{mode}"), "predict_mode": mode,
                                "context_groups": 2, "per_device_eval_batch_size": size})
            records[size] = list(read_predictions(path))
        assert len(records[1]) == len(records[4]) > 7
        for alone, batched in zip(records[1], records[4]):
            assert (alone["row"], alone["key"], alone["horizon"]) == (batched["row"], batched["key"], batched["horizon"])
            for name in ("predicted", "target", "samples"):
                np.testing.assert_allclose(batched[name], alone[name], rtol=1e-5, atol=1e-5)
    reports = [run_eval({**keys, "output_dir": str(tmp / f"eval{size}"), "per_device_eval_batch_size": size})
               for size in (1, 4)]
    for block in ("teacher_forced", "1", "2"):
        alone, batched = [r["teacher_forced"] if block == "teacher_forced" else r["rollout"]["horizons"][block]
                          for r in reports]
        assert alone["vectors"] == batched["vectors"] > 0
        for metric in ("mse", "mae", "crps"):
            assert batched["model"][metric] == pytest.approx(alone["model"][metric], rel=1e-5, abs=1e-7)
