"""Landscape diagnostics at a point: extreme Hessian eigenvalues from Hessian-vector products.

Lanczos with full reorthogonalization (``optimizers.linalg``) on the Hessian of the full loss,
applied matrix-free by forward-over-reverse HVPs. With k = min(dim, MAX_LANCZOS) iterations the
extreme Ritz values converge first (Kaniel-Paige theory); for dim <= MAX_LANCZOS they are the
exact eigenvalues up to rounding. The runner calls this once per run, at the end point, to tell
a saddle (lambda_min < 0) from a minimum.
"""

from __future__ import annotations

import jax

from optimizers import linalg

MAX_LANCZOS = 20


def extreme_eigenvalues(f, params, k: int | None = None, key=None):
    """(lambda_min, lambda_max) of the Hessian of ``f`` at ``params`` by k-step Lanczos."""
    matvec, flat, _ = linalg.flat_hvp(f, params)
    n = flat.shape[0]
    k = min(n, MAX_LANCZOS) if k is None else min(k, n)
    key = jax.random.key(0) if key is None else key
    v0 = jax.random.normal(key, (n,), flat.dtype)
    eig = linalg.extreme_eigs(matvec, v0, k)
    return eig.min_value, eig.max_value
