// Transport security of the gRPC port: plaintext (the default), TLS, or
// mutual TLS (clients must present a certificate signed by a given CA).
//
// The PEM files are read and checked once, when the server starts, so that a
// wrong path or a key that does not belong to its certificate stops the
// server with a message naming the flag and the file, instead of failing
// every handshake later. Certificates are not reloaded: rotating them (e.g. a
// renewed Kubernetes Secret) takes a restart.
#ifndef MTLA_SERVER_SERVER_CREDENTIALS_H_
#define MTLA_SERVER_SERVER_CREDENTIALS_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "grpcpp/security/server_credentials.h"

namespace mtla {

// Paths of PEM files; each field is the server flag of the same name.
struct ServerTlsOptions {
  // --tls_cert_file: the server's certificate chain, leaf first.
  // --tls_key_file: the leaf's private key (unencrypted).
  // Both or neither; neither means plaintext.
  std::string cert_file;
  std::string key_file;
  // --tls_client_ca_file: CA certificates; non-empty turns on mutual TLS:
  // every client must present a certificate that chains to one of them
  // (GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY). Needs the
  // server's own certificate and key.
  std::string client_ca_file;

  bool enabled() const { return !cert_file.empty() || !key_file.empty() || !client_ca_file.empty(); }
};

// Credentials for grpc::ServerBuilder::AddListeningPort: insecure when no
// field is set, TLS or mutual TLS otherwise.
//
// Errors (each names the flag and, where there is one, the file):
// InvalidArgument for half a key pair, a client CA without a server
// certificate, a file with no PEM certificate or key where one is expected, an
// encrypted key, or a key that does not match the certificate; the errno's
// code (NotFound, PermissionDenied, ...) for a file that cannot be read.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const ServerTlsOptions& options);

// One line for the server's log: "plaintext", "TLS (certificate FILE)" or
// "mutual TLS (certificate FILE, clients verified against CA_FILE)".
std::string DescribeTls(const ServerTlsOptions& options);

}  // namespace mtla

#endif  // MTLA_SERVER_SERVER_CREDENTIALS_H_
