"""Streams: the families of placeholder keys, in one place.

A stream is a key without its trailing digits (`m1`, `m2` -> `m`; `a1` -> `a`; `ecg3` -> `ecg`; a key of digits
only is its own stream). Each stream has one vector dimension, its own projector into the LM's hidden size, its
own normalisation and, unless it is a condition, its own prediction head. A condition stream (`condition_streams`:
actions, treatments) is an input and never a target."""

import fnmatch
from dataclasses import dataclass
from typing import Optional

from torch import nn

from ..extras.errors import DataError
from ..hparams.world_model_args import DimSpec, parse_patterns


def stream_of(key: str) -> str:
    return key.rstrip("0123456789") or key


@dataclass(frozen=True)
class StreamKind:
    """What a kind of stream is to the model. `predicted`: it has a prediction head and its groups can be targets.
    `given_in_future`: a rollout past the history takes its vectors from the caller (`conditions`); a stream that is
    neither predicted nor given is read in the history only, and a rollout leaves it out. `config_key`: the
    world-model key whose patterns select streams of this kind (None for the default kind, `state`)."""

    name: str
    predicted: bool
    given_in_future: bool
    config_key: Optional[str] = None


STREAM_KINDS: dict[str, StreamKind] = {}


def register_stream_kind(kind: StreamKind) -> StreamKind:
    STREAM_KINDS[kind.name] = kind
    return kind


STATE = register_stream_kind(StreamKind("state", predicted=True, given_in_future=False))
CONDITION = register_stream_kind(StreamKind("condition", predicted=False, given_in_future=True,
                                            config_key="condition_streams"))
# past-only covariates: seen in the history (another measurement of the same day), not predicted, unknown in the future
PAST = register_stream_kind(StreamKind("past", predicted=False, given_in_future=False, config_key="past_streams"))


def kind_of(stream: str, patterns_by_key: dict[str, tuple[str, ...]]) -> StreamKind:
    """The kind of `stream`: the first registered kind whose config key's patterns (`fnmatch`) match it, else
    `state`."""
    for kind in STREAM_KINDS.values():
        patterns = patterns_by_key.get(kind.config_key, ()) if kind.config_key else ()
        if any(fnmatch.fnmatchcase(stream, pattern) for pattern in patterns):
            return kind
    return STATE


def is_condition(stream: str, patterns: tuple[str, ...]) -> bool:
    """Whether `stream` is an input only (not predicted), where `patterns` select the input-only streams (those of
    `condition_streams` and `past_streams`: `input_patterns`)."""
    return not kind_of(stream, {"condition_streams": patterns}).predicted


def kind_patterns(arguments) -> dict[str, tuple[str, ...]]:
    """`{config_key: patterns}` of every registered kind that a key selects (`condition_streams`, `past_streams`,
    ...), read from `arguments` (world-model arguments or a model's config; a key it lacks selects nothing)."""
    return {kind.config_key: parse_patterns(getattr(arguments, kind.config_key, None))
            for kind in STREAM_KINDS.values() if kind.config_key}


def input_patterns(arguments) -> tuple[str, ...]:
    """The patterns of every stream that is an input only (of a kind that is not predicted), from the world-model
    keys of `arguments`: what the data layer needs to tell targets from inputs."""
    by_key = kind_patterns(arguments)
    return tuple(pattern for kind in STREAM_KINDS.values() if kind.config_key and not kind.predicted
                 for pattern in by_key[kind.config_key])


def requested_dim(spec: DimSpec, stream: str) -> Optional[int]:
    """The dimension `embedding_dim` asks of `stream` (None: inferred from the data)."""
    return spec.get(stream) if isinstance(spec, dict) else spec


def resolve_streams(found: dict[str, int], spec: DimSpec, by_key: dict[str, tuple[str, ...]],
                    needs_target: bool) -> dict[str, int]:
    """The streams of a run `{name: dim}` (sorted by name) from the dimensions found in the data, checked against
    `embedding_dim` and the keys that select stream kinds (`by_key`: `kind_patterns`)."""
    if not found:
        if isinstance(spec, int):
            return {"m": spec}
        if isinstance(spec, dict) and spec:
            return dict(sorted(spec.items()))
        raise DataError("the dataset holds no embedding vectors, so `embedding_dim` cannot be inferred; set it.")
    if isinstance(spec, dict):
        unknown = sorted(set(spec) - set(found))
        if unknown:
            raise DataError(f"`embedding_dim` names stream(s) {unknown} that the data does not hold (its streams: "
                            f"{sorted(found)}; a stream is a placeholder key without its trailing digits).")
    for stream, dim in found.items():
        want = requested_dim(spec, stream)
        if want is not None and want != dim:
            raise DataError(f"`embedding_dim` is {want} for stream '{stream}' but the data has vectors of dimension "
                            f"{dim} there.")
    for key, key_patterns in by_key.items():
        for pattern in key_patterns:
            if not any(fnmatch.fnmatchcase(stream, pattern) for stream in found):
                raise DataError(f"`{key}`: '{pattern}' matches none of the data's streams {sorted(found)}.")
    if needs_target and all(not kind_of(stream, by_key).predicted for stream in found):
        raise DataError(f"every stream of the data ({sorted(found)}) is a condition or past-only stream: there is "
                        "nothing to predict.")
    check_stream_names(found)
    return dict(sorted(found.items()))


def check_stream_names(streams) -> None:
    """Each stream gets modules named after it (`projector.<stream>`): a name that a `ModuleDict` or PEFT's wrapper
    uses for itself cannot be one."""
    reserved = set(dir(nn.ModuleDict)) | {"original_module", "modules_to_save", "active_adapter", "base_layer"}
    for stream in streams:
        if "." in stream or stream in reserved:
            raise DataError(f"stream name '{stream}' (from keys like <{stream}1>) is reserved: each stream's modules "
                            "are named after it; rename those placeholder keys.")


def conditions_never_followed(dataset, patterns: tuple[str, ...], inputs: tuple[str, ...] = ()) -> list[str]:
    """The condition streams (`patterns`) of a preprocessed dataset that no row follows by a group of a predicted
    stream: they would condition no prediction (e.g. each row ends with its only action). `inputs`: the patterns of
    every input-only stream (conditions and past-only streams), which predict nothing. One pass over `group_keys`."""
    if not patterns:
        return []
    inputs = tuple(inputs) or patterns
    seen: set[str] = set()
    followed: set[str] = set()
    for batch in dataset.select_columns(["group_keys"]).iter(batch_size=10000):
        for keys in batch["group_keys"]:
            pending = set()
            for key in keys:
                stream = stream_of(key)
                if is_condition(stream, patterns):
                    seen.add(stream)
                    pending.add(stream)
                elif not is_condition(stream, inputs):
                    followed |= pending
                    pending = set()
    return sorted(seen - followed)
