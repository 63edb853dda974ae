"""ONNX -> TensorRT engine.

Only `builder.py` imports tensorrt. Everything decidable without it lives in plain-Python
modules that are unit-tested on CPU:
    contract.py   what each TensorRT ONNX parser (8.5, 8.6, 10.3, 10.13, 11) accepts: ops,
                  types, UINT8 casts, opsets, Q/DQ; `check(model, version)` lists problems
    adapt.py      exact graph rewrites for a version (labels cast, LayerNorm on 8.5)
    prepare.py    exported ONNX -> the graph handed to the parser + the build plan
    plan.py       versions, precision mechanism by version, FP32 layers, profiles, workspace
    fp16_onnx.py  pure-ONNX FP32 -> FP16 conversion with FP32 islands (strongly typed FP16)
    trt_ops.py    one operator table (10.0) and its markdown parser
    device.py     CUDA device / compute capability through the driver (ctypes)
    quantize.py   float ONNX -> Q/DQ INT8 ONNX: policy, ONNX Runtime calibration, TensorRT
                  checks, accuracy gate (`pvtseg quantize` is apps/quantize.py)
    cli.py        `pvtseg build-engine` / python/build_engine.py
INT8 is explicit quantization only: a Q/DQ ONNX from `pvtseg quantize`, built with --int8.
"""
