"""`wmfactory encode`, top to bottom: collect the raw items (manifest, datasets) -> pick and load the encoder ->
check the output folder's encoder -> encode the items that have no file yet, in batches -> write items.jsonl, the
rows and dataset_info.json. The output folder is a `dataset_dir` that `wmfactory train` reads as it is:

    <output_dir>/encoder.json            the encoder record (name, revision, type, pooling, dimension, ...)
    <output_dir>/embeddings/<id>.<fmt>   one matrix [n, d] per item
    <output_dir>/items.jsonl             one line per item: id, modality, text or path, file (the retrieval bank)
    <output_dir>/<dataset>.jsonl         the rows, each raw entry replaced by its embedding file
    <output_dir>/dataset_info.json       their entries, with the encoder record
"""

import json
import os
import re
from dataclasses import dataclass, field

from tqdm.auto import tqdm

from ..data.provenance import ENCODER_RECORD_FILE, describe_encoder, encoder_identity
from ..data.registry import OPENAI_TAGS, write_rows
from ..extras.atomic import remove_partials, write_text
from ..extras.errors import ConfigError, DataError
from ..extras.logging import get_logger
from ..hparams.encode_args import EncodeArguments
from . import audio, image, text  # noqa: F401  (each registers its encoder)
from .encoders import Encoder, load_encoder
from .files import write_embedding_file, write_json
from .items import Item, manifest_items, unique_items
from .rows import dataset_entry, dataset_rows, replace_entries, sequence_rows

logger = get_logger(__name__)
EMBEDDINGS_FOLDER = "embeddings"
ITEMS_FILE = "items.jsonl"


@dataclass
class EncodeResult:
    output_dir: str
    items: int = 0
    encoded: int = 0  # items encoded by this run
    skipped: int = 0  # items whose file was already there
    datasets: list[str] = field(default_factory=list)  # names registered in output_dir/dataset_info.json
    encoder: dict = field(default_factory=dict)


@dataclass
class Source:
    """One input: a dataset's rows or a manifest, with the items it names in reading order."""

    name: str
    items: list[Item]
    rows: list[dict] = field(default_factory=list)
    entry: dict = field(default_factory=dict)  # the input's dataset_info.json entry
    column: str = "embeddings"
    is_manifest: bool = False


def encode(args: EncodeArguments) -> EncodeResult:
    sources = read_sources(args)
    items = unique_items([item for source in sources for item in source.items])
    encoder = load_encoder(args, encoder_type(args, items))
    record = encoder.record()
    output_dir = args.output_dir
    os.makedirs(os.path.join(output_dir, EMBEDDINGS_FOLDER), exist_ok=True)
    remove_partials(output_dir)  # what a killed run left (the caller holds the folder's lock)
    remove_partials(os.path.join(output_dir, EMBEDDINGS_FOLDER))
    check_output_encoder(output_dir, record, args.overwrite_output_dir)
    write_json(os.path.join(output_dir, ENCODER_RECORD_FILE), record)

    def file_of(item: Item) -> str:
        return f"{EMBEDDINGS_FOLDER}/{item.id}.{args.embedding_format}"

    pending = [item for item in items
               if args.overwrite_output_dir or not os.path.isfile(os.path.join(output_dir, file_of(item)))]
    if len(pending) < len(items):
        logger.info(f"{len(items) - len(pending)} of {len(items)} items already encoded in {output_dir}: skipped.")
    encode_items(encoder, pending, lambda item: os.path.join(output_dir, file_of(item)), args.batch_size, record)
    if hasattr(encoder, "finish"):
        encoder.finish()
    write_items(output_dir, items, file_of)
    result = EncodeResult(output_dir, len(items), len(pending), len(items) - len(pending), encoder=record)
    for source in sources:
        result.datasets.extend(write_source_rows(output_dir, source, file_of, record))
    return result


def read_sources(args: EncodeArguments) -> list[Source]:
    sources = []
    for name in args.dataset_names:
        rows, entry, items, column = dataset_rows(name, args.dataset_dir, args.media_dir or args.dataset_dir)
        sources.append(Source(name, items, rows, entry, column))
    if args.manifest:
        stem = re.sub(r"[^A-Za-z0-9_-]+", "_", os.path.splitext(os.path.basename(args.manifest))[0])
        sources.append(Source(stem, manifest_items(args.manifest, args.media_dir), is_manifest=True))
    return sources


def encoder_type(args: EncodeArguments, items: list[Item]) -> str:
    """`encoder_type`, or the one modality of all items; an item of another modality is an error that names it."""
    wanted = args.encoder_type or items[0].modality
    for item in items:
        if item.modality != wanted:
            reason = (f"`encoder_type` is {wanted}" if args.encoder_type else
                      f"the first item ({items[0].where()}) is {wanted}")
            raise DataError(f"{item.where()}: the item is {item.modality}, but {reason}: one encoder reads one modality "
                            "(encode each modality into its own output_dir)")
    return wanted


def check_output_encoder(output_dir: str, record: dict, overwrite: bool) -> None:
    """Files of another encoder in `output_dir` would be mixed with these: refused unless everything is re-encoded."""
    path = os.path.join(output_dir, ENCODER_RECORD_FILE)
    if overwrite or not os.path.isfile(path):
        return
    with open(path, encoding="utf-8") as f:
        previous = json.load(f)
    if encoder_identity(previous) != encoder_identity(record):
        raise ConfigError(f"`output_dir` '{output_dir}' holds embeddings of another encoder "
                          f"({describe_encoder(previous)}; now {describe_encoder(record)}): choose another output_dir, "
                          "or set overwrite_output_dir to encode every item again.")


def encode_items(encoder: Encoder, items: list[Item], path_of, batch_size: int, record: dict) -> None:
    """Encode `items` in batches of `batch_size` and write one file each."""
    metadata = {"wmfactory_encoder": json.dumps(record, sort_keys=True)}
    with tqdm(total=len(items), desc=f"encode ({encoder.type})", unit="item", disable=not items) as progress:
        for start in range(0, len(items), batch_size):
            batch = items[start: start + batch_size]
            for item, matrix in zip(batch, encoder.encode(batch)):
                if matrix.shape[1] != encoder.dimension:
                    raise ConfigError(f"the encoder gave vectors of dimension {matrix.shape[1]}, its config says "
                                      f"{encoder.dimension}")
                write_embedding_file(path_of(item), matrix, {**metadata, "id": item.id, "modality": item.modality})
            progress.update(len(batch))


def write_items(output_dir: str, items: list[Item], file_of) -> None:
    """items.jsonl: the items of earlier runs into this folder (still on disk, not in this run), then this run's."""
    path = os.path.join(output_dir, ITEMS_FILE)
    current = {item.id for item in items}
    lines = []
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            for line in f:
                old = json.loads(line) if line.strip() else None
                if old and old["id"] not in current and os.path.isfile(os.path.join(output_dir, old["file"])):
                    lines.append(line.rstrip("\n"))
    lines += [json.dumps({**item.describe(), "file": file_of(item)}, ensure_ascii=False) for item in items]
    write_text(path, "".join(line + "\n" for line in lines))


def write_source_rows(output_dir: str, source: Source, file_of, record: dict) -> list[str]:
    """The rows of one source and their dataset_info.json entry; a manifest without sequences has no rows."""
    if source.is_manifest:
        rows = sequence_rows(source.items, file_of)
        if not rows:
            return []
        columns = {"messages": "messages", "embeddings": "embeddings"}
        entry = dataset_entry(f"{source.name}.jsonl", {"columns": columns, "tags": OPENAI_TAGS}, record)
    else:
        rows = replace_entries(source.rows, source.column, source.items, file_of)
        entry = dataset_entry(f"{source.name}.jsonl", source.entry, record)
    write_rows(output_dir, source.name, rows, entry)
    return [source.name]
