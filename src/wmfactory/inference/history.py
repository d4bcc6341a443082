"""Long histories: a row longer than the model's positions is cut to its last groups so that a prediction from it
fits, and `context_length` keeps at most the last groups of a history on purpose. The text before the row's first
vector (system prompt, the first turn's opening) is kept; from there, whole groups are dropped from the front, each
with the text between it and the next group, so the cut row reads as the same row written with fewer groups."""

from typing import Any, Optional

from ..extras.errors import DataError
from ..extras.logging import get_logger
from .rows import stream_sequence

logger = get_logger(__name__)


def model_positions(model) -> Optional[int]:
    """The positions the model's decoder was built for (None: no limit is known)."""
    return getattr(model.config.text_config.get_text_config(), "max_position_embeddings", None) or None


def group_starts(features: dict[str, Any]) -> list[int]:
    """The position of the first vector of each group of the row, in reading order."""
    starts: dict[int, int] = {}
    for group, position in zip(features["embedding_groups"], features["embedding_positions"]):
        starts.setdefault(group, position)
    return [starts[g] for g in sorted(starts)]


def drop_groups(features: dict[str, Any], dropped: int, target_rule: str = "next") -> dict[str, Any]:
    """The row without its first `dropped` groups: the text before its first vector, then everything from the first
    vector of group `dropped` on. Groups are renumbered from 0 (`group_occurrences` keep the row's own numbers, so
    that predictions still name the row's placeholders), and with `target_rule` `next` the first kept group of each
    stream is no longer a target (nothing of its stream precedes it), as in the row written with fewer groups."""
    if dropped <= 0:
        return features
    starts = group_starts(features)
    begin, end = starts[0], starts[dropped]
    shift = end - begin
    keep = [i for i, g in enumerate(features["embedding_groups"]) if g >= dropped]
    out = dict(features)
    for key in ("input_ids", "labels"):
        values = list(features[key])
        out[key] = values[:begin] + values[end:]
    out["embedding_positions"] = [features["embedding_positions"][i] - shift for i in keep]
    out["embedding_groups"] = [features["embedding_groups"][i] - dropped for i in keep]
    out["embedding_vectors"] = [features["embedding_vectors"][i] for i in keep]
    if "embedding_streams" in features:
        out["embedding_streams"] = [features["embedding_streams"][i] for i in keep]
    for key in ("group_keys", "group_occurrences", "group_in_assistant", "group_dims"):
        if key in features:
            out[key] = list(features[key])[dropped:]
    streams, seen, targets = stream_sequence(out), set(), []
    for i, position in zip(keep, out["embedding_positions"]):
        stream = streams[len(targets)]
        first_of_stream = stream not in seen and target_rule == "next"
        seen.add(stream)
        targets.append(bool(features["embedding_is_target"][i]) and position > 0 and not first_of_stream)
    out["embedding_is_target"] = targets
    return out


class LongRows:
    """Fits rows into the model's positions for one call (a rollout, a predict or eval run) and warns once, at the
    end, how many rows it had to cut. `context_length` keeps at most that many groups of each row's history (no
    warning: it was asked for)."""

    def __init__(self, model, context_length: Optional[int] = None, target_rule: Optional[str] = None,
                 what: str = "a rollout", hint: str = ""):
        if context_length is not None and (isinstance(context_length, bool) or not isinstance(context_length, int)
                                           or context_length < 1):
            raise DataError(f"`context_length` must be a positive integer, got {context_length!r}.")
        self.limit = model_positions(model)
        self.context_length = context_length
        self.target_rule = target_rule or model.config.embedding_targets
        self.what = what
        self.hint = hint  # what the user can change when a row cannot fit
        self.rows = 0
        self.kept: list[int] = []  # groups left in each row cut to fit

    def fit(self, features: dict[str, Any], steps: int = 0, history: Optional[int] = None) -> tuple[dict, int]:
        """(the row cut to fit, the groups dropped from its front). `steps`: positions generated after the row;
        `history`: the leading groups that are history (the context of a rollout inside the row; default every
        group), of which at least one is kept and at most `context_length`."""
        self.rows += 1
        starts = group_starts(features)
        if not starts:
            return features, 0
        history = len(starts) if history is None else min(history, len(starts))
        asked = 0 if self.context_length is None else max(0, history - self.context_length)
        length = len(features["input_ids"])
        over = length + steps - self.limit if self.limit else 0  # positions to drop
        need = 0
        if over > 0:
            need = next((d for d in range(history) if starts[d] - starts[0] >= over), None)
            if need is None:
                least = length + steps - (starts[history - 1] - starts[0] if history else 0)
                after = f" of {steps} vectors after this row" if steps else " on this row"
                where = f"{features['dataset_name']} row {features['row_index']}: " if "row_index" in features else ""
                raise DataError(f"{where}{self.what}{after} ({length} positions), even from its last group of history "
                                f"alone, needs {least} positions; the model has {self.limit}.{self.hint}")
        if need > asked:
            self.kept.append(len(starts) - need)
        return drop_groups(features, max(asked, need), self.target_rule), max(asked, need)

    def warn(self) -> None:
        """One warning for the rows cut so far to fit, then a fresh count."""
        if self.kept:
            fewest, most = min(self.kept), max(self.kept)
            groups = f"{fewest}" if fewest == most else f"{fewest} to {most}"
            logger.warning(f"{len(self.kept)} of {self.rows} row(s) are longer than the model's {self.limit} "
                           f"positions allow for {self.what}: cut to their last {groups} group(s) (the text before "
                           "the first vector kept); the groups cut away are not predicted. Set `context_length` to "
                           "choose how many groups of history to keep.")
        self.rows, self.kept = 0, []
