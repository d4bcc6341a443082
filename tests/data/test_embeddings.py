import io
import json
import os

import numpy as np
import pytest
import torch
import safetensors.numpy
import safetensors.torch
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
    # outside media_dir only when the dataset's entry allows it: an absolute path, `..`, or a symlink out
    os.symlink(tmp_path / "outside.json", tmp_path / "media" / "link.json")
    for name in (str(tmp_path / "outside.json"), "../outside.json", "link.json"):
        with pytest.raises(DataError, match="media_dir .* set `allow_outside_media_dir: true`"):
            load_embedding(name, str(tmp_path / "media"))
        assert load_embedding(name, str(tmp_path / "media"), allow_outside=True).shape == (1, 1)
    # an absolute path inside media_dir is inside
    (tmp_path / "media" / "inside.json").write_text(json.dumps({"embedding": [2.0]}))
    assert load_embedding(str(tmp_path / "media" / "inside.json"), str(tmp_path / "media")).tolist() == [[2.0]]


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


def npy_bytes(array):
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def pt_bytes(obj, **kwargs):
    buf = io.BytesIO()
    torch.save(obj, buf, **kwargs)
    return buf.getvalue()


def npy_header(descr, shape, text=None):
    """A .npy 1.0 header alone (no data), claiming whatever shape it is given (or holding whatever text)."""
    text = text or repr({"descr": descr, "fortran_order": False, "shape": shape}).encode()
    text += b" " * (63 - (len(text) + 10) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text


def st_raw(header, data=b""):
    """A .safetensors file from a header we write ourselves: 8-byte little-endian length, JSON, data."""
    text = json.dumps(header).encode()
    return len(text).to_bytes(8, "little") + text + data


GOOD_NPY = npy_bytes(MATRIX)
GOOD_PT = pt_bytes(torch.from_numpy(MATRIX))
GOOD_ST = safetensors.numpy.save({"embedding": MATRIX})
GOOD_JSON = json.dumps({"embedding": MATRIX.tolist(), "shape": [2, 4]}).encode()
LEGACY_PT = pt_bytes(torch.from_numpy(MATRIX), _use_new_zipfile_serialization=False)


@pytest.mark.parametrize("name, content, reason", [pytest.param(*case, id=case[0]) for case in [
    ("empty.npy", b"", "file is empty"),
    ("empty.pt", b"", "file is empty"),
    ("empty.safetensors", b"", "file is empty"),
    ("empty.json", b"", "file is empty"),
    ("garbage.npy", b"this is not an array at all", "not a valid .npy file"),
    ("cut_header.npy", GOOD_NPY[:30], "not a valid .npy file"),
    ("unparsable_header.npy", npy_header(None, None, b"{'descr': '<f4', 'shape': (2, 4"), "not a valid .npy file"),
    ("cut_data.npy", GOOD_NPY[:-5], "truncated .npy file: its header claims 32 bytes of data, the file holds 27"),
    ("garbage.pt", b"this is not a tensor at all", "not a valid .pt file"),
    ("cut_zip.pt", GOOD_PT[: len(GOOD_PT) // 2], "not a valid .pt file (RuntimeError: PytorchStreamReader failed"),
    ("cut_legacy.pt", LEGACY_PT[: len(LEGACY_PT) // 2], "truncated .pt file"),
    ("cut_legacy_early.pt", LEGACY_PT[:18], "not a valid .pt file (error: unpack requires"),
    ("npy_as.pt", GOOD_NPY, "not a valid .pt file (corrupt pickle"),
    ("tiny.safetensors", b"\x05\x00", "truncated .safetensors file"),
    ("garbage.safetensors", b"this is not a tensor at all", "not a valid .safetensors file"),
    ("cut_header.safetensors", GOOD_ST[:20], "truncated .safetensors file: its header claims"),
    ("cut_data.safetensors", GOOD_ST[:-4], "truncated .safetensors file: tensor 'embedding' ends at byte 32"),
    ("not_json.safetensors", (4).to_bytes(8, "little") + b"\xff{[}", "its header is not JSON"),
    ("cut.json", GOOD_JSON[: GOOD_JSON.index(b"0.5")], "malformed JSON: the file is truncated"),
]])
def test_empty_truncated_and_corrupt_files_are_one_clear_error(tmp_path, name, content, reason):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(DataError) as err:
        load_embedding(name, str(tmp_path))
    assert reason in str(err.value)


@pytest.mark.parametrize("name, content, reason", [pytest.param(*case, id=case[0]) for case in [
    ("huge.npy", npy_header("<f4", (10**6, 10**6)) + b"\0" * 64,
     "truncated .npy file: its header claims 4000000000000 bytes of data, the file holds 64"),
    ("negative.npy", npy_header("<f4", (-2, 3)) + b"\0" * 24, "not a valid .npy file (shape (-2, 3)"),
    ("huge_header.safetensors", (2**62).to_bytes(8, "little") + b"{}", f"its header claims {2**62} bytes (at most"),
    ("huge_shape.safetensors", st_raw({"embedding": {"dtype": "F32", "shape": [10**6, 10**6], "data_offsets": [0, 16]}},
                                      b"\0" * 16), "needs 4000000000000 bytes, its data_offsets give 16"),
    ("huge_offsets.safetensors", st_raw({"embedding": {"dtype": "F32", "shape": [10**6, 10**6],
                                                       "data_offsets": [0, 4 * 10**12]}}, b"\0" * 16),
     "truncated .safetensors file: tensor 'embedding' ends at byte 4000000000000 of its data, the file holds 16"),
    ("bad_entry.safetensors", st_raw({"embedding": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}, b"\0" * 4),
     "bad header entry for tensor 'embedding'"),
    ("bad_dtype.safetensors", st_raw({"embedding": {"dtype": [1], "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 4),
     "bad header entry for tensor 'embedding'"),
]])
def test_sizes_claimed_by_a_header_are_checked_before_allocating(tmp_path, monkeypatch, name, content, reason):
    (tmp_path / name).write_bytes(content)

    def never(*args, **kwargs):
        raise AssertionError("the data was read although the header claims more than the file holds")

    monkeypatch.setattr(np.lib.format, "read_array", never)
    monkeypatch.setattr(np, "fromfile", never)
    monkeypatch.setattr(safetensors, "safe_open", never)
    with pytest.raises(DataError) as err:
        load_embedding(name, str(tmp_path))
    assert reason in str(err.value)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_tensors_are_read_as_float32(tmp_path, dtype):
    values = [[0.5, -2.0, 3.0], [0.25, 1024.0, -0.125]]  # exact in bf16 and fp16
    tensor = torch.tensor(values, dtype=dtype)
    safetensors.torch.save_file({"embedding": tensor}, str(tmp_path / "h.safetensors"))
    torch.save(tensor, tmp_path / "h.pt")
    safetensors.torch.save_file({"only": tensor[0]}, str(tmp_path / "one.safetensors"))
    for name, expected in [("h.safetensors", values), ("h.pt", values), ("one.safetensors", values[:1])]:
        matrix = load_embedding(name, str(tmp_path))
        assert matrix.dtype == np.float32
        np.testing.assert_array_equal(matrix, np.array(expected, dtype=np.float32))


def test_integers_are_read_while_they_fit(tmp_path):
    np.save(tmp_path / "i.npy", np.array([[1, -2, 3]], dtype=np.int64))
    np.save(tmp_path / "u.npy", np.array([np.iinfo(np.uint64).max, 7], dtype=np.uint64))
    torch.save(torch.tensor([[4, 5]], dtype=torch.int32), tmp_path / "i.pt")
    (tmp_path / "i.json").write_text(json.dumps({"embedding": [[1, 2], [3, 10**20]]}))
    np.testing.assert_array_equal(load_embedding("i.npy", str(tmp_path)), [[1.0, -2.0, 3.0]])
    np.testing.assert_array_equal(load_embedding("u.npy", str(tmp_path)), np.array([[1.8446744e19, 7.0]], np.float32))
    np.testing.assert_array_equal(load_embedding("i.pt", str(tmp_path)), [[4.0, 5.0]])
    np.testing.assert_array_equal(load_embedding("i.json", str(tmp_path)), np.array([[1, 2], [3, 1e20]], np.float32))


def write_big(path):
    big = np.array([[1.0, 1e39]])
    if path.suffix == ".npy":
        np.save(path, big)
    elif path.suffix == ".pt":
        torch.save(torch.from_numpy(big), path)
    else:
        save_file({"embedding": big}, str(path))


@pytest.mark.parametrize("name, write, reason", [pytest.param(*case, id=case[0]) for case in [
    ("big.npy", write_big, "values do not fit in float32 (found 1e+39"),
    ("big.pt", write_big, "values do not fit in float32 (found 1e+39"),
    ("big.safetensors", write_big, "values do not fit in float32 (found 1e+39"),
    ("big.json", lambda p: p.write_text('{"embedding": [[1.0, 1e39]]}'), "values do not fit in float32 (found 1e+39"),
    ("huge_int.json", lambda p: p.write_text('{"embedding": [1, %d]}' % 10**400), "values do not fit in float32"),
    ("negative.json", lambda p: p.write_text('{"embedding": [1, -4e38]}'), "values do not fit in float32 (found 4e+38"),
]])
def test_values_beyond_float32_are_refused_never_inf(tmp_path, name, write, reason):
    write(tmp_path / name)
    with pytest.raises(DataError) as err:
        load_embedding(name, str(tmp_path))
    assert reason in str(err.value)


@pytest.mark.parametrize("name, write, reason", [pytest.param(*case, id=case[0]) for case in [
    ("c.npy", lambda p: np.save(p, np.array([1 + 2j, 3j])), "dtype complex128 is not a real number type"),
    ("t.npy", lambda p: np.save(p, np.array(["2024-01-01"], dtype="datetime64[D]")),
     "dtype datetime64[D] is not a real number type (it holds datetimes)"),
    ("s.npy", lambda p: np.save(p, np.array(["1.5", "2"])), "dtype <U3 is not a real number type (it holds strings)"),
    ("b.npy", lambda p: np.save(p, np.array([b"1", b"2"])), "dtype |S1 is not a real number type (it holds bytes)"),
    ("bool.npy", lambda p: np.save(p, np.array([True, False])),
     "dtype bool is not a real number type (it holds booleans)"),
    ("c.pt", lambda p: torch.save(torch.tensor([1 + 2j]), p), "dtype complex64 is not a real number type"),
    ("bool.pt", lambda p: torch.save(torch.tensor([True, False]), p), "dtype bool is not a real number type"),
    ("bool.safetensors", lambda p: safetensors.torch.save_file({"embedding": torch.tensor([True])}, str(p)),
     "dtype bool is not a real number type"),
    ("bool.json", lambda p: p.write_text('{"embedding": [[1.0, true]]}'),
     "values are not a numeric matrix (found a boolean: True)"),
    ("str.json", lambda p: p.write_text('{"embedding": [[1.0, "2.0"]]}'),
     "values are not a numeric matrix (found a string: '2.0')"),
    ("null.json", lambda p: p.write_text('{"embedding": [1.0, null]}'), "values are not a numeric matrix (found null"),
]])
def test_non_real_values_are_refused_naming_the_type(tmp_path, name, write, reason):
    write(tmp_path / name)
    with pytest.raises(DataError) as err:
        load_embedding(name, str(tmp_path))
    assert reason in str(err.value)


@pytest.mark.parametrize("content, reason", [
    (b'{"embedding": [1.0, 2.0], "description": "caf\xe9"}', "not valid UTF-8 text (byte 0xe9 at offset 45)"),
    (b'{"embedding": "[1, 2]"}', "`embedding` is a string, not a list of numbers"),
    (b'{"embedding": [[1, 2], [3]]}', "values are not a numeric matrix (nested lists of different lengths)"),
    (b'{"embedding": [[1, 2], 3]}', "values are not a numeric matrix (nested lists of different lengths)"),
    (b'{"embedding": [[1, 2]], "shape": 2}', "`shape` must be a list of integers, got 2"),
    (b"[" * 100000, "malformed JSON (nested too deeply)"),
])
def test_json_that_is_not_text_or_not_a_matrix(tmp_path, content, reason):
    (tmp_path / "bad.json").write_bytes(content)
    with pytest.raises(DataError) as err:
        load_embedding("bad.json", str(tmp_path))
    assert reason in str(err.value)


def test_python_entries_get_the_same_checks():
    np.testing.assert_array_equal(load_embedding([[1, 2.5]], "."), [[1.0, 2.5]])
    np.testing.assert_array_equal(load_embedding(np.arange(3, dtype=np.int16), "."), [[0.0, 1.0, 2.0]])
    with pytest.raises(DataError, match="found a boolean"):
        load_embedding([1.0, True], ".")
    with pytest.raises(DataError, match="dtype complex128 is not a real number type"):
        load_embedding(np.array([1j]), ".")
    with pytest.raises(DataError, match="do not fit in float32"):
        load_embedding(np.array([1e300]), ".")


@pytest.mark.filterwarnings("ignore::UserWarning")  # torch warns about the odd pickle protocols of damaged files
def test_random_damage_is_a_data_error_or_a_valid_matrix(tmp_path):
    """Truncations, flipped bytes and garbage never escape as anything but DataError (or still read, when only data
    bytes changed: then the matrix is float32, finite and 2-D)."""
    rng = np.random.default_rng(0)
    goods = {"a.npy": GOOD_NPY, "a.pt": GOOD_PT, "legacy.pt": LEGACY_PT, "a.safetensors": GOOD_ST, "a.json": GOOD_JSON}
    for name, good in goods.items():
        for _ in range(100):
            data = bytearray(good)
            damage = rng.integers(3)
            if damage == 0:
                data = data[: rng.integers(1, len(data))]
            elif damage == 1:
                for i in rng.integers(len(data), size=rng.integers(1, 8)):
                    data[i] = rng.integers(256)
            else:
                data = rng.integers(256, size=rng.integers(1, 200), dtype=np.uint8).tobytes()
            (tmp_path / name).write_bytes(bytes(data))
            try:
                matrix = load_embedding(name, str(tmp_path))
            except DataError:
                continue
            assert matrix.dtype == np.float32 and matrix.ndim == 2 and np.isfinite(matrix).all()


def test_a_json_embedding_file_too_large_to_parse_is_refused(tmp_path, monkeypatch):
    from wmfactory.data import embeddings
    from wmfactory.extras.errors import DataError

    path = tmp_path / "big.json"
    path.write_text('{"embedding": [[1.0, 2.0]]}')
    monkeypatch.setattr(embeddings, "MAX_JSON_BYTES", 10)
    with pytest.raises(DataError, match="store large matrices as .npy or .safetensors"):
        embeddings.load_embedding(str(path), str(tmp_path))
