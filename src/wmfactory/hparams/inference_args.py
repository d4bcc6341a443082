import math
from dataclasses import dataclass, field
from typing import Literal, Optional

from ..extras.errors import ConfigError

MAX_SAMPLES = 100_000  # draws per prediction: beyond, the samples alone would fill memory for any real row


@dataclass
class InferenceArguments:
    """Keys of `wmfactory predict`, `eval` and `export` (the training keys are accepted beside them)."""

    _argument_group_name = "predict, eval and export"

    predict_mode: Literal["teacher_forced", "rollout"] = field(
        default="teacher_forced",
        metadata={"help": "`teacher_forced`: every target group from the true vectors before it. `rollout`: the "
                          "first `context_groups` groups are given, every later group is generated."},
    )
    context_groups: int = field(
        default=1, metadata={"help": "Groups given to the model before a rollout (predict and eval)."}
    )
    num_samples: int = field(
        default=0,
        metadata={"help": "Draws from the head's distribution per prediction (0: the mean only). `predict` writes "
                          "them as `samples`; `eval` scores them with CRPS, the energy score and interval coverage. "
                          "`seed` makes them reproducible."},
    )
    temperature: Optional[float] = field(
        default=None,
        metadata={"help": "Scales the spread of the draws (default: the model's `sampling_temperature`, calibrated "
                          "after training on the evaluation split, else 1)."},
    )
    bank: Optional[str] = field(
        default=None,
        metadata={"help": "`predict`: an output_dir of `wmfactory encode`; each prediction's `top_k` nearest items "
                          "(cosine) are written beside it in predictions.jsonl (decoding by retrieval)."},
    )
    top_k: int = field(default=5, metadata={"help": "`predict` with `bank`: neighbours per predicted vector."})
    plot_rows: int = field(default=4, metadata={"help": "Rows drawn in eval_trajectories.png."})
    export_dir: Optional[str] = field(default=None, metadata={"help": "`export`: where the merged model goes."})

    def __post_init__(self):
        if self.top_k < 1:
            raise ConfigError(f"`top_k` must be at least 1, got {self.top_k}.")
        if self.context_groups < 0:
            raise ConfigError("`context_groups` must be >= 0.")
        if not 0 <= self.num_samples <= MAX_SAMPLES:
            raise ConfigError(f"`num_samples` must be in [0, {MAX_SAMPLES}] (0: the mean only), got {self.num_samples}.")
        if self.temperature is not None and not (self.temperature > 0 and math.isfinite(self.temperature)):
            raise ConfigError(f"`temperature` must be a positive finite number, got {self.temperature}.")
