"""resnet.py: the ImageNet start from a local file, offline, missing or wrong."""
import os

import pytest
import torch
from torchvision.models import resnet50

from model import embed_net
from utils import ReIDError


@pytest.fixture(scope='module')
def net():
    torch.manual_seed(0)
    return embed_net(395)


# ----------------------------------------------------------------------------- ImageNet weights
def test_imagenet_weights_from_a_local_file(tmp_path):
    torch.manual_seed(3)
    tv = resnet50(weights=None)
    path = tmp_path / 'resnet50-0676ba61.pth'
    torch.save(tv.state_dict(), path)
    net = embed_net(7, pretrained=str(path))
    for stem in ('visible_module.visible', 'visible_moduleA.visible',
                 'thermal_module.thermal', 'thermal_moduleA.thermal'):
        assert torch.equal(net.state_dict()[f'{stem}.conv1.weight'], tv.conv1.weight)
        assert torch.equal(net.state_dict()[f'{stem}.bn1.running_var'], tv.bn1.running_var)
    assert torch.equal(net.state_dict()['base_resnet.base.layer3.2.conv2.weight'], tv.layer3[2].conv2.weight)
    # the last stride stays 1 after loading
    assert net.base_resnet.base['layer4'][0].conv2.stride == (1, 1)


def test_imagenet_weights_offline_says_where_to_put_the_file(monkeypatch, tmp_path):
    def offline(*args, **kwargs):
        raise OSError('Name or service not known')
    monkeypatch.setattr(torch.hub, 'load_state_dict_from_url', offline)
    monkeypatch.setattr(torch.hub, 'get_dir', lambda: str(tmp_path / 'hub'))
    with pytest.raises(ReIDError) as err:
        embed_net(5, pretrained='imagenet')
    msg = str(err.value)
    assert os.path.join(str(tmp_path / 'hub'), 'checkpoints', 'resnet50-0676ba61.pth') in msg
    assert '--pretrained' in msg


def test_imagenet_weights_file_missing_or_wrong(tmp_path):
    with pytest.raises(ReIDError, match='not found: .*nothere.pth'):
        embed_net(5, pretrained=str(tmp_path / 'nothere.pth'))
    bad = tmp_path / 'bad.pth'
    torch.save({'conv1.weight': torch.zeros(3)}, bad)
    with pytest.raises(ReIDError, match='bad.pth does not hold torchvision ResNet-50 weights'):
        embed_net(5, pretrained=str(bad))
