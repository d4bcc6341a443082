from .engine import GroupPrediction, continue_stream, generate_groups, teacher_forced, vector_stream
from .rows import encode_row

__all__ = ["GroupPrediction", "continue_stream", "encode_row", "generate_groups", "teacher_forced", "vector_stream"]
