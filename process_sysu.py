"""Prepare SYSU-MM01 for training: resize the train + val images once into four .npy arrays.

Writes into the data root, the same files as the release's script (so data prepared by either
program works with both): train_rgb_resized_img.npy / train_ir_resized_img.npy, uint8
(N, 384, 192, 3), LANCZOS-resized; train_rgb_resized_label.npy / train_ir_resized_label.npy, int64
labels 0..K-1 in ascending identity order. Images are ordered by identity, camera
(visible cam1, 2, 4, 5; infrared cam3, 6), then file name. Temporary files that an earlier, killed
run left beside these four are removed first. It first says in one line whether the copy's
training images are the published ones, or warns loudly how they differ (ifalnet/dataset_census.py).

    python process_sysu.py --data-path ./Datasets/SYSU-MM01/
"""
import errno
import os
import re

import numpy as np

from data_manager import DATASETS, SYSU_ARRAYS, check_layout, parse_camera_and_id, read_resized, sysu_train_files
from ifalnet.atomic import atomic_write, temp_file_beside, write_error
from ifalnet.dataset_census import check_copy, copy_line
from ifalnet.flags import add_flag, make_parser
from ifalnet.interruption import run_main
from ifalnet.output_paths import note_removed, remove_stale_temp_files
from utils import ReIDError


def relabel(rgb_ids, ir_ids, root):
    """Labels 0..K-1 in ascending identity order, refusing identities seen in one modality only."""
    rgb_set, ir_set = set(rgb_ids.tolist()), set(ir_ids.tolist())
    if rgb_set != ir_set:
        one_sided = sorted(rgb_set ^ ir_set)
        raise ReIDError(f'training identities {one_sided[:10]} of {root} have images in one modality only '
                        '(visible cam1, 2, 4, 5; infrared cam3, 6); every training identity needs both')
    ids = np.array(sorted(rgb_set), dtype=np.int64)
    return np.searchsorted(ids, rgb_ids).astype(np.int64), np.searchsorted(ids, ir_ids).astype(np.int64)


def save_resized_images(path, files, img_h, img_w, desc):
    """Resize `files` into a memory-mapped .npy in a temporary file, then move it to `path`.

    The array goes straight to disk (about 5 GB for the visible images at 384x192), so memory
    use stays small, and the move makes the write atomic.
    """
    fd, tmp = temp_file_beside(path)
    os.close(fd)
    out = None
    try:
        try:   # the array's header is written here
            out = np.lib.format.open_memmap(tmp, mode='w+', dtype=np.uint8, shape=(len(files), img_h, img_w, 3))
        except OSError as err:
            raise write_error(path, err) from None
        try:   # reserve the space now: a memory map on a full disk would crash (SIGBUS), not raise
            with open(tmp, 'r+b') as f:
                os.posix_fallocate(f.fileno(), 0, os.path.getsize(tmp))
        except OSError as err:
            if err.errno not in (errno.EOPNOTSUPP, errno.EINVAL):   # file systems that cannot reserve
                raise write_error(path, err) from None
        read_resized(files, out, desc=desc, min_progress=0)
        out.flush()
        del out
        os.replace(tmp, path)
    except BaseException:
        out = None   # unmap the file (a traceback keeps this frame's variables alive)
        os.remove(tmp)
        raise


def prepare_sysu(data_path, img_h=384, img_w=192):
    """Write the four arrays into the data root; returns {'ids', 'rgb', 'ir'} counts."""
    root, rgb_files, ir_files = sysu_train_files(data_path)
    if not rgb_files or not ir_files:
        raise ReIDError(f'no training images of the train/val ids found under {root} '
                        f'({len(rgb_files)} visible, {len(ir_files)} infrared)')
    rgb_ids, ir_ids = (np.array([parse_camera_and_id(path, root)[1] for path in files], dtype=np.int64)
                       for files in (rgb_files, ir_files))
    labels = relabel(rgb_ids, ir_ids, root)
    # A process_sysu.py killed mid-write leaves its temporary array (about 5 GB at real size) behind.
    note_removed(remove_stale_temp_files(root, '|'.join(re.escape(name) for name in SYSU_ARRAYS)))
    stats = {'ids': len(np.unique(rgb_ids)), 'rgb': len(rgb_files), 'ir': len(ir_files)}
    print(f'SYSU-MM01 training set in {root}: {stats["ids"]} identities, {stats["rgb"]} visible images, '
          f'{stats["ir"]} infrared images; resizing to {img_h}x{img_w}', flush=True)
    for modality, files, modality_labels in (('rgb', rgb_files, labels[0]), ('ir', ir_files, labels[1])):
        image_path = os.path.join(root, f'train_{modality}_resized_img.npy')
        save_resized_images(image_path, files, img_h, img_w, desc=f'{modality} images')
        label_path = os.path.join(root, f'train_{modality}_resized_label.npy')
        atomic_write(label_path, lambda f, a=modality_labels: np.save(f, a))
        print(f'wrote {image_path} and {label_path}', flush=True)
    return stats


def main(argv=None):
    parser = make_parser(__doc__.splitlines()[0])
    add_flag(parser, '--data-path', default=DATASETS['sysu'].default_path, metavar='DIR', help='SYSU-MM01 root folder')
    args = parser.parse_args(argv)
    root = check_layout('sysu', args.data_path, training=True)
    print(copy_line(check_copy('sysu', root, 'train')), flush=True)   # the copy against the published one
    prepare_sysu(root)


if __name__ == '__main__':
    run_main(main)
