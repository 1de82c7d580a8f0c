// Client side of mtla-server's transport security, shared by mtla-client and
// mtla-bench: channel credentials from the tools' TLS flags.
//
// Setting any of the flags turns TLS on; none means plaintext. The files are
// read when the channel is made, so that a wrong path is a usage error naming
// the flag and the file. What the server's certificate and the client's own
// certificate contain is checked by the TLS handshake, whose failure the first
// call reports (UNAVAILABLE).
#ifndef MTLA_TOOLS_COMMON_CHANNEL_CREDENTIALS_H_
#define MTLA_TOOLS_COMMON_CHANNEL_CREDENTIALS_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "grpcpp/channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"

namespace mtla {

// Each field is the flag of the same name (--tls_ca_file, ...).
struct ClientTlsOptions {
  // PEM CA certificates the server's certificate must chain to. Empty (with
  // TLS on): gRPC's default roots (GRPC_DEFAULT_SSL_ROOTS_FILE_PATH, else the
  // system's).
  std::string ca_file;
  // The client's certificate chain and its unencrypted private key, for
  // servers that require one (mutual TLS). Both or neither.
  std::string cert_file;
  std::string key_file;
  // The name the server's certificate must carry, instead of the host of the
  // target address; e.g. connect to an IP and check the certificate's DNS
  // name.
  std::string server_name;

  bool enabled() const {
    return !ca_file.empty() || !cert_file.empty() || !key_file.empty() || !server_name.empty();
  }
};

// Insecure credentials when no field is set, TLS credentials otherwise.
// InvalidArgument for half a key pair; the errno's code (NotFound, ...) for a
// file that cannot be read; messages name the flag and the file.
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> MakeChannelCredentials(
    const ClientTlsOptions& options);

// A channel to `target` with `args`, plus the TLS name override when
// server_name is set. Errors as MakeChannelCredentials.
absl::StatusOr<std::shared_ptr<grpc::Channel>> CreateClientChannel(
    const std::string& target, const ClientTlsOptions& options,
    grpc::ChannelArguments args = grpc::ChannelArguments());

}  // namespace mtla

#endif  // MTLA_TOOLS_COMMON_CHANNEL_CREDENTIALS_H_
