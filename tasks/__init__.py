"""Prefect task wrappers: retries, cache policy, artifacts. The logic lives in `multitask`.

TensorFlow Datasets is imported here, when the first task module loads: in a command before its
flow starts, in a worker's flow-run process when it loads the flow, in a Dask worker when it
unpickles its first task. That is before Prefect starts its background threads (API logs, events,
concurrency-lease renewals). While `tensorflow_datasets` and its metadata module import, they
replace `builtins.__import__` for the whole process (etils' lazy imports), and an import in another
thread in that window gets a stand-in module: imported mid-flow instead, Prefect's threads failed
with `No module named 'prefect.settings.PREFECT_API_KEY'`, and a lease renewal that fails cancels
the promotion holding that lease.
"""

import tensorflow_datasets  # noqa: F401
import tensorflow_datasets.core.dataset_metadata  # noqa: F401  (a builder's metadata: its own lazy block)
