"""The spectral (method of moments) fit: moments, whitening, tensor, power method, recovery,
the pure :func:`fit_spectral_lda` and the selection of k / alpha0 over shared passes."""
