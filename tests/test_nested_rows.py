"""Rows whose tokens start another row's are scored from that row's pass: the same log-probs and gradients."""

from __future__ import annotations

import torch

from finemem_lib.training import batch_logps, packed_pass
from finemem_lib.training.nested_rows import families, host_rows, row_families
from finemem_lib.training.samples import split_micro_batches
from tests.test_shared_prefix import assert_same_gradients, full_logps, tiny_model


def test_each_sequence_is_hosted_by_the_longest_one_it_starts():
    sequences = [(1, 2), (1, 2, 3), (1, 2, 3, 4), (1, 5), (1, 2), (7,), (1, 2, 3, 9)]
    host = host_rows(sequences)
    # (1, 2) starts both (1, 2, 3, 4) and (1, 2, 3, 9): either is a host that holds its tokens
    assert host[1] in (2, 6) and host[0] == host[4] == host[1]
    assert [host[i] for i in (2, 3, 5, 6)] == [2, 3, 5, 6]  # nothing starts with these but themselves
    for row, h in enumerate(host):
        assert sequences[h][: len(sequences[row])] == sequences[row]
        assert host[h] == h
    assert host_rows([(3, 3), (3, 3)]) == [1, 1]  # equal rows share one host
    assert families([2, 2, 2, 3]) == [[0, 1, 2], [3]]


def nested_batch(seed: int = 0):
    """A review step's decisions as TRL receives them: decision k's prompt is the step prompt and the lines
    before it, so every row starts the next one; plus an unrelated row."""
    gen = torch.Generator().manual_seed(seed)
    head = torch.randint(3, 97, (14,), generator=gen)
    prompt = torch.cat([head, torch.randint(3, 97, (6,), generator=gen)])
    rows = []
    for n_decision in (2, 1, 3):
        restated = torch.randint(3, 97, (4,), generator=gen)
        prompt = torch.cat([prompt, restated])
        decision = torch.randint(3, 97, (n_decision,), generator=gen)
        rows.append((prompt, decision))
        prompt = torch.cat([prompt, decision])
    rows.append(
        (torch.cat([head, torch.randint(3, 97, (9,), generator=gen)]), torch.randint(3, 97, (5,), generator=gen))
    )
    width_p, width_c = max(len(p) for p, _ in rows), max(len(c) for _, c in rows)
    ids = torch.zeros(len(rows), width_p + width_c, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, (p, c) in enumerate(rows):
        ids[row, width_p - len(p) : width_p], mask[row, width_p - len(p) : width_p] = p, 1
        ids[row, width_p : width_p + len(c)], mask[row, width_p : width_p + len(c)] = c, 1
    return ids, mask, width_c


def test_nested_rows_are_found_in_a_padded_batch():
    ids, mask, _ = nested_batch()
    assert row_families(ids, mask) == [[0, 1, 2], [3]]


def test_nested_rows_get_the_full_forwards_log_probs_from_one_pass(monkeypatch):
    model = tiny_model("qwen3").eval()
    ids, mask, keep = nested_batch()
    passed_rows = []
    original = packed_pass._packed_group
    monkeypatch.setattr(packed_pass, "_packed_group", lambda *a: passed_rows.extend(a[4]) or original(*a))
    with torch.no_grad():
        want, want_entropy = full_logps(model, ids, mask, keep, 0.8)
        got, entropy = packed_pass.packed_logps(model, ids, mask, keep, 14, 0.8, True, None)
    assert sorted(passed_rows) == [2, 3]  # the step's last decision hosts the two before it
    assert torch.allclose(got, want, atol=1e-5)
    assert torch.allclose(entropy, want_entropy, atol=1e-5)


def test_nested_rows_get_the_full_forwards_gradients():
    model = tiny_model("llama").train()
    ids, mask, keep = nested_batch(seed=4)
    assert_same_gradients(
        model, ids, mask, keep, lambda: packed_pass.packed_logps(model, ids, mask, keep, 14, 1.0, False, None)[0]
    )


def test_chunks_of_families_return_rows_in_their_order():
    model = tiny_model("qwen3").eval()
    ids, mask, keep = nested_batch(seed=2)
    order = torch.tensor([3, 1, 0, 2])  # the family split over the batch, the unrelated row first
    ids, mask = ids[order], mask[order]
    with torch.no_grad():
        want, _ = full_logps(model, ids, mask, keep, 1.0)
        got, _ = batch_logps.chunked_logps(
            model, ids, mask, keep, 1, 1.0, False, lambda *a: (_ for _ in ()).throw(AssertionError), pack=True
        )
    assert torch.allclose(got, want, atol=1e-5)


def test_micro_batches_keep_a_family_together_unless_cut_there():
    ids, mask, keep = nested_batch()
    prompt_columns = ids.shape[1] - keep
    batch = {
        "prompt_ids": ids[:, :prompt_columns],
        "prompt_mask": mask[:, :prompt_columns],
        "completion_ids": ids[:, prompt_columns:],
        "completion_mask": mask[:, prompt_columns:],
        "advantages": torch.arange(4, dtype=torch.float32),
    }
    for seed in range(6):
        parts = split_micro_batches(batch, 2, generator=torch.Generator().manual_seed(seed))
        rows = [int(a) for part in parts for a in part["advantages"]]
        assert sorted(rows) == [0, 1, 2, 3]
        where = [rows.index(r) for r in (0, 1, 2)]
        assert where == list(range(where[0], where[0] + 3))  # the step's decisions stay in order, side by side
