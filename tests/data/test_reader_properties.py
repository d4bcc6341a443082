"""Property-based: whatever a row, a dataset_info.json entry or a configuration holds, reading it either works or
raises wmfactory's own error (DataError, ConfigError) with a one-line message; never another exception."""

import json
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wmfactory.data.registry import get_dataset_attrs
from wmfactory.data.rows import encode_row
from wmfactory.extras.errors import DataError
from wmfactory.hparams.parser import _field_types, get_predict_args, get_train_args, ALL_DATACLASSES

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                            HealthCheck.too_slow])

# values of every JSON kind, with the awkward ones: NaN, huge integers, NUL bytes, newlines, placeholders
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**30), 10**30), st.just(10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12), st.sampled_from(["<m1>", "<m2>", "<m1><m2>", "<a1>", "a\x00b", "x\ny", "../x", "/etc/passwd",
                                           "e/good.json", "e/nan.json", "e/cut.npy", "e/obj.npy", "e/empty.json",
                                           "e/wide.json", "link.json", "none", "true", "-1", "1e999"]),
)
JSON = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                     st.dictionaries(st.text(max_size=6), inner, max_size=4)),
                    max_leaves=12)
FILES = st.sampled_from(["e/good.json", "e/good2.json", "e/nan.json", "e/cut.npy", "e/obj.npy", "e/empty.json",
                         "e/wide.json", "e/missing.json", "../outside.json", "link.json", "e/a\nb.json", "e/\x00.json"])
KEYS = st.sampled_from(["m1", "m2", "m3", "a1", "ecg", "", "m1\x00", "<m1>"])


@st.composite
def rows(draw):
    """Rows near the dataset format (so that deep paths run), with any field swapped for any JSON value."""
    messages = []
    for turn in range(draw(st.integers(0, 4))):
        role = draw(st.sampled_from(["user", "assistant", "system", "tool", "human", "gpt"]))
        content = "".join(draw(st.lists(st.sampled_from(["<m1>", "<m2>", "<m3>", "<a1>", "text ", "<think>", "\x00"]),
                                        max_size=4)))
        message = {"role": role, "content": content}
        if draw(st.booleans()):
            message = draw(st.one_of(st.just(message), JSON, st.just({"from": role, "value": content})))
        messages.append(message)
    embeddings = draw(st.dictionaries(KEYS, st.one_of(st.lists(st.one_of(FILES, JSON), max_size=3), JSON),
                                      max_size=3))
    row = {"messages": messages, "embeddings": embeddings}
    for key in draw(st.lists(st.sampled_from(["messages", "embeddings", "conversations", "system"]), max_size=2)):
        row[key] = draw(JSON)
    return row


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    folder = tmp_path_factory.mktemp("media")
    (folder / "e").mkdir()
    (folder / "e" / "good.json").write_text(json.dumps({"embedding": [[1.0, 2.0, 3.0]]}))
    (folder / "e" / "good2.json").write_text(json.dumps({"embedding": [[1.0, 2.0, 3.0], [0.5, 0.5, 0.5]]}))
    (folder / "e" / "nan.json").write_text('{"embedding": [[NaN, 1, 2]]}')
    (folder / "e" / "wide.json").write_text(json.dumps({"embedding": [[1.0] * 5]}))
    (folder / "e" / "empty.json").write_text("")
    np.save(folder / "e" / "full.npy", np.ones((1, 3), dtype=np.float32))
    (folder / "e" / "cut.npy").write_bytes((folder / "e" / "full.npy").read_bytes()[:-4])
    np.save(folder / "e" / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    (folder.parent / "outside.json").write_text(json.dumps({"embedding": [[1.0, 2.0, 3.0]]}))
    (folder / "link.json").symlink_to(folder.parent / "outside.json")
    return str(folder)


@SETTINGS
@given(row=rows(), rule=st.sampled_from(["next", "assistant", "all"]), dim=st.sampled_from([None, 3, 5]))
def test_any_row_is_read_or_refused_with_our_error(tokenizer, media, row, rule, dim):
    try:
        features = encode_row(row, tokenizer, "default", rule, dim, media)
    except DataError as err:
        assert "\n" not in str(err) and str(err)
        return
    assert len(features["input_ids"]) == len(features["labels"])
    assert len(features["embedding_positions"]) == len(features["embedding_is_target"])


CONFIG_KEYS = sorted(_field_types(ALL_DATACLASSES))
VALUES = st.one_of(SCALARS, st.lists(SCALARS, max_size=2), st.dictionaries(st.text(max_size=4), SCALARS, max_size=2))


@SETTINGS
@given(extra=st.dictionaries(st.one_of(st.sampled_from(CONFIG_KEYS), st.text(max_size=8)), VALUES, max_size=4),
       command=st.sampled_from(["train", "predict"]))
def test_any_configuration_parses_or_is_refused_with_our_error(tmp_path, extra, command):
    config = {"model_name_or_path": "m", "dataset": "d", "output_dir": str(tmp_path / "out"), "stage": "wm",
              "report_to": "none", **extra}
    try:
        parsed = (get_train_args if command == "train" else get_predict_args)(config)
    except DataError as err:
        assert "\n" not in str(err).strip() and str(err)
        return
    training = parsed.training
    assert training.learning_rate > 0 and math.isfinite(training.learning_rate) if command == "train" else True
    assert 0 <= training.seed <= 2**32 - 1 and training.dataloader_num_workers >= 0


ENTRY_KEYS = st.sampled_from(["file_name", "formatting", "columns", "tags", "split", "subset", "hf_hub_url",
                              "allow_outside_media_dir", "ranking"])


@SETTINGS
@given(entry=st.one_of(JSON, st.dictionaries(ENTRY_KEYS, st.one_of(JSON, st.sampled_from(
    ["d.json", "sharegpt", "../d.json", "missing.json", "e"])), max_size=5)))
def test_any_registry_entry_is_read_or_refused_with_our_error(media, entry):
    import os

    folder = os.path.join(media, "registry")
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "d.json"), "w") as f:
        f.write("[]")
    with open(os.path.join(folder, "dataset_info.json"), "w") as f:
        f.write(json.dumps({"d": entry}, default=str))
    try:
        (attr,) = get_dataset_attrs(["d"], folder)
    except DataError as err:
        assert "\n" not in str(err).strip()
        return
    assert attr.name == "d" and isinstance(attr.allow_outside_media_dir, bool)
