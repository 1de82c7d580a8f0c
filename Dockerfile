# mtla-server image, run as a non-root user, configured through the
# environment, with the default model (models/en-de-synthetic) at
# /models/model; mount your own model over it.
#
#   docker build -t mtla-server:0.1.0 .
#   docker run -p 50051:50051 -p 9090:9090 mtla-server:0.1.0      # default model
#   docker run -p 50051:50051 -p 9090:9090 \
#     -v /srv/models/llama_mtla:/models/model:ro mtla-server:0.1.0
#
# Text prompts and text output for LlamaMTLA models with a tokenizer.model go
# through the SentencePiece plugin /usr/local/bin/libmtla_sentencepiece.so
# (libsentencepiece0 is among the runtime packages; docs/design.md).
#
# One mtla-server binary for the CPU and the GPU: the CUDA backend is the
# plugin /usr/local/bin/libmtla_cuda_backend.so, loaded at run time only for
# FLAGS_device=auto|cuda (docs/design.md "CUDA backend"). Without a usable GPU,
# auto serves on the CPU and logs why; cuda stops at startup saying why. The
# CUDA path has not yet run on a GPU (docs/gpu.md): treat GPU serving as
# untested until the first GPU run is recorded there.
#
# Not built by this repository's CI (its machines have no container engine);
# it is kept consistent with the machines the tests run on by construction:
# both stages are Debian 12 (bookworm), the release the tests and
# tools/setup.sh target, the build stage runs that script, so it installs
# exactly the packages a developer machine gets (same names, same versions,
# e.g. oneDNN 2.x from libdnnl-dev, which the code needs), and the runtime
# stage installs only the packages that own the shared libraries the built
# binaries and plugins load (computed in the build stage with ldd and dpkg -S).
# CUDA comes from NVIDIA's apt repository for Debian 12. See
# docs/deployment.md; the deploy.dockerfile test checks all of this.
#
# Flags come from the environment: every server flag NAME in the --tryfromenv
# list below is read from FLAGS_NAME when that variable is set (abseil flags),
# e.g. FLAGS_kv_cache_mb=4096, FLAGS_device=cuda. The Kubernetes manifests in
# deploy/k8s set them per overlay.

ARG DEBIAN_RELEASE=bookworm
ARG CUDA_REPO=debian12
# NVIDIA's package suffix: cuda-nvcc-12-6, libcublas-12-6, ...
ARG CUDA_PACKAGE_VERSION=12-6

# ---------------------------------------------------------------- build stage
FROM debian:${DEBIAN_RELEASE} AS build
ARG CUDA_REPO
ARG CUDA_PACKAGE_VERSION
ENV DEBIAN_FRONTEND=noninteractive
# NVIDIA's CUDA repository (its keyring package), then nvcc, the runtime and cuBLAS.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && curl -fsSLo /tmp/cuda-keyring.deb \
      "https://developer.download.nvidia.com/compute/cuda/repos/${CUDA_REPO}/x86_64/cuda-keyring_1.1-1_all.deb" \
 && dpkg -i /tmp/cuda-keyring.deb && rm /tmp/cuda-keyring.deb \
 && apt-get update \
 && apt-get install -y --no-install-recommends cuda-nvcc-${CUDA_PACKAGE_VERSION} \
      cuda-cudart-dev-${CUDA_PACKAGE_VERSION} libcublas-dev-${CUDA_PACKAGE_VERSION} \
 && rm -rf /var/lib/apt/lists/*
ENV PATH=/usr/local/cuda/bin:${PATH}
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
COPY deploy/docker deploy/docker
# CPU code for a portable x86-64 level instead of the build host's -march=native;
# CUDA code for Ampere, Ada and Hopper.
ARG MTLA_CPU_ARCH=x86-64-v3
ARG CUDA_ARCHITECTURES="80;86;89;90"
RUN cmake -S . -B /build -G Ninja -DCMAKE_BUILD_TYPE=Release -DMTLA_CUDA=AUTO \
      -DMTLA_CPU_ARCH="${MTLA_CPU_ARCH}" -DCMAKE_CUDA_ARCHITECTURES="${CUDA_ARCHITECTURES}" \
      -DMTLA_TESTDATA_DIR=/nonexistent \
 && cmake --build /build --target mtla-server mtla-client mtla-bench -j"$(nproc)" \
 && if [ -f /build/bin/libmtla_cuda_backend.so ]; then :; else \
      echo "no CUDA backend plugin was built (nvcc missing?)" >&2; exit 1; fi \
 && if [ -f /build/bin/libmtla_sentencepiece.so ]; then :; else \
      echo "no SentencePiece plugin was built (libsentencepiece-dev missing?)" >&2; exit 1; fi
# Runtime packages: the owners of every shared library the binaries and the
# plugins load (CUDA's runtime and cuBLAS included), less the C/C++ runtime
# (in the runtime base image). libcuda.so.1 is the driver's: the NVIDIA
# container toolkit mounts it.
RUN set -eu; mkdir -p /out/bin; \
    cp /build/bin/mtla-server /build/bin/mtla-client /build/bin/mtla-bench \
       /build/bin/libmtla_cuda_backend.so /build/bin/libmtla_sentencepiece.so /out/bin/; \
    for b in /out/bin/*; do ldd "$b"; done | awk '$3 ~ /^\// {print $3}' | sort -u > /out/libs.txt; \
    while read -r lib; do \
      real=$(readlink -f "$lib"); \
      dpkg -S "$real" 2>/dev/null || dpkg -S "${real#/usr}" 2>/dev/null || dpkg -S "$lib" 2>/dev/null || true; \
    done < /out/libs.txt | cut -d: -f1 | sort -u \
      | grep -vE '^(libc6|libgcc-s1|libstdc\+\+6)$' \
      > /out/runtime-packages.txt; \
    echo "runtime packages:"; cat /out/runtime-packages.txt

# -------------------------------------------------------------- runtime stage
FROM debian:${DEBIAN_RELEASE}-slim AS runtime
ARG CUDA_REPO
ENV DEBIAN_FRONTEND=noninteractive
# NVIDIA's repository (for cuda-cudart-*, libcublas-*), as in the build stage.
COPY --from=build /usr/share/keyrings/cuda-archive-keyring.gpg /usr/share/keyrings/
COPY --from=build /etc/apt/sources.list.d/cuda-${CUDA_REPO}-x86_64.list /etc/apt/sources.list.d/
COPY --from=build /out/runtime-packages.txt /tmp/runtime-packages.txt
RUN apt-get update \
 && xargs -a /tmp/runtime-packages.txt apt-get install -y --no-install-recommends \
 && rm -rf /var/lib/apt/lists/* /tmp/runtime-packages.txt \
 && groupadd --system --gid 10001 mtla \
 && useradd --system --uid 10001 --gid mtla --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin mtla
COPY --from=build /out/bin/ /usr/local/bin/
COPY deploy/docker/entrypoint.sh /usr/local/bin/mtla-entrypoint
# The default model, where FLAGS_model_dir points; a mounted model replaces it.
COPY models/en-de-synthetic /models/model

# Defaults; override any FLAGS_<flag> with `docker run -e` or the pod's env.
ENV FLAGS_model_dir=/models/model \
    FLAGS_listen=0.0.0.0:50051 \
    FLAGS_metrics_listen=0.0.0.0:9090 \
    FLAGS_device=auto \
    FLAGS_drain_grace_seconds=30
# Cores are usually shared (other containers, a CPU quota): an idle OpenMP
# thread spins about 0.1 ms (GOMP_SPINCOUNT, libgomp) and then sleeps, which
# bridges the gaps between a decode step's parallel regions without holding a
# core anyone else wants (docs/design.md, "OpenMP waiting"); the entrypoint
# sets OMP_NUM_THREADS from the container's CPU quota unless it is given
# (deploy/docker/entrypoint.sh). The NVIDIA container toolkit reads the
# NVIDIA_* variables to mount the driver.
ENV GOMP_SPINCOUNT=10000 \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
EXPOSE 50051 9090
VOLUME ["/models"]
USER 10001:10001
# SIGTERM drains (health NOT_SERVING, in-flight requests finish within
# FLAGS_drain_grace_seconds); the server is PID 1 and handles it itself.
STOPSIGNAL SIGTERM
# grpc.health.v1 Check on the gRPC port of FLAGS_listen with the bundled
# client: healthy only when SERVING (not while loading, draining or after a
# backend failure). With TLS on the gRPC port, override it with the client's
# --tls_* flags (docs/deployment.md).
HEALTHCHECK --interval=15s --timeout=5s --start-period=300s --retries=3 \
  CMD /usr/local/bin/mtla-client --address="127.0.0.1:${FLAGS_listen##*:}" --timeout=3 health
ENTRYPOINT ["/usr/local/bin/mtla-entrypoint", "/usr/local/bin/mtla-server", "--tryfromenv=model_dir,listen,metrics_listen,device,dtype,kv_cache_mb,kv_cache_blocks,block_slots,max_running,max_batched_tokens,max_queued,max_message_bytes,max_new_tokens_limit,max_context_tokens,drain_grace_seconds,tls_cert_file,tls_key_file,tls_client_ca_file,keepalive_time_seconds,keepalive_timeout_seconds,keepalive_min_client_ping_interval_seconds,max_connection_age_seconds,max_connection_age_grace_seconds,served_model_name,engine_stall_seconds,request_log,request_log_content,max_streams,stream_idle_timeout_seconds,stream_write_stall_seconds,early_finals,encoder_ms_per_step"]
