"""Folds and nested unpaired training sets (property-based)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mr2ct.data.io import InputError
from mr2ct.data.splits import make_folds, splits_table


@st.composite
def designs(draw):
    n = draw(st.integers(4, 30))
    folds = draw(st.integers(2, min(6, n // 2)))
    validation = draw(st.integers(0, 2))
    subjects = [f"s{i:02d}" for i in draw(st.permutations(range(n)))]
    seed = draw(st.integers(0, 2**31 - 1))
    return subjects, folds, validation, seed


@settings(max_examples=150, deadline=None)
@given(designs(), st.sampled_from(["disjoint", "shuffled"]))
def test_split_properties(design, pairing):
    subjects, n_folds, validation, seed = design
    n_test_max = -(-len(subjects) // n_folds)
    if validation >= len(subjects) - n_test_max:
        with pytest.raises(InputError, match="validation"):
            make_folds(subjects, n_folds, seed, validation)
        return
    folds = make_folds(subjects, n_folds, seed, validation)
    assert folds == make_folds(list(reversed(subjects)), n_folds, seed, validation)  # deterministic, order-free
    tests = [s for f in folds for s in f.test]
    assert sorted(tests) == sorted(subjects)  # test sets partition the cohort
    for f in folds:
        assert set(f.test).isdisjoint(f.validation)
        assert set(f.test) | set(f.validation) | set(f.pool) == set(subjects)
        assert len(f.validation) == validation
        previous = None
        for size in range(2, len(f.pool) + 1):
            ts = f.training_set(size, pairing)
            assert set(ts.subjects).isdisjoint(f.test) and set(ts.subjects).isdisjoint(f.validation)
            assert len(ts.subjects) == size
            if pairing == "disjoint":
                assert set(ts.mr).isdisjoint(ts.ct) and len(ts.mr) + len(ts.ct) == size
            else:
                assert ts.mr == ts.ct
            if previous is not None:  # nested, and so are the MR and CT halves
                assert set(previous.mr) <= set(ts.mr) and set(previous.ct) <= set(ts.ct)
            previous = ts
        with pytest.raises(InputError, match=f"{len(f.pool)} subjects available"):
            f.training_set(len(f.pool) + 1, pairing)


def test_seed_changes_the_folds():
    subjects = [f"s{i}" for i in range(12)]
    assert make_folds(subjects, 3, 1) != make_folds(subjects, 3, 2)


def test_splits_table_is_readable():
    folds = make_folds([f"s{i}" for i in range(8)], 2, 0, 1)
    table = splits_table(folds, [2], "disjoint")
    assert list(table.columns) == ["fold", "size", "subject", "role"]
    assert set(table["role"]) == {"test", "validation", "train_mr", "train_ct"}
    assert (table["role"] == "test").sum() == 8


def test_splits_table_lists_every_role_exactly():
    folds = make_folds([f"s{i}" for i in range(12)], 2, 0, 1)
    for pairing, roles in (("disjoint", ("train_mr", "train_ct")), ("shuffled", ("train",))):
        table = splits_table(folds, [4, 2], pairing)
        for fold in folds:
            rows = table[table["fold"] == fold.fold]
            fixed = rows[rows["role"].isin(["test", "validation"])]
            assert (fixed["size"] == "").all()
            assert tuple(rows.loc[rows["role"] == "test", "subject"]) == fold.test
            assert tuple(rows.loc[rows["role"] == "validation", "subject"]) == fold.validation
            for size in (2, 4):
                ts = fold.training_set(size, pairing)
                train = rows[rows["size"] == size]
                assert tuple(train["role"].unique()) == roles
                assert tuple(train.loc[train["role"] == roles[0], "subject"]) == ts.mr
                assert tuple(train.loc[train["role"] == roles[-1], "subject"]) == ts.ct
            assert list(rows["size"][rows["size"] != ""]) == sorted(rows["size"][rows["size"] != ""])


def test_sizes_are_checked_with_the_configured_pairing():
    from mr2ct.data.io import InputError
    from mr2ct.data.splits import check_sizes

    folds = make_folds([f"s{i}" for i in range(8)], 2, 0, 1)
    check_sizes(folds, [1], "shuffled")  # one subject is enough when MR and CT come from all of them
    with pytest.raises(InputError, match="'disjoint' needs at least 2 subjects"):
        check_sizes(folds, [1], "disjoint")


def test_too_few_test_subjects_for_statistics_warns_with_the_count():
    from mr2ct.data.splits import make_folds, statistics_warning

    few = make_folds([f"s{i}" for i in range(5)], folds=2, seed=0, validation_subjects=1)
    warning = statistics_warning(few)
    assert warning is not None and "only 5 test subject(s)" in warning and "p < 0.05" in warning
    assert warning.endswith("Add subjects (data.phantom.subjects or your cohort).")
    assert statistics_warning(make_folds([f"s{i}" for i in range(12)], folds=3, seed=0)) is None
    # the boundary: 6 pairs can reach p < 0.05 (two-sided exact Wilcoxon: 2/64), 5 cannot
    assert statistics_warning(make_folds([f"s{i}" for i in range(6)], folds=2, seed=0, validation_subjects=0)) is None
    assert "only 5 test" in statistics_warning(make_folds([f"s{i}" for i in range(5)], 2, 0, 0))


def test_pinned_splits_for_seed_42():
    """Golden values: which subjects test, validate and feed the MR and CT halves of fold 0's
    largest training set for the seed of config.yaml. A change here changes every result of
    the workflow, so it must be deliberate (then update these values and say so)."""
    folds = make_folds([f"phantom{i:03d}" for i in range(1, 13)], folds=3, seed=42, validation_subjects=1)
    assert [f.test for f in folds] == [
        ("phantom004", "phantom005", "phantom006", "phantom011"),
        ("phantom001", "phantom007", "phantom009", "phantom012"),
        ("phantom002", "phantom003", "phantom008", "phantom010"),
    ]
    assert [f.validation for f in folds] == [("phantom009",), ("phantom003",), ("phantom004",)]
    six = folds[0].training_set(6, "disjoint")
    assert six.mr == ("phantom010", "phantom007", "phantom001")
    assert six.ct == ("phantom002", "phantom003", "phantom012")
    two = folds[0].training_set(2, "disjoint")
    assert set(two.mr) <= set(six.mr) and set(two.ct) <= set(six.ct)  # nested


def test_written_splits_are_the_folds_of_the_config_with_every_role(tmp_path):
    """The workflow's splits.tsv: for every fold and size, which subjects test, validate and feed
    the MR and CT halves, as the config's folds say; written atomically and readable as a table."""
    import pandas as pd

    from mr2ct.config import validate_config
    from mr2ct.data.splits import splits_from_config, write_splits

    subjects = [f"s{i:02d}" for i in range(10)]
    config = validate_config(
        {
            "seed": 5,
            "data": {"source": "phantom"},
            "preprocess": {},
            "splits": {"folds": 2, "sizes": [2, 4], "validation_subjects": 1, "pairing": "disjoint"},
            "models": ["cyclegan"],
        }
    )
    out = write_splits(subjects, config, tmp_path / "splits" / "splits.tsv")
    table = pd.read_csv(out, sep="\t", dtype={"subject": str})
    assert list(table.columns) == ["fold", "size", "subject", "role"]
    for k, fold in enumerate(splits_from_config(subjects, config)):
        rows = table[table["fold"] == k]
        assert set(rows.loc[rows["role"] == "test", "subject"]) == set(fold.test)
        assert set(rows.loc[rows["role"] == "validation", "subject"]) == set(fold.validation)
        for size in (2, 4):
            training = fold.training_set(size, "disjoint")
            of_size = rows[rows["size"] == size]
            assert set(of_size.loc[of_size["role"] == "train_mr", "subject"]) == set(training.mr)
            assert set(of_size.loc[of_size["role"] == "train_ct", "subject"]) == set(training.ct)
            assert len(of_size) == size
    assert not list((tmp_path / "splits").glob(".*"))  # no temporary file left behind
