"""python -m fake_master [--info-dir DIR --storage DIR] [--tls CERT KEY] [--latency S]

Prints one JSON line {"url": ..., "port": ...} on stdout, then serves until killed (SIGTERM,
SIGINT). Control endpoints: see the package docstring."""
import argparse
import json
import signal
import sys
import threading

from . import FakeMaster


def main() -> int:
    ap = argparse.ArgumentParser(prog="fake_master")
    ap.add_argument("--info-dir")
    ap.add_argument("--storage", help="shared_fs host_path of the experiment config")
    ap.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"))
    ap.add_argument("--latency", type=float, default=0.0)
    a = ap.parse_args()
    m = FakeMaster(tls=tuple(a.tls) if a.tls else None).start()
    m.script(latency=a.latency)
    if a.info_dir:
        m.write_info_dir(a.info_dir, storage_host_path=a.storage or "/tmp/fake-master-storage")
    print(json.dumps({"url": m.url, "port": m.port, "token": m.token}), flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    done.wait()
    m.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
