from dataclasses import dataclass, field

from transformers import Seq2SeqTrainingArguments


@dataclass
class TrainingArguments(Seq2SeqTrainingArguments):
    """Hugging Face's training arguments; every key of theirs is a wmfactory key.

    `overwrite_output_dir` is kept from LLaMA-Factory (transformers 5 dropped it): when false and `output_dir`
    already holds checkpoints, training resumes from the newest one. A `metric_for_best_model` ending in `mse` is
    minimised (Hugging Face would maximise it) unless `greater_is_better` is set.
    """

    _argument_group_name = "training: Hugging Face's TrainingArguments"

    overwrite_output_dir: bool = field(
        default=False,
        metadata={"help": "Start afresh in a non-empty output_dir instead of resuming from its last checkpoint."},
    )

    def __post_init__(self):
        # Hugging Face maximises every metric whose name does not end in "loss"; the errors wmfactory's evaluation
        # reports (`eval_mse`, `eval_rollout_mse`) are minimised like losses unless `greater_is_better` says otherwise
        if self.greater_is_better is None and (self.metric_for_best_model or "").endswith("mse"):
            self.greater_is_better = False
        super().__post_init__()
