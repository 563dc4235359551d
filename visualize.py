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
checkpoint. Image grids use Pillow; the plots and the attention colours need matplotlib, t-SNE also
scikit-learn (both optional: pip install -r requirements-vis.txt).

This is the command line: what a figure shows is computed in ifalnet/figure_data.py (attention maps
in ifalnet/attention_maps.py) and drawn by ifalnet/image_grids.py and ifalnet/plots.py.
"""
import argparse
import os

from ifalnet.flags import MODALITIES, image_side
from ifalnet.interruption import run_main
from ifalnet.scoring import SCORES
from utils import ReIDError


def add_model_args(parser):
    parser.add_argument('--resume', required=True,
                        help="checkpoint (ours or the release's), or a model folder of export.py --format safetensors")
    parser.add_argument('--img_h', default=None, type=image_side,
                        help="network input height (default: the checkpoint's, else 384, as test.py)")
    parser.add_argument('--img_w', default=None, type=image_side,
                        help="network input width (default: the checkpoint's, else 192, as test.py)")
    parser.add_argument('--arch', default='resnet50', choices=('resnet50',), help='backbone')
    parser.add_argument('--gpu', default='0', help="CUDA device(s); the CPU when none is visible")


def add_features_args(parser, score=False):
    parser.add_argument('--features', required=True, help='features file of test.py --save-features')
    parser.add_argument('--trial', default=None, type=int, help="trial to use (default: the file's first)")
    if score:
        parser.add_argument('--score', default='ALL', help='similarity to rank by: ' + ', '.join(SCORES))


def positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f'expected a positive integer, got {text}')
    return value


def image_grid_parser(sub, name, help, modality_help):
    """A subcommand that draws a grid of the user's own images through a checkpoint's network."""
    p = sub.add_parser(name, help=help, allow_abbrev=False)
    add_model_args(p)
    p.add_argument('images', nargs='+', metavar='IMAGE', help='images to show')
    p.add_argument('--modality', required=True, choices=MODALITIES, help=f"the images' modality: {modality_help}")
    p.add_argument('--height', default=160, type=positive_int, help='tile height in pixels')
    p.add_argument('--out', required=True, help='PNG file to write')
    return p


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=' '.join(__doc__.split('\n\n')[0].split()), allow_abbrev=False)
    sub = parser.add_subparsers(dest='command', required=True)

    p = image_grid_parser(sub, 'middle', 'images beside their middle-modality images',
                          'the generator path they go through (thermal = infrared)')
    p.add_argument('--columns', default=4, type=positive_int, help='image pairs per row')
    image_grid_parser(sub, 'attention', 'the spatial attention of each MIA and the layer-4 feature energy',
                      'the branch they go through (thermal = infrared)')

    p = sub.add_parser('ranking', allow_abbrev=False, help='ranking lists of test queries, from a features file')
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

    p = sub.add_parser('tsne', allow_abbrev=False, help='t-SNE of the four feature groups of some identities')
    add_features_args(p)
    p.add_argument('--ids', default=10, type=positive_int, help='number of identities')
    p.add_argument('--feature', default='bn', choices=('bn', 'pool'), help='feature kind')
    p.add_argument('--seed', default=0, type=int, help='t-SNE random state')
    p.add_argument('--dpi', default=150, type=positive_int, help='resolution of a PNG (the figure is 5 x 4.4 inches)')
    p.add_argument('--out', required=True, help='file to write: .png, or .pdf / .svg for a vector figure')

    p = sub.add_parser('distances', allow_abbrev=False, help='intra/inter-identity cross-modality distance histograms')
    add_features_args(p)
    p.add_argument('--feature', default='bn', choices=('bn', 'pool'), help='feature kind')
    p.add_argument('--dpi', default=150, type=positive_int, help='resolution of a PNG (the figure is 8 x 3.2 inches)')
    p.add_argument('--out', required=True, help='file to write: .png, or .pdf / .svg for a vector figure')

    p = sub.add_parser('cmc', allow_abbrev=False, help='CMC curves of one or more results files')
    p.add_argument('results', nargs='+', metavar='RESULTS.json', help='results files of test.py --results')
    p.add_argument('--score', default='ALL', help='score to plot: ' + ', '.join(SCORES))
    p.add_argument('--labels', nargs='+', default=None, help='legend names (default: the file names)')
    p.add_argument('--dpi', default=150, type=positive_int, help='resolution of a PNG (the figure is 5 x 3.6 inches)')
    p.add_argument('--out', required=True, help='file to write: .png, or .pdf / .svg for a vector figure')

    p = sub.add_parser('rank', allow_abbrev=False, help='rank a folder of your own images against a query image')
    add_model_args(p)
    p.add_argument('--query', required=True, help='query image')
    p.add_argument('--query-modality', dest='query_modality', required=True, choices=MODALITIES,
                   help='modality of the query (thermal = infrared); the gallery is taken as the other one')
    p.add_argument('--gallery', required=True, help='folder of gallery images (searched recursively)')
    p.add_argument('--score', default='ALL', help='similarity to rank by: ' + ', '.join(SCORES))
    p.add_argument('--topk', default=10, type=positive_int, help='gallery images shown')
    p.add_argument('--test-batch', dest='test_batch', default=64, type=positive_int, help='images per batch')
    p.add_argument('--workers', default=0, type=int, help='data loading processes')
    p.add_argument('--height', default=160, type=positive_int, help='tile height in pixels')
    p.add_argument('--out', required=True, help='PNG file to write')
    return parser.parse_args(argv)


if __name__ == '__main__':   # the flags first: a mistyped one stops here, before torch and the modules below
    parse_args()                # are imported (main parses them again)

import numpy as np
from PIL import Image

from data_manager import dataset_info
from ifalnet import attention_maps, figure_data as data
from ifalnet.checkpoints import input_size, load_model
from ifalnet.devices import select_device
from ifalnet.feature_bank import FeatureBank
from ifalnet.features_file import Features
from ifalnet.image_grids import (draw_grid, folder_and_name, load_tile, ranking_grid, save_png, score_key, score_labels,
                                 stack_rows, tile_size)
from ifalnet.output_paths import check_output_dir, check_output_file
from ifalnet.plots import (ATTENTION_COLORMAP, cmc_figure, distances_figure, optional, plot_format, save_figure,
                           tsne_figure)
from ifalnet.problems import ImageSet
from ifalnet.scoring import has_middle, score_similarities
from model import Modal


def cmd_middle(args):
    for path in args.images:
        if not os.path.isfile(path):
            raise ReIDError(f'image not found: {path}')
    device = select_device(args.gpu)
    net = load_model(args.resume, device, args.arch)
    args.img_h, args.img_w = input_size(net.trained_on, args.img_h, args.img_w, args.resume, 'running')
    if not net.middle:
        raise ReIDError(f'{args.resume} is a network without the middle modality (trained with --no-middle): '
                        'it makes no middle-modality images')
    inputs, middles = data.middle_images(net, args.images, Modal.named(args.modality), args.img_h, args.img_w, device)
    size = tile_size(args.height, args.img_h, args.img_w)
    tiles, captions = [], []
    for path, inp, mid in zip(args.images, inputs, middles):
        # both as the network sees them, enlarged without smoothing
        tiles += [inp.resize(size, Image.Resampling.NEAREST), mid.resize(size, Image.Resampling.NEAREST)]
        captions += [folder_and_name(path), ['middle', f'of {args.modality}']]
    grid = draw_grid(tiles, captions, [None] * len(tiles), 2 * args.columns)
    save_png(grid, args.out)
    print(f'{len(inputs)} {args.modality} image(s) and their middle-modality images written to {args.out}')


def cmd_attention(args):
    colormaps = optional('matplotlib', 'attention').colormaps
    for path in args.images:
        if not os.path.isfile(path):
            raise ReIDError(f'image not found: {path}')
    device = select_device(args.gpu)
    net = load_model(args.resume, device, args.arch)
    args.img_h, args.img_w = input_size(net.trained_on, args.img_h, args.img_w, args.resume, 'running')
    inputs, x = data.network_inputs(args.images, args.img_h, args.img_w, device)
    maps = attention_maps.attention_maps(net, x, Modal.named(args.modality))
    size = tile_size(args.height, args.img_h, args.img_w)
    rows = attention_maps.attention_tiles(inputs, maps, size, colormaps[ATTENTION_COLORMAP])
    tiles = [tile for row in rows for tile, _ in row]
    captions = [caption or folder_and_name(path) for path, row in zip(args.images, rows) for _, caption in row]
    key = [f'colours: {ATTENTION_COLORMAP}, blue low to red high, over the image',
           'MIA spatial attention: fixed scale 0..1 (a sigmoid)',
           "energy: layer 4's sum of squares over channels,", 'min-max scaled per tile']
    save_png(draw_grid(tiles, captions, [None] * len(tiles), len(rows[0]), key), args.out)
    print(f'attention maps of {len(inputs)} {args.modality} image(s) written to {args.out}')


def cmd_ranking(args):
    feats = Features(args.features)
    trial = feats.trial(args.trial)
    data.check_score(args.score, has_middle(feats.names))
    positions = data.choose_queries(feats, trial, args.queries, args.query, args.data_path)
    lists, sims = data.ranked_lists(feats, trial, args.score, positions)
    size = tile_size(args.height, feats.meta['img_h'], feats.meta['img_w'])
    q_rows = feats.side(trial, 'query')
    one_image = args.out.lower().endswith('.png')   # the grids one under the other, the key once at the end
    grids = [(f'trial{trial}_query{p:05d}.png',
              ranking_grid(feats, trial, q_rows[p], ranked, sims[i], args.topk, size, args.data_path, args.score,
                           with_key=not one_image or i == len(positions) - 1))
             for i, (p, ranked) in enumerate(zip(positions, lists))]
    # Everything is drawn before anything is written, so an unreadable image leaves nothing behind.
    if one_image:
        save_png(stack_rows([grid for _, grid in grids]), args.out)
        print(f'wrote {args.out} ({len(grids)} queries)')
        return
    for name, grid in grids:
        path = os.path.join(args.out, name)
        save_png(grid, path)
        print(f'wrote {path}')


def cmd_tsne(args):
    optional('matplotlib.figure', 'tsne')
    optional('sklearn.manifold', 'tsne')
    plot_format(args.out)
    feats = Features(args.features)
    trial = feats.trial(args.trial)
    xy, identity, group = data.tsne_points(feats, trial, args.ids, args.feature, args.seed)
    word = dataset_info(feats.dataset).second_modality
    fig = tsne_figure(xy, identity, group, word,
                      f't-SNE of {args.feature} features: {len(np.unique(identity))} identities '
                      f'({dataset_info(feats.dataset).name}, trial {trial})')
    save_figure(fig, args.out, args.dpi)
    print(f'wrote {args.out}')


def cmd_distances(args):
    optional('matplotlib.figure', 'distances')
    plot_format(args.out)
    feats = Features(args.features)
    trial = feats.trial(args.trial)
    distances = data.cross_modal_distances(feats, trial, args.feature)
    word = dataset_info(feats.dataset).second_modality
    for branch, (intra, inter) in distances.items():
        print(f'{branch}: {len(intra)} intra-identity pairs, mean {intra.mean() if len(intra) else float("nan"):.4f}; '
              f'{len(inter)} inter-identity pairs, mean {inter.mean() if len(inter) else float("nan"):.4f}')
    fig = distances_figure(distances, word, f'{args.feature} features ({dataset_info(feats.dataset).name}, trial {trial})')
    save_figure(fig, args.out, args.dpi)
    print(f'wrote {args.out}')


def cmd_cmc(args):
    optional('matplotlib.figure', 'cmc')
    data.check_score(args.score)
    plot_format(args.out)
    labels = args.labels or [os.path.splitext(os.path.basename(p))[0] for p in args.results]
    if len(labels) != len(args.results):
        raise ReIDError(f'--labels gives {len(labels)} names for {len(args.results)} results files')
    runs = [data.read_cmc(path, args.score) for path in args.results]
    save_figure(cmc_figure(runs, labels, args.score), args.out, args.dpi)
    print(f'wrote {args.out}')


def cmd_rank(args):
    if not os.path.isfile(args.query):
        raise ReIDError(f'--query image not found: {args.query}')
    data.check_score(args.score)
    gallery = data.list_gallery(args.gallery)
    q_modal = Modal.named(args.query_modality)
    g_modal = Modal.VISIBLE if q_modal == Modal.THERMAL else Modal.THERMAL
    device = select_device(args.gpu)
    net = load_model(args.resume, device, args.arch)
    args.img_h, args.img_w = input_size(net.trained_on, args.img_h, args.img_w, args.resume, 'running')
    data.check_score(args.score, net.middle)
    bank = FeatureBank(net, device, args.img_h, args.img_w, args.test_batch, args.workers)
    query_set = ImageSet([args.query], None, None, q_modal)
    gallery_set = ImageSet(gallery, None, None, g_modal)
    bank.add(query_set.paths, q_modal)
    bank.add(gallery_set.paths, g_modal)
    sims = score_similarities(bank.get(query_set), bank.get(gallery_set))[args.score][0]
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


COMMANDS = {'middle': cmd_middle, 'attention': cmd_attention, 'ranking': cmd_ranking, 'tsne': cmd_tsne,
            'distances': cmd_distances, 'cmc': cmd_cmc, 'rank': cmd_rank}


def main(argv=None):
    args = parse_args(argv)
    # --out is checked before anything is read, embedded or drawn.
    if args.command == 'ranking' and not args.out.lower().endswith('.png'):
        check_output_dir(args.out, '--out')
    else:
        check_output_file(args.out, '--out')
    COMMANDS[args.command](args)


if __name__ == '__main__':
    run_main(main)
