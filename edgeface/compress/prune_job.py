"""Pruning as a library job: `prune_model(PruneJob) -> PruneResult`, what `edgeface prune` runs.

Correlation (Sun, Wang & Tang 2016) or magnitude pruning of connections or channels, retrained by
distillation from the dense model on aligned CelebA-299 + AAF-8k faces (never LFW), then measured
(LFW-dev before/after through ONNX Runtime) and reported (JSON, Markdown, plots).
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from pathlib import Path

from ..eval import benchmarks, faces
from ..core.card import ModelCard
from ..core.config import JobResult, ModelJob
from . import channel, finetune, prune
from .evalfast import embed_with_onnx
from .masks import save_pruned, sparsity_table
from .report import plot_curves, write_report


@dataclass(kw_only=True)
class PruneJob(ModelJob):
    """What to prune and how (the fields are `edgeface prune`'s options)."""

    keep: float
    method: str = "correlation"  # correlation | magnitude
    level: str = "connection"  # connection | channel
    lam: float = 0.75
    layers_per_step: int = 1
    retrain_iters: int = 50
    batch: int = 32
    feature_distill: float = 0.0
    lr: float = 1e-4
    faces: int = 1000
    stats_faces: int = 256
    seed: int = 0


@dataclass(kw_only=True)
class PruneResult(JobResult):
    checkpoint: Path
    card: ModelCard

    def summary(self) -> str:
        r = self.report
        nonzero = f" ({r['params_nonzero']} non-zero)" if r["level"] == "connection" else ""
        return (f"wrote {self.checkpoint} (+ report {self.report_files[0]}, {self.report_files[1]})\n"
                f"params {r['before']['params']} -> {r['after']['params']}{nonzero}, MFLOPs {r['before']['mflops']} -> {r['after']['mflops']}")


def prune_model(job: PruneJob, log=print) -> PruneResult:
    """Prune, retrain, save the checkpoint and its report; `log` gets the LFW-dev line."""
    from ..models.checkpoints import save_checkpoint
    from ..models.complexity import count_mflops, count_params
    from ..zoo import load_torch_model

    if not 0 < job.keep <= 1:
        raise ValueError(f"--keep must be in (0, 1], got {job.keep}")
    t0 = time.time()
    dense, card = load_torch_model(job.model, arch=job.arch, input_size=job.input_size, template=job.template, embedding_size=job.embedding_size,
                    card=job.card, weights=job.weights)
    if job.level == "channel" and not channel.bottlenecks(dense):
        raise ValueError(f"{job.model}: channel pruning needs MobileFaceNet bottlenecks or residual basic blocks (conv1/bn1/conv2); arch {card.arch!r} has none")
    tag = f"{job.method}_{job.level}_s{job.keep:g}"
    out = Path(job.out or Path("out") / f"{card.name}_{tag}.safetensors")
    if out.suffix != ".safetensors":
        raise ValueError(f"--out {out}: expected a .safetensors path")
    pool = faces.training_faces(card, job.faces, seed=job.seed)
    stats = pool[: job.stats_faces]
    teacher = embed_with_onnx(dense, card, pool)
    epochs = job.retrain_iters * job.batch / len(pool)
    retrain = (lambda m, mk: finetune.distill(m, card, pool, teacher, mk, epochs=epochs, batch_size=job.batch, lr=job.lr, seed=job.seed)) if job.retrain_iters else None
    model = copy.deepcopy(dense)
    losses: list[float] = []
    report: dict = {"model": card.name, "method": job.method, "level": job.level, "keep": job.keep, "lambda": job.lam if job.method == "correlation" else None,
                    "retraining": f"distillation from the dense model (1 - cos{f' + {job.feature_distill:g} x stage-output error' if job.feature_distill else ''}) on {len(pool)} aligned CelebA-299 + AAF-8k faces, {job.retrain_iters} Adam steps x {job.batch} per iteration, lr {job.lr}"}
    if job.level == "connection":
        def retrain_logged(m, mk):
            ls = retrain(m, mk) if retrain else []
            losses.extend(ls)
            return ls

        steps = prune.layer_steps(dense, job.layers_per_step)
        masks, step_log = prune.prune_connections(model, card, stats, job.keep, job.method, job.lam, steps, retrain_logged, seed=job.seed)
        new_card = card.replace(name=f"{card.name}_{tag}", description=f"{card.description or card.name}; {job.method} connection pruning, S={job.keep}",
                                params=count_params(model), mflops=round(count_mflops(model, card.input_size), 1))
        save_pruned(model, new_card, masks, out, extra={"pruning": {"method": job.method, "level": "connection", "keep": job.keep, "lambda": job.lam}})
        report["layers"] = sparsity_table(model, masks)
        report["steps"] = [{"layers": s.layers, "loss_first": s.retrain_loss_first, "loss_last": s.retrain_loss_last} for s in step_log]
        report.update(prune.overall_sparsity(model, masks))
        report["nonzero_mflops"] = round(prune.nonzero_mflops(model, card, masks), 1)
    else:
        acts = channel.expansion_activations(dense, finetune.batches(stats, card)) if job.method == "correlation" else None
        keep_idx = channel.select_channels(dense, job.keep, job.method, acts)
        model = channel.shrink_bottlenecks(model, keep_idx)
        if retrain:
            n_iter = job.retrain_iters * max(1, len(channel.bottlenecks(dense)) // max(1, job.layers_per_step * 4))
            losses = finetune.distill(model, card, pool, teacher, None, epochs=n_iter * job.batch / len(pool), batch_size=job.batch, lr=job.lr, seed=job.seed,
                                      teacher_model=dense if job.feature_distill > 0 else None, feature_weight=job.feature_distill)
        new_card = channel.pruned_card(model, card, f"{card.name}_{tag}", f"{job.method} channel pruning, S={job.keep}")
        save_checkpoint(model, new_card, out, extra={"pruning": {"method": job.method, "level": "channel", "keep": job.keep}})
        report["channels"] = {b: {"before": int(c0), "after": int(len(keep_idx[b]))} for b, c0 in zip(channel.bottlenecks(dense), channel.mid_channels(dense))}
        report["layers"] = sparsity_table(model, {})
    report["before"] = {"params": count_params(dense), "mflops": round(count_mflops(dense, card.input_size), 1), "file_bytes": 4 * count_params(dense)}
    report["after"] = {"params": new_card.params, "mflops": new_card.mflops, "file_bytes": out.stat().st_size, "checkpoint": str(out)}
    if job.level == "connection":
        report["after"]["nonzero_params"] = report["params_nonzero"]
        report["after"]["sparse_bytes_estimate"] = report["params_nonzero"] * 4 + sum(r["weights"] for r in report["layers"] if r["layer"] in masks) // 8
    if job.eval_folds:
        pairs = benchmarks.get("lfw-dev").pair_set(card, job.eval_folds)
        for key, net in (("before", dense), ("after", model)):
            report[key].update(pairs.headline(embed_with_onnx(net, card, pairs.crops)))
        log(f"LFW-dev ({pairs.folds.max() + 1} folds): {100 * report['before']['accuracy']:.2f} % -> {100 * report['after']['accuracy']:.2f} %")
    plots = []
    stem = out.with_suffix("")
    if losses:
        plots.append(str(plot_curves({"retraining": (list(range(1, len(losses) + 1)), losses)}, f"{stem}_retrain.png", "Adam step", "1 - cos(student, teacher)", f"Retraining {new_card.name}")))
    rows = report["layers"]
    if rows:
        plots.append(str(plot_curves({"kept fraction": (list(range(len(rows))), [1 - r["sparsity"] for r in rows])}, f"{stem}_layers.png", "conv layer (input to output)", "kept fraction of weights", f"Per-layer density, {new_card.name}")))
    report["plots"] = plots
    report["seconds"] = round(time.time() - t0)
    js, md = write_report(stem.with_name(stem.name + "_report"), report, f"edgeface prune: {new_card.name}")
    return PruneResult(checkpoint=out, card=new_card, report=report, report_files=(Path(js), Path(md)))
