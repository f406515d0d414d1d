"""The E1 convergence diagnostic: the relative change of the mean loss over the last epoch."""

import math
import warnings

import pyarrow as pa

from bolt_tasks.analyses.target_match import last_epoch_loss_change


def _log(epochs, losses):
    return pa.table({"epoch": pa.array(epochs, pa.int64()), "loss": pa.array(losses, pa.float64())})


def test_the_change_is_relative_to_the_next_to_last_epochs_mean():
    assert math.isclose(last_epoch_loss_change(_log([0, 0, 1, 1], [2.0, 2.0, 1.0, 2.0])), -0.25)


def test_a_loss_of_zero_in_both_epochs_is_no_change_not_nan():
    # a scheme that weights every rollout 0 trains on a loss of exactly 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert last_epoch_loss_change(_log([0, 1], [0.0, 0.0])) == 0.0


def test_one_epoch_has_no_change_to_report():
    assert math.isnan(last_epoch_loss_change(_log([0, 0], [1.0, 0.5])))
