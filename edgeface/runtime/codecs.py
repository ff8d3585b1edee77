"""Template codecs: how an L2-normalised embedding is stored in a gallery.

Six codecs, numpy only, each with encode → (N, bytes_per_template) uint8 codes,
decode → (N, D) float32, and similarity(query, codes) → cosine-like scores:

- float32: exact, 4·D bytes.
- fp16: 2·D bytes; error ~1e-3 relative, negligible for matching.
- int8: symmetric per-vector scale (scale = max|x| / 127, stored as a float32 in the first
  4 bytes), D + 4 bytes. Per-vector rather than global scale because unit vectors differ in
  their largest coordinate; the scale costs 4 bytes and keeps the full int8 range used.
- binary: sign bits packed with np.packbits, D / 8 bytes. Two codes are compared by
  Hamming distance h mapped to 1 - 2h/D, which is exactly mean(sign(a) * sign(b)): the
  cosine of the two sign vectors. It is a coarse proxy for the float cosine, so its
  thresholds must be re-calibrated (the compression benchmark measures how much it loses).
- binary256 / binary512: SimHash (Charikar 2002) — sign bits of the embedding after a fixed
  structured random rotation, 32 / 64 bytes, Hamming similarity 1 - 2h/bits. The rotation is
  stacked randomized Hadamard blocks H·diag(s_k)/sqrt(n) (each block orthogonal, so the bits of
  one block are not redundant, which plain Gaussian projections are): on the reference
  MobileFaceNet, LFW-dev 5 folds (benchmarks/compress_quantize.py), plain sign bits lose
  1.63 pt, Gaussian SimHash 0.93 pt at 512 bits, these 0.97 pt at 256 bits and 0.60 pt at 512
  (other sign patterns of the same construction gave 0.27-0.53 pt at 512: the pattern is fixed,
  not tuned).
  The signs s_k come from SHA-256 of fixed strings, so every process and device derives the
  same rotation from the codec name and dimension alone: nothing to store or ship.

Codes are plain bytes (no pickle): a gallery stores one row of `encode` per template.
"""
from __future__ import annotations

import hashlib

import numpy as np

# popcount of every byte value, for Hamming distances on packed bits where numpy < 2.0 has no
# bitwise_count.
_POPCOUNT = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1).sum(1).astype(np.uint16)


def _xor_popcount(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Set bits of a ^ b per row ((N, B) uint8 codes, b one row or N rows). numpy's
    bitwise_count over 64-bit words when it exists: 3.5x faster than the byte table over 100k
    codes (benchmarks/compress_quantize.py)."""
    if not hasattr(np, "bitwise_count"):
        return _POPCOUNT[np.bitwise_xor(a, b)].sum(1, dtype=np.int64)
    a, b = np.ascontiguousarray(a), np.ascontiguousarray(b)
    if a.shape[-1] % 8 == 0:
        a, b = a.view(np.uint64), b.view(np.uint64)
    return np.bitwise_count(np.bitwise_xor(a, b)).sum(-1, dtype=np.int32)


def _as_matrix(x: np.ndarray, dim: int | None = None, what: str = "embeddings") -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 1:
        x = x[None]
    if x.ndim != 2:
        raise ValueError(f"{what}: expected (N, D) or (D,), got shape {x.shape}")
    if dim is not None and x.shape[1] != dim:
        raise ValueError(f"{what}: expected dimension {dim}, got {x.shape[1]}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{what}: contains NaN or infinite values")
    return x


def _as_codes(codes: np.ndarray, nbytes: int, what: str = "codes") -> np.ndarray:
    codes = np.asarray(codes)
    if codes.dtype != np.uint8:
        raise ValueError(f"{what}: expected uint8 codes, got {codes.dtype}")
    if codes.ndim == 1:
        codes = codes[None]
    if codes.ndim != 2 or codes.shape[1] != nbytes:
        raise ValueError(f"{what}: expected (N, {nbytes}) uint8 codes, got shape {codes.shape}")
    return codes


class Codec:
    """Base: subclasses implement encode/decode; similarity defaults to decode + dot."""

    name = ""
    hamming_scores = False  # True: scores are Hamming similarities, not cosines (own thresholds)

    def __init__(self, dim: int):
        if int(dim) <= 0:
            raise ValueError(f"codec {self.name}: dimension must be > 0, got {dim}")
        self.dim = int(dim)

    @property
    def bytes_per_template(self) -> int:
        raise NotImplementedError

    def encode(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def decode(self, codes: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def similarity(self, query: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """(M, N) scores of float queries (M, D) against stored codes (N, bytes)."""
        q = _as_matrix(query, self.dim, "query")
        return q @ self.decode(codes).T

    def score_vectors(self, x: np.ndarray) -> np.ndarray:
        """Vectors whose dot products are this codec's similarities between stored embeddings
        (for calibrating a codec's thresholds with matrix products over many pairs)."""
        return self.decode(self.encode(x))

    def code_similarity(self, a_codes: np.ndarray, b_codes: np.ndarray) -> np.ndarray:
        """Row-by-row similarity of two equally long lists of codes (pairs: a[i] with b[i])."""
        a, b = self.decode(a_codes), self.decode(b_codes)
        if len(a) != len(b):
            raise ValueError(f"code_similarity pairs rows: got {len(a)} and {len(b)} codes")
        return np.sum(a * b, axis=1).astype(np.float32)

    def to_bytes(self, x: np.ndarray) -> bytes:
        """One template (D,) → the bytes stored in a gallery row."""
        return self.encode(np.asarray(x).reshape(1, -1))[0].tobytes()

    def from_bytes(self, blobs: list[bytes]) -> np.ndarray:
        """Stored rows → (N, bytes_per_template) uint8 codes, checking every row's length."""
        n = self.bytes_per_template
        # a tampered SQLite row may hold an integer, a float, text or NULL instead of a blob
        bad = [i for i, b in enumerate(blobs) if not isinstance(b, (bytes, bytearray, memoryview)) or len(b) != n]
        if bad:
            first = blobs[bad[0]]
            what = f"{len(first)} bytes" if isinstance(first, (bytes, bytearray, memoryview)) else f"a {type(first).__name__}, not bytes"
            raise ValueError(f"codec {self.name}: {len(bad)} stored template(s) are not {n} bytes long (first: row {bad[0]}, {what})")
        if not blobs:
            return np.zeros((0, n), np.uint8)
        return np.frombuffer(b"".join(blobs), dtype=np.uint8).reshape(len(blobs), n)

    def invalid_rows(self, codes: np.ndarray) -> list[tuple[int, str]]:
        """(row, why) for every stored code that `encode` of a unit vector cannot have produced: a
        gallery row edited outside edgeface (issue 37: one template multiplied by 3 scored 2.635
        against every probe). Empty when all rows are plausible. Base: any bit pattern is valid."""
        return []

    def __repr__(self) -> str:
        return f"{type(self).__name__}(dim={self.dim}, bytes={self.bytes_per_template})"


def _norm_errors(vectors: np.ndarray, tolerance: float, what: str) -> list[tuple[int, str]]:
    """Rows of `vectors` that are not finite unit vectors within `tolerance`."""
    with np.errstate(all="ignore"):
        norms = np.linalg.norm(vectors.astype(np.float64), axis=1)
    bad = np.flatnonzero(~np.isfinite(norms) | (np.abs(norms - 1.0) > tolerance))
    return [(int(i), f"norm {norms[i]:.4g}, where a stored template is a unit vector (1 ± {tolerance:g})") for i in bad]


class _FloatCodec(Codec):
    """D little-endian IEEE floats of `dtype` (lossless for float32)."""

    dtype = "<f4"
    norm_tolerance = 1e-3  # float32 unit vectors are exact to ~1e-7

    def invalid_rows(self, codes):
        return _norm_errors(self.decode(codes), self.norm_tolerance, self.name)

    @property
    def bytes_per_template(self) -> int:
        return np.dtype(self.dtype).itemsize * self.dim

    def encode(self, x):
        x = _as_matrix(x, self.dim)
        return np.ascontiguousarray(x.astype(self.dtype)).view(np.uint8).reshape(len(x), -1)

    def decode(self, codes):
        codes = _as_codes(codes, self.bytes_per_template)
        return np.ascontiguousarray(codes).view(self.dtype).reshape(len(codes), self.dim).astype(np.float32)


class Float32Codec(_FloatCodec):
    name = "float32"
    dtype = "<f4"


class Float16Codec(_FloatCodec):
    name = "fp16"
    dtype = "<f2"
    norm_tolerance = 1e-2  # half precision rounds each value by up to 2^-11 relative


class Int8Codec(Codec):
    """4-byte little-endian float32 scale, then D signed bytes: x ≈ scale · q."""

    name = "int8"

    @property
    def bytes_per_template(self) -> int:
        return 4 + self.dim

    def encode(self, x):
        x = _as_matrix(x, self.dim)
        scale = np.max(np.abs(x), axis=1) / 127.0
        scale = np.where(scale > 0, scale, 1.0).astype("<f4")
        q = np.clip(np.rint(x / scale[:, None]), -127, 127).astype(np.int8)
        return np.concatenate([scale[:, None].view(np.uint8).reshape(len(x), 4), q.view(np.uint8)], axis=1)

    def decode(self, codes):
        codes = np.ascontiguousarray(_as_codes(codes, self.bytes_per_template))
        scale = codes[:, :4].copy().view("<f4").reshape(-1).astype(np.float32)
        q = codes[:, 4:].view(np.int8).astype(np.float32)
        return q * scale[:, None]

    # rounding to 127 levels moves a unit vector's norm by well under 1 % (the rounding errors are
    # small and nearly orthogonal to it); 5 % still refuses any template scaled to score higher
    norm_tolerance = 0.05

    def invalid_rows(self, codes):
        codes = np.ascontiguousarray(_as_codes(codes, self.bytes_per_template))
        out = _norm_errors(self.decode(codes), self.norm_tolerance, self.name)
        peak = np.abs(codes[:, 4:].view(np.int8).astype(np.int16)).max(axis=1) if len(codes) else np.zeros(0)
        # encode scales each template so that its largest value is exactly ±127
        out += [(int(i), f"largest value {int(peak[i])}, where encode always stores 127") for i in np.flatnonzero(peak != 127)
                if int(i) not in {r for r, _ in out}]
        return sorted(out)


class BinaryCodec(Codec):
    """Sign bits (1 where x >= 0), np.packbits big-endian bit order, zero-padded to a byte."""

    name = "binary"
    hamming_scores = True

    @property
    def code_bits(self) -> int:
        return self.dim

    @property
    def bytes_per_template(self) -> int:
        return (self.code_bits + 7) // 8

    def encode(self, x):
        x = _as_matrix(x, self.dim)
        return np.packbits(x >= 0, axis=1)

    def decode(self, codes):
        """±1/sqrt(D) vectors: their dot product is exactly the Hamming similarity 1 - 2h/D."""
        return self._signs(codes) / np.sqrt(self.dim)

    def score_vectors(self, x):
        """±1/sqrt(bits) sign vectors: their dot product is exactly 1 - 2h/bits."""
        return self._signs(self.encode(x)) / np.sqrt(self.code_bits)

    def _signs(self, codes) -> np.ndarray:
        codes = _as_codes(codes, self.bytes_per_template)
        return 2.0 * np.unpackbits(codes, axis=1, count=self.code_bits).astype(np.float32) - 1.0

    def invalid_rows(self, codes):
        """Any sign pattern is a valid code; only the padding bits after code_bits must be zero."""
        codes = _as_codes(codes, self.bytes_per_template)
        pad = 8 * self.bytes_per_template - self.code_bits
        if pad == 0 or not len(codes):
            return []
        bad = np.flatnonzero(codes[:, -1] & np.uint8((1 << pad) - 1))
        return [(int(i), "padding bits set, which encode never sets") for i in bad]

    def hamming(self, a_codes: np.ndarray, b_codes: np.ndarray) -> np.ndarray:
        """(M, N) Hamming distances between two sets of codes (padding bits are zero in both)."""
        a = _as_codes(a_codes, self.bytes_per_template, "query codes")
        b = _as_codes(b_codes, self.bytes_per_template)
        out = np.empty((len(a), len(b)), np.int64)
        for i in range(len(a)):  # row by row keeps memory at N × bytes, not M × N × bytes
            out[i] = _xor_popcount(b, a[i])
        return out

    def similarity(self, query, codes):
        q = self.encode(query)
        return (1.0 - 2.0 * self.hamming(q, codes) / self.code_bits).astype(np.float32)

    def code_similarity(self, a_codes: np.ndarray, b_codes: np.ndarray) -> np.ndarray:
        """Row-by-row similarity of two equally long lists of codes (pairs: a[i] with b[i])."""
        a = _as_codes(a_codes, self.bytes_per_template, "codes a")
        b = _as_codes(b_codes, self.bytes_per_template, "codes b")
        if len(a) != len(b):
            raise ValueError(f"code_similarity pairs rows: got {len(a)} and {len(b)} codes")
        h = _xor_popcount(a, b)
        return (1.0 - 2.0 * h / self.code_bits).astype(np.float32)


def _hadamard(n: int) -> np.ndarray:
    """Sylvester's Hadamard matrix of order n (a power of two), entries ±1."""
    h = np.ones((1, 1), np.float32)
    while len(h) < n:
        h = np.block([[h, h], [h, -h]])
    return h


def _fixed_signs(tag: str, n: int) -> np.ndarray:
    """n values ±1 from SHA-256 of a fixed string: the same on every machine and numpy version."""
    stream = b"".join(hashlib.sha256(f"edgeface-simhash/{tag}/{k}".encode()).digest() for k in range((n + 255) // 256))
    return np.where(np.unpackbits(np.frombuffer(stream, np.uint8))[:n] > 0, 1.0, -1.0).astype(np.float32)


class ProjectedBinaryCodec(BinaryCodec):
    """`bits` sign bits of x @ P, P = [H·diag(s_0) | H·diag(s_1) | …] / sqrt(n) restricted to the
    embedding's D rows (n = D rounded up to a power of two; x padded with zeros)."""

    bits = 512

    def __init__(self, dim: int):
        super().__init__(dim)
        n = 1 << max(0, (dim - 1).bit_length())
        h = _hadamard(n) / np.sqrt(n)
        blocks = [_fixed_signs(f"n{n}/block{k}", n)[:, None] * h for k in range(-(-self.bits // n))]
        self.projection = np.ascontiguousarray(np.concatenate(blocks, axis=1)[:dim, : self.bits], np.float32)

    @property
    def code_bits(self) -> int:
        return self.bits

    def encode(self, x):
        x = _as_matrix(x, self.dim)
        return np.packbits(x @ self.projection >= 0, axis=1)

    def decode(self, codes):
        """An approximate unit embedding (back-projection of the signs), for the index and
        for `template()`; scores come from the codes (similarity / code_similarity)."""
        y = self._signs(codes) @ self.projection.T
        return (y / np.maximum(np.linalg.norm(y, axis=1, keepdims=True), 1e-12)).astype(np.float32)


class Binary256Codec(ProjectedBinaryCodec):
    name = "binary256"
    bits = 256


class Binary512Codec(ProjectedBinaryCodec):
    name = "binary512"
    bits = 512


CODECS: dict[str, type[Codec]] = {c.name: c for c in (Float32Codec, Float16Codec, Int8Codec, BinaryCodec, Binary256Codec, Binary512Codec)}
HAMMING_CODECS = tuple(name for name, c in CODECS.items() if c.hamming_scores)


def get_codec(name: str, dim: int) -> Codec:
    """A template codec instance for `dim`-dimensional embeddings; raises ValueError for an unknown codec name."""
    if name not in CODECS:
        raise ValueError(f"unknown template codec {name!r}; choose one of {sorted(CODECS)}")
    return CODECS[name](dim)


def bytes_per_template(name: str, dim: int) -> int:
    """Bytes one stored template takes with the named codec at dimension `dim`."""
    return get_codec(name, dim).bytes_per_template


def encode(name: str, x: np.ndarray) -> np.ndarray:
    """Encode (N, D) embeddings with the named codec: (N, bytes_per_template) uint8 codes."""
    x = np.asarray(x)
    return get_codec(name, x.shape[-1]).encode(x)


def decode(name: str, codes: np.ndarray, dim: int) -> np.ndarray:
    """Decode (N, bytes_per_template) codes of the named codec back to (N, dim) float32 embeddings."""
    return get_codec(name, dim).decode(codes)


def similarity(name: str, query: np.ndarray, codes: np.ndarray, dim: int) -> np.ndarray:
    """(M, N) cosine-like scores of float queries (M, dim) against stored codes (N, bytes) of the named codec."""
    return get_codec(name, dim).similarity(query, codes)
