"""The ``finemem`` command: a table of subcommands (run a trained manager on your text, ask the memory, train, ...).

Examples::

    finemem memorize --manager data/default/models/sft --input notes.txt --out memory.json --html episode.html
    finemem ask --memory memory.json "Where does Ada Brook live?"
    finemem data --profile default                      # = python -m finemem_lib.data
    finemem train --profile smoke --variant finemem     # = python -m finemem_lib.training.cli
    finemem evaluate --help                             # = python -m finemem_lib.evaluation
    finemem study --profile long --plan configs/study_long.yaml   # = python -m finemem_lib.training.study

Every subcommand has ``--help``. ``memorize`` and ``ask`` are defined here; the others forward their
arguments to the ``main(argv)`` of the module named in :data:`SUBCOMMANDS` (imported only when run: they
load torch and TRL).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path
from typing import Any

from finemem_lib.agents import AnswerRequest, build_reasoner
from finemem_lib.agents.policy import MANAGER_META_FILE, load_manager
from finemem_lib.core.retrieval import BM25Index
from finemem_lib.core.sentences import split_sentences
from finemem_lib.data.chunking import DEFAULT_CHUNK_SIZE, chunk_text, make_token_counter
from finemem_lib.data.instance import Instance
from finemem_lib.episodes.rollout import rollout, settings_from_config
from finemem_lib.infra.config import load_profile, profile_names
from finemem_lib.report.memory_file import MemoryFileError, operation_records, read_memory_file, write_memory_file
from finemem_lib.report.viewer import write_episode_html


@dataclass(frozen=True)
class Subcommand:
    """One ``finemem`` subcommand: its help line, and the module whose ``main(argv)`` runs it (None: defined here)."""

    help: str
    module: str | None = None


SUBCOMMANDS: dict[str, Subcommand] = {
    "memorize": Subcommand("chunk text files and run a trained manager over them; write the memory as JSON"),
    "ask": Subcommand("answer a question from a memory file (BM25 top-k + the profile's reasoner)"),
    "train": Subcommand("step-credit GRPO training (python -m finemem_lib.training.cli)", "finemem_lib.training.cli"),
    "study": Subcommand(
        "the resumable variant and ablation study (python -m finemem_lib.training.study)", "finemem_lib.training.study"
    ),
    "evaluate": Subcommand("held-out evaluation (python -m finemem_lib.evaluation)", "finemem_lib.evaluation.__main__"),
    "data": Subcommand("prepare a profile's data (python -m finemem_lib.data)", "finemem_lib.data.cli"),
}


class UsageError(Exception):
    """Bad input from the command line: printed as one line, exit status 2."""


# ---------------------------------------------------------------------------- chunking
def profile_chunks(text: str, cfg: Mapping[str, Any], chunk_size: int | None = None) -> list[str]:
    """Chunk ``text`` the way the profile chunks its data.

    Synthetic profiles cut ``data.synthetic.sentences_per_chunk`` sentences per chunk; hub profiles
    pack sentences under 2048 tokens of ``data.tokenizer`` (MemoryAgentBench's rule). ``chunk_size``
    (tokens) forces sentence packing with that budget.
    """
    data = cfg.get("data", {})
    if chunk_size is None and data.get("kind", "synthetic") == "synthetic":
        per_chunk = int(data.get("synthetic", {}).get("sentences_per_chunk", 8))
        sentences = split_sentences(text)
        return [" ".join(sentences[i : i + per_chunk]) for i in range(0, len(sentences), per_chunk)]
    counter = make_token_counter(data.get("tokenizer"))
    return chunk_text(text, chunk_size or DEFAULT_CHUNK_SIZE, counter)


def read_inputs(files: Sequence[str | Path]) -> list[tuple[Path, str]]:
    """The text of each input file; a missing, unreadable or empty file is a :class:`UsageError`."""
    texts = []
    for name in files:
        path = Path(name)
        if not path.is_file():
            raise UsageError(f"--input {path}: no such file (pass one or more text files)")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise UsageError(f"--input {path}: not UTF-8 text") from None
        if not text.strip():
            raise UsageError(f"--input {path}: the file is empty")
        texts.append((path, text))
    return texts


# ---------------------------------------------------------------------------- memorize
def memorize(args: argparse.Namespace) -> int:
    """Chunk the inputs, run the manager over the chunks (one greedy episode), write the memory file."""
    cfg = load_profile(args.profile)
    manager_dir = Path(args.manager)
    if not manager_dir.is_dir():
        raise UsageError(
            f"--manager {manager_dir}: no such folder; pass a trained manager folder, e.g. data/default/models/sft "
            "(written by notebook 02) or data/default/grpo/<run>/final (written by 'finemem train')"
        )
    if not (manager_dir / MANAGER_META_FILE).is_file() and not (manager_dir / "config.json").is_file():
        raise UsageError(f"--manager {manager_dir}: neither {MANAGER_META_FILE} nor config.json is there")
    chunks, sources = [], []
    for path, text in read_inputs(args.input):
        file_chunks = profile_chunks(text, cfg, args.chunk_size)
        chunks.extend(file_chunks)
        sources.extend([str(path)] * len(file_chunks))
    if not chunks:
        raise UsageError("the inputs hold no sentences to memorize")
    policy = load_manager(manager_dir)
    instance = Instance(id="input", source="chunk_qa", chunks=tuple(chunks), questions=())
    settings = settings_from_config({**cfg, "rollout": {**cfg.get("rollout", {}), "chunk_qas": False}}, training=False)
    episode = rollout([instance], policy, build_reasoner({"backend": "offline"}), settings, seed=args.seed)[0][0]
    steps = [
        {
            "step": record.step,
            "input": sources[record.step],
            "chunk": chunks[record.step],
            "operations": operation_records(record.operations, record.results),
            "format_score": record.format_score,
            "memory_items": record.memory_items,
        }
        for record in episode.steps
    ]
    out = write_memory_file(
        args.out,
        episode.memory,
        steps,
        manager=str(manager_dir),
        profile=cfg.get("name"),
        inputs=[str(p) for p in args.input],
        op_style=policy.style,
        memory_tokens=episode.memory_tokens,
    )
    executed = sum(op["executed"] for s in steps for op in s["operations"])
    emitted = sum(len(s["operations"]) for s in steps)
    print(
        f"{len(chunks)} chunks -> {len(episode.memory)} memory items ({episode.memory_tokens} tokens); "
        f"{executed}/{emitted} operations executed; memory written to {out}"
    )
    if args.html:
        page = write_episode_html(args.html, episode, instance, title=f"finemem memorize: {', '.join(args.input)}")
        print(f"episode page: {page}")
    return 0


# ---------------------------------------------------------------------------- ask
def ask(args: argparse.Namespace) -> int:
    """BM25 top-k over the memory file, the profile's reasoner; print the answer and the items it used."""
    question = " ".join(args.question).strip()
    if not question:
        raise UsageError('pass a question, e.g. finemem ask --memory memory.json "Where does Ada live?"')
    try:
        items, _ = read_memory_file(args.memory)
    except MemoryFileError as exc:
        raise UsageError(str(exc)) from None
    cfg = load_profile(args.profile)
    top_k = args.top_k or int(cfg.get("retrieval", {}).get("top_k", 2))
    hits = BM25Index(items).search(question, top_k) if items else []
    used = [items[hit.position] for hit in hits]
    reasoner = build_reasoner(cfg.get("reasoner"))
    answer = reasoner.answer([AnswerRequest(question, args.source, tuple(used))])[0]
    print(f"answer: {answer.text}")
    print(f"items used (BM25 top-{top_k} of {len(items)}):")
    for hit, item in zip(hits, used, strict=True):
        print(f"  [{item.id}] written at step {item.step}, bm25 {hit.score:.2f}: {item.content}")
    if not used:
        print("  (none: the memory is empty or the question has no word in common with it)")
    return 0


# ---------------------------------------------------------------------------- forwarded subcommands
def forward(command: str, argv: list[str]) -> int:
    """Run a forwarded subcommand: ``main(argv)`` of the module :data:`SUBCOMMANDS` names for it."""
    module = SUBCOMMANDS[command].module
    if module is None:
        raise ValueError(f"finemem {command} is defined here, not forwarded")
    return int(import_module(module).main(argv) or 0)


# ---------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="finemem",
        description="Fine-Mem memory manager: memorize text with a trained manager, ask the memory, train, evaluate.",
        epilog="examples:" + __doc__.split("Examples::", 1)[1].rsplit("Every", 1)[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    profile_help = f"profile ({', '.join(profile_names())}) or a YAML path; sets chunking, retrieval and reasoner"

    mem = sub.add_parser(
        "memorize",
        help=SUBCOMMANDS["memorize"].help,
        description="Chunk the input files the way the profile does, run the manager over the chunks (greedy), "
        "and write the final memory with each item's writer step and write history.",
    )
    mem.add_argument("--manager", required=True, help="trained manager folder (e.g. data/default/models/sft)")
    mem.add_argument("--input", nargs="+", required=True, metavar="FILE", help="text file(s), read in order")
    mem.add_argument("--out", default="memory.json", help="memory file to write (default: memory.json)")
    mem.add_argument("--html", default=None, metavar="FILE", help="also write the episode viewer page here")
    mem.add_argument("--profile", default="default", help=profile_help)
    mem.add_argument("--chunk-size", type=int, default=None, help="pack sentences into chunks of N tokens instead")
    mem.add_argument("--seed", type=int, default=0)
    mem.set_defaults(func=memorize)

    q = sub.add_parser(
        "ask",
        help=SUBCOMMANDS["ask"].help,
        description="Retrieve the BM25 top-k items of the memory for the question, answer with the profile's "
        "reasoner, and print the answer and the items it used.",
    )
    q.add_argument("--memory", required=True, help="memory file written by 'finemem memorize'")
    q.add_argument("question", nargs="+", help="the question (quote it)")
    q.add_argument("--profile", default="default", help=profile_help)
    q.add_argument("--top-k", type=int, default=None, help="items retrieved (default: the profile's retrieval.top_k)")
    q.add_argument(
        "--source",
        default="chunk_qa",
        help="data source whose instruction and scoring the reasoner uses (default chunk_qa: a short answer)",
    )
    q.set_defaults(func=ask)

    for name, command in SUBCOMMANDS.items():
        if command.module is not None:
            sub.add_parser(name, help=command.help, add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in SUBCOMMANDS and SUBCOMMANDS[argv[0]].module is not None:
        return forward(argv[0], argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except UsageError as exc:
        print(f"finemem {args.command}: {exc}", file=sys.stderr)
        return 2
    except FileNotFoundError as exc:  # a missing profile or model file names itself
        print(f"finemem {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
