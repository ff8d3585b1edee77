"""Evaluation, one way for every caller: pair lists and named benchmarks, the cached face store
(detect -> align by the card's template), pair sets scored through any embedder, and the
verification protocol (k-fold accuracy, ROC, TAR at FAR)."""
