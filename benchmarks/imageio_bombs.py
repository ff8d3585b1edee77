"""Issue 37: what hostile JPEG files cost a verify. Each file goes through `edgeface verify` in its
own process (the user's path: CLI -> read_image -> detector -> gate -> embed); the peak RSS and the
CPU seconds (user + system) of that process come from wait4. The files are written by
tests/jpeg_bombs.py: the issue's 7 KB progressive 13000x13000 file (4:2:0 and 4:4:4), a 1 MB-class
file of 800 refinement scans, files just inside the limits of edgeface.core.imageio
(MAX_JPEG_COEF_BYTES, MAX_JPEG_SCAN_BLOCKS, MAX_JPEG_SCANS), a truncated baseline claiming
13300x13300, and a real LFW photo for comparison.

    PYTHONPATH=. python benchmarks/imageio_bombs.py --bundle BUNDLE [--out benchmarks/results/imageio_bombs.json]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))


def files(work: Path) -> dict[str, Path]:
    from jpeg_bombs import baseline_jpeg, progressive_jpeg

    from edgeface.core import paths

    made = {
        "issue bomb: progressive 13000x13000 4:2:0, 7 KB": progressive_jpeg(13000, 13000, dc_bytes=7000),
        "issue bomb: progressive 13000x13000 grey, 7 KB": progressive_jpeg(13000, 13000, dc_bytes=7000, grey=True),
        "800 refinement scans of 4000x4000 4:2:0": progressive_jpeg(4000, 4000, ac_scans=800, refine=True),
        "largest coefficient buffer allowed, 33 refinement scan sets (4:2:0)": None,
        "truncated baseline 13300x13300 4:2:0, 7 KB": baseline_jpeg(13300, 13300, data_bytes=7000),
    }
    from edgeface.core.imageio import MAX_JPEG_COEF_BYTES, MAX_JPEG_SCAN_BLOCKS, MAX_JPEG_SCANS

    grey = int((MAX_JPEG_SCAN_BLOCKS / MAX_JPEG_SCANS) ** 0.5) * 8 - 8  # 100 scans of one component just under the block-scan limit
    made[f"{MAX_JPEG_SCANS} refinement scans of {grey}x{grey} grey (at the scan-block limit)"] = progressive_jpeg(
        grey, grey, ac_scans=MAX_JPEG_SCANS - 1, grey=True, refine=True)
    side = int(((MAX_JPEG_COEF_BYTES / 128) / 1.5) ** 0.5 * 8) // 16 * 16  # 4:2:0: 1.5 blocks per 64 pixels
    made["largest coefficient buffer allowed, 33 refinement scan sets (4:2:0)"] = progressive_jpeg(side, side, ac_scans=33, refine=True)
    import io

    import numpy as np
    from PIL import Image

    noise = np.random.default_rng(0).integers(0, 256, (1200, 1500, 3), dtype=np.uint8)  # incompressible: every scan full of data
    buf = io.BytesIO()
    Image.fromarray(noise).save(buf, "JPEG", quality=80, progressive=True)
    made[f"real progressive JPEG of noise 1500x1200, {len(buf.getvalue()) / 2**20:.1f} MB"] = buf.getvalue()
    out = {}
    for i, (name, data) in enumerate(made.items()):
        p = work / f"f{i}.jpg"
        p.write_bytes(data)
        out[name] = p
    out["LFW photo (250x250 baseline)"] = paths.lfw_dev() / "images" / "Hugo_Chavez" / "Hugo_Chavez_0001.jpg"
    return out


CODE = ROOT  # the edgeface tree the verify processes run (--code: e.g. a checkout from before the fix)


def run(cmd: list[str]) -> dict:
    env = dict(os.environ, PYTHONPATH=str(CODE))
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=CODE)
    out, err = p.communicate()
    return {"rc": p.returncode, "stdout": out.decode(errors="replace"), "stderr": err.decode(errors="replace")}


def measure(cmd: list[str]) -> dict:
    """Run cmd; its peak RSS and CPU from wait4 (the child's own rusage, not the children's sum)."""
    env = dict(os.environ, PYTHONPATH=str(CODE))
    with tempfile.TemporaryFile() as fo, tempfile.TemporaryFile() as fe:
        p = subprocess.Popen(cmd, stdout=fo, stderr=fe, env=env, cwd=CODE)
        _, status, ru = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        fo.seek(0)
        fe.seek(0)
        out, err = fo.read().decode(errors="replace"), fe.read().decode(errors="replace")
    return {"rc": p.returncode, "peak_rss_mb": round(ru.ru_maxrss / 1024, 1), "cpu_s": round(ru.ru_utime + ru.ru_stime, 3),
            "out": (out.strip() or err.strip().splitlines()[-1] if (out.strip() or err.strip()) else "")[:400]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", required=True)
    ap.add_argument("--detector", default=None, help="YuNet ONNX (default: ../shared's)")
    ap.add_argument("--code", default=str(ROOT), help="edgeface source tree the verify processes import (default this checkout)")
    ap.add_argument("--out", default="benchmarks/results/imageio_bombs.json")
    args = ap.parse_args(argv)
    global CODE
    CODE = Path(args.code).resolve()
    from edgeface.core import paths

    det = args.detector or str(paths.yunet_model())
    py = [sys.executable, "-m", "edgeface"]
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        g = str(work / "g.db")
        enrol = run(py + ["enroll", "hugo", str(paths.lfw_dev() / "images" / "Hugo_Chavez" / "Hugo_Chavez_0002.jpg"), "--bundle", args.bundle,
                          "--gallery", g, "--detector", det])
        assert enrol["rc"] == 0, enrol
        for name, f in files(work).items():
            r = measure(py + ["verify", str(f), "hugo", "--bundle", args.bundle, "--gallery", g, "--detector", det, "--json"])
            r["file_bytes"] = f.stat().st_size
            rows[name] = r
            print(f"{name:70s} {r['file_bytes']:>9,} B  rc {r['rc']}  peak RSS {r['peak_rss_mb']:7.1f} MB  CPU {r['cpu_s']:6.2f} s", flush=True)
    res = {"bundle": args.bundle, "code": str(CODE), "command": "edgeface verify FILE hugo --json (one process per file)", "files": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
