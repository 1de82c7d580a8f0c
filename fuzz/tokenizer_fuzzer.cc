// Fuzzes the SentencePiece model parser and decoder (engine/tokenizer): the
// input is a model file. Load() must reject malformed models with a status;
// an accepted model must decode every id (and out-of-range ids) and the
// incremental detokenizer's deltas must add up to the whole decode.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "engine/tokenizer/tokenizer.h"
#include "fuzz/memfd_file.h"
#include "google/protobuf/stubs/logging.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // proto2 string fields with invalid UTF-8 parse, with a log line each time.
  google::protobuf::SetLogHandler([](google::protobuf::LogLevel, const char*, int,
                                     const std::string&) {});
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static mtla::fuzz::MemfdFile* file = new mtla::fuzz::MemfdFile("spm_model");
  file->Set(data, size);
  auto tokenizer = mtla::Tokenizer::Load(file->path());
  if (!tokenizer.ok()) return 0;
  const int vocab = (*tokenizer)->vocab_size();

  // Every piece once, plus ids outside the vocabulary.
  std::vector<int32_t> ids = {-1, vocab, INT32_MIN, INT32_MAX};
  for (int32_t id = 0; id < vocab && id < 4096; ++id) ids.push_back(id);
  (void)(*tokenizer)->Decode(ids);

  // A pseudo-random sequence seeded by the input, decoded incrementally.
  uint32_t state = 2166136261u;
  for (size_t i = 0; i < size; ++i) state = (state ^ data[i]) * 16777619u;
  std::vector<int32_t> sequence;
  mtla::IncrementalDetokenizer detokenizer(tokenizer->get());
  std::string streamed;
  for (int step = 0; step < 64; ++step) {
    std::vector<int32_t> chunk;
    for (int k = static_cast<int>(state % 3); k >= 0; --k) {
      state = state * 1103515245u + 12345u;
      chunk.push_back(static_cast<int32_t>(state % static_cast<uint32_t>(vocab + 2)) - 1);
    }
    sequence.insert(sequence.end(), chunk.begin(), chunk.end());
    streamed += detokenizer.Add(chunk);
  }
  streamed += detokenizer.Flush();
  if (streamed != detokenizer.text() || streamed != (*tokenizer)->Decode(sequence)) {
    __builtin_trap();
  }
  return 0;
}
