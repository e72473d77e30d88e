"""Reading raw inputs and writing curated shards.

Inputs: JSON Lines (`.jsonl`, `.json`, optionally `.gz` / `.zst`) with `text` and optional `url`,
`source`, `lang`, `meta`; any other file is one document (code files get their language from the
extension). Bad input never stops a run: every bad record becomes a drop with a reason.
Output shards are TFRecord files of `tf.train.Example`, encoded here without TensorFlow.
"""
from __future__ import annotations

import glob
import gzip
import io
import json
import os
import struct
from pathlib import Path
from typing import Iterable, Iterator

from ziya_jax.data.records import Doc, drop, make_doc

READ_STEP = "read"

CODE_EXTENSIONS = {
    ".py": "python", ".c": "c", ".h": "c", ".cc": "cpp", ".cpp": "cpp", ".hpp": "cpp", ".java": "java",
    ".js": "javascript", ".ts": "typescript", ".go": "go", ".rs": "rust", ".sql": "sql", ".sh": "bash",
    ".rb": "ruby", ".php": "php", ".scala": "scala", ".kt": "kotlin", ".cs": "csharp", ".swift": "swift",
    ".lua": "lua", ".r": "r", ".pl": "perl", ".m": "objectivec",
}
JSONL_SUFFIXES = (".jsonl", ".json", ".ndjson")


class InputError(ValueError):
    pass


def expand_inputs(pattern: str) -> list[str]:
    """Files matching a glob (comma-separated globs allowed), sorted; an empty match is an error."""
    files: list[str] = []
    for part in [p for p in pattern.split(",") if p.strip()]:
        matched = sorted(p for p in glob.glob(os.path.expanduser(part.strip()), recursive=True) if os.path.isfile(p))
        if not matched:
            raise InputError(f"--input {part!r} matches no files; check the path or quote the glob")
        files.extend(matched)
    return sorted(set(files))


def common_root(files: list[str]) -> str:
    if not files:
        return ""
    return os.path.commonpath([os.path.dirname(os.path.abspath(f)) for f in files])


def is_jsonl(path: str) -> bool:
    name = path.lower()
    for comp in (".gz", ".zst"):
        if name.endswith(comp):
            name = name[: -len(comp)]
    return name.endswith(JSONL_SUFFIXES)


def _open_binary(path: str) -> io.BufferedIOBase:
    if path.endswith(".gz"):
        return gzip.open(path, "rb")
    if path.endswith(".zst"):
        import zstandard
        return io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(open(path, "rb"), closefd=True))
    return open(path, "rb")


def looks_binary(data: bytes) -> bool:
    """NUL bytes or many non-text control bytes in the first 8 KiB."""
    head = data[:8192]
    if not head:
        return False
    if b"\x00" in head:
        return True
    controls = sum(1 for b in head if b < 32 and b not in (9, 10, 12, 13, 27))
    return controls / len(head) > 0.1


def decode_text(data: bytes) -> tuple[str | None, str]:
    """Standardise the encoding to UTF-8: UTF-8 (with or without BOM), UTF-16 with BOM, GB18030."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16"), "utf-16"
        except UnicodeDecodeError:
            return None, ""
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("gb18030"), "gb18030"
    except UnicodeDecodeError:
        return None, ""


def _jsonl_records(path: str, rel: str) -> Iterator[tuple[bool, Doc]]:
    default_source = Path(rel).parts[0] if len(Path(rel).parts) > 1 else ""
    try:
        with _open_binary(path) as fh:
            for lineno, raw in enumerate(fh, 1):
                doc_id = f"{rel}:{lineno}"
                raw = raw.rstrip(b"\r\n")
                if not raw.strip():
                    continue
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    yield False, drop(make_doc(doc_id, raw.decode("utf-8", "backslashreplace")), READ_STEP,
                                      "invalid_utf8", detail=f"byte {e.start}")
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    yield False, drop(make_doc(doc_id, line), READ_STEP, "malformed_json", detail=e.msg)
                    continue
                if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
                    yield False, drop(make_doc(doc_id, line), READ_STEP, "missing_text",
                                      detail="record has no string field 'text'")
                    continue
                meta = obj.get("meta")
                meta_s = meta if isinstance(meta, str) else (json.dumps(meta, ensure_ascii=False) if meta else "")
                yield True, make_doc(doc_id, obj["text"], url=str(obj.get("url") or ""),
                                     source=str(obj.get("source") or default_source),
                                     lang=str(obj.get("lang") or ""), meta=meta_s)
    except (OSError, EOFError, ValueError) as e:  # truncated .gz / corrupt .zst: keep what was read, count the rest
        yield False, drop(make_doc(f"{rel}:*", ""), READ_STEP, "unreadable_file", detail=f"{type(e).__name__}: {e}")


def _text_file_record(path: str, rel: str) -> Iterator[tuple[bool, Doc]]:
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as e:
        yield False, drop(make_doc(rel, ""), READ_STEP, "unreadable_file", detail=str(e))
        return
    ext = os.path.splitext(path)[1].lower()
    source = Path(rel).parts[0] if len(Path(rel).parts) > 1 else ""
    if looks_binary(data):
        yield False, drop(make_doc(rel, data[:256].decode("latin-1"), source=source), READ_STEP, "binary_file",
                          detail=f"{len(data)} bytes")
        return
    text, encoding = decode_text(data)
    if text is None:
        yield False, drop(make_doc(rel, data.decode("utf-8", "backslashreplace"), source=source), READ_STEP,
                          "invalid_encoding", detail="not UTF-8, UTF-16 or GB18030")
        return
    meta = json.dumps({"encoding": encoding}) if encoding != "utf-8" else ""
    yield True, make_doc(rel, text, source=source, lang=CODE_EXTENSIONS.get(ext, ""), meta=meta)


def read_file(path: str, root: str = "") -> Iterator[tuple[bool, Doc]]:
    """Yield (ok, record): documents, or drop records for bad lines/files."""
    rel = os.path.relpath(os.path.abspath(path), root) if root else os.path.basename(path)
    if is_jsonl(path):
        yield from _jsonl_records(path, rel)
    else:
        yield from _text_file_record(path, rel)


# --- TFRecord / tf.train.Example without TensorFlow -------------------------------------------

def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _field(num: int, payload: bytes) -> bytes:
    return _varint((num << 3) | 2) + _varint(len(payload)) + payload


def _feature(value) -> bytes:
    if isinstance(value, float):
        return _field(2, _field(1, struct.pack("<f", value)))          # FloatList{value: packed}
    if isinstance(value, int):
        return _field(3, _field(1, _varint(value & 0xFFFFFFFFFFFFFFFF)))  # Int64List{value: packed}
    if isinstance(value, str):
        value = value.encode("utf-8")
    return _field(1, _field(1, value))                                  # BytesList{value}


def encode_example(features: dict) -> bytes:
    """Serialize a `tf.train.Example` whose features are str/bytes, int or float scalars."""
    entries = b"".join(_field(1, _field(1, k.encode()) + _field(2, _feature(v))) for k, v in sorted(features.items()))
    return _field(1, entries)


EXAMPLE_FIELDS = {"id": str, "text": str, "url": str, "source": str, "lang": str, "meta": str,
                  "ppl": float, "quality": str}


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write UTF-8 text through a temporary sibling renamed into place (never half-written)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def doc_to_example(doc: Doc) -> bytes:
    return encode_example({k: t(doc.get(k, t())) for k, t in EXAMPLE_FIELDS.items()})


# --- reading TFRecord shards back (the factory's curated output) -------------------------------

def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def _fields(buf: bytes) -> Iterator[tuple[int, int, object]]:
    """(field number, wire type, value) of a protobuf message; length-delimited values are bytes."""
    pos = 0
    while pos < len(buf):
        key, pos = _read_varint(buf, pos)
        num, wire = key >> 3, key & 7
        if wire == 2:
            n, pos = _read_varint(buf, pos)
            yield num, wire, buf[pos:pos + n]
            pos += n
        elif wire == 0:
            v, pos = _read_varint(buf, pos)
            yield num, wire, v
        elif wire == 5:
            yield num, wire, buf[pos:pos + 4]
            pos += 4
        elif wire == 1:
            yield num, wire, buf[pos:pos + 8]
            pos += 8
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")


def _decode_feature(buf: bytes):
    values = []
    for kind, _, payload in _fields(buf):
        for _, wire, v in _fields(payload):
            if kind == 1:
                values.append(bytes(v))
            elif kind == 2:
                values.extend(struct.unpack(f"<{len(v) // 4}f", v) if wire == 2 else struct.unpack("<f", v))
            elif kind == 3:
                if wire == 2:
                    p = 0
                    while p < len(v):
                        x, p = _read_varint(v, p)
                        values.append(x - (1 << 64) if x >= 1 << 63 else x)
                else:
                    values.append(v - (1 << 64) if v >= 1 << 63 else v)
    return values


def decode_example(record: bytes) -> dict:
    """A `tf.train.Example` as {name: list of values} (bytes, float or int), without TensorFlow."""
    out = {}
    for _, _, features in _fields(record):
        for _, _, entry in _fields(features):
            name, value = "", b""
            for num, _, v in _fields(entry):
                if num == 1:
                    name = bytes(v).decode("utf-8")
                elif num == 2:
                    value = v
            out[name] = _decode_feature(value)
    return out


def read_tfrecord(path: str) -> Iterator[bytes]:
    """Records of an uncompressed TFRecord file; a truncated file raises a one-line error."""
    with open(path, "rb") as fh:
        index = 0
        while True:
            head = fh.read(12)
            if not head:
                return
            if len(head) < 12:
                raise InputError(f"{path}: truncated TFRecord header at record {index}; re-run the step that wrote it")
            (length,) = struct.unpack("<Q", head[:8])
            data = fh.read(length + 4)
            if len(data) < length + 4:
                raise InputError(f"{path}: truncated TFRecord record {index}; re-run the step that wrote it")
            yield data[:length]
            index += 1


def read_curated(path: str) -> Iterator[Doc]:
    """Documents of one curated shard (TFRecord of tf.train.Example) with the factory's fields."""
    for record in read_tfrecord(path):
        ex = decode_example(record)
        doc = {}
        for k, t in EXAMPLE_FIELDS.items():
            v = ex.get(k, [])
            doc[k] = (v[0].decode("utf-8") if t is str else float(v[0])) if v else t()
        yield doc


def iter_corpus_texts(pattern: str) -> Iterator[str]:
    """Texts of curated TFRecord shards, JSON Lines or plain files (comma-separated globs), in file order."""
    files = expand_inputs(pattern)
    root = common_root(files)
    for f in files:
        if ".tfrecord" in os.path.basename(f):
            for doc in read_curated(f):
                yield doc["text"]
        else:
            for ok, doc in read_file(f, root):
                if ok:
                    yield doc["text"]


def _masked_crc(data: bytes) -> bytes:
    import google_crc32c
    crc = google_crc32c.value(data)
    return struct.pack("<I", (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF)


def write_tfrecord(path: str | Path, records: Iterable[bytes]) -> None:
    """Write records as a TFRecord file (with TensorFlow's masked CRC-32C), atomically."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        for rec in records:
            head = struct.pack("<Q", len(rec))
            fh.write(head + _masked_crc(head) + rec + _masked_crc(rec))
    os.replace(tmp, path)
