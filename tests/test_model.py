"""model.py: structure, outputs, release key names, the squeeze-excitation, memory formats."""

import numpy as np
import pytest
import torch

from model import MIA, Dropout, Modal, SEnet, dilated_conv, embed_net, gather_channels, merge_groups, split_groups
from tests.conftest import release_keys

H, W = 64, 32


@pytest.fixture(scope='module')
def net():
    torch.manual_seed(0)
    return embed_net(395)


def images(b, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, 3, H, W, generator=g)


# ----------------------------------------------------------------------------- structure and outputs
def test_keys_and_shapes_equal_the_release_used_keys(net):
    ours = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    used = {k: shape for k, (shape, is_used) in release_keys().items() if is_used}
    assert ours == used


def test_parameter_count_is_what_the_forward_pass_uses(net):
    n = sum(p.numel() for p in net.parameters())
    assert 49.7e6 < n < 49.9e6
    release_total = sum(int(np.prod(s)) for k, (s, _) in release_keys().items()
                        if not k.endswith('num_batches_tracked') and 'running_' not in k)
    assert release_total > 3 * n  # the release carries ~160M


@pytest.mark.parametrize('modal', list(Modal))
def test_output_shapes_train_and_eval(net, modal):
    x = images(3)
    streams = 4 if modal == Modal.BOTH else 2
    net.train()
    pool, logits = net(x, x, x, x, modal)
    assert pool.shape == (streams * 3, 2048) and logits.shape == (streams * 3, 395)
    net.eval()
    with torch.no_grad():
        pool, feat = net(x, x, x, x, modal)
    assert pool.shape == feat.shape == (streams * 3, 2048)
    torch.testing.assert_close(pool.norm(dim=1), torch.ones(streams * 3))
    torch.testing.assert_close(feat.norm(dim=1), torch.ones(streams * 3))


def test_eval_features_do_not_depend_on_the_rest_of_the_batch(net):
    net.eval()
    x = images(4)
    with torch.no_grad():
        pool_all, feat_all = net(x, x, x, x, Modal.THERMAL)
        pool_one, feat_one = net(x[1:2], x[1:2], x[1:2], x[1:2], Modal.THERMAL)
    # [original; middle] halves: row 1 of each half is sample 1.
    torch.testing.assert_close(feat_all[[1, 5]], feat_one, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(pool_all[[1, 5]], pool_one, rtol=1e-4, atol=1e-5)


def test_visible_and_thermal_use_their_own_stems(net):
    net.eval()
    x = images(2)
    with torch.no_grad():
        v = net(x, x, x, x, Modal.VISIBLE)[1]
        t = net(x, x, x, x, Modal.THERMAL)[1]
    assert not torch.allclose(v, t)


def test_modal_accepts_plain_ints(net):
    net.eval()
    x = images(1)
    with torch.no_grad():
        torch.testing.assert_close(net(x, x, x, x, 2)[0], net(x, x, x, x, Modal.THERMAL)[0])
    with pytest.raises(ValueError):
        net(x, x, x, x, 3)


def test_split_and_merge_groups_are_inverse():
    x = torch.arange(8.0).view(8, 1)
    ori, mid = split_groups(x, Modal.BOTH)  # streams [v, v_mid, t, t_mid] of 2 rows
    assert ori.flatten().tolist() == [0, 1, 4, 5] and mid.flatten().tolist() == [2, 3, 6, 7]
    assert torch.equal(merge_groups(ori, mid, Modal.BOTH), x)
    ori, mid = split_groups(x, Modal.VISIBLE)
    assert ori.flatten().tolist() == [0, 1, 2, 3]
    assert torch.equal(merge_groups(ori, mid, Modal.VISIBLE), x)


def test_gather_channels_equals_a_plain_loop():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(5, 6, 4, 3, generator=g)
    index = torch.stack([torch.randperm(6, generator=g)[:3] for _ in range(5)])
    expected = torch.stack([torch.stack([x[b, c] for c in index[b]]) for b in range(5)])
    assert torch.equal(gather_channels(x, index), expected)


def test_release_se_is_constant_and_picks_topk_tie_order():
    se = SEnet(6, 16)
    assert se.fc[0].weight.shape == (0, 6) and se.fc[2].weight.shape == (6, 0)
    x = torch.randn(4, 6, 5, 5)
    out, top = se(x)
    torch.testing.assert_close(out, x * 0.5)
    # Whatever topk does with six equal weights on this device is what the release does.
    assert torch.equal(top, torch.topk(torch.full((4, 6), 0.5), 3, dim=1).indices)
    # ... and the choice, made once, holds for every later batch.
    assert se.channels == tuple(top[0].tolist())
    se.set_channels((5, 0, 2))
    assert se(x)[1].tolist() == [[5, 0, 2]] * 4


def test_working_se_learns_and_chooses_per_sample():
    torch.manual_seed(0)
    net = embed_net(10, working_se=True)
    assert net.SEnet.fc[0].weight.shape == (1, 6) and net.SEnet.fc[2].weight.shape == (6, 1)
    torch.nn.init.normal_(net.SEnet.fc[0].weight)
    torch.nn.init.normal_(net.SEnet.fc[2].weight)
    x6 = torch.randn(16, 6, 4, 4) * torch.linspace(-3, 3, 16)[:, None, None, None]
    out, top = net.SEnet(x6)
    assert len({tuple(t) for t in top.tolist()}) > 1      # not one fixed choice
    assert not torch.allclose(out, x6 * 0.5)
    net.train()
    x = images(2)
    pool, logits = net(x, x, x, x, Modal.BOTH)
    logits.sum().backward()
    assert net.SEnet.fc[0].weight.grad.abs().sum() > 0


def test_middle_modality_with_release_se_uses_channels_from_topk():
    net = embed_net(10)
    net.eval()
    x = images(2)
    with torch.no_grad():
        mid, same = net.middle_modality(x, x, Modal.VISIBLE)
    assert mid is same and mid.shape == (2, 3, H, W)
    # Recompute by hand: encode1 -> relu -> fc1 -> relu -> bn1 -> encode3 -> relu -> *0.5 -> channels.
    with torch.no_grad():
        y = net.bn1(torch.relu(net.fc1(torch.relu(net.encode1(x)))))
        y = torch.relu(net.encode3(y)) * 0.5
        top = torch.topk(torch.full((2, 6), 0.5), 3, dim=1).indices[0]
        expected = torch.relu(net.decode(y[:, top]))
    torch.testing.assert_close(mid, expected)


def test_mia_residual_shapes_follow_the_next_layer():
    mia = MIA(256, narrow=True)
    ori, mid = torch.randn(2, 256, 16, 8), torch.randn(2, 256, 16, 8)
    _, _, (r1, r2) = mia(ori, mid)
    assert r1.shape == r2.shape == (2, 512, 8, 4)
    assert not hasattr(MIA(1024, narrow=False), 'conv_narrow1')


def test_constructing_a_model_never_downloads(monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError('network used')
    monkeypatch.setattr(torch.hub, 'load_state_dict_from_url', no_network)
    embed_net(5)
    embed_net(5, pretrained='none')


# ----------------------------------------------------------------------------- speed options

def run_twice(net, x, modal):
    """Train-mode outputs, then gradients of a loss on them, then eval-mode outputs."""
    net.train()
    torch.manual_seed(0)   # the same dropout draws
    pool, logits = net(x, x, x, x, modal)
    (pool.square().mean() + logits.square().sum()).backward()
    grads = [p.grad for p in net.parameters() if p.grad is not None and p.numel()]
    net.eval()
    with torch.no_grad():
        return [pool.detach(), logits.detach()], grads, list(net(x, x, x, x, modal))


@pytest.mark.parametrize('modal', list(Modal))
def test_channels_last_gives_the_same_outputs(modal):
    """channels_last changes the kernels, not the function. In float64 train-mode outputs, every
    gradient (dropout included) and the eval features agree to 1e-7 relative (summation order; a
    real difference, such as another dropout mask, is ~1e-2), so the two formats compute the same
    thing; in float32 the eval features agree to rounding, as in the batch-independence test."""
    torch.manual_seed(3)
    x = images(2, seed=modal)
    for dtype, tol in ((torch.float64, dict(rtol=1e-7, atol=1e-9)), (torch.float32, dict(rtol=1e-4, atol=1e-5))):
        dense = embed_net(7).to(dtype)
        fast = embed_net(7).to(dtype)
        fast.load_state_dict(dense.state_dict())
        fast = fast.to(memory_format=torch.channels_last)
        assert fast.visible_module.visible.conv1.weight.is_contiguous(memory_format=torch.channels_last)
        plain = run_twice(dense, x.to(dtype), modal)
        ours = run_twice(fast, x.to(dtype).contiguous(memory_format=torch.channels_last), modal)
        checked = (0, 1, 2) if dtype == torch.float64 else (2,)
        for group in checked:
            assert len(plain[group]) == len(ours[group]) > 0
            for p, o in zip(plain[group], ours[group]):
                torch.testing.assert_close(o, p, **tol)


def test_release_se_channels_are_picked_once_and_can_be_set():
    net = embed_net(4)
    assert net.se_channels is None
    net.eval()
    x = images(2)
    with torch.no_grad():
        net(x, x, x, x, Modal.VISIBLE)
    # picked at the first run, from this device's topk order on the tie (3, 5, 4 on CPU)
    assert net.se_channels == tuple(torch.topk(torch.full((1, 6), 0.5), 3).indices[0].tolist())
    assert net.SEnet.fixed_channels.device == x.device
    assert 'SEnet.fixed_channels' not in net.state_dict()    # the release's keys stay as they are
    other = embed_net(4, se_channels=(0, 1, 2))
    torch.nn.init.normal_(net.encode3.weight)    # a fresh model's six channels are all the same
    other.load_state_dict(net.state_dict())
    other.eval()
    with torch.no_grad():
        y = other.bn1(torch.relu(other.fc1(torch.relu(other.encode1(x)))))
        y = torch.relu(other.encode3(y)) * 0.5
        expected = torch.relu(other.decode(y[:, [0, 1, 2]]))
        mid, _ = other.middle_modality(x, x, Modal.VISIBLE)
        torch.testing.assert_close(mid, expected)
        assert not torch.allclose(other(x, x, x, x, Modal.VISIBLE)[1], net(x, x, x, x, Modal.VISIBLE)[1])
    assert other.se_channels == (0, 1, 2)
    for bad in [(0, 1), (0, 0, 1), (0, 1, 6), (-1, 2, 3)]:
        with pytest.raises(ValueError, match='three distinct channel indices in 0..5'):
            embed_net(4, se_channels=bad)
    with pytest.raises(ValueError, match='release squeeze-excitation only'):
        embed_net(4, working_se=True, se_channels=(0, 1, 2))
    assert embed_net(4, working_se=True).se_channels is None


def test_dropout_drops_the_same_elements_in_both_memory_formats():
    x = torch.randn(2, 8, 5, 3)
    layer = Dropout(0.3)
    assert isinstance(layer, torch.nn.Dropout)
    torch.manual_seed(4)
    dense = torch.nn.functional.dropout(x, 0.3)
    torch.manual_seed(4)
    fast = layer(x.contiguous(memory_format=torch.channels_last))
    assert fast.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(fast, dense)
    layer.eval()
    assert torch.equal(layer(x), x)


@pytest.mark.parametrize('size', [(4, 2), (3, 2), (8, 4), (5, 9), (24, 12)])
@pytest.mark.parametrize('d', [1, 2, 3, 4, 5, 6, 7, 8])
def test_dilated_conv_without_padding_only_taps_is_the_same_function(size, d):
    """Leaving out the kernel taps that only see zero padding changes nothing: outputs and the input
    and weight gradients equal the full convolution's (float64, summation order aside)."""
    torch.manual_seed(d)
    conv = torch.nn.Conv2d(6, 5, 3, padding=d, dilation=d, bias=False).double()
    x = torch.randn(2, 6, *size, dtype=torch.float64, requires_grad=True)
    full = conv(x)
    grads_full = torch.autograd.grad((full * full.detach().sin()).sum(), (x, conv.weight))
    fast = dilated_conv(conv, x)
    grads_fast = torch.autograd.grad((fast * full.detach().sin()).sum(), (x, conv.weight))
    torch.testing.assert_close(fast, full, rtol=1e-12, atol=1e-12)
    for a, b in zip(grads_fast, grads_full):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
