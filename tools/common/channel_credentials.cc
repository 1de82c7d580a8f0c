#include "tools/common/channel_credentials.h"

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "grpcpp/create_channel.h"

namespace mtla {
namespace {

constexpr uintmax_t kMaxPemBytes = 4 << 20;  // a large CA bundle is ~0.2 MiB

absl::StatusOr<std::string> ReadFlagFile(absl::string_view flag, const std::string& path) {
  // Regular files only, and not huge: a device or a FIFO given by mistake
  // must not block the start or fill the memory.
  std::error_code ignored;
  if (std::filesystem::exists(path, ignored)) {
    if (std::filesystem::is_directory(path, ignored)) {
      return absl::InvalidArgumentError(absl::StrCat(flag, "=", path, ": ", "is a directory, not a file"));
    }
    if (!std::filesystem::is_regular_file(path, ignored)) {
      return absl::InvalidArgumentError(absl::StrCat(flag, "=", path, ": ", "not a regular file"));
    }
    if (std::filesystem::file_size(path, ignored) > kMaxPemBytes) {
      return absl::InvalidArgumentError(
          absl::StrCat(flag, "=", path, ": ", "larger than ", kMaxPemBytes >> 20, " MiB, not a PEM file"));
    }
  }
  std::ifstream file(path, std::ios::binary);
  if (!file) {
    const int error = errno;
    return absl::Status(absl::ErrnoToStatusCode(error),
                        absl::StrCat(flag, "=", path, ": cannot open (", std::strerror(error), ")"));
  }
  std::stringstream text;
  text << file.rdbuf();
  if (text.str().empty()) return absl::InvalidArgumentError(absl::StrCat(flag, "=", path, ": empty file"));
  return text.str();
}

}  // namespace

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> MakeChannelCredentials(
    const ClientTlsOptions& options) {
  if (!options.enabled()) return grpc::InsecureChannelCredentials();
  if (options.cert_file.empty() != options.key_file.empty()) {
    return absl::InvalidArgumentError(
        options.cert_file.empty()
            ? "--tls_key_file is set without --tls_cert_file: a client certificate needs both"
            : "--tls_cert_file is set without --tls_key_file: a client certificate needs both");
  }
  grpc::SslCredentialsOptions ssl;
  if (!options.ca_file.empty()) {
    absl::StatusOr<std::string> roots = ReadFlagFile("--tls_ca_file", options.ca_file);
    if (!roots.ok()) return roots.status();
    ssl.pem_root_certs = *std::move(roots);
  }
  if (!options.cert_file.empty()) {
    absl::StatusOr<std::string> cert = ReadFlagFile("--tls_cert_file", options.cert_file);
    if (!cert.ok()) return cert.status();
    absl::StatusOr<std::string> key = ReadFlagFile("--tls_key_file", options.key_file);
    if (!key.ok()) return key.status();
    ssl.pem_cert_chain = *std::move(cert);
    ssl.pem_private_key = *std::move(key);
  }
  std::shared_ptr<grpc::ChannelCredentials> credentials = grpc::SslCredentials(ssl);
  if (credentials == nullptr) return absl::InternalError("gRPC could not create TLS credentials");
  return credentials;
}

absl::StatusOr<std::shared_ptr<grpc::Channel>> CreateClientChannel(const std::string& target,
                                                                   const ClientTlsOptions& options,
                                                                   grpc::ChannelArguments args) {
  absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> credentials =
      MakeChannelCredentials(options);
  if (!credentials.ok()) return credentials.status();
  if (!options.server_name.empty()) args.SetSslTargetNameOverride(options.server_name);
  return grpc::CreateCustomChannel(target, *credentials, args);
}

}  // namespace mtla
