"""finemem_lib: the library behind the Fine-Mem reproduction notebooks.

Fine-Mem trains an LLM memory manager with GRPO using a chunk-level step reward (CSR) and
evidence-anchored reward attribution (EARA). The core pieces are importable on their own:

- :mod:`finemem_lib.core.memory`     the flat memory with provenance
- :mod:`finemem_lib.core.ops`        tool schemas and a tolerant parser of model output
- :mod:`finemem_lib.core.retrieval`  BM25 top-k over memory items
- :mod:`finemem_lib.core.metrics`    MemoryAgentBench and Mem-alpha scoring rules
- :mod:`finemem_lib.core.rewards`    the reward and attribution kernels
"""

__version__ = "0.1.0"

from collections.abc import Callable as _Callable
from collections.abc import Mapping as _Mapping
from typing import Any as _Any

from finemem_lib.core import metrics as _metrics
from finemem_lib.infra import quiet as _quiet

_quiet.configure()


def _openai_judge(section: _Mapping[str, _Any]) -> _Callable[[], _metrics.Judge]:
    """The LLM judge over an OpenAI-compatible server (:mod:`finemem_lib.agents.judge`, imported on first use)."""
    from finemem_lib.agents.judge import judge_factory

    return judge_factory(section)


_metrics.register_judge_backend("openai", _openai_judge)  # the scorer (core) is handed its judge from above
