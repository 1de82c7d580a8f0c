#include "server/models_service.h"

#include "absl/status/status.h"
#include "server/status_conversion.h"

namespace mtla {

absl::Status FillModelInfo(const EngineHolder& holder, const std::string& model_name,
                           v1::ModelInfo* out, const SpeechFrontEnd* speech) {
  std::shared_ptr<Engine> engine = holder.Get();
  if (engine == nullptr) return absl::UnavailableError("model is loading");
  const DecoderSpec& spec = engine->spec();
  const KvCacheGeometry& g = engine->cache_geometry();
  out->set_name(model_name);
  out->set_architecture(holder.architecture());
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
  if (speech != nullptr && (!speech->source_language.empty() || !speech->target_language.empty())) {
    v1::LanguagePair* pair = out->add_language_pairs();
    pair->set_source_language(speech->source_language);
    pair->set_target_language(speech->target_language);
  }
  return absl::OkStatus();
}

void FillTextConventions(const TextFrontEnd& text, v1::ModelInfo* out) {
  out->set_has_tokenizer(text.tokenizer != nullptr);
  if (text.bos_token_id >= 0) out->set_bos_token_id(text.bos_token_id);
  if (text.eos_token_id >= 0) {
    out->set_eos_token_id(text.eos_token_id);
    out->add_default_stop_token_ids(text.eos_token_id);
  }
  out->set_add_bos_token(text.add_bos_token);
  out->set_chat_template(text.chat_template);
  if (text.tokenizer != nullptr) out->set_tokenizer_vocab_size(text.tokenizer->vocab_size());
}

grpc::ServerUnaryReactor* ModelsService::GetModelInfo(grpc::CallbackServerContext* context,
                                                      const v1::GetModelInfoRequest* request,
                                                      v1::ModelInfo* out) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  std::shared_ptr<const SpeechFrontEnd> speech = speech_->Get();
  absl::Status status = FillModelInfo(*engine_, name_, out, speech.get());
  if (status.ok() && text_ != nullptr) {
    if (std::shared_ptr<const TextFrontEnd> text = text_->Get()) FillTextConventions(*text, out);
  }
  reactor->Finish(ToGrpcStatus(status));
  return reactor;
}

}  // namespace mtla
