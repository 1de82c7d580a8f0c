// How much KV cache a backend allocates for a model.
#ifndef MTLA_ENGINE_MODEL_CACHE_OPTIONS_H_
#define MTLA_ENGINE_MODEL_CACHE_OPTIONS_H_

#include <cstddef>

namespace mtla {

struct CacheOptions {
  int block_slots = 16;              // slots per block
  size_t memory_bytes = 256u << 20;  // cache budget; sets the number of blocks
  int num_blocks = 0;                // > 0: exactly this many blocks (overrides memory_bytes)
  int max_context_tokens = 0;        // > 0: overrides the model's context limit
};

}  // namespace mtla

#endif  // MTLA_ENGINE_MODEL_CACHE_OPTIONS_H_
