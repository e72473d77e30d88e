"""Step 4, deduplication primitives: URL and text keys, Bloom filter, MinHash-LSH, SimHash, union-find.

The Beam graph in `pipeline.py` makes all three stages global (keys are grouped across every input
shard): URLs, then exact duplicates of normalised text, then fuzzy duplicates. Within a group or a
cluster the survivor is the smallest document id, so results do not depend on worker order.

Shingles: 5-character windows for Chinese (whitespace tokens would collapse a Chinese document to a
handful of "words"), 5-word windows for English and code. Shingles are hashed with a vectorised
polynomial hash over code points / CRC32 word hashes, mixed by splitmix64, so signatures are stable
across processes (Python's `hash` is salted per process).
"""
from __future__ import annotations

import hashlib
import math
import re
import unicodedata
import zlib
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import numpy as np

STEP = "dedup"
_U64 = np.uint64
_MASK32 = np.uint64(0xFFFFFFFF)
_WORD_RE = re.compile(r"\w+", re.UNICODE)
_NORM_DROP_RE = re.compile(r"[\W_]+", re.UNICODE)
_TRACKING_PARAMS = re.compile(r"^(utm_|fbclid$|gclid$|spm$|from$|ref$|share)")


@dataclass(frozen=True)
class DedupConfig:
    url: bool = True
    exact: bool = True
    fuzzy: str = "minhash"            # minhash | simhash | none
    key_method: str = "group"         # group (exact keys, survivor recorded) | bloom (bucketed Bloom filters)
    bloom_error_rate: float = 1e-6
    bloom_buckets: int = 64
    lsh_shuffle_buckets: int = 1024   # LSH band entries are shuffled packed per bucket (~14 x docs / buckets each)
    ngram_zh: int = 5
    ngram_words: int = 5
    num_bands: int = 14
    rows_per_band: int = 8
    jaccard_threshold: float = 0.7    # verification of LSH candidates on the signature estimate
    simhash_max_hamming: int = 3
    seed: int = 1


def normalize_url(url: str) -> str:
    """Lower-case scheme/host, drop `www.`, default ports, fragments, tracking parameters and a trailing '/'."""
    url = url.strip()
    if not url:
        return ""
    try:
        parts = urlsplit(url if "://" in url else "http://" + url)
    except ValueError:
        return url.lower()
    host = (parts.hostname or "").lower().removeprefix("www.")
    if parts.port and parts.port not in (80, 443):
        host = f"{host}:{parts.port}"
    query = urlencode(sorted((k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
                             if not _TRACKING_PARAMS.match(k.lower())))
    path = parts.path.rstrip("/") or ""
    return urlunsplit(("", host, path, query, ""))


def normalize_text(text: str) -> str:
    """Key for exact duplicates: NFKC, case-folded, without whitespace and punctuation."""
    return _NORM_DROP_RE.sub("", unicodedata.normalize("NFKC", text).casefold())


def text_key(text: str) -> str:
    return hashlib.blake2b(normalize_text(text).encode("utf-8"), digest_size=16).hexdigest()


def _splitmix64(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        x = x + _U64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> _U64(30))) * _U64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> _U64(27))) * _U64(0x94D049BB133111EB)
        return x ^ (x >> _U64(31))


def _window_hash(units: np.ndarray, n: int) -> np.ndarray:
    """Polynomial hash of every length-n window of a uint64 array (all windows if shorter: one hash)."""
    if len(units) == 0:
        return np.zeros(0, dtype=_U64)
    n = min(n, len(units))
    with np.errstate(over="ignore"):
        h = np.zeros(len(units) - n + 1, dtype=_U64)
        for k in range(n):
            h = h * _U64(1099511628211) + units[k:len(units) - n + 1 + k]
    return _splitmix64(h)


def shingle_hashes(text: str, lang: str, cfg: DedupConfig) -> np.ndarray:
    """Unique 64-bit hashes of the document's shingles (chars for zh, words otherwise)."""
    if lang == "zh":
        compact = normalize_text(text)
        units = np.frombuffer(compact.encode("utf-32-le"), dtype=np.uint32).astype(_U64)
        hashes = _window_hash(units, cfg.ngram_zh)
    else:
        words = _WORD_RE.findall(text.lower())
        units = np.fromiter(map(zlib.crc32, map(str.encode, words)), dtype=_U64, count=len(words))
        hashes = _window_hash(units, cfg.ngram_words)
    return np.unique(hashes)


class MinHasher:
    """`num_bands * rows_per_band` multiply-shift hash functions over 64-bit shingle hashes."""

    def __init__(self, cfg: DedupConfig):
        self.cfg = cfg
        rng = np.random.default_rng(cfg.seed)
        n = cfg.num_bands * cfg.rows_per_band
        self.a = rng.integers(1, 2**63, size=n, dtype=np.int64).astype(_U64) | _U64(1)
        self.b = rng.integers(0, 2**63, size=n, dtype=np.int64).astype(_U64)

    def signature(self, hashes: np.ndarray) -> np.ndarray:
        sig = np.full(len(self.a), 0xFFFFFFFF, dtype=np.uint32)
        if len(hashes) == 0:
            return sig
        with np.errstate(over="ignore"):
            for start in range(0, len(hashes), 2048):
                chunk = hashes[start:start + 2048, None]
                vals = ((chunk * self.a[None, :] + self.b[None, :]) >> _U64(32)).astype(np.uint32)
                np.minimum(sig, vals.min(axis=0), out=sig)
        return sig

    def bands(self, sig: np.ndarray | bytes) -> list[tuple[int, bytes]]:
        """(band index, the band's rows as bytes) for a signature (array or its uint32 bytes)."""
        buf = sig.tobytes() if isinstance(sig, np.ndarray) else sig
        w = self.cfg.rows_per_band * 4
        return [(i, buf[i * w:(i + 1) * w]) for i in range(self.cfg.num_bands)]


def estimated_jaccard(sig_a: np.ndarray, sig_b: np.ndarray) -> float:
    return float(np.mean(sig_a == sig_b))


def candidate_probability(jaccard: float, bands: int, rows: int) -> float:
    """Probability that MinHash-LSH proposes a pair with this Jaccard similarity."""
    return 1.0 - (1.0 - jaccard ** rows) ** bands


def simhash(hashes: np.ndarray) -> int:
    if len(hashes) == 0:
        return 0
    bits = np.unpackbits(hashes.astype(">u8").view(np.uint8).reshape(-1, 8), axis=1)   # [n, 64], MSB first
    votes = bits.sum(axis=0, dtype=np.int64) * 2 - len(hashes)
    return int(np.packbits((votes > 0).astype(np.uint8)).view(">u8")[0])


def simhash_bands(value: int, max_hamming: int) -> list[tuple[int, int]]:
    """Split 64 bits into max_hamming+1 bands: two hashes within the distance share at least one band."""
    n = max_hamming + 1
    edges = [round(i * 64 / n) for i in range(n + 1)]
    return [(i, (value >> (64 - edges[i + 1])) & ((1 << (edges[i + 1] - edges[i])) - 1)) for i in range(n)]


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


class BloomFilter:
    """A classic Bloom filter (Bloom 1970) with double hashing over a numpy bit array."""

    def __init__(self, capacity: int, error_rate: float = 1e-6):
        capacity = max(1, capacity)
        self.num_bits = max(64, int(math.ceil(-capacity * math.log(error_rate) / math.log(2) ** 2)))
        self.num_hashes = max(1, int(round(self.num_bits / capacity * math.log(2))))
        self.bits = np.zeros((self.num_bits + 7) // 8, dtype=np.uint8)

    def _positions(self, key: str) -> list[int]:
        d = hashlib.blake2b(key.encode("utf-8"), digest_size=16).digest()
        h1, h2 = int.from_bytes(d[:8], "little"), int.from_bytes(d[8:], "little") | 1
        return [(h1 + i * h2) % self.num_bits for i in range(self.num_hashes)]

    def add(self, key: str) -> bool:
        """Insert; returns True if the key was (probably) already present."""
        present = True
        for p in self._positions(key):
            byte, bit = divmod(p, 8)
            if not self.bits[byte] >> bit & 1:
                present = False
                self.bits[byte] |= 1 << bit
        return present


class UnionFind:
    def __init__(self):
        self.parent: dict[str, str] = {}

    def find(self, x: str) -> str:
        root = x
        while self.parent.get(root, root) != root:
            root = self.parent[root]
        while self.parent.get(x, x) != root:
            self.parent[x], x = root, self.parent[x]
        return root

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            lo, hi = (ra, rb) if ra < rb else (rb, ra)   # the smallest id becomes the survivor
            self.parent[hi] = lo


def clusters_to_survivors(edges) -> list[tuple[str, str]]:
    """(duplicate id, survivor id) for every non-survivor member of the connected components."""
    uf = UnionFind()
    for a, b in edges:
        uf.union(a, b)
    return sorted((x, uf.find(x)) for x in list(uf.parent) if uf.find(x) != x)


def verify_bucket(members: list[tuple[str, object]], method: str, cfg: DedupConfig) -> list[tuple[str, str]]:
    """Edges (first, other) for bucket members that really are near-duplicates of the bucket's first id."""
    if len(members) < 2:
        return []
    members = sorted(members, key=lambda m: m[0])
    first_id, first_sig = members[0]
    others = [m for m in members[1:] if m[0] != first_id]
    if not others:
        return []
    if method == "minhash":     # every member against the first in one array op (= estimated_jaccard each)
        similar = (np.stack([sig for _, sig in others]) == first_sig).mean(axis=1) >= cfg.jaccard_threshold
    else:
        similar = [hamming(first_sig, sig) <= cfg.simhash_max_hamming for _, sig in others]
    return [(first_id, doc_id) for (doc_id, _), ok in zip(others, similar) if ok]
