"""Getting a model folder from elsewhere, and putting one on the Hugging Face Hub.

`local_weights(spec)` turns what hubconf.py's `weights` argument names into a local path that
weights_folder.read_weights reads:
- a folder or a `.safetensors` file on this machine: itself;
- a URL (https://, http://, file://) of a `.safetensors` file written by export.py: downloaded into
  torch.hub's cache (`torch.hub.get_dir()/checkpoints`, where torch.hub keeps downloaded weights),
  once; when the file name carries the start of its sha256 after a last '-' (torchvision's
  convention, `ifalnet_sysu-1a2b3c4d.safetensors`), the download and the cached copy are checked
  against it and a mismatch is refused naming both hashes;
- a Hugging Face Hub repo id (`user/name`), with huggingface_hub installed (requirements-hub.txt):
  the folder's files, downloaded by `huggingface_hub.snapshot_download` into its own cache.
`push_folder(folder, repo_id)` uploads a folder to a Hub model repository (creating it if needed)
with huggingface_hub's `HfApi.create_repo` and `upload_folder`, as the account that huggingface_hub's
login (`hf auth login`) or the HF_TOKEN variable gives. Nothing here is used offline except the local paths and file:// URLs.
"""
import os
import re
import urllib.error
import urllib.parse

import torch

from ifalnet.optional_extras import require_extra
from ifalnet.weights_folder import CHECKSUMS, FILES, sha256_of
from utils import ReIDError

URL = re.compile(r'^(https?|file)://', re.IGNORECASE)
REPO_ID = re.compile(r'^[A-Za-z0-9][\w.-]*/[\w.-]+$')
HASH_PREFIX = re.compile(r'-([a-f0-9]{8,64})\.safetensors$')   # torchvision's rule, for our files


def require_hub():
    """huggingface_hub, or a one-line error naming the pip command."""
    return require_extra('huggingface_hub', 'loading from and pushing to the Hugging Face Hub', 'requirements-hub.txt')


def check_hash(path, prefix, source):
    actual = sha256_of(path)
    if not actual.startswith(prefix):
        raise ReIDError(f'{source}: the downloaded file has sha256 {actual}, but its name says it starts with {prefix}: '
                        'the file was changed or damaged; nothing was loaded')


def download(url):
    """The file at `url` in torch.hub's cache (downloaded once), checked against the hash its name carries."""
    name = os.path.basename(urllib.parse.urlparse(url).path)
    if not name.endswith('.safetensors'):
        raise ReIDError(f'{url}: expected the URL of a .safetensors file written by export.py --format safetensors')
    found = HASH_PREFIX.search(name)
    prefix = found.group(1) if found else None
    cached = os.path.join(torch.hub.get_dir(), 'checkpoints', name)
    if not os.path.isfile(cached):
        os.makedirs(os.path.dirname(cached), exist_ok=True)
        try:
            torch.hub.download_url_to_file(url, cached, hash_prefix=prefix, progress=False)
        except RuntimeError as err:   # torch.hub's hash check
            got = re.search(r'got "([0-9a-f]+)"', str(err))
            raise ReIDError(f'{url}: the downloaded file has sha256 {got.group(1) if got else "(unknown)"}, but its name '
                            f'says it starts with {prefix}: the file was changed or damaged; nothing was kept') from None
        except (urllib.error.URLError, OSError, ValueError) as err:
            raise ReIDError(f'cannot download {url}: {getattr(err, "reason", err)}') from None
    elif prefix:
        check_hash(cached, prefix, f'{url} (cached as {cached})')
    return cached


def local_weights(spec):
    """The local path of what `spec` names (see the module)."""
    spec = os.fspath(spec)
    if os.path.exists(spec):
        return spec
    if URL.match(spec):
        return download(spec)
    if REPO_ID.match(spec):
        hub = require_hub()
        try:
            return hub.snapshot_download(repo_id=spec, allow_patterns=[*FILES, CHECKSUMS])
        except Exception as err:   # huggingface_hub's errors (offline, unknown repo, no access) have many types
            raise ReIDError(f'cannot download the Hugging Face Hub repository {spec}: '
                            f'{str(err).splitlines()[0] if str(err) else type(err).__name__}') from None
    raise ReIDError(f'weights {spec!r}: no such file or folder, and neither a URL nor a Hugging Face Hub repo id '
                    '(user/name); expected a model folder of export.py --format safetensors or its .safetensors file')


def push_folder(folder, repo_id, private=False):
    """Upload `folder` to the Hub model repository `repo_id` (created if it does not exist); returns its URL."""
    hub = require_hub()
    api = hub.HfApi()
    try:
        api.create_repo(repo_id=repo_id, repo_type='model', exist_ok=True, private=private)
        api.upload_folder(folder_path=folder, repo_id=repo_id, repo_type='model',
                          commit_message='IFALNet weights, config and model card (export.py --format safetensors)')
    except Exception as err:   # network, authentication and permission errors of huggingface_hub
        raise ReIDError(f'cannot push {folder} to the Hugging Face Hub repository {repo_id}: '
                        f'{str(err).splitlines()[0] if str(err) else type(err).__name__} (the folder is written; '
                        'log in with `hf auth login` or set HF_TOKEN, then push again)') from None
    return f'https://huggingface.co/{repo_id}'
