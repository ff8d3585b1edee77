"""Benchmarks per target and device profile (`edgeface bench`) and the pieces device tests use.

probe    - measure one model in a fresh process (torch-free; also runs on the device)
adapters - open a bundle (runtime API) or a plain .onnx/.xml/.tflite file
harness  - run probes for every target × thread count, add parity and LFW-dev accuracy
machine  - the machine description attached to every result
report   - terminal table, CSV, JSON, PNG plot
runners  - reach a device: local, ssh, adb; deploy the runtime and a bundle there
"""
