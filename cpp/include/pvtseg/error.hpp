// pvtseg: the one exception type the library throws.
//
// Every Error carries a code (switch on it) and a message that says what went wrong
// and how to fix it. The library never calls exit() and never prints; see
// SegmenterOptions::log for its diagnostics.
#pragma once

#include <stdexcept>
#include <string>

namespace pvtseg {

enum class ErrorCode {
  kModelNotFound,         // the artifact file does not exist or cannot be read
  kBadSidecar,            // the JSON sidecar is missing, unparsable or off-schema
  kBadFrame,              // a frame the runtime cannot segment (empty, wrong depth/channels)
  kEngineVersionMismatch, // engine built with another TensorRT version than the running one
  kEngineDeviceMismatch,  // engine built for another GPU (compute capability)
  kBackendUnavailable,    // the backend (or CUDA) is not compiled in / not present
  kModelLoadFailed,       // the artifact exists but the backend cannot load it
  kInferenceFailed,       // the backend failed while running a frame
  kInvalidArgument,       // a bad option or argument (e.g. class id out of range)
  kSidecarMismatch,       // the sidecar disagrees with the artifact's graph / engine (I/O names,
                          // shapes, dtypes, class count, labels vs logits)
  kEngineBuildFailed,     // building a TensorRT engine from an .onnx failed
};

// "model_not_found", "bad_sidecar", ...: stable names for logs and tests.
const char* to_string(ErrorCode code) noexcept;

class Error : public std::runtime_error {
 public:
  // what() is "<message> Fix: <fix>" (or just the message when fix is empty).
  Error(ErrorCode code, const std::string& message, const std::string& fix = std::string());

  ErrorCode code() const noexcept { return code_; }
  const std::string& message() const noexcept { return message_; }
  const std::string& fix() const noexcept { return fix_; }

 private:
  ErrorCode code_;
  std::string message_;
  std::string fix_;
};

}  // namespace pvtseg
