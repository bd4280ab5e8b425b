"""A demo corpus that needs no download: the docstrings of the local Python standard library.

`python -m indexer.ingest.demo OUT_DIR` writes OUT_DIR/stdlib.jsonl, one document per module: the module
docstring followed by the docstrings of its public classes and functions. Sources are parsed, never
imported, so writing the corpus runs no library code."""

from __future__ import annotations

import ast
import json
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path

_MIN_CHARS = 200


def _module_files(stdlib: Path) -> Iterator[tuple[str, Path]]:
    for path in sorted(stdlib.glob("*.py")):
        yield path.stem, path
    for init in sorted(stdlib.glob("*/__init__.py")):
        if init.parent.name not in {"test", "idlelib", "lib2to3", "site-packages", "tkinter", "turtledemo"}:
            yield init.parent.name, init


def module_document(name: str, path: Path) -> dict[str, object] | None:
    """One JSON Lines record for a module, or None when it documents too little."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return None
    parts = [ast.get_docstring(tree) or ""]
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.ClassDef) and not node.name.startswith("_"):
            doc = ast.get_docstring(node)
            if doc:
                parts.append(f"{node.name}: {doc}")
    text = "\n\n".join(p for p in parts if p).strip()
    if len(text) < _MIN_CHARS or name.startswith("_"):
        return None
    return {
        "id": name,
        "title": f"{name} — Python standard library",
        "text": text,
        "metadata": {"module": name},
    }


def write_corpus(out_dir: Path) -> Path:
    """Write the corpus file and return its path."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / "stdlib.jsonl"
    with target.open("w", encoding="utf-8") as fh:
        for name, path in _module_files(stdlib):
            record = module_document(name, path)
            if record:
                fh.write(json.dumps(record) + "\n")
    return target


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m indexer.ingest.demo OUT_DIR")
    written = write_corpus(Path(sys.argv[1]))
    print(f"demo corpus: {sum(1 for _ in written.open())} modules in {written}")
