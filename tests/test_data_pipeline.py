"""The whole data factory on the demo corpus (real packaged text with planted junk), on Beam."""
import glob
import json
from pathlib import Path

import pytest

from ziya_jax.config import load_config
from ziya_jax.data.demo_corpus import build_demo_corpus, jaccard, train_demo_models
from ziya_jax.data.offline import ensure_offline_data
from ziya_jax.data.pipeline import PipelineError, run
from ziya_jax.data.preprocess import clean_characters

BEAM_ARGS = ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]


@pytest.fixture(scope="module")
def factory_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("factory")
    manifest = build_demo_corpus(str(root / "corpus"), seed=0)
    lm_dir = root / "lm"
    train_demo_models(str(lm_dir))
    cfg = load_config("configs/data/ziya2.py", [f"--config.score.model_dir={lm_dir}"])
    out = root / "out"
    stats = run(str(root / "corpus" / "raw" / "**" / "*"), str(out), cfg, BEAM_ARGS)
    rejected = {}
    fragments = []
    for path in glob.glob(str(out / "rejected" / "*.jsonl")):
        for line in open(path, encoding="utf-8"):
            r = json.loads(line)
            (rejected.__setitem__(r["id"], r) if r["level"] == "document" else fragments.append(r))
    import tensorflow as tf
    curated = {}
    for rec in tf.data.TFRecordDataset(sorted(glob.glob(str(out / "data" / "*.tfrecord")))):
        ex = tf.train.Example.FromString(rec.numpy())
        f = ex.features.feature
        curated[f["id"].bytes_list.value[0].decode()] = {
            "text": f["text"].bytes_list.value[0].decode(), "lang": f["lang"].bytes_list.value[0].decode(),
            "quality": f["quality"].bytes_list.value[0].decode(), "ppl": f["ppl"].float_list.value[0]}
    return dict(root=root, out=out, cfg=cfg, manifest=manifest, stats=stats, rejected=rejected,
                fragments=fragments, curated=curated)


def _check_accounting(out: Path, manifest: dict, curated: dict, rejected: dict) -> dict:
    stats = json.loads((out / "stats.json").read_text())
    assert stats["input_records"] == sum(manifest["files"].values())
    prev_out = stats["input_records"]
    for step in stats["steps"]:
        assert step["in"] == prev_out, step["name"]
        assert step["in"] == step["out"] + sum(step["dropped"].values()), step["name"]
        prev_out = step["out"]
    assert stats["output_records"] == len(curated)
    assert stats["input_records"] == len(curated) + len(rejected)
    names = [s["name"] for s in stats["steps"]]
    assert names == ["read", "preprocess", "score", "filter", "dedup_url", "dedup_exact", "dedup_fuzzy"]
    assert all(s["in"] > s["out"] for s in stats["steps"]), "every step does work on the demo corpus"
    assert not (out / "spill").exists(), "the stages' spill files are removed after the run"
    return stats


def test_nothing_vanishes(factory_run):
    _check_accounting(factory_run["out"], factory_run["manifest"], factory_run["curated"], factory_run["rejected"])


def test_simhash_and_bloom_variants(factory_run, tmp_path):
    """The other dedup methods (SimHash bands, bucketed Bloom filters) on the same corpus: same accounting,
    planted duplicates removed, every near-duplicate drop really similar to its survivor."""
    cfg = load_config("configs/data/ziya2.py", [f"--config.score.model_dir={factory_run['root'] / 'lm'}",
                                                "--config.dedup.fuzzy=simhash", "--config.dedup.key_method=bloom"])
    out = tmp_path / "out"
    run(str(factory_run["root"] / "corpus" / "raw" / "**" / "*"), str(out), cfg, BEAM_ARGS)
    rejected = {r["id"]: r for path in glob.glob(str(out / "rejected" / "*.jsonl"))
                for r in map(json.loads, open(path, encoding="utf-8")) if r["level"] == "document"}
    from ziya_jax.data.io import read_curated
    curated = {d["id"]: d for f in glob.glob(str(out / "data" / "*.tfrecord")) for d in read_curated(f)}
    stats = _check_accounting(out, factory_run["manifest"], curated, rejected)
    man = factory_run["manifest"]
    for pair in man["exact_duplicates"] + man["url_duplicates"]:
        assert not (pair["original"] in curated and pair["copy"] in curated), pair
    assert any(r["reason"] == "duplicate_url" and r.get("detail") == "bloom filter" for r in rejected.values())
    fuzzy = [r for r in rejected.values() if r["reason"] == "near_duplicate"]
    assert fuzzy and stats["steps"][-1]["dropped"]["near_duplicate"] == len(fuzzy)
    texts = {i: d["text"] for i, d in curated.items()}
    for r in fuzzy:
        survivor = texts.get(r["survivor"]) or rejected[r["survivor"]]["text"]
        assert jaccard(r["text"], survivor, r["lang"] if r["lang"] == "zh" else "en") >= 0.5, r["id"]
        assert r["survivor"] < r["id"]


def test_bad_input_counted_with_reasons(factory_run):
    for doc_id, reason in factory_run["manifest"]["bad_records"].items():
        assert factory_run["rejected"][doc_id]["reason"] == reason
    too_long = [r for r in factory_run["rejected"].values() if r["reason"] == "too_long"]
    assert len(too_long) == 1 and len(too_long[0]["text"]) > 1_000_000   # kept whole


def test_quality_buckets_from_corpus_percentiles(factory_run):
    cut = json.loads((factory_run["out"] / "ppl_cutoffs.json").read_text())
    assert set(cut) == {"zh", "en"}
    for doc in factory_run["curated"].values():
        if doc["lang"] == "code":
            assert doc["quality"] == "unscored"
        else:
            limit = cut[doc["lang"]]["high_max_ppl" if doc["quality"] == "high" else "medium_max_ppl"]
            assert doc["ppl"] <= limit * 1.0001
    score = next(s for s in factory_run["stats"]["steps"] if s["name"] == "score")
    scored_in = score["in"] - sum(1 for d in factory_run["curated"].values() if d["lang"] == "code") - \
        sum(1 for r in factory_run["rejected"].values() if r["lang"] == "code" and r["step"] != "score")
    assert 0.35 < score["dropped"]["perplexity_low_quality"] / scored_in < 0.45   # the bottom 40% per language


def test_planted_duplicates_removed(factory_run):
    rej, cur, man = factory_run["rejected"], factory_run["curated"], factory_run["manifest"]
    for pair in man["exact_duplicates"] + man["url_duplicates"]:
        assert not (pair["original"] in cur and pair["copy"] in cur), pair
    # near duplicates at Jaccard >= 0.8 that both reached the dedup stage
    reached = [p for p in man["near_duplicates"]
               if all(rej.get(i, {}).get("step", "dedup").startswith("dedup") for i in (p["original"], p["copy"]))]
    assert len(reached) >= 20
    caught = [p for p in reached if not (p["original"] in cur and p["copy"] in cur)]
    assert len(caught) / len(reached) >= 0.95
    # no distinct document removed: every fuzzy drop is really similar to its survivor
    texts = {i: d["text"] for i, d in cur.items()}
    for r in rej.values():
        if r["reason"] == "near_duplicate":
            survivor = texts.get(r["survivor"]) or rej[r["survivor"]]["text"]
            assert jaccard(r["text"], survivor, r["lang"] if r["lang"] == "zh" else "en") >= 0.5, r["id"]
            assert r["survivor"] < r["id"]


def test_traditional_converted_and_privacy_removed(factory_run):
    cur, man = factory_run["curated"], factory_run["manifest"]
    converted = [t for t in man["traditional"] if t["id"] in cur]
    assert converted
    for t in converted:
        expected = clean_characters(t["simplified"])
        for para in cur[t["id"]]["text"].split("\n\n"):   # paragraphs may be removed by rules, never altered
            assert para in expected
    all_text = "\n".join(d["text"] for d in cur.values())
    for p in man["privacy_strings"]:
        assert p["secret"] not in all_text, p
    assert any(f["reason"].startswith("sent_") for f in factory_run["fragments"])
    for doc_id in man["ads"]:
        if doc_id in cur:
            assert "点击购买" not in cur[doc_id]["text"] and "buy now" not in cur[doc_id]["text"].lower()


def test_evaluation_outputs_and_report(factory_run):
    out = factory_run["out"]
    metrics = json.loads((out / "eval" / "metrics.json").read_text())
    assert set(metrics["level1_per_1000"]) == {"privacy_word_rate", "toxic_word_rate", "adv_word_rate",
                                               "webpage_funcword_rate"}
    assert metrics["level1_per_1000"]["privacy_word_rate"] == 0.0
    sheet_rows = (out / "eval" / "annotation_sheet.csv").read_text(encoding="utf-8")
    assert sheet_rows.startswith("id,source,lang,quality,text,coherence,readability,toxic,notes")
    from ziya_jax.data.report import write_report
    report = Path(write_report(str(out))).read_text()
    assert "Retention funnel" in report and "near_duplicate" in report
    assert (out / "report_funnel.png").stat().st_size > 1000


def test_rerun_refused_and_stale_partial_discarded(factory_run, tmp_path):
    with pytest.raises(PipelineError, match="already holds a run"):
        run(str(factory_run["root"] / "corpus" / "raw" / "bad" / "*"), str(factory_run["out"]), factory_run["cfg"])
    out = tmp_path / "o"
    (tmp_path / "o.partial" / "data").mkdir(parents=True)
    (tmp_path / "o.partial" / "data" / "stale.tfrecord").write_text("x")
    cfg = load_config("configs/data/ziya2.py", [])
    big = tmp_path / "in" / "big.jsonl"
    big.parent.mkdir()
    with open(big, "w") as fh:
        fh.write(json.dumps({"text": "x" * 50_000_000}) + "\n")
        fh.write(json.dumps({"text": ensure_offline_data()["botchan"].read_text()[5000:8000]}) + "\n")
    stats = run(str(big), str(out), cfg, ["--direct_running_mode=in_memory", "--direct_num_workers=1"])
    assert not (out / "data" / "stale.tfrecord").exists() and not (tmp_path / "o.partial").exists()
    assert stats["steps"][1]["dropped"] == {"too_long": 1} and stats["output_records"] == 1
    with pytest.raises(Exception, match="matches no files"):
        run(str(tmp_path / "nothing" / "*.jsonl"), str(tmp_path / "o2"), cfg)


def test_tf_free_reader_matches_tensorflow(factory_run):
    """`read_curated` (used by `laws similarity` and SeqIO-free tools) decodes exactly what TF parses."""
    from ziya_jax.data.io import read_curated
    ours = {d["id"]: d for f in sorted(glob.glob(str(factory_run["out"] / "data" / "*.tfrecord")))
            for d in read_curated(f)}
    assert set(ours) == set(factory_run["curated"])
    for doc_id, tf_doc in factory_run["curated"].items():
        for k in ("text", "lang", "quality", "ppl"):
            assert ours[doc_id][k] == tf_doc[k], (doc_id, k)
