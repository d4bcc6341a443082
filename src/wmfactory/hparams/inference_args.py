import math
from dataclasses import dataclass, field
from typing import Literal, Optional

from ..extras.errors import ConfigError

EXTRA_BASELINES = ("statsforecast",)  # the values of `baselines`: `eval.statistical` fits them
MAX_SAMPLES = 100_000  # draws per prediction: beyond, the samples alone would fill memory for any real row


@dataclass
class InferenceArguments:
    """Keys of `wmfactory predict`, `eval`, `plan` and `export` (the training keys are accepted beside them)."""

    _argument_group_name = "predict, eval, plan and export"

    predict_mode: Literal["teacher_forced", "rollout"] = field(
        default="teacher_forced",
        metadata={"help": "`teacher_forced`: every target group from the true vectors before it. `rollout`: the "
                          "first `context_groups` groups are given, every later group is generated."},
    )
    context_groups: int = field(
        default=1, metadata={"help": "Groups given to the model before a rollout (predict and eval)."}
    )
    context_length: Optional[int] = field(
        default=None,
        metadata={"help": "`predict` and `eval`: keep at most the last this many groups of each row's history (the "
                          "row itself teacher-forced; the `context_groups` given before a rollout). Default: all "
                          "of it, except that a row longer than the model's positions is cut to its last groups "
                          "that fit, with a warning (the text before the first vector kept; the groups cut away "
                          "are not predicted)."},
    )
    num_samples: int = field(
        default=0,
        metadata={"help": "Draws from the head's distribution per prediction (0: the mean only). `predict` writes "
                          "them as `samples`; `eval` scores them with CRPS, the energy score and interval coverage. "
                          "`seed` makes them reproducible."},
    )
    temperature: Optional[float] = field(
        default=None,
        metadata={"help": "Scales the spread of the draws (default: the model's calibrated temperatures, "
                          "`sampling_temperature` teacher-forced and `horizon_temperatures` in rollouts, else 1)."},
    )
    bank: Optional[str] = field(
        default=None,
        metadata={"help": "`predict`: an output_dir of `wmfactory encode`; each prediction's `top_k` nearest items "
                          "(cosine) are written beside it in predictions.jsonl (decoding by retrieval). `api`: the "
                          "bank `/v1/nearest` searches."},
    )
    top_k: int = field(default=5, metadata={"help": "`predict` with `bank`: neighbours per predicted vector."})
    output_format: Literal["jsonl", "csv", "parquet"] = field(
        default="jsonl",
        metadata={"help": "`predict`: `jsonl` (predictions.jsonl and one .safetensors per group), or `csv` / "
                          "`parquet`: one long table, a line per predicted number, with `mean` and, with "
                          "`num_samples`, one column per `quantile_levels` level (parquet needs pyarrow: "
                          "pip install 'wmfactory[tables]')."},
    )
    quantile_levels: str = field(
        default="0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9",
        metadata={"help": "Levels of the quantiles computed from the draws (`num_samples`): comma-separated or a YAML "
                          "list. `predict --output_format csv|parquet` writes one column per level; `eval` scores "
                          "the weighted quantile loss (WQL) at them."},
    )
    seasonality: int = field(
        default=1,
        metadata={"help": "`eval`: the season m of the seasonal naive baseline (the vector m steps back) and of MASE's "
                          "scale (its in-sample error); 1 is persistence. E.g. 4 for quarterly data, 12 for monthly."},
    )
    baselines: Optional[str] = field(
        default=None,
        metadata={"help": "`eval`: more baselines, comma-separated. `statsforecast`: AutoETS and AutoARIMA "
                          "(`auto_ets`, `auto_arima`) in the rollouts, fitted per dimension on each row's history "
                          "before its rollout, on streams of at most 8 dimensions (pip install "
                          "'wmfactory[forecast]')."},
    )
    plot_rows: int = field(default=4, metadata={"help": "Rows drawn in eval_trajectories.png."})
    export_dir: Optional[str] = field(default=None, metadata={"help": "`export`: where the merged model goes."})
    horizon: int = field(default=15, metadata={"help": "`plan`: predicted vectors (states) planned after each row."})
    goal: Optional[str] = field(
        default=None,
        metadata={"help": "`plan`: an embedding file holding the goal state (one vector); the cost of a plan is the "
                          "weighted squared distance of every predicted state to it, summed over the horizon."},
    )
    goal_weights: Optional[str] = field(
        default=None, metadata={"help": "`plan`: per-dimension weights of the goal distance, comma-separated "
                                        "(default: 1 for every dimension)."},
    )
    goal_stream: Optional[str] = field(
        default=None, metadata={"help": "`plan`: the predicted stream the goal is a state of (default: the only one)."}
    )
    action_stream: Optional[str] = field(
        default=None, metadata={"help": "`plan`: the condition stream to choose (default: the only one)."}
    )
    action_low: str = field(
        default="-1", metadata={"help": "`plan`: lower bound of the actions, one number or one per dimension "
                                        "(comma-separated)."},
    )
    action_high: str = field(default="1", metadata={"help": "`plan`: upper bound of the actions, as `action_low`."})
    plan_method: Literal["cem", "mppi"] = field(
        default="cem", metadata={"help": "`plan`: the cross-entropy method or model-predictive path integral."}
    )
    candidates: int = field(default=128, metadata={"help": "`plan`: action sequences tried per iteration."})
    iterations: int = field(default=3, metadata={"help": "`plan`: refits of the sampling distribution."})
    elites: Optional[int] = field(
        default=None, metadata={"help": "`plan` with cem: the cheapest candidates that refit the distribution "
                                        "(default: one in eight, at most 16)."},
    )
    risk: Literal["mean", "cvar"] = field(
        default="mean", metadata={"help": "`plan` with `num_samples`: score a candidate by the mean cost of its "
                                          "sampled futures, or by the mean of the worst `cvar_alpha` of them."},
    )
    cvar_alpha: float = field(default=0.1, metadata={"help": "`plan` with `risk: cvar`: the worst fraction kept."})

    def __post_init__(self):
        if self.top_k < 1:
            raise ConfigError(f"`top_k` must be at least 1, got {self.top_k}.")
        if isinstance(self.seasonality, bool) or not isinstance(self.seasonality, int) or self.seasonality < 1:
            raise ConfigError(f"`seasonality` must be a positive integer, got {self.seasonality!r}.")
        self.baselines = _baselines(self.baselines)
        if self.context_groups < 0:
            raise ConfigError("`context_groups` must be >= 0.")
        if self.context_length is not None and (isinstance(self.context_length, bool) or self.context_length < 1):
            raise ConfigError(f"`context_length` must be a positive integer, got {self.context_length!r}.")
        levels = self.quantile_levels
        items = levels if isinstance(levels, (list, tuple)) else str(levels).split(",")
        try:
            values = [float(item) for item in items if str(item).strip()]
        except ValueError:
            raise ConfigError(f"`quantile_levels` must be numbers between 0 and 1, got {levels!r}.") from None
        if any(not 0 < v < 1 for v in values) or len(set(values)) != len(values):
            raise ConfigError(f"`quantile_levels` must be distinct numbers strictly between 0 and 1, got {levels!r}.")
        self.quantile_levels = ",".join(str(v) for v in sorted(values))
        if not 0 <= self.num_samples <= MAX_SAMPLES:
            raise ConfigError(f"`num_samples` must be in [0, {MAX_SAMPLES}] (0: the mean only), got {self.num_samples}.")
        if self.temperature is not None and not (self.temperature > 0 and math.isfinite(self.temperature)):
            raise ConfigError(f"`temperature` must be a positive finite number, got {self.temperature}.")

    @property
    def extra_baselines(self) -> tuple[str, ...]:
        """`baselines` as names."""
        return tuple(self.baselines.split(",")) if self.baselines else ()

    @property
    def levels(self) -> list[float]:
        """`quantile_levels` as numbers, ascending."""
        return [float(item) for item in self.quantile_levels.split(",") if item]


def _baselines(value) -> Optional[str]:
    """`baselines` (comma-separated or a YAML list) checked and written comma-separated, each name once."""
    items = value if isinstance(value, (list, tuple)) else str(value or "").split(",")
    names = list(dict.fromkeys(str(item).strip().lower() for item in items if str(item).strip()))
    unknown = [name for name in names if name not in EXTRA_BASELINES]
    if unknown:
        raise ConfigError(f"`baselines` takes {', '.join(EXTRA_BASELINES)}, got {', '.join(unknown)}.")
    return ",".join(names) or None
