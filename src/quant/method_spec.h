// quant/method_spec.h — every quantization method as one row: its name, what it writes, the bit
// widths it can have, whether it needs calibration text, whether it may write GGUF, and the
// method options it takes. The CLI's `--method` choices, `--help` line and the refusal of foreign
// options ("--act-order does not apply to --method awq (it is for gptq, awq+gptq)") all come from
// this table; adding a method is a row here plus its solver.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace qf {

struct MethodSpec {
  const char* name;                  // --method NAME
  const char* writes;                // the default output layout, for --help
  int min_bits, max_bits;            // --bits range; 0, 0: the grid's own check (quant/quantize_hf)
  const char* bits_rule;             // why, when --bits is outside the range
  bool check_default_bits;           // the range applies to the default --bits too, not only a given one
  bool gguf;                         // may write --format gguf (else its own layout only)
  std::vector<const char*> options;  // method options it takes; every other one is refused
};

const std::vector<MethodSpec>& method_specs();
const MethodSpec* find_method(std::string_view name);
std::vector<std::string> method_names();
// Every method option of any row, for the CLI to record which were given.
std::vector<std::string> method_option_names();

// Refuses options that mean nothing for `method` (given: the options on the command line) and a
// --bits the method cannot have; the message names the option and the methods it is for.
Status check_method_options(const MethodSpec& method, const std::vector<std::string>& given, int bits,
                            bool gguf);

}  // namespace qf
