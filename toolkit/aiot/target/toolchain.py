"""Find the external tools the toolkit drives, with errors that say how to install them."""

from __future__ import annotations

import shutil

from aiot.errors import ToolkitError

_APT = {
    "arm-none-eabi-gcc": "gcc-arm-none-eabi libnewlib-arm-none-eabi",
    "arm-none-eabi-nm": "binutils-arm-none-eabi (comes with gcc-arm-none-eabi)",
    "arm-none-eabi-size": "binutils-arm-none-eabi (comes with gcc-arm-none-eabi)",
    "arm-none-eabi-objcopy": "binutils-arm-none-eabi (comes with gcc-arm-none-eabi)",
    "qemu-system-arm": "qemu-system-arm",
}


def require(tool: str) -> str:
    """Absolute path of ``tool`` or a ToolkitError naming the Debian package to install."""
    path = shutil.which(tool)
    if path:
        return path
    pkg = _APT.get(tool)
    hint = f"install it with: apt-get install {pkg.split(' (')[0]}  (or run: make setup)" if pkg else None
    raise ToolkitError(f"'{tool}' was not found on PATH", hint=hint)
