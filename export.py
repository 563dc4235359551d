"""Export a trained IFALNet checkpoint for use outside this repository: ONNX or TorchScript, one file per branch.

    python3 export.py --resume save_model/sysu_..._best.t --format onnx --modality both --out ifalnet.onnx
    python3 export.py --resume release.t --se-channels 3,5,4 --format torchscript --modality thermal --out ir.pt

Input `image`: float32 (B, 3, img_h, img_w), normalised as test.py does (LANCZOS resize, then ImageNet
mean/std), any batch size. Outputs `features` (B, 4, 2048) and `embedding` (B, 4096), see
ifalnet/deploy.py. `--check` (on when the runtime is installed) compares the file with the PyTorch model.
"""
import argparse
import os

from ifalnet.flags import (DEFAULT_OPSET, EXPORT_FORMATS, EXPORT_TOLERANCE, MODALITIES, add_flag, check_counts,
                           make_parser, parse_se_channels)
from ifalnet.interruption import run_main
from utils import ReIDError


def parse_args(argv=None):
    parser = make_parser(__doc__.splitlines()[0])
    add_flag(parser, '--resume', required=True, metavar='FILE',
             help='checkpoint to export (ours or a release checkpoint): a path, or a file name under --model_path')
    add_flag(parser, '--model_path', default='save_model/', metavar='DIR', help='folder of checkpoints')
    add_flag(parser, '--format', default='onnx', choices=EXPORT_FORMATS,
             help='onnx (needs requirements-export.txt) or torchscript (needs only torch)')
    add_flag(parser, '--modality', default='both', choices=(*MODALITIES, 'both'),
             help='the branch to export (thermal = infrared); both writes one file per branch, the modality '
                  'added to the name')
    add_flag(parser, '--out', required=True, metavar='FILE', help='the file to write')
    add_flag(parser, '--img_h', default=384, type=int, help='input image height (fixed in the file)')
    add_flag(parser, '--img_w', default=192, type=int, help='input image width (fixed in the file)')
    add_flag(parser, '--opset', default=DEFAULT_OPSET, type=int, help='ONNX opset version')
    add_flag(parser, '--check', action=argparse.BooleanOptionalAction, default=None,
             help='run the file with onnxruntime / torch.jit and compare it with the PyTorch model; the export '
                  f'fails above {EXPORT_TOLERANCE:.0e} (default: on when the runtime is installed)')
    add_flag(parser, '--se-channels', type=parse_se_channels, default=None, metavar='A,B,C',
             help="the release squeeze-excitation's three middle-modality channels, for a checkpoint that stores "
                  "none (a release checkpoint; default: the checkpoint's, else this device's torch.topk tie order)")
    return parser.parse_args(argv)


if __name__ == '__main__':   # the flags first: a mistyped one stops here, before torch and the modules below
    parse_args()                # are imported (main parses them again)

import torch

from ifalnet.atomic import temp_file_beside
from ifalnet.checkpoints import load_model, resolve_checkpoint
from ifalnet.deploy import Embedder, Exported, check, check_inputs, export, require, runtime_available
from ifalnet.environment_stamp import stamp
from model import Architecture, Modal


def output_paths(out, modality):
    """{modality: path}; `both` puts the modality before the extension of --out."""
    if modality != 'both':
        return {modality: out}
    stem, ext = os.path.splitext(out)
    return {m: f'{stem}_{m}{ext}' for m in MODALITIES}


def main(argv=None):
    args = parse_args(argv)
    check_counts(args, {'--img_h': 1, '--img_w': 1, '--opset': 7})
    path = resolve_checkpoint(args.resume, args.model_path)
    if args.format == 'onnx':
        require('onnx')
    checking = runtime_available(args.format) if args.check is None else args.check
    if args.check and args.format == 'onnx':
        require('onnxruntime')
    elif not checking and args.check is None:
        print('note: onnxruntime is not installed, so the export is not checked '
              '(python3 -m pip install -r requirements-export.txt)')
    outputs = output_paths(args.out, args.modality)
    net = load_model(path, torch.device('cpu'), se_channels=args.se_channels, channels_last=False)
    metadata = {'checkpoint': os.path.basename(path), 'se_channels': net.se_channels,
                'working_se': net.middle and not net.SEnet.constant, 'format': args.format,
                'environment': stamp(torch.device('cpu'))}
    if net.config != Architecture():   # an ablation's network; a file without it is the full one
        metadata['architecture'] = net.architecture()
    written = {}   # modality -> temporary file, moved into place once every branch has passed
    try:
        for modality, out in outputs.items():
            embedder = Embedder(net, Modal.named(modality))
            fd, tmp = temp_file_beside(out)
            os.close(fd)
            written[modality] = tmp
            export(embedder, args.format, tmp, args.img_h, args.img_w, {**metadata, 'modality': modality},
                   args.opset)
            if checking:
                features, embedding = check(embedder, Exported(tmp), check_inputs(embedder.modal, args.img_h,
                                                                                 args.img_w))
                print(f'check {modality}: max |embedding difference| {embedding:.1e}, max |features difference| '
                      f'{features:.1e} (random and synthetic images, batches of 1 and 5)', flush=True)
                if max(features, embedding) > EXPORT_TOLERANCE:
                    raise ReIDError(f'the exported {modality} branch differs from the PyTorch model by '
                                    f'{max(features, embedding):.1e} (more than {EXPORT_TOLERANCE:.0e}); nothing written')
        for modality, out in outputs.items():
            os.replace(written.pop(modality), out)
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
