"""The repository itself: what a fresh clone (CI's) gets must not depend on this machine."""
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(), reason="not a git checkout")
def test_no_symbolic_link_is_tracked():
    """A committed link (once `.tools -> /work/main/.tools`, a helper's worktree link) points at
    another machine's folder in a fresh clone: CI's npm install then failed at once (exit 216)."""
    listing = subprocess.run(["git", "ls-files", "-s"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    links = [line.split("\t", 1)[1] for line in listing.splitlines() if line.startswith("120000 ")]
    assert links == [], f"tracked symbolic links: {links}"
