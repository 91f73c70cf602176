"""Core: the memory, operations, parsing, retrieval, scoring and reward kernels (no models)."""
