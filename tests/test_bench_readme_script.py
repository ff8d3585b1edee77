"""benchmarks/bench_targets.py rewrites only its own README block."""
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def load_script():
    spec = importlib.util.spec_from_file_location("bench_targets", ROOT / "benchmarks" / "bench_targets.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_readme_block_is_replaced_in_place(tmp_path, monkeypatch):
    mod = load_script()
    monkeypatch.setattr(mod, "ROOT", tmp_path)
    (tmp_path / "README.md").write_text(f"# title\nbefore\n{mod.START}\nold numbers\n{mod.END}\nafter\n")
    result = {"started_utc": "2026-01-01T00:00:00Z", "settings": {"batch": 1, "min_reps": 30, "min_time": 2.0, "throughput_batch": 32},
              "rows": [{"folds": 5}], "machine": {"load_average": [9.0, 8, 7], "usable_cores": 2}, "errors": [{"target": "tensorrt-fp16", "error": "no GPU\ndetails"}]}
    block = mod.readme_block(result, "| a | b |", tmp_path / "benchmarks" / "results" / "targets.png", "edgeface bench x")
    mod.update_readme(block)
    text = (tmp_path / "README.md").read_text()
    assert "old numbers" not in text and "| a | b |" in text and text.startswith("# title\nbefore\n") and text.endswith("after\n")
    assert "](benchmarks/results/targets.png)" in text and "- tensorrt-fp16: no GPU" in text and "5 fold(s)" in text
    mod.update_readme(block)  # idempotent
    assert (tmp_path / "README.md").read_text() == text
