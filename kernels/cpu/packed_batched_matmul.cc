#include "kernels/cpu/packed_batched_matmul.h"

#include <map>
#include <mutex>
#include <optional>
#include <string_view>
#include <tuple>
#include <unordered_map>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "kernels/cpu/packed_row_chunks.h"
#include "oneapi/dnnl/dnnl.hpp"

namespace mtla::cpu {
namespace {

using dt = dnnl::memory::data_type;
using tag = dnnl::memory::format_tag;

const dnnl::engine& Engine() {
  static const dnnl::engine* engine = new dnnl::engine(dnnl::engine::kind::cpu, 0);
  return *engine;
}

// Row count that picks the packed layout (as PackedLinear's kLayoutRows).
constexpr int64_t kLayoutRows = 32;

dnnl::memory::desc Operand(int batch, int64_t rows, int cols, BatchedStrides s) {
  return dnnl::memory::desc({batch, rows, cols}, dt::f32, dnnl::memory::dims{s.batch, s.row, 1});
}

}  // namespace

struct PackedBatchedMatmul::State {
  dnnl::memory weights;  // packed, owned by oneDNN
  std::mutex mu;
  using Key = std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t>;  // rows, x and y strides
  std::map<Key, std::optional<dnnl::matmul>> primitives;  // guarded by mu; nullopt: "ref:" only

  // The cached primitive for a chunk of `rows` rows (packed_row_chunks.h),
  // created on first use.
  std::optional<dnnl::matmul> Primitive(int batch, int64_t rows, int k, int n, BatchedStrides xs,
                                        BatchedStrides ys) {
    const Key key{rows, xs.batch, xs.row, ys.batch, ys.row};
    std::lock_guard<std::mutex> lock(mu);
    auto it = primitives.find(key);
    if (it == primitives.end()) {
      dnnl::matmul::primitive_desc desc(
          dnnl::matmul::desc(Operand(batch, rows, k, xs), weights.get_desc(),
                             Operand(batch, rows, n, ys)),
          Engine());
      std::optional<dnnl::matmul> made;
      if (std::string_view(desc.impl_info_str()).substr(0, 4) != "ref:") made.emplace(desc);
      it = primitives.emplace(key, std::move(made)).first;
    }
    return it->second;
  }
};

PackedBatchedMatmul::PackedBatchedMatmul(int batch, int k, int n, std::unique_ptr<State> state)
    : batch_(batch), k_(k), n_(n), state_(std::move(state)) {}

PackedBatchedMatmul::~PackedBatchedMatmul() = default;

absl::StatusOr<std::shared_ptr<const PackedBatchedMatmul>> PackedBatchedMatmul::Create(
    const float* weights, int batch, int k, int n, bool transposed) {
  if (batch <= 0 || k <= 0 || n <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("PackedBatchedMatmul: bad shape [", batch, ", ", k, ", ", n, "]"));
  }
  try {
    dnnl::memory::desc user({batch, k, n}, dt::f32, transposed ? tag::acb : tag::abc);
    dnnl::memory::desc any({batch, k, n}, dt::f32, tag::any);
    dnnl::matmul::primitive_desc layout(
        dnnl::matmul::desc(Operand(batch, kLayoutRows, k, {kLayoutRows * k, k}), any,
                           Operand(batch, kLayoutRows, n, {kLayoutRows * n, n})),
        Engine());
    auto state = std::make_unique<State>();
    state->weights = dnnl::memory(layout.weights_desc(), Engine());
    dnnl::memory source(user, Engine(), const_cast<float*>(weights));
    dnnl::stream stream(Engine());
    dnnl::reorder(source, state->weights).execute(stream, source, state->weights);
    stream.wait();
    return std::shared_ptr<const PackedBatchedMatmul>(
        new PackedBatchedMatmul(batch, k, n, std::move(state)));
  } catch (const dnnl::error& e) {
    return absl::InternalError(absl::StrCat("oneDNN cannot pack a [", batch, ", ", k, ", ", n,
                                            "] batched matmul: ", e.what()));
  }
}

bool PackedBatchedMatmul::Apply(const float* x, int64_t rows, BatchedStrides xs, float* y,
                                BatchedStrides ys) const {
  if (rows <= 0) return true;
  try {
    RowChunkPrimitives<dnnl::matmul> primitives;
    if (!primitives.Gather(rows, [&](int64_t chunk) {
          return state_->Primitive(batch_, chunk, k_, n_, xs, ys);
        })) {
      return false;
    }
    dnnl::stream stream(Engine());
    ForEachRowChunk(rows, [&](int64_t first, int64_t chunk) {
      dnnl::memory src_mem(Operand(batch_, chunk, k_, xs), Engine(),
                           const_cast<float*>(x + first * xs.row));
      dnnl::memory dst_mem(Operand(batch_, chunk, n_, ys), Engine(), y + first * ys.row);
      primitives.For(chunk).execute(stream, {{DNNL_ARG_SRC, src_mem},
                                  {DNNL_ARG_WEIGHTS, state_->weights},
                                  {DNNL_ARG_DST, dst_mem}});
    });
    stream.wait();
    return true;
  } catch (const dnnl::error&) {
    return false;
  }
}

}  // namespace mtla::cpu
