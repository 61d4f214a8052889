"""Costs in gradient-equivalents: oracle weights from XLA's flop counts, and their arithmetic."""

import math

import numpy as np
import pytest

from bench import cost


@pytest.mark.parametrize("problem", ["rosenbrock(dim=5)", "spin_glass(p=3,n=10)", "relu_teacher(k=2,batch_size=8)"])
def test_weights_are_deterministic_and_ordered(problem):
    cost.weights.cache_clear()
    w = cost.weights(problem)
    cost.weights.cache_clear()
    assert cost.weights(problem) == w  # the same lowered programs, the same counts
    # reverse mode evaluates the function on its way to the gradient, so a value costs at most a
    # gradient (the unit: value_and_grad); forward-over-reverse computes the gradient's primal
    # ops and their tangents, so on these problems an HVP costs at least the unit. (On a 2-D
    # polynomial of a few flops the unit's final value is a visible share and an HVP can weigh
    # less than 1: the degenerate saddle's is 0.69.)
    assert 0 < w.value <= 1
    assert w.hvp >= 1
    assert w.grad_flops > 0


def test_gradient_equivalents_by_hand():
    w = cost.Weights(value=0.5, hvp=2.0, grad_flops=100.0)
    # 10 gradients (each with its value), 4 values alone, 3 HVPs: 10 + 0.5 * 4 + 2 * 3
    assert cost.gradient_equivalents(14, 10, 3, w) == pytest.approx(18.0)
    # values never below gradients in this convention: no negative charge
    assert cost.gradient_equivalents(5, 10, 0, w) == pytest.approx(10.0)
    got = cost.gradient_equivalents(np.array([0, 14]), np.array([0, 10]), np.array([0, 3]), w)
    np.testing.assert_allclose(got, [0.0, 18.0])


def test_weights_of_a_quadratic_scale_with_its_matrix():
    # f(x) = 1/2 x^T A x on R^n: value ~ n^2 + n flops, gradient A x ~ n^2; the HVP is A v ~ n^2
    # too. So both weights approach 1 as n grows, never the 20x an unweighted HVP count implies.
    import problems

    w = cost.weights(problems.canonical_name("saddle_nd", dim=50))
    assert math.isfinite(w.value) and math.isfinite(w.hvp)
    assert w.hvp < 5
