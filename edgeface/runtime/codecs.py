"""Template codecs: how an L2-normalised embedding is stored in a gallery.

Four codecs, numpy only, each with encode → (N, bytes_per_template) uint8 codes,
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

Codes are plain bytes (no pickle): a gallery stores one row of `encode` per template.
"""
from __future__ import annotations

import numpy as np

# popcount of every byte value, for Hamming distances on packed bits.
_POPCOUNT = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1).sum(1).astype(np.uint16)


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

    def to_bytes(self, x: np.ndarray) -> bytes:
        """One template (D,) → the bytes stored in a gallery row."""
        return self.encode(np.asarray(x).reshape(1, -1))[0].tobytes()

    def from_bytes(self, blobs: list[bytes]) -> np.ndarray:
        """Stored rows → (N, bytes_per_template) uint8 codes, checking every row's length."""
        n = self.bytes_per_template
        bad = [i for i, b in enumerate(blobs) if len(b) != n]
        if bad:
            raise ValueError(f"codec {self.name}: {len(bad)} stored template(s) are not {n} bytes long (first: row {bad[0]}, {len(blobs[bad[0]])} bytes)")
        if not blobs:
            return np.zeros((0, n), np.uint8)
        return np.frombuffer(b"".join(blobs), dtype=np.uint8).reshape(len(blobs), n)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(dim={self.dim}, bytes={self.bytes_per_template})"


class Float32Codec(Codec):
    name = "float32"

    @property
    def bytes_per_template(self) -> int:
        return 4 * self.dim

    def encode(self, x):
        x = _as_matrix(x, self.dim)
        return np.ascontiguousarray(x.astype("<f4")).view(np.uint8).reshape(len(x), -1)

    def decode(self, codes):
        codes = _as_codes(codes, self.bytes_per_template)
        return np.ascontiguousarray(codes).view("<f4").reshape(len(codes), self.dim).astype(np.float32)


class Float16Codec(Codec):
    name = "fp16"

    @property
    def bytes_per_template(self) -> int:
        return 2 * self.dim

    def encode(self, x):
        x = _as_matrix(x, self.dim)
        return np.ascontiguousarray(x.astype("<f2")).view(np.uint8).reshape(len(x), -1)

    def decode(self, codes):
        codes = _as_codes(codes, self.bytes_per_template)
        return np.ascontiguousarray(codes).view("<f2").reshape(len(codes), self.dim).astype(np.float32)


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


class BinaryCodec(Codec):
    """Sign bits (1 where x >= 0), np.packbits big-endian bit order, zero-padded to a byte."""

    name = "binary"

    @property
    def bytes_per_template(self) -> int:
        return (self.dim + 7) // 8

    def encode(self, x):
        x = _as_matrix(x, self.dim)
        return np.packbits(x >= 0, axis=1)

    def decode(self, codes):
        """±1/sqrt(D) vectors: their dot product is exactly the Hamming similarity 1 - 2h/D."""
        codes = _as_codes(codes, self.bytes_per_template)
        bits = np.unpackbits(codes, axis=1, count=self.dim).astype(np.float32)
        return (2.0 * bits - 1.0) / np.sqrt(self.dim)

    def hamming(self, a_codes: np.ndarray, b_codes: np.ndarray) -> np.ndarray:
        """(M, N) Hamming distances between two sets of codes (padding bits are zero in both)."""
        a = _as_codes(a_codes, self.bytes_per_template, "query codes")
        b = _as_codes(b_codes, self.bytes_per_template)
        out = np.empty((len(a), len(b)), np.int64)
        for i in range(len(a)):  # row by row keeps memory at N × bytes, not M × N × bytes
            out[i] = _POPCOUNT[np.bitwise_xor(b, a[i])].sum(1)
        return out

    def similarity(self, query, codes):
        q = self.encode(query)
        return (1.0 - 2.0 * self.hamming(q, codes) / self.dim).astype(np.float32)


CODECS: dict[str, type[Codec]] = {c.name: c for c in (Float32Codec, Float16Codec, Int8Codec, BinaryCodec)}


def get_codec(name: str, dim: int) -> Codec:
    if name not in CODECS:
        raise ValueError(f"unknown template codec {name!r}; choose one of {sorted(CODECS)}")
    return CODECS[name](dim)


def bytes_per_template(name: str, dim: int) -> int:
    return get_codec(name, dim).bytes_per_template


def encode(name: str, x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    return get_codec(name, x.shape[-1]).encode(x)


def decode(name: str, codes: np.ndarray, dim: int) -> np.ndarray:
    return get_codec(name, dim).decode(codes)


def similarity(name: str, query: np.ndarray, codes: np.ndarray, dim: int) -> np.ndarray:
    return get_codec(name, dim).similarity(query, codes)
