"""Keras 3 models for ptychography, written with keras.ops only (TensorFlow or JAX backend)."""
