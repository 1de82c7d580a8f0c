#!/usr/bin/env python3
"""The TLS flags of the real binaries on loopback: mtla-server with
--tls_cert_file/--tls_key_file (and --tls_client_ca_file for mutual TLS),
mtla-client and mtla-bench with --tls_ca_file/--tls_cert_file/--tls_key_file/
--tls_server_name; the server's keepalive and connection-age flags; and the
errors for bad flag combinations (exit codes and messages naming the flag and
the file).

Certificates are made by openssl at test time (tests/common/make_test_certs.sh)
in a temporary directory of this process.

usage: tls_tools_test.py MTLA_SERVER MTLA_CLIENT MTLA_BENCH TESTDATA_DIR MAKE_TEST_CERTS_SH
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mtla_testlib import SKIP, Server, check, fail, model_dir, skip  # noqa: E402

server_bin, client_bin, bench_bin, testdata, make_certs = sys.argv[1:6]
model = model_dir(testdata)
GENERATED = [71, 41, 3, 56, 23, 82, 84, 77, 82, 84, 77, 82]  # greedy answer to PROMPT
PROMPT = "1 17 42 5 66 23 9"

tmp = tempfile.mkdtemp(prefix=f"mtla-tls-test-{os.getpid()}-")
certs = os.path.join(tmp, "certs")
made = subprocess.run(["bash", make_certs, certs], capture_output=True, text=True, timeout=60)
if made.returncode == SKIP:
    shutil.rmtree(tmp, ignore_errors=True)
    skip(made.stderr.strip())
if made.returncode != 0:
    fail(f"make_test_certs.sh failed: {made.stderr}")


def cert(name):
    return os.path.join(certs, name)


def run(binary, *args, timeout=60, server_log=None):
    cmd = [binary, *args]
    print("$", " ".join(cmd), flush=True)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        # What the hung command had printed, for the log; then the test fails.
        for out in (e.stdout, e.stderr):
            if out:
                text = out.decode(errors="replace") if isinstance(out, bytes) else out
                print(text.strip()[-3000:])
        if server_log:
            print("server log (last lines):\n" + "\n".join(server_log[-30:]))
        print(f"FAIL: {os.path.basename(binary)} did not finish within {timeout} s", flush=True)
        sys.exit(1)
    if proc.stdout.strip():
        print(proc.stdout.strip()[-1500:])
    if proc.stderr.strip():
        print(proc.stderr.strip()[-1500:])
    return proc


def client(address, *args, tls=()):
    return run(client_bin, "--address", address, "--timeout", "10", *tls, *args)


CA = ("--tls_ca_file", cert("ca.pem"))
CLIENT_CERT = ("--tls_cert_file", cert("client.pem"), "--tls_key_file", cert("client.key"))
OTHER_CERT = ("--tls_cert_file", cert("other_client.pem"), "--tls_key_file", cert("other_client.key"))


def expect_generated(proc, name):
    check(proc.returncode == 0, f"{name}: exit 0 (got {proc.returncode})")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    check(out["token_ids"] == GENERATED, f"{name}: the reference tokens")


def expect_refused(proc, name):
    check(proc.returncode == 1 and "rpc failed: UNAVAILABLE" in proc.stderr,
          f"{name}: refused, exit 1 with UNAVAILABLE (got {proc.returncode})")


def server_error(name, args, expected):
    """mtla-server with `args` stops at start with exit 1 and `expected` in its log."""
    proc = run(server_bin, f"--model_dir={model}", "--listen=127.0.0.1:0", "--metrics_listen=",
               *args, timeout=30)
    check(proc.returncode == 1 and expected in proc.stderr,
          f"server {name}: exit 1 naming the problem ({expected!r}; got {proc.returncode})")


try:
    # --- mutual TLS -------------------------------------------------------
    tls_args = [f"--tls_cert_file={cert('server.pem')}", f"--tls_key_file={cert('server.key')}",
                f"--tls_client_ca_file={cert('ca.pem')}",
                "--keepalive_time_seconds=30", "--keepalive_timeout_seconds=10",
                "--keepalive_min_client_ping_interval_seconds=10",
                "--max_connection_age_seconds=300", "--max_connection_age_grace_seconds=60"]
    with Server(server_bin, model, tls_args + ["--device=cpu", "--kv_cache_mb=16"]) as server:
        server.wait_serving()
        address = server.address
        mtls = CA + CLIENT_CERT
        proc = client(address, "info", tls=mtls)
        check(proc.returncode == 0 and "llama-mtla" in proc.stdout, "mTLS: client info")
        proc = client(address, "health", tls=mtls)
        check(proc.returncode == 0 and proc.stdout.strip() == "SERVING", "mTLS: client health")
        expect_generated(client(address, "--json", "generate", "--prompt_ids", PROMPT,
                                "--max_new_tokens", "12", tls=mtls), "mTLS: client generate")
        expect_generated(client(address, "--json", "generate", "--prompt_ids", PROMPT,
                                "--max_new_tokens", "12",
                                tls=mtls + ("--tls_server_name", "localhost")),
                         "mTLS: --tls_server_name localhost")
        expect_generated(client(f"localhost:{server.port}", "--json", "generate", "--prompt_ids",
                                PROMPT, "--max_new_tokens", "12", tls=mtls),
                         "mTLS: by the name localhost")
        expect_refused(client(address, "info", tls=CA), "mTLS: no client certificate")
        expect_refused(client(address, "info", tls=CA + OTHER_CERT),
                       "mTLS: client certificate from another CA")
        expect_refused(client(address, "info"), "mTLS: plaintext client")
        expect_refused(client(address, "info", tls=("--tls_ca_file", cert("other_ca.pem")) + CLIENT_CERT),
                       "mTLS: client that does not trust the server's CA")
        expect_refused(client(address, "info", tls=mtls + ("--tls_server_name", "mtla.example.com")),
                       "mTLS: a name the server's certificate does not carry")

        # mtla-bench over mutual TLS.
        report_path = os.path.join(tmp, "bench.json")
        # A request that never ends shows as DEADLINE_EXCEEDED in the report
        # (and progress lines show what is in flight) instead of a hang.
        proc = run(bench_bin, f"--address={address}", "--num_requests=4", "--concurrency=2",
                   "--prompt_len=8", "--output_len=8", "--wait_for_ready_seconds=10",
                   "--request_timeout_seconds=30", "--drain_timeout_seconds=40",
                   "--progress_interval_seconds=5", f"--json={report_path}",
                   f"--tls_ca_file={cert('ca.pem')}", f"--tls_cert_file={cert('client.pem')}",
                   f"--tls_key_file={cert('client.key')}", "--tls_server_name=localhost",
                   server_log=server.lines)
        check(proc.returncode == 0, f"mTLS: mtla-bench exit 0 (got {proc.returncode})")
        with open(report_path) as f:
            report = json.load(f)
        check(report["requests"]["completed"] == 4 and report["requests"]["failed"] == 0,
              f"mTLS: mtla-bench completed 4 requests ({report['requests']})")
        check(report["config"]["tls"] is True and report["config"]["mutual_tls"] is True,
              "mTLS: the bench report records TLS")
        proc = run(bench_bin, f"--address={address}", "--num_requests=1", "--wait_for_ready_seconds=1",
                   "--progress_interval_seconds=0", f"--tls_ca_file={cert('ca.pem')}")
        check(proc.returncode == 1 and "is not serving" in proc.stderr,
              f"mTLS: mtla-bench without a client certificate fails (exit {proc.returncode})")

    # --- TLS without client certificates ----------------------------------
    with Server(server_bin, model, tls_args[:2] + ["--device=cpu", "--kv_cache_mb=16"]) as server:
        server.wait_serving()
        address = server.address
        expect_generated(client(address, "--json", "generate", "--prompt_ids", PROMPT,
                                "--max_new_tokens", "12", tls=CA), "TLS: client generate")
        proc = client(address, "info", tls=("--tls_server_name", "localhost"))
        expect_refused(proc, "TLS: the system's roots do not trust the test CA")
        expect_refused(client(address, "info"), "TLS: plaintext client")

    # --- the tools' flag errors (exit 2, before contacting anything) ------
    for name, tls, expected in [
        ("certificate without key", ("--tls_cert_file", cert("client.pem")),
         "--tls_cert_file is set without --tls_key_file"),
        ("key without certificate", ("--tls_key_file", cert("client.key")),
         "--tls_key_file is set without --tls_cert_file"),
        ("missing CA file", ("--tls_ca_file", cert("missing.pem")),
         f"--tls_ca_file={cert('missing.pem')}: cannot open"),
        ("missing certificate file", ("--tls_cert_file", cert("missing.pem"), "--tls_key_file",
                                      cert("client.key")),
         f"--tls_cert_file={cert('missing.pem')}: cannot open"),
    ]:
        proc = client("127.0.0.1:1", "info", tls=tls)
        check(proc.returncode == 2 and expected in proc.stderr, f"client, {name}: exit 2 naming it")
        bench_flags = [f"{tls[i]}={tls[i + 1]}" for i in range(0, len(tls), 2)]
        proc = run(bench_bin, "--address=127.0.0.1:1", "--num_requests=1", *bench_flags)
        check(proc.returncode == 2 and expected in proc.stderr, f"bench, {name}: exit 2 naming it")

    # --- the server's flag errors (exit 1 at start) -----------------------
    server_error("certificate without key", [f"--tls_cert_file={cert('server.pem')}"],
                 "--tls_cert_file is set without --tls_key_file")
    server_error("key without certificate", [f"--tls_key_file={cert('server.key')}"],
                 "--tls_key_file is set without --tls_cert_file")
    server_error("client CA without certificate", [f"--tls_client_ca_file={cert('ca.pem')}"],
                 "--tls_client_ca_file needs --tls_cert_file and --tls_key_file")
    server_error("missing certificate file",
                 [f"--tls_cert_file={cert('missing.pem')}", f"--tls_key_file={cert('server.key')}"],
                 f"--tls_cert_file={cert('missing.pem')}: cannot open")
    server_error("key of another certificate",
                 [f"--tls_cert_file={cert('server.pem')}", f"--tls_key_file={cert('client.key')}"],
                 "the private key does not match the certificate")
    server_error("CA file that is not PEM",
                 [f"--tls_cert_file={cert('server.pem')}", f"--tls_key_file={cert('server.key')}",
                  f"--tls_client_ca_file={cert('not_pem.txt')}"],
                 f"--tls_client_ca_file={cert('not_pem.txt')}: no PEM certificate")
    server_error("encrypted key",
                 [f"--tls_cert_file={cert('client.pem')}", f"--tls_key_file={cert('encrypted.key')}"],
                 "the private key is encrypted")
    server_error("negative connection age", ["--max_connection_age_seconds=-1"],
                 "--max_connection_age_seconds must be a number of seconds >= 0")
finally:
    shutil.rmtree(tmp, ignore_errors=True)
print("PASS")
