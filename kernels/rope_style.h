// How rotary position embedding pairs the rotated dimensions. Shared by the
// kernels and the model configs that select them (kernels/ depends on nothing
// above it; engine/config includes this header).
#ifndef MTLA_KERNELS_ROPE_STYLE_H_
#define MTLA_KERNELS_ROPE_STYLE_H_

namespace mtla {

enum class RopeStyle {
  kInterleaved,  // pairs (2j, 2j+1): the paper's mtla/MTLA.py and fairseq
  kHalfSplit,    // pairs (j, j + d/2): transformers' rotate_half (LlamaMTLA)
};

}  // namespace mtla

#endif  // MTLA_KERNELS_ROPE_STYLE_H_
