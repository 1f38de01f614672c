"""Load and rooftop-PV forecasting (numpy/scipy only; imports nothing from ``server``).

    from forecasting import LoadForecaster, PVForecaster
    fc = LoadForecaster().fit(t, y).predict(t_future)
    fc.mean, fc.quantile(0.1), fc.quantile(0.9)

Both models are plain synchronous objects (no global state), so the server can run ``fit``/``predict`` in a
thread or process executor.
"""

from ._common import Forecast, ForecastWarning
from .load import LoadForecaster
from .pv import PVForecaster

__all__ = ["Forecast", "ForecastWarning", "LoadForecaster", "PVForecaster"]
