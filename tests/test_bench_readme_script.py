"""benchmarks/bench_targets.py rewrites only its own block of docs/results/targets.md."""
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def load_script():
    spec = importlib.util.spec_from_file_location("bench_targets", ROOT / "benchmarks" / "bench_targets.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_shipped_page_holds_the_markers_and_its_plot_resolves():
    mod = load_script()
    text = (ROOT / mod.DOC).read_text()
    assert text.count(mod.START) == 1 and text.count(mod.END) == 1 and text.index(mod.START) < text.index(mod.END)
    block = text.split(mod.START, 1)[1].split(mod.END, 1)[0]
    image = block.split("![accuracy vs latency per target](", 1)[1].split(")", 1)[0]
    assert ((ROOT / mod.DOC).parent / image).resolve().is_file(), image
    assert mod.START not in (ROOT / "README.md").read_text()  # one place for the table; the README links to it
    assert str(mod.DOC) in (ROOT / "README.md").read_text()


def test_doc_block_is_replaced_in_place(tmp_path, monkeypatch):
    mod = load_script()
    monkeypatch.setattr(mod, "ROOT", tmp_path)
    doc = tmp_path / mod.DOC
    doc.parent.mkdir(parents=True)
    doc.write_text(f"# title\nbefore\n{mod.START}\nold numbers\n{mod.END}\nafter\n")
    result = {"started_utc": "2026-01-01T00:00:00Z", "settings": {"batch": 1, "min_reps": 30, "min_time": 2.0, "throughput_batch": 32},
              "rows": [{"folds": 5}], "machine": {"load_average": [9.0, 8, 7], "usable_cores": 2}, "errors": [{"target": "tensorrt-fp16", "error": "no GPU\ndetails"}]}
    block = mod.doc_block(result, "| a | b |", tmp_path / "benchmarks" / "results" / "targets.png", "edgeface bench x")
    mod.update_doc(block)
    text = doc.read_text()
    assert "old numbers" not in text and "| a | b |" in text and text.startswith("# title\nbefore\n") and text.endswith("after\n")
    # the plot is linked relative to the page (docs/results/ -> benchmarks/results/)
    assert "](../../benchmarks/results/targets.png)" in text and "- tensorrt-fp16: no GPU" in text and "5 fold(s)" in text
    assert "Load average when it finished: 9.0 on 2 cores" in text
    mod.update_doc(block)  # idempotent
    assert doc.read_text() == text
    monkeypatch.chdir(tmp_path)  # `--out benchmarks/results` from the repository root: a relative path
    assert "](../../benchmarks/results/targets.png)" in mod.doc_block(result, "| a | b |", Path("benchmarks/results/targets.png"), "x")


def test_a_page_without_markers_gets_the_block_appended(tmp_path, monkeypatch):
    mod = load_script()
    monkeypatch.setattr(mod, "ROOT", tmp_path)
    mod.update_doc(f"{mod.START}\nnew\n{mod.END}")
    text = (tmp_path / mod.DOC).read_text()
    assert text.count(mod.START) == 1 and "\nnew\n" in text and text.rstrip().endswith(mod.END)
