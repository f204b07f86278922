"""Shared set-up for the host suite (helpers live in toolkit.testing)."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
