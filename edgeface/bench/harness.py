"""The benchmark: every target × thread count in a fresh process, plus parity and LFW-dev accuracy.

For each target (a bundle directory or a plain model file): file size, cold start (load + first
inference), latency p50/p90/p99 at batch 1 and throughput at a larger batch, with 1 thread and
with all threads, peak RSS — each measured by `edgeface.bench.probe` in its own subprocess, so
one model's memory and warm caches never colour another's — then, in this process, cosine
parity to the source model on real aligned faces and LFW-dev verification accuracy through the
target's own runtime (edgeface.eval.verification with the bundle as the embedder).
"""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..core.profiles import Profile, check_budgets

MODEL_SUFFIXES = (".onnx", ".xml", ".tflite")


@dataclass
class BenchItem:
    """One thing to measure: a bundle directory or a plain model file (not a row of the target table, edgeface.core.targets.Target)."""

    label: str
    path: Path
    card: str | None = None  # card JSON for a plain model file
    source: str | None = None  # the model it was exported from (parity reference)
    profile: Profile | None = None
    backend: str | None = None


@dataclass
class BenchSettings:
    threads: tuple[int, ...] = (1, 0)  # 0 = all usable cores
    batch: int = 1
    throughput_batch: int = 32
    min_time: float = 2.0
    max_time: float = 10.0
    min_reps: int = 30
    warmup: int = 5
    accuracy: bool = True
    data: str = ""  # a pairs dataset of the user's instead of the named benchmarks
    pairs: str | None = None
    benchmarks: tuple[str, ...] = ("lfw-dev",)  # edgeface.eval.benchmarks names, used when data is empty
    limit_folds: int | None = None
    parity_faces: int = 64
    show_progress: bool = True
    extra: dict = field(default_factory=dict)


def is_bundle_dir(path: Path) -> bool:
    """True for a directory holding an edgeface.json (a bundle), False for a plain model file."""
    return path.is_dir() and (path / "edgeface.json").is_file()


def classify(spec: str) -> str:
    """'bundle' (a directory), 'file' (.onnx/.xml/.tflite) or 'source' (a model to export first)."""
    p = Path(spec)
    if p.is_dir():
        if not is_bundle_dir(p):
            raise ValueError(f"{p}: a directory but not an edgeface bundle (no edgeface.json)")
        return "bundle"
    if p.suffix in MODEL_SUFFIXES:
        if not p.is_file():
            raise FileNotFoundError(f"{p}: no such model file")
        return "file"
    return "source"


def run_probe(target: BenchItem, threads: int, settings: BenchSettings, faces: str | None, reference: str | None, workdir: Path) -> dict:
    """`python -m edgeface.bench.probe` in a fresh process (this interpreter, this checkout)."""
    out = workdir / f"probe-{target.label}-t{threads}.json"
    cmd = [sys.executable, "-m", "edgeface.bench.probe", str(target.path), "--out", str(out), "--threads", str(threads),
           "--batch", str(settings.batch), "--throughput-batch", str(settings.throughput_batch), "--min-time", str(settings.min_time),
           "--max-time", str(settings.max_time), "--min-reps", str(settings.min_reps), "--warmup", str(settings.warmup)]
    if target.card:
        cmd += ["--card", target.card]
    if target.backend:
        cmd += ["--backend", target.backend]
    if faces:
        cmd += ["--faces", faces]
    if reference:
        cmd += ["--reference", reference]
    env = dict(os.environ)
    checkout = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join([checkout] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=max(600, 20 * settings.max_time))
    if proc.returncode != 0:
        raise RuntimeError(f"probe of {target.path} with {threads} thread(s) failed (exit {proc.returncode}): {proc.stderr.strip()[-1500:]}")
    return json.loads(out.read_text())


class FaceData:
    """One pairs set of the bench, detected once and aligned once per card (eval.verification.PairSet), shared by all targets."""

    def __init__(self, name: str, title: str, pairs: list, show_progress: bool = True):
        if not pairs:
            raise ValueError(f"{title}: no pairs to evaluate")
        self.name, self.title, self.pairs = name, title, pairs
        self.show_progress = show_progress
        self._sets: dict[tuple, object] = {}
        self._identity: dict | None = None

    @property
    def identity(self) -> dict:
        """edgeface.eval.datasets.dataset_identity of these pairs (hashing the images once, on demand)."""
        from ..eval.datasets import dataset_identity

        if self._identity is None:
            self._identity = dataset_identity(self.pairs)
        return self._identity

    def pair_set(self, card):
        """The PairSet of these pairs aligned for `card`'s template and input size."""
        from ..eval.verification import PairSet

        key = (tuple(card.input_size), card.template)
        if key not in self._sets:
            self._sets[key] = PairSet.load(self.pairs, card, show_progress=self.show_progress)
        return self._sets[key]

    def accuracy(self, embedder) -> dict:
        """The verification report of `embedder` on these pairs."""
        return self.pair_set(embedder.card).evaluate(embedder, show_progress=self.show_progress)

    def parity_faces(self, card, n: int) -> np.ndarray:
        ps = self.pair_set(card)
        return np.ascontiguousarray(ps.crops[ps.usable][:n])


def face_data_sets(settings: BenchSettings) -> list[FaceData]:
    """The pairs sets accuracy is measured on: the user's --data, or the named benchmarks."""
    from ..eval import benchmarks
    from ..eval.datasets import first_folds, load_pairs

    if settings.data:
        pairs = first_folds(load_pairs(settings.data, settings.pairs), settings.limit_folds)
        title = Path(settings.pairs).name if settings.pairs else Path(settings.data).name
        return [FaceData("data", title, pairs, settings.show_progress)]
    return [FaceData(b.name, b.title, b.pairs(settings.limit_folds), settings.show_progress) for b in map(benchmarks.get, settings.benchmarks)]


REUSED = "reused: export verification, same dataset identity"
MEASURED = "measured"


def verified_accuracy(path: str | os.PathLike, identity: dict) -> dict | None:
    """A report the bundle's export verification measured through the bundle's own runtime
    on provably the same data (same protocol: edgeface.eval.verification), so that a bench right after
    an export does not embed the pairs a second time.

    Provably the same: a verification record (parity.<benchmark>) whose dataset identity
    (edgeface.eval.datasets.dataset_identity: the exact pair list and the sha256 of every image) equals
    `identity`. A record without one (bundles exported before identities were recorded), a
    changed model file (sha256 in edgeface.json), or any other data: None, measure."""
    from ..runtime.bundle import BundleError, check_files, read_meta

    p = Path(path)
    bundle = p if p.is_dir() else p.parent
    want = (identity["pairs_sha256"], identity["images_sha256"])
    try:
        meta = read_meta(bundle, validate=False)
        if not meta["files"]:
            return None
        records = [r for r in meta["parity"].values() if isinstance(r, dict) and isinstance(r.get("dataset"), dict)]
        rep = next((r for r in records if (r["dataset"].get("pairs_sha256"), r["dataset"].get("images_sha256")) == want), None)
        if rep is None:
            return None
        check_files(bundle, meta)  # the load-time hash check: a changed file was not the one verified
    except (FileNotFoundError, BundleError, KeyError, TypeError, AttributeError):
        return None
    return dict(rep, accuracy_source=REUSED)


def accuracy_entry(title: str, rep: dict) -> dict:
    """One benchmark's cell in a bench row: the figures shown, and whether they were measured."""
    return {"title": title, "accuracy": rep["accuracy_mean"], "accuracy_std": rep["accuracy_std"], "auc": rep["auc"], "eer": rep["eer"],
            "tar_at_far_1e-3": rep.get("tar_at_far", {}).get("1e-3"), "pairs": rep["num_pairs"], "folds": rep["num_folds"],
            "num_failed": rep["num_failed"], "accuracy_source": rep.get("accuracy_source", MEASURED)}


def summarize_target(target: BenchItem, probes: dict[int, dict], accuracy: dict[str, dict] | None, settings: BenchSettings) -> dict:
    """accuracy: {benchmark name: accuracy_entry}; the first one fills the row's accuracy columns
    (the profile's accuracy floor and the plot's default panel)."""
    one = probes.get(1)
    all_t = [t for t in probes if t != 1]
    many = probes[all_t[0]] if all_t else None
    first = one or many
    row = {
        "target": target.label,
        "path": str(target.path),
        "model": first["name"],
        "format": first.get("format"),
        "precision": first.get("precision"),
        "backend": first["backend"],
        "file_size_mb": first["file_size_bytes"] / 2**20,
        "cold_start_s": min(p["cold_start_s"] for p in probes.values()),
        "peak_rss_mb": max(p["peak_rss_mb"] for p in probes.values()),
        "threads_all": many["threads"] if many else None,
        "latency_batch": settings.batch,
        "throughput_batch": settings.throughput_batch,
    }
    for tag, p in (("1t", one), ("all", many)):
        if p is None:
            continue
        lat = p["latency_ms"]
        row.update({f"latency_p50_ms_{tag}": lat["p50"], f"latency_p90_ms_{tag}": lat["p90"], f"latency_p99_ms_{tag}": lat["p99"],
                    f"latency_iqr_ms_{tag}": lat["iqr"], f"latency_min_ms_{tag}": lat["min"], f"latency_max_ms_{tag}": lat["max"], f"latency_n_{tag}": lat["n"],
                    f"latency_cpu_p50_ms_{tag}": lat.get("cpu_p50")})
        if "throughput" in p:
            row[f"throughput_ips_{tag}"] = p["throughput"]["images_per_s"]
            row[f"throughput_ips_iqr_{tag}"] = p["throughput"]["images_per_s_iqr"]
    parity = next((p["parity"] for p in probes.values() if "parity" in p), None)
    if parity:
        row.update(parity_cos_min=parity["cos_min"], parity_cos_mean=parity["cos_mean"], parity_n=parity["n"])
    if accuracy:
        first_acc = next(iter(accuracy.values()))
        row.update({k: first_acc[k] for k in ("accuracy", "accuracy_std", "auc", "eer", "pairs", "folds", "num_failed", "accuracy_source")})
        row["benchmarks"] = accuracy
    if target.profile is not None:
        prof = target.profile
        t_prof = prof.threads
        p = probes.get(t_prof) or (probes.get(1) if t_prof == 1 else many)
        measured = {"latency_ms": p["latency_ms"]["p50"] if p else None, "memory_mb": row["peak_rss_mb"], "size_mb": row["file_size_mb"], "accuracy": row.get("accuracy")}
        checks = check_budgets(prof, measured)
        row["profile"] = prof.name
        row["budgets"] = checks
        verdicts = [c["pass"] for c in checks.values()]
        row["pass"] = False if False in verdicts else (None if None in verdicts else True)
    return row


def run_bench(targets: list[BenchItem], settings: BenchSettings, workdir: str | os.PathLike | None = None, log=print,
              embed_source: Callable[[str, np.ndarray], np.ndarray] | None = None) -> dict:
    """Measure every target; returns {'machine', 'settings', 'rows', 'probes', 'errors'}.

    embed_source(source, faces) gives the source model's embeddings of the parity faces for a
    target that names its source; the caller supplies it (it loads a torch model, which the
    bench layer never imports). Without it, a target with a source is an error."""
    from .adapters import open_model
    from .machine import describe

    workdir = Path(workdir or tempfile.mkdtemp(prefix="edgeface-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    need_faces = settings.accuracy or any(t.source for t in targets)
    face_sets = face_data_sets(settings) if settings.accuracy else ([face_data_sets(dataclasses.replace(settings, benchmarks=settings.benchmarks[:1]))[0]] if need_faces else [])
    face_data = face_sets[0] if face_sets else None  # parity faces come from the first set
    started = time.time()
    rows, probes_out, errors = [], {}, []
    reference_cache: dict[tuple, tuple[str, str]] = {}
    for i, target in enumerate(targets, 1):
        log(f"[{i}/{len(targets)}] {target.label}: {target.path}")
        try:
            card = open_model(target.path, backend=target.backend, threads=1, card=target.card).card
            faces_file = ref_file = None
            if face_data is not None:
                key = (target.source, tuple(card.input_size), card.template)
                if key not in reference_cache:
                    faces = face_data.parity_faces(card, settings.parity_faces)
                    faces_file = workdir / f"faces-{len(reference_cache)}.npy"
                    np.save(faces_file, faces, allow_pickle=False)
                    ref_path = None
                    if target.source:
                        if embed_source is None:
                            raise ValueError(f"{target.label}: source {target.source!r} given but no embed_source to compute its parity reference")
                        ref_path = workdir / f"reference-{len(reference_cache)}.npy"
                        np.save(ref_path, embed_source(target.source, faces), allow_pickle=False)
                    reference_cache[key] = (str(faces_file), str(ref_path) if ref_path else None)
                faces_file, ref_file = reference_cache[key]
            threads = list(dict.fromkeys(settings.threads + ((target.profile.threads,) if target.profile else ())))
            probes = {}
            for t in threads:
                log(f"  {target.label}: probe with {t or 'all'} thread(s)")
                probes[t] = run_probe(target, t, settings, faces_file, ref_file, workdir)
            accuracy = None
            if settings.accuracy:
                accuracy = {}
                for fd in face_sets:
                    rep = verified_accuracy(target.path, fd.identity)
                    if rep is not None:
                        log(f"  {target.label}: {fd.title} accuracy reused from the bundle's export verification (same pairs and images: dataset identity)")
                    else:
                        log(f"  {target.label}: {fd.title} accuracy: measuring {len(fd.pairs)} pairs")
                        rep = dict(fd.accuracy(open_model(target.path, backend=target.backend, threads=0, card=target.card)), accuracy_source=MEASURED)
                    accuracy[fd.name] = accuracy_entry(fd.title, rep)
            rows.append(summarize_target(target, probes, accuracy, settings))
            probes_out[target.label] = {str(t): p for t, p in probes.items()}
        except Exception as exc:  # one broken target must not lose the others' numbers
            errors.append({"target": target.label, "path": str(target.path), "error": f"{type(exc).__name__}: {exc}"})
            log(f"  {target.label}: FAILED: {exc}")
    machine = describe()
    return {
        "machine": machine,
        "settings": {k: v for k, v in settings.__dict__.items() if k != "show_progress"},
        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "wall_s": time.time() - started,
        "rows": rows,
        "errors": errors,
        "probes": probes_out,
    }
