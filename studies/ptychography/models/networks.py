"""The convolutional encoder-decoder, and the PINN and supervised baseline built on it."""
from __future__ import annotations

import math

import keras
from keras import layers, ops

from .physics import DiffractionPhysics


@keras.saving.register_keras_serializable(package="sweeper_studies")
class ObjectHeads(keras.layers.Layer):
    """Decoder features -> amplitude in (0, amp_max) and phase in (-pi, pi), one channel per patch."""

    def __init__(self, channels: int, amp_max: float = 2.0, **kw):
        super().__init__(**kw)
        self.channels, self.amp_max = channels, amp_max
        self.amp = layers.Conv2D(channels, 3, padding="same")
        self.phase = layers.Conv2D(channels, 3, padding="same")

    def build(self, input_shape):
        self.amp.build(input_shape)
        self.phase.build(input_shape)

    def call(self, x):
        return self.amp_max * ops.sigmoid(self.amp(x)), math.pi * ops.tanh(self.phase(x))

    def get_config(self):
        return {**super().get_config(), "channels": self.channels, "amp_max": self.amp_max}


def encoder_decoder(N: int, channels: int, width: int = 16, depth: int = 3) -> keras.Model:
    """(B, N, N, C) normalised diffraction amplitudes -> (amplitude, phase), each (B, N, N, C)."""
    if N % (2**depth):
        raise ValueError(f"N={N} must be divisible by 2**depth={2**depth}")
    x = inp = keras.Input((N, N, channels), name="diffraction")
    for i in range(depth):
        w = width * 2**i
        x = layers.Conv2D(w, 3, padding="same", activation="relu")(x)
        x = layers.Conv2D(w, 3, padding="same", activation="relu")(x)
        x = layers.MaxPooling2D(2)(x)
    for i in reversed(range(depth)):
        w = width * 2**i
        x = layers.Conv2D(w, 3, padding="same", activation="relu")(x)
        x = layers.UpSampling2D(2)(x)
        x = layers.Conv2D(w, 3, padding="same", activation="relu")(x)
    amp, phase = ObjectHeads(channels, name="object")(x)
    return keras.Model(inp, [amp, phase], name="encoder_decoder")


@keras.saving.register_keras_serializable(package="sweeper_studies")
class PatternsToBatch(keras.layers.Layer):
    """(B, N, N, C) -> (B * C, N, N, 1): each pattern of a group on its own, for a network shared by all."""

    def call(self, x):
        n0, n1 = x.shape[1], x.shape[2]
        return ops.reshape(ops.transpose(x, (0, 3, 1, 2)), (-1, n0, n1, 1))

    def compute_output_shape(self, shape):
        return (None if shape[0] is None else shape[0] * shape[3], shape[1], shape[2], 1)


@keras.saving.register_keras_serializable(package="sweeper_studies")
class BatchToPatterns(keras.layers.Layer):
    """(B * C, N, N, 1) -> (B, N, N, C), the inverse of PatternsToBatch."""

    def __init__(self, channels: int, **kw):
        super().__init__(**kw)
        self.channels = channels

    def call(self, x):
        n0, n1 = x.shape[1], x.shape[2]
        return ops.transpose(ops.reshape(x, (-1, self.channels, n0, n1)), (0, 2, 3, 1))

    def compute_output_shape(self, shape):
        return (None if shape[0] is None else shape[0] // self.channels, shape[1], shape[2], self.channels)

    def get_config(self):
        return {**super().get_config(), "channels": self.channels}


def per_pattern(N: int, channels: int, width: int = 16, depth: int = 3) -> keras.Model:
    """(B, N, N, C) -> (amplitude, phase), each (B, N, N, C): one encoder-decoder applied to every pattern
    of a group alike, so a group's patterns share the whole width (as at gridsize 1) and only the physics
    couples them."""
    single = encoder_decoder(N, 1, width, depth)
    x = inp = keras.Input((N, N, channels), name="diffraction")
    amp, phase = single(PatternsToBatch()(x))
    back = BatchToPatterns(channels)
    return keras.Model(inp, [back(amp), back(phase)], name="per_pattern")


def pinn(N: int, gridsize: int, probe, count_scale: float, pad: int = 0, width: int = 16,
         depth: int = 3, shared: bool = False) -> tuple[keras.Model, keras.Model]:
    """(training model: diffraction [, offsets] -> expected counts; inference model: -> amp, phase).

    `shared`: one encoder-decoder for every pattern of a group (per_pattern) instead of one that maps the
    group's C patterns, stacked as channels, to C patches at once."""
    import numpy as np

    c = gridsize * gridsize
    net = per_pattern(N, c, width, depth) if shared and c > 1 else encoder_decoder(N, c, width, depth)
    x = keras.Input((N, N, c), name="diffraction")
    amp, phase = net(x)
    physics = DiffractionPhysics(np.real(probe), np.imag(probe), count_scale, gridsize, pad, name="physics")
    if gridsize > 1:
        offsets = keras.Input((c, 2), name="offsets")
        counts = physics(amp, phase, offsets)
        model = keras.Model([x, offsets], counts, name="pinn")
    else:
        counts = physics(amp, phase)
        model = keras.Model(x, counts, name="pinn")
    return model, net


def baseline(N: int, gridsize: int, width: int = 16, depth: int = 3) -> tuple[keras.Model, keras.Model]:
    """Supervised (PtychoNN-style): diffraction -> [amplitude | phase] stacked on the channel axis."""
    c = gridsize * gridsize
    net = encoder_decoder(N, c, width, depth)
    x = keras.Input((N, N, c), name="diffraction")
    amp, phase = net(x)
    return keras.Model(x, layers.Concatenate(axis=-1)([amp, phase]), name="baseline"), net
