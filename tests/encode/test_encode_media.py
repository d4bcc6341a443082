"""`wmfactory encode` on images and audio: the tiny ViT and wav2vec2 give the vectors computed directly, each pooling
has its shape, and a corrupt image, an unreadable audio file or a missing package is one line naming it."""

import json

import numpy as np
import pytest
import torch
from encode_helpers import TINY_VIT, TINY_WAV2VEC2, write_raw_dataset

from wmfactory import cli
from wmfactory.commands.encode import run_encode
from wmfactory.data.embeddings import load_embedding
from wmfactory.extras.errors import ConfigError, DataError


def write_images(folder, count: int = 3) -> list[str]:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(count):
        pixels = (np.arange(40 * 48 * 3).reshape(40, 48, 3) * (i + 1) % 251).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"frame{i}.png")
        names.append(f"frame{i}.png")
    return names


def direct_vit(folder, names) -> np.ndarray:
    """`[images, 17, 32]`: the last hidden states of each image alone (CLS, then 16 patches)."""
    from PIL import Image
    from transformers import AutoImageProcessor, AutoModel

    processor, model = AutoImageProcessor.from_pretrained(TINY_VIT), AutoModel.from_pretrained(TINY_VIT).eval()
    out = []
    for name in names:
        pixels = processor(images=[Image.open(folder / name).convert("RGB")], return_tensors="pt")["pixel_values"]
        with torch.no_grad():
            out.append(model(pixel_values=pixels).last_hidden_state[0].numpy())
    return np.stack(out)


def manifest(path, lines: list[dict]) -> str:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return str(path)


def test_image_poolings_match_the_vision_tower(tmp_path):
    names = write_images(tmp_path / "frames")
    path = manifest(tmp_path / "frames.jsonl", [{"id": f"f{i}", "image": f"frames/{n}", "sequence": "clip"}
                                                 for i, n in enumerate(names)])
    hidden = direct_vit(tmp_path / "frames", names)
    expected = {"cls": hidden[:, :1], "mean": hidden[:, 1:].mean(axis=1, keepdims=True), "patch": hidden[:, 1:]}
    for pooling, vectors in expected.items():
        out = tmp_path / pooling
        result = run_encode({"encoder": TINY_VIT, "manifest": path, "output_dir": str(out), "pooling": pooling,
                             "batch_size": 2})
        assert result.encoder["type"] == "image" and result.datasets == ["frames"]
        for i in range(len(names)):
            np.testing.assert_allclose(load_embedding(f"embeddings/f{i}.safetensors", str(out)), vectors[i],
                                       rtol=1e-4, atol=1e-5)
    # one sequence of the manifest -> one row: <m1> told, <m2> <m3> to predict
    (row,) = [json.loads(line) for line in (tmp_path / "patch" / "frames.jsonl").read_text().splitlines()]
    assert row["messages"][1]["content"] == "<m2><m3>"
    assert row["embeddings"] == {f"m{i + 1}": [f"embeddings/f{i}.safetensors"] for i in range(3)}


def test_corrupt_image_is_one_line_naming_file_and_row(tmp_path, capsys):
    names = write_images(tmp_path / "raw")
    (tmp_path / "raw" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really an image")
    rows = [{"messages": [{"role": "user", "content": "<m1>"}, {"role": "assistant", "content": "<m2>"}],
             "embeddings": {"m1": [names[i]], "m2": [names[i + 1] if i == 0 else "broken.png"]}} for i in range(2)]
    data_dir = write_raw_dataset(tmp_path / "raw", "clips", rows)
    argv = ["encode", "--encoder", TINY_VIT, "--dataset", "clips", "--dataset_dir", data_dir, "--output_dir",
            str(tmp_path / "out")]
    assert cli.main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("wmfactory: error: dataset 'clips', row 1, key 'm2', file 'broken.png': not a readable "
                              "image (")
    assert not any(line.startswith("Traceback") for line in err)


def write_wave(path, seconds: float, rate: int = 16000, frequency: float = 440.0):
    import soundfile

    t = np.arange(int(seconds * rate)) / rate
    soundfile.write(str(path), (0.5 * np.sin(2 * np.pi * frequency * t)).astype(np.float32), rate, subtype="FLOAT")


def test_audio_mean_and_frames_match_the_model_and_bad_files_are_named(tmp_path):
    from transformers import AutoFeatureExtractor, AutoModel

    (tmp_path / "clips").mkdir()
    write_wave(tmp_path / "clips" / "a.wav", 0.1)
    write_wave(tmp_path / "clips" / "b.wav", 0.05, frequency=880.0)
    path = manifest(tmp_path / "clips.jsonl", [{"id": "a", "audio": "clips/a.wav"}, {"id": "b", "path": "clips/b.wav"}])
    extractor, model = AutoFeatureExtractor.from_pretrained(TINY_WAV2VEC2), AutoModel.from_pretrained(TINY_WAV2VEC2)
    for pooling in ("frame", "mean"):
        out = tmp_path / pooling
        result = run_encode({"encoder": TINY_WAV2VEC2, "manifest": path, "output_dir": str(out), "pooling": pooling})
        assert result.datasets == []  # no sequence: a bank only
        for name, samples in (("a", 1600), ("b", 800)):
            import soundfile

            wave, _ = soundfile.read(str(tmp_path / "clips" / f"{name}.wav"), dtype="float32")
            with torch.no_grad():
                frames = model(**extractor(wave, sampling_rate=16000, return_tensors="pt")).last_hidden_state[0]
            assert frames.shape[0] == (samples - 10) // 5 // 2  # kernels 10 then 3, strides 5 then 2
            expected = frames.numpy() if pooling == "frame" else frames.numpy().mean(axis=0, keepdims=True)
            np.testing.assert_allclose(load_embedding(f"embeddings/{name}.safetensors", str(out)), expected,
                                       rtol=1e-3, atol=1e-4)
    (tmp_path / "clips" / "c.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunk")
    write_wave(tmp_path / "clips" / "d.wav", 0.05, rate=8000)
    for name, reason in (("c", r"not a readable audio file \("), ("d", "sampled at 8000 Hz, the encoder expects 16000 Hz")):
        bad = manifest(tmp_path / "bad.jsonl", [{"id": "a", "audio": "clips/a.wav"}, {"id": name, "audio": f"clips/{name}.wav"}])
        with pytest.raises(DataError, match=rf"^manifest 'bad.jsonl', line 2, id '{name}', file 'clips/{name}.wav': {reason}"):
            run_encode({"encoder": TINY_WAV2VEC2, "manifest": bad, "output_dir": str(tmp_path / "bad")})


def test_a_missing_optional_package_names_the_extra(tmp_path, monkeypatch):
    write_wave(tmp_path / "a.wav", 0.05)
    path = manifest(tmp_path / "m.jsonl", [{"id": "a", "audio": "a.wav"}])
    monkeypatch.setitem(__import__("sys").modules, "soundfile", None)  # as if not installed
    with pytest.raises(ConfigError, match=r"reading audio needs the package `soundfile`, which is not installed: pip "
                                          r"install 'wmfactory\[encode\]'"):
        run_encode({"encoder": TINY_WAV2VEC2, "manifest": path, "output_dir": str(tmp_path / "o")})
    with pytest.raises(DataError, match=r"^manifest 'm.jsonl', line 1, id 'a', file 'a.wav': the item is audio, but "
                                        r"`encoder_type` is text"):
        run_encode({"encoder": TINY_VIT, "encoder_type": "text", "manifest": path, "output_dir": str(tmp_path / "o")})
