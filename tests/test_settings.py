import io

import pytest

import scdpsynth as sd
from scdpsynth._progress import progress_bar, resolve_progress


@pytest.fixture
def restore_settings():
    old = (sd.settings.progress, sd.settings.progress_delay)
    yield
    sd.settings.progress, sd.settings.progress_delay = old


def test_progress_setting_global_and_per_call(restore_settings):
    sd.settings.progress = False
    assert resolve_progress(None) is False and resolve_progress(True) is True
    sd.settings.progress = True
    assert resolve_progress(None) is True and resolve_progress(False) is False


def test_progress_bar_draws_only_when_enabled_and_after_delay(restore_settings):
    sd.settings.progress_delay = 0
    out = io.StringIO()
    assert list(progress_bar(range(3), desc="work", file=out, progress=True)) == [0, 1, 2]
    assert "work" in out.getvalue()
    out = io.StringIO()
    list(progress_bar(range(3), desc="work", file=out, progress=False))
    assert out.getvalue() == ""
    sd.settings.progress_delay = 60  # quick work stays silent
    out = io.StringIO()
    list(progress_bar(range(3), desc="work", file=out, progress=True))
    assert out.getvalue() == ""


def test_settings_reject_bad_values(restore_settings):
    with pytest.raises(TypeError, match="True or False"):
        sd.settings.progress = "yes"
    with pytest.raises(ValueError, match=">= 0"):
        sd.settings.progress_delay = -1
    with pytest.raises(AttributeError, match="Unknown setting"):
        sd.settings.verbosity = 2
    with pytest.raises(TypeError, match="True, False or None"):
        resolve_progress(1)


def _tiny():
    import anndata as ad
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    obs = pd.DataFrame({"cell_type": pd.Categorical(np.resize(["a", "b"], 60))}, index=[f"c{i}" for i in range(60)])
    return ad.AnnData(X=rng.normal(5, 1, (60, 8)), obs=obs)


def test_tl_functions_show_progress_unless_switched_off(restore_settings, capsys):
    real, syn = _tiny(), _tiny()
    sd.settings.progress_delay = 0
    sd.tl.evaluate(real, syn, metrics=["histogram_overlap"], progress=True)
    assert "evaluate" in capsys.readouterr().err
    sd.tl.evaluate(real, syn, metrics=["histogram_overlap"], progress=False)
    assert "evaluate" not in capsys.readouterr().err
    sd.settings.progress = False  # global switch
    sd.tl.evaluate(real, syn, metrics=["histogram_overlap"])
    assert "evaluate" not in capsys.readouterr().err
    sd.settings.progress = True
    sd.tl.attack(real[:30], real[30:], syn, method="dcr")
    assert "attack" in capsys.readouterr().err
