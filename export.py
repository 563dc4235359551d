"""Export a trained IFALNet checkpoint for use outside this repository: ONNX or TorchScript, one file per
branch, or the whole network as a model folder to share (safetensors, config.json, model card, checksums).

    python3 export.py --resume save_model/sysu_..._best.t --format onnx --modality both --out ifalnet.onnx
    python3 export.py --resume release.t --se-channels 3,5,4 --format torchscript --modality thermal --out ir.pt
    python3 export.py --resume save_model/sysu_..._best.t --format safetensors --results sysu.json --out ifalnet_sysu

ONNX and TorchScript: input `image`: float32 (B, 3, img_h, img_w), normalised as test.py does (LANCZOS
resize, then ImageNet mean/std), any batch size. Outputs `features` (B, 4, 2048) and `embedding`
(B, 4096), see ifalnet/deploy.py. `--check` (on when the runtime is installed) compares the file with
the PyTorch model. safetensors: the folder of ifalnet/weights_folder.py, with the model card of
ifalnet/hub_card.py (the scores of `--results`), which test.py --resume, visualize.py, export.py and
hubconf.py read; `--check` reads it back and compares every tensor; `--push-to` uploads it to the
Hugging Face Hub.
"""
import argparse
import os
import re

from ifalnet.flags import (DEFAULT_OPSET, EXPORT_FORMATS, EXPORT_TOLERANCE, MODALITIES, add_flag, check_counts,
                           image_side, make_parser, parse_se_channels)
from ifalnet.interruption import run_main
from utils import ReIDError


def parse_args(argv=None):
    parser = make_parser(__doc__.splitlines()[0])
    add_flag(parser, '--resume', required=True, metavar='FILE',
             help='checkpoint to export (ours or a release checkpoint): a path, or a file name under --model_path')
    add_flag(parser, '--model_path', default='save_model/', metavar='DIR', help='folder of checkpoints')
    add_flag(parser, '--format', default='onnx', choices=EXPORT_FORMATS,
             help='onnx (needs requirements-export.txt), torchscript (needs only torch), or safetensors: a model '
                  'folder to share, with config.json, a model card and checksums (needs requirements-share.txt)')
    add_flag(parser, '--modality', default='both', choices=(*MODALITIES, 'both'),
             help='the branch to export (thermal = infrared); both writes one file per branch, the modality '
                  'added to the name (a safetensors folder always holds both)')
    add_flag(parser, '--out', required=True, metavar='FILE',
             help='the file to write (safetensors: the folder, new or empty, or an earlier export, which is replaced)')
    add_flag(parser, '--img_h', default=None, type=image_side,
             help="input image height, fixed in the file (default: the checkpoint's, else 384; not for "
                  "safetensors: a folder records the checkpoint's)")
    add_flag(parser, '--img_w', default=None, type=image_side,
             help="input image width, fixed in the file (default: the checkpoint's, else 192; not for "
                  "safetensors: a folder records the checkpoint's)")
    add_flag(parser, '--opset', default=DEFAULT_OPSET, type=int, help='ONNX opset version')
    add_flag(parser, '--check', action=argparse.BooleanOptionalAction, default=None,
             help='run the file with onnxruntime / torch.jit and compare it with the PyTorch model; the export '
                  f'fails above {EXPORT_TOLERANCE:.0e} (default: on when the runtime is installed); safetensors: read '
                  'the folder back and compare every tensor (default: on)')
    add_flag(parser, '--se-channels', type=parse_se_channels, default=None, metavar='A,B,C',
             help="the release squeeze-excitation's three middle-modality channels, for a checkpoint that stores "
                  "none (a release checkpoint; default: the checkpoint's, else this device's torch.topk tie order)")
    group = parser.add_argument_group('safetensors model folder')
    add_flag(group, '--classifier', action=argparse.BooleanOptionalAction, default=True,
             help='keep the identity classifier in the weights (the embeddings do not use it; --no-classifier '
                  'leaves it out)')
    add_flag(group, '--results', default=None, metavar='FILE',
             help="a results file of test.py --results of this checkpoint: the model card's scores")
    add_flag(group, '--push-to', default=None, metavar='USER/NAME',
             help='also upload the folder to this Hugging Face Hub model repository (needs requirements-hub.txt '
                  'and a login)')
    args = parser.parse_args(argv)
    folder_only = [flag for flag, value in (('--results', args.results), ('--push-to', args.push_to),
                                            ('--no-classifier', not args.classifier)) if value]
    if args.format != 'safetensors' and folder_only:
        parser.error(f'{" and ".join(folder_only)} apply to --format safetensors only')
    if args.format == 'safetensors' and args.modality != 'both':
        parser.error('a safetensors model folder holds both branches: leave out --modality')
    if args.format == 'safetensors' and (args.img_h, args.img_w) != (None, None):
        parser.error("a safetensors model folder records the checkpoint's own image size (config.json's "
                     'image_size): leave out --img_h/--img_w')
    return args


if __name__ == '__main__':   # the flags first: a mistyped one stops here, before torch and the modules below
    parse_args()                # are imported (main parses them again)

import torch

from ifalnet.atomic import temp_file_beside, write_error
from ifalnet.checkpoints import checkpoint_sha256, input_size, load_model, read_any, resolve_checkpoint
from ifalnet.deploy import Embedder, Exported, check, check_inputs, require, runtime_available, serialized
from ifalnet.environment_stamp import stamp
from ifalnet.hub_card import model_card
from ifalnet.hub_transfer import push_folder, require_hub
from ifalnet.output_paths import check_output_file, note_removed, remove_stale_temp_files
from ifalnet.results_file import read_results
from ifalnet.weights_folder import (CHECKSUMS, FILES, WEIGHTS, check_out_folder, make_config, require_safetensors,
                                    weights_of, write_folder)
from model import Modal


def output_paths(out, modality):
    """{modality: path}; `both` puts the modality before the extension of --out."""
    if modality != 'both':
        return {modality: out}
    stem, ext = os.path.splitext(out)
    return {m: f'{stem}_{m}{ext}' for m in MODALITIES}


def prepare_outputs(out, modality):
    """Check every file the export will write before anything is loaded (a folder given as a file, a
    read-only or missing place), and remove the temporary files that a killed export of the same --out
    (either --modality) left beside them. Returns `output_paths`."""
    outputs = output_paths(out, modality)
    for path in dict.fromkeys([out, *outputs.values()]):
        check_output_file(path, '--out')
    names = {os.path.basename(p) for m in ('both', *MODALITIES) for p in output_paths(out, m).values()}
    note_removed(remove_stale_temp_files(os.path.dirname(os.path.abspath(out)),
                                         '|'.join(re.escape(name) for name in sorted(names))))
    return outputs


def write_file(out, data):
    """`data` in a new temporary file beside `out` (flushed to disk), returned; a failed write (a full
    disk) is one line naming `out`, and leaves no temporary file."""
    tmp = None
    try:
        fd, tmp = temp_file_beside(out)
        with os.fdopen(fd, 'wb') as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        return tmp
    except BaseException as err:
        if tmp is not None and os.path.exists(tmp):
            os.remove(tmp)
        if isinstance(err, OSError):
            raise write_error(out, err) from None
        raise


def results_of(path, checkpoint, sha256):
    """The results file `path` (test.py --results), checked to score the exported checkpoint alone."""
    results = read_results(path)
    scored = results.get('checkpoints') or []
    if len(scored) != 1:
        raise ReIDError(f'--results {path} scores {len(scored)} checkpoints; a model card describes one: give the '
                        'results of test.py on this checkpoint alone (for RegDB, --trials with its split)')
    entry = scored[0]
    if entry.get('sha256') is None:   # a results file written before checkpoints were hashed
        if os.path.basename(os.path.normpath(entry.get('path', ''))) != os.path.basename(os.path.normpath(checkpoint)):
            raise ReIDError(f'--results {path} scores {entry.get("path")}, not {checkpoint}')
        print(f'note: --results {path} records no checkpoint hash (an older test.py); matched by the file name')
    elif entry['sha256'] != sha256:
        raise ReIDError(f'--results {path} scores {entry.get("path")} (sha256 {entry["sha256"]}), not {checkpoint} '
                        f'(sha256 {sha256})')
    return results


def export_folder(args, path):
    """--format safetensors: the model folder (and, with --push-to, its upload)."""
    check_out_folder(args.out)
    require_safetensors()
    if args.push_to:
        require_hub()
    net = load_model(path, torch.device('cpu'), se_channels=args.se_channels, channels_last=False)
    sha256 = checkpoint_sha256(net, path)   # config.json names its source by it
    results = results_of(args.results, path, sha256) if args.results else None
    config = make_config(net, net.record, path, args.classifier, stamp(torch.device('cpu')))
    weights = weights_of(net, args.classifier)
    hashes = write_folder(args.out, weights, config, lambda hashes: model_card(config, hashes, results))
    if args.check is not False:   # read it back as every loader does, and compare
        back = read_any(args.out)['net']
        if not args.classifier:
            back.pop('classifier.weight')   # the zero classifier a folder without one reads back with
        if back.keys() != weights.keys() or not all(torch.equal(back[k], v) for k, v in weights.items()):
            raise ReIDError(f'{args.out} does not read back as the network it was written from')
        print(f'check: {args.out} reads back with its checksums verified and its {len(weights)} tensors identical '
              'to the network\'s', flush=True)
    size = os.path.getsize(os.path.join(args.out, WEIGHTS)) / 2 ** 20
    print(f'wrote {args.out}: {WEIGHTS} ({size:.0f} MB, sha256 {hashes[WEIGHTS]}), '
          f'{", ".join(FILES[1:])}, {CHECKSUMS}; ' + (f'model card scores from {args.results}' if results else
                                                      'no scores in the model card (--results FILE adds them)'), flush=True)
    print(f'load it: test.py --resume {args.out}, or torch.hub.load(REPOSITORY, \'ifalnet\', source=\'local\', '
          f'weights={args.out!r})')
    if args.push_to:
        print(f'pushed to {push_folder(args.out, args.push_to)}', flush=True)


def main(argv=None):
    args = parse_args(argv)
    check_counts(args, {'--opset': 7})   # --img_h/--img_w: checked when parsed (flags.image_side)
    if args.format == 'safetensors':   # its folder is checked by export_folder (an earlier export there is replaced)
        export_folder(args, resolve_checkpoint(args.resume, args.model_path))
        return
    outputs = prepare_outputs(args.out, args.modality)
    path = resolve_checkpoint(args.resume, args.model_path)
    if args.format == 'onnx':
        require('onnx')
    checking = runtime_available(args.format) if args.check is None else args.check
    if args.check and args.format == 'onnx':
        require('onnxruntime')
    elif not checking and args.check is None:
        print('note: onnxruntime is not installed, so the export is not checked '
              '(python3 -m pip install -r requirements-export.txt)')
    net = load_model(path, torch.device('cpu'), se_channels=args.se_channels, channels_last=False)
    args.img_h, args.img_w = input_size(net.trained_on, args.img_h, args.img_w, path, 'exporting')
    metadata = {'checkpoint': os.path.basename(path), 'se_channels': net.se_channels,
                'working_se': net.middle and not net.SEnet.constant, 'format': args.format,
                'environment': stamp(torch.device('cpu'))}
    written = {}   # modality -> temporary file, moved into place once every branch has passed
    try:
        for modality, out in outputs.items():
            embedder = Embedder(net, Modal.named(modality))
            data = serialized(embedder, args.format, args.img_h, args.img_w, {**metadata, 'modality': modality},
                              args.opset)
            written[modality] = write_file(out, data)
            del data
            if checking:
                features, embedding = check(embedder, Exported(written[modality]),
                                            check_inputs(embedder.modal, args.img_h, args.img_w))
                print(f'check {modality}: max |embedding difference| {embedding:.1e}, max |features difference| '
                      f'{features:.1e} (random and synthetic images, batches of 1 and 5)', flush=True)
                if max(features, embedding) > EXPORT_TOLERANCE:
                    raise ReIDError(f'the exported {modality} branch differs from the PyTorch model by '
                                    f'{max(features, embedding):.1e} (more than {EXPORT_TOLERANCE:.0e}); nothing written')
        for modality, out in outputs.items():
            try:
                os.replace(written[modality], out)
            except OSError as err:
                raise write_error(out, err) from None
            written.pop(modality)
            print(f'wrote {out}: {args.format}, {modality} branch, input image (B, 3, {args.img_h}, {args.img_w}), '
                  f'{os.path.getsize(out) / 2 ** 20:.0f} MB', flush=True)
    finally:
        for tmp in written.values():
            if os.path.exists(tmp):
                os.remove(tmp)
    if net.middle:
        print('outputs: features (B, 4, 2048) = pool original, pool middle, bn original, bn middle (unit length); '
              "embedding (B, 4096), whose dot product is test.py's ALL similarity")
    else:
        print('outputs: features (B, 2, 2048) = pool original, bn original (unit length; the network has no middle '
              "modality); embedding (B, 4096), whose dot product is test.py's ALL similarity")


if __name__ == '__main__':
    run_main(main)
