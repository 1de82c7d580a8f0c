#include "server/models_service.h"

namespace mtla {

grpc::ServerUnaryReactor* ModelsService::GetModelInfo(grpc::CallbackServerContext* context,
                                                      const v1::GetModelInfoRequest* request,
                                                      v1::ModelInfo* out) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  std::shared_ptr<Engine> engine = engine_->Get();
  if (engine == nullptr) {
    reactor->Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, "model is loading"));
    return reactor;
  }
  const DecoderSpec& spec = engine->spec();
  const KvCacheGeometry& g = engine->cache_geometry();
  out->set_name(name_);
  out->set_architecture(engine_->architecture());
  out->set_backend(std::string(engine->backend_name()));
  out->set_num_layers(spec.num_layers);
  out->set_hidden_size(spec.hidden_size);
  out->set_num_heads(spec.attention.num_heads);
  out->set_kv_lora_rank(spec.attention.kv_lora_rank);
  out->set_qk_rope_head_dim(spec.attention.qk_rope_head_dim);
  out->set_qk_nope_head_dim(spec.attention.qk_nope_head_dim);
  out->set_v_head_dim(spec.attention.v_head_dim);
  out->set_down_rate(spec.attention.down_rate);
  out->set_vocab_size(spec.vocab_size);
  out->set_max_context_tokens(spec.max_context_tokens);
  out->set_max_new_tokens_limit(engine->options().max_new_tokens_limit);
  out->set_kv_bytes_per_token(spec.num_layers * g.BytesPerTokenPerLayer(engine->cache_element_bytes()));
  out->set_block_size_tokens(g.tokens_per_block());
  out->set_cache_blocks_total(engine->cache_blocks_total());
  out->set_cache_capacity_tokens(static_cast<int64_t>(engine->cache_blocks_total()) *
                                 g.tokens_per_block());
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

}  // namespace mtla
