"""What every benchmark here shares: a Redis URL on another database number, and scripts/devstack.py's
`ensure_redis` (the machine's Redis, or a private one for the run), loaded from its file since `scripts/` is
not a package."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any
from urllib.parse import urlparse, urlunparse

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


def with_db(url: str, db: int) -> str:
    return urlunparse(urlparse(url)._replace(path=f"/{db}"))


def devstack() -> Any:
    spec = importlib.util.spec_from_file_location("devstack", ROOT / "scripts" / "devstack.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
