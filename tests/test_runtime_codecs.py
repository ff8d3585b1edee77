import hashlib
import numpy as np
import pytest

from edgeface.runtime import codecs


def unit(rng, n, d):
    x = rng.normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("name,nbytes,tol", [("float32", 512, 0.0), ("fp16", 256, 1e-3), ("int8", 132, 1e-2)])
def test_round_trip_and_size(rng, name, nbytes, tol):
    x = unit(rng, 20, 128)
    c = codecs.get_codec(name, 128)
    codes = c.encode(x)
    assert codes.dtype == np.uint8 and codes.shape == (20, nbytes) == (20, c.bytes_per_template)
    back = c.decode(codes)
    assert np.abs(back - x).max() <= tol + 1e-7
    # similarities through the codec match the float cosines within the codec's error
    assert np.abs(c.similarity(x, codes) - x @ x.T).max() <= 3 * tol + 1e-6
    # bytes round trip as a gallery stores them
    assert np.array_equal(c.from_bytes([c.to_bytes(v) for v in x]), codes)


def test_int8_uses_per_vector_scale(rng):
    x = unit(rng, 3, 64) * np.array([[1.0], [0.01], [100.0]], np.float32)
    back = codecs.decode("int8", codecs.encode("int8", x), 64)
    rel = np.abs(back - x).max(1) / np.abs(x).max(1)
    assert np.all(rel <= 0.5 / 127 + 1e-6)


@pytest.mark.parametrize("dim", [128, 130, 7])
def test_binary_hamming_similarity_matches_direct_computation(rng, dim):
    x, y = unit(rng, 9, dim), unit(rng, 11, dim)
    c = codecs.get_codec("binary", dim)
    assert c.bytes_per_template == (dim + 7) // 8
    sx, sy = np.where(x >= 0, 1.0, -1.0), np.where(y >= 0, 1.0, -1.0)
    direct_hamming = (sx[:, None, :] != sy[None, :, :]).sum(-1)
    assert np.array_equal(c.hamming(c.encode(x), c.encode(y)), direct_hamming)
    sim = c.similarity(x, c.encode(y))
    assert np.allclose(sim, sx @ sy.T / dim, atol=1e-6)
    assert np.allclose(sim, 1 - 2 * direct_hamming / dim, atol=1e-6)
    # decode gives ±1/sqrt(D) vectors whose dot products are that same similarity
    assert np.allclose(c.decode(c.encode(x)) @ c.decode(c.encode(y)).T, sim, atol=1e-5)


@pytest.mark.parametrize("name,bits", [("binary256", 256), ("binary512", 512)])
@pytest.mark.parametrize("dim", [128, 100, 512])
def test_projected_binary_is_simhash_of_a_fixed_orthogonal_rotation(rng, name, bits, dim):
    c = codecs.get_codec(name, dim)
    assert c.bytes_per_template == bits // 8 and c.hamming_scores
    # the projection, rebuilt directly from its definition: blocks H·diag(s_k)/sqrt(n), n = D
    # rounded up to a power of two, signs from SHA-256 of fixed strings, first D rows, first bits columns
    n = 1 << (dim - 1).bit_length()
    h = np.array([[1.0]])
    while len(h) < n:
        h = np.block([[h, h], [h, -h]])
    blocks = []
    for k in range(-(-bits // n)):
        stream = b"".join(hashlib.sha256(f"edgeface-simhash/n{n}/block{k}/{j}".encode()).digest() for j in range((n + 255) // 256))
        s = np.where(np.unpackbits(np.frombuffer(stream, np.uint8))[:n] > 0, 1.0, -1.0)
        blocks.append(s[:, None] * h / np.sqrt(n))
    p = np.concatenate(blocks, 1)[:dim, :bits]
    assert np.allclose(c.projection, p, atol=1e-6)
    for k in range(-(-bits // n)):  # each full block is orthogonal
        blk = np.concatenate(blocks, 1)[:, k * n : (k + 1) * n]
        assert np.allclose(blk.T @ blk, np.eye(n), atol=1e-5)
    x, y = unit(rng, 9, dim), unit(rng, 11, dim)
    sx, sy = np.where(x @ p >= 0, 1.0, -1.0), np.where(y @ p >= 0, 1.0, -1.0)
    direct = sx @ sy.T / bits
    assert np.allclose(c.similarity(x, c.encode(y)), direct, atol=1e-6)
    assert np.allclose(c.code_similarity(c.encode(x[:9]), c.encode(y[:9])), np.diag(direct[:, :9]), atol=1e-6)
    # same rotation in a fresh instance (nothing random, nothing stored)
    assert np.array_equal(codecs.get_codec(name, dim).encode(x), c.encode(x))
    # decode: a unit vector close to the original (back-projected signs; sign quantisation keeps
    # cosine ~sqrt(2/pi) = 0.8 of it, times sqrt(bits/D) when there are fewer bits than dimensions)
    d = c.decode(c.encode(x))
    assert d.shape == x.shape and np.allclose(np.linalg.norm(d, axis=1), 1, atol=1e-5)
    assert np.min(np.sum(d * x, 1)) > 0.7 * np.sqrt(min(1.0, bits / dim))


def pairs_spanning_cosines(rng, n: int, dim: int = 128):
    """n unit pairs whose cosines run from ~0 to 1."""
    x, noise = unit(rng, n, dim), unit(rng, n, dim)
    mix = np.linspace(0, 1, n, dtype=np.float32)[:, None]
    y = mix * x + (1 - mix) * noise
    return x, y / np.linalg.norm(y, axis=1, keepdims=True)


def test_more_projected_bits_track_cosine_more_closely(rng):
    x, y = pairs_spanning_cosines(rng, 400)
    # SimHash estimates the angle: E[similarity] = 1 - 2·angle/pi
    expected = 1 - 2 * np.arccos(np.clip(np.sum(x * y, 1), -1, 1)) / np.pi
    err = {}
    for name in ("binary", "binary256", "binary512"):
        c = codecs.get_codec(name, 128)
        err[name] = np.sqrt(np.mean((c.code_similarity(c.encode(x), c.encode(y)) - expected) ** 2))
    assert err["binary512"] < err["binary256"] < err["binary"]


def test_binary_similarity_tracks_cosine(rng):
    # pairs spanning cosines from ~0 to ~1: the sign-bit similarity must follow them
    x, y = pairs_spanning_cosines(rng, 300)
    c = codecs.get_codec("binary", 128)
    cos = np.sum(x * y, 1)
    ham = np.diag(c.similarity(x, c.encode(y)))
    assert np.corrcoef(cos, ham)[0, 1] > 0.95


def test_bad_inputs_raise_clear_errors(rng):
    c = codecs.get_codec("int8", 16)
    with pytest.raises(ValueError, match="dimension 16"):
        c.encode(unit(rng, 2, 8))
    with pytest.raises(ValueError, match="NaN"):
        c.encode(np.full((1, 16), np.nan, np.float32))
    with pytest.raises(ValueError, match="uint8 codes"):
        c.decode(np.zeros((1, 20), np.float32))
    with pytest.raises(ValueError, match="bytes long"):
        c.from_bytes([b"\x00" * 3])
    with pytest.raises(ValueError, match="unknown template codec"):
        codecs.get_codec("pq", 16)


@pytest.mark.parametrize("name", sorted(codecs.CODECS))
def test_score_vectors_reproduce_each_codecs_similarity(rng, name):
    """Dot products of score_vectors are what a gallery of that codec scores (threshold calibration
    uses them over millions of pairs)."""
    c = codecs.get_codec(name, 128)
    x, y = pairs_spanning_cosines(rng, 50)
    direct = c.code_similarity(c.encode(x), c.encode(y))
    via_vectors = np.sum(c.score_vectors(x) * c.score_vectors(y), axis=1)
    assert np.allclose(via_vectors, direct, atol=1e-5)
    if c.hamming_scores:
        assert name in codecs.HAMMING_CODECS
        assert np.allclose(via_vectors, np.diag(c.similarity(x, c.encode(y))), atol=1e-5)
