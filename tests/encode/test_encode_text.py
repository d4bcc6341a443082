"""`wmfactory encode` on text: the files hold what the encoder gives, twice the same bytes, resumable, and the rows
are a dataset that `wmfactory check` accepts."""

import json
import os

import numpy as np
import pytest
from conftest import TINY_MODEL
from encode_helpers import STORY, TINY_BERT, direct_text_vectors, folder_bytes, read_safetensors, story_rows, \
    write_raw_dataset

from wmfactory.commands.check import run_check
from wmfactory.commands.encode import run_encode
from wmfactory.data.embeddings import load_embedding
from wmfactory.extras.errors import ConfigError, DataError


def encode_story(tmp_path, output: str, **keys):
    data_dir = write_raw_dataset(tmp_path / "raw", "story", story_rows())
    return run_encode({"encoder": TINY_BERT, "dataset": "story", "dataset_dir": data_dir,
                       "output_dir": str(tmp_path / output), "batch_size": 4, **keys})


def test_text_files_hold_the_encoder_vectors_and_the_rows_are_a_dataset(tmp_path, capsys):
    result = encode_story(tmp_path, "out")
    out = tmp_path / "out"
    assert (result.items, result.encoded, result.skipped) == (6, 6, 0)  # 4 windows of 3 name 6 sentences once
    items = [json.loads(line) for line in (out / "items.jsonl").read_text().splitlines()]
    assert [item["text"] for item in items] == STORY
    expected = direct_text_vectors(STORY)
    record = json.loads((out / "encoder.json").read_text())
    assert record == {"name": TINY_BERT, "revision": None, "type": "text", "library": "transformers",
                      "pooling": "mean", "normalize": False, "dimension": 32, "dtype": "float32"}
    for item, vector in zip(items, expected):
        matrix, metadata = read_safetensors(out / item["file"])
        assert matrix.shape == (1, 32) and matrix.dtype == np.float32
        np.testing.assert_allclose(matrix[0], vector, rtol=1e-4, atol=1e-5)
        assert json.loads(metadata["wmfactory_encoder"]) == record and metadata["id"] == item["id"]
    # the rows name each sentence's file in place of its text
    rows = [json.loads(line) for line in (out / "story.jsonl").read_text().splitlines()]
    text_of = {item["file"]: item["text"] for item in items}
    assert [[text_of[row["embeddings"][f"m{i}"][0]] for i in (1, 2, 3)] for row in rows] == \
        [STORY[s:s + 3] for s in range(4)]
    assert json.loads((out / "dataset_info.json").read_text())["story"]["encoder"] == record
    capsys.readouterr()
    assert run_check({"model_name_or_path": TINY_MODEL, "dataset": "story", "dataset_dir": str(out)}) == 0
    assert "dataset 'story': 4 rows (4 valid), 12 groups, 12 vectors, stream 'm' dimension 32" in capsys.readouterr().out

    # encoding again gives the same bytes, file for file; .npy holds the same numbers
    encode_story(tmp_path, "again")
    assert folder_bytes(out) == folder_bytes(tmp_path / "again")
    encode_story(tmp_path, "npy", embedding_format="npy")
    for item in items:
        npy = np.load(tmp_path / "npy" / item["file"].replace(".safetensors", ".npy"), allow_pickle=False)
        np.testing.assert_array_equal(npy, load_embedding(item["file"], str(out)))


def test_encoding_resumes_and_refuses_another_encoder_in_the_same_folder(tmp_path):
    encode_story(tmp_path, "out")
    files = sorted((tmp_path / "out" / "embeddings").iterdir())
    before = {f.name: (f.stat().st_mtime_ns, f.read_bytes()) for f in files}
    files[2].unlink()
    result = encode_story(tmp_path, "out")
    assert (result.encoded, result.skipped) == (1, 5)
    after = {f.name: (f.stat().st_mtime_ns, f.read_bytes()) for f in sorted((tmp_path / "out" / "embeddings").iterdir())}
    assert set(after) == set(before)
    assert all(after[name] == before[name] for name in before if name != files[2].name)  # untouched
    again, original = read_safetensors(files[2])[0], np.frombuffer(before[files[2].name][1][-128:], dtype="<f4")
    np.testing.assert_allclose(again[0], original, rtol=1e-5, atol=1e-6)  # alone in its batch this time
    assert not list((tmp_path / "out").rglob("*.partial*"))

    with pytest.raises(ConfigError, match=r"holds embeddings of another encoder .*pooling mean.*pooling cls"):
        encode_story(tmp_path, "out", pooling="cls")
    result = encode_story(tmp_path, "out", pooling="cls", overwrite_output_dir=True)
    assert (result.encoded, result.skipped) == (6, 0)
    cls = direct_text_vectors(STORY[:1], pooling="cls")[0]
    first = json.loads((tmp_path / "out" / "items.jsonl").read_text().splitlines()[0])
    np.testing.assert_allclose(load_embedding(first["file"], str(tmp_path / "out"))[0], cls, rtol=1e-4, atol=1e-5)


def test_empty_text_and_bad_keys_are_one_line_naming_the_row(tmp_path):
    rows = story_rows()
    rows[2]["embeddings"]["m2"] = [{"text": "   "}]
    data_dir = write_raw_dataset(tmp_path / "raw", "story", rows)
    keys = {"encoder": TINY_BERT, "dataset": "story", "dataset_dir": data_dir, "output_dir": str(tmp_path / "o")}
    with pytest.raises(DataError) as err:
        run_encode(keys)
    assert str(err.value) == "dataset 'story', row 2, key 'm2': empty text"
    manifest = tmp_path / "items.jsonl"
    manifest.write_text('{"id": "a", "text": "fine"}\n{"id": "b", "txt": "typo"}\n')
    with pytest.raises(DataError, match=r"^manifest 'items.jsonl', line 2, id 'b': needs exactly one of text, image, "
                                        r"audio, path \(has none\)$"):
        run_encode({**keys, "dataset": None, "manifest": str(manifest)})
    with pytest.raises(ConfigError, match="`encoder` is required"):
        run_encode({"dataset": "story", "output_dir": "x"})
    assert not os.path.exists(tmp_path / "o" / "story.jsonl")
