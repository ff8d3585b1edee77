"""Staged prune -> distil: a dense teacher's inner channels pruned in phases (the DeepID2+ way:
sparsify, retrain, sparsify further) and the pruned network retrained by distillation from the dense
one after every phase. The job that made the shipped `default` (`dlib_resnet_edge`), run by
`edgeface distill --recipe default-edge` (edgeface/configs/distill/default-edge.toml).

Why gradual: one-shot pruning of dlib_resnet to keep 0.35 lost 23 pt (75.97 % after 150 steps),
while keep 0.75 recovered to 98.13 % in 600 steps (docs/results: the dlib pruning Pareto). Each
phase removes channels chosen by correlation on the *current* network's activations, so the next
phase starts from a network that has already re-learned to carry what the removed channels held.

A phase is KEEP (fraction of the dense inner widths, with per-width overrides `keep_at`), STEPS of
Adam + cosine LR distillation (1 - cosine to the teacher's embedding + W x relative stage-output
error; BN statistics frozen; flips; optional jitter, relation term, mixup), or, with
`continue = true`, a new LR cycle on the same widths. Resumable by phase: each finished phase saves
its checkpoint and RUN/state.json, and a rerun starts after the last finished phase (a phase cut
short starts again; `eval_every` leaves measured checkpoints behind for inspection).

Writes RUN/report.json and RUN/report.md (one row per phase: parameters, MMACs, LFW-dev before and
after retraining, loss, seconds) and RUN/<name>_p<N>.safetensors. `package_weights` turns a
checkpoint into the package's weights file (fp16 storage, the recipe's card).
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Callable

import numpy as np

from ..core.card import ModelCard

PHASE_KEYS = {"keep", "keep_at", "steps", "lr", "jitter", "relation_weight", "mixup", "feature_distill", "continue", "label"}


@dataclass(frozen=True)
class Phase:
    keep: float
    steps: int
    lr: float = 1e-4
    keep_at: dict[int, float] = field(default_factory=dict)  # outer width -> keep for the blocks of that width
    jitter: bool = False
    relation_weight: float = 0.0
    mixup: float = 0.0
    feature_distill: float = 1.0
    cont: bool = False  # retrain the same widths further (a new LR cycle) instead of pruning
    label: str = ""


@dataclass(frozen=True)
class StagedRecipe:
    """A staged distillation recipe (TOML: top-level settings, then one [[phase]] table per phase)."""

    name: str  # the student's registry / card name
    phases: tuple[Phase, ...]
    teacher: str = "dlib_resnet"
    sources: tuple[str, ...] = ("celeba-299", "aaf-8k")
    faces_per_source: int = 3000
    batch: int = 16
    stats_faces: int = 64
    folds: int = 5
    threads: int = 2
    eval_every: int = 0
    licence: str = ""
    description: str = ""
    training_data: str = ""  # every training source with its terms (goes into the packaged card's licence)


def load_staged_recipe(spec: str | os.PathLike) -> StagedRecipe:
    """A recipe by name (edgeface/configs/distill/NAME.toml) or path; unknown keys and bad phases are refused."""
    import tomllib

    path = Path(spec)
    if not path.suffix:
        path = Path(__file__).resolve().parent.parent / "configs" / "distill" / f"{spec}.toml"
    if not path.is_file():
        raise FileNotFoundError(f"{spec}: no such distillation recipe ({path})")
    data = tomllib.loads(path.read_text())
    known = {f.name for f in fields(StagedRecipe)} - {"phases"} | {"phase"}
    unknown = set(data) - known
    if unknown:
        raise ValueError(f"{path}: unknown keys {sorted(unknown)}; allowed: {sorted(known)}")
    raw = data.pop("phase", [])
    if not raw:
        raise ValueError(f"{path}: no [[phase]]")
    phases = []
    for k, p in enumerate(raw):
        bad = set(p) - PHASE_KEYS
        if bad:
            raise ValueError(f"{path}: phase {k + 1}: unknown keys {sorted(bad)}; allowed: {sorted(PHASE_KEYS)}")
        p = dict(p)
        p["cont"] = bool(p.pop("continue", False))
        p["keep_at"] = {int(w): float(v) for w, v in p.get("keep_at", {}).items()}
        phases.append(Phase(**p))
    keeps = [p.keep for p in phases]
    if any(not 0 < k <= 1 for k in keeps) or keeps != sorted(keeps, reverse=True) or any(p.steps <= 0 for p in phases):
        raise ValueError(f"{path}: phases need 0 < keep <= 1, not increasing, and steps > 0; got {keeps}")
    if phases[0].cont:
        raise ValueError(f"{path}: the first phase prunes the teacher; 'continue' needs a phase before it")
    if "sources" in data:
        data["sources"] = tuple(data["sources"])
    if "name" not in data:
        raise ValueError(f"{path}: missing 'name' (the student's card name)")
    return StagedRecipe(phases=tuple(phases), **data)


def _recipe_digest(recipe: StagedRecipe) -> str:
    return hashlib.sha256(repr(recipe).encode()).hexdigest()[:16]


def run_staged(recipe: StagedRecipe, run_dir: str | os.PathLike, show_progress: bool = True,
               log: Callable[[str], None] = print) -> dict:
    """Run (or resume) the recipe's phases in `run_dir`; returns the report (also written as report.json / .md)."""
    import torch

    from .. import zoo
    from ..compress import channel, finetune
    from ..compress.evalfast import embed_with_onnx
    from ..core import paths
    from ..eval import faces
    from ..eval.verification import PairSet
    from ..models.checkpoints import load_checkpoint, save_checkpoint
    from ..models.complexity import count_mflops, count_params

    run = Path(run_dir)
    run.mkdir(parents=True, exist_ok=True)
    state_file, report_file = run / "state.json", run / "report.json"
    digest = _recipe_digest(recipe)
    state = json.loads(state_file.read_text()) if state_file.is_file() else {"recipe": digest, "done": []}
    if state["recipe"] != digest:
        raise ValueError(f"{run}: holds a run of another recipe (digest {state['recipe']}, this one {digest}); choose another --run-dir")
    report = json.loads(report_file.read_text()) if report_file.is_file() else {"recipe": digest, "rows": []}
    torch.set_num_threads(recipe.threads)

    dense, card = zoo.load_torch_model(recipe.teacher)
    dense.eval()
    dense_mid = channel.mid_channels(dense)
    pairs = PairSet.load(paths.lfw_dev(), card) if recipe.folds else None  # folds = 0: no measurement (tests)
    if pairs is not None and recipe.folds < 5:
        pairs = pairs.subset(recipe.folds)
    pool = faces.training_faces(card, recipe.faces_per_source, sources=recipe.sources, show_progress=show_progress)
    log(f"{len(pool)} training faces, {len(pairs.ia) if pairs is not None else 0} LFW-dev pairs")

    def lfw(model) -> dict:
        if pairs is None:
            return {"accuracy_mean": float("nan"), "accuracy_std": float("nan")}
        return pairs.report(embed_with_onnx(model, card, pairs.crops, recipe.threads))

    if "dense" not in report:
        r = lfw(dense)
        report["dense"] = {"params": count_params(dense), "mflops": round(count_mflops(dense, card.input_size), 1), "mid_channels": dense_mid,
                           "accuracy": r["accuracy_mean"], "accuracy_std": r["accuracy_std"]}
    report["setup"] = {"teacher": recipe.teacher, "training_faces": len(pool), "sources": list(recipe.sources), "batch": recipe.batch,
                       "lfw_pairs": int(len(pairs.ia)) if pairs is not None else 0, "folds": recipe.folds}

    net = dense
    if state["done"]:
        net, _ = load_checkpoint(state["done"][-1]["checkpoint"])
        log(f"resuming after phase {len(state['done'])}: {state['done'][-1]['checkpoint']}")
    stored_targets = None  # the teacher's embeddings of the stored faces, made once for the phases that use them
    for k, ph in enumerate(recipe.phases):
        if k < len(state["done"]):
            continue
        t = time.time()
        # the phase's inner widths: a fraction of the *dense* width per block (keep_at per outer width)
        want = {name: max(8, int(round(ph.keep_at.get(net.get_submodule(name).conv2.out_channels, ph.keep) * c)))
                for name, c in zip(channel.bottlenecks(net), dense_mid)}
        now = dict(zip(channel.bottlenecks(net), channel.mid_channels(net)))
        if any(want[b] > now[b] for b in now):
            raise ValueError(f"phase {k + 1}: keep {ph.keep} asks for wider blocks than the network has ({now} -> {want})")
        if not ph.cont:
            acts = channel.expansion_activations(net, finetune.batches(pool[: recipe.stats_faces], card))
            idx = channel.select_channels(net, {b: want[b] / now[b] for b in now}, "correlation", acts)
            net = channel.shrink_bottlenecks(net, idx)
        acc0 = lfw(net)["accuracy_mean"]
        log(f"phase {k + 1}/{len(recipe.phases)}: keep {ph.keep}{' (continued)' if ph.cont else ''}, {count_params(net):,} params, "
            f"LFW-dev before retraining {100 * acc0:.2f} %")
        on_view = finetune.targets_from_teacher_view(ph.jitter, ph.relation_weight, ph.mixup)
        if not on_view and stored_targets is None:
            stored_targets = embed_with_onnx(dense, card, pool, recipe.threads)
        name = f"{recipe.name}_p{k + 1}"
        curve: list[dict] = []

        def checkpoint(step, model, name=name, curve=curve, steps=ph.steps, t=t):
            if recipe.eval_every and step % recipe.eval_every == 0 and step < steps:
                acc = lfw(model)["accuracy_mean"]
                save_checkpoint(model, channel.pruned_card(model, card, name, f"partial: step {step} of {steps}"), run / f"{name}_step{step}.safetensors")
                curve.append({"step": step, "accuracy": acc, "seconds": round(time.time() - t)})
                log(f"step {step}/{steps}: LFW-dev {100 * acc:.2f} % ({curve[-1]['seconds']} s)")

        losses = finetune.distill(net, card, pool, None if on_view else stored_targets, None, epochs=ph.steps * recipe.batch / len(pool),
                                  batch_size=recipe.batch, lr=ph.lr, show_progress=show_progress, teacher_model=dense,
                                  feature_weight=ph.feature_distill, seed=k, jitter=ph.jitter, relation_weight=ph.relation_weight,
                                  mixup=ph.mixup, on_step=checkpoint)
        r = lfw(net)
        ckpt = save_checkpoint(net, channel.pruned_card(net, card, name, f"{recipe.teacher}, correlation channel pruning in phases, phase {k + 1} "
                                                         f"(keep {ph.keep}), retrained by distillation from the dense network"), run / f"{name}.safetensors")
        row = {"phase": k + 1, "keep": ph.keep, "keep_at": {str(w): v for w, v in ph.keep_at.items()}, "continued": ph.cont, "label": ph.label,
               "params": count_params(net), "mflops": round(count_mflops(net, card.input_size), 1), "mid_channels": channel.mid_channels(net),
               "steps": ph.steps, "lr": ph.lr, "jitter": ph.jitter, "relation_weight": ph.relation_weight, "mixup": ph.mixup,
               "accuracy_before_retraining": acc0, "accuracy": r["accuracy_mean"], "accuracy_std": r["accuracy_std"],
               "loss": {"first": losses[0], "last_100_mean": float(np.mean(losses[-100:]))}, "curve": curve,
               "seconds": round(time.time() - t), "load_average_1min_at_end": round(os.getloadavg()[0], 2), "checkpoint": str(ckpt)}
        report["rows"] = [x for x in report["rows"] if x["phase"] != k + 1] + [row]
        state["done"].append({"phase": k + 1, "checkpoint": str(ckpt)})
        report_file.write_text(json.dumps(report, indent=2))
        state_file.write_text(json.dumps(state, indent=2))
        write_report_md(report, run / "report.md")
        log(f"phase {k + 1}: {row['params']:,} params, {row['mflops']} MMACs, LFW-dev {100 * acc0:.2f} -> {100 * row['accuracy']:.2f} "
            f"± {100 * row['accuracy_std']:.2f} % ({row['seconds']} s) -> {ckpt}")
    report["final_checkpoint"] = state["done"][-1]["checkpoint"]
    report_file.write_text(json.dumps(report, indent=2))
    write_report_md(report, run / "report.md")
    return report


def write_report_md(report: dict, path: Path) -> None:
    """The report as a markdown table: the dense teacher, then one row per phase."""
    d = report["dense"]
    lines = ["| phase | params | MMACs | steps | lr | LFW-dev before | LFW-dev after |", "|---|---|---|---|---|---|---|",
             f"| dense teacher | {d['params']:,} | {d['mflops']} | - | - | - | {100 * d['accuracy']:.2f} ± {100 * d['accuracy_std']:.2f} % |"]
    for r in sorted(report["rows"], key=lambda r: r["phase"]):
        what = f"{r['phase']}: keep {r['keep']}" + (" (continued)" if r["continued"] else "") + (f" {r['label']}" if r.get("label") else "")
        lines.append(f"| {what} | {r['params']:,} | {r['mflops']} | {r['steps']} | {r['lr']:g} | {100 * r['accuracy_before_retraining']:.2f} % | "
                     f"{100 * r['accuracy']:.2f} ± {100 * r['accuracy_std']:.2f} % |")
    path.write_text("# Staged prune -> distil (edgeface distill)\n\nSetup: " + json.dumps(report.get("setup", {})) + "\n\n" + "\n".join(lines) + "\n")


def packaged_card(card: ModelCard, recipe: StagedRecipe) -> ModelCard:
    """The card the package ships for a checkpoint of this recipe: the recipe's name, description and an honest licence
    naming every training source's terms, and the int8 float scope measured for this network."""
    licence = recipe.licence + (f"; trained on: {recipe.training_data}" if recipe.training_data else "")
    return card.replace(name=recipe.name, licence=licence or card.licence, description=recipe.description.format(widths=card.arch_kwargs.get("widths")),
                        # int8 keeps only the stem in float: its final 256x128 linear quantizes without loss (OpenVINO int8 of the keep-0.33
                        # network: LFW-dev 97.37 % vs 97.30 % fp32), and PT2E's default of three float layers (MobileFaceNet's end) would keep
                        # two 3x3 convs of the widest stage in float here (an estimated 3.1 MB of TFLite int8)
                        int8_float_scope={"first": True, "last": 0})


def package_weights(ckpt: str | os.PathLike, recipe: StagedRecipe, dest: str | os.PathLike) -> Path:
    """Write checkpoint `ckpt` as a package weights file: fp16 storage (half the bytes in the wheel; the network still computes in
    fp32, so what ships is what `edgeface eval` measures), the recipe's card, the source checkpoint's sha256."""
    from safetensors.torch import save_file

    from .. import __version__
    from ..models.checkpoints import CARD_KEY, read_checkpoint

    from safetensors import safe_open

    state, card, _ = read_checkpoint(ckpt)
    with safe_open(str(ckpt), framework="pt") as fh:
        meta = fh.metadata() or {}
    half = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in state.items()}
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    # re-carding a packaged file keeps the checkpoint it was made from
    digest = meta.get("source_checkpoint_sha256") or hashlib.sha256(Path(ckpt).read_bytes()).hexdigest()
    tmp = dest.with_suffix(".tmp")
    save_file(half, str(tmp), metadata={CARD_KEY: packaged_card(card, recipe).to_json(), "edgeface_version": __version__,
                                        "source_checkpoint_sha256": digest})
    os.replace(tmp, dest)
    return dest
