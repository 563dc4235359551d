"""The plots of the figures (visualize.py): t-SNE of the four feature groups, distance histograms
between the modalities, CMC curves, as matplotlib figures (arrays in, a figure out) saved as PNG, PDF
or SVG. matplotlib (and scikit-learn for t-SNE) are optional: `optional` says how to install them.
Titles wider than the figure are wrapped (`fit_titles`: text is measured in points and the figure in
inches, so what fits fits at every --dpi).
"""
import importlib
import os
import textwrap

import numpy as np

from ifalnet.atomic import atomic_write
from ifalnet.environment_stamp import figure_metadata
from utils import ReIDError

PIP_HINT = 'pip install -r requirements-vis.txt'

PIP_NAMES = {'matplotlib': 'matplotlib', 'sklearn': 'scikit-learn'}

PLOT_FORMATS = ('png', 'pdf', 'svg')   # --out of the plots: PNG, or vector PDF / SVG
FONT, TITLE_FONT, SMALL_FONT = 10, 11, 9   # plot text sizes (points)
# t-SNE groups: (name, marker); the name's "{}" is the dataset's second-modality word.
TSNE_GROUPS = (('visible', 'o'), ('visible middle', 's'), ('{}', '^'), ('{} middle', 'v'))

ATTENTION_COLORMAP = 'jet'   # the attention overlays' colours (matplotlib's; torchreid's activation maps use jet too)


def optional(module, command):
    """Import an optional dependency, or stop with the pip command that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        package = PIP_NAMES[module.split('.')[0]]
        raise ReIDError(f'visualize.py {command} needs {package}, which is not installed: {PIP_HINT}') from None


def plot_format(path):
    """The file format of a plot's --out, from its name: png, or the vector pdf and svg."""
    kind = os.path.splitext(path)[1].lower().lstrip('.')
    if kind not in PLOT_FORMATS:
        raise ReIDError(f'--out {path}: expected a .png, .pdf or .svg file name (PDF and SVG are vector figures)')
    return kind


def titles(fig):
    """The figure's title texts: each axes' (centre, left, right) and the figure's suptitle."""
    texts = [t for ax in fig.axes for t in (ax.title, ax._left_title, ax._right_title)]
    return [t for t in texts + [fig._suptitle] if t is not None and t.get_text()]


def fit_titles(fig, margin=4):
    """Wrap every title of `fig` that does not fit its width (a title is centred on its axes, so it has
    twice the distance from that centre to the nearer edge of the figure, less `margin` pixels): lines
    are split at spaces until the drawn title fits. Returns `fig`."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    canvas = FigureCanvasAgg(fig)
    for _ in range(8):   # each pass re-lays the figure out (constrained layout) with the wrapped titles
        canvas.draw()
        renderer, width = canvas.get_renderer(), fig.bbox.width
        changed = False
        for text in titles(fig):
            extent = text.get_window_extent(renderer)
            centre = (extent.x0 + extent.x1) / 2
            room = 2 * min(centre, width - centre) - 2 * margin
            if extent.width <= room:
                continue
            lines = text.get_text().split('\n')
            chars = max(12, int(max(map(len, lines)) * room / extent.width))
            wrapped = '\n'.join(textwrap.fill(line, chars, break_long_words=False) for line in lines)
            if wrapped != text.get_text():
                text.set_text(wrapped)
                changed = True
        if not changed:
            break
    return fig


def save_figure(fig, path, dpi):
    """The figure written atomically, with the environment stamp in its metadata."""
    kind = plot_format(path)
    atomic_write(path, lambda f: fig.savefig(f, format=kind, dpi=dpi, metadata=figure_metadata(kind)))


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
    return fit_titles(fig)


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
    return fit_titles(fig)


def cmc_figure(runs, labels, score):
    """CMC curves (ranks 1..20) of `runs` [(curve, Rank-1, mAP, protocol words)], one per label."""
    figure = optional('matplotlib.figure', 'cmc')
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
    ax.set_title(f'CMC, {score} score, {protocols} (mean over trials)', fontsize=TITLE_FONT)
    return fit_titles(fig)
