"""The hello agent: checks, from inside its bottle, that it reaches its own service and
nothing else, prints what it found, and exits 0 only if bottle kept its promise."""

import os
import socket
import sys

TIMEOUT = 2.0
EXPECTED_ANSWER = "hello from your bundle"
# bottle's default alias pool, 127.0.0.16/28.
POOL = [f"127.0.0.{n}" for n in range(16, 32)]
# Ports where host services commonly listen: ssh, http, postgres, redis, dev servers, Docker.
HOST_PORTS = [22, 80, 5432, 6379, 8080, 2375]
# TEST-NET-1 (RFC 5737): an outside address that belongs to no one.
OUTSIDE = ("192.0.2.1", 80)
DOCKER_SOCKET = "/var/run/docker.sock"


def get(host, port):
    """Connects and sends an HTTP GET: (connected, what happened)."""
    try:
        with socket.create_connection((host, port), timeout=TIMEOUT) as conn:
            conn.sendall(b"GET / HTTP/1.0\r\nHost: hello\r\n\r\n")
            data = b""
            while chunk := conn.recv(4096):
                data += chunk
    except socket.timeout:
        return False, "timed out"
    except OSError as e:
        return False, e.strerror or type(e).__name__
    body = data.split(b"\r\n\r\n", 1)[-1].decode(errors="replace").strip()
    return True, f'answered "{body}"' if body else "connected"


def main():
    alias = os.environ.get("BOTTLE_ALIAS", "")
    service = os.environ.get("BOTTLE_SERVICE_HELLO", "")
    if not alias or ":" not in service:
        print("BOTTLE_ALIAS and BOTTLE_SERVICE_HELLO must be set: run me with `bottle run`")
        return 1
    host, port = service.rsplit(":", 1)
    port = int(port)

    rows = []

    def check(what, target, expect_reach, reached, detail):
        rows.append((what, target, expect_reach, reached, detail))

    reached, detail = get(host, port)
    check("its own service", service, True, reached and EXPECTED_ANSWER in detail, detail)
    for p in HOST_PORTS:
        check("host loopback", f"127.0.0.1:{p}", False, *get("127.0.0.1", p))
    for other in POOL:
        if other != alias:
            check("another bottle's alias", f"{other}:{port}", False, *get(other, port))
    check("the outside", f"{OUTSIDE[0]}:{OUTSIDE[1]}", False, *get(*OUTSIDE))
    present = os.path.exists(DOCKER_SOCKET)
    check("the Docker socket", DOCKER_SOCKET, False, present,
          "present" if present else "absent")

    print(f"what the agent of bottle {os.environ.get('BOTTLE_SLUG', '?')} ({alias}) can reach:")
    print(f"  {'':2} {'check':<24} {'target':<24} {'expected':<10} {'got':<10} detail")
    failures = 0
    for what, target, expect_reach, reached, detail in rows:
        ok = expect_reach == reached
        failures += not ok
        mark = "ok" if ok else "!!"
        expected = "reach" if expect_reach else "no reach"
        got = "reach" if reached else "no reach"
        print(f"  {mark:2} {what:<24} {target:<24} {expected:<10} {got:<10} {detail}")
    if failures:
        print(f"{failures} check(s) broke the promise: the agent reaches more (or less) than "
              "its own bundle")
        return 1
    print("the promise holds: the agent reaches its own bundle and nothing else")
    return 0


if __name__ == "__main__":
    sys.exit(main())
