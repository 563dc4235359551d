"""IFALNet: middle-modality generation, modality interactive attention (MIA) and multi-scale feature
aggregation (MFA) on a ResNet-50 with four stems; each component can be switched off for ablations
(`embed_net(..., middle, mia, mfa)`; the switches are one record, `Architecture`, which checkpoints
store as `embed_net.architecture()`).

Parameter names follow the release's checkpoints (tests/golden/release_checkpoint_keys.txt) for every
weight the forward pass uses, so release checkpoints load into this model; the ~110M parameters the
release stores but never uses are not created (loading a release checkpoint drops them).
"""
import warnings
from dataclasses import dataclass
from enum import IntEnum

import torch
from torch import nn
from torch.nn import functional as F

from resnet import NamedStem, ResNetBody, imagenet_state_dict, load_imagenet


class Modal(IntEnum):
    """What the four inputs of `embed_net.forward` hold."""
    BOTH = 0      # training: visible and thermal batches, each with its middle-modality copy
    VISIBLE = 1   # test: one visible batch (passed in every slot)
    THERMAL = 2   # test: one thermal/infrared batch (passed in every slot)

    @classmethod
    def named(cls, name):
        """The branch of a modality name: 'visible', or 'thermal' (the infrared branch of every dataset)."""
        return cls[name.upper()]


def l2norm(x):
    # The release's Normalize(power=2): no epsilon, so the numbers match to the last bit.
    return x.div(x.pow(2).sum(1, keepdim=True).pow(0.5))


# ----------------------------------------------------------------------------- middle modality
class SEnet(nn.Module):
    """Squeeze-excitation over the generator's 6 channels; also returns the top-3 channel indices.

    Release quirk: with reduction 16 the hidden width is 6 // 16 = 0, every weight is sigmoid(0) =
    0.5 and the "top 3" channels are whatever torch.topk's tie-breaking returns (3, 5, 4 on CPU).
    PyTorch documents that order as unstable (CPU and CUDA may differ), so this variant picks its
    three channels once, by default the topk tie order of the device it first runs on, and uses them
    for every sample; `set_channels` fixes them (from a checkpoint, or by hand). `hidden=None` keeps
    the release's shapes; a positive width gives a squeeze-excitation that learns which channels to
    keep, per sample.
    """

    def __init__(self, channels=6, reduction=16, hidden=None):
        super().__init__()
        hidden = channels // reduction if hidden is None else hidden
        with warnings.catch_warnings():  # a zero-width Linear warns that its init is a no-op
            warnings.filterwarnings('ignore', message='Initializing zero-element tensors')
            self.fc = nn.Sequential(nn.Linear(channels, hidden, bias=False), nn.ReLU(inplace=True),
                                    nn.Linear(hidden, channels, bias=False), nn.Sigmoid())
        # The release variant's fixed channels; not a state_dict entry, so the keys stay the release's.
        self.register_buffer('fixed_channels', None, persistent=False)

    @property
    def constant(self):
        """True for the release's zero-width variant (every weight 0.5)."""
        return self.fc[0].out_features == 0

    @property
    def channels(self):
        """The release variant's three channels as a tuple, or None until they are picked."""
        return None if self.fixed_channels is None else tuple(self.fixed_channels.tolist())

    def set_channels(self, channels=None, device=None):
        """Fix the release variant's channels: `channels` (three distinct indices in 0..5) or, if
        None, the topk tie order of `device` (default: where the module's weights are)."""
        if not self.constant:
            raise ValueError('fixed channels apply to the release squeeze-excitation only; '
                             'the working one picks its channels per sample')
        n = self.fc[0].in_features
        if device is None:
            device = self.fc[0].weight.device
        if channels is None:
            channels = torch.topk(torch.full((1, n), 0.5, device=device), 3, dim=1).indices[0].tolist()
        channels = tuple(int(c) for c in channels)
        if len(channels) != 3 or len(set(channels)) != 3 or not all(0 <= c < n for c in channels):
            raise ValueError(f'expected three distinct channel indices in 0..{n - 1}, got {channels}')
        self.fixed_channels = torch.tensor(channels, dtype=torch.long, device=device)
        return channels

    def forward(self, x):                                   # (B, 6, H, W)
        w = self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))  # (B, 6)
        if self.constant:
            if self.fixed_channels is None:
                self.set_channels(device=x.device)
            top = self.fixed_channels.expand(x.shape[0], 3)  # (B, 3), the same for every sample
        else:
            top = torch.topk(w, 3, dim=1).indices           # (B, 3), in topk's order
        return x * w[:, :, None, None], top


def gather_channels(x, index):
    """Per sample, the channels `index[b]` of `x[b]`, in that order: (B, C, H, W), (B, k) -> (B, k, H, W)."""
    return torch.gather(x, 1, index[:, :, None, None].expand(-1, -1, x.shape[2], x.shape[3]))


# ----------------------------------------------------------------------------- MIA
class ChannelAttention(nn.Module):
    def __init__(self, channels, ratio=16):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, channels // ratio, 1, bias=False)
        self.fc2 = nn.Conv2d(channels // ratio, channels, 1, bias=False)

    def forward(self, x):                                   # (B, C, H, W) -> (B, C, 1, 1)
        mlp = lambda d: self.fc2(F.relu(self.fc1(d)))
        return torch.sigmoid(mlp(F.adaptive_avg_pool2d(x, 1)) + mlp(F.adaptive_max_pool2d(x, 1)))


class SpatialAttention(nn.Module):
    def __init__(self, kernel_size=7):
        super().__init__()
        self.conv1 = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)

    def forward(self, x):                                   # (B, C, H, W) -> (B, 1, H, W)
        pooled = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return torch.sigmoid(self.conv1(pooled))


class CBAM(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.ca = ChannelAttention(channels)
        self.sa = SpatialAttention()

    def forward(self, x):
        x = x * self.ca(x)
        return x * self.sa(x)


class MIA(nn.Module):
    """Modality interactive attention after a body layer: one CBAM shared by the original and the
    middle group (applied to each group on its own, as the release does), plus the cross-layer
    residual `x + 0.2 * conv_narrow(previous MIA output)` carried per group to the next MIA."""

    def __init__(self, channels, narrow):
        super().__init__()
        self.CBAM_ori = CBAM(channels)
        self.narrow = narrow
        if narrow:  # (B, C, H, W) -> (B, 2C, ceil(H/2), ceil(W/2)): the next layer's shape
            make = lambda: nn.Conv2d(channels, 2 * channels, kernel_size=2, stride=2, padding=1, dilation=2)
            self.conv_narrow1, self.conv_narrow2 = make(), make()

    def forward(self, ori, mid, residual=None):
        """Returns the attended groups and the residual for the next MIA (None if `narrow` is off).
        `mid=None` (a network without the middle modality): the original group alone, mid None."""
        if residual is not None:
            ori = ori + 0.2 * residual[0]
            mid = None if mid is None else mid + 0.2 * residual[1]
        ori = self.CBAM_ori(ori)
        mid = None if mid is None else self.CBAM_ori(mid)
        if not self.narrow:
            return ori, mid, None
        return ori, mid, (self.conv_narrow1(ori), None if mid is None else self.conv_narrow2(mid))


# ----------------------------------------------------------------------------- MFA
def dilated_conv(conv, x):
    """`conv(x)` for a bias-free 3x3 conv with dilation = padding = d, without the kernel taps that
    only ever see the zero padding: when d >= the map's height (width), the off-centre rows
    (columns) of the kernel never touch the image, so they add exactly zero and get zero gradient.
    The same function, cheaper on small maps (layer3's is 4x2 for 64x32 images); at 384x192 (24x12)
    every tap is used and this is `conv(x)` itself."""
    d = conv.dilation[0]
    rows, cols = d < x.shape[2], d < x.shape[3]
    if rows and cols:
        return conv(x)
    weight = conv.weight[:, :, slice(None) if rows else slice(1, 2), slice(None) if cols else slice(1, 2)]
    return F.conv2d(x, weight, padding=(d if rows else 0, d if cols else 0),
                    dilation=(d if rows else 1, d if cols else 1))


class Dropout(nn.Dropout):
    """nn.Dropout that draws its mask in the tensor's logical order whatever its memory format.

    nn.Dropout fills the mask in memory order, so a channels_last run would drop other elements
    than a contiguous one from the same seed; this one drops the same (on the CPU, bit for bit what
    nn.Dropout does to the contiguous tensor)."""

    def forward(self, x):
        if not self.training or self.p == 0 or x.is_contiguous():
            return super().forward(x)
        return super().forward(x.contiguous()).contiguous(memory_format=torch.channels_last)


class MFA(nn.Module):
    """Multi-scale feature aggregation after layer3's MIA: two dilated-conv branches blended by a
    learned gate, (B, C, H, W) -> (B, C, H, W)."""

    def __init__(self, channels=1024, dropout=0.01):
        super().__init__()
        quarter, half = channels // 4, channels // 2
        dilated = lambda d: nn.Conv2d(channels, quarter, 3, padding=d, dilation=d, bias=False)
        for i, d in enumerate((1, 3, 5, 7), start=1):
            setattr(self, f'FC1{i}', dilated(d))
        for i, d in enumerate((2, 4, 6, 8), start=1):
            setattr(self, f'FC2{i}', dilated(d))
        self.FC1 = nn.Conv2d(quarter, half, 1)              # shared by both branches
        self.FC2 = nn.Conv2d(channels, half, 1)
        self.dropout = Dropout(dropout)
        self.conv_o = nn.Sequential(nn.Conv2d(half, channels, 1, bias=False), nn.BatchNorm2d(channels))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode='fan_in')
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def branch(self, x, convs):
        c = [dilated_conv(conv, x) for conv in convs]
        mean = (c[0] + c[1] + c[2] + c[3]) / 4                               # (B, C/4, H, W)
        return self.dropout(self.FC1(F.relu(mean)))                          # (B, C/2, H, W)

    def forward(self, x):
        a = self.branch(x, [self.FC11, self.FC12, self.FC13, self.FC14])
        b = self.branch(x, [self.FC21, self.FC22, self.FC23, self.FC24])
        gate_in = self.FC2(x)
        att = torch.sigmoid(gate_in)
        return self.conv_o((1 - att) * a + gate_in + att * b)


# ----------------------------------------------------------------------------- network
def split_groups(x, modal, middle=True):
    """Batch in stream order -> (original group, middle group).
    BOTH: [v, v_mid, t, t_mid] -> ([v; t], [v_mid; t_mid]); one modality: [x, x_mid] -> (x, x_mid).
    Without the middle modality the batch is the original group: x -> (x, None)."""
    if not middle:
        return x, None
    if modal == Modal.BOTH:
        v, v_mid, t, t_mid = x.chunk(4)
        return torch.cat([v, t]), torch.cat([v_mid, t_mid])
    return x.chunk(2)


def merge_groups(ori, mid, modal):
    """Inverse of `split_groups`."""
    if mid is None:
        return ori
    if modal == Modal.BOTH:
        (v, t), (v_mid, t_mid) = ori.chunk(2), mid.chunk(2)
        return torch.cat([v, v_mid, t, t_mid])
    return torch.cat([ori, mid])


MIA_LAYERS = (1, 2, 3)      # the body layers that can have a MIA after them (layer4 has none)
MIA_CHANNELS = {1: 256, 2: 512, 3: 1024}


@dataclass(frozen=True)
class Architecture:
    """The component switches of the network, one record (as nanoGPT's GPTConfig): checkpoints store
    it (`as_dict()`, under 'architecture'), the network is rebuilt from it, and flags, run names,
    test.py, the figures and export read it. The defaults are the release's network.

    - `middle`: the middle-modality generator and its two stems (False: the two-stream baseline);
    - `mia`: the body layers followed by a MIA, any subset of 1, 2, 3 (stored sorted);
    - `mfa`: the multi-scale feature aggregation after layer3.
    """
    middle: bool = True
    mia: tuple = MIA_LAYERS
    mfa: bool = True

    def __post_init__(self):
        given = list(self.mia)
        try:
            layers = tuple(sorted({int(i) for i in given}))
        except (TypeError, ValueError):
            layers = None
        if layers is None or any(i not in MIA_LAYERS for i in layers) or len(layers) != len(given):
            raise ValueError(f'mia: expected distinct body layers among 1, 2, 3, got {given}')
        object.__setattr__(self, 'mia', layers)
        object.__setattr__(self, 'middle', bool(self.middle))
        object.__setattr__(self, 'mfa', bool(self.mfa))

    @classmethod
    def from_dict(cls, stored):
        """The record of a checkpoint's 'architecture' entry; None (a release checkpoint, an older one)
        is the full network. Raises ValueError for an entry that is not one `as_dict` writes."""
        if stored is None:
            return cls()
        try:
            return cls(stored['middle'], tuple(stored['mia']), stored['mfa'])
        except (KeyError, TypeError) as err:
            raise ValueError(f'not an architecture record: {stored!r}') from err

    def as_dict(self):
        """As checkpoints store it: {'middle': bool, 'mia': [layers], 'mfa': bool}."""
        return {'middle': self.middle, 'mia': list(self.mia), 'mfa': self.mfa}

    def run_name_part(self):
        """The switches that differ from the release's, as run names spell them: '_nomiddle_mia_1_3_nomfa'."""
        parts = ['nomiddle'] if not self.middle else []
        if self.mia != MIA_LAYERS:
            parts.append('mia_' + ('_'.join(map(str, self.mia)) or 'none'))
        parts += ['nomfa'] if not self.mfa else []
        return ''.join(f'_{p}' for p in parts)

    def describe(self):
        """In words: 'two-stream baseline (no middle modality), MIA after layers 1, 3, no MFA'."""
        mia = (f'MIA after layer{"s" if len(self.mia) > 1 else ""} {", ".join(map(str, self.mia))}' if self.mia
               else 'no MIA')
        return ', '.join(['middle modality' if self.middle else 'two-stream baseline (no middle modality)', mia,
                          'MFA' if self.mfa else 'no MFA'])


class embed_net(nn.Module):
    """IFALNet. `forward(x1_1, x1_2, x2_1, x2_2, modal)`:
    - Modal.BOTH (training): x1_1, x1_2 are two views of a visible batch, x2_1, x2_2 of a thermal
      batch (B each); the second view of each makes the middle modality. Train mode returns
      (pool features (4B, 2048), logits (4B, class_num)) in stream order [v, v_mid, t, t_mid].
    - Modal.VISIBLE / Modal.THERMAL: the same batch in every slot. Eval mode returns the
      l2-normalised (pool, bn) features, each (2B, 2048) as [original; middle].

    `working_se=True` gives the squeeze-excitation a hidden width of 1 instead of the release's 0
    (different checkpoint shapes). `se_channels` fixes the release squeeze-excitation's three
    channels (default: the topk tie order of the device the model first runs on; see SEnet).
    `pretrained`: None/'none', 'imagenet' or a path to
    torchvision's ResNet-50 ImageNet weights file.

    Component switches (the defaults are the release's network; `architecture()` says which are on):
    - `middle=False`: no middle-modality generator and no middle stems (`*_moduleA`): the two-stream
      baseline of AGW (visible and thermal stems, shared body, BN neck). The streams are [v, t]
      (training: pool (2B, 2048), logits (2B, class_num)); eval mode gives the original features
      only, (B, 2048) each; a MIA attends the original group alone. The second views are unused.
    - `mia`: the body layers followed by a MIA (any subset of 1, 2, 3); the cross-layer residual
      runs only between MIAs of consecutive layers (so a MIA has `conv_narrow1/2` only when the
      next layer has a MIA too). A MIA that is off is not created.
    - `mfa=False`: no MFA after layer3 (not created).
    """

    def __init__(self, class_num, arch='resnet50', pretrained=None, working_se=False, last_stride=1,
                 se_channels=None, middle=True, mia=MIA_LAYERS, mfa=True):
        super().__init__()
        if arch != 'resnet50':
            raise ValueError(f"arch {arch!r} is not supported: IFALNet is defined on 'resnet50'")
        self.config = Architecture(middle, tuple(mia), mfa)
        self.middle, self.mia_layers, self.mfa = self.config.middle, self.config.mia, self.config.mfa
        if self.middle:
            # Middle-modality generator (pixel level). Top-level names as in the release's checkpoints.
            self.encode1, self.fc1, self.bn1 = nn.Conv2d(3, 1, 1), nn.Conv2d(1, 1, 1), nn.BatchNorm2d(1)
            self.encode2, self.fc2, self.bn2 = nn.Conv2d(3, 1, 1), nn.Conv2d(1, 1, 1), nn.BatchNorm2d(1)
            self.encode3 = nn.Conv2d(1, 6, 1)
            self.SEnet = SEnet(6, 16, hidden=1 if working_se else None)
            if se_channels is not None:
                self.SEnet.set_channels(se_channels)
            self.decode = nn.Conv2d(3, 3, 1)
            for conv in (self.encode1, self.fc1, self.encode2, self.fc2, self.encode3, self.decode):
                nn.init.constant_(conv.weight, 0.333)
                nn.init.zeros_(conv.bias)

        self.visible_module = NamedStem('visible')
        if self.middle:
            self.visible_moduleA = NamedStem('visible')      # visible-middle
        self.thermal_module = NamedStem('thermal')
        if self.middle:
            self.thermal_moduleA = NamedStem('thermal')      # thermal-middle
        self.base_resnet = ResNetBody(last_stride)

        for i in self.mia_layers:   # the residual feeds the next layer's MIA only
            setattr(self, f'MIA{i}', MIA(MIA_CHANNELS[i], narrow=i + 1 in self.mia_layers))
        if self.mfa:
            self.MFA = MFA(1024)

        self.bottleneck = nn.BatchNorm1d(2048)
        self.bottleneck.bias.requires_grad_(False)       # BN neck without shift, as in AGW
        nn.init.normal_(self.bottleneck.weight, 1.0, 0.01)
        nn.init.zeros_(self.bottleneck.bias)
        self.classifier = nn.Linear(2048, class_num, bias=False)
        nn.init.normal_(self.classifier.weight, 0, 0.001)

        if pretrained not in (None, 'none'):
            stems = [m.get_submodule(m.name) for m in self.stems()]
            load_imagenet(stems, self.base_resnet, imagenet_state_dict(pretrained), pretrained)

    def architecture(self):
        """The component switches, as stored in checkpoints: {'middle', 'mia', 'mfa'} (see Architecture)."""
        return self.config.as_dict()

    @property
    def se_channels(self):
        """The middle-modality channels of the release squeeze-excitation (None: not picked yet, the
        working variant, which picks per sample, or no middle modality)."""
        return self.SEnet.channels if self.middle else None

    def stems(self):
        if not self.middle:
            return [self.visible_module, self.thermal_module]
        return [self.visible_module, self.visible_moduleA, self.thermal_module, self.thermal_moduleA]

    def middle_modality(self, x_v, x_t, modal):
        """Visible and/or thermal images -> their middle-modality images (3 channels, same size).
        Arguments of the modality not in use are ignored."""
        if not self.middle:
            raise ValueError('this network has no middle modality (built with middle=False)')
        encode = lambda x, enc, fc, bn: bn(F.relu(fc(F.relu(enc(x)))))          # (B, 1, H, W)
        parts = []
        if modal in (Modal.BOTH, Modal.VISIBLE):
            parts.append(encode(x_v, self.encode1, self.fc1, self.bn1))
        if modal in (Modal.BOTH, Modal.THERMAL):
            parts.append(encode(x_t, self.encode2, self.fc2, self.bn2))
        x = F.relu(self.encode3(torch.cat(parts)))                               # (n, 6, H, W)
        x, top = self.SEnet(x)
        x = F.relu(self.decode(gather_channels(x, top)))                         # (n, 3, H, W)
        return x.chunk(2) if modal == Modal.BOTH else (x, x)

    def stem_features(self, x1_1, x1_2, x2_1, x2_2, modal):
        """The stems' outputs in stream order: (N, 64, H/4, W/4)."""
        if not self.middle:
            if modal == Modal.BOTH:
                return torch.cat([self.visible_module(x1_1), self.thermal_module(x2_1)])
            return self.visible_module(x1_1) if modal == Modal.VISIBLE else self.thermal_module(x2_1)
        v_mid, t_mid = self.middle_modality(x1_2, x2_2, modal)
        if modal == Modal.BOTH:
            return torch.cat([self.visible_module(x1_1), self.visible_moduleA(v_mid),
                              self.thermal_module(x2_1), self.thermal_moduleA(t_mid)])
        if modal == Modal.VISIBLE:
            return torch.cat([self.visible_module(x1_1), self.visible_moduleA(v_mid)])
        return torch.cat([self.thermal_module(x2_1), self.thermal_moduleA(t_mid)])

    def forward(self, x1_1, x1_2, x2_1, x2_2, modal=Modal.BOTH):
        modal = Modal(modal)
        x = self.stem_features(x1_1, x1_2, x2_1, x2_2, modal)                  # (N, 64, H/4, W/4)

        residual = None
        for i in MIA_LAYERS:
            x = self.base_resnet.layer(i, x)
            if i in self.mia_layers:
                ori, mid, residual = getattr(self, f'MIA{i}')(*split_groups(x, modal, self.middle), residual)
                x = merge_groups(ori, mid, modal)
        if self.mfa:
            x = self.MFA(x)                                                      # (N, 1024, H/16, W/16)
        x = self.base_resnet.layer(4, x)                                         # (N, 2048, H/16, W/16)

        # The head runs in its weights' precision (float32) even under mixed precision: features
        # rounded to bfloat16 lose enough to reorder rankings (the demo model's Rank-1 fell from
        # 27.8% to 16.4% on the CPU). Without autocast this changes nothing.
        with torch.autocast(x.device.type, enabled=False):
            x = x.to(self.bottleneck.weight.dtype)
            x_pool = F.adaptive_avg_pool2d(x, 1).flatten(1)                     # (N, 2048)
            feat = self.bottleneck(x_pool)
            if self.training:
                return x_pool, self.classifier(feat)
            return l2norm(x_pool), l2norm(feat)
