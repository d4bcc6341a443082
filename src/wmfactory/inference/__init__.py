"""The inference engine, a layer above `model/`: rows encoded once with the decoder's KV cache and continued,
forked into samples and candidates (`engine`), teacher-forced and generated predictions on known rows
(`generation`), what a row looks like to them (`rows`), the incremental decoder (`decoder`), and planning by
model-predictive control on top (`planning`). `WorldModel`'s row methods (`rollout`, `predict_next`, `plan`) are thin
wrappers over these."""

from .engine import Continuation, Session, continue_rows, continue_stream, emission_order
from .generation import generate_groups, generate_rows, teacher_forced, teacher_forced_rows
from .rows import (
    GroupPrediction,
    Sampling,
    context_features,
    rollout_windows,
    row_batches,
    stream_sequence,
    through_last_vector,
    vector_stream,
)

__all__ = [
    "Continuation", "GroupPrediction", "Sampling", "Session", "context_features", "continue_rows", "continue_stream",
    "emission_order", "generate_groups", "generate_rows", "rollout_windows", "row_batches", "stream_sequence",
    "teacher_forced", "teacher_forced_rows", "through_last_vector", "vector_stream",
]
