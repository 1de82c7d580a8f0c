#include "tools/common/command_line.h"

#include <cstdlib>
#include <iostream>

#include "absl/base/config.h"
#include "absl/flags/internal/parse.h"
#include "absl/flags/internal/usage.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

#ifndef MTLA_VERSION
#error "MTLA_VERSION must be defined by the build (tools/common/CMakeLists.txt)"
#endif
#ifndef MTLA_SOURCE_DIR
#define MTLA_SOURCE_DIR ""
#endif
#ifndef MTLA_BUILD_TYPE
#define MTLA_BUILD_TYPE "unknown"
#endif

namespace mtla {
namespace {

std::string Compiler() {
#if defined(__clang__)
  return absl::StrCat("Clang ", __clang_major__, ".", __clang_minor__, ".", __clang_patchlevel__);
#elif defined(__GNUC__)
  return absl::StrCat("GCC ", __GNUC__, ".", __GNUC_MINOR__, ".", __GNUC_PATCHLEVEL__);
#else
  return "unknown compiler";
#endif
}

std::string BuildType() {
  std::string type = MTLA_BUILD_TYPE;
  if (type.empty()) type = "no build type";
#ifndef NDEBUG
  if (!absl::StrContains(type, "Debug")) absl::StrAppend(&type, ", assertions on");
#endif
  return type;
}

// absl passes the file a flag was defined in; flags of absl itself (--flagfile,
// --fromenv, ...) stay out of --help (they are in --helpfull).
bool IsProgramFlagFile(absl::string_view file) { return !absl::StrContains(file, "absl/"); }

// "/src/mtla/server/main.cc" or "../server/main.cc" -> "server/main.cc".
std::string ProjectRelative(absl::string_view file) {
  absl::string_view path = file;
  absl::ConsumePrefix(&path, MTLA_SOURCE_DIR "/");
  while (absl::ConsumePrefix(&path, "../")) {
  }
  return std::string(path);
}

}  // namespace

std::string VersionString(absl::string_view program) {
  return absl::StrCat(program, " ", MTLA_VERSION, " (", BuildType(), " build, ", Compiler(), ")");
}

std::vector<char*> ParseCommandLineFlags(int argc, char** argv, absl::string_view program,
                                         absl::string_view usage) {
  absl::SetProgramUsageMessage(usage);
  absl::FlagsUsageConfig config;
  config.contains_help_flags = IsProgramFlagFile;
  config.contains_helpshort_flags = IsProgramFlagFile;
  config.normalize_filename = ProjectRelative;
  const std::string version = VersionString(program);
  config.version_string = [version] { return absl::StrCat(version, "\n"); };
  absl::SetFlagsUsageConfig(config);
#if defined(ABSL_LTS_RELEASE_VERSION) && ABSL_LTS_RELEASE_VERSION == 20220623
  // Debian 12's abseil exits 1 after --help; asked-for help is a success.
  // Parse as absl::ParseCommandLine does, then handle the usage flags with
  // that exit code changed (later abseil releases exit 0 themselves).
  std::vector<char*> positional = absl::flags_internal::ParseCommandLineImpl(
      argc, argv, absl::flags_internal::ArgvListAction::kRemoveParsedArgs,
      absl::flags_internal::UsageFlagsAction::kIgnoreUsage,
      absl::flags_internal::OnUndefinedFlag::kAbortIfUndefined);
  const int exit_code =
      absl::flags_internal::HandleUsageFlags(std::cout, absl::ProgramUsageMessage());
  if (exit_code != -1) {
    std::cout.flush();
    std::exit(exit_code == 1 ? 0 : exit_code);
  }
  return positional;
#else
  return absl::ParseCommandLine(argc, argv);
#endif
}

}  // namespace mtla
