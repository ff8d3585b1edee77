"""Quantization and compact templates of a face embedder (the third-party MobileFaceNet, or
--model), on LFW-dev.

    PYTHONPATH=. python benchmarks/compress_quantize.py     # writes benchmarks/results/compress_quantize.{json,md}
    PYTHONPATH=. python benchmarks/compress_quantize.py --model default   # ... compress_quantize_default.*

* model files: fp32 / fp16 / int8 ONNX (the export package's converters; int8 = NNCF PTQ,
  per-channel QDQ, calibrated on aligned CelebA-299 + AAF-8k faces), int8 in two variants:
  everything int8, and first conv + embedding projection kept float (what export does);
  file size, LFW-dev accuracy, mean cosine to the fp32 embeddings;
* templates (DeepID2+'s binarised features): the fp32 model's embeddings stored as
  float32 / fp16 / int8 / binary / binary256 / binary512 (runtime codecs), pair scores from
  the codes (codec.code_similarity; binary codecs: Hamming similarity 1 - 2h/bits), accuracy
  of each; plus other sign codes (centred, ITQ, Gaussian SimHash) for comparison;
* 1:N search: one query against N stored templates, float32 dot products vs binary Hamming
  (runtime codec's table popcount, and numpy's bitwise_count over 64-bit words), median time.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from compress_common import add_setup_args, setup  # noqa: E402
from edgeface.eval import faces
from edgeface.compress.quantize import FloatScope, compare_embeddings  # noqa: E402
from edgeface.export.converters import onnx_at_precision  # noqa: E402
from edgeface.runtime.model_file import ModelFile  # noqa: E402
from edgeface.compress.report import write_markdown_table  # noqa: E402
from edgeface.runtime.codecs import get_codec  # noqa: E402


def search_speed(dim: int, n: int, queries: int = 20, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    g = rng.standard_normal((n, dim)).astype(np.float32)
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    # A query is a stored template plus noise of norm ~0.6 (cosine ~0.85 to it, like a second photo
    # of an enrolled person), so top-1 agreement between float and binary search means something.
    q = (g[rng.choice(n, queries)] + (0.6 / np.sqrt(dim)) * rng.standard_normal((queries, dim))).astype(np.float32)  # float64 here would make every product cast g
    codec = get_codec("binary", dim)
    gb = codec.encode(g)
    qb = codec.encode(q)
    g64 = np.ascontiguousarray(gb).view(np.uint64)
    q64 = np.ascontiguousarray(qb).view(np.uint64)

    def timeit(fn):
        fn(0)
        ts = []
        for i in range(queries):
            t = time.perf_counter()
            fn(i)
            ts.append(time.perf_counter() - t)
        return 1e3 * float(np.median(ts))

    res = {"n": n, "dim": dim}
    res["float32_ms"] = timeit(lambda i: int(np.argmax(g @ q[i])))
    res["binary_codec_ms"] = timeit(lambda i: int(np.argmin(codec.hamming(qb[i : i + 1], gb)[0])))
    res["binary_bitcount_ms"] = timeit(lambda i: int(np.argmin(np.bitwise_count(g64 ^ q64[i]).sum(1, dtype=np.uint16))))
    top_f = [int(np.argmax(g @ q[i])) for i in range(queries)]
    top_b = [int(np.argmin(np.bitwise_count(g64 ^ q64[i]).sum(1))) for i in range(queries)]
    res["top1_agreement"] = float(np.mean(np.array(top_f) == np.array(top_b)))
    res["bytes_float32"], res["bytes_binary"] = int(g.nbytes), int(gb.nbytes)
    c512 = get_codec("binary512", dim)  # SimHash codes: 4x the bytes of plain sign bits
    g512 = np.ascontiguousarray(c512.encode(g)).view(np.uint64)
    q512 = np.ascontiguousarray(c512.encode(q)).view(np.uint64)
    res["binary512_bitcount_ms"] = timeit(lambda i: int(np.argmin(np.bitwise_count(g512 ^ q512[i]).sum(1, dtype=np.uint16))))
    top_512 = [int(np.argmin(np.bitwise_count(g512 ^ q512[i]).sum(1))) for i in range(queries)]
    res["binary512_top1_agreement"] = float(np.mean(np.array(top_f) == np.array(top_512)))
    res["bytes_binary512"] = int(g512.nbytes)
    return res


def search_in_clean_process(dim: int, n: int) -> dict:
    """search_speed in a fresh process with one BLAS thread and no model run in it, as an app's
    identify call runs: measured in this process (after torch and ONNX Runtime work) the
    float32 product can be slowed by thread pools other libraries left behind."""
    import os
    import subprocess

    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    code = f"import json, sys; sys.path.insert(0, {str(Path(__file__).resolve().parent)!r}); from compress_quantize import search_speed; print(json.dumps(search_speed({dim}, {n})))"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def itq_rotation(x: np.ndarray, iters: int = 50, seed: int = 0) -> np.ndarray:
    """Iterative quantization (Gong & Lazebnik 2011): the rotation R minimising ||sign(xR) - xR||."""
    r, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((x.shape[1], x.shape[1])))
    for _ in range(iters):
        u, _, vt = np.linalg.svd(x.T @ np.sign(x @ r))
        r = u @ vt
    return r


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calib", type=int, default=128, help="calibration faces (CelebA-299 + AAF-8k)")
    ap.add_argument("--gallery", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--skip-models", action="store_true", help="templates and search only (model rows of an earlier run are kept)")
    ap.add_argument("--no-search", action="store_true", help="keep the 1:N search timings of an earlier run (e.g. while the CPU is busy)")
    ap.add_argument("--emb32", help="with --skip-models: fp32 embeddings of the pairs' crops (.npy) saved by an earlier run, instead of recomputing")
    add_setup_args(ap, folds=2)
    args = ap.parse_args()
    st = setup(args, "compress_quantize")
    out, model, card, pairs = st.out, st.model, st.card, st.pairs
    res = st.load({})
    calib = faces.training_faces(card, 1000)[-args.calib :]  # the end of the pool: not the faces used for pruning statistics
    setup_now = {"model": card.name, "pairs": int(len(pairs.ia)), "folds": args.folds, "calibration_faces": int(len(calib)), "threads": args.threads}
    if not args.skip_models:
        res["setup"] = setup_now
    # Templates may be re-measured on more folds (--skip-models --folds 5) than the model rows.
    res["templates_setup"] = {k: setup_now[k] for k in ("model", "pairs", "folds")}
    tmp = Path(tempfile.mkdtemp(prefix="edgeface-quant-"))
    variants = {
        "fp32": lambda d: onnx_at_precision(model, card, "fp32", d),
        "fp16": lambda d: onnx_at_precision(model, card, "fp16", d),
        "int8 (all)": lambda d: onnx_at_precision(model, card, "int8", d, calib, float_scope=FloatScope.none()),
        "int8 (float first conv + head)": lambda d: onnx_at_precision(model, card, "int8", d, calib, float_scope=FloatScope()),
    }
    emb32 = None
    rows = res.setdefault("models", {})
    if args.emb32:
        emb32 = np.load(args.emb32, allow_pickle=False)
        if emb32.shape[0] != len(pairs.crops):
            raise ValueError(f"{args.emb32}: {emb32.shape[0]} embeddings for {len(pairs.crops)} crops")
    for i, (name, make) in enumerate(variants.items()):
        if args.skip_models and (name != "fp32" or emb32 is not None):
            continue
        t = time.time()
        path = make(tmp / ("fp32" if name == "fp32" else f"v{i}"))
        emb = ModelFile(path, card, args.threads).embed(pairs.crops)
        if name == "fp32":
            emb32 = emb
            np.save(tmp / "emb32.npy", emb)
        rep = pairs.report(emb)
        rows[name] = {"file_bytes": path.stat().st_size, "accuracy": rep["accuracy_mean"], "accuracy_std": rep["accuracy_std"], "auc": rep["auc"], "eer": rep["eer"],
                      **compare_embeddings(emb32, emb), "seconds": round(time.time() - t)}
        st.save(res)
        print(f"{name:32s} {path.stat().st_size / 1e6:6.2f} MB  acc {100 * rep['accuracy_mean']:.2f} %  cos {rows[name]['mean_cosine']:.4f}", flush=True)
    # Templates from the fp32 embeddings.
    tpl = res["templates"] = {}  # recomputed in full each run
    for cname in ("float32", "fp16", "int8", "binary", "binary256", "binary512"):
        codec = get_codec(cname, emb32.shape[1])
        codes = codec.encode(emb32)
        scores = codec.code_similarity(codes[pairs.ia], codes[pairs.ib])
        rep = pairs.score_report(scores)
        tpl[cname] = {"bytes": codec.bytes_per_template, "accuracy": rep["accuracy_mean"], "accuracy_std": rep["accuracy_std"], "auc": rep["auc"], "eer": rep["eer"]}
        print(f"template {cname:8s} {codec.bytes_per_template:4d} B  acc {100 * rep['accuracy_mean']:.2f} %", flush=True)
    # Other sign codes, measured for comparison (none is a runtime codec): centred on the mean
    # embedding of training faces; sign of Gaussian random projections (the textbook SimHash,
    # which binary256/512 replace by orthogonal Hadamard blocks); ITQ (Gong & Lazebnik's learned
    # rotation) fitted on the training faces' embeddings.
    fp32_file = tmp / "fp32" / "model.onnx"  # exported above unless --emb32 gave the embeddings
    if not fp32_file.is_file():
        fp32_file = onnx_at_precision(model, card, "fp32", tmp / "fp32")
    train = ModelFile(fp32_file, card, args.threads).embed(faces.training_faces(card, 1000))
    train /= np.linalg.norm(train, axis=1, keepdims=True)
    mean = train.mean(0)
    rng = np.random.default_rng(0)
    for name, bits, code in [("binary, centred on training mean", emb32.shape[1], lambda e: e - mean),
                             ("binary, ITQ rotation (training faces)", emb32.shape[1], lambda e: e @ itq_rotation(train)),
                             ("SimHash 256 bits (Gaussian)", 256, lambda e, g=rng.standard_normal((emb32.shape[1], 256)): e @ g),
                             ("SimHash 512 bits (Gaussian)", 512, lambda e, g=rng.standard_normal((emb32.shape[1], 512)): e @ g)]:
        b = np.where(code(emb32) >= 0, 1.0, -1.0)
        rep = pairs.score_report(np.sum(b[pairs.ia] * b[pairs.ib], axis=1) / bits)
        tpl[name] = {"bytes": bits // 8, "accuracy": rep["accuracy_mean"], "accuracy_std": rep["accuracy_std"], "auc": rep["auc"], "eer": rep["eer"]}
        print(f"template {name}: {bits // 8} B  acc {100 * rep['accuracy_mean']:.2f} %", flush=True)
    if not args.no_search or "search" not in res:
        res["search"] = [search_in_clean_process(emb32.shape[1], n) for n in args.gallery]
    for s in res["search"]:
        print(f"1:N n={s['n']}: float32 {s['float32_ms']:.2f} ms, binary (runtime codec) {s['binary_codec_ms']:.2f} ms, binary (bitwise_count) {s['binary_bitcount_ms']:.2f} ms, "
              f"binary512 (bitwise_count) {s.get('binary512_bitcount_ms', float('nan')):.2f} ms", flush=True)
    st.save(res)
    ref = rows.get("fp32")
    if not ref:
        print(json.dumps({k: res[k] for k in ("templates", "search")}, indent=1))
        return 0
    mtable = [[k, f"{v['file_bytes'] / 1e6:.2f}", f"{ref['file_bytes'] / v['file_bytes']:.2f}x", f"{100 * v['accuracy']:.2f} ± {100 * v['accuracy_std']:.2f}",
               f"{100 * (v['accuracy'] - ref['accuracy']):+.2f}", f"{v['mean_cosine']:.4f}", f"{v['min_cosine']:.4f}"] for k, v in rows.items()]
    ttable = [[k, v["bytes"], f"{100 * v['accuracy']:.2f} ± {100 * v['accuracy_std']:.2f}", f"{100 * (v['accuracy'] - tpl['float32']['accuracy']):+.2f}", f"{v['auc']:.4f}", f"{100 * v['eer']:.2f}"] for k, v in tpl.items()]
    stable = [[s["n"], f"{s['float32_ms']:.2f}", f"{s['binary_codec_ms']:.2f}", f"{s['binary_bitcount_ms']:.2f}", f"{s['float32_ms'] / s['binary_bitcount_ms']:.1f}x", f"{s['top1_agreement']:.2f}",
               f"{s.get('binary512_bitcount_ms', float('nan')):.2f}", f"{s.get('binary512_top1_agreement', float('nan')):.2f}",
               f"{s['bytes_float32'] / 1e6:.1f} / {s['bytes_binary'] / 1e6:.2f} / {s.get('bytes_binary512', 0) / 1e6:.2f}"] for s in res["search"]]
    md = out / f"{st.stem}.md"
    write_markdown_table(md, ["model", "MB", "smaller", "LFW-dev acc (%)", "Δ pt", "mean cos to fp32", "min cos"], mtable, preamble=f"Setup: {json.dumps(res['setup'])}\n\n### Model precision")
    text = md.read_text()
    write_markdown_table(md, ["template", "bytes", "LFW-dev acc (%)", "Δ pt", "AUC", "EER (%)"], ttable, preamble=text + f"\n### Templates (fp32 model; {json.dumps(res.get('templates_setup', res['setup']))})\n\n"
                        "`binary` is plain sign bits; `binary256` / `binary512` sign bits after a fixed rotation of orthogonal Hadamard blocks (runtime codecs); "
                        "the rows after them are other sign codes measured for comparison only.")
    text = md.read_text()
    write_markdown_table(md, ["gallery N", "float32 ms", "binary (runtime codec) ms", "binary (bitwise_count) ms", "speed-up", "top-1 agreement", "binary512 (bitwise_count) ms", "binary512 top-1 agreement", "MB float/binary/binary512"], stable, preamble=text + "\n### 1:N search, one query, 1 process")
    print(md.read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
