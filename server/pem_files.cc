#include "server/pem_files.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace mtla {
namespace {

constexpr uintmax_t kMaxPemBytes = 4 << 20;  // a large CA bundle is ~0.2 MiB

struct BioFree {
  void operator()(BIO* bio) const { BIO_free(bio); }
};
struct X509Free {
  void operator()(X509* cert) const { X509_free(cert); }
};
struct PkeyFree {
  void operator()(EVP_PKEY* key) const { EVP_PKEY_free(key); }
};
struct OpensslFree {
  void operator()(void* p) const { OPENSSL_free(p); }
};
using BioPtr = std::unique_ptr<BIO, BioFree>;
using X509Ptr = std::unique_ptr<X509, X509Free>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyFree>;

// Empties this thread's OpenSSL error queue when it goes out of scope, so that
// nothing left here confuses gRPC's own OpenSSL calls on the same thread.
class ClearOpensslErrors {
 public:
  ~ClearOpensslErrors() { ERR_clear_error(); }
};

std::string Prefix(absl::string_view flag, const std::string& path) {
  return absl::StrCat(flag, "=", path, ": ");
}

// The most recent OpenSSL error as text ("" when the queue is empty).
std::string LastOpensslError() {
  const unsigned long code = ERR_peek_last_error();
  if (code == 0) return "";
  char text[256];
  ERR_error_string_n(code, text, sizeof(text));
  return text;
}

BioPtr ReadOnlyBio(absl::string_view text) {
  return BioPtr(BIO_new_mem_buf(text.data(), static_cast<int>(text.size())));
}

// A PEM passphrase callback that never supplies one: an encrypted key fails
// to load instead of prompting on the server's terminal.
int NoPassphrase(char*, int, int, void*) { return -1; }

bool LooksEncrypted(absl::string_view key_pem) {
  return absl::StrContains(key_pem, "ENCRYPTED PRIVATE KEY") ||
         absl::StrContains(key_pem, "Proc-Type: 4,ENCRYPTED");
}

}  // namespace

absl::StatusOr<std::string> ReadPemFile(absl::string_view flag, const std::string& path) {
  // Regular files only, and not huge: a device or a FIFO given by mistake
  // must not block the start or fill the memory.
  std::error_code ignored;
  if (std::filesystem::exists(path, ignored)) {
    if (std::filesystem::is_directory(path, ignored)) {
      return absl::InvalidArgumentError(absl::StrCat(Prefix(flag, path), "is a directory, not a file"));
    }
    if (!std::filesystem::is_regular_file(path, ignored)) {
      return absl::InvalidArgumentError(absl::StrCat(Prefix(flag, path), "not a regular file"));
    }
    if (std::filesystem::file_size(path, ignored) > kMaxPemBytes) {
      return absl::InvalidArgumentError(
          absl::StrCat(Prefix(flag, path), "larger than ", kMaxPemBytes >> 20, " MiB, not a PEM file"));
    }
  }
  std::ifstream file(path, std::ios::binary);
  if (!file) {
    const int error = errno;
    return absl::Status(absl::ErrnoToStatusCode(error),
                        absl::StrCat(Prefix(flag, path), "cannot open (", std::strerror(error), ")"));
  }
  std::stringstream text;
  text << file.rdbuf();
  if (file.bad()) return absl::InvalidArgumentError(absl::StrCat(Prefix(flag, path), "read error"));
  if (text.str().empty()) return absl::InvalidArgumentError(absl::StrCat(Prefix(flag, path), "empty file"));
  return text.str();
}

absl::Status CheckCertificates(absl::string_view flag, const std::string& path,
                               absl::string_view pem) {
  ClearOpensslErrors clear;
  BioPtr bio = ReadOnlyBio(pem);
  if (bio == nullptr) return absl::ResourceExhaustedError("OpenSSL: out of memory");
  int certificates = 0;
  while (true) {
    char* name = nullptr;
    char* header = nullptr;
    unsigned char* data = nullptr;
    long length = 0;
    ERR_clear_error();
    if (PEM_read_bio(bio.get(), &name, &header, &data, &length) != 1) {
      const unsigned long error = ERR_peek_last_error();
      const bool end = ERR_GET_LIB(error) == ERR_LIB_PEM && ERR_GET_REASON(error) == PEM_R_NO_START_LINE;
      if (end) break;
      return absl::InvalidArgumentError(
          absl::StrCat(Prefix(flag, path), "malformed PEM (", LastOpensslError(), ")"));
    }
    std::unique_ptr<char, OpensslFree> name_owner(name), header_owner(header);
    std::unique_ptr<unsigned char, OpensslFree> data_owner(data);
    if (std::strcmp(name, "CERTIFICATE") != 0) continue;  // e.g. a key kept in the same file
    const unsigned char* cursor = data;
    X509Ptr cert(d2i_X509(nullptr, &cursor, length));
    if (cert == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(Prefix(flag, path), "certificate ",
                                                     certificates + 1, " is malformed (",
                                                     LastOpensslError(), ")"));
    }
    ++certificates;
  }
  if (certificates == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        Prefix(flag, path), "no PEM certificate (\"-----BEGIN CERTIFICATE-----\") in the file"));
  }
  return absl::OkStatus();
}

absl::Status CheckPrivateKey(absl::string_view key_flag, const std::string& key_path,
                             absl::string_view key_pem, absl::string_view cert_flag,
                             const std::string& cert_path, absl::string_view cert_pem) {
  ClearOpensslErrors clear;
  if (LooksEncrypted(key_pem)) {
    return absl::InvalidArgumentError(absl::StrCat(
        Prefix(key_flag, key_path), "the private key is encrypted; give an unencrypted key "
                                    "(e.g. openssl pkey -in KEY -out KEY.plain)"));
  }
  BioPtr key_bio = ReadOnlyBio(key_pem);
  BioPtr cert_bio = ReadOnlyBio(cert_pem);
  if (key_bio == nullptr || cert_bio == nullptr) {
    return absl::ResourceExhaustedError("OpenSSL: out of memory");
  }
  PkeyPtr key(PEM_read_bio_PrivateKey(key_bio.get(), nullptr, NoPassphrase, nullptr));
  if (key == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        Prefix(key_flag, key_path), "no PEM private key in the file (", LastOpensslError(), ")"));
  }
  X509Ptr leaf(PEM_read_bio_X509(cert_bio.get(), nullptr, NoPassphrase, nullptr));
  if (leaf == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat(Prefix(cert_flag, cert_path), "no PEM certificate in the file"));
  }
  if (X509_check_private_key(leaf.get(), key.get()) != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat(Prefix(key_flag, key_path), "the private key does not match the certificate in ",
                     cert_flag, "=", cert_path, " (the first certificate must be the key's own)"));
  }
  return absl::OkStatus();
}

}  // namespace mtla
