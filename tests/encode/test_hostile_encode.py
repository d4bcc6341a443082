"""`wmfactory encode` and retrieval banks on hostile input: files that are not what they claim, text longer than the
encoder takes, encoders of no known family, rows naming files outside dataset_dir, and banks that are empty, not
finite, of the wrong dimension or list an item twice. One line each, nothing written half."""

import json
import os
import shutil

import numpy as np
import pytest
from encode_helpers import TINY_BERT, TINY_VIT, TINY_WAV2VEC2, write_raw_dataset

from wmfactory import nearest
from wmfactory.commands.encode import run_encode
from wmfactory.encode.retrieval import load_bank
from wmfactory.extras.errors import ConfigError, DataError


def manifest(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path)


def wave(path, samples=1600, rate=16000):
    import soundfile

    t = np.arange(samples) / rate
    soundfile.write(str(path), (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), rate, subtype="FLOAT")


@pytest.mark.parametrize("name, make, encoder, reason", [
    ("empty.wav", lambda p: p.write_bytes(b""), TINY_WAV2VEC2, r"not a readable audio file \(.*Format not recognised"),
    ("cut.wav", lambda p: (wave(p), p.write_bytes(p.read_bytes()[:60])), TINY_WAV2VEC2,
     r"not a readable audio file \(.*No 'data' chunk"),
    ("text.png", lambda p: p.write_text("hello"), TINY_VIT, r"not a readable image \(cannot identify image file"),
])
def test_a_file_that_is_not_what_it_claims(tmp_path, name, make, encoder, reason):
    make(tmp_path / name)
    key = "audio" if name.endswith(".wav") else "image"
    path = manifest(tmp_path / "m.jsonl", [{"id": "x", key: name}])
    with pytest.raises(DataError, match=rf"^manifest 'm.jsonl', line 1, id 'x', file '{name}': {reason}"):
        run_encode({"encoder": encoder, "manifest": path, "output_dir": str(tmp_path / "out")})
    assert not os.listdir(tmp_path / "out" / "embeddings")


def test_text_longer_than_the_encoder_takes_is_cut_and_counted(tmp_path, caplog):
    path = manifest(tmp_path / "m.jsonl", [{"id": "long", "text": "word " * 3000}, {"id": "short", "text": "a b"}])
    with caplog.at_level("WARNING"):
        result = run_encode({"encoder": TINY_BERT, "manifest": path, "output_dir": str(tmp_path / "out")})
    assert result.encoded == 2
    assert "1 text(s) longer than 128 tokens were cut to their first 128 tokens (`max_length`)" in caplog.text


def test_an_encoder_of_no_known_family(tmp_path):
    weird = shutil.copytree(TINY_BERT, tmp_path / "weird")
    config = json.loads((weird / "config.json").read_text())
    (weird / "config.json").write_text(json.dumps({**config, "model_type": "nosuchfamily"}))
    path = manifest(tmp_path / "m.jsonl", [{"id": "a", "text": "hi"}])
    with pytest.raises(ConfigError, match=rf"`encoder` '{weird}' \(a local folder\): cannot load its model: .*"
                                          "model type `nosuchfamily`"):
        run_encode({"encoder": str(weird), "manifest": path, "output_dir": str(tmp_path / "out")})


@pytest.mark.parametrize("how", ["dotdot", "absolute", "symlink"])
def test_a_row_naming_a_file_outside_dataset_dir(tmp_path, how):
    data = tmp_path / "data"
    data.mkdir()
    (tmp_path / "secret.txt").write_text("not yours")
    os.symlink(tmp_path / "secret.txt", data / "link.txt")
    name = {"dotdot": "../secret.txt", "absolute": str(tmp_path / "secret.txt"), "symlink": "link.txt"}[how]
    rows = [{"messages": [{"role": "user", "content": "<m1>"}, {"role": "assistant", "content": "<m2>"}],
             "embeddings": {"m1": [{"text": "a"}], "m2": [name]}}]
    write_raw_dataset(data, "r", rows)
    keys = {"encoder": TINY_BERT, "dataset": "r", "dataset_dir": str(data), "output_dir": str(tmp_path / "out")}
    with pytest.raises(DataError, match=rf"^dataset 'r', row 0, key 'm2', file '{name}': .*media_dir '{data}' "
                                        r"\(symlinks followed\); set `allow_outside_media_dir: true`"):
        run_encode(keys)
    info = json.loads((data / "dataset_info.json").read_text())
    info["r"]["allow_outside_media_dir"] = True  # the dataset's own entry allows it
    (data / "dataset_info.json").write_text(json.dumps(info))
    assert run_encode(keys).encoded == 2


def write_bank(folder, items):
    """items: [(id, matrix or None for a line without a file)]"""
    (folder / "embeddings").mkdir(parents=True)
    lines = []
    for item_id, matrix in items:
        np.save(folder / "embeddings" / f"{item_id}.npy", np.asarray(matrix, dtype=np.float32))
        lines.append(json.dumps({"id": item_id, "modality": "text", "text": item_id,
                                 "file": f"embeddings/{item_id}.npy"}))
    (folder / "items.jsonl").write_text("".join(line + "\n" for line in lines))
    return str(folder)


def test_banks_that_are_empty_not_finite_of_two_dimensions_or_list_an_item_twice(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "items.jsonl").write_text("\n")
    with pytest.raises(DataError, match="items.jsonl lists no item"):
        load_bank(str(empty))
    with pytest.raises(DataError, match=r"items.jsonl line 2, file 'embeddings/b.npy': values are not all finite"):
        load_bank(write_bank(tmp_path / "nan", [("a", [[1.0, 2.0]]), ("b", [[np.nan, 1.0]])]))
    with pytest.raises(DataError, match=r"vectors of different dimensions \[2, 3\]"):
        load_bank(write_bank(tmp_path / "dims", [("a", [[1.0, 2.0]]), ("b", [[1.0, 2.0, 3.0]])]))
    twice = write_bank(tmp_path / "twice", [("a", [[1.0, 2.0]]), ("b", [[2.0, 1.0]])])
    lines = (tmp_path / "twice" / "items.jsonl").read_text().splitlines()
    (tmp_path / "twice" / "items.jsonl").write_text("\n".join(lines + [lines[0]]) + "\n")
    with pytest.raises(DataError, match=r"items.jsonl line 3: id 'a' is listed twice \(first on line 1\)"):
        load_bank(twice)
    (tmp_path / "twice" / "items.jsonl").write_text(lines[0] + "\n{oops\n")
    with pytest.raises(DataError, match="items.jsonl line 2: not valid JSON"):
        load_bank(twice)
    (tmp_path / "twice" / "items.jsonl").write_text('["a"]\n')
    with pytest.raises(DataError, match="line 1: an item must be a JSON object with the strings `id` and `file`"):
        load_bank(twice)


def test_nearest_refuses_banks_it_cannot_rank():
    with pytest.raises(DataError, match="the bank holds no vector"):
        nearest(np.ones((1, 2)), np.zeros((0, 2)))
    with pytest.raises(DataError, match=r"the bank holds a value that is not finite \(NaN or Inf\) in row 1"):
        nearest(np.ones((1, 2)), [[1.0, 0.0], [np.nan, 1.0]])
    with pytest.raises(DataError, match=r"the vectors hold a value that is not finite"):
        nearest([[np.inf, 0.0]], [[1.0, 0.0]])
    with pytest.raises(DataError, match="dimension 3 against a bank of dimension 2"):
        nearest(np.ones((1, 3)), [[1.0, 0.0]])
