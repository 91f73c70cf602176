"""Data: the Instance type, dataset loaders, chunking, chunk-QA building and the synthetic benchmark.

Light imports only here; the chunk-QA builder (``finemem_lib.data.chunk_qa``) and the prepared-data
helpers (``finemem_lib.data.prepared``) are imported from their modules.
"""

from finemem_lib.data.chunking import chunk_text, default_chunk_size, make_token_counter, pack_sentences
from finemem_lib.data.instance import QA, Instance
from finemem_lib.data.memalpha import (
    DataNotAvailableError,
    DataSchemaError,
    load_memalpha,
    load_memalpha_mab,
    read_memalpha_parquet,
    write_memalpha_parquet,
)
from finemem_lib.data.memoryagentbench import MAB_SPLITS, load_memoryagentbench
from finemem_lib.data.synthetic import SOURCES as SYNTHETIC_SOURCES
from finemem_lib.data.synthetic import SyntheticConfig, build_synthetic, write_synthetic

__all__ = [
    "MAB_SPLITS",
    "QA",
    "SYNTHETIC_SOURCES",
    "DataNotAvailableError",
    "DataSchemaError",
    "Instance",
    "SyntheticConfig",
    "build_synthetic",
    "chunk_text",
    "default_chunk_size",
    "load_memalpha",
    "load_memalpha_mab",
    "load_memoryagentbench",
    "make_token_counter",
    "pack_sentences",
    "read_memalpha_parquet",
    "write_memalpha_parquet",
    "write_synthetic",
]
