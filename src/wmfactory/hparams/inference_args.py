from dataclasses import dataclass, field
from typing import Literal, Optional

from ..extras.errors import ConfigError


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
        if self.context_groups < 0:
            raise ConfigError("`context_groups` must be >= 0.")
        if self.num_samples < 0 or (self.temperature is not None and not self.temperature > 0):
            raise ConfigError("`num_samples` must be >= 0 and `temperature` > 0.")
