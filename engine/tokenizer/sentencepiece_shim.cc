// No Abseil header may be included here (see sentencepiece_shim.h).
#include "engine/tokenizer/sentencepiece_shim.h"

#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

namespace mtla::spm {

struct Model::Impl {
  sentencepiece::SentencePieceProcessor processor;
};

Model::Model() : impl_(std::make_unique<Impl>()) {}
Model::~Model() = default;

std::unique_ptr<Model> Model::Load(const std::string& path, std::string* error) {
  auto model = std::unique_ptr<Model>(new Model());
  const auto status = model->impl_->processor.Load(path);
  if (!status.ok()) {
    *error = status.ToString();
    return nullptr;
  }
  return model;
}

bool Model::Encode(const std::string& text, std::vector<int>* ids, std::string* error) const {
  const auto status = impl_->processor.Encode(text, ids);
  if (!status.ok()) *error = status.ToString();
  return status.ok();
}

std::string Model::Decode(const std::vector<int>& ids) const {
  std::string text;
  (void)impl_->processor.Decode(ids, &text);
  return text;
}

int Model::bos_id() const { return impl_->processor.bos_id(); }
int Model::pad_id() const { return impl_->processor.pad_id(); }
int Model::eos_id() const { return impl_->processor.eos_id(); }
int Model::unk_id() const { return impl_->processor.unk_id(); }
int Model::size() const { return impl_->processor.GetPieceSize(); }

bool Train(const std::string& args, std::string* error) {
  const auto status = sentencepiece::SentencePieceTrainer::Train(args);
  if (!status.ok()) *error = status.ToString();
  return status.ok();
}

}  // namespace mtla::spm
