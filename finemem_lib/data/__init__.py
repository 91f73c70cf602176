"""Data: the Instance type, dataset loaders, chunking, chunk-QA building and the synthetic benchmark."""

from finemem_lib.data.instance import QA, Instance

__all__ = ["QA", "Instance"]
