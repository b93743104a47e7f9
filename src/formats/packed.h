// formats/packed.h — one weight matrix as a backend's kernels read it, whatever its format: the
// format (a formats/qtype.h row), where the bytes live, the rows, and the side arrays of the
// formats whose scales are not inside their blocks. A Linear owns the buffers (or an mmap'd
// checkpoint does); this is the view that flows from the loader to the kernels, and what a
// device backend copies.
#pragma once

#include <cstdint>

#include "formats/qtype.h"

namespace qf {

enum class Device : uint8_t { Cpu, Cuda };

struct QMatrix {
  QType type = QType::F32;
  Device device = Device::Cpu;
  const uint8_t* data = nullptr;  // n_out rows of row_bytes
  int64_t n_out = 0, n_in = 0, row_bytes = 0;
  // GRID4/GRID8: (n_out, n_in / group) scales and zeros (w = s·(q − z)). BNB4: absmax per
  // `group` weights of the flattened tensor and lut, its 16 code-book values.
  const float* scales = nullptr;
  const float* zeros = nullptr;
  int64_t group = 0;
  const float* lut = nullptr;
};

}  // namespace qf
