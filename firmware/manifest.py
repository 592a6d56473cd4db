# MicroPython build manifest for the field node: freezes the app into the firmware
# image, so its bytecode runs from flash instead of taking heap (on an ESP32 without
# PSRAM that is the difference between ~50 KB and ~10 KB of heap for code).
#
#   make -C ports/esp32 BOARD=ESP32_GENERIC FROZEN_MANIFEST=$PWD/firmware/manifest.py
#   make -C ports/rp2 BOARD=RPI_PICO FROZEN_MANIFEST=$PWD/firmware/manifest.py
#
# This file is read by MicroPython's build (tools/manifestfile.py), not imported; the
# names below are that tool's functions. Board files (firmware/variants/*.json) are
# data, not frozen: copy the one for the board to the filesystem (stationctl flash).
# ruff: noqa: F821

include("$(PORT_DIR)/boards/manifest.py")

# micropython-lib packages the firmware uses when present and does without otherwise:
# logging gives levels and handlers on the console; without it the node prints.
require("logging")

package("protocol", base_path="..", opt=3)
package("firmware", base_path="..", opt=3)
