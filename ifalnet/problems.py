"""The test problem of one trial: which images are queries, which the gallery, which network branch
each goes through, and how they are scored (the dataset's metric and its removal rule, and whether
the release's LLCM pool-feature quirk applies). The datasets' protocols themselves are their records
in data_manager.py (`Dataset.test_sides`).
"""
from collections import namedtuple

from data_manager import dataset_info
from model import Modal

# One side of a retrieval problem: image paths, identities, cameras (None for RegDB), and the
# network branch the images go through.
ImageSet = namedtuple('ImageSet', 'paths ids cams modal')
# The test problem of one trial: query and gallery sets, the metric (called with the distance matrix
# and the two ImageSets), whether the release's LLCM pool-feature term is used (see
# scoring.score_similarities), and the metric's removal rule (which gallery images a query does not
# see; None: all are seen).
Problem = namedtuple('Problem', 'query gallery metric llcm_pool_quirk removal')


def image_set(paths, ids, cams, modality):
    """An ImageSet from a side of `Dataset.test_sides` (modality 'visible' or 'thermal')."""
    return ImageSet(paths, ids, cams, Modal.named(modality))


def problem(dataset, query, gallery, llcm_pool_quirk=False):
    """The Problem of two ImageSets scored with `dataset`'s metric and removal rule."""
    info = dataset_info(dataset)
    metric = lambda d, q, g: info.metric(d, q.ids, g.ids, q.cams, g.cams)
    return Problem(query, gallery, metric, llcm_pool_quirk, info.removal)


def build_problem(dataset, data_path, trial, mode='all', tvsearch=False, protocol='release', gallery='random',
                  shots=1):
    """The test problem of one trial. `gallery` ('random': the release's draws, or 'official': the
    dataset's permutations) and `shots` (images per identity and camera) apply to SYSU-MM01."""
    query, gallery_side, quirk = dataset_info(dataset).test_sides(data_path, trial, mode, tvsearch, protocol,
                                                                  gallery, shots)
    return problem(dataset, image_set(*query), image_set(*gallery_side), quirk)


def modality_word(dataset, modal):
    """'visible', or the dataset's word for the images of the thermal branch."""
    return dataset_info(dataset).modality_word('visible' if modal == Modal.VISIBLE else 'thermal')
