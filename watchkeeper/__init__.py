"""Watchkeeper: watchlist-only live facial recognition."""

import os

# Nothing leaves the machine unless the user configures it. ONNX Runtime 1.29 and
# later write a device id to ~/.cache and send usage telemetry when imported,
# unless this variable is set first; every import of onnxruntime in Watchkeeper
# happens after this package is initialised.
os.environ["ORT_DISABLE_TELEMETRY"] = "1"
