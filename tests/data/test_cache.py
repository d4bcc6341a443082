"""Preprocessing is cached (and invalidated when an embedding file changes); tokenized_path saves and reloads it."""

import shutil

from conftest import TINY_MODEL, write_dataset, write_embedding

from wmfactory.data import get_dataset, get_template
from wmfactory.hparams import get_train_args


def load(tokenizer, data_dir, **overrides):
    args = {"model_name_or_path": TINY_MODEL, "dataset": "d", "dataset_dir": str(data_dir),
            "output_dir": str(data_dir / "out"), "stage": "wm", **overrides}
    a = get_train_args(args)
    return get_dataset(get_template(None, tokenizer), tokenizer, a.model, a.data, a.training,
                       a.world_model)


def rows(data_dir, n=3):
    out = []
    for i in range(n):
        write_embedding(data_dir / "e" / f"{i}.json", [[float(i), 1.0]])
        write_embedding(data_dir / "e" / f"{i}n.json", [[float(i), 2.0]])
        out.append({"messages": [{"role": "user", "content": "<m1>"}, {"role": "assistant", "content": "<m2>"}],
                    "embeddings": {"m1": [f"e/{i}.json"], "m2": [f"e/{i}n.json"]}})
    return out


def test_cache_is_reused_and_invalidated_by_an_edited_file(tokenizer, tmp_path):
    data_dir = tmp_path / "data"
    write_dataset(data_dir, "d", rows(data_dir))
    first = load(tokenizer, data_dir).train_dataset
    again = load(tokenizer, data_dir).train_dataset
    assert first.cache_files and again.cache_files[0]["filename"] == first.cache_files[0]["filename"]
    write_embedding(data_dir / "e" / "1n.json", [[7.0, 8.0]])  # same size class, new content and mtime
    edited = load(tokenizer, data_dir).train_dataset
    assert edited.cache_files[0]["filename"] != first.cache_files[0]["filename"]
    assert edited[1]["embedding_vectors"] == [[1.0, 1.0], [7.0, 8.0]]


def test_tokenized_path_saves_then_loads_without_the_raw_data(tokenizer, tmp_path):
    data_dir = tmp_path / "data"
    write_dataset(data_dir, "d", rows(data_dir, n=5))
    saved = load(tokenizer, data_dir, tokenized_path=str(tmp_path / "tok"), val_size=2)
    assert (tmp_path / "tok" / "dataset_dict.json").is_file()
    shutil.rmtree(data_dir / "e")  # the raw embedding files are no longer needed
    loaded = load(tokenizer, data_dir, tokenized_path=str(tmp_path / "tok"), val_size=2)
    assert loaded.stream_dims == {"m": 2}
    assert loaded.train_dataset[:] == saved.train_dataset[:]
    assert loaded.eval_dataset[:] == saved.eval_dataset[:]
