"""`wmfactory retrieve`: read predicted vectors as the nearest items of a reference bank (an `encode` output
folder): `retrieved.jsonl` with the top k items and their cosine similarity for every predicted vector."""

import json
import os
from typing import Any, Union

from ..data.embeddings import EMBEDDING_READERS, load_embedding
from ..encode.retrieval import Bank, load_bank
from ..extras.errors import DataError
from ..hparams.encode_args import RetrieveArguments
from ..hparams.parser import parse_dict, read_args

# the fields of a predictions.jsonl line that say which prediction it is
PREDICTION_FIELDS = ("dataset", "row", "key", "occurrence", "mode", "horizon")


def run_retrieve(args: Union[dict[str, Any], list[str], None] = None) -> str:
    """Writes one line per prediction (or per embedding file) and prints the first `show`; returns the path."""
    (parsed,) = parse_dict(read_args(args), (RetrieveArguments,))
    bank = load_bank(parsed.bank)
    source = parsed.predictions
    if source.endswith(".jsonl"):
        records = list(prediction_records(source, bank, parsed.top_k))
    else:
        records = list(file_records(source, bank, parsed.top_k))
    output = parsed.output_file or os.path.join(source if os.path.isdir(source) else os.path.dirname(source) or ".",
                                                "retrieved.jsonl")
    with open(output, "w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
    print(summary(records, parsed.top_k, parsed.show, output))
    return output


def prediction_records(path: str, bank: Bank, k: int):
    """Each line of predictions.jsonl with the neighbours of its `predicted` vectors (and of its `target`)."""
    if not os.path.isfile(path):
        raise DataError(f"predictions '{path}' not found")
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                prediction = json.loads(line)
                predicted, target = prediction_arrays(prediction, os.path.dirname(os.path.abspath(path)))
            except (json.JSONDecodeError, KeyError, TypeError) as err:
                raise DataError(f"predictions '{path}', line {number}: not a line of `wmfactory predict` "
                                f"({type(err).__name__}: {err})") from None
            except DataError as err:
                raise DataError(f"predictions '{path}', line {number}: {err}") from None
            record = {key: prediction[key] for key in PREDICTION_FIELDS if key in prediction}
            record["neighbours"] = located(bank.neighbours, predicted, k, path, number)
            if target is not None:
                record["target_neighbours"] = located(bank.neighbours, target, 1, path, number)
            yield record


def prediction_arrays(prediction: dict, folder: str):
    """`(predicted [n, d], target [n, d] or None)` of one line: the `file` it names (a .safetensors holding
    `embedding` and `target`), relative to predictions.jsonl."""
    path = os.path.join(folder, prediction["file"])
    predicted = load_embedding(os.path.abspath(path), ".", True)
    target = None
    if path.endswith(".safetensors"):
        from safetensors import safe_open

        with safe_open(path, framework="np") as f:
            if "target" in f.keys():
                target = load_embedding(f.get_tensor("target"), ".", True)
    return predicted, target


def file_records(source: str, bank: Bank, k: int):
    """One record per embedding file: `source` itself, or every embedding file of the folder, in name order."""
    if os.path.isdir(source):
        names = sorted(n for n in os.listdir(source) if os.path.splitext(n)[1].lower() in EMBEDDING_READERS)
        files = [os.path.join(source, n) for n in names]
    else:
        files = [source]
    if not files:
        raise DataError(f"predictions '{source}': no embedding file in the folder")
    for file in files:
        try:
            vectors = load_embedding(os.path.abspath(file), ".", True)
        except DataError as err:
            raise DataError(f"file '{file}': {err}") from None
        yield {"file": os.path.basename(file), "neighbours": located(bank.neighbours, vectors, k, file, None)}


def located(neighbours, vectors, k: int, path: str, line):
    try:
        return neighbours(vectors, k)
    except DataError as err:
        where = f"predictions '{path}'" + (f", line {line}" if line is not None else "")
        raise DataError(f"{where}: {err}") from None


def summary(records: list[dict], k: int, show: int, output: str) -> str:
    """The first `show` predictions with their nearest item, and how often the target's nearest item is found."""
    lines = []
    for record in records[:show]:
        label = record.get("file") or (f"{record.get('dataset')} row {record.get('row')} <{record.get('key')}> "
                                       f"#{record.get('occurrence')}, horizon {record.get('horizon')}")
        best = record["neighbours"][0][0]
        lines.append(f"{label}: {shown(best)} ({best['score']:.3f})")
        if "target_neighbours" in record:
            lines.append(f"    target: {shown(record['target_neighbours'][0][0])}")
    scored = [(record["neighbours"][0], record["target_neighbours"][0][0]["id"]) for record in records
              if "target_neighbours" in record]
    if scored:
        top1 = sum(found[0]["id"] == wanted for found, wanted in scored)
        topk = sum(wanted in {n["id"] for n in found} for found, wanted in scored)
        lines.append(f"the target's nearest item is the top-1 neighbour of {top1} of {len(scored)} predictions, "
                     f"among the top {k} of {topk}")
    lines.append(f"wrote {len(records)} line(s) to {output}")
    return "\n".join(lines)


def shown(found: dict) -> str:
    text = found.get("text") or found.get("path") or found["id"]
    text = " ".join(str(text).split())
    return repr(text[:77] + "..." if len(text) > 80 else text)
