"""Measure one model in this process: cold start, latency, throughput, peak memory, parity.

`python -m edgeface.bench.probe MODEL --out result.json` is what the benchmark harness runs in a
fresh subprocess for every target and thread count (so cold start and peak RSS belong to that
model alone), and what a device runner runs on the device (ssh/adb) after deploying the runtime.
It imports numpy, the edgeface runtime and one inference library — never torch.

Timing rule: warm up (at least `warmup` calls and `warmup_time` s), then repeat until at least
`min_reps` calls and `min_time` s have been timed (or `max_time` s have passed); report
percentiles and the spread (IQR, min/max), never a single run.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

from ..core.timing import time_calls


def rss_mb() -> float | None:
    """Current resident set size (Linux /proc), in MiB."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return None


def peak_rss_mb() -> float:
    """Peak resident set size of this process, in MiB.

    Linux: VmHWM from /proc/self/status — the high-water mark of this process's own memory map.
    Not getrusage's ru_maxrss there: Linux carries ru_maxrss across execve, so a probe started by a
    big parent (the harness holds torch and thousands of face crops) would report the parent's peak.
    """
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB elsewhere


def load_faces(path: str | None, card, count: int = 64, seed: int = 0) -> tuple[np.ndarray, str]:
    """Aligned uint8 crops from an .npy file (no pickle), or seeded random pixels for timing only."""
    h, w = card.input_size
    if path:
        faces = np.load(path, allow_pickle=False)
        if faces.ndim != 4 or faces.shape[1:] != (h, w, 3) or faces.dtype != np.uint8:
            raise ValueError(f"{path}: expected aligned faces (N, {h}, {w}, 3) uint8 for model {card.name!r}, got {faces.shape} {faces.dtype}")
        return faces, "file"
    return np.random.default_rng(seed).integers(0, 256, (count, h, w, 3), dtype=np.uint8), "random"


def batch_of(faces: np.ndarray, n: int) -> np.ndarray:
    """Exactly `n` faces from `faces` (repeated as needed), as one C-contiguous batch."""
    reps = -(-n // len(faces))
    return np.ascontiguousarray(np.concatenate([faces] * reps)[:n])


def probe(model_path: str, threads: int = 0, backend: str | None = None, card: str | None = None, faces_path: str | None = None,
          reference_path: str | None = None, batch: int = 1, throughput_batch: int = 32, timing: dict | None = None,
          describe_machine: bool = True, timed: bool = True) -> dict:
    """Measure one model in this process: load and first-inference time, latency at `batch`, throughput at
    `throughput_batch` (images/s), file size, peak RSS and, with `reference_path`, cosine parity to reference embeddings
    of the same `faces_path` faces. Returns the JSON-ready result dict; raises ValueError when the reference does not match.
    timed=False (an emulated device, whose clock says nothing about the real one): no load, latency or throughput
    figures at all, only what the model computes (parity, embedding size) and its size and memory."""
    from .adapters import model_size_bytes, open_model, resolve_threads

    timing = timing or {}
    rss_before = rss_mb()
    t0 = time.perf_counter()
    model = open_model(model_path, backend=backend, threads=threads, card=card)
    t1 = time.perf_counter()
    faces, faces_source = load_faces(faces_path, model.card)
    first = model.embed(faces[:batch])
    t2 = time.perf_counter()
    meta = getattr(model, "meta", {}) or {}
    result = {
        "model": str(model_path),
        "name": model.card.name,
        "backend": model.backend,
        "format": meta.get("format"),
        "precision": meta.get("precision"),
        "threads": resolve_threads(threads),
        "file_size_bytes": model_size_bytes(model),
        "rss_before_load_mb": rss_before,
        "embedding_size": int(first.shape[1]),
        "faces": faces_source,
        "timed": timed,
    }
    if timed:
        result.update({"load_s": t1 - t0, "first_inference_s": t2 - t1, "cold_start_s": t2 - t0})
    else:
        throughput_batch = 0
    one = batch_of(faces, batch)
    if timed:
        result["latency_ms"] = time_calls(lambda: model.embed(one), **timing)
        result["latency_batch"] = batch
    if throughput_batch and throughput_batch > 1:
        many = batch_of(faces, throughput_batch)
        stats = time_calls(lambda: model.embed(many), **timing)
        result["throughput"] = {
            "batch": throughput_batch,
            "batch_ms": stats,
            "images_per_s": throughput_batch / (stats["p50"] / 1e3),
            "images_per_s_iqr": [throughput_batch / (stats["p75"] / 1e3), throughput_batch / (stats["p25"] / 1e3)],
        }
    if reference_path:
        ref = np.load(reference_path, allow_pickle=False).astype(np.float32)
        if faces_path is None or len(ref) != len(faces):
            raise ValueError(f"{reference_path}: reference embeddings need the faces they were computed from (--faces) with one row per face; got {len(ref)} rows for {len(faces)} faces")
        emb = np.concatenate([model.embed(faces[i : i + 32]) for i in range(0, len(faces), 32)])
        if emb.shape != ref.shape:
            raise ValueError(f"{reference_path}: reference embeddings have shape {ref.shape}, the model gives {emb.shape}")
        ref = ref / np.maximum(np.linalg.norm(ref, axis=1, keepdims=True), 1e-10)
        cos = np.sum(emb * ref, axis=1)
        result["parity"] = {"n": int(len(cos)), "cos_min": float(cos.min()), "cos_mean": float(cos.mean())}
    result["peak_rss_mb"] = peak_rss_mb()
    if describe_machine:
        from .machine import describe

        result["machine"] = describe()
    return result


def main(argv: list[str] | None = None) -> int:
    """Command line of `python -m edgeface.bench.probe`: print or write the probe's JSON; returns the exit code (1 on a bad model or input)."""
    ap = argparse.ArgumentParser(prog="python -m edgeface.bench.probe", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", help="bundle directory or model file (.onnx, .xml, .tflite)")
    ap.add_argument("--out", help="write the JSON result here (default: stdout)")
    ap.add_argument("--threads", type=int, default=0, help="inference threads (0 = all usable cores)")
    ap.add_argument("--backend", help="backend override for a bundle")
    ap.add_argument("--card", help="model card JSON for a plain model file")
    ap.add_argument("--faces", help="aligned faces .npy (N,H,W,3) uint8; default random pixels (timing only)")
    ap.add_argument("--reference", help="source-model embeddings .npy for --faces: report cosine parity")
    ap.add_argument("--batch", type=int, default=1, help="latency batch (default 1)")
    ap.add_argument("--throughput-batch", type=int, default=32, help="throughput batch (default 32; 0 = skip)")
    ap.add_argument("--min-time", type=float, default=2.0, help="seconds of timed calls per measurement, at least")
    ap.add_argument("--max-time", type=float, default=10.0, help="seconds per measurement, at most")
    ap.add_argument("--min-reps", type=int, default=30, help="timed calls per measurement, at least")
    ap.add_argument("--warmup", type=int, default=5, help="warm-up calls, at least")
    ap.add_argument("--no-timing", action="store_true", help="measure no time at all (an emulated device): parity, size and memory only")
    args = ap.parse_args(argv)
    timing = {"warmup": args.warmup, "min_reps": args.min_reps, "min_time": args.min_time, "max_time": max(args.max_time, args.min_time)}
    try:
        result = probe(args.model, args.threads, args.backend, args.card, args.faces, args.reference, args.batch, args.throughput_batch, timing, timed=not args.no_timing)
    except (ValueError, FileNotFoundError, KeyError) as exc:
        print(f"edgeface probe: error: {exc}", file=sys.stderr)
        return 1
    text = json.dumps(result, indent=2, sort_keys=True)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
