"""Dataset readers: identity folders, LFW pairs.txt (any number of folds), CSV pair lists.

Readers only list files; they never decode images, so a broken file is found (and
counted) by the stage that reads it rather than aborting the listing.
"""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

from ..core.digest import file_sha256

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".pgm", ".ppm", ".webp", ".tif", ".tiff"}


@dataclass(frozen=True)
class Pair:
    a: str
    b: str
    same: bool
    fold: int


class DataError(ValueError):
    """A dataset file that cannot be parsed, naming the file and line."""


def _images_root(root: Path) -> Path:
    """Datasets here keep images either directly in identity folders or under images/."""
    return root / "images" if (root / "images").is_dir() else root


def identity_folder(root: str | os.PathLike, min_images: int = 1, identities: set[str] | None = None) -> list[tuple[str, str]]:
    """(path, identity) for every image in root/<identity>/*, sorted for reproducibility."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: not a directory of identity folders")
    base = _images_root(root)
    items: list[tuple[str, str]] = []
    for ident in sorted(p.name for p in base.iterdir() if p.is_dir()):
        if identities is not None and ident not in identities:
            continue
        files = sorted(f for f in (base / ident).iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        if len(files) >= min_images:
            items.extend((str(f), ident) for f in files)
    if not items:
        raise DataError(f"{root}: found no images in identity sub-folders (expected {base}/<identity>/<image>.jpg)")
    return items


def _lfw_path(base: Path, name: str, idx: str, where: str) -> str:
    try:
        n = int(idx)
    except ValueError:
        raise DataError(f"{where}: image number {idx!r} is not an integer") from None
    return str(base / name / f"{name}_{n:04d}.jpg")


def read_lfw_pairs(pairs_file: str | os.PathLike, images_root: str | os.PathLike | None = None) -> list[Pair]:
    """Parse an LFW View-2 style pairs.txt: header 'folds n', then per fold n matched lines
    'name i j' and n mismatched lines 'name1 i name2 j'. Any number of folds is accepted.
    """
    pairs_file = Path(pairs_file)
    if not pairs_file.is_file():
        raise DataError(f"{pairs_file}: pairs file not found")
    base = _images_root(Path(images_root) if images_root else pairs_file.parent)
    lines = [ln.split() for ln in pairs_file.read_text().splitlines()]
    lines = [ln for ln in lines if ln]
    if not lines:
        raise DataError(f"{pairs_file}: empty pairs file")
    head = lines[0]
    if len(head) == 2 and all(h.isdigit() for h in head):
        n_folds, per = int(head[0]), int(head[1])
        body = lines[1:]
        if len(body) != n_folds * 2 * per:
            raise DataError(f"{pairs_file}: header says {n_folds} folds x {2 * per} pairs = {n_folds * 2 * per} lines, found {len(body)}")
    elif len(head) == 1 and head[0].isdigit():  # View-1 style: one count, a single fold
        body = lines[1:]
        n_folds, per = 1, max(1, len(body) // 2)
    else:
        raise DataError(f"{pairs_file}: line 1 should be '<folds> <pairs per class per fold>', got {' '.join(head)!r}")
    out: list[Pair] = []
    for k, ln in enumerate(body):
        where = f"{pairs_file}:{k + 2}"
        fold = k // (2 * per)
        if len(ln) == 3:
            out.append(Pair(_lfw_path(base, ln[0], ln[1], where), _lfw_path(base, ln[0], ln[2], where), True, fold))
        elif len(ln) == 4:
            out.append(Pair(_lfw_path(base, ln[0], ln[1], where), _lfw_path(base, ln[2], ln[3], where), False, fold))
        else:
            raise DataError(f"{where}: expected 'name i j' or 'name1 i name2 j', got {' '.join(ln)!r}")
    return out


_TRUE = {"1", "true", "yes", "same", "genuine", "match"}
_FALSE = {"0", "false", "no", "different", "impostor", "mismatch"}


def read_pairs_csv(csv_file: str | os.PathLike, images_root: str | os.PathLike | None = None, n_folds: int = 10) -> list[Pair]:
    """Labelled pairs from a CSV with header columns a, b, same[, fold].

    Relative paths are resolved against images_root (default: the CSV's folder). Without
    a fold column, pairs are split into n_folds interleaved folds.
    """
    csv_file = Path(csv_file)
    if not csv_file.is_file():
        raise DataError(f"{csv_file}: pairs CSV not found")
    base = Path(images_root) if images_root else csv_file.parent
    with open(csv_file, newline="") as fh:
        reader = csv.DictReader(fh)
        cols = {c.strip().lower(): c for c in (reader.fieldnames or [])}
        need = {"a", "b", "same"}
        if not need <= set(cols):
            raise DataError(f"{csv_file}: header must name columns a, b, same (and optionally fold); got {reader.fieldnames}")
        out: list[Pair] = []
        for k, row in enumerate(reader):
            where = f"{csv_file}:{k + 2}"
            lab = (row[cols["same"]] or "").strip().lower()
            if lab not in _TRUE | _FALSE:
                raise DataError(f"{where}: 'same' must be 1/0 or true/false, got {lab!r}")
            fold = row.get(cols.get("fold", ""), None)
            try:
                fold_i = int(fold) if fold not in (None, "") else k % n_folds
            except ValueError:
                raise DataError(f"{where}: fold {fold!r} is not an integer") from None
            pa, pb = (row[cols["a"]] or "").strip(), (row[cols["b"]] or "").strip()
            if not pa or not pb:
                raise DataError(f"{where}: empty image path")
            out.append(Pair(str(base / pa), str(base / pb), lab in _TRUE, fold_i))
    if not out:
        raise DataError(f"{csv_file}: no pairs")
    return out


def load_pairs(data: str | os.PathLike, pairs: str | os.PathLike | None = None) -> list[Pair]:
    """Pairs from a dataset folder (its pairs.txt or pairs.csv) or a pairs file directly."""
    data = Path(data)
    if pairs is None:
        if data.is_file():
            pairs, data = data, data.parent
        elif (data / "pairs.txt").is_file():
            pairs = data / "pairs.txt"
        elif (data / "pairs.csv").is_file():
            pairs = data / "pairs.csv"
        else:
            raise DataError(f"{data}: no pairs.txt or pairs.csv here; pass --pairs FILE")
    pairs = Path(pairs)
    if pairs.suffix.lower() == ".csv":
        return read_pairs_csv(pairs, data if data.is_dir() else None)
    return read_lfw_pairs(pairs, data if data.is_dir() else None)


def lfw_pair_identities(pairs: list[Pair]) -> set[str]:
    """Identity folder names used by LFW pairs: training must never see them."""
    return {Path(p).parent.name for pr in pairs for p in (pr.a, pr.b)}


def first_folds(pairs: list[Pair], n: int | None) -> list[Pair]:
    """The pairs of the first n folds in fold order (LFW's folds are numbered from 0, CFP's
    from 1: 'fold < n' would keep nothing of CFP's first fold)."""
    if not n:
        return pairs
    keep = set(sorted({p.fold for p in pairs})[:n])
    return [p for p in pairs if p.fold in keep]


def dataset_identity(pairs: list[Pair]) -> dict:
    """What makes two evaluations comparable: the exact labelled pair list and the exact image
    bytes, independent of where the dataset folder lies on disk.

    pairs_sha256: sha256 of the canonical pair list (paths relative to the images' common
    folder, label, fold), so the same pairs.txt trimmed by --limit-folds, re-drawn, relabelled
    or re-folded gives another value; images_sha256: sha256 over (relative path, sha256 of the
    file's bytes) of every image the pairs use ("missing" for an unreadable one). Equal
    identities mean the same pairs of the same images, whatever the pair count says.
    """
    import hashlib

    files = sorted({p for pr in pairs for p in (pr.a, pr.b)})
    if not files:
        raise DataError("no pairs: a dataset identity needs at least one pair")
    root = os.path.commonpath([os.path.dirname(os.path.abspath(f)) for f in files])
    rel = lambda f: os.path.relpath(os.path.abspath(f), root).replace(os.sep, "/")  # noqa: E731
    hp = hashlib.sha256()
    for p in pairs:
        hp.update(f"{rel(p.a)}\t{rel(p.b)}\t{int(p.same)}\t{p.fold}\n".encode())
    hi = hashlib.sha256()
    for f in files:
        try:
            digest = file_sha256(f)
        except OSError:
            digest = "missing"
        hi.update(f"{rel(f)}\t{digest}\n".encode())
    return {"pairs_sha256": hp.hexdigest(), "images_sha256": hi.hexdigest(), "num_pairs": len(pairs), "num_images": len(files)}
