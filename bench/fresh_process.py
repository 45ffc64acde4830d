"""Run one way of a benchmark in a fresh Python process and read back its time and peak memory.

A fresh process per way keeps one way's caches, imports and heap out of the other's figures. The child is
a script (``python -c CODE ARGS``) that sets ``elapsed`` (seconds) and, optionally, a dict ``extra``,
and ends with :data:`REPORT`, which prints them with the process image's own peak resident memory:
``VmHWM`` from ``/proc/self/status`` (``ru_maxrss`` would carry the parent's peak over the fork and exec).

>>> run_fresh("elapsed = 0.5\\nextra = {'answer': 42}\\n" + REPORT)["answer"]
42
"""

from __future__ import annotations

import json
import subprocess
import sys

#: the last lines of every child: print seconds, peak MiB and ``extra`` as one JSON line
REPORT = r"""
import json as _json
_peak_kib = next(int(_l.split()[1]) for _l in open("/proc/self/status") if _l.startswith("VmHWM:"))
print(_json.dumps({"seconds": elapsed, "peak_mib": _peak_kib / 1024, **globals().get("extra", {})}))
"""


def run_fresh(code: str, *args: str) -> dict:
    """Run ``code`` with ``args`` in a new interpreter; its last printed line as a dict (seconds,
    peak_mib and the child's extra). A failed child raises with the end of its stderr."""
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"the benchmark's child process failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])
