"""The spherical p-spin glass (p = 2, 3, 4), written in an unconstrained chart.

    H(s) = N^{-(p-1)/2} sum_{i1..ip} J_{i1..ip} s_i1 ... s_ip,    |s| = sqrt(N),

summed over all ordered index tuples, with J_{i1..ip} iid N(0, 1) drawn from the instance seed.
The scaling makes Var H(s) = N on the sphere, so the energy per spin H/N is of order one; the
problem reports ``full_loss = H(s)/N``.

Chart and retraction: the optimizer moves w in R^N and the energy is evaluated at
s = sqrt(N) w/|w|, which leaves it scale-invariant in w (its gradient is tangent to the sphere
through w); ``retract(w) = w/|w|`` projects back onto the unit sphere, where the iterates live
(``init`` draws on it and the runner retracts after every step). H depends only on the
symmetric part of J, so the coupling tensor is symmetrized (averaged over the p! index
permutations) once at construction; then the local field v = T.s^{p-1} (``local_field``: p-1
successive contractions for small tensors, one matmul of T by s (x) s for large ones, which keeps
vmapped batches at the matmul rate) gives both H = v.s and its gradient p v in one pass over the tensor.

Riemannian second order. Write F(w) = H(sqrt(N) w)/N for the energy per spin on R^N and
f_c(w) = F(w/|w|) for the chart. On the unit sphere the chart's gradient g = P grad F(w),
P = I - w w^T, is already the Riemannian gradient, but its Euclidean Hessian is not the
Riemannian Hessian: scale invariance (grad f_c(w).w = 0 for every w) gives H_c w = -g, so in
(tangent, radial) blocks

    H_c = [[Hess F(w), -g], [-g^T, 0]],   Hess F(w) = P grad^2 F(w) P - (w.grad F(w)) P,

where Hess F(w) is the Riemannian Hessian (the projection w/|w| is a second-order retraction:
its second derivative along a tangent v is -|v|^2 w, normal to the sphere, so the tangent block
of the chart's Hessian is exact). The off-diagonal -g makes Newton's step H_c^{-1} g = -w
exactly radial, which the retraction undoes ("Newton never moves"), and puts a spurious
direction into every Hessian eigenvalue computed at an end point. So the loss is the pullback
of the chart through the tangent projection at the point x where it is evaluated,

    f(x) = f_c(w0 + P0 d) + c_r/2 (w0.d)^2/|w0|^2,
    w0 = stop_gradient(x),  d = x - w0,  P0 d = d - w0 (w0.d)/|w0|^2.

d is exactly zero there (x - x), so w0 + P0 d is bitwise w0 and the radial term an exact zero:
``full_loss`` values are bitwise those of the chart. Its gradient is P0 grad f_c(x), the
chart's gradient (already tangent) projected once more, equal to it up to float round-off. Its
Hessian, as autodiff sees it (``jax.jvp(jax.grad(f), ...)``, ``jax.hessian``: w0 carries no
derivatives), is P0 H_c P0 + c_r w0 w0^T/|w0|^2, which at |x| = 1 is

    Hess f(x) = P grad^2 F(x) P - (x.grad F(x)) P + c_r x x^T,

the Riemannian Hessian on the tangent space and a declared constant curvature c_r on the
radial direction: Newton-type steps (H + lambda I)^{-1} g with a tangent g are tangent, and no
artefact enters the spectrum. (Off the sphere, where no run goes, the tangent block is the
Riemannian Hessian at x/|x| divided by |x|^2, as the chart's scale invariance dictates.) The
gradient field x -> grad f(x) is still the chart's, so differences of gradients (L-BFGS pairs,
finite differences) still see the chart's Hessian; only autodiff's second order sees this one.
The cost is the chart's plus O(N).

The radial constant is c_r = p E_inf = 2 sqrt(p (p-1)) (``radial_curvature(p)``): the tangent
spectrum at a point of energy u per spin is, for large N, a semicircle of radius 2 sqrt(p(p-1))
centred at -p u (for p = 2 exactly 2 (lambda_j - lambda_i), j != i, at the eigenvector of
lambda_i), so c_r is its centre at the threshold energy u = -E_inf and lies inside the tangent
spectrum at the minima and low saddles that runs reach: there the radial direction is neither
the smallest nor the largest eigenvalue reported, and it never adds a zero or negative one.
(At a random start, u ~ 0, c_r sits near the upper edge of the spectrum and can be the largest
eigenvalue; the smallest is then negative and tangent.)

Reference values (Auffinger, Ben Arous and Cerny 2013, "Random matrices and complexity of spin
glasses", CPAM 66(2)). For p >= 3 the mean number of critical points of index k with energy
per spin below u is exp(N Theta_{k,p}(u) + o(N)), where for u <= -E_inf

    Theta_{k,p}(u) = 1/2 ln(p-1) - (p-2) u^2 / (4(p-1)) - (k+1) I_1(u),
    I_1(u) = -u/E_inf^2 sqrt(u^2 - E_inf^2) - ln(-u + sqrt(u^2 - E_inf^2)) + ln E_inf,
    E_inf = 2 sqrt((p-1)/p).

Below -E_inf the critical points are (exponentially) mostly minima; -E_inf is the threshold
energy, where most local minima and saddles sit and where gradient descent from a random start
ends as N -> infinity (Cugliandolo and Kurchan 1993).
The ground state -E_0 is the zero of Theta_{0,p} below -E_inf (no minima are expected below
it): E_0(3) = 1.656998, E_0(4) = 1.794085, computed here with ``scipy.optimize.brentq``.
For p >= 3, ``f_star = -E_0`` and ``f_target = -E_inf`` (unless the instance has a best known
value, below). Both are N -> infinity values: the
ground state of one finite-N instance fluctuates around -E_0 (it can lie below it), so the
gap to f_star of a finite instance can be slightly negative.

Finite N: at the sizes a CPU suite affords, gradient descent from random init ends in local
minima above the asymptotic threshold (p = 3, 8 seeds, 1000 steps: -1.51 to -1.54 per spin at
N = 50, -1.55 to -1.58 at N = 100), so for p >= 3 the target -E_inf is rarely reached at small N.

Best known values. Where ``problems/best_known.json`` has the instance (written by the reference
campaign ``python -m bench campaign --problems 'spin_glass(p=3,n=30)' --write``, ``bench.campaign``:
the lowest final energy over 256 restarts x 300 steps each of L-BFGS, cubic regularization,
saddle-free Newton, Adam (rate 0.01) and gradient descent (rate 0.1) from seeds 1_000_000 on,
disjoint from the suites' seeds; the file also holds the distribution of the final energies), the
target is relative to that value f_ref instead:

    f_target = relative_target(f_ref, f_0, tau) = f_ref + tau (f_0 - f_ref) = (1 - tau) f_ref,

with f_0 = 0 the expected energy at the random start: init draws s uniformly on the sphere and
E[H(s)] = sum E[J] E[s_i1...s_ip] = 0 since J has mean zero and is independent of s (a
single start's energy per spin is about N(0, 1/N), standard deviation 0.18 at N = 30). f_star stays
None (f_ref is an upper bound on the instance's ground state, not a certified minimum) and f_ref
goes into ``extra["best_known"]``. tau = BEST_KNOWN_TAU = 0.02: at N = 30 the landscape has few
minima (spin_glass(p=3,n=30,instance=0): -1.56208, -1.53950, -1.53641, then -1.4785 and above,
the end energy set by the start's basin, the same for every optimizer that converges), and
(1 - 0.02) f_ref = -1.5308 counts the three lowest as solved. Measured fractions of runs that
reach it in 300 steps (the quick suite's budget): in the campaign (256 seeds) L-BFGS 61%, cubic
regularization 58%, saddle-free Newton 71%, Adam at 0.01 57%, gradient descent at 0.1 56%; on the
quick suite's cell (seeds 0-15, at the registered defaults) L-BFGS 75%, Adam 69%, saddle-free
Newton 81%, cubic regularization 69%, gradient descent 0% (its default rate 1e-3 is too slow for
300 steps; 19% at its best grid point), Newton 0%. A tighter tau = 0.01 (the lowest minimum
alone) is a basin lottery won by 8-12% of the starts by every optimizer that converges, which
ranks nothing. Instances not in the file keep the -E_inf target.

Scales: the iterates w live on the unit sphere (not on |s| = sqrt(N)) so that step sizes are
O(1) whatever N: the gradient of the per-spin energy in w is sqrt(N) times its gradient in s,
and its Hessian N times, so one learning-rate range serves every size (a gradient-descent step
of order 0.1 for p = 3, 4 and 0.3 for p = 2 is stable and fast). With |w| = sqrt(N) instead,
the same steps would have to grow like N.

Large N. The scaled symmetric tensor is the problem's ``constants``: the runner's compiled program
takes it as an argument (``Problem.bind``), so the program and its compile time stay the same size
at every N (docs/PERFORMANCE.md) instead of embedding N^p numbers. Where N^p floats do not fit at
all, ``spin_glass_generated`` draws the couplings from the instance key slab by slab inside the
contraction (``_generated_energy``: O(N^2) memory; other couplings than this family's numpy ones).

For p = 2, H/N = s^T M s / N with M = N^{-1/2} (J + J^T)/2, so the exact ground state per spin
of each instance is lambda_min(M) (the bottom eigenvector, scaled to |s| = sqrt(N)), computed
with numpy. There is no threshold in the same sense (the landscape has only 2N critical
points, +-each eigenvector; as N -> infinity lambda_min -> -sqrt(2), the semicircle edge,
which is also what E_inf gives at p = 2). So f_star = lambda_min(M) exactly and f_target =
f_star + 1e-3 per spin; gradient descent reaches it at a rate set by the instance's spectral
gap lambda_2 - lambda_1.
"""

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from problems.base import Reference, best_known, deterministic, make, relative_target

MAX_COUPLING_ENTRIES = 200_000_000  # n**p float32 entries (800 MB); refuse beyond this
P2_TARGET_TOLERANCE = 1e-3  # per spin, above the exact p = 2 ground state
BEST_KNOWN_TAU = 0.02  # relative tolerance of the target above a best known value (module doc)
RANDOM_START_ENERGY = 0.0  # f_0 = E[H/N] at a uniform random point on the sphere (module doc)
FIELD_GEMM_MIN_ENTRIES = 16384  # n**(p-1) from which the local field is one matmul by s (x) s (local_field)


def threshold_energy(p: int) -> float:
    """E_inf = 2 sqrt((p-1)/p); the threshold energy per spin is -E_inf."""
    return 2.0 * math.sqrt((p - 1) / p)


def radial_curvature(p: int) -> float:
    """c_r = p E_inf = 2 sqrt(p (p-1)): the loss's Hessian eigenvalue along the radial direction."""
    return p * threshold_energy(p)


def complexity(u: float, p: int, k: int = 0) -> float:
    """Theta_{k,p}(u) of Auffinger, Ben Arous and Cerny 2013 (index-k complexity), for u <= -E_inf."""
    e_inf = threshold_energy(p)
    if u > -e_inf:
        raise ValueError(f"complexity: formula holds for u <= -E_inf = {-e_inf}, got u = {u}")
    root = math.sqrt(max(u * u - e_inf * e_inf, 0.0))
    i1 = -u / e_inf**2 * root - math.log(-u + root) + math.log(e_inf)
    return 0.5 * math.log(p - 1) - (p - 2) * u * u / (4.0 * (p - 1)) - (k + 1) * i1


@functools.cache
def ground_state_energy(p: int) -> float:
    """E_0(p) > 0 such that -E_0 is the zero of Theta_{0,p} below -E_inf (p >= 3)."""
    if p < 3:
        raise ValueError(f"ground_state_energy: the complexity formula needs p >= 3, got {p}")
    from scipy.optimize import brentq  # imported lazily: ~0.7 s, a third of `import problems`

    e_inf = threshold_energy(p)
    # Theta_{0,p}(-E_inf) = ln(p-1)/2 - (p-2)/p > 0 for p >= 3 and Theta -> -inf as u -> -inf.
    u0 = brentq(lambda u: complexity(u, p, 0), -10.0 * e_inf, -e_inf, xtol=1e-14, rtol=1e-15)
    return -u0


def couplings(p: int, n: int, instance: int) -> np.ndarray:
    """The raw (unsymmetrized) coupling tensor J, shape (n,)*p, iid N(0, 1), float32."""
    rng = np.random.default_rng(instance)
    return rng.standard_normal((n,) * p, dtype=np.float32)


def _order_free_sum(arrays: list[np.ndarray]) -> np.ndarray:
    """Elementwise sum of a few arrays, rounded identically whatever order they come in.

    The terms are first sorted elementwise (odd-even transposition network of minimum/maximum),
    then added in that order; float addition is not associative, and this makes the
    symmetrized tensor exactly (bitwise) symmetric.
    """
    terms = list(arrays)
    k = len(terms)
    for rnd in range(k):
        for i in range(rnd % 2, k - 1, 2):
            terms[i], terms[i + 1] = np.minimum(terms[i], terms[i + 1]), np.maximum(terms[i], terms[i + 1])
    total = terms[0]
    for term in terms[1:]:
        total = total + term
    return total


def symmetrize(j: np.ndarray) -> np.ndarray:
    """The average of J over the p! permutations of its indices, exactly symmetric in float.

    Built one index at a time: if X is symmetric in its first m indices, then
    (X + sum_{k<m} X with indices k and m swapped)/(m+1) is symmetric in the first m+1 (the
    transpositions (k m) are coset representatives of S_m in S_{m+1}). That is 1+2+...+(p-1)
    transposes instead of p!, which matters for p = 4 at n ~ 100 (10^8 entries). Each step's
    terms are summed in a canonical order, so the result is bitwise symmetric, which the
    energy's custom gradient (p T.s^{p-1}) relies on to be the exact derivative.
    """
    out = j
    for m in range(1, j.ndim):
        terms = [out]
        for k in range(m):
            axes = list(range(j.ndim))
            axes[k], axes[m] = m, k
            terms.append(out.transpose(axes))
        out = _order_free_sum(terms) / np.asarray(m + 1, j.dtype)
    return out


def local_field(tensor, gemm_min_entries: int | None = None, blocked: bool = True, chunk_points: int | None = None,
                block_rows: int | None = None, min_points: int | None = None):
    """``s -> T.s^{p-1}`` (the local field v_i = sum T_{i i2..ip} s_i2...s_ip) of a symmetric T.

    Three contraction orders, the same numbers to float32 rounding:

    * chain (p = 2, and small tensors): p - 1 successive matrix-vector products,
      ((T s) s) ... . Under ``vmap`` over S points the first is one (n^{p-1} x n) by (n x S) matmul
      and the next ones are batched matrix-vector products that read its (n^{p-1} x S) output
      once, at 2 flops per 4-byte float: memory-bound, and slow once that intermediate leaves the
      cache (at n = 200, p = 3 it is 160 KB per point, 41 MB at 256 points; docs/PERFORMANCE.md).
    * GEMM (``n^{p-1} >= gemm_min_entries``, default ``FIELD_GEMM_MIN_ENTRIES``): the outer
      product s (x) s (n^2 numbers) first, then T as an (n^{p-2} x n^2) matrix times it:
      p = 3: v = T_(n x n^2) (s (x) s); p = 4: v = (T_(n^2 x n^2) (s (x) s))_(n x n) s. Under
      ``vmap`` the dominant contraction is one matmul of T by the (n^2 x S) outer products, which
      the matmul streams through in cache-sized blocks; no matmul output of size n^{p-1} S is read
      back by a memory-bound product (p = 4: the (n^2 x S) one is, n times smaller). At n = 200,
      p = 3 the gradient is 1.1-2.7x faster than the chain from 16 to 1024 points, the most under
      load (docs/PERFORMANCE.md). Its forward-mode derivative (HVPs) is one more such matmul, T by
      s (x) ds + ds (x) s: two passes over T per HVP, against the chain's three.
    * blocked: p = 3 at GEMM sizes, under ``vmap`` of at least ``min_points`` points (default
      ``FIELD_BLOCKED_MIN_POINTS``) on the CPU (``_batched_p3``). The batch, in chunks of at most
      ``chunk_points`` points (``FIELD_CHUNK_POINTS``), meets T ``block_rows`` rows at a time
      (``field_block_rows``): X = T_block s as one (rows n x n) by (n x S) matmul, then
      v_i = sum_j X_ij s_j while X is still in the cache (2 MB at n = 200). The GEMM order's
      (n^2 x S) outer products leave the cache as the batch grows (41 MB at n = 200 and 256
      points), which held the vmapped gradient near 40-50% of this machine's matmul rate above
      64 points; blocked, it runs near the rate of the matmul itself from 64 to 1024 points
      (docs/PERFORMANCE.md). Its forward-mode derivative reuses X: dv = 2 X ds (T is symmetric),
      so an HVP costs what a gradient does, against 2-3x in the GEMM order. Smaller batches
      (where the GEMM order is faster) and other backends (whose matmuls want the whole batch)
      keep ``vmap`` of the GEMM order; ``blocked=False`` keeps it everywhere (the roofline's
      before). Reverse mode through the field itself is not supported at GEMM sizes (the
      energy's gradient never needs it: its custom JVP takes the field as a primal).

    Flops per point (``field_flops``): chain 2 (n^p + ... + n^2); GEMM n^2 + 2 n^p (+ 2 n^2 for
    p = 4); blocked 2 n^3 + 2 n^2, as the chain. Small tensors keep the chain: it is as fast or
    faster there (no outer product; p = 3, n = 30, 200 points: 0.56 vs 0.78 ms per gradient), and
    every size that the quick suite, the tests, the census and the reproductions run (p = 3 up to
    n = 100, p = 4 up to n = 12) keeps the numbers it always had, bit for bit. The switch, at
    64 KB of chain intermediate per point (p = 3: n >= 128; p = 4: n >= 26), is a function of
    (p, n) alone, and the blocked order's of (p, n) and the batch size, so a cell's numbers stay a
    function of its spec. The orders agree to float32 rounding
    (tests/problems/test_spin_glass_field.py).
    """
    p, n = tensor.ndim, tensor.shape[0]
    threshold = FIELD_GEMM_MIN_ENTRIES if gemm_min_entries is None else gemm_min_entries
    gemm = p > 2 and n ** (p - 1) >= threshold

    def field_of(t, s):
        x = t.astype(s.dtype)
        if not gemm:
            for _ in range(p - 1):
                x = x @ s
            return x
        ss = jnp.outer(s, s).reshape(n * n)
        if p == 3:
            return x.reshape(n, n * n) @ ss
        return (x.reshape(n * n, n * n) @ ss).reshape(n, n) @ s

    if not gemm or p != 3 or not blocked:
        return functools.partial(field_of, tensor)
    return _batched_p3(field_of, tensor, FIELD_CHUNK_POINTS if chunk_points is None else chunk_points,
                       field_block_rows(n, FIELD_BLOCK_ROWS if block_rows is None else block_rows),
                       FIELD_BLOCKED_MIN_POINTS if min_points is None else min_points)


# The blocked field (local_field): measured on a 2-core AMD EPYC at n = 200 (docs/PERFORMANCE.md,
# `python -m bench.perf spin-glass-blocks`). Blocks of 10 rows were the fastest or within noise of it
# from 64 to 256 points (91-117 GFLOP/s; 5 to 40 rows: 64-108); below 64 points the GEMM order was
# faster (72 against 46-52 GFLOP/s at 32).
FIELD_BLOCK_ROWS = 10  # rows of T per block (at most; field_block_rows)
FIELD_CHUNK_POINTS = 256  # points per chunk of the batch: X = T_block s is 2 MB at n = 200
FIELD_BLOCKED_MIN_POINTS = 64  # smaller batches keep vmap of the GEMM order


def field_block_rows(n: int, rows: int = FIELD_BLOCK_ROWS) -> int:
    """Rows of T per block of the blocked field: the largest divisor of n that is at most ``rows``
    (blocks then tile T with no remainder; at n = 200: 10, at n = 128: 8)."""
    return max(d for d in range(1, min(n, rows) + 1) if n % d == 0)


def _blocked_p3(tensor, s, ds, rows: int):
    """The local fields T.s^2 of a batch s (S, n) of p = 3 points, ``rows`` rows of T at a time (a
    divisor of n), and with ``ds`` (S, n) their tangents 2 T.s.ds (T symmetric); (v, dv or None)."""
    n, points = tensor.shape[0], s.shape[0]
    blocks = tensor.astype(s.dtype).reshape(n // rows, rows * n, n)

    def block(t):  # (rows n, n) -> the block's (S, rows) fields
        x = (t @ s.T).reshape(rows, n, points)  # X_ijb = sum_k T_ijk s_bk, while in the cache:
        v = jnp.einsum("ijb,bj->bi", x, s)
        return v, None if ds is None else 2 * jnp.einsum("ijb,bj->bi", x, ds)

    v, dv = jax.lax.map(block, blocks)  # (n / rows, S, rows)

    def rejoin(a):
        return None if a is None else a.transpose(1, 0, 2).reshape(points, n)

    return rejoin(v), rejoin(dv)


def _batched_p3(field_of, tensor, chunk_points: int, rows: int, min_points: int):
    """``s -> field_of(tensor, s)`` (the p = 3 GEMM order, one point), whose batches of at least
    ``min_points`` points under ``vmap`` on the CPU are the blocked contraction (``_blocked_p3``,
    ``rows`` rows a block) over chunks of at most ``chunk_points`` points (equal chunks, the last
    padded with copies of the first point, dropped after), value and forward-mode derivative alike
    (``jax.custom_batching.custom_vmap`` inside a ``jax.custom_jvp``). One point, smaller batches,
    another backend, or a batch of tensors: ``field_of`` and its autodiff JVP, as before.

    The tensor is an argument of the ``custom_vmap`` functions, not a closure of their rules: in the
    runner it is an argument of the compiled program (a tracer), and a rule that closed over it
    would leak it into the scans it is batched inside.
    """
    n = tensor.shape[0]

    def in_chunks(fun, args):
        points = args[0].shape[0]
        if points <= chunk_points:
            return fun(*args)
        chunks = -(-points // chunk_points)
        size = -(-points // chunks)
        pad = chunks * size - points
        xs = [jnp.concatenate([a, jnp.broadcast_to(a[:1], (pad, n))]).reshape(chunks, size, n) if pad
              else a.reshape(chunks, size, n) for a in args]
        out = jax.lax.map(lambda c: fun(*c), xs)
        return jax.tree_util.tree_map(lambda o: o.reshape(chunks * size, n)[:points], out)

    def broadcast(axis_size, in_batched, args):
        return [a if b else jnp.broadcast_to(a, (axis_size, *a.shape)) for a, b in zip(args, in_batched)]

    def vmapped(fun, in_batched, args):
        # vmap of the GEMM order, its matmul kept as T (n x n^2) by (n^2 x S): the rules return the
        # batch first, and XLA would fold that transpose into the matmul as (S x n^2) by (n^2 x n),
        # which ran 2x slower on the CPU at 4-16 points (the barrier keeps the transpose apart)
        out = jax.vmap(fun, in_axes=[0 if b else None for b in in_batched], out_axes=-1)(*args)
        return jax.tree_util.tree_map(jnp.transpose, jax.lax.optimization_barrier(out))

    def blocked_here(axis_size, in_batched):
        return not in_batched[0] and axis_size >= min_points and jax.default_backend() == "cpu"

    values = jax.custom_batching.custom_vmap(field_of)

    @values.def_vmap
    def _values_rule(axis_size, in_batched, t, s):
        if not blocked_here(axis_size, in_batched):
            return vmapped(field_of, in_batched, (t, s)), True
        return in_chunks(lambda s: _blocked_p3(t, s, None, rows)[0], [s]), True

    def value_and_tangent(t, s, ds):
        return jax.jvp(lambda s: field_of(t, s), (s,), (ds,))

    tangents = jax.custom_batching.custom_vmap(value_and_tangent)

    @tangents.def_vmap
    def _tangents_rule(axis_size, in_batched, t, s, ds):
        if not in_batched[0] and not in_batched[1]:  # one point, a batch of tangents (jax.jacfwd)
            v, linear = jax.linearize(lambda s: field_of(t, s), s)
            return (v, jax.vmap(linear)(ds)), (False, True)
        if not blocked_here(axis_size, in_batched):
            return vmapped(value_and_tangent, in_batched, (t, s, ds)), (True, True)
        out = in_chunks(lambda s, ds: _blocked_p3(t, s, ds, rows), broadcast(axis_size, in_batched[1:], [s, ds]))
        return out, (True, True)

    @jax.custom_jvp
    def blocked_field(s):
        return values(tensor, s)

    @blocked_field.defjvp
    def _blocked_field_jvp(primals, tangent_in):
        return tangents(tensor, primals[0], tangent_in[0])

    return blocked_field


def field_flops(p: int, n: int, gemm_min_entries: int | None = None, blocked: bool = False) -> int:
    """Flops of one ``local_field`` evaluation as the program computes them: 2 per multiply-add of
    a matrix product, 1 per product of the outer product s (x) s (XLA's ``cost_analysis`` counts).
    ``blocked``: per point of a vmapped batch on the CPU, where p = 3 at GEMM sizes is the blocked
    order (X = T_block s, then X s: the chain's count)."""
    threshold = FIELD_GEMM_MIN_ENTRIES if gemm_min_entries is None else gemm_min_entries
    if p == 2 or n ** (p - 1) < threshold or (blocked and p == 3):
        return sum(2 * n ** (p - k + 1) for k in range(1, p))
    return n * n + 2 * n**p + (2 * n * n if p == 4 else 0)


def _energy(tensor, gemm_min_entries: int | None = None, blocked: bool = True, **layout):
    """E(s) = sum T_{i1..ip} s_i1...s_ip for a symmetric T, with its gradient p T.s^{p-1}.

    The custom JVP computes the local field v = T.s^{p-1} once (``local_field``: O(n^p)) and
    returns E = v.s and dE = p v.ds, so a gradient costs one pass over T instead of the two that
    reverse-mode differentiation of the contraction chain would take; it is exact because T is
    symmetric. Hessian-vector products differentiate v (forward mode: ``local_field``'s own
    derivative where it has one). ``gemm_min_entries``, ``blocked`` and ``layout`` (``chunk_points``,
    ``block_rows``, ``min_points``): ``local_field``'s.
    """
    p = tensor.ndim
    field = local_field(tensor, gemm_min_entries, blocked, **layout)

    @jax.custom_jvp
    def energy(s):
        return field(s) @ s

    @energy.defjvp
    def _energy_jvp(primals, tangents):
        (s,), (ds,) = primals, tangents
        v = field(s)
        return v @ s, p * (v @ ds)

    return energy


def _check_args(name: str, p: int, n: int, instance: int) -> None:
    """One clear error for a degree, size or instance out of range."""
    if p not in (2, 3, 4):
        raise ValueError(f"{name}: p must be 2, 3 or 4, got {p}")
    if n < 2:
        raise ValueError(f"{name}: n must be >= 2, got {n}")
    if instance < 0:
        raise ValueError(f"{name}: instance must be >= 0, got {instance}")


def spin_glass(p: int = 3, n: int = 100, instance: int = 0):
    """Spherical p-spin glass, energy per spin H(s)/N in the chart s = sqrt(N) w/|w|, |w| = 1."""
    _check_args("spin_glass", p, n, instance)
    if n**p > MAX_COUPLING_ENTRIES:
        raise ValueError(
            f"spin_glass: n**p = {n}**{p} = {n**p:.3g} coupling entries exceeds the limit "
            f"{MAX_COUPLING_ENTRIES:.0e} (memory); use a smaller n"
        )

    scaled = symmetrize(couplings(p, n, instance))
    scaled *= np.float32(n ** (-(p - 1) / 2))
    tensor = jnp.asarray(scaled)  # on the device once
    reference = _reference(p, n, instance, scaled)
    # The tensor is the problem's constant: the runner's program takes it as an argument (``bind``),
    # so its size and compile time do not grow with n**p; the functions below capture it.
    functions = _chart_functions(p, n)
    fns = functions(tensor)
    problem = make(dim=n, init=fns["init"], full_loss=fns["full_loss"], retract=fns["retract"], reference=reference,
                   constants=tensor, bind_constants=functions, bound_functions=fns)
    return dataclasses.replace(problem, loss=fns["loss"])  # deterministic (stochastic=False), and bound


def _retract(w):
    return w / jnp.linalg.norm(w)


def _chart_functions(p: int, n: int, energy_of=None):
    """``constants -> {init, full_loss, loss, retract}`` of the spin glass on the unit sphere.

    ``energy_of(constants)`` is the energy E(s) of the couplings the constants describe (default:
    ``_energy``, the constants being the scaled symmetric tensor). The loss is the chart pulled
    back through the tangent projection at w (module doc).
    """
    energy_of = _energy if energy_of is None else energy_of
    sqrt_n = math.sqrt(n)
    c_r = radial_curvature(p)

    def functions(constants):
        energy = energy_of(constants)

        def chart_loss(w):
            return energy(sqrt_n * _retract(w)) / n

        def full_loss(w):
            # The chart pulled back through the tangent projection at w, plus c_r/2 (radial part)^2:
            # value bitwise the chart's, Hessian the Riemannian one plus c_r w w^T (module doc).
            w0 = jax.lax.stop_gradient(w)
            d = w - w0  # exactly zero, carrying w's derivatives
            radial = (w0 @ d) / (w0 @ w0)
            return chart_loss(w0 + (d - radial * w0)) + 0.5 * c_r * radial * (w0 @ d)

        def init(key):
            return _retract(jax.random.normal(key, (n,), jnp.float32))

        return {"init": init, "full_loss": full_loss, "loss": deterministic(full_loss), "retract": _retract}

    return functions


def _reference(p: int, n: int, instance: int, scaled: np.ndarray | None, best_known_name: str | None = "") -> Reference:
    """The instance's reference values (module doc); ``scaled`` (the p = 2 matrix) only for p = 2.
    ``best_known_name``: the name under which ``best_known.json`` holds the instance ("": this
    family's name; None: never, the couplings being another family's)."""
    e_inf = threshold_energy(p)
    if best_known_name == "":
        best_known_name = f"spin_glass(p={p},n={n},instance={instance})"
    if p == 2:
        lam_min = float(np.linalg.eigvalsh(scaled.astype(np.float64))[0])
        reference = Reference(
            f_star=lam_min,
            f_target=lam_min + P2_TARGET_TOLERANCE,
            source=(
                "exact for this instance: H/N = s^T M s/N with M = N^{-1/2}(J+J^T)/2 has minimum "
                f"lambda_min(M) on |s| = sqrt(N) (numpy eigvalsh); target = f* + {P2_TARGET_TOLERANCE}"
            ),
            extra={"E_inf": e_inf, "lambda_min": lam_min},
        )
    elif best_known_name is not None and (known := best_known(best_known_name)) is not None:
        e_0 = ground_state_energy(p)
        f_ref = float(known["value"])
        reference = Reference(
            f_star=None,
            f_target=relative_target(f_ref, RANDOM_START_ENERGY, BEST_KNOWN_TAU),
            source=(
                f"best known value f_ref = {f_ref!r} of this instance (problems/best_known.json: "
                f"{known['restarts']} restarts x {len(known['optimizers'])} optimizers, {known['steps']} steps, "
                f"bench.campaign; `{known['command']}`); the ground state is unknown (f* = None); "
                f"target = f_ref + {BEST_KNOWN_TAU} (f_0 - f_ref), f_0 = 0 the mean energy at a random start"
            ),
            extra={"E_inf": e_inf, "E_0": e_0, "threshold_energy": -e_inf, "ground_state_energy": -e_0,
                   "best_known": f_ref, "tau": BEST_KNOWN_TAU, "f_0": RANDOM_START_ENERGY},
        )
    else:
        e_0 = ground_state_energy(p)
        reference = Reference(
            f_star=-e_0,
            f_target=-e_inf,
            source=(
                "Auffinger, Ben Arous, Cerny 2013: ground state -E_0 (zero of the complexity "
                "Theta_{0,p}) and threshold -E_inf = -2 sqrt((p-1)/p), both N -> infinity limits; "
                "a finite-N instance's ground state fluctuates around -E_0 (it can lie below it)"
            ),
            extra={"E_inf": e_inf, "E_0": e_0, "threshold_energy": -e_inf, "ground_state_energy": -e_0},
        )

    return reference


# -- couplings generated inside the contraction: O(N^2) memory -----------------------------------


def generated_slab(key: jax.Array, lead, n: int) -> jax.Array:
    """The slab J[lead, :, :] of the generated couplings (an (n, n) float32 array, iid N(0, 1)).

    The slab of leading indices (i_1, ..., i_{p-2}) is ``normal(fold_in(...fold_in(key, i_1)...,
    i_{p-2}), (n, n))``: a function of the instance key and its own indices only, so the numbers do
    not depend on the order or grouping in which slabs are drawn.
    """
    for i in lead:
        key = jax.random.fold_in(key, i)
    return jax.random.normal(key, (n, n), jnp.float32)


def generated_couplings(p: int, n: int, instance: int) -> np.ndarray:
    """The raw coupling tensor of ``spin_glass_generated(p, n, instance)``, dense, (n,)*p float32:
    every slab drawn as the contraction draws it (for checks at small n)."""
    key = jax.random.key(instance)
    draw = jax.jit(lambda lead: generated_slab(key, list(lead), n))
    out = np.empty((n,) * p, np.float32)
    for lead in np.ndindex(*(n,) * (p - 2)):
        out[lead] = np.asarray(draw(jnp.asarray(lead, jnp.int32)))
    return out


def _generated_energy(p: int, n: int, instance: int):
    """E(s) = sum J_{i1..ip} s_i1...s_ip over the generated raw couplings, drawn slab by slab.

    A ``lax.scan`` over the n^{p-2} slabs J_L = J[L, :, :] (L = (i_1..i_{p-2})): each is drawn from
    the instance key (``generated_slab``), used and dropped, so memory is O(n^2) whatever p. With
    c_L = s_i1...s_i{p-2} and e_L = s.J_L s, the energy is sum_L c_L e_L and its gradient

        dE/ds = sum_L [ c_L (J_L + J_L^T) s + sum_k (c_L / s_ik) e_L e_ik ],

    (the product without s_ik, computed as such, not divided), one pass over the slabs for both.
    A custom JVP returns E and g.ds, so a gradient costs one pass; HVPs differentiate the pass in
    forward mode (O(n^2) memory too). Under ``vmap`` over points s the slabs, which do not depend
    on s, are drawn once per batch and J_L s becomes a matrix product.
    """
    key = jax.random.key(instance)
    n_lead = p - 2
    scale = n ** (-(p - 1) / 2)

    def value_and_field(s):
        def body(carry, flat):
            energy, grad = carry
            lead = [(flat // n ** (n_lead - 1 - k)) % n for k in range(n_lead)]
            j = generated_slab(key, lead, n).astype(s.dtype)
            u, ut = j @ s, s @ j
            e = s @ u
            s_lead = [s[i] for i in lead]
            c = functools.reduce(lambda a, b: a * b, s_lead, jnp.ones((), s.dtype))
            grad = grad + c * (u + ut)
            for k, i in enumerate(lead):
                others = functools.reduce(lambda a, b: a * b, s_lead[:k] + s_lead[k + 1:], jnp.ones((), s.dtype))
                grad = grad.at[i].add(others * e)
            return (energy + c * e, grad), None

        zero = (jnp.zeros((), s.dtype), jnp.zeros_like(s))
        (energy, grad), _ = jax.lax.scan(body, zero, jnp.arange(n**n_lead))
        return energy * scale, grad * scale

    @jax.custom_jvp
    def energy(s):
        return value_and_field(s)[0]

    @energy.defjvp
    def _energy_jvp(primals, tangents):
        (s,), (ds,) = primals, tangents
        e, g = value_and_field(s)
        return e, g @ ds

    return energy


def spin_glass_generated(p: int = 3, n: int = 100, instance: int = 0):
    """Spherical p-spin glass whose couplings are generated slab by slab inside the contraction.

    The model, chart, loss and reference values of ``spin_glass`` (its module doc), with couplings
    J drawn by ``jax.random`` from the instance key, one (n, n) slab at a time
    (``generated_couplings`` is the same tensor, dense): no n^p tensor is ever stored, so n is
    limited by time, not memory. Another random stream than ``spin_glass``'s numpy couplings, so its
    instances are other instances (and ``best_known.json`` does not apply to them).
    """
    _check_args("spin_glass_generated", p, n, instance)
    if n**2 > MAX_COUPLING_ENTRIES:
        raise ValueError(f"spin_glass_generated: a slab of n**2 = {n**2:.3g} entries exceeds the limit "
                         f"{MAX_COUPLING_ENTRIES:.0e} (memory); use a smaller n")
    scaled = None
    if p == 2:  # the exact ground state needs the (n, n) matrix itself: O(n^2), as the slab
        scaled = symmetrize(generated_couplings(2, n, instance)) * np.float32(n ** (-1 / 2))
    reference = _reference(p, n, instance, scaled, best_known_name=None)
    fns = _chart_functions(p, n, lambda _: _generated_energy(p, n, instance))(None)
    return make(dim=n, init=fns["init"], full_loss=fns["full_loss"], retract=fns["retract"], reference=reference)
