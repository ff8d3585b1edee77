"""`edgeface models`: the registry with each model's card, parameters and MFLOPs."""
from __future__ import annotations

import json


def register(sub) -> None:
    """Add the `models` subcommand to the subparsers `sub`."""
    p = sub.add_parser("models", help="list registered architectures/models with their cards", description="List the model registry: input size, template, embedding size, parameters and MFLOPs (multiply-accumulates per face), measured by building each model.")
    p.add_argument("--json", action="store_true", help="print the cards as JSON")
    p.set_defaults(handler=run)


def run(args) -> int:
    """`edgeface models`: build every registered network to count its parameters and MFLOPs, then print a table (or
    JSON with --json); returns 0. Raises ImportError with an install hint when PyTorch is missing."""
    try:
        from .. import models
        from ..models.complexity import count_mflops, count_params
    except ImportError as exc:
        raise ImportError(f"`edgeface models` builds each network with PyTorch, which is not installed here ({exc.name or exc}): "
                          "pip install 'edgeface[train]' (the runtime commands enroll / verify / identify / gallery do not need it)") from None

    rows = []
    for name in models.names():
        entry = models.get(name)
        net = models.build_from_card(entry.card)
        card = entry.card.replace(params=count_params(net), mflops=round(count_mflops(net, entry.card.input_size), 1))
        rows.append((card, bool(entry.weights)))
    if args.json:
        print(json.dumps([dict(c.to_dict(), trained=t) for c, t in rows], indent=2))
        return 0
    header = f"{'name':<26} {'input':>8} {'template':<18} {'emb':>4} {'params':>9} {'MFLOPs':>8}  weights"
    print(header)
    print("-" * len(header))
    for c, trained in rows:
        h, w = c.input_size
        print(f"{c.name:<26} {f'{h}x{w}':>8} {c.template:<18} {c.embedding_size:>4} {c.params / 1e6:>8.2f}M {c.mflops:>8.1f}  {'trained' if trained else 'none (architecture only)'}")
    return 0
