"""The README's client, LangChain and LlamaIndex examples, run as written against a real `semsearch serve`."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[3] / "README.md"


def _examples() -> list[str]:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Python client, LangChain and LlamaIndex") : text.index("## Settings")]
    return re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)


def test_the_readme_examples_run(empty_server: str, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("langchain_core")
    pytest.importorskip("llama_index.core")
    client, langchain, llamaindex = _examples()
    for example in (client, langchain, llamaindex):
        code = [line for line in example.splitlines() if line.strip() and not line.startswith(("from ", "import "))]
        assert len(code) <= 5  # "a five-line example", imports aside
        exec(example.replace("http://127.0.0.1:8000", empty_server), {})
    lines = capsys.readouterr().out.splitlines()
    # The client's filtered search: the one animal document, the chunk and its offsets.
    assert lines[0].startswith("cats ") and lines[0].endswith(" 0 34 Dogs bark. The cat sat on the mat.")
    assert lines[1] == "Stars burn hydrogen. {'kind': 'sky'}"  # LangChain's filtered retriever
    # LlamaIndex: three nodes from the three documents, each with a score and its chunk's offsets.
    assert len(lines) == 5 and {line.split()[0] for line in lines[2:]} >= {"cats"}
    assert all(re.match(r"\S+ -?0\.\d+ 0 \d+ ", line) for line in lines[2:])
