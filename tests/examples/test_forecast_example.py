"""The table example runs end to end (a few training steps): a table -> rows -> model -> forecast table -> chart.
statsmodels (the example's own requirement, not the package's) is needed only to read macrodata itself."""

import importlib.util

import numpy as np
import pandas as pd
import pytest
from conftest import REPO


def load_example():
    spec = importlib.util.spec_from_file_location("macro", REPO / "examples" / "forecast" / "macro.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def quarterly_table(quarters: int = 203) -> pd.DataFrame:
    """A table shaped as macrodata's (1959Q1 on), with made-up values."""
    t = np.arange(quarters)
    return pd.DataFrame({"item_id": "us", "timestamp": pd.date_range("1959-01-01", periods=quarters, freq="QS"),
                         "unemp": 6 + np.sin(t / 9), "infl": 3 + np.cos(t / 5), "tbilrate": 4 + np.sin(t / 13)})


def test_macro_example_writes_a_forecast_table_and_a_fan_chart(tmp_path, monkeypatch):
    module = load_example()
    monkeypatch.setattr(module, "macro_table", quarterly_table)
    monkeypatch.chdir(tmp_path)  # the script finds the tiny model beside itself
    monkeypatch.setattr("sys.argv", ["macro.py", "--out", str(tmp_path), "--steps", "3", "--samples", "8",
                                     "--image", str(tmp_path / "fan.png")])
    module.main()
    forecast = pd.read_csv(tmp_path / "forecast.csv")
    assert len(forecast) == 8 * 2 and set(forecast.target_name) == {"unemp", "infl"}
    assert list(pd.to_datetime(forecast.timestamp).unique()) == list(pd.date_range("2007-10-01", periods=8,
                                                                                   freq="QS"))
    quantiles = forecast[[str(level) for level in module.LEVELS]].to_numpy()
    assert (np.diff(quantiles, axis=1) >= 0).all()
    assert (tmp_path / "fan.png").stat().st_size > 10_000
    rows = (tmp_path / "data" / "macro.jsonl").read_text().splitlines()
    assert len(rows) == 203 - 8 - 32 + 1  # windows of 32 quarters, stride 1, of the 195 before the held-out ones


def test_macrodata_reads_as_a_regular_quarterly_table():
    pytest.importorskip("statsmodels")
    table = load_example().macro_table()
    expected = quarterly_table()
    assert list(table.columns) == list(expected.columns)
    assert (table.timestamp.to_numpy() == expected.timestamp.to_numpy()).all()
    assert table[["unemp", "infl", "tbilrate"]].notna().all().all()
    assert table.unemp.iloc[-1] == pytest.approx(9.6)  # 2009Q3
