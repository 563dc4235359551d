"""Sharing a trained model (ifalnet/weights_folder.py, hub_card.py, hub_transfer.py, hubconf.py, export.py
--format safetensors): a model trained by train.py, exported to a model folder, scores digit for digit
as its .t checkpoint through test.py --resume FOLDER and torch.hub.load; safetensors alone reads the
weights; the model card's numbers are the results file's and its YAML is the Hub's; tampered,
truncated, mismatched and hostile files are refused in one line, running nothing; and what the files
record of their making (environment stamp, dataset copy, hashes)."""
import contextlib
import hashlib
import io
import json
import os
import pickle
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml

import export as export_script
import process_sysu
import synthetic
import test as test_script
import train as train_script
import visualize
from ifalnet import hub_transfer
from ifalnet.checkpoints import read_checkpoint
from ifalnet.interruption import run_main
from ifalnet.weights_folder import CHECKSUMS, FILES, read_weights, sha256_of
from utils import ReIDError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAST = ['--img_h', '32', '--img_w', '16', '--workers', '0', '--test-batch', '32', '--gpu', '']
REPO_ID = 'someone/ifalnet-tiny'


def quiet(main, argv):
    """main(argv) in this process; returns what it printed."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        main(argv)
    return out.getvalue()


class FakeHfApi:
    """Stands in for huggingface_hub.HfApi (no network here): records what export.py --push-to asks of it."""
    calls = []

    def create_repo(self, **kwargs):
        self.calls.append(('create_repo', kwargs))

    def upload_folder(self, **kwargs):
        self.calls.append(('upload_folder', {**kwargs, 'files': sorted(os.listdir(kwargs['folder_path']))}))


@pytest.fixture(scope='module')
def run(tmp_path_factory):
    """A synthetic SYSU-MM01 (synthetic.py), prepared (process_sysu.py), one epoch of train.py, test.py on the
    checkpoint (with --save-features), export.py to a model folder with the results and --push-to (a fake
    HfApi), and test.py on the folder: {name: path or printed text}."""
    base = tmp_path_factory.mktemp('sharing')
    data, models = base / 'SYSU-MM01', base / 'models'
    quiet(synthetic.main, ['--dataset', 'sysu', '--out', str(data), '--ids', '6', '--images', '1', '--size', '32x16'])
    printed = {'process_sysu': quiet(process_sysu.main, ['--data-path', str(data)])}
    printed['train'] = quiet(train_script.main, [
        '--dataset', 'sysu', '--data-path', str(data), '--model_path', str(models), '--log_path', str(base / 'log'),
        '--vis_log_path', str(base / 'vis'), *FAST, '--pretrained', 'none', '--batch-size', '2', '--num_pos', '4',
        '--lr', '0.01', '--epochs', '1', '--run-name', 'tiny'])
    ckpt, folder = models / 'tiny_last.t', base / 'ifalnet_tiny'
    common = ['--dataset', 'sysu', '--data-path', str(data), *FAST, '--trials', '0,1']
    printed['test'] = quiet(test_script.main, [*common, '--resume', str(ckpt), '--results', str(base / 'ckpt.json'),
                                               '--save-features', str(base / 'features.npz')])
    FakeHfApi.calls = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr('huggingface_hub.HfApi', FakeHfApi)
        printed['export'] = quiet(export_script.main, ['--resume', str(ckpt), '--format', 'safetensors', '--results',
                                                       str(base / 'ckpt.json'), '--out', str(folder), '--push-to', REPO_ID])
    printed['test_folder'] = quiet(test_script.main, [*common, '--resume', str(folder), '--results',
                                                      str(base / 'folder.json')])
    return {'base': base, 'data': data, 'ckpt': ckpt, 'folder': folder, 'printed': printed, 'pushed': FakeHfApi.calls,
            'results': json.loads((base / 'ckpt.json').read_text()),
            'folder_results': json.loads((base / 'folder.json').read_text())}


def test_the_folder_scores_as_the_checkpoint_digit_for_digit(run):
    ckpt, folder = run['results'], run['folder_results']
    for key in ('mean', 'std', 'per_trial', 'cmc', 'per_camera', 'trained_on'):
        if key == 'trained_on':
            assert [{**t, 'checkpoint': None} for t in ckpt[key]] == [{**t, 'checkpoint': None} for t in folder[key]]
        else:
            assert ckpt[key] == folder[key], key
    assert 0 < ckpt['mean']['ALL']['mAP'] < 1   # the scores say something (not all 0 or 1)
    # each results file names what it scored by its hash: the .t file, the folder's model.safetensors
    assert ckpt['checkpoints'][0]['sha256'] == sha256_of(run['ckpt'])
    assert folder['checkpoints'][0]['sha256'] == sha256_of(run['folder'] / 'model.safetensors')
    assert sorted(os.listdir(run['folder'])) == sorted([*FILES, CHECKSUMS])


@pytest.fixture(scope='module')
def hub_net(run):
    return torch.hub.load(ROOT, 'ifalnet', source='local', weights=str(run['folder']))


def test_torch_hub_load_returns_the_network_of_the_checkpoint(run, hub_net):
    net = hub_net
    assert not net.training
    want = read_checkpoint(run['ckpt'])['net']
    got = net.state_dict()
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)
    assert net.se_channels == (3, 5, 4)


def test_visualize_draws_the_same_from_the_folder(run, tmp_path):
    image = sorted((run['data'] / 'cam1' / '0001').iterdir())[0]
    for name, weights in (('ckpt', run['ckpt']), ('folder', run['folder'])):
        quiet(visualize.main, ['middle', '--resume', str(weights), '--img_h', '32', '--img_w', '16', '--gpu', 'cpu',
                               str(image), '--modality', 'visible', '--out', str(tmp_path / f'{name}.png')])
    assert (tmp_path / 'ckpt.png').read_bytes() == (tmp_path / 'folder.png').read_bytes()


def test_safetensors_alone_reads_the_weights(run):
    """No torch, no pickle: safetensors' numpy reader gives the checkpoint's tensors, byte for byte."""
    code = ('import hashlib, sys\nsys.modules["torch"] = None\nfrom safetensors.numpy import load_file\n'
            'weights = load_file(sys.argv[1])\ndigest = hashlib.sha256()\n'
            'for key in sorted(weights):\n    digest.update(key.encode() + weights[key].tobytes())\n'
            'print(len(weights), digest.hexdigest())')
    result = subprocess.run([sys.executable, '-c', code, str(run['folder'] / 'model.safetensors')],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    state = read_checkpoint(run['ckpt'])['net']
    digest = hashlib.sha256()
    for key in sorted(state):
        digest.update(key.encode() + state[key].numpy().tobytes())
    assert result.stdout.split() == [str(len(state)), digest.hexdigest()]


def test_the_model_card_is_the_results_file_in_the_hubs_schema(run):
    from huggingface_hub import ModelCard
    text = (run['folder'] / 'README.md').read_text()
    front = yaml.safe_load(text.split('---\n')[1])
    assert front['library_name'] == 'pytorch' and front['datasets'] == ['SYSU-MM01']
    card = ModelCard(text)   # the Hub's own parser checks the model-index schema (it raises on a bad one)
    results = run['results']
    got = {r.metric_type: (r.metric_value, r.metric_args) for r in card.data.eval_results}
    want = {kind: (round(100 * results['mean']['ALL'][key], 2),
                   {'std': round(100 * results['std']['ALL'][key], 2), 'trials': 2})
            for key, kind in (('rank1', 'rank-1'), ('mAP', 'mAP'), ('mINP', 'mINP'))}
    assert got == want
    first = card.data.eval_results[0]
    assert (first.dataset_type, first.dataset_name, first.dataset_config, first.dataset_split) == \
        ('sysu', 'SYSU-MM01', 'all-search', 'test')
    assert first.dataset_args == {'direction': 'infrared -> visible', 'protocol': 'release', 'trials': [0, 1],
                                  'gallery': 'random', 'shots': 1}
    # the page: the same numbers, how the checkpoint was chosen, the copy, the commit, the hashes
    assert f'| ALL | {100 * results["mean"]["ALL"]["rank1"]:.2f} ± {100 * results["std"]["ALL"]["rank1"]:.2f} |' in text
    assert '`tiny_last.t`: the last epoch trained, epoch 0' in text
    assert 'a synthetic SYSU-MM01 training set (made by synthetic.py), 3 identities, 12 visible + 6 infrared images' in text
    for name in ('model.safetensors', 'config.json'):
        assert f'| `{name}` | `{sha256_of(run["folder"] / name)}` |' in text
    listed = dict(line.split()[::-1] for line in (run['folder'] / CHECKSUMS).read_text().splitlines())
    assert listed == {name: sha256_of(run['folder'] / name) for name in FILES}


def test_every_file_records_the_environment_and_the_dataset_copy(run):
    ckpt = read_checkpoint(run['ckpt'])
    config = json.loads((run['folder'] / 'config.json').read_text())
    features = json.loads(str(np.load(run['base'] / 'features.npz')['meta']))
    stamps = {'checkpoint': ckpt['environment'], 'results': run['results']['environment'],
              'features': features['environment'], 'config.json': config['environment'],
              'config.json (training)': config['trained_with']}
    for where, record in stamps.items():
        assert record['packages']['torch'] == torch.__version__, where
        assert record['packages']['numpy'] == np.__version__, where
        assert record['python'] == '.'.join(map(str, sys.version_info[:3])), where
        assert record['device']['type'] == 'cpu' and record['device']['threads'] == torch.get_num_threads(), where
        assert record['world_size'] == 1, where
    assert run['results']['checkpoints'][0]['environment'] == ckpt['environment']
    card = (run['folder'] / 'README.md').read_text()
    assert f'- trained with: Python {ckpt["environment"]["python"]}, torch {torch.__version__}' in card
    # the dataset copy: the training set in the checkpoint, the test set in the results file
    assert ckpt['dataset_copy']['synthetic'] == 'synthetic.py' and ckpt['dataset_copy']['matches']
    assert ckpt['dataset_copy']['counts'] == {'identities': 3, 'images': {'visible': 12, 'infrared': 6}, 'cameras': None}
    assert run['results']['dataset_copy']['counts']['gallery'] == {'all': 12, 'indoor': 6}


def test_the_scripts_say_which_copy_and_environment_they_run_on(run):
    printed = run['printed']
    assert 'SYSU-MM01 training set: synthetic (made by synthetic.py), 3 identities, 12 visible + 6 infrared images, ' \
           'as made\n' in printed['process_sysu']
    assert 'SYSU-MM01 training set (its prepared arrays): synthetic (made by synthetic.py), 3 identities, 12 visible ' \
           '+ 6 infrared images, as made\n' in printed['train']
    # 12 visible images // (2 identities x 4 images) + 1: the release's rule
    assert "steps per epoch: 2 = max(12 visible, 6 infrared images) // (2 identities x 4 images) + 1 (the release's " \
           'rule)\n' in printed['train']
    assert 'Epoch: [0][2/2]' in printed['train']
    assert 'SYSU-MM01 test set: synthetic (made by synthetic.py), 3 identities, 12 visible + 6 infrared images, ' \
           'single-shot galleries of 12 (all-search) and 6 (indoor-search), as made\n' in printed['test']
    for script in ('train', 'test'):
        line = re.search(r'^environment: (.*)$', printed[script], re.M).group(1)
        assert line.startswith(f'Python {sys.version.split()[0]}, torch {torch.__version__}, ')
        assert f'), {torch.get_num_threads()} threads; 1 process; ' in line


def test_push_to_uploads_the_written_folder(run):
    assert run['pushed'] == [
        ('create_repo', {'repo_id': REPO_ID, 'repo_type': 'model', 'exist_ok': True, 'private': False}),
        ('upload_folder', {'folder_path': str(run['folder']), 'repo_id': REPO_ID, 'repo_type': 'model',
                           'commit_message': 'IFALNet weights, config and model card (export.py --format safetensors)',
                           'files': sorted([*FILES, CHECKSUMS])})]
    assert f'pushed to https://huggingface.co/{REPO_ID}' in run['printed']['export']


def test_a_hub_repo_id_and_a_hash_named_url_load(run, tmp_path, monkeypatch):
    asked = []
    monkeypatch.setattr('huggingface_hub.snapshot_download', lambda **kw: asked.append(kw) or str(run['folder']))
    net = torch.hub.load(ROOT, 'ifalnet', source='local', weights=REPO_ID)
    assert asked == [{'repo_id': REPO_ID, 'allow_patterns': [*FILES, CHECKSUMS]}] and not net.training
    # a URL whose file name carries the start of its sha256 (torchvision's convention); file:// needs no network
    weights = run['folder'] / 'model.safetensors'
    digest = sha256_of(weights)
    served = tmp_path / 'served'
    served.mkdir()
    os.link(weights, served / f'ifalnet_tiny-{digest[:10]}.safetensors')
    os.link(weights, served / 'ifalnet_tiny-0123456789.safetensors')
    monkeypatch.setattr(torch.hub, 'get_dir', lambda: str(tmp_path / 'hub'))
    net = torch.hub.load(ROOT, 'ifalnet', source='local', weights=(served / f'ifalnet_tiny-{digest[:10]}.safetensors').as_uri())
    want = read_checkpoint(run['ckpt'])['net']
    assert all(torch.equal(net.state_dict()[k], want[k]) for k in want)
    with pytest.raises(ReIDError) as err:
        torch.hub.load(ROOT, 'ifalnet', source='local', weights=(served / 'ifalnet_tiny-0123456789.safetensors').as_uri())
    assert str(err.value) == (f'{(served / "ifalnet_tiny-0123456789.safetensors").as_uri()}: the downloaded file has '
                              f'sha256 {digest}, but its name says it starts with 0123456789: the file was changed or '
                              'damaged; nothing was kept')
    assert os.listdir(tmp_path / 'hub' / 'checkpoints') == [f'ifalnet_tiny-{digest[:10]}.safetensors']


# ----------------------------------------------------------------------------------- refused files
def copy_folder(folder, to, link_weights=True):
    """A copy of a model folder; its model.safetensors a hard link (instant) unless it is to be changed."""
    to.mkdir()
    for name in os.listdir(folder):
        (os.link if link_weights and name == 'model.safetensors' else shutil.copy)(folder / name, to / name)
    return to


def rehash(folder):
    """Rewrite checksums.sha256 for the folder's files as they now are (to get past the hash check)."""
    (folder / CHECKSUMS).write_text(''.join(f'{sha256_of(folder / n)}  {n}\n' for n in FILES))


def refusal(run, weights, capsys):
    """test.py --resume `weights` through run_main: (exit status, stderr)."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:
        run_main(lambda: test_script.main(['--dataset', 'sysu', '--data-path', str(run['data']), *FAST,
                                           '--trials', '0', '--resume', str(weights)]))
    return stop.value.code, capsys.readouterr().err


def test_a_changed_byte_is_refused_naming_the_file_and_both_hashes(run, tmp_path, capsys):
    folder = copy_folder(run['folder'], tmp_path / 'tampered', link_weights=False)
    weights = folder / 'model.safetensors'
    listed = sha256_of(weights)
    with open(weights, 'r+b') as f:
        f.seek(-100, os.SEEK_END)
        byte = f.read(1)
        f.seek(-100, os.SEEK_END)
        f.write(bytes([byte[0] ^ 1]))
    status, err = refusal(run, folder, capsys)
    assert status == 2 and err == (f'error: {weights} has sha256 {sha256_of(weights)}, but checksums.sha256 lists '
                                   f'{listed}: the file was changed or damaged; nothing was loaded\n')
    # truncated (and re-hashed, so that safetensors itself reads it): refused by the safetensors reader
    with open(weights, 'r+b') as f:
        f.truncate(os.path.getsize(weights) // 2)
    rehash(folder)
    status, err = refusal(run, folder, capsys)
    assert status == 2 and err.startswith(f'error: cannot read {weights} as safetensors (') and err.count('\n') == 1


def test_a_config_that_does_not_fit_the_weights_is_refused_naming_the_keys(run, tmp_path, capsys):
    folder = copy_folder(run['folder'], tmp_path / 'mismatched')
    config = json.loads((folder / 'config.json').read_text())
    (folder / 'config.json').write_text(json.dumps({**config, 'class_num': 7}))
    rehash(folder)
    status, err = refusal(run, folder, capsys)
    assert status == 2 and err == (f'error: {folder}: config.json and the config inside model.safetensors differ in '
                                   'class_num; re-export the checkpoint\n')
    # weights and their own config that disagree: a lone .safetensors file, a weight left out, one added, one resized
    from safetensors.torch import save_file
    state = {k: v.contiguous() for k, v in read_checkpoint(run['ckpt'])['net'].items()}
    del state['bottleneck.weight']
    state.update({'extra.weight': torch.zeros(1), 'classifier.weight': torch.zeros(5, 2048)})
    lone = tmp_path / 'lone.safetensors'
    save_file(state, str(lone), metadata={'format': 'pt', 'ifalnet': json.dumps(config)})
    status, err = refusal(run, lone, capsys)
    assert status == 2 and err == (f'error: {lone}: its config does not fit its weights (3 differences: missing from '
                                   'the weights: bottleneck.weight (2048); not in the network: extra.weight (1); shape '
                                   'differs: classifier.weight (weights 5x2048, config 3x2048))\n')


def test_hostile_files_run_nothing(run, tmp_path, capsys):
    ran = tmp_path / 'code_ran'

    class Payload:   # unpickling it would create the file `ran`
        def __reduce__(self):
            return open, (str(ran), 'w')

    hostile = pickle.dumps({'net': Payload()})
    folder = copy_folder(run['folder'], tmp_path / 'beside')
    for name in ('pytorch_model.bin', 'model.pt', 'model.ckpt'):   # where other loaders look
        (folder / name).write_bytes(hostile)
    ckpt = read_weights(folder)
    assert ckpt['sha256'] == sha256_of(run['folder'] / 'model.safetensors') and not ran.exists()
    # a pickle in model.safetensors' place (re-hashed to get past the checksums)
    folder = copy_folder(run['folder'], tmp_path / 'replaced', link_weights=False)
    (folder / 'model.safetensors').write_bytes(hostile)
    rehash(folder)
    status, err = refusal(run, folder, capsys)
    assert status == 2 and err.startswith(f'error: cannot read {folder / "model.safetensors"} as safetensors (')
    # a checksums file that points outside the folder, and a config that is not one
    folder = copy_folder(run['folder'], tmp_path / 'outside')
    with open(folder / CHECKSUMS, 'a') as f:
        f.write(f'{"0" * 64}  ../../etc/passwd\n')
    status, err = refusal(run, folder, capsys)
    assert status == 2 and err == (f"error: {folder / CHECKSUMS} lists '../../etc/passwd': only files of the folder "
                                   'itself\n')
    folder = copy_folder(run['folder'], tmp_path / 'config')
    (folder / 'config.json').write_text('{"model_type": "ifalnet", "format_version": 1, "class_num": {"__class__": 1}}')
    rehash(folder)
    status, err = refusal(run, folder, capsys)
    assert status == 2 and err.startswith(f'error: {folder / "config.json"}: "class_num" must be a positive integer; ')
    assert not ran.exists()


def test_export_refuses_before_writing(run, tmp_path, monkeypatch, capsys):
    out = tmp_path / 'out'
    # results of another checkpoint
    other = json.loads(json.dumps(run['results']))
    other['checkpoints'][0]['sha256'] = '0' * 64
    (tmp_path / 'other.json').write_text(json.dumps(other))
    with pytest.raises(ReIDError, match=re.escape(f'--results {tmp_path / "other.json"} scores {run["ckpt"]} (sha256 '
                                                  f'{"0" * 64}), not {run["ckpt"]} (sha256 {sha256_of(run["ckpt"])})')):
        quiet(export_script.main, ['--resume', str(run['ckpt']), '--format', 'safetensors', '--results',
                                   str(tmp_path / 'other.json'), '--out', str(out)])
    # a folder that is not an earlier export
    (tmp_path / 'busy').mkdir()
    (tmp_path / 'busy' / 'notes.txt').write_text('mine')
    with pytest.raises(ReIDError, match='is not empty and holds no earlier export'):
        quiet(export_script.main, ['--resume', str(run['ckpt']), '--format', 'safetensors', '--out', str(tmp_path / 'busy')])
    # the optional extras missing
    monkeypatch.setitem(sys.modules, 'safetensors.torch', None)
    with pytest.raises(ReIDError, match=r'^safetensors is not installed; .* python3 -m pip install -r '
                                        r'requirements-share.txt$'):
        quiet(export_script.main, ['--resume', str(run['ckpt']), '--format', 'safetensors', '--out', str(out)])
    monkeypatch.setitem(sys.modules, 'huggingface_hub', None)
    with pytest.raises(ReIDError, match=r'^huggingface_hub is not installed; .* -r requirements-hub.txt$'):
        hub_transfer.local_weights(REPO_ID)
    assert sorted(os.listdir(tmp_path)) == ['busy', 'other.json'] and os.listdir(tmp_path / 'busy') == ['notes.txt']
    # flags of the folder alone, and the folder's two branches
    for argv, message in ((['--results', 'r.json'], '--results apply to --format safetensors only'),
                          (['--format', 'safetensors', '--modality', 'visible'],
                           'a safetensors model folder holds both branches: leave out --modality'),
                          (['--format', 'safetensors', '--img_h', '32'],
                           "a safetensors model folder records the checkpoint's own image size (config.json's "
                           'image_size): leave out --img_h/--img_w')):
        with pytest.raises(SystemExit):
            export_script.parse_args(['--resume', 'x.t', '--out', 'o', *argv])
        assert capsys.readouterr().err.endswith(f'error: {message}\n')


def test_a_folder_without_the_classifier_embeds_alike(run, hub_net, tmp_path):
    out = tmp_path / 'no_classifier'
    quiet(export_script.main, ['--resume', str(run['folder']), '--format', 'safetensors', '--no-classifier',
                               '--out', str(out)])
    config = json.loads((out / 'config.json').read_text())
    assert config['classifier'] is False and config['class_num'] == 3
    assert config['source']['sha256'] == sha256_of(run['folder'] / 'model.safetensors')
    assert os.path.getsize(out / 'model.safetensors') < os.path.getsize(run['folder'] / 'model.safetensors')
    net = torch.hub.load(ROOT, 'ifalnet', source='local', weights=str(out))
    x = torch.rand(2, 3, 32, 16)
    with torch.no_grad():
        for modal in (1, 2):
            assert all(torch.equal(a, b) for a, b in zip(net(x, x, x, x, modal), hub_net(x, x, x, x, modal)))
    assert not net.classifier.weight.any()


def test_a_release_checkpoint_converts_to_a_folder(run, tmp_path):
    """A release checkpoint (weights, epoch and scores; no arguments, channels or environment; an unused
    weight) converts to a folder whose weights are the network's, whose channels are the ones given, and
    whose card says what the checkpoint does not record."""
    state = dict(read_checkpoint(run['ckpt'])['net'])
    state['base_resnet.base.conv1.weight'] = torch.zeros(64, 3, 7, 7)   # a weight the release stores, unused
    release = tmp_path / 'release.t'
    torch.save({'net': state, 'epoch': 80, 'cmc': np.linspace(0.5, 1, 20), 'mAP': np.float64(0.7)}, release)
    out = tmp_path / 'ifalnet_release'
    printed = quiet(export_script.main, ['--resume', str(release), '--se-channels', '5,0,3', '--format', 'safetensors',
                                         '--out', str(out)])
    assert 'release checkpoint' in printed and f'wrote {out}: model.safetensors' in printed
    config = json.loads((out / 'config.json').read_text())
    assert config['se_channels'] == [5, 0, 3] and config['image_size'] == {'height': 384, 'width': 192}
    assert config['training_args'] is None and config['trained_with'] is None
    assert config['source'] == {'file': 'release.t', 'sha256': sha256_of(release), 'epoch': 80,
                                'cmc': np.linspace(0.5, 1, 20).tolist(), 'mAP': 0.7, 'mINP': None}
    net = torch.hub.load(ROOT, 'ifalnet', source='local', weights=str(out))
    del state['base_resnet.base.conv1.weight']
    got = net.state_dict()
    assert got.keys() == state.keys() and all(torch.equal(got[k], state[k]) for k in state)
    assert net.se_channels == (5, 0, 3)
    card = (out / 'README.md').read_text()
    assert '`release.t`, epoch 80, validation Rank-1 50.00%; a release checkpoint stores no training arguments' in card
    assert 'Not recorded (a release checkpoint stores no training arguments).' in card
    assert '- trained with: not recorded' in card
