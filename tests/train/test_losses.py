"""InfoNCE, its Matryoshka sum and its late-interaction (MaxSim) form."""

import torch
import torch.nn.functional as F

from polyseek.train.losses import (
    false_negative_mask,
    info_nce,
    late_interaction_info_nce,
    matryoshka_info_nce,
    maxsim,
)


def test_matryoshka_loss_has_a_term_per_dim_and_sums_them():
    torch.manual_seed(0)
    queries, docs = torch.randn(4, 32), torch.randn(7, 32)
    mask = torch.zeros(4, 7, dtype=torch.bool)
    total, terms = matryoshka_info_nce(queries, docs, mask, 0.05, [8, 16, 64])
    assert list(terms) == [8, 16, 32]  # dims above the size are dropped, the full size added
    assert torch.allclose(total, sum(terms.values()))
    short = info_nce(torch.nn.functional.normalize(queries[:, :8], dim=-1),
                     torch.nn.functional.normalize(docs[:, :8], dim=-1), mask, 0.05)
    assert torch.allclose(terms[8], short)
    weighted, same = matryoshka_info_nce(queries, docs, mask, 0.05, [8, 16], {8: 4.0})
    assert all(torch.equal(same[d], terms[d]) for d in same)  # terms stay unweighted
    assert torch.allclose(weighted, 4 * terms[8] + terms[16] + terms[32])


def test_info_nce_is_low_when_each_query_matches_its_positive():
    docs = torch.nn.functional.normalize(torch.randn(5, 16), dim=-1)
    mask = torch.zeros(5, 5, dtype=torch.bool)
    assert info_nce(docs, docs, mask, 0.05) < 0.01
    assert info_nce(docs, docs.roll(1, 0), mask, 0.05) > 1


def test_false_negatives_are_masked():
    mask = false_negative_mask([frozenset({"a"}), frozenset({"b"})], ["a", "a", "c"])
    assert mask.tolist() == [[False, True, False], [False, False, False]]


def test_maxsim_sums_each_real_query_tokens_best_real_document_token():
    torch.manual_seed(0)
    queries = F.normalize(torch.randn(2, 3, 4), dim=-1)
    documents = F.normalize(torch.randn(3, 5, 4), dim=-1)
    query_mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    document_mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 0, 0, 0, 0]])
    got = maxsim(queries, query_mask, documents, document_mask)
    for b in range(2):
        for n in range(3):
            q = queries[b][query_mask[b].bool()]
            d = documents[n][document_mask[n].bool()]
            assert torch.isclose(got[b, n], (q @ d.T).max(dim=1).values.sum(), atol=1e-6)


def test_late_interaction_loss_is_low_when_each_query_matches_its_positive():
    tokens = F.normalize(torch.randn(4, 6, 8), dim=-1)
    mask, none = torch.ones(4, 6), torch.zeros(4, 4, dtype=torch.bool)
    assert late_interaction_info_nce(tokens, mask, tokens, mask, none, 0.05) < 0.01
    assert late_interaction_info_nce(tokens, mask, tokens.roll(1, 0), mask, none, 0.05) > 1
