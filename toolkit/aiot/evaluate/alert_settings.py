"""Moved to aiot.alert_settings (the product reads alert-settings files too: `aiot
commission --alert-settings`). This name stays for one release as the very same module
object, so code and tests that import or patch it keep working."""

import sys

from aiot import alert_settings as _moved

sys.modules[__name__] = _moved
