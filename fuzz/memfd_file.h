// An anonymous in-memory file (memfd) for fuzzing readers that take a path
// (safetensors, SentencePiece models): each Set() replaces its contents and
// path() names it as /proc/self/fd/N, a regular file that open/mmap accept.
//
// Thread-compatible; one per fuzzer process is enough.
#ifndef MTLA_FUZZ_MEMFD_FILE_H_
#define MTLA_FUZZ_MEMFD_FILE_H_

#include <cstddef>
#include <cstdint>
#include <string>

namespace mtla::fuzz {

class MemfdFile {
 public:
  // Aborts when the kernel has no memfd_create (a fuzzer cannot run without it).
  explicit MemfdFile(const char* name);
  ~MemfdFile();
  MemfdFile(const MemfdFile&) = delete;
  MemfdFile& operator=(const MemfdFile&) = delete;

  // Replaces the file's contents with `size` bytes at `data`.
  void Set(const uint8_t* data, size_t size);
  const std::string& path() const { return path_; }

 private:
  int fd_ = -1;
  std::string path_;
};

}  // namespace mtla::fuzz

#endif  // MTLA_FUZZ_MEMFD_FILE_H_
