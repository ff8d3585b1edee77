"""--quiet silences every progress bar of the process, including stages that are not handed the flag."""
import pytest

from edgeface.core import progress as P


@pytest.fixture(autouse=True)
def _restore():
    yield
    P.set_quiet(False)


def test_quiet_silences_every_bar():
    pytest.importorskip("tqdm")
    items = [1, 2, 3]
    assert P.progress(items, 3, "x") is not items  # a tqdm bar by default
    P.set_quiet(True)
    assert P.progress(items, 3, "x") is items and P.quiet()
    assert isinstance(P.progress_bar(3, "x"), P._NoBar)


def test_cli_quiet_flag_reaches_the_progress_module(capsys, monkeypatch):
    from edgeface.cli import main
    from edgeface.core import targets

    seen = []
    monkeypatch.setattr(targets, "format_table", lambda: seen.append(P.quiet()) or "table")
    assert main(["export", "--list-targets", "--quiet"]) == 0
    assert seen[-1] is True and capsys.readouterr().out.strip().endswith("table")  # the table printed while quiet
    assert not P.quiet()  # restored when main() returns: an in-process call leaves no state behind
