// Reading and checking the PEM files given to the server's TLS flags
// (internal to server_credentials.cc; separate so that it can be tested alone).
//
// Every error message starts with "FLAG=PATH: " so that the operator sees which
// flag and which file to fix. The checks use OpenSSL (the library gRPC itself
// is built on here) and leave the calling thread's OpenSSL error queue empty.
#ifndef MTLA_SERVER_PEM_FILES_H_
#define MTLA_SERVER_PEM_FILES_H_

#include <string>


#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace mtla {

// The whole file at `path`. Errors carry the errno's code (NotFound,
// PermissionDenied, ...); an empty file is InvalidArgument.
absl::StatusOr<std::string> ReadPemFile(absl::string_view flag, const std::string& path);

// OK when `pem` holds at least one X.509 certificate and every PEM block in
// it is a well-formed certificate; InvalidArgument otherwise.
absl::Status CheckCertificates(absl::string_view flag, const std::string& path,
                               absl::string_view pem);

// OK when `key_pem` holds one unencrypted private key whose public half is the
// one in the first certificate of `cert_pem` (which CheckCertificates has
// accepted); InvalidArgument otherwise, naming both flags' files on a mismatch.
absl::Status CheckPrivateKey(absl::string_view key_flag, const std::string& key_path,
                             absl::string_view key_pem, absl::string_view cert_flag,
                             const std::string& cert_path, absl::string_view cert_pem);

}  // namespace mtla

#endif  // MTLA_SERVER_PEM_FILES_H_
