"""The test suite: `python3 -m pytest -q tests` (what CI runs). Each file is named after the module it
covers or the feature it checks; the datasets are small synthetic ones in the real layouts
(conftest.py), golden/ holds values computed by the release, helpers/ the programs some tests start.

The method modules
    model.py                        test_model.py
    resnet.py                       test_resnet.py
    loss.py                         test_loss.py (against the release's golden values)
    data_manager.py                 test_data_manager.py
    data_loader.py                  test_data_loader.py
    eval_metrics.py                 test_eval_metrics.py (against the release's golden values)
    recipe.py                       test_train_and_test.py (schedule, one epoch, mixed precision)
The package
    ifalnet/atomic.py               test_atomic.py
    ifalnet/checkpoints.py          test_checkpoints.py
    ifalnet/flags.py                test_flags.py
    ifalnet/rerank.py               test_rerank.py
    ifalnet/val_selection.py        test_val_selection.py
    ifalnet/toy_datasets.py         test_toy_datasets.py (with synthetic.py)
    ifalnet/ddp.py                  test_torchrun.py
    ifalnet/costs.py                test_costs.py (FLOPs against an analytic count), test_bench.py (the cost part)
    ifalnet/environment_stamp.py    test_environment_stamp.py (with requirements-lock.txt)
    ifalnet/dataset_census.py       test_dataset_census.py
    ifalnet/optional_extras.py      test_export.py, test_sharing.py (each extra missing)
The scripts and the features
    train.py and test.py end to end, exact resume        test_train_and_test.py
    training from scratch learns on unseen identities     test_learning.py
    what the scripts refuse before any work               test_input_checks.py
    nothing lost, nothing silent (signals, disks, locks)  test_faults.py
    the component switches (ablations)                    test_ablation_switches.py
    test-time options (re-ranking, flip, galleries)       test_test_time_options.py
    corrupted test images (ifalnet/corruptions.py, ifalnet/corruption_sweep.py, test.py --corrupt)
                                                          test_corruptions.py
    several processes (torchrun)                          test_torchrun.py
    process_sysu.py                                       test_process_sysu.py
    tables.py                                             test_tables.py
    visualize.py (figures, features and results files)   test_visualize.py
    export.py and test.py --onnx                          test_export.py
    sharing a model: safetensors folder, model card,      test_sharing.py
      torch.hub, the Hub, refused files (weights_folder.py, hub_card.py, hub_transfer.py, hubconf.py)
    bench.py                                              test_bench.py
    demo.py                                               test_demo.py
    the repository's layout, maps and links               test_layout.py
"""
