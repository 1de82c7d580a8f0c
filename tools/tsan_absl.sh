#!/usr/bin/env bash
# ThreadSanitizer needs absl::Mutex instrumented: Debian's
# libabsl_synchronization is built without -fsanitize=thread, so TSan never
# sees its locks and reports every access they protect as a race. This builds
# the same library from Debian's own source package (the version of the
# installed libabsl-dev, fetched with apt through a private deb-src list; the
# system's apt configuration is not touched) against the installed headers,
# with clang -fsanitize=thread (as the `tsan` preset), into
# build-tsan/absl-tsan/ under the same SONAME.
# The `tsan` preset links the tests against it. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
out="$PWD/build-tsan/absl-tsan"
lib="$out/libabsl_synchronization.so.20220623"
[ -f "$lib" ] && { echo "tsan_absl: $lib present"; exit 0; }

version=$(dpkg-query -W -f='${Version}' libabsl-dev)
codename=$(. /etc/os-release && echo "$VERSION_CODENAME")
work="$out/src"
rm -rf "$work"
mkdir -p "$work/lists/partial" "$work/parts"
cat >"$work/sources.list" <<LIST
deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian $codename main
deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian $codename-updates main
deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian-security $codename-security main
LIST
apt_private=(-o "Dir::Etc::SourceList=$work/sources.list" -o "Dir::Etc::SourceParts=$work/parts"
             -o "Dir::State::Lists=$work/lists" -o "Dir::Cache=$work/cache" -o "APT::Get::Only-Source=1" -o "APT::Sandbox::User=root")
mkdir -p "$work/cache/archives/partial"
apt-get "${apt_private[@]}" -qq update
(cd "$work" && apt-get "${apt_private[@]}" -qq --download-only source "abseil=$version" &&
   dpkg-source --no-check -x ./abseil_*.dsc abseil >/dev/null)
src="$work/abseil/absl/synchronization"

# The library's own sources (graphcycles is libabsl_graphcycles_internal),
# compiled against the installed headers (Debian's options.h) and linked
# against the installed absl libraries it needs, as Debian's is.
objs=()
for f in barrier.cc blocking_counter.cc internal/create_thread_identity.cc \
         internal/per_thread_sem.cc internal/waiter.cc notification.cc mutex.cc; do
  o="$out/$(basename "$f" .cc).o"
  clang++ -std=c++17 -O1 -g -fPIC -fsanitize=thread -DNDEBUG -c "$src/$f" -o "$o"
  objs+=("$o")
done
# clang keeps the TSan runtime in the executable; this library uses its symbols.
clang++ -shared -fsanitize=thread -Wl,-soname,libabsl_synchronization.so.20220623 -o "$lib.tmp" \
  "${objs[@]}" -labsl_graphcycles_internal -labsl_stacktrace -labsl_symbolize -labsl_time \
  -labsl_malloc_internal -labsl_base -labsl_spinlock_wait -labsl_raw_logging_internal
mv "$lib.tmp" "$lib"
rm -rf "$work" "${objs[@]}"
echo "tsan_absl: built $lib (abseil $version)"
