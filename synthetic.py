"""Small synthetic datasets in the real on-disk layouts of SYSU-MM01, RegDB and LLCM.

The real datasets are licensed, so tests and the demo run on these. Each identity has its own
appearance (horizontal clothing bands and a patch, with identity-specific layout and shades); the
infrared rendering keeps the same layout in gray levels that are not the colours' luminance, so an
identity is recognisable across modalities by its structure only. `render_identity` holds all of
the image content, so it can be tuned without touching the layouts.

    python synthetic.py --dataset sysu --out demo_work/SYSU-MM01 --ids 12
"""
import argparse
import os

import numpy as np
from PIL import Image

from utils import ReIDError, run_main

SYSU_CAMERAS = {'visible': (1, 2, 4, 5), 'infrared': (3, 6)}
LLCM_CAMERAS = {'vis': (1, 2, 3, 4, 5, 6, 7, 8, 9), 'nir': (1, 2, 4, 5, 6, 7, 8, 9)}


def identity_look(pid):
    """The fixed appearance of identity `pid`: band edges, colours and infrared gray levels."""
    look = np.random.default_rng([7919, pid])
    n_bands = int(look.integers(3, 6))
    return {
        'edges': np.sort(look.uniform(0.1, 0.95, n_bands - 1)),   # band boundaries, fraction of height
        'colors': look.uniform(20, 235, (n_bands, 3)),
        'grays': look.uniform(30, 225, n_bands),                  # independent of the colours
        'width': look.uniform(0.45, 0.8),                         # body width, fraction of image width
        'patch': look.uniform(0.15, 0.75, 2),                     # patch centre (y, x)
        'patch_color': look.uniform(20, 235, 3),
        'patch_gray': look.uniform(30, 225),
    }


def render_identity(pid, modality, rng, size):
    """One image of identity `pid` as an RGB PIL image of `size` (h, w).

    `modality` is 'visible' or 'infrared'; `rng` (a numpy Generator) gives the per-image jitter:
    shift, brightness, background and noise.
    """
    h, w = size
    look = identity_look(pid)
    infrared = modality == 'infrared'
    shift_y, shift_x = rng.uniform(-0.06, 0.06, 2)
    y = (np.arange(h)[:, None] + 0.5) / h - shift_y          # (h, 1) in body coordinates
    x = (np.arange(w)[None, :] + 0.5) / w - 0.5 - shift_x    # (1, w), 0 at the body's axis
    shades = look['grays'][:, None] if infrared else look['colors']      # (bands, channels)
    patch_shade = np.atleast_1d(look['patch_gray'] if infrared else look['patch_color'])
    body = np.abs(x) < look['width'] / 2                                  # (1, w)
    patch = ((np.abs(y - look['patch'][0]) < 0.08) & (np.abs(x + 0.5 - look['patch'][1]) < 0.12))
    img = np.broadcast_to(rng.uniform(60, 200, len(patch_shade)), (h, w, len(patch_shade))).copy()
    img = np.where(body[..., None], shades[np.searchsorted(look['edges'], y[:, 0])][:, None, :], img)
    img = np.where(patch[..., None], patch_shade, img)
    img = img * rng.uniform(0.85, 1.15) + rng.normal(0, 6, img.shape)
    img = np.clip(img, 0, 255).astype(np.uint8)
    if infrared:
        img = np.repeat(img, 3, axis=2)
    return Image.fromarray(img, 'RGB')


def _save_image(root, rel_path, pid, modality, size, seed):
    # The jitter depends only on (seed, file), so a file's content does not depend on what else is made.
    rng = np.random.default_rng([seed, *rel_path.encode()])
    path = os.path.join(root, rel_path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    render_identity(pid, modality, rng, size).save(path)
    return rel_path


def _write_text(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
        f.write(text)


def _write_ids(path, ids):
    _write_text(path, ','.join(str(pid) for pid in ids) + '\n')


def _write_index(path, rel_paths, labels):
    _write_text(path, ''.join(f'{rel} {label}\n' for rel, label in zip(rel_paths, labels)))


def _camera_folders(prefix, cameras, pid, missing):
    """(camera, `prefix/camN/<id>`) of identity `pid`, leaving out the folders listed in `missing`."""
    folders = [(cam, os.path.join(prefix, f'cam{cam}', '%04d' % pid)) for cam in cameras]
    return [(cam, folder) for cam, folder in folders if os.path.normpath(folder) not in missing]


def make_sysu(root, train_ids=(1, 2, 3, 4), val_ids=(5,), test_ids=(6, 7, 8), images_per_cam=2,
              size=(64, 32), seed=0, missing=()):
    """SYSU-MM01 layout: cam1..cam6/<4-digit id>/<4-digit>.jpg and exp/{train,val,test}_id.txt.

    `missing` lists folders to leave out, relative to the root (e.g. 'cam2/0007'), so that some
    identity has no image from some camera, as in the real dataset.
    """
    missing = {os.path.normpath(folder) for folder in missing}
    for modality, cameras in SYSU_CAMERAS.items():
        for pid in (*train_ids, *val_ids, *test_ids):
            for _, folder in _camera_folders('', cameras, pid, missing):
                for n in range(1, images_per_cam + 1):
                    _save_image(root, os.path.join(folder, '%04d.jpg' % n), pid, modality, size, seed)
    for split, ids in (('train', train_ids), ('val', val_ids), ('test', test_ids)):
        _write_ids(os.path.join(root, 'exp', f'{split}_id.txt'), ids)
    return os.fspath(root)


def make_regdb(root, num_ids=12, images_per_id=3, size=(64, 32), seed=0, trials=10):
    """RegDB layout: Visible/<id>/*.bmp, Thermal/<id>/*.bmp and the idx files of `trials` splits.

    Each trial splits the identities in two halves at random; training labels are 0..K-1 in
    ascending id order, test labels are the identities, the same sequence in both modalities.
    """
    ids = np.arange(1, num_ids + 1)
    files = {}
    for folder, modality in (('Visible', 'visible'), ('Thermal', 'infrared')):
        files[folder] = {pid: [_save_image(root, f'{folder}/{pid}/{folder[0].lower()}_{pid:03d}_{n:02d}.bmp',
                                           pid, modality, size, seed)
                               for n in range(1, images_per_id + 1)] for pid in ids}
    for trial in range(1, trials + 1):
        order = np.random.default_rng([seed, trial]).permutation(ids)
        halves = {'train': sorted(order[:num_ids // 2]), 'test': sorted(order[num_ids // 2:])}
        for split, split_ids in halves.items():
            labels = range(len(split_ids)) if split == 'train' else split_ids
            for folder in files:
                rel = [path for pid in split_ids for path in files[folder][pid]]
                lab = [label for pid, label in zip(split_ids, labels) for _ in files[folder][pid]]
                _write_index(os.path.join(root, 'idx', f'{split}_{folder.lower()}_{trial}.txt'), rel, lab)
    return os.fspath(root)


def make_llcm(root, train_ids=(1, 2, 3, 4), test_ids=(5, 6, 7), images_per_cam=1, size=(64, 32),
              seed=0, missing=()):
    """LLCM layout: {train,test}_{vis,nir}/camN/<4-digit id>/*.jpg, idx/train_vis.txt,
    idx/train_nir.txt (labels 0..K-1 in ascending id order) and idx/test_id.txt.

    `missing` lists folders to leave out, relative to the root (e.g. 'test_vis/cam3/0006').
    """
    missing = {os.path.normpath(folder) for folder in missing}
    for band, cameras in LLCM_CAMERAS.items():
        modality = 'visible' if band == 'vis' else 'infrared'
        for split, ids in (('train', train_ids), ('test', test_ids)):
            rel, labels = [], []
            for label, pid in enumerate(sorted(ids)):
                for cam, folder in _camera_folders(f'{split}_{band}', cameras, pid, missing):
                    for n in range(1, images_per_cam + 1):
                        name = f'{pid:04d}_c{cam:02d}_{n:02d}_{band}.jpg'
                        rel.append(_save_image(root, f'{folder}/{name}', pid, modality, size, seed))
                        labels.append(label)
            if split == 'train':
                _write_index(os.path.join(root, 'idx', f'train_{band}.txt'), rel, labels)
    _write_ids(os.path.join(root, 'idx', 'test_id.txt'), test_ids)
    return os.fspath(root)


def parse_size(text):
    try:
        h, w = (int(v) for v in text.lower().split('x'))
    except ValueError:
        raise argparse.ArgumentTypeError(f'expected HxW, e.g. 128x64, got {text!r}') from None
    return h, w


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--dataset', choices=('sysu', 'regdb', 'llcm'), required=True)
    parser.add_argument('--out', required=True, help='root folder to create')
    parser.add_argument('--ids', type=int, default=12, help='number of identities (half train, half test)')
    parser.add_argument('--images', type=int, default=2, help='images per camera (RegDB: per identity)')
    parser.add_argument('--size', type=parse_size, default=(128, 64), help='image size HxW')
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args()
    if args.ids < 4:
        raise ReIDError(f'--ids {args.ids}: need at least 4 identities')
    ids = list(range(1, args.ids + 1))
    half = args.ids // 2
    common = {'size': args.size, 'seed': args.seed}
    if args.dataset == 'sysu':
        make_sysu(args.out, train_ids=ids[:half - 1], val_ids=ids[half - 1:half], test_ids=ids[half:],
                  images_per_cam=args.images, **common)
    elif args.dataset == 'regdb':
        make_regdb(args.out, num_ids=args.ids, images_per_id=args.images, **common)
    else:
        make_llcm(args.out, train_ids=ids[:half], test_ids=ids[half:], images_per_cam=args.images, **common)
    print(f'wrote a synthetic {args.dataset} dataset with {args.ids} identities to {args.out}')


if __name__ == '__main__':
    run_main(main)
