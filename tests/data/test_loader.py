"""Reading registered datasets: mixing, sampling, validation split, dropped rows and data errors."""

import logging

import pytest
from conftest import TINY_MODEL, write_dataset, write_embedding

from wmfactory.data import get_dataset, get_template
from wmfactory.extras.errors import DataError
from wmfactory.hparams import get_train_args


def rows(dataset_dir, prefix, n, d=3):
    out = []
    for i in range(n):
        write_embedding(dataset_dir / prefix / f"{i}a.json", [[i, 1, 2][:d] + [0] * (d - 3)])
        write_embedding(dataset_dir / prefix / f"{i}b.json", [[i, 2, 3][:d] + [0] * (d - 3)])
        out.append({"messages": [{"role": "user", "content": f"<m1>row {i}"},
                                 {"role": "assistant", "content": "<m2>next"}],
                    "embeddings": {"m1": [f"{prefix}/{i}a.json"], "m2": [f"{prefix}/{i}b.json"]}})
    return out


def load(tokenizer, tmp_path, **overrides):
    args = {"model_name_or_path": TINY_MODEL, "dataset_dir": str(tmp_path), "output_dir": str(tmp_path / "out"),
            "stage": "wm", "report_to": "none", **overrides}
    a = get_train_args(args)
    template = get_template(a.data.template, tokenizer)
    return get_dataset(template, tokenizer, a.model, a.data, a.training, a.world_model)


def test_mixing_sampling_and_validation_split(tokenizer, tmp_path):
    write_dataset(tmp_path, "a", rows(tmp_path, "a", 10))
    write_dataset(tmp_path, "b", rows(tmp_path, "b", 6))
    module = load(tokenizer, tmp_path, dataset="a,b")
    assert len(module.train_dataset) == 16 and module.eval_dataset is None and module.stream_dims == {"m": 3}
    assert load(tokenizer, tmp_path, dataset="a,b", max_samples=4).train_dataset.num_rows == 8
    split = load(tokenizer, tmp_path, dataset="a,b", val_size=0.25)
    assert (len(split.train_dataset), len(split.eval_dataset)) == (12, 4)
    counted = load(tokenizer, tmp_path, dataset="a", val_size=3)
    assert (len(counted.train_dataset), len(counted.eval_dataset)) == (7, 3)
    row = module.train_dataset[0]
    assert row["embedding_is_target"] == [False, True]
    assert row["embedding_vectors"] == [[0.0, 1.0, 2.0], [0.0, 2.0, 3.0]]


def test_bad_role_order_is_dropped_and_counted(tokenizer, tmp_path):
    data = rows(tmp_path, "a", 4)
    data[1]["messages"].reverse()
    data[3]["messages"] = [data[3]["messages"][0], data[3]["messages"][0]]
    write_dataset(tmp_path, "a", data)
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logging.getLogger("wmfactory").addHandler(handler)
    try:
        module = load(tokenizer, tmp_path, dataset="a", overwrite_cache=True)
    finally:
        logging.getLogger("wmfactory").removeHandler(handler)
    assert len(module.train_dataset) == 2
    messages = [r.getMessage() for r in records]
    dropped = [m for m in messages if "Dataset 'a': dropped 2 of 4 rows" in m]
    assert len(dropped) == 1 and dropped[0].count("1 x bad role order") == 2, messages
    assert "message 0 is 'assistant'" in dropped[0] and "message 1 is 'user'" in dropped[0]


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d, p: d[2]["embeddings"].update(m2=["a/missing.json"]),
         "dataset 'a', row 2, key 'm2', file 'a/missing.json': file not found"),
        (lambda d, p: d[1]["messages"][0].update(content="<m1><m3>"),
         "dataset 'a', row 1, key 'm3': placeholder <m3> has no entry"),
        (lambda d, p: write_embedding(p / "a" / "0b.json", [[1.0, 2.0]]),
         "dataset 'a', row 0, key 'm2', file 'a/0b.json': dimension 2 differs from the row's first vectors of stream 'm' (3)"),
        (lambda d, p: write_embedding(p / "a" / "3a.json", [[1.0, 2.0]]) and write_embedding(
            p / "a" / "3b.json", [[1.0, 2.0]]), "dimension 2 first at training dataset 'a', row 3"),
    ],
)
def test_data_errors_name_the_culprit(tokenizer, tmp_path, mutate, message):
    data = rows(tmp_path, "a", 4)
    mutate(data, tmp_path)
    write_dataset(tmp_path, "a", data)
    with pytest.raises(DataError) as err:
        load(tokenizer, tmp_path, dataset="a", overwrite_cache=True)
    assert message in str(err.value)


def test_registry_errors(tokenizer, tmp_path):
    write_dataset(tmp_path, "a", rows(tmp_path, "a", 2))
    with pytest.raises(DataError, match="Dataset 'zzz' is not registered .* \\(registered: a\\)"):
        load(tokenizer, tmp_path, dataset="zzz")
    (tmp_path / "a.json").write_text("[{not json")
    with pytest.raises(DataError, match="dataset 'a': cannot read"):
        load(tokenizer, tmp_path, dataset="a", overwrite_cache=True)


def test_debug_trace_shows_keys_files_shapes_slots_and_targets(tokenizer, tmp_path):
    write_dataset(tmp_path, "a", rows(tmp_path, "a", 3))
    load(tokenizer, tmp_path, dataset="a")  # warm the cache: the trace must appear even then
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    root = logging.getLogger("wmfactory")
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        load(tokenizer, tmp_path, dataset="a")
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    text = "\n".join(r.getMessage() for r in records)
    assert "[a row 0] keys: ['m1', 'm2']" in text and "[a row 1]" in text and "[a row 2]" not in text
    assert "<m2> #0: a/0b.json shape [1, 3]" in text
    assert "<m1> group 0, target=False" in text and "<m2> group 1, target=True" in text


def test_sharegpt_columns_follow_llamafactory_defaults(tokenizer, tmp_path):
    """No `columns` in dataset_info.json: the messages are in `conversations` (LLaMA-Factory's default), or in
    `messages` when there is no `conversations`; with neither, the error names the column it looked for."""
    import json

    sharegpt = [{"conversations": [{"from": "human", "value": f"<m1>row {i}"}, {"from": "gpt", "value": "<m2>next"}],
                 "embeddings": r["embeddings"]} for i, r in enumerate(rows(tmp_path, "c", 3))]
    (tmp_path / "c.json").write_text(json.dumps(sharegpt))
    (tmp_path / "m.json").write_text(json.dumps(rows(tmp_path, "m", 3)))
    (tmp_path / "x.json").write_text(json.dumps([{"turns": r["messages"], "embeddings": r["embeddings"]}
                                                 for r in rows(tmp_path, "x", 2)]))
    openai_tags = {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"}
    (tmp_path / "dataset_info.json").write_text(json.dumps({
        "c": {"file_name": "c.json", "formatting": "sharegpt"},
        "m": {"file_name": "m.json", "tags": openai_tags},
        "x": {"file_name": "x.json", "tags": openai_tags},
    }))
    by_name = {name: load(tokenizer, tmp_path, dataset=name).train_dataset for name in ("c", "m")}
    assert len(by_name["c"]) == len(by_name["m"]) == 3
    assert by_name["c"]["embedding_vectors"] == by_name["m"]["embedding_vectors"]  # the same vectors, same targets
    assert by_name["c"]["embedding_is_target"] == by_name["m"]["embedding_is_target"]
    with pytest.raises(DataError, match=r"dataset 'x', row 0: no column 'conversations' .*`columns.messages`"):
        load(tokenizer, tmp_path, dataset="x")


def test_different_dimensions_name_both_datasets_and_rows(tokenizer, tmp_path):
    write_dataset(tmp_path, "three", rows(tmp_path, "three", 3, d=3))
    write_dataset(tmp_path, "four", rows(tmp_path, "four", 2, d=4))
    expected = r"dimension 3 first at training dataset 'three', row 0; dimension 4 first at training dataset 'four', row 0"
    with pytest.raises(DataError, match=expected):
        load(tokenizer, tmp_path, dataset="three,four")
    with pytest.raises(DataError, match=r"dimension 3 first at training dataset 'three', row 0; dimension 4 first "
                                        r"at evaluation dataset 'four', row 0"):
        load(tokenizer, tmp_path, dataset="three", eval_dataset="four")


def test_a_val_size_that_leaves_no_training_row_is_refused(tokenizer, tmp_path):
    from wmfactory.extras.errors import ConfigError

    write_dataset(tmp_path, "a", rows(tmp_path, "a", 4))
    with pytest.raises(ConfigError, match="`val_size` 4.0 holds out 4 of the 4 training rows"):
        load(tokenizer, tmp_path, dataset="a", val_size=4)
