"""ifalnet/toy_datasets.py and synthetic.py: the synthetic people and layouts, and the command line."""
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import data_loader as dl
import data_manager as dm
import synthetic
from utils import ReIDError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ----------------------------------------------------------------------------------- synthetic data

def test_render_identity_is_deterministic_and_modal():
    from ifalnet.toy_datasets import render_identity
    draw = lambda pid, modality, seed: np.asarray(render_identity(pid, modality, np.random.default_rng(seed), (64, 32)))
    assert np.array_equal(draw(3, 'visible', 0), draw(3, 'visible', 0))
    assert not np.array_equal(draw(3, 'visible', 0), draw(3, 'visible', 1))
    infrared = draw(3, 'infrared', 0).astype(int)
    assert infrared.shape == (64, 32, 3) and (infrared[..., 0] == infrared[..., 1]).all() \
        and (infrared[..., 1] == infrared[..., 2]).all()
    # Images of one identity are closer to each other than to another identity's.
    same = np.abs(draw(3, 'visible', 0).astype(int) - draw(3, 'visible', 1)).mean()
    other = np.abs(draw(3, 'visible', 0).astype(int) - draw(4, 'visible', 1)).mean()
    assert same < other


def test_render_identity_inverts_band_luminance_in_infrared():
    from data_loader import LUMINANCE
    from ifalnet.toy_datasets import LEVELS, N_BANDS, identity_look, render_identity
    codes = [tuple(identity_look(pid)['levels']) for pid in range(1, 65)]
    assert len(set(codes)) == 64 and set(np.ravel(codes)) <= set(LEVELS)       # 64 distinct looks
    pid = next(p for p, code in enumerate(codes, start=1) if len(set(code)) == N_BANDS)
    levels = identity_look(pid)['levels']
    lum = lambda img: np.asarray(img, dtype=float) @ np.array(LUMINANCE)
    for seed in range(5):
        visible = lum(render_identity(pid, 'visible', np.random.default_rng(seed), (96, 48)))
        infrared = lum(render_identity(pid, 'infrared', np.random.default_rng(seed), (96, 48)))
        # Band centres on the body's axis: visible follows the levels, infrared their reverse.
        rows = [int((0.04 + 0.92 * (b + 0.5) / N_BANDS) * 96) for b in range(N_BANDS)]
        vis_bands, ir_bands = visible[rows, 22:26].mean(1), infrared[rows, 22:26].mean(1)
        assert np.array_equal(np.argsort(vis_bands), np.argsort(levels))
        assert np.array_equal(np.argsort(ir_bands), np.argsort(-levels))
        assert np.allclose(vis_bands, levels, atol=0.15 * 255)


def test_synthetic_cli(tmp_path):
    out = str(tmp_path / 'llcm')
    result = subprocess.run([sys.executable, os.path.join(REPO, 'synthetic.py'), '--dataset', 'llcm', '--out', out,
                             '--ids', '4', '--images', '1', '--size', '16x8'],
                            capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stderr
    paths, ids, cams = dm.process_query_llcm(out, mode=2)
    assert len(paths) == 2 * 8 and set(ids.tolist()) == {3, 4}
    assert Image.open(paths[0]).size == (8, 16)


def test_synthetic_does_not_import_torch():
    # Writing a few images needs numpy and Pillow only: importing synthetic (as its CLI does) must not
    # pull in torch (hundreds of MB of memory, seconds of start-up).
    code = 'import sys, synthetic; print("torch" in sys.modules, "data_loader" in sys.modules)'
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ['False', 'False']
    # The grey weights live where both the loader and the generator read them.
    assert dl.LUMINANCE is dm.LUMINANCE == (0.2989, 0.5870, 0.1140)


# ----------------------------------------------------------------------------------- synthetic.py --out

def test_synthetic_out_must_be_new_empty_or_its_own_with_force(tmp_path):
    make = lambda out, *extra: synthetic.main(['--dataset', 'regdb', '--out', str(out), '--ids', '4', '--images', '1',
                                               '--size', '16x8', *extra])
    out = tmp_path / 'regdb'
    make(out)
    assert (out / synthetic.MARKER).is_file() and (out / 'idx' / 'test_visible_1.txt').is_file()
    (out / 'old_file.txt').write_text('from an earlier run')
    with pytest.raises(ReIDError, match='already holds a synthetic dataset: pass --force to replace it'):
        make(out, '--seed', '1')
    assert (out / 'old_file.txt').is_file()
    make(out, '--force', '--seed', '1')
    assert not (out / 'old_file.txt').exists() and (out / synthetic.MARKER).is_file()

    (tmp_path / 'empty').mkdir()
    make(tmp_path / 'empty')                  # an empty folder is fine
    mine = tmp_path / 'mine'
    mine.mkdir()
    (mine / 'notes.txt').write_text('keep me')
    for extra in ([], ['--force']):
        with pytest.raises(ReIDError, match=r'is not empty and synthetic.py did not make it .*even with --force'):
            make(mine, *extra)
    assert sorted(os.listdir(mine)) == ['notes.txt']
