// kernels/select_backend.h — `--device cpu|cuda|auto` to a Backend.
#pragma once

#include <string>

#include "core/status.h"
#include "kernels/cuda/cuda_backend.h"

namespace qf {

// "cpu", "cuda" (an error naming why when unavailable) or "auto" (cuda when available, else cpu).
Expected<const Backend*> select_backend(const std::string& device);

}  // namespace qf
