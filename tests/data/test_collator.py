"""The collator pads and flattens the same way from Arrow batches (training) and from row dicts."""

import torch
from conftest import TINY_MODEL, write_dynamics_dataset

from wmfactory.data import WorldModelDataCollator, get_dataset, get_template
from wmfactory.data.collator import collator_view
from wmfactory.hparams import get_train_args


def test_arrow_batches_and_row_dicts_collate_identically(tokenizer, tmp_path):
    data_dir = write_dynamics_dataset(tmp_path / "data", rows=10, varied=True)
    a = get_train_args(
        {"model_name_or_path": TINY_MODEL, "dataset": "dynamics", "dataset_dir": data_dir, "stage": "wm",
         "output_dir": str(tmp_path / "out")})
    dataset = get_dataset(get_template(None, tokenizer), tokenizer, a.model, a.data, a.training,
                          a.world_model).train_dataset
    view = collator_view(dataset)
    collator = WorldModelDataCollator(pad_token_id=tokenizer.pad_token_id, embedding_dim=4)
    indices = [7, 2, 9, 0]
    from_arrow = collator(view.__getitems__(indices))
    rows = [view[i] for i in indices]
    from_dicts = collator(rows)
    assert from_arrow.keys() == from_dicts.keys()
    for key in from_arrow:
        torch.testing.assert_close(from_arrow[key], from_dicts[key], rtol=0, atol=0, msg=key)
    # and against the rows themselves: padding, masks, flattened vectors with their (row, position)
    longest = max(len(r["input_ids"]) for r in rows)
    assert from_arrow["input_ids"].shape == (4, longest)
    for b, row in enumerate(rows):
        n = len(row["input_ids"])
        assert from_arrow["input_ids"][b, :n].tolist() == row["input_ids"]
        assert from_arrow["attention_mask"][b].tolist() == [1] * n + [0] * (longest - n)
        assert from_arrow["labels"][b, n:].eq(-100).all()
    expected_positions = [[b, p] for b, row in enumerate(rows) for p in row["embedding_positions"]]
    assert from_arrow["embedding_positions"].tolist() == expected_positions
    expected_vectors = [v for row in rows for v in row["embedding_vectors"]]
    torch.testing.assert_close(from_arrow["embedding_vectors"], torch.tensor(expected_vectors))
    assert from_arrow["embedding_is_target"].tolist() == [t for row in rows for t in row["embedding_is_target"]]
