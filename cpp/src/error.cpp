#include "pvtseg/error.hpp"

namespace pvtseg {

const char* to_string(ErrorCode code) noexcept {
  switch (code) {
    case ErrorCode::kModelNotFound: return "model_not_found";
    case ErrorCode::kBadSidecar: return "bad_sidecar";
    case ErrorCode::kBadFrame: return "bad_frame";
    case ErrorCode::kEngineVersionMismatch: return "engine_version_mismatch";
    case ErrorCode::kEngineDeviceMismatch: return "engine_device_mismatch";
    case ErrorCode::kBackendUnavailable: return "backend_unavailable";
    case ErrorCode::kModelLoadFailed: return "model_load_failed";
    case ErrorCode::kInferenceFailed: return "inference_failed";
    case ErrorCode::kInvalidArgument: return "invalid_argument";
    case ErrorCode::kSidecarMismatch: return "sidecar_mismatch";
    case ErrorCode::kEngineBuildFailed: return "engine_build_failed";
  }
  return "unknown";
}

static std::string compose(const std::string& message, const std::string& fix) {
  return fix.empty() ? message : message + " Fix: " + fix;
}

Error::Error(ErrorCode code, const std::string& message, const std::string& fix)
    : std::runtime_error(compose(message, fix)), code_(code), message_(message), fix_(fix) {}

}  // namespace pvtseg
