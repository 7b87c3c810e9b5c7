"""Every setting is checked before anything is read or written, and the error names the key as the user typed it
(``method.encore.tau`` under ``method=all``, not ``method.tau``)."""

import pytest

from encore.run.pipeline import run_evaluate
from encore.errors import SettingError

from conftest import make_cfg


@pytest.mark.parametrize("override, match", [
    ("method.encore.tau=0", r"method\.encore\.tau=0"),
    ("method.encore.tau=abc", r"method\.encore\.tau='abc'"),
    ("method.random.n_seeds=2.5", r"method\.random\.n_seeds=2\.5: use a whole number"),
    ("method.random.n_seeds=abc", r"method\.random\.n_seeds='abc'"),
    ("method.random.n_seeds=0", r"method\.random\.n_seeds=0"),
    ("method.random.alpha=-1", r"method\.random\.alpha=-1"),
    ("train.alphas=[-1.0]", r"train\.alphas"),
    ("train.val_frac=abc", r"train\.val_frac='abc'"),
    ("model.max_length=1.5", r"model\.max_length=1\.5"),
    ("stats.n_boot=0", r"stats\.n_boot=0"),
    ("rating.other_raters=maybe", r"rating\.other_raters='maybe'"),
])
def test_a_bad_setting_stops_the_run_before_it_writes_anything(tmp_path, cache, override, match):
    run = tmp_path / "run"
    with pytest.raises(ValueError, match=match) as e:
        run_evaluate(make_cfg(override, cache=cache), run)
    assert "Error in call to target" not in str(e.value)
    assert not run.exists() or not any(run.iterdir())
    assert not cache.exists() or not any(cache.rglob("*.parquet"))


def test_a_single_method_keeps_its_own_key(tmp_path, cache):
    with pytest.raises(ValueError, match=r"method\.tau=0"):
        run_evaluate(make_cfg("method=encore", "method.tau=0", cache=cache), tmp_path / "run")
    with pytest.raises(SettingError, match=r"method\.n_seeds=2\.5"):
        run_evaluate(make_cfg("method=random", "method.n_seeds=2.5", cache=cache), tmp_path / "run")
