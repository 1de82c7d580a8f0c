// mtla.v1.Models: what the server serves (architecture, dims, cache geometry).
#ifndef MTLA_SERVER_MODELS_SERVICE_H_
#define MTLA_SERVER_MODELS_SERVICE_H_

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "mtla/v1/models.grpc.pb.h"
#include "server/engine_holder.h"
#include "server/speech_front_end_holder.h"
#include "server/text_front_end.h"

namespace mtla {

class ModelsService final : public v1::Models::CallbackService {
 public:
  ModelsService(std::shared_ptr<EngineHolder> engine, std::shared_ptr<SpeechFrontEndHolder> speech,
                std::string model_name, std::shared_ptr<TextFrontEndHolder> text = nullptr)
      : engine_(std::move(engine)),
        speech_(std::move(speech)),
        name_(std::move(model_name)),
        text_(std::move(text)) {}

  grpc::ServerUnaryReactor* GetModelInfo(grpc::CallbackServerContext* context,
                                         const v1::GetModelInfoRequest* request,
                                         v1::ModelInfo* response) override;

 private:
  std::shared_ptr<EngineHolder> engine_;
  std::shared_ptr<SpeechFrontEndHolder> speech_;
  std::string name_;
  std::shared_ptr<TextFrontEndHolder> text_;  // null: no tokenizer fields
};

// GetModelInfo's answer for the model `engine` holds (served as `model_name`),
// with the language pair of `speech` (null: a model without speech);
// Unavailable while the model loads.
absl::Status FillModelInfo(const EngineHolder& engine, const std::string& model_name,
                           v1::ModelInfo* out, const SpeechFrontEnd* speech = nullptr);

// The tokenizer and conventions fields of ModelInfo (40 and up) from `text`.
void FillTextConventions(const TextFrontEnd& text, v1::ModelInfo* out);

}  // namespace mtla

#endif  // MTLA_SERVER_MODELS_SERVICE_H_
