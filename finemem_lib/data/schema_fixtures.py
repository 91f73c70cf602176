"""Small, schema-exact copies of the paper's datasets and a tiny manager model, written to a Hub-like folder.

The paper profile reads three Hub datasets and two models. This module writes stand-ins for all of
them, a few rows each, in the published layouts, so the whole paper path runs offline
(``configs/paper-smoke.yaml``; ``python -m finemem_lib.data.schema_fixtures OUT``):

- ``Memalpha/{train,test}.parquet``: ``YuWangX/Memalpha`` as Mem-alpha's ``process_data.py`` writes it
  with pandas: ``instance_id`` (int), ``prompt``, ``chunks`` (JSON string), ``questions_and_answers``
  (JSON string of ``{question, answer}``; an answer is a string or a list; booksum's is the keywords
  joined by ``", "``), ``data_source`` (the real
  names: squad, hotpotqa, perltqa, lme_train, booksum, pubmed-rct, icl_trec_coarse_6600shot_balance),
  ``metadata`` (JSON string: ``{"data_source", "metadata"}`` as the merge step leaves it),
  ``num_chunks``, ``num_questions``. Chunks use Mem-alpha's dialogue templates.
- ``Memalpha-Memoryagentbench/{train,test}.parquet``: the processed MemoryAgentBench copy
  (``YuWangX/Memalpha-Memoryagentbench``): the same columns, pre-chunked, ``data_source`` = the
  MemoryAgentBench sub-source (``ruler_qa1_197K``, ``longmemeval_s*``, ``icl_*``, ``infbench_sum_eng_shots2``),
  ``metadata`` = ``{"sub_source": ...}``; its ``train.parquet`` is empty (no columns), as published.
- ``MemoryAgentBench/data/<Split>-00000-of-00001.parquet``: raw ``ai-hyz/MemoryAgentBench``: ``context``,
  ``questions`` (list of str), ``answers`` (list of lists), ``metadata`` (a struct with ``source`` and
  the other published keys), one file per split.
- ``tiny-qwen3/``: a ``Qwen3ForCausalLM`` of about 32K parameters with random weights and a byte-level
  BPE tokenizer (chat template with tools) trained on the text above; a manager and an ``hf`` reasoner.

Everything is deterministic: the same call writes the same rows and the same model.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

MEMALPHA_DIR = "Memalpha"
MEMALPHA_MAB_DIR = "Memalpha-Memoryagentbench"
MAB_DIR = "MemoryAgentBench"
MODEL_DIR = "tiny-qwen3"

MEMALPHA_PROMPT = (
    "I will provide you with sequential information chunks. Please analyze each chunk and decide what memory "
    "operations to perform to store this information effectively. Use memory_insert, memory_update, or "
    "memory_delete operations as needed."
)
TINY_MODEL_SIZES: dict[str, Any] = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "head_dim": 16,
    "max_position_embeddings": 4096,
}
TINY_VOCAB_SIZE = 700

# (person, attribute, value): the facts the factoid sources talk about
_FACTS = [
    ("Alma Reyes", "works as", "a glassblower in Tacoma"),
    ("Alma Reyes", "was born in", "Oaxaca"),
    ("Bruno Keller", "plays", "the bassoon"),
    ("Bruno Keller", "keeps", "three grey cats"),
    ("Chen Lu", "studies", "tidal erosion"),
    ("Chen Lu", "drives", "a green tram"),
    ("Dara Osei", "grew up in", "Kumasi"),
    ("Dara Osei", "collects", "old railway maps"),
    ("Emil Varga", "repairs", "church organs"),
    ("Emil Varga", "lives on", "Linden Street"),
    ("Farah Nadim", "teaches", "Persian poetry"),
    ("Farah Nadim", "owns", "a red kayak"),
]
_LABELLED = [
    ("How far is the moon from the earth ?", "4"),
    ("Who wrote the novel Middlemarch ?", "3"),
    ("What does the abbreviation NASA stand for ?", "1"),
    ("Where is the river Danube ?", "5"),
    ("What is a group of crows called ?", "0"),
    ("Why do leaves change colour ?", "2"),
    ("When did the Berlin wall fall ?", "4"),
    ("Which city hosts the Louvre ?", "5"),
]
_ASSISTANT = "Thank you for sharing. I will remember this information."


def _dialogue(day: int, user: str, body: str) -> str:
    """A chunk in Mem-alpha's conversational template."""
    header = f"[Dialogue between User and Assistant on 2024-01-{day:02d} 00:00]"
    return f"{header}\n<User>{user}\n{body}\n<Assistant>{_ASSISTANT}"


def _fact_sentence(person: str, attribute: str, value: str) -> str:
    return f"{person} {attribute} {value}."


def _fact_chunks(offset: int, n_chunks: int, per_chunk: int = 2) -> tuple[list[str], list[tuple[str, str, str]]]:
    facts = [_FACTS[(offset + i) % len(_FACTS)] for i in range(n_chunks * per_chunk)]
    chunks = []
    for t in range(n_chunks):
        body = " ".join(_fact_sentence(*f) for f in facts[t * per_chunk : (t + 1) * per_chunk])
        chunks.append(_dialogue(t + 1, "Here are some new facts I learnt just now:", body))
    return chunks, facts


def _question(person: str, attribute: str) -> str:
    return f"{person} {attribute} what?"


def _classification_chunks(n_chunks: int, offset: int = 0) -> list[str]:
    chunks = []
    per_chunk = 3
    for t in range(n_chunks):
        rows = [_LABELLED[(offset + t * per_chunk + i) % len(_LABELLED)] for i in range(per_chunk)]
        body = "\n\n".join(f"Sentence: {s}\nLabel: {label}" for s, label in rows)
        chunks.append(_dialogue(t + 1, "Here are some classification examples to learn from:", body))
    return chunks


# ---------------------------------------------------------------------------- Memalpha
def memalpha_instances(split: str) -> list[dict[str, Any]]:
    """Standardised Memalpha instances (before the JSON encoding) for ``split``: one per source (two in train)."""
    if split not in ("train", "test"):
        raise ValueError(f"Memalpha splits are 'train' and 'test', got {split!r}")
    copies = 2 if split == "train" else 1
    base = 0 if split == "train" else 5
    instances = []
    for copy in range(copies):
        offset = base + 3 * copy
        chunks, facts = _fact_chunks(offset, 2)
        qas = [{"question": _question(p, a), "answer": v} for p, a, v in facts]
        instances.append({"data_source": "squad", "prompt": MEMALPHA_PROMPT, "chunks": chunks, "qas": qas})

        chunks, facts = _fact_chunks(offset + 1, 2)
        qas = [{"question": f"Which person {facts[0][1]} {facts[0][2]}?", "answer": facts[0][0]}]
        qas.append({"question": _question(facts[-1][0], facts[-1][1]), "answer": facts[-1][2]})
        instances.append({"data_source": "hotpotqa", "prompt": MEMALPHA_PROMPT, "chunks": chunks, "qas": qas})

        chunks, facts = _fact_chunks(offset + 2, 2)
        qas = [{"question": _question(p, a), "answer": f"{v}; {p.split()[0]}"} for p, a, v in facts[:2]]
        instances.append({"data_source": "perltqa", "prompt": MEMALPHA_PROMPT, "chunks": chunks, "qas": qas})

        sessions = [
            "[Event happened on 2024-02-03] <User> I adopted a beagle called Pepper today. <Assistant> Lovely!",
            "[Event happened on 2024-02-09] <User> Pepper learned to sit in two days. <Assistant> Well done, Pepper.",
        ]
        qas = [{"question": "What is the name of the dog I adopted?", "answer": "Pepper"}]
        instances.append({"data_source": "lme_train", "prompt": "", "chunks": sessions, "qas": qas})

        chunks = [
            "[Event happened on 2024-01-01 The user is reading a book]\n<User> The lighthouse keeper Mara found a "
            "sealed letter in the lamp room. <System> Please remember what the user reads on 2024-01-01.",
            "[Event happened on 2024-01-03 The user is reading a book]\n<User> The letter sent Mara north to find "
            "her brother at the salt mines. <System> Please remember what the user reads on 2024-01-03.",
        ]
        qas = [
            {
                "question": "Summarize the content of the book I read from 2024-01-01 to 2024-01-03",
                "answer": "lighthouse, letter, brother, salt mines",  # extract_booksum_keywords.py: ", ".join
            }
        ]
        instances.append({"data_source": "booksum", "prompt": MEMALPHA_PROMPT, "chunks": chunks, "qas": qas})

        chunks = [
            _dialogue(
                1, "Here are some labelled abstract sentences:", "To determine whether tea lowers pressure.\nLabel: 3"
            ),
            _dialogue(
                2, "Here are some labelled abstract sentences:", "Patients were randomised into two arms.\nLabel: 2"
            ),
        ]
        qas = [{"question": "Classify: Adults were assigned at random to the groups.", "answer": "2"}]
        instances.append({"data_source": "pubmed-rct", "prompt": MEMALPHA_PROMPT, "chunks": chunks, "qas": qas})

        chunks = _classification_chunks(2, offset)
        qas = [{"question": f"Sentence: {s}\nWhat is its label?", "answer": label} for s, label in _LABELLED[6:8]]
        instances.append(
            {"data_source": "icl_trec_coarse_6600shot_balance", "prompt": MEMALPHA_PROMPT, "chunks": chunks, "qas": qas}
        )
    return instances


def _memalpha_frame(instances: list[dict[str, Any]], metadata_key: str) -> pd.DataFrame:
    rows = []
    for i, inst in enumerate(instances):
        if metadata_key == "merged":  # Memalpha: the merge step keeps data_source and the per-dataset metadata
            metadata = {"data_source": inst["data_source"], "metadata": json.dumps({"sub_source": inst["data_source"]})}
        else:  # the processed MemoryAgentBench copy
            metadata = {"sub_source": inst["data_source"], **inst.get("extra", {})}
        rows.append(
            {
                "instance_id": i,
                "prompt": inst["prompt"],
                "chunks": json.dumps(inst["chunks"]),
                "questions_and_answers": json.dumps(inst["qas"]),
                "data_source": inst["data_source"],
                "metadata": json.dumps(metadata),
                "num_chunks": len(inst["chunks"]),
                "num_questions": len(inst["qas"]),
            }
        )
    return pd.DataFrame(rows)


def write_memalpha(folder: str | Path) -> Path:
    """``train.parquet`` and ``test.parquet`` in the ``YuWangX/Memalpha`` schema; returns the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for split in ("train", "test"):
        _memalpha_frame(memalpha_instances(split), "merged").to_parquet(folder / f"{split}.parquet", index=False)
    return folder


# ---------------------------------------------------------------------------- the processed MemoryAgentBench copy
def memalpha_mab_instances() -> list[dict[str, Any]]:
    """Instances of the processed copy's test split (already chunked with Mem-alpha's templates)."""
    chunks, facts = _fact_chunks(4, 3)
    ruler = [{"question": _question(p, a), "answer": [v]} for p, a, v in facts[:3]]
    lme_chunks = [
        "[Event happened on 2023-05-20] <User> My sister Ines moved to Porto last week. <Assistant> Nice city.",
        "[Event happened on 2023-05-28] <User> I bought Ines a lemon tree for her balcony. <Assistant> Lovely.",
    ]
    lrus = [
        "[Event happened on 2024-01-01 The user is reading a book]\n<User> A cartographer named Ilse mapped the "
        "frozen bay. <System> Please remember what the user reads on 2024-01-01.",
        "[Event happened on 2024-01-02 The user is reading a book]\n<User> Ilse's map saved the whalers in the "
        "storm. <System> Please remember what the user reads on 2024-01-02.",
    ]
    return [
        {"data_source": "ruler_qa1_197K", "prompt": MEMALPHA_PROMPT, "chunks": chunks, "qas": ruler},
        {
            "data_source": "longmemeval_s*",
            "prompt": MEMALPHA_PROMPT,
            "chunks": lme_chunks,
            "qas": [{"question": "Where did my sister move?", "answer": "Porto"}],
        },
        {
            "data_source": "icl_trec_coarse_6600shot_balance",
            "prompt": MEMALPHA_PROMPT,
            "chunks": _classification_chunks(2, 1),
            "qas": [{"question": f"{s}", "answer": label} for s, label in _LABELLED[5:7]],
        },
        {
            "data_source": "icl_nlu_8296shot_balance",
            "prompt": MEMALPHA_PROMPT,
            "chunks": _classification_chunks(2, 3),
            "qas": [{"question": _LABELLED[2][0], "answer": _LABELLED[2][1]}],
        },
        {
            "data_source": "infbench_sum_eng_shots2",
            "prompt": MEMALPHA_PROMPT,
            "chunks": lrus,
            "qas": [
                {
                    "question": "Summarize the content of the book I read from 2024-01-01 to 2024-01-02.",
                    "answer": ["cartographer", "map", "whalers", "storm"],
                }
            ],
            "extra": {"reading_dates": {"start": "2024-01-01", "end": "2024-01-02"}},
        },
    ]


def write_memalpha_mab(folder: str | Path) -> Path:
    """The processed copy's ``test.parquet`` and its empty ``train.parquet``; returns the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    _memalpha_frame(memalpha_mab_instances(), "sub_source").to_parquet(folder / "test.parquet", index=False)
    pd.DataFrame().to_parquet(folder / "train.parquet", index=False)  # published with no rows and no columns
    return folder


# ---------------------------------------------------------------------------- raw MemoryAgentBench
def _mab_metadata(source: str, n_questions: int) -> dict[str, Any]:
    return {
        "source": source,
        "keypoints": None,
        "question_dates": None,
        "question_types": ["single-session-user"] * n_questions if source.startswith("longmemeval") else None,
        "qa_pair_ids": [f"{source}-{j}" for j in range(n_questions)],
        "previous_events": None,
    }


def _mab_row(context: str, questions: list[str], answers: list[list[str]], source: str) -> dict[str, Any]:
    return {
        "context": context,
        "questions": questions,
        "answers": answers,
        "metadata": _mab_metadata(source, len(questions)),
    }


def mab_rows() -> dict[str, list[dict[str, Any]]]:
    """Raw ``ai-hyz/MemoryAgentBench`` rows per split, with real source names (some filtered by the paper)."""
    facts_text = " ".join(_fact_sentence(*f) for f in _FACTS)
    icl_text = "\n\n".join(f"{s} label: {label}" for s, label in _LABELLED)
    book = (
        "The orchard keeper Tomas planted pears along the river. Each spring the river flooded the lower rows. "
        "Tomas built a stone wall to hold the water back. His daughter Lina carried stones from the quarry. "
        "By autumn the wall stood and the pears ripened untouched."
    )
    return {
        "Accurate_Retrieval": [
            _mab_row(
                facts_text,
                [_question(*_FACTS[0][:2]), _question(*_FACTS[5][:2])],
                [[_FACTS[0][2]], [_FACTS[5][2]]],
                "ruler_qa1_197K",
            ),
            _mab_row(facts_text, [_question(*_FACTS[2][:2])], [[_FACTS[2][2]]], "ruler_qa2_421K"),
            _mab_row(
                "I moved to Lisbon in March. My cousin Rafa visits every June. We like the tram to Belem.",
                ["Which city did I move to in March?"],
                [["Lisbon"]],
                "longmemeval_s*",
            ),
            _mab_row(
                "A skipped context. It is long in the real data.", ["Skipped?"], [["yes"]], "longmemeval_s_-1_500"
            ),
            _mab_row("An event happened. Then another one.", ["What happened?"], [["an event"]], "eventqa_full"),
        ],
        "Test_Time_Learning": [
            _mab_row(
                icl_text,
                [_LABELLED[1][0], _LABELLED[4][0]],
                [[_LABELLED[1][1]], [_LABELLED[4][1]]],
                "icl_trec_coarse_6600shot_balance",
            ),
            _mab_row(icl_text, [_LABELLED[3][0]], [[_LABELLED[3][1]]], "icl_banking77_5900shot_balance"),
            _mab_row(
                "User: I loved Inception. Assistant: Try Interstellar.",
                ["Recommend?"],
                [["Tenet"]],
                "recsys_redial_full",
            ),
        ],
        "Long_Range_Understanding": [
            _mab_row(
                book,
                ["Summarize the book."],
                [["Tomas builds a wall to save his pear orchard from floods."]],
                "infbench_sum_eng_shots2",
            ),
            _mab_row(book, ["Who is the culprit?"], [["Lina"]], "detective_qa"),
        ],
        "Conflict_Resolution": [
            _mab_row(
                "Fact 1: The capital of Zarnia is Olo. Fact 2: The capital of Zarnia is Pem.",
                ["What is the capital of Zarnia?"],
                [["Pem"]],
                "factconsolidation_sh_6k",
            )
        ],
    }


def write_mab(folder: str | Path) -> Path:
    """One ``data/<Split>-00000-of-00001.parquet`` per split, as on the Hub; returns the folder."""
    folder = Path(folder)
    (folder / "data").mkdir(parents=True, exist_ok=True)
    for split, rows in mab_rows().items():
        pq.write_table(pa.Table.from_pylist(rows), folder / "data" / f"{split}-00000-of-00001.parquet")
    return folder


# ---------------------------------------------------------------------------- tiny model
def _corpus() -> Iterator[str]:
    for split in ("train", "test"):
        for inst in memalpha_instances(split):
            yield from inst["chunks"]
            yield from (qa["question"] for qa in inst["qas"])
    for inst in memalpha_mab_instances():
        yield from inst["chunks"]
    for rows in mab_rows().values():
        yield from (row["context"] for row in rows)


def write_tiny_model(folder: str | Path, seed: int = 0) -> Path:
    """A random-weight Qwen3 causal LM and its tokenizer (trained on the fixtures' text) in ``folder``."""
    from finemem_lib.agents.instructions import SYSTEM_PROMPT
    from finemem_lib.agents.offline_model import build_offline_model, save_model, train_tokenizer
    from finemem_lib.agents.offline_model import tokenizer_corpus as manager_corpus

    texts = [*_corpus(), SYSTEM_PROMPT, *manager_corpus([], styles=("content",), n_call_examples=20)]
    tokenizer = train_tokenizer(texts, vocab_size=TINY_VOCAB_SIZE)
    tokenizer.model_max_length = TINY_MODEL_SIZES["max_position_embeddings"]
    model = build_offline_model(tokenizer, TINY_MODEL_SIZES, seed=seed)
    return save_model(model, tokenizer, folder)


# ---------------------------------------------------------------------------- all of it
@dataclass(frozen=True)
class HubFixture:
    """Where :func:`write_hub_fixture` put each dataset and the model."""

    root: Path

    @property
    def memalpha(self) -> Path:
        return self.root / MEMALPHA_DIR

    @property
    def memalpha_mab(self) -> Path:
        return self.root / MEMALPHA_MAB_DIR

    @property
    def mab(self) -> Path:
        return self.root / MAB_DIR

    @property
    def model(self) -> Path:
        return self.root / MODEL_DIR


def write_hub_fixture(root: str | Path, seed: int = 0) -> HubFixture:
    """Write all three datasets and the tiny model under ``root`` (each folder replaced whole, atomically)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    writers = {MEMALPHA_DIR: write_memalpha, MEMALPHA_MAB_DIR: write_memalpha_mab, MAB_DIR: write_mab}
    writers[MODEL_DIR] = lambda folder: write_tiny_model(folder, seed)
    for name, write in writers.items():
        staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=root))
        write(staging)
        target = root / name
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    return HubFixture(root)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "out", help="folder to write Memalpha/, Memalpha-Memoryagentbench/, MemoryAgentBench/, tiny-qwen3/"
    )
    args = parser.parse_args(argv)
    fixture = write_hub_fixture(args.out)
    for name in ("memalpha", "memalpha_mab", "mab", "model"):
        print(f"{name:>13}: {getattr(fixture, name)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
