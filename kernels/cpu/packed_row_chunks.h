// The row counts the packed oneDNN products (packed_linear.h,
// packed_batched_matmul.h) compile primitives for. oneDNN 2.x JIT-compiles a
// matmul primitive for one exact row count (0.7-6.5 ms each on the 2-core
// EPYC this was measured on; a runtime row count falls back to the reference
// kernel, ~1000x slower), so a product whose row count changes on every call
// (an encoder batch's stacked segments, a prefix cut by the token budget)
// would compile on every call and grow its primitive cache without bound.
// Instead a call is cut into row chunks from a fixed set: counts up to
// kExactChunkRows exactly (decode steps), larger counts as 512-, 256-, 128-
// and 64-row chunks, largest first, and an exact rest of at most
// kExactChunkRows. So a product has at most kMaxChunkShapes primitives per
// stride combination, and rows are independent, so the result is the same.
#ifndef MTLA_KERNELS_CPU_PACKED_ROW_CHUNKS_H_
#define MTLA_KERNELS_CPU_PACKED_ROW_CHUNKS_H_

#include <cstdint>
#include <optional>
#include <utility>

namespace mtla::cpu {

inline constexpr int64_t kExactChunkRows = 64;
inline constexpr int64_t kLargeChunkRows[] = {512, 256, 128};
inline constexpr int kMaxChunkShapes = static_cast<int>(kExactChunkRows) + 3;

// Calls chunk(first_row, rows) for consecutive chunks covering [0, n), in
// order. Every `rows` is in [1, kExactChunkRows] or in kLargeChunkRows.
template <typename Chunk>
void ForEachRowChunk(int64_t n, Chunk&& chunk) {
  int64_t at = 0;
  for (int64_t size : kLargeChunkRows) {
    while (n - at > kExactChunkRows && n - at >= size) {
      chunk(at, size);
      at += size;
    }
  }
  // Now n - at is below 128: one 64-row chunk if more than 64 rows are left.
  if (n - at > kExactChunkRows) {
    chunk(at, kExactChunkRows);
    at += kExactChunkRows;
  }
  if (n > at) chunk(at, n - at);
}

// The primitives of one call's chunks, one per distinct chunk size (at most
// five), gathered before any runs so that a call writes nothing unless every
// chunk has one.
template <typename Primitive>
class RowChunkPrimitives {
 public:
  // make(rows) -> std::optional<Primitive> for each distinct chunk size of n
  // rows; false as soon as one gives nullopt.
  template <typename Make>
  bool Gather(int64_t n, Make&& make) {
    bool complete = true;
    ForEachRowChunk(n, [&](int64_t, int64_t rows) {
      if (!complete || Find(rows) != nullptr) return;
      std::optional<Primitive> made = make(rows);
      if (!made.has_value()) {
        complete = false;
        return;
      }
      items_[size_++] = {rows, std::move(*made)};
    });
    return complete;
  }
  // The gathered primitive for chunks of `rows` rows.
  const Primitive& For(int64_t rows) const { return *Find(rows); }

 private:
  const Primitive* Find(int64_t rows) const {
    for (int i = 0; i < size_; ++i) {
      if (items_[i].first == rows) return &items_[i].second;
    }
    return nullptr;
  }
  std::pair<int64_t, Primitive> items_[5];
  int size_ = 0;
};

}  // namespace mtla::cpu

#endif  // MTLA_KERNELS_CPU_PACKED_ROW_CHUNKS_H_
