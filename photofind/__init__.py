"""photofind: find photos on your own disk by what they show."""

import os as _os

__version__ = "0.1.0"

# Nothing leaves the machine. ONNX Runtime's official builds collect telemetry by default:
# 1.31.1, on import, creates $XDG_CACHE_HOME/Microsoft/DeveloperTools/.onnxruntime/deviceid (a
# persistent device id) and onnxruntime.db (a queue of events for upload to Microsoft: OS,
# CPU model, memory, container type) and $TMPDIR/.ses. Only this variable, set before
# onnxruntime is loaded, stops all of it (disable_telemetry_events() after the import leaves the
# files). Every entry point (CLI, app, `import photofind.clip`) imports this package before
# onnxruntime; the bundle's launcher sets it too. Assigned, not defaulted: an inherited "0"
# would switch telemetry back on.
_os.environ["ORT_DISABLE_TELEMETRY"] = "1"
