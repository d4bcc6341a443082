import json
import math
from dataclasses import dataclass, field
from typing import Any, Literal, Optional, Union

from ..extras.errors import ConfigError

DimSpec = Union[int, dict[str, int], None]  # `embedding_dim`: one for every stream, per stream, or inferred
MAX_FILL_STEPS = 1000  # `missing_fill_steps`: each is a forward and backward pass
MAX_REFILLS = 100  # `missing_refills`: each fills every training row with gaps

LOCAL_STEP_HEADS = ("mlp", "linear")  # the heads `frame_step: local` is measured with (and `auto` makes it for)


@dataclass
class WorldModelArguments:
    """The world-model keys. They become the model's configuration (`WorldModelConfig`) as they are, so a trained
    folder remembers them: this dataclass is the one place for their defaults and help."""

    _argument_group_name = "world model: projector, prediction head, losses, targets"

    embedding_dim: Optional[Union[int, str, dict]] = field(
        default=None,
        metadata={"help": "Dimension of the embedding vectors: one number for every stream, or per stream "
                          "(`{s: 12, a: 6}` in YAML, `s=12,a=6` on the command line); default: found in the data. A "
                          "stream is a placeholder key without its trailing digits (m1, m2 -> m)."},
    )
    condition_streams: Optional[str] = field(
        default=None,
        metadata={"help": "Streams that are inputs and never targets (actions, treatments): names or shell patterns, "
                          "comma-separated or a YAML list, e.g. `a` for keys a1, a2, ..."},
    )
    past_streams: Optional[str] = field(
        default=None,
        metadata={"help": "Past-only covariates: streams read in the history (another measurement of each step) that "
                          "are neither predicted nor known for the future, so a rollout past the history leaves them "
                          "out; names or shell patterns as `condition_streams` takes them."},
    )
    projector_type: Literal["mlp", "linear"] = field(
        default="mlp",
        metadata={"help": "Projector embedding_dim -> hidden: `mlp` (Linear-GELU-Linear) or `linear`."},
    )
    prediction_head_type: Literal["mlp", "linear", "mixture", "diffusion", "quantile"] = field(
        default="mlp",
        metadata={"help": "Prediction head hidden -> next vector: `mlp` (Linear-GELU-Linear) or `linear` predict one "
                          "vector; `mixture` (a Gaussian mixture, trained by likelihood), `diffusion` (a denoising "
                          "MLP conditioned on the hidden state) and `quantile` (the quantiles 0.1, ..., 0.9 of each "
                          "dimension, trained by the pinball loss) predict a distribution to sample from."},
    )
    mixture_components: int = field(
        default=8, metadata={"help": "`mixture` head: number of Gaussian components (diagonal covariances)."}
    )
    diffusion_steps: int = field(
        default=20, metadata={"help": "`diffusion` head: denoising steps when sampling (DDIM; training draws "
                                      "continuous noise levels)."}
    )
    calibrate_temperature: bool = field(
        default=True,
        metadata={"help": "`mixture`/`diffusion`/`quantile` heads: after training, choose the sampling temperature whose "
                          "central 90 percent interval best holds the true next vectors of the evaluation split "
                          "(`val_size` or `eval_dataset`; without one, of a tenth of the training rows, held out of "
                          "training: each series' latest windows where rows are windows of series), save it as `sampling_temperature`, and one temperature per rollout horizon band "
                          "(1, 2-3, 4-7, ...) as `horizon_temperatures`."},
    )
    sampling_temperature: float = field(
        default=1.0,
        metadata={"help": "Temperature of sampled predictions when `temperature` is not given at inference (set by "
                          "`calibrate_temperature`)."},
    )
    missing_values: Literal["refuse", "mask"] = field(
        default="refuse",
        metadata={"help": "NaN entries of the vectors: `refuse` (an error naming the row and file) or `mask` "
                          "(missing values: excluded from the loss and from the normalisation statistics; each "
                          "stream's projector reads [z * observed, observed], twice the stream's width, so that a "
                          "missing entry enters as 0 beside an indicator 0; eval scores the observed entries only)."},
    )
    missing_fill_steps: int = field(
        default=50,
        metadata={"help": "`missing_values: mask`, at inference: Adam steps that fill the gaps of a history with what "
                          "the model finds most likely (its own teacher-forced loss of the history, lowered over the "
                          "missing entries alone, from the frame's linear fill; step 0.2 decayed to 0 along a "
                          "cosine); each is a forward and backward pass over the rows with gaps. 0 keeps the linear "
                          "fill. Teacher-forced scores always read the linear fill (it reads only the vectors up to a "
                          "gap), and so does training unless `missing_refills`."},
    )
    missing_refills: int = field(
        default=0,
        metadata={"help": "`missing_values: mask`, in training: how many times, evenly spaced over the training steps, "
                          "the model fills the gaps of every training row with what it finds most likely from the "
                          "whole row (the fill of `missing_fill_steps`); the steps after a refill read the rows with "
                          "those fills, entering as observed (as a history filled at inference does), while the loss "
                          "still scores only the observed entries. 0: training reads the frame's linear fill."},
    )
    embedding_loss_weight: float = field(default=1.0, metadata={"help": "Weight of the embedding loss."})
    lm_loss_weight: float = field(
        default=0.1, metadata={"help": "Weight of the LM loss; 0 skips the LM head entirely."}
    )
    world_model_loss_type: Literal["l2", "l1", "smooth_l1", "cosine"] = field(
        default="l2",
        metadata={"help": "Per-vector embedding error: `l2` (mean squared), `l1` (mean absolute), `smooth_l1` "
                          "(Huber, beta 1) or `cosine` (1 - cosine similarity)."},
    )
    embedding_targets: Literal["next", "assistant", "all"] = field(
        default="next",
        metadata={"help": "Groups the head must predict: `next` (all but the first), `assistant`, or `all`."},
    )
    embedding_norm: Literal["none", "standard", "robust"] = field(
        default="standard",
        metadata={"help": "Per-dimension normalisation fitted on the training split and saved with the model: "
                          "`standard` (mean, std; the default, so that no dimension's scale dominates the loss), "
                          "`robust` (median, 0.7413 IQR, extreme quantiles clipped) or `none`. "
                          "The loss is computed on normalised vectors; predictions come back in data units."},
    )
    predict_residual: Union[bool, str] = field(
        default="ridge",
        metadata={"help": "`ridge` (default): the head predicts a correction to the forecast of the ridge regression "
                          "on the last `ridge_history` vectors, fitted on the training split, in units of the training "
                          "steps' standard deviation; the head's last layer starts at zero, so training starts at the "
                          "ridge forecast (the quality suite's choice, docs/quality.md). `true`: the head predicts the "
                          "step from the previous vector, in the same units (zero output = persistence). `false`: the "
                          "head predicts the vector itself."},
    )
    embedding_noise_std: float = field(
        default=0.0, metadata={"help": "Gaussian noise added to input vectors (normalised units) in training."}
    )
    scheduled_sampling_prob: float = field(
        default=0.0,
        metadata={"help": "Probability that a target vector's input is replaced by the model's own detached "
                          "prediction from a first pass (costs a second forward pass)."},
    )
    unroll_steps: int = field(
        default=1,
        metadata={"help": "Multi-step training: k passes per step, pass j feeding the predictions of pass j - 1 at "
                          "every target slot (with their gradient), the embedding loss averaged over the k passes "
                          "(costs k forward passes; deterministic and mixture heads)."},
    )
    eval_rollout_steps: int = field(
        default=0,
        metadata={"help": "n > 0: evaluation during training also reports `eval_rollout_mse`, the MSE (data units) of "
                          "rollouts of n target groups generated with the KV cache, each vector forecast from the "
                          "model's own forecasts before it in the window (up to `eval_rollout_windows` windows per "
                          "evaluation row, tiling its targets). `metric_for_best_model: eval_rollout_mse` keeps the "
                          "checkpoint whose rollouts are best."},
    )
    eval_rollout_windows: int = field(
        default=8,
        metadata={"help": "The most rollout windows per evaluation row for `eval_rollout_steps` (spread evenly along "
                          "a longer row)."},
    )
    ridge_history: int = field(
        default=3, metadata={"help": "The longest history of the ridge regressions fitted on the training split (eval's "
                                     "baseline, and the frame of `predict_residual: ridge`): with `ridge_select`, "
                                     "each uses the last j <= `ridge_history` vectors, j chosen on held-out rows."}
    )
    frame_form: Literal["auto", "levels", "increments"] = field(
        default="auto",
        metadata={"help": "The ridge of the frame of `predict_residual: ridge`: `levels` (the last vectors and an "
                          "intercept, eval's ridge baseline too), `increments` (the last vector plus a ridge on the "
                          "steps between the last vectors, no intercept: exactly the last vector on a history that "
                          "holds still, what MASE rewards on series that stop moving) or `auto` (the default: both "
                          "fitted, the one whose 8-step rollouts on the held-out training rows have the smaller "
                          "scale-free error kept; levels with `ridge_select: false`)."},
    )
    frame_step: Literal["auto", "global", "local"] = field(
        default="auto",
        metadata={"help": "The unit of the head's step from the ridge frame: `global` (the training steps' standard "
                          "deviation) or `local` (the mean absolute step of the vectors the frame reads, so that a "
                          "history that holds still is forecast by the frame alone; `mlp` or `linear` head). `auto` "
                          "(the default): local with the mlp and linear heads, global with the others."},
    )
    ridge_select: bool = field(
        default=True,
        metadata={"help": "Choose each ridge regression's history (1..`ridge_history`) and penalty (1e-3..10) by its "
                          "error on every fifth training row (with fewer than five rows, the last fifth of each row), "
                          "then refit it on all of them with that choice. `false`: history `ridge_history` and "
                          "penalty `ridge_lambda`."},
    )
    ridge_lambda: float = field(
        default=1e-3, metadata={"help": "Ridge penalty with `ridge_select: false`, per training step, on standardised "
                                        "features."}
    )

    def __post_init__(self):
        self.embedding_dim = parse_dim_spec(self.embedding_dim)
        patterns = parse_patterns(self.condition_streams)
        self.condition_streams = ",".join(patterns) or None
        past = parse_patterns(self.past_streams)
        self.past_streams = ",".join(past) or None
        both = sorted(set(patterns) & set(past))
        if both:
            raise ConfigError(f"{both} are in both `condition_streams` and `past_streams`: a stream is given for the "
                              "future (a condition) or seen in the history only (past), not both.")
        if self.embedding_loss_weight < 0 or self.lm_loss_weight < 0:
            raise ConfigError("`embedding_loss_weight` and `lm_loss_weight` must be >= 0.")
        if isinstance(self.predict_residual, str):
            value = self.predict_residual.strip().lower()
            if value not in ("true", "false", "ridge"):
                raise ConfigError(f"`predict_residual` must be true, false or ridge, got '{self.predict_residual}'.")
            self.predict_residual = "ridge" if value == "ridge" else value == "true"
        if self.unroll_steps < 1 or self.eval_rollout_windows < 1:
            raise ConfigError("`unroll_steps` and `eval_rollout_windows` must be at least 1.")
        if self.eval_rollout_steps < 0:
            raise ConfigError("`eval_rollout_steps` must be 0 (off) or a number of target groups to roll out.")
        if not 0 <= self.scheduled_sampling_prob <= 1:
            raise ConfigError("`scheduled_sampling_prob` must be in [0, 1].")
        if self.mixture_components < 1 or self.diffusion_steps < 1:
            raise ConfigError("`mixture_components` and `diffusion_steps` must be at least 1.")
        for key, most in (("mixture_components", 1024), ("diffusion_steps", 10_000)):  # before any allocation
            if getattr(self, key) > most:
                raise ConfigError(f"`{key}` must be at most {most}, got {getattr(self, key)}.")
        if not (self.sampling_temperature > 0 and math.isfinite(self.sampling_temperature)):
            raise ConfigError(f"`sampling_temperature` must be a positive finite number, got {self.sampling_temperature}.")
        if self.missing_values not in ("refuse", "mask"):
            raise ConfigError(f"`missing_values` must be refuse or mask, got '{self.missing_values}'.")
        if type(self.missing_fill_steps) is not int or not 0 <= self.missing_fill_steps <= MAX_FILL_STEPS:
            raise ConfigError(f"`missing_fill_steps` must be an integer from 0 to {MAX_FILL_STEPS}, got "
                              f"{self.missing_fill_steps!r}.")
        if type(self.missing_refills) is not int or not 0 <= self.missing_refills <= MAX_REFILLS:
            raise ConfigError(f"`missing_refills` must be an integer from 0 to {MAX_REFILLS}, got "
                              f"{self.missing_refills!r}.")
        if self.missing_refills and (self.missing_values != "mask" or self.missing_fill_steps == 0):
            raise ConfigError("`missing_refills` fills the gaps of the training rows with the model's fill: it needs "
                              "`missing_values: mask` and `missing_fill_steps` above 0.")
        if self.missing_values == "mask" and self.prediction_head_type == "diffusion":
            raise ConfigError("`missing_values: mask` needs a head whose loss can leave out single entries (mlp, "
                              "linear, mixture or quantile); the diffusion head denoises whole vectors.")
        if self.frame_form not in ("auto", "levels", "increments") or self.frame_step not in ("auto", "global",
                                                                                                "local"):
            raise ConfigError(f"`frame_form` must be auto, levels or increments and `frame_step` auto, global or "
                              f"local, got '{self.frame_form}' and '{self.frame_step}'.")
        explicit = {self.frame_form, self.frame_step} - {"auto", "levels", "global"}
        if explicit and self.predict_residual != "ridge":
            raise ConfigError("`frame_form` and `frame_step` shape the ridge frame: they need `predict_residual: "
                              "ridge`.")
        if self.frame_step == "local" and self.prediction_head_type not in LOCAL_STEP_HEADS:
            raise ConfigError(f"`frame_step: local` is measured with the deterministic heads (mlp, linear) only; the "
                              f"`{self.prediction_head_type}` head's spread is in the same unit: use `frame_step: "
                              "global` with it.")
        if self.embedding_noise_std < 0 or self.ridge_history < 1 or self.ridge_lambda < 0:
            raise ConfigError("`embedding_noise_std` and `ridge_lambda` must be >= 0, `ridge_history` >= 1.")


def parse_dim_spec(value: Any) -> DimSpec:
    """`embedding_dim` as given in YAML or on the command line: a number, a mapping (`{s: 12, a: 6}`, JSON, or
    `s=12,a=6`), or None."""
    if value is None or isinstance(value, bool):
        if isinstance(value, bool):
            raise ConfigError(f"`embedding_dim` must be a positive integer or a mapping stream -> dimension, got "
                              f"{value!r}.")
        return None
    if isinstance(value, str):
        text = value.strip()
        if text.lower() in ("", "none", "null"):
            return None
        if text.lstrip("+").isdigit():
            value = int(text)
        elif text.startswith("{"):
            try:
                pairs = json.loads(text, object_pairs_hook=list)
            except (ValueError, RecursionError):
                raise ConfigError(f"`embedding_dim` '{value}' is not valid JSON.") from None
            value = _unique_streams(pairs, value) if isinstance(pairs, list) and all(
                isinstance(p, tuple) for p in pairs) else pairs
        else:
            try:
                pairs = [tuple(item.split("=", 1)) for item in text.split(",") if item.strip()]
                if any(len(pair) != 2 for pair in pairs):
                    raise ValueError
            except ValueError:
                raise ConfigError(f"`embedding_dim` must be a number or `stream=dim,...`, got '{value}'.") from None
            value = _unique_streams(pairs, value)
    if isinstance(value, dict):
        dims = {}
        for stream, dim in value.items():
            try:
                number = int(str(dim).strip())
            except ValueError:
                number = 0
            if number <= 0:
                raise ConfigError(f"`embedding_dim` for stream '{stream}' must be a positive integer, got {dim!r}.")
            dims[str(stream).strip()] = number
        return dims
    if isinstance(value, float) and value == int(value):
        value = int(value)
    if not isinstance(value, int) or value <= 0:
        raise ConfigError(f"`embedding_dim` must be a positive integer or a mapping stream -> dimension, got "
                          f"{value!r}.")
    return value


def _unique_streams(pairs: list[tuple], given: str) -> dict:
    """`[(stream, dim), ...]` -> a dict; a stream given twice (`s=2,s=3`) is refused rather than the last kept."""
    dims: dict = {}
    for stream, dim in pairs:
        name = str(stream).strip()
        if name in dims:
            raise ConfigError(f"`embedding_dim` gives stream '{name}' twice in '{given}': give each stream once.")
        dims[name] = dim
    return dims


def parse_patterns(value: Any) -> tuple[str, ...]:
    """`condition_streams`: a list or a comma-separated string of stream names or shell patterns (`a*`)."""
    if value is None:
        return ()
    items = value if isinstance(value, (list, tuple)) else str(value).split(",")
    return tuple(str(item).strip() for item in items if str(item).strip())


def resolve_frame(arguments: "WorldModelArguments") -> tuple[str, str]:
    """What `frame_form` and `frame_step` mean for a new model (`auto` resolved; a saved model keeps the result):
    without `predict_residual: ridge` there is no frame (levels, global); `frame_form: auto` needs the held-out rows
    of `ridge_select` to choose on (levels without); `frame_step: auto` is local with the mlp and linear heads, whose
    step it was measured with, and global with the distributional heads."""
    if arguments.predict_residual != "ridge":
        return "levels", "global"
    form = "levels" if arguments.frame_form == "auto" and not arguments.ridge_select else arguments.frame_form
    step = arguments.frame_step
    if step == "auto":
        step = "local" if arguments.prediction_head_type in LOCAL_STEP_HEADS else "global"
    return form, step
