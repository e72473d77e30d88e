"""Step 5, data evaluation (paper section 2.1 step 5, Table 1, Figure 8).

Automatic metrics on the 1% sample the pipeline wrote (`eval/auto_sample.jsonl`; the 1,000-document
human sample is used as well when the corpus is too small for 1% to mean anything), a human
annotation sheet (CSV: coherence, readability, toxic, 1 = problem present), import of the filled
sheet, and the accept/reject gate: every level-1 metric must be at most `max_rate_per_1000`
problems per 1,000 documents.
"""
from __future__ import annotations

import csv
import glob
import io
import json
import math
import re
import statistics
from collections import Counter
from pathlib import Path

from ziya_jax.data.filters import HTML_TAG_RE, TermMatcher, find_privacy, load_wordlist
from ziya_jax.data.io import atomic_write_text

SHEET_FIELDS = ("id", "source", "lang", "quality", "text", "coherence", "readability", "toxic", "notes")
HUMAN_METRICS = ("coherence", "readability", "toxic")
SENT_END_RE = re.compile(r"[。！？!?.;；]+")
TOPICS = {
    "code": ("def ", "return", "import ", "class ", "```", "{", "};"),
    "religion": ("god", "lord", "jesus", "israel", "prophet", "神", "佛", "道"),
    "poetry_literature": ("诗", "词", "月", "春", "poem", "love", "heart", "night"),
    "science_technology": ("computer", "science", "system", "data", "program", "科学", "技术", "计算机"),
    "society_law": ("law", "government", "people", "money", "法律", "政府", "社会", "人民"),
}


class SheetError(ValueError):
    pass


def _read_jsonl(pattern: str) -> list[dict]:
    docs = []
    for path in sorted(glob.glob(pattern)):
        with open(path, encoding="utf-8") as fh:
            docs.extend(json.loads(line) for line in fh if line.strip())
    return docs


def _per_1000(n: int, total: int) -> float:
    return round(1000.0 * n / total, 3) if total else 0.0


def _topic(text: str) -> str:
    low = text[:3000].lower()
    scores = {t: sum(low.count(k) for k in keys) for t, keys in TOPICS.items()}
    best = max(scores, key=scores.get)
    return best if scores[best] > 0 else "other"


def automatic_metrics(docs: list[dict], max_rate_per_1000: float = 1.0) -> dict:
    toxic_m = TermMatcher(load_wordlist("toxic_zh.txt") + load_wordlist("toxic_en.txt"))
    ad_m = TermMatcher(load_wordlist("ads_zh.txt") + load_wordlist("ads_en.txt"))
    n = len(docs)
    privacy = sum(1 for d in docs if find_privacy(d["text"], d.get("lang", "")))
    toxic = sum(1 for d in docs if toxic_m.search(d["text"]))
    adv = sum(1 for d in docs if ad_m.search(d["text"]))
    html = sum(1 for d in docs if d.get("lang") != "code" and HTML_TAG_RE.search(d["text"]))
    level1 = {"privacy_word_rate": _per_1000(privacy, n), "toxic_word_rate": _per_1000(toxic, n),
              "adv_word_rate": _per_1000(adv, n), "webpage_funcword_rate": _per_1000(html, n)}
    ppl_by_lang: dict[str, list[float]] = {}
    for d in docs:
        if d.get("ppl", -1) >= 0:
            ppl_by_lang.setdefault(d["lang"], []).append(d["ppl"])
    info, sent_len = [], []
    for d in docs:
        units = list(d["text"].replace(" ", "")) if d["lang"] == "zh" else d["text"].lower().split()
        if units:
            counts = Counter(units)
            entropy = -sum(c / len(units) * math.log2(c / len(units)) for c in counts.values())
            info.append(entropy)
        sents = [s for s in SENT_END_RE.split(d["text"]) if s.strip()]
        if sents and d["lang"] != "code":
            sent_len.append(statistics.mean(len(s) if d["lang"] == "zh" else len(s.split()) for s in sents))
    lengths = sorted(len(d["text"]) for d in docs)

    def pct(values, q):
        return values[min(len(values) - 1, int(q * len(values)))] if values else 0

    return {
        "documents": n,
        "level1_per_1000": level1,
        "perplexity": {lang: {"median": round(statistics.median(v), 2), "mean": round(statistics.mean(v), 2)}
                       for lang, v in sorted(ppl_by_lang.items())},
        "informativeness_bits_per_unit": round(statistics.mean(info), 3) if info else 0.0,
        "readability_mean_sentence_length": round(statistics.mean(sent_len), 2) if sent_len else 0.0,
        "language": dict(Counter(d["lang"] for d in docs).most_common()),
        "source": dict(Counter(d.get("source", "") for d in docs).most_common()),
        "quality": dict(Counter(d.get("quality", "") for d in docs).most_common()),
        "doc_length_chars": {"p10": pct(lengths, .1), "p50": pct(lengths, .5), "p90": pct(lengths, .9),
                             "max": lengths[-1] if lengths else 0},
        "topic": dict(Counter(_topic(d["text"]) for d in docs).most_common()),
        "passes": {k: v <= max_rate_per_1000 for k, v in level1.items()},
    }


def export_sheet(docs: list[dict], path: str) -> None:
    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, fieldnames=SHEET_FIELDS)
    w.writeheader()
    for d in docs:
        w.writerow({"id": d["id"], "source": d.get("source", ""), "lang": d.get("lang", ""),
                    "quality": d.get("quality", ""), "text": d["text"], "coherence": "", "readability": "",
                    "toxic": "", "notes": ""})
    atomic_write_text(path, buf.getvalue())


def read_sheet(path: str) -> dict:
    """Problem rates from a filled sheet: every row needs 0 or 1 in coherence, readability and toxic."""
    if not Path(path).exists():
        raise SheetError(f"annotation sheet {path} not found")
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in ("id",) + HUMAN_METRICS if c not in (reader.fieldnames or [])]
        if missing:
            raise SheetError(f"{path}: missing columns {missing}; export a sheet with `python -m ziya_jax data report`")
        counts = Counter()
        rows = 0
        for line, row in enumerate(reader, 2):
            rows += 1
            for m in HUMAN_METRICS:
                v = (row[m] or "").strip()
                if v not in ("0", "1"):
                    raise SheetError(f"{path}:{line} (id {row['id']}): {m} is {v!r}; fill it with 0 (ok) or 1 (problem)")
                counts[m] += int(v)
    if rows == 0:
        raise SheetError(f"{path}: no annotated rows")
    return {"rows": rows, "problems": {m: counts[m] for m in HUMAN_METRICS},
            "problem_rate_per_1000": {m: _per_1000(counts[m], rows) for m in HUMAN_METRICS},
            "ok_fraction": {m: round(1 - counts[m] / rows, 4) for m in HUMAN_METRICS}}


def gate(metrics: dict, human: dict | None, max_rate_per_1000: float) -> dict:
    """Accept when every level-1 automatic metric (and every human metric, if annotated) passes."""
    failures = [f"{k}={v}" for k, v in metrics["level1_per_1000"].items() if v > max_rate_per_1000]
    if human is not None:
        failures += [f"human_{k}={v}" for k, v in human["problem_rate_per_1000"].items() if v > max_rate_per_1000]
    return {"accepted": not failures, "failures": failures, "threshold_per_1000": max_rate_per_1000,
            "human_annotated": human is not None,
            "advice": "" if not failures else "make scoring and rule filtering stricter for the failing metrics and rerun"}


def evaluate_output(out_dir: str, cfg) -> dict:
    """Write eval/metrics.json, eval/annotation_sheet.csv and eval/gate.json for a finished pipeline run."""
    ev = Path(out_dir) / "eval"
    auto = _read_jsonl(str(ev / "auto_sample*.jsonl"))
    human = _read_jsonl(str(ev / "human_sample*.jsonl"))
    sample = auto if len(auto) >= 100 else {d["id"]: d for d in auto + human}.values()
    sample = sorted(sample, key=lambda d: d["id"])
    rate = float(cfg.eval.max_rate_per_1000)
    metrics = automatic_metrics(sample, rate)
    metrics["sample"] = "1% sample" if len(auto) >= 100 else "1% sample + human sample (small corpus)"
    _write(ev / "metrics.json", metrics)
    export_sheet(sorted(human, key=lambda d: d["id"]), str(ev / "annotation_sheet.csv"))
    result = gate(metrics, None, rate)
    _write(ev / "gate.json", result)
    return result


def import_sheet(out_dir: str, sheet: str, max_rate_per_1000: float | None = None) -> dict:
    ev = Path(out_dir) / "eval"
    metrics_path = ev / "metrics.json"
    if not metrics_path.exists():
        raise SheetError(f"{out_dir} has no eval/metrics.json; run `python -m ziya_jax data run` first")
    metrics = json.loads(metrics_path.read_text())
    human = read_sheet(sheet)
    if max_rate_per_1000 is None:
        stats = json.loads((Path(out_dir) / "stats.json").read_text())
        max_rate_per_1000 = float(stats.get("config", {}).get("eval", {}).get("max_rate_per_1000", 1.0))
    _write(ev / "human.json", human)
    result = gate(metrics, human, max_rate_per_1000)
    _write(ev / "gate.json", result)
    return result


def _write(path: Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False))
