"""The int8 ceiling of this CPU: one weight matmul of multilingual-e5-small's shapes, float32
(torch, as sentence-transformers runs it, and ONNX Runtime) against the int8 backend's recipe
(ONNX Runtime, dynamic quantisation, per-channel 7-bit weights), on torch's thread count,
interleaved rounds, median reported.

Whole-model int8 speed-ups cannot exceed what the matmuls gain, and the rest of the network
(attention softmax, layer norms, GELU, quantising activations) stays float32. On CPUs with
VNNI the int8 kernel is several times float32; without it (AVX2 only), much less.

    PYTHONPATH=src .venv/bin/python benchmarks/int8_gemm.py [--tokens 2048] [--rounds 5]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import QuantType, quantize_dynamic

from polyseek.models.int8 import REDUCE_RANGE, open_session

SHAPES = {"attention projection (384 x 384)": (384, 384), "FFN up (384 x 1536)": (384, 1536),
          "FFN down (1536 x 384)": (1536, 384)}


def matmul_model(path: Path, inner: int, outer: int) -> np.ndarray:
    """Write a one-MatMul ONNX model x @ w to `path`; returns w."""
    weight = np.random.default_rng(0).standard_normal((inner, outer)).astype(np.float32) * 0.05
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="matmul")], "matmul",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["tokens", inner])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["tokens", outer])],
        [numpy_helper.from_array(weight, "w")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return weight


def seconds_per_run(run, repeats: int) -> float:
    run()  # warm-up
    began = time.perf_counter()
    for _ in range(repeats):
        run()
    return (time.perf_counter() - began) / repeats


def measure(folder: Path, inner: int, outer: int, args: argparse.Namespace) -> dict[str, float]:
    """Median seconds per [tokens, inner] x [inner, outer] product, per engine."""
    fp32, int8 = folder / f"{inner}x{outer}.onnx", folder / f"{inner}x{outer}-int8.onnx"
    weight = torch.from_numpy(matmul_model(fp32, inner, outer))
    quantize_dynamic(str(fp32), str(int8), per_channel=True, reduce_range=REDUCE_RANGE,
                     weight_type=QuantType.QInt8)
    x = np.random.default_rng(1).standard_normal((args.tokens, inner)).astype(np.float32)
    ort_fp32, ort_int8 = open_session(fp32), open_session(int8)
    runs = {"torch fp32": lambda: torch.from_numpy(x) @ weight,
            "ort fp32": lambda: ort_fp32.run(None, {"x": x}),
            "ort int8": lambda: ort_int8.run(None, {"x": x})}
    times: dict[str, list[float]] = {name: [] for name in runs}
    with torch.inference_mode():
        for _ in range(args.rounds):
            for name, run in runs.items():
                times[name].append(seconds_per_run(run, args.repeats))
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=2048, help="rows (the batch's tokens)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    logging.getLogger().setLevel(logging.ERROR)  # the quantiser's advice on the root logger
    print(f"{args.tokens} tokens, {torch.get_num_threads()} threads, median of {args.rounds}")
    with tempfile.TemporaryDirectory() as tmp:
        for label, (inner, outer) in SHAPES.items():
            median = measure(Path(tmp), inner, outer, args)
            flops = 2 * args.tokens * inner * outer
            rates = ", ".join(f"{name} {flops / s / 1e9:.0f}" for name, s in median.items())
            print(f"{label}: GFLOP/s {rates}; int8 / torch fp32 = "
                  f"{median['torch fp32'] / median['ort int8']:.2f}x")


if __name__ == "__main__":
    main()
