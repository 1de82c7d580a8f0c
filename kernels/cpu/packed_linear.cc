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
  using Key = std::tuple<int64_t, int64_t, int64_t, bool, bool>;  // n, ldx, ldy, bias, accumulate
  // nullopt: oneDNN has only its slow reference kernel for this shape (e.g.
  // strided rows with blocked weights); Apply then declines.
  std::map<Key, std::optional<dnnl::matmul>> primitives;  // guarded by mu
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
    const State::Key key{n, ldx, ldy, bias != nullptr, accumulate};
    dnnl::matmul primitive;
    {
      std::lock_guard<std::mutex> lock(state_->mu);
      auto it = state_->primitives.find(key);
      if (it == state_->primitives.end()) {
        dnnl::matmul::primitive_desc desc = MakeDesc(
            n, in_, out_, ldx, ldy, state_->weights.get_desc(), bias != nullptr, accumulate);
        std::optional<dnnl::matmul> made;
        if (std::string_view(desc.impl_info_str()).substr(0, 4) != "ref:") made.emplace(desc);
        it = state_->primitives.emplace(key, std::move(made)).first;
      }
      if (!it->second.has_value()) return false;
      primitive = *it->second;
    }
    const dnnl::engine& engine = CpuEngine();
    dnnl::memory src({{n, in_}, dt::f32, dnnl::memory::dims{ldx, 1}}, engine,
                     const_cast<float*>(x));
    dnnl::memory dst({{n, out_}, dt::f32, dnnl::memory::dims{ldy, 1}}, engine, y);
    std::unordered_map<int, dnnl::memory> args{
        {DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, state_->weights}, {DNNL_ARG_DST, dst}};
    if (bias != nullptr) {
      args.emplace(DNNL_ARG_BIAS, dnnl::memory({{1, out_}, dt::f32, tag::ab}, engine,
                                               const_cast<float*>(bias)));
    }
    dnnl::stream stream(engine);
    primitive.execute(stream, args);
    stream.wait();
    return true;
  } catch (const dnnl::error&) {
    return false;
  }
}

}  // namespace mtla::cpu
