"""Triton GPU kernels of the decoder (imported only when the GPU backend is asked for)."""
