"""The keyword analyzer: the same terms for chunks and queries, in every language it knows."""

from __future__ import annotations

import pytest

from search.keyword.analyzer import Analyzer


def test_analyzer_stems_drops_stopwords_folds_and_normalises() -> None:
    english = Analyzer("english")
    assert english.query_terms("The Running Dogs of Zürich") == ["run", "dog", "zurich"]
    # NFKC: full-width letters and digits are the ASCII ones; ligatures split.
    assert (
        english.query_terms("ＺＱＸ－４４７１ ﬁle") == english.query_terms("ZQX-4471 file") == ["zqx", "4471", "file"]
    )
    assert english.query_terms("the of and") == []
    assert english.query_terms("\ud800cells") == ["cell"]  # an unpaired surrogate is no error
    assert english.matched_terms(["cell"], "\udfffcells") == ["cells"]
    assert Analyzer("german").query_terms("Häuser") == ["haus"]
    assert Analyzer("none").query_terms("The running") == ["the", "running"]
    with pytest.raises(ValueError, match="keyword language must be none or one of"):
        Analyzer("klingon")


def test_analyzer_cuts_cjk_runs_into_bigrams() -> None:
    analyzer = Analyzer()
    # A Chinese word inside a longer run is found: the run's bigrams hold the word's.
    indexed = set(analyzer.tantivy.analyze(analyzer.index_text("我爱北京大学")))
    assert set(analyzer.query_terms("北京")) <= indexed and set(analyzer.query_terms("大学")) <= indexed
    assert analyzer.query_terms("北京大学") == ["北京", "京大", "大学"]
    # One-character words are indexed too, beside the bigrams.
    assert analyzer.query_terms("猫") == ["猫"] and "猫" in analyzer.tantivy.analyze(analyzer.index_text("我的猫"))
    assert analyzer.query_terms("東京タワー BERT模型") == ["東京", "京タ", "タワ", "ワー", "bert", "模型"]


def test_matched_terms_are_the_words_as_written() -> None:
    analyzer = Analyzer()
    terms = analyzer.query_terms("running cafe zqx-4471 北京")
    text = "The runner was Running to the Café, see ZQX-4471 in 我爱北京大学."
    assert analyzer.matched_terms(terms, text) == ["Running", "Café", "ZQX", "4471", "北京"]
    assert analyzer.matched_terms([], text) == []
    assert analyzer.matched_terms(analyzer.query_terms("北京大学 学"), "我爱北京大学, 大学生") == ["北京大学", "大学"]


def test_matched_terms_of_a_text_seen_before_follow_the_new_query() -> None:
    # A text's words are analysed once and kept: each query still gets its own words, in text order.
    analyzer = Analyzer()
    text = "Cats chase dogs; a cat is not a Dog, and cats sleep."
    assert analyzer.matched_terms(analyzer.query_terms("dog cat"), text) == ["Cats", "dogs", "cat", "Dog", "cats"]
    assert analyzer.matched_terms(analyzer.query_terms("sleeping"), text) == ["sleep"]
    assert analyzer.matched_terms(analyzer.query_terms("dogs"), text) == ["dogs", "Dog"]
