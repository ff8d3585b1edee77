"""`edgeface distill`: the staged prune -> distil job that made `default`, run for a few steps on real faces with
the real dense teacher: phases prune to the asked widths, a rerun resumes, another recipe's run is refused, and
packaging writes the recipe's honest card."""
import json

import pytest

pytestmark = [pytest.mark.shared]

TINY = """
name = "tiny_edge"
teacher = "dlib_resnet"
sources = ["celeba-299"]
faces_per_source = 12
batch = 4
threads = 2
folds = 0
stats_faces = 8
licence = "weights: CC0 test"
training_data = "CelebA (non-commercial research only)"
description = "widths {widths}"

[[phase]]
keep = 0.5
steps = 2

[[phase]]
keep = 0.25
keep_at = { 256 = 0.2 }
steps = 2
"""


def test_staged_distillation_runs_resumes_and_packages(shared, tmp_path):
    from edgeface.compress import channel
    from edgeface.models.checkpoints import load_checkpoint, read_checkpoint_card
    from edgeface.train.staged import load_staged_recipe, package_weights, run_staged

    rf = tmp_path / "tiny.toml"
    rf.write_text(TINY)
    recipe = load_staged_recipe(rf)
    run = tmp_path / "run"
    logs: list[str] = []
    report = run_staged(recipe, run, show_progress=False, log=logs.append)
    assert [r["phase"] for r in report["rows"]] == [1, 2]
    dense_mid = report["dense"]["mid_channels"]
    net, card = load_checkpoint(report["final_checkpoint"])
    mid = channel.mid_channels(net)
    # phase 2: a quarter of every dense inner width, a fifth where the block's outer width is 256 (at least 8)
    outer = [net.get_submodule(b).conv2.out_channels for b in channel.bottlenecks(net)]
    assert mid == [max(8, round((0.2 if o == 256 else 0.25) * d)) for d, o in zip(dense_mid, outer)]
    assert report["rows"][1]["params"] < report["rows"][0]["params"] < report["dense"]["params"]
    assert (run / "report.md").read_text().count("keep") >= 2
    # a rerun resumes after the last finished phase: nothing is trained again
    logs.clear()
    again = run_staged(recipe, run, show_progress=False, log=logs.append)
    assert again["final_checkpoint"] == report["final_checkpoint"] and not any(m.startswith("phase") for m in logs)
    # the run folder of another recipe is refused
    rf.write_text(TINY.replace("steps = 2\n", "steps = 3\n", 1))
    with pytest.raises(ValueError, match="another recipe"):
        run_staged(load_staged_recipe(rf), run, show_progress=False, log=logs.append)
    # packaging: fp16 storage, the recipe's name, and a licence naming the training data's terms
    out = package_weights(report["final_checkpoint"], recipe, tmp_path / "w.safetensors")
    packaged = read_checkpoint_card(out)
    assert packaged.name == "tiny_edge" and "CelebA (non-commercial research only)" in packaged.licence
    assert packaged.description == f"widths {mid}" and packaged.int8_float_scope == {"first": True, "last": 0}
    assert json.loads((run / "state.json").read_text())["done"][-1]["checkpoint"] == report["final_checkpoint"]


def test_recipes_are_checked(tmp_path):
    from edgeface.train.staged import load_staged_recipe

    shipped = load_staged_recipe("default-edge")
    assert shipped.name == "dlib_resnet_edge" and len(shipped.phases) == 5 and shipped.phases[2].cont
    bad = tmp_path / "bad.toml"
    for text, match in (('name = "x"\n[[phase]]\nkeep = 0.5\nsteps = 1\nspeed = 2\n', "unknown keys"),
                        ('name = "x"\n[[phase]]\nkeep = 0.3\nsteps = 1\n[[phase]]\nkeep = 0.5\nsteps = 1\n', "not increasing"),
                        ('name = "x"\n[[phase]]\nkeep = 0.5\nsteps = 1\ncontinue = true\n', "first phase"),
                        ('name = "x"\n', "no \\[\\[phase\\]\\]")):
        bad.write_text(text)
        with pytest.raises(ValueError, match=match):
            load_staged_recipe(bad)
