"""Chunks cut into units: prose sentences and whole code blocks, told apart by their shape."""

from __future__ import annotations

from sidechat.answers import extract
from sidechat.answers._units import split_units
from sidechat.content.search import Passage

CHUNK = """sh does the same thing. zsh returns an error:
% datasette content.db *.db --create
zsh: no matches found: *.db
The solution, for bash, is to set the nullglob shell option. That can be done like this:
shopt -s nullglob
This lasts for the rest of the interactive session.
- name: Commit any changes
  run: git commit -m "x"
  # a comment between code lines
  env: {}"""


def test_prose_and_code() -> None:
    units = split_units(CHUNK)
    assert [(u.code, u.text.split("\n")[0]) for u in units] == [
        (False, "sh does the same thing. zsh returns an error:"),  # "zsh" opens no sentence
        (True, "% datasette content.db *.db --create"),
        (False, "The solution, for bash, is to set the nullglob shell option."),
        (False, "That can be done like this:"),
        (True, "shopt -s nullglob"),
        (False, "This lasts for the rest of the interactive session."),
        (True, "- name: Commit any changes"),
    ]
    assert units[-1].text.count("\n") == 3  # the YAML, its comment included, is one block
    assert [u.order for u in units] == list(range(len(units)))


def test_a_long_code_block_keeps_its_start_and_end() -> None:
    code = "\n".join(f"step_{i} --install" for i in range(40))
    passage = Passage("/a/", "A", "", "To install it run this:\n" + code, 1.0, "1", "", 1.0)
    result = extract("how do I install it", [passage])
    assert result is not None
    assert "step_0 " in result.markdown and "step_39 " in result.markdown
    assert "step_20 " not in result.markdown and "\n> …\n" in result.markdown
