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


def energy(state, k=1.0, c=0.5):
    x1, v1, x2, v2 = state
    return 0.5 * (v1**2 + v2**2) + 0.5 * k * (x1**2 + x2**2) + 0.5 * c * (x1 - x2) ** 2


def test_transition_conserves_or_dissipates_energy():
    generator = load_generator()
    state = np.array([0.7, -0.2, -0.4, 0.5])
    free = generator.transition(b=0.0)
    damped = generator.transition(b=0.1)
    s_free, s_damped = state.copy(), state.copy()
    for _ in range(20):
        s_free, s_damped = free @ s_free, damped @ s_damped
        assert abs(energy(s_free) - energy(state)) < 1e-9
    assert energy(s_damped) < 0.9 * energy(state)
    # small steps follow the differential equation: x1'' = -k x1 - c (x1 - x2) - b v1
    dt = 1e-4
    tiny = generator.transition(b=0.1, dt=dt)
    acceleration = ((tiny @ state)[1] - state[1]) / dt
    assert abs(acceleration - (-1.0 * 0.7 - 0.5 * (0.7 + 0.4) - 0.1 * -0.2)) < 1e-3


def test_written_dataset_follows_the_map(tmp_path, monkeypatch):
    generator = load_generator()
    monkeypatch.setattr("sys.argv", ["x", "--out", str(tmp_path), "--rows", "3", "--test_rows", "1", "--steps", "4"])
    generator.main()
    info = json.loads((tmp_path / "dataset_info.json").read_text())
    assert set(info) == {"oscillator_train", "oscillator_test"}
    row = json.loads((tmp_path / "oscillator_train.json").read_text())[0]
    states = [np.load(tmp_path / row["embeddings"][f"m{t + 1}"][0]) for t in range(4)]
    step = generator.transition()
    for before, after in zip(states, states[1:]):
        np.testing.assert_allclose(after, step @ before, rtol=1e-5, atol=1e-6)
    assert "<m1><m2>" in row["messages"][0]["content"] and row["messages"][1]["content"] == "<m3><m4>"
