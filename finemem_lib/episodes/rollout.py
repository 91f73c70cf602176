"""Episode rollouts: G memory-construction episodes per instance, batched across rollouts and instances.

At step t every live episode shows its chunk and memory to the manager (one batched ``generate``),
the completion is parsed and applied to that episode's memory, and the chunk's QAs are answered on
M_t (one batched reasoner call for all episodes) to give r_chunk(t). After the last chunk the
global questions (a subsample shared by the G rollouts of an instance) are answered over BM25
top-k on M_T, and the writer steps of the retrieved items are recorded as evidence.

An :class:`Episode` then gives every reward component, and :meth:`Episode.step_rewards` feeds
:func:`finemem_lib.core.rewards.step_rewards` with no glue.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import torch

from finemem_lib.agents.policy import ManagerPolicy, SamplingParams, id_style_for, sampling_from_config
from finemem_lib.agents.reasoner import Reasoner
from finemem_lib.agents.review_decoding import Segment
from finemem_lib.core import rewards
from finemem_lib.core.memory import Memory, MemoryItem, Operation, OpResult
from finemem_lib.core.ops import format_score, parse_operations
from finemem_lib.core.tokens import TokenCounter, regex_token_count
from finemem_lib.data.instance import Instance
from finemem_lib.episodes.advantages import episode_group_advantages as group_advantages  # noqa: F401 (re-export)
from finemem_lib.episodes.advantages import group_step_rewards  # noqa: F401 (re-export)
from finemem_lib.episodes.qa import (
    MemoryQuestions,
    QAOptions,
    QAResult,
    answer_over_memories,
    chunk_correctness_many,
    evidence_steps,
    mean_score,
    qa_options_from_config,
    sample_questions,
)
from finemem_lib.infra.progress import progress


@dataclass
class StepRecord:
    """What happened at one chunk step of one episode."""

    step: int
    prompt_ids: torch.Tensor
    completion_ids: torch.Tensor
    old_logprobs: torch.Tensor
    text: str
    operations: list[Operation]
    results: list[OpResult]
    n_emitted: int
    format_score: float
    memory_items: int
    memory_tokens: int
    chunk_correct: np.ndarray
    memory_after: tuple[MemoryItem, ...] = ()  # M_t, for inspection (the episode viewer)
    segments: list[Segment] | None = None  # review style restated by the harness: the decisions, each a sample

    @property
    def n_executed(self) -> int:
        return sum(r.ok for r in self.results)


@dataclass
class Episode:
    """One rollout of the manager over one instance, with everything the rewards need."""

    instance_id: str
    source: str
    rollout: int
    chunk_tokens: list[int]
    steps: list[StepRecord] = field(default_factory=list)
    memory: Memory | None = None
    global_results: list[QAResult] = field(default_factory=list)

    @property
    def T(self) -> int:
        return len(self.steps)

    @property
    def r_global(self) -> float:
        """Mean score of the global questions (0 when none were asked)."""
        return mean_score(self.global_results)

    @property
    def scores(self) -> np.ndarray:
        return np.array([r.score for r in self.global_results], dtype=np.float64)

    @property
    def evidence_steps(self) -> list[list[int]]:
        return evidence_steps(self.global_results)

    @property
    def N(self) -> np.ndarray:
        """Normalised evidence contribution per step."""
        return rewards.evidence_contribution(self.scores, self.evidence_steps, self.T)

    @property
    def r_chunk(self) -> np.ndarray:
        """Per-step accuracy on the chunk's own QAs (0 for a chunk without QAs)."""
        return rewards.chunk_step_reward([s.chunk_correct.tolist() for s in self.steps])

    @property
    def r_fmt(self) -> np.ndarray:
        return np.array([s.format_score for s in self.steps], dtype=np.float64)

    @property
    def memory_tokens(self) -> int:
        return self.steps[-1].memory_tokens if self.steps else 0

    @property
    def r_comp(self) -> float:
        return float(rewards.compression_reward(self.memory_tokens, self.chunk_tokens))

    def step_rewards(
        self,
        variant: str | rewards.RewardSpec,
        beta: float | None = None,
        w1: float | None = None,
        w2: float | None = None,
    ) -> np.ndarray:
        """The per-step reward r_t of a reward variant (see :func:`finemem_lib.core.rewards.step_rewards`)."""
        return rewards.step_rewards(
            variant, self.r_global, self.N, self.r_chunk, self.r_fmt, self.r_comp, beta=beta, w1=w1, w2=w2
        )


@dataclass(frozen=True)
class RolloutSettings:
    """How episodes are rolled out (see the ``rollout`` section of the profiles)."""

    num_generations: int = 8
    question_ratio: float = 1.0
    top_k: int = 2
    sampling: SamplingParams = field(default_factory=SamplingParams)
    chunk_qas: bool = True
    qa: QAOptions | None = None
    subsample_min_questions: int = 0
    one_call: bool = True  # a chunk step's prompts (instances x G) go to the manager in one call

    @property
    def qa_options(self) -> QAOptions:
        """Retrieval and scoring options (``top_k`` wins over ``qa.top_k``)."""
        if self.qa is None:
            return QAOptions(top_k=self.top_k)
        return self.qa if self.qa.top_k == self.top_k else replace(self.qa, top_k=self.top_k)


def settings_from_config(cfg: dict, training: bool) -> RolloutSettings:
    """Rollout settings from a profile: ``rollout`` (G, question ratios), ``retrieval.top_k``, ``manager.sampling``."""
    section = cfg.get("rollout", {})
    ratio_key = "question_ratio_train" if training else "question_ratio_eval"
    sampling = sampling_from_config(cfg.get("manager", {}).get("sampling", {}))
    if not training:
        sampling = SamplingParams(**{**asdict(sampling), **section.get("eval_sampling", {"temperature": 0.0})})
    return RolloutSettings(
        num_generations=int(section.get("num_generations", 8)) if training else 1,
        question_ratio=float(section.get(ratio_key, 0.2 if training else 1.0)),
        top_k=int(cfg.get("retrieval", {}).get("top_k", 2)),
        sampling=sampling,
        chunk_qas=bool(section.get("chunk_qas", True)),
        qa=qa_options_from_config(cfg),
        subsample_min_questions=int(section.get("subsample_min_questions", 0)) if training else 0,
        one_call=bool(section.get("one_call", True)),
    )


def rollout(
    instances: Sequence[Instance],
    policy: ManagerPolicy,
    reasoner: Reasoner,
    settings: RolloutSettings,
    seed: int = 0,
    token_counter: TokenCounter = regex_token_count,
    progress_desc: str | None = None,
) -> list[list[Episode]]:
    """Roll out ``settings.num_generations`` episodes per instance; returns ``[instance][rollout]``.

    ``progress_desc`` names a progress bar over the chunk steps (see :mod:`finemem_lib.infra.progress`).

    Deterministic for a given seed: sampling is seeded per step, and the global-question subsample
    of instance i is drawn from ``random.Random(seed, i)``.
    """
    if not instances:
        return []
    options = settings.qa_options
    options.scorer.check(sorted({inst.source for inst in instances}))  # before any generation
    G = settings.num_generations
    id_style = id_style_for(policy.style)
    episodes = [
        [Episode(inst.id, inst.source, g, [token_counter(c) for c in inst.chunks]) for g in range(G)]
        for inst in instances
    ]
    memories = [[Memory(token_counter, id_style=id_style, seed=seed * 1000 + g) for g in range(G)] for _ in instances]
    T = max(inst.num_chunks for inst in instances)
    steps = progress(range(T), progress_desc, total=T) if progress_desc else range(T)
    for t in steps:
        live = [(i, g) for i, inst in enumerate(instances) if t < inst.num_chunks for g in range(G)]
        _run_step(t, live, instances, episodes, memories, policy, reasoner, settings, seed)
    questions = [
        sample_questions(
            inst.questions, settings.question_ratio, random.Random(f"{seed}-{i}"), settings.subsample_min_questions
        )
        for i, inst in enumerate(instances)
    ]
    tasks = [
        MemoryQuestions(memories[i][g], questions[i], inst.source) for i, inst in enumerate(instances) for g in range(G)
    ]
    answered = answer_over_memories(tasks, reasoner, options=options)
    for (i, g), results in zip(((i, g) for i in range(len(instances)) for g in range(G)), answered, strict=True):
        episodes[i][g].memory = memories[i][g]
        episodes[i][g].global_results = results
    return episodes


def _run_step(
    t: int,
    live: list[tuple[int, int]],
    instances: Sequence[Instance],
    episodes: list[list[Episode]],
    memories: list[list[Memory]],
    policy: ManagerPolicy,
    reasoner: Reasoner,
    settings: RolloutSettings,
    seed: int,
) -> None:
    chunks = [instances[i].chunks[t] for i, _ in live]
    rows = {"batch_size": len(live)} if settings.one_call else {}  # else manager.batch_size rows per call
    step_prompts, generations = policy.act(
        chunks, [memories[i][g] for i, g in live], settings.sampling, seed=seed * 100_003 + t, **rows
    )
    applied = []
    for (i, g), prompt, gen in zip(live, step_prompts, generations, strict=True):
        parsed = parse_operations(gen.text, policy.style)
        results = memories[i][g].apply_all(parsed.operations, t, prompt.sentences or None)
        applied.append((parsed, results))
    if settings.chunk_qas:
        tasks = [MemoryQuestions(memories[i][g], instances[i].chunk_qas[t], instances[i].source) for i, g in live]
        correct = chunk_correctness_many(tasks, reasoner, options=settings.qa_options)
    else:
        correct = [np.zeros(0) for _ in live]
    for (i, g), gen, (parsed, results), ok in zip(live, generations, applied, correct, strict=True):
        memory = memories[i][g]
        episodes[i][g].steps.append(
            StepRecord(
                step=t,
                prompt_ids=gen.prompt_ids,
                completion_ids=gen.completion_ids,
                old_logprobs=gen.logprobs,
                text=gen.text,
                operations=parsed.operations,
                results=results,
                n_emitted=parsed.n_emitted,
                format_score=format_score(parsed, results),
                memory_items=len(memory),
                memory_tokens=memory.num_tokens(),
                chunk_correct=ok,
                memory_after=tuple(memory.items),
                segments=gen.segments,
            )
        )
