# mtla-server image, run as a non-root user, configured through the
# environment, with the default model (models/en-de-synthetic) at
# /models/model; mount your own model over it.
#
#   docker build -t mtla-server:0.1.0 .
#   docker run -p 50051:50051 -p 9090:9090 mtla-server:0.1.0      # default model
#   docker run -p 50051:50051 -p 9090:9090 \
#     -v /srv/models/llama_mtla:/models/model:ro mtla-server:0.1.0
#
# One mtla-server binary for the CPU and the GPU: the CUDA backend is the
# plugin /usr/local/bin/libmtla_cuda_backend.so, loaded at run time only for
# FLAGS_device=auto|cuda (docs/design.md "CUDA backend"). Without a usable GPU,
# auto serves on the CPU and logs why; cuda stops at startup saying why. The
# CUDA path has not yet run on a GPU (docs/gpu.md): treat GPU serving as
# untested until the first GPU run is recorded there.
#
# Not built by this repository's CI (its machines have no container engine);
# it is kept consistent with tools/setup.sh by construction: the build stage
# runs that script, so it installs exactly the packages a developer machine
# gets, and the runtime stage installs only the packages that own the shared
# libraries the built binaries load (computed in the build stage with ldd and
# dpkg -S). See docs/deployment.md.
#
# Flags come from the environment: every server flag NAME in the --tryfromenv
# list below is read from FLAGS_NAME when that variable is set (abseil flags),
# e.g. FLAGS_kv_cache_mb=4096, FLAGS_device=cuda. The Kubernetes manifests in
# deploy/k8s set them per overlay.

ARG CUDA_VERSION=12.6.3
ARG UBUNTU_VERSION=ubuntu24.04

# ---------------------------------------------------------------- build stage
FROM nvidia/cuda:${CUDA_VERSION}-devel-${UBUNTU_VERSION} AS build
ENV DEBIAN_FRONTEND=noninteractive
WORKDIR /src
# The same packages as a developer machine (the script is idempotent).
COPY tools/setup.sh tools/setup.sh
RUN bash tools/setup.sh && rm -rf /var/lib/apt/lists/*
# The source folders the top-level CMakeLists.txt adds (no build trees; the
# deploy.dockerfile test keeps this list complete).
COPY CMakeLists.txt CMakePresets.json ./
COPY cmake cmake
COPY proto proto
COPY engine engine
COPY server server
COPY kernels kernels
COPY tools tools
COPY bench bench
COPY tests tests
# CPU code for a portable x86-64 level instead of the build host's -march=native;
# CUDA code for Ampere, Ada and Hopper.
ARG MTLA_CPU_ARCH=x86-64-v3
ARG CUDA_ARCHITECTURES="80;86;89;90"
RUN cmake -S . -B /build -G Ninja -DCMAKE_BUILD_TYPE=Release -DMTLA_CUDA=AUTO \
      -DMTLA_CPU_ARCH="${MTLA_CPU_ARCH}" -DCMAKE_CUDA_ARCHITECTURES="${CUDA_ARCHITECTURES}" \
      -DMTLA_TESTDATA_DIR=/nonexistent \
 && cmake --build /build --target mtla-server mtla-client mtla-bench -j"$(nproc)" \
 && if [ -f /build/bin/libmtla_cuda_backend.so ]; then :; else \
      echo "no CUDA backend plugin was built (nvcc missing?)" >&2; exit 1; fi
# Runtime packages: the owners of every shared library the binaries load,
# less the C/C++ runtime and CUDA (both in the runtime base image).
RUN set -eu; mkdir -p /out/bin; \
    cp /build/bin/mtla-server /build/bin/mtla-client /build/bin/mtla-bench \
       /build/bin/libmtla_cuda_backend.so /out/bin/; \
    for b in /out/bin/*; do ldd "$b"; done | awk '$3 ~ /^\// {print $3}' | sort -u > /out/libs.txt; \
    while read -r lib; do \
      real=$(readlink -f "$lib"); \
      dpkg -S "$real" 2>/dev/null || dpkg -S "${real#/usr}" 2>/dev/null || dpkg -S "$lib" 2>/dev/null || true; \
    done < /out/libs.txt | cut -d: -f1 | sort -u \
      | grep -vE '^(libc6|libgcc-s1|libstdc\+\+6|cuda-.*|libcu.*|libnv.*|libnccl.*)$' \
      > /out/runtime-packages.txt; \
    echo "runtime packages:"; cat /out/runtime-packages.txt

# -------------------------------------------------------------- runtime stage
FROM nvidia/cuda:${CUDA_VERSION}-runtime-${UBUNTU_VERSION} AS runtime
ENV DEBIAN_FRONTEND=noninteractive
COPY --from=build /out/runtime-packages.txt /tmp/runtime-packages.txt
RUN apt-get update \
 && xargs -a /tmp/runtime-packages.txt apt-get install -y --no-install-recommends \
 && rm -rf /var/lib/apt/lists/* /tmp/runtime-packages.txt \
 && groupadd --system --gid 10001 mtla \
 && useradd --system --uid 10001 --gid mtla --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin mtla
COPY --from=build /out/bin/ /usr/local/bin/
# The default model, where FLAGS_model_dir points; a mounted model replaces it.
COPY models/en-de-synthetic /models/model

# Defaults; override any FLAGS_<flag> with `docker run -e` or the pod's env.
ENV FLAGS_model_dir=/models/model \
    FLAGS_listen=0.0.0.0:50051 \
    FLAGS_metrics_listen=0.0.0.0:9090 \
    FLAGS_device=auto \
    FLAGS_drain_grace_seconds=30
EXPOSE 50051 9090
VOLUME ["/models"]
USER 10001:10001
# SIGTERM drains (health NOT_SERVING, in-flight requests finish within
# FLAGS_drain_grace_seconds); the server is PID 1 and handles it itself.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/mtla-server", "--tryfromenv=model_dir,listen,metrics_listen,device,dtype,kv_cache_mb,kv_cache_blocks,block_slots,max_running,max_batched_tokens,max_queued,max_message_bytes,max_new_tokens_limit,max_context_tokens,drain_grace_seconds,tls_cert_file,tls_key_file,tls_client_ca_file,keepalive_time_seconds,keepalive_timeout_seconds,keepalive_min_client_ping_interval_seconds,max_connection_age_seconds,max_connection_age_grace_seconds,served_model_name,engine_stall_seconds,max_streams,stream_idle_timeout_seconds,stream_write_stall_seconds"]
