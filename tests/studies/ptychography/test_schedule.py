"""One training schedule for both backends: the Keras callbacks (the TensorFlow path, the baseline) and the JAX
loop's `Schedule.step` (solo and packed PINN runs) take the same epochs, learning rates and stop on the same
sequence of monitored losses."""
import os

os.environ.setdefault("KERAS_BACKEND", "jax")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from studies.ptychography.training import RunState, Schedule  # noqa: E402

# improves, plateaus (halving twice), improves by less than min_delta (not an improvement), then stalls
LOSSES = [1.0, 0.8, 0.79995, 0.8, 0.81, 0.7, 0.70005, 0.7, 0.71, 0.72, 0.73, 0.74, 0.75]


def keras_trace(schedule: Schedule, losses: list) -> list:
    """(learning rate after the epoch, stopped) per epoch, driving the Keras callbacks by hand."""
    import keras

    model = keras.Sequential([keras.layers.Dense(1)])
    model.build((None, 1))
    model.compile(optimizer=keras.optimizers.Adam(schedule.learning_rate), loss="mse")
    callbacks = schedule.callbacks(validated=True)
    for cb in callbacks:
        cb.set_model(model)
        cb.on_train_begin()
    trace = []
    for epoch, v in enumerate(losses):
        model.stop_training = False
        for cb in callbacks:
            cb.on_epoch_end(epoch, {"val_loss": v})
        trace.append((float(model.optimizer.learning_rate), bool(model.stop_training)))
        if model.stop_training:
            break
    return trace


def loop_trace(schedule: Schedule, losses: list) -> list:
    run, trace = RunState(schedule.learning_rate), []
    for epoch, v in enumerate(losses):
        schedule.step(run, v, epoch)
        trace.append((run.learning_rate, run.stopped))
        if run.stopped:
            break
    return trace


@pytest.mark.parametrize("fit", [{"schedule": "plateau", "patience": 0, "epochs": 13},
                                 {"schedule": "plateau", "patience": 4, "epochs": 13},
                                 {"schedule": "constant", "patience": 3, "epochs": 13}])
def test_keras_callbacks_and_the_jax_loop_follow_one_schedule(fit):
    schedule = Schedule.of({"learning_rate": 1e-3, **fit})
    loop, keras_ = loop_trace(schedule, LOSSES), keras_trace(schedule, LOSSES)
    assert len(loop) == len(keras_)
    np.testing.assert_allclose([lr for lr, _ in loop], [lr for lr, _ in keras_], rtol=1e-6)
    assert [s for _, s in loop] == [s for _, s in keras_]
    if fit["schedule"] == "plateau":
        assert min(lr for lr, _ in loop) < 1e-3  # the sequence does halve the rate: the test is not vacuous
    if fit["patience"]:
        assert loop[-1][1]  # and it does stop
