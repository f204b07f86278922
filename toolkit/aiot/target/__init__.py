"""Targets: board files, chip-family ports, the cross toolchain, firmware builds, exports, QEMU, flashing and the host build of the C."""
