// Internal: the checks every backend runs when it loads an artifact: do the graph's /
// engine's I/O tensors (names, shapes, dtypes) agree with the sidecar? Plain C++ (no
// torch, no TensorRT), so a CPU ctest covers them; the backends translate their tensor
// descriptions into TensorInfo and call these.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "pvtseg/meta.hpp"

namespace pvtseg {
namespace detail {

struct TensorInfo {
  std::string name;                 // empty: the format has no tensor names (TorchScript)
  std::vector<std::int64_t> dims;   // -1: dynamic / not resolved
  std::string dtype;                // sidecar words: float32 float16 uint8 int8 int32 int64 bool ...
};

std::string dims_string(const std::vector<std::int64_t>& dims);

// The network input: rank 4, [1, 3, H, W] with the sidecar's H and W (dynamic dims pass),
// dtype == input.dtype, and name == input.name when the format names tensors.
// Throws Error(kSidecarMismatch) saying what differs.
void check_input_tensor(const ModelMeta& meta, const TensorInfo& in, const std::string& artifact);

// The network output, with every dim resolved:
//  labels: [1, h, w], [1, 1, h, w] or [h, w] with an integer dtype == output.dtype;
//  logits: [1, num_classes, h, w] with dtype == output.dtype;
// where (h, w) = the input size / output.stride; name == output.name when named.
// Throws Error(kSidecarMismatch) saying what differs.
void check_output_tensor(const ModelMeta& meta, const TensorInfo& out, const std::string& artifact);

// "'a', 'b'" (or "none"): tensor names for an error message.
std::string names_list(const std::vector<std::string>& available);

}  // namespace detail
}  // namespace pvtseg
