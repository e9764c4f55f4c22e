"""The dashboard's pure computations: grouping by wording, "don't know" answers, percentiles."""

from __future__ import annotations

from sidechat.admin import insights
from sidechat.admin._html import bar_chart, line_chart
from sidechat.admin.export import to_csv
from sidechat.store.queries import TurnRow


def _row(question: str, answer: str = "An answer.", **kw: object) -> TurnRow:
    values: dict[str, object] = dict(
        id="t", conversation_id="c", question=question, answer=answer, status="done",
        finish_reason="stop", started_at=1_700_000_000.0, finished_at=1_700_000_001.0,
        outcome="done", error_kind=None, ttft=0.2, found=True, sources=(), client_hash=None,
        rating=None, comment=None,
    )  # fmt: skip
    values.update(kw)
    return TurnRow(**values)  # type: ignore[arg-type]


def test_similar_wordings_group_and_others_do_not() -> None:
    items = [
        (_row("How do I install inkwell?"), "not found"),
        (_row("how to install Inkwell"), "not found"),
        (_row("Installing inkwell: how?"), "not found"),
        (_row("What is tidepool's licence?"), "failed"),
    ]
    groups = insights.group_similar(items)
    # "Installing" is not "install": words are compared whole, only a plural "s" is dropped.
    assert [[t.question for t, _ in g.items] for g in groups] == [
        ["How do I install inkwell?", "how to install Inkwell"],
        ["Installing inkwell: how?"],
        ["What is tidepool's licence?"],
    ]
    assert groups[0].label == "How do I install inkwell?"
    assert all("tidepool" not in t.question for t, _ in groups[0].items)


def test_why_unanswered() -> None:
    assert insights.why_unanswered(_row("q")) is None
    assert insights.why_unanswered(_row("q", found=False)) == "not found"
    assert insights.why_unanswered(_row("q", answer="Sorry, I don't know.")) == "didn't know"
    assert insights.why_unanswered(_row("q", answer="I couldn’t find that.")) == "didn't know"
    assert insights.why_unanswered(_row("q", status="error", outcome="error")) == "failed"
    assert insights.why_unanswered(_row("q", rating="down")) == "thumbs down"
    assert not insights.says_unknown("I know: it is in the install guide.")


def test_percentiles_nearest_rank() -> None:
    assert insights.percentile([], 0.5) is None
    values = [float(v) for v in range(1, 101)]
    assert insights.percentile(values, 0.5) == 50.0
    assert insights.percentile(values, 0.95) == 95.0
    assert insights.percentile([3.0], 0.95) == 3.0


def test_plots_escape_labels_and_scale() -> None:
    svg = bar_chart("Q <x>", ["2026-01-01", "2026-01-02"], [1, 4])
    assert "<x>" not in svg and "Q &lt;x&gt;" in svg and svg.count("<rect") == 2
    assert "No ratings yet" in line_chart("S", ["2026-01-01"], [None])
    assert line_chart("S", ["a" * 10, "b" * 10], [0.5, 1.0]).count("<circle") == 2


def test_csv_cells_cannot_be_formulas() -> None:
    text = to_csv([{"question": '=HYPERLINK("x")', "n": 1}], ["question", "n"])
    assert text.splitlines()[1].startswith("\"'=HYPERLINK")
