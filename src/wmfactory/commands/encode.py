"""`wmfactory encode`: raw text, images or audio -> one embedding file per item, the rows and dataset_info.json
(see `wmfactory.encode.pipeline`)."""

from typing import Any, Union

from ..encode.pipeline import EncodeResult, encode
from ..hparams.encode_args import EncodeArguments
from ..hparams.parser import parse_dict, read_args
from ..train.lock import output_dir_lock


def run_encode(args: Union[dict[str, Any], list[str], None] = None) -> EncodeResult:
    """Encodes every item that has no file yet in `output_dir`; prints what it wrote and returns it."""
    (parsed,) = parse_dict(read_args(args), (EncodeArguments,))
    with output_dir_lock(parsed.output_dir, command="encode run"):
        result = encode(parsed)
    record = result.encoder
    print(f"encoded {result.encoded} item(s), skipped {result.skipped} already encoded, with {record['name']} "
          f"({record['type']}, pooling {record['pooling']}, dimension {record['dimension']}) into {result.output_dir}")
    if result.datasets:
        print(f"datasets in {result.output_dir}/dataset_info.json: {', '.join(result.datasets)} "
              f"(train with dataset_dir: {result.output_dir})")
    return result
