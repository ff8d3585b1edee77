"""Issue 20: a bounded fuzz run (fixed seed, a few hundred cases, seconds) over the runtime's
inputs: image files (random and structured byte mutations of real PNG/JPEG/GIF/BMP files),
arrays and app landmarks through verify, bundle manifests, and gallery files. Properties:
  * no crash: every outcome is a result or one of the documented errors (ImageError reasons,
    Rejection reasons, BundleError kinds, GalleryError / ValueError / KeyError for API misuse);
  * no silent false accept: verify's "match" always means a similarity >= the threshold,
    recomputed independently from the embedding; a mutated manifest that still loads never
    has thresholds other than the calibrated ones.
Tiny sealed bundle, no torch, no ../shared (except test_fuzz_turned_faces: real LFW photos and YuNet).
Issue 37 added: resealed far_curve mutations, template rows rewritten with SQL and disguised names;
progressive-JPEG bombs and JPEG-structure mutations (huge frame sizes, repeated scans), landmarks as
dicts / sets / strings / objects, symlinks and symlink loops inside bundles, and faces turned by 90°,
180° or 270° (never a Face). EDGEFACE_FUZZ_SCALE=N runs N times the cases (the CI runs 1)."""
import io
import json
import os
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from edgeface.core.imageio import ImageError, read_image
from edgeface.runtime import manifest as M
from edgeface.runtime.bundle import BundleError, load_bundle, write_manifest_digest
from edgeface.runtime.face import REJECTION_REASONS, FaceRecognizer
from edgeface.runtime.gallery import Gallery, GalleryError
from tiny_bundle import make_tiny_bundle, read

Image = pytest.importorskip("PIL.Image")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")
IMAGE_REASONS = {"missing", "unreadable", "empty", "tiny", "huge", "invalid"}
SEED = 20
SCALE = float(os.environ.get("EDGEFACE_FUZZ_SCALE", "1"))
N_IMAGES, N_VERIFY, N_MANIFESTS, N_GALLERIES, N_JPEG, N_TURNED = (max(1, int(n * SCALE)) for n in (120, 150, 120, 60, 40, 12))  # 502 cases


def _seeds(rng):
    out = {}
    arr = rng.integers(0, 256, (64, 48, 3), dtype=np.uint8)
    for fmt, mode in (("PNG", "RGB"), ("JPEG", "RGB"), ("GIF", "P"), ("BMP", "RGB"), ("PNG", "I;16"), ("TIFF", "RGB")):
        buf = io.BytesIO()
        im = Image.fromarray(arr) if mode == "RGB" else (Image.fromarray(arr).quantize(8) if mode == "P" else Image.fromarray((arr[..., 0].astype(np.uint16) * 257)))
        im.save(buf, fmt)
        out[f"{fmt}-{mode}"] = buf.getvalue()
    return out


def _mutate(data: bytes, rng) -> bytes:
    b = bytearray(data)
    op = rng.integers(6)
    if op == 0:  # flip random bits
        for _ in range(rng.integers(1, 20)):
            i = rng.integers(len(b))
            b[i] ^= 1 << rng.integers(8)
    elif op == 1:  # truncate
        b = b[: rng.integers(1, len(b))]
    elif op == 2:  # overwrite a header field with extreme values
        i = rng.integers(8, min(40, len(b) - 4))
        b[i : i + 4] = rng.choice([b"\xff\xff\xff\xff", b"\x00\x00\x00\x00", b"\x7f\xff\xff\xff", b"\x00\x01\x00\x00"])
    elif op == 3:  # duplicate a slice
        i, j = sorted(rng.integers(0, len(b), 2))
        b = b[:j] + b[i:j] + b[j:]
    elif op == 4:  # random tail
        b = b[: len(b) // 2] + bytearray(rng.bytes(int(rng.integers(1, 2000))))
    else:  # random bytes behind a real magic number
        b = b[:8] + bytearray(rng.bytes(int(rng.integers(1, 4000))))
    return bytes(b)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_bundle(tmp_path_factory.mktemp("fuzz") / "bundle")


def _read_outcome(path) -> str:
    """read_image on a fuzzed file: "decoded" (an RGB uint8 image) or the ImageError's documented reason."""
    try:
        img = read_image(path)
    except ImageError as exc:
        assert exc.reason in IMAGE_REASONS, exc
        return exc.reason
    assert img.pixels.dtype == np.uint8 and img.pixels.ndim == 3 and img.pixels.shape[2] == 3
    return "decoded"


def test_fuzz_image_files(tmp_path):
    rng = np.random.default_rng(SEED)
    seeds = _seeds(rng)
    outcomes = Counter()
    for k in range(N_IMAGES):
        name = list(seeds)[k % len(seeds)]
        path = tmp_path / f"f{k}.img"
        path.write_bytes(_mutate(seeds[name], rng))
        outcomes[_read_outcome(path)] += 1
    print("fuzz images", dict(outcomes))
    assert sum(outcomes.values()) == N_IMAGES and outcomes["decoded"] > 0 and outcomes["unreadable"] > 0, outcomes


def _random_image(rng):
    kind = rng.integers(7)
    shape = [(int(rng.integers(1, 200)), int(rng.integers(1, 200)), 3), (50, 50), (40, 40, 4), (30, 30, 2), (0, 10, 3), (60, 60, 3), (3,)][kind]
    dtype = rng.choice([np.uint8, np.uint16, np.float32, np.float64, np.int32, bool])
    a = (rng.random(shape) * 300).astype(dtype) if shape[0] else np.zeros(shape, dtype)
    if dtype in (np.float32, np.float64) and a.size and rng.random() < 0.3:
        a.flat[0] = np.nan
    return a


def _random_landmarks(rng, base):
    kind = rng.integers(13)
    if kind == 0:
        return None
    if kind == 9:  # issue 37: a dict of named points (was a TypeError)
        return dict(zip(["right_eye", "left_eye", "nose", "right_mouth", "left_mouth"], base.tolist()))
    if kind == 10:
        return {1, 2, 3}
    if kind == 11:
        return "30,40,70,40,50,60,35,80,65,80"
    if kind == 12:
        return [[30, 40], [70], [50, 60], [35, 80], [65, 80]]  # ragged
    if kind == 1:
        return base + rng.normal(0, 3, base.shape)
    if kind == 2:
        return np.full((5, 2), np.nan)
    if kind == 3:
        return base * 1e300
    if kind == 4:
        return np.zeros((5, 2))
    if kind == 5:
        return rng.normal(0, 1e4, (5, 2))
    if kind == 6:
        return base[:3]
    if kind == 7:
        return [["a", "b"]] * 5
    return rng.uniform(0, 100, (5, 2))


def test_fuzz_arrays_and_landmarks_through_verify(tiny, tmp_path):
    rng = np.random.default_rng(SEED + 1)
    rec = FaceRecognizer.from_bundle(tiny, gallery=str(tmp_path / "g.db"), gate=False)  # no gate: the decision path itself is under test
    base = np.array([[30, 40], [70, 40], [50, 60], [35, 80], [65, 80]], np.float64)
    enrolled = rng.integers(0, 256, (120, 100, 3), dtype=np.uint8)
    assert rec.enroll("alice", [enrolled], landmarks=[base]).enrolled
    thr = rec.threshold("1e-3")
    template = rec.gallery.template("alice")
    outcomes = Counter()
    for k in range(N_VERIFY):
        img = _random_image(rng) if k % 3 else rng.integers(0, 256, (120, 100, 3), dtype=np.uint8)
        lm = _random_landmarks(rng, base)
        try:
            res = rec.verify(img, "alice", landmarks=lm)
        except ValueError as exc:  # API misuse (e.g. landmarks that are not numbers) — a message, not a crash
            outcomes["ValueError"] += 1
            assert str(exc)
            continue
        outcomes[res.decision] += 1
        for r in res.rejected:
            assert r.reason in REJECTION_REASONS, r
        if res.match is not None:
            (face,) = rec.analyze([img], None if lm is None else [lm])
            sim = float(face.embedding @ template)
            assert abs(sim - res.similarity) < 1e-5 and res.match == (sim >= thr), (sim, res.to_dict())
    print("fuzz verify", dict(outcomes))
    assert sum(outcomes.values()) == N_VERIFY and outcomes["rejected"] > 0 and outcomes["no_match"] + outcomes["match"] > 0, outcomes


def test_fuzz_manifests(tiny, tmp_path):
    rng = np.random.default_rng(SEED + 2)
    original = read(tiny)
    values = [None, True, False, 0, -0.5, 0.0, 1.0, 2, 1e9, -1e9, "", "x", "../model.onnx", "/etc/passwd", [], {}, [1, 2, 3], float("nan")]
    outcomes = Counter()
    for k in range(N_MANIFESTS):
        d = tmp_path / f"b{k}"
        shutil.copytree(tiny, d)
        m = json.loads(json.dumps(original))
        node = m
        for _ in range(int(rng.integers(1, 4))):  # walk down a random path, then replace or delete
            if isinstance(node, dict) and node:
                key = list(node)[rng.integers(len(node))]
                if isinstance(node[key], (dict, list)) and node[key] and rng.random() < 0.6:
                    node = node[key]
                    continue
                if rng.random() < 0.2:
                    del node[key]
                else:
                    node[key] = values[rng.integers(len(values))]
                break
            if isinstance(node, list) and node:
                node[rng.integers(len(node))] = values[rng.integers(len(values))]
                break
        (d / "edgeface.json").write_text(json.dumps(m, allow_nan=True))
        if k % 4:  # three in four resealed: the rules behind the digest are under test
            write_manifest_digest(d)
        try:
            b = load_bundle(d)
        except BundleError as exc:
            assert exc.kind in M.KINDS, exc
            outcomes[exc.kind] += 1
        else:
            outcomes["loaded"] += 1
            assert b.thresholds == {"1e-3": 0.5, "1e-4": 0.6}, b.thresholds  # never a silently changed threshold
            assert b.meta["model_file"] == "model.onnx" and b.meta["input"] == original["input"]
    print("fuzz manifests", dict(outcomes))
    assert sum(outcomes.values()) == N_MANIFESTS and outcomes[M.MANIFEST_DIGEST] >= 25, outcomes


N_CURVES, N_ROWS, N_NAMES = 100, 100, 150  # issue 37 mutations: 350 cases


def test_fuzz_threshold_sections_resealed(tiny, tmp_path):
    """Issue 37: zeroed / shuffled / perturbed far_curve points, resealed. A bundle that still loads has a
    curve no looser than its plausible floor and ordered like the calibration's (so identify --fpir never
    decides below the floor), and at_far thresholds unchanged."""
    rng = np.random.default_rng(SEED + 4)
    original = read(tiny)
    good = [{"far": 0.1, "threshold": 0.3}, {"far": 0.01, "threshold": 0.4}, {"far": 0.001, "threshold": 0.5}, {"far": 0.0001, "threshold": 0.6}]
    outcomes = Counter()
    for k in range(N_CURVES):
        d = tmp_path / f"c{k}"
        shutil.copytree(tiny, d)
        m = json.loads(json.dumps(original))
        curve = [dict(p) for p in good]
        for _ in range(int(rng.integers(1, 4))):
            p = curve[rng.integers(len(curve))]
            op = rng.integers(5)
            if op == 0:
                p["threshold"] = 0.0
            elif op == 1 and isinstance(p["threshold"], float):
                p["threshold"] = float(p["threshold"] + rng.normal(0, 0.2))
            elif op == 2:
                p["far"] = float(10 ** rng.uniform(-6, 0))
            elif op == 3:
                curve.append({"far": float(10 ** rng.uniform(-6, -0.5)), "threshold": float(rng.uniform(-1, 1))})
            else:
                p["threshold"] = [None, "0.5", float("nan"), 1e9, -1][rng.integers(5)]
        m["thresholds"]["far_curve"], m["thresholds"]["num_impostor"] = curve, 100_000
        (d / "edgeface.json").write_text(json.dumps(m, allow_nan=True))
        write_manifest_digest(d)
        try:
            b = load_bundle(d)
        except BundleError as exc:
            assert exc.kind in M.KINDS, exc
            outcomes[exc.kind] += 1
            continue
        outcomes["loaded"] += 1
        assert b.thresholds == {"1e-3": 0.5, "1e-4": 0.6}
        pts = sorted((p["far"], p["threshold"]) for p in b.meta["thresholds"]["far_curve"])
        assert all(M.threshold_floor(f, b.card.embedding_size) <= t <= 1 for f, t in pts), pts
        assert all(t1 >= t2 - 1e-6 for (_, t1), (_, t2) in zip(pts, pts[1:])), pts
        rec = FaceRecognizer(b)
        for fpir_far in (0.5, 0.05, 0.01, 0.002, 0.0002):
            try:
                t = rec.operating_point(fpir_far)[0]
            except ValueError:
                continue
            assert t >= M.threshold_floor(fpir_far, b.card.embedding_size) - 1e-9
    print("fuzz curves", dict(outcomes))
    assert sum(outcomes.values()) == N_CURVES and outcomes[M.THRESHOLDS] > 0 and outcomes["loaded"] > 0, outcomes


def test_fuzz_gallery_rows(tiny, tmp_path):
    """Issue 37: template rows rewritten with SQL (scaled, perturbed, resized, replaced by text or random
    bytes) in every codec: a search either refuses with a GalleryError or scores within [-1, 1]."""
    import sqlite3

    from tiny_bundle import CARD

    rng = np.random.default_rng(SEED + 5)
    codecs = ["float32", "fp16", "int8", "binary", "binary256"]
    outcomes = Counter()
    for k in range(N_ROWS):
        codec = codecs[k % len(codecs)]
        path = tmp_path / f"r{k}.db"
        with Gallery(path, card=CARD, codec=codec) as g:
            for i in range(4):
                v = rng.normal(size=CARD.embedding_size)
                g.add(f"p{i}", v / np.linalg.norm(v))
        con = sqlite3.connect(path)
        blob = con.execute("SELECT template FROM identities WHERE name = 'p0'").fetchone()[0]
        op = rng.integers(6)
        if op == 0 and codec in ("float32", "fp16"):
            dt = "<f4" if codec == "float32" else "<f2"
            new = (np.frombuffer(blob, dt) * float(rng.uniform(0.2, 5))).astype(dt).tobytes()
        elif op == 1:
            b = bytearray(blob)
            b[int(rng.integers(len(b)))] ^= 1 << int(rng.integers(8))
            new = bytes(b)
        elif op == 2:
            new = blob[: int(rng.integers(len(blob)))]
        elif op == 3:
            new = blob + rng.bytes(int(rng.integers(1, 9)))
        elif op == 4:
            new = ["text", 3.5, 7][int(rng.integers(3))]
        else:
            new = rng.bytes(len(blob))
        con.execute("UPDATE identities SET template = ? WHERE name = 'p0'", (new,))
        con.commit()
        con.close()
        try:
            with Gallery(path, card=CARD) as g:
                q = rng.normal(size=CARD.embedding_size)
                scores = [m.score for m in g.search(q / np.linalg.norm(q), top_k=4)[0]]
        except GalleryError as exc:
            assert str(exc)
            outcomes["refused"] += 1
            continue
        outcomes["searched"] += 1
        assert all(-1.0 - 1e-3 <= s <= 1.0 + 1e-3 for s in scores), (codec, op, scores)
    print("fuzz rows", dict(outcomes))
    assert sum(outcomes.values()) == N_ROWS and outcomes["refused"] > 0 and outcomes["searched"] > 0, outcomes


def test_fuzz_names(tmp_path):
    """Issue 37: names built from look-alike letters, invisible characters, case and space variants of a
    few real names. Whatever is accepted: no stored name holds an invisible character, none displays
    like "unknown", and no two stored names display alike (edgeface.runtime.names.confusable)."""
    import unicodedata

    from edgeface.runtime.names import confusable, invisible_characters
    from tiny_bundle import CARD

    rng = np.random.default_rng(SEED + 6)
    pool = list("unknowJosAliceIan01l") + ["\u043e", "\u0430", "\u0435", "\u0456", "\u03bf", "\u0399", "\u200b", "\u00ad", "\u200d",
                                            "\ufe0f", "\u034f", "\u2060", "\u00e9", "\u0301", " ", "  ", "\uff4f", "\u0131"]
    bases = ["unknown", "José", "Alice", "Ian", "Coe"]
    outcomes = Counter()
    with Gallery(tmp_path / "n.db", card=CARD) as g:
        for k in range(N_NAMES):
            name = list(bases[k % len(bases)])
            for _ in range(int(rng.integers(0, 3))):
                i = int(rng.integers(len(name) + 1))
                if rng.random() < 0.5 and i < len(name):
                    name[i] = pool[rng.integers(len(pool))]
                else:
                    name.insert(i, pool[rng.integers(len(pool))])
            name = "".join(name)
            if rng.random() < 0.3:
                name = name.upper() if rng.random() < 0.5 else name.lower()
            try:
                g.add(name, np.eye(CARD.embedding_size)[k % CARD.embedding_size])
                outcomes["stored"] += 1
            except ValueError as exc:  # GalleryError is a ValueError
                assert str(exc)
                outcomes["refused"] += 1
        names = g.names()
    assert all(not invisible_characters(n) and unicodedata.normalize("NFC", n) == n for n in names), names
    assert not any(confusable(n, "unknown") for n in names), names
    clashes = [(a, b) for i, a in enumerate(names) for b in names[i + 1 :] if confusable(a, b)]
    assert not clashes, clashes
    print("fuzz names", dict(outcomes), names)
    assert sum(outcomes.values()) == N_NAMES and outcomes["stored"] >= 3 and outcomes["refused"] > 0, outcomes


def test_fuzz_gallery_files(tiny, tmp_path):
    rng = np.random.default_rng(SEED + 3)
    from tiny_bundle import CARD

    good = tmp_path / "good.db"
    with Gallery(good, card=CARD) as g:
        for i in range(20):
            v = rng.normal(size=CARD.embedding_size)
            g.add(f"person{i}", v / np.linalg.norm(v))
    g = Gallery(good, card=CARD)
    g.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    g.close()
    data = good.read_bytes()
    outcomes = Counter()
    for k in range(N_GALLERIES):
        path = tmp_path / f"g{k}.db"
        path.write_bytes(_mutate(data, rng))
        try:
            with Gallery(path, readonly=True) as h:
                names = h.names()
                h.search(np.ones(CARD.embedding_size, np.float32), top_k=3)
                outcomes["opened"] += 1
                assert all(isinstance(n, (str, type(None))) for n in names)
        except (GalleryError, ValueError) as exc:
            assert str(exc)
            outcomes["refused"] += 1
    print("fuzz galleries", dict(outcomes))
    assert sum(outcomes.values()) == N_GALLERIES and outcomes["refused"] > 0, outcomes


def _jpeg_mutate(data: bytes, rng) -> bytes:
    """Issue 37: mutations of a JPEG's structure: a frame claiming another size, the last scan
    repeated many times, or the generic byte mutations."""
    op = rng.integers(3)
    sof = max(data.find(b"\xff\xc0"), data.find(b"\xff\xc2"))
    if op == 0 and sof > 0:  # the frame claims another size (the data stays as it is)
        b = bytearray(data)
        for off in (sof + 5, sof + 7):
            b[off : off + 2] = int(rng.choice([0, 1, 300, 5000, 13000, 40000, 65535])).to_bytes(2, "big")
        return bytes(b)
    if op == 1:  # the last scan repeated: up to 400 more scans
        i, j = data.rfind(b"\xff\xda"), data.rfind(b"\xff\xd9")
        if 0 < i < j:
            return data[:j] + data[i:j] * int(rng.integers(5, 400)) + data[j:]
    return _mutate(data, rng)


def test_fuzz_jpeg_structure(tmp_path):
    from jpeg_bombs import baseline_jpeg, progressive_jpeg

    rng = np.random.default_rng(SEED + 4)
    arr = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    seeds = {"bomb-13000": progressive_jpeg(13000, 13000, dc_bytes=7000), "progressive": progressive_jpeg(200, 150, ac_scans=3),
             "baseline-flat": baseline_jpeg(160, 120), "grey-refine": progressive_jpeg(120, 100, ac_scans=4, grey=True, refine=True)}
    for prog in (True, False):
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, "JPEG", progressive=prog)
        seeds[f"pil-{prog}"] = buf.getvalue()
    outcomes = Counter()
    for k in range(N_JPEG):
        name = list(seeds)[k % len(seeds)]
        path = tmp_path / f"j{k}.jpg"
        path.write_bytes(_jpeg_mutate(seeds[name], rng) if k >= len(seeds) else seeds[name])
        outcome = _read_outcome(path)
        assert outcome != "decoded" or name != "bomb-13000" or k >= len(seeds)  # the bomb itself is never decoded
        outcomes[outcome] += 1
    print("fuzz jpeg", dict(outcomes))
    assert sum(outcomes.values()) == N_JPEG and outcomes["decoded"] > 0 and outcomes["huge"] > 0, outcomes


def test_fuzz_bundle_links(tiny, tmp_path):
    """Hashed files replaced by symlinks: a loop, a link out of the bundle, a link to another hashed
    file, a dangling link. Never loaded, never a traceback."""
    import os as _os

    rng = np.random.default_rng(SEED + 5)
    names = ["model.onnx", *sorted(read(tiny)["conformance"]["files"])]
    outcomes = Counter()
    for k in range(max(4, N_MANIFESTS // 10)):
        d = tmp_path / f"l{k}"
        shutil.copytree(tiny, d)
        name = names[rng.integers(len(names))]
        target = [Path(name).name, "/etc/hostname", "../" * 8 + "etc/hostname", "nowhere"][k % 4]
        (d / name).unlink()
        _os.symlink(target if k % 4 != 2 else _os.path.relpath(d / names[(names.index(name) + 1) % len(names)], (d / name).parent), d / name)
        try:
            load_bundle(d)
        except BundleError as exc:
            assert exc.kind in M.KINDS, exc
            outcomes[exc.kind] += 1
        else:
            outcomes["loaded"] += 1
    print("fuzz bundle links", dict(outcomes))
    assert outcomes["loaded"] == 0 and sum(outcomes.values()) >= 4, outcomes


@pytest.mark.shared
def test_fuzz_turned_faces(tiny, tmp_path, shared, yunet):
    """Real LFW-dev photos turned by 90°, 180° or 270° plus up to ±15° more, scaled and shifted at
    random: never a Face (reason "rotated", or no face found). Upright controls, with the same jitter,
    mostly pass (the check is not refusing everything)."""
    from edgeface.core.align import warp
    from edgeface.runtime.face import Face

    rng = np.random.default_rng(SEED + 6)
    root = shared / "datasets" / "lfw-dev" / "images"
    people = sorted(p for p in os.listdir(root))
    rec = FaceRecognizer.from_bundle(tiny, gallery=str(tmp_path / "g.db"), detector=yunet, gate=False)
    outcomes = Counter()
    for k in range(2 * N_TURNED):
        person = people[rng.integers(len(people))]
        img = read_image(sorted((root / person).iterdir())[0]).pixels
        turn = int(rng.integers(1, 4)) if k % 2 == 0 else 0
        ang, s = np.radians(rng.uniform(-15, 15)), rng.uniform(0.7, 1.3)
        c = np.array([125.0, 125.0]) + rng.uniform(-15, 15, 2)
        rot = s * np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
        m = np.hstack([rot, (np.array([125.0, 125.0]) - rot @ c)[:, None]])
        x = np.ascontiguousarray(np.rot90(warp(img, m, (250, 250)), turn))
        (r,) = rec.analyze([x])
        kind = "upright" if turn == 0 else "turned"
        outcomes[f"{kind}:{'face' if isinstance(r, Face) else r.reason}"] += 1
        if turn:
            assert not isinstance(r, Face), (person, turn)  # a turned face never reaches the embedder
    print("fuzz turned faces", dict(outcomes))
    assert outcomes["upright:face"] >= 0.7 * N_TURNED, outcomes
