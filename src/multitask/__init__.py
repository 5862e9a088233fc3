"""multitask: a multi-task Keras model (class + box) as a cached, retryable workflow.

The library below this package is plain Python and TensorFlow; Prefect lives in the
top-level ``tasks`` and ``flows`` packages, MLflow only in ``registry``.
"""

__version__ = "0.1.0"
