"""`python -m ziya_jax data report DIR`: report.md with PNG plots for a finished data-factory run.

Contents: the retention funnel per step (like the paper's Figure 2), drops per reason and removed
fragments per rule, perplexity and length histograms of the curated sample, language/source/quality
mix, the automatic metrics and gate, and example documents for every drop reason.
"""
from __future__ import annotations

import glob
import json
from collections import defaultdict
from pathlib import Path

from ziya_jax.data.io import atomic_write_text


def _load_rejected_examples(out: Path, per_reason: int = 2) -> dict:
    examples: dict = defaultdict(list)
    for path in sorted(glob.glob(str(out / "rejected" / "*.jsonl"))):
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                r = json.loads(line)
                key = (r["step"], r["reason"])
                if len(examples[key]) < per_reason:
                    examples[key].append(r)
    return examples


def _plots(out: Path, stats: dict, sample: list[dict]) -> list[str]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = []
    fig, ax = plt.subplots(figsize=(8, 3.5))
    steps = stats["steps"]
    total = max(stats["input_records"], 1)
    labels = ["input"] + [s["name"] for s in steps]
    kept = [100.0] + [100.0 * s["out"] / total for s in steps]
    ax.bar(labels, kept, color="#4878a8")
    for i, v in enumerate(kept):
        ax.text(i, v + 1, f"{v:.1f}%", ha="center", fontsize=8)
    ax.set_ylabel("% of input documents kept")
    ax.set_title("Retention funnel")
    plt.setp(ax.get_xticklabels(), rotation=20, ha="right")
    fig.tight_layout()
    fig.savefig(out / "report_funnel.png", dpi=100)
    plt.close(fig)
    names.append("report_funnel.png")

    ppl = defaultdict(list)
    for d in sample:
        if d.get("ppl", -1) >= 0:
            ppl[d["lang"]].append(d["ppl"])
    if ppl:
        fig, ax = plt.subplots(figsize=(6, 3))
        for lang, values in sorted(ppl.items()):
            ax.hist(values, bins=40, alpha=0.6, label=lang)
        ax.set_xlabel("perplexity (curated sample)")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / "report_perplexity.png", dpi=100)
        plt.close(fig)
        names.append("report_perplexity.png")
    if sample:
        import math
        fig, ax = plt.subplots(figsize=(6, 3))
        ax.hist([math.log10(max(1, len(d["text"]))) for d in sample], bins=40, color="#6a9f58")
        ax.set_xlabel("log10(document length in characters), curated sample")
        fig.tight_layout()
        fig.savefig(out / "report_length.png", dpi=100)
        plt.close(fig)
        names.append("report_length.png")
    return names


def write_report(out_dir: str) -> str:
    out = Path(out_dir)
    stats_path = out / "stats.json"
    if not stats_path.exists():
        raise FileNotFoundError(f"{stats_path} not found: `data report` needs the output of a finished "
                                "`python -m ziya_jax data run`")
    stats = json.loads(stats_path.read_text())
    metrics = json.loads((out / "eval" / "metrics.json").read_text()) if (out / "eval" / "metrics.json").exists() else {}
    gate = json.loads((out / "eval" / "gate.json").read_text()) if (out / "eval" / "gate.json").exists() else {}
    sample = []
    for path in sorted(glob.glob(str(out / "eval" / "*_sample*.jsonl"))):
        with open(path, encoding="utf-8") as fh:
            sample.extend(json.loads(line) for line in fh if line.strip())
    sample = list({d["id"]: d for d in sample}.values())
    plots = _plots(out, stats, sample)
    lines = [f"# Data factory report: {out}", "",
             f"Input: {stats['input_records']} records ({stats.get('input_bytes', 0) / 1e6:.1f} MB); "
             f"curated: {stats['output_records']} "
             f"({100.0 * stats['output_records'] / max(1, stats['input_records']):.2f}%); "
             f"{stats.get('seconds', 0)} s.", "",
             "## Retention funnel", "", "![funnel](report_funnel.png)", "",
             "| step | in | out | dropped | kept of input |", "|---|---:|---:|---:|---:|"]
    for s in stats["steps"]:
        lines.append(f"| {s['name']} | {s['in']} | {s['out']} | {s['in'] - s['out']} | "
                     f"{100.0 * s['out'] / max(1, stats['input_records']):.2f}% |")
    lines += ["", "## Drops per reason", "", "| step | reason | documents |", "|---|---|---:|"]
    for s in stats["steps"]:
        for reason, n in sorted(s["dropped"].items(), key=lambda kv: -kv[1]):
            lines.append(f"| {s['name']} | {reason} | {n} |")
    frag = [(s["name"], r, n) for s in stats["steps"] for r, n in s.get("removed_fragments", {}).items()]
    if frag:
        lines += ["", "Removed paragraphs and sentences (the document stays):", "",
                  "| step | rule | fragments |", "|---|---|---:|"]
        lines += [f"| {a} | {b} | {n} |" for a, b, n in sorted(frag, key=lambda t: -t[2])]
    if metrics:
        lines += ["", "## Automatic evaluation (" + metrics.get("sample", "") + f", {metrics['documents']} documents)", "",
                  "| level-1 metric | per 1,000 docs | passes |", "|---|---:|---|"]
        for k, v in metrics["level1_per_1000"].items():
            lines.append(f"| {k} | {v} | {'yes' if metrics['passes'][k] else 'NO'} |")
        lines += ["", f"- perplexity: {json.dumps(metrics['perplexity'])}",
                  f"- informativeness (bits per unit): {metrics['informativeness_bits_per_unit']}",
                  f"- readability (mean sentence length): {metrics['readability_mean_sentence_length']}",
                  f"- language: {json.dumps(metrics['language'])}", f"- source: {json.dumps(metrics['source'])}",
                  f"- quality: {json.dumps(metrics['quality'])}", f"- length: {json.dumps(metrics['doc_length_chars'])}",
                  f"- topic: {json.dumps(metrics['topic'])}"]
    for name in plots[1:]:
        lines += ["", f"![{name}]({name})"]
    if gate:
        lines += ["", "## Gate", "", f"**{'ACCEPTED' if gate['accepted'] else 'REJECTED'}** "
                  f"(threshold {gate['threshold_per_1000']} per 1,000; human sheet "
                  f"{'imported' if gate['human_annotated'] else 'not yet imported: fill eval/annotation_sheet.csv and run `data import-sheet`'})"]
        if gate["failures"]:
            lines.append("Failing: " + ", ".join(gate["failures"]) + ". " + gate.get("advice", ""))
    lines += ["", "## Examples per drop reason", ""]
    for (step, reason), recs in sorted(_load_rejected_examples(out).items()):
        lines.append(f"### {step} / {reason}")
        for r in recs:
            snippet = r["text"][:300].replace("\n", " ").replace("|", "\\|")
            extra = f" (survivor {r['survivor']})" if r.get("survivor") else ""
            lines.append(f"- `{r['id']}`{extra} {r.get('detail', '')}: {snippet}")
        lines.append("")
    path = out / "report.md"
    atomic_write_text(path, "\n".join(lines) + "\n")
    return str(path)
