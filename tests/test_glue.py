"""labcode.book.glue: numbers for the prose, on the website and off it."""
import sys
import types

import pytest

from labcode.book import glue


def test_off_the_website_the_value_is_printed(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "myst_nb", None)  # import fails, as in Colab
    assert glue("acc", 0.93) == 0.93
    assert capsys.readouterr().out.strip() == "acc = 0.93"


def test_on_the_website_myst_nb_gets_the_value_hidden_by_default(monkeypatch, capsys):
    calls = []
    fake = types.ModuleType("myst_nb")
    fake.glue = lambda name, value, display: calls.append((name, value, display))
    monkeypatch.setitem(sys.modules, "myst_nb", fake)
    assert glue("params", "60,965,224") == "60,965,224"
    glue("shown", 3, display=True)
    assert calls == [("params", "60,965,224", False), ("shown", 3, True)]
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("name", ["", None, 3])
def test_a_bad_name_is_refused(name):
    with pytest.raises(ValueError, match="non-empty string"):
        glue(name, 1)
