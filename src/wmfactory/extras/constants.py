"""Constants shared by the data pipeline, the model and the trainer."""

IGNORE_INDEX = -100  # label of a position without LM target (prompt tokens, vector slots, padding)
