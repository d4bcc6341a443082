"""The oscillator example simulates real physics: energy is conserved without damping and decays with it."""

import importlib.util
import json

import numpy as np
from conftest import REPO


def load_generator():
    spec = importlib.util.spec_from_file_location("make_oscillator_data",
                                                  REPO / "examples" / "dynamics" / "make_oscillator_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def energy(state, c=0.5):
    a1, w1, a2, w2 = state
    return 0.5 * (w1**2 + w2**2) + (1 - np.cos(a1)) + (1 - np.cos(a2)) + 0.5 * c * (a1 - a2) ** 2


def test_pendulums_conserve_or_dissipate_energy():
    generator = load_generator()
    state = np.array([1.9, -0.2, -1.4, 0.5])  # large angles: the nonlinear regime
    free, damped = state.copy(), state.copy()
    for _ in range(20):
        free, damped = generator.advance(free, b=0.0), generator.advance(damped, b=0.1)
        assert abs(energy(free) - energy(state)) < 1e-4
    assert energy(damped) < 0.8 * energy(state)
    # a small step follows the equation: a1'' = -sin(a1) - c (a1 - a2) - b w1
    dt = 1e-4
    acceleration = (generator.advance(state, dt=dt, substeps=1)[1] - state[1]) / dt
    assert abs(acceleration - (-np.sin(1.9) - 0.5 * (1.9 + 1.4) - 0.1 * -0.2)) < 1e-3


def test_written_dataset_follows_the_map(tmp_path, monkeypatch):
    generator = load_generator()
    monkeypatch.setattr("sys.argv", ["x", "--out", str(tmp_path), "--rows", "3", "--test_rows", "1", "--steps", "4"])
    generator.main()
    info = json.loads((tmp_path / "dataset_info.json").read_text())
    assert set(info) == {"oscillator_train", "oscillator_test"}
    row = json.loads((tmp_path / "oscillator_train.jsonl").read_text().splitlines()[0])
    states = [np.load(tmp_path / row["embeddings"][f"m{t + 1}"][0]) for t in range(4)]
    for before, after in zip(states, states[1:]):
        np.testing.assert_allclose(after, generator.advance(before.astype(np.float64)), rtol=1e-5, atol=1e-5)
    assert "<m1><m2>" in row["messages"][0]["content"] and row["messages"][1]["content"] == "<m3><m4>"
