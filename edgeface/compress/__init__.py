"""Model compression: correlation-based connection pruning (Sun, Wang & Tang, CVPR 2016),
channel pruning into a smaller dense MobileFaceNet, magnitude baselines, quantization, reports.

Training side (needs torch); the runtime never imports this package.
"""
