"""ifalnet/corruptions.py and test.py --corrupt: every corruption at every severity against the reference
implementations' own output (tests/golden/corruptions.npz), seeds, mix's draw, and a corrupted test
that repeats digit for digit, resumes, and refuses what it cannot do before embedding anything."""
import collections
import json
import os

import numpy as np
import pytest

import test as test_script
from ifalnet import corruptions
from ifalnet.corruption_sweep import summarise_cells
from ifalnet.corruptions import CORRUPTIONS, Corruption, corrupt, image_seed, mix_draw
from utils import ReIDError

GOLDEN = os.path.join(os.path.dirname(__file__), 'golden', 'corruptions.npz')
# requirements-corrupt.txt is part of the suite's install (README, .ci/run): without it these tests fail with
# check_installed's message instead of being skipped.


@pytest.fixture(scope='module')
def golden():
    with np.load(GOLDEN) as data:
        return dict(data)


@pytest.mark.parametrize('name', CORRUPTIONS)
def test_each_severity_is_the_reference_implementations_output(golden, name):
    # The 2020 imagecorruptions package (glass_blur, gaussian_blur and fog with the two library names
    # today's numpy and scikit-image removed put back) and albumentations 1.1.0's rain, at the same seeds.
    image = golden['rain_image' if name == 'rain' else 'image']
    for severity in range(1, 6):
        out = corrupt(image, name, severity, int(golden[f'{name}_seeds'][severity - 1]))
        assert np.array_equal(np.asarray(out), golden[name][severity - 1]), (name, severity)


def test_a_corrupted_image_depends_on_its_seed_alone(golden):
    image = golden['image']
    state = np.random.get_state()
    once = [np.asarray(corrupt(image, 'shot_noise', 3, seed)) for seed in (1, 2, 1)]
    assert np.array_equal(once[0], once[2]) and not np.array_equal(once[0], once[1])
    assert np.array_equal(np.random.get_state()[1], state[1])    # numpy's global generator is left as it was
    # an image's seed: its path under the data root, the corruption, the severity and the run's seed
    seeds = {image_seed(s, n, v, k) for s, n, v, k in [(0, 'fog', 1, 'cam1/0001/0001.jpg'), (1, 'fog', 1, 'cam1/0001/0001.jpg'),
                                                       (0, 'fog', 2, 'cam1/0001/0001.jpg'), (0, 'snow', 1, 'cam1/0001/0001.jpg'),
                                                       (0, 'fog', 1, 'cam1/0001/0002.jpg')]}
    assert len(seeds) == 5 and image_seed(0, "fog", 1, "a/b.jpg") == 692050712
    at = Corruption('fog', 2, 0, '/data/root')
    assert at.key('/data/root/cam1/0001/0001.jpg') == 'cam1/0001/0001.jpg' and at.label == 'fog/2'


def test_mix_draws_each_corruption_and_severity_per_image(golden):
    draws = [mix_draw(0, f'cam1/{i:04d}/0001.jpg') for i in range(2000)]
    names = collections.Counter(name for name, _ in draws)
    levels = collections.Counter(level for _, level in draws)
    assert set(names) == set(CORRUPTIONS) and all(70 <= n <= 130 for n in names.values())       # 100 expected
    assert set(levels) == {1, 2, 3, 4, 5} and all(340 <= n <= 460 for n in levels.values())      # 400 expected
    # a fixed severity keeps each image's corruption; a mix image is that cell's image
    assert [name for name, _ in draws[:50]] == [mix_draw(0, f'cam1/{i:04d}/0001.jpg', 3)[0] for i in range(50)]
    mix = Corruption('mix', None, 0, '/r')
    name, level = mix.setting('/r/cam1/0007/0001.jpg')
    image = golden['image']
    assert np.array_equal(np.asarray(mix(image, '/r/cam1/0007/0001.jpg')),
                          np.asarray(Corruption(name, level, 0, '/r')(image, '/r/cam1/0007/0001.jpg')))


def test_the_values_of_corrupt_and_severity_are_checked():
    assert corruptions.parse_corruptions('all') == CORRUPTIONS
    assert corruptions.parse_corruptions('fog, rain') == ('fog', 'rain')
    assert corruptions.parse_severities('all') == (1, 2, 3, 4, 5) and corruptions.parse_severities('5,1') == (5, 1)
    for bad in ('fgo', 'mix,fog', 'fog,fog', ''):
        with pytest.raises(ReIDError, match="--corrupt takes comma-separated corruptions, 'all' or 'mix'"):
            corruptions.parse_corruptions(bad)
    for bad in ('0', '6', 'x', '1,1', ''):
        with pytest.raises(ReIDError, match=r"--severity takes comma-separated levels in 1\.\.5 or 'all'"):
            corruptions.parse_severities(bad)


def test_a_missing_package_names_the_pip_command(monkeypatch):
    real = corruptions.importlib.import_module
    monkeypatch.setattr(corruptions.importlib, 'import_module',
                        lambda name: real('no_such_module') if name == 'imagecorruptions' else real(name))
    with pytest.raises(ReIDError, match=r'imagecorruptions-imaug .*python3 -m pip install -r requirements-corrupt\.txt'):
        corruptions.check_installed()


# ----------------------------------------------------------------------------- test.py --corrupt
FAST = ['--img_h', '32', '--img_w', '16', '--test-batch', '32', '--gpu', '', '--trials', '0']


def corrupted(root, checkpoint, results, *extra, workers='0'):
    return test_script.main(['--dataset', 'sysu', '--data-path', root, '--resume', checkpoint, '--results', str(results),
                             '--workers', workers, *FAST, *extra])


def test_a_corrupted_test_repeats_digit_for_digit_and_resumes(sysu_root, untrained_checkpoint, tmp_path, capsys):
    first = tmp_path / 'first.json'
    corrupted(sysu_root, untrained_checkpoint, first, '--corrupt', 'glass_blur,rain', '--severity', '5')
    out = capsys.readouterr().out
    report = json.loads(first.read_text())
    sweep = report['corruption']
    assert sweep['complete'] and list(sweep['cells']) == ['glass_blur/5', 'rain/5']
    assert sweep['setting'] == {'corruptions': ['glass_blur', 'rain'], 'severities': [5], 'seed': 0, 'side': 'visible',
                                'applied': 'after the LANCZOS resize to the test size, before normalisation',
                                'versions': {'imagecorruptions-imaug': corruptions.check_installed()['imagecorruptions-imaug']}}
    assert sweep['img_size'] == [32, 16]
    # SYSU-MM01's visible images are its gallery: each cell embeds them alone, corrupted, and reuses the infrared queries
    assert out.count('gallery visible images in') == 3 and out.count('query infrared images in') == 1
    gallery = sweep['cells']['rain/5']['images']   # every gallery image of the trial, once
    assert f'queries x {gallery} gallery (trial 0)' in out and out.count(f'embedded {gallery} glass_blur/5 gallery') == 1
    assert sweep['summary'] == summarise_cells(sweep['cells'], report['mean'])
    assert sweep['summary']['mean']['ALL']['rank1'] == np.mean([c['mean']['ALL']['rank1'] for c in sweep['cells'].values()])
    assert 'ALL Rank-1 under corruption (mean over 1 trial)' in out and 'mean over all 2 cells' in out
    assert 'Clean and corrupted (the mean over all 2 settings), mean over 1 trial' in out
    assert not all(c['mean'] == report['mean'] for c in sweep['cells'].values())    # the corruptions change scores
    # An interrupted sweep: rain/5 done. It resumes with two loader processes and ends in the same file.
    partial = {**report, 'corruption': {**sweep, 'complete': False, 'cells': {'rain/5': sweep['cells']['rain/5']}}}
    del partial['corruption']['summary']
    again = tmp_path / 'again.json'
    again.write_text(json.dumps(partial))
    corrupted(sysu_root, untrained_checkpoint, again, '--corrupt', 'glass_blur,rain', '--severity', '5', workers='2')
    out = capsys.readouterr().out
    assert 'resuming the sweep of' in out and '1 of 2 cells done' in out
    assert '[2/2] glass_blur/5' in out and 'rain/5 gallery' not in out
    resumed = json.loads(again.read_text())
    for cell in sweep['cells'].values():
        cell.pop('seconds')
    for cell in resumed['corruption']['cells'].values():
        cell.pop('seconds')
    assert resumed['corruption']['cells'] == sweep['cells']
    # a sweep with other settings is refused before anything is embedded, and the file is left as it was
    text = again.read_text()
    with pytest.raises(ReIDError, match=r'holds a corruption sweep with other settings \(corruption severities differ\)'):
        corrupted(sysu_root, untrained_checkpoint, again, '--corrupt', 'glass_blur,rain', '--severity', '1')
    assert again.read_text() == text and 'embedded' not in capsys.readouterr().out


def test_mix_is_one_cell_side_by_side_with_the_clean_scores_and_takes_test_time_options(sysu_root, untrained_checkpoint, tmp_path, capsys):
    results = tmp_path / 'mix.json'
    test_script.main(['--dataset', 'sysu', '--data-path', sysu_root, '--resume', untrained_checkpoint, '--results', str(results),
                      '--workers', '0', *FAST, '--corrupt', 'mix', '--corrupt-seed', '3', '--rerank',
                      '--flip'])
    out = capsys.readouterr().out
    report = json.loads(results.read_text())
    sweep = report['corruption']
    assert report['flip'] and report['rerank'] == {'k1': 20, 'k2': 6, 'lambda_value': 0.3}
    assert list(sweep['cells']) == ['mix/1-5'] and sweep['cells']['mix/1-5']['severity'] == '1-5'
    assert sweep['setting']['seed'] == 3 and sweep['summary']['cells'] == 1 and 'k1 20' in out    # re-ranked
    assert 'Clean and corrupted (mix/1-5), mean over 1 trial' in out
    assert 'Rank-1 clean  corrupted' in out and 'about' not in out


@pytest.mark.parametrize('extra, message', [
    (['--severity', '2'], '--severity applies to corrupted images: give --corrupt too'),
    (['--corrupt', 'fog', '--save-features', 'f.npz'], '--corrupt embeds the corrupted images with the network'),
    (['--corrupt', 'mist'], "--corrupt takes comma-separated corruptions, 'all' or 'mix'"),
])
def test_corrupt_refuses_before_any_work(sysu_root, untrained_checkpoint, tmp_path, extra, message, capsys):
    with pytest.raises(ReIDError, match=message):
        test_script.main(['--dataset', 'sysu', '--data-path', sysu_root, '--resume', untrained_checkpoint, *FAST,
                          '--results', str(tmp_path / 'r.json'), *extra])
    assert 'embedded' not in capsys.readouterr().out and not os.listdir(tmp_path)
