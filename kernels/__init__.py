"""Array kernels for ptychography: pure functions whose backend (NumPy or CuPy) is their input's."""
