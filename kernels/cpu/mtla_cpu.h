// CPU kernels for MTLA over the paged temporal-latent cache (DESIGN.md s.1).
// They define the semantics every other backend is tested against.
//
// Cache layout for one layer: row (block b, slot-in-block k) is at
//   rows + (b * block_slots + k) * slot_width, holding [latent (r) | k_pe (dR)].
// Token t (0-based, counted over the whole sequence) belongs to slot t / s.
#ifndef MTLA_KERNELS_CPU_MTLA_CPU_H_
#define MTLA_KERNELS_CPU_MTLA_CPU_H_

#include <cstdint>

namespace mtla::cpu {

// One layer's view of the paged cache.
struct PagedCacheView {
  float* rows = nullptr;
  int block_slots = 0;
  int kv_lora_rank = 0;  // r
  int rope_dim = 0;      // dR

  int slot_width() const { return kv_lora_rank + rope_dim; }
  float* Row(const int32_t* block_table, int64_t slot) const {
    return rows + (static_cast<int64_t>(block_table[slot / block_slots]) * block_slots +
                   slot % block_slots) * slot_width();
  }
};

// The part of a step that belongs to one sequence: its new tokens occupy rows
// [token_offset, token_offset + num_tokens) of the step's token arrays and
// sequence positions [start, start + num_tokens).
struct SequenceChunk {
  const int32_t* block_table = nullptr;  // covers every slot up to start + num_tokens
  int64_t start = 0;
  int num_tokens = 0;
  int64_t token_offset = 0;
};

// Merge new tokens into their slots, in order, writing through the block
// tables: token t opens slot t / s when t % s == 0 (latent = w_t * c_t) and
// otherwise adds w_t * c_t to it; the slot's k_pe becomes the token's k_pe.
// The merge weight is w_t = sigmoid(dot(hyper_c[t / s], hyper_p[row])).
struct MtlaAppendParams {
  PagedCacheView cache;
  const SequenceChunk* chunks = nullptr;
  int num_chunks = 0;
  int down_rate = 1;
  const float* latent = nullptr;  // [N, ld_latent]: kv_norm(c), width r
  int64_t ld_latent = 0;
  const float* k_pe = nullptr;  // [N, ld_k_pe]: rotated k_pe, width dR
  int64_t ld_k_pe = 0;
  const float* hyper_p = nullptr;  // [N, hyper_rank]: fc_p(c) rows
  const float* hyper_c = nullptr;  // [max_slots, hyper_rank]: fc_c(PE(k)) rows
  int64_t hyper_c_rows = 0;        // max_slots; slots beyond are a precondition failure
  int hyper_rank = 0;
  // Optional out [N, slot_width]: each token's key row, i.e. its slot's state
  // right after merging that token (the stride-aware mask's key at j == i).
  float* partial_rows = nullptr;
};
void MtlaAppend(const MtlaAppendParams& p);

// Absorbed-form attention for every token of a step. Query token at sequence
// position t sees the complete slots 0 .. t/s - 1 read from the cache and its
// own partial row (stride-aware causal mask). Scores use
//   q[row, h] . key_row  (key_row = [latent | k_pe], q = [q_nope W_UK | q_pe])
// times `scale`; the output per head is sum_j p_j * latent_j (width r).
// Preconditions: the cache already holds every complete slot the queries see
// (MtlaAppend ran for this step).
//
// Implementations (MtlaAttentionImpl): the scalar reference below defines the
// semantics; the AVX-512 kernel (mtla_attention_avx512.cc) computes each
// cache tile of 16 slots as small GEMMs with a one-pass online softmax and
// splits long key ranges across threads (log-sum-exp combine). kAuto picks
// AVX-512 when the CPU has AVX-512F/DQ and the shape allows (r % 16 == 0,
// at most 256 heads), else the reference; MTLA_ATTENTION=reference in the
// environment forces the reference (side-by-side benchmarks).
// Tolerance between the two: see kernels/cpu/mtla_cpu_test.cc.
// Thread-compatible: concurrent calls with distinct `out` and `scratch` are
// safe (each runs its own OpenMP team; plans live in thread-local storage).
struct MtlaAttentionParams {
  PagedCacheView cache;
  const SequenceChunk* chunks = nullptr;
  int num_chunks = 0;
  int down_rate = 1;
  int num_heads = 0;
  const float* q = nullptr;             // [N, num_heads, slot_width]
  const float* partial_rows = nullptr;  // [N, slot_width]
  float scale = 1.0f;
  float* out = nullptr;  // [N, num_heads, r]
  // Room for the partial results of split key ranges: at least
  // MtlaAttentionScratchFloats(p) floats, owned by the caller (so a step
  // allocates nothing). Null: the kernel allocates what it needs.
  float* scratch = nullptr;
  int64_t scratch_floats = 0;
};

enum class MtlaAttentionImpl { kAuto, kReference, kAvx512 };

// kAvx512 when requested and unavailable (CPU or shape) runs the reference.
void MtlaAttention(const MtlaAttentionParams& p, MtlaAttentionImpl impl = MtlaAttentionImpl::kAuto);

// The implementation kAuto runs for these params on this CPU (honours
// MTLA_ATTENTION=reference).
MtlaAttentionImpl SelectedMtlaAttentionImpl(const MtlaAttentionParams& p);

// True when the CPU runs AVX-512F and AVX-512DQ code.
bool CpuHasAvx512();

// Scratch floats MtlaAttention needs for these params with the current
// OpenMP thread count (0 when no key range is split).
int64_t MtlaAttentionScratchFloats(const MtlaAttentionParams& p);

}  // namespace mtla::cpu

#endif  // MTLA_KERNELS_CPU_MTLA_CPU_H_
