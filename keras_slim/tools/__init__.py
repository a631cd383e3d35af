"""Tools on top of the library: the `keras-slim` CLI, reports, summaries."""

__all__ = []
