"""The datasets of the quality suite, each built from a source installed from PyPI (nothing is downloaded at run time).

Every builder returns a `Dataset`: rows of a predicted state stream `s` (`[T, d]`), optionally a condition stream
`a` (`[T, d_a]`, the input applied after state t), and a sentence of text per row (what the language model sees
beside the vectors). Sizes are chosen for 2 CPU cores.

- `speech`: JapaneseVowels (UCI; packaged in `aeon`): nine speakers saying /ae/, 12 LPC cepstrum coefficients per
  frame, 7 to 29 frames per utterance; the text names the speaker. Real recordings.
- `cheetah`: MuJoCo HalfCheetah-v5 (`gymnasium[mujoco]`) under smoothed random torques: 17-d observations, the
  6-d torques as a condition stream. A physics simulator with contacts.
- `latent768`: the cheetah's states seen through a fixed random encoder (a seeded one-layer tanh network to 768
  dimensions, the size of a sentence embedding): a high-dimensional latent with few degrees of freedom.
- `branching`: gymnasium Pendulum-v1 released within 0.1 rad of upright under unobserved random torques: it falls to
  the left or to the right, so its future branches.
- `power`: ACSF1 (appliance power draw, 1,460 samples per series; packaged in `aeon`), 4 consecutive samples per
  vector: 365 vectors per row; the text names the appliance class. Long rows.
- `macro` (a table): statsmodels' macrodata, US quarterly 1959-2009; unemployment and inflation, one vector per
  quarter, in windows of 28 quarters (20 given, 8 forecast) split by time: the training windows end before 1996Q3,
  the test windows forecast from 1996Q3 on. Season 4.
- `elnino` (a table): statsmodels' elnino, the monthly sea surface temperature of the Nino 1+2 region, 1950-2010,
  one number per month, in windows of 48 months (36 given, 12 forecast, every third start) split by time: the
  training windows end before 2000, the test windows forecast from 2000 on. Season 12.
"""

import importlib.util
import os
from dataclasses import dataclass, field
from typing import Optional

import numpy as np


@dataclass
class Dataset:
    name: str
    source: str
    train: list[dict]  # rows: {"s": [T, d], "a": [T, d_a] (optional), "text": str}
    test: list[dict]
    context: int  # vectors of `s` given before a rollout
    horizon: int  # longest rollout horizon scored
    description: str = ""
    condition_dim: Optional[int] = None
    notes: dict = field(default_factory=dict)
    rollout_origins: tuple[int, ...] = ()  # long rows: rollouts from each of these numbers of given states
    season: int = 1  # the seasonal naive forecast's period m (and MASE's scale)

    @property
    def origins(self) -> tuple[int, ...]:
        """The numbers of given states each test row is rolled out from (`context` unless set)."""
        return self.rollout_origins or (self.context,)


def _aeon_file(problem: str, split: str) -> str:
    spec = importlib.util.find_spec("aeon")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("the quality suite reads data packaged in aeon: pip install --no-deps aeon==1.6.0")
    path = os.path.join(spec.submodule_search_locations[0], "datasets", "data", problem, f"{problem}_{split}.ts")
    if not os.path.isfile(path):
        raise SystemExit(f"{path} is missing from the installed aeon")
    return path


def read_ts(path: str) -> tuple[list[np.ndarray], list[str]]:
    """A `.ts` file of the UCR/UEA archive: one series per line, dimensions separated by ':', values by ',', the
    class label last. -> (series `[T, dims]`, labels)."""
    series, labels = [], []
    with open(path, encoding="utf-8") as f:
        in_data = False
        for number, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if not in_data:
                in_data = line.lower() == "@data"
                continue
            *dims, label = line.split(":")
            values = [np.array([float(v) for v in dim.split(",")]) for dim in dims]
            if len({len(v) for v in values}) != 1 or any(not np.isfinite(v).all() for v in values):
                raise ValueError(f"{path}:{number}: dimensions of different lengths or non-finite values")
            series.append(np.stack(values, axis=1).astype(np.float32))
            labels.append(label)
    return series, labels


def speech() -> Dataset:
    def rows(split):
        series, speakers = read_ts(_aeon_file("JapaneseVowels", split))
        return [{"s": x, "text": f"Speaker {k} says the vowel /ae/; 12 LPC cepstrum coefficients per frame:"}
                for x, k in zip(series, speakers)]

    return Dataset("speech", "JapaneseVowels (UCI), packaged in aeon 1.6.0", rows("TRAIN"), rows("TEST"),
                   context=3, horizon=4, description="real recorded speech, d=12, 7-29 frames")


def power(patch: int = 4, test_rows: int = 50) -> Dataset:
    def rows(split, limit=None):
        series, labels = read_ts(_aeon_file("ACSF1", split))
        out = []
        for x, label in list(zip(series, labels))[:limit]:
            x = x[: len(x) // patch * patch, 0].reshape(-1, patch)
            out.append({"s": x, "text": f"Power draw of an appliance of class {label}, {patch} samples per vector:"})
        return out

    test = rows("TEST", test_rows)
    shortest = min(len(r["s"]) for r in test)
    # rolling origins: rollouts of 8 from 180, 205, .. given vectors, as far as the rows go
    return Dataset("power", "ACSF1 (appliance power), packaged in aeon 1.6.0", rows("TRAIN"), test, context=180,
                   horizon=8, description=f"real recordings, d={patch}, 365 vectors per row",
                   rollout_origins=tuple(range(180, shortest - 8 + 1, 25)))


def _smooth_actions(rng: np.random.Generator, steps: int, dim: int, rho: float = 0.8) -> np.ndarray:
    """Random torques in [-1, 1] that change smoothly (an AR(1) process), as a controller's would."""
    out, a = np.empty((steps, dim), np.float32), rng.uniform(-1, 1, dim)
    for t in range(steps):
        a = rho * a + np.sqrt(1 - rho**2) * rng.normal(0, 0.6, dim)
        out[t] = np.clip(a, -1, 1)
    return out


def _cheetah_rows(rows: int, steps: int, seed: int) -> list[dict]:
    import gymnasium as gym

    env = gym.make("HalfCheetah-v5")
    rng = np.random.default_rng(seed)
    out = []
    for row in range(rows):
        obs, _ = env.reset(seed=seed * 100_000 + row)
        for _ in range(int(rng.integers(0, 40))):  # start from a moving state, not from rest
            obs, *_ = env.step(rng.uniform(-1, 1, 6).astype(np.float32))
        actions = _smooth_actions(rng, steps, 6)
        states = []
        for t in range(steps):
            states.append(obs.astype(np.float32))
            obs, *_ = env.step(actions[t])
        out.append({"s": np.stack(states), "a": actions,
                    "text": "A half-cheetah robot (MuJoCo); state, then the torques applied:"})
    env.close()
    return out


def cheetah(train_rows: int = 256, test_rows: int = 64, steps: int = 20) -> Dataset:
    return Dataset("cheetah", "MuJoCo HalfCheetah-v5 (gymnasium 1.4, mujoco 4.0)", _cheetah_rows(train_rows, steps, 1),
                   _cheetah_rows(test_rows, steps, 2), context=4, horizon=4, condition_dim=6,
                   description="physics with contacts, d=17, torques as conditions")


def latent768(train_rows: int = 256, test_rows: int = 64, steps: int = 20, dim: int = 768) -> Dataset:
    base = cheetah(train_rows, test_rows, steps)
    states = np.concatenate([row["s"] for row in base.train])
    mean, std = states.mean(0), states.std(0) + 1e-6
    rng = np.random.default_rng(768)
    weight = rng.normal(0, 1.5 / np.sqrt(states.shape[1]), (states.shape[1], dim)).astype(np.float32)
    bias = rng.normal(0, 0.5, dim).astype(np.float32)

    def encode(rows):
        return [{**row, "s": np.tanh((row["s"] - mean) / std @ weight + bias).astype(np.float32),
                 "text": "A half-cheetah robot seen through an encoder; latent, then the torques applied:"}
                for row in rows]

    return Dataset("latent768", "HalfCheetah states through a fixed random tanh encoder to 768-d",
                   encode(base.train), encode(base.test), context=4, horizon=4, condition_dim=6,
                   description="768-d latent of a 17-d system, torques as conditions")


def _pendulum_rows(rows: int, steps: int, seed: int, every: int = 2) -> list[dict]:
    import gymnasium as gym

    env = gym.make("Pendulum-v1")
    rng = np.random.default_rng(seed)
    out = []
    for row in range(rows):
        env.reset(seed=seed * 100_000 + row)
        env.unwrapped.state = np.array([rng.uniform(-0.1, 0.1), rng.uniform(-0.1, 0.1)])
        states = []
        for t in range(steps * every):
            theta, omega = env.unwrapped.state
            if t % every == 0:
                states.append([np.cos(theta), np.sin(theta), omega])
            env.step(np.array([rng.normal(0, 0.6)], dtype=np.float32))
        out.append({"s": np.asarray(states, np.float32),
                    "text": "A pendulum released near upright, pushed by unseen random torques; cos, sin, speed:"})
    env.close()
    return out


def branching(train_rows: int = 256, test_rows: int = 64, steps: int = 20) -> Dataset:
    return Dataset("branching", "gymnasium 1.4 Pendulum-v1, released near upright", _pendulum_rows(train_rows, steps, 1),
                   _pendulum_rows(test_rows, steps, 2), context=3, horizon=4,
                   description="falls left or right: the future branches, d=3")


def _table_windows(values: np.ndarray, labels: list[str], length: int, context: int, split: int, stride: int,
                   text: str) -> tuple[list[dict], list[dict]]:
    """Windows of `length` consecutive rows of a table `values` `[T, d]`, split by time at row `split`: training
    windows end before it, test windows have their first forecast (row `context` of the window) at or after it.
    Each row names its series and time stamps (`series`, `timestamps`, as `from_dataframe` writes them), so that
    training holds out each series' latest windows for validation instead of random ones."""
    train, test = [], []
    for start in range(0, len(values) - length + 1, stride):
        row = {"s": values[start: start + length].astype(np.float32), "text": text.format(start=labels[start]),
               "series": "0", "timestamps": labels[start: start + length]}
        if start + length <= split:
            train.append(row)
        elif start + context >= split:
            test.append(row)
    return train, test


def macro() -> Dataset:
    import statsmodels.api as sm

    table = sm.datasets.macrodata.load_pandas().data
    labels = [f"{int(y)}Q{int(q)}" for y, q in zip(table["year"], table["quarter"])]
    train, test = _table_windows(table[["unemp", "infl"]].to_numpy(np.float64), labels, 28, 20, 150, 1,
                                 "US unemployment and inflation (percent), quarterly from {start}:")
    return Dataset("macro", "statsmodels macrodata (US, 1959-2009), a table", train, test, context=20, horizon=8,
                   description="a table, split by time: US unemployment and inflation, quarterly, d=2", season=4)


def elnino() -> Dataset:
    import statsmodels.api as sm

    table = sm.datasets.elnino.load_pandas().data  # one row per year, a column per month
    months = [m for m in table.columns if m != "YEAR"]
    values = table[months].to_numpy(np.float64).reshape(-1, 1)
    labels = [f"{int(y)}-{i + 1:02d}" for y in table["YEAR"] for i in range(len(months))]
    split = labels.index("2000-01")
    train, test = _table_windows(values, labels, 48, 36, split, 3,
                                 "Sea surface temperature (degrees C) of the Nino 1+2 region, monthly from {start}:")
    return Dataset("elnino", "statsmodels elnino (1950-2010), a table", train, test, context=36, horizon=12,
                   description="a table, split by time: monthly sea surface temperature, d=1", season=12)


BUILDERS = {"speech": speech, "cheetah": cheetah, "latent768": latent768, "branching": branching, "power": power,
            "macro": macro, "elnino": elnino}
