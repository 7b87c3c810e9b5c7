"""Errors from the filesystem reach the user as what they are, naming the path: a cache on a full filesystem stops
training with OSError ENOSPC "No space left on device" and the checkpoint path (before: SafetensorError, or
RuntimeError "[enforce fail at inline_container.cc:672] unexpected pos" / "basic_ios::clear: iostream error" from
torch's writer), and a failed save leaves no temporary directory behind. The full filesystem is a real one: a
700 KiB tmpfs (needs root and mount; the test skips otherwise) or a real RLIMIT_FSIZE in a child process."""

import errno
import os
import subprocess
import sys
import textwrap

import pytest

from encore.cache.artifacts import write_bytes
from encore.data.demo import load_demo

from conftest import ROOT
from test_finetune import decoder, fast, side_targets


@pytest.fixture
def small_disk(tmp_path):
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=700k", "tmpfs", str(mnt)], capture_output=True,
                          text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_training_on_a_full_disk_says_no_space_left_and_names_the_checkpoint(small_disk):
    cache = small_disk / "cache"
    with pytest.raises(OSError) as e:
        fast(max_steps=4, save_every=1).train_model(decoder(), load_demo("train").iloc[:16], side_targets(16),
                                                    "mse", cache, "k")
    assert e.value.errno == errno.ENOSPC and "No space left on device" in str(e.value)
    assert str(cache / "checkpoints" / "k" / "step-00000001.tmp-") in e.value.filename
    assert list((cache / "checkpoints" / "k").iterdir()) == []  # the failed save removed its temporary directory


def test_an_atomic_write_on_a_full_disk_names_its_file_and_leaves_no_temporary(small_disk):
    with pytest.raises(OSError) as e:
        write_bytes(small_disk / "ratings" / "shard.parquet", b"x" * 2_000_000)
    assert e.value.errno == errno.ENOSPC and e.value.filename == str(small_disk / "ratings" / "shard.parquet")
    assert list((small_disk / "ratings").iterdir()) == []


def test_a_writer_that_hides_the_os_error_is_reported_with_it(tmp_path):
    """torch.save past a real file-size limit (RLIMIT_FSIZE, set in a child process: no root needed) raises
    RuntimeError without the OS error; the user gets EFBIG "File too large" and the path."""
    code = textwrap.dedent("""
        import resource, sys, torch
        from encore.cache.artifacts import filesystem_errors
        resource.setrlimit(resource.RLIMIT_FSIZE, (50_000, resource.RLIM_INFINITY))
        try:
            with filesystem_errors(sys.argv[1]):
                torch.save(torch.zeros(100_000), sys.argv[1])
        except OSError as e:
            print(type(e.__cause__).__name__, e.errno, e.filename, e.strerror)
    """)
    path = tmp_path / "heads.pt"
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert out.stdout.split(maxsplit=3) == ["RuntimeError", str(errno.EFBIG), str(path),
                                            "File too large (RLIMIT_FSIZE 50,000 bytes)\n"], out.stderr[-2000:]
