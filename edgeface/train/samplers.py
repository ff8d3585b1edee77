"""Identity-balanced P x K batches (Hermans et al. 2017; the multibatch paper's 16 people x 16 images).

Rule for identities with fewer than K images (`short`):
  * "replace" (default): the identity's images are drawn with replacement to fill its K
    slots (each image appears at most ceil(K / n) times; augmentation makes the repeats
    differ). Identities with fewer than `min_images` images (default 2) are never drawn as
    one of the P people, since they give no genuine pair that is not the same photo.
  * "skip": only identities with at least K images are drawn.
Each epoch draws identities in a random order without repetition until fewer than P remain;
an epoch therefore has floor(#eligible identities / P) batches, unless `batches_per_epoch`
is set, in which case identities are re-shuffled as often as needed.
"""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np


class PKSampler:
    def __init__(self, labels, p: int = 16, k: int = 16, short: str = "replace", min_images: int = 2, batches_per_epoch: int | None = None, seed: int = 0):
        if short not in ("replace", "skip"):
            raise ValueError(f"short must be 'replace' or 'skip', got {short!r}")
        if p < 2 or k < 1:
            raise ValueError(f"P x K needs P >= 2 identities and K >= 1 images, got {p} x {k}")
        labels = np.asarray(labels)
        self.p, self.k, self.short = p, k, short
        self.by_identity: dict[int, np.ndarray] = {}
        for lab in np.unique(labels):
            idx = np.flatnonzero(labels == lab)
            need = k if short == "skip" else max(min_images, 1)
            if len(idx) >= need:
                self.by_identity[int(lab)] = idx
        self.identities = np.array(sorted(self.by_identity))
        if len(self.identities) < p:
            raise ValueError(f"only {len(self.identities)} identities qualify for P x K = {p} x {k} batches (rule {short!r}, min_images {min_images}); lower P or add data")
        self.batches_per_epoch = batches_per_epoch or len(self.identities) // p
        self.rng = np.random.default_rng(seed)
        self._order: np.ndarray | None = None
        self._pos = 0

    def __len__(self) -> int:
        return self.batches_per_epoch

    def _take(self, ident: int) -> np.ndarray:
        idx = self.by_identity[ident]
        if len(idx) >= self.k:
            return self.rng.choice(idx, self.k, replace=False)
        # Fewer than K images: every image once, the rest drawn with replacement.
        extra = self.rng.choice(idx, self.k - len(idx), replace=True)
        return np.concatenate([self.rng.permutation(idx), extra])

    def start_epoch(self) -> None:
        """A new random order of identities (each epoch starts with one)."""
        self._order, self._pos = self.rng.permutation(self.identities), 0

    def next_batch(self) -> np.ndarray:
        """The next P x K batch of indices (P identities, K images each, grouped by identity)."""
        if self._order is None:
            self.start_epoch()
        if self._pos + self.p > len(self._order):
            self._order, self._pos = self.rng.permutation(self.identities), 0
        people = self._order[self._pos : self._pos + self.p]
        self._pos += self.p
        return np.concatenate([self._take(int(i)) for i in people])

    def __iter__(self) -> Iterator[np.ndarray]:
        self.start_epoch()
        for _ in range(self.batches_per_epoch):
            yield self.next_batch()

    def state_dict(self) -> dict:
        """JSON-able state (RNG, identity order, position): restoring it continues the exact
        sequence of batches, mid-epoch included."""
        return {
            "rng": self.rng.bit_generator.state,
            "order": None if self._order is None else [int(i) for i in self._order],
            "pos": int(self._pos),
            "batches_per_epoch": int(self.batches_per_epoch),
        }

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]
        self._order = None if state["order"] is None else np.asarray(state["order"], dtype=self.identities.dtype)
        self._pos = int(state["pos"])
        self.batches_per_epoch = int(state["batches_per_epoch"])
