"""Bad data stops `wmfactory train` before the first step with one last line naming the culprit, never a
traceback, never zeros; `skip_invalid_rows` trains on the rest; `wmfactory check` lists every problem."""

import json

import numpy as np
import pytest
import torch
from conftest import TINY_MODEL, write_dataset, write_embedding

from wmfactory import cli


def good_rows(data_dir, n=4):
    rows = []
    for i in range(n):
        write_embedding(data_dir / "e" / f"{i}a.json", [[i, 1.0, 2.0]])
        write_embedding(data_dir / "e" / f"{i}b.json", [[i, 2.0, 3.0]])
        rows.append({"messages": [{"role": "user", "content": f"<m1>day {i}"},
                                  {"role": "assistant", "content": "<m2>next day"}],
                     "embeddings": {"m1": [f"e/{i}a.json"], "m2": [f"e/{i}b.json"]}})
    return rows


def train(data_dir, out, *extra):
    return cli.main(["train", "--stage", "wm", "--model_name_or_path", TINY_MODEL, "--dataset", "d",
                     "--dataset_dir", str(data_dir), "--output_dir", str(out), "--max_steps", "2",
                     "--report_to", "none", "--overwrite_cache", *extra])


def set_file(name, content):
    def mutate(rows, d):
        path = d / "e" / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        elif callable(content):
            content(path)
        else:
            path.write_text(content)
    return mutate


def edit_row(index, **changes):
    def mutate(rows, d):
        rows[index].update(changes)
    return mutate


def npy_object(path):
    path.unlink()
    np.save(path.with_suffix(".npy"), np.array([{"a": 1}], dtype=object), allow_pickle=True)


CASES = {
    "missing file": (set_file("1b.json", lambda p: p.unlink()), "row 1, key 'm2', file 'e/1b.json': file not found"),
    "malformed json": (set_file("2a.json", "{oops"), "row 2, key 'm1', file 'e/2a.json': malformed JSON"),
    "no embedding field": (set_file("0b.json", '{"vector": [1, 2, 3]}'), "row 0, key 'm2', file 'e/0b.json': no `embedding` field"),
    "non-numeric": (set_file("3a.json", '{"embedding": [[1, "x", 2]]}'), "row 3, key 'm1', file 'e/3a.json': values are not a numeric matrix"),
    "nan": (set_file("1a.json", '{"embedding": [[1, NaN, 2]]}'), "row 1, key 'm1', file 'e/1a.json': values are not all finite"),
    "inf": (set_file("1a.json", '{"embedding": [[1, Infinity, 2]]}'), "values are not all finite (NaN or Inf)"),
    "empty": (set_file("2b.json", '{"embedding": []}'), "row 2, key 'm2', file 'e/2b.json': empty embedding"),
    "shape disagrees": (set_file("0a.json", '{"embedding": [[1, 2, 3]], "shape": [3, 1]}'), "row 0, key 'm1', file 'e/0a.json': `shape` says [3, 1] but the data is [1, 3]"),
    "dimension differs in a row": (set_file("2b.json", '{"embedding": [[1, 2]]}'), "row 2, key 'm2', file 'e/2b.json': dimension 2 differs from the row's first vectors of stream 'm' (3)"),
    "dimension differs across rows": (lambda r, d: (set_file("3a.json", '{"embedding": [[1, 2]]}')(r, d), set_file("3b.json", '{"embedding": [[1, 2]]}')(r, d)), "dimension 2 first at training dataset 'd', row 3"),
    "placeholder without entry": (lambda r, d: r[1]["messages"][0].update(content="<m1><m5>"), "row 1, key 'm5': placeholder <m5> has no entry"),
    "entry never referenced": (lambda r, d: r[0]["embeddings"].update(m3=["e/0a.json"]), "row 0, key 'm3': `embeddings` entry is never referenced"),
    "count mismatch": (lambda r, d: r[2]["embeddings"].update(m1=["e/2a.json", "e/2b.json"]), "row 2, key 'm1': <m1> occurs 1 time(s) but `embeddings` lists 2 file(s)"),
    "embeddings of the wrong type": (lambda r, d: r[3].update(embeddings=["e/3a.json"]), "row 3: column 'embeddings' must map keys to lists of files, got list"),
    "files of the wrong type": (lambda r, d: r[3]["embeddings"].update(m1="e/3a.json"), "row 3, key 'm1': expected a list of files, got str"),
    "path escaping media_dir": (lambda r, d: r[1]["embeddings"].update(m1=["../outside.json"]), "row 1, key 'm1', file '../outside.json': relative path escapes media_dir"),
    "npy object array": (lambda r, d: (npy_object(d / "e" / "2a.json"), r[2]["embeddings"].update(m1=["e/2a.npy"])), "row 2, key 'm1', file 'e/2a.npy': cannot read .npy without pickle"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_data_stops_training_with_one_line(tmp_path, capsys, case):
    mutate, message = CASES[case]
    data_dir = tmp_path / "data"
    rows = good_rows(data_dir)
    write_embedding(tmp_path / "outside.json", [[1.0, 2.0, 3.0]])
    mutate(rows, data_dir)
    write_dataset(data_dir, "d", rows)
    capsys.readouterr()
    assert train(data_dir, tmp_path / "out") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("wmfactory: error: ") and message in err[-1], err[-1]
    assert not any("Traceback" in line for line in err)
    assert not (tmp_path / "out" / "trainer_state.json").exists()


def test_a_pickle_payload_never_runs(tmp_path, capsys):
    data_dir = tmp_path / "data"
    rows = good_rows(data_dir)
    marker = tmp_path / "payload-ran"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    torch.save({"embedding": Payload()}, data_dir / "e" / "evil.pt")
    rows[1]["embeddings"]["m2"] = ["e/evil.pt"]
    write_dataset(data_dir, "d", rows)
    assert train(data_dir, tmp_path / "out") == 1
    assert "row 1, key 'm2', file 'e/evil.pt': refused to load" in capsys.readouterr().err
    assert not marker.exists()


@pytest.mark.parametrize("content, message", [
    (None, "Dataset 'd': file"),
    ("[{broken", "dataset 'd': cannot read"),
])
def test_dataset_file_missing_or_malformed(tmp_path, capsys, content, message):
    data_dir = tmp_path / "data"
    write_dataset(data_dir, "d", good_rows(data_dir))
    if content is None:
        (data_dir / "d.json").unlink()
    else:
        (data_dir / "d.json").write_text(content)
    assert train(data_dir, tmp_path / "out") == 1
    assert message in capsys.readouterr().err.strip().splitlines()[-1]


def test_unregistered_dataset(tmp_path, capsys):
    data_dir = tmp_path / "data"
    write_dataset(data_dir, "other", good_rows(data_dir))
    assert train(data_dir, tmp_path / "out") == 1
    assert "Dataset 'd' is not registered" in capsys.readouterr().err


def test_skip_invalid_rows_trains_on_the_rest_and_counts_by_reason(tmp_path, capsys):
    data_dir = tmp_path / "data"
    rows = good_rows(data_dir, n=6)
    (data_dir / "e" / "1b.json").unlink()
    (data_dir / "e" / "4b.json").unlink()
    (data_dir / "e" / "2a.json").write_text('{"embedding": [[1, NaN, 2]]}')
    rows[5]["messages"].reverse()  # bad role order: dropped as LLaMA-Factory drops it
    write_dataset(data_dir, "d", rows)
    assert train(data_dir, tmp_path / "out", "--skip_invalid_rows", "--per_device_train_batch_size", "2") == 0
    err = capsys.readouterr().err
    line = next(line for line in err.splitlines() if "dropped" in line)
    assert "dropped 4 of 6 rows" in line
    assert "2 x invalid row: file not found" in line
    assert "1 x invalid row: values are not all finite (NaN or Inf)" in line and "1 x bad role order" in line
    state = json.loads((tmp_path / "out" / "trainer_state.json").read_text())
    # 2 valid rows at batch 2 make one step per epoch: 2 steps are 2 epochs (6 rows would be 2/3 of one)
    assert state["global_step"] == 2 and state["epoch"] == 2.0


def test_check_summarises_and_lists_every_problem(tmp_path, capsys):
    data_dir = tmp_path / "data"
    rows = good_rows(data_dir, n=5)
    rows[0]["messages"][0]["content"] = "<m1> then <m1>"
    rows[0]["embeddings"]["m1"] = ["e/0a.json", "e/4a.json"]
    write_embedding(data_dir / "e" / "3b.json", [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], modality="ecg")
    (data_dir / "e" / "2b.json").unlink()
    rows[4]["embeddings"]["m1"] = ["../../x.json"]
    rows[1]["embeddings"]["m2"] = [str(data_dir / "e" / "1b.json")]  # absolute, inside media_dir: read, and listed
    write_dataset(data_dir, "d", rows)
    code = cli.main(["check", "--model_name_or_path", TINY_MODEL, "--dataset", "d", "--dataset_dir", str(data_dir),
                     "--cutoff_len", "20"])
    out = capsys.readouterr().out
    assert code == 1
    assert "dataset 'd': 5 rows (3 valid), 7 groups, 8 vectors, stream 'm' dimension 3" in out
    # valid rows 0, 1, 3 hold 3 + 2 + 3 vectors; next: all but the first group (2 + 1 + 2); assistant: <m2> (1 + 1 + 2)
    assert "target vectors by rule: next 5, assistant 4, all 8" in out
    assert "'ecg': 1" in out
    assert "row(s) longer" in out
    assert "2 problem(s):" in out
    assert "dataset 'd', row 2, key 'm2', file 'e/2b.json': file not found" in out
    assert "dataset 'd', row 4, key 'm1', file '../../x.json': relative path escapes media_dir" in out
    assert f"absolute paths (read as given, not from media_dir): 1: {data_dir / 'e' / '1b.json'}" in out


@pytest.mark.parametrize("case, message", [
    ("empty", "dataset 'd': cannot read"),
    ("not_utf8", "dataset 'd': cannot read"),
    ("parquet", "Parquet magic bytes not found"),
    ("system_not_string", "dataset 'd', row 0: the system prompt must be a string, got int"),
    ("entry_is_a_list", "Dataset 'd' in"),
    ("columns_is_a_list", "`columns` must be a mapping of names to strings, got list"),
    ("tag_not_string", "`tags.role_tag` must be a string"),
    ("hub_offline", "`hf_hub_url` needs the network"),
])
def test_bad_files_and_registry_entries_are_one_line(tmp_path, capsys, monkeypatch, case, message):
    data_dir = tmp_path / "data"
    rows = good_rows(data_dir)
    write_dataset(data_dir, "d", rows)
    info_path = data_dir / "dataset_info.json"
    info = json.loads(info_path.read_text())
    if case == "empty":
        (data_dir / "d.json").write_text("")
    elif case == "not_utf8":
        (data_dir / "d.json").write_bytes(json.dumps(rows).encode().replace(b"day", b"d\xe9y"))
    elif case == "parquet":
        (data_dir / "d.parquet").write_bytes(b"PAR1 not really parquet")
        info["d"]["file_name"] = "d.parquet"
    elif case == "system_not_string":
        rows[0]["messages"].insert(0, {"role": "system", "content": 123})
        write_dataset(data_dir, "d", rows)
        info = json.loads(info_path.read_text())
    elif case == "entry_is_a_list":
        info["d"] = ["d.json"]
    elif case == "columns_is_a_list":
        info["d"]["columns"] = ["messages", "embeddings"]
    elif case == "tag_not_string":
        info["d"]["tags"]["role_tag"] = 1
    elif case == "hub_offline":
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
        info["d"] = {"hf_hub_url": "nobody/no-such-dataset"}
    info_path.write_text(json.dumps(info))
    assert train(data_dir, tmp_path / "out") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert message in err[-1] and "Traceback" not in "\n".join(err)
