"""The world-model stage: tokenizer -> template -> dataset -> model -> statistics -> fine-tuning setup -> collator ->
trainer -> train -> save -> plot."""

import math
import os
from typing import Optional

import numpy as np
import torch
from transformers import ProgressCallback, TrainerCallback
from transformers.trainer_utils import IntervalStrategy, SaveStrategy
from transformers.integrations import SwanLabCallback

from ...data import WorldModelDataCollator, get_dataset, get_template
from ...data.loader import rows_with_targets, split_validation
from ...data.collator import collator_view
from ...data.streams import conditions_never_followed, input_patterns, kind_patterns, resolve_streams
from ...hparams.world_model_args import parse_patterns
from ...eval.plots import plot_loss
from ...extras.compat import swanlab_callback
from ...extras.errors import ConfigError, DataError
from ...extras.logging import get_logger
from ...hparams import TrainArgs
from ...hparams.parser import WM_MIN_STEPS, WM_UNROLL_STEPS, WM_VALIDATION
from ...model import build_world_model, load_tokenizer, setup_finetuning
from ...model.legacy import upgrade_checkpoint
from ..callbacks import LogFriendlyProgressCallback, WorldModelConfigCallback
from ..checkpoints import checkpoint_step
from ..preemption import PreemptionCallback
from .calibration import (
    LEVELS,
    TEMPERATURES,
    calibrate_horizons,
    calibration_split,
    choose_temperature,
    coverage_by_temperature,
)
from .refill import MissingRefill
from .trainer import FiniteLossGuard, WorldModelTrainer

logger = get_logger(__name__)


def run_wm(args: TrainArgs, callbacks: Optional[list[TrainerCallback]] = None) -> WorldModelTrainer:
    training_args = args.training
    tokenizer = load_tokenizer(args.model)
    template = get_template(args.data.template, tokenizer)
    dataset_module = get_dataset(template, tokenizer, args.model, args.data, training_args, args.world_model)
    if "validation" in args.data_defaults:
        _default_validation(args, dataset_module)
    streams = resolve_streams(dataset_module.stream_dims, args.world_model.embedding_dim,
                              kind_patterns(args.world_model),
                              needs_target=args.world_model.embedding_loss_weight > 0)
    if training_args.eval_strategy != "no" and dataset_module.eval_dataset is None:
        raise DataError(f"`eval_strategy` is '{training_args.eval_strategy.value}' but there is no evaluation data: "
                        "set `val_size` or `eval_dataset`.")
    if training_args.do_train and args.world_model.embedding_loss_weight > 0:
        _check_targets(dataset_module.train_dataset, args)
        unused = conditions_never_followed(dataset_module.train_dataset, parse_patterns(args.world_model.condition_streams),
                                           input_patterns(args.world_model))
        if unused:
            raise DataError(f"`condition_streams`: stream(s) {unused} are never followed by a vector of a predicted "
                            "stream in any training row, so they would condition no prediction; place each condition "
                            "before the state it acts on (e.g. <s1><a1><s2>), or drop it from `condition_streams`.")
    world_model = _build_world_model(args, streams)
    calibration_rows = dataset_module.eval_dataset
    if (training_args.do_train and args.world_model.calibrate_temperature and calibration_rows is None
            and _is_distributional(world_model) and len(dataset_module.train_dataset) >= 2):
        train_rows, calibration_rows, held, how = calibration_split(dataset_module.train_dataset)
        dataset_module.train_dataset = train_rows
        logger.info(f"Calibration: {how}, to calibrate the sampling temperatures of the distributional head; the "
                    "model trains on the others. Set `val_size` or `eval_dataset` to choose the rows, or "
                    "`calibrate_temperature: false` to train on every row.")
    if training_args.do_train and not args.model.adapter_name_or_path:
        config = world_model.config
        for name in streams:
            reads_conditions = config.frame_conditions and not config.is_condition(name)
            statistics = world_model.stream_part("statistics", name)
            statistics.fit(
                VectorStreams(dataset_module.train_dataset, name), args.world_model.embedding_norm,
                args.world_model.ridge_lambda, seed=training_args.seed,
                conditions=ConditionHistories(dataset_module.train_dataset, name, config.frame_conditions,
                                              config.ridge_history) if reads_conditions else None,
                select=args.world_model.ridge_select)
            if statistics.choice and not config.is_condition(name):
                config.ridge_choice[name] = statistics.choice
                logger.info(f"Ridge regression of stream '{name}': " + ", ".join(
                    f"{key} {value:g}" if isinstance(value, float) else f"{key} {value}"
                    for key, value in statistics.choice.items()))
    model = setup_finetuning(world_model, args.model, args.finetuning)
    if model is not world_model:  # PEFT saves the adapter, not the world model's config.json: write it beside
        callbacks = list(callbacks or []) + [WorldModelConfigCallback(world_model.config)]
    collator = WorldModelDataCollator(pad_token_id=tokenizer.pad_token_id,
                                      embedding_dim=world_model.config.embedding_dim, streams=list(streams),
                                      pack_length=args.data.cutoff_len if args.data.packing else None)
    if "length" in args.data_defaults and training_args.do_train:
        _default_length(training_args, len(dataset_module.train_dataset))
    trainer = WorldModelTrainer(
        model=model,
        args=training_args,
        data_collator=collator,
        train_dataset=collator_view(dataset_module.train_dataset),
        eval_dataset=collator_view(dataset_module.eval_dataset),
        eval_rows=dataset_module.eval_dataset,
        processing_class=tokenizer,
        callbacks=callbacks,
    )

    if trainer.pop_callback(ProgressCallback) is not None:  # present unless `disable_tqdm`
        trainer.add_callback(LogFriendlyProgressCallback)
    if trainer.pop_callback(SwanLabCallback) is not None:  # `report_to` names swanlab (or all)
        trainer.add_callback(swanlab_callback())
    if training_args.do_train:
        preemption = PreemptionCallback()
        trainer.add_callback(preemption)
        trainer.add_callback(FiniteLossGuard(trainer))
        if args.world_model.missing_refills:
            trainer.add_callback(_missing_refill(trainer, args, dataset_module.train_dataset))
        resumed_step = checkpoint_step(training_args.resume_from_checkpoint)
        if training_args.resume_from_checkpoint:  # one process at a time: the first rewrites, the others find it done
            with training_args.main_process_first(local=False, desc="checkpoint layout"):
                upgrade_checkpoint(world_model, training_args.resume_from_checkpoint)
        start = _evaluate_start(trainer, world_model, resumed=training_args.resume_from_checkpoint is not None)
        result = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
        if resumed_step and trainer.state.global_step <= resumed_step:  # nothing left to train: say so, save nothing
            raise ConfigError(
                f"'{training_args.output_dir}' already holds a finished run: its checkpoint "
                f"'{training_args.resume_from_checkpoint}' is at step {resumed_step} of {trainer.state.max_steps}. "
                "Set `overwrite_output_dir: true` to train again from the start, or raise `max_steps` or "
                "`num_train_epochs` to train further.")
        if preemption.stopped:
            checkpoint = os.path.join(training_args.output_dir, f"checkpoint-{trainer.state.global_step}")
            logger.warning(f"Stopped by {preemption.signal_name} after step {trainer.state.global_step}: checkpoint "
                           f"saved at {checkpoint}. Run the same command again to resume from it.")
            return trainer
        if start is not None:
            result.metrics.update(_keep_start_if_better(trainer, *start))
        if args.world_model.calibrate_temperature and _is_distributional(world_model):
            _calibrate(trainer, world_model, calibration_rows)
        trainer.save_model()
        if trainer.args.should_save:
            world_model.config.save_pretrained(training_args.output_dir)
        trainer.log_metrics("train", result.metrics)
        trainer.save_metrics("train", result.metrics)
        trainer.save_state()
        if trainer.is_world_process_zero() and args.finetuning.plot_loss:
            predicts = world_model.config.predicts_embeddings
            keys = ("loss",) + (("lm_loss",) if world_model.config.lm_loss_weight > 0 else ()) + (
                ("embedding_loss",) if predicts else ())
            if dataset_module.eval_dataset is not None:
                keys += ("eval_loss", "eval_mse", "eval_skill") if predicts else ("eval_loss",)
                keys += ("eval_rollout_mse",) if predicts and world_model.config.eval_rollout_steps > 0 else ()
            plot_loss(training_args.output_dir, keys)

    if training_args.do_eval and dataset_module.eval_dataset is not None:
        metrics = trainer.evaluate(metric_key_prefix="eval")
        trainer.log_metrics("eval", metrics)
        trainer.save_metrics("eval", metrics)
    return trainer


def _missing_refill(trainer: WorldModelTrainer, args: TrainArgs, rows) -> MissingRefill:
    if trainer.sharded:
        raise ConfigError("`missing_refills` fills the training rows on each process with its whole weights; FSDP and "
                          "DeepSpeed ZeRO-3 shard them. Train without it, or use DDP or ZeRO-2.")
    return MissingRefill(trainer, rows, args.world_model.missing_refills, args.training.resume_from_checkpoint)


MIN_DEFAULT_VALIDATION_ROWS = 50  # fewer training rows: no evaluation split unless asked for


def _default_validation(args: TrainArgs, dataset_module) -> None:
    """`stage: wm` without any of the keys that choose evaluation and checkpoints (`parser.VALIDATION_KEYS`): hold
    out `val_size` 0.1 of the training rows (each series' latest windows where the rows name them) and keep the
    checkpoint whose rollouts of `eval_rollout_steps` groups are best on them, evaluating and saving at every tenth
    of the run; the model before training (the frame's forecast) is a candidate too (`_evaluate_start`)."""
    training, train = args.training, dataset_module.train_dataset
    if (not training.do_train or dataset_module.eval_dataset is not None or train is None
            or args.world_model.embedding_loss_weight == 0):
        return
    if len(train) < MIN_DEFAULT_VALIDATION_ROWS:
        logger.info(f"No evaluation split: {len(train)} training rows, fewer than {MIN_DEFAULT_VALIDATION_ROWS} "
                    "(set `val_size` to hold some out); the last checkpoint is kept.")
        return
    dataset_module.train_dataset, dataset_module.eval_dataset = split_validation(
        train, WM_VALIDATION["val_size"], training.seed)
    training.eval_strategy, training.save_strategy = IntervalStrategy.STEPS, SaveStrategy.STEPS
    training.eval_steps = training.save_steps = WM_VALIDATION["eval_steps"]
    training.do_eval = training.load_best_model_at_end = True
    training.metric_for_best_model, training.greater_is_better = WM_VALIDATION["metric_for_best_model"], False
    if training.save_total_limit is None:
        training.save_total_limit = WM_VALIDATION["save_total_limit"]
    logger.info(f"Validation: {len(dataset_module.eval_dataset)} of the {len(train)} training rows held out; the "
                f"checkpoint whose rollouts of {args.world_model.eval_rollout_steps} steps are best on them is kept "
                "(set `val_size`, `eval_dataset` or `save_strategy` to choose otherwise).")


def _default_length(training, rows: int) -> None:
    """`stage: wm` without `max_steps` and `num_train_epochs`: `num_train_epochs` (3) epochs, or `WM_MIN_STEPS`
    steps where they are fewer."""
    per_step = training.per_device_train_batch_size * training.gradient_accumulation_steps * training.world_size
    steps = math.ceil(rows / per_step) * training.num_train_epochs
    if steps < WM_MIN_STEPS:
        training.max_steps = WM_MIN_STEPS
        logger.info(f"Training for {WM_MIN_STEPS} steps: {training.num_train_epochs:g} epochs of {rows} rows would be "
                    f"{steps:g} (set `max_steps` or `num_train_epochs` to choose).")


def _evaluate_start(trainer: WorldModelTrainer, world_model, resumed: bool) -> Optional[tuple[str, float, dict]]:
    """With `load_best_model_at_end` and a ridge frame, the model before training (which forecasts exactly what the
    ridge regressions forecast) is a candidate too: its score on the evaluation split and its trainable weights
    (key, value, weights); None where it does not apply (another frame, a resumed run, sharded weights)."""
    targs = trainer.args
    if (not world_model.config.ridge_frame or not targs.load_best_model_at_end or resumed
            or trainer.eval_dataset is None or trainer.is_deepspeed_enabled or trainer.is_fsdp_enabled):
        return None
    metric = targs.metric_for_best_model or "loss"
    key = metric if metric.startswith("eval_") else f"eval_{metric}"
    value = trainer.evaluate()[key]
    weights = {name: p.detach().clone() for name, p in trainer.model.named_parameters() if p.requires_grad}
    return key, value, weights


def _keep_start_if_better(trainer: WorldModelTrainer, key: str, value: float, weights: dict) -> dict[str, float]:
    """After `load_best_model_at_end`: when no checkpoint scored better than the model before training, put its
    weights back (the ridge forecast: training did not beat it on the evaluation split), and say so in the trainer's
    state (trainer_state.json): the best is then step 0, saved as the run folder itself, with the start's score."""
    state = trainer.state
    best = state.best_metric
    better = best is None or (value > best if trainer.args.greater_is_better else value < best)
    if better:
        with torch.no_grad():
            for name, p in trainer.model.named_parameters():
                if name in weights:
                    p.copy_(weights[name])
        state.best_metric, state.best_global_step = value, 0
        state.best_model_checkpoint = trainer.args.output_dir
        logger.warning(f"No checkpoint beat the model before training on the evaluation split ({key} {value:.6g}, "
                       f"best checkpoint {best if best is None else f'{best:.6g}'}): the model before training, "
                       "which forecasts what the ridge regressions forecast, is kept.")
    return {f"start_{key}": value, "kept_start": float(better)}


def _build_world_model(args: TrainArgs, streams):
    """The world model of the run. Under the stage wm default of `unroll_steps` ("unroll" in `data_defaults`) it is
    built with 1 and unrolls `WM_UNROLL_STEPS` where every predicted stream's head has a cheap mean (a head whose
    mean is a Monte-Carlo average, as `diffusion`'s, cannot feed it back with its gradient)."""
    defaulted = "unroll" in args.data_defaults
    if defaulted:
        args.world_model.unroll_steps = 1
    world_model = build_world_model(args.model, args.world_model, streams, args.finetuning.finetuning_type,
                                    args.data.template)
    if defaulted and world_model.can_unroll:
        world_model.config.unroll_steps = args.world_model.unroll_steps = WM_UNROLL_STEPS
    elif defaulted:
        logger.info(f"`unroll_steps` stays 1 (the stage wm default is {WM_UNROLL_STEPS}): the "
                    f"`{world_model.config.prediction_head_type}` head's mean is a Monte-Carlo average; set "
                    "`scheduled_sampling_prob` to train it on its own rollouts.")
    return world_model


def _calibrate(trainer: WorldModelTrainer, world_model, rows) -> None:
    """Choose `sampling_temperature` and the temperature of each rollout horizon band on `rows` (the evaluation
    split, or the training rows held out for it; see calibration.py) and save the coverage per temperature as
    calibration_results.json."""
    if rows is None:
        logger.warning("The sampling temperature stays 1.0 (not calibrated): set `val_size` or `eval_dataset` to "
                       "calibrate the intervals of the distributional head, or `calibrate_temperature: false`.")
        return
    if trainer.is_fsdp_enabled:
        logger.warning("The sampling temperature stays 1.0: calibration does not run under FSDP (set "
                       "`sampling_temperature` by hand, or train without FSDP).")
        return
    was_training = world_model.training
    world_model.eval()
    coverage, values = coverage_by_temperature(world_model, trainer.get_eval_dataloader(collator_view(rows)),
                                               seed=trainer.args.seed, reduce=trainer.accelerator.reduce)
    if values == 0:
        world_model.train(was_training)
        logger.warning("The sampling temperature stays 1.0: the evaluation split holds no target vector.")
        return
    chosen = choose_temperature(coverage)
    index, one = int(np.argmin(np.abs(TEMPERATURES - chosen))), int(np.argmin(np.abs(TEMPERATURES - 1.0)))
    world_model.config.sampling_temperature = round(chosen, 4)
    holds = {row: " / ".join(f"{share:.2f}" for share in coverage[row]) for row in (index, one)}
    logger.info(f"Calibrated sampling temperature: {chosen:.3g} (central 50% / 90% intervals hold {holds[index]} "
                f"of the evaluation split's values; at temperature 1: {holds[one]}).")
    bands, by_band = calibrate_horizons(world_model, list(rows), chosen, seed=trainer.args.seed)
    world_model.train(was_training)
    if len(bands) > 1:
        logger.info("Calibrated temperature per rollout horizon band: " + ", ".join(
            f"{band} -> {report['temperature']:.3g}" for band, report in {"1": {"temperature": bands[0]},
                                                                           **by_band}.items()))
    metrics = {"sampling_temperature": round(chosen, 4), "values": values, "horizon_temperatures": bands,
               "horizon_bands": by_band}
    for row, temperature in enumerate(TEMPERATURES):
        for level, share in zip(LEVELS, coverage[row]):
            metrics[f"coverage_{level}_at_{temperature:.3g}"] = float(share)
    trainer.save_metrics("calibration", metrics, combined=False)


def _check_targets(train_dataset, args: TrainArgs) -> None:
    """A world-model run whose rows hold no target vector would train the LM loss alone under `stage: wm`."""
    with_targets, rows = rows_with_targets(train_dataset), len(train_dataset)
    where = f"`embedding_targets: {args.world_model.embedding_targets}`, `cutoff_len: {args.data.cutoff_len}`"
    if with_targets == 0:
        raise DataError(f"no training row holds a target vector ({where}): the prediction head would learn nothing. "
                        "See what the rows hold with `wmfactory check`; raise `cutoff_len` or choose another "
                        "`embedding_targets`.")
    if with_targets < rows:
        logger.warning(f"{rows - with_targets} of {rows} training rows hold no target vector ({where}; e.g. a "
                       "single group under `next`, or groups cut by cutoff_len): they train the LM loss only.")


def _is_distributional(world_model) -> bool:
    return any(world_model.stream_part("prediction_head", name).is_distributional
               for name in world_model.config.predicted_streams)


class ConditionHistories:
    """For each row of a preprocessed dataset, the condition history of each vector of `stream`: the last k vectors
    of each condition stream `(name, d)` before it, most recent first, zeros where there are fewer, side by side
    `[n, k, sum d]` (what the ridge frame reads; re-iterable, in the rows' order)."""

    def __init__(self, dataset, stream: str, conditions: list[tuple[str, int]], k: int):
        self.stream, self.conditions, self.k = stream, conditions, k
        self.dataset = dataset.select_columns(["embedding_vectors", "embedding_streams"])

    def __iter__(self):
        width = sum(d for _, d in self.conditions)
        for batch in self.dataset.iter(batch_size=1000):
            for vectors, names in zip(batch["embedding_vectors"], batch["embedding_streams"]):
                recent = {name: [] for name, _ in self.conditions}
                rows = []
                for vector, name in zip(vectors, names):
                    if name == self.stream:
                        row, start = np.zeros((self.k, width), dtype=np.float32), 0
                        for condition, d in self.conditions:
                            for back, earlier in enumerate(recent[condition][::-1][: self.k]):
                                row[back, start:start + d] = earlier
                            start += d
                        rows.append(row)
                    elif name in recent:
                        recent[name].append(np.asarray(vector, dtype=np.float32)[: dict(self.conditions)[name]])
                yield np.asarray(rows, dtype=np.float32).reshape(len(rows), self.k, width)


class VectorStreams:
    """The vectors `[v, d]` of every row of a preprocessed dataset (those of `stream` only, when given), read in
    batches (re-iterable)."""

    def __init__(self, dataset, stream: Optional[str] = None):
        self.stream = stream
        self.dataset = dataset.select_columns(["embedding_vectors"] + (["embedding_streams"] if stream else []))

    def __iter__(self):
        for batch in self.dataset.iter(batch_size=1000):
            for i, vectors in enumerate(batch["embedding_vectors"]):
                if self.stream is not None:
                    names = batch["embedding_streams"][i]
                    vectors = [v for v, name in zip(vectors, names) if name == self.stream]
                yield np.asarray(vectors, dtype=np.float32)
