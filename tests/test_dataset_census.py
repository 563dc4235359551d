"""ifalnet/dataset_census.py: a dataset copy counted per split, modality and camera, against its published
statistics (data_manager.Published) or, for synthetic.py's and demo.py's copies, against what they made;
a copy with an image or a camera folder removed is reported with the exact difference."""
import contextlib
import io
import json
import os
import shutil

import pytest

import data_manager as dm
import synthetic
from ifalnet import dataset_census as census
from ifalnet.toy_datasets import make_sysu


def make(tmp_path, dataset, *extra):
    out = tmp_path / dataset
    with contextlib.redirect_stdout(io.StringIO()):
        synthetic.main(['--dataset', dataset, '--out', str(out), '--ids', '6', '--images', '1', '--size', '16x8', *extra])
    return out


def test_published_statistics_are_the_papers():
    published = {key: {split: (p.identities, p.images, p.gallery) for split, p in d.published.items()}
                 for key, d in dm.DATASETS.items()}
    assert published == {
        'sysu': {'train': (395, {'visible': 22258, 'infrared': 11909}, None),
                 'test': (96, {'infrared': 3803}, {'all': 301, 'indoor': 112})},
        'regdb': {'train': (206, {'visible': 2060, 'thermal': 2060}, None),
                  'test': (206, {'visible': 2060, 'thermal': 2060}, None)},
        'llcm': {'train': (713, {'visible': 16946, 'infrared': 13975}, None),
                 'test': (351, {'visible': 8680, 'infrared': 7166}, None)}}
    # the field's splits add up to the papers' totals: RegDB 412 identities x 10 images per modality,
    # LLCM 1,064 identities and 46,767 images (Zhang and Wang, CVPR 2023)
    regdb, llcm = dm.DATASETS['regdb'].published, dm.DATASETS['llcm'].published
    assert regdb['train'].identities + regdb['test'].identities == 412
    assert regdb['train'].images['visible'] + regdb['test'].images['visible'] == 4120
    assert llcm['train'].identities + llcm['test'].identities == 1064
    assert sum(n for p in llcm.values() for n in p.images.values()) == 46767


def test_a_copy_as_published_is_one_line_and_a_missing_image_is_named(monkeypatch, tmp_path):
    root = make_sysu(tmp_path / 'copy', train_ids=(1,), val_ids=(2,), test_ids=(3,), images_per_cam=1, size=(16, 8),
                     marker=None)   # not marked synthetic: compared with the published numbers
    published = dm.DATASETS['sysu'].published['train']
    counts = {'identities': 395, 'images': dict(published.images), 'cameras': None}
    monkeypatch.setattr(census, 'count_split', lambda *args: json.loads(json.dumps(counts)))
    assert census.copy_line(census.check_copy('sysu', root, 'train')) == \
        'SYSU-MM01 training set as published: 395 identities, 22,258 visible + 11,909 infrared images'
    counts['images']['visible'] -= 1
    report = census.check_copy('sysu', root, 'train')
    assert not report['matches'] and report['differences'] == ['visible images: 22,257 (published: 22,258; 1 fewer)']
    line = census.copy_line(report)
    assert 'WARNING: this SYSU-MM01 training set differs from the published one (395 identities, 22,258 visible + ' \
           "11,909 infrared images; the field's count (Ye et al., TPAMI 2021)" in line
    assert line.splitlines()[0] == line.splitlines()[-1] == '!' * 100


def test_a_complete_synthetic_copy_is_reported_as_synthetic(tmp_path):
    for dataset, split, line in (
            ('sysu', 'train', 'SYSU-MM01 training set: synthetic (made by synthetic.py), 3 identities, 12 visible + '
                              '6 infrared images, as made'),
            ('sysu', 'test', 'SYSU-MM01 test set: synthetic (made by synthetic.py), 3 identities, 12 visible + 6 '
                             'infrared images, single-shot galleries of 12 (all-search) and 6 (indoor-search), as made'),
            ('regdb', 'test', 'RegDB split 4 test set: synthetic (made by synthetic.py), 3 identities, 3 visible + '
                              '3 thermal images, as made'),
            ('llcm', 'train', 'LLCM training set: synthetic (made by synthetic.py), 3 identities, 27 visible + 24 '
                              'infrared images, as made')):
        root = tmp_path / dataset if (tmp_path / dataset).exists() else make(tmp_path, dataset)
        report = census.check_copy(dataset, root, split, [4])
        assert report['synthetic'] == 'synthetic.py' and report['matches'], report
        assert census.copy_line(report) == line


def test_a_removed_image_and_camera_folder_are_reported_exactly(tmp_path):
    root = make(tmp_path, 'sysu')
    os.remove(root / 'cam1' / '0002' / '0001.jpg')   # a training image (id 2 is a training id)
    shutil.rmtree(root / 'cam6')                       # a whole infrared camera
    train = census.check_copy('sysu', root, 'train')
    assert train['differences'] == ['visible images: 11 (as made: 12; 1 fewer)',
                                    'infrared images: 3 (as made: 6; 3 fewer)',
                                    'cam1 images: 2 (as made: 3; 1 fewer)',
                                    'cam6 images: 0 (as made: 3; 3 fewer)']
    assert census.copy_line(train).splitlines()[1:-1] == [
        'WARNING: this synthetic SYSU-MM01 training set differs from what synthetic.py made:',
        '  visible images: 11 (as made: 12; 1 fewer)', '  infrared images: 3 (as made: 6; 3 fewer)',
        '  cam1 images: 2 (as made: 3; 1 fewer)', '  cam6 images: 0 (as made: 3; 3 fewer)']
    test = census.check_copy('sysu', root, 'test')
    assert test['differences'] == ['infrared images: 3 (as made: 6; 3 fewer)', 'cam6 images: 0 (as made: 3; 3 fewer)']
    # RegDB: an image listed by a split's index file is gone; LLCM: a training camera folder
    regdb = make(tmp_path, 'regdb')
    first = (regdb / 'idx' / 'test_thermal_2.txt').read_text().split()[0]
    os.remove(regdb / first)
    assert census.check_copy('regdb', regdb, 'test', [2])['differences'] == ['thermal images: 2 (as made: 3; 1 fewer)']
    listing = {t: (regdb / 'idx' / f'test_thermal_{t}.txt').read_text().split()[::2] for t in (1, 2, 3)}
    assert census.check_copy('regdb', regdb, 'test', [1, 2, 3])['differences'] == [
        f'split {t}: thermal images: 2 (as made: 3; 1 fewer)' for t in (1, 2, 3) if first in listing[t]]
    llcm = make(tmp_path, 'llcm')
    shutil.rmtree(llcm / 'train_vis' / 'cam3')
    assert census.check_copy('llcm', llcm, 'train')['differences'] == [
        'visible images: 24 (as made: 27; 3 fewer)', 'train_vis/cam3 images: 0 (as made: 3; 3 fewer)']


def test_the_prepared_arrays_are_what_a_training_run_counts(tmp_path, sysu_prepared):
    root, printed = sysu_prepared   # made by toy_datasets.make_sysu (the tests' generator), then process_sysu.py
    assert printed.splitlines()[0] == ('SYSU-MM01 training set: synthetic (made by ifalnet/toy_datasets.py), 6 '
                                       'identities, 69 visible + 36 infrared images, as made')
    report = census.check_copy('sysu', root, 'train', prepared=True)
    folders = census.check_copy('sysu', root, 'train')
    assert report['counts'] == {'identities': 6, 'images': {'visible': 69, 'infrared': 36}, 'cameras': None}
    assert report['counts']['images'] == folders['counts']['images'] and report['matches']
    assert census.copy_line(report) == ('SYSU-MM01 training set (its prepared arrays): synthetic (made by '
                                        'ifalnet/toy_datasets.py), 6 identities, 69 visible + 36 infrared images, as made')


def test_an_older_marker_still_says_synthetic(tmp_path):
    root = make(tmp_path, 'sysu')
    (root / census.SYNTHETIC_MARKER).write_text('made by synthetic.py --dataset sysu\n')   # before the counts
    report = census.check_copy('sysu', root, 'train')
    assert report['synthetic'] == 'synthetic.py' and not report['matches'] and report['differences'] == []
    assert census.copy_line(report) == ('SYSU-MM01 training set: synthetic (made by synthetic.py), 3 identities, 12 '
                                        'visible + 6 infrared images; its marker does not say what was made')


@pytest.mark.parametrize('report, sentence', [
    ({'synthetic': None, 'matches': True, 'differences': []},
     'the SYSU-MM01 training set as published: 395 identities, 22,258 visible + 11,909 infrared images.'),
    ({'synthetic': None, 'matches': False, 'differences': ['visible images: 22,257 (published: 22,258; 1 fewer)']},
     'a SYSU-MM01 training set that differs from the published one: visible images: 22,257 (published: 22,258; 1 '
     'fewer).')])
def test_the_model_cards_sentence(report, sentence):
    counts = {'identities': 395, 'images': {'visible': 22258, 'infrared': 11909}, 'cameras': None}
    full = {'dataset': 'sysu', 'split': 'train', 'trials': None, 'prepared_arrays': False, 'counts': counts, **report}
    assert census.copy_sentence(full) == sentence
