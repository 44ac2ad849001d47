"""targets.holdout: the validation carve shared by the classifier and the lsa baselines."""

import numpy as np

from nlp_pipeline.targets import holdout


def test_class_labels_are_stratified_and_seeded():
    labels = np.array([0, 0, 0, 0, 1, 1])
    kept, held = holdout(labels, 0.25, seed=0)
    assert sorted(labels[held].tolist()) == [0, 1]                # round(1.0) of the 0s, round(0.5) -> at least 1 of the 1s
    assert sorted(kept.tolist() + held.tolist()) == list(range(6))
    assert held.tolist() == holdout(labels, 0.25, seed=0)[1].tolist()
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 1])
    assert np.bincount(labels[holdout(labels, 0.5, seed=0)[1]]).tolist() == [2, 3]


def test_every_label_keeps_a_training_document_and_singletons_stay():
    labels = np.array([0, 0, 1, 2, 2, 2])
    kept, held = holdout(labels, 0.9, seed=0)                    # round(0.9 * n) would take whole labels
    assert set(labels[kept].tolist()) == {0, 1, 2}
    assert labels[held].tolist().count(0) == 1 and 1 not in labels[held].tolist()


def test_sets_and_numbers_are_one_random_group():
    values = np.arange(10, dtype=np.float32)                     # regression targets: every value distinct
    kept, held = holdout(values, 0.25, seed=0, target_type="regression")
    assert len(held) == 2 and len(kept) == 8                     # one group: round(10 * 0.25), not per value
    assert held.tolist() == holdout(values, 0.25, seed=0, target_type="regression")[1].tolist()
    assert held.tolist() != holdout(values, 0.25, seed=1, target_type="regression")[1].tolist()
    sets = np.array([[1, 0]] * 3, np.int8)                       # label sets: rows, not values, are carved
    kept, held = holdout(sets, 0.9, seed=0, target_type="multi_label")
    assert len(kept) == 1 and len(held) == 2                     # at most n - 1 held out
