// kernels/select_backend.h — `--device cpu|cuda|auto` to a Backend.
#pragma once

#include <string>

#include "core/status.h"
#include "kernels/cuda/cuda_backend.h"

namespace qf {

// "cpu", "cuda" (an error naming why when unavailable) or "auto" (cuda when available, else cpu).
Expected<const Backend*> select_backend(const std::string& device);

// "cpu", or "cuda (forward products in TF32)" and the like: for the "device:" line.
std::string describe_backend(const Backend& be);

}  // namespace qf
