"""bench.progress: the bar's line, on a log (one line per case) and on a terminal (redrawn)."""

import io

from bench.progress import Progress


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_a_log_gets_one_line_per_finished_case():
    log = io.StringIO()
    progress = Progress(total=4, done=1, stream=log)
    progress.show("lstm/inference torch: timing")  # not a terminal: nothing drawn
    assert log.getvalue() == ""
    progress.advance("case-2")
    progress.advance("case-3")
    lines = log.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("[############------------] 2/4 cases, 0:00:00 elapsed, ~")
    assert lines[0].endswith("left  case-2")
    assert lines[1].startswith("[##################------] 3/4 cases")


def test_a_terminal_line_is_redrawn_in_place():
    terminal = Terminal()
    progress = Progress(total=2, stream=terminal)
    progress.show("gru/training numba: fresh process")
    progress.advance("case-1")
    progress.close()
    text = terminal.getvalue()
    assert text.count("\r\x1b[2K") == 2
    assert "0/2 cases, 0:00:00 elapsed  gru/training numba: fresh process" in text
    assert text.endswith("case-1\n")
