"""``clusters.kube_client`` parts the live verify tests cannot reach."""

from __future__ import annotations

import threading

import pytest

from clusters.kube_client import _quiet_forward_threads


def run_thread(name: str) -> None:
    def boom() -> None:
        raise RuntimeError("Unexpected channel number: 7")

    t = threading.Thread(target=boom, name=name)
    t.start()
    t.join()


def test_a_broken_port_forward_stream_prints_no_traceback(capsys: pytest.CaptureFixture[str],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(threading, "excepthook", threading.__excepthook__)
    _quiet_forward_threads()
    hook = threading.excepthook
    assert hook is not threading.__excepthook__
    _quiet_forward_threads()   # installed once per process, not a chain of wrappers
    assert threading.excepthook is hook
    run_thread("Kubernetes port forward proxy: 15014")
    assert capsys.readouterr().err == ""
    run_thread("someone else's thread")   # other threads still report
    assert "Unexpected channel number" in capsys.readouterr().err
