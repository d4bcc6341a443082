"""Decoding by retrieval: `nearest` against cosine similarity computed by hand, `wmfactory retrieve` on predictions
built from known bank items, and the whole path raw sentences -> encode -> train -> rollout -> retrieve."""

import json

import numpy as np
import pytest
from conftest import TINY_MODEL
from encode_helpers import STORY, TINY_BERT, story_rows, write_raw_dataset

from wmfactory import nearest
from wmfactory.commands.encode import run_encode
from wmfactory.commands.predict import run_predict
from wmfactory.commands.retrieve import run_retrieve
from wmfactory.data.embeddings import load_embedding
from wmfactory.extras.errors import DataError
from wmfactory.train.tuner import run_exp


def test_nearest_is_cosine_top_k_with_scores():
    rng = np.random.default_rng(0)
    bank = rng.normal(size=(20, 8))
    queries = np.stack([3.0 * bank[7] + 0.05 * rng.normal(size=8), -bank[2], bank[11] * 0.1])
    indices, scores = nearest(queries, bank, k=3)
    cosine = (queries @ bank.T) / np.outer(np.linalg.norm(queries, axis=1), np.linalg.norm(bank, axis=1))
    assert indices.shape == scores.shape == (3, 3)
    assert indices[0, 0] == 7 and indices[2, 0] == 11 and indices[1, 0] != 2
    np.testing.assert_array_equal(indices, np.argsort(-cosine, axis=1)[:, :3])
    np.testing.assert_allclose(scores, np.take_along_axis(cosine, indices, axis=1), atol=1e-12)
    assert scores[2, 0] == pytest.approx(1.0)
    # k beyond the bank is the whole bank; equal scores keep the bank's order
    indices, scores = nearest([1.0, 0.0], [[0.0, 1.0], [2.0, 0.0], [5.0, 0.0]], k=10)
    assert indices.tolist() == [[1, 2, 0]] and scores.tolist() == [[1.0, 1.0, 0.0]]
    with pytest.raises(DataError, match="vector 0 is a zero vector"):
        nearest(np.zeros((1, 8)), bank)
    with pytest.raises(DataError, match="dimension 4 against a bank of dimension 8"):
        nearest(np.ones((1, 4)), bank)


def test_retrieve_finds_the_item_a_prediction_was_made_from(tmp_path, capsys):
    bank = tmp_path / "bank"
    path = tmp_path / "story.jsonl"
    path.write_text("".join(json.dumps({"id": f"s{i}", "text": s}) + "\n" for i, s in enumerate(STORY)))
    run_encode({"encoder": TINY_BERT, "manifest": str(path), "output_dir": str(bank)})
    vectors = np.concatenate([load_embedding(f"embeddings/s{i}.safetensors", str(bank)) for i in range(len(STORY))])
    rng = np.random.default_rng(1)
    from safetensors.numpy import save_file

    lines, predicted_vectors = [], []
    (tmp_path / "pred" / "files").mkdir(parents=True)
    for row, target in enumerate([4, 0, 2]):  # the layout `wmfactory predict` writes: one .safetensors per line
        noisy = vectors[target] + 0.01 * np.abs(vectors[target]).mean() * rng.normal(size=vectors.shape[1])
        save_file({"embedding": noisy[None].astype(np.float32), "target": vectors[target][None].astype(np.float32)},
                  str(tmp_path / "pred" / "files" / f"{row}.safetensors"))
        predicted_vectors.append(noisy)
        lines.append({"dataset": "story", "row": row, "key": "m3", "occurrence": 0, "mode": "rollout", "horizon": 1,
                      "file": f"files/{row}.safetensors"})
    predictions = tmp_path / "pred" / "predictions.jsonl"
    predictions.write_text("".join(json.dumps(line) + "\n" for line in lines))
    capsys.readouterr()
    output = run_retrieve({"bank": str(bank), "predictions": str(predictions), "top_k": 2})
    records = [json.loads(line) for line in open(output)]
    assert output == str(tmp_path / "pred" / "retrieved.jsonl")
    for record, target, predicted in zip(records, [4, 0, 2], predicted_vectors):
        best = record["neighbours"][0][0]
        assert (best["id"], best["text"]) == (f"s{target}", STORY[target])
        cosine = predicted @ vectors[target] / np.linalg.norm(predicted) / np.linalg.norm(vectors[target])
        assert best["score"] == pytest.approx(cosine, abs=1e-6)
        assert record["target_neighbours"][0][0]["id"] == f"s{target}"
        assert len(record["neighbours"][0]) == 2 and record["horizon"] == 1
    out = capsys.readouterr().out
    assert f"story row 0 <m3> #0, horizon 1: '{STORY[4]}'" in out
    assert "the target's nearest item is the top-1 neighbour of 3 of 3 predictions, among the top 2 of 3" in out
    # the same from Python, on the model class: the bank folder gives items, a matrix gives indices and scores
    from wmfactory import WorldModel

    found = WorldModel.nearest(predicted_vectors[0][None], str(bank), k=2)
    assert found[0][0]["id"] == "s4" and found[0][0]["score"] == pytest.approx(records[0]["neighbours"][0][0]["score"])
    indices, _ = WorldModel.nearest(predicted_vectors[1][None], vectors, k=1)
    assert indices.tolist() == [[0]]


def test_raw_sentences_encode_train_rollout_retrieve(tmp_path, capsys):
    data_dir = write_raw_dataset(tmp_path / "raw", "story", story_rows())
    encoded = tmp_path / "encoded"
    run_encode({"encoder": TINY_BERT, "dataset": "story", "dataset_dir": data_dir, "output_dir": str(encoded)})
    # a second entry whose record says another pooling: the run is warned that the spaces differ
    info = json.loads((encoded / "dataset_info.json").read_text())
    info["story_cls"] = {**info["story"], "encoder": {**info["story"]["encoder"], "pooling": "cls"}}
    (encoded / "dataset_info.json").write_text(json.dumps(info))
    capsys.readouterr()
    run_exp({"stage": "wm", "model_name_or_path": TINY_MODEL, "dataset": "story,story_cls", "dataset_dir": str(encoded),
             "output_dir": str(tmp_path / "model"), "max_steps": 2, "per_device_train_batch_size": 4,
             "report_to": "none", "save_strategy": "no", "disable_tqdm": True, "overwrite_output_dir": True})
    err = capsys.readouterr().err
    assert "the datasets of this run were encoded with different encoders" in err
    assert "dataset 'story_cls': " + TINY_BERT + " (text, transformers, pooling cls" in err
    predictions = run_predict({"model_name_or_path": str(tmp_path / "model"), "dataset": "story",
                               "dataset_dir": str(encoded), "output_dir": str(tmp_path / "predict"),
                               "predict_mode": "rollout", "context_groups": 2})
    output = run_retrieve({"bank": str(encoded), "predictions": predictions, "top_k": 3})
    records = [json.loads(line) for line in open(output)]
    assert [r["row"] for r in records] == [0, 1, 2, 3] and all(r["horizon"] == 1 for r in records)
    for record in records:  # the third sentence of each window is what was to be predicted
        assert record["target_neighbours"][0][0]["text"] == STORY[record["row"] + 2]
        assert record["target_neighbours"][0][0]["score"] == pytest.approx(1.0, abs=1e-6)
        assert len(record["neighbours"][0]) == 3 and {"id", "score", "text"} <= set(record["neighbours"][0][0])
    # predict writes the same neighbours itself when given the bank
    direct = run_predict({"model_name_or_path": str(tmp_path / "model"), "dataset": "story", "dataset_dir": str(encoded),
                          "output_dir": str(tmp_path / "predict_bank"), "predict_mode": "rollout",
                          "context_groups": 2, "bank": str(encoded), "top_k": 3})
    lines = [json.loads(line) for line in open(direct)]
    assert [line["neighbours"] for line in lines] == [record["neighbours"] for record in records]
