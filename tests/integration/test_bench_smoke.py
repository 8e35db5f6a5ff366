"""The benchmark still runs: ``bench/run.py --smoke`` (tiny sizes) against real QEMU.

Not timed and not asserting speed: it checks that every row of the table is
measured and printed, so the benchmark cannot rot between full runs.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import REPO, qmpsh_env, require_qemu

RUN = REPO / "bench" / "run.py"


def bench_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("qmpsh_bench_run", RUN)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return module


def bench_rows() -> tuple[str, ...]:
    rows: tuple[str, ...] = bench_module().ROWS
    return rows


def test_cpu_hog_is_stopped_even_when_the_row_fails() -> None:
    """The hog the benchmark starts for the loaded throughput row never outlives the row."""
    bench = bench_module()
    with pytest.raises(RuntimeError), bench.cpu_hog() as hog:
        os.kill(hog.pid, 0)  # running
        raise RuntimeError("the row failed")
    with pytest.raises(ProcessLookupError):
        os.kill(hog.pid, 0)


def test_bench_smoke(tmp_path: Path) -> None:
    require_qemu()
    out = tmp_path / "bench.json"
    result = subprocess.run([sys.executable, str(RUN), "--smoke", "--json", str(out)], capture_output=True,
                            text=True, timeout=120, cwd=REPO, env=qmpsh_env())
    assert result.returncode == 0, result.stderr[-3000:]
    rows = bench_rows()
    for name in rows:
        assert name in result.stdout, f"row {name!r} missing from:\n{result.stdout}"
    assert "(not run)" not in result.stdout
    data = json.loads(out.read_text())
    assert data["smoke"] is True
    assert set(data["rows"]) == set(rows)
    # What the benchmark checks besides speed holds even at tiny sizes.
    measured = data["rows"]
    assert measured["scripted run imports prompt_toolkit/rich"]["met"] is True, measured
    assert measured["event flood: all printed, in order"]["met"] is True, measured
    assert measured["event flood after reply, /wait last (events/s)"]["detail"]["in_order"] is True, measured


def test_bench_skips_the_domain_rows_plainly_without_libvirt(tmp_path: Path) -> None:
    require_qemu()
    uri = "qemu:///system?socket=/nonexistent/libvirt-sock"
    result = subprocess.run([sys.executable, str(RUN), "--smoke", "--only", "domain"], capture_output=True,
                            text=True, timeout=120, cwd=REPO, env=qmpsh_env(QMPSH_BENCH_LIBVIRT_URI=uri))
    assert result.returncode == 0, result.stderr[-3000:]
    why = f"libvirt does not answer at {uri}: error: failed to connect to the hypervisor"
    assert f"bench: --domain rows skipped: {why}" in result.stderr
    for row in ("--domain: scripted throughput (ms/command)", "--domain: start-up, one query-status (ms)"):
        (line,) = [line for line in result.stdout.splitlines() if line.startswith(row)]
        assert "skipped" in line and why in line, line
