"""Training throughput on this CPU: faces per CPU-second of one training step (forward +
backward + AdamW step) for MobileFaceNet and MobileNet-0.5, before -> after each change the
loop makes, and what the data side costs per batch.

    nice -n 10 python benchmarks/train_throughput.py --batch 32 --repeats 2 --steps 2 --warmup 1 \
        --out benchmarks/results/train_throughput.json

Variants (cumulative): plain (NCHW, nn.PReLU, fp32) -> channels_last -> + PReLU as
relu(x) - a*relu(-x) (the loop's CPU form); + bf16 autocast only where the CPU has
AVX512-BF16 or AMX (or with --bf16), its accuracy cost always reported as the cosine between
fp32 and bf16 embeddings. Data: a JPEG decode + alignment warp per face (what a loader
without the face cache does) vs. indexing the uint8 face cache + the on-device augmentation
per batch, and the best variant's step with that data work in series.

The machine is shared with other jobs, so steps are timed in process CPU time with one torch
thread (faces per CPU-second: what one free core would do), each figure the median of
`--repeats` short runs (min and max kept). Moving the data work to a background thread is
not measured: it only pays with a spare core, and this shared machine has none to measure it.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ARCHS = {"mobilenet0.5": "mobilenet_v1_a0.5_r112", "mobilefacenet": "mobilefacenet"}


def cpu_flags() -> dict:
    flags = set()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    model = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), platform.processor()) if os.path.exists("/proc/cpuinfo") else platform.processor()
    return {"model": model, "avx2": "avx2" in flags, "avx512f": "avx512f" in flags, "avx512_bf16": "avx512_bf16" in flags, "amx_bf16": "amx_bf16" in flags, "cores": os.cpu_count()}


def build(arch: str, channels_last: bool, decompose: bool):
    from edgeface import models
    from edgeface.train.loop import decompose_prelu

    card = models.get(arch).card
    m = models.build_from_card(card).train()
    if decompose:
        decompose_prelu(m)
    if channels_last:
        m = m.to(memory_format=torch.channels_last)
    return m, card


def time_steps(model, card, batch: int, steps: int, warmup: int, channels_last: bool, bf16: bool, prep=None) -> float:
    """CPU seconds of this process per training step (median of `steps` after `warmup`).

    Process CPU time, not wall time: on a machine shared with other jobs, wall time mostly
    measures the neighbours; with one torch thread the CPU time is what a free core needs."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randn(batch, 3, *card.input_size)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    times = []
    for i in range(warmup + steps):
        t0 = time.process_time()
        if prep is not None:
            prep()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            e = model(x)
        loss = F.normalize(e.float(), dim=1)[: batch // 2].mul(F.normalize(e.float(), dim=1)[batch // 2 :]).sum(1).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i >= warmup:
            times.append(time.process_time() - t0)
    return statistics.median(times)


def bf16_cosine(arch: str, faces: torch.Tensor) -> float:
    """Mean cosine between fp32 and bf16-autocast embeddings of the same (eval-mode) net."""
    from edgeface import models
    from edgeface.train.loop import to_model_input

    card = models.get(arch).card
    torch.manual_seed(0)
    m = models.build_from_card(card).eval()
    x = to_model_input(faces, card)
    with torch.no_grad():
        a = F.normalize(m(x), dim=1)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            b = F.normalize(m(x).float(), dim=1)
    return float((a * b).sum(1).mean())


def real_faces(n: int) -> tuple[np.ndarray, list[str], np.ndarray]:
    """n aligned LFW-dev extra-identity faces via the training cache (detect + align once)."""
    from edgeface.train.data import align_items, list_source

    items = list_source("lfw-extra")[:n]
    s = align_items(items, "throughput-bench", show_progress=False)
    return s.crops, s.paths, s.landmarks


def jpeg_align_cost(paths, landmarks, reps: int) -> float:
    """Seconds per face to decode the JPEG and warp it onto the template (landmarks known)."""
    from edgeface.core.align import align_face
    from edgeface.core.imageio import read_image

    t = []
    for _ in range(reps):
        t0 = time.process_time()
        for p, lm in zip(paths, landmarks):
            align_face(read_image(p).pixels, lm, "arcface_112x112", (112, 112))
        t.append((time.process_time() - t0) / len(paths))
    return statistics.median(t)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="benchmarks/results/train_throughput.json")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--bf16", action="store_true", help="time bf16 autocast even without AVX512-BF16/AMX (emulated: slower)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1: CPU time per step is then what one free core needs)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from edgeface.train.loop import FaceAugment, crops_to_tensor

    variants = [
        ("plain", dict(channels_last=False, decompose=False, bf16=False)),
        ("channels_last", dict(channels_last=True, decompose=False, bf16=False)),
        ("channels_last+prelu_decomposed", dict(channels_last=True, decompose=True, bf16=False)),
    ]
    flags = cpu_flags()
    if flags["avx512_bf16"] or flags["amx_bf16"] or args.bf16:
        variants.append(("channels_last+prelu_decomposed+bf16", dict(channels_last=True, decompose=True, bf16=True)))
    crops, paths, lms = real_faces(256)
    faces_t = crops_to_tensor(crops, "cpu")
    aug = FaceAugment()
    g = torch.Generator().manual_seed(0)

    def prep_batch():
        idx = torch.randint(0, len(faces_t), (args.batch,), generator=g)
        return aug(faces_t[idx].float(), g)

    result = {
        "machine": {**flags, "torch": torch.__version__, "threads": torch.get_num_threads(), "load_average_at_start": os.getloadavg()},
        "unit": "faces per CPU-second (1 torch thread)", "batch": args.batch, "steps": args.steps, "warmup": args.warmup, "repeats": args.repeats,
        "note": "a machine shared with other jobs (its load average at the start is under machine): steps timed in process CPU time, 1 torch thread, medians of short repeats; 'faces_per_s' = faces per CPU-second.",
        "models": {},
    }
    for label, arch in ARCHS.items():
        rows = {}
        for name, v in variants:
            runs = []
            for _ in range(args.repeats):
                m, card = build(arch, v["channels_last"], v["decompose"])
                runs.append(args.batch / time_steps(m, card, args.batch, args.steps, args.warmup, v["channels_last"], v["bf16"]))
            rows[name] = {"faces_per_s": statistics.median(runs), "min": min(runs), "max": max(runs)}
            print(f"{label:14s} {name:38s} {rows[name]['faces_per_s']:7.1f} faces/s  ({min(runs):.1f}-{max(runs):.1f})", flush=True)
        # The data side with the best variant, in series with the step (cache indexing + augmentation).
        m, card = build(arch, channels_last=True, decompose=True)
        rows["with_cache_and_augment_in_series"] = {"faces_per_s": args.batch / time_steps(m, card, args.batch, args.steps, args.warmup, True, False, prep=prep_batch)}
        rows["bf16_vs_fp32_embedding_cosine"] = bf16_cosine(arch, faces_t[:64].float())
        result["models"][label] = {"arch": arch, **rows}
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2))  # partial results survive an interruption
    t0 = time.process_time()
    reps = 3
    for _ in range(reps):
        prep_batch()
    result["data"] = {
        "jpeg_decode_and_align_ms_per_face": 1000 * jpeg_align_cost(paths[:64], lms[:64], 3),
        "cache_index_and_augment_ms_per_batch": 1000 * (time.process_time() - t0) / reps,
    }
    result["data"]["jpeg_decode_and_align_ms_per_batch"] = result["data"]["jpeg_decode_and_align_ms_per_face"] * args.batch
    print(json.dumps(result["data"], indent=1))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
