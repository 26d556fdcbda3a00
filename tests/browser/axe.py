"""axe-core for the accessibility test: a pinned release from the npm registry, fetched
once with `npm pack` into .cache/ (`make axe`, which `make test` runs), checked against
its published sha512 integrity. python -m tests.browser.axe fetches it."""

from __future__ import annotations

import base64
import hashlib
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

VERSION = "4.14.1"  # MPL-2.0; the tarball's LICENSE is kept next to the script
INTEGRITY = (  # npm view axe-core@4.14.1 dist.integrity
    "sha512-FHfa+lmNjQZfJz1q8wKqIDwC6DExcHt/"
    "pkjNQb09a3NPjCKg2rhu5qb2S4r76ASyFNNtuFooJpZe37OgudVGtQ=="
)
CACHE = Path(__file__).resolve().parents[2] / ".cache" / f"axe-core-{VERSION}"
SCRIPT = CACHE / "axe.min.js"


class AxeUnavailable(RuntimeError):
    """axe-core is not in the cache and cannot be fetched (no npm, no registry)."""


def _check_integrity(tarball: Path) -> None:
    algorithm, _, expected = INTEGRITY.partition("-")
    digest = base64.b64encode(hashlib.new(algorithm, tarball.read_bytes()).digest()).decode()
    if digest != expected:
        raise AxeUnavailable(f"{tarball.name}: integrity mismatch ({algorithm})")


def fetch() -> Path:
    """The path of axe.min.js, fetched with `npm pack axe-core@VERSION` when missing."""
    if SCRIPT.exists():
        return SCRIPT
    npm = shutil.which("npm")
    if npm is None:
        raise AxeUnavailable("npm is not installed (Debian: apt-get install npm)")
    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run(
            [npm, "pack", f"axe-core@{VERSION}", "--pack-destination", tmp, "--silent"],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp,
        )
        tarball = Path(tmp) / f"axe-core-{VERSION}.tgz"
        if done.returncode != 0 or not tarball.exists():
            raise AxeUnavailable(f"npm pack axe-core@{VERSION} failed: {done.stderr.strip()}")
        _check_integrity(tarball)
        CACHE.mkdir(parents=True, exist_ok=True)
        with tarfile.open(tarball) as tar:
            for name in ("axe.min.js", "LICENSE"):
                member = tar.extractfile(f"package/{name}")
                (CACHE / f"{name}.part").write_bytes(member.read())
        (CACHE / "LICENSE.part").rename(CACHE / "LICENSE")
        (CACHE / "axe.min.js.part").rename(SCRIPT)  # last: its presence means complete
    return SCRIPT


if __name__ == "__main__":
    try:
        print(fetch())
    except AxeUnavailable as exc:
        sys.exit(f"axe-core: {exc}")
