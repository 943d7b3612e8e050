"""Another commit's ``personalizer`` package, importable beside the working tree's: benches
with ``--against REF`` run each version in its own process, that folder first on sys.path."""

from __future__ import annotations

import subprocess
import tarfile
from io import BytesIO
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def package_of(ref: str) -> Path:
    """The ``personalizer`` package of commit ``ref`` as an importable folder (sdk/ with
    backends/ and profiles/ inside, as pyproject's package-dir maps them)."""
    sha = subprocess.run(["git", "rev-parse", ref], cwd=ROOT, check=True, capture_output=True,
                         text=True).stdout.strip()
    out = ROOT / "bench" / "out" / f"impl-{sha[:10]}"
    pkg = out / "personalizer"
    if not pkg.exists():
        data = subprocess.run(["git", "archive", sha, "sdk", "backends", "profiles"], cwd=ROOT,
                              check=True, capture_output=True).stdout
        with tarfile.open(fileobj=BytesIO(data)) as tar:
            tar.extractall(out / "src", filter="data")
        (out / "src" / "sdk").rename(pkg)
        for sub in ("backends", "profiles"):
            (out / "src" / sub).rename(pkg / sub)
    return out
