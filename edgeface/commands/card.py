"""`edgeface card new`: the model card of a foreign model, read from its graph (models.foreign)."""
from __future__ import annotations

import argparse
from pathlib import Path

from .eval import _size

HELP = """Write the model card of a model the kit did not define, so every command takes it afterwards
(eval, prune, quantize, export with --card CARD.json; a .pt2 / .onnx file's MODEL.card.json beside it
is found without --card).

MODEL: an ONNX file (float input), a torch.export .pt2 file (dynamic batch), or your own PyTorch
module by import path pkg.module:factory with --weights W.safetensors (no pickle is ever read).

Read from the graph: input size and layout (ONNX / .pt2; a module needs --input-size), and the
embedding size, measured by running the model on two random inputs (they must give finite,
different outputs). Given by you, with no defaults because a wrong value fails silently: the
alignment template and the normalisation (x - mean) / std on 0-255 pixels, e.g. --mean 127.5
--std 127.5 for a network trained on (x/255 - 0.5) / 0.5, --mean 127.5 --std 128 for
MobileFaceNet/SphereFace-style (x - 127.5) / 128.

Card fields (JSON): name, arch, input_size [H, W], embedding_size, template (arcface_112x112 |
sphereface_112x96 | ...), color_order (RGB | BGR | GRAY), mean [3], std [3], licence, description,
source; optional params, mflops, arch_kwargs, int8_float_scope {"first": bool, "last": int}."""


def register(sub) -> None:
    """Add the `card` command (`card new`) to the subparsers `sub`."""
    p = sub.add_parser("card", help="write the model card of a foreign model (ONNX, .pt2, or your module by import path)", description=HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    cs = p.add_subparsers(dest="card_command", metavar="ACTION")
    n = cs.add_parser("new", help="read the graph, run it, write CARD.json", description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    n.add_argument("model", help="ONNX file, .pt2 file, or pkg.module:factory")
    n.add_argument("--weights", help="weights (.safetensors) of a module by import path")
    n.add_argument("--template", required=True, help="alignment template the model was trained on (arcface_112x112, sphereface_112x96)")
    n.add_argument("--mean", required=True, type=float, nargs="+", help="pixel mean on 0-255 (one value or three)")
    n.add_argument("--std", required=True, type=float, nargs="+", help="pixel std on 0-255 (one value or three)")
    n.add_argument("--color-order", choices=["RGB", "BGR", "GRAY"], default="RGB", help="channel order the network expects (default RGB)")
    n.add_argument("--input-size", type=_size, help="HxW: required for a module (the graph of a file says it)")
    n.add_argument("--name", help="model name (default: the file's stem or the factory's name)")
    n.add_argument("--licence", default="user-supplied weights", help="licence of the weights (recorded in every bundle made from it)")
    n.add_argument("--description", default="", help="free text")
    n.add_argument("--out", help="card file to write (default: MODEL.card.json beside a file; required for an import path)")
    n.set_defaults(handler=run_new)
    p.set_defaults(handler=lambda args: p.print_help() or 2)


def run_new(args) -> int:
    """`edgeface card new`: describe the model, write the card, print what was read and what was given; returns 0."""
    from ..models.foreign import is_import_path, new_card, sidecar_card

    if args.out:
        out = Path(args.out)
    elif is_import_path(args.model):
        raise ValueError("--out CARD.json: a module given by import path has no file to put its card beside")
    else:
        out = sidecar_card(args.model)
    card, found = new_card(args.model, template=args.template, mean=args.mean, std=args.std, color_order=args.color_order, name=args.name,
                           weights=args.weights, input_size=args.input_size, licence=args.licence, description=args.description)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(card.to_json() + "\n")
    h, w = card.input_size
    print(f"wrote {out}\n"
          f"  read from the graph: {found['format']}, input {found['input_dtype']} {found['layout']} {h}x{w}"
          f"{', batch ' + str(found['batch']) if 'batch' in found else ''}; embedding size {card.embedding_size} (measured by running it)\n"
          f"  given: template {card.template}, {card.color_order}, mean {list(card.mean)}, std {list(card.std)}\n"
          f"  next: edgeface eval {args.model}{' --weights ' + args.weights if args.weights else ''}"
          f"{'' if out == sidecar_card(args.model) and not is_import_path(args.model) else ' --card ' + str(out)}")
    return 0
