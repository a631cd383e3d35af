"""Deployment: export (TFLite, SavedModel, ONNX), runtimes and safe loading."""

__all__ = []
