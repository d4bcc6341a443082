"""The table example runs end to end (a few training steps): macrodata -> rows -> model -> forecast table -> chart."""

import importlib.util

import numpy as np
import pandas as pd
import pytest
from conftest import REPO

pytest.importorskip("statsmodels")


def test_macro_example_writes_a_forecast_table_and_a_fan_chart(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("macro", REPO / "examples" / "forecast" / "macro.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
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
