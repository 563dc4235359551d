"""The feature bank: each test image embedded once by the network, whatever the trials share.

`FeatureBank` holds four float32 vectors per image (pool and bn features of the original and the
middle-modality branch; two, the original ones, for a network without the middle modality), and
how many images it embedded in how many seconds; `embed` builds the test problems of some trials
and fills a bank for them, `embed_problems` fills one for problems built elsewhere (train.py's
held-out validation, a corruption of the visible images that reuses a clean bank's other side), and
`evaluate` embeds and scores.
"""
import time

import numpy as np
import torch
from torch.utils.data import DataLoader

from data_loader import TestData
from ifalnet.devices import autocast, memory_format
from ifalnet.features_file import FEATURE_NAMES, ORIGINAL_FEATURES
from ifalnet.interruption import quiet_worker
from ifalnet.problems import build_problem, modality_word
from ifalnet.scoring import score_trials
from model import Modal
from utils import ReIDError, plural


def net_has_middle(net):
    """Whether `net` (an embed_net, or anything with its `architecture()`) gives middle features."""
    architecture = getattr(net, 'architecture', None)
    return architecture()['middle'] if callable(architecture) else True


class FeatureBank:
    """Test features by (branch, image path), so an image shared by several trials is embedded once.
    Each image has four float32 vectors: pool/bn features of the original and the middle-modality
    branch, kept as rows of one (n, 4, dim) array per branch (a network without the middle modality:
    two, pool/bn original, (n, 2, dim)). With `flip`, each vector is the sum of
    the image's and its horizontal mirror's, scaled back to unit length. `alter` ({branch:
    callable}) changes the resized images of a branch before the network sees them (see
    data_loader.TestData). `images` and `seconds` count what `add` embedded and how long it took."""

    PROGRESS_SECONDS = 10

    def __init__(self, net, device, img_h, img_w, batch_size, workers, channels_last=True, amp_dtype=None,
                 flip=False, alter=None):
        self.net, self.device = net, device
        self.img_h, self.img_w, self.batch_size, self.workers = img_h, img_w, batch_size, workers
        self.format, self.amp_dtype, self.flip = memory_format(channels_last), amp_dtype, flip
        self.alter = dict(alter or {})
        self.images, self.seconds = 0, 0.0
        self.middle = net_has_middle(net)
        self.names = FEATURE_NAMES if self.middle else ORIGINAL_FEATURES
        self.rows = {}        # (branch, path) -> row of self.features[branch]
        self.features = {}    # branch -> float32 array (n, 4, dim)

    def add(self, paths, modal, what=None):
        """Embed the images of `paths` not embedded yet through branch `modal`; `what` names one of
        them in the progress lines ('query visible image')."""
        todo = list(dict.fromkeys(p for p in paths if (modal, p) not in self.rows))
        if not todo:
            return
        what = what or f'{Modal(modal).name.lower()} image'
        cuda = self.device.type == 'cuda'
        loader = DataLoader(TestData(todo, np.zeros(len(todo)), self.img_h, self.img_w, self.alter.get(modal)),
                            batch_size=self.batch_size,
                            shuffle=False, num_workers=self.workers, pin_memory=cuda,
                            worker_init_fn=quiet_worker)
        out = None
        start = last_print = time.perf_counter()
        self.net.eval()
        with torch.inference_mode(), autocast(self.device, self.amp_dtype):
            done = 0
            for x, _ in loader:
                x = x.to(self.device, non_blocking=True, memory_format=self.format)
                block = self.embed_batch(x, modal)
                if self.flip:   # --flip: the mirror image's features added, each vector back to unit length
                    mirrored = self.embed_batch(x.flip(3).contiguous(memory_format=self.format), modal)
                    block = torch.nn.functional.normalize(block + mirrored, dim=2)
                b = x.shape[0]
                if out is None:   # host memory for all of them, filled a batch at a time
                    out = torch.empty((len(todo), *block.shape[1:]), dtype=torch.float32, pin_memory=cuda)
                out[done:done + b].copy_(block, non_blocking=True)
                done += b
                now = time.perf_counter()
                if now - last_print >= self.PROGRESS_SECONDS and done < len(todo):
                    last_print = now
                    print(f'  embedding {what}s: {done}/{len(todo)} ({done / (now - start):.0f} images/s)', flush=True)
        if cuda:
            torch.cuda.synchronize()   # the last non-blocking copies
        bad = int((~np.isfinite(out.numpy())).any(axis=(1, 2)).sum())
        if bad:
            raise ReIDError(f'the network produces NaN/inf features ({bad} of {plural(len(todo), what)}): its weights or '
                            'activations are not finite (a diverged training?), so no score would mean anything')
        first = len(self.features.get(modal, ()))
        self.features[modal] = np.concatenate([self.features[modal], out.numpy()]) if first else out.numpy()
        self.rows.update(((modal, path), first + i) for i, path in enumerate(todo))
        seconds = time.perf_counter() - start
        self.images, self.seconds = self.images + len(todo), self.seconds + seconds
        print(f'  embedded {plural(len(todo), what)} in {seconds:.1f}s ({len(todo) / seconds:.0f} images/s)', flush=True)

    def share(self, other, modal):
        """Take the rows of branch `modal` from the bank `other` (before any `add` of that branch here):
        the images a corruption of the other branch leaves as they were are not embedded again."""
        if modal in other.features and modal not in self.features:
            self.features[modal] = other.features[modal]
            self.rows.update((key, row) for key, row in other.rows.items() if key[0] == modal)

    def embed_batch(self, x, modal):
        """(b, 4, dim) float32: the four feature vectors of each image of the batch `x` (without the
        middle modality (b, 2, dim): pool and bn original)."""
        pool, feat = self.net(x, x, x, x, modal)          # (2b, dim) each: [original; middle]; (b, dim) without
        if not self.middle:
            return torch.stack([pool, feat], dim=1).float()
        b = x.shape[0]
        return torch.stack([pool[:b], pool[b:], feat[:b], feat[b:]], dim=1).float()

    def get(self, image_set):
        """float64 matrices (the release's precision for similarities), keyed by feature name."""
        rows = self.features[image_set.modal][[self.rows[(image_set.modal, p)] for p in image_set.paths]]
        return {name: rows[:, k].astype(np.float64) for k, name in enumerate(self.names)}


def embed(net, dataset, data_path, trials, device, mode='all', tvsearch=False, protocol='release',
          img_h=384, img_w=192, batch_size=64, workers=4, channels_last=True, amp_dtype=None, flip=False,
          gallery='random', shots=1):
    """The trials' test problems `{trial: Problem}` and a FeatureBank holding every image they use.
    `channels_last` is the memory format of the inputs (give `net` the same); `amp_dtype` an autocast
    dtype or None; `flip` adds each image's mirror (see FeatureBank); `gallery` and `shots` as for
    `build_problem`."""
    problems = {t: build_problem(dataset, data_path, t, mode, tvsearch, protocol, gallery, shots) for t in trials}
    return problems, embed_problems(net, dataset, problems, device, img_h, img_w, batch_size, workers, channels_last,
                                    amp_dtype, flip)


def embed_problems(net, dataset, problems, device, img_h=384, img_w=192, batch_size=64, workers=4,
                   channels_last=True, amp_dtype=None, flip=False, alter=None, reuse=None, label=''):
    """A FeatureBank holding every image of `problems` ({trial: Problem}, built by `build_problem` or
    otherwise, e.g. val_selection.validation_problem); the options as for `embed`. `alter` as for
    FeatureBank; `reuse`, a bank of the same network and options, gives the rows of the branches
    `alter` leaves alone; `label` goes before the images' name in the progress lines ('fog/3')."""
    bank = FeatureBank(net, device, img_h, img_w, batch_size, workers, channels_last, amp_dtype, flip, alter)
    if reuse is not None:
        for modal in (Modal.VISIBLE, Modal.THERMAL):
            if modal not in bank.alter:
                bank.share(reuse, modal)
    for side in ('query', 'gallery'):
        for modal in (Modal.VISIBLE, Modal.THERMAL):
            paths = [p for pr in problems.values() if getattr(pr, side).modal == modal for p in getattr(pr, side).paths]
            bank.add(paths, modal, (f'{label} ' if label else '') + f'{side} {modality_word(dataset, modal)} image')
    return bank


def evaluate(net, dataset, data_path, trials, device, rerank=None, **options):
    """For each trial, `(trial, {score name: (cmc, mAP, mINP)})` of `net`; `rerank` as for
    `score_trials`, `options` as for `embed`."""
    return score_trials(*embed(net, dataset, data_path, trials, device, **options), rerank=rerank)
