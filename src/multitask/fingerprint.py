"""Content hashes: files, folders and the library's own source.

Cache keys (`multitask.step_keys`) are built from these, never from paths alone, so a file
changed in place or an edit to library code changes the key.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

LIBRARY_DIR = Path(__file__).resolve().parent
_CHUNK = 1 << 20


def digest(*parts: str) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()


def hash_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def hash_tree(root: Path, pattern: str = "*") -> str:
    """Hash of every file under `root` matching `pattern`: relative names and contents."""
    root = Path(root)
    files = sorted(p for p in root.rglob(pattern) if p.is_file())
    return digest(*(f"{p.relative_to(root).as_posix()}:{hash_file(p)}" for p in files))


def hash_listing(root: Path) -> str:
    """Hash of file names and sizes only: for large versioned data where reading all is too slow."""
    root = Path(root)
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return digest(*(f"{p.relative_to(root).as_posix()}:{p.stat().st_size}" for p in files))


def hash_stat(root: Path) -> str:
    """Hash of file names, sizes and modification times: cheap (no file is read), for noticing
    that something may have changed before hashing contents."""
    root = Path(root)
    stats = sorted((p.relative_to(root).as_posix(), p.stat()) for p in root.rglob("*") if p.is_file())
    return digest(*(f"{name}:{st.st_size}:{st.st_mtime_ns}" for name, st in stats))


def library_fingerprint() -> str:
    """Hash of all of `src/multitask`'s Python source (never stale, sometimes over-eager)."""
    return hash_tree(LIBRARY_DIR, "*.py")
