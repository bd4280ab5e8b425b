"""Text -> keyword terms, the same way for chunks and queries: Unicode NFKC, words split at
non-alphanumerics, lowercased, accents folded, stopwords dropped and stems taken (tantivy's
analyzer: Snowball stemmers), and Chinese/Japanese/Korean runs, which have no spaces, cut into
overlapping character bigrams (as Lucene's CJK analyzer does), so that a word of two or more
characters is found inside a longer run."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from functools import cached_property, lru_cache
from typing import get_args

import tantivy

from search.settings import KeywordLanguage

# Languages with a Snowball stemmer in tantivy; "none" keeps words as they are (lowercased, folded).
STEMMED: tuple[str, ...] = tuple(lang for lang in get_args(KeywordLanguage) if lang != "none")
# Of those, the ones tantivy also has a stopword list for.
_STOPWORDS = frozenset(STEMMED) - {"arabic", "greek", "romanian", "tamil", "turkish"}
# Han ideographs (with extensions and compatibility forms), Hiragana, Katakana and Hangul: scripts
# written without spaces between words (Korean has spaces, but bigrams also serve its compounds).
_CJK = re.compile(
    "[\u3040-\u30ff\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\uff66-\uff9f"
    "\U00020000-\U0002fa1f]+"
)
# Words longer than this are noise (base64, hashes glued to text); Lucene's default is 255.
_MAX_TOKEN_CHARS = 40
# Texts whose words `Analyzer.matched_terms` keeps analysed (a few pages of hits; about 10 KiB each).
_TEXTS_REMEMBERED = 2048


def normalize(text: str) -> str:
    """NFKC: full-width letters and digits become ASCII, ligatures split, compatibility forms unify.
    An unpaired surrogate (JSON allows "\\ud800") becomes "?": tantivy takes UTF-8 only."""
    return unicodedata.normalize("NFKC", text.encode("utf-8", "replace").decode("utf-8"))


def _bigrams(run: str) -> list[str]:
    return [run[i : i + 2] for i in range(len(run) - 1)] or [run]


def _bigrams_and_chars(match: re.Match[str]) -> str:
    run = match[0]
    return f" {' '.join([*_bigrams(run), *run]) if len(run) > 1 else run} "


def _bigrams_only(match: re.Match[str]) -> str:
    return f" {' '.join(_bigrams(match[0]))} "


def is_cjk(term: str) -> bool:
    """True for a term made of CJK characters only (a bigram or a single character)."""
    return bool(_CJK.fullmatch(term))


class Analyzer:
    """The keyword analyzer of one language (see the module docstring)."""

    def __init__(self, language: str = "english") -> None:
        if language != "none" and language not in STEMMED:
            raise ValueError(f"keyword language must be none or one of {', '.join(STEMMED)}, not {language!r}")
        self.language = language

    @cached_property
    def tantivy(self) -> tantivy.TextAnalyzer:
        """The tantivy analyzer applied after the CJK step (registered on the index under `name`)."""
        builder = tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.simple())
        builder = builder.filter(tantivy.Filter.remove_long(_MAX_TOKEN_CHARS)).filter(tantivy.Filter.lowercase())
        builder = builder.filter(tantivy.Filter.ascii_fold())
        if self.language in _STOPWORDS:
            builder = builder.filter(tantivy.Filter.stopword(self.language))
        if self.language != "none":
            builder = builder.filter(tantivy.Filter.stemmer(self.language))
        return builder.build()

    @property
    def name(self) -> str:
        """The tokenizer name the index's text field uses."""
        return f"semsearch-{self.language}"

    def index_text(self, text: str) -> str:
        """What the index analyses for a chunk: each CJK run becomes its bigrams and its single
        characters (so that one-character words are found too), separated by spaces."""
        return _CJK.sub(_bigrams_and_chars, normalize(text))

    def query_terms(self, query: str) -> list[str]:
        """The terms of a query, repeats kept (a repeated word weighs more, as in Lucene). A CJK run
        of two or more characters gives its bigrams only: they are the precise terms."""
        return self.tantivy.analyze(_CJK.sub(_bigrams_only, normalize(query)))

    def matched_terms(self, terms: Iterable[str], text: str) -> list[str]:
        """The words of `text` (as written there, after NFKC) whose terms are among `terms`, each once,
        in order of appearance: what a page highlights."""
        wanted = set(terms)
        if not wanted:
            return []
        plain, words = self._words(text)
        firsts = sorted(first for term in wanted for first in words.get(term, ()))
        found: dict[str, None] = dict.fromkeys(word for _, word in firsts)
        # CJK runs are one token for tantivy: their terms are looked for inside, and overlapping
        # bigrams join into the word they cover (图书 + 书馆 -> 图书馆).
        cjk = [term for term in wanted if is_cjk(term)]
        for match in _CJK.finditer(plain) if cjk else ():
            for span in _covered_spans(match[0], cjk):
                found.setdefault(span, None)
        return list(found)

    @lru_cache(maxsize=_TEXTS_REMEMBERED)  # noqa: B019 (one analyzer per language, kept for the process)
    def _words(self, text: str) -> tuple[str, dict[str, list[tuple[int, str]]]]:
        """`text` after NFKC, and per term of it the first place and spelling of each way it is
        written there. A page's hits come back query after query; analysing each once (a tantivy
        token object per word) cost a search more than its SQL."""
        plain = normalize(text)
        words: dict[str, list[tuple[int, str]]] = {}
        seen: set[str] = set()
        for token in self.tantivy.pre_tokenize(plain).tokens:
            word = plain[token.char_offset_from : token.char_offset_to]
            if word not in seen:
                seen.add(word)
                words.setdefault(token.text, []).append((token.char_offset_from, word))
        return plain, words


def _covered_spans(run: str, terms: list[str]) -> list[str]:
    """The maximal stretches of `run` covered by occurrences of `terms`."""
    covered = [False] * len(run)
    for term in terms:
        at = run.find(term)
        while at >= 0:
            covered[at : at + len(term)] = [True] * len(term)
            at = run.find(term, at + 1)
    spans: list[str] = []
    start: int | None = None
    for i, flag in enumerate([*covered, False]):
        if flag and start is None:
            start = i
        elif not flag and start is not None:
            spans.append(run[start:i])
            start = None
    return spans
