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


def test_cli_quiet_flag_reaches_the_progress_module(capsys):
    from edgeface.cli import main

    assert main(["export", "--list-targets", "--quiet"]) == 0
    assert P.quiet()
    assert "onnx" in capsys.readouterr().out
