#include "kernels/cpu/packed_linear.h"

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

const dnnl::engine& CpuEngine() {
  static const dnnl::engine* engine = new dnnl::engine(dnnl::engine::kind::cpu, 0);
  return *engine;
}

// The row count that picks the packed layout; oneDNN's brgemm matmul chooses
// the same weights layout for every row count, and Apply passes this layout
// explicitly, so any n runs on the same packed copy.
constexpr int64_t kLayoutRows = 32;

dnnl::matmul::primitive_desc MakeDesc(int64_t n, int in, int out, int64_t ldx, int64_t ldy,
                                      const dnnl::memory::desc& weights, bool bias,
                                      bool accumulate) {
  dnnl::memory::desc src({n, in}, dt::f32, dnnl::memory::dims{ldx, 1});
  dnnl::memory::desc dst({n, out}, dt::f32, dnnl::memory::dims{ldy, 1});
  dnnl::primitive_attr attr;
  if (accumulate) {
    dnnl::post_ops ops;
    ops.append_sum(1.0f);
    attr.set_post_ops(ops);
  }
  if (bias) {
    dnnl::memory::desc bias_desc({1, out}, dt::f32, tag::ab);
    return dnnl::matmul::primitive_desc(dnnl::matmul::desc(src, weights, bias_desc, dst), attr,
                                        CpuEngine());
  }
  return dnnl::matmul::primitive_desc(dnnl::matmul::desc(src, weights, dst), attr, CpuEngine());
}

}  // namespace

struct PackedLinear::State {
  dnnl::memory weights;  // packed, owned by oneDNN
  std::mutex mu;
  // rows (packed_row_chunks.h), ldx, ldy, bias, accumulate
  using Key = std::tuple<int64_t, int64_t, int64_t, bool, bool>;
  // nullopt: oneDNN has only its slow reference kernel for this shape (e.g.
  // strided rows with blocked weights); Apply then declines.
  std::map<Key, std::optional<dnnl::matmul>> primitives;  // guarded by mu

  // The cached primitive for a chunk of `rows` rows of a [in, out] product
  // (created on first use); nullopt when oneDNN has only its reference
  // kernel for the shape.
  std::optional<dnnl::matmul> Primitive(int64_t rows, int in, int out, int64_t ldx, int64_t ldy,
                                        bool bias, bool accumulate) {
    const Key key{rows, ldx, ldy, bias, accumulate};
    std::lock_guard<std::mutex> lock(mu);
    auto it = primitives.find(key);
    if (it == primitives.end()) {
      dnnl::matmul::primitive_desc desc =
          MakeDesc(rows, in, out, ldx, ldy, weights.get_desc(), bias, accumulate);
      std::optional<dnnl::matmul> made;
      if (std::string_view(desc.impl_info_str()).substr(0, 4) != "ref:") made.emplace(desc);
      it = primitives.emplace(key, std::move(made)).first;
    }
    return it->second;
  }
};

PackedLinear::PackedLinear(int out, int in, std::unique_ptr<State> state)
    : out_(out), in_(in), state_(std::move(state)) {}

PackedLinear::~PackedLinear() = default;

absl::StatusOr<std::shared_ptr<const PackedLinear>> PackedLinear::Create(const float* weight,
                                                                         int out, int in) {
  if (out <= 0 || in <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("PackedLinear: bad shape [", out, ", ", in, "]"));
  }
  try {
    // W row-major [out, in] is the (in x out) matmul weights matrix in "ba" order.
    dnnl::memory::desc user({in, out}, dt::f32, tag::ba);
    dnnl::memory::desc any({in, out}, dt::f32, tag::any);
    dnnl::matmul::primitive_desc layout = MakeDesc(kLayoutRows, in, out, in, out, any, false, false);
    auto state = std::make_unique<State>();
    state->weights = dnnl::memory(layout.weights_desc(), CpuEngine());
    dnnl::memory source(user, CpuEngine(), const_cast<float*>(weight));
    dnnl::stream stream(CpuEngine());
    dnnl::reorder(source, state->weights).execute(stream, source, state->weights);
    stream.wait();
    return std::shared_ptr<const PackedLinear>(new PackedLinear(out, in, std::move(state)));
  } catch (const dnnl::error& e) {
    return absl::InternalError(absl::StrCat("oneDNN cannot pack a [", out, ", ", in,
                                            "] linear layer: ", e.what()));
  }
}

bool PackedLinear::Apply(const float* x, int64_t n, const float* bias, float* y, int64_t ldx,
                         int64_t ldy, bool accumulate) const {
  if (n <= 0) return true;
  if (ldx == 0) ldx = in_;
  if (ldy == 0) ldy = out_;
  try {
    RowChunkPrimitives<dnnl::matmul> primitives;
    if (!primitives.Gather(n, [&](int64_t rows) {
          return state_->Primitive(rows, in_, out_, ldx, ldy, bias != nullptr, accumulate);
        })) {
      return false;
    }
    const dnnl::engine& engine = CpuEngine();
    dnnl::stream stream(engine);
    std::optional<dnnl::memory> bias_memory;
    if (bias != nullptr) {
      bias_memory.emplace(dnnl::memory::desc({1, out_}, dt::f32, tag::ab), engine,
                          const_cast<float*>(bias));
    }
    ForEachRowChunk(n, [&](int64_t first, int64_t rows) {
      dnnl::memory src({{rows, in_}, dt::f32, dnnl::memory::dims{ldx, 1}}, engine,
                       const_cast<float*>(x + first * ldx));
      dnnl::memory dst({{rows, out_}, dt::f32, dnnl::memory::dims{ldy, 1}}, engine,
                       y + first * ldy);
      std::unordered_map<int, dnnl::memory> args{
          {DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, state_->weights}, {DNNL_ARG_DST, dst}};
      if (bias_memory) args.emplace(DNNL_ARG_BIAS, *bias_memory);
      primitives.For(rows).execute(stream, args);
    });
    stream.wait();
    return true;
  } catch (const dnnl::error&) {
    return false;
  }
}

}  // namespace mtla::cpu
