"""CH and RA (and the toxic rate) from the data factory's filled 1,000-sample annotation sheet.

The sheet marks 1 where a problem is present (paper Figure 8); the paper's Table 4 values are
high-is-good (Toxic 0.990), so each attribute is the fraction of rows marked 0.
"""
from __future__ import annotations

from ziya_jax.data.evaluate import read_sheet


def attributes_from_sheet(path: str) -> dict:
    h = read_sheet(path)
    ok = h["ok_fraction"]
    return {"sheet": path, "rows": h["rows"], "CH": ok["coherence"], "RA": ok["readability"],
            "toxic_free": ok["toxic"], "problems": h["problems"]}
