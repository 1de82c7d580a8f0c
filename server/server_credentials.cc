#include "server/server_credentials.h"

#include "absl/strings/str_cat.h"
#include "engine/common/status_macros.h"
#include "grpcpp/security/server_credentials.h"
#include "server/pem_files.h"

namespace mtla {

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const ServerTlsOptions& options) {
  if (!options.enabled()) return grpc::InsecureServerCredentials();
  if (options.cert_file.empty() != options.key_file.empty()) {
    return absl::InvalidArgumentError(
        options.cert_file.empty()
            ? "--tls_key_file is set without --tls_cert_file: give both (TLS) or neither (plaintext)"
            : "--tls_cert_file is set without --tls_key_file: give both (TLS) or neither (plaintext)");
  }
  if (options.cert_file.empty()) {
    return absl::InvalidArgumentError(
        "--tls_client_ca_file needs --tls_cert_file and --tls_key_file: mutual TLS is TLS with "
        "client certificates, and the server needs its own certificate for it");
  }
  ASSIGN_OR_RETURN(std::string cert, ReadPemFile("--tls_cert_file", options.cert_file));
  ASSIGN_OR_RETURN(std::string key, ReadPemFile("--tls_key_file", options.key_file));
  RETURN_IF_ERROR(CheckCertificates("--tls_cert_file", options.cert_file, cert));
  RETURN_IF_ERROR(CheckPrivateKey("--tls_key_file", options.key_file, key, "--tls_cert_file",
                                  options.cert_file, cert));

  grpc::SslServerCredentialsOptions ssl(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  if (!options.client_ca_file.empty()) {
    ASSIGN_OR_RETURN(ssl.pem_root_certs, ReadPemFile("--tls_client_ca_file", options.client_ca_file));
    RETURN_IF_ERROR(
        CheckCertificates("--tls_client_ca_file", options.client_ca_file, ssl.pem_root_certs));
    ssl.client_certificate_request = GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
  }
  ssl.pem_key_cert_pairs.push_back({std::move(key), std::move(cert)});
  std::shared_ptr<grpc::ServerCredentials> credentials = grpc::SslServerCredentials(ssl);
  if (credentials == nullptr) return absl::InternalError("gRPC could not create TLS credentials");
  return credentials;
}

std::string DescribeTls(const ServerTlsOptions& options) {
  if (!options.enabled()) return "plaintext";
  if (options.client_ca_file.empty()) return absl::StrCat("TLS (certificate ", options.cert_file, ")");
  return absl::StrCat("mutual TLS (certificate ", options.cert_file, ", clients verified against ",
                      options.client_ca_file, ")");
}

}  // namespace mtla
