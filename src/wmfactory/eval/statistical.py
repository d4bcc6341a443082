"""The statistical baselines of `eval --baselines statsforecast`: AutoETS and AutoARIMA (Nixtla's statsforecast, the
`forecast` extra), fitted on each dimension of a low-dimensional stream on its own, on a row's history up to the
origin of its rollout, and forecast over the rollout's horizons. Each forecast comes with the spread of the model's
own Gaussian prediction interval, from which `eval` draws the baseline's samples."""

from statistics import NormalDist

import numpy as np

from ..extras.errors import ConfigError, DataError

STATSFORECAST_BASELINES = ("auto_ets", "auto_arima")
FORECAST_EXTRA = "pip install 'wmfactory[forecast]'"
# the widest stream fitted: one AutoETS and one AutoARIMA fit per dimension and row (AutoARIMA takes 0.02 to 0.5 s on
# a short series); a wider stream (an embedding) is skipped, with one warning
MAX_DIMS = 8
# the history AutoETS needs: statsforecast refuses a non-constant series of n <= 6 values ("tiny datasets", the 2
# parameters of its simplest model + 4), so rollouts from an origin with fewer known vectors are not scored
MIN_HISTORY = 7
INTERVAL_LEVEL = 80  # the prediction interval read back as a standard deviation (mean +- z sigma, Gaussian)


def require_statsforecast():
    """statsforecast's AutoETS and AutoARIMA, or one clear error naming the extra to install."""
    try:
        from statsforecast.models import AutoARIMA, AutoETS
    except ImportError:
        raise ConfigError(f"`baselines: statsforecast` needs statsforecast: {FORECAST_EXTRA}") from None
    return AutoETS, AutoARIMA


def statistical_forecasts(history: np.ndarray, steps: int, season_length: int = 1, where: str = "",
                          names: tuple[str, ...] = STATSFORECAST_BASELINES) -> dict[str, tuple]:
    """`history` `[n, d]` (the stream's known vectors up to the origin, missing entries filled) -> for each of `names`
    (`auto_ets`, `auto_arima`), (mean `[steps, d]`, standard deviation `[steps, d]`): each dimension fitted as its own
    series with `season_length` (eval's `seasonality`), the standard deviation read from the model's
    `INTERVAL_LEVEL`% interval.
    A fit that fails or a forecast that is not finite is an error naming the model, the dimension and `where` (the
    row and stream)."""
    models = {name: model for name, model in zip(STATSFORECAST_BASELINES, require_statsforecast()) if name in names}
    history = np.asarray(history, dtype=np.float64)
    z = NormalDist().inv_cdf(0.5 + INTERVAL_LEVEL / 200)
    out = {}
    for name, model in models.items():
        means, stds = np.empty((steps, history.shape[1])), np.empty((steps, history.shape[1]))
        for dim in range(history.shape[1]):
            try:
                with np.errstate(all="ignore"):  # the library's own divisions on short series
                    forecast = model(season_length=season_length).forecast(y=history[:, dim], h=steps,
                                                                           level=[INTERVAL_LEVEL])
            except Exception as error:
                raise DataError(f"{name} could not fit dimension {dim}{where} (a history of {len(history)} vectors): "
                                f"{type(error).__name__}: {error}") from error
            means[:, dim] = forecast["mean"]
            stds[:, dim] = (forecast[f"hi-{INTERVAL_LEVEL}"] - forecast[f"lo-{INTERVAL_LEVEL}"]) / (2 * z)
        if not (np.isfinite(means).all() and np.isfinite(stds).all()):
            raise DataError(f"{name} forecast a value that is not finite{where} (a history of {len(history)} vectors).")
        out[name] = (means, np.maximum(stds, 0.0))
    return out
