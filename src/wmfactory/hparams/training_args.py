from dataclasses import dataclass, field

from transformers import Seq2SeqTrainingArguments


@dataclass
class TrainingArguments(Seq2SeqTrainingArguments):
    """Hugging Face's training arguments; every key of theirs is a wmfactory key.

    `overwrite_output_dir` is kept from LLaMA-Factory (transformers 5 dropped it): when false and `output_dir`
    already holds checkpoints, training resumes from the newest one.
    """

    _argument_group_name = "training: Hugging Face's TrainingArguments"

    overwrite_output_dir: bool = field(
        default=False,
        metadata={"help": "Start afresh in a non-empty output_dir instead of resuming from its last checkpoint."},
    )
