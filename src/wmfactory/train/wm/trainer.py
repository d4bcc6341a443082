"""`transformers.Trainer` with the world-model loss. The loop, checkpointing, resuming, distribution and mixed
precision are the base class's; this class changes how the loss is normalised and how it is logged."""

import json
import os
from typing import Optional

import torch
from transformers import Trainer, TrainerCallback

from ...eval.metrics import skill
from ...extras.atomic import write_json
from ...extras.compat import prepare_inputs
from ...extras.errors import ConfigError, DataError
from ...extras.logging import get_logger
from ...inference import generate_rows, rollout_windows
from ...model.heads import previous_in_streams
from ...data.collator import lm_label_mask
from ...model.loss import LossTerms, combine_losses
from ..checkpoints import newest_complete_checkpoint

logger = get_logger(__name__)


class WorldModelTrainer(Trainer):
    """The model accepts the counts of the whole optimizer step (`WorldModel.accepts_loss_kwargs`), so the base
    class uses the loss as it is, without dividing it by the gradient-accumulation steps again."""

    def __init__(self, eval_rows=None, **kwargs):
        """`eval_rows`: the evaluation split's preprocessed rows, whole (`eval_dataset` holds the collated columns
        only), for `eval_rollout_steps`."""
        super().__init__(**kwargs)
        self.eval_rows = eval_rows
        self.world_model_config = self.accelerator.unwrap_model(self.model).config
        # whether each process holds only a shard of the weights (a rollout or a fill needs them whole)
        self.sharded = sharded = self.is_fsdp_enabled or (self.is_deepspeed_enabled and getattr(
            self.accelerator.state.deepspeed_plugin, "zero_stage", 0) == 3)
        if self.world_model_config.eval_rollout_steps > 0 and sharded:
            raise ConfigError("`eval_rollout_steps` generates on each process with its whole weights; FSDP and "
                              "DeepSpeed ZeRO-3 shard them. Train without it (score rollouts afterwards with "
                              "`wmfactory eval`), or use DDP or ZeRO-2.")
        # `missing_refills` (`refill.MissingRefill`): training row -> its vectors `[v, W]` with their gaps filled by
        # the model; a training batch reads them as `embedding_fed`
        self.missing_fills: dict[int, torch.Tensor] = {}
        self._train_sums: dict[str, torch.Tensor] = {}
        self._train_steps_since_log = 0
        self._warned_drowned = False
        self._eval_sums: dict[str, torch.Tensor] = {}
        self._loss_finite: Optional[torch.Tensor] = None
        self._checked_step = 0

    # ---- loss ---------------------------------------------------------------------------------------------------
    def get_batch_samples(self, epoch_iterator, num_batches: int, device: torch.device):
        """Fetch the micro-batches of one optimizer step and count what the loss is averaged over: target vectors
        and LM-labelled tokens of all of them, on all ranks."""
        self._train_steps_since_log += 1
        batches = []
        for _ in range(num_batches):
            try:
                batches.append(next(epoch_iterator))
            except StopIteration:
                break
        counts = torch.zeros(2, dtype=torch.long, device=device)
        for batch in batches:
            counts[0] += batch["embedding_is_target"].sum().to(device)
            counts[1] += lm_label_mask(batch["labels"]).sum().to(device)
        if self.args.world_size > 1:
            counts = self.accelerator.gather(counts[None]).sum(dim=0)
        return batches, {"num_embedding_targets": counts[0], "num_lm_tokens": counts[1]}

    def compute_loss(self, model, inputs, return_outputs: bool = False, num_items_in_batch: Optional[dict] = None):
        row_ids = inputs.pop("embedding_row_ids", None)
        if row_ids is not None and self.missing_fills and model.training:
            inputs["embedding_fed"] = self._fed(inputs["embedding_vectors"], row_ids)
        outputs = model(**inputs, **(num_items_in_batch or {}))
        # DDP averages gradients over ranks while the counts are already global: undo that average
        scale = self.args.world_size if (num_items_in_batch and self.args.world_size > 1) else 1
        loss = outputs.loss * scale
        predicts = self.world_model_config.predicts_embeddings
        if model.training:
            if predicts:
                self._add(self._train_sums, "embedding_loss", outputs.embedding_loss.detach() * scale)
            self._add(self._train_sums, "lm_loss", outputs.lm_loss.detach() * scale)
        else:  # evaluation reports corpus-level means: keep sums and counts
            terms = outputs.terms
            sums = {name: getattr(terms, name) for name in ("embedding_sum", "num_targets", "lm_sum", "num_tokens")}
            if predicts:
                sums.update(_squared_errors(inputs, outputs.predicted_embeddings, self.world_model_config))
            for name, value in sums.items():
                self._add(self._eval_sums, name, torch.as_tensor(value, dtype=torch.float32, device=loss.device))
        return (loss, outputs) if return_outputs else loss

    def _fed(self, vectors: torch.Tensor, row_ids: torch.Tensor) -> torch.Tensor:
        """A batch's vectors `[v, W]` with those of each row that has a fill (`missing_fills`) replaced by it. Read
        when the step runs, not when the batch was collated (the DataLoader collates one batch ahead)."""
        fed = vectors.clone()
        for row in torch.unique(row_ids).tolist():
            fill = self.missing_fills.get(row)
            if fill is not None:
                fed[row_ids == row] = fill.to(fed.device, fed.dtype)
        return fed

    @staticmethod
    def _add(sums: dict, name: str, value: torch.Tensor) -> None:
        sums[name] = sums[name] + value.float() if name in sums else value.float()

    def training_step(self, *args, **kwargs) -> torch.Tensor:
        loss = super().training_step(*args, **kwargs)
        finite = torch.isfinite(loss).all()  # stays on the device: read only when logging or saving
        self._loss_finite = finite if self._loss_finite is None else self._loss_finite & finite
        return loss

    def check_finite_loss(self, step: int) -> None:
        """Raise when a training loss since the previous check was NaN or Inf: a diverged run stops before it
        saves or logs anything from the bad steps."""
        if self._loss_finite is not None and not bool(self._loss_finite):
            last_good = newest_complete_checkpoint(self.args.output_dir)
            raise DataError(
                f"the training loss became NaN or Inf between step {self._checked_step + 1} and step {step}; nothing "
                f"from those steps was saved. The last complete checkpoint is {last_good or 'none'}. Lower "
                "`learning_rate`, set `max_grad_norm`, or look at the data with `wmfactory check`.")
        self._loss_finite = None
        self._checked_step = step

    # ---- evaluation -------------------------------------------------------------------------------------------
    def evaluation_loop(self, dataloader, description, prediction_loss_only=None, ignore_keys=None,
                        metric_key_prefix: str = "eval"):
        """The base class's evaluation; on the evaluation split, with `eval_rollout_steps`, `eval_rollout_mse` too
        (before it is logged and ranked by `metric_for_best_model`)."""
        output = super().evaluation_loop(dataloader, description, prediction_loss_only, ignore_keys, metric_key_prefix)
        config = self.world_model_config
        if (config.eval_rollout_steps > 0 and config.predicts_embeddings and metric_key_prefix == "eval"
                and self.eval_rows is not None):
            output.metrics["eval_rollout_mse"] = self._rollout_mse(self.eval_rows, config.eval_rollout_steps)
        return output

    def _rollout_mse(self, rows, steps: int) -> float:
        """The MSE (data units, each vector over its stream's dimensions) of the forecasts of `rollout_windows` on
        this process's share of the evaluation rows, each window generated with the KV cache from the true vectors
        before it and its own forecasts after; the sums gathered over processes."""
        model = self.accelerator.unwrap_model(self.model)
        model.eval()
        windows = []
        for index in range(self.args.process_index, len(rows), self.args.world_size):
            windows.extend(rollout_windows(model, rows[index], steps, self.world_model_config.eval_rollout_windows))
        total = torch.zeros(2, dtype=torch.float64, device=self.args.device)
        size = self.args.per_device_eval_batch_size
        for start in range(0, len(windows), size):
            batch = windows[start: start + size]
            results = generate_rows(model, [cut for cut, _, _ in batch], [given for _, given, _ in batch])
            for (_, _, scored), groups in zip(batch, results):
                for group in groups:
                    if group.group in scored:
                        total[0] += float(((group.predicted - group.target) ** 2).mean(axis=-1).sum())
                        total[1] += len(group.predicted)
        total = self.accelerator.reduce(total[None], "sum")[0] if self.args.world_size > 1 else total
        if total[1] == 0:
            raise DataError("`eval_rollout_steps`: no evaluation row has a target vector to roll out to.")
        return (total[0] / total[1]).item()

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        inputs = prepare_inputs(self, inputs)
        with torch.no_grad(), self.compute_loss_context_manager():
            loss = self.compute_loss(model, inputs)
        return loss.detach(), None, None

    # ---- logging ----------------------------------------------------------------------------------------------
    def log(self, logs: dict[str, float], start_time: Optional[float] = None) -> None:
        if "loss" in logs and self._train_sums:
            steps = max(self._train_steps_since_log, 1)
            for name, value in self._train_sums.items():
                logs[name] = self.accelerator.gather(value[None]).mean().item() / steps
            self._train_sums = {}
            self._train_steps_since_log = 0
            warning = drowned_embedding_loss(logs, self.world_model_config)
            if warning and not self._warned_drowned and self.is_world_process_zero():
                self._warned_drowned = True
                logger.warning(warning)
        if "eval_loss" in logs and self._eval_sums:
            totals = {k: self.accelerator.reduce(v[None].clone(), "sum").item() for k, v in self._eval_sums.items()}
            config = self.world_model_config
            terms = LossTerms(totals["embedding_sum"], totals["num_targets"], totals["lm_sum"], totals["num_tokens"])
            # corpus-level, like its parts (the base class averages per-batch losses)
            loss, embedding_loss, lm_loss = combine_losses(terms, config.embedding_loss_weight, config.lm_loss_weight)
            logs["eval_loss"], logs["eval_lm_loss"] = loss, lm_loss
            if config.predicts_embeddings:
                logs["eval_embedding_loss"] = embedding_loss
                logs["eval_mse"] = totals["squared_error"] / max(totals["num_targets"], 1)
                # against persistence, on the targets that have a vector before them in their row
                logs["eval_skill"] = skill(totals["model_error_after_previous"], totals["persistence_error"])
            self._eval_sums = {}
        super().log(logs, start_time)

    def save_metrics(self, split: str, metrics: dict, combined: bool = True) -> None:
        """`<split>_results.json` (train, calibration) and `all_results.json`, each written whole or not at all."""
        if not self.is_world_process_zero():
            return
        write_json(os.path.join(self.args.output_dir, f"{split}_results.json"), metrics, indent=4, sort_keys=True)
        if combined:
            path = os.path.join(self.args.output_dir, "all_results.json")
            everything = {}
            if os.path.exists(path):
                with open(path, encoding="utf-8") as f:
                    everything = json.load(f)
            write_json(path, {**everything, **metrics}, indent=4, sort_keys=True)


LOSS_BALANCE = 10.0  # the weighted LM loss this many times the weighted embedding loss is warned about


def drowned_embedding_loss(logs: dict[str, float], config) -> Optional[str]:
    """A warning when the weighted LM loss of a logged step is over `LOSS_BALANCE` times the weighted embedding loss:
    the gradient then mostly fits the text (often the same scaffolding in every row) and the head learns little."""
    if not config.predicts_embeddings or config.lm_loss_weight <= 0:
        return None
    lm = config.lm_loss_weight * logs.get("lm_loss", 0.0)
    embedding = config.embedding_loss_weight * logs.get("embedding_loss", 0.0)
    if lm <= LOSS_BALANCE * embedding:
        return None
    ratio = lm / max(embedding, 1e-30)
    advice = "Lower `lm_loss_weight` (0 skips the LM head)"
    if getattr(config, "embedding_norm", "none") == "none":  # normalising helps only where it is off
        advice += (", or normalise the vectors (`embedding_norm: standard`) so that their loss is not tiny by their "
                   "scale alone")
    else:  # the vectors are normalised already: their loss is small because the model predicts them well
        advice += (f"; the vectors are already normalised (`embedding_norm: {config.embedding_norm}`), so a small "
                   "embedding loss means the head fits them well and the text dominates the gradient")
    return (f"The weighted LM loss ({config.lm_loss_weight:g} x {logs['lm_loss']:.4g}) is {ratio:.0f} times the "
            f"weighted embedding loss ({config.embedding_loss_weight:g} x {logs['embedding_loss']:.4g}): "
            f"the embedding loss is drowned. {advice}.")


def _squared_errors(inputs: dict, predicted: torch.Tensor, config) -> dict[str, torch.Tensor]:
    """Sums of per-vector MSE over the targets of a batch (over the dimensions of each vector's stream): the
    model's, and, on the targets whose row has a vector of their stream before them, the model's and the
    persistence forecast's (that previous vector)."""
    vectors, positions, is_target = inputs["embedding_vectors"], inputs["embedding_positions"], inputs[
        "embedding_is_target"]
    streams = inputs["embedding_streams"]  # the collator's: zeros with one stream
    target = vectors[is_target].float()
    dims = torch.tensor(list(config.stream_dims.values()), device=target.device)[streams[is_target]]
    inside = (torch.arange(target.shape[-1], device=target.device)[None, :] < dims[:, None]).float()
    observed = ~torch.isnan(target)  # `missing_values: mask`: the observed entries only
    inside = inside * observed
    target = torch.nan_to_num(target)
    dims = inside.sum(dim=-1).clamp_min(1)

    def errors(forecast: torch.Tensor) -> torch.Tensor:  # [v_target]
        return ((torch.nan_to_num(forecast.float()) - target).pow(2) * inside).sum(dim=-1) / dims

    error = errors(predicted)
    if inputs.get("embedding_rows") is not None:  # packed rows: the previous vector of the same row
        positions = torch.stack([inputs["embedding_rows"], positions[:, 1]], dim=1)
    previous, has_previous = previous_in_streams(vectors, positions, streams)
    previous, has_previous = previous[is_target].float(), has_previous[is_target]
    persistence = errors(previous)
    return {
        "squared_error": error.sum(),
        "model_error_after_previous": error[has_previous].sum(),
        "persistence_error": persistence[has_previous].sum(),
    }


class FiniteLossGuard(TrainerCallback):
    """Checks the loss before every step that logs or saves, and at the last step (add it after every callback
    that may ask for a save, such as the preemption handler)."""

    def __init__(self, trainer: WorldModelTrainer):
        self.trainer = trainer

    def on_step_end(self, args, state, control, **kwargs):
        if control.should_save or control.should_log or state.global_step >= state.max_steps:
            self.trainer.check_finite_loss(state.global_step)
