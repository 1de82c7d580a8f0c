// ForEachRowChunk: consecutive chunks that cover [0, n) exactly, every size
// from the bounded set, few distinct sizes per call, and no more than
// kMaxChunkShapes sizes over every n.
#include "kernels/cpu/packed_row_chunks.h"

#include <set>
#include <vector>

#include "gtest/gtest.h"

namespace mtla::cpu {
namespace {

bool Allowed(int64_t rows) {
  if (rows >= 1 && rows <= kExactChunkRows) return true;
  for (int64_t size : kLargeChunkRows) {
    if (rows == size) return true;
  }
  return false;
}

TEST(PackedRowChunksTest, CoversEveryRowOnceFromTheBoundedSet) {
  std::set<int64_t> every_size;
  for (int64_t n = 0; n <= 5000; ++n) {
    SCOPED_TRACE(n);
    int64_t next = 0;
    std::set<int64_t> sizes;
    int chunks = 0;
    ForEachRowChunk(n, [&](int64_t first, int64_t rows) {
      EXPECT_EQ(first, next);
      EXPECT_TRUE(Allowed(rows)) << rows;
      next = first + rows;
      sizes.insert(rows);
      ++chunks;
    });
    EXPECT_EQ(next, n);
    EXPECT_LE(sizes.size(), 5u);  // Apply's fixed-size primitive list
    EXPECT_LE(chunks, n / 512 + 4);
    if (n <= kExactChunkRows) {
      EXPECT_EQ(chunks, n == 0 ? 0 : 1);  // decode steps: one call
    }
    every_size.insert(sizes.begin(), sizes.end());
  }
  EXPECT_EQ(every_size.size(), static_cast<size_t>(kMaxChunkShapes));
}

TEST(PackedRowChunksTest, LargestChunksFirst) {
  std::vector<int64_t> got;
  ForEachRowChunk(1335, [&](int64_t, int64_t rows) { got.push_back(rows); });
  EXPECT_EQ(got, (std::vector<int64_t>{512, 512, 256, 55}));
  got.clear();
  ForEachRowChunk(127, [&](int64_t, int64_t rows) { got.push_back(rows); });
  EXPECT_EQ(got, (std::vector<int64_t>{64, 63}));
}

}  // namespace
}  // namespace mtla::cpu
