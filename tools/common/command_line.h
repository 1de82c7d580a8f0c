// What every mtla command-line program (mtla-server, mtla-client, mtla-bench,
// mtla-conformance, mtla-features, mtla-generate) does the same way with absl
// flags: snake_case flags given as --flag=value or --flag value, a --help that
// lists the program's own flags (not only those of its main file, absl's
// default) and a --version with the project version, build type and compiler.
#ifndef MTLA_TOOLS_COMMON_COMMAND_LINE_H_
#define MTLA_TOOLS_COMMON_COMMAND_LINE_H_

#include <string>
#include "absl/strings/string_view.h"
#include <vector>

namespace mtla {

// "PROGRAM 0.1.0 (Release build, GCC 12.2.0)": what --version prints.
std::string VersionString(absl::string_view program);

// Sets the usage message and absl::FlagsUsageConfig (--help lists every flag
// defined outside absl itself; --version prints VersionString(program)), then
// parses argv. --help (and --helpfull, --helpshort, --help=SUBSTRING) prints
// to stdout and exits 0, --version too; an unknown flag exits 1 naming it.
// Returns the positional arguments, argv[0] first.
std::vector<char*> ParseCommandLineFlags(int argc, char** argv, absl::string_view program,
                                         absl::string_view usage);

}  // namespace mtla

#endif  // MTLA_TOOLS_COMMON_COMMAND_LINE_H_
