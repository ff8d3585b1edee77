"""The model registry: name -> (card, builder), as timm's registry does for classifiers.

Users add their own architecture with :func:`register` (see docs/extending.md, "Add a model").
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import nn

from ..core.card import ModelCard


@dataclass(frozen=True)
class RegistryEntry:
    card: ModelCard
    build: Callable[..., nn.Module]  # build(**card.arch_kwargs) -> nn.Module producing (N, D) embeddings
    # Default weights: a path (package-relative or absolute), or a function that produces the
    # file on first use and returns its path (weights converted from an installed package).
    weights: str | Callable[[], str] | None = None

    def weights_path(self) -> str | None:
        return self.weights() if callable(self.weights) else self.weights


_REGISTRY: dict[str, RegistryEntry] = {}
_ARCHS: dict[str, Callable[..., nn.Module]] = {}


def register_arch(arch: str, build: Callable[..., nn.Module]) -> None:
    """Make an architecture name buildable from a card (checkpoints store only the card)."""
    _ARCHS[arch] = build


def register(card: ModelCard, build: Callable[..., nn.Module] | None = None, weights: str | Callable[[], str] | None = None, overwrite: bool = False) -> None:
    """Register a named model. `build(**card.arch_kwargs)` must return an nn.Module that maps
    a normalised (N, 3, H, W) float batch to (N, card.embedding_size) embeddings."""
    if card.name in _REGISTRY and not overwrite:
        raise ValueError(f"model {card.name!r} is already registered")
    if build is None:
        if card.arch not in _ARCHS:
            raise ValueError(f"no builder for arch {card.arch!r}; known: {sorted(_ARCHS)}")
        build = _ARCHS[card.arch]
    else:
        _ARCHS.setdefault(card.arch, build)
    _REGISTRY[card.name] = RegistryEntry(card, build, weights)


def get(name: str) -> RegistryEntry:
    """The registry entry of a model name; raises KeyError listing the known names for an unknown one."""
    if name not in _REGISTRY:
        raise KeyError(f"unknown model {name!r}; `edgeface models` lists: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def names() -> list[str]:
    """Registered model names, sorted."""
    return sorted(_REGISTRY)


def build_from_card(card: ModelCard) -> nn.Module:
    """A new (untrained) network of the card's architecture, built with its arch_kwargs; raises ValueError for an unregistered arch."""
    if card.arch not in _ARCHS:
        raise ValueError(f"card {card.name!r} names arch {card.arch!r}, which is not registered; known: {sorted(_ARCHS)}")
    return _ARCHS[card.arch](**card.arch_kwargs)
