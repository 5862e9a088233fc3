"""Datasets: the embedded `shapes` builder and the catalog that maps spec strings to builders."""
