"""ResNet-50 pieces for IFALNet, built from torchvision's ResNet-50.

The network uses four separate stems (conv1, bn1, relu, maxpool) and one shared body (layer1..4).
Both come from torchvision's `resnet50`, so parameter names follow torchvision and ImageNet weights
load by name. Nothing here touches the network unless `imagenet_state_dict('imagenet')` is called.
"""
import os

import torch
from torch import nn
from torchvision.models import ResNet50_Weights, resnet50

from utils import ReIDError, load_failure

IMAGENET_WEIGHTS = ResNet50_Weights.IMAGENET1K_V1  # the weights the release started from
BODY_LAYERS = ('layer1', 'layer2', 'layer3', 'layer4')


class Stem(nn.Module):
    """ResNet stem: conv1 -> bn1 -> relu -> maxpool; (B, 3, H, W) -> (B, 64, H/4, W/4)."""

    def __init__(self):
        super().__init__()
        # torchvision's ResNet stem and its initialisation, without building a whole ResNet-50.
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        nn.init.kaiming_normal_(self.conv1.weight, mode='fan_out', nonlinearity='relu')

    def forward(self, x):
        return self.maxpool(self.relu(self.bn1(self.conv1(x))))


class NamedStem(nn.Module):
    """A stem stored under the attribute name the release's checkpoints use
    (`visible_module.visible.conv1.weight`, `thermal_moduleA.thermal.bn1.bias`, ...)."""

    def __init__(self, name):
        super().__init__()
        self.name = name
        self.add_module(name, Stem())

    def forward(self, x):
        return getattr(self, self.name)(x)


class ResNetBody(nn.Module):
    """layer1..layer4 of a ResNet-50 with the last stride set to 1 (keys `base.layerN...`)."""

    def __init__(self, last_stride=1):
        super().__init__()
        tv = resnet50(weights=None)
        # torchvision puts the stride on the 3x3 conv of the first bottleneck and on its downsample.
        tv.layer4[0].conv2.stride = (last_stride, last_stride)
        tv.layer4[0].downsample[0].stride = (last_stride, last_stride)
        self.base = nn.ModuleDict({name: getattr(tv, name) for name in BODY_LAYERS})

    def layer(self, i, x):
        """Run layer `i` (1..4)."""
        return self.base[BODY_LAYERS[i - 1]](x)


def imagenet_state_dict(source):
    """torchvision ResNet-50 ImageNet weights: `source` is 'imagenet' (torch hub cache, downloaded
    when missing) or the path of a local copy of that file."""
    if source != 'imagenet':
        if not os.path.isfile(source):
            raise ReIDError(f'ImageNet weights file not found: {source} '
                            f'(expected a torchvision ResNet-50 state_dict such as '
                            f'{os.path.basename(IMAGENET_WEIGHTS.url)})')
        try:
            state = torch.load(source, map_location='cpu', weights_only=True)
        except Exception as err:
            raise ReIDError(f'cannot read ImageNet weights from {source}: {load_failure(err, "weights")}') from err
        return state.get('state_dict', state) if isinstance(state, dict) else state
    cached = os.path.join(torch.hub.get_dir(), 'checkpoints', os.path.basename(IMAGENET_WEIGHTS.url))
    try:
        return IMAGENET_WEIGHTS.get_state_dict(progress=True, check_hash=True)
    except Exception as err:  # offline, proxy, truncated download ...
        raise ReIDError(
            f'could not get the ImageNet ResNet-50 weights ({err}). Download {IMAGENET_WEIGHTS.url} '
            f'on a machine with internet access and put it at {cached}, or pass '
            f'--pretrained /path/to/{os.path.basename(IMAGENET_WEIGHTS.url)}, '
            f'or --pretrained none to train from scratch') from err


def load_imagenet(stems, body, state, source='imagenet'):
    """Copy ImageNet weights into every `Stem` (conv1, bn1) and the `ResNetBody` (layer1..4)."""
    def part(prefixes):
        return {k: v for k, v in state.items() if k.split('.')[0] in prefixes}

    targets = [(stem, part(('conv1', 'bn1'))) for stem in stems] + [(body.base, part(BODY_LAYERS))]
    for module, weights in targets:
        try:
            module.load_state_dict(weights, strict=True)
        except RuntimeError as err:
            raise ReIDError(f'{source} does not hold torchvision ResNet-50 weights: {err}') from err
