from pathlib import Path
import pytest

def test_x(tmp_path: Path, monkeypatch, caplog, capfd) -> None:
    monkeypatch.setenv("DOTFLOW_TEST_DIR", str(tmp_path))
    from dotflow_dags import resume
    (tmp_path / "fail-load").touch()
    resume.test()
    out = capfd.readouterr()
    Path("/tmp/adeco/caplog.txt").write_text(caplog.text)
    Path("/tmp/adeco/out.txt").write_text(out.out)
    Path("/tmp/adeco/err.txt").write_text(out.err)
