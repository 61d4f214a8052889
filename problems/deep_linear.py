"""Deep linear networks on a linear teacher: f(W_1..W_D) = 1/(2n) sum_k |W_D ... W_1 x_k - y_k|^2.

Data: n samples x_k ~ N(0, I_{d_in}); a teacher W* = U diag(s) V^T of rank teacher_rank with
random orthonormal U, V and geometric singular values s_i = s_max s_ratio^(i-1); labels
y_k = W* x_k + noise * N(0, I_{d_out}). Everything is drawn from numpy's default_rng(instance)
and stored in float32. Layer l maps width h_{l-1} to h_l (h_0 = d_in, h_D = d_out); the hidden
widths are `widths` if given (length depth - 1; a small entry is a bottleneck), else `width`.

With the empirical moments S_xx = X^T X / n, S_yx = Y^T X / n, S_yy = Y^T Y / n the loss is
f = 1/2 tr S_yy - tr(W S_xy) + 1/2 tr(W S_xx W^T) in the end-to-end matrix W = W_D ... W_1, whose
rank is at most r = min(d_in, d_out, h_1, ..., h_{D-1}). Its global minimum is reduced-rank
regression (Baldi and Hornik 1989; Kawaguchi 2016, "Deep Learning without Poor Local Minima"):

    f* = 1/2 (tr S_yy - sum_{i<=r} lambda_i),   lambda_1 >= lambda_2 >= ... the eigenvalues of
                                                 S_yx S_xx^{-1} S_xy,

computed here in float64 from the float32 data. Every local minimum is global (Kawaguchi 2016);
the other critical points are saddles, among them the plateaus f_k = 1/2 (tr S_yy - sum_{i<=k}
lambda_i), k < r, that gradient descent from a small initialization visits in turn (Saxe,
McClelland and Ganguli 2014, "Exact solutions to the nonlinear dynamics of learning in deep linear
neural networks"). The origin (all weights zero) is a saddle with f = 1/2 tr S_yy: for D = 2 the
Hessian there has eigenvalues +-sigma_i(S_yx), each h_1 times, and zeros (a strict saddle of
index h_1 rank(S_yx)); for D >= 3 the Hessian at the origin is exactly zero (degenerate saddle,
index None). The depth-1 network is plain linear regression (convex, no saddle).

Inits (params are the tuple (W_1, ..., W_D), float32):
  gaussian:   iid N(0, init_scale^2 / h_{l-1}) entries (init_scale = 1 is LeCun's scale).
  orthogonal: init_scale times a random semi-orthogonal matrix per layer.
  balanced:   W_l = init_scale P_l P_{l-1}^T with Haar-random orthonormal frames P_0 (d_in x r),
              P_l (h_l x r), P_D (d_out x r): every layer is init_scale times a rank-r partial
              isometry, the end-to-end map is init_scale^D P_D P_0^T, and
              W_{l+1}^T W_{l+1} = init_scale^2 P_l P_l^T = W_l W_l^T exactly (the balancedness of
              Saxe et al. 2014; Arora, Cohen and Hazan 2018).
  aligned:    balanced, with the end-to-end map init_scale^D U_r V_r^T aligned to the top-r
              singular vectors of S_yx: Saxe et al. 2014's decoupled initial condition, in which
              every mode is learned independently along a sigmoid trajectory.

batch_size > 0 makes `loss` the mean over batch_size samples drawn uniformly with replacement
(unbiased for full_loss); 0 keeps the problem deterministic.
"""

import jax
import jax.numpy as jnp
import numpy as np

from problems.base import Reference, Saddle, make, relative_target

INITS = ("gaussian", "orthogonal", "balanced", "aligned")


def deep_linear_layer_dims(depth: int, width: int, widths: tuple, d_in: int, d_out: int) -> list[int]:
    """[h_0, ..., h_D]: the input dim, the hidden widths, the output dim."""
    hidden = list(widths) if widths else [width] * (depth - 1)
    return [d_in, *hidden, d_out]


def deep_linear_data(d_in, d_out, n_samples, teacher_rank, s_max, s_ratio, noise, instance):
    """X (n, d_in), Y (n, d_out) and the teacher W* (d_out, d_in), float32, from default_rng(instance)."""
    rng = np.random.default_rng(instance)
    x = rng.standard_normal((n_samples, d_in))
    u, _ = np.linalg.qr(rng.standard_normal((d_out, teacher_rank)))
    v, _ = np.linalg.qr(rng.standard_normal((d_in, teacher_rank)))
    s = s_max * s_ratio ** np.arange(teacher_rank)
    teacher = (u * s) @ v.T
    y = x @ teacher.T + noise * rng.standard_normal((n_samples, d_out))
    return x.astype(np.float32), y.astype(np.float32), teacher.astype(np.float32)


def deep_linear_moments(x, y):
    """S_xx, S_yx, S_yy in float64 from the (float32) data."""
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    n = x.shape[0]
    return x.T @ x / n, y.T @ x / n, y.T @ y / n


def end_to_end(params):
    """W_D ... W_1 for params = (W_1, ..., W_D)."""
    w = params[0]
    for layer in params[1:]:
        w = layer @ w
    return w


def deep_linear_value(params, x, y):
    h = x
    for layer in params:
        h = h @ layer.T
    r = h - y
    return 0.5 * jnp.sum(r * r) / x.shape[0]


def _blocks(key, shapes):
    """Standard normal matrices of the given shapes from ONE draw (one PRNG op compiles ~3x faster)."""
    sizes = [r * c for r, c in shapes]
    z = jax.random.normal(key, (sum(sizes),), jnp.float32)
    offsets = np.cumsum([0, *sizes])
    return [z[o : o + n].reshape(shape) for o, n, shape in zip(offsets, sizes, shapes, strict=False)]


def _orthonormal_columns(g):
    """The Q of g = QR with diag(R) > 0 (rows >= cols): Haar-distributed for Gaussian g.

    Gram-Schmidt with reorthogonalization ("twice is enough"), matmuls only. Not jnp.linalg.qr:
    batched LAPACK calls under vmap can deadlock XLA's CPU thread pool (seen with jaxlib 0.10.2
    inside a jitted vmap-over-seeds scan), and the runner vmaps init over seeds.
    """

    def column(j, q):
        v = jax.lax.dynamic_index_in_dim(g, j, axis=1, keepdims=False)
        for _ in range(2):  # q's columns from j on are still 0, so this projects on the first j
            v = v - q @ (q.T @ v)
        return jax.lax.dynamic_update_index_in_dim(q, v / jnp.linalg.norm(v), j, axis=1)

    return jax.lax.fori_loop(0, g.shape[1], column, jnp.zeros_like(g))


def _factorize(v, u, core, hidden_frames, scale):
    """Layers W_l = scale P_l diag(core) P_{l-1}^T with P_0 = V, P_D = U and the hidden frames between.

    V (d_in x k), U (d_out x k) and the hidden frames P_l (h_l x k) have orthonormal columns, so
    W_{l+1}^T W_{l+1} = scale^2 P_l diag(core)^2 P_l^T = W_l W_l^T (balanced) and the product is
    scale^D U diag(core^D) V^T.
    """
    frames = [v, *hidden_frames, u]
    return tuple(scale * (frames[l + 1] * core) @ frames[l].T for l in range(len(frames) - 1))


def deep_linear(
    depth: int = 3,
    width: int = 8,
    widths: tuple = (),
    d_in: int = 8,
    d_out: int = 8,
    n_samples: int = 128,
    teacher_rank: int = 4,
    s_max: float = 3.0,
    s_ratio: float = 0.5,
    noise: float = 0.0,
    instance: int = 0,
    init: str = "gaussian",
    init_scale: float = 0.1,
    batch_size: int = 0,
):
    """Deep linear net on a linear teacher: f* = reduced-rank regression, saddle at 0."""
    fam = "deep_linear"
    if depth < 1:
        raise ValueError(f"{fam}: depth must be >= 1, got {depth}")
    if widths:
        if len(widths) != depth - 1:
            raise ValueError(
                f"{fam}: widths needs depth - 1 = {depth - 1} hidden widths, got {len(widths)}: {widths}"
            )
        if not all(isinstance(h, int) and not isinstance(h, bool) and h >= 1 for h in widths):
            raise ValueError(f"{fam}: widths must be positive integers, got {widths}")
    elif width < 1:
        raise ValueError(f"{fam}: width must be >= 1, got {width}")
    if d_in < 1 or d_out < 1:
        raise ValueError(f"{fam}: d_in and d_out must be >= 1, got {d_in}, {d_out}")
    if n_samples < d_in:
        raise ValueError(f"{fam}: n_samples must be >= d_in = {d_in} (S_xx invertible), got {n_samples}")
    if not 1 <= teacher_rank <= min(d_in, d_out):
        raise ValueError(
            f"{fam}: teacher_rank must be in [1, min(d_in, d_out) = {min(d_in, d_out)}], got {teacher_rank}"
        )
    if not s_max > 0 or not 0 < s_ratio <= 1:
        raise ValueError(f"{fam}: need s_max > 0 and 0 < s_ratio <= 1, got {s_max}, {s_ratio}")
    if noise < 0:
        raise ValueError(f"{fam}: noise must be >= 0, got {noise}")
    if instance < 0:
        raise ValueError(f"{fam}: instance must be >= 0, got {instance}")
    if init not in INITS:
        raise ValueError(f"{fam}: init must be one of {INITS}, got {init!r}")
    if not init_scale > 0:
        raise ValueError(f"{fam}: init_scale must be > 0, got {init_scale}")
    if not 0 <= batch_size <= n_samples:
        raise ValueError(f"{fam}: batch_size must be in [0, n_samples = {n_samples}], got {batch_size}")

    dims = deep_linear_layer_dims(depth, width, widths, d_in, d_out)
    rank = min(dims)
    x_np, y_np, _ = deep_linear_data(d_in, d_out, n_samples, teacher_rank, s_max, s_ratio, noise, instance)
    s_xx, s_yx, s_yy = deep_linear_moments(x_np, y_np)
    m = s_yx @ np.linalg.solve(s_xx, s_yx.T)
    lam = np.clip(np.linalg.eigvalsh((m + m.T) / 2)[::-1], 0.0, None)
    tr_yy = float(np.trace(s_yy))
    # tr S_yy >= tr M in exact arithmetic; the clip only removes float64 rounding (~1e-15).
    plateaus = [max(0.5 * (tr_yy - float(np.sum(lam[:k]))), 0.0) for k in range(rank + 1)]
    f_star = plateaus[rank]
    saddle_value = plateaus[0]
    u_yx, sv_yx, vt_yx = np.linalg.svd(s_yx)

    x = jnp.asarray(x_np)
    y = jnp.asarray(y_np)

    def full_loss(params):
        return deep_linear_value(params, x, y)

    shapes = [(dims[l + 1], dims[l]) for l in range(depth)]
    hidden_shapes = [(dims[l], rank) for l in range(1, depth)]
    v_yx = jnp.asarray(vt_yx[:rank].T, jnp.float32)
    u_yx = jnp.asarray(u_yx[:, :rank], jnp.float32)

    def init_fn(key):
        if init == "gaussian":
            blocks = _blocks(key, shapes)
            return tuple(float(init_scale / np.sqrt(c)) * b for (_, c), b in zip(shapes, blocks, strict=True))
        if init == "orthogonal":
            blocks = _blocks(key, [(max(r, c), min(r, c)) for r, c in shapes])
            return tuple(
                init_scale * (q if r >= c else q.T)
                for (r, c), q in zip(shapes, map(_orthonormal_columns, blocks), strict=True)
            )
        if init == "balanced":
            frames = [_orthonormal_columns(b) for b in _blocks(key, [(d_in, rank), *hidden_shapes, (d_out, rank)])]
            return _factorize(frames[0], frames[-1], jnp.ones(rank, jnp.float32), frames[1:-1], init_scale)
        # aligned: the end-to-end map is init_scale^D U_r V_r^T; only the hidden frames are random.
        frames = [_orthonormal_columns(h) for h in _blocks(key, hidden_shapes)] if depth > 1 else []
        return _factorize(v_yx, u_yx, jnp.ones(rank, jnp.float32), frames, init_scale)

    loss = None
    if batch_size > 0:

        def loss(params, key):
            idx = jax.random.randint(key, (batch_size,), 0, n_samples)
            return deep_linear_value(params, x[idx], y[idx])

    def sample_loss(params, idx):  # the mean over the samples idx (the finite-sum contract)
        return deep_linear_value(params, x[idx], y[idx])

    n_sv = int(np.sum(sv_yx > 1e-6 * sv_yx[0]))
    if depth == 1:
        saddles = ()
    else:
        saddles = (
            Saddle(
                point=tuple(jnp.zeros((dims[l + 1], dims[l]), jnp.float32) for l in range(depth)),
                value=saddle_value,
                # D = 2: eigenvalues +-sigma_i(S_yx), each h_1 times; D >= 3: Hessian exactly 0.
                index=dims[1] * n_sv if depth == 2 else None,
                name="origin",
            ),
        )
    return make(
        dim=sum(dims[l] * dims[l + 1] for l in range(depth)),
        init=init_fn,
        full_loss=full_loss,
        loss=loss,
        reference=Reference(
            f_star=f_star,
            f_target=relative_target(f_star, saddle_value),
            source=(
                "closed form (reduced-rank regression): f* = 1/2 (tr S_yy - sum_{i<=r} lambda_i(S_yx "
                "S_xx^-1 S_xy)), r = min layer width, computed in float64 from the data; "
                "target f* + 1e-4 (f(0) - f*)"
            ),
            extra={
                "saddle_value": saddle_value,
                "rank": float(rank),
                **{f"plateau_{k}": plateaus[k] for k in range(1, rank)},
                **{f"lambda_{i + 1}": float(v) for i, v in enumerate(lam[: min(d_in, d_out)])},
            },
        ),
        saddles=saddles,
        n_samples=n_samples,
        sample_loss=sample_loss,
        batch_samples=batch_size if batch_size > 0 else n_samples,
    )
