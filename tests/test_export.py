"""export.py, exporting.py and test.py --onnx: exported files against the PyTorch model, the embedding's
dot product against test.py's ALL, test.py's scores from exported files, docs/export.md's onnxruntime
example, and the messages when the optional extra is missing."""
import contextlib
import copy
import errno
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest
import torch

import export as export_script
import test as test_script
from data_loader import TestData
from data_manager import process_gallery_sysu, process_query_sysu
from ifalnet import output_paths
from ifalnet.atomic import temp_file_beside
from ifalnet.checkpoints import save_checkpoint
from ifalnet.deploy import Embedder, Exported, check_inputs, export, exported_pair
from ifalnet.scoring import score_similarities
from model import Modal, embed_net
from tests.conftest import failing_writes
from utils import ReIDError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
H, W = 32, 16
SIZE = ['--img_h', str(H), '--img_w', str(W)]


def images(paths):
    """Test images as test.py reads them: (n, 3, H, W)."""
    data = TestData(paths, np.zeros(len(paths)), H, W)
    return torch.stack([data[i][0] for i in range(len(paths))])


def tiny_state(sysu_root, seed=0):
    """An initialised network whose features differ between images by far more than float noise.

    An untrained network maps every image to nearly the same direction, so its rankings flip with the
    last bits of the arithmetic (even channels_last against contiguous); centring the BN neck on the
    network's own pool features of some test images spreads the bn features, as training would."""
    torch.manual_seed(seed)
    net = embed_net(6)
    net.SEnet.set_channels()
    images_of = {Modal.VISIBLE: images(process_gallery_sysu(sysu_root, 'all', 0)[0][:8]),
                 Modal.THERMAL: images(process_query_sysu(sysu_root, 'all')[0][:8])}
    v, t = images_of[Modal.VISIBLE], images_of[Modal.THERMAL]
    with torch.no_grad():
        net.train()
        net(v, v, t, t, Modal.BOTH)            # the body's BN statistics
        net.eval()
        seen = []
        hook = net.bottleneck.register_forward_hook(lambda module, args, out: seen.append(args[0]))
        for modal, x in images_of.items():
            net(x, x, x, x, modal)
        hook.remove()
        pool = torch.cat(seen)
        net.bottleneck.running_mean.copy_(pool.mean(0))
        net.bottleneck.running_var.copy_(pool.var(0))
    return net


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory, sysu_root):
    """(path, network) of a checkpoint in train.py's format."""
    net = tiny_state(sysu_root)
    path = tmp_path_factory.mktemp('export_ckpt') / 'tiny_last.t'
    save_checkpoint({'net': net.state_dict(), 'epoch': 1, 'se_channels': net.se_channels}, path)
    return str(path), net


def torch_features(net, x, modal):
    """The four feature matrices test.py's FeatureBank gives images `x` (float64, as test.py scores them)."""
    with torch.no_grad():
        pool, feat = net(x, x, x, x, modal)
    return {name: t.numpy().astype(np.float64)
            for name, t in zip(('pool_ori', 'pool_mid', 'bn_ori', 'bn_mid'), (*pool.chunk(2), *feat.chunk(2)))}


def run_export(*argv):
    """export.main in this process; returns its output."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        export_script.main(list(argv))
    return out.getvalue()


@pytest.fixture(scope='module')
def exported(tmp_path_factory, checkpoint):
    """{format: (visible file, thermal file, export's output)}: both branches in both formats; the ONNX
    export checked as by default, the TorchScript one with --no-check (the tests compare both anyway)."""
    folder = tmp_path_factory.mktemp('exported')
    files = {}
    for fmt, ext, check in (('onnx', '.onnx', []), ('torchscript', '.pt', ['--no-check'])):
        out = run_export('--resume', checkpoint[0], '--format', fmt, '--out', str(folder / f'tiny{ext}'), *SIZE, *check)
        files[fmt] = (str(folder / f'tiny_visible{ext}'), str(folder / f'tiny_thermal{ext}'), out)
    return files


@pytest.fixture(scope='module')
def reference(checkpoint):
    """{(modal, batch size): (images, the PyTorch model's features)}."""
    return {(modal, n): (x, torch_features(checkpoint[1], torch.from_numpy(x), modal))
            for modal in (Modal.VISIBLE, Modal.THERMAL) for n in (1, 5)
            for x in [check_inputs(modal, H, W, n=n, seed=n)[1][1]]}


@pytest.mark.parametrize('fmt', ['onnx', 'torchscript'])
def test_exports_of_both_branches_give_the_model_features_at_any_batch_size(fmt, exported, reference):
    visible, thermal, out = exported[fmt]
    for path, modal, name in ((visible, Modal.VISIBLE, 'visible'), (thermal, Modal.THERMAL, 'thermal')):
        diff = re.search(rf'check {name}: max \|embedding difference\| (\S+), max \|features difference\| (\S+)', out)
        if fmt == 'onnx':
            assert diff and max(float(diff.group(1)), float(diff.group(2))) <= 1e-4, out
        else:
            assert diff is None   # --no-check
        assert re.search(rf'wrote {re.escape(path)}: {fmt}, {name} branch, input image \(B, 3, 32, 16\), \d+ MB', out)
        file = Exported(path)
        assert (file.format, file.modal, file.img_h, file.img_w) == (fmt, modal, H, W)
        assert file.metadata['se_channels'] == [3, 5, 4] and file.metadata['checkpoint'] == 'tiny_last.t'
        stamp = file.metadata['environment']   # what made the file (ifalnet/environment_stamp.py)
        assert stamp['packages']['torch'] == torch.__version__ and stamp['device']['type'] == 'cpu'
        for batch in (1, 5):
            x, want = reference[(modal, batch)]
            features, embedding = file.run(x)
            assert features.shape == (batch, 4, 2048) and embedding.shape == (batch, 4096)
            for k, name in enumerate(('pool_ori', 'pool_mid', 'bn_ori', 'bn_mid')):
                np.testing.assert_allclose(features[:, k], want[name], rtol=0, atol=1e-4)
            np.testing.assert_allclose(np.linalg.norm(features, axis=2), 1, atol=1e-5)


def test_embedding_dot_products_are_test_py_all_similarities(exported, checkpoint):
    visible, thermal, _ = exported['onnx']
    net = checkpoint[1]
    batches = {modal: check_inputs(modal, H, W, n=5, seed=3)[1][1] for modal in (Modal.VISIBLE, Modal.THERMAL)}
    features = {modal: torch_features(net, torch.from_numpy(x), modal) for modal, x in batches.items()}
    embeddings = {modal: Exported(path).run(batches[modal])[1].astype(np.float64)
                  for modal, path in ((Modal.THERMAL, thermal), (Modal.VISIBLE, visible))}
    all_score = score_similarities(features[Modal.THERMAL], features[Modal.VISIBLE])['ALL']
    np.testing.assert_allclose(embeddings[Modal.THERMAL] @ embeddings[Modal.VISIBLE].T, all_score, rtol=0, atol=1e-5)
    assert all_score.std() > 1e-2   # the scores differ, so the comparison means something


def test_test_py_with_exported_files_gives_the_checkpoint_scores(tmp_path, sysu_root, exported, checkpoint):
    common = ['--data-path', sysu_root, *SIZE, '--workers', '0', '--gpu', '', '--trials', '0,1']
    runs, out = {}, io.StringIO()
    for name, source in (('checkpoint', ['--resume', checkpoint[0]]), ('onnx', ['--onnx', *exported['onnx'][:2]])):
        with contextlib.redirect_stdout(out):
            test_script.main([*common, *source, '--results', str(tmp_path / f'{name}.json')])
        runs[name] = json.loads((tmp_path / f'{name}.json').read_text())
    assert f'loaded {exported["onnx"][1]} (onnx, thermal branch, from tiny_last.t)' in out.getvalue()
    assert len(runs['onnx']['per_trial']) == 2
    for trial, want in zip(runs['onnx']['per_trial'], runs['checkpoint']['per_trial']):
        for score, values in want.items():
            assert trial[score] == pytest.approx(values, abs=1e-6), score
    assert 0 < runs['onnx']['mean']['ALL']['rank1'] < 1


def test_exported_files_are_checked_against_the_test(sysu_root, exported):
    visible, thermal, _ = exported['onnx']
    common = ['--data-path', sysu_root, '--workers', '0', '--gpu', '']
    with pytest.raises(ReIDError, match=rf'{re.escape(visible)} takes 32x16 images: pass --img_h 32 --img_w 16 '
                                        r'\(got 64x32\)'):
        test_script.main([*common, '--img_h', '64', '--img_w', '32', '--onnx', visible, thermal])
    with pytest.raises(ReIDError, match=f'takes the visible file, then the thermal one; {re.escape(thermal)} is the '
                                        'thermal branch'):
        test_script.main([*common, *SIZE, '--onnx', thermal, visible])


def test_release_checkpoint_exports_with_se_channels(tmp_path, checkpoint):
    state = dict(checkpoint[1].state_dict())
    state['base_resnet.base.conv1.weight'] = torch.zeros(64, 3, 7, 7)   # a weight the release stores, unused
    release = tmp_path / 'release.t'
    torch.save({'net': state, 'epoch': 80, 'cmc': np.linspace(0.5, 1, 20), 'mAP': np.float64(0.7)}, release)
    out = run_export('--resume', str(release), '--se-channels', '5,0,3', '--format', 'torchscript',
                     '--modality', 'thermal', '--out', str(tmp_path / 'ir.pt'), '--no-check', *SIZE)
    assert 'middle-modality channels: 5,0,3 (--se-channels)' in out and 'release checkpoint' in out
    assert sorted(os.listdir(tmp_path)) == ['ir.pt', 'release.t']
    file = Exported(tmp_path / 'ir.pt')
    assert file.metadata['se_channels'] == [5, 0, 3] and file.modal == Modal.THERMAL
    net = copy.deepcopy(checkpoint[1])
    net.SEnet.set_channels((5, 0, 3))
    x = check_inputs(Modal.THERMAL, H, W, n=1)[1][1]
    with torch.no_grad():
        want = Embedder(net, Modal.THERMAL)(torch.from_numpy(x))[0].numpy()
    np.testing.assert_allclose(file.run(x)[0], want, rtol=0, atol=1e-4)


def test_working_se_checkpoint_exports_its_per_sample_channel_choice(tmp_path):
    torch.manual_seed(1)
    net = embed_net(6, working_se=True)   # train.py --se working: topk per sample, inside the graph
    save_checkpoint({'net': net.state_dict(), 'epoch': 0}, tmp_path / 'working.t')
    out = run_export('--resume', str(tmp_path / 'working.t'), '--modality', 'visible', '--out',
                     str(tmp_path / 'w.onnx'), *SIZE)
    diff = re.search(r'check visible: max \|embedding difference\| (\S+), max \|features difference\| (\S+)', out)
    assert diff and max(map(float, diff.groups())) <= 1e-4, out
    assert Exported(tmp_path / 'w.onnx').metadata['working_se'] is True


def test_an_export_that_differs_fails_and_writes_nothing(tmp_path, checkpoint, monkeypatch):
    # Stand-ins for the export and its runtime (the real ones are tested above): a file that differs.
    monkeypatch.setattr(export_script, 'serialized', lambda *args: b'x')
    monkeypatch.setattr(export_script, 'Exported', lambda path: path)
    monkeypatch.setattr(export_script, 'check', lambda *args: (0.0, 3e-4))
    with pytest.raises(ReIDError, match=r'the exported visible branch differs from the PyTorch model by 3.0e-04 '
                                        r'\(more than 1e-04\); nothing written'):
        run_export('--resume', checkpoint[0], '--format', 'torchscript', '--out', str(tmp_path / 'm.pt'), *SIZE)
    assert os.listdir(tmp_path) == []


def launch(hidden, script, *argv):
    """Run `script` in a fresh interpreter in which the modules `hidden` cannot be imported."""
    code = (f'import runpy, sys\nfor name in {list(hidden)!r}:\n    sys.modules[name] = None\n'
            f'sys.argv = sys.argv[1:]\nrunpy.run_path(sys.argv[0], run_name="__main__")')
    return subprocess.run([sys.executable, '-c', code, script, *argv], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


@pytest.mark.parametrize('case', ['test.py --onnx', 'export.py --check'])
def test_missing_onnx_runtime_is_one_clear_line_and_exit_2(case, tmp_path, sysu_root, exported, checkpoint):
    out = str(tmp_path / 'm.onnx')
    hidden, module, argv = {
        'test.py --onnx': (['onnxruntime'], 'onnxruntime', ['test.py', '--data-path', sysu_root, *SIZE,
                                                            '--onnx', *exported['onnx'][:2]]),
        'export.py --check': (['onnxruntime'], 'onnxruntime', ['export.py', '--resume', checkpoint[0], '--check',
                                                               '--out', out]),
    }[case]
    result = launch(hidden, *argv)
    assert result.returncode == 2, result.stderr
    assert result.stderr == (f'error: {module} is not installed; ONNX export and running ONNX files need the optional '
                             'extra: python3 -m pip install -r requirements-export.txt\n')
    assert os.listdir(tmp_path) == []


def docs_example():
    """The onnxruntime-only ranking example of docs/export.md."""
    with open(os.path.join(ROOT, 'docs', 'export.md')) as f:
        page = f.read()
    return re.search(r'```python\n(.*?)```', page, re.S).group(1)


def test_docs_ranking_example_runs_with_onnxruntime_alone(tmp_path, sysu_root, exported, checkpoint):
    code = docs_example()
    assert 0 < len(code.strip().splitlines()) <= 10 and 'torch' not in code
    example = tmp_path / 'rank.py'
    example.write_text(code)
    query = process_query_sysu(sysu_root, 'all')[0][0]
    gallery = process_gallery_sysu(sysu_root, 'all', 0)[0]
    visible, thermal, _ = exported['onnx']
    result = launch(['torch'], str(example), thermal, visible, query, *gallery)
    assert result.returncode == 0, result.stderr
    ranked = [line.split(maxsplit=1) for line in result.stdout.splitlines()]
    # test.py's ALL similarities of the same images, from the PyTorch model
    features = {name: torch_features(checkpoint[1], images(paths), modal)
                for name, paths, modal in (('q', [query], Modal.THERMAL), ('g', gallery, Modal.VISIBLE))}
    scores = score_similarities(features['q'], features['g'])['ALL'][0]
    assert [path for _, path in ranked] == [gallery[i] for i in np.argsort(-scores, kind='stable')]
    np.testing.assert_allclose([float(s) for s, _ in ranked], np.sort(scores)[::-1], rtol=0, atol=1e-4)


def test_test_py_takes_a_checkpoint_or_exported_files(capsys):
    one_of = 'give one of --resume (a checkpoint), --onnx (exported files) and --from-features (a features file), not '
    for argv, message in (([], '--resume is required: the checkpoint to evaluate (or --onnx VISIBLE THERMAL, or '
                               '--from-features FILE.npz)'),
                          (['--resume', 'x.t', '--onnx', 'v.onnx', 't.onnx'], one_of + '--resume and --onnx'),
                          (['--onnx', 'v.onnx', 't.onnx', '--from-features', 'f.npz'], one_of + '--onnx and --from-features')):
        with pytest.raises(SystemExit) as exit_:
            test_script.parse_args(argv)
        assert exit_.value.code == 2 and capsys.readouterr().err.endswith(f'error: {message}\n')


def test_export_takes_the_checkpoints_image_size(tmp_path, checkpoint):
    """Without --img_h/--img_w the file takes the size the checkpoint was trained at, as test.py tests
    at it; a given size that differs is used, with a warning."""
    net = checkpoint[1]
    path = tmp_path / 'sized_last.t'
    save_checkpoint({'net': net.state_dict(), 'epoch': 1, 'se_channels': net.se_channels,
                     'args': {'dataset': 'sysu', 'img_h': H, 'img_w': W}}, path)
    out = run_export('--resume', str(path), '--format', 'torchscript', '--modality', 'thermal', '--no-check',
                     '--out', str(tmp_path / 'own.pt'))
    assert f"exporting at {H}x{W}: the checkpoint's own size" in out
    assert (Exported(tmp_path / 'own.pt').img_h, Exported(tmp_path / 'own.pt').img_w) == (H, W)
    out = run_export('--resume', str(path), '--format', 'torchscript', '--modality', 'thermal', '--no-check',
                     '--img_h', str(2 * H), '--img_w', str(2 * W), '--out', str(tmp_path / 'other.pt'))
    assert f'warning: exporting at {2 * H}x{2 * W} but {path} was trained at {H}x{W}' in out
    assert Exported(tmp_path / 'other.pt').img_h == 2 * H


# ----------------------------------------------------------------------------- outputs
@pytest.mark.parametrize('case', ['a folder', 'inside a file', 'read-only', 'a branch file is a folder'])
def test_every_output_is_checked_before_the_checkpoint_is_loaded(tmp_path, monkeypatch, case):
    (tmp_path / 'file').write_text('x')
    (tmp_path / 'm_thermal.pt').mkdir()
    if case == 'read-only':   # root writes anywhere, so the file system's refusal is mocked at the check
        def read_only(*args, **kwargs):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))
        monkeypatch.setattr(output_paths.tempfile, 'mkstemp', read_only)
    out, message = {
        'a folder': (tmp_path, f'--out {tmp_path} is a folder; expected a file name'),
        'inside a file': (tmp_path / 'file' / 'new' / 'm.pt',
                          f'--out {tmp_path}/file/new/m.pt is inside {tmp_path}/file, which is a file; expected a file '
                          'in a folder'),
        'read-only': (tmp_path / 'ro' / 'm.pt',
                      f'--out {tmp_path}/ro/m.pt: cannot write {tmp_path}: Read-only file system [EROFS]'),
        'a branch file is a folder': (tmp_path / 'm.pt', f'--out {tmp_path}/m_thermal.pt is a folder; expected a file name'),
    }[case]
    monkeypatch.setattr(export_script, 'load_model', lambda *args, **kwargs: pytest.fail('loaded before the check'))
    with pytest.raises(ReIDError) as err:   # the checkpoint does not exist either: the outputs come first
        run_export('--resume', str(tmp_path / 'none.t'), '--format', 'torchscript', '--out', str(out))
    assert str(err.value) == message
    assert sorted(os.listdir(tmp_path)) == ['file', 'm_thermal.pt']


def test_a_full_disk_is_one_line_naming_the_file_and_leaves_nothing(tmp_path, monkeypatch, checkpoint):
    failing_writes(monkeypatch, errno.ENOSPC)
    monkeypatch.setattr(export_script, 'serialized', lambda *args: b'exported')   # tracing is tested above
    with pytest.raises(ReIDError) as err:
        run_export('--resume', checkpoint[0], '--format', 'torchscript', '--modality', 'visible', '--no-check',
                   '--out', str(tmp_path / 'm.pt'), *SIZE)
    assert str(err.value) == f'cannot write {tmp_path}/m.pt: No space left on device [ENOSPC]'
    assert os.listdir(tmp_path) == []


def test_the_temporary_files_of_a_killed_export_are_removed_by_the_next(tmp_path, monkeypatch, checkpoint):
    # what a SIGKILL during the write leaves: the temporary file of each branch, named as the export names them
    stale = []
    for name in ('m_visible.pt', 'm_thermal.pt', 'm.pt'):
        fd, tmp = temp_file_beside(tmp_path / name)
        os.write(fd, b'x' * 1000)
        os.close(fd)
        stale.append(tmp)
    others = [tmp_path / '.notes.txt.k1ll3d_0.tmp', tmp_path / '.other.pt.k1ll3d_0.tmp']
    for other in others:
        other.write_bytes(b'not ours')
    monkeypatch.setattr(export_script, 'serialized', lambda *args: b'exported')
    out = run_export('--resume', checkpoint[0], '--format', 'torchscript', '--no-check', '--out',
                     str(tmp_path / 'm.pt'), *SIZE)
    assert f'note: removed 3 temporary file(s) left by an interrupted write: {", ".join(sorted(stale))}' in out
    assert sorted(os.listdir(tmp_path)) == sorted(['m_visible.pt', 'm_thermal.pt', *(o.name for o in others)])
    assert (tmp_path / 'm_visible.pt').read_bytes() == b'exported'


# ----------------------------------------------------------------------------- exported files are code
class Looping(torch.nn.Module):
    """A crafted TorchScript model: says it runs, then never returns (a loop in TorchScript's own interpreter)."""

    def forward(self, image):
        print('looping')
        i = 0
        while True:
            i += 1
            if i < 0:
                break
        return image, image


class Echo(torch.nn.Module):
    def forward(self, image):
        return image, image


def crafted_torchscript(path, module, modality):
    meta = {'kind': 'ifalnet-export', 'version': 1, 'img_h': H, 'img_w': W, 'modality': modality}
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', FutureWarning)   # torch.jit.script's deprecation note
        torch.jit.save(torch.jit.script(module), str(path), _extra_files={'ifalnet': json.dumps(meta)})
    return str(path)


def tiny_onnx(path, modality, names=('features', 'embedding')):
    onnx = pytest.importorskip('onnx')
    helper = onnx.helper
    image = helper.make_tensor_value_info('image', onnx.TensorProto.FLOAT, ['batch', 3, H, W])
    outputs = [helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None) for name in names]
    graph = helper.make_graph([helper.make_node('Identity', ['image'], [name]) for name in names],
                              'tiny', [image], outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)])
    model.ir_version = 8
    model.metadata_props.add(key='ifalnet', value=json.dumps({'kind': 'ifalnet-export', 'version': 1, 'img_h': H,
                                                              'img_w': W, 'modality': modality}))
    onnx.save(model, str(path))
    return str(path)


def test_a_torchscript_file_is_code_and_says_so_onnx_not(tmp_path, capsys):
    pytest.importorskip('onnxruntime')
    pair = [crafted_torchscript(tmp_path / f'{m}.pt', Echo(), m) for m in ('visible', 'thermal')]
    exported_pair(pair, H, W)
    out = capsys.readouterr().out
    for path in pair:
        assert (f'warning: {path} is a TorchScript file, which runs the program stored in it: trust it as you would '
                'code') in out
    exported_pair([tiny_onnx(tmp_path / f'{m}.onnx', m) for m in ('visible', 'thermal')], H, W)
    assert 'warning' not in capsys.readouterr().out


def test_a_truncated_file_says_which_kind_it_is(tmp_path):
    pytest.importorskip('onnxruntime')
    for path, kind in ((crafted_torchscript(tmp_path / 'm.pt', Echo(), 'visible'), 'TorchScript'),
                       (tiny_onnx(tmp_path / 'm.onnx', 'visible'), 'ONNX')):
        assert Exported(path).format == kind.lower()   # whole, it loads
        data = open(path, 'rb').read()
        for name in ('cut.bin', 'cut.onnx', 'cut.pt'):   # the bytes say the kind, not the name
            (tmp_path / name).write_bytes(data[:len(data) // 2])
            with pytest.raises(ReIDError) as err:
                Exported(tmp_path / name)
            assert str(err.value).startswith(f'cannot read {tmp_path / name}: a damaged {kind} file (')
            assert str(err.value).endswith('); export it again') and '\n' not in str(err.value)
    (tmp_path / 'empty.onnx').write_bytes(b'')
    with pytest.raises(ReIDError, match='empty.onnx is empty'):
        Exported(tmp_path / 'empty.onnx')


def test_an_exported_file_with_other_outputs_is_refused(tmp_path):
    """A file with export.py's metadata whose outputs are not features (B, 4, 2048) and embedding
    (B, 4096): refused by name at load (ONNX) or by shape at the first batch (either), not scored."""
    pytest.importorskip('onnxruntime')
    images = np.zeros((2, 3, H, W), np.float32)
    for path in (crafted_torchscript(tmp_path / 'echo.pt', Echo(), 'visible'),
                 tiny_onnx(tmp_path / 'echo.onnx', 'visible')):
        with pytest.raises(ReIDError) as err:
            Exported(path).run(images)
        assert str(err.value) == (f'{path} gave [(2, 3, {H}, {W}), (2, 3, {H}, {W})] for 2 images; expected float '
                                  'arrays features (2, 4, 2048), embedding (2, 4096) (a file written by export.py)')
    path = tiny_onnx(tmp_path / 'named.onnx', 'visible', names=('logits',))
    with pytest.raises(ReIDError) as err:
        Exported(path)
    assert str(err.value) == (f'{path} takes image and gives logits; expected the input image and the outputs '
                              'features, embedding of a file written by export.py')


def test_a_network_without_the_middle_modality_exports_and_runs_from_any_caller(tmp_path):
    """The file says which network it holds whoever exports it (bench.py passes only the modality), so
    its outputs are checked against the right shapes: (B, 2, 2048) without the middle modality."""
    pytest.importorskip('onnxruntime')
    torch.manual_seed(0)
    net = embed_net(6, middle=False, mia=(), mfa=False).eval()
    path = tmp_path / 'baseline.onnx'
    export(Embedder(net, Modal.VISIBLE), 'onnx', path, H, W, {'modality': 'visible'})
    exported = Exported(path)
    assert exported.metadata['architecture'] == net.architecture() and not exported.middle
    images = np.random.default_rng(0).standard_normal((3, 3, H, W)).astype(np.float32)
    features, embedding = exported.run(images)
    assert features.shape == (3, 2, 2048) and embedding.shape == (3, 4096)


@pytest.mark.parametrize('signum', [signal.SIGTERM, signal.SIGINT])
def test_sigterm_and_ctrl_c_end_a_torchscript_file_that_never_returns(tmp_path, sysu_root, signum):
    pair = [crafted_torchscript(tmp_path / f'{m}.pt', Looping(), m) for m in ('visible', 'thermal')]
    proc = subprocess.Popen([sys.executable, 'test.py', '--data-path', sysu_root, *SIZE, '--workers', '0', '--gpu', '',
                             '--trials', '0', '--onnx', *pair], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stdout:   # the model runs: it printed from inside TorchScript
            if line.strip() == 'looping':
                break
        time.sleep(0.2)
        sent = time.monotonic()
        proc.send_signal(signum)
        proc.wait(timeout=10)
        took = time.monotonic() - sent
    finally:
        proc.kill()
        proc.wait()
    err = proc.stderr.read()
    name = signal.Signals(signum).name
    assert proc.returncode == 128 + signum and took < 5, (proc.returncode, took, err)
    assert err in {f'interrupted by {name}; the torchscript file {path} did not return to Python, so the process ends '
                   'at once\n' for path in pair}   # the branch that runs first
