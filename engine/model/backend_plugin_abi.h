// The C entry point of a compute backend loaded at run time: the CUDA backend
// is built as the shared module libmtla_cuda_backend.so, which exports only
// `mtla_backend_plugin_v1` and is loaded with dlopen by the backend factory
// when --device is auto or cuda (never for cpu), and never unloaded.
//
// Why a plugin: the CUDA libraries carry large static TLS (cuBLASLt alone
// 94 KiB). Linked into the server, glibc reserves it in every thread's stack,
// which breaks threads created with small stacks; loaded with dlopen, their
// TLS is allocated on demand instead. The server binary therefore has no CUDA
// library in its DT_NEEDED, and one binary serves on the CPU and the GPU.
//
// Contract: the host and the plugin come from one build. C++ objects cross
// the boundary only behind the opaque pointers below, and the host refuses a
// plugin whose `build_id` differs from its own (a hash of the engine and
// kernel headers and the compiler, see backend_plugin_build_id.h.in), so the
// objects have one layout on both sides. Functions never throw.
#ifndef MTLA_ENGINE_MODEL_BACKEND_PLUGIN_ABI_H_
#define MTLA_ENGINE_MODEL_BACKEND_PLUGIN_ABI_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MTLA_BACKEND_PLUGIN_ABI_VERSION 1u
#define MTLA_BACKEND_PLUGIN_ENTRY_SYMBOL "mtla_backend_plugin_v1"

// What CreateModelBackend passes to `create`.
typedef struct MtlaBackendCreateArgs {
  const void* spec;         // const mtla::DecoderSpec*
  const void* weights;      // const mtla::SafetensorsFile*
  const void* cache;        // const mtla::CacheOptions*
  const char* dtype;        // storage dtype: "fp32", "bf16" or "fp16"
  int32_t max_step_tokens;  // most tokens one Forward() may carry
} MtlaBackendCreateArgs;

typedef struct MtlaBackendPluginV1 {
  uint32_t abi_version;  // MTLA_BACKEND_PLUGIN_ABI_VERSION
  uint32_t struct_size;  // sizeof(MtlaBackendPluginV1)
  const char* build_id;  // must equal the host's
  const char* name;      // the backend's name, e.g. "cuda"
  // 0 when a device can be used here; otherwise an absl::StatusCode value and
  // the reason (NUL-terminated, truncated to `reason_size`).
  int (*probe)(char* reason, size_t reason_size);
  // 0 and a new mtla::ModelBackend* in `*backend` (the caller owns it and
  // deletes it through its virtual destructor); otherwise an absl::StatusCode
  // value (12, UNIMPLEMENTED, when the model's dims have no kernel here) and
  // the reason.
  int (*create)(const MtlaBackendCreateArgs* args, void** backend, char* reason,
                size_t reason_size);
} MtlaBackendPluginV1;

typedef const MtlaBackendPluginV1* (*MtlaBackendPluginEntry)(void);

#ifdef __cplusplus
}  // extern "C"
#endif

#endif  // MTLA_ENGINE_MODEL_BACKEND_PLUGIN_ABI_H_
