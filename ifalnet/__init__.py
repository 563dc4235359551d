"""ifalnet: the machinery around the method. Scripts (train.py, test.py, ...) and the training step
(recipe.py) import it; it imports the method modules at the top level (model.py, resnet.py, loss.py,
data_loader.py, data_manager.py, eval_metrics.py, utils.py), never a script or recipe.py; the
method modules never import it. One idea per file:

Running on a device
    devices.py          device choice (--gpu), --amp precision and autocast, memory format
    ddp.py              everything torchrun needs: ranks, process group, barrier, DDP
    interruption.py     SIGTERM and SIGINT as one exception, saves a signal cannot cut, a script's exit
Command lines and files
    flags.py            the parser, flags with both spellings, the shared flags, the component switches
    atomic.py           files written atomically, a failed write as one line
    optional_extras.py  an optional extra's module imported when needed, or the pip command that installs it
    output_paths.py     output paths checked before any work, stale temporary files, the log tee
    checkpoints.py      checkpoint files: safe reading, atomic writing, release keys, the network they hold
    environment_stamp.py  the software and hardware that made a file (versions, device, commit), in every file
    run_files.py        a training run: its name, files, lock, collisions, kept epochs, random states
    val_selection.py    model selection on held-out identities (train.py --select val)
Evaluation
    problems.py         the test problem of a trial: query and gallery sets, metric, removal rule
    feature_bank.py     each test image embedded once; embedding the trials of a test
    scoring.py          similarities, re-ranking, scores per trial and camera, collapse check, summaries
    rerank.py           k-reciprocal re-ranking (Zhong et al., CVPR 2017), vectorised
    report_text.py      what test.py and validation print: tables, titles, spread, per camera
    partial_sets.py     what a copy of a test set lacks (camera folders, identities, images)
    features_file.py    the features file of test.py --save-features (writer, reader, rescoring)
    results_file.py     the results file of test.py --results (writer and reader)
    run_comparison.py   results files of several runs as one Markdown, LaTeX or CSV table
    slow_metrics.py     the metrics as a per-query loop, re-ranking one image at a time (yardsticks)
    corruptions.py      corrupted test images of the corruption benchmark: the 20 corruptions, seeds, mix
    corruption_sweep.py a test under corruption: its cells embedded and scored, resuming, the summary
Sharing a model, and the data it was made on
    weights_folder.py   the model folder to share: safetensors weights, config.json, checksums; reading it safely
    hub_card.py         the folder's model card: the Hub's YAML front matter and model-index, the page
    hub_transfer.py     weights from a URL (hash-checked) or the Hugging Face Hub, and pushing a folder there
    dataset_census.py   a dataset copy counted and checked against its published statistics, or as made
Figures, export, speed, synthetic data
    figure_data.py      what the figures show: ranked lists, t-SNE points, distances, CMC curves
    image_grids.py      image grids: tiles, borders, captions, the ranking grid
    plots.py            t-SNE, distance and CMC plots (matplotlib)
    attention_maps.py   the attention maps of each MIA and layer 4's energy, and their overlays
    deploy.py           the deployable branch, its ONNX and TorchScript files, running them
    timing.py           the timing helper of bench.py: best of rounds, peak memory, score matrices
    costs.py            the cost of a network: parameters, FLOPs, latency, peak memory (bench.py --parts cost)
    toy_datasets.py     synthetic datasets in the real on-disk layouts

This file imports nothing: `from ifalnet import scoring` loads only what it asks for.
"""
