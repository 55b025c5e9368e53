"""The fused path is a backend: without its package every optimizer still works, eagerly."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import gradkit.optim

OPTIM = Path(gradkit.optim.__file__).parent


def test_an_eager_step_runs_with_the_fused_package_blocked() -> None:
    """``sys.modules[name] = None`` makes any import of the package fail, as if deleted."""
    script = textwrap.dedent(
        """
        import sys
        sys.modules["gradkit.optim.fused"] = None
        import torch
        import gradkit.optim as gko

        param = torch.nn.Parameter(torch.ones(3))
        param.grad = torch.full((3,), 0.5)
        optimizer = gko.Adam([param], lr=0.1)
        optimizer.step()
        assert torch.allclose(param.detach(), torch.full((3,), 0.9)), param
        try:
            gko.Adam([param], lr=0.1, fused=True)
        except ImportError:
            print("fused needs its package")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "fused needs its package"


def test_only_the_optimizer_imports_the_fused_package_and_only_when_asked() -> None:
    """No module of gradkit.optim outside the package names it but the one lazy import."""
    importers = {}
    for path in sorted(OPTIM.rglob("*.py")):
        if "fused" in path.relative_to(OPTIM).parts:
            continue
        lines = [line.strip() for line in path.read_text().splitlines()]
        named = [
            line for line in lines if line.startswith(("from ", "import ")) and "fused" in line
        ]
        if named:
            importers[path.name] = named
    assert importers == {
        "_optimizer.py": [
            "from gradkit.optim.fused import FusedBackend",  # for type checkers only
            "from gradkit.optim.fused import FusedBackend",  # in _fused_backend()
        ]
    }
