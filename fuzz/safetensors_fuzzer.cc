// Fuzzes the safetensors reader (engine/weights): Open() must reject every
// malformed header with a status, and every tensor it accepts must be
// readable in full (ReadFloat converts every byte of its range).
#include <cstddef>
#include <cstdint>

#include "engine/weights/safetensors.h"
#include "fuzz/memfd_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static mtla::fuzz::MemfdFile* file = new mtla::fuzz::MemfdFile("safetensors");
  file->Set(data, size);
  auto opened = mtla::SafetensorsFile::Open(file->path());
  if (!opened.ok()) return 0;
  const mtla::SafetensorsFile& st = **opened;
  for (const std::string& name : st.names()) {
    const mtla::TensorInfo* info = st.find(name);
    if (info == nullptr) __builtin_trap();
    auto values = st.ReadFloat(name);
    if (!values.ok() || static_cast<int64_t>(values->size()) != info->num_elements()) {
      __builtin_trap();  // an accepted tensor must be readable
    }
    // A wrong expected shape is an error, never a crash.
    (void)st.ReadFloat(name, {info->num_elements() + 1});
  }
  (void)st.ReadFloat("no such tensor");
  return 0;
}
