"""Log-domain Sinkhorn with dustbins: the marginals it promises, with and without padding."""

import torch

from models.matching.optimal_transport import log_optimal_transport


def marginals(log_assignment):
    p = log_assignment.exp()
    return p.sum(2), p.sum(1)  # row sums (B, M+1), column sums (B, N+1)


def test_rows_and_columns_sum_to_the_marginals():
    scores = torch.randn(2, 7, 5, dtype=torch.float64) * 3
    rows, cols = marginals(log_optimal_transport(scores, torch.tensor(1.0), iterations=500))
    m, n = 7, 5
    assert torch.allclose(rows[:, :m], torch.ones(2, m, dtype=torch.float64), atol=1e-9)
    assert torch.allclose(rows[:, m], torch.full((2,), float(n), dtype=torch.float64), atol=1e-9)
    assert torch.allclose(cols[:, :n], torch.ones(2, n, dtype=torch.float64), atol=1e-9)
    assert torch.allclose(cols[:, n], torch.full((2,), float(m), dtype=torch.float64), atol=1e-9)


def test_columns_are_exact_after_each_iteration():
    scores = torch.randn(1, 6, 9) * 5
    for iterations in (1, 3):
        _, cols = marginals(log_optimal_transport(scores, torch.tensor(0.5), iterations))
        assert torch.allclose(cols[0, :9], torch.ones(9), atol=1e-5)
        assert torch.allclose(cols[0, 9], torch.tensor(6.0), atol=1e-4)


def test_padding_gets_no_mass_and_valid_cells_keep_their_marginals():
    scores = torch.randn(2, 7, 5, dtype=torch.float64) * 3
    valid0 = torch.tensor([[True] * 5 + [False] * 2, [True] * 7])
    valid1 = torch.tensor([[True] * 4 + [False], [True] * 5])
    log_p = log_optimal_transport(scores, torch.tensor(1.0), 500, valid0, valid1)
    rows, cols = marginals(log_p)
    # sample 0 is a 5 x 4 problem: padded rows / columns are empty, the dustbins hold n = 4 and m = 5
    assert torch.allclose(rows[0], torch.tensor([1.0] * 5 + [0.0, 0.0, 4.0], dtype=torch.float64), atol=1e-9)
    assert torch.allclose(cols[0], torch.tensor([1.0] * 4 + [0.0, 5.0], dtype=torch.float64), atol=1e-9)
    # and it is the same solution as solving the unpadded 5 x 4 problem
    alone = log_optimal_transport(scores[:1, :5, :4], torch.tensor(1.0), 500)
    assert torch.allclose(log_p[0, :5, :4].exp(), alone[0, :5, :4].exp(), atol=1e-9)
    assert torch.allclose(log_p[0, 7, :4].exp(), alone[0, 5, :4].exp(), atol=1e-9)  # row dustbin


def test_gradients_are_finite_with_padding():
    scores = torch.randn(1, 6, 6, requires_grad=True)
    bin_score = torch.tensor(1.0, requires_grad=True)
    valid = torch.tensor([[True] * 4 + [False] * 2])
    log_p = log_optimal_transport(scores, bin_score, 3, valid, valid)
    log_p[:, :4, :4].sum().backward()
    assert torch.isfinite(scores.grad).all() and torch.isfinite(bin_score.grad)
    assert scores.grad[:, 4:].abs().max() == 0  # padded cells take no part
