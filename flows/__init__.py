"""Prefect flows: pure wiring of the tasks in `tasks/`."""
