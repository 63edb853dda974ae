"""ONNX -> TensorRT engine.

Only `builder.py` imports tensorrt. Everything decidable without it lives in plain-Python
modules that are unit-tested on CPU:
    plan.py       TensorRT version parsing, FP16 mechanism by version, FP32 layers,
                  optimization profiles, workspace / DLA / timing-cache settings
    fp16_onnx.py  pure-ONNX FP32 -> FP16 conversion with FP32 islands (TensorRT 11)
    trt_ops.py    the TensorRT 10.0 ONNX-parser operator matrix and a graph checker
    device.py     CUDA device / compute capability through the driver (ctypes)
    cli.py        `pvtseg build-engine` / python/build_engine.py
INT8 calibration (calibrator.py in ARCHITECTURE.md) is not implemented: TensorRT 11
removed the implicit-quantization calibrators; INT8 there means a Q/DQ ONNX graph.
"""
