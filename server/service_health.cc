#include "server/service_health.h"

#include "mtla/v1/models.grpc.pb.h"
#include "mtla/v1/speech_translation.grpc.pb.h"
#include "mtla/v1/text_generation.grpc.pb.h"

namespace mtla {

std::vector<std::string> HealthServiceNames() {
  return {v1::TextGeneration::service_full_name(), v1::Models::service_full_name(),
          v1::SpeechTranslation::service_full_name()};
}

void PublishServingStatus(grpc::HealthCheckServiceInterface* health, bool serving,
                          bool speech_loaded) {
  health->SetServingStatus("", serving);
  health->SetServingStatus(v1::TextGeneration::service_full_name(), serving);
  health->SetServingStatus(v1::Models::service_full_name(), serving);
  health->SetServingStatus(v1::SpeechTranslation::service_full_name(), serving && speech_loaded);
}

}  // namespace mtla
