"""Mobile pattern: a small Keras model exported to TFLite, Core ML and ONNX, checked for parity and
rolled out to phone apps through a manifest channel (blue-green by channel state). See README.md.
"""

__all__: list[str] = []
