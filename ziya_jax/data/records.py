"""The record that flows through the data factory, and the record of a drop.

A document is a plain dict (cheap to pickle between Beam workers):
  id      stable id, `<relative input path>:<line>` (JSON Lines) or `<relative path>` (text files)
  text    the document text
  url, source, lang, meta   from the input (meta is kept as a JSON string)
  ppl, quality              added by automatic scoring
A drop is a dict with the document's fields plus `step`, `reason` and optionally `detail`,
`survivor` (dedup) and `level` ("document", or "paragraph"/"sentence" for removed fragments).
"""
from __future__ import annotations

from typing import Any

Doc = dict[str, Any]

DOC_FIELDS = ("id", "text", "url", "source", "lang", "meta")


def make_doc(doc_id: str, text: str, url: str = "", source: str = "", lang: str = "", meta: str = "") -> Doc:
    return {"id": doc_id, "text": text, "url": url or "", "source": source or "", "lang": lang or "",
            "meta": meta or ""}


def drop(doc: Doc, step: str, reason: str, detail: str = "", survivor: str | None = None,
         level: str = "document", text: str | None = None) -> Doc:
    """The record kept in `rejected/` for a dropped document (or a removed fragment of one)."""
    out = {"id": doc.get("id", ""), "step": step, "reason": reason, "level": level,
           "text": doc.get("text", "") if text is None else text,
           "url": doc.get("url", ""), "source": doc.get("source", ""), "lang": doc.get("lang", "")}
    if detail:
        out["detail"] = detail
    if survivor is not None:
        out["survivor"] = survivor
    return out
