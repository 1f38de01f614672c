"""Load and rooftop-PV forecasting (numpy/scipy only; imports nothing from ``server``)."""
