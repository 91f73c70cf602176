"""Chunk-QA builder: the per-chunk factoid QAs behind the Chunk-level Step Reward (CSR).

As in Fine-Mem: a generator LLM writes short factoid QA pairs for each chunk; a verifier LLM answers
each question from that chunk alone and the pair is kept only when the verifier's answer matches;
duplicates are removed (a question asked twice keeps its first verified pair) and at most ``k`` pairs
(default 5) are kept per chunk, in generation order.

Both models are reached through :class:`finemem_lib.agents.llm_client.ChatClient` (any OpenAI-compatible
server; base URL, model and key from the environment with :meth:`ChatClient.from_env`). Chunks are
processed concurrently. Each finished chunk is appended to a JSONL cache (one line per chunk, keyed
by a hash of the chunk text and the build settings) and flushed at once, so an interrupted build
resumes where it stopped: cached chunks are never asked again, nothing is lost or duplicated. A chunk
that ends with no verified pair (the generator wrote none, or the verifier confirmed none), or whose
requests or replies fail after the client's retries (an empty or cut-off reply, a reply that is not a
usable JSON list, however pathological), is reported as failed and left out of the cache, so the next
run tries it again; one failed chunk never stops the build of the others.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from finemem_lib.agents.llm_client import ChatClient
from finemem_lib.core import safe_json
from finemem_lib.core.metrics import normalize_answer
from finemem_lib.data.instance import QA, Instance
from finemem_lib.infra.progress import progress_bar

log = logging.getLogger(__name__)

PROMPT_VERSION = "chunk-qa-v1"
NOT_ANSWERABLE = "NOT ANSWERABLE"

GENERATOR_PROMPT = """Write {n} short factoid question-answer pairs about the passage below.
Rules:
- Each question must be answerable from this passage alone, without outside knowledge.
- Each question names what it asks about (no "this passage", "the text", "he" without a name).
- Each answer is a short span of at most {max_words} words taken from the passage.
- The answer must not appear in its question. Do not repeat a question.
Return only a JSON list, e.g. [{{"question": "...", "answer": "..."}}].

Passage:
<<<
{chunk}
>>>"""

VERIFIER_PROMPT = """Answer the question using only the passage below. If the passage does not contain the answer, \
reply exactly {not_answerable}. Reply with the answer only, in a few words.

Passage:
<<<
{chunk}
>>>

Question: {question}"""


class ChunkQAError(RuntimeError):
    """A model reply that cannot be used (e.g. no JSON list of QA pairs)."""


class NoVerifiedQA(ChunkQAError):
    """A chunk for which no QA pair was generated or none survived the checks and the verifier."""


@dataclass(frozen=True)
class ChunkQASettings:
    """Knobs of the builder (``data.chunk_qa`` in the profile YAML).

    ``candidates`` pairs are requested per chunk (more than ``k``, since the verifier drops some);
    an unparseable generator reply is re-asked up to ``parse_retries`` times.
    """

    k: int = 5
    candidates: int = 8
    max_answer_words: int = 5
    concurrency: int = 8
    parse_retries: int = 2
    generator_temperature: float = 0.7
    max_tokens: int = 1024

    def __post_init__(self) -> None:
        if self.k < 1 or self.candidates < self.k:
            raise ValueError(f"chunk_qa needs 1 <= k <= candidates, got k={self.k}, candidates={self.candidates}")
        if self.max_answer_words < 1 or self.concurrency < 1 or self.parse_retries < 0:
            raise ValueError("chunk_qa max_answer_words and concurrency must be >= 1, parse_retries >= 0")


@dataclass
class BuildReport:
    """What a build did: chunks answered from the cache, built now, and failed (with the reason).

    ``failed`` includes the ``no_qa`` chunks that ended with no verified pair (not cached either, so a
    later build asks again).
    """

    cached: int = 0
    built: int = 0
    failed: list[tuple[str, int, str]] = field(default_factory=list)  # (instance id, chunk index, error)
    no_qa: int = 0
    generated: int = 0
    kept: int = 0

    @property
    def complete(self) -> bool:
        return not self.failed


# ---------------------------------------------------------------------------- parsing and checks
_SURROGATE = re.compile("[\ud800-\udfff]")


def _strip_thinking(text: str) -> str:
    return text.split("</think>")[-1].strip()


def _fenced_body(text: str) -> str:
    """The body of the first complete code fence (tag line dropped), else the text (linear time)."""
    start = text.find("```")
    end = text.find("```", start + 3) if start >= 0 else -1
    if end < 0:
        return text
    body = text[start + 3 : end]
    return body[4:] if body.startswith("json") else body


def _usable_text(value: object) -> bool:
    return isinstance(value, str) and bool(value.strip()) and _SURROGATE.search(value) is None


def parse_qa_pairs(reply: str) -> list[tuple[str, str]]:
    """(question, answer) pairs from a generator reply: a JSON list, possibly fenced or inside an object.

    The JSON is read with :mod:`finemem_lib.core.safe_json`, so a pathological reply (a 5,000-digit number,
    deep nesting) is a :class:`ChunkQAError` like any other unusable reply; a pair whose text is not
    valid Unicode (a lone surrogate) is dropped.
    """
    text = _fenced_body(_strip_thinking(reply))
    start, end = text.find("["), text.rfind("]")
    if start < 0 or end <= start:
        raise ChunkQAError(f"no JSON list in generator reply: {reply[:120]!r}")
    try:
        items = safe_json.loads(text[start : end + 1])
    except safe_json.JSONScanError as exc:
        raise ChunkQAError(f"generator reply is not valid JSON ({exc}): {reply[:120]!r}") from None
    if not isinstance(items, list):
        raise ChunkQAError(f"no JSON list in generator reply: {reply[:120]!r}")
    pairs = []
    for item in items:
        if not isinstance(item, dict):
            continue
        question, answer = item.get("question"), item.get("answer")
        if isinstance(answer, int | float) and not isinstance(answer, bool) and math.isfinite(answer):
            answer = str(answer)
        if _usable_text(question) and _usable_text(answer):
            pairs.append((question.strip(), answer.strip()))
    if items and not pairs:
        raise ChunkQAError(f"generator reply has no {{question, answer}} objects: {reply[:120]!r}")
    return pairs


def usable_pairs(pairs: Sequence[tuple[str, str]], max_answer_words: int) -> list[tuple[str, str]]:
    """Drop long answers, answers given away by their question, and repeated (question, answer) pairs."""
    seen: set[tuple[str, str]] = set()
    kept = []
    for question, answer in pairs:
        norm_q, norm_a = normalize_answer(question), normalize_answer(answer)
        if not norm_a or len(answer.split()) > max_answer_words or f" {norm_a} " in f" {norm_q} ":
            continue
        if (norm_q, norm_a) not in seen:
            seen.add((norm_q, norm_a))
            kept.append((question, answer))
    return kept


def distinct_questions(pairs: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """The first pair of each question (compared after normalisation), in order."""
    seen: set[str] = set()
    kept = []
    for question, answer in pairs:
        norm_q = normalize_answer(question)
        if norm_q not in seen:
            seen.add(norm_q)
            kept.append((question, answer))
    return kept


def verifier_agrees(reply: str, answer: str) -> bool:
    """True when the verifier found an answer and it matches the generated one (normalised containment)."""
    said = normalize_answer(_strip_thinking(reply))
    gold = normalize_answer(answer)
    if not said or said == normalize_answer(NOT_ANSWERABLE) or not gold:
        return False
    return gold in said or said in gold


# ---------------------------------------------------------------------------- cache
class ChunkQACache:
    """Append-only JSONL cache of finished chunks, safe across threads and interruptions.

    A torn last line (an interrupted write, even one cut inside a multi-byte character) is ignored
    when loading; a key seen twice keeps its first entry, so the loaded cache never duplicates a chunk.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self.entries: dict[str, list[tuple[str, str]]] = {}
        if self.path.is_file():
            self._load()

    def _load(self) -> None:
        for n, raw in enumerate(self.path.read_bytes().splitlines(), start=1):
            try:
                record = safe_json.loads(raw.decode("utf-8"))
                key, qas = record["key"], [(q, a) for q, a in record["qas"]]
                if not isinstance(key, str) or not all(_usable_text(q) and _usable_text(a) for q, a in qas):
                    raise ValueError("not a cache entry")
            except (UnicodeDecodeError, KeyError, TypeError, ValueError):  # JSONScanError is a ValueError
                log.warning("%s line %d: unreadable entry ignored (an interrupted write?)", self.path, n)
                continue
            self.entries.setdefault(key, qas)

    def get(self, key: str) -> list[tuple[str, str]] | None:
        return self.entries.get(key)

    def put(self, key: str, qas: Sequence[tuple[str, str]]) -> None:
        with self._lock:
            if key in self.entries:
                return
            self.entries[key] = list(qas)
            with self.path.open("a", encoding="utf-8") as handle:
                if handle.tell() > 0 and not self._ends_with_newline():
                    handle.write("\n")  # after a torn line, start clean
                handle.write(json.dumps({"key": key, "qas": [list(p) for p in qas]}, ensure_ascii=False) + "\n")
                handle.flush()
                os.fsync(handle.fileno())

    def _ends_with_newline(self) -> bool:
        with self.path.open("rb") as handle:
            handle.seek(-1, os.SEEK_END)
            return handle.read(1) == b"\n"


# ---------------------------------------------------------------------------- builder
class ChunkQABuilder:
    """Builds ``k`` verified factoid QAs per chunk with a generator and a verifier model."""

    def __init__(
        self,
        generator: ChatClient,
        verifier: ChatClient,
        cache_path: str | Path,
        settings: ChunkQASettings | None = None,
    ) -> None:
        self.generator, self.verifier = generator, verifier
        self.settings = settings or ChunkQASettings()
        self.cache = ChunkQACache(cache_path)

    @classmethod
    def from_env(
        cls,
        cache_path: str | Path,
        settings: ChunkQASettings | None = None,
        generator_prefix: str = "CHUNKQA_GENERATOR",
        verifier_prefix: str = "CHUNKQA_VERIFIER",
        **client_kwargs: Any,
    ) -> ChunkQABuilder:
        """Clients from ``{prefix}_BASE_URL``, ``{prefix}_MODEL`` and ``{prefix}_API_KEY``."""
        return cls(
            ChatClient.from_env(generator_prefix, **client_kwargs),
            ChatClient.from_env(verifier_prefix, **client_kwargs),
            cache_path,
            settings,
        )

    def chunk_key(self, chunk: str) -> str:
        s = self.settings
        parts = [PROMPT_VERSION, self.generator.model, self.verifier.model, str(s.k), str(s.candidates)]
        parts += [str(s.max_answer_words), chunk]
        return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()

    def _generate(self, chunk: str) -> list[tuple[str, str]]:
        s = self.settings
        prompt = GENERATOR_PROMPT.format(n=s.candidates, max_words=s.max_answer_words, chunk=chunk)
        messages = [{"role": "user", "content": prompt}]
        error: ChunkQAError | None = None
        for _ in range(s.parse_retries + 1):
            reply = self.generator.chat(messages, temperature=s.generator_temperature, max_tokens=s.max_tokens)
            try:
                return parse_qa_pairs(reply)
            except ChunkQAError as exc:
                error = exc
        raise ChunkQAError(f"after {s.parse_retries + 1} tries: {error}")

    def build_chunk(self, chunk: str) -> tuple[list[tuple[str, str]], int]:
        """Verified QA pairs for one chunk (not cached) and the number of generated candidates.

        Raises :class:`NoVerifiedQA` when none is left, :class:`ChunkQAError` or
        :class:`~finemem_lib.agents.llm_client.LLMError` when a reply cannot be used.
        """
        generated = self._generate(chunk)
        if not generated:
            raise NoVerifiedQA("the generator returned no QA pairs")
        candidates = usable_pairs(generated, self.settings.max_answer_words)
        if not candidates:
            raise NoVerifiedQA(f"none of the {len(generated)} generated pairs passed the checks")
        batch = [
            [
                {
                    "role": "user",
                    "content": VERIFIER_PROMPT.format(not_answerable=NOT_ANSWERABLE, chunk=chunk, question=q),
                }
            ]
            for q, _ in candidates
        ]
        replies = self.verifier.chat_many(batch, temperature=0.0, max_tokens=64)
        verified = [
            pair for pair, reply in zip(candidates, replies, strict=True) if verifier_agrees(str(reply), pair[1])
        ]
        if not verified:
            raise NoVerifiedQA(
                f"the verifier confirmed none of {len(candidates)} usable pairs ({len(generated)} generated)"
            )
        return distinct_questions(verified)[: self.settings.k], len(generated)

    def build(
        self, instances: Sequence[Instance], on_chunk_done: Callable[[int, int], None] | None = None
    ) -> tuple[list[Instance], BuildReport]:
        """Instances with ``chunk_qas`` filled from the cache or built now, and a :class:`BuildReport`.

        Failed chunks, including those left with no verified pair, get no QAs and are not cached
        (see ``report.failed`` and ``report.no_qa``); run again to retry them.
        ``on_chunk_done(done, total)`` is called after each chunk built now (e.g. for a progress bar).
        """
        report = BuildReport()
        todo: dict[str, tuple[str, str, int]] = {}  # key -> (chunk, first instance id, chunk index)
        for instance in instances:
            for t, chunk in enumerate(instance.chunks):
                key = self.chunk_key(chunk)
                if self.cache.get(key) is not None:
                    report.cached += 1
                elif key not in todo:
                    todo[key] = (chunk, instance.id, t)
        self._run(todo, report, on_chunk_done)
        built = []
        for instance in instances:
            chunk_qas = tuple(
                tuple(QA(q, (a,)) for q, a in (self.cache.get(self.chunk_key(c)) or [])) for c in instance.chunks
            )
            built.append(replace(instance, chunk_qas=chunk_qas))
        return built, report

    def _run(
        self,
        todo: dict[str, tuple[str, str, int]],
        report: BuildReport,
        on_chunk_done: Callable[[int, int], None] | None,
    ) -> None:
        def build_and_store(key: str, chunk: str) -> tuple[list[tuple[str, str]], int]:
            qas, generated = self.build_chunk(chunk)
            self.cache.put(key, qas)  # stored by the worker, so finished work survives an interruption
            return qas, generated

        pool = ThreadPoolExecutor(max_workers=self.settings.concurrency)
        futures: dict[Future, str] = {
            pool.submit(build_and_store, key, chunk): key for key, (chunk, _, _) in todo.items()
        }
        done_count = 0
        bar = progress_bar(len(todo), "chunk QAs")
        try:
            pending = set(futures)
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    key = futures[future]
                    _, instance_id, t = todo[key]
                    bar.update(1)
                    try:
                        qas, generated = future.result()
                    except Exception as exc:  # one chunk's failure, whatever it is, never ends the build
                        reason = str(exc) if isinstance(exc, ChunkQAError) else f"{type(exc).__name__}: {exc}"
                        report.failed.append((instance_id, t, reason))
                        report.no_qa += isinstance(exc, NoVerifiedQA)
                        log.warning("chunk QA failed for %s chunk %d: %s", instance_id, t, reason)
                        continue
                    report.built += 1
                    report.generated += generated
                    report.kept += len(qas)
                    done_count += 1
                    if on_chunk_done is not None:
                        on_chunk_done(done_count, len(todo))
        finally:
            bar.close()
            pool.shutdown(wait=True, cancel_futures=True)
