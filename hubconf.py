"""torch.hub's entry point: `torch.hub.load(REPO_OR_DIR, 'ifalnet', weights=...)` returns a trained
IFALNet in eval mode, from a model folder written by `export.py --format safetensors`.

    net = torch.hub.load('path/to/this/repository', 'ifalnet', source='local', weights='ifalnet_sysu/')
    net = torch.hub.load('path/to/this/repository', 'ifalnet', source='local',
                         weights='https://example.org/ifalnet_sysu-1a2b3c4d.safetensors')

`weights`: a model folder, its model.safetensors, the URL of such a file (the sha256 start in its
name is checked, torchvision's convention), or a Hugging Face Hub repo id (with huggingface_hub
installed); see ifalnet/hub_transfer.py. The folder's checksums are checked and nothing read runs
code (safetensors and JSON only). torch.hub puts this repository's folder first on sys.path while it
loads, so its top-level modules (model, utils, ...) are imported under those names.
"""
dependencies = ['torch', 'safetensors']


def ifalnet(weights, map_location='cpu'):
    """IFALNet with the weights of `weights` (a model folder, a .safetensors file, a URL of one, or a Hub
    repo id), on `map_location`, in eval mode. In eval mode `net(x, x, x, x, modal)` (modal 1 for
    visible images, 2 for infrared) gives the unit-length pool and BN features of the original and
    middle-modality branch, (2B, 2048) each; the images are normalised as its folder's config.json says."""
    import torch

    from ifalnet.checkpoints import load_model
    from ifalnet.hub_transfer import local_weights
    net = load_model(local_weights(weights), torch.device(map_location), channels_last=False, verbose=False)
    return net.eval()
