#!/usr/bin/env python3
"""The TLS kustomize components (deploy/k8s/components/{tls,mtls}) render onto
the cpu overlay (deploy/k8s/overlays/cpu-mtls, and cpu + tls alone), and what
they render works: a real mtla-server started the way the image starts it,
with the rendered FLAGS_* environment and the Secret's files (test
certificates made by openssl, in a directory standing for the Secret's mount),
serves over (mutual) TLS, and the rendered exec probes, run as written (the
image's mtla-client path, 127.0.0.1 and the port replaced by the test's),
report it healthy, while a plaintext probe (what the kubelet's native gRPC
probe would do) fails.

usage: check_k8s_tls.py MTLA_SERVER MTLA_CLIENT TESTDATA_DIR MAKE_TEST_CERTS_SH
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mtla_testlib import (REPO, SKIP, Server, check, fail, find_kubectl, kustomize,  # noqa: E402
                          model_dir, need_yaml, skip)

need_yaml()
server_bin, client_bin, testdata, make_certs = sys.argv[1:5]
model = model_dir(testdata)
K8S = os.path.join(REPO, "deploy", "k8s")
MOUNT = "/etc/mtla/tls"
SECRET_FILES = {"tls.crt": "pod.pem", "tls.key": "pod.key", "ca.crt": "ca.pem"}

entrypoint = json.loads(re.search(r"^ENTRYPOINT\s+(\[.*\])\s*$",
                                  open(os.path.join(REPO, "Dockerfile")).read(), re.M).group(1))
fromenv = next(a for a in entrypoint if a.startswith("--tryfromenv=")).split("=", 1)[1].split(",")
kubectl = find_kubectl()

tmp = tempfile.mkdtemp(prefix=f"mtla-k8s-tls-{os.getpid()}-")


def deployment(path):
    (dep,) = [d for d in kustomize(kubectl, path) if d["kind"] == "Deployment"]
    return dep


def container(dep):
    (c,) = [c for c in dep["spec"]["template"]["spec"]["containers"] if c["name"] == "mtla-server"]
    return c


def check_rendered(dep, tag, mutual):
    pod = dep["spec"]["template"]["spec"]
    c = container(dep)
    env = {e["name"]: e.get("value") for e in c["env"]}
    flag_env = {k[len("FLAGS_"):]: v for k, v in env.items() if k.startswith("FLAGS_")}
    check(set(flag_env) <= set(fromenv), f"{tag} every FLAGS_ variable is read by the image")
    volumes = {v["name"]: v for v in pod["volumes"]}
    (mount,) = [m for m in c["volumeMounts"] if m["mountPath"] == MOUNT]
    check(mount.get("readOnly") is True and
          volumes[mount["name"]].get("secret", {}).get("secretName") == "mtla-server-tls",
          f"{tag} Secret mtla-server-tls mounted read-only at {MOUNT}")
    mode = volumes[mount["name"]]["secret"].get("defaultMode", 0o644)
    check(mode & 0o007 == 0 and mode & 0o040 and pod["securityContext"].get("fsGroup"),
          f"{tag} key readable by the pod's fsGroup only (mode {mode:o})")
    expected = {"tls_cert_file": f"{MOUNT}/tls.crt", "tls_key_file": f"{MOUNT}/tls.key"}
    if mutual:
        expected["tls_client_ca_file"] = f"{MOUNT}/ca.crt"
    check({k: v for k, v in flag_env.items() if k.startswith("tls_")} == expected,
          f"{tag} TLS flags point into the Secret ({expected})")
    grpc_port = int(flag_env["listen"].rsplit(":", 1)[1])
    commands = []
    for name in ("startupProbe", "readinessProbe", "livenessProbe"):
        probe = c[name]
        check("grpc" not in probe and "exec" in probe, f"{tag} {name} is an exec probe (kubelet gRPC probes are plaintext)")
        command = probe["exec"]["command"]
        check(command[0] == "/usr/local/bin/mtla-client" and command[-1] == "health" and
              f"127.0.0.1:{grpc_port}" in command, f"{tag} {name}: mtla-client health on 127.0.0.1:{grpc_port}")
        timeout = float(command[command.index("--timeout") + 1])
        check(timeout < probe["timeoutSeconds"], f"{tag} {name}: the client's --timeout {timeout:g} s "
              f"< timeoutSeconds {probe['timeoutSeconds']}")
        check(("--tls_cert_file" in command) == mutual, f"{tag} {name}: client certificate iff mutual TLS")
        commands.append(command)
    return flag_env, env, commands


def in_test(value, secret_dir, port):
    """A rendered path or address as it is on this machine."""
    value = value.replace(MOUNT, secret_dir).replace("/usr/local/bin/mtla-client", client_bin)
    return re.sub(r"^127\.0\.0\.1:\d+$", f"127.0.0.1:{port}", value)


def run_probe(command, secret_dir, port):
    cmd = [in_test(a, secret_dir, port) for a in command]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    print("$", " ".join(cmd), "->", proc.returncode, proc.stdout.strip(), proc.stderr.strip()[-300:])
    return proc.returncode


try:
    made = subprocess.run(["bash", make_certs, os.path.join(tmp, "certs")], capture_output=True,
                          text=True, timeout=60)
    if made.returncode == SKIP:
        skip(made.stderr.strip())
    if made.returncode != 0:
        fail(f"make_test_certs.sh failed: {made.stderr}")
    # The Secret's mount.
    secret_dir = os.path.join(tmp, "secret")
    os.makedirs(secret_dir)
    for key, name in SECRET_FILES.items():
        shutil.copy(os.path.join(tmp, "certs", name), os.path.join(secret_dir, key))

    # cpu + tls alone, in a kustomization of the test's own.
    tls_only = os.path.join(tmp, "cpu-tls")
    os.makedirs(tls_only)
    with open(os.path.join(tls_only, "kustomization.yaml"), "w") as f:
        f.write("apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
                f"resources:\n  - {os.path.relpath(os.path.join(K8S, 'overlays', 'cpu'), tls_only)}\n"
                f"components:\n  - {os.path.relpath(os.path.join(K8S, 'components', 'tls'), tls_only)}\n")
    for tag, path, mutual in [("[cpu+tls]", tls_only, False),
                              ("[cpu-mtls]", os.path.join(K8S, "overlays", "cpu-mtls"), True)]:
        flag_env, env, commands = check_rendered(deployment(path), tag, mutual)
        # The server as the image starts it, with the rendered environment.
        run_env = {k: in_test(v, secret_dir, 0) for k, v in env.items() if v is not None}
        run_env.update({"FLAGS_model_dir": model, "FLAGS_listen": "127.0.0.1:0",
                        "FLAGS_metrics_listen": "127.0.0.1:0", "FLAGS_device": "cpu",
                        "FLAGS_kv_cache_mb": "16", "PATH": os.environ.get("PATH", "/usr/bin:/bin")})
        with Server(server_bin, None, args=entrypoint[2:], env=run_env, listen=None,
                    metrics_listen=None) as server:
            server.wait_serving()
            for command in commands:
                check(run_probe(command, secret_dir, server.port) == 0,
                      f"{tag} the rendered probe passes against the server")
            plain = [client_bin, "--address", f"127.0.0.1:{server.port}", "--timeout", "2", "health"]
            check(subprocess.run(plain, capture_output=True, timeout=30).returncode == 1,
                  f"{tag} a plaintext probe fails (why the probes are exec probes)")
            if mutual:
                no_cert = [a for a in commands[0]]
                i = no_cert.index("--tls_cert_file")
                del no_cert[i:i + 4]  # --tls_cert_file F --tls_key_file F
                check(run_probe(no_cert, secret_dir, server.port) == 1,
                      f"{tag} without the client certificate the probe fails")
finally:
    shutil.rmtree(tmp, ignore_errors=True)
print("PASS")
