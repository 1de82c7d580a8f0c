#!/usr/bin/env bash
# Makes the certificates the TLS tests use, with openssl, into DIR (created if
# missing). Every key is a fresh P-256 key; every certificate is valid for two
# days from now, so nothing is stored in the repository and nothing expires
# under a test.
#
#   make_test_certs.sh DIR
#
# DIR/ afterwards:
#   ca.pem                    the test CA (self-signed, CA:TRUE)
#   server.pem, server.key    server certificate from ca.pem, SAN DNS:localhost
#                             and IP:127.0.0.1, extendedKeyUsage serverAuth
#   client.pem, client.key    client certificate from ca.pem (clientAuth)
#   other_ca.pem              a second, unrelated CA
#   other_client.pem/.key     client certificate from other_ca.pem
#   other_server.pem/.key     server certificate from other_ca.pem (same SAN)
#   pod.pem, pod.key          like server.pem, also for DNS:mtla-server and
#                             with clientAuth too (a pod's certificate that its
#                             own probes present under mutual TLS)
#   not_pem.txt               a file that holds no PEM block
#   encrypted.key             a private key encrypted with a passphrase
#
# Exit code 77 (the tests' "skipped") when openssl is not installed, 1 when it
# fails.
set -euo pipefail

dir=${1:?usage: make_test_certs.sh DIR}
if ! command -v openssl >/dev/null 2>&1; then
  echo "SKIPPED: openssl is not installed (Debian package openssl, see tools/setup.sh)" >&2
  exit 77
fi
mkdir -p "$dir"
cd "$dir"

# Extension sections, written once; -extfile keeps the system openssl.cnf out
# of the certificates' contents.
cat > ca.ext <<'EOF'
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
EOF
cat > server.ext <<'EOF'
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF
cat > pod.ext <<'EOF'
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth, clientAuth
subjectAltName = DNS:mtla-server, DNS:localhost, IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF
cat > client.ext <<'EOF'
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF

# new_key NAME: NAME.key (unencrypted PKCS#8) and NAME.csr with CN=NAME.
new_key() {
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$1.key" -subj "/O=mtla tests/CN=$1" -out "$1.csr" 2>/dev/null
}
serial=1
# sign NAME CA EXT: NAME.pem from NAME.csr, signed by CA.pem/CA.key.
sign() {
  serial=$((serial + 1))
  openssl x509 -req -in "$1.csr" -CA "$2.pem" -CAkey "$2.key" -set_serial "$serial" \
    -days 2 -extfile "$3.ext" -out "$1.pem" 2>/dev/null
}
# self_sign NAME: a CA certificate NAME.pem.
self_sign() {
  new_key "$1"
  openssl x509 -req -in "$1.csr" -signkey "$1.key" -set_serial 1 -days 2 \
    -extfile ca.ext -out "$1.pem" 2>/dev/null
}

self_sign ca
self_sign other_ca
new_key server && sign server ca server
new_key client && sign client ca client
new_key pod && sign pod ca pod
new_key other_client && sign other_client other_ca client
new_key other_server && sign other_server other_ca server
echo "this is not a PEM file" > not_pem.txt
openssl pkey -in client.key -aes256 -passout pass:secret -out encrypted.key 2>/dev/null
rm -f ./*.csr ./*.ext
