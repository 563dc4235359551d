"""ifalnet/checkpoints.py: release checkpoints load (dropping exactly the unused keys), ours round-trip,
mismatches and damaged files are refused with the keys named, and no checkpoint runs code."""
import os
import zipfile

import numpy as np
import pytest
import torch

from ifalnet.checkpoints import checkpoint_model_args, load_checkpoint, read_checkpoint, save_checkpoint
from model import Modal, embed_net
from tests.conftest import release_keys
from utils import ReIDError

H, W = 64, 32


def images(b, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, 3, H, W, generator=g)


# ----------------------------------------------------------------------------- checkpoints
def release_checkpoint(path, numpy_module='numpy._core'):
    """A checkpoint in the release's format, built from the key list: every key, used or not,
    random values, numpy metrics; optionally pickled under numpy 1.x's module names."""
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(5)
    sensible = embed_net(395).state_dict()  # values that keep activations finite
    net_state = {}
    for key, (shape, used) in release_keys().items():
        if key.endswith('num_batches_tracked'):
            net_state[key] = torch.tensor(7)
        elif used:
            net_state[key] = sensible[key] + 0.01 * torch.rand(shape, generator=g)
        else:
            net_state[key] = torch.zeros(shape)
    ckpt = {'net': net_state, 'epoch': 80, 'cmc': np.linspace(0.5, 1, 20).astype(np.float32),
            'mAP': np.float64(0.7), 'mINP': np.mean(np.array([0.5, 0.6]))}
    torch.save(ckpt, path)
    if numpy_module != 'numpy._core':
        rewrite_pickle(path, b'numpy._core.multiarray', numpy_module.encode() + b'.multiarray')
    return ckpt


def rewrite_pickle(path, old, new):
    with zipfile.ZipFile(path) as z:
        entries = [(info, z.read(info)) for info in z.infolist()]
    with zipfile.ZipFile(path, 'w') as z:
        for info, data in entries:
            if info.filename.endswith('data.pkl'):
                assert old in data
                data = data.replace(old, new)
            z.writestr(info, data)


@pytest.mark.parametrize('numpy_module', ['numpy._core', 'numpy.core'])
def test_release_checkpoint_loads_and_drops_exactly_the_unused_keys(tmp_path, capsys, numpy_module):
    path = tmp_path / 'sysu_release.t'
    saved = release_checkpoint(path, numpy_module)
    net = embed_net(395)
    ckpt = load_checkpoint(str(path), net)
    n_unused = sum(not used for _, used in release_keys().values())
    assert n_unused == 1258
    assert f'ignoring {n_unused} stored weights' in capsys.readouterr().out
    assert ckpt['epoch'] == 80 and isinstance(ckpt['cmc'], np.ndarray)
    np.testing.assert_array_equal(ckpt['cmc'], saved['cmc'])
    assert float(ckpt['mAP']) == 0.7
    for key, value in net.state_dict().items():
        assert torch.equal(value, saved['net'][key]), key
    # a release checkpoint stores no 'architecture': it is the full network
    assert checkpoint_model_args(ckpt) == {'class_num': 395, 'working_se': False, 'middle': True, 'mia': [1, 2, 3],
                                           'mfa': True}
    net.eval()
    x = images(1)
    with torch.no_grad():
        assert torch.isfinite(net(x, x, x, x, Modal.VISIBLE)[1]).all()


def test_our_checkpoint_round_trip(tmp_path):
    torch.manual_seed(1)
    net = embed_net(9, working_se=True)
    path = tmp_path / 'ours.t'
    save_checkpoint({'net': net.state_dict(), 'epoch': 3, 'args': {'lr': 0.1}}, str(path))
    other = embed_net(9, working_se=True)
    ckpt = load_checkpoint(str(path), other)
    assert ckpt['args'] == {'lr': 0.1}
    assert checkpoint_model_args(ckpt) == {'class_num': 9, 'working_se': True, 'middle': True, 'mia': [1, 2, 3],
                                           'mfa': True}
    for key, value in net.state_dict().items():
        assert torch.equal(value, other.state_dict()[key])
    assert [p.name for p in tmp_path.iterdir()] == ['ours.t']  # no temp file left behind


def test_dataparallel_prefix_is_accepted(tmp_path):
    net = embed_net(4)
    path = tmp_path / 'dp.t'
    torch.save({'net': {'module.' + k: v for k, v in net.state_dict().items()}}, path)
    load_checkpoint(str(path), embed_net(4))


def test_mismatched_checkpoint_lists_the_keys(tmp_path):
    state = embed_net(4).state_dict()
    state['classifier.weight'] = torch.zeros(5, 2048)
    del state['MFA.FC2.bias']
    state['head.extra'] = torch.zeros(2)
    path = tmp_path / 'other_model.t'
    torch.save({'net': state}, path)
    with pytest.raises(ReIDError) as err:
        load_checkpoint(str(path), embed_net(4))
    msg = str(err.value)
    assert 'other_model.t does not fit this model (3 differences)' in msg
    assert 'shape differs: classifier.weight: checkpoint 5x2048, model 4x2048' in msg
    assert 'missing from checkpoint: MFA.FC2.bias (512)' in msg
    assert 'not in model: head.extra (2)' in msg


def test_working_se_checkpoint_into_release_model_is_refused(tmp_path):
    path = tmp_path / 'se.t'
    save_checkpoint({'net': embed_net(4, working_se=True).state_dict()}, str(path))
    with pytest.raises(ReIDError, match='SEnet.fc.0.weight: checkpoint 1x6, model 0x6'):
        load_checkpoint(str(path), embed_net(4))


def test_missing_and_unreadable_checkpoints(tmp_path):
    with pytest.raises(ReIDError, match='checkpoint not found: .*absent.t'):
        read_checkpoint(str(tmp_path / 'absent.t'))
    junk = tmp_path / 'junk.t'
    junk.write_bytes(b'not a checkpoint')
    with pytest.raises(ReIDError, match='cannot read checkpoint .*junk.t'):
        read_checkpoint(str(junk))
    wrong = tmp_path / 'list.t'
    torch.save([1, 2], wrong)
    with pytest.raises(ReIDError, match='list.t is not an IFALNet checkpoint'):
        read_checkpoint(str(wrong))


class Payload:
    def __reduce__(self):
        return (os.system, ('echo pwned',))


def test_a_checkpoint_cannot_run_code(tmp_path):
    path = tmp_path / 'evil.t'
    torch.save({'net': {}, 'x': Payload()}, path)
    with pytest.raises(ReIDError, match='cannot read checkpoint'):
        read_checkpoint(str(path))
