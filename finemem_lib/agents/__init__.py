"""The agents around the memory: the frozen reasoner (and the manager policy).

The reasoner interface and its backend factory are exported here; backends that need heavy
libraries (torch, transformers) are imported only when built.
"""

from finemem_lib.agents.reasoner import Answer, AnswerRequest, Reasoner
from finemem_lib.agents.reasoner_factory import build_reasoner

__all__ = ["Answer", "AnswerRequest", "Reasoner", "build_reasoner"]
