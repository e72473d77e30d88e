"""TFDS builders that prepare Ziya2's training sources offline from local files (`manual_dir`).

- `ziya2_curated/{zh,en,code}`: the data factory's output directory (`data/curated-*.tfrecord`),
  split by language (code = every language other than zh and en).
- `ziya2_supervised`: stage-2 JSON Lines (`task`, `lang`, `question`, `answer`, optional `choices`)
  rendered with the paper's prompt templates.
- `ziya2_metamath`: MetaMathQA JSON or JSON Lines (`query`, `response`) rendered as Question/Answer.
Prepare with `python -m ziya_jax tasks prepare`; SeqIO reads them through `seqio.TfdsDataSource`.
Bad records stop the preparation with the file and line named.
"""
from __future__ import annotations

import glob
import gzip
import json
import os
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds

from ziya_jax.data.io import read_curated
from ziya_jax.stages.templates import TemplateError, render_metamath, render_supervised

VERSION = "1.0.0"


class SourceError(ValueError):
    pass


def _files(directory: str, patterns: tuple[str, ...], what: str) -> list[str]:
    files = sorted(f for p in patterns for f in glob.glob(os.path.join(directory, p), recursive=True))
    if not files:
        raise SourceError(f"{directory}: no {what} files ({', '.join(patterns)}); point the source at the right directory")
    return files


def json_records(path: str):
    """(where, record) of a .json file (one record or a list) or JSON Lines (.jsonl[.gz]); malformed
    JSON raises a SourceError naming the file and line."""
    if path.endswith(".json"):
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise SourceError(f"{path}: malformed JSON ({e.msg} at line {e.lineno})") from None
        for i, rec in enumerate(data if isinstance(data, list) else [data]):
            yield f"{path}[{i}]", rec
        return
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                yield f"{path}:{line_no}", json.loads(line)
            except json.JSONDecodeError as e:
                raise SourceError(f"{path}:{line_no}: malformed JSON ({e.msg}); fix or remove the line") from None


class Ziya2Curated(tfds.core.GeneratorBasedBuilder):
    """The data factory's curated corpus, one config per language group."""
    VERSION = tfds.core.Version(VERSION)
    BUILDER_CONFIGS = [tfds.core.BuilderConfig(name=n, description=f"{n} documents") for n in ("zh", "en", "code")]
    MANUAL_DOWNLOAD_INSTRUCTIONS = "manual_dir = a `python -m ziya_jax data run` output directory."

    def _info(self):
        return tfds.core.DatasetInfo(builder=self, description=__doc__, features=tfds.features.FeaturesDict({
            "id": tfds.features.Text(), "text": tfds.features.Text(), "source": tfds.features.Text(),
            "lang": tfds.features.Text(), "quality": tfds.features.Text(), "ppl": tfds.features.Scalar(np.float32)}))

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(str(dl_manager.manual_dir))}

    def _generate_examples(self, directory):
        group = self.builder_config.name
        for path in _files(directory, *SOURCE_FILES["curated"]):
            for doc in read_curated(path):
                if not doc.get("text"):
                    raise SourceError(f"{path}: record {doc.get('id')!r} has no text; re-run the data factory")
                lang = doc["lang"]
                if (lang if lang in ("zh", "en") else "code") != group:
                    continue
                yield doc["id"], {k: doc[k] for k in ("id", "text", "source", "lang", "quality")} | {"ppl": doc["ppl"]}


class Ziya2Supervised(tfds.core.GeneratorBasedBuilder):
    """Stage-2 supervised data in the paper's zh/en prompt templates."""
    VERSION = tfds.core.Version(VERSION)
    MANUAL_DOWNLOAD_INSTRUCTIONS = "manual_dir = a directory of *.jsonl[.gz] with task, lang, question, answer[, choices]."

    def _info(self):
        return tfds.core.DatasetInfo(builder=self, description=__doc__, features=tfds.features.FeaturesDict({
            "text": tfds.features.Text(), "task": tfds.features.Text(), "lang": tfds.features.Text()}))

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(str(dl_manager.manual_dir))}

    def _generate_examples(self, directory):
        for path in _files(directory, *SOURCE_FILES["supervised"]):
            for where, rec in json_records(path):
                try:
                    text = render_supervised(rec, where)
                except TemplateError as e:
                    raise SourceError(str(e)) from None
                yield where, {"text": text, "task": str(rec.get("task") or "default"), "lang": rec.get("lang") or "zh"}


class Ziya2Metamath(tfds.core.GeneratorBasedBuilder):
    """Stage-3 MetaMath-style math data as Question/Answer."""
    VERSION = tfds.core.Version(VERSION)
    MANUAL_DOWNLOAD_INSTRUCTIONS = "manual_dir = a directory with MetaMathQA *.json or *.jsonl (query, response)."

    def _info(self):
        return tfds.core.DatasetInfo(builder=self, description=__doc__, features=tfds.features.FeaturesDict({
            "text": tfds.features.Text(), "task": tfds.features.Text()}))

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(str(dl_manager.manual_dir))}

    def _generate_examples(self, directory):
        for path in _files(directory, *SOURCE_FILES["metamath"]):
            for where, rec in json_records(path):
                try:
                    text = render_metamath(rec, where)
                except TemplateError as e:
                    raise SourceError(str(e)) from None
                yield where, {"text": text, "task": str(rec.get("type") or "metamath")}


BUILDERS = {"curated": Ziya2Curated, "supervised": Ziya2Supervised, "metamath": Ziya2Metamath}
SOURCE_FILES = {"curated": (("data/*.tfrecord*",), "curated TFRecord"),
                "supervised": (("**/*.jsonl", "**/*.jsonl.gz"), "supervised JSON Lines"),
                "metamath": (("**/*.json", "**/*.jsonl", "**/*.jsonl.gz"), "MetaMath JSON")}


def prepare(kind: str, manual_dir: str, data_dir: str, config: str | None = None, overwrite: bool = False) -> str:
    """Prepare one builder (offline) into `data_dir`; returns its TFDS name with version."""
    if not Path(manual_dir).is_dir():
        raise SourceError(f"{manual_dir}: no such directory for the {kind} source")
    _files(manual_dir, *SOURCE_FILES[kind])          # a clear error before TFDS starts
    cls = BUILDERS[kind]
    builder = cls(config=config, data_dir=data_dir) if config else cls(data_dir=data_dir)
    if overwrite and Path(builder.data_dir).exists():
        import shutil
        shutil.rmtree(builder.data_dir)
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
    return f"{builder.name}/{config}:{VERSION}" if config else f"{builder.name}:{VERSION}"
