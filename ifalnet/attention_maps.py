"""Attention maps of IFALNet for `visualize.py attention`: the spatial attention of each MIA's CBAM
(for the original and the middle-modality branch) and the layer-4 feature energy, read with forward
hooks during one test-mode forward pass, and their overlays on the images.

The network's own switches are followed where it has them (`net.architecture()`: which MIAs exist,
whether there is a middle modality); otherwise every MIA1..MIA3 the network holds is read, with the
middle branch. The feature energy is the sum of squared activations over channels (as torchreid's
activation maps), upsampled to the tile and min-max scaled per tile; the spatial attention is a
sigmoid, shown on its own fixed scale 0..1.
"""
import numpy as np
import torch
from PIL import Image
from torch.nn import functional as F

from model import Modal

GROUPS = ('original', 'middle')   # the order in which each MIA calls its spatial attention
OVERLAY_ALPHA = 0.5               # weight of the heat map over the image


def architecture(net):
    """{'middle': bool, 'mia': [MIA numbers]} of `net`: its own `architecture()` where it has one,
    else every MIA1..MIA3 it holds, with the middle modality."""
    own = getattr(net, 'architecture', None)
    if own is not None:
        arch = own()
        return {'middle': bool(arch['middle']), 'mia': [int(i) for i in arch['mia']]}
    return {'middle': True, 'mia': [i for i in (1, 2, 3) if getattr(net, f'MIA{i}', None) is not None]}


def layer4(net):
    """The body's layer 4 (`base_resnet.layer4`, or `base_resnet.base.layer4` where the body keeps its
    layers in a dict)."""
    for name in ('base_resnet.layer4', 'base_resnet.base.layer4'):
        try:
            return net.get_submodule(name)
        except AttributeError:
            continue
    raise AttributeError('the network has no base_resnet.layer4')


def attention_maps(net, x, modal):
    """One test-mode forward of the batch `x` (B, 3, H, W) through branch `modal`. Returns
    {'spatial': {(mia, group): (B, h, w)}, 'energy': {group: (B, h', w')}, 'middle': (B, 3, H, W) or
    None}, float32 on the CPU; group is 'original' or 'middle' (only 'original' without the middle
    modality), mia the MIA's number."""
    modal = Modal(modal)
    arch = architecture(net)
    groups = GROUPS if arch['middle'] else GROUPS[:1]
    spatial, body = {i: [] for i in arch['mia']}, []
    hooks = [getattr(net, f'MIA{i}').CBAM_ori.sa.register_forward_hook(
        lambda module, inputs, output, i=i: spatial[i].append(output.detach().float().cpu()[:, 0]))
        for i in arch['mia']]
    hooks.append(layer4(net).register_forward_hook(lambda module, inputs, output: body.append(output.detach().float())))
    net.eval()
    try:
        with torch.no_grad():
            net(x, x, x, x, modal)
            middle = net.middle_modality(x, x, modal)[0].float().cpu() if arch['middle'] else None
    finally:
        for hook in hooks:
            hook.remove()
    for i, calls in spatial.items():
        if len(calls) != len(groups):
            raise RuntimeError(f'MIA{i} applied its spatial attention {len(calls)} times in one forward; '
                               f'expected {len(groups)} (one per branch)')
    energy = body[0].pow(2).sum(dim=1).cpu().chunk(len(groups))       # (B, h, w) per group
    return {'spatial': {(i, g): calls[k] for i, calls in spatial.items() for k, g in enumerate(groups)},
            'energy': dict(zip(groups, energy)), 'middle': middle}


def upsample(amap, size):
    """A (h, w) map bilinearly resized to `size` (width, height) as a float64 array."""
    resized = F.interpolate(amap[None, None].double(), size=(size[1], size[0]), mode='bilinear', align_corners=False)
    return resized[0, 0].numpy()


def min_max(values):
    low, high = values.min(), values.max()
    return (values - low) / (high - low) if high > low else np.zeros_like(values)


def overlay(tile, values, colormap):
    """`tile` (PIL RGB) under the colours of `values` (an array of the tile's size, in 0..1) from the
    matplotlib `colormap`, blended OVERLAY_ALPHA of the colours."""
    heat = colormap(np.clip(values, 0, 1))[..., :3] * 255                 # (h, w, 3)
    blend = (1 - OVERLAY_ALPHA) * np.asarray(tile, dtype=np.float64) + OVERLAY_ALPHA * heat
    return Image.fromarray(blend.round().astype(np.uint8))


def scaled_image(image):
    """A (3, H, W) tensor min-max scaled to an RGB PIL image (as the middle-modality images are shown)."""
    low, high = image.min(), image.max()
    scaled = (image - low) / (high - low) if high > low else torch.zeros_like(image)
    return Image.fromarray((scaled.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))


def attention_tiles(inputs, maps, size, colormap):
    """Per image: [(tile, caption lines)]: the image, its middle-modality image, then for each MIA
    its spatial attention over the original image and over the middle image (fixed scale 0..1),
    then the layer-4 energy of each branch (min-max scaled). `inputs`: the network inputs (PIL),
    `maps`: `attention_maps`' output, `size`: the tile's (width, height)."""
    groups = list(maps['energy'])
    rows = []
    for b, image in enumerate(inputs):
        base = {'original': image.resize(size, Image.Resampling.NEAREST)}
        row = [(base['original'], None)]
        if maps['middle'] is not None:
            base['middle'] = scaled_image(maps['middle'][b]).resize(size, Image.Resampling.NEAREST)
            row.append((base['middle'], ['middle', 'image']))
        for (i, group), amap in maps['spatial'].items():
            row.append((overlay(base[group], upsample(amap[b], size), colormap), [f'MIA{i} spatial', group]))
        for group in groups:
            values = min_max(upsample(maps['energy'][group][b], size))
            row.append((overlay(base[group], values, colormap), ['energy', group]))
        rows.append(row)
    return rows
