import json

import numpy as np
import pytest
import torch
from safetensors.numpy import save_file

from wmfactory.data.embeddings import load_embedding
from wmfactory.extras.errors import DataError

MATRIX = np.array([[0.1, 0.2, 0.3, 0.4], [0.5, 0.6, 0.7, 0.8]], dtype=np.float32)


def test_all_formats_read_the_same_matrix(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps({"embedding": MATRIX.tolist(), "shape": [2, 4]}))
    np.save(tmp_path / "a.npy", MATRIX)
    save_file({"embedding": MATRIX}, str(tmp_path / "a.safetensors"))
    torch.save(torch.from_numpy(MATRIX), tmp_path / "a.pt")
    for name in ("a.json", "a.npy", "a.safetensors", "a.pt"):
        np.testing.assert_array_equal(load_embedding(name, str(tmp_path)), MATRIX)


def test_a_flat_list_is_one_vector(tmp_path):
    (tmp_path / "v.json").write_text(json.dumps({"embedding": [1, 2, 3], "shape": [3]}))
    assert load_embedding("v.json", str(tmp_path)).shape == (1, 3)


@pytest.mark.parametrize(
    "content, reason",
    [
        ("{not json", "malformed JSON"),
        (json.dumps({"vector": [1, 2]}), "no `embedding` field"),
        (json.dumps({"embedding": [[1, "x"]]}), "not a numeric matrix"),
        (json.dumps({"embedding": [[1.0, float("nan")]]}), "not all finite"),
        (json.dumps({"embedding": []}), "empty embedding"),
        (json.dumps({"embedding": [[1, 2]], "shape": [2, 2]}), "`shape` says [2, 2] but the data is [1, 2]"),
    ],
)
def test_bad_json_files_are_errors_never_zeros(tmp_path, content, reason):
    (tmp_path / "bad.json").write_text(content)
    with pytest.raises(DataError, match=None) as err:
        load_embedding("bad.json", str(tmp_path))
    assert reason in str(err.value)


def test_missing_file_and_escaping_path(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        load_embedding("nowhere.json", str(tmp_path))
    (tmp_path / "outside.json").write_text(json.dumps({"embedding": [1.0]}))
    (tmp_path / "media").mkdir()
    with pytest.raises(DataError, match="escapes media_dir"):
        load_embedding("../outside.json", str(tmp_path / "media"))
    # an absolute path is the user's explicit choice
    assert load_embedding(str(tmp_path / "outside.json"), str(tmp_path / "media")).shape == (1, 1)


def test_pickled_payloads_are_refused(tmp_path):
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match="without pickle"):
        load_embedding("obj.npy", str(tmp_path))

    marker = tmp_path / "executed"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    torch.save({"embedding": Payload()}, tmp_path / "evil.pt")
    with pytest.raises(DataError, match="refused to load"):
        load_embedding("evil.pt", str(tmp_path))
    assert not marker.exists()
