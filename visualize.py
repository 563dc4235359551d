"""See what the model learned: middle-modality images, attention maps, ranking lists, t-SNE, distance
histograms, CMC curves, and ranking one's own images.

    python visualize.py middle --resume CKPT a.jpg b.jpg --modality visible --out middle.png
    python visualize.py attention --resume CKPT a.jpg b.jpg --modality visible --out attention.png
    python visualize.py ranking --features feats.npz --queries 3 --out ranking/
    python visualize.py tsne --features feats.npz --ids 10 --out tsne.png
    python visualize.py distances --features feats.npz --out distances.png
    python visualize.py cmc run_a.json run_b.json --out cmc.png
    python visualize.py rank --resume CKPT --query me.jpg --query-modality visible --gallery DIR --out rank.png

`ranking`, `tsne` and `distances` read the features file of `test.py --save-features` (nothing is
embedded again); `cmc` reads results files of `test.py --results`; `middle`, `attention` and `rank` run a
checkpoint (attention.py reads the maps). Image grids use Pillow; the plots and the attention
colours need matplotlib, t-SNE also scikit-learn (both optional: pip install -r requirements-vis.txt).
"""
import argparse
import importlib
import os

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

import attention
import evaluation
from data_loader import test_transform
from data_manager import open_rgb
from device import select_device
from eval_metrics import llcm_removal, sysu_removal
from features import Features
from model import Modal
from outputs import check_output_dir, check_output_file
from result_tables import load_json
from utils import ReIDError, atomic_write, run_main

PIP_HINT = 'pip install -r requirements-vis.txt'
PIP_NAMES = {'matplotlib': 'matplotlib', 'sklearn': 'scikit-learn'}
# Each dataset's own word for its second modality (the flags keep visible|thermal).
SECOND_MODALITY = {'sysu': 'infrared', 'llcm': 'infrared', 'regdb': 'thermal'}
DATASET_NAMES = {'sysu': 'SYSU-MM01', 'llcm': 'LLCM', 'regdb': 'RegDB'}
# Gallery items a query does not see, as in the dataset's metric (RegDB: none).
REMOVAL = {'sysu': sysu_removal, 'llcm': llcm_removal, 'regdb': None}
MODALITIES = {'visible': Modal.VISIBLE, 'thermal': Modal.THERMAL}
IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')

# Image grids: every cell is a tile framed by a BORDER-wide border (white when it has none),
# centred in a cell at least MIN_CELL wide (room for the captions), with caption lines of LINE
# pixels under it; cells GAP apart, MARGIN around the grid.
MARGIN, GAP, BORDER, LINE, FONT_SIZE, MIN_CELL = 6, 6, 4, 16, 13, 76
WHITE, BLACK, BLUE = (255, 255, 255), (0, 0, 0), (40, 90, 200)
GREEN, RED = (0, 170, 0), (220, 0, 0)
# What each score sums (the similarity's largest value): cosines of unit-length features.
SCORE_TERMS = {'VIS-IR FC': 1, 'VIS-MR FC': 1, 'MIS-IR FC': 1, 'MIS-MR FC': 1, 'ALL FC': 4, 'ALL': 8}
ATTENTION_COLORMAP = 'jet'   # the attention overlays' colours (matplotlib's; torchreid's activation maps use jet too)
PLOT_FORMATS = ('png', 'pdf', 'svg')   # --out of the plots: PNG, or vector PDF / SVG
FONT, TITLE_FONT, SMALL_FONT = 10, 11, 9   # plot text sizes (points)
# t-SNE groups: (name, marker); the name's "{}" is the dataset's second-modality word.
TSNE_GROUPS = (('visible', 'o'), ('visible middle', 's'), ('{}', '^'), ('{} middle', 'v'))


def optional(module, command):
    """Import an optional dependency, or stop with the pip command that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        package = PIP_NAMES[module.split('.')[0]]
        raise ReIDError(f'visualize.py {command} needs {package}, which is not installed: {PIP_HINT}') from None


# ----------------------------------------------------------------------------- image grids
def caption_font():
    try:
        return ImageFont.load_default(size=FONT_SIZE)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        return ImageFont.load_default()


def fit_text(draw, text, width, font):
    """`text`, shortened from the left (".." prefix) until it fits `width` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength('..' + text, font=font) > width:
        text = text[1:]
    return '..' + text


def tile_size(height, img_h, img_w):
    """(width, height) of a displayed tile: `height` pixels, the network input's aspect ratio."""
    return max(1, round(height * img_w / img_h)), height


def load_tile(path, size):
    return open_rgb(path).resize(size, Image.Resampling.LANCZOS)


def draw_grid(tiles, captions, borders, columns, key=()):
    """Equal-sized tiles in rows of `columns`, each framed in its border colour (None: no border)
    with its caption lines under it, and the lines of `key` under the grid (widened to fit them).
    Returns the grid as an RGB image."""
    tile_w, tile_h = tiles[0].size
    lines = max(len(c) for c in captions)
    framed_w = tile_w + 2 * BORDER
    cell_w, cell_h = max(framed_w, MIN_CELL), tile_h + 2 * BORDER + lines * LINE
    columns = min(columns, len(tiles))
    rows = -(-len(tiles) // columns)
    font = caption_font()
    key_w = max([ImageDraw.Draw(Image.new('RGB', (1, 1))).textlength(k, font=font) for k in key], default=0)
    grid_h = 2 * MARGIN + rows * cell_h + (rows - 1) * GAP
    canvas = Image.new('RGB', (max(2 * MARGIN + columns * cell_w + (columns - 1) * GAP, 2 * MARGIN + int(key_w) + 1),
                               grid_h + len(key) * LINE), WHITE)
    draw = ImageDraw.Draw(canvas)
    for k, text in enumerate(key):
        draw.text((MARGIN, grid_h - MARGIN + k * LINE), text, fill=BLACK, font=font)
    for i, (tile, caption, border) in enumerate(zip(tiles, captions, borders)):
        x = MARGIN + (i % columns) * (cell_w + GAP)
        y = MARGIN + (i // columns) * (cell_h + GAP)
        frame_x = x + (cell_w - framed_w) // 2
        if border is not None:
            draw.rectangle([frame_x, y, frame_x + framed_w - 1, y + tile_h + 2 * BORDER - 1], fill=border)
        canvas.paste(tile, (frame_x + BORDER, y + BORDER))
        for k, text in enumerate(caption):
            text = fit_text(draw, text, cell_w - 2, font)
            draw.text((x + (cell_w - draw.textlength(text, font=font)) // 2, y + tile_h + 2 * BORDER + k * LINE),
                      text, fill=BLACK, font=font)
    return canvas


def save_png(image, path):
    atomic_write(path, lambda f: image.save(f, format='PNG', optimize=True))


def plot_format(path):
    """The file format of a plot's --out, from its name: png, or the vector pdf and svg."""
    kind = os.path.splitext(path)[1].lower().lstrip('.')
    if kind not in PLOT_FORMATS:
        raise ReIDError(f'--out {path}: expected a .png, .pdf or .svg file name (PDF and SVG are vector figures)')
    return kind


def save_figure(fig, path, dpi):
    atomic_write(path, lambda f: fig.savefig(f, format=plot_format(path), dpi=dpi))


# ----------------------------------------------------------------------------- middle
def network_inputs(paths, img_h, img_w, device):
    """The images resized as test.py resizes them (PIL images of (img_w, img_h)) and the batch the
    network gets from them, (n, 3, H, W) on `device`."""
    inputs = [load_tile(path, (img_w, img_h)) for path in paths]
    transform = test_transform()
    return inputs, torch.stack([transform(img) for img in inputs]).to(device)


def middle_images(net, paths, modal, img_h, img_w, device):
    """The network inputs (resized as test.py resizes them) and the middle-modality image the
    generator makes from each, min-max scaled per image to 0..255; PIL images of (img_w, img_h)."""
    inputs, x = network_inputs(paths, img_h, img_w, device)              # x: (n, 3, H, W)
    net.eval()
    with torch.no_grad():
        middle, _ = net.middle_modality(x, x, modal)                      # (n, 3, H, W)
    outputs = []
    for m in middle.float().cpu():
        low, high = m.min(), m.max()
        scaled = (m - low) / (high - low) if high > low else torch.zeros_like(m)
        outputs.append(Image.fromarray((scaled.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)))
    return inputs, outputs


def cmd_middle(args):
    for path in args.images:
        if not os.path.isfile(path):
            raise ReIDError(f'image not found: {path}')
    device = select_device(args.gpu)
    net = evaluation.load_model(args.resume, device, args.arch)
    if not net.middle:
        raise ReIDError(f'{args.resume} is a network without the middle modality (trained with --no-middle): '
                        'it makes no middle-modality images')
    inputs, middles = middle_images(net, args.images, MODALITIES[args.modality], args.img_h, args.img_w, device)
    size = tile_size(args.height, args.img_h, args.img_w)
    tiles, captions = [], []
    for path, inp, mid in zip(args.images, inputs, middles):
        # both as the network sees them, enlarged without smoothing
        tiles += [inp.resize(size, Image.Resampling.NEAREST), mid.resize(size, Image.Resampling.NEAREST)]
        captions += [folder_and_name(path), ['middle', f'of {args.modality}']]
    grid = draw_grid(tiles, captions, [None] * len(tiles), 2 * args.columns)
    save_png(grid, args.out)
    print(f'{len(inputs)} {args.modality} image(s) and their middle-modality images written to {args.out}')


# ----------------------------------------------------------------------------- attention
def cmd_attention(args):
    colormaps = optional('matplotlib', 'attention').colormaps
    for path in args.images:
        if not os.path.isfile(path):
            raise ReIDError(f'image not found: {path}')
    device = select_device(args.gpu)
    net = evaluation.load_model(args.resume, device, args.arch)
    inputs, x = network_inputs(args.images, args.img_h, args.img_w, device)
    maps = attention.attention_maps(net, x, MODALITIES[args.modality])
    size = tile_size(args.height, args.img_h, args.img_w)
    rows = attention.attention_tiles(inputs, maps, size, colormaps[ATTENTION_COLORMAP])
    tiles = [tile for row in rows for tile, _ in row]
    captions = [caption or folder_and_name(path) for path, row in zip(args.images, rows) for _, caption in row]
    key = [f'colours: {ATTENTION_COLORMAP}, blue low to red high, over the image',
           'MIA spatial attention: fixed scale 0..1 (a sigmoid)',
           "energy: layer 4's sum of squares over channels,", 'min-max scaled per tile']
    save_png(draw_grid(tiles, captions, [None] * len(tiles), len(rows[0]), key), args.out)
    print(f'attention maps of {len(inputs)} {args.modality} image(s) written to {args.out}')


# ----------------------------------------------------------------------------- ranking
def trial_similarities(feats, trial, score, query_positions=None):
    """`score`'s similarities (queries x gallery) of a trial, as test.py computes them. The whole
    matrix is computed, then rows picked: a product of fewer rows may round differently, and the
    ranking must be the one the metric saw."""
    q_rows, g_rows = feats.side(trial, 'query'), feats.side(trial, 'gallery')
    sims = evaluation.score_similarities(feats.rows(q_rows), feats.rows(g_rows), feats.meta['llcm_pool_quirk'])[score]
    return sims if query_positions is None else sims[query_positions]


def ranked_lists(feats, trial, score, query_positions):
    """For each chosen query (positions in the trial's query list): the gallery positions it sees,
    in the metric's order (np.argsort of the distance, as the release ranks; then the dataset's
    removals), and the similarity row."""
    sims = trial_similarities(feats, trial, score, query_positions)
    order = np.argsort(-sims, axis=1)
    q_rows, g_rows = feats.side(trial, 'query')[query_positions], feats.side(trial, 'gallery')
    removal = REMOVAL[feats.dataset]
    lists = []
    for i, q in enumerate(q_rows):
        ranked = order[i]
        if removal is not None:
            g = g_rows[ranked]
            same_id = feats.identity[g] == feats.identity[q]
            ranked = ranked[~removal(same_id, feats.camera[q], feats.camera[g])]
        lists.append(ranked)
    return lists, sims


def choose_queries(feats, trial, count, query_path, data_root):
    """Positions in the trial's query list: the one image `query_path`, or `count` spread evenly."""
    rows = feats.side(trial, 'query')
    if query_path is None:
        return np.unique(np.linspace(0, len(rows) - 1, min(count, len(rows))).round().astype(np.int64))
    root = data_root or feats.meta['data_root']
    wanted = {os.path.normpath(query_path), os.path.normpath(os.path.relpath(os.path.abspath(query_path), root))}
    found = [i for i, r in enumerate(rows) if os.path.normpath(str(feats.path[r])) in wanted]
    if not found:
        raise ReIDError(f'--query {query_path} is not among the {len(rows)} queries of trial {trial} in '
                        f'{feats.source} (paths are relative to {root}, e.g. {feats.path[rows[0]]})')
    return np.array(found[:1], dtype=np.int64)


def image_text(feats, row):
    """Caption lines of a test image: its camera (none for RegDB) and identity."""
    return ([] if feats.camera[row] < 0 else [f'cam{feats.camera[row]}']) + [f'id {feats.identity[row]}']


def folder_and_name(path):
    return [os.path.basename(os.path.dirname(os.path.abspath(path))), os.path.basename(path)]


def ranking_grid(feats, trial, query_row, ranked, sims, topk, size, data_root, score):
    """The query, then its top-k gallery images: green border for the query's identity, red
    otherwise; similarity, camera and identity under each."""
    g_rows = feats.side(trial, 'gallery')
    top = ranked[:topk]
    rows = [query_row] + [g_rows[j] for j in top]
    tiles = [load_tile(feats.image_path(r, data_root), size) for r in rows]
    shown = score_labels(sims[top])
    captions = [['query', *image_text(feats, query_row)]] + [[f'#{k} {text}', *image_text(feats, g_rows[j])]
                                                             for k, (j, text) in enumerate(zip(top, shown), start=1)]
    borders = [BLUE] + [GREEN if feats.identity[g_rows[j]] == feats.identity[query_row] else RED for j in top]
    key = [score_key(score, evaluation.has_middle(feats.names)), 'border: blue query, green its identity,', 'red another identity']
    return draw_grid(tiles, captions, borders, len(tiles), key)


def score_labels(values):
    """The similarities as text, with the fewest decimals (2 to 6) that tell neighbours apart."""
    values = np.asarray(values, dtype=np.float64)
    for digits in range(2, 7):
        texts = [f'{v:.{digits}f}' for v in values]
        if all(a != b or x == y for a, b, x, y in zip(texts, texts[1:], values, values[1:])):
            return texts
    return texts


def score_key(score, middle=True):
    """What the numbers under a tile are: '#rank  ALL = sum of 8 cosines, max 8' (without the middle
    modality ALL is bn + pool of the originals: 2)."""
    terms = SCORE_TERMS[score] if middle else len(evaluation.ORIGINAL_FEATURES) if score == 'ALL' else 1
    what = 'a cosine, max 1' if terms == 1 else f'sum of {terms} cosines, max {terms}'
    return f'#rank  {score} = {what}'


def cmd_ranking(args):
    feats = Features(args.features)
    trial = feats.trial(args.trial)
    check_score(args.score, evaluation.has_middle(feats.names))
    positions = choose_queries(feats, trial, args.queries, args.query, args.data_path)
    lists, sims = ranked_lists(feats, trial, args.score, positions)
    size = tile_size(args.height, feats.meta['img_h'], feats.meta['img_w'])
    q_rows = feats.side(trial, 'query')
    grids = [(f'trial{trial}_query{p:05d}.png', ranking_grid(feats, trial, q_rows[p], ranked, sims[i], args.topk,
                                                             size, args.data_path, args.score))
             for i, (p, ranked) in enumerate(zip(positions, lists))]
    # Everything is drawn before anything is written, so an unreadable image leaves nothing behind.
    if args.out.lower().endswith('.png'):
        save_png(stack_rows([grid for _, grid in grids]), args.out)
        print(f'wrote {args.out} ({len(grids)} queries)')
        return
    for name, grid in grids:
        path = os.path.join(args.out, name)
        save_png(grid, path)
        print(f'wrote {path}')


def stack_rows(images):
    """Images one under the other, left-aligned on white."""
    canvas = Image.new('RGB', (max(im.width for im in images), sum(im.height for im in images)), WHITE)
    y = 0
    for image in images:
        canvas.paste(image, (0, y))
        y += image.height
    return canvas


def check_score(score, middle=True):
    """Refuse a --score that is not one of the release's six, or (`middle=False`) not one of the two
    a network without the middle modality has."""
    if score not in evaluation.SCORES:
        raise ReIDError(f'--score {score!r} is not one of {", ".join(evaluation.SCORES)}')
    if not middle and score not in evaluation.ORIGINAL_SCORES:
        raise ReIDError(f'--score {score}: the network has no middle modality (trained with --no-middle), so its only '
                        f'scores are {", ".join(evaluation.ORIGINAL_SCORES)}')


# ----------------------------------------------------------------------------- t-SNE
def trial_rows(feats, trial):
    return np.unique(np.concatenate([feats.side(trial, 'query'), feats.side(trial, 'gallery')]))


def tsne_points(feats, trial, num_ids, kind, seed):
    """t-SNE of the original and middle `kind` features of `num_ids` identities (the first, in
    sorted order, with images of both modalities in the trial). Returns (xy (n, 2), identity (n,),
    group (n,)), group indexing TSNE_GROUPS; every image gives one point per branch."""
    manifold = optional('sklearn.manifold', 'tsne')
    if num_ids < 1:
        raise ReIDError(f'--ids must be at least 1, got {num_ids}')
    rows = trial_rows(feats, trial)
    both = np.intersect1d(feats.identity[rows[feats.modality[rows] == Modal.VISIBLE]],
                          feats.identity[rows[feats.modality[rows] == Modal.THERMAL]])
    if len(both) == 0:
        raise ReIDError(f'no identity of trial {trial} in {feats.source} has images of both modalities')
    chosen = both[:num_ids]
    rows = rows[np.isin(feats.identity[rows], chosen)]
    # Without the middle modality (a --no-middle network) the original branch alone.
    branches = ('ori', 'mid') if evaluation.has_middle(feats.names) else ('ori',)
    x = np.concatenate([feats.arrays[f'{kind}_{b}'][rows] for b in branches]).astype(np.float64)
    thermal = (feats.modality[rows] == Modal.THERMAL).astype(np.int64) * 2
    group = np.concatenate([thermal, thermal + 1][:len(branches)])   # 0 visible, 1 visible middle, 2, 3
    identity = np.concatenate([feats.identity[rows]] * len(branches))
    perplexity = max(1.0, min(30.0, (len(x) - 1) / 3))
    print(f't-SNE of {len(x)} points ({len(chosen)} identities, {len(rows)} images x {len(branches)} '
          f'branch{"es" if len(branches) > 1 else ""})', flush=True)
    tsne = manifold.TSNE(n_components=2, perplexity=perplexity, init='pca', random_state=seed)
    return tsne.fit_transform(x), identity, group


def tsne_figure(xy, identity, group, word, title):
    figure = optional('matplotlib.figure', 'tsne')
    lines = optional('matplotlib.lines', 'tsne')
    fig = figure.Figure(figsize=(5, 4.4), layout='constrained')
    ax = fig.subplots()
    ids = np.unique(identity)
    cmap = optional('matplotlib', 'tsne').colormaps['tab10' if len(ids) <= 10 else 'tab20']
    colour = {pid: cmap(k % cmap.N) for k, pid in enumerate(ids)}
    handles = []
    for g, (name, marker) in enumerate(TSNE_GROUPS):
        at = group == g
        ax.scatter(xy[at, 0], xy[at, 1], c=[colour[pid] for pid in identity[at]], marker=marker, s=28,
                   edgecolors='black', linewidths=0.3)
        handles.append(lines.Line2D([], [], marker=marker, linestyle='', color='0.5', markeredgecolor='black',
                                    markeredgewidth=0.3, label=name.format(word)))
    # outside the axes, right of the points (constrained layout makes room for it)
    ax.legend(handles=handles, fontsize=SMALL_FONT, loc='upper left', bbox_to_anchor=(1.02, 1), borderaxespad=0)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=TITLE_FONT)
    return fig


def cmd_tsne(args):
    optional('matplotlib.figure', 'tsne')
    optional('sklearn.manifold', 'tsne')
    plot_format(args.out)
    feats = Features(args.features)
    trial = feats.trial(args.trial)
    xy, identity, group = tsne_points(feats, trial, args.ids, args.feature, args.seed)
    word = SECOND_MODALITY[feats.dataset]
    fig = tsne_figure(xy, identity, group, word,
                      f't-SNE of {args.feature} features: {len(np.unique(identity))} identities '
                      f'({DATASET_NAMES[feats.dataset]}, trial {trial})')
    save_figure(fig, args.out, args.dpi)
    print(f'wrote {args.out}')


# ----------------------------------------------------------------------------- distances
def cross_modal_distances(feats, trial, kind):
    """Cosine distances between the trial's visible and second-modality images, for the original
    and the middle branch (the original alone for a network without the middle modality): {branch: (intra-identity distances, inter-identity distances)}."""
    rows = trial_rows(feats, trial)
    vis, ir = rows[feats.modality[rows] == Modal.VISIBLE], rows[feats.modality[rows] == Modal.THERMAL]
    if len(vis) == 0 or len(ir) == 0:
        raise ReIDError(f'trial {trial} of {feats.source} does not have images of both modalities')
    same = feats.identity[vis][:, None] == feats.identity[ir][None, :]
    out = {}
    for branch in ('ori', 'mid') if evaluation.has_middle(feats.names) else ('ori',):
        unit = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)
        values = feats.arrays[f'{kind}_{branch}']
        dist = 1 - unit(values[vis].astype(np.float64)) @ unit(values[ir].astype(np.float64)).T
        out[branch] = (dist[same], dist[~same])
    return out


def distances_figure(distances, word, title, bins=50):
    figure = optional('matplotlib.figure', 'distances')
    fig = figure.Figure(figsize=(4 * len(distances), 3.2), layout='constrained')
    axes = fig.subplots(1, len(distances), sharex=True, squeeze=False)[0]   # one x range, so the two panels compare at a glance
    names = {'ori': f'visible vs {word}: original', 'mid': f'visible vs {word}: middle modality'}
    every = np.concatenate([v for pair in distances.values() for v in pair])
    edges = np.linspace(every.min(), every.max() + 1e-9, bins + 1)
    for ax, (branch, (intra, inter)) in zip(axes, distances.items()):
        for values, label, colour in ((intra, 'intra-identity', 'tab:green'), (inter, 'inter-identity', 'tab:red')):
            if len(values):
                ax.hist(values, bins=edges, density=True, alpha=0.5, color=colour,
                        label=f'{label} (mean {values.mean():.3f})')
                ax.axvline(values.mean(), color=colour, linestyle='--', linewidth=1.2)
        ax.set_title(names[branch], fontsize=TITLE_FONT)
        ax.set_xlabel('cosine distance', fontsize=FONT)
        ax.tick_params(labelsize=SMALL_FONT)
        ax.legend(fontsize=SMALL_FONT, loc='best')
    axes[0].set_ylabel('density', fontsize=FONT)
    fig.suptitle(title, fontsize=TITLE_FONT)
    return fig


def cmd_distances(args):
    optional('matplotlib.figure', 'distances')
    plot_format(args.out)
    feats = Features(args.features)
    trial = feats.trial(args.trial)
    distances = cross_modal_distances(feats, trial, args.feature)
    word = SECOND_MODALITY[feats.dataset]
    for branch, (intra, inter) in distances.items():
        print(f'{branch}: {len(intra)} intra-identity pairs, mean {intra.mean() if len(intra) else float("nan"):.4f}; '
              f'{len(inter)} inter-identity pairs, mean {inter.mean() if len(inter) else float("nan"):.4f}')
    fig = distances_figure(distances, word, f'{args.feature} features ({DATASET_NAMES[feats.dataset]}, trial {trial})')
    save_figure(fig, args.out, args.dpi)
    print(f'wrote {args.out}')


# ----------------------------------------------------------------------------- CMC
def read_cmc(path, score):
    """(mean CMC curve, mean Rank-1, mean mAP) of `score` from a results file of test.py."""
    report = load_json(path)
    if not isinstance(report, dict) or not isinstance(report.get('cmc'), dict) or 'mean' not in report:
        raise ReIDError(f'{path} has no "cmc" curves: expected a results file written by test.py --results '
                        '(run test.py again to get the curves)')
    if score not in report['cmc']['mean']:
        raise ReIDError(f'{path} has no score {score!r}; it has {", ".join(report["cmc"]["mean"])}')
    return (np.asarray(report['cmc']['mean'][score]), report['mean'][score]['rank1'], report['mean'][score]['mAP'],
            results_protocol(report))


def results_protocol(report):
    """'SYSU-MM01 all-search, infrared -> visible' from a results file (older files: what they say)."""
    name = DATASET_NAMES.get(report.get('dataset'), str(report.get('dataset', 'unknown dataset')))
    if report.get('dataset') == 'sysu' and report.get('mode'):
        name += f' {report["mode"]}-search'
    return f'{name}, {report["direction"]}' if report.get('direction') else name


def cmd_cmc(args):
    figure = optional('matplotlib.figure', 'cmc')
    check_score(args.score)
    plot_format(args.out)
    labels = args.labels or [os.path.splitext(os.path.basename(p))[0] for p in args.results]
    if len(labels) != len(args.results):
        raise ReIDError(f'--labels gives {len(labels)} names for {len(args.results)} results files')
    runs = [read_cmc(path, args.score) for path in args.results]
    fig = figure.Figure(figsize=(5, 3.6), layout='constrained')
    ax = fig.subplots()
    for label, (curve, rank1, mAP, _) in zip(labels, runs):
        ax.plot(np.arange(1, len(curve) + 1), 100 * curve, marker='o', markersize=3,
                label=f'{label}: Rank-1 {100 * rank1:.1f}%, mAP {100 * mAP:.1f}%')
    ax.set_xlabel('rank', fontsize=FONT)
    ax.set_ylabel('matching rate (%)', fontsize=FONT)
    ax.set_xticks([1, 5, 10, 15, 20])
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.tick_params(labelsize=SMALL_FONT)
    ax.legend(fontsize=SMALL_FONT, loc='best')
    protocols = '; '.join(dict.fromkeys(run[3] for run in runs))
    ax.set_title(f'CMC, {args.score} score, {protocols} (mean over trials)', fontsize=TITLE_FONT)
    save_figure(fig, args.out, args.dpi)
    print(f'wrote {args.out}')


# ----------------------------------------------------------------------------- rank own images
def list_gallery(folder):
    if not os.path.isdir(folder):
        raise ReIDError(f'--gallery {folder} is not a folder')
    paths = sorted(os.path.join(root, name) for root, _, names in os.walk(folder) for name in names
                   if name.lower().endswith(IMAGE_SUFFIXES))
    if not paths:
        raise ReIDError(f'--gallery {folder} holds no images ({", ".join(IMAGE_SUFFIXES)})')
    return paths


def cmd_rank(args):
    if not os.path.isfile(args.query):
        raise ReIDError(f'--query image not found: {args.query}')
    check_score(args.score)
    gallery = list_gallery(args.gallery)
    q_modal = MODALITIES[args.query_modality]
    g_modal = Modal.VISIBLE if q_modal == Modal.THERMAL else Modal.THERMAL
    device = select_device(args.gpu)
    net = evaluation.load_model(args.resume, device, args.arch)
    check_score(args.score, net.middle)
    bank = evaluation.FeatureBank(net, device, args.img_h, args.img_w, args.test_batch, args.workers)
    query_set = evaluation.ImageSet([args.query], None, None, q_modal)
    gallery_set = evaluation.ImageSet(gallery, None, None, g_modal)
    bank.add(query_set.paths, q_modal)
    bank.add(gallery_set.paths, g_modal)
    sims = evaluation.score_similarities(bank.get(query_set), bank.get(gallery_set))[args.score][0]
    top = np.argsort(-sims)[:args.topk]
    print(f'query ({args.query_modality}): {args.query}')
    print(f'{len(gallery)} gallery images ({Modal(g_modal).name.lower()} branch), top {len(top)} by {args.score}:')
    for k, j in enumerate(top, start=1):
        print(f'  {k:>3}  {sims[j]:9.4f}  {gallery[j]}')
    size = tile_size(args.height, args.img_h, args.img_w)
    tiles = [load_tile(path, size) for path in [args.query] + [gallery[j] for j in top]]
    shown = score_labels(sims[top])
    captions = [['query', *folder_and_name(args.query)]] + [[f'#{k} {text}', *folder_and_name(gallery[j])]
                                                            for k, (j, text) in enumerate(zip(top, shown), start=1)]
    save_png(draw_grid(tiles, captions, [None] * len(tiles), len(tiles), [score_key(args.score, net.middle)]), args.out)
    print(f'wrote {args.out}')


# ----------------------------------------------------------------------------- command line
def add_model_args(parser):
    parser.add_argument('--resume', required=True, help='checkpoint (ours or the release\'s)')
    parser.add_argument('--img_h', default=384, type=int, help='network input height (as test.py)')
    parser.add_argument('--img_w', default=192, type=int, help='network input width (as test.py)')
    parser.add_argument('--arch', default='resnet50', choices=('resnet50',), help='backbone')
    parser.add_argument('--gpu', default='0', help="CUDA device(s); the CPU when none is visible")


def add_features_args(parser, score=False):
    parser.add_argument('--features', required=True, help='features file of test.py --save-features')
    parser.add_argument('--trial', default=None, type=int, help="trial to use (default: the file's first)")
    if score:
        parser.add_argument('--score', default='ALL', help='similarity to rank by: ' + ', '.join(evaluation.SCORES))


def positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f'expected a positive integer, got {text}')
    return value


def image_grid_parser(sub, name, help, modality_help, func):
    """A subcommand that draws a grid of the user's own images through a checkpoint's network."""
    p = sub.add_parser(name, help=help)
    add_model_args(p)
    p.add_argument('images', nargs='+', metavar='IMAGE', help='images to show')
    p.add_argument('--modality', required=True, choices=tuple(MODALITIES), help=f"the images' modality: {modality_help}")
    p.add_argument('--height', default=160, type=positive_int, help='tile height in pixels')
    p.add_argument('--out', required=True, help='PNG file to write')
    p.set_defaults(func=func)
    return p


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=' '.join(__doc__.split('\n\n')[0].split()))
    sub = parser.add_subparsers(dest='command', required=True)

    p = image_grid_parser(sub, 'middle', 'images beside their middle-modality images',
                          'the generator path they go through (thermal = infrared)', cmd_middle)
    p.add_argument('--columns', default=4, type=positive_int, help='image pairs per row')
    image_grid_parser(sub, 'attention', 'the spatial attention of each MIA and the layer-4 feature energy',
                      'the branch they go through (thermal = infrared)', cmd_attention)

    p = sub.add_parser('ranking', help='ranking lists of test queries, from a features file')
    add_features_args(p, score=True)
    which = p.add_mutually_exclusive_group()
    which.add_argument('--queries', default=5, type=positive_int, help='number of queries, spread over the query list')
    which.add_argument('--query', default=None, help='one query image (path, or relative to the data root)')
    p.add_argument('--topk', default=10, type=positive_int, help='gallery images shown per query')
    p.add_argument('--height', default=160, type=positive_int, help='tile height in pixels')
    p.add_argument('--data-path', dest='data_path', default=None,
                   help="dataset root if it moved since test.py ran (default: the one in the file)")
    p.add_argument('--out', required=True,
                   help='folder for the PNGs (one per query), or FILE.png for all queries in one image')
    p.set_defaults(func=cmd_ranking)

    p = sub.add_parser('tsne', help='t-SNE of the four feature groups of some identities')
    add_features_args(p)
    p.add_argument('--ids', default=10, type=positive_int, help='number of identities')
    p.add_argument('--feature', default='bn', choices=('bn', 'pool'), help='feature kind')
    p.add_argument('--seed', default=0, type=int, help='t-SNE random state')
    p.add_argument('--dpi', default=150, type=positive_int, help='resolution of a PNG (the figure is 5 x 4.4 inches)')
    p.add_argument('--out', required=True, help='file to write: .png, or .pdf / .svg for a vector figure')
    p.set_defaults(func=cmd_tsne)

    p = sub.add_parser('distances', help='intra/inter-identity cross-modality distance histograms')
    add_features_args(p)
    p.add_argument('--feature', default='bn', choices=('bn', 'pool'), help='feature kind')
    p.add_argument('--dpi', default=150, type=positive_int, help='resolution of a PNG (the figure is 8 x 3.2 inches)')
    p.add_argument('--out', required=True, help='file to write: .png, or .pdf / .svg for a vector figure')
    p.set_defaults(func=cmd_distances)

    p = sub.add_parser('cmc', help='CMC curves of one or more results files')
    p.add_argument('results', nargs='+', metavar='RESULTS.json', help='results files of test.py --results')
    p.add_argument('--score', default='ALL', help='score to plot: ' + ', '.join(evaluation.SCORES))
    p.add_argument('--labels', nargs='+', default=None, help='legend names (default: the file names)')
    p.add_argument('--dpi', default=150, type=positive_int, help='resolution of a PNG (the figure is 5 x 3.6 inches)')
    p.add_argument('--out', required=True, help='file to write: .png, or .pdf / .svg for a vector figure')
    p.set_defaults(func=cmd_cmc)

    p = sub.add_parser('rank', help='rank a folder of your own images against a query image')
    add_model_args(p)
    p.add_argument('--query', required=True, help='query image')
    p.add_argument('--query-modality', dest='query_modality', required=True, choices=tuple(MODALITIES),
                   help='modality of the query (thermal = infrared); the gallery is taken as the other one')
    p.add_argument('--gallery', required=True, help='folder of gallery images (searched recursively)')
    p.add_argument('--score', default='ALL', help='similarity to rank by: ' + ', '.join(evaluation.SCORES))
    p.add_argument('--topk', default=10, type=positive_int, help='gallery images shown')
    p.add_argument('--test-batch', dest='test_batch', default=64, type=positive_int, help='images per batch')
    p.add_argument('--workers', default=0, type=int, help='data loading processes')
    p.add_argument('--height', default=160, type=positive_int, help='tile height in pixels')
    p.add_argument('--out', required=True, help='PNG file to write')
    p.set_defaults(func=cmd_rank)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    # --out is checked before anything is read, embedded or drawn.
    if args.command == 'ranking' and not args.out.lower().endswith('.png'):
        check_output_dir(args.out, '--out')
    else:
        check_output_file(args.out, '--out')
    args.func(args)


if __name__ == '__main__':
    run_main(main)
