// Fuzzes the LlamaMTLA config.json parser (engine/config): any text gives a
// config that passed Validate() or a status; the derived sizes the loader
// uses must then be computable without overflow.
#include <cstddef>
#include <cstdint>
#include <string>

#include "engine/config/model_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  auto config = mtla::ParseLlamaMtlaConfig(text);
  if (!config.ok()) return 0;
  if (!config->Validate().ok()) __builtin_trap();  // parse returns only valid configs
  volatile int sink = config->attention.qk_head_dim() + config->attention.slot_width();
  (void)sink;
  return 0;
}
