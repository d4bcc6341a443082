"""Long histories: a row longer than the model's positions is cut to its last groups (with one warning) and predicts
what the row written with those groups alone predicts; `context_length` keeps the last groups on purpose."""

import json
import shutil

import numpy as np
import pytest
from conftest import rotation_matrix, train_args, write_dataset, write_embedding

from wmfactory import WorldModel
from wmfactory.commands.evaluate import run_eval
from wmfactory.commands.predict import read_predictions, run_predict
from wmfactory.extras.errors import DataError
from wmfactory.train.tuner import run_exp

GROUPS = 10
CUT_WARNING = "are longer than the model's"


def history_row(first: int, last: int) -> dict:
    """One user turn: a prompt, then the days `first`..`last` (1-based), each a vector and its own text after it."""
    content = "History of the patient:" + "".join(f"<m{t}> day {t}." for t in range(first, last + 1))
    return {"messages": [{"role": "user", "content": content}],
            "embeddings": {f"m{t}": [f"long/t{t}.json"] for t in range(first, last + 1)}}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """(the trained model, the same model told it has only the positions of the row's last 4 groups, the folders,
    the data folder)."""
    tmp = tmp_path_factory.mktemp("long")
    a, x = rotation_matrix(4), np.random.default_rng(0).normal(size=4)
    for t in range(1, GROUPS + 1):
        write_embedding(tmp / "data" / "long" / f"t{t}.json", x)
        x = a @ x
    write_dataset(tmp / "data", "long", [history_row(1, GROUPS)] * 4)
    run_exp(train_args(tmp / "out", tmp / "data", dataset="long", finetuning_type="full", max_steps=2))
    model = WorldModel.from_pretrained(str(tmp / "out"))
    positions = len(model.encode_row(history_row(GROUPS - 3, GROUPS), str(tmp / "data"))["input_ids"])
    short_dir = tmp / "short"
    shutil.copytree(tmp / "out", short_dir)
    config = json.loads((short_dir / "config.json").read_text())
    config["text_config"]["max_position_embeddings"] = positions
    (short_dir / "config.json").write_text(json.dumps(config))
    short = WorldModel.from_pretrained(str(short_dir))
    assert short.config.text_config.max_position_embeddings == positions
    return model, short, positions, tmp


def assert_same_groups(cut, by_hand):
    assert [(g.key, g.occurrence) for g in cut] == [(g.key, g.occurrence) for g in by_hand]
    for a, b in zip(cut, by_hand):
        np.testing.assert_allclose(a.predicted, b.predicted, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(a.target, b.target)


def test_a_row_longer_than_the_positions_is_cut_to_its_last_groups_with_one_warning(models, capsys):
    model, short, positions, tmp = models
    data = str(tmp / "data")
    row = history_row(1, GROUPS)
    assert len(model.encode_row(row, data)["input_ids"]) > positions
    cut = short.predict_next(row, dataset_dir=data)
    err = capsys.readouterr().err
    assert err.count(CUT_WARNING) == 1 and "cut to their last 4 group(s)" in err and "not predicted" in err
    by_hand = short.predict_next(history_row(GROUPS - 3, GROUPS), dataset_dir=data)
    assert CUT_WARNING not in capsys.readouterr().err
    # the first kept group has nothing of its stream before it: it is not predicted, the 3 after it are
    assert [g.key for g in cut] == [f"m{t}" for t in range(GROUPS - 2, GROUPS + 1)]
    assert_same_groups(cut, by_hand)
    # a rollout of 3 vectors leaves room for fewer groups: the last 3 (each group and its text takes >= 3 positions)
    rolled = short.rollout([row, row], steps=3, dataset_dir=data)
    err = capsys.readouterr().err
    assert err.count(CUT_WARNING) == 1 and "2 of 2 row(s)" in err and "last 3 group(s)" in err
    alone = short.rollout(history_row(GROUPS - 2, GROUPS), steps=3, dataset_dir=data)
    for result in rolled:
        np.testing.assert_allclose(result, alone, rtol=1e-5, atol=1e-6)
    # the cut rollout is not the whole row's (the model with all its positions sees the first groups too)
    assert not np.allclose(model.rollout(row, steps=3, dataset_dir=data), alone, atol=1e-6)


def test_context_length_keeps_the_last_groups_without_a_warning(models, capsys):
    model, _, _, tmp = models
    data = str(tmp / "data")
    row = history_row(1, GROUPS)
    kept = model.rollout(row, steps=2, dataset_dir=data, context_length=3)
    np.testing.assert_allclose(kept, model.rollout(history_row(GROUPS - 2, GROUPS), steps=2, dataset_dir=data),
                               rtol=1e-5, atol=1e-6)
    assert_same_groups(model.predict_next(row, dataset_dir=data, context_length=4),
                       model.predict_next(history_row(GROUPS - 3, GROUPS), dataset_dir=data))
    # with context_groups, the history is the first groups: its last 2 are kept
    np.testing.assert_allclose(model.rollout(row, steps=2, dataset_dir=data, context_groups=5, context_length=2),
                               model.rollout(history_row(4, GROUPS), steps=2, dataset_dir=data, context_groups=2),
                               rtol=1e-5, atol=1e-6)
    assert len(model.predict_next(row, dataset_dir=data, context_length=GROUPS + 5)) == GROUPS - 1
    assert CUT_WARNING not in capsys.readouterr().err
    for bad in (0, -1, 2.5, True):
        with pytest.raises(DataError, match="`context_length` must be a positive integer"):
            model.rollout(row, steps=2, dataset_dir=data, context_length=bad)


def test_steps_that_do_not_fit_even_after_one_group_are_refused(models):
    _, short, positions, tmp = models
    with pytest.raises(DataError, match=rf"even from its last group of history alone, needs \d+ positions; the "
                                        rf"model has {positions}\."):
        short.rollout(history_row(1, GROUPS), steps=positions, dataset_dir=str(tmp / "data"))


def test_predict_and_eval_cut_long_rows_and_take_context_length(models, capsys):
    _, short, positions, tmp = models
    keys = {"model_name_or_path": str(tmp / "short"), "dataset": "long", "dataset_dir": str(tmp / "data")}
    by_hand = short.predict_next(history_row(GROUPS - 3, GROUPS), dataset_dir=str(tmp / "data"))
    capsys.readouterr()
    records = list(read_predictions(run_predict({**keys, "output_dir": str(tmp / "pred")})))
    err = capsys.readouterr().err
    assert err.count(CUT_WARNING) == 1 and "4 of 4 row(s)" in err and "last 4 group(s)" in err
    assert [(r["row"], r["key"]) for r in records] == [(i, g.key) for i in range(4) for g in by_hand]
    for record, group in zip(records, by_hand * 4):
        np.testing.assert_allclose(record["predicted"], group.predicted, rtol=1e-5, atol=1e-6)
    records = list(read_predictions(run_predict({**keys, "output_dir": str(tmp / "pred2"), "context_length": 2})))
    assert {r["key"] for r in records} == {f"m{GROUPS}"}
    assert CUT_WARNING not in capsys.readouterr().err
    # eval: the history before the rollouts (8 groups) is cut to fit with the 2 generated groups
    report = run_eval({**keys, "output_dir": str(tmp / "eval"), "context_groups": GROUPS - 2})
    assert capsys.readouterr().err.count(CUT_WARNING) == 1
    assert set(report["rollout"]["horizons"]) == {"1", "2"}
    # a rollout of every group after the first cannot fit: one clear line naming the row
    with pytest.raises(DataError, match=r"long row 0: eval on this row .* the model has \d+\. Give more "
                                        r"`context_groups`"):
        run_eval({**keys, "output_dir": str(tmp / "eval2"), "context_groups": 1})


def test_context_length_on_a_row_of_states_and_actions(action_model):
    """Groups of every stream count; the first kept state has no state before it and is not predicted."""
    model, row, data = action_model
    names = ["s3", "a3", "s4", "a4", "s5"]  # the last 5 of s1 a1 s2 a2 s3 a3 s4 a4 s5
    by_hand = {"messages": [{"role": "user", "content": "".join(f"<{n}>" for n in names)},
                            row["messages"][1]], "embeddings": {n: row["embeddings"][n] for n in names}}
    cut = model.predict_next(row, dataset_dir=data, context_length=5)
    assert [g.key for g in cut] == ["s4", "s5"]
    assert_same_groups(cut, model.predict_next(by_hand, dataset_dir=data))
    actions = {"a": np.ones((2, 3), dtype=np.float32)}
    np.testing.assert_allclose(
        model.rollout(row, steps=2, dataset_dir=data, conditions=actions, from_last_vector=True, context_length=5),
        model.rollout(by_hand, steps=2, dataset_dir=data, conditions=actions, from_last_vector=True),
        rtol=1e-5, atol=1e-6)
