"""Finding models and sample footage without downloading anything.

Order: an explicit environment variable, then ``../shared`` next to the repository (the
workspace layout), then ``../shared`` next to the current directory.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def shared_dir() -> Path:
    env = os.environ.get("STORESENSE_SHARED")
    if env:
        return Path(env).expanduser().resolve()
    for candidate in (REPO_ROOT.parent / "shared", Path.cwd().parent / "shared", Path.cwd() / "shared"):
        if candidate.is_dir():
            return candidate.resolve()
    return (REPO_ROOT.parent / "shared").resolve()


def models_dir() -> Path:
    env = os.environ.get("STORESENSE_MODELS_DIR")
    return Path(env).expanduser().resolve() if env else shared_dir() / "models"


def videos_dir() -> Path:
    env = os.environ.get("STORESENSE_VIDEOS_DIR")
    return Path(env).expanduser().resolve() if env else shared_dir() / "videos"


def images_dir() -> Path:
    return shared_dir() / "images"
