"""Sparsity training: GammaL1, ISTA (constraint and callback), penalties and
gamma rescaling. Knows nothing of export or the tools."""

__all__ = []
