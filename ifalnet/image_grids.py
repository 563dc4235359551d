"""Image grids of the figures (visualize.py): tiles in rows with a border colour and caption lines each,
and a key under the grid; the ranking grid of one query (torchreid's `visualize_ranked_results`, fed
by the files test.py writes). Images in, an image out; needs only Pillow.
"""
import os

import numpy as np
from PIL import Image, ImageDraw, ImageFont, PngImagePlugin

from data_manager import open_rgb
from ifalnet.atomic import atomic_write
from ifalnet.environment_stamp import figure_metadata
from ifalnet.features_file import ORIGINAL_FEATURES
from ifalnet.scoring import has_middle

# Image grids: every cell is a tile framed by a BORDER-wide border (white when it has none),
# centred in a cell at least MIN_CELL wide and as wide as its widest caption line, with caption lines
# of LINE pixels under it; cells GAP apart, MARGIN around the grid.
MARGIN, GAP, BORDER, LINE, FONT_SIZE, MIN_CELL = 6, 6, 4, 16, 13, 76
WHITE, BLACK, BLUE = (255, 255, 255), (0, 0, 0), (40, 90, 200)
GREEN, RED = (0, 170, 0), (220, 0, 0)
# What each score sums (the similarity's largest value): cosines of unit-length features.
SCORE_TERMS = {'VIS-IR FC': 1, 'VIS-MR FC': 1, 'MIS-IR FC': 1, 'MIS-MR FC': 1, 'ALL FC': 4, 'ALL': 8}


def caption_font():
    try:
        return ImageFont.load_default(size=FONT_SIZE)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        return ImageFont.load_default()


def tile_size(height, img_h, img_w):
    """(width, height) of a displayed tile: `height` pixels, the network input's aspect ratio."""
    return max(1, round(height * img_w / img_h)), height


def load_tile(path, size):
    return open_rgb(path).resize(size, Image.Resampling.LANCZOS)


def draw_grid(tiles, captions, borders, columns, key=()):
    """Equal-sized tiles in rows of `columns`, each framed in its border colour (None: no border)
    with its caption lines under it, and the lines of `key` under the grid. Cells are as wide as the
    widest caption line and the grid as wide as the key, so every text is drawn whole. Returns the grid
    as an RGB image."""
    tile_w, tile_h = tiles[0].size
    lines = max(len(c) for c in captions)
    font = caption_font()
    measure = ImageDraw.Draw(Image.new('RGB', (1, 1))).textlength
    caption_w = max([measure(text, font=font) for caption in captions for text in caption], default=0)
    framed_w = tile_w + 2 * BORDER
    cell_w, cell_h = max(framed_w, MIN_CELL, int(caption_w) + 4), tile_h + 2 * BORDER + lines * LINE
    columns = min(columns, len(tiles))
    rows = -(-len(tiles) // columns)
    key_w = max([measure(k, font=font) for k in key], default=0)
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
            draw.text((x + (cell_w - draw.textlength(text, font=font)) // 2, y + tile_h + 2 * BORDER + k * LINE),
                      text, fill=BLACK, font=font)
    return canvas


def stack_rows(images):
    """Images one under the other, left-aligned on white."""
    canvas = Image.new('RGB', (max(im.width for im in images), sum(im.height for im in images)), WHITE)
    y = 0
    for image in images:
        canvas.paste(image, (0, y))
        y += image.height
    return canvas


def save_png(image, path):
    """The image written atomically as a PNG, with the environment stamp in a text chunk."""
    info = PngImagePlugin.PngInfo()
    for key, text in figure_metadata('png').items():
        info.add_text(key, text)
    atomic_write(path, lambda f: image.save(f, format='PNG', optimize=True, pnginfo=info))


def image_text(feats, row):
    """Caption lines of a test image: its camera (none for RegDB) and identity."""
    return ([] if feats.camera[row] < 0 else [f'cam{feats.camera[row]}']) + [f'id {feats.identity[row]}']


def folder_and_name(path):
    return [os.path.basename(os.path.dirname(os.path.abspath(path))), os.path.basename(path)]


def ranking_grid(feats, trial, query_row, ranked, sims, topk, size, data_root, score, with_key=True):
    """The query, then its top-k gallery images: green border for the query's identity, red
    otherwise; similarity, camera and identity under each; the key under the grid `with_key` (grids
    stacked into one image have it once, under the last)."""
    g_rows = feats.side(trial, 'gallery')
    top = ranked[:topk]
    rows = [query_row] + [g_rows[j] for j in top]
    tiles = [load_tile(feats.image_path(r, data_root), size) for r in rows]
    shown = score_labels(sims[top])
    captions = [['query', *image_text(feats, query_row)]] + [[f'#{k} {text}', *image_text(feats, g_rows[j])]
                                                             for k, (j, text) in enumerate(zip(top, shown), start=1)]
    borders = [BLUE] + [GREEN if feats.identity[g_rows[j]] == feats.identity[query_row] else RED for j in top]
    key = [score_key(score, has_middle(feats.names)), 'border: blue query, green its identity,', 'red another identity']
    return draw_grid(tiles, captions, borders, len(tiles), key if with_key else ())


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
    terms = SCORE_TERMS[score] if middle else len(ORIGINAL_FEATURES) if score == 'ALL' else 1
    what = 'a cosine, max 1' if terms == 1 else f'sum of {terms} cosines, max {terms}'
    return f'#rank  {score} = {what}'
