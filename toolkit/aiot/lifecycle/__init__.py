"""Model lifecycle in the field: signed model packages (MCUboot image format), the device's
two-slot update logic (host build of firmware/src/update), a local release registry and
the release gate. Format and protocol: docs/lifecycle.md."""
