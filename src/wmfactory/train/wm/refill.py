"""`missing_refills`: the model fills the gaps of the training rows, and training goes on reading them filled.

A model trained under `missing_values: mask` reads each gap as the frame's linear fill, while at inference it reads
its own fill (`fill_row_gaps`), which rolls out several times better (docs/benchmarks.md). At evenly spaced steps
this callback fills the gaps of every training row with the model as it stands, solved from the whole row; the
batches after it carry those rows as `embedding_fed`, which the model reads (a filled entry as observed, as at
inference), while the loss still scores only the observed entries of `embedding_vectors`.

The fills are saved with each checkpoint (`missing_fills.safetensors`) and read back on resume, so a resumed run
reads what the uninterrupted one read. With several processes each fills its share of the rows and all of them
gather the whole."""

import os
from typing import Optional

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from transformers import TrainerCallback

from ...extras.errors import DataError
from ...extras.logging import get_logger
from ...inference.rows import RowTensors, fill_row_gaps, row_batches, vector_stream
from ..checkpoints import checkpoint_step

logger = get_logger(__name__)
FILLS_FILE = "missing_fills.safetensors"


def refill_steps(max_steps: int, refills: int) -> list[int]:
    """The steps after which the rows are filled: `refills` of them, evenly spaced inside the run."""
    steps = sorted({round(max_steps * i / (refills + 1)) for i in range(1, refills + 1)})
    return [step for step in steps if 0 < step < max_steps]


def save_fills(path: str, fills: dict[int, torch.Tensor]) -> None:
    """The fills (training row -> `[v, W]`) as one safetensors file: `indices` `[r]`, `counts` `[r]` (vectors per
    row) and `vectors` `[sum v, W]`."""
    indices = sorted(fills)
    tensors = [fills[i].float().cpu() for i in indices]
    save_file({"indices": torch.tensor(indices, dtype=torch.long),
               "counts": torch.tensor([len(t) for t in tensors], dtype=torch.long),
               "vectors": torch.cat(tensors) if tensors else torch.zeros((0, 0))}, path)


def load_fills(path: str, rows, width: int) -> dict[int, torch.Tensor]:
    """The fills saved at `path`, checked against the training rows `rows` (preprocessed, whole): each fill must
    have its row's number of vectors and equal its row's observed entries."""
    try:
        tensors = load_file(path)
        indices, counts, vectors = tensors["indices"].tolist(), tensors["counts"].tolist(), tensors["vectors"]
    except (OSError, KeyError, ValueError, SafetensorError) as err:
        raise DataError(f"'{path}' cannot be read as the fills of the training rows ({err}).") from None
    if sum(counts) != len(vectors) or len(counts) != len(indices) or (len(vectors) and vectors.shape[1] != width):
        raise DataError(f"'{path}': its row counts do not add up to its {len(vectors)} vectors of width {width}.")
    fills = dict(zip(indices, torch.split(vectors, counts)))
    for index, fill in fills.items():
        if not 0 <= index < len(rows):
            raise DataError(f"'{path}' fills training row {index}, but the training split has {len(rows)} rows: the "
                            "checkpoint was trained on other data.")
        given = torch.as_tensor(vector_stream(rows[index], width))
        seen = ~torch.isnan(given)
        if given.shape != fill.shape or not torch.equal(given[seen], fill[seen]):
            raise DataError(f"'{path}': the fill of training row {index} does not match the row's observed values: "
                            "the checkpoint was trained on other data.")
    return fills


class MissingRefill(TrainerCallback):
    """Fills the gaps of the training rows (`rows`: the split, preprocessed and whole, in the order of the trainer's
    `train_dataset`) after each of `refill_steps`, and keeps the fills with the checkpoints."""

    def __init__(self, trainer, rows, refills: int, resume_from: Optional[str] = None):
        self.trainer, self.rows, self.refills, self.resume_from = trainer, rows, refills, resume_from
        self.width = trainer.world_model_config.embedding_dim
        self.steps: list[int] = []
        trainer.train_dataset.with_row_ids = True  # the batches say which rows they hold

    def on_train_begin(self, args, state, control, **kwargs):
        self.steps = refill_steps(state.max_steps, self.refills)
        if not self.resume_from:
            return
        resumed = checkpoint_step(self.resume_from)
        done = [step for step in self.steps if step <= resumed]
        path = os.path.join(self.resume_from, FILLS_FILE)
        if os.path.exists(path):
            self.trainer.missing_fills = load_fills(path, self.rows, self.width)
        elif done:  # the checkpoint holds no fills, but the run had filled the rows before it
            logger.warning(f"{self.resume_from} holds no {FILLS_FILE} although the rows were filled at step "
                           f"{done[-1]}: filling them again with the resumed model (the run will not be exactly "
                           "the one that was interrupted).")
            self.refill(resumed)

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step in self.steps:
            self.refill(state.global_step)

    def on_save(self, args, state, control, **kwargs):
        if self.trainer.missing_fills and state.is_world_process_zero:
            folder = os.path.join(args.output_dir, f"checkpoint-{state.global_step}")
            if os.path.isdir(folder):
                save_fills(os.path.join(folder, FILLS_FILE), self.trainer.missing_fills)

    def refill(self, step: int) -> None:
        """Each process fills its share of the rows with the model as it stands; all of them gather the whole."""
        trainer = self.trainer
        model = trainer.accelerator.unwrap_model(trainer.model)
        was_training = model.training
        model.eval()
        rank, world = trainer.args.process_index, trainer.args.world_size
        mine = list(range(rank, len(self.rows), world))
        fills = []
        # as wide as a training batch at least: its backward pass fits (the fill's has no weight gradients)
        size = max(1, trainer.args.per_device_eval_batch_size, trainer.args.per_device_train_batch_size)
        for chunk in row_batches(self.rows.select(mine), size):
            tensors = [RowTensors(model, features) for features in chunk]
            fill_row_gaps(model, tensors)
            for row in tensors:
                solved = row.fed is not row.vectors and not bool(torch.isnan(row.fed).any())
                fills.append(row.fed.float().cpu() if solved else None)
        local = [(index, fill) for index, fill in zip(mine, fills) if fill is not None]
        if world > 1:
            from accelerate.utils import gather_object

            local = [pair for part in gather_object([local]) for pair in part]
        trainer.missing_fills = dict(local)
        if was_training:
            model.train()
        if trainer.is_world_process_zero():
            logger.info(f"`missing_refills`: the gaps of {len(trainer.missing_fills)} training rows filled by the model "
                        f"at step {step}; training goes on reading them filled.")
