"""The transformers backend, on a tiny random Qwen3 and a word-level tokenizer built here (no downloads)."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
from tokenizers import Tokenizer, models, pre_tokenizers  # noqa: E402

from finemem_lib.agents import AnswerRequest, build_reasoner  # noqa: E402
from finemem_lib.agents.reasoner_hf import HFReasoner  # noqa: E402
from finemem_lib.core.memory import MemoryItem  # noqa: E402

SPECIALS = ["<unk>", "<pad>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"]
WORDS = "system user assistant what is the colour of zorvan kell teal lima oslo where does live in city 1. 2.".split()  # noqa: SIM905
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|> {{ m['role'] }} {{ m['content'] }} <|im_end|> {% endfor %}"
    "{% if add_generation_prompt %}<|im_start|> assistant "
    "{% if enable_thinking is defined and not enable_thinking %}<think> </think> {% endif %}{% endif %}"
)


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tiny-qwen3")
    vocab = {token: i for i, token in enumerate(SPECIALS + WORDS)}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=core,
        unk_token="<unk>",
        pad_token="<pad>",
        eos_token="<|im_end|>",
        chat_template=CHAT_TEMPLATE,
    )
    tokenizer.save_pretrained(folder)
    config = transformers.Qwen3Config(
        vocab_size=len(vocab),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=16,
        max_position_embeddings=1024,
        eos_token_id=vocab["<|im_end|>"],
        pad_token_id=vocab["<pad>"],
    )
    torch.manual_seed(0)
    transformers.Qwen3ForCausalLM(config).save_pretrained(folder)
    return folder


def _requests() -> list[AnswerRequest]:
    facts = [MemoryItem("a1", "zorvan kell colour is teal", 0), MemoryItem("b2", "kell live in lima", 3)]
    return [
        AnswerRequest("what is the colour of zorvan kell", "synth_factoid", facts),
        AnswerRequest("where does kell live", "synth_update", facts[::-1]),
        AnswerRequest("where does kell live", "synth_factoid", ()),
    ]


def test_one_answer_per_request_with_the_retrieved_ids(tiny_model_dir: Path) -> None:
    reasoner = HFReasoner.from_pretrained(str(tiny_model_dir), device="cpu", batch_size=2, max_new_tokens=4)
    answers = reasoner.answer(_requests())
    assert len(answers) == 3
    assert [a.evidence_ids for a in answers] == [("a1", "b2"), ("b2", "a1"), ()]
    assert all(isinstance(a.text, str) for a in answers)
    assert reasoner.tokenizer.padding_side == "left"


def test_prompt_uses_the_chat_template_in_non_thinking_mode(tiny_model_dir: Path) -> None:
    reasoner = HFReasoner.from_pretrained(str(tiny_model_dir), device="cpu")
    prompt = reasoner.prompt(_requests()[0])
    assert prompt.startswith("<|im_start|> system")
    assert "1. zorvan kell colour is teal\n2. kell live in lima" in prompt
    assert prompt.endswith("<|im_start|> assistant <think> </think> ")


def test_greedy_decoding_is_deterministic_and_order_independent(tiny_model_dir: Path) -> None:
    reasoner = build_reasoner(
        {"backend": "hf", "model": str(tiny_model_dir), "device": "cpu", "temperature": 0, "max_new_tokens": 3}
    )
    assert isinstance(reasoner, HFReasoner)
    requests = _requests()
    first = [a.text for a in reasoner.answer(requests)]
    again = [a.text for a in reasoner.answer(requests[::-1])][::-1]
    assert first == again


def test_prompt_longer_than_the_context_is_refused(tiny_model_dir: Path) -> None:
    reasoner = HFReasoner.from_pretrained(str(tiny_model_dir), device="cpu", max_new_tokens=1020)
    with pytest.raises(ValueError, match="exceeds the model's context of 1024 tokens"):
        reasoner.answer(_requests())


def test_missing_model_folder_says_what_to_pass(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OSError, match="cannot load the reasoner model"):
        HFReasoner.from_pretrained(str(tmp_path / "no-such-model"), device="cpu")
