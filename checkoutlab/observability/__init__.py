"""Operating the platform: request ids, structured logs, Prometheus metrics, health checks.

This package sits below every domain (it imports none of them), so the profile builder, the
learner, the serving loops and payments routing can all report into it without import
cycles; ``checkoutlab.api.app`` wires its middleware and routes into the app.
"""

import os as _os

# prometheus-client opens its per-process files in PROMETHEUS_MULTIPROC_DIR as soon as
# checkoutlab.observability.metrics defines its metrics: make sure the directory exists by
# then, whichever process (supervisor, worker, CLI) imports it first.
if _multiproc_dir := _os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    _os.makedirs(_multiproc_dir, exist_ok=True)
