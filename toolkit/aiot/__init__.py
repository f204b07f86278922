"""aiot: TinyML firmware toolkit for industrial anomaly detection on Cortex-M."""

__version__ = "0.1.0"
