"""Fit the data-centric scaling law the way the paper does (section 6.3, Eq. 5).

Minimise sum_i Huber_delta(logsumexp(-alpha*log D_i, e) - log L_i) with e = log E and delta = 1e-3,
by L-BFGS from every point of the paper's initialisation grid, and keep the best result. The grid
runs as one batched (vmapped) L-BFGS in float64 under `jax.jit`, so all 32,768 starts take
seconds on a CPU. F is optimised as f = log F (its scale is 1e10-1e12); E's grid values are read as
e = log E, as in Chinchilla's Approach 3 that the paper follows (E = 0 has no logarithm).
"""
from __future__ import annotations

import csv
import dataclasses
import itertools
import math
from pathlib import Path

import numpy as np

from ziya_jax.laws.law import PARAM_NAMES, LawError, LawParams

HUBER_DELTA = 1e-3
POINT_COLUMNS = ("ch", "ra", "sim", "v", "loss")
COLUMN_ALIASES = {"volume": "v", "tokens": "v", "coherence": "ch", "readability": "ra", "similarity": "sim"}


@dataclasses.dataclass(frozen=True)
class Grid:
    """Initialisation grid of paper section 6.3 (alpha, A/B/C, e = log E, F)."""
    alpha: tuple = (0.0, 0.67, 1.33, 2.0)
    abc: tuple = tuple(round(2 * k / 7, 4) for k in range(8))
    e: tuple = (0.0, 0.67, 1.33, 2.0)
    F: tuple = (1e12, 1.67e12, 2.33e12, 3e12)

    def starts(self) -> np.ndarray:
        """[n, 6] float64 starts in the optimiser's coordinates (alpha, A, B, C, e, log F)."""
        rows = itertools.product(self.alpha, self.abc, self.abc, self.abc, self.e, [math.log(f) for f in self.F])
        return np.array(list(rows), dtype=np.float64)


GRIDS = {"paper": Grid(),    # 4 x 8^3 x 4 x 4 = 32,768 starts (about a minute on 2 CPU cores)
         "coarse": Grid(alpha=(0.0, 0.67), abc=(0.0, 1.0, 2.0), e=(0.0, 1.0), F=(1e12, 3e12))}   # 216 starts


@dataclasses.dataclass(frozen=True)
class Points:
    ch: np.ndarray
    ra: np.ndarray
    sim: np.ndarray
    v: np.ndarray
    loss: np.ndarray

    def __len__(self) -> int:
        return len(self.loss)


def make_points(ch, ra, sim, v, loss, source: str = "points") -> Points:
    arrays = [np.asarray(x, dtype=np.float64).reshape(-1) for x in (ch, ra, sim, v, loss)]
    n = len(arrays[-1])
    if any(len(a) != n for a in arrays):
        raise LawError(f"{source}: columns have different lengths {[len(a) for a in arrays]}")
    for name, a in zip(POINT_COLUMNS, arrays):
        bad = np.flatnonzero(~np.isfinite(a))
        if bad.size:
            raise LawError(f"{source}: point {int(bad[0]) + 1} has a non-finite {name} ({a[bad[0]]}); remove or fix it")
    p = Points(*arrays)
    if n < len(PARAM_NAMES):
        raise LawError(f"{source}: {n} points cannot determine {len(PARAM_NAMES)} parameters "
                       f"{list(PARAM_NAMES)}; give at least {len(PARAM_NAMES)} (the paper used 84)")
    for name, a, ok, need in (("loss", p.loss, p.loss > 0, "> 0"), ("v", p.v, p.v >= 0, ">= 0")):
        bad = np.flatnonzero(~ok)
        if bad.size:
            raise LawError(f"{source}: point {int(bad[0]) + 1} has {name} = {a[bad[0]]}; {name} must be {need}")
    for name, a in (("ch", p.ch), ("ra", p.ra), ("sim", p.sim)):
        bad = np.flatnonzero((a < 0) | (a > 1))
        if bad.size:
            raise LawError(f"{source}: point {int(bad[0]) + 1} has {name} = {a[bad[0]]}; attributes lie in [0, 1]")
    return p


def read_points(path: str) -> Points:
    """POINTS.csv with a header naming ch, ra, sim, v (or volume) and loss, any case, any order."""
    if not Path(path).is_file():
        raise LawError(f"points file {path} not found; write a CSV with columns {', '.join(POINT_COLUMNS)}")
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        names = {}
        for raw in reader.fieldnames or []:
            key = raw.strip().lower()
            names[COLUMN_ALIASES.get(key, key)] = raw
        missing = [c for c in POINT_COLUMNS if c not in names]
        if missing:
            raise LawError(f"{path}: missing columns {missing}; the header needs {', '.join(POINT_COLUMNS)}")
        cols = {c: [] for c in POINT_COLUMNS}
        for line, row in enumerate(reader, 2):
            for c in POINT_COLUMNS:
                text = (row.get(names[c]) or "").strip()
                try:
                    cols[c].append(float(text))
                except ValueError:
                    raise LawError(f"{path}:{line}: {c} is {text!r}, not a number") from None
    return make_points(*(cols[c] for c in POINT_COLUMNS), source=path)


def _objective_fns(points: Points, delta: float):
    import jax.numpy as jnp

    ch, ra, sim, v = (jnp.asarray(x) for x in (points.ch, points.ra, points.sim, points.v))
    log_loss = jnp.log(jnp.asarray(points.loss))

    def predicted_log_loss(theta):
        alpha, a, b, c, e, f = (theta[i] for i in range(6))
        d = (a * ch + b * ra + c * sim) * v + jnp.exp(f)
        log_d = jnp.log(jnp.maximum(d, 1.0))
        return jnp.logaddexp(-alpha * log_d, e)

    def objective(theta):
        r = predicted_log_loss(theta) - log_loss
        ar = jnp.abs(r)
        return jnp.sum(jnp.where(ar <= delta, 0.5 * r * r, delta * (ar - 0.5 * delta)))

    return objective, predicted_log_loss


def _batched_lbfgs(objective, starts, max_iter: int, tol: float, memory: int = 10, max_step: float = 1.0,
                   num_trials: int = 16):
    """L-BFGS on every start at once: two-loop recursion, a step no longer than `max_step` in any
    coordinate (so no start leaps onto the law's flat plateaus), and a backtracking Armijo line
    search whose trial steps 1, 1/2, ... are evaluated together. Fixed-shape, so it vmaps and jits."""
    import jax
    import jax.numpy as jnp

    value_and_grad = jax.value_and_grad(objective)
    trials = 0.5 ** jnp.arange(num_trials, dtype=jnp.float64)

    def direction(g, s_hist, y_hist, rho, count):
        q = g
        alphas = jnp.zeros(memory)
        for i in reversed(range(memory)):          # newest entry is last; unfilled entries have rho 0
            a = rho[i] * jnp.dot(s_hist[i], q)
            alphas = alphas.at[i].set(a)
            q = q - a * y_hist[i]
        last = memory - 1
        sy, yy = jnp.dot(s_hist[last], y_hist[last]), jnp.dot(y_hist[last], y_hist[last])
        gamma = jnp.where((count > 0) & (yy > 0), sy / jnp.where(yy > 0, yy, 1.0), 1.0)
        r = gamma * q
        for i in range(memory):
            b = rho[i] * jnp.dot(y_hist[i], r)
            r = r + s_hist[i] * (alphas[i] - b)
        return -r

    def solve(theta0):
        def body(carry, _):
            theta, value, grad, s_hist, y_hist, rho, count, done, steps = carry
            p = direction(grad, s_hist, y_hist, rho, count)
            descent = jnp.dot(p, grad) < 0
            p = jnp.where(descent, p, -grad)                 # fall back to steepest descent
            scale = jnp.minimum(1.0, max_step / (jnp.max(jnp.abs(p)) + 1e-300))
            p = p * scale
            slope = jnp.dot(p, grad)
            cand = jax.vmap(lambda t: objective(theta + t * p))(trials)
            ok = jnp.isfinite(cand) & (cand <= value + 1e-4 * trials * slope)
            k = jnp.argmax(ok)
            accept = ok[k] & ~done
            new_theta = jnp.where(accept, theta + trials[k] * p, theta)
            new_value, new_grad = value_and_grad(new_theta)
            s, y = new_theta - theta, new_grad - grad
            sy = jnp.dot(s, y)
            keep = accept & (sy > 1e-300)
            s_hist = jnp.where(keep, jnp.concatenate([s_hist[1:], s[None]]), s_hist)
            y_hist = jnp.where(keep, jnp.concatenate([y_hist[1:], y[None]]), y_hist)
            rho = jnp.where(keep, jnp.concatenate([rho[1:], jnp.array([1.0 / jnp.where(keep, sy, 1.0)])]), rho)
            # a failed line search restarts the memory (steepest descent next time); a second failure ends it
            stalled = ~accept & (count == 0)
            count = jnp.where(keep, count + 1, jnp.where(accept, count, 0))
            s_hist = jnp.where(accept, s_hist, jnp.zeros_like(s_hist))
            y_hist = jnp.where(accept, y_hist, jnp.zeros_like(y_hist))
            rho = jnp.where(accept, rho, jnp.zeros_like(rho))
            steps = steps + (~done).astype(steps.dtype)
            done = done | stalled | (jnp.max(jnp.abs(new_grad)) < tol)
            return (new_theta, new_value, new_grad, s_hist, y_hist, rho, count, done, steps), None

        value, grad = value_and_grad(theta0)
        init = (theta0, value, grad, jnp.zeros((memory, 6)), jnp.zeros((memory, 6)), jnp.zeros(memory),
                jnp.asarray(0), jnp.asarray(False), jnp.asarray(0))
        (theta, value, *_, steps), _ = jax.lax.scan(body, init, None, length=max_iter)
        return theta, jnp.where(jnp.isfinite(value), value, jnp.inf), steps

    return jax.jit(jax.vmap(solve))(jnp.asarray(starts))


def _run_starts(objective, starts: np.ndarray, max_iter: int, tol: float, chunk: int):
    thetas, values, iters = [], [], []
    for i in range(0, len(starts), chunk):
        t, v, it = _batched_lbfgs(objective, starts[i:i + chunk], max_iter, tol)
        thetas.append(np.asarray(t))
        values.append(np.asarray(v))
        iters.append(np.asarray(it))
    return np.concatenate(thetas), np.concatenate(values), np.concatenate(iters)


def fit_law(points: Points, grid: Grid | None = None, delta: float = HUBER_DELTA, max_iter: int = 1000,
            screen_iter: int = 60, refine: int = 256, tol: float = 1e-12, chunk: int = 4096) -> dict:
    """Best-of-grid L-BFGS fit; returns {"params", "objective", "rmse_log_loss", ...}.

    Every grid start runs `screen_iter` L-BFGS iterations; the `refine` best continue to `max_iter`
    (a grid no larger than `refine` runs to `max_iter` directly)."""
    import jax
    import jax.numpy as jnp

    grid = grid or Grid()
    starts = grid.starts()
    with jax.enable_x64(True):
        objective, predicted_log_loss = _objective_fns(points, delta)
        if len(starts) > refine:
            screened, values, screen_steps = _run_starts(objective, starts, screen_iter, tol, chunk)
            keep = np.argsort(values, kind="stable")[:refine]
            thetas, values, iters = _run_starts(objective, screened[keep], max_iter, tol, chunk)
            iters = iters + screen_steps[keep]
        else:
            keep = np.arange(len(starts))
            thetas, values, iters = _run_starts(objective, starts, max_iter, tol, chunk)
        best = int(np.argmin(values))
        theta = thetas[best]
        pred = np.exp(np.asarray(predicted_log_loss(jnp.asarray(theta))))
    alpha, a, b, c, e, f = (float(x) for x in theta)
    params = LawParams(alpha=alpha, A=a, B=b, C=c, E=math.exp(e), F=math.exp(f))
    rel = (pred - points.loss) / points.loss
    return {
        "params": params.to_dict(),
        "objective": float(values[best]),
        "rmse_log_loss": float(np.sqrt(np.mean((np.log(pred) - np.log(points.loss)) ** 2))),
        "max_abs_rel_error": float(np.max(np.abs(rel))),
        "num_points": len(points),
        "grid_starts": len(starts),
        "refined_starts": int(min(refine, len(starts))),
        "best_start": dict(zip(("alpha", "A", "B", "C", "e", "log_F"), (float(x) for x in starts[keep[best]]))),
        "iterations_of_best": int(iters[best]),
        "refined_within_1e-9_of_best": int(np.sum(values <= values[best] + 1e-9)),
        "huber_delta": delta,
        "predicted_loss": pred.tolist(),
    }
