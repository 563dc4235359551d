"""The model card of a model folder (its README.md): YAML front matter in the Hugging Face Hub's format
and a page that says what the weights are, how they were trained and selected, on which dataset copy,
what they score and in which software and hardware.

The front matter holds `library_name`, `tags`, `datasets`, `metrics`, `pipeline_tag` and, when
export.py is given a results file of test.py (`--results`), a `model-index` in the Hub's schema
(github.com/huggingface/hub-docs, modelcard.md): one result with the task, the dataset (its type and
name, the search mode as `config`, the test split, and as `args` the direction, protocol, trials,
gallery and shots), and the metrics Rank-1, mAP and mINP of the paper's score (`ALL`), each the
mean over the trials in percent with its standard deviation and trial count as `args`. The numbers
are the results file's, rounded to two decimals. `model_card(config, hashes, results)` writes the
whole card; `front_matter` the YAML (a small writer of the block style for the plain dicts, lists,
strings and numbers used here, strings quoted as JSON, which YAML reads).
"""
import json

import data_manager as dm
from ifalnet.dataset_census import copy_sentence
from ifalnet.environment_stamp import describe as describe_environment
from model import Architecture

SCORE = 'ALL'   # the paper's score
METRICS = (('rank1', 'rank-1', 'Rank-1'), ('mAP', 'mAP', 'mAP'), ('mINP', 'mINP', 'mINP'))
TAGS = ['person-re-identification', 'visible-infrared', 'cross-modality', 'ifalnet', 'pytorch', 'safetensors']


def _scalar(value):
    if isinstance(value, dict):
        return '{}'
    if isinstance(value, list):
        return '[]'
    return json.dumps(value)


def yaml_lines(value, indent=0):
    """`value` (dicts, lists, strings, numbers, booleans, None) as block-style YAML lines."""
    pad = ' ' * indent
    if isinstance(value, dict):
        lines = []
        for key, item in value.items():
            if isinstance(item, (dict, list)) and item:
                lines.append(f'{pad}{key}:')
                lines += yaml_lines(item, indent + 2)
            else:
                lines.append(f'{pad}{key}: {_scalar(item)}')
        return lines
    if isinstance(value, list):
        lines = []
        for item in value:
            if isinstance(item, (dict, list)) and item:
                inner = yaml_lines(item, indent + 2)
                lines.append(f'{pad}- {inner[0][indent + 2:]}')
                lines += inner[1:]
            else:
                lines.append(f'{pad}- {_scalar(item)}')
        return lines
    return [pad + _scalar(value)]


def percent(value):
    return round(100 * float(value), 2)


def model_index(results, name):
    """The Hub's model-index of a results file of test.py: one result, the `ALL` score's metrics."""
    info = dm.dataset_info(results['dataset'])
    mean, std = results['mean'][SCORE], (results.get('std') or {}).get(SCORE, {})
    dataset = {'type': info.key, 'name': info.name}
    if results.get('mode') and info.modes:
        dataset['config'] = f'{results["mode"]}-search'
    dataset['split'] = 'test'
    dataset['args'] = {'direction': results.get('direction'), 'protocol': results.get('protocol'),
                       'trials': list(results['trials']), 'gallery': results.get('gallery'), 'shots': results.get('shots')}
    metrics = [{'type': kind, 'value': percent(mean[key]), 'name': f'{label} ({SCORE}, mean of {len(results["trials"])} '
                                                                    f'trial{"s" if len(results["trials"]) != 1 else ""})',
                'args': {'std': percent(std[key]) if key in std else None, 'trials': len(results['trials'])}}
               for key, kind, label in METRICS]
    return [{'name': name, 'results': [{'task': {'type': 'image-feature-extraction',
                                                 'name': 'Visible-infrared person re-identification'},
                                        'dataset': dataset, 'metrics': metrics}]}]


def trained_dataset(config):
    args = config.get('training_args') or {}
    return args.get('dataset') if args.get('dataset') in dm.DATASETS else None


def front_matter(config, results, name):
    datasets = [dm.DATASETS[key].name for key in dict.fromkeys(k for k in (trained_dataset(config),
                                                                           results and results['dataset']) if k)]
    data = {'library_name': 'pytorch', 'tags': TAGS, 'datasets': datasets,
            'metrics': ['rank-1', 'mAP', 'mINP'], 'pipeline_tag': 'image-feature-extraction'}
    if results:
        data['model-index'] = model_index(results, name)
    return '---\n' + '\n'.join(yaml_lines(data)) + '\n---\n'


def selection(config):
    """How the exported checkpoint was chosen, in words."""
    source, args = config['source'], config.get('training_args') or {}
    file, epoch = source['file'], source.get('epoch')
    rank1 = source.get('cmc')[0] if isinstance(source.get('cmc'), list) and source['cmc'] else None
    scored = f', validation Rank-1 {percent(rank1):.2f}%' if rank1 is not None else ''
    if not args:
        return (f'`{file}`, epoch {epoch}{scored}; a release checkpoint stores no training arguments, so how it was '
                'chosen is not recorded')
    if file.endswith('_best.t'):
        if args.get('select') == 'val':
            return (f'`{file}`: the epoch with the best Rank-1 on training identities held out of training '
                    f'(`train.py --select val`), epoch {epoch}{scored}')
        return (f'`{file}`: the epoch with the best Rank-1 on gallery trial 0 of the test set, the release\'s rule '
                f'(`train.py --select test`), epoch {epoch}{scored}; the test scores below are of the same test set')
    if file.endswith('_last.t'):
        return f'`{file}`: the last epoch trained, epoch {epoch}{scored}'
    return f'`{file}`, epoch {epoch}{scored}'


def results_table(results):
    mean, std = results['mean'], results.get('std') or {}
    rows = ['| score | Rank-1 | mAP | mINP |', '|---|---|---|---|']
    for score, values in mean.items():
        spread = std.get(score, {})
        cell = lambda key: f'{percent(values[key]):.2f}' + (f' ± {percent(spread[key]):.2f}' if key in spread else '')
        rows.append(f'| {score} | {cell("rank1")} | {cell("mAP")} | {cell("mINP")} |')
    return '\n'.join(rows)


def evaluation(results):
    if not results:
        return ('Not evaluated in this card: `export.py --results FILE` (a results file of `test.py --results`) '
                'adds the scores.')
    info = dm.dataset_info(results['dataset'])
    setting = [f'dataset {info.name}' + (f', {results["mode"]}-search' if results.get('mode') and info.modes else ''),
               f'direction {results.get("direction")}', f'protocol {results.get("protocol")}',
               f'{len(results["trials"])} trial(s) ({", ".join(map(str, results["trials"]))})',
               f'gallery {results.get("gallery")}, {results.get("shots")}-shot']
    lines = ['Test: ' + '; '.join(setting) + '. Mean ± standard deviation over the trials, in percent; '
             f'the paper reports `{SCORE}`.', '', results_table(results)]
    if results.get('dataset_copy'):
        lines += ['', 'Test set copy: ' + copy_sentence(results['dataset_copy'])]
    if results.get('warnings'):
        lines += ['', 'The test set was incomplete: ' + '; '.join(results['warnings'])]
    if results.get('rerank'):
        lines += ['', f'With k-reciprocal re-ranking: {results["rerank"]}.']
    return '\n'.join(lines)


def environments(config, results):
    lines = []
    for label, record in (('trained with', config.get('trained_with')),
                          ('tested with', (results or {}).get('environment')),
                          ('exported with', config.get('environment'))):
        lines.append(f'- {label}: ' + (describe_environment(record) if isinstance(record, dict) else 'not recorded'))
    return '\n'.join(lines)


def model_card(config, hashes, results=None):
    """README.md of a model folder: `config` (config.json), `hashes` {file: sha256} of model.safetensors
    and config.json, `results` a results file of test.py (or None)."""
    dataset = trained_dataset(config)
    name = 'IFALNet' + (f' ({dm.DATASETS[dataset].name})' if dataset else '')
    args = config.get('training_args')
    size = config['image_size']
    copy = (copy_sentence(config['dataset_copy']) if config.get('dataset_copy') else
            'not recorded (the checkpoint predates the dataset check, or is a release checkpoint)')
    arguments = ('```\n' + '\n'.join(f'{k}={v}' for k, v in sorted(args.items())) + '\n```' if args else
                 'Not recorded (a release checkpoint stores no training arguments).')
    commit = (config.get('trained_with') or {}).get('commit')
    body = f'''
# {name}

IFALNet ("Middle modality interactive feature attention learning for Visible-Infrared Person
Re-Identification") for visible-infrared person re-identification, exported by this reproduction's
`export.py --format safetensors` from `{config['source']['file']}`. Network: {_network(config)};
{config['class_num']} training identities{'' if config['classifier'] else ' (the classifier is not included)'}.

## Use

```python
import torch
net = torch.hub.load('PATH/TO/THE/REPOSITORY', 'ifalnet', source='local', weights='PATH/TO/THIS/FOLDER')
```

or `python3 test.py --dataset {dataset or 'sysu'} --resume PATH/TO/THIS/FOLDER` in the repository. Input: RGB images
resized to {size['width']}x{size['height']} (width x height) with LANCZOS, divided by 255, normalised with the
ImageNet mean {config['normalization']['mean']} and std {config['normalization']['std']}. In eval mode
`net(x, x, x, x, modal)` (modal 1 visible, 2 infrared/thermal) returns the unit-length pool and BN
features of the original and the middle-modality branch, each (2B, {config['feature_dim']}).

## Training

- Dataset copy: {copy}
- Checkpoint: {selection(config)}
- Project commit: {('`' + commit + '`') if commit else 'not recorded'}

Training arguments:

{arguments}

## Evaluation

{evaluation(results)}

## Environment

{environments(config, results)}

## Files

| file | sha256 |
|---|---|
| `model.safetensors` | `{hashes['model.safetensors']}` |
| `config.json` | `{hashes['config.json']}` |

`sha256sum -c checksums.sha256` checks every file; the loaders check them too and refuse a changed
byte. The weights are safetensors (reading them runs no code).
'''
    return front_matter(config, results, name) + body


def _network(config):
    text = Architecture.from_dict(config['architecture']).describe()
    if config['architecture']['middle']:
        text += (', working squeeze-excitation' if config['working_se'] else
                 f', release squeeze-excitation with channels {",".join(map(str, config["se_channels"]))}')
    return text
