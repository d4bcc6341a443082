"""`wmfactory predict --output_format csv|parquet`: the predictions as one long table, a line per predicted number.

Rows written by `from_dataframe` (their dataset_info.json entry holds `table`) give the columns of
`WorldModel.predict_df`: the id and time stamp columns, `target_name` (the target column), `mean`, one column per
quantile level; other rows give `dataset`, `row`, `key`, `occurrence`, `vector` (its index in the group) and
`target_name` (`<stream>[<dimension>]`) instead of the id and time stamp. Then `mode`, `horizon` and `target` (the
row's own value) follow in both."""

import json
import os
from typing import Any, Optional

from ..data.loader import load_raw
from ..data.registry import get_dataset_attrs
from ..data.tables import TARGET_STREAM, require_pandas
from ..extras.errors import ConfigError
from ..model.tables import sample_quantiles


class TableRows:
    """The table layouts of the datasets that have one, and each row's series id and time stamps."""

    def __init__(self, dataset_dir: str, names: list[str]):
        with open(os.path.join(dataset_dir, "dataset_info.json"), encoding="utf-8") as f:
            info = json.load(f)
        self.layouts: dict[str, dict] = {}
        self.rows: dict[str, Any] = {}
        for name in names:
            layout = info.get(name, {}).get("table")
            if isinstance(layout, dict):
                self.layouts[name] = layout
                self.rows[name] = load_raw(get_dataset_attrs([name], dataset_dir)[0]).select_columns(
                    ["series", "timestamps"])

    def series_and_stamps(self, name: str, row: int) -> Optional[tuple[str, list[str]]]:
        if name not in self.layouts:
            return None
        found = self.rows[name][row]
        return found["series"], found["timestamps"]


def table_lines(features: dict[str, Any], groups: list, mode: str, levels: list[float],
                tables: TableRows) -> list[dict[str, Any]]:
    """The lines of one row's predicted groups."""
    name, row = features["dataset_name"], features["row_index"]
    found = tables.series_and_stamps(name, row)
    lines = []
    for group in groups:
        quantiles = sample_quantiles(group.samples, levels) if group.samples is not None and levels else None
        for i, (predicted, target) in enumerate(zip(group.predicted, group.target)):
            for j, value in enumerate(predicted):
                if found is not None and group.stream == TARGET_STREAM:
                    layout = tables.layouts[name]
                    line = {layout["id_column"]: found[0],
                            layout["timestamp_column"]: found[1][group.occurrence + i],
                            "target_name": layout["targets"][j]}
                else:
                    line = {"dataset": name, "row": row, "key": group.key, "occurrence": group.occurrence,
                            "vector": i, "target_name": f"{group.stream}[{j}]"}
                line["mean"] = float(value)
                if quantiles is not None:
                    line.update({str(level): float(quantiles[q, i, j]) for q, level in enumerate(levels)})
                line.update({"mode": mode, "horizon": group.horizon, "target": float(target[j])})
                lines.append(line)
    return lines


def write_table(lines: list[dict[str, Any]], path: str, output_format: str) -> str:
    pd = require_pandas()
    frame = pd.DataFrame(lines)
    if output_format == "csv":
        frame.to_csv(path, index=False)
        return path
    try:
        frame.to_parquet(path, index=False)
    except ImportError:
        raise ConfigError("`output_format: parquet` needs pyarrow: pip install 'wmfactory[tables]'") from None
    return path
