"""``make bench``: run every ``tests/perf/bench_*.py`` module's ``main()`` in turn.

Each benchmark prints its own table and writes JSON under var/bench/. One failing
benchmark does not stop the others; the exit code says whether any failed.
"""

from __future__ import annotations

import importlib.util
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def run(path: Path) -> bool:
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    print(f"\n=== {path.stem} ===", flush=True)
    started = time.monotonic()
    try:
        module.main()
    except Exception:  # noqa: BLE001 - report and go on with the next benchmark
        traceback.print_exc()
        return False
    print(f"({path.stem}: {time.monotonic() - started:.1f} s)", flush=True)
    return True


def main() -> int:
    sys.path.insert(0, str(ROOT))
    only = set(sys.argv[1:])
    paths = [p for p in sorted(HERE.glob("bench_*.py")) if not only or p.stem in only]
    failed = [p.stem for p in paths if not run(p)]
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
