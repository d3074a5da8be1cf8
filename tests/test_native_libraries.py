"""The native libraries of the wheels patchmatch loads together keep to their own symbols."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

SCRIPT = """
import patchmatch.colmap  # pycolmap first, as a script that maps before it draws would
import cv2, numpy as np
cv2.imwrite(PATH, np.zeros((64, 64, 3), np.uint8))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's LD_DEBUG names the bindings")
def test_system_zlib_binds_to_itself_with_pycolmap_loaded_first(tmp_path):
    """pycolmap's extension exports its own zlib; were libz.so.1 first loaded as its dependency,
    libz's deflateReset would bind to that copy and OpenCV's PNG writer corrupt the heap (seen as
    "double free or corruption" aborting sfm's pictures). Importing patchmatch loads libz first."""
    env = dict(os.environ, LD_DEBUG="bindings", LD_DEBUG_OUTPUT=str(tmp_path / "ld"))
    script = SCRIPT.replace("PATH", repr(str(tmp_path / "x.png")))
    subprocess.run([sys.executable, "-c", script], check=True, env=env, capture_output=True, timeout=120)
    lines = [ln for f in tmp_path.glob("ld.*") for ln in f.read_text().splitlines()]
    resets = [ln for ln in lines if "binding file" in ln and "libz.so" in ln.split("binding file")[1].split(" to ")[0]
              and "`deflateReset'" in ln]  # fmt: skip
    if not resets:
        pytest.skip("no libz.so.1 binding of deflateReset in this environment (a zlib linked otherwise)")
    assert all("libz.so" in ln.split(" to ")[1] for ln in resets), resets
    assert (tmp_path / "x.png").is_file()
