"""Prefect task wrappers: retries, cache policy, artifacts. The logic lives in `multitask`."""
