"""docs/SIMPLETUNER.md's key tables are the ones the loader's classification produces."""
from pathlib import Path

from sliderstudio.config.simpletuner_doc import BEGIN, END, key_tables

DOC = Path(__file__).resolve().parents[1] / "docs" / "SIMPLETUNER.md"


def test_doc_tables_match_the_classification():
    text = DOC.read_text(encoding="utf-8")
    generated = text[text.index(BEGIN):text.index(END) + len(END)]
    assert generated == key_tables(), "regenerate: python -m sliderstudio.config.simpletuner_doc"


def test_tables_cover_every_registry_key():
    from sliderstudio.config.simpletuner_keys import classify_train_key, registry

    tables = key_tables()
    assert all(f"`{key}`" in tables for key in registry())
    implemented = sum(classify_train_key(k).status == "implemented" for k in registry())
    assert f"**{implemented} implemented**" in tables and implemented >= 60
