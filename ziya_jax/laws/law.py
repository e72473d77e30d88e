"""The data-centric scaling law of Ziya2 v2 (paper section 6.3, Eq. 3-4).

    L(D) = D^(-alpha) + E,    D = (A*CH + B*RA + C*SIM) * V + F

CH (coherence) and RA (readability) are the fractions of a human-annotated sample without the
problem, SIM the mean cosine similarity between the corpus and a benchmark's test set, V the data
volume in tokens. F is the effective volume the initial model already carries.
"""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

PARAM_NAMES = ("alpha", "A", "B", "C", "E", "F")


class LawError(ValueError):
    pass


@dataclasses.dataclass(frozen=True)
class LawParams:
    alpha: float
    A: float
    B: float
    C: float
    E: float
    F: float

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict, source: str = "params") -> "LawParams":
        missing = [k for k in PARAM_NAMES if k not in d]
        if missing:
            raise LawError(f"{source}: missing law parameters {missing}; expected keys {list(PARAM_NAMES)} "
                           "as written by `python -m ziya_jax laws fit`")
        try:
            return cls(**{k: float(d[k]) for k in PARAM_NAMES})
        except (TypeError, ValueError) as e:
            raise LawError(f"{source}: law parameters must be numbers ({e})") from None

    @classmethod
    def load(cls, spec: str) -> "LawParams":
        """`paper` for the published fit, otherwise a JSON file (a fit.json or a bare parameter dict)."""
        if spec == "paper":
            return PAPER_FIT
        path = Path(spec)
        if not path.is_file():
            raise LawError(f"law parameters {spec} not found; pass a fit.json from `laws fit` or `paper`")
        try:
            d = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise LawError(f"{spec}: not JSON ({e.msg} at line {e.lineno}); pass a fit.json from `laws fit`") from None
        return cls.from_dict(d.get("params", d), spec)


# Eq. 6-7 of the paper: L = D^-0.06 + 0.31, D = (1.66 CH + 1.98 RA + 0.70 SIM) V + 1.24e10.
PAPER_FIT = LawParams(alpha=0.06, A=1.66, B=1.98, C=0.70, E=0.31, F=1.24e10)


def effective_data(p: LawParams, ch: float, ra: float, sim: float, volume: float) -> float:
    return (p.A * ch + p.B * ra + p.C * sim) * volume + p.F


def predict_loss(p: LawParams, ch: float, ra: float, sim: float, volume: float) -> float:
    d = effective_data(p, ch, ra, sim, volume)
    if d <= 0:
        raise LawError(f"effective data D = {d:.4g} <= 0 for CH={ch}, RA={ra}, SIM={sim}, V={volume}")
    return d ** -p.alpha + p.E


def volume_for_loss(p: LawParams, target: float, ch: float, ra: float, sim: float) -> float:
    """Volume V at which the law reaches `target`: 0 if already there, inf if unreachable."""
    if target <= p.E:
        return math.inf                      # the irreducible loss E is never reached
    if p.alpha <= 0:
        return math.inf
    d_needed = (target - p.E) ** (-1.0 / p.alpha)
    rate = p.A * ch + p.B * ra + p.C * sim
    if d_needed <= p.F:
        return 0.0
    if rate <= 0:
        return math.inf
    return (d_needed - p.F) / rate
