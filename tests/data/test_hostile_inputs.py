"""Hostile inputs of the third round: each ends with one line naming the key, file or row and what is accepted;
nothing succeeds silently."""

import json
import os

import pytest
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
                     "--dataset_dir", str(data_dir), "--output_dir", str(out), "--max_steps", "1",
                     "--report_to", "none", "--overwrite_cache", *extra])


def last_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert not any("Traceback" in line for line in err), "\n".join(err)
    return err[-1] if err else ""


def nul_in_row_path(rows, d, tmp):
    rows[1]["embeddings"]["m2"] = ["e/1b\x00.json"]


def newline_in_missing_name(rows, d, tmp):
    rows[2]["embeddings"]["m1"] = ["e/no\nsuch.json"]


def huge_number_in_embedding(rows, d, tmp):
    (d / "e" / "0a.json").write_text('{"embedding": [[1' + "0" * 5000 + ', 1, 2]]}')


def huge_number_in_info(rows, d, tmp):
    (d / "dataset_info.json").write_text('{"x": 1' + "0" * 5000 + ', ' + (d / "dataset_info.json").read_text()[1:])


def dataset_is_dev_null(rows, d, tmp):
    (d / "d.json").unlink()
    os.symlink("/dev/null", d / "d.json")


def info_in_latin1(rows, d, tmp):
    info = json.loads((d / "dataset_info.json").read_text())
    info["d"]["description"] = "données"
    (d / "dataset_info.json").write_bytes(json.dumps(info, ensure_ascii=False).encode("latin-1"))


# name: (change to the data, extra arguments, what the last line must hold)
CASES = {
    "NUL byte in a row's file": (nul_in_row_path, [], "row 1, key 'm2', file 'e/1b\\x00.json': the path holds a NUL"),
    "NUL byte in dataset_dir": (None, ["--media_dir", "a\x00b"], "`media_dir` 'a\\x00b' holds a NUL byte"),
    "NUL byte in the model path": (None, ["--model_name_or_path", "x\x00y"],
                                   "`model_name_or_path` 'x\\x00y' holds a NUL byte"),
    "newline in a missing file's name": (newline_in_missing_name, [], "row 2, key 'm1', file 'e/no\\nsuch.json': file not found"),
    "number of thousands of digits in an embedding": (huge_number_in_embedding, [],
                                                     "row 0, key 'm1', file 'e/0a.json': malformed JSON"),
    "number of thousands of digits in dataset_info.json": (huge_number_in_info, [],
                                                           "dataset_info.json' is not valid JSON: Exceeds the limit"),
    "dataset file a symlink to /dev/null": (dataset_is_dev_null, [], "is not a regular file"),
    "dataset_info.json in Latin-1": (info_in_latin1, [], "dataset_info.json' is not UTF-8 text"),
    "negative dataloader_num_workers": (None, ["--dataloader_num_workers", "-1"],
                                        "`dataloader_num_workers` must be at least 0 (0: load in the main process), got -1"),
    "negative seed": (None, ["--seed", "-3"], "`seed` must be in [0, 2**32 - 1], got -3"),
    "adapter path that does not exist": (None, ["--finetuning_type", "lora", "--adapter_name_or_path", "no/such"],
                                         "`adapter_name_or_path` 'no/such' is not a folder"),
    "unknown lr_scheduler_type": (None, ["--lr_scheduler_type", "warp"], "`lr_scheduler_type` must be one of"),
    "deepspeed while not installed": (None, ["--deepspeed", "ds.json"], "`deepspeed` is set but DeepSpeed is not installed"),
    "freeze module the model has not": (None, ["--finetuning_type", "freeze", "--freeze_trainable_modules", "mlp,attn"],
                                        "`freeze_trainable_modules`: no module named ['attn'] in the trainable layers"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_hostile_input_is_one_line(tmp_path, capsys, case):
    mutate, extra, message = CASES[case]
    data_dir = tmp_path / "data"
    rows = good_rows(data_dir)
    write_dataset(data_dir, "d", rows)
    if mutate is not None:
        mutate(rows, data_dir, tmp_path)
        if mutate in (nul_in_row_path, newline_in_missing_name):
            write_dataset(data_dir, "d", rows)
    capsys.readouterr()
    assert train(data_dir, tmp_path / "out", *extra) == 1
    line = last_line(capsys)
    assert line.startswith("wmfactory: error: ") and message in line, line
    assert not (tmp_path / "out" / "trainer_state.json").exists()


def test_truncated_model_weights_are_one_line(tmp_path, capsys):
    import shutil

    model = tmp_path / "model"
    shutil.copytree(TINY_MODEL, model)
    weights = model / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    data_dir = tmp_path / "data"
    write_dataset(data_dir, "d", good_rows(data_dir))
    capsys.readouterr()
    assert train(data_dir, tmp_path / "out", "--model_name_or_path", str(model)) == 1
    line = last_line(capsys)
    assert f"`model_name_or_path` '{model}'" in line and "model.safetensors is damaged" in line, line


def test_a_named_messages_column_the_rows_lack_is_an_error(tmp_path, capsys):
    data_dir = tmp_path / "data"
    write_dataset(data_dir, "d", good_rows(data_dir),
                  info_extra={"columns": {"messages": "conversations", "embeddings": "embeddings"}})
    capsys.readouterr()
    assert train(data_dir, tmp_path / "out") == 1
    line = last_line(capsys)
    assert "dataset 'd': `columns.messages` names 'conversations', which the rows do not have (they have: " \
           "embeddings, messages)" in line, line


def test_the_default_messages_column_still_falls_back(tmp_path):
    """With no `columns.messages` in the entry, LLaMA-Factory's `conversations` default gives way to `messages`."""
    data_dir = tmp_path / "data"
    write_dataset(data_dir, "d", good_rows(data_dir), info_extra={"columns": {"embeddings": "embeddings"}})
    assert train(data_dir, tmp_path / "out") == 0


@pytest.mark.parametrize("name", ["../elsewhere.json", "ABSOLUTE", "link.json"])
def test_a_dataset_file_outside_dataset_dir_needs_the_entry_to_allow_it(tmp_path, capsys, name):
    data_dir = tmp_path / "data"
    write_dataset(data_dir, "d", good_rows(data_dir))
    (tmp_path / "elsewhere.json").write_text((data_dir / "d.json").read_text())
    os.symlink(tmp_path / "elsewhere.json", data_dir / "link.json")
    name = str(tmp_path / "elsewhere.json") if name == "ABSOLUTE" else name
    info = json.loads((data_dir / "dataset_info.json").read_text())
    info["d"]["file_name"] = name
    (data_dir / "dataset_info.json").write_text(json.dumps(info))
    capsys.readouterr()
    assert train(data_dir, tmp_path / "out") == 1
    assert f"`file_name` '{name}' is outside dataset_dir (symlinks followed)" in last_line(capsys)
    info["d"]["allow_outside_media_dir"] = True
    (data_dir / "dataset_info.json").write_text(json.dumps(info))
    assert train(data_dir, tmp_path / "out2") == 0
