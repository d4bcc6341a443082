"""`wmfactory check`: read every row and every embedding file of the datasets, summarise them and list every
problem with its dataset, row, key and file. Nothing is trained and nothing is written."""

import json
import os
from collections import Counter
from typing import Any, Union

import numpy as np

from ..data.converter import embedding_files
from ..data.encoder import NO_CUTOFF, TARGET_RULES, is_target_slot
from ..data.loader import load_raw, preprocess
from ..data.registry import get_dataset_attrs
from ..data.streams import input_patterns, is_condition, stream_of
from ..data.template import get_template
from ..extras.errors import DataError
from ..hparams import get_check_args
from ..model.loader import load_tokenizer

SUMMARY_COLUMNS = ["input_ids", "embedding_positions", "embedding_groups", "group_keys", "group_in_assistant",
                   "group_dims", "row_index", "drop_reason", "problem"]


def run_check(args: Union[dict[str, Any], list[str], None] = None) -> int:
    """Prints the summary and the problems; returns the exit status (1 when there is any problem)."""
    parsed = get_check_args(args)
    model_args, data_args = parsed.model, parsed.data
    names = data_args.dataset_names + data_args.eval_dataset_names
    tokenizer = load_tokenizer(model_args)
    template = get_template(data_args.template, tokenizer)
    report = {"datasets": {}, "problems": []}
    dims: dict[tuple[str, int], str] = {}
    conditions = input_patterns(parsed.world_model)  # the streams that are never targets
    for name in names:
        try:
            attr = get_dataset_attrs([name], data_args.dataset_dir)[0]
            raw = load_raw(attr, model_args.cache_dir, model_args.hf_hub_token, data_args.max_samples)
        except DataError as err:
            report["problems"].append(str(err))
            continue
        checked = preprocess(raw, attr, template, tokenizer, data_args, parsed.world_model, mode="collect",
                              cutoff_len=NO_CUTOFF)
        summary, problems = _summarise(checked.select_columns(SUMMARY_COLUMNS), attr.name, data_args.cutoff_len,
                                       conditions)
        summary["modalities"], summary["absolute_paths"] = _files(raw, attr, data_args.media_dir)
        report["datasets"][name] = summary
        report["problems"].extend(problems)
        for stream_dim, row in summary.pop("first_row_of_dimension").items():
            dims.setdefault(stream_dim, f"dataset '{name}', row {row}")
    for stream in sorted({stream for stream, _ in dims}):
        places = {dim: place for (s, dim), place in dims.items() if s == stream}
        if len(places) > 1:
            detail = ", ".join(f"dimension {dim} first at {place}" for dim, place in sorted(places.items()))
            report["problems"].append(f"embedding vectors of stream '{stream}' have different dimensions: {detail}")
    print(format_check(report, data_args.cutoff_len))
    return 1 if report["problems"] else 0


def _summarise(dataset, name: str, cutoff_len: int, conditions: tuple[str, ...] = ()) -> tuple[dict[str, Any],
                                                                                             list[str]]:
    rows = len(dataset)
    lengths, problems, first_row_of_dimension = [], [], {}
    groups = vectors = 0
    targets = Counter()
    for row in dataset:
        if row["drop_reason"]:
            problems.append(row["problem"] or f"dataset '{name}', row {row['row_index']}: dropped: {row['drop_reason']}")
            continue
        lengths.append(len(row["input_ids"]))
        groups += len(row["group_keys"])
        vectors += len(row["embedding_groups"])
        streams = [stream_of(key) for key in row["group_keys"]]
        for stream, dim in zip(streams, row["group_dims"]):
            first_row_of_dimension.setdefault((stream, dim), row["row_index"])
        for group, position in zip(row["embedding_groups"], row["embedding_positions"]):
            earlier = streams[group] in streams[:group]
            for rule in TARGET_RULES:
                targets[rule] += is_target_slot(earlier, row["group_in_assistant"][group], position, rule,
                                                is_condition(streams[group], conditions))
    lengths = np.asarray(lengths) if lengths else np.zeros(1, dtype=int)
    summary = {
        "rows": rows,
        "valid_rows": rows - len(problems),
        "groups": groups,
        "vectors": vectors,
        "dimensions": sorted({dim for _, dim in first_row_of_dimension}),
        "streams": {stream: dim for stream, dim in sorted(first_row_of_dimension)},
        "target_vectors": {rule: int(targets[rule]) for rule in TARGET_RULES},
        "length_p50": int(np.percentile(lengths, 50)),
        "length_p99": int(np.percentile(lengths, 99)),
        "length_max": int(lengths.max()),
        "rows_over_cutoff_len": int((lengths > cutoff_len).sum()),
        "first_row_of_dimension": first_row_of_dimension,
    }
    return summary, problems


def _files(raw, attr, media_dir: str) -> tuple[dict[str, int], list[str]]:
    """Files per `modality` (the field of .json files; the suffix for other formats), and the absolute paths the
    rows name (allowed, but read from outside `media_dir`: listed so that a user sees what a dataset reads)."""
    counts: Counter = Counter()
    seen, absolute = set(), []
    if attr.embeddings not in raw.column_names:
        return {}, []
    for entry in raw[attr.embeddings]:
        for file in embedding_files(entry):
            if file not in seen:
                seen.add(file)
                counts[_modality(os.path.join(media_dir, file))] += 1
                if os.path.isabs(file):
                    absolute.append(file)
    return dict(counts), absolute


def _modality(path: str) -> str:
    suffix = os.path.splitext(path)[1].lower()
    if suffix != ".json":
        return f"({suffix} file)"
    try:
        with open(path, encoding="utf-8") as f:
            content = json.load(f)
        return str(content.get("modality", "(unspecified)")) if isinstance(content, dict) else "(unreadable)"
    except (OSError, ValueError):
        return "(unreadable)"


def format_check(report: dict[str, Any], cutoff_len: int) -> str:
    lines = []
    for name, s in report["datasets"].items():
        lines.append(f"dataset '{name}': {s['rows']} rows ({s['valid_rows']} valid), {s['groups']} groups, "
                     f"{s['vectors']} vectors, "
                     + (", ".join(f"stream '{k}' dimension {d}" for k, d in s["streams"].items()) or "no vectors"))
        lines.append(f"  modalities: {s['modalities'] or 'none'}")
        if s["absolute_paths"]:
            shown = ", ".join(s["absolute_paths"][:3]) + (", ..." if len(s["absolute_paths"]) > 3 else "")
            lines.append(f"  absolute paths (read as given, not from media_dir): {len(s['absolute_paths'])}: {shown}")
        t = s["target_vectors"]
        lines.append(f"  target vectors by rule: next {t['next']}, assistant {t['assistant']}, all {t['all']}")
        lines.append(f"  length in positions: p50 {s['length_p50']}, p99 {s['length_p99']}, max {s['length_max']} "
                     f"(cutoff_len {cutoff_len}: {s['rows_over_cutoff_len']} row(s) longer, cut at the end)")
    problems = report["problems"]
    lines.append(f"{len(problems)} problem(s)" + (":" if problems else "."))
    lines.extend(f"  {problem}" for problem in problems)
    return "\n".join(lines)
