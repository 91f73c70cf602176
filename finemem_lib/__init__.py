"""finemem_lib: the library behind the Fine-Mem reproduction notebooks.

Fine-Mem trains an LLM memory manager with GRPO using a chunk-level step reward (CSR) and
evidence-anchored reward attribution (EARA). The core pieces are importable on their own:

- :mod:`finemem_lib.memory`     the flat memory with provenance
- :mod:`finemem_lib.ops`        tool schemas and a tolerant parser of model output
- :mod:`finemem_lib.retrieval`  BM25 top-k over memory items
- :mod:`finemem_lib.metrics`    MemoryAgentBench and Mem-alpha scoring rules
- :mod:`finemem_lib.rewards`    the reward and attribution kernels
"""

__version__ = "0.1.0"

from finemem_lib.quiet import quiet_third_party as _quiet_third_party

_quiet_third_party()
