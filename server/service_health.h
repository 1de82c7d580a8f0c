// grpc.health.v1 statuses per service name, as clients and load balancers ask
// for them: "" (the server as a whole), mtla.v1.TextGeneration and
// mtla.v1.Models follow the server's serving state; mtla.v1.SpeechTranslation
// is SERVING only when the server is serving a speech model.
#ifndef MTLA_SERVER_SERVICE_HEALTH_H_
#define MTLA_SERVER_SERVICE_HEALTH_H_

#include <string>
#include <vector>

#include "grpcpp/health_check_service_interface.h"

namespace mtla {

// The per-service names reported (without ""), in a fixed order.
std::vector<std::string> HealthServiceNames();

// Sets the status of "" and of every name in HealthServiceNames() from the
// server's state: `serving` (model loaded, engine healthy, not draining) and
// `speech_loaded` (the loaded model is a speech model). `health` must be the
// server's own service (gRPC's default); thread-safe as that service is.
void PublishServingStatus(grpc::HealthCheckServiceInterface* health, bool serving,
                          bool speech_loaded);

}  // namespace mtla

#endif  // MTLA_SERVER_SERVICE_HEALTH_H_
