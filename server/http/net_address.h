// Listening addresses as the server's flags give them ("host:port",
// "[v6]:port", ":port"), and why one cannot be listened on.
//
// Thread-compatible: pure functions (ListenFailureReason opens and closes a
// socket).
#ifndef MTLA_SERVER_HTTP_NET_ADDRESS_H_
#define MTLA_SERVER_HTTP_NET_ADDRESS_H_

#include <string>

namespace mtla {

// Splits "host:port", "[v6]:port" or ":port" (empty host); false when
// `address` has none of these forms or the port is not in [0, 65535].
bool SplitHostPort(const std::string& address, std::string* host, std::string* port);

// Why a listener on `address` fails, found by trying to bind it ("address
// already in use", "cannot assign requested address", ...); a generic text
// when the address is not host:port or the bind works now.
std::string ListenFailureReason(const std::string& address);

}  // namespace mtla

#endif  // MTLA_SERVER_HTTP_NET_ADDRESS_H_
