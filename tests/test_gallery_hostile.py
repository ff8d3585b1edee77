"""Issue 20, findings 4 and 5: galleries under concurrency, odd paths, read-only files and
hostile identity names. Every case ends in success or a GalleryError / ValueError with a
sentence — never a raw sqlite3 error — and names cannot forge output or the "unknown" answer."""
import multiprocessing as mp
import os
import sqlite3
import subprocess
import sys
import unicodedata

import numpy as np
import pytest

from edgeface.core.card import ModelCard
from edgeface.runtime.gallery import Gallery, GalleryError, display_name, normalize_name

CARD = ModelCard(name="test-net", arch="mobilefacenet", input_size=(112, 96), embedding_size=32, template="sphereface_112x96")


def unit(seed, d=32):
    x = np.random.default_rng(seed).normal(size=d).astype(np.float32)
    return x / np.linalg.norm(x)


def _create_and_enrol(path, k, barrier, errors):
    try:
        barrier.wait(timeout=60)
        with Gallery(path, card=CARD, timeout=60) as g:
            g.add(f"person{k}", unit(k))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        errors.put(f"{k}: {type(exc).__name__}: {exc}")


@pytest.mark.parametrize("round_", range(3))
def test_processes_creating_one_new_gallery_at_once_all_succeed(tmp_path, round_):
    """Issue 20: 4 processes opening a NEW gallery at once -> up to 3 died ("table meta already
    exists" / "database is locked"). Now all of them enrol."""
    ctx = mp.get_context("fork")
    n = 6
    path = str(tmp_path / "new.db")
    barrier, errors = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=_create_and_enrol, args=(path, k, barrier, errors)) for k in range(n)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    errs = []
    while not errors.empty():
        errs.append(errors.get())
    assert not errs, errs
    assert all(p.exitcode == 0 for p in procs)
    with Gallery(path, readonly=True) as g:
        assert sorted(g.names()) == sorted(f"person{k}" for k in range(n))


@pytest.mark.parametrize("bad", ["", "  ", " alice", "alice\n", "bob\nalice  (3 image(s), quality 1.000)", "eve\x1b[2J", "a\x00b",
                                 "mallory\u202eecila", "unknown", "Unknown", "UNKNOWN", "x" * 257, None, 42, "line\u2028break"])
def test_bad_names_refused_on_every_write_path(tmp_path, bad):
    with Gallery(tmp_path / "g.db", card=CARD) as g:
        g.add("alice", unit(1))
        with pytest.raises(ValueError):
            g.add(bad, unit(2))
        with pytest.raises(ValueError):
            g.add_many([("ok", unit(3), 1, 1.0), (bad, unit(4), 1, 1.0)])
        assert "ok" not in g  # all or nothing
        with pytest.raises(ValueError):
            g.rename("alice", bad)
        assert g.names() == ["alice"]


def test_names_are_nfc_so_one_person_is_one_entry(tmp_path):
    composed, decomposed = "Jos\u00e9", "Jose\u0301"
    assert unicodedata.normalize("NFC", decomposed) == composed
    with Gallery(tmp_path / "g.db", card=CARD) as g:
        g.add(decomposed, unit(1))
        g.add(composed, unit(2))  # the same person: replaces
        assert g.names() == [composed] and decomposed in g and g.template(decomposed) is not None
        assert g.rename(decomposed, "Zoë") and g.names() == ["Zoë"]
    assert normalize_name("  x  ".strip()) == "x"


def test_rename_onto_an_existing_name_is_refused(tmp_path):
    with Gallery(tmp_path / "g.db", card=CARD) as g:
        g.add("alice", unit(1))
        g.add("bob", unit(2))
        with pytest.raises(GalleryError, match="already enrolled"):
            g.rename("alice", "bob")
        assert sorted(g.names()) == ["alice", "bob"]
        np.testing.assert_allclose(g.template("bob"), unit(2), atol=1e-6)
        assert g.rename("carol", "dave") is False


def test_odd_paths_give_clear_errors(tmp_path):
    os.symlink(tmp_path / "nowhere" / "g.db", tmp_path / "dangling.db")
    with pytest.raises(GalleryError, match="does not exist"):
        Gallery(tmp_path / "dangling.db", card=CARD)
    (tmp_path / "adir.db").mkdir()
    with pytest.raises(GalleryError, match="not a file"):
        Gallery(tmp_path / "adir.db", card=CARD)
    with pytest.raises(GalleryError, match="no such gallery"):
        Gallery(tmp_path / "missing.db", readonly=True)
    with pytest.raises(GalleryError, match="no such gallery"):
        Gallery(tmp_path / "missing.db", card=CARD, create=False)
    (tmp_path / "junk.db").write_bytes(os.urandom(4096))
    with pytest.raises(GalleryError):
        Gallery(tmp_path / "junk.db", card=CARD)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(GalleryError, match="cannot create"):
        Gallery(blocker / "sub" / "g.db", card=CARD)


def test_writes_to_a_read_only_gallery_are_clear_errors(tmp_path):
    path = tmp_path / "g.db"
    with Gallery(path, card=CARD) as g:
        g.add("alice", unit(1))
        g.conn.execute("PRAGMA query_only = 1")  # SQLite answers writes with SQLITE_READONLY, as for a read-only file
        for write in (lambda: g.add("bob", unit(2)), lambda: g.remove("alice"), lambda: g.rename("alice", "carol")):
            with pytest.raises(GalleryError, match="read-only"):
                write()
    with Gallery(path, readonly=True) as g:
        with pytest.raises(GalleryError, match="read-only"):
            g.add("bob", unit(2))
    if os.geteuid() != 0:  # root writes through file modes
        path.chmod(0o400)
        with pytest.raises(GalleryError, match="read-only"):
            Gallery(path, card=CARD).add("bob", unit(2))


def test_legacy_bad_names_cannot_forge_list_output(tmp_path):
    """A gallery written before names were validated (or edited with sqlite3) may hold a NULL
    name, newlines and escape sequences: `gallery list` still works and prints one line each."""
    path = tmp_path / "g.db"
    with Gallery(path, card=CARD) as g:
        g.add("alice", unit(1))
    con = sqlite3.connect(path)
    blob = con.execute("SELECT template FROM identities").fetchone()[0]
    for name in ("bob\nmallory  (9 image(s), quality 1.000)", "eve\x1b[31mred", None):
        con.execute("INSERT INTO identities VALUES (?, ?, 1, 1.0, 0, 0)", (name, blob))
    con.commit()
    con.close()
    p = subprocess.run([sys.executable, "-m", "edgeface", "gallery", "list", "--gallery", str(path)], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert len(lines) == 4 and "\x1b" not in p.stdout and not any(line.startswith("mallory") for line in lines), p.stdout
    assert display_name("ok") == "ok" and display_name("a\nb") == "'a\\nb'"
