#include "tools/conformance/attention_check.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "engine/common/status_macros.h"
#include "engine/kv_cache/kv_cache_manager.h"
#include "engine/model/mtla_attention.h"
#include "engine/model/mtla_attention_reference.h"
#include "engine/weights/safetensors.h"

namespace mtla::conformance {
namespace {

constexpr double kAttentionTolerance = 1e-5;

absl::StatusOr<double> MetaNumber(const SafetensorsFile& file, const std::string& key) {
  auto it = file.metadata().find(key);
  if (it == file.metadata().end()) {
    return absl::InvalidArgumentError(
        absl::StrCat(file.path(), ": metadata field '", key, "' is missing"));
  }
  double value = 0;
  if (!absl::SimpleAtod(it->second, &value)) {
    return absl::InvalidArgumentError(absl::StrCat(file.path(), ": metadata field '", key,
                                                   "' is not a number: ", it->second));
  }
  return value;
}

absl::StatusOr<MtlaAttentionConfig> ConfigFromMetadata(const SafetensorsFile& file) {
  MtlaAttentionConfig c;
  auto get_int = [&](const std::string& key, int* out) -> absl::Status {
    ASSIGN_OR_RETURN(double v, MetaNumber(file, key));
    *out = static_cast<int>(v);
    return absl::OkStatus();
  };
  RETURN_IF_ERROR(get_int("embed_dim", &c.embed_dim));
  RETURN_IF_ERROR(get_int("num_heads", &c.num_heads));
  RETURN_IF_ERROR(get_int("q_lora_rank", &c.q_lora_rank));
  RETURN_IF_ERROR(get_int("kv_lora_rank", &c.kv_lora_rank));
  RETURN_IF_ERROR(get_int("qk_nope_head_dim", &c.qk_nope_head_dim));
  RETURN_IF_ERROR(get_int("qk_rope_head_dim", &c.qk_rope_head_dim));
  RETURN_IF_ERROR(get_int("v_head_dim", &c.v_head_dim));
  RETURN_IF_ERROR(get_int("down_rate", &c.down_rate));
  int low_rank = 4;
  if (file.metadata().contains("hypernet_low_rank")) {
    RETURN_IF_ERROR(get_int("hypernet_low_rank", &low_rank));
  }
  c.hypernet_rank = low_rank > 0 ? c.kv_lora_rank / low_rank : 0;
  if (file.metadata().contains("rope_theta")) {
    ASSIGN_OR_RETURN(double theta, MetaNumber(file, "rope_theta"));
    c.rope_theta = static_cast<float>(theta);
  }
  if (file.metadata().contains("layer_norm_eps")) {
    ASSIGN_OR_RETURN(double eps, MetaNumber(file, "layer_norm_eps"));
    c.layer_norm_eps = static_cast<float>(eps);
  }
  auto style = file.metadata().find("rope_style");
  c.rope_style = RopeStyle::kInterleaved;
  if (style != file.metadata().end() && style->second.rfind("half", 0) == 0) {
    c.rope_style = RopeStyle::kHalfSplit;
  }
  c.bias = file.contains("attn.wq.bias") || file.contains("attn.wq_a.bias");
  RETURN_IF_ERROR(c.Validate());
  return c;
}

// One layer over a paged cache with small blocks, so that sequences span many
// blocks and their tables interleave.
class LayerHarness {
 public:
  LayerHarness(const MtlaAttentionLayer& layer, int batch, int64_t tokens)
      : layer_(layer), batch_(batch) {
    const MtlaAttentionConfig& c = layer.config();
    geometry_.num_layers = 1;
    geometry_.kv_lora_rank = c.kv_lora_rank;
    geometry_.rope_dim = c.qk_rope_head_dim;
    geometry_.down_rate = c.down_rate;
    geometry_.block_slots = 2;
    num_blocks_ = static_cast<int>(batch * geometry_.BlocksForTokens(tokens) + 4);
    manager_ = std::make_unique<KvCacheManager>(geometry_, num_blocks_);
    storage_.assign(geometry_.BlockElements() * num_blocks_, std::nanf(""));
    view_.rows = storage_.data();
    view_.block_slots = geometry_.block_slots;
    view_.kv_lora_rank = c.kv_lora_rank;
    view_.rope_dim = c.qk_rope_head_dim;
    for (int b = 0; b < batch; ++b) (void)manager_->AddSequence(b);
  }

  // Feeds x [B, T, E] in steps of `schedule[i]` tokens (all sequences batched
  // in each step); returns out [B, T, E].
  absl::StatusOr<std::vector<float>> Run(const std::vector<float>& x,
                                         const std::vector<int32_t>& positions, int64_t T,
                                         const std::vector<int>& schedule) {
    const int e = layer_.config().embed_dim;
    std::vector<float> out(static_cast<size_t>(batch_) * T * e);
    int64_t done = 0;
    MtlaAttentionWorkspace ws;
    for (int n : schedule) {
      std::vector<cpu::SequenceChunk> chunks;
      std::vector<float> step_x(static_cast<size_t>(batch_) * n * e);
      std::vector<int32_t> step_pos(static_cast<size_t>(batch_) * n);
      std::vector<BlockCopy> copies;
      for (int b = 0; b < batch_; ++b) {
        RETURN_IF_ERROR(manager_->Append(b, n, &copies));
        for (int i = 0; i < n; ++i) {
          std::memcpy(step_x.data() + (b * n + i) * e, x.data() + (b * T + done + i) * e,
                      sizeof(float) * e);
          step_pos[b * n + i] = positions[b * T + done + i];
        }
        chunks.push_back({manager_->block_table(b).data(), done, n, static_cast<int64_t>(b) * n});
      }
      std::vector<float> step_out(step_x.size());
      layer_.Forward(step_x.data(), step_pos.data(), chunks.data(), batch_,
                     static_cast<int64_t>(batch_) * n, view_, &ws, step_out.data());
      for (int b = 0; b < batch_; ++b) {
        std::memcpy(out.data() + (b * T + done) * e, step_out.data() + b * n * e,
                    sizeof(float) * n * e);
      }
      done += n;
    }
    return out;
  }

  // Cache contents [B, slots, r] and [B, slots, dR] read through the tables.
  void ReadCache(int64_t slots, std::vector<float>* latent, std::vector<float>* k_pe) const {
    const int r = view_.kv_lora_rank, dr = view_.rope_dim;
    latent->clear();
    k_pe->clear();
    for (int b = 0; b < batch_; ++b) {
      const std::vector<BlockId>& table = manager_->block_table(b);
      for (int64_t k = 0; k < slots; ++k) {
        const float* row = view_.Row(table.data(), k);
        latent->insert(latent->end(), row, row + r);
        k_pe->insert(k_pe->end(), row + r, row + r + dr);
      }
    }
  }

 private:
  const MtlaAttentionLayer& layer_;
  int batch_;
  KvCacheGeometry geometry_;
  int num_blocks_ = 0;
  std::unique_ptr<KvCacheManager> manager_;
  std::vector<float> storage_;
  cpu::PagedCacheView view_;
};

}  // namespace

absl::Status CheckAttentionFile(const std::string& path, CheckReport* report) {
  ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsFile> file, SafetensorsFile::Open(path));
  ASSIGN_OR_RETURN(MtlaAttentionConfig config, ConfigFromMetadata(*file));
  const std::string subject = std::filesystem::path(path).stem().string();
  const TensorInfo* x_info = file->find("input.x");
  if (x_info == nullptr || x_info->shape.size() != 3) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": tensor 'input.x' of shape (B, T, E) is required"));
  }
  const int batch = static_cast<int>(x_info->shape[0]);
  const int64_t T = x_info->shape[1];
  const int e = config.embed_dim;
  ASSIGN_OR_RETURN(std::vector<float> x, file->ReadFloat("input.x", {batch, T, e}));
  std::vector<int32_t> positions(static_cast<size_t>(batch) * T);
  if (file->contains("input.positions")) {
    ASSIGN_OR_RETURN(std::vector<float> pos, file->ReadFloat("input.positions", {batch, T}));
    for (size_t i = 0; i < pos.size(); ++i) positions[i] = static_cast<int32_t>(pos[i]);
  } else {
    for (int b = 0; b < batch; ++b)
      for (int64_t t = 0; t < T; ++t) positions[b * T + t] = static_cast<int32_t>(t);
  }
  const int64_t slots = (T + config.down_rate - 1) / config.down_rate;
  ASSIGN_OR_RETURN(MtlaAttentionWeights weights,
                   LoadMtlaAttentionWeights(*file, "attn", config, slots + 1));
  ASSIGN_OR_RETURN(std::vector<float> full, file->ReadFloat("output.full", {batch, T, e}));

  // Parallel path: the dense, unabsorbed reference.
  std::vector<float> dense(full.size());
  std::vector<float> dense_latent(static_cast<size_t>(batch) * slots * config.kv_lora_rank);
  std::vector<float> dense_k_pe(static_cast<size_t>(batch) * slots * config.qk_rope_head_dim);
  for (int b = 0; b < batch; ++b) {
    MtlaDenseReference(config, weights, x.data() + b * T * e, T, positions.data() + b * T,
                       dense.data() + b * T * e,
                       dense_latent.data() + b * slots * config.kv_lora_rank,
                       dense_k_pe.data() + b * slots * config.qk_rope_head_dim);
  }
  report->Compare(subject, "full (dense parallel reference)", dense, full, kAttentionTolerance);

  MtlaAttentionLayer layer(config, std::move(weights));
  const bool has_cache = file->contains("cache.latent") && file->contains("cache.k_pe");
  std::vector<float> ref_latent, ref_k_pe;
  if (has_cache) {
    ASSIGN_OR_RETURN(ref_latent, file->ReadFloat("cache.latent", {batch, slots, config.kv_lora_rank}));
    ASSIGN_OR_RETURN(ref_k_pe, file->ReadFloat("cache.k_pe", {batch, slots, config.qk_rope_head_dim}));
  }
  auto check_cache = [&](const LayerHarness& harness, const std::string& path_name) {
    std::vector<float> latent, k_pe;
    harness.ReadCache(slots, &latent, &k_pe);
    const std::vector<float>& want_latent = has_cache ? ref_latent : dense_latent;
    const std::vector<float>& want_k_pe = has_cache ? ref_k_pe : dense_k_pe;
    const std::string source = has_cache ? "" : " vs dense";
    report->Compare(subject, path_name + " cache.latent" + source, latent, want_latent,
                    kAttentionTolerance);
    report->Compare(subject, path_name + " cache.k_pe" + source, k_pe, want_k_pe,
                    kAttentionTolerance);
  };

  // Paged prefill of the whole sequence in one step.
  {
    LayerHarness harness(layer, batch, T);
    ASSIGN_OR_RETURN(std::vector<float> out, harness.Run(x, positions, T, {static_cast<int>(T)}));
    report->Compare(subject, "full (paged prefill)", out, full, kAttentionTolerance);
    check_cache(harness, "prefill");
  }
  // Token by token through the paged cache.
  {
    LayerHarness harness(layer, batch, T);
    ASSIGN_OR_RETURN(std::vector<float> out,
                     harness.Run(x, positions, T, std::vector<int>(T, 1)));
    if (file->contains("output.incremental")) {
      ASSIGN_OR_RETURN(std::vector<float> ref, file->ReadFloat("output.incremental", {batch, T, e}));
      report->Compare(subject, "incremental", out, ref, kAttentionTolerance);
    } else {
      report->Compare(subject, "incremental vs output.full", out, full, kAttentionTolerance);
    }
    check_cache(harness, "incremental");
  }
  // Prefill of prompt_len tokens, then decode.
  {
    int prompt_len = static_cast<int>(std::max<int64_t>(1, T / 2));
    if (file->metadata().contains("prompt_len")) {
      ASSIGN_OR_RETURN(double p, MetaNumber(*file, "prompt_len"));
      prompt_len = static_cast<int>(p);
    }
    if (prompt_len < 1 || prompt_len > T) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": prompt_len ", prompt_len, " outside [1, ", T, "]"));
    }
    std::vector<int> schedule = {prompt_len};
    for (int64_t t = prompt_len; t < T; ++t) schedule.push_back(1);
    LayerHarness harness(layer, batch, T);
    ASSIGN_OR_RETURN(std::vector<float> out, harness.Run(x, positions, T, schedule));
    if (file->contains("output.prefill_decode")) {
      ASSIGN_OR_RETURN(std::vector<float> ref,
                       file->ReadFloat("output.prefill_decode", {batch, T, e}));
      report->Compare(subject, "prefill_decode", out, ref, kAttentionTolerance);
    } else {
      report->Compare(subject, "prefill_decode vs output.full", out, full, kAttentionTolerance);
    }
    check_cache(harness, "prefill_decode");
  }
  return absl::OkStatus();
}

}  // namespace mtla::conformance
