#include "server/service_health.h"

#include <map>

#include "gtest/gtest.h"

namespace mtla {
namespace {

// Records the last status set per name; the all-names overload must not be
// used (it would turn SpeechTranslation SERVING for a text model).
class RecordingHealth final : public grpc::HealthCheckServiceInterface {
 public:
  void SetServingStatus(const std::string& name, bool serving) override { status[name] = serving; }
  void SetServingStatus(bool) override { ADD_FAILURE() << "SetServingStatus(bool) called"; }
  std::map<std::string, bool> status;
};

TEST(ServiceHealth, NamesTheMtlaServices) {
  EXPECT_EQ(HealthServiceNames(),
            (std::vector<std::string>{"mtla.v1.TextGeneration", "mtla.v1.Models",
                                      "mtla.v1.SpeechTranslation"}));
}

TEST(ServiceHealth, SpeechModelServesEveryService) {
  RecordingHealth health;
  PublishServingStatus(&health, /*serving=*/true, /*speech_loaded=*/true);
  EXPECT_EQ(health.status, (std::map<std::string, bool>{{"", true},
                                                        {"mtla.v1.TextGeneration", true},
                                                        {"mtla.v1.Models", true},
                                                        {"mtla.v1.SpeechTranslation", true}}));
}

TEST(ServiceHealth, TextModelDoesNotServeSpeech) {
  RecordingHealth health;
  PublishServingStatus(&health, /*serving=*/true, /*speech_loaded=*/false);
  EXPECT_TRUE(health.status.at(""));
  EXPECT_TRUE(health.status.at("mtla.v1.TextGeneration"));
  EXPECT_TRUE(health.status.at("mtla.v1.Models"));
  EXPECT_FALSE(health.status.at("mtla.v1.SpeechTranslation"));
}

TEST(ServiceHealth, NotServingTurnsEveryServiceOff) {
  // Loading, draining, or an engine that fails its health check.
  for (bool speech : {false, true}) {
    RecordingHealth health;
    PublishServingStatus(&health, /*serving=*/true, speech);
    PublishServingStatus(&health, /*serving=*/false, speech);
    ASSERT_EQ(health.status.size(), 4u);
    for (const auto& [name, serving] : health.status) EXPECT_FALSE(serving) << name;
  }
}

}  // namespace
}  // namespace mtla
