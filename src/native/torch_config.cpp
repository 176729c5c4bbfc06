// The few libtorch settings and facts that tch does not expose: deterministic algorithms,
// and which CPU kernels and library versions this process runs with. C linkage, no
// exceptions across the boundary; strings are copied into the caller's buffer.

#include <ATen/Context.h>
#include <ATen/Version.h>
#include <torch/headeronly/version.h>

#include <cstddef>
#include <cstring>
#include <string>

namespace {
void copy_out(const std::string& s, char* buf, std::size_t len) {
  if (len == 0) return;
  std::size_t n = s.size() < len - 1 ? s.size() : len - 1;
  std::memcpy(buf, s.data(), n);
  buf[n] = '\0';
}
}  // namespace

extern "C" {

// Deterministic algorithms (warn, not fail, on an operation that has none), deterministic
// cuDNN and oneDNN, and no cuDNN benchmarking. Returns 0 on success.
int sap_torch_set_deterministic(int on) {
  try {
    auto& ctx = at::globalContext();
    ctx.setDeterministicAlgorithms(on != 0, /*warn_only=*/true);
    ctx.setDeterministicCuDNN(on != 0);
    ctx.setDeterministicMkldnn(on != 0);
    ctx.setBenchmarkCuDNN(false);
    return 0;
  } catch (...) {
    return 1;
  }
}

// Whether deterministic algorithms are on.
int sap_torch_deterministic() {
  try {
    return at::globalContext().deterministicAlgorithms() ? 1 : 0;
  } catch (...) {
    return -1;
  }
}

// The kernel set ATen's CPU dispatch uses ("DEFAULT", "AVX2", "AVX512", ...).
void sap_torch_cpu_capability(char* buf, std::size_t len) {
  try {
    copy_out(at::get_cpu_capability(), buf, len);
  } catch (...) {
    copy_out("unknown", buf, len);
  }
}

// MKL's version line.
void sap_torch_mkl_version(char* buf, std::size_t len) {
  try {
    copy_out(at::get_mkl_version(), buf, len);
  } catch (...) {
    copy_out("unknown", buf, len);
  }
}

// oneDNN's version line.
void sap_torch_onednn_version(char* buf, std::size_t len) {
  try {
    copy_out(at::get_mkldnn_version(), buf, len);
  } catch (...) {
    copy_out("unknown", buf, len);
  }
}

// The libtorch version the headers describe, e.g. "2.13.0".
const char* sap_torch_version() { return TORCH_VERSION; }

}  // extern "C"
