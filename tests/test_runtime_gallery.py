import os
import signal
import sqlite3
import stat
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from edgeface.core.card import ModelCard
from edgeface.runtime.gallery import SCHEMA_VERSION, Gallery, GalleryError, ModelMismatchError

CARD = ModelCard(name="test-net", arch="mobilefacenet", input_size=(112, 96), embedding_size=32, template="sphereface_112x96")
REPO = Path(__file__).resolve().parent.parent


def unit(rng, n, d=32):
    x = rng.normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_created_owner_only_with_schema_version_and_wal(tmp_path, rng):
    path = tmp_path / "g.db"
    old = os.umask(0o022)  # a permissive umask must not make the gallery world-readable
    try:
        with Gallery(path, card=CARD, codec="int8") as g:
            g.add("alice", unit(rng, 1)[0])
            for f in [path, Path(str(path) + "-wal")]:
                assert f.exists()
                assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
            assert g.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        os.umask(old)
    raw = sqlite3.connect(path)
    assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    meta = dict(raw.execute("SELECT key, value FROM meta"))
    assert meta["codec"] == "int8" and meta["embedding_size"] == "32" and meta["model_name"] == "test-net"
    raw.close()


def test_templates_round_trip_each_codec(tmp_path, rng):
    x = unit(rng, 5)
    for codec, tol in [("float32", 1e-7), ("fp16", 1e-3), ("int8", 1e-2)]:
        with Gallery(tmp_path / f"{codec}.db", card=CARD, codec=codec) as g:
            g.add_many([(f"p{i}", x[i], 1, 1.0) for i in range(5)])
        with Gallery(tmp_path / f"{codec}.db", card=CARD) as g:  # codec comes from the file
            assert g.codec.name == codec
            assert np.abs(g.template("p3") - x[3]).max() < tol
            assert g.search(x[2], top_k=1)[0][0].name == "p2"


@pytest.mark.parametrize("codec", ["binary", "binary256", "binary512"])
def test_binary_galleries_store_codes_and_score_by_hamming(tmp_path, rng, codec):
    from edgeface.runtime.codecs import get_codec

    x = unit(rng, 40)
    c = get_codec(codec, 32)
    with Gallery(tmp_path / "g.db", card=CARD, codec=codec) as g:
        g.add_many([(f"p{i}", x[i], 1, 1.0) for i in range(40)])
    with Gallery(tmp_path / "g.db", card=CARD) as g:
        assert g.codec.name == codec and g.codec.hamming_scores
        assert np.array_equal(g.template_code("p7"), c.encode(x[7:8]))  # exactly the codec's bytes on disk
        probe = x[7] + 0.2 * unit(rng, 1)[0]
        top = g.search(probe, top_k=3, use_index=False)[0]
        assert top[0].name == "p7"
        expected = c.similarity(probe / np.linalg.norm(probe), c.encode(x))[0]
        assert top[0].score == pytest.approx(float(expected[7]), abs=1e-6)
        assert [m.score for m in top] == sorted(np.sort(expected)[::-1][:3].tolist(), reverse=True)
        g.index_threshold = 10  # far below the gallery's size: a cosine codec would use the index now
        assert g.search(probe, top_k=1)[0][0].name == "p7" and g._index is None  # Hamming codes: scanned exactly


def test_refuses_other_model_newer_schema_and_foreign_files(tmp_path, rng):
    path = tmp_path / "g.db"
    Gallery(path, card=CARD).close()
    with pytest.raises(ModelMismatchError, match="test-net"):
        Gallery(path, card=CARD.replace(name="other-net"))
    with pytest.raises(ModelMismatchError):
        Gallery(path, card=CARD.replace(embedding_size=64))
    raw = sqlite3.connect(path)
    raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    raw.close()
    with pytest.raises(GalleryError, match="newer"):
        Gallery(path, card=CARD)
    foreign = tmp_path / "other.sqlite"
    c = sqlite3.connect(foreign)
    c.execute("CREATE TABLE t (x)")
    c.commit()
    c.close()
    with pytest.raises(GalleryError, match="not an edgeface gallery"):
        Gallery(foreign, card=CARD)
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(GalleryError, match="not a usable gallery"):
        Gallery(junk, card=CARD)
    assert junk.read_bytes() == b"this is not sqlite at all" * 100  # untouched
    with pytest.raises(GalleryError, match="no such gallery"):
        Gallery(tmp_path / "missing.db", readonly=True)
    with pytest.raises(ValueError, match="unknown template codec"):
        Gallery(tmp_path / "new.db", card=CARD, codec="pq")
    assert not (tmp_path / "new.db").exists()


def test_add_many_is_one_transaction(tmp_path, rng):
    with Gallery(tmp_path / "g.db", card=CARD) as g:
        g.add("keep", unit(rng, 1)[0])
        bad = [("a", unit(rng, 1)[0], 1, 1.0), ("b", np.full(32, np.nan), 1, 1.0)]
        with pytest.raises(ValueError, match="NaN"):
            g.add_many(bad)
        with pytest.raises(GalleryError, match="already enrolled"):
            g.add_many([("new", unit(rng, 1)[0], 1, 1.0), ("keep", unit(rng, 1)[0], 1, 1.0)], replace=False)
        assert g.names() == ["keep"]
        with pytest.raises(ValueError, match="32-d"):
            g.add("short", np.ones(8))
        with pytest.raises(ValueError, match="non-empty"):
            g.add("", unit(rng, 1)[0])
        assert g.remove("keep") and not g.remove("keep")
        assert len(g) == 0


def test_exact_search_matches_brute_force(tmp_path, rng):
    x = unit(rng, 300)
    with Gallery(tmp_path / "g.db", card=CARD) as g:
        g.add_many([(f"p{i:03d}", x[i], 1, 1.0) for i in range(300)])
        q = unit(rng, 4)
        res = g.search(q, top_k=5, use_index=False)
        brute = np.argsort(-(q @ x.T), axis=1)[:, :5]
        for r, b in zip(res, brute):
            assert [m.name for m in r] == [f"p{i:03d}" for i in b]
            assert all(r[i].score >= r[i + 1].score for i in range(4))


def _has(module: str) -> bool:
    # find_spec, not importorskip: importing usearch before onnxruntime breaks onnxruntime
    # for the rest of the process (see gallery._import_usearch)
    import importlib.util

    return importlib.util.find_spec(module) is not None


def test_usearch_index_recall_against_exact(tmp_path, rng):
    if not _has("usearch"):
        pytest.skip("usearch not installed")
    x = unit(rng, 3000)
    with Gallery(tmp_path / "g.db", card=CARD, index_threshold=1000, index_expansion_search=128) as g:
        g.add_many([(f"p{i}", x[i], 1, 1.0) for i in range(3000)])
        q = x[:200] + 0.3 * unit(rng, 200)
        exact = [r[0].name for r in g.search(q, top_k=1, use_index=False)]
        indexed = [r[0].name for r in g.search(q, top_k=1)]  # auto: above the threshold
        assert g._index is not None and g._index.expansion_search == 128
        assert np.mean([a == b for a, b in zip(exact, indexed)]) >= 0.95


def test_search_breadth_grows_with_the_gallery_as_measured():
    from edgeface.runtime.gallery import auto_expansion_search

    # the two measured points (99.5 % mated recall): ef 256 at 100k, 2048 at 1M
    assert auto_expansion_search(100_000) == 256 and auto_expansion_search(1_000_000) == 2048
    assert auto_expansion_search(0) == auto_expansion_search(50_000) == 256
    sizes = [10**k for k in range(3, 8)] + [150_000, 500_000, 3_000_000]
    ef = [auto_expansion_search(n) for n in sorted(sizes)]
    assert ef == sorted(ef) and all(e % 256 == 0 for e in ef) and ef[-1] > 2048


def test_gallery_index_uses_the_breadth_for_its_size_and_refuses_a_bad_setting(tmp_path, rng):
    if not _has("usearch"):
        pytest.skip("usearch not installed")
    from edgeface.runtime.gallery import auto_expansion_search

    with pytest.raises(ValueError, match="index_expansion_search"):
        Gallery(tmp_path / "bad.db", card=CARD, index_expansion_search=0)
    assert not (tmp_path / "bad.db").exists()
    x = unit(rng, 1200)
    with Gallery(tmp_path / "g.db", card=CARD, index_threshold=1000) as g:
        g.add_many([(f"p{i}", x[i], 1, 1.0) for i in range(1200)])
        assert g.search(x[0], top_k=1)[0][0].name == "p0"
        assert g._index is not None and g._index.expansion_search == auto_expansion_search(1200) == 256
        assert g.expansion_search_for(1_000_000) == 2048


def test_index_is_saved_loaded_by_the_next_process_and_replaced_when_content_changes(tmp_path, rng):
    if not _has("usearch"):
        pytest.skip("usearch not installed")
    x = unit(rng, 2000)
    q = x[:100] + 0.3 * unit(rng, 100)
    path = tmp_path / "g.db"
    with Gallery(path, card=CARD, index_threshold=1000) as g:
        g.add_many([(f"p{i}", x[i], 1, 1.0) for i in range(2000)])
        first = [r[0].name for r in g.search(q, top_k=1)]
        assert g.index_source == "built"
        saved = g.index_file()
    assert saved.is_file() and stat.S_IMODE(saved.stat().st_mode) == 0o600
    with Gallery(path, readonly=True, index_threshold=1000) as r:
        assert [m[0].name for m in r.search(q, top_k=1)] == first
        assert r.index_source == "loaded" and r.index_file() == saved
    # A corrupt index file is rebuilt, never trusted. (A rebuilt HNSW graph is not bit-identical:
    # usearch inserts on several threads, so compare with exact search, not with the first index.)
    saved.write_bytes(saved.read_bytes()[:1000])
    with Gallery(path, readonly=True, index_threshold=1000) as r:
        rebuilt = [m[0].name for m in r.search(q, top_k=1)]
        assert r.index_source == "built"
        exact = [m[0].name for m in r.search(q, top_k=1, use_index=False)]
        assert np.mean([a == b for a, b in zip(rebuilt, exact)]) >= 0.95
    # New content: a new index file; the stale one is removed, and a search finds the newcomer.
    with Gallery(path, card=CARD, index_threshold=1000) as g:
        g.add("newcomer", x[5] * -1.0)
        res = g.search(-x[5], top_k=1)[0][0]
        assert res.name == "newcomer" and g.index_source == "built"
        assert g.index_file() != saved and g.index_file().is_file() and not saved.exists()


def test_reader_sees_only_committed_data_while_writer_is_busy(tmp_path, rng):
    path = tmp_path / "g.db"
    x = unit(rng, 3)
    w = Gallery(path, card=CARD)
    w.add("first", x[0])
    r = Gallery(path, readonly=True)
    assert [m.name for m in r.search(x[0], top_k=3)[0]] == ["first"]
    # writer opens a transaction and stays inside it; the reader must not block nor see it
    w.conn.execute("BEGIN IMMEDIATE")
    w.conn.execute("INSERT INTO identities VALUES ('pending', ?, 1, 1.0, 0, 0)", (w.codec.to_bytes(x[1]),))
    seen = []
    t = threading.Thread(target=lambda: seen.append(Gallery(path, readonly=True).names()))
    t.start()
    t.join(5)
    assert seen == [["first"]]
    assert r.names() == ["first"]
    w.conn.execute("COMMIT")
    w._local_writes += 1
    # the reader's cached templates are refreshed after another connection's commit
    assert {m.name for m in r.search(x[1], top_k=3)[0]} == {"first", "pending"}
    with pytest.raises(GalleryError, match="read-only"):
        r.add("x", x[2])
    r.close()
    w.close()


WRITER = textwrap.dedent(
    """
    import sys, numpy as np
    from edgeface.core.card import ModelCard
    from edgeface.runtime.gallery import Gallery
    card = ModelCard(name="test-net", arch="mobilefacenet", input_size=(112, 96), embedding_size=32, template="sphereface_112x96")
    g = Gallery(sys.argv[1], card=card, codec="fp16")
    rng = np.random.default_rng(1)
    for i in range(100000):
        v = rng.normal(size=32).astype(np.float32)
        g.add(f"person{i:06d}", v, n_images=3, quality=0.9)
        print(i, flush=True)   # printed only after the commit returned
    """
)


def test_sigkill_during_enrolment_loses_nothing_committed(tmp_path):
    path = tmp_path / "g.db"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, env=env, text=True)
    committed = -1
    deadline = time.time() + 60
    while committed < 150 and time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        committed = int(line)
    os.kill(proc.pid, signal.SIGKILL)  # mid-loop: the next add is in flight
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert committed >= 150, "writer did not get going"
    with Gallery(path, readonly=True) as g:
        names = set(g.names())
        assert {f"person{i:06d}" for i in range(committed + 1)} <= names
        assert len(names) <= committed + 3  # at most the add in flight and the one before the print
        rng = np.random.default_rng(1)
        for i in range(committed + 1):
            v = rng.normal(size=32).astype(np.float32)
            assert np.abs(g.template(f"person{i:06d}") - v / np.linalg.norm(v)).max() < 2e-3
        assert g.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    # and it is writable again afterwards
    with Gallery(path, card=CARD) as g:
        g.add("after", np.ones(32))
        assert "after" in g


def test_index_then_onnxruntime_session_does_not_crash(tmp_path, shared):
    """Regression: importing usearch before onnxruntime made ORT sessions segfault."""
    if not (_has("usearch") and _has("onnxruntime")):
        pytest.skip("needs usearch and onnxruntime")
    from edgeface.core import paths

    code = textwrap.dedent(
        """
        import sys, numpy as np
        from edgeface.core.card import ModelCard
        from edgeface.runtime.gallery import Gallery
        card = ModelCard(name="t", arch="a", input_size=(112, 96), embedding_size=8, template="sphereface_112x96")
        g = Gallery(sys.argv[1], card=card, index_threshold=1)
        g.add_many([(f"p{i}", np.random.rand(8), 1, 1.0) for i in range(20)])
        assert g.search(np.random.rand(8), top_k=1)[0] and g._index is not None
        from edgeface.core.detect import YuNetDetector
        YuNetDetector(sys.argv[2])
        print("OK")
        """
    )
    p = subprocess.run([sys.executable, "-c", code, str(tmp_path / "g.db"), str(paths.yunet_model())], capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=str(REPO)), timeout=120)
    assert p.returncode == 0 and "OK" in p.stdout, (p.returncode, p.stderr[-2000:])
