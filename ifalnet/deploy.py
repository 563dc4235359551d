"""A trained IFALNet outside this repository: one branch as a deployable file, and running such files.

- `Embedder`: one branch (visible or thermal) as a function of a normalised image batch
  `(B, 3, H, W)` -> `features (B, 4, 2048)` (pool original, pool middle, bn original, bn middle,
  each unit length, as the features file stores them) and `embedding (B, 4096)` =
  [bn original + bn middle, pool original + pool middle], whose dot product between a query and a
  gallery image is test.py's `ALL` similarity (the sum of the eight original/middle terms); for a
  network without the middle modality `features (B, 2, 2048)` (pool, bn original) and `embedding`
  [bn original, pool original];
- `export` writes it as ONNX (torch's TorchScript-based exporter, `dynamo=False`: the
  torch.export-based one fails in onnxscript's optimizer on this model with torch 2.14) or
  TorchScript (`torch.jit.trace`), batch size dynamic, image size fixed, with what it is in the
  file's metadata;
- `Exported` runs such a file with onnxruntime or torch.jit (format told from the file's first bytes;
  a TorchScript file is code: it runs its own program, so SIGTERM and Ctrl-C are watched while it runs),
  `check` compares it with the PyTorch model, and `ExportedNet` is a pair of them called the way
  feature_bank.FeatureBank calls the network (test.py --onnx, bench.py's exported row).

onnx and onnxruntime are optional (requirements-export.txt); TorchScript needs nothing more.
"""
import contextlib
import importlib
import io
import json
import os
import warnings
import zipfile

import numpy as np
import torch
from torch import nn

from data_loader import test_transform
from ifalnet import interruption
from ifalnet.features_file import FEATURE_WIDTH
from ifalnet.flags import DEFAULT_OPSET
from ifalnet.optional_extras import require_extra
from ifalnet.toy_datasets import render_identity
from model import Architecture, Modal
from utils import ReIDError

INPUT, OUTPUTS = 'image', ('features', 'embedding')
META_KEY = 'ifalnet'        # ONNX metadata_props key / TorchScript extra file holding the JSON metadata
KIND = 'ifalnet-export'
ZIP_MAGIC = b'PK'           # how every zip archive, and so every TorchScript file, starts


class Embedder(nn.Module):
    """One branch of an eval-mode IFALNet: normalised images -> (features, embedding), see the module."""

    def __init__(self, net, modal):
        super().__init__()
        self.net, self.modal = net, Modal(modal)
        self.eval()   # and the exporters, which restore the mode they found, leave it so

    def forward(self, image):                                       # (B, 3, H, W)
        pool, feat = self.net(image, image, image, image, self.modal)  # (2B, 2048) each: [original; middle]
        if not self.net.middle:   # (B, 2048) each, the original features alone
            return torch.stack([pool, feat], dim=1), torch.cat([feat, pool], dim=1)    # (B, 2, 2048), (B, 4096)
        pool_ori, pool_mid = pool.chunk(2)
        bn_ori, bn_mid = feat.chunk(2)
        features = torch.stack([pool_ori, pool_mid, bn_ori, bn_mid], dim=1)                # (B, 4, 2048)
        return features, torch.cat([bn_ori + bn_mid, pool_ori + pool_mid], dim=1)         # (B, 4096)


def require(module):
    """Import an optional export dependency, or stop with the command that installs it."""
    return require_extra(module, 'ONNX export and running ONNX files', 'requirements-export.txt')


def runtime_available(fmt):
    """Whether the runtime that runs files of `fmt` is installed (torch.jit always is)."""
    if fmt == 'torchscript':
        return True
    try:
        importlib.import_module('onnxruntime')
        return True
    except ImportError:
        return False


@contextlib.contextmanager
def quiet_tracing():
    # The image size is fixed in an exported file, so the shape tests of model.dilated_conv that the
    # tracer warns about are constants by design; torch.jit's deprecation notes say nothing to a user here.
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', torch.jit.TracerWarning)
        warnings.filterwarnings('ignore', category=FutureWarning, module=r'torch\.jit')
        warnings.filterwarnings('ignore', message='You are using the legacy TorchScript-based ONNX export')
        warnings.filterwarnings('ignore', category=DeprecationWarning, module=r'torch\.onnx')
        yield


def serialized(embedder, fmt, img_h, img_w, metadata, opset=DEFAULT_OPSET):
    """`embedder` in `fmt` for (B, 3, img_h, img_w) inputs, batch size dynamic, as the bytes of the file:
    made in memory, so that writing it is one plain write whose failure (a full disk) names the file."""
    example = torch.zeros(2, 3, img_h, img_w)
    if embedder.net.config != Architecture():   # an ablation's network; a file without it is the full one
        metadata = {**metadata, 'architecture': embedder.net.architecture()}
    text = json.dumps({'kind': KIND, 'version': 1, 'img_h': img_h, 'img_w': img_w, **metadata})
    buffer = io.BytesIO()
    with torch.no_grad(), quiet_tracing():
        if fmt == 'torchscript':
            # check_trace would run the model twice more; export.py --check compares the saved file instead.
            traced = torch.jit.trace(embedder, example, check_trace=False)
            torch.jit.save(traced, buffer, _extra_files={META_KEY: text})
            return buffer.getvalue()
        onnx = require('onnx')
        batch = {0: 'batch'}
        torch.onnx.export(embedder, (example,), buffer, input_names=[INPUT], output_names=list(OUTPUTS),
                          dynamic_axes={name: batch for name in (INPUT, *OUTPUTS)}, opset_version=opset,
                          dynamo=False)
    model = onnx.load_from_string(buffer.getvalue())
    model.metadata_props.add(key=META_KEY, value=text)
    return model.SerializeToString()


def export(embedder, fmt, path, img_h, img_w, metadata, opset=DEFAULT_OPSET):
    """Write `embedder` to `path` in `fmt` (see `serialized`)."""
    data = serialized(embedder, fmt, img_h, img_w, metadata, opset)
    with open(path, 'wb') as f:
        f.write(data)


class Exported:
    """An exported file, ready to run: `metadata` (what export wrote), `modal`, `img_h`, `img_w`, and
    `run(images)` (float32 (B, 3, H, W) numpy) -> (features, embedding) as numpy arrays."""

    def __init__(self, path):
        self.path = os.fspath(path)
        if not os.path.isfile(self.path):
            raise ReIDError(f'exported model not found: {self.path}')
        with open(self.path, 'rb') as f:
            magic = f.read(2)
        if not magic:
            raise ReIDError(f'{self.path} is empty (0 bytes); expected a file written by export.py')
        # TorchScript files are zip archives (they start b'PK'), ONNX files protobuf: the file's own
        # bytes, not its name, say which it is, so a damaged file of either kind is named as such.
        self.format = 'torchscript' if magic == ZIP_MAGIC else 'onnx'
        try:
            text = self._load_torchscript() if self.format == 'torchscript' else self._load_onnx()
            self.metadata = json.loads(text)
        except (ReIDError, ImportError):
            raise
        except Exception as err:
            kind = 'TorchScript' if self.format == 'torchscript' else 'ONNX'
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ReIDError(f'cannot read {self.path}: a damaged {kind} file ({reason}); export it again') from None
        if not isinstance(self.metadata, dict) or self.metadata.get('kind') != KIND:
            raise ReIDError(f'{self.path} was not written by export.py (no IFALNet metadata)')
        self.modal = Modal.named(self.metadata['modality'])
        self.img_h, self.img_w = self.metadata['img_h'], self.metadata['img_w']
        # Files of a network without the middle modality say so (older files: the full network).
        self.middle = bool(self.metadata.get('architecture', {}).get('middle', True))

    def _load_torchscript(self):
        if not zipfile.is_zipfile(self.path):
            raise ValueError('it starts as a zip archive, as TorchScript files do, but is not a whole one')
        files = {META_KEY: ''}
        with quiet_tracing():
            self.module = torch.jit.load(self.path, map_location='cpu', _extra_files=files)
        return files[META_KEY]

    def _load_onnx(self):
        ort = require('onnxruntime')
        self.session = ort.InferenceSession(self.path, providers=['CPUExecutionProvider'])
        inputs = [i.name for i in self.session.get_inputs()]
        outputs = [o.name for o in self.session.get_outputs()]
        if inputs != [INPUT] or sorted(outputs) != sorted(OUTPUTS):
            raise ReIDError(f'{self.path} takes {", ".join(inputs) or "nothing"} and gives '
                            f'{", ".join(outputs) or "nothing"}; expected the input {INPUT} and the outputs '
                            f'{", ".join(OUTPUTS)} of a file written by export.py')
        return self.session.get_modelmeta().custom_metadata_map.get(META_KEY, '{}')

    def run(self, images):
        images = np.ascontiguousarray(images, dtype=np.float32)
        # Native code that might not return (a crafted file): SIGTERM and Ctrl-C still end the process.
        with interruption.watched(f'the {self.format} file {self.path}'):
            if self.format == 'onnx':
                out = tuple(self.session.run(list(OUTPUTS), {INPUT: images}))
            else:
                with torch.no_grad(), quiet_tracing():
                    out = self.module(torch.from_numpy(images))
                    out = tuple(t.numpy() for t in out) if isinstance(out, (tuple, list)) and \
                        all(isinstance(t, torch.Tensor) for t in out) else out
        return self.check_outputs(out, len(images))

    def check_outputs(self, out, batch):
        """What the file gave for `batch` images, if it is what export.py's files give (see the module)."""
        streams = 4 if self.middle else 2
        expected = {'features': (batch, streams, FEATURE_WIDTH), 'embedding': (batch, 2 * FEATURE_WIDTH)}
        shapes = [tuple(a.shape) if isinstance(a, np.ndarray) else type(a).__name__ for a in
                  (out if isinstance(out, tuple) else (out,))]
        if shapes != list(expected.values()) or not all(np.issubdtype(a.dtype, np.floating) for a in out):
            raise ReIDError(f'{self.path} gave {shapes} for {batch} images; expected float arrays '
                            + ', '.join(f'{k} {v}' for k, v in expected.items()) + ' (a file written by export.py)')
        return out


def check_inputs(modal, img_h, img_w, n=5, seed=0):
    """(name, float32 (n, 3, H, W)) batches to compare an export on: random normal values, and
    synthetic people normalised as test.py normalises its images."""
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal((n, 3, img_h, img_w)).astype(np.float32)
    look = 'visible' if modal == Modal.VISIBLE else 'infrared'
    transform = test_transform()
    people = torch.stack([transform(render_identity(i + 1, look, rng, (img_h, img_w))) for i in range(n)]).numpy()
    return [('random, batch 1', noise[:1]), (f'synthetic people, batch {n}', people)]


def check(embedder, exported, batches):
    """Largest |difference| of the exported file's (features, embedding) from `embedder`'s, over `batches`."""
    worst = np.zeros(2)
    for _, images in batches:
        with torch.no_grad():
            expected = [t.numpy() for t in embedder(torch.from_numpy(images))]
        got = exported.run(images)
        worst = np.maximum(worst, [np.abs(g - e).max() for g, e in zip(got, expected)])
    return tuple(float(w) for w in worst)


class ExportedNet:
    """A visible and a thermal exported file, called as feature_bank.FeatureBank calls IFALNet:
    `net(x, x, x, x, modal)` -> (pool, bn) features, each (2B, 2048) as [original; middle]."""

    def __init__(self, visible, thermal):
        self.branches = {Modal.VISIBLE: visible, Modal.THERMAL: thermal}
        self.img_h, self.img_w = visible.img_h, visible.img_w
        self.middle = visible.middle

    def eval(self):
        return self

    def architecture(self):
        """What feature_bank.FeatureBank asks a network: whether it has the middle modality."""
        return {'middle': self.middle}

    def __call__(self, x1_1, x1_2, x2_1, x2_2, modal):
        features, _ = self.branches[Modal(modal)].run(x1_1.cpu().contiguous().numpy())   # (B, 4 or 2, 2048)
        features = torch.from_numpy(features).to(x1_1.device)
        if not self.middle:   # (pool, bn) of the originals, (B, 2048) each, as the network gives them
            return features[:, 0], features[:, 1]
        return torch.cat([features[:, 0], features[:, 1]]), torch.cat([features[:, 2], features[:, 3]])


def exported_pair(paths, img_h, img_w, flag='--onnx'):
    """test.py's `--onnx VISIBLE THERMAL`: both files loaded and checked against the test's image size."""
    branches = []
    for path, modal in zip(paths, (Modal.VISIBLE, Modal.THERMAL)):
        exported = Exported(path)
        if exported.modal != modal:
            raise ReIDError(f'{flag} takes the visible file, then the thermal one; {path} is the '
                            f'{exported.metadata["modality"]} branch')
        if (img_h, img_w) != (None, None) and (exported.img_h, exported.img_w) != (img_h, img_w):
            raise ReIDError(f'{path} takes {exported.img_h}x{exported.img_w} images: pass --img_h {exported.img_h} '
                            f'--img_w {exported.img_w} (got {img_h}x{img_w})')
        print(f'loaded {path} ({exported.format}, {exported.metadata["modality"]} branch, '
              f'from {exported.metadata.get("checkpoint")})', flush=True)
        if exported.format == 'torchscript':
            print(f'warning: {path} is a TorchScript file, which runs the program stored in it: trust it as you '
                  'would code (an ONNX file runs no code of its own; prefer it where the file comes from elsewhere)',
                  flush=True)
        branches.append(exported)
    if branches[0].middle != branches[1].middle:
        raise ReIDError(f'{flag}: {paths[0]} and {paths[1]} come from different networks (one has the middle '
                        'modality, the other not)')
    return ExportedNet(*branches)
