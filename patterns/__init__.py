"""The four serving architectures. Each sub-package imports ``shared`` and never another pattern."""
